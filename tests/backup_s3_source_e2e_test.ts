/**
 * coldpack-backup with an S3 bucket as its source, as an operator runs it:
 * the binary as a subprocess, `--source s3://BUCKET/PREFIX`, the endpoint
 * and credentials from the AWS SDK's environment variables, the real s3rver
 * (behind the strict S3 double) as the peer, a local vault and a SQLite
 * catalog. Every archived row's offsets are checked against the vault tar.
 * @module
 */

import assert from "node:assert/strict";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { S3ArchiveDouble } from "./doubles/s3_archive.ts";
import {
  archivedBytes,
  bytesOf,
  catalogRows,
  md5,
  runCmd,
  sh,
  tempDir,
  vaultTars,
} from "./_helpers.ts";

const BUCKET = "ugc-uploads";

Deno.test("backup --source s3://BUCKET/PREFIX --once archives the objects under the prefix", async () => {
  const s3 = await S3ArchiveDouble.start();
  const client = s3.client();
  const state = await tempDir();
  try {
    await s3.createBucket(BUCKET);
    const putObject = (key: string, bytes: Uint8Array, storageClass?: "GLACIER") =>
      client.send(
        new PutObjectCommand({
          Bucket: BUCKET,
          Key: key,
          Body: bytes,
          ContentLength: bytes.length,
          ...(storageClass ? { StorageClass: storageClass } : {}),
        }),
      );
    const files = new Map<string, Uint8Array>();
    for (let i = 0; i < 30; i++) {
      const key = i === 0 ? "ünï cødé/photo (1).jpg" : `${i % 4}/upload-${i}.bin`;
      const bytes = bytesOf(i + 7, 200 + i * 3_000);
      files.set(key, bytes);
      await putObject(`photos/${key}`, bytes);
    }
    await putObject("photos/empty-folder/", new Uint8Array(0));
    await putObject("photos/frozen.bin", bytesOf(1, 100), "GLACIER");
    await putObject("elsewhere/not-under-prefix.bin", bytesOf(2, 100));

    const run = await runCmd("backup", [
      "--source",
      `s3://${BUCKET}/photos/`,
      "--once",
      "--state-dir",
      state.path,
      "--target-size",
      "64KiB",
    ], { env: s3.env() });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stderr, /backing up s3:\/\/ugc-uploads\/photos\//);
    assert.match(run.stdout, /archived 30 files/);
    assert.match(run.stderr, /Skipped "empty-folder\/": folder marker/);
    assert.match(run.stderr, /Skipped "frozen\.bin": .*GLACIER/);

    const catalog = `${state.path}/catalog.db`;
    const rows = await catalogRows(catalog);
    assert.deepEqual(rows.map((r) => r.key).sort(), [...files.keys()].sort());
    for (const row of rows) {
      assert.equal(row.source, `s3://${BUCKET}/photos/`);
      assert.equal(row.state, "archived");
      assert.equal(row.version, md5(files.get(row.key)!), "a single-part ETag is the md5");
      assert.equal(row.md5, md5(files.get(row.key)!));
      assert.deepEqual(
        await archivedBytes(catalog, `${state.path}/vault`, row),
        files.get(row.key),
      );
    }
    // GNU tar reads the entries back under their keys.
    const out = `${state.path}/extract`;
    await Deno.mkdir(out);
    for (const tar of await vaultTars(`${state.path}/vault`)) {
      await sh("tar", ["-xf", tar, "-C", out]);
    }
    assert.deepEqual(
      await Deno.readFile(`${out}/ünï cødé/photo (1).jpg`),
      files.get("ünï cødé/photo (1).jpg"),
    );

    // A replaced object is a new version; a second run archives only it.
    const newer = bytesOf(99, 5_000);
    await putObject("photos/1/upload-1.bin", newer);
    const again = await runCmd("backup", [
      "--source",
      `s3://${BUCKET}/photos/`,
      "--once",
      "--state-dir",
      state.path,
    ], { env: s3.env() });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /archived 1 files?/);
    const versions = (await catalogRows(catalog)).filter((r) => r.key === "1/upload-1.bin");
    assert.deepEqual(versions.map((r) => [r.version, r.state]), [
      [md5(files.get("1/upload-1.bin")!), "archived"],
      [md5(newer), "archived"],
    ]);
  } finally {
    client.destroy();
    await s3.close();
    await state.cleanup();
  }
});

Deno.test("backup --source s3://MISSING-BUCKET stops with exit 3 naming the bucket and the code", async () => {
  const s3 = await S3ArchiveDouble.start();
  const state = await tempDir();
  try {
    const run = await runCmd("backup", [
      "--source",
      "s3://no-such-bucket/x/",
      "--once",
      "--state-dir",
      state.path,
    ], { env: s3.env() });
    assert.match(run.stderr, /no-such-bucket/);
    assert.match(run.stderr, /NoSuchBucket/);
    assert.equal(run.code, 3, run.stderr);
  } finally {
    await s3.close();
    await state.cleanup();
  }
});
