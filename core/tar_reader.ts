/**
 * A streaming tar reader with bounded memory.
 *
 * {@linkcode TarParser} takes chunks of any size and calls back with each
 * entry's header and its data as sub-arrays of the chunks (no copy), so that
 * a caller can md5 a multi-gigabyte entry in constant memory.
 * {@linkcode readTar} wraps it for the common case of entries small enough
 * to hold: it yields each entry with its data.
 *
 * Read: ustar, GNU (`ustar  ` magic, base-256 numbers, `L`/`K` long names)
 * and pax (`x` headers: `path`, `linkpath`, `size`, `mtime`; `comment` and
 * other records are ignored, as POSIX says; `g` headers are skipped). An
 * entry's `headerOffset` is that of its first pax or long-name header, so an
 * entry that `core/tar.ts` padded with a pax comment to align its data
 * reports the padding as header bytes. Every header checksum is verified.
 * An archive must end with two zero blocks; a stream that stops before them
 * is truncated. Errors are
 * `SyntaxError`s that name the offset: `Cannot parse tar header at offset
 * 1024: bad checksum`, `Truncated tar at offset 2048: ...`.
 *
 * @example
 * ```ts
 * for await (const entry of readTar(stream)) {
 *   console.log(entry.name, entry.size, entry.dataOffset);
 * }
 * ```
 * @module
 */

/** One tar header block, decoded (no pax or GNU long-name records applied). */
export interface TarHeaderBlock {
  /** Name, with the ustar prefix joined in. */
  readonly name: string;
  readonly mode: number;
  readonly uid: number;
  readonly gid: number;
  /** The size field. */
  readonly size: number;
  /** mtime in ms since the epoch (whole seconds). */
  readonly mtimeMs: number;
  /** The typeflag character; `"0"` for a regular file (NUL is reported as `"0"`). */
  readonly type: string;
  readonly linkname: string;
}

/** An entry as the reader reports it, with pax and GNU long-name records applied. */
export interface TarEntryHeader {
  readonly name: string;
  /** Data size in bytes (0 for links, directories and devices). */
  readonly size: number;
  readonly mtimeMs: number;
  readonly mode: number;
  /** The typeflag: `"0"` regular file, `"5"` directory, `"2"` symlink, ... */
  readonly type: string;
  readonly linkname: string;
  /** Offset of the entry's first header block (its pax or `L` header if it has one). */
  readonly headerOffset: number;
  /** Offset of its first data byte. */
  readonly dataOffset: number;
}

/** An entry with its data. */
export interface TarEntry extends TarEntryHeader {
  readonly data: Uint8Array;
}

/** What a {@linkcode TarParser} calls. */
export interface TarHandler {
  /** A new entry begins; its data follows through `data`. */
  entry(header: TarEntryHeader): void;
  /** A piece of the current entry's data: a view into the written chunk, valid only during the call. */
  data?(chunk: Uint8Array, header: TarEntryHeader): void;
  /** All of the current entry's data has been passed. */
  entryEnd?(header: TarEntryHeader): void;
}

/** Options for {@linkcode TarParser} and {@linkcode readTar}. */
export interface TarParserOptions {
  /** Archive offset of the first byte written (to read a range that starts at a header); default 0. */
  readonly startOffset?: number;
  /** Largest pax or GNU long-name record block accepted; default 1 MiB. */
  readonly maxMetaSize?: number;
}

const BLOCK = 512;
const decoder = new TextDecoder();

function isZeroBlock(b: Uint8Array): boolean {
  for (let i = 0; i < BLOCK; i++) if (b[i] !== 0) return false;
  return true;
}

/** A NUL-terminated (or full-width) string field, decoded as UTF-8. */
function str(b: Uint8Array, start: number, width: number): string {
  let end = start;
  const limit = start + width;
  while (end < limit && b[end] !== 0) end++;
  return decoder.decode(b.subarray(start, end));
}

/** A numeric field: octal digits (space or NUL padded), or GNU base-256. */
function num(b: Uint8Array, start: number, width: number, field: string, offset: number): number {
  const first = b[start]!;
  if (first & 0x80) {
    if (first === 0xff) {
      throw new SyntaxError(`Cannot parse tar header at offset ${offset}: negative ${field}`);
    }
    let v = first & 0x7f;
    for (let i = start + 1; i < start + width; i++) v = v * 256 + b[i]!;
    if (!Number.isSafeInteger(v)) {
      throw new SyntaxError(`Cannot parse tar header at offset ${offset}: ${field} too large`);
    }
    return v;
  }
  let i = start;
  const end = start + width;
  while (i < end && b[i] === 0x20) i++;
  let v = 0;
  for (; i < end; i++) {
    const c = b[i]!;
    if (c === 0 || c === 0x20) break;
    if (c < 0x30 || c > 0x37) {
      throw new SyntaxError(`Cannot parse tar header at offset ${offset}: bad ${field} field`);
    }
    v = v * 8 + (c - 0x30);
  }
  return v;
}

/**
 * Decodes one 512-byte header block found at archive offset `offset` and
 * verifies its checksum. Returns `null` for an all-zero block (part of the
 * end-of-archive marker).
 *
 * @throws {SyntaxError} `Truncated tar at offset N` when `block` is shorter than 512 bytes;
 *   `Cannot parse tar header at offset N: bad checksum` (or a bad numeric field)
 *
 * @example
 * ```ts
 * parseTarHeader(tarHeader({ name: "a", size: 1, mtimeMs: 0 }), 0)?.name; // "a"
 * ```
 */
export function parseTarHeader(block: Uint8Array, offset: number): TarHeaderBlock | null {
  if (block.length < BLOCK) {
    throw new SyntaxError(
      `Truncated tar at offset ${
        offset + block.length
      }: header needs ${BLOCK} bytes, got ${block.length}`,
    );
  }
  if (isZeroBlock(block)) return null;
  const stored = num(block, 148, 8, "checksum", offset);
  let unsigned = 8 * 0x20;
  let signed = 8 * 0x20;
  for (let i = 0; i < BLOCK; i++) {
    if (i === 148) i = 156;
    const c = block[i]!;
    unsigned += c;
    signed += c > 127 ? c - 256 : c;
  }
  if (stored !== unsigned && stored !== signed) {
    throw new SyntaxError(
      `Cannot parse tar header at offset ${offset}: bad checksum (stored ${stored}, computed ${unsigned})`,
    );
  }
  // POSIX ustar ("ustar\0") has a prefix field; GNU ("ustar  \0") and v7 do not.
  const posix = block[257] === 0x75 && block[258] === 0x73 && block[259] === 0x74 &&
    block[260] === 0x61 && block[261] === 0x72 && block[262] === 0;
  let name = str(block, 0, 100);
  if (posix && block[345] !== 0) name = str(block, 345, 155) + "/" + name;
  const typeByte = block[156]!;
  return {
    name,
    mode: num(block, 100, 8, "mode", offset),
    uid: num(block, 108, 8, "uid", offset),
    gid: num(block, 116, 8, "gid", offset),
    size: num(block, 124, 12, "size", offset),
    mtimeMs: num(block, 136, 12, "mtime", offset) * 1000,
    type: typeByte === 0 ? "0" : String.fromCharCode(typeByte),
    linkname: str(block, 157, 100),
  };
}

/** Entry types that never carry data, whatever their size field says. */
const NO_DATA_TYPES = new Set(["1", "2", "3", "4", "5", "6"]);

interface Pending {
  path?: string;
  linkpath?: string;
  size?: number;
  mtimeMs?: number;
  headerOffset?: number;
}

type State = "header" | "data" | "padding" | "meta" | "trailer" | "done";

/**
 * A push parser: {@linkcode write} chunks of any size, then {@linkcode end}.
 * Memory: one 512-byte header buffer, plus pax/long-name records up to
 * `maxMetaSize`; entry data is passed through as views.
 *
 * @example
 * ```ts
 * const parser = new TarParser({
 *   entry(h) { md5 = createHash("md5"); },
 *   data(chunk) { md5.update(chunk); },
 *   entryEnd(h) { sums.set(h.name, md5.digest("hex")); },
 * });
 * for await (const chunk of stream) parser.write(chunk);
 * parser.end();
 * ```
 */
export class TarParser {
  #handler: TarHandler;
  #maxMeta: number;
  #offset: number;
  #state: State = "header";
  #block = new Uint8Array(BLOCK);
  #fill = 0;
  #remaining = 0;
  #padding = 0;
  #pending: Pending = {};
  #current: TarEntryHeader | null = null;
  #meta: Uint8Array | null = null;
  #metaFill = 0;
  #metaType = "";
  #metaOffset = 0;
  #metaSize = 0;

  constructor(handler: TarHandler, options?: TarParserOptions) {
    this.#handler = handler;
    this.#maxMeta = options?.maxMetaSize ?? 1024 * 1024;
    this.#offset = options?.startOffset ?? 0;
  }

  /** Archive offset of the next byte to write. */
  get offset(): number {
    return this.#offset;
  }

  /** True once the end-of-archive marker has been read; later bytes are ignored. */
  get done(): boolean {
    return this.#state === "done";
  }

  /**
   * Feeds the next bytes of the archive. Handler calls happen inside.
   * @throws {SyntaxError} on a bad header or pax record
   */
  write(chunk: Uint8Array): void {
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.#state) {
        case "header":
        case "trailer": {
          if (this.#fill === 0 && n - i >= BLOCK) {
            const at = this.#offset;
            this.#offset += BLOCK;
            this.#onBlock(chunk.subarray(i, i + BLOCK), at);
            i += BLOCK;
          } else {
            const take = Math.min(BLOCK - this.#fill, n - i);
            this.#block.set(chunk.subarray(i, i + take), this.#fill);
            this.#fill += take;
            this.#offset += take;
            i += take;
            if (this.#fill === BLOCK) {
              this.#fill = 0;
              this.#onBlock(this.#block, this.#offset - BLOCK);
            }
          }
          break;
        }
        case "data": {
          const take = Math.min(this.#remaining, n - i);
          const current = this.#current!;
          this.#handler.data?.(chunk.subarray(i, i + take), current);
          this.#remaining -= take;
          this.#offset += take;
          i += take;
          if (this.#remaining === 0) this.#endEntry(current);
          break;
        }
        case "meta": {
          const take = Math.min(this.#remaining, n - i);
          if (this.#meta !== null) {
            this.#meta.set(chunk.subarray(i, i + take), this.#metaFill);
            this.#metaFill += take;
          }
          this.#remaining -= take;
          this.#offset += take;
          i += take;
          if (this.#remaining === 0) this.#endMeta();
          break;
        }
        case "padding": {
          const take = Math.min(this.#padding, n - i);
          this.#padding -= take;
          this.#offset += take;
          i += take;
          if (this.#padding === 0) this.#state = "header";
          break;
        }
        case "done":
          return;
      }
    }
  }

  /**
   * Declares the end of the stream.
   * @throws {SyntaxError} `Truncated tar at offset N: ...` unless the end-of-archive marker was read
   */
  end(): void {
    const at = this.#offset;
    switch (this.#state) {
      case "done":
        return;
      case "header":
        if (this.#fill > 0) {
          throw new SyntaxError(
            `Truncated tar at offset ${at}: stream ended inside a header block`,
          );
        }
        if (Object.keys(this.#pending).length > 0) {
          throw new SyntaxError(
            `Truncated tar at offset ${at}: stream ended after an extended header`,
          );
        }
        throw new SyntaxError(`Truncated tar at offset ${at}: no end-of-archive marker`);
      case "trailer":
        throw new SyntaxError(
          `Truncated tar at offset ${at}: stream ended inside the end-of-archive marker`,
        );
      case "data":
        throw new SyntaxError(
          `Truncated tar at offset ${at}: stream ended inside the data of "${
            this.#current!.name
          }" ` +
            `(${this.#remaining} bytes missing)`,
        );
      case "meta":
        throw new SyntaxError(
          `Truncated tar at offset ${at}: stream ended inside an extended header`,
        );
      case "padding":
        throw new SyntaxError(
          `Truncated tar at offset ${at}: stream ended inside the padding of an entry`,
        );
    }
  }

  #onBlock(block: Uint8Array, at: number): void {
    const header = parseTarHeader(block, at);
    if (this.#state === "trailer") {
      if (header !== null) {
        throw new SyntaxError(`Cannot parse tar header at offset ${at - BLOCK}: lone zero block`);
      }
      this.#state = "done";
      return;
    }
    if (header === null) {
      if (Object.keys(this.#pending).length > 0) {
        throw new SyntaxError(
          `Cannot parse tar header at offset ${at}: zero block after an extended header`,
        );
      }
      this.#state = "trailer";
      return;
    }
    switch (header.type) {
      case "x":
      case "g":
      case "L":
      case "K":
        this.#startMeta(header, at);
        return;
    }
    const p = this.#pending;
    this.#pending = {};
    const size = NO_DATA_TYPES.has(header.type) ? 0 : (p.size ?? header.size);
    const entry: TarEntryHeader = {
      name: p.path ?? header.name,
      size,
      mtimeMs: p.mtimeMs ?? header.mtimeMs,
      mode: header.mode,
      type: header.type,
      linkname: p.linkpath ?? header.linkname,
      headerOffset: p.headerOffset ?? at,
      dataOffset: at + BLOCK,
    };
    this.#current = entry;
    this.#handler.entry(entry);
    if (size === 0) this.#endEntry(entry);
    else {
      this.#remaining = size;
      this.#state = "data";
    }
  }

  #endEntry(entry: TarEntryHeader): void {
    this.#handler.entryEnd?.(entry);
    this.#current = null;
    this.#padding = (BLOCK - (entry.size % BLOCK)) % BLOCK;
    this.#state = this.#padding === 0 ? "header" : "padding";
  }

  #startMeta(header: TarHeaderBlock, at: number): void {
    if (header.size > this.#maxMeta) {
      throw new SyntaxError(
        `Cannot parse tar header at offset ${at}: extended header of ${header.size} bytes exceeds ` +
          `the limit of ${this.#maxMeta}`,
      );
    }
    this.#pending.headerOffset ??= at;
    this.#metaType = header.type;
    this.#metaOffset = at;
    // Global pax headers are skipped, not kept.
    this.#meta = header.type === "g" ? null : new Uint8Array(header.size);
    this.#metaFill = 0;
    this.#metaSize = header.size;
    this.#remaining = header.size;
    if (header.size === 0) this.#endMeta();
    else this.#state = "meta";
  }

  #endMeta(): void {
    const bytes = this.#meta;
    this.#meta = null;
    if (bytes !== null) {
      if (this.#metaType === "x") this.#applyPax(bytes);
      else {
        const nul = bytes.indexOf(0);
        const value = decoder.decode(nul === -1 ? bytes : bytes.subarray(0, nul));
        if (this.#metaType === "L") this.#pending.path = value;
        else this.#pending.linkpath = value;
      }
    }
    this.#padding = (BLOCK - (this.#metaSize % BLOCK)) % BLOCK;
    this.#state = this.#padding === 0 ? "header" : "padding";
  }

  #applyPax(bytes: Uint8Array): void {
    const at = this.#metaOffset;
    let i = 0;
    while (i < bytes.length) {
      // "<len> <key>=<value>\n", where <len> counts the whole record.
      let sp = i;
      let len = 0;
      while (sp < bytes.length && bytes[sp]! >= 0x30 && bytes[sp]! <= 0x39) {
        len = len * 10 + bytes[sp]! - 0x30;
        sp++;
      }
      if (sp === i || bytes[sp] !== 0x20 || len < sp - i + 3 || i + len > bytes.length) {
        throw new SyntaxError(
          `Cannot parse pax header at offset ${at}: bad record length at byte ${i}`,
        );
      }
      const record = bytes.subarray(sp + 1, i + len);
      if (record[record.length - 1] !== 0x0a) {
        throw new SyntaxError(
          `Cannot parse pax header at offset ${at}: record at byte ${i} lacks a newline`,
        );
      }
      const eq = record.indexOf(0x3d);
      if (eq <= 0) {
        throw new SyntaxError(
          `Cannot parse pax header at offset ${at}: record at byte ${i} lacks a key`,
        );
      }
      const key = decoder.decode(record.subarray(0, eq));
      // A comment (alignment padding, up to hundreds of KiB) is not decoded.
      if (key !== "comment") {
        const value = decoder.decode(record.subarray(eq + 1, record.length - 1));
        this.#applyPaxRecord(key, value, at);
      }
      i += len;
    }
  }

  #applyPaxRecord(key: string, value: string, at: number): void {
    // An empty value removes an earlier record of the same key. Other keys
    // (comment, charset, atime, uname, vendor SCHILY.*, ...) do not change
    // what coldpack reports.
    switch (key) {
      case "path":
        if (value === "") delete this.#pending.path;
        else this.#pending.path = value;
        return;
      case "linkpath":
        if (value === "") delete this.#pending.linkpath;
        else this.#pending.linkpath = value;
        return;
      case "size": {
        if (value === "") {
          delete this.#pending.size;
          return;
        }
        const size = /^\d+$/.test(value) ? Number(value) : NaN;
        if (!Number.isSafeInteger(size)) {
          throw new SyntaxError(`Cannot parse pax header at offset ${at}: bad size "${value}"`);
        }
        this.#pending.size = size;
        return;
      }
      case "mtime": {
        if (value === "") {
          delete this.#pending.mtimeMs;
          return;
        }
        const seconds = /^-?\d+(\.\d+)?$/.test(value) ? Number(value) : NaN;
        if (!Number.isFinite(seconds)) {
          throw new SyntaxError(`Cannot parse pax header at offset ${at}: bad mtime "${value}"`);
        }
        this.#pending.mtimeMs = Math.round(seconds * 1000);
        return;
      }
    }
  }
}

/**
 * Reads a whole tar from a stream of chunks, yielding each entry with its
 * data. Memory stays bounded by the largest entry, which must not exceed
 * `maxEntrySize`; use {@linkcode TarParser} for larger ones. Stops reading
 * the stream at the end-of-archive marker; breaking out of the loop early
 * is fine (no truncation check then).
 *
 * @param stream chunks of the archive (a `ReadableStream<Uint8Array>` works, so does `[bytes]`)
 * @param options `maxEntrySize` (default 64 MiB), `startOffset`, `maxMetaSize`
 * @throws {SyntaxError} on a bad header or a truncated archive
 * @throws {RangeError} when an entry is larger than `maxEntrySize`
 *
 * @example
 * ```ts
 * for await (const e of readTar(file.readable)) if (e.type === "0") console.log(e.name, e.data.length);
 * ```
 */
export async function* readTar(
  stream: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
  options?: TarParserOptions & { readonly maxEntrySize?: number },
): AsyncGenerator<TarEntry, void, undefined> {
  const maxEntrySize = options?.maxEntrySize ?? 64 * 1024 * 1024;
  const ready: TarEntry[] = [];
  let data: Uint8Array = new Uint8Array(0);
  let fill = 0;
  const parser = new TarParser({
    entry(h) {
      if (h.size > maxEntrySize) {
        throw new RangeError(
          `Cannot read tar entry "${h.name}" at offset ${h.headerOffset}: ${h.size} bytes exceeds ` +
            `the limit of ${maxEntrySize}`,
        );
      }
      data = new Uint8Array(h.size);
      fill = 0;
    },
    data(chunk) {
      data.set(chunk, fill);
      fill += chunk.length;
    },
    entryEnd(h) {
      ready.push({ ...h, data });
    },
  }, options);
  for await (const chunk of stream) {
    parser.write(chunk);
    for (const entry of ready) yield entry;
    ready.length = 0;
    if (parser.done) return;
  }
  parser.end();
}
