/**
 * Branded id types. Every id in coldpack is a string or a number underneath;
 * the brand makes the compiler reject a `FileId` where an `ArchiveId` is due.
 *
 * @example
 * ```ts
 * const id = fileId(42);
 * // archiveRow(id); // type error: FileId is not ArchiveId
 * ```
 * @module
 */

declare const brand: unique symbol;
/** `T` tagged with the name `B` so that differently named ids do not mix. */
export type Brand<T, B extends string> = T & { readonly [brand]: B };

/** The catalog's own id of one version of one source file (`fid:123` on the restore CLI). */
export type FileId = Brand<number, "FileId">;
/** coldpack's id of one archive (also its `.tar` name in a local vault). */
export type ArchiveId = Brand<string, "ArchiveId">;
/** The id the cold store gave an archive (Glacier archive id, S3 key, vault file name). */
export type RemoteArchiveId = Brand<string, "RemoteArchiveId">;
/** coldpack's id of one retrieval it asked the store for. */
export type RetrievalId = Brand<string, "RetrievalId">;
/** The store's id of a retrieval job (Glacier job id, S3 key for restores). */
export type JobId = Brand<string, "JobId">;
/** coldpack's id of one audit (one archive sampled for verification). */
export type AuditId = Brand<string, "AuditId">;
/** coldpack's id of one restore drill (one file restored to a test destination). */
export type DrillId = Brand<string, "DrillId">;
/** The identity of a source, e.g. `dir:/srv/uploads`; stored with every file. */
export type SourceId = Brand<string, "SourceId">;

/** Brands a catalog file id. */
export function fileId(n: number): FileId {
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new RangeError(`Invalid file id: ${n} is not a positive integer`);
  }
  return n as FileId;
}

const ARCHIVE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Brands an archive id; only `[A-Za-z0-9._-]` so that it is safe as a file name. */
export function archiveId(s: string): ArchiveId {
  if (!ARCHIVE_ID.test(s)) throw new SyntaxError(`Invalid archive id: "${s}"`);
  return s as ArchiveId;
}

/** Brands a store-side archive id. */
export function remoteArchiveId(s: string): RemoteArchiveId {
  if (s.length === 0) throw new SyntaxError("Invalid remote archive id: empty");
  return s as RemoteArchiveId;
}

/** Brands a retrieval id. */
export function retrievalId(s: string): RetrievalId {
  if (!ARCHIVE_ID.test(s)) throw new SyntaxError(`Invalid retrieval id: "${s}"`);
  return s as RetrievalId;
}

/** Brands an audit id (same alphabet as an archive id). */
export function auditId(s: string): AuditId {
  if (!ARCHIVE_ID.test(s)) throw new SyntaxError(`Invalid audit id: "${s}"`);
  return s as AuditId;
}

/** Brands a drill id (same alphabet as an archive id). */
export function drillId(s: string): DrillId {
  if (!ARCHIVE_ID.test(s)) throw new SyntaxError(`Invalid drill id: "${s}"`);
  return s as DrillId;
}

/** Brands a store job id. */
export function jobId(s: string): JobId {
  if (s.length === 0) throw new SyntaxError("Invalid job id: empty");
  return s as JobId;
}

/** Brands a source id. */
export function sourceId(s: string): SourceId {
  if (s.length === 0) throw new SyntaxError("Invalid source id: empty");
  return s as SourceId;
}

/**
 * Makes a new archive id from a time and random bytes:
 * `20261122T105301.123Z-1a2b3c4d5e6f`. Sorting ids sorts them by creation
 * time, to the millisecond.
 *
 * @param nowMs milliseconds since the epoch
 * @param random 6 random bytes
 */
export function newArchiveId(nowMs: number, random: Uint8Array): ArchiveId {
  return archiveId(`${compactTime(nowMs)}-${hex(random)}`);
}

/** Makes a new retrieval id, shaped like an archive id with an `r` prefix. */
export function newRetrievalId(nowMs: number, random: Uint8Array): RetrievalId {
  return retrievalId(`r${compactTime(nowMs)}-${hex(random)}`);
}

/**
 * Makes a new audit id, shaped like an archive id with an `a` prefix:
 * `a20261122T105301.123Z-1a2b3c4d5e6f`.
 *
 * @param nowMs milliseconds since the epoch
 * @param random 6 random bytes
 */
export function newAuditId(nowMs: number, random: Uint8Array): AuditId {
  return auditId(`a${compactTime(nowMs)}-${hex(random)}`);
}

/** Makes a new drill id, shaped like an archive id with a `d` prefix. */
export function newDrillId(nowMs: number, random: Uint8Array): DrillId {
  return drillId(`d${compactTime(nowMs)}-${hex(random)}`);
}

function compactTime(ms: number): string {
  return new Date(ms).toISOString().replace(/[-:]/g, "");
}

/** Lower-case hex of bytes. */
export function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}
