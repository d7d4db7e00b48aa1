import assert from "node:assert/strict";
import { prng } from "./prng.ts";
import { archiveId, type FileId, fileId, remoteArchiveId } from "./ids.ts";
import type { ByteRange, StoreCapabilities } from "./ports.ts";
import { retrievalRangeProblem } from "./ranges.ts";
import {
  type ArchiveToRead,
  type FileToRestore,
  type KnownRetrieval,
  type PlanInput,
  planRetrievals,
  type RetrievalPlan,
} from "./restore_plan.ts";
import { MIB } from "./tree_hash.ts";

const GLACIER: StoreCapabilities = { rangedRetrieval: true, rangeAlignment: MIB };
const S3: StoreCapabilities = { rangedRetrieval: false, rangeAlignment: 1 };
const NOW = Date.UTC(2026, 5, 1);
const HOUR = 3_600_000;
const KB = 1024;

let nextFid = 1;

/**
 * Lays files out as a tar does: a 512-byte header, the data, padding to
 * 512; then `tail` bytes (manifest entry and end blocks).
 */
function layout(
  id: string,
  lengths: readonly number[],
  options: { tail?: number; startAt?: number; store?: string } = {},
): { archive: ArchiveToRead; files: FileToRestore[] } {
  let pos = options.startAt ?? 0;
  const files: FileToRestore[] = [];
  for (const length of lengths) {
    const headerOffset = pos;
    const dataOffset = pos + 512;
    files.push({
      fileId: fileId(nextFid++),
      archiveId: archiveId(id),
      headerOffset,
      dataOffset,
      length,
    });
    pos = dataOffset + Math.ceil(length / 512) * 512;
  }
  const size = pos + (options.tail ?? 3 * 512 + 1024);
  return {
    archive: {
      id: archiveId(id),
      size,
      remoteId: remoteArchiveId(`remote-${id}`),
      store: options.store ?? "glacier://us-east-1/vault",
    },
    files,
  };
}

/** One file of `length` bytes whose data starts at `dataOffset` of an archive of `size` bytes. */
function single(dataOffset: number, length: number, size: number): PlanInput {
  const a = archiveId("a1");
  return {
    files: [{
      fileId: fileId(1),
      archiveId: a,
      headerOffset: Math.max(0, dataOffset - 512),
      dataOffset,
      length,
    }],
    archives: [{ id: a, size, remoteId: remoteArchiveId("r1"), store: "glacier://x/v" }],
    capabilities: GLACIER,
    nowMs: NOW,
  };
}

/** Checks what every plan must satisfy, whatever the input. */
function checkPlan(plan: RetrievalPlan, input: PlanInput): void {
  const sizes = new Map(input.archives.map((a) => [a.id as string, a.size]));
  const wanted = new Map(input.files.map((f) => [f.fileId, f]));
  const served = new Set<FileId>();
  for (const r of plan.start) {
    const size = sizes.get(r.archiveId)!;
    if (r.range === null) {
      assert.equal(input.capabilities.rangedRetrieval, false, "whole archives only without ranges");
      assert.equal(r.bytes, size);
    } else {
      assert.equal(
        retrievalRangeProblem(r.range, size),
        null,
        `range ${r.range.start}-${r.range.end}`,
      );
      assert.equal(r.bytes, r.range.end + 1 - r.range.start);
    }
    for (const f of r.files) {
      const start = r.range?.start ?? 0;
      assert.equal(f.offset, f.dataOffset - start);
      assert.ok(f.offset >= 0 && f.offset + f.length <= r.bytes, `file ${f.fileId} inside`);
      assert.equal(wanted.get(f.fileId)?.archiveId, r.archiveId);
      assert.ok(!served.has(f.fileId), `file ${f.fileId} served once`);
      served.add(f.fileId);
    }
  }
  for (const r of plan.reuse) {
    for (const f of r.files) {
      assert.equal(f.offset, f.dataOffset - (r.range?.start ?? 0));
      assert.ok(!served.has(f.fileId), `file ${f.fileId} served once`);
      served.add(f.fileId);
    }
  }
  for (const e of plan.empty) served.add(e.fileId);
  assert.deepEqual([...served].sort((a, b) => a - b), [...wanted.keys()].sort((a, b) => a - b));
  const sorted = [...plan.start].sort((a, b) =>
    (a.archiveId < b.archiveId ? -1 : a.archiveId > b.archiveId ? 1 : 0) ||
    (a.range?.start ?? 0) - (b.range?.start ?? 0)
  );
  assert.deepEqual(plan.start, sorted, "start is sorted by archive, then range start");
  assert.equal(plan.totals.retrievalsToStart, plan.start.length);
  assert.equal(plan.totals.retrievalsReused, plan.reuse.length);
  assert.equal(plan.totals.bytesToRetrieve, plan.start.reduce((n, r) => n + r.bytes, 0));
  assert.equal(plan.totals.bytesNeeded, [...wanted.values()].reduce((n, f) => n + f.length, 0));
}

function plan(input: PlanInput, options?: Parameters<typeof planRetrievals>[1]): RetrievalPlan {
  const p = planRetrievals(input, options);
  checkPlan(p, input);
  return p;
}

// ---------------------------------------------------------------------------
// The target: one 100 KB file out of a 25 MB archive.

Deno.test("a 100 KB file not straddling a MiB boundary retrieves at most 1 MiB + the file", () => {
  const size = 25 * MIB + 3000;
  const L = 100 * KB;
  const cases: [string, number][] = [
    ["first file of the archive", 512],
    ["in the middle", 7 * MIB + 4096],
    ["ending on a boundary", 12 * MIB - L],
    ["starting on a boundary", 20 * MIB],
    ["the archive's last file", size - 2048 - L],
  ];
  for (const [what, offset] of cases) {
    const p = plan(single(offset, L, size));
    assert.equal(p.start.length, 1, what);
    const r = p.start[0]!;
    assert.ok(r.bytes <= MIB + L, `${what}: ${r.bytes} bytes`);
    assert.equal(r.files[0]!.offset, offset - r.range!.start, what);
    assert.equal(p.totals.bytesNeeded, L);
  }
  // The last file's range runs to the archive's (unaligned) end: it straddles
  // 25 MiB, yet costs only 1 MiB + 3000 bytes.
  const last = plan(single(size - 2048 - L, L, size)).start[0]!;
  assert.deepEqual(last.range, { start: 24 * MIB, end: size - 1 });
  assert.equal(last.bytes, MIB + 3000);
});

Deno.test("a 100 KB file straddling a MiB boundary costs 2 MiB, the least Glacier allows", () => {
  const size = 25 * MIB + 3000;
  const L = 100 * KB;
  const offset = 3 * MIB - 50 * KB;
  const p = plan(single(offset, L, size));
  assert.deepEqual(p.start.map((r) => r.range), [{ start: 2 * MIB, end: 4 * MIB - 1 }]);
  assert.equal(p.totals.bytesToRetrieve, 2 * MIB);
  // No retrievable range covering the file is smaller: try every MiB-aligned candidate.
  let least = Infinity;
  for (let start = 0; start <= offset; start += MIB) {
    for (let stop = MIB; stop <= size + MIB; stop += MIB) {
      const range = { start, end: Math.min(stop, size) - 1 };
      if (range.end < offset + L - 1 || retrievalRangeProblem(range, size) !== null) continue;
      least = Math.min(least, range.end + 1 - range.start);
    }
  }
  assert.equal(least, 2 * MIB);
});

Deno.test("on average over tar offsets a 100 KB file retrieves at most 1 MiB + the file", () => {
  const size = 25 * MIB + 3000;
  const L = 100 * KB;
  let total = 0;
  let count = 0;
  for (let offset = 4 * MIB; offset < 5 * MIB; offset += 512) {
    total += planRetrievals(single(offset, L, size)).totals.bytesToRetrieve;
    count++;
  }
  assert.ok(total / count <= MIB + L, `mean ${total / count}`);
});

// ---------------------------------------------------------------------------
// Many files, many archives.

/** 40 archives of 25 files (mixed sizes, ~25 MiB each): 1,000 files. */
function corpus(seed: number, store = "glacier://us-east-1/vault") {
  const rand = prng(seed);
  const archives: ArchiveToRead[] = [];
  const files: FileToRestore[] = [];
  for (let i = 0; i < 40; i++) {
    const lengths = Array.from({ length: 25 }, () => {
      const x = rand();
      return x < 0.1
        ? 0
        : x < 0.6
        ? Math.floor(rand() * 200 * KB) + 1
        : Math.floor(rand() * 2 * MIB);
    });
    const l = layout(`arch-${String(i).padStart(2, "0")}`, lengths, { store });
    archives.push(l.archive);
    files.push(...l.files);
  }
  return { archives, files, rand };
}

/** The 1 MiB blocks of `archive` that hold data of `files`. */
function touchedBlocks(files: readonly FileToRestore[]): Set<number> {
  const blocks = new Set<number>();
  for (const f of files) {
    if (f.length === 0) continue;
    for (
      let b = Math.floor(f.dataOffset / MIB);
      b <= Math.floor((f.dataOffset + f.length - 1) / MIB);
      b++
    ) {
      blocks.add(b);
    }
  }
  return blocks;
}

/** Checks that each archive's ranges are no more, and no longer, than the gap rule needs. */
function checkMinimal(p: RetrievalPlan, files: readonly FileToRestore[], gap: number): void {
  const byArchive = Map.groupBy(files, (f) => f.archiveId as string);
  for (const [id, list] of byArchive) {
    const touched = touchedBlocks(list);
    const ranges = p.start.filter((r) => r.archiveId === id).map((r) => r.range!);
    if (touched.size === 0) {
      assert.equal(ranges.length, 0, `${id}: nothing to retrieve`);
      continue;
    }
    const inRanges = (b: number) => ranges.some((r) => r.start <= b * MIB && b * MIB <= r.end);
    for (const b of touched) assert.ok(inRanges(b), `${id}: block ${b} covered`);
    for (const r of ranges) {
      assert.ok(touched.has(r.start / MIB), `${id}: range starts on a needed block`);
      assert.ok(touched.has(Math.floor(r.end / MIB)), `${id}: range ends on a needed block`);
      let run = 0;
      for (let b = r.start / MIB; b <= Math.floor(r.end / MIB); b++) {
        run = touched.has(b) ? 0 : run + MIB;
        assert.ok(run <= gap, `${id}: an unneeded run of ${run} bytes inside a range`);
      }
    }
    for (let i = 1; i < ranges.length; i++) {
      const between = ranges[i]!.start - (ranges[i - 1]!.end + 1);
      assert.ok(between > gap, `${id}: ranges ${i - 1} and ${i} are ${between} bytes apart`);
    }
  }
}

Deno.test("1,000 files over 40 archives start one retrieval per archive", () => {
  const { archives, files } = corpus(1);
  const input = { files, archives, capabilities: GLACIER, nowMs: NOW };
  const p = plan(input);
  assert.equal(p.totals.archives, 40);
  assert.equal(p.start.length, 40);
  assert.equal(p.empty.length, files.filter((f) => f.length === 0).length);
  checkMinimal(p, files, MIB);
});

Deno.test("a subset of 1,000 files starts no more retrievals or bytes than needed", () => {
  for (const seed of [2, 3, 4]) {
    const { archives, files, rand } = corpus(seed);
    const some = files.filter(() => rand() < 0.15);
    const input = { files: some, archives, capabilities: GLACIER, nowMs: NOW };
    const holding = new Set(some.filter((f) => f.length > 0).map((f) => f.archiveId)).size;
    // Default gap: a new range only where needed blocks are more than 1 MiB apart.
    const p = plan(input);
    checkMinimal(p, some, MIB);
    assert.ok(p.start.length >= holding);
    // Without merging: one range per run of needed blocks, exactly the needed blocks.
    const tight = plan(input, { mergeGapBytes: 0 });
    checkMinimal(tight, some, 0);
    const blocks = [...Map.groupBy(some, (f) => f.archiveId as string).values()]
      .reduce((n, list) => n + touchedBlocks(list).size, 0);
    assert.ok(tight.totals.bytesToRetrieve <= blocks * MIB);
    assert.ok(tight.totals.bytesToRetrieve > (blocks - holding) * MIB, "only the last block short");
    assert.ok(tight.start.length >= p.start.length);
    assert.ok(p.totals.bytesToRetrieve >= tight.totals.bytesToRetrieve);
    // A gap as large as an archive: exactly one retrieval per archive that holds a needed file.
    const one = plan(input, { mergeGapBytes: 25 * MIB });
    assert.equal(one.start.length, holding);
    assert.ok(holding <= 40);
  }
});

Deno.test("mergeGapBytes decides whether two nearby files share a retrieval", () => {
  const a = archiveId("a1");
  const archive = { id: a, size: 25 * MIB, remoteId: remoteArchiveId("r"), store: "s" };
  const f1 = { fileId: fileId(1), archiveId: a, headerOffset: 0, dataOffset: 512, length: 10 * KB };
  const f2 = {
    fileId: fileId(2),
    archiveId: a,
    headerOffset: 2 * MIB,
    dataOffset: 2 * MIB + 512,
    length: 10 * KB,
  };
  const input = { files: [f1, f2], archives: [archive], capabilities: GLACIER, nowMs: NOW };
  // Aligned: 0..1 MiB and 2..3 MiB, a gap of exactly 1 MiB.
  assert.deepEqual(plan(input).start.map((r) => r.range), [{ start: 0, end: 3 * MIB - 1 }]);
  assert.deepEqual(plan(input, { mergeGapBytes: MIB - 1 }).start.map((r) => r.range), [
    { start: 0, end: MIB - 1 },
    { start: 2 * MIB, end: 3 * MIB - 1 },
  ]);
  // Files in the same block always share it, whatever the gap.
  const f3 = { ...f2, fileId: fileId(3), headerOffset: 20 * KB, dataOffset: 20 * KB + 512 };
  const same = plan({ ...input, files: [f1, f3] }, { mergeGapBytes: 0 });
  assert.deepEqual(same.start.map((r) => [r.range, r.files.map((f) => f.offset)]), [
    [{ start: 0, end: MIB - 1 }, [512, 20 * KB + 512]],
  ]);
});

Deno.test("a large file and a small one within its aligned range make one retrieval", () => {
  const l = layout("big", [5 * MIB, 1000], { tail: 10 * MIB });
  const p = plan({ files: l.files, archives: [l.archive], capabilities: GLACIER, nowMs: NOW }, {
    mergeGapBytes: 0,
  });
  assert.equal(p.start.length, 1);
  assert.deepEqual(p.start[0]!.range, { start: 0, end: 6 * MIB - 1 });
});

Deno.test("ranges follow a coarser store alignment", () => {
  const l = layout("a", [10 * KB], { startAt: 3 * MIB, tail: 10 * MIB });
  const p = plan({
    files: l.files,
    archives: [l.archive],
    capabilities: { rangedRetrieval: true, rangeAlignment: 2 * MIB },
    nowMs: NOW,
  });
  assert.deepEqual(p.start[0]!.range, { start: 2 * MIB, end: 4 * MIB - 1 });
});

// ---------------------------------------------------------------------------
// Archive ends.

Deno.test("ranges end at the archive's last byte when its size is not aligned", () => {
  for (const size of [25 * MIB, 25 * MIB + 1, 25 * MIB + MIB - 1, 700 * KB, 1]) {
    const length = Math.min(1000, size);
    const p = plan(single(size - length, length, size));
    const r = p.start[0]!.range!;
    assert.equal(r.end, size - 1, `size ${size}`);
    assert.equal(r.start, Math.floor((size - length) / MIB) * MIB, `size ${size}`);
    assert.equal(retrievalRangeProblem(r, size), null);
  }
});

Deno.test("a file ending exactly on the archive's last byte retrieves up to it", () => {
  const size = 3 * MIB + 100;
  const p = plan(single(3 * MIB - 50, 150, size));
  assert.deepEqual(p.start[0]!.range, { start: 2 * MIB, end: size - 1 });
});

// ---------------------------------------------------------------------------
// Reuse of known retrievals.

Deno.test("an active retrieval is reused across calls, with offsets relative to its start", () => {
  const { archives, files, rand } = corpus(5);
  const some = files.filter((f) => f.length > 0 && rand() < 0.1);
  const first = plan({ files: some, archives, capabilities: GLACIER, nowMs: NOW });
  assert.ok(first.start.length > 0);
  // The caller starts them and records them; the next call (same files, later) reuses them all.
  const known: KnownRetrieval[] = first.start.map((r, i) => ({
    id: `ret-${i}`,
    archiveId: r.archiveId,
    range: r.range,
    state: "in-progress",
    expiresAt: null,
  }));
  const second = plan({
    files: some,
    archives,
    capabilities: GLACIER,
    retrievals: known,
    nowMs: NOW + HOUR,
  });
  assert.deepEqual(second.start, []);
  assert.equal(second.totals.bytesToRetrieve, 0);
  assert.equal(second.totals.retrievalsReused, first.start.length);
  assert.deepEqual(
    second.reuse.map((r) => [r.archiveId, r.range, r.files]),
    first.start.map((r) => [r.archiveId, r.range, r.files]),
  );
  // Once ready, with 24 h to live, still reused.
  const ready = known.map((r) => ({ ...r, state: "ready" as const, expiresAt: NOW + 24 * HOUR }));
  const third = plan({
    files: some,
    archives,
    capabilities: GLACIER,
    retrievals: ready,
    nowMs: NOW + 2 * HOUR,
  });
  assert.deepEqual(third.start, []);
  assert.ok(third.reuse.every((r) => r.state === "ready"));
});

Deno.test("a file inside another file's retrieved range reuses it", () => {
  const l = layout("a", [10 * KB, 10 * KB, 10 * KB]);
  const [f1, f2, f3] = l.files as [FileToRestore, FileToRestore, FileToRestore];
  const known: KnownRetrieval[] = [{
    id: "r-1",
    archiveId: l.archive.id,
    range: { start: 0, end: l.archive.size - 1 },
    state: "ready",
    expiresAt: NOW + 10 * HOUR,
  }];
  const p = plan({
    files: [f3, f2],
    archives: [l.archive],
    capabilities: GLACIER,
    retrievals: known,
    nowMs: NOW,
  });
  assert.deepEqual(p.reuse, [{
    retrievalId: "r-1",
    archiveId: l.archive.id,
    range: known[0]!.range,
    state: "ready",
    files: [f2, f3].map((f) => ({
      fileId: f.fileId,
      dataOffset: f.dataOffset,
      length: f.length,
      offset: f.dataOffset,
    })),
  }]);
  assert.ok(f1.dataOffset < f2.dataOffset);
});

Deno.test("expired, failed and soon-expiring retrievals are not relied on", () => {
  const input = single(5 * MIB + 512, 100 * KB, 25 * MIB);
  const a = input.files[0]!.archiveId;
  const range: ByteRange = { start: 5 * MIB, end: 6 * MIB - 1 };
  const cases: [string, Omit<KnownRetrieval, "id" | "archiveId" | "range">, boolean][] = [
    ["ready, 2 h left", { state: "ready", expiresAt: NOW + 2 * HOUR }, true],
    ["in progress", { state: "in-progress", expiresAt: null }, true],
    ["ready, expiry unknown", { state: "ready", expiresAt: null }, true],
    [
      "ready, 30 min left (inside the 1 h margin)",
      { state: "ready", expiresAt: NOW + HOUR / 2 },
      false,
    ],
    ["ready, exactly the margin left", { state: "ready", expiresAt: NOW + HOUR }, false],
    ["ready, but past its expiry", { state: "ready", expiresAt: NOW - 1 }, false],
    ["expired", { state: "expired", expiresAt: NOW - HOUR }, false],
    ["failed", { state: "failed", expiresAt: null }, false],
  ];
  for (const [what, r, reused] of cases) {
    const p = plan({ ...input, retrievals: [{ id: "r", archiveId: a, range, ...r }] });
    assert.equal(p.reuse.length, reused ? 1 : 0, what);
    assert.equal(p.start.length, reused ? 0 : 1, what);
  }
  // The margin is an option.
  const soon: KnownRetrieval = {
    id: "r",
    archiveId: a,
    range,
    state: "ready",
    expiresAt: NOW + HOUR / 2,
  };
  assert.equal(
    plan({ ...input, retrievals: [soon] }, { expiryMarginMs: HOUR / 4 }).reuse.length,
    1,
  );
});

Deno.test("a retrieval covering only part of a file is not reused for it", () => {
  const input = single(MIB - 10 * KB, 100 * KB, 25 * MIB);
  const a = input.files[0]!.archiveId;
  const known: KnownRetrieval = {
    id: "r",
    archiveId: a,
    range: { start: 0, end: MIB - 1 },
    state: "ready",
    expiresAt: null,
  };
  const p = plan({ ...input, retrievals: [known] });
  assert.deepEqual(p.reuse, []);
  assert.deepEqual(p.start.map((r) => r.range), [{ start: 0, end: 2 * MIB - 1 }]);
});

Deno.test("a ready retrieval is preferred to one in progress, then the longer-lived one", () => {
  const input = single(5 * MIB + 512, 100 * KB, 25 * MIB);
  const a = input.files[0]!.archiveId;
  const r = (
    id: string,
    state: "ready" | "in-progress",
    expiresAt: number | null,
  ): KnownRetrieval => ({
    id,
    archiveId: a,
    range: null,
    state,
    expiresAt,
  });
  const choose = (list: KnownRetrieval[]) =>
    plan({ ...input, retrievals: list }).reuse.map((x) => x.retrievalId);
  assert.deepEqual(choose([r("p", "in-progress", null), r("q", "ready", NOW + 5 * HOUR)]), ["q"]);
  assert.deepEqual(choose([r("b", "ready", NOW + 5 * HOUR), r("c", "ready", NOW + 9 * HOUR)]), [
    "c",
  ]);
  assert.deepEqual(choose([r("y", "ready", NOW + 5 * HOUR), r("x", "ready", NOW + 5 * HOUR)]), [
    "x",
  ]);
});

// ---------------------------------------------------------------------------
// Stores without ranged retrieval (S3 Glacier classes).

Deno.test("S3 classes restore each archive whole, once, and reuse a ready copy", () => {
  const s3 = "s3://bucket/prefix?storage-class=DEEP_ARCHIVE";
  const l1 = layout("a1", [10 * KB, 2 * MIB, 300], { store: s3 });
  const l2 = layout("a2", [5 * KB, 5 * KB], { store: s3 });
  const l3 = layout("a3", [1 * KB], { store: s3 });
  const files = [...l1.files, ...l2.files, ...l3.files];
  const archives = [l1.archive, l2.archive, l3.archive];
  const p = plan({ files, archives, capabilities: S3, nowMs: NOW });
  assert.deepEqual(
    p.start.map((r) => [r.archiveId, r.range, r.bytes, r.files.length]),
    [["a1", null, l1.archive.size, 3], ["a2", null, l2.archive.size, 2], [
      "a3",
      null,
      l3.archive.size,
      1,
    ]],
  );
  assert.deepEqual(p.start[0]!.files.map((f) => f.offset), l1.files.map((f) => f.dataOffset));
  const known: KnownRetrieval[] = [
    {
      id: "s3-a1",
      archiveId: l1.archive.id,
      range: null,
      state: "ready",
      expiresAt: NOW + 48 * HOUR,
    },
    { id: "s3-a3", archiveId: l3.archive.id, range: null, state: "expired", expiresAt: NOW - HOUR },
  ];
  const again = plan({ files, archives, capabilities: S3, retrievals: known, nowMs: NOW });
  assert.deepEqual(again.reuse.map((r) => [r.retrievalId, r.files.length]), [["s3-a1", 3]]);
  assert.deepEqual(again.start.map((r) => r.archiveId), ["a2", "a3"]);
  assert.equal(again.totals.bytesToRetrieve, l2.archive.size + l3.archive.size);
  assert.equal(again.totals.archives, 3);
});

// ---------------------------------------------------------------------------
// Every range retrievable, determinism, empty files, repeats.

Deno.test("every planned range passes retrievalRangeProblem, whatever the layout", () => {
  const rand = prng(7);
  for (let round = 0; round < 200; round++) {
    const lengths = Array.from(
      { length: 1 + Math.floor(rand() * 30) },
      () => Math.floor(rand() * 3 * MIB),
    );
    const l = layout("x", lengths, { tail: Math.floor(rand() * 4 * MIB) + 1 });
    const some = l.files.filter(() => rand() < 0.4);
    const gap = [0, MIB, 4 * MIB][round % 3]!;
    const p = plan({ files: some, archives: [l.archive], capabilities: GLACIER, nowMs: NOW }, {
      mergeGapBytes: gap,
    });
    checkMinimal(p, some, gap);
  }
});

Deno.test("the plan does not depend on the order of its input", () => {
  const { archives, files, rand } = corpus(9);
  const some = files.filter(() => rand() < 0.3);
  const known: KnownRetrieval[] = [
    {
      id: "k1",
      archiveId: archives[3]!.id,
      range: { start: 0, end: 2 * MIB - 1 },
      state: "ready",
      expiresAt: NOW + 9 * HOUR,
    },
    { id: "k2", archiveId: archives[3]!.id, range: null, state: "in-progress", expiresAt: null },
    {
      id: "k3",
      archiveId: archives[7]!.id,
      range: { start: 2 * MIB, end: 8 * MIB - 1 },
      state: "ready",
      expiresAt: null,
    },
  ];
  const input = { files: some, archives, capabilities: GLACIER, retrievals: known, nowMs: NOW };
  const p = plan(input);
  const shuffle = <T>(list: readonly T[]): T[] => {
    const out = [...list];
    for (let i = out.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [out[i], out[j]] = [out[j]!, out[i]!];
    }
    return out;
  };
  for (let i = 0; i < 5; i++) {
    const q = planRetrievals({
      ...input,
      files: shuffle(some),
      archives: shuffle(archives),
      retrievals: shuffle(known),
    });
    assert.deepEqual(q, p);
  }
  assert.deepEqual(p.reuse.map((r) => r.retrievalId), ["k1", "k2", "k3"]);
});

Deno.test("files of length 0 need no retrieval", () => {
  const l = layout("a", [0, 10 * KB, 0]);
  const p = plan({ files: l.files, archives: [l.archive], capabilities: GLACIER, nowMs: NOW });
  assert.deepEqual(p.empty.map((e) => e.fileId), [l.files[0]!.fileId, l.files[2]!.fileId]);
  assert.equal(p.start.length, 1);
  assert.deepEqual(p.start[0]!.files.map((f) => f.fileId), [l.files[1]!.fileId]);
  const onlyEmpty = plan({
    files: [l.files[0]!],
    archives: [l.archive],
    capabilities: GLACIER,
    nowMs: NOW,
  });
  assert.deepEqual(onlyEmpty.start, []);
  assert.deepEqual(onlyEmpty.totals, {
    bytesNeeded: 0,
    bytesToRetrieve: 0,
    archives: 0,
    retrievalsToStart: 0,
    retrievalsReused: 0,
  });
});

Deno.test("a file asked for twice is planned once", () => {
  const l = layout("a", [10 * KB]);
  const f = l.files[0]!;
  const p = plan({
    files: [f, { ...f }],
    archives: [l.archive, l.archive],
    capabilities: GLACIER,
    nowMs: NOW,
  });
  assert.equal(p.start.length, 1);
  assert.equal(p.start[0]!.files.length, 1);
  assert.equal(p.totals.bytesNeeded, 10 * KB);
});

Deno.test("no files, no plan", () => {
  assert.deepEqual(planRetrievals({ files: [], archives: [], capabilities: GLACIER, nowMs: NOW }), {
    reuse: [],
    start: [],
    empty: [],
    totals: {
      bytesNeeded: 0,
      bytesToRetrieve: 0,
      archives: 0,
      retrievalsToStart: 0,
      retrievalsReused: 0,
    },
  });
});

// ---------------------------------------------------------------------------
// Bad input names what is wrong.

Deno.test("bad input is rejected with the file, archive or retrieval named", () => {
  const base = single(MIB, 100, 25 * MIB);
  const f = base.files[0]!;
  const a = base.archives[0]!;
  const cases: [string, PlanInput, typeof RangeError | typeof TypeError, string][] = [
    [
      "archive missing",
      { ...base, archives: [] },
      RangeError,
      "Cannot plan retrievals: file 1 is in archive a1, which is not among the archives given",
    ],
    [
      "past the end",
      { ...base, files: [{ ...f, dataOffset: 25 * MIB - 50 }] },
      RangeError,
      `Cannot plan retrievals: file 1 ends at byte ${25 * MIB + 49}, past the end of archive a1 (${
        25 * MIB
      } bytes)`,
    ],
    [
      "zero-size archive",
      { ...base, archives: [{ ...a, size: 0 }] },
      RangeError,
      "Cannot plan retrievals: archive a1 has size 0",
    ],
    [
      "negative offset",
      { ...base, files: [{ ...f, dataOffset: -1 }] },
      RangeError,
      "Cannot plan retrievals: the data offset of file 1 is -1, not a whole number >= 0",
    ],
    [
      "header after data",
      { ...base, files: [{ ...f, headerOffset: f.dataOffset + 512 }] },
      RangeError,
      `Cannot plan retrievals: file 1 in archive a1 has its header at ${
        f.dataOffset + 512
      }, after its data at ${f.dataOffset}`,
    ],
    [
      "same file, two places",
      { ...base, files: [f, { ...f, dataOffset: f.dataOffset + 512 }] },
      RangeError,
      "Cannot plan retrievals: file 1 is given twice, at different places",
    ],
    [
      "two stores",
      (() => {
        const b = archiveId("b2");
        return {
          ...base,
          files: [f, { ...f, fileId: fileId(2), archiveId: b }],
          archives: [a, { ...a, id: b, store: "file:///vault" }],
        };
      })(),
      RangeError,
      "Cannot plan retrievals: archive a1 is in glacier://x/v but archive b2 is in file:///vault; plan each store on its own",
    ],
    [
      "retrieval outside its archive",
      {
        ...base,
        retrievals: [{
          id: "r9",
          archiveId: a.id,
          range: { start: 0, end: 25 * MIB },
          state: "ready",
          expiresAt: null,
        }],
      },
      RangeError,
      `Cannot plan retrievals: retrieval r9 has range 0-${25 * MIB}, not within archive a1 (${
        25 * MIB
      } bytes)`,
    ],
    [
      "unknown retrieval state",
      {
        ...base,
        retrievals: [{
          id: "r9",
          archiveId: a.id,
          range: null,
          state: "done" as unknown as "ready",
          expiresAt: null,
        }],
      },
      TypeError,
      'Cannot plan retrievals: retrieval r9 has an unknown state "done"',
    ],
    [
      "bad alignment",
      { ...base, capabilities: { rangedRetrieval: true, rangeAlignment: 0 } },
      RangeError,
      "Cannot plan retrievals: the store's range alignment 0 is not a positive integer",
    ],
  ];
  for (const [what, input, cls, message] of cases) {
    assert.throws(() => planRetrievals(input), (e: unknown) => {
      assert.ok(e instanceof cls, `${what}: ${e}`);
      assert.equal((e as Error).message, message, what);
      return true;
    });
  }
});

Deno.test("bad options are rejected", () => {
  const input = single(MIB, 100, 25 * MIB);
  assert.throws(
    () => planRetrievals(input, { mergeGapBytes: -1 }),
    (e: unknown) =>
      e instanceof RangeError &&
      e.message === "Cannot plan retrievals: option mergeGapBytes is -1, not a whole number >= 0",
  );
  assert.throws(
    () => planRetrievals(input, { tier: "Fast" as unknown as "Bulk" }),
    (e: unknown) =>
      e instanceof TypeError &&
      e.message === 'Cannot plan retrievals: unknown tier "Fast" (Expedited, Standard or Bulk)',
  );
  assert.throws(
    () => planRetrievals(input, { expiryMarginMs: -5 }),
    (e: unknown) => e instanceof RangeError && e.message.includes("expiryMarginMs is -5"),
  );
  assert.equal(planRetrievals(input, { tier: "Bulk" }).start[0]!.tier, "Bulk");
  assert.equal(planRetrievals(input).start[0]!.tier, "Standard");
});
