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
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  RestoreObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { ManualClock, RESTORE_DELAY_MS, S3ArchiveDouble } from "./doubles/s3_archive.ts";

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
