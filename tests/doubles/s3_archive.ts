/**
 * A strict test double of the S3 Glacier storage classes (PROTOCOLS.md
 * section 3): an HTTP proxy on 127.0.0.1 in front of `s3rver`, a real
 * third-party S3 server that stores plain objects, adding what s3rver lacks:
 *
 * - archive semantics: an object PUT (or multipart-completed) with storage
 *   class `GLACIER` or `DEEP_ARCHIVE` answers GET with 403
 *   `InvalidObjectState` until restored; `POST ?restore` answers 202 when it
 *   starts a restore, 409 `RestoreAlreadyInProgress` while one runs and 200
 *   when the object is already restored (only the expiry moves, counted from
 *   now); HEAD answers `x-amz-restore` and `x-amz-storage-class`. A restore
 *   completes after the tier's delay on the double's clock (or at once
 *   through {@linkcode S3ArchiveDouble.completeRestores}); the restored copy
 *   expires `Days` later, rounded up to the next midnight UTC as S3 does.
 *   `GLACIER_IR` is readable at once; restoring a `STANDARD` or `GLACIER_IR`
 *   object is 403 `InvalidObjectState`; `Expedited` on `DEEP_ARCHIVE` is 400
 *   `InvalidArgument`.
 * - checksums: `x-amz-checksum-sha256` (base64) and `Content-MD5` are checked
 *   against the bytes of PutObject and UploadPart (400 `BadDigest`), bodies
 *   are spooled to disk and only reach s3rver once they are valid (s3rver
 *   writes in place, so a broken upload must never reach it), and the
 *   checksum is answered in the response; CompleteMultipartUpload answers the
 *   composite checksum `base64(sha256(part digests))-N`.
 * - multipart rules: part numbers 1..10,000, every part but the last at least
 *   5 MiB (`EntityTooSmall` at Complete), parts listed in order with their
 *   ETags and checksums (`InvalidPartOrder`, `InvalidPart`), unknown upload
 *   ids `NoSuchUpload`, and AbortMultipartUpload (which s3rver lacks).
 * - conditional requests, as S3 documents them (RFC 7232 order; s3rver's
 *   own partial handling never sees the headers):
 *   - GetObject / HeadObject: `If-Match` (ETags, comma-separated, quotes
 *     optional, or `*`) that does not match the object's ETag, or else
 *     `If-Unmodified-Since` before its Last-Modified: 412
 *     `PreconditionFailed` (an XML body naming the `Condition`; none for
 *     HEAD). `If-None-Match` that matches, or else `If-Modified-Since` not
 *     before its Last-Modified: 304 Not Modified, no body. `If-Match` true
 *     makes S3 ignore `If-Unmodified-Since`, `If-None-Match` present makes
 *     it ignore `If-Modified-Since`; an unparseable date is ignored. A
 *     request that fails anyway (404 `NoSuchKey`, 403
 *     `InvalidObjectState`, 416) fails so, whatever its conditions.
 *   - PutObject and CompleteMultipartUpload: `If-None-Match: *` when the
 *     key holds an object, or `If-Match` that does not match its ETag: 412
 *     `PreconditionFailed`, nothing stored; `If-Match` on a missing key:
 *     404 `NoSuchKey` (the S3 user guide, "How to prevent object
 *     overwrites with conditional writes"). A refused Complete leaves the
 *     upload open, as S3 does after a 412: it can still be aborted.
 *     Conditions are checked once the request is otherwise valid (body
 *     read and checked, parts checked) and writes to one key are
 *     serialized, so that of two racing conditional writes the first to
 *     finish wins and the other gets 412, as in S3.
 *   - a race is staged with {@linkcode S3ArchiveDouble.beforeNext}: a hook
 *     that runs when the next request of an operation arrives, before the
 *     double handles it (e.g. another writer's PutObject of the same key).
 * - restore events ({@linkcode S3ArchiveDouble.notifyRestores}): like an
 *   `s3:ObjectRestore:*` notification configuration of a bucket, delivered
 *   into an SQS double's queue, directly or through an SNS topic. The
 *   `s3:TestEvent` comes at once, `ObjectRestore:Post` when a RestoreObject
 *   starts a restore (202), `ObjectRestore:Completed` when the restore
 *   completes on the double's clock (when `x-amz-restore` turns to
 *   `ongoing-request="false"`) and `ObjectRestore:Delete` when the restored
 *   copy expires, keys encoded as S3 encodes them. The double notices
 *   completion and expiry whenever a {@linkcode ManualClock} it runs on moves
 *   (`advance`, `set`, `sleep`), on any request and on any control call; on
 *   another clock, only on requests and control calls.
 * - fault injection ({@linkcode S3ArchiveDouble.inject}): the next N requests,
 *   optionally of one operation, get 500 `InternalError`, 503 `SlowDown`, a
 *   delay, a connection reset, a truncated body or a wrong checksum; or a
 *   seeded random fault rate ({@linkcode S3ArchiveDouble.setFaultRate}).
 *   Every request is counted per operation.
 *
 * ListObjectsV2 is served through s3rver's V1 listing with the double's own
 * continuation tokens (s3rver makes V2 tokens with DES, which Deno's
 * node:crypto lacks), with each object's real storage class.
 *
 * Limits, stated rather than faked: path-style requests only; `aws-chunked`
 * bodies and trailing checksums are rejected with 400 `InvalidRequest` (send
 * `x-amz-checksum-sha256` as a header); only SHA-256 checksums; CopyObject,
 * DeleteObjects and browser POST uploads are 501 `NotImplemented` because
 * they would create or remove objects behind the double's back. On writes,
 * `If-None-Match` with anything but `*` is 501 `NotImplemented` (S3 expects
 * `*` there and does not document what it answers to anything else);
 * `If-Modified-Since` / `If-Unmodified-Since` on writes are ignored (S3's
 * PutObject reference names no date conditions); the 409
 * `ConditionalRequestConflict` S3 gives a conditional write that races a
 * delete is not produced (writes to a key are serialized instead).
 * Last-Modified is s3rver's (real time, whole seconds), not the double's
 * clock. Conditional DeleteObject (`If-Match`) is 501 `NotImplemented`.
 * Signatures are not checked (s3rver does not check SigV4); use the
 * credentials in {@linkcode S3ArchiveDouble.credentials}. The exact code S3
 * gives for `Expedited` on `DEEP_ARCHIVE` is not documented; this double
 * uses 400 `InvalidArgument`.
 *
 * @example
 * ```ts
 * const clock = new ManualClock();
 * const s3 = await S3ArchiveDouble.start({ clock });
 * const client = s3.client(); // or: S3GlacierStore.open(url, s3.connection)
 * try {
 *   await s3.createBucket("archives");
 *   s3.notifyRestores("archives", sqs.createQueue("restores")); // sqs: an SqsDouble
 *   clock.advance(12 * 3_600_000); // Deep Archive Standard restores are done, and announced
 * } finally {
 *   client.destroy();
 *   await s3.close();
 * }
 * ```
 * @module
 */

import http from "node:http";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { createReadStream, createWriteStream } from "node:fs";
import { rm } from "node:fs/promises";
import { S3Client } from "@aws-sdk/client-s3";
import S3rver from "s3rver";
import type { Clock } from "../../core/ports.ts";
import { prng } from "../../scripts/corpus.ts";
import {
  publishToQueue,
  s3RestoreEvent,
  type S3RestoreEventName,
  s3TestEvent,
  type SqsQueue,
} from "./sqs.ts";

const MIB = 1024 * 1024;
const GIB = 1024 * MIB;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;
/** S3's smallest part but the last. */
export const MIN_PART_SIZE = 5 * MIB;
/** S3's largest part number. */
export const MAX_PARTS = 10_000;
const MAX_PUT_SIZE = 5 * GIB;
const MAX_XML_BODY = MIB;
/** A topic S3 may publish to (the SQS double's envelope takes the `aws` partition only). */
const SNS_TOPIC_ARN = /^arn:aws:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/;
/** The `Subject` of what S3 publishes to SNS. */
const S3_SUBJECT = "Amazon S3 Notification";
/** The `SenderId` of events S3 sends straight to a queue (any constant). */
const S3_SENDER_ID = "AIDAS3EVENTSDOUBLE";

/** S3 operations the double tells apart (for counters and fault matching). */
export type S3Operation =
  | "PutObject"
  | "UploadPart"
  | "CreateMultipartUpload"
  | "CompleteMultipartUpload"
  | "AbortMultipartUpload"
  | "GetObject"
  | "HeadObject"
  | "RestoreObject"
  | "DeleteObject"
  | "ListObjectsV2"
  | "CreateBucket"
  | "HeadBucket"
  | "Other";

/** Storage classes S3 accepts on PutObject. */
const STORAGE_CLASSES = [
  "STANDARD",
  "REDUCED_REDUNDANCY",
  "STANDARD_IA",
  "ONEZONE_IA",
  "INTELLIGENT_TIERING",
  "GLACIER",
  "DEEP_ARCHIVE",
  "GLACIER_IR",
  "OUTPOSTS",
  "SNOW",
  "EXPRESS_ONEZONE",
] as const;
type StorageClass = (typeof STORAGE_CLASSES)[number];

/** Restore tiers. */
export type RestoreTier = "Expedited" | "Standard" | "Bulk";

/**
 * How long a restore takes on the double's clock: the upper bound of what
 * AWS promises for each class and tier (PROTOCOLS.md section 3).
 */
export const RESTORE_DELAY_MS: {
  readonly GLACIER: Readonly<Record<RestoreTier, number>>;
  readonly DEEP_ARCHIVE: Readonly<Record<"Standard" | "Bulk", number>>;
} = {
  GLACIER: { Expedited: 5 * 60_000, Standard: 5 * HOUR, Bulk: 12 * HOUR },
  DEEP_ARCHIVE: { Standard: 12 * HOUR, Bulk: 48 * HOUR },
};

/** What a fault does to a request. */
export type FaultKind =
  /** 500 `InternalError` (the request has no effect). */
  | "InternalError"
  /** 503 `SlowDown` (the request has no effect). */
  | "SlowDown"
  /** The request waits `delayMs` (real time) before it is handled normally. */
  | "slow"
  /** The connection is destroyed once the request is read, before anything is answered (no effect). */
  | "reset"
  /** The request takes effect, but the response body stops halfway and the connection drops. */
  | "truncate"
  /** The request takes effect, but the answered `x-amz-checksum-sha256` is wrong. */
  | "badChecksum";

/** One injected fault. */
export interface FaultSpec {
  readonly kind: FaultKind;
  /** Only requests of this operation; default any operation the fault applies to. */
  readonly op?: S3Operation;
  /** How many matching requests get it; default 1. */
  readonly count?: number;
  /** For `slow`: the delay, ms; default 2,000. */
  readonly delayMs?: number;
}

/** A seeded random fault rate, for load tests. */
export interface FaultRate {
  /** Probability in [0, 1] that a request gets a fault. */
  readonly rate: number;
  /** Seed of the pseudo-random sequence (same seed, same faults for the same requests). */
  readonly seed: number;
  /** Faults to pick from, uniformly; default InternalError, SlowDown and reset. */
  readonly kinds?: readonly FaultKind[];
  /** Only these operations; default all. */
  readonly ops?: readonly S3Operation[];
  /** For `slow`: the delay, ms; default 2,000. */
  readonly delayMs?: number;
}

/** Which object a request names: what a {@linkcode BeforeHook} is told. */
export interface RequestTarget {
  readonly op: S3Operation;
  readonly bucket: string;
  /** The object key; `""` for a bucket request. */
  readonly key: string;
}

/**
 * Runs when a request arrives, before the double handles it: may make
 * requests of its own to the double (the hook is used up before it runs, so
 * they do not run it again). A hook that throws fails the request with 500
 * `InternalError`.
 */
export type BeforeHook = (target: RequestTarget) => void | Promise<void>;

/** The restore state of one object, as the double sees it now. */
export type RestoreState = "none" | "ongoing" | "restored" | "expired";

/** One object the double holds. */
export interface StoredObjectInfo {
  readonly key: string;
  readonly size: number;
  /** The ETag, without quotes (an md5, or `md5-N` after a multipart upload). */
  readonly etag: string;
  readonly storageClass: string;
  /** The checksum S3 would answer: plain base64, or `base64-N` for multipart; `null` when none. */
  readonly checksumSHA256: string | null;
  readonly restore: RestoreState;
  readonly restoreTier: RestoreTier | null;
  /** When the restore completes or completed (double's clock), or `null`. */
  readonly restoreReadyAt: number | null;
  /** When the restored copy expires, once the restore completed; else `null`. */
  readonly restoreExpiresAt: number | null;
}

/** One multipart upload in progress. */
export interface UploadInfo {
  readonly bucket: string;
  readonly key: string;
  readonly uploadId: string;
  readonly storageClass: string;
  /** Part numbers uploaded so far, ascending. */
  readonly parts: readonly number[];
}

/** Options for {@linkcode S3ArchiveDouble.notifyRestores}. */
export interface NotifyRestoresOptions {
  /**
   * Publish the events to this SNS topic, to which the queue is subscribed;
   * default none: S3 sends them to the queue directly.
   */
  readonly topicArn?: string;
  /**
   * With `topicArn`: the subscription has raw message delivery, so the body
   * is the event JSON itself; default false (the SNS envelope).
   */
  readonly raw?: boolean;
}

/** Options for {@linkcode S3ArchiveDouble.start}. */
export interface S3ArchiveDoubleOptions {
  /** The clock restores run on; default a {@linkcode ManualClock} at the real time. */
  readonly clock?: { now(): number };
}

/**
 * Where a client finds a double: the settings an SDK client and coldpack's
 * S3 adapters take (`S3GlacierStore.open(url, s3.connection)`).
 */
export interface S3Connection {
  /** The double's URL, e.g. `http://127.0.0.1:41234`. */
  readonly endpoint: string;
  /** Always true: the double serves path-style requests only. */
  readonly forcePathStyle: true;
  readonly region: string;
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
}

/**
 * A connection to a local port where nothing listens, so every request is
 * refused; its secret key must never show in an error message.
 */
export function refusedS3Connection(): S3Connection {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  return {
    endpoint: `http://127.0.0.1:${port}`,
    forcePathStyle: true,
    region: "us-east-1",
    credentials: { accessKeyId: "AKID", secretAccessKey: "never-in-messages" },
  };
}

/**
 * A plain SDK client for a double, in this process or another: one attempt
 * per call (a fault the test injects reaches the test), checksums only where
 * S3 requires them, nothing logged. The caller destroys it.
 *
 * @example
 * ```ts
 * const client = plainS3Client(s3.connection);
 * try {
 *   await client.send(new PutObjectCommand({ Bucket: "b", Key: "k", Body: bytes }));
 * } finally {
 *   client.destroy();
 * }
 * ```
 */
export function plainS3Client(connection: S3Connection): S3Client {
  return new S3Client({
    endpoint: connection.endpoint,
    forcePathStyle: connection.forcePathStyle,
    region: connection.region,
    credentials: { ...connection.credentials },
    maxAttempts: 1,
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    logger: { debug() {}, info() {}, warn() {}, error() {} },
  });
}

/**
 * A clock that moves only when told: `advance`, `set`, or `sleep` (which
 * moves it by the time slept and resolves at once).
 */
export class ManualClock implements Clock {
  #now: number;
  readonly #listeners = new Set<(now: number) => void>();
  /** @param start ms since the epoch; default now */
  constructor(start: number = Date.now()) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  /** Sets the time, ms since the epoch. */
  set(ms: number): void {
    this.#move(ms);
  }
  /** Moves the time forward by `ms`. */
  advance(ms: number): void {
    this.#move(this.#now + ms);
  }
  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) return Promise.reject(signal.reason);
    this.#move(this.#now + ms);
    return Promise.resolve();
  }
  /**
   * Calls `listener` with the new time, synchronously, each time the clock
   * is set, advanced or slept (how a double notices that time has passed).
   * Returns the function that removes it.
   */
  onChange(listener: (now: number) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }
  #move(ms: number): void {
    this.#now = ms;
    for (const listener of [...this.#listeners]) listener(ms);
  }
}

interface Restore {
  tier: RestoreTier;
  readyAt: number;
  days: number;
  /** Set when the expiry was moved by a later request; else derived from readyAt + days. */
  expiresAt: number | null;
  /** The last restore event sent (or due while no bucket was configured). */
  announced: "ObjectRestore:Post" | "ObjectRestore:Completed" | "ObjectRestore:Delete";
}

/** Where a bucket's restore events go: an SNS topic or one queue, and the queues it reaches. */
interface NotifyConfig {
  /** `null`: straight to the queue. */
  readonly topicArn: string | null;
  readonly queues: { queue: SqsQueue; raw: boolean }[];
}

interface ObjectState {
  storageClass: StorageClass;
  size: number;
  /** Without quotes. */
  etag: string;
  checksum: string | null;
  restore: Restore | null;
}

interface Part {
  size: number;
  etag: string;
  /** Raw SHA-256 digest, when the part carried a checksum. */
  digest: Uint8Array | null;
}

interface Upload {
  bucket: string;
  key: string;
  storageClass: StorageClass;
  sha256: boolean;
  parts: Map<number, Part>;
}

interface ArmedFault {
  kind: FaultKind;
  op: S3Operation | undefined;
  remaining: number;
  delayMs: number;
}

interface Route {
  op: S3Operation;
  bucket: string;
  key: string;
  query: URLSearchParams;
}

/** An error answer in S3's XML shape. */
class S3Failure extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly extra: Readonly<Record<string, string>> = {},
  ) {
    super(message);
  }
}

/**
 * The double: s3rver plus the proxy. Start it with
 * {@linkcode S3ArchiveDouble.start}, always {@linkcode S3ArchiveDouble.close}
 * it in `finally`.
 */
export class S3ArchiveDouble {
  /** Credentials s3rver knows (its default account). */
  readonly credentials = { accessKeyId: "S3RVER", secretAccessKey: "S3RVER" } as const;
  /** The region to configure clients with (any works; s3rver ignores it). */
  readonly region = "us-east-1";
  readonly #s3rver: S3rver;
  readonly #s3rverPort: number;
  readonly #server: http.Server;
  readonly #agent = new http.Agent({ keepAlive: true });
  readonly #dir: string;
  readonly #spoolDir: string;
  readonly #clock: { now(): number };
  readonly #objects = new Map<string, ObjectState>();
  readonly #uploads = new Map<string, Upload>();
  readonly #counts = new Map<S3Operation, number>();
  /** The tail of each key's queue of writes (check a condition, write, record). */
  readonly #writing = new Map<string, Promise<void>>();
  #hooks: { op: S3Operation; hook: BeforeHook }[] = [];
  #faults: ArmedFault[] = [];
  #rate: {
    rate: number;
    next: () => number;
    kinds: FaultKind[];
    ops: S3Operation[] | null;
    delayMs: number;
  } | null = null;
  readonly #closing = new AbortController();
  /** Restore event configurations, by bucket. */
  readonly #notify = new Map<string, NotifyConfig>();
  /** Restores with events still to come, by object id. */
  readonly #announcing = new Map<string, Restore>();
  readonly #unhook: () => void;
  #spoolSeq = 0;
  #port = 0;

  private constructor(
    s3rver: S3rver,
    s3rverPort: number,
    dir: string,
    clock: { now(): number },
  ) {
    this.#s3rver = s3rver;
    this.#s3rverPort = s3rverPort;
    this.#dir = dir;
    this.#spoolDir = `${dir}/.double-spool`;
    this.#clock = clock;
    this.#unhook = clock instanceof ManualClock
      ? clock.onChange(() => this.#announceRestores())
      : () => {};
    this.#server = http.createServer((req, res) => {
      this.#handle(req, res).catch((e) => {
        if (!res.headersSent && !res.destroyed) {
          sendError(res, new S3Failure(500, "InternalError", `Double failed: ${String(e)}`));
        } else {
          res.destroy();
        }
      });
    });
  }

  /** Starts s3rver (in a fresh temp directory) and the proxy, both on 127.0.0.1, free ports. */
  static async start(options: S3ArchiveDoubleOptions = {}): Promise<S3ArchiveDouble> {
    const dir = await Deno.makeTempDir({ prefix: "coldpack_s3double_" });
    const s3rver = new S3rver({ port: 0, address: "127.0.0.1", silent: true, directory: dir });
    let double: S3ArchiveDouble | null = null;
    try {
      const { port } = await s3rver.run();
      double = new S3ArchiveDouble(s3rver, port, dir, options.clock ?? new ManualClock());
      await Deno.mkdir(double.#spoolDir);
      const server = double.#server;
      await new Promise<void>((resolve, reject) => {
        server.once("error", reject);
        server.listen(0, "127.0.0.1", () => {
          server.off("error", reject);
          resolve();
        });
      });
      double.#port = (server.address() as { port: number }).port;
      return double;
    } catch (e) {
      if (double) await double.close();
      else {
        await s3rver.close().catch(() => {});
        await rm(dir, { recursive: true, force: true });
      }
      throw e;
    }
  }

  /** The proxy's URL, e.g. `http://127.0.0.1:41234`: the S3 endpoint for clients. */
  get endpoint(): string {
    return `http://127.0.0.1:${this.#port}`;
  }

  /** Where clients find this double: endpoint, path style, region, credentials. */
  get connection(): S3Connection {
    return {
      endpoint: this.endpoint,
      forcePathStyle: true,
      region: this.region,
      credentials: this.credentials,
    };
  }

  /** A plain SDK client for this double ({@linkcode plainS3Client}); the caller destroys it. */
  client(): S3Client {
    return plainS3Client(this.connection);
  }

  /**
   * The AWS SDK's environment variables that point a coldpack subprocess at
   * this double: the S3 endpoint, the region and the credentials.
   */
  env(): Record<string, string> {
    return {
      AWS_ENDPOINT_URL_S3: this.endpoint,
      AWS_REGION: this.region,
      AWS_ACCESS_KEY_ID: this.credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: this.credentials.secretAccessKey,
    };
  }

  /** Creates a bucket (straight in s3rver, not counted). */
  async createBucket(name: string): Promise<void> {
    const res = await this.#upstream("PUT", `/${encodeURIComponent(name)}`, {}, null);
    const body = await readAll(res);
    if (res.statusCode !== 200) {
      throw new Error(`Cannot create bucket ${name}: HTTP ${res.statusCode} ${body}`);
    }
  }

  /** The objects of `bucket`, by key, with storage class and restore state. */
  objects(bucket: string): StoredObjectInfo[] {
    this.#announceRestores();
    const now = this.#clock.now();
    const out: StoredObjectInfo[] = [];
    for (const [id, st] of this.#objects) {
      const [b, key] = splitId(id);
      if (b !== bucket) continue;
      const restore = restoreState(st, now);
      out.push({
        key,
        size: st.size,
        etag: st.etag,
        storageClass: st.storageClass,
        checksumSHA256: st.checksum,
        restore,
        restoreTier: st.restore?.tier ?? null,
        restoreReadyAt: st.restore?.readyAt ?? null,
        restoreExpiresAt: st.restore && restore !== "ongoing" ? expiryOf(st.restore) : null,
      });
    }
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }

  /** Multipart uploads started and neither completed nor aborted. */
  uploads(bucket?: string): UploadInfo[] {
    const out: UploadInfo[] = [];
    for (const [uploadId, u] of this.#uploads) {
      if (bucket !== undefined && u.bucket !== bucket) continue;
      out.push({
        bucket: u.bucket,
        key: u.key,
        uploadId,
        storageClass: u.storageClass,
        parts: [...u.parts.keys()].sort((a, b) => a - b),
      });
    }
    return out;
  }

  /**
   * Completes ongoing restores now (all, those of `bucket`, or one key).
   * Returns how many it completed.
   */
  completeRestores(bucket?: string, key?: string): number {
    const now = this.#clock.now();
    let n = 0;
    for (const [id, st] of this.#objects) {
      const [b, k] = splitId(id);
      if ((bucket !== undefined && b !== bucket) || (key !== undefined && k !== key)) continue;
      if (st.restore && restoreState(st, now) === "ongoing") {
        st.restore.readyAt = now;
        n++;
      }
    }
    this.#announceRestores();
    return n;
  }

  /**
   * Configures `s3:ObjectRestore:*` event notifications of `bucket` into an
   * SQS double's `queue`: straight to the queue (the body is S3's event
   * JSON, `{"Records":[...]}`), or with `topicArn` through that SNS topic
   * with the queue subscribed to it (the SNS envelope, `Subject` "Amazon S3
   * Notification", or with `raw` the event JSON itself). Sends the
   * `s3:TestEvent` to the queue at once, then for each restore of an object
   * of the bucket: `ObjectRestore:Post` when a RestoreObject starts it (202;
   * not on a 200 that only moves the expiry), `ObjectRestore:Completed` when
   * it completes on the double's clock and `ObjectRestore:Delete` when the
   * restored copy expires, each once, in the order they happen; an event
   * that happened before this call is not sent.
   *
   * As in S3, a bucket has one destination for these events: further calls
   * for it must name the same topic (each adds a subscribed queue) or the
   * same queue directly, else it is a `RangeError` ("Configurations
   * overlap"). Whether the bucket exists is not checked. A delivery the
   * queue refuses (deleted since, body above its MaximumMessageSize) is
   * dropped, as S3 and SNS drop it.
   *
   * @example
   * ```ts
   * s3.notifyRestores("archives", sqs.createQueue("restores"));
   * s3.notifyRestores("drills", queue, { topicArn: "arn:aws:sns:us-east-1:123456789012:s3" });
   * ```
   */
  notifyRestores(bucket: string, queue: SqsQueue, options: NotifyRestoresOptions = {}): void {
    const topicArn = options.topicArn ?? null;
    const raw = options.raw ?? false;
    if (topicArn === null && raw) {
      throw new RangeError(
        `Cannot notify restores of ${bucket}: raw delivery applies to an SNS topic only`,
      );
    }
    if (topicArn !== null && !SNS_TOPIC_ARN.test(topicArn)) {
      throw new RangeError(
        `Cannot notify restores of ${bucket} to "${topicArn}": ` +
          "expected arn:aws:sns:<region>:<account>:<name>",
      );
    }
    this.#announceRestores();
    const config = this.#notify.get(bucket) ?? { topicArn, queues: [] };
    const overlap = config.topicArn !== topicArn ||
      (topicArn === null && config.queues.some((q) => q.queue.arn !== queue.arn));
    if (overlap) {
      throw new RangeError(
        `Cannot notify restores of ${bucket} to ${topicArn ?? queue.arn}: Configurations ` +
          `overlap (its restore events already go to ${
            config.topicArn ?? config.queues[0]?.queue.arn
          })`,
      );
    }
    const same = config.queues.find((q) => q.queue.arn === queue.arn);
    if (same !== undefined && same.raw !== raw) {
      throw new RangeError(
        `Cannot subscribe ${queue.arn} to ${topicArn}: already subscribed with raw=${same.raw}`,
      );
    }
    if (same === undefined) config.queues.push({ queue, raw });
    this.#notify.set(bucket, config);
    deliver(
      topicArn,
      { queue, raw },
      s3TestEvent(bucket, { timeMs: this.#clock.now() }),
    );
  }

  /** Arms a fault for the next `count` matching requests (after those armed before). */
  inject(fault: FaultSpec): void {
    const count = fault.count ?? 1;
    if (!Number.isSafeInteger(count) || count < 1) {
      throw new RangeError(`Invalid fault count: ${count}`);
    }
    this.#faults.push({
      kind: fault.kind,
      op: fault.op,
      remaining: count,
      delayMs: fault.delayMs ?? 2000,
    });
  }

  /** Gives each request a fault with probability `rate`, from a seeded sequence; `null` stops it. */
  setFaultRate(rate: FaultRate | null): void {
    if (rate === null) {
      this.#rate = null;
      return;
    }
    if (!(rate.rate >= 0 && rate.rate <= 1)) {
      throw new RangeError(`Invalid fault rate: ${rate.rate}`);
    }
    this.#rate = {
      rate: rate.rate,
      next: prng(rate.seed),
      kinds: [...(rate.kinds ?? ["InternalError", "SlowDown", "reset"])],
      ops: rate.ops ? [...rate.ops] : null,
      delayMs: rate.delayMs ?? 2000,
    };
  }

  /** Disarms every fault and the fault rate. */
  clearFaults(): void {
    this.#faults = [];
    this.#rate = null;
  }

  /**
   * Runs `hook` once, when the next request of `op` arrives, before the
   * double handles it (before its body is read and its conditions are
   * checked): the way to stage a race, such as another writer putting the
   * key between a client's check and its write. Hooks run in the order they
   * were armed; a request that gets a fault does not use one up.
   *
   * @example
   * ```ts
   * s3.beforeNext("PutObject", async ({ bucket, key }) => {
   *   await other.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: theirs }));
   * });
   * ```
   */
  beforeNext(op: S3Operation, hook: BeforeHook): void {
    this.#hooks.push({ op, hook });
  }

  /** Requests received of `op` (all operations when omitted), faulted ones included. */
  requestCount(op?: S3Operation): number {
    if (op !== undefined) return this.#counts.get(op) ?? 0;
    let n = 0;
    for (const v of this.#counts.values()) n += v;
    return n;
  }

  /** Request counts per operation. */
  counts(): Partial<Record<S3Operation, number>> {
    return Object.fromEntries(this.#counts);
  }

  /** Stops the proxy and s3rver, drops open connections and removes the data directory. */
  async close(): Promise<void> {
    this.#unhook();
    this.#closing.abort();
    this.#server.closeAllConnections();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    this.#agent.destroy();
    await this.#s3rver.close();
    await rm(this.#dir, { recursive: true, force: true });
  }

  // -------------------------------------------------------------------------

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.#announceRestores();
    const route = classify(req);
    this.#counts.set(route.op, (this.#counts.get(route.op) ?? 0) + 1);
    const fault = this.#takeFault(route.op);
    if (fault?.kind === "reset") {
      // After the request is read: a connection closed before the request was
      // written is retried on a new one by Deno's HTTP client, unseen.
      await drain(req);
      req.socket.destroy();
      return;
    }
    if (fault?.kind === "slow") await this.#wait(fault.delayMs);
    if (this.#closing.signal.aborted) return;
    if (fault?.kind === "InternalError" || fault?.kind === "SlowDown") {
      await drain(req);
      sendError(
        res,
        fault.kind === "InternalError"
          ? new S3Failure(
            500,
            "InternalError",
            "We encountered an internal error. Please try again.",
          )
          : new S3Failure(503, "SlowDown", "Please reduce your request rate."),
      );
      return;
    }
    const armed = this.#hooks.find((h) => h.op === route.op);
    if (armed !== undefined) {
      this.#hooks.splice(this.#hooks.indexOf(armed), 1);
      await armed.hook({ op: route.op, bucket: route.bucket, key: route.key });
      if (this.#closing.signal.aborted) return;
    }
    const ctx: Ctx = { req, res, route, fault: fault?.kind ?? null };
    try {
      await this.#dispatch(ctx);
    } catch (e) {
      if (!(e instanceof S3Failure)) throw e;
      await drain(req);
      sendError(res, e, req.method === "HEAD");
    }
  }

  #dispatch(ctx: Ctx): Promise<void> {
    switch (ctx.route.op) {
      case "PutObject":
        return this.#putObject(ctx);
      case "UploadPart":
        return this.#uploadPart(ctx);
      case "CreateMultipartUpload":
        return this.#createUpload(ctx);
      case "CompleteMultipartUpload":
        return this.#completeUpload(ctx);
      case "AbortMultipartUpload":
        return this.#abortUpload(ctx);
      case "RestoreObject":
        return this.#restore(ctx);
      case "GetObject":
      case "HeadObject":
        return this.#getObject(ctx);
      case "DeleteObject":
        return this.#deleteObject(ctx);
      case "ListObjectsV2":
        return this.#listObjects(ctx);
      default:
        return this.#forwardAsIs(ctx);
    }
  }

  #takeFault(op: S3Operation): ArmedFault | null {
    for (const f of this.#faults) {
      if ((f.op === undefined || f.op === op) && applies(f.kind, op)) {
        f.remaining--;
        if (f.remaining <= 0) this.#faults.splice(this.#faults.indexOf(f), 1);
        return f;
      }
    }
    const r = this.#rate;
    if (r !== null && (r.ops === null || r.ops.includes(op)) && r.next() < r.rate) {
      const kinds = r.kinds.filter((k) => applies(k, op));
      const kind = kinds[Math.floor(r.next() * kinds.length)];
      if (kind !== undefined) return { kind, op, remaining: 0, delayMs: r.delayMs };
    }
    return null;
  }

  #wait(ms: number): Promise<void> {
    const signal = this.#closing.signal;
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  async #putObject(ctx: Ctx): Promise<void> {
    const { req, res, route } = ctx;
    const storageClass = storageClassOf(req);
    const length = declaredLength(req, MAX_PUT_SIZE);
    const expected = expectedChecksum(req);
    checkWriteHeaders(req);
    const spool = await this.#spool(req, length, expected);
    try {
      await this.#exclusive(objectId(route), async () => {
        this.#checkWrite(req, route);
        const up = await this.#upstream(
          "PUT",
          req.url ?? "/",
          forwardHeaders(req, { "content-length": String(length) }),
          spool.path,
        );
        if (!ok(up)) return relay(up, res);
        await readAll(up);
        this.#objects.set(objectId(route), {
          storageClass,
          size: length,
          etag: unquote(String(up.headers["etag"] ?? "")),
          checksum: spool.sha256,
          restore: null,
        });
        const headers = passHeaders(up);
        headers["x-amz-checksum-sha256"] = answeredChecksum(spool.sha256, ctx.fault);
        res.writeHead(up.statusCode ?? 200, headers);
        res.end();
      });
    } finally {
      await rm(spool.path, { force: true });
    }
  }

  /**
   * Runs `fn` (check a write's conditions, write, record) once every write
   * to the object `id` queued before it has finished: S3's "the first
   * write to finish wins".
   */
  async #exclusive<T>(id: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#writing.get(id);
    let release = () => {};
    const turn = new Promise<void>((resolve) => (release = resolve));
    const tail = (before ?? Promise.resolve()).then(() => turn);
    this.#writing.set(id, tail);
    try {
      await before;
      return await fn();
    } finally {
      release();
      if (this.#writing.get(id) === tail) this.#writing.delete(id);
    }
  }

  /**
   * Fails a write whose `If-Match` / `If-None-Match` does not hold for the
   * object the key holds now; call it in the key's turn ({@linkcode #exclusive}).
   */
  #checkWrite(req: http.IncomingMessage, route: Route): void {
    const current = this.#objects.get(objectId(route));
    const ifMatch = header(req, "if-match");
    if (ifMatch !== null) {
      if (current === undefined) {
        throw new S3Failure(404, "NoSuchKey", "The specified key does not exist.", {
          Key: route.key,
        });
      }
      if (!etagMatches(ifMatch, current.etag)) throw preconditionFailed("If-Match");
    }
    if (header(req, "if-none-match") !== null && current !== undefined) {
      throw preconditionFailed("If-None-Match");
    }
  }

  async #uploadPart(ctx: Ctx): Promise<void> {
    const { req, res, route } = ctx;
    const uploadId = route.query.get("uploadId") ?? "";
    const upload = this.#upload(uploadId, route);
    const partNumber = Number(route.query.get("partNumber"));
    if (!Number.isSafeInteger(partNumber) || partNumber < 1 || partNumber > MAX_PARTS) {
      throw new S3Failure(
        400,
        "InvalidArgument",
        `Part number must be an integer between 1 and ${MAX_PARTS}, inclusive`,
        { ArgumentName: "partNumber", ArgumentValue: route.query.get("partNumber") ?? "" },
      );
    }
    const length = declaredLength(req, MAX_PUT_SIZE);
    const expected = expectedChecksum(req);
    if (upload.sha256 && expected === null) {
      throw new S3Failure(
        400,
        "InvalidRequest",
        "The upload was created using a sha256 checksum. The part upload request must include a checksum header (x-amz-checksum-sha256)",
      );
    }
    const spool = await this.#spool(req, length, expected);
    try {
      const up = await this.#upstream(
        "PUT",
        req.url ?? "/",
        forwardHeaders(req, { "content-length": String(length) }),
        spool.path,
      );
      if (!ok(up)) return relay(up, res);
      await readAll(up);
      const etag = String(up.headers["etag"] ?? "").replace(/"/g, "");
      if (!this.#uploads.has(uploadId)) {
        throw new S3Failure(404, "NoSuchUpload", "The specified upload does not exist.");
      }
      upload.parts.set(partNumber, {
        size: length,
        etag,
        digest: expected === null ? null : Buffer.from(spool.sha256, "base64"),
      });
      const headers = passHeaders(up);
      if (expected !== null) {
        headers["x-amz-checksum-sha256"] = answeredChecksum(spool.sha256, ctx.fault);
      }
      res.writeHead(up.statusCode ?? 200, headers);
      res.end();
    } finally {
      await rm(spool.path, { force: true });
    }
  }

  async #createUpload(ctx: Ctx): Promise<void> {
    const { req, res, route } = ctx;
    const storageClass = storageClassOf(req);
    const algorithm = header(req, "x-amz-checksum-algorithm");
    if (algorithm !== null && algorithm.toUpperCase() !== "SHA256") {
      throw new S3Failure(
        400,
        "InvalidRequest",
        `Checksum algorithm ${algorithm} is not supported by the S3 archive double (SHA256 only)`,
      );
    }
    const type = header(req, "x-amz-checksum-type");
    if (type !== null && type.toUpperCase() !== "COMPOSITE") {
      throw new S3Failure(
        400,
        "InvalidRequest",
        `The ${type} checksum type cannot be used with the sha256 checksum algorithm`,
      );
    }
    await drain(req);
    const up = await this.#upstream("POST", req.url ?? "/", forwardHeaders(req, {}), null);
    if (!ok(up)) return relay(up, res);
    const body = await readAll(up);
    const uploadId = /<UploadId>([^<]+)<\/UploadId>/.exec(body)?.[1];
    if (uploadId === undefined) throw new Error(`s3rver answered no UploadId: ${body}`);
    this.#uploads.set(uploadId, {
      bucket: route.bucket,
      key: route.key,
      storageClass,
      sha256: algorithm !== null,
      parts: new Map(),
    });
    const headers = passHeaders(up);
    if (algorithm !== null) {
      headers["x-amz-checksum-algorithm"] = "SHA256";
      headers["x-amz-checksum-type"] = "COMPOSITE";
    }
    sendBody(res, up.statusCode ?? 200, headers, body, ctx.fault);
  }

  async #completeUpload(ctx: Ctx): Promise<void> {
    const { req, res, route } = ctx;
    const uploadId = route.query.get("uploadId") ?? "";
    const upload = this.#upload(uploadId, route);
    checkWriteHeaders(req);
    const xml = await readXmlBody(req);
    const listed = [...xml.matchAll(/<Part>([\s\S]*?)<\/Part>/g)].map((m) => {
      const block = m[1] ?? "";
      return {
        number: Number(tag(block, "PartNumber")),
        etag: (tag(block, "ETag") ?? "").replace(/&quot;|"/g, ""),
        checksum: tag(block, "ChecksumSHA256"),
      };
    });
    if (!/<CompleteMultipartUpload[\s>]/.test(xml) || listed.length === 0) {
      throw new S3Failure(
        400,
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published schema",
      );
    }
    if (listed.length > MAX_PARTS) {
      throw new S3Failure(400, "InvalidArgument", `At most ${MAX_PARTS} parts are allowed`);
    }
    const parts: Part[] = [];
    for (const [i, p] of listed.entries()) {
      const prev = listed[i - 1];
      if (!Number.isSafeInteger(p.number) || (prev !== undefined && p.number <= prev.number)) {
        throw new S3Failure(
          400,
          "InvalidPartOrder",
          "The list of parts was not in ascending order. The parts list must be specified in order by part number.",
        );
      }
      const part = upload.parts.get(p.number);
      if (part === undefined || part.etag !== p.etag) {
        throw new S3Failure(
          400,
          "InvalidPart",
          `One or more of the specified parts could not be found (part ${p.number}). The part may not have been uploaded, or the specified entity tag may not match the part's entity tag.`,
        );
      }
      if (upload.sha256) {
        const stored = part.digest === null ? null : Buffer.from(part.digest).toString("base64");
        if (p.checksum === null || p.checksum !== stored) {
          throw new S3Failure(
            400,
            "InvalidPart",
            `The checksum of part ${p.number} does not match: listed ${
              p.checksum ?? "none"
            }, uploaded ${stored ?? "none"}`,
          );
        }
      }
      parts.push(part);
    }
    for (const [i, part] of parts.entries()) {
      if (i < parts.length - 1 && part.size < MIN_PART_SIZE) {
        throw new S3Failure(
          400,
          "EntityTooSmall",
          "Your proposed upload is smaller than the minimum allowed object size.",
          {
            ProposedSize: String(part.size),
            MinSizeAllowed: String(MIN_PART_SIZE),
            PartNumber: String(listed[i]!.number),
            ETag: part.etag,
          },
        );
      }
    }
    let checksum: string | null = null;
    if (upload.sha256) {
      const all = createHash("sha256");
      for (const part of parts) all.update(part.digest!);
      checksum = `${all.digest("base64")}-${parts.length}`;
    }
    const done = await this.#exclusive(objectId(route), async () => {
      // After a 412 the upload stays open, as in S3: it can be aborted.
      this.#checkWrite(req, route);
      const up = await this.#upstream(
        "POST",
        req.url ?? "/",
        forwardHeaders(req, { "content-length": String(Buffer.byteLength(xml)) }),
        Buffer.from(xml),
      );
      if (!ok(up)) {
        await relay(up, res);
        return null;
      }
      const body = await readAll(up);
      this.#uploads.delete(uploadId);
      this.#objects.set(objectId(route), {
        storageClass: upload.storageClass,
        size: parts.reduce((n, p) => n + p.size, 0),
        etag: unquote(unescapeXml(tag(body, "ETag") ?? "")),
        checksum,
        restore: null,
      });
      return { up, body };
    });
    if (done === null) return;
    const { up, body } = done;
    const etag = tag(body, "ETag") ?? "";
    const answer = `<?xml version="1.0" encoding="UTF-8"?>\n<CompleteMultipartUploadResult ` +
      `xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Location>${
        escapeXml(tag(body, "Location") ?? "")
      }</Location><Bucket>${escapeXml(route.bucket)}</Bucket><Key>${
        escapeXml(route.key)
      }</Key><ETag>${etag}</ETag>` +
      (checksum === null ? "" : `<ChecksumSHA256>${answeredChecksum(checksum, ctx.fault)}` +
        `</ChecksumSHA256><ChecksumType>COMPOSITE</ChecksumType>`) +
      `</CompleteMultipartUploadResult>`;
    const headers = passHeaders(up);
    headers["content-type"] = "application/xml";
    sendBody(res, 200, headers, answer, ctx.fault);
  }

  async #abortUpload(ctx: Ctx): Promise<void> {
    const { req, res, route } = ctx;
    const uploadId = route.query.get("uploadId") ?? "";
    this.#upload(uploadId, route);
    await drain(req);
    this.#uploads.delete(uploadId);
    // s3rver keeps parts in <bucket>/._S3rver_uploads/<uploadId>; it has no abort of its own.
    await rm(`${this.#dir}/${route.bucket}/._S3rver_uploads/${uploadId}`, {
      recursive: true,
      force: true,
    });
    res.writeHead(204, { "x-amz-request-id": requestId() });
    res.end();
  }

  async #restore(ctx: Ctx): Promise<void> {
    const { req, res, route } = ctx;
    const xml = await readXmlBody(req);
    const st = this.#objects.get(objectId(route));
    if (st === undefined) {
      const head = await this.#upstream("HEAD", `/${encodeURIComponent(route.bucket)}`, {}, null);
      await readAll(head);
      if (head.statusCode === 404) {
        throw new S3Failure(404, "NoSuchBucket", "The specified bucket does not exist", {
          BucketName: route.bucket,
        });
      }
      throw new S3Failure(404, "NoSuchKey", "The specified key does not exist.", {
        Key: route.key,
      });
    }
    if (st.storageClass !== "GLACIER" && st.storageClass !== "DEEP_ARCHIVE") {
      throw new S3Failure(
        403,
        "InvalidObjectState",
        "Restore is not allowed for the object's current storage class",
        { StorageClass: st.storageClass },
      );
    }
    if (!/<RestoreRequest[\s>]/.test(xml)) {
      throw new S3Failure(
        400,
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published schema",
      );
    }
    const daysText = tag(xml, "Days");
    if (daysText === null) {
      throw new S3Failure(
        400,
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published schema (Days is required)",
      );
    }
    const days = Number(daysText);
    if (!Number.isSafeInteger(days) || days < 1) {
      throw new S3Failure(400, "InvalidArgument", `Days must be a whole number >= 1: ${daysText}`, {
        ArgumentName: "Days",
        ArgumentValue: daysText,
      });
    }
    const tierText = tag(xml, "Tier") ?? "Standard";
    if (tierText !== "Expedited" && tierText !== "Standard" && tierText !== "Bulk") {
      throw new S3Failure(
        400,
        "MalformedXML",
        `The XML you provided was not well-formed or did not validate against our published schema (Tier ${tierText})`,
      );
    }
    const tier: RestoreTier = tierText;
    if (st.storageClass === "DEEP_ARCHIVE" && tier === "Expedited") {
      throw new S3Failure(
        400,
        "InvalidArgument",
        "Expedited retrieval is not supported for objects in the DEEP_ARCHIVE storage class",
        { ArgumentName: "Tier", ArgumentValue: tier },
      );
    }
    this.#announceRestores(); // an expired copy's Delete comes before the new Post
    const now = this.#clock.now();
    const state = restoreState(st, now);
    let status: number;
    if (state === "ongoing") {
      throw new S3Failure(409, "RestoreAlreadyInProgress", "Object restore is already in progress");
    } else if (state === "restored") {
      st.restore!.expiresAt = midnightAfter(now + days * DAY);
      status = 200;
    } else {
      const delays: Readonly<Record<string, number>> = RESTORE_DELAY_MS[st.storageClass];
      st.restore = {
        tier,
        readyAt: now + delays[tier]!,
        days,
        expiresAt: null,
        announced: "ObjectRestore:Post",
      };
      status = 202;
      this.#announcing.set(objectId(route), st.restore);
      this.#sendRestoreEvent(route.bucket, route.key, st, "ObjectRestore:Post", now);
    }
    res.writeHead(status, { "x-amz-request-id": requestId(), "content-length": "0" });
    res.end();
  }

  /**
   * Sends the restore events that have happened by now and not been sent
   * (Completed, Delete), oldest first; forgets restores with none to come.
   */
  #announceRestores(): void {
    if (this.#announcing.size === 0) return;
    const now = this.#clock.now();
    const due: { id: string; st: ObjectState; event: S3RestoreEventName; at: number }[] = [];
    for (const [id, restore] of this.#announcing) {
      const st = this.#objects.get(id);
      if (st === undefined || st.restore !== restore) {
        this.#announcing.delete(id); // overwritten or deleted: no more events
        continue;
      }
      const state = restoreState(st, now);
      if (state === "ongoing") continue;
      if (restore.announced === "ObjectRestore:Post") {
        restore.announced = "ObjectRestore:Completed";
        due.push({ id, st, event: "ObjectRestore:Completed", at: restore.readyAt });
      }
      if (state === "expired") {
        restore.announced = "ObjectRestore:Delete";
        due.push({ id, st, event: "ObjectRestore:Delete", at: expiryOf(restore) });
        this.#announcing.delete(id);
      }
    }
    due.sort((a, b) => a.at - b.at);
    for (const { id, st, event, at } of due) {
      const [bucket, key] = splitId(id);
      this.#sendRestoreEvent(bucket, key, st, event, at);
    }
  }

  /** Sends one restore event of `bucket`/`key` where the bucket's configuration says. */
  #sendRestoreEvent(
    bucket: string,
    key: string,
    st: ObjectState,
    event: S3RestoreEventName,
    at: number,
  ): void {
    const config = this.#notify.get(bucket);
    if (config === undefined) return;
    const body = s3RestoreEvent(bucket, key, {
      eventName: event,
      region: this.region,
      timeMs: at,
      size: st.size,
      eTag: st.etag,
      ...(st.restore === null ? {} : { expiryMs: expiryOf(st.restore) }),
      ...(st.storageClass === "DEEP_ARCHIVE" ? { storageClass: "DEEP_ARCHIVE" as const } : {}),
    });
    for (const target of config.queues) deliver(config.topicArn, target, body);
  }

  async #getObject(ctx: Ctx): Promise<void> {
    const { req, res, route } = ctx;
    const st = this.#objects.get(objectId(route));
    const now = this.#clock.now();
    const restore = st === undefined ? "none" : restoreState(st, now);
    const archived = st !== undefined &&
      (st.storageClass === "GLACIER" || st.storageClass === "DEEP_ARCHIVE");
    if (ctx.route.op === "GetObject" && archived && restore !== "restored") {
      throw new S3Failure(
        403,
        "InvalidObjectState",
        "The operation is not valid for the object's storage class",
        { StorageClass: st.storageClass },
      );
    }
    await drain(req);
    const up = await this.#upstream(
      req.method ?? "GET",
      req.url ?? "/",
      forwardHeaders(req, {}),
      null,
    );
    if (ok(up)) {
      const verdict = readConditions(req, up);
      if (verdict !== null) {
        up.destroy();
        if (verdict.status === 412) throw preconditionFailed(verdict.condition);
        const same: http.OutgoingHttpHeaders = { "x-amz-request-id": requestId() };
        for (const name of ["etag", "last-modified"]) {
          const v = up.headers[name];
          if (v !== undefined) same[name] = v;
        }
        res.writeHead(304, same);
        res.end();
        return;
      }
    }
    const headers = passHeaders(up);
    if (ok(up) && st !== undefined) {
      delete headers["x-amz-storage-class"];
      if (st.storageClass !== "STANDARD") headers["x-amz-storage-class"] = st.storageClass;
      if (restore === "ongoing") headers["x-amz-restore"] = 'ongoing-request="true"';
      if (restore === "restored") {
        headers["x-amz-restore"] = `ongoing-request="false", expiry-date="${
          new Date(expiryOf(st.restore!)).toUTCString()
        }"`;
      }
      const whole = up.statusCode === 200;
      if (
        whole && st.checksum !== null &&
        header(req, "x-amz-checksum-mode")?.toUpperCase() === "ENABLED"
      ) {
        headers["x-amz-checksum-sha256"] = answeredChecksum(st.checksum, ctx.fault);
        if (st.checksum.includes("-")) headers["x-amz-checksum-type"] = "COMPOSITE";
      }
    }
    res.writeHead(up.statusCode ?? 500, headers);
    await pipeBody(up, res, ctx.fault === "truncate");
  }

  async #deleteObject(ctx: Ctx): Promise<void> {
    const { req, res, route } = ctx;
    if (header(req, "if-match") !== null) {
      throw new S3Failure(
        501,
        "NotImplemented",
        "Conditional DeleteObject (If-Match) is not supported by the S3 archive double",
        { Header: "If-Match" },
      );
    }
    await drain(req);
    await this.#exclusive(objectId(route), async () => {
      const up = await this.#upstream("DELETE", req.url ?? "/", forwardHeaders(req, {}), null);
      if (ok(up)) this.#objects.delete(objectId(route));
      await relay(up, res);
    });
  }

  /**
   * ListObjectsV2 through s3rver's V1 listing: s3rver makes its V2
   * continuation tokens with DES, which Deno's node:crypto lacks. The
   * double's token is the base64url of the last key listed.
   */
  async #listObjects(ctx: Ctx): Promise<void> {
    const { req, res, route } = ctx;
    await drain(req);
    const q = route.query;
    const token = q.get("continuation-token");
    let marker = q.get("start-after") ?? "";
    if (token !== null) {
      const decoded = Buffer.from(token, "base64url").toString("utf8");
      if (token === "" || Buffer.from(decoded).toString("base64url") !== token) {
        throw new S3Failure(
          400,
          "InvalidArgument",
          "The continuation token provided is incorrect",
          {
            ArgumentName: "continuation-token",
          },
        );
      }
      marker = decoded;
    }
    const params = new URLSearchParams();
    for (const name of ["prefix", "delimiter", "max-keys"]) {
      const v = q.get(name);
      if (v !== null) params.set(name, v);
    }
    if (marker !== "") params.set("marker", marker);
    const up = await this.#upstream(
      "GET",
      `/${encodeURIComponent(route.bucket)}?${params}`,
      forwardHeaders(req, {}),
      null,
    );
    if (!ok(up)) return relay(up, res);
    const v1 = await readAll(up);
    const contents = [...v1.matchAll(/<Contents>([\s\S]*?)<\/Contents>/g)].map((m) => {
      const inner = m[1] ?? "";
      const key = unescapeXml(tag(inner, "Key") ?? "");
      const st = this.#objects.get(`${route.bucket}/${key}`);
      const fixed = st === undefined ? inner : inner.replace(
        /<StorageClass>[^<]*<\/StorageClass>/,
        `<StorageClass>${st.storageClass}</StorageClass>`,
      );
      return { key, xml: `<Contents>${fixed}</Contents>` };
    });
    const prefixes = [...v1.matchAll(/<CommonPrefixes>[\s\S]*?<\/CommonPrefixes>/g)].map((m) =>
      m[0]
    );
    const truncated = tag(v1, "IsTruncated") === "true";
    const last = contents.at(-1)?.key;
    const optional = (name: string, value: string | null | undefined) =>
      value === null || value === undefined || value === ""
        ? ""
        : `<${name}>${escapeXml(value)}</${name}>`;
    const body = `<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult ` +
      `xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Name>${escapeXml(route.bucket)}</Name>` +
      `<Prefix>${escapeXml(q.get("prefix") ?? "")}</Prefix>` +
      optional("StartAfter", q.get("start-after")) + optional("ContinuationToken", token) +
      `<KeyCount>${contents.length + prefixes.length}</KeyCount>` +
      `<MaxKeys>${q.get("max-keys") ?? "1000"}</MaxKeys>` +
      optional("Delimiter", q.get("delimiter")) +
      `<IsTruncated>${truncated}</IsTruncated>` +
      optional(
        "NextContinuationToken",
        truncated && last !== undefined ? Buffer.from(last).toString("base64url") : null,
      ) + contents.map((c) => c.xml).join("") + prefixes.join("") + `</ListBucketResult>`;
    const headers = passHeaders(up);
    headers["content-type"] = "application/xml";
    sendBody(res, 200, headers, body, ctx.fault);
  }

  async #forwardAsIs(ctx: Ctx): Promise<void> {
    const { req, res, route } = ctx;
    if (route.op === "Other" && unsupported(req, route) !== null) {
      throw new S3Failure(501, "NotImplemented", unsupported(req, route)!);
    }
    const up = await this.#upstream(
      req.method ?? "GET",
      req.url ?? "/",
      forwardHeaders(req, {}),
      req,
    );
    res.writeHead(up.statusCode ?? 500, passHeaders(up));
    await pipeBody(up, res, ctx.fault === "truncate");
  }

  #upload(uploadId: string, route: Route): Upload {
    const upload = this.#uploads.get(uploadId);
    if (upload === undefined || upload.bucket !== route.bucket || upload.key !== route.key) {
      throw new S3Failure(
        404,
        "NoSuchUpload",
        "The specified upload does not exist. The upload ID may be invalid, or the upload may have been aborted or completed.",
        { UploadId: uploadId },
      );
    }
    return upload;
  }

  /** Writes the request body to a spool file, checking length, SHA-256 and Content-MD5. */
  async #spool(
    req: http.IncomingMessage,
    length: number,
    expected: string | null,
  ): Promise<{ path: string; sha256: string }> {
    const path = `${this.#spoolDir}/${++this.#spoolSeq}.part`;
    const sha = createHash("sha256");
    const md5 = createHash("md5");
    let bytes = 0;
    const out = createWriteStream(path);
    try {
      for await (const chunk of req as AsyncIterable<Buffer>) {
        sha.update(chunk);
        md5.update(chunk);
        bytes += chunk.length;
        if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", () => r()));
      }
      await new Promise<void>((resolve, reject) =>
        out.end((e?: Error | null) => e ? reject(e) : resolve())
      );
    } catch (e) {
      out.destroy();
      await rm(path, { force: true });
      throw e;
    }
    const sha256 = sha.digest("base64");
    const failure = bytes !== length
      ? new S3Failure(
        400,
        "IncompleteBody",
        `You did not provide the number of bytes specified by the Content-Length HTTP header (got ${bytes}, declared ${length})`,
      )
      : expected !== null && expected !== sha256
      ? new S3Failure(
        400,
        "BadDigest",
        "The SHA256 you specified did not match the calculated checksum.",
        { ExpectedChecksum: expected, CalculatedChecksum: sha256 },
      )
      : header(req, "content-md5") !== null && header(req, "content-md5") !== md5.digest("base64")
      ? new S3Failure(
        400,
        "BadDigest",
        "The Content-MD5 you specified did not match what we received.",
      )
      : null;
    if (failure !== null) {
      await rm(path, { force: true });
      throw failure;
    }
    return { path, sha256 };
  }

  /** A request to s3rver; `body` is a file path, bytes, a stream, or nothing. */
  #upstream(
    method: string,
    path: string,
    headers: http.OutgoingHttpHeaders,
    body: string | Uint8Array | http.IncomingMessage | null,
  ): Promise<http.IncomingMessage> {
    return new Promise((resolve, reject) => {
      const up = http.request(
        { host: "127.0.0.1", port: this.#s3rverPort, method, path, headers, agent: this.#agent },
        resolve,
      );
      up.on("error", reject);
      if (body === null) up.end();
      else if (body instanceof Uint8Array) up.end(body);
      else if (typeof body === "string") createReadStream(body).on("error", reject).pipe(up);
      else body.pipe(up);
    });
  }
}

interface Ctx {
  readonly req: http.IncomingMessage;
  readonly res: http.ServerResponse;
  readonly route: Route;
  readonly fault: FaultKind | null;
}

/** Which S3 operation a (path-style) request is. */
function classify(req: http.IncomingMessage): Route {
  const url = new URL(req.url ?? "/", "http://double");
  const q = url.searchParams;
  const [, rawBucket = "", ...rest] = url.pathname.split("/");
  const bucket = decodeURIComponent(rawBucket);
  const key = rest.map(decodeURIComponent).join("/");
  const method = req.method ?? "GET";
  let op: S3Operation = "Other";
  if (bucket !== "" && key === "") {
    if (method === "PUT" && [...q.keys()].length === 0) op = "CreateBucket";
    else if (method === "HEAD") op = "HeadBucket";
    else if (method === "GET" && q.get("list-type") === "2") op = "ListObjectsV2";
  } else if (key !== "") {
    if (method === "PUT" && q.has("uploadId") && q.has("partNumber")) op = "UploadPart";
    else if (method === "PUT" && !hasSubresource(q) && header(req, "x-amz-copy-source") === null) {
      op = "PutObject";
    } else if (method === "POST" && q.has("uploads")) op = "CreateMultipartUpload";
    else if (method === "POST" && q.has("uploadId")) op = "CompleteMultipartUpload";
    else if (method === "POST" && q.has("restore")) op = "RestoreObject";
    else if (method === "DELETE" && q.has("uploadId")) op = "AbortMultipartUpload";
    else if (method === "DELETE" && !hasSubresource(q)) op = "DeleteObject";
    else if (method === "GET" && !hasSubresource(q)) op = "GetObject";
    else if (method === "HEAD") op = "HeadObject";
  }
  return { op, bucket, key, query: q };
}

const SUBRESOURCES = ["acl", "tagging", "uploadId", "uploads", "restore", "select", "torrent"];

function hasSubresource(q: URLSearchParams): boolean {
  return SUBRESOURCES.some((s) => q.has(s));
}

/** Why the double refuses a request it cannot keep its state for, or `null`. */
function unsupported(req: http.IncomingMessage, route: Route): string | null {
  if (header(req, "x-amz-copy-source") !== null) {
    return "CopyObject is not supported by the S3 archive double";
  }
  if (req.method === "POST" && route.query.has("delete")) {
    return "DeleteObjects is not supported by the S3 archive double (use DeleteObject)";
  }
  if (req.method === "POST" && route.key === "" && route.bucket !== "") {
    return "Browser POST uploads are not supported by the S3 archive double";
  }
  if (req.method === "POST" && route.query.has("select")) {
    return "SelectObjectContent is not supported by the S3 archive double";
  }
  if (
    req.method === "GET" && route.key === "" && route.bucket !== "" && route.query.has("uploads")
  ) {
    return "ListMultipartUploads is not supported by the S3 archive double (use uploads())";
  }
  return null;
}

/** Whether a fault kind can apply to an operation. */
function applies(kind: FaultKind, op: S3Operation): boolean {
  switch (kind) {
    case "truncate":
      return op === "GetObject" || op === "ListObjectsV2" || op === "CreateMultipartUpload" ||
        op === "CompleteMultipartUpload";
    case "badChecksum":
      return op === "PutObject" || op === "UploadPart" || op === "CompleteMultipartUpload" ||
        op === "GetObject";
    default:
      return true;
  }
}

/**
 * Puts an S3 event `body` in a queue: straight (`topicArn` null) or as SNS
 * delivers what S3 published to the topic. What the queue refuses (it was
 * deleted, or the body is above its MaximumMessageSize) is dropped, as S3 and
 * SNS drop such deliveries.
 */
function deliver(
  topicArn: string | null,
  target: { readonly queue: SqsQueue; readonly raw: boolean },
  body: string,
): void {
  try {
    if (topicArn === null) target.queue.send(body, { senderId: S3_SENDER_ID });
    else publishToQueue(target.queue, topicArn, body, { raw: target.raw, subject: S3_SUBJECT });
  } catch {
    // The queue refused it (deleted since, or a MaximumMessageSize too small): lost, as in AWS.
  }
}

function restoreState(st: ObjectState, now: number): RestoreState {
  const r = st.restore;
  if (r === null) return "none";
  if (now < r.readyAt) return "ongoing";
  return now < expiryOf(r) ? "restored" : "expired";
}

function expiryOf(r: Restore): number {
  return r.expiresAt ?? midnightAfter(r.readyAt + r.days * DAY);
}

/** S3 rounds a restore's expiry up to the next midnight UTC. */
function midnightAfter(ms: number): number {
  return Math.ceil(ms / DAY) * DAY;
}

function objectId(route: Route): string {
  return `${route.bucket}/${route.key}`;
}

function splitId(id: string): [string, string] {
  const i = id.indexOf("/");
  return [id.slice(0, i), id.slice(i + 1)];
}

function header(req: http.IncomingMessage, name: string): string | null {
  const v = req.headers[name];
  if (v === undefined) return null;
  return Array.isArray(v) ? v.join(",") : v;
}

/** The storage class a write asks for (checked like S3 does); STANDARD when none. */
function storageClassOf(req: http.IncomingMessage): StorageClass {
  const raw = header(req, "x-amz-storage-class");
  if (raw === null) return "STANDARD";
  const found = STORAGE_CLASSES.find((c) => c === raw);
  if (found === undefined) {
    throw new S3Failure(
      400,
      "InvalidStorageClass",
      "The storage class you specified is not valid",
      {
        StorageClassRequested: raw,
      },
    );
  }
  return found;
}

/** The Content-Length of an upload, refusing what S3 refuses (and what the double cannot read). */
function declaredLength(req: http.IncomingMessage, max: number): number {
  const encoding = header(req, "content-encoding") ?? "";
  const sha = header(req, "x-amz-content-sha256") ?? "";
  if (
    /aws-chunked/i.test(encoding) || sha.startsWith("STREAMING-") ||
    header(req, "x-amz-trailer") !== null || header(req, "x-amz-decoded-content-length") !== null
  ) {
    throw new S3Failure(
      400,
      "InvalidRequest",
      "The S3 archive double does not decode aws-chunked bodies or trailing checksums: send x-amz-checksum-sha256 as a header with a plain body",
    );
  }
  for (const name of ["crc32", "crc32c", "crc64nvme", "sha1"]) {
    if (header(req, `x-amz-checksum-${name}`) !== null) {
      throw new S3Failure(
        400,
        "InvalidRequest",
        `The S3 archive double checks only x-amz-checksum-sha256, not x-amz-checksum-${name}`,
      );
    }
  }
  const raw = header(req, "content-length");
  if (raw === null) {
    throw new S3Failure(
      411,
      "MissingContentLength",
      "You must provide the Content-Length HTTP header.",
    );
  }
  const length = Number(raw);
  if (!Number.isSafeInteger(length) || length < 0) {
    throw new S3Failure(400, "InvalidArgument", `Invalid Content-Length: ${raw}`);
  }
  if (length > max) {
    throw new S3Failure(
      400,
      "EntityTooLarge",
      "Your proposed upload exceeds the maximum allowed size",
      {
        ProposedSize: String(length),
        MaxSizeAllowed: String(max),
      },
    );
  }
  return length;
}

/** The `x-amz-checksum-sha256` a request declares, checked for shape; `null` when absent. */
function expectedChecksum(req: http.IncomingMessage): string | null {
  const v = header(req, "x-amz-checksum-sha256");
  if (v === null) return null;
  if (!/^[A-Za-z0-9+/]{43}=$/.test(v)) {
    throw new S3Failure(
      400,
      "InvalidRequest",
      "Value for x-amz-checksum-sha256 header is invalid.",
    );
  }
  return v;
}

/** A checksum as answered: the real one, or (fault) the checksum of something else. */
function answeredChecksum(checksum: string, fault: FaultKind | null): string {
  if (fault !== "badChecksum") return checksum;
  const [, n] = checksum.split("-");
  const wrong = createHash("sha256").update(`not ${checksum}`).digest("base64");
  return n === undefined ? wrong : `${wrong}-${n}`;
}

/** Conditional request headers: the double answers them, s3rver never sees them. */
const CONDITIONAL_HEADERS = [
  "if-match",
  "if-none-match",
  "if-modified-since",
  "if-unmodified-since",
];

/** S3's 412 for a condition that does not hold. */
function preconditionFailed(condition: string): S3Failure {
  return new S3Failure(
    412,
    "PreconditionFailed",
    "At least one of the pre-conditions you specified did not hold",
    { Condition: condition },
  );
}

/** Refuses a write's `If-None-Match` other than `*`, which S3 expects there. */
function checkWriteHeaders(req: http.IncomingMessage): void {
  const ifNoneMatch = header(req, "if-none-match");
  if (ifNoneMatch !== null && ifNoneMatch.trim() !== "*") {
    throw new S3Failure(
      501,
      "NotImplemented",
      `A header you provided implies functionality that is not implemented: If-None-Match on a write takes only "*", not ${
        JSON.stringify(ifNoneMatch)
      }`,
      { Header: "If-None-Match" },
    );
  }
}

/**
 * Whether an `If-Match` / `If-None-Match` value (`*`, or entity tags
 * separated by commas, quotes optional) names `etag` (quotes optional).
 */
function etagMatches(value: string, etag: string): boolean {
  const listed = value.split(",").map((t) => unquote(t.trim())).filter((t) => t !== "");
  return listed.includes("*") || listed.includes(unquote(etag));
}

/** An ETag without its double quotes. */
function unquote(etag: string): string {
  return etag.replace(/"/g, "");
}

/** An HTTP date in whole seconds (ms since the epoch), or `null` when it does not parse. */
function httpDate(value: string | null | undefined): number | null {
  if (value === null || value === undefined) return null;
  const ms = Date.parse(value);
  return Number.isNaN(ms) ? null : Math.floor(ms / 1000) * 1000;
}

/**
 * What the conditions of a GET or HEAD make of a successful answer, in RFC
 * 7232's order (as S3 documents): 412 naming the condition that failed,
 * 304, or `null` to answer as usual.
 */
function readConditions(
  req: http.IncomingMessage,
  up: http.IncomingMessage,
): { status: 412 | 304; condition: string } | null {
  const etag = String(up.headers["etag"] ?? "");
  const modified = httpDate(up.headers["last-modified"]);
  const ifMatch = header(req, "if-match");
  if (ifMatch !== null) {
    if (!etagMatches(ifMatch, etag)) return { status: 412, condition: "If-Match" };
  } else {
    const since = httpDate(header(req, "if-unmodified-since"));
    if (since !== null && modified !== null && modified > since) {
      return { status: 412, condition: "If-Unmodified-Since" };
    }
  }
  const ifNoneMatch = header(req, "if-none-match");
  if (ifNoneMatch !== null) {
    if (etagMatches(ifNoneMatch, etag)) return { status: 304, condition: "If-None-Match" };
  } else {
    const since = httpDate(header(req, "if-modified-since"));
    if (since !== null && modified !== null && modified <= since) {
      return { status: 304, condition: "If-Modified-Since" };
    }
  }
  return null;
}

/** Request headers to pass on: the storage class stays with the double, which answers it. */
function forwardHeaders(
  req: http.IncomingMessage,
  set: Record<string, string>,
): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = { ...req.headers };
  delete out["x-amz-storage-class"];
  for (const name of CONDITIONAL_HEADERS) delete out[name];
  if ("content-length" in set) delete out["transfer-encoding"];
  return { ...out, ...set };
}

/** Response headers to pass back (hop-by-hop ones dropped). */
function passHeaders(up: http.IncomingMessage): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(up.headers)) {
    if (v === undefined || k === "connection" || k === "keep-alive") continue;
    out[k] = v;
  }
  return out;
}

function ok(up: http.IncomingMessage): boolean {
  const s = up.statusCode ?? 500;
  return s >= 200 && s < 300;
}

async function relay(up: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  res.writeHead(up.statusCode ?? 500, passHeaders(up));
  await pipeBody(up, res, false);
}

/** Streams an upstream body to the client; `truncate` stops halfway and drops the connection. */
async function pipeBody(
  up: http.IncomingMessage,
  res: http.ServerResponse,
  truncate: boolean,
): Promise<void> {
  const total = Number(up.headers["content-length"] ?? NaN);
  const cut = truncate ? Math.floor((Number.isFinite(total) ? total : 0) / 2) : Infinity;
  let sent = 0;
  for await (const chunk of up as AsyncIterable<Buffer>) {
    if (res.destroyed) {
      up.destroy();
      return;
    }
    const take = Math.min(chunk.length, cut - sent);
    if (take > 0) {
      const piece = take === chunk.length ? chunk : chunk.subarray(0, take);
      if (!res.write(piece)) await new Promise<void>((r) => res.once("drain", () => r()));
      sent += take;
    }
    if (sent >= cut) break;
  }
  if (truncate) {
    up.destroy();
    await new Promise<void>((resolve) => setTimeout(resolve, 5));
    res.socket?.destroy();
    return;
  }
  res.end();
}

/** Sends a buffered body, truncated (half, then a dropped connection) when told. */
function sendBody(
  res: http.ServerResponse,
  status: number,
  headers: http.OutgoingHttpHeaders,
  body: string,
  fault: FaultKind | null,
): void {
  const bytes = Buffer.from(body);
  res.writeHead(status, { ...headers, "content-length": String(bytes.length) });
  if (fault === "truncate") {
    res.write(bytes.subarray(0, Math.floor(bytes.length / 2)));
    setTimeout(() => res.socket?.destroy(), 5);
    return;
  }
  res.end(bytes);
}

function sendError(res: http.ServerResponse, f: S3Failure, head = false): void {
  const extra = Object.entries(f.extra).map(([k, v]) => `<${k}>${escapeXml(v)}</${k}>`).join("");
  const body = `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${f.code}</Code><Message>${
    escapeXml(f.message)
  }</Message>${extra}<RequestId>${requestId()}</RequestId></Error>`;
  const bytes = Buffer.from(body);
  res.writeHead(f.status, {
    "content-type": "application/xml",
    "content-length": String(head ? 0 : bytes.length),
    "x-amz-request-id": requestId(),
  });
  res.end(head ? undefined : bytes);
}

async function drain(req: http.IncomingMessage): Promise<void> {
  if (req.readableEnded || req.destroyed) return;
  try {
    for await (const _ of req as AsyncIterable<Buffer>) { /* discard */ }
  } catch {
    // the client went away: nothing to drain
  }
}

async function readAll(stream: http.IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  for await (const chunk of stream as AsyncIterable<Buffer>) parts.push(chunk);
  return Buffer.concat(parts).toString("utf8");
}

async function readXmlBody(req: http.IncomingMessage): Promise<string> {
  const parts: Buffer[] = [];
  let n = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > MAX_XML_BODY) {
      throw new S3Failure(400, "MaxMessageLengthExceeded", "Your request was too big.");
    }
    parts.push(chunk);
  }
  return Buffer.concat(parts).toString("utf8");
}

function tag(xml: string, name: string): string | null {
  const m = new RegExp(`<${name}>([\\s\\S]*?)</${name}>`).exec(xml);
  return m?.[1] ?? null;
}

function escapeXml(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(
    /"/g,
    "&quot;",
  );
}

function unescapeXml(s: string): string {
  return s.replace(/&lt;/g, "<").replace(/&gt;/g, ">").replace(/&quot;/g, '"').replace(
    /&apos;/g,
    "'",
  ).replace(/&amp;/g, "&");
}

function requestId(): string {
  return crypto.randomUUID().replace(/-/g, "").slice(0, 16).toUpperCase();
}
