/**
 * What the backfill benchmarks (bench_stores.ts, bench_sources.ts) share: a
 * test double started in its own process, a local vault to back up into,
 * and one timed backfill through the whole pipeline.
 *
 * @example
 * ```ts
 * const s3 = await serveDouble<S3Connection>(["s3", "--bucket", "bench"]);
 * try {
 *   const source = await DirectorySource.open(corpus);
 *   try {
 *     const mbps = await backfill(source, localVault(work), { work, workers: 1 });
 *   } finally {
 *     await source.close();
 *   }
 * } finally {
 *   await s3.close();
 * }
 * ```
 * @module
 */

import { randomBytes, systemClock } from "../adapters/clock.ts";
import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
import { openPacker } from "../adapters/registry.ts";
import { LocalVault } from "../adapters/store/local_vault.ts";
import { type BackupDeps, runBackup } from "../core/backup.ts";
import type { ColdStore, Source } from "../core/ports.ts";

/** A double running in its own process. */
export interface ServedDouble<Info> {
  /** The JSON line it printed: where it listens and how to sign in (see tests/doubles/serve.ts). */
  readonly info: Info;
  /** Closes its stdin, which stops it, and waits for it to exit. */
  close(): Promise<void>;
}

/** Options for {@linkcode serveDouble}. */
export interface ServeOptions {
  /** V8's old-space limit for the double's process, in MB; default V8's own. */
  readonly maxHeapMb?: number;
}

/**
 * Starts `tests/doubles/serve.ts` with `args` as its own process, as a
 * remote service would run, and reads where it listens. `Info` is the shape
 * of the line that double prints; it is taken on trust.
 *
 * @param args the double and its options, e.g. `["s3", "--bucket", "bench"]`
 */
export async function serveDouble<Info>(
  args: string[],
  options: ServeOptions = {},
): Promise<ServedDouble<Info>> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      ...(options.maxHeapMb === undefined
        ? []
        : [`--v8-flags=--max-old-space-size=${options.maxHeapMb}`]),
      new URL("../tests/doubles/serve.ts", import.meta.url).pathname,
      ...args,
    ],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the ${args[0]} double exited before saying where it listens`);
    text += value;
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  return {
    info: JSON.parse(text.slice(0, text.indexOf("\n"))),
    close: async () => {
      await child.stdin.close();
      await child.status;
    },
  };
}

/** Somewhere to back up into, opened afresh for each backfill. */
export interface BackfillTarget {
  /** Shown in the benchmark's table. */
  readonly name: string;
  /** Opens the store; `close` closes it and removes what it made. */
  open(): Promise<{ store: ColdStore; close: () => Promise<void> }>;
}

/** A target that is a fresh local vault directory under `work`, removed after each backfill. */
export function localVault(work: string, name = "local vault"): BackfillTarget {
  return {
    name,
    open: async () => {
      const dir = await Deno.makeTempDir({ dir: work, prefix: "vault_" });
      const store = await LocalVault.open(dir);
      return {
        store,
        close: async () => {
          await store.close();
          await Deno.remove(dir, { recursive: true });
        },
      };
    },
  };
}

/**
 * The pipeline's dependencies with the system clock and real random bytes,
 * as cmd/backup.ts runs it.
 */
export function liveDeps(parts: Omit<BackupDeps, "clock" | "random">): BackupDeps {
  return { ...parts, clock: systemClock, random: randomBytes };
}

/** Options for {@linkcode backfill}. */
export interface BackfillOptions {
  /** The directory the run's state (SQLite catalog, spool) is made in, and removed from. */
  readonly work: string;
  /** Pack workers, and archives packed at once. */
  readonly workers: number;
}

/**
 * Backs up everything `source` holds into a fresh store of `target` in one
 * `--once` run (SQLite catalog, the packer the registry picks for the
 * source); returns the MB/s archived. Throws when the run stopped, or a
 * file failed or was left for a later retry: the figure would be wrong.
 */
export async function backfill(
  source: Source,
  target: BackfillTarget,
  options: BackfillOptions,
): Promise<number> {
  const state = await Deno.makeTempDir({ dir: options.work, prefix: "state_" });
  const { store, close } = await target.open();
  const catalog = await SqliteCatalog.open(`${state}/catalog.db`);
  const packer = await openPacker(source, `${state}/spool`, { workers: options.workers });
  try {
    const t0 = performance.now();
    const s = await runBackup(liveDeps({ source, packer, store, catalog }), {
      once: true,
      packers: options.workers,
    });
    const seconds = (performance.now() - t0) / 1000;
    if (s.fatal !== null || s.failedFiles > 0 || s.retryLater > 0) {
      throw new Error(
        `${source.id} -> ${target.name}: backfill failed: ${
          s.fatal ?? `${s.failedFiles + s.retryLater} files`
        }`,
      );
    }
    return s.archivedBytes / 1e6 / seconds;
  } finally {
    await packer.close();
    await catalog.close();
    await close();
    await Deno.remove(state, { recursive: true });
  }
}
