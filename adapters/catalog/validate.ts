/**
 * Argument checks and row construction shared by every catalog adapter,
 * so that SQLite and MySQL reject the same bad input with the same words.
 * @module
 */

import type { ArchiveId, FileId, SourceId } from "../../core/ids.ts";
import type { ArchiveMember, ArchiveRow, FileRow, SourceEntry } from "../../core/ports.ts";

const MD5 = /^[0-9a-f]{32}$/;

export function checkTime(name: string, v: number): void {
  if (typeof v !== "number" || !Number.isFinite(v)) {
    throw new RangeError(`Invalid ${name}: ${v} is not a finite number`);
  }
}

/** The note of a pending file that `markGone` turns `vanished`. */
export const GONE_NOTE = "deleted or replaced at the source before it could be backed up";

/** A `markGone` span: whole numbers, `from < to`; present fids are whole numbers. */
export function checkSpan(
  span: { readonly from: number; readonly to: number },
  present: readonly number[],
): void {
  if (!Number.isSafeInteger(span.from) || !Number.isSafeInteger(span.to) || span.from >= span.to) {
    throw new RangeError(
      `Invalid span: (${span.from}, ${span.to}] must be whole numbers with from < to`,
    );
  }
  const bad = present.find((f) => !Number.isSafeInteger(f));
  if (bad !== undefined) throw new RangeError(`Invalid present fid: ${bad} is not a whole number`);
}

export function checkLimit(limit: number): void {
  if (!Number.isSafeInteger(limit) || limit < 0) {
    throw new RangeError(`Invalid limit: ${limit} is not a non-negative integer`);
  }
}

export function isCount(v: number): boolean {
  return Number.isSafeInteger(v) && v >= 0;
}

export function checkCount(what: string, v: number): void {
  if (!isCount(v)) throw new RangeError(`${what}: ${v} is not a non-negative integer`);
}

export function checkEntry(e: SourceEntry): void {
  if (typeof e.key !== "string" || e.key.length === 0) {
    throw new TypeError(
      `Invalid source entry: key ${JSON.stringify(e.key)} is not a non-empty string`,
    );
  }
  const what = () => `source entry ${JSON.stringify(e.key)}`;
  if (typeof e.version !== "string") {
    throw new TypeError(`Invalid ${what()}: version is not a string`);
  }
  if (!isCount(e.length)) checkCount(`Invalid length of ${what()}`, e.length);
  if (typeof e.mtimeMs !== "number" || !Number.isFinite(e.mtimeMs)) {
    checkTime(`mtimeMs of ${what()}`, e.mtimeMs);
  }
  if (e.sourceFid !== undefined && !isCount(e.sourceFid)) {
    checkCount(`Invalid sourceFid of ${what()}`, e.sourceFid);
  }
}

export function checkArchive(a: ArchiveRow): void {
  const what = `Cannot commit archive ${a.id}`;
  checkCount(`${what}: invalid size`, a.size);
  checkCount(`${what}: invalid fileCount`, a.fileCount);
  checkCount(`${what}: invalid dataBytes`, a.dataBytes);
  checkTime("createdAt", a.createdAt);
  checkTime("committedAt", a.committedAt);
}

export function checkMember(id: ArchiveId, m: ArchiveMember): void {
  const what = `Cannot commit archive ${id}: member fid:${m.fileId}`;
  if (typeof m.md5 !== "string" || !MD5.test(m.md5)) {
    throw new RangeError(`${what} has an invalid md5 ${JSON.stringify(m.md5)}`);
  }
  checkCount(`${what} has an invalid length`, m.length);
  checkCount(`${what} has an invalid header offset`, m.headerOffset);
  checkCount(`${what} has an invalid data offset`, m.dataOffset);
  if (m.dataOffset <= m.headerOffset) {
    throw new RangeError(
      `${what} has its data offset ${m.dataOffset} before its header offset ${m.headerOffset}`,
    );
  }
}

export function checkOwner(owner: string): void {
  if (typeof owner !== "string" || owner.length === 0 || owner.length > 200) {
    throw new TypeError(`Invalid lease owner: ${JSON.stringify(owner)} (1 to 200 characters)`);
  }
}

export function checkLease(name: string, owner: string, ttlMs: number, nowMs: number): void {
  if (typeof name !== "string" || name.length === 0 || name.length > 200) {
    throw new TypeError(`Invalid lease name: ${JSON.stringify(name)} (1 to 200 characters)`);
  }
  checkOwner(owner);
  if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) {
    throw new RangeError(`Invalid lease ttl for ${name}: ${ttlMs} (a positive integer of ms)`);
  }
  checkTime("nowMs", nowMs);
}

export function newFileRow(id: FileId, source: SourceId, e: SourceEntry, nowMs: number): FileRow {
  return {
    id,
    source,
    key: e.key,
    version: e.version,
    domain: e.domain ?? null,
    storageClass: e.storageClass ?? null,
    sourceFid: e.sourceFid ?? null,
    length: e.length,
    mtimeMs: e.mtimeMs,
    discoveredAt: nowMs,
    state: "pending",
    md5: null,
    archiveId: null,
    headerOffset: null,
    dataOffset: null,
    archivedAt: null,
    attempts: 0,
    nextAttemptAt: null,
    note: null,
    goneAt: null,
  };
}
