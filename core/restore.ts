/**
 * The restore path, over the ports: record restores, start (or reuse) the
 * retrievals they need, and complete them when the retrievals are ready:
 * read only each file's bytes, let the destination check the md5 while it
 * writes, and mark the restore done. `coldpack-restore` (with `--wait`) and
 * the restore listener both drive it.
 *
 * Every step can run again: restores are keyed, a restore already served
 * by a retrieval is not planned twice, a retrieval is reused across calls
 * while it lives, and finishing a restore twice changes nothing.
 * @module
 */

import { createHash } from "node:crypto";
import { errorCode, errorMessage, isRetryable } from "./errors.ts";
import { allPages } from "./paging.ts";
import { type FileId, newRetrievalId, type RemoteArchiveId, type RetrievalId } from "./ids.ts";
import type {
  ArchiveRow,
  Catalog,
  Clock,
  ColdStore,
  Destination,
  DestinationWrite,
  FileRow,
  RestoreRow,
  RetrievalPurpose,
  RetrievalRow,
  Tier,
} from "./ports.ts";
import { planRetrievals, type RetrievalPlan } from "./restore_plan.ts";

/** What the restore path works with. */
export interface RestoreDeps {
  readonly catalog: Catalog;
  readonly store: ColdStore;
  readonly clock: Clock;
  readonly random: (n: number) => Uint8Array;
}

/** One file to bring back to one destination. */
export interface RestoreRequest {
  /** Unique per request (e.g. `<invocation id>:<line>`): a repeat adds nothing. */
  readonly key: string;
  readonly fileId: FileId;
  /** The destination as the operator wrote it; the caller resolves it when writing. */
  readonly dest: string;
  /** Replace what is at the destination (default false). */
  readonly overwrite?: boolean;
}

/** Options for {@linkcode requestRestores}. */
export interface RequestOptions {
  /** Who asks, recorded with each restore (e.g. `restore@host`). */
  readonly requestedBy: string;
  readonly tier?: Tier;
  /** See `planRetrievals`. */
  readonly mergeGapBytes?: number;
  /** Plan only: record nothing, start nothing (`--dry-run`). */
  readonly dryRun?: boolean;
}

/** What {@linkcode requestRestores} did. */
export interface RequestResult {
  /** The restores recorded (or found again by key), in request order; empty on a dry run. */
  readonly restores: readonly RestoreRow[];
  /** The plan for the files not yet served by a retrieval. */
  readonly plan: RetrievalPlan;
  /** The retrievals started now. */
  readonly started: readonly RetrievalRow[];
}

/**
 * Records the restores and starts the retrievals they need, reusing any
 * live one that already holds a file's bytes.
 *
 * @throws {RangeError} a file that is unknown or not archived, naming it
 * @throws {TypeError} a file whose archive is in another store than `deps.store`
 */
export async function requestRestores(
  deps: RestoreDeps,
  requests: readonly RestoreRequest[],
  options: RequestOptions,
): Promise<RequestResult> {
  const { catalog, clock } = deps;
  const files = new Map<FileId, FileRow>();
  for (const r of requests) {
    if (files.has(r.fileId)) continue;
    const f = await catalog.file(r.fileId);
    if (f === null) throw new RangeError(`No file with id ${r.fileId} in the catalog`);
    if (f.state !== "archived") {
      throw new RangeError(
        `File ${r.fileId} (${
          JSON.stringify(f.key)
        }) is ${f.state}, not archived: nothing to restore`,
      );
    }
    files.set(f.id, f);
  }
  const now = clock.now();
  if (options.dryRun) {
    const plan = await planFor(deps, [...files.values()], options, now);
    return { restores: [], plan, started: [] };
  }
  const restores = await catalog.addRestores(
    requests.map((r) => ({
      key: r.key,
      fileId: r.fileId,
      dest: r.dest,
      requestedBy: options.requestedBy,
      ...(r.overwrite ? { overwrite: true } : {}),
    })),
    now,
  );
  const unserved = restores.filter((r) => r.state === "pending" && r.retrievalId === null);
  const { plan, started } = await startFor(deps, unserved, files, options);
  return { restores, plan, started };
}

/** Plans and starts the retrievals that `restores` need, and assigns them. */
async function startFor(
  deps: RestoreDeps,
  restores: readonly RestoreRow[],
  files: ReadonlyMap<FileId, FileRow>,
  options: { readonly tier?: Tier; readonly mergeGapBytes?: number },
): Promise<{ plan: RetrievalPlan; started: RetrievalRow[] }> {
  const { catalog, clock } = deps;
  const need = [...new Set(restores.map((r) => r.fileId))].map((id) => files.get(id)!);
  const plan = await planFor(deps, need, options, clock.now());
  const byFile = new Map<FileId, number[]>();
  for (const r of restores) byFile.set(r.fileId, [...(byFile.get(r.fileId) ?? []), r.id]);
  const idsOf = (fileIds: readonly FileId[]) => fileIds.flatMap((f) => byFile.get(f) ?? []);
  for (const reused of plan.reuse) {
    await catalog.assignRestores(
      idsOf(reused.files.map((f) => f.fileId)),
      reused.retrievalId as RetrievalId,
    );
  }
  const started: RetrievalRow[] = [];
  for (const s of plan.start) {
    const row = await startRetrieval(deps, {
      archiveId: s.archiveId,
      remoteId: s.remoteId,
      range: s.range,
      tier: s.tier,
      purpose: "restore",
    });
    await catalog.assignRestores(idsOf(s.files.map((f) => f.fileId)), row.id);
    started.push(row);
  }
  return { plan, started };
}

/**
 * Starts a retrieval at the store (its description is coldpack's own
 * retrieval id) and records it in the catalog, for restores and audits alike.
 */
export async function startRetrieval(
  deps: RestoreDeps,
  what: {
    readonly archiveId: RetrievalRow["archiveId"];
    readonly remoteId: RemoteArchiveId;
    readonly range: RetrievalRow["range"];
    readonly tier: Tier;
    readonly purpose: RetrievalPurpose;
  },
): Promise<RetrievalRow> {
  const { catalog, store, clock, random } = deps;
  const now = clock.now();
  const id = newRetrievalId(now, random(6));
  const job = await store.startRetrieval(what.remoteId, {
    ...(what.range === null ? {} : { range: what.range }),
    tier: what.tier,
    description: id,
  });
  const row: RetrievalRow = {
    id,
    archiveId: what.archiveId,
    store: store.location,
    jobId: job.jobId,
    range: what.range,
    tier: what.tier,
    purpose: what.purpose,
    state: job.state,
    startedAt: now,
    readyAt: job.state === "ready" ? now : null,
    expiresAt: job.expiresAt,
    failure: job.failure ?? null,
  };
  await catalog.addRetrieval(row);
  return row;
}

async function planFor(
  deps: RestoreDeps,
  files: readonly FileRow[],
  options: { readonly tier?: Tier; readonly mergeGapBytes?: number },
  nowMs: number,
): Promise<RetrievalPlan> {
  const { catalog, store } = deps;
  const archives = new Map<string, ArchiveRow>();
  for (const f of files) {
    const id = f.archiveId!;
    if (archives.has(id)) continue;
    const a = await catalog.archive(id);
    if (a === null) throw new RangeError(`File ${f.id}: its archive ${id} is not in the catalog`);
    if (a.store !== store.location) {
      throw new TypeError(
        `File ${f.id} is in archive ${id} at ${a.store}, not at ${store.location}: give --store ${a.store}`,
      );
    }
    archives.set(id, a);
  }
  const live = await catalog.liveRetrievals([...archives.values()].map((a) => a.id), nowMs);
  return planRetrievals({
    files: files.map((f) => ({
      fileId: f.id,
      archiveId: f.archiveId!,
      headerOffset: f.headerOffset!,
      dataOffset: f.dataOffset!,
      length: f.length,
    })),
    archives: [...archives.values()].map((a) => ({
      id: a.id,
      size: a.size,
      remoteId: a.remoteId,
      store: a.store,
    })),
    capabilities: store.capabilities,
    retrievals: live.filter((r) => r.store === store.location),
    nowMs,
  }, {
    ...(options.tier === undefined ? {} : { tier: options.tier }),
    ...(options.mergeGapBytes === undefined ? {} : { mergeGapBytes: options.mergeGapBytes }),
  });
}

/** Where and how one restore is written: the caller maps `dest` to a destination. */
export interface ResolvedDest {
  readonly destination: Destination;
  readonly write: Pick<DestinationWrite, "key" | "domain" | "storageClass" | "overwrite">;
}

/** Options for {@linkcode completeRestores}. */
export interface CompleteOptions {
  /** Maps a restore to its destination (`RestoreRow.dest` as the operator wrote it). */
  readonly resolve: (restore: RestoreRow, file: FileRow) => Promise<ResolvedDest>;
  /** Only these restores (the caller's own, for `--wait`); default every pending one. */
  readonly ids?: readonly number[];
  /** Only restores served by these retrievals (a queue message names one). */
  readonly retrievalIds?: readonly RetrievalId[];
  /** Restores written at once (default 4). */
  readonly concurrency?: number;
  /** Reads of one file's bytes before a wrong md5 fails it for good (default 3). */
  readonly readAttempts?: number;
  /** Told of each restore finished. */
  readonly onFinished?: (restore: RestoreRow, outcome: FinishedOutcome) => void;
  readonly tier?: Tier;
  readonly signal?: AbortSignal;
}

/** How a restore ended. */
export type FinishedOutcome =
  | { readonly state: "done"; readonly location: string }
  | { readonly state: "failed"; readonly reason: string };

/** What one {@linkcode completeRestores} pass did. */
export interface CompleteResult {
  readonly done: number;
  readonly failed: number;
  /** Still waiting: for their retrieval, or (see `deferred`) for a write to pass. */
  readonly waiting: number;
  /** Of `waiting`: writes that failed for a reason that may pass (kept pending for the next pass). */
  readonly deferred: number;
  /** Retrievals found expired and started again. */
  readonly restarted: number;
}

/**
 * One pass over pending restores: asks the store about each retrieval still
 * in progress, writes every restore whose bytes are ready, fails those whose
 * retrieval failed, and starts again the retrievals that expired unused.
 */
export async function completeRestores(
  deps: RestoreDeps,
  options: CompleteOptions,
): Promise<CompleteResult> {
  const { catalog, store, clock } = deps;
  const byRetrieval = options.retrievalIds === undefined ? null : new Set(options.retrievalIds);
  const pending = (await pendingRestores(catalog, options.ids)).filter((r) =>
    byRetrieval === null || (r.retrievalId !== null && byRetrieval.has(r.retrievalId))
  );
  const files = new Map<FileId, FileRow>();
  for (const r of pending) {
    if (!files.has(r.fileId)) files.set(r.fileId, (await catalog.file(r.fileId))!);
  }
  const retrievals = new Map<RetrievalId, RetrievalRow>();
  let done = 0;
  let failed = 0;
  let waiting = 0;
  let deferred = 0;
  /** Restores whose retrieval expired unused, by the tier it was started with. */
  const expired = new Map<Tier, RestoreRow[]>();
  const expire = (r: RestoreRow, tier: Tier) =>
    expired.set(tier, [...(expired.get(tier) ?? []), r]);
  const write = async (r: RestoreRow, file: FileRow, retrieval: RetrievalRow | null) => {
    const outcome = await writeOne(deps, options, r, file, retrieval, finish);
    if (outcome === "deferred") {
      waiting++;
      deferred++;
    } else if (outcome === "expired" && retrieval !== null) {
      if (retrieval.state !== "expired") {
        const update = {
          state: "expired" as const,
          readyAt: retrieval.readyAt,
          expiresAt: retrieval.expiresAt,
          failure: null,
        };
        await catalog.updateRetrieval(retrieval.id, update);
        retrievals.set(retrieval.id, { ...retrieval, ...update });
      }
      expire(r, retrieval.tier);
    }
  };
  const finish = async (r: RestoreRow, outcome: FinishedOutcome) => {
    const changed = await catalog.finishRestore(r.id, {
      state: outcome.state,
      note: outcome.state === "done" ? outcome.location : outcome.reason,
    }, clock.now());
    if (!changed) return;
    if (outcome.state === "done") done++;
    else failed++;
    options.onFinished?.(r, outcome);
  };
  // Decided one by one (one store question per retrieval), written a few at a time.
  const writes: (() => Promise<void>)[] = [];
  for (const r of pending) {
    options.signal?.throwIfAborted();
    const file = files.get(r.fileId)!;
    if (file.length === 0) {
      writes.push(() => write(r, file, null));
      continue;
    }
    if (r.retrievalId === null) {
      waiting++;
      continue;
    }
    // One catalog read and one store question per retrieval per pass, not per restore.
    let retrieval = retrievals.get(r.retrievalId);
    if (retrieval === undefined) {
      const row = await catalog.retrieval(r.retrievalId);
      if (row === null || row.store !== store.location) {
        waiting++;
        continue;
      }
      retrieval = row.state === "in-progress" || row.state === "ready"
        ? await refresh(deps, row)
        : row;
      retrievals.set(retrieval.id, retrieval);
    }
    if (retrieval.state === "in-progress") {
      waiting++;
    } else if (retrieval.state === "failed") {
      await finish(r, {
        state: "failed",
        reason: `retrieval ${retrieval.id} failed: ${retrieval.failure ?? "no reason given"}`,
      });
    } else if (retrieval.state === "expired") {
      expire(r, retrieval.tier);
    } else {
      const ready = retrieval;
      writes.push(() => write(r, file, ready));
    }
  }
  let next = 0;
  const worker = async () => {
    while (next < writes.length) {
      options.signal?.throwIfAborted();
      await writes[next++]!();
    }
  };
  await Promise.all(
    Array.from({ length: Math.min(options.concurrency ?? 4, writes.length) }, worker),
  );
  let restarted = 0;
  // Started again at the caller's tier, else at the one the operator chose before.
  for (const [tier, rows] of expired) {
    const { started } = await startFor(deps, rows, files, {
      ...options,
      tier: options.tier ?? tier,
    });
    restarted += started.length;
    waiting += rows.length;
  }
  return { done, failed, waiting, deferred, restarted };
}

/** Every pending restore (only those of `ids` when given), in id order. */
export async function pendingRestores(
  catalog: Catalog,
  ids?: readonly number[],
): Promise<RestoreRow[]> {
  const wanted = ids === undefined ? null : new Set(ids);
  const all = await allPages(
    (afterId: number | undefined) =>
      catalog.restores({
        limit: 500,
        states: ["pending"],
        ...(afterId === undefined ? {} : { afterId }),
      }),
    (r) => r.id,
  );
  return wanted === null ? all : all.filter((r) => wanted.has(r.id));
}

/** Asks the store where a retrieval stands and records it. */
async function refresh(deps: RestoreDeps, row: RetrievalRow): Promise<RetrievalRow> {
  const { catalog, store, clock } = deps;
  const job = await store.retrieval(row.jobId);
  if (job.state === row.state && job.expiresAt === row.expiresAt) return row;
  const update = {
    state: job.state,
    readyAt: job.state === "ready" ? (row.readyAt ?? job.completedAt ?? clock.now()) : row.readyAt,
    expiresAt: job.expiresAt,
    failure: job.failure ?? null,
  };
  await catalog.updateRetrieval(row.id, update);
  return { ...row, ...update };
}

/** Writes one restore from its retrieval (or an empty file), then finishes it. */
async function writeOne(
  deps: RestoreDeps,
  options: CompleteOptions,
  restore: RestoreRow,
  file: FileRow,
  retrieval: RetrievalRow | null,
  finish: (r: RestoreRow, outcome: FinishedOutcome) => Promise<void>,
): Promise<"finished" | "deferred" | "expired"> {
  const { store } = deps;
  const attempts = options.readAttempts ?? 3;
  let resolved: ResolvedDest;
  try {
    resolved = await options.resolve(restore, file);
  } catch (e) {
    if (isRetryable(e)) return "deferred";
    await finish(restore, { state: "failed", reason: `destination: ${errorMessage(e)}` });
    return "finished";
  }
  // Already there, identical (a write whose "done" was lost to a crash):
  // nothing to write again.
  try {
    if (await holdsIdentical(resolved, file, options.signal)) {
      await finish(restore, {
        state: "done",
        location:
          `${resolved.destination.location} ${resolved.write.key} (already there, identical)`,
      });
      return "finished";
    }
  } catch (e) {
    if (isRetryable(e)) return "deferred";
    await finish(restore, { state: "failed", reason: `destination: ${errorMessage(e)}` });
    return "finished";
  }
  const start = file.dataOffset! - (retrieval?.range?.start ?? 0);
  /** Why the last read of the retrieved bytes broke off (a reset, a short body), if it did. */
  let readError: unknown = null;
  const body = () => {
    if (retrieval === null) {
      return new ReadableStream<Uint8Array>({ start: (c) => c.close() });
    }
    // The read is lazy: the destination asks for the bytes once per attempt.
    let inner: ReadableStreamDefaultReader<Uint8Array> | null = null;
    return new ReadableStream<Uint8Array>({
      async pull(c) {
        try {
          inner ??= (await store.readRetrieval(retrieval.jobId, {
            range: { start, end: start + file.length - 1 },
            ...(options.signal ? { signal: options.signal } : {}),
          })).getReader();
          const { done, value } = await inner.read();
          if (done) c.close();
          else c.enqueue(value);
        } catch (e) {
          readError = e;
          throw e;
        }
      },
      async cancel(reason) {
        await inner?.cancel(reason);
      },
    });
  };
  for (let attempt = 1;; attempt++) {
    readError = null;
    try {
      const written = await resolved.destination.write({
        ...resolved.write,
        length: file.length,
        md5: file.md5!,
        body,
        ...(options.signal ? { signal: options.signal } : {}),
      });
      await finish(restore, { state: "done", location: written.location });
      return "finished";
    } catch (e) {
      const code = errorCode(e);
      // The retrieval's output went away between the store's answer and the read.
      if (code === "RetrievalExpired" || errorCode(readError) === "RetrievalExpired") {
        return "expired";
      }
      if (code === "RetrievalNotReady") return "deferred";
      // Written meanwhile by another request for the same file and place.
      if (code === "DestinationExists" && await holdsIdentical(resolved, file, options.signal)) {
        await finish(restore, {
          state: "done",
          location:
            `${resolved.destination.location} ${resolved.write.key} (already there, identical)`,
        });
        return "finished";
      }
      // Bytes that came back wrong or broke off are read again at once
      // (nothing was written); anything else that may pass is left pending
      // for the next pass.
      const brokenRead = readError !== null && isRetryable(readError);
      const badBytes = code === "ChecksumMismatch" || code === "LengthMismatch";
      if ((badBytes || brokenRead) && attempt < attempts) continue;
      if (!badBytes && isRetryable(e)) return "deferred";
      await finish(restore, {
        state: "failed",
        reason: `${code}: ${errorMessage(e)}` +
          (badBytes ? ` (after ${attempts} reads of the retrieved bytes)` : ""),
      });
      return "finished";
    }
  }
}

/** Whether the destination already holds exactly the file's bytes at the write's key. */
async function holdsIdentical(
  resolved: ResolvedDest,
  file: FileRow,
  signal: AbortSignal | undefined,
): Promise<boolean> {
  const body = await resolved.destination.read(resolved.write.key, {
    ...(resolved.write.domain === undefined ? {} : { domain: resolved.write.domain }),
    ...(signal ? { signal } : {}),
  });
  if (body === null) return false;
  const md5 = createHash("md5");
  let length = 0;
  for await (const chunk of body) {
    length += chunk.length;
    if (length > file.length) return false; // leaving the loop cancels the read
    md5.update(chunk);
  }
  return length === file.length && md5.digest("hex") === file.md5;
}

/** Pending restores requested before `nowMs - afterMs`: stuck, for the listener to report. */
export async function stuckRestores(
  catalog: Catalog,
  nowMs: number,
  afterMs: number,
): Promise<RestoreRow[]> {
  return (await pendingRestores(catalog)).filter((r) => r.requestedAt <= nowMs - afterMs);
}
