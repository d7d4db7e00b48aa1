/**
 * A throwaway MariaDB primary and delayed replica with pt-heartbeat writing
 * heartbeats, for the replication-delay check's tests (PROTOCOLS.md section
 * 6). Built on {@linkcode startMariaDB} (Debian's `mariadb-server`) and
 * Debian's `percona-toolkit` (`/usr/bin/pt-heartbeat`).
 *
 * - The primary runs with `--server-id=1 --log-bin --binlog-format=ROW`, the
 *   replica with `--server-id=2 --relay-log`; the replica replicates from the
 *   primary's binary log position taken after the servers' own setup, as
 *   user `repl` (REPLICATION SLAVE only), with `MASTER_DELAY=N`.
 * - `pt-heartbeat --update --create-table` runs against the primary as user
 *   `coldpack`, its password in a `[client]` defaults file (mode 0600, never
 *   on a command line); it writes the row of server_id 1 every `interval`
 *   seconds. With `localHeartbeat`, a second `pt-heartbeat --update` runs
 *   against the replica and writes the replica's own row (server_id 2) there,
 *   once the table has replicated.
 * - `startReplication` returns once the primary's row has reached the
 *   replica (so after at least `masterDelay` seconds).
 *
 * The pt-heartbeat processes run detached (started through `sh`, watched by
 * pid), like the servers, so the test process holds no resource for them and
 * one pair can serve several tests ({@linkcode lazyReplication}). They never
 * outlive the tests: `stop()` kills them; an `unload` handler kills what is
 * left; a watchdog shell in its own session kills them within a second or
 * two of the test process dying, even by SIGKILL; and each runs with
 * `--run-time` of one hour as a last resort.
 *
 * Peer policy ({@linkcode replicationTestOptions}): like `mariadbTestOptions`
 * of `./_mariadb.ts`, tests are skipped loudly when MariaDB or
 * pt-heartbeat is missing, and fail with `COLDPACK_REQUIRE_PEERS=1` (CI).
 *
 * @example
 * ```ts
 * import { lazyReplication, replicationTestOptions } from "./_replication.ts";
 * const { ignore } = replicationTestOptions("replication delay");
 * const pair = lazyReplication({ masterDelay: 4 });
 * Deno.test({ name: "sees the delay", ignore }, async () => {
 *   const p = await pair.get();
 *   const rows = await p.heartbeatRows("replica");
 *   // ...
 * });
 * Deno.test({ name: "stop the pair", ignore }, () => pair.stop());
 * ```
 * @module
 */

import { lazyPeer, type MariaDB, mariadbPeer, peerTestOptions, startMariaDB } from "./_mariadb.ts";
import { parsePtHeartbeatTs } from "../core/replication_delay.ts";

/** Where Debian's `percona-toolkit` puts pt-heartbeat. */
export const PT_HEARTBEAT = "/usr/bin/pt-heartbeat";

/** The primary's `@@server_id`. */
export const PRIMARY_SERVER_ID = 1;
/** The replica's `@@server_id`. */
export const REPLICA_SERVER_ID = 2;

/** Options for {@linkcode startReplication}. */
export interface ReplicationOptions {
  /** `MASTER_DELAY` of the replica, in seconds. Default `4`. */
  readonly masterDelay?: number;
  /** pt-heartbeat's `--interval`, in seconds. Default `0.5`. */
  readonly interval?: number;
  /** Also run pt-heartbeat against the replica (its own row, server_id 2). Default `false`. */
  readonly localHeartbeat?: boolean;
  /** pt-heartbeat's `--utc` (ts in UTC instead of local time). Default `false`. */
  readonly utc?: boolean;
  /** Database of the heartbeat table. Default `coldpack_heartbeat`. */
  readonly database?: string;
  /** Heartbeat table. Default `heartbeat`. */
  readonly table?: string;
  /** Bound of each wait (servers up, threads running, rows replicated), in ms. Default `60000`. */
  readonly timeoutMs?: number;
}

/** One row of the heartbeat table. */
export interface HeartbeatRow {
  readonly serverId: number;
  /** As pt-heartbeat wrote it: `YYYY-MM-DDTHH:MM:SS.ffffff`. */
  readonly ts: string;
  /** `ts` as unix seconds (local time, or UTC with the `utc` option). */
  readonly unix: number;
}

/** Which server of the pair. */
export type Side = "primary" | "replica";

/** A running primary, delayed replica and heartbeat writer(s). */
export interface ReplicationPair {
  /** server_id 1, binary log on. */
  readonly primary: MariaDB;
  /** server_id 2, replicating from the primary with `MASTER_DELAY=masterDelay`. */
  readonly replica: MariaDB;
  /** Seconds. */
  readonly masterDelay: number;
  readonly database: string;
  readonly table: string;
  /** Whether the heartbeat ts are UTC. */
  readonly utc: boolean;
  /** `[client]\npassword=...` of user `coldpack` on the primary (mode 0600). */
  readonly primaryDefaultsFile: string;
  /** `[client]\npassword=...` of user `coldpack` on the replica (mode 0600). */
  readonly replicaDefaultsFile: string;
  /** A temp directory of the pair (defaults files, pt-heartbeat logs), removed by `stop()`. */
  readonly dir: string;
  /** `SHOW SLAVE STATUS` of the replica (its one row). */
  slaveStatus(): Promise<Record<string, unknown>>;
  /** The heartbeat rows on one server, by server_id. */
  heartbeatRows(side: Side): Promise<HeartbeatRow[]>;
  /** `STOP SLAVE SQL_THREAD`, and waits until the status says so. */
  stopSqlThread(): Promise<void>;
  /** `START SLAVE SQL_THREAD`, and waits until the status says so. */
  startSqlThread(): Promise<void>;
  /**
   * Starts pt-heartbeat against the replica (if it is not running): it
   * writes the replica's own row (server_id 2) there; waits until it does.
   */
  startLocalHeartbeat(): Promise<void>;
  /** Stops the replica's pt-heartbeat (its row stays, going stale). */
  stopLocalHeartbeat(): Promise<void>;
  /** The end of the pt-heartbeat logs (for failure messages). */
  heartbeatLog(lines?: number): string;
  /** Kills pt-heartbeat, stops both servers, removes the temp directories. Idempotent. */
  stop(): Promise<void>;
}

/** Whether MariaDB and pt-heartbeat are installed, and if not, what is missing. */
export function replicationPeer(): { readonly available: true } | {
  readonly available: false;
  readonly missing: string;
} {
  const missing: string[] = [];
  const db = mariadbPeer();
  if (!db.available) missing.push(db.missing);
  try {
    Deno.statSync(PT_HEARTBEAT);
  } catch {
    missing.push(`${PT_HEARTBEAT} (Debian package percona-toolkit)`);
  }
  return missing.length === 0 ? { available: true } : {
    available: false,
    missing: missing.join(", "),
  };
}

/**
 * The peer policy of `mariadbTestOptions` (`./_mariadb.ts`), for tests that need a
 * primary, a replica and pt-heartbeat: `{ ignore: true }` after a loud
 * warning when something is missing; with `COLDPACK_REQUIRE_PEERS=1`, one
 * failing test naming the packages to install is registered instead.
 *
 * @param what the test file's subject, for the messages
 */
export function replicationTestOptions(what: string): { readonly ignore: boolean } {
  return peerTestOptions(
    what,
    replicationPeer(),
    "MariaDB and pt-heartbeat are needed",
    "apt-get install mariadb-server percona-toolkit",
  );
}

/**
 * One pair for a whole test file, started by the first `get()` and stopped
 * by `stop()` (register a last test that calls it); also stopped by the
 * module's `unload` if a filtered run never calls `stop()`.
 */
export function lazyReplication(options: ReplicationOptions = {}): {
  get(): Promise<ReplicationPair>;
  stop(): Promise<void>;
} {
  return lazyPeer(() => startReplication(options));
}

/** Thrown by a {@linkcode waitUntil} probe to stop waiting at once. */
export class GiveUp extends Error {}

/**
 * Polls `probe` every `intervalMs` (default 250) until it returns something
 * other than `undefined` or `false`, and returns that; throws naming `what`
 * (and the last probe error, if any) after `timeoutMs`. A probe's error is
 * retried, except a {@linkcode GiveUp}, which is thrown at once.
 */
export async function waitUntil<T>(
  what: string,
  probe: () => Promise<T | undefined | false>,
  options: {
    readonly timeoutMs: number;
    readonly intervalMs?: number;
    readonly detail?: () => string | Promise<string>;
  },
): Promise<T> {
  const deadline = Date.now() + options.timeoutMs;
  let lastError: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v;
      lastError = undefined;
    } catch (e) {
      if (e instanceof GiveUp) throw e;
      lastError = e;
    }
    if (Date.now() > deadline) {
      const why = lastError === undefined ? "" : `; last error: ${errorText(lastError)}`;
      const more = options.detail === undefined ? "" : `\n${await options.detail()}`;
      throw new Error(`Timed out after ${options.timeoutMs} ms waiting until ${what}${why}${more}`);
    }
    await sleep(options.intervalMs ?? 250);
  }
}

/**
 * pt-heartbeat's ts (`YYYY-MM-DDTHH:MM:SS[.ffffff]`, local time unless
 * `utc`) as unix seconds.
 */
export function ptTsToUnix(ts: string, utc: boolean): number {
  return parsePtHeartbeatTs(ts, { utc });
}

/** Pairs not stopped yet: their pt-heartbeat pids, killed by the unload handler. */
const live = new Set<{ pids: () => number[]; dir: string }>();
let unloadRegistered = false;

function registerUnload(): void {
  if (unloadRegistered) return;
  unloadRegistered = true;
  globalThis.addEventListener("unload", () => {
    for (const p of live) {
      for (const pid of p.pids()) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone already */ }
      }
      try {
        Deno.removeSync(p.dir, { recursive: true });
      } catch { /* the watchdog may be removing it */ }
    }
    live.clear();
  });
}

/**
 * Starts a primary and a delayed replica, sets up replication and
 * pt-heartbeat, and waits (bounded) until the primary's heartbeat row has
 * reached the replica. Everything started is stopped again if a step fails.
 */
export async function startReplication(options: ReplicationOptions = {}): Promise<ReplicationPair> {
  const peer = replicationPeer();
  if (!peer.available) throw new Error(`Cannot start replication: missing ${peer.missing}`);
  const masterDelay = options.masterDelay ?? 4;
  const interval = options.interval ?? 0.5;
  const utc = options.utc ?? false;
  const database = options.database ?? "coldpack_heartbeat";
  const table = options.table ?? "heartbeat";
  const timeoutMs = options.timeoutMs ?? 60_000;
  for (const [name, value] of [["database", database], ["table", table]]) {
    if (!/^[A-Za-z0-9_]{1,64}$/.test(value!)) throw new RangeError(`Invalid ${name}: ${value}`);
  }
  if (!Number.isSafeInteger(masterDelay) || masterDelay < 0) {
    throw new RangeError(`Invalid masterDelay: ${masterDelay}`);
  }

  const dir = await Deno.makeTempDir({ prefix: "coldpack_replication_" });
  const pidsFile = `${dir}/pids`;
  const pids: number[] = [];
  const logs: string[] = [];
  const entry = { pids: () => pids, dir };
  registerUnload();
  live.add(entry);
  let primary: MariaDB | undefined;
  let replica: MariaDB | undefined;
  let stopped = false;

  const heartbeatLog = (lines = 30): string =>
    logs.map((log) => {
      let text: string;
      try {
        text = Deno.readTextFileSync(log).trimEnd().split("\n").slice(-lines).join("\n");
      } catch {
        text = "(no log)";
      }
      return `${log.slice(dir.length + 1)}:\n${text}`;
    }).join("\n");

  async function stop(): Promise<void> {
    if (stopped) return;
    stopped = true;
    try {
      await Promise.allSettled(pids.map((pid) => terminate(pid)));
      // A clean disconnect before the primary goes away.
      await replica?.rootQuery("STOP SLAVE").catch(() => {});
      const results = await Promise.allSettled([replica?.stop(), primary?.stop()]);
      for (const r of results) if (r.status === "rejected") throw r.reason;
    } finally {
      live.delete(entry);
      // The watchdog ends when the directory is gone.
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  }

  try {
    await startWatchdog(dir, pidsFile);
    const started = await Promise.allSettled([
      startMariaDB({
        extraArgs: [
          `--server-id=${PRIMARY_SERVER_ID}`,
          "--log-bin=primary-bin",
          "--binlog-format=ROW",
        ],
        readyTimeoutMs: timeoutMs,
      }),
      startMariaDB({
        extraArgs: [
          `--server-id=${REPLICA_SERVER_ID}`,
          "--relay-log=replica-relay-bin",
          "--skip-slave-start",
        ],
        readyTimeoutMs: timeoutMs,
      }),
    ]);
    if (started[0].status === "fulfilled") primary = started[0].value;
    if (started[1].status === "fulfilled") replica = started[1].value;
    for (const r of started) if (r.status === "rejected") throw r.reason;
    const p = primary!;
    const r = replica!;

    const [logBin] = await p.rootQuery("SELECT @@log_bin AS on_, @@server_id AS id");
    if (Number(logBin?.on_) !== 1 || Number(logBin?.id) !== PRIMARY_SERVER_ID) {
      throw new Error(
        `The primary's binary log is off or its server_id is wrong: ${JSON.stringify(logBin)}`,
      );
    }

    const replPassword = randomHex(18);
    await p.rootQuery("CREATE USER 'repl'@'%' IDENTIFIED BY ?", [replPassword]);
    await p.rootQuery("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'");
    // Replicate from here on: the servers' own setup (users) stays out.
    const [master] = await p.rootQuery("SHOW MASTER STATUS");
    if (master === undefined) throw new Error("SHOW MASTER STATUS is empty on the primary");
    await r.rootQuery(
      "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=?, MASTER_USER='repl', " +
        "MASTER_PASSWORD=?, MASTER_LOG_FILE=?, MASTER_LOG_POS=?, MASTER_DELAY=?, " +
        "MASTER_CONNECT_RETRY=1",
      [p.port, replPassword, String(master.File), Number(master.Position), masterDelay],
    );
    await r.rootQuery("START SLAVE");
    await waitForThreads(r, true, timeoutMs);

    await p.createDatabase(database);
    const primaryDefaultsFile = await defaultsFile(`${dir}/primary.cnf`, p.password);
    const replicaDefaultsFile = await defaultsFile(`${dir}/replica.cnf`, r.password);

    const rows = async (server: MariaDB): Promise<HeartbeatRow[]> => {
      const found = await server.rootQuery(
        `SELECT server_id, ts FROM \`${database}\`.\`${table}\` ORDER BY server_id`,
      );
      return found.map((row) => {
        const ts = String(row.ts);
        return { serverId: Number(row.server_id), ts, unix: ptTsToUnix(ts, utc) };
      });
    };

    /** The running pt-heartbeat of each side. */
    const writers = new Map<Side, number>();

    const heartbeat = async (server: MariaDB, side: Side, cnf: string): Promise<void> => {
      const log = `${dir}/pt-heartbeat-${side}.log`;
      if (!logs.includes(log)) logs.push(log);
      const pid = await launchHeartbeat(
        [
          `--defaults-file=${cnf}`,
          "--host=127.0.0.1",
          `--port=${server.port}`,
          `--user=${server.user}`,
          `--database=${database}`,
          `--table=${table}`,
          "--update",
          "--create-table",
          `--interval=${interval}`,
          `--sentinel=${dir}/sentinel`,
          "--run-time=1h",
          ...(utc ? ["--utc"] : []),
        ],
        log,
        pidsFile,
      );
      pids.push(pid);
      writers.set(side, pid);
      const serverId = side === "primary" ? PRIMARY_SERVER_ID : REPLICA_SERVER_ID;
      // Running, and its row is being rewritten.
      let first: string | undefined;
      await waitUntil(
        `pt-heartbeat updates the row of server_id ${serverId} on the ${side}`,
        async () => {
          if (!await alive(pid)) {
            throw new GiveUp(`pt-heartbeat exited; its log ends with:\n${heartbeatLog()}`);
          }
          const row = (await rows(server)).find((x) => x.serverId === serverId);
          if (row === undefined) return false;
          first ??= row.ts;
          return row.ts !== first;
        },
        { timeoutMs, detail: () => heartbeatLog() },
      );
    };

    await heartbeat(p, "primary", primaryDefaultsFile);
    await waitUntil(
      "the primary's heartbeat row reaches the replica",
      async () => (await rows(r)).some((x) => x.serverId === PRIMARY_SERVER_ID),
      { timeoutMs: timeoutMs + masterDelay * 1000, detail: () => statusText(r) },
    );
    if (options.localHeartbeat === true) await heartbeat(r, "replica", replicaDefaultsFile);

    return {
      primary: p,
      replica: r,
      masterDelay,
      database,
      table,
      utc,
      primaryDefaultsFile,
      replicaDefaultsFile,
      dir,
      async slaveStatus() {
        const [status] = await r.rootQuery("SHOW SLAVE STATUS");
        if (status === undefined) throw new Error("SHOW SLAVE STATUS is empty on the replica");
        return status;
      },
      heartbeatRows: (side) => rows(side === "primary" ? p : r),
      async stopSqlThread() {
        await r.rootQuery("STOP SLAVE SQL_THREAD");
        await waitForThreads(r, false, timeoutMs);
      },
      async startSqlThread() {
        await r.rootQuery("START SLAVE SQL_THREAD");
        await waitForThreads(r, true, timeoutMs);
      },
      async startLocalHeartbeat() {
        if (!writers.has("replica")) await heartbeat(r, "replica", replicaDefaultsFile);
      },
      async stopLocalHeartbeat() {
        const pid = writers.get("replica");
        if (pid === undefined) return;
        await terminate(pid);
        writers.delete("replica");
        pids.splice(pids.indexOf(pid), 1);
        // The watchdog must not kill that pid once it is reused.
        await Deno.writeTextFile(pidsFile, pids.map((x) => `${x}\n`).join(""));
      },
      heartbeatLog,
      stop,
    };
  } catch (e) {
    await stop().catch(() => {});
    throw e;
  }
}

/**
 * Waits until the replica's IO thread runs and its SQL thread runs
 * (`sqlRunning`) or has stopped; fails at once on a replication error.
 */
async function waitForThreads(
  replica: MariaDB,
  sqlRunning: boolean,
  timeoutMs: number,
): Promise<void> {
  const want = sqlRunning ? "Yes" : "No";
  await waitUntil(`the replica's IO thread runs and its SQL thread says ${want}`, async () => {
    const [s] = await replica.rootQuery("SHOW SLAVE STATUS");
    if (s === undefined) throw new Error("SHOW SLAVE STATUS is empty on the replica");
    for (const field of ["Last_IO_Error", "Last_SQL_Error"]) {
      const error = s[field];
      // An SQL error stays; an IO error (connecting) may clear on the next retry.
      if (typeof error === "string" && error !== "" && field === "Last_SQL_Error") {
        throw new GiveUp(`Replication is broken: ${field}: ${error}`);
      }
    }
    return s.Slave_IO_Running === "Yes" && s.Slave_SQL_Running === want;
  }, { timeoutMs }).catch(async (e) => {
    throw new Error(`${errorText(e)}\n${await statusText(replica)}`);
  });
}

/** The replica's thread states and errors, for failure messages. */
async function statusText(replica: MariaDB): Promise<string> {
  try {
    const [s] = await replica.rootQuery("SHOW SLAVE STATUS");
    if (s === undefined) return "SHOW SLAVE STATUS is empty";
    return ["Slave_IO_Running", "Slave_SQL_Running", "Last_IO_Error", "Last_SQL_Error", "SQL_Delay"]
      .map((k) => `${k}=${String(s[k])}`).join(" ") + `\n${replica.logTail(10)}`;
  } catch (e) {
    return `SHOW SLAVE STATUS failed: ${errorText(e)}`;
  }
}

/** Writes a `[client]` defaults file holding `password`, readable by its owner only. */
async function defaultsFile(path: string, password: string): Promise<string> {
  await Deno.writeTextFile(path, `[client]\npassword=${password}\n`, { mode: 0o600 });
  await Deno.chmod(path, 0o600);
  return path;
}

/**
 * Starts pt-heartbeat detached (through `sh`), its output appended to `log`
 * and its pid to `pidsFile` (for the watchdog); returns the pid.
 */
async function launchHeartbeat(args: string[], log: string, pidsFile: string): Promise<number> {
  const out = await new Deno.Command("/bin/sh", {
    args: [
      "-c",
      `"$0" "$@" </dev/null >>"$CP_HB_LOG" 2>&1 & echo $! >>"$CP_HB_PIDS"; echo $!`,
      PT_HEARTBEAT,
      ...args,
    ],
    env: { CP_HB_LOG: log, CP_HB_PIDS: pidsFile },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const pid = Number(new TextDecoder().decode(out.stdout).trim());
  if (!out.success || !Number.isSafeInteger(pid) || pid <= 0) {
    throw new Error(`Cannot start pt-heartbeat: ${new TextDecoder().decode(out.stderr)}`);
  }
  return pid;
}

/** SIGTERM, then SIGKILL after 10 s; resolves once `pid` is gone. */
async function terminate(pid: number): Promise<void> {
  for (const [signal, waitMs] of [["SIGTERM", 10_000], ["SIGKILL", 10_000]] as const) {
    try {
      Deno.kill(pid, signal);
    } catch { /* exited already */ }
    const deadline = Date.now() + waitMs;
    while (await alive(pid)) {
      if (Date.now() > deadline) break;
      await sleep(25);
    }
    if (!await alive(pid)) return;
  }
  throw new Error(`pt-heartbeat pid ${pid} did not die of SIGKILL within 10 s`);
}

/**
 * A shell in its own session that kills the pids listed in `pidsFile` and
 * removes `dir` once this process is gone; it exits by itself when `dir` is
 * removed.
 */
async function startWatchdog(dir: string, pidsFile: string): Promise<void> {
  const script = `
    while kill -0 ${Deno.pid} 2>/dev/null && [ -d "$0" ]; do sleep 1; done
    if [ -d "$0" ]; then
      for pid in $(cat "$1" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
      rm -rf "$0"
    fi`;
  const out = await new Deno.Command("/bin/sh", {
    args: [
      "-c",
      `setsid /bin/sh -c '${script}' "$0" "$1" </dev/null >/dev/null 2>&1 &`,
      dir,
      pidsFile,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(
      `Cannot start the pt-heartbeat watchdog: ${new TextDecoder().decode(out.stderr)}`,
    );
  }
}

/** Whether `pid` is a running process (a zombie is not), asking `ps`. */
async function alive(pid: number): Promise<boolean> {
  const out = await new Deno.Command("ps", {
    args: ["-o", "stat=", "-p", String(pid)],
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).output();
  const st = new TextDecoder().decode(out.stdout).trim();
  return out.success && st !== "" && !st.startsWith("Z") && !st.startsWith("X");
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function randomHex(n: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(n)))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
