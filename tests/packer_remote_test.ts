/**
 * The worker packer on remote sources: each worker opens the MogileFS or S3
 * source again and reads with requests in flight. The archive is read back
 * with coldpack's tar reader and checked byte for byte and digest for
 * digest; files that vanished or cannot be read are left out with their
 * reason, as the in-thread packer does.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
import { WorkerPacker } from "../adapters/pack/worker_packer.ts";
import { MogileFsSource } from "../adapters/source/mogilefs.ts";
import { S3Source } from "../adapters/source/s3.ts";
import { archiveId } from "../core/ids.ts";
import type { PackedArchive, PackFile, Source, SourceEntry } from "../core/ports.ts";
import { safeEntryName } from "../core/safe_name.ts";
import { type MogileFsSourceUrl, parseSourceUrl } from "../core/source_url.ts";
import { readTar } from "../core/tar_reader.ts";
import { TreeHasher } from "../core/tree_hash.ts";
import { MogileFsDouble } from "./doubles/mogilefs.ts";
import { S3ArchiveDouble } from "./doubles/s3_archive.ts";
import { bytesOf, md5, tempDir } from "./_helpers.ts";
import { readAll } from "./_streams.ts";

const MEMORY_THRESHOLD = 1024 * 1024;

async function rowsOf(source: Source): Promise<PackFile[]> {
  const entries: SourceEntry[] = [];
  for await (const page of source.list({ after: null })) entries.push(...page.entries);
  const catalog = await SqliteCatalog.open(":memory:");
  try {
    const rows = await catalog.addDiscovered(source.id, entries, 0);
    return rows.map((row) => ({
      row,
      name: safeEntryName(row.key, row.domain === null ? {} : { domain: row.domain }),
    }));
  } finally {
    await catalog.close();
  }
}

/**
 * Packs `files` into one archive with `packer` and hands it to `check`;
 * then releases the archive and closes the packer and the source.
 */
async function packOnce(
  packer: WorkerPacker,
  source: Source,
  files: PackFile[],
  check: (packed: PackedArchive) => Promise<void>,
): Promise<void> {
  try {
    const packed = await packer.pack({
      archiveId: archiveId("20261122T000000.000Z-aaaaaaaaaaaa"),
      source: source.id,
      files,
      nowMs: 0,
    });
    try {
      await check(packed);
    } finally {
      await packed.release();
    }
  } finally {
    await packer.close();
    await source.close();
  }
}

/** Checks that every member's bytes, md5 and offsets match, and the tree hash. */
async function checkArchive(
  packed: PackedArchive,
  files: readonly PackFile[],
  want: ReadonlyMap<string, Uint8Array>,
): Promise<void> {
  const tar = await readAll(packed.body());
  assert.equal(tar.length, packed.size);
  const hasher = new TreeHasher();
  hasher.update(tar);
  assert.equal(hasher.digest(), packed.treeHash);
  assert.equal(createHash("sha256").update(tar).digest("hex"), packed.sha256);
  const names = new Set<string>();
  for await (const e of readTar([tar], { maxEntrySize: 4_000_000 })) names.add(e.name);
  for (const m of packed.members) {
    const f = files.find((x) => x.row.id === m.fileId)!;
    const bytes = want.get(f.row.key)!;
    assert.ok(names.has(f.name), `tar entry ${f.name}`);
    assert.deepEqual(tar.subarray(m.dataOffset, m.dataOffset + m.length), bytes, f.row.key);
    assert.equal(m.md5, md5(bytes));
  }
}

Deno.test("worker packer over MogileFS: packs small, spooled and empty files; leaves out the unreadable", async () => {
  const mogile = await MogileFsDouble.start({ domains: { ugc: {} }, nodes: 2 });
  const dir = await tempDir();
  try {
    const want = new Map<string, Uint8Array>([
      ["small/a.png", bytesOf(1, 3_000)],
      ["empty", new Uint8Array(0)],
      ["big/model.obj", bytesOf(2, 2_500_000)], // above the memory threshold: spooled
      ["ünï/ç ø.txt", bytesOf(3, 700)],
    ]);
    for (const [k, v] of want) await mogile.put("ugc", k, v);
    await mogile.put("ugc", "deleted-after-listing", bytesOf(4, 100));
    await mogile.put("ugc", "no-good-replica", bytesOf(5, 9_000));
    const url = parseSourceUrl(mogile.url("ugc")) as MogileFsSourceUrl;
    const source = await MogileFsSource.open(url);
    const files = await rowsOf(source);
    mogile.delete("ugc", "deleted-after-listing");
    for (const devid of mogile.file("ugc", "no-good-replica")!.devids) {
      mogile.damage("ugc", "no-good-replica", { devid, length: 10 });
    }
    const packer = await WorkerPacker.open({ kind: "mogilefs", ...source.spec() }, dir.path, {
      workers: 2,
      readAhead: 3,
      memoryThreshold: MEMORY_THRESHOLD,
    });
    await packOnce(packer, source, files, async (packed) => {
      assert.equal(packed.members.length, want.size);
      await checkArchive(packed, files, want);
      const outcome = (key: string) => {
        const f = files.find((x) => x.row.key === key)!;
        return packed.outcomes.find((o) => o.fileId === f.row.id);
      };
      assert.equal(outcome("deleted-after-listing")?.kind, "vanished");
      const broken = outcome("no-good-replica");
      assert.ok(broken?.kind === "failed", `outcome: ${JSON.stringify(broken)}`);
      assert.equal(broken.code, "LengthMismatch");
      assert.equal(broken.retryable, true);
      // Each worker spools into a directory of its own.
      const spooled = [];
      for await (const e of Deno.readDir(`${dir.path}/workers`)) spooled.push(e.name);
      assert.ok(spooled.length >= 1, "per-worker spool directories exist");
    });
  } finally {
    await mogile.close();
    await dir.cleanup();
  }
});

Deno.test("worker packer over S3: each worker opens the bucket with the source's client options", async () => {
  const s3 = await S3ArchiveDouble.start();
  const dir = await tempDir();
  const client = s3.client();
  try {
    await s3.createBucket("uploads");
    const want = new Map<string, Uint8Array>([
      ["a.bin", bytesOf(1, 5_000)],
      ["b/c.bin", bytesOf(2, 1_500_000)],
    ]);
    for (const [k, v] of want) {
      await client.send(
        new PutObjectCommand({
          Bucket: "uploads",
          Key: `p/${k}`,
          Body: v,
          ContentLength: v.length,
        }),
      );
    }
    const source = await S3Source.open(
      { kind: "s3", bucket: "uploads", prefix: "p/" },
      s3.connection,
    );
    const files = await rowsOf(source);
    const packer = await WorkerPacker.open({ kind: "s3", ...source.spec() }, dir.path, {
      workers: 1,
      memoryThreshold: MEMORY_THRESHOLD,
    });
    await packOnce(packer, source, files, async (packed) => {
      assert.deepEqual(packed.outcomes, []);
      await checkArchive(packed, files, want);
    });
  } finally {
    client.destroy();
    await s3.close();
    await dir.cleanup();
  }
});
