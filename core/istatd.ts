/**
 * istatd's stat line protocol (PROTOCOLS.md section 5) without any I/O: the
 * metrics agent's parser, fan-out, 10-second aggregation, forward format and
 * Prometheus text.
 *
 * Input lines, LF-terminated:
 *
 * - `name value`, `name unixtime value`, `name unixtime sum sumsq min max count`;
 *   a leading `*` marks an event counter (only its sum is forwarded), else a gauge.
 * - `#key value`: agent metadata (`#hostname web12`, `#proto x 1 1`).
 * - Fields are separated by runs of spaces, tabs or CRs; CR counts as white
 *   space, so `name 1\r\n` is `name 1`. Blank lines are skipped, not counted.
 * - Names are lower-cased (A-Z only). After that a name may hold only
 *   `a-z 0-9 _ . -` and `^`; `.` separates parts and no part may be empty (no
 *   leading, trailing or double dot). `a^b^c` fans one sample out to `a.b` and
 *   `a.c`: the first `^` part is the prefix, every later part a suffix; an
 *   empty prefix or suffix (`^b`, `a^`, `a^^b`, `a.^b`) is malformed.
 * - Numbers are finite decimals: optional sign, digits with an optional
 *   fraction, optional exponent (`-1.5`, `.5`, `2e-3`). `NaN`, `Infinity`,
 *   hex and overflow (`1e999`) are malformed. Times are unix seconds `>= 0`.
 * - An aggregated line needs `count > 0`, `sumsq >= 0` and `min <= max`.
 * - A line longer than 4,096 UTF-8 bytes (CR and LF not counted) is malformed.
 *
 * Malformed lines are counted and skipped with a reason that names the cause:
 * `line too long`, `wrong field count`, `bad name`, `bad number`, `negative time`,
 * `bad aggregate`, `bad metadata`; at aggregation `kind conflict` (a name seen
 * both as gauge and as event keeps its first kind) and `too many counters`
 * (over {@linkcode AggregatorOptions.maxCounters}).
 *
 * Speed: {@linkcode LineReader} scans UTF-8 bytes by hand and finds names
 * in the {@linkcode Aggregator}'s own hash table without making strings, so a
 * sample of a known name allocates nothing; give it socket bytes with
 * `feedBytes` (`feed` takes text and encodes it first). Memory: about 310
 * bytes per distinct name (typed arrays, no object per name), plus the
 * lines of one flush while they wait ({@linkcode Aggregator.takeLines}).
 *
 * @example
 * ```ts
 * const agg = new Aggregator();
 * const reader = new LineReader(agg);
 * reader.feed("web.hits^a^b 3\n*jobs.done 170000000", 1_700_000_004);
 * reader.feed("5 2\n", 1_700_000_004); // the line continues across feeds
 * agg.takeLines();
 * // ["web.hits.a 1700000000 3 9 3 3 1", "web.hits.b 1700000000 3 9 3 3 1",
 * //  "*jobs.done 1700000000 2"]
 * ```
 * @module
 */

/** Bucket width in seconds: a sample at `t` belongs to `floor(t / 10) * 10`. */
export const BUCKET_SECONDS = 10;

/** Default longest line, in UTF-8 bytes without its LF. */
export const MAX_LINE_BYTES = 4096;

/** Default limit of distinct names an {@linkcode Aggregator} holds. */
export const MAX_COUNTERS = 250_000;

/** A gauge keeps count/sum/sumsq/min/max; an event only its sum matters. */
export type Kind = "gauge" | "event";

/** One aggregate: what the agent keeps per (name, bucket) and forwards. */
export interface Aggregate {
  readonly name: string;
  readonly kind: Kind;
  /** Bucket start, unix seconds. */
  readonly time: number;
  count: number;
  sum: number;
  sumsq: number;
  min: number;
  max: number;
}

/** What a {@linkcode LineReader} has seen. `lines` = sample lines + `malformed` + `meta`. */
export interface IngestStats {
  /** Non-blank lines. */
  lines: number;
  /** Samples added to the aggregator (a fan-out line adds one per suffix). */
  samples: number;
  /** Lines skipped as malformed (and lines with a sample the aggregator refused). */
  malformed: number;
  /** `#key value` lines. */
  meta: number;
}

/** One sample of a parsed line; `time` is as sent (not floored), `null` when absent. */
export interface ParsedSample {
  readonly name: string;
  readonly kind: Kind;
  readonly time: number | null;
  readonly count: number;
  readonly sum: number;
  readonly sumsq: number;
  readonly min: number;
  readonly max: number;
}

/** The meaning of one line. */
export type ParsedLine =
  | { readonly kind: "sample"; readonly samples: readonly ParsedSample[] }
  | { readonly kind: "meta"; readonly key: string; readonly value: string }
  | { readonly kind: "empty" }
  | { readonly kind: "malformed"; readonly reason: string };

/** One cumulative total of {@linkcode Aggregator.totals}. */
export interface CounterTotal {
  readonly name: string;
  readonly kind: Kind;
  /** Samples since start. */
  readonly count: number;
  /** Sum of the values since start. */
  readonly sum: number;
  /** The last value seen (for an aggregated line: its mean, sum / count). */
  readonly last: number;
}

/** One metric for {@linkcode renderPrometheus}. */
export interface PrometheusMetric {
  /** Any name; sanitized with {@linkcode prometheusName}. */
  readonly name: string;
  readonly help?: string;
  readonly type: "counter" | "gauge";
  readonly value: number;
  readonly labels?: Record<string, string>;
}

// ---------------------------------------------------------------------------
// Scanner: one line between two indexes of a byte array (UTF-8). Nothing is
// allocated on the path of a sample line of a known name.

const OK = 1;
const UPPER = 2;
const DOT = 3;
const CARET = 4;
/** Name byte classes; 0 = not allowed (every byte >= 0x80 too). */
const NAME_CLASS = new Uint8Array(256);
for (const c of "abcdefghijklmnopqrstuvwxyz0123456789_-") NAME_CLASS[c.charCodeAt(0)] = OK;
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZ") NAME_CLASS[c.charCodeAt(0)] = UPPER;
NAME_CLASS[46] = DOT;
NAME_CLASS[94] = CARET;
/** The first character a name may not hold (after lower-casing), for the reason text. */
const NOT_NAME = /[^a-z0-9_.^-]/u;

const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;

const SAMPLE = 0;
const META = 1;
const EMPTY = 2;
const BAD = 3;

/** `10 ** k` for the exact fast path of number parsing. */
const POW10 = Array.from({ length: 23 }, (_, k) => 10 ** k);

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Where the last {@linkcode scanNumber} stopped. */
let numberEnd = 0;
/**
 * The numeric fields of the last scanned line (after the name). Numbers go
 * through typed arrays rather than arguments and return values, which V8
 * would box on the heap, one allocation per number.
 */
const field = new Float64Array(6);
/** One sample for `State.addSample`: time (unfloored), count, sum, sumsq, min, max. */
const sample = new Float64Array(6);
const S_TIME = 0;
const S_COUNT = 1;
const S_SUM = 2;
const S_SUMSQ = 3;
const S_MIN = 4;
const S_MAX = 5;

function isSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 13;
}

/** Finishes an FNV-1a hash with a mix so that its low bits spread well. */
function finish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x45d9f3b);
  // 30 bits: a small integer for V8, never a boxed number.
  return (h ^ (h >>> 16)) & 0x3fffffff;
}

/** The hash {@linkcode scanLine} computes for a name (`name` already lower-case). */
function hashName(name: string): number {
  let h = FNV_OFFSET;
  for (let i = 0; i < name.length; i++) h = Math.imul(h ^ name.charCodeAt(i), FNV_PRIME);
  return finish(h);
}

/** `b[start, end)` as a string, for bytes known to be ASCII. */
function ascii(b: Uint8Array, start: number, end: number): string {
  let out = "";
  for (let at = start; at < end; at += 1024) {
    out += String.fromCharCode(...b.subarray(at, Math.min(end, at + 1024)));
  }
  return out;
}

/**
 * Parses the decimal token at `i` (up to white space or `end`; `i < end`)
 * into `field[slot]` and leaves its end in `numberEnd`. Returns false when
 * the token is not a finite decimal. Up to 15 significant digits and a
 * decimal exponent within 22 are computed exactly as `m * 10^e` or
 * `m / 10^e` (both operands exact, so correctly rounded, as `Number` would);
 * anything else is checked here and converted by `Number`.
 */
function scanNumber(b: Uint8Array, i: number, end: number, slot: number): boolean {
  const start = i;
  let c = b[i]!;
  let negative = false;
  if (c === 45 || c === 43) {
    negative = c === 45;
    i++;
  }
  let mantissa = 0;
  let significant = 0;
  let digits = 0;
  let scale = 0;
  let slow = false;
  while (i < end) {
    c = b[i]!;
    if (c < 48 || c > 57) break;
    if (significant < 15) {
      mantissa = mantissa * 10 + (c - 48);
      if (mantissa !== 0) significant++;
    } else {
      slow = true;
    }
    digits++;
    i++;
  }
  if (i < end && b[i] === 46) {
    i++;
    while (i < end) {
      c = b[i]!;
      if (c < 48 || c > 57) break;
      if (significant < 15) {
        mantissa = mantissa * 10 + (c - 48);
        if (mantissa !== 0) significant++;
        scale++;
      } else {
        slow = true;
      }
      digits++;
      i++;
    }
  }
  let valid = digits > 0;
  let exponent = 0;
  if (valid && i < end && (b[i] === 101 || b[i] === 69)) {
    i++;
    let negativeExponent = false;
    if (i < end && (b[i] === 45 || b[i] === 43)) {
      negativeExponent = b[i] === 45;
      i++;
    }
    let exponentDigits = 0;
    while (i < end) {
      c = b[i]!;
      if (c < 48 || c > 57) break;
      if (exponent < 100_000) exponent = exponent * 10 + (c - 48);
      exponentDigits++;
      i++;
    }
    if (exponentDigits === 0) valid = false;
    if (negativeExponent) exponent = -exponent;
  }
  if (i < end && !isSpace(b[i]!)) {
    valid = false;
    while (i < end && !isSpace(b[i]!)) i++;
  }
  numberEnd = i;
  if (!valid) return false;
  const e10 = exponent - scale;
  if (slow || e10 > 22 || e10 < -22) {
    const value = Number(ascii(b, start, i));
    field[slot] = value;
    return Number.isFinite(value);
  }
  const value = e10 >= 0 ? mantissa * POW10[e10]! : mantissa / POW10[-e10]!;
  field[slot] = negative ? -value : value;
  return true;
}

/** The scanner's results for the last line (one shared instance; nothing is reentrant). */
const scan = {
  nameStart: 0,
  nameEnd: 0,
  event: false,
  upper: false,
  fan: false,
  /** Hash of the lower-cased name, as `hashName` computes it. */
  hash: 0,
  /** Numeric fields after the name (in `field`): 1, 2 or 6. */
  n: 0,
  reason: "",
  metaKey: "",
  metaValue: "",
};

function quote(s: string): string {
  return JSON.stringify(s.length > 100 ? s.slice(0, 100) + "..." : s);
}

function badNameReason(name: string, why: string): string {
  return `bad name ${quote(name)}: ${why}`;
}

/** Scans `b[start, end)`: returns SAMPLE, META, EMPTY or BAD and fills `scan`. */
function scanLine(b: Uint8Array, start: number, end: number): number {
  let i = start;
  while (i < end && isSpace(b[i]!)) i++;
  while (end > i && isSpace(b[end - 1]!)) end--;
  if (i === end) return EMPTY;
  let c = b[i]!;
  if (c === 35) {
    let k = i + 1;
    while (k < end && !isSpace(b[k]!)) k++;
    if (k === i + 1) {
      scan.reason = "bad metadata: no key after #";
      return BAD;
    }
    scan.metaKey = decoder.decode(b.subarray(i + 1, k));
    while (k < end && isSpace(b[k]!)) k++;
    scan.metaValue = decoder.decode(b.subarray(k, end));
    return META;
  }
  let event = false;
  if (c === 42) {
    event = true;
    i++;
  }
  const nameStart = i;
  let upper = false;
  let fan = false;
  let afterSeparator = true;
  let emptyPart = false;
  let badChar = false;
  let hash = FNV_OFFSET;
  while (i < end) {
    c = b[i]!;
    if (c === 32 || c === 9 || c === 13) break;
    const k = NAME_CLASS[c]!;
    if (k === OK) {
      hash = Math.imul(hash ^ c, FNV_PRIME);
      afterSeparator = false;
    } else if (k === DOT || k === CARET) {
      hash = Math.imul(hash ^ c, FNV_PRIME);
      if (afterSeparator) emptyPart = true;
      afterSeparator = true;
      if (k === CARET) fan = true;
    } else if (k === UPPER) {
      hash = Math.imul(hash ^ (c + 32), FNV_PRIME);
      upper = true;
      afterSeparator = false;
    } else {
      badChar = true;
      afterSeparator = false;
    }
    i++;
  }
  const nameEnd = i;
  if (afterSeparator) emptyPart = true;
  let fields = 1;
  let badStart = -1;
  let badEnd = -1;
  while (true) {
    while (i < end && isSpace(b[i]!)) i++;
    if (i >= end) break;
    fields++;
    if (fields > 7) {
      while (i < end && !isSpace(b[i]!)) i++;
      continue;
    }
    const tokenStart = i;
    const valid = scanNumber(b, i, end, fields - 2);
    i = numberEnd;
    if (!valid && badStart < 0) {
      badStart = tokenStart;
      badEnd = i;
    }
  }
  if (fields !== 2 && fields !== 3 && fields !== 7) {
    scan.reason = `wrong field count: ${fields} field${
      fields === 1 ? "" : "s"
    }, expected 2 (name value), 3 (name time value) or 7 (name time sum sumsq min max count)`;
    return BAD;
  }
  if (nameEnd === nameStart || badChar || emptyPart) {
    const name = decoder.decode(b.subarray(event ? nameStart - 1 : nameStart, nameEnd));
    if (nameEnd === nameStart) {
      scan.reason = badNameReason(name, "empty name");
    } else if (badChar) {
      const bad = NOT_NAME.exec(name.slice(event ? 1 : 0).toLowerCase())?.[0] ?? "?";
      scan.reason = badNameReason(
        name,
        `character ${quote(bad)} not allowed (only a-z 0-9 _ . - and ^ for fan-out)`,
      );
    } else {
      scan.reason = badNameReason(
        name,
        "empty part (a leading, trailing or double . or ^, or an empty fan-out prefix or suffix)",
      );
    }
    return BAD;
  }
  if (badStart >= 0) {
    scan.reason = `bad number ${
      quote(decoder.decode(b.subarray(badStart, badEnd)))
    }: not a finite decimal number`;
    return BAD;
  }
  if (fields >= 3 && field[0]! < 0) {
    scan.reason = `negative time ${field[0]}: times are unix seconds >= 0`;
    return BAD;
  }
  if (fields === 7) {
    if (!(field[5]! > 0)) {
      scan.reason = `bad aggregate: count ${field[5]} must be > 0`;
      return BAD;
    }
    if (field[2]! < 0) {
      scan.reason = `bad aggregate: sumsq ${field[2]} must be >= 0`;
      return BAD;
    }
    if (field[3]! > field[4]!) {
      scan.reason = `bad aggregate: min ${field[3]} > max ${field[4]}`;
      return BAD;
    }
  }
  scan.nameStart = nameStart;
  scan.nameEnd = nameEnd;
  scan.event = event;
  scan.upper = upper;
  scan.fan = fan;
  scan.hash = finish(hash);
  scan.n = fields - 1;
  return SAMPLE;
}

/** Fills `sample` from the scanned line's fields; a line without a time is at `nowSec`. */
function toSample(nowSec: number): void {
  const n = scan.n;
  if (n === 6) {
    sample[S_TIME] = field[0]!;
    sample[S_SUM] = field[1]!;
    sample[S_SUMSQ] = field[2]!;
    sample[S_MIN] = field[3]!;
    sample[S_MAX] = field[4]!;
    sample[S_COUNT] = field[5]!;
    return;
  }
  let v: number;
  if (n === 2) {
    sample[S_TIME] = field[0]!;
    v = field[1]!;
  } else {
    sample[S_TIME] = nowSec;
    v = field[0]!;
  }
  sample[S_COUNT] = 1;
  sample[S_SUM] = v;
  sample[S_SUMSQ] = v * v;
  sample[S_MIN] = v;
  sample[S_MAX] = v;
}

/** The name of the scanned sample line, lower-cased. */
function scannedName(b: Uint8Array): string {
  const name = ascii(b, scan.nameStart, scan.nameEnd);
  return scan.upper ? name.toLowerCase() : name;
}

/** `a^b^c` -> `["a.b", "a.c"]` (the scanner has checked that no part is empty). */
function fanOut(name: string): string[] {
  const parts = name.split("^");
  const prefix = parts[0]!;
  const names: string[] = [];
  for (let k = 1; k < parts.length; k++) names.push(prefix + "." + parts[k]!);
  return names;
}

/** `end` without trailing CRs. */
function withoutCr(b: Uint8Array, start: number, end: number): number {
  while (end > start && b[end - 1] === 13) end--;
  return end;
}

/** Why a line is too long; `bytes` is its length when known (else it is still coming). */
function tooLongReason(limit: number, bytes?: number): string {
  return bytes === undefined
    ? `line too long: over ${limit} bytes and no LF yet`
    : `line too long: ${bytes} bytes, limit ${limit}`;
}

/**
 * Parses one line (without its LF) the way the {@linkcode LineReader} does;
 * for tests and the test master.
 *
 * @param line one line, with or without a trailing CR
 * @param options.maxLine longest line in UTF-8 bytes; default 4,096
 *
 * @example
 * ```ts
 * parseLine("*Web^a^b 17000 2");
 * // { kind: "sample", samples: [{ name: "web.a", kind: "event", time: 17000, count: 1,
 * //   sum: 2, sumsq: 4, min: 2, max: 2 }, { name: "web.b", ... }] }
 * parseLine("web 1 2 3"); // { kind: "malformed", reason: "wrong field count: 4 fields, ..." }
 * ```
 */
export function parseLine(line: string, options: { maxLine?: number } = {}): ParsedLine {
  const maxLine = options.maxLine ?? MAX_LINE_BYTES;
  const b = encoder.encode(line);
  const end = withoutCr(b, 0, b.length);
  if (end > maxLine) return { kind: "malformed", reason: tooLongReason(maxLine, end) };
  const r = scanLine(b, 0, end);
  if (r === EMPTY) return { kind: "empty" };
  if (r === META) return { kind: "meta", key: scan.metaKey, value: scan.metaValue };
  if (r === BAD) return { kind: "malformed", reason: scan.reason };
  const name = scannedName(b);
  const kind: Kind = scan.event ? "event" : "gauge";
  toSample(NaN);
  const time = scan.n === 1 ? null : sample[S_TIME]!;
  const count = sample[S_COUNT]!;
  const sum = sample[S_SUM]!;
  const sumsq = sample[S_SUMSQ]!;
  const min = sample[S_MIN]!;
  const max = sample[S_MAX]!;
  const names = scan.fan ? fanOut(name) : [name];
  return {
    kind: "sample",
    samples: names.map((name) => ({ name, kind, time, count, sum, sumsq, min, max })),
  };
}

// ---------------------------------------------------------------------------
// Aggregation.

const GAUGE_CODE = 0;
const EVENT_CODE = 1;
const KINDS: readonly Kind[] = ["gauge", "event"];

/** Fields of a `State.table` slot. */
const T_HASH = 0;
const T_INDEX = 1;
const T_AT = 2;
/** Byte length << 1 | kind code. */
const T_LENGTH_KIND = 3;
const T_STRIDE = 4;
/**
 * Fields of `State.values`, per name: the totals, the open ("current")
 * bucket, and the one before it ("previous"); a bucket's time is NaN while
 * it is closed.
 */
const V_TOTAL_COUNT = 0;
const V_TOTAL_SUM = 1;
const V_LAST = 2;
const V_CUR = 3;
const V_PREV = 9;
/** Offsets within a bucket. */
const B_TIME = 0;
const B_COUNT = 1;
const B_SUM = 2;
const B_SUMSQ = 3;
const B_MIN = 4;
const B_MAX = 5;
const V_STRIDE = 15;

/**
 * The aggregator's state, laid out for speed and size: names in an
 * open-addressing hash table whose slots also hold where the name's UTF-8
 * bytes are in an arena, its length and kind (so the line reader finds a
 * name in the bytes it reads without making a string of it, touching the
 * slot and the arena only), and per name one row of a Float64Array (no
 * object per name) with the totals and two buckets: the open one and the
 * one before it, so that the samples around a bucket boundary need no
 * allocation either. Older buckets wait in a side map. Shared by
 * {@linkcode Aggregator} and {@linkcode LineReader} through `stateOf`.
 */
class State {
  names: string[] = [];
  /** Every name's UTF-8 bytes, one after the other. */
  arena = new Uint8Array(4096);
  arenaLength = 0;
  /** Hash table, at most half full: slots of T_STRIDE; index 0 = free. */
  table = new Int32Array(0);
  mask = 0;
  capacity = 0;
  kinds = new Uint8Array(0);
  /** Per name: totals and two buckets (see V_*). */
  values = new Float64Array(0);
  /** Names with an open bucket, in first-seen order. */
  dirty = new Int32Array(0);
  dirtyLength = 0;
  /** Buckets older than the two per name: time -> name index -> aggregate. */
  other = new Map<number, Map<number, Aggregate>>();
  otherSize = 0;
  /** Open buckets in `values`. */
  openBuckets = 0;
  maxCounters: number;
  refusedKind = 0;
  refusedTooMany = 0;

  constructor(maxCounters: number) {
    this.maxCounters = maxCounters;
    this.grow(64);
  }

  /**
   * The slot (an index into `table`) of the name in bytes `b[start, end)`,
   * lower-cased when `upper`, or -1.
   */
  findBytes(b: Uint8Array, start: number, end: number, hash: number, upper: boolean): number {
    const lengthKey = (end - start) << 1;
    const table = this.table;
    const mask = this.mask;
    let slot = (hash & mask) * T_STRIDE;
    while (true) {
      if (table[slot + T_INDEX] === 0) return -1;
      if (table[slot + T_HASH] === hash && (table[slot + T_LENGTH_KIND]! & ~1) === lengthKey) {
        const arena = this.arena;
        const at = table[slot + T_AT]! - start;
        let k = start;
        if (upper) {
          for (; k < end; k++) {
            let c = b[k]!;
            if (c >= 65 && c <= 90) c += 32;
            if (c !== arena[at + k]) break;
          }
        } else {
          for (; k < end; k++) if (b[k] !== arena[at + k]) break;
        }
        if (k === end) return slot;
      }
      slot = (slot + T_STRIDE) & (mask * T_STRIDE + T_STRIDE - 1);
    }
  }

  /** The index of `name`, or -1. */
  findString(name: string, hash: number): number {
    const table = this.table;
    const mask = this.mask;
    let slot = (hash & mask) * T_STRIDE;
    while (true) {
      const entry = table[slot + T_INDEX]!;
      if (entry === 0) return -1;
      if (table[slot + T_HASH] === hash && this.names[entry - 1] === name) return entry - 1;
      slot = (slot + T_STRIDE) & (mask * T_STRIDE + T_STRIDE - 1);
    }
  }

  /** Adds a new name; returns its table slot, or -1 when `maxCounters` are held. */
  insert(name: string, hash: number, code: number): number {
    const i = this.names.length;
    if (i >= this.maxCounters) return -1;
    if (i === this.capacity) this.grow(this.capacity * 2);
    let bytes: Uint8Array | null = null;
    let length = name.length;
    for (let k = 0; k < name.length; k++) {
      if (name.charCodeAt(k) >= 0x80) {
        bytes = encoder.encode(name);
        length = bytes.length;
        break;
      }
    }
    const at = this.arenaLength;
    if (at + length > this.arena.length) {
      const arena = new Uint8Array(Math.max(this.arena.length * 2, at + length));
      arena.set(this.arena);
      this.arena = arena;
    }
    if (bytes !== null) this.arena.set(bytes, at);
    else for (let k = 0; k < length; k++) this.arena[at + k] = name.charCodeAt(k);
    this.arenaLength = at + length;
    // A string of its own, not a slice holding on to a larger one.
    this.names.push(bytes === null ? ascii(this.arena, at, at + length) : name);
    this.kinds[i] = code;
    const v = i * V_STRIDE;
    this.values[v + V_CUR + B_TIME] = NaN;
    this.values[v + V_PREV + B_TIME] = NaN;
    return this.#place(hash, i, at, (length << 1) | code);
  }

  /** Adds `sample` to name `i`, in the bucket of its time. */
  addSample(i: number): void {
    const time = Math.floor(sample[S_TIME]! / BUCKET_SECONDS) * BUCKET_SECONDS;
    const count = sample[S_COUNT]!;
    const sum = sample[S_SUM]!;
    const v = this.values;
    const r = i * V_STRIDE;
    v[r + V_TOTAL_COUNT]! += count;
    v[r + V_TOTAL_SUM]! += sum;
    v[r + V_LAST] = count === 1 ? sum : sum / count;
    const cur = r + V_CUR;
    const curTime = v[cur + B_TIME]!;
    if (curTime === time) {
      this.#mergeInto(cur);
    } else if (curTime !== curTime) {
      this.#openAt(cur, time);
      this.dirty[this.dirtyLength++] = i;
    } else if (time > curTime) {
      // Time moved on: the open bucket becomes the previous one.
      const prev = r + V_PREV;
      if (v[prev + B_TIME] === v[prev + B_TIME]) this.#spill(i, prev);
      v.copyWithin(prev, cur, cur + 6);
      this.#openAt(cur, time);
    } else {
      const prev = r + V_PREV;
      const prevTime = v[prev + B_TIME]!;
      if (prevTime === time) {
        this.#mergeInto(prev);
      } else if (prevTime !== prevTime) {
        this.#openAt(prev, time);
      } else if (time > prevTime) {
        this.#spill(i, prev);
        this.#openAt(prev, time);
      } else {
        this.#side(i, time);
      }
    }
  }

  /** Opens the bucket at `values[at]` with `sample`. */
  #openAt(at: number, time: number): void {
    const v = this.values;
    v[at + B_TIME] = time;
    v[at + B_COUNT] = sample[S_COUNT]!;
    v[at + B_SUM] = sample[S_SUM]!;
    v[at + B_SUMSQ] = sample[S_SUMSQ]!;
    v[at + B_MIN] = sample[S_MIN]!;
    v[at + B_MAX] = sample[S_MAX]!;
    this.openBuckets++;
  }

  /** Merges `sample` into the open bucket at `values[at]`. */
  #mergeInto(at: number): void {
    const v = this.values;
    v[at + B_COUNT]! += sample[S_COUNT]!;
    v[at + B_SUM]! += sample[S_SUM]!;
    v[at + B_SUMSQ]! += sample[S_SUMSQ]!;
    const min = sample[S_MIN]!;
    const max = sample[S_MAX]!;
    if (min < v[at + B_MIN]!) v[at + B_MIN] = min;
    if (max > v[at + B_MAX]!) v[at + B_MAX] = max;
  }

  /** Moves the bucket at `values[at]` of name `i` to the side map; closes it. */
  #spill(i: number, at: number): void {
    const v = this.values;
    const a = this.#sideBucket(i, v[at + B_TIME]!);
    if (a.count === 0) {
      a.count = v[at + B_COUNT]!;
      a.sum = v[at + B_SUM]!;
      a.sumsq = v[at + B_SUMSQ]!;
      a.min = v[at + B_MIN]!;
      a.max = v[at + B_MAX]!;
    } else {
      a.count += v[at + B_COUNT]!;
      a.sum += v[at + B_SUM]!;
      a.sumsq += v[at + B_SUMSQ]!;
      if (v[at + B_MIN]! < a.min) a.min = v[at + B_MIN]!;
      if (v[at + B_MAX]! > a.max) a.max = v[at + B_MAX]!;
    }
    v[at + B_TIME] = NaN;
    this.openBuckets--;
  }

  /** Adds `sample` to the side map's bucket `time` of name `i`. */
  #side(i: number, time: number): void {
    const a = this.#sideBucket(i, time);
    if (a.count === 0) {
      a.count = sample[S_COUNT]!;
      a.sum = sample[S_SUM]!;
      a.sumsq = sample[S_SUMSQ]!;
      a.min = sample[S_MIN]!;
      a.max = sample[S_MAX]!;
    } else {
      a.count += sample[S_COUNT]!;
      a.sum += sample[S_SUM]!;
      a.sumsq += sample[S_SUMSQ]!;
      if (sample[S_MIN]! < a.min) a.min = sample[S_MIN]!;
      if (sample[S_MAX]! > a.max) a.max = sample[S_MAX]!;
    }
  }

  /** The side map's bucket `time` of name `i`, made empty (count 0) when new. */
  #sideBucket(i: number, time: number): Aggregate {
    let byName = this.other.get(time);
    if (byName === undefined) {
      byName = new Map();
      this.other.set(time, byName);
    }
    let a = byName.get(i);
    if (a === undefined) {
      const kind = KINDS[this.kinds[i]!]!;
      a = { name: this.names[i]!, kind, time, count: 0, sum: 0, sumsq: 0, min: 0, max: 0 };
      byName.set(i, a);
      this.otherSize++;
    }
    return a;
  }

  /** Appends name `i`'s open buckets (older first) to `out`; closes them. */
  takeOpen(i: number, out: Aggregate[]): void {
    const r = i * V_STRIDE;
    this.#take(i, r + V_PREV, out);
    this.#take(i, r + V_CUR, out);
  }

  /** As `takeOpen`, as forward lines. */
  takeOpenLines(i: number, out: string[]): void {
    const r = i * V_STRIDE;
    this.#takeLine(i, r + V_PREV, out);
    this.#takeLine(i, r + V_CUR, out);
  }

  #takeLine(i: number, at: number, out: string[]): void {
    const v = this.values;
    const time = v[at + B_TIME]!;
    if (time !== time) return;
    out.push(
      this.kinds[i] === EVENT_CODE
        ? forwardEvent(this.names[i]!, time, v[at + B_SUM]!)
        : forwardGauge(
          this.names[i]!,
          time,
          v[at + B_SUM]!,
          v[at + B_SUMSQ]!,
          v[at + B_MIN]!,
          v[at + B_MAX]!,
          v[at + B_COUNT]!,
        ),
    );
    v[at + B_TIME] = NaN;
  }

  #take(i: number, at: number, out: Aggregate[]): void {
    const v = this.values;
    const time = v[at + B_TIME]!;
    if (time !== time) return;
    out.push({
      name: this.names[i]!,
      kind: KINDS[this.kinds[i]!]!,
      time,
      count: v[at + B_COUNT]!,
      sum: v[at + B_SUM]!,
      sumsq: v[at + B_SUMSQ]!,
      min: v[at + B_MIN]!,
      max: v[at + B_MAX]!,
    });
    v[at + B_TIME] = NaN;
  }

  total(i: number): CounterTotal {
    const v = this.values;
    const r = i * V_STRIDE;
    return {
      name: this.names[i]!,
      kind: KINDS[this.kinds[i]!]!,
      count: v[r + V_TOTAL_COUNT]!,
      sum: v[r + V_TOTAL_SUM]!,
      last: v[r + V_LAST]!,
    };
  }

  #place(hash: number, i: number, at: number, lengthKind: number): number {
    const table = this.table;
    const wrap = this.mask * T_STRIDE + T_STRIDE - 1;
    let slot = (hash & this.mask) * T_STRIDE;
    while (table[slot + T_INDEX] !== 0) slot = (slot + T_STRIDE) & wrap;
    table[slot + T_HASH] = hash;
    table[slot + T_INDEX] = i + 1;
    table[slot + T_AT] = at;
    table[slot + T_LENGTH_KIND] = lengthKind;
    return slot;
  }

  grow(capacity: number): void {
    const kinds = new Uint8Array(capacity);
    kinds.set(this.kinds);
    this.kinds = kinds;
    const values = new Float64Array(capacity * V_STRIDE);
    values.set(this.values);
    this.values = values;
    const dirty = new Int32Array(capacity);
    dirty.set(this.dirty);
    this.dirty = dirty;
    this.capacity = capacity;
    const old = this.table;
    this.table = new Int32Array(capacity * 2 * T_STRIDE);
    this.mask = capacity * 2 - 1;
    for (let s = 0; s < old.length; s += T_STRIDE) {
      const entry = old[s + T_INDEX]!;
      if (entry !== 0) this.#place(old[s]!, entry - 1, old[s + T_AT]!, old[s + T_LENGTH_KIND]!);
    }
  }
}

/** The state behind each aggregator, for the line reader's fast path. */
const stateOf = new WeakMap<Aggregator, State>();

/** Options for {@linkcode Aggregator}. */
export interface AggregatorOptions {
  /**
   * Most distinct names held; samples of further new names are refused
   * (`add` returns false, counted in `refused.tooMany`). Default 250,000
   * (about 80 MB, as each name costs about 310 bytes).
   */
  readonly maxCounters?: number;
}

/**
 * Sums samples per (name, 10-second bucket) until {@linkcode Aggregator.take}
 * hands them over, and keeps cumulative per-name totals for Prometheus.
 *
 * Per name it keeps the totals and two buckets (the newest and the one
 * before) in a typed-array row, no object per name; a sample for a bucket
 * older than those goes to a side map. Names are never forgotten: the limit
 * is `maxCounters`. A name keeps the kind it was first seen with.
 *
 * @example
 * ```ts
 * const agg = new Aggregator();
 * agg.add("web.ms", "gauge", 1_700_000_003, 1, 5, 25, 5, 5);
 * agg.add("web.ms", "gauge", 1_700_000_009, 2, 4, 10, 1, 3);
 * agg.take();
 * // [{ name: "web.ms", kind: "gauge", time: 1700000000, count: 3, sum: 9, sumsq: 35,
 * //    min: 1, max: 5 }]
 * ```
 */
export class Aggregator {
  #state: State;

  /** @param options see {@linkcode AggregatorOptions} */
  constructor(options: AggregatorOptions = {}) {
    this.#state = new State(options.maxCounters ?? MAX_COUNTERS);
    stateOf.set(this, this.#state);
  }

  /** Distinct (name, bucket) pairs held until the next take. */
  get size(): number {
    return this.#state.openBuckets + this.#state.otherSize;
  }

  /** Distinct names seen since start. */
  get counters(): number {
    return this.#state.names.length;
  }

  /** Samples refused: `kind` (name known with the other kind), `tooMany` (over `maxCounters`). */
  get refused(): { readonly kind: number; readonly tooMany: number } {
    return { kind: this.#state.refusedKind, tooMany: this.#state.refusedTooMany };
  }

  /** The kind a name was first seen with, or undefined for a name never seen. */
  kindOf(name: string): Kind | undefined {
    const state = this.#state;
    const i = state.findString(name, hashName(name));
    return i < 0 ? undefined : KINDS[state.kinds[i]!];
  }

  /**
   * Adds a sample or an aggregate. A simple value `v` is `add(name, kind, t, 1, v, v*v, v, v)`.
   * Returns false, and keeps nothing, when `name` is known with the other
   * kind or is new beyond `maxCounters`.
   *
   * @param name a valid lower-case name (not checked)
   * @param kind gauge or event
   * @param timeSec unix seconds; floored to its bucket
   */
  add(
    name: string,
    kind: Kind,
    timeSec: number,
    count: number,
    sum: number,
    sumsq: number,
    min: number,
    max: number,
  ): boolean {
    const state = this.#state;
    const code = kind === "event" ? EVENT_CODE : GAUGE_CODE;
    const hash = hashName(name);
    let i = state.findString(name, hash);
    if (i < 0) {
      if (state.insert(name, hash, code) < 0) {
        state.refusedTooMany++;
        return false;
      }
      i = state.names.length - 1;
    } else if (state.kinds[i] !== code) {
      state.refusedKind++;
      return false;
    }
    sample[S_TIME] = timeSec;
    sample[S_COUNT] = count;
    sample[S_SUM] = sum;
    sample[S_SUMSQ] = sumsq;
    sample[S_MIN] = min;
    sample[S_MAX] = max;
    state.addSample(i);
    return true;
  }

  /** Adds one simple value: `add(name, kind, timeSec, 1, value, value * value, value, value)`. */
  addValue(name: string, kind: Kind, timeSec: number, value: number): boolean {
    return this.add(name, kind, timeSec, 1, value, value * value, value, value);
  }

  /**
   * Everything added since the last take, as aggregates (one per name and
   * bucket: older set-aside buckets first, then per name in first-seen
   * order its open buckets, older first), then forgets it. Totals stay.
   */
  take(): Aggregate[] {
    const state = this.#state;
    const out: Aggregate[] = [];
    for (const byName of state.other.values()) for (const a of byName.values()) out.push(a);
    state.other.clear();
    state.otherSize = 0;
    for (let d = 0; d < state.dirtyLength; d++) state.takeOpen(state.dirty[d]!, out);
    state.dirtyLength = 0;
    state.openBuckets = 0;
    return out;
  }

  /**
   * As {@linkcode Aggregator.take}, but straight as forward lines
   * ({@linkcode formatForward}), without an object per aggregate: what the
   * agent's flush wants, at less memory and time.
   */
  takeLines(): string[] {
    const state = this.#state;
    const out: string[] = [];
    for (const byName of state.other.values()) {
      for (const a of byName.values()) out.push(formatForward(a));
    }
    state.other.clear();
    state.otherSize = 0;
    for (let d = 0; d < state.dirtyLength; d++) state.takeOpenLines(state.dirty[d]!, out);
    state.dirtyLength = 0;
    state.openBuckets = 0;
    return out;
  }

  /** Cumulative per-name totals since start, in first-seen order (for Prometheus). */
  *totals(): IterableIterator<CounterTotal> {
    const state = this.#state;
    const n = state.names.length;
    for (let i = 0; i < n; i++) yield state.total(i);
  }
}

// ---------------------------------------------------------------------------
// Line reader.

/** Options for {@linkcode LineReader}. */
export interface LineReaderOptions {
  /** Longest line in UTF-8 bytes, without LF and trailing CRs; default 4,096. */
  readonly maxLine?: number;
  /**
   * Called for each malformed line (a too-long one cut to 200 bytes) with
   * the reason. Only then is the line made a string.
   */
  readonly onMalformed?: (line: string, reason: string) => void;
  /** Called for each `#key value` line. */
  readonly onMeta?: (key: string, value: string) => void;
}

/** Largest piece of a text `feed` encodes at a time, in UTF-16 units. */
const FEED_PIECE = 64 * 1024;

/**
 * Reads istatd lines into an {@linkcode Aggregator}: one UDP datagram, or a
 * TCP chunk (an unfinished last line is kept until the next feed). One per
 * TCP connection; for UDP one shared reader, with `end()` after each
 * datagram. Samples without a time belong to `nowSec`.
 *
 * It works on UTF-8 bytes: `feedBytes` takes what a socket gives as it is
 * (the fastest way); `feed` encodes text first. A partial line that grows
 * past `maxLine` is counted as malformed at once and the rest of it, up to
 * the next LF, skipped, so memory stays bounded.
 *
 * @example
 * ```ts
 * const reader = new LineReader(agg, { onMeta: (k, v) => meta.set(k, v) });
 * socket.on("data", (chunk) => reader.feedBytes(chunk, Date.now() / 1000));
 * socket.on("end", () => reader.end(Date.now() / 1000));
 * ```
 */
export class LineReader {
  /** What this reader has seen so far (live; do not modify). */
  readonly stats: IngestStats = { lines: 0, samples: 0, malformed: 0, meta: 0 };
  #state: State;
  #maxLine: number;
  #onMalformed: ((line: string, reason: string) => void) | undefined;
  #onMeta: ((key: string, value: string) => void) | undefined;
  /** The unfinished last line (made on first need). */
  #pending: Uint8Array | null = null;
  #pendingLength = 0;
  /** Inside a too-long line already counted: drop bytes up to the next LF. */
  #skipping = false;
  /** Where `feed` encodes text (made on first need). */
  #scratch: Uint8Array | null = null;
  /** Where fan-out names are built (made on first need). */
  #fan: Uint8Array | null = null;
  /** Why the aggregator refused the last sample. */
  #refusal = "";

  /**
   * @param into where samples go
   * @param options see {@linkcode LineReaderOptions}
   */
  constructor(into: Aggregator, options: LineReaderOptions = {}) {
    this.#state = stateOf.get(into)!;
    this.#maxLine = options.maxLine ?? MAX_LINE_BYTES;
    this.#onMalformed = options.onMalformed;
    this.#onMeta = options.onMeta;
  }

  /** Reads every complete line of `text`; keeps an unfinished last line for the next feed. */
  feed(text: string, nowSec: number): void {
    let rest = text;
    while (rest.length > 0) {
      let piece = rest.length > FEED_PIECE ? FEED_PIECE : rest.length;
      // Never cut between the two halves of a surrogate pair.
      const last = rest.charCodeAt(piece - 1);
      if (piece < rest.length && last >= 0xd800 && last <= 0xdbff) piece--;
      if (this.#scratch === null || this.#scratch.length < piece * 3) {
        this.#scratch = new Uint8Array(piece * 3);
      }
      const { read, written } = encoder.encodeInto(
        piece === rest.length ? rest : rest.slice(0, piece),
        this.#scratch,
      );
      this.#feed(this.#scratch, 0, written, nowSec);
      rest = read === rest.length ? "" : rest.slice(read);
    }
  }

  /** As {@linkcode LineReader.feed}, for UTF-8 bytes (a socket's chunk or datagram). */
  feedBytes(bytes: Uint8Array, nowSec: number): void {
    // A plain Uint8Array view (not a Buffer), so the scanner sees one type only.
    const b = bytes.constructor === Uint8Array
      ? bytes
      : new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.#feed(b, 0, b.length, nowSec);
  }

  /** Ends the input (a datagram, or a closed connection): a final line without LF counts. */
  end(nowSec: number): void {
    const length = this.#pendingLength;
    this.#pendingLength = 0;
    this.#skipping = false;
    if (length > 0) this.#line(this.#pending!, 0, length, nowSec);
  }

  #feed(b: Uint8Array, start: number, end: number, nowSec: number): void {
    if (this.#skipping || this.#pendingLength > 0) {
      let lf = start;
      while (lf < end && b[lf] !== 10) lf++;
      if (lf === end) {
        if (!this.#skipping) this.#hold(b, start, end);
        return;
      }
      if (!this.#skipping) this.#hold(b, start, lf);
      if (this.#skipping) {
        this.#skipping = false;
      } else {
        this.#line(this.#pending!, 0, this.#pendingLength, nowSec);
      }
      this.#pendingLength = 0;
      start = lf + 1;
    }
    while (start < end) {
      let lf = start;
      while (lf < end && b[lf] !== 10) lf++;
      if (lf === end) {
        this.#hold(b, start, end);
        return;
      }
      this.#line(b, start, lf, nowSec);
      start = lf + 1;
    }
  }

  /** Appends `b[start, end)` to the unfinished line, unless that makes it too long. */
  #hold(b: Uint8Array, start: number, end: number): void {
    // Room for the longest line and a few CRs, which do not count.
    const room = this.#maxLine + 8;
    const length = this.#pendingLength + end - start;
    if (length > room) {
      this.stats.lines++;
      this.stats.malformed++;
      if (this.#onMalformed !== undefined) {
        const fromPending = Math.min(200, this.#pendingLength);
        const fromB = Math.min(200 - fromPending, end - start);
        const head = new Uint8Array(fromPending + fromB);
        if (fromPending > 0) head.set(this.#pending!.subarray(0, fromPending));
        head.set(b.subarray(start, start + fromB), fromPending);
        this.#onMalformed(decoder.decode(head), tooLongReason(this.#maxLine));
      }
      this.#pendingLength = 0;
      this.#skipping = true;
      return;
    }
    this.#pending ??= new Uint8Array(room);
    this.#pending.set(b.subarray(start, end), this.#pendingLength);
    this.#pendingLength = length;
  }

  #malformed(b: Uint8Array, start: number, end: number, reason: string): void {
    this.stats.malformed++;
    if (this.#onMalformed !== undefined) {
      this.#onMalformed(decoder.decode(b.subarray(start, end)), reason);
    }
  }

  #line(b: Uint8Array, start: number, end: number, nowSec: number): void {
    const content = withoutCr(b, start, end);
    if (content - start > this.#maxLine) {
      this.stats.lines++;
      this.#malformed(
        b,
        start,
        Math.min(end, start + 200),
        tooLongReason(this.#maxLine, content - start),
      );
      return;
    }
    const r = scanLine(b, start, end);
    if (r === SAMPLE) {
      this.stats.lines++;
      toSample(nowSec);
      const code = scan.event ? EVENT_CODE : GAUGE_CODE;
      if (!scan.fan) {
        if (this.#add(b, scan.nameStart, scan.nameEnd, scan.hash, scan.upper, code)) {
          this.stats.samples++;
        } else {
          this.#refused(b, start, end);
        }
        return;
      }
      // Fan-out: each name prefix.suffix is built (lower-cased) in a buffer of its own.
      const nameStart = scan.nameStart;
      const nameEnd = scan.nameEnd;
      let caret = nameStart;
      while (b[caret] !== 94) caret++;
      const prefixLength = caret - nameStart;
      const buffer = this.#fanBuffer(nameEnd - nameStart);
      let prefixHash = FNV_OFFSET;
      for (let k = 0; k < prefixLength; k++) {
        let c = b[nameStart + k]!;
        if (c >= 65 && c <= 90) c += 32;
        buffer[k] = c;
        prefixHash = Math.imul(prefixHash ^ c, FNV_PRIME);
      }
      buffer[prefixLength] = 46;
      prefixHash = Math.imul(prefixHash ^ 46, FNV_PRIME);
      let refused = false;
      let at = caret + 1;
      while (at <= nameEnd) {
        let length = prefixLength + 1;
        let hash = prefixHash;
        while (at < nameEnd && b[at] !== 94) {
          let c = b[at++]!;
          if (c >= 65 && c <= 90) c += 32;
          buffer[length++] = c;
          hash = Math.imul(hash ^ c, FNV_PRIME);
        }
        at++;
        if (this.#add(buffer, 0, length, finish(hash), false, code)) this.stats.samples++;
        else refused = true;
      }
      if (refused) this.#refused(b, start, end);
    } else if (r === META) {
      this.stats.lines++;
      this.stats.meta++;
      if (this.#onMeta !== undefined) this.#onMeta(scan.metaKey, scan.metaValue);
    } else if (r === BAD) {
      this.stats.lines++;
      this.#malformed(b, start, end, scan.reason);
    }
  }

  /**
   * Adds `sample` to the name in `b[start, end)`; false when the aggregator
   * refuses it (the reason is left in `#refusal`).
   */
  #add(
    b: Uint8Array,
    start: number,
    end: number,
    hash: number,
    upper: boolean,
    code: number,
  ): boolean {
    const state = this.#state;
    let slot = state.findBytes(b, start, end, hash, upper);
    if (slot < 0) {
      let name = ascii(b, start, end);
      if (upper) name = name.toLowerCase();
      slot = state.insert(name, hash, code);
      if (slot < 0) {
        state.refusedTooMany++;
        const limit = state.maxCounters;
        this.#refusal =
          `too many counters: ${name} is new beyond the limit of ${limit} distinct names`;
        return false;
      }
    } else if ((state.table[slot + T_LENGTH_KIND]! & 1) !== code) {
      state.refusedKind++;
      const name = state.names[state.table[slot + T_INDEX]! - 1]!;
      this.#refusal = `kind conflict: ${name} is ${
        code === GAUGE_CODE ? "an event" : "a gauge"
      }, not ${code === GAUGE_CODE ? "a gauge" : "an event"}`;
      return false;
    }
    state.addSample(state.table[slot + T_INDEX]! - 1);
    return true;
  }

  #fanBuffer(length: number): Uint8Array {
    if (this.#fan === null || this.#fan.length < length) this.#fan = new Uint8Array(length);
    return this.#fan;
  }

  #refused(b: Uint8Array, start: number, end: number): void {
    this.#malformed(b, start, end, this.#refusal);
  }
}

// ---------------------------------------------------------------------------
// Output.

/**
 * One forward line for a master, without LF: gauges
 * `name time sum sumsq min max count`, events `*name time sum`. Numbers are
 * printed with `String`, which round-trips.
 *
 * @example
 * ```ts
 * formatForward({ name: "a", kind: "gauge", time: 10, count: 2, sum: 3, sumsq: 5, min: 1,
 *   max: 2 });
 * // "a 10 3 5 1 2 2"
 * ```
 */
export function formatForward(a: Aggregate): string {
  return a.kind === "event"
    ? forwardEvent(a.name, a.time, a.sum)
    : forwardGauge(a.name, a.time, a.sum, a.sumsq, a.min, a.max, a.count);
}

// `join` makes one flat string; `+` would make a rope of a dozen pieces,
// four times the memory while a flush's lines wait for the spool.
const gaugeParts: (string | number)[] = ["", 0, 0, 0, 0, 0, 0];
const eventParts: (string | number)[] = ["", 0, 0];

function forwardGauge(
  name: string,
  time: number,
  sum: number,
  sumsq: number,
  min: number,
  max: number,
  count: number,
): string {
  gaugeParts[0] = name;
  gaugeParts[1] = time;
  gaugeParts[2] = sum;
  gaugeParts[3] = sumsq;
  gaugeParts[4] = min;
  gaugeParts[5] = max;
  gaugeParts[6] = count;
  return gaugeParts.join(" ");
}

function forwardEvent(name: string, time: number, sum: number): string {
  eventParts[0] = "*" + name;
  eventParts[1] = time;
  eventParts[2] = sum;
  return eventParts.join(" ");
}

const NOT_PROMETHEUS = /[^a-zA-Z0-9_]/g;

/**
 * A valid Prometheus metric name: every character outside `[a-zA-Z0-9_]`
 * becomes `_`, and a leading digit (or an empty name) gets a `_` before it.
 *
 * @example
 * ```ts
 * prometheusName("coldpack.backup.files_archived"); // "coldpack_backup_files_archived"
 * ```
 */
export function prometheusName(name: string): string {
  const out = name.replace(NOT_PROMETHEUS, "_");
  const first = out.charCodeAt(0);
  return out === "" || (first >= 48 && first <= 57) ? "_" + out : out;
}

function prometheusValue(v: number): string {
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

function escapeLabel(v: string): string {
  return v.replaceAll("\\", "\\\\").replaceAll('"', '\\"').replaceAll("\n", "\\n");
}

/**
 * Prometheus text exposition (version 0.0.4): per metric name (sanitized
 * with {@linkcode prometheusName}) one `# HELP` line (when a help text was
 * given), one `# TYPE` line (the first type given for that name), then its
 * samples, grouped even when they came apart. Label names are sanitized like
 * metric names; label values and help are escaped (`\\`, `\"`, `\n`). Ends
 * with LF (empty string for no metrics).
 *
 * @example
 * ```ts
 * renderPrometheus([{ name: "coldpack.agent.lines", help: "Lines read", type: "counter", value: 7,
 *   labels: { proto: "udp" } }]);
 * // '# HELP coldpack_agent_lines Lines read\n# TYPE coldpack_agent_lines counter\n' +
 * // 'coldpack_agent_lines{proto="udp"} 7\n'
 * ```
 */
export function renderPrometheus(metrics: Iterable<PrometheusMetric>): string {
  const groups = new Map<string, { help: string; type: string; samples: string[] }>();
  for (const m of metrics) {
    const name = prometheusName(m.name);
    let group = groups.get(name);
    if (group === undefined) {
      group = { help: "", type: m.type, samples: [] };
      groups.set(name, group);
    }
    if (group.help === "" && m.help !== undefined) group.help = m.help;
    let labels = "";
    if (m.labels !== undefined) {
      const parts: string[] = [];
      for (const [k, v] of Object.entries(m.labels)) {
        parts.push(prometheusName(k) + '="' + escapeLabel(v) + '"');
      }
      if (parts.length > 0) labels = "{" + parts.join(",") + "}";
    }
    group.samples.push(name + labels + " " + prometheusValue(m.value));
  }
  const lines: string[] = [];
  for (const [name, group] of groups) {
    if (group.help !== "") {
      lines.push(
        "# HELP " + name + " " + group.help.replaceAll("\\", "\\\\").replaceAll("\n", "\\n"),
      );
    }
    lines.push("# TYPE " + name + " " + group.type);
    for (const sample of group.samples) lines.push(sample);
  }
  return lines.length === 0 ? "" : lines.join("\n") + "\n";
}

/**
 * The totals of an aggregator as Prometheus metrics: an event as a counter
 * of its summed values, a gauge as its last value.
 *
 * @example
 * ```ts
 * renderPrometheus([...ownMetrics, ...totalsAsPrometheus(aggregator.totals())]);
 * ```
 */
export function* totalsAsPrometheus(totals: Iterable<CounterTotal>): IterableIterator<
  PrometheusMetric
> {
  for (const t of totals) {
    yield t.kind === "event"
      ? { name: t.name, type: "counter", value: t.sum }
      : { name: t.name, type: "gauge", value: t.last };
  }
}
