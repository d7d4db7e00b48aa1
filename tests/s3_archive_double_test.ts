/**
 * The S3 archive double rejects what S3 rejects and answers what S3 answers
 * (PROTOCOLS.md section 3), spoken to with the real SDK and, for requests
 * the SDK would never make, with plain HTTP.
 * @module
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  RestoreObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import {
  DeleteMessageCommand,
  DeleteQueueCommand,
  type Message,
  ReceiveMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { ManualClock, RESTORE_DELAY_MS, S3ArchiveDouble } from "./doubles/s3_archive.ts";
import { DOUBLE_ACCOUNT_ID, SqsDouble, type SqsQueue } from "./doubles/sqs.ts";

const MIB = 1024 * 1024;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
const START = Date.UTC(2026, 10, 22, 10, 30, 0);
const B = "double-bucket";

interface Peer {
  readonly s3: S3ArchiveDouble;
  readonly client: S3Client;
  readonly clock: ManualClock;
}

async function withDouble(fn: (p: Peer) => Promise<void>): Promise<void> {
  const clock = new ManualClock(START);
  const s3 = await S3ArchiveDouble.start({ clock });
  const client = s3.client();
  try {
    await s3.createBucket(B);
    await fn({ s3, client, clock });
  } finally {
    client.destroy();
    await s3.close();
  }
}

function sha(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("base64");
}

function fill(n: number, seed: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(n);
  for (let i = 0; i < n; i++) out[i] = (i * 31 + seed) & 0xff;
  return out;
}

/** Asserts an SDK error with S3's code and HTTP status. */
function s3Error(code: string, status: number, words?: string) {
  return (e: unknown) => {
    const err = e as Error & { $metadata?: { httpStatusCode?: number } };
    assert.equal(err.name, code, err.message);
    assert.equal(err.$metadata?.httpStatusCode, status, `${code}: HTTP status`);
    if (words !== undefined) {
      assert.ok(err.message.includes(words), `"${err.message}" lacks "${words}"`);
    }
    return true;
  };
}

async function put(
  client: S3Client,
  key: string,
  data: Uint8Array,
  storageClass?: "GLACIER" | "DEEP_ARCHIVE" | "GLACIER_IR" | "STANDARD",
) {
  return await client.send(
    new PutObjectCommand({
      Bucket: B,
      Key: key,
      Body: data,
      ChecksumSHA256: sha(data),
      ...(storageClass === undefined ? {} : { StorageClass: storageClass }),
    }),
  );
}

function restore(client: S3Client, key: string, tier: "Expedited" | "Standard" | "Bulk", days = 3) {
  return client.send(
    new RestoreObjectCommand({
      Bucket: B,
      Key: key,
      RestoreRequest: { Days: days, GlacierJobParameters: { Tier: tier } },
    }),
  );
}

async function getText(client: S3Client, key: string, range?: string): Promise<Uint8Array> {
  const out = await client.send(
    new GetObjectCommand({ Bucket: B, Key: key, ...(range ? { Range: range } : {}) }),
  );
  return await out.Body!.transformToByteArray();
}

Deno.test("s3 double: GLACIER and DEEP_ARCHIVE objects refuse GET until restored", async () => {
  await withDouble(async ({ client }) => {
    const data = fill(1000, 1);
    for (const cls of ["GLACIER", "DEEP_ARCHIVE"] as const) {
      await put(client, `k/${cls}`, data, cls);
      await assert.rejects(
        getText(client, `k/${cls}`),
        s3Error("InvalidObjectState", 403, "storage class"),
      );
      const head = await client.send(new HeadObjectCommand({ Bucket: B, Key: `k/${cls}` }));
      assert.equal(head.StorageClass, cls);
      assert.equal(head.Restore, undefined);
      assert.equal(head.ContentLength, 1000);
    }
    await put(client, "k/ir", data, "GLACIER_IR");
    assert.deepEqual(await getText(client, "k/ir"), data);
    const ir = await client.send(new HeadObjectCommand({ Bucket: B, Key: "k/ir" }));
    assert.equal(ir.StorageClass, "GLACIER_IR");
    await put(client, "k/std", data);
    assert.deepEqual(await getText(client, "k/std", "bytes=10-19"), data.subarray(10, 20));
    const std = await client.send(new HeadObjectCommand({ Bucket: B, Key: "k/std" }));
    assert.equal(std.StorageClass, undefined, "STANDARD is not named, as in S3");
  });
});

Deno.test("s3 double: restore answers 202, then 409 while running, then 200 with a moved expiry", async () => {
  await withDouble(async ({ s3, client, clock }) => {
    const data = fill(5000, 2);
    await put(client, "r/g", data, "GLACIER");
    const started = await restore(client, "r/g", "Expedited", 3);
    assert.equal(started.$metadata.httpStatusCode, 202);
    const ongoing = await client.send(new HeadObjectCommand({ Bucket: B, Key: "r/g" }));
    assert.equal(ongoing.Restore, 'ongoing-request="true"');
    await assert.rejects(restore(client, "r/g", "Bulk"), s3Error("RestoreAlreadyInProgress", 409));
    clock.advance(RESTORE_DELAY_MS.GLACIER.Expedited - 1);
    await assert.rejects(getText(client, "r/g"), s3Error("InvalidObjectState", 403));
    clock.advance(1);
    const readyAt = START + RESTORE_DELAY_MS.GLACIER.Expedited;
    const expiry = new Date(Math.ceil((readyAt + 3 * DAY) / DAY) * DAY);
    const done = await client.send(new HeadObjectCommand({ Bucket: B, Key: "r/g" }));
    assert.equal(
      done.Restore,
      `ongoing-request="false", expiry-date="${expiry.toUTCString()}"`,
    );
    assert.match(done.Restore ?? "", /expiry-date="\w{3}, \d\d \w{3} \d{4} 00:00:00 GMT"/);
    assert.deepEqual(await getText(client, "r/g", "bytes=100-199"), data.subarray(100, 200));
    clock.advance(2 * DAY);
    const again = await restore(client, "r/g", "Standard", 5);
    assert.equal(again.$metadata.httpStatusCode, 200);
    const moved = Math.ceil((clock.now() + 5 * DAY) / DAY) * DAY;
    assert.equal(s3.objects(B)[0]?.restoreExpiresAt, moved);
    clock.set(moved);
    await assert.rejects(getText(client, "r/g"), s3Error("InvalidObjectState", 403));
    const gone = await client.send(new HeadObjectCommand({ Bucket: B, Key: "r/g" }));
    assert.equal(gone.Restore, undefined, "an expired restore leaves no header");
    assert.equal((await restore(client, "r/g", "Bulk")).$metadata.httpStatusCode, 202);
  });
});

Deno.test("s3 double: restore delays follow class and tier on the clock", async () => {
  await withDouble(async ({ s3, client, clock }) => {
    await put(client, "t/deep-std", fill(10, 3), "DEEP_ARCHIVE");
    await put(client, "t/deep-bulk", fill(10, 4), "DEEP_ARCHIVE");
    await put(client, "t/g-bulk", fill(10, 5), "GLACIER");
    await restore(client, "t/deep-std", "Standard");
    await restore(client, "t/deep-bulk", "Bulk");
    await restore(client, "t/g-bulk", "Bulk");
    const state = () => Object.fromEntries(s3.objects(B).map((o) => [o.key, o.restore]));
    clock.advance(12 * HOUR);
    assert.deepEqual(state(), {
      "t/deep-bulk": "ongoing",
      "t/deep-std": "restored",
      "t/g-bulk": "restored",
    });
    clock.advance(36 * HOUR - 1);
    assert.equal(state()["t/deep-bulk"], "ongoing");
    clock.advance(1);
    assert.equal(state()["t/deep-bulk"], "restored");
    await put(client, "t/later", fill(10, 6), "DEEP_ARCHIVE");
    await restore(client, "t/later", "Bulk");
    assert.equal(s3.completeRestores(B, "t/later"), 1);
    assert.equal(state()["t/later"], "restored");
  });
});

Deno.test("s3 double: restore refuses what S3 refuses", async () => {
  await withDouble(async ({ s3, client }) => {
    await put(client, "x/deep", fill(10, 7), "DEEP_ARCHIVE");
    await put(client, "x/std", fill(10, 8));
    await put(client, "x/ir", fill(10, 9), "GLACIER_IR");
    await assert.rejects(
      restore(client, "x/deep", "Expedited"),
      s3Error("InvalidArgument", 400, "Expedited"),
    );
    for (const key of ["x/std", "x/ir"]) {
      await assert.rejects(restore(client, key, "Standard"), s3Error("InvalidObjectState", 403));
    }
    await assert.rejects(restore(client, "x/missing", "Standard"), s3Error("NoSuchKey", 404));
    const noDays = await fetch(`${s3.endpoint}/${B}/x/deep?restore`, {
      method: "POST",
      body:
        "<RestoreRequest><GlacierJobParameters><Tier>Bulk</Tier></GlacierJobParameters></RestoreRequest>",
    });
    assert.equal(noDays.status, 400);
    assert.match(await noDays.text(), /<Code>MalformedXML<\/Code>.*Days is required/);
    const zero = await fetch(`${s3.endpoint}/${B}/x/deep?restore`, {
      method: "POST",
      body: "<RestoreRequest><Days>0</Days></RestoreRequest>",
    });
    assert.equal(zero.status, 400);
    assert.match(await zero.text(), /<Code>InvalidArgument<\/Code>/);
    const noBucket = await fetch(`${s3.endpoint}/no-bucket-here/x?restore`, {
      method: "POST",
      body: "<RestoreRequest><Days>1</Days></RestoreRequest>",
    });
    assert.equal(noBucket.status, 404);
    assert.match(await noBucket.text(), /<Code>NoSuchBucket<\/Code>/);
    assert.equal(s3.objects(B).find((o) => o.key === "x/deep")?.restore, "none");
  });
});

Deno.test("s3 double: PutObject checks the SHA-256 and answers it; a bad digest stores nothing", async () => {
  await withDouble(async ({ s3, client }) => {
    const data = fill(3000, 10);
    const out = await put(client, "c/ok", data, "DEEP_ARCHIVE");
    assert.equal(out.ChecksumSHA256, sha(data));
    await assert.rejects(
      client.send(
        new PutObjectCommand({
          Bucket: B,
          Key: "c/bad",
          Body: data,
          ChecksumSHA256: sha(fill(3000, 11)),
          StorageClass: "DEEP_ARCHIVE",
        }),
      ),
      s3Error("BadDigest", 400, "SHA256"),
    );
    await put(client, "c/keep", data, "GLACIER");
    await assert.rejects(
      client.send(
        new PutObjectCommand({
          Bucket: B,
          Key: "c/keep",
          Body: fill(3000, 12),
          ChecksumSHA256: sha(data),
        }),
      ),
      s3Error("BadDigest", 400),
    );
    assert.deepEqual(s3.objects(B).map((o) => [o.key, o.storageClass, o.checksumSHA256]), [
      ["c/keep", "GLACIER", sha(data)],
      ["c/ok", "DEEP_ARCHIVE", sha(data)],
    ]);
    const badShape = await fetch(`${s3.endpoint}/${B}/c/shape`, {
      method: "PUT",
      headers: { "x-amz-checksum-sha256": "not base64" },
      body: "abc",
    });
    assert.equal(badShape.status, 400);
    assert.match(await badShape.text(), /<Code>InvalidRequest<\/Code>.*x-amz-checksum-sha256/);
    await assert.rejects(
      client.send(
        new PutObjectCommand({
          Bucket: B,
          Key: "c/class",
          Body: data,
          StorageClass: "COLD" as "GLACIER",
        }),
      ),
      s3Error("InvalidStorageClass", 400),
    );
  });
});

Deno.test("s3 double: aws-chunked bodies and other checksum algorithms are refused clearly", async () => {
  await withDouble(async ({ s3 }) => {
    const cases: Record<string, string>[] = [
      { "content-encoding": "aws-chunked", "x-amz-decoded-content-length": "3" },
      { "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER" },
      { "x-amz-trailer": "x-amz-checksum-crc32" },
      { "x-amz-checksum-crc32": "AAAAAA==" },
    ];
    for (const headers of cases) {
      const res = await fetch(`${s3.endpoint}/${B}/chunked`, {
        method: "PUT",
        headers,
        body: "abc",
      });
      assert.equal(res.status, 400, JSON.stringify(headers));
      const text = await res.text();
      assert.match(text, /<Code>InvalidRequest<\/Code>/);
      assert.match(text, /aws-chunked|checks only x-amz-checksum-sha256/);
    }
    assert.deepEqual(s3.objects(B), []);
    const copy = await fetch(`${s3.endpoint}/${B}/copy`, {
      method: "PUT",
      headers: { "x-amz-copy-source": `/${B}/chunked` },
    });
    assert.equal(copy.status, 501);
    assert.match(await copy.text(), /<Code>NotImplemented<\/Code>.*CopyObject/);
  });
});

Deno.test("s3 double: multipart rules: part sizes, numbers, order, ETags, checksums", async () => {
  await withDouble(async ({ s3, client }) => {
    const key = "m/object";
    const create = () =>
      client.send(
        new CreateMultipartUploadCommand({
          Bucket: B,
          Key: key,
          StorageClass: "DEEP_ARCHIVE",
          ChecksumAlgorithm: "SHA256",
        }),
      );
    const part = (uploadId: string, n: number, data: Uint8Array, checksum = sha(data)) =>
      client.send(
        new UploadPartCommand({
          Bucket: B,
          Key: key,
          UploadId: uploadId,
          PartNumber: n,
          Body: data,
          ChecksumSHA256: checksum,
        }),
      );
    const small = fill(MIB, 13);
    const big = fill(5 * MIB, 14);
    const { UploadId: id } = await create();
    assert.ok(id);
    const p1 = await part(id, 1, small);
    assert.equal(p1.ChecksumSHA256, sha(small));
    const p2 = await part(id, 2, small);
    await assert.rejects(
      client.send(
        new CompleteMultipartUploadCommand({
          Bucket: B,
          Key: key,
          UploadId: id,
          MultipartUpload: {
            Parts: [
              { PartNumber: 1, ETag: p1.ETag, ChecksumSHA256: sha(small) },
              { PartNumber: 2, ETag: p2.ETag, ChecksumSHA256: sha(small) },
            ],
          },
        }),
      ),
      s3Error("EntityTooSmall", 400),
    );
    await assert.rejects(part(id, 0, small), s3Error("InvalidArgument", 400, "Part number"));
    await assert.rejects(part(id, 10_001, small), s3Error("InvalidArgument", 400));
    await assert.rejects(part(id, 3, small, sha(big)), s3Error("BadDigest", 400));
    const noChecksum = await fetch(`${s3.endpoint}/${B}/${key}?partNumber=3&uploadId=${id}`, {
      method: "PUT",
      body: small,
    });
    assert.equal(noChecksum.status, 400);
    assert.match(await noChecksum.text(), /must include a checksum header/);
    await assert.rejects(part("no-such-upload", 1, small), s3Error("NoSuchUpload", 404));
    const b1 = await part(id, 1, big);
    const complete = (
      parts: { PartNumber: number; ETag?: string | undefined; ChecksumSHA256?: string }[],
    ) =>
      client.send(
        new CompleteMultipartUploadCommand({
          Bucket: B,
          Key: key,
          UploadId: id,
          MultipartUpload: { Parts: parts },
        }),
      );
    await assert.rejects(
      complete([
        { PartNumber: 2, ETag: p2.ETag, ChecksumSHA256: sha(small) },
        { PartNumber: 1, ETag: b1.ETag, ChecksumSHA256: sha(big) },
      ]),
      s3Error("InvalidPartOrder", 400),
    );
    await assert.rejects(
      complete([
        { PartNumber: 1, ETag: p1.ETag, ChecksumSHA256: sha(big) },
        { PartNumber: 2, ETag: p2.ETag, ChecksumSHA256: sha(small) },
      ]),
      s3Error("InvalidPart", 400, "part 1"),
    );
    await assert.rejects(
      complete([
        { PartNumber: 1, ETag: b1.ETag, ChecksumSHA256: sha(small) },
        { PartNumber: 2, ETag: p2.ETag, ChecksumSHA256: sha(small) },
      ]),
      s3Error("InvalidPart", 400, "checksum of part 1"),
    );
    assert.equal(s3.uploads(B).length, 1, "failed completes leave the upload open");
    const done = await complete([
      { PartNumber: 1, ETag: b1.ETag, ChecksumSHA256: sha(big) },
      { PartNumber: 2, ETag: p2.ETag, ChecksumSHA256: sha(small) },
    ]);
    const composite = createHash("sha256")
      .update(Buffer.concat([Buffer.from(sha(big), "base64"), Buffer.from(sha(small), "base64")]))
      .digest("base64");
    assert.equal(done.ChecksumSHA256, `${composite}-2`);
    assert.deepEqual(s3.uploads(), []);
    const [obj] = s3.objects(B);
    assert.equal(obj?.size, 6 * MIB);
    assert.equal(obj?.storageClass, "DEEP_ARCHIVE");
    assert.equal(obj?.checksumSHA256, `${composite}-2`);
    await assert.rejects(getText(client, key), s3Error("InvalidObjectState", 403));
    await assert.rejects(
      complete([{ PartNumber: 1, ETag: b1.ETag }]),
      s3Error("NoSuchUpload", 404),
    );
  });
});

Deno.test("s3 double: AbortMultipartUpload removes the upload; aborting again is NoSuchUpload", async () => {
  await withDouble(async ({ s3, client }) => {
    const { UploadId: id } = await client.send(
      new CreateMultipartUploadCommand({ Bucket: B, Key: "a/x", StorageClass: "GLACIER" }),
    );
    assert.ok(id);
    await client.send(
      new UploadPartCommand({
        Bucket: B,
        Key: "a/x",
        UploadId: id,
        PartNumber: 1,
        Body: fill(100, 15),
      }),
    );
    assert.deepEqual(s3.uploads(B).map((u) => [u.key, u.storageClass, u.parts]), [
      ["a/x", "GLACIER", [1]],
    ]);
    const out = await client.send(
      new AbortMultipartUploadCommand({ Bucket: B, Key: "a/x", UploadId: id }),
    );
    assert.equal(out.$metadata.httpStatusCode, 204);
    assert.deepEqual(s3.uploads(), []);
    await assert.rejects(
      client.send(new AbortMultipartUploadCommand({ Bucket: B, Key: "a/x", UploadId: id })),
      s3Error("NoSuchUpload", 404),
    );
    assert.deepEqual(s3.objects(B), []);
  });
});

Deno.test("s3 double: ListObjectsV2 pages with tokens and names the real storage classes", async () => {
  await withDouble(async ({ client }) => {
    await put(client, "l/a", fill(1, 16), "DEEP_ARCHIVE");
    await put(client, "l/b", fill(2, 17), "GLACIER_IR");
    await put(client, "l/c", fill(3, 18));
    await put(client, "l/sub/d", fill(4, 19), "GLACIER");
    const seen: [string, string][] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const page = await client.send(
        new ListObjectsV2Command({
          Bucket: B,
          Prefix: "l/",
          Delimiter: "/",
          MaxKeys: 2,
          ...(token ? { ContinuationToken: token } : {}),
        }),
      );
      pages++;
      for (const c of page.Contents ?? []) seen.push([c.Key!, c.StorageClass!]);
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token);
    assert.equal(pages, 2);
    assert.deepEqual(seen, [["l/a", "DEEP_ARCHIVE"], ["l/b", "GLACIER_IR"], ["l/c", "STANDARD"]]);
    await assert.rejects(
      client.send(new ListObjectsV2Command({ Bucket: B, ContinuationToken: "%%%" })),
      s3Error("InvalidArgument", 400, "continuation token"),
    );
  });
});

Deno.test("s3 double: faults hit the operations named, as many times as asked, and are counted", async () => {
  await withDouble(async ({ s3, client }) => {
    const data = fill(4000, 20);
    s3.inject({ kind: "InternalError", op: "GetObject", count: 2 });
    await put(client, "f/a", data);
    assert.equal(s3.requestCount("PutObject"), 1);
    await assert.rejects(getText(client, "f/a"), s3Error("InternalError", 500));
    await assert.rejects(getText(client, "f/a"), s3Error("InternalError", 500));
    assert.deepEqual(await getText(client, "f/a"), data);
    s3.inject({ kind: "SlowDown" });
    await assert.rejects(put(client, "f/b", data), s3Error("SlowDown", 503));
    assert.deepEqual(s3.objects(B).map((o) => o.key), ["f/a"], "a faulted put has no effect");
    s3.inject({ kind: "badChecksum", op: "PutObject" });
    const lied = await put(client, "f/c", data);
    assert.notEqual(lied.ChecksumSHA256, sha(data));
    assert.equal(s3.objects(B).find((o) => o.key === "f/c")?.checksumSHA256, sha(data));
    s3.inject({ kind: "truncate", op: "GetObject" });
    const out = await client.send(new GetObjectCommand({ Bucket: B, Key: "f/a" }));
    assert.equal(out.ContentLength, 4000);
    await assert.rejects(out.Body!.transformToByteArray(), /aborted|ECONNRESET|closed|premature/i);
    assert.deepEqual(s3.counts(), { PutObject: 3, GetObject: 4 });
    assert.equal(s3.requestCount(), 7);
  });
});

Deno.test("s3 double: a reset drops the connection with no answer and no effect", async () => {
  await withDouble(async ({ s3 }) => {
    s3.inject({ kind: "reset", op: "PutObject" });
    await assert.rejects(
      fetch(`${s3.endpoint}/${B}/r/x`, { method: "PUT", body: "abc" }),
      (e: unknown) => e instanceof TypeError,
    );
    assert.deepEqual(s3.objects(B), []);
    const ok = await fetch(`${s3.endpoint}/${B}/r/x`, { method: "PUT", body: "abc" });
    await ok.body?.cancel();
    assert.equal(ok.status, 200);
  });
});

Deno.test("s3 double: the same seed gives the same faults for the same requests", async () => {
  async function run(seed: number): Promise<string[]> {
    const outcomes: string[] = [];
    await withDouble(async ({ s3, client }) => {
      s3.setFaultRate({ rate: 0.5, seed, kinds: ["InternalError", "SlowDown"] });
      for (let i = 0; i < 24; i++) {
        try {
          await put(client, `s/${i}`, fill(10, i));
          outcomes.push("ok");
        } catch (e) {
          outcomes.push((e as Error).name);
        }
      }
    });
    return outcomes;
  }
  const a = await run(42);
  assert.deepEqual(await run(42), a);
  assert.notDeepEqual(await run(43), a);
  assert.ok(a.includes("ok") && a.includes("InternalError") && a.includes("SlowDown"), String(a));
});

/** A plain HTTP request to the double (no SDK): status, headers and body text. */
async function raw(
  s3: S3ArchiveDouble,
  method: string,
  key: string,
  headers: Record<string, string> = {},
  body?: string,
): Promise<{ status: number; headers: Headers; text: string }> {
  const res = await fetch(`${s3.endpoint}/${B}/${key}`, {
    method,
    headers,
    ...(body === undefined ? {} : { body }),
  });
  return { status: res.status, headers: res.headers, text: await res.text() };
}

/** The current ETag of `key` as the double answers it, quotes included. */
async function etagOf(client: S3Client, key: string): Promise<string> {
  const head = await client.send(new HeadObjectCommand({ Bucket: B, Key: key }));
  assert.ok(head.ETag);
  return head.ETag;
}

Deno.test("s3 double: GET and HEAD with an If-Match that does not hold are 412 PreconditionFailed", async () => {
  await withDouble(async ({ s3, client }) => {
    const data = fill(1000, 20);
    const putOut = await put(client, "c/x", data);
    const etag = await etagOf(client, "c/x");
    assert.equal(putOut.ETag, etag);
    assert.equal(s3.objects(B)[0]?.etag, etag.replace(/"/g, ""));
    const bare = etag.replace(/"/g, "");
    // Matching: quoted, bare, in a list, or `*`.
    for (const value of [etag, bare, `"other", ${etag}`, "*"]) {
      const got = await raw(s3, "GET", "c/x", { "if-match": value });
      assert.equal(got.status, 200, value);
      assert.equal(got.text.length, 1000);
      assert.equal((await raw(s3, "HEAD", "c/x", { "if-match": value })).status, 200, value);
    }
    const ranged = await client.send(
      new GetObjectCommand({ Bucket: B, Key: "c/x", IfMatch: etag, Range: "bytes=0-9" }),
    );
    assert.equal(ranged.$metadata.httpStatusCode, 206);
    assert.deepEqual(await ranged.Body!.transformToByteArray(), data.subarray(0, 10));

    const get = await raw(s3, "GET", "c/x", { "if-match": '"0123456789abcdef0123456789abcdef"' });
    assert.equal(get.status, 412);
    assert.match(get.text, /<Code>PreconditionFailed<\/Code>/);
    assert.match(get.text, /<Condition>If-Match<\/Condition>/);
    const head = await raw(s3, "HEAD", "c/x", { "if-match": "other, also-other" });
    assert.equal(head.status, 412);
    assert.equal(head.text, "", "HEAD answers no body");
    await assert.rejects(
      client.send(new GetObjectCommand({ Bucket: B, Key: "c/x", IfMatch: '"stale"' })),
      s3Error("PreconditionFailed", 412, "pre-conditions"),
    );
    await assert.rejects(
      client.send(new HeadObjectCommand({ Bucket: B, Key: "c/x", IfMatch: '"stale"' })),
      (e: unknown) =>
        (e as { $metadata?: { httpStatusCode?: number } }).$metadata
          ?.httpStatusCode === 412,
    );
    // A request that fails anyway fails so, whatever its conditions.
    await assert.rejects(
      client.send(new GetObjectCommand({ Bucket: B, Key: "c/none", IfMatch: etag })),
      s3Error("NoSuchKey", 404),
    );
    await put(client, "c/cold", data, "GLACIER");
    await assert.rejects(
      client.send(new GetObjectCommand({ Bucket: B, Key: "c/cold", IfMatch: '"stale"' })),
      s3Error("InvalidObjectState", 403),
    );
  });
});

Deno.test("s3 double: GET and HEAD with an If-None-Match that matches are 304 Not Modified", async () => {
  await withDouble(async ({ s3, client }) => {
    await put(client, "n/x", fill(500, 21));
    const etag = await etagOf(client, "n/x");
    for (const value of [etag, etag.replace(/"/g, ""), `"other",${etag}`, "*"]) {
      for (const method of ["GET", "HEAD"]) {
        const got = await raw(s3, method, "n/x", { "if-none-match": value });
        assert.equal(got.status, 304, `${method} ${value}`);
        assert.equal(got.text, "");
        assert.equal(got.headers.get("etag"), etag);
      }
    }
    const other = await raw(s3, "GET", "n/x", { "if-none-match": '"other"' });
    assert.equal(other.status, 200);
    assert.equal(other.text.length, 500);
    await assert.rejects(
      client.send(new GetObjectCommand({ Bucket: B, Key: "n/x", IfNoneMatch: etag })),
      (e: unknown) =>
        (e as { $metadata?: { httpStatusCode?: number } }).$metadata
          ?.httpStatusCode === 304,
    );
    // A failed If-Match is 412 even when If-None-Match matches too.
    const both = await raw(s3, "GET", "n/x", { "if-match": '"other"', "if-none-match": etag });
    assert.equal(both.status, 412);
  });
});

Deno.test("s3 double: If-Modified-Since and If-Unmodified-Since follow Last-Modified, as S3 orders them", async () => {
  await withDouble(async ({ s3, client }) => {
    await put(client, "d/x", fill(300, 22));
    const etag = await etagOf(client, "d/x");
    const modified = (await raw(s3, "HEAD", "d/x")).headers.get("last-modified");
    assert.ok(modified);
    const at = Date.parse(modified);
    const before = new Date(at - 1000).toUTCString();
    const later = new Date(at + 60_000).toUTCString();
    const status = async (headers: Record<string, string>) =>
      (await raw(s3, "GET", "d/x", headers)).status;

    assert.equal(await status({ "if-modified-since": modified }), 304);
    assert.equal(await status({ "if-modified-since": later }), 304);
    assert.equal(await status({ "if-modified-since": before }), 200);
    assert.equal(await status({ "if-unmodified-since": before }), 412);
    assert.equal(await status({ "if-unmodified-since": modified }), 200);
    const failed = await raw(s3, "GET", "d/x", { "if-unmodified-since": before });
    assert.match(failed.text, /<Condition>If-Unmodified-Since<\/Condition>/);
    // If-Match true: If-Unmodified-Since is ignored (S3 answers 200).
    assert.equal(await status({ "if-match": etag, "if-unmodified-since": before }), 200);
    // If-None-Match present: If-Modified-Since is ignored.
    assert.equal(await status({ "if-none-match": '"other"', "if-modified-since": later }), 200);
    assert.equal(await status({ "if-none-match": etag, "if-modified-since": before }), 304);
    // A date that does not parse is ignored.
    assert.equal(await status({ "if-unmodified-since": "yesterday-ish" }), 200);
    assert.equal(await status({ "if-modified-since": "yesterday-ish" }), 200);
  });
});

Deno.test("s3 double: PutObject with If-None-Match: * on a taken key is 412 and stores nothing", async () => {
  await withDouble(async ({ s3, client }) => {
    const first = fill(100, 23);
    const out = await client.send(
      new PutObjectCommand({ Bucket: B, Key: "w/x", Body: first, IfNoneMatch: "*" }),
    );
    assert.equal(out.$metadata.httpStatusCode, 200);
    const etag = await etagOf(client, "w/x");
    const before = s3.objects(B);
    await assert.rejects(
      client.send(
        new PutObjectCommand({ Bucket: B, Key: "w/x", Body: fill(100, 24), IfNoneMatch: "*" }),
      ),
      s3Error("PreconditionFailed", 412, "pre-conditions"),
    );
    const refused = await raw(s3, "PUT", "w/x", { "if-none-match": "*" }, "other bytes");
    assert.equal(refused.status, 412);
    assert.match(refused.text, /<Condition>If-None-Match<\/Condition>/);
    assert.deepEqual(s3.objects(B), before);
    assert.equal(await etagOf(client, "w/x"), etag);
    assert.deepEqual(await getText(client, "w/x"), first);
    // S3 takes only `*` there.
    const notStar = await raw(s3, "PUT", "w/y", { "if-none-match": etag }, "abc");
    assert.equal(notStar.status, 501);
    assert.match(notStar.text, /<Code>NotImplemented<\/Code>.*If-None-Match/s);
    assert.deepEqual(s3.objects(B).map((o) => o.key), ["w/x"]);
  });
});

Deno.test("s3 double: PutObject with If-Match writes only over that ETag; a missing key is 404 NoSuchKey", async () => {
  await withDouble(async ({ s3, client }) => {
    const putIf = (key: string, body: Uint8Array, ifMatch: string) =>
      client.send(new PutObjectCommand({ Bucket: B, Key: key, Body: body, IfMatch: ifMatch }));
    await assert.rejects(
      putIf("m/none", fill(10, 25), '"0123456789abcdef0123456789abcdef"'),
      s3Error("NoSuchKey", 404),
    );
    assert.deepEqual(s3.objects(B), []);
    const v1 = fill(100, 26);
    await put(client, "m/x", v1);
    const etag1 = await etagOf(client, "m/x");
    await assert.rejects(
      putIf("m/x", fill(100, 27), '"stale"'),
      s3Error("PreconditionFailed", 412),
    );
    assert.deepEqual(await getText(client, "m/x"), v1);
    const v2 = fill(100, 28);
    await putIf("m/x", v2, etag1);
    const etag2 = await etagOf(client, "m/x");
    assert.notEqual(etag2, etag1);
    assert.deepEqual(await getText(client, "m/x"), v2);
    // The old ETag no longer holds; the new one does, quotes or not.
    await assert.rejects(putIf("m/x", v1, etag1), s3Error("PreconditionFailed", 412));
    await putIf("m/x", v1, etag2.replace(/"/g, ""));
    assert.deepEqual(await getText(client, "m/x"), v1);
    assert.equal(s3.objects(B)[0]?.etag, etag1.replace(/"/g, ""));
    // Conditional deletes are refused rather than done without their condition.
    const del = await raw(s3, "DELETE", "m/x", { "if-match": etag1 });
    assert.equal(del.status, 501);
    assert.match(del.text, /<Code>NotImplemented<\/Code>.*Conditional DeleteObject/s);
    assert.equal(s3.objects(B).length, 1);
  });
});

Deno.test("s3 double: CompleteMultipartUpload with If-None-Match: * on a taken key is 412; the upload stays open", async () => {
  await withDouble(async ({ s3, client }) => {
    const key = "mp/x";
    const start = async () => {
      const { UploadId } = await client.send(
        new CreateMultipartUploadCommand({ Bucket: B, Key: key }),
      );
      assert.ok(UploadId);
      const part = await client.send(
        new UploadPartCommand({
          Bucket: B,
          Key: key,
          UploadId,
          PartNumber: 1,
          Body: fill(1000, 29),
        }),
      );
      assert.ok(part.ETag);
      return { id: UploadId, parts: [{ PartNumber: 1, ETag: part.ETag }] };
    };
    const complete = (
      id: string,
      parts: { PartNumber: number; ETag: string }[],
      cond: { IfNoneMatch?: string; IfMatch?: string } = {},
    ) =>
      client.send(
        new CompleteMultipartUploadCommand({
          Bucket: B,
          Key: key,
          UploadId: id,
          MultipartUpload: { Parts: parts },
          ...cond,
        }),
      );

    const a = await start();
    const theirs = fill(50, 30);
    await put(client, key, theirs); // another writer takes the key meanwhile
    await assert.rejects(
      complete(a.id, a.parts, { IfNoneMatch: "*" }),
      s3Error("PreconditionFailed", 412, "pre-conditions"),
    );
    assert.deepEqual(await getText(client, key), theirs);
    assert.deepEqual(s3.uploads(B).map((u) => u.uploadId), [a.id], "left open, as S3 leaves it");
    await assert.rejects(
      complete(a.id, a.parts, { IfMatch: '"stale"' }),
      s3Error("PreconditionFailed", 412),
    );
    // It completes over the ETag it names, and then the object is the upload's.
    const done = await complete(a.id, a.parts, { IfMatch: await etagOf(client, key) });
    assert.equal(done.$metadata.httpStatusCode, 200);
    assert.deepEqual(await getText(client, key), fill(1000, 29));
    assert.equal(s3.objects(B)[0]?.etag, done.ETag?.replace(/"/g, ""));
    assert.deepEqual(s3.uploads(B), []);

    // A refused upload can still be aborted; a key that is free completes.
    const b = await start();
    await assert.rejects(
      complete(b.id, b.parts, { IfNoneMatch: "*" }),
      s3Error("PreconditionFailed", 412),
    );
    await client.send(new AbortMultipartUploadCommand({ Bucket: B, Key: key, UploadId: b.id }));
    assert.deepEqual(s3.uploads(B), []);
    await client.send(new DeleteObjectCommand({ Bucket: B, Key: key }));
    const c = await start();
    await complete(c.id, c.parts, { IfNoneMatch: "*" });
    assert.deepEqual(await getText(client, key), fill(1000, 29));
  });
});

Deno.test("s3 double: of racing If-None-Match: * writes the first to finish wins, the other is 412", async () => {
  await withDouble(async ({ s3, client }) => {
    const bodies = [fill(200_000, 31), fill(200_000, 32), fill(200_000, 33)];
    const results = await Promise.allSettled(
      bodies.map((body) =>
        client.send(
          new PutObjectCommand({ Bucket: B, Key: "race/x", Body: body, IfNoneMatch: "*" }),
        )
      ),
    );
    const won = results.flatMap((r, i) => (r.status === "fulfilled" ? [i] : []));
    assert.equal(won.length, 1, JSON.stringify(results.map((r) => r.status)));
    for (const r of results) {
      if (r.status === "rejected") s3Error("PreconditionFailed", 412)(r.reason);
    }
    assert.deepEqual(await getText(client, "race/x"), bodies[won[0]!]);
    assert.equal(s3.requestCount("PutObject"), 3);
  });
});

Deno.test("s3 double: beforeNext runs a hook once, before the next request of its operation", async () => {
  await withDouble(async ({ s3, client }) => {
    const seen: string[] = [];
    const theirs = fill(64, 34);
    s3.beforeNext("PutObject", async ({ op, bucket, key }) => {
      seen.push(`${op} ${bucket}/${key}`);
      await put(client, key, theirs); // another writer; does not run the hook again
    });
    await assert.rejects(
      client.send(
        new PutObjectCommand({ Bucket: B, Key: "h/x", Body: fill(64, 35), IfNoneMatch: "*" }),
      ),
      s3Error("PreconditionFailed", 412),
    );
    assert.deepEqual(seen, [`PutObject ${B}/h/x`]);
    assert.deepEqual(await getText(client, "h/x"), theirs);
    await put(client, "h/y", fill(8, 36));
    assert.equal(seen.length, 1, "used up");
    s3.beforeNext("GetObject", () => {
      throw new Error("hook broke");
    });
    await assert.rejects(getText(client, "h/y"), s3Error("InternalError", 500, "hook broke"));
  });
});

// ---------------------------------------------------------------------------
// Restore events delivered into the SQS double

const TOPIC = `arn:aws:sns:us-east-1:${DOUBLE_ACCOUNT_ID}:s3-restores`;
/** A key with a space, a plus and a non-ASCII character. */
const ODD_KEY = "r/red flower+été.tar";
/** {@linkcode ODD_KEY} as S3 events carry it (checked by hand, not by the double's encoder). */
const ODD_KEY_IN_EVENTS = "r/red+flower%2B%C3%A9t%C3%A9.tar";

interface WithSqs extends Peer {
  readonly sqs: SqsDouble;
  readonly sqsClient: SQSClient;
}

/** An S3 double and an SQS double on one manual clock, with SDK clients. */
async function withQueues(fn: (p: WithSqs) => void | Promise<void>): Promise<void> {
  await withDouble(async (peer) => {
    const sqs = await SqsDouble.start({ clock: peer.clock, pollIntervalMs: 10 });
    const sqsClient = new SQSClient({
      ...sqs.connection,
      maxAttempts: 1,
      logger: { debug() {}, info() {}, warn() {}, error() {} },
    });
    try {
      await fn({ ...peer, sqs, sqsClient });
    } finally {
      sqsClient.destroy();
      await sqs.close();
    }
  });
}

/** Everything visible in `queue` now (no wait), each message deleted once read. */
async function drainQueue(client: SQSClient, queue: SqsQueue): Promise<Message[]> {
  const out: Message[] = [];
  for (;;) {
    const { Messages = [] } = await client.send(
      new ReceiveMessageCommand({
        QueueUrl: queue.url,
        MaxNumberOfMessages: 10,
        MessageSystemAttributeNames: ["SentTimestamp"],
      }),
    );
    if (Messages.length === 0) return out;
    for (const m of Messages) {
      await client.send(
        new DeleteMessageCommand({ QueueUrl: queue.url, ReceiptHandle: m.ReceiptHandle! }),
      );
    }
    out.push(...Messages);
  }
}

/** The fields of an S3 event record the tests read. */
interface S3Record {
  readonly eventSource: string;
  readonly eventName: string;
  readonly eventTime: string;
  readonly s3: {
    readonly bucket: { readonly name: string };
    readonly object: { readonly key: string; readonly size: number; readonly eTag: string };
  };
  readonly glacierEventData?: {
    readonly restoreEventData: {
      readonly lifecycleRestorationExpiryTime: string;
      readonly lifecycleRestoreStorageClass: string;
    };
  };
}

/** The one S3 event record of a body: `{"Records":[record]}`. */
function recordOf(body: string): S3Record {
  const { Records } = JSON.parse(body) as { Records?: S3Record[] };
  assert.equal(Records?.length, 1, body);
  return Records![0]!;
}

/** The S3 body inside an SNS envelope from {@linkcode TOPIC}, checking the envelope. */
function unwrap(body: string): string {
  const envelope = JSON.parse(body);
  assert.equal(envelope.Type, "Notification");
  assert.equal(envelope.TopicArn, TOPIC);
  assert.equal(envelope.Subject, "Amazon S3 Notification");
  return envelope.Message;
}

/** `[eventName, bucket, key as carried]` of each record body. */
function summary(bodies: string[]): string[][] {
  return bodies.map((b) => {
    const r = recordOf(b);
    return [r.eventName, r.s3.bucket.name, r.s3.object.key];
  });
}

Deno.test("s3 double: restore events go straight to a queue: test event, Post, Completed, Delete", async () => {
  await withQueues(async ({ s3, client, clock, sqs, sqsClient }) => {
    const queue = sqs.createQueue("s3-events");
    s3.notifyRestores(B, queue);
    const [test, ...moreTests] = await drainQueue(sqsClient, queue);
    assert.deepEqual(moreTests, []);
    const testEvent = JSON.parse(test!.Body!);
    assert.equal(testEvent.Service, "Amazon S3");
    assert.equal(testEvent.Event, "s3:TestEvent");
    assert.equal(testEvent.Bucket, B);
    assert.equal(testEvent.Time, new Date(START).toISOString());

    const data = fill(3000, 40);
    await put(client, ODD_KEY, data, "GLACIER");
    await s3.createBucket("other-bucket");
    await client.send(
      new PutObjectCommand({
        Bucket: "other-bucket",
        Key: "o/x",
        Body: data,
        StorageClass: "GLACIER",
      }),
    );
    assert.deepEqual(await drainQueue(sqsClient, queue), [], "no event for a PUT");
    assert.equal((await restore(client, ODD_KEY, "Standard", 2)).$metadata.httpStatusCode, 202);
    await client.send(
      new RestoreObjectCommand({
        Bucket: "other-bucket",
        Key: "o/x",
        RestoreRequest: { Days: 2, GlacierJobParameters: { Tier: "Standard" } },
      }),
    );
    const posts = await drainQueue(sqsClient, queue);
    assert.deepEqual(summary(posts.map((m) => m.Body!)), [
      ["ObjectRestore:Post", B, ODD_KEY_IN_EVENTS],
    ]);
    const post = recordOf(posts[0]!.Body!);
    assert.equal(post.eventSource, "aws:s3");
    assert.equal(post.eventTime, new Date(START).toISOString());
    assert.equal(post.s3.object.size, data.length);
    assert.equal(post.s3.object.eTag, createHash("md5").update(data).digest("hex"));
    assert.equal(post.glacierEventData, undefined);
    assert.equal(
      decodeURIComponent(post.s3.object.key.replaceAll("+", " ")),
      ODD_KEY,
      "the key decodes back",
    );

    clock.advance(RESTORE_DELAY_MS.GLACIER.Standard - 1);
    assert.deepEqual(await drainQueue(sqsClient, queue), [], "nothing while it runs");
    const requests = s3.requestCount();
    clock.advance(1);
    const completed = await drainQueue(sqsClient, queue);
    assert.equal(s3.requestCount(), requests, "noticed without an S3 request");
    assert.deepEqual(summary(completed.map((m) => m.Body!)), [
      ["ObjectRestore:Completed", B, ODD_KEY_IN_EVENTS],
    ]);
    const done = recordOf(completed[0]!.Body!);
    const readyAt = START + RESTORE_DELAY_MS.GLACIER.Standard;
    assert.equal(done.eventTime, new Date(readyAt).toISOString());
    assert.equal(completed[0]!.Attributes?.SentTimestamp, String(readyAt), "sent as it completed");
    const head = await client.send(new HeadObjectCommand({ Bucket: B, Key: ODD_KEY }));
    const expiry = Math.ceil((readyAt + 2 * DAY) / DAY) * DAY;
    assert.equal(
      head.Restore,
      `ongoing-request="false", expiry-date="${new Date(expiry).toUTCString()}"`,
    );
    assert.deepEqual(done.glacierEventData, {
      restoreEventData: {
        lifecycleRestorationExpiryTime: new Date(expiry).toISOString(),
        lifecycleRestoreStorageClass: "GLACIER",
      },
    });

    clock.set(expiry - 1);
    assert.deepEqual(await drainQueue(sqsClient, queue), []);
    await clock.sleep(1);
    const deleted = await drainQueue(sqsClient, queue);
    assert.deepEqual(summary(deleted.map((m) => m.Body!)), [
      ["ObjectRestore:Delete", B, ODD_KEY_IN_EVENTS],
    ]);
    assert.equal(recordOf(deleted[0]!.Body!).eventTime, new Date(expiry).toISOString());
    clock.advance(30 * DAY);
    assert.deepEqual(await drainQueue(sqsClient, queue), [], "each event once");
  });
});

Deno.test("s3 double: restore events through an SNS topic, enveloped or raw", async () => {
  await withQueues(async ({ s3, client, sqs, sqsClient }) => {
    const wrapped = sqs.createQueue("wrapped");
    const raw = sqs.createQueue("raw");
    s3.notifyRestores(B, wrapped, { topicArn: TOPIC });
    s3.notifyRestores(B, raw, { topicArn: TOPIC, raw: true });
    const [wrappedTest] = await drainQueue(sqsClient, wrapped);
    assert.equal(JSON.parse(unwrap(wrappedTest!.Body!)).Event, "s3:TestEvent");
    const [rawTest] = await drainQueue(sqsClient, raw);
    assert.equal(JSON.parse(rawTest!.Body!).Event, "s3:TestEvent");

    await put(client, ODD_KEY, fill(100, 41), "DEEP_ARCHIVE");
    await restore(client, ODD_KEY, "Bulk");
    assert.equal(s3.completeRestores(B), 1);
    const expected = [
      ["ObjectRestore:Post", B, ODD_KEY_IN_EVENTS],
      ["ObjectRestore:Completed", B, ODD_KEY_IN_EVENTS],
    ];
    const viaEnvelope = (await drainQueue(sqsClient, wrapped)).map((m) => unwrap(m.Body!));
    assert.deepEqual(summary(viaEnvelope), expected);
    const rawBodies = (await drainQueue(sqsClient, raw)).map((m) => m.Body!);
    assert.deepEqual(summary(rawBodies), expected);
    assert.equal(
      recordOf(rawBodies[1]!).glacierEventData?.restoreEventData.lifecycleRestoreStorageClass,
      "DEEP_ARCHIVE",
    );
  });
});

Deno.test("s3 double: restore events start with the configuration; a 200 restore sends none", async () => {
  await withQueues(async ({ s3, client, clock, sqs, sqsClient }) => {
    const queue = sqs.createQueue("s3-events");
    await put(client, "e/done", fill(10, 42), "GLACIER");
    await put(client, "e/running", fill(10, 43), "GLACIER");
    await restore(client, "e/done", "Expedited");
    clock.advance(RESTORE_DELAY_MS.GLACIER.Expedited);
    await restore(client, "e/running", "Standard");
    s3.notifyRestores(B, queue);
    assert.equal(JSON.parse((await drainQueue(sqsClient, queue))[0]!.Body!).Event, "s3:TestEvent");
    assert.equal((await restore(client, "e/done", "Bulk", 9)).$metadata.httpStatusCode, 200);
    assert.deepEqual(await drainQueue(sqsClient, queue), [], "no Post for a 200");
    clock.advance(RESTORE_DELAY_MS.GLACIER.Standard);
    assert.deepEqual(summary((await drainQueue(sqsClient, queue)).map((m) => m.Body!)), [
      ["ObjectRestore:Completed", B, "e/running"],
    ]);
    // A deleted object's restore says nothing more.
    await client.send(new DeleteObjectCommand({ Bucket: B, Key: "e/running" }));
    clock.advance(30 * DAY);
    assert.deepEqual(summary((await drainQueue(sqsClient, queue)).map((m) => m.Body!)), [
      ["ObjectRestore:Delete", B, "e/done"],
    ]);
    // A queue deleted since: the event is lost, the restore still works.
    await sqsClient.send(new DeleteQueueCommand({ QueueUrl: queue.url }));
    assert.equal((await restore(client, "e/done", "Standard")).$metadata.httpStatusCode, 202);
  });
});

Deno.test("s3 double: a bucket's restore events have one destination, as in S3", async () => {
  await withQueues(({ s3, sqs }) => {
    const a = sqs.createQueue("a");
    const b = sqs.createQueue("b");
    s3.notifyRestores(B, a, { topicArn: TOPIC });
    const overlaps = (e: unknown) =>
      e instanceof RangeError && e.message.includes("Configurations overlap");
    assert.throws(() => s3.notifyRestores(B, b), overlaps);
    assert.throws(() => s3.notifyRestores(B, b, { topicArn: `${TOPIC}-2` }), overlaps);
    assert.throws(
      () => s3.notifyRestores(B, a, { topicArn: TOPIC, raw: true }),
      (e: unknown) =>
        e instanceof RangeError && /already subscribed with raw=false/.test(e.message),
    );
    s3.notifyRestores("another", a);
    assert.throws(() => s3.notifyRestores("another", b), overlaps);
    assert.throws(
      () => s3.notifyRestores("third", a, { raw: true }),
      (e: unknown) => e instanceof RangeError && e.message.includes("SNS topic only"),
    );
    assert.throws(
      () => s3.notifyRestores("third", a, { topicArn: "arn:aws:sqs:us-east-1:123456789012:a" }),
      (e: unknown) => e instanceof RangeError && e.message.includes("expected arn:aws:sns:"),
    );
  });
});
