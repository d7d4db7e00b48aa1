import assert from "node:assert/strict";
import {
  planTar,
  TAR_TRAILER_SIZE,
  tarHeader,
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
