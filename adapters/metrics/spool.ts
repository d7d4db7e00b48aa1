/**
 * The metrics agent's spool: a durable, bounded, on-disk queue of forward
 * lines with one cursor per master.
 *
 * Layout of the spool directory:
 * - `000000000001.seg`, `000000000002.seg`, ...: append-only segment files of
 *   records. A record is a 16-byte little-endian header (magic `CPS1`, payload
 *   length, line count, CRC-32 of the first 12 header bytes and the payload)
 *   then the payload: the lines, each ending in LF. A record is a batch: the
 *   unit that is read, committed and dropped whole. `append` stores its lines
 *   as one record, or as several when they exceed `recordBytes`, with one
 *   write and one fsync per segment it touches (one, mostly).
 * - `cursor.<reader>.json`: how far each reader (a master, by `host:port`)
 *   has committed, written atomically (temp file, fsync, rename).
 * - `state.json`: what had to be dropped (size bound) or was found torn
 *   (crash), so the counts survive restarts.
 * - `LOCK`: held (flock) while a process has the spool open.
 *
 * A segment is deleted once every reader's cursor is past it. When an
 * append would take the segments over `maxBytes`, the oldest segments are
 * dropped whole first; the records in them that some reader had not yet
 * committed are counted as dropped lines and batches. On open, every record
 * is checked (length, CRC); a torn or corrupt tail (a crash in the middle of
 * an append) is cut off and counted in `tornRecords`. An append that did not
 * resolve may so leave its first records (whole, valid lines) behind; one that
 * resolved is all there.
 *
 * @example
 * ```ts
 * const spool = await Spool.open("/var/lib/coldpack/spool", {
 *   maxBytes: 1 << 30,
 *   readers: ["istatd1:8111"],
 * });
 * await spool.append(["*web.hits 1700000000 12"]);
 * const batch = await spool.read("istatd1:8111", 256 * 1024);
 * if (batch) await spool.commit("istatd1:8111", batch.next);
 * await spool.close();
 * ```
 * @module
 */

import { crc32 } from "node:zlib";
import { errorCode, PortError } from "../../core/errors.ts";
import { FS_RETRYABLE_CODES, isGone, syncDir } from "../_fs.ts";

/** A position in the spool: before the record at `offset` of segment `segment`. */
export interface SpoolCursor {
  /** The segment's sequence number. */
  readonly segment: number;
  /** A record boundary in that segment (its size for "after the last record"). */
  readonly offset: number;
}

/** Options for {@linkcode Spool.open}. */
export interface SpoolOptions {
  /** Upper bound of the segment files' total size, in bytes. */
  maxBytes: number;
  /** The readers (one per master, `host:port`); at least one. */
  readers: readonly string[];
  /**
   * A segment is closed and a new one started when the next record would
   * take it over this size. Default: `maxBytes / 8`, at least 4 KiB (or
   * `maxBytes`), at most 64 MiB (dropping for the size bound frees whole segments, so this is the
   * granularity of drops).
   */
  segmentBytes?: number;
  /**
   * Lines of one append are stored as records of at most about this many
   * payload bytes (a longer line makes a record of its own). Default: 64 KiB,
   * at most `segmentBytes / 4`.
   */
  recordBytes?: number;
}

/** What {@linkcode Spool.read} returns. */
export interface SpoolRead {
  /** The lines, each ending in LF, as bytes (what a forwarder writes). */
  readonly data: Uint8Array;
  /** The same, as text (decoded when first asked for). */
  readonly text: string;
  /** How many lines. */
  readonly lines: number;
  /** How many batches (records). */
  readonly batches: number;
  /** The position after the last batch read: commit it, or read on from it. */
  readonly next: SpoolCursor;
}

/** What {@linkcode Spool.stats} returns. */
export interface SpoolStats {
  /** Bytes of the segment files. */
  bytes: number;
  /** Batches (records) held in the segment files, committed or not. */
  batches: number;
  /** Lines dropped (never sent to at least one reader) for the size bound, since the spool was made. */
  droppedLines: number;
  /** Batches dropped for the size bound, since the spool was made. */
  droppedBatches: number;
  /** Torn or corrupt records cut off when the spool was opened, since it was made. */
  tornRecords: number;
  /** Bytes cut off with them. */
  tornBytes: number;
  /** Lines not yet committed, per reader. */
  pending: Record<string, number>;
}

const MAGIC = 0x31535043; // "CPS1" little-endian
const HEADER = 16;
/** A header announcing a payload larger than this is garbage. */
const MAX_PAYLOAD = 1 << 30;
const SCAN_CHUNK = 1 << 20;
const SEGMENT_RE = /^(\d{12})\.seg$/;
const CURSOR_PREFIX = "cursor.";
const CURSOR_SUFFIX = ".json";

interface Segment {
  readonly seq: number;
  /** Bytes of valid records. */
  size: number;
  /** Start offset of each record. */
  readonly offsets: number[];
  /** `cumLines[i]`: lines in the records before record i (length: records + 1). */
  readonly cumLines: number[];
}

/** A normalized position: record `ri` of segment index `si`. */
interface Pos {
  si: number;
  ri: number;
}

interface Counters {
  droppedLines: number;
  droppedBatches: number;
  tornRecords: number;
  tornBytes: number;
}

/**
 * A durable, bounded queue of forward lines on disk, read by one or more
 * readers with independent cursors. Every method may be called at any time;
 * they run one after another. Methods throw {@linkcode PortError} with the
 * file system's code (`ENOSPC`, `EIO`, ...) when the disk fails them.
 */
export class Spool {
  readonly #dir: string;
  readonly #maxBytes: number;
  readonly #segmentBytes: number;
  readonly #recordBytes: number;
  readonly #readers: readonly string[];
  readonly #segments: Segment[] = [];
  readonly #committed = new Map<string, SpoolCursor>();
  readonly #counters: Counters;
  #lock: Deno.FsFile;
  #nextSeq = 1;
  #bytes = 0;
  #active: Deno.FsFile | null = null;
  /** The last segment takes no more appends (a failed write could not be undone). */
  #sealed = false;
  #queue: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(
    dir: string,
    options: Required<SpoolOptions>,
    lock: Deno.FsFile,
    counters: Counters,
  ) {
    this.#dir = dir;
    this.#maxBytes = options.maxBytes;
    this.#segmentBytes = options.segmentBytes;
    this.#recordBytes = options.recordBytes;
    this.#readers = [...options.readers];
    this.#lock = lock;
    this.#counters = counters;
  }

  /**
   * Opens (creating it if needed) the spool in `dir`: checks every record,
   * cuts off a torn tail, loads the cursors (a new reader starts at the end:
   * it gets what is appended from now on), drops the oldest segments if they
   * are over `maxBytes`, and deletes segments every reader is past.
   *
   * @throws {RangeError} when `readers` is empty or the sizes do not fit
   * @throws {PortError} coded `ELOCKED` when another process has the spool
   *   open; an errno code when the directory cannot be read or written
   */
  static async open(dir: string, options: SpoolOptions): Promise<Spool> {
    const resolved = resolveOptions(options);
    await fsCall(dir, "create", () => Deno.mkdir(dir, { recursive: true }));
    const lock = await fsCall(
      dir,
      "open the lock of",
      () => Deno.open(`${dir}/LOCK`, { read: true, write: true, create: true }),
    );
    let locked = false;
    try {
      locked = await lock.tryLock(true);
    } catch (e) {
      lock.close();
      throw fsError(e, dir, "lock");
    }
    if (!locked) {
      lock.close();
      throw new PortError(`Cannot open spool "${dir}": another process has it open (LOCK)`, {
        code: "ELOCKED",
        retryable: false,
      });
    }
    try {
      const counters = await readState(dir);
      const spool = new Spool(dir, resolved, lock, counters);
      await spool.#load();
      return spool;
    } catch (e) {
      lock.close();
      throw e;
    }
  }

  /**
   * Appends `lines` (each without LF) as one batch, and resolves once they
   * are on disk (fsynced). Drops the oldest segments first when the spool
   * would go over `maxBytes`; a batch bigger than `maxBytes` on its own
   * keeps only its newest records that fit.
   *
   * @throws {TypeError} when a line contains LF
   */
  async append(lines: readonly string[]): Promise<void> {
    this.#open();
    if (lines.length === 0) return;
    const records = encodeRecords(lines, this.#recordBytes);
    return await this.#serial(() => this.#append(records));
  }

  /**
   * Up to `maxBytes` of payload in whole batches after `from` (default: the
   * reader's committed cursor), from one segment; at least one batch when
   * there is any. `null` when there is nothing after `from`. A `from` in a
   * segment dropped since then reads on from the oldest batch still held.
   *
   * @throws {RangeError} for an unknown reader
   */
  async read(reader: string, maxBytes: number, from?: SpoolCursor): Promise<SpoolRead | null> {
    this.#open();
    this.#reader(reader);
    return await this.#serial(() => this.#read(reader, maxBytes, from));
  }

  /**
   * Records durably that `reader` has everything before `to`, and deletes
   * the segments every reader is past. A `to` at or before the committed
   * cursor is ignored.
   *
   * @throws {RangeError} for an unknown reader
   */
  async commit(reader: string, to: SpoolCursor): Promise<void> {
    this.#open();
    this.#reader(reader);
    return await this.#serial(() => this.#commit(reader, to));
  }

  /** The reader's committed cursor. */
  committed(reader: string): SpoolCursor {
    this.#reader(reader);
    return this.#cursorAt(this.#locate(this.#committed.get(reader)!));
  }

  /** Sizes, drop and torn counts, and lines pending per reader. */
  stats(): SpoolStats {
    const pending: Record<string, number> = {};
    for (const r of this.#readers) pending[r] = this.#pendingLines(this.#committed.get(r)!);
    let batches = 0;
    for (const s of this.#segments) batches += s.offsets.length;
    return { bytes: this.#bytes, batches, ...this.#counters, pending };
  }

  /** Waits for running calls, then closes the files and releases the lock. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    return this.#queue.then(() => {
      this.#active?.close();
      this.#active = null;
      this.#lock.close();
    });
  }

  #open(): void {
    if (this.#closed) throw new Error(`Spool "${this.#dir}" is closed`);
  }

  #reader(reader: string): void {
    if (!this.#committed.has(reader)) {
      throw new RangeError(`Unknown spool reader "${reader}": expected one of ${this.#readers}`);
    }
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  async #load(): Promise<void> {
    const seqs: number[] = [];
    const cursorFiles = new Map<string, string>();
    for await (const entry of fsIter(this.#dir)) {
      const m = SEGMENT_RE.exec(entry.name);
      if (m) seqs.push(Number(m[1]));
      else if (entry.name.endsWith(".tmp")) await removeQuietly(`${this.#dir}/${entry.name}`);
      else if (entry.name.startsWith(CURSOR_PREFIX) && entry.name.endsWith(CURSOR_SUFFIX)) {
        cursorFiles.set(entry.name, `${this.#dir}/${entry.name}`);
      }
    }
    seqs.sort((a, b) => a - b);
    let torn = false;
    for (const [i, seq] of seqs.entries()) {
      const segment = await this.#scan(seq);
      if (segment.size < segment.scanned) torn = true;
      if (segment.size === 0 && i < seqs.length - 1) {
        await removeQuietly(this.#segmentPath(seq));
        continue;
      }
      this.#segments.push(segment);
      this.#bytes += segment.size;
    }
    let maxSeq = seqs.at(-1) ?? 0;
    const raw = new Map<string, SpoolCursor | null>();
    for (const [name, path] of cursorFiles) {
      const cursor = await readCursor(path);
      raw.set(name, cursor);
      if (cursor) maxSeq = Math.max(maxSeq, cursor.segment);
    }
    this.#nextSeq = maxSeq + 1;
    for (const reader of this.#readers) {
      const name = cursorFileName(reader);
      const cursor = raw.get(name);
      if (cursor) {
        this.#committed.set(reader, cursor);
        continue;
      }
      // A new reader starts at the end; an unreadable cursor file at the start (resend).
      const start = cursor === null ? { segment: 0, offset: 0 } : this.#cursorAt(this.#end());
      this.#committed.set(reader, this.#cursorAt(this.#locate(start)));
      await this.#writeCursor(reader, this.#committed.get(reader)!, true);
    }
    if (torn) await this.#writeState();
    if (this.#bytes > this.#maxBytes) await this.#dropOldest(this.#bytes - this.#maxBytes);
    await this.#collect();
  }

  /** Reads segment `seq`, indexing its valid records and cutting off a torn tail. */
  async #scan(seq: number): Promise<Segment & { scanned: number }> {
    const path = this.#segmentPath(seq);
    const segment: Segment = { seq, size: 0, offsets: [], cumLines: [0] };
    const file = await fsCall(path, "open", () => Deno.open(path, { read: true, write: true }));
    try {
      const fileSize = (await fsCall(path, "stat", () => file.stat())).size;
      let buf = new Uint8Array(SCAN_CHUNK);
      let bufStart = 0; // file offset of buf[0]
      let bufLen = 0;
      let pos = 0;
      let eof = false;
      let view = new DataView(buf.buffer);
      /** Makes buf hold file bytes [pos, pos + n), or fewer at EOF. */
      const need = async (n: number): Promise<boolean> => {
        if (pos + n <= bufStart + bufLen) return true;
        if (eof) return false;
        const keep = bufStart + bufLen - pos;
        if (n > buf.length) {
          const bigger = new Uint8Array(Math.max(n, buf.length * 2));
          bigger.set(buf.subarray(pos - bufStart, pos - bufStart + keep));
          buf = bigger;
          view = new DataView(buf.buffer);
        } else {
          buf.copyWithin(0, pos - bufStart, pos - bufStart + keep);
        }
        bufStart = pos;
        bufLen = keep;
        while (bufLen < buf.length) {
          const got = await fsCall(path, "read", () => file.read(buf.subarray(bufLen)));
          if (got === null) {
            eof = true;
            break;
          }
          bufLen += got;
        }
        return pos + n <= bufStart + bufLen;
      };
      let lines = 0;
      while (pos < fileSize) {
        if (!(await need(HEADER))) break;
        const v = view;
        const at = pos - bufStart;
        if (v.getUint32(at, true) !== MAGIC) break;
        const length = v.getUint32(at + 4, true);
        const count = v.getUint32(at + 8, true);
        const crc = v.getUint32(at + 12, true);
        if (length > MAX_PAYLOAD || pos + HEADER + length > fileSize) break;
        if (!(await need(HEADER + length))) break;
        const h = pos - bufStart;
        const sum = crc32(
          buf.subarray(h + HEADER, h + HEADER + length),
          crc32(buf.subarray(h, h + 12)),
        );
        if (sum !== crc) break;
        segment.offsets.push(pos);
        lines += count;
        segment.cumLines.push(lines);
        pos += HEADER + length;
      }
      segment.size = pos;
      if (pos < fileSize) {
        this.#counters.tornRecords += 1;
        this.#counters.tornBytes += fileSize - pos;
        await fsCall(path, "truncate", async () => {
          await file.truncate(pos);
          await file.syncData();
        });
      }
      return { ...segment, scanned: fileSize };
    } finally {
      file.close();
    }
  }

  async #append(records: EncodedRecord[]): Promise<void> {
    let need = 0;
    for (const r of records) need += r.bytes.length;
    if (this.#bytes + need > this.#maxBytes && this.#segments.length > 0) {
      await this.#dropOldest(this.#bytes + need - this.#maxBytes);
    }
    if (need > this.#maxBytes) {
      while (records.length > 0 && need > this.#maxBytes) {
        const r = records.shift()!;
        need -= r.bytes.length;
        this.#counters.droppedLines += r.lines;
        this.#counters.droppedBatches += 1;
      }
      await this.#writeState();
    }
    let created = false;
    let i = 0;
    while (i < records.length) {
      // Start a new segment when the last one is full (or sealed).
      let last = this.#segments.at(-1);
      const first = records[i]!.bytes.length;
      if (
        !last || this.#sealed ||
        (last.size > 0 && last.size + first > this.#segmentBytes)
      ) {
        await this.#roll();
        created = true;
        last = this.#segments.at(-1)!;
      }
      let j = i;
      let size = last.size;
      while (
        j < records.length && (j === i || size + records[j]!.bytes.length <= this.#segmentBytes)
      ) {
        size += records[j]!.bytes.length;
        j++;
      }
      await this.#write(last, records.slice(i, j));
      i = j;
    }
    if (created) await syncDir(this.#dir);
  }

  /** Closes the last segment and starts a new, empty one. */
  async #roll(): Promise<void> {
    this.#active?.close();
    this.#active = null;
    // nextSeq moves on only once the segment is there: the cursor of an empty spool is
    // (nextSeq, 0), and `committed()` may be called while this waits.
    const seq = this.#nextSeq;
    const path = this.#segmentPath(seq);
    try {
      this.#active = await fsCall(
        path,
        "create",
        () => Deno.open(path, { write: true, append: true, createNew: true }),
      );
    } finally {
      this.#nextSeq = seq + 1;
    }
    this.#sealed = false;
    this.#segments.push({ seq, size: 0, offsets: [], cumLines: [0] });
  }

  async #write(segment: Segment, records: EncodedRecord[]): Promise<void> {
    const path = this.#segmentPath(segment.seq);
    if (!this.#active) {
      this.#active = await fsCall(
        path,
        "open",
        () => Deno.open(path, { write: true, append: true }),
      );
    }
    const file = this.#active;
    let total = 0;
    for (const r of records) total += r.bytes.length;
    let buf: Uint8Array;
    if (records.length === 1) buf = records[0]!.bytes;
    else {
      buf = new Uint8Array(total);
      let at = 0;
      for (const r of records) {
        buf.set(r.bytes, at);
        at += r.bytes.length;
      }
    }
    try {
      let done = 0;
      while (done < buf.length) done += await file.write(buf.subarray(done));
      await file.syncData();
    } catch (e) {
      // Undo a partial record so that later appends stay readable; else seal the segment.
      try {
        await file.truncate(segment.size);
      } catch {
        this.#sealed = true;
      }
      throw fsError(e, path, "append to");
    }
    let lines = segment.cumLines.at(-1)!;
    for (const r of records) {
      segment.offsets.push(segment.size);
      segment.size += r.bytes.length;
      lines += r.lines;
      segment.cumLines.push(lines);
    }
    this.#bytes += total;
  }

  async #read(reader: string, maxBytes: number, from?: SpoolCursor): Promise<SpoolRead | null> {
    const pos = this.#locate(from ?? this.#committed.get(reader)!);
    const segment = this.#segments[pos.si];
    if (!segment || pos.ri >= segment.offsets.length) return null;
    const count = segment.offsets.length;
    const start = segment.offsets[pos.ri]!;
    let end = pos.ri;
    let payload = 0;
    while (end < count) {
      const recEnd = end + 1 < count ? segment.offsets[end + 1]! : segment.size;
      const len = recEnd - segment.offsets[end]! - HEADER;
      if (end > pos.ri && payload + len > maxBytes) break;
      payload += len;
      end++;
    }
    const byteEnd = end < count ? segment.offsets[end]! : segment.size;
    const path = this.#segmentPath(segment.seq);
    const buf = new Uint8Array(byteEnd - start);
    const file = await fsCall(path, "open", () => Deno.open(path, { read: true }));
    try {
      await fsCall(path, "read", async () => {
        await file.seek(start, Deno.SeekMode.Start);
        let got = 0;
        while (got < buf.length) {
          const n = await file.read(buf.subarray(got));
          if (n === null) throw new PortError("short read", { code: "EIO", retryable: true });
          got += n;
        }
      });
    } finally {
      file.close();
    }
    // Squeeze the headers out, in place.
    let w = 0;
    for (let r = pos.ri; r < end; r++) {
      const src = segment.offsets[r]! - start + HEADER;
      const srcEnd = (r + 1 < count ? segment.offsets[r + 1]! : segment.size) - start;
      buf.copyWithin(w, src, srcEnd);
      w += srcEnd - src;
    }
    const data = buf.subarray(0, w);
    let text: string | undefined;
    return {
      data,
      get text() {
        return text ??= new TextDecoder().decode(data);
      },
      lines: segment.cumLines[end]! - segment.cumLines[pos.ri]!,
      batches: end - pos.ri,
      next: { segment: segment.seq, offset: byteEnd },
    };
  }

  async #commit(reader: string, to: SpoolCursor): Promise<void> {
    const pos = this.#locate(to);
    if (compare(pos, this.#locate(this.#committed.get(reader)!)) <= 0) return;
    const cursor = this.#cursorAt(pos);
    await this.#writeCursor(reader, cursor);
    this.#committed.set(reader, cursor);
    await this.#collect();
  }

  /** Deletes the segments before every reader's cursor (never the last one). */
  async #collect(): Promise<void> {
    const min = this.#minCommitted();
    const n = Math.min(min.si, this.#segments.length - 1);
    for (let i = 0; i < n; i++) {
      const segment = this.#segments.shift()!;
      this.#bytes -= segment.size;
      await removeQuietly(this.#segmentPath(segment.seq));
    }
  }

  /** Drops the oldest segments until at least `excess` bytes are gone (or none are left). */
  async #dropOldest(excess: number): Promise<void> {
    const min = this.#minCommitted();
    let n = 0;
    let freed = 0;
    while (n < this.#segments.length && freed < excess) {
      const segment = this.#segments[n]!;
      const from = n < min.si ? segment.offsets.length : n === min.si ? min.ri : 0;
      this.#counters.droppedBatches += segment.offsets.length - from;
      this.#counters.droppedLines += segment.cumLines.at(-1)! - segment.cumLines[from]!;
      freed += segment.size;
      n++;
    }
    // Count first, then delete: a crash in between over-reports rather than hides a loss.
    await this.#writeState();
    if (n === this.#segments.length) {
      this.#active?.close();
      this.#active = null;
    }
    for (const segment of this.#segments.splice(0, n)) {
      this.#bytes -= segment.size;
      await removeQuietly(this.#segmentPath(segment.seq));
    }
  }

  #minCommitted(): Pos {
    let min: Pos | null = null;
    for (const cursor of this.#committed.values()) {
      const pos = this.#locate(cursor);
      if (!min || compare(pos, min) < 0) min = pos;
    }
    return min ?? this.#end();
  }

  #pendingLines(cursor: SpoolCursor): number {
    const pos = this.#locate(cursor);
    let lines = 0;
    for (let i = pos.si; i < this.#segments.length; i++) {
      const s = this.#segments[i]!;
      lines += s.cumLines.at(-1)! - (i === pos.si ? s.cumLines[pos.ri]! : 0);
    }
    return lines;
  }

  #end(): Pos {
    const n = this.#segments.length;
    return n === 0 ? { si: 0, ri: 0 } : { si: n - 1, ri: this.#segments[n - 1]!.offsets.length };
  }

  /**
   * The position of `cursor` among the segments held now: in a deleted
   * segment, the start of the next one; at the end of a segment, the start
   * of the next one; off a record boundary, that record's start.
   */
  #locate(cursor: SpoolCursor): Pos {
    const segs = this.#segments;
    let si = 0;
    while (si < segs.length && segs[si]!.seq < cursor.segment) si++;
    if (si === segs.length) return this.#end();
    const s = segs[si]!;
    let ri = 0;
    if (s.seq === cursor.segment) {
      if (cursor.offset >= s.size) ri = s.offsets.length;
      else {
        // The last record starting at or before the offset.
        let lo = 0;
        let hi = s.offsets.length - 1;
        while (lo < hi) {
          const mid = (lo + hi + 1) >> 1;
          if (s.offsets[mid]! <= cursor.offset) lo = mid;
          else hi = mid - 1;
        }
        ri = lo;
      }
    }
    while (si < segs.length - 1 && ri >= segs[si]!.offsets.length) {
      si++;
      ri = 0;
    }
    return { si, ri };
  }

  #cursorAt(pos: Pos): SpoolCursor {
    const s = this.#segments[pos.si];
    if (!s) return { segment: this.#nextSeq, offset: 0 };
    return { segment: s.seq, offset: pos.ri < s.offsets.length ? s.offsets[pos.ri]! : s.size };
  }

  #segmentPath(seq: number): string {
    return `${this.#dir}/${String(seq).padStart(12, "0")}.seg`;
  }

  /** Writes a cursor; `durable` also syncs the directory (a lost commit only resends). */
  async #writeCursor(reader: string, cursor: SpoolCursor, durable = false): Promise<void> {
    const path = `${this.#dir}/${cursorFileName(reader)}`;
    await writeAtomic(path, JSON.stringify({ reader, ...cursor }) + "\n", durable);
  }

  async #writeState(): Promise<void> {
    await writeAtomic(`${this.#dir}/state.json`, JSON.stringify(this.#counters) + "\n", true);
  }
}

interface EncodedRecord {
  readonly bytes: Uint8Array;
  readonly lines: number;
}

function resolveOptions(options: SpoolOptions): Required<SpoolOptions> {
  const { maxBytes, readers } = options;
  if (readers.length === 0) throw new RangeError("A spool needs at least one reader");
  if (new Set(readers).size !== readers.length) {
    throw new RangeError(`Spool readers must differ: ${readers}`);
  }
  const segmentBytes = options.segmentBytes ??
    Math.min(64 * 1024 * 1024, Math.max(Math.min(4096, maxBytes), Math.floor(maxBytes / 8)));
  const recordBytes = options.recordBytes ?? Math.min(64 * 1024, Math.floor(segmentBytes / 4));
  if (!(recordBytes > 0)) throw new RangeError(`Invalid spool recordBytes: ${recordBytes}`);
  if (!(segmentBytes >= recordBytes + HEADER)) {
    throw new RangeError(
      `Invalid spool segmentBytes: ${segmentBytes} (at least recordBytes + ${HEADER})`,
    );
  }
  if (!(maxBytes >= segmentBytes)) {
    throw new RangeError(`Invalid spool maxBytes: ${maxBytes} (at least segmentBytes)`);
  }
  return { maxBytes, readers, segmentBytes, recordBytes };
}

const encoder = new TextEncoder();

/** Groups lines into records of about `recordBytes` of payload each. */
function encodeRecords(lines: readonly string[], recordBytes: number): EncodedRecord[] {
  const records: EncodedRecord[] = [];
  let first = 0;
  let size = 0;
  const flush = (end: number) => {
    const slice = first === 0 && end === lines.length ? lines : lines.slice(first, end);
    records.push(encodeRecord(slice.join("\n") + "\n", end - first));
    first = end;
    size = 0;
  };
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    if (line.includes("\n")) {
      throw new TypeError(`Cannot spool line ${i + 1}: it contains LF: ${line.slice(0, 80)}`);
    }
    const len = line.length + 1;
    if (size > 0 && size + len > recordBytes) flush(i);
    size += len;
  }
  flush(lines.length);
  return records;
}

function encodeRecord(text: string, lines: number): EncodedRecord {
  const payload = encoder.encode(text);
  const bytes = new Uint8Array(HEADER + payload.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, MAGIC, true);
  view.setUint32(4, payload.length, true);
  view.setUint32(8, lines, true);
  bytes.set(payload, HEADER);
  view.setUint32(12, crc32(payload, crc32(bytes.subarray(0, 12))), true);
  return { bytes, lines };
}

function compare(a: Pos, b: Pos): number {
  return a.si - b.si || a.ri - b.ri;
}

function cursorFileName(reader: string): string {
  return `${CURSOR_PREFIX}${encodeURIComponent(reader)}${CURSOR_SUFFIX}`;
}

/** The cursor in `path`; `null` when the file is not a valid cursor. */
async function readCursor(path: string): Promise<SpoolCursor | null> {
  const text = await fsCall(path, "read", () => Deno.readTextFile(path));
  try {
    const v = JSON.parse(text);
    if (Number.isSafeInteger(v?.segment) && Number.isSafeInteger(v?.offset)) {
      return { segment: v.segment, offset: v.offset };
    }
  } catch {
    // Falls through.
  }
  return null;
}

async function readState(dir: string): Promise<Counters> {
  const counters = { droppedLines: 0, droppedBatches: 0, tornRecords: 0, tornBytes: 0 };
  let text: string;
  try {
    text = await Deno.readTextFile(`${dir}/state.json`);
  } catch (e) {
    if (isGone(errorCode(e))) return counters;
    throw fsError(e, `${dir}/state.json`, "read");
  }
  try {
    const v = JSON.parse(text);
    for (const key of Object.keys(counters) as (keyof Counters)[]) {
      if (Number.isSafeInteger(v?.[key])) counters[key] = v[key];
    }
  } catch {
    // Written atomically, so only tampering gets here: start counting again.
  }
  return counters;
}

async function writeAtomic(path: string, text: string, durableRename: boolean): Promise<void> {
  const temp = `${path}.tmp`;
  await fsCall(path, "write", async () => {
    const file = await Deno.open(temp, { write: true, create: true, truncate: true });
    try {
      await file.write(encoder.encode(text));
      await file.syncData();
    } finally {
      file.close();
    }
    await Deno.rename(temp, path);
  });
  if (durableRename) await syncDir(path.slice(0, path.lastIndexOf("/")) || "/");
}

async function removeQuietly(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (e) {
    if (!isGone(errorCode(e))) throw fsError(e, path, "remove");
  }
}

async function* fsIter(dir: string): AsyncIterable<Deno.DirEntry> {
  try {
    yield* Deno.readDir(dir);
  } catch (e) {
    throw fsError(e, dir, "list");
  }
}

async function fsCall<T>(path: string, what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    throw fsError(e, path, what);
  }
}

function fsError(e: unknown, path: string, what: string): PortError {
  if (e instanceof PortError) return e;
  const code = errorCode(e);
  return new PortError(`Cannot ${what} "${path}" (metrics spool): ${code}`, {
    code,
    retryable: FS_RETRYABLE_CODES.has(code),
    cause: e,
  });
}
