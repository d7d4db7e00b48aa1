/**
 * The `--store` URL: `file:///vault` (or a bare `/vault`), `glacier://REGION/VAULT`,
 * `s3://BUCKET/PREFIX?storage-class=DEEP_ARCHIVE`.
 * @module
 */

import { parseDuration } from "./duration.ts";

/** S3 storage classes coldpack writes archives to. */
export type S3StorageClass = "GLACIER" | "DEEP_ARCHIVE" | "GLACIER_IR";

/** A parsed store location. */
export type StoreSpec =
  | {
    readonly kind: "vault-dir";
    /** Absolute directory path, without a trailing `/` (except the root). */
    readonly path: string;
    /** How long a retrieval stays in progress, ms (default 0: ready at once). */
    readonly retrievalDelayMs: number;
    /** How long retrieved bytes stay readable once ready, ms (default 24 h). */
    readonly retrievalTtlMs: number;
  }
  | {
    readonly kind: "glacier";
    /** AWS region, e.g. `eu-west-1`. */
    readonly region: string;
    /** Vault name. */
    readonly vault: string;
    /** SNS topic ARN told of every retrieval job's completion (`?sns-topic=`), if any. */
    readonly snsTopic: string | null;
  }
  | {
    readonly kind: "s3";
    readonly bucket: string;
    /** Key prefix without leading or trailing `/`; empty for the bucket root. */
    readonly prefix: string;
    readonly storageClass: S3StorageClass;
    /** Days a restored copy stays readable (`?restore-days=`, default 7). */
    readonly restoreDays: number;
  };

/** Default time a local vault retrieval stays readable: 24 hours, as Glacier promises. */
export const DEFAULT_RETRIEVAL_TTL_MS = 24 * 3_600_000;

const STORAGE_CLASSES: readonly S3StorageClass[] = ["GLACIER", "DEEP_ARCHIVE", "GLACIER_IR"];
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;
const REGION = /^[a-z]{2}(?:-[a-z]+)+-\d+$/;
const VAULT = /^[A-Za-z0-9_.-]{1,255}$/;
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * Parses a store URL.
 *
 * - `file:///abs/path[?retrieval-delay=5m&retrieval-ttl=24h]`: a local vault
 *   directory. A bare absolute path (`/srv/vault`) means the same; it is taken
 *   literally (no query, no percent-decoding).
 * - `glacier://REGION/VAULT`: an Amazon Glacier vault.
 * - `s3://BUCKET[/PREFIX][?storage-class=GLACIER|DEEP_ARCHIVE|GLACIER_IR]`
 *   (default `DEEP_ARCHIVE`).
 *
 * Throws `SyntaxError` for a URL it cannot read (unknown scheme, relative
 * path, missing vault or bucket, unknown query parameter, bad duration) and
 * `RangeError` for a value outside the allowed set (storage class). Messages
 * name the URL and the problem. Credentials in the URL are refused and not
 * repeated in the message.
 *
 * @example
 * ```ts
 * parseStoreUrl("file:///srv/vault?retrieval-delay=30s");
 * // { kind: "vault-dir", path: "/srv/vault", retrievalDelayMs: 30000, retrievalTtlMs: 86400000 }
 * parseStoreUrl("s3://backups/ugc?storage-class=GLACIER");
 * // { kind: "s3", bucket: "backups", prefix: "ugc", storageClass: "GLACIER" }
 * ```
 */
export function parseStoreUrl(url: string): StoreSpec {
  if (url.startsWith("/")) {
    return {
      kind: "vault-dir",
      path: trimTrailingSlashes(url),
      retrievalDelayMs: 0,
      retrievalTtlMs: DEFAULT_RETRIEVAL_TTL_MS,
    };
  }
  const scheme = SCHEME.exec(url)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    throw new SyntaxError(
      `Invalid store URL "${url}": a local vault path must be absolute (/path or file:///path)`,
    );
  }
  if (scheme !== "file" && scheme !== "glacier" && scheme !== "s3") {
    throw new SyntaxError(
      `Unsupported store URL "${url}": scheme must be file, glacier or s3`,
    );
  }
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new SyntaxError(`Invalid store URL "${url}": cannot parse it as a URL`);
  }
  if (parsed.username !== "" || parsed.password !== "") {
    throw new SyntaxError(
      "Invalid store URL: it contains credentials; AWS credentials come from the environment, profiles or instance roles",
    );
  }
  if (parsed.hash !== "") {
    throw new SyntaxError(`Invalid store URL "${url}": a fragment (#...) is not allowed`);
  }
  switch (scheme) {
    case "file":
      return parseFile(url, parsed);
    case "glacier":
      return parseGlacier(url, parsed);
    case "s3":
      return parseS3(url, parsed);
  }
}

function parseFile(url: string, parsed: URL): StoreSpec {
  // `new URL` turns `file:vault` and `file://vault` into absolute paths; the
  // raw text tells an absolute path (`file:///...`) from a relative one.
  if (!/^file:\/\/\//i.test(url)) {
    throw new SyntaxError(
      `Invalid store URL "${url}": a local vault path must be absolute (file:///path)`,
    );
  }
  const params = queryParams(url, parsed, ["retrieval-delay", "retrieval-ttl"]);
  const path = trimTrailingSlashes(decodePath(url, parsed.pathname));
  return {
    kind: "vault-dir",
    path,
    retrievalDelayMs: durationParam(url, params, "retrieval-delay", 0),
    retrievalTtlMs: durationParam(url, params, "retrieval-ttl", DEFAULT_RETRIEVAL_TTL_MS),
  };
}

const SNS_TOPIC = /^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/;

function parseGlacier(url: string, parsed: URL): StoreSpec {
  const params = queryParams(url, parsed, ["sns-topic"]);
  const snsTopic = params.get("sns-topic") ?? null;
  if (snsTopic !== null && !SNS_TOPIC.test(snsTopic)) {
    throw new SyntaxError(
      `Invalid store URL "${url}": sns-topic "${snsTopic}" is not an SNS topic ARN ` +
        "(arn:aws:sns:REGION:ACCOUNT:NAME)",
    );
  }
  const region = parsed.hostname;
  if (region === "") {
    throw new SyntaxError(`Invalid store URL "${url}": missing region (glacier://REGION/VAULT)`);
  }
  if (!REGION.test(region) || parsed.port !== "") {
    throw new SyntaxError(
      `Invalid store URL "${url}": "${parsed.host}" is not an AWS region such as us-east-1`,
    );
  }
  const vault = decodePath(url, parsed.pathname).replace(/^\/+|\/+$/g, "");
  if (vault === "") {
    throw new SyntaxError(
      `Invalid store URL "${url}": missing vault name (glacier://REGION/VAULT)`,
    );
  }
  if (!VAULT.test(vault)) {
    throw new SyntaxError(
      `Invalid store URL "${url}": vault name "${vault}" must be 1-255 characters of A-Z a-z 0-9 _ . -`,
    );
  }
  return { kind: "glacier", region, vault, snsTopic };
}

function parseS3(url: string, parsed: URL): StoreSpec {
  const params = queryParams(url, parsed, ["storage-class", "restore-days"]);
  const bucket = parsed.hostname;
  if (bucket === "") {
    throw new SyntaxError(`Invalid store URL "${url}": missing bucket (s3://BUCKET/PREFIX)`);
  }
  if (!BUCKET.test(bucket) || bucket.includes("..") || parsed.port !== "") {
    throw new SyntaxError(
      `Invalid store URL "${url}": "${parsed.host}" is not a valid S3 bucket name (3-63 characters of a-z 0-9 . -)`,
    );
  }
  const prefix = decodePath(url, parsed.pathname).replace(/^\/+|\/+$/g, "");
  const raw = params.get("storage-class");
  let storageClass: S3StorageClass = "DEEP_ARCHIVE";
  if (raw !== undefined) {
    const found = STORAGE_CLASSES.find((c) => c === raw.toUpperCase());
    if (found === undefined) {
      throw new RangeError(
        `Invalid store URL "${url}": storage-class "${raw}" must be GLACIER, DEEP_ARCHIVE or GLACIER_IR`,
      );
    }
    storageClass = found;
  }
  const days = params.get("restore-days");
  let restoreDays = 7;
  if (days !== undefined) {
    restoreDays = Number(days);
    if (!/^\d+$/.test(days) || restoreDays < 1 || restoreDays > 365) {
      throw new RangeError(
        `Invalid store URL "${url}": restore-days "${days}" must be a whole number from 1 to 365`,
      );
    }
  }
  return { kind: "s3", bucket, prefix, storageClass, restoreDays };
}

/** The query as a map, refusing unknown and repeated parameters. */
function queryParams(url: string, parsed: URL, allowed: readonly string[]): Map<string, string> {
  const out = new Map<string, string>();
  for (const [key, value] of parsed.searchParams) {
    if (!allowed.includes(key)) {
      const expected = allowed.length === 0
        ? "this scheme takes none"
        : `expected ${allowed.join(" or ")}`;
      throw new SyntaxError(`Invalid store URL "${url}": unknown parameter "${key}" (${expected})`);
    }
    if (out.has(key)) {
      throw new SyntaxError(`Invalid store URL "${url}": parameter "${key}" given twice`);
    }
    out.set(key, value);
  }
  return out;
}

function durationParam(
  url: string,
  params: Map<string, string>,
  key: string,
  fallback: number,
): number {
  const raw = params.get(key);
  if (raw === undefined) return fallback;
  try {
    return parseDuration(raw);
  } catch (e) {
    const message =
      `Invalid store URL "${url}": ${key} "${raw}" is not a duration such as 30s, 5m or 24h`;
    throw e instanceof RangeError ? new RangeError(message) : new SyntaxError(message);
  }
}

function decodePath(url: string, pathname: string): string {
  try {
    return decodeURIComponent(pathname);
  } catch {
    throw new SyntaxError(`Invalid store URL "${url}": bad percent-encoding in the path`);
  }
}

function trimTrailingSlashes(path: string): string {
  const trimmed = path.replace(/\/+$/, "");
  return trimmed === "" ? "/" : trimmed;
}
