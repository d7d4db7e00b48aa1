/**
 * The S3 Glacier-class store against its test peer: `s3rver` (a real S3
 * server) behind the strict archive double in `tests/doubles/s3_archive.ts`.
 * Runs the ColdStore conformance suite for each storage class, then the
 * S3-specific behaviour: restores, multipart uploads, checksums, faults.
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { S3GlacierStore, type S3GlacierStoreOptions } from "../adapters/store/s3_glacier.ts";
import { ArchiveMismatchError, PortError } from "../core/errors.ts";
import { type ArchiveId, archiveId, jobId, type RemoteArchiveId } from "../core/ids.ts";
import type { S3StorageClass } from "../core/store_url.ts";
import {
  ManualClock,
  RESTORE_DELAY_MS,
  S3ArchiveDouble,
  type S3Operation,
} from "./doubles/s3_archive.ts";
import { referenceTreeHash, storeConformance } from "./store_conformance.ts";
import { assertBytes, bytesOf, FAST_RETRY, portError } from "./_helpers.ts";
import { chunked, readAll, stallingStream } from "./_streams.ts";

const MIB = 1024 * 1024;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const BUCKET = "coldpack-archives";
const START = Date.UTC(2026, 10, 22, 10, 0, 0);

interface Setup {
  readonly s3: S3ArchiveDouble;
  readonly store: S3GlacierStore;
  readonly clock: ManualClock;
  readonly cleanup: () => Promise<void>;
}

async function setup(
  storageClass: S3StorageClass,
  options: S3GlacierStoreOptions & { prefix?: string; bucket?: string } = {},
): Promise<Setup> {
  const clock = new ManualClock(START);
  const s3 = await S3ArchiveDouble.start({ clock });
  try {
    await s3.createBucket(BUCKET);
    const prefix = options.prefix ?? "ugc/archives";
    const store = await S3GlacierStore.open(
      `s3://${options.bucket ?? BUCKET}/${prefix}?storage-class=${storageClass}`,
      {
        ...s3.connection,
        clock,
        partRetry: FAST_RETRY,
        ...options,
      },
    );
    return {
      s3,
      store,
      clock,
      cleanup: async () => {
        await store.close();
        await s3.close();
      },
    };
  } catch (e) {
    await s3.close();
    throw e;
  }
}

storeConformance("s3 DEEP_ARCHIVE", async () => {
  const { store, clock, cleanup } = await setup("DEEP_ARCHIVE");
  return {
    store,
    cleanup,
    // Deep Archive restores take hours: the slowest tier is Bulk, 48 h.
    makeReady: () => {
      clock.advance(RESTORE_DELAY_MS.DEEP_ARCHIVE.Bulk);
      return Promise.resolve();
    },
  };
});

storeConformance("s3 GLACIER", async () => {
  const { s3, store, cleanup } = await setup("GLACIER");
  return {
    store,
    cleanup,
    makeReady: () => {
      s3.completeRestores(BUCKET);
      return Promise.resolve();
    },
  };
});

storeConformance("s3 GLACIER_IR", async () => {
  const { store, cleanup } = await setup("GLACIER_IR");
  return { store, cleanup };
});

// ---------------------------------------------------------------------------
// S3-specific behaviour.

let seq = 0;
function newId(): ArchiveId {
  return archiveId(`a${Date.now()}-${++seq}`);
}

function putBytes(
  store: S3GlacierStore,
  data: Uint8Array,
  options: { id?: ArchiveId; description?: string; signal?: AbortSignal } = {},
) {
  return store.put({
    archiveId: options.id ?? newId(),
    size: data.length,
    treeHash: referenceTreeHash(data),
    description: options.description ?? "coldpack test",
    body: () => chunked(data, [65_536, 7919]),
  }, options.signal ? { signal: options.signal } : {});
}

async function withSetup(
  storageClass: S3StorageClass,
  options: S3GlacierStoreOptions & { prefix?: string; bucket?: string },
  fn: (s: Setup) => Promise<void>,
): Promise<void> {
  const s = await setup(storageClass, options);
  try {
    await fn(s);
  } finally {
    await s.cleanup();
  }
}

function sha256b64(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("base64");
}

Deno.test("s3: put stores PREFIX/<archiveId> in the storage class, with checksum and metadata", async () => {
  await withSetup("DEEP_ARCHIVE", {}, async ({ s3, store }) => {
    const data = bytesOf(21, 70_000);
    const id = archiveId("20261122T100000.000Z-0a0b0c0d0e0f");
    const description = "  coldpack v1 id=x  files=3 100% ";
    const put = await putBytes(store, data, { id, description });
    assert.equal(put.remoteId, `ugc/archives/${id}`);
    assert.equal(put.size, data.length);
    assert.equal(put.treeHash, referenceTreeHash(data));
    const [obj, ...more] = s3.objects(BUCKET);
    assert.deepEqual(more, []);
    assert.equal(obj?.key, `ugc/archives/${id}`);
    assert.equal(obj?.storageClass, "DEEP_ARCHIVE");
    assert.equal(obj?.checksumSHA256, sha256b64(data));
    assert.equal(obj?.restore, "none");
    const listed = [];
    for await (const a of store.list()) listed.push(a);
    assert.deepEqual(listed.map((a) => [a.remoteId, a.size, a.treeHash, a.description]), [
      [put.remoteId, data.length, referenceTreeHash(data), description],
    ]);
    assert.equal(s3.requestCount("PutObject"), 1);
    assert.equal(store.location, `s3://${BUCKET}/ugc/archives?storage-class=DEEP_ARCHIVE`);
  });
});

Deno.test("s3: GET before the restore is InvalidObjectState, mapped to RetrievalNotReady", async () => {
  await withSetup("GLACIER", {}, async ({ s3, store, clock }) => {
    const data = bytesOf(22, 5000);
    const put = await putBytes(store, data);
    const job = await store.startRetrieval(put.remoteId, { description: "r-early", tier: "Bulk" });
    assert.equal(job.state, "in-progress");
    assert.equal(s3.objects(BUCKET)[0]?.restore, "ongoing");
    const gets = s3.requestCount("GetObject");
    await assert.rejects(
      store.readRetrieval(job.jobId),
      portError("RetrievalNotReady", false, "InvalidObjectState"),
    );
    assert.equal(s3.requestCount("GetObject"), gets + 1, "the GET was made and refused");
    clock.advance(RESTORE_DELAY_MS.GLACIER.Bulk - 1);
    assert.equal((await store.retrieval(job.jobId)).state, "in-progress");
    clock.advance(1);
    const ready = await store.retrieval(job.jobId);
    assert.equal(ready.state, "ready");
    assert.equal(ready.description, "r-early");
    // S3 rounds the expiry (ready + 7 days) up to midnight UTC.
    const expected = Math.ceil((START + RESTORE_DELAY_MS.GLACIER.Bulk + 7 * DAY) / DAY) * DAY;
    assert.equal(ready.expiresAt, expected);
    assert.ok(ready.completedAt !== null && ready.completedAt >= job.startedAt);
    assertBytes(await readAll(await store.readRetrieval(job.jobId)), data, "after the restore");
  });
});

Deno.test("s3: RestoreAlreadyInProgress and already-restored both give a job", async () => {
  await withSetup("GLACIER", {}, async ({ s3, store, clock }) => {
    const put = await putBytes(store, bytesOf(23, 3000));
    const first = await store.startRetrieval(put.remoteId, { description: "one" });
    const second = await store.startRetrieval(put.remoteId, { description: "two" });
    assert.equal(second.state, "in-progress", "409 RestoreAlreadyInProgress is a job under way");
    assert.equal(second.description, "two");
    assert.equal(s3.requestCount("RestoreObject"), 2);
    s3.completeRestores();
    const ready = await store.retrieval(first.jobId);
    assert.equal(ready.state, "ready");
    clock.advance(3 * DAY);
    const third = await store.startRetrieval(put.remoteId, { description: "three" });
    assert.equal(third.state, "ready", "200: already restored");
    assert.ok(third.expiresAt! > ready.expiresAt!, "the expiry moved");
    assert.equal(third.expiresAt, Math.ceil((clock.now() + 7 * DAY) / DAY) * DAY);
    assert.equal(s3.requestCount("RestoreObject"), 3);
    // Every job id still finds the object, whichever request started it.
    assert.equal((await store.retrieval(second.jobId)).state, "ready");
  });
});

Deno.test("s3: a restored copy expires; reading it then is RetrievalExpired", async () => {
  await withSetup("DEEP_ARCHIVE", { restoreDays: 2 }, async ({ s3, store, clock }) => {
    const data = bytesOf(24, 4000);
    const put = await putBytes(store, data);
    const job = await store.startRetrieval(put.remoteId, { description: "ttl" });
    clock.advance(RESTORE_DELAY_MS.DEEP_ARCHIVE.Standard);
    const ready = await store.retrieval(job.jobId);
    assert.equal(ready.state, "ready");
    assert.equal(ready.expiresAt, s3.objects(BUCKET)[0]?.restoreExpiresAt);
    assertBytes(await readAll(await store.readRetrieval(job.jobId)), data, "while restored");
    clock.set(ready.expiresAt!);
    const expired = await store.retrieval(job.jobId);
    assert.equal(expired.state, "expired");
    assert.equal(s3.objects(BUCKET)[0]?.restore, "expired");
    await assert.rejects(
      store.readRetrieval(job.jobId),
      portError("RetrievalExpired", false, "expired"),
    );
    const again = await store.startRetrieval(put.remoteId, { description: "ttl-2" });
    assert.equal(again.state, "in-progress", "a new restore starts (202)");
  });
});

Deno.test("s3: tiers: Expedited becomes Standard for DEEP_ARCHIVE, stays for GLACIER", async () => {
  await withSetup("DEEP_ARCHIVE", {}, async ({ s3, store }) => {
    const put = await putBytes(store, bytesOf(25, 100));
    await store.startRetrieval(put.remoteId, { description: "x", tier: "Expedited" });
    assert.equal(s3.objects(BUCKET)[0]?.restoreTier, "Standard");
    assert.equal(
      s3.objects(BUCKET)[0]?.restoreReadyAt,
      START + RESTORE_DELAY_MS.DEEP_ARCHIVE.Standard,
    );
  });
  await withSetup("GLACIER", {}, async ({ s3, store }) => {
    const put = await putBytes(store, bytesOf(26, 100));
    await store.startRetrieval(put.remoteId, { description: "x", tier: "Expedited" });
    assert.equal(s3.objects(BUCKET)[0]?.restoreTier, "Expedited");
  });
});

Deno.test("s3: GLACIER_IR is ready at once with no restore request", async () => {
  await withSetup("GLACIER_IR", {}, async ({ s3, store }) => {
    const data = bytesOf(27, 2000);
    const put = await putBytes(store, data);
    const job = await store.startRetrieval(put.remoteId, { description: "ir" });
    assert.equal(job.state, "ready");
    assert.equal(job.completedAt, job.startedAt);
    assert.equal(job.expiresAt, null);
    assert.equal(s3.requestCount("RestoreObject"), 0);
    assert.equal(s3.objects(BUCKET)[0]?.storageClass, "GLACIER_IR");
    assertBytes(await readAll(await store.readRetrieval(job.jobId)), data, "at once");
  });
});

const MULTIPART = { multipartThreshold: 6 * MIB, partSize: 5 * MIB, partConcurrency: 2 } as const;

Deno.test("s3: multipart above the threshold: parts, composite checksum, nothing left open", async () => {
  await withSetup("GLACIER", MULTIPART, async ({ s3, store }) => {
    const data = bytesOf(28, 12 * MIB + 123);
    const put = await putBytes(store, data, { description: "big one" });
    assert.equal(put.size, data.length);
    assert.equal(put.treeHash, referenceTreeHash(data));
    assert.equal(s3.requestCount("PutObject"), 0);
    assert.equal(s3.requestCount("CreateMultipartUpload"), 1);
    assert.equal(s3.requestCount("UploadPart"), 3);
    assert.equal(s3.requestCount("CompleteMultipartUpload"), 1);
    const parts = [0, 5 * MIB, 10 * MIB].map((off) =>
      createHash("sha256").update(data.subarray(off, off + 5 * MIB)).digest()
    );
    const composite = `${createHash("sha256").update(Buffer.concat(parts)).digest("base64")}-3`;
    assert.equal(s3.objects(BUCKET)[0]?.checksumSHA256, composite);
    assert.equal(s3.objects(BUCKET)[0]?.size, data.length);
    assert.deepEqual(s3.uploads(), []);
    const listed = [];
    for await (const a of store.list()) listed.push(a);
    assert.equal(listed[0]?.description, "big one");
    assert.equal(listed[0]?.treeHash, referenceTreeHash(data));
    const job = await store.startRetrieval(put.remoteId, { description: "mp" });
    s3.completeRestores();
    assertBytes(await readAll(await store.readRetrieval(job.jobId)), data, "multipart object");
  });
});

Deno.test("s3: a retryable part failure is retried, the put succeeds", async () => {
  await withSetup("DEEP_ARCHIVE", MULTIPART, async ({ s3, store }) => {
    s3.inject({ kind: "InternalError", op: "UploadPart" });
    s3.inject({ kind: "reset", op: "UploadPart" });
    s3.inject({ kind: "SlowDown", op: "UploadPart" });
    const data = bytesOf(29, 11 * MIB);
    const put = await putBytes(store, data);
    assert.equal(put.treeHash, referenceTreeHash(data));
    assert.equal(s3.requestCount("UploadPart"), 3 + 3, "three parts, three retried");
    assert.equal(s3.requestCount("CreateMultipartUpload"), 1);
    assert.equal(s3.objects(BUCKET).length, 1);
    assert.deepEqual(s3.uploads(), []);
  });
});

Deno.test("s3: a non-retryable part failure aborts the upload and stores nothing", async () => {
  await withSetup("GLACIER", MULTIPART, async ({ s3, store }) => {
    s3.inject({ kind: "badChecksum", op: "UploadPart" });
    await assert.rejects(putBytes(store, bytesOf(30, 11 * MIB)), (e: unknown) => {
      assert.ok(e instanceof ArchiveMismatchError, `expected ArchiveMismatchError, got ${e}`);
      assert.match(e.message, /S3 answered SHA-256 \S+ for part \d of ugc\/archives\//);
      return true;
    });
    assert.equal(s3.requestCount("AbortMultipartUpload"), 1);
    assert.deepEqual(s3.uploads(), []);
    assert.deepEqual(s3.objects(BUCKET), []);
    assert.equal(s3.requestCount("CompleteMultipartUpload"), 0);
  });
});

Deno.test("s3: parts that keep failing abort the upload with the service's code", async () => {
  await withSetup("GLACIER", MULTIPART, async ({ s3, store }) => {
    s3.inject({ kind: "InternalError", op: "UploadPart", count: 100 });
    await assert.rejects(
      putBytes(store, bytesOf(31, 11 * MIB)),
      portError("InternalError", true, "UploadPart of ugc/archives/"),
    );
    assert.deepEqual(s3.uploads(), []);
    assert.deepEqual(s3.objects(BUCKET), []);
  });
});

Deno.test("s3: a wrong composite checksum deletes the object: ArchiveMismatchError", async () => {
  await withSetup("GLACIER", MULTIPART, async ({ s3, store }) => {
    s3.inject({ kind: "badChecksum", op: "CompleteMultipartUpload" });
    await assert.rejects(putBytes(store, bytesOf(32, 11 * MIB)), (e: unknown) => {
      assert.ok(e instanceof ArchiveMismatchError, `expected ArchiveMismatchError, got ${e}`);
      assert.match(e.message, /composite SHA-256 .*-3 .*the object was deleted/);
      return true;
    });
    assert.deepEqual(s3.objects(BUCKET), []);
    assert.deepEqual(s3.uploads(), []);
  });
});

Deno.test("s3: a multipart body of the wrong size or tree hash is aborted before Complete", async () => {
  await withSetup("GLACIER", MULTIPART, async ({ s3, store }) => {
    const data = bytesOf(33, 11 * MIB);
    const cases = [
      {
        size: data.length + 1,
        treeHash: referenceTreeHash(data),
        words: /11534336 bytes but the archive declares 11534337/,
      },
      {
        size: data.length - 1,
        treeHash: referenceTreeHash(data),
        words: /at least 11534336 bytes but the archive declares 11534335/,
      },
      {
        size: data.length,
        treeHash: "0".repeat(64),
        words: /tree hash is [0-9a-f]{64} but the archive declares 0000/,
      },
    ];
    for (const c of cases) {
      await assert.rejects(
        store.put({
          archiveId: newId(),
          size: c.size,
          treeHash: c.treeHash,
          description: "",
          body: () => chunked(data, [MIB + 7]),
        }),
        (e: unknown) => e instanceof ArchiveMismatchError && c.words.test(e.message),
      );
    }
    assert.equal(s3.requestCount("CompleteMultipartUpload"), 0);
    assert.equal(s3.requestCount("AbortMultipartUpload"), 3);
    assert.deepEqual(s3.uploads(), []);
    assert.deepEqual(s3.objects(BUCKET), []);
  });
});

Deno.test("s3: a multipart put aborted by its signal aborts the upload", async () => {
  await withSetup("GLACIER", MULTIPART, async ({ s3, store }) => {
    const controller = new AbortController();
    const data = bytesOf(34, 11 * MIB);
    const body = stallingStream(
      data,
      6 * MIB,
      controller,
      new Error("Upload cancelled: shutting down"),
    );
    await assert.rejects(
      store.put({
        archiveId: newId(),
        size: data.length,
        treeHash: referenceTreeHash(data),
        description: "",
        body: () => body,
      }, { signal: controller.signal }),
      /Upload cancelled: shutting down/,
    );
    assert.equal(s3.requestCount("AbortMultipartUpload"), 1);
    assert.deepEqual(s3.uploads(), []);
    assert.deepEqual(s3.objects(BUCKET), []);
  });
});

Deno.test("s3: a wrong checksum answered to PutObject is ArchiveMismatchError, object deleted", async () => {
  await withSetup("DEEP_ARCHIVE", {}, async ({ s3, store }) => {
    s3.inject({ kind: "badChecksum", op: "PutObject" });
    const data = bytesOf(35, 3000);
    await assert.rejects(putBytes(store, data), (e: unknown) => {
      assert.ok(e instanceof ArchiveMismatchError, `expected ArchiveMismatchError, got ${e}`);
      assert.ok(e.message.includes(`the bytes sent have ${sha256b64(data)}`), e.message);
      return true;
    });
    assert.deepEqual(s3.objects(BUCKET), []);
  });
});

Deno.test("s3: a body that reads differently the second time is refused by S3 (BadDigest)", async () => {
  await withSetup("DEEP_ARCHIVE", {}, async ({ s3, store }) => {
    const data = bytesOf(36, 3000);
    const other = bytesOf(37, 3000);
    let calls = 0;
    await assert.rejects(
      store.put({
        archiveId: newId(),
        size: data.length,
        treeHash: referenceTreeHash(data),
        description: "",
        body: () => chunked(calls++ === 0 ? data : other),
      }),
      portError("BadDigest", false, "PutObject of ugc/archives/"),
    );
    assert.equal(calls, 2);
    assert.deepEqual(s3.objects(BUCKET), []);
  });
});

Deno.test("s3: a truncated GET body is a retryable TruncatedBody", async () => {
  await withSetup("GLACIER_IR", {}, async ({ s3, store }) => {
    const data = bytesOf(38, MIB);
    const put = await putBytes(store, data);
    const job = await store.startRetrieval(put.remoteId, { description: "t" });
    s3.inject({ kind: "truncate", op: "GetObject" });
    const stream = await store.readRetrieval(job.jobId);
    await assert.rejects(readAll(stream), portError("TruncatedBody", true, `of ${MIB} bytes`));
    assertBytes(await readAll(await store.readRetrieval(job.jobId)), data, "read again");
  });
});

Deno.test("s3: a missing bucket is NoSuchBucket naming the bucket", async () => {
  await withSetup("DEEP_ARCHIVE", { bucket: "no-such-bucket" }, async ({ store }) => {
    await assert.rejects(
      putBytes(store, bytesOf(39, 100)),
      portError("NoSuchBucket", false, "s3://no-such-bucket/"),
    );
    await assert.rejects(
      (async () => {
        for await (const _ of store.list()) { /* nothing */ }
      })(),
      portError("NoSuchBucket", false, "no-such-bucket"),
    );
  });
});

Deno.test("s3: unknown credentials are not retryable and the secret stays out of the message", async () => {
  await withSetup(
    "DEEP_ARCHIVE",
    { credentials: { accessKeyId: "AKIDWRONG", secretAccessKey: "sup3r-s3cret-value" } },
    async ({ store }) => {
      await assert.rejects(putBytes(store, bytesOf(40, 100)), (e: unknown) => {
        portError("InvalidAccessKeyId", false)(e);
        assert.ok(!(e as Error).message.includes("sup3r-s3cret-value"));
        return true;
      });
    },
  );
});

Deno.test("s3: each fault class maps to its code and retryability", async () => {
  await withSetup("GLACIER", {}, async ({ s3, store }) => {
    const put = await putBytes(store, bytesOf(41, 2000));
    const job = await store.startRetrieval(put.remoteId, { description: "f" });
    // HEAD answers carry no error body: S3's generic code for the status.
    const cases = [
      ["InternalError", "InternalError", "InternalError", true],
      ["SlowDown", "SlowDown", "ServiceUnavailable", true],
      ["reset", "ECONNRESET", "ECONNRESET", true],
    ] as const;
    // Deno's HTTP client re-sends once, unseen, a request whose reused
    // keep-alive connection was reset; two resets reach the adapter.
    const times = (kind: string) => (kind === "reset" ? 2 : 1);
    const fault = async (
      kind: (typeof cases)[number][0],
      op: S3Operation,
      call: () => Promise<unknown>,
      check: (e: unknown) => boolean,
    ) => {
      s3.inject({ kind, op, count: op === "PutObject" ? 1 : times(kind) });
      await assert.rejects(call(), check);
      s3.clearFaults();
    };
    for (const [kind, code, headCode, retryable] of cases) {
      await fault(
        kind,
        "HeadObject",
        () => store.retrieval(job.jobId),
        portError(headCode, retryable, "HeadObject (retrieval)"),
      );
      await fault(
        kind,
        "PutObject",
        () => putBytes(store, bytesOf(42, 100)),
        portError(code, retryable, "PutObject"),
      );
      await fault(
        kind,
        "RestoreObject",
        () => store.startRetrieval(put.remoteId, { description: "f" }),
        portError(code, retryable, "RestoreObject"),
      );
      await fault(
        kind,
        "ListObjectsV2",
        async () => {
          for await (const _ of store.list()) { /* nothing */ }
        },
        portError(code, retryable, "ListObjectsV2"),
      );
      await fault(
        kind,
        "DeleteObject",
        () => store.delete(put.remoteId),
        portError(code, retryable, "DeleteObject"),
      );
    }
    assert.equal(s3.objects(BUCKET).length, 1, "no faulted put stored anything");
  });
});

Deno.test("s3: a slow answer gives way to the caller's signal", async () => {
  await withSetup("GLACIER", {}, async ({ s3, store }) => {
    const put = await putBytes(store, bytesOf(43, 2000));
    const job = await store.startRetrieval(put.remoteId, { description: "slow" });
    s3.inject({ kind: "slow", op: "HeadObject", delayMs: 30_000 });
    const controller = new AbortController();
    const pending = store.retrieval(job.jobId, { signal: controller.signal });
    while (s3.requestCount("HeadObject") < 2) await new Promise((r) => setTimeout(r, 5));
    controller.abort(new Error("Gave up waiting: operator"));
    await assert.rejects(pending, /Gave up waiting: operator/);
  });
});

Deno.test("s3: a job id holds everything: another store instance follows it", async () => {
  await withSetup("DEEP_ARCHIVE", {}, async ({ s3, store, clock }) => {
    const data = bytesOf(44, 1000);
    const put = await putBytes(store, data);
    const job = await store.startRetrieval(put.remoteId, { description: "r20261122-abc" });
    const other = await S3GlacierStore.open(store.location, { ...s3.connection, clock });
    try {
      const seen = await other.retrieval(job.jobId);
      assert.equal(seen.state, "in-progress");
      assert.equal(seen.description, "r20261122-abc");
      assert.equal(seen.remoteId, put.remoteId);
      assert.equal(seen.startedAt, job.startedAt);
      clock.advance(RESTORE_DELAY_MS.DEEP_ARCHIVE.Standard);
      assertBytes(await readAll(await other.readRetrieval(job.jobId)), data, "other instance");
    } finally {
      await other.close();
    }
  });
});

Deno.test("s3: ids outside the prefix, forged jobs, ranges and bad descriptions are refused", async () => {
  await withSetup("DEEP_ARCHIVE", {}, async ({ store }) => {
    const put = await putBytes(store, bytesOf(45, 100));
    for (const bad of ["other/x", "ugc/archives/../x", "ugc/archives/a/b", "x"]) {
      await assert.rejects(
        store.startRetrieval(bad as RemoteArchiveId, { description: "" }),
        portError("InvalidParameterValueException", false, `"${bad}"`),
      );
      await assert.rejects(
        store.delete(bad as RemoteArchiveId),
        portError("InvalidParameterValueException", false, `"${bad}"`),
      );
    }
    const forged = jobId(
      Buffer.from(JSON.stringify({ v: 1, k: "elsewhere/x", d: "", t: 0, n: 1 })).toString(
        "base64url",
      ),
    );
    await assert.rejects(store.retrieval(forged), portError("ResourceNotFoundException", false));
    await assert.rejects(
      store.startRetrieval(put.remoteId, { description: "", range: { start: 0, end: 99 } }),
      (e: unknown) => e instanceof RangeError && e.message.includes("0-99"),
    );
    await assert.rejects(
      store.startRetrieval(put.remoteId, { description: "caf\u00e9" }),
      (e: unknown) => e instanceof RangeError && e.message.includes("printable ASCII"),
    );
    await assert.rejects(
      store.put({
        archiveId: newId(),
        size: 1,
        treeHash: referenceTreeHash(new Uint8Array(1)),
        description: "x".repeat(1025),
        body: () => chunked(new Uint8Array(1)),
      }),
      (e: unknown) => e instanceof RangeError && e.message.includes("1,024"),
    );
  });
});

Deno.test("s3: list pages through ListObjectsV2 and skips what is not an archive", async () => {
  await withSetup("GLACIER", { listPageSize: 2, listConcurrency: 2 }, async ({ s3, store }) => {
    const puts = [];
    for (let i = 0; i < 5; i++) puts.push(await putBytes(store, bytesOf(50 + i, 100 + i)));
    // Something else under the prefix (a "folder") and beside it.
    const foreign = await S3GlacierStore.open(
      `s3://${BUCKET}/ugc/archives/sub?storage-class=GLACIER`,
      s3.connection,
    );
    try {
      await putBytes(foreign, bytesOf(60, 10));
    } finally {
      await foreign.close();
    }
    const before = s3.requestCount("ListObjectsV2");
    const listed = [];
    for await (const a of store.list()) listed.push(a);
    assert.deepEqual(listed.map((a) => a.remoteId).sort(), puts.map((p) => p.remoteId).sort());
    assert.equal(s3.requestCount("ListObjectsV2") - before, 3);
    for (const a of listed) {
      assert.equal(
        a.treeHash,
        puts.find((p) => p.remoteId === a.remoteId)?.treeHash,
      );
    }
  });
});

Deno.test("s3: under a seeded fault rate, retried puts all land intact", async () => {
  const { withRetryStore } = await import("../core/retry.ts");
  await withSetup("DEEP_ARCHIVE", {}, async ({ s3, store }) => {
    s3.setFaultRate({ rate: 0.3, seed: 7, kinds: ["InternalError", "SlowDown", "reset"] });
    const resilient = withRetryStore(store, {
      attempts: 10,
      baseMs: 1,
      maxMs: 2,
      clock: FAST_RETRY.clock,
      putTimeoutMs: 0,
      callTimeoutMs: 0,
    });
    const expected = new Map<string, string>();
    for (let i = 0; i < 12; i++) {
      const data = bytesOf(70 + i, 1000 + i * 37);
      const put = await resilient.put({
        archiveId: newId(),
        size: data.length,
        treeHash: referenceTreeHash(data),
        description: `load ${i}`,
        body: () => chunked(data, [333]),
      });
      expected.set(put.remoteId, put.treeHash);
    }
    s3.setFaultRate(null);
    const objects = s3.objects(BUCKET);
    assert.equal(objects.length, 12);
    const listed = new Map<string, string | null>();
    for await (const a of store.list()) listed.set(a.remoteId, a.treeHash);
    assert.deepEqual(listed, expected);
    assert.ok(s3.requestCount("PutObject") > 12, "some puts were faulted and retried");
  });
});

Deno.test("s3: with the packer's SHA-256 the body is read once; a wrong one is BadDigest", async () => {
  await withSetup("GLACIER", {}, async ({ s3, store }) => {
    const data = bytesOf(42, 300_000);
    let readings = 0;
    const archive = {
      archiveId: newId(),
      size: data.length,
      treeHash: referenceTreeHash(data),
      sha256: createHash("sha256").update(data).digest("hex"),
      description: "coldpack test",
      body: () => {
        readings++;
        return chunked(data, [65_536]);
      },
    };
    await store.put(archive);
    assert.equal(readings, 1);
    assert.equal(s3.objects(BUCKET)[0]?.checksumSHA256, sha256b64(data));
    await assert.rejects(
      store.put({ ...archive, archiveId: newId(), sha256: "0".repeat(64) }),
      (e: unknown) => e instanceof PortError && e.code === "BadDigest" && !e.retryable,
    );
    assert.equal(s3.objects(BUCKET).length, 1);
  });
});

Deno.test("s3: a single put whose body is shorter or longer than declared fails, no crash", async () => {
  // With the packer's SHA-256 given, the body is read once, while it is sent:
  // the size check fires inside the upload stream and must abort the request.
  await withSetup("GLACIER", {}, async ({ s3, store }) => {
    const data = bytesOf(35, 300_000);
    const sha256 = createHash("sha256").update(data).digest("hex");
    for (const size of [data.length + 10, data.length - 10]) {
      await assert.rejects(
        store.put({
          archiveId: newId(),
          size,
          treeHash: referenceTreeHash(data),
          sha256,
          description: "",
          body: () => chunked(data, [65_536]),
        }),
        (e: unknown) =>
          e instanceof ArchiveMismatchError && /bytes but the archive declares/.test(e.message),
      );
    }
    assert.deepEqual(s3.objects(BUCKET), []);
  });
});
