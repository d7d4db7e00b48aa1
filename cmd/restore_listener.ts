/**
 * coldpack-restore-listener: the daemon that completes restores when their
 * retrievals finish.
 *
 * Wiring only: flags and config in, catalog, store, queue and destinations
 * opened through the registry, the loop of core/restore_listener.ts run
 * until SIGTERM or SIGINT, errors mapped to exit codes.
 * @module
 */

import {
  exitForError,
  listenForStop,
  parseCommandLine,
  usage as cliUsage,
} from "../adapters/cli.ts";
import { collectInputs } from "../adapters/config_file.ts";
import { openCatalogAndStore, openQueue } from "../adapters/registry.ts";
import { DestResolver } from "../adapters/restore_dest.ts";
import { randomBytes, systemClock } from "../adapters/clock.ts";
import { IstatdClient } from "../adapters/metrics/istatd_client.ts";
import { MetricsRegistry } from "../adapters/metrics/registry.ts";
import { type MetricsServer, serveMetrics } from "../adapters/metrics/http.ts";
import { teeMetrics } from "../adapters/metrics/tee.ts";
import { LISTENER_SETTINGS, resolveListenerConfig, resolveMysqlPassword } from "../core/config.ts";
import type { Metrics, NotificationQueue } from "../core/ports.ts";
import { type ListenerStats, runListener } from "../core/restore_listener.ts";
import { parseStoreUrl } from "../core/store_url.ts";

/** Exit codes, documented in --help and the README. */
export const EXIT = {
  ok: 0,
  usage: 2,
  fatal: 3,
} as const;

const HELP = `coldpack-restore-listener: complete restores when their retrievals finish

Usage:
  coldpack-restore-listener [options]

Restores are requested with coldpack-restore (without --wait); this daemon
writes them once the store has the bytes ready, and marks each done or
failed in the catalog (see coldpack-restore status).

It learns that a retrieval finished from an SQS queue (--queue), fed by the
Glacier job's SNS topic (the store URL's ?sns-topic=) or by the S3 bucket's
s3:ObjectRestore:Completed event notification; or, without a queue, by
asking the store every --poll. Either way it asks the store before reading:
a notice only says where to look. Notices that name nothing coldpack started
are logged and deleted. A notice is deleted only after its restores are
done; a retrieval that expired unused is started again; a restore still
pending after --stuck-after is reported.

Local DESTs must lie inside --roots; the daemon refuses any other path.

Options (the catalog, store and source are the backup's: same flags, env, config):
  --queue URL          SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)
  --topic ARN          accept notices from this SNS topic only (default: the store's
                       ?sns-topic=, else any)
  --roots DIR[,DIR]    directories local DESTs may be written in (default: none)
  --poll DURATION      look at every pending restore this often (default 1m; 15m with --queue)
  --stuck-after DURATION  report a restore pending this long (default 24h)
  --visibility DURATION   a notice stays hidden this long while its restores are
                       written (default 5m)
  --metrics-agent HOST:PORT  send counters (coldpack.restore_listener.*) to the metrics
                       agent over UDP (default: none)
  --metrics-port PORT  serve /metrics and /health on 127.0.0.1:PORT (default: none)
  --once               one pass over the pending restores (asking the store), then exit
  --store URL, --catalog URL, --source URL, --state-dir DIR, --config FILE
  -h, --help           this help

Each setting also comes from the environment (COLDPACK_RESTORE_QUEUE,
COLDPACK_RESTORE_TOPIC, COLDPACK_RESTORE_ROOTS, COLDPACK_RESTORE_POLL,
COLDPACK_RESTORE_STUCK_AFTER, COLDPACK_RESTORE_VISIBILITY, COLDPACK_METRICS_AGENT,
COLDPACK_METRICS_PORT) or the config file (restore_queue, restore_topic,
restore_roots, restore_poll, ..., metrics_agent, metrics_port).

Signals: SIGTERM or SIGINT stops it; a write in progress is abandoned whole
(nothing partial is left at the destination) and its notice comes again.

Exit codes:
  0    stopped by a signal, or --once finished
  2    bad usage or configuration; the message names the flag
  3    the catalog, store or queue could not be used; the message says why
`;

const FLAG_OPTIONS = {
  ...Object.fromEntries(
    [
      "store",
      "catalog",
      "source",
      "state-dir",
      "config",
      ...Object.values(LISTENER_SETTINGS)
        .map((s) => s.flag),
    ].map((f) => [f, { type: "string" as const }]),
  ),
  once: { type: "boolean" as const },
  help: { type: "boolean" as const, short: "h" },
};

const NAME = "coldpack-restore-listener";

function log(line: string): void {
  console.error(`${NAME}: ${line}`);
}

async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(NAME, args, FLAG_OPTIONS, HELP);
  if (parsed.exit !== null) return parsed.exit;
  const { values, positionals } = parsed;
  if (positionals.length > 0) return cliUsage(NAME, `unexpected argument "${positionals[0]}"`);
  const stop = listenForStop(log);
  let queue: NotificationQueue | null = null;
  let agent: IstatdClient | null = null;
  let server: MetricsServer | null = null;
  try {
    const inputs = await collectInputs(values);
    const config = resolveListenerConfig(inputs);
    // Metrics: to the local agent over UDP, and/or on this daemon's own /metrics.
    const sinks: Metrics[] = [];
    if (config.metricsAgent !== null) {
      agent = new IstatdClient({ ...config.metricsAgent, log });
      sinks.push(agent);
    }
    if (config.metricsPort !== null) {
      const registry = new MetricsRegistry();
      sinks.push(registry);
      const startedAt = Date.now();
      const client = agent;
      server = await serveMetrics({
        port: config.metricsPort,
        render: () => registry.render(),
        health: () => ({
          status: stop.signal.aborted ? "stopping" : "running",
          program: NAME,
          pid: Deno.pid,
          uptimeSeconds: (Date.now() - startedAt) / 1000,
          ...(client === null ? {} : { metricsAgent: { to: client.target, ...client.stats() } }),
        }),
      });
      log(`metrics on http://127.0.0.1:${server.port}/metrics`);
    }
    const metrics = teeMetrics(...sinks);
    const storeSpec = parseStoreUrl(config.store);
    const topic = config.topic ?? (storeSpec.kind === "glacier" ? storeSpec.snsTopic : null);
    const { catalog, store } = await openCatalogAndStore(config, resolveMysqlPassword(inputs));
    queue = config.queue === null ? null : openQueue(config.queue);
    const resolver = new DestResolver({ source: config.source, roots: config.roots });
    try {
      log(
        `store ${store.location}, ${
          queue === null
            ? `no queue: asking the store every ${config.pollMs / 1000} s`
            : `queue ${queue.location}${topic === null ? "" : ` (topic ${topic})`}, ` +
              `every pending restore looked at every ${config.pollMs / 1000} s`
        }; local roots: ${config.roots.length === 0 ? "none" : config.roots.join(", ")}`,
      );
      const deps = {
        catalog,
        store,
        clock: systemClock,
        random: randomBytes,
        queue,
        log,
        metrics,
      };
      const options = {
        resolve: resolver.resolve.bind(resolver),
        onFinished: (
          r: { id: number; fileId: number; dest: string },
          outcome: { state: "done"; location: string } | { state: "failed"; reason: string },
        ) => {
          log(
            outcome.state === "done"
              ? `restore ${r.id} done: fid:${r.fileId} -> ${outcome.location}`
              : `restore ${r.id} failed: fid:${r.fileId} -> ${r.dest}: ${outcome.reason}`,
          );
        },
        topic,
        pollMs: config.pollMs,
        stuckAfterMs: config.stuckAfterMs,
        visibilityMs: config.visibilityMs,
        signal: stop.signal,
      };
      const once = values.once === true;
      const stats = await runListener(once ? { ...deps, queue: null } : deps, { ...options, once });
      log(`${once ? "one pass done" : "stopped"}; ${summary(stats)}`);
      return EXIT.ok;
    } finally {
      await resolver.close();
      await queue?.close();
      await store.close();
      await catalog.close();
    }
  } catch (e) {
    return exitForError(NAME, e);
  } finally {
    stop.dispose();
    await server?.close();
    // Sends what is batched: the last counters reach the agent.
    await agent?.close();
  }
}

function summary(s: ListenerStats): string {
  return `${s.done} restore(s) done, ${s.failed} failed, ${s.restarted} retrieval(s) restarted, ` +
    `${s.stuck} stuck; notices: ${s.received} received, ${s.deleted} deleted ` +
    `(${s.unknown} unknown, ${s.malformed} malformed, ${s.ignored} ignored)`;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
