import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  alignRange,
  combineTreeHashes,
  isTreeHashAligned,
  MIB,
  treeHash,
  treeHashAlignedRange,
  TreeHasher,
} from "./tree_hash.ts";

function sha256(...parts: Uint8Array[]): Uint8Array {
  const h = createHash("sha256");
  for (const p of parts) h.update(p);
  return h.digest();
}

function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

/** The tree as PROTOCOLS.md describes it, built recursively over the leaves. */
function naiveTreeHash(data: Uint8Array): string {
  if (data.length === 0) return toHex(sha256(data));
  const leaves: Uint8Array[] = [];
  for (let i = 0; i < data.length; i += MIB) leaves.push(sha256(data.slice(i, i + MIB)));
  function reduce(level: Uint8Array[]): Uint8Array {
    if (level.length === 1) return level[0]!;
    const up: Uint8Array[] = [];
    for (let i = 0; i < level.length; i += 2) {
      up.push(i + 1 < level.length ? sha256(level[i]!, level[i + 1]!) : level[i]!);
    }
    return reduce(up);
  }
  return toHex(reduce(leaves));
}

/** Deterministic pseudo-random bytes (xorshift32). */
function bytes(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const SIZES = [0, 1, MIB - 1, MIB, MIB + 1, 2 * MIB, 3 * MIB + 5, 5 * MIB, 7 * MIB, 11 * MIB + 3];

Deno.test("treeHash equals plain SHA-256 up to 1 MiB, including empty data", () => {
  for (const n of [0, 1, 1000, MIB - 1, MIB]) {
    const data = bytes(n, n + 1);
    assert.equal(treeHash(data), toHex(sha256(data)), `size ${n}`);
  }
  assert.equal(
    treeHash(new Uint8Array(0)),
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
  );
});

Deno.test("treeHash matches an independently built tree", () => {
  for (const n of SIZES) {
    const data = bytes(n, 7);
    assert.equal(treeHash(data), naiveTreeHash(data), `size ${n}`);
  }
  // More than 1 MiB is not plain SHA-256.
  const data = bytes(MIB + 1, 7);
  assert.notEqual(treeHash(data), toHex(sha256(data)));
});

Deno.test("TreeHasher gives the same root whatever the chunk boundaries", () => {
  const data = bytes(7 * MIB + 12345, 3);
  const expected = naiveTreeHash(data);
  const patterns = [[7, 1_000_003], [MIB - 1], [MIB + 1], [3 * MIB + 5], [65536, 1, 2 * MIB, 13]];
  for (const pattern of patterns) {
    const hasher = new TreeHasher();
    for (let i = 0, k = 0; i < data.length; k++) {
      const size = pattern[k % pattern.length]!;
      hasher.update(data.subarray(i, i + size));
      i += size;
    }
    assert.equal(hasher.bytes, data.length);
    assert.equal(hasher.digest(), expected, `pattern ${pattern.join(",")}`);
  }
  // Byte-by-byte across a leaf boundary.
  const small = bytes(MIB + 3, 4);
  const hasher = new TreeHasher();
  hasher.update(small.subarray(0, MIB - 2));
  for (let i = MIB - 2; i < small.length; i++) hasher.update(small.subarray(i, i + 1));
  assert.equal(hasher.digest(), naiveTreeHash(small));
});

Deno.test("TreeHasher keeps its digest and refuses updates after it", () => {
  const hasher = new TreeHasher();
  hasher.update(bytes(10));
  const first = hasher.digest();
  assert.equal(hasher.digest(), first);
  assert.deepEqual(
    hasher.digestBytes(),
    Uint8Array.from(first.match(/../g)!, (h) => parseInt(h, 16)),
  );
  assert.throws(() => hasher.update(bytes(1)), { name: "TypeError", message: /already digested/ });
});

Deno.test("combineTreeHashes of the parts' tree hashes equals the whole archive's", () => {
  const data = bytes(7 * MIB + 5, 11);
  for (const part of [MIB, 2 * MIB, 4 * MIB]) {
    const parts: Uint8Array[] = [];
    for (let i = 0; i < data.length; i += part) {
      const h = new TreeHasher();
      h.update(data.subarray(i, i + part));
      parts.push(h.digestBytes());
    }
    assert.equal(toHex(combineTreeHashes(parts)), naiveTreeHash(data), `part ${part}`);
  }
  const one = sha256(bytes(3));
  assert.deepEqual(combineTreeHashes([one]), one);
});

Deno.test("combineTreeHashes rejects no hashes and hashes of the wrong size", () => {
  assert.throws(() => combineTreeHashes([]), { name: "RangeError", message: /no hashes/ });
  assert.throws(() => combineTreeHashes([new Uint8Array(32), new Uint8Array(31)]), {
    name: "RangeError",
    message: /hash 1 has 31 bytes, not 32/,
  });
});

Deno.test("isTreeHashAligned accepts exactly the nodes of the tree", () => {
  const size = 5 * MIB + 100;
  const yes = [
    [0, MIB - 1],
    [MIB, 2 * MIB - 1],
    [0, 2 * MIB - 1],
    [2 * MIB, 4 * MIB - 1],
    [0, 4 * MIB - 1],
    [4 * MIB, size - 1], // the last node, promoted
    [5 * MIB, size - 1], // the last, short leaf
    [0, size - 1], // the root
  ];
  const no = [
    [0, MIB - 2], // not a whole leaf
    [1, MIB], // unaligned start
    [MIB, 3 * MIB - 1], // 2 MiB starting at an odd MiB
    [0, 3 * MIB - 1], // 3 MiB is not a power of two
    [3 * MIB, size - 1], // to the end, but no node starts at 3 MiB spanning 4 MiB
    [2 * MIB, size - 1], // 3 MiB + 100 to the end from 2 MiB: needs a 4 MiB node at 2 MiB
  ];
  for (const [start, end] of yes) {
    assert.equal(isTreeHashAligned({ start: start!, end: end! }, size), true, `${start}-${end}`);
  }
  for (const [start, end] of no) {
    assert.equal(isTreeHashAligned({ start: start!, end: end! }, size), false, `${start}-${end}`);
  }
  assert.equal(isTreeHashAligned({ start: 0, end: 99 }, 100), true);
});

Deno.test("alignRange expands to megabyte boundaries or the archive end", () => {
  const size = 25 * MIB + 7;
  assert.deepEqual(alignRange({ start: 1_500_000, end: 1_600_000 }, size), {
    start: MIB,
    end: 2 * MIB - 1,
  });
  assert.deepEqual(alignRange({ start: MIB, end: 2 * MIB - 1 }, size), {
    start: MIB,
    end: 2 * MIB - 1,
  });
  assert.deepEqual(alignRange({ start: 0, end: 0 }, size), { start: 0, end: MIB - 1 });
  assert.deepEqual(alignRange({ start: 25 * MIB + 1, end: 25 * MIB + 2 }, size), {
    start: 25 * MIB,
    end: size - 1,
  });
  assert.deepEqual(alignRange({ start: 10, end: 20 }, 100), { start: 0, end: 99 });
  assert.deepEqual(alignRange({ start: 5000, end: 5000 }, 10_000, 4096), {
    start: 4096,
    end: 8191,
  });
  for (const [start, end] of [[3, 3 * MIB], [MIB + 1, 7 * MIB + 9], [0, size - 1]]) {
    const r = alignRange({ start: start!, end: end! }, size);
    assert.equal(r.start % MIB, 0);
    assert.ok((r.end + 1) % MIB === 0 || r.end + 1 === size);
    assert.ok(r.start <= start! && r.end >= end!);
  }
});

Deno.test("treeHashAlignedRange finds the smallest covering node", () => {
  const size = 10 * MIB + 3;
  const cases: [number, number, number, number][] = [
    [5, 10, 0, MIB - 1],
    [MIB + 5, 2 * MIB + 5, 0, 4 * MIB - 1],
    [3 * MIB, 3 * MIB + 1, 3 * MIB, 4 * MIB - 1],
    [5 * MIB, 7 * MIB, 4 * MIB, 8 * MIB - 1],
    [9 * MIB, size - 1, 8 * MIB, size - 1],
    [10 * MIB, size - 1, 10 * MIB, size - 1],
    [7 * MIB, 8 * MIB, 0, size - 1],
  ];
  for (const [start, end, wantStart, wantEnd] of cases) {
    const r = treeHashAlignedRange({ start, end }, size);
    assert.deepEqual(r, { start: wantStart, end: wantEnd }, `${start}-${end}`);
    assert.equal(isTreeHashAligned(r, size), true);
  }
});

Deno.test("range functions reject ranges outside the archive", () => {
  assert.throws(() => alignRange({ start: 5, end: 4 }, 100), {
    name: "RangeError",
    message: /range 5-4 is not within 0-99/,
  });
  assert.throws(() => isTreeHashAligned({ start: 0, end: 100 }, 100), {
    name: "RangeError",
    message: /range 0-100 is not within 0-99/,
  });
  assert.throws(() => treeHashAlignedRange({ start: -1, end: 3 }, 100), {
    name: "RangeError",
    message: /range -1-3 is not within 0-99/,
  });
  assert.throws(() => alignRange({ start: 0, end: 0 }, 0), {
    name: "RangeError",
    message: /invalid archive size 0/,
  });
  assert.throws(() => alignRange({ start: 0, end: 0 }, 10, 0), {
    name: "RangeError",
    message: /invalid unit 0/,
  });
});
