/**
 * Reading catalog rows back, shared by every catalog adapter: the column
 * lists, the value checks (a text column may arrive as a string or as its
 * UTF-8 bytes, an integer as a number, a bigint or a decimal string) and
 * the conversions to the port's row types (files, archives, failures,
 * retrievals, restores, audits, drills).
 * @module
 */

import {
  archiveId,
  auditId,
  drillId,
  fileId,
  jobId,
  remoteArchiveId,
  retrievalId,
  sourceId,
} from "../../core/ids.ts";
import type { Stage } from "../../core/errors.ts";
import type {
  ArchiveRow,
  AuditRow,
  DrillRow,
  FailureRow,
  FileState,
  RestoreRow,
  RestoreState,
  RetrievalPurpose,
  RetrievalRow,
} from "../../core/ports.ts";
import { AUDIT_STATES, DRILL_STATES, RETRIEVAL_STATES, TIERS } from "../../core/ports.ts";

/** A row as a driver returns it, by column name. */
export type Row = Record<string, unknown>;

export const FILE_STATES: readonly FileState[] = [
  "pending",
  "archived",
  "vanished",
  "failed",
  "superseded",
];
export const STAGES: readonly Stage[] = ["discover", "fetch", "bundle", "upload", "commit"];
export { AUDIT_STATES, DRILL_STATES, RETRIEVAL_STATES, TIERS };
export const PURPOSES: readonly RetrievalPurpose[] = ["restore", "audit"];
export const RESTORE_STATES: readonly RestoreState[] = ["pending", "done", "failed"];

export const ARCHIVE_COLUMNS = "id, store, remote_id, size, tree_hash, file_count, data_bytes, " +
  "description, created_at, committed_at";
export const FAILURE_COLUMNS = "id, stage, code, message, source, file_id, file_key, archive_id, " +
  "attempts, first_at, last_at, resolved_at";
export const RETRIEVAL_COLUMNS = "id, archive_id, store, job_id, range_start, range_end, tier, " +
  "purpose, state, started_at, ready_at, expires_at, failure";
export const RESTORE_COLUMNS = "id, restore_key, file_id, dest, state, retrieval_id, " +
  "requested_at, finished_at, note, requested_by, overwrite";
export const AUDIT_COLUMNS = "id, archive_id, retrieval_id, manifest_digest, state, findings, " +
  "created_at, updated_at, note";
export const DRILL_COLUMNS = "id, restore_id, file_id, dest, started_at, checked_at, state, note";

const UTF8 = new TextDecoder();

/** Text, from a text column (string) or a byte column (the string's UTF-8). */
export function asText(v: unknown, column: string): string {
  if (typeof v === "string") return v;
  if (v instanceof Uint8Array) return UTF8.decode(v);
  throw new TypeError(`Catalog column ${column} is not text: ${v}`);
}

/**
 * An integer column: BIGINTs arrive as numbers (or bigints) when they are
 * safe integers and as strings otherwise, DECIMAL sums as strings; anything
 * that is not a safe integer is refused rather than rounded.
 */
export function asInt(v: unknown, column: string): number {
  const n = typeof v === "number"
    ? v
    : typeof v === "bigint"
    ? Number(v)
    : typeof v === "string" && /^-?\d+$/.test(v)
    ? Number(v)
    : NaN;
  if (!Number.isSafeInteger(n)) {
    throw new TypeError(`Catalog column ${column} is not a safe integer: ${v}`);
  }
  return n;
}

/** A boolean column stored as 0 or 1 (SQLite INTEGER, MySQL TINYINT(1)); else a `TypeError`. */
export function asBool(v: unknown, column: string): boolean {
  const n = typeof v === "boolean" ? Number(v) : asInt(v, column);
  if (n !== 0 && n !== 1) throw new TypeError(`Catalog column ${column} is not 0 or 1: ${v}`);
  return n === 1;
}

export function asState(s: string): FileState {
  if (!FILE_STATES.includes(s as FileState)) {
    throw new TypeError(`Unknown file state in catalog: ${s}`);
  }
  return s as FileState;
}

export function str(r: Row, column: string): string {
  return asText(r[column], column);
}

export function optStr(r: Row, column: string): string | null {
  return r[column] === null ? null : str(r, column);
}

export function int(r: Row, column: string): number {
  return asInt(r[column], column);
}

export function optInt(r: Row, column: string): number | null {
  return r[column] === null || r[column] === undefined ? null : int(r, column);
}

export function bool(r: Row, column: string): boolean {
  return asBool(r[column], column);
}

export function state(r: Row): FileState {
  return asState(str(r, "state"));
}

export function toArchiveRow(r: Row): ArchiveRow {
  return {
    id: archiveId(str(r, "id")),
    store: str(r, "store"),
    remoteId: remoteArchiveId(str(r, "remote_id")),
    size: int(r, "size"),
    treeHash: str(r, "tree_hash"),
    fileCount: int(r, "file_count"),
    dataBytes: int(r, "data_bytes"),
    description: str(r, "description"),
    createdAt: int(r, "created_at"),
    committedAt: int(r, "committed_at"),
  };
}

export function toFailureRow(r: Row): FailureRow {
  const stage = str(r, "stage") as Stage;
  if (!STAGES.includes(stage)) throw new TypeError(`Unknown failure stage in catalog: ${stage}`);
  const file = optInt(r, "file_id");
  const archive = optStr(r, "archive_id");
  return {
    id: int(r, "id"),
    stage,
    code: str(r, "code"),
    message: str(r, "message"),
    source: sourceId(str(r, "source")),
    fileId: file === null ? null : fileId(file),
    key: optStr(r, "file_key"),
    archiveId: archive === null ? null : archiveId(archive),
    attempts: int(r, "attempts"),
    firstAt: int(r, "first_at"),
    lastAt: int(r, "last_at"),
    resolvedAt: optInt(r, "resolved_at"),
  };
}

/** `v` when it is one of `allowed`, else a `TypeError` naming the column. */
function oneOf<T extends string>(allowed: readonly T[], v: string, what: string): T {
  if (!allowed.includes(v as T)) throw new TypeError(`Unknown ${what} in catalog: ${v}`);
  return v as T;
}

export function toRetrievalRow(r: Row): RetrievalRow {
  const start = optInt(r, "range_start");
  const end = optInt(r, "range_end");
  return {
    id: retrievalId(str(r, "id")),
    archiveId: archiveId(str(r, "archive_id")),
    store: str(r, "store"),
    jobId: jobId(str(r, "job_id")),
    range: start === null || end === null ? null : { start, end },
    tier: oneOf(TIERS, str(r, "tier"), "retrieval tier"),
    purpose: oneOf(PURPOSES, str(r, "purpose"), "retrieval purpose"),
    state: oneOf(RETRIEVAL_STATES, str(r, "state"), "retrieval state"),
    startedAt: int(r, "started_at"),
    readyAt: optInt(r, "ready_at"),
    expiresAt: optInt(r, "expires_at"),
    failure: optStr(r, "failure"),
  };
}

export function toRestoreRow(r: Row): RestoreRow {
  const retrieval = optStr(r, "retrieval_id");
  return {
    id: int(r, "id"),
    key: str(r, "restore_key"),
    fileId: fileId(int(r, "file_id")),
    dest: str(r, "dest"),
    state: oneOf(RESTORE_STATES, str(r, "state"), "restore state"),
    retrievalId: retrieval === null ? null : retrievalId(retrieval),
    requestedAt: int(r, "requested_at"),
    finishedAt: optInt(r, "finished_at"),
    note: optStr(r, "note"),
    requestedBy: str(r, "requested_by"),
    overwrite: bool(r, "overwrite"),
  };
}

/** A retrieval row as the values of `INSERT INTO retrievals (RETRIEVAL_COLUMNS)`, in order. */
export function retrievalValues(row: RetrievalRow): (string | number | null)[] {
  return [
    row.id,
    row.archiveId,
    row.store,
    row.jobId,
    row.range?.start ?? null,
    row.range?.end ?? null,
    row.tier,
    row.purpose,
    row.state,
    row.startedAt,
    row.readyAt,
    row.expiresAt,
    row.failure,
  ];
}

export function toAuditRow(r: Row): AuditRow {
  const retrieval = optStr(r, "retrieval_id");
  return {
    id: auditId(str(r, "id")),
    archiveId: archiveId(str(r, "archive_id")),
    retrievalId: retrieval === null ? null : retrievalId(retrieval),
    manifestDigest: optStr(r, "manifest_digest"),
    state: oneOf(AUDIT_STATES, str(r, "state"), "audit state"),
    findings: optInt(r, "findings"),
    createdAt: int(r, "created_at"),
    updatedAt: optInt(r, "updated_at"),
    note: optStr(r, "note"),
  };
}

/** An audit row as the values of `INSERT INTO audits (AUDIT_COLUMNS)`, in order. */
export function auditValues(row: AuditRow): (string | number | null)[] {
  return [
    row.id,
    row.archiveId,
    row.retrievalId,
    row.manifestDigest,
    row.state,
    row.findings,
    row.createdAt,
    row.updatedAt,
    row.note,
  ];
}

export function toDrillRow(r: Row): DrillRow {
  return {
    id: drillId(str(r, "id")),
    restoreId: int(r, "restore_id"),
    fileId: fileId(int(r, "file_id")),
    dest: str(r, "dest"),
    startedAt: int(r, "started_at"),
    checkedAt: optInt(r, "checked_at"),
    state: oneOf(DRILL_STATES, str(r, "state"), "drill state"),
    note: optStr(r, "note"),
  };
}

/** A drill row as the values of `INSERT INTO drills (DRILL_COLUMNS)`, in order. */
export function drillValues(row: DrillRow): (string | number | null)[] {
  return [
    row.id,
    row.restoreId,
    row.fileId,
    row.dest,
    row.startedAt,
    row.checkedAt,
    row.state,
    row.note,
  ];
}
