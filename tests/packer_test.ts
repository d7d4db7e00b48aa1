/**
 * The Packer port, on both implementations: the in-thread packer over the
 * spool fetcher (any source) and the worker packer (directory sources, the
 * production path). Archives are read back with coldpack's tar reader and
 * checked byte for byte, digest for digest.
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { DirectorySource } from "../adapters/source/directory.ts";
import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
import { SpoolFetcher } from "../adapters/fetch/spool_fetcher.ts";
import { WorkerPacker } from "../adapters/pack/worker_packer.ts";
import { InlinePacker } from "../core/pack.ts";
import { archiveId } from "../core/ids.ts";
import { MANIFEST_NAME, parseManifest } from "../core/manifest.ts";
import type { Packer, PackFile, SourceEntry } from "../core/ports.ts";
import { safeEntryName } from "../core/safe_name.ts";
import { readTar } from "../core/tar_reader.ts";
import { TreeHasher } from "../core/tree_hash.ts";
import { bytesOf, md5, put, tempDir } from "./_helpers.ts";
import { readAll } from "./_streams.ts";

interface Fixture {
  root: string;
  spool: string;
  source: DirectorySource;
  packer: Packer;
  cleanup: () => Promise<void>;
}

type Make = (root: string, spool: string, source: DirectorySource) => Promise<Packer>;

async function fixture(make: Make): Promise<Fixture> {
  const dir = await tempDir();
  const root = `${dir.path}/src`;
  const spool = `${dir.path}/spool`;
  await Deno.mkdir(root);
  const source = await DirectorySource.open(root);
  const packer = await make(root, spool, source);
  return {
    root,
    spool,
    source,
    packer,
    cleanup: async () => {
      await packer.close();
      await source.close();
      await dir.cleanup();
    },
  };
}

/** The source's files as the catalog records them (pending rows), by key. */
async function listed(source: DirectorySource): Promise<PackFile[]> {
  const entries: SourceEntry[] = [];
  for await (const page of source.list()) entries.push(...page.entries);
  entries.sort((a, b) => a.key < b.key ? -1 : 1);
  const catalog = await SqliteCatalog.open(":memory:");
  try {
    const rows = await catalog.addDiscovered(source.id, entries, 0);
    return rows.map((row) => ({ row, name: safeEntryName(row.key) }));
  } finally {
    await catalog.close();
  }
}

function packerSuite(name: string, make: Make): void {
  Deno.test(`${name}: packs small, large and empty files into a tar that reads back exactly`, async () => {
    const f = await fixture(make);
    try {
      const want = new Map<string, Uint8Array>([
        ["a.txt", bytesOf(1, 3000)],
        ["empty", new Uint8Array(0)],
        ["big/spooled.bin", bytesOf(2, 2_500_000)],
        ["ü/z.bin", bytesOf(3, 512)],
      ]);
      for (const [k, v] of want) await put(f.root, k, v);
      const files = await listed(f.source);
      const id = archiveId("20261122T000000.000Z-aaaaaaaaaaaa");
      const packed = await f.packer.pack({ archiveId: id, source: f.source.id, files, nowMs: 0 });
      assert.deepEqual(packed.outcomes, []);
      assert.equal(packed.members.length, 4);
      assert.equal(packed.dataBytes, 3000 + 2_500_000 + 512);
      const bytes = await readAll(packed.body());
      assert.equal(bytes.length, packed.size);
      const h = new TreeHasher();
      h.update(bytes);
      assert.equal(h.digest(), packed.treeHash);
      assert.equal(createHash("sha256").update(bytes).digest("hex"), packed.sha256);
      const seen = new Map<string, Uint8Array>();
      for await (const e of readTar([bytes], { maxEntrySize: 4_000_000 })) seen.set(e.name, e.data);
      for (const [k, v] of want) assert.deepEqual(seen.get(k), v, k);
      for (const m of packed.members) {
        const file = files.find((x) => x.row.id === m.fileId)!;
        const data = bytes.subarray(m.dataOffset, m.dataOffset + m.length);
        assert.equal(m.md5, md5(want.get(file.row.key)!), file.row.key);
        assert.equal(md5(data), m.md5, `bytes at the recorded offset of ${file.row.key}`);
      }
      const manifest = parseManifest(seen.get(MANIFEST_NAME)!);
      assert.equal(manifest.archiveId, id);
      assert.equal(manifest.files.length, 4);
      assert.deepEqual(await readAll(packed.body()), bytes, "the body can be read again (retries)");
      assert.equal([...Deno.readDirSync(f.spool)].length, 1, "the 2.5 MB file was spooled");
      await packed.release();
      assert.deepEqual([...Deno.readDirSync(f.spool)], [], "release removes spool files");
    } finally {
      await f.cleanup();
    }
  });

  Deno.test(`${name}: files deleted or changed after listing are left out with the reason`, async () => {
    const f = await fixture(make);
    try {
      await put(f.root, "keep.txt", "keep");
      await put(f.root, "gone.txt", "gone");
      await put(f.root, "edited.txt", "short");
      await put(f.root, "now-a-dir", "file");
      const files = await listed(f.source);
      await Deno.remove(`${f.root}/gone.txt`);
      await put(f.root, "edited.txt", "much longer than before");
      await Deno.remove(`${f.root}/now-a-dir`);
      await Deno.mkdir(`${f.root}/now-a-dir`);
      const packed = await f.packer.pack({
        archiveId: archiveId("20261122T000000.000Z-bbbbbbbbbbbb"),
        source: f.source.id,
        files,
        nowMs: 0,
      });
      const byKey = new Map(files.map((x) => [x.row.id, x.row.key]));
      const outcomes = Object.fromEntries(
        packed.outcomes.map((o) => [byKey.get(o.fileId), `${o.kind}: ${o.message}`]),
      );
      assert.match(outcomes["gone.txt"] ?? "", /^vanished: .*"gone\.txt"/);
      assert.match(outcomes["edited.txt"] ?? "", /^changed: .*"edited\.txt" changed: size 5 -> 23/);
      assert.match(outcomes["now-a-dir"] ?? "", /^changed: .*no longer a regular file/);
      assert.deepEqual(packed.members.map((m) => byKey.get(m.fileId)), ["keep.txt"]);
      await packed.release();
    } finally {
      await f.cleanup();
    }
  });

  Deno.test(`${name}: a bundle whose files all vanished packs to an empty result`, async () => {
    const f = await fixture(make);
    try {
      await put(f.root, "x", "x");
      const files = await listed(f.source);
      await Deno.remove(`${f.root}/x`);
      const packed = await f.packer.pack({
        archiveId: archiveId("20261122T000000.000Z-cccccccccccc"),
        source: f.source.id,
        files,
        nowMs: 0,
      });
      assert.equal(packed.members.length, 0);
      assert.equal(packed.size, 0);
      assert.equal(packed.outcomes[0]?.kind, "vanished");
      assert.throws(() => packed.body(), { name: "TypeError", message: /is empty/ });
    } finally {
      await f.cleanup();
    }
  });

  Deno.test(`${name}: concurrent packs are independent`, async () => {
    const f = await fixture(make);
    try {
      for (let i = 0; i < 40; i++) await put(f.root, `f${i}`, bytesOf(i, 100 + i));
      const files = await listed(f.source);
      const halves = [files.slice(0, 20), files.slice(20)];
      const packed = await Promise.all(halves.map((h, i) =>
        f.packer.pack({
          archiveId: archiveId(`20261122T000000.000Z-00000000000${i}`),
          source: f.source.id,
          files: h,
          nowMs: 0,
        })
      ));
      for (const [i, p] of packed.entries()) {
        assert.deepEqual(
          p.members.map((m) => m.fileId),
          halves[i]!.map((x) => x.row.id),
        );
        await p.release();
      }
    } finally {
      await f.cleanup();
    }
  });
}

// A 1 MiB memory threshold, so that the 2.5 MB file takes the spool path.
const MEMORY_THRESHOLD = 1024 * 1024;

packerSuite("inline packer", async (_root, spool, source) => {
  return new InlinePacker(
    await SpoolFetcher.open(source, spool, { memoryThreshold: MEMORY_THRESHOLD }),
  );
});

packerSuite("worker packer", async (_root, spool, source) => {
  return await WorkerPacker.open(source.root, spool, {
    workers: 2,
    memoryThreshold: MEMORY_THRESHOLD,
  });
});

Deno.test("worker packer: close rejects packs still waiting, naming the reason", async () => {
  const dir = await tempDir();
  try {
    await put(`${dir.path}/src`, "a", bytesOf(1, 10));
    const source = await DirectorySource.open(`${dir.path}/src`);
    const packer = await WorkerPacker.open(source.root, `${dir.path}/spool`, { workers: 1 });
    const files = await listed(source);
    const waiting = packer.pack({
      archiveId: archiveId("20261122T000000.000Z-dddddddddddd"),
      source: source.id,
      files,
      nowMs: 0,
    });
    await packer.close();
    await assert.rejects(waiting, { name: "PortError", code: "ECLOSED" });
    await assert.rejects(
      packer.pack({ archiveId: archiveId("x1"), source: source.id, files, nowMs: 0 }),
      { name: "PortError", message: /the packer is closed/ },
    );
    await source.close();
  } finally {
    await dir.cleanup();
  }
});
