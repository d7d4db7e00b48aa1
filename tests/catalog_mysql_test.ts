/**
 * The MySQL catalog against a real MariaDB (Debian's `mariadb-server`, one
 * throwaway server for this file, a fresh database per test): the shared
 * conformance suite, then what only a client/server database has to get
 * right: concurrent migrations, credentials, restarts, a server killed
 * mid-commit, concurrent claimers, byte-exact keys.
 * @module
 */

import assert from "node:assert/strict";
import mysql from "mysql2/promise";
import { catalogConformance, checkMigratedRestores } from "./catalog_conformance.ts";
import { lazyMariaDB, type MariaDB, mariadbTestOptions } from "./_mariadb.ts";
import { MysqlCatalog, type MysqlCatalogOptions } from "../adapters/catalog/mysql.ts";
import { LATEST_SCHEMA_VERSION, MIGRATIONS, MIGRATIONS_TABLE } from "../adapters/catalog/schema.ts";
import { PortError } from "../core/errors.ts";
import {
  archiveId,
  type FileId,
  jobId,
  remoteArchiveId,
  retrievalId,
  sourceId,
} from "../core/ids.ts";
import type { ArchiveMember, ArchiveRow, FileRow, SourceEntry } from "../core/ports.ts";

const { ignore } = mariadbTestOptions("catalog mysql");
const mariadb = lazyMariaDB();

const T0 = 1_760_000_000_000;
const SRC = sourceId("dir:/srv/uploads");

function entry(key: string, version = "v1"): SourceEntry {
  return { key, version, length: 100, mtimeMs: T0 - 60_000 };
}

function archiveRow(id: string, extra: Partial<ArchiveRow> = {}): ArchiveRow {
  return {
    id: archiveId(id),
    store: "file:///srv/vault",
    remoteId: remoteArchiveId(`${id}.tar`),
    size: 10_240,
    treeHash: "ab".repeat(32),
    fileCount: 1,
    dataBytes: 100,
    description: `coldpack v1 ${id}`,
    createdAt: T0 + 50,
    committedAt: T0 + 100,
    ...extra,
  };
}

function membersOf(rows: readonly FileRow[]): ArchiveMember[] {
  return rows.map((r, i) => ({
    fileId: r.id,
    md5: (r.id * 7 + i).toString(16).padStart(32, "0"),
    length: r.length,
    headerOffset: i * 1024,
    dataOffset: i * 1024 + 512,
  }));
}

/** Connection options for `database` on the shared server. */
function optionsFor(server: MariaDB, database: string): MysqlCatalogOptions {
  return {
    host: server.host,
    port: server.port,
    user: server.user,
    password: server.password,
    database,
  };
}

/** A fresh database and a catalog on it, both disposed of after `fn`. */
async function withCatalog(
  fn: (c: MysqlCatalog, server: MariaDB, database: string) => Promise<void>,
  extra: Partial<MysqlCatalogOptions> = {},
): Promise<void> {
  const server = await mariadb.get();
  const database = await server.createDatabase();
  const catalog = await MysqlCatalog.open({ ...optionsFor(server, database), ...extra });
  try {
    await fn(catalog, server, database);
  } finally {
    await catalog.close();
    await server.dropDatabase(database);
  }
}

function test(name: string, fn: () => Promise<void>): void {
  Deno.test({ name: `mysql: ${name}`, ignore, fn });
}

function isPortError(code: string, retryable: boolean): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof PortError, `expected a PortError, got ${e}`);
    assert.equal(e.code, code, e.message);
    assert.equal(e.retryable, retryable, e.message);
    return true;
  };
}

catalogConformance("mysql", async () => {
  const server = await mariadb.get();
  const database = await server.createDatabase();
  const catalog = await MysqlCatalog.open(optionsFor(server, database));
  return {
    catalog,
    cleanup: async () => {
      await catalog.close();
      await server.dropDatabase(database);
    },
  };
}, { ignore });

test("migrations are recorded once and a migration cut short runs again", async () => {
  await withCatalog(async (c, server, db) => {
    const applied = async () =>
      (await server.rootQuery(
        `SELECT version, name FROM \`${db}\`.schema_migrations ORDER BY version`,
      )).map((r) => [Number(r.version), r.name]);
    assert.deepEqual(await applied(), MIGRATIONS.map((m) => [m.version, m.name]));
    assert.equal(await c.migrate(), LATEST_SCHEMA_VERSION);
    assert.equal(await c.schemaVersion(), LATEST_SCHEMA_VERSION);
    assert.deepEqual(await applied(), MIGRATIONS.map((m) => [m.version, m.name]));
    // DDL commits at once in MySQL: a crash after migration 2's statements
    // (and 3's, 4's, 5's) but before their version rows leaves them applied and unrecorded.
    await server.rootQuery(`DELETE FROM \`${db}\`.schema_migrations WHERE version >= 2`);
    assert.equal(await c.schemaVersion(), 1);
    assert.equal(await c.migrate(), LATEST_SCHEMA_VERSION);
    assert.deepEqual(await applied(), MIGRATIONS.map((m) => [m.version, m.name]));
    // and the schema works
    const [f] = await c.addDiscovered(SRC, [entry("after-rerun")], T0);
    assert.ok(f);
    assert.equal((await c.claimFiles(SRC, { owner: "w", limit: 5, nowMs: T0 })).length, 1);
    const [restore] = await c.addRestores(
      [{
        key: "after-rerun:1",
        fileId: f.id,
        dest: "/tmp/after-rerun",
        requestedBy: "test",
        overwrite: true,
      }],
      T0,
    );
    assert.ok(restore);
    assert.equal(restore.state, "pending");
    assert.equal(restore.overwrite, true);
    assert.equal(await c.finishRestore(restore.id, { state: "done", note: "ok" }, T0 + 1), true);
  });
});

test("migrating a version 4 catalog keeps its restores, overwrite false", async () => {
  const server = await mariadb.get();
  const db = await server.createDatabase();
  try {
    // The schema as a coldpack of version 4 left it, with restores in it.
    const old = await mysql.createConnection({ ...optionsFor(server, db) });
    try {
      await old.query(MIGRATIONS_TABLE.mysql);
      for (const m of MIGRATIONS.filter((m) => m.version <= 4)) {
        for (const sql of m.sql.mysql!) await old.query(sql);
        await old.query(
          "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, 0)",
          [m.version, m.name],
        );
      }
      await old.query(
        `INSERT INTO archives (id, store, remote_id, size, tree_hash, file_count, data_bytes,
           description, created_at, committed_at)
         VALUES ('arc-old', 's', 'r', 1, 'h', 1, 1, 'd', 1, 1)`,
      );
      await old.query(
        `INSERT INTO files (id, source, file_key, version, length, mtime_ms, discovered_at)
         VALUES (7, 'dir:/srv', 'a.jpg', 'v1', 3, 0, 0)`,
      );
      await old.query(
        `INSERT INTO retrievals (id, archive_id, store, job_id, tier, purpose, state, started_at)
         VALUES ('rt-old', 'arc-old', 's', 'job-1', 'Bulk', 'restore', 'in-progress', 5)`,
      );
      await old.query(
        `INSERT INTO restores (restore_key, file_id, dest, state, retrieval_id, requested_at,
           requested_by) VALUES ('old:1', 7, '/tmp/a.jpg', 'pending', 'rt-old', 10, 'restore@h')`,
      );
      await old.query(
        `INSERT INTO restores (restore_key, file_id, dest, state, requested_at, finished_at, note,
           requested_by) VALUES ('old:2', 7, 'mogilefs', 'done', 11, 12, 'fid 7', 'drill')`,
      );
    } finally {
      await old.end();
    }
    const c = await MysqlCatalog.open(optionsFor(server, db));
    try {
      assert.equal(await c.schemaVersion(), LATEST_SCHEMA_VERSION);
      await checkMigratedRestores(c, T0);
      // Another value than 0 or 1 in the column is refused, not taken for true.
      await server.rootQuery(`UPDATE \`${db}\`.restores SET overwrite = 2 WHERE id = 2`);
      await assert.rejects(
        c.restores({ limit: 10 }),
        (e: unknown) => e instanceof TypeError && /overwrite is not 0 or 1: 2/.test(e.message),
      );
    } finally {
      await c.close();
    }
  } finally {
    await server.dropDatabase(db);
  }
});

test("two catalogs migrating one empty database at once apply each migration once", async () => {
  const server = await mariadb.get();
  const db = await server.createDatabase();
  const a = await MysqlCatalog.open({ ...optionsFor(server, db), migrate: false });
  const b = await MysqlCatalog.open({ ...optionsFor(server, db), migrate: false });
  try {
    assert.equal(await a.schemaVersion(), 0);
    const versions = await Promise.all([a.migrate(), b.migrate(), a.migrate(), b.migrate()]);
    assert.deepEqual(versions, versions.map(() => LATEST_SCHEMA_VERSION));
    const rows = await server.rootQuery(
      `SELECT version, COUNT(*) AS n FROM \`${db}\`.schema_migrations GROUP BY version`,
    );
    assert.deepEqual(
      rows.map((r) => [Number(r.version), Number(r.n)]),
      MIGRATIONS.map((m) => [
        m.version,
        1,
      ]),
    );
  } finally {
    await a.close();
    await b.close();
    await server.dropDatabase(db);
  }
});

test("a database from a newer coldpack is refused with SCHEMA_TOO_NEW", async () => {
  await withCatalog(async (_c, server, db) => {
    await server.rootQuery(
      `INSERT INTO \`${db}\`.schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
      [LATEST_SCHEMA_VERSION + 7, "from_the_future", T0],
    );
    const tooNew = (e: unknown) =>
      e instanceof PortError && e.code === "SCHEMA_TOO_NEW" && e.retryable === false &&
      e.message.includes(`schema version ${LATEST_SCHEMA_VERSION + 7}`);
    await assert.rejects(MysqlCatalog.open(optionsFor(server, db)), tooNew);
    const unmigrated = await MysqlCatalog.open({ ...optionsFor(server, db), migrate: false });
    try {
      assert.equal(await unmigrated.schemaVersion(), LATEST_SCHEMA_VERSION + 7);
      await assert.rejects(unmigrated.migrate(), tooNew);
    } finally {
      await unmigrated.close();
    }
  });
});

test("a wrong password is ER_ACCESS_DENIED_ERROR, not retryable, and never shown", async () => {
  const server = await mariadb.get();
  const db = await server.createDatabase();
  const wrong = `wrong-${crypto.randomUUID()}`;
  try {
    await assert.rejects(
      MysqlCatalog.open({ ...optionsFor(server, db), password: wrong }),
      (e: unknown) => {
        isPortError("ER_ACCESS_DENIED_ERROR", false)(e);
        const m = (e as Error).message;
        assert.ok(m.includes(`mysql://coldpack@127.0.0.1:${server.port}/${db}`), m);
        assert.ok(!m.includes(wrong) && !m.includes(server.password), "no password in message");
        assert.ok(!String((e as Error).stack).includes(wrong), "no password in the stack");
        return true;
      },
    );
  } finally {
    await server.dropDatabase(db);
  }
});

test("an unknown database is ER_BAD_DB_ERROR, not retryable", async () => {
  const server = await mariadb.get();
  await assert.rejects(
    MysqlCatalog.open(optionsFor(server, "no_such_catalog")),
    (e: unknown) =>
      isPortError("ER_BAD_DB_ERROR", false)(e) &&
      (e as Error).message.includes("no_such_catalog"),
  );
});

test("a server that is not there is a retryable ECONNREFUSED", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  await assert.rejects(
    MysqlCatalog.open({
      host: "127.0.0.1",
      port,
      user: "coldpack",
      password: "x",
      database: "catalog",
    }),
    (e: unknown) =>
      isPortError("ECONNREFUSED", true)(e) &&
      (e as Error).message.includes(`mysql://coldpack@127.0.0.1:${port}/catalog`),
  );
});

test("the pool recovers by itself after the server restarts", async () => {
  await withCatalog(async (c, server) => {
    // Several pooled connections, all idle when the server goes away.
    await Promise.all(
      Array.from({ length: 8 }, (_, i) => c.addDiscovered(SRC, [entry(`r${i}`)], T0)),
    );
    await server.restart();
    try {
      await c.status();
    } catch (e) {
      // the first call may meet a connection the client has not seen die yet
      assert.ok(e instanceof PortError && e.retryable, `not a retryable PortError: ${e}`);
    }
    assert.equal((await c.status()).files.pending, 8);
    // every pooled connection works again
    await Promise.all(
      Array.from({ length: 8 }, (_, i) => c.addDiscovered(SRC, [entry(`s${i}`)], T0)),
    );
    assert.equal((await c.status()).files.pending, 16);
  });
});

test("a server killed mid-commitArchive keeps the archive whole or absent", async () => {
  await withCatalog(async (c, server, db) => {
    const n = 30_000;
    const rows = await c.addDiscovered(
      SRC,
      Array.from({ length: n }, (_, i) => entry(`big/${i}`)),
      T0,
    );
    const last = rows[n - 1];
    assert.ok(last);
    const archive = archiveRow("arc-killed", { fileCount: n });
    const members = membersOf(rows);
    // Another session locks the last member, so the commit stops there with
    // every earlier member updated, inside its transaction: then SIGKILL.
    const blocker = await mysql.createConnection({ ...optionsFor(server, db) });
    blocker.on("error", () => {}); // it dies with the server
    try {
      await blocker.query("START TRANSACTION");
      await blocker.query("SELECT id FROM files WHERE id = ? FOR UPDATE", [last.id]);
      const commit = c.commitArchive(archive, members).then(
        (r) => ({ ok: true as const, r }),
        (e: unknown) => ({ ok: false as const, e }),
      );
      for (let tries = 0;; tries++) {
        const trx = await server.rootQuery(
          "SELECT trx_state, trx_rows_modified, trx_rows_locked FROM information_schema.innodb_trx",
        );
        if (trx.some((t) => t.trx_state === "LOCK WAIT" && Number(t.trx_rows_modified) > 0)) {
          break;
        }
        if (tries > 150) {
          const pl = await server.rootQuery(
            "SELECT id, time, state, LEFT(info, 100) AS info FROM information_schema.processlist",
          );
          assert.fail(`the commit never waited: ${JSON.stringify(trx)} ${JSON.stringify(pl)}`);
        }
        // innodb_trx is a cache refreshed only when last read over 0.1 s ago
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
      await server.kill();
      const outcome = await commit;
      assert.ok(!outcome.ok, "the commit cannot have finished");
      assert.ok(
        outcome.e instanceof PortError && outcome.e.retryable &&
          outcome.e.message.includes("arc-killed"),
        `a commit cut by a dead server is a retryable PortError naming the archive: ${outcome.e}`,
      );
    } finally {
      blocker.destroy();
    }
    await server.restart();
    const count = async () =>
      Number(
        (await server.rootQuery(
          `SELECT COUNT(*) AS n FROM \`${db}\`.files WHERE archive_id = 'arc-killed'`,
        ))[0]?.n,
      );
    // Nothing of it survived the crash.
    assert.equal(await c.archive(archive.id), null);
    assert.equal(await count(), 0);
    assert.deepEqual(await c.status().then((s) => s.files.pending), n);
    // The retry the wrapper would make does the job, once.
    assert.deepEqual(await c.commitArchive(archive, members), { skipped: [] });
    assert.equal(await count(), n);
    assert.equal((await c.status()).archives, 1);
  });
});

test("two daemons claiming from 2,000 pending files never get the same file", async () => {
  await withCatalog(async (first, server, db) => {
    const n = 2000;
    await first.addDiscovered(SRC, Array.from({ length: n }, (_, i) => entry(`f/${i}`)), T0);
    const second = await MysqlCatalog.open(optionsFor(server, db));
    try {
      assert.ok(await first.acquireLease("worker:a", "a", 600_000, T0));
      assert.ok(await second.acquireLease("worker:b", "b", 600_000, T0));
      /** Walks the pending files claiming 25 at a time until a walk claims nothing new. */
      const daemon = async (c: MysqlCatalog, owner: string): Promise<Set<FileId>> => {
        const mine = new Set<FileId>();
        for (let fresh = true; fresh;) {
          fresh = false;
          let afterId: FileId | undefined;
          for (;;) {
            const page = await c.claimFiles(SRC, {
              owner,
              limit: 25,
              nowMs: T0 + 1,
              ...(afterId === undefined ? {} : { afterId }),
            });
            const last = page[page.length - 1];
            if (last === undefined) break;
            for (const r of page) {
              if (!mine.has(r.id)) fresh = true;
              mine.add(r.id);
            }
            afterId = last.id;
          }
        }
        return mine;
      };
      const [a, b] = await Promise.all([daemon(first, "a"), daemon(second, "b")]);
      const both = [...a].filter((id) => b.has(id));
      assert.deepEqual(both, [], "no file claimed by both");
      assert.equal(a.size + b.size, n, "every file claimed");
      assert.ok(a.size > 0 && b.size > 0, `both daemons claimed (a ${a.size}, b ${b.size})`);
      const owners = await server.rootQuery(
        `SELECT claimed_by AS owner, COUNT(*) AS n FROM \`${db}\`.files
         GROUP BY claimed_by ORDER BY claimed_by`,
      );
      assert.deepEqual(
        owners.map((r) => [String(r.owner), Number(r.n)]),
        [["a", a.size], ["b", b.size]],
      );
    } finally {
      await second.close();
    }
  });
});

test("a daemon takes over the claims of one whose worker lease expired", async () => {
  await withCatalog(async (dead, server, db) => {
    await dead.addDiscovered(SRC, ["t1", "t2", "t3"].map((k) => entry(k)), T0);
    const live = await MysqlCatalog.open(optionsFor(server, db));
    try {
      assert.ok(await dead.acquireLease("worker:dead", "dead", 30_000, T0));
      assert.equal((await dead.claimFiles(SRC, { owner: "dead", limit: 2, nowMs: T0 })).length, 2);
      assert.ok(await live.acquireLease("worker:live", "live", 60_000, T0 + 1_000));
      // while the dead daemon's lease runs, only the unclaimed file is free
      assert.deepEqual(
        (await live.claimFiles(SRC, { owner: "live", limit: 10, nowMs: T0 + 29_999 }))
          .map((r) => r.key),
        ["t3"],
      );
      assert.equal(await live.acquireLease("worker:dead", "live", 1_000, T0 + 29_999), false);
      // at its expiry, its claims are taken over
      assert.deepEqual(
        (await live.claimFiles(SRC, { owner: "live", limit: 10, nowMs: T0 + 30_000 }))
          .map((r) => r.key),
        ["t1", "t2", "t3"],
      );
      // and the old owner, back to life, gets nothing of them
      assert.ok(await dead.acquireLease("worker:dead", "dead", 30_000, T0 + 30_001));
      assert.deepEqual(
        await dead.claimFiles(SRC, { owner: "dead", limit: 10, nowMs: T0 + 30_001 }),
        [],
      );
    } finally {
      await live.close();
    }
  });
});

test("keys differing in case, normalization, trailing spaces or past 2 KB stay distinct", async () => {
  await withCatalog(async (c) => {
    const long = "k/".repeat(1024); // 2 KB
    const keys = [
      "Readme.txt",
      "README.txt",
      "readme.txt",
      "caf\u00e9.png", // é precomposed (NFC)
      "cafe\u0301.png", // e + combining acute (NFD)
      "trail",
      "trail ",
      "trail  ",
      `${long}a`,
      `${long}b`,
      "\u{1F9CA}".repeat(600), // 2,400 bytes of 4-byte characters
      "\u{1F9CA}".repeat(601),
    ];
    const rows = await c.addDiscovered(SRC, keys.map((k) => entry(k)), T0);
    assert.deepEqual(rows.map((r) => r.key), keys);
    assert.equal(new Set(rows.map((r) => r.id)).size, keys.length);
    const latest = await c.latestVersions(SRC, keys);
    assert.deepEqual([...latest.keys()].sort(), [...keys].sort());
    for (const [i, k] of keys.entries()) {
      assert.deepEqual(await c.fileVersions(SRC, k), [rows[i]], `versions of ${JSON.stringify(k)}`);
    }
    assert.deepEqual(await c.fileVersions(SRC, "readme.TXT"), []);
    assert.deepEqual(await c.fileVersions(SRC, "trail   "), []);
    assert.deepEqual(await c.fileVersions(SRC, long), []);
    assert.deepEqual(await c.addDiscovered(SRC, keys.map((k) => entry(k)), T0 + 1), []);
    // versions, sources and cursor names are exact too
    const v = await c.addDiscovered(
      SRC,
      [entry("Readme.txt", "V1"), entry("Readme.txt", "v1 ")],
      T0,
    );
    assert.equal(v.length, 2);
    await c.setCursor("cursor", "lower");
    await c.setCursor("CURSOR", "upper");
    await c.setCursor("cursor ", "spaced");
    assert.deepEqual(
      [await c.getCursor("cursor"), await c.getCursor("CURSOR"), await c.getCursor("cursor ")],
      ["lower", "upper", "spaced"],
    );
  });
});

test("two daemons committing the same archive at once both succeed, once", async () => {
  await withCatalog(async (a, server, db) => {
    const rows = await a.addDiscovered(SRC, ["x1", "x2", "x3"].map((k) => entry(k)), T0);
    const b = await MysqlCatalog.open(optionsFor(server, db));
    try {
      const archive = archiveRow("arc-twice", { fileCount: 3 });
      const members = membersOf(rows);
      const results = await Promise.all([
        a.commitArchive(archive, members),
        b.commitArchive(archive, members),
      ]);
      assert.deepEqual(results, [{ skipped: [] }, { skipped: [] }]);
      assert.equal((await a.archiveFiles(archive.id)).length, 3);
      assert.equal((await a.status()).archives, 1);
    } finally {
      await b.close();
    }
  });
});

test("an integer beyond 2^53 in the database is refused, not rounded", async () => {
  await withCatalog(async (c, server, db) => {
    const [f] = await c.addDiscovered(SRC, [entry("huge")], T0);
    assert.ok(f);
    await server.rootQuery(`UPDATE \`${db}\`.files SET source_fid = ? WHERE id = ?`, [
      "9007199254740993",
      f.id,
    ]);
    await assert.rejects(
      c.file(f.id),
      (e: unknown) => e instanceof TypeError && /source_fid is not a safe integer/.test(e.message),
    );
  });
});

test("the hot queries use their indexes", async () => {
  await withCatalog(async (c, server, db) => {
    // Enough rows for the optimizer to choose, some archived, some failed.
    const rows = await c.addDiscovered(
      SRC,
      Array.from({ length: 2000 }, (_, i) => ({ ...entry(`e/${i}`), sourceFid: i })),
      T0,
    );
    await c.commitArchive(
      archiveRow("arc-explain", { fileCount: 20 }),
      membersOf(rows.slice(0, 20)),
    );
    for (const r of rows.slice(100, 120)) {
      await c.recordFailure({
        stage: "fetch",
        code: "EIO",
        message: "read error",
        source: SRC,
        fileId: r.id,
        nowMs: T0,
        retryAt: T0 + 1000,
      });
    }
    // Restores of every file, all but the newest 50 done; some served by one of many retrievals.
    for (let i = 0; i < 40; i++) {
      await c.addRetrieval({
        id: retrievalId(`r-explain-${i}`),
        archiveId: archiveId("arc-explain"),
        store: "file:///srv/vault",
        jobId: jobId(`job-${i}`),
        range: null,
        tier: "Bulk",
        purpose: "restore",
        state: i < 30 ? "expired" : "in-progress",
        startedAt: T0 + i,
        readyAt: null,
        expiresAt: null,
        failure: null,
      });
    }
    const restores = await c.addRestores(
      rows.map((r) => ({ key: `explain:${r.id}`, fileId: r.id, dest: "/tmp/x", requestedBy: "t" })),
      T0,
    );
    await c.assignRestores(restores.slice(0, 10).map((r) => r.id), retrievalId("r-explain-35"));
    await server.rootQuery(
      `UPDATE \`${db}\`.restores SET state = 'done', finished_at = 1 WHERE id < ?`,
      [restores[1950]?.id ?? 0],
    );
    await server.rootQuery(
      `ANALYZE TABLE \`${db}\`.files, \`${db}\`.failures, \`${db}\`.retrievals, ` +
        `\`${db}\`.restores`,
    );
    const id = rows[150]?.id;
    const [job] = await server.rootQuery(
      `SELECT HEX(job_hash) AS h FROM \`${db}\`.retrievals WHERE id = 'r-explain-3'`,
    );
    const jobHex = String(job?.h);
    const plan = async (sql: string) =>
      (await server.rootQuery(`EXPLAIN ${sql}`)).map((r) => `${r.table}:${r.key} ${r.Extra}`)
        .join(", ");
    const t = `\`${db}\`.files`;
    const cases: [string, RegExp][] = [
      [`SELECT * FROM ${t} WHERE id = ${id}`, /files:PRIMARY/],
      [
        `SELECT * FROM ${t} FORCE INDEX (files_pending) WHERE state = 'pending' AND source = 's'
         AND id > 0 ORDER BY id LIMIT 5 FOR UPDATE SKIP LOCKED`,
        /files:files_pending/,
      ],
      [
        `SELECT * FROM ${t} WHERE archive_id = 'arc-explain' ORDER BY data_offset, id`,
        /files:files_archive/,
      ],
      [`SELECT * FROM ${t} WHERE key_hash = 'x' AND source = 's'`, /files:files_version/],
      [
        `SELECT key_hash, MAX(id) FROM ${t} WHERE key_hash IN ('a', 'b') GROUP BY key_hash`,
        /files:files_version/,
      ],
      [`SELECT * FROM ${t} WHERE source_fid = 123`, /files:files_source_fid/],
      [
        `SELECT * FROM \`${db}\`.failures WHERE resolved_at IS NULL ORDER BY last_at DESC LIMIT 5`,
        /failures:failures_open/,
      ],
      [
        // A unique key: a hash that is not there would be an "Impossible WHERE".
        `SELECT * FROM \`${db}\`.retrievals WHERE job_hash = UNHEX('${jobHex}')
         AND store = 'file:///srv/vault' AND job_id = 'job-3'`,
        /retrievals:retrievals_job/,
      ],
      [
        `SELECT * FROM \`${db}\`.retrievals FORCE INDEX (retrievals_live)
         WHERE archive_id IN ('arc-explain', 'b') AND state IN ('in-progress', 'ready')
           AND (expires_at IS NULL OR expires_at > 5)`,
        /retrievals:retrievals_live/,
      ],
      [
        `SELECT * FROM \`${db}\`.restores FORCE INDEX (restores_state)
         WHERE id > 0 AND state IN ('pending') ORDER BY id LIMIT 5`,
        /^restores:restores_state (?!.*filesort)/,
      ],
      [
        `SELECT * FROM \`${db}\`.restores FORCE INDEX (restores_retrieval)
         WHERE id > 0 AND retrieval_id = 'r-explain-35' AND state IN ('pending') ORDER BY id LIMIT 5`,
        /^restores:restores_retrieval (?!.*filesort)/,
      ],
      [
        `SELECT * FROM \`${db}\`.restores WHERE restore_key = 'explain:1'`,
        /restores:restores_key/,
      ],
    ];
    for (const [sql, expected] of cases) {
      const p = await plan(sql);
      assert.match(p, expected, `${sql} -> ${p}`);
    }
  });
});

test("the sampling queries read the seq index and the stats row, never scan archives", async () => {
  await withCatalog(async (c, server, db) => {
    // 20,000 archives (bulk, as the benchmark loads them), committed ones on top.
    const values = (from: number, n: number) =>
      Array.from({ length: n }, (_, i) => {
        const k = from + i;
        return `('arc-s${k}', 's', 'r${k}', ${1000 + k}, 'h', 1, 1, 'd', 1, 1)`;
      }).join(", ");
    for (let i = 0; i < 20_000; i += 5000) {
      await server.rootQuery(
        `INSERT INTO \`${db}\`.archives (id, store, remote_id, size, tree_hash, file_count,
           data_bytes, description, created_at, committed_at) VALUES ${values(i, 5000)}`,
      );
    }
    await server.rootQuery(
      `UPDATE \`${db}\`.archive_stats SET archives = 20000,
         bytes = (SELECT SUM(size) FROM \`${db}\`.archives) WHERE id = 1`,
    );
    const rows = await c.addDiscovered(SRC, [entry("sampled.jpg")], T0);
    await c.commitArchive(archiveRow("arc-sampled", { size: 5 }), membersOf(rows));
    await c.addRetrieval({
      id: retrievalId("r-sampled"),
      archiveId: archiveId("arc-sampled"),
      store: "file:///srv/vault",
      jobId: jobId("job-sampled"),
      range: null,
      tier: "Bulk",
      purpose: "audit",
      state: "in-progress",
      startedAt: T0,
      readyAt: null,
      expiresAt: null,
      failure: null,
    });
    await server.rootQuery(
      `ANALYZE TABLE \`${db}\`.archives, \`${db}\`.retrievals, \`${db}\`.archive_stats`,
    );
    const range = await c.archiveSeqRange();
    assert.ok(range);
    assert.equal(range.count, 20_001);
    assert.equal(range.max - range.min + 1, 20_001, "bulk inserts and commits leave no gaps");
    const picked = await c.archivesBySeq([range.min, range.min + 7, range.max]);
    assert.deepEqual(picked.map((a) => a.id), ["arc-s0", "arc-s7", "arc-sampled"]);
    assert.equal(await c.retrievedBytesSince(T0), 5);

    const explain = async (sql: string) =>
      (await server.rootQuery(`EXPLAIN ${sql}`)).map((r) => ({
        table: String(r.table),
        type: String(r.type),
        key: String(r.key),
        extra: String(r.Extra),
      }));
    const t = (name: string) => `\`${db}\`.${name}`;
    // archiveSeqRange: MIN/MAX come from the index's ends ("Select tables
    // optimized away"), the stats row by its primary key.
    const rangePlan = await explain(
      `SELECT (SELECT MIN(seq) FROM ${t("archives")}) AS lo,
         (SELECT MAX(seq) FROM ${t("archives")}) AS hi, archives AS n, bytes
       FROM ${t("archive_stats")} WHERE id = 1`,
    );
    const shown = (p: unknown) => JSON.stringify(p);
    assert.equal(rangePlan.length, 3, shown(rangePlan));
    for (const r of rangePlan) {
      assert.notEqual(r.type, "ALL", shown(rangePlan));
      assert.ok(
        r.table !== "archives",
        `archives read through no table access: ${shown(rangePlan)}`,
      );
    }
    assert.equal(rangePlan.filter((r) => r.extra === "Select tables optimized away").length, 2);
    assert.ok(
      rangePlan.some((r) => r.table === "archive_stats" && r.key === "PRIMARY"),
      shown(rangePlan),
    );
    // archivesBySeq: a range of unique-key lookups.
    const seqPlan = await explain(
      `SELECT id, store FROM ${t("archives")} WHERE seq IN (3, 17, 19999, 40000) ORDER BY seq`,
    );
    assert.deepEqual(seqPlan.map((r) => [r.table, r.type, r.key]), [
      ["archives", "range", "archives_seq"],
    ]);
    assert.doesNotMatch(seqPlan[0]?.extra ?? "", /filesort/);
    // retrievedBytesSince: the started_at range, archives by primary key.
    const budgetPlan = await explain(
      `SELECT SUM(a.size) FROM ${t("retrievals")} AS r FORCE INDEX (retrievals_started)
         JOIN ${t("archives")} AS a ON a.id = r.archive_id WHERE r.started_at >= 5`,
    );
    assert.deepEqual(budgetPlan.map((r) => [r.table, r.type, r.key]), [
      ["r", "range", "retrievals_started"],
      ["a", "eq_ref", "PRIMARY"],
    ]);
    const auditPlan = await explain(
      `SELECT * FROM ${t("audits")} WHERE state IN ('sent') AND id > 'a' ORDER BY id LIMIT 5`,
    );
    assert.notEqual(auditPlan[0]?.type, "ALL", shown(auditPlan));
  });
});

test("migrating a version 5 catalog counts its archives for sampling", async () => {
  const server = await mariadb.get();
  const db = await server.createDatabase();
  try {
    const old = await mysql.createConnection({ ...optionsFor(server, db) });
    try {
      await old.query(MIGRATIONS_TABLE.mysql);
      for (const m of MIGRATIONS.filter((m) => m.version <= 5)) {
        for (const sql of m.sql.mysql!) await old.query(sql);
        await old.query(
          "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, 0)",
          [m.version, m.name],
        );
      }
      await old.query(
        `INSERT INTO archives (id, seq, store, remote_id, size, tree_hash, file_count, data_bytes,
           description, created_at, committed_at)
         VALUES ('arc-old-1', 1, 's', 'r1', 1000, 'h', 1, 1, 'd', 1, 1),
                ('arc-old-2', 2, 's', 'r2', 2500, 'h', 1, 1, 'd', 1, 1),
                ('arc-old-4', 4, 's', 'r4', 4000, 'h', 1, 1, 'd', 1, 1)`,
      );
    } finally {
      await old.end();
    }
    const c = await MysqlCatalog.open(optionsFor(server, db));
    try {
      assert.equal(await c.schemaVersion(), LATEST_SCHEMA_VERSION);
      assert.deepEqual(await c.archiveSeqRange(), { min: 1, max: 4, count: 3, bytes: 7500 });
      const rows = await c.addDiscovered(SRC, [entry("new.jpg")], T0);
      await c.commitArchive(archiveRow("arc-new", { size: 500 }), membersOf(rows));
      assert.deepEqual(await c.archiveSeqRange(), { min: 1, max: 5, count: 4, bytes: 8000 });
      const picked = await c.archivesBySeq([3, 4, 5]);
      assert.deepEqual(picked.map((a) => a.id), ["arc-old-4", "arc-new"]);
    } finally {
      await c.close();
    }
  } finally {
    await server.dropDatabase(db);
  }
});

test("close is idempotent and later calls reject with CATALOG_CLOSED", async () => {
  const server = await mariadb.get();
  const db = await server.createDatabase();
  const c = await MysqlCatalog.open(optionsFor(server, db));
  await c.close();
  await c.close();
  await assert.rejects(c.status(), isPortError("CATALOG_CLOSED", false));
  await server.dropDatabase(db);
});

test("invalid options are rejected before connecting", async () => {
  const base = { host: "127.0.0.1", port: 3306, user: "u", password: "p", database: "d" };
  await assert.rejects(
    MysqlCatalog.open({ ...base, port: 0 }),
    (e: unknown) => e instanceof RangeError && /port: 0/.test(e.message),
  );
  await assert.rejects(
    MysqlCatalog.open({ ...base, poolSize: 0 }),
    (e: unknown) => e instanceof RangeError && /pool size: 0/.test(e.message),
  );
  await assert.rejects(
    MysqlCatalog.open({ ...base, database: "" }),
    (e: unknown) => e instanceof TypeError && /database: empty/.test(e.message),
  );
});

// Last: the shared server goes with the file's tests.
Deno.test({ name: "mysql: stop the shared MariaDB", ignore, fn: () => mariadb.stop() });
