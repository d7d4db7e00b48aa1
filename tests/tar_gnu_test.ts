/**
 * GNU tar reads what core/tar.ts writes: names (long, unicode, with a
 * newline, deep), sizes around the block size, bytes and mtimes, and the
 * data offsets planTar reports. Needs --allow-run (tar), --allow-read,
 * --allow-write.
 */

import assert from "node:assert/strict";
import { planTar, tarPadding, tarTrailer } from "../core/tar.ts";
import { readTar } from "../core/tar_reader.ts";

const encoder = new TextEncoder();

function bytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

const MTIME_MS = 1_700_000_123_000;

const ENTRIES: { name: string; data: Uint8Array }[] = [
  { name: "plain.txt", data: encoder.encode("hello\n") },
  { name: "empty", data: new Uint8Array(0) },
  { name: "exactly-512", data: bytes(512, 1) },
  { name: "block-plus-one", data: bytes(513, 2) },
  { name: "over-100/" + "n".repeat(120), data: bytes(1000, 3) },
  { name: ["a".repeat(100), "b".repeat(100), "c".repeat(100)].join("/"), data: bytes(70, 4) }, // > 255 bytes
  { name: "ünïcödé/日本語/файл 😀.bin", data: bytes(3000, 5) },
  { name: "new\nline", data: encoder.encode("nl") },
  { name: "back\\slash", data: encoder.encode("bs") },
  { name: "deep/".repeat(40) + "leaf", data: encoder.encode("deep") },
  { name: "p".repeat(140) + "/" + "q".repeat(90), data: encoder.encode("split") }, // ustar prefix + name
  { name: "u".repeat(60) + "/ü" + "v".repeat(80), data: encoder.encode("pax, 150 bytes") },
];

/** Writes the archive to `path` the way an uploader streams it: header, data, padding, ..., trailer. */
async function writeTar(path: string): Promise<ReturnType<typeof planTar>> {
  const plan = planTar(
    ENTRIES.map((e) => ({ name: e.name, size: e.data.length, mtimeMs: MTIME_MS })),
  );
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const writer = file.writable.getWriter();
  for (const [i, p] of plan.entries.entries()) {
    await writer.write(p.header);
    await writer.write(ENTRIES[i]!.data);
    await writer.write(new Uint8Array(tarPadding(p.size)));
  }
  await writer.write(tarTrailer());
  await writer.close();
  return plan;
}

async function run(args: string[], cwd: string): Promise<string> {
  const out = await new Deno.Command("tar", {
    args,
    cwd,
    env: { LC_ALL: "C.UTF-8" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `tar ${args.join(" ")} failed: ${stderr}`);
  assert.equal(stderr, "", "GNU tar warned");
  return new TextDecoder().decode(out.stdout);
}

/** Undoes GNU tar's `escape` quoting style (`\n`, `\\`, `\t`, octal). */
function unescapeGnu(s: string): string {
  return s.replace(/\\(\\|n|t|[0-7]{3})/g, (_m, c: string) => {
    if (c === "\\") return "\\";
    if (c === "n") return "\n";
    if (c === "t") return "\t";
    return String.fromCharCode(parseInt(c, 8));
  });
}

async function withTempDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "coldpack_tar_gnu_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("GNU tar lists the names and sizes coldpack writes", async () => {
  await withTempDir(async (dir) => {
    const tarPath = `${dir}/a.tar`;
    await writeTar(tarPath);
    const listing = await run(["--quoting-style=escape", "-tvf", tarPath], dir);
    const lines = listing.split("\n").filter((l) => l !== "");
    assert.equal(lines.length, ENTRIES.length);
    lines.forEach((line, i) => {
      const m = /^(\S+) (\S+) +(\d+) (\d{4}-\d\d-\d\d \d\d:\d\d) (.*)$/.exec(line);
      assert.ok(m, `unexpected listing line: ${line}`);
      assert.equal(m[1], "-rw-r--r--");
      assert.equal(m[2], "root/root");
      assert.equal(Number(m[3]), ENTRIES[i]!.data.length, ENTRIES[i]!.name);
      assert.equal(unescapeGnu(m[5]!), ENTRIES[i]!.name);
    });
  });
});

Deno.test("GNU tar extracts exactly the names, bytes and mtimes coldpack writes", async () => {
  await withTempDir(async (dir) => {
    const tarPath = `${dir}/a.tar`;
    await writeTar(tarPath);
    await Deno.mkdir(`${dir}/out`);
    await run(["-xf", tarPath], `${dir}/out`);

    const found: string[] = [];
    async function walk(rel: string): Promise<void> {
      for await (const e of Deno.readDir(`${dir}/out${rel === "" ? "" : "/" + rel}`)) {
        const path = rel === "" ? e.name : `${rel}/${e.name}`;
        if (e.isDirectory) await walk(path);
        else found.push(path);
      }
    }
    await walk("");
    assert.deepEqual(found.sort(), ENTRIES.map((e) => e.name).sort());

    for (const e of ENTRIES) {
      const path = `${dir}/out/${e.name}`;
      assert.deepEqual(await Deno.readFile(path), e.data, e.name);
      const stat = await Deno.stat(path);
      assert.equal(stat.mtime?.getTime(), MTIME_MS, e.name);
      assert.equal(stat.mode! & 0o777, 0o644, e.name);
    }
  });
});

Deno.test("planTar's offsets point at each entry's header and bytes in the written file", async () => {
  await withTempDir(async (dir) => {
    const tarPath = `${dir}/a.tar`;
    const plan = await writeTar(tarPath);
    const tar = await Deno.readFile(tarPath);
    assert.equal(tar.length, plan.totalSize);
    assert.equal(tar.length % 512, 0);
    for (const [i, p] of plan.entries.entries()) {
      const e = ENTRIES[i]!;
      assert.deepEqual(tar.subarray(p.headerOffset, p.dataOffset), p.header, e.name);
      assert.deepEqual(tar.subarray(p.dataOffset, p.dataOffset + p.size), e.data, e.name);
    }
    // GNU tar agrees: extract one entry by name to stdout and compare with the bytes at its offset.
    const out = await new Deno.Command("tar", {
      args: ["-xOf", tarPath, ENTRIES[6]!.name],
      env: { LC_ALL: "C.UTF-8" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const p = plan.entries[6]!;
    assert.deepEqual(out.stdout, tar.subarray(p.dataOffset, p.dataOffset + p.size));
    // And coldpack's own reader finds the same offsets.
    const read = [];
    for await (const entry of readTar([tar])) {
      read.push([entry.name, entry.headerOffset, entry.dataOffset]);
    }
    assert.deepEqual(
      read,
      plan.entries.map((q, j) => [ENTRIES[j]!.name, q.headerOffset, q.dataOffset]),
    );
  });
});

Deno.test("coldpack reads what GNU tar writes in its default and pax formats", async () => {
  await withTempDir(async (dir) => {
    await Deno.mkdir(`${dir}/src`);
    const names = ENTRIES.filter((e) => !e.name.includes("\n")).map((e) => e.name);
    for (const e of ENTRIES) {
      if (!names.includes(e.name)) continue;
      const path = `${dir}/src/${e.name}`;
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      await Deno.writeFile(path, e.data);
    }
    for (const format of ["gnu", "pax", "posix"]) {
      const tarPath = `${dir}/${format}.tar`;
      await run(
        [`--format=${format}`, "--sort=name", "-cf", tarPath, "-C", `${dir}/src`, "."],
        dir,
      );
      const file = await Deno.open(tarPath);
      const got = new Map<string, Uint8Array>();
      for await (const entry of readTar(file.readable)) {
        if (entry.type === "0") got.set(entry.name.replace(/^\.\//, ""), entry.data);
      }
      assert.deepEqual([...got.keys()].sort(), [...names].sort(), format);
      for (const e of ENTRIES) {
        if (got.has(e.name)) assert.deepEqual(got.get(e.name), e.data, e.name);
      }
    }
  });
});
