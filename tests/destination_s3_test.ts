/**
 * Tests of the S3 destination against its test peer: `s3rver` (a real S3
 * server) behind the strict double in `tests/doubles/s3_archive.ts`, which
 * checks `Content-MD5` and the multipart rules (every part but the last at
 * least 5 MiB) and lists the uploads still open. The shared Destination
 * conformance suite first, then the multipart path, clean-up after
 * failures, and faults.
 *
 * Run: deno test --allow-read --allow-write --allow-env --allow-run
 *   --allow-net=127.0.0.1,localhost --allow-sys tests/destination_s3_test.ts
 * @module
 */

import assert from "node:assert/strict";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { S3Destination, type S3DestinationOptions } from "../adapters/destination/s3.ts";
import { PortError } from "../core/errors.ts";
import { refusedS3Connection, S3ArchiveDouble } from "./doubles/s3_archive.ts";
import { destinationConformance, file } from "./destination_conformance.ts";
import { bytesOf, FAST_RETRY, md5, portError } from "./_helpers.ts";
import { failingStream, readAll, stallingStream } from "./_streams.ts";

const MIB = 1024 * 1024;
const BUCKET = "coldpack-restores";
const PREFIX = "restored/";
const encoder = new TextEncoder();

/** Small multipart settings so that the multipart path is quick to reach. */
const SMALL_PARTS: S3DestinationOptions = {
  multipartThreshold: 6 * MIB,
  partSize: 5 * MIB,
  partRetry: FAST_RETRY,
};
/** Three parts: 5 MiB, 5 MiB and a small last one. */
const LARGE = 10 * MIB + 12_345;

interface Peer {
  readonly s3: S3ArchiveDouble;
  readonly destination: S3Destination;
  /** The object at the full key, read around the destination, or null. */
  peekObject(fullKey: string): Promise<Uint8Array | null>;
  /** Puts an object straight into the bucket. */
  putObject(fullKey: string, bytes: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

async function startPeer(options: S3DestinationOptions = SMALL_PARTS): Promise<Peer> {
  const s3 = await S3ArchiveDouble.start();
  const client = s3.client();
  let destination: S3Destination | null = null;
  try {
    await s3.createBucket(BUCKET);
    destination = await S3Destination.open({ bucket: BUCKET, prefix: PREFIX }, {
      ...s3.connection,
      ...options,
    });
  } catch (e) {
    client.destroy();
    await s3.close();
    throw e;
  }
  return {
    s3,
    destination,
    peekObject: async (fullKey) => {
      try {
        const out = await client.send(new GetObjectCommand({ Bucket: BUCKET, Key: fullKey }));
        return await out.Body!.transformToByteArray();
      } catch (e) {
        if (e instanceof Error && e.name === "NoSuchKey") return null;
        throw e;
      }
    },
    putObject: async (fullKey, bytes) => {
      await client.send(
        new PutObjectCommand({ Bucket: BUCKET, Key: fullKey, Body: bytes }),
      );
    },
    close: async () => {
      await destination.close();
      client.destroy();
      await s3.close();
    },
  };
}

async function withPeer(
  body: (peer: Peer) => Promise<void>,
  options?: S3DestinationOptions,
): Promise<void> {
  const peer = await startPeer(options);
  try {
    await body(peer);
  } finally {
    await peer.close();
  }
}

destinationConformance("S3Destination", async () => {
  const peer = await startPeer();
  return {
    destination: peer.destination,
    peek: (key) => peer.peekObject(PREFIX + key),
    cleanup: () => peer.close(),
    badKeys: ["", "nul\0byte", "lone \uD800 surrogate", "k".repeat(1024 - PREFIX.length + 1)],
    largeSize: LARGE,
  };
});

Deno.test("s3 destination: locations name the bucket, the prefix and the key", async () => {
  await withPeer(async ({ destination }) => {
    assert.equal(destination.location, `s3://${BUCKET}/${PREFIX}`);
    const result = await destination.write(file("a/b c.txt", encoder.encode("x")));
    assert.equal(result.location, `s3://${BUCKET}/${PREFIX}a/b c.txt`);
  });
});

Deno.test("s3 destination: a small file is one PutObject in STANDARD; no-clobber asks HEAD first", async () => {
  await withPeer(async ({ s3, destination }) => {
    await destination.write(file("one.bin", bytesOf(1, 100_000)));
    assert.deepEqual(s3.counts(), { HeadObject: 1, PutObject: 1 });
    await destination.write({ ...file("one.bin", bytesOf(2, 10)), overwrite: true });
    assert.deepEqual(s3.counts(), { HeadObject: 1, PutObject: 2 }, "overwrite asks no HEAD");
    const [object] = s3.objects(BUCKET);
    assert.equal(object?.key, `${PREFIX}one.bin`);
    assert.equal(object?.storageClass, "STANDARD");
    assert.equal(object?.size, 10);
  });
});

Deno.test("s3 destination: a large file goes up in parts of at least 5 MiB", async () => {
  await withPeer(async ({ s3, destination, peekObject }) => {
    const bytes = bytesOf(3, LARGE);
    await destination.write(file("big/three-parts.bin", bytes));
    assert.equal(s3.requestCount("CreateMultipartUpload"), 1);
    assert.equal(s3.requestCount("UploadPart"), 3);
    assert.equal(s3.requestCount("CompleteMultipartUpload"), 1);
    assert.equal(s3.requestCount("PutObject"), 0);
    assert.deepEqual(s3.uploads(BUCKET), []);
    const [object] = s3.objects(BUCKET);
    assert.equal(object?.storageClass, "STANDARD");
    assert.equal(object?.size, LARGE);
    assert.equal(md5((await peekObject(`${PREFIX}big/three-parts.bin`))!), md5(bytes));
  });
});

Deno.test("s3 destination: a part that fails once is sent again on its own", async () => {
  await withPeer(async ({ s3, destination, peekObject }) => {
    const bytes = bytesOf(4, LARGE);
    s3.inject({ kind: "InternalError", op: "UploadPart" });
    await destination.write(file("retried.bin", bytes));
    assert.equal(s3.requestCount("UploadPart"), 4);
    assert.equal(s3.requestCount("CreateMultipartUpload"), 1);
    assert.equal(md5((await peekObject(`${PREFIX}retried.bin`))!), md5(bytes));
  });
});

Deno.test("s3 destination: a part that keeps failing aborts the upload, leaving nothing", async () => {
  await withPeer(async ({ s3, destination }) => {
    s3.inject({ kind: "SlowDown", op: "UploadPart", count: 100 });
    await assert.rejects(
      destination.write(file("fails.bin", bytesOf(5, LARGE))),
      portError("SlowDown", true, "UploadPart", `${PREFIX}fails.bin`),
    );
    s3.clearFaults();
    assert.equal(s3.requestCount("AbortMultipartUpload"), 1);
    assert.equal(s3.requestCount("CompleteMultipartUpload"), 0);
    assert.deepEqual(s3.uploads(BUCKET), []);
    assert.deepEqual(s3.objects(BUCKET), []);
  });
});

Deno.test("s3 destination: a failed CompleteMultipartUpload aborts the upload", async () => {
  await withPeer(async ({ s3, destination }) => {
    s3.inject({ kind: "InternalError", op: "CompleteMultipartUpload" });
    await assert.rejects(
      destination.write(file("no-complete.bin", bytesOf(6, LARGE))),
      portError("InternalError", true, "CompleteMultipartUpload"),
    );
    assert.equal(s3.requestCount("AbortMultipartUpload"), 1);
    assert.deepEqual(s3.uploads(BUCKET), []);
    assert.deepEqual(s3.objects(BUCKET), []);
  });
});

Deno.test("s3 destination: a large body with another md5 or length is aborted before Complete", async () => {
  await withPeer(async ({ s3, destination }) => {
    const bytes = bytesOf(7, LARGE);
    await assert.rejects(
      destination.write({ ...file("md5.bin", bytes), md5: md5(new Uint8Array(4)) }),
      portError("ChecksumMismatch", false, "md5.bin", md5(bytes)),
    );
    await assert.rejects(
      destination.write({ ...file("long.bin", bytes), length: 7 * MIB }),
      portError("LengthMismatch", false, "long.bin"),
    );
    await assert.rejects(
      destination.write({ ...file("short.bin", bytes), length: LARGE + 1 }),
      portError("LengthMismatch", false, "short.bin"),
    );
    await assert.rejects(
      destination.write({
        ...file("broken.bin", bytes),
        body: () => failingStream(bytes, 6 * MIB, new Error("archive read failed")),
      }),
      (e: unknown) => e instanceof Error && e.message === "archive read failed",
    );
    assert.equal(s3.requestCount("CompleteMultipartUpload"), 0);
    assert.equal(s3.requestCount("AbortMultipartUpload"), 4);
    assert.deepEqual(s3.uploads(BUCKET), []);
    assert.deepEqual(s3.objects(BUCKET), []);
  });
});

Deno.test("s3 destination: an abort during a multipart upload aborts it", async () => {
  await withPeer(async ({ s3, destination }) => {
    const bytes = bytesOf(8, LARGE);
    const controller = new AbortController();
    const reason = new Error("restore cancelled");
    await assert.rejects(
      destination.write({
        ...file("cancelled.bin", bytes),
        body: () => stallingStream(bytes, 6 * MIB, controller, reason),
        signal: controller.signal,
      }),
      (e: unknown) => e === reason,
    );
    assert.equal(s3.requestCount("AbortMultipartUpload"), 1);
    assert.deepEqual(s3.uploads(BUCKET), []);
    assert.deepEqual(s3.objects(BUCKET), []);
  });
});

Deno.test("s3 destination: PutObject faults are retryable PortErrors and store nothing", async () => {
  await withPeer(async ({ s3, destination }) => {
    const cases = [
      ["InternalError", "InternalError"],
      ["SlowDown", "SlowDown"],
      ["reset", "ECONNRESET"],
    ] as const;
    for (const [kind, code] of cases) {
      s3.inject({ kind, op: "PutObject" });
      await assert.rejects(
        destination.write(file(`fault-${kind}.bin`, bytesOf(9, 50_000))),
        portError(code, true, "PutObject", `${PREFIX}fault-${kind}.bin`, BUCKET),
      );
      s3.clearFaults();
    }
    assert.deepEqual(s3.objects(BUCKET), []);
    await destination.write(file("fault-reset.bin", bytesOf(9, 50_000)));
    assert.equal(s3.objects(BUCKET).length, 1);
  });
});

Deno.test("s3 destination: an existing object is DestinationExists and stays as it was", async () => {
  await withPeer(async ({ destination, putObject, peekObject }) => {
    const old = encoder.encode("put by someone else");
    await putObject(`${PREFIX}theirs.txt`, old);
    await assert.rejects(
      destination.write(file("theirs.txt", encoder.encode("ours"))),
      portError("DestinationExists", false, `${PREFIX}theirs.txt`),
    );
    await assert.rejects(
      destination.write(file("theirs.txt", bytesOf(10, LARGE))),
      portError("DestinationExists", false, `${PREFIX}theirs.txt`),
    );
    assert.deepEqual(await peekObject(`${PREFIX}theirs.txt`), old);
  });
});

Deno.test("s3 destination: an object put between the HEAD check and the PUT is DestinationExists (412)", async () => {
  await withPeer(async ({ s3, destination, putObject, peekObject }) => {
    const theirs = encoder.encode("the other writer's bytes");
    // The key is free at the HEAD; another writer takes it as our PUT arrives.
    s3.beforeNext("PutObject", ({ key }) => putObject(key, theirs));
    await assert.rejects(
      destination.write(file("raced.txt", encoder.encode("ours, too late"))),
      (e: unknown) => {
        portError("DestinationExists", false, `${PREFIX}raced.txt`)(e);
        const cause = (e as Error).cause;
        assert.ok(cause instanceof PortError, `cause: ${cause}`);
        assert.equal(
          cause.code,
          "PreconditionFailed",
          "refused by S3's If-None-Match, not the HEAD",
        );
        return true;
      },
    );
    assert.deepEqual(s3.counts(), { HeadObject: 1, PutObject: 2 });
    assert.deepEqual(await peekObject(`${PREFIX}raced.txt`), theirs);
  });
});

Deno.test("s3 destination: an object put before CompleteMultipartUpload is DestinationExists; the upload is aborted", async () => {
  await withPeer(async ({ s3, destination, putObject, peekObject }) => {
    const theirs = encoder.encode("put while our parts went up");
    s3.beforeNext("CompleteMultipartUpload", ({ key }) => putObject(key, theirs));
    await assert.rejects(
      destination.write(file("raced-large.bin", bytesOf(12, LARGE))),
      (e: unknown) => {
        portError("DestinationExists", false, `${PREFIX}raced-large.bin`)(e);
        const cause = (e as Error).cause;
        assert.ok(cause instanceof PortError, `cause: ${cause}`);
        assert.equal(cause.code, "PreconditionFailed");
        return true;
      },
    );
    assert.equal(s3.requestCount("HeadObject"), 1);
    assert.equal(s3.requestCount("CompleteMultipartUpload"), 1);
    assert.equal(s3.requestCount("AbortMultipartUpload"), 1);
    assert.deepEqual(s3.uploads(BUCKET), []);
    assert.deepEqual(await peekObject(`${PREFIX}raced-large.bin`), theirs);
  });
});

Deno.test("s3 destination: a read cut short is a retryable TruncatedBody", async () => {
  await withPeer(async ({ s3, destination }) => {
    const bytes = bytesOf(11, 300_000);
    await destination.write(file("cut.bin", bytes));
    s3.inject({ kind: "truncate", op: "GetObject" });
    await assert.rejects(
      (async () => await readAll((await destination.read("cut.bin"))!))(),
      portError("TruncatedBody", true, `${PREFIX}cut.bin`),
    );
    assert.equal(md5(await readAll((await destination.read("cut.bin"))!)), md5(bytes));
  });
});

Deno.test("s3 destination: a missing bucket is NoSuchBucket, not retryable", async () => {
  await withPeer(async ({ s3 }) => {
    const destination = await S3Destination.open(
      { bucket: "no-such-bucket", prefix: "" },
      s3.connection,
    );
    try {
      await assert.rejects(
        destination.write(file("x.txt", encoder.encode("x"))),
        portError("NoSuchBucket", false, "no-such-bucket"),
      );
    } finally {
      await destination.close();
    }
  });
});

Deno.test("s3 destination: a refused connection is a retryable ECONNREFUSED", async () => {
  const refused = refusedS3Connection();
  const destination = await S3Destination.open({ bucket: BUCKET, prefix: "" }, refused);
  try {
    for (const overwrite of [false, true]) {
      await assert.rejects(
        destination.write({ ...file("x.txt", encoder.encode("x")), overwrite }),
        (e: unknown) => {
          portError("ECONNREFUSED", true, overwrite ? "PutObject" : "HeadObject")(e);
          assert.ok(!(e as Error).message.includes(refused.credentials.secretAccessKey));
          return true;
        },
      );
    }
  } finally {
    await destination.close();
  }
});

Deno.test("s3 destination: options out of range are a RangeError", async () => {
  for (
    const options of [
      { partSize: 5 * MIB - 1 },
      { multipartThreshold: 0 },
      { partConcurrency: 0 },
    ]
  ) {
    await assert.rejects(
      S3Destination.open({ bucket: BUCKET, prefix: "" }, options),
      (e: unknown) =>
        e instanceof RangeError && /Invalid (part size|multipart|part conc)/.test(e.message),
    );
  }
});
