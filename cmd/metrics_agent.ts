/**
 * coldpack-metrics-agent: the per-host metrics agent (istatd lines in,
 * 10 s aggregates out to istatd masters, spooled to disk while they are
 * down).
 *
 * Wiring only: flags and config in, adapters/metrics/agent.ts run until
 * SIGTERM or SIGINT, errors mapped to exit codes.
 * @module
 */

import { hostname } from "node:os";
import { parseCommandLine, usage as cliUsage } from "../adapters/cli.ts";
import { collectInputs } from "../adapters/config_file.ts";
import { MetricsAgent } from "../adapters/metrics/agent.ts";
import { AGENT_SETTINGS, resolveAgentConfig } from "../core/agent_config.ts";
import { BACKUP_SETTINGS, FILE_KEYS_OF_OTHER_BINARIES } from "../core/config.ts";
import { ConfigError, errorCode, errorMessage } from "../core/errors.ts";

/** Exit codes, documented in --help and docs/metrics.md. */
export const EXIT = {
  ok: 0,
  usage: 2,
  /** A port in use, a spool that cannot be opened. */
  fatal: 3,
} as const;

const NAME = "coldpack-metrics-agent";

const HELP = `coldpack-metrics-agent: collect this host's counters and forward them to istatd

Usage:
  coldpack-metrics-agent [options]

Programs on this host send istatd lines to the stat port (TCP or UDP):
  name value | name unixtime value | name unixtime sum sumsq min max count
a leading * marks an event counter (summed), #key value is metadata, and
a^b^c counts a sample as a.b and a.c. Malformed lines are counted and skipped.

Samples are aggregated per counter into 10 s buckets (count, sum, sumsq, min,
max) and every --flush written to a spool on disk (fsynced), then sent to
every --forward master as istatd's agents do ("#proto x 1 1", "#hostname H",
then "name time sum sumsq min max count" or "*name time sum"). While a master
is down the spool keeps its lines, up to --spool-max (then the oldest are
dropped, and counted); on reconnect (backoff with jitter, up to 30 s) they are
sent in order. A restart resumes from the spool.

Options:
  --port N             the stat port, TCP and UDP (default 8111)
  --bind ADDR          listen address (default 127.0.0.1: this host only)
  --forward HOST:PORT[,HOST:PORT]   istatd masters (default none: aggregate only)
  --spool DIR          spool directory (default STATE_DIR/metrics-spool)
  --spool-max SIZE     spool bound (default 256MiB)
  --metrics-port N     /metrics (Prometheus text) and /health on 127.0.0.1 (default 8112)
  --flush DURATION     how often aggregates are spooled and sent (default 10s)
  --hostname NAME      announced to masters (default this host's name)
  --state-dir DIR, --config FILE
  -h, --help           this help

Each setting also comes from the environment (COLDPACK_AGENT_PORT,
COLDPACK_AGENT_FORWARD, ...) or the config file (agent_port, agent_forward, ...).

Signals: SIGTERM or SIGINT stops it: input stops, what is aggregated is
spooled, what is spooled is sent, connections are half-closed (at most 10 s).
A SIGKILL loses at most the last --flush interval; the spool is kept.

Exit codes:
  0    stopped by a signal
  2    bad usage or configuration; the message names the flag
  3    a port in use, or the spool cannot be opened; the message says which
`;

const FLAG_OPTIONS = {
  ...Object.fromEntries(
    [...Object.values(AGENT_SETTINGS).map((s) => s.flag), "state-dir", "config"].map((
      f,
    ) => [f, { type: "string" as const }]),
  ),
  help: { type: "boolean" as const, short: "h" },
};

function log(line: string): void {
  console.error(`${NAME}: ${line}`);
}

async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(NAME, args, FLAG_OPTIONS, HELP);
  if (parsed.exit !== null) return parsed.exit;
  const { values, positionals } = parsed;
  if (positionals.length > 0) return cliUsage(NAME, `unexpected argument "${positionals[0]}"`);
  let agent: MetricsAgent;
  try {
    const inputs = await collectInputs(values);
    const config = resolveAgentConfig(inputs, [
      ...Object.values(BACKUP_SETTINGS).map((s) => s.file),
      ...FILE_KEYS_OF_OTHER_BINARIES,
    ]);
    if (config.forward.length > 0) await Deno.mkdir(config.spoolDir, { recursive: true });
    agent = await MetricsAgent.start({
      port: config.port,
      bind: config.bind,
      forward: config.forward,
      spoolDir: config.spoolDir,
      spoolMax: config.spoolMax,
      metricsPort: config.metricsPort,
      flushMs: config.flushMs,
      hostname: config.hostname ?? hostname(),
      log,
    });
    log(
      `stat port ${config.bind}:${agent.tcpPort} (TCP) and :${agent.udpPort} (UDP); ` +
        `${
          config.forward.length === 0
            ? "no masters (aggregating only)"
            : `forwarding to ${config.forward.map((m) => `${m.host}:${m.port}`).join(", ")}` +
              ` (spool ${config.spoolDir}, at most ${config.spoolMax} bytes)`
        }; /metrics and /health on 127.0.0.1:${agent.metricsPort}`,
    );
  } catch (e) {
    if (e instanceof ConfigError) return cliUsage(NAME, e.message);
    const code = errorCode(e);
    log(`cannot start: ${errorMessage(e)}${code === "Error" ? "" : ` [${code}]`}`);
    return EXIT.fatal;
  }
  const signal = await new Promise<string>((resolve) => {
    Deno.addSignalListener("SIGTERM", () => resolve("SIGTERM"));
    Deno.addSignalListener("SIGINT", () => resolve("SIGINT"));
  });
  log(`${signal}: flushing and stopping`);
  await agent.stop();
  const { udp, tcp } = agent.ingest();
  log(
    `stopped; lines received: ${udp.lines} UDP, ${tcp.lines} TCP; malformed: ${
      udp.malformed + tcp.malformed
    }`,
  );
  return EXIT.ok;
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
