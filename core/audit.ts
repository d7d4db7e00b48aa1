/**
 * The pure parts of the audit: how big an hourly sample is, which archives
 * it takes (uniformly, by sequence number, without scanning the archives
 * table), the monthly retrieval budget, the md5 manifest the sampler sends
 * to the verifier, the comparison of a manifest with what the retrieved tar
 * holds, the choice and judgement of restore drills, and the report.
 *
 * Randomness is injected as a function giving numbers in [0, 1)
 * (`Math.random`, or {@linkcode prng} in tests), so every choice here can be
 * replayed with a seed.
 *
 * @example
 * ```ts
 * const range = await catalog.archiveSeqRange();
 * if (range !== null) {
 *   const n = sampleSize(range.count, { fraction: 1e-6, random: Math.random });
 *   const { rows } = await sampleBySeq(range, n, (seqs) => catalog.archivesBySeq(seqs), {
 *     random: Math.random,
 *   });
 * }
 * ```
 * @module
 */

import { createHash } from "node:crypto";
import {
  type ArchiveId,
  archiveId,
  type AuditId,
  auditId,
  type JobId,
  jobId,
  type RemoteArchiveId,
  remoteArchiveId,
} from "./ids.ts";
import { MANIFEST_NAME } from "./manifest.ts";
import { parseSize } from "./size.ts";

/** A source of uniform numbers in [0, 1). */
export type Random = () => number;

// ---------------------------------------------------------------------------
// Randomness helpers

/**
 * A uniform integer in [0, n). Uses one draw for n <= 2^32 (enough for any
 * 32-bit generator such as {@linkcode prng}), two draws above.
 *
 * @throws {RangeError} when n is not a positive safe integer or `random`
 *   returns something outside [0, 1)
 */
export function randomBelow(random: Random, n: number): number {
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new RangeError(`Cannot draw a random integer below ${n}: not a positive integer`);
  }
  if (n <= 2 ** 32) return Math.min(n - 1, Math.floor(draw(random) * n));
  const x = Math.floor(draw(random) * 2 ** 21) * 2 ** 32 + Math.floor(draw(random) * 2 ** 32);
  return x % n;
}

function draw(random: Random): number {
  const r = random();
  if (!(r >= 0 && r < 1)) {
    throw new RangeError(`Random source returned ${r}, not a number in [0, 1)`);
  }
  return r;
}

/**
 * Picks `n` distinct items uniformly at random (all of them when there are
 * fewer), keeping their original order.
 *
 * @example
 * ```ts
 * pickRandom(["a", "b", "c", "d"], 2, { random: prng(1) }); // e.g. ["b", "d"]
 * ```
 */
export function pickRandom<T>(
  items: readonly T[],
  n: number,
  options: { readonly random: Random },
): T[] {
  checkCount(n, "pick size");
  if (n >= items.length) return [...items];
  const idx = items.map((_, i) => i);
  for (let i = 0; i < n; i++) {
    const j = i + randomBelow(options.random, idx.length - i);
    [idx[i], idx[j]] = [idx[j]!, idx[i]!];
  }
  return idx.slice(0, n).sort((a, b) => a - b).map((i) => items[i]!);
}

function checkCount(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`Invalid ${what}: ${n} is not a non-negative integer`);
  }
}

// ---------------------------------------------------------------------------
// Sample size and sampling

/** Options of {@linkcode sampleSize}. */
export interface SampleSizeOptions {
  /** The expected share of archives to audit, in [0, 1] (e.g. `0.000001`). */
  readonly fraction: number;
  /** The smallest sample, whatever the fraction gives. Default 0. */
  readonly min?: number;
  /** The random source for the rounding. */
  readonly random: Random;
}

/**
 * How many archives to audit this run: `count * fraction` with randomized
 * rounding (`floor(x)`, plus one with probability `x - floor(x)`), so the
 * expected size is exactly `count * fraction` and a small fleet is still
 * audited over time; then at least `min` and at most `count`.
 *
 * @throws {RangeError} naming a count, fraction or min out of range
 *
 * @example
 * ```ts
 * sampleSize(2_500_000, { fraction: 1e-6, random: Math.random }); // 2 or 3, 2.5 on average
 * ```
 */
export function sampleSize(count: number, options: SampleSizeOptions): number {
  checkCount(count, "archive count");
  const { fraction, min = 0 } = options;
  if (!(Number.isFinite(fraction) && fraction >= 0 && fraction <= 1)) {
    throw new RangeError(`Invalid sample fraction: ${fraction} is not in [0, 1]`);
  }
  checkCount(min, "minimum sample size");
  const x = count * fraction;
  const whole = Math.floor(x);
  const n = whole + (draw(options.random) < x - whole ? 1 : 0);
  return Math.min(count, Math.max(min, n));
}

/** The sequence numbers of the committed archives, as `Catalog.archiveSeqRange` gives them. */
export interface SeqRange {
  /** The smallest sequence number. */
  readonly min: number;
  /** The largest sequence number (inclusive). */
  readonly max: number;
}

/** Options of {@linkcode pickSeqs}. */
export interface PickSeqsOptions {
  readonly random: Random;
  /** Sequence numbers not to pick (already tried). Default none. */
  readonly exclude?: ReadonlySet<number>;
}

/**
 * Picks `n` distinct sequence numbers uniformly from `[min, max]` minus
 * `exclude` (all that are left when fewer), in ascending order. Costs
 * O(n) for a sparse pick from a large range.
 *
 * @throws {RangeError} when the range is not of safe integers
 *
 * @example
 * ```ts
 * pickSeqs({ min: 1, max: 1_000_000 }, 3, { random: prng(7) }); // e.g. [40213, 511877, 903552]
 * ```
 */
export function pickSeqs(range: SeqRange, n: number, options: PickSeqsOptions): number[] {
  const { min, max } = range;
  if (!Number.isSafeInteger(min) || !Number.isSafeInteger(max)) {
    throw new RangeError(`Invalid sequence range: ${min}..${max} is not of integers`);
  }
  checkCount(n, "pick size");
  if (max < min || n === 0) return [];
  const exclude = options.exclude ?? new Set<number>();
  const span = max - min + 1;
  let excluded = 0;
  for (const s of exclude) if (s >= min && s <= max) excluded++;
  const k = Math.min(n, span - excluded);
  if (k <= 0) return [];
  if (span <= 4 * (k + excluded)) {
    // Dense: list what is left and take a random part of it.
    const left: number[] = [];
    for (let s = min; s <= max; s++) if (!exclude.has(s)) left.push(s);
    return pickRandom(left, k, options);
  }
  // Sparse: draw until k new ones; at most a quarter is taken, so few redraws.
  const picked = new Set<number>();
  while (picked.size < k) {
    const s = min + randomBelow(options.random, span);
    if (!exclude.has(s)) picked.add(s);
  }
  return [...picked].sort((a, b) => a - b);
}

/** Options of {@linkcode sampleBySeq}. */
export interface SampleBySeqOptions {
  readonly random: Random;
  /** Queries at most this many times. Default 8. */
  readonly maxRounds?: number;
  /** Asks for at most this many sequence numbers per query. Default 1000. */
  readonly maxBatch?: number;
}

/** What {@linkcode sampleBySeq} found. */
export interface SeqSample<T> {
  /** The rows picked, at most `n` (fewer when rounds ran out or there are fewer). */
  readonly rows: T[];
  /** Queries made. */
  readonly rounds: number;
  /** Sequence numbers asked for, in all. */
  readonly asked: number;
}

/**
 * Picks `n` rows uniformly from those whose sequence number lies in the
 * range, when the numbers may have gaps: asks `lookup` (e.g.
 * `Catalog.archivesBySeq`) for random numbers never asked before, keeps what
 * exists, and asks again for the rest. Each query asks for more numbers than
 * still needed, by the density `count / (max - min + 1)`; when more rows come
 * back than needed, a random part of them is kept. Every existing row is
 * equally likely to be picked.
 *
 * @param range the range and the number of rows in it (`Catalog.archiveSeqRange`)
 * @param lookup the rows for some sequence numbers (the ones that exist, any order)
 * @throws {RangeError} when `lookup` returns more rows than numbers asked for
 */
export async function sampleBySeq<T>(
  range: SeqRange & { readonly count: number },
  n: number,
  lookup: (seqs: readonly number[]) => Promise<readonly T[]>,
  options: SampleBySeqOptions,
): Promise<SeqSample<T>> {
  checkCount(n, "sample size");
  checkCount(range.count, "archive count");
  const { random, maxRounds = 8, maxBatch = 1000 } = options;
  const rows: T[] = [];
  const tried = new Set<number>();
  const span = range.max - range.min + 1;
  let found = 0;
  let rounds = 0;
  while (rows.length < n && rounds < maxRounds && tried.size < span) {
    const want = n - rows.length;
    // Rows not found yet per number not asked yet (at least one: the count may be stale).
    const density = Math.min(1, Math.max(1, range.count - found) / (span - tried.size));
    const ask = Math.min(maxBatch, Math.max(want, Math.ceil((want / density) * 1.25)));
    const seqs = pickSeqs(range, ask, { random, exclude: tried });
    if (seqs.length === 0) break;
    rounds++;
    const got = await lookup(seqs);
    if (got.length > seqs.length) {
      throw new RangeError(
        `Sequence lookup returned ${got.length} rows for ${seqs.length} sequence numbers`,
      );
    }
    for (const s of seqs) tried.add(s);
    found += got.length;
    rows.push(...pickRandom(got, want, { random }));
  }
  return { rows, rounds, asked: tried.size };
}

// ---------------------------------------------------------------------------
// Budget

/** The start of the calendar month (UTC) that `nowMs` falls in, in ms since the epoch. */
export function monthStartUtc(nowMs: number): number {
  const d = new Date(nowMs);
  if (Number.isNaN(d.getTime())) throw new RangeError(`Invalid time: ${nowMs}`);
  return Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), 1);
}

/** A monthly retrieval budget: absolute bytes, or a share of the stored bytes. */
export type BudgetSpec = { readonly bytes: number } | { readonly fraction: number };

/** The default budget: 5% of the stored bytes a month. */
export const DEFAULT_BUDGET: BudgetSpec = { fraction: 0.05 };

/**
 * Parses `--budget`: a percentage (`5%`), a fraction in [0, 1] without unit
 * (`0.05`; `1` is all the stored bytes), or a size with a unit or a whole
 * number of bytes above 1 (`50GiB`, `500MB`, `1073741824`).
 *
 * @throws {SyntaxError} naming the text when it is none of these
 *
 * @example
 * ```ts
 * parseBudget("5%"); // { fraction: 0.05 }
 * parseBudget("50GiB"); // { bytes: 53687091200 }
 * ```
 */
export function parseBudget(text: string): BudgetSpec {
  const t = text.trim();
  const pct = /^(\d+(?:\.\d+)?)\s*%$/.exec(t);
  if (pct) return { fraction: Number(pct[1]) / 100 };
  if (/^\d+(?:\.\d+)?$/.test(t)) {
    const v = Number(t);
    if (v <= 1) return { fraction: v };
    if (Number.isSafeInteger(v)) return { bytes: v };
    throw new SyntaxError(
      `Cannot parse budget "${text}": a number without unit is a fraction in [0, 1] or whole bytes`,
    );
  }
  try {
    return { bytes: parseSize(t) };
  } catch {
    throw new SyntaxError(
      `Cannot parse budget "${text}": expected bytes (50GiB), a fraction (0.05) or a percentage (5%)`,
    );
  }
}

/** The budget in bytes for `storedBytes` stored (the sum of archive sizes), rounded down. */
export function budgetBytes(spec: BudgetSpec, storedBytes: number): number {
  return "bytes" in spec ? spec.bytes : Math.floor(spec.fraction * storedBytes);
}

/** Whether retrieving `wantBytes` more keeps this month's retrievals within the budget. */
export function budgetVerdict(
  wantBytes: number,
  month: { readonly spentBytes: number; readonly budgetBytes: number },
): { readonly ok: boolean; readonly remainingBytes: number } {
  const remainingBytes = Math.max(0, month.budgetBytes - month.spentBytes);
  return { ok: wantBytes <= remainingBytes, remainingBytes };
}

// ---------------------------------------------------------------------------
// The audit manifest

/** The audit manifest format this code writes and reads. */
export const AUDIT_MANIFEST_VERSION = 1;

/** Where an expected md5 comes from. */
export type Md5Basis =
  /** Computed now from the file at the source. */
  | "live"
  /** The catalog's, because the file was deleted or replaced at the source. */
  | "catalog";

/** One tar entry the verifier must find. */
export interface AuditEntry {
  /** The tar entry name, as in the archive. */
  readonly name: string;
  readonly headerOffset: number;
  readonly dataOffset: number;
  readonly length: number;
  /** Lower-case hex. */
  readonly md5: string;
  readonly basis: Md5Basis;
}

/** What the sampler sends the verifier for one audit. */
export interface AuditManifest {
  readonly version: 1;
  readonly auditId: AuditId;
  readonly archiveId: ArchiveId;
  /** The store's location (`ColdStore.location`), which the verifier opens. */
  readonly store: string;
  readonly remoteId: RemoteArchiveId;
  /** The store's job id of the audit retrieval. */
  readonly jobId: JobId;
  readonly archiveSize: number;
  /** When the manifest was made, ms since the epoch. */
  readonly createdAt: number;
  /** The archive's files in tar order, without `.coldpack/manifest.json`. */
  readonly entries: readonly AuditEntry[];
}

const MD5 = /^[0-9a-f]{32}$/;
const TOP_KEYS = [
  "version",
  "auditId",
  "archiveId",
  "store",
  "remoteId",
  "jobId",
  "archiveSize",
  "createdAt",
  "entries",
] as const;
const ENTRY_KEYS = ["name", "headerOffset", "dataOffset", "length", "md5", "basis"] as const;

/**
 * Serializes an audit manifest: UTF-8 JSON, fixed key order, entries sorted
 * by `headerOffset`, one entry per line. The same manifest always gives the
 * same bytes; it is validated first, like {@linkcode parseManifest}.
 *
 * @throws {TypeError} naming the bad field
 */
export function buildManifest(m: AuditManifest): Uint8Array {
  const sorted = { ...m, entries: [...m.entries].sort((a, b) => a.headerOffset - b.headerOffset) };
  const checked = parseObject(sorted);
  const head = JSON.stringify(Object.fromEntries(
    TOP_KEYS.filter((k) => k !== "entries").map((k) => [k, checked[k]]),
  ));
  const entries = checked.entries.map((e) =>
    JSON.stringify(Object.fromEntries(ENTRY_KEYS.map((k) => [k, e[k]])))
  );
  const body = entries.length === 0 ? "[]" : `[\n${entries.join(",\n")}\n]`;
  return new TextEncoder().encode(`${head.slice(0, -1)},"entries":${body}}\n`);
}

/**
 * Parses and strictly validates an audit manifest: every field present with
 * its type, no unknown field, entries in tar order with distinct names and
 * within the archive, and `.coldpack/manifest.json` not listed.
 *
 * @throws {SyntaxError} when the text is not UTF-8 JSON
 * @throws {TypeError} naming the field: `Invalid audit manifest: entries[3].md5 is not 32 lower-case hex digits`
 */
export function parseManifest(text: string | Uint8Array): AuditManifest {
  let v: unknown;
  try {
    const s = typeof text === "string" ? text : new TextDecoder("utf-8", { fatal: true }).decode(
      text,
    );
    v = JSON.parse(s);
  } catch (e) {
    throw new SyntaxError(
      `Cannot parse audit manifest: not UTF-8 JSON: ${e instanceof Error ? e.message : e}`,
    );
  }
  return parseObject(v);
}

/** The sha256 (lower hex) of the exact manifest bytes sent. */
export function manifestDigest(bytes: Uint8Array | string): string {
  return createHash("sha256").update(bytes).digest("hex");
}

function bad(field: string, why: string): never {
  throw new TypeError(`Invalid audit manifest: ${field} ${why}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function onlyKeys(o: Record<string, unknown>, keys: readonly string[], at: string): void {
  for (const k of Object.keys(o)) {
    if (!keys.includes(k)) bad(at === "" ? k : `${at}.${k}`, "is not a known field");
  }
}

function text(o: Record<string, unknown>, key: string, at: string): string {
  const v = o[key];
  if (typeof v !== "string") bad(at, v === undefined ? "is missing" : "is not a string");
  if (v.length === 0) bad(at, "is empty");
  return v;
}

function int(o: Record<string, unknown>, key: string, at: string): number {
  const v = o[key];
  if (!Number.isSafeInteger(v) || (v as number) < 0) {
    bad(at, v === undefined ? "is missing" : "is not a non-negative integer");
  }
  return v as number;
}

function branded<T>(make: (s: string) => T, s: string, at: string): T {
  try {
    return make(s);
  } catch {
    return bad(at, `is not a valid id: ${JSON.stringify(s)}`);
  }
}

function parseEntry(v: unknown, i: number, archiveSize: number): AuditEntry {
  const at = `entries[${i}]`;
  if (!isObject(v)) bad(at, "is not an object");
  onlyKeys(v, ENTRY_KEYS, at);
  const name = text(v, "name", `${at}.name`);
  if (name.includes("\0")) bad(`${at}.name`, "contains a NUL character");
  if (name === MANIFEST_NAME) bad(`${at}.name`, `is the archive's own ${MANIFEST_NAME}`);
  const headerOffset = int(v, "headerOffset", `${at}.headerOffset`);
  const dataOffset = int(v, "dataOffset", `${at}.dataOffset`);
  const length = int(v, "length", `${at}.length`);
  if (headerOffset % 512 !== 0) bad(`${at}.headerOffset`, "is not a multiple of 512");
  if (dataOffset % 512 !== 0 || dataOffset <= headerOffset) {
    bad(`${at}.dataOffset`, "is not a block boundary after headerOffset");
  }
  if (dataOffset + length > archiveSize) {
    bad(`${at}.length`, `ends at ${dataOffset + length}, past archiveSize ${archiveSize}`);
  }
  const md5 = text(v, "md5", `${at}.md5`);
  if (!MD5.test(md5)) bad(`${at}.md5`, "is not 32 lower-case hex digits");
  const basis = v.basis;
  if (basis !== "live" && basis !== "catalog") {
    bad(`${at}.basis`, basis === undefined ? "is missing" : 'is not "live" or "catalog"');
  }
  return { name, headerOffset, dataOffset, length, md5, basis };
}

function parseObject(v: unknown): AuditManifest {
  if (!isObject(v)) bad("the top level", "is not an object");
  onlyKeys(v, TOP_KEYS, "");
  if (v.version !== AUDIT_MANIFEST_VERSION) {
    bad(
      "version",
      v.version === undefined ? "is missing" : `${JSON.stringify(v.version)} is not 1`,
    );
  }
  const audit = branded(auditId, text(v, "auditId", "auditId"), "auditId");
  const archive = branded(archiveId, text(v, "archiveId", "archiveId"), "archiveId");
  const store = text(v, "store", "store");
  const remote = branded(remoteArchiveId, text(v, "remoteId", "remoteId"), "remoteId");
  const job = branded(jobId, text(v, "jobId", "jobId"), "jobId");
  const archiveSize = int(v, "archiveSize", "archiveSize");
  const createdAt = int(v, "createdAt", "createdAt");
  if (!Array.isArray(v.entries)) {
    bad("entries", v.entries === undefined ? "is missing" : "is not an array");
  }
  const entries = (v.entries as unknown[]).map((e, i) => parseEntry(e, i, archiveSize));
  const names = new Set<string>();
  entries.forEach((e, i) => {
    if (names.has(e.name)) bad(`entries[${i}].name`, `repeats ${JSON.stringify(e.name)}`);
    names.add(e.name);
    const prev = entries[i - 1];
    if (prev !== undefined && e.headerOffset < prev.dataOffset + prev.length) {
      bad(`entries[${i}].headerOffset`, "is not after the previous entry's data (tar order)");
    }
  });
  return {
    version: AUDIT_MANIFEST_VERSION,
    auditId: audit,
    archiveId: archive,
    store,
    remoteId: remote,
    jobId: job,
    archiveSize,
    createdAt,
    entries,
  };
}

// ---------------------------------------------------------------------------
// Findings

/** What can be wrong with an audited archive. */
export type FindingKind =
  | "missing-entry"
  | "extra-entry"
  | "size-mismatch"
  | "md5-mismatch"
  | "unreadable-tar";

/** One thing the verifier found wrong. */
export interface Finding {
  readonly kind: FindingKind;
  /** The tar entry concerned, when one is. */
  readonly name?: string;
  /** What the manifest says (length in bytes, md5, or for `unreadable-tar` nothing). */
  readonly expected?: string | number;
  /** What the archive holds (length, md5, or for `unreadable-tar` the byte offset). */
  readonly actual?: string | number;
  /** One sentence for the mail and the logs. */
  readonly detail: string;
}

/** One tar entry as the verifier read it completely from the retrieved archive. */
export interface ObservedEntry {
  readonly name: string;
  /** Data bytes read. */
  readonly size: number;
  /** md5 of the data, lower hex. */
  readonly md5: string;
}

/** Where and why the tar could not be read further. */
export interface Unreadable {
  /** The byte offset in the archive where reading failed. */
  readonly offset: number;
  readonly reason: string;
}

const BASIS_TEXT: Record<Md5Basis, string> = {
  live: "md5 of the live source file",
  catalog: "the catalog's md5 (file deleted or replaced at the source)",
};

/**
 * Compares a manifest with the entries read from the retrieved archive.
 * Findings come in a fixed order: the manifest's entries in tar order
 * (`missing-entry`, `size-mismatch`, or `md5-mismatch`; a size mismatch is
 * not also an md5 mismatch), then entries the manifest does not list in the
 * order read (`extra-entry`; `.coldpack/manifest.json` is expected and never
 * extra; a second entry with a listed name is extra), then `unreadable-tar`.
 * When the tar was unreadable, manifest entries not read whose data does not
 * end before the failing offset are counted in the `unreadable-tar` finding
 * rather than reported missing one by one. No findings: the archive is sound.
 *
 * @param observed the entries read completely, in tar order
 * @param unreadable where reading stopped, when it did
 */
export function compareEntries(
  manifest: AuditManifest,
  observed: readonly ObservedEntry[],
  unreadable?: Unreadable,
): Finding[] {
  const seen = new Map<string, ObservedEntry>();
  const extra: Finding[] = [];
  const listed = new Set(manifest.entries.map((e) => e.name));
  for (const o of observed) {
    if (o.name === MANIFEST_NAME && !seen.has(o.name)) {
      seen.set(o.name, o);
    } else if (seen.has(o.name)) {
      extra.push({
        kind: "extra-entry",
        name: o.name,
        actual: o.size,
        detail: `The archive holds a second entry named ${
          JSON.stringify(o.name)
        } (${o.size} bytes)`,
      });
    } else {
      seen.set(o.name, o);
      if (!listed.has(o.name)) {
        extra.push({
          kind: "extra-entry",
          name: o.name,
          actual: o.size,
          detail: `The archive holds ${JSON.stringify(o.name)} (${o.size} bytes), ` +
            "which the manifest does not list",
        });
      }
    }
  }
  const findings: Finding[] = [];
  let unchecked = 0;
  for (const e of manifest.entries) {
    const o = seen.get(e.name);
    const quoted = JSON.stringify(e.name);
    if (o === undefined) {
      if (unreadable !== undefined && e.dataOffset + e.length > unreadable.offset) {
        unchecked++;
        continue;
      }
      findings.push({
        kind: "missing-entry",
        name: e.name,
        expected: e.length,
        detail: `The archive has no entry ${quoted} (expected at byte ${e.headerOffset}, ` +
          `${e.length} bytes)`,
      });
    } else if (o.size !== e.length) {
      findings.push({
        kind: "size-mismatch",
        name: e.name,
        expected: e.length,
        actual: o.size,
        detail: `Entry ${quoted} has ${o.size} bytes, expected ${e.length}`,
      });
    } else if (o.md5 !== e.md5) {
      findings.push({
        kind: "md5-mismatch",
        name: e.name,
        expected: e.md5,
        actual: o.md5,
        detail: `Entry ${quoted} has md5 ${o.md5}, expected ${e.md5} (${BASIS_TEXT[e.basis]})`,
      });
    }
  }
  findings.push(...extra);
  if (unreadable !== undefined) {
    findings.push({
      kind: "unreadable-tar",
      actual: unreadable.offset,
      detail: `The archive cannot be read past byte ${unreadable.offset}: ${unreadable.reason}` +
        (unchecked > 0
          ? ` (${unchecked} listed entr${unchecked === 1 ? "y" : "ies"} not checked)`
          : ""),
    });
  }
  return findings;
}

// ---------------------------------------------------------------------------
// Drills

/** A day, the default window for a drill's file to come back. */
export const DRILL_WINDOW_MS = 24 * 3600 * 1000;

/**
 * Picks drill files: one uniformly random eligible file from each group
 * (e.g. the files of each archive picked by {@linkcode sampleBySeq}), from
 * the first groups that have one, until `n` are picked. Spreading the picks
 * over archives tests more archives for the same number of files.
 *
 * @param groups candidate files, one list per archive
 */
export function pickDrillFiles<T>(
  groups: readonly (readonly T[])[],
  n: number,
  options: { readonly random: Random; readonly eligible?: (file: T) => boolean },
): T[] {
  checkCount(n, "drill size");
  const out: T[] = [];
  for (const g of groups) {
    if (out.length >= n) break;
    const ok = options.eligible === undefined ? g : g.filter(options.eligible);
    const [one] = pickRandom(ok, 1, options);
    if (one !== undefined) out.push(one);
  }
  return out;
}

/** What is known about one drill's restore when it is checked. */
export interface DrillProgress {
  /** When the drill asked for the restore, ms. */
  readonly startedAt: number;
  /** The restore's state (`RestoreRow.state`). */
  readonly restoreState: "pending" | "done" | "failed";
  /** When the restore finished, ms, if it did. */
  readonly finishedAt: number | null;
  /** Whether the destination now holds the original bytes; null when not checked. */
  readonly identical: boolean | null;
}

/** The outcome of a drill check. */
export interface DrillVerdict {
  /** `failed` means: alert. */
  readonly state: "pending" | "ok" | "failed";
  readonly reason: string;
}

/**
 * Judges one drill: `ok` when the file was restored byte-identical within
 * the window, `failed` when it was restored different, the restore failed,
 * or the window passed without a good restore, else `pending`.
 *
 * @param options.windowMs default {@linkcode DRILL_WINDOW_MS}
 */
export function judgeDrill(
  d: DrillProgress,
  nowMs: number,
  options: { readonly windowMs?: number } = {},
): DrillVerdict {
  const windowMs = options.windowMs ?? DRILL_WINDOW_MS;
  const deadline = d.startedAt + windowMs;
  const hours = `${+(windowMs / 3600000).toFixed(2)} h`;
  if (d.restoreState === "failed") return { state: "failed", reason: "the restore failed" };
  if (d.restoreState === "done") {
    if (d.identical === false) {
      return { state: "failed", reason: "the restored file differs from the original" };
    }
    if (d.finishedAt !== null && d.finishedAt > deadline) {
      return { state: "failed", reason: `the restore finished after the ${hours} window` };
    }
    if (d.identical === true) return { state: "ok", reason: "restored byte-identical" };
  }
  if (nowMs > deadline) {
    return { state: "failed", reason: `not restored byte-identical within ${hours}` };
  }
  return { state: "pending", reason: "waiting for the restore" };
}

// ---------------------------------------------------------------------------
// Report

/** An audit as the report shows it (a catalog audit row fits). */
export interface AuditSummaryRow {
  readonly id: string;
  readonly archiveId: string;
  readonly state: string;
  readonly findings: number | null;
  readonly createdAt: number;
  readonly note?: string | null;
}

/** A drill as the report shows it (a catalog drill row fits). */
export interface DrillSummaryRow {
  readonly id: string;
  readonly fileId: number;
  readonly dest: string;
  readonly state: string;
  readonly startedAt: number;
  readonly note?: string | null;
}

/** Counts of audits and drills, for `report --json` and the top of the text report. */
export interface ReportSummary {
  readonly audits: {
    readonly total: number;
    readonly byState: Readonly<Record<string, number>>;
    readonly findings: number;
  };
  readonly drills: { readonly total: number; readonly byState: Readonly<Record<string, number>> };
}

const AUDIT_STATES = ["verified", "failed", "sent", "skipped", "error"];
const DRILL_STATES = ["ok", "pending", "failed", "alerted"];

function countStates(rows: readonly { state: string }[], known: string[]): Record<string, number> {
  const out: Record<string, number> = Object.fromEntries(known.map((s) => [s, 0]));
  for (const r of rows) out[r.state] = (out[r.state] ?? 0) + 1;
  return out;
}

/** Counts audits and drills by state, and the audit findings. */
export function summarize(
  audits: readonly AuditSummaryRow[],
  drills: readonly DrillSummaryRow[],
): ReportSummary {
  return {
    audits: {
      total: audits.length,
      byState: countStates(audits, AUDIT_STATES),
      findings: audits.reduce((n, a) => n + (a.findings ?? 0), 0),
    },
    drills: { total: drills.length, byState: countStates(drills, DRILL_STATES) },
  };
}

function when(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16).replace("T", " ") + "Z";
}

function states(byState: Readonly<Record<string, number>>): string {
  return Object.entries(byState).map(([s, n]) => `${n} ${s}`).join(", ");
}

/**
 * The human report: a summary line each for audits and drills, then one line
 * per audit and per drill in the order given (newest first is usual).
 *
 * @example
 * ```
 * Audits: 2 (1 verified, 1 failed, 0 sent, 0 skipped, 0 error), 3 findings
 *   2026-11-22 10:53Z  failed    a20261122T105301.123Z-0102030405ff  archive 20261001T...  3 findings
 * Drills: 1 (1 ok, 0 pending, 0 failed, 0 alerted)
 *   2026-11-01 03:00Z  ok        d20261101T030000.000Z-...  file 42 -> mogilefs
 * ```
 */
export function formatReport(
  audits: readonly AuditSummaryRow[],
  drills: readonly DrillSummaryRow[],
): string {
  const s = summarize(audits, drills);
  const lines = [
    `Audits: ${s.audits.total} (${states(s.audits.byState)}), ${s.audits.findings} finding${
      s.audits.findings === 1 ? "" : "s"
    }`,
  ];
  for (const a of audits) {
    const f = a.findings === null ? "" : `  ${a.findings} finding${a.findings === 1 ? "" : "s"}`;
    const note = a.note ? `  (${a.note})` : "";
    lines.push(
      `  ${when(a.createdAt)}  ${a.state.padEnd(8)}  ${a.id}  archive ${a.archiveId}${f}${note}`,
    );
  }
  lines.push(`Drills: ${s.drills.total} (${states(s.drills.byState)})`);
  for (const d of drills) {
    const note = d.note ? `  (${d.note})` : "";
    lines.push(
      `  ${when(d.startedAt)}  ${d.state.padEnd(8)}  ${d.id}  file ${d.fileId} -> ${d.dest}${note}`,
    );
  }
  return lines.join("\n") + "\n";
}
