/**
 * The test istatd master follows PROTOCOLS.md section 5: LF lines (CR is
 * white space), the three sample shapes, `*` events, `#` metadata per
 * connection, lower-cased names, `a^b^c` fan-out, 10 s buckets merged
 * additively (min/max combined) whether a bucket comes in one line or in
 * parts. Driven with raw TCP (Deno.connect), as an agent would.
 * @module
 */

import assert from "node:assert/strict";
import { BUFFERED_LINE_BYTES, IstatdDouble } from "./doubles/istatd.ts";

const utf8 = new TextEncoder();
const NOW = 1_700_000_123.4;

/** Connects, writes `text` (in pieces, waiting `pauseMs` between them when given). */
async function send(
  master: IstatdDouble,
  pieces: string | string[],
  options: { pauseMs?: number; keepOpen?: boolean } = {},
): Promise<Deno.TcpConn> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: master.port });
  for (const p of typeof pieces === "string" ? [pieces] : pieces) {
    const bytes = utf8.encode(p);
    for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
    if (options.pauseMs !== undefined) await new Promise((r) => setTimeout(r, options.pauseMs));
  }
  if (options.keepOpen) return conn;
  await conn.closeWrite();
  // The master ends its side once it has read everything (our FIN is behind the data).
  assert.equal(await conn.read(new Uint8Array(16)), null, "the master must not write to us");
  conn.close();
  return conn;
}

Deno.test("istatd double: three shapes, events, metadata, lower-case, fan-out, CR", async () => {
  const master = await IstatdDouble.start({ now: () => NOW });
  try {
    const text = [
      "#proto x 1 1",
      "#hostname web12",
      "App.Lat 1700000003 0.5",
      "app.lat 1700000007 2 10 1 3 4",
      "app.lat 1700000011 7\r",
      "*web.hits 1700000001 3",
      "*WEB.hits 1700000009 4",
      "*web^a^b 1700000005 1",
      "solo 4",
      "",
    ].join("\n");
    await send(master, text);
    await master.waitFor((m) => m.connections()[0]?.open === false);

    assert.deepEqual(master.received(), text.split("\n").slice(0, -1));
    const [c] = master.connections();
    assert.equal(c?.closedBy, "end");
    assert.deepEqual(c?.meta, [["proto", "x 1 1"], ["hostname", "web12"]]);
    assert.deepEqual(c?.metadata, { proto: "x 1 1", hostname: "web12" });
    assert.equal(c?.linesBeforeFirstSample, 2);
    assert.equal(c?.malformed, 0);
    assert.deepEqual(master.malformed(), []);

    assert.deepEqual(master.counters(), ["app.lat", "solo", "web.a", "web.b", "web.hits"]);
    assert.deepEqual(master.bucket("app.lat", 1_700_000_000), {
      name: "app.lat",
      kind: "gauge",
      time: 1_700_000_000,
      count: 5,
      sum: 2.5,
      sumsq: 10.25,
      min: 0.5,
      max: 3,
      parts: 2,
    });
    // Any time inside the bucket finds it.
    assert.equal(master.bucket("app.lat", 1_700_000_019.9)?.sum, 7);
    assert.equal(master.bucket("app.lat", 1_700_000_020), undefined);
    assert.deepEqual(master.buckets("app.lat").map((b) => b.time), [1_700_000_000, 1_700_000_010]);
    assert.deepEqual(master.totals("app.lat"), {
      count: 6,
      sum: 9.5,
      sumsq: 59.25,
      min: 0.5,
      max: 7,
    });
    assert.equal(master.kind("web.hits"), "event");
    assert.equal(master.bucket("web.hits", 1_700_000_000)?.sum, 7);
    assert.equal(master.bucket("web.a", 1_700_000_000)?.sum, 1);
    assert.equal(master.bucket("web.b", 1_700_000_000)?.kind, "event");
    // No time: the master's clock (1700000123.4 -> bucket 1700000120).
    assert.equal(master.bucket("solo", 1_700_000_120)?.count, 1);
    assert.equal(master.totals("nothing"), undefined);
    assert.deepEqual(master.summary(), {
      lines: 9,
      samples: 8,
      counters: 5,
      malformed: 0,
      connections: 1,
    });
  } finally {
    await master.close();
  }
});

Deno.test("istatd double: a bucket sent in parts merges to the same figures as one line", async () => {
  const values = [3, -1.5, 8, 0.25, 2];
  const whole = {
    count: values.length,
    sum: values.reduce((a, v) => a + v, 0),
    sumsq: values.reduce((a, v) => a + v * v, 0),
    min: Math.min(...values),
    max: Math.max(...values),
  };
  const line = (name: string, vs: number[]) =>
    `${name} 1700000042 ${vs.reduce((a, v) => a + v, 0)} ${vs.reduce((a, v) => a + v * v, 0)} ` +
    `${Math.min(...vs)} ${Math.max(...vs)} ${vs.length}\n`;
  const master = await IstatdDouble.start();
  try {
    await send(master, line("one", values));
    // The same bucket in three parts over two connections (as after an agent restart).
    await send(master, line("parts", values.slice(0, 2)) + line("parts", values.slice(2, 3)));
    await send(master, line("parts", values.slice(3)));
    await master.waitFor((m) => m.sampleCount === 4);
    const one = master.bucket("one", 1_700_000_040);
    const parts = master.bucket("parts", 1_700_000_040);
    assert.deepEqual({ ...one, name: "x", parts: 0 }, { ...parts, name: "x", parts: 0 });
    assert.deepEqual(master.totals("parts"), whole);
    assert.equal(parts?.parts, 3);
  } finally {
    await master.close();
  }
});

Deno.test("istatd double: a line split across TCP segments is one line", async () => {
  const master = await IstatdDouble.start();
  try {
    await send(master, ["*split.co", "unter 1700000000 ", "5", "\r", "\n#host", "name h\n"], {
      pauseMs: 30,
    });
    await master.waitFor((m) => m.connections()[0]?.open === false);
    assert.deepEqual(master.received(), ["*split.counter 1700000000 5\r", "#hostname h"]);
    assert.equal(master.totals("split.counter")?.sum, 5);
    assert.deepEqual(master.connections()[0]?.metadata, { hostname: "h" });
  } finally {
    await master.close();
  }
});

Deno.test("istatd double: malformed lines are recorded with their cause, the connection stays", async () => {
  const master = await IstatdDouble.start();
  try {
    const long = `a.b ${"1".repeat(5000)}`;
    const huge = `a.c ${"2".repeat(BUFFERED_LINE_BYTES + 100)}`;
    const conn = await send(
      master,
      [
        "bad!name 1\n",
        "a 1 2 3\n",
        "x NaN\n",
        "t -5 1\n",
        `${long}\n`,
        `${huge}\n`,
        "kind.x 1\n",
        "*kind.x 2\n",
        "ok.after 42\n",
      ],
      { keepOpen: true },
    );
    try {
      await master.waitFor((m) => m.totals("ok.after") !== undefined);
      const bad = master.malformed();
      assert.deepEqual(bad.map((b) => b.line.slice(0, 10)), [
        "bad!name 1",
        "a 1 2 3",
        "x NaN",
        "t -5 1",
        long.slice(0, 10),
        huge.slice(0, 10),
        "*kind.x 2",
      ]);
      const reasons = bad.map((b) => b.reason);
      assert.match(reasons[0]!, /^bad name "bad!name"/);
      assert.match(reasons[1]!, /^wrong field count/);
      assert.match(reasons[2]!, /^bad number "NaN"/);
      assert.match(reasons[3]!, /^negative time/);
      assert.match(reasons[4]!, /^line too long/);
      assert.match(reasons[5]!, /^line too long/);
      assert.equal(bad[5]!.line.length, BUFFERED_LINE_BYTES);
      assert.match(reasons[6]!, /^kind conflict: kind\.x is a gauge/);
      assert.equal(master.kind("kind.x"), "gauge");
      assert.equal(master.totals("kind.x")?.sum, 1);
      assert.equal(master.totals("a"), undefined);
      assert.equal(master.totals("ok.after")?.sum, 42);
      const [c] = master.connections();
      assert.equal(c?.open, true);
      assert.equal(c?.malformed, 7);
      assert.equal(c?.lines, 9);
    } finally {
      conn.close();
    }
  } finally {
    await master.close();
  }
});

Deno.test("istatd double: a final line without LF at half-close is malformed, the master FINs", async () => {
  const master = await IstatdDouble.start();
  try {
    await send(master, "done.a 1\ndone.b 2"); // asserts the master's FIN
    await master.waitFor((m) => m.connections()[0]?.open === false);
    assert.equal(master.totals("done.a")?.sum, 1);
    assert.equal(master.totals("done.b"), undefined);
    assert.deepEqual(master.malformed(), [{
      line: "done.b 2",
      reason: "unterminated line at the end of the connection",
      connection: 1,
    }]);
    assert.equal(master.connections()[0]?.closedBy, "end");
  } finally {
    await master.close();
  }
});

Deno.test("istatd double: stop() is an outage, restart() listens on the same port", async () => {
  const master = await IstatdDouble.start();
  try {
    const port = master.port;
    const conn = await send(master, "#hostname a\nbefore 1\n", { keepOpen: true });
    try {
      await master.waitFor((m) => m.sampleCount === 1);
      await master.stop();
      assert.equal(master.listening, false);
      // The connection is gone: EOF or a reset.
      const got = await conn.read(new Uint8Array(16)).catch((e) => e);
      assert.ok(got === null || got instanceof Deno.errors.ConnectionReset, String(got));
    } finally {
      conn.close();
    }
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port }),
      Deno.errors.ConnectionRefused,
    );
    await master.restart();
    assert.equal(master.port, port);
    await send(master, "#hostname a\nafter 2\n");
    await master.waitFor((m) => m.sampleCount === 2);
    assert.deepEqual(master.received(), [
      "#hostname a",
      "before 1",
      "#hostname a",
      "after 2",
    ]);
    const cs = master.connections();
    assert.deepEqual(cs.map((c) => [c.id, c.closedBy]), [[1, "stop"], [2, "end"]]);
  } finally {
    await master.close();
  }
});

Deno.test("istatd double: a fixed port is taken, and given back by close()", async () => {
  const first = await IstatdDouble.start();
  const port = first.port;
  await first.close();
  const again = await IstatdDouble.start({ port });
  try {
    assert.equal(again.port, port);
    await assert.rejects(IstatdDouble.start({ port }), { code: "EADDRINUSE" });
  } finally {
    await again.close();
  }
});

Deno.test("istatd double: waitFor times out naming what it has; close() rejects waiters", async () => {
  const master = await IstatdDouble.start();
  try {
    await send(master, "w 1\nw!x 2\n");
    await assert.rejects(
      master.waitFor((m) => m.totals("never") !== undefined, 50),
      /Timed out after 50 ms .* 2 lines \(1 samples, 1 malformed\) from 1 connections, 1 counters/,
    );
    const pending = master.waitFor(() => false, 60_000);
    await master.close();
    await assert.rejects(pending, /closed while waited on/);
    await assert.rejects(master.restart(), /it is closed/);
  } finally {
    await master.close();
  }
});

Deno.test("istatd double: runs as a script until stdin closes", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./doubles/istatd.ts", import.meta.url).pathname, "--port", "0"],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  try {
    while (!out.includes("\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    const { port } = JSON.parse(out.slice(0, out.indexOf("\n")));
    assert.ok(Number.isInteger(port) && port > 0);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    await conn.write(utf8.encode("#proto x 1 1\n*s.hits 1700000000 3\ns.lat 2\nbad!\n"));
    await conn.closeWrite();
    assert.equal(await conn.read(new Uint8Array(16)), null);
    conn.close();
  } finally {
    await child.stdin.close();
  }
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    out += value;
  }
  assert.equal((await child.status).code, 0);
  const summary = JSON.parse(out.trim().split("\n")[1]!);
  assert.deepEqual(summary, {
    lines: 4,
    samples: 2,
    counters: 2,
    malformed: 1,
    connections: 1,
  });
});
