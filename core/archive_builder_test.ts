import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  ArchiveBuilder,
  type ArchiveItem,
  type BuiltArchive,
  DEFAULT_ALIGN_BELOW,
} from "./archive_builder.ts";
import { archiveId, fileId, sourceId } from "./ids.ts";
import { MANIFEST_NAME, parseManifest } from "./manifest.ts";
import type { Body, FileRow } from "./ports.ts";
import { prng } from "./prng.ts";
import { MAX_ALIGN_BELOW, planTar, TAR_ALIGN_SIZE, tarHeader } from "./tar.ts";
import { readTar } from "./tar_reader.ts";

const MIB = TAR_ALIGN_SIZE;
const SOURCE = sourceId("dir:/srv/test");
const MTIME_MS = 1_700_000_000_000;

function row(id: number, key: string, length: number): FileRow {
  return {
    id: fileId(id),
    source: SOURCE,
    key,
    version: "v1",
    domain: null,
    storageClass: null,
    sourceFid: null,
    length,
    mtimeMs: MTIME_MS,
    discoveredAt: MTIME_MS,
    state: "pending",
    md5: null,
    archiveId: null,
    headerOffset: null,
    dataOffset: null,
    archivedAt: null,
    attempts: 0,
    nextAttemptAt: null,
    note: null,
    goneAt: null,
  };
}

/** A body held in memory, or (spooled) one that only streams, as a spool file does. */
function body(bytes: Uint8Array, spooled: boolean): Body {
  return {
    length: bytes.length,
    bytes: spooled ? null : bytes,
    stream: () =>
      new ReadableStream({
        start(c) {
          // Two pieces, as a spool file's stream would give them.
          c.enqueue(bytes.subarray(0, bytes.length >> 1));
          c.enqueue(bytes.subarray(bytes.length >> 1));
          c.close();
        },
      }),
    release: () => Promise.resolve(),
  };
}

interface Case {
  name: string;
  data: Uint8Array;
  spooled: boolean;
}

/** Seeded files: empty, small (some above 256 KiB), a few large, some spooled, some pax-named. */
function randomFiles(rand: () => number, count: number): Case[] {
  return Array.from({ length: count }, (_, i) => {
    const r = rand();
    const size = r < 0.08
      ? 0
      : r < 0.75
      ? 1 + Math.floor(rand() * 300_000)
      : Math.floor(rand() * 2.5 * MIB);
    const data = new Uint8Array(size);
    data.fill(i & 0xff);
    if (size > 0) data[size - 1] = (i * 7 + 3) & 0xff;
    const name = i % 5 === 0 ? `ünï/${i}/${"é".repeat(1 + (i % 90))}.bin` : `d/f${i}.bin`;
    return { name, data, spooled: size > 400_000 && rand() < 0.5 };
  });
}

async function build(files: Case[], options?: { alignBelow?: number }) {
  const builder = new ArchiveBuilder(archiveId("a1"), SOURCE, options);
  for (const [i, f] of files.entries()) {
    const item: ArchiveItem = {
      row: row(i + 1, f.name, f.data.length),
      name: f.name,
      fetched: {
        md5: createHash("md5").update(f.data).digest("hex"),
        length: f.data.length,
        body: body(f.data, f.spooled),
      },
    };
    await builder.add(item);
  }
  const built = builder.finish(MTIME_MS);
  const tar = new Uint8Array(await new Response(builder.body()).arrayBuffer());
  await builder.release();
  return { built, tar };
}

/** The archive's bytes match what the builder reports, and a reader agrees on every offset. */
async function checkArchive(built: BuiltArchive, tar: Uint8Array, files: Case[]): Promise<void> {
  assert.equal(tar.length, built.size);
  assert.equal(createHash("sha256").update(tar).digest("hex"), built.sha256);
  built.members.forEach((m, i) => {
    const data = tar.subarray(m.dataOffset, m.dataOffset + m.length);
    assert.deepEqual(data, files[i]!.data, files[i]!.name);
  });
  const read = [];
  let manifest: Uint8Array | null = null;
  for await (const e of readTar([tar], { maxEntrySize: 4 * MIB })) {
    if (e.name === MANIFEST_NAME) manifest = e.data;
    else read.push([e.name, e.headerOffset, e.dataOffset]);
  }
  assert.deepEqual(
    read,
    built.members.map((m, i) => [files[i]!.name, m.headerOffset, m.dataOffset]),
  );
  const listed = parseManifest(manifest!).files.map((f) => [f.headerOffset, f.dataOffset]);
  assert.deepEqual(listed, built.members.map((m) => [m.headerOffset, m.dataOffset]));
}

Deno.test("ArchiveBuilder keeps small files' data in one 1 MiB block by default", async () => {
  const rand = prng(424242);
  let padded = 0;
  for (let seq = 0; seq < 12; seq++) {
    const files = randomFiles(rand, 10 + Math.floor(rand() * 40));
    const { built, tar } = await build(files);
    await checkArchive(built, tar, files);
    // The same layout as planTar's for the same entries and alignment.
    const plan = planTar(
      files.map((f) => ({ name: f.name, size: f.data.length, mtimeMs: MTIME_MS })),
      { alignBelow: DEFAULT_ALIGN_BELOW },
    );
    assert.deepEqual(
      built.members.map((m) => [m.headerOffset, m.dataOffset]),
      plan.entries.map((p) => [p.headerOffset, p.dataOffset]),
    );
    built.members.forEach((m, i) => {
      const what = `sequence ${seq}, ${files[i]!.name} (${m.length} bytes)`;
      const unpadded = tarHeader({ name: files[i]!.name, size: m.length, mtimeMs: MTIME_MS });
      const extra = m.dataOffset - m.headerOffset - unpadded.length;
      assert.ok(extra >= 0 && extra < MIB, `${what}: padding ${extra}`);
      if (m.length > 0 && m.length <= DEFAULT_ALIGN_BELOW) {
        assert.equal(
          Math.floor(m.dataOffset / MIB),
          Math.floor((m.dataOffset + m.length - 1) / MIB),
          `${what}: data in one block`,
        );
      } else {
        assert.equal(extra, 0, `${what}: not padded`);
      }
      if (extra > 0) padded++;
    });
  }
  assert.ok(padded >= 20, `only ${padded} files were padded`);
});

Deno.test("ArchiveBuilder with alignBelow 0 lays files out back to back, as before", async () => {
  const rand = prng(5);
  for (let seq = 0; seq < 6; seq++) {
    const files = randomFiles(rand, 30);
    const { built, tar } = await build(files, { alignBelow: 0 });
    await checkArchive(built, tar, files);
    const plan = planTar(
      files.map((f) => ({ name: f.name, size: f.data.length, mtimeMs: MTIME_MS })),
    );
    assert.deepEqual(
      built.members.map((m) => [m.headerOffset, m.dataOffset]),
      plan.entries.map((p) => [p.headerOffset, p.dataOffset]),
    );
    plan.entries.forEach((p, i) => {
      assert.deepEqual(tar.subarray(p.headerOffset, p.dataOffset), p.header, files[i]!.name);
    });
  }
});

Deno.test("ArchiveBuilder honours a smaller alignBelow", async () => {
  // 1 MiB - 2048 bytes, then two files of 10,000 bytes: the first would cross 1 MiB.
  const files: Case[] = [
    { name: "fill", data: new Uint8Array(MIB - 2048), spooled: false },
    { name: "a", data: new Uint8Array(10_000).fill(1), spooled: false },
    { name: "b", data: new Uint8Array(10_000).fill(2), spooled: false },
  ];
  const aligned = await build(files, { alignBelow: 10_000 });
  await checkArchive(aligned.built, aligned.tar, files);
  assert.equal(aligned.built.members[1]!.dataOffset, MIB);
  const off = await build(files, { alignBelow: 9_999 });
  await checkArchive(off.built, off.tar, files);
  assert.equal(off.built.members[1]!.dataOffset, MIB - 1024);
});

Deno.test("ArchiveBuilder rejects a bad alignBelow, naming the archive", () => {
  for (const alignBelow of [-1, 0.5, MAX_ALIGN_BELOW + 1]) {
    assert.throws(() => new ArchiveBuilder(archiveId("a9"), SOURCE, { alignBelow }), {
      name: "RangeError",
      message: new RegExp(
        `^Cannot build archive a9: alignBelow ${alignBelow} is not an integer from 0 to 524288$`,
      ),
    });
  }
});
