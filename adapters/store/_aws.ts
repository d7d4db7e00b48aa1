/**
 * AWS SDK client settings and error mapping that the Glacier store, the S3
 * store, the S3 source and the S3 destination share, so that they build
 * their clients and classify S3 errors the same way; and what the two S3
 * writers (store and destination) share: multipart settings, the clean-up
 * of a failed multipart upload, reading a GetObject body.
 * @module
 */

import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import {
  AbortMultipartUploadCommand,
  CreateMultipartUploadCommand,
  type CreateMultipartUploadCommandInput,
  type CreateMultipartUploadCommandOutput,
  S3Client,
  type S3ClientConfig,
} from "@aws-sdk/client-s3";
import { ArchiveMismatchError, ChangedError, PortError, VanishedError } from "../../core/errors.ts";
import { retry, type RetryPolicy, withTimeout } from "../../core/retry.ts";
import { systemClock } from "../clock.ts";

const MIB = 1024 * 1024;
/** S3's smallest part but the last. */
const S3_MIN_PART = 5 * MIB;
/** S3's largest part, and largest single PUT. */
export const S3_MAX_PART = 5 * 1024 * MIB;
const S3_MAX_PARTS = 10_000;
/** How long the clean-up abort of a failed multipart upload may take, retries included. */
const CLEANUP_TIMEOUT_MS = 60_000;

/**
 * A logger that says nothing: the SDK warns on the console about failed
 * streaming requests, and those failures reach the caller as PortErrors.
 */
export const QUIET_LOGGER = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * HTTP agents that open one connection per request. Deno's `node:http`
 * client silently re-sends a request whose pooled keep-alive connection
 * turns out reset (denoland/deno#31932); a streamed body cannot be sent
 * twice, so that re-send hangs the upload. With fresh connections a reset
 * reaches the store as a retryable ECONNRESET. A connection costs little
 * next to MiB-sized bodies.
 */
export function freshConnectionAgents(): {
  readonly httpAgent: HttpAgent;
  readonly httpsAgent: HttpsAgent;
} {
  return {
    httpAgent: new HttpAgent({ keepAlive: false }),
    httpsAgent: new HttpsAgent({ keepAlive: false }),
  };
}

/** Where and how an S3 client connects; every field defaults to the SDK's own chain. */
export interface S3ClientOptions {
  /** S3 endpoint URL; default from the SDK chain (`AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, AWS). */
  readonly endpoint?: string;
  /** Path-style addressing (needed by most S3 look-alikes); default false. */
  readonly forcePathStyle?: boolean;
  /** AWS region; default from the SDK chain (`AWS_REGION`, profile). */
  readonly region?: string;
  /** Credentials; default from the SDK chain (environment, profile, instance role). */
  readonly credentials?: {
    readonly accessKeyId: string;
    readonly secretAccessKey: string;
    readonly sessionToken?: string;
  };
}

/**
 * The S3 client settings coldpack uses: one attempt per call (the wrappers
 * of core/retry.ts retry), the quiet logger, and checksums only where an
 * operation requires them (we send our own `Content-MD5` or SHA-256).
 */
export function s3ClientConfig(options: S3ClientOptions): S3ClientConfig {
  const config: S3ClientConfig = {
    maxAttempts: 1,
    logger: QUIET_LOGGER,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
  };
  if (options.endpoint !== undefined) config.endpoint = options.endpoint;
  if (options.forcePathStyle !== undefined) config.forcePathStyle = options.forcePathStyle;
  if (options.region !== undefined) config.region = options.region;
  if (options.credentials !== undefined) config.credentials = { ...options.credentials };
  return config;
}

/**
 * The two S3 clients of a writer (the S3 store, the S3 destination):
 * `client` for requests whose bodies are buffered or empty (kept-alive
 * connections: a silent re-send cannot hurt them), and `streaming` for
 * streamed PutObject bodies, on fresh connections (see
 * {@linkcode freshConnectionAgents}).
 */
export class S3Clients {
  readonly client: S3Client;
  readonly streaming: S3Client;
  readonly #agents = freshConnectionAgents();

  constructor(options: S3ClientOptions) {
    const config = s3ClientConfig(options);
    this.client = new S3Client(config);
    this.streaming = new S3Client({ ...config, requestHandler: this.#agents });
  }

  /** Closes both clients' connections. Idempotent. */
  destroy(): void {
    this.client.destroy();
    this.streaming.destroy();
    this.#agents.httpAgent.destroy();
    this.#agents.httpsAgent.destroy();
  }
}

/** How an S3 writer (the S3 store, the S3 destination) goes multipart. */
export interface S3MultipartOptions {
  /** Bodies of at least this many bytes go up in parts; default 64 MiB (1 B to 5 GiB). */
  readonly multipartThreshold?: number;
  /** Part size, raised as needed to keep at most 10,000 parts; default 16 MiB (at least 5 MiB). */
  readonly partSize?: number;
  /** Parts in flight at once (each holds one part in memory); default 2 (1 to 64). */
  readonly partConcurrency?: number;
  /**
   * How one failed part, and the clean-up abort of a failed upload, are
   * retried; default 4 attempts, 0.5 s to 10 s on the system clock.
   */
  readonly partRetry?: RetryPolicy;
}

/** {@linkcode S3MultipartOptions} checked, with their defaults. */
export interface S3Multipart {
  readonly threshold: number;
  readonly partSize: number;
  readonly concurrency: number;
  readonly retry: RetryPolicy;
}

/**
 * Checks multipart options and fills in the defaults.
 *
 * @throws {RangeError} an option out of range, naming it
 */
export function s3Multipart(options: S3MultipartOptions): S3Multipart {
  return {
    threshold: wholeNumber(
      "multipart threshold",
      options.multipartThreshold ?? 64 * MIB,
      1,
      S3_MAX_PART,
    ),
    partSize: wholeNumber("part size", options.partSize ?? 16 * MIB, S3_MIN_PART, S3_MAX_PART),
    concurrency: wholeNumber("part concurrency", options.partConcurrency ?? 2, 1, 64),
    retry: options.partRetry ?? { attempts: 4, baseMs: 500, maxMs: 10_000, clock: systemClock },
  };
}

/**
 * The part size for a body of `size` bytes: `partSize`, or more (whole
 * MiB) when 10,000 parts of it would not hold the body.
 */
export function s3PartSize(size: number, partSize: number): number {
  return Math.max(partSize, Math.ceil(size / S3_MAX_PARTS / MIB) * MIB);
}

/**
 * `n`, checked to be a whole number from `min` to `max`.
 *
 * @throws {RangeError} naming `what`, `n` and the bounds
 */
export function wholeNumber(what: string, n: number, min: number, max: number): number {
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new RangeError(`Invalid ${what}: ${n} (must be a whole number from ${min} to ${max})`);
  }
  return n;
}

/** One multipart upload for {@linkcode s3MultipartUpload}. */
export interface S3MultipartUpload {
  /** The client for every request of it (parts are buffered: kept-alive connections do). */
  readonly client: S3Client;
  readonly bucket: string;
  readonly key: string;
  /** The store or destination, for messages. */
  readonly location: string;
  /** CreateMultipartUpload's other fields: storage class, checksum algorithm, metadata... */
  readonly create: Omit<CreateMultipartUploadCommandInput, "Bucket" | "Key">;
  /** How the clean-up abort is retried. */
  readonly retry: RetryPolicy;
  readonly signal: AbortSignal | undefined;
}

/**
 * Runs one multipart upload: CreateMultipartUpload, then `work(uploadId)`,
 * which sends the parts and completes it. When `work` throws, the upload is
 * aborted (retrying as `upload.retry` says, for at most a minute of real
 * time, whatever the caller's signal) before the error is rethrown. A
 * failed abort is swallowed: the write fails with its own error, and parts
 * left behind are removed by the bucket's `AbortIncompleteMultipartUpload`
 * lifecycle rule.
 *
 * @throws {PortError} S3's error; `MalformedResponse` (retryable) when S3 answers no upload id
 */
export async function s3MultipartUpload<T>(
  upload: S3MultipartUpload,
  work: (uploadId: string) => Promise<T>,
): Promise<T> {
  const { client, bucket, key, location, signal } = upload;
  const created = await sendS3<CreateMultipartUploadCommandOutput>(
    client,
    new CreateMultipartUploadCommand({ ...upload.create, Bucket: bucket, Key: key }),
    { op: "CreateMultipartUpload", key, location },
    signal,
  );
  const uploadId = created.UploadId;
  if (uploadId === undefined) {
    throw new PortError(`S3 CreateMultipartUpload of ${key} in ${location} answered no upload id`, {
      code: "MalformedResponse",
      retryable: true,
    });
  }
  try {
    return await work(uploadId);
  } catch (e) {
    try {
      await withTimeout(
        `S3 AbortMultipartUpload of ${key} in ${location}`,
        CLEANUP_TIMEOUT_MS,
        systemClock,
        (cleanup) =>
          retry(
            () =>
              sendS3(
                client,
                new AbortMultipartUploadCommand({ Bucket: bucket, Key: key, UploadId: uploadId }),
                { op: "AbortMultipartUpload", key, location },
                cleanup,
              ),
            upload.retry,
            cleanup,
          ),
      );
    } catch {
      // See above: the write reports its own error.
    }
    throw e;
  }
}

/** S3 codes that mean "try again later" (throttling, timeouts, server trouble). */
const S3_RETRYABLE_CODES = new Set([
  "SlowDown",
  "InternalError",
  "ServiceUnavailable",
  "RequestTimeout",
  "RequestTimeoutException",
  "Throttling",
  "ThrottlingException",
  "ThrottledException",
  "TooManyRequestsException",
  "RequestLimitExceeded",
  "BandwidthLimitExceeded",
  "GlacierExpeditedRetrievalNotAvailable",
  "TimeoutError",
  "Timeout",
  "TruncatedBody",
  "MalformedResponse",
  // 409 to a conditional write racing another for the same key: "retry the upload".
  "ConditionalRequestConflict",
]);

/**
 * Connection-level failures and client-side timeouts: nothing (or not all)
 * was answered, so trying again may help. The S3 classifier here and the
 * Glacier store's both use this one list.
 */
export const NETWORK_CODES: ReadonlySet<string> = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "TimeoutError",
  "RequestTimeout",
]);

/**
 * Turns an error from an S3 call into a `PortError` with S3's own code
 * (`NoSuchKey`, `AccessDenied`, `SlowDown`, `BadDigest`...), or the errno
 * of a connection failure (`ECONNRESET`, `ECONNREFUSED`...), naming the
 * operation, the key and the location (which holds no secret). Retryable:
 * throttling, timeouts, 5xx, 429, connection failures ("socket hang up"
 * included) and answers cut off. `PortError`, `ArchiveMismatchError`,
 * `ChangedError`, `VanishedError`, `RangeError` and non-errors pass as they
 * are.
 *
 * @param e what the SDK threw
 * @param op the operation, e.g. `GetObject`
 * @param key the object key, or `""` when none
 * @param location the store, source or destination, e.g. `s3://bucket/prefix`
 */
export function s3PortError(e: unknown, op: string, key: string, location: string): unknown {
  if (
    e instanceof PortError || e instanceof ArchiveMismatchError || e instanceof ChangedError ||
    e instanceof VanishedError || e instanceof RangeError || !(e instanceof Error)
  ) {
    return e;
  }
  const meta = (e as { $metadata?: { httpStatusCode?: number } }).$metadata;
  const status = meta?.httpStatusCode;
  const errno = (e as { code?: unknown }).code;
  let code = typeof errno === "string" && /^E[A-Z_]+$/.test(errno) ? errno : e.name;
  let message = oneLine(e.message);
  if (!/^E[A-Z_]+$/.test(code) && /socket hang up|ECONNRESET/i.test(message)) code = "ECONNRESET";
  if (!/^E[A-Z_]+$/.test(code) && /ECONNREFUSED/.test(message)) code = "ECONNREFUSED";
  if (status !== undefined && status < 300 && !/^E[A-Z_]+$/.test(code)) {
    // A success status with an error: the answer was cut off or could not be read.
    code = /aborted|premature|ended/i.test(message) ? "TruncatedBody" : "MalformedResponse";
  } else if (
    (code === "Unknown" || code === "UnknownError" || code === "Error") && status !== undefined
  ) {
    // An answer without an error body (HEAD has none): S3's generic code for the status.
    code = status === 500
      ? "InternalError"
      : status === 503
      ? "ServiceUnavailable"
      : status === 404
      ? "NotFound"
      : status === 412
      ? "PreconditionFailed"
      : `HTTP${status}`;
    if (message === "UnknownError" || message === "") message = "the answer names no error code";
  }
  const retryable = S3_RETRYABLE_CODES.has(code) || NETWORK_CODES.has(code) ||
    (status !== undefined && (status >= 500 || status === 429));
  const where = key === "" ? "" : ` of ${key}`;
  const http = status === undefined ? "" : ` (HTTP ${status})`;
  return new PortError(
    `S3 ${op}${where} in ${location} failed: ${code}${http}: ${message}`,
    { code, retryable, cause: e },
  );
}

/**
 * Sends one S3 command. An SDK error becomes a `PortError` (see
 * {@linkcode s3PortError}); an abort of `signal` rejects with the signal's
 * reason.
 */
export async function sendS3<O>(
  client: S3Client,
  command: unknown,
  where: { readonly op: string; readonly key: string; readonly location: string },
  signal: AbortSignal | undefined,
): Promise<O & { $metadata: { httpStatusCode?: number } }> {
  signal?.throwIfAborted();
  const send = client.send.bind(client) as unknown as (
    c: unknown,
    o: { abortSignal?: AbortSignal },
  ) => Promise<O & { $metadata: { httpStatusCode?: number } }>;
  try {
    return await send(command, signal === undefined ? {} : { abortSignal: signal });
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    throw s3PortError(e, where.op, where.key, where.location);
  }
}

/** What the SDK's GetObject body is under Deno's Node compatibility (a Readable). */
export interface NodeBody extends AsyncIterable<Uint8Array> {
  destroy(error?: Error): void;
}

/**
 * A GetObject body as a web stream of exactly `length` bytes: it fails with
 * a retryable `PortError` coded `TruncatedBody` when the body ends early,
 * runs long or breaks off, and with the signal's reason when `signal`
 * aborts. Cancelling the stream destroys the body. An absent body is an
 * empty stream when `length` is 0, else `TruncatedBody`.
 *
 * @param what names the object in messages, e.g. `photos/a.jpg from s3://b/p`
 */
export function s3BodyStream(
  body: NodeBody | undefined,
  length: number,
  what: string,
  signal: AbortSignal | undefined,
): ReadableStream<Uint8Array> {
  let got = 0;
  const truncated = (cause?: unknown) =>
    new PortError(
      `Truncated body reading ${what}: got ${got} of ${length} bytes${
        cause instanceof Error ? ` (${oneLine(cause.message)})` : ""
      }`,
      { code: "TruncatedBody", retryable: true, ...(cause === undefined ? {} : { cause }) },
    );
  if (body === undefined) {
    return new ReadableStream<Uint8Array>({
      start(controller) {
        if (length === 0) controller.close();
        else controller.error(truncated());
      },
    });
  }
  const it = body[Symbol.asyncIterator]();
  const onAbort = () => body.destroy(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  const done = () => signal?.removeEventListener("abort", onAbort);
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        signal?.throwIfAborted();
        const next = await it.next();
        signal?.throwIfAborted();
        if (next.done) {
          done();
          if (got !== length) throw truncated();
          controller.close();
          return;
        }
        const chunk = next.value;
        got += chunk.length;
        if (got > length) throw truncated();
        controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
      } catch (e) {
        done();
        body.destroy();
        controller.error(
          signal?.aborted ? signal.reason : e instanceof PortError ? e : truncated(e),
        );
      }
    },
    cancel() {
      done();
      body.destroy();
    },
  }, { highWaterMark: 0 });
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, " ").trim();
}
