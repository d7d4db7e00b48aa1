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
import {
  type CompletedPart,
  CompleteMultipartUploadCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
  type UploadPartCommandOutput,
} from "@aws-sdk/client-s3";
import { PortError } from "../../core/errors.ts";
import type { Destination, DestinationWrite } from "../../core/ports.ts";
import {
  type NodeBody,
  s3BodyStream,
  type S3ClientOptions,
  S3Clients,
  type S3Multipart,
  s3Multipart,
  type S3MultipartOptions,
  s3MultipartUpload,
  s3PartSize,
  sendS3,
} from "../store/_aws.ts";
import { type StreamChecks, streamedBody } from "../store/_body.ts";
import { uploadParts } from "../store/_parts.ts";

/** S3's largest object: 5 TiB. */
const MAX_OBJECT = 5 * 1024 ** 4;
const MAX_KEY_BYTES = 1024;
const MD5_HEX = /^[0-9a-f]{32}$/;

/** Where an {@linkcode S3Destination} writes. */
export interface S3Target {
  readonly bucket: string;
  /** Put in front of every key, exactly; `""` for none. */
  readonly prefix: string;
}

/** Options for {@linkcode S3Destination.open}: where to connect, and how to go multipart. */
export interface S3DestinationOptions extends S3ClientOptions, S3MultipartOptions {}

/**
 * Restored files as objects in an S3 bucket; see the module notes.
 */
export class S3Destination implements Destination {
  /** `s3://bucket/prefix`, the prefix exactly as configured. */
  readonly location: string;
  readonly #clients: S3Clients;
  /** `#clients.client`: every request but the streamed PutObject. */
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #multipart: S3Multipart;

  private constructor(target: S3Target, options: S3DestinationOptions) {
    this.#bucket = target.bucket;
    this.#prefix = target.prefix;
    this.location = `s3://${target.bucket}/${target.prefix}`;
    this.#multipart = s3Multipart(options);
    this.#clients = new S3Clients(options);
    this.#client = this.#clients.client;
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
    if (file.length < this.#multipart.threshold) await this.#putSingle(file, key);
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
    this.#clients.destroy();
    return Promise.resolve();
  }

  // -------------------------------------------------------------------------

  async #putSingle(file: DestinationWrite, key: string): Promise<void> {
    const { signal } = file;
    const upload = streamedBody(file.body(), signal, this.#checks(file, key));
    try {
      await sendS3(
        this.#clients.streaming,
        new PutObjectCommand({
          Bucket: this.#bucket,
          Key: key,
          Body: upload.body,
          ContentLength: file.length,
          ContentMD5: Buffer.from(file.md5, "hex").toString("base64"),
          StorageClass: "STANDARD",
          ...(file.overwrite ? {} : { IfNoneMatch: "*" }),
        }),
        this.#where("PutObject", key),
        upload.signal,
      );
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      throw upload.failure() ?? this.#mismatch(e, key);
    } finally {
      upload.body.destroy();
    }
    const failure = upload.failure();
    if (failure !== null) throw failure; // never reached: S3 had the whole body
  }

  /**
   * Checks of a body as it is read, for one PUT or across the parts: it
   * fails as soon as it runs past `file.length`, or at its end when the
   * count or the md5 differ.
   */
  #checks(file: DestinationWrite, key: string): Required<StreamChecks> {
    const md5 = createHash("md5");
    return {
      onChunk: (chunk, count) => {
        if (count > file.length) throw this.#lengthMismatch(file, key, count);
        md5.update(chunk);
      },
      onEnd: (count) => {
        if (count !== file.length) throw this.#lengthMismatch(file, key, count);
        const digest = md5.digest("hex");
        if (digest !== file.md5) throw this.#checksumMismatch(file, key, digest);
      },
    };
  }

  async #putMultipart(file: DestinationWrite, key: string): Promise<void> {
    const { signal } = file;
    const partSize = s3PartSize(file.length, this.#multipart.partSize);
    await s3MultipartUpload({
      client: this.#client,
      bucket: this.#bucket,
      key,
      location: this.location,
      create: { StorageClass: "STANDARD" },
      retry: this.#multipart.retry,
      signal,
    }, async (uploadId) => {
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
    });
  }

  /**
   * Sends the body in parts (see `uploadParts`), each with its own
   * `Content-MD5`, checked as in a single PUT (`#checks`). Resolves to the
   * parts in order.
   */
  async #uploadParts(
    file: DestinationWrite,
    key: string,
    uploadId: string,
    partSize: number,
  ): Promise<CompletedPart[]> {
    const { results } = await uploadParts({
      body: file.body(),
      partSize,
      concurrency: this.#multipart.concurrency,
      retry: this.#multipart.retry,
      signal: file.signal,
      ...this.#checks(file, key),
      send: async ({ number, bytes }, signal): Promise<CompletedPart> => {
        try {
          const out = await sendS3<UploadPartCommandOutput>(
            this.#client,
            new UploadPartCommand({
              Bucket: this.#bucket,
              Key: key,
              UploadId: uploadId,
              PartNumber: number,
              Body: bytes,
              ContentLength: bytes.length,
              ContentMD5: createHash("md5").update(bytes).digest("base64"),
            }),
            this.#where(`UploadPart ${number}`, key),
            signal,
          );
          return { PartNumber: number, ETag: out.ETag };
        } catch (e) {
          throw this.#mismatch(e, key);
        }
      },
    });
    return results;
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

/** A key for a message: JSON-quoted so that newlines and spaces show. */
function quote(key: string): string {
  return JSON.stringify(key);
}
