/**
 * coldpack-metrics-agent as an operator runs it: the binary as a
 * subprocess, fed over TCP and UDP, forwarding to the istatd test master
 * (tests/doubles/istatd.ts), which records and merges what it receives as
 * istatd does. Aggregation, fan-out and malformed input; a 60 s master
 * outage under load; SIGKILL and restart with the spool replayed; the
 * spool bound and its drop counter; graceful shutdown; and the backup
 * daemon's counters reaching a master through the agent.
 * @module
 */

import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { connect } from "node:net";
import { IstatdDouble } from "./doubles/istatd.ts";
import { bytesOf, put, runCmd, spawnCmd, tempDir } from "./_helpers.ts";

const T = 1_800_000_000; // a bucket start (a multiple of 10 s)

interface Agent {
  readonly child: Deno.ChildProcess;
  readonly tcpPort: number;
  readonly udpPort: number;
  readonly httpPort: number;
  log(): string;
  /** SIGTERM; exit code and log. */
  stop(): Promise<{ code: number; log: string }>;
  kill(): Promise<void>;
}

async function startAgent(args: string[]): Promise<Agent> {
  const child = spawnCmd("metrics_agent", [
    "--port",
    "0",
    "--metrics-port",
    "0",
    "--hostname",
    "web12",
    ...args,
  ]);
  let text = "";
  const decoder = new TextDecoder();
  const drained = (async () => {
    for await (const c of child.stderr) text += decoder.decode(c, { stream: true });
  })();
  const out = (async () => {
    for await (const _ of child.stdout) { /* nothing there */ }
  })();
  const deadline = Date.now() + 30_000;
  let m: RegExpExecArray | null = null;
  while (Date.now() < deadline) {
    m = /:(\d+) \(TCP\) and :(\d+) \(UDP\).*on 127\.0\.0\.1:(\d+)/.exec(text);
    if (m !== null) break;
    const done = await Promise.race([child.status, delay(50).then(() => null)]);
    if (done !== null) break;
  }
  if (m === null) {
    child.kill("SIGKILL");
    await child.status.catch(() => {});
    await drained;
    await out;
    throw new Error(`the agent did not start:\n${text}`);
  }
  const finish = async () => {
    const status = await child.status;
    await drained;
    await out;
    return status.code;
  };
  return {
    child,
    tcpPort: Number(m[1]),
    udpPort: Number(m[2]),
    httpPort: Number(m[3]),
    log: () => text,
    async stop() {
      child.kill("SIGTERM");
      return { code: await finish(), log: text };
    },
    async kill() {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await finish();
    },
  };
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Sends `text` on one TCP connection and closes it (half-close, then wait for the close). */
function sendTcp(port: number, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect({ port, host: "127.0.0.1" }, () => {
      s.end(text);
    });
    s.on("error", reject);
    s.on("data", () => {});
    s.on("close", () => resolve());
  });
}

/** Sends each datagram over UDP from a socket bound to loopback. */
async function sendUdp(port: number, datagrams: readonly string[]): Promise<void> {
  const s = createSocket("udp4");
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()));
  try {
    for (const d of datagrams) {
      await new Promise<void>((resolve, reject) =>
        s.send(d, port, "127.0.0.1", (e) => (e ? reject(e) : resolve()))
      );
    }
  } finally {
    await new Promise<void>((r) => s.close(() => r()));
  }
}

/** The value of a Prometheus sample in the agent's /metrics (0 when absent). */
async function scrape(agent: Agent, name: string, labels = ""): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${agent.httpPort}/metrics`)).text();
  const want = labels === "" ? name : `${name}{${labels}}`;
  for (const line of text.split("\n")) {
    const sp = line.lastIndexOf(" ");
    if (line.slice(0, sp) === want) return Number(line.slice(sp + 1));
  }
  return 0;
}

async function until(what: string, test: () => boolean | Promise<boolean>, log: () => string) {
  const deadline = Date.now() + 60_000;
  while (Date.now() < deadline) {
    if (await test()) return;
    await delay(100);
  }
  assert.fail(`gave up waiting for ${what}; the agent said:\n${log()}`);
}

Deno.test("agent: aggregates per 10 s bucket (gauges, events, aggregated lines), fans out, skips malformed lines, announces itself, half-closes on SIGTERM", async () => {
  const master = await IstatdDouble.start();
  const spool = await tempDir();
  let agent: Agent | null = null;
  try {
    agent = await startAgent([
      "--forward",
      `127.0.0.1:${master.port}`,
      "--spool",
      spool.path,
      "--flush",
      "200ms",
    ]);
    await sendTcp(
      agent.tcpPort,
      [
        `app.latency ${T + 1} 0.5`,
        `app.latency ${T + 2} 1.5\r`,
        `app.latency ${T + 11} 4`,
        `*app.hits ${T + 3} 2`,
        `*app.hits ${T + 4} 5`,
        `db.q ${T + 5} 10 60 1 5 3`,
        `db.q ${T + 6} 2`,
        `web^a^b ${T + 7} 3`,
        `App.Upper ${T + 8} 7`,
        "#hostname some-client",
        "nonsense",
        `x ${T + 9} NaN`,
        "y 1 2 3",
        "",
      ].join("\n"),
    );
    await sendUdp(agent.udpPort, [`*app.hits ${T + 3} 10\n*app.hits ${T + 13} 1`]);
    const a = agent;
    await until("the master to have every counter", () => {
      return master.totals("app.hits")?.sum === 18 && master.totals("app.upper") !== undefined &&
        master.totals("db.q")?.count === 4 && master.totals("app.latency")?.count === 3;
    }, a.log);
    assert.equal(master.kind("app.hits"), "event");
    assert.equal(master.kind("app.latency"), "gauge");
    assert.deepEqual(
      pick(master.bucket("app.latency", T)),
      { count: 2, sum: 2, sumsq: 2.5, min: 0.5, max: 1.5 },
    );
    assert.deepEqual(
      pick(master.bucket("app.latency", T + 10)),
      { count: 1, sum: 4, sumsq: 16, min: 4, max: 4 },
    );
    assert.deepEqual(
      pick(master.bucket("db.q", T)),
      { count: 4, sum: 12, sumsq: 64, min: 1, max: 5 },
    );
    assert.equal(master.bucket("app.hits", T)?.sum, 17);
    assert.equal(master.bucket("app.hits", T + 10)?.sum, 1);
    assert.equal(master.totals("web.a")?.sum, 3);
    assert.equal(master.totals("web.b")?.sum, 3);
    assert.equal(master.totals("app.upper")?.max, 7);
    // Events go as "*name time sum", gauges with all five figures.
    const lines = master.received();
    assert.ok(lines.some((l) => l.startsWith(`*app.hits ${T} `) && l.split(" ").length === 3));
    assert.ok(lines.includes(`db.q ${T} 12 64 1 5 4`), lines.join("\n"));
    const [conn] = master.connections();
    assert.deepEqual(conn!.meta.slice(0, 2), [["proto", "x 1 1"], ["hostname", "web12"]]);
    assert.equal(conn!.linesBeforeFirstSample, 2);
    assert.equal(await scrape(a, "coldpack_metrics_agent_lines_malformed_total", 'proto="tcp"'), 3);
    assert.equal(await scrape(a, "coldpack_metrics_agent_lines_received_total", 'proto="udp"'), 2);
    assert.equal(await scrape(a, "app_hits_total"), 18);
    const health = await (await fetch(`http://127.0.0.1:${a.httpPort}/health`)).json();
    assert.equal(health.status, "ok");

    const { code, log } = await a.stop();
    agent = null;
    assert.equal(code, 0, log);
    await master.waitFor((m) => !m.connections()[0]!.open);
    assert.equal(master.connections()[0]!.closedBy, "end", "half-closed by the agent");
    assert.match(log, /skipped a malformed line/);
  } finally {
    if (agent !== null) await agent.kill();
    await master.close();
    await spool.cleanup();
  }
});

function pick(
  b: { count: number; sum: number; sumsq: number; min: number; max: number } | undefined,
) {
  assert.ok(b);
  return { count: b.count, sum: b.sum, sumsq: b.sumsq, min: b.min, max: b.max };
}

Deno.test("agent: a 60 s master outage under load loses nothing; it reconnects and replays in order", async () => {
  const master = await IstatdDouble.start();
  const spool = await tempDir();
  let agent: Agent | null = null;
  try {
    agent = await startAgent([
      "--forward",
      `127.0.0.1:${master.port}`,
      "--spool",
      spool.path,
      "--flush",
      "500ms",
    ]);
    const a = agent;
    // 70 s of load: 40 counters, 2,000 events a second on one TCP connection.
    const sock = connect({ port: a.tcpPort, host: "127.0.0.1" });
    await new Promise<void>((r) => sock.once("connect", () => r()));
    let sent = 0;
    const start = Date.now();
    let stopped = false;
    let restarted = false;
    while (Date.now() - start < 70_000) {
      const batch: string[] = [];
      for (let i = 0; i < 200; i++) batch.push(`*load.c${(sent + i) % 40} 1`);
      sent += batch.length;
      if (!sock.write(batch.join("\n") + "\n")) {
        await new Promise<void>((r) => sock.once("drain", () => r()));
      }
      const t = Date.now() - start;
      if (!stopped && t >= 5_000) {
        await master.stop();
        stopped = true;
      }
      if (!restarted && t >= 65_000) {
        await master.restart();
        restarted = true;
      }
      await delay(100);
    }
    await new Promise<void>((r) => sock.end(() => r()));
    const total = () => {
      let n = 0;
      for (let i = 0; i < 40; i++) n += master.totals(`load.c${i}`)?.sum ?? 0;
      return n;
    };
    await until(`the master to count all ${sent} events`, () => total() >= sent, a.log);
    assert.ok(master.connections().length >= 2, "it reconnected");
    for (const c of master.connections()) {
      assert.deepEqual(c.meta.slice(0, 2), [["proto", "x 1 1"], ["hostname", "web12"]]);
    }
    assert.equal(await scrape(a, "coldpack_metrics_agent_dropped_lines_total"), 0);
    const { code, log } = await a.stop();
    agent = null;
    assert.equal(code, 0, log);
    // At least once: lines sent in the second before the outage may be counted twice.
    const extra = total() - sent;
    assert.ok(extra >= 0 && extra <= 3 * 2_000, `${extra} events counted twice`);
  } finally {
    if (agent !== null) await agent.kill();
    await master.close();
    await spool.cleanup();
  }
});

Deno.test("agent: after SIGKILL a restart sends what the spool holds; the spool bound drops the oldest and counts it", async () => {
  const master = await IstatdDouble.start();
  const spool = await tempDir();
  const port = master.port;
  await master.stop(); // down from the start
  let agent: Agent | null = null;
  try {
    const args = ["--forward", `127.0.0.1:${port}`, "--spool", spool.path, "--flush", "200ms"];
    agent = await startAgent(args);
    const a = agent;
    const lines: string[] = [];
    for (let i = 0; i < 1_000; i++) lines.push(`*k.c${i % 100} ${T + 1} 1`);
    await sendTcp(a.tcpPort, lines.join("\n") + "\n");
    await until(
      "everything spooled",
      async () =>
        await scrape(a, "coldpack_metrics_agent_samples_total", 'proto="tcp"') === 1_000 &&
        await scrape(a, "coldpack_metrics_agent_lines_flushed_total") === 100,
      a.log,
    );
    await a.kill();
    agent = null;
    await master.restart();
    agent = await startAgent(args);
    const b = agent;
    const sum = () => {
      let n = 0;
      for (let i = 0; i < 100; i++) n += master.totals(`k.c${i}`)?.sum ?? 0;
      return n;
    };
    await until("the spooled lines at the master", () => sum() === 1_000, b.log);
    const { code, log } = await b.stop();
    agent = null;
    assert.equal(code, 0, log);
    assert.equal(sum(), 1_000);

    // The bound: 64 KiB and the master down, ten flushes of 1,000 long names each.
    await master.stop();
    const small = await tempDir();
    try {
      agent = await startAgent([
        "--forward",
        `127.0.0.1:${port}`,
        "--spool",
        small.path,
        "--spool-max",
        "64KiB",
        "--flush",
        "100ms",
      ]);
      const c = agent;
      for (let round = 0; round < 10; round++) {
        const batch: string[] = [];
        for (let i = 0; i < 1_000; i++) {
          batch.push(`bound.a-rather-long-counter-name-to-fill-the-spool.r${round}.n${i} 1`);
        }
        await sendTcp(c.tcpPort, batch.join("\n") + "\n");
        await until(
          `round ${round} flushed`,
          async () =>
            await scrape(c, "coldpack_metrics_agent_lines_flushed_total") === (round + 1) * 1_000,
          c.log,
        );
      }
      const dropped = await scrape(c, "coldpack_metrics_agent_dropped_lines_total");
      assert.ok(dropped > 0, "the bound dropped lines");
      const health = await (await fetch(`http://127.0.0.1:${c.httpPort}/health`)).json();
      assert.equal(health.status, "degraded");
      assert.equal(health.spool.droppedLines, dropped);
      const before = master.received().length;
      await master.restart();
      // What was not dropped arrives: the newest rounds.
      await until(
        "the kept lines at the master",
        () => master.received().filter((l) => l.startsWith("bound.")).length === 10_000 - dropped,
        c.log,
      );
      assert.ok(master.received().length > before);
      assert.ok(master.totals("bound.a-rather-long-counter-name-to-fill-the-spool.r9.n999"));
      assert.equal(
        master.totals("bound.a-rather-long-counter-name-to-fill-the-spool.r0.n0"),
        undefined,
      );
      const { code: code2, log: log2 } = await c.stop();
      agent = null;
      assert.equal(code2, 0, log2);
    } finally {
      await small.cleanup();
    }
  } finally {
    if (agent !== null) await agent.kill();
    await master.close();
    await spool.cleanup();
  }
});

Deno.test("agent: the backup daemon's counters reach an istatd master through it", async () => {
  const master = await IstatdDouble.start();
  const spool = await tempDir();
  const src = await tempDir();
  const state = await tempDir();
  let agent: Agent | null = null;
  try {
    agent = await startAgent([
      "--forward",
      `127.0.0.1:${master.port}`,
      "--spool",
      spool.path,
      "--flush",
      "200ms",
    ]);
    const a = agent;
    for (let i = 0; i < 25; i++) await put(src.path, `f/${i}.bin`, bytesOf(i, 1_000 + i * 100));
    const run = await runCmd("backup", [
      "--source",
      src.path,
      "--once",
      "--state-dir",
      state.path,
      "--metrics-agent",
      `127.0.0.1:${a.udpPort}`,
    ]);
    assert.equal(run.code, 0, run.stderr);
    await until(
      "coldpack.backup.files_archived at the master",
      () => master.totals("coldpack.backup.files_archived")?.sum === 25,
      a.log,
    );
    assert.equal(master.kind("coldpack.backup.files_archived"), "event");
    assert.ok((master.totals("coldpack.backup.upload_seconds")?.count ?? 0) >= 1);
    const { code, log } = await a.stop();
    agent = null;
    assert.equal(code, 0, log);
  } finally {
    if (agent !== null) await agent.kill();
    await master.close();
    await spool.cleanup();
    await src.cleanup();
    await state.cleanup();
  }
});
