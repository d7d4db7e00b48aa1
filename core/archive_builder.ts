/**
 * Builds one archive incrementally as its files arrive: each file's tar
 * header, data and padding are copied into 1 MiB buffers that are tree-hashed
 * once, and an in-memory body is released as soon as it is copied (the bytes
 * move, they are not held twice). A body spooled to disk is hashed by
 * streaming it and referenced, not copied. `finish` appends the manifest and
 * the trailer; then `body()` yields the exact tar as often as an upload needs.
 *
 * Small files are aligned: the data of a file of 1 to `alignBelow` bytes
 * (default {@linkcode DEFAULT_ALIGN_BELOW}, 256 KiB) never crosses a multiple
 * of 1 MiB, so that a ranged retrieval of one such file costs one 1 MiB
 * block, not two. When it would, its header is padded with a pax comment
 * (see `core/tar.ts`); the recorded header offset is that of the padded
 * header, the data offset that of the moved data.
 *
 * @example
 * ```ts
 * const b = new ArchiveBuilder(id, source);
 * await b.add({ row, name, fetched });
 * const built = await b.finish(Date.now());
 * await store.put({ archiveId: built.id, size: built.size, treeHash: built.treeHash,
 *   description: built.description, body: b.body() });
 * ```
 * @module
 */

import type { ArchiveId, SourceId } from "./ids.ts";
import { buildManifest, describeArchive, MANIFEST_NAME, type ManifestFile } from "./manifest.ts";
import type { ArchiveMember, Body, Fetched, FileRow, PackedArchive } from "./ports.ts";
import { MAX_ALIGN_BELOW, tarHeader, tarHeaderWriter, tarTrailer } from "./tar.ts";
import { TreeHasher } from "./tree_hash.ts";
import { createHash } from "node:crypto";

/** One fetched file to put in an archive. */
export interface ArchiveItem {
  readonly row: FileRow;
  /** Its tar entry name (already made safe). */
  readonly name: string;
  readonly fetched: Fetched;
}

/** A finished archive's facts (those of a packed archive, plus its items). */
export type BuiltArchive =
  & Pick<
    PackedArchive,
    "id" | "size" | "treeHash" | "sha256" | "description" | "dataBytes" | "members"
  >
  & { readonly items: readonly ArchiveItem[] };

/**
 * One stream of parts in order: byte buffers as they are, and streams opened
 * only when their turn comes (spooled files).
 */
export function concatParts(
  parts: readonly (Uint8Array | (() => ReadableStream<Uint8Array>))[],
): ReadableStream<Uint8Array> {
  let i = 0;
  let inner: ReadableStreamDefaultReader<Uint8Array> | null = null;
  return new ReadableStream<Uint8Array>({
    async pull(c) {
      for (;;) {
        if (inner) {
          const r = await inner.read();
          if (!r.done) return c.enqueue(r.value);
          inner = null;
        }
        const part = parts[i++];
        if (part === undefined) return c.close();
        if (part instanceof Uint8Array) return c.enqueue(part);
        inner = part().getReader();
      }
    },
    async cancel(reason) {
      await inner?.cancel(reason);
    },
  }, { highWaterMark: 0 });
}

type Segment = Uint8Array | Body;

/** Size of the buffers an archive is assembled in: 1 MiB. */
export const ARCHIVE_CHUNK_SIZE = 1024 * 1024;
const CHUNK = ARCHIVE_CHUNK_SIZE;
const ZEROS = new Uint8Array(512);

/**
 * Files of 1 byte to this many bytes (256 KiB) have their data kept inside one
 * 1 MiB block by default (option `alignBelow` of {@linkcode ArchiveBuilder}).
 */
export const DEFAULT_ALIGN_BELOW = 256 * 1024;

/** Options of {@linkcode ArchiveBuilder}. */
export interface ArchiveBuilderOptions {
  /**
   * Where 1 MiB buffers come from (default: a new one each time); a packer
   * that gets its buffers back after upload passes a pool.
   */
  readonly chunk?: () => Uint8Array;
  /**
   * Files of 1 to `alignBelow` bytes get their data inside one 1 MiB block
   * (see `planTar` in `core/tar.ts`); 0 turns alignment off. An integer from 0
   * to 524288 (`MAX_ALIGN_BELOW`); default {@linkcode DEFAULT_ALIGN_BELOW}.
   */
  readonly alignBelow?: number;
}

/** Assembles a tar archive in memory (and spool references) while hashing it. */
export class ArchiveBuilder {
  readonly id: ArchiveId;
  #source: SourceId;
  #segments: Segment[] = [];
  #chunk: Uint8Array;
  #fill = 0;
  #size = 0;
  #hasher = new TreeHasher();
  /** The plain SHA-256 the stores sign or check (Glacier x-amz-content-sha256, S3 checksum). */
  #linear = createHash("sha256");
  #items: ArchiveItem[] = [];
  #members: ArchiveMember[] = [];
  #files: ManifestFile[] = [];
  #dataBytes = 0;
  #finished: BuiltArchive | null = null;
  #closing = false;
  #header = tarHeaderWriter();
  #alignBelow: number;

  #newChunk: () => Uint8Array;

  /**
   * @param id the archive's id
   * @param source the source its files come from
   * @param options `chunk` (buffer source) and `alignBelow` (default
   *   {@linkcode DEFAULT_ALIGN_BELOW}; 0 turns alignment off)
   * @throws {RangeError} when `alignBelow` is not an integer from 0 to 524288
   */
  constructor(id: ArchiveId, source: SourceId, options: ArchiveBuilderOptions = {}) {
    const alignBelow = options.alignBelow ?? DEFAULT_ALIGN_BELOW;
    if (!Number.isInteger(alignBelow) || alignBelow < 0 || alignBelow > MAX_ALIGN_BELOW) {
      throw new RangeError(
        `Cannot build archive ${id}: alignBelow ${alignBelow} is not an integer from 0 to ` +
          `${MAX_ALIGN_BELOW}`,
      );
    }
    this.id = id;
    this.#source = source;
    this.#alignBelow = alignBelow;
    this.#newChunk = options.chunk ?? (() => new Uint8Array(CHUNK));
    this.#chunk = this.#newChunk();
  }

  /** Bytes of tar so far. */
  get size(): number {
    return this.#size;
  }

  /** Files added so far. */
  get count(): number {
    return this.#items.length;
  }

  /** Appends a file: header, data, padding. */
  async add(item: ArchiveItem): Promise<void> {
    if (this.#finished) throw new TypeError(`Cannot add to finished archive ${this.id}`);
    const { row, fetched } = item;
    const headerOffset = this.#size;
    this.#write(
      this.#header(
        { name: item.name, size: fetched.length, mtimeMs: row.mtimeMs },
        { offset: headerOffset, alignBelow: this.#alignBelow },
      ),
    );
    const dataOffset = this.#size;
    const bytes = fetched.body.bytes;
    if (bytes !== null) {
      this.#write(bytes);
      await fetched.body.release();
    } else {
      await this.#appendBody(fetched.body);
    }
    this.#pad(fetched.length);
    this.#items.push(item);
    this.#members.push({
      fileId: row.id,
      md5: fetched.md5,
      length: fetched.length,
      headerOffset,
      dataOffset,
    });
    this.#files.push({
      fileId: row.id,
      key: row.key,
      version: row.version,
      ...(row.domain === null ? {} : { domain: row.domain }),
      ...(row.storageClass === null ? {} : { class: row.storageClass }),
      ...(row.sourceFid === null ? {} : { sourceFid: row.sourceFid }),
      name: item.name,
      length: fetched.length,
      md5: fetched.md5,
      mtime: new Date(row.mtimeMs).toISOString(),
      headerOffset,
      dataOffset,
    });
    this.#dataBytes += fetched.length;
  }

  /** Appends the manifest and the trailer; the archive's bytes are then fixed. */
  finish(nowMs: number): BuiltArchive {
    if (this.#finished) return this.#finished;
    if (this.#items.length === 0) throw new RangeError(`Cannot finish archive ${this.id}: empty`);
    const manifest = buildManifest({
      format: 1,
      archiveId: this.id,
      source: this.#source,
      createdAt: new Date(nowMs).toISOString(),
      files: this.#files,
    });
    this.#write(tarHeader({ name: MANIFEST_NAME, size: manifest.length, mtimeMs: nowMs }));
    this.#write(manifest);
    this.#pad(manifest.length);
    this.#write(tarTrailer());
    this.#closing = true;
    this.#flush();
    let min = Number.MAX_SAFE_INTEGER;
    let max = 0;
    for (const m of this.#members) {
      if (m.fileId < min) min = m.fileId;
      if (m.fileId > max) max = m.fileId;
    }
    this.#files = [];
    this.#finished = {
      id: this.id,
      size: this.#size,
      treeHash: this.#hasher.digest(),
      sha256: this.#linear.digest("hex"),
      description: describeArchive({
        archiveId: this.id,
        fileIds: { min, max },
        count: this.#items.length,
        source: this.#source,
      }),
      dataBytes: this.#dataBytes,
      members: this.#members,
      items: this.#items,
    };
    return this.#finished;
  }

  /**
   * The finished archive as its parts, in order: buffers of tar bytes and
   * spooled bodies (for a packer that hands the archive to another thread).
   */
  segments(): readonly (Uint8Array | Body)[] {
    if (!this.#finished) throw new TypeError(`Cannot read unfinished archive ${this.id}`);
    return this.#segments;
  }

  /** The finished archive's bytes, as a fresh stream each call. */
  body(): ReadableStream<Uint8Array> {
    if (!this.#finished) throw new TypeError(`Cannot read unfinished archive ${this.id}`);
    return concatParts(
      this.#segments.map((seg) => seg instanceof Uint8Array ? seg : () => seg.stream()),
    );
  }

  /** Frees every buffer and spooled body. Idempotent. */
  async release(): Promise<void> {
    for (const s of this.#segments) if (!(s instanceof Uint8Array)) await s.release();
    for (const it of this.#items) await it.fetched.body.release();
    this.#segments = [];
  }

  #write(bytes: Uint8Array): void {
    let off = 0;
    while (off < bytes.length) {
      const n = Math.min(bytes.length - off, CHUNK - this.#fill);
      this.#chunk.set(bytes.subarray(off, off + n), this.#fill);
      this.#fill += n;
      off += n;
      if (this.#fill === CHUNK) this.#flush();
    }
    this.#size += bytes.length;
  }

  #pad(length: number): void {
    const pad = (512 - (length % 512)) % 512;
    if (pad > 0) this.#write(ZEROS.subarray(0, pad));
  }

  /** Hashes and keeps the filled part of the current chunk. */
  #flush(): void {
    if (this.#fill === 0) return;
    const full = this.#fill === CHUNK ? this.#chunk : this.#chunk.subarray(0, this.#fill);
    this.#hasher.update(full);
    this.#linear.update(full);
    this.#segments.push(full);
    // The last flush (from finish) takes no new buffer: none will be filled.
    this.#chunk = this.#closing ? new Uint8Array(0) : this.#newChunk();
    this.#fill = 0;
  }

  /** A spooled body: hashed by reading it, referenced rather than copied. */
  async #appendBody(body: Body): Promise<void> {
    this.#flush();
    let n = 0;
    if (body.read) {
      // One reused buffer: no garbage per read.
      const scratch = this.#scratch ??= new Uint8Array(CHUNK);
      for (;;) {
        const got = await body.read(scratch, n);
        if (got === 0) break;
        this.#hasher.update(scratch.subarray(0, got));
        this.#linear.update(scratch.subarray(0, got));
        n += got;
      }
    } else {
      const reader = body.stream().getReader();
      for (;;) {
        const r = await reader.read();
        if (r.done) break;
        this.#hasher.update(r.value);
        this.#linear.update(r.value);
        n += r.value.length;
      }
    }
    if (n !== body.length) {
      throw new RangeError(`Spooled body changed: expected ${body.length} bytes, read ${n}`);
    }
    this.#segments.push(body);
    this.#size += n;
  }

  #scratch: Uint8Array | null = null;
}
