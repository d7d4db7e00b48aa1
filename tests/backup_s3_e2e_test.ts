/**
 * coldpack-backup as an operator runs it against an S3 bucket with a
 * Glacier storage class: the binary as a subprocess, the endpoint and the
 * credentials from the AWS SDK's standard environment variables, the strict
 * S3 archive-class double (over the real s3rver) as the peer. What lands in
 * the bucket is read back through a real restore.
 * @module
 */

import assert from "node:assert/strict";
import { S3GlacierStore } from "../adapters/store/s3_glacier.ts";
import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
import { remoteArchiveId } from "../core/ids.ts";
import { ManualClock, S3ArchiveDouble } from "./doubles/s3_archive.ts";
import { bytesOf, checkCatalogArchives, put, runCmd, tempDir } from "./_helpers.ts";

const BUCKET = "ugc-backups";

Deno.test("backup to s3://BUCKET/PREFIX?storage-class=DEEP_ARCHIVE, read back by restoring", async () => {
  const clock = new ManualClock(Date.now());
  const s3 = await S3ArchiveDouble.start({ clock });
  const src = await tempDir();
  const state = await tempDir();
  try {
    await s3.createBucket(BUCKET);
    for (let i = 0; i < 30; i++) {
      await put(src.path, `u/${i % 4}/file-${i}.bin`, bytesOf(i, 1_000 + i * 3_000));
    }
    const url = `s3://${BUCKET}/cold/archives?storage-class=DEEP_ARCHIVE`;
    const run = await runCmd("backup", [
      "--source",
      src.path,
      "--once",
      "--store",
      url,
      "--state-dir",
      state.path,
      "--target-size",
      "64KiB",
    ], { env: s3.env() });
    assert.equal(run.code, 0, run.stderr);
    assert.match(
      run.stderr,
      /archives -> s3:\/\/ugc-backups\/cold\/archives\?storage-class=DEEP_ARCHIVE/,
    );
    assert.match(run.stdout, /archived 30 files/);
    const objects = s3.objects(BUCKET);
    assert.ok(objects.length > 1, "several archives");
    for (const o of objects) {
      assert.equal(o.storageClass, "DEEP_ARCHIVE");
      assert.ok(o.key.startsWith("cold/archives/"), o.key);
    }
    const catalog = await SqliteCatalog.open(`${state.path}/catalog.db`, { migrate: false });
    const store = await S3GlacierStore.open(url, { ...s3.connection, clock });
    try {
      const byKey = await checkCatalogArchives(catalog, src.path, async (a) => {
        assert.equal(a.store, url);
        const job = await store.startRetrieval(remoteArchiveId(a.remoteId), {
          description: `check ${a.id}`,
          tier: "Bulk",
        });
        assert.equal(job.state, "in-progress", "deep archive needs a restore");
        s3.completeRestores(BUCKET);
        assert.equal((await store.retrieval(job.jobId)).state, "ready");
        return new Uint8Array(
          await new Response(await store.readRetrieval(job.jobId)).arrayBuffer(),
        );
      });
      assert.equal(byKey.size, 30);
    } finally {
      await store.close();
      await catalog.close();
    }
  } finally {
    await s3.close();
    await src.cleanup();
    await state.cleanup();
  }
});

Deno.test("backup to a bucket that does not exist stops at once, naming the bucket and the code", async () => {
  const s3 = await S3ArchiveDouble.start();
  const src = await tempDir();
  const state = await tempDir();
  try {
    await put(src.path, "a.txt", "hello");
    const run = await runCmd("backup", [
      "--source",
      src.path,
      "--once",
      "--store",
      "s3://no-such-bucket/x?storage-class=GLACIER",
      "--state-dir",
      state.path,
    ], { env: s3.env() });
    assert.equal(run.code, 3, run.stderr);
    assert.match(run.stderr, /stopped: .*s3:\/\/no-such-bucket\/x.*NoSuchBucket/);
    assert.equal(s3.counts().PutObject ?? 0, 1, "not retried");
    assert.doesNotMatch(run.stderr + run.stdout, new RegExp(s3.credentials.secretAccessKey));
  } finally {
    await s3.close();
    await src.cleanup();
    await state.cleanup();
  }
});
