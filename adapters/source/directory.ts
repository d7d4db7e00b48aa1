/**
 * A {@linkcode Source} over a local directory tree (`--source /srv/uploads`).
 *
 * Listing walks the tree depth first with synchronous `Deno.readDirSync` and
 * `Deno.lstatSync` calls: measured with `scripts/bench_walk.ts`, that costs
 * about 6 µs per file, several times less than the asynchronous calls (even
 * batched with `Promise.all`) or `node:fs`. The walk lets timers and I/O
 * run at least every 20 ms (between directories and between pages), and
 * holds only one directory's names at a time (plus the paths of the
 * directories still to visit). Opening a file also uses synchronous calls
 * for its checks (see {@linkcode DirectorySource.open}). All this is meant
 * for local disks: on a network file system each such call holds the event
 * loop for a round trip.
 *
 * Versions are `<size>:<mtime in whole ms>:<inode>`, e.g.
 * `5120:1763808781123:393231`. A file whose size or mtime differs is a new
 * version; so is one replaced by another file (a new inode), which is also
 * how `open` notices a parent directory swapped for a symlink: the path then
 * leads to another inode. Deno reports modification times in whole
 * milliseconds only, so a rewrite in place that keeps the size within the
 * same millisecond as the listed one is not seen as a new version (the bytes
 * then read are the new ones; their md5 is recorded, so the catalog stays
 * true to what was archived).
 *
 * @module
 */

import { type SourceId, sourceId } from "../../core/ids.ts";
import { ChangedError, errorCode, PortError, VanishedError } from "../../core/errors.ts";
import type { ListOptions, ListPage, SkippedEntry, Source, SourceEntry } from "../../core/ports.ts";
import { closeQuietly, FS_RETRYABLE_CODES, isGone, openRootDirectory } from "../_fs.ts";

/** Options for {@linkcode DirectorySource.open}. */
export interface DirectorySourceOptions {
  /** Most entries (listed plus skipped) in one {@linkcode ListPage}. Default 1,000. */
  readonly batchSize?: number;
  /** Bytes per chunk when a file is read. Default 256 KiB. */
  readonly chunkSize?: number;
}

/** Why a name whose bytes are not UTF-8 is skipped: Deno cannot name it. */
export const NOT_UTF8_REASON = "file name is not valid UTF-8";

const DEFAULT_BATCH_SIZE = 1000;
const DEFAULT_CHUNK_SIZE = 256 * 1024;
/** Longest the walk keeps the event loop before letting timers and I/O run. */
const MAX_STALL_MS = 20;
/** How long a burst of watcher events is gathered into one yield. */
const WATCH_SETTLE_MS = 200;

/**
 * A directory tree as a {@linkcode Source}: every regular file under the
 * root, keyed by its `/`-separated relative path.
 *
 * - Symlinks are never followed: each is skipped, with the reason `symlink`
 *   (it resolves inside the root, whose file is listed anyway),
 *   `symlink outside the root`, or `broken symlink`.
 * - Sockets, fifos and devices are skipped (`socket`, `fifo`, `device`);
 *   so are unreadable directories (`unreadable directory: EACCES`) and names
 *   that are not UTF-8 ({@linkcode NOT_UTF8_REASON}). Files that disappear
 *   during the walk are left out silently.
 * - `list({ after })` ignores `after` (a directory has no cheap incremental
 *   listing): every call lists everything, and pages carry no cursor.
 * - `watch()` yields once per burst of file system events; where no watcher
 *   can be made (inotify limits), it ends at once without a word, and the
 *   caller's periodic rescan still finds every change.
 *
 * @example
 * ```ts
 * const source = await DirectorySource.open("/srv/uploads");
 * for await (const page of source.list()) {
 *   for (const entry of page.entries) console.log(entry.key, entry.version);
 * }
 * await source.close();
 * ```
 */
export class DirectorySource implements Source {
  /** `dir:` and the canonical root path, e.g. `dir:/srv/uploads`. */
  readonly id: SourceId;
  #root: string;

  /** The real path of the root directory. */
  get root(): string {
    return this.#root;
  }
  #prefix: string;
  #batchSize: number;
  #chunkSize: number;
  #closed = false;
  #watchers = new Set<Deno.FsWatcher>();

  private constructor(root: string, batchSize: number, chunkSize: number) {
    this.#root = root;
    this.#prefix = root.endsWith("/") ? root : `${root}/`;
    this.#batchSize = batchSize;
    this.#chunkSize = chunkSize;
    this.id = sourceId(`dir:${root}`);
  }

  /**
   * Opens the tree under `root`, which must be an existing directory; the
   * root is canonicalized (symlinks resolved) for the source id.
   *
   * @throws {PortError} code `ENOENT`, `ENOTDIR`, `EACCES`...: the message names the path
   * @throws {RangeError} a bad `batchSize` or `chunkSize`
   */
  static async open(root: string, options: DirectorySourceOptions = {}): Promise<DirectorySource> {
    const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
    const chunkSize = options.chunkSize ?? DEFAULT_CHUNK_SIZE;
    if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
      throw new RangeError(`Invalid batch size: ${batchSize} is not a positive integer`);
    }
    if (!Number.isSafeInteger(chunkSize) || chunkSize < 1) {
      throw new RangeError(`Invalid chunk size: ${chunkSize} is not a positive integer`);
    }
    const real = await openRootDirectory(root, "source");
    return new DirectorySource(real, batchSize, chunkSize);
  }

  /**
   * Walks the whole tree (see the class notes); `after` is ignored.
   *
   * @throws {PortError} when the root itself cannot be read
   */
  async *list(options: ListOptions = {}): AsyncGenerator<ListPage> {
    this.#checkOpen("list");
    const { signal } = options;
    signal?.throwIfAborted();
    const prefix = this.#prefix;
    const batchSize = this.#batchSize;
    // Relative paths of the directories still to read; "" is the root.
    const pending: string[] = [""];
    let entries: SourceEntry[] = [];
    let skipped: SkippedEntry[] = [];
    let breath = performance.now();
    while (pending.length > 0) {
      const dir = pending.pop()!;
      let names: Iterable<Deno.DirEntry> = [];
      try {
        names = Deno.readDirSync(dir === "" ? this.#root : prefix + dir);
      } catch (e) {
        const code = errorCode(e);
        if (dir === "") {
          throw new PortError(`Cannot list source directory "${this.#root}": ${code}`, {
            code,
            retryable: FS_RETRYABLE_CODES.has(code),
            cause: e,
          });
        }
        const reason = isGone(code)
          ? (isMangled(dir) ? NOT_UTF8_REASON : null)
          : `unreadable directory: ${code}`;
        if (reason !== null) skipped.push({ key: dir, reason });
      }
      const base = dir === "" ? "" : `${dir}/`;
      for (const name of names) {
        const key = base + name.name;
        if (name.isDirectory) {
          pending.push(key);
          continue;
        }
        let info: Deno.FileInfo;
        try {
          info = Deno.lstatSync(prefix + key);
        } catch (e) {
          const code = errorCode(e);
          if (!isGone(code)) skipped.push({ key, reason: `unreadable file: ${code}` });
          else if (isMangled(name.name)) skipped.push({ key, reason: NOT_UTF8_REASON });
          continue;
        }
        if (info.isFile) {
          const mtimeMs = info.mtime?.getTime() ?? 0;
          entries.push({
            key,
            version: `${info.size}:${mtimeMs}:${info.ino ?? 0}`,
            length: info.size,
            mtimeMs,
          });
        } else if (info.isDirectory) {
          pending.push(key);
        } else {
          skipped.push({ key, reason: this.#skipReason(key, info) });
        }
        if (entries.length + skipped.length >= batchSize) {
          yield { entries, skipped };
          entries = [];
          skipped = [];
          breath = await breathe(breath);
          signal?.throwIfAborted();
        }
      }
      if (entries.length + skipped.length >= batchSize) {
        yield { entries, skipped };
        entries = [];
        skipped = [];
      }
      breath = await breathe(breath);
      signal?.throwIfAborted();
    }
    if (entries.length > 0 || skipped.length > 0) yield { entries, skipped };
  }

  /**
   * Opens `root/key` for reading after checking that it is still the
   * listed version (a regular file of the same size, mtime and inode, not a
   * symlink; a parent directory swapped for a symlink leads to another
   * inode and is refused too).
   *
   * The checks and the opening are synchronous calls (about 15 µs in all,
   * against over 100 µs for their asynchronous forms). A file of at most
   * `chunkSize` bytes is then read with one synchronous read; a larger one
   * with asynchronous reads of `chunkSize` bytes. The stream errors with
   * {@linkcode ChangedError} when the file turns out longer or shorter than
   * `entry.length`, and closes the file at the end, on cancel and on error.
   *
   * @throws {TypeError} the key is absolute or has `.`, `..` or empty segments
   * @throws {VanishedError} the file is gone
   * @throws {ChangedError} the file is another version or no longer a regular file
   * @throws {PortError} any other error, its code the errno name (`EACCES`, `EIO`)
   */
  open(
    entry: SourceEntry,
    options: { signal?: AbortSignal } = {},
  ): Promise<ReadableStream<Uint8Array>> {
    try {
      return Promise.resolve(this.#open(entry, options.signal));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Yields once per burst of changes under the root (the first event
   * opens a 200 ms window, and every event within it joins the same
   * yield; events while the caller is busy make one more), until `signal`
   * aborts or the source closes. Ends at once, silently, if no watcher can be made (for example
   * when the inotify watch limit is reached): the caller's periodic rescan
   * covers that.
   */
  async *watch(options: { signal: AbortSignal }): AsyncGenerator<void> {
    const { signal } = options;
    if (this.#closed || signal.aborted) return;
    let watcher: Deno.FsWatcher;
    try {
      watcher = Deno.watchFs(this.#root, { recursive: true });
    } catch {
      return;
    }
    this.#watchers.add(watcher);
    let dirty = false;
    let ended = false;
    let wake: (() => void) | null = null;
    const notify = () => {
      const w = wake;
      wake = null;
      w?.();
    };
    const stop = () => {
      ended = true;
      closeQuietly(watcher);
      notify();
    };
    signal.addEventListener("abort", stop, { once: true });
    const pump = (async () => {
      try {
        for await (const _event of watcher) {
          dirty = true;
          notify();
        }
      } catch {
        // The watcher failed (root removed, limits): end like a closed one.
      } finally {
        ended = true;
        notify();
      }
    })();
    try {
      while (!signal.aborted) {
        if (!dirty) {
          if (ended) break;
          await new Promise<void>((resolve) => (wake = resolve));
          continue;
        }
        // Let the burst settle: more events within the window join this yield.
        await settle(signal);
        if (signal.aborted) break;
        dirty = false;
        yield;
      }
    } finally {
      signal.removeEventListener("abort", stop);
      closeQuietly(watcher);
      this.#watchers.delete(watcher);
      await pump;
    }
  }

  /** Closes the source and its watchers. Idempotent. */
  close(): Promise<void> {
    this.#closed = true;
    for (const watcher of this.#watchers) closeQuietly(watcher);
    this.#watchers.clear();
    return Promise.resolve();
  }

  #open(entry: SourceEntry, signal: AbortSignal | undefined): ReadableStream<Uint8Array> {
    const file = this.#openChecked(entry, signal);
    return fileStream(file, entry.key, entry.length, this.#chunkSize, signal);
  }

  /**
   * Reads a small file whole into `buffer` (which must hold `entry.length + 1`
   * bytes, the extra byte to notice growth) with one synchronous read, after
   * the same checks as {@linkcode DirectorySource.open}; returns the view of
   * `buffer` that holds it. For a caller that reads many small files in a
   * row into one reused buffer (a pack worker): no stream, no allocation.
   *
   * @throws like {@linkcode DirectorySource.open}; `ChangedError` when the
   *   file's length differs from `entry.length`
   */
  readSmallSync(entry: SourceEntry, buffer: Uint8Array): Uint8Array {
    if (buffer.length < entry.length + 1) {
      throw new RangeError(
        `Buffer too small for ${quote(entry.key)}: ${buffer.length} bytes for ${entry.length} + 1`,
      );
    }
    const file = this.#openChecked(entry, undefined);
    let filled = 0;
    try {
      const want = entry.length + 1;
      while (filled < want) {
        const n = file.readSync(buffer.subarray(filled, want));
        if (n === null || n === 0) break;
        filled += n;
      }
    } catch (e) {
      throw readError(e, entry.key);
    } finally {
      closeQuietly(file);
    }
    if (filled > entry.length) {
      throw grewError(entry.key, entry.length);
    }
    if (filled < entry.length) {
      throw shrankError(entry.key, filled, entry.length);
    }
    return buffer.subarray(0, filled);
  }

  /**
   * Reads a file of any size with synchronous reads into `scratch`, handing
   * each filled view to `onChunk` (valid only during the call), after the
   * same checks as {@linkcode DirectorySource.open}. For a worker thread
   * that spools large files without allocating per read.
   *
   * @throws like {@linkcode DirectorySource.open}; `ChangedError` when the
   *   file's length differs from `entry.length`
   */
  readChunksSync(
    entry: SourceEntry,
    scratch: Uint8Array,
    onChunk: (chunk: Uint8Array) => void,
  ): void {
    const file = this.#openChecked(entry, undefined);
    let total = 0;
    try {
      for (;;) {
        let n: number | null;
        try {
          n = file.readSync(scratch);
        } catch (e) {
          throw readError(e, entry.key);
        }
        if (n === null || n === 0) break;
        total += n;
        if (total > entry.length) {
          throw grewError(entry.key, entry.length);
        }
        onChunk(scratch.subarray(0, n));
      }
    } finally {
      closeQuietly(file);
    }
    if (total < entry.length) {
      throw shrankError(entry.key, total, entry.length);
    }
  }

  /** Opens `root/key` after checking it is still the listed version. */
  #openChecked(entry: SourceEntry, signal: AbortSignal | undefined): Deno.FsFile {
    this.#checkOpen("open");
    const { key } = entry;
    checkKey(key);
    signal?.throwIfAborted();
    const path = this.#prefix + key;
    let file: Deno.FsFile | undefined;
    try {
      // lstat first: a symlink is not followed, and a fifo (whose opening
      // would block) is refused before it is opened.
      const before = Deno.lstatSync(path);
      if (!before.isFile) {
        throw new ChangedError(
          `Source file ${quote(key)} changed: it is no longer a regular file but a ${
            kindOf(before)
          }`,
        );
      }
      // The inode check stands in for resolving every parent (4+ readlinks a
      // file): a parent swapped for a symlink leads to another inode.
      const problem = difference(entry, before);
      if (problem !== null) throw new ChangedError(`Source file ${quote(key)} changed: ${problem}`);
      file = Deno.openSync(path, { read: true });
      const info = file.statSync();
      if (info.ino !== before.ino || info.dev !== before.dev) {
        throw new ChangedError(`Source file ${quote(key)} changed: replaced while being opened`);
      }
      return file;
    } catch (e) {
      if (file !== undefined) closeQuietly(file);
      throw openError(e, key);
    }
  }

  #checkOpen(what: string): void {
    if (this.#closed) {
      throw new PortError(`Cannot ${what}: the directory source "${this.#root}" is closed`, {
        code: "ECLOSED",
        retryable: false,
      });
    }
  }

  #skipReason(key: string, info: Deno.FileInfo): string {
    if (!info.isSymlink) return kindOf(info);
    let target: string;
    try {
      target = Deno.realPathSync(this.#prefix + key);
    } catch {
      return "broken symlink";
    }
    return this.#inside(target) ? "symlink" : "symlink outside the root";
  }

  #inside(path: string): boolean {
    return path === this.#root || path.startsWith(this.#prefix);
  }
}

function fileStream(
  file: Deno.FsFile,
  key: string,
  length: number,
  chunkSize: number,
  signal: AbortSignal | undefined,
): ReadableStream<Uint8Array> {
  // A file of one chunk is read synchronously: far cheaper than an
  // asynchronous read, and as quick as it when the file is in the cache.
  const small = length <= chunkSize;
  let offset = 0;
  let open = true;
  const close = () => {
    if (open) {
      open = false;
      closeQuietly(file);
    }
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        signal?.throwIfAborted();
        const remaining = length - offset;
        // The last chunk asks for one byte more than is due: getting it
        // means the file grew; a short read of a regular file means its end.
        const last = remaining <= chunkSize;
        const buffer = new Uint8Array(last ? remaining + 1 : chunkSize);
        let filled = 0;
        let end = false;
        while (filled < buffer.length) {
          const n = small
            ? file.readSync(buffer.subarray(filled))
            : await file.read(buffer.subarray(filled));
          if (n === null) {
            end = true;
            break;
          }
          filled += n;
          if (last && filled === remaining) {
            end = true;
            break;
          }
        }
        if (filled > remaining) {
          throw grewError(key, length);
        }
        if (end && filled < remaining) {
          throw shrankError(key, offset + filled, length);
        }
        offset += filled;
        if (filled > 0) {
          controller.enqueue(filled === buffer.length ? buffer : buffer.subarray(0, filled));
        }
        if (last) {
          close();
          controller.close();
        }
      } catch (e) {
        close();
        controller.error(readError(e, key));
      }
    },
    cancel() {
      close();
    },
  });
}

/** What differs between the listed version and the file's status, or `null`. */
function difference(entry: SourceEntry, info: Deno.FileInfo): string | null {
  const listed = /^(\d+):(-?\d+):(\d+)$/.exec(entry.version);
  if (listed === null) {
    throw new TypeError(
      `Invalid directory source version for ${
        quote(entry.key)
      }: "${entry.version}" is not <size>:<mtime ms>:<inode>`,
    );
  }
  const size = Number(listed[1]);
  const mtimeMs = Number(listed[2]);
  const ino = Number(listed[3]);
  const nowMtime = info.mtime?.getTime() ?? 0;
  const changes: string[] = [];
  if (info.size !== size) changes.push(`size ${size} -> ${info.size}`);
  else if (info.size !== entry.length) changes.push(`size ${entry.length} -> ${info.size}`);
  if (nowMtime !== mtimeMs) changes.push(`mtime ${mtimeMs} -> ${nowMtime}`);
  if ((info.ino ?? 0) !== ino) {
    changes.push(
      `it is another file now (inode ${ino} -> ${info.ino}): replaced, or a parent directory ` +
        "was swapped for a link",
    );
  }
  return changes.length === 0 ? null : changes.join(", ");
}

/** The file got longer than listed while it was read. */
function grewError(key: string, length: number): ChangedError {
  return new ChangedError(
    `Source file ${quote(key)} changed while being read: it grew past ${length} bytes`,
  );
}

/** The file ended before its listed length. */
function shrankError(key: string, read: number, length: number): ChangedError {
  return new ChangedError(
    `Source file ${quote(key)} changed while being read: it shrank to ${read} of ${length} bytes`,
  );
}

function checkKey(key: string): void {
  if (
    key === "" || key.startsWith("/") || key.includes("\0") ||
    key.split("/").some((s) => s === ".." || s === "." || s === "")
  ) {
    throw new TypeError(
      `Invalid source key ${quote(key)}: must be a relative path without empty, . or .. segments`,
    );
  }
}

function openError(e: unknown, key: string): unknown {
  if (
    !(e instanceof Error) || e.name === "AbortError" || e instanceof ChangedError ||
    e instanceof VanishedError || e instanceof PortError || e instanceof TypeError
  ) {
    return e;
  }
  const code = errorCode(e);
  if (isGone(code)) {
    return new VanishedError(`Source file ${quote(key)} vanished: ${code}`, { cause: e });
  }
  if (code === "ELOOP") {
    return new ChangedError(`Source file ${quote(key)} changed: a path component is a symlink`, {
      cause: e,
    });
  }
  return new PortError(`Cannot open source file ${quote(key)}: ${code}`, {
    code,
    retryable: FS_RETRYABLE_CODES.has(code),
    cause: e,
  });
}

function readError(e: unknown, key: string): unknown {
  if (e instanceof ChangedError || !(e instanceof Error) || e.name === "AbortError") return e;
  const code = errorCode(e);
  return new PortError(`Cannot read source file ${quote(key)}: ${code}`, {
    code,
    retryable: FS_RETRYABLE_CODES.has(code),
    cause: e,
  });
}

/** Deno replaces bytes that are not UTF-8 with U+FFFD, so such a name cannot be opened. */
function isMangled(name: string): boolean {
  return name.includes("\uFFFD");
}

function kindOf(info: Deno.FileInfo): string {
  if (info.isFile) return "file";
  if (info.isDirectory) return "directory";
  if (info.isSymlink) return "symlink";
  if (info.isFifo) return "fifo";
  if (info.isSocket) return "socket";
  if (info.isBlockDevice || info.isCharDevice) return "device";
  return "special file";
}

/** A key for a message: JSON-quoted so that newlines and spaces show. */
function quote(key: string): string {
  return JSON.stringify(key);
}

/**
 * Lets timers and I/O run when the walk has held the event loop for
 * {@linkcode MAX_STALL_MS} since `since`; returns when it last did.
 */
async function breathe(since: number): Promise<number> {
  const now = performance.now();
  if (now - since <= MAX_STALL_MS) return since;
  await new Promise((resolve) => setTimeout(resolve, 0));
  return performance.now();
}

/** Waits out a burst; resolves early (without throwing) when `signal` aborts. */
function settle(signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, WATCH_SETTLE_MS);
    signal.addEventListener("abort", done, { once: true });
  });
}
