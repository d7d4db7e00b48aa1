/**
 * The metrics agent's link to one istatd master: streams the spool's
 * batches over TCP in order, commits what the master has surely got, and
 * reconnects with capped exponential backoff when the master goes away.
 *
 * Delivery is at least once. A batch is committed (the spool may forget it
 * for this master) once its bytes were written to the socket and the
 * connection then stayed up for `commitDelayMs`; when the connection breaks,
 * the forwarder reconnects and sends again from the last commit. A master
 * that dies abruptly can so count at most the last `commitDelayMs` of data
 * twice; nothing is lost. (A master host that vanishes without a FIN or RST
 * is noticed only by TCP keepalive or a failing write; what was committed
 * meanwhile is lost with it.)
 *
 * On every connect the forwarder first sends `#proto x 1 1` and
 * `#hostname <host>`. The master never writes to an agent; anything it sends
 * is read and ignored. `close()` sends what is spooled, half-closes, waits
 * for the master's FIN (which means it read everything) and commits.
 *
 * @example
 * ```ts
 * const reader = forwarderReader("istatd1", 8111);
 * const spool = await Spool.open(dir, { maxBytes: 1 << 30, readers: [reader] });
 * const fwd = new Forwarder({ host: "istatd1", port: 8111, spool, hostname: "web12" });
 * fwd.start();
 * await spool.append(lines);
 * fwd.kick();
 * await fwd.close({ timeoutMs: 5000 });
 * await spool.close();
 * ```
 * @module
 */

import net from "node:net";
import { errorMessage } from "../../core/errors.ts";
import type { Spool, SpoolCursor } from "./spool.ts";

/** Capped exponential backoff: the ceiling of attempt n is `min(maxMs, baseMs * 2^n)`. */
export interface Backoff {
  baseMs: number;
  maxMs: number;
}

/** Options for {@linkcode Forwarder}. */
export interface ForwarderOptions {
  /** The master's host. */
  host: string;
  /** The master's TCP stat port. */
  port: number;
  /** The spool, opened with {@linkcode forwarderReader}`(host, port)` among its readers. */
  spool: Spool;
  /** Sent as `#hostname` on every connect. */
  hostname: string;
  /** How long a connection must stay up after a batch was written before it is committed.
   * Default: 1000. */
  commitDelayMs?: number;
  /** Reconnect backoff (full jitter). Default: `{ baseMs: 500, maxMs: 30000 }`. */
  backoff?: Backoff;
  /** A connection that lasted longer than this resets the backoff. Default: 10000. */
  resetAfterMs?: number;
  /** A connect that takes longer fails. Default: 10000. */
  connectTimeoutMs?: number;
  /** Bytes read from the spool (and written) at a time. Default: 256 KiB. */
  readBytes?: number;
  /** Where connects, losses and retries are reported, one line each. Default: nowhere. */
  log?: (line: string) => void;
  /** A number in [0, 1) for the jitter. Default: `Math.random`. */
  random?: () => number;
}

/** What {@linkcode Forwarder.stats} returns. */
export interface ForwarderStats {
  /** Whether a connection is up now. */
  connected: boolean;
  /** Lines written to the master (resent ones again). */
  sentLines: number;
  /** Retries scheduled after a failed connect or a lost connection. */
  reconnects: number;
  /** Connections made. */
  connects: number;
  /** Why the last connection failed or was lost; `null` before any failure. */
  lastError: string | null;
}

/** The spool reader name of the master at `host`:`port` (`[v6]:port` for IPv6). */
export function forwarderReader(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The delay before retry number `attempt` (0 for the first): full jitter,
 * `random() * min(maxMs, baseMs * 2^attempt)`, in whole milliseconds.
 */
export function backoffDelay(attempt: number, backoff: Backoff, random: () => number): number {
  const ceiling = Math.min(backoff.maxMs, backoff.baseMs * 2 ** attempt);
  return Math.floor(random() * ceiling);
}

const PROTO = "#proto x 1 1\n";

interface Conn {
  readonly socket: net.Socket;
  /** Connected and not broken. */
  up: boolean;
  /** Broken or closed; never up again. */
  gone: boolean;
  connectedAt: number;
  /** Where the next read from the spool starts; `null`: at the committed cursor. */
  sendPos: SpoolCursor | null;
  /** The end of the last batch the socket took (write callback without error). */
  lastWritten: SpoolCursor | null;
  /** Batches written and not yet committed, oldest first. */
  written: { cursor: SpoolCursor; at: number }[];
  inflight: number;
  pumping: boolean;
  again: boolean;
  /** We half-closed (close()); the master's FIN now means it read everything. */
  halfClosed: boolean;
  fin: boolean;
  commitTimer: ReturnType<typeof setTimeout> | undefined;
  connectTimer: ReturnType<typeof setTimeout> | undefined;
  /** Resolved at the next change of state (connect, write done, pump idle, FIN, loss). */
  wakers: (() => void)[];
  closed: Promise<void>;
}

/**
 * Streams a {@linkcode Spool} to one istatd master over TCP. Never throws
 * into the caller after construction: failures are retried, logged, and
 * shown in {@linkcode Forwarder.stats}.
 */
export class Forwarder {
  /** The spool reader name of this master. */
  readonly reader: string;
  readonly #host: string;
  readonly #port: number;
  readonly #spool: Spool;
  readonly #hello: string;
  readonly #commitDelayMs: number;
  readonly #backoff: Backoff;
  readonly #resetAfterMs: number;
  readonly #connectTimeoutMs: number;
  readonly #readBytes: number;
  readonly #log: (line: string) => void;
  readonly #random: () => number;
  #conn: Conn | null = null;
  /** The newest connection, up or not (close() waits until its socket is closed). */
  #lastConn: Conn | null = null;
  #started = false;
  #closing = false;
  #closed: Promise<void> | null = null;
  #attempt = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #commits: Promise<void> = Promise.resolve();
  #sentLines = 0;
  #reconnects = 0;
  #connects = 0;
  #lastError: string | null = null;

  /**
   * @throws {RangeError} when `hostname` is empty or has white space, a
   *   number option is out of range, or the spool has no reader for this master
   */
  constructor(options: ForwarderOptions) {
    if (!/^\S+$/.test(options.hostname)) {
      throw new RangeError(`Invalid forwarder hostname: "${options.hostname}"`);
    }
    this.#host = options.host;
    this.#port = options.port;
    this.reader = forwarderReader(options.host, options.port);
    this.#spool = options.spool;
    options.spool.committed(this.reader); // A RangeError now rather than at the first connect.
    this.#hello = `${PROTO}#hostname ${options.hostname}\n`;
    this.#commitDelayMs = nonNegative("commitDelayMs", options.commitDelayMs ?? 1000);
    const backoff = options.backoff ?? { baseMs: 500, maxMs: 30_000 };
    if (!(backoff.baseMs > 0 && backoff.maxMs >= backoff.baseMs && backoff.maxMs < Infinity)) {
      throw new RangeError(
        `Invalid forwarder backoff: baseMs ${backoff.baseMs}, maxMs ${backoff.maxMs} ` +
          "(0 < baseMs <= maxMs)",
      );
    }
    this.#backoff = { ...backoff };
    this.#resetAfterMs = nonNegative("resetAfterMs", options.resetAfterMs ?? 10_000);
    this.#connectTimeoutMs = nonNegative("connectTimeoutMs", options.connectTimeoutMs ?? 10_000);
    this.#readBytes = nonNegative("readBytes", options.readBytes ?? 256 * 1024) || 1;
    this.#log = options.log ?? (() => {});
    this.#random = options.random ?? Math.random;
  }

  /** Connects and starts streaming (once; later calls do nothing). */
  start(): void {
    if (this.#started || this.#closing) return;
    this.#started = true;
    this.#connect();
  }

  /** Tells the forwarder that new data is in the spool. */
  kick(): void {
    const conn = this.#conn;
    if (conn?.up) void this.#pump(conn);
  }

  /** The connection state and counts. */
  stats(): ForwarderStats {
    return {
      connected: this.#conn?.up ?? false,
      sentLines: this.#sentLines,
      reconnects: this.#reconnects,
      connects: this.#connects,
      lastError: this.#lastError,
    };
  }

  /**
   * Stops reconnecting; when connected, sends everything spooled so far,
   * half-closes, waits for the master's FIN, commits everything sent, and
   * closes. Gives up at `timeoutMs` (default 5000): what is not committed
   * then stays in the spool for the next start. Never rejects. Does not
   * close the spool.
   */
  close(options: { timeoutMs?: number } = {}): Promise<void> {
    this.#closed ??= this.#close(options.timeoutMs ?? 5000);
    return this.#closed;
  }

  async #close(timeoutMs: number): Promise<void> {
    this.#closing = true;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
    const conn = this.#lastConn;
    if (!conn) return;
    let timedOut = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const expired = new Promise<void>((resolve) => {
      timer = setTimeout(() => {
        timedOut = true;
        resolve();
      }, timeoutMs);
    });
    const until = async (done: () => boolean) => {
      while (!done() && !conn.gone && !timedOut) {
        await Promise.race([this.#changed(conn), expired]);
      }
      return done();
    };
    try {
      if (await until(() => conn.up) && await this.#drain(conn, until)) {
        conn.halfClosed = true;
        conn.socket.end();
        if (await until(() => conn.fin) && conn.lastWritten) {
          // The master read up to our FIN: it has everything written.
          conn.written = [];
          this.#commit(conn.lastWritten);
          this.#log(`${this.#name()}: closed after the master read everything`);
        }
      }
      if (timedOut) this.#log(`${this.#name()}: close timed out after ${timeoutMs} ms`);
      this.#commitDue(conn);
    } finally {
      clearTimeout(timer);
      this.#down(conn, "closed");
      await conn.closed;
      await this.#commits;
    }
  }

  /** Sends until the spool has nothing more after what was written; false when cut short. */
  async #drain(conn: Conn, until: (done: () => boolean) => Promise<boolean>): Promise<boolean> {
    for (;;) {
      if (!(await until(() => !conn.pumping && conn.inflight === 0))) return false;
      let more: boolean;
      try {
        more = (await this.#spool.read(this.reader, 1, conn.sendPos ?? undefined)) !== null;
      } catch (e) {
        this.#down(conn, `cannot read the spool: ${errorMessage(e)}`);
        return false;
      }
      if (!conn.up) return false;
      if (!more && !conn.pumping && conn.inflight === 0) return true;
      void this.#pump(conn);
    }
  }

  #connect(): void {
    if (this.#closing) return;
    const socket = net.createConnection({ host: this.#host, port: this.#port });
    let onClosed = () => {};
    const conn: Conn = {
      socket,
      up: false,
      gone: false,
      connectedAt: 0,
      sendPos: null,
      lastWritten: null,
      written: [],
      inflight: 0,
      pumping: false,
      again: false,
      halfClosed: false,
      fin: false,
      commitTimer: undefined,
      connectTimer: undefined,
      wakers: [],
      closed: new Promise<void>((resolve) => onClosed = resolve),
    };
    this.#conn = conn;
    this.#lastConn = conn;
    conn.connectTimer = setTimeout(
      () => this.#down(conn, `connect timed out after ${this.#connectTimeoutMs} ms`),
      this.#connectTimeoutMs,
    );
    socket.on("connect", () => {
      clearTimeout(conn.connectTimer);
      if (conn.gone) return;
      conn.up = true;
      conn.connectedAt = performance.now();
      this.#connects++;
      socket.setKeepAlive(true, 10_000);
      this.#log(`${this.#name()}: connected`);
      socket.write(this.#hello);
      this.#wake(conn);
      void this.#pump(conn);
    });
    // A master has nothing to say to an agent: read and ignore it.
    socket.on("data", () => {});
    socket.on("end", () => {
      if (conn.halfClosed) {
        conn.fin = true;
        this.#wake(conn);
      } else this.#down(conn, "the master closed the connection");
    });
    socket.on("error", (e: unknown) => this.#down(conn, errorMessage(e)));
    socket.on("close", () => {
      this.#down(conn, "the connection closed");
      onClosed();
    });
  }

  /** Takes `conn` down for good and, unless closing, schedules the next connect. */
  #down(conn: Conn, reason: string): void {
    if (conn.gone) return;
    const wasUp = conn.up;
    conn.gone = true;
    conn.up = false;
    clearTimeout(conn.connectTimer);
    clearTimeout(conn.commitTimer);
    conn.commitTimer = undefined;
    conn.written = [];
    conn.socket.destroy();
    this.#wake(conn);
    if (this.#conn === conn) this.#conn = null;
    if (this.#closing) return;
    this.#lastError = reason;
    if (wasUp && performance.now() - conn.connectedAt > this.#resetAfterMs) this.#attempt = 0;
    const delay = backoffDelay(this.#attempt, this.#backoff, this.#random);
    this.#attempt++;
    this.#reconnects++;
    this.#log(
      `${this.#name()}: ${wasUp ? "connection lost" : "cannot connect"}: ${reason}; ` +
        `retry ${this.#attempt} in ${delay} ms`,
    );
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#connect();
    }, delay);
  }

  /** Writes spool batches until the spool has no more or the socket wants a rest. */
  async #pump(conn: Conn): Promise<void> {
    if (conn.pumping) {
      conn.again = true;
      return;
    }
    conn.pumping = true;
    try {
      while (conn.up) {
        conn.again = false;
        if (conn.socket.writableNeedDrain) {
          await new Promise<void>((resolve) => {
            conn.socket.once("drain", resolve);
            conn.wakers.push(resolve);
          });
          continue;
        }
        let batch;
        try {
          batch = await this.#spool.read(
            this.reader,
            this.#readBytes,
            conn.sendPos ?? undefined,
          );
        } catch (e) {
          this.#down(conn, `cannot read the spool: ${errorMessage(e)}`);
          return;
        }
        if (!conn.up) return;
        if (batch === null) {
          if (conn.again) continue;
          return;
        }
        const { next, lines } = batch;
        conn.sendPos = next;
        conn.inflight++;
        conn.socket.write(batch.data, (err?: Error | null) => {
          conn.inflight--;
          if (!err && !conn.gone) {
            this.#sentLines += lines;
            conn.lastWritten = next;
            conn.written.push({ cursor: next, at: performance.now() });
            this.#scheduleCommit(conn);
          }
          this.#wake(conn);
        });
      }
    } finally {
      conn.pumping = false;
      this.#wake(conn);
    }
  }

  #scheduleCommit(conn: Conn): void {
    const first = conn.written[0];
    if (conn.commitTimer !== undefined || !first || conn.gone) return;
    const delay = Math.max(0, first.at + this.#commitDelayMs - performance.now());
    conn.commitTimer = setTimeout(() => {
      conn.commitTimer = undefined;
      this.#commitDue(conn);
      this.#scheduleCommit(conn);
    }, Math.ceil(delay));
  }

  /** Commits the newest batch written at least `commitDelayMs` ago, if the connection is up. */
  #commitDue(conn: Conn): void {
    if (!conn.up) return;
    const now = performance.now();
    let due = -1;
    while (
      due + 1 < conn.written.length && conn.written[due + 1]!.at + this.#commitDelayMs <= now
    ) due++;
    if (due < 0) return;
    const { cursor } = conn.written[due]!;
    conn.written.splice(0, due + 1);
    this.#commit(cursor);
  }

  #commit(cursor: SpoolCursor): void {
    this.#commits = this.#commits
      .then(() => this.#spool.commit(this.reader, cursor))
      .catch((e) => this.#log(`${this.#name()}: cannot commit: ${errorMessage(e)}`));
  }

  /** A promise resolved at the next {@linkcode Forwarder.#wake} of `conn`. */
  #changed(conn: Conn): Promise<void> {
    return new Promise((resolve) => conn.wakers.push(resolve));
  }

  #wake(conn: Conn): void {
    const wakers = conn.wakers;
    conn.wakers = [];
    for (const w of wakers) w();
  }

  #name(): string {
    return `metrics forwarder to ${this.reader}`;
  }
}

function nonNegative(name: string, value: number): number {
  if (!(value >= 0) || !Number.isFinite(value)) {
    throw new RangeError(`Invalid forwarder ${name}: ${value}`);
  }
  return value;
}
