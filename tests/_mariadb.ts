/**
 * A throwaway MariaDB server for tests and benchmarks, from Debian's
 * `mariadb-server` (`/usr/sbin/mariadbd`, `/usr/bin/mariadb-install-db`):
 * a temp datadir, a free port on 127.0.0.1, a unix socket, a `coldpack` user
 * with a random password, and a fresh database per test.
 *
 * The server runs detached from the test (started through `sh`, watched by
 * pid), so the test process holds no resource for it between tests: Deno's
 * sanitizers stay on for every test, and one server can be shared by all the
 * tests of a file ({@linkcode lazyMariaDB}). It never outlives the tests:
 * `stop()` shuts it down and removes its directory; an `unload` handler kills
 * what is left when the test module ends; and a watchdog shell (its own
 * session, so Ctrl-C does not stop it) kills the server and removes the
 * directory within a second or two of the test process dying, even by SIGKILL.
 *
 * Settings: small and quick (64 MiB buffer pool, no performance schema, no
 * binary log), but `innodb_flush_log_at_trx_commit=1` and the doublewrite
 * buffer stay on, so a SIGKILLed server recovers as a production one would
 * (the crash tests rely on it).
 *
 * Root gets a random password and connects over TCP like the tests do
 * (Deno's `--allow-net` would have to name the socket path otherwise).
 *
 * Peer policy ({@linkcode mariadbTestOptions}): when the binaries are missing,
 * a test file registers its MariaDB tests with `ignore: true` and warns
 * loudly; with `COLDPACK_REQUIRE_PEERS=1` (CI) it registers one failing test
 * naming the package to install instead.
 *
 * @example
 * ```ts
 * import { lazyMariaDB } from "./_mariadb.ts";
 * const db = lazyMariaDB();
 * Deno.test("uses MariaDB", async () => {
 *   const server = await db.get();
 *   const database = await server.createDatabase();
 *   // ... MysqlCatalog.open({ host: server.host, port: server.port, ... database })
 * });
 * Deno.test("stop MariaDB", () => db.stop());
 * ```
 * @module
 */

import mysql from "mysql2/promise";
import type { RowDataPacket } from "mysql2/promise";

/** Where Debian's `mariadb-server` puts its programs. */
export const MARIADBD = "/usr/sbin/mariadbd";
/** Creates the system tables of a new datadir. */
export const MARIADB_INSTALL_DB = "/usr/bin/mariadb-install-db";

/** A running throwaway server. */
export interface MariaDB {
  /** Always `127.0.0.1`. */
  readonly host: string;
  readonly port: number;
  /** `coldpack`, with every privilege. */
  readonly user: string;
  /** Random per server; do not print it. */
  readonly password: string;
  /** Unix socket path (Deno needs `--allow-net=unix:<path>` to use it). */
  readonly socket: string;
  /** The server's temp directory (datadir, socket, error log). */
  readonly dir: string;
  /** The server process id, or 0 when it is not running. */
  readonly pid: number;
  /** Creates an empty database (`name` or a fresh `cp_<n>_<random>`) and returns its name. */
  createDatabase(name?: string): Promise<string>;
  /** Drops a database (if it exists). */
  dropDatabase(name: string): Promise<void>;
  /** Runs one statement as root and returns its rows. */
  rootQuery(sql: string, params?: unknown[]): Promise<Record<string, unknown>[]>;
  /** SIGTERM, wait for the exit, start again on the same port and datadir. Also starts a killed server. */
  restart(): Promise<void>;
  /** SIGKILL, and wait until the process is gone (call `restart()` to bring it back). */
  kill(): Promise<void>;
  /** Clean shutdown (SIGKILL after 60 s) and removal of the temp directory. Idempotent. */
  stop(): Promise<void>;
  /** The last lines of the server's error log (for failure messages). */
  logTail(lines?: number): string;
}

/** Options for {@linkcode startMariaDB}. */
export interface StartOptions {
  /** `innodb_buffer_pool_size`. Default `64M`. */
  readonly bufferPoolSize?: string;
  /** `innodb_log_file_size`. Default `48M`. */
  readonly logFileSize?: string;
  /** More `mariadbd` options, e.g. `--local-infile=1`. */
  readonly extraArgs?: readonly string[];
  /** How long to wait for the server to accept connections, in ms. Default `60000`. */
  readonly readyTimeoutMs?: number;
}

/** Whether the MariaDB binaries are installed, and if not, what to install. */
export function mariadbPeer(): { readonly available: true } | {
  readonly available: false;
  readonly missing: string;
} {
  for (const path of [MARIADBD, MARIADB_INSTALL_DB]) {
    try {
      Deno.statSync(path);
    } catch {
      return { available: false, missing: `${path} (Debian package mariadb-server)` };
    }
  }
  return { available: true };
}

/**
 * Applies the peer policy for one test file and returns the options to give
 * each of its MariaDB tests: `{ ignore: true }` when the binaries are missing
 * on a developer's machine (after a loud warning); with
 * `COLDPACK_REQUIRE_PEERS=1`, a failing test naming the missing package is
 * registered and the others are ignored.
 *
 * @param what the test file's subject, for the messages
 */
export function mariadbTestOptions(what: string): { readonly ignore: boolean } {
  return peerTestOptions(
    what,
    mariadbPeer(),
    "MariaDB is not installed",
    "apt-get install mariadb-server",
  );
}

/**
 * The peer policy for any peer: `{ ignore: false }` when `peer` is
 * available; else a loud warning and `{ ignore: true }`, or, with
 * `COLDPACK_REQUIRE_PEERS=1`, a failing test naming what to install.
 */
export function peerTestOptions(
  what: string,
  peer: { readonly available: true } | { readonly available: false; readonly missing: string },
  problem: string,
  install: string,
): { readonly ignore: boolean } {
  if (peer.available) return { ignore: false };
  const message = `${what}: ${problem}: missing ${peer.missing}; install it with: ${install}`;
  if (Deno.env.get("COLDPACK_REQUIRE_PEERS") === "1") {
    Deno.test(`${what}: the peers are installed (COLDPACK_REQUIRE_PEERS=1)`, () => {
      throw new Error(message);
    });
  } else {
    console.warn(`\n*** SKIPPED: ${message} ***\n`);
  }
  return { ignore: true };
}

/**
 * One server for a whole test file, started by the first `get()` and shut
 * down by `stop()` (register a last test that calls it). Also stopped by the
 * module's `unload` if a filtered run never calls `stop()`.
 */
export function lazyMariaDB(options: StartOptions = {}): {
  get(): Promise<MariaDB>;
  stop(): Promise<void>;
} {
  return lazyPeer(() => startMariaDB(options));
}

/**
 * One peer for a whole test file, started by the first `get()` and stopped
 * by `stop()`; a peer that failed to start is not stopped.
 */
export function lazyPeer<T extends { stop(): Promise<void> }>(start: () => Promise<T>): {
  get(): Promise<T>;
  stop(): Promise<void>;
} {
  let peer: Promise<T> | undefined;
  return {
    get() {
      peer ??= start();
      return peer;
    },
    async stop() {
      const p = peer;
      peer = undefined;
      if (p !== undefined) await (await p.catch(() => undefined))?.stop();
    },
  };
}

/** Servers not stopped yet, killed by the unload handler. */
const live = new Set<{ pid: () => number; dir: string }>();
let unloadRegistered = false;

function registerUnload(): void {
  if (unloadRegistered) return;
  unloadRegistered = true;
  globalThis.addEventListener("unload", () => {
    for (const s of live) {
      const pid = s.pid();
      if (pid > 0) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone already */ }
      }
      try {
        Deno.removeSync(s.dir, { recursive: true });
      } catch { /* the watchdog may be removing it */ }
    }
    live.clear();
  });
}

let counter = 0;

/**
 * Starts a new server in a temp directory and waits (bounded) until it
 * accepts connections. Rejects with the end of its error log if it does not
 * come up.
 */
export async function startMariaDB(options: StartOptions = {}): Promise<MariaDB> {
  const peer = mariadbPeer();
  if (!peer.available) throw new Error(`Cannot start MariaDB: missing ${peer.missing}`);
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const dir = await Deno.makeTempDir({ prefix: "coldpack_mariadb_" });
  const dataDir = `${dir}/data`;
  const socket = `${dir}/sock`;
  const pidFile = `${dir}/server.pid`;
  const errorLog = `${dir}/error.log`;
  let pid = 0;
  let stopped = false;
  const entry = { pid: () => pid, dir };
  registerUnload();
  live.add(entry);

  const logTail = (lines = 30): string => {
    try {
      return Deno.readTextFileSync(errorLog).trimEnd().split("\n").slice(-lines).join("\n");
    } catch {
      return "(no error log)";
    }
  };

  try {
    const install = await new Deno.Command(MARIADB_INSTALL_DB, {
      args: [
        "--no-defaults",
        // Its bootstrap server deletes every #sql* file in its temp directory:
        // a shared /tmp would let concurrent installs delete each other's.
        `--tmpdir=${dir}`,
        `--datadir=${dataDir}`,
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
        "--user=root",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!install.success) {
      throw new Error(
        `mariadb-install-db failed (exit ${install.code}): ` +
          new TextDecoder().decode(install.stderr).slice(-2000),
      );
    }
    await startWatchdog(dir);
  } catch (e) {
    live.delete(entry);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }

  let port = 0;
  const args = () => [
    "--no-defaults",
    "--user=root",
    `--datadir=${dataDir}`,
    `--socket=${socket}`,
    `--port=${port}`,
    "--bind-address=127.0.0.1",
    "--skip-name-resolve",
    `--pid-file=${pidFile}`,
    `--log-error=${errorLog}`,
    `--tmpdir=${dir}`,
    `--innodb-buffer-pool-size=${options.bufferPoolSize ?? "64M"}`,
    `--innodb-log-file-size=${options.logFileSize ?? "48M"}`,
    // durable commits, so that SIGKILL tests see what production would
    "--innodb-flush-log-at-trx-commit=1",
    "--skip-performance-schema",
    "--skip-log-bin",
    "--character-set-server=utf8mb4",
    "--collation-server=utf8mb4_bin",
    "--max-connections=200",
    ...(options.extraArgs ?? []),
  ];

  async function launch(): Promise<void> {
    // `sh` starts the server in the background and prints its pid; the
    // server's output goes to the error log, so `sh` exits at once.
    const out = await new Deno.Command("/bin/sh", {
      args: [
        "-c",
        `"$0" "$@" </dev/null >>"${errorLog}" 2>&1 & echo $! > "${dir}/mariadbd.pid"; echo $!`,
        MARIADBD,
        ...args(),
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    pid = Number(new TextDecoder().decode(out.stdout).trim());
    if (!out.success || !Number.isSafeInteger(pid) || pid <= 0) {
      throw new Error(`Cannot start mariadbd: ${new TextDecoder().decode(out.stderr)}`);
    }
    const deadline = Date.now() + readyTimeoutMs;
    for (;;) {
      if (!await alive(pid)) {
        pid = 0;
        throw new Error(`mariadbd exited while starting; its log ends with:\n${logTail()}`);
      }
      if (await accepts(port)) return;
      if (Date.now() > deadline) {
        throw new Error(
          `mariadbd did not accept connections within ${readyTimeoutMs} ms; log:\n${logTail()}`,
        );
      }
      await sleep(50);
    }
  }

  async function terminate(signal: "SIGTERM" | "SIGKILL", waitMs: number): Promise<boolean> {
    if (pid <= 0) return true;
    try {
      Deno.kill(pid, signal);
    } catch { /* exited already */ }
    const deadline = Date.now() + waitMs;
    while (await alive(pid)) {
      if (Date.now() > deadline) return false;
      await sleep(25);
    }
    pid = 0;
    return true;
  }

  /** Root's password: empty until the server is first up, then random. */
  let rootPassword = "";

  async function root<T>(fn: (c: mysql.Connection) => Promise<T>): Promise<T> {
    const c = await mysql.createConnection({
      host: "127.0.0.1",
      port,
      user: "root",
      password: rootPassword,
      supportBigNumbers: true,
      multipleStatements: false,
    });
    try {
      return await fn(c);
    } finally {
      await c.end().catch(() => c.destroy());
    }
  }

  const password = randomHex(18);
  const user = "coldpack";
  try {
    // The free port may be taken before the server binds it: try another.
    for (let attempt = 1;; attempt++) {
      port = freePort();
      try {
        await launch();
        break;
      } catch (e) {
        if (attempt >= 3 || !/Address already in use|Bind on TCP\/IP port/.test(logTail())) throw e;
      }
    }
    await root(async (c) => {
      for (const host of ["%", "localhost"]) {
        await c.query(`CREATE USER ?@? IDENTIFIED BY ?`, [user, host, password]);
        await c.query(`GRANT ALL PRIVILEGES ON *.* TO ?@?`, [user, host]);
      }
      const secret = randomHex(18);
      for (const host of ["localhost", "127.0.0.1", "::1"]) {
        await c.query(`ALTER USER IF EXISTS root@? IDENTIFIED BY ?`, [host, secret]);
      }
      rootPassword = secret;
    });
  } catch (e) {
    await terminate("SIGKILL", 10_000);
    live.delete(entry);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw e;
  }

  const server: MariaDB = {
    host: "127.0.0.1",
    port,
    user,
    password,
    socket,
    dir,
    get pid() {
      return pid;
    },
    async createDatabase(name?: string): Promise<string> {
      const db = name ?? `cp_${++counter}_${Math.random().toString(36).slice(2, 8)}`;
      if (!/^[A-Za-z0-9_]{1,64}$/.test(db)) throw new RangeError(`Invalid database name: ${db}`);
      await root((c) => c.query(`CREATE DATABASE \`${db}\``));
      return db;
    },
    async dropDatabase(name: string): Promise<void> {
      if (!/^[A-Za-z0-9_]{1,64}$/.test(name)) {
        throw new RangeError(`Invalid database name: ${name}`);
      }
      await root((c) => c.query(`DROP DATABASE IF EXISTS \`${name}\``));
    },
    rootQuery(sql: string, params: unknown[] = []): Promise<Record<string, unknown>[]> {
      return root(async (c) => {
        const [rows] = await c.query<RowDataPacket[]>(sql, params);
        return Array.isArray(rows) ? rows as Record<string, unknown>[] : [];
      });
    },
    async restart(): Promise<void> {
      if (stopped) throw new Error("Cannot restart MariaDB: it was stopped");
      if (!await terminate("SIGTERM", 60_000)) await terminate("SIGKILL", 10_000);
      await launch();
    },
    async kill(): Promise<void> {
      if (!await terminate("SIGKILL", 10_000)) {
        throw new Error(`mariadbd pid ${pid} did not die of SIGKILL within 10 s`);
      }
    },
    async stop(): Promise<void> {
      if (stopped) return;
      stopped = true;
      try {
        if (!await terminate("SIGTERM", 60_000)) await terminate("SIGKILL", 10_000);
      } finally {
        live.delete(entry);
        // The watchdog ends when the directory is gone.
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
    logTail,
  };
  return server;
}

/**
 * A shell in its own session that kills the server (pid in `dir/mariadbd.pid`)
 * and removes `dir` once this process is gone; it exits by itself when `dir`
 * is removed.
 */
async function startWatchdog(dir: string): Promise<void> {
  const script = `
    while kill -0 ${Deno.pid} 2>/dev/null && [ -d "$0" ]; do sleep 1; done
    if [ -d "$0" ]; then
      pid=$(cat "$0/mariadbd.pid" 2>/dev/null)
      [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
      sleep 1
      rm -rf "$0"
    fi`;
  const out = await new Deno.Command("/bin/sh", {
    args: ["-c", `setsid /bin/sh -c '${script}' "$0" </dev/null >/dev/null 2>&1 &`, dir],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!out.success) {
    throw new Error(`Cannot start the MariaDB watchdog: ${new TextDecoder().decode(out.stderr)}`);
  }
}

/**
 * Whether `pid` is a running process (a zombie is not). Asks `ps`: reading
 * `/proc` needs --allow-all in Deno.
 */
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

/** Whether the server answers on `port` (any answer: root's password may have changed). */
async function accepts(port: number): Promise<boolean> {
  let c: mysql.Connection | undefined;
  try {
    c = await mysql.createConnection({
      host: "127.0.0.1",
      port,
      user: "root",
      connectTimeout: 2000,
    });
    return true;
  } catch (e) {
    // The server answered (an SQL error has an SQLSTATE; a refused socket has none).
    const state = (e as { sqlState?: unknown }).sqlState;
    return typeof state === "string" && state.length > 0;
  } finally {
    if (c !== undefined) await c.end().catch(() => c?.destroy());
  }
}

function randomHex(n: number): string {
  return Array.from(crypto.getRandomValues(new Uint8Array(n)))
    .map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** A port that was free a moment ago on 127.0.0.1. */
function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
