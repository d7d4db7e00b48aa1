/**
 * A test istatd master (PROTOCOLS.md section 5): the TCP stat port an
 * agent forwards to, recording everything it receives.
 *
 * It reads LF-terminated lines, parses each with core/istatd.ts
 * {@linkcode parseLine} (CR is white space; the three sample shapes, `*`
 * events, `#key value` metadata, lower-cased names, `a^b^c` fan-out; a line
 * over {@linkcode MAX_LINE_BYTES} is malformed) and
 * merges the samples per (counter, 10 s bucket) as istatd does: count, sum
 * and sumsq add up, min and max combine, so a bucket sent in several parts
 * merges to the same figures as one line. A sample without a time falls into
 * the bucket of the master's clock (option `now`). For an event counter only
 * the merged `sum` means anything (the agent forwards `*name time sum`).
 *
 * It is strict where a sloppy agent would get away with it elsewhere:
 *
 * - a malformed line (what `parseLine` rejects, a counter seen both as an
 *   event and as a gauge: it keeps its first kind, a final line a closing
 *   connection did not end with LF) is
 *   recorded in {@linkcode IstatdDouble.malformed} and merged nowhere; the
 *   connection stays open, as with istatd;
 * - metadata is recorded per connection, in order, so a test can check an
 *   agent announced `#proto x 1 1` and `#hostname H` before any sample.
 *
 * It never writes to a connection. When a client half-closes, it reads what
 * is left, then ends its side (the FIN an agent waits for on shutdown).
 * {@linkcode IstatdDouble.stop} is an outage: the listener closes, every
 * connection is destroyed and new ones are refused until
 * {@linkcode IstatdDouble.restart} listens again on the same port; what was
 * received stays recorded across both. UDP (which istatd's stat port also
 * takes) is not served: agents forward over TCP.
 *
 * Run as a script it serves until stdin closes or SIGTERM/SIGINT, for
 * benchmarks and for trying the agent by hand: it prints `{"port":N}` first
 * and, when it stops, one more JSON line with what it received
 * ({@linkcode IstatdSummary}):
 *
 *   deno run -A tests/doubles/istatd.ts [--port N]
 *
 * @example
 * ```ts
 * const master = await IstatdDouble.start();
 * // point an agent at master.address ("127.0.0.1:PORT")
 * await master.waitFor((m) => m.totals("app.req")?.sum === 1000, 10_000);
 * await master.stop(); // an outage
 * await master.restart(); // same port
 * await master.close();
 * ```
 * @module
 */

import { Buffer } from "node:buffer";
import { createServer, type Server, type Socket } from "node:net";
import { parseArgs } from "node:util";
import { BUCKET_SECONDS, type Kind, MAX_LINE_BYTES, parseLine } from "../../core/istatd.ts";

/**
 * The most bytes of one line the master buffers: a line is judged by
 * `parseLine` (at most {@linkcode MAX_LINE_BYTES} without trailing CRs); one
 * longer than this is refused without reading it into memory.
 */
export const BUFFERED_LINE_BYTES = 2 * MAX_LINE_BYTES;

/** What the master merged for one counter over one bucket, or over all of them. */
export interface IstatdStats {
  /** Samples merged (for an event counter: forwarded lines, not events). */
  count: number;
  sum: number;
  sumsq: number;
  min: number;
  max: number;
}

/** One merged (counter, bucket). */
export interface IstatdBucket extends IstatdStats {
  readonly name: string;
  readonly kind: Kind;
  /** The bucket's start, unix seconds (a multiple of {@linkcode BUCKET_SECONDS}). */
  readonly time: number;
  /** Lines (after fan-out: samples) merged into it; more than 1 when sent in parts. */
  parts: number;
}

/** A connection to the stat port, as {@linkcode IstatdDouble.connections} reports it. */
export interface IstatdConnection {
  /** 1, 2, ... in the order they were accepted. */
  readonly id: number;
  /** The client's `address:port`. */
  readonly remote: string;
  /** Still connected. */
  readonly open: boolean;
  /** How it ended: the client's FIN (`"end"`), an error or reset, or the master's `stop()`. */
  readonly closedBy: "end" | "error" | "stop" | null;
  /** Every `#key value` line, in order, e.g. `[["proto", "x 1 1"], ["hostname", "web12"]]`. */
  readonly meta: readonly (readonly [string, string])[];
  /** The last value of each metadata key. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Complete lines received (metadata, samples, malformed and empty ones). */
  readonly lines: number;
  /** How many lines came before the first sample line (`#` lines, empty lines). */
  readonly linesBeforeFirstSample: number | null;
  /** Malformed lines. */
  readonly malformed: number;
}

/** A line the master refused. */
export interface IstatdMalformed {
  /** The raw line (at most the first {@linkcode BUFFERED_LINE_BYTES} of an over-long one). */
  readonly line: string;
  /** Why: what `parseLine` said (`line too long: ...`, `bad name ...`), or `kind conflict: ...`. */
  readonly reason: string;
  /** The connection's id. */
  readonly connection: number;
}

/** Options for {@linkcode IstatdDouble.start}. */
export interface IstatdDoubleOptions {
  /** The TCP port on 127.0.0.1; default 0 (a free one). */
  readonly port?: number;
  /** The master's clock in unix seconds, for samples without a time; default the system clock. */
  readonly now?: () => number;
}

/** What the script prints when it stops. */
export interface IstatdSummary {
  /** Complete lines received. */
  readonly lines: number;
  /** Sample lines merged. */
  readonly samples: number;
  /** Distinct counters merged. */
  readonly counters: number;
  /** Malformed lines. */
  readonly malformed: number;
  /** Connections accepted. */
  readonly connections: number;
}

interface ConnState {
  readonly id: number;
  readonly remote: string;
  socket: Socket | null;
  closedBy: "end" | "error" | "stop" | null;
  readonly meta: [string, string][];
  lines: number;
  malformed: number;
  beforeFirstSample: number | null;
  /** Bytes of an unfinished line. */
  pending: Buffer[];
  pendingBytes: number;
  /** The current line is over the limit: skip to its LF. */
  overlong: Buffer | null;
}

interface Waiter {
  readonly check: () => boolean;
  readonly resolve: () => void;
  readonly reject: (e: Error) => void;
  readonly timer: ReturnType<typeof setTimeout>;
}

const LF = 0x0a;
const utf8 = new TextDecoder();

function bucketOf(t: number): number {
  return Math.floor(t / BUCKET_SECONDS) * BUCKET_SECONDS;
}

/** A test istatd master on 127.0.0.1; see the module documentation. */
export class IstatdDouble {
  #server: Server | null = null;
  #port: number;
  #closed = false;
  readonly #now: () => number;
  readonly #conns: ConnState[] = [];
  readonly #lines: string[] = [];
  readonly #malformed: IstatdMalformed[] = [];
  /** name -> bucket time -> merged. */
  readonly #buckets = new Map<string, Map<number, IstatdBucket>>();
  readonly #kinds = new Map<string, Kind>();
  #samples = 0;
  readonly #waiters = new Set<Waiter>();

  private constructor(port: number, now: () => number) {
    this.#port = port;
    this.#now = now;
  }

  /**
   * Starts a master listening on 127.0.0.1.
   *
   * @param options the port (default a free one) and the clock
   */
  static async start(options: IstatdDoubleOptions = {}): Promise<IstatdDouble> {
    const master = new IstatdDouble(options.port ?? 0, options.now ?? (() => Date.now() / 1000));
    await master.#listen();
    return master;
  }

  /** The TCP port it listens on (the same after a restart). */
  get port(): number {
    return this.#port;
  }

  /** `127.0.0.1:PORT`, as an agent's `--forward` takes it. */
  get address(): string {
    return `127.0.0.1:${this.#port}`;
  }

  /** Whether it is listening (false between `stop()` and `restart()`). */
  get listening(): boolean {
    return this.#server !== null;
  }

  #listen(): Promise<void> {
    const server = createServer({ allowHalfOpen: true }, (s) => this.#accept(s));
    return new Promise((resolve, reject) => {
      server.once("error", reject);
      server.listen({ host: "127.0.0.1", port: this.#port }, () => {
        server.off("error", reject);
        const addr = server.address();
        if (addr === null || typeof addr === "string") {
          reject(new Error("Cannot start the istatd double: no TCP address"));
          return;
        }
        this.#port = addr.port;
        this.#server = server;
        resolve();
      });
    });
  }

  #accept(socket: Socket): void {
    if (this.#server === null) {
      socket.destroy();
      return;
    }
    const c: ConnState = {
      id: this.#conns.length + 1,
      remote: `${socket.remoteAddress}:${socket.remotePort}`,
      socket,
      closedBy: null,
      meta: [],
      lines: 0,
      malformed: 0,
      beforeFirstSample: null,
      pending: [],
      pendingBytes: 0,
      overlong: null,
    };
    this.#conns.push(c);
    socket.on("data", (chunk: Buffer) => {
      this.#data(c, chunk);
      this.#check();
    });
    socket.on("end", () => {
      // The client half-closed: what it sent is all here. A final line without LF is not a line.
      if (c.pendingBytes > 0 || c.overlong !== null) {
        const raw = c.overlong ?? Buffer.concat(c.pending);
        c.pending = [];
        c.pendingBytes = 0;
        c.overlong = null;
        this.#refuse(c, utf8.decode(raw), "unterminated line at the end of the connection");
      }
      c.closedBy ??= "end";
      socket.end();
    });
    socket.on("error", () => {
      c.closedBy ??= "error";
    });
    socket.on("close", () => {
      c.closedBy ??= "error";
      c.socket = null;
      this.#check();
    });
    this.#check();
  }

  #data(c: ConnState, chunk: Buffer): void {
    let start = 0;
    for (;;) {
      const lf = chunk.indexOf(LF, start);
      const end = lf < 0 ? chunk.length : lf;
      const piece = chunk.subarray(start, end);
      if (c.overlong !== null) {
        // Skipping the rest of an over-long line.
      } else if (c.pendingBytes + piece.length > BUFFERED_LINE_BYTES) {
        const head = Buffer.concat([...c.pending, piece]).subarray(0, BUFFERED_LINE_BYTES);
        c.overlong = Buffer.from(head);
        c.pending = [];
        c.pendingBytes = 0;
      } else if (piece.length > 0) {
        c.pending.push(Buffer.from(piece));
        c.pendingBytes += piece.length;
      }
      if (lf < 0) return;
      if (c.overlong !== null) {
        this.#refuse(
          c,
          utf8.decode(c.overlong),
          `line too long: more than ${MAX_LINE_BYTES} bytes (${BUFFERED_LINE_BYTES}+ seen)`,
        );
        c.overlong = null;
      } else {
        const bytes = c.pending.length === 1 ? c.pending[0]! : Buffer.concat(c.pending);
        c.pending = [];
        c.pendingBytes = 0;
        this.#line(c, utf8.decode(bytes));
      }
      start = lf + 1;
    }
  }

  #refuse(c: ConnState, line: string, reason: string): void {
    this.#lines.push(line);
    c.lines++;
    c.malformed++;
    this.#malformed.push({ line, reason, connection: c.id });
  }

  #line(c: ConnState, raw: string): void {
    const parsed = parseLine(raw);
    if (parsed.kind === "malformed") {
      this.#refuse(c, raw, parsed.reason);
      return;
    }
    this.#lines.push(raw);
    c.lines++;
    if (parsed.kind === "meta") {
      c.meta.push([parsed.key, parsed.value]);
      return;
    }
    if (parsed.kind === "empty") return;
    for (const s of parsed.samples) {
      const known = this.#kinds.get(s.name);
      if (known !== undefined && known !== s.kind) {
        this.#malformed.push({
          line: raw,
          reason:
            `kind conflict: ${s.name} is ${known === "event" ? "an event counter" : "a gauge"}` +
            `, this line sends it as ${s.kind === "event" ? "an event counter" : "a gauge"}`,
          connection: c.id,
        });
        c.malformed++;
        return;
      }
    }
    c.beforeFirstSample ??= c.lines - 1;
    const now = this.#now();
    for (const s of parsed.samples) {
      this.#kinds.set(s.name, s.kind);
      const time = bucketOf(s.time ?? now);
      let byTime = this.#buckets.get(s.name);
      if (byTime === undefined) this.#buckets.set(s.name, byTime = new Map());
      const b = byTime.get(time);
      if (b === undefined) {
        byTime.set(time, {
          name: s.name,
          kind: s.kind,
          time,
          count: s.count,
          sum: s.sum,
          sumsq: s.sumsq,
          min: s.min,
          max: s.max,
          parts: 1,
        });
      } else {
        b.count += s.count;
        b.sum += s.sum;
        b.sumsq += s.sumsq;
        if (s.min < b.min) b.min = s.min;
        if (s.max > b.max) b.max = s.max;
        b.parts++;
      }
      this.#samples++;
    }
  }

  /** Every complete line received, raw (without its LF), in arrival order, over all connections. */
  received(): readonly string[] {
    return [...this.#lines];
  }

  /** How many complete lines were received (cheaper than `received().length`). */
  get lineCount(): number {
    return this.#lines.length;
  }

  /** Sample lines merged, a fanned-out line counting once per counter. */
  get sampleCount(): number {
    return this.#samples;
  }

  /** The lines refused, in order. */
  malformed(): readonly IstatdMalformed[] {
    return [...this.#malformed];
  }

  /** The counters merged so far, sorted. */
  counters(): string[] {
    return [...this.#buckets.keys()].sort();
  }

  /** The kind a counter was received as, or undefined. */
  kind(name: string): Kind | undefined {
    return this.#kinds.get(name);
  }

  /**
   * One counter's merged bucket, or undefined.
   *
   * @param name the counter (lower-case, after fan-out)
   * @param time any unix time inside the bucket
   */
  bucket(name: string, time: number): IstatdBucket | undefined {
    const b = this.#buckets.get(name)?.get(bucketOf(time));
    return b === undefined ? undefined : { ...b };
  }

  /** All buckets of a counter, oldest first. */
  buckets(name: string): IstatdBucket[] {
    const byTime = this.#buckets.get(name);
    if (byTime === undefined) return [];
    return [...byTime.values()].map((b) => ({ ...b })).sort((a, b) => a.time - b.time);
  }

  /**
   * A counter merged over all its buckets (count, sum and sumsq added, min
   * and max combined), or undefined when nothing was received for it.
   */
  totals(name: string): IstatdStats | undefined {
    const byTime = this.#buckets.get(name);
    if (byTime === undefined) return undefined;
    const t: IstatdStats = { count: 0, sum: 0, sumsq: 0, min: Infinity, max: -Infinity };
    for (const b of byTime.values()) {
      t.count += b.count;
      t.sum += b.sum;
      t.sumsq += b.sumsq;
      if (b.min < t.min) t.min = b.min;
      if (b.max > t.max) t.max = b.max;
    }
    return t;
  }

  /** Every connection accepted so far (also those closed), oldest first. */
  connections(): IstatdConnection[] {
    return this.#conns.map((c) => ({
      id: c.id,
      remote: c.remote,
      open: c.socket !== null,
      closedBy: c.closedBy,
      meta: c.meta.map(([k, v]) => [k, v] as const),
      metadata: Object.fromEntries(c.meta),
      lines: c.lines,
      linesBeforeFirstSample: c.beforeFirstSample,
      malformed: c.malformed,
    }));
  }

  /** What the script prints when it stops. */
  summary(): IstatdSummary {
    return {
      lines: this.#lines.length,
      samples: this.#samples,
      counters: this.#buckets.size,
      malformed: this.#malformed.length,
      connections: this.#conns.length,
    };
  }

  /**
   * Resolves once `predicate` holds, checked now and after every chunk
   * received and every connection opened or closed; rejects after
   * `timeoutMs` with what the master has, or when it is closed.
   *
   * @param predicate called with this master
   * @param timeoutMs default 10,000
   */
  waitFor(predicate: (master: IstatdDouble) => boolean, timeoutMs = 10_000): Promise<void> {
    if (predicate(this)) return Promise.resolve();
    if (this.#closed) return Promise.reject(new Error("The istatd double is closed"));
    return new Promise((resolve, reject) => {
      const w: Waiter = {
        check: () => predicate(this),
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#waiters.delete(w);
          const s = this.summary();
          reject(
            new Error(
              `Timed out after ${timeoutMs} ms waiting on the istatd double at ${this.address}: ` +
                `it has ${s.lines} lines (${s.samples} samples, ${s.malformed} malformed) ` +
                `from ${s.connections} connections, ${s.counters} counters`,
            ),
          );
        }, timeoutMs),
      };
      this.#waiters.add(w);
    });
  }

  #check(): void {
    for (const w of this.#waiters) {
      let ok: boolean;
      try {
        ok = w.check();
      } catch (e) {
        this.#waiters.delete(w);
        clearTimeout(w.timer);
        w.reject(e instanceof Error ? e : new Error(String(e)));
        continue;
      }
      if (ok) {
        this.#waiters.delete(w);
        clearTimeout(w.timer);
        w.resolve();
      }
    }
  }

  /**
   * An outage: closes the listener (new connections are refused) and
   * destroys every connection without reading further. Idempotent.
   */
  async stop(): Promise<void> {
    const server = this.#server;
    this.#server = null;
    const closing: Promise<void>[] = [];
    for (const c of this.#conns) {
      const s = c.socket;
      if (s === null) continue;
      c.closedBy ??= "stop";
      closing.push(new Promise((resolve) => s.once("close", () => resolve())));
      s.destroy();
    }
    if (server !== null) {
      closing.push(new Promise((resolve) => server.close(() => resolve())));
    }
    await Promise.all(closing);
    this.#check();
  }

  /** Listens again on the same port after {@linkcode IstatdDouble.stop}. */
  async restart(): Promise<void> {
    if (this.#closed) throw new Error("Cannot restart the istatd double: it is closed");
    if (this.#server !== null) return;
    await this.#listen();
  }

  /** Stops for good; pending {@linkcode IstatdDouble.waitFor} calls reject. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.stop();
    for (const w of this.#waiters) {
      clearTimeout(w.timer);
      w.reject(new Error(`The istatd double at ${this.address} closed while waited on`));
    }
    this.#waiters.clear();
  }
}

async function serve(args: string[]): Promise<void> {
  const { values } = parseArgs({ args, options: { port: { type: "string", default: "0" } } });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65_535) {
    console.error(`istatd double: --port must be a port number, got "${values.port}"`);
    Deno.exit(2);
  }
  const master = await IstatdDouble.start({ port });
  console.log(JSON.stringify({ port: master.port }));
  await new Promise<void>((resolve) => {
    Deno.addSignalListener("SIGTERM", resolve);
    Deno.addSignalListener("SIGINT", resolve);
    (async () => {
      for await (const _ of Deno.stdin.readable) { /* until stdin closes */ }
      resolve();
    })();
  });
  await master.close();
  console.log(JSON.stringify(master.summary()));
  Deno.exit(0);
}

if (import.meta.main) await serve(Deno.args);
