/**
 * The ports: the narrow interfaces through which core logic meets the
 * outside world. Adapters in `adapters/` implement them; `cmd/` picks an
 * implementation by URL scheme. Nothing here does I/O.
 * @module
 */

import type {
  ArchiveId,
  AuditId,
  DrillId,
  FileId,
  JobId,
  RemoteArchiveId,
  RetrievalId,
  SourceId,
} from "./ids.ts";
import type { Stage } from "./errors.ts";

// ---------------------------------------------------------------------------
// Source: where the files to protect live (directory, MogileFS, S3 bucket).

/** One version of one file as the source lists it. */
export interface SourceEntry {
  /** The file's key at the source: a `/`-separated relative path, a MogileFS key, an S3 key. */
  readonly key: string;
  /** What makes this version distinct (directory: size+mtime, MogileFS: fid, S3: ETag/version). */
  readonly version: string;
  /** Length in bytes as listed. */
  readonly length: number;
  /** When this version appeared at the source, ms since the epoch (latency metrics). */
  readonly mtimeMs: number;
  /** MogileFS domain, if the source has domains. */
  readonly domain?: string;
  /** MogileFS class, if any. */
  readonly storageClass?: string;
  /** The source's own numeric id (MogileFS fid), if any. */
  readonly sourceFid?: number;
}

/** Something the source holds but coldpack will not back up, and why. */
export interface SkippedEntry {
  readonly key: string;
  /** E.g. `socket`, `fifo`, `device`, `symlink outside the root`. */
  readonly reason: string;
}

/** One page of a listing. */
export interface ListPage {
  readonly entries: readonly SourceEntry[];
  readonly skipped: readonly SkippedEntry[];
  /**
   * Where an incremental listing may continue after this page (MogileFS:
   * the highest fid seen). Absent for sources that always list everything.
   */
  readonly cursor?: string;
  /**
   * Set by a source whose files have numeric ids (MogileFS fids) when this
   * page lists _every_ file the source holds whose `sourceFid` lies in
   * `(from, to]` (both whole numbers, `from < to`). A file the catalog has in
   * that span but the page lacks is gone from the source (deleted, or
   * replaced by a new fid): that is how the daemon notices deletions.
   * Pages that cannot promise this (a failed or partial answer) omit it.
   */
  readonly span?: { readonly from: number; readonly to: number };
}

/** Options for {@linkcode Source.list}. */
export interface ListOptions {
  /** Continue after this cursor; `null` (default) lists everything (reconciliation). */
  readonly after?: string | null;
  readonly signal?: AbortSignal;
}

/**
 * A store of files to protect. A listing may repeat files already known:
 * the caller de-duplicates by (key, version).
 */
export interface Source {
  /** Stable identity recorded with every file, e.g. `dir:/srv/uploads`. */
  readonly id: SourceId;
  /** Lists files, in pages. */
  list(options?: ListOptions): AsyncIterable<ListPage>;
  /**
   * Opens one version for reading. Rejects with `VanishedError` when the
   * file is gone and `ChangedError` when it is no longer that version.
   */
  open(entry: SourceEntry, options?: { signal?: AbortSignal }): Promise<ReadableStream<Uint8Array>>;
  /**
   * Set when the source can list incrementally (`list({ after: cursor })`
   * returns what appeared after the cursor, cheaply): the daemon then lists
   * after its saved cursor every `pollMs` (MogileFS: 1,000) and does a full
   * listing only every rescan interval. Absent: every listing is a full one.
   */
  readonly pollMs?: number;
  /**
   * The full-listing interval this source suggests when the operator sets
   * none, ms (a bucket listing costs money; a directory walk does not).
   */
  readonly rescanMs?: number;
  /**
   * Resolves each time something may have changed (a watcher event), so that
   * a daemon lists again at once instead of waiting for its next rescan.
   * Absent when the source cannot be watched.
   */
  watch?(options: { signal: AbortSignal }): AsyncIterable<void>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Destination: where a restored file is written (MogileFS, a local directory,
// an S3 bucket).

/** One file to write to a destination. */
export interface DestinationWrite {
  /**
   * Where, relative to the destination: a `/`-separated relative path under
   * the local root (no empty, `.` or `..` segment, no leading `/`), a
   * MogileFS key, or an S3 key below the destination's prefix.
   */
  readonly key: string;
  /** MogileFS only: the domain, when not the destination's own. */
  readonly domain?: string;
  /** MogileFS only: the class; absent or `""` means the domain's default. */
  readonly storageClass?: string;
  /** Exact number of bytes `body` yields. */
  readonly length: number;
  /**
   * Lower-case hex md5 the bytes must have. The destination computes it
   * while writing and makes the file visible only if it matches: otherwise
   * nothing is left behind and it rejects with a `PortError` coded
   * `ChecksumMismatch` (or `LengthMismatch` when the count differs), not
   * retryable at the destination (the bytes were wrong, not the write).
   */
  readonly md5: string;
  /**
   * Replace a file already at `key` (default false: reject with a
   * `PortError` coded `DestinationExists`, not retryable). MogileFS and S3
   * have no conditional write, so there the check is made just before.
   */
  readonly overwrite?: boolean;
  /** A fresh stream of the bytes each time it is called. */
  readonly body: () => ReadableStream<Uint8Array>;
  readonly signal?: AbortSignal;
}

/**
 * Where restored files go. A write is all or nothing: a reader never sees
 * a partial file at `key` (local: temp file + rename; S3: one PUT or a
 * completed multipart upload; MogileFS: `create_close` after the PUT).
 * Errors are `PortError`s coded like the service's (retryable when trying
 * again may help), `TypeError` for a key the destination cannot hold.
 */
export interface Destination {
  /** Where files go, without secrets, e.g. `mogilefs://t1:7001/ugc`, `/srv/restore`. */
  readonly location: string;
  /** Writes one file; resolves to where it now is (a path or URL, for logs). */
  write(file: DestinationWrite): Promise<{ readonly location: string }>;
  /**
   * Reads a file back (the drill compares it), or `null` when there is none
   * at `key`.
   */
  read(
    key: string,
    options?: { readonly domain?: string; readonly signal?: AbortSignal },
  ): Promise<ReadableStream<Uint8Array> | null>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Fetching: a source file copied into a local holding place (memory or disk).

/** Bytes held locally until their bundle is uploaded. */
export interface Body {
  readonly length: number;
  /**
   * The bytes, when the body is held in memory (so they can be copied without
   * a stream); `null` when it is spooled to disk. Invalid after `release()`.
   */
  readonly bytes: Uint8Array | null;
  /** A fresh stream of the bytes; may be called more than once (upload retries). */
  stream(): ReadableStream<Uint8Array>;
  /**
   * Reads bytes at `position` into `into`; resolves to the count (0 at the
   * end). Optional: lets a reader reuse one buffer instead of a stream's
   * fresh chunks.
   */
  read?(into: Uint8Array, position: number): Promise<number>;
  /** Frees the memory or spool file. Idempotent. */
  release(): Promise<void>;
}

/** A file read from the source, with the digest computed while it streamed. */
export interface Fetched {
  /** Lower-case hex md5 of the bytes (the audit's digest). */
  readonly md5: string;
  readonly length: number;
  readonly body: Body;
}

/** Reads source files into bodies. Rejects like {@linkcode Source.open}. */
export interface Fetcher {
  fetch(entry: SourceEntry, options?: { signal?: AbortSignal }): Promise<Fetched>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Packing: a bundle of catalog files turned into one finished archive.

/** One file of a bundle, with its tar entry name. */
export interface PackFile {
  readonly row: FileRow;
  /** Its tar entry name (already made safe). */
  readonly name: string;
}

/** A bundle to pack. */
export interface PackRequest {
  readonly archiveId: ArchiveId;
  readonly source: SourceId;
  /** In archive order. */
  readonly files: readonly PackFile[];
  /** The manifest's creation time (ms). */
  readonly nowMs: number;
}

/** What became of a file that is not in the packed archive. */
export type PackOutcome =
  | {
    readonly fileId: FileId;
    /** Gone at the source (`VanishedError`) or another version now (`ChangedError`). */
    readonly kind: "vanished" | "changed";
    readonly message: string;
  }
  | {
    readonly fileId: FileId;
    readonly kind: "failed";
    readonly code: string;
    readonly message: string;
    readonly retryable: boolean;
  };

/** A finished archive whose bytes can be read as often as an upload needs. */
export interface PackedArchive {
  readonly id: ArchiveId;
  /** Total bytes (0 when no file could be packed). */
  readonly size: number;
  /** SHA-256 tree hash, lower-case hex. */
  readonly treeHash: string;
  /** Plain SHA-256 of the bytes, lower-case hex ("" when empty). */
  readonly sha256: string;
  readonly description: string;
  /** Sum of the member files' lengths. */
  readonly dataBytes: number;
  /** The files in the archive, with md5 and offsets; empty when none could be read. */
  readonly members: readonly ArchiveMember[];
  /** The files left out, and why. */
  readonly outcomes: readonly PackOutcome[];
  /** A fresh stream of the archive's bytes. */
  body(): ReadableStream<Uint8Array>;
  /** Frees buffers and spool files. Idempotent. */
  release(): Promise<void>;
}

/**
 * Reads a bundle's files and packs them into one archive (tar, manifest,
 * tree hash). A file that cannot be read is left out with its outcome;
 * only a failure of the packer itself rejects.
 */
export interface Packer {
  pack(request: PackRequest, options?: { signal?: AbortSignal }): Promise<PackedArchive>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------
// ColdStore: where archives go (local vault directory, Glacier vault, S3 class).

/** An archive to put. */
export interface PutArchive {
  readonly archiveId: ArchiveId;
  /** Exact number of bytes `body` yields. */
  readonly size: number;
  /** Our SHA-256 tree hash of the bytes, lower-case hex (the store may send it along). */
  readonly treeHash: string;
  /** Archive description: ASCII 32..126, at most 1,024 characters. */
  readonly description: string;
  /**
   * Plain SHA-256 of the bytes, lower-case hex, when the packer computed it
   * along with the tree hash. A store that must know it before sending
   * (SigV4's payload hash, S3's checksum header) then reads the body once
   * instead of twice; the service checks it against what it receives.
   */
  readonly sha256?: string;
  /**
   * A fresh stream of the bytes each time it is called, so that a retry (of
   * the whole put, or of one multipart part) can read them again.
   */
  readonly body: () => ReadableStream<Uint8Array>;
}

/** What the store says it now holds. */
export interface PutResult {
  readonly remoteId: RemoteArchiveId;
  /** Byte count the store received. */
  readonly size: number;
  /** The store's own SHA-256 tree hash of what it received, lower-case hex. */
  readonly treeHash: string;
}

/** An inclusive byte range, like Glacier's `a-b`. */
export interface ByteRange {
  readonly start: number;
  readonly end: number;
}

/** Retrieval speed tiers. */
export type Tier = "Expedited" | "Standard" | "Bulk";

/** Every tier, fastest first. */
export const TIERS: readonly Tier[] = ["Expedited", "Standard", "Bulk"];

/** A retrieval's state as the store reports it. */
export type RetrievalState = "in-progress" | "ready" | "failed" | "expired";

/** Every retrieval state. */
export const RETRIEVAL_STATES: readonly RetrievalState[] = [
  "in-progress",
  "ready",
  "failed",
  "expired",
];

/** A retrieval job at the store. */
export interface RetrievalJob {
  readonly jobId: JobId;
  readonly remoteId: RemoteArchiveId;
  /** The retrieved range; `null` for the whole archive. */
  readonly range: ByteRange | null;
  readonly state: RetrievalState;
  /** Tree hash of the retrieved bytes when the store gives one. */
  readonly treeHash: string | null;
  /** Our description (coldpack puts its retrieval id here). */
  readonly description: string;
  readonly startedAt: number;
  readonly completedAt: number | null;
  /** When the retrieved bytes stop being readable; `null` if unknown. */
  readonly expiresAt: number | null;
  /** Why it failed, when `state` is `failed`. */
  readonly failure?: string;
}

/** An archive as the store lists it. */
export interface StoredArchive {
  readonly remoteId: RemoteArchiveId;
  readonly size: number;
  readonly treeHash: string | null;
  readonly description: string;
  readonly createdAt: number;
}

/** What a store can do, so that callers choose the cheap path. */
export interface StoreCapabilities {
  /** Retrieval of a byte range (Glacier vaults, local vault); else whole-archive restore. */
  readonly rangedRetrieval: boolean;
  /** Retrieval ranges must start at a multiple of this and end at one or at the archive end. */
  readonly rangeAlignment: number;
}

/** A cold store of archives. */
export interface ColdStore {
  /** Where archives go, without secrets, e.g. `file:///srv/vault`; recorded per archive. */
  readonly location: string;
  readonly capabilities: StoreCapabilities;
  /**
   * Stores an archive. Only when this resolves is the archive safe. A store
   * that received other bytes than `treeHash` describes either rejects with
   * `ArchiveMismatchError` or answers with the tree hash it computed: the
   * caller compares and never trusts a mismatch.
   */
  put(archive: PutArchive, options?: { signal?: AbortSignal }): Promise<PutResult>;
  /** Starts retrieving an archive or a byte range of it. */
  startRetrieval(
    remoteId: RemoteArchiveId,
    options: {
      readonly range?: ByteRange;
      readonly tier?: Tier;
      readonly description: string;
      readonly signal?: AbortSignal;
    },
  ): Promise<RetrievalJob>;
  /**
   * The job's current state. A job whose retrieved bytes are gone is
   * `expired`; a store that can tell it never issued a job rejects with a
   * `PortError` coded `ResourceNotFoundException` (Glacier cannot tell the
   * two apart and reports `expired`).
   */
  retrieval(jobId: JobId, options?: { signal?: AbortSignal }): Promise<RetrievalJob>;
  /**
   * Reads retrieved bytes; `range` is relative to the retrieved range and
   * must lie within it (`RangeError`). Before the job is ready, after it
   * expired or failed: a `PortError` coded `RetrievalNotReady`,
   * `RetrievalExpired` or `RetrievalFailed` (not retryable).
   */
  readRetrieval(
    jobId: JobId,
    options?: { readonly range?: ByteRange; readonly signal?: AbortSignal },
  ): Promise<ReadableStream<Uint8Array>>;
  /** Lists the archives the store holds (inventory). */
  list(options?: { signal?: AbortSignal }): AsyncIterable<StoredArchive>;
  /** Deletes an archive. Deleting one that is gone is not an error. */
  delete(remoteId: RemoteArchiveId, options?: { signal?: AbortSignal }): Promise<void>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Catalog: which file lives where.

/** Life of one file version in the catalog. */
export type FileState =
  /** Discovered, not yet in a committed archive (also: waiting for a retry). */
  | "pending"
  /** In a committed archive; `archiveId` and offsets are set. */
  | "archived"
  /** Gone at the source before it could be fetched. */
  | "vanished"
  /** Failed for good (not retryable, or out of attempts). */
  | "failed"
  /** A newer version of the same key appeared before this one was archived. */
  | "superseded";

/** One file version in the catalog. */
export interface FileRow {
  readonly id: FileId;
  readonly source: SourceId;
  readonly key: string;
  readonly version: string;
  readonly domain: string | null;
  readonly storageClass: string | null;
  readonly sourceFid: number | null;
  readonly length: number;
  readonly mtimeMs: number;
  readonly discoveredAt: number;
  readonly state: FileState;
  readonly md5: string | null;
  readonly archiveId: ArchiveId | null;
  /** Offset of the file's first tar header block (pax header if it has one). */
  readonly headerOffset: number | null;
  /** Offset of the file's first data byte in the tar. */
  readonly dataOffset: number | null;
  readonly archivedAt: number | null;
  readonly attempts: number;
  /** Not to be tried again before this time (ms); `null` when due now. */
  readonly nextAttemptAt: number | null;
  /** Why it vanished, failed or was last retried. */
  readonly note: string | null;
  /**
   * When the daemon noticed this version was gone from the source (deleted,
   * or replaced by a newer version); `null` while it is there or unknown.
   */
  readonly goneAt: number | null;
}

/** One committed archive. */
export interface ArchiveRow {
  readonly id: ArchiveId;
  /** {@linkcode ColdStore.location} of the store that holds it. */
  readonly store: string;
  readonly remoteId: RemoteArchiveId;
  readonly size: number;
  readonly treeHash: string;
  readonly fileCount: number;
  /** Sum of the member files' lengths. */
  readonly dataBytes: number;
  readonly description: string;
  /** When the bundle was closed. */
  readonly createdAt: number;
  /** When the catalog committed it. */
  readonly committedAt: number;
}

/** A file's place in an archive, recorded at commit. */
export interface ArchiveMember {
  readonly fileId: FileId;
  readonly md5: string;
  readonly length: number;
  readonly headerOffset: number;
  readonly dataOffset: number;
}

/** A failure to record. */
export interface NewFailure {
  readonly stage: Stage;
  readonly code: string;
  readonly message: string;
  readonly source: SourceId;
  /** The file concerned, if one. */
  readonly fileId?: FileId;
  readonly key?: string;
  readonly archiveId?: ArchiveId;
  readonly nowMs: number;
  /**
   * For a file: when to try it again, or `null` to mark it `failed` for good.
   * Ignored when no `fileId` is given.
   */
  readonly retryAt: number | null;
  /**
   * A fact to keep rather than a problem to fix (a socket or fifo skipped by
   * design): recorded as already resolved, so it does not count as open.
   * Only for failures that concern no file. Default false.
   */
  readonly resolved?: boolean;
}

/** A recorded failure (one row per file, stage and code; repeats bump `attempts`). */
export interface FailureRow {
  readonly id: number;
  readonly stage: Stage;
  readonly code: string;
  readonly message: string;
  readonly source: SourceId;
  readonly fileId: FileId | null;
  readonly key: string | null;
  readonly archiveId: ArchiveId | null;
  readonly attempts: number;
  readonly firstAt: number;
  readonly lastAt: number;
  /** Set when the file later got archived, vanished or superseded. */
  readonly resolvedAt: number | null;
}

/** The latest known version of a key. */
export interface KnownVersion {
  readonly version: string;
  readonly state: FileState;
}

/** Counts for `status`. */
export interface CatalogStatus {
  readonly files: Readonly<Record<FileState, number>>;
  readonly archives: number;
  /** Sum of archive sizes. */
  readonly storedBytes: number;
  /** Sum of archived file lengths. */
  readonly archivedBytes: number;
  /** Sum of pending file lengths. */
  readonly pendingBytes: number;
  /** Discovery time of the oldest pending file, or `null`. */
  readonly oldestPendingAt: number | null;
  /** Failures not yet resolved. */
  readonly openFailures: number;
}

/** Why a retrieval was started. */
export type RetrievalPurpose = "restore" | "audit";

/**
 * A retrieval coldpack started at a store, as the catalog remembers it, so
 * that restores (also across invocations and daemons) reuse a live one
 * instead of paying for another.
 */
export interface RetrievalRow {
  /** coldpack's own id (also sent as the job's description). */
  readonly id: RetrievalId;
  readonly archiveId: ArchiveId;
  /** {@linkcode ColdStore.location} of the store it was started at. */
  readonly store: string;
  /** The store's job id. */
  readonly jobId: JobId;
  /** The retrieved range of the archive; `null` for the whole archive. */
  readonly range: ByteRange | null;
  readonly tier: Tier;
  readonly purpose: RetrievalPurpose;
  readonly state: RetrievalState;
  readonly startedAt: number;
  /** When it became readable; `null` before. */
  readonly readyAt: number | null;
  /** When its bytes stop being readable; `null` when unknown or not ready. */
  readonly expiresAt: number | null;
  /** Why it failed, when `state` is `failed`. */
  readonly failure: string | null;
}

/** Where a restore stands. */
export type RestoreState =
  /** Recorded; waiting for its retrieval to be started or to become ready. */
  | "pending"
  /** Written to its destination, md5 checked. */
  | "done"
  /** Given up, with the reason in `note`. */
  | "failed";

/** One file to bring back to one destination. */
export interface RestoreRow {
  readonly id: number;
  /** The caller's unique key for this request (e.g. `<batch id>:<line>`). */
  readonly key: string;
  readonly fileId: FileId;
  /** Where it goes, as the operator wrote it (e.g. `mogilefs`, `/tmp/x.png`, `s3://b/k`). */
  readonly dest: string;
  readonly state: RestoreState;
  /** The retrieval that serves it, once one was chosen. */
  readonly retrievalId: RetrievalId | null;
  readonly requestedAt: number;
  /** When it was done or failed. */
  readonly finishedAt: number | null;
  /** Where it was written, or why it failed. */
  readonly note: string | null;
  /** Who asked (e.g. `restore@host`, `drill`), for `status`. */
  readonly requestedBy: string;
  /** Replace whatever is at the destination (`--force`); false: a different file there fails it. */
  readonly overwrite: boolean;
}

/** Where an audit of one archive stands. */
export type AuditState =
  /** The retrieval was started and the manifest handed to the verifier. */
  | "sent"
  /** The verifier found the archive as the manifest says. */
  | "verified"
  /** The verifier reported findings (`findings` > 0). */
  | "failed"
  /** Not audited this time (the retrieval budget), with the reason in `note`. */
  | "skipped"
  /** The audit could not be carried out (source, store or verifier error), see `note`. */
  | "error";

/** Every audit state. */
export const AUDIT_STATES: readonly AuditState[] = [
  "sent",
  "verified",
  "failed",
  "skipped",
  "error",
];

/** One audit of one archive (`coldpack-audit sample`). */
export interface AuditRow {
  /** `a<compact ISO time>-<12 hex>` (`newAuditId`); sorting ids sorts audits by creation time. */
  readonly id: AuditId;
  readonly archiveId: ArchiveId;
  /** The audit's retrieval (purpose `audit`); `null` when none was started (skipped). */
  readonly retrievalId: RetrievalId | null;
  /** SHA-256 (lower hex) of the manifest bytes sent to the verifier; `null` when none was sent. */
  readonly manifestDigest: string | null;
  readonly state: AuditState;
  /** How many findings the verifier reported; `null` until known. */
  readonly findings: number | null;
  readonly createdAt: number;
  /** When the state last changed after creation; `null` before. */
  readonly updatedAt: number | null;
  readonly note: string | null;
}

/** Where one drill file stands. */
export type DrillState =
  /** Its restore was requested; not yet checked. */
  | "pending"
  /** Restored byte-identical in time. */
  | "ok"
  /** Checked and found wrong or late, alert not yet sent. */
  | "failed"
  /** Wrong or late, and the alert mail was sent. */
  | "alerted";

/** Every drill state. */
export const DRILL_STATES: readonly DrillState[] = ["pending", "ok", "failed", "alerted"];

/** One file of a restore drill (`coldpack-audit drill`). */
export interface DrillRow {
  /** `d<compact ISO time>-<12 hex>` (`newDrillId`). */
  readonly id: DrillId;
  /** The restore ({@linkcode RestoreRow.id}) that brings the file back. */
  readonly restoreId: number;
  readonly fileId: FileId;
  /** The test destination, as in the restore. */
  readonly dest: string;
  readonly startedAt: number;
  /** When a later run last checked it; `null` before. */
  readonly checkedAt: number | null;
  readonly state: DrillState;
  readonly note: string | null;
}

/** The span of archive sequence numbers, for sampling archives without a scan. */
export interface ArchiveSeqRange {
  /** Smallest `seq` of a committed archive. */
  readonly min: number;
  /** Largest `seq` of a committed archive. */
  readonly max: number;
  /** Committed archives (at most `max - min + 1`: sequence numbers may have gaps). */
  readonly count: number;
  /** Sum of their sizes. */
  readonly bytes: number;
}

/** One message taken from a {@linkcode NotificationQueue}. */
export interface QueueMessage {
  /** The queue's id for the message (SQS `MessageId`). */
  readonly id: string;
  /** What `delete` needs (SQS `ReceiptHandle`); new with every receive. */
  readonly receipt: string;
  readonly body: string;
  /** Receives so far, this one included (1 = first delivery). */
  readonly receiveCount: number;
}

/**
 * The queue a store's completion notifications arrive on (SQS, fed by SNS or
 * S3 event notifications). Delivery is at least once: a message not deleted
 * before its visibility timeout ends comes again, and duplicates happen.
 * Errors are `PortError`s with the service's code (retryable for throttling,
 * timeouts, 5xx and resets).
 */
export interface NotificationQueue {
  /** Where it is, for logs and errors (the queue URL). */
  readonly location: string;
  /**
   * Waits up to `waitSeconds` (0..20, long polling) for up to `max` (1..10)
   * messages, each then hidden from other receivers for `visibilitySeconds`.
   * Empty when none came. An abort ends the wait with the signal's reason.
   */
  receive(options: {
    readonly waitSeconds: number;
    readonly max: number;
    readonly visibilitySeconds: number;
    readonly signal?: AbortSignal;
  }): Promise<QueueMessage[]>;
  /** Deletes a received message; one already deleted is not an error. */
  delete(message: QueueMessage, options?: { signal?: AbortSignal }): Promise<void>;
  close(): Promise<void>;
}

/** The catalog. All writes are atomic per call. */
export interface Catalog {
  /** Brings the schema to the newest version; returns it. Idempotent. */
  migrate(): Promise<number>;
  /** The latest version recorded for each key of `keys` that the catalog knows. */
  latestVersions(source: SourceId, keys: readonly string[]): Promise<Map<string, KnownVersion>>;
  /**
   * Records newly discovered versions as `pending` in one transaction.
   * A (source, key, version) already present is left alone. Older versions of
   * the same key in the same domain (both `null` counts as the same) still
   * `pending` become `superseded`. Returns the new rows.
   */
  addDiscovered(
    source: SourceId,
    entries: readonly SourceEntry[],
    nowMs: number,
  ): Promise<FileRow[]>;
  /**
   * Pending files that are due (`nextAttemptAt` null or <= nowMs), by id,
   * after `afterId` (exclusive), at most `limit`.
   */
  pendingFiles(
    source: SourceId,
    options: { readonly limit: number; readonly afterId?: FileId; readonly nowMs: number },
  ): Promise<FileRow[]>;
  /** Marks pending files `vanished` with a reason. */
  markVanished(ids: readonly FileId[], reason: string, nowMs: number): Promise<void>;
  /** Records a failure; for a file, schedules its retry or fails it for good. */
  recordFailure(failure: NewFailure): Promise<void>;
  /**
   * In one transaction: inserts the archive and marks every member `archived`
   * with its md5 and offsets. Members that are no longer `pending` or
   * `superseded` (archived elsewhere meanwhile) are left as they are and
   * returned. Only ever called after the store confirmed the archive.
   * Idempotent: committing again an archive already committed with the same
   * remote id and tree hash (a retry after the answer to the first attempt
   * was lost) changes nothing and returns the members that are not in it;
   * the same id with another remote id or tree hash is a `PortError` coded
   * `ARCHIVE_EXISTS`.
   */
  commitArchive(archive: ArchiveRow, members: readonly ArchiveMember[]): Promise<{
    readonly skipped: FileId[];
  }>;
  /**
   * Pending files that are due, claimed for `owner` in one atomic step, by
   * id, after `afterId` (exclusive), at most `limit`. A file claimed by
   * another owner is skipped while that owner's lease `worker:<owner>` (see
   * {@linkcode Catalog.acquireLease}) is live; a file whose claimer's lease
   * expired, or that `owner` already holds, is (re)claimed. A claim ends when
   * the file leaves `pending` (commit, vanish, failure) or a failure
   * schedules its retry. Several daemons sharing one catalog claim through
   * this so that no file is worked on by two of them at once.
   */
  claimFiles(
    source: SourceId,
    options: {
      readonly owner: string;
      readonly limit: number;
      readonly afterId?: FileId;
      readonly nowMs: number;
    },
  ): Promise<FileRow[]>;
  /**
   * Takes the named lease for `owner`, or renews it, until `nowMs + ttlMs`.
   * Resolves false, changing nothing, while another owner holds it unexpired.
   */
  acquireLease(name: string, owner: string, ttlMs: number, nowMs: number): Promise<boolean>;
  /** Gives the lease up if `owner` holds it; otherwise does nothing. */
  releaseLease(name: string, owner: string): Promise<void>;
  /**
   * Records what a listing page with a `span` (see {@linkcode ListPage.span})
   * shows: of this source's files with `sourceFid` in `(from, to]` that are
   * not yet marked gone, those whose fid is not in `present` get `goneAt =
   * nowMs`; of those, the `pending` ones become `vanished` (nothing left to
   * back up). One transaction. Returns how many were marked, and how many
   * of them vanished.
   */
  markGone(
    source: SourceId,
    span: { readonly from: number; readonly to: number },
    present: readonly number[],
    nowMs: number,
  ): Promise<{ readonly gone: number; readonly vanished: number }>;
  getCursor(name: string): Promise<string | null>;
  setCursor(name: string, value: string): Promise<void>;
  file(id: FileId): Promise<FileRow | null>;
  /** The newest versions of `key`, newest first. */
  fileVersions(source: SourceId, key: string): Promise<FileRow[]>;
  archive(id: ArchiveId): Promise<ArchiveRow | null>;
  /** Files whose `archiveId` is `id`, by data offset. */
  archiveFiles(id: ArchiveId): Promise<FileRow[]>;
  /** Archives by id, after `afterId`, at most `limit`. */
  archives(
    options: { readonly limit: number; readonly afterId?: ArchiveId },
  ): Promise<ArchiveRow[]>;
  status(): Promise<CatalogStatus>;
  /** Records a retrieval just started at the store. A second call with the same id is a no-op. */
  addRetrieval(row: RetrievalRow): Promise<void>;
  /**
   * Updates what the store says of a retrieval: state, and when set,
   * `readyAt`, `expiresAt`, `failure`. Rejects with a `RangeError` for an
   * unknown id.
   */
  updateRetrieval(
    id: RetrievalId,
    update: {
      readonly state: RetrievalState;
      readonly readyAt?: number | null;
      readonly expiresAt?: number | null;
      readonly failure?: string | null;
    },
  ): Promise<void>;
  retrieval(id: RetrievalId): Promise<RetrievalRow | null>;
  /** The retrieval a store job belongs to (a completion message names the job). */
  retrievalByJob(store: string, jobId: JobId): Promise<RetrievalRow | null>;
  /**
   * Retrievals of these archives that are `in-progress` or `ready` and not
   * expired at `nowMs` (an unknown `expiresAt` counts as not expired), by
   * archive then start time: what a new restore may reuse.
   */
  liveRetrievals(archiveIds: readonly ArchiveId[], nowMs: number): Promise<RetrievalRow[]>;
  /**
   * Records restores as `pending`, in one transaction; returns them in input
   * order. A request whose `key` is already known returns the existing row
   * unchanged, so a call retried after a lost answer adds nothing twice.
   */
  addRestores(
    requests: readonly {
      readonly key: string;
      readonly fileId: FileId;
      readonly dest: string;
      readonly requestedBy: string;
      /** Default false. */
      readonly overwrite?: boolean;
    }[],
    nowMs: number,
  ): Promise<RestoreRow[]>;
  /** Points pending restores at the retrieval that serves them. */
  assignRestores(ids: readonly number[], retrieval: RetrievalId): Promise<void>;
  /**
   * Finishes a restore: `done` with where it was written, or `failed` with
   * why. Only a `pending` restore changes; returns whether this one did (a
   * second listener finishing the same restore gets false).
   */
  finishRestore(
    id: number,
    outcome: { readonly state: "done" | "failed"; readonly note: string },
    nowMs: number,
  ): Promise<boolean>;
  /**
   * Restores by id, after `afterId`, at most `limit`; only those in
   * `states`, or served by `retrievalId`, when given.
   */
  restores(options: {
    readonly limit: number;
    readonly afterId?: number;
    readonly states?: readonly RestoreState[];
    readonly retrievalId?: RetrievalId;
  }): Promise<RestoreRow[]>;
  /** Unresolved failures, newest first. */
  recentFailures(limit: number): Promise<FailureRow[]>;
  /**
   * The smallest and largest archive `seq`, the archive count and the sum of
   * their sizes, without scanning the archives (an index's two ends and a
   * running total kept by `commitArchive`); `null` when there is no archive.
   * Every committed archive has a distinct `seq` in `[min, max]`; there may be
   * gaps, so a uniform pick draws seqs in the span and drops those not found.
   */
  archiveSeqRange(): Promise<ArchiveSeqRange | null>;
  /**
   * The archives whose `seq` is one of `seqs` (by the unique index), by seq;
   * a seq with no archive (a gap) is left out. Each seq must be a whole
   * number; repeats count once.
   */
  archivesBySeq(seqs: readonly number[]): Promise<ArchiveRow[]>;
  /**
   * Bytes retrieved by retrievals started at or after `sinceMs`, restores and
   * audits alike: each one's range length (`end - start + 1`), or its
   * archive's size when it retrieved the whole archive.
   */
  retrievedBytesSince(sinceMs: number): Promise<number>;
  /**
   * Records an audit. A second call with the same id is a no-op. Rejects with
   * a `RangeError` for an unknown archive or retrieval.
   */
  addAudit(row: AuditRow): Promise<void>;
  /**
   * Sets an audit's state and `updatedAt`, and each of `findings`, `note`,
   * `retrievalId`, `manifestDigest` that `update` has (`null` clears it; an
   * absent one is kept). Rejects with a `RangeError` for an unknown id.
   */
  updateAudit(
    id: AuditId,
    update: {
      readonly state: AuditState;
      readonly updatedAt: number;
      readonly findings?: number | null;
      readonly note?: string | null;
      readonly retrievalId?: RetrievalId | null;
      readonly manifestDigest?: string | null;
    },
  ): Promise<void>;
  /**
   * Audits by id (that is, by creation time), oldest first, or newest first
   * with `newestFirst`; after `afterId` in that order (exclusive), at most
   * `limit`; only those in `states` when given (none when it is empty).
   */
  audits(options: {
    readonly limit: number;
    readonly afterId?: AuditId;
    readonly newestFirst?: boolean;
    readonly states?: readonly AuditState[];
  }): Promise<AuditRow[]>;
  /**
   * Records a drill file. A second call with the same id is a no-op. Rejects
   * with a `RangeError` for an unknown restore or file.
   */
  addDrill(row: DrillRow): Promise<void>;
  /**
   * Sets a drill's state, and each of `checkedAt`, `note` that `update` has
   * (`null` clears it; an absent one is kept). Rejects with a `RangeError`
   * for an unknown id.
   */
  updateDrill(
    id: DrillId,
    update: {
      readonly state: DrillState;
      readonly checkedAt?: number | null;
      readonly note?: string | null;
    },
  ): Promise<void>;
  /**
   * Drills by id (by start time), oldest first, or newest first with
   * `newestFirst`; after `afterId` in that order, at most `limit`; only
   * those in `states` when given (none when it is empty).
   */
  drills(options: {
    readonly limit: number;
    readonly afterId?: DrillId;
    readonly newestFirst?: boolean;
    readonly states?: readonly DrillState[];
  }): Promise<DrillRow[]>;
  close(): Promise<void>;
}

// ---------------------------------------------------------------------------
// Clock, randomness, metrics, progress.

/** Time, switched for a fake in tests. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms`, or rejects with the signal's reason when aborted. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

/** Counters, gauges and timings named `coldpack.<daemon>.<what>`. */
export interface Metrics {
  count(name: string, value?: number): void;
  gauge(name: string, value: number): void;
  timing(name: string, seconds: number): void;
}

/** Metrics that go nowhere. */
export const noMetrics: Metrics = {
  count() {},
  gauge() {},
  timing() {},
};

/** Running totals of one backup run, for a progress bar. */
export interface ProgressSnapshot {
  readonly discovered: number;
  readonly fetchedFiles: number;
  readonly fetchedBytes: number;
  readonly archivedFiles: number;
  readonly archivedBytes: number;
  readonly archives: number;
  readonly vanished: number;
  readonly failures: number;
  /** Files discovered but not yet archived, vanished or failed in this run. */
  readonly outstanding: number;
}

/** Receives progress; the CLI draws a bar, tests and daemons ignore it. */
export interface Progress {
  update(snapshot: ProgressSnapshot): void;
  /** A line for the operator (a skipped file, a recorded failure). */
  note(message: string): void;
}

/** Progress that goes nowhere. */
export const noProgress: Progress = {
  update() {},
  note() {},
};
