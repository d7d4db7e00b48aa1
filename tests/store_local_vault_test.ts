import assert from "node:assert/strict";
import { LocalVault } from "../adapters/store/local_vault.ts";
import { ArchiveMismatchError, PortError } from "../core/errors.ts";
import { type ArchiveId, archiveId, jobId, type RemoteArchiveId } from "../core/ids.ts";
import { parseStoreUrl } from "../core/store_url.ts";
import { referenceTreeHash, storeConformance } from "./store_conformance.ts";
import { assertBytes, bytesOf } from "./_helpers.ts";
import { chunked, readAll } from "./_streams.ts";

const MIB = 1024 * 1024;
const HOUR = 3_600_000;

storeConformance("local vault", async () => {
  const dir = await Deno.makeTempDir({ prefix: "coldpack_vault_" });
  const store = await LocalVault.open(dir, { retrievalDelayMs: 0 });
  return {
    store,
    cleanup: async () => {
      await store.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
});

storeConformance("local vault with a retrieval delay", async () => {
  const dir = await Deno.makeTempDir({ prefix: "coldpack_vault_" });
  const clock = fakeClock(1_700_000_000_000);
  const store = await LocalVault.open(dir, { retrievalDelayMs: 5 * 60_000, now: clock.now });
  return {
    store,
    cleanup: async () => {
      await store.close();
      await Deno.remove(dir, { recursive: true });
    },
    makeReady: () => {
      clock.advance(5 * 60_000);
      return Promise.resolve();
    },
  };
});

function fakeClock(start: number) {
  let t = start;
  return {
    now: () => t,
    set: (ms: number) => {
      t = ms;
    },
    advance: (ms: number) => {
      t += ms;
    },
  };
}

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "coldpack_vault_" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function putBytes(vault: LocalVault, data: Uint8Array, id: string, description = "test") {
  return vault.put({
    archiveId: archiveId(id),
    size: data.length,
    treeHash: referenceTreeHash(data),
    description,
    body: () => chunked(data, [4099]),
  });
}

/** A one-entry POSIX ustar archive built by hand: header, padded data, two zero blocks. */
function tinyTar(name: string, content: Uint8Array): Uint8Array {
  const enc = new TextEncoder();
  const header = new Uint8Array(512);
  const field = (off: number, text: string) => header.set(enc.encode(text), off);
  field(0, name);
  field(100, "0000644\0");
  field(108, "0001750\0");
  field(116, "0001750\0");
  field(124, content.length.toString(8).padStart(11, "0") + "\0");
  field(136, "14712345670\0");
  field(148, "        ");
  field(156, "0");
  field(257, "ustar\0");
  field(263, "00");
  let sum = 0;
  for (const b of header) sum += b;
  field(148, sum.toString(8).padStart(6, "0") + "\0 ");
  const padded = Math.ceil(content.length / 512) * 512;
  const out = new Uint8Array(512 + padded + 1024);
  out.set(header, 0);
  out.set(content, 512);
  return out;
}

async function run(cmd: string, args: string[]): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
  assert.equal(out.code, 0, `${cmd} ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  return new TextDecoder().decode(out.stdout);
}

function portError(code: string, words: string) {
  return (e: unknown) => {
    assert.ok(e instanceof PortError, `expected PortError ${code}, got ${e}`);
    assert.equal(e.code, code);
    assert.equal(e.retryable, false);
    assert.ok(e.message.includes(words), `"${e.message}" lacks "${words}"`);
    return true;
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

async function names(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) out.push(e.name);
  return out.sort();
}

Deno.test("local vault: put leaves a plain tar that GNU tar lists and extracts", async () => {
  await withDir(async (dir) => {
    const vault = await LocalVault.open(dir, { now: () => 1_234_567 });
    const content = new TextEncoder().encode("hello, vault\n");
    const tar = tinyTar("greeting.txt", content);
    const put = await putBytes(vault, tar, "20260101T000000Z-abcdef012345", "coldpack v1 n=1");
    assert.equal(put.remoteId, "20260101T000000Z-abcdef012345.tar");
    const path = `${dir}/${put.remoteId}`;
    assertBytes(await Deno.readFile(path), tar, "tar on disk");
    assert.equal(await run("tar", ["-tf", path]), "greeting.txt\n");
    assert.equal(await run("tar", ["-xOf", path, "greeting.txt"]), "hello, vault\n");
    const sidecar = JSON.parse(await Deno.readTextFile(`${path}.json`));
    assert.deepEqual(sidecar, {
      format: 1,
      size: tar.length,
      treeHash: referenceTreeHash(tar),
      description: "coldpack v1 n=1",
      createdAt: 1_234_567,
    });
    assert.deepEqual(await names(dir), [
      ".incoming",
      ".jobs",
      put.remoteId,
      `${put.remoteId}.json`,
    ]);
    assert.deepEqual(await names(`${dir}/.incoming`), []);
  });
});

Deno.test("local vault: location is a file URL that parseStoreUrl reads back", async () => {
  await withDir(async (parent) => {
    const dir = `${parent}/my vault`;
    const vault = await LocalVault.open(`${dir}/`);
    assert.ok(vault.location.startsWith("file:///"));
    assert.ok(vault.location.endsWith("/my%20vault"), vault.location);
    const spec = parseStoreUrl(vault.location);
    assert.equal(spec.kind === "vault-dir" && spec.path, dir);
    assert.ok((await Deno.stat(`${dir}/.incoming`)).isDirectory);
    assert.deepEqual(vault.capabilities, { rangedRetrieval: true, rangeAlignment: MIB });
  });
});

Deno.test("local vault: open refuses a negative delay or a zero time to live", async () => {
  await withDir(async (dir) => {
    await assert.rejects(
      LocalVault.open(dir, { retrievalDelayMs: -1 }),
      (e: unknown) => e instanceof RangeError && e.message.includes("Invalid retrieval delay: -1"),
    );
    await assert.rejects(
      LocalVault.open(dir, { retrievalTtlMs: 0 }),
      (e: unknown) => e instanceof RangeError && e.message.includes("time to live: 0"),
    );
  });
});

Deno.test("local vault: a retrieval is in progress until the delay has passed", async () => {
  await withDir(async (dir) => {
    const clock = fakeClock(1_000_000);
    const vault = await LocalVault.open(dir, { retrievalDelayMs: 30_000, now: clock.now });
    const data = bytesOf(1, 10_000);
    const put = await putBytes(vault, data, "a1");
    const job = await vault.startRetrieval(put.remoteId, { description: "r-delay" });
    assert.equal(job.state, "in-progress");
    assert.equal(job.startedAt, 1_000_000);
    assert.equal(job.completedAt, null);
    assert.equal(job.expiresAt, null);
    assert.equal(job.treeHash, referenceTreeHash(data));
    clock.set(1_000_000 + 29_999);
    assert.equal((await vault.retrieval(job.jobId)).state, "in-progress");
    await assert.rejects(
      vault.readRetrieval(job.jobId),
      portError("RetrievalNotReady", `Cannot read retrieval ${job.jobId}: it is in progress until`),
    );
    clock.set(1_000_000 + 30_000);
    const ready = await vault.retrieval(job.jobId);
    assert.equal(ready.state, "ready");
    assert.equal(ready.completedAt, 1_030_000);
    assert.equal(ready.expiresAt, 1_030_000 + 24 * HOUR);
    assertBytes(await readAll(await vault.readRetrieval(job.jobId)), data, "after the delay");
  });
});

Deno.test("local vault: a retrieval expires after its time to live, also after reopening", async () => {
  await withDir(async (dir) => {
    const clock = fakeClock(5_000_000);
    const options = { retrievalDelayMs: 1000, retrievalTtlMs: HOUR, now: clock.now };
    const vault = await LocalVault.open(dir, options);
    const put = await putBytes(vault, bytesOf(2, 2000), "a2");
    const job = await vault.startRetrieval(put.remoteId, { description: "r-ttl" });
    clock.set(5_001_000 + HOUR - 1);
    assert.equal((await vault.retrieval(job.jobId)).state, "ready");
    clock.set(5_001_000 + HOUR);
    const expired = await vault.retrieval(job.jobId);
    assert.equal(expired.state, "expired");
    assert.equal(expired.expiresAt, 5_001_000 + HOUR);
    await assert.rejects(
      vault.readRetrieval(job.jobId),
      portError("RetrievalExpired", `Cannot read retrieval ${job.jobId}: it expired at`),
    );
    const reopened = await LocalVault.open(dir, options);
    assert.equal((await reopened.retrieval(job.jobId)).state, "expired");
    clock.set(5_001_000);
    assert.equal((await reopened.retrieval(job.jobId)).description, "r-ttl");
  });
});

Deno.test("local vault: a body that fails midway leaves no tar, no sidecar, no part", async () => {
  await withDir(async (dir) => {
    const vault = await LocalVault.open(dir);
    const boom = new Error("Source read failed: connection reset");
    let sent = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent >= 3 * 65_536) {
          c.error(boom);
          return;
        }
        c.enqueue(new Uint8Array(65_536).fill(7));
        sent += 65_536;
      },
    });
    const id: ArchiveId = archiveId("broken");
    await assert.rejects(
      vault.put({
        archiveId: id,
        size: 10 * 65_536,
        treeHash: "0".repeat(64),
        description: "",
        body: () => body,
      }),
      (e: unknown) => e === boom,
    );
    assert.deepEqual(await names(dir), [".incoming", ".jobs"]);
    assert.deepEqual(await names(`${dir}/.incoming`), []);
    for await (const _ of vault.list()) assert.fail("list should be empty");
  });
});

Deno.test("local vault: a size mismatch names both sizes and leaves nothing behind", async () => {
  await withDir(async (dir) => {
    const vault = await LocalVault.open(dir);
    const data = bytesOf(3, 700);
    await assert.rejects(
      vault.put({
        archiveId: archiveId("short"),
        size: 900,
        treeHash: referenceTreeHash(data),
        description: "",
        body: () => chunked(data),
      }),
      (e: unknown) =>
        e instanceof ArchiveMismatchError &&
        e.message ===
          "Cannot put archive short: the body has 700 bytes but the archive declares 900",
    );
    assert.deepEqual(await names(dir), [".incoming", ".jobs"]);
    assert.deepEqual(await names(`${dir}/.incoming`), []);
  });
});

Deno.test("local vault: open removes .part files older than 24 hours and keeps newer ones", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/.incoming`);
    await Deno.writeTextFile(`${dir}/.incoming/old.abc.part`, "partial");
    await Deno.writeTextFile(`${dir}/.incoming/old.def.json.part`, "{");
    await Deno.writeTextFile(`${dir}/.incoming/fresh.abc.part`, "partial");
    await Deno.writeTextFile(`${dir}/.incoming/notes.txt`, "not a part");
    const old = new Date(Date.now() - 25 * HOUR);
    await Deno.utime(`${dir}/.incoming/old.abc.part`, old, old);
    await Deno.utime(`${dir}/.incoming/old.def.json.part`, old, old);
    const recent = new Date(Date.now() - 23 * HOUR);
    await Deno.utime(`${dir}/.incoming/fresh.abc.part`, recent, recent);
    await LocalVault.open(dir);
    assert.deepEqual(await names(`${dir}/.incoming`), ["fresh.abc.part", "notes.txt"]);
  });
});

Deno.test("local vault: putting the same bytes again is idempotent, different bytes are refused", async () => {
  await withDir(async (dir) => {
    const vault = await LocalVault.open(dir);
    const data = bytesOf(4, 3000);
    const first = await putBytes(vault, data, "same", "first");
    const again = await putBytes(vault, data, "same", "second");
    assert.deepEqual(again, first);
    const other = bytesOf(5, 3000);
    await assert.rejects(
      putBytes(vault, other, "same"),
      (e: unknown) =>
        e instanceof ArchiveMismatchError &&
        e.message.includes(`the vault already holds same.tar with tree hash ${first.treeHash}`),
    );
    assertBytes(await Deno.readFile(`${dir}/same.tar`), data, "original kept");
    const listed = [];
    for await (const a of vault.list()) listed.push(a);
    assert.equal(listed.length, 1);
    assert.equal(listed[0]?.description, "first");
    assert.deepEqual(await names(`${dir}/.incoming`), []);
  });
});

Deno.test("local vault: a body whose tree hash differs from the declared one is refused", async () => {
  await withDir(async (dir) => {
    const vault = await LocalVault.open(dir);
    const data = bytesOf(6, 3000);
    await assert.rejects(
      vault.put({
        archiveId: archiveId("lying"),
        size: data.length,
        treeHash: "f".repeat(64),
        description: "",
        body: () => chunked(data),
      }),
      (e: unknown) =>
        e instanceof ArchiveMismatchError &&
        e.message.includes(
          `the body's tree hash is ${referenceTreeHash(data)} but the archive declares ffff`,
        ),
    );
    assert.deepEqual(await names(dir), [".incoming", ".jobs"]);
  });
});

Deno.test("local vault: put validates size, tree hash and description like Glacier", async () => {
  await withDir(async (dir) => {
    const vault = await LocalVault.open(dir);
    const base = {
      archiveId: archiveId("v1"),
      size: 1,
      treeHash: referenceTreeHash(new Uint8Array(1)),
      description: "ok",
    };
    const cases = [
      [{ size: 0 }, "Invalid archive size for v1: 0"],
      [{ treeHash: "ABC" }, 'Invalid tree hash for v1: "ABC"'],
      [{ description: "caf\u00e9" }, "Invalid description for archive v1"],
      [{ description: "x".repeat(1025) }, "Invalid description for archive v1"],
    ] as const;
    for (const [change, words] of cases) {
      await assert.rejects(
        vault.put({ ...base, ...change, body: () => chunked(new Uint8Array(1)) }),
        portError("InvalidParameterValueException", words),
      );
    }
    assert.deepEqual(await names(dir), [".incoming", ".jobs"]);
  });
});

Deno.test("local vault: a misaligned range is rejected with a message naming it", async () => {
  await withDir(async (dir) => {
    const vault = await LocalVault.open(dir);
    const put = await putBytes(vault, bytesOf(7, 2 * MIB + 10), "ranges");
    const cases = [
      [
        { start: 1, end: MIB - 1 },
        "range 1-1048575 for ranges.tar (2097162 bytes): start is not a multiple of 1 MiB",
      ],
      [
        { start: 0, end: MIB },
        "range 0-1048576 for ranges.tar (2097162 bytes): end + 1 is neither",
      ],
      [{ start: 0, end: 2 * MIB + 10 }, "end is past the archive's last byte 2097161"],
      [
        { start: MIB, end: 10 },
        "range 1048576-10 for ranges.tar (2097162 bytes): start is after end",
      ],
      [{ start: -MIB, end: MIB - 1 }, "bounds must be whole numbers >= 0"],
    ] as const;
    for (const [range, words] of cases) {
      await assert.rejects(
        vault.startRetrieval(put.remoteId, { range, description: "bad" }),
        portError("InvalidParameterValueException", words),
      );
    }
    assert.deepEqual(await names(`${dir}/.jobs`), []);
    const ok = await vault.startRetrieval(put.remoteId, {
      range: { start: 2 * MIB, end: 2 * MIB + 9 },
      description: "tail",
    });
    assert.equal(ok.state, "ready");
  });
});

Deno.test("local vault: a tree hash is given only for tree-hash aligned ranges", async () => {
  await withDir(async (dir) => {
    const vault = await LocalVault.open(dir);
    const data = bytesOf(8, 3 * MIB + MIB / 2);
    const put = await putBytes(vault, data, "hashes");
    const cases: [{ start: number; end: number } | undefined, boolean][] = [
      [undefined, true],
      [{ start: 0, end: data.length - 1 }, true],
      [{ start: 0, end: MIB - 1 }, true],
      [{ start: MIB, end: 2 * MIB - 1 }, true],
      [{ start: 0, end: 2 * MIB - 1 }, true],
      [{ start: 2 * MIB, end: data.length - 1 }, true],
      [{ start: 3 * MIB, end: data.length - 1 }, true],
      [{ start: 0, end: 3 * MIB - 1 }, false],
      [{ start: MIB, end: 3 * MIB - 1 }, false],
      [{ start: MIB, end: data.length - 1 }, false],
    ];
    for (const [range, aligned] of cases) {
      const job = await vault.startRetrieval(put.remoteId, {
        ...(range === undefined ? {} : { range }),
        description: "h",
      });
      const slice = range === undefined ? data : data.subarray(range.start, range.end + 1);
      assert.equal(
        job.treeHash,
        aligned ? referenceTreeHash(slice) : null,
        `range ${range ? `${range.start}-${range.end}` : "whole"}`,
      );
    }
  });
});

Deno.test("local vault: an unknown or malformed job id is ResourceNotFoundException", async () => {
  await withDir(async (dir) => {
    const vault = await LocalVault.open(dir);
    const unknown = jobId("0123456789abcdef0123456789abcdef");
    await assert.rejects(
      vault.retrieval(unknown),
      portError("ResourceNotFoundException", `"${unknown}"`),
    );
    await assert.rejects(
      vault.readRetrieval(unknown),
      portError("ResourceNotFoundException", `"${unknown}"`),
    );
    await Deno.writeTextFile(`${dir}/secret.json`, "{}");
    const sneaky = jobId("../secret");
    await assert.rejects(
      vault.retrieval(sneaky),
      portError("ResourceNotFoundException", '"../secret"'),
    );
  });
});

Deno.test("local vault: a remote id that is not <archiveId>.tar is InvalidParameterValueException", async () => {
  await withDir(async (dir) => {
    const vault = await LocalVault.open(dir);
    for (const bad of ["../etc/passwd.tar", "x.zip", ".jobs.tar", "a/b.tar"]) {
      const id = bad as RemoteArchiveId;
      await assert.rejects(
        vault.startRetrieval(id, { description: "" }),
        portError("InvalidParameterValueException", `"${bad}"`),
      );
      await assert.rejects(
        vault.delete(id),
        portError("InvalidParameterValueException", `"${bad}"`),
      );
    }
    await assert.rejects(
      vault.startRetrieval("missing.tar" as RemoteArchiveId, { description: "" }),
      portError("ResourceNotFoundException", "missing.tar"),
    );
  });
});

Deno.test("local vault: startRetrieval checks description and tier", async () => {
  await withDir(async (dir) => {
    const vault = await LocalVault.open(dir);
    const put = await putBytes(vault, bytesOf(9, 100), "desc");
    await assert.rejects(
      vault.startRetrieval(put.remoteId, { description: "line\nbreak" }),
      portError("InvalidParameterValueException", "Invalid description for retrieval"),
    );
    await assert.rejects(
      vault.startRetrieval(put.remoteId, { description: "", tier: "Fast" as "Bulk" }),
      portError("InvalidParameterValueException", 'Invalid retrieval tier "Fast"'),
    );
  });
});

Deno.test("local vault: a ready job whose archive was deleted has failed", async () => {
  await withDir(async (dir) => {
    const vault = await LocalVault.open(dir);
    const put = await putBytes(vault, bytesOf(10, 100), "doomed");
    const job = await vault.startRetrieval(put.remoteId, { description: "d" });
    await vault.delete(put.remoteId);
    const now = await vault.retrieval(job.jobId);
    assert.equal(now.state, "failed");
    assert.match(now.failure ?? "", /Archive doomed\.tar was deleted from the vault/);
    await assert.rejects(
      vault.readRetrieval(job.jobId),
      portError("RetrievalFailed", "Archive doomed.tar was deleted"),
    );
    assert.deepEqual(await names(dir), [".incoming", ".jobs"]);
  });
});

Deno.test("local vault: a retrieval read stops early when its signal aborts", async () => {
  await withDir(async (dir) => {
    const vault = await LocalVault.open(dir);
    const put = await putBytes(vault, bytesOf(11, 2 * MIB), "abort");
    const job = await vault.startRetrieval(put.remoteId, { description: "a" });
    const controller = new AbortController();
    const reader = (await vault.readRetrieval(job.jobId, { signal: controller.signal }))
      .getReader();
    const first = await reader.read();
    assert.equal(first.done, false);
    controller.abort(new Error("Restore cancelled: operator"));
    await assert.rejects(reader.read(), /Restore cancelled: operator/);
  });
});

Deno.test("local vault: a tar without sidecar is listed with what the file tells", async () => {
  await withDir(async (dir) => {
    const vault = await LocalVault.open(dir);
    const data = bytesOf(12, 1234);
    await Deno.writeFile(`${dir}/manual.tar`, data);
    await Deno.writeFile(`${dir}/not-an-archive.txt`, data);
    const listed = [];
    for await (const a of vault.list()) listed.push(a);
    assert.equal(listed.length, 1);
    assert.equal(listed[0]?.remoteId, "manual.tar");
    assert.equal(listed[0]?.size, 1234);
    assert.equal(listed[0]?.treeHash, null);
    const job = await vault.startRetrieval("manual.tar" as RemoteArchiveId, { description: "m" });
    assert.equal(job.treeHash, referenceTreeHash(data));
  });
});

Deno.test("local vault: archives and jobs survive reopening the vault", async () => {
  await withDir(async (dir) => {
    const vault = await LocalVault.open(dir);
    const data = bytesOf(13, 5000);
    const put = await putBytes(vault, data, "durable");
    const job = await vault.startRetrieval(put.remoteId, { description: "keep" });
    await vault.close();
    const reopened = await LocalVault.open(dir);
    assert.equal(reopened.location, vault.location);
    const again = await reopened.retrieval(job.jobId);
    assert.equal(again.state, "ready");
    assert.equal(again.description, "keep");
    assertBytes(await readAll(await reopened.readRetrieval(job.jobId)), data, "after reopen");
    assert.ok(await exists(`${dir}/.jobs/${job.jobId}.json`));
  });
});
