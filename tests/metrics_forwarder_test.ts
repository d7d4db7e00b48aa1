/**
 * The metrics forwarder against a minimal TCP master on 127.0.0.1 that
 * records every line per connection: the hello on every connect, order,
 * resending from the last commit after the master goes away, backoff, and
 * shutdown with the master up, gone, or never answering our FIN.
 * @module
 */

import assert from "node:assert/strict";
import net from "node:net";
import {
  backoffDelay,
  Forwarder,
  type ForwarderOptions,
  forwarderReader,
} from "../adapters/metrics/forwarder.ts";
import { Spool } from "../adapters/metrics/spool.ts";
import { tempDir } from "./_helpers.ts";

const HELLO = ["#proto x 1 1", "#hostname test-host"];

/** One connection the master accepted: the lines it got, and whether the agent half-closed. */
interface Received {
  lines: string[];
  ended: boolean;
}

/** A minimal istatd master: records lines per connection; `stop()` is an abrupt outage. */
class TestMaster {
  readonly connections: Received[] = [];
  #server: net.Server | null = null;
  #sockets = new Set<net.Socket>();
  port = 0;
  /** Answer the agent's FIN with ours (a real master does); false: never. */
  constructor(readonly options: { finBack?: boolean; chatter?: boolean } = {}) {}

  async start(port = this.port): Promise<void> {
    const server = net.createServer({ allowHalfOpen: true }, (socket) => {
      const conn: Received = { lines: [], ended: false };
      this.connections.push(conn);
      this.#sockets.add(socket);
      let rest = "";
      socket.setEncoding("utf8");
      socket.on("data", (chunk: string) => {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        conn.lines.push(...parts);
      });
      socket.on("end", () => {
        conn.ended = true;
        if (this.options.finBack !== false) socket.end();
      });
      socket.on("error", () => {});
      socket.on("close", () => this.#sockets.delete(socket));
      // A master has nothing to say, but the agent must not mind if it does.
      if (this.options.chatter) socket.write("hello agent\n");
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => resolve());
    });
    this.#server = server;
    this.port = (server.address() as net.AddressInfo).port;
  }

  /** Closes the listener and destroys every connection. */
  async stop(): Promise<void> {
    const server = this.#server;
    if (!server) return;
    this.#server = null;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }

  /** Data lines (not `#` metadata) of every connection, in arrival order. */
  data(): string[] {
    return this.connections.flatMap((c) => c.lines.filter((l) => !l.startsWith("#")));
  }
}

/** Waits until `done()` (polling); fails naming `what` instead of hanging forever. */
async function until(what: string, done: () => boolean): Promise<void> {
  for (let i = 0; i < 4000; i++) {
    if (done()) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error(`Gave up waiting until ${what}`);
}

function batch(b: number, n: number): string[] {
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    lines.push(`seq.${String(b * 1000 + i).padStart(7, "0")} 1 1 1 1 1 1`);
  }
  return lines;
}

function range(from: number, to: number, n: number): string[] {
  const lines: string[] = [];
  for (let b = from; b <= to; b++) lines.push(...batch(b, n));
  return lines;
}

/** Data lines of each connection come in strictly increasing order. */
function assertInOrder(master: TestMaster): void {
  for (const [i, c] of master.connections.entries()) {
    const data = c.lines.filter((l) => !l.startsWith("#"));
    for (let j = 1; j < data.length; j++) {
      assert.ok(data[j - 1]! < data[j]!, `connection ${i}: ${data[j - 1]} before ${data[j]}`);
    }
  }
}

/** A port nothing listens on (bound, then released). */
async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", () => resolve()));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** Runs `fn` with a spool for the master on `port`, cleaned up after. */
async function withSpool(
  port: number,
  fn: (spool: Spool, dir: string) => Promise<void> | void,
): Promise<void> {
  const dir = await tempDir();
  const spool = await Spool.open(dir.path, {
    maxBytes: 64 << 20,
    readers: [forwarderReader("127.0.0.1", port)],
  });
  try {
    await fn(spool, dir.path);
  } finally {
    await spool.close();
    await dir.cleanup();
  }
}

function forwarder(
  spool: Spool,
  port: number,
  options: Partial<ForwarderOptions> = {},
): Forwarder {
  return new Forwarder({
    host: "127.0.0.1",
    port,
    spool,
    hostname: "test-host",
    backoff: { baseMs: 5, maxMs: 40 },
    ...options,
  });
}

Deno.test("Forwarder: hello on every connect, in order, and after an outage it goes on from the last commit", async () => {
  const master = new TestMaster({ chatter: true });
  await master.start();
  try {
    await withSpool(master.port, async (spool) => {
      const fwd = forwarder(spool, master.port, { commitDelayMs: 0 });
      const reader = fwd.reader;
      fwd.start();
      try {
        for (let b = 1; b <= 5; b++) {
          await spool.append(batch(b, 50));
          fwd.kick();
        }
        await until("batches 1-5 arrived", () => master.data().length === 250);
        await until("batches 1-5 are committed", () => spool.stats().pending[reader] === 0);
        assert.deepEqual(master.data(), range(1, 5, 50));

        // The master goes away; the agent goes on spooling.
        await master.stop();
        for (let b = 6; b <= 10; b++) {
          await spool.append(batch(b, 50));
          fwd.kick();
        }
        await until("two retries failed", () => fwd.stats().reconnects >= 3);
        assert.equal(fwd.stats().connected, false);
        assert.match(fwd.stats().lastError ?? "", /ECONNREFUSED/);
        assert.equal(spool.stats().pending[reader], 250);

        await master.start();
        await until("batches 6-10 arrived", () => master.data().length === 500);
        assert.equal(master.connections.length, 2);
        for (const c of master.connections) assert.deepEqual(c.lines.slice(0, 2), HELLO);
        // Everything was committed before the outage, so nothing came twice.
        assert.deepEqual(master.connections[1]!.lines.slice(2), range(6, 10, 50));
        assertInOrder(master);
      } finally {
        await fwd.close();
      }
      const stats = fwd.stats();
      assert.equal(stats.connects, 2);
      assert.equal(stats.sentLines, 500);
      assert.equal(spool.stats().pending[reader], 0);
    });
  } finally {
    await master.stop();
  }
});

Deno.test("Forwarder: a master that dies gets everything since the last commit again, and nothing before it", async () => {
  const master = new TestMaster();
  await master.start();
  try {
    await withSpool(master.port, async (spool) => {
      // Batch 1 is committed by a clean close.
      const first = forwarder(spool, master.port, { commitDelayMs: 60_000 });
      const reader = first.reader;
      first.start();
      await spool.append(batch(1, 20));
      first.kick();
      await first.close();
      assert.equal(spool.stats().pending[reader], 0);
      assert.equal(master.connections[0]!.ended, true, "the master saw our FIN");

      // Batches 2 and 3 are written but not committed (a long commit window) when the master dies.
      const fwd = forwarder(spool, master.port, { commitDelayMs: 60_000 });
      fwd.start();
      try {
        await spool.append(batch(2, 20));
        fwd.kick();
        await spool.append(batch(3, 20));
        fwd.kick();
        await until("batches 2-3 arrived", () => master.data().length === 60);
        assert.equal(spool.stats().pending[reader], 40);
        await master.stop();
        await until("the loss is noticed", () => fwd.stats().reconnects >= 1);
        await master.start();
        await until("the resend arrived", () => master.connections.length === 3);
        await until("the resend arrived", () => master.data().length === 100);
        assert.deepEqual(master.connections[2]!.lines, [...HELLO, ...range(2, 3, 20)]);
        // Nothing lost; duplicates are exactly the uncommitted batches.
        assert.deepEqual(master.data(), [...range(1, 3, 20), ...range(2, 3, 20)]);
      } finally {
        await fwd.close();
      }
      assert.equal(spool.stats().pending[reader], 0);
    });
  } finally {
    await master.stop();
  }
});

Deno.test("Forwarder: under load with a master that goes away twice, no line is lost and each connection is in order", async () => {
  const master = new TestMaster();
  await master.start();
  try {
    await withSpool(master.port, async (spool) => {
      const fwd = forwarder(spool, master.port, { commitDelayMs: 20, readBytes: 8 * 1024 });
      fwd.start();
      try {
        for (let b = 1; b <= 60; b++) {
          await spool.append(batch(b, 200));
          fwd.kick();
          if (b === 20 || b === 40) {
            await master.stop();
            await master.start();
          }
        }
        const all = range(1, 60, 200);
        await until("every line arrived", () => new Set(master.data()).size === all.length);
        assert.deepEqual([...new Set(master.data())].sort(), all);
        assertInOrder(master);
        assert.ok(master.connections.length >= 3);
        for (const c of master.connections) assert.deepEqual(c.lines.slice(0, 2), HELLO);
      } finally {
        await fwd.close();
      }
      assert.equal(spool.stats().pending[fwd.reader], 0);
    });
  } finally {
    await master.stop();
  }
});

Deno.test("Forwarder: backoff doubles up to its cap, with full jitter, and resets after a long connection", async () => {
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5, 40].map((n) => backoffDelay(n, { baseMs: 500, maxMs: 30_000 }, () => 0.5)),
    [250, 500, 1000, 2000, 4000, 8000, 15_000],
  );
  assert.equal(backoffDelay(3, { baseMs: 500, maxMs: 30_000 }, () => 0), 0);

  const port = await freePort();
  await withSpool(port, async (spool) => {
    const log: string[] = [];
    const delays = () =>
      log.flatMap((l) => {
        const m = / retry (\d+) in (\d+) ms$/.exec(l);
        return m ? [[Number(m[1]), Number(m[2])]] : [];
      });
    // random() = 0.999: each delay is just under its ceiling.
    const fwd = forwarder(spool, port, {
      backoff: { baseMs: 2, maxMs: 20 },
      random: () => 0.999,
      resetAfterMs: 0,
      log: (line) => log.push(line),
    });
    fwd.start();
    const master = new TestMaster();
    try {
      await until("7 retries", () => fwd.stats().reconnects >= 7);
      assert.deepEqual(delays().slice(0, 7), [[1, 1], [2, 3], [3, 7], [4, 15], [5, 19], [6, 19], [
        7,
        19,
      ]]);
      assert.ok(log[0]!.includes("cannot connect"), log[0]);

      // A connection that lasted longer than resetAfterMs (0 here) starts the backoff again.
      await master.start(port);
      await until("connected", () => fwd.stats().connected);
      const before = delays().length;
      await master.stop();
      await until("a retry after the loss", () => delays().length > before);
      assert.deepEqual(delays()[before], [1, 1]);
      assert.ok(log.some((l) => l.includes("connection lost")));
    } finally {
      await fwd.close();
      await master.stop();
    }
  });
});

Deno.test("Forwarder: close() sends everything spooled, half-closes, and commits once the master has read it", async () => {
  const master = new TestMaster();
  await master.start();
  try {
    await withSpool(master.port, async (spool) => {
      const fwd = forwarder(spool, master.port, { commitDelayMs: 60_000, readBytes: 16 * 1024 });
      fwd.start();
      // 20,000 lines spooled and not one kick: close() itself must send them.
      for (let b = 1; b <= 10; b++) await spool.append(batch(b, 2000));
      await fwd.close({ timeoutMs: 30_000 });
      assert.deepEqual(master.connections.map((c) => c.ended), [true]);
      assert.deepEqual(master.data(), range(1, 10, 2000));
      assert.equal(spool.stats().pending[fwd.reader], 0);
      assert.equal(fwd.stats().connected, false);
      // Closed is closed: no reconnect, and a second close is the same.
      await fwd.close();
      fwd.start();
      assert.equal(master.connections.length, 1);
    });
  } finally {
    await master.stop();
  }
});

Deno.test("Forwarder: close() with the master down returns and leaves the data spooled for the next start", async () => {
  const port = await freePort();
  const dir = await tempDir();
  const master = new TestMaster();
  try {
    const options = { maxBytes: 1 << 20, readers: [forwarderReader("127.0.0.1", port)] };
    let spool = await Spool.open(dir.path, options);
    try {
      const fwd = forwarder(spool, port);
      fwd.start();
      await spool.append(batch(1, 30));
      fwd.kick();
      await until("two failed connects", () => fwd.stats().reconnects >= 2);
      await fwd.close({ timeoutMs: 60_000 }); // Returns at once: there is no connection to drain.
      assert.equal(spool.stats().pending[fwd.reader], 30);
    } finally {
      await spool.close();
    }

    // The next start (a restarted agent) delivers it.
    await master.start(port);
    spool = await Spool.open(dir.path, options);
    try {
      const fwd = forwarder(spool, port);
      fwd.start();
      await until("the spooled lines arrived", () => master.data().length === 30);
      await fwd.close();
      assert.deepEqual(master.data(), batch(1, 30));
      assert.equal(spool.stats().pending[fwd.reader], 0);
    } finally {
      await spool.close();
    }
  } finally {
    await master.stop();
    await dir.cleanup();
  }
});

Deno.test("Forwarder: close() gives up at its timeout when the master never answers our FIN, and commits nothing unconfirmed", async () => {
  const master = new TestMaster({ finBack: false });
  await master.start();
  try {
    await withSpool(master.port, async (spool) => {
      const log: string[] = [];
      const fwd = forwarder(spool, master.port, {
        commitDelayMs: 60_000,
        log: (line) => log.push(line),
      });
      fwd.start();
      await spool.append(batch(1, 10));
      fwd.kick();
      await until("the batch arrived", () => master.data().length === 10);
      await fwd.close({ timeoutMs: 200 });
      assert.ok(log.some((l) => l.includes("close timed out after 200 ms")), log.join("\n"));
      assert.equal(master.connections[0]!.ended, true);
      // Not confirmed: it stays spooled and is sent again next time (a duplicate, not a loss).
      assert.equal(spool.stats().pending[fwd.reader], 10);
    });
  } finally {
    await master.stop();
  }
});

Deno.test("Forwarder: misconfiguration is refused with the reason", async () => {
  await withSpool(8111, (spool) => {
    assert.throws(
      () => forwarder(spool, 8112),
      (e: unknown) =>
        e instanceof RangeError && /Unknown spool reader "127.0.0.1:8112"/.test(e.message),
    );
    assert.throws(
      () => forwarder(spool, 8111, { hostname: "two words" }),
      (e: unknown) => e instanceof RangeError && /hostname: "two words"/.test(e.message),
    );
    assert.throws(
      () => forwarder(spool, 8111, { backoff: { baseMs: 0, maxMs: 10 } }),
      (e: unknown) => e instanceof RangeError && /backoff: baseMs 0, maxMs 10/.test(e.message),
    );
  });
  assert.equal(forwarderReader("::1", 8111), "[::1]:8111");
});
