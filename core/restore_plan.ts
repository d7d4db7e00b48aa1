/**
 * The restore planner: given archived files to bring back, which retrievals
 * already known to the catalog can serve them, and which new retrievals to
 * start, covering as few bytes and as few requests as the store allows.
 *
 * - A retrieval that is in progress or ready, and will not expire within a
 *   safety margin, is reused for every file wholly inside what it retrieves.
 * - A store with ranged retrieval (Glacier vault, local vault) gets, per
 *   archive, ranges covering only the remaining files' data bytes, aligned
 *   to {@linkcode StoreCapabilities.rangeAlignment} (Glacier: start a
 *   multiple of 1 MiB, end + 1 a multiple of 1 MiB or the archive size).
 *   Ranges that overlap or lie within `mergeGapBytes` of each other become
 *   one range: one request instead of two for at most that many more bytes.
 * - A store without (S3 Glacier classes) gets one whole-archive retrieval
 *   per archive; the restored copy then serves ranged reads.
 *
 * The alignment sets the floor: a file that straddles a 1 MiB boundary
 * needs 2 MiB from Glacier however small it is. A file of `L` bytes at a
 * uniformly random offset needs about `1 MiB + L` bytes on average.
 *
 * Pure and deterministic: the same input, in any order, gives the same plan.
 *
 * @example
 * ```ts
 * const { capabilities } = store;
 * const plan = planRetrievals({ files, archives, capabilities, retrievals, nowMs });
 * for (const r of plan.start) {
 *   const range = r.range === null ? {} : { range: r.range };
 *   await store.startRetrieval(r.remoteId, { ...range, tier: r.tier, description });
 * }
 * ```
 * @module
 */

import type { ArchiveId, FileId, RemoteArchiveId } from "./ids.ts";
import {
  type ByteRange,
  RETRIEVAL_STATES,
  type RetrievalState,
  type StoreCapabilities,
  type Tier,
  TIERS,
} from "./ports.ts";
import { retrievalRangeProblem } from "./ranges.ts";
import { alignRange, MIB } from "./tree_hash.ts";

/** An archived file to restore: its catalog row's place in its archive. */
export interface FileToRestore {
  readonly fileId: FileId;
  readonly archiveId: ArchiveId;
  /** Offset of the file's first tar header block (checked, not retrieved). */
  readonly headerOffset: number;
  /** Offset of the file's first data byte. */
  readonly dataOffset: number;
  readonly length: number;
}

/** An archive holding files to restore. */
export interface ArchiveToRead {
  readonly id: ArchiveId;
  /** Total bytes (> 0). */
  readonly size: number;
  readonly remoteId: RemoteArchiveId;
  /** The store's location; every archive read in one plan must share it. */
  readonly store: string;
}

/** A retrieval the catalog already knows of. */
export interface KnownRetrieval {
  /** The catalog's id of the retrieval. */
  readonly id: string;
  readonly archiveId: ArchiveId;
  /** The retrieved range; `null` for the whole archive. */
  readonly range: ByteRange | null;
  readonly state: RetrievalState;
  /** When the retrieved bytes stop being readable (ms); `null` if not known. */
  readonly expiresAt: number | null;
}

/** What to plan for. */
export interface PlanInput {
  readonly files: readonly FileToRestore[];
  /** The archives the files live in (more may be given; they are ignored). */
  readonly archives: readonly ArchiveToRead[];
  /** The store's capabilities (`ColdStore.capabilities`). */
  readonly capabilities: StoreCapabilities;
  /** Retrievals already recorded in the catalog (default none). */
  readonly retrievals?: readonly KnownRetrieval[];
  /** Now, ms since the epoch. */
  readonly nowMs: number;
}

/** Options for {@linkcode planRetrievals}. */
export interface PlanOptions {
  /**
   * Aligned ranges of one archive whose gap is at most this many bytes are
   * merged into one retrieval. Default 1 MiB (one request costs more than
   * 1 MiB of retrieval at every Glacier tier).
   */
  readonly mergeGapBytes?: number;
  /**
   * A retrieval expiring within this many ms of now is not relied on.
   * Default 1 hour.
   */
  readonly expiryMarginMs?: number;
  /** Tier of the new retrievals. Default `Standard`. */
  readonly tier?: Tier;
}

/** A file's place in a retrieval. */
export interface PlacedFile {
  readonly fileId: FileId;
  /** The file's data offset in its archive. */
  readonly dataOffset: number;
  readonly length: number;
  /** The file's data offset relative to the retrieval's first byte. */
  readonly offset: number;
}

/** A known retrieval that serves some of the files. */
export interface ReusedRetrieval {
  readonly retrievalId: string;
  readonly archiveId: ArchiveId;
  readonly range: ByteRange | null;
  readonly state: "in-progress" | "ready";
  /** By data offset, then file id. */
  readonly files: readonly PlacedFile[];
}

/** A retrieval to start. */
export interface NewRetrieval {
  readonly archiveId: ArchiveId;
  readonly remoteId: RemoteArchiveId;
  readonly store: string;
  /** The range to retrieve; `null` for the whole archive (stores without ranged retrieval). */
  readonly range: ByteRange | null;
  /** Bytes it retrieves. */
  readonly bytes: number;
  readonly tier: Tier;
  /** By data offset, then file id. */
  readonly files: readonly PlacedFile[];
}

/** A file of length 0: restored without reading any archive. */
export interface EmptyFile {
  readonly fileId: FileId;
  readonly archiveId: ArchiveId;
}

/** Sums over a plan. */
export interface PlanTotals {
  /** Sum of the files' lengths. */
  readonly bytesNeeded: number;
  /** Bytes the new retrievals retrieve (reused ones cost nothing more). */
  readonly bytesToRetrieve: number;
  /** Archives holding at least one file that needs bytes. */
  readonly archives: number;
  readonly retrievalsToStart: number;
  readonly retrievalsReused: number;
}

/** The plan: what to reuse, what to start. Lists sorted by archive id, then range start. */
export interface RetrievalPlan {
  readonly reuse: readonly ReusedRetrieval[];
  readonly start: readonly NewRetrieval[];
  /** Files needing no bytes, by archive id then file id. */
  readonly empty: readonly EmptyFile[];
  readonly totals: PlanTotals;
}

/** Default `mergeGapBytes`: 1 MiB. */
export const DEFAULT_MERGE_GAP_BYTES = MIB;
/** Default `expiryMarginMs`: 1 hour. */
export const DEFAULT_EXPIRY_MARGIN_MS = 3_600_000;

const WHAT = "Cannot plan retrievals";

/**
 * Plans the retrievals that bring `input.files` back: which known
 * retrievals to reuse, which new ones to start (see the module doc).
 *
 * @throws {TypeError} for a value of the wrong type (an id, a state, a tier)
 * @throws {RangeError} for a value out of range, naming the file, archive or
 *   retrieval: a file whose archive is not given, offsets past its archive's
 *   end, an archive of size 0, archives of different stores, a bad option
 *
 * @example
 * ```ts
 * const capabilities = { rangedRetrieval: true, rangeAlignment: MIB };
 * const plan = planRetrievals({ files, archives, capabilities, nowMs }, { tier: "Bulk" });
 * plan.totals.bytesToRetrieve; // e.g. 1048576 for one 100 KB file
 * ```
 */
export function planRetrievals(input: PlanInput, options: PlanOptions = {}): RetrievalPlan {
  const mergeGap = options.mergeGapBytes ?? DEFAULT_MERGE_GAP_BYTES;
  wholeNumber(mergeGap, "option mergeGapBytes");
  const margin = options.expiryMarginMs ?? DEFAULT_EXPIRY_MARGIN_MS;
  if (typeof margin !== "number" || !Number.isFinite(margin) || margin < 0) {
    throw new RangeError(`${WHAT}: option expiryMarginMs is ${margin}, not a number >= 0`);
  }
  const tier = options.tier ?? "Standard";
  if (!TIERS.includes(tier)) {
    throw new TypeError(`${WHAT}: unknown tier "${tier}" (Expedited, Standard or Bulk)`);
  }
  const { nowMs, capabilities } = input;
  if (typeof nowMs !== "number" || !Number.isFinite(nowMs)) {
    throw new TypeError(`${WHAT}: nowMs is ${nowMs}, not a finite number`);
  }
  const unit = capabilities.rangeAlignment;
  if (!Number.isSafeInteger(unit) || unit <= 0) {
    throw new RangeError(`${WHAT}: the store's range alignment ${unit} is not a positive integer`);
  }

  const archives = indexArchives(input.archives);
  const files = checkFiles(input.files, archives);

  // Files needing bytes, grouped by archive; empty files aside.
  const empty: EmptyFile[] = [];
  const byArchive = new Map<ArchiveId, FileToRestore[]>();
  let bytesNeeded = 0;
  for (const f of files) {
    bytesNeeded += f.length;
    if (f.length === 0) {
      empty.push({ fileId: f.fileId, archiveId: f.archiveId });
      continue;
    }
    let list = byArchive.get(f.archiveId);
    if (!list) byArchive.set(f.archiveId, list = []);
    list.push(f);
  }
  empty.sort((a, b) => compareStrings(a.archiveId, b.archiveId) || a.fileId - b.fileId);

  const archiveIds = [...byArchive.keys()].sort(compareStrings);
  let store: ArchiveToRead | null = null;
  for (const id of archiveIds) {
    const a = archives.get(id)!;
    if (store !== null && a.store !== store.store) {
      throw new RangeError(
        `${WHAT}: archive ${store.id} is in ${store.store} but archive ${a.id} is in ` +
          `${a.store}; plan each store on its own`,
      );
    }
    store ??= a;
  }

  const usable = usableRetrievals(input.retrievals ?? [], archives, nowMs + margin);

  const reuse: ReusedRetrieval[] = [];
  const start: NewRetrieval[] = [];
  let bytesToRetrieve = 0;
  for (const id of archiveIds) {
    const archive = archives.get(id)!;
    const pending = byArchive.get(id)!.sort(byDataOffset);
    const served = new Map<ActiveRetrieval, PlacedFile[]>();
    const remaining: FileToRestore[] = [];
    for (const f of pending) {
      const r = (usable.get(id) ?? []).find((r) => covers(r.range, f));
      if (r === undefined) {
        remaining.push(f);
        continue;
      }
      let list = served.get(r);
      if (!list) served.set(r, list = []);
      list.push(place(f, r.range?.start ?? 0));
    }
    for (const [r, placed] of served) {
      reuse.push({
        retrievalId: r.id,
        archiveId: id,
        range: r.range,
        state: r.state,
        files: placed,
      });
    }
    if (remaining.length === 0) continue;
    const ranges = capabilities.rangedRetrieval
      ? alignedGroups(remaining, archive, unit, mergeGap)
      : [{ range: null, files: remaining }];
    for (const g of ranges) {
      const bytes = g.range === null ? archive.size : g.range.end + 1 - g.range.start;
      bytesToRetrieve += bytes;
      start.push({
        archiveId: id,
        remoteId: archive.remoteId,
        store: archive.store,
        range: g.range,
        bytes,
        tier,
        files: g.files.map((f) => place(f, g.range?.start ?? 0)),
      });
    }
  }
  reuse.sort((a, b) =>
    compareStrings(a.archiveId, b.archiveId) || (a.range?.start ?? 0) - (b.range?.start ?? 0) ||
    compareStrings(a.retrievalId, b.retrievalId)
  );

  return {
    reuse,
    start,
    empty,
    totals: {
      bytesNeeded,
      bytesToRetrieve,
      archives: archiveIds.length,
      retrievalsToStart: start.length,
      retrievalsReused: reuse.length,
    },
  };
}

function wholeNumber(n: unknown, what: string): asserts n is number {
  if (typeof n !== "number") throw new TypeError(`${WHAT}: ${what} is not a number`);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`${WHAT}: ${what} is ${n}, not a whole number >= 0`);
  }
}

function compareStrings(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function byDataOffset(a: FileToRestore, b: FileToRestore): number {
  return a.dataOffset - b.dataOffset || a.fileId - b.fileId;
}

function indexArchives(list: readonly ArchiveToRead[]): Map<ArchiveId, ArchiveToRead> {
  const map = new Map<ArchiveId, ArchiveToRead>();
  for (const a of list) {
    if (typeof a.id !== "string" || a.id === "") {
      throw new TypeError(`${WHAT}: an archive has no id`);
    }
    wholeNumber(a.size, `the size of archive ${a.id}`);
    if (a.size === 0) throw new RangeError(`${WHAT}: archive ${a.id} has size 0`);
    if (typeof a.remoteId !== "string" || a.remoteId === "") {
      throw new TypeError(`${WHAT}: archive ${a.id} has no remote id`);
    }
    if (typeof a.store !== "string") {
      throw new TypeError(`${WHAT}: archive ${a.id} has no store location`);
    }
    const seen = map.get(a.id);
    if (seen && (seen.size !== a.size || seen.remoteId !== a.remoteId || seen.store !== a.store)) {
      throw new RangeError(`${WHAT}: archive ${a.id} is given twice, differently`);
    }
    map.set(a.id, a);
  }
  return map;
}

/** Checks every file against its archive; drops exact repeats (one file asked for twice). */
function checkFiles(
  list: readonly FileToRestore[],
  archives: Map<ArchiveId, ArchiveToRead>,
): FileToRestore[] {
  const seen = new Map<FileId, FileToRestore>();
  for (const f of list) {
    if (typeof f.fileId !== "number" || !Number.isSafeInteger(f.fileId) || f.fileId <= 0) {
      throw new TypeError(`${WHAT}: file id ${f.fileId} is not a positive integer`);
    }
    const name = `file ${f.fileId}`;
    wholeNumber(f.headerOffset, `the header offset of ${name}`);
    wholeNumber(f.dataOffset, `the data offset of ${name}`);
    wholeNumber(f.length, `the length of ${name}`);
    const a = archives.get(f.archiveId);
    if (a === undefined) {
      throw new RangeError(
        `${WHAT}: ${name} is in archive ${f.archiveId}, which is not among the archives given`,
      );
    }
    if (f.headerOffset > f.dataOffset) {
      throw new RangeError(
        `${WHAT}: ${name} in archive ${a.id} has its header at ${f.headerOffset}, ` +
          `after its data at ${f.dataOffset}`,
      );
    }
    if (f.dataOffset + f.length > a.size) {
      throw new RangeError(
        `${WHAT}: ${name} ends at byte ${
          f.dataOffset + f.length - 1
        }, past the end of archive ${a.id} (${a.size} bytes)`,
      );
    }
    const before = seen.get(f.fileId);
    if (before === undefined) {
      seen.set(f.fileId, f);
    } else if (
      before.archiveId !== f.archiveId || before.headerOffset !== f.headerOffset ||
      before.dataOffset !== f.dataOffset || before.length !== f.length
    ) {
      throw new RangeError(`${WHAT}: ${name} is given twice, at different places`);
    }
  }
  return [...seen.values()];
}

/**
 * Known retrievals that may serve files, per archive, best first: ready
 * before in progress, later expiry first, then by id. Those of archives not
 * in the plan are checked for shape only.
 */
function usableRetrievals(
  list: readonly KnownRetrieval[],
  archives: Map<ArchiveId, ArchiveToRead>,
  liveAfter: number,
): Map<ArchiveId, ActiveRetrieval[]> {
  const map = new Map<ArchiveId, ActiveRetrieval[]>();
  for (const r of list) {
    if (typeof r.id !== "string" || r.id === "") {
      throw new TypeError(`${WHAT}: a retrieval of archive ${r.archiveId} has no id`);
    }
    if (!RETRIEVAL_STATES.includes(r.state)) {
      throw new TypeError(`${WHAT}: retrieval ${r.id} has an unknown state "${r.state}"`);
    }
    if (
      r.expiresAt !== null && (typeof r.expiresAt !== "number" || !Number.isFinite(r.expiresAt))
    ) {
      throw new TypeError(`${WHAT}: retrieval ${r.id} expires at ${r.expiresAt}, not a time`);
    }
    const a = archives.get(r.archiveId);
    if (r.range !== null) {
      const { start, end } = r.range;
      if (
        !Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start ||
        (a !== undefined && end >= a.size)
      ) {
        throw new RangeError(
          `${WHAT}: retrieval ${r.id} has range ${start}-${end}, not within archive ${r.archiveId}${
            a === undefined ? "" : ` (${a.size} bytes)`
          }`,
        );
      }
    }
    if (!isActive(r)) continue;
    if (r.expiresAt !== null && r.expiresAt <= liveAfter) continue;
    let bucket = map.get(r.archiveId);
    if (!bucket) map.set(r.archiveId, bucket = []);
    bucket.push(r);
  }
  for (const bucket of map.values()) {
    bucket.sort((a, b) =>
      (a.state === b.state ? 0 : a.state === "ready" ? -1 : 1) ||
      (b.expiresAt ?? Infinity) - (a.expiresAt ?? Infinity) || compareStrings(a.id, b.id)
    );
  }
  return map;
}

type ActiveRetrieval = KnownRetrieval & { readonly state: "in-progress" | "ready" };

function isActive(r: KnownRetrieval): r is ActiveRetrieval {
  return r.state === "in-progress" || r.state === "ready";
}

function covers(range: ByteRange | null, f: FileToRestore): boolean {
  return range === null ||
    (range.start <= f.dataOffset && f.dataOffset + f.length - 1 <= range.end);
}

function place(f: FileToRestore, from: number): PlacedFile {
  return {
    fileId: f.fileId,
    dataOffset: f.dataOffset,
    length: f.length,
    offset: f.dataOffset - from,
  };
}

/**
 * Aligned ranges covering the files' data (sorted by data offset), merged
 * where they overlap or their gap is at most `gap` bytes.
 */
function alignedGroups(
  files: readonly FileToRestore[],
  archive: ArchiveToRead,
  unit: number,
  gap: number,
): { range: ByteRange; files: FileToRestore[] }[] {
  const groups: { range: ByteRange; files: FileToRestore[] }[] = [];
  let cur: { start: number; end: number; files: FileToRestore[] } | null = null;
  for (const f of files) {
    const r = alignRange(
      { start: f.dataOffset, end: f.dataOffset + f.length - 1 },
      archive.size,
      unit,
    );
    if (cur !== null && r.start - (cur.end + 1) <= gap) {
      cur.end = Math.max(cur.end, r.end);
      cur.files.push(f);
      continue;
    }
    if (cur !== null) groups.push({ range: { start: cur.start, end: cur.end }, files: cur.files });
    cur = { start: r.start, end: r.end, files: [f] };
  }
  if (cur !== null) groups.push({ range: { start: cur.start, end: cur.end }, files: cur.files });
  for (const g of groups) checkAligned(g.range, archive, unit);
  return groups;
}

/** A range this planner made must be one the store accepts; anything else is a bug here. */
function checkAligned(range: ByteRange, archive: ArchiveToRead, unit: number): void {
  const { start, end } = range;
  let problem: string | null = null;
  if (start % unit !== 0) problem = `start is not a multiple of ${unit}`;
  else if ((end + 1) % unit !== 0 && end + 1 !== archive.size) {
    problem = `end + 1 is neither a multiple of ${unit} nor the archive size`;
  } else if (unit % MIB === 0) problem = retrievalRangeProblem(range, archive.size);
  if (problem !== null) {
    throw new Error(
      `Planned range ${start}-${end} of archive ${archive.id} is not retrievable: ${problem}`,
    );
  }
}
