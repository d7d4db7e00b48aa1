import assert from "node:assert/strict";
import {
  type Aggregate,
  Aggregator,
  BUCKET_SECONDS,
  formatForward,
  type Kind,
  LineReader,
  type LineReaderOptions,
  type ParsedLine,
  parseLine,
  prometheusName,
  renderPrometheus,
  totalsAsPrometheus,
} from "./istatd.ts";
import { prng } from "./prng.ts";

const T = 1_700_000_000;

function samples(line: string): { name: string; kind: Kind; time: number | null }[] {
  const p = parseLine(line);
  assert.equal(p.kind, "sample", `${line}: ${JSON.stringify(p)}`);
  return p.kind === "sample" ? p.samples.map(({ name, kind, time }) => ({ name, kind, time })) : [];
}

function reason(line: string, options: { maxLine?: number } = {}): string {
  const p = parseLine(line, options);
  assert.equal(p.kind, "malformed", `${JSON.stringify(line)} parsed as ${JSON.stringify(p)}`);
  return p.kind === "malformed" ? p.reason : "";
}

/** A reader into a fresh aggregator that records malformed lines and metadata. */
function reader(options: LineReaderOptions & { maxCounters?: number } = {}) {
  const bad: [string, string][] = [];
  const meta: [string, string][] = [];
  const agg = new Aggregator(
    options.maxCounters === undefined ? {} : { maxCounters: options.maxCounters },
  );
  const r = new LineReader(agg, {
    ...options,
    onMalformed: (line, why) => bad.push([line, why]),
    onMeta: (key, value) => meta.push([key, value]),
  });
  return { agg, r, bad, meta };
}

function byKey(aggs: Aggregate[]): Map<string, Aggregate> {
  const m = new Map<string, Aggregate>();
  for (const a of aggs) {
    assert.ok(!m.has(`${a.name} ${a.time}`), `one aggregate per name and bucket: ${a.name}`);
    m.set(`${a.name} ${a.time}`, a);
  }
  return m;
}

// ---------------------------------------------------------------------------
// parseLine: the line shapes.

Deno.test("parseLine reads the three sample shapes, gauge and event", () => {
  assert.deepEqual(parseLine("web.ms 5"), {
    kind: "sample",
    samples: [
      { name: "web.ms", kind: "gauge", time: null, count: 1, sum: 5, sumsq: 25, min: 5, max: 5 },
    ],
  });
  assert.deepEqual(parseLine("web.ms 1700000003 2.5"), {
    kind: "sample",
    samples: [{
      name: "web.ms",
      kind: "gauge",
      time: 1700000003,
      count: 1,
      sum: 2.5,
      sumsq: 6.25,
      min: 2.5,
      max: 2.5,
    }],
  });
  assert.deepEqual(parseLine("web.ms 1700000003.5 10 50 1 4 3"), {
    kind: "sample",
    samples: [{
      name: "web.ms",
      kind: "gauge",
      time: 1700000003.5,
      count: 3,
      sum: 10,
      sumsq: 50,
      min: 1,
      max: 4,
    }],
  });
  assert.deepEqual(parseLine("*web.hits 3"), {
    kind: "sample",
    samples: [
      { name: "web.hits", kind: "event", time: null, count: 1, sum: 3, sumsq: 9, min: 3, max: 3 },
    ],
  });
  assert.deepEqual(samples("*web.hits 1700000000 7 49 7 7 1"), [
    { name: "web.hits", kind: "event", time: 1700000000 },
  ]);
  assert.deepEqual(samples("a-b_c.0-9 1"), [{ name: "a-b_c.0-9", kind: "gauge", time: null }]);
});

Deno.test("parseLine reads finite decimals exactly as Number does", () => {
  const cases: [string, number][] = [
    ["0", 0],
    ["-1.5", -1.5],
    ["+4", 4],
    [".5", 0.5],
    ["1.", 1],
    ["0.1", 0.1],
    ["1e3", 1000],
    ["2E-3", 0.002],
    ["1.5e+2", 150],
    ["000123", 123],
    ["0.000001", 0.000001],
    ["12345678901234567890", 12345678901234567890],
    ["3.141592653589793238", 3.141592653589793],
    ["1e-30", 1e-30],
    ["1.7976931348623157e308", 1.7976931348623157e308],
    ["5e-324", 5e-324],
    ["1e-400", 0],
  ];
  for (const [text, value] of cases) {
    const p = parseLine(`x ${text}`);
    assert.ok(p.kind === "sample", text);
    assert.equal(p.samples[0]!.sum, value, text);
  }
  // Whatever String() prints reads back to the same number (forward lines round-trip).
  const random = prng(7);
  for (let k = 0; k < 5000; k++) {
    const magnitude = 10 ** Math.floor(random() * 40 - 20);
    const v = (random() - 0.5) * magnitude;
    const p = parseLine(`x ${v}`);
    assert.ok(p.kind === "sample");
    assert.equal(p.samples[0]!.sum, v, String(v));
  }
});

Deno.test("parseLine ignores CR and extra white space, skips blank lines", () => {
  assert.deepEqual(samples("a 1\r"), [{ name: "a", kind: "gauge", time: null }]);
  assert.deepEqual(samples("a 1\r\r"), [{ name: "a", kind: "gauge", time: null }]);
  assert.deepEqual(samples("  a \t 10   2 \r"), [{ name: "a", kind: "gauge", time: 10 }]);
  assert.deepEqual(samples("a\r2"), [{ name: "a", kind: "gauge", time: null }]);
  for (const blank of ["", "   ", "\r", " \t\r "]) {
    assert.deepEqual(parseLine(blank), { kind: "empty" } satisfies ParsedLine);
  }
});

Deno.test("parseLine lower-cases names (A-Z)", () => {
  assert.deepEqual(samples("Web.Hits 1"), [{ name: "web.hits", kind: "gauge", time: null }]);
  assert.deepEqual(samples("*ABC_Z 1"), [{ name: "abc_z", kind: "event", time: null }]);
});

Deno.test("parseLine fans a^b^c out to a.b and a.c, events too", () => {
  assert.deepEqual(samples("a^b^c 1"), [
    { name: "a.b", kind: "gauge", time: null },
    { name: "a.c", kind: "gauge", time: null },
  ]);
  assert.deepEqual(samples("a^b 1700000000 2"), [{ name: "a.b", kind: "gauge", time: T }]);
  assert.deepEqual(samples("*Host.X^Cpu.Busy^idle 1"), [
    { name: "host.x.cpu.busy", kind: "event", time: null },
    { name: "host.x.idle", kind: "event", time: null },
  ]);
  const p = parseLine("*a^b^c 1700000000 10 50 1 4 3");
  assert.ok(p.kind === "sample");
  assert.deepEqual(p.samples.map((s) => [s.name, s.kind, s.count, s.sum, s.min, s.max]), [
    ["a.b", "event", 3, 10, 1, 4],
    ["a.c", "event", 3, 10, 1, 4],
  ]);
  for (const line of ["a^ 1", "^b 1", "a^^b 1", "a.^b 1", "a^.b 1", "a^b^ 1", "*^b 1"]) {
    assert.match(reason(line), /^bad name ".*": empty part/, line);
  }
});

Deno.test("parseLine reads #key value metadata", () => {
  assert.deepEqual(
    parseLine("#hostname web12"),
    {
      kind: "meta",
      key: "hostname",
      value: "web12",
    } satisfies ParsedLine,
  );
  assert.deepEqual(parseLine("#proto x 1 1\r"), { kind: "meta", key: "proto", value: "x 1 1" });
  assert.deepEqual(parseLine("#hostname"), { kind: "meta", key: "hostname", value: "" });
  assert.deepEqual(parseLine("#note  grüße  "), { kind: "meta", key: "note", value: "grüße" });
});

Deno.test("parseLine names the reason of every malformed line", () => {
  // Too long: over 4,096 UTF-8 bytes, CRs not counted; the limit is an option.
  assert.equal(
    reason(`${"a".repeat(4095)} 1`.padEnd(4097, "0")),
    "line too long: 4097 bytes, limit 4096",
  );
  assert.equal(parseLine(`${"a".repeat(4094)} 1`).kind, "sample");
  assert.equal(parseLine(`${"a".repeat(4094)} 1\r\r`).kind, "sample");
  assert.equal(reason(`#k ${"é".repeat(2047)}`), "line too long: 4097 bytes, limit 4096");
  assert.equal(reason("abc 1", { maxLine: 4 }), "line too long: 5 bytes, limit 4");

  // Numbers.
  for (
    const bad of ["x", "1x", "0x10", "1_000", "-", "+", ".", "1e", "e5", "1e+", "--1", "1.2.3"]
  ) {
    assert.equal(reason(`a ${bad}`), `bad number "${bad}": not a finite decimal number`, bad);
  }
  for (const bad of ["NaN", "Infinity", "-Infinity", "1e999", "-1e400"]) {
    assert.match(reason(`a ${bad}`), /^bad number ".*": not a finite decimal number$/, bad);
  }
  assert.match(reason("a 10 1 2 x 4 5"), /^bad number "x"/);
  assert.match(reason("a NaN 1"), /^bad number "NaN"/);

  // Time.
  assert.equal(reason("a -5 1"), "negative time -5: times are unix seconds >= 0");
  assert.match(reason("a -0.5 1 1 1 1 1"), /^negative time -0.5/);

  // Names.
  assert.equal(
    reason("a%b 1"),
    'bad name "a%b": character "%" not allowed (only a-z 0-9 _ . - and ^ for fan-out)',
  );
  assert.match(reason("a/b 1"), /^bad name "a\/b": character "\/" not allowed/);
  assert.match(reason("a*b 1"), /^bad name "a\*b": character "\*" not allowed/);
  assert.match(reason("**a 1"), /^bad name "\*\*a": character "\*" not allowed/);
  assert.match(reason("café 1"), /^bad name "café": character "é" not allowed/);
  assert.match(reason("a\u0000b 1"), /^bad name "a\\u0000b": character "\\u0000" not allowed/);
  assert.equal(reason("* 1"), 'bad name "*": empty name');
  for (const line of [".a 1", "a. 1", "a..b 1", ". 1"]) {
    assert.match(reason(line), /^bad name ".*": empty part \(a leading, trailing or double/, line);
  }

  // Field count.
  const expected = "expected 2 (name value), 3 (name time value) " +
    "or 7 (name time sum sumsq min max count)";
  assert.equal(reason("a"), `wrong field count: 1 field, ${expected}`);
  assert.equal(reason("a 1 2 3"), `wrong field count: 4 fields, ${expected}`);
  assert.match(reason("a 1 2 3 4 5"), /^wrong field count: 6 fields/);
  assert.match(reason("a 1 2 3 4 5 6 7"), /^wrong field count: 8 fields/);
  assert.match(reason("a%b x y z"), /^wrong field count: 4 fields/, "the count is checked first");

  // Aggregated lines.
  assert.equal(reason("a 10 1 1 1 1 0"), "bad aggregate: count 0 must be > 0");
  assert.equal(reason("a 10 1 1 1 1 -2"), "bad aggregate: count -2 must be > 0");
  assert.equal(reason("a 10 1 1 5 4 1"), "bad aggregate: min 5 > max 4");
  assert.equal(reason("a 10 1 -1 1 1 1"), "bad aggregate: sumsq -1 must be >= 0");

  // Metadata.
  assert.equal(reason("# hostname"), "bad metadata: no key after #");
  assert.equal(reason("#"), "bad metadata: no key after #");
});

// ---------------------------------------------------------------------------
// LineReader.

Deno.test("LineReader keeps an unfinished last line until the next feed", () => {
  const { agg, r } = reader();
  r.feed("a 1\nb 1700000004", T + 1);
  assert.deepEqual(r.stats, { lines: 1, samples: 1, malformed: 0, meta: 0 });
  r.feed(".5 2", T + 1);
  r.feed("5\nc ", T + 1);
  r.feed("3\n", T + 1);
  assert.deepEqual(r.stats, { lines: 3, samples: 3, malformed: 0, meta: 0 });
  assert.deepEqual(agg.takeLines(), [
    `a ${T} 1 1 1 1 1`,
    `b ${T} 25 625 25 25 1`,
    `c ${T} 3 9 3 3 1`,
  ]);
  // A line cut inside a multi-byte character (bytes), and inside a CRLF.
  const m: string[] = [];
  const r2 = new LineReader(new Aggregator(), { onMeta: (k, v) => m.push(`${k}=${v}`) });
  const bytes = new TextEncoder().encode("#hostname wé\r\n#x y\r\n");
  for (let k = 0; k < bytes.length; k++) r2.feedBytes(bytes.subarray(k, k + 1), T);
  assert.deepEqual(m, ["hostname=wé", "x=y"]);
});

Deno.test("LineReader.end counts a final line without LF (one UDP datagram each)", () => {
  const { agg, r } = reader();
  r.feed("*hits 1\n*hits 2", T);
  r.end(T);
  r.feed("*hits 4", T);
  r.end(T);
  r.end(T); // nothing pending: nothing happens
  r.feed("\n\n", T);
  r.end(T);
  assert.deepEqual(r.stats, { lines: 3, samples: 3, malformed: 0, meta: 0 });
  assert.deepEqual(agg.takeLines(), [`*hits ${T} 7`]);
});

Deno.test("LineReader: samples without a time are at now, buckets are floored to 10 s", () => {
  const { agg, r } = reader();
  r.feed("a 1\n", T + 9.99);
  r.feed("a 2\n", T + 10);
  r.feed(`a ${T + 19.5} 4\nb 5 1\nc 0 1\n`, T + 30);
  const got = agg.take().map((a) => [a.name, a.time, a.sum]);
  assert.deepEqual(got, [["a", T, 1], ["a", T + 10, 6], ["b", 0, 1], ["c", 0, 1]]);
  assert.equal(BUCKET_SECONDS, 10);
});

Deno.test("LineReader merges values and aggregated lines per name and bucket", () => {
  const { agg, r } = reader();
  r.feed(
    [
      `g ${T + 1} 10 50 1 4 3`,
      `g ${T + 2} 5`,
      `g ${T + 9} 2 4 2 2 1`,
      "g -1", // now: T + 5
      "*e 1",
      `*e ${T} 2`,
      `*e ${T + 3} 10 40 1 5 4`,
    ].join("\n") + "\n",
    T + 5,
  );
  const got = byKey(agg.take());
  assert.deepEqual(got.get(`g ${T}`), {
    name: "g",
    kind: "gauge",
    time: T,
    count: 6,
    sum: 16,
    sumsq: 80,
    min: -1,
    max: 5,
  });
  assert.deepEqual(got.get(`e ${T}`), {
    name: "e",
    kind: "event",
    time: T,
    count: 6,
    sum: 13,
    sumsq: 45,
    min: 1,
    max: 5,
  });
});

Deno.test("LineReader counts and skips malformed lines and goes on", () => {
  const { agg, r, bad, meta } = reader();
  r.feed("a 1\nbad line here x\n#hostname web12\nb%c 1\n\n  \r\nd 1e999\nz 2\r\n", T);
  assert.deepEqual(r.stats, { lines: 6, samples: 2, malformed: 3, meta: 1 });
  assert.deepEqual(bad.map(([line]) => line), ["bad line here x", "b%c 1", "d 1e999"]);
  assert.match(bad[0]![1], /^wrong field count: 4 fields/);
  assert.match(bad[1]![1], /^bad name "b%c"/);
  assert.match(bad[2]![1], /^bad number "1e999"/);
  assert.deepEqual(meta, [["hostname", "web12"]]);
  assert.deepEqual(agg.take().map((a) => a.name), ["a", "z"]);
});

Deno.test("LineReader bounds a too-long line, also one that spans feeds", () => {
  const { agg, r, bad } = reader();
  r.feed(`${"a".repeat(5000)} 1\nok 1\n`, T);
  assert.equal(bad[0]![1], "line too long: 5002 bytes, limit 4096");
  assert.equal(bad[0]![0], "a".repeat(200), "the line is cut to 200 bytes");
  // Across feeds: reported as soon as it passes the limit, the rest skipped up to the LF.
  r.feed("b".repeat(3000), T);
  r.feed("b".repeat(3000), T);
  assert.equal(bad.length, 2);
  assert.equal(bad[1]![1], "line too long: over 4096 bytes and no LF yet");
  assert.equal(bad[1]![0], "b".repeat(200));
  r.feed("b".repeat(10_000), T);
  r.feed("bbb 1\nok 2\n", T);
  assert.equal(bad.length, 2);
  assert.deepEqual(r.stats, { lines: 4, samples: 2, malformed: 2, meta: 0 });
  // The longest allowed line, in pieces, with a CRLF.
  const longest = `${"c".repeat(4094)} 1\r\n`;
  r.feed(longest.slice(0, 3000), T);
  r.feed(longest.slice(3000), T);
  assert.deepEqual(r.stats, { lines: 5, samples: 3, malformed: 2, meta: 0 });
  assert.deepEqual(agg.take().map((a) => [a.name.length, a.sum]), [[2, 3], [4094, 1]]);
  // maxLine is an option.
  const small = reader({ maxLine: 8 });
  small.r.feed("abcdef 1\nabcdefg 1\n", T);
  assert.deepEqual(small.bad.map(([, why]) => why), ["line too long: 9 bytes, limit 8"]);
});

Deno.test("LineReader fans out and refuses a kind conflict and names over the limit", () => {
  const { agg, r, bad } = reader({ maxCounters: 4 });
  r.feed("*Req^Get^Post 1\nreq.get 5\nA^b^c 1\na.b 2\nnew.one 1\n*req^get^put 1\n", T);
  assert.deepEqual(bad, [
    ["req.get 5", "kind conflict: req.get is an event, not a gauge"],
    ["new.one 1", "too many counters: new.one is new beyond the limit of 4 distinct names"],
    ["*req^get^put 1", "too many counters: req.put is new beyond the limit of 4 distinct names"],
  ]);
  assert.deepEqual(r.stats, { lines: 6, samples: 6, malformed: 3, meta: 0 });
  assert.deepEqual(agg.refused, { kind: 1, tooMany: 2 });
  assert.deepEqual(agg.takeLines(), [
    `*req.get ${T} 2`,
    `*req.post ${T} 1`,
    `a.b ${T} 3 5 1 2 2`,
    `a.c ${T} 1 1 1 1 1`,
  ]);
  assert.equal(agg.kindOf("req.get"), "event");
  assert.equal(agg.kindOf("a.c"), "gauge");
  assert.equal(agg.kindOf("new.one"), undefined);
});

Deno.test("LineReader.feedBytes takes a Uint8Array subclass (a socket's Buffer) and views", () => {
  class Bytes extends Uint8Array {}
  const { agg, r } = reader();
  const text = new TextEncoder().encode("xx a 1\nb 2\n");
  const bytes = new Bytes(text.length);
  bytes.set(text);
  r.feedBytes(bytes.subarray(3), T);
  r.feedBytes(text.subarray(7), T);
  assert.deepEqual(agg.take().map((a) => [a.name, a.sum]), [["a", 1], ["b", 4]]);
});

Deno.test("LineReader.feed takes long text, never cutting a surrogate pair", () => {
  const { r, meta } = reader({ maxLine: 1 << 20 });
  for (const pad of [65535, 65534, 65533]) {
    meta.length = 0;
    const value = "x".repeat(pad - 3) + "😀" + "é";
    r.feed(`#k ${value}\n`, T);
    assert.deepEqual(meta, [["k", value]], String(pad));
  }
});

Deno.test("LineReader finds every name again after the table grew", () => {
  const { agg, r } = reader();
  const text = Array.from({ length: 20_000 }, (_, k) => `n${k}.Count ${k}`).join("\n") + "\n";
  r.feed(text, T);
  r.feed(text.toLowerCase(), T);
  r.feed(text.toUpperCase(), T);
  assert.equal(agg.counters, 20_000);
  const got = agg.take();
  assert.equal(got.length, 20_000);
  assert.ok(got.every((a, k) => a.name === `n${k}.count` && a.count === 3 && a.sum === 3 * k));
});

// ---------------------------------------------------------------------------
// Aggregator.

Deno.test("Aggregator.take hands over everything since the last take, then forgets it", () => {
  const agg = new Aggregator();
  assert.equal(agg.add("a", "gauge", T + 1, 1, 5, 25, 5, 5), true);
  assert.equal(agg.addValue("a", "gauge", T + 9, 3), true);
  assert.equal(agg.addValue("*not.checked", "event", T, 1), true, "add trusts its caller");
  assert.equal(agg.size, 2);
  assert.deepEqual(agg.take(), [
    { name: "a", kind: "gauge", time: T, count: 2, sum: 8, sumsq: 34, min: 3, max: 5 },
    { name: "*not.checked", kind: "event", time: T, count: 1, sum: 1, sumsq: 1, min: 1, max: 1 },
  ]);
  assert.equal(agg.size, 0);
  assert.deepEqual(agg.take(), []);
  assert.deepEqual(agg.takeLines(), []);
  agg.addValue("a", "gauge", T + 100, 7);
  assert.deepEqual(agg.take().map((a) => [a.name, a.time, a.count, a.sum]), [["a", T + 100, 1, 7]]);
});

Deno.test("Aggregator.totals are cumulative over takes, with the last value", () => {
  const agg = new Aggregator();
  agg.addValue("g", "gauge", T, 4);
  agg.addValue("e", "event", T, 1);
  agg.take();
  agg.addValue("g", "gauge", T + 50, 6);
  agg.add("e", "event", T + 50, 3, 9, 27, 3, 3);
  agg.add("g", "gauge", T + 60, 4, 10, 30, 1, 4);
  agg.take();
  assert.deepEqual([...agg.totals()], [
    { name: "g", kind: "gauge", count: 6, sum: 20, last: 2.5 },
    { name: "e", kind: "event", count: 4, sum: 10, last: 3 },
  ]);
  assert.equal(agg.counters, 2);
});

Deno.test("Aggregator keeps each bucket apart when time moves on and samples come late", () => {
  const agg = new Aggregator();
  for (const [dt, v] of [[0, 1], [10, 2], [3, 4], [-10, 8], [20, 16], [15, 32], [-30, 64]]) {
    agg.addValue("x", "gauge", T + dt!, v!);
  }
  assert.equal(agg.size, 5);
  const got = agg.take();
  assert.deepEqual(
    got.map((a) => [a.time - T, a.count, a.sum]).sort((a, b) => a[0]! - b[0]!),
    [[-30, 1, 64], [-10, 1, 8], [0, 2, 5], [10, 2, 34], [20, 1, 16]],
  );
  // Older buckets first; the open buckets (previous, then current) last.
  assert.deepEqual(got.slice(-2).map((a) => a.time - T), [10, 20]);
});

Deno.test("Aggregator matches a plain model on random samples over many buckets", () => {
  const random = prng(42);
  const agg = new Aggregator();
  for (let round = 0; round < 20; round++) {
    const model = new Map<string, Aggregate>();
    for (let k = 0; k < 3000; k++) {
      const name = `n${Math.floor(random() * 50)}`;
      const time = T + Math.floor(random() * 60) - 20 + round * 10;
      const count = 1 + Math.floor(random() * 3);
      const v = Math.floor(random() * 100) - 50;
      const [sum, sumsq, min, max] = [v * count, v * v * count, v - 1, v + 1];
      agg.add(name, "gauge", time, count, sum, sumsq, min, max);
      const key = `${name} ${Math.floor(time / 10) * 10}`;
      const m = model.get(key);
      if (m === undefined) {
        const t = Math.floor(time / 10) * 10;
        model.set(key, { name, kind: "gauge", time: t, count, sum, sumsq, min, max });
      } else {
        m.count += count;
        m.sum += sum;
        m.sumsq += sumsq;
        m.min = Math.min(m.min, min);
        m.max = Math.max(m.max, max);
      }
    }
    assert.equal(agg.size, model.size);
    const lines = round % 2 === 0;
    const got = lines ? agg.takeLines() : agg.take().map(formatForward);
    assert.deepEqual(got.sort(), [...model.values()].map(formatForward).sort());
  }
});

Deno.test("Aggregator refuses the other kind and names beyond maxCounters", () => {
  const agg = new Aggregator({ maxCounters: 2 });
  assert.equal(agg.addValue("a", "gauge", T, 1), true);
  assert.equal(agg.addValue("a", "event", T, 1), false);
  assert.equal(agg.addValue("b", "event", T, 1), true);
  assert.equal(agg.addValue("c", "event", T, 1), false);
  assert.equal(agg.addValue("b", "event", T, 1), true);
  assert.deepEqual(agg.refused, { kind: 1, tooMany: 1 });
  assert.equal(agg.counters, 2);
  assert.deepEqual(agg.takeLines(), [`a ${T} 1 1 1 1 1`, `*b ${T} 2`]);
});

Deno.test("Aggregator holds names of any characters given to add", () => {
  const agg = new Aggregator();
  agg.addValue("grüße.😀", "gauge", T, 1);
  agg.addValue("grüße.😀", "gauge", T, 2);
  agg.addValue("gruse", "gauge", T, 4);
  assert.equal(agg.counters, 2);
  assert.equal(agg.kindOf("grüße.😀"), "gauge");
  assert.deepEqual(agg.take().map((a) => [a.name, a.sum]), [["grüße.😀", 3], ["gruse", 4]]);
});

// ---------------------------------------------------------------------------
// Output.

Deno.test("formatForward prints istatd's forward lines, which parse back", () => {
  const g: Aggregate = {
    name: "web.ms",
    kind: "gauge",
    time: T,
    count: 3,
    sum: 0.30000000000000004,
    sumsq: 1e21,
    min: -1.5,
    max: 5e-7,
  };
  assert.equal(formatForward(g), `web.ms ${T} 0.30000000000000004 1e+21 -1.5 5e-7 3`);
  const e: Aggregate = { ...g, name: "web.hits", kind: "event", sum: 42 };
  assert.equal(formatForward(e), `*web.hits ${T} 42`);
  const p = parseLine(formatForward(g));
  assert.ok(p.kind === "sample");
  assert.deepEqual(p.samples[0], { ...g, time: T });
  const agg = new Aggregator();
  agg.add(g.name, g.kind, g.time, g.count, g.sum, g.sumsq, g.min, g.max);
  agg.add(e.name, e.kind, e.time, e.count, e.sum, e.sumsq, e.min, e.max);
  assert.deepEqual(agg.takeLines(), [formatForward(g), formatForward(e)]);
});

Deno.test("prometheusName makes a valid metric name", () => {
  assert.equal(prometheusName("coldpack.backup.files_archived"), "coldpack_backup_files_archived");
  assert.equal(prometheusName("a-b.c:d/é"), "a_b_c_d__");
  assert.equal(prometheusName("9lives"), "_9lives");
  assert.equal(prometheusName(""), "_");
  assert.equal(prometheusName("Already_OK_1"), "Already_OK_1");
});

Deno.test("renderPrometheus writes HELP and TYPE once per name and escapes labels", () => {
  const text = renderPrometheus([
    {
      name: "coldpack.agent.lines",
      help: "Lines read",
      type: "counter",
      value: 7,
      labels: { proto: "udp" },
    },
    { name: "coldpack.agent.up", type: "gauge", value: 1 },
    { name: "coldpack.agent.lines", type: "counter", value: 9, labels: { proto: "tcp" } },
    {
      name: "odd",
      help: 'back\\slash "and"\nnewline',
      type: "gauge",
      value: Infinity,
      labels: { "bad-label": 'a\\b"c\nd', ok: "" },
    },
    { name: "odd", type: "counter", value: -Infinity },
    { name: "nan", type: "gauge", value: NaN, labels: {} },
  ]);
  assert.equal(
    text,
    [
      "# HELP coldpack_agent_lines Lines read",
      "# TYPE coldpack_agent_lines counter",
      'coldpack_agent_lines{proto="udp"} 7',
      'coldpack_agent_lines{proto="tcp"} 9',
      "# TYPE coldpack_agent_up gauge",
      "coldpack_agent_up 1",
      '# HELP odd back\\\\slash "and"\\nnewline',
      "# TYPE odd gauge",
      'odd{bad_label="a\\\\b\\"c\\nd",ok=""} +Inf',
      "odd -Inf",
      "# TYPE nan gauge",
      "nan NaN",
      "",
    ].join("\n"),
  );
  assert.equal(renderPrometheus([]), "");
});

Deno.test("totalsAsPrometheus shows events as counters and gauges as their last value", () => {
  const agg = new Aggregator();
  const r = new LineReader(agg);
  r.feed("*coldpack.web.hits 2\n*coldpack.web.hits 3\ncoldpack.web.ms 10\ncoldpack.web.ms 4\n", T);
  assert.equal(
    renderPrometheus(totalsAsPrometheus(agg.totals())),
    "# TYPE coldpack_web_hits counter\ncoldpack_web_hits 5\n" +
      "# TYPE coldpack_web_ms gauge\ncoldpack_web_ms 4\n",
  );
});
