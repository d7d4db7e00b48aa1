/**
 * A {@linkcode Packer} that packs whole bundles in worker threads: each
 * worker reads a bundle's files, md5s them, lays out the tar and
 * tree-hashes it, and hands the tar buffers back by transfer (no copy). One
 * message per bundle each way, so the threads share the work at almost no
 * cost, while the main thread keeps the catalog and the store.
 *
 * A directory is read with synchronous reads into one reused buffer; a
 * MogileFS or S3 source is opened again in each worker (its own tracker
 * connections or S3 client) and read with a few requests in flight.
 * Large files stay in spool files, referenced rather than sent.
 * @module
 */

import { concatParts } from "../../core/archive_builder.ts";
import { PortError } from "../../core/errors.ts";
import type {
  ArchiveMember,
  PackedArchive,
  Packer,
  PackOutcome,
  PackRequest,
} from "../../core/ports.ts";
import { cleanSpool, DEFAULT_MEMORY_THRESHOLD, spoolBody } from "../fetch/spool_fetcher.ts";
import type { MogileFsSourceUrl, S3SourceUrl } from "../../core/source_url.ts";
import type { S3SourceOptions } from "../source/s3.ts";

/** The source a worker opens: plain data, so that it can cross threads. */
export type PackSource =
  | { readonly kind: "dir"; readonly root: string }
  | { readonly kind: "mogilefs"; readonly url: MogileFsSourceUrl }
  | { readonly kind: "s3"; readonly url: S3SourceUrl; readonly options: S3SourceOptions };

/** A part of a packed archive as it crosses threads. */
export type WireSegment = Uint8Array | { spool: string; length: number };

/** A message to a pack worker. */
export type PackerRequest =
  | {
    type: "init";
    source: PackSource;
    spoolDir: string;
    memoryThreshold: number;
    /** Files read at once within a bundle (remote sources; a directory reads one at a time). */
    readAhead: number;
  }
  | { type: "pack"; id: number; request: PackRequest }
  /** Archive buffers given back after upload, to be filled again. */
  | { type: "recycle"; buffers: ArrayBuffer[] };

/** A pack worker's answer. */
export type PackerReply =
  | {
    type: "packed";
    id: number;
    ok: true;
    /** `null` when no file of the bundle could be read. */
    meta: {
      size: number;
      treeHash: string;
      sha256: string;
      description: string;
      dataBytes: number;
      members: ArchiveMember[];
    } | null;
    segments: WireSegment[];
    outcomes: PackOutcome[];
  }
  | {
    type: "packed";
    id: number;
    ok: false;
    error: { name: string; message: string; code?: string };
  };

/** Options for {@linkcode WorkerPacker.open}. */
export interface WorkerPackerOptions {
  /** Worker threads (default 2). */
  readonly workers?: number;
  /** Files up to this many bytes are held in memory (default 8 MiB). */
  readonly memoryThreshold?: number;
  /** Remote sources: files read at once per worker (default 4). */
  readonly readAhead?: number;
}

interface Lane {
  worker: Worker;
  /** The pack it is running, or `null` when idle. */
  current: number | null;
}

/** Releases what a reply holds (spool files) when nobody will use it. */
function discard(reply: PackerReply): void {
  if (!reply.ok) return;
  for (const s of reply.segments) {
    if (!(s instanceof Uint8Array)) Deno.remove(s.spool).catch(() => {});
  }
}

function packedOf(
  request: PackRequest,
  reply: PackerReply & { ok: true },
  recycle: (buffers: ArrayBuffer[]) => void,
): PackedArchive {
  const segments = reply.segments;
  const meta = reply.meta;
  let released = false;
  return {
    id: request.archiveId,
    size: meta?.size ?? 0,
    treeHash: meta?.treeHash ?? "",
    sha256: meta?.sha256 ?? "",
    description: meta?.description ?? "",
    dataBytes: meta?.dataBytes ?? 0,
    members: meta?.members ?? [],
    outcomes: reply.outcomes,
    body() {
      if (released) throw new TypeError(`Cannot read released archive ${request.archiveId}`);
      if (!meta) throw new TypeError(`Archive ${request.archiveId} is empty: no file was read`);
      return concatParts(
        segments.map((seg) =>
          seg instanceof Uint8Array ? seg : () => spoolBody(seg.spool, seg.length).stream()
        ),
      );
    },
    async release() {
      if (released) return;
      released = true;
      const buffers: ArrayBuffer[] = [];
      for (const s of segments) {
        if (s instanceof Uint8Array) buffers.push(s.buffer as ArrayBuffer);
        else await Deno.remove(s.spool).catch(() => {});
      }
      segments.length = 0;
      // Back to the worker that filled them: no allocation churn across threads.
      if (buffers.length > 0) recycle(buffers);
    },
  };
}

/** Packs bundles in worker threads. */
export class WorkerPacker implements Packer {
  #lanes: Lane[] = [];
  #queue: { id: number; request: PackRequest }[] = [];
  #waiters = new Map<
    number,
    { request: PackRequest; resolve: (p: PackedArchive) => void; reject: (e: unknown) => void }
  >();
  #nextId = 0;
  #closed = false;
  #init: Extract<PackerRequest, { type: "init" }>;

  private constructor(init: Extract<PackerRequest, { type: "init" }>) {
    this.#init = init;
  }

  /**
   * Starts the workers for `source` (a directory tree at its real path, or
   * a remote source each worker opens again), spooling large files into
   * `spoolDir` (remote sources: one subdirectory per worker, since each
   * worker's fetcher clears its own at start).
   */
  static async open(
    source: PackSource | string,
    spoolDir: string,
    options: WorkerPackerOptions = {},
  ): Promise<WorkerPacker> {
    const n = options.workers ?? 2;
    if (!Number.isInteger(n) || n < 1 || n > 64) {
      throw new RangeError(`Invalid worker count: ${n}`);
    }
    await cleanSpool(spoolDir);
    await Deno.remove(`${spoolDir}/workers`, { recursive: true }).catch(() => {});
    const p = new WorkerPacker({
      type: "init",
      source: typeof source === "string" ? { kind: "dir", root: source } : source,
      spoolDir,
      memoryThreshold: options.memoryThreshold ?? DEFAULT_MEMORY_THRESHOLD,
      readAhead: options.readAhead ?? 4,
    });
    for (let i = 0; i < n; i++) p.#lanes.push(p.#spawn());
    return p;
  }

  #spawned = 0;

  #spawn(): Lane {
    // A remote source's worker spools into a directory of its own, never
    // reused (a respawned worker must not clear spool files still uploading).
    const init = this.#init.source.kind === "dir"
      ? this.#init
      : { ...this.#init, spoolDir: `${this.#init.spoolDir}/workers/${this.#spawned++}` };
    const worker = new Worker(new URL("./_pack_worker.ts", import.meta.url), { type: "module" });
    const lane: Lane = { worker, current: null };
    worker.onmessage = (ev: MessageEvent<PackerReply>) => {
      const reply = ev.data;
      const w = this.#waiters.get(reply.id);
      this.#waiters.delete(reply.id);
      lane.current = null;
      if (!w) discard(reply);
      else if (reply.ok) w.resolve(packedOf(w.request, reply, (b) => this.#recycle(lane, b)));
      else {
        w.reject(
          new PortError(`Packing failed: ${reply.error.message}`, {
            code: reply.error.code ?? reply.error.name,
            retryable: true,
          }),
        );
      }
      this.#dispatch();
    };
    worker.onerror = (ev) => {
      ev.preventDefault();
      // The worker is gone: fail its bundle (the files are retried) and start another.
      const err = new PortError(`Pack worker crashed: ${ev.message}`, {
        code: "WORKER_FAILED",
        retryable: true,
      });
      if (lane.current !== null) {
        this.#waiters.get(lane.current)?.reject(err);
        this.#waiters.delete(lane.current);
      }
      worker.terminate();
      const i = this.#lanes.indexOf(lane);
      if (i >= 0 && !this.#closed) this.#lanes[i] = this.#spawn();
      this.#dispatch();
    };
    worker.postMessage(init satisfies PackerRequest);
    return lane;
  }

  pack(request: PackRequest, options: { signal?: AbortSignal } = {}): Promise<PackedArchive> {
    if (this.#closed) {
      return Promise.reject(
        new PortError("Cannot pack: the packer is closed", { code: "ECLOSED", retryable: false }),
      );
    }
    const id = ++this.#nextId;
    const signal = options.signal;
    let onAbort = () => {};
    const p = new Promise<PackedArchive>((resolve, reject) => {
      this.#waiters.set(id, { request, resolve, reject });
      onAbort = () => {
        // The worker finishes anyway; its reply is discarded.
        const w = this.#waiters.get(id);
        this.#waiters.delete(id);
        this.#queue = this.#queue.filter((q) => q.id !== id);
        w?.reject(signal?.reason);
      };
    });
    // The listener goes when the pack settles: a run-long signal must not
    // keep every bundle's request alive.
    signal?.addEventListener("abort", onAbort, { once: true });
    this.#queue.push({ id, request });
    this.#dispatch();
    return p.finally(() => signal?.removeEventListener("abort", onAbort));
  }

  #recycle(lane: Lane, buffers: ArrayBuffer[]): void {
    if (this.#closed || !this.#lanes.includes(lane)) return;
    lane.worker.postMessage({ type: "recycle", buffers } satisfies PackerRequest, buffers);
  }

  #dispatch(): void {
    for (const lane of this.#lanes) {
      if (lane.current !== null) continue;
      // Skip requests whose caller gave up (aborted) while they waited.
      let next = this.#queue.shift();
      while (next && !this.#waiters.has(next.id)) next = this.#queue.shift();
      if (!next) return;
      lane.current = next.id;
      lane.worker.postMessage(
        { type: "pack", id: next.id, request: next.request } satisfies PackerRequest,
      );
    }
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    const err = new PortError("Packer closed", { code: "ECLOSED", retryable: true });
    for (const w of this.#waiters.values()) w.reject(err);
    this.#waiters.clear();
    for (const lane of this.#lanes) lane.worker.terminate();
    return Promise.resolve();
  }
}
