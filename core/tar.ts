/**
 * POSIX tar headers for regular files, written without the data: the caller
 * streams each file's bytes itself, then {@linkcode tarPadding} zero bytes,
 * and ends the archive with {@linkcode tarTrailer}.
 *
 * A name that fits a ustar header (printable ASCII, at most 100 bytes, or
 * split at a `/` into a prefix of at most 155 and a name of at most 100
 * bytes), a size below 8 GiB and an mtime in 0..2^33-1 seconds give one
 * 512-byte ustar block. Anything else gets a pax extended header (typeflag
 * `x`) first, carrying `path=` (UTF-8), `size=` and/or `mtime=` records; the
 * ustar block that follows then holds a printable ASCII stand-in name and,
 * for a size of 8 GiB or more, the size in GNU base-256 form. GNU tar, bsdtar
 * and `core/tar_reader.ts` read both.
 *
 * Owner is uid/gid 0, user and group `root`, mode 0644 unless told.
 *
 * Alignment (option `alignBelow`, off by default): an entry of 1 to
 * `alignBelow` bytes whose data would cross a multiple of
 * {@linkcode TAR_ALIGN_SIZE} (1 MiB, the unit of a Glacier ranged retrieval)
 * gets a pax header carrying a `comment=` record (which every reader
 * ignores) sized so that its data starts at the next 1 MiB boundary, or
 * 512 bytes after it when the gap is too small for a pax header. An entry
 * that already has a pax header gets the comment in that header. The
 * padding of an entry is below `alignBelow` + 1 KiB, and no header grows
 * unless its data would cross a boundary.
 *
 * @example
 * ```ts
 * const plan = planTar([{ name: "a.txt", size: 3, mtimeMs: 0 }]);
 * // write plan.entries[0].header, the 3 bytes, tarPadding(3) zero bytes, tarTrailer()
 * // plan.totalSize === 512 + 512 + 1024
 * ```
 * @module
 */

/** Size of one tar block. */
export const TAR_BLOCK_SIZE = 512;
/** Size of the end-of-archive marker: two zero blocks. */
export const TAR_TRAILER_SIZE = 1024;
/** The largest size or mtime that fits an 11-digit octal ustar field (8 GiB - 1). */
export const USTAR_MAX_OCTAL = 0o77777777777;
/** The block that aligned entries keep their data within: 1 MiB. */
export const TAR_ALIGN_SIZE = 1024 * 1024;
/**
 * The largest `alignBelow` accepted: 512 KiB. It keeps each entry's padding
 * (and so its pax header) well below 1 MiB, the default limit of
 * `core/tar_reader.ts`; aligning larger files would cost more than it saves.
 */
export const MAX_ALIGN_BELOW = 512 * 1024;

/** A regular file to write a header for. */
export interface TarEntryInput {
  /** Entry name; see `safeEntryName` in `core/safe_name.ts`. Not empty, no NUL, no trailing `/`. */
  readonly name: string;
  /** Data size in bytes. */
  readonly size: number;
  /** Modification time, ms since the epoch (stored in whole seconds, rounded down). */
  readonly mtimeMs: number;
  /** Permission bits; default 0o644. */
  readonly mode?: number;
}

/** Options of {@linkcode planTar}. */
export interface TarAlignOptions {
  /**
   * Keep the data of every entry of 1 to `alignBelow` bytes inside one
   * 1 MiB-aligned block, padding its header with a pax comment when needed.
   * An integer from 0 to {@linkcode MAX_ALIGN_BELOW}; default 0 (off).
   */
  readonly alignBelow?: number;
}

/** Options of {@linkcode tarHeader}. */
export interface TarHeaderOptions extends TarAlignOptions {
  /**
   * Archive offset the header is written at, a multiple of 512; default 0.
   * Only alignment looks at it.
   */
  readonly offset?: number;
}

/** Where one entry sits in a planned tar. */
export interface PlannedTarEntry {
  /**
   * The header block(s): a pax header and its records when needed (a
   * name, size or mtime that ustar cannot hold, or alignment), then the ustar block.
   */
  readonly header: Uint8Array;
  /** Offset of the first header block (the pax header if there is one). */
  readonly headerOffset: number;
  /** Offset of the first data byte. */
  readonly dataOffset: number;
  /** Data size in bytes. */
  readonly size: number;
}

/** The layout of a whole tar. */
export interface TarPlan {
  readonly entries: PlannedTarEntry[];
  /** Bytes of the whole archive, trailer included. */
  readonly totalSize: number;
}

const encoder = new TextEncoder();
const PRINTABLE_ASCII = /^[\x20-\x7e]*$/;
const NOT_PRINTABLE_ASCII = /[^\x20-\x7e]/g;

/** A header block with the fields that never change already written. */
const TEMPLATE = makeTemplate();

function makeTemplate(): Uint8Array {
  const b = new Uint8Array(TAR_BLOCK_SIZE);
  writeOctal(b, 108, 8, 0); // uid
  writeOctal(b, 116, 8, 0); // gid
  writeAscii(b, 257, "ustar\0" + "00");
  writeAscii(b, 265, "root"); // uname
  writeAscii(b, 297, "root"); // gname
  writeOctal(b, 329, 8, 0); // devmajor
  writeOctal(b, 337, 8, 0); // devminor
  return b;
}

/** Writes `value` as zero-padded octal digits and a NUL into `width` bytes. */
function writeOctal(b: Uint8Array, pos: number, width: number, value: number): void {
  let v = value;
  for (let i = pos + width - 2; i >= pos; i--) {
    b[i] = 0x30 + (v % 8);
    v = Math.floor(v / 8);
  }
  b[pos + width - 1] = 0;
}

/** Writes printable ASCII `s` at `pos` (callers made sure it fits). */
function writeAscii(b: Uint8Array, pos: number, s: string): void {
  for (let i = 0; i < s.length; i++) b[pos + i] = s.charCodeAt(i);
}

/** Writes a non-negative integer in GNU base-256 form into a 12-byte field. */
function writeBase256(b: Uint8Array, pos: number, value: number): void {
  let v = value;
  for (let i = 11; i >= 1; i--) {
    b[pos + i] = v % 256;
    v = Math.floor(v / 256);
  }
  b[pos] = 0x80;
}

/** Writes one ustar block at `pos`. `name` and `prefix` are printable ASCII that fit. */
function writeUstar(
  b: Uint8Array,
  pos: number,
  name: string,
  prefix: string,
  size: number,
  mtimeSec: number,
  mode: number,
  type: number,
): void {
  b.set(TEMPLATE, pos);
  writeAscii(b, pos, name);
  writeOctal(b, pos + 100, 8, mode);
  if (size <= USTAR_MAX_OCTAL) writeOctal(b, pos + 124, 12, size);
  else writeBase256(b, pos + 124, size);
  writeOctal(b, pos + 136, 12, mtimeSec);
  b[pos + 156] = type;
  writeAscii(b, pos + 345, prefix);
  // Checksum: the sum of all bytes with the checksum field taken as spaces.
  let sum = 8 * 0x20;
  for (let i = pos; i < pos + 148; i++) sum += b[i]!;
  for (let i = pos + 156; i < pos + TAR_BLOCK_SIZE; i++) sum += b[i]!;
  writeOctal(b, pos + 148, 7, sum);
  b[pos + 155] = 0x20;
}

/** Splits a printable ASCII name into ustar `prefix` + `name`, or `null` when it cannot. */
function splitUstarName(name: string): { name: string; prefix: string } | null {
  const len = name.length;
  if (len <= 100) return { name, prefix: "" };
  if (len > 256) return null;
  // The first `/` that leaves at most 100 bytes after it.
  const p = name.indexOf("/", len - 101);
  if (p < 1 || p > 155 || p === len - 1) return null;
  return { prefix: name.slice(0, p), name: name.slice(p + 1) };
}

/** One pax record `"<len> <key>=<value>\n"`, where `<len>` counts the whole record, itself included. */
function paxRecord(key: string, value: string): string {
  const base = key.length + encoder.encode(value).length + 3; // " ", "=", "\n"
  let digits = String(base).length;
  if (String(base + digits).length > digits) digits++;
  return `${base + digits} ${key}=${value}\n`;
}

/** The shortest pax comment record: `"12 comment=\n"`. */
const MIN_COMMENT_RECORD = 12;
const COMMENT_TEXT = "coldpack alignment padding";

/**
 * Writes a pax `comment` record of exactly `length` (>= 12) bytes at `pos`:
 * `"<length> comment=coldpack alignment padding    ...\n"`.
 */
function writeComment(b: Uint8Array, pos: number, length: number): void {
  const head = `${length} comment=`;
  const valueLength = length - head.length - 1;
  const text = valueLength >= COMMENT_TEXT.length ? COMMENT_TEXT : "";
  writeAscii(b, pos, head + text);
  b.fill(0x20, pos + head.length + text.length, pos + length - 1);
  b[pos + length - 1] = 0x0a;
}

function roundUpToBlock(n: number): number {
  return Math.ceil(n / TAR_BLOCK_SIZE) * TAR_BLOCK_SIZE;
}

function sameAlignBlock(start: number, size: number): boolean {
  return Math.floor(start / TAR_ALIGN_SIZE) === Math.floor((start + size - 1) / TAR_ALIGN_SIZE);
}

/**
 * The header length that keeps `size` data bytes inside one 1 MiB block for
 * a header at `offset` whose unpadded length is `length` (with `recordLength`
 * bytes of pax records, 0 for a plain ustar header): `length` itself when the
 * data does not cross a boundary, else the shortest padded pax header that
 * makes it start at the boundary (or after it, when the gap is too small).
 */
function alignedLength(offset: number, length: number, recordLength: number, size: number): number {
  if (sameAlignBlock(offset + length, size)) return length;
  // The shortest header that can carry a comment: pax header, records, ustar block.
  let start = offset + 2 * TAR_BLOCK_SIZE + roundUpToBlock(recordLength + MIN_COMMENT_RECORD);
  if (!sameAlignBlock(start, size)) start = Math.ceil(start / TAR_ALIGN_SIZE) * TAR_ALIGN_SIZE;
  return start - offset;
}

function checkAlignBelow(alignBelow: number): void {
  if (!Number.isInteger(alignBelow) || alignBelow < 0 || alignBelow > MAX_ALIGN_BELOW) {
    throw new RangeError(
      `Cannot align tar entries: alignBelow ${alignBelow} is not an integer from 0 to ` +
        String(MAX_ALIGN_BELOW),
    );
  }
}

function checkOffset(offset: number): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset % TAR_BLOCK_SIZE !== 0) {
    throw new RangeError(
      `Cannot write tar header: offset ${offset} is not a non-negative multiple of 512`,
    );
  }
}

function validate(entry: TarEntryInput): void {
  const { name, size, mtimeMs, mode } = entry;
  if (typeof name !== "string") {
    throw new TypeError(`Cannot write tar header: name is ${typeof name}`);
  }
  if (name.length === 0) throw new RangeError("Cannot write tar header: empty name");
  if (name.includes("\0")) {
    throw new RangeError(`Cannot write tar header for "${name}": name contains NUL`);
  }
  if (name.endsWith("/")) {
    throw new RangeError(`Cannot write tar header for "${name}": name ends with /`);
  }
  if (!Number.isSafeInteger(size) || size < 0) {
    throw new RangeError(`Cannot write tar header for "${name}": invalid size ${size}`);
  }
  if (!Number.isFinite(mtimeMs)) {
    throw new RangeError(`Cannot write tar header for "${name}": invalid mtime ${mtimeMs}`);
  }
  if (mode !== undefined && (!Number.isInteger(mode) || mode < 0 || mode > 0o7777777)) {
    throw new RangeError(`Cannot write tar header for "${name}": invalid mode ${mode}`);
  }
}

/**
 * Returns the header block(s) of a regular file: one ustar block, or a pax
 * extended header, its records and a ustar block (see the module docs).
 * The data follows directly; its offset is the returned length.
 *
 * @param entry the file
 * @param options `alignBelow` (default 0, off) and `offset`, where the
 *   header goes in the archive (default 0)
 * @throws {RangeError} for an empty name, a name with NUL or a trailing `/`,
 *   a negative or non-integer size, a non-finite mtime, a bad mode, a bad
 *   `alignBelow` or an offset that is not a multiple of 512
 *
 * @example
 * ```ts
 * tarHeader({ name: "a.txt", size: 3, mtimeMs: Date.now() }).length; // 512
 * tarHeader({ name: "ü.txt", size: 3, mtimeMs: 0 }).length; // 1536 (pax header + records + ustar)
 * // Data at 1 MiB - 3584 would cross 1 MiB: padded so that it starts at 1 MiB.
 * const at = { offset: 1024 * 1024 - 4096, alignBelow: 4096 };
 * tarHeader({ name: "b", size: 4000, mtimeMs: 0 }, at).length; // 4096
 * ```
 */
export function tarHeader(entry: TarEntryInput, options: TarHeaderOptions = {}): Uint8Array {
  const { offset = 0, alignBelow = 0 } = options;
  checkAlignBelow(alignBelow);
  checkOffset(offset);
  return writeHeader(entry, allocate, offset, alignBelow);
}

/**
 * A header writer for many headers in a row: like {@linkcode tarHeader}, but
 * the blocks are views of shared 256 KiB slabs (one small allocation per
 * header costs more than writing it). Copy or write out each result before
 * relying on it beyond the next call's slab turnover; never modify it.
 *
 * @example
 * ```ts
 * const header = tarHeaderWriter();
 * header({ name: "a.txt", size: 3, mtimeMs: 0 }).length; // 512
 * header({ name: "b", size: 9, mtimeMs: 0 }, { offset: 1024, alignBelow: 4096 }).length; // 512
 * ```
 */
export function tarHeaderWriter(): (
  entry: TarEntryInput,
  options?: TarHeaderOptions,
) => Uint8Array {
  const slab = new Slab();
  const alloc = (size: number) => slab.take(size);
  return (entry, options = {}) => {
    const { offset = 0, alignBelow = 0 } = options;
    checkAlignBelow(alignBelow);
    checkOffset(offset);
    return writeHeader(entry, alloc, offset, alignBelow);
  };
}

function allocate(size: number): Uint8Array {
  return new Uint8Array(size);
}

/** Hands out zeroed views of large slabs: far cheaper than one small allocation per header. */
class Slab {
  #buffer = new Uint8Array(0);
  #used = 0;

  take(size: number): Uint8Array {
    if (this.#used + size > this.#buffer.length) {
      this.#buffer = new Uint8Array(Math.max(size, 256 * 1024));
      this.#used = 0;
    }
    const view = this.#buffer.subarray(this.#used, this.#used + size);
    this.#used += size;
    return view;
  }
}

function writeHeader(
  entry: TarEntryInput,
  alloc: (size: number) => Uint8Array,
  offset: number,
  alignBelow: number,
): Uint8Array {
  validate(entry);
  const { name, size } = entry;
  const mode = entry.mode ?? 0o644;
  const mtimeSec = Math.floor(entry.mtimeMs / 1000);
  const mtimeFits = mtimeSec >= 0 && mtimeSec <= USTAR_MAX_OCTAL;
  const split = PRINTABLE_ASCII.test(name) ? splitUstarName(name) : null;
  const plain = split !== null && size <= USTAR_MAX_OCTAL && mtimeFits;

  let records = "";
  if (split === null) records += paxRecord("path", name);
  if (size > USTAR_MAX_OCTAL) records += paxRecord("size", String(size));
  if (!mtimeFits) records += paxRecord("mtime", String(mtimeSec));
  const recordBytes = encoder.encode(records);
  const length = plain ? TAR_BLOCK_SIZE : 2 * TAR_BLOCK_SIZE + roundUpToBlock(recordBytes.length);
  const padded = size > 0 && size <= alignBelow
    ? alignedLength(offset, length, recordBytes.length, size)
    : length;
  if (padded === TAR_BLOCK_SIZE) {
    const block = alloc(TAR_BLOCK_SIZE);
    writeUstar(block, 0, split!.name, split!.prefix, size, mtimeSec, mode, 0x30);
    return block;
  }

  // A padded header's records fill its record blocks exactly: the comment takes the rest.
  const paxSize = padded === length ? recordBytes.length : padded - 2 * TAR_BLOCK_SIZE;
  const ustarPos = padded - TAR_BLOCK_SIZE;
  const out = alloc(padded);
  const ustarMtime = mtimeFits ? mtimeSec : (mtimeSec < 0 ? 0 : USTAR_MAX_OCTAL);

  const fallback = split ?? fallbackName(name);
  const base = fallback.name.slice(fallback.name.lastIndexOf("/") + 1);
  const paxName = ("PaxHeaders/" + base).slice(0, 100);
  writeUstar(out, 0, paxName, "", paxSize, ustarMtime, 0o644, 0x78 /* x */);
  out.set(recordBytes, TAR_BLOCK_SIZE);
  if (paxSize > recordBytes.length) {
    writeComment(out, TAR_BLOCK_SIZE + recordBytes.length, paxSize - recordBytes.length);
  }
  writeUstar(out, ustarPos, fallback.name, fallback.prefix, size, ustarMtime, mode, 0x30);
  return out;
}

/** A printable ASCII stand-in for readers that ignore pax headers. */
function fallbackName(name: string): { name: string; prefix: string } {
  const ascii = name.replace(NOT_PRINTABLE_ASCII, "_");
  const split = splitUstarName(ascii);
  if (split !== null) return split;
  // Whole trailing segments that fit 100 bytes, none of them empty, `.` or `..`.
  const segments = ascii.split("/").map(plainSegment);
  let tail = plainSegment(segments.pop()!.slice(-100));
  while (segments.length > 0 && tail.length + 1 + segments[segments.length - 1]!.length <= 100) {
    tail = `${segments.pop()}/${tail}`;
  }
  return { name: tail, prefix: "" };
}

function plainSegment(s: string): string {
  return s === "" || s === "." || s === ".." ? "_" : s;
}

/**
 * Zero bytes to write after `size` data bytes to reach a block boundary.
 *
 * @example
 * ```ts
 * tarPadding(0); // 0
 * tarPadding(513); // 511
 * ```
 */
export function tarPadding(size: number): number {
  const r = size % TAR_BLOCK_SIZE;
  return r === 0 ? 0 : TAR_BLOCK_SIZE - r;
}

/** The end-of-archive marker: {@linkcode TAR_TRAILER_SIZE} zero bytes (a fresh array). */
export function tarTrailer(): Uint8Array {
  return new Uint8Array(TAR_TRAILER_SIZE);
}

/**
 * Plans a tar that holds `entries` in this order followed by the trailer:
 * each entry's header and the offsets of its header and data. The headers
 * are views into a few shared 256 KiB buffers (do not write into them).
 * With `alignBelow`, small entries' data is kept inside one 1 MiB block
 * (see the module docs); without it the layout is back to back.
 *
 * @param entries the files, in archive order
 * @param options `alignBelow` (default 0, off)
 * @throws {RangeError} like {@linkcode tarHeader}
 *
 * @example
 * ```ts
 * const plan = planTar([{ name: "a", size: 513, mtimeMs: 0 }, { name: "b", size: 0, mtimeMs: 0 }]);
 * plan.entries[1]!.headerOffset; // 1536
 * plan.totalSize; // 1536 + 512 + 1024
 *
 * const aligned = planTar([
 *   { name: "big", size: 1024 * 1024 - 2048, mtimeMs: 0 },
 *   { name: "small", size: 4096, mtimeMs: 0 },
 * ], { alignBelow: 256 * 1024 });
 * aligned.entries[1]!.dataOffset; // 1024 * 1024 (a pax comment pads its header)
 * ```
 */
export function planTar(
  entries: readonly {
    readonly name: string;
    readonly size: number;
    readonly mtimeMs: number;
    readonly mode?: number;
  }[],
  options: TarAlignOptions = {},
): TarPlan {
  const alignBelow = options.alignBelow ?? 0;
  checkAlignBelow(alignBelow);
  const planned: PlannedTarEntry[] = new Array(entries.length);
  const slab = new Slab();
  const alloc = (size: number) => slab.take(size);
  let pos = 0;
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!;
    const header = writeHeader(entry, alloc, pos, alignBelow);
    const dataOffset = pos + header.length;
    planned[i] = { header, headerOffset: pos, dataOffset, size: entry.size };
    pos = dataOffset + entry.size + tarPadding(entry.size);
  }
  return { entries: planned, totalSize: pos + TAR_TRAILER_SIZE };
}
