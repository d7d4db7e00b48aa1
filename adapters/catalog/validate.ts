/**
 * Argument checks and row construction shared by every catalog adapter,
 * so that SQLite and MySQL reject the same bad input with the same words.
 * @module
 */

import type { ArchiveId, AuditId, FileId, RetrievalId, SourceId } from "../../core/ids.ts";
import { PortError } from "../../core/errors.ts";
import type {
  ArchiveMember,
  ArchiveRow,
  AuditRow,
  AuditState,
  DrillRow,
  DrillState,
  FileRow,
  RestoreState,
  RetrievalRow,
  RetrievalState,
  SourceEntry,
} from "../../core/ports.ts";
import {
  AUDIT_STATES,
  DRILL_STATES,
  PURPOSES,
  RESTORE_STATES,
  RETRIEVAL_STATES,
  TIERS,
} from "./rows.ts";

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

// ---------------------------------------------------------------------------
// Retrievals and restores

/** The shape of archive and retrieval ids (`core/ids.ts`). */
const ID_TEXT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
/** Longest restore key, in UTF-16 code units (at most 1,020 bytes of UTF-8). */
export const MAX_RESTORE_KEY = 255;

/** A time stored in a column: whole milliseconds since the epoch. */
export function checkMs(name: string, v: number): void {
  if (!Number.isSafeInteger(v)) {
    throw new RangeError(`Invalid ${name}: ${v} is not a whole number of ms`);
  }
}

function checkOptMs(name: string, v: number | null | undefined): void {
  if (v !== null && v !== undefined) checkMs(name, v);
}

/** A retrieval id as `core/ids.ts` makes them. */
export function checkRetrievalId(id: RetrievalId): void {
  if (typeof id !== "string" || !ID_TEXT.test(id)) {
    throw new TypeError(`Invalid retrieval id: ${JSON.stringify(id)}`);
  }
}

function checkText(what: string, v: unknown): void {
  if (typeof v !== "string" || v.length === 0) {
    throw new TypeError(`Invalid ${what}: ${JSON.stringify(v)} is not a non-empty string`);
  }
}

function checkOneOf(what: string, allowed: readonly string[], v: unknown): void {
  if (typeof v !== "string" || !allowed.includes(v)) {
    throw new RangeError(
      `Invalid ${what}: ${JSON.stringify(v)} (expected ${allowed.join(", ")})`,
    );
  }
}

/** Every field of a retrieval row to record. */
export function checkRetrievalRow(row: RetrievalRow): void {
  checkRetrievalId(row.id);
  const of = `of retrieval ${row.id}`;
  if (typeof row.archiveId !== "string" || !ID_TEXT.test(row.archiveId)) {
    throw new TypeError(`Invalid archive id ${of}: ${JSON.stringify(row.archiveId)}`);
  }
  checkText(`store ${of}`, row.store);
  checkText(`job id ${of}`, row.jobId);
  if (typeof row.range !== "object") {
    throw new TypeError(`Invalid range ${of}: ${row.range} (a byte range, or null for whole)`);
  }
  if (row.range !== null) {
    const { start, end } = row.range;
    if (!isCount(start) || !isCount(end) || end < start) {
      throw new RangeError(
        `Invalid range ${of}: ${start}-${end} (whole numbers, 0 <= start <= end)`,
      );
    }
  }
  checkOneOf(`tier ${of}`, TIERS, row.tier);
  checkOneOf(`purpose ${of}`, PURPOSES, row.purpose);
  checkOneOf(`state ${of}`, RETRIEVAL_STATES, row.state);
  checkMs(`startedAt ${of}`, row.startedAt);
  checkOptMs(`readyAt ${of}`, row.readyAt);
  checkOptMs(`expiresAt ${of}`, row.expiresAt);
  if (row.failure !== null && typeof row.failure !== "string") {
    throw new TypeError(`Invalid failure ${of}: not a string`);
  }
}

/** What `updateRetrieval` may write. */
export interface RetrievalUpdate {
  readonly state: RetrievalState;
  readonly readyAt?: number | null;
  readonly expiresAt?: number | null;
  readonly failure?: string | null;
}

export function checkRetrievalUpdate(id: RetrievalId, update: RetrievalUpdate): void {
  checkRetrievalId(id);
  const of = `of retrieval ${id}`;
  checkOneOf(`state ${of}`, RETRIEVAL_STATES, update.state);
  checkOptMs(`readyAt ${of}`, update.readyAt);
  checkOptMs(`expiresAt ${of}`, update.expiresAt);
  if (
    update.failure !== undefined && update.failure !== null && typeof update.failure !== "string"
  ) {
    throw new TypeError(`Invalid failure ${of}: not a string`);
  }
}

/**
 * The columns and values an update writes: `state` always, each other field
 * only when given (`null` clears it).
 */
export function retrievalUpdateColumns(
  update: RetrievalUpdate,
): { readonly columns: string[]; readonly values: (string | number | null)[] } {
  const columns = ["state"];
  const values: (string | number | null)[] = [update.state];
  if (update.readyAt !== undefined) {
    columns.push("ready_at");
    values.push(update.readyAt);
  }
  if (update.expiresAt !== undefined) {
    columns.push("expires_at");
    values.push(update.expiresAt);
  }
  if (update.failure !== undefined) {
    columns.push("failure");
    values.push(update.failure);
  }
  return { columns, values };
}

/** One `addRestores` request. */
export interface RestoreRequest {
  readonly key: string;
  readonly fileId: FileId;
  readonly dest: string;
  readonly requestedBy: string;
  /** Default false. */
  readonly overwrite?: boolean;
}

export function checkRestoreRequest(r: RestoreRequest): void {
  if (typeof r.key !== "string" || r.key.length === 0 || r.key.length > MAX_RESTORE_KEY) {
    throw new TypeError(
      `Invalid restore key: ${JSON.stringify(r.key)} (1 to ${MAX_RESTORE_KEY} characters)`,
    );
  }
  const of = `of restore ${JSON.stringify(r.key)}`;
  if (!Number.isSafeInteger(r.fileId) || r.fileId <= 0) {
    throw new RangeError(`Invalid file id ${of}: ${r.fileId} is not a positive integer`);
  }
  checkText(`destination ${of}`, r.dest);
  checkText(`requestedBy ${of}`, r.requestedBy);
  if (r.overwrite !== undefined && typeof r.overwrite !== "boolean") {
    throw new TypeError(`Invalid overwrite ${of}: ${JSON.stringify(r.overwrite)} is not a boolean`);
  }
}

/** A restore id: a positive integer. */
export function checkRestoreId(id: number): void {
  if (!Number.isSafeInteger(id) || id <= 0) {
    throw new RangeError(`Invalid restore id: ${id} is not a positive integer`);
  }
}

export function checkRestoreOutcome(
  id: number,
  outcome: { readonly state: "done" | "failed"; readonly note: string },
  nowMs: number,
): void {
  checkRestoreId(id);
  checkOneOf(`outcome of restore ${id}`, ["done", "failed"], outcome.state);
  if (typeof outcome.note !== "string") {
    throw new TypeError(`Invalid note of restore ${id}: not a string`);
  }
  checkMs("nowMs", nowMs);
}

/** The options of `restores()`. */
export interface RestoresQuery {
  readonly limit: number;
  readonly afterId?: number;
  readonly states?: readonly RestoreState[];
  readonly retrievalId?: RetrievalId;
}

export function checkRestoresQuery(q: RestoresQuery): void {
  checkLimit(q.limit);
  if (q.afterId !== undefined && !isCount(q.afterId)) {
    throw new RangeError(`Invalid afterId: ${q.afterId} is not a non-negative integer`);
  }
  for (const s of q.states ?? []) checkOneOf("restore state", RESTORE_STATES, s);
  if (q.retrievalId !== undefined) checkRetrievalId(q.retrievalId);
}

/**
 * The error for a store job already recorded under another retrieval id:
 * a `PortError` coded `RETRIEVAL_EXISTS`, not retryable.
 *
 * @param where `""`, or ` in <catalog location>`
 */
export function retrievalExists(row: RetrievalRow, otherId: string, where: string): PortError {
  return new PortError(
    `Cannot record retrieval ${row.id}${where}: job ${row.jobId} of ${row.store} is already ` +
      `recorded as retrieval ${otherId}`,
    { code: "RETRIEVAL_EXISTS", retryable: false },
  );
}

/** Archive ids for `liveRetrievals`: strings, each once, in the order given. */
export function uniqueArchiveIds(ids: readonly ArchiveId[]): ArchiveId[] {
  for (const id of ids) {
    if (typeof id !== "string") throw new TypeError(`Invalid archive id: ${id} is not a string`);
  }
  return [...new Set(ids)];
}

/** Live retrievals in the port's order: by archive id (byte-wise), start time, id. */
export function compareRetrievals(a: RetrievalRow, b: RetrievalRow): number {
  if (a.archiveId !== b.archiveId) return a.archiveId < b.archiveId ? -1 : 1;
  if (a.startedAt !== b.startedAt) return a.startedAt - b.startedAt;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

// ---------------------------------------------------------------------------
// Sampling, audits and drills

/** Most seqs one `archivesBySeq` call takes (one `IN` list). */
export const MAX_SEQS = 1000;

/** `archivesBySeq` seqs: whole numbers, at most {@linkcode MAX_SEQS}; each once, ascending. */
export function uniqueSeqs(seqs: readonly number[]): number[] {
  if (!Array.isArray(seqs)) throw new TypeError(`Invalid seqs: ${seqs} is not an array`);
  for (const s of seqs) {
    if (!Number.isSafeInteger(s)) {
      throw new RangeError(`Invalid archive seq: ${s} is not a whole number`);
    }
  }
  const unique = [...new Set(seqs)].sort((a, b) => a - b);
  if (unique.length > MAX_SEQS) {
    throw new RangeError(`Invalid seqs: ${unique.length} seqs in one call (at most ${MAX_SEQS})`);
  }
  return unique;
}

const DIGEST = /^[0-9a-f]{64}$/;

/** An audit or drill id: the shape of archive and retrieval ids. */
function checkId(what: string, id: unknown): void {
  if (typeof id !== "string" || !ID_TEXT.test(id)) {
    throw new TypeError(`Invalid ${what} id: ${JSON.stringify(id)}`);
  }
}

export function checkAuditId(id: string): void {
  checkId("audit", id);
}

export function checkDrillId(id: string): void {
  checkId("drill", id);
}

function checkOptNote(what: string, v: unknown): void {
  if (v !== null && v !== undefined && typeof v !== "string") {
    throw new TypeError(`Invalid ${what}: not a string`);
  }
}

function checkOptDigest(what: string, v: unknown): void {
  if (v !== null && v !== undefined && (typeof v !== "string" || !DIGEST.test(v))) {
    throw new TypeError(`Invalid ${what}: ${JSON.stringify(v)} is not 64 lower-case hex digits`);
  }
}

function checkOptFindings(what: string, v: number | null | undefined): void {
  if (v !== null && v !== undefined && !isCount(v)) {
    throw new RangeError(`Invalid ${what}: ${v} is not a non-negative integer`);
  }
}

function checkOptRetrievalId(what: string, v: unknown): void {
  if (v !== null && v !== undefined && (typeof v !== "string" || !ID_TEXT.test(v))) {
    throw new TypeError(`Invalid ${what}: ${JSON.stringify(v)}`);
  }
}

/** Every field of an audit row to record. */
export function checkAuditRow(row: AuditRow): void {
  checkAuditId(row.id);
  const of = `of audit ${row.id}`;
  if (typeof row.archiveId !== "string" || !ID_TEXT.test(row.archiveId)) {
    throw new TypeError(`Invalid archive id ${of}: ${JSON.stringify(row.archiveId)}`);
  }
  checkOptRetrievalId(`retrieval id ${of}`, row.retrievalId);
  checkOptDigest(`manifest digest ${of}`, row.manifestDigest);
  checkOneOf(`state ${of}`, AUDIT_STATES, row.state);
  checkOptFindings(`findings ${of}`, row.findings);
  checkMs(`createdAt ${of}`, row.createdAt);
  checkOptMs(`updatedAt ${of}`, row.updatedAt);
  checkOptNote(`note ${of}`, row.note);
}

/** What `updateAudit` may write. */
export interface AuditUpdate {
  readonly state: AuditState;
  readonly updatedAt: number;
  readonly findings?: number | null;
  readonly note?: string | null;
  readonly retrievalId?: RetrievalId | null;
  readonly manifestDigest?: string | null;
}

export function checkAuditUpdate(id: AuditId, update: AuditUpdate): void {
  checkAuditId(id);
  const of = `of audit ${id}`;
  checkOneOf(`state ${of}`, AUDIT_STATES, update.state);
  checkMs(`updatedAt ${of}`, update.updatedAt);
  checkOptFindings(`findings ${of}`, update.findings);
  checkOptNote(`note ${of}`, update.note);
  checkOptRetrievalId(`retrieval id ${of}`, update.retrievalId);
  checkOptDigest(`manifest digest ${of}`, update.manifestDigest);
}

/** The columns and values an audit update writes: state and updated_at always, the rest when given. */
export function auditUpdateColumns(
  update: AuditUpdate,
): { readonly columns: string[]; readonly values: (string | number | null)[] } {
  return updateColumns(
    [["state", update.state], ["updated_at", update.updatedAt]],
    [
      ["findings", update.findings],
      ["note", update.note],
      ["retrieval_id", update.retrievalId],
      ["manifest_digest", update.manifestDigest],
    ],
  );
}

/** Every field of a drill row to record. */
export function checkDrillRow(row: DrillRow): void {
  checkDrillId(row.id);
  const of = `of drill ${row.id}`;
  if (!Number.isSafeInteger(row.restoreId) || row.restoreId <= 0) {
    throw new RangeError(`Invalid restore id ${of}: ${row.restoreId} is not a positive integer`);
  }
  if (!Number.isSafeInteger(row.fileId) || row.fileId <= 0) {
    throw new RangeError(`Invalid file id ${of}: ${row.fileId} is not a positive integer`);
  }
  checkText(`destination ${of}`, row.dest);
  checkMs(`startedAt ${of}`, row.startedAt);
  checkOptMs(`checkedAt ${of}`, row.checkedAt);
  checkOneOf(`state ${of}`, DRILL_STATES, row.state);
  checkOptNote(`note ${of}`, row.note);
}

/** What `updateDrill` may write. */
export interface DrillUpdate {
  readonly state: DrillState;
  readonly checkedAt?: number | null;
  readonly note?: string | null;
}

export function checkDrillUpdate(id: string, update: DrillUpdate): void {
  checkDrillId(id);
  const of = `of drill ${id}`;
  checkOneOf(`state ${of}`, DRILL_STATES, update.state);
  checkOptMs(`checkedAt ${of}`, update.checkedAt);
  checkOptNote(`note ${of}`, update.note);
}

/** The columns and values a drill update writes: state always, the rest when given. */
export function drillUpdateColumns(
  update: DrillUpdate,
): { readonly columns: string[]; readonly values: (string | number | null)[] } {
  return updateColumns([["state", update.state]], [
    ["checked_at", update.checkedAt],
    ["note", update.note],
  ]);
}

function updateColumns(
  always: readonly (readonly [string, string | number])[],
  given: readonly (readonly [string, string | number | null | undefined])[],
): { readonly columns: string[]; readonly values: (string | number | null)[] } {
  const columns: string[] = [];
  const values: (string | number | null)[] = [];
  for (const [c, v] of always) {
    columns.push(c);
    values.push(v);
  }
  for (const [c, v] of given) {
    if (v === undefined) continue;
    columns.push(c);
    values.push(v);
  }
  return { columns, values };
}

/** The options of `audits()` and `drills()`. */
export interface HistoryQuery<S extends string, I extends string = string> {
  readonly limit: number;
  readonly afterId?: I;
  readonly newestFirst?: boolean;
  readonly states?: readonly S[];
}

/**
 * Checks the options of `audits()` (`what` = "audit") or `drills()`; returns
 * the states to match (each once), or `undefined` for all.
 */
export function checkHistoryQuery<S extends string>(
  what: "audit" | "drill",
  allowed: readonly S[],
  q: HistoryQuery<S>,
): S[] | undefined {
  checkLimit(q.limit);
  if (q.afterId !== undefined) checkId(what, q.afterId);
  if (q.newestFirst !== undefined && typeof q.newestFirst !== "boolean") {
    throw new TypeError(`Invalid newestFirst: ${JSON.stringify(q.newestFirst)} is not a boolean`);
  }
  for (const s of q.states ?? []) checkOneOf(`${what} state`, allowed, s);
  return q.states === undefined ? undefined : [...new Set(q.states)];
}

/**
 * The WHERE and ORDER BY of one `audits()`/`drills()` page (by `id`), with
 * `?` placeholders for the cursor then each state, and their values.
 */
export function historyPage<S extends string>(
  q: HistoryQuery<S>,
  states: readonly S[] | undefined,
): { readonly where: string; readonly order: string; readonly params: string[] } {
  const where: string[] = [];
  const params: string[] = [];
  const desc = q.newestFirst === true;
  if (q.afterId !== undefined) {
    where.push(desc ? "id < ?" : "id > ?");
    params.push(q.afterId);
  }
  if (states !== undefined) {
    where.push(`state IN (${states.map(() => "?").join(", ")})`);
    params.push(...states);
  }
  return {
    where: where.length === 0 ? "" : `WHERE ${where.join(" AND ")}`,
    order: desc ? "ORDER BY id DESC" : "ORDER BY id",
    params,
  };
}

/**
 * Throws a `RangeError` unless the drill's restore exists (`restoreFileId`
 * is its file, `null` when unknown) and restores the drill's file.
 *
 * @param where `""`, or ` in <catalog location>`
 */
export function checkDrillRestore(
  row: DrillRow,
  restoreFileId: number | null,
  where: string,
): void {
  if (restoreFileId === null) {
    throw new RangeError(`Cannot record drill ${row.id}${where}: unknown restore ${row.restoreId}`);
  }
  if (restoreFileId !== row.fileId) {
    throw new RangeError(
      `Cannot record drill ${row.id}${where}: restore ${row.restoreId} is of file ` +
        `fid:${restoreFileId}, not fid:${row.fileId}`,
    );
  }
}
