/**
 * What the replication-delay check reads from a MariaDB/MySQL replica:
 * `SHOW SLAVE STATUS`, `@@server_id`, and the pt-heartbeat rows of the
 * primary (and of the replica itself, when a pt-heartbeat writes one there
 * too). One connection, one try, closed before returning.
 * @module
 */

import mysql from "mysql2/promise";
import { errorMessage } from "../../core/errors.ts";

/** Where and how to connect. */
export interface ReplicaConnection {
  readonly host: string;
  readonly port: number;
  /** A Unix socket instead of host and port. */
  readonly socket: string | null;
  readonly user: string;
  /** From `MYSQL_PWD` or a defaults file; `null`: none. Never from argv. */
  readonly password: string | null;
  /** The heartbeat table's database and name. */
  readonly database: string;
  readonly table: string;
  /** Connect and query timeout, ms. */
  readonly timeoutMs: number;
}

/** `SHOW SLAVE STATUS`, the fields the check uses. */
export interface ReplicaStatus {
  readonly ioRunning: boolean;
  /** `Slave_IO_Running` as the server said it (`Yes`, `No`, `Connecting`). */
  readonly ioState: string;
  readonly sqlRunning: boolean;
  readonly ioError: string | null;
  readonly sqlError: string | null;
  readonly sqlDelay: number | null;
  readonly secondsBehindMaster: number | null;
  readonly masterLogFile: string;
  readonly readMasterLogPos: number;
  readonly relayMasterLogFile: string;
  readonly execMasterLogPos: number;
  readonly masterServerId: number | null;
}

/** What one look at the replica found. */
export interface ReplicaObservation {
  /** `null`: `SHOW SLAVE STATUS` is empty (not a replica). */
  readonly status: ReplicaStatus | null;
  /** The replica's own `@@server_id`. */
  readonly serverId: number;
  /** The server id whose heartbeat row is the primary's. */
  readonly masterServerId: number | null;
  /** The raw `ts` of the primary's row and of the replica's own row, when present. */
  readonly masterTs: string | null;
  readonly localTs: string | null;
}

/** Why the replica could not be read (the check says UNKNOWN with it). */
export class ReplicaReadError extends Error {
  override readonly name = "ReplicaReadError";
}

/**
 * Reads the replica's status and heartbeat rows.
 *
 * @param masterServerId the primary's server id; `null`: `Master_Server_Id` from the status
 * @throws {ReplicaReadError} naming what failed: the connection (with the server's
 *   message, never the password), the status, or the heartbeat table
 */
export async function observeReplica(
  conn: ReplicaConnection,
  masterServerId: number | null,
): Promise<ReplicaObservation> {
  const where = conn.socket ?? `${conn.host}:${conn.port}`;
  let c: mysql.Connection;
  try {
    c = await mysql.createConnection({
      ...(conn.socket === null
        ? { host: conn.host, port: conn.port }
        : { socketPath: conn.socket }),
      user: conn.user,
      ...(conn.password === null ? {} : { password: conn.password }),
      connectTimeout: conn.timeoutMs,
      supportBigNumbers: true,
      bigNumberStrings: false,
    });
  } catch (e) {
    throw new ReplicaReadError(`cannot connect to ${where} as ${conn.user}: ${describe(e)}`);
  }
  try {
    const q = async (what: string, sql: string, params: unknown[] = []) => {
      try {
        const [rows] = await c.query({ sql, timeout: conn.timeoutMs }, params);
        return rows as Record<string, unknown>[];
      } catch (e) {
        throw new ReplicaReadError(`${what} on ${where} failed: ${describe(e)}`);
      }
    };
    const statusRows = await q("SHOW SLAVE STATUS", "SHOW SLAVE STATUS");
    const status = statusRows.length === 0 ? null : toStatus(statusRows[0]!);
    const idRows = await q("SELECT @@server_id", "SELECT @@server_id AS id");
    const serverId = Number(idRows[0]?.["id"]);
    const master = masterServerId ?? status?.masterServerId ?? null;
    const ids = master === null ? [serverId] : [master, serverId];
    const table = `${quoteName(conn.database)}.${quoteName(conn.table)}`;
    const beats = await q(
      `reading the heartbeat table ${conn.database}.${conn.table}`,
      `SELECT server_id, ts FROM ${table} WHERE server_id IN (${ids.map(() => "?").join(", ")})`,
      ids,
    );
    const tsOf = (id: number | null) => {
      const row = beats.find((r) => Number(r["server_id"]) === id);
      return row === undefined || row["ts"] === null ? null : String(row["ts"]);
    };
    return {
      status,
      serverId,
      masterServerId: master,
      masterTs: master === null ? null : tsOf(master),
      localTs: master === serverId ? null : tsOf(serverId),
    };
  } finally {
    await c.end().catch(() => {});
  }
}

function toStatus(r: Record<string, unknown>): ReplicaStatus {
  const text = (k: string) => (r[k] === null || r[k] === undefined ? "" : String(r[k]));
  const num = (k: string) => (r[k] === null || r[k] === undefined ? null : Number(r[k]));
  const error = (k: string) => (text(k) === "" ? null : text(k));
  return {
    ioRunning: text("Slave_IO_Running") === "Yes",
    ioState: text("Slave_IO_Running"),
    sqlRunning: text("Slave_SQL_Running") === "Yes",
    ioError: error("Last_IO_Error"),
    sqlError: error("Last_SQL_Error"),
    sqlDelay: num("SQL_Delay"),
    secondsBehindMaster: num("Seconds_Behind_Master"),
    masterLogFile: text("Master_Log_File"),
    readMasterLogPos: num("Read_Master_Log_Pos") ?? 0,
    relayMasterLogFile: text("Relay_Master_Log_File"),
    execMasterLogPos: num("Exec_Master_Log_Pos") ?? 0,
    masterServerId: num("Master_Server_Id"),
  };
}

function quoteName(name: string): string {
  return `\`${name.replace(/`/g, "``")}\``;
}

function describe(e: unknown): string {
  const code = (e as { code?: unknown }).code;
  return typeof code === "string" ? `${errorMessage(e)} [${code}]` : errorMessage(e);
}

/**
 * The `[client]` settings of a MySQL defaults file (`password`, `user`,
 * `host`, `port`, `socket`), as a client reads them: `key=value` lines,
 * `#` and `;` comments, optional quotes.
 *
 * @throws {SyntaxError} naming the file and line of a line it cannot read
 */
export function parseDefaultsFile(text: string, path: string): Record<string, string> {
  const out: Record<string, string> = {};
  let section = "";
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === "" || line.startsWith("#") || line.startsWith(";")) continue;
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      section = header[1]!.trim().toLowerCase();
      continue;
    }
    if (line.startsWith("!")) continue; // !include and !includedir are not followed
    const m = /^([A-Za-z0-9_-]+)\s*(?:=\s*(.*))?$/.exec(line);
    if (m === null) throw new SyntaxError(`Cannot read ${path} line ${i + 1}: expected key=value`);
    if (section !== "client") continue;
    let value = (m[2] ?? "").trim();
    if (/^(['"]).*\1$/.test(value) && value.length >= 2) value = value.slice(1, -1);
    out[m[1]!.toLowerCase().replace(/_/g, "-")] = value;
  }
  return out;
}
