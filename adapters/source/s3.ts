/**
 * A {@linkcode Source} over an S3 bucket, or the part of it under a key
 * prefix (`--source s3://bucket/photos/`), through `@aws-sdk/client-s3`.
 *
 * - Listing: ListObjectsV2 under the prefix, one request per page of at
 *   most `pageSize` keys (S3 answers at most 1,000), in S3's key order.
 *   `list({ after })` starts after that full object key (`StartAfter`);
 *   every page carries the last full key it covered as its `cursor`. S3
 *   keys do not appear in the order they were written, so a listing after a
 *   cursor does not find what is new: the source has no `pollMs`, and
 *   suggests a full listing every hour (`rescanMs`) because a listing costs
 *   one request per 1,000 objects (about $0.005 per million objects at
 *   us-east-1 LIST prices); an operator with a small bucket may list more
 *   often.
 * - Entries: the key below the prefix (exactly: the prefix is cut, nothing
 *   else), `version` = the ETag without quotes (the object's identity: a
 *   re-uploaded key gets another ETag; a listing names no version id, so
 *   none is added), `length` = Size, `mtimeMs` = LastModified.
 * - Skipped: "folder" markers (an empty object whose key ends in `/`) and
 *   objects in the GLACIER or DEEP_ARCHIVE classes, which cannot be read
 *   without a restore.
 * - Reading: GetObject with `If-Match` = the listed ETag (S3 answers 412
 *   when the key now holds another version: `ChangedError`); the answered
 *   ETag and length are compared with the entry's too. A missing key is
 *   `VanishedError`; a body that ends early is a retryable `TruncatedBody`.
 * - Errors: `PortError`s with S3's own code, retryable only for throttling,
 *   timeouts, 5xx and connection failures (see `s3PortError` in
 *   `adapters/store/_aws.ts`). One attempt per call: retries belong to the
 *   caller.
 *
 * @example
 * ```ts
 * const source = await S3Source.open({ kind: "s3", bucket: "ugc", prefix: "photos/" });
 * for await (const page of source.list()) {
 *   for (const entry of page.entries) console.log(entry.key, entry.version);
 * }
 * await source.close();
 * ```
 * @module
 */

import {
  GetObjectCommand,
  type GetObjectCommandOutput,
  ListObjectsV2Command,
  type ListObjectsV2CommandOutput,
  S3Client,
} from "@aws-sdk/client-s3";
import { ChangedError, PortError, VanishedError } from "../../core/errors.ts";
import { type SourceId, sourceId } from "../../core/ids.ts";
import type { ListOptions, ListPage, SkippedEntry, Source, SourceEntry } from "../../core/ports.ts";
import { remoteSourceId, type S3SourceUrl } from "../../core/source_url.ts";
import {
  type NodeBody,
  s3BodyStream,
  s3ClientConfig,
  type S3ClientOptions,
  sendS3,
} from "../store/_aws.ts";

/** Options for {@linkcode S3Source.open}. */
export interface S3SourceOptions extends S3ClientOptions {
  /** Most keys per ListObjectsV2 request and per page, 1 to 1,000; default 1,000. */
  readonly pageSize?: number;
}

/** The full-listing interval an S3 source suggests: one hour. */
export const S3_RESCAN_MS = 3_600_000;

/** Why a folder marker is skipped. */
export const FOLDER_MARKER_REASON = "folder marker (an empty object whose key ends in /)";

const ARCHIVED_CLASSES = new Set(["GLACIER", "DEEP_ARCHIVE"]);

/**
 * An S3 bucket (or the part under a prefix) as a {@linkcode Source}; see
 * the module notes for what is listed, skipped and how reads are checked.
 */
export class S3Source implements Source {
  /** `s3://bucket/prefix`, the prefix exactly as configured. */
  readonly id: SourceId;
  /** A full listing every hour unless the operator says otherwise (listing costs money). */
  readonly rescanMs: number = S3_RESCAN_MS;
  readonly #client: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #pageSize: number;
  readonly #url: S3SourceUrl;
  readonly #options: S3SourceOptions;

  private constructor(url: S3SourceUrl, pageSize: number, options: S3SourceOptions) {
    this.#url = url;
    this.#options = options;
    this.#bucket = url.bucket;
    this.#prefix = url.prefix;
    this.#pageSize = pageSize;
    this.id = sourceId(remoteSourceId(url));
    this.#client = new S3Client(s3ClientConfig(options));
  }

  /**
   * Opens the bucket an `s3://` source URL names. Makes no request: a
   * missing bucket or a lack of permission shows at the first listing, as a
   * `PortError` naming the bucket.
   *
   * @throws {RangeError} a `pageSize` outside 1..1,000
   */
  static open(url: S3SourceUrl, options: S3SourceOptions = {}): Promise<S3Source> {
    const pageSize = options.pageSize ?? 1000;
    if (!Number.isSafeInteger(pageSize) || pageSize < 1 || pageSize > 1000) {
      return Promise.reject(
        new RangeError(`Invalid S3 list page size: ${pageSize} (must be a whole number 1 to 1000)`),
      );
    }
    return Promise.resolve(new S3Source(url, pageSize, options));
  }

  /**
   * What opens this source again in another thread (the pack workers):
   * plain data, with the client options it was opened with. Holds
   * credentials when they were given explicitly: never log it.
   */
  spec(): { readonly url: S3SourceUrl; readonly options: S3SourceOptions } {
    return { url: this.#url, options: this.#options };
  }

  /**
   * Lists the objects under the prefix, after the full key `after` when
   * given, one page per request.
   *
   * @throws {PortError} S3's error, e.g. `NoSuchBucket`, `AccessDenied`, `SlowDown`
   */
  async *list(options: ListOptions = {}): AsyncGenerator<ListPage> {
    const { signal } = options;
    const after = options.after ?? null;
    let token: string | undefined;
    let first = true;
    while (first || token !== undefined) {
      const page: ListObjectsV2CommandOutput = await sendS3<ListObjectsV2CommandOutput>(
        this.#client,
        new ListObjectsV2Command({
          Bucket: this.#bucket,
          Prefix: this.#prefix,
          MaxKeys: this.#pageSize,
          ...(token !== undefined
            ? { ContinuationToken: token }
            : after !== null && after !== ""
            ? { StartAfter: after }
            : {}),
        }),
        { op: "ListObjectsV2", key: this.#prefix, location: this.id },
        signal,
      );
      first = false;
      const entries: SourceEntry[] = [];
      const skipped: SkippedEntry[] = [];
      let last: string | undefined;
      for (const object of page.Contents ?? []) {
        const full = object.Key;
        if (full === undefined) continue;
        last = full;
        if (!full.startsWith(this.#prefix)) continue; // S3 lists only the prefix; be safe
        const key = full.slice(this.#prefix.length);
        const size = object.Size ?? 0;
        const storageClass = object.StorageClass ?? "STANDARD";
        if (key === "") {
          // The prefix names this very object ("photos/" the folder, or "photos" a file).
          skipped.push({
            key: full,
            reason: full.endsWith("/") && size === 0
              ? FOLDER_MARKER_REASON
              : "its key is the source prefix itself, so it has no name below the prefix",
          });
          continue;
        }
        if (key.endsWith("/") && size === 0) {
          skipped.push({ key, reason: FOLDER_MARKER_REASON });
          continue;
        }
        if (ARCHIVED_CLASSES.has(storageClass)) {
          skipped.push({
            key,
            reason: `storage class ${storageClass}: not readable without a restore`,
          });
          continue;
        }
        entries.push({
          key,
          version: unquote(object.ETag ?? ""),
          length: size,
          mtimeMs: object.LastModified?.getTime() ?? 0,
        });
      }
      token = page.IsTruncated ? page.NextContinuationToken : undefined;
      if (page.IsTruncated && token === undefined) {
        throw new PortError(
          `S3 ListObjectsV2 of ${this.#prefix} in ${this.id} answered a truncated page without a continuation token`,
          { code: "MalformedResponse", retryable: true },
        );
      }
      if (entries.length > 0 || skipped.length > 0 || last !== undefined) {
        yield last === undefined ? { entries, skipped } : { entries, skipped, cursor: last };
      }
    }
  }

  /**
   * Opens the listed version of `entry.key` for reading.
   *
   * @throws {VanishedError} the key is gone (`NoSuchKey`), naming the key
   * @throws {ChangedError} the key holds another version (412, or another ETag or length)
   * @throws {PortError} any other S3 error, e.g. `InvalidObjectState` when the
   *   object moved to an archive class since it was listed
   */
  async open(
    entry: SourceEntry,
    options: { signal?: AbortSignal } = {},
  ): Promise<ReadableStream<Uint8Array>> {
    const { signal } = options;
    signal?.throwIfAborted();
    const key = this.#prefix + entry.key;
    const at = entry.version.lastIndexOf("@");
    const etag = at === -1 ? entry.version : entry.version.slice(0, at);
    const versionId = at === -1 ? undefined : entry.version.slice(at + 1);
    let out: GetObjectCommandOutput;
    try {
      out = await sendS3<GetObjectCommandOutput>(
        this.#client,
        new GetObjectCommand({
          Bucket: this.#bucket,
          Key: key,
          IfMatch: `"${etag}"`,
          ...(versionId === undefined ? {} : { VersionId: versionId }),
        }),
        { op: "GetObject", key, location: this.id },
        signal,
      );
    } catch (e) {
      if (e instanceof PortError) {
        if (e.code === "NoSuchKey" || e.code === "NotFound" || e.code === "NoSuchVersion") {
          throw new VanishedError(`Source object ${quote(entry.key)} vanished from ${this.id}`, {
            cause: e,
          });
        }
        if (e.code === "PreconditionFailed") {
          throw new ChangedError(
            `Source object ${
              quote(entry.key)
            } in ${this.id} changed: it no longer has the ETag ${etag}`,
            { cause: e },
          );
        }
        if (e.code === "InvalidObjectState") {
          throw new PortError(
            `Cannot read source object ${
              quote(entry.key)
            } in ${this.id}: it is in an archive storage class now and not readable without a restore (InvalidObjectState)`,
            { code: e.code, retryable: false, cause: e },
          );
        }
      }
      throw e;
    }
    const body = out.Body as unknown as NodeBody | undefined;
    const answered = unquote(out.ETag ?? "");
    const length = out.ContentLength;
    if (answered !== etag || length !== entry.length) {
      body?.destroy();
      const changes: string[] = [];
      if (answered !== etag) changes.push(`ETag ${etag} -> ${answered || "(none)"}`);
      if (length !== entry.length) changes.push(`length ${entry.length} -> ${length ?? "(none)"}`);
      throw new ChangedError(
        `Source object ${quote(entry.key)} in ${this.id} changed: ${changes.join(", ")}`,
      );
    }
    return s3BodyStream(body, entry.length, `${quote(entry.key)} from ${this.id}`, signal);
  }

  /** Closes the client's connections. Idempotent. */
  close(): Promise<void> {
    this.#client.destroy();
    return Promise.resolve();
  }
}

/** An ETag without its double quotes. */
function unquote(etag: string): string {
  return etag.replace(/"/g, "");
}

/** A key for a message: JSON-quoted so that newlines and spaces show. */
function quote(key: string): string {
  return JSON.stringify(key);
}
