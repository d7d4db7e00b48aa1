/**
 * The backup pipeline: discover -> fetch -> bundle -> upload -> commit.
 *
 * All I/O goes through ports, so this runs the same against a directory and
 * a local vault as against MogileFS and Glacier. The one invariant everything
 * here serves: a file is marked archived only by the catalog transaction that
 * follows the store's confirmation of its archive, with a checksum equal to
 * ours. A crash anywhere leaves files `pending`, to be done again.
 *
 * @example
 * ```ts
 * const summary = await runBackup(deps, { once: true });
 * console.log(summary.archivedFiles);
 * ```
 * @module
 */

import { Bundler, DEFAULT_MAX_AGE_MS, DEFAULT_TARGET_SIZE } from "./bundler.ts";
import { ByteBudget, Channel, Notifier, TIMED_OUT } from "./channel.ts";
import {
  ArchiveMismatchError,
  errorCode,
  errorMessage,
  isRetryable,
  type Stage,
} from "./errors.ts";
import { type FileId, hex, newArchiveId, type SourceId } from "./ids.ts";
import {
  type ArchiveMember,
  type ArchiveRow,
  type Catalog,
  type Clock,
  type ColdStore,
  type FileRow,
  type ListPage,
  type Metrics,
  noMetrics,
  noProgress,
  type PackedArchive,
  type Packer,
  type PackFile,
  type PackOutcome,
  type PackRequest,
  type Progress,
  type ProgressSnapshot,
  type Source,
} from "./ports.ts";
import { safeEntryName } from "./safe_name.ts";

/** What the pipeline runs on. */
export interface BackupDeps {
  readonly source: Source;
  /** Turns bundles into finished archives (reads, md5s, tar, tree hash). */
  readonly packer: Packer;
  readonly store: ColdStore;
  readonly catalog: Catalog;
  readonly clock: Clock;
  /** `n` random bytes (archive ids). */
  readonly random: (n: number) => Uint8Array;
  readonly metrics?: Metrics;
  readonly progress?: Progress;
}

/** How the pipeline runs. Every option has a default. */
export interface BackupOptions {
  /** Back up what is there now, then return (cron). Default false: follow the source. */
  readonly once?: boolean;
  /** Bundle target size in bytes (default 25 MiB). */
  readonly targetSize?: number;
  /** Max wait of a bundle's oldest file in ms (default 30 s). */
  readonly maxAgeMs?: number;
  /** Bundles packed at once (default 2: one per worker thread of the packer). */
  readonly packers?: number;
  /** Concurrent uploads (default 2). */
  readonly uploaders?: number;
  /** Bytes of bundles being packed or uploaded at most; planning waits beyond (default 64 MiB). */
  readonly bufferBytes?: number;
  /**
   * Full listing interval in ms, besides watch events and polls (default:
   * the source's `rescanMs`, else 60 s). A source that lists incrementally
   * (`Source.pollMs`) is listed whole at most this often, also across
   * `once` runs (the time of the last full listing is kept in the catalog).
   */
  readonly rescanMs?: number;
  /** Incremental listing interval in ms (default: the source's `pollMs`). */
  readonly pollMs?: number;
  /** Aborting it asks for a graceful stop: finish what is in flight, lose nothing. */
  readonly signal?: AbortSignal;
  /** After a stop request, give in-flight work this long before abandoning it (default 60 s). */
  readonly shutdownTimeoutMs?: number;
  /** Fetch attempts of one file before it is failed for good (default 5). */
  readonly maxAttempts?: number;
  /** First retry delay in ms; doubles per attempt up to 15 min (default 2 s). */
  readonly retryBaseMs?: number;
  /** Store upload attempts of one archive within a run (default 4). */
  readonly uploadAttempts?: number;
  /**
   * This daemon's name in the catalog's leases and claims (default
   * `backup-<random>`): daemons sharing one catalog must each have their own.
   */
  readonly owner?: string;
  /**
   * Lifetime of this daemon's leases, ms (default 60 s), renewed every third
   * of it. When a daemon dies, its claimed files and its discovery turn pass
   * to another daemon after this long.
   */
  readonly leaseTtlMs?: number;
  /**
   * How often the gauges (queue depths, files in flight, buffered bytes, the
   * oldest pending file's age) are sampled, ms (default 5 s). Only with
   * `deps.metrics`; the oldest pending file costs one indexed catalog read.
   */
  readonly gaugeIntervalMs?: number;
}

/** What one run did. */
export interface BackupSummary extends ProgressSnapshot {
  readonly seconds: number;
  /** Files left pending for a later retry. */
  readonly retryLater: number;
  /** Files that failed for good in this run (state `failed`). */
  readonly failedFiles: number;
  /** Files the source lists but coldpack skips (sockets, fifos, symlinks...). */
  readonly skipped: number;
  /** Set when the run stopped on an error it could not get past (store or catalog down). */
  readonly fatal: string | null;
}

/** A closed bundle on its way to a packer. */
interface PackJob {
  readonly request: PackRequest;
  readonly openedAt: number;
  /** Sum of the files' listed lengths, held in the byte budget. */
  readonly bytes: number;
}

/** A packed archive on its way to the store. */
interface UploadJob {
  readonly packed: PackedArchive;
  readonly job: PackJob;
}

const MAX_RETRY_MS = 15 * 60_000;
const PENDING_PAGE = 500;

/** Thrown inside the pipeline when the run must stop (fatal error or hard abort). */
class Stop extends Error {}

/**
 * Runs the backup pipeline until the source is drained (`once`) or the
 * signal asks it to stop.
 */
export async function runBackup(
  deps: BackupDeps,
  options: BackupOptions = {},
): Promise<BackupSummary> {
  const run = new BackupRun(deps, options);
  return await run.run();
}

class BackupRun {
  readonly #d: BackupDeps;
  readonly #metrics: Metrics;
  readonly #progress: Progress;
  readonly #once: boolean;
  readonly #policy: { targetSize: number; maxAgeMs: number };
  readonly #packers: number;
  readonly #uploaders: number;
  readonly #rescanMs: number;
  /** Set for a source that lists incrementally after a cursor. */
  readonly #pollMs: number | null;
  /** Catalog cursors: the incremental listing's position, the last full listing's time. */
  readonly #hwmCursor: string;
  readonly #reconciledCursor: string;
  readonly #maxAttempts: number;
  readonly #retryBaseMs: number;
  readonly #uploadAttempts: number;
  readonly #shutdownTimeoutMs: number;
  readonly #stopSignal: AbortSignal | undefined;
  readonly #owner: string;
  readonly #leaseTtlMs: number;
  readonly #gaugeIntervalMs: number;
  /** Files in the planner's open bundle, for the gauge. */
  #bundleFiles = 0;
  /** The lease that makes this daemon the one discovering its source. */
  readonly #discoverLease: string;
  #discovering = false;
  #toldDiscoveryElsewhere = false;

  /** Aborted on a hard stop: in-flight I/O is abandoned. */
  readonly #hard = new AbortController();
  /** Aborted when feeding must end (graceful stop, end of once, fatal). */
  readonly #quit = new AbortController();
  /** Aborted when the run is over: ends the shutdown timer, which must not outlive it. */
  readonly #finished = new AbortController();
  readonly #budget: ByteBudget;
  readonly #planQ: Channel<FileRow | "flush">;
  readonly #packQ: Channel<PackJob>;
  readonly #uploadQ: Channel<UploadJob>;
  /** Files between the feeder and commit (or vanish/failure). */
  readonly #inFlight = new Set<FileId>();
  readonly #changed = new Notifier();
  #rediscover = false;
  #fatal: string | null = null;
  #retryLater = 0;
  #failedFiles = 0;
  #skipped = 0;
  #counts = {
    discovered: 0,
    fetchedFiles: 0,
    fetchedBytes: 0,
    archivedFiles: 0,
    archivedBytes: 0,
    archives: 0,
    vanished: 0,
    failures: 0,
  };

  constructor(deps: BackupDeps, o: BackupOptions) {
    this.#d = deps;
    this.#metrics = deps.metrics ?? noMetrics;
    this.#progress = deps.progress ?? noProgress;
    this.#once = o.once ?? false;
    this.#policy = {
      targetSize: o.targetSize ?? DEFAULT_TARGET_SIZE,
      maxAgeMs: o.maxAgeMs ?? DEFAULT_MAX_AGE_MS,
    };
    this.#packers = o.packers ?? 2;
    this.#uploaders = o.uploaders ?? 2;
    this.#rescanMs = o.rescanMs ?? deps.source.rescanMs ?? 60_000;
    const pollMs = o.pollMs ?? deps.source.pollMs;
    this.#pollMs = pollMs === undefined ? null : Math.max(1, pollMs);
    this.#hwmCursor = `hwm:${deps.source.id}`;
    this.#reconciledCursor = `reconciled:${deps.source.id}`;
    this.#maxAttempts = o.maxAttempts ?? 5;
    this.#retryBaseMs = o.retryBaseMs ?? 2_000;
    this.#uploadAttempts = o.uploadAttempts ?? 4;
    this.#shutdownTimeoutMs = o.shutdownTimeoutMs ?? 60_000;
    this.#stopSignal = o.signal;
    this.#owner = o.owner ?? `backup-${hex(deps.random(6))}`;
    this.#leaseTtlMs = o.leaseTtlMs ?? 60_000;
    this.#gaugeIntervalMs = Math.max(1, o.gaugeIntervalMs ?? 5_000);
    this.#discoverLease = `discover:${deps.source.id}`;
    this.#budget = new ByteBudget(o.bufferBytes ?? 64 * 1024 * 1024);
    this.#planQ = new Channel(1024);
    this.#packQ = new Channel(1);
    this.#uploadQ = new Channel(1);
  }

  async run(): Promise<BackupSummary> {
    const { catalog, clock } = this.#d;
    const started = clock.now();
    const onStop = () => this.#beginShutdown();
    if (this.#stopSignal?.aborted) onStop();
    this.#stopSignal?.addEventListener("abort", onStop, { once: true });
    const heartbeat = new AbortController();
    let beating: Promise<void> = Promise.resolve();
    const gauges = new AbortController();
    let sampling: Promise<void> = Promise.resolve();
    try {
      const workerLease = `worker:${this.#owner}`;
      if (!(await catalog.acquireLease(workerLease, this.#owner, this.#leaseTtlMs, clock.now()))) {
        throw new Stop(
          `another daemon holds the lease ${workerLease}: give each daemon its own owner name`,
        );
      }
      beating = this.#heartbeat(workerLease, heartbeat.signal);
      if (this.#metrics !== noMetrics) sampling = this.#sampleGauges(gauges.signal);
      // Each stage closes its output when its input ends, so they finish in order.
      const packers = Array.from({ length: this.#packers }, () => this.#guard(this.#packLoop()));
      const packDone = Promise.all(packers).then(() => this.#uploadQ.close());
      await Promise.all([
        this.#guard(this.#feedLoop()),
        this.#guard(this.#planLoop()),
        packDone,
        ...Array.from({ length: this.#uploaders }, () => this.#guard(this.#uploadLoop())),
      ]);
      gauges.abort();
      await sampling;
      // The last word on the backlog: what a cron run leaves pending.
      if (this.#metrics !== noMetrics && this.#fatal === null) await this.#sample();
    } catch (e) {
      this.#die(e);
    } finally {
      this.#stopSignal?.removeEventListener("abort", onStop);
      heartbeat.abort();
      gauges.abort();
      await beating;
      await sampling;
      // Let the others take over at once instead of after the lease expires.
      for (const name of [this.#discoverLease, `worker:${this.#owner}`]) {
        await catalog.releaseLease(name, this.#owner).catch(() => {});
      }
      this.#finished.abort();
    }
    this.#report();
    return {
      ...this.#snapshot(),
      seconds: (this.#d.clock.now() - started) / 1000,
      retryLater: this.#retryLater,
      failedFiles: this.#failedFiles,
      skipped: this.#skipped,
      fatal: this.#fatal,
    };
  }

  /**
   * Renews this daemon's worker lease (and its discovery lease while it
   * holds it) every third of their lifetime, so that its claims stay its own.
   */
  async #heartbeat(workerLease: string, signal: AbortSignal): Promise<void> {
    const { catalog, clock } = this.#d;
    const every = Math.max(1, Math.floor(this.#leaseTtlMs / 3));
    while (!signal.aborted) {
      try {
        await clock.sleep(every, signal);
      } catch {
        return;
      }
      try {
        const now = clock.now();
        if (!(await catalog.acquireLease(workerLease, this.#owner, this.#leaseTtlMs, now))) {
          this.#progress.note(
            `Lost the lease ${workerLease} to another daemon with the same owner name`,
          );
        }
        if (this.#discovering) {
          this.#discovering = await catalog.acquireLease(
            this.#discoverLease,
            this.#owner,
            this.#leaseTtlMs,
            now,
          );
        }
      } catch (e) {
        this.#progress.note(`Cannot renew the leases (will retry): ${errorMessage(e)}`);
      }
    }
  }

  /** Samples the gauges now and every `gaugeIntervalMs` until `signal` aborts. */
  async #sampleGauges(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await this.#sample();
      try {
        await this.#d.clock.sleep(this.#gaugeIntervalMs, signal);
      } catch {
        return;
      }
    }
  }

  #sampleFailedOnce = false;

  /**
   * Queue depths, files in flight, bytes held, and the age of the oldest
   * file not yet archived (the lowest pending id: ids grow with discovery,
   * so it is the oldest one, found by index; 0 when nothing is pending).
   * Never throws: a catalog error skips the age, told once.
   */
  async #sample(): Promise<void> {
    const { catalog, clock, source } = this.#d;
    const m = this.#metrics;
    m.gauge("coldpack.backup.queue.plan_files", this.#planQ.length);
    m.gauge("coldpack.backup.queue.bundle_files", this.#bundleFiles);
    m.gauge("coldpack.backup.queue.pack_bundles", this.#packQ.length);
    m.gauge("coldpack.backup.queue.upload_archives", this.#uploadQ.length);
    m.gauge("coldpack.backup.in_flight_files", this.#inFlight.size);
    m.gauge("coldpack.backup.buffer_bytes", this.#budget.held);
    try {
      const [oldest] = await catalog.pendingFiles(source.id, {
        limit: 1,
        nowMs: Number.MAX_SAFE_INTEGER,
      });
      m.gauge(
        "coldpack.backup.oldest_pending_seconds",
        oldest === undefined ? 0 : Math.max(0, clock.now() - oldest.discoveredAt) / 1000,
      );
    } catch (e) {
      if (this.#sampleFailedOnce) return;
      this.#sampleFailedOnce = true;
      this.#progress.note(`Cannot read the oldest pending file for metrics: ${errorMessage(e)}`);
    }
  }

  /** Graceful stop: no more feeding; in-flight work finishes, bounded by the timeout. */
  #beginShutdown(): void {
    if (this.#quit.signal.aborted) return;
    this.#quit.abort();
    this.#changed.notify();
    const wait = AbortSignal.any([this.#hard.signal, this.#finished.signal]);
    this.#d.clock.sleep(this.#shutdownTimeoutMs, wait).then(
      () => {
        this.#progress.note(
          `Shutdown timeout (${this.#shutdownTimeoutMs / 1000} s) reached: ` +
            "abandoning in-flight archives; their files stay pending",
        );
        this.#hard.abort(new Stop("shutdown timeout"));
      },
      () => {},
    );
  }

  /** A stage's unexpected error stops the whole run instead of hanging it. */
  async #guard(p: Promise<void>): Promise<void> {
    try {
      await p;
    } catch (e) {
      if (!(e instanceof Stop)) this.#die(e);
    }
  }

  #die(e: unknown): void {
    if (this.#fatal === null) this.#fatal = errorMessage(e);
    this.#beginShutdown();
    this.#hard.abort(new Stop(this.#fatal));
    this.#planQ.close();
    this.#packQ.close();
    this.#uploadQ.close();
  }

  // -------------------------------------------------------------------------
  // Discover + feed: list the source into the catalog, then hand due pending
  // files to the planner. Work is driven from the catalog, so files left
  // pending by a crash or a failed attempt are simply picked up again.

  async #feedLoop(): Promise<void> {
    const { catalog, clock } = this.#d;
    const watchAc = new AbortController();
    const watchHint = this.#once ? null : this.#watch(watchAc.signal);
    // A source that lists incrementally is listed whole only every rescan,
    // counted from the last full listing, which may be a previous run's.
    let nextScan = 0;
    let nextPoll = 0;
    if (this.#pollMs !== null) {
      const at = Number(await catalog.getCursor(this.#reconciledCursor) ?? NaN);
      if (Number.isSafeInteger(at)) nextScan = at + this.#rescanMs;
    }
    let passes = 0;
    // Discovery runs beside feeding: files are fetched while the walk goes on.
    let discovering: Promise<void> | null = null;
    let discoverError: unknown = null;
    const discover = (full: boolean) => {
      this.#rediscover = false;
      passes++;
      discovering = this.#discover(full)
        .catch((e) => void (discoverError = e))
        .finally(() => {
          discovering = null;
          const now = clock.now();
          if (full) nextScan = now + this.#rescanMs;
          nextPoll = now + (this.#pollMs ?? 0);
          this.#changed.notify();
        });
    };
    /** Starts the listing that is due, if one is. */
    const discoverIfDue = () => {
      if (discovering !== null) return;
      const now = clock.now();
      const again = this.#rediscover && (!this.#once || passes < 4);
      const pollDue = this.#pollMs !== null && now >= nextPoll;
      if (this.#once ? passes === 0 || again : now >= nextScan || again || pollDue) {
        // Incremental sources list whole when the rescan is due, else after the cursor.
        discover(this.#pollMs === null || now >= nextScan);
      }
    };
    try {
      while (!this.#quit.signal.aborted) {
        if (discoverError !== null) throw discoverError;
        discoverIfDue();
        const fed = await this.#feedPending();
        if (this.#quit.signal.aborted) break;
        if (fed > 0) continue;
        if (discovering !== null) {
          // More rows may be on their way: wait for the next page or the end.
          await this.#changed.wait(this.#quit.signal);
          continue;
        }
        if (discoverError !== null) throw discoverError;
        if (this.#once) {
          // Nothing new to feed: let the open bundle go and wait for in-flight work.
          await this.#drain();
          if (this.#rediscover && passes < 4) continue;
          this.#feedCursor = undefined;
          if ((await this.#feedPending()) === 0) break;
          continue;
        }
        // Daemon: wait for a watch hint, a poll or rescan, a retry coming due, or work finishing.
        const ac = new AbortController();
        const abortWait = () => ac.abort();
        this.#quit.signal.addEventListener("abort", abortWait, { once: true });
        const next = this.#pollMs === null ? nextScan : Math.min(nextScan, nextPoll);
        const waitMs = Math.max(0, Math.min(next - clock.now(), 1_000));
        const waits = [clock.sleep(waitMs, ac.signal).catch(() => {})];
        if (watchHint) waits.push(watchHint.next.then(() => void (nextScan = 0)));
        await Promise.race(waits);
        ac.abort();
        this.#quit.signal.removeEventListener("abort", abortWait);
      }
    } finally {
      watchAc.abort();
      this.#planQ.close();
      await (discovering as Promise<void> | null);
    }
    if (this.#once && !this.#fatal) {
      // A count, not the rows: a large backlog must not be loaded into memory.
      this.#retryLater = (await catalog.status()).files.pending;
    }
  }

  /** Follows the source's watch events; `next` resolves at the next one. */
  #watch(signal: AbortSignal): { next: Promise<void> } | null {
    const watch = this.#d.source.watch;
    if (!watch) return null;
    const hint = { next: new Promise<void>(() => {}) };
    let wake = () => {};
    const arm = () => {
      hint.next = new Promise<void>((r) => wake = r);
    };
    arm();
    (async () => {
      for await (const _ of watch.call(this.#d.source, { signal })) {
        const w = wake;
        arm();
        w();
      }
    })().catch((e) => this.#progress.note(`Watching the source stopped: ${errorMessage(e)}`));
    return hint;
  }

  /**
   * One listing of the source into the catalog: a full one, or (for a
   * source that lists incrementally) one after the saved cursor. Pages with
   * a fid span also tell which known files are gone from the source.
   */
  async #discover(full: boolean): Promise<void> {
    const { source, catalog, clock } = this.#d;
    try {
      // One daemon discovers a source at a time; the others archive what it finds.
      this.#discovering = await catalog.acquireLease(
        this.#discoverLease,
        this.#owner,
        this.#leaseTtlMs,
        clock.now(),
      );
      if (!this.#discovering) {
        if (!this.#toldDiscoveryElsewhere) {
          this.#toldDiscoveryElsewhere = true;
          this.#progress.note(
            `Another daemon is discovering ${source.id}; this one archives what is pending`,
          );
        }
        return;
      }
      const incremental = this.#pollMs !== null;
      const after = full || !incremental ? null : await catalog.getCursor(this.#hwmCursor);
      const startedAt = clock.now();
      let hwm = after === null ? -1 : Number(after);
      for await (const page of source.list({ after, signal: this.#quit.signal })) {
        for (const s of page.skipped) this.#skip(s.key, s.reason);
        if (page.entries.length > 0) {
          // Versions the catalog already has are ignored by addDiscovered itself:
          // one index probe each, the same cost as asking first.
          const added = await catalog.addDiscovered(source.id, page.entries, clock.now());
          this.#changed.notify();
          this.#counts.discovered += added.length;
          this.#metrics.count("coldpack.backup.files_discovered", added.length);
          let bytes = 0;
          for (const f of added) bytes += f.length;
          this.#metrics.count("coldpack.backup.bytes_discovered", bytes);
          this.#report();
        }
        if (page.span) await this.#markGone(page);
        // The cursor moves only forward, and only past what the catalog holds.
        if (incremental && page.cursor !== undefined && Number(page.cursor) > hwm) {
          hwm = Number(page.cursor);
          await catalog.setCursor(this.#hwmCursor, page.cursor);
        }
      }
      if (full && incremental) {
        await catalog.setCursor(this.#reconciledCursor, String(startedAt));
      }
      this.#metrics.timing(
        `coldpack.backup.${full ? "full" : "incremental"}_listing_seconds`,
        (clock.now() - startedAt) / 1000,
      );
    } catch (e) {
      if (this.#quit.signal.aborted && (e as Error)?.name === "AbortError") return;
      if (this.#once) throw e;
      // A daemon keeps going: the next rescan tries again.
      this.#countFailure("discover");
      this.#progress.note(`Listing the source failed (will retry): ${errorMessage(e)}`);
      await catalog.recordFailure({
        stage: "discover",
        code: errorCode(e),
        message: errorMessage(e),
        source: source.id,
        nowMs: clock.now(),
        retryAt: null,
      }).catch(() => {});
    }
  }

  /** Records which known files a page with a fid span shows gone from the source. */
  async #markGone(page: ListPage): Promise<void> {
    const { source, catalog, clock } = this.#d;
    const span = page.span!;
    const present = page.entries.flatMap((e) => e.sourceFid === undefined ? [] : [e.sourceFid]);
    const { gone, vanished } = await catalog.markGone(source.id, span, present, clock.now());
    if (gone === 0) return;
    this.#metrics.count("coldpack.backup.files_gone", gone);
    if (vanished > 0) {
      this.#counts.vanished += vanished;
      this.#metrics.count("coldpack.backup.files_vanished", vanished);
      this.#changed.notify();
    }
    this.#report();
  }

  #skippedSeen = new Set<string>();

  #skip(key: string, reason: string): void {
    const k = `${key}\0${reason}`;
    if (this.#skippedSeen.has(k)) return;
    this.#skippedSeen.add(k);
    this.#skipped++;
    this.#metrics.count("coldpack.backup.files_skipped");
    this.#progress.note(`Skipped ${JSON.stringify(key)}: ${reason}`);
    this.#d.catalog.recordFailure({
      stage: "discover",
      code: "skipped",
      message: reason,
      source: this.#d.source.id,
      key,
      nowMs: this.#d.clock.now(),
      retryAt: null,
      resolved: true,
    }).catch((e) => this.#progress.note(`Cannot record a skipped file: ${errorMessage(e)}`));
  }

  /** Where the feeder's walk through pending rows stands (by id). */
  #feedCursor: FileId | undefined;

  /**
   * Feeds due pending files that are not already in flight, continuing from
   * the feeder's cursor. A call that finds nothing sends the cursor back to
   * the start, so that retries that came due are found on the next call.
   * Returns how many it fed.
   */
  async #feedPending(): Promise<number> {
    const { catalog, source, clock } = this.#d;
    let fed = 0;
    for (;;) {
      const after = this.#feedCursor;
      const rows = await catalog.claimFiles(source.id, {
        owner: this.#owner,
        limit: PENDING_PAGE,
        nowMs: clock.now(),
        ...(after === undefined ? {} : { afterId: after }),
      });
      for (const row of rows) {
        if (this.#quit.signal.aborted) return fed;
        this.#feedCursor = row.id;
        if (this.#inFlight.has(row.id)) continue;
        this.#inFlight.add(row.id);
        try {
          await this.#planQ.push(row);
        } catch {
          this.#inFlight.delete(row.id);
          return fed;
        }
        fed++;
      }
      if (rows.length < PENDING_PAGE) {
        // New rows come with higher ids: continue from here next time, unless
        // this walk found nothing, then start over to pick up due retries.
        if (fed === 0) this.#feedCursor = undefined;
        return fed;
      }
    }
  }

  /** Once mode: ship the open bundle, then wait until every fed file is settled. */
  async #drain(): Promise<void> {
    await this.#planQ.push("flush").catch(() => {});
    while (this.#inFlight.size > 0 && !this.#hard.signal.aborted) {
      await this.#changed.wait(this.#hard.signal);
    }
  }

  #backoff(attempts: number): number {
    return Math.min(MAX_RETRY_MS, this.#retryBaseMs * 2 ** (attempts - 1));
  }

  #countFailure(stage: Stage): void {
    this.#counts.failures++;
    this.#metrics.count(`coldpack.backup.failures.${stage}`);
    this.#report();
  }

  /** A file is done with (committed, vanished, failed or left for a retry). */
  #settle(ids: Iterable<FileId>): void {
    for (const id of ids) this.#inFlight.delete(id);
    this.#changed.notify();
  }

  // -------------------------------------------------------------------------
  // Plan: the bundling policy decides, from the listed lengths, which files
  // make one archive; a bundle closes at the target size or the max age.

  async #planLoop(): Promise<void> {
    const { clock, source } = this.#d;
    const bundler = new Bundler<PackFile>(this.#policy);
    /** `timer` aborts when the open bundle reaches its max age; `cancel` stops that timer. */
    const age: { timer: AbortController | null; cancel: AbortController | null } = {
      timer: null,
      cancel: null,
    };
    const ship = async (files: PackFile[], openedAt: number) => {
      if (files.length === 0) return;
      let bytes = 0;
      for (const f of files) bytes += f.row.length;
      await this.#budget.acquire(bytes);
      const request: PackRequest = {
        archiveId: newArchiveId(clock.now(), this.#d.random(6)),
        source: source.id,
        files,
        nowMs: clock.now(),
      };
      try {
        await this.#packQ.push({ request, openedAt, bytes });
      } catch (e) {
        this.#budget.release(bytes);
        throw e;
      }
    };
    const stopTimer = () => {
      age.cancel?.abort();
      age.timer = age.cancel = null;
    };
    try {
      for (;;) {
        const next = await this.#planQ.pop(age.timer?.signal);
        if (next === undefined) break;
        if (next === TIMED_OUT || next === "flush") {
          const b = bundler.flush();
          stopTimer();
          if (b) await ship(b.items, b.openedAt);
        } else {
          const file: PackFile = {
            row: next,
            name: safeEntryName(next.key, next.domain === null ? {} : { domain: next.domain }),
          };
          const closed = bundler.add(file, tarFootprint(next), clock.now());
          if (closed.some((b) => b.reason !== "large")) stopTimer();
          for (const b of closed) await ship(b.items, b.openedAt);
          if (bundler.count > 0 && age.timer === null) {
            // A bundle opened: arm its max-age timer.
            stopTimer();
            const timer = age.timer = new AbortController();
            age.cancel = new AbortController();
            const wait = Math.max(0, (bundler.deadline() ?? clock.now()) - clock.now());
            clock.sleep(wait, age.cancel.signal).then(() => timer.abort(), () => {});
          }
        }
        this.#bundleFiles = bundler.count;
      }
      const last = bundler.flush();
      this.#bundleFiles = 0;
      if (last) await ship(last.items, last.openedAt);
    } finally {
      stopTimer();
      this.#packQ.close();
    }
  }

  // -------------------------------------------------------------------------
  // Pack: read the bundle's files into one finished archive (in worker
  // threads for a directory source); files that cannot be read are settled.

  async #packLoop(): Promise<void> {
    for (;;) {
      const job = await this.#packQ.pop();
      if (job === undefined || job === TIMED_OUT) return;
      let packed: PackedArchive;
      const t0 = this.#d.clock.now();
      try {
        packed = await this.#d.packer.pack(job.request, { signal: this.#hard.signal });
        this.#metrics.timing("coldpack.backup.pack_seconds", (this.#d.clock.now() - t0) / 1000);
      } catch (e) {
        this.#budget.release(job.bytes);
        if (this.#hard.signal.aborted) {
          this.#settle(job.request.files.map((f) => f.row.id));
          return;
        }
        await this.#failFiles("fetch", job.request.files, e);
        if (this.#once) throw e;
        continue;
      }
      try {
        await this.#settleOutcomes(job.request.files, packed.outcomes);
      } catch (e) {
        await packed.release();
        this.#budget.release(job.bytes);
        throw e;
      }
      this.#counts.fetchedFiles += packed.members.length;
      this.#counts.fetchedBytes += packed.dataBytes;
      this.#metrics.count("coldpack.backup.files_fetched", packed.members.length);
      this.#metrics.count("coldpack.backup.bytes_fetched", packed.dataBytes);
      if (packed.members.length === 0) {
        await packed.release();
        this.#budget.release(job.bytes);
        continue;
      }
      try {
        await this.#uploadQ.push({ packed, job });
      } catch {
        await packed.release();
        this.#budget.release(job.bytes);
        this.#settle(packed.members.map((m) => m.fileId));
        return;
      }
    }
  }

  /** Records what became of the files left out of an archive. */
  async #settleOutcomes(files: readonly PackFile[], outcomes: readonly PackOutcome[]) {
    if (outcomes.length === 0) return;
    const { catalog, clock, source } = this.#d;
    const rows = new Map(files.map((f) => [f.row.id, f.row]));
    const now = clock.now();
    try {
      for (const o of outcomes) {
        const row = rows.get(o.fileId)!;
        if (o.kind !== "failed") {
          const reason = o.kind === "vanished"
            ? `deleted at the source before it could be read: ${o.message}`
            : `changed at the source while being read (the new version is backed up instead): ${o.message}`;
          await catalog.markVanished([row.id], reason, now);
          this.#counts.vanished++;
          this.#metrics.count("coldpack.backup.files_vanished");
          if (o.kind === "changed") this.#rediscover = true;
          continue;
        }
        const attempts = row.attempts + 1;
        const retryAt = o.retryable && attempts < this.#maxAttempts
          ? now + this.#backoff(attempts)
          : null;
        await catalog.recordFailure({
          stage: "fetch",
          code: o.code,
          message: o.message,
          source: source.id,
          fileId: row.id,
          key: row.key,
          nowMs: now,
          retryAt,
        });
        if (retryAt === null) {
          this.#failedFiles++;
          this.#metrics.count("coldpack.backup.files_failed_for_good");
        }
        this.#metrics.count("coldpack.backup.files_failed.fetch");
        this.#countFailure("fetch");
        this.#progress.note(
          `Cannot read ${JSON.stringify(row.key)} (${o.code}): ${o.message}` +
            (retryAt === null ? "" : `; retry ${attempts + 1} of ${this.#maxAttempts} later`),
        );
      }
    } finally {
      this.#settle(outcomes.map((o) => o.fileId));
    }
  }

  /** Every file of a bundle failed at `stage` with `e`: they stay pending, retried later. */
  async #failFiles(stage: Stage, files: readonly PackFile[], e: unknown): Promise<void> {
    const { catalog, clock, source } = this.#d;
    const now = clock.now();
    this.#countFailure(stage);
    this.#metrics.count(`coldpack.backup.files_failed.${stage}`, files.length);
    this.#progress.note(
      `${stage === "fetch" ? "Packing" : "Uploading"} ${files.length} files failed ` +
        `(${errorCode(e)}): ${errorMessage(e)}; they will be retried`,
    );
    try {
      for (const { row } of files) {
        await catalog.recordFailure({
          stage,
          code: errorCode(e),
          message: errorMessage(e),
          source: source.id,
          fileId: row.id,
          key: row.key,
          nowMs: now,
          retryAt: now + this.#backoff(row.attempts + 1),
        });
      }
    } finally {
      this.#settle(files.map((f) => f.row.id));
    }
  }

  // -------------------------------------------------------------------------
  // Upload + commit

  async #uploadLoop(): Promise<void> {
    for (;;) {
      const next = await this.#uploadQ.pop();
      if (next === undefined || next === TIMED_OUT) return;
      try {
        await this.#upload(next);
      } finally {
        await next.packed.release();
        this.#budget.release(next.job.bytes);
        this.#settle(next.packed.members.map((m) => m.fileId));
      }
    }
  }

  async #upload({ packed, job }: UploadJob): Promise<void> {
    const { store, clock } = this.#d;
    let lastError: unknown;
    for (let attempt = 1; attempt <= this.#uploadAttempts; attempt++) {
      if (this.#hard.signal.aborted) return;
      const t0 = clock.now();
      try {
        const result = await store.put({
          archiveId: packed.id,
          size: packed.size,
          treeHash: packed.treeHash,
          ...(packed.sha256 === "" ? {} : { sha256: packed.sha256 }),
          description: packed.description,
          body: () => packed.body(),
        }, { signal: this.#hard.signal });
        if (result.size !== packed.size || result.treeHash !== packed.treeHash) {
          // The store holds something else than we sent: never point files at it.
          await store.delete(result.remoteId).catch((e) =>
            this.#progress.note(
              `Cannot delete mismatched archive ${result.remoteId} (fsck will list it): ${
                errorMessage(e)
              }`,
            )
          );
          throw new ArchiveMismatchError(
            `Archive ${packed.id} mismatch: sent ${packed.size} bytes with tree hash ` +
              `${packed.treeHash}, store has ${result.size} bytes with tree hash ${result.treeHash}`,
          );
        }
        this.#metrics.timing("coldpack.backup.upload_seconds", (clock.now() - t0) / 1000);
        const row: ArchiveRow = {
          id: packed.id,
          store: store.location,
          remoteId: result.remoteId,
          size: packed.size,
          treeHash: packed.treeHash,
          fileCount: packed.members.length,
          dataBytes: packed.dataBytes,
          description: packed.description,
          createdAt: job.openedAt,
          committedAt: clock.now(),
        };
        await this.#commit(row, packed.members, job.request.files);
        return;
      } catch (e) {
        if (this.#hard.signal.aborted) return;
        lastError = e;
        const retryable = isRetryable(e) || e instanceof ArchiveMismatchError;
        this.#progress.note(
          `Upload of archive ${packed.id} (${packed.members.length} files) failed (attempt ` +
            `${attempt} of ${this.#uploadAttempts}, ${errorCode(e)}): ${errorMessage(e)}`,
        );
        this.#countFailure("upload");
        if (!retryable) break;
        await clock.sleep(this.#backoff(attempt), this.#hard.signal).catch(() => {});
      }
    }
    // Out of attempts: the files stay pending and come back after a delay.
    const inArchive = new Set(packed.members.map((m) => m.fileId));
    const now = clock.now();
    this.#metrics.count("coldpack.backup.files_failed.upload", inArchive.size);
    for (const { row } of job.request.files) {
      if (!inArchive.has(row.id)) continue;
      await this.#d.catalog.recordFailure({
        stage: "upload",
        code: errorCode(lastError),
        message: errorMessage(lastError),
        source: this.#d.source.id,
        fileId: row.id,
        key: row.key,
        nowMs: now,
        retryAt: now + this.#backoff(row.attempts + 1),
      });
    }
    // A store that refuses a well-formed archive for good (no vault, access
    // denied) refuses the next one too: stop and say why, daemon or not.
    if (this.#once || !isRetryable(lastError)) throw lastError;
  }

  async #commit(
    row: ArchiveRow,
    members: readonly ArchiveMember[],
    files: readonly PackFile[],
  ): Promise<void> {
    const { catalog, clock } = this.#d;
    for (let attempt = 1;; attempt++) {
      try {
        const { skipped } = await catalog.commitArchive(row, members);
        const skippedSet = new Set(skipped);
        let count = 0;
        let bytes = 0;
        const now = clock.now();
        for (const m of members) {
          if (skippedSet.has(m.fileId)) continue;
          count++;
          bytes += m.length;
        }
        this.#counts.archives++;
        this.#counts.archivedFiles += count;
        this.#counts.archivedBytes += bytes;
        this.#metrics.count("coldpack.backup.archives_uploaded");
        this.#metrics.count("coldpack.backup.files_archived", count);
        this.#metrics.count("coldpack.backup.bytes_archived", bytes);
        this.#metrics.count("coldpack.backup.bytes_stored", row.size);
        const inArchive = new Set(members.map((m) => m.fileId));
        for (const f of files) {
          if (!inArchive.has(f.row.id) || skippedSet.has(f.row.id)) continue;
          this.#metrics.timing(
            "coldpack.backup.file_to_commit_seconds",
            Math.max(0, now - f.row.mtimeMs) / 1000,
          );
          this.#metrics.timing(
            "coldpack.backup.discovery_to_commit_seconds",
            Math.max(0, now - f.row.discoveredAt) / 1000,
          );
        }
        this.#report();
        return;
      } catch (e) {
        if (!isRetryable(e) || attempt >= 5) {
          // The archive is stored but not committed: an orphan for fsck. Files stay pending.
          await catalog.recordFailure({
            stage: "commit",
            code: errorCode(e),
            message: `archive ${row.id} stored as ${row.remoteId} but not committed: ${
              errorMessage(e)
            }`,
            source: this.#d.source.id,
            archiveId: row.id,
            nowMs: clock.now(),
            retryAt: null,
          }).catch(() => {});
          throw e;
        }
        await clock.sleep(this.#backoff(attempt), this.#hard.signal);
      }
    }
  }

  #snapshot(): ProgressSnapshot {
    return {
      ...this.#counts,
      outstanding: this.#inFlight.size,
    };
  }

  #report(): void {
    this.#progress.update(this.#snapshot());
  }
}

/** Bytes a file takes in the tar: header(s) plus padded data (pax headers estimated). */
function tarFootprint(row: FileRow): number {
  const long = row.key.length > 100 ? 1024 + row.key.length : 0;
  return 512 + long + Math.ceil(row.length / 512) * 512;
}

/** An error code as one part of a metric name: `ThrottlingException` -> `throttlingexception`. */
function metricPart(code: string): string {
  return code.toLowerCase().replace(/[^a-z0-9_-]/g, "_");
}

/** Store and catalog calls that were retried, by operation and code. */
export interface RetryCounts {
  /** `put ThrottlingException` -> 3 */
  readonly byKind: Map<string, number>;
  total: number;
}

/**
 * Hooks for {@linkcode withRetryStore} and {@linkcode withRetryCatalog}
 * that keep a record of every retry: counted (summary, metrics), told to
 * the operator, and, for store calls, recorded in the failures table as a
 * resolved failure (a fault the run got past is a fact to keep, not a
 * problem to fix). Catalog retries are not written to the catalog that just
 * failed.
 */
export function retryRecorder(deps: {
  readonly catalog: Catalog;
  readonly source: SourceId;
  readonly clock: Clock;
  readonly progress?: Progress;
  readonly metrics?: Metrics;
}): {
  readonly counts: RetryCounts;
  onStoreRetry(op: string, e: unknown, attempt: number, delayMs: number): void;
  onCatalogRetry(op: string, e: unknown): void;
} {
  const counts: RetryCounts = { byKind: new Map(), total: 0 };
  const metrics = deps.metrics ?? noMetrics;
  const progress = deps.progress ?? noProgress;
  const count = (kind: string) => {
    counts.byKind.set(kind, (counts.byKind.get(kind) ?? 0) + 1);
    counts.total++;
  };
  return {
    counts,
    onStoreRetry(op, e, attempt, delayMs) {
      const code = errorCode(e);
      count(`store ${op} ${code}`);
      metrics.count(`coldpack.backup.store_retries.${metricPart(code)}`);
      progress.note(
        `Store ${op} failed (${errorMessage(e)}); try ${attempt + 1} in ${
          (delayMs / 1000).toFixed(1)
        } s`,
      );
      deps.catalog.recordFailure({
        stage: op === "put" ? "upload" : "commit",
        code,
        message: `retried: ${errorMessage(e)}`,
        source: deps.source,
        nowMs: deps.clock.now(),
        retryAt: null,
        resolved: true,
      }).catch(() => {});
    },
    onCatalogRetry(op, e) {
      const code = errorCode(e);
      count(`catalog ${op} ${code}`);
      metrics.count(`coldpack.backup.catalog_retries.${metricPart(code)}`);
      progress.note(`Catalog ${op} failed (${errorMessage(e)}); trying again`);
    },
  };
}
