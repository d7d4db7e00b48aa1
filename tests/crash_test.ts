/**
 * Crash safety: SIGKILL the backup at random moments, restart it, and prove
 * that in the end every source file is in an archive whose tar really holds
 * its bytes, and that nothing was ever marked archived that is not.
 */

import assert from "node:assert/strict";
import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
import { LATEST_SCHEMA_VERSION } from "../adapters/catalog/schema.ts";
import {
  bytesOf,
  checkCatalogAgainstVault,
  md5,
  put,
  readTree,
  runCmd,
  sh,
  spawnCmd,
  tempDir,
  vaultTars,
} from "./_helpers.ts";

const KILLS = 12;
const MAX_ROUNDS = 30;

Deno.test("SIGKILL at random moments loses nothing and never marks a file archived wrongly", async () => {
  const src = await tempDir();
  const state = await tempDir();
  try {
    // ~50 MB: mostly small files, two above the in-memory threshold.
    for (let i = 0; i < 1500; i++) {
      await put(src.path, `d${i % 23}/f${i}.bin`, bytesOf(i, 1 + ((i * 7919) % 40_000)));
    }
    // Above the 8 MiB memory threshold: spooled to disk while packed.
    for (let i = 0; i < 2; i++) await put(src.path, `large/${i}.bin`, bytesOf(9000 + i, 9_000_000));
    const args = [
      "--source",
      src.path,
      "--once",
      "--target-size",
      "512KiB",
      "--state-dir",
      state.path,
    ];
    const delays: number[] = [];
    let kills = 0;
    let progressSeen = 0;
    let lastArchived = 0;
    for (let round = 0; kills < KILLS && round < MAX_ROUNDS; round++) {
      // Fresh work each round, so that the kill lands in a busy run.
      // (About 12 MB: a --once run of it takes ~0.8 s here, start-up included.)
      for (let i = 0; i < 400; i++) {
        await put(src.path, `round${round}/f${i}.bin`, bytesOf(round * 1000 + i, 1 + i * 150));
      }
      const delay = 150 + Math.floor(Math.random() * 600);
      delays.push(delay);
      const child = spawnCmd("backup", args, { piped: false });
      await new Promise((r) => setTimeout(r, delay));
      try {
        child.kill("SIGKILL");
      } catch {
        // It finished before the kill; that round does not count.
      }
      const status = await child.status;
      if (status.signal === "SIGKILL") kills++;
      // A kill before the catalog was migrated leaves nothing committed to check
      // (the pipeline starts only after the migrations).
      if (!(await migrated(`${state.path}/catalog.db`))) continue;
      // After every kill the promise must already hold for what is committed.
      const rows = await checkCatalogAgainstVault(
        `${state.path}/catalog.db`,
        `${state.path}/vault`,
        src.path,
      ).catch((e) => {
        throw new Error(`After round ${round + 1} (delays ${delays.join(",")} ms): ${e.message}`);
      });
      if (rows.size > lastArchived) progressSeen++;
      lastArchived = rows.size;
    }
    assert.ok(kills >= KILLS, `only ${kills} kills landed in a running backup`);
    assert.ok(progressSeen >= 2, "killed runs still made progress between kills");
    const last = await runCmd("backup", args);
    assert.equal(last.code, 0, `final run after kills at ${delays.join(",")} ms: ${last.stderr}`);

    const want = await readTree(src.path);
    const rows = await checkCatalogAgainstVault(
      `${state.path}/catalog.db`,
      `${state.path}/vault`,
      src.path,
    );
    assert.equal(rows.size, want.size, "every source file is archived");
    for (const [key, bytes] of want) assert.equal(rows.get(key)?.md5, md5(bytes), key);
    // No partial tar is ever visible: every .tar in the vault is complete for GNU tar.
    for (const t of await vaultTars(`${state.path}/vault`)) await sh("tar", ["-tf", t]);
  } finally {
    await Promise.all([src.cleanup(), state.cleanup()]);
  }
});

/** Whether the catalog file exists and has every migration applied. */
async function migrated(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
  } catch {
    return false;
  }
  const catalog = await SqliteCatalog.open(path, { migrate: false });
  try {
    return (await catalog.schemaVersion()) === LATEST_SCHEMA_VERSION;
  } finally {
    await catalog.close();
  }
}
