/**
 * The `Metrics` port over UDP to the local metrics agent, in istatd's line
 * protocol (docs: PROTOCOLS.md section 5): a count is an event counter line
 * `*name value`, a gauge `name value`, a timing `name value` in seconds.
 *
 * Lines are batched into datagrams of at most 1,400 bytes (below any
 * path's MTU, so nothing is fragmented), sent when a datagram is full or
 * 250 ms after its first line, and on {@linkcode IstatdClient.close}. A
 * daemon never waits on its metrics and is never failed by them: a send
 * error is counted and logged at most once a minute, and when the kernel
 * does not take datagrams as fast as they come (more than 64 in flight),
 * the surplus is dropped and counted. UDP to a local agent that is down
 * loses the samples, by design: the agent, not the daemon, spools; and
 * datagrams may arrive in another order than sent (the agent aggregates,
 * so order does not matter).
 *
 * Names must be istatd names: lower-case `[a-z0-9_.-]`, at most 200
 * characters. Upper case is lower-cased and any other character becomes
 * `_`, with one warning per name; a name with nothing valid in it, or a
 * value that is not a finite number, is dropped with one warning.
 *
 * @example
 * ```ts
 * const metrics = new IstatdClient({ port: 8111 });
 * metrics.count("coldpack.backup.files_archived", 12);
 * metrics.timing("coldpack.backup.upload_seconds", 1.25);
 * await metrics.close();
 * ```
 * @module
 */

import dgram from "node:dgram";
import type { Metrics } from "../../core/ports.ts";

/** Options of {@linkcode IstatdClient}. */
export interface IstatdClientOptions {
  /** The agent's UDP port (the agent's default is 8111). */
  readonly port: number;
  /** The agent's address (default `127.0.0.1`). */
  readonly host?: string;
  /** Send a datagram this long after its first line at the latest, ms (default 250). */
  readonly flushMs?: number;
  /** Largest datagram, bytes (default 1,400). */
  readonly maxDatagram?: number;
  /** Datagrams handed to the socket and not yet sent, at most (default 64); beyond: dropped. */
  readonly maxInFlight?: number;
  /** Warnings: bad names, send errors (at most one a minute). Default: none. */
  readonly log?: (line: string) => void;
  /** Milliseconds now, for the once-a-minute error log (default `Date.now`). */
  readonly now?: () => number;
}

/** What an {@linkcode IstatdClient} did, for health reports and tests. */
export interface IstatdClientStats {
  /** Lines handed to the socket. */
  readonly lines: number;
  readonly datagrams: number;
  /** Sends that failed (the lines of those datagrams are lost). */
  readonly sendErrors: number;
  /** Lines dropped: too many datagrams in flight, bad values, unusable names, after close. */
  readonly dropped: number;
  /** Calls whose name had to be changed to be a valid istatd name. */
  readonly renamed: number;
}

/** Longest metric name accepted. */
export const MAX_NAME_LENGTH = 200;
/** At least one letter or digit, and nothing outside `[a-z0-9_.-]`. */
const VALID_NAME = /^[_.-]*[a-z0-9][a-z0-9_.-]*$/;
const ERROR_LOG_EVERY_MS = 60_000;
/** Bad names remembered (one warning each); beyond, further ones are handled without a warning. */
const MAX_REMEMBERED_NAMES = 1_000;

/**
 * The name to send for `name`, or `null` when nothing valid is left:
 * lower-cased, every character outside `[a-z0-9_.-]` replaced by `_`.
 */
export function istatdName(name: string): string | null {
  if (name.length <= MAX_NAME_LENGTH && VALID_NAME.test(name)) return name;
  const fixed = name.toLowerCase().replace(/[^a-z0-9_.-]/g, "_").slice(0, MAX_NAME_LENGTH);
  return VALID_NAME.test(fixed) ? fixed : null;
}

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function loopback(host: string): boolean {
  return host === "localhost" || host === "::1" || /^127\.\d+\.\d+\.\d+$/.test(host);
}

/** Sends metrics to the local istatd agent over UDP. Never throws into its caller. */
export class IstatdClient implements Metrics {
  readonly #host: string;
  readonly #port: number;
  readonly #flushMs: number;
  readonly #max: number;
  readonly #maxInFlight: number;
  readonly #log: (line: string) => void;
  readonly #now: () => number;
  #socket: dgram.Socket | null = null;
  /** Lines of the datagram being filled, each ending in LF. */
  #batch = "";
  #batchBytes = 0;
  #batchLines = 0;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #inFlight = 0;
  #drained: (() => void) | null = null;
  #closed = false;
  /** Set when no socket could be opened: every sample is dropped. */
  #broken = false;
  #lastErrorLog = -Infinity;
  /** Bad name -> what is sent instead (`null`: dropped); each warned about once. */
  readonly #renames = new Map<string, string | null>();
  #stats = { lines: 0, datagrams: 0, sendErrors: 0, dropped: 0, renamed: 0 };

  /** Sends nothing until the first sample; the socket is created then. */
  constructor(options: IstatdClientOptions) {
    if (!Number.isInteger(options.port) || options.port < 1 || options.port > 65535) {
      throw new RangeError(`Invalid metrics agent port: ${options.port} (expected 1 to 65535)`);
    }
    this.#host = options.host ?? "127.0.0.1";
    this.#port = options.port;
    this.#flushMs = options.flushMs ?? 250;
    this.#max = options.maxDatagram ?? 1400;
    this.#maxInFlight = options.maxInFlight ?? 64;
    this.#log = options.log ?? (() => {});
    this.#now = options.now ?? Date.now;
  }

  /** Where the samples go, `host:port`. */
  get target(): string {
    return `${this.#host.includes(":") ? `[${this.#host}]` : this.#host}:${this.#port}`;
  }

  /** Adds `value` (default 1) to the event counter `name`: `*name value`. */
  count(name: string, value = 1): void {
    this.#add("*", name, value);
  }

  /** Records the current value of `name`: `name value`. */
  gauge(name: string, value: number): void {
    this.#add("", name, value);
  }

  /** Records a duration of `seconds`: `name value`. */
  timing(name: string, seconds: number): void {
    this.#add("", name, seconds);
  }

  /** What it did so far. */
  stats(): IstatdClientStats {
    return { ...this.#stats };
  }

  /** Sends the datagram being filled now. */
  flush(): void {
    this.#clearTimer();
    if (this.#batchLines === 0) return;
    const text = this.#batch;
    const lines = this.#batchLines;
    this.#batch = "";
    this.#batchBytes = 0;
    this.#batchLines = 0;
    this.#send(text, lines);
  }

  /**
   * Sends what is batched, waits until every datagram was handed to the
   * network (or failed), then closes the socket. Samples after close are
   * dropped. Never rejects.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.flush();
    this.#closed = true;
    if (this.#inFlight > 0) await new Promise<void>((resolve) => this.#drained = resolve);
    const socket = this.#socket;
    this.#socket = null;
    if (socket !== null) {
      await new Promise<void>((resolve) => {
        try {
          socket.close(() => resolve());
        } catch {
          resolve();
        }
      });
    }
  }

  #add(prefix: "*" | "", rawName: string, value: number): void {
    try {
      if (this.#closed) {
        this.#stats.dropped++;
        return;
      }
      const name = this.#name(rawName);
      if (name === null) {
        this.#stats.dropped++;
        return;
      }
      if (typeof value !== "number" || !Number.isFinite(value)) {
        this.#stats.dropped++;
        this.#warnOnce(
          `value:${name}`,
          `Metric ${name}: dropped a value that is not a finite number (${String(value)})`,
        );
        return;
      }
      const line = `${prefix}${name} ${String(value)}\n`;
      // Names are ASCII after the check above, so characters are bytes.
      const bytes = line.length;
      if (this.#batchBytes + bytes > this.#max) this.flush();
      this.#batch += line;
      this.#batchBytes += bytes;
      this.#batchLines++;
      if (this.#batchBytes >= this.#max) this.flush();
      else if (this.#timer === null) {
        const timer = this.#timer = setTimeout(() => {
          this.#timer = null;
          this.flush();
        }, this.#flushMs);
        // A pending flush must not keep a finished program alive.
        Deno.unrefTimer(timer);
      }
    } catch (e) {
      // Metrics never fail the daemon.
      this.#stats.dropped++;
      this.#error(e, 0, false);
    }
  }

  #name(raw: string): string | null {
    if (raw.length <= MAX_NAME_LENGTH && VALID_NAME.test(raw)) return raw;
    const known = this.#renames.get(raw);
    if (known !== undefined) {
      if (known !== null) this.#stats.renamed++;
      return known;
    }
    const fixed = istatdName(String(raw));
    if (this.#renames.size < MAX_REMEMBERED_NAMES) {
      this.#renames.set(raw, fixed);
      this.#log(
        fixed === null
          ? `Metric name ${JSON.stringify(raw)} has no valid character: dropped`
          : `Metric name ${JSON.stringify(raw)} is not a valid istatd name ` +
            `(lower-case a-z 0-9 _ . -, at most ${MAX_NAME_LENGTH}): sent as ${fixed}`,
      );
    }
    if (fixed !== null) this.#stats.renamed++;
    return fixed;
  }

  #warnOnce(key: string, line: string): void {
    if (this.#renames.has(key) || this.#renames.size >= MAX_REMEMBERED_NAMES) return;
    this.#renames.set(key, null);
    this.#log(line);
  }

  #send(text: string, lines: number): void {
    if (this.#inFlight >= this.#maxInFlight) {
      this.#stats.dropped += lines;
      return;
    }
    if (this.#broken) {
      this.#stats.dropped += lines;
      return;
    }
    try {
      const socket = this.#socket ??= this.#open();
      this.#inFlight++;
      this.#stats.datagrams++;
      this.#stats.lines += lines;
      socket.send(text, this.#port, this.#host, (err) => {
        if (err) this.#error(err, lines);
        this.#inFlight--;
        if (this.#inFlight === 0 && this.#drained !== null) {
          const resolve = this.#drained;
          this.#drained = null;
          resolve();
        }
      });
    } catch (e) {
      if (this.#socket === null) {
        // No socket can be had: this client is done, said once.
        this.#broken = true;
        this.#stats.dropped += lines;
        this.#log(`Cannot send metrics to ${this.target}: ${errorText(e)}; metrics are off`);
        return;
      }
      this.#error(e, lines);
    }
  }

  #open(): dgram.Socket {
    const v6 = this.#host.includes(":");
    // Bound on purpose: to loopback for a local agent (which needs no wider
    // network permission), else to any address. Sends wait for the bind.
    const from = loopback(this.#host) ? (v6 ? "::1" : "127.0.0.1") : (v6 ? "::" : "0.0.0.0");
    // Deno reports a missing permission to bind from a callback nobody can
    // catch, which would end the daemon: ask first, and send nothing without.
    for (const host of [`${from}:0`, this.target]) {
      if (Deno.permissions.querySync({ name: "net", host }).state !== "granted") {
        throw new Error(`no network permission for ${host} (--allow-net)`);
      }
    }
    const socket = dgram.createSocket(v6 ? "udp6" : "udp4");
    // Without a listener an error event would end the process.
    socket.on("error", (e) => this.#error(e));
    socket.bind(0, from);
    return socket;
  }

  #error(e: unknown, lines = 0, send = true): void {
    if (send) this.#stats.sendErrors++;
    this.#stats.dropped += lines;
    const now = this.#now();
    if (now - this.#lastErrorLog < ERROR_LOG_EVERY_MS) return;
    this.#lastErrorLog = now;
    this.#log(
      `Cannot send metrics to ${this.target}: ${errorText(e)} ` +
        `(${this.#stats.sendErrors} send errors, ${this.#stats.dropped} samples dropped so far; ` +
        "told at most once a minute)",
    );
  }

  #clearTimer(): void {
    if (this.#timer === null) return;
    clearTimeout(this.#timer);
    this.#timer = null;
  }
}
