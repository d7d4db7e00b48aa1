/**
 * coldpack-backup against a Glacier vault as an operator runs it: the
 * binary as a subprocess, endpoint and credentials from the AWS SDK's
 * standard environment variables, the strict Glacier double (SigV4 checked,
 * tree hashes checked) as the peer. Also the faults of issue 3: a backfill
 * through 10 % injected faults, and errors that must stop the run at once.
 * @module
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
import { GlacierDouble, TEST_CREDENTIALS } from "./doubles/glacier.ts";
import { bytesOf, checkCatalogArchives, put, runCmd, tempDir } from "./_helpers.ts";

const VAULT = "ugc-archive";

function awsEnv(g: GlacierDouble): Record<string, string> {
  return {
    AWS_ENDPOINT_URL_GLACIER: g.endpoint,
    AWS_REGION: g.region,
    AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
  };
}

async function corpus(root: string, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    await put(root, `img/${i % 7}/${i}.jpg`, bytesOf(i, 500 + ((i * 7_919) % 60_000)));
  }
}

function backupArgs(src: string, state: string, store: string, extra: string[] = []): string[] {
  return [
    "--source",
    src,
    "--once",
    "--store",
    store,
    "--state-dir",
    state,
    "--target-size",
    "128KiB",
    ...extra,
  ];
}

/** Runs `fn` with a Glacier double holding the vault, and a source and a state directory. */
async function withRun(
  files: number,
  fn: (g: GlacierDouble, src: string, state: string) => Promise<void>,
): Promise<void> {
  const g = await GlacierDouble.start({ vaults: [VAULT] });
  const src = await tempDir();
  const state = await tempDir();
  try {
    await corpus(src.path, files);
    await fn(g, src.path, state.path);
  } finally {
    await g.close();
    await src.cleanup();
    await state.cleanup();
  }
}

/** Every archived row's bytes, read from what the vault holds. */
async function checkAgainstDouble(g: GlacierDouble, state: string, src: string, store: string) {
  const catalog = await SqliteCatalog.open(`${state}/catalog.db`, { migrate: false });
  try {
    return await checkCatalogArchives(catalog, src, (a) => {
      assert.equal(a.store, store);
      return Promise.resolve(g.archiveBytes(VAULT, a.remoteId));
    });
  } finally {
    await catalog.close();
  }
}

Deno.test("backup to glacier://REGION/VAULT puts tree-hash-checked archives with descriptions", async () => {
  await withRun(60, async (g, src, state) => {
    const store = `glacier://${g.region}/${VAULT}`;
    const run = await runCmd("backup", backupArgs(src, state, store), {
      env: awsEnv(g),
    });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /archives -> glacier:\/\/us-east-1\/ugc-archive/);
    assert.match(run.stdout, /archived 60 files/);
    const archives = g.archives(VAULT);
    assert.ok(archives.length >= 10, `${archives.length} archives`);
    for (const a of archives) {
      assert.match(a.description, /^coldpack\/1 id=\S+ files=\d+ fid=\d+-\d+ src=dir:\//);
    }
    assert.equal((await checkAgainstDouble(g, state, src, store)).size, 60);
  });
});

Deno.test("a backfill through 10% injected store faults archives every file and records each retry", async () => {
  await withRun(200, async (g, src, state) => {
    g.randomFaults({
      rate: 0.1,
      seed: 20261122,
      kinds: ["server-error", "throttle", "timeout", "reset", "capacity"],
      operations: ["UploadArchive"],
    });
    const store = `glacier://${g.region}/${VAULT}`;
    const run = await runCmd("backup", backupArgs(src, state, store), {
      env: awsEnv(g),
    });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /archived 200 files/);
    const served = g.faultsServed();
    assert.ok(served.length >= 3, `only ${served.length} faults served: raise the corpus`);
    assert.match(run.stdout, new RegExp(`retried ${served.length} calls`));
    // Each fault is a resolved failure row: retried, not lost.
    const db = new DatabaseSync(`${state}/catalog.db`, { readOnly: true });
    try {
      const rows = db.prepare(
        `SELECT code, SUM(attempts) AS n FROM failures
         WHERE stage = 'upload' AND message LIKE 'retried:%' AND resolved_at IS NOT NULL
         GROUP BY code`,
      ).all() as { code: string; n: number }[];
      const recorded = rows.reduce((sum, r) => sum + Number(r.n), 0);
      assert.equal(recorded, served.length, JSON.stringify(rows));
      const open = db.prepare("SELECT COUNT(*) AS n FROM failures WHERE resolved_at IS NULL").get();
      assert.equal(Number((open as { n: number }).n), 0);
    } finally {
      db.close();
    }
    // Nothing stored twice under the catalog's name, nothing wrong.
    const byKey = await checkAgainstDouble(g, state, src, store);
    assert.equal(byKey.size, 200);
  });
});

Deno.test("a missing vault stops the run at once, naming the store and the code", async () => {
  await withRun(3, async (g, src, state) => {
    const run = await runCmd(
      "backup",
      backupArgs(src, state, `glacier://${g.region}/no-such-vault`),
      { env: awsEnv(g) },
    );
    assert.equal(run.code, 3, run.stderr);
    assert.match(
      run.stderr,
      /stopped: glacier:\/\/us-east-1\/no-such-vault: UploadArchive \S+: ResourceNotFoundException/,
    );
    assert.equal(g.requestCount("UploadArchive"), 1, "not retried");
    assert.doesNotMatch(run.stderr, new RegExp(TEST_CREDENTIALS.secretAccessKey));
  });
});

Deno.test("access denied stops the run at once, naming the store and the code", async () => {
  await withRun(3, async (g, src, state) => {
    const run = await runCmd(
      "backup",
      backupArgs(src, state, `glacier://${g.region}/${VAULT}`),
      { env: { ...awsEnv(g), AWS_SECRET_ACCESS_KEY: "not-the-right-secret" } },
    );
    assert.equal(run.code, 3, run.stderr);
    assert.match(run.stderr, /stopped: glacier:\/\/us-east-1\/ugc-archive: UploadArchive \S+: \w+/);
    assert.match(run.stderr, /InvalidSignatureException|AccessDenied|UnrecognizedClient/);
    assert.doesNotMatch(run.stderr, /not-the-right-secret/);
    assert.equal(g.archives(VAULT).length, 0);
  });
});
