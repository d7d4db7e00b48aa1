import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  type AuditManifest,
  budgetBytes,
  budgetVerdict,
  buildManifest,
  compareEntries,
  DEFAULT_BUDGET,
  formatReport,
  judgeDrill,
  manifestDigest,
  monthStartUtc,
  parseBudget,
  parseManifest,
  pickDrillFiles,
  pickRandom,
  pickSeqs,
  randomBelow,
  sampleBySeq,
  sampleSize,
  summarize,
} from "./audit.ts";
import { archiveId, auditId, jobId, remoteArchiveId } from "./ids.ts";
import { prng } from "./prng.ts";

/** Pearson's chi-square statistic of observed counts against equal expected counts. */
function chiSquare(counts: readonly number[]): number {
  const total = counts.reduce((a, b) => a + b, 0);
  const expected = total / counts.length;
  return counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
}

/** Critical values of chi-square at p = 0.001 (scipy.stats.chi2.ppf(0.999, df)). */
const CHI2_999: Record<number, number> = { 19: 43.820, 99: 148.230 };

Deno.test("audit: pickSeqs is uniform over the range (chi-square, p = 0.001)", () => {
  const random = prng(20261122);
  const range = { min: 1001, max: 1100 };
  const counts = new Array<number>(100).fill(0);
  for (let i = 0; i < 20_000; i++) {
    const seqs = pickSeqs(range, 5, { random });
    assert.equal(new Set(seqs).size, 5, "distinct");
    for (const s of seqs) counts[s - range.min]!++;
  }
  const x2 = chiSquare(counts);
  assert.ok(x2 < CHI2_999[99]!, `chi-square ${x2.toFixed(1)} >= ${CHI2_999[99]} (df 99)`);
});

Deno.test("audit: the chi-square test catches a biased picker", () => {
  // A classic mistake: Math.round over [0, span - 1] gives both ends half the chance.
  const random = prng(20261122);
  const counts = new Array<number>(100).fill(0);
  for (let i = 0; i < 100_000; i++) counts[Math.round(random() * 99)]!++;
  const x2 = chiSquare(counts);
  assert.ok(x2 > CHI2_999[99]!, `biased picker not detected: chi-square ${x2.toFixed(1)}`);
  // And an off-by-one that never picks the last number.
  const counts2 = new Array<number>(100).fill(0);
  for (let i = 0; i < 100_000; i++) counts2[Math.floor(random() * 99)]!++;
  assert.ok(chiSquare(counts2) > CHI2_999[99]!);
});

Deno.test("audit: pickSeqs from a sparse large range is distinct, sorted and in range", () => {
  const random = prng(1);
  const seqs = pickSeqs({ min: 1, max: 1_000_000_000 }, 50, { random });
  assert.equal(seqs.length, 50);
  assert.deepEqual(seqs, [...new Set(seqs)].sort((a, b) => a - b));
  assert.ok(seqs.every((s) => s >= 1 && s <= 1_000_000_000));
  // More than the range holds: all of it, minus the excluded.
  assert.deepEqual(pickSeqs({ min: 3, max: 7 }, 10, { random, exclude: new Set([4, 6, 99]) }), [
    3,
    5,
    7,
  ]);
  assert.deepEqual(pickSeqs({ min: 3, max: 7 }, 0, { random }), []);
  assert.deepEqual(pickSeqs({ min: 8, max: 7 }, 3, { random }), []);
  assert.throws(() => pickSeqs({ min: 0.5, max: 7 }, 1, { random }), {
    name: "RangeError",
    message: /0\.5\.\.7 is not of integers/,
  });
  assert.throws(() => pickSeqs({ min: 1, max: 7 }, -1, { random }), {
    name: "RangeError",
    message: "Invalid pick size: -1 is not a non-negative integer",
  });
});

Deno.test("audit: randomBelow covers [0, n) and refuses a bad random source", () => {
  const random = prng(3);
  const seen = new Set<number>();
  for (let i = 0; i < 1000; i++) seen.add(randomBelow(random, 7));
  assert.deepEqual([...seen].sort(), [0, 1, 2, 3, 4, 5, 6]);
  const big = randomBelow(random, 2 ** 40);
  assert.ok(Number.isSafeInteger(big) && big >= 0 && big < 2 ** 40);
  assert.equal(randomBelow(() => 0.9999999999999999, 2 ** 32), 2 ** 32 - 1);
  assert.throws(() => randomBelow(() => 1, 10), {
    name: "RangeError",
    message: "Random source returned 1, not a number in [0, 1)",
  });
  assert.throws(() => randomBelow(random, 0), { name: "RangeError", message: /below 0/ });
});

Deno.test("audit: sampleBySeq is uniform over existing rows when numbers have gaps", async () => {
  const random = prng(77);
  // 200 numbers, 20 of them exist: a sparse table needing several rounds or a large ask.
  const exists = new Set<number>();
  for (let s = 7; s <= 200; s += 10) exists.add(s);
  const existing = [...exists].sort((a, b) => a - b);
  const range = { min: 1, max: 200, count: exists.size };
  const counts = new Map<number, number>(existing.map((s) => [s, 0]));
  let queries = 0;
  for (let i = 0; i < 20_000; i++) {
    const { rows, rounds } = await sampleBySeq(range, 3, (seqs) => {
      queries++;
      return Promise.resolve(seqs.filter((s) => exists.has(s)));
    }, { random, maxBatch: 15, maxRounds: 100 });
    assert.ok(rounds >= 1);
    assert.equal(rows.length, 3);
    assert.equal(new Set(rows).size, 3, "distinct");
    for (const s of rows) counts.set(s, counts.get(s)! + 1);
  }
  assert.ok(queries > 20_000, "some samples took more than one query");
  const x2 = chiSquare([...counts.values()]);
  assert.ok(x2 < CHI2_999[19]!, `chi-square ${x2.toFixed(1)} >= ${CHI2_999[19]} (df 19)`);
});

Deno.test("audit: sampleBySeq on a dense range needs one query", async () => {
  const random = prng(5);
  const asked: number[][] = [];
  const s = await sampleBySeq({ min: 1, max: 1_000_000, count: 1_000_000 }, 5, (seqs) => {
    asked.push([...seqs]);
    return Promise.resolve(seqs.map((q) => ({ seq: q })));
  }, { random });
  assert.equal(s.rounds, 1);
  assert.equal(s.rows.length, 5);
  assert.ok(asked[0]!.length <= 7, `asked for ${asked[0]!.length} numbers`);
});

Deno.test("audit: sampleBySeq stops when rows run out and refuses a lookup returning too much", async () => {
  const random = prng(5);
  const s = await sampleBySeq(
    { min: 1, max: 10, count: 3 },
    5,
    (seqs) => Promise.resolve(seqs.filter((q) => q <= 2)),
    { random },
  );
  assert.deepEqual(s.rows.sort(), [1, 2]);
  assert.equal(s.asked, 10);
  const none = await sampleBySeq(
    { min: 1, max: 10, count: 3 },
    0,
    () => Promise.resolve([]),
    { random },
  );
  assert.deepEqual(none, { rows: [], rounds: 0, asked: 0 });
  await assert.rejects(
    sampleBySeq({ min: 1, max: 10, count: 10 }, 2, (seqs) => Promise.resolve([...seqs, 11]), {
      random,
    }),
    { name: "RangeError", message: /returned 4 rows for 3 sequence numbers/ },
  );
});

Deno.test("audit: sampleSize rounds randomly with the right expectation", () => {
  const random = prng(99);
  for (const [count, fraction] of [[1000, 0.0025], [300_000, 1e-6], [12_345_678, 1e-6]] as const) {
    const x = count * fraction;
    let sum = 0;
    const draws = 100_000;
    for (let i = 0; i < draws; i++) {
      const n = sampleSize(count, { fraction, random });
      assert.ok(n === Math.floor(x) || n === Math.floor(x) + 1, `${n} for ${x}`);
      sum += n;
    }
    // The standard deviation of the mean is at most 0.5 / sqrt(draws) = 0.0016.
    assert.ok(Math.abs(sum / draws - x) < 0.01, `mean ${sum / draws} for ${x}`);
  }
});

Deno.test("audit: sampleSize honours min and count, and refuses bad input by name", () => {
  const random = prng(1);
  assert.equal(sampleSize(1000, { fraction: 1e-6, min: 2, random }), 2);
  assert.equal(sampleSize(1, { fraction: 0, min: 5, random }), 1);
  assert.equal(sampleSize(0, { fraction: 1, min: 5, random }), 0);
  assert.equal(sampleSize(40, { fraction: 1, random }), 40);
  assert.throws(() => sampleSize(10, { fraction: 1.5, random }), {
    name: "RangeError",
    message: "Invalid sample fraction: 1.5 is not in [0, 1]",
  });
  assert.throws(() => sampleSize(10, { fraction: Number.NaN, random }), { name: "RangeError" });
  assert.throws(() => sampleSize(-1, { fraction: 0.1, random }), {
    name: "RangeError",
    message: "Invalid archive count: -1 is not a non-negative integer",
  });
  assert.throws(() => sampleSize(10, { fraction: 0.1, min: 1.5, random }), {
    name: "RangeError",
    message: /minimum sample size: 1\.5/,
  });
});

Deno.test("audit: pickRandom and pickDrillFiles pick distinct items, one per group", () => {
  const random = prng(11);
  const items = ["a", "b", "c", "d", "e"];
  const two = pickRandom(items, 2, { random });
  assert.equal(two.length, 2);
  assert.ok(items.indexOf(two[0]!) < items.indexOf(two[1]!), "original order kept");
  assert.deepEqual(pickRandom(items, 9, { random }), items);
  // Uniform over a group (chi-square, df 19).
  const group = Array.from({ length: 20 }, (_, i) => i);
  const counts = new Array<number>(20).fill(0);
  for (let i = 0; i < 40_000; i++) counts[pickRandom(group, 1, { random })[0]!]!++;
  assert.ok(chiSquare(counts) < CHI2_999[19]!);

  const groups = [[1, 2, 3], [], [4], [5, 6], [7], [8]];
  const picked = pickDrillFiles(groups, 3, { random });
  assert.equal(picked.length, 3);
  assert.ok([1, 2, 3].includes(picked[0]!));
  assert.equal(picked[1], 4);
  assert.ok([5, 6].includes(picked[2]!));
  assert.deepEqual(pickDrillFiles(groups, 10, { random, eligible: (f) => f % 2 === 0 }), [
    2,
    4,
    6,
    8,
  ]);
});

Deno.test("audit: monthStartUtc is the first instant of the UTC month", () => {
  assert.equal(monthStartUtc(Date.UTC(2026, 10, 22, 10, 53, 1, 123)), Date.UTC(2026, 10, 1));
  assert.equal(monthStartUtc(Date.UTC(2026, 0, 1)), Date.UTC(2026, 0, 1));
  assert.equal(monthStartUtc(Date.UTC(2026, 0, 1) - 1), Date.UTC(2025, 11, 1));
  assert.equal(monthStartUtc(Date.UTC(2024, 1, 29, 23, 59, 59, 999)), Date.UTC(2024, 1, 1));
  assert.throws(() => monthStartUtc(Number.NaN), { name: "RangeError", message: /Invalid time/ });
});

Deno.test("audit: parseBudget reads bytes, fractions and percentages", () => {
  assert.deepEqual(parseBudget("50GiB"), { bytes: 50 * 1024 ** 3 });
  assert.deepEqual(parseBudget("500MB"), { bytes: 500_000_000 });
  assert.deepEqual(parseBudget("1073741824"), { bytes: 1073741824 });
  assert.deepEqual(parseBudget("0.05"), { fraction: 0.05 });
  assert.deepEqual(parseBudget("1"), { fraction: 1 });
  assert.deepEqual(parseBudget(" 5% "), { fraction: 0.05 });
  assert.deepEqual(parseBudget("0%"), { fraction: 0 });
  assert.throws(() => parseBudget("1.5"), {
    name: "SyntaxError",
    message: /Cannot parse budget "1\.5": a number without unit is a fraction/,
  });
  assert.throws(() => parseBudget("lots"), {
    name: "SyntaxError",
    message: 'Cannot parse budget "lots": expected bytes (50GiB), a fraction (0.05) ' +
      "or a percentage (5%)",
  });
  assert.throws(() => parseBudget("-5%"), { name: "SyntaxError", message: /"-5%"/ });
});

Deno.test("audit: budgetBytes and budgetVerdict", () => {
  assert.equal(budgetBytes(DEFAULT_BUDGET, 1_000_000_001), 50_000_000);
  assert.equal(budgetBytes({ bytes: 123 }, 1e12), 123);
  assert.deepEqual(budgetVerdict(10, { spentBytes: 90, budgetBytes: 100 }), {
    ok: true,
    remainingBytes: 10,
  });
  assert.deepEqual(budgetVerdict(11, { spentBytes: 90, budgetBytes: 100 }), {
    ok: false,
    remainingBytes: 10,
  });
  assert.deepEqual(budgetVerdict(1, { spentBytes: 150, budgetBytes: 100 }), {
    ok: false,
    remainingBytes: 0,
  });
});

function md5(s: string): string {
  return createHash("md5").update(s).digest("hex");
}

const MANIFEST: AuditManifest = {
  version: 1,
  auditId: auditId("a20261122T105301.123Z-0102030405ff"),
  archiveId: archiveId("20261001T000000.000Z-aabbccddeeff"),
  store: "file:///srv/vault",
  remoteId: remoteArchiveId("20261001T000000.000Z-aabbccddeeff.tar"),
  jobId: jobId("job-1"),
  archiveSize: 10240,
  createdAt: Date.UTC(2026, 10, 22, 10, 53, 1),
  entries: [
    {
      name: "a.txt",
      headerOffset: 0,
      dataOffset: 512,
      length: 5,
      md5: md5("hello"),
      basis: "live",
    },
    {
      name: "dir/b.bin",
      headerOffset: 1024,
      dataOffset: 1536,
      length: 3,
      md5: md5("abc"),
      basis: "catalog",
    },
    { name: "c", headerOffset: 2048, dataOffset: 2560, length: 0, md5: md5(""), basis: "live" },
  ],
};

Deno.test("audit: a manifest round-trips to the same deterministic bytes", () => {
  const bytes = buildManifest({ ...MANIFEST, entries: [...MANIFEST.entries].reverse() });
  const text = new TextDecoder().decode(bytes);
  assert.ok(text.startsWith('{"version":1,"auditId":"a20261122T105301.123Z-0102030405ff",'));
  assert.equal(text.split("\n").length, 6, "one line per entry");
  assert.deepEqual(parseManifest(bytes), MANIFEST);
  assert.deepEqual(parseManifest(text), MANIFEST);
  assert.deepEqual(buildManifest(parseManifest(bytes)), bytes);
  assert.equal(manifestDigest(bytes), createHash("sha256").update(bytes).digest("hex"));
  assert.match(manifestDigest(bytes), /^[0-9a-f]{64}$/);
  assert.equal(manifestDigest(text), manifestDigest(bytes));
  const empty = buildManifest({ ...MANIFEST, entries: [] });
  assert.deepEqual(parseManifest(empty).entries, []);
});

Deno.test("audit: parseManifest refuses malformed manifests, naming the field", () => {
  const good = JSON.parse(new TextDecoder().decode(buildManifest(MANIFEST)));
  const bad = (patch: (m: Record<string, unknown>) => void, message: string | RegExp) => {
    const m = structuredClone(good);
    patch(m);
    assert.throws(() => parseManifest(JSON.stringify(m)), { name: "TypeError", message });
  };
  const entry = (m: Record<string, unknown>, i: number) =>
    (m.entries as Record<string, unknown>[])[i]!;
  bad((m) => (m.version = 2), "Invalid audit manifest: version 2 is not 1");
  bad((m) => delete m.jobId, "Invalid audit manifest: jobId is missing");
  bad((m) => (m.store = ""), "Invalid audit manifest: store is empty");
  bad((m) => (m.auditId = "../x"), 'Invalid audit manifest: auditId is not a valid id: "../x"');
  bad((m) => (m.archiveSize = -1), /archiveSize is not a non-negative integer/);
  bad((m) => (m.createdAt = "2026-11-22"), /createdAt is not a non-negative integer/);
  bad((m) => (m.extra = 1), "Invalid audit manifest: extra is not a known field");
  bad((m) => (m.entries = {}), "Invalid audit manifest: entries is not an array");
  bad((m) => (entry(m, 1).md5 = "ABC"), /entries\[1\]\.md5 is not 32 lower-case hex digits/);
  bad((m) => (entry(m, 0).basis = "guess"), /entries\[0\]\.basis is not "live" or "catalog"/);
  bad((m) => (entry(m, 0).size = 5), /entries\[0\]\.size is not a known field/);
  bad((m) => (entry(m, 2).headerOffset = 2049), /entries\[2\]\.headerOffset is not a multiple/);
  bad((m) => (entry(m, 2).dataOffset = 2048), /entries\[2\]\.dataOffset is not a block boundary/);
  bad((m) => (entry(m, 2).length = 10000), /entries\[2\]\.length ends at 12560, past archiveSize/);
  bad((m) => (entry(m, 2).name = "a.txt"), /entries\[2\]\.name repeats "a\.txt"/);
  bad((m) => (entry(m, 1).headerOffset = 0), /entries\[1\]\.headerOffset is not after/);
  bad(
    (m) => (entry(m, 2).name = ".coldpack/manifest.json"),
    /entries\[2\]\.name is the archive's own \.coldpack\/manifest\.json/,
  );
  bad((m) => (entry(m, 0).name = "a\0b"), /entries\[0\]\.name contains a NUL/);
  assert.throws(() => parseManifest("{"), {
    name: "SyntaxError",
    message: /Cannot parse audit manifest: not UTF-8 JSON/,
  });
  assert.throws(() => parseManifest(new Uint8Array([0xff, 0xfe])), {
    name: "SyntaxError",
    message: /not UTF-8 JSON/,
  });
  assert.throws(() => parseManifest("[]"), {
    name: "TypeError",
    message: "Invalid audit manifest: the top level is not an object",
  });
  assert.throws(() => buildManifest({ ...MANIFEST, store: "" }), {
    name: "TypeError",
    message: /store is empty/,
  });
});

const CLEAN = [
  { name: "a.txt", size: 5, md5: md5("hello") },
  { name: "dir/b.bin", size: 3, md5: md5("abc") },
  { name: "c", size: 0, md5: md5("") },
  { name: ".coldpack/manifest.json", size: 400, md5: md5("{}") },
];

Deno.test("audit: compareEntries finds nothing wrong in a sound archive", () => {
  assert.deepEqual(compareEntries(MANIFEST, CLEAN), []);
  assert.deepEqual(compareEntries(MANIFEST, CLEAN.slice(0, 3)), [], "manifest entry optional");
});

Deno.test("audit: compareEntries reports each kind of damage distinctly, in order", () => {
  const observed = [
    { name: "x.txt", size: 2, md5: md5("xx") },
    { name: "a.txt", size: 5, md5: md5("hellO") },
    { name: "c", size: 1, md5: md5("!") },
    { name: "a.txt", size: 5, md5: md5("hello") },
    { name: ".coldpack/manifest.json", size: 400, md5: md5("{}") },
  ];
  assert.deepEqual(compareEntries(MANIFEST, observed), [
    {
      kind: "md5-mismatch",
      name: "a.txt",
      expected: md5("hello"),
      actual: md5("hellO"),
      detail: `Entry "a.txt" has md5 ${md5("hellO")}, expected ${md5("hello")} ` +
        "(md5 of the live source file)",
    },
    {
      kind: "missing-entry",
      name: "dir/b.bin",
      expected: 3,
      detail: 'The archive has no entry "dir/b.bin" (expected at byte 1024, 3 bytes)',
    },
    {
      kind: "size-mismatch",
      name: "c",
      expected: 0,
      actual: 1,
      detail: 'Entry "c" has 1 bytes, expected 0',
    },
    {
      kind: "extra-entry",
      name: "x.txt",
      actual: 2,
      detail: 'The archive holds "x.txt" (2 bytes), which the manifest does not list',
    },
    {
      kind: "extra-entry",
      name: "a.txt",
      actual: 5,
      detail: 'The archive holds a second entry named "a.txt" (5 bytes)',
    },
  ]);
  const catalogBasis = compareEntries(MANIFEST, [
    CLEAN[0]!,
    { name: "dir/b.bin", size: 3, md5: md5("abd") },
    CLEAN[2]!,
  ]);
  assert.equal(catalogBasis.length, 1);
  assert.match(catalogBasis[0]!.detail, /the catalog's md5 \(file deleted or replaced/);
});

Deno.test("audit: compareEntries on a truncated tar reports it once, not every later entry", () => {
  const findings = compareEntries(MANIFEST, [CLEAN[0]!], {
    offset: 1536,
    reason: "unexpected end of archive",
  });
  assert.deepEqual(findings, [{
    kind: "unreadable-tar",
    actual: 1536,
    detail: "The archive cannot be read past byte 1536: unexpected end of archive " +
      "(2 listed entries not checked)",
  }]);
  // An entry before the failure that was never read is still missing.
  const early = compareEntries(MANIFEST, [], { offset: 1024, reason: "bad header checksum" });
  assert.deepEqual(early.map((f) => [f.kind, f.name]), [
    ["missing-entry", "a.txt"],
    ["unreadable-tar", undefined],
  ]);
  assert.match(early[1]!.detail, /bad header checksum \(2 listed entries not checked\)$/);
  const late = compareEntries(MANIFEST, CLEAN.slice(0, 3), { offset: 3072, reason: "truncated" });
  assert.deepEqual(late.map((f) => f.detail), [
    "The archive cannot be read past byte 3072: truncated",
  ]);
});

Deno.test("audit: judgeDrill passes a good restore and fails a late, bad or failed one", () => {
  const t0 = Date.UTC(2026, 10, 1, 3);
  const h = 3600_000;
  const base = { startedAt: t0, finishedAt: null, identical: null } as const;
  assert.deepEqual(judgeDrill({ ...base, restoreState: "pending" }, t0 + 23 * h), {
    state: "pending",
    reason: "waiting for the restore",
  });
  assert.deepEqual(judgeDrill({ ...base, restoreState: "pending" }, t0 + 24 * h + 1), {
    state: "failed",
    reason: "not restored byte-identical within 24 h",
  });
  const done = { ...base, restoreState: "done", finishedAt: t0 + 5 * h } as const;
  assert.equal(judgeDrill({ ...done, identical: true }, t0 + 30 * h).state, "ok");
  assert.deepEqual(judgeDrill({ ...done, identical: false }, t0 + 6 * h), {
    state: "failed",
    reason: "the restored file differs from the original",
  });
  assert.equal(judgeDrill({ ...done }, t0 + 6 * h).state, "pending", "done, not yet compared");
  assert.equal(judgeDrill({ ...done }, t0 + 25 * h).state, "failed", "never compared in time");
  assert.deepEqual(
    judgeDrill({ ...done, finishedAt: t0 + 25 * h, identical: true }, t0 + 26 * h),
    { state: "failed", reason: "the restore finished after the 24 h window" },
  );
  assert.deepEqual(judgeDrill({ ...base, restoreState: "failed" }, t0 + h), {
    state: "failed",
    reason: "the restore failed",
  });
  assert.deepEqual(
    judgeDrill({ ...base, restoreState: "pending" }, t0 + 2 * h, { windowMs: h }),
    { state: "failed", reason: "not restored byte-identical within 1 h" },
  );
});

Deno.test("audit: the report counts and lists audits and drills", () => {
  const audits = [
    {
      id: "a20261122T105301.123Z-0102030405ff",
      archiveId: "20261001T000000.000Z-aabbccddeeff",
      state: "failed",
      findings: 3,
      createdAt: Date.UTC(2026, 10, 22, 10, 53, 1),
      note: null,
    },
    {
      id: "a20261122T095301.123Z-0102030405ff",
      archiveId: "20261002T000000.000Z-aabbccddeeff",
      state: "verified",
      findings: 0,
      createdAt: Date.UTC(2026, 10, 22, 9, 53, 1),
    },
    {
      id: "a20261122T085301.123Z-0102030405ff",
      archiveId: "20261003T000000.000Z-aabbccddeeff",
      state: "skipped",
      findings: null,
      createdAt: Date.UTC(2026, 10, 22, 8, 53, 1),
      note: "over budget",
    },
  ];
  const drills = [{
    id: "d20261101T030000.000Z-000000000001",
    fileId: 42,
    dest: "mogilefs",
    state: "ok",
    startedAt: Date.UTC(2026, 10, 1, 3),
    note: null,
  }];
  assert.deepEqual(summarize(audits, drills), {
    audits: {
      total: 3,
      byState: { verified: 1, failed: 1, sent: 0, skipped: 1, error: 0 },
      findings: 3,
    },
    drills: { total: 1, byState: { ok: 1, pending: 0, failed: 0, alerted: 0 } },
  });
  assert.equal(
    formatReport(audits, drills),
    [
      "Audits: 3 (1 verified, 1 failed, 0 sent, 1 skipped, 0 error), 3 findings",
      "  2026-11-22 10:53Z  failed    a20261122T105301.123Z-0102030405ff  " +
      "archive 20261001T000000.000Z-aabbccddeeff  3 findings",
      "  2026-11-22 09:53Z  verified  a20261122T095301.123Z-0102030405ff  " +
      "archive 20261002T000000.000Z-aabbccddeeff  0 findings",
      "  2026-11-22 08:53Z  skipped   a20261122T085301.123Z-0102030405ff  " +
      "archive 20261003T000000.000Z-aabbccddeeff  (over budget)",
      "Drills: 1 (1 ok, 0 pending, 0 failed, 0 alerted)",
      "  2026-11-01 03:00Z  ok        d20261101T030000.000Z-000000000001  file 42 -> mogilefs",
      "",
    ].join("\n"),
  );
  assert.equal(
    formatReport([], []),
    "Audits: 0 (0 verified, 0 failed, 0 sent, 0 skipped, 0 error), 0 findings\nDrills: 0 (0 ok, 0 pending, 0 failed, 0 alerted)\n",
  );
});
