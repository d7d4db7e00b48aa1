/**
 * The catalog schema as data: one versioned, ordered list of migrations that
 * every catalog adapter applies, each with its SQL per dialect. The SQLite
 * adapter applies `sqlite`; a MySQL/MariaDB adapter adds `mysql` statements to
 * the same entries (same version, same name, same tables and meaning), so
 * both kinds of catalog always agree on what version N means.
 *
 * Rules for adding a migration: append it with the next version; never edit
 * or reorder one that has shipped; each migration must leave the schema
 * consistent on its own, because adapters apply each one in its own
 * transaction and record it in `schema_migrations(version, name, applied_at)`.
 *
 * Notes for the MySQL statements of migration 1: `key` is reserved there, so
 * columns are named `file_key`; archive ids must sort byte-wise
 * (`ascii_bin`) so that `archives()` pages the same way; keys need a binary
 * utf8mb4 collation (they are compared exactly) and, being up to a few KB,
 * a hashed column for `UNIQUE(source, file_key, version)`; `archives.seq` is an
 * `AUTO_INCREMENT` unique key.
 *
 * @example
 * ```ts
 * import { migrationsToApply } from "./schema.ts";
 * for (const m of migrationsToApply("sqlite", 0)) console.log(m.version, m.name, m.sql.length);
 * ```
 * @module
 */

import { PortError } from "../../core/errors.ts";

/** SQL dialects the catalog schema is written for. */
export type Dialect = "sqlite" | "mysql";

/** One schema change. */
export interface Migration {
  /** 1, 2, 3 ... in order, no gaps. */
  readonly version: number;
  /** Short snake_case name, recorded in `schema_migrations.name`. */
  readonly name: string;
  /** Statements per dialect, run in order inside one transaction. */
  readonly sql: Readonly<Partial<Record<Dialect, readonly string[]>>>;
}

/** The statement that creates the table recording applied migrations, per dialect. */
export const MIGRATIONS_TABLE: Readonly<Record<Dialect, string>> = {
  sqlite: `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INTEGER PRIMARY KEY NOT NULL,
  name TEXT NOT NULL,
  applied_at INTEGER NOT NULL
)`,
  mysql: `CREATE TABLE IF NOT EXISTS schema_migrations (
  version INT UNSIGNED NOT NULL PRIMARY KEY,
  name VARCHAR(100) NOT NULL,
  applied_at BIGINT NOT NULL
) ENGINE=InnoDB`,
};

const FILE_STATES = "'pending', 'archived', 'vanished', 'failed', 'superseded'";
const STAGES = "'discover', 'fetch', 'bundle', 'upload', 'commit'";

/**
 * Every migration, oldest first.
 *
 * Version 1 creates:
 * - `archives`: one row per committed archive; `seq` is a dense-ish increasing
 *   integer so that an audit can pick a random archive by seq range instead
 *   of scanning the table.
 * - `files`: one row per (source, key, version); `state` is one of the five
 *   `FileState`s; archive fields are set together when archived.
 * - `failures`: one row per (file, stage, code) when a file is concerned.
 * - `cursors`: named listing positions.
 */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "initial",
    sql: {
      sqlite: [
        `CREATE TABLE archives (
  id TEXT NOT NULL PRIMARY KEY,
  seq INTEGER NOT NULL UNIQUE,
  store TEXT NOT NULL,
  remote_id TEXT NOT NULL,
  size INTEGER NOT NULL CHECK (size >= 0),
  tree_hash TEXT NOT NULL,
  file_count INTEGER NOT NULL CHECK (file_count >= 0),
  data_bytes INTEGER NOT NULL CHECK (data_bytes >= 0),
  description TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  committed_at INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'committed'
)`,
        `CREATE TABLE files (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  source TEXT NOT NULL,
  file_key TEXT NOT NULL,
  version TEXT NOT NULL,
  domain TEXT,
  storage_class TEXT,
  source_fid INTEGER,
  length INTEGER NOT NULL CHECK (length >= 0),
  mtime_ms INTEGER NOT NULL,
  discovered_at INTEGER NOT NULL,
  state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN (${FILE_STATES})),
  md5 TEXT, -- 32 lower-case hex digits, checked by the adapter before writing
  archive_id TEXT REFERENCES archives (id),
  header_offset INTEGER CHECK (header_offset IS NULL OR header_offset >= 0),
  data_offset INTEGER CHECK (data_offset IS NULL OR data_offset >= 0),
  archived_at INTEGER,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER,
  note TEXT,
  CHECK (state <> 'archived' OR (archive_id IS NOT NULL AND md5 IS NOT NULL
    AND header_offset IS NOT NULL AND data_offset IS NOT NULL AND archived_at IS NOT NULL))
)`,
        // Four indexes, no more: each one costs every insert and every commit.
        // Identity; also latestVersions, fileVersions, superseding:
        // WHERE source = ? AND file_key = ? (a key has few versions).
        `CREATE UNIQUE INDEX files_version ON files (source, file_key, version)`,
        // pendingFiles: WHERE state = 'pending' AND source = ? AND id > ? ORDER BY id;
        // status: per-state counts, bytes and oldest pending as a covering-index scan.
        `CREATE INDEX files_pending ON files (state, source, id, length, discovered_at)`,
        // archiveFiles: WHERE archive_id = ? ORDER BY data_offset
        `CREATE INDEX files_archive ON files (archive_id, data_offset)`,
        // restore by MogileFS fid (directory and S3 sources have none: a partial index)
        `CREATE INDEX files_source_fid ON files (source_fid) WHERE source_fid IS NOT NULL`,
        `CREATE TABLE failures (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  stage TEXT NOT NULL CHECK (stage IN (${STAGES})),
  code TEXT NOT NULL,
  message TEXT NOT NULL,
  source TEXT NOT NULL,
  file_id INTEGER REFERENCES files (id),
  file_key TEXT,
  archive_id TEXT,
  attempts INTEGER NOT NULL DEFAULT 1,
  first_at INTEGER NOT NULL,
  last_at INTEGER NOT NULL,
  resolved_at INTEGER,
  UNIQUE (file_id, stage, code)
)`,
        // recentFailures and openFailures: WHERE resolved_at IS NULL ORDER BY last_at DESC
        `CREATE INDEX failures_open ON failures (resolved_at, last_at)`,
        // merging repeats of failures that concern no file
        `CREATE INDEX failures_loose ON failures (source, stage, code)`,
        `CREATE TABLE cursors (
  name TEXT NOT NULL PRIMARY KEY,
  value TEXT NOT NULL,
  updated_at INTEGER NOT NULL
)`,
      ],
    },
  },
];

/** The newest schema version this code knows. */
export const LATEST_SCHEMA_VERSION: number = MIGRATIONS[MIGRATIONS.length - 1]?.version ?? 0;

/**
 * The migrations to apply, in order, to a database at schema version
 * `current` (0 for an empty one), with their statements for `dialect`.
 *
 * Rejects with a `PortError` coded `SCHEMA_TOO_NEW` when the database is newer
 * than this code: an old binary must not write to a schema it does not know.
 *
 * @example
 * ```ts
 * migrationsToApply("sqlite", 0); // every migration
 * migrationsToApply("sqlite", LATEST_SCHEMA_VERSION); // []
 * ```
 */
export function migrationsToApply(
  dialect: Dialect,
  current: number,
  migrations: readonly Migration[] = MIGRATIONS,
): { version: number; name: string; sql: readonly string[] }[] {
  if (!Number.isSafeInteger(current) || current < 0) {
    throw new RangeError(`Invalid schema version: ${current}`);
  }
  const latest = migrations[migrations.length - 1]?.version ?? 0;
  if (current > latest) {
    throw new PortError(
      `Cannot use catalog schema version ${current}: this coldpack knows versions up to ${latest}; upgrade coldpack`,
      { code: "SCHEMA_TOO_NEW", retryable: false },
    );
  }
  const plan: { version: number; name: string; sql: readonly string[] }[] = [];
  for (const m of migrations) {
    if (m.version <= current) continue;
    const sql = m.sql[dialect];
    if (sql === undefined) {
      throw new TypeError(
        `Cannot migrate the catalog: migration ${m.version} (${m.name}) has no ${dialect} SQL`,
      );
    }
    plan.push({ version: m.version, name: m.name, sql });
  }
  return plan;
}
