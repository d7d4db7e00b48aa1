/**
 * Throughput and memory of core/istatd.ts alone (no sockets): how many lines
 * per second `LineReader` (with the `Aggregator` behind it) reads, against a
 * same-run baseline of a plain `text.split("\n")` over the same text, and how
 * much memory 100,000 distinct counters hold.
 *
 * ```sh
 * deno run --v8-flags=--expose-gc scripts/bench_istatd_core.ts [--mb 10] [--rounds 9]
 * ```
 *
 * The text is a mix: 45% `name value`, 20% `*name 1`, 15% `name time value`,
 * 10% `name time sum sumsq min max count`, 5% `*name^a^b 1` fan-out, 4% upper-case
 * names, 1% malformed, with sample times over the last 15 s (two buckets),
 * over 1,000 and 100,000 distinct names picked at random (the latter is the
 * worst case for the CPU caches: no name is hot).
 * It is read as TCP would hand it over (64 KiB chunks cut anywhere, one
 * reader) and as UDP datagrams (<= 1,400 bytes of whole lines, `end()` after
 * each), both as bytes (`feedBytes`, what the agent gets from a socket) and
 * as decoded text (`feed`); `take()` runs after every pass, as the flush
 * would. Figures are the median (and best) of the rounds; the baseline runs
 * interleaved with them so that a busy machine slows both alike.
 *
 * Memory is measured first, on a fresh heap.
 * @module
 */

import { parseArgs } from "node:util";
import { Aggregator, LineReader } from "../core/istatd.ts";
import { prng } from "../core/prng.ts";

const args = parseArgs({
  args: Deno.args,
  options: { mb: { type: "string", default: "10" }, rounds: { type: "string", default: "9" } },
});
const MB = Number(args.values.mb);
const ROUNDS = Number(args.values.rounds);
const NOW = 1_700_000_007;

function makeText(distinct: number, bytes: number): { text: string; lines: number } {
  const random = prng(distinct);
  const parts: string[] = [];
  let size = 0;
  let lines = 0;
  // Name families sized so that the names number `distinct` in all: gauges
  // 70%, events 20%, fan-out prefixes 5% (two names each).
  const pick = (share: number) => Math.floor(random() * distinct * share);
  while (size < bytes) {
    const r = random();
    const t = NOW - Math.floor(random() * 15);
    let line: string;
    if (r < 0.45) line = `coldpack.bench.g${pick(0.7)} ${Math.floor(random() * 1000) / 10}`;
    else if (r < 0.65) line = `*coldpack.bench.e${pick(0.2)} 1`;
    else if (r < 0.80) line = `coldpack.bench.g${pick(0.7)} ${t} ${Math.floor(random() * 5000)}`;
    else if (r < 0.90) line = `coldpack.bench.g${pick(0.7)} ${t} 30 350 5 15 3`;
    else if (r < 0.95) line = `*coldpack.bench.f${pick(0.05)}^a^b 1`;
    else if (r < 0.99) line = `Coldpack.Bench.G${pick(0.7)} 2.5`;
    else line = `coldpack.bench.bad%${pick(1)} x`;
    parts.push(line);
    size += line.length + 1;
    lines++;
  }
  return { text: parts.join("\n") + "\n", lines };
}

/** Byte chunks cut anywhere, as a TCP socket hands them over. */
function chunks(bytes: Uint8Array, size: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.length; at += size) out.push(bytes.slice(at, at + size));
  return out;
}

/** Datagrams of whole lines, at most `max` bytes each (ASCII text). */
function datagrams(bytes: Uint8Array, max: number): Uint8Array[] {
  const out: Uint8Array[] = [];
  let start = 0;
  while (start < bytes.length) {
    let end = bytes.lastIndexOf(10, start + max - 1) + 1;
    if (end <= start) end = bytes.indexOf(10, start) + 1;
    out.push(bytes.slice(start, end));
    start = end;
  }
  return out;
}

/** Flat strings, as a TextDecoder hands them over. */
function decoded(pieces: Uint8Array[]): string[] {
  const decoder = new TextDecoder();
  return pieces.map((p) => decoder.decode(p, { stream: true }));
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function fmt(r: { median: number; best: number }): string {
  return `${(r.median / 1e6).toFixed(2)} M lines/s (best ${(r.best / 1e6).toFixed(2)})`;
}

let sink = 0;

// Memory first, on a fresh heap: 100,000 distinct counters.
const gc = (globalThis as { gc?: () => void }).gc;
if (gc === undefined) console.log("memory: run with --v8-flags=--expose-gc for heap figures");
/** JS heap plus ArrayBuffer memory (the aggregator's typed arrays live outside the heap). */
function heap(): number {
  gc?.();
  gc?.();
  const m = Deno.memoryUsage();
  return m.heapUsed + m.external;
}
{
  const N = 100_000;
  const mb = (b: number) => `${(b / 1024 / 1024).toFixed(1)} MB`;
  const rssBefore = Deno.memoryUsage().rss;
  const before = heap();
  const agg = new Aggregator();
  const reader = new LineReader(agg);
  let text = "";
  for (let k = 0; k < N; k++) {
    text += `coldpack.agent.host${k % 50}.disk${k}.bytes_used ${NOW - 5} ${k * 1.5}\n`;
    if (text.length > 60_000) {
      reader.feed(text, NOW);
      text = "";
    }
  }
  reader.feed(text, NOW);
  text = "";
  const open = heap();
  // At a bucket boundary every name holds two buckets until the flush.
  for (const t of agg.totals()) agg.addValue(t.name, t.kind, NOW + 10, 1);
  const twoBuckets = heap();
  const taken = agg.take();
  const duringTake = heap();
  sink += taken.length;
  taken.length = 0;
  const totalsOnly = heap();
  for (const t of agg.totals()) agg.addValue(t.name, t.kind, NOW + 10, 1);
  for (const t of agg.totals()) agg.addValue(t.name, t.kind, NOW + 20, 1);
  const lines = agg.takeLines();
  const duringTakeLines = heap();
  sink += lines.length;
  lines.length = 0;
  console.log(`memory, ${agg.counters} distinct counters (names ~40 characters):`);
  console.log(
    `  heap + external growth, one open bucket each + totals          ${mb(open - before)}`,
  );
  console.log(
    `  heap + external growth, two buckets each (at a bucket boundary) ${mb(twoBuckets - before)}`,
  );
  console.log(
    `  heap + external growth, while take()'s 200,000 aggregates live  ${mb(duringTake - before)}`,
  );
  console.log(
    `  heap + external growth, totals only after take()                ${mb(totalsOnly - before)}`,
  );
  console.log(
    `  heap + external growth, while takeLines()'s 200,000 lines live ${
      mb(duringTakeLines - before)
    }`,
  );
  console.log(`  process RSS ${mb(Deno.memoryUsage().rss)} (${mb(rssBefore)} before the counters)`);
}

for (const distinct of [1_000, 100_000]) {
  const { text, lines } = makeText(distinct, MB * 1024 * 1024);
  const bytes = new TextEncoder().encode(text);
  const tcp = chunks(bytes, 64 * 1024);
  const udp = datagrams(bytes, 1400);
  const tcpText = decoded(tcp);
  const udpText = decoded(udp);
  const agg = new Aggregator();
  const reader = new LineReader(agg);
  // Warm up: every name seen once, the JIT warm.
  for (const c of tcp) reader.feedBytes(c, NOW);
  agg.take();

  const runs: [string, () => void][] = [
    ['baseline text.split("\\n")     ', () => {
      sink += text.split("\n").length;
    }],
    ["feedBytes, TCP 64 KiB chunks   ", () => {
      for (const c of tcp) reader.feedBytes(c, NOW);
      sink += agg.take().length;
    }],
    ["feedBytes + end, UDP datagrams ", () => {
      for (const d of udp) {
        reader.feedBytes(d, NOW);
        reader.end(NOW);
      }
      sink += agg.take().length;
    }],
    ["feed (text), TCP 64 KiB chunks ", () => {
      for (const c of tcpText) reader.feed(c, NOW);
      sink += agg.take().length;
    }],
    ["feed + end (text), UDP datagrams", () => {
      for (const d of udpText) {
        reader.feed(d, NOW);
        reader.end(NOW);
      }
      sink += agg.take().length;
    }],
  ];
  const rates = new Map<string, number[]>();
  for (let r = 0; r < ROUNDS; r++) {
    for (const [name, run] of runs) {
      const t0 = performance.now();
      run();
      const perSecond = lines / ((performance.now() - t0) / 1000);
      rates.set(name, [...(rates.get(name) ?? []), perSecond]);
    }
  }
  console.log(
    `${agg.counters} names, ${MB} MB, ${lines} lines ` +
      `(${(text.length / lines).toFixed(1)} B/line), ${udp.length} datagrams, ${ROUNDS} rounds`,
  );
  const baseline = median(rates.get(runs[0]![0])!);
  for (const [name] of runs) {
    const all = rates.get(name)!;
    const m = median(all);
    const ratio = name === runs[0]![0] ? "" : `  ratio to baseline ${(m / baseline).toFixed(2)}`;
    console.log(`  ${name} ${fmt({ median: m, best: Math.max(...all) })}${ratio}`);
  }
  const s = reader.stats;
  console.log(`  (reader: lines ${s.lines}, samples ${s.samples}, malformed ${s.malformed})`);
}
if (sink === -1) console.log(sink);
