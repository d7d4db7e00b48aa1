/**
 * GNU tar reads what core/tar.ts writes: names (long, unicode, with a
 * newline, deep), sizes around the block size, bytes and mtimes, and the
 * data offsets planTar reports, also when alignment pads headers with pax
 * comments. Needs --allow-run (tar), --allow-read, --allow-write.
 */

import assert from "node:assert/strict";
import { prng } from "../core/prng.ts";
import { planTar, TAR_ALIGN_SIZE, tarHeader, tarPadding, tarTrailer } from "../core/tar.ts";
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
async function writeTar(
  path: string,
  entries = ENTRIES,
  options: { alignBelow?: number } = {},
): Promise<ReturnType<typeof planTar>> {
  const plan = planTar(
    entries.map((e) => ({ name: e.name, size: e.data.length, mtimeMs: MTIME_MS })),
    options,
  );
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const writer = file.writable.getWriter();
  for (const [i, p] of plan.entries.entries()) {
    await writer.write(p.header);
    await writer.write(entries[i]!.data);
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

const MIB = TAR_ALIGN_SIZE;
const ALIGN_BELOW = 256 * 1024;

/**
 * Entries that need alignment padding of every kind: a plain header padded up
 * to the boundary, one whose gap is a single block (data 512 bytes after the
 * boundary), pax-named entries (comment merged), then seeded random sizes
 * around 100 KB, empty files and files above ALIGN_BELOW.
 */
function alignedEntries(): { name: string; data: Uint8Array }[] {
  const rand = prng(11);
  const out = [
    { name: "gap/fill", data: bytes(MIB - 1536, 20) }, // the next data would start at 1 MiB - 512
    { name: "gap/small.bin", data: bytes(3000, 21) },
  ];
  for (let i = 0; i < 60; i++) {
    const r = rand();
    const size = r < 0.08
      ? 0
      : r < 0.85
      ? 50_000 + Math.floor(rand() * 150_000)
      : ALIGN_BELOW + Math.floor(rand() * 600_000);
    const name = i % 3 === 0 ? `ünï/${i}/fïlé ${"ü".repeat(i)}.bin` : `dir${i % 4}/f${i}.bin`;
    out.push({ name, data: bytes(size, 100 + i) });
  }
  return out;
}

/** Entries whose header planTar padded, with whether the unpadded header was pax. */
function paddedIndexes(
  entries: { name: string; data: Uint8Array }[],
  plan: ReturnType<typeof planTar>,
): { i: number; pax: boolean }[] {
  const out: { i: number; pax: boolean }[] = [];
  plan.entries.forEach((p, i) => {
    const plain = tarHeader({ name: entries[i]!.name, size: p.size, mtimeMs: MTIME_MS }).length;
    if (p.header.length > plain) out.push({ i, pax: plain > 512 });
  });
  return out;
}

Deno.test("GNU tar lists and extracts an aligned archive exactly, no extra entries", async () => {
  await withTempDir(async (dir) => {
    const entries = alignedEntries();
    const tarPath = `${dir}/aligned.tar`;
    const plan = await writeTar(tarPath, entries, { alignBelow: ALIGN_BELOW });
    const padded = paddedIndexes(entries, plan);
    assert.ok(padded.some((p) => !p.pax), "a plain header was padded");
    assert.ok(padded.some((p) => p.pax), "a pax header got the comment");
    assert.equal(plan.entries[1]!.dataOffset, MIB + 512, "the one-block gap case");
    for (const [i, p] of plan.entries.entries()) {
      if (p.size === 0 || p.size > ALIGN_BELOW) continue;
      assert.equal(
        Math.floor(p.dataOffset / MIB),
        Math.floor((p.dataOffset + p.size - 1) / MIB),
        entries[i]!.name,
      );
    }

    const listing = await run(["--quoting-style=escape", "-tvf", tarPath], dir);
    const lines = listing.split("\n").filter((l) => l !== "");
    assert.equal(lines.length, entries.length, "one line per file, none for the padding");
    lines.forEach((line, i) => {
      const m = /^(\S+) (\S+) +(\d+) (\d{4}-\d\d-\d\d \d\d:\d\d) (.*)$/.exec(line);
      assert.ok(m, `unexpected listing line: ${line}`);
      assert.equal(m[1], "-rw-r--r--");
      assert.equal(Number(m[3]), entries[i]!.data.length, entries[i]!.name);
      assert.equal(unescapeGnu(m[5]!), entries[i]!.name);
    });

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
    assert.deepEqual(found.sort(), entries.map((e) => e.name).sort());
    for (const e of entries) {
      assert.deepEqual(await Deno.readFile(`${dir}/out/${e.name}`), e.data, e.name);
      assert.equal((await Deno.stat(`${dir}/out/${e.name}`)).mtime?.getTime(), MTIME_MS, e.name);
    }

    // Each padded entry's bytes, as GNU tar extracts them, sit at the planned data offset.
    const tar = await Deno.readFile(tarPath);
    assert.equal(tar.length, plan.totalSize);
    for (const { i } of padded) {
      const p = plan.entries[i]!;
      const out = await new Deno.Command("tar", {
        args: ["-xOf", tarPath, entries[i]!.name],
        env: { LC_ALL: "C.UTF-8" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      assert.deepEqual(out.stdout, tar.subarray(p.dataOffset, p.dataOffset + p.size));
    }
    // coldpack's reader agrees on every offset.
    const read = [];
    for await (const e of readTar([tar], { maxEntrySize: 2 * MIB })) {
      read.push([e.name, e.headerOffset, e.dataOffset]);
    }
    assert.deepEqual(
      read,
      plan.entries.map((q, j) => [entries[j]!.name, q.headerOffset, q.dataOffset]),
    );
  });
});
