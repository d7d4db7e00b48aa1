/**
 * The metrics agent's settings: flag > environment > config file > default,
 * like every coldpack program (core/config.ts). Pure.
 * @module
 */

import { COMMON_SETTINGS, defaultStateDir, resolveSettings, type Settings } from "./config.ts";
import { parseDuration } from "./duration.ts";
import { parseSize } from "./size.ts";

/** A master as `HOST:PORT`. */
export interface HostPort {
  readonly host: string;
  readonly port: number;
}

function text(raw: unknown): string {
  if (typeof raw === "string") return raw.trim();
  if (typeof raw === "number") return String(raw);
  throw new TypeError(`expected a string, got ${Array.isArray(raw) ? "a list" : typeof raw}`);
}

function port(raw: unknown): number {
  const n = typeof raw === "number" ? raw : Number(text(raw));
  if (!Number.isInteger(n) || n < 0 || n > 65_535) {
    throw new RangeError(`must be a port number from 0 to 65535, got ${String(raw)}`);
  }
  return n;
}

/** `HOST:PORT` (a bracketed IPv6 host allowed); the port is required. */
export function parseHostPort(s: string): HostPort {
  const m = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/.exec(s.trim());
  const p = m === null ? NaN : Number(m[2]);
  if (m === null || p < 1 || p > 65_535) {
    throw new RangeError(`"${s}" is not HOST:PORT (e.g. istatd.example.com:8111)`);
  }
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port: p };
}

/** The agent's own settings. */
export const AGENT_SETTINGS = {
  port: {
    flag: "port",
    env: "COLDPACK_AGENT_PORT",
    file: "agent_port",
    help: "the istatd stat port, TCP and UDP (default 8111)",
    parse: port,
  },
  bind: {
    flag: "bind",
    env: "COLDPACK_AGENT_BIND",
    file: "agent_bind",
    help: "the address the stat port listens on (default 127.0.0.1: this host only)",
    parse: (raw: unknown) => {
      const s = text(raw);
      if (!/^[0-9a-fA-F:.]+$|^[A-Za-z0-9.-]+$/.test(s)) {
        throw new RangeError(`"${s}" is not an address`);
      }
      return s;
    },
  },
  forward: {
    flag: "forward",
    env: "COLDPACK_AGENT_FORWARD",
    file: "agent_forward",
    help: "istatd masters, HOST:PORT[,HOST:PORT] (each gets every line); default none",
    parse: (raw: unknown): HostPort[] => {
      const list = Array.isArray(raw) ? raw.map(text) : text(raw).split(",");
      const out = list.map((s) => s.trim()).filter((s) => s !== "").map(parseHostPort);
      const names = out.map((m) => `${m.host}:${m.port}`);
      const twice = names.find((n, i) => names.indexOf(n) !== i);
      if (twice !== undefined) throw new RangeError(`${twice} is given twice`);
      return out;
    },
  },
  spool: {
    flag: "spool",
    env: "COLDPACK_AGENT_SPOOL",
    file: "agent_spool",
    help: "directory of the spool (default STATE_DIR/metrics-spool)",
    parse: (raw: unknown) => {
      const s = text(raw);
      if (!s.startsWith("/")) throw new RangeError(`"${s}" is not an absolute path`);
      return s;
    },
  },
  spoolMax: {
    flag: "spool-max",
    env: "COLDPACK_AGENT_SPOOL_MAX",
    file: "agent_spool_max",
    help: "the spool's size bound; past it the oldest lines are dropped and counted " +
      "(default 256MiB)",
    parse: (raw: unknown) => {
      const n = typeof raw === "number" ? raw : parseSize(text(raw));
      if (!Number.isSafeInteger(n) || n < 64 * 1024) {
        throw new RangeError(`must be at least 64KiB, got ${String(raw)}`);
      }
      return n;
    },
  },
  metricsPort: {
    flag: "metrics-port",
    env: "COLDPACK_AGENT_METRICS_PORT",
    file: "agent_metrics_port",
    help: "HTTP port of /metrics and /health, on 127.0.0.1 (default 8112; 0: a free one)",
    parse: port,
  },
  flush: {
    flag: "flush",
    env: "COLDPACK_AGENT_FLUSH",
    file: "agent_flush",
    help: "how often aggregates go to the spool and on to the masters (default 10s); " +
      "a SIGKILL loses at most this much",
    parse: (raw: unknown) => {
      const ms = typeof raw === "number" ? raw * 1000 : parseDuration(text(raw));
      if (!(ms >= 100 && ms <= 60_000)) throw new RangeError("must be from 100ms to 60s");
      return ms;
    },
  },
  hostname: {
    flag: "hostname",
    env: "COLDPACK_AGENT_HOSTNAME",
    file: "agent_hostname",
    help: "the name announced to masters as #hostname (default this host's name)",
    parse: (raw: unknown) => {
      const s = text(raw);
      if (!/^[A-Za-z0-9._-]{1,253}$/.test(s)) throw new RangeError(`"${s}" is not a host name`);
      return s;
    },
  },
} as const satisfies Settings;

/** The agent's configuration, every value decided. */
export interface AgentConfig {
  readonly port: number;
  readonly bind: string;
  readonly forward: readonly HostPort[];
  readonly spoolDir: string;
  readonly spoolMax: number;
  readonly metricsPort: number;
  readonly flushMs: number;
  /** `null`: the caller asks the system. */
  readonly hostname: string | null;
}

/**
 * Resolves the agent's settings; the config file may hold every other
 * program's keys too (one file serves them all).
 *
 * @param otherFileKeys config file keys of other programs, accepted and ignored
 */
export function resolveAgentConfig(
  inputs: Parameters<typeof resolveSettings>[1],
  otherFileKeys: readonly string[],
): AgentConfig {
  const { values: v } = resolveSettings(AGENT_SETTINGS, inputs, {
    allowFileKeys: [...Object.values(COMMON_SETTINGS).map((s) => s.file), ...otherFileKeys],
  });
  const { values: common } = resolveSettings({ stateDir: COMMON_SETTINGS.stateDir }, inputs, {
    allowFileKeys: [
      ...Object.values(AGENT_SETTINGS).map((s) => s.file),
      ...Object.values(COMMON_SETTINGS).map((s) => s.file),
      ...otherFileKeys,
    ],
  });
  const stateDir = common.stateDir ?? defaultStateDir(inputs.env);
  return {
    port: v.port ?? 8111,
    bind: v.bind ?? "127.0.0.1",
    forward: v.forward ?? [],
    spoolDir: v.spool ?? `${stateDir}/metrics-spool`,
    spoolMax: v.spoolMax ?? 256 * 1024 * 1024,
    metricsPort: v.metricsPort ?? 8112,
    flushMs: v.flush ?? 10_000,
    hostname: v.hostname ?? null,
  };
}
