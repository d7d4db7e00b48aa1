/**
 * coldpack-admin as an operator runs it: migrating a SQLite catalog made by
 * an older coldpack, `--check`, and the refusals. The MySQL side runs in
 * tests/backup_mysql_e2e_test.ts against a real MariaDB.
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { LATEST_SCHEMA_VERSION, MIGRATIONS, MIGRATIONS_TABLE } from "../adapters/catalog/schema.ts";
import { runCmd, tempDir } from "./_helpers.ts";

/** A catalog as coldpack with schema version 1 left it, holding one file. */
function versionOneCatalog(path: string): void {
  const db = new DatabaseSync(path);
  db.exec(MIGRATIONS_TABLE.sqlite);
  const first = MIGRATIONS[0]!;
  for (const sql of first.sql.sqlite!) db.exec(sql);
  db.prepare("INSERT INTO schema_migrations (version, name, applied_at) VALUES (1, ?, 0)")
    .run(first.name);
  db.prepare(
    `INSERT INTO files (source, file_key, version, length, mtime_ms, discovered_at)
     VALUES ('dir:/srv', 'a.jpg', 'v1', 3, 0, 0)`,
  ).run();
  db.close();
}

Deno.test("admin migrate brings a version 1 catalog up to date and keeps its rows", async () => {
  const dir = await tempDir();
  try {
    const path = `${dir.path}/catalog.db`;
    versionOneCatalog(path);
    const url = `sqlite://${path}`;
    const check = await runCmd("admin", ["migrate", "--check", "--catalog", url]);
    assert.equal(check.code, 1, check.stderr);
    assert.match(
      check.stdout,
      /schema version 1, 6 available; due: 2 leases, 3 gone_at, 4 restores, 5 restore_overwrite, 6 audits/,
    );
    const run = await runCmd("admin", ["migrate", "--catalog", url]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stdout,
      new RegExp(
        `schema version 1 -> ${LATEST_SCHEMA_VERSION} \\(applied 2 leases, 3 gone_at, 4 restores, 5 restore_overwrite, 6 audits\\)`,
      ),
    );
    const again = await runCmd("admin", ["migrate", "--catalog", url]);
    assert.match(again.stdout, /already current/);
    const current = await runCmd("admin", ["migrate", "--check", "--catalog", url]);
    assert.equal(current.code, 0);
    const db = new DatabaseSync(path);
    try {
      const row = db.prepare("SELECT file_key, claimed_by FROM files").get() as Record<
        string,
        unknown
      >;
      assert.deepEqual({ ...row }, { file_key: "a.jpg", claimed_by: null });
      const versions = db.prepare("SELECT version FROM schema_migrations ORDER BY version").all();
      assert.deepEqual(versions.map((r) => (r as { version: number }).version), [1, 2, 3, 4, 5, 6]);
    } finally {
      db.close();
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test("admin refuses unknown and future commands and bad catalogs, naming them", async () => {
  const none = await runCmd("admin", []);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /missing command \(expected migrate\)/);
  const fsck = await runCmd("admin", ["fsck"]);
  assert.equal(fsck.code, 2);
  assert.match(fsck.stderr, /"fsck" is not available in this version yet/);
  const bad = await runCmd("admin", ["migrate", "--catalog", "postgres://x/y"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^coldpack-admin: --catalog: /);
  const help = await runCmd("admin", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Exit codes:/);
});
