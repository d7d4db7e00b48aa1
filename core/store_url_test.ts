import assert from "node:assert/strict";
import { DEFAULT_RETRIEVAL_TTL_MS, parseStoreUrl } from "./store_url.ts";

const DAY = 24 * 3_600_000;

function rejects(url: string, cls: typeof SyntaxError | typeof RangeError, words: string) {
  assert.throws(
    () => parseStoreUrl(url),
    (e: unknown) => {
      assert.ok(e instanceof cls, `${url}: expected ${cls.name}, got ${e}`);
      assert.ok(e.message.includes(words), `${url}: "${e.message}" lacks "${words}"`);
      return true;
    },
  );
}

Deno.test("parseStoreUrl reads a file URL with defaults", () => {
  assert.equal(DEFAULT_RETRIEVAL_TTL_MS, DAY);
  assert.deepEqual(parseStoreUrl("file:///srv/vault"), {
    kind: "vault-dir",
    path: "/srv/vault",
    retrievalDelayMs: 0,
    retrievalTtlMs: DAY,
  });
});

Deno.test("parseStoreUrl reads retrieval-delay and retrieval-ttl", () => {
  assert.deepEqual(
    parseStoreUrl("file:///srv/vault/?retrieval-delay=30s&retrieval-ttl=2h"),
    { kind: "vault-dir", path: "/srv/vault", retrievalDelayMs: 30_000, retrievalTtlMs: 7_200_000 },
  );
  const spec = parseStoreUrl("file:///v?retrieval-delay=5m");
  assert.equal(spec.kind === "vault-dir" && spec.retrievalDelayMs, 300_000);
  const zero = parseStoreUrl("file:///v?retrieval-delay=0");
  assert.equal(zero.kind === "vault-dir" && zero.retrievalDelayMs, 0);
});

Deno.test("parseStoreUrl decodes a percent-encoded file path", () => {
  const spec = parseStoreUrl("file:///srv/my%20vault");
  assert.equal(spec.kind === "vault-dir" && spec.path, "/srv/my vault");
});

Deno.test("parseStoreUrl takes a bare absolute path literally", () => {
  assert.deepEqual(parseStoreUrl("/vault"), {
    kind: "vault-dir",
    path: "/vault",
    retrievalDelayMs: 0,
    retrievalTtlMs: DAY,
  });
  const spec = parseStoreUrl("/srv/odd%20name/");
  assert.equal(spec.kind === "vault-dir" && spec.path, "/srv/odd%20name");
  const root = parseStoreUrl("/");
  assert.equal(root.kind === "vault-dir" && root.path, "/");
});

Deno.test("parseStoreUrl reads a glacier URL", () => {
  assert.deepEqual(parseStoreUrl("glacier://eu-west-1/ugc-archive"), {
    kind: "glacier",
    region: "eu-west-1",
    vault: "ugc-archive",
    snsTopic: null,
  });
  assert.deepEqual(parseStoreUrl("glacier://us-gov-west-1/v.1_a"), {
    kind: "glacier",
    region: "us-gov-west-1",
    vault: "v.1_a",
    snsTopic: null,
  });
  const topic = "arn:aws:sns:us-east-1:123456789012:coldpack-restores";
  assert.deepEqual(parseStoreUrl(`glacier://us-east-1/v?sns-topic=${topic}`), {
    kind: "glacier",
    region: "us-east-1",
    vault: "v",
    snsTopic: topic,
  });
  rejects(
    "glacier://us-east-1/v?sns-topic=coldpack",
    SyntaxError,
    `sns-topic "coldpack" is not an SNS topic ARN`,
  );
});

Deno.test("parseStoreUrl reads an s3 URL with the default storage class", () => {
  assert.deepEqual(parseStoreUrl("s3://backups/ugc/archives/"), {
    kind: "s3",
    bucket: "backups",
    prefix: "ugc/archives",
    storageClass: "DEEP_ARCHIVE",
    restoreDays: 7,
  });
  assert.deepEqual(parseStoreUrl("s3://backups"), {
    kind: "s3",
    bucket: "backups",
    prefix: "",
    storageClass: "DEEP_ARCHIVE",
    restoreDays: 7,
  });
});

Deno.test("parseStoreUrl reads each storage class", () => {
  for (const storageClass of ["GLACIER", "DEEP_ARCHIVE", "GLACIER_IR"] as const) {
    assert.deepEqual(parseStoreUrl(`s3://my.bucket-1/p?storage-class=${storageClass}`), {
      kind: "s3",
      bucket: "my.bucket-1",
      prefix: "p",
      storageClass,
      restoreDays: 7,
    });
  }
  const days = parseStoreUrl("s3://bkt/p?restore-days=2");
  assert.equal(days.kind === "s3" && days.restoreDays, 2);
  rejects(
    "s3://bkt/p?restore-days=0",
    RangeError,
    `restore-days "0" must be a whole number from 1 to 365`,
  );
  const lower = parseStoreUrl("s3://bkt/p?storage-class=glacier_ir");
  assert.equal(lower.kind === "s3" && lower.storageClass, "GLACIER_IR");
});

Deno.test("parseStoreUrl rejects an unknown scheme", () => {
  rejects(
    "ftp://x",
    SyntaxError,
    'Unsupported store URL "ftp://x": scheme must be file, glacier or s3',
  );
  rejects("sqlite:///x.db", SyntaxError, "scheme must be file, glacier or s3");
});

Deno.test("parseStoreUrl rejects a relative path", () => {
  rejects("vault", SyntaxError, 'Invalid store URL "vault": a local vault path must be absolute');
  rejects("./vault", SyntaxError, "must be absolute");
  rejects("file://vault", SyntaxError, "must be absolute (file:///path)");
  rejects("file:vault", SyntaxError, "must be absolute (file:///path)");
  rejects("", SyntaxError, "must be absolute");
});

Deno.test("parseStoreUrl rejects a glacier URL without region or vault", () => {
  rejects("glacier://eu-west-1", SyntaxError, "missing vault name");
  rejects("glacier://eu-west-1/", SyntaxError, "missing vault name");
  rejects("glacier:///vault", SyntaxError, "missing region");
  rejects("glacier://nowhere/vault", SyntaxError, '"nowhere" is not an AWS region');
  rejects("glacier://eu-west-1/a/b", SyntaxError, 'vault name "a/b" must be');
});

Deno.test("parseStoreUrl rejects an s3 URL without a valid bucket", () => {
  rejects("s3:///prefix", SyntaxError, "missing bucket");
  rejects("s3://", SyntaxError, "missing bucket");
  rejects("s3://Upper/p", SyntaxError, "is not a valid S3 bucket name");
  rejects("s3://ab/p", SyntaxError, '"ab" is not a valid S3 bucket name');
});

Deno.test("parseStoreUrl rejects a bad storage class", () => {
  rejects(
    "s3://bkt/p?storage-class=STANDARD",
    RangeError,
    'storage-class "STANDARD" must be GLACIER, DEEP_ARCHIVE or GLACIER_IR',
  );
});

Deno.test("parseStoreUrl rejects a bad duration", () => {
  rejects(
    "file:///v?retrieval-delay=soon",
    SyntaxError,
    'retrieval-delay "soon" is not a duration',
  );
  rejects("file:///v?retrieval-ttl=-1h", SyntaxError, 'retrieval-ttl "-1h" is not a duration');
  rejects("file:///v?retrieval-ttl=99999999999999999d", RangeError, "retrieval-ttl");
});

Deno.test("parseStoreUrl rejects unknown and repeated query parameters", () => {
  rejects("file:///v?delay=5m", SyntaxError, 'unknown parameter "delay"');
  rejects("s3://bkt/p?storage=GLACIER", SyntaxError, 'unknown parameter "storage"');
  rejects("glacier://eu-west-1/v?tier=Bulk", SyntaxError, 'unknown parameter "tier"');
  rejects(
    "file:///v?retrieval-delay=1s&retrieval-delay=2s",
    SyntaxError,
    'parameter "retrieval-delay" given twice',
  );
});

Deno.test("parseStoreUrl refuses credentials without repeating them", () => {
  assert.throws(
    () => parseStoreUrl("s3://AKIA:secret@bkt/p"),
    (e: unknown) =>
      e instanceof SyntaxError && e.message.includes("contains credentials") &&
      !e.message.includes("secret"),
  );
});
