/**
 * coldpack-backup: finds new files in the source, bundles them into tar
 * archives, puts them in the cold store and records them in the catalog.
 *
 * Wiring only: flags and config in, adapters built, core's runBackup called,
 * errors mapped to exit codes.
 * @module
 */

import { parseCommandLine, usage as cliUsage } from "../adapters/cli.ts";
import { openCatalog, openPacker, openSource, openStore } from "../adapters/registry.ts";
import { randomBytes, systemClock } from "../adapters/clock.ts";
import { collectInputs } from "../adapters/config_file.ts";
import { TerminalProgress } from "../adapters/progress/terminal.ts";
import { IstatdClient } from "../adapters/metrics/istatd_client.ts";
import { MetricsRegistry } from "../adapters/metrics/registry.ts";
import { type MetricsServer, serveMetrics } from "../adapters/metrics/http.ts";
import { teeMetrics } from "../adapters/metrics/tee.ts";
import { type BackupSummary, retryRecorder, runBackup } from "../core/backup.ts";
import { withRetryCatalog, withRetryStore } from "../core/retry.ts";
import {
  BACKUP_SETTINGS,
  type BackupConfig,
  type ConfigInputs,
  resolveBackupConfig,
  resolveCatalogUrl,
  resolveMysqlPassword,
} from "../core/config.ts";
import { ConfigError, errorMessage } from "../core/errors.ts";
import type {
  Catalog,
  CatalogStatus,
  FailureRow,
  Metrics,
  Progress,
  ProgressSnapshot,
} from "../core/ports.ts";
import { formatBytes } from "../core/size.ts";

/** Exit codes, documented in --help and the README. */
export const EXIT = {
  ok: 0,
  someFailed: 1,
  usage: 2,
  fatal: 3,
  interrupted: 130,
} as const;

const HELP = `coldpack-backup: back up a file store into cold-storage tar archives

Usage:
  coldpack-backup --source SOURCE [options]         follow SOURCE as a daemon until SIGTERM
  coldpack-backup --source SOURCE --once [options]  back up what is there now, then exit
  coldpack-backup status [--json] [options]         what the catalog holds

SOURCE is a directory (/srv/uploads), a MogileFS domain
(mogilefs://tracker1:7001,tracker2:7001/ugc; no domain: every domain) or an
S3 bucket and prefix (s3://bucket/uploads/; endpoint, region and credentials
from the AWS SDK's environment, profile or instance role).

With only --source, the catalog and the vault go into the state directory
(default ~/.local/state/coldpack): STATE_DIR/catalog.db and STATE_DIR/vault/.

Options (flag > environment variable > config file > default):
${
  Object.values(BACKUP_SETTINGS).map((s) =>
    `  --${s.flag.padEnd(18)} ${s.help}\n  ${"".padEnd(20)} env ${s.env}, config key ${s.file}`
  ).join("\n")
}
  --config FILE        TOML or JSON config file (env COLDPACK_CONFIG)
  --once               back up everything present, then exit (for cron)
  --json               status: print JSON
  -h, --help           this help

Exit codes:
  0    done: every file found is archived (or vanished or skipped, as reported)
  1    the run finished, but some files failed or wait for a retry (see status)
  2    bad usage or configuration; the message names the flag, variable or key
  3    stopped on an error it could not get past (store, catalog or source);
       nothing is marked archived that is not, and the next run resumes
  130  interrupted twice (SIGINT); in-flight files stay pending
`;

const FLAG_OPTIONS = {
  ...Object.fromEntries(
    Object.values(BACKUP_SETTINGS).map((s) => [s.flag, { type: "string" as const }]),
  ),
  config: { type: "string" as const },
  once: { type: "boolean" as const },
  json: { type: "boolean" as const },
  help: { type: "boolean" as const, short: "h" },
};

async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine("coldpack-backup", args, FLAG_OPTIONS, HELP);
  if (parsed.exit !== null) return parsed.exit;
  const { values, positionals } = parsed;
  const command = positionals[0] ?? "run";
  if (!["run", "status"].includes(command) || positionals.length > 1) {
    return usage(`unknown command "${positionals.join(" ")}" (expected none or "status")`);
  }
  try {
    const inputs = await collectInputs(values);
    if (command === "status") return await status(inputs, values.json === true);
    return await backup(inputs, values.once === true);
  } catch (e) {
    if (e instanceof ConfigError) return usage(e.message);
    console.error(`coldpack-backup: ${errorMessage(e)}`);
    return EXIT.fatal;
  }
}

function usage(message: string): number {
  return cliUsage("coldpack-backup", message);
}

async function backup(inputs: ConfigInputs, once: boolean): Promise<number> {
  const config = resolveBackupConfig(inputs);
  // Metrics: to the local agent over UDP, and/or on this daemon's own /metrics.
  const sinks: Metrics[] = [];
  const agent = config.metricsAgent === null ? null : new IstatdClient({
    ...config.metricsAgent,
    log: (line) => console.error(`coldpack-backup: ${line}`),
  });
  if (agent !== null) sinks.push(agent);
  const registry = config.metricsPort === null ? null : new MetricsRegistry();
  if (registry !== null) sinks.push(registry);
  const health: { state: string; snapshot: ProgressSnapshot | null } = {
    state: "starting",
    snapshot: null,
  };
  const startedAt = Date.now();
  let server: MetricsServer | null = null;
  try {
    if (registry !== null) {
      server = await serveMetrics({
        port: config.metricsPort!,
        render: () => registry.render(),
        health: () => ({
          status: health.state,
          program: "coldpack-backup",
          pid: Deno.pid,
          source: config.source,
          once,
          uptimeSeconds: (Date.now() - startedAt) / 1000,
          progress: health.snapshot,
          ...(agent === null ? {} : { metricsAgent: { to: agent.target, ...agent.stats() } }),
        }),
      });
    }
    return await run(inputs, config, once, {
      metrics: teeMetrics(...sinks),
      health,
      where: [
        ...(agent === null ? [] : [`${agent.target} (UDP)`]),
        ...(server === null ? [] : [`http://127.0.0.1:${server.port}/metrics`]),
      ],
    });
  } finally {
    await server?.close();
    // Sends what is batched: a --once run's last counters reach the agent.
    await agent?.close();
  }
}

async function run(
  inputs: ConfigInputs,
  config: BackupConfig,
  once: boolean,
  observe: {
    readonly metrics: Metrics;
    readonly health: { state: string; snapshot: ProgressSnapshot | null };
    /** Where metrics go, for the start-up lines. */
    readonly where: readonly string[];
  },
): Promise<number> {
  const { metrics, health } = observe;
  const source = await openSource(config.source);
  const rawStore = await openStore(config.store);
  const rawCatalog = await openCatalog(config.catalog, {
    migrate: config.autoMigrate,
    password: resolveMysqlPassword(inputs),
  });
  const terminal = new TerminalProgress();
  // The last snapshot also answers /health.
  const progress: Progress = {
    update(s) {
      health.snapshot = s;
      terminal.update(s);
    },
    note: (m) => terminal.note(m),
  };
  // Retries, timeouts and their record wrap the ports; the adapters make one try.
  const retries = retryRecorder({
    catalog: rawCatalog,
    source: source.id,
    clock: systemClock,
    progress,
    metrics,
  });
  const policy = { attempts: config.storeAttempts, baseMs: 500, maxMs: 60_000, clock: systemClock };
  const store = withRetryStore(rawStore, {
    ...policy,
    putTimeoutMs: config.storeTimeoutMs,
    onStoreRetry: retries.onStoreRetry,
  });
  const catalog = withRetryCatalog(rawCatalog, {
    ...policy,
    baseMs: 250,
    maxMs: 15_000,
    onCatalogRetry: retries.onCatalogRetry,
  });
  // The main thread keeps the catalog and the store busy: leave it a core.
  const workers = config.workers ??
    Math.max(1, Math.min(8, (navigator.hardwareConcurrency || 2) - 1));
  const packer = await openPacker(source, `${config.stateDir}/spool`, {
    workers,
    readAhead: config.fetchers,
  });
  console.error(
    `coldpack-backup: ${once ? "backing up" : "following"} ${config.source}\n` +
      `  archives -> ${store.location}\n  catalog  -> ${config.catalog}` +
      (observe.where.length === 0 ? "" : `\n  metrics  -> ${observe.where.join(", ")}`),
  );
  health.state = "running";

  const stop = new AbortController();
  let interrupts = 0;
  const onSignal = (name: string) => () => {
    interrupts++;
    if (interrupts > 1 && name === "SIGINT") {
      console.error(
        "coldpack-backup: interrupted again, exiting now; in-flight files stay pending",
      );
      Deno.exit(EXIT.interrupted);
    }
    console.error(`coldpack-backup: ${name}: finishing in-flight archives, then exiting`);
    health.state = "stopping";
    stop.abort();
  };
  const handlers = { SIGTERM: onSignal("SIGTERM"), SIGINT: onSignal("SIGINT") };
  for (const [sig, h] of Object.entries(handlers)) Deno.addSignalListener(sig as Deno.Signal, h);

  let summary: BackupSummary;
  try {
    summary = await runBackup({
      source,
      packer,
      store,
      catalog,
      clock: systemClock,
      random: randomBytes,
      progress,
      metrics,
    }, {
      once,
      targetSize: config.targetSize,
      maxAgeMs: config.maxAgeMs,
      packers: workers,
      uploaders: config.uploaders,
      bufferBytes: config.bufferBytes,
      ...(config.rescanMs === null ? {} : { rescanMs: config.rescanMs }),
      ...(config.pollMs === null ? {} : { pollMs: config.pollMs }),
      shutdownTimeoutMs: config.shutdownTimeoutMs,
      owner: config.owner ?? `backup@${Deno.hostname()}`,
      leaseTtlMs: config.leaseTtlMs,
      signal: stop.signal,
    });
  } finally {
    for (const [sig, h] of Object.entries(handlers)) {
      Deno.removeSignalListener(sig as Deno.Signal, h);
    }
    health.state = "stopping";
    terminal.done();
    await packer.close();
    await catalog.close();
    await store.close();
    await source.close();
  }
  console.log(summaryLine(summary));
  if (retries.counts.total > 0) {
    const kinds = [...retries.counts.byKind].map(([k, n]) => `${k} x${n}`).join(", ");
    console.log(`coldpack-backup: retried ${retries.counts.total} calls: ${kinds}`);
  }
  if (summary.fatal !== null) {
    console.error(`coldpack-backup: stopped: ${summary.fatal}`);
    return EXIT.fatal;
  }
  // Outcomes decide, not attempts: an upload that succeeded on retry is no failure.
  return summary.failedFiles > 0 || summary.retryLater > 0 ? EXIT.someFailed : EXIT.ok;
}

function summaryLine(s: BackupSummary): string {
  const parts = [
    `${s.archivedFiles} files`,
    `${formatBytes(s.archivedBytes)}`,
    `${s.archives} archives`,
    `${s.seconds.toFixed(1)} s`,
    `${s.failedFiles} failed`,
  ];
  if (s.failures > s.failedFiles) parts.push(`${s.failures - s.failedFiles} errors retried`);
  if (s.vanished > 0) parts.push(`${s.vanished} vanished`);
  if (s.skipped > 0) parts.push(`${s.skipped} skipped`);
  if (s.retryLater > 0) parts.push(`${s.retryLater} to retry later`);
  return `coldpack-backup: archived ${parts.join(", ")}`;
}

async function status(inputs: ConfigInputs, json: boolean): Promise<number> {
  const catalogUrl = resolveCatalogUrl(inputs);
  // Asking must not create: a missing SQLite catalog means nothing was backed up yet.
  const sqlitePath = catalogUrl.startsWith("sqlite://")
    ? decodeURIComponent(catalogUrl.slice("sqlite://".length))
    : null;
  if (sqlitePath !== null && !(await exists(sqlitePath))) {
    if (json) console.log(JSON.stringify({ catalog: catalogUrl, exists: false }));
    else {console.log(`catalog   ${catalogUrl}
          (none yet: nothing has been backed up)`);}
    return EXIT.ok;
  }
  const catalog: Catalog = await openCatalog(catalogUrl, {
    migrate: false,
    password: resolveMysqlPassword(inputs),
  });
  try {
    const s = await catalog.status();
    const failures = await catalog.recentFailures(10);
    const now = Date.now();
    if (json) {
      console.log(JSON.stringify(
        {
          catalog: catalogUrl,
          ...s,
          oldestPendingAgeSeconds: s.oldestPendingAt === null
            ? null
            : Math.max(0, (now - s.oldestPendingAt) / 1000),
          recentFailures: failures,
        },
        null,
        2,
      ));
    } else {
      console.log(formatStatus(catalogUrl, s, failures, now));
    }
  } finally {
    await catalog.close();
  }
  return EXIT.ok;
}

function formatStatus(url: string, s: CatalogStatus, failures: FailureRow[], now: number): string {
  const f = s.files;
  const lines = [
    `catalog   ${url}`,
    `files     ${f.archived} archived, ${f.pending} pending, ${f.failed} failed, ` +
    `${f.vanished} vanished, ${f.superseded} superseded`,
    `archives  ${s.archives} (${formatBytes(s.storedBytes)} stored, ` +
    `${formatBytes(s.archivedBytes)} of files)`,
    `pending   ${formatBytes(s.pendingBytes)}` +
    (s.oldestPendingAt === null
      ? ""
      : `; oldest unarchived file waiting ${Math.round((now - s.oldestPendingAt) / 1000)} s`),
    `failures  ${s.openFailures} open`,
  ];
  for (const x of failures) {
    const what = x.key !== null ? JSON.stringify(x.key) : x.archiveId ?? "";
    lines.push(
      `  ${new Date(x.lastAt).toISOString()} ${x.stage} ${x.code} ${what}: ${x.message}` +
        (x.attempts > 1 ? ` (${x.attempts} times)` : ""),
    );
  }
  return lines.join("\n");
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
