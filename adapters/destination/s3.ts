/**
 * A {@linkcode Destination} in an S3 bucket, under a key prefix
 * (`s3://bucket/restored/`), through `@aws-sdk/client-s3`. Objects are
 * written in the STANDARD storage class.
 *
 * - Object key: the prefix followed by the file's key, exactly (no `/` is
 *   added). A key must be non-empty, valid Unicode, without NUL, and the
 *   whole object key at most 1,024 UTF-8 bytes (S3's limit): else
 *   `TypeError`.
 * - Below the multipart threshold (default 64 MiB): one PutObject with
 *   `Content-MD5` (S3 checks it: `BadDigest` becomes `ChecksumMismatch`) and
 *   `Content-Length`, the body streamed through a counter and an md5, so
 *   that a body longer or shorter than its length, or with another md5,
 *   breaks the request off before S3 has it all (`LengthMismatch`,
 *   `ChecksumMismatch`).
 * - At or above it: a multipart upload. The body is cut into parts (default
 *   16 MiB, at least 5 MiB; raised to keep at most 10,000 parts), each
 *   buffered in memory (at most `partConcurrency` at once), sent with its
 *   own `Content-MD5`, and retried on its own (`retry` of core/retry.ts);
 *   the md5 of the whole is computed across the parts and checked before
 *   CompleteMultipartUpload. Any failure, mismatch or abort aborts the
 *   upload (AbortMultipartUpload), so no parts are left behind; should the
 *   abort itself fail, the bucket's `AbortIncompleteMultipartUpload`
 *   lifecycle rule removes them.
 * - No clobbering (`overwrite` false, the default): HeadObject first (an
 *   object there is `DestinationExists`), and the write itself carries
 *   `If-None-Match: *`, so that on S3 (which supports conditional writes) a
 *   key taken in between is refused too (412 becomes `DestinationExists`).
 *   S3 look-alikes that ignore the header leave a short window between the
 *   check and the write.
 * - Errors: `PortError`s with S3's own code, retryable only for throttling,
 *   timeouts, 5xx and connection failures (see `s3PortError` in
 *   `adapters/store/_aws.ts`); one attempt per call, except the parts and
 *   the clean-up abort.
 *
 * @example
 * ```ts
 * const destination = await S3Destination.open({ bucket: "restores", prefix: "drill/" });
 * await destination.write({ key: "photos/1/a.jpg", length, md5, body: () => stream() });
 * ```
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  type CreateMultipartUploadCommandOutput,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  type UploadPartCommandOutput,
} from "@aws-sdk/client-s3";
import { PortError } from "../../core/errors.ts";
import type { Destination, DestinationWrite } from "../../core/ports.ts";
import { retry, type RetryPolicy, withTimeout } from "../../core/retry.ts";
import { systemClock } from "../clock.ts";
import {
  freshConnectionAgents,
  type NodeBody,
  s3BodyStream,
  s3ClientConfig,
  type S3ClientOptions,
  sendS3,
} from "../store/_aws.ts";

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
/** S3's smallest part but the last. */
const MIN_PART = 5 * MIB;
/** S3's largest part, and largest single PUT. */
const MAX_PART = 5 * GIB;
const MAX_PARTS = 10_000;
/** S3's largest object. */
const MAX_OBJECT = 5 * 1024 * GIB;
const MAX_KEY_BYTES = 1024;
const MD5_HEX = /^[0-9a-f]{32}$/;
/** How long the clean-up abort of a failed multipart upload may take, retries included. */
const CLEANUP_TIMEOUT_MS = 60_000;

/** Where an {@linkcode S3Destination} writes. */
export interface S3Target {
  readonly bucket: string;
  /** Put in front of every key, exactly; `""` for none. */
  readonly prefix: string;
}

/** Options for {@linkcode S3Destination.open}. */
export interface S3DestinationOptions extends S3ClientOptions {
  /** Files of at least this many bytes go up in parts; default 64 MiB (1 B to 5 GiB). */
  readonly multipartThreshold?: number;
  /** Part size, raised as needed to keep at most 10,000 parts; default 16 MiB (at least 5 MiB). */
  readonly partSize?: number;
  /** Parts in flight at once (each holds one part in memory); default 2. */
  readonly partConcurrency?: number;
  /** How one failed part (and the clean-up abort) is retried; default 4 attempts, 0.5 s to 10 s. */
  readonly partRetry?: RetryPolicy;
}

/** Records the first reason a streamed body failed, so that it wins over the SDK's report. */
interface BodyState {
  failure: unknown;
  /** Aborted with the failure, to break the request off. */
  readonly stop: AbortController;
}

/**
 * Restored files as objects in an S3 bucket; see the module notes.
 */
export class S3Destination implements Destination {
  /** `s3://bucket/prefix`, the prefix exactly as configured. */
  readonly location: string;
  readonly #client: S3Client;
  /** For streamed PutObject bodies only: fresh connections (see freshConnectionAgents). */
  readonly #streamClient: S3Client;
  readonly #streamAgents = freshConnectionAgents();
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #threshold: number;
  readonly #partSize: number;
  readonly #partConcurrency: number;
  readonly #partRetry: RetryPolicy;

  private constructor(target: S3Target, options: S3DestinationOptions) {
    this.#bucket = target.bucket;
    this.#prefix = target.prefix;
    this.location = `s3://${target.bucket}/${target.prefix}`;
    this.#threshold = wholeNumber(
      "multipart threshold",
      options.multipartThreshold ?? 64 * MIB,
      1,
      MAX_PART,
    );
    this.#partSize = wholeNumber("part size", options.partSize ?? 16 * MIB, MIN_PART, MAX_PART);
    this.#partConcurrency = wholeNumber("part concurrency", options.partConcurrency ?? 2, 1, 64);
    this.#partRetry = options.partRetry ??
      { attempts: 4, baseMs: 500, maxMs: 10_000, clock: systemClock };
    const config = s3ClientConfig(options);
    this.#client = new S3Client(config);
    this.#streamClient = new S3Client({ ...config, requestHandler: this.#streamAgents });
  }

  /**
   * Opens a destination in `target.bucket` under `target.prefix`. Makes no
   * request: a missing bucket or a lack of permission shows at the first
   * write, as a `PortError` naming the bucket.
   *
   * @throws {TypeError} an empty bucket name
   * @throws {RangeError} an option out of range
   */
  static open(target: S3Target, options: S3DestinationOptions = {}): Promise<S3Destination> {
    try {
      if (typeof target.bucket !== "string" || target.bucket === "") {
        throw new TypeError(`Invalid S3 destination bucket: ${JSON.stringify(target.bucket)}`);
      }
      return Promise.resolve(new S3Destination(target, options));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Writes one object (see the module notes); resolves to its
   * `s3://bucket/key` location.
   *
   * @throws {TypeError} a key S3 cannot hold, an md5 that is not 32 lower-case hex digits
   * @throws {RangeError} a length that is not a whole number from 0 to 5 TiB
   * @throws {PortError} `ChecksumMismatch`, `LengthMismatch`, `DestinationExists`, or S3's error
   */
  async write(file: DestinationWrite): Promise<{ readonly location: string }> {
    const key = this.#objectKey(file.key);
    if (!MD5_HEX.test(file.md5)) {
      throw new TypeError(
        `Invalid md5 for ${quote(file.key)}: "${file.md5}" is not 32 lower-case hex digits`,
      );
    }
    if (!Number.isSafeInteger(file.length) || file.length < 0 || file.length > MAX_OBJECT) {
      throw new RangeError(`Invalid length for ${quote(file.key)}: ${file.length}`);
    }
    const { signal } = file;
    signal?.throwIfAborted();
    if (!file.overwrite && (await this.#exists(key, signal))) throw this.#taken(key);
    if (file.length < this.#threshold) await this.#putSingle(file, key);
    else await this.#putMultipart(file, key);
    return { location: `s3://${this.#bucket}/${key}` };
  }

  /**
   * Reads `key` back, or `null` when there is no object there. A body that
   * ends early errors with a retryable `TruncatedBody`.
   *
   * @throws {TypeError} a key S3 cannot hold
   * @throws {PortError} S3's error
   */
  async read(
    key: string,
    options: { readonly domain?: string; readonly signal?: AbortSignal } = {},
  ): Promise<ReadableStream<Uint8Array> | null> {
    const objectKey = this.#objectKey(key);
    const { signal } = options;
    let out: GetObjectCommandOutput;
    try {
      out = await sendS3<GetObjectCommandOutput>(
        this.#client,
        new GetObjectCommand({ Bucket: this.#bucket, Key: objectKey }),
        this.#where("GetObject", objectKey),
        signal,
      );
    } catch (e) {
      if (e instanceof PortError && (e.code === "NoSuchKey" || e.code === "NotFound")) return null;
      throw e;
    }
    return s3BodyStream(
      out.Body as unknown as NodeBody | undefined,
      out.ContentLength ?? 0,
      `${objectKey} from ${this.location}`,
      signal,
    );
  }

  /** Closes the clients' connections. Idempotent. */
  close(): Promise<void> {
    this.#client.destroy();
    this.#streamClient.destroy();
    this.#streamAgents.httpAgent.destroy();
    this.#streamAgents.httpsAgent.destroy();
    return Promise.resolve();
  }

  // -------------------------------------------------------------------------

  async #putSingle(file: DestinationWrite, key: string): Promise<void> {
    const { signal } = file;
    // A failing body aborts the request: a Node stream piped into a request
    // does not end it on error, and an unheard error event would be uncaught.
    const stop = new AbortController();
    const state: BodyState = { failure: null, stop };
    const body = Readable.fromWeb(
      this.#checkedBody(file, key, state) as import("node:stream/web").ReadableStream<Uint8Array>,
    );
    body.on("error", () => {}); // reported through `state` and `stop`
    try {
      await sendS3(
        this.#streamClient,
        new PutObjectCommand({
          Bucket: this.#bucket,
          Key: key,
          Body: body,
          ContentLength: file.length,
          ContentMD5: Buffer.from(file.md5, "hex").toString("base64"),
          StorageClass: "STANDARD",
          ...(file.overwrite ? {} : { IfNoneMatch: "*" }),
        }),
        this.#where("PutObject", key),
        signal === undefined ? stop.signal : AbortSignal.any([signal, stop.signal]),
      );
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      throw state.failure ?? this.#mismatch(e, key);
    } finally {
      body.destroy();
    }
    if (state.failure !== null) throw state.failure; // never reached: S3 had the whole body
  }

  /**
   * `file.body()` passed through, counting and hashing: it errors (and
   * records why in `state`) as soon as it runs past `file.length`, or at its
   * end when the count or the md5 differ, or with the body's own error.
   */
  #checkedBody(file: DestinationWrite, key: string, state: BodyState): ReadableStream<Uint8Array> {
    const reader = file.body().getReader();
    const md5 = createHash("md5");
    let count = 0;
    const fail = (controller: ReadableStreamDefaultController<Uint8Array>, e: unknown) => {
      state.failure ??= e;
      state.stop.abort(e);
      controller.error(e);
      reader.cancel(e).catch(() => {});
    };
    return new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        let next: ReadableStreamReadResult<Uint8Array>;
        try {
          next = await reader.read();
        } catch (e) {
          fail(controller, e);
          return;
        }
        if (next.done) {
          const digest = md5.digest("hex");
          if (count !== file.length) fail(controller, this.#lengthMismatch(file, key, count));
          else if (digest !== file.md5) fail(controller, this.#checksumMismatch(file, key, digest));
          else controller.close();
          return;
        }
        count += next.value.length;
        if (count > file.length) {
          fail(controller, this.#lengthMismatch(file, key, count));
          return;
        }
        md5.update(next.value);
        controller.enqueue(next.value);
      },
      cancel: (reason) => reader.cancel(reason),
    }, { highWaterMark: 0 });
  }

  async #putMultipart(file: DestinationWrite, key: string): Promise<void> {
    const { signal } = file;
    const partSize = Math.max(this.#partSize, Math.ceil(file.length / MAX_PARTS / MIB) * MIB);
    const created = await sendS3<CreateMultipartUploadCommandOutput>(
      this.#client,
      new CreateMultipartUploadCommand({
        Bucket: this.#bucket,
        Key: key,
        StorageClass: "STANDARD",
      }),
      this.#where("CreateMultipartUpload", key),
      signal,
    );
    const uploadId = created.UploadId;
    if (uploadId === undefined) {
      throw new PortError(
        `S3 CreateMultipartUpload of ${key} in ${this.location} answered no upload id`,
        { code: "MalformedResponse", retryable: true },
      );
    }
    let completed = false;
    try {
      const parts = await this.#uploadParts(file, key, uploadId, partSize);
      signal?.throwIfAborted();
      try {
        await sendS3(
          this.#client,
          new CompleteMultipartUploadCommand({
            Bucket: this.#bucket,
            Key: key,
            UploadId: uploadId,
            MultipartUpload: { Parts: parts },
            ...(file.overwrite ? {} : { IfNoneMatch: "*" }),
          }),
          this.#where("CompleteMultipartUpload", key),
          signal,
        );
      } catch (e) {
        throw this.#mismatch(e, key);
      }
      completed = true;
    } finally {
      if (!completed) await this.#abortUpload(key, uploadId);
    }
  }

  /**
   * Reads the body once, cutting it into parts, and sends them with at most
   * `partConcurrency` in flight (each holding its own buffer), each retried
   * on its own. The first failure stops the reading and cancels the parts in
   * flight. Checks the count and the md5 of the whole before it returns.
   */
  async #uploadParts(
    file: DestinationWrite,
    key: string,
    uploadId: string,
    partSize: number,
  ): Promise<CompletedPart[]> {
    const { signal } = file;
    const stop = new AbortController();
    const partSignal = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
    const reader = file.body().getReader();
    const onAbort = () => {
      reader.cancel(signal?.reason).catch(() => {});
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    const md5 = createHash("md5");
    const free: Uint8Array[] = [];
    let allocated = 0;
    const inflight = new Set<Promise<void>>();
    const parts: CompletedPart[] = [];
    let failure: { error: unknown } | null = null;
    let count = 0;
    let pending: Uint8Array | null = null;
    let ended = false;
    let partNumber = 0;
    try {
      while (!ended && failure === null) {
        while (free.length === 0 && allocated >= this.#partConcurrency && failure === null) {
          await Promise.race(inflight);
        }
        if (failure !== null) break;
        let buf = free.pop();
        if (buf === undefined) {
          buf = new Uint8Array(partSize);
          allocated++;
        }
        let filled = 0;
        while (filled < partSize) {
          if (pending !== null) {
            const take = Math.min(pending.length, partSize - filled);
            buf.set(pending.subarray(0, take), filled);
            filled += take;
            pending = take < pending.length ? pending.subarray(take) : null;
            continue;
          }
          const { done, value } = await reader.read();
          signal?.throwIfAborted();
          if (done) {
            ended = true;
            break;
          }
          count += value.length;
          if (count > file.length) throw this.#lengthMismatch(file, key, count);
          md5.update(value);
          pending = value;
        }
        if (filled === 0) {
          free.push(buf);
          break;
        }
        const number = ++partNumber;
        const body = buf.subarray(0, filled);
        const slot = buf;
        const contentMd5 = createHash("md5").update(body).digest("base64");
        const task: Promise<void> = retry(
          () =>
            sendS3<UploadPartCommandOutput>(
              this.#client,
              new UploadPartCommand({
                Bucket: this.#bucket,
                Key: key,
                UploadId: uploadId,
                PartNumber: number,
                Body: body,
                ContentLength: filled,
                ContentMD5: contentMd5,
              }),
              this.#where(`UploadPart ${number}`, key),
              partSignal,
            ),
          this.#partRetry,
          partSignal,
        ).then((out) => {
          parts.push({ PartNumber: number, ETag: out.ETag });
        }).catch((e) => {
          if (failure === null) {
            failure = { error: signal?.aborted ? signal.reason : this.#mismatch(e, key) };
            stop.abort();
          }
        }).finally(() => {
          inflight.delete(task);
          free.push(slot);
        });
        inflight.add(task);
      }
      if (failure === null) {
        if (count !== file.length) throw this.#lengthMismatch(file, key, count);
        const digest = md5.digest("hex");
        if (digest !== file.md5) throw this.#checksumMismatch(file, key, digest);
      }
    } catch (e) {
      failure ??= { error: signal?.aborted ? signal.reason : e };
      stop.abort();
    } finally {
      signal?.removeEventListener("abort", onAbort);
      await Promise.allSettled(inflight);
      if (failure !== null) await reader.cancel().catch(() => {});
      reader.releaseLock();
    }
    if (failure !== null) throw (failure as { error: unknown }).error;
    return parts.sort((a, b) => a.PartNumber! - b.PartNumber!);
  }

  /** Aborts a multipart upload, retrying, within a time limit; a failure here is swallowed. */
  async #abortUpload(key: string, uploadId: string): Promise<void> {
    try {
      await withTimeout(
        `S3 AbortMultipartUpload of ${key} in ${this.location}`,
        CLEANUP_TIMEOUT_MS,
        systemClock,
        (signal) =>
          retry(
            () =>
              sendS3(
                this.#client,
                new AbortMultipartUploadCommand({
                  Bucket: this.#bucket,
                  Key: key,
                  UploadId: uploadId,
                }),
                this.#where("AbortMultipartUpload", key),
                signal,
              ),
            this.#partRetry,
            signal,
          ),
      );
    } catch {
      // The write fails with its own error; parts left behind are removed by
      // the bucket's AbortIncompleteMultipartUpload lifecycle rule.
    }
  }

  async #exists(key: string, signal: AbortSignal | undefined): Promise<boolean> {
    try {
      await sendS3(
        this.#client,
        new HeadObjectCommand({ Bucket: this.#bucket, Key: key }),
        this.#where("HeadObject", key),
        signal,
      );
      return true;
    } catch (e) {
      if (e instanceof PortError && (e.code === "NotFound" || e.code === "NoSuchKey")) return false;
      throw e;
    }
  }

  /** S3's `BadDigest` as `ChecksumMismatch`, a failed `If-None-Match` as `DestinationExists`. */
  #mismatch(e: unknown, key: string): unknown {
    if (!(e instanceof PortError)) return e;
    if (e.code === "BadDigest" || e.code === "InvalidDigest") {
      return new PortError(
        `Cannot write ${key} to ${this.location}: S3 found that the bytes do not have the md5 sent (${e.code})`,
        { code: "ChecksumMismatch", retryable: false, cause: e },
      );
    }
    if (e.code === "IncompleteBody") {
      return new PortError(
        `Cannot write ${key} to ${this.location}: S3 received fewer bytes than the length (${e.code})`,
        { code: "LengthMismatch", retryable: false, cause: e },
      );
    }
    if (e.code === "PreconditionFailed") return this.#taken(key, e);
    return e;
  }

  #taken(key: string, cause?: unknown): PortError {
    return new PortError(
      `Cannot write ${key} to ${this.location}: the object already exists (overwrite not asked)`,
      { code: "DestinationExists", retryable: false, ...(cause === undefined ? {} : { cause }) },
    );
  }

  #lengthMismatch(file: DestinationWrite, key: string, count: number): PortError {
    return new PortError(
      `Cannot write ${key} to ${this.location}: the body has ${
        count > file.length ? "more than " : ""
      }${count > file.length ? file.length : count} bytes, expected ${file.length}`,
      { code: "LengthMismatch", retryable: false },
    );
  }

  #checksumMismatch(file: DestinationWrite, key: string, digest: string): PortError {
    return new PortError(
      `Cannot write ${key} to ${this.location}: the bytes have md5 ${digest}, expected ${file.md5}`,
      { code: "ChecksumMismatch", retryable: false },
    );
  }

  /** The object key of `key`, refusing what S3 cannot hold. */
  #objectKey(key: string): string {
    const bad = (why: string) =>
      new TypeError(`Invalid S3 destination key ${quote(key)} for ${this.location}: ${why}`);
    if (typeof key !== "string" || key === "") throw bad("empty");
    if (key.includes("\0")) throw bad("it contains NUL");
    if (!key.isWellFormed()) throw bad("it is not valid Unicode (a lone surrogate)");
    const full = this.#prefix + key;
    const bytes = new TextEncoder().encode(full).length;
    if (bytes > MAX_KEY_BYTES) {
      throw bad(`with the prefix it is ${bytes} bytes, more than S3's ${MAX_KEY_BYTES}`);
    }
    return full;
  }

  #where(op: string, key: string) {
    return { op, key, location: this.location };
  }
}

function wholeNumber(what: string, n: number, min: number, max: number): number {
  if (!Number.isSafeInteger(n) || n < min || n > max) {
    throw new RangeError(`Invalid ${what}: ${n} (must be a whole number from ${min} to ${max})`);
  }
  return n;
}

/** A key for a message: JSON-quoted so that newlines and spaces show. */
function quote(key: string): string {
  return JSON.stringify(key);
}
