/**
 * The restore listener's loop, over the ports: learn that retrievals
 * finished (a notification queue, or asking the store every poll), write
 * the restores they serve (core/restore.ts), and only then delete the
 * notice. `coldpack-restore-listener` wires it.
 *
 * Safety does not rest on the notices: a notice only says which retrieval
 * to look at, and the store is asked where that retrieval stands before a
 * byte is read. So a forged, stale or duplicated notice can cost a question
 * to the store, never a wrong write. Notices that name nothing coldpack
 * started (an unknown job, another vault or bucket, another topic, bad
 * JSON) are logged and deleted.
 *
 * Every step can run again: a restore is marked done only after its
 * destination holds the file, a file already at its destination with the
 * same bytes is not written twice, and a notice whose restores could not
 * all be written (a destination that may come back) is left in the queue
 * to come again after its visibility timeout.
 * @module
 */

import { errorCode, errorMessage, isRetryable } from "./errors.ts";
import type { RetrievalId } from "./ids.ts";
import {
  type Metrics,
  noMetrics,
  type NotificationQueue,
  type QueueMessage,
  type RetrievalRow,
} from "./ports.ts";
import {
  type CompleteOptions,
  completeRestores,
  type CompleteResult,
  pendingRestores,
  type RestoreDeps,
  stuckRestores,
} from "./restore.ts";
import { parseQueueMessage, type RetrievalEvent } from "./restore_events.ts";

/** What the listener works with. */
export interface ListenerDeps extends RestoreDeps {
  /** Where notices arrive; `null`: ask the store every `pollMs`. */
  readonly queue: NotificationQueue | null;
  /** One line per event worth an operator's eye (no secrets). */
  readonly log: (line: string) => void;
  /**
   * Counters `coldpack.restore_listener.*` (see {@linkcode LISTENER_METRICS}),
   * `errors` and the timing `sweep_seconds`. Default: none.
   */
  readonly metrics?: Metrics;
}

/** Options for {@linkcode runListener}. */
export interface ListenerOptions {
  readonly resolve: CompleteOptions["resolve"];
  readonly onFinished?: CompleteOptions["onFinished"];
  /** The SNS topic notices must come from; `null`: any. */
  readonly topic: string | null;
  /** How often every pending restore is looked at (the only way without a queue). */
  readonly pollMs: number;
  /** A restore pending this long after it was requested is reported, once. */
  readonly stuckAfterMs: number;
  /** How long a received notice stays hidden while its restores are written. */
  readonly visibilityMs: number;
  /** Long-poll wait per receive, seconds (default 20, SQS's most). */
  readonly waitSeconds?: number;
  /** One pass over every pending restore, then return (`--once`). */
  readonly once?: boolean;
  /** Ends the loop: the write in progress is abandoned whole, the notice stays queued. */
  readonly signal: AbortSignal;
}

/** What the listener did, for its last log line and for tests. */
export interface ListenerStats {
  /** Notices received. */
  received: number;
  /** Notices deleted after their restores were done, or as unknown, ignored or malformed. */
  deleted: number;
  /** Notices dropped as naming nothing coldpack started (unknown job, vault, bucket or topic). */
  unknown: number;
  /** Notices dropped as malformed. */
  malformed: number;
  /** Notices ignored by design (the S3 test event, other events). */
  ignored: number;
  /** Restores written, failed, and retrievals started again. */
  done: number;
  failed: number;
  restarted: number;
  /** Restores reported as stuck. */
  stuck: number;
}

const MAX_BACKOFF_MS = 60_000;

/** The counter each {@linkcode ListenerStats} field is sent as. */
export const LISTENER_METRICS: Readonly<Record<keyof ListenerStats, string>> = {
  received: "coldpack.restore_listener.notices_received",
  deleted: "coldpack.restore_listener.notices_deleted",
  unknown: "coldpack.restore_listener.notices_unknown",
  malformed: "coldpack.restore_listener.notices_malformed",
  ignored: "coldpack.restore_listener.notices_ignored",
  done: "coldpack.restore_listener.restores_done",
  failed: "coldpack.restore_listener.restores_failed",
  restarted: "coldpack.restore_listener.retrievals_restarted",
  stuck: "coldpack.restore_listener.restores_stuck",
};

/** Counts what `stats` gained since `sent` (then updates `sent`). */
function sendCounts(metrics: Metrics, stats: ListenerStats, sent: ListenerStats): void {
  for (const key of Object.keys(LISTENER_METRICS) as (keyof ListenerStats)[]) {
    const delta = stats[key] - sent[key];
    if (delta === 0) continue;
    metrics.count(LISTENER_METRICS[key], delta);
    sent[key] = stats[key];
  }
}

/**
 * Runs until `options.signal` aborts; resolves to what it did. A failure
 * that trying again cannot mend (a missing queue, denied access) rejects.
 */
export async function runListener(
  deps: ListenerDeps,
  options: ListenerOptions,
): Promise<ListenerStats> {
  const { clock, queue, log } = deps;
  const { signal } = options;
  const stats: ListenerStats = {
    received: 0,
    deleted: 0,
    unknown: 0,
    malformed: 0,
    ignored: 0,
    done: 0,
    failed: 0,
    restarted: 0,
    stuck: 0,
  };
  const metrics = deps.metrics ?? noMetrics;
  const sent: ListenerStats = { ...stats };
  const reported = new Set<number>();
  let nextSweep = 0;
  let failures = 0;
  while (!signal.aborted) {
    try {
      if (clock.now() >= nextSweep) {
        const t0 = clock.now();
        try {
          await sweep(deps, options, stats, reported);
        } finally {
          sendCounts(metrics, stats, sent);
        }
        metrics.timing("coldpack.restore_listener.sweep_seconds", (clock.now() - t0) / 1000);
        if (options.once) break;
        nextSweep = clock.now() + options.pollMs;
      }
      if (queue === null) {
        await clock.sleep(Math.max(0, nextSweep - clock.now()), signal);
      } else {
        const untilSweep = Math.ceil((nextSweep - clock.now()) / 1000);
        const messages = await queue.receive({
          waitSeconds: Math.max(0, Math.min(options.waitSeconds ?? 20, untilSweep)),
          max: 10,
          visibilitySeconds: Math.ceil(options.visibilityMs / 1000),
          signal,
        });
        for (const m of messages) {
          signal.throwIfAborted();
          try {
            await handle(deps, options, queue, m, stats);
          } finally {
            sendCounts(metrics, stats, sent);
          }
        }
      }
      failures = 0;
    } catch (e) {
      if (signal.aborted) break;
      metrics.count("coldpack.restore_listener.errors");
      if (!isRetryable(e)) throw e;
      failures++;
      const wait = Math.min(MAX_BACKOFF_MS, 1000 * 2 ** Math.min(failures - 1, 6));
      log(`${errorMessage(e)} [${errorCode(e)}]; trying again in ${wait / 1000} s`);
      await clock.sleep(wait, signal).catch(() => {});
    }
  }
  return stats;
}

/** One pass over every pending restore, then the stuck report. */
async function sweep(
  deps: ListenerDeps,
  options: ListenerOptions,
  stats: ListenerStats,
  reported: Set<number>,
): Promise<void> {
  count(stats, await completeRestores(deps, complete(options)));
  const now = deps.clock.now();
  for (const r of await stuckRestores(deps.catalog, now, options.stuckAfterMs)) {
    if (reported.has(r.id)) continue;
    reported.add(r.id);
    stats.stuck++;
    const retrieval = r.retrievalId === null ? null : await deps.catalog.retrieval(r.retrievalId);
    deps.log(
      `restore ${r.id} (fid:${r.fileId} -> ${r.dest}) is stuck: pending for ${
        hours(now - r.requestedAt)
      } h, ${describeRetrieval(retrieval)}`,
    );
  }
}

function describeRetrieval(r: RetrievalRow | null): string {
  if (r === null) return "no retrieval serves it yet";
  return `retrieval ${r.id} (job ${r.jobId}, ${r.tier}) is ${r.state}` +
    (r.failure === null ? "" : `: ${r.failure}`);
}

function hours(ms: number): string {
  return (ms / 3_600_000).toFixed(1);
}

function complete(
  options: ListenerOptions,
  retrievalIds?: readonly RetrievalId[],
): CompleteOptions {
  return {
    resolve: options.resolve,
    signal: options.signal,
    ...(options.onFinished ? { onFinished: options.onFinished } : {}),
    ...(retrievalIds === undefined ? {} : { retrievalIds }),
  };
}

function count(stats: ListenerStats, r: CompleteResult): void {
  stats.done += r.done;
  stats.failed += r.failed;
  stats.restarted += r.restarted;
}

/** One notice: find the retrievals it names, write their restores, then delete it. */
async function handle(
  deps: ListenerDeps,
  options: ListenerOptions,
  queue: NotificationQueue,
  m: QueueMessage,
  stats: ListenerStats,
): Promise<void> {
  const { log } = deps;
  stats.received++;
  const what = `notice ${m.id}` + (m.receiveCount > 1 ? ` (delivery ${m.receiveCount})` : "");
  const drop = async (kind: "unknown" | "malformed" | "ignored", why: string) => {
    stats[kind]++;
    log(`${what}: ${kind === "ignored" ? "ignored" : `dropped, ${kind}`}: ${why}`);
    await queue.delete(m, { signal: options.signal });
    stats.deleted++;
  };
  const notice = parseQueueMessage(m.body);
  if (notice.kind === "malformed") return await drop("malformed", notice.reason);
  if (notice.kind === "ignored") return await drop("ignored", notice.reason);
  if (options.topic !== null && notice.topic !== null && notice.topic !== options.topic) {
    return await drop("unknown", `from topic ${notice.topic}, not ${options.topic}`);
  }
  const ids: RetrievalId[] = [];
  const unknown: string[] = [];
  for (const event of notice.events) {
    const found = await retrievalsFor(deps, event);
    if (typeof found === "string") unknown.push(found);
    else ids.push(...found);
  }
  if (ids.length === 0) return await drop("unknown", unknown.join("; "));
  const result = await completeRestores(deps, complete(options, ids));
  count(stats, result);
  if (result.deferred > 0) {
    log(
      `${what}: ${result.deferred} restore(s) of retrieval ${
        ids.join(", ")
      } not written yet (a destination may come back); the notice comes again`,
    );
    return;
  }
  await queue.delete(m, { signal: options.signal });
  stats.deleted++;
}

/**
 * The restore retrievals an event names, or why it names none. The store is
 * asked about each later; the event only points at it.
 */
async function retrievalsFor(
  deps: ListenerDeps,
  event: RetrievalEvent,
): Promise<RetrievalId[] | string> {
  const { catalog, store } = deps;
  if (event.kind === "glacier-job") {
    const vault = /^glacier:\/\/([^/]+)\/(.+)$/.exec(store.location);
    if (vault === null) return `a Glacier job ${event.jobId}, but the store is ${store.location}`;
    if (event.vaultArn !== null) {
      const arn = /^arn:aws[a-z-]*:glacier:([a-z0-9-]+):\d{12}:vaults\/(.+)$/.exec(event.vaultArn);
      if (arn === null || arn[1] !== vault[1] || arn[2] !== vault[2]) {
        return `job ${event.jobId} of vault ${event.vaultArn}, not ${store.location}`;
      }
    }
    const row = await catalog.retrievalByJob(store.location, event.jobId);
    if (row === null) return `job ${event.jobId} was not started by coldpack at ${store.location}`;
    if (row.purpose !== "restore") return `job ${event.jobId} is an ${row.purpose} retrieval`;
    return [row.id];
  }
  const bucket = /^s3:\/\/([^/?]+)/.exec(store.location);
  if (bucket === null || bucket[1] !== event.bucket) {
    return `a restore of s3://${event.bucket}/${event.key}, but the store is ${store.location}`;
  }
  // The pending restores' retrievals whose archive is that object.
  const ids = new Set<RetrievalId>();
  for (const r of await pendingRestores(catalog)) {
    if (r.retrievalId !== null) ids.add(r.retrievalId);
  }
  const out: RetrievalId[] = [];
  for (const id of ids) {
    const row = await catalog.retrieval(id);
    if (row === null || row.store !== store.location) continue;
    const archive = await catalog.archive(row.archiveId);
    if (archive !== null && archive.remoteId === event.key) out.push(id);
  }
  return out.length > 0 ? out : `no pending restore waits for s3://${event.bucket}/${event.key}`;
}
