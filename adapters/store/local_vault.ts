/**
 * A cold store in a local directory that behaves like a Glacier vault:
 * archives go in whole and atomically, retrievals are jobs that become ready
 * after a delay and expire, and ranges must be megabyte aligned.
 *
 * Layout of the vault directory:
 *
 * ```
 * <archiveId>.tar         the archive, exactly the bytes put (GNU tar reads it)
 * <archiveId>.tar.json    its sidecar: size, tree hash, description, created time
 * .incoming/*.part        uploads in progress (removed on open after 24 h)
 * .jobs/<jobId>.json      retrieval jobs
 * ```
 * @module
 */

import { DEFAULT_RETRIEVAL_TTL_MS } from "../../core/store_url.ts";
import {
  type ByteRange,
  type ColdStore,
  type PutArchive,
  type PutResult,
  type RetrievalJob,
  type RetrievalState,
  type StoreCapabilities,
  type StoredArchive,
  type Tier,
  TIERS,
} from "../../core/ports.ts";
import { ArchiveMismatchError, PortError } from "../../core/errors.ts";
import { hex, type JobId, jobId, type RemoteArchiveId, remoteArchiveId } from "../../core/ids.ts";
import { isTreeHashAligned, TreeHasher } from "../../core/tree_hash.ts";
import { descriptionProblem } from "../../core/manifest.ts";
import { readRange, retrievalRangeProblem } from "../../core/ranges.ts";
import { normalizePath } from "../_fs.ts";

const MIB = 1024 * 1024;
const HOUR = 3_600_000;
/** `.part` files older than this are leftovers of a crashed upload. */
const STALE_PART_MS = 24 * HOUR;
const READ_CHUNK = 1024 * 1024;
const REMOTE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\.tar$/;
const JOB_ID = /^[0-9a-f]{32}$/;
const TREE_HASH = /^[0-9a-f]{64}$/;

/** Options for {@linkcode LocalVault.open}. */
export interface LocalVaultOptions {
  /** How long a retrieval stays `in-progress`, ms. Default 0: ready at once. */
  readonly retrievalDelayMs?: number;
  /** How long a ready retrieval stays readable before it is `expired`, ms. Default 24 h. */
  readonly retrievalTtlMs?: number;
  /** The clock, ms since the epoch. Default `Date.now`. */
  readonly now?: () => number;
}

/** What the sidecar `<archiveId>.tar.json` records. */
interface Sidecar {
  readonly format: 1;
  readonly size: number;
  readonly treeHash: string;
  readonly description: string;
  readonly createdAt: number;
}

/** What `.jobs/<jobId>.json` records. */
interface JobRecord {
  readonly format: 1;
  readonly jobId: string;
  readonly remoteId: string;
  readonly range: ByteRange | null;
  readonly tier: Tier;
  readonly description: string;
  /** Size of the archive when the job started; a different size later means it was replaced. */
  readonly archiveSize: number;
  readonly treeHash: string | null;
  readonly startedAt: number;
  readonly readyAt: number;
  readonly expiresAt: number;
}

/**
 * A {@linkcode ColdStore} in a local directory, for the embedded default and
 * for tests. Each archive is a plain `<archiveId>.tar` that GNU tar can list
 * and extract; a `.tar` is only ever visible complete. Retrieval jobs follow
 * Glacier's rules (megabyte-aligned ranges, tree hash only for tree-hash
 * aligned ranges, ready after a delay, expired after a time to live), with
 * the state computed from the clock whenever it is asked for.
 *
 * Errors: `PortError` with Glacier's codes (`ResourceNotFoundException`,
 * `InvalidParameterValueException`) and, when reading a retrieval that is not
 * ready, `RetrievalNotReady`, `RetrievalExpired` or `RetrievalFailed`; all
 * not retryable. `ArchiveMismatchError` when a body's size or tree hash differs
 * from what the archive declares, or when the vault already holds a different
 * archive under the same id.
 *
 * @example
 * ```ts
 * const vault = await LocalVault.open("/srv/vault", { retrievalDelayMs: 0 });
 * const put = await vault.put({ archiveId, size, treeHash, description, body });
 * const job = await vault.startRetrieval(put.remoteId, { description: "r1" });
 * const bytes = await vault.readRetrieval(job.jobId);
 * ```
 */
export class LocalVault implements ColdStore {
  readonly location: string;
  readonly capabilities: StoreCapabilities = { rangedRetrieval: true, rangeAlignment: MIB };
  readonly #dir: string;
  readonly #delayMs: number;
  readonly #ttlMs: number;
  readonly #now: () => number;

  private constructor(dir: string, delayMs: number, ttlMs: number, now: () => number) {
    this.#dir = dir;
    this.#delayMs = delayMs;
    this.#ttlMs = ttlMs;
    this.#now = now;
    this.location = fileUrl(dir);
  }

  /**
   * Opens (creating it if missing) the vault directory `dir`, and removes
   * `.part` files of uploads that died more than 24 hours ago. A relative
   * `dir` is resolved against the working directory.
   */
  static async open(dir: string, options: LocalVaultOptions = {}): Promise<LocalVault> {
    const delayMs = options.retrievalDelayMs ?? 0;
    const ttlMs = options.retrievalTtlMs ?? DEFAULT_RETRIEVAL_TTL_MS;
    if (!Number.isSafeInteger(delayMs) || delayMs < 0) {
      throw new RangeError(`Invalid retrieval delay: ${delayMs} ms is not a whole number >= 0`);
    }
    if (!Number.isSafeInteger(ttlMs) || ttlMs <= 0) {
      throw new RangeError(`Invalid retrieval time to live: ${ttlMs} ms is not a whole number > 0`);
    }
    const abs = normalizePath(dir.startsWith("/") ? dir : `${Deno.cwd()}/${dir}`);
    await Deno.mkdir(join(abs, ".incoming"), { recursive: true });
    await Deno.mkdir(join(abs, ".jobs"), { recursive: true });
    const vault = new LocalVault(abs, delayMs, ttlMs, options.now ?? Date.now);
    await vault.#removeStaleParts();
    return vault;
  }

  /**
   * Stores an archive: streams the body into `.incoming/`, checks its size
   * and tree hash against `archive`, syncs it to disk, writes the sidecar,
   * then renames it into place. Putting the same bytes under the same id
   * again is a no-op that answers as the first put did.
   */
  async put(archive: PutArchive, options: { signal?: AbortSignal } = {}): Promise<PutResult> {
    const { signal } = options;
    const id = archive.archiveId as string;
    const name = `${id}.tar`;
    if (!REMOTE_ID.test(name)) throw invalid(`Invalid archive id: "${id}"`);
    if (!Number.isSafeInteger(archive.size) || archive.size < 1) {
      throw invalid(`Invalid archive size for ${id}: ${archive.size} (must be at least 1 byte)`);
    }
    if (!TREE_HASH.test(archive.treeHash)) {
      throw invalid(
        `Invalid tree hash for ${id}: "${archive.treeHash}" is not 64 lower-case hex digits`,
      );
    }
    checkDescription(archive.description, `archive ${id}`);
    signal?.throwIfAborted();

    const part = join(this.#dir, ".incoming", `${id}.${randomHex(6)}.part`);
    let received: { bytes: number; treeHash: string };
    try {
      received = await writeBody(archive.body(), part, signal);
    } catch (e) {
      await removeIfPresent(part);
      throw e;
    }
    try {
      if (received.bytes !== archive.size) {
        throw new ArchiveMismatchError(
          `Cannot put archive ${id}: the body has ${received.bytes} bytes but the archive declares ${archive.size}`,
        );
      }
      if (received.treeHash !== archive.treeHash) {
        throw new ArchiveMismatchError(
          `Cannot put archive ${id}: the body's tree hash is ${received.treeHash} but the archive declares ${archive.treeHash}`,
        );
      }
      const result: PutResult = {
        remoteId: remoteArchiveId(name),
        size: received.bytes,
        treeHash: received.treeHash,
      };
      const existing = await this.#storedTreeHash(name);
      if (existing !== null) {
        if (existing === received.treeHash) return result;
        throw new ArchiveMismatchError(
          `Cannot put archive ${id}: the vault already holds ${name} with tree hash ${existing}, not ${received.treeHash}`,
        );
      }
      const sidecar: Sidecar = {
        format: 1,
        size: received.bytes,
        treeHash: received.treeHash,
        description: archive.description,
        createdAt: this.#now(),
      };
      await this.#writeJsonAtomically(
        join(this.#dir, ".incoming", `${id}.${randomHex(6)}.json.part`),
        join(this.#dir, `${name}.json`),
        sidecar,
      );
      await Deno.rename(part, join(this.#dir, name));
      await syncDir(this.#dir);
      return result;
    } finally {
      await removeIfPresent(part);
    }
  }

  /**
   * Starts a retrieval of the whole archive or of `range`, which must be
   * megabyte aligned as Glacier requires. The job is ready after the vault's
   * retrieval delay and readable for its time to live.
   */
  async startRetrieval(
    remoteId: RemoteArchiveId,
    options: {
      readonly range?: ByteRange;
      readonly tier?: Tier;
      readonly description: string;
      readonly signal?: AbortSignal;
    },
  ): Promise<RetrievalJob> {
    options.signal?.throwIfAborted();
    checkRemoteId(remoteId);
    checkDescription(options.description, "retrieval");
    const tier = options.tier ?? "Standard";
    if (!TIERS.includes(tier)) {
      throw invalid(`Invalid retrieval tier "${tier}": must be Expedited, Standard or Bulk`);
    }
    const path = join(this.#dir, remoteId);
    let size: number;
    try {
      size = (await Deno.stat(path)).size;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        throw new PortError(`Archive not found in ${this.location}: ${remoteId}`, {
          code: "ResourceNotFoundException",
          retryable: false,
        });
      }
      throw e;
    }
    const range = options.range ?? null;
    if (range !== null) checkRetrievalRange(range, size, remoteId);
    let treeHash: string | null = null;
    if (range === null || (range.start === 0 && range.end === size - 1)) {
      treeHash = (await this.#storedTreeHash(remoteId)) ?? await hashFile(path, 0, size);
    } else if (isTreeHashAligned(range, size)) {
      treeHash = await hashFile(path, range.start, range.end + 1 - range.start);
    }
    const startedAt = this.#now();
    const record: JobRecord = {
      format: 1,
      jobId: randomHex(16),
      remoteId,
      range: range === null ? null : { start: range.start, end: range.end },
      tier,
      description: options.description,
      archiveSize: size,
      treeHash,
      startedAt,
      readyAt: startedAt + this.#delayMs,
      expiresAt: startedAt + this.#delayMs + this.#ttlMs,
    };
    await this.#writeJsonAtomically(
      join(this.#dir, ".jobs", `${record.jobId}.json.part`),
      join(this.#dir, ".jobs", `${record.jobId}.json`),
      record,
    );
    return await this.#describe(record);
  }

  /**
   * The job's state now. A job id the vault never issued is a `PortError`
   * `ResourceNotFoundException`; jobs are kept, so an old one is `expired`.
   */
  async retrieval(id: JobId, options: { signal?: AbortSignal } = {}): Promise<RetrievalJob> {
    options.signal?.throwIfAborted();
    return await this.#describe(await this.#job(id));
  }

  /**
   * Streams retrieved bytes straight from the archive file, reading at most
   * 256 KiB at a time. `range` is relative to the retrieved range and must
   * lie within it (`RangeError` otherwise). Rejects with `PortError`
   * `RetrievalNotReady`, `RetrievalExpired` or `RetrievalFailed` unless the
   * job is ready.
   */
  async readRetrieval(
    id: JobId,
    options: { readonly range?: ByteRange; readonly signal?: AbortSignal } = {},
  ): Promise<ReadableStream<Uint8Array>> {
    const { signal } = options;
    signal?.throwIfAborted();
    const record = await this.#job(id);
    const job = await this.#describe(record);
    if (job.state !== "ready") {
      const [code, why] = job.state === "in-progress"
        ? ["RetrievalNotReady", `it is in progress until ${new Date(record.readyAt).toISOString()}`]
        : job.state === "expired"
        ? ["RetrievalExpired", `it expired at ${new Date(record.expiresAt).toISOString()}`]
        : ["RetrievalFailed", job.failure ?? "it failed"];
      throw new PortError(`Cannot read retrieval ${id}: ${why}`, { code, retryable: false });
    }
    const base = record.range?.start ?? 0;
    const length = record.range === null
      ? record.archiveSize
      : record.range.end + 1 - record.range.start;
    const { start, end } = readRange(options.range, length, `retrieval ${id}`);
    return fileRangeStream(join(this.#dir, record.remoteId), base + start, end + 1 - start, signal);
  }

  /** Lists every archive in the vault, by name, with its sidecar's facts. */
  async *list(options: { signal?: AbortSignal } = {}): AsyncIterable<StoredArchive> {
    const names: string[] = [];
    for await (const entry of Deno.readDir(this.#dir)) {
      if (entry.isFile && REMOTE_ID.test(entry.name)) names.push(entry.name);
    }
    names.sort();
    for (const name of names) {
      options.signal?.throwIfAborted();
      const sidecar = await this.#sidecar(name);
      if (sidecar !== null) {
        yield {
          remoteId: remoteArchiveId(name),
          size: sidecar.size,
          treeHash: sidecar.treeHash,
          description: sidecar.description,
          createdAt: sidecar.createdAt,
        };
        continue;
      }
      let stat: Deno.FileInfo;
      try {
        stat = await Deno.stat(join(this.#dir, name));
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) continue; // deleted while listing
        throw e;
      }
      yield {
        remoteId: remoteArchiveId(name),
        size: stat.size,
        treeHash: null,
        description: "",
        createdAt: stat.mtime?.getTime() ?? 0,
      };
    }
  }

  /** Removes the archive and its sidecar; an archive already gone is fine. */
  async delete(remoteId: RemoteArchiveId, options: { signal?: AbortSignal } = {}): Promise<void> {
    options.signal?.throwIfAborted();
    checkRemoteId(remoteId);
    await removeIfPresent(join(this.#dir, remoteId));
    await removeIfPresent(join(this.#dir, `${remoteId}.json`));
    await syncDir(this.#dir);
  }

  /** Nothing to release: every call opens and closes its own files. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  async #job(id: JobId): Promise<JobRecord> {
    const notFound = () =>
      new PortError(`Unknown retrieval job in ${this.location}: "${id}"`, {
        code: "ResourceNotFoundException",
        retryable: false,
      });
    if (!JOB_ID.test(id)) throw notFound();
    const path = join(this.#dir, ".jobs", `${id}.json`);
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) throw notFound();
      throw e;
    }
    return parseJson(text, path, isJobRecord);
  }

  async #describe(record: JobRecord): Promise<RetrievalJob> {
    const now = this.#now();
    let state: RetrievalState;
    let failure: string | undefined;
    if (now < record.readyAt) {
      state = "in-progress";
    } else if (now >= record.expiresAt) {
      state = "expired";
    } else {
      state = "ready";
      failure = await this.#archiveGone(record);
      if (failure !== undefined) state = "failed";
    }
    const done = state !== "in-progress";
    return {
      jobId: jobId(record.jobId),
      remoteId: remoteArchiveId(record.remoteId),
      range: record.range,
      state,
      treeHash: record.treeHash,
      description: record.description,
      startedAt: record.startedAt,
      completedAt: done ? record.readyAt : null,
      expiresAt: done ? record.expiresAt : null,
      ...(failure === undefined ? {} : { failure }),
    };
  }

  /** Why a ready job's bytes cannot be read any more, or `undefined` when they can. */
  async #archiveGone(record: JobRecord): Promise<string | undefined> {
    try {
      const { size } = await Deno.stat(join(this.#dir, record.remoteId));
      if (size === record.archiveSize) return undefined;
      return `Archive ${record.remoteId} changed size from ${record.archiveSize} to ${size} bytes after the retrieval started`;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) {
        return `Archive ${record.remoteId} was deleted from the vault after the retrieval started`;
      }
      throw e;
    }
  }

  /** The tree hash of a stored archive (sidecar, else computed), or `null` if absent. */
  async #storedTreeHash(name: string): Promise<string | null> {
    const path = join(this.#dir, name);
    let size: number;
    try {
      size = (await Deno.stat(path)).size;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
    const sidecar = await this.#sidecar(name);
    return sidecar?.treeHash ?? await hashFile(path, 0, size);
  }

  async #sidecar(name: string): Promise<Sidecar | null> {
    const path = join(this.#dir, `${name}.json`);
    let text: string;
    try {
      text = await Deno.readTextFile(path);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return null;
      throw e;
    }
    return parseJson(text, path, isSidecar);
  }

  async #writeJsonAtomically(temp: string, final: string, value: unknown): Promise<void> {
    try {
      const file = await Deno.open(temp, { write: true, createNew: true });
      try {
        await writeAll(file, new TextEncoder().encode(JSON.stringify(value, null, 2) + "\n"));
        await file.sync();
      } finally {
        file.close();
      }
      await Deno.rename(temp, final);
    } finally {
      await removeIfPresent(temp);
    }
  }

  async #removeStaleParts(): Promise<void> {
    const incoming = join(this.#dir, ".incoming");
    const cutoff = this.#now() - STALE_PART_MS;
    for await (const entry of Deno.readDir(incoming)) {
      if (!entry.isFile || !entry.name.endsWith(".part")) continue;
      const path = join(incoming, entry.name);
      try {
        const mtime = (await Deno.stat(path)).mtime?.getTime();
        if (mtime !== undefined && mtime < cutoff) await removeIfPresent(path);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
  }
}

/** Throws `InvalidParameterValueException` unless `range` is one Glacier accepts. */
function checkRetrievalRange(range: ByteRange, size: number, remoteId: string): void {
  const why = retrievalRangeProblem(range, size);
  if (why !== null) {
    throw invalid(
      `Invalid retrieval range ${range.start}-${range.end} for ${remoteId} (${size} bytes): ${why}`,
    );
  }
}

function checkRemoteId(remoteId: string): void {
  if (!REMOTE_ID.test(remoteId)) {
    throw invalid(`Invalid remote archive id "${remoteId}": expected <archiveId>.tar`);
  }
}

function checkDescription(description: string, what: string): void {
  const problem = descriptionProblem(description);
  if (problem !== null) throw invalid(`Invalid description for ${what}: ${problem}`);
}

function invalid(message: string): PortError {
  return new PortError(message, { code: "InvalidParameterValueException", retryable: false });
}

/** Streams `body` into a new file at `path` (synced), counting and tree-hashing it. */
async function writeBody(
  body: ReadableStream<Uint8Array>,
  path: string,
  signal: AbortSignal | undefined,
): Promise<{ bytes: number; treeHash: string }> {
  const reader = body.getReader();
  const onAbort = () => {
    reader.cancel(signal?.reason).catch(() => {});
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  const hasher = new TreeHasher();
  let bytes = 0;
  try {
    const file = await Deno.open(path, { write: true, createNew: true });
    try {
      for (;;) {
        const { done, value } = await reader.read();
        signal?.throwIfAborted();
        if (done) break;
        hasher.update(value);
        bytes += value.length;
        await writeAll(file, value);
      }
      await file.sync();
    } finally {
      file.close();
    }
  } catch (e) {
    await reader.cancel(e).catch(() => {});
    throw e;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
  return { bytes, treeHash: hasher.digest() };
}

/** The tree hash of `length` bytes of the file at `path` from `offset`. */
async function hashFile(path: string, offset: number, length: number): Promise<string> {
  const hasher = new TreeHasher();
  const reader = fileRangeStream(path, offset, length, undefined).getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    hasher.update(value);
  }
  return hasher.digest();
}

/**
 * A stream of `length` bytes of the file at `path` from `offset`. The file is
 * opened on the first read and closed at the end, on error and on cancel, so
 * that a stream nobody reads holds nothing open.
 */
function fileRangeStream(
  path: string,
  offset: number,
  length: number,
  signal: AbortSignal | undefined,
): ReadableStream<Uint8Array> {
  let file: Deno.FsFile | null = null;
  let remaining = length;
  const release = () => {
    file?.close();
    file = null;
  };
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        signal?.throwIfAborted();
        if (remaining === 0) {
          release();
          controller.close();
          return;
        }
        if (file === null) {
          file = await Deno.open(path, { read: true });
          await file.seek(offset, Deno.SeekMode.Start);
        }
        const buf = new Uint8Array(Math.min(remaining, READ_CHUNK));
        const n = await file.read(buf);
        if (n === null) {
          throw new PortError(
            `Cannot read ${path}: it ended ${remaining} bytes before byte ${offset + length}`,
            { code: "TruncatedArchive", retryable: false },
          );
        }
        remaining -= n;
        controller.enqueue(buf.subarray(0, n));
        if (remaining === 0) {
          release();
          controller.close();
        }
      } catch (e) {
        release();
        controller.error(e);
      }
    },
    cancel() {
      release();
    },
  }, { highWaterMark: 0 });
}

async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await file.write(data.subarray(off));
}

async function syncDir(dir: string): Promise<void> {
  const handle = await Deno.open(dir, { read: true });
  try {
    await handle.sync();
  } finally {
    handle.close();
  }
}

async function removeIfPresent(path: string): Promise<void> {
  try {
    await Deno.remove(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
}

function parseJson<T>(text: string, path: string, valid: (v: unknown) => v is T): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`Cannot parse ${path}: ${e instanceof Error ? e.message : e}`);
  }
  if (!valid(value)) throw new SyntaxError(`Cannot read ${path}: unexpected content`);
  return value;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function isSidecar(v: unknown): v is Sidecar {
  return isRecord(v) && v.format === 1 && Number.isSafeInteger(v.size) &&
    typeof v.treeHash === "string" && TREE_HASH.test(v.treeHash) &&
    typeof v.description === "string" && typeof v.createdAt === "number";
}

function isJobRecord(v: unknown): v is JobRecord {
  if (!isRecord(v) || v.format !== 1) return false;
  const range = v.range;
  const rangeOk = range === null ||
    (isRecord(range) && Number.isSafeInteger(range.start) && Number.isSafeInteger(range.end));
  return rangeOk && typeof v.jobId === "string" && JOB_ID.test(v.jobId) &&
    typeof v.remoteId === "string" && REMOTE_ID.test(v.remoteId) &&
    TIERS.includes(v.tier as Tier) && typeof v.description === "string" &&
    Number.isSafeInteger(v.archiveSize) &&
    (v.treeHash === null || (typeof v.treeHash === "string" && TREE_HASH.test(v.treeHash))) &&
    typeof v.startedAt === "number" && typeof v.readyAt === "number" &&
    typeof v.expiresAt === "number";
}

function randomHex(bytes: number): string {
  return hex(crypto.getRandomValues(new Uint8Array(bytes)));
}

function join(dir: string, ...names: string[]): string {
  return [dir === "/" ? "" : dir, ...names].join("/");
}

/** `file://` URL of an absolute path, each segment percent-encoded. */
function fileUrl(abs: string): string {
  return `file://${abs.split("/").map(encodeURIComponent).join("/")}`;
}
