/**
 * The conformance suite every {@linkcode ColdStore} implementation must pass.
 * It speaks only the ColdStore interface, so that the local vault, the
 * Glacier vault adapter and the S3 adapter (each against its test double)
 * are held to the same behaviour.
 *
 * @example
 * ```ts
 * storeConformance("local vault", async () => {
 *   const dir = await Deno.makeTempDir();
 *   const store = await LocalVault.open(dir);
 *   return { store, cleanup: () => Deno.remove(dir, { recursive: true }) };
 * });
 * ```
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import type { ColdStore, PutResult, RetrievalJob } from "../core/ports.ts";
import { ArchiveMismatchError, PortError } from "../core/errors.ts";
import { type ArchiveId, hex, type JobId, jobId, newArchiveId } from "../core/ids.ts";
import { assertBytes, bytesOf, fixtureTests } from "./_helpers.ts";
import { chunked, readAll } from "./_streams.ts";

/** A freshly opened, empty store for one test. */
export interface ConformanceSubject {
  readonly store: ColdStore;
  /** Closes the store and removes whatever the test left behind. */
  readonly cleanup: () => Promise<void>;
  /**
   * Makes an in-progress retrieval ready (advances a fake clock, completes a
   * job in a test double). Required when the store does not answer `ready`
   * at once.
   */
  readonly makeReady?: (jobId: JobId) => Promise<void>;
}

const MIB = 1024 * 1024;

/**
 * Registers the ColdStore conformance tests, each named `<name>: ...`.
 * `open` is called once per test and must give an empty store.
 */
export function storeConformance(name: string, open: () => Promise<ConformanceSubject>): void {
  const test = fixtureTests(name, open, { teardown: (subject) => subject.cleanup() });

  test("describes itself", ({ store }) => {
    assert.equal(typeof store.location, "string");
    assert.ok(/^[a-z0-9]+:\/\//.test(store.location), `location ${store.location} is not a URL`);
    assert.equal(typeof store.capabilities.rangedRetrieval, "boolean");
    assert.ok(
      Number.isSafeInteger(store.capabilities.rangeAlignment) &&
        store.capabilities.rangeAlignment > 0,
      `rangeAlignment ${store.capabilities.rangeAlignment} is not a positive integer`,
    );
    return Promise.resolve();
  });

  test("put answers the size and tree hash of the bytes", async ({ store }) => {
    const data = bytesOf(1, 3000);
    const result = await put(store, data);
    assert.equal(result.size, 3000);
    assert.equal(result.treeHash, referenceTreeHash(data));
    assert.equal(result.treeHash, createHash("sha256").update(data).digest("hex"));
    assert.ok(result.remoteId.length > 0);
  });

  test("put streams a body of several MiB in odd chunk sizes", async (subject) => {
    const { store } = subject;
    const data = bytesOf(2, 5 * MIB + 12_345);
    const result = await put(store, data, { chunks: [1, 7919, 65_539, MIB + 1, 3] });
    assert.equal(result.size, data.length);
    assert.equal(result.treeHash, referenceTreeHash(data));
    const job = await ready(
      subject,
      await store.startRetrieval(result.remoteId, { description: "big" }),
    );
    assertBytes(await readAll(await store.readRetrieval(job.jobId)), data, "whole archive");
  });

  test("put rejects a body shorter than declared and stores nothing", async ({ store }) => {
    const data = bytesOf(3, 2000);
    await assert.rejects(
      put(store, data, { size: 2500, treeHash: referenceTreeHash(data) }),
      (e: unknown) => {
        assert.ok(e instanceof ArchiveMismatchError, `expected ArchiveMismatchError, got ${e}`);
        assert.match(e.message, /2000/);
        assert.match(e.message, /2500/);
        return true;
      },
    );
    assert.deepEqual(await listAll(store), []);
  });

  test("put rejects a body longer than declared and stores nothing", async ({ store }) => {
    const data = bytesOf(4, 2000);
    await assert.rejects(
      put(store, data, { size: 1999, treeHash: referenceTreeHash(data.subarray(0, 1999)) }),
      (e: unknown) => {
        assert.ok(e instanceof ArchiveMismatchError, `expected ArchiveMismatchError, got ${e}`);
        assert.match(e.message, /2000/);
        assert.match(e.message, /1999/);
        return true;
      },
    );
    assert.deepEqual(await listAll(store), []);
  });

  test("put never confirms a tree hash it did not receive", async ({ store }) => {
    const data = bytesOf(5, 5000);
    const wrong = referenceTreeHash(bytesOf(6, 5000));
    let result: PutResult | null = null;
    try {
      result = await put(store, data, { treeHash: wrong });
    } catch (e) {
      assert.ok(e instanceof ArchiveMismatchError, `expected ArchiveMismatchError, got ${e}`);
      assert.match(e.message, /tree hash/);
      assert.deepEqual(await listAll(store), []);
    }
    if (result !== null) assert.equal(result.treeHash, referenceTreeHash(data));
  });

  test("put gives up when its signal aborts midway and stores nothing", async ({ store }) => {
    const controller = new AbortController();
    const data = bytesOf(7, MIB);
    let sent = false;
    const body = new ReadableStream<Uint8Array>({
      pull(c) {
        if (sent) {
          controller.abort();
          return new Promise(() => {}); // stalls until cancelled
        }
        sent = true;
        c.enqueue(data.subarray(0, 1000));
      },
    });
    await assert.rejects(
      store.put({ ...meta(data), body: () => body }, { signal: controller.signal }),
      (e: unknown) => e instanceof DOMException && e.name === "AbortError",
    );
    assert.deepEqual(await listAll(store), []);
  });

  test("list shows each archive put, with its facts", async ({ store }) => {
    const a = bytesOf(8, 1500);
    const b = bytesOf(9, MIB + 17);
    const pa = await put(store, a, { description: "coldpack v1 first" });
    const pb = await put(store, b, { description: "coldpack v1 second" });
    const listed = await listAll(store);
    assert.equal(listed.length, 2);
    for (
      const [p, data, description] of [[pa, a, "coldpack v1 first"], [
        pb,
        b,
        "coldpack v1 second",
      ]] as const
    ) {
      const entry = listed.find((x) => x.remoteId === p.remoteId);
      assert.ok(entry, `list lacks ${p.remoteId}`);
      assert.equal(entry.size, data.length);
      if (entry.treeHash !== null) assert.equal(entry.treeHash, referenceTreeHash(data));
      assert.equal(entry.description, description);
      assert.ok(Number.isFinite(entry.createdAt) && entry.createdAt >= 0);
    }
  });

  test("delete removes one archive, leaves the others, and is idempotent", async ({ store }) => {
    const pa = await put(store, bytesOf(10, 1000));
    const pb = await put(store, bytesOf(11, 1000));
    await store.delete(pa.remoteId);
    assert.deepEqual((await listAll(store)).map((x) => x.remoteId), [pb.remoteId]);
    await store.delete(pa.remoteId);
    assert.deepEqual((await listAll(store)).map((x) => x.remoteId), [pb.remoteId]);
    await store.delete(pb.remoteId);
    assert.deepEqual(await listAll(store), []);
  });

  test("a whole retrieval reads back the exact bytes, whole and in part", async (subject) => {
    const { store } = subject;
    const data = bytesOf(12, 2 * MIB + 333);
    const p = await put(store, data);
    const started = await store.startRetrieval(p.remoteId, {
      description: "whole-1",
      tier: "Bulk",
    });
    assert.equal(started.remoteId, p.remoteId);
    assert.equal(started.range, null);
    assert.equal(started.description, "whole-1");
    assert.ok(Number.isFinite(started.startedAt));
    const job = await ready(subject, started);
    assert.ok(job.completedAt !== null, "a ready job has completedAt");
    if (job.expiresAt !== null) assert.ok(job.expiresAt > job.startedAt);
    if (job.treeHash !== null) assert.equal(job.treeHash, referenceTreeHash(data));
    assertBytes(await readAll(await store.readRetrieval(job.jobId)), data, "whole archive");
    const part = { start: 1000, end: MIB + 5 };
    assertBytes(
      await readAll(await store.readRetrieval(job.jobId, { range: part })),
      data.subarray(part.start, part.end + 1),
      "bytes 1000-1048581",
    );
    const last = { start: data.length - 1, end: data.length - 1 };
    assertBytes(
      await readAll(await store.readRetrieval(job.jobId, { range: last })),
      data.subarray(data.length - 1),
      "last byte",
    );
  });

  test("a ranged retrieval reads back the exact bytes of its range", async (subject) => {
    const { store } = subject;
    if (!store.capabilities.rangedRetrieval) return; // whole-archive stores: covered above
    const unit = store.capabilities.rangeAlignment;
    const data = bytesOf(13, 3 * unit + unit / 2);
    const p = await put(store, data);
    const ranges = [
      { start: unit, end: 2 * unit - 1 }, // tree-hash aligned
      { start: 2 * unit, end: data.length - 1 }, // runs to the end
      { start: unit, end: 3 * unit - 1 }, // not tree-hash aligned (starts at an odd unit)
    ];
    for (const range of ranges) {
      const label = `range ${range.start}-${range.end}`;
      const started = await store.startRetrieval(p.remoteId, { range, description: "ranged" });
      assert.deepEqual(started.range, range, label);
      const job = await ready(subject, started);
      const expected = data.subarray(range.start, range.end + 1);
      if (job.treeHash !== null) assert.equal(job.treeHash, referenceTreeHash(expected), label);
      assertBytes(await readAll(await store.readRetrieval(job.jobId)), expected, label);
      const inner = {
        start: 10,
        end: unit + 10 < expected.length ? unit + 10 : expected.length - 1,
      };
      assertBytes(
        await readAll(await store.readRetrieval(job.jobId, { range: inner })),
        expected.subarray(inner.start, inner.end + 1),
        `${label}, read ${inner.start}-${inner.end}`,
      );
    }
  });

  test("a misaligned retrieval range is InvalidParameterValueException", async ({ store }) => {
    if (!store.capabilities.rangedRetrieval) return;
    const unit = store.capabilities.rangeAlignment;
    const size = 2 * unit + 100;
    const p = await put(store, bytesOf(14, size));
    const bad = [
      { start: 1, end: unit - 1 }, // start not aligned
      { start: 0, end: unit }, // end + 1 not aligned and not the size
      { start: unit, end: size }, // past the end
      { start: unit, end: unit - 1 }, // start after end
    ];
    for (const range of bad) {
      await assert.rejects(
        store.startRetrieval(p.remoteId, { range, description: "bad" }),
        (e: unknown) =>
          isPortError(
            e,
            "InvalidParameterValueException",
            false,
            `range ${range.start}-${range.end}`,
          ),
      );
    }
  });

  test("a retrieval of an unknown archive is ResourceNotFoundException", async ({ store }) => {
    const p = await put(store, bytesOf(15, 1000));
    await store.delete(p.remoteId);
    await assert.rejects(
      store.startRetrieval(p.remoteId, { description: "gone" }),
      (e: unknown) => isPortError(e, "ResourceNotFoundException", false, p.remoteId),
    );
  });

  test("reading a retrieval before it is ready is RetrievalNotReady", async (subject) => {
    const { store } = subject;
    const data = bytesOf(16, 4000);
    const p = await put(store, data);
    const started = await store.startRetrieval(p.remoteId, { description: "early" });
    if (started.state === "ready") return; // a store without delay: nothing to wait for
    assert.equal(started.state, "in-progress");
    assert.equal(started.completedAt, null);
    const again = await store.retrieval(started.jobId);
    assert.equal(again.state, "in-progress");
    await assert.rejects(
      store.readRetrieval(started.jobId),
      (e: unknown) => isPortError(e, "RetrievalNotReady", false, "early read"),
    );
    const job = await ready(subject, again);
    assertBytes(await readAll(await store.readRetrieval(job.jobId)), data, "after ready");
  });

  test("reading outside the retrieved range is a RangeError", async (subject) => {
    const { store } = subject;
    const data = bytesOf(17, 5000);
    const p = await put(store, data);
    const job = await ready(
      subject,
      await store.startRetrieval(p.remoteId, { description: "oob" }),
    );
    for (const range of [{ start: 0, end: 5000 }, { start: 10, end: 9 }, { start: -1, end: 3 }]) {
      await assert.rejects(
        store.readRetrieval(job.jobId, { range }),
        (e: unknown) =>
          e instanceof RangeError && e.message.includes(`${range.start}-${range.end}`),
      );
    }
  });

  test("an unknown job is ResourceNotFoundException or expired", async ({ store }) => {
    const unknown = jobId("0123456789abcdef0123456789abcdef");
    let job: RetrievalJob | null = null;
    try {
      job = await store.retrieval(unknown);
    } catch (e) {
      assert.ok(isPortError(e, "ResourceNotFoundException", false, "unknown job"));
    }
    if (job !== null) assert.equal(job.state, "expired");
  });
}

/** The Glacier SHA-256 tree hash, written out plainly as a reference for the stores' own. */
export function referenceTreeHash(data: Uint8Array): string {
  let level: Uint8Array[] = [];
  for (let off = 0; off < data.length || off === 0; off += MIB) {
    level.push(createHash("sha256").update(data.subarray(off, off + MIB)).digest());
  }
  while (level.length > 1) {
    const next: Uint8Array[] = [];
    for (let i = 0; i < level.length; i += 2) {
      const left = level[i]!;
      const right = level[i + 1];
      next.push(
        right === undefined ? left : createHash("sha256").update(left).update(right).digest(),
      );
    }
    level = next;
  }
  return hex(level[0]!);
}

function meta(data: Uint8Array) {
  return {
    archiveId: newId(),
    size: data.length,
    treeHash: referenceTreeHash(data),
    description: "coldpack test",
  };
}

function newId(): ArchiveId {
  return newArchiveId(Date.now(), crypto.getRandomValues(new Uint8Array(6)));
}

function put(
  store: ColdStore,
  data: Uint8Array,
  options: { size?: number; treeHash?: string; description?: string; chunks?: number[] } = {},
): Promise<PutResult> {
  return store.put({
    archiveId: newId(),
    size: options.size ?? data.length,
    treeHash: options.treeHash ?? referenceTreeHash(data),
    description: options.description ?? "coldpack test",
    body: () => chunked(data, options.chunks),
  });
}

async function listAll(store: ColdStore) {
  const out = [];
  for await (const a of store.list()) out.push(a);
  return out;
}

/**
 * Waits for a job to be ready: when it is still in progress, checks that it
 * cannot be read yet, asks the subject to make it ready, and checks it is.
 */
async function ready(subject: ConformanceSubject, job: RetrievalJob): Promise<RetrievalJob> {
  if (job.state === "ready") return job;
  assert.equal(job.state, "in-progress", `job ${job.jobId}`);
  await assert.rejects(
    subject.store.readRetrieval(job.jobId),
    (e: unknown) => isPortError(e, "RetrievalNotReady", false, `job ${job.jobId}`),
  );
  assert.ok(subject.makeReady, `job ${job.jobId} is in progress and the subject has no makeReady`);
  await subject.makeReady(job.jobId);
  const now = await subject.store.retrieval(job.jobId);
  assert.equal(now.state, "ready", `job ${job.jobId} after makeReady`);
  return now;
}

function isPortError(e: unknown, code: string, retryable: boolean, label: string): true {
  assert.ok(e instanceof PortError, `${label}: expected PortError ${code}, got ${e}`);
  assert.equal(e.code, code, `${label}: code`);
  assert.equal(e.retryable, retryable, `${label}: retryable`);
  return true;
}
