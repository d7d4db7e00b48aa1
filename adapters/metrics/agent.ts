/**
 * The metrics agent: istatd lines in on TCP and UDP, aggregated per 10 s
 * bucket (core/istatd.ts), flushed every `flushMs` into a durable spool
 * (spool.ts), and streamed from there to every istatd master by one
 * forwarder each (forwarder.ts). Its own counters and the totals of what it
 * received are served as Prometheus text, with its health, on a loopback
 * HTTP port.
 *
 * What it accepted is not lost: a flush is fsynced to the spool before it
 * is forwarded, a master that is down is caught up from the spool (bounded
 * by `spoolMax`; what had to be dropped is counted and reported), and
 * `stop()` flushes what is still in memory, sends what is spooled and
 * half-closes each master connection. A SIGKILL can lose at most the
 * samples of the last flush interval.
 * @module
 */

import { createSocket, type Socket as UdpSocket } from "node:dgram";
import { createServer, type Server, type Socket } from "node:net";
import {
  Aggregator,
  type IngestStats,
  LineReader,
  type PrometheusMetric,
  prometheusName,
  renderPrometheus,
} from "../../core/istatd.ts";
import { errorMessage } from "../../core/errors.ts";
import { Forwarder, forwarderReader } from "./forwarder.ts";
import { serveMetrics } from "./http.ts";
import { Spool } from "./spool.ts";

/** A master to forward to. */
export interface Master {
  readonly host: string;
  readonly port: number;
}

/** How the agent runs. */
export interface AgentOptions {
  /** The stat port, TCP and UDP (0: a free one, the same number for both when possible). */
  readonly port: number;
  /** Address to listen on (default 127.0.0.1). */
  readonly bind?: string;
  readonly forward: readonly Master[];
  /** Spool directory (needed when forwarding). */
  readonly spoolDir: string;
  /** Spool size bound, bytes. */
  readonly spoolMax: number;
  /** The HTTP port of /metrics and /health (0: a free one); `null`: none. */
  readonly metricsPort: number | null;
  /** How often aggregates go to the spool (default 10 s). */
  readonly flushMs?: number;
  /** Announced to masters as `#hostname`. */
  readonly hostname: string;
  readonly log: (line: string) => void;
  /** Seconds since the epoch (default the real time). */
  readonly nowSec?: () => number;
  /** Forwarder tuning (tests). */
  readonly commitDelayMs?: number;
  readonly backoff?: { readonly baseMs: number; readonly maxMs: number };
}

const AGENT = "coldpack.metrics_agent";
const MALFORMED_LOG_EVERY_MS = 60_000;

/** A running agent. Start it with {@linkcode MetricsAgent.start}; always {@linkcode stop} it. */
export class MetricsAgent {
  /** The TCP and UDP stat ports actually bound. */
  readonly tcpPort: number;
  readonly udpPort: number;
  /** The HTTP port, or `null`. */
  readonly metricsPort: number | null;
  readonly #options: AgentOptions;
  readonly #aggregator: Aggregator;
  readonly #udpReader: LineReader;
  readonly #tcpStats: IngestStats = { lines: 0, samples: 0, malformed: 0, meta: 0 };
  readonly #tcp: Server;
  readonly #udp: UdpSocket;
  readonly #clients = new Set<Socket>();
  readonly #spool: Spool | null;
  readonly #forwarders: Map<string, Forwarder>;
  readonly #http: { close(): Promise<void> } | null;
  readonly #startedAt = Date.now();
  #flushTimer: ReturnType<typeof setInterval> | null = null;
  #flushing: Promise<void> = Promise.resolve();
  #flushedLines = 0;
  #lastMalformedLog = 0;
  #stopped = false;

  private constructor(
    options: AgentOptions,
    parts: {
      aggregator: Aggregator;
      udpReader: LineReader;
      tcp: Server;
      udp: UdpSocket;
      spool: Spool | null;
      forwarders: Map<string, Forwarder>;
      http: { close(): Promise<void>; port: number } | null;
    },
  ) {
    this.#options = options;
    this.#aggregator = parts.aggregator;
    this.#udpReader = parts.udpReader;
    this.#tcp = parts.tcp;
    this.#udp = parts.udp;
    this.#spool = parts.spool;
    this.#forwarders = parts.forwarders;
    this.#http = parts.http;
    this.tcpPort = (parts.tcp.address() as { port: number }).port;
    this.udpPort = parts.udp.address().port;
    this.metricsPort = parts.http?.port ?? null;
  }

  /**
   * Opens the spool, starts the forwarders, binds the stat ports and the
   * HTTP port. A port in use rejects with its error (`EADDRINUSE`).
   */
  static async start(options: AgentOptions): Promise<MetricsAgent> {
    const bind = options.bind ?? "127.0.0.1";
    const aggregator = new Aggregator();
    // Filled in once the agent exists (its malformed-line log).
    let onMalformed: (line: string, reason: string) => void = () => {};
    const readerOptions = { onMalformed: (l: string, r: string) => onMalformed(l, r) };
    const udpReader = new LineReader(aggregator, readerOptions);
    const names = options.forward.map((m) => forwarderReader(m.host, m.port));
    const spool = names.length === 0
      ? null
      : await Spool.open(options.spoolDir, { maxBytes: options.spoolMax, readers: names });
    const tcp = createServer();
    let udp = createSocket({ type: bind.includes(":") ? "udp6" : "udp4" });
    let http: { close(): Promise<void>; port: number } | null = null;
    try {
      await listenTcp(tcp, options.port, bind);
      // A free TCP port is tried for UDP too, so that one number serves both.
      const tcpPort = (tcp.address() as { port: number }).port;
      try {
        await bindUdp(udp, options.port === 0 ? tcpPort : options.port, bind);
      } catch (e) {
        if (options.port !== 0) throw e;
        udp.close();
        udp = createSocket({ type: bind.includes(":") ? "udp6" : "udp4" });
        await bindUdp(udp, 0, bind);
      }
      const forwarders = new Map<string, Forwarder>();
      const agentRef: { agent: MetricsAgent | null } = { agent: null };
      if (options.metricsPort !== null) {
        http = await serveMetrics({
          port: options.metricsPort,
          hostname: "127.0.0.1",
          render: () => agentRef.agent?.prometheus() ?? "",
          health: () => agentRef.agent?.health() ?? { status: "starting" },
        });
      }
      for (const m of options.forward) {
        forwarders.set(
          forwarderReader(m.host, m.port),
          new Forwarder({
            host: m.host,
            port: m.port,
            spool: spool!,
            hostname: options.hostname,
            log: options.log,
            ...(options.commitDelayMs === undefined
              ? {}
              : { commitDelayMs: options.commitDelayMs }),
            ...(options.backoff === undefined ? {} : { backoff: options.backoff }),
          }),
        );
      }
      const agent = new MetricsAgent(options, {
        aggregator,
        udpReader,
        tcp,
        udp,
        spool,
        forwarders,
        http,
      });
      agentRef.agent = agent;
      onMalformed = (line, reason) => agent.#malformed(line, reason);
      agent.#listen();
      for (const f of forwarders.values()) f.start();
      return agent;
    } catch (e) {
      tcp.close();
      try {
        udp.close();
      } catch { /* not bound */ }
      await http?.close();
      await spool?.close();
      throw e;
    }
  }

  #now(): number {
    return this.#options.nowSec?.() ?? Date.now() / 1000;
  }

  #listen(): void {
    this.#udp.on("message", (msg: Uint8Array) => {
      const now = this.#now();
      this.#udpReader.feedBytes(msg, now);
      this.#udpReader.end(now);
    });
    this.#udp.on("error", (e) => this.#options.log(`UDP: ${errorMessage(e)}`));
    this.#tcp.on("connection", (socket: Socket) => {
      this.#clients.add(socket);
      const reader = new LineReader(this.#aggregator, {
        onMalformed: (l, r) => this.#malformed(l, r),
      });
      let counted: IngestStats = { lines: 0, samples: 0, malformed: 0, meta: 0 };
      const account = () => {
        const s = reader.stats;
        this.#tcpStats.lines += s.lines - counted.lines;
        this.#tcpStats.samples += s.samples - counted.samples;
        this.#tcpStats.malformed += s.malformed - counted.malformed;
        this.#tcpStats.meta += s.meta - counted.meta;
        counted = { ...s };
      };
      socket.on("data", (chunk: Uint8Array) => {
        reader.feedBytes(chunk, this.#now());
        account();
        // A sender that never pauses would starve /metrics, the flush and
        // the forwarders: let them run between chunks.
        socket.pause();
        setImmediate(() => socket.resume());
      });
      socket.on("end", () => {
        reader.end(this.#now());
        account();
        socket.end();
      });
      socket.on("error", () => {});
      socket.on("close", () => this.#clients.delete(socket));
    });
    this.#tcp.on("error", (e) => this.#options.log(`TCP: ${errorMessage(e)}`));
    this.#flushTimer = setInterval(() => void this.flush(), this.#options.flushMs ?? 10_000);
  }

  #malformed(line: string, reason: string): void {
    const now = Date.now();
    if (now - this.#lastMalformedLog < MALFORMED_LOG_EVERY_MS) return;
    this.#lastMalformedLog = now;
    this.#options.log(
      `skipped a malformed line (${reason}): ${JSON.stringify(line.slice(0, 120))}` +
        " (one logged a minute; all are counted)",
    );
  }

  /**
   * Moves what was aggregated since the last flush into the spool (fsynced)
   * and wakes the forwarders. Flushes never overlap.
   */
  flush(): Promise<void> {
    this.#flushing = this.#flushing.then(async () => {
      const lines = this.#aggregator.takeLines();
      if (lines.length === 0 || this.#spool === null) return;
      await this.#spool.append(lines);
      this.#flushedLines += lines.length;
      for (const f of this.#forwarders.values()) f.kick();
    }).catch((e) => {
      this.#options.log(`could not write the spool: ${errorMessage(e)}`);
    });
    return this.#flushing;
  }

  /** Lines, samples, malformed and metadata lines received, per protocol. */
  ingest(): { udp: IngestStats; tcp: IngestStats } {
    return { udp: { ...this.#udpReader.stats }, tcp: { ...this.#tcpStats } };
  }

  /** What `/health` answers. */
  health(): Record<string, unknown> {
    const spool = this.#spool?.stats() ?? null;
    const masters = [...this.#forwarders].map(([name, f]) => ({
      master: name,
      ...f.stats(),
      pendingLines: spool?.pending[name] ?? 0,
    }));
    const down = masters.filter((m) => !m.connected).length;
    return {
      status: this.#stopped ? "stopping" : down === 0 ? "ok" : "degraded",
      uptimeSeconds: Math.round((Date.now() - this.#startedAt) / 1000),
      masters,
      spool,
      counters: this.#countNames(),
    };
  }

  /** Its own counters and the totals of every counter it received, as Prometheus text. */
  prometheus(): string {
    const p = (what: string) => prometheusName(`${AGENT}.${what}`);
    const { udp, tcp } = this.ingest();
    const spool = this.#spool?.stats();
    const own: PrometheusMetric[] = [];
    for (const [proto, s] of [["udp", udp], ["tcp", tcp]] as const) {
      own.push(
        {
          name: `${p("lines_received")}_total`,
          help: "istatd lines received",
          type: "counter",
          value: s.lines,
          labels: { proto },
        },
        {
          name: `${p("lines_malformed")}_total`,
          help: "lines skipped as malformed",
          type: "counter",
          value: s.malformed,
          labels: { proto },
        },
        {
          name: `${p("samples")}_total`,
          help: "samples aggregated (after fan-out)",
          type: "counter",
          value: s.samples,
          labels: { proto },
        },
      );
    }
    own.push({
      name: `${p("lines_flushed")}_total`,
      help: "aggregate lines written to the spool",
      type: "counter",
      value: this.#flushedLines,
    });
    if (spool !== undefined) {
      own.push(
        { name: p("spool_bytes"), help: "bytes in the spool", type: "gauge", value: spool.bytes },
        {
          name: `${p("dropped_lines")}_total`,
          help: "aggregate lines dropped because the spool was full (never forwarded)",
          type: "counter",
          value: spool.droppedLines,
        },
        {
          name: `${p("torn_records")}_total`,
          help: "spool records found torn after a crash",
          type: "counter",
          value: spool.tornRecords,
        },
      );
      for (const [name, f] of this.#forwarders) {
        const s = f.stats();
        own.push(
          {
            name: p("master_connected"),
            help: "1 while connected to the master",
            type: "gauge",
            value: s.connected ? 1 : 0,
            labels: { master: name },
          },
          {
            name: `${p("forwarded_lines")}_total`,
            help: "aggregate lines sent to the master",
            type: "counter",
            value: s.sentLines,
            labels: { master: name },
          },
          {
            name: p("pending_lines"),
            help: "aggregate lines spooled for the master, not yet confirmed sent",
            type: "gauge",
            value: spool.pending[name] ?? 0,
            labels: { master: name },
          },
        );
      }
    }
    const refused = this.#aggregator.refused;
    for (const [why, n] of [["kind", refused.kind], ["too_many", refused.tooMany]] as const) {
      own.push({
        name: `${p("samples_refused")}_total`,
        help: "samples refused: a name already used with the other kind, or too many counters",
        type: "counter",
        value: n,
        labels: { why },
      });
    }
    own.push({
      name: p("counters"),
      help: "distinct counters received",
      type: "gauge",
      value: this.#countNames(),
    });
    const received: PrometheusMetric[] = [];
    for (const t of this.#aggregator.totals()) {
      const name = prometheusName(t.name);
      if (t.kind === "event") {
        received.push({ name: `${name}_total`, type: "counter", value: t.sum });
      } else {
        received.push({ name, type: "gauge", value: t.last });
      }
    }
    return renderPrometheus(own) + renderPrometheus(received);
  }

  #countNames(): number {
    return this.#aggregator.counters;
  }

  /**
   * Stops: no more input (the stat ports close; TCP clients get what they
   * sent read to the end), a last flush, then each forwarder sends what is
   * spooled and half-closes, within `timeoutMs` (default 10 s); what a
   * master did not take stays in the spool for the next start.
   */
  async stop(options: { timeoutMs?: number } = {}): Promise<void> {
    if (this.#stopped) return;
    this.#stopped = true;
    if (this.#flushTimer !== null) clearInterval(this.#flushTimer);
    const tcpClosed = new Promise<void>((resolve) => this.#tcp.close(() => resolve()));
    for (const c of this.#clients) c.end();
    await new Promise<void>((resolve) => this.#udp.close(() => resolve()));
    // Clients that do not finish in time are cut off; what they sent so far counts.
    const cut = setTimeout(() => {
      for (const c of this.#clients) c.destroy();
    }, 2_000);
    await tcpClosed;
    clearTimeout(cut);
    await this.flush();
    const timeoutMs = options.timeoutMs ?? 10_000;
    await Promise.all([...this.#forwarders.values()].map((f) => f.close({ timeoutMs })));
    await this.#http?.close();
    await this.#spool?.close();
  }
}

function listenTcp(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen({ port, host }, () => {
      server.off("error", reject);
      resolve();
    });
  });
}

function bindUdp(socket: UdpSocket, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    socket.once("error", reject);
    socket.bind(port, host, () => {
      socket.off("error", reject);
      resolve();
    });
  });
}
