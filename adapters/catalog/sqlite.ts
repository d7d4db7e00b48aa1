/**
 * The SQLite catalog: {@linkcode Catalog} on `node:sqlite` (`DatabaseSync`),
 * the embedded default (`--catalog sqlite:///path.db`).
 *
 * Durability: the database runs in WAL mode with `synchronous=FULL`, so every
 * committed transaction is fsynced before the call resolves. WAL with
 * `synchronous=NORMAL` would survive a `kill -9` of the process (committed
 * frames sit in the OS page cache) but not a power loss or kernel crash,
 * which may roll back the last commits. coldpack acts on commits outside the
 * database (a restore marked done lets the queue message be deleted; a cursor
 * moves past listed files), so a commit that resolved must stay committed.
 *
 * `node:sqlite` is synchronous: every method does all its work, including
 * its whole transaction, before its promise settles, so concurrent calls from
 * one process never interleave inside a transaction. Writes use
 * `BEGIN IMMEDIATE`, so another process holding the write lock makes a call
 * wait up to `busyTimeoutMs` and then reject with a retryable `PortError`
 * coded `SQLITE_BUSY`.
 *
 * @example
 * ```ts
 * import { SqliteCatalog } from "./sqlite.ts";
 * const catalog = await SqliteCatalog.open("/var/lib/coldpack/catalog.db");
 * console.log(await catalog.status());
 * await catalog.close();
 * ```
 * @module
 */

import { DatabaseSync, type SQLInputValue, type StatementSync } from "node:sqlite";
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
import { MIGRATIONS_TABLE, migrationsToApply } from "./schema.ts";
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
  asInt,
  asState,
  asText,
  AUDIT_COLUMNS,
  AUDIT_STATES,
  auditValues,
  DRILL_COLUMNS,
  DRILL_STATES,
  drillValues,
  FAILURE_COLUMNS,
  int,
  optInt,
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

/** Options for {@linkcode SqliteCatalog.open}. */
export interface SqliteCatalogOptions {
  /** Apply missing migrations while opening. Default `true`. */
  readonly migrate?: boolean;
  /** How long a call waits for another connection's write lock, in ms. Default `5000`. */
  readonly busyTimeoutMs?: number;
}

/** How many keys one `IN (...)` list holds. */
const KEY_CHUNK = 500;
/** How many entries one insert statement carries. */
const ENTRY_CHUNK = 1000;

/** The columns of a file row, in the order {@linkcode toFileRow} reads them. */
const FILE_COLUMN_LIST = [
  "id",
  "source",
  "file_key",
  "version",
  "domain",
  "storage_class",
  "source_fid",
  "length",
  "mtime_ms",
  "discovered_at",
  "state",
  "md5",
  "archive_id",
  "header_offset",
  "data_offset",
  "archived_at",
  "attempts",
  "next_attempt_at",
  "note",
  "gone_at",
] as const;
const FILE_COLUMNS = FILE_COLUMN_LIST.join(", ");

/**
 * A {@linkcode Catalog} kept in one SQLite database file (or `:memory:`).
 *
 * Beyond the interface: {@linkcode SqliteCatalog.schemaVersion}.
 *
 * Costs on large catalogs: every per-file call is an index lookup or a
 * range scan of an index; `latestVersions` queries 500 keys at a time;
 * `status` scans the `files_pending` covering index once (proportional to the
 * number of files, but never the table itself) and the archives table once.
 */
export class SqliteCatalog implements Catalog {
  #db: DatabaseSync;
  #statements = new Map<string, StatementSync>();
  #closed = false;

  private constructor(db: DatabaseSync) {
    this.#db = db;
  }

  /**
   * Opens (creating if needed) the catalog at `path`; `":memory:"` makes a
   * private in-memory one. Applies missing migrations unless `migrate` is
   * false.
   *
   * @param path database file path, or `":memory:"`
   * @param options see {@linkcode SqliteCatalogOptions}
   */
  static async open(path: string, options: SqliteCatalogOptions = {}): Promise<SqliteCatalog> {
    const busyTimeoutMs = options.busyTimeoutMs ?? 5000;
    if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
      throw new RangeError(`Invalid busy timeout: ${busyTimeoutMs} is not a non-negative integer`);
    }
    if (typeof path !== "string" || path.length === 0) {
      throw new TypeError("Invalid catalog path: empty");
    }
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path);
    } catch (e) {
      throw wrap(e, `open catalog ${path}`);
    }
    try {
      // Before anything that may need the write lock, so that it waits.
      db.exec(`PRAGMA busy_timeout = ${busyTimeoutMs}`);
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("PRAGMA synchronous = FULL");
      // 8 MiB of page cache (default 2 MiB): a commit of thousands of files
      // touches index pages all over; with a small cache they spill to the WAL
      // mid-transaction, several page writes per file.
      db.exec("PRAGMA cache_size = -8192");
      // Temporary b-trees (IN lists, sorts) stay in memory instead of /var/tmp files.
      db.exec("PRAGMA temp_store = MEMORY");
      db.exec("PRAGMA foreign_keys = ON");
    } catch (e) {
      db.close();
      throw wrap(e, `open catalog ${path}`);
    }
    const catalog = new SqliteCatalog(db);
    if (options.migrate ?? true) {
      try {
        await catalog.migrate();
      } catch (e) {
        await catalog.close();
        throw e;
      }
    }
    return catalog;
  }

  /** The schema version of the database: 0 when no migration was applied. */
  schemaVersion(): Promise<number> {
    return this.#run("read the schema version", () => this.#schemaVersion());
  }

  /** Brings the schema to the newest version, one transaction per migration; returns it. */
  migrate(): Promise<number> {
    return this.#run("migrate the catalog", () => {
      this.#db.exec(MIGRATIONS_TABLE.sqlite);
      // Checked before and again inside each transaction: another process
      // may be migrating the same file.
      let version = this.#schemaVersion();
      for (const step of migrationsToApply("sqlite", version)) {
        this.#write(() => {
          const now = this.#schemaVersion();
          migrationsToApply("sqlite", now); // refuses a database that became newer
          if (now >= step.version) return;
          for (const sql of step.sql) this.#db.exec(sql);
          this.#stmt("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
            .run(step.version, step.name, Date.now());
        });
        version = step.version;
      }
      return Math.max(version, this.#schemaVersion());
    });
  }

  /** The latest version (by discovery order) of each known key of `keys`. */
  latestVersions(source: SourceId, keys: readonly string[]): Promise<Map<string, KnownVersion>> {
    return this.#run("read latest versions", () => {
      const found = new Map<string, KnownVersion>();
      const unique = [...new Set(keys)];
      const latest = this.#stmt(
        `SELECT file_key, version, state FROM files WHERE id IN (
           SELECT MAX(id) FROM files WHERE source = ?
             AND file_key IN (SELECT value FROM json_each(?)) GROUP BY file_key)`,
      );
      for (let i = 0; i < unique.length; i += KEY_CHUNK) {
        const chunk = JSON.stringify(unique.slice(i, i + KEY_CHUNK));
        for (const r of latest.all(source, chunk) as Row[]) {
          found.set(str(r, "file_key"), { version: str(r, "version"), state: state(r) });
        }
      }
      return found;
    });
  }

  /**
   * Records new versions as `pending` in one transaction and supersedes older
   * pending versions of their keys. Returns every row it inserted, in input
   * order, with its final state: a version followed in the same batch by a
   * newer version of its key comes back `superseded`.
   *
   * Entries go to SQLite 1,000 at a time as one JSON parameter, so a large
   * batch costs a few statements, not a few per entry.
   */
  addDiscovered(
    source: SourceId,
    entries: readonly SourceEntry[],
    nowMs: number,
  ): Promise<FileRow[]> {
    return this.#run("add discovered files", () => {
      checkTime("nowMs", nowMs);
      entries.forEach(checkEntry);
      if (entries.length === 0) return [];
      // Rows are inserted in array order, so their ids follow it.
      const insert = this.#stmt(
        `INSERT INTO files (source, file_key, version, domain, storage_class, source_fid, length,
           mtime_ms, discovered_at, state, attempts)
         SELECT ?, e.value ->> 0, e.value ->> 1, e.value ->> 2, e.value ->> 3, e.value ->> 4,
           e.value ->> 5, e.value ->> 6, ?, 'pending', 0
         FROM json_each(?) AS e
         WHERE NOT EXISTS (SELECT 1 FROM files AS f INDEXED BY files_version
                           WHERE f.source = ?1 AND f.file_key = e.value ->> 0
                             AND f.version = e.value ->> 1)
         ON CONFLICT (source, file_key, version) DO NOTHING
         RETURNING id, file_key, version`,
      );
      // Every pending version but the newest of each key; the index hint
      // keeps SQLite from walking all pending files of the source instead.
      const supersede = this.#stmt(
        `UPDATE files INDEXED BY files_version SET state = 'superseded', next_attempt_at = NULL,
           claimed_by = NULL
         WHERE source = ? AND file_key IN (SELECT value FROM json_each(?)) AND state = 'pending'
           AND id < (SELECT MAX(f.id) FROM files AS f
                     WHERE f.source = files.source AND f.file_key = files.file_key
                       AND f.domain IS files.domain)
         RETURNING id`,
      );
      return this.#write(() => {
        const added: FileRow[] = [];
        const position = new Map<number, number>();
        for (let i = 0; i < entries.length; i += ENTRY_CHUNK) {
          const chunk = entries.slice(i, i + ENTRY_CHUNK);
          const json = JSON.stringify(chunk.map((e) => [
            e.key,
            e.version,
            e.domain ?? null,
            e.storageClass ?? null,
            e.sourceFid ?? null,
            e.length,
            e.mtimeMs,
          ]));
          const inserted = (insert.all(source, nowMs, json) as Row[])
            .map((r) => ({ id: int(r, "id"), key: str(r, "file_key"), version: str(r, "version") }))
            .sort((p, q) => p.id - q.id);
          // Match inserted rows to entries: both are in input order; entries
          // that were already known (or repeated) have no row.
          let next = 0;
          for (const e of chunk) {
            const r = inserted[next];
            if (r === undefined) break;
            if (r.key !== e.key || r.version !== e.version) continue;
            next++;
            position.set(r.id, added.length);
            added.push(newFileRow(fileId(r.id), source, e, nowMs));
          }
          if (next !== inserted.length) {
            throw new TypeError("Cannot match inserted files to their entries: order differs");
          }
          if (inserted.length === 0) continue;
          const keys = JSON.stringify([...new Set(inserted.map((r) => r.key))]);
          for (const old of supersede.all(source, keys) as Row[]) {
            const id = int(old, "id");
            this.#resolveFailures(id, nowMs);
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
    return this.#run("read pending files", () => {
      checkLimit(options.limit);
      checkTime("nowMs", options.nowMs);
      return this.#fileRows(
        `SELECT ${FILE_COLUMNS} FROM files
         WHERE source = ? AND state = 'pending' AND id > ?
           AND (next_attempt_at IS NULL OR next_attempt_at <= ?)
         ORDER BY id LIMIT ?`,
        source,
        options.afterId ?? 0,
        options.nowMs,
        options.limit,
      );
    });
  }

  /**
   * Claims due pending files for `owner` (see {@linkcode Catalog.claimFiles}):
   * one UPDATE ... RETURNING, atomic because SQLite has one writer at a time.
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
    return this.#run("claim pending files", () => {
      checkLimit(options.limit);
      checkTime("nowMs", options.nowMs);
      checkOwner(options.owner);
      return this.#write(() =>
        this.#fileRows(
          `UPDATE files SET claimed_by = ? WHERE id IN (
             SELECT id FROM files INDEXED BY files_pending
             WHERE state = 'pending' AND source = ? AND id > ?
               AND (next_attempt_at IS NULL OR next_attempt_at <= ?)
               AND (claimed_by IS NULL OR claimed_by = ? OR NOT EXISTS (
                 SELECT 1 FROM leases WHERE name = 'worker:' || files.claimed_by
                   AND expires_at > ?))
             ORDER BY id LIMIT ?)
           RETURNING ${FILE_COLUMNS}`,
          options.owner,
          source,
          options.afterId ?? 0,
          options.nowMs,
          options.owner,
          options.nowMs,
          options.limit,
        ).sort((a, b) => a.id - b.id)
      );
    });
  }

  /** Takes or renews a lease (see {@linkcode Catalog.acquireLease}). */
  acquireLease(name: string, owner: string, ttlMs: number, nowMs: number): Promise<boolean> {
    return this.#run(`acquire lease ${name}`, () => {
      checkLease(name, owner, ttlMs, nowMs);
      return this.#write(() => {
        const r = this.#stmt(
          `INSERT INTO leases (name, owner, expires_at) VALUES (?, ?, ?)
           ON CONFLICT (name) DO UPDATE SET owner = excluded.owner,
             expires_at = excluded.expires_at
           WHERE leases.owner = excluded.owner OR leases.expires_at <= ?`,
        ).run(name, owner, nowMs + ttlMs, nowMs);
        return Number(r.changes) > 0;
      });
    });
  }

  /** Gives up a lease held by `owner`. */
  releaseLease(name: string, owner: string): Promise<void> {
    return this.#run(`release lease ${name}`, () => {
      checkOwner(owner);
      this.#write(() => {
        this.#stmt("DELETE FROM leases WHERE name = ? AND owner = ?").run(name, owner);
      });
    });
  }

  /**
   * Marks the `pending` files among `ids` `vanished` with `reason` as note and
   * resolves their failures; other ids (any other state, unknown) are left alone.
   */
  markVanished(ids: readonly FileId[], reason: string, nowMs: number): Promise<void> {
    return this.#run("mark files vanished", () => {
      checkTime("nowMs", nowMs);
      if (ids.length === 0) return;
      const mark = this.#stmt(
        `UPDATE files SET state = 'vanished', note = ?, next_attempt_at = NULL, claimed_by = NULL
         WHERE id = ? AND state = 'pending'`,
      );
      this.#write(() => {
        for (const id of ids) {
          if (Number(mark.run(reason, id).changes) > 0) this.#resolveFailures(id, nowMs);
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
    return this.#run("mark files gone", () => {
      checkTime("nowMs", nowMs);
      checkSpan(span, present);
      const find = this.#stmt(
        `SELECT id, source_fid, state FROM files INDEXED BY files_source_fid
         WHERE source = ? AND source_fid > ? AND source_fid <= ? AND source_fid IS NOT NULL
           AND gone_at IS NULL`,
      );
      const markGone = this.#stmt(`UPDATE files SET gone_at = ? WHERE id = ?`);
      const vanish = this.#stmt(
        `UPDATE files SET state = 'vanished', note = ?, next_attempt_at = NULL, claimed_by = NULL
         WHERE id = ? AND state = 'pending'`,
      );
      return this.#write(() => {
        const here = new Set(present);
        let gone = 0;
        let vanished = 0;
        for (const r of find.all(source, span.from, span.to) as Row[]) {
          if (here.has(int(r, "source_fid"))) continue;
          const id = int(r, "id");
          markGone.run(nowMs, id);
          gone++;
          if (str(r, "state") === "pending" && Number(vanish.run(GONE_NOTE, id).changes) > 0) {
            this.#resolveFailures(id, nowMs);
            vanished++;
          }
        }
        return { gone, vanished };
      });
    });
  }

  /**
   * Records a failure. With a `fileId`: one row per (file, stage, code), a
   * repeat bumps `attempts` and `lastAt` and replaces the message. A pending
   * file gets `attempts + 1`, `note = message` and either `nextAttemptAt =
   * retryAt` or state `failed` when `retryAt` is null; a failed file gets
   * `attempts + 1` and the note; a file already archived, vanished or
   * superseded is left alone and the failure is recorded as resolved at once.
   * Without a `fileId`: a repeat of an open failure with the same source,
   * stage, code, key and archive id bumps that row instead of adding one.
   * Rejects with a `RangeError` for an unknown file id.
   */
  recordFailure(failure: NewFailure): Promise<void> {
    return this.#run("record a failure", () => {
      checkTime("nowMs", failure.nowMs);
      if (!STAGES.includes(failure.stage)) {
        throw new RangeError(`Invalid failure stage: "${failure.stage}"`);
      }
      if (failure.retryAt !== null) checkTime("retryAt", failure.retryAt);
      const now = failure.nowMs;
      this.#write(() => {
        if (failure.fileId === undefined) {
          this.#recordLooseFailure(failure);
          return;
        }
        const id = failure.fileId;
        const file = this.#stmt("SELECT state, file_key FROM files WHERE id = ?").get(id) as
          | Row
          | undefined;
        if (file === undefined) {
          throw new RangeError(`Cannot record a failure: unknown file fid:${id}`);
        }
        const fileState = state(file);
        if (fileState === "pending" && failure.retryAt === null) {
          this.#stmt(
            `UPDATE files SET attempts = attempts + 1, note = ?, state = 'failed',
               next_attempt_at = NULL, claimed_by = NULL WHERE id = ?`,
          ).run(failure.message, id);
        } else if (fileState === "pending") {
          this.#stmt(
            "UPDATE files SET attempts = attempts + 1, note = ?, next_attempt_at = ?, claimed_by = NULL WHERE id = ?",
          ).run(failure.message, failure.retryAt, id);
        } else if (fileState === "failed") {
          this.#stmt("UPDATE files SET attempts = attempts + 1, note = ? WHERE id = ?")
            .run(failure.message, id);
        }
        const resolvedAt = fileState === "pending" || fileState === "failed" ? null : now;
        this.#stmt(
          `INSERT INTO failures (stage, code, message, source, file_id, file_key, archive_id,
             attempts, first_at, last_at, resolved_at)
           VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?)
           ON CONFLICT (file_id, stage, code) DO UPDATE SET
             message = excluded.message, attempts = attempts + 1, last_at = excluded.last_at,
             resolved_at = excluded.resolved_at, source = excluded.source,
             file_key = COALESCE(excluded.file_key, file_key),
             archive_id = COALESCE(excluded.archive_id, archive_id)`,
        ).run(
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
        );
      });
    });
  }

  /**
   * In one transaction: inserts the archive and marks every member that is
   * `pending` or `superseded` as `archived` (md5, length, offsets, archive id,
   * `archivedAt = committedAt`), resolving its failures. Members in any other
   * state, or unknown, are untouched and returned in `skipped`.
   *
   * Committing again an archive already committed with the same remote id
   * and tree hash changes nothing (a retry after a lost answer); with another
   * remote id or tree hash it rejects, changing nothing, with a `PortError`
   * coded `ARCHIVE_EXISTS`; and it rejects with a `RangeError` for an
   * invalid member (md5 not 32 lower-case hex digits, bad offsets, a file
   * listed twice).
   */
  commitArchive(
    archive: ArchiveRow,
    members: readonly ArchiveMember[],
  ): Promise<{ readonly skipped: FileId[] }> {
    return this.#run(`commit archive ${archive.id}`, () => {
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
      const archiveMember = this.#stmt(
        `UPDATE files SET state = 'archived', md5 = ?, length = ?, archive_id = ?,
           header_offset = ?, data_offset = ?, archived_at = ?, next_attempt_at = NULL,
           claimed_by = NULL
         WHERE id = ? AND state IN ('pending', 'superseded')`,
      );
      return this.#write(() => {
        const existing = this.#stmt("SELECT remote_id, tree_hash FROM archives WHERE id = ?")
          .get(archive.id) as Row | undefined;
        if (existing !== undefined) {
          if (
            str(existing, "remote_id") !== archive.remoteId ||
            str(existing, "tree_hash") !== archive.treeHash
          ) {
            throw new PortError(
              `Cannot commit archive ${archive.id}: it is already committed with another remote id or tree hash`,
              { code: "ARCHIVE_EXISTS", retryable: false },
            );
          }
          // A retry of a commit whose answer was lost: it is done already.
          const inIt = this.#stmt("SELECT 1 AS x FROM files WHERE id = ? AND archive_id = ?");
          return {
            skipped: members.filter((m) => inIt.get(m.fileId, archive.id) === undefined).map((m) =>
              m.fileId
            ),
          };
        }
        this.#stmt(
          `INSERT INTO archives (${ARCHIVE_COLUMNS}, seq, state)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?,
             COALESCE((SELECT MAX(seq) FROM archives), 0) + 1, 'committed')`,
        ).run(
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
        );
        this.#stmt(
          "UPDATE archive_stats SET archives = archives + 1, bytes = bytes + ? WHERE id = 1",
        ).run(archive.size);
        const skipped: FileId[] = [];
        for (const m of members) {
          const changed = archiveMember.run(
            m.md5,
            m.length,
            archive.id,
            m.headerOffset,
            m.dataOffset,
            archive.committedAt,
            m.fileId,
          ).changes;
          if (Number(changed) === 0) skipped.push(m.fileId);
        }
        // One statement for the archive: only files that were ever retried have failures.
        this.#stmt(
          `UPDATE failures SET resolved_at = ? WHERE resolved_at IS NULL AND file_id IN
             (SELECT id FROM files WHERE archive_id = ? AND attempts > 0)`,
        ).run(archive.committedAt, archive.id);
        return { skipped };
      });
    });
  }

  /** The cursor named `name`, or `null` when never set. */
  getCursor(name: string): Promise<string | null> {
    return this.#run(`read cursor ${name}`, () => {
      const r = this.#stmt("SELECT value FROM cursors WHERE name = ?").get(name) as
        | Row
        | undefined;
      return r === undefined ? null : str(r, "value");
    });
  }

  /** Sets the cursor named `name`. */
  setCursor(name: string, value: string): Promise<void> {
    return this.#run(`set cursor ${name}`, () => {
      if (typeof name !== "string" || name.length === 0) {
        throw new TypeError("Invalid cursor name: empty");
      }
      if (typeof value !== "string") throw new TypeError(`Invalid value for cursor ${name}`);
      this.#write(() => {
        this.#stmt(
          `INSERT INTO cursors (name, value, updated_at) VALUES (?, ?, ?)
           ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at`,
        ).run(name, value, Date.now());
      });
    });
  }

  /** One file version, or `null`. */
  file(id: FileId): Promise<FileRow | null> {
    return this.#run(`read file fid:${id}`, () => {
      return this.#fileRows(`SELECT ${FILE_COLUMNS} FROM files WHERE id = ?`, id)[0] ?? null;
    });
  }

  /** Every version of `key` at `source`, newest (last discovered) first. */
  fileVersions(source: SourceId, key: string): Promise<FileRow[]> {
    return this.#run("read file versions", () => {
      return this.#fileRows(
        `SELECT ${FILE_COLUMNS} FROM files WHERE source = ? AND file_key = ? ORDER BY id DESC`,
        source,
        key,
      );
    });
  }

  /** One archive, or `null`. */
  archive(id: ArchiveId): Promise<ArchiveRow | null> {
    return this.#run(`read archive ${id}`, () => {
      const r = this.#stmt(`SELECT ${ARCHIVE_COLUMNS} FROM archives WHERE id = ?`).get(id) as
        | Row
        | undefined;
      return r === undefined ? null : toArchiveRow(r);
    });
  }

  /** The files archived in `id`, by data offset. */
  archiveFiles(id: ArchiveId): Promise<FileRow[]> {
    return this.#run(`read files of archive ${id}`, () => {
      return this.#fileRows(
        `SELECT ${FILE_COLUMNS} FROM files WHERE archive_id = ? ORDER BY data_offset, id`,
        id,
      );
    });
  }

  /** Archives in byte-wise id order, after `afterId`, at most `limit`. */
  archives(
    options: { readonly limit: number; readonly afterId?: ArchiveId },
  ): Promise<ArchiveRow[]> {
    return this.#run("read archives", () => {
      checkLimit(options.limit);
      const rows = this.#stmt(
        `SELECT ${ARCHIVE_COLUMNS} FROM archives WHERE id > ? ORDER BY id LIMIT ?`,
      ).all(options.afterId ?? "", options.limit) as Row[];
      return rows.map(toArchiveRow);
    });
  }

  /**
   * Counts, from one read snapshot. Scans the `files_pending` index (all files)
   * and the archives table; finds the oldest pending file by index.
   */
  status(): Promise<CatalogStatus> {
    return this.#run("read status", () => {
      this.#db.exec("BEGIN");
      try {
        const files: Record<FileState, number> = {
          pending: 0,
          archived: 0,
          vanished: 0,
          failed: 0,
          superseded: 0,
        };
        const bytes: Record<FileState, number> = { ...files };
        const perState = this.#stmt(
          "SELECT state, COUNT(*) AS n, COALESCE(SUM(length), 0) AS bytes FROM files GROUP BY state",
        ).all() as Row[];
        for (const r of perState) {
          const s = state(r);
          files[s] = int(r, "n");
          bytes[s] = int(r, "bytes");
        }
        const oldest = this.#stmt(
          "SELECT MIN(discovered_at) AS t FROM files WHERE state = 'pending'",
        ).get() as Row;
        const archives = this.#stmt(
          "SELECT COUNT(*) AS n, COALESCE(SUM(size), 0) AS bytes FROM archives",
        ).get() as Row;
        const failures = this.#stmt(
          "SELECT COUNT(*) AS n FROM failures WHERE resolved_at IS NULL",
        ).get() as Row;
        return {
          files,
          archives: int(archives, "n"),
          storedBytes: int(archives, "bytes"),
          archivedBytes: bytes.archived,
          pendingBytes: bytes.pending,
          oldestPendingAt: optInt(oldest, "t"),
          openFailures: int(failures, "n"),
        };
      } finally {
        this.#db.exec("COMMIT");
      }
    });
  }

  /**
   * Records a retrieval just started at a store. A second call with the same
   * id changes nothing. Rejects with a `RangeError` for an unknown archive,
   * and with a `PortError` coded `RETRIEVAL_EXISTS` when the store's job is
   * already recorded under another id.
   */
  addRetrieval(row: RetrievalRow): Promise<void> {
    return this.#run(`record retrieval ${row.id}`, () => {
      checkRetrievalRow(row);
      this.#write(() => {
        if (this.#stmt("SELECT 1 AS x FROM retrievals WHERE id = ?").get(row.id) !== undefined) {
          return;
        }
        const other = this.#stmt("SELECT id FROM retrievals WHERE store = ? AND job_id = ?")
          .get(row.store, row.jobId) as Row | undefined;
        if (other !== undefined) throw retrievalExists(row, str(other, "id"), "");
        if (
          this.#stmt("SELECT 1 AS x FROM archives WHERE id = ?").get(row.archiveId) === undefined
        ) {
          throw new RangeError(
            `Cannot record retrieval ${row.id}: unknown archive ${row.archiveId}`,
          );
        }
        this.#stmt(
          `INSERT INTO retrievals (${RETRIEVAL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
        ).run(...retrievalValues(row));
      });
    });
  }

  /**
   * Sets a retrieval's state, and each of `readyAt`, `expiresAt`, `failure`
   * that `update` has (`null` clears it; an absent one is left as it is).
   * Rejects with a `RangeError` for an unknown id.
   */
  updateRetrieval(id: RetrievalId, update: RetrievalUpdate): Promise<void> {
    return this.#run(`update retrieval ${id}`, () => {
      checkRetrievalUpdate(id, update);
      const { columns, values } = retrievalUpdateColumns(update);
      this.#write(() => {
        const r = this.#stmt(
          `UPDATE retrievals SET ${columns.map((c) => `${c} = ?`).join(", ")} WHERE id = ?`,
        ).run(...values, id);
        if (Number(r.changes) === 0) {
          throw new RangeError(`Cannot update retrieval ${id}: unknown retrieval id`);
        }
      });
    });
  }

  /** One retrieval, or `null`. */
  retrieval(id: RetrievalId): Promise<RetrievalRow | null> {
    return this.#run(`read retrieval ${id}`, () => {
      const r = this.#stmt(`SELECT ${RETRIEVAL_COLUMNS} FROM retrievals WHERE id = ?`).get(id) as
        | Row
        | undefined;
      return r === undefined ? null : toRetrievalRow(r);
    });
  }

  /** The retrieval of store job `jobId` at `store`, or `null`. */
  retrievalByJob(store: string, jobId: JobId): Promise<RetrievalRow | null> {
    return this.#run(`read the retrieval of job ${jobId}`, () => {
      const r = this.#stmt(
        `SELECT ${RETRIEVAL_COLUMNS} FROM retrievals WHERE store = ? AND job_id = ?`,
      ).get(store, jobId) as Row | undefined;
      return r === undefined ? null : toRetrievalRow(r);
    });
  }

  /**
   * In-progress or ready retrievals of `archiveIds` not expired at `nowMs`
   * (`expiresAt` null or later), by archive id, start time and id.
   */
  liveRetrievals(archiveIds: readonly ArchiveId[], nowMs: number): Promise<RetrievalRow[]> {
    return this.#run("read live retrievals", () => {
      checkTime("nowMs", nowMs);
      const unique = uniqueArchiveIds(archiveIds);
      const live = this.#stmt(
        `SELECT ${RETRIEVAL_COLUMNS} FROM retrievals INDEXED BY retrievals_live
         WHERE archive_id IN (SELECT value FROM json_each(?))
           AND state IN ('in-progress', 'ready') AND (expires_at IS NULL OR expires_at > ?)`,
      );
      const found: RetrievalRow[] = [];
      for (let i = 0; i < unique.length; i += KEY_CHUNK) {
        const chunk = JSON.stringify(unique.slice(i, i + KEY_CHUNK));
        for (const r of live.all(chunk, nowMs) as Row[]) found.push(toRetrievalRow(r));
      }
      return found.sort(compareRetrievals);
    });
  }

  /**
   * Records restores as `pending` (`overwrite` false unless asked) in one
   * transaction and returns them in input order; a request whose key is
   * known (also earlier in the same call) returns the row recorded for that
   * key, unchanged. Rejects with a `RangeError` naming an unknown file id,
   * recording nothing.
   */
  addRestores(requests: readonly RestoreRequest[], nowMs: number): Promise<RestoreRow[]> {
    return this.#run("add restores", () => {
      checkMs("nowMs", nowMs);
      requests.forEach(checkRestoreRequest);
      if (requests.length === 0) return [];
      const byKey = this.#stmt(`SELECT ${RESTORE_COLUMNS} FROM restores WHERE restore_key = ?`);
      const fileKnown = this.#stmt("SELECT 1 AS x FROM files WHERE id = ?");
      const insert = this.#stmt(
        `INSERT INTO restores (restore_key, file_id, dest, state, requested_at, requested_by,
           overwrite) VALUES (?, ?, ?, 'pending', ?, ?, ?) RETURNING ${RESTORE_COLUMNS}`,
      );
      return this.#write(() =>
        requests.map((q) => {
          const known = byKey.get(q.key) as Row | undefined;
          if (known !== undefined) return toRestoreRow(known);
          if (fileKnown.get(q.fileId) === undefined) {
            throw new RangeError(
              `Cannot add restore ${JSON.stringify(q.key)}: unknown file fid:${q.fileId}`,
            );
          }
          return toRestoreRow(
            insert.get(q.key, q.fileId, q.dest, nowMs, q.requestedBy, q.overwrite ? 1 : 0) as Row,
          );
        })
      );
    });
  }

  /**
   * Points the `pending` restores among `ids` at `retrieval`; others (done,
   * failed) are left alone. Rejects with a `RangeError`, changing nothing,
   * for an unknown retrieval or restore id.
   */
  assignRestores(ids: readonly number[], retrieval: RetrievalId): Promise<void> {
    return this.#run(`assign restores to retrieval ${retrieval}`, () => {
      checkRetrievalId(retrieval);
      ids.forEach(checkRestoreId);
      if (ids.length === 0) return;
      const known = this.#stmt("SELECT 1 AS x FROM restores WHERE id = ?");
      const assign = this.#stmt(
        "UPDATE restores SET retrieval_id = ? WHERE id = ? AND state = 'pending'",
      );
      this.#write(() => {
        if (this.#stmt("SELECT 1 AS x FROM retrievals WHERE id = ?").get(retrieval) === undefined) {
          throw new RangeError(
            `Cannot assign restores to retrieval ${retrieval}: unknown retrieval id`,
          );
        }
        for (const id of ids) {
          if (known.get(id) === undefined) {
            throw new RangeError(
              `Cannot assign restore ${id} to retrieval ${retrieval}: unknown restore id`,
            );
          }
          assign.run(retrieval, id);
        }
      });
    });
  }

  /**
   * Finishes a `pending` restore (`done` or `failed`, with `note` and
   * `finishedAt = nowMs`); resolves false, changing nothing, when it was
   * finished already. Rejects with a `RangeError` for an unknown id.
   */
  finishRestore(
    id: number,
    outcome: { readonly state: "done" | "failed"; readonly note: string },
    nowMs: number,
  ): Promise<boolean> {
    return this.#run(`finish restore ${id}`, () => {
      checkRestoreOutcome(id, outcome, nowMs);
      return this.#write(() => {
        const r = this.#stmt(
          `UPDATE restores SET state = ?, note = ?, finished_at = ?
           WHERE id = ? AND state = 'pending'`,
        ).run(outcome.state, outcome.note, nowMs, id);
        if (Number(r.changes) > 0) return true;
        if (this.#stmt("SELECT 1 AS x FROM restores WHERE id = ?").get(id) === undefined) {
          throw new RangeError(`Cannot finish restore ${id}: unknown restore id`);
        }
        return false;
      });
    });
  }

  /**
   * Restores by id after `afterId`, at most `limit`; only those in `states`
   * (none when it is empty) and served by `retrievalId`, when given.
   */
  restores(options: RestoresQuery): Promise<RestoreRow[]> {
    return this.#run("read restores", () => {
      checkRestoresQuery(options);
      const states = options.states === undefined ? undefined : [...new Set(options.states)];
      if (options.limit === 0 || states?.length === 0) return [];
      const where = ["id > ?"];
      const params: SQLInputValue[] = [options.afterId ?? 0];
      if (states !== undefined) {
        where.push(`state IN (${states.map(() => "?").join(", ")})`);
        params.push(...states);
      }
      if (options.retrievalId !== undefined) {
        where.push("retrieval_id = ?");
        params.push(options.retrievalId);
      }
      const rows = this.#stmt(
        `SELECT ${RESTORE_COLUMNS} FROM restores WHERE ${where.join(" AND ")} ORDER BY id LIMIT ?`,
      ).all(...params, options.limit) as Row[];
      return rows.map(toRestoreRow);
    });
  }

  /**
   * The ends of the `seq` index and the running count and bytes of
   * `archive_stats`, in one statement; `null` when there is no archive.
   */
  archiveSeqRange(): Promise<ArchiveSeqRange | null> {
    return this.#run("read the archive seq range", () => {
      const r = this.#stmt(
        `SELECT (SELECT MIN(seq) FROM archives) AS lo, (SELECT MAX(seq) FROM archives) AS hi,
           archives AS n, bytes FROM archive_stats WHERE id = 1`,
      ).get() as Row | undefined;
      const lo = r === undefined ? null : optInt(r, "lo");
      const hi = r === undefined ? null : optInt(r, "hi");
      if (r === undefined || lo === null || hi === null) return null;
      return { min: lo, max: hi, count: int(r, "n"), bytes: int(r, "bytes") };
    });
  }

  /** The archives with these seqs (unique index lookups), by seq; gaps are left out. */
  archivesBySeq(seqs: readonly number[]): Promise<ArchiveRow[]> {
    return this.#run("read archives by seq", () => {
      const unique = uniqueSeqs(seqs);
      if (unique.length === 0) return [];
      const rows = this.#stmt(
        `SELECT ${ARCHIVE_COLUMNS} FROM archives
         WHERE seq IN (SELECT value FROM json_each(?)) ORDER BY seq`,
      ).all(JSON.stringify(unique)) as Row[];
      return rows.map(toArchiveRow);
    });
  }

  /** Range lengths, or archive sizes for whole retrievals, of retrievals started since `sinceMs`. */
  retrievedBytesSince(sinceMs: number): Promise<number> {
    return this.#run("read retrieved bytes", () => {
      checkMs("sinceMs", sinceMs);
      const r = this.#stmt(
        `SELECT COALESCE(SUM(CASE WHEN r.range_start IS NULL THEN a.size
             ELSE r.range_end - r.range_start + 1 END), 0) AS bytes
         FROM retrievals AS r INDEXED BY retrievals_started JOIN archives AS a ON a.id = r.archive_id
         WHERE r.started_at >= ?`,
      ).get(sinceMs) as Row;
      return int(r, "bytes");
    });
  }

  /**
   * Records an audit; a second call with the same id changes nothing.
   * Rejects with a `RangeError` for an unknown archive or retrieval.
   */
  addAudit(row: AuditRow): Promise<void> {
    return this.#run(`record audit ${row.id}`, () => {
      checkAuditRow(row);
      this.#write(() => {
        if (this.#stmt("SELECT 1 AS x FROM audits WHERE id = ?").get(row.id) !== undefined) return;
        if (
          this.#stmt("SELECT 1 AS x FROM archives WHERE id = ?").get(row.archiveId) === undefined
        ) {
          throw new RangeError(`Cannot record audit ${row.id}: unknown archive ${row.archiveId}`);
        }
        this.#knownRetrieval(`record audit ${row.id}`, row.retrievalId);
        this.#stmt(`INSERT INTO audits (${AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
          .run(...auditValues(row));
      });
    });
  }

  /**
   * Sets an audit's state and `updatedAt`, and each optional field that
   * `update` has. Rejects with a `RangeError` for an unknown audit or retrieval.
   */
  updateAudit(id: AuditId, update: AuditUpdate): Promise<void> {
    return this.#run(`update audit ${id}`, () => {
      checkAuditUpdate(id, update);
      const { columns, values } = auditUpdateColumns(update);
      this.#write(() => {
        this.#knownRetrieval(`update audit ${id}`, update.retrievalId ?? null);
        const r = this.#stmt(
          `UPDATE audits SET ${columns.map((c) => `${c} = ?`).join(", ")} WHERE id = ?`,
        ).run(...values, id);
        if (Number(r.changes) === 0) {
          throw new RangeError(`Cannot update audit ${id}: unknown audit id`);
        }
      });
    });
  }

  /** Audits by id (oldest or newest first) after `afterId`, at most `limit`, in `states`. */
  audits(options: HistoryQuery<AuditRow["state"], AuditId>): Promise<AuditRow[]> {
    return this.#run("read audits", () => {
      const states = checkHistoryQuery("audit", AUDIT_STATES, options);
      if (options.limit === 0 || states?.length === 0) return [];
      const { where, order, params } = historyPage(options, states);
      const rows = this.#stmt(`SELECT ${AUDIT_COLUMNS} FROM audits ${where} ${order} LIMIT ?`)
        .all(...params, options.limit) as Row[];
      return rows.map(toAuditRow);
    });
  }

  /**
   * Records a drill file; a second call with the same id changes nothing.
   * Rejects with a `RangeError` for an unknown restore or file, or a restore
   * of another file.
   */
  addDrill(row: DrillRow): Promise<void> {
    return this.#run(`record drill ${row.id}`, () => {
      checkDrillRow(row);
      this.#write(() => {
        if (this.#stmt("SELECT 1 AS x FROM drills WHERE id = ?").get(row.id) !== undefined) return;
        const restore = this.#stmt("SELECT file_id FROM restores WHERE id = ?").get(
          row.restoreId,
        ) as Row | undefined;
        checkDrillRestore(row, restore === undefined ? null : int(restore, "file_id"), "");
        this.#stmt(`INSERT INTO drills (${DRILL_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`)
          .run(...drillValues(row));
      });
    });
  }

  /** Sets a drill's state and each optional field `update` has. `RangeError` for an unknown id. */
  updateDrill(id: DrillId, update: DrillUpdate): Promise<void> {
    return this.#run(`update drill ${id}`, () => {
      checkDrillUpdate(id, update);
      const { columns, values } = drillUpdateColumns(update);
      this.#write(() => {
        const r = this.#stmt(
          `UPDATE drills SET ${columns.map((c) => `${c} = ?`).join(", ")} WHERE id = ?`,
        ).run(...values, id);
        if (Number(r.changes) === 0) {
          throw new RangeError(`Cannot update drill ${id}: unknown drill id`);
        }
      });
    });
  }

  /** Drills by id (oldest or newest first) after `afterId`, at most `limit`, in `states`. */
  drills(options: HistoryQuery<DrillRow["state"], DrillId>): Promise<DrillRow[]> {
    return this.#run("read drills", () => {
      const states = checkHistoryQuery("drill", DRILL_STATES, options);
      if (options.limit === 0 || states?.length === 0) return [];
      const { where, order, params } = historyPage(options, states);
      const rows = this.#stmt(`SELECT ${DRILL_COLUMNS} FROM drills ${where} ${order} LIMIT ?`)
        .all(...params, options.limit) as Row[];
      return rows.map(toDrillRow);
    });
  }

  /** Unresolved failures, most recent `lastAt` first, at most `limit`. */
  recentFailures(limit: number): Promise<FailureRow[]> {
    return this.#run("read failures", () => {
      checkLimit(limit);
      const rows = this.#stmt(
        `SELECT ${FAILURE_COLUMNS} FROM failures WHERE resolved_at IS NULL
         ORDER BY last_at DESC, id DESC LIMIT ?`,
      ).all(limit) as Row[];
      return rows.map(toFailureRow);
    });
  }

  /** Closes the database. Idempotent; later calls reject with code `CATALOG_CLOSED`. */
  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    this.#statements.clear();
    try {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      this.#db.close();
    } catch (e) {
      return Promise.reject(wrap(e, "close the catalog"));
    }
    return Promise.resolve();
  }

  // -------------------------------------------------------------------------

  /** Runs `fn` now (synchronously) and settles with its result or its wrapped error. */
  #run<T>(what: string, fn: () => T): Promise<T> {
    if (this.#closed) {
      return Promise.reject(
        new PortError(`Cannot ${what}: the catalog is closed`, {
          code: "CATALOG_CLOSED",
          retryable: false,
        }),
      );
    }
    try {
      return Promise.resolve(fn());
    } catch (e) {
      return Promise.reject(wrap(e, what));
    }
  }

  /** Runs `fn` inside `BEGIN IMMEDIATE` ... `COMMIT`, rolling back if it throws. */
  #write<T>(fn: () => T): T {
    this.#db.exec("BEGIN IMMEDIATE");
    try {
      const result = fn();
      this.#db.exec("COMMIT");
      return result;
    } catch (e) {
      if (this.#db.isTransaction) this.#db.exec("ROLLBACK");
      throw e;
    }
  }

  #stmt(sql: string): StatementSync {
    let s = this.#statements.get(sql);
    if (s === undefined) {
      s = this.#db.prepare(sql);
      this.#statements.set(sql, s);
    }
    return s;
  }

  /**
   * File rows of a `SELECT ${FILE_COLUMNS}` statement, as arrays: building an
   * object per row costs `node:sqlite` about five times more than an array.
   */
  #fileRows(sql: string, ...params: SQLInputValue[]): FileRow[] {
    const cacheKey = `[arrays] ${sql}`;
    let s = this.#statements.get(cacheKey);
    if (s === undefined) {
      s = this.#db.prepare(sql);
      // Not in every runtime's type declarations; rows stay objects without it.
      const arrays = s as unknown as { setReturnArrays?: (on: boolean) => void };
      if (typeof arrays.setReturnArrays === "function") arrays.setReturnArrays(true);
      this.#statements.set(cacheKey, s);
    }
    const rows = s.all(...params) as unknown[];
    return rows.map((r) =>
      toFileRow(Array.isArray(r) ? r : FILE_COLUMN_LIST.map((c) => (r as Row)[c]))
    );
  }

  #schemaVersion(): number {
    const table = this.#stmt(
      "SELECT 1 AS x FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'",
    ).get();
    if (table === undefined) return 0;
    const r = this.#stmt("SELECT COALESCE(MAX(version), 0) AS v FROM schema_migrations")
      .get() as Row;
    return int(r, "v");
  }

  /** Throws a `RangeError` unless `id` is `null` or a recorded retrieval. */
  #knownRetrieval(what: string, id: string | null): void {
    if (id === null) return;
    if (this.#stmt("SELECT 1 AS x FROM retrievals WHERE id = ?").get(id) === undefined) {
      throw new RangeError(`Cannot ${what}: unknown retrieval ${id}`);
    }
  }

  #resolveFailures(id: number, nowMs: number): void {
    this.#stmt("UPDATE failures SET resolved_at = ? WHERE file_id = ? AND resolved_at IS NULL")
      .run(nowMs, id);
  }

  #recordLooseFailure(failure: NewFailure): void {
    const key = failure.key ?? null;
    const archive = failure.archiveId ?? null;
    const resolved = failure.resolved === true;
    // A repeat bumps the same row: an open one, or for a resolved fact, the same fact.
    const open = this.#stmt(
      `SELECT id FROM failures WHERE source = ? AND stage = ? AND code = ? AND file_id IS NULL
         AND (resolved_at IS NULL) = ? AND file_key IS ? AND archive_id IS ? LIMIT 1`,
    ).get(failure.source, failure.stage, failure.code, resolved ? 0 : 1, key, archive) as
      | Row
      | undefined;
    if (open !== undefined) {
      this.#stmt(
        "UPDATE failures SET message = ?, attempts = attempts + 1, last_at = ? WHERE id = ?",
      ).run(failure.message, failure.nowMs, int(open, "id"));
      return;
    }
    this.#stmt(
      `INSERT INTO failures (stage, code, message, source, file_id, file_key, archive_id,
         attempts, first_at, last_at, resolved_at)
       VALUES (?, ?, ?, ?, NULL, ?, ?, 1, ?, ?, ?)`,
    ).run(
      failure.stage,
      failure.code,
      failure.message,
      failure.source,
      key,
      archive,
      failure.nowMs,
      failure.nowMs,
      resolved ? failure.nowMs : null,
    );
  }
}

// ---------------------------------------------------------------------------
// Validation

// ---------------------------------------------------------------------------
// Rows

/** A file row from an array in {@linkcode FILE_COLUMN_LIST} order. */
function toFileRow(a: readonly unknown[]): FileRow {
  const archive = optStrAt(a, 12);
  return {
    id: fileId(intAt(a, 0)),
    source: sourceId(strAt(a, 1)),
    key: strAt(a, 2),
    version: strAt(a, 3),
    domain: optStrAt(a, 4),
    storageClass: optStrAt(a, 5),
    sourceFid: optIntAt(a, 6),
    length: intAt(a, 7),
    mtimeMs: intAt(a, 8),
    discoveredAt: intAt(a, 9),
    state: asState(strAt(a, 10)),
    md5: optStrAt(a, 11),
    archiveId: archive === null ? null : archiveId(archive),
    headerOffset: optIntAt(a, 13),
    dataOffset: optIntAt(a, 14),
    archivedAt: optIntAt(a, 15),
    attempts: intAt(a, 16),
    nextAttemptAt: optIntAt(a, 17),
    note: optStrAt(a, 18),
    goneAt: optIntAt(a, 19),
  };
}

function strAt(a: readonly unknown[], i: number): string {
  return asText(a[i], FILE_COLUMN_LIST[i] ?? String(i));
}

function optStrAt(a: readonly unknown[], i: number): string | null {
  return a[i] === null ? null : strAt(a, i);
}

function intAt(a: readonly unknown[], i: number): number {
  return asInt(a[i], FILE_COLUMN_LIST[i] ?? String(i));
}

function optIntAt(a: readonly unknown[], i: number): number | null {
  return a[i] === null ? null : intAt(a, i);
}

// ---------------------------------------------------------------------------
// Errors

const SQLITE_CODES: readonly (readonly [RegExp, string, boolean])[] = [
  [/database is locked/i, "SQLITE_BUSY", true],
  [/(table|schema) is locked/i, "SQLITE_LOCKED", true],
  [/constraint failed/i, "SQLITE_CONSTRAINT", false],
  [/disk I\/O error/i, "SQLITE_IOERR", false],
  [/database or disk is full/i, "SQLITE_FULL", false],
  [/readonly database/i, "SQLITE_READONLY", false],
  [/unable to open database/i, "SQLITE_CANTOPEN", false],
  [/malformed/i, "SQLITE_CORRUPT", false],
  [/not a database/i, "SQLITE_NOTADB", false],
  [/interrupted/i, "SQLITE_INTERRUPT", false],
];

/** SQLite primary result codes by number, for runtimes whose errors carry `errcode`. */
const SQLITE_NUMBERS: Readonly<Record<number, string>> = {
  5: "SQLITE_BUSY",
  6: "SQLITE_LOCKED",
  8: "SQLITE_READONLY",
  9: "SQLITE_INTERRUPT",
  10: "SQLITE_IOERR",
  11: "SQLITE_CORRUPT",
  13: "SQLITE_FULL",
  14: "SQLITE_CANTOPEN",
  19: "SQLITE_CONSTRAINT",
  26: "SQLITE_NOTADB",
};

/**
 * Our own validation errors and `PortError`s pass unchanged; SQLite's errors
 * become a `PortError` with a `SQLITE_*` code (retryable for BUSY/LOCKED).
 */
function wrap(e: unknown, what: string): unknown {
  if (
    e instanceof PortError || e instanceof RangeError || e instanceof TypeError ||
    e instanceof SyntaxError || !(e instanceof Error)
  ) {
    return e;
  }
  const message = e.message.replace(/\s+/g, " ").trim();
  let code = "SQLITE_ERROR";
  let retryable = false;
  const errcode = (e as { errcode?: unknown }).errcode;
  const byNumber = typeof errcode === "number" ? SQLITE_NUMBERS[errcode & 0xff] : undefined;
  if (byNumber !== undefined) {
    code = byNumber;
    retryable = code === "SQLITE_BUSY" || code === "SQLITE_LOCKED";
  } else {
    for (const [pattern, c, r] of SQLITE_CODES) {
      if (pattern.test(message)) {
        code = c;
        retryable = r;
        break;
      }
    }
  }
  return new PortError(`Cannot ${what}: ${message}`, { code, retryable, cause: e });
}
