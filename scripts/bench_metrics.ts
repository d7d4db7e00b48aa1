/**
 * Issue 6's metrics agent benchmarks, against the `statsd` npm daemon
 * (0.9.0, run with node) measured in the same run on the same machine
 * (these machines are shared and noisy; only the ratios compare):
 *
 * 1. Ingest over UDP and over TCP: a sender process sends for `--seconds`
 *    (default 5), as fast as it can, `--lines` lines (default 1,000,000)
 *    round and round: UDP with as many whole lines per datagram as fit in
 *    1,400 bytes (as clients batch), TCP over `--conns` connections (default
 *    4) in 64 KiB writes. lines/s = lines the receiver counted / seconds from
 *    the first send to its last count (polled every 20 ms: the agent's
 *    `coldpack_metrics_agent_lines_received_total{proto=...}` on /metrics,
 *    statsd's `statsd.metrics_received` through its management port). Over
 *    TCP every line arrives, so the clock stops when all are counted; over
 *    UDP a receiver slower than the sender drops datagrams in the kernel, so
 *    the clock stops at its last count once the counter has not moved for
 *    1.5 s, and the share lost is shown. Each receiver first gets a 1 s
 *    warm-up (not counted); then `--rounds` (default 1) of UDP and TCP, one
 *    receiver at a time, the best of each shown. Targets: >= 300,000 lines/s
 *    and >= 2 x statsd.
 * 2. RSS of a fresh agent after it received 100,000 distinct counters (half
 *    events, half gauges, each sent twice, over TCP): after ingest, after
 *    its next flush, after one scrape of /metrics, and its peak (VmHWM).
 *    Target <= 200 MB. statsd's RSS after the same counters, for comparison.
 *
 * The same load in both formats: line i names counter i mod 2K of 2K
 * (`--names` K), alternately an event and a gauge: the agent gets
 * `*bench.c7.hits 1` and `bench.c7.latency 0.123`, statsd the equivalent
 * `bench.c7.hits:1|c` and `bench.c7.latency:0.123|ms` (a statsd timer keeps
 * what an istatd gauge keeps: count, sum, sum of squares, min, max). The
 * average line sizes are printed. Both flush every 10 s: the agent to a test
 * istatd master (tests/doubles/istatd.ts, its own process) through its disk
 * spool, statsd to a backend that only counts (it reports the cumulative
 * `statsd.metrics_received` in the management `stats` answer).
 *
 * statsd is installed at bench time with `npm install statsd@0.9.0 --prefix
 * DIR` (default /tmp/statsd-bench, kept between runs) and run as
 * `node DIR/node_modules/statsd/bin/statsd CONFIG.js` (UDP and TCP servers,
 * management port). Without node/npm, or with `--no-statsd`, only the agent
 * is measured. The agent runs as `deno run -A V8_FLAGS cmd/metrics_agent.ts
 * --port P --bind 127.0.0.1 --forward 127.0.0.1:M --spool DIR --spool-max
 * 256MiB --metrics-port H --flush 10s`, V8_FLAGS those of every coldpack
 * program (scripts/runtime_flags.ts; `--agent-v8-flags ""` for none).
 *
 * Usage: deno run -A scripts/bench_metrics.ts [--quick] [--seconds S] [--lines N]
 *        [--names K] [--conns C] [--rounds R] [--rss-counters N] [--no-statsd]
 *        [--no-agent] [--statsd-dir DIR] [--agent-v8-flags FLAGS] [--keep]
 *   --quick: 1 s runs of 100,000 lines, 10,000 distinct counters for the RSS figure
 *   (a smoke run; its figures are too short to quote).
 * @module
 */

import { Buffer } from "node:buffer";
import { createSocket } from "node:dgram";
import { parseArgs } from "node:util";
import { V8_FLAGS } from "./runtime_flags.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const HOST = "127.0.0.1";
const DATAGRAM_BYTES = 1400;
const TCP_WRITE_BYTES = 64 * 1024;
const POLL_MS = 20;
const UDP_IDLE_MS = 1500;
const STATSD_VERSION = "0.9.0";
const FLUSH_SECONDS = 10;
const utf8 = new TextEncoder();
const text = new TextDecoder();

type Proto = "udp" | "tcp";
type Format = "istatd" | "statsd";

/** What the sender process is told to send (passed as JSON after `--sender`). */
interface SenderJob {
  readonly proto: Proto;
  readonly format: Format;
  readonly port: number;
  readonly lines: number;
  /** `load`: 2K counters, cycled; `distinct`: counter i mod `names` (RSS phase). */
  readonly mode: "load" | "distinct";
  readonly names: number;
  readonly conns: number;
  /** How long to send the payload round and round (the lines sent are counted); 0: once. */
  readonly seconds: number;
}

// ---------------------------------------------------------------- the load

/** Line `i` of a job, LF-terminated. */
function line(job: Pick<SenderJob, "format" | "mode" | "names">, i: number): string {
  if (job.mode === "distinct") {
    const c = i % job.names;
    const event = c % 2 === 0;
    if (job.format === "istatd") {
      return event ? `*bench.rss.c${c} 1\n` : `bench.rss.c${c} ${(i % 997) / 1000}\n`;
    }
    return event ? `bench.rss.c${c}:1|c\n` : `bench.rss.c${c}:${(i % 997) / 1000}|ms\n`;
  }
  const j = i % (2 * job.names);
  const n = j >> 1;
  if (j % 2 === 0) {
    return job.format === "istatd" ? `*bench.c${n}.hits 1\n` : `bench.c${n}.hits:1|c\n`;
  }
  const v = ((i * 7919) % 1000) / 1000;
  return job.format === "istatd" ? `bench.c${n}.latency ${v}\n` : `bench.c${n}.latency:${v}|ms\n`;
}

/** Whole lines of a job, at most `max` bytes each, and how many lines each holds. */
interface Chunk {
  readonly bytes: Buffer;
  readonly lines: number;
}

/** Cuts the job's lines `lines` into chunks of whole lines of at most `max` bytes. */
function pack(job: SenderJob, lines: Iterable<number>, max: number): Chunk[] {
  const out: Chunk[] = [];
  let parts: string[] = [];
  let size = 0;
  for (const i of lines) {
    const l = line(job, i);
    if (size + l.length > max && size > 0) {
      out.push({ bytes: Buffer.from(parts.join(""), "latin1"), lines: parts.length });
      parts = [];
      size = 0;
    }
    parts.push(l);
    size += l.length;
  }
  if (size > 0) out.push({ bytes: Buffer.from(parts.join(""), "latin1"), lines: parts.length });
  return out;
}

function* range(from: number, to: number, step = 1): Iterable<number> {
  for (let i = from; i < to; i += step) yield i;
}

/** Average bytes per line of the first 10,000 lines of a job in a format. */
function averageLine(job: Omit<SenderJob, "format">, format: Format): number {
  let bytes = 0;
  const n = Math.min(job.lines, 10_000);
  for (let i = 0; i < n; i++) bytes += line({ ...job, format }, i).length;
  return bytes / n;
}

/** Sends the datagrams round and round for `seconds` (0: once); returns the lines sent. */
async function sendUdp(datagrams: Chunk[], port: number, seconds: number): Promise<number> {
  const socket = createSocket("udp4");
  const WINDOW = 64;
  const end = performance.now() + seconds * 1000;
  let next = 0;
  let inFlight = 0;
  let sent = 0;
  let stopping = datagrams.length === 0;
  try {
    await new Promise<void>((resolve, reject) => {
      const pump = () => {
        while (inFlight < WINDOW && !stopping) {
          const d = datagrams[next]!;
          next = (next + 1) % datagrams.length;
          if (seconds === 0 ? next === 0 : next % 32 === 0 && performance.now() >= end) {
            stopping = true;
          }
          inFlight++;
          socket.send(d.bytes, port, HOST, (err) => {
            inFlight--;
            // A full socket buffer (ENOBUFS) loses that datagram, as it would for a real client.
            if (err && !/ENOBUFS|EAGAIN/.test(String(err))) reject(err);
            else {
              if (!err) sent += d.lines;
              if (stopping && inFlight === 0) resolve();
              else pump();
            }
          });
        }
      };
      if (stopping) resolve();
      else pump();
    });
  } finally {
    await new Promise<void>((resolve) => socket.close(() => resolve()));
  }
  return sent;
}

/**
 * Sends each connection's chunks over its own connection, round and round for
 * `seconds` (0: once), then half-closes; returns the lines sent.
 */
async function sendTcp(chunks: Chunk[][], port: number, seconds: number): Promise<number> {
  const end = performance.now() + seconds * 1000;
  let sent = 0;
  await Promise.all(chunks.map(async (mine) => {
    const conn = await Deno.connect({ hostname: HOST, port });
    try {
      for (let i = 0; i < mine.length;) {
        const { bytes, lines } = mine[i]!;
        for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
        sent += lines;
        if (++i === mine.length && seconds > 0) i = 0;
        if (seconds > 0 && performance.now() >= end) break;
      }
      await conn.closeWrite();
    } finally {
      conn.close();
    }
  }));
  return sent;
}

/**
 * The sender process: builds its payload, prints `{"ready":true}`, and on
 * the line `go` on stdin sends it (round and round for `seconds`, or once),
 * then prints `{"seconds":...,"sent":LINES}` and exits.
 */
async function sender(job: SenderJob): Promise<void> {
  const udp = job.proto === "udp" ? pack(job, range(0, job.lines), DATAGRAM_BYTES) : [];
  const conns = Math.max(1, job.conns);
  const tcp = job.proto === "tcp"
    ? Array.from(
      { length: conns },
      (_, k) => pack(job, range(k, job.lines, conns), TCP_WRITE_BYTES),
    )
    : [];
  console.log(JSON.stringify({ ready: true }));
  const reader = Deno.stdin.readable.pipeThrough(new TextDecoderStream()).getReader();
  let got = "";
  while (!got.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) return;
    got += value;
  }
  const t0 = performance.now();
  const sent = job.proto === "udp"
    ? await sendUdp(udp, job.port, job.seconds)
    : await sendTcp(tcp, job.port, job.seconds);
  console.log(JSON.stringify({ seconds: (performance.now() - t0) / 1000, sent }));
  reader.releaseLock();
}

/** A sender process with its payload built, waiting for `go()`. */
interface ReadySender {
  /** Starts sending; resolves when it is done with the seconds it took and the lines it sent. */
  go(): Promise<{ seconds: number; sent: number }>;
}

async function startSender(job: SenderJob): Promise<ReadySender> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "-A", import.meta.filename!, "--sender", JSON.stringify(job)],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const nextLine = async (): Promise<string> => {
    while (!buf.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) {
        throw new Error(`the ${job.proto} sender exited early (${(await child.status).code})`);
      }
      buf += value;
    }
    const l = buf.slice(0, buf.indexOf("\n"));
    buf = buf.slice(buf.indexOf("\n") + 1);
    return l;
  };
  await nextLine();
  return {
    go: async () => {
      const w = child.stdin.getWriter();
      await w.write(utf8.encode("go\n"));
      const done = JSON.parse(await nextLine()) as { seconds: number; sent: number };
      await w.close();
      lines.releaseLock();
      await child.stdout.cancel().catch(() => {});
      const status = await child.status;
      if (!status.success) throw new Error(`the ${job.proto} sender failed (${status.code})`);
      return done;
    },
  };
}

// ---------------------------------------------------------------- processes

async function freePort(): Promise<number> {
  for (;;) {
    const l = Deno.listen({ hostname: HOST, port: 0 });
    const port = (l.addr as Deno.NetAddr).port;
    l.close();
    const udp = createSocket("udp4");
    const free = await new Promise<boolean>((resolve) => {
      udp.once("error", () => resolve(false));
      udp.bind(port, HOST, () => resolve(true));
    });
    await new Promise<void>((resolve) => udp.close(() => resolve()));
    if (free) return port;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function rssOf(pid: number): Promise<{ rssMb: number; peakMb: number }> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = (key: string) => Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(status)?.[1]);
  return { rssMb: kb("VmRSS") / 1024, peakMb: kb("VmHWM") / 1024 };
}

async function stopChild(child: Deno.ChildProcess, name: string): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch {
    return; // already gone
  }
  const timer = setTimeout(() => {
    console.error(`bench: ${name} did not stop within 20 s of SIGTERM: killing it`);
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, 20_000);
  await child.status;
  clearTimeout(timer);
}

/** The test istatd master in its own process. */
interface Master {
  readonly port: number;
  /** Stops it; returns what it received (tests/doubles/istatd.ts IstatdSummary). */
  close(): Promise<Record<string, number>>;
}

async function startMaster(): Promise<Master> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--quiet", "-A", `${ROOT}/tests/doubles/istatd.ts`, "--port", "0"],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const readLine = async (): Promise<string> => {
    while (!out.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) throw new Error("the istatd double exited before printing its line");
      out += value;
    }
    const l = out.slice(0, out.indexOf("\n"));
    out = out.slice(out.indexOf("\n") + 1);
    return l;
  };
  const { port } = JSON.parse(await readLine()) as { port: number };
  return {
    port,
    close: async () => {
      await child.stdin.close();
      const summary = JSON.parse(await readLine()) as Record<string, number>;
      reader.releaseLock();
      await child.stdout.cancel().catch(() => {});
      await child.status;
      return summary;
    },
  };
}

/** A receiver under test: its counter of lines received, per protocol. */
interface Receiver {
  readonly name: string;
  readonly port: number;
  readonly pid: number;
  /** Lines received so far over `proto` (cumulative). */
  received(proto: Proto): Promise<number>;
  /** Lines it found malformed so far (cumulative, both protocols). */
  malformed(): Promise<number>;
  /** Reads its /metrics once; the bytes of text. Null: it has none. */
  readonly scrape: (() => Promise<number>) | null;
  stop(): Promise<void>;
}

interface AgentOptions {
  readonly work: string;
  readonly masterPort: number;
  readonly v8Flags: string;
}

async function startAgent(opts: AgentOptions): Promise<Receiver> {
  const port = await freePort();
  const metricsPort = await freePort();
  const spool = await Deno.makeTempDir({ dir: opts.work, prefix: "spool_" });
  const args = [
    "run",
    "--quiet",
    "-A",
    ...(opts.v8Flags === "" ? [] : [opts.v8Flags]),
    `${ROOT}/cmd/metrics_agent.ts`,
    ...["--port", String(port), "--bind", HOST, "--forward", `${HOST}:${opts.masterPort}`],
    ...["--spool", spool, "--spool-max", "256MiB", "--metrics-port", String(metricsPort)],
    ...["--flush", `${FLUSH_SECONDS}s`],
  ];
  const child = new Deno.Command(Deno.execPath(), { args, stdin: "null", stderr: "inherit" })
    .spawn();
  let exited = false;
  child.status.then(() => exited = true);
  const metrics = async (): Promise<string> => {
    const res = await fetch(`http://${HOST}:${metricsPort}/metrics`);
    const body = await res.text();
    if (!res.ok) throw new Error(`the agent's /metrics answered ${res.status}: ${body}`);
    return body;
  };
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (exited) throw new Error(`the agent exited at start (${(await child.status).code})`);
    try {
      const res = await fetch(`http://${HOST}:${metricsPort}/health`);
      await res.body?.cancel();
      if (res.ok) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) {
      await stopChild(child, "the agent");
      throw new Error(`the agent's /health on port ${metricsPort} did not answer within 30 s`);
    }
    await sleep(100);
  }
  const sample = (body: string, re: RegExp): number => {
    let total = 0;
    for (const m of body.matchAll(re)) total += Number(m[1]);
    return total;
  };
  return {
    name: "agent",
    port,
    pid: child.pid,
    received: async (proto) =>
      sample(
        await metrics(),
        new RegExp(
          `^coldpack_metrics_agent_lines_received_total\\{[^}]*proto="${proto}"[^}]*\\} (\\S+)$`,
          "gm",
        ),
      ),
    malformed: async () =>
      sample(
        await metrics(),
        /^coldpack_metrics_agent_lines_malformed_total(?:\{[^}]*\})? (\S+)$/gm,
      ),
    scrape: async () => (await metrics()).length,
    stop: async () => {
      await stopChild(child, "the agent");
      await Deno.remove(spool, { recursive: true }).catch(() => {});
    },
  };
}

/** The statsd backend: counts nothing itself, reports the cumulative `metrics_received`. */
const STATSD_BACKEND =
  `// coldpack bench: a blackhole backend that keeps statsd's own counter cumulative.
let flushed = 0;
let counters = null;
let flushes = 0;
exports.init = function (startupTime, config, events) {
  const key = (config.prefixStats === undefined ? "statsd" : config.prefixStats) +
    ".metrics_received";
  events.on("flush", function (ts, metrics) {
    counters = metrics.counters; // the live object; statsd zeroes its counters after the flush
    flushed += counters[key] || 0;
    flushes++;
  });
  events.on("status", function (write) {
    write(null, "bench", "flushes", flushes);
    if (counters !== null) write(null, "bench", "metrics_received", flushed + (counters[key] || 0));
  });
  return true;
};
`;

async function run(cmd: string, args: string[]): Promise<{ ok: boolean; out: string }> {
  try {
    const o = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    return { ok: o.success, out: text.decode(o.stdout) + text.decode(o.stderr) };
  } catch (e) {
    return { ok: false, out: String(e) };
  }
}

/** Installs statsd into `dir` unless it is there; returns its entry point or why not. */
async function installStatsd(dir: string): Promise<{ bin: string } | { why: string }> {
  const pkg = `${dir}/node_modules/statsd/package.json`;
  try {
    if (JSON.parse(await Deno.readTextFile(pkg)).version === STATSD_VERSION) {
      return { bin: `${dir}/node_modules/statsd/bin/statsd` };
    }
  } catch { /* not installed */ }
  if (!(await run("node", ["--version"])).ok) return { why: "node is not installed" };
  console.error(`bench: npm install statsd@${STATSD_VERSION} --prefix ${dir} ...`);
  const npm = await run("npm", [
    "install",
    `statsd@${STATSD_VERSION}`,
    "--prefix",
    dir,
    "--no-audit",
    "--no-fund",
  ]);
  if (!npm.ok) return { why: `npm install failed: ${npm.out.slice(-500)}` };
  return { bin: `${dir}/node_modules/statsd/bin/statsd` };
}

async function mgmt(port: number, command: string): Promise<string> {
  const conn = await Deno.connect({ hostname: HOST, port });
  try {
    await conn.write(utf8.encode(`${command}\n`));
    let out = "";
    const buf = new Uint8Array(65536);
    while (!out.includes("END\n\n")) {
      const n = await conn.read(buf);
      if (n === null) break;
      out += text.decode(buf.subarray(0, n));
    }
    return out;
  } finally {
    conn.close();
  }
}

function statOf(stats: string, key: string): number | null {
  const m = new RegExp(`^${key.replaceAll(".", "\\.")}: (\\S+)$`, "m").exec(stats);
  return m === null ? null : Number(m[1]);
}

async function startStatsd(bin: string, work: string): Promise<Receiver> {
  const port = await freePort();
  const mgmtPort = await freePort();
  const dir = await Deno.makeTempDir({ dir: work, prefix: "statsd_" });
  await Deno.writeTextFile(`${dir}/backend.js`, STATSD_BACKEND);
  const config = {
    mgmt_address: HOST,
    mgmt_port: mgmtPort,
    servers: [
      { server: "./servers/udp", address: HOST, port },
      { server: "./servers/tcp", address: HOST, port },
    ],
    backends: [`${dir}/backend.js`],
    flushInterval: FLUSH_SECONDS * 1000,
  };
  await Deno.writeTextFile(`${dir}/config.js`, `(${JSON.stringify(config, null, 2)})\n`);
  const child = new Deno.Command("node", {
    args: [bin, `${dir}/config.js`],
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  let exited = false;
  child.status.then(() => exited = true);
  // Its cumulative counter exists from its first flush on (at most 10 s after start).
  const deadline = Date.now() + (FLUSH_SECONDS + 20) * 1000;
  for (;;) {
    if (exited) throw new Error(`statsd exited at start (${(await child.status).code})`);
    try {
      if ((statOf(await mgmt(mgmtPort, "stats"), "bench.flushes") ?? 0) >= 1) break;
    } catch { /* not up yet */ }
    if (Date.now() > deadline) {
      await stopChild(child, "statsd");
      throw new Error(`statsd did not flush within ${FLUSH_SECONDS + 20} s`);
    }
    await sleep(200);
  }
  const received = async () => {
    const n = statOf(await mgmt(mgmtPort, "stats"), "bench.metrics_received");
    if (n === null) throw new Error("statsd's stats answer has no bench.metrics_received");
    return n;
  };
  return {
    name: "statsd",
    port,
    pid: child.pid,
    // statsd counts both protocols in one counter; the runs are one at a time.
    received,
    malformed: async () => statOf(await mgmt(mgmtPort, "stats"), "messages.bad_lines_seen") ?? 0,
    scrape: null,
    stop: async () => {
      await stopChild(child, "statsd");
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

// ---------------------------------------------------------------- measuring

interface Measured {
  readonly receiver: string;
  readonly proto: Proto;
  readonly sent: number;
  readonly counted: number;
  readonly malformed: number;
  readonly seconds: number;
  readonly senderSeconds: number;
  readonly linesPerSecond: number;
  /** The longest the receiver took to answer a poll of its counter, ms. */
  readonly slowestAnswerMs: number;
}

/**
 * Sends `job` to `r` and polls its counter: seconds from the first send to
 * the count of every line (TCP) or to its last change (UDP, after 1.5 s idle).
 */
async function measure(r: Receiver, job: SenderJob, pollMs = POLL_MS): Promise<Measured> {
  const base = await r.received(job.proto);
  const badBase = await r.malformed();
  const s = await startSender(job);
  const t0 = performance.now();
  let senderSeconds = NaN;
  let senderDone = false;
  // Known once the sender is done.
  let sent = Infinity;
  const sending = s.go().then((done) => {
    senderSeconds = done.seconds;
    sent = done.sent;
    senderDone = true;
  });
  let counted = 0;
  let lastChange = t0;
  let slowestAnswer = 0;
  const maxIdle = job.proto === "udp" ? UDP_IDLE_MS : 60_000;
  for (;;) {
    await sleep(pollMs);
    const asked = performance.now();
    const n = (await r.received(job.proto)) - base;
    // The count is from some moment before its answer arrived: the answer's time bounds it.
    const now = performance.now();
    slowestAnswer = Math.max(slowestAnswer, now - asked);
    if (n !== counted) {
      counted = n;
      lastChange = now;
    }
    if (counted >= sent) break;
    if (senderDone && now - lastChange > maxIdle) {
      if (job.proto === "tcp") {
        throw new Error(`${r.name} counted ${counted} of ${sent} TCP lines and stopped counting`);
      }
      break;
    }
  }
  await sending;
  const seconds = (lastChange - t0) / 1000;
  return {
    receiver: r.name,
    proto: job.proto,
    sent,
    counted,
    malformed: (await r.malformed()) - badBase,
    seconds,
    senderSeconds,
    linesPerSecond: counted / seconds,
    slowestAnswerMs: slowestAnswer,
  };
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString("en-US", {
    maximumFractionDigits: digits,
    minimumFractionDigits: digits,
  });
}

function report(m: Measured): string {
  const lost = m.sent - m.counted;
  return `  ${m.proto.toUpperCase()} ${m.receiver.padEnd(6)} ${
    fmt(m.linesPerSecond).padStart(11)
  } lines/s` +
    `  (${fmt(m.counted)} of ${fmt(m.sent)} lines in ${fmt(m.seconds, 2)} s` +
    `${lost > 0 ? `, ${fmt((100 * lost) / m.sent, 1)} % lost` : ""}` +
    `${m.malformed > 0 ? `, ${fmt(m.malformed)} MALFORMED` : ""}` +
    `; the sender wrote them in ${fmt(m.senderSeconds, 2)} s; ` +
    `its counter answered within ${fmt(m.slowestAnswerMs)} ms)`;
}

interface RssFigures {
  afterIngestMb: number;
  afterFlushMb: number;
  afterScrapeMb: number | null;
  peakMb: number;
}

/** Sends `counters` distinct counters (each twice, over TCP) and reads the receiver's RSS. */
async function rssRun(
  r: Receiver,
  format: Format,
  counters: number,
  conns: number,
): Promise<RssFigures> {
  const job: SenderJob = {
    proto: "tcp",
    format,
    port: r.port,
    lines: 2 * counters,
    mode: "distinct",
    names: counters,
    conns,
    seconds: 0,
  };
  await measure(r, job, 500);
  const afterIngest = await rssOf(r.pid);
  await sleep((FLUSH_SECONDS + 2) * 1000);
  const afterFlush = await rssOf(r.pid);
  let afterScrape: number | null = null;
  if (r.scrape !== null) {
    const bytes = await r.scrape();
    afterScrape = (await rssOf(r.pid)).rssMb;
    console.error(`bench: /metrics of the agent: ${fmt(bytes / 1e6, 1)} MB of text`);
  }
  const peak = await rssOf(r.pid);
  return {
    afterIngestMb: afterIngest.rssMb,
    afterFlushMb: afterFlush.rssMb,
    afterScrapeMb: afterScrape,
    peakMb: peak.peakMb,
  };
}

// ---------------------------------------------------------------- main

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      sender: { type: "string" },
      quick: { type: "boolean", default: false },
      lines: { type: "string" },
      names: { type: "string", default: "1000" },
      conns: { type: "string", default: "4" },
      rounds: { type: "string", default: "1" },
      "rss-counters": { type: "string" },
      seconds: { type: "string" },
      "no-statsd": { type: "boolean", default: false },
      "no-agent": { type: "boolean", default: false },
      "statsd-dir": { type: "string", default: "/tmp/statsd-bench" },
      "agent-v8-flags": { type: "string", default: V8_FLAGS },
      keep: { type: "boolean", default: false },
    },
  });
  if (values.sender !== undefined) {
    await sender(JSON.parse(values.sender) as SenderJob);
    return;
  }
  const lines = Number(values.lines ?? (values.quick ? 100_000 : 1_000_000));
  const seconds = Number(values.seconds ?? (values.quick ? 1 : 5));
  const rssCounters = Number(values["rss-counters"] ?? (values.quick ? 10_000 : 100_000));
  const names = Number(values.names);
  const conns = Number(values.conns);
  const rounds = Number(values.rounds);
  const work = await Deno.makeTempDir({ prefix: "coldpack-bench-metrics-" });
  const stops: (() => Promise<unknown>)[] = [];
  let statsdStarting: Promise<Receiver> | null = null;
  try {
    const receivers: Receiver[] = [];
    let master: Master | null = null;
    let statsdBin: string | null = null;
    if (!values["no-statsd"]) {
      const s = await installStatsd(values["statsd-dir"]);
      if ("why" in s) console.error(`bench: statsd is not measured: ${s.why}`);
      else statsdBin = s.bin;
    }
    // statsd first: its counter exists only after its first flush (<= 10 s), while the agent starts.
    statsdStarting = statsdBin === null ? null : startStatsd(statsdBin, work);
    // Stopped whatever happens next (also when the agent fails to start).
    statsdStarting?.then((statsd) => stops.unshift(() => statsd.stop()), () => {});
    if (!values["no-agent"]) {
      master = await startMaster();
      const m = master;
      stops.push(async () => {
        const got = await m.close();
        console.error(
          `bench: the istatd master received ${fmt(got.lines ?? 0)} lines ` +
            `(${fmt(got.counters ?? 0)} counters, ${fmt(got.malformed ?? 0)} malformed) ` +
            `over ${fmt(got.connections ?? 0)} connections`,
        );
      });
      const agent = await startAgent({
        work,
        masterPort: master.port,
        v8Flags: values["agent-v8-flags"],
      });
      stops.unshift(() => agent.stop());
      receivers.push(agent);
    }
    if (statsdStarting !== null) {
      receivers.push(await statsdStarting);
    }
    const shape = {
      lines,
      mode: "load" as const,
      names,
      conns,
      seconds,
      port: 0,
      proto: "udp" as const,
    };
    console.log(
      `metrics ingest: ${fmt(2 * names)} counters (events and gauges alternately), ` +
        `${fmt(lines)} distinct lines sent round and round for ${seconds} s as fast as the ` +
        `receiver takes them: UDP in datagrams of <= ${DATAGRAM_BYTES} bytes, TCP over ` +
        `${conns} connections in ${
          TCP_WRITE_BYTES / 1024
        } KiB writes; ${rounds} round(s) after a 1 s warm-up, best shown`,
    );
    console.log(
      `  agent gets istatd lines ("*bench.c7.hits 1", "bench.c7.latency 0.123"), ` +
        `${fmt(averageLine(shape, "istatd"), 1)} bytes/line on average;`,
    );
    console.log(
      `  statsd gets the same samples as statsd lines ("bench.c7.hits:1|c", ` +
        `"bench.c7.latency:0.123|ms"), ${fmt(averageLine(shape, "statsd"), 1)} bytes/line`,
    );
    if (!values["no-agent"]) {
      console.log(`  agent: deno run -A ${values["agent-v8-flags"]} cmd/metrics_agent.ts`);
    }
    const best = new Map<string, Measured>();
    // A warm-up of each (JIT, heap growth, the first flush), not counted.
    for (let round = -1; round < rounds; round++) {
      for (const proto of ["udp", "tcp"] as const) {
        for (const r of receivers) {
          const m = await measure(r, {
            ...shape,
            ...(round < 0 ? { seconds: Math.min(1, seconds) } : {}),
            proto,
            port: r.port,
            format: r.name === "agent" ? "istatd" : "statsd",
          });
          if (round < 0) {
            console.error(`bench: warm-up:${report(m).slice(1)}`);
            continue;
          }
          console.log(report(m));
          const key = `${proto} ${r.name}`;
          const b = best.get(key);
          if (b === undefined || m.linesPerSecond > b.linesPerSecond) best.set(key, m);
        }
      }
    }
    console.log("results (best of the rounds):");
    for (const proto of ["udp", "tcp"] as const) {
      const a = best.get(`${proto} agent`);
      const s = best.get(`${proto} statsd`);
      const parts: string[] = [];
      // A receiver that finished counting right after the sender's last write kept up with it.
      const keptUp = (m: Measured) =>
        m.proto === "tcp" && m.seconds - m.senderSeconds < 0.25
          ? " (it kept up with the sender: a lower bound)"
          : "";
      if (a !== undefined) {
        parts.push(
          `agent ${fmt(a.linesPerSecond)} lines/s${keptUp(a)} (target >= 300,000: ${
            a.linesPerSecond >= 300_000 ? "met" : "NOT met"
          })`,
        );
      }
      if (s !== undefined) parts.push(`statsd ${fmt(s.linesPerSecond)} lines/s${keptUp(s)}`);
      if (a !== undefined && s !== undefined) {
        const ratio = a.linesPerSecond / s.linesPerSecond;
        parts.push(
          `ratio ${fmt(ratio, 2)} x statsd (target >= 2: ${ratio >= 2 ? "met" : "NOT met"})`,
        );
      }
      console.log(`  ${proto.toUpperCase()}: ${parts.join("; ")}`);
    }
    // RSS: a fresh agent (the runs above grew its heap), and statsd after the same counters.
    if (!values["no-agent"] && master !== null) {
      const agent = await startAgent({
        work,
        masterPort: master.port,
        v8Flags: values["agent-v8-flags"],
      });
      let rss: RssFigures;
      try {
        rss = await rssRun(agent, "istatd", rssCounters, conns);
      } finally {
        await agent.stop();
      }
      console.log(
        `RSS of a fresh agent with ${fmt(rssCounters)} distinct counters: ` +
          `${fmt(rss.afterIngestMb)} MB after ingest, ${fmt(rss.afterFlushMb)} MB after a flush, ` +
          `${fmt(rss.afterScrapeMb ?? NaN)} MB after a /metrics scrape; peak ${
            fmt(rss.peakMb)
          } MB ` +
          `(target <= 200 MB: ${rss.peakMb <= 200 ? "met" : "NOT met"})`,
      );
    }
    const statsd = receivers.find((r) => r.name === "statsd");
    if (statsd !== undefined) {
      const rss = await rssRun(statsd, "statsd", rssCounters, conns);
      console.log(
        `RSS of statsd after the same ${fmt(rssCounters)} counters (after ${
          rounds * 2
        } ingest runs): ${fmt(rss.afterIngestMb)} MB after ingest, ${
          fmt(rss.afterFlushMb)
        } MB after a flush; peak ${fmt(rss.peakMb)} MB`,
      );
    }
  } finally {
    await statsdStarting?.catch(() => {});
    for (const stop of stops) await stop().catch((e) => console.error(`bench: ${e}`));
    if (values.keep) console.error(`bench: kept ${work}`);
    else await Deno.remove(work, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await main();
