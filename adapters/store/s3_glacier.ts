/**
 * A cold store in an S3 bucket, in one of the Glacier storage classes
 * (`s3://BUCKET/PREFIX?storage-class=DEEP_ARCHIVE|GLACIER|GLACIER_IR`),
 * through `@aws-sdk/client-s3` (PROTOCOLS.md section 3).
 *
 * - Object key: `PREFIX/<archiveId>` (just `<archiveId>` at the bucket
 *   root). The remote id is that key.
 * - Integrity: S3 keeps no tree hash. Every upload carries our SHA-256
 *   (`x-amz-checksum-sha256`, a header: never `aws-chunked` trailers), S3
 *   checks it against the bytes (`BadDigest`) and answers it back; a
 *   multipart upload answers the composite checksum of its parts. Only when
 *   S3's answer equals ours does `put` resolve, with *our* tree hash of the
 *   bytes we sent (computed while reading them, and checked against the
 *   declared one before anything is completed). The tree hash and the
 *   description are kept in the object's metadata
 *   (`x-amz-meta-coldpack-tree-hash`, `x-amz-meta-coldpack-description`).
 * - Retrievals: S3 restores whole objects (`capabilities.rangedRetrieval` is
 *   false); a restored copy then serves ranged GETs until it expires. A job
 *   id is the base64url JSON of the key, the description, the start time
 *   and the restore days, so any process can follow a job with no state of
 *   its own; its state is read from `HeadObject` (`x-amz-restore`).
 * - Errors: every SDK error becomes a `PortError` with S3's own code
 *   (`NoSuchBucket`, `AccessDenied`, `SlowDown`, `InternalError`,
 *   `BadDigest`...), naming the store location, the operation and the key;
 *   `retryable` only for throttling, timeouts, 5xx and connection resets.
 *   Retries are the job of `withRetryStore` (core/retry.ts); the client
 *   makes one attempt per call (`maxAttempts: 1`). The one exception is
 *   multipart parts, each retried on its own.
 *
 * @example
 * ```ts
 * const store = await S3GlacierStore.open("s3://backups/ugc?storage-class=DEEP_ARCHIVE");
 * const put = await store.put({ archiveId, size, treeHash, description, body });
 * const job = await store.startRetrieval(put.remoteId, { description: "r1", tier: "Bulk" });
 * ```
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import {
  type CompletedPart,
  CompleteMultipartUploadCommand,
  type CompleteMultipartUploadCommandOutput,
  DeleteObjectCommand,
  GetObjectCommand,
  type GetObjectCommandOutput,
  HeadObjectCommand,
  type HeadObjectCommandOutput,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  PutObjectCommand,
  type PutObjectCommandOutput,
  RestoreObjectCommand,
  type RestoreObjectCommandOutput,
  type S3Client,
  UploadPartCommand,
  type UploadPartCommandOutput,
} from "@aws-sdk/client-s3";
import {
  type ByteRange,
  type Clock,
  type ColdStore,
  type PutArchive,
  type PutResult,
  type RetrievalJob,
  type StoreCapabilities,
  type StoredArchive,
  type Tier,
  TIERS,
} from "../../core/ports.ts";
import { ArchiveMismatchError, PortError } from "../../core/errors.ts";
import { type JobId, jobId, type RemoteArchiveId, remoteArchiveId } from "../../core/ids.ts";
import { Limiter } from "../../core/retry.ts";
import { parseStoreUrl, type S3StorageClass } from "../../core/store_url.ts";
import { TreeHasher } from "../../core/tree_hash.ts";
import { systemClock } from "../clock.ts";
import { digest, streamedBody } from "./_body.ts";
import { checkDescription } from "../../core/manifest.ts";
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
  wholeNumber,
} from "./_aws.ts";
import { uploadParts } from "./_parts.ts";

const SHA256_HEX = /^[0-9a-f]{64}$/;

const DAY = 24 * 3_600_000;
const ARCHIVE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
const TREE_HASH = /^[0-9a-f]{64}$/;
const META_DESCRIPTION = "coldpack-description";
const META_TREE_HASH = "coldpack-tree-hash";

/**
 * Options for {@linkcode S3GlacierStore.open}: where to connect, how to go
 * multipart (archives of at least `multipartThreshold` bytes), and the rest.
 */
export interface S3GlacierStoreOptions extends S3ClientOptions, S3MultipartOptions {
  /** Days a restored copy stays readable; default 7. */
  readonly restoreDays?: number;
  /** HeadObject calls in flight while listing; default 8. */
  readonly listConcurrency?: number;
  /** Keys per ListObjectsV2 page; default 1,000 (S3's maximum). */
  readonly listPageSize?: number;
  /** The clock for job start times and expiry checks; default the system clock. */
  readonly clock?: Clock;
}

/** What a job id carries (base64url JSON). */
interface JobToken {
  readonly v: 1;
  /** The object key. */
  readonly k: string;
  /** Our description. */
  readonly d: string;
  /** Started at, ms. */
  readonly t: number;
  /** Restore days asked for. */
  readonly n: number;
}

/** What `x-amz-restore` says. */
interface RestoreHeader {
  readonly ongoing: boolean;
  readonly expiresAt: number | null;
}

/**
 * A {@linkcode ColdStore} in S3 Glacier Flexible Retrieval (`GLACIER`),
 * Deep Archive (`DEEP_ARCHIVE`) or Instant Retrieval (`GLACIER_IR`).
 *
 * - `put`: below the multipart threshold the body is read once to compute
 *   its size, SHA-256 and tree hash (size or tree hash differing from the
 *   archive's is `ArchiveMismatchError`, before anything is sent), then read
 *   again and streamed to PutObject with that SHA-256. Above it, parts are
 *   cut from one read of the body, each buffered (one per slot), sent with
 *   its SHA-256 and retried on its own; a failure or an abort aborts the
 *   multipart upload; the size and tree hash are checked before Complete,
 *   and S3's composite checksum after it. A checksum S3 answers that is not
 *   ours deletes the object and is `ArchiveMismatchError`. The tree hash
 *   answered is ours, of the bytes S3 confirmed by SHA-256.
 * - `startRetrieval`: `GLACIER_IR` (and any class readable at once) is
 *   ready with no restore; `GLACIER`/`DEEP_ARCHIVE` send RestoreObject with
 *   the configured days and the tier (`Expedited` becomes `Standard` for
 *   `DEEP_ARCHIVE`, which has no Expedited); 202 (started), 409
 *   `RestoreAlreadyInProgress` and 200 (already restored) all give a job. A
 *   `range` is a `RangeError`: S3 restores whole objects.
 * - `retrieval`: from `x-amz-restore`: `ongoing-request="true"` is
 *   in progress, `"false"` with an expiry date in the future is ready, none
 *   (or a past expiry) is expired. `completedAt` is estimated as the expiry
 *   minus the restore days (S3 gives no completion time), within
 *   [startedAt, now]. A missing object is `ResourceNotFoundException`.
 * - `readRetrieval`: a GET (ranged when asked, relative to the whole
 *   object); `InvalidObjectState` becomes `RetrievalNotReady`, or
 *   `RetrievalExpired` when the restore is gone; a body that ends early is a
 *   retryable `TruncatedBody`.
 *
 * Job ids hold the key and the description (base64url JSON), so they are
 * about 4/3 x (key + description + 60) characters long.
 */
export class S3GlacierStore implements ColdStore {
  readonly location: string;
  readonly capabilities: StoreCapabilities = { rangedRetrieval: false, rangeAlignment: 1 };
  readonly #clients: S3Clients;
  /** `#clients.client`: every request but the streamed PutObject. */
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #storageClass: S3StorageClass;
  readonly #multipart: S3Multipart;
  readonly #days: number;
  readonly #listConcurrency: number;
  readonly #listPageSize: number;
  readonly #clock: Clock;

  private constructor(
    bucket: string,
    prefix: string,
    storageClass: S3StorageClass,
    options: S3GlacierStoreOptions,
  ) {
    this.#bucket = bucket;
    this.#prefix = prefix;
    this.#storageClass = storageClass;
    this.location = `s3://${bucket}${
      prefix === "" ? "" : `/${prefix.split("/").map(encodeURIComponent).join("/")}`
    }?storage-class=${storageClass}`;
    this.#multipart = s3Multipart(options);
    this.#days = wholeNumber("restore days", options.restoreDays ?? 7, 1, 30_000);
    this.#listConcurrency = wholeNumber("list concurrency", options.listConcurrency ?? 8, 1, 256);
    this.#listPageSize = wholeNumber("list page size", options.listPageSize ?? 1000, 1, 1000);
    this.#clock = options.clock ?? systemClock;
    // One attempt per call (withRetryStore retries); streamed puts on fresh connections.
    this.#clients = new S3Clients(options);
    this.#client = this.#clients.client;
  }

  /**
   * Opens the store an `s3://BUCKET[/PREFIX][?storage-class=...]` URL names.
   * Makes no request: a missing bucket or a lack of permission shows at the
   * first call, as a `PortError` naming the bucket.
   *
   * @throws {SyntaxError} for a URL that is not an `s3://` store URL
   * @throws {RangeError} for an option out of range
   */
  static open(url: string, options: S3GlacierStoreOptions = {}): Promise<S3GlacierStore> {
    const spec = parseStoreUrl(url);
    if (spec.kind !== "s3") {
      throw new SyntaxError(`Invalid S3 store URL "${url}": expected s3://BUCKET/PREFIX`);
    }
    return Promise.resolve(
      new S3GlacierStore(spec.bucket, spec.prefix, spec.storageClass, options),
    );
  }

  /** Stores an archive as one object (see the class notes for how it is checked). */
  async put(archive: PutArchive, options: { signal?: AbortSignal } = {}): Promise<PutResult> {
    const { signal } = options;
    const id = archive.archiveId as string;
    if (!ARCHIVE_ID.test(id)) {
      throw new RangeError(`Invalid archive id for ${this.location}: "${id}"`);
    }
    if (!Number.isSafeInteger(archive.size) || archive.size < 1) {
      throw new RangeError(
        `Invalid archive size for ${id}: ${archive.size} (must be at least 1 byte)`,
      );
    }
    if (!TREE_HASH.test(archive.treeHash)) {
      throw new RangeError(
        `Invalid tree hash for ${id}: "${archive.treeHash}" is not 64 lower-case hex digits`,
      );
    }
    checkDescription(archive.description, `archive ${id}`);
    signal?.throwIfAborted();
    const key = this.#key(id);
    try {
      return archive.size < this.#multipart.threshold
        ? await this.#putSingle(archive, key, signal)
        : await this.#putMultipart(archive, key, signal);
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      throw e;
    }
  }

  /**
   * Starts restoring the whole object (or notes that it is readable at
   * once). A `range` is a `RangeError`: S3 has no ranged restore.
   */
  async startRetrieval(
    remoteId: RemoteArchiveId,
    options: {
      readonly range?: ByteRange;
      readonly tier?: Tier;
      readonly description: string;
      readonly signal?: AbortSignal;
    },
  ): Promise<RetrievalJob> {
    const { signal } = options;
    const key = this.#checkKey(remoteId);
    checkDescription(options.description, "retrieval");
    const tier = options.tier ?? "Standard";
    if (!TIERS.includes(tier)) {
      throw new RangeError(`Invalid retrieval tier "${tier}": must be Expedited, Standard or Bulk`);
    }
    if (options.range !== undefined) {
      const { start, end } = options.range;
      throw new RangeError(
        `Cannot retrieve range ${start}-${end} of ${key} from ${this.location}: S3 restores whole objects (rangedRetrieval is false); restore the archive, then read the range`,
      );
    }
    const head = await this.#head(key, "startRetrieval", signal);
    const token: JobToken = {
      v: 1,
      k: key,
      d: options.description,
      t: this.#clock.now(),
      n: this.#days,
    };
    const storageClass = head.StorageClass ?? "STANDARD";
    if (!isArchived(storageClass)) return this.#describe(token, head);
    const s3Tier = storageClass === "DEEP_ARCHIVE" && tier === "Expedited" ? "Standard" : tier;
    let status: number | undefined;
    try {
      const out = await this.#send<RestoreObjectCommandOutput>(
        "RestoreObject",
        key,
        new RestoreObjectCommand({
          Bucket: this.#bucket,
          Key: key,
          RestoreRequest: { Days: this.#days, GlacierJobParameters: { Tier: s3Tier } },
        }),
        signal,
      );
      status = out.$metadata.httpStatusCode;
    } catch (e) {
      if (!(e instanceof PortError) || e.code !== "RestoreAlreadyInProgress") {
        throw this.#notFound(e, key);
      }
      status = 409;
    }
    if (status === 200) {
      return this.#describe(token, await this.#head(key, "startRetrieval", signal));
    }
    return this.#job(token, "in-progress", null);
  }

  /** The job's state now, from the object's `x-amz-restore`. */
  async retrieval(id: JobId, options: { signal?: AbortSignal } = {}): Promise<RetrievalJob> {
    const token = this.#decodeJob(id);
    return this.#describe(token, await this.#head(token.k, "retrieval", options.signal));
  }

  /**
   * Reads the restored object, or `range` of it (relative to the whole
   * object; `RangeError` naming `a-b` when outside it). Not restored yet:
   * `RetrievalNotReady`; restore gone: `RetrievalExpired`; a body that ends
   * early: `TruncatedBody` (retryable), raised by the stream.
   */
  async readRetrieval(
    id: JobId,
    options: { readonly range?: ByteRange; readonly signal?: AbortSignal } = {},
  ): Promise<ReadableStream<Uint8Array>> {
    const { signal, range } = options;
    const token = this.#decodeJob(id);
    const key = token.k;
    if (range !== undefined) {
      const { start, end } = range;
      if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || start > end) {
        throw new RangeError(
          `Invalid read range ${start}-${end} for retrieval of ${key} in ${this.location}: bounds must be whole numbers with 0 <= start <= end`,
        );
      }
    }
    let out;
    try {
      out = await this.#send<GetObjectCommandOutput>(
        "GetObject",
        key,
        new GetObjectCommand({
          Bucket: this.#bucket,
          Key: key,
          ...(range === undefined ? {} : { Range: `bytes=${range.start}-${range.end}` }),
        }),
        signal,
      );
    } catch (e) {
      if (e instanceof PortError && e.code === "InvalidObjectState") {
        const job = this.#describe(token, await this.#head(key, "readRetrieval", signal));
        const [code, why] = job.state === "expired"
          ? ["RetrievalExpired", "its restored copy has expired; start a new retrieval"]
          : ["RetrievalNotReady", "the restore has not completed yet"];
        throw new PortError(
          `Cannot read retrieval of ${key} from ${this.location}: ${why} (S3 answered InvalidObjectState)`,
          { code, retryable: false, cause: e },
        );
      }
      if (e instanceof PortError && e.code === "InvalidRange" && range !== undefined) {
        throw new RangeError(
          `Invalid read range ${range.start}-${range.end} for retrieval of ${key} in ${this.location}: it starts past the object's end`,
        );
      }
      throw this.#notFound(e, key);
    }
    const body = out.Body as unknown as NodeBody | undefined;
    const length = out.ContentLength ?? 0;
    const fail = (e: Error): never => {
      body?.destroy();
      throw e;
    };
    if (range !== undefined) {
      const total = totalOf(out.ContentRange) ?? (out.ContentRange === undefined ? length : null);
      if (total === null) {
        fail(
          new PortError(
            `Unexpected answer to GetObject of ${key} in ${this.location}: Content-Range "${out.ContentRange}"`,
            { code: "InvalidResponse", retryable: false },
          ),
        );
      } else if (range.end >= total) {
        fail(
          new RangeError(
            `Invalid read range ${range.start}-${range.end} for retrieval of ${key} in ${this.location}: the object holds bytes 0-${
              total - 1
            }`,
          ),
        );
      } else if (out.ContentRange === undefined && (range.start !== 0 || range.end !== total - 1)) {
        fail(
          new PortError(
            `Unexpected answer to GetObject of ${key} in ${this.location}: the whole object instead of bytes ${range.start}-${range.end}`,
            { code: "InvalidResponse", retryable: false },
          ),
        );
      }
    }
    if (body === undefined) {
      if (length === 0) return new ReadableStream({ start: (c) => c.close() });
      throw new PortError(`GetObject of ${key} in ${this.location} answered no body`, {
        code: "TruncatedBody",
        retryable: true,
      });
    }
    const what = range === undefined ? key : `${key} bytes ${range.start}-${range.end}`;
    return s3BodyStream(body, length, `${what} from ${this.location}`, signal);
  }

  /** Lists the archives under the prefix, with description and tree hash from their metadata. */
  async *list(options: { signal?: AbortSignal } = {}): AsyncIterable<StoredArchive> {
    const { signal } = options;
    const prefix = this.#prefix === "" ? "" : `${this.#prefix}/`;
    const limiter = new Limiter(this.#listConcurrency);
    let token: string | undefined;
    do {
      const page = await this.#send<ListObjectsV2CommandOutput>(
        "ListObjectsV2",
        prefix,
        new ListObjectsV2Command({
          Bucket: this.#bucket,
          Prefix: prefix,
          Delimiter: "/",
          MaxKeys: this.#listPageSize,
          ...(token === undefined ? {} : { ContinuationToken: token }),
        }),
        signal,
      );
      const entries = (page.Contents ?? []).filter((c) =>
        c.Key !== undefined && ARCHIVE_ID.test(c.Key.slice(prefix.length))
      );
      const heads = await Promise.all(entries.map((c) =>
        limiter.run(async () => {
          try {
            return await this.#head(c.Key!, "list", signal);
          } catch (e) {
            if (e instanceof PortError && e.code === "ResourceNotFoundException") return null;
            throw e;
          }
        }, signal)
      ));
      for (const [i, c] of entries.entries()) {
        const head = heads[i];
        if (head === null || head === undefined) continue; // deleted while listing
        const meta = head.Metadata ?? {};
        const treeHash = meta[META_TREE_HASH];
        yield {
          remoteId: remoteArchiveId(c.Key!),
          size: head.ContentLength ?? c.Size ?? 0,
          treeHash: treeHash !== undefined && TREE_HASH.test(treeHash) ? treeHash : null,
          description: decodeMeta(meta[META_DESCRIPTION] ?? ""),
          createdAt: (head.LastModified ?? c.LastModified)?.getTime() ?? 0,
        };
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
    } while (token !== undefined);
  }

  /** Deletes the object; one already gone is fine (S3 answers 204 either way). */
  async delete(remoteId: RemoteArchiveId, options: { signal?: AbortSignal } = {}): Promise<void> {
    const key = this.#checkKey(remoteId);
    await this.#send(
      "DeleteObject",
      key,
      new DeleteObjectCommand({ Bucket: this.#bucket, Key: key }),
      options.signal,
    );
  }

  /** Closes the client's connections. */
  close(): Promise<void> {
    this.#clients.destroy();
    return Promise.resolve();
  }

  // -------------------------------------------------------------------------

  async #putSingle(archive: PutArchive, key: string, signal?: AbortSignal): Promise<PutResult> {
    const id = archive.archiveId as string;
    // The packer's SHA-256 spares a reading; S3 checks it (BadDigest) on arrival.
    const first = archive.sha256 !== undefined && SHA256_HEX.test(archive.sha256)
      ? {
        bytes: archive.size,
        sha256: Buffer.from(archive.sha256, "hex").toString("base64"),
        treeHash: archive.treeHash,
      }
      : await digestBody(archive.body(), signal);
    this.#checkBody(id, archive, first.bytes, first.treeHash);
    // A body of the wrong size breaks the request off, and the mismatch is reported.
    const size = archive.size;
    const upload = streamedBody(archive.body(), signal, {
      onChunk: (_, sent) => {
        if (sent > size) throw this.#sizeMismatch(id, sent, size, true);
      },
      onEnd: (sent) => {
        if (sent !== size) throw this.#sizeMismatch(id, sent, size, false);
      },
    });
    let out;
    try {
      out = await this.#send<PutObjectCommandOutput>(
        "PutObject",
        key,
        new PutObjectCommand({
          Bucket: this.#bucket,
          Key: key,
          Body: upload.body,
          ContentLength: size,
          ChecksumSHA256: first.sha256,
          StorageClass: this.#storageClass,
          Metadata: this.#metadata(archive.description, first.treeHash),
        }),
        upload.signal,
        this.#clients.streaming,
      );
    } catch (e) {
      throw upload.failure() ?? e;
    } finally {
      upload.body.destroy();
    }
    if (out.ChecksumSHA256 !== first.sha256) {
      await this.#deleteQuietly(key);
      throw new ArchiveMismatchError(
        `Cannot put archive ${id} in ${this.location}: S3 answered SHA-256 ${
          out.ChecksumSHA256 ?? "(none)"
        } for ${key}, but the bytes sent have ${first.sha256}; the object was deleted`,
      );
    }
    return { remoteId: remoteArchiveId(key), size: first.bytes, treeHash: first.treeHash };
  }

  async #putMultipart(archive: PutArchive, key: string, signal?: AbortSignal): Promise<PutResult> {
    const id = archive.archiveId as string;
    const partSize = s3PartSize(archive.size, this.#multipart.partSize);
    const { sent, composite, out } = await s3MultipartUpload({
      client: this.#client,
      bucket: this.#bucket,
      key,
      location: this.location,
      create: {
        StorageClass: this.#storageClass,
        ChecksumAlgorithm: "SHA256",
        ChecksumType: "COMPOSITE",
        Metadata: this.#metadata(archive.description, archive.treeHash),
      },
      retry: this.#multipart.retry,
      signal,
    }, async (uploadId) => {
      const sent = await this.#uploadParts(archive, key, uploadId, partSize, signal);
      this.#checkBody(id, archive, sent.bytes, sent.treeHash);
      const all = createHash("sha256");
      for (const p of sent.parts) all.update(Buffer.from(p.ChecksumSHA256!, "base64"));
      const composite = `${all.digest("base64")}-${sent.parts.length}`;
      const out = await this.#send<CompleteMultipartUploadCommandOutput>(
        "CompleteMultipartUpload",
        key,
        new CompleteMultipartUploadCommand({
          Bucket: this.#bucket,
          Key: key,
          UploadId: uploadId,
          MultipartUpload: { Parts: sent.parts },
        }),
        signal,
      );
      return { sent, composite, out };
    });
    if (out.ChecksumSHA256 !== composite) {
      await this.#deleteQuietly(key);
      throw new ArchiveMismatchError(
        `Cannot put archive ${id} in ${this.location}: S3 answered composite SHA-256 ${
          out.ChecksumSHA256 ?? "(none)"
        } for ${key}, but the ${sent.parts.length} parts sent make ${composite}; the object was deleted`,
      );
    }
    return { remoteId: remoteArchiveId(key), size: sent.bytes, treeHash: sent.treeHash };
  }

  /**
   * Sends the body in parts (see `uploadParts`), each with its SHA-256,
   * which S3 must answer back; computes the tree hash of the whole on the
   * way. A body longer than the archive stops at once; the caller checks
   * the rest.
   */
  async #uploadParts(
    archive: PutArchive,
    key: string,
    uploadId: string,
    partSize: number,
    signal?: AbortSignal,
  ): Promise<{ parts: CompletedPart[]; bytes: number; treeHash: string }> {
    const id = archive.archiveId as string;
    const hasher = new TreeHasher();
    const { results, bytes } = await uploadParts({
      body: archive.body(),
      partSize,
      concurrency: this.#multipart.concurrency,
      retry: this.#multipart.retry,
      signal,
      onChunk: (chunk, count) => {
        if (count > archive.size) throw this.#sizeMismatch(id, count, archive.size, true);
        hasher.update(chunk);
      },
      send: async ({ number, bytes }, partSignal): Promise<CompletedPart> => {
        const sha256 = createHash("sha256").update(bytes).digest("base64");
        const out = await this.#send<UploadPartCommandOutput>(
          "UploadPart",
          key,
          new UploadPartCommand({
            Bucket: this.#bucket,
            Key: key,
            UploadId: uploadId,
            PartNumber: number,
            Body: bytes,
            ContentLength: bytes.length,
            ChecksumSHA256: sha256,
          }),
          partSignal,
        );
        if (out.ChecksumSHA256 !== sha256) {
          // Not retried: an ArchiveMismatchError is no retryable PortError.
          throw new ArchiveMismatchError(
            `Cannot put archive ${id} in ${this.location}: S3 answered SHA-256 ${
              out.ChecksumSHA256 ?? "(none)"
            } for part ${number} of ${key}, but the part sent has ${sha256}`,
          );
        }
        return { PartNumber: number, ETag: out.ETag, ChecksumSHA256: sha256 };
      },
    });
    return { parts: results, bytes, treeHash: hasher.digest() };
  }

  async #deleteQuietly(key: string): Promise<void> {
    try {
      await this.#send(
        "DeleteObject",
        key,
        new DeleteObjectCommand({ Bucket: this.#bucket, Key: key }),
        undefined,
      );
    } catch {
      // The caller learns of the mismatch; an object left behind is overwritten by the retry.
    }
  }

  #checkBody(id: string, archive: PutArchive, bytes: number, treeHash: string): void {
    if (bytes !== archive.size) throw this.#sizeMismatch(id, bytes, archive.size, false);
    if (treeHash !== archive.treeHash) {
      throw new ArchiveMismatchError(
        `Cannot put archive ${id} in ${this.location}: the body's tree hash is ${treeHash} but the archive declares ${archive.treeHash}`,
      );
    }
  }

  #sizeMismatch(id: string, bytes: number, size: number, atLeast: boolean): ArchiveMismatchError {
    return new ArchiveMismatchError(
      `Cannot put archive ${id} in ${this.location}: the body has ${
        atLeast ? "at least " : ""
      }${bytes} bytes but the archive declares ${size}`,
    );
  }

  #metadata(description: string, treeHash: string): Record<string, string> {
    return { [META_DESCRIPTION]: encodeMeta(description), [META_TREE_HASH]: treeHash };
  }

  #key(archiveId: string): string {
    return this.#prefix === "" ? archiveId : `${this.#prefix}/${archiveId}`;
  }

  /** The key of a remote id, which must be an archive key under this store's prefix. */
  #checkKey(remoteId: RemoteArchiveId): string {
    const prefix = this.#prefix === "" ? "" : `${this.#prefix}/`;
    if (!remoteId.startsWith(prefix) || !ARCHIVE_ID.test(remoteId.slice(prefix.length))) {
      throw new PortError(
        `Invalid remote archive id "${remoteId}" for ${this.location}: expected ${prefix}<archiveId>`,
        { code: "InvalidParameterValueException", retryable: false },
      );
    }
    return remoteId;
  }

  async #head(key: string, op: string, signal?: AbortSignal): Promise<HeadObjectCommandOutput> {
    try {
      return await this.#send<HeadObjectCommandOutput>(
        `HeadObject (${op})`,
        key,
        new HeadObjectCommand({ Bucket: this.#bucket, Key: key }),
        signal,
      );
    } catch (e) {
      throw this.#notFound(e, key);
    }
  }

  /** `NoSuchKey`/404 as `ResourceNotFoundException`; other errors as they are. */
  #notFound(e: unknown, key: string): unknown {
    if (e instanceof PortError && (e.code === "NoSuchKey" || e.code === "NotFound")) {
      return new PortError(`Archive not found in ${this.location}: ${key} (${e.code})`, {
        code: "ResourceNotFoundException",
        retryable: false,
        cause: e,
      });
    }
    return e;
  }

  #decodeJob(id: JobId): JobToken {
    const notFound = () =>
      new PortError(`Unknown retrieval job in ${this.location}: "${id}"`, {
        code: "ResourceNotFoundException",
        retryable: false,
      });
    let value: unknown;
    try {
      const raw = Buffer.from(id, "base64url");
      if (raw.toString("base64url") !== id) throw notFound();
      value = JSON.parse(raw.toString("utf8"));
    } catch {
      throw notFound();
    }
    if (!isJobToken(value)) throw notFound();
    try {
      this.#checkKey(value.k as RemoteArchiveId);
    } catch {
      throw notFound();
    }
    return value;
  }

  #describe(token: JobToken, head: HeadObjectCommandOutput): RetrievalJob {
    const storageClass = head.StorageClass ?? "STANDARD";
    if (!isArchived(storageClass)) return this.#job(token, "ready", null, token.t);
    const restore = parseRestore(head.Restore);
    const now = this.#clock.now();
    if (restore === null) return this.#job(token, "expired", null);
    if (restore.ongoing) return this.#job(token, "in-progress", null);
    if (restore.expiresAt !== null && restore.expiresAt <= now) {
      return this.#job(token, "expired", restore.expiresAt);
    }
    const estimate = restore.expiresAt === null ? token.t : restore.expiresAt - token.n * DAY;
    const completedAt = Math.min(Math.max(estimate, token.t), Math.max(now, token.t));
    return this.#job(token, "ready", restore.expiresAt, completedAt);
  }

  #job(
    token: JobToken,
    state: RetrievalJob["state"],
    expiresAt: number | null,
    completedAt: number | null = null,
  ): RetrievalJob {
    return {
      jobId: jobId(Buffer.from(JSON.stringify(token)).toString("base64url")),
      remoteId: remoteArchiveId(token.k),
      range: null,
      state,
      treeHash: null,
      description: token.d,
      startedAt: token.t,
      completedAt,
      expiresAt,
    };
  }

  /** Sends a command (see `sendS3`): S3 errors as `PortError`s, an abort as the signal's reason. */
  #send<O>(
    op: string,
    key: string,
    command: unknown,
    signal: AbortSignal | undefined,
    client: S3Client = this.#client,
  ): Promise<O & { $metadata: { httpStatusCode?: number } }> {
    return sendS3<O>(client, command, { op, key, location: this.location }, signal);
  }
}

function isArchived(storageClass: string): boolean {
  return storageClass === "GLACIER" || storageClass === "DEEP_ARCHIVE";
}

/** Parses `ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"`. */
function parseRestore(header: string | undefined): RestoreHeader | null {
  if (header === undefined || header === "") return null;
  const ongoing = /ongoing-request="(true|false)"/i.exec(header)?.[1];
  if (ongoing === undefined) return null;
  const expiry = /expiry-date="([^"]+)"/i.exec(header)?.[1];
  const expiresAt = expiry === undefined ? NaN : Date.parse(expiry);
  return {
    ongoing: ongoing.toLowerCase() === "true",
    expiresAt: Number.isFinite(expiresAt) ? expiresAt : null,
  };
}

/** The total of `bytes a-b/total`, or `null`. */
function totalOf(contentRange: string | undefined): number | null {
  const m = /^bytes \d+-\d+\/(\d+)$/.exec(contentRange ?? "");
  return m ? Number(m[1]) : null;
}

function isJobToken(v: unknown): v is JobToken {
  if (typeof v !== "object" || v === null) return false;
  const t = v as Record<string, unknown>;
  return t.v === 1 && typeof t.k === "string" && typeof t.d === "string" &&
    typeof t.t === "number" && Number.isFinite(t.t) && Number.isSafeInteger(t.n) &&
    (t.n as number) >= 1;
}

/**
 * Metadata values travel as HTTP headers, which lose leading, trailing and
 * repeated spaces: those spaces and `%` are written as `%20` and `%25`.
 */
function encodeMeta(s: string): string {
  return s.replace(/%/g, "%25").replace(/^ | $|(?<= ) /g, "%20");
}

function decodeMeta(s: string): string {
  return s.replace(/%(25|20)/g, (_, h: string) => (h === "25" ? "%" : " "));
}

/** Reads a body to its end, counting it and computing its SHA-256 (base64) and tree hash. */
async function digestBody(
  body: ReadableStream<Uint8Array>,
  signal: AbortSignal | undefined,
): Promise<{ bytes: number; sha256: string; treeHash: string }> {
  const facts = await digest(body, signal);
  return {
    bytes: facts.length,
    sha256: Buffer.from(facts.sha256, "hex").toString("base64"),
    treeHash: facts.treeHash,
  };
}
