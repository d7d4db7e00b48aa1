/**
 * AWS SDK client settings and error mapping that the Glacier store, the S3
 * store, the S3 source and the S3 destination share, so that they build
 * their clients and classify S3 errors the same way.
 * @module
 */

import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";
import type { S3Client, S3ClientConfig } from "@aws-sdk/client-s3";
import { ArchiveMismatchError, ChangedError, PortError, VanishedError } from "../../core/errors.ts";

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
 * Connection-level failures: nothing (or not all) was answered, so trying
 * again may help. The same list as the Glacier store's.
 */
const NETWORK_CODES = new Set([
  "ECONNRESET",
  "ECONNREFUSED",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "ENOTFOUND",
  "EAI_AGAIN",
  "EHOSTUNREACH",
  "ENETUNREACH",
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
