/**
 * Packing a bundle: read each file through a {@linkcode Fetcher} (a few
 * ahead, added in order), append it to an {@linkcode ArchiveBuilder}, and
 * leave out, with the reason, every file that cannot be read. The worker
 * packer runs this same routine in worker threads.
 *
 * @example
 * ```ts
 * const packer = new InlinePacker(fetcher, { readAhead: 8 });
 * const packed = await packer.pack({ archiveId, source, files, nowMs: Date.now() });
 * ```
 * @module
 */

import { ArchiveBuilder } from "./archive_builder.ts";
import { ChangedError, errorCode, errorMessage, isRetryable, VanishedError } from "./errors.ts";
import type {
  Fetched,
  Fetcher,
  FileRow,
  PackedArchive,
  Packer,
  PackOutcome,
  PackRequest,
  SourceEntry,
} from "./ports.ts";

/** The source entry of a catalog row. */
export function entryOf(row: FileRow): SourceEntry {
  return {
    key: row.key,
    version: row.version,
    length: row.length,
    mtimeMs: row.mtimeMs,
    ...(row.domain === null ? {} : { domain: row.domain }),
    ...(row.storageClass === null ? {} : { storageClass: row.storageClass }),
    ...(row.sourceFid === null ? {} : { sourceFid: row.sourceFid }),
  };
}

/** Why a file could not be read, as an outcome. */
export function outcomeOf(row: FileRow, e: unknown): PackOutcome {
  if (e instanceof VanishedError) return { fileId: row.id, kind: "vanished", message: e.message };
  if (e instanceof ChangedError) return { fileId: row.id, kind: "changed", message: e.message };
  return {
    fileId: row.id,
    kind: "failed",
    code: errorCode(e),
    message: errorMessage(e),
    retryable: isRetryable(e),
  };
}

/** The result of {@linkcode packFiles}: the builder (finished unless empty) and the outcomes. */
export interface PackResult {
  readonly builder: ArchiveBuilder;
  /** False when no file could be read: then nothing was finished. */
  readonly finished: boolean;
  readonly outcomes: PackOutcome[];
}

/**
 * Reads and packs a bundle's files, `readAhead` fetches in flight (default 8),
 * assembling the tar in buffers from `chunk` (default: new ones). Rejects
 * only when `signal` aborts.
 */
export async function packFiles(
  fetcher: Fetcher,
  request: PackRequest,
  options: { readAhead?: number; signal?: AbortSignal; chunk?: () => Uint8Array } = {},
): Promise<PackResult> {
  const { files } = request;
  const readAhead = Math.max(1, options.readAhead ?? 8);
  const signal = options.signal;
  const builder = new ArchiveBuilder(
    request.archiveId,
    request.source,
    options.chunk ? { chunk: options.chunk } : {},
  );
  const outcomes: PackOutcome[] = [];
  const pending: (Promise<Fetched> | undefined)[] = new Array(files.length);
  let started = 0;
  const startMore = (done: number) => {
    while (started < files.length && started - done < readAhead) {
      const p = fetcher.fetch(entryOf(files[started]!.row), signal ? { signal } : {});
      p.catch(() => {}); // handled when its turn comes
      pending[started++] = p;
    }
  };
  try {
    for (let i = 0; i < files.length; i++) {
      startMore(i);
      const { row, name } = files[i]!;
      let fetched: Fetched;
      try {
        fetched = await pending[i]!;
      } catch (e) {
        signal?.throwIfAborted();
        outcomes.push(outcomeOf(row, e));
        continue;
      } finally {
        pending[i] = undefined;
      }
      await builder.add({ row, name, fetched });
    }
  } catch (e) {
    // Release what was read ahead, then the builder's buffers.
    for (const p of pending) p?.then((f) => f.body.release(), () => {});
    await builder.release();
    throw e;
  }
  if (builder.count === 0) return { builder, finished: false, outcomes };
  builder.finish(request.nowMs);
  return { builder, finished: true, outcomes };
}

/** The packed archive of a {@linkcode PackResult}. */
export function packedOf(request: PackRequest, result: PackResult): PackedArchive {
  const { builder, outcomes } = result;
  if (!result.finished) {
    return {
      id: request.archiveId,
      size: 0,
      treeHash: "",
      sha256: "",
      description: "",
      dataBytes: 0,
      members: [],
      outcomes,
      body: () => {
        throw new TypeError(`Archive ${request.archiveId} is empty: no file could be read`);
      },
      release: () => builder.release(),
    };
  }
  const built = builder.finish(request.nowMs);
  return {
    id: built.id,
    size: built.size,
    treeHash: built.treeHash,
    sha256: built.sha256,
    description: built.description,
    dataBytes: built.dataBytes,
    members: built.members,
    outcomes,
    body: () => builder.body(),
    release: () => builder.release(),
  };
}

/** Packs in this thread, through any {@linkcode Fetcher} (remote sources, tests). */
export class InlinePacker implements Packer {
  #fetcher: Fetcher;
  #readAhead: number;

  constructor(fetcher: Fetcher, options: { readAhead?: number } = {}) {
    this.#fetcher = fetcher;
    this.#readAhead = options.readAhead ?? 8;
  }

  async pack(request: PackRequest, options: { signal?: AbortSignal } = {}): Promise<PackedArchive> {
    const result = await packFiles(this.#fetcher, request, {
      readAhead: this.#readAhead,
      ...options,
    });
    return packedOf(request, result);
  }

  close(): Promise<void> {
    return this.#fetcher.close();
  }
}
