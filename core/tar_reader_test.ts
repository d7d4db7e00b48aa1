import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { prng } from "./prng.ts";
import { planTar, TAR_ALIGN_SIZE, tarHeader, tarPadding } from "./tar.ts";
import { parseTarHeader, readTar, type TarEntry, TarParser } from "./tar_reader.ts";

const encoder = new TextEncoder();

/** `tar --format=gnu` (GNU tar 1.34) of dir/, dir/größe.txt, dir/link -> short.txt, dir/l{120}, dir/short.txt. */
const GNU_TAR_GZ_BASE64 =
  "H4sIAAAAAAACA+3WPw6CMBQG8M6eoieAvv6hqwfgEiYQNRKalJp4G2/h5MbFLGwwiEsxyvdbSoDt9fvyqrPPWWIiss" +
  "aMZzQ/x2fSRmprhR7ek1DKMG7YCq5dOHjOmXcuvPtv6fuPquL8j75/9Pc6C7eQbP6F1m/mr2bzV2Qt4wLzT65/7hhs" +
  "15D/5txekvd/DPTn/a+IJOOyOzkfktUS8h9leZbvS9cey3SXYKn/yZrJXRBEhSgYL9H/6+T/S9C+25j/8v5npv2vtF" +
  "ES+98amlj92AC3nf/Ua9Zy/ovZ/ielIuR/Dae6aRwKAAAAAAAAAAAAAODvvAByoY/uACgAAA==";
/** The same files as `tar --format=pax`. */
const PAX_TAR_GZ_BASE64 =
  "H4sIAAAAAAACA+3YP26DMBQGcM85hU+Q+D9T9469AhIoRLHiyrgSt+ktOnXjYnEypY4aMsSOWn+/xQgYQI/v8aDb+Q" +
  "3JjEWN1uc1StfzNldaqKZh6rSfcyM1oZoU8DGG1sdL8c6FW+ctHU9v7o/oYv3f2um1b7vej5utn7/mz34dpvDY+hul" +
  "fq+/TOsvtZGETiXrT+okFH1vw/Byeg4uir8iUIWk7tn6/838M5nkX8VNQlnJ/Ffa/+dvRL32/NvdYZ99/ouBvn/+U4" +
  "oLQsU4OB+ytSXk/3r+szks9X/BzM/6S2Hi5wLmvwK4vBgA7ZPgFfTc/p/Z8vynk/yb2AIw/5Vg3WGL+NWd/9xj1nL+" +
  "zdX/H8mR/xKG3lqHBgAAAAAAAAAA8G8dAbPUBmsAKAAA";

async function gunzip(base64: string): Promise<Uint8Array> {
  const gz = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  const stream = new Blob([gz]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function readAll(
  chunks: Iterable<Uint8Array> | AsyncIterable<Uint8Array>,
  options?: Parameters<typeof readTar>[1],
): Promise<TarEntry[]> {
  const out: TarEntry[] = [];
  for await (const e of readTar(chunks, options)) out.push(e);
  return out;
}

function chunked(bytes: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < bytes.length; i += size) out.push(bytes.subarray(i, i + size));
  return out;
}

function text(b: Uint8Array): string {
  return new TextDecoder().decode(b);
}

/** A tar made by the writer: short, pax-named and padded entries. */
function sampleTar(): {
  tar: Uint8Array;
  names: string[];
  datas: Uint8Array[];
  plan: ReturnType<typeof planTar>;
} {
  const names = ["a.txt", "ünï/cödé.bin", "x".repeat(300), "empty", "block"];
  const datas = [
    encoder.encode("hello"),
    new Uint8Array(1000).map((_, i) => i % 251),
    encoder.encode("long name"),
    new Uint8Array(0),
    new Uint8Array(512).fill(1),
  ];
  const plan = planTar(
    names.map((name, i) => ({ name, size: datas[i]!.length, mtimeMs: 1_000_000 })),
  );
  const tar = new Uint8Array(plan.totalSize);
  plan.entries.forEach((p, i) => {
    tar.set(p.header, p.headerOffset);
    tar.set(datas[i]!, p.dataOffset);
  });
  return { tar, names, datas, plan };
}

function withChecksum(block: Uint8Array): Uint8Array {
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of block) sum += b;
  block.set(encoder.encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
  return block;
}

Deno.test("parseTarHeader decodes a header and returns null for a zero block", () => {
  const h = parseTarHeader(
    tarHeader({ name: "d/f.txt", size: 42, mtimeMs: 7_000, mode: 0o600 }),
    0,
  );
  assert.deepEqual(h, {
    name: "d/f.txt",
    mode: 0o600,
    uid: 0,
    gid: 0,
    size: 42,
    mtimeMs: 7_000,
    type: "0",
    linkname: "",
  });
  assert.equal(parseTarHeader(new Uint8Array(512), 0), null);
});

Deno.test("parseTarHeader rejects a bad checksum, naming the offset", () => {
  const block = tarHeader({ name: "f", size: 1, mtimeMs: 0 });
  block[0] = "g".charCodeAt(0);
  assert.throws(() => parseTarHeader(block, 1024), {
    name: "SyntaxError",
    message: /^Cannot parse tar header at offset 1024: bad checksum/,
  });
});

Deno.test("parseTarHeader rejects a short block and a bad numeric field", () => {
  assert.throws(() => parseTarHeader(new Uint8Array(100), 512), {
    name: "SyntaxError",
    message: /^Truncated tar at offset 612: header needs 512 bytes, got 100/,
  });
  const block = tarHeader({ name: "f", size: 1, mtimeMs: 0 });
  block[125] = "9".charCodeAt(0);
  assert.throws(() => parseTarHeader(withChecksum(block), 0), {
    name: "SyntaxError",
    message: /^Cannot parse tar header at offset 0: bad size field/,
  });
});

Deno.test("parseTarHeader reads a GNU base-256 size", () => {
  const block = tarHeader({ name: "huge", size: 0, mtimeMs: 0 });
  block.fill(0, 124, 136);
  block[124] = 0x80;
  const size = 2 ** 36 + 1; // 64 GiB + 1
  let v = size;
  for (let i = 135; i > 124; i--) {
    block[i] = v % 256;
    v = Math.floor(v / 256);
  }
  assert.equal(parseTarHeader(withChecksum(block), 0)?.size, size);
});

for (const [format, base64] of [["gnu", GNU_TAR_GZ_BASE64], ["pax", PAX_TAR_GZ_BASE64]] as const) {
  Deno.test(`readTar reads what GNU tar wrote (${format} format)`, async () => {
    const tar = await gunzip(base64);
    const entries = await readAll(chunked(tar, 700));
    const long = "dir/" + "l".repeat(120);
    assert.deepEqual(
      entries.map((e) => [e.name, e.type, e.size, e.linkname, e.mtimeMs, text(e.data)]),
      [
        ["dir/", "5", 0, "", 1_700_000_000_000, ""],
        ["dir/größe.txt", "0", 3, "", 1_700_000_000_000, "ü\n"],
        ["dir/link", "2", 0, "short.txt", 1_700_000_000_000, ""],
        [long, "0", 5, "", 1_700_000_000_000, "long\n"],
        ["dir/short.txt", "0", 6, "", 1_700_000_000_000, "hello\n"],
      ],
    );
    // Offsets as Python's tarfile reports them for the same archives.
    const offsets = format === "gnu"
      ? [[0, 512], [512, 1024], [1536, 2048], [2048, 3584], [4096, 4608]]
      : [[0, 512], [512, 2048], [2560, 3072], [3072, 4608], [5120, 5632]];
    assert.deepEqual(entries.map((e) => [e.headerOffset, e.dataOffset]), offsets);
    for (const e of entries) {
      assert.deepEqual(tar.subarray(e.dataOffset, e.dataOffset + e.size), e.data);
    }
  });
}

Deno.test("readTar gives the same entries whatever the chunk boundaries", async () => {
  const { tar, names, datas, plan } = sampleTar();
  const whole = await readAll([tar]);
  assert.deepEqual(whole.map((e) => e.name), names);
  assert.deepEqual(whole.map((e) => e.data), datas);
  assert.deepEqual(
    whole.map((e) => [e.headerOffset, e.dataOffset]),
    plan.entries.map((p) => [p.headerOffset, p.dataOffset]),
  );
  for (const size of [1, 7, 511, 512, 513, 1500]) {
    assert.deepEqual(await readAll(chunked(tar, size)), whole, `chunk size ${size}`);
  }
});

Deno.test("readTar stops at the end-of-archive marker and ignores what follows", async () => {
  const { tar } = sampleTar();
  let pulledAfterEnd = false;
  async function* source() {
    yield tar;
    pulledAfterEnd = true;
    yield new Uint8Array([1, 2, 3]);
  }
  assert.equal((await readAll(source())).length, 5);
  assert.equal(pulledAfterEnd, false);
  const padded = new Uint8Array(tar.length + 10240);
  padded.set(tar);
  padded.fill(0xaa, tar.length);
  assert.equal((await readAll([padded])).length, 5);
});

Deno.test("readTar reports truncation with the offset where the stream stopped", async () => {
  const { tar, plan } = sampleTar();
  const second = plan.entries[1]!; // pax header + records + ustar, 1000 bytes of data
  const cases: [number, string][] = [
    [0, "no end-of-archive marker"],
    [100, "stream ended inside a header block"],
    [515, 'stream ended inside the data of "a.txt" (2 bytes missing)'],
    [600, "stream ended inside the padding of an entry"],
    [second.headerOffset + 512 + 10, "stream ended inside an extended header"],
    [second.dataOffset - 512, "stream ended after an extended header"],
    [second.dataOffset + 999, 'stream ended inside the data of "ünï/cödé.bin" (1 bytes missing)'],
    [tar.length - 1024, "no end-of-archive marker"],
    [tar.length - 512, "stream ended inside the end-of-archive marker"],
    [tar.length - 1, "stream ended inside the end-of-archive marker"],
  ];
  for (const [cut, cause] of cases) {
    await assert.rejects(
      readAll(chunked(tar.subarray(0, cut), 300)),
      { name: "SyntaxError", message: `Truncated tar at offset ${cut}: ${cause}` },
      `cut at ${cut}`,
    );
  }
});

Deno.test("readTar rejects a corrupt header in the middle, naming its offset", async () => {
  const { tar, plan } = sampleTar();
  const corrupt = tar.slice();
  const at = plan.entries[3]!.headerOffset;
  corrupt[at + 3] = 0xff;
  await assert.rejects(readAll([corrupt]), {
    name: "SyntaxError",
    message: new RegExp(`^Cannot parse tar header at offset ${at}: bad checksum`),
  });
});

Deno.test("readTar rejects a lone zero block followed by more entries", async () => {
  const { tar } = sampleTar();
  const bad = new Uint8Array(512 + tar.length);
  bad.set(tar, 512);
  await assert.rejects(readAll([bad]), {
    name: "SyntaxError",
    message: /^Cannot parse tar header at offset 0: lone zero block/,
  });
});

Deno.test("readTar refuses an entry above maxEntrySize", async () => {
  const { tar, plan } = sampleTar();
  await assert.rejects(readAll([tar], { maxEntrySize: 999 }), {
    name: "RangeError",
    message: new RegExp(
      `^Cannot read tar entry "ünï/cödé.bin" at offset ${
        plan.entries[1]!.headerOffset
      }: 1000 bytes exceeds the limit of 999`,
    ),
  });
});

Deno.test("readTar reads a range of an archive with absolute offsets", async () => {
  const { tar, plan, names } = sampleTar();
  const from = plan.entries[2]!.headerOffset;
  const entries = await readAll([tar.subarray(from)], { startOffset: from });
  assert.deepEqual(entries.map((e) => e.name), names.slice(2));
  assert.deepEqual(
    entries.map((e) => e.headerOffset),
    plan.entries.slice(2).map((p) => p.headerOffset),
  );
});

Deno.test("readTar rejects malformed pax records and oversized extended headers", async () => {
  const records = encoder.encode("99 path=x\n");
  const pax = withChecksum(tarHeader({ name: "p", size: records.length, mtimeMs: 0 }));
  pax[156] = "x".charCodeAt(0);
  withChecksum(pax);
  const body = new Uint8Array(512);
  body.set(records);
  const tar = new Uint8Array([
    ...pax,
    ...body,
    ...tarHeader({ name: "f", size: 0, mtimeMs: 0 }),
    ...new Uint8Array(1024),
  ]);
  await assert.rejects(readAll([tar]), {
    name: "SyntaxError",
    message: /^Cannot parse pax header at offset 0: bad record length at byte 0/,
  });
  const long = tarHeader({ name: "é".repeat(600), size: 0, mtimeMs: 0 });
  await assert.rejects(readAll([long], { maxMetaSize: 100 }), {
    name: "SyntaxError",
    message:
      /^Cannot parse tar header at offset 0: extended header of 1211 bytes exceeds the limit of 100/,
  });
});

Deno.test("TarParser applies a pax size record and streams data as views", () => {
  const size = 2 ** 33 + 5; // above the ustar limit
  const header = tarHeader({ name: "big.bin", size, mtimeMs: 0 });
  const seen: { name: string; size: number }[] = [];
  let got = 0;
  const parser = new TarParser({
    entry: (h) => seen.push({ name: h.name, size: h.size }),
    data: (chunk) => {
      got += chunk.length;
    },
  });
  parser.write(header);
  parser.write(new Uint8Array(4096));
  assert.deepEqual(seen, [{ name: "big.bin", size }]);
  assert.equal(got, 4096);
  assert.throws(() => parser.end(), {
    name: "SyntaxError",
    message: new RegExp(
      `^Truncated tar at offset ${header.length + 4096}: .*\\(${size - 4096} bytes missing\\)`,
    ),
  });
});

Deno.test("TarParser md5s entries in constant memory", () => {
  const { tar, datas, names } = sampleTar();
  const sums = new Map<string, string>();
  let md5 = createHash("md5");
  const parser = new TarParser({
    entry: () => {
      md5 = createHash("md5");
    },
    data: (chunk) => {
      md5.update(chunk);
    },
    entryEnd: (h) => {
      sums.set(h.name, md5.digest("hex"));
    },
  });
  for (const chunk of chunked(tar, 333)) parser.write(chunk);
  parser.end();
  assert.equal(parser.done, true);
  assert.equal(parser.offset, tar.length);
  assert.deepEqual(
    [...sums],
    names.map((n, i) => [n, createHash("md5").update(datas[i]!).digest("hex")]),
  );
  assert.equal(tarPadding(datas[1]!.length), 24);
});

/** An archive planned with alignment, written as an uploader streams it; seeded random data. */
function alignedTar(seed: number): {
  tar: Uint8Array;
  names: string[];
  datas: Uint8Array[];
  plan: ReturnType<typeof planTar>;
} {
  const rand = prng(seed);
  const names: string[] = [];
  const datas: Uint8Array[] = [];
  for (let i = 0; i < 60; i++) {
    const r = rand();
    const size = r < 0.1
      ? 0
      : r < 0.8
      ? 1 + Math.floor(rand() * 300_000)
      : Math.floor(rand() * 2e6);
    names.push(i % 3 === 0 ? `ünï/${i}/` + "é".repeat(i + 1) : `f/${i}.bin`);
    datas.push(new Uint8Array(size).map(() => (rand() * 256) | 0));
  }
  const plan = planTar(
    names.map((name, i) => ({ name, size: datas[i]!.length, mtimeMs: 1_000_000 })),
    { alignBelow: 256 * 1024 },
  );
  const parts: Uint8Array[] = [];
  plan.entries.forEach((p, i) => {
    parts.push(p.header.slice(), datas[i]!, new Uint8Array(tarPadding(p.size)));
  });
  parts.push(new Uint8Array(1024));
  const tar = new Uint8Array(plan.totalSize);
  let pos = 0;
  for (const part of parts) {
    tar.set(part, pos);
    pos += part.length;
  }
  assert.equal(pos, plan.totalSize);
  return { tar, names, datas, plan };
}

Deno.test("readTar reads an aligned archive at the planned offsets, any chunks", async () => {
  let paddedTotal = 0;
  for (const seed of [1, 2, 3]) {
    const { tar, names, datas, plan } = alignedTar(seed);
    const padded = plan.entries.filter((p, i) =>
      p.header.length > tarHeader({ name: names[i]!, size: p.size, mtimeMs: 1_000_000 }).length
    );
    assert.ok(padded.length >= 1, `seed ${seed}: no padded entry`);
    paddedTotal += padded.length;
    for (const size of [511, 4096, 65_537, tar.length]) {
      const entries = await readAll(chunked(tar, size));
      assert.deepEqual(entries.map((e) => e.name), names, `seed ${seed}, chunks of ${size}`);
      entries.forEach((e, i) => {
        const p = plan.entries[i]!;
        assert.equal(e.headerOffset, p.headerOffset, `${e.name}, chunks of ${size}`);
        assert.equal(e.dataOffset, p.dataOffset, `${e.name}, chunks of ${size}`);
        assert.deepEqual(e.data, datas[i], e.name);
        if (e.size > 0 && e.size <= 256 * 1024) {
          assert.equal(
            Math.floor(e.dataOffset / TAR_ALIGN_SIZE),
            Math.floor((e.dataOffset + e.size - 1) / TAR_ALIGN_SIZE),
            `${e.name} stays in one 1 MiB block`,
          );
        }
      });
    }
  }
  assert.ok(paddedTotal >= 6, `only ${paddedTotal} padded entries`);
});

Deno.test("readTar reads a range that starts at a padded entry's header", async () => {
  const { tar, names, datas, plan } = alignedTar(4);
  const i = plan.entries.findIndex((p, j) =>
    p.header.length > tarHeader({ name: names[j]!, size: p.size, mtimeMs: 1_000_000 }).length
  );
  assert.ok(i >= 0);
  const from = plan.entries[i]!.headerOffset;
  const [first] = await readAll([tar.subarray(from)], { startOffset: from });
  assert.equal(first!.name, names[i]);
  assert.equal(first!.headerOffset, from);
  assert.equal(first!.dataOffset, plan.entries[i]!.dataOffset);
  assert.deepEqual(first!.data, datas[i]);
});

Deno.test("TarParser ignores pax comment records, whatever they contain", async () => {
  const records = [
    "comment=path=evil/name",
    "path=real/näme.txt",
    "comment=",
    "comment=size=99\nmtime=5",
    "comment=" + "=".repeat(700),
  ].map((r) => {
    const base = encoder.encode(r).length + 2;
    const len = base + String(base + String(base).length).length;
    return `${len} ${r}\n`;
  }).join("");
  const recordBytes = encoder.encode(records);
  const pax = tarHeader({ name: "PaxHeaders/x", size: recordBytes.length, mtimeMs: 0 });
  pax[156] = "x".charCodeAt(0);
  withChecksum(pax);
  const blocks = Math.ceil(recordBytes.length / 512);
  const body = new Uint8Array(blocks * 512);
  body.set(recordBytes);
  const data = encoder.encode("abc");
  const tar = new Uint8Array([
    ...pax,
    ...body,
    ...tarHeader({ name: "standin", size: 3, mtimeMs: 7000 }),
    ...data,
    ...new Uint8Array(509 + 1024),
  ]);
  const entries = await readAll(chunked(tar, 100));
  assert.equal(entries.length, 1);
  const e = entries[0]!;
  assert.equal(e.name, "real/näme.txt");
  assert.equal(e.size, 3);
  assert.equal(e.mtimeMs, 7000);
  assert.equal(e.headerOffset, 0);
  assert.equal(e.dataOffset, 512 + blocks * 512 + 512);
  assert.deepEqual(e.data, data);
});
