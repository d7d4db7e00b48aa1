/**
 * The MySQL/MariaDB catalog: {@linkcode Catalog} on `mysql2/promise`, for
 * several daemons (on several hosts) sharing one catalog
 * (`--catalog mysql://user@host:3306/db`, password from the environment or
 * the config file).
 *
 * Same semantics as the SQLite catalog (`sqlite.ts`), with these MySQL facts
 * behind them:
 * - Every write is one InnoDB transaction at READ COMMITTED; rows a write
 *   decides on are read `FOR UPDATE`. `status()` reads one REPEATABLE READ
 *   snapshot. Batched statements: `addDiscovered` inserts 500 rows per
 *   statement, `commitArchive` updates 500 members per statement, all in one
 *   transaction.
 * - `claimFiles` is `SELECT ... FOR UPDATE SKIP LOCKED` then `UPDATE`, so two
 *   daemons claiming at once never get the same file and never wait on each
 *   other. Live owners are read from `leases` first (a plain read: a locked
 *   lease row being renewed must not look expired).
 * - DDL commits at once in MySQL, so a migration is not one transaction:
 *   `migrate()` holds `GET_LOCK` (one migrator per database at a time), every
 *   statement can run again, and the version row is written last.
 * - A `COMMIT` that fails with a lost connection has an unknown outcome: the
 *   writes are idempotent (a second `commitArchive` of the same archive is a
 *   no-op, `addDiscovered` ignores known versions), and the retry wrapper
 *   (`core/retry.ts`) calls again. This adapter never retries by itself.
 * - A connection that failed (lost, reset, timed out) is destroyed, not put
 *   back; the pool opens a new one on the next call, so a restarted server
 *   costs at most the calls that were in flight.
 *
 * Errors are `PortError`s coded with the MySQL client's code (`e.code`, e.g.
 * `ER_LOCK_DEADLOCK`, `ER_ACCESS_DENIED_ERROR`, `ECONNREFUSED`,
 * `PROTOCOL_CONNECTION_LOST`), retryable for lost or refused connections, a
 * server shutting down, deadlocks and lock-wait timeouts. Messages name the
 * catalog as `mysql://user@host:port/db`, never the password.
 *
 * @example
 * ```ts
 * import { MysqlCatalog } from "./mysql.ts";
 * const catalog = await MysqlCatalog.open({
 *   host: "db1.internal",
 *   port: 3306,
 *   user: "coldpack",
 *   password: Deno.env.get("COLDPACK_MYSQL_PASSWORD") ?? "",
 *   database: "coldpack",
 * });
 * console.log(await catalog.status());
 * await catalog.close();
 * ```
 * @module
 */

import mysql from "mysql2/promise";
import type { Pool, PoolConnection, ResultSetHeader, RowDataPacket } from "mysql2/promise";
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import type {
  ArchiveMember,
  ArchiveRow,
  ArchiveSeqRange,
  AuditRow,
  Catalog,
  CatalogStatus,
  DrillRow,
  FailureRow,
  FileRow,
  FileState,
  KnownVersion,
  NewFailure,
  RestoreRow,
  RetrievalRow,
  SourceEntry,
} from "../../core/ports.ts";
import {
  type ArchiveId,
  archiveId,
  type AuditId,
  type DrillId,
  type FileId,
  fileId,
  type JobId,
  type RetrievalId,
  type SourceId,
  sourceId,
} from "../../core/ids.ts";
import { PortError } from "../../core/errors.ts";
import { LATEST_SCHEMA_VERSION, MIGRATIONS_TABLE, migrationsToApply } from "./schema.ts";
import {
  type AuditUpdate,
  auditUpdateColumns,
  checkArchive,
  checkAuditRow,
  checkAuditUpdate,
  checkDrillRestore,
  checkDrillRow,
  checkDrillUpdate,
  checkEntry,
  checkHistoryQuery,
  checkLease,
  checkLimit,
  checkMember,
  checkMs,
  checkOwner,
  checkRestoreId,
  checkRestoreOutcome,
  checkRestoreRequest,
  checkRestoresQuery,
  checkRetrievalId,
  checkRetrievalRow,
  checkRetrievalUpdate,
  checkSpan,
  checkTime,
  compareRetrievals,
  type DrillUpdate,
  drillUpdateColumns,
  GONE_NOTE,
  historyPage,
  type HistoryQuery,
  isCount,
  newFileRow,
  type RestoreRequest,
  type RestoresQuery,
  retrievalExists,
  type RetrievalUpdate,
  retrievalUpdateColumns,
  uniqueArchiveIds,
  uniqueSeqs,
} from "./validate.ts";
import {
  ARCHIVE_COLUMNS,
  AUDIT_COLUMNS,
  AUDIT_STATES,
  auditValues,
  DRILL_COLUMNS,
  DRILL_STATES,
  drillValues,
  FAILURE_COLUMNS,
  int,
  optInt,
  optStr,
  RESTORE_COLUMNS,
  RETRIEVAL_COLUMNS,
  retrievalValues,
  type Row,
  STAGES,
  state,
  str,
  toArchiveRow,
  toAuditRow,
  toDrillRow,
  toFailureRow,
  toRestoreRow,
  toRetrievalRow,
} from "./rows.ts";

/** Options for {@linkcode MysqlCatalog.open}. */
export interface MysqlCatalogOptions {
  /** Server host name or address (also named in messages when `socket` is used). */
  readonly host: string;
  /** TCP port. */
  readonly port: number;
  readonly user: string;
  /** Never logged nor put in messages. */
  readonly password: string;
  readonly database: string;
  /** Unix socket path; when set, connections use it instead of `host:port`. */
  readonly socket?: string;
  /** Connections in the pool. Default `4`. */
  readonly poolSize?: number;
  /** Apply missing migrations while opening. Default `true`. */
  readonly migrate?: boolean;
  /** How long opening one connection may take, in ms. Default `10000`. */
  readonly connectTimeoutMs?: number;
  /**
   * How long one statement may go without an answer, in ms, before its
   * connection is dropped (a hung server): a retryable `PROTOCOL_SEQUENCE_TIMEOUT`.
   * `0` disables it. Default `120000`.
   */
  readonly queryTimeoutMs?: number;
  /** `innodb_lock_wait_timeout` of each connection, in seconds. Default `20`. */
  readonly lockWaitTimeoutSeconds?: number;
  /** How long `migrate()` waits for another host's migration, in seconds. Default `300`. */
  readonly migrateLockTimeoutSeconds?: number;
}

/** Keys per `IN (...)` list. */
const KEY_CHUNK = 500;
/** Rows per multi-row INSERT in `addDiscovered`. */
const ENTRY_CHUNK = 500;
/** Members per UPDATE in `commitArchive`. */
const MEMBER_CHUNK = 500;
/** Ids per `IN (...)` list in `markVanished`. */
const ID_CHUNK = 1000;

const FILE_COLUMNS = "id, source, file_key, version, domain, storage_class, source_fid, length, " +
  "mtime_ms, discovered_at, state, md5, archive_id, header_offset, data_offset, archived_at, " +
  "attempts, next_attempt_at, note, gone_at";

/**
 * Session settings of every connection: strict mode without
 * `NO_BACKSLASH_ESCAPES` (the client escapes values with backslashes) nor
 * MariaDB's `SIMULTANEOUS_ASSIGNMENT` (`acquireLease` relies on assignments
 * applying left to right).
 */
const SQL_MODE = "STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION";

type Param = string | number | null | Buffer | readonly Param[];
/** How to run one statement. */
interface Statement {
  /** No inactivity timeout (a lock wait, DDL on a big table). */
  readonly untimed?: boolean;
}

/**
 * A {@linkcode Catalog} in a MySQL or MariaDB database, shared by any number
 * of daemons.
 *
 * Beyond the interface: {@linkcode MysqlCatalog.schemaVersion},
 * {@linkcode MysqlCatalog.ping} and {@linkcode MysqlCatalog.location}.
 *
 * Costs on large catalogs: per-file calls are primary-key or index lookups;
 * `status` scans the `files_pending` covering index once.
 */
export class MysqlCatalog implements Catalog {
  /** `mysql://user@host:port/db`: what messages name. No password. */
  readonly location: string;
  #pool: Pool;
  #database: string;
  #queryTimeoutMs: number;
  #lockWaitTimeoutSeconds: number;
  #migrateLockTimeoutSeconds: number;
  /** Connections (the driver's objects) whose session settings are applied. */
  #ready = new WeakSet<object>();
  #closed = false;

  private constructor(
    pool: Pool,
    options:
      & Required<
        Pick<
          MysqlCatalogOptions,
          "database" | "queryTimeoutMs" | "lockWaitTimeoutSeconds" | "migrateLockTimeoutSeconds"
        >
      >
      & { location: string },
  ) {
    this.#pool = pool;
    this.location = options.location;
    this.#database = options.database;
    this.#queryTimeoutMs = options.queryTimeoutMs;
    this.#lockWaitTimeoutSeconds = options.lockWaitTimeoutSeconds;
    this.#migrateLockTimeoutSeconds = options.migrateLockTimeoutSeconds;
  }

  /**
   * Opens a pool to the catalog database and checks that it answers (and
   * migrates it unless `migrate` is false). Rejects with a `PortError` coded
   * like the server's answer: `ER_ACCESS_DENIED_ERROR`, `ER_BAD_DB_ERROR`,
   * `ECONNREFUSED`, ...
   *
   * @param options see {@linkcode MysqlCatalogOptions}
   */
  static async open(options: MysqlCatalogOptions): Promise<MysqlCatalog> {
    for (const name of ["host", "user", "database"] as const) {
      if (typeof options[name] !== "string" || options[name].length === 0) {
        throw new TypeError(`Invalid MySQL catalog ${name}: empty`);
      }
    }
    if (typeof options.password !== "string") {
      throw new TypeError("Invalid MySQL catalog password: not a string");
    }
    if (!Number.isSafeInteger(options.port) || options.port < 1 || options.port > 65535) {
      throw new RangeError(`Invalid MySQL catalog port: ${options.port}`);
    }
    const poolSize = options.poolSize ?? 4;
    checkPositive("pool size", poolSize);
    const connectTimeoutMs = options.connectTimeoutMs ?? 10_000;
    checkPositive("connect timeout", connectTimeoutMs);
    const queryTimeoutMs = options.queryTimeoutMs ?? 120_000;
    if (!isCount(queryTimeoutMs)) {
      throw new RangeError(
        `Invalid query timeout: ${queryTimeoutMs} is not a non-negative integer`,
      );
    }
    const lockWaitTimeoutSeconds = options.lockWaitTimeoutSeconds ?? 20;
    checkPositive("lock wait timeout", lockWaitTimeoutSeconds);
    const migrateLockTimeoutSeconds = options.migrateLockTimeoutSeconds ?? 300;
    checkPositive("migrate lock timeout", migrateLockTimeoutSeconds);
    const host = options.host.includes(":") ? `[${options.host}]` : options.host;
    const location = `mysql://${options.user}@${host}:${options.port}/${options.database}`;

    const pool = mysql.createPool({
      host: options.host,
      port: options.port,
      user: options.user,
      password: options.password,
      database: options.database,
      ...(options.socket === undefined ? {} : { socketPath: options.socket }),
      connectionLimit: poolSize,
      // No idle reaper (its 1 s timer would outlive every call); dead
      // connections leave the pool when they fail.
      maxIdle: poolSize,
      waitForConnections: true,
      queueLimit: 0,
      charset: "UTF8MB4_BIN",
      // BIGINT as numbers when safe (checked on every read), else strings.
      supportBigNumbers: true,
      bigNumberStrings: false,
      connectTimeout: connectTimeoutMs,
      enableKeepAlive: true,
      multipleStatements: false,
      // Stack capture per query costs more than the lookups it would explain.
      trace: false,
    });
    const catalog = new MysqlCatalog(pool, {
      database: options.database,
      location,
      queryTimeoutMs,
      lockWaitTimeoutSeconds,
      migrateLockTimeoutSeconds,
    });
    try {
      if (options.migrate ?? true) await catalog.migrate();
      else await catalog.ping();
    } catch (e) {
      await catalog.close().catch(() => {});
      throw e;
    }
    return catalog;
  }

  /**
   * One round trip (`SELECT 1`) through the pool: a health check, and the
   * baseline the catalog benchmark compares lookups with.
   */
  ping(): Promise<void> {
    return this.#run("reach the catalog", async () => {
      await this.#read((c) => this.#rows(c, "SELECT 1"));
    });
  }

  /** The schema version of the database: 0 when no migration was applied. */
  schemaVersion(): Promise<number> {
    return this.#run("read the schema version", () => this.#read((c) => this.#schemaVersion(c)));
  }

  /**
   * Brings the schema to the newest version; returns it. Holds the
   * server-wide lock `coldpack_migrate_<hash of the database name>` while it
   * migrates, so that hosts starting at once migrate one after the other.
   * A migration cut short (DDL is not transactional in MySQL) is run again
   * whole: its statements are written to be re-runnable.
   */
  migrate(): Promise<number> {
    return this.#run("migrate the catalog", () =>
      this.#read(async (c) => {
        await this.#exec(c, MIGRATIONS_TABLE.mysql);
        let version = await this.#schemaVersion(c);
        migrationsToApply("mysql", version); // refuses a newer database
        if (version >= LATEST_SCHEMA_VERSION) return version;
        const lock = `coldpack_migrate_${
          createHash("sha1").update(this.#database).digest("hex").slice(0, 40)
        }`;
        // Waiting for the lock and running DDL may take longer than a query.
        const [got] = await this.#rows(c, "SELECT GET_LOCK(?, ?) AS got", [
          lock,
          this.#migrateLockTimeoutSeconds,
        ], { untimed: true });
        if (got === undefined || Number(got.got) !== 1) {
          throw new PortError(
            `Cannot migrate the catalog in ${this.location}: another migration held the lock ` +
              `${lock} for ${this.#migrateLockTimeoutSeconds} s`,
            { code: "MIGRATE_LOCK_TIMEOUT", retryable: true },
          );
        }
        try {
          version = await this.#schemaVersion(c);
          for (const step of migrationsToApply("mysql", version)) {
            for (const sql of step.sql) {
              try {
                await this.#exec(c, sql, [], { untimed: true });
              } catch (e) {
                // A re-run of a migration cut short: what it adds is there already.
                if (!ALREADY_THERE.has(errno(e) ?? 0)) throw e;
              }
            }
            await this.#exec(
              c,
              "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
              [step.version, step.name, Date.now()],
            );
            version = step.version;
          }
          return version;
        } finally {
          await this.#exec(c, "DO RELEASE_LOCK(?)", [lock]).catch(() => {});
        }
      }));
  }

  /** The latest version (by discovery order) of each known key of `keys`. */
  latestVersions(source: SourceId, keys: readonly string[]): Promise<Map<string, KnownVersion>> {
    return this.#run("read latest versions", () =>
      this.#read(async (c) => {
        const found = new Map<string, KnownVersion>();
        const unique = [...new Set(keys)];
        for (let i = 0; i < unique.length; i += KEY_CHUNK) {
          const byHash = new Map<string, string>();
          for (const k of unique.slice(i, i + KEY_CHUNK)) {
            byHash.set(hashHex(keyHash(source, k)), k);
          }
          const rows = await this.#rows(
            c,
            `SELECT m.key_hash, f.version, f.state FROM files AS f
             JOIN (SELECT key_hash, MAX(id) AS id FROM files WHERE key_hash IN (?)
                   GROUP BY key_hash) AS m ON f.id = m.id`,
            [[...byHash.keys()].map((h) => Buffer.from(h, "hex"))],
          );
          for (const r of rows) {
            const key = byHash.get(hashHex(bytes(r, "key_hash")));
            if (key !== undefined) {
              found.set(key, { version: str(r, "version"), state: state(r) });
            }
          }
        }
        return found;
      }));
  }

  /**
   * Records new versions as `pending` in one transaction and supersedes older
   * pending versions of their keys. Returns every row it inserted, in input
   * order, with its final state: a version followed in the same batch by a
   * newer version of its key comes back `superseded`.
   *
   * Per 500 entries: one read of the versions known for their keys, one
   * multi-row INSERT, one read of every version of the keys that got a new
   * one (the new ids), and one UPDATE for the superseded, if any. One
   * discoverer per source at a time (the `discover:<source>` lease): two
   * adding the same version at once would both report it as new.
   */
  addDiscovered(
    source: SourceId,
    entries: readonly SourceEntry[],
    nowMs: number,
  ): Promise<FileRow[]> {
    return this.#run("add discovered files", async () => {
      checkTime("nowMs", nowMs);
      entries.forEach(checkEntry);
      if (entries.length === 0) return [];
      return await this.#tx(async (c) => {
        const added: FileRow[] = [];
        const position = new Map<number, number>();
        for (let i = 0; i < entries.length; i += ENTRY_CHUNK) {
          const chunk = entries.slice(i, i + ENTRY_CHUNK).map((e) => {
            const kh = keyHash(source, e.key);
            const vh = versionHash(e.version);
            return { e, kh, ident: hashHex(kh) + hashHex(vh) };
          });
          const keyHashes = uniqueBuffers(chunk.map((x) => x.kh));
          const known = new Set<string>();
          for (
            const r of await this.#rows(
              c,
              "SELECT key_hash, version_hash FROM files WHERE key_hash IN (?)",
              [keyHashes],
            )
          ) {
            known.add(hashHex(bytes(r, "key_hash")) + hashHex(bytes(r, "version_hash")));
          }
          // New versions, the first of repeats in the batch.
          const fresh = chunk.filter((x) => {
            if (known.has(x.ident)) return false;
            known.add(x.ident);
            return true;
          });
          if (fresh.length === 0) continue;
          await this.#exec(
            c,
            `INSERT INTO files (source, file_key, version, domain, storage_class, source_fid,
               length, mtime_ms, discovered_at, state, attempts) VALUES ?
             ON DUPLICATE KEY UPDATE id = id`,
            [fresh.map(({ e }) => [
              source,
              e.key,
              e.version,
              e.domain ?? null,
              e.storageClass ?? null,
              e.sourceFid ?? null,
              e.length,
              e.mtimeMs,
              nowMs,
              "pending",
              0,
            ])],
          );
          // Every version of the keys that got a new one: ids of the new
          // rows, and which pending versions the newest supersedes.
          const versions = await this.#rows(
            c,
            "SELECT id, key_hash, version_hash, domain, state FROM files WHERE key_hash IN (?)",
            [uniqueBuffers(fresh.map((x) => x.kh))],
          );
          const idOf = new Map<string, number>();
          // Newest id per key and domain: the same key in two domains is two files.
          const newest = new Map<string, number>();
          const scope = (r: Row) =>
            hashHex(bytes(r, "key_hash")) + "\0" + JSON.stringify(optStr(r, "domain"));
          for (const r of versions) {
            const kh = hashHex(bytes(r, "key_hash"));
            const id = int(r, "id");
            idOf.set(kh + hashHex(bytes(r, "version_hash")), id);
            newest.set(scope(r), Math.max(id, newest.get(scope(r)) ?? 0));
          }
          for (const x of fresh) {
            const id = idOf.get(x.ident);
            if (id === undefined) {
              throw new TypeError(
                `Cannot find the row just inserted for ${JSON.stringify(x.e.key)}`,
              );
            }
            position.set(id, added.length);
            added.push(newFileRow(fileId(id), source, x.e, nowMs));
          }
          let superseded = versions
            .filter((r) => {
              const top = newest.get(scope(r));
              return str(r, "state") === "pending" && top !== undefined && int(r, "id") < top;
            })
            .map((r) => int(r, "id"));
          if (superseded.length === 0) continue;
          const { affectedRows } = await this.#exec(
            c,
            `UPDATE files SET state = 'superseded', next_attempt_at = NULL, claimed_by = NULL
             WHERE id IN (?) AND state = 'pending'`,
            [superseded],
          );
          if (affectedRows < superseded.length) {
            // Some left pending meanwhile (archived, failed, vanished by
            // another daemon): only the ones this update changed count.
            superseded = (await this.#rows(
              c,
              "SELECT id FROM files WHERE id IN (?) AND state = 'superseded'",
              [superseded],
            )).map((r) => int(r, "id"));
          }
          if (superseded.length > 0) await this.#resolveFailures(c, superseded, nowMs);
          for (const id of superseded) {
            const at = position.get(id);
            const earlier = at === undefined ? undefined : added[at];
            if (at !== undefined && earlier) added[at] = { ...earlier, state: "superseded" };
          }
        }
        return added;
      });
    });
  }

  /** Due pending files of `source`, by id, after `afterId`, at most `limit`. */
  pendingFiles(
    source: SourceId,
    options: { readonly limit: number; readonly afterId?: FileId; readonly nowMs: number },
  ): Promise<FileRow[]> {
    return this.#run("read pending files", async () => {
      checkLimit(options.limit);
      checkTime("nowMs", options.nowMs);
      if (options.limit === 0) return [];
      return await this.#read(async (c) =>
        (await this.#rows(
          c,
          `SELECT ${FILE_COLUMNS} FROM files FORCE INDEX (files_pending)
           WHERE state = 'pending' AND source = ? AND id > ?
             AND (next_attempt_at IS NULL OR next_attempt_at <= ?)
           ORDER BY id LIMIT ?`,
          [source, options.afterId ?? 0, options.nowMs, options.limit],
        )).map(toFileRow)
      );
    });
  }

  /**
   * Claims due pending files for `owner` (see {@linkcode Catalog.claimFiles}):
   * reads the live `worker:` leases, then `SELECT ... FOR UPDATE SKIP LOCKED`
   * on the `files_pending` index and `UPDATE ... SET claimed_by`, in one
   * transaction. Rows another daemon is claiming at that moment are skipped,
   * not waited for.
   */
  claimFiles(
    source: SourceId,
    options: {
      readonly owner: string;
      readonly limit: number;
      readonly afterId?: FileId;
      readonly nowMs: number;
    },
  ): Promise<FileRow[]> {
    return this.#run("claim pending files", async () => {
      checkLimit(options.limit);
      checkTime("nowMs", options.nowMs);
      checkOwner(options.owner);
      if (options.limit === 0) return [];
      return await this.#tx(async (c) => {
        const live = (await this.#rows(
          c,
          "SELECT name FROM leases WHERE name LIKE 'worker:%' AND expires_at > ?",
          [options.nowMs],
        )).map((r) => str(r, "name").slice("worker:".length));
        const free = live.length === 0
          ? ""
          : "AND (claimed_by IS NULL OR claimed_by = ? OR claimed_by NOT IN (?))";
        const rows = await this.#rows(
          c,
          `SELECT ${FILE_COLUMNS} FROM files FORCE INDEX (files_pending)
           WHERE state = 'pending' AND source = ? AND id > ?
             AND (next_attempt_at IS NULL OR next_attempt_at <= ?) ${free}
           ORDER BY id LIMIT ? FOR UPDATE SKIP LOCKED`,
          [
            source,
            options.afterId ?? 0,
            options.nowMs,
            ...(live.length === 0 ? [] : [options.owner, live]),
            options.limit,
          ],
        );
        if (rows.length === 0) return [];
        const claimed = rows.map(toFileRow);
        await this.#exec(c, "UPDATE files SET claimed_by = ? WHERE id IN (?)", [
          options.owner,
          claimed.map((r) => r.id),
        ]);
        return claimed;
      });
    });
  }

  /**
   * Takes or renews a lease (see {@linkcode Catalog.acquireLease}): one
   * upsert that changes the row only when `owner` holds it or it expired,
   * then a read of the row in the same transaction.
   */
  acquireLease(name: string, owner: string, ttlMs: number, nowMs: number): Promise<boolean> {
    return this.#run(`acquire lease ${name}`, async () => {
      checkLease(name, owner, ttlMs, nowMs);
      const until = nowMs + ttlMs;
      return await this.#tx(async (c) => {
        // Assignments apply left to right: `expires_at` sees the new owner.
        await this.#exec(
          c,
          `INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)
           ON DUPLICATE KEY UPDATE
             owner = IF(owner = VALUES(owner) OR expires_at <= ?, VALUES(owner), owner),
             expires_at = IF(owner = VALUES(owner), VALUES(expires_at), expires_at)`,
          [name, owner, until, nowMs],
        );
        const [r] = await this.#rows(c, "SELECT owner, expires_at FROM leases WHERE name = ?", [
          name,
        ]);
        return r !== undefined && str(r, "owner") === owner && int(r, "expires_at") === until;
      });
    });
  }

  /** Gives up a lease held by `owner`. */
  releaseLease(name: string, owner: string): Promise<void> {
    return this.#run(`release lease ${name}`, async () => {
      checkOwner(owner);
      await this.#read((c) =>
        this.#exec(c, "DELETE FROM leases WHERE name = ? AND owner = ?", [name, owner])
      );
    });
  }

  /**
   * Marks the `pending` files among `ids` `vanished` with `reason` as note and
   * resolves their failures; other ids (any other state, unknown) are left alone.
   */
  markVanished(ids: readonly FileId[], reason: string, nowMs: number): Promise<void> {
    return this.#run("mark files vanished", async () => {
      checkTime("nowMs", nowMs);
      if (ids.length === 0) return;
      await this.#tx(async (c) => {
        const unique = [...new Set(ids)];
        for (let i = 0; i < unique.length; i += ID_CHUNK) {
          const pending = (await this.#rows(
            c,
            "SELECT id FROM files WHERE id IN (?) AND state = 'pending' FOR UPDATE",
            [unique.slice(i, i + ID_CHUNK)],
          )).map((r) => int(r, "id"));
          if (pending.length === 0) continue;
          await this.#exec(
            c,
            `UPDATE files SET state = 'vanished', note = ?, next_attempt_at = NULL,
               claimed_by = NULL WHERE id IN (?)`,
            [reason, pending],
          );
          await this.#resolveFailures(c, pending, nowMs);
        }
      });
    });
  }

  /** Marks the files of a fid span that a listing no longer shows as gone (see the port). */
  markGone(
    source: SourceId,
    span: { readonly from: number; readonly to: number },
    present: readonly number[],
    nowMs: number,
  ): Promise<{ readonly gone: number; readonly vanished: number }> {
    return this.#run("mark files gone", async () => {
      checkTime("nowMs", nowMs);
      checkSpan(span, present);
      return await this.#tx(async (c) => {
        const here = new Set(present);
        const rows = await this.#rows(
          c,
          `SELECT id, source_fid, state FROM files FORCE INDEX (files_source_span)
           WHERE source = ? AND source_fid > ? AND source_fid <= ? AND gone_at IS NULL
           FOR UPDATE`,
          [source, span.from, span.to],
        );
        const gone = rows.filter((r) => !here.has(int(r, "source_fid")));
        if (gone.length === 0) return { gone: 0, vanished: 0 };
        const pending = gone.filter((r) => str(r, "state") === "pending").map((r) => int(r, "id"));
        const ids = gone.map((r) => int(r, "id"));
        for (let i = 0; i < ids.length; i += ID_CHUNK) {
          await this.#exec(c, "UPDATE files SET gone_at = ? WHERE id IN (?)", [
            nowMs,
            ids.slice(i, i + ID_CHUNK),
          ]);
        }
        for (let i = 0; i < pending.length; i += ID_CHUNK) {
          const chunk = pending.slice(i, i + ID_CHUNK);
          await this.#exec(
            c,
            `UPDATE files SET state = 'vanished', note = ?, next_attempt_at = NULL,
               claimed_by = NULL WHERE id IN (?)`,
            [GONE_NOTE, chunk],
          );
          await this.#resolveFailures(c, chunk, nowMs);
        }
        return { gone: ids.length, vanished: pending.length };
      });
    });
  }

  /**
   * Records a failure, exactly as the SQLite catalog does: with a `fileId`,
   * one row per (file, stage, code) and the file's retry or final failure
   * (its claim ends); without, repeats of an open failure merge. Rejects with
   * a `RangeError` for an unknown file id.
   */
  recordFailure(failure: NewFailure): Promise<void> {
    return this.#run("record a failure", async () => {
      checkTime("nowMs", failure.nowMs);
      if (!STAGES.includes(failure.stage)) {
        throw new RangeError(`Invalid failure stage: "${failure.stage}"`);
      }
      if (failure.retryAt !== null) checkTime("retryAt", failure.retryAt);
      const now = failure.nowMs;
      await this.#tx(async (c) => {
        if (failure.fileId === undefined) {
          await this.#recordLooseFailure(c, failure);
          return;
        }
        const id = failure.fileId;
        const [file] = await this.#rows(
          c,
          "SELECT state, file_key FROM files WHERE id = ? FOR UPDATE",
          [id],
        );
        if (file === undefined) {
          throw new RangeError(`Cannot record a failure: unknown file fid:${id}`);
        }
        const fileState = state(file);
        if (fileState === "pending" && failure.retryAt === null) {
          await this.#exec(
            c,
            `UPDATE files SET attempts = attempts + 1, note = ?, state = 'failed',
               next_attempt_at = NULL, claimed_by = NULL WHERE id = ?`,
            [failure.message, id],
          );
        } else if (fileState === "pending") {
          await this.#exec(
            c,
            `UPDATE files SET attempts = attempts + 1, note = ?, next_attempt_at = ?,
               claimed_by = NULL WHERE id = ?`,
            [failure.message, failure.retryAt, id],
          );
        } else if (fileState === "failed") {
          await this.#exec(c, "UPDATE files SET attempts = attempts + 1, note = ? WHERE id = ?", [
            failure.message,
            id,
          ]);
        }
        const resolvedAt = fileState === "pending" || fileState === "failed" ? null : now;
        await this.#exec(
          c,
          `INSERT INTO failures (stage, code, message, source, file_id, file_key, archive_id,
             attempts, first_at, last_at, resolved_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)
           ON DUPLICATE KEY UPDATE
             message = VALUES(message), attempts = attempts + 1, last_at = VALUES(last_at),
             resolved_at = VALUES(resolved_at), source = VALUES(source),
             file_key = COALESCE(VALUES(file_key), file_key),
             archive_id = COALESCE(VALUES(archive_id), archive_id)`,
          [
            failure.stage,
            failure.code,
            failure.message,
            failure.source,
            id,
            failure.key ?? str(file, "file_key"),
            failure.archiveId ?? null,
            now,
            now,
            resolvedAt,
          ],
        );
      });
    });
  }

  /**
   * In one transaction: inserts the archive and marks every member that is
   * `pending` or `superseded` as `archived` (500 members per UPDATE),
   * resolving its failures and ending its claim. Members in any other state,
   * or unknown, are untouched and returned in `skipped`, in input order.
   *
   * Committing again an archive already committed with the same remote id
   * and tree hash changes nothing and returns the members not in it; with
   * another remote id or tree hash it rejects with a `PortError` coded
   * `ARCHIVE_EXISTS`. Invalid members are a `RangeError` before any write.
   */
  commitArchive(
    archive: ArchiveRow,
    members: readonly ArchiveMember[],
  ): Promise<{ readonly skipped: FileId[] }> {
    return this.#run(`commit archive ${archive.id}`, async () => {
      checkArchive(archive);
      const seen = new Set<number>();
      for (const m of members) {
        checkMember(archive.id, m);
        if (seen.has(m.fileId)) {
          throw new RangeError(
            `Cannot commit archive ${archive.id}: file fid:${m.fileId} is listed twice`,
          );
        }
        seen.add(m.fileId);
      }
      // Two daemons committing the same archive at once: the second INSERT
      // meets the first one's row; run again to answer like a retry.
      for (let attempt = 1;; attempt++) {
        try {
          return await this.#tx((c) => this.#commit(c, archive, members));
        } catch (e) {
          if (attempt >= 2 || errno(e) !== ER_DUP_ENTRY) throw e;
        }
      }
    });
  }

  /** The cursor named `name`, or `null` when never set. */
  getCursor(name: string): Promise<string | null> {
    return this.#run(`read cursor ${name}`, () =>
      this.#read(async (c) => {
        const [r] = await this.#rows(c, "SELECT value FROM cursors WHERE name = ?", [name]);
        return r === undefined ? null : str(r, "value");
      }));
  }

  /** Sets the cursor named `name`. */
  setCursor(name: string, value: string): Promise<void> {
    return this.#run(`set cursor ${name}`, async () => {
      if (typeof name !== "string" || name.length === 0) {
        throw new TypeError("Invalid cursor name: empty");
      }
      if (typeof value !== "string") throw new TypeError(`Invalid value for cursor ${name}`);
      await this.#read((c) =>
        this.#exec(
          c,
          `INSERT INTO cursors (name, value, updated_at) VALUES (?, ?, ?)
           ON DUPLICATE KEY UPDATE value = VALUES(value), updated_at = VALUES(updated_at)`,
          [name, value, Date.now()],
        )
      );
    });
  }

  /** One file version, or `null`. */
  file(id: FileId): Promise<FileRow | null> {
    return this.#run(`read file fid:${id}`, () =>
      this.#read(async (c) => {
        const [r] = await this.#rows(c, `SELECT ${FILE_COLUMNS} FROM files WHERE id = ?`, [id]);
        return r === undefined ? null : toFileRow(r);
      }));
  }

  /** Every version of `key` at `source`, newest (last discovered) first. */
  fileVersions(source: SourceId, key: string): Promise<FileRow[]> {
    return this.#run("read file versions", () =>
      this.#read(async (c) =>
        (await this.#rows(
          c,
          `SELECT ${FILE_COLUMNS} FROM files
           WHERE key_hash = ? AND source = ? AND file_key = ? ORDER BY id DESC`,
          [keyHash(source, key), source, key],
        )).map(toFileRow)
      ));
  }

  /** One archive, or `null`. */
  archive(id: ArchiveId): Promise<ArchiveRow | null> {
    return this.#run(`read archive ${id}`, () =>
      this.#read(async (c) => {
        const [r] = await this.#rows(c, `SELECT ${ARCHIVE_COLUMNS} FROM archives WHERE id = ?`, [
          id,
        ]);
        return r === undefined ? null : toArchiveRow(r);
      }));
  }

  /** The files archived in `id`, by data offset. */
  archiveFiles(id: ArchiveId): Promise<FileRow[]> {
    return this.#run(`read files of archive ${id}`, () =>
      this.#read(async (c) =>
        (await this.#rows(
          c,
          `SELECT ${FILE_COLUMNS} FROM files WHERE archive_id = ? ORDER BY data_offset, id`,
          [id],
        )).map(toFileRow)
      ));
  }

  /** Archives in byte-wise id order, after `afterId`, at most `limit`. */
  archives(
    options: { readonly limit: number; readonly afterId?: ArchiveId },
  ): Promise<ArchiveRow[]> {
    return this.#run("read archives", async () => {
      checkLimit(options.limit);
      if (options.limit === 0) return [];
      return await this.#read(async (c) =>
        (await this.#rows(
          c,
          `SELECT ${ARCHIVE_COLUMNS} FROM archives WHERE id > ? ORDER BY id LIMIT ?`,
          [options.afterId ?? "", options.limit],
        )).map(toArchiveRow)
      );
    });
  }

  /**
   * Counts, from one consistent snapshot. Scans the `files_pending` index
   * (all files) and the archives table; finds the oldest pending file by index.
   */
  status(): Promise<CatalogStatus> {
    return this.#run("read status", () =>
      this.#read(async (c) => {
        await this.#exec(c, "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ");
        await this.#exec(c, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY");
        try {
          const files: Record<FileState, number> = {
            pending: 0,
            archived: 0,
            vanished: 0,
            failed: 0,
            superseded: 0,
          };
          const sums: Record<FileState, number> = { ...files };
          const perState = await this.#rows(
            c,
            `SELECT state, COUNT(*) AS n, COALESCE(SUM(length), 0) AS bytes
             FROM files FORCE INDEX (files_pending) GROUP BY state`,
          );
          for (const r of perState) {
            const s = state(r);
            files[s] = int(r, "n");
            sums[s] = int(r, "bytes");
          }
          const [oldest] = await this.#rows(
            c,
            "SELECT MIN(discovered_at) AS t FROM files WHERE state = 'pending'",
          );
          const [archives] = await this.#rows(
            c,
            "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM archives",
          );
          const [failures] = await this.#rows(
            c,
            "SELECT COUNT(*) AS n FROM failures WHERE resolved_at IS NULL",
          );
          if (archives === undefined || failures === undefined) {
            throw new TypeError("Catalog status: an aggregate query returned no row");
          }
          return {
            files,
            archives: int(archives, "n"),
            storedBytes: int(archives, "bytes"),
            archivedBytes: sums.archived,
            pendingBytes: sums.pending,
            oldestPendingAt: oldest === undefined ? null : optInt(oldest, "t"),
            openFailures: int(failures, "n"),
          };
        } finally {
          await this.#exec(c, "COMMIT");
        }
      }));
  }

  /**
   * Records a retrieval just started at a store. A second call with the same
   * id changes nothing (also when two race: the loser's INSERT meets the
   * winner's row and the call runs once more). Rejects with a `RangeError`
   * for an unknown archive, and with a `PortError` coded `RETRIEVAL_EXISTS`
   * when the store's job is already recorded under another id.
   */
  addRetrieval(row: RetrievalRow): Promise<void> {
    return this.#run(`record retrieval ${row.id}`, async () => {
      checkRetrievalRow(row);
      for (let attempt = 1;; attempt++) {
        try {
          return await this.#tx((c) => this.#addRetrieval(c, row));
        } catch (e) {
          if (attempt >= 2 || errno(e) !== ER_DUP_ENTRY) throw e;
        }
      }
    });
  }

  /**
   * Sets a retrieval's state, and each of `readyAt`, `expiresAt`, `failure`
   * that `update` has (`null` clears it; an absent one is left as it is).
   * Rejects with a `RangeError` for an unknown id.
   */
  updateRetrieval(id: RetrievalId, update: RetrievalUpdate): Promise<void> {
    return this.#run(`update retrieval ${id}`, async () => {
      checkRetrievalUpdate(id, update);
      const { columns, values } = retrievalUpdateColumns(update);
      await this.#tx(async (c) => {
        const [known] = await this.#rows(c, "SELECT id FROM retrievals WHERE id = ? FOR UPDATE", [
          id,
        ]);
        if (known === undefined) {
          throw new RangeError(
            `Cannot update retrieval ${id} in ${this.location}: unknown retrieval id`,
          );
        }
        await this.#exec(
          c,
          `UPDATE retrievals SET ${columns.map((col) => `${col} = ?`).join(", ")} WHERE id = ?`,
          [...values, id],
        );
      });
    });
  }

  /** One retrieval, or `null`. */
  retrieval(id: RetrievalId): Promise<RetrievalRow | null> {
    return this.#run(`read retrieval ${id}`, () =>
      this.#read(async (c) => {
        const [r] = await this.#rows(
          c,
          `SELECT ${RETRIEVAL_COLUMNS} FROM retrievals WHERE id = ?`,
          [id],
        );
        return r === undefined ? null : toRetrievalRow(r);
      }));
  }

  /** The retrieval of store job `jobId` at `store`, or `null` (by the job hash). */
  retrievalByJob(store: string, jobId: JobId): Promise<RetrievalRow | null> {
    return this.#run(`read the retrieval of job ${jobId}`, () =>
      this.#read(async (c) => {
        const [r] = await this.#rows(
          c,
          `SELECT ${RETRIEVAL_COLUMNS} FROM retrievals
           WHERE job_hash = ? AND store = ? AND job_id = ?`,
          [jobHash(store, jobId), store, jobId],
        );
        return r === undefined ? null : toRetrievalRow(r);
      }));
  }

  /**
   * In-progress or ready retrievals of `archiveIds` not expired at `nowMs`
   * (`expiresAt` null or later), by archive id, start time and id; 500
   * archives per query.
   */
  liveRetrievals(archiveIds: readonly ArchiveId[], nowMs: number): Promise<RetrievalRow[]> {
    return this.#run("read live retrievals", async () => {
      checkTime("nowMs", nowMs);
      const unique = uniqueArchiveIds(archiveIds);
      if (unique.length === 0) return [];
      return await this.#read(async (c) => {
        const found: RetrievalRow[] = [];
        for (let i = 0; i < unique.length; i += KEY_CHUNK) {
          const rows = await this.#rows(
            c,
            `SELECT ${RETRIEVAL_COLUMNS} FROM retrievals FORCE INDEX (retrievals_live)
             WHERE archive_id IN (?) AND state IN ('in-progress', 'ready')
               AND (expires_at IS NULL OR expires_at > ?)`,
            [unique.slice(i, i + KEY_CHUNK), nowMs],
          );
          for (const r of rows) found.push(toRetrievalRow(r));
        }
        return found.sort(compareRetrievals);
      });
    });
  }

  /**
   * Records restores as `pending` (`overwrite` false unless asked) in one
   * transaction and returns them in input order; a request whose key is
   * known (also earlier in the same call, or added by another caller
   * meanwhile) returns the row recorded for that key, unchanged. Per 500
   * requests: a read of the known keys, a read of the files, one multi-row
   * INSERT and a read of the new rows. Rejects with a `RangeError` naming an
   * unknown file id, recording nothing.
   */
  addRestores(requests: readonly RestoreRequest[], nowMs: number): Promise<RestoreRow[]> {
    return this.#run("add restores", async () => {
      checkMs("nowMs", nowMs);
      requests.forEach(checkRestoreRequest);
      if (requests.length === 0) return [];
      return await this.#tx(async (c) => {
        const rows = new Map<string, RestoreRow>();
        for (let i = 0; i < requests.length; i += ENTRY_CHUNK) {
          const chunk = requests.slice(i, i + ENTRY_CHUNK);
          const keys = [...new Set(chunk.map((q) => q.key))].filter((k) => !rows.has(k));
          if (keys.length === 0) continue;
          const byKey = async (ks: readonly string[]) => {
            for (
              const r of await this.#rows(
                c,
                `SELECT ${RESTORE_COLUMNS} FROM restores WHERE restore_key IN (?) FOR UPDATE`,
                [ks],
              )
            ) {
              const row = toRestoreRow(r);
              rows.set(row.key, row);
            }
          };
          await byKey(keys);
          const fresh = new Map<string, RestoreRequest>();
          for (const q of chunk) {
            if (!rows.has(q.key) && !fresh.has(q.key)) fresh.set(q.key, q);
          }
          if (fresh.size === 0) continue;
          const files = new Set(
            (await this.#rows(c, "SELECT id FROM files WHERE id IN (?)", [
              [...new Set([...fresh.values()].map((q) => q.fileId))],
            ])).map((r) => int(r, "id")),
          );
          for (const q of fresh.values()) {
            if (!files.has(q.fileId)) {
              throw new RangeError(
                `Cannot add restore ${JSON.stringify(q.key)} in ${this.location}: ` +
                  `unknown file fid:${q.fileId}`,
              );
            }
          }
          // A key another caller adds meanwhile keeps that caller's row.
          await this.#exec(
            c,
            `INSERT INTO restores (restore_key, file_id, dest, state, requested_at, requested_by,
               overwrite) VALUES ? ON DUPLICATE KEY UPDATE id = id`,
            [[...fresh.values()].map((q) => [
              q.key,
              q.fileId,
              q.dest,
              "pending",
              nowMs,
              q.requestedBy,
              q.overwrite ? 1 : 0,
            ])],
          );
          await byKey([...fresh.keys()]);
        }
        return requests.map((q) => {
          const row = rows.get(q.key);
          if (row === undefined) {
            throw new TypeError(`Cannot find the restore just added for ${JSON.stringify(q.key)}`);
          }
          return row;
        });
      });
    });
  }

  /**
   * Points the `pending` restores among `ids` at `retrieval`; others (done,
   * failed) are left alone. Rejects with a `RangeError`, changing nothing,
   * for an unknown retrieval or restore id.
   */
  assignRestores(ids: readonly number[], retrieval: RetrievalId): Promise<void> {
    return this.#run(`assign restores to retrieval ${retrieval}`, async () => {
      checkRetrievalId(retrieval);
      ids.forEach(checkRestoreId);
      if (ids.length === 0) return;
      await this.#tx(async (c) => {
        const [known] = await this.#rows(c, "SELECT id FROM retrievals WHERE id = ?", [retrieval]);
        if (known === undefined) {
          throw new RangeError(
            `Cannot assign restores to retrieval ${retrieval} in ${this.location}: ` +
              "unknown retrieval id",
          );
        }
        const unique = [...new Set(ids)];
        for (let i = 0; i < unique.length; i += ID_CHUNK) {
          const chunk = unique.slice(i, i + ID_CHUNK);
          const rows = await this.#rows(
            c,
            "SELECT id, state FROM restores WHERE id IN (?) FOR UPDATE",
            [chunk],
          );
          const found = new Set(rows.map((r) => int(r, "id")));
          const missing = chunk.find((id) => !found.has(id));
          if (missing !== undefined) {
            throw new RangeError(
              `Cannot assign restore ${missing} to retrieval ${retrieval} in ${this.location}: ` +
                "unknown restore id",
            );
          }
          const pending = rows.filter((r) => str(r, "state") === "pending").map((r) =>
            int(r, "id")
          );
          if (pending.length === 0) continue;
          await this.#exec(c, "UPDATE restores SET retrieval_id = ? WHERE id IN (?)", [
            retrieval,
            pending,
          ]);
        }
      });
    });
  }

  /**
   * Finishes a `pending` restore (`done` or `failed`, with `note` and
   * `finishedAt = nowMs`); resolves false, changing nothing, when it was
   * finished already (the row is read `FOR UPDATE`, so of two listeners
   * finishing it at once exactly one gets true). Rejects with a `RangeError`
   * for an unknown id.
   */
  finishRestore(
    id: number,
    outcome: { readonly state: "done" | "failed"; readonly note: string },
    nowMs: number,
  ): Promise<boolean> {
    return this.#run(`finish restore ${id}`, async () => {
      checkRestoreOutcome(id, outcome, nowMs);
      return await this.#tx(async (c) => {
        const [r] = await this.#rows(c, "SELECT state FROM restores WHERE id = ? FOR UPDATE", [id]);
        if (r === undefined) {
          throw new RangeError(
            `Cannot finish restore ${id} in ${this.location}: unknown restore id`,
          );
        }
        if (str(r, "state") !== "pending") return false;
        await this.#exec(
          c,
          "UPDATE restores SET state = ?, note = ?, finished_at = ? WHERE id = ?",
          [outcome.state, outcome.note, nowMs, id],
        );
        return true;
      });
    });
  }

  /**
   * Restores by id after `afterId`, at most `limit`; only those in `states`
   * (none when it is empty) and served by `retrievalId`, when given.
   */
  restores(options: RestoresQuery): Promise<RestoreRow[]> {
    return this.#run("read restores", async () => {
      checkRestoresQuery(options);
      const states = options.states === undefined ? undefined : [...new Set(options.states)];
      if (options.limit === 0 || states?.length === 0) return [];
      const where = ["id > ?"];
      const params: Param[] = [options.afterId ?? 0];
      if (states !== undefined) {
        where.push("state IN (?)");
        params.push(states);
      }
      if (options.retrievalId !== undefined) {
        where.push("retrieval_id = ?");
        params.push(options.retrievalId);
      }
      // Both indexes end in `id`, so they return rows in page order; the
      // optimizer tends to walk the primary key instead (ORDER BY ... LIMIT),
      // which reads every done restore to find the few pending ones. Several
      // states are left to it: their rows would need sorting.
      const index = options.retrievalId !== undefined
        ? "FORCE INDEX (restores_retrieval)"
        : states?.length === 1
        ? "FORCE INDEX (restores_state)"
        : "";
      return await this.#read(async (c) =>
        (await this.#rows(
          c,
          `SELECT ${RESTORE_COLUMNS} FROM restores ${index} WHERE ${where.join(" AND ")}
           ORDER BY id LIMIT ?`,
          [...params, options.limit],
        )).map(toRestoreRow)
      );
    });
  }

  /**
   * The ends of the `archives_seq` index and the running count and bytes of
   * `archive_stats`, in one statement; `null` when there is no archive.
   */
  archiveSeqRange(): Promise<ArchiveSeqRange | null> {
    return this.#run("read the archive seq range", () =>
      this.#read(async (c) => {
        const [r] = await this.#rows(
          c,
          `SELECT (SELECT MIN(seq) FROM archives) AS lo, (SELECT MAX(seq) FROM archives) AS hi,
             archives AS n, bytes FROM archive_stats WHERE id = 1`,
        );
        const lo = r === undefined ? null : optInt(r, "lo");
        const hi = r === undefined ? null : optInt(r, "hi");
        if (r === undefined || lo === null || hi === null) return null;
        return { min: lo, max: hi, count: int(r, "n"), bytes: int(r, "bytes") };
      }));
  }

  /** The archives with these seqs (`archives_seq` lookups), by seq; gaps are left out. */
  archivesBySeq(seqs: readonly number[]): Promise<ArchiveRow[]> {
    return this.#run("read archives by seq", async () => {
      const unique = uniqueSeqs(seqs);
      if (unique.length === 0) return [];
      return await this.#read(async (c) =>
        (await this.#rows(
          c,
          `SELECT ${ARCHIVE_COLUMNS} FROM archives WHERE seq IN (?) ORDER BY seq`,
          [unique],
        )).map(toArchiveRow)
      );
    });
  }

  /** Range lengths, or archive sizes for whole retrievals, of retrievals started since `sinceMs`. */
  retrievedBytesSince(sinceMs: number): Promise<number> {
    return this.#run("read retrieved bytes", async () => {
      checkMs("sinceMs", sinceMs);
      return await this.#read(async (c) => {
        const [r] = await this.#rows(
          c,
          `SELECT COALESCE(SUM(CASE WHEN r.range_start IS NULL THEN a.size
               ELSE r.range_end - r.range_start + 1 END), 0) AS bytes
           FROM retrievals AS r FORCE INDEX (retrievals_started)
             JOIN archives AS a ON a.id = r.archive_id
           WHERE r.started_at >= ?`,
          [sinceMs],
        );
        return r === undefined ? 0 : int(r, "bytes");
      });
    });
  }

  /**
   * Records an audit; a second call with the same id changes nothing (also
   * when two race). Rejects with a `RangeError` for an unknown archive or
   * retrieval.
   */
  addAudit(row: AuditRow): Promise<void> {
    return this.#run(`record audit ${row.id}`, async () => {
      checkAuditRow(row);
      const what = `record audit ${row.id}`;
      for (let attempt = 1;; attempt++) {
        try {
          return await this.#tx(async (c) => {
            const [same] = await this.#rows(c, "SELECT id FROM audits WHERE id = ? FOR UPDATE", [
              row.id,
            ]);
            if (same !== undefined) return;
            const [archive] = await this.#rows(c, "SELECT id FROM archives WHERE id = ?", [
              row.archiveId,
            ]);
            if (archive === undefined) {
              throw new RangeError(
                `Cannot ${what} in ${this.location}: unknown archive ${row.archiveId}`,
              );
            }
            await this.#knownRetrieval(c, what, row.retrievalId);
            await this.#exec(
              c,
              `INSERT INTO audits (${AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
              auditValues(row),
            );
          });
        } catch (e) {
          if (attempt >= 2 || errno(e) !== ER_DUP_ENTRY) throw e;
        }
      }
    });
  }

  /**
   * Sets an audit's state and `updatedAt`, and each optional field that
   * `update` has. Rejects with a `RangeError` for an unknown audit or retrieval.
   */
  updateAudit(id: AuditId, update: AuditUpdate): Promise<void> {
    return this.#run(`update audit ${id}`, async () => {
      checkAuditUpdate(id, update);
      const { columns, values } = auditUpdateColumns(update);
      await this.#tx(async (c) => {
        const [known] = await this.#rows(c, "SELECT id FROM audits WHERE id = ? FOR UPDATE", [id]);
        if (known === undefined) {
          throw new RangeError(`Cannot update audit ${id} in ${this.location}: unknown audit id`);
        }
        await this.#knownRetrieval(c, `update audit ${id}`, update.retrievalId ?? null);
        await this.#exec(
          c,
          `UPDATE audits SET ${columns.map((col) => `${col} = ?`).join(", ")} WHERE id = ?`,
          [...values, id],
        );
      });
    });
  }

  /** Audits by id (oldest or newest first) after `afterId`, at most `limit`, in `states`. */
  audits(options: HistoryQuery<AuditRow["state"], AuditId>): Promise<AuditRow[]> {
    return this.#run("read audits", async () => {
      const states = checkHistoryQuery("audit", AUDIT_STATES, options);
      if (options.limit === 0 || states?.length === 0) return [];
      const { where, order, params } = historyPage(options, states);
      return await this.#read(async (c) =>
        (await this.#rows(
          c,
          `SELECT ${AUDIT_COLUMNS} FROM audits ${where} ${order} LIMIT ?`,
          [...params, options.limit],
        )).map(toAuditRow)
      );
    });
  }

  /**
   * Records a drill file; a second call with the same id changes nothing.
   * Rejects with a `RangeError` for an unknown restore or file, or a restore
   * of another file.
   */
  addDrill(row: DrillRow): Promise<void> {
    return this.#run(`record drill ${row.id}`, async () => {
      checkDrillRow(row);
      for (let attempt = 1;; attempt++) {
        try {
          return await this.#tx(async (c) => {
            const [same] = await this.#rows(c, "SELECT id FROM drills WHERE id = ? FOR UPDATE", [
              row.id,
            ]);
            if (same !== undefined) return;
            const [restore] = await this.#rows(c, "SELECT file_id FROM restores WHERE id = ?", [
              row.restoreId,
            ]);
            checkDrillRestore(
              row,
              restore === undefined ? null : int(restore, "file_id"),
              ` in ${this.location}`,
            );
            await this.#exec(
              c,
              `INSERT INTO drills (${DRILL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
              drillValues(row),
            );
          });
        } catch (e) {
          if (attempt >= 2 || errno(e) !== ER_DUP_ENTRY) throw e;
        }
      }
    });
  }

  /** Sets a drill's state and each optional field `update` has. `RangeError` for an unknown id. */
  updateDrill(id: DrillId, update: DrillUpdate): Promise<void> {
    return this.#run(`update drill ${id}`, async () => {
      checkDrillUpdate(id, update);
      const { columns, values } = drillUpdateColumns(update);
      await this.#tx(async (c) => {
        const [known] = await this.#rows(c, "SELECT id FROM drills WHERE id = ? FOR UPDATE", [id]);
        if (known === undefined) {
          throw new RangeError(`Cannot update drill ${id} in ${this.location}: unknown drill id`);
        }
        await this.#exec(
          c,
          `UPDATE drills SET ${columns.map((col) => `${col} = ?`).join(", ")} WHERE id = ?`,
          [...values, id],
        );
      });
    });
  }

  /** Drills by id (oldest or newest first) after `afterId`, at most `limit`, in `states`. */
  drills(options: HistoryQuery<DrillRow["state"], DrillId>): Promise<DrillRow[]> {
    return this.#run("read drills", async () => {
      const states = checkHistoryQuery("drill", DRILL_STATES, options);
      if (options.limit === 0 || states?.length === 0) return [];
      const { where, order, params } = historyPage(options, states);
      return await this.#read(async (c) =>
        (await this.#rows(
          c,
          `SELECT ${DRILL_COLUMNS} FROM drills ${where} ${order} LIMIT ?`,
          [...params, options.limit],
        )).map(toDrillRow)
      );
    });
  }

  /** Unresolved failures, most recent `lastAt` first, at most `limit`. */
  recentFailures(limit: number): Promise<FailureRow[]> {
    return this.#run("read failures", async () => {
      checkLimit(limit);
      if (limit === 0) return [];
      return await this.#read(async (c) =>
        (await this.#rows(
          c,
          `SELECT ${FAILURE_COLUMNS} FROM failures WHERE resolved_at IS NULL
           ORDER BY last_at DESC, id DESC LIMIT ?`,
          [limit],
        )).map(toFailureRow)
      );
    });
  }

  /** Closes the pool. Idempotent; later calls reject with code `CATALOG_CLOSED`. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    try {
      await this.#pool.end();
    } catch (e) {
      throw this.#wrap(e, "close the catalog");
    }
  }

  // -------------------------------------------------------------------------

  async #commit(
    c: PoolConnection,
    archive: ArchiveRow,
    members: readonly ArchiveMember[],
  ): Promise<{ skipped: FileId[] }> {
    const [existing] = await this.#rows(
      c,
      "SELECT remote_id, tree_hash FROM archives WHERE id = ? FOR UPDATE",
      [archive.id],
    );
    if (existing !== undefined) {
      if (
        str(existing, "remote_id") !== archive.remoteId ||
        str(existing, "tree_hash") !== archive.treeHash
      ) {
        throw new PortError(
          `Cannot commit archive ${archive.id} in ${this.location}: ` +
            "it is already committed with another remote id or tree hash",
          { code: "ARCHIVE_EXISTS", retryable: false },
        );
      }
      // A retry of a commit whose answer was lost: it is done already.
      return { skipped: await this.#notIn(c, archive.id, members) };
    }
    await this.#exec(
      c,
      `INSERT INTO archives (${ARCHIVE_COLUMNS}, state)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'committed')`,
      [
        archive.id,
        archive.store,
        archive.remoteId,
        archive.size,
        archive.treeHash,
        archive.fileCount,
        archive.dataBytes,
        archive.description,
        archive.createdAt,
        archive.committedAt,
      ],
    );
    // Locks the one stats row until the commit: archive commits queue here
    // for their last few ms (a COMMIT), which they can afford.
    await this.#exec(
      c,
      "UPDATE archive_stats SET archives = archives + 1, bytes = bytes + ? WHERE id = 1",
      [archive.size],
    );
    for (let i = 0; i < members.length; i += MEMBER_CHUNK) {
      const chunk = members.slice(i, i + MEMBER_CHUNK);
      // One UPDATE joined to the chunk as a derived table (UNION ALL of
      // rows); the id list makes it read `files` by primary key, not scan it.
      const rows = chunk.map((_, j) =>
        j === 0
          ? "SELECT ? AS id, ? AS md5, ? AS length, ? AS header_offset, ? AS data_offset"
          : "SELECT ?, ?, ?, ?, ?"
      ).join(" UNION ALL ");
      await this.#exec(
        c,
        `UPDATE files AS f JOIN (${rows}) AS m ON f.id = m.id
         SET f.state = 'archived', f.md5 = m.md5, f.length = m.length, f.archive_id = ?,
           f.header_offset = m.header_offset, f.data_offset = m.data_offset,
           f.archived_at = ?, f.next_attempt_at = NULL, f.claimed_by = NULL
         WHERE f.id IN (?) AND f.state IN ('pending', 'superseded')`,
        [
          ...chunk.flatMap((m) => [m.fileId, m.md5, m.length, m.headerOffset, m.dataOffset]),
          archive.id,
          archive.committedAt,
          chunk.map((m) => m.fileId),
        ],
      );
    }
    // One statement for the archive: only files that were ever retried have failures.
    await this.#exec(
      c,
      `UPDATE failures SET resolved_at = ? WHERE resolved_at IS NULL AND file_id IN
         (SELECT id FROM files WHERE archive_id = ? AND attempts > 0)`,
      [archive.committedAt, archive.id],
    );
    return { skipped: await this.#notIn(c, archive.id, members) };
  }

  async #addRetrieval(c: PoolConnection, row: RetrievalRow): Promise<void> {
    const [same] = await this.#rows(c, "SELECT id FROM retrievals WHERE id = ? FOR UPDATE", [
      row.id,
    ]);
    if (same !== undefined) return;
    const [other] = await this.#rows(
      c,
      "SELECT id FROM retrievals WHERE job_hash = ? AND store = ? AND job_id = ?",
      [jobHash(row.store, row.jobId), row.store, row.jobId],
    );
    if (other !== undefined) {
      // Committed by a racing call with this very id since the read above.
      if (str(other, "id") === row.id) return;
      throw retrievalExists(row, str(other, "id"), ` in ${this.location}`);
    }
    const [archive] = await this.#rows(c, "SELECT id FROM archives WHERE id = ?", [row.archiveId]);
    if (archive === undefined) {
      throw new RangeError(
        `Cannot record retrieval ${row.id} in ${this.location}: unknown archive ${row.archiveId}`,
      );
    }
    await this.#exec(
      c,
      `INSERT INTO retrievals (${RETRIEVAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      retrievalValues(row),
    );
  }

  /** Throws a `RangeError` unless `id` is `null` or a recorded retrieval. */
  async #knownRetrieval(c: PoolConnection, what: string, id: string | null): Promise<void> {
    if (id === null) return;
    const [r] = await this.#rows(c, "SELECT id FROM retrievals WHERE id = ?", [id]);
    if (r === undefined) {
      throw new RangeError(`Cannot ${what} in ${this.location}: unknown retrieval ${id}`);
    }
  }

  /** The members (in input order) whose file is not in archive `id`. */
  async #notIn(
    c: PoolConnection,
    id: ArchiveId,
    members: readonly ArchiveMember[],
  ): Promise<FileId[]> {
    if (members.length === 0) return [];
    const inIt = new Set<number>();
    for (const r of await this.#rows(c, "SELECT id FROM files WHERE archive_id = ?", [id])) {
      inIt.add(int(r, "id"));
    }
    return members.filter((m) => !inIt.has(m.fileId)).map((m) => m.fileId);
  }

  async #recordLooseFailure(c: PoolConnection, failure: NewFailure): Promise<void> {
    const key = failure.key ?? null;
    const archive = failure.archiveId ?? null;
    const resolved = failure.resolved === true;
    // A repeat bumps the same row: an open one, or for a resolved fact, the same fact.
    const [open] = await this.#rows(
      c,
      `SELECT id FROM failures WHERE source = ? AND stage = ? AND code = ? AND file_id IS NULL
         AND (resolved_at IS NULL) = ? AND file_key <=> ? AND archive_id <=> ?
       LIMIT 1 FOR UPDATE`,
      [failure.source, failure.stage, failure.code, resolved ? 0 : 1, key, archive],
    );
    if (open !== undefined) {
      await this.#exec(
        c,
        "UPDATE failures SET message = ?, attempts = attempts + 1, last_at = ? WHERE id = ?",
        [failure.message, failure.nowMs, int(open, "id")],
      );
      return;
    }
    await this.#exec(
      c,
      `INSERT INTO failures (stage, code, message, source, file_id, file_key, archive_id,
         attempts, first_at, last_at, resolved_at)
       VALUES (?, ?, ?, ?, NULL, ?, ?, 1, ?, ?, ?)`,
      [
        failure.stage,
        failure.code,
        failure.message,
        failure.source,
        key,
        archive,
        failure.nowMs,
        failure.nowMs,
        resolved ? failure.nowMs : null,
      ],
    );
  }

  async #resolveFailures(c: PoolConnection, ids: readonly number[], nowMs: number): Promise<void> {
    await this.#exec(
      c,
      "UPDATE failures SET resolved_at = ? WHERE file_id IN (?) AND resolved_at IS NULL",
      [nowMs, ids],
    );
  }

  async #schemaVersion(c: PoolConnection): Promise<number> {
    const [table] = await this.#rows(
      c,
      `SELECT COUNT(*) AS n FROM information_schema.tables
       WHERE table_schema = DATABASE() AND table_name = 'schema_migrations'`,
    );
    if (table === undefined || int(table, "n") === 0) return 0;
    const [r] = await this.#rows(c, "SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations");
    return r === undefined ? 0 : int(r, "v");
  }

  /** Runs `fn` unless closed, turning the driver's errors into `PortError`s. */
  async #run<T>(what: string, fn: () => Promise<T>): Promise<T> {
    if (this.#closed) {
      throw new PortError(`Cannot ${what} in ${this.location}: the catalog is closed`, {
        code: "CATALOG_CLOSED",
        retryable: false,
      });
    }
    try {
      return await fn();
    } catch (e) {
      throw this.#wrap(e, what);
    }
  }

  /** Runs `fn` on one pooled connection (autocommit). */
  async #read<T>(fn: (c: PoolConnection) => Promise<T>): Promise<T> {
    const c = await this.#acquire();
    try {
      const result = await fn(c);
      c.release();
      return result;
    } catch (e) {
      if (isConnectionError(e)) c.destroy();
      else c.release();
      throw e;
    }
  }

  /** Runs `fn` inside START TRANSACTION ... COMMIT on one connection, rolling back if it throws. */
  async #tx<T>(fn: (c: PoolConnection) => Promise<T>): Promise<T> {
    const c = await this.#acquire();
    try {
      await this.#exec(c, "START TRANSACTION");
      const result = await fn(c);
      await this.#exec(c, "COMMIT");
      c.release();
      return result;
    } catch (e) {
      let broken = isConnectionError(e);
      if (!broken) {
        try {
          await this.#exec(c, "ROLLBACK");
        } catch {
          broken = true;
        }
      }
      if (broken) c.destroy();
      else c.release();
      throw e;
    }
  }

  /** A pooled connection with this catalog's session settings. */
  async #acquire(): Promise<PoolConnection> {
    const c = await this.#pool.getConnection();
    const driver = (c as unknown as { connection: object }).connection;
    if (!this.#ready.has(driver)) {
      try {
        // A failed connection may report more than one error; the pool
        // listens for the first only, and an unheard 'error' would throw.
        (driver as { on?: (event: string, f: () => void) => void }).on?.("error", () => {});
        await this.#exec(c, "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
        await this.#exec(
          c,
          "SET SESSION sql_mode = ?, SESSION innodb_lock_wait_timeout = ?, " +
            "SESSION time_zone = '+00:00'",
          [SQL_MODE, this.#lockWaitTimeoutSeconds],
        );
      } catch (e) {
        c.destroy();
        throw e;
      }
      this.#ready.add(driver);
    }
    return c;
  }

  /** Query options: the inactivity timeout unless `untimed` (migrations). */
  #options(sql: string, how: Statement): { sql: string; timeout?: number } {
    return this.#queryTimeoutMs === 0 || how.untimed === true
      ? { sql }
      : { sql, timeout: this.#queryTimeoutMs };
  }

  /** Rows of a SELECT; `?` placeholders are escaped by the client. */
  async #rows(
    c: PoolConnection,
    sql: string,
    params: readonly Param[] = [],
    how: Statement = {},
  ): Promise<Row[]> {
    const [rows] = await c.query<RowDataPacket[]>(this.#options(sql, how), [...params]);
    return rows as Row[];
  }

  /** The result of a statement that returns no rows. */
  async #exec(
    c: PoolConnection,
    sql: string,
    params: readonly Param[] = [],
    how: Statement = {},
  ): Promise<ResultSetHeader> {
    const [result] = await c.query<ResultSetHeader>(this.#options(sql, how), [...params]);
    return result;
  }

  /**
   * Our own validation errors and `PortError`s pass unchanged; the driver's
   * errors become a `PortError` with its code, naming the catalog and `what`.
   */
  #wrap(e: unknown, what: string): unknown {
    if (
      e instanceof PortError || e instanceof RangeError || e instanceof TypeError ||
      e instanceof SyntaxError || !(e instanceof Error)
    ) {
      return e;
    }
    const { code, retryable } = classify(e);
    const detail = e.message.replace(/\s+/g, " ").trim() || code;
    return new PortError(`Cannot ${what} in ${this.location}: ${detail} (${code})`, {
      code,
      retryable,
      cause: e,
    });
  }
}

// ---------------------------------------------------------------------------
// Errors

const ER_DUP_ENTRY = 1062;
/** Duplicate column name, duplicate key name: a re-run migration statement. */
const ALREADY_THERE = new Set([1060, 1061]);

/** Codes by number for errors the driver does not name (MariaDB's own, client numbers). */
const CODES_BY_ERRNO: Readonly<Record<number, string>> = {
  1053: "ER_SERVER_SHUTDOWN",
  1927: "ER_CONNECTION_KILLED",
  2006: "CR_SERVER_GONE_ERROR",
  2013: "CR_SERVER_LOST",
};

/** Codes after which the same call may succeed. */
const RETRYABLE = new Set([
  // the connection: lost, refused, reset, timed out, server restarting
  "PROTOCOL_CONNECTION_LOST",
  "PROTOCOL_SEQUENCE_TIMEOUT",
  "MYSQL_CONNECTION_CLOSED",
  "ECONNREFUSED",
  "ECONNRESET",
  "ECONNABORTED",
  "EPIPE",
  "ETIMEDOUT",
  "EHOSTUNREACH",
  "ENETUNREACH",
  "ENETDOWN",
  "EAI_AGAIN",
  "ER_SERVER_SHUTDOWN",
  "ER_CONNECTION_KILLED",
  "ER_CON_COUNT_ERROR",
  "ER_NET_READ_ERROR",
  "ER_NET_READ_INTERRUPTED",
  "ER_NET_ERROR_ON_WRITE",
  "ER_NET_WRITE_INTERRUPTED",
  "ER_CLIENT_INTERACTION_TIMEOUT",
  "CR_SERVER_GONE_ERROR",
  "CR_SERVER_LOST",
  // the transaction was rolled back or never got its locks
  "ER_LOCK_DEADLOCK",
  "ER_LOCK_WAIT_TIMEOUT",
  "ER_QUERY_INTERRUPTED",
]);

/** Codes after which a connection is not to be used again. */
const CONNECTION_CODES = new Set(
  [...RETRYABLE].filter((c) => c !== "ER_LOCK_DEADLOCK" && c !== "ER_LOCK_WAIT_TIMEOUT"),
);

function errno(e: unknown): number | undefined {
  const n = (e as { errno?: unknown } | null)?.errno;
  return typeof n === "number" ? n : undefined;
}

function classify(e: Error): { code: string; retryable: boolean } {
  const raw = (e as { code?: unknown }).code;
  const n = errno(e);
  let code = typeof raw === "string" && raw.length > 0
    ? raw
    : n !== undefined
    ? CODES_BY_ERRNO[n] ?? `ER_${n}`
    : undefined;
  const fatal = (e as { fatal?: unknown }).fatal === true;
  if (code === undefined) {
    if (e.message === "Pool is closed.") return { code: "CATALOG_CLOSED", retryable: false };
    code = fatal ? "MYSQL_CONNECTION_CLOSED" : "MYSQL_ERROR";
  }
  // A socket path that is not there (yet) while the server restarts.
  if (code === "ENOENT" && (e as { syscall?: unknown }).syscall === "connect") {
    return { code, retryable: true };
  }
  return { code, retryable: RETRYABLE.has(code) };
}

function isConnectionError(e: unknown): boolean {
  if (!(e instanceof Error)) return false;
  if ((e as { fatal?: unknown }).fatal === true) return true;
  const { code } = classify(e);
  return CONNECTION_CODES.has(code);
}

// ---------------------------------------------------------------------------
// Hashes (the same as the generated columns in schema.ts)

const NUL = Buffer.from([0]);

/** First 16 bytes of SHA-256(source, NUL, key): the `files.key_hash` column. */
function keyHash(source: string, key: string): Buffer {
  return createHash("sha256").update(Buffer.from(source, "utf8")).update(NUL)
    .update(Buffer.from(key, "utf8")).digest().subarray(0, 16);
}

/** First 16 bytes of SHA-256(version): the `files.version_hash` column. */
function versionHash(version: string): Buffer {
  return createHash("sha256").update(Buffer.from(version, "utf8")).digest().subarray(0, 16);
}

/**
 * First 16 bytes of SHA-256(store, NUL, job id): the `retrievals.job_hash`
 * column, computed like a file's key hash.
 */
function jobHash(store: string, job: string): Buffer {
  return keyHash(store, job);
}

function hashHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("hex");
}

function uniqueBuffers(xs: readonly Buffer[]): Buffer[] {
  const seen = new Map<string, Buffer>();
  for (const x of xs) seen.set(hashHex(x), x);
  return [...seen.values()];
}

// ---------------------------------------------------------------------------
// Validation (the SQLite catalog's rules and messages)

function checkPositive(what: string, v: number): void {
  if (!Number.isSafeInteger(v) || v <= 0) {
    throw new RangeError(`Invalid ${what}: ${v} is not a positive integer`);
  }
}

// ---------------------------------------------------------------------------
// Rows

function toFileRow(r: Row): FileRow {
  const archive = optStr(r, "archive_id");
  return {
    id: fileId(int(r, "id")),
    source: sourceId(str(r, "source")),
    key: str(r, "file_key"),
    version: str(r, "version"),
    domain: optStr(r, "domain"),
    storageClass: optStr(r, "storage_class"),
    sourceFid: optInt(r, "source_fid"),
    length: int(r, "length"),
    mtimeMs: int(r, "mtime_ms"),
    discoveredAt: int(r, "discovered_at"),
    state: state(r),
    md5: optStr(r, "md5"),
    archiveId: archive === null ? null : archiveId(archive),
    headerOffset: optInt(r, "header_offset"),
    dataOffset: optInt(r, "data_offset"),
    archivedAt: optInt(r, "archived_at"),
    attempts: int(r, "attempts"),
    nextAttemptAt: optInt(r, "next_attempt_at"),
    note: optStr(r, "note"),
    goneAt: optInt(r, "gone_at"),
  };
}

function bytes(r: Row, column: string): Uint8Array {
  const v = r[column];
  if (v instanceof Uint8Array) return v;
  throw new TypeError(`Catalog column ${column} is not bytes: ${v}`);
}
