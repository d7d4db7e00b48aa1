/**
 * check_replication_delay: a Nagios plugin that tells a healthy delayed
 * replica from a broken one (core/replication_delay.ts decides).
 *
 * Wiring only: flags in, the replica read (adapters/replication/mysql.ts),
 * the state file and the job markers read and written here, one Nagios
 * line out, exit 0/1/2/3.
 * @module
 */

import { parseArgs } from "node:util";
import {
  checkLimits,
  type CheckState,
  decide,
  DEFAULT_LIMITS,
  emptyState,
  formatNagios,
  type Limits,
  type Marker,
  nextState,
  type Observation,
  parseMarker,
  parsePtHeartbeatTs,
  parseState,
} from "../core/replication_delay.ts";
import { errorMessage } from "../core/errors.ts";
import {
  observeReplica,
  parseDefaultsFile,
  ReplicaReadError,
} from "../adapters/replication/mysql.ts";

const NAME = "REPLICATION_DELAY";
const UNKNOWN = 3;

/** Limit flags: flag name -> the `Limits` key. */
const LIMIT_FLAGS = {
  "max-seconds-behind": "maxSecondsBehind",
  "max-relay-behind": "maxRelayBehind",
  "max-master-behind": "maxMasterBehind",
  "max-backup-behind": "maxBackupBehind",
  "max-deshard-behind": "maxDeshardBehind",
  "max-last-seen": "maxLastSeen",
  "min-delay-time": "minDelayTime",
  "max-delay-time": "maxDelayTime",
  "max-recovery-time": "maxRecoveryTime",
  "max-trend-time": "maxTrendTime",
  window: "window",
} as const satisfies Record<string, keyof Limits>;

const HELP = `check_replication_delay: Nagios check of a deliberately delayed MariaDB/MySQL replica

Usage:
  check_replication_delay -H HOST [--port 3306] [--user nagios] [options]

Reads the primary's pt-heartbeat row as replicated to the replica (delay =
now - its ts; or the replica's own heartbeat row's ts - it, when a
pt-heartbeat also writes one there), and SHOW SLAVE STATUS. Each run adds a
sample to --state-file and fits a least-squares line over the last --window
seconds: the intercept (the delay now), the slope and the correlation.

States:
  OK        the delay intercept is within [--min-delay-time, --max-delay-time]
  WARNING   out of bounds but heading back fast enough ("intercept recovering -
            below minimum / above maximum with slope S"); the newest sample back
            in range ("recovering - real value within range"); a backup or
            deshard job running ("active backup" / "active deshard") or done less
            than --max-recovery-time ago ("out of bounds, in recovery window ...");
            the SQL thread stopped for less than --max-last-seen (STOP SLAVE)
  CRITICAL  out of bounds with no sign of recovery; a job, or the recovery after
            it, past its limit; replication stopped or broken; heartbeats stale;
            the IO or SQL thread idle too long
  UNKNOWN   bad arguments; cannot connect or read; unreadable state or marker

Limits (seconds):
  --min-delay-time N      lowest healthy delay (default ${DEFAULT_LIMITS.minDelayTime})
  --max-delay-time N      highest healthy delay (default ${DEFAULT_LIMITS.maxDelayTime})
  --max-trend-time N      out of bounds, the fitted line must reach the band within this
                          (and correlate, |r| >= 0.5) to count as recovering (default ${DEFAULT_LIMITS.maxTrendTime})
  --max-seconds-behind N  the replica's own heartbeat row (if any) must be this fresh (default ${DEFAULT_LIMITS.maxSecondsBehind})
  --max-last-seen N       the primary's heartbeat must have changed within this; also how
                          long the SQL thread may stay stopped (default ${DEFAULT_LIMITS.maxLastSeen})
  --max-master-behind N   the IO thread must have received binlog within this (default ${DEFAULT_LIMITS.maxMasterBehind})
  --max-relay-behind N    the SQL thread must have applied something within this (default ${DEFAULT_LIMITS.maxRelayBehind})
  --max-backup-behind N   how long a backup may run with the delay out of bounds (default ${DEFAULT_LIMITS.maxBackupBehind})
  --max-deshard-behind N  how long a deshard job may (default ${DEFAULT_LIMITS.maxDeshardBehind})
  --max-recovery-time N   how long the delay may stay out of bounds after a job (default ${DEFAULT_LIMITS.maxRecoveryTime})
  --window N              the regression window (default ${DEFAULT_LIMITS.window})

Connection (the password from MYSQL_PWD or --defaults-file, never the command line):
  -H, --host HOST         default 127.0.0.1
  --port N                default 3306
  --socket PATH           a Unix socket instead
  --user USER             default: the defaults file's, else nagios
  --defaults-file FILE    a my.cnf with a [client] section (password, user, host, port, socket)
  --database DB           the heartbeat table's database (default percona)
  --table TABLE           default heartbeat
  --master-server-id N    the primary's row (default: Master_Server_Id of SHOW SLAVE STATUS)
  --utc                   pt-heartbeat runs with --utc (default: local time)

Other:
  --state-file FILE       samples kept between runs (default
                          /var/tmp/check_replication_delay.HOST_PORT.json)
  --backup-marker FILE    written by the backup job (default /var/run/coldpack/backup.marker)
  --deshard-marker FILE   written by the deshard job (default /var/run/coldpack/deshard.marker)
                          A job writes "started=<unix seconds>" when it starts and appends
                          "completed=<unix seconds>" when it ends.
  -t, --timeout N         seconds for the connection and each query (default 10)
  -v, --verbose           more lines after the first
  -V, --version           the version
  -h, --help              this help

Exit codes: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN.
`;

function unknown(message: string): number {
  console.log(`${NAME} UNKNOWN - ${message}`);
  return UNKNOWN;
}

function wholeSeconds(flag: string, raw: string): number {
  const n = Number(raw);
  if (!/^\d+(\.\d+)?$/.test(raw.trim()) || !Number.isFinite(n)) {
    throw new RangeError(`--${flag}: "${raw}" is not a number of seconds`);
  }
  return n;
}

async function main(args: string[]): Promise<number> {
  if (args.some((a) => a === "-p" || a.startsWith("--password") || /^-p./.test(a))) {
    return unknown(
      "bad arguments: a password is never given on the command line (it shows in ps): " +
        "use MYSQL_PWD or --defaults-file",
    );
  }
  let values;
  try {
    ({ values } = parseArgs({
      args,
      strict: true,
      allowPositionals: false,
      options: {
        ...Object.fromEntries(Object.keys(LIMIT_FLAGS).map((f) => [f, { type: "string" }])),
        host: { type: "string", short: "H" },
        port: { type: "string" },
        socket: { type: "string" },
        user: { type: "string" },
        "defaults-file": { type: "string" },
        database: { type: "string" },
        table: { type: "string" },
        "master-server-id": { type: "string" },
        utc: { type: "boolean" },
        "state-file": { type: "string" },
        "backup-marker": { type: "string" },
        "deshard-marker": { type: "string" },
        timeout: { type: "string", short: "t" },
        verbose: { type: "boolean", short: "v" },
        version: { type: "boolean", short: "V" },
        help: { type: "boolean", short: "h" },
      },
    }) as { values: Record<string, string | boolean | undefined> });
  } catch (e) {
    return unknown(`bad arguments: ${errorMessage(e)} (see --help)`);
  }
  if (values.help === true) {
    console.log(HELP);
    return 0;
  }
  if (values.version === true) {
    console.log("check_replication_delay (coldpack)");
    return 0;
  }
  const str = (k: string) => values[k] as string | undefined;
  let limits: Limits;
  let timeoutMs: number;
  let port: number;
  let masterServerId: number | null;
  try {
    const l: Record<string, number> = { ...DEFAULT_LIMITS };
    for (const [flag, key] of Object.entries(LIMIT_FLAGS)) {
      const raw = str(flag);
      if (raw !== undefined) l[key] = wholeSeconds(flag, raw);
    }
    limits = l as unknown as Limits;
    checkLimits(limits);
    timeoutMs = wholeSeconds("timeout", str("timeout") ?? "10") * 1000;
    const rawId = str("master-server-id");
    masterServerId = rawId === undefined ? null : Number(rawId);
    if (masterServerId !== null && !(Number.isInteger(masterServerId) && masterServerId >= 0)) {
      throw new RangeError(`--master-server-id: "${rawId}" is not a server id`);
    }
    port = 0; // decided below, with the defaults file
  } catch (e) {
    return unknown(`bad arguments: ${errorMessage(e)}`);
  }

  // The defaults file, then flags; the password from MYSQL_PWD or the file only.
  let defaults: Record<string, string> = {};
  const defaultsFile = str("defaults-file");
  if (defaultsFile !== undefined) {
    try {
      defaults = parseDefaultsFile(await Deno.readTextFile(defaultsFile), defaultsFile);
    } catch (e) {
      return unknown(`cannot read --defaults-file ${defaultsFile}: ${errorMessage(e)}`);
    }
  }
  const host = str("host") ?? defaults["host"] ?? "127.0.0.1";
  const rawPort = str("port") ?? defaults["port"] ?? "3306";
  port = Number(rawPort);
  if (!Number.isInteger(port) || port < 1 || port > 65_535) {
    return unknown(`bad arguments: --port "${rawPort}" is not a port number`);
  }
  const socket = str("socket") ?? (str("host") === undefined ? defaults["socket"] : undefined) ??
    null;
  const password = Deno.env.get("MYSQL_PWD") ?? defaults["password"] ?? null;
  const database = str("database") ?? "percona";
  const table = str("table") ?? "heartbeat";
  const where = socket ?? `${host}_${port}`;
  const stateFile = str("state-file") ??
    `/var/tmp/check_replication_delay.${where.replace(/[^A-Za-z0-9._-]/g, "_")}.json`;

  let prev: CheckState;
  try {
    prev = await readState(stateFile);
  } catch (e) {
    return unknown(`cannot read the state file ${stateFile}: ${errorMessage(e)}`);
  }
  let backup: Marker | null;
  let deshard: Marker | null;
  try {
    backup = await readMarker(str("backup-marker") ?? "/var/run/coldpack/backup.marker");
    deshard = await readMarker(str("deshard-marker") ?? "/var/run/coldpack/deshard.marker");
  } catch (e) {
    return unknown(errorMessage(e));
  }

  const now = Date.now() / 1000;
  let observed;
  try {
    observed = await observeReplica({
      host,
      port,
      socket,
      user: str("user") ?? defaults["user"] ?? "nagios",
      password,
      database,
      table,
      timeoutMs,
    }, masterServerId);
  } catch (e) {
    return unknown(
      e instanceof ReplicaReadError ? e.message : `cannot read ${where}: ${errorMessage(e)}`,
    );
  }
  const offsetMinutes = (unixSeconds: number) => new Date(unixSeconds * 1000).getTimezoneOffset();
  const utc = values.utc === true;
  let masterTs: number | null;
  let localTs: number | null;
  try {
    masterTs = observed.masterTs === null
      ? null
      : parsePtHeartbeatTs(observed.masterTs, { utc, offsetMinutes });
    localTs = observed.localTs === null
      ? null
      : parsePtHeartbeatTs(observed.localTs, { utc, offsetMinutes });
  } catch (e) {
    return unknown(`the heartbeat table ${database}.${table}: ${errorMessage(e)}`);
  }
  const obs: Observation = {
    now,
    status: observed.status,
    heartbeat: { masterTs, localTs },
    masterServerId: observed.masterServerId,
    heartbeatTable: `${database}.${table}`,
    markers: { backup, deshard },
  };
  const state = nextState(prev, obs, limits);
  try {
    await writeState(stateFile, state);
  } catch (e) {
    return unknown(`cannot write the state file ${stateFile}: ${errorMessage(e)}`);
  }
  const result = decide(state, obs, limits);
  const out = formatNagios(result, limits);
  console.log(out.line);
  if (values.verbose === true) {
    for (const d of out.details) console.log(d);
    const s = observed.status;
    if (s !== null) {
      console.log(
        `binlog: read ${s.masterLogFile}:${s.readMasterLogPos}, ` +
          `executed ${s.relayMasterLogFile}:${s.execMasterLogPos}`,
      );
    }
    console.log(
      `heartbeat rows: primary (server_id ${observed.masterServerId ?? "?"}) ${
        observed.masterTs ?? "none"
      }, local (server_id ${observed.serverId}) ${observed.localTs ?? "none"}`,
    );
  }
  return out.exitCode;
}

async function readState(path: string): Promise<CheckState> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return emptyState();
    throw e;
  }
  return parseState(text, path);
}

async function writeState(path: string, state: CheckState): Promise<void> {
  const tmp = `${path}.${Deno.pid}.tmp`;
  await Deno.writeTextFile(tmp, JSON.stringify(state));
  await Deno.rename(tmp, path);
}

async function readMarker(path: string): Promise<Marker | null> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    throw new Error(`cannot read the marker ${path}: ${errorMessage(e)}`);
  }
  return parseMarker(text, path);
}

if (import.meta.main) {
  let code: number;
  try {
    code = await main(Deno.args);
  } catch (e) {
    code = unknown(`internal error: ${errorMessage(e)}`);
  }
  Deno.exit(code);
}
