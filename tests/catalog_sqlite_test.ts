/**
 * The SQLite catalog: the conformance suite on a file and in memory, plus
 * what only SQLite has (files on disk, migrations table, locks, crashes).
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
import {
  LATEST_SCHEMA_VERSION,
  type Migration,
  MIGRATIONS,
  MIGRATIONS_TABLE,
  migrationsToApply,
} from "../adapters/catalog/schema.ts";
import { archiveId, remoteArchiveId, sourceId } from "../core/ids.ts";
import { PortError } from "../core/errors.ts";
import type { ArchiveRow, SourceEntry } from "../core/ports.ts";
import { catalogConformance, checkMigratedRestores } from "./catalog_conformance.ts";

catalogConformance("sqlite file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "coldpack_catalog_" });
  const catalog = await SqliteCatalog.open(`${dir}/catalog.db`);
  return {
    catalog,
    cleanup: async () => {
      await catalog.close();
      await Deno.remove(dir, { recursive: true });
    },
  };
});

catalogConformance("sqlite memory", async () => {
  const catalog = await SqliteCatalog.open(":memory:");
  return { catalog, cleanup: () => catalog.close() };
});

const T0 = 1_760_000_000_000;
const SRC = sourceId("dir:/srv/uploads");

function entry(key: string, version = "v1"): SourceEntry {
  return { key, version, length: 100, mtimeMs: T0 };
}

function archiveRow(id: string, extra: Partial<ArchiveRow> = {}): ArchiveRow {
  return {
    id: archiveId(id),
    store: "file:///srv/vault",
    remoteId: remoteArchiveId(`${id}.tar`),
    size: 2048,
    treeHash: "cd".repeat(32),
    fileCount: 1,
    dataBytes: 100,
    description: id,
    createdAt: T0,
    committedAt: T0 + 1,
    ...extra,
  };
}

/** Runs `fn` with a fresh temp dir holding `catalog.db`, removed afterwards. */
async function withDbFile(fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "coldpack_catalog_" });
  try {
    await fn(`${dir}/catalog.db`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Opens a raw second connection, as another process would. */
function raw(path: string): DatabaseSync {
  return new DatabaseSync(path);
}

Deno.test("sqlite: reopening a file database keeps everything", async () => {
  await withDbFile(async (path) => {
    const first = await SqliteCatalog.open(path);
    const [a, b] = await first.addDiscovered(SRC, [entry("a.jpg"), entry("b.jpg")], T0);
    assert.ok(a && b);
    await first.commitArchive(archiveRow("arc-keep"), [
      { fileId: a.id, md5: "0".repeat(32), length: 100, headerOffset: 0, dataOffset: 512 },
    ]);
    await first.setCursor("dir", "b.jpg");
    const before = await first.status();
    await first.close();

    const again = await SqliteCatalog.open(path);
    try {
      assert.equal(await again.migrate(), LATEST_SCHEMA_VERSION);
      assert.equal(await again.schemaVersion(), LATEST_SCHEMA_VERSION);
      assert.deepEqual(await again.status(), before);
      assert.equal((await again.file(a.id))?.archiveId, "arc-keep");
      assert.deepEqual(await again.file(b.id), b);
      assert.equal(await again.getCursor("dir"), "b.jpg");
      // new ids continue after the old ones
      const [c] = await again.addDiscovered(SRC, [entry("c.jpg")], T0 + 5);
      assert.ok(c && c.id > b.id);
    } finally {
      await again.close();
    }
    const db = raw(path);
    try {
      const applied = db.prepare("SELECT version, name FROM schema_migrations ORDER BY version")
        .all()
        .map((r) => [r.version, r.name]);
      assert.deepEqual(applied, MIGRATIONS.map((m) => [m.version, m.name]));
      assert.equal(db.prepare("PRAGMA journal_mode").get()?.journal_mode, "wal");
    } finally {
      db.close();
    }
  });
});

Deno.test("sqlite: listing known versions again spends no file ids", async () => {
  // A rescan re-lists every file: ids must stay dense, since operators restore by them.
  const catalog = await SqliteCatalog.open(":memory:");
  try {
    const first = await catalog.addDiscovered(SRC, [entry("a"), entry("b")], T0);
    for (let i = 0; i < 3; i++) {
      assert.deepEqual(await catalog.addDiscovered(SRC, [entry("a"), entry("b")], T0 + i), []);
    }
    const [c] = await catalog.addDiscovered(SRC, [entry("a"), entry("c"), entry("b")], T0 + 9);
    assert.equal(c?.id, first[1]!.id + 1);
  } finally {
    await catalog.close();
  }
});

Deno.test("sqlite: migrate refuses a database from a newer coldpack", async () => {
  await withDbFile(async (path) => {
    await (await SqliteCatalog.open(path)).close();
    const db = raw(path);
    db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)")
      .run(LATEST_SCHEMA_VERSION + 7, "from_the_future", T0);
    db.close();
    const tooNew = (e: unknown) =>
      e instanceof PortError && e.code === "SCHEMA_TOO_NEW" && e.retryable === false &&
      e.message ===
        `Cannot use catalog schema version ${LATEST_SCHEMA_VERSION + 7}: ` +
          `this coldpack knows versions up to ${LATEST_SCHEMA_VERSION}; upgrade coldpack`;
    await assert.rejects(SqliteCatalog.open(path), tooNew);
    const unmigrated = await SqliteCatalog.open(path, { migrate: false });
    try {
      assert.equal(await unmigrated.schemaVersion(), LATEST_SCHEMA_VERSION + 7);
      await assert.rejects(unmigrated.migrate(), tooNew);
    } finally {
      await unmigrated.close();
    }
  });
});

/** Builds a catalog at schema `version` in `path`, as an older coldpack left it. */
function catalogAtVersion(path: string, version: number): void {
  const db = raw(path);
  try {
    db.exec(MIGRATIONS_TABLE.sqlite);
    for (const m of MIGRATIONS.filter((m) => m.version <= version)) {
      for (const sql of m.sql.sqlite!) db.exec(sql);
      db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, 0)")
        .run(m.version, m.name);
    }
  } finally {
    db.close();
  }
}

Deno.test("sqlite: migrating a version 4 catalog keeps its restores, overwrite false", async () => {
  await withDbFile(async (path) => {
    catalogAtVersion(path, 4);
    const db = raw(path);
    try {
      db.exec(
        `INSERT INTO archives (id, seq, store, remote_id, size, tree_hash, file_count, data_bytes,
           description, created_at, committed_at)
           VALUES ('arc-old', 1, 's', 'r', 1, 'h', 1, 1, 'd', 1, 1);
         INSERT INTO files (id, source, file_key, version, length, mtime_ms, discovered_at)
           VALUES (7, 'dir:/srv', 'a.jpg', 'v1', 3, 0, 0);
         INSERT INTO retrievals (id, archive_id, store, job_id, tier, purpose, state, started_at)
           VALUES ('rt-old', 'arc-old', 's', 'job-1', 'Bulk', 'restore', 'in-progress', 5);
         INSERT INTO restores (restore_key, file_id, dest, state, retrieval_id, requested_at,
           requested_by) VALUES ('old:1', 7, '/tmp/a.jpg', 'pending', 'rt-old', 10, 'restore@h');
         INSERT INTO restores (restore_key, file_id, dest, state, requested_at, finished_at, note,
           requested_by) VALUES ('old:2', 7, 'mogilefs', 'done', 11, 12, 'fid 7', 'drill');`,
      );
    } finally {
      db.close();
    }
    const catalog = await SqliteCatalog.open(path);
    try {
      assert.equal(await catalog.schemaVersion(), LATEST_SCHEMA_VERSION);
      await checkMigratedRestores(catalog, T0);
    } finally {
      await catalog.close();
    }
  });
});

Deno.test("sqlite: migrating a version 5 catalog counts its archives for sampling", async () => {
  await withDbFile(async (path) => {
    catalogAtVersion(path, 5);
    const db = raw(path);
    try {
      db.exec(
        `INSERT INTO archives (id, seq, store, remote_id, size, tree_hash, file_count, data_bytes,
           description, created_at, committed_at)
           VALUES ('arc-old-1', 1, 's', 'r1', 1000, 'h', 1, 1, 'd', 1, 1),
                  ('arc-old-2', 2, 's', 'r2', 2500, 'h', 1, 1, 'd', 1, 1),
                  ('arc-old-4', 4, 's', 'r4', 4000, 'h', 1, 1, 'd', 1, 1);`,
      );
    } finally {
      db.close();
    }
    const catalog = await SqliteCatalog.open(path);
    try {
      assert.equal(await catalog.schemaVersion(), LATEST_SCHEMA_VERSION);
      assert.deepEqual(await catalog.archiveSeqRange(), { min: 1, max: 4, count: 3, bytes: 7500 });
      const rows = await catalog.addDiscovered(SRC, [entry("new.jpg")], T0);
      const [f] = rows;
      assert.ok(f);
      await catalog.commitArchive(archiveRow("arc-new", { size: 500 }), [
        { fileId: f.id, md5: "0".repeat(32), length: 100, headerOffset: 0, dataOffset: 512 },
      ]);
      assert.deepEqual(await catalog.archiveSeqRange(), { min: 1, max: 5, count: 4, bytes: 8000 });
      const picked = await catalog.archivesBySeq([3, 4, 5]);
      assert.deepEqual(picked.map((a) => a.id), ["arc-old-4", "arc-new"]);
    } finally {
      await catalog.close();
    }
  });
});

Deno.test("sqlite: overwrite holds only 0 or 1", async () => {
  await withDbFile(async (path) => {
    const catalog = await SqliteCatalog.open(path);
    try {
      const [f] = await catalog.addDiscovered(SRC, [entry("a.jpg")], T0);
      assert.ok(f);
      const [r] = await catalog.addRestores(
        [{ key: "k", fileId: f.id, dest: "/x", requestedBy: "r" }],
        T0,
      );
      assert.ok(r);
      const db = raw(path);
      try {
        assert.throws(
          () => db.prepare("UPDATE restores SET overwrite = 2 WHERE id = ?").run(r.id),
          /CHECK constraint failed/,
        );
        assert.throws(
          () => db.prepare("UPDATE restores SET overwrite = NULL WHERE id = ?").run(r.id),
          /NOT NULL constraint failed: restores.overwrite/,
        );
      } finally {
        db.close();
      }
    } finally {
      await catalog.close();
    }
  });
});

Deno.test("sqlite: open without migrate leaves an empty file unmigrated", async () => {
  await withDbFile(async (path) => {
    const catalog = await SqliteCatalog.open(path, { migrate: false });
    try {
      assert.equal(await catalog.schemaVersion(), 0);
      await assert.rejects(
        catalog.status(),
        (e: unknown) =>
          e instanceof PortError && e.code === "SQLITE_ERROR" && /no such table/.test(e.message),
      );
      assert.equal(await catalog.migrate(), LATEST_SCHEMA_VERSION);
      assert.equal((await catalog.status()).archives, 0);
    } finally {
      await catalog.close();
    }
  });
});

Deno.test("sqlite: a writer that dies before COMMIT leaves nothing behind", async () => {
  await withDbFile(async (path) => {
    const catalog = await SqliteCatalog.open(path);
    try {
      const [f] = await catalog.addDiscovered(SRC, [entry("survivor.jpg")], T0);
      assert.ok(f);
      const before = await catalog.status();

      const crashed = raw(path);
      crashed.exec("BEGIN IMMEDIATE");
      crashed.prepare(
        `INSERT INTO archives (id, seq, store, remote_id, size, tree_hash, file_count, data_bytes,
           description, created_at, committed_at) VALUES ('arc-ghost', 1, 's', 'r', 1, 'h', 1, 1, 'd', 1, 1)`,
      ).run();
      crashed.prepare(
        `UPDATE files SET state = 'archived', archive_id = 'arc-ghost', md5 = ?, header_offset = 0,
           data_offset = 512, archived_at = 1 WHERE id = ?`,
      ).run("f".repeat(32), f.id);
      crashed.prepare(
        `INSERT INTO files (source, file_key, version, length, mtime_ms, discovered_at)
         VALUES (?, 'ghost.jpg', 'v1', 1, 1, 1)`,
      ).run(SRC);
      crashed.close(); // gone without COMMIT

      assert.deepEqual(await catalog.file(f.id), f);
      assert.equal(await catalog.archive(archiveId("arc-ghost")), null);
      assert.deepEqual(await catalog.fileVersions(SRC, "ghost.jpg"), []);
      assert.deepEqual(await catalog.status(), before);
    } finally {
      await catalog.close();
    }
    const reopened = await SqliteCatalog.open(path);
    try {
      assert.equal(await reopened.archive(archiveId("arc-ghost")), null);
      assert.equal((await reopened.status()).files.pending, 1);
    } finally {
      await reopened.close();
    }
  });
});

Deno.test("sqlite: a commit aborted by the database after some members rolls back whole", async () => {
  await withDbFile(async (path) => {
    const catalog = await SqliteCatalog.open(path);
    try {
      const rows = await catalog.addDiscovered(SRC, ["m1", "m2", "m3"].map((k) => entry(k)), T0);
      const last = rows[2];
      assert.ok(last);
      // The third member's update fails inside SQLite, after two succeeded.
      const db = raw(path);
      db.exec(
        `CREATE TRIGGER fail_third BEFORE UPDATE OF state ON files WHEN NEW.id = ${last.id}
         BEGIN SELECT RAISE(ABORT, 'injected failure'); END`,
      );
      db.close();
      const members = rows.map((r, i) => ({
        fileId: r.id,
        md5: String(i).repeat(32),
        length: r.length,
        headerOffset: i * 1024,
        dataOffset: i * 1024 + 512,
      }));
      await assert.rejects(
        catalog.commitArchive(archiveRow("arc-aborted"), members),
        (e: unknown) =>
          e instanceof PortError && e.code === "SQLITE_CONSTRAINT" &&
          /injected failure/.test(e.message) && e.message.includes("arc-aborted"),
      );
      for (const r of rows) assert.deepEqual(await catalog.file(r.id), r);
      assert.equal(await catalog.archive(archiveId("arc-aborted")), null);
      assert.equal((await catalog.status()).archives, 0);
    } finally {
      await catalog.close();
    }
  });
});

Deno.test("sqlite: a held write lock gives a retryable SQLITE_BUSY", async () => {
  await withDbFile(async (path) => {
    const catalog = await SqliteCatalog.open(path, { busyTimeoutMs: 20 });
    const other = raw(path);
    try {
      other.exec("BEGIN IMMEDIATE");
      await assert.rejects(
        catalog.addDiscovered(SRC, [entry("blocked.jpg")], T0),
        (e: unknown) =>
          e instanceof PortError && e.code === "SQLITE_BUSY" && e.retryable === true &&
          /database is locked/.test(e.message),
      );
      // readers are not blocked by a writer in WAL mode
      assert.equal((await catalog.status()).files.pending, 0);
      other.exec("ROLLBACK");
      assert.equal((await catalog.addDiscovered(SRC, [entry("blocked.jpg")], T0)).length, 1);
    } finally {
      other.close();
      await catalog.close();
    }
  });
});

Deno.test("sqlite: close is idempotent and later calls reject", async () => {
  const catalog = await SqliteCatalog.open(":memory:");
  await catalog.close();
  await catalog.close();
  await assert.rejects(
    catalog.status(),
    (e: unknown) => e instanceof PortError && e.code === "CATALOG_CLOSED",
  );
});

Deno.test("sqlite: invalid arguments are rejected before touching the database", async () => {
  await assert.rejects(
    SqliteCatalog.open(":memory:", { busyTimeoutMs: -1 }),
    (e: unknown) => e instanceof RangeError && /busy timeout: -1/.test(e.message),
  );
  const catalog = await SqliteCatalog.open(":memory:");
  try {
    await assert.rejects(
      catalog.pendingFiles(SRC, { limit: -1, nowMs: T0 }),
      (e: unknown) => e instanceof RangeError && /Invalid limit: -1/.test(e.message),
    );
    await assert.rejects(
      catalog.addDiscovered(SRC, [entry("ok"), { ...entry("neg"), length: -5 }], T0),
      (e: unknown) => e instanceof RangeError && /length of source entry "neg": -5/.test(e.message),
    );
    await assert.rejects(
      catalog.addDiscovered(SRC, [entry("")], T0),
      (e: unknown) => e instanceof TypeError && /key "" is not a non-empty string/.test(e.message),
    );
    assert.equal((await catalog.status()).files.pending, 0, "a rejected batch adds nothing");
    const [f] = await catalog.addDiscovered(SRC, [entry("f")], T0);
    assert.ok(f);
    const member = {
      fileId: f.id,
      md5: "a".repeat(32),
      length: 1,
      headerOffset: 0,
      dataOffset: 512,
    };
    await assert.rejects(
      catalog.commitArchive(archiveRow("arc-twice"), [member, member]),
      (e: unknown) => e instanceof RangeError && /fid:\d+ is listed twice/.test(e.message),
    );
    await assert.rejects(
      catalog.commitArchive(archiveRow("arc-offsets"), [{ ...member, dataOffset: 0 }]),
      (e: unknown) =>
        e instanceof RangeError && /data offset 0 before its header offset/.test(e.message),
    );
    await assert.rejects(
      catalog.setCursor("", "x"),
      (e: unknown) => e instanceof TypeError && /cursor name: empty/.test(e.message),
    );
    assert.equal((await catalog.status()).archives, 0);
  } finally {
    await catalog.close();
  }
});

Deno.test("sqlite: the migration list is ordered and complete for sqlite", () => {
  MIGRATIONS.forEach((m: Migration, i) => {
    assert.equal(m.version, i + 1, `migration ${m.name} has version ${i + 1}`);
    assert.match(m.name, /^[a-z0-9_]+$/);
    assert.ok((m.sql.sqlite?.length ?? 0) > 0, `migration ${m.version} has sqlite SQL`);
  });
  assert.equal(LATEST_SCHEMA_VERSION, MIGRATIONS.length);
  assert.deepEqual(migrationsToApply("sqlite", LATEST_SCHEMA_VERSION), []);
  assert.equal(migrationsToApply("sqlite", 0).length, MIGRATIONS.length);
  const custom: Migration[] = [
    { version: 1, name: "one", sql: { sqlite: ["SELECT 1"] } },
    { version: 2, name: "two", sql: { sqlite: ["SELECT 2"] } },
  ];
  assert.throws(
    () => migrationsToApply("mysql", 1, custom),
    (e: unknown) =>
      e instanceof TypeError && /migration 2 \(two\) has no mysql SQL/.test(e.message),
  );
  assert.deepEqual(migrationsToApply("sqlite", 1, custom), [
    { version: 2, name: "two", sql: ["SELECT 2"] },
  ]);
});

Deno.test("sqlite: the hot queries use their indexes", async () => {
  await withDbFile(async (path) => {
    await (await SqliteCatalog.open(path)).close();
    const db = raw(path);
    try {
      const plan = (sql: string) =>
        db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all().map((r) => String(r.detail)).join("; ");
      const cases: [string, RegExp][] = [
        [
          "SELECT * FROM files WHERE source = 's' AND state = 'pending' AND id > 0 ORDER BY id LIMIT 5",
          /USING INDEX files_pending/,
        ],
        [
          "SELECT * FROM files WHERE archive_id = 'a' ORDER BY data_offset, id",
          /USING INDEX files_archive/,
        ],
        [
          "SELECT MAX(id) FROM files WHERE source = 's' AND file_key IN ('a', 'b') GROUP BY file_key",
          /USING (COVERING )?INDEX files_version/,
        ],
        [
          "SELECT state, COUNT(*), SUM(length) FROM files GROUP BY state",
          /USING COVERING INDEX files_pending/,
        ],
        [
          "SELECT MIN(discovered_at) FROM files WHERE state = 'pending'",
          /USING COVERING INDEX files_pending/,
        ],
        [
          "SELECT * FROM failures WHERE resolved_at IS NULL ORDER BY last_at DESC LIMIT 5",
          /USING INDEX failures_open/,
        ],
        ["SELECT * FROM files WHERE source_fid = 123", /USING INDEX files_source_fid/],
        ["SELECT * FROM archives WHERE seq >= 17 ORDER BY seq LIMIT 1", /USING INDEX/],
        [
          "SELECT * FROM retrievals WHERE store = 's' AND job_id = 'j'",
          /USING INDEX sqlite_autoindex_retrievals_\d \(store=\? AND job_id=\?\)/,
        ],
        [
          "SELECT * FROM retrievals WHERE archive_id IN ('a', 'b') " +
          "AND state IN ('in-progress', 'ready') AND (expires_at IS NULL OR expires_at > 5)",
          /USING INDEX retrievals_live \(archive_id=\? AND state=\?\)/,
        ],
        [
          "SELECT * FROM restores WHERE id > 0 AND state IN ('pending') ORDER BY id LIMIT 5",
          /USING INDEX restores_state \(state=\? AND id>\?\)/,
        ],
        [
          "SELECT * FROM restores WHERE id > 0 AND retrieval_id = 'r' ORDER BY id LIMIT 5",
          /USING INDEX restores_retrieval \(retrieval_id=\? AND rowid>\?\)/,
        ],
        ["SELECT * FROM restores WHERE restore_key = 'k'", /USING INDEX sqlite_autoindex_restores/],
        // archiveSeqRange: both ends of the seq index, the stats row by key.
        [
          "SELECT (SELECT MIN(seq) FROM archives) AS lo, (SELECT MAX(seq) FROM archives) AS hi, " +
          "archives AS n, bytes FROM archive_stats WHERE id = 1",
          /^(?!.*SCAN archives\b)(?=.*SEARCH archive_stats USING INTEGER PRIMARY KEY)(?:.*SEARCH archives USING COVERING INDEX sqlite_autoindex_archives_2){2}/,
        ],
        // archivesBySeq
        [
          "SELECT * FROM archives WHERE seq IN (SELECT value FROM json_each('[1,5]')) ORDER BY seq",
          /^(?!.*SCAN archives\b).*SEARCH archives USING INDEX sqlite_autoindex_archives_\d \(seq=\?\)/,
        ],
        // retrievedBytesSince
        [
          "SELECT SUM(a.size) FROM retrievals AS r INDEXED BY retrievals_started " +
          "JOIN archives AS a ON a.id = r.archive_id WHERE r.started_at >= 5",
          /SEARCH r USING INDEX retrievals_started \(started_at>\?\).*SEARCH a USING INDEX sqlite_autoindex_archives_1 \(id=\?\)/,
        ],
        [
          "SELECT * FROM audits WHERE id > 'a' AND state IN ('sent') ORDER BY id LIMIT 5",
          /USING INDEX audits_state \(state=\? AND id>\?\)/,
        ],
        [
          "SELECT * FROM drills WHERE id < 'd' AND state IN ('pending') ORDER BY id DESC LIMIT 5",
          /USING INDEX drills_state \(state=\? AND id<\?\)/,
        ],
      ];
      for (const [sql, expected] of cases) {
        const p = plan(sql);
        assert.match(p, expected, `${sql} -> ${p}`);
      }
    } finally {
      db.close();
    }
  });
});
