/**
 * The Glacier double is strict: it rejects what Glacier rejects (PROTOCOLS.md
 * section 2), answers errors as Glacier does, and its clock, jobs and faults
 * behave as documented. Spoken to with the real SDK client, and with raw
 * signed HTTP where the SDK would not send the malformed request.
 * @module
 */

import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { Agent as HttpAgent } from "node:http";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  DeleteArchiveCommand,
  DeleteVaultCommand,
  DescribeJobCommand,
  DescribeVaultCommand,
  GetJobOutputCommand,
  GlacierClient,
  InitiateJobCommand,
  InitiateMultipartUploadCommand,
  ListJobsCommand,
  ListPartsCommand,
  UploadArchiveCommand,
  UploadMultipartPartCommand,
} from "@aws-sdk/client-glacier";
import {
  DeleteMessageCommand,
  DeleteQueueCommand,
  type Message,
  ReceiveMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { hex } from "../core/ids.ts";
import { combineTreeHashes, treeHash } from "../core/tree_hash.ts";
import {
  DOUBLE_ACCOUNT_ID,
  GlacierDouble,
  JOB_TTL_MS,
  TEST_CREDENTIALS,
} from "./doubles/glacier.ts";
import { SqsDouble, type SqsQueue } from "./doubles/sqs.ts";
import { bytesOf } from "./_helpers.ts";
import { readAll } from "./_streams.ts";

const MIB = 1024 * 1024;
const HOUR = 3_600_000;
const V = "v1";
const QUIET = { debug() {}, info() {}, warn() {}, error() {} };

function sdk(
  glacier: GlacierDouble,
  credentials: { accessKeyId: string; secretAccessKey: string } = TEST_CREDENTIALS,
): GlacierClient {
  return new GlacierClient({
    region: glacier.region,
    endpoint: glacier.endpoint,
    credentials: { ...credentials },
    maxAttempts: 1,
    logger: QUIET,
    requestHandler: { httpAgent: new HttpAgent({ keepAlive: false }) },
  });
}

async function withDouble(
  fn: (glacier: GlacierDouble, client: GlacierClient) => Promise<void>,
  options: { jobDelayMs?: number } = {},
): Promise<void> {
  const glacier = await GlacierDouble.start({
    vaults: [V],
    startMs: Date.UTC(2026, 0, 1),
    ...options,
  });
  const client = sdk(glacier);
  try {
    await fn(glacier, client);
  } finally {
    client.destroy();
    await glacier.close();
  }
}

/** Asserts an SDK call fails with Glacier's error `code` and HTTP `status`, naming `words`. */
async function rejectsWith(
  call: Promise<unknown>,
  code: string,
  status: number,
  words?: string | RegExp,
): Promise<void> {
  await assert.rejects(call, (e: unknown) => {
    const err = e as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    assert.equal(err.name, code, `error name of: ${err.message}`);
    assert.equal(err.$metadata?.httpStatusCode, status, `status of: ${err.message}`);
    if (typeof words === "string") assert.ok(err.message?.includes(words), err.message);
    else if (words) assert.match(err.message ?? "", words);
    return true;
  });
}

function upload(client: GlacierClient, data: Uint8Array, description?: string) {
  return client.send(
    new UploadArchiveCommand({
      accountId: "-",
      vaultName: V,
      body: data,
      ...(description === undefined ? {} : { archiveDescription: description }),
    }),
  );
}

// ---------------------------------------------------------------------------
// Raw signed HTTP, for requests the SDK would never make.

interface Raw {
  status: number;
  headers: Headers;
  body: Uint8Array;
  json: Record<string, unknown> | null;
}

async function raw(
  glacier: GlacierDouble,
  method: string,
  path: string,
  options: {
    headers?: Record<string, string>;
    body?: Uint8Array;
    sign?: boolean;
    secret?: string;
    region?: string;
    version?: string | null;
  } = {},
): Promise<Raw> {
  const body = options.body ?? new Uint8Array(0);
  const url = new URL(path, glacier.endpoint);
  const headers: Record<string, string> = { ...(options.headers ?? {}) };
  if (options.version !== null) headers["x-amz-glacier-version"] = options.version ?? "2012-06-01";
  if (options.sign !== false) {
    sign(
      method,
      url,
      headers,
      body,
      options.secret ?? TEST_CREDENTIALS.secretAccessKey,
      options.region ?? glacier.region,
    );
  }
  const res = await fetch(url, {
    method,
    headers,
    ...(method === "GET" || method === "DELETE" ? {} : { body: body as Uint8Array<ArrayBuffer> }),
  });
  const out = new Uint8Array(await res.arrayBuffer());
  let json: Record<string, unknown> | null = null;
  try {
    json = JSON.parse(new TextDecoder().decode(out));
  } catch {
    json = null;
  }
  return { status: res.status, headers: res.headers, body: out, json };
}

/** SigV4 as the AWS docs describe it, for a non-S3 service (path segments encoded twice). */
function sign(
  method: string,
  url: URL,
  headers: Record<string, string>,
  body: Uint8Array,
  secret: string,
  region: string,
): void {
  const amzDate = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
  const date = amzDate.slice(0, 8);
  const payload = createHash("sha256").update(body).digest("hex");
  headers["x-amz-date"] = amzDate;
  headers["x-amz-content-sha256"] ??= payload;
  const all: Record<string, string> = { host: url.host };
  for (const [k, v] of Object.entries(headers)) {
    all[k.toLowerCase()] = v.replace(/[ \t]+/g, " ").trim();
  }
  const names = Object.keys(all).sort();
  const enc = (s: string) =>
    encodeURIComponent(s).replace(
      /[!'()*]/g,
      (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
    );
  const query = [...url.searchParams].map(([k, v]) => `${enc(k)}=${enc(v)}`).sort().join("&");
  const canonical = [
    method,
    url.pathname.split("/").map(enc).join("/"),
    query,
    names.map((n) => `${n}:${all[n]}`).join("\n") + "\n",
    names.join(";"),
    headers["x-amz-content-sha256"],
  ].join("\n");
  const scope = `${date}/${region}/glacier/aws4_request`;
  const toSign = [
    "AWS4-HMAC-SHA256",
    amzDate,
    scope,
    createHash("sha256").update(canonical).digest("hex"),
  ]
    .join("\n");
  let key: Uint8Array = new TextEncoder().encode(`AWS4${secret}`);
  for (const part of [date, region, "glacier", "aws4_request"]) {
    key = createHmac("sha256", key).update(part).digest();
  }
  const signature = createHmac("sha256", key).update(toSign).digest("hex");
  headers["authorization"] =
    `AWS4-HMAC-SHA256 Credential=${TEST_CREDENTIALS.accessKeyId}/${scope}, SignedHeaders=${
      names.join(";")
    }, Signature=${signature}`;
}

function assertError(r: Raw, status: number, code: string, words?: string): void {
  assert.equal(r.status, status, `status, body ${new TextDecoder().decode(r.body)}`);
  assert.equal(r.json?.code, code);
  assert.equal(r.json?.type, status >= 500 ? "Server" : "Client");
  assert.equal(typeof r.json?.message, "string");
  if (words) assert.ok(String(r.json?.message).includes(words), String(r.json?.message));
  assert.equal(r.headers.get("x-amzn-errortype")?.split(":")[0], code);
  assert.ok((r.headers.get("x-amzn-requestid") ?? "").length > 0, "x-amzn-RequestId");
}

// ---------------------------------------------------------------------------
// Authentication and headers

Deno.test("glacier double: an unsigned request is 403 MissingAuthenticationTokenException", async () => {
  await withDouble(async (glacier) => {
    assertError(
      await raw(glacier, "GET", `/-/vaults/${V}`, { sign: false }),
      403,
      "MissingAuthenticationTokenException",
    );
    assertError(
      await raw(glacier, "GET", `/-/vaults/${V}`, {
        sign: false,
        headers: { authorization: "Basic abc" },
      }),
      400,
      "IncompleteSignatureException",
    );
  });
});

Deno.test("glacier double: a wrong signature, key or region is refused", async () => {
  await withDouble(async (glacier) => {
    assert.equal(
      (await raw(glacier, "GET", `/-/vaults/${V}`)).status,
      200,
      "a good signature passes",
    );
    assertError(
      await raw(glacier, "GET", `/-/vaults/${V}`, { secret: "not-the-secret" }),
      403,
      "InvalidSignatureException",
      "signature we calculated does not match",
    );
    assertError(
      await raw(glacier, "GET", `/-/vaults/${V}`, { region: "eu-west-1" }),
      403,
      "InvalidSignatureException",
      "eu-west-1",
    );
    const other = sdk(glacier, { accessKeyId: "AKIDSOMEONEELSE", secretAccessKey: "x" });
    try {
      await rejectsWith(
        other.send(new DescribeVaultCommand({ accountId: "-", vaultName: V })),
        "UnrecognizedClientException",
        403,
      );
    } finally {
      other.destroy();
    }
  });
});

Deno.test("glacier double: a missing or wrong x-amz-glacier-version is refused", async () => {
  await withDouble(async (glacier) => {
    assertError(
      await raw(glacier, "GET", `/-/vaults/${V}`, { version: null }),
      400,
      "MissingParameterValueException",
      "x-amz-glacier-version",
    );
    assertError(
      await raw(glacier, "GET", `/-/vaults/${V}`, { version: "2011-01-01" }),
      400,
      "InvalidParameterValueException",
      "x-amz-glacier-version",
    );
  });
});

Deno.test("glacier double: a body that does not match x-amz-content-sha256 is refused", async () => {
  await withDouble(async (glacier) => {
    const data = bytesOf(1, 100);
    const r = await raw(glacier, "POST", `/-/vaults/${V}/archives`, {
      body: data,
      headers: {
        "x-amz-sha256-tree-hash": treeHash(data),
        "x-amz-content-sha256": createHash("sha256").update(bytesOf(2, 100)).digest("hex"),
      },
    });
    assertError(r, 400, "InvalidParameterValueException", "x-amz-content-sha256");
    assert.deepEqual(glacier.archives(V), []);
  });
});

Deno.test("glacier double: another account and unknown paths are refused", async () => {
  await withDouble(async (glacier) => {
    assertError(
      await raw(glacier, "GET", `/999999999999/vaults/${V}`),
      403,
      "AccessDeniedException",
    );
    assert.equal((await raw(glacier, "GET", `/${DOUBLE_ACCOUNT_ID}/vaults/${V}`)).status, 200);
    assertError(
      await raw(glacier, "GET", `/-/vaults/${V}/nothing`),
      400,
      "UnknownOperationException",
    );
    assertError(
      await raw(glacier, "GET", "/-/vaults/none"),
      404,
      "ResourceNotFoundException",
      "vaults/none",
    );
  });
});

// ---------------------------------------------------------------------------
// Vaults and single uploads

Deno.test("glacier double: vaults are described, and only empty ones deleted", async () => {
  await withDouble(async (_glacier, client) => {
    const described = await client.send(new DescribeVaultCommand({ accountId: "-", vaultName: V }));
    assert.equal(described.VaultName, V);
    assert.equal(described.VaultARN, `arn:aws:glacier:us-east-1:${DOUBLE_ACCOUNT_ID}:vaults/${V}`);
    assert.equal(described.NumberOfArchives, 0);
    await upload(client, bytesOf(3, 10));
    await rejectsWith(
      client.send(new DeleteVaultCommand({ accountId: "-", vaultName: V })),
      "InvalidParameterValueException",
      400,
      "Vault not empty",
    );
    assert.equal(
      (await client.send(new DescribeVaultCommand({ accountId: "-", vaultName: V }))).SizeInBytes,
      10,
    );
  });
});

Deno.test("glacier double: UploadArchive stores the bytes and answers id and tree hash", async () => {
  await withDouble(async (glacier, client) => {
    const data = bytesOf(4, 3 * MIB + 17);
    const out = await upload(client, data, "coldpack v1");
    assert.equal(out.checksum, treeHash(data));
    assert.equal(out.archiveId?.length, 138);
    assert.equal(out.location, `/${DOUBLE_ACCOUNT_ID}/vaults/${V}/archives/${out.archiveId}`);
    const [a] = glacier.archives(V);
    assert.equal(a?.description, "coldpack v1");
    assert.equal(a?.size, data.length);
    assert.deepEqual(glacier.archiveBytes(V, out.archiveId!), data);
  });
});

Deno.test("glacier double: UploadArchive checks the tree hash against the body", async () => {
  await withDouble(async (glacier, client) => {
    const data = bytesOf(5, 2 * MIB);
    await rejectsWith(
      client.send(
        new UploadArchiveCommand({
          accountId: "-",
          vaultName: V,
          body: data,
          checksum: treeHash(bytesOf(6, 2 * MIB)),
        }),
      ),
      "InvalidParameterValueException",
      400,
      `payload's tree hash is ${treeHash(data)}`,
    );
    const r = await raw(glacier, "POST", `/-/vaults/${V}/archives`, { body: data });
    assertError(r, 400, "MissingParameterValueException", "x-amz-sha256-tree-hash");
    assert.deepEqual(glacier.archives(V), []);
  });
});

Deno.test("glacier double: an empty archive is refused", async () => {
  await withDouble(async (glacier) => {
    const empty = new Uint8Array(0);
    const r = await raw(glacier, "POST", `/-/vaults/${V}/archives`, {
      body: empty,
      headers: { "x-amz-sha256-tree-hash": treeHash(empty) },
    });
    assertError(r, 400, "InvalidParameterValueException", "Content-Length: 0");
  });
});

Deno.test("glacier double: descriptions longer than 1,024 or not printable ASCII are refused", async () => {
  await withDouble(async (glacier, client) => {
    await rejectsWith(
      upload(client, bytesOf(7, 10), "d".repeat(1025)),
      "InvalidParameterValueException",
      400,
      "1025 characters, at most 1024",
    );
    const data = bytesOf(7, 10);
    for (const [description, code] of [["caf\u00e9", 233], ["tab\there", 9]] as const) {
      const r = await raw(glacier, "POST", `/-/vaults/${V}/archives`, {
        body: data,
        headers: {
          "x-amz-sha256-tree-hash": treeHash(data),
          "x-amz-archive-description": description,
        },
      });
      assertError(r, 400, "InvalidParameterValueException", `character ${code}`);
    }
    await upload(client, data, "d".repeat(1024));
    await upload(client, data, " !~");
    assert.equal(glacier.archives(V).length, 2);
  });
});

Deno.test("glacier double: DeleteArchive removes an archive; an unknown one is 404", async () => {
  await withDouble(async (glacier, client) => {
    const out = await upload(client, bytesOf(8, 10));
    await client.send(
      new DeleteArchiveCommand({ accountId: "-", vaultName: V, archiveId: out.archiveId }),
    );
    assert.deepEqual(glacier.archives(V), []);
    await rejectsWith(
      client.send(
        new DeleteArchiveCommand({ accountId: "-", vaultName: V, archiveId: out.archiveId }),
      ),
      "ResourceNotFoundException",
      404,
    );
  });
});

// ---------------------------------------------------------------------------
// Multipart uploads

async function initiate(client: GlacierClient, partSize: number, description?: string) {
  const out = await client.send(
    new InitiateMultipartUploadCommand({
      accountId: "-",
      vaultName: V,
      partSize: String(partSize),
      ...(description === undefined ? {} : { archiveDescription: description }),
    }),
  );
  return out.uploadId!;
}

function part(
  client: GlacierClient,
  uploadId: string,
  start: number,
  data: Uint8Array,
  hash?: string,
) {
  return client.send(
    new UploadMultipartPartCommand({
      accountId: "-",
      vaultName: V,
      uploadId,
      range: `bytes ${start}-${start + data.length - 1}/*`,
      checksum: hash ?? treeHash(data),
      body: data,
    }),
  );
}

function complete(client: GlacierClient, uploadId: string, size: number, checksum: string) {
  return client.send(
    new CompleteMultipartUploadCommand({
      accountId: "-",
      vaultName: V,
      uploadId,
      archiveSize: String(size),
      checksum,
    }),
  );
}

Deno.test("glacier double: the part size must be 1 MiB x a power of two, up to 4 GiB", async () => {
  await withDouble(async (_glacier, client) => {
    for (const bad of [3 * MIB, MIB / 2, 8 * 1024 * MIB, MIB + 1]) {
      await rejectsWith(
        initiate(client, bad),
        "InvalidParameterValueException",
        400,
        "Invalid part size",
      );
    }
    for (const good of [MIB, 2 * MIB, 64 * MIB, 4 * 1024 * MIB]) await initiate(client, good);
  });
  await withDouble(async (glacier) => {
    assertError(
      await raw(glacier, "POST", `/-/vaults/${V}/multipart-uploads`),
      400,
      "MissingParameterValueException",
      "x-amz-part-size",
    );
  });
});

Deno.test("glacier double: a multipart upload in parts of the part size completes", async () => {
  await withDouble(async (glacier, client) => {
    const data = bytesOf(9, 5 * MIB + 3);
    const id = await initiate(client, 2 * MIB, "multi");
    const hashes: Uint8Array[] = [];
    for (let start = 0; start < data.length; start += 2 * MIB) {
      const chunk = data.subarray(start, start + 2 * MIB);
      const out = await part(client, id, start, chunk);
      assert.equal(out.checksum, treeHash(chunk));
      hashes.push(Buffer.from(treeHash(chunk), "hex"));
    }
    const listed = await client.send(
      new ListPartsCommand({ accountId: "-", vaultName: V, uploadId: id }),
    );
    assert.equal(listed.PartSizeInBytes, 2 * MIB);
    assert.deepEqual(listed.Parts?.map((p) => p.RangeInBytes), [
      `0-${2 * MIB - 1}`,
      `${2 * MIB}-${4 * MIB - 1}`,
      `${4 * MIB}-${data.length - 1}`,
    ]);
    const whole = hex(combineTreeHashes(hashes));
    assert.equal(whole, treeHash(data));
    const out = await complete(client, id, data.length, whole);
    assert.equal(out.checksum, whole);
    assert.deepEqual(glacier.archiveBytes(V, out.archiveId!), data);
    assert.equal(glacier.archives(V)[0]?.description, "multi");
    assert.deepEqual(glacier.uploads(V), []);
  });
});

Deno.test("glacier double: parts must be aligned, of the part size, with a matching tree hash", async () => {
  await withDouble(async (_glacier, client) => {
    const id = await initiate(client, MIB);
    const one = bytesOf(10, MIB);
    await rejectsWith(
      part(client, id, 512 * 1024, one),
      "InvalidParameterValueException",
      400,
      "does not start at a multiple of the part size",
    );
    await rejectsWith(
      part(client, id, 0, bytesOf(10, MIB + 1)),
      "InvalidParameterValueException",
      400,
      "more than the part size",
    );
    await rejectsWith(
      part(client, id, 0, one, treeHash(bytesOf(11, MIB))),
      "InvalidParameterValueException",
      400,
      "part's tree hash",
    );
    await rejectsWith(
      part(client, id, 10_000 * MIB, one),
      "InvalidParameterValueException",
      400,
      "at most 10000 parts",
    );
  });
});

Deno.test("glacier double: raw part requests with bad Content-Range or length are refused", async () => {
  await withDouble(async (glacier, client) => {
    const id = await initiate(client, MIB);
    const data = bytesOf(12, 1000);
    const path = `/-/vaults/${V}/multipart-uploads/${id}`;
    const h = { "x-amz-sha256-tree-hash": treeHash(data) };
    assertError(
      await raw(glacier, "PUT", path, {
        body: data,
        headers: { ...h, "content-range": "bytes 0-999" },
      }),
      400,
      "InvalidParameterValueException",
      "expected bytes a-b/*",
    );
    assertError(
      await raw(glacier, "PUT", path, {
        body: data,
        headers: { ...h, "content-range": "bytes 0-1999/*" },
      }),
      400,
      "InvalidParameterValueException",
      "declares 2000 bytes but the payload has 1000",
    );
    assertError(
      await raw(glacier, "PUT", path, { body: data, headers: h }),
      400,
      "MissingParameterValueException",
      "Content-Range",
    );
  });
});

Deno.test("glacier double: Complete checks the size, gaps, short parts and the tree hash", async () => {
  await withDouble(async (glacier, client) => {
    const data = bytesOf(13, 3 * MIB + 5);
    const whole = treeHash(data);
    const id = await initiate(client, MIB);
    await part(client, id, 0, data.subarray(0, MIB));
    await part(client, id, 2 * MIB, data.subarray(2 * MIB, 3 * MIB));
    await part(client, id, 3 * MIB, data.subarray(3 * MIB));
    await rejectsWith(
      complete(client, id, data.length, whole),
      "InvalidParameterValueException",
      400,
      "a gap",
    );
    await part(client, id, MIB, data.subarray(MIB, 2 * MIB - 1)); // one byte short, not last
    await rejectsWith(
      complete(client, id, data.length, whole),
      "InvalidParameterValueException",
      400,
      `part at byte ${MIB} has ${MIB - 1} bytes, not ${MIB}`,
    );
    await part(client, id, MIB, data.subarray(MIB, 2 * MIB)); // re-sent: overwrites
    await rejectsWith(
      complete(client, id, data.length + 1, whole),
      "InvalidParameterValueException",
      400,
      "does not match the uploaded parts",
    );
    await rejectsWith(
      complete(client, id, 2 * MIB, whole),
      "InvalidParameterValueException",
      400,
      `a part starts at byte ${2 * MIB}`,
    );
    await rejectsWith(
      complete(client, id, data.length, treeHash(bytesOf(1, 10))),
      "InvalidParameterValueException",
      400,
      "parts' tree hash",
    );
    assert.equal(glacier.uploads(V).length, 1, "failed completes leave the upload");
    const out = await complete(client, id, data.length, whole);
    assert.deepEqual(glacier.archiveBytes(V, out.archiveId!), data);
  });
});

Deno.test("glacier double: Abort is idempotent; an aborted upload is gone", async () => {
  await withDouble(async (glacier, client) => {
    const id = await initiate(client, MIB);
    await part(client, id, 0, bytesOf(14, 10));
    const abort = () =>
      client.send(new AbortMultipartUploadCommand({ accountId: "-", vaultName: V, uploadId: id }));
    await abort();
    await abort();
    assert.deepEqual(glacier.uploads(V), []);
    await rejectsWith(
      client.send(new ListPartsCommand({ accountId: "-", vaultName: V, uploadId: id })),
      "ResourceNotFoundException",
      404,
    );
    await rejectsWith(part(client, id, 0, bytesOf(14, 10)), "ResourceNotFoundException", 404);
  });
});

Deno.test("glacier double: an idle upload vanishes after 24 hours", async () => {
  await withDouble(async (glacier, client) => {
    const id = await initiate(client, MIB);
    glacier.advance(23 * HOUR);
    await part(client, id, 0, bytesOf(15, 10));
    glacier.advance(23 * HOUR);
    assert.equal(glacier.uploads(V).length, 1);
    glacier.advance(HOUR);
    assert.deepEqual(glacier.uploads(V), []);
  });
});

// ---------------------------------------------------------------------------
// Jobs

function retrieval(client: GlacierClient, archiveId: string, extra: Record<string, string> = {}) {
  return client.send(
    new InitiateJobCommand({
      accountId: "-",
      vaultName: V,
      jobParameters: { Type: "archive-retrieval", ArchiveId: archiveId, ...extra },
    }),
  );
}

function describe(client: GlacierClient, jobId: string) {
  return client.send(new DescribeJobCommand({ accountId: "-", vaultName: V, jobId }));
}

function output(client: GlacierClient, jobId: string, range?: string) {
  return client.send(
    new GetJobOutputCommand({ accountId: "-", vaultName: V, jobId, ...(range ? { range } : {}) }),
  );
}

Deno.test("glacier double: RetrievalByteRange must be megabyte aligned within the archive", async () => {
  await withDouble(async (_glacier, client) => {
    const size = 3 * MIB + 100;
    const { archiveId } = await upload(client, bytesOf(16, size));
    for (
      const [range, words] of [
        [`1-${MIB - 1}`, "start is not megabyte aligned"],
        [`0-${MIB}`, "end + 1 is neither megabyte aligned nor the archive size"],
        [`${MIB}-${size}`, "past the archive's last byte"],
        [`${2 * MIB}-${MIB - 1}`, "start is after end"],
        ["0-", "expected a-b"],
      ] as const
    ) {
      await rejectsWith(
        retrieval(client, archiveId!, { RetrievalByteRange: range }),
        "InvalidParameterValueException",
        400,
        words,
      );
    }
    for (const range of [`0-${MIB - 1}`, `${3 * MIB}-${size - 1}`, `${MIB}-${3 * MIB - 1}`]) {
      await retrieval(client, archiveId!, { RetrievalByteRange: range });
    }
  });
});

Deno.test("glacier double: InitiateJob checks description, tier, topic, type and archive", async () => {
  await withDouble(async (_glacier, client) => {
    const { archiveId } = await upload(client, bytesOf(17, 100));
    const cases: [Record<string, string>, string, number, string][] = [
      [{ Description: "x".repeat(1025) }, "InvalidParameterValueException", 400, "job description"],
      [{ Description: "caf\u00e9" }, "InvalidParameterValueException", 400, "character 233"],
      [{ Tier: "Fast" }, "InvalidParameterValueException", 400, "Invalid Tier"],
      [{ SNSTopic: "topic" }, "InvalidParameterValueException", 400, "not an SNS topic ARN"],
    ];
    for (const [extra, code, status, words] of cases) {
      await rejectsWith(retrieval(client, archiveId!, extra), code, status, words);
    }
    await rejectsWith(retrieval(client, "nope"), "ResourceNotFoundException", 404, "nope");
    await rejectsWith(
      client.send(
        new InitiateJobCommand({ accountId: "-", vaultName: V, jobParameters: { Type: "select" } }),
      ),
      "InvalidParameterValueException",
      400,
      "Invalid job type",
    );
    await rejectsWith(
      client.send(
        new InitiateJobCommand({
          accountId: "-",
          vaultName: V,
          jobParameters: { Type: "archive-retrieval" },
        }),
      ),
      "MissingParameterValueException",
      400,
      "ArchiveId",
    );
  });
});

Deno.test("glacier double: a job takes its delay on the double's clock, then expires 24 h later", async () => {
  await withDouble(async (glacier, client) => {
    const data = bytesOf(18, 2 * MIB);
    const { archiveId } = await upload(client, data);
    const t0 = glacier.now();
    const { jobId, location } = await retrieval(client, archiveId!, {
      Description: "r-1",
      Tier: "Bulk",
      SNSTopic: "arn:aws:sns:us-east-1:123456789012:done",
    });
    assert.equal(location, `/${DOUBLE_ACCOUNT_ID}/vaults/${V}/jobs/${jobId}`);
    let d = await describe(client, jobId!);
    assert.equal(d.StatusCode, "InProgress");
    assert.equal(d.Completed, false);
    assert.equal(d.Action, "ArchiveRetrieval");
    assert.equal(d.JobDescription, "r-1");
    assert.equal(d.Tier, "Bulk");
    assert.equal(d.ArchiveSizeInBytes, data.length);
    assert.equal(d.RetrievalByteRange, `0-${data.length - 1}`);
    assert.equal(d.SHA256TreeHash, treeHash(data));
    assert.equal(d.CreationDate, new Date(t0).toISOString());
    await rejectsWith(
      output(client, jobId!),
      "InvalidParameterValueException",
      400,
      "not currently available",
    );
    glacier.advance(4 * HOUR - 1);
    assert.equal((await describe(client, jobId!)).StatusCode, "InProgress");
    assert.deepEqual(glacier.notifications(), []);
    glacier.advance(1);
    d = await describe(client, jobId!);
    assert.equal(d.StatusCode, "Succeeded");
    assert.equal(d.CompletionDate, new Date(t0 + 4 * HOUR).toISOString());
    const [note] = glacier.notifications();
    assert.equal(note?.topic, "arn:aws:sns:us-east-1:123456789012:done");
    assert.equal(JSON.parse(note!.message).StatusCode, "Succeeded");
    const out = await output(client, jobId!);
    assert.equal(out.status, 200);
    assert.equal(out.checksum, treeHash(data));
    assert.deepEqual(await readAll(out.body!.transformToWebStream()), data);
    glacier.advance(JOB_TTL_MS - 1);
    assert.equal((await describe(client, jobId!)).StatusCode, "Succeeded");
    glacier.advance(1);
    await rejectsWith(describe(client, jobId!), "ResourceNotFoundException", 404, jobId!);
    await rejectsWith(output(client, jobId!), "ResourceNotFoundException", 404);
    assert.deepEqual(glacier.jobs(V), []);
  }, { jobDelayMs: 4 * HOUR });
});

Deno.test("glacier double: completeJob and failJob end a job at once", async () => {
  await withDouble(async (glacier, client) => {
    const { archiveId } = await upload(client, bytesOf(19, 100));
    const a = (await retrieval(client, archiveId!)).jobId!;
    const b = (await retrieval(client, archiveId!)).jobId!;
    glacier.completeJob(a);
    glacier.failJob(b, "Retrieval failed: simulated");
    assert.equal((await describe(client, a)).StatusCode, "Succeeded");
    const failed = await describe(client, b);
    assert.equal(failed.StatusCode, "Failed");
    assert.equal(failed.Completed, true);
    assert.equal(failed.StatusMessage, "Retrieval failed: simulated");
    await rejectsWith(output(client, b), "InvalidParameterValueException", 400, "simulated");
  }, { jobDelayMs: 12 * HOUR });
});

Deno.test("glacier double: GetJobOutput ranges are relative, 206, hashed only when aligned", async () => {
  await withDouble(async (_glacier, client) => {
    const data = bytesOf(20, 6 * MIB + 10);
    const { archiveId } = await upload(client, data);
    const job =
      (await retrieval(client, archiveId!, { RetrievalByteRange: `${4 * MIB}-${data.length - 1}` }))
        .jobId!;
    const d = await describe(client, job);
    assert.equal(d.SHA256TreeHash, treeHash(data.subarray(4 * MIB)));
    const whole = await output(client, job);
    assert.equal(whole.status, 200);
    assert.equal(whole.checksum, treeHash(data.subarray(4 * MIB)));
    assert.deepEqual(await readAll(whole.body!.transformToWebStream()), data.subarray(4 * MIB));
    const first = await output(client, job, `bytes=0-${MIB - 1}`);
    assert.equal(first.status, 206);
    assert.equal(first.contentRange, `bytes 0-${MIB - 1}/${2 * MIB + 10}`);
    assert.equal(first.checksum, treeHash(data.subarray(4 * MIB, 5 * MIB)));
    assert.deepEqual(
      await readAll(first.body!.transformToWebStream()),
      data.subarray(4 * MIB, 5 * MIB),
    );
    const odd = await output(client, job, "bytes=5-99");
    assert.equal(odd.checksum, undefined);
    assert.deepEqual(
      await readAll(odd.body!.transformToWebStream()),
      data.subarray(4 * MIB + 5, 4 * MIB + 100),
    );
    await rejectsWith(
      output(client, job, `bytes=0-${2 * MIB + 10}`),
      "InvalidParameterValueException",
      416,
    );
    // A range that is not tree-hash aligned gets no tree hash at all.
    const mid =
      (await retrieval(client, archiveId!, { RetrievalByteRange: `${MIB}-${3 * MIB - 1}` })).jobId!;
    assert.equal((await describe(client, mid)).SHA256TreeHash, undefined);
    assert.equal((await output(client, mid, `bytes=0-${MIB - 1}`)).checksum, undefined);
  });
});

Deno.test("glacier double: an inventory job lists the archives as JSON", async () => {
  await withDouble(async (glacier, client) => {
    const a = await upload(client, bytesOf(21, 10), "first");
    const b = await upload(client, bytesOf(22, 20), "second");
    const { jobId } = await client.send(
      new InitiateJobCommand({
        accountId: "-",
        vaultName: V,
        jobParameters: { Type: "inventory-retrieval" },
      }),
    );
    const d = await describe(client, jobId!);
    assert.equal(d.Action, "InventoryRetrieval");
    assert.equal(d.InventoryRetrievalParameters?.Format, "JSON");
    const out = await output(client, jobId!);
    const doc = JSON.parse(
      new TextDecoder().decode(await readAll(out.body!.transformToWebStream())),
    );
    assert.equal(doc.VaultARN, `arn:aws:glacier:us-east-1:${DOUBLE_ACCOUNT_ID}:vaults/${V}`);
    assert.deepEqual(
      doc.ArchiveList.map((
        x: Record<string, unknown>,
      ) => [x.ArchiveId, x.ArchiveDescription, x.Size]),
      [[a.archiveId, "first", 10], [b.archiveId, "second", 20]],
    );
    assert.equal(doc.ArchiveList[0].SHA256TreeHash, treeHash(bytesOf(21, 10)));
    assert.equal(doc.ArchiveList[0].CreationDate, new Date(glacier.now()).toISOString());
  });
});

Deno.test("glacier double: ListJobs filters by status and completion and pages", async () => {
  await withDouble(async (glacier, client) => {
    const { archiveId } = await upload(client, bytesOf(23, 100));
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) ids.push((await retrieval(client, archiveId!)).jobId!);
    glacier.completeJob(ids[0]!);
    glacier.failJob(ids[1]!, "no");
    const list = (q: Record<string, string | number>) =>
      client.send(new ListJobsCommand({ accountId: "-", vaultName: V, ...q }));
    assert.deepEqual((await list({ statuscode: "Succeeded" })).JobList?.map((j) => j.JobId), [
      ids[0],
    ]);
    assert.deepEqual((await list({ statuscode: "Failed" })).JobList?.map((j) => j.JobId), [ids[1]]);
    assert.equal((await list({ completed: "false" })).JobList?.length, 3);
    const page1 = await list({ limit: 2 });
    assert.deepEqual(page1.JobList?.map((j) => j.JobId), ids.slice(0, 2));
    const page2 = await list({ limit: 2, marker: page1.Marker! });
    assert.deepEqual(page2.JobList?.map((j) => j.JobId), ids.slice(2, 4));
    const page3 = await list({ limit: 2, marker: page2.Marker! });
    assert.deepEqual(page3.JobList?.map((j) => j.JobId), ids.slice(4));
    assert.equal(page3.Marker, undefined);
    await rejectsWith(list({ statuscode: "Done" }), "InvalidParameterValueException", 400);
  }, { jobDelayMs: HOUR });
});

// ---------------------------------------------------------------------------
// Faults and counters

Deno.test("glacier double: injected errors answer Glacier's codes and statuses", async () => {
  await withDouble(async (glacier, client) => {
    const cases = [
      ["server-error", "ServiceUnavailableException", 500],
      ["throttle", "ThrottlingException", 400],
      ["timeout", "RequestTimeoutException", 408],
      ["capacity", "InsufficientCapacityException", 503],
    ] as const;
    for (const [kind, code, status] of cases) {
      glacier.inject({ kind, operation: "DescribeVault" });
      await rejectsWith(
        client.send(new DescribeVaultCommand({ accountId: "-", vaultName: V })),
        code,
        status,
      );
    }
    glacier.inject({ kind: "error", code: "PolicyEnforcedException", message: "Over budget" });
    await rejectsWith(
      client.send(new DescribeVaultCommand({ accountId: "-", vaultName: V })),
      "PolicyEnforcedException",
      400,
      "Over budget",
    );
    await client.send(new DescribeVaultCommand({ accountId: "-", vaultName: V }));
    assert.equal(glacier.requestCount("DescribeVault"), 6);
    assert.equal(glacier.faultsLeft(), 0);
  });
});

Deno.test("glacier double: faults wait for their operation and count down", async () => {
  await withDouble(async (glacier, client) => {
    glacier.inject({ kind: "throttle", operation: "UploadArchive", count: 2 });
    await client.send(new DescribeVaultCommand({ accountId: "-", vaultName: V }));
    await rejectsWith(upload(client, bytesOf(24, 10)), "ThrottlingException", 400);
    await rejectsWith(upload(client, bytesOf(24, 10)), "ThrottlingException", 400);
    await upload(client, bytesOf(24, 10));
    assert.deepEqual(glacier.faultsServed(), [
      { operation: "UploadArchive", kind: "throttle" },
      { operation: "UploadArchive", kind: "throttle" },
    ]);
    assert.deepEqual(glacier.requestCounts(), { DescribeVault: 1, UploadArchive: 3 });
    assert.equal(glacier.archives(V).length, 1, "faulted uploads store nothing");
  });
});

Deno.test("glacier double: a reset cuts the connection, a truncated body stops short", async () => {
  await withDouble(async (glacier, client) => {
    glacier.inject({ kind: "reset", operation: "UploadArchive" });
    await assert.rejects(upload(client, bytesOf(25, 10)), (e: unknown) => {
      assert.equal((e as { code?: string }).code, "ECONNRESET");
      return true;
    });
    const data = bytesOf(26, 2 * MIB);
    const { archiveId } = await upload(client, data);
    const job = (await retrieval(client, archiveId!)).jobId!;
    glacier.inject({ kind: "truncate", operation: "GetJobOutput" });
    const out = await output(client, job);
    let got = 0;
    await assert.rejects(async () => {
      for await (const chunk of out.body!.transformToWebStream()) got += chunk.length;
    });
    assert.ok(got < data.length, `got ${got} of ${data.length} bytes`);
    glacier.inject({ kind: "wrong-tree-hash", operation: "GetJobOutput" });
    const wrong = await output(client, job);
    assert.notEqual(wrong.checksum, treeHash(data));
    await readAll(wrong.body!.transformToWebStream());
  });
});

Deno.test("glacier double: a slow answer is late but right", async () => {
  await withDouble(async (glacier, client) => {
    glacier.inject({ kind: "slow", delayMs: 30, operation: "DescribeVault" });
    const out = await client.send(new DescribeVaultCommand({ accountId: "-", vaultName: V }));
    assert.equal(out.VaultName, V);
    assert.deepEqual(glacier.faultsServed(), [{ operation: "DescribeVault", kind: "slow" }]);
  });
});

Deno.test("glacier double: random faults follow their seed", async () => {
  async function run(seed: number): Promise<string[]> {
    const outcomes: string[] = [];
    await withDouble(async (glacier, client) => {
      glacier.randomFaults({ rate: 0.3, seed, kinds: ["throttle", "server-error"] });
      for (let i = 0; i < 40; i++) {
        try {
          await client.send(new DescribeVaultCommand({ accountId: "-", vaultName: V }));
          outcomes.push("ok");
        } catch (e) {
          outcomes.push((e as Error).name);
        }
      }
      assert.equal(glacier.faultsServed().length, outcomes.filter((o) => o !== "ok").length);
    });
    return outcomes;
  }
  const a = await run(42);
  assert.deepEqual(await run(42), a);
  const faults = a.filter((o) => o !== "ok").length;
  assert.ok(faults > 3 && faults < 25, `${faults} faults of 40 at a 30% rate`);
  assert.ok(a.includes("ThrottlingException") && a.includes("ServiceUnavailableException"));
  assert.notDeepEqual(await run(43), a);
});

Deno.test("glacier double: a barrier proves requests were in flight together", async () => {
  await withDouble(async (glacier, client) => {
    glacier.barrier("DescribeVault", 3);
    const calls = [1, 2, 3].map(() =>
      client.send(new DescribeVaultCommand({ accountId: "-", vaultName: V }))
    );
    await Promise.all(calls);
    assert.equal(glacier.maxInFlight("DescribeVault"), 3);
    await client.send(new DescribeVaultCommand({ accountId: "-", vaultName: V }));
    assert.equal(glacier.maxInFlight("DescribeVault"), 3);
    assert.equal(glacier.requestCount("DescribeVault"), 4);
  });
});

// ---------------------------------------------------------------------------
// SNS notifications delivered into the SQS double

const TOPIC = `arn:aws:sns:us-east-1:${DOUBLE_ACCOUNT_ID}:coldpack-jobs`;
const OTHER_TOPIC = `arn:aws:sns:us-east-1:${DOUBLE_ACCOUNT_ID}:someone-else`;

interface WithSqs {
  glacier: GlacierDouble;
  client: GlacierClient;
  sqs: SqsDouble;
  sqsClient: SQSClient;
}

/** A Glacier double and an SQS double on the Glacier double's clock, with SDK clients. */
async function withQueues(
  fn: (ctx: WithSqs) => Promise<void>,
  options: { jobDelayMs?: number } = {},
): Promise<void> {
  await withDouble(async (glacier, client) => {
    const sqs = await SqsDouble.start({ clock: { now: () => glacier.now() }, pollIntervalMs: 10 });
    const sqsClient = new SQSClient({
      ...sqs.connection,
      maxAttempts: 1,
      logger: QUIET,
      requestHandler: { httpAgent: new HttpAgent({ keepAlive: false }) },
    });
    try {
      await fn({ glacier, client, sqs, sqsClient });
    } finally {
      sqsClient.destroy();
      await sqs.close();
    }
  }, options);
}

/** Everything visible in `queue` now (no wait), each message deleted once read. */
async function drainQueue(client: SQSClient, queue: SqsQueue): Promise<Message[]> {
  const out: Message[] = [];
  for (;;) {
    const { Messages = [] } = await client.send(
      new ReceiveMessageCommand({ QueueUrl: queue.url, MaxNumberOfMessages: 10 }),
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

/** The DescribeJob JSON inside an SNS envelope, checking the envelope on the way. */
function jobOfEnvelope(body: string, topic: string): Record<string, unknown> {
  const envelope = JSON.parse(body);
  assert.equal(envelope.Type, "Notification");
  assert.equal(envelope.TopicArn, topic);
  assert.equal(typeof envelope.MessageId, "string");
  for (const field of ["Signature", "SigningCertURL", "UnsubscribeURL"]) {
    assert.equal(typeof envelope[field], "string", field);
  }
  return JSON.parse(envelope.Message);
}

Deno.test("glacier double: a completed job's notification reaches subscribed queues when the clock moves", async () => {
  await withQueues(async ({ glacier, client, sqs, sqsClient }) => {
    const jobs = sqs.createQueue("jobs");
    const raw = sqs.createQueue("jobs-raw");
    const other = sqs.createQueue("other");
    glacier.subscribe(TOPIC, jobs);
    glacier.subscribe(TOPIC, raw, { raw: true });
    glacier.subscribe(OTHER_TOPIC, other);
    glacier.subscribe(TOPIC, jobs); // the same subscription again: still one delivery
    const { archiveId } = await upload(client, bytesOf(40, 3000));
    const { jobId } = await retrieval(client, archiveId!, {
      Description: "coldpack-job-1",
      SNSTopic: TOPIC,
    });
    await retrieval(client, archiveId!, { Description: "no topic" });
    const elsewhere = (await retrieval(client, archiveId!, { SNSTopic: OTHER_TOPIC })).jobId!;
    glacier.advance(4 * HOUR - 1);
    assert.deepEqual(await drainQueue(sqsClient, jobs), [], "nothing before completion");

    const requests = glacier.requestCounts();
    glacier.advance(1);
    const [message, ...more] = await drainQueue(sqsClient, jobs);
    assert.deepEqual(more, [], "exactly one message");
    assert.deepEqual(glacier.requestCounts(), requests, "no Glacier request was needed");
    const envelope = JSON.parse(message!.Body!);
    assert.equal(envelope.Timestamp, new Date(glacier.now()).toISOString());
    const job = jobOfEnvelope(message!.Body!, TOPIC);
    assert.equal(job.JobId, jobId);
    assert.equal(job.StatusCode, "Succeeded");
    assert.equal(job.Completed, true);
    assert.equal(job.JobDescription, "coldpack-job-1");
    assert.equal(job.ArchiveId, archiveId);
    assert.equal(job.Action, "ArchiveRetrieval");
    assert.equal(job.SNSTopic, TOPIC);
    assert.equal(job.CompletionDate, new Date(glacier.now()).toISOString());
    const note = glacier.notifications().find((n) => n.jobId === jobId);
    assert.equal(envelope.Message, note?.message, "SNS carries the DescribeJob JSON as is");

    const [rawMessage, ...moreRaw] = await drainQueue(sqsClient, raw);
    assert.deepEqual(moreRaw, []);
    assert.equal(rawMessage!.Body, note?.message, "raw delivery: the body is the job JSON");
    assert.equal(JSON.parse(rawMessage!.Body!).JobId, jobId);

    const [otherMessage, ...moreOther] = await drainQueue(sqsClient, other);
    assert.deepEqual(moreOther, []);
    assert.equal(jobOfEnvelope(otherMessage!.Body!, OTHER_TOPIC).JobId, elsewhere);

    glacier.advance(JOB_TTL_MS);
    assert.deepEqual(await drainQueue(sqsClient, jobs), [], "a job is announced once");
  }, { jobDelayMs: 4 * HOUR });
});

Deno.test("glacier double: a failed job publishes StatusCode Failed", async () => {
  await withQueues(async ({ glacier, client, sqs, sqsClient }) => {
    const jobs = sqs.createQueue("jobs");
    glacier.subscribe(TOPIC, jobs);
    const { archiveId } = await upload(client, bytesOf(41, 100));
    const { jobId } = await retrieval(client, archiveId!, { SNSTopic: TOPIC, Description: "f" });
    glacier.failJob(jobId!, "Retrieval failed: simulated");
    const [message, ...more] = await drainQueue(sqsClient, jobs);
    assert.deepEqual(more, []);
    const job = jobOfEnvelope(message!.Body!, TOPIC);
    assert.equal(job.JobId, jobId);
    assert.equal(job.StatusCode, "Failed");
    assert.equal(job.Completed, true);
    assert.equal(job.StatusMessage, "Retrieval failed: simulated");
    assert.equal(job.JobDescription, "f");
    glacier.advance(12 * HOUR);
    assert.deepEqual(await drainQueue(sqsClient, jobs), [], "a failed job is not announced again");
  }, { jobDelayMs: 12 * HOUR });
});

Deno.test("glacier double: a waiting long poll gets the notification as soon as the clock moves", async () => {
  await withQueues(async ({ glacier, client, sqs, sqsClient }) => {
    const jobs = sqs.createQueue("jobs");
    glacier.subscribe(TOPIC, jobs);
    const { archiveId } = await upload(client, bytesOf(42, 100));
    const { jobId } = await retrieval(client, archiveId!, { SNSTopic: TOPIC });
    const poll = sqsClient.send(
      new ReceiveMessageCommand({ QueueUrl: jobs.url, WaitTimeSeconds: 20 }),
    );
    for (let i = 0; i < 2000 && sqs.waitingReceives("jobs") === 0; i++) {
      await new Promise((r) => setTimeout(r, 5));
    }
    assert.equal(sqs.waitingReceives("jobs"), 1, "the long poll is waiting");
    glacier.advance(HOUR);
    const { Messages = [] } = await poll;
    assert.equal(Messages.length, 1);
    assert.equal(jobOfEnvelope(Messages[0]!.Body!, TOPIC).JobId, jobId);
  }, { jobDelayMs: HOUR });
});

Deno.test("glacier double: subscriptions start when made and are checked", async () => {
  await withQueues(async ({ glacier, client, sqs, sqsClient }) => {
    const jobs = sqs.createQueue("jobs");
    const { archiveId } = await upload(client, bytesOf(43, 100));
    await retrieval(client, archiveId!, { SNSTopic: TOPIC }); // done at once, nobody subscribed
    assert.equal(glacier.notifications().length, 1);
    glacier.subscribe(TOPIC, jobs);
    assert.deepEqual(await drainQueue(sqsClient, jobs), [], "no earlier notification replayed");
    const { jobId } = await retrieval(client, archiveId!, { SNSTopic: TOPIC });
    const [message] = await drainQueue(sqsClient, jobs);
    assert.equal(jobOfEnvelope(message!.Body!, TOPIC).JobId, jobId);

    assert.throws(
      () => glacier.subscribe(TOPIC, jobs, { raw: true }),
      (e: unknown) =>
        e instanceof RangeError && /already subscribed with raw=false/.test(e.message),
    );
    for (const bad of ["jobs", "arn:aws:sqs:us-east-1:123456789012:jobs"]) {
      assert.throws(
        () => glacier.subscribe(bad, jobs),
        (e: unknown) =>
          e instanceof RangeError && e.message.includes("expected arn:aws:sns:<region>"),
      );
    }
    // A queue deleted since: SNS drops the message, and Glacier carries on.
    await sqsClient.send(new DeleteQueueCommand({ QueueUrl: jobs.url }));
    await retrieval(client, archiveId!, { SNSTopic: TOPIC });
    assert.equal(glacier.notifications().length, 3);
    assert.deepEqual(sqs.queues(), []);
  });
});
