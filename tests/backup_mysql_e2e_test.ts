/**
 * The production shape of issue 3, end to end: `coldpack-backup` (the
 * binary, as subprocesses) with `--catalog mysql://...` on a real MariaDB
 * and `--store glacier://...` on the strict Glacier double.
 *
 * - a once run archives a directory; every row checks out against the vault;
 * - two daemons sharing one catalog and one source: one discovers, both
 *   archive, one is killed and the other finishes its work; each file is in
 *   exactly one committed archive;
 * - MariaDB restarted in the middle of a backfill: nothing lost, exit 0.
 * @module
 */

import assert from "node:assert/strict";
import { MysqlCatalog } from "../adapters/catalog/mysql.ts";
import type { Catalog, FileRow } from "../core/ports.ts";
import { GlacierDouble, TEST_CREDENTIALS } from "./doubles/glacier.ts";
import { lazyMariaDB, type MariaDB, mariadbTestOptions } from "./_mariadb.ts";
import { bytesOf, checkCatalogArchives, put, runCmd, spawnCmd, tempDir } from "./_helpers.ts";

const { ignore } = mariadbTestOptions("backup mysql e2e");
const mariadb = lazyMariaDB();
const VAULT = "ugc-archive";

interface Rig {
  readonly db: MariaDB;
  readonly database: string;
  readonly glacier: GlacierDouble;
  readonly src: string;
  readonly state: string;
  readonly catalogUrl: string;
  readonly storeUrl: string;
  readonly env: Record<string, string>;
  open(): Promise<Catalog>;
}

async function withRig(files: number, fn: (r: Rig) => Promise<void>): Promise<void> {
  const db = await mariadb.get();
  const database = await db.createDatabase();
  const glacier = await GlacierDouble.start({ vaults: [VAULT] });
  const src = await tempDir();
  const state = await tempDir();
  try {
    for (let i = 0; i < files; i++) {
      await put(src.path, `ugc/${i % 13}/${i}.bin`, bytesOf(i, 300 + ((i * 7_919) % 40_000)));
    }
    const rig: Rig = {
      db,
      database,
      glacier,
      src: src.path,
      state: state.path,
      catalogUrl: `mysql://${db.user}@${db.host}:${db.port}/${database}`,
      storeUrl: `glacier://${glacier.region}/${VAULT}`,
      env: {
        COLDPACK_MYSQL_PASSWORD: db.password,
        AWS_ENDPOINT_URL_GLACIER: glacier.endpoint,
        AWS_REGION: glacier.region,
        AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
      },
      open: () =>
        MysqlCatalog.open({
          host: db.host,
          port: db.port,
          user: db.user,
          password: db.password,
          database,
          // The test may look before the daemons have migrated: the lock serializes it.
          migrate: true,
        }),
    };
    await fn(rig);
  } finally {
    await glacier.close();
    await src.cleanup();
    await state.cleanup();
    await db.dropDatabase(database).catch(() => {});
  }
}

function args(r: Rig, extra: string[]): string[] {
  return [
    "--source",
    r.src,
    "--catalog",
    r.catalogUrl,
    "--store",
    r.storeUrl,
    "--state-dir",
    r.state,
    "--target-size",
    "96KiB",
    ...extra,
  ];
}

/** Every archived row checks out against the vault; each file is in one committed archive. */
async function checkAll(r: Rig, files: number): Promise<Map<string, FileRow>> {
  const catalog = await r.open();
  try {
    const seen = new Map<number, string>();
    const byKey = await checkCatalogArchives(catalog, r.src, async (a) => {
      for (const f of await catalog.archiveFiles(a.id)) {
        assert.ok(!seen.has(f.id), `file ${f.key} in ${seen.get(f.id)} and ${a.id}`);
        seen.set(f.id, a.id);
      }
      return r.glacier.archiveBytes(VAULT, a.remoteId);
    });
    assert.equal(byKey.size, files);
    const s = await catalog.status();
    assert.equal(s.files.archived, files);
    assert.equal(s.files.pending, 0);
    return byKey;
  } finally {
    await catalog.close();
  }
}

async function waitFor(
  what: string,
  probe: () => Promise<boolean>,
  timeoutMs = 90_000,
): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (await probe()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function archivedCount(catalog: Catalog): Promise<number> {
  return (await catalog.status()).files.archived;
}

Deno.test({
  name: "backup --catalog mysql:// --store glacier:// archives a directory end to end",
  ignore,
  async fn() {
    await withRig(80, async (r) => {
      const check = await runCmd("admin", ["migrate", "--check", "--catalog", r.catalogUrl], {
        env: r.env,
      });
      assert.equal(check.code, 1, check.stderr);
      assert.match(check.stdout, /schema version 0, \d+ available/);
      const run = await runCmd("backup", args(r, ["--once"]), { env: r.env });
      assert.equal(run.code, 0, run.stderr);
      assert.match(run.stderr, new RegExp(`catalog  -> mysql://coldpack@127\\.0\\.0\\.1:\\d+/`));
      assert.doesNotMatch(run.stderr + run.stdout, new RegExp(r.db.password));
      assert.match(run.stdout, /archived 80 files/);
      await checkAll(r, 80);
      const after = await runCmd("admin", ["migrate", "--check", "--catalog", r.catalogUrl], {
        env: r.env,
      });
      assert.equal(after.code, 0, after.stdout);
      const status = await runCmd("backup", ["status", "--catalog", r.catalogUrl], { env: r.env });
      assert.equal(status.code, 0, status.stderr);
      assert.match(status.stdout, /files {5}80 archived, 0 pending/);
    });
  },
});

Deno.test({
  name: "backup without a MySQL password says where to put it and exits 2",
  ignore,
  async fn() {
    await withRig(1, async (r) => {
      const { COLDPACK_MYSQL_PASSWORD: _, ...env } = r.env;
      const run = await runCmd("backup", args(r, ["--once"]), { env });
      assert.equal(run.code, 2, run.stderr);
      assert.match(run.stderr, /--catalog: no password for mysql:\/\/.*COLDPACK_MYSQL_PASSWORD/);
    });
  },
});

Deno.test({
  name: "two daemons share one catalog: one discovers, both archive, a killed one is taken over",
  ignore,
  async fn() {
    const files = 400;
    await withRig(files, async (r) => {
      const daemon = (owner: string) =>
        spawnCmd("backup", args(r, ["--owner", owner, "--lease-ttl", "3s", "--max-age", "1s"]), {
          env: r.env,
        });
      const a = daemon("host-a");
      const b = daemon("host-b");
      const catalog = await r.open();
      let bOut = "";
      try {
        // Kill a as soon as both have made progress: its claims must pass to b.
        await waitFor("some archives", async () => (await archivedCount(catalog)) >= 40);
        a.kill("SIGKILL");
        const aDone = await a.output();
        assert.equal(aDone.code, 137, "a was killed");
        await waitFor("every file archived", async () => (await archivedCount(catalog)) === files);
        b.kill("SIGTERM");
        const bDone = await b.output();
        bOut = new TextDecoder().decode(bDone.stdout) + new TextDecoder().decode(bDone.stderr);
        assert.equal(bDone.code, 0, bOut);
      } finally {
        for (const child of [a, b]) {
          try {
            child.kill("SIGKILL");
          } catch { /* exited */ }
        }
        await catalog.close();
      }
      assert.match(bOut, /archived \d+ files/);
      const byKey = await checkAll(r, files);
      // Archives the killed daemon uploaded but never committed are orphans in
      // the vault (fsck lists them); no committed archive shares a file.
      const committed = new Set([...byKey.values()].map((f) => f.archiveId));
      assert.ok(r.glacier.archives(VAULT).length >= committed.size);
    });
  },
});

Deno.test({
  name: "MariaDB restarted in the middle of a backfill: the run retries and loses nothing",
  ignore,
  async fn() {
    const files = 600;
    await withRig(files, async (r) => {
      // Slow uploads keep the run going long enough to restart the server under it.
      r.glacier.inject({ kind: "slow", operation: "UploadArchive", count: 100_000, delayMs: 60 });
      const child = spawnCmd("backup", args(r, ["--once", "--target-size", "48KiB"]), {
        env: r.env,
      });
      const catalog = await r.open();
      try {
        await waitFor("the first archives", async () => (await archivedCount(catalog)) >= 30);
      } finally {
        await catalog.close();
      }
      await r.db.restart();
      const out = await child.output();
      const stdout = new TextDecoder().decode(out.stdout);
      const stderr = new TextDecoder().decode(out.stderr);
      assert.equal(out.code, 0, stderr);
      assert.match(stdout, new RegExp(`archived ${files} files`));
      assert.match(
        stdout,
        /retried \d+ calls: .*catalog \w+ (PROTOCOL_CONNECTION_LOST|ECONNREFUSED|ER_\w+|\w+)/,
      );
      await checkAll(r, files);
    });
  },
});

Deno.test({
  name: "backup mysql e2e: stop the MariaDB server",
  ignore,
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await mariadb.stop();
  },
});
