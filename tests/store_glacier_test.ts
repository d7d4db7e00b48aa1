/**
 * The Glacier vault adapter against the Glacier double: the shared ColdStore
 * conformance suite (jobs done at once, and jobs taking 4 hours on the
 * double's clock), then what only Glacier has: multipart uploads, part
 * retries, tree hashes answered by the service, truncated downloads, job
 * expiry, SNS topics, error mapping, inventories.
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { GlacierStore, type GlacierStoreOptions, partSizeFor } from "../adapters/store/glacier.ts";
import { ArchiveMismatchError, PortError } from "../core/errors.ts";
import { archiveId, newArchiveId, type RemoteArchiveId } from "../core/ids.ts";
import type { Clock, ColdStore, PutResult } from "../core/ports.ts";
import { parseStoreUrl } from "../core/store_url.ts";
import {
  type FaultKind,
  GlacierDouble,
  type GlacierOperation,
  TEST_CREDENTIALS,
} from "./doubles/glacier.ts";
import { referenceTreeHash, storeConformance } from "./store_conformance.ts";
import { assertBytes, bytesOf } from "./_helpers.ts";
import { chunked, readAll, stallingStream } from "./_streams.ts";

const MIB = 1024 * 1024;
const HOUR = 3_600_000;
const VAULT = "coldpack-test";

/** A clock that is the double's: sleeping moves the double's time on at once. */
function doubleClock(glacier: GlacierDouble): Clock {
  return {
    now: () => glacier.now(),
    sleep(ms: number, signal?: AbortSignal) {
      signal?.throwIfAborted();
      glacier.advance(ms);
      return Promise.resolve();
    },
  };
}

function openStore(glacier: GlacierDouble, options: GlacierStoreOptions = {}): GlacierStore {
  const clock = doubleClock(glacier);
  return new GlacierStore({ region: "us-east-1", vault: VAULT }, {
    endpoint: glacier.endpoint,
    credentials: TEST_CREDENTIALS,
    clock,
    retry: { attempts: 4, baseMs: 1, maxMs: 1, clock },
    inventoryPollMs: 15 * 60_000,
    ...options,
  });
}

storeConformance("glacier vault, jobs done at once", async () => {
  const glacier = await GlacierDouble.start({ vaults: [VAULT] });
  const store = openStore(glacier);
  return {
    store,
    cleanup: async () => {
      await store.close();
      await glacier.close();
    },
  };
});

storeConformance("glacier vault, jobs taking 4 hours", async () => {
  const glacier = await GlacierDouble.start({ vaults: [VAULT], jobDelayMs: 4 * HOUR });
  const store = openStore(glacier, { multipartThreshold: 2 * MIB, partSize: MIB });
  return {
    store,
    cleanup: async () => {
      await store.close();
      await glacier.close();
    },
    makeReady: () => {
      glacier.advance(4 * HOUR);
      return Promise.resolve();
    },
  };
});

/** Runs `fn` with a fresh double (vault created) and a store on it. */
async function withGlacier(
  fn: (glacier: GlacierDouble, store: GlacierStore) => Promise<void>,
  options: { store?: GlacierStoreOptions; jobDelayMs?: number } = {},
): Promise<void> {
  const glacier = await GlacierDouble.start({
    vaults: [VAULT],
    jobDelayMs: options.jobDelayMs ?? 0,
  });
  const store = openStore(glacier, options.store);
  try {
    await fn(glacier, store);
  } finally {
    await store.close();
    await glacier.close();
  }
}

function putBytes(
  store: ColdStore,
  data: Uint8Array,
  options: { description?: string; chunks?: number[]; signal?: AbortSignal } = {},
): Promise<PutResult> {
  return store.put({
    archiveId: newArchiveId(Date.now(), crypto.getRandomValues(new Uint8Array(6))),
    size: data.length,
    treeHash: referenceTreeHash(data),
    description: options.description ?? "coldpack test",
    body: () => chunked(data, options.chunks ?? [65_536]),
  }, options.signal ? { signal: options.signal } : {});
}

function portError(code: string, retryable: boolean, words?: string | RegExp) {
  return (e: unknown) => {
    assert.ok(e instanceof PortError, `expected PortError ${code}, got ${e}`);
    assert.equal(e.code, code, `code of: ${e.message}`);
    assert.equal(e.retryable, retryable, `retryable of: ${e.message}`);
    if (typeof words === "string") assert.ok(e.message.includes(words), e.message);
    else if (words) assert.match(e.message, words);
    return true;
  };
}

Deno.test("glacier: location is glacier://REGION/VAULT and the URL parser agrees", async () => {
  await withGlacier((_glacier, store) => {
    assert.equal(store.location, `glacier://us-east-1/${VAULT}`);
    const spec = parseStoreUrl(store.location);
    assert.equal(spec.kind, "glacier");
    assert.ok(spec.kind === "glacier" && spec.region === "us-east-1" && spec.vault === VAULT);
    assert.deepEqual(store.capabilities, { rangedRetrieval: true, rangeAlignment: MIB });
    return Promise.resolve();
  });
});

Deno.test("glacier: a small archive is one UploadArchive with our tree hash", async () => {
  await withGlacier(async (glacier, store) => {
    const data = bytesOf(1, 3 * MIB + 5);
    const put = await putBytes(store, data, { description: "coldpack v1 a=1" });
    assert.equal(put.treeHash, referenceTreeHash(data));
    assert.equal(glacier.requestCount("UploadArchive"), 1);
    assert.equal(glacier.requestCount("InitiateMultipartUpload"), 0);
    const [held] = glacier.archives(VAULT);
    assert.equal(held?.archiveId, put.remoteId);
    assert.equal(held?.description, "coldpack v1 a=1");
    assertBytes(glacier.archiveBytes(VAULT, put.remoteId), data, "stored bytes");
  });
});

Deno.test("glacier: above the threshold the upload is multipart, parts in parallel", async () => {
  await withGlacier(async (glacier, store) => {
    const data = bytesOf(2, 10 * MIB + 123);
    glacier.barrier("UploadMultipartPart", 4);
    const put = await putBytes(store, data, { chunks: [700_001, 3, 65_536] });
    assert.equal(put.treeHash, referenceTreeHash(data));
    assert.equal(glacier.requestCount("UploadArchive"), 0);
    assert.equal(glacier.requestCount("InitiateMultipartUpload"), 1);
    assert.equal(glacier.requestCount("UploadMultipartPart"), 11); // 10 x 1 MiB + 123 bytes
    assert.equal(glacier.requestCount("CompleteMultipartUpload"), 1);
    assert.equal(glacier.maxInFlight("UploadMultipartPart"), 4);
    assert.deepEqual(glacier.uploads(VAULT), []);
    assertBytes(glacier.archiveBytes(VAULT, put.remoteId), data, "stored bytes");
  }, { store: { multipartThreshold: 4 * MIB, partSize: MIB, partConcurrency: 4 } });
});

Deno.test("glacier: the part size is raised so that an archive has at most 10,000 parts", () => {
  assert.equal(partSizeFor(25 * MIB, 8 * MIB), 8 * MIB);
  assert.equal(partSizeFor(10_000 * 8 * MIB, 8 * MIB), 8 * MIB);
  assert.equal(partSizeFor(10_000 * 8 * MIB + 1, 8 * MIB), 16 * MIB);
  assert.equal(partSizeFor(100 * 1024 * MIB, MIB), 16 * MIB);
  assert.equal(partSizeFor(10_000 * 4096 * MIB, MIB), 4096 * MIB);
  assert.throws(
    () => partSizeFor(10_000 * 4096 * MIB + 1, MIB),
    (e: unknown) => e instanceof RangeError && e.message.includes("at most 10,000 parts"),
  );
});

Deno.test("glacier: a part failing for good aborts the multipart upload", async () => {
  await withGlacier(async (glacier, store) => {
    const data = bytesOf(4, 6 * MIB);
    glacier.inject({
      kind: "error",
      operation: "UploadMultipartPart",
      code: "PolicyEnforcedException",
      message: "Upload refused by policy",
    });
    await assert.rejects(
      putBytes(store, data),
      portError("PolicyEnforcedException", false, "UploadMultipartPart"),
    );
    assert.equal(glacier.requestCount("AbortMultipartUpload"), 1);
    assert.equal(glacier.requestCount("CompleteMultipartUpload"), 0);
    assert.deepEqual(glacier.uploads(VAULT), []);
    assert.deepEqual(glacier.archives(VAULT), []);
    // Reading stopped: not all six parts were sent.
    assert.ok(glacier.requestCount("UploadMultipartPart") < 6);
  }, { store: { multipartThreshold: 2 * MIB, partSize: MIB, partConcurrency: 2 } });
});

Deno.test("glacier: a part failing retryably twice is retried alone and the upload succeeds", async () => {
  await withGlacier(async (glacier, store) => {
    const data = bytesOf(5, 5 * MIB);
    glacier.inject({ kind: "throttle", operation: "UploadMultipartPart", count: 1 });
    glacier.inject({ kind: "server-error", operation: "UploadMultipartPart", count: 1 });
    const put = await putBytes(store, data);
    assert.equal(put.treeHash, referenceTreeHash(data));
    assert.equal(glacier.requestCount("UploadMultipartPart"), 5 + 2);
    assert.equal(glacier.requestCount("InitiateMultipartUpload"), 1);
    assert.equal(glacier.requestCount("AbortMultipartUpload"), 0);
    assert.deepEqual(
      glacier.faultsServed().map((f) => f.kind),
      ["throttle", "server-error"],
    );
    assertBytes(glacier.archiveBytes(VAULT, put.remoteId), data, "stored bytes");
  }, { store: { multipartThreshold: 2 * MIB, partSize: MIB, partConcurrency: 1 } });
});

Deno.test("glacier: a part answered with a wrong tree hash is sent again", async () => {
  await withGlacier(async (glacier, store) => {
    const data = bytesOf(6, 3 * MIB);
    glacier.inject({ kind: "wrong-tree-hash", operation: "UploadMultipartPart" });
    const put = await putBytes(store, data);
    assert.equal(put.treeHash, referenceTreeHash(data));
    assert.equal(glacier.requestCount("UploadMultipartPart"), 4);
  }, { store: { multipartThreshold: MIB, partSize: MIB, partConcurrency: 1 } });
});

Deno.test("glacier: a part that keeps failing retryably gives up after the policy's attempts", async () => {
  await withGlacier(async (glacier, store) => {
    glacier.inject({ kind: "timeout", operation: "UploadMultipartPart", count: 10 });
    await assert.rejects(
      putBytes(store, bytesOf(7, 3 * MIB)),
      portError("RequestTimeoutException", true, "UploadMultipartPart"),
    );
    assert.equal(glacier.requestCount("UploadMultipartPart"), 4);
    assert.equal(glacier.requestCount("AbortMultipartUpload"), 1);
    assert.deepEqual(glacier.uploads(VAULT), []);
  }, { store: { multipartThreshold: MIB, partSize: MIB, partConcurrency: 1 } });
});

Deno.test("glacier: an abort midway through a multipart upload aborts it at Glacier", async () => {
  await withGlacier(async (glacier, store) => {
    const controller = new AbortController();
    const data = bytesOf(8, 4 * MIB);
    const body = stallingStream(
      data,
      2 * MIB,
      controller,
      new Error("Operator stopped the backup"),
    );
    await assert.rejects(
      store.put({
        archiveId: archiveId("abort-multipart"),
        size: data.length,
        treeHash: referenceTreeHash(data),
        description: "",
        body: () => body,
      }, { signal: controller.signal }),
      /Operator stopped the backup/,
    );
    assert.equal(glacier.requestCount("AbortMultipartUpload"), 1);
    assert.deepEqual(glacier.uploads(VAULT), []);
    assert.deepEqual(glacier.archives(VAULT), []);
  }, { store: { multipartThreshold: MIB, partSize: MIB, partConcurrency: 1 } });
});

Deno.test("glacier: a multipart body of the wrong size is refused before Complete", async () => {
  await withGlacier(async (glacier, store) => {
    const data = bytesOf(9, 3 * MIB);
    await assert.rejects(
      store.put({
        archiveId: archiveId("short-multipart"),
        size: 3 * MIB + 10,
        treeHash: referenceTreeHash(data),
        description: "",
        body: () => chunked(data),
      }),
      (e: unknown) =>
        e instanceof ArchiveMismatchError && e.message.includes("the body has 3145728 bytes") &&
        e.message.includes("declares 3145738"),
    );
    assert.equal(glacier.requestCount("CompleteMultipartUpload"), 0);
    assert.equal(glacier.requestCount("AbortMultipartUpload"), 1);
    assert.deepEqual(glacier.uploads(VAULT), []);
  }, { store: { multipartThreshold: MIB, partSize: MIB } });
});

for (const op of ["UploadArchive", "CompleteMultipartUpload"] as const) {
  Deno.test(`glacier: a wrong tree hash answered by ${op} is ArchiveMismatchError`, async () => {
    await withGlacier(async (glacier, store) => {
      glacier.inject({ kind: "wrong-tree-hash", operation: op });
      const data = bytesOf(10, 2 * MIB + 1);
      await assert.rejects(
        putBytes(store, data),
        (e: unknown) =>
          e instanceof ArchiveMismatchError && e.message.includes("Glacier answered tree hash") &&
          e.message.includes(referenceTreeHash(data)) && e.message.includes("deleted again"),
      );
      assert.deepEqual(glacier.archives(VAULT), [], "the mismatched archive is deleted");
    }, op === "UploadArchive" ? {} : { store: { multipartThreshold: MIB, partSize: MIB } });
  });
}

Deno.test("glacier: put to a missing vault is ResourceNotFoundException naming the vault", async () => {
  const glacier = await GlacierDouble.start();
  const store = openStore(glacier);
  try {
    await assert.rejects(
      putBytes(store, bytesOf(11, 100)),
      portError("ResourceNotFoundException", false, `vaults/${VAULT}`),
    );
    await assert.rejects(
      putBytes(store, bytesOf(11, 100)),
      portError("ResourceNotFoundException", false, `glacier://us-east-1/${VAULT}: UploadArchive`),
    );
  } finally {
    await store.close();
    await glacier.close();
  }
});

Deno.test("glacier: descriptions must be printable ASCII of at most 1,024 characters", async () => {
  await withGlacier(async (glacier, store) => {
    for (
      const [description, words] of [
        ["x".repeat(1025), "1025 characters, at most 1,024"],
        ["caf\u00e9", "character 233 at index 3"],
        ["line\nbreak", "character 10 at index 4"],
      ] as const
    ) {
      await assert.rejects(
        putBytes(store, bytesOf(12, 10), { description }),
        (e: unknown) => e instanceof RangeError && e.message.includes(words),
      );
    }
    const ok = await putBytes(store, bytesOf(12, 10), { description: "~ ".repeat(512) });
    await assert.rejects(
      store.startRetrieval(ok.remoteId, { description: "r\u0001" }),
      (e: unknown) =>
        e instanceof RangeError && e.message.includes("Invalid description for retrieval"),
    );
    assert.equal(glacier.requestCount("UploadArchive"), 1);
    assert.equal(glacier.requestCount("InitiateJob"), 0);
  });
});

Deno.test("glacier: a misaligned range is refused locally when its start is off", async () => {
  await withGlacier(async (glacier, store) => {
    const put = await putBytes(store, bytesOf(13, 3 * MIB));
    await assert.rejects(
      store.startRetrieval(put.remoteId, { range: { start: 5, end: MIB - 1 }, description: "r" }),
      portError("InvalidParameterValueException", false, "invalid retrieval range 5-1048575"),
    );
    assert.equal(glacier.requestCount("InitiateJob"), 0);
    // The end is Glacier's to judge (it needs the archive size): same code.
    await assert.rejects(
      store.startRetrieval(put.remoteId, { range: { start: 0, end: MIB }, description: "r" }),
      portError("InvalidParameterValueException", false, "InitiateJob archive"),
    );
    assert.equal(glacier.requestCount("InitiateJob"), 1);
  });
});

Deno.test("glacier: the SNS topic is set on every retrieval job and published on completion", async () => {
  const topic = "arn:aws:sns:us-east-1:123456789012:coldpack-retrievals";
  await withGlacier(async (glacier, store) => {
    const put = await putBytes(store, bytesOf(14, 2 * MIB));
    const job = await store.startRetrieval(put.remoteId, {
      description: "r-sns",
      tier: "Expedited",
      range: { start: MIB, end: 2 * MIB - 1 },
    });
    const [held] = glacier.jobs(VAULT);
    assert.equal(held?.SNSTopic, topic);
    assert.equal(held?.Tier, "Expedited");
    assert.equal(held?.JobDescription, "r-sns");
    assert.equal(held?.RetrievalByteRange, `${MIB}-${2 * MIB - 1}`);
    assert.deepEqual(glacier.notifications(), []);
    glacier.completeJob(job.jobId);
    const [note] = glacier.notifications();
    assert.equal(note?.topic, topic);
    const message = JSON.parse(note?.message ?? "{}");
    assert.equal(message.JobId, job.jobId);
    assert.equal(message.StatusCode, "Succeeded");
    assert.equal(message.JobDescription, "r-sns");
    assert.equal((await store.retrieval(job.jobId)).state, "ready");
  }, { jobDelayMs: 4 * HOUR, store: { snsTopic: topic } });
});

Deno.test("glacier: a job maps to in-progress, ready with expiry, and expired after 25 h", async () => {
  await withGlacier(async (glacier, store) => {
    const data = bytesOf(15, 2 * MIB + 7);
    const put = await putBytes(store, data);
    const t0 = glacier.now();
    const job = await store.startRetrieval(put.remoteId, { description: "r-life" });
    assert.equal(job.state, "in-progress");
    assert.equal(job.startedAt, t0);
    assert.equal(job.completedAt, null);
    assert.equal(job.treeHash, referenceTreeHash(data));
    await assert.rejects(store.readRetrieval(job.jobId), portError("RetrievalNotReady", false));
    glacier.advance(4 * HOUR);
    const ready = await store.retrieval(job.jobId);
    assert.equal(ready.state, "ready");
    assert.equal(ready.completedAt, t0 + 4 * HOUR);
    assert.equal(ready.expiresAt, t0 + 28 * HOUR);
    assert.equal(ready.remoteId, put.remoteId);
    assert.equal(ready.description, "r-life");
    glacier.advance(25 * HOUR);
    const gone = await store.retrieval(job.jobId);
    assert.equal(gone.state, "expired");
    assert.equal(gone.jobId, job.jobId);
    await assert.rejects(
      store.readRetrieval(job.jobId),
      portError("RetrievalExpired", false, `Cannot read retrieval ${job.jobId}`),
    );
  }, { jobDelayMs: 4 * HOUR });
});

Deno.test("glacier: a failed job is failed with Glacier's reason", async () => {
  await withGlacier(async (glacier, store) => {
    const put = await putBytes(store, bytesOf(16, 1000));
    const job = await store.startRetrieval(put.remoteId, { description: "r-fail" });
    glacier.failJob(job.jobId, "Archive retrieval failed: internal error");
    const now = await store.retrieval(job.jobId);
    assert.equal(now.state, "failed");
    assert.equal(now.failure, "Archive retrieval failed: internal error");
    await assert.rejects(
      store.readRetrieval(job.jobId),
      portError("RetrievalFailed", false, "Archive retrieval failed: internal error"),
    );
  }, { jobDelayMs: HOUR });
});

Deno.test("glacier: a truncated GetJobOutput errors at the end with TruncatedBody", async () => {
  await withGlacier(async (glacier, store) => {
    const data = bytesOf(17, 3 * MIB + 11);
    const put = await putBytes(store, data);
    const job = await store.startRetrieval(put.remoteId, { description: "r-cut" });
    glacier.inject({ kind: "truncate", operation: "GetJobOutput" });
    const stream = await store.readRetrieval(job.jobId);
    await assert.rejects(readAll(stream), portError("TruncatedBody", true, "GetJobOutput"));
    // The next read is whole.
    assertBytes(await readAll(await store.readRetrieval(job.jobId)), data, "after the cut");
  });
});

Deno.test("glacier: a tree hash Glacier sends for an aligned read is checked", async () => {
  await withGlacier(async (glacier, store) => {
    const data = bytesOf(18, 4 * MIB + 100);
    const put = await putBytes(store, data);
    const job = await store.startRetrieval(put.remoteId, {
      description: "r-hash",
      range: { start: 0, end: 4 * MIB - 1 },
    });
    assert.equal(job.treeHash, referenceTreeHash(data.subarray(0, 4 * MIB)));
    const aligned = { start: 2 * MIB, end: 4 * MIB - 1 };
    assertBytes(
      await readAll(await store.readRetrieval(job.jobId, { range: aligned })),
      data.subarray(aligned.start, aligned.end + 1),
      "aligned read",
    );
    glacier.inject({ kind: "wrong-tree-hash", operation: "GetJobOutput" });
    await assert.rejects(
      readAll(await store.readRetrieval(job.jobId, { range: aligned })),
      (e: unknown) =>
        e instanceof ArchiveMismatchError &&
        e.message.includes(`tree hash is ${referenceTreeHash(data.subarray(2 * MIB, 4 * MIB))}`),
    );
    // A read that is not tree-hash aligned gets no hash from Glacier: counted, not hashed.
    glacier.inject({ kind: "wrong-tree-hash", operation: "GetJobOutput" });
    const odd = { start: 5, end: MIB + 5 };
    assertBytes(
      await readAll(await store.readRetrieval(job.jobId, { range: odd })),
      data.subarray(5, MIB + 6),
      "unaligned read",
    );
  });
});

Deno.test("glacier: a wrong tree hash in DescribeJob fails a whole read", async () => {
  await withGlacier(async (glacier, store) => {
    const data = bytesOf(19, MIB + 1);
    const put = await putBytes(store, data);
    const job = await store.startRetrieval(put.remoteId, { description: "r-dj" });
    glacier.inject({ kind: "wrong-tree-hash", operation: "DescribeJob" });
    glacier.inject({ kind: "wrong-tree-hash", operation: "GetJobOutput" });
    await assert.rejects(
      readAll(await store.readRetrieval(job.jobId)),
      (e: unknown) => e instanceof ArchiveMismatchError && e.message.includes("but Glacier gave"),
    );
  });
});

const FAULTS: [FaultKind, GlacierOperation, string, boolean][] = [
  ["server-error", "DescribeJob", "ServiceUnavailableException", true],
  ["throttle", "DescribeJob", "ThrottlingException", true],
  ["timeout", "DescribeJob", "RequestTimeoutException", true],
  ["capacity", "InitiateJob", "InsufficientCapacityException", true],
  ["reset", "UploadArchive", "ECONNRESET", true],
  ["reset", "DescribeJob", "ECONNRESET", true],
  ["truncate", "DescribeJob", "TruncatedBody", true],
];

for (const [kind, op, code, retryable] of FAULTS) {
  Deno.test(`glacier: a ${kind} fault on ${op} is PortError ${code}, retryable ${retryable}`, async () => {
    await withGlacier(async (glacier, store) => {
      const put = await putBytes(store, bytesOf(20, 1000));
      const job = await store.startRetrieval(put.remoteId, { description: "r" });
      glacier.inject({ kind, operation: op });
      const call = op === "DescribeJob"
        ? store.retrieval(job.jobId)
        : op === "InitiateJob"
        ? store.startRetrieval(put.remoteId, { description: "r2", tier: "Expedited" })
        : putBytes(store, bytesOf(21, 2000));
      await assert.rejects(
        call,
        portError(code, retryable, `glacier://us-east-1/${VAULT}: ${op}`),
      );
    });
  });
}

for (
  const [code, status, retryable] of [
    ["PolicyEnforcedException", 400, false],
    ["LimitExceededException", 400, false],
    ["AccessDeniedException", 403, false],
    ["MissingParameterValueException", 400, false],
    ["InternalFailure", 500, true],
  ] as const
) {
  Deno.test(`glacier: a ${code} answer is PortError ${code}, retryable ${retryable}`, async () => {
    await withGlacier(async (glacier, store) => {
      const put = await putBytes(store, bytesOf(22, 1000));
      glacier.inject({ kind: "error", operation: "InitiateJob", code, status });
      await assert.rejects(
        store.startRetrieval(put.remoteId, { description: "r" }),
        portError(code, retryable, `InitiateJob archive ${put.remoteId}: ${code}`),
      );
    });
  });
}

Deno.test("glacier: a slow answer is cut off by the caller's signal", async () => {
  await withGlacier(async (glacier, store) => {
    const put = await putBytes(store, bytesOf(23, 1000));
    glacier.inject({ kind: "slow", operation: "InitiateJob", delayMs: 10_000 });
    const controller = new AbortController();
    const reason = new Error("Per-call timeout");
    const started = store.startRetrieval(put.remoteId, {
      description: "r",
      signal: controller.signal,
    });
    setTimeout(() => controller.abort(reason), 50);
    await assert.rejects(started, (e: unknown) => e === reason);
  });
});

Deno.test("glacier: a retrieval read stops when its signal aborts", async () => {
  await withGlacier(async (_glacier, store) => {
    const put = await putBytes(store, bytesOf(24, 3 * MIB));
    const job = await store.startRetrieval(put.remoteId, { description: "r" });
    const controller = new AbortController();
    const reader = (await store.readRetrieval(job.jobId, { signal: controller.signal }))
      .getReader();
    assert.equal((await reader.read()).done, false);
    controller.abort(new Error("Restore cancelled: operator"));
    await assert.rejects(reader.read(), /Restore cancelled: operator/);
  });
});

Deno.test("glacier: list reads the inventory job, reusing a fresh one and not a stale one", async () => {
  await withGlacier(async (glacier, store) => {
    const a = await putBytes(store, bytesOf(25, 1500), { description: 'first "quoted" {x}' });
    const b = await putBytes(store, bytesOf(26, MIB + 3), { description: "second ]} [" });
    glacier.advance(1); // an inventory job made in the same millisecond as a put is not trusted
    const listed = [];
    for await (const x of store.list()) listed.push(x);
    assert.deepEqual(listed.map((x) => x.remoteId).sort(), [a.remoteId, b.remoteId].sort());
    const first = listed.find((x) => x.remoteId === a.remoteId);
    assert.equal(first?.description, 'first "quoted" {x}');
    assert.equal(first?.size, 1500);
    assert.equal(first?.treeHash, a.treeHash);
    assert.equal(glacier.requestCount("InitiateJob"), 1);
    // Polled every 15 minutes until the 4-hour job was done.
    assert.equal(glacier.requestCount("DescribeJob"), 4 * 4 + 1);
    glacier.advance(1);
    const again = [];
    for await (const x of store.list()) again.push(x.remoteId);
    assert.equal(glacier.requestCount("InitiateJob"), 1, "a fresh inventory is reused");
    assert.equal(again.length, 2);
    await store.delete(a.remoteId);
    glacier.advance(1);
    const after = [];
    for await (const x of store.list()) after.push(x.remoteId);
    assert.deepEqual(after, [b.remoteId]);
    assert.equal(glacier.requestCount("InitiateJob"), 2, "a delete makes the inventory stale");
  }, { jobDelayMs: 4 * HOUR });
});

Deno.test("glacier: a large inventory streams through in order", async () => {
  await withGlacier(async (glacier, store) => {
    const ids: RemoteArchiveId[] = [];
    for (let i = 0; i < 60; i++) {
      ids.push((await putBytes(store, bytesOf(100 + i, 10 + i))).remoteId);
    }
    let n = 0;
    for await (const x of store.list()) {
      assert.equal(x.remoteId, ids[n]);
      assert.equal(x.size, 10 + n);
      n++;
    }
    assert.equal(n, 60);
    assert.equal(glacier.archives(VAULT).length, 60);
  });
});

Deno.test("glacier: a truncated inventory is TruncatedBody", async () => {
  await withGlacier(async (glacier, store) => {
    await putBytes(store, bytesOf(27, 10));
    await putBytes(store, bytesOf(28, 10));
    glacier.inject({ kind: "truncate", operation: "GetJobOutput" });
    await assert.rejects(async () => {
      for await (const _ of store.list()) { /* read on */ }
    }, portError("TruncatedBody", true, "inventory"));
  });
});

Deno.test("glacier: delete of an unknown archive is fine, of a missing vault is not", async () => {
  await withGlacier(async (_glacier, store) => {
    await store.delete("no-such-archive" as RemoteArchiveId);
  });
  const glacier = await GlacierDouble.start();
  const store = openStore(glacier);
  try {
    await assert.rejects(
      store.delete("x" as RemoteArchiveId),
      portError("ResourceNotFoundException", false, "Vault not found"),
    );
  } finally {
    await store.close();
    await glacier.close();
  }
});

Deno.test("glacier: a started job whose DescribeJob fails is reported in progress", async () => {
  await withGlacier(async (glacier, store) => {
    const put = await putBytes(store, bytesOf(29, 1000));
    glacier.inject({ kind: "server-error", operation: "DescribeJob" });
    const job = await store.startRetrieval(put.remoteId, { description: "r-started" });
    assert.equal(job.state, "in-progress");
    assert.equal(job.remoteId, put.remoteId);
    assert.equal(glacier.requestCount("InitiateJob"), 1);
    assert.equal((await store.retrieval(job.jobId)).state, "ready");
  });
});

Deno.test("glacier: the endpoint comes from AWS_ENDPOINT_URL_GLACIER when not given", async () => {
  const glacier = await GlacierDouble.start({ vaults: [VAULT] });
  const saved = Deno.env.get("AWS_ENDPOINT_URL_GLACIER");
  Deno.env.set("AWS_ENDPOINT_URL_GLACIER", glacier.endpoint);
  const store = new GlacierStore({ region: "us-east-1", vault: VAULT }, {
    credentials: TEST_CREDENTIALS,
  });
  try {
    const put = await putBytes(store, bytesOf(30, 100));
    assert.equal(glacier.archives(VAULT)[0]?.archiveId, put.remoteId);
  } finally {
    if (saved === undefined) Deno.env.delete("AWS_ENDPOINT_URL_GLACIER");
    else Deno.env.set("AWS_ENDPOINT_URL_GLACIER", saved);
    await store.close();
    await glacier.close();
  }
});

Deno.test("glacier: open takes the URL's SNS topic and keeps it out of the location", async () => {
  const glacier = await GlacierDouble.start({ vaults: [VAULT] });
  const topic = "arn:aws:sns:us-east-1:123456789012:from-url";
  const store = await GlacierStore.open(`glacier://us-east-1/${VAULT}?sns-topic=${topic}`, {
    endpoint: glacier.endpoint,
    credentials: TEST_CREDENTIALS,
  });
  try {
    assert.equal(store.location, `glacier://us-east-1/${VAULT}`);
    const put = await putBytes(store, bytesOf(31, 100));
    await store.startRetrieval(put.remoteId, { description: "r" });
    assert.equal(glacier.jobs(VAULT)[0]?.SNSTopic, topic);
  } finally {
    await store.close();
    await glacier.close();
  }
  await assert.rejects(
    () => GlacierStore.open("s3://bucket/prefix"),
    (e: unknown) =>
      e instanceof SyntaxError && e.message.includes("expected glacier://REGION/VAULT"),
  );
});

Deno.test("glacier: options out of range are RangeErrors naming the store", () => {
  const where = { region: "us-east-1", vault: VAULT };
  for (
    const [options, words] of [
      [{ partSize: 3 * MIB }, "Invalid part size for glacier://us-east-1/coldpack-test: 3145728"],
      [{ partSize: 8 * 1024 * MIB }, "Invalid part size"],
      [{ partConcurrency: 0 }, "Invalid part concurrency"],
      [{ multipartThreshold: 0 }, "Invalid multipart threshold"],
      [{ inventoryPollMs: 0 }, "Invalid inventory poll"],
    ] as [GlacierStoreOptions, string][]
  ) {
    assert.throws(
      () => new GlacierStore(where, options),
      (e: unknown) => e instanceof RangeError && e.message.includes(words),
    );
  }
});

Deno.test("glacier: random faults under load are all retried away by the wrapper", async () => {
  const { withRetryStore } = await import("../core/retry.ts");
  await withGlacier(async (glacier, inner) => {
    const clock = doubleClock(glacier);
    const store = withRetryStore(inner, {
      attempts: 12,
      baseMs: 1,
      maxMs: 1,
      clock,
      putTimeoutMs: 0, // the test clock's sleeps end at once: no timeouts
      callTimeoutMs: 0,
    });
    glacier.randomFaults({ rate: 0.2, seed: 7 });
    const puts: [PutResult, Uint8Array][] = [];
    for (let i = 0; i < 12; i++) {
      const data = bytesOf(200 + i, i % 3 === 0 ? 3 * MIB + i : 5000 + i);
      puts.push([await putBytes(store, data), data]);
    }
    for (const [put, data] of puts.slice(0, 4)) {
      const job = await store.startRetrieval(put.remoteId, { description: "load" });
      assertBytes(await readAll(await store.readRetrieval(job.jobId)), data, put.remoteId);
    }
    glacier.randomFaults(null);
    assert.ok(glacier.faultsServed().length > 0, "some faults were served");
    assert.equal(glacier.archives(VAULT).length, 12);
    assert.deepEqual(glacier.uploads(VAULT).length, 0);
  }, {
    store: {
      multipartThreshold: 2 * MIB,
      partSize: MIB,
      // Parts outlast a 20% fault rate, so that no multipart upload is left to abort.
      retry: {
        attempts: 10,
        baseMs: 1,
        maxMs: 1,
        clock: { now: Date.now, sleep: () => Promise.resolve() },
      },
    },
  });
});

Deno.test("glacier: with the packer's SHA-256 the body is read once; a wrong one is refused", async () => {
  await withGlacier(async (glacier, store) => {
    const data = bytesOf(41, 2 * MIB + 77);
    let readings = 0;
    const archive = {
      archiveId: newArchiveId(Date.now(), crypto.getRandomValues(new Uint8Array(6))),
      size: data.length,
      treeHash: referenceTreeHash(data),
      sha256: createHash("sha256").update(data).digest("hex"),
      description: "coldpack test",
      body: () => {
        readings++;
        return chunked(data, [65_536]);
      },
    };
    const put = await store.put(archive);
    assert.equal(readings, 1);
    assertBytes(glacier.archiveBytes(VAULT, put.remoteId), data, "stored bytes");
    // A hash that does not match the bytes: Glacier refuses the upload, nothing is kept.
    await assert.rejects(
      store.put({ ...archive, sha256: "0".repeat(64) }),
      (e: unknown) => e instanceof PortError && !e.retryable && e.message.includes(VAULT),
    );
    assert.equal(glacier.archives(VAULT).length, 1);
  });
});
