/**
 * The metrics agent's spool on a real temp directory: durability across a
 * reopen, a torn record after a crash, the size bound and its drop counts,
 * independent cursors of two readers, and big batches read in chunks.
 * @module
 */

import assert from "node:assert/strict";
import { Spool, type SpoolCursor } from "../adapters/metrics/spool.ts";
import { PortError } from "../core/errors.ts";
import { tempDir } from "./_helpers.ts";

const A = "127.0.0.1:8111";
const B = "10.0.0.2:8111";

/** `n` forward lines of batch `b`: `batch.<b>.line.<i> 1700000000 1 1 1 1 1`. */
function batch(b: number, n: number): string[] {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) lines.push(`batch.${b}.line.${i} 1700000000 1 1 1 1 1`);
  return lines;
}

/** Everything after `from` (default: the reader's cursor), read `chunk` bytes at a time. */
async function readAll(
  spool: Spool,
  reader: string,
  options: { chunk?: number; from?: SpoolCursor } = {},
): Promise<{ lines: string[]; reads: number; maxRead: number; end: SpoolCursor }> {
  const lines: string[] = [];
  let from = options.from ?? spool.committed(reader);
  let reads = 0;
  let maxRead = 0;
  for (;;) {
    const r = await spool.read(reader, options.chunk ?? 256 * 1024, from);
    if (!r) break;
    reads++;
    maxRead = Math.max(maxRead, r.data.length);
    assert.ok(r.text.endsWith("\n"), "a read ends in LF");
    const got = r.text.slice(0, -1).split("\n");
    assert.equal(got.length, r.lines);
    lines.push(...got);
    from = r.next;
  }
  return { lines, reads, maxRead, end: from };
}

async function segments(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.name.endsWith(".seg")) names.push(e.name);
  return names.sort();
}

Deno.test("Spool: appended batches survive a reopen in order, and so does the committed cursor", async () => {
  const dir = await tempDir();
  try {
    let spool = await Spool.open(dir.path, { maxBytes: 1 << 20, readers: [A] });
    for (let b = 1; b <= 3; b++) await spool.append(batch(b, 4));
    assert.deepEqual(spool.stats().pending, { [A]: 12 });
    // Commit the first batch only.
    const first = await spool.read(A, 1);
    assert.ok(first);
    assert.equal(first.lines, 4);
    assert.equal(first.batches, 1);
    assert.deepEqual(first.text.split("\n").slice(0, -1), batch(1, 4));
    await spool.commit(A, first.next);
    await spool.close();

    spool = await Spool.open(dir.path, { maxBytes: 1 << 20, readers: [A] });
    try {
      const stats = spool.stats();
      assert.deepEqual(stats.pending, { [A]: 8 });
      assert.equal(stats.tornRecords, 0);
      assert.equal(stats.droppedLines, 0);
      assert.deepEqual((await readAll(spool, A)).lines, [...batch(2, 4), ...batch(3, 4)]);
      // Reading does not move the cursor; committing an older cursor is ignored.
      assert.deepEqual((await readAll(spool, A)).lines.length, 8);
      const { end } = await readAll(spool, A);
      await spool.commit(A, end);
      await spool.commit(A, first.next);
      assert.deepEqual(spool.stats().pending, { [A]: 0 });
      assert.equal(await spool.read(A, 1024), null);
    } finally {
      await spool.close();
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test("Spool: a torn last record (SIGKILL mid-append) is cut off and counted; earlier batches are intact", async () => {
  const dir = await tempDir();
  try {
    let spool = await Spool.open(dir.path, { maxBytes: 1 << 20, readers: [A] });
    for (let b = 1; b <= 3; b++) await spool.append(batch(b, 5));
    await spool.close();
    const [seg] = await segments(dir.path);
    assert.ok(seg);
    const path = `${dir.path}/${seg}`;
    const size = (await Deno.stat(path)).size;
    // The third record loses its last 7 bytes, as if the process died while writing it.
    await Deno.truncate(path, size - 7);

    spool = await Spool.open(dir.path, { maxBytes: 1 << 20, readers: [A] });
    const recordSize = size / 3;
    try {
      const stats = spool.stats();
      assert.equal(stats.tornRecords, 1);
      assert.equal(stats.tornBytes, recordSize - 7);
      assert.deepEqual(stats.pending, { [A]: 10 });
      assert.deepEqual((await readAll(spool, A)).lines, [...batch(1, 5), ...batch(2, 5)]);
      // The tail was cut off, so the next batch follows the good ones.
      await spool.append(batch(4, 5));
    } finally {
      await spool.close();
    }
    assert.equal((await Deno.stat(path)).size, recordSize * 3);

    // A header cut short (a few bytes of the next record) is torn too.
    const f = await Deno.open(path, { append: true });
    await f.write(new Uint8Array([0x43, 0x50, 0x53, 0x31, 9]));
    f.close();
    spool = await Spool.open(dir.path, { maxBytes: 1 << 20, readers: [A] });
    try {
      const stats = spool.stats();
      assert.equal(stats.tornRecords, 2, "the count survives the reopen and adds up");
      assert.equal(stats.tornBytes, recordSize - 7 + 5);
      assert.deepEqual((await readAll(spool, A)).lines, [
        ...batch(1, 5),
        ...batch(2, 5),
        ...batch(4, 5),
      ]);
    } finally {
      await spool.close();
    }

    // A flipped payload byte fails the CRC: that record and what follows it in the segment go.
    const bytes = await Deno.readFile(path);
    bytes[recordSize + 20] = bytes[recordSize + 20]! ^ 0x20;
    await Deno.writeFile(path, bytes);
    spool = await Spool.open(dir.path, { maxBytes: 1 << 20, readers: [A] });
    try {
      assert.equal(spool.stats().tornRecords, 3);
      assert.deepEqual((await readAll(spool, A)).lines, batch(1, 5));
    } finally {
      await spool.close();
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test("Spool: after a real SIGKILL in the middle of appends, every append that resolved is there", async () => {
  const dir = await tempDir();
  try {
    // A child appends 600 KB batches as fast as it can and says which are done.
    const spoolUrl = new URL("../adapters/metrics/spool.ts", import.meta.url).href;
    const code = `
      const { Spool } = await import(${JSON.stringify(spoolUrl)});
      const spool = await Spool.open(${JSON.stringify(dir.path)}, {
        maxBytes: 1 << 30, readers: [${JSON.stringify(A)}],
      });
      for (let b = 1; ; b++) {
        const lines = [];
        for (let i = 0; i < 20000; i++) lines.push("batch." + b + ".line." + i + " 1700000000 1 1 1 1 1");
        await spool.append(lines);
        console.log(b);
      }`;
    const child = new Deno.Command(Deno.execPath(), {
      args: ["eval", code],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    let acknowledged = 0;
    const decoder = new TextDecoder();
    let text = "";
    for await (const chunk of child.stdout) {
      text += decoder.decode(chunk);
      const done = text.split("\n").slice(0, -1);
      acknowledged = Number(done.at(-1) ?? 0);
      if (acknowledged >= 5) {
        child.kill("SIGKILL");
        break;
      }
    }
    const status = await child.status;
    assert.equal(status.signal, "SIGKILL");

    const spool = await Spool.open(dir.path, { maxBytes: 1 << 30, readers: [A] });
    try {
      // A prefix of what was appended (the killed append may have left some of its records),
      // holding at least every append that resolved.
      const lines = (await readAll(spool, A)).lines;
      assert.ok(lines.length >= acknowledged * 20000, `${lines.length} lines held`);
      assert.ok(lines.length <= (acknowledged + 2) * 20000, `${lines.length} lines held`);
      for (let i = 0; i < lines.length; i++) {
        const expected = `batch.${Math.floor(i / 20000) + 1}.line.${
          i % 20000
        } 1700000000 1 1 1 1 1`;
        if (lines[i] !== expected) assert.fail(`line ${i}: ${lines[i]}, expected ${expected}`);
      }
    } finally {
      await spool.close();
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test("Spool: over maxBytes the oldest batches go first, counted (committed ones are not), and the counts survive a reopen", async () => {
  const dir = await tempDir();
  const options = { maxBytes: 4096, segmentBytes: 1024, recordBytes: 256, readers: [A] };
  try {
    let spool = await Spool.open(dir.path, options);
    const total = 100;
    for (let b = 1; b <= 10; b++) await spool.append(batch(b, 3));
    // The reader has the first 10 batches; they are not lost when dropped.
    await spool.commit(A, (await readAll(spool, A)).end);
    for (let b = 11; b <= total; b++) {
      await spool.append(batch(b, 3));
      assert.ok(spool.stats().bytes <= options.maxBytes, `bytes over the bound after batch ${b}`);
    }
    let stats = spool.stats();
    assert.ok(stats.droppedBatches > 0);
    assert.equal(stats.droppedLines, stats.droppedBatches * 3);
    const pendingBatches = stats.pending[A]! / 3;
    assert.equal(
      stats.droppedBatches + pendingBatches,
      total - 10,
      "every batch is sent or counted",
    );
    // What is left is the newest batches, in order.
    const left = (await readAll(spool, A)).lines;
    const expected: string[] = [];
    for (let b = total - pendingBatches + 1; b <= total; b++) expected.push(...batch(b, 3));
    assert.deepEqual(left, expected);
    await spool.close();

    spool = await Spool.open(dir.path, options);
    try {
      stats = spool.stats();
      assert.equal(stats.droppedBatches, total - 10 - pendingBatches);
      assert.equal(stats.droppedLines, stats.droppedBatches * 3);
      assert.deepEqual((await readAll(spool, A)).lines, expected);
    } finally {
      await spool.close();
    }

    // Reopened with a smaller bound, the oldest go at once.
    spool = await Spool.open(dir.path, { ...options, maxBytes: 2048 });
    try {
      stats = spool.stats();
      assert.ok(stats.bytes <= 2048);
      assert.equal(stats.droppedBatches + stats.pending[A]! / 3, total - 10);
      assert.deepEqual((await readAll(spool, A)).lines, expected.slice(-stats.pending[A]!));
    } finally {
      await spool.close();
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test("Spool: a batch bigger than maxBytes on its own keeps its newest records and counts the rest", async () => {
  const dir = await tempDir();
  try {
    const spool = await Spool.open(dir.path, {
      maxBytes: 1024,
      segmentBytes: 1024,
      recordBytes: 256,
      readers: [A],
    });
    try {
      await spool.append(batch(1, 4));
      const lines = batch(2, 200);
      await spool.append(lines);
      const stats = spool.stats();
      assert.ok(stats.bytes <= 1024);
      const kept = (await readAll(spool, A)).lines;
      assert.ok(kept.length > 0);
      assert.deepEqual(kept, lines.slice(-kept.length));
      assert.equal(stats.droppedLines, 4 + 200 - kept.length);
    } finally {
      await spool.close();
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test("Spool: two readers have their own cursors; a segment is deleted once both are past it", async () => {
  const dir = await tempDir();
  const options = { maxBytes: 1 << 20, segmentBytes: 1024, recordBytes: 256, readers: [A, B] };
  try {
    let spool = await Spool.open(dir.path, options);
    for (let b = 1; b <= 30; b++) await spool.append(batch(b, 3));
    const all = await segments(dir.path);
    assert.ok(all.length >= 3, `30 batches fill several 1 KiB segments: ${all}`);

    // A takes everything; B nothing yet: every segment stays.
    const a = await readAll(spool, A, { chunk: 300 });
    assert.equal(a.lines.length, 90);
    await spool.commit(A, a.end);
    assert.deepEqual(await segments(dir.path), all);
    assert.deepEqual(spool.stats().pending, { [A]: 0, [B]: 90 });

    // B reads in small steps and commits past the first segment: only it goes.
    let from = spool.committed(B);
    const bLines: string[] = [];
    while ((await segments(dir.path)).length === all.length) {
      const r = await spool.read(B, 100, from);
      assert.ok(r, "B still has data");
      bLines.push(...r.text.slice(0, -1).split("\n"));
      await spool.commit(B, r.next);
      from = r.next;
    }
    assert.deepEqual(await segments(dir.path), all.slice(1));
    await spool.close();

    // After a reopen B goes on where it committed; A has nothing.
    spool = await Spool.open(dir.path, options);
    try {
      assert.equal(await spool.read(A, 1 << 20), null);
      const rest = await readAll(spool, B);
      assert.deepEqual([...bLines, ...rest.lines], a.lines);
      await spool.commit(B, rest.end);
      // Only the last segment (still open for appends) is left.
      assert.deepEqual(await segments(dir.path), all.slice(-1));
      assert.deepEqual(spool.stats().pending, { [A]: 0, [B]: 0 });
    } finally {
      await spool.close();
    }

    // A third reader added later starts at the end: it gets what comes next only.
    const C = "10.0.0.3:8111";
    spool = await Spool.open(dir.path, { ...options, readers: [A, B, C] });
    try {
      assert.equal(await spool.read(C, 1 << 20), null);
      await spool.append(batch(31, 2));
      for (const r of [A, B, C]) {
        assert.deepEqual((await readAll(spool, r)).lines, batch(31, 2));
      }
    } finally {
      await spool.close();
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test("Spool: 100,000 lines in one append come back in order, in reads of at most 256 KiB", async () => {
  const dir = await tempDir();
  try {
    const spool = await Spool.open(dir.path, { maxBytes: 256 << 20, readers: [A] });
    try {
      const lines: string[] = [];
      for (let i = 0; i < 100_000; i++) {
        lines.push(`coldpack.host${i % 50}.counter_${i} 1700000000 ${i * 1.5} ${i * i} 0 ${i} 3`);
      }
      await spool.append(lines);
      await spool.append(["last.line 1700000010 1 1 1 1 1"]);
      assert.equal(spool.stats().pending[A], 100_001);
      const got = await readAll(spool, A, { chunk: 256 * 1024 });
      assert.ok(got.maxRead <= 256 * 1024, `a read of ${got.maxRead} bytes`);
      assert.ok(got.reads > 10);
      assert.deepEqual(got.lines, [...lines, "last.line 1700000010 1 1 1 1 1"]);
    } finally {
      await spool.close();
    }
  } finally {
    await dir.cleanup();
  }
});

Deno.test("Spool: misuse is refused with the reason", async () => {
  const dir = await tempDir();
  try {
    const spool = await Spool.open(dir.path, { maxBytes: 1 << 20, readers: [A] });
    try {
      await assert.rejects(spool.append(["ok 1", "two\nlines"]), (e: unknown) => {
        assert.ok(e instanceof TypeError);
        assert.match(e.message, /line 2: it contains LF/);
        return true;
      });
      await assert.rejects(spool.read("nobody:1", 10), (e: unknown) => {
        assert.ok(e instanceof RangeError);
        assert.match(e.message, /Unknown spool reader "nobody:1"/);
        return true;
      });
      // A second process (or a second open) cannot share the directory.
      await assert.rejects(
        Spool.open(dir.path, { maxBytes: 1 << 20, readers: [A] }),
        (e: unknown) => {
          assert.ok(e instanceof PortError);
          assert.equal(e.code, "ELOCKED");
          assert.ok(e.message.includes(dir.path));
          return true;
        },
      );
    } finally {
      await spool.close();
    }
    await assert.rejects(
      Spool.open(dir.path, { maxBytes: 1 << 20, readers: [] }),
      (e: unknown) => e instanceof RangeError && /at least one reader/.test(e.message),
    );
    await assert.rejects(
      Spool.open(dir.path, { maxBytes: 1000, segmentBytes: 2048, readers: [A] }),
      (e: unknown) => e instanceof RangeError && /maxBytes: 1000/.test(e.message),
    );
  } finally {
    await dir.cleanup();
  }
});
