import assert from "node:assert/strict";
import { prng } from "./prng.ts";
import {
  MAX_ALIGN_BELOW,
  planTar,
  TAR_ALIGN_SIZE,
  TAR_TRAILER_SIZE,
  tarHeader,
  tarHeaderWriter,
  tarPadding,
  tarTrailer,
  USTAR_MAX_OCTAL,
} from "./tar.ts";
import { parseTarHeader, readTar } from "./tar_reader.ts";

const decoder = new TextDecoder();

function field(block: Uint8Array, start: number, width: number): string {
  const raw = decoder.decode(block.subarray(start, start + width));
  const nul = raw.indexOf("\0");
  return nul === -1 ? raw : raw.slice(0, nul);
}

/** The checksum as POSIX defines it, computed independently of the writer. */
function posixChecksum(block: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < 512; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return sum;
}

Deno.test("tarHeader writes a plain ustar block for a short ASCII name", () => {
  const h = tarHeader({ name: "dir/a.txt", size: 1234, mtimeMs: 1_700_000_000_999 });
  assert.equal(h.length, 512);
  assert.equal(field(h, 0, 100), "dir/a.txt");
  assert.equal(field(h, 100, 8), "0000644");
  assert.equal(field(h, 108, 8), "0000000");
  assert.equal(field(h, 116, 8), "0000000");
  assert.equal(field(h, 124, 12), (1234).toString(8).padStart(11, "0"));
  assert.equal(field(h, 136, 12), (1_700_000_000).toString(8).padStart(11, "0"));
  assert.equal(String.fromCharCode(h[156]!), "0");
  assert.deepEqual([...h.subarray(257, 265)], [...new TextEncoder().encode("ustar\u000000")]);
  assert.equal(field(h, 265, 32), "root");
  assert.equal(field(h, 297, 32), "root");
  assert.equal(field(h, 345, 155), "");
  assert.equal(h[154], 0);
  assert.equal(h[155], 0x20);
  assert.equal(parseInt(field(h, 148, 6), 8), posixChecksum(h));
});

Deno.test("tarHeader honours the mode", () => {
  const h = tarHeader({ name: "x", size: 0, mtimeMs: 0, mode: 0o600 });
  assert.equal(field(h, 100, 8), "0000600");
  assert.equal(parseInt(field(h, 148, 6), 8), posixChecksum(h));
});

Deno.test("tarHeader fills exactly 100 bytes of name without a pax header", () => {
  const name = "n".repeat(100);
  const h = tarHeader({ name, size: 1, mtimeMs: 0 });
  assert.equal(h.length, 512);
  assert.equal(field(h, 0, 100), name);
  assert.equal(h[100], 0x30); // the mode field follows at once
});

Deno.test("tarHeader splits a long ASCII path into ustar prefix and name", () => {
  const prefix = "p".repeat(150);
  const rest = "q".repeat(60) + "/" + "r".repeat(39);
  const name = `${prefix}/${rest}`;
  const h = tarHeader({ name, size: 1, mtimeMs: 0 });
  assert.equal(h.length, 512);
  assert.equal(field(h, 345, 155), prefix);
  assert.equal(field(h, 0, 100), rest);
  assert.equal(parseTarHeader(h, 0)?.name, name);
});

Deno.test("tarHeader uses a pax path record when no split fits", () => {
  const cases = [
    "x".repeat(101), // no slash at all
    "a/" + "b".repeat(101), // the last segment alone is too long
    "p".repeat(156) + "/" + "q".repeat(10), // the prefix would be too long
    "d/".repeat(130) + "f", // longer than 256
  ];
  for (const name of cases) {
    const h = tarHeader({ name, size: 5, mtimeMs: 0 });
    assert.equal(String.fromCharCode(h[156]!), "x", name);
    const records = field(h, 512, 1024);
    assert.equal(records, `${records.length} path=${name}\n`, name);
    assert.equal(h.length, 512 * (2 + Math.ceil(records.length / 512)));
  }
});

Deno.test("tarHeader writes pax records whose length counts its own digits", () => {
  // Record " path=<n>\n" is 7 + n bytes; at 7 + n = 98 the length "100" has 3 digits.
  for (const n of [90, 91, 92, 93, 94, 95, 991, 992, 993, 994]) {
    const name = "ü" + "a".repeat(n - 2); // n bytes of UTF-8
    const h = tarHeader({ name, size: 0, mtimeMs: 0 });
    const size = parseInt(field(h, 124, 12), 8);
    const record = h.subarray(512, 512 + size);
    const text = decoder.decode(record);
    assert.equal(Number(text.slice(0, text.indexOf(" "))), record.length, `n=${n}`);
    assert.equal(text, `${record.length} path=${name}\n`);
  }
});

Deno.test("tarHeader puts a UTF-8 path in pax and an ASCII stand-in in ustar", () => {
  const name = "fotos/größe/日本.png";
  const h = tarHeader({ name, size: 10, mtimeMs: 5000 });
  assert.equal(h.length, 1536);
  assert.equal(String.fromCharCode(h[156]!), "x");
  assert.match(field(h, 0, 100), /^PaxHeaders\/[\x20-\x7e]+$/);
  assert.equal(parseInt(field(h, 148, 6), 8), posixChecksum(h));
  const ustar = h.subarray(1024);
  assert.equal(String.fromCharCode(ustar[156]!), "0");
  assert.match(field(ustar, 0, 100), /^[\x20-\x7e]+$/);
  assert.equal(parseInt(field(ustar, 124, 12), 8), 10);
  assert.equal(parseInt(field(ustar, 148, 6), 8), posixChecksum(ustar));
});

Deno.test("tarHeader puts a newline in a name into a pax record", () => {
  const h = tarHeader({ name: "a\nb", size: 0, mtimeMs: 0 });
  assert.equal(String.fromCharCode(h[156]!), "x");
  assert.equal(field(h, 512, 512), "12 path=a\nb\n");
});

Deno.test("tarHeader handles sizes of 8 GiB and more with pax and base-256", () => {
  const small = tarHeader({ name: "big", size: USTAR_MAX_OCTAL, mtimeMs: 0 });
  assert.equal(small.length, 512);
  assert.equal(field(small, 124, 12), "77777777777");

  const size = 2 ** 40 + 3;
  const h = tarHeader({ name: "big", size, mtimeMs: 0 });
  assert.equal(h.length, 1536);
  assert.equal(field(h, 512, 512), `22 size=${size}\n`);
  const ustar = h.subarray(1024);
  assert.equal(ustar[124], 0x80);
  let v = 0;
  for (let i = 125; i < 136; i++) v = v * 256 + ustar[i]!;
  assert.equal(v, size);
  assert.equal(field(ustar, 0, 100), "big");
});

Deno.test("tarHeader carries an out-of-range mtime in pax", () => {
  const h = tarHeader({ name: "old", size: 0, mtimeMs: -86_400_000 });
  assert.equal(field(h, 512, 512), "16 mtime=-86400\n");
  assert.equal(field(h.subarray(1024), 136, 12), "00000000000");
});

Deno.test("tarHeader rejects bad entries, naming the cause", () => {
  assert.throws(() => tarHeader({ name: "", size: 0, mtimeMs: 0 }), {
    name: "RangeError",
    message: /empty name/,
  });
  assert.throws(() => tarHeader({ name: "a\0b", size: 0, mtimeMs: 0 }), {
    name: "RangeError",
    message: /name contains NUL/,
  });
  assert.throws(() => tarHeader({ name: "dir/", size: 0, mtimeMs: 0 }), {
    name: "RangeError",
    message: /name ends with \//,
  });
  assert.throws(() => tarHeader({ name: "a", size: -1, mtimeMs: 0 }), {
    name: "RangeError",
    message: /invalid size -1/,
  });
  assert.throws(() => tarHeader({ name: "a", size: 1.5, mtimeMs: 0 }), {
    name: "RangeError",
    message: /invalid size 1.5/,
  });
  assert.throws(() => tarHeader({ name: "a", size: 1, mtimeMs: NaN }), {
    name: "RangeError",
    message: /invalid mtime NaN/,
  });
  assert.throws(() => tarHeader({ name: "a", size: 1, mtimeMs: 0, mode: -1 }), {
    name: "RangeError",
    message: /invalid mode -1/,
  });
});

Deno.test("tarPadding pads to a block boundary", () => {
  assert.equal(tarPadding(0), 0);
  assert.equal(tarPadding(1), 511);
  assert.equal(tarPadding(511), 1);
  assert.equal(tarPadding(512), 0);
  assert.equal(tarPadding(513), 511);
  assert.equal(tarPadding(2 ** 40 + 3), 509);
});

Deno.test("tarTrailer is two zero blocks", () => {
  const t = tarTrailer();
  assert.equal(TAR_TRAILER_SIZE, 1024);
  assert.equal(t.length, 1024);
  assert.ok(t.every((b) => b === 0));
});

const encoder = new TextEncoder();

function assemble(
  entries: { name: string; data: Uint8Array; mtimeMs: number }[],
): { tar: Uint8Array; plan: ReturnType<typeof planTar> } {
  const plan = planTar(
    entries.map((e) => ({ name: e.name, size: e.data.length, mtimeMs: e.mtimeMs })),
  );
  const tar = new Uint8Array(plan.totalSize);
  plan.entries.forEach((p, i) => {
    tar.set(p.header, p.headerOffset);
    tar.set(entries[i]!.data, p.dataOffset);
  });
  return { tar, plan };
}

Deno.test("planTar lays entries out back to back and ends with the trailer", () => {
  const plan = planTar([
    { name: "a", size: 513, mtimeMs: 0 },
    { name: "é", size: 0, mtimeMs: 0 },
    { name: "c", size: 512, mtimeMs: 0 },
  ]);
  assert.deepEqual(
    plan.entries.map((e) => [e.headerOffset, e.dataOffset, e.size, e.header.length]),
    [
      [0, 512, 513, 512],
      [1536, 1536 + 1536, 0, 1536],
      [3072, 3584, 512, 512],
    ],
  );
  assert.equal(plan.totalSize, 4096 + 1024);
  assert.deepEqual(planTar([]), { entries: [], totalSize: 1024 });
});

Deno.test("planTar output reads back through readTar with the same names, bytes and offsets", async () => {
  const entries = [
    { name: "plain.txt", data: encoder.encode("hello"), mtimeMs: 1_600_000_000_000 },
    { name: "empty", data: new Uint8Array(0), mtimeMs: 0 },
    { name: "block", data: new Uint8Array(512).fill(7), mtimeMs: 0 },
    { name: "block+1", data: new Uint8Array(513).fill(9), mtimeMs: 0 },
    { name: "ünï/cödé 日本.bin", data: encoder.encode("utf8"), mtimeMs: 2000 },
    { name: "line\nbreak", data: encoder.encode("nl"), mtimeMs: 0 },
    { name: "deep/".repeat(60) + "leaf", data: encoder.encode("deep"), mtimeMs: 0 },
    { name: "p".repeat(120) + "/" + "n".repeat(90), data: encoder.encode("split"), mtimeMs: 0 },
  ];
  const { tar, plan } = assemble(entries);
  const read = [];
  for await (const e of readTar([tar])) read.push(e);
  assert.equal(read.length, entries.length);
  read.forEach((e, i) => {
    assert.equal(e.name, entries[i]!.name);
    assert.equal(e.type, "0");
    assert.equal(e.mode, 0o644);
    assert.equal(e.mtimeMs, Math.floor(entries[i]!.mtimeMs / 1000) * 1000);
    assert.deepEqual(e.data, entries[i]!.data);
    assert.equal(e.headerOffset, plan.entries[i]!.headerOffset);
    assert.equal(e.dataOffset, plan.entries[i]!.dataOffset);
    assert.deepEqual(tar.subarray(e.dataOffset, e.dataOffset + e.size), entries[i]!.data);
  });
});

Deno.test("tarHeader's ASCII stand-in name never gains a .. segment by truncation", () => {
  const names = [
    "x".repeat(200) + "/a..." + "/..b".repeat(30),
    "x".repeat(200) + "/" + "y".repeat(150) + "..",
    "é".repeat(300) + "/..",
    "a//".repeat(100) + "b",
  ];
  for (const name of names) {
    const h = tarHeader({ name, size: 0, mtimeMs: 0, mode: 0o600 });
    const ustar = h.subarray(h.length - 512);
    const standIn = field(ustar, 0, 100);
    assert.ok(standIn.length > 0 && standIn.length <= 100, standIn);
    for (const segment of standIn.split("/")) {
      assert.ok(!["", ".", ".."].includes(segment), standIn);
    }
    assert.equal(parseTarHeader(ustar, 0)?.mode, 0o600); // nothing spilled into the next field
    assert.equal(parseTarHeader(h, 0)?.type, "x");
  }
});

// ---------------------------------------------------------------------------
// Alignment: small entries' data inside one 1 MiB block.

const MIB = TAR_ALIGN_SIZE;
const KIB = 1024;

interface Input {
  name: string;
  size: number;
  mtimeMs: number;
}

function sameBlock(start: number, size: number): boolean {
  return Math.floor(start / MIB) === Math.floor((start + size - 1) / MIB);
}

/** A random entry: sizes from empty to 3 MiB, names plain, split, pax (long, UTF-8), old mtimes. */
function randomEntry(rand: () => number, i: number, alignBelow: number): Input {
  const r = rand();
  const int = (lo: number, hi: number) => lo + Math.floor(rand() * (hi - lo + 1));
  let size: number;
  if (r < 0.1) size = 0;
  else if (r < 0.45) size = int(1, Math.max(1, alignBelow)); // eligible
  else if (r < 0.55) size = alignBelow + [0, 1][int(0, 1)]!; // at the edge
  else if (r < 0.65) size = int(1, 4) * 512 + int(-1, 1) + 512; // around blocks
  else if (r < 0.9) size = int(1, 1536 * KIB);
  else size = int(1, 3 * MIB);
  const n = rand();
  let name: string;
  if (n < 0.55) name = `dir${i % 7}/file-${i}.bin`;
  else if (n < 0.65) name = "p".repeat(int(101, 150)) + `/${i}.bin`; // ustar prefix split
  else if (n < 0.8) name = `ünï/${i}/` + "é".repeat(int(1, 300)); // pax path, UTF-8
  else if (n < 0.9) name = "x".repeat(int(101, 1200)) + i; // pax path, records near 512 edges
  else name = `n${i}\nline`; // pax path with a newline
  const mtimeMs = rand() < 0.05 ? -int(1, 1e9) * 1000 : 1_700_000_000_000 + i * 1000;
  return { name, size, mtimeMs };
}

/** Writes a plan the way an uploader streams it, each entry's data a distinct byte pattern. */
function writeSequentially(plan: ReturnType<typeof planTar>, inputs: Input[]): Uint8Array {
  const tar = new Uint8Array(plan.totalSize);
  let pos = 0;
  plan.entries.forEach((p, i) => {
    tar.set(p.header, pos);
    pos += p.header.length;
    tar.fill((i * 37 + 11) & 0xff, pos, pos + inputs[i]!.size);
    pos += inputs[i]!.size + tarPadding(inputs[i]!.size);
  });
  tar.set(tarTrailer(), pos);
  assert.equal(pos + TAR_TRAILER_SIZE, plan.totalSize);
  return tar;
}

/** Pax records of a header, parsed independently of core/tar_reader.ts: [key, value][]. */
function paxRecords(header: Uint8Array): [string, string][] {
  assert.equal(String.fromCharCode(header[156]!), "x");
  const size = parseInt(field(header, 124, 12), 8);
  const bytes = header.subarray(512, 512 + size);
  const out: [string, string][] = [];
  let i = 0;
  while (i < bytes.length) {
    const sp = bytes.indexOf(0x20, i);
    const len = Number(decoder.decode(bytes.subarray(i, sp)));
    const record = decoder.decode(bytes.subarray(sp + 1, i + len));
    assert.ok(record.endsWith("\n"), `record at ${i} ends with a newline`);
    const eq = record.indexOf("=");
    out.push([record.slice(0, eq), record.slice(eq + 1, -1)]);
    i += len;
  }
  assert.equal(i, bytes.length, "records fill the pax data exactly");
  return out;
}

/**
 * Every property of an aligned plan against the unaligned headers of the same
 * entries; returns the padding bytes.
 */
function checkAligned(plan: ReturnType<typeof planTar>, inputs: Input[], alignBelow: number) {
  let pos = 0;
  let padding = 0;
  plan.entries.forEach((p, i) => {
    const input = inputs[i]!;
    const what = `entry ${i} (${input.size} bytes, alignBelow ${alignBelow})`;
    assert.equal(p.headerOffset, pos, what);
    assert.equal(p.headerOffset % 512, 0, what);
    assert.equal(p.dataOffset % 512, 0, what);
    assert.equal(p.dataOffset - p.headerOffset, p.header.length, what);
    const unpadded = tarHeader(input);
    const extra = p.header.length - unpadded.length;
    const eligible = input.size > 0 && input.size <= alignBelow;
    const wouldCross = input.size > 0 && !sameBlock(p.headerOffset + unpadded.length, input.size);
    if (!eligible || !wouldCross) {
      assert.equal(extra, 0, what);
      assert.deepEqual(p.header, unpadded, what);
    } else {
      assert.ok(sameBlock(p.dataOffset, input.size), `${what}: data in one block`);
      assert.ok(extra > 0 && extra < MIB, `${what}: padding ${extra}`);
      // At the boundary, or 512 bytes after it when a plain header's gap was too small.
      const into = p.dataOffset % MIB;
      assert.ok(into === 0 || (into === 512 && unpadded.length === 512), `${what}: at ${into}`);
      // The ustar block is the unpadded one; the pax records are the unpadded ones plus a comment.
      assert.deepEqual(p.header.subarray(-512), unpadded.subarray(-512), what);
      const records = paxRecords(p.header);
      const [key, value] = records.pop()!;
      assert.equal(key, "comment", what);
      assert.match(value, /^(coldpack alignment padding)? *$/, what);
      assert.deepEqual(records, unpadded.length === 512 ? [] : paxRecords(unpadded), what);
    }
    padding += extra;
    pos = p.dataOffset + input.size + tarPadding(input.size);
  });
  assert.equal(plan.totalSize, pos + TAR_TRAILER_SIZE);
  return padding;
}

Deno.test("planTar with alignBelow keeps small entries' data in one 1 MiB block", async () => {
  const rand = prng(20240611);
  const choices = [256 * KIB, MAX_ALIGN_BELOW, 512, 4096, 100_000];
  let paddedEntries = 0;
  for (let seq = 0; seq < 150; seq++) {
    const alignBelow = seq % 6 === 5
      ? 1 + Math.floor(rand() * MAX_ALIGN_BELOW)
      : choices[seq % choices.length]!;
    const count = 1 + Math.floor(rand() * 40);
    const inputs = Array.from({ length: count }, (_, i) => randomEntry(rand, i, alignBelow));
    const plan = planTar(inputs, { alignBelow });
    checkAligned(plan, inputs, alignBelow);
    paddedEntries += plan.entries.filter((p, i) => p.header.length > tarHeader(inputs[i]!).length)
      .length;
    // The offsets are those of the bytes written, as a reader sees them.
    const tar = writeSequentially(plan, inputs);
    let i = 0;
    for await (const e of readTar([tar], { maxEntrySize: 4 * MIB })) {
      const p = plan.entries[i]!;
      assert.equal(e.name, inputs[i]!.name, `sequence ${seq} entry ${i}`);
      assert.equal(e.size, inputs[i]!.size);
      assert.equal(e.headerOffset, p.headerOffset);
      assert.equal(e.dataOffset, p.dataOffset);
      // The entry's own byte pattern at both ends and in between (every byte would be slow).
      for (let k = 0; k < 8 && e.size > 0; k++) {
        const at = k === 7 ? e.size - 1 : Math.floor((k * e.size) / 7);
        assert.equal(e.data[at], (i * 37 + 11) & 0xff, `sequence ${seq} entry ${i} byte ${at}`);
      }
      i++;
    }
    assert.equal(i, inputs.length, `sequence ${seq}: no extra entries`);
  }
  assert.ok(paddedEntries > 100, `only ${paddedEntries} entries needed padding`); // the test bites
});

Deno.test("planTar without alignBelow (or with 0) keeps the back-to-back layout", () => {
  const rand = prng(7);
  for (let seq = 0; seq < 100; seq++) {
    const inputs = Array.from(
      { length: 1 + Math.floor(rand() * 40) },
      (_, i) => randomEntry(rand, i, 256 * KIB),
    );
    const plan = planTar(inputs);
    let pos = 0;
    plan.entries.forEach((p, i) => {
      assert.equal(p.headerOffset, pos);
      assert.deepEqual(p.header, tarHeader(inputs[i]!));
      pos = p.dataOffset + inputs[i]!.size + tarPadding(inputs[i]!.size);
    });
    assert.deepEqual(planTar(inputs, {}), plan);
    assert.deepEqual(planTar(inputs, { alignBelow: 0 }), plan);
  }
});

Deno.test("planTar with alignBelow changes nothing when no small entry crosses a boundary", () => {
  const inputs = [
    { name: "a", size: 1000, mtimeMs: 0 },
    { name: "big", size: 3 * MIB + 5, mtimeMs: 0 }, // crosses, but above alignBelow
    { name: "empty", size: 0, mtimeMs: 0 },
    { name: "ü", size: 200_000, mtimeMs: 0 },
  ];
  assert.deepEqual(planTar(inputs, { alignBelow: 256 * KIB }), planTar(inputs));
});

/** A first entry of `size` bytes, so that the second's header starts at `size + 512`. */
function after(size: number, second: Input, alignBelow = 256 * KIB) {
  const plan = planTar([{ name: "fill", size, mtimeMs: 0 }, second], { alignBelow });
  return plan.entries[1]!;
}

Deno.test("planTar pads a crossing entry's header so that its data starts at the boundary", () => {
  // Header at 1 MiB - 200 KiB: data at +512 would cross 1 MiB.
  const e = after(MIB - 200 * KIB - 512, { name: "small.bin", size: 200 * KIB, mtimeMs: 0 });
  assert.equal(e.headerOffset, MIB - 200 * KIB);
  assert.equal(e.dataOffset, MIB);
  const records = paxRecords(e.header);
  assert.deepEqual(records.map(([k]) => k), ["comment"]);
  assert.equal(field(e.header.subarray(-512), 0, 100), "small.bin");
  assert.equal(field(e.header, 0, 100), "PaxHeaders/small.bin");
});

Deno.test("planTar fits the smallest padded header (1536 bytes) into a gap of 1024 bytes", () => {
  const e = after(MIB - 2048, { name: "s", size: 2000, mtimeMs: 0 });
  assert.equal(e.headerOffset, MIB - 1536);
  assert.equal(e.header.length, 1536);
  assert.equal(e.dataOffset, MIB);
  assert.equal(
    field(e.header, 512, 512),
    "512 comment=coldpack alignment padding" + " ".repeat(473) + "\n",
  );
});

Deno.test("planTar starts the data 512 bytes after the boundary when the gap is one block", () => {
  // The data would start at 1 MiB - 512; a pax header needs 1024 more bytes than that.
  const e = after(MIB - 1536, { name: "s", size: 2000, mtimeMs: 0 });
  assert.equal(e.headerOffset, MIB - 1024);
  assert.equal(e.header.length, 1536);
  assert.equal(e.dataOffset, MIB + 512);
  // The same when the entry fills the rest of its block exactly.
  const full = after(MIB - 1536, { name: "s", size: MIB - 512, mtimeMs: 0 }, MAX_ALIGN_BELOW);
  assert.equal(full.dataOffset, MIB - 512); // above alignBelow: untouched
});

Deno.test("planTar puts the comment into an entry's own pax header", () => {
  const name = "日本/" + "ü".repeat(60);
  const plain = tarHeader({ name, size: 100_000, mtimeMs: 0 });
  assert.equal(plain.length, 1536);
  const e = after(MIB - 50_000, { name, size: 100_000, mtimeMs: 0 });
  assert.equal(e.dataOffset, MIB);
  // One pax header whose records run up to the ustar block: no second pax header.
  assert.equal(String.fromCharCode(e.header[156]!), "x");
  assert.equal(parseInt(field(e.header, 124, 12), 8), e.header.length - 1024);
  assert.deepEqual(paxRecords(e.header).map(([k]) => k), ["path", "comment"]);
  assert.equal(paxRecords(e.header)[0]![1], name);
});

Deno.test("planTar pads an entry of exactly alignBelow bytes, never a larger or empty one", () => {
  const header = MIB - 4096;
  const at = (size: number, alignBelow: number) =>
    after(header - 512, { name: "e", size, mtimeMs: 0 }, alignBelow);
  assert.equal(at(8192, 8192).dataOffset, MIB);
  assert.equal(at(8193, 8192).dataOffset, header + 512);
  assert.equal(at(0, 8192).dataOffset, header + 512);
  assert.equal(at(8192, 0).dataOffset, header + 512);
});

Deno.test("planTar and tarHeader reject a bad alignBelow or offset, naming it", () => {
  for (const alignBelow of [-1, 1.5, MAX_ALIGN_BELOW + 1, NaN]) {
    assert.throws(() => planTar([], { alignBelow }), {
      name: "RangeError",
      message: new RegExp(
        `alignBelow ${alignBelow} is not an integer from 0 to ${MAX_ALIGN_BELOW}`,
      ),
    });
  }
  assert.throws(() => tarHeader({ name: "a", size: 1, mtimeMs: 0 }, { offset: 100 }), {
    name: "RangeError",
    message: /offset 100 is not a non-negative multiple of 512/,
  });
  assert.throws(() => tarHeaderWriter()({ name: "a", size: 1, mtimeMs: 0 }, { offset: -512 }), {
    name: "RangeError",
    message: /offset -512 is not a non-negative multiple of 512/,
  });
});

Deno.test("tarHeader and tarHeaderWriter pad like planTar at the same offset", () => {
  const rand = prng(99);
  const write = tarHeaderWriter();
  for (let seq = 0; seq < 20; seq++) {
    const inputs = Array.from({ length: 30 }, (_, i) => randomEntry(rand, i, 256 * KIB));
    const plan = planTar(inputs, { alignBelow: 256 * KIB });
    plan.entries.forEach((p, i) => {
      const options = { offset: p.headerOffset, alignBelow: 256 * KIB };
      assert.deepEqual(tarHeader(inputs[i]!, options), p.header);
      assert.deepEqual(write(inputs[i]!, options), p.header);
    });
  }
});

Deno.test("planTar's padding overhead for 100 KB files is about size / 2 MiB", () => {
  // The expected padding of a file of s bytes is about s^2 / 2 MiB: 4.8% for 100 KB.
  const inputs = Array.from({ length: 2500 }, (_, i) => ({
    name: `f${i}`,
    size: 100_000,
    mtimeMs: 0,
  }));
  const padding = checkAligned(planTar(inputs, { alignBelow: 256 * KIB }), inputs, 256 * KIB);
  const share = padding / (2500 * 100_000);
  assert.ok(share > 0.02 && share < 0.07, `padding ${share}`);
});
