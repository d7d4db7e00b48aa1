/**
 * Configuration: every setting can come from a flag, an environment variable
 * or the config file; flags win over the environment, which wins over the
 * file, which wins over the default. A bad value is a {@linkcode ConfigError}
 * that names where it came from (`--target-size`, `COLDPACK_MAX_AGE`,
 * `/etc/coldpack.toml: fetchers`).
 *
 * Pure: the caller reads the file and the environment and passes them in.
 * @module
 */

import { ConfigError } from "./errors.ts";
import { DEFAULT_MAX_AGE_MS, DEFAULT_TARGET_SIZE } from "./bundler.ts";
import { parseSize } from "./size.ts";
import { parseDuration } from "./duration.ts";

/** One setting and how to read it. */
export interface Setting<T> {
  /** Flag name without dashes, e.g. `target-size`. */
  readonly flag: string;
  /** Environment variable, e.g. `COLDPACK_TARGET_SIZE`. */
  readonly env: string;
  /** Config file key, e.g. `target_size`. */
  readonly file: string;
  /** One line for `--help` and docs/configuration.md. */
  readonly help: string;
  /** Turns a raw value (string from flag/env, any JSON/TOML value from the file) into T. */
  readonly parse: (raw: unknown) => T;
}

/** Where a setting's value came from. */
export type Origin = "flag" | "env" | "file" | "default";

/** What the caller collected. */
export interface ConfigInputs {
  /** Flag values by flag name (`target-size`), as strings; absent when not given. */
  readonly flags: Readonly<Record<string, string | undefined>>;
  readonly env: Readonly<Record<string, string | undefined>>;
  /** The parsed config file, if any. */
  readonly file?: { readonly path: string; readonly values: Readonly<Record<string, unknown>> };
}

function text(raw: unknown): string {
  if (typeof raw === "string") return raw;
  if (typeof raw === "number") return String(raw);
  throw new TypeError(`expected a string, got ${describe(raw)}`);
}

function describe(raw: unknown): string {
  return Array.isArray(raw) ? "a list" : raw === null ? "null" : `a ${typeof raw}`;
}

function nonEmpty(raw: unknown): string {
  const s = text(raw).trim();
  if (s === "") throw new RangeError("must not be empty");
  return s;
}

function size(raw: unknown): number {
  const n = typeof raw === "number" ? raw : parseSize(text(raw));
  if (!Number.isSafeInteger(n) || n < 1) throw new RangeError(`must be at least 1 byte, got ${n}`);
  return n;
}

/** Seconds as a bare number (`30`), or a duration with a unit (`5s`, `500ms`, `2m`). */
function duration(raw: unknown): number {
  const ms = typeof raw === "number" ? raw * 1000 : parseDuration(text(raw));
  if (!Number.isFinite(ms) || ms < 0) throw new RangeError(`must not be negative, got ${raw}`);
  return ms;
}

function yesNo(raw: unknown): boolean {
  if (typeof raw === "boolean") return raw;
  const t = text(raw).trim().toLowerCase();
  if (["true", "yes", "on", "1"].includes(t)) return true;
  if (["false", "no", "off", "0"].includes(t)) return false;
  throw new RangeError(`must be true or false, got ${JSON.stringify(raw)}`);
}

function count(min: number, max: number) {
  return (raw: unknown): number => {
    const n = typeof raw === "number" ? raw : Number(text(raw).trim());
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new RangeError(`must be a whole number from ${min} to ${max}, got ${String(raw)}`);
    }
    return n;
  };
}

/** Settings shared by every binary that touches the catalog and the store. */
export const COMMON_SETTINGS = {
  source: {
    flag: "source",
    env: "COLDPACK_SOURCE",
    file: "source",
    help:
      "what to back up: DIR, file:///DIR, mogilefs://TRACKER:7001[,TRACKER2:7001]/DOMAIN (no DOMAIN: every domain), s3://BUCKET/PREFIX",
    parse: nonEmpty,
  },
  store: {
    flag: "store",
    env: "COLDPACK_STORE",
    file: "store",
    help: "where archives go: file:///VAULT (default STATE_DIR/vault), glacier://REGION/VAULT " +
      "or s3://BUCKET/PREFIX?storage-class=DEEP_ARCHIVE|GLACIER|GLACIER_IR",
    parse: nonEmpty,
  },
  catalog: {
    flag: "catalog",
    env: "COLDPACK_CATALOG",
    file: "catalog",
    help: "the catalog: sqlite:///PATH.db (default STATE_DIR/catalog.db) or " +
      "mysql://USER@HOST:PORT/DB (password from COLDPACK_MYSQL_PASSWORD or mysql_password " +
      "in the config file, never a flag)",
    parse: nonEmpty,
  },
  autoMigrate: {
    flag: "auto-migrate",
    env: "COLDPACK_AUTO_MIGRATE",
    file: "auto_migrate",
    help: "bring the catalog schema up to date on start: true or false " +
      "(default true; false: run coldpack-admin migrate yourself)",
    parse: yesNo,
  },
  storeAttempts: {
    flag: "store-attempts",
    env: "COLDPACK_STORE_ATTEMPTS",
    file: "store_attempts",
    help: "tries of one store or catalog call on throttling, timeouts, 5xx and resets " +
      "(default 8; other errors stop at once)",
    parse: count(1, 100),
  },
  storeTimeout: {
    flag: "store-timeout",
    env: "COLDPACK_STORE_TIMEOUT",
    file: "store_timeout",
    help: "give up one archive upload after this long and try again, e.g. 30m (default 30m)",
    parse: duration,
  },
  stateDir: {
    flag: "state-dir",
    env: "COLDPACK_STATE_DIR",
    file: "state_dir",
    help: "where the embedded default keeps its catalog, vault and spool " +
      "(default $XDG_STATE_HOME/coldpack or ~/.local/state/coldpack)",
    parse: (raw: unknown) => {
      const s = nonEmpty(raw);
      if (!s.startsWith("/")) throw new RangeError(`must be an absolute path, got "${s}"`);
      return s.replace(/\/+$/, "") || "/";
    },
  },
} as const satisfies Record<string, Setting<unknown>>;

/** Where a daemon's metrics go: the local istatd agent, its own `/metrics`. */
export const METRICS_SETTINGS = {
  metricsAgent: {
    flag: "metrics-agent",
    env: "COLDPACK_METRICS_AGENT",
    file: "metrics_agent",
    help: "send counters to the metrics agent at HOST:PORT over UDP, e.g. 127.0.0.1:8111 " +
      "(default: none)",
    parse: hostPort,
  },
  metricsPort: {
    flag: "metrics-port",
    env: "COLDPACK_METRICS_PORT",
    file: "metrics_port",
    help: "serve /metrics (Prometheus text) and /health on 127.0.0.1:PORT (default: none)",
    parse: count(0, 65535),
  },
} as const satisfies Record<string, Setting<unknown>>;

/** `HOST:PORT` (`[V6]:PORT` for an IPv6 address). */
function hostPort(raw: unknown): { readonly host: string; readonly port: number } {
  const s = nonEmpty(raw);
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(s);
  const port = Number(m?.[3]);
  if (m === null || port < 1 || port > 65535) {
    throw new RangeError(`expected HOST:PORT (port 1 to 65535), got "${s}"`);
  }
  return { host: m[1] ?? m[2]!, port };
}

/** Settings of the backup daemon. */
export const BACKUP_SETTINGS = {
  ...COMMON_SETTINGS,
  targetSize: {
    flag: "target-size",
    env: "COLDPACK_TARGET_SIZE",
    file: "target_size",
    help: "close a bundle at this size (default 25MiB)",
    parse: size,
  },
  maxAge: {
    flag: "max-age",
    env: "COLDPACK_MAX_AGE",
    file: "max_age",
    help: "close a bundle when its oldest file waited this long, seconds or 5s/2m (default 30)",
    parse: duration,
  },
  workers: {
    flag: "workers",
    env: "COLDPACK_WORKERS",
    file: "workers",
    help:
      "threads that read, digest and pack files of a directory source (default: CPU count, at most 8)",
    parse: count(1, 64),
  },
  fetchers: {
    flag: "fetchers",
    env: "COLDPACK_FETCHERS",
    file: "fetchers",
    help: "files read ahead within a bundle (default 8)",
    parse: count(1, 256),
  },
  uploaders: {
    flag: "uploaders",
    env: "COLDPACK_UPLOADERS",
    file: "uploaders",
    help: "archives uploaded at once (default 2)",
    parse: count(1, 64),
  },
  rescan: {
    flag: "rescan",
    env: "COLDPACK_RESCAN",
    file: "rescan",
    help:
      "list the whole source this often, besides watching or polling it (default: 60s for a directory, 1h for MogileFS and S3)",
    parse: duration,
  },
  poll: {
    flag: "poll",
    env: "COLDPACK_POLL",
    file: "poll",
    help: "MogileFS: look for new fids this often (default 1s)",
    parse: duration,
  },
  buffer: {
    flag: "buffer",
    env: "COLDPACK_BUFFER",
    file: "buffer",
    help: "bytes of bundles being packed or uploaded at most (default 64MiB)",
    parse: size,
  },
  owner: {
    flag: "owner",
    env: "COLDPACK_OWNER",
    file: "owner",
    help: "this daemon's name in the catalog's leases (default backup@HOSTNAME); daemons " +
      "sharing one catalog need distinct names",
    parse: nonEmpty,
  },
  leaseTtl: {
    flag: "lease-ttl",
    env: "COLDPACK_LEASE_TTL",
    file: "lease_ttl",
    help: "how long a dead daemon's claimed files and discovery turn stay its own before " +
      "another daemon takes them over (default 60s)",
    parse: duration,
  },
  shutdownTimeout: {
    flag: "shutdown-timeout",
    env: "COLDPACK_SHUTDOWN_TIMEOUT",
    file: "shutdown_timeout",
    help: "on SIGTERM, finish in-flight archives for at most this long (default 60s)",
    parse: duration,
  },
  ...METRICS_SETTINGS,
} as const satisfies Record<string, Setting<unknown>>;

/** Settings table type. */
export type Settings = Record<string, Setting<unknown>>;

/** The resolved values of a settings table: `undefined` where nothing was given. */
export type Resolved<S extends Settings> = {
  [K in keyof S]: S[K] extends Setting<infer T> ? T | undefined : never;
};

/**
 * Resolves a settings table from flags, environment and file. Unknown keys
 * in the file are an error (a typo must not be silently ignored); keys in
 * `allowFileKeys` belong to other binaries sharing the file and pass.
 *
 * @example
 * ```ts
 * const r = resolveSettings(BACKUP_SETTINGS, { flags: { "target-size": "1MiB" }, env: {} });
 * r.values.targetSize; // 1048576
 * ```
 */
export function resolveSettings<S extends Settings>(
  settings: S,
  inputs: ConfigInputs,
  options: { allowFileKeys?: readonly string[] } = {},
): { values: Resolved<S>; origins: Record<keyof S, Origin> } {
  const file = inputs.file;
  if (file) {
    const known = new Set([
      ...Object.values(settings).map((s) => s.file),
      ...(options.allowFileKeys ?? []),
    ]);
    for (const key of Object.keys(file.values)) {
      if (!known.has(key)) {
        throw new ConfigError(`${file.path}: ${key}`, `unknown setting "${key}"`);
      }
    }
  }
  const values: Record<string, unknown> = {};
  const origins: Record<string, Origin> = {};
  for (const [name, s] of Object.entries(settings)) {
    let raw: unknown;
    let where = "";
    let origin: Origin = "default";
    if (inputs.flags[s.flag] !== undefined) {
      [raw, where, origin] = [inputs.flags[s.flag], `--${s.flag}`, "flag"];
    } else if (inputs.env[s.env] !== undefined && inputs.env[s.env] !== "") {
      [raw, where, origin] = [inputs.env[s.env], s.env, "env"];
    } else if (file && file.values[s.file] !== undefined) {
      [raw, where, origin] = [file.values[s.file], `${file.path}: ${s.file}`, "file"];
    }
    origins[name] = origin;
    if (origin === "default") continue;
    try {
      values[name] = s.parse(raw);
    } catch (e) {
      throw new ConfigError(where, e instanceof Error ? e.message : String(e));
    }
  }
  return { values: values as Resolved<S>, origins: origins as Record<keyof S, Origin> };
}

/** The backup daemon's configuration, every value decided. */
export interface BackupConfig {
  readonly source: string;
  readonly store: string;
  readonly catalog: string;
  readonly stateDir: string;
  readonly targetSize: number;
  readonly maxAgeMs: number;
  /** Pack threads; `null`: one per CPU. */
  readonly workers: number | null;
  readonly fetchers: number;
  readonly uploaders: number;
  /** Full listing interval; `null`: the source's own default. */
  readonly rescanMs: number | null;
  /** Incremental listing interval of a source that has one; `null`: the source's default. */
  readonly pollMs: number | null;
  readonly bufferBytes: number;
  readonly shutdownTimeoutMs: number;
  /** Lease owner name; `null`: the caller derives it from the host name. */
  readonly owner: string | null;
  readonly leaseTtlMs: number;
  readonly autoMigrate: boolean;
  readonly storeAttempts: number;
  readonly storeTimeoutMs: number;
  /** The metrics agent samples are sent to; `null`: none. */
  readonly metricsAgent: { readonly host: string; readonly port: number } | null;
  /** Port of the daemon's own `/metrics` on loopback (0: a free one); `null`: none. */
  readonly metricsPort: number | null;
}

/**
 * The default state directory: `$XDG_STATE_HOME/coldpack`, else
 * `$HOME/.local/state/coldpack`.
 */
export function defaultStateDir(env: Readonly<Record<string, string | undefined>>): string {
  const xdg = env["XDG_STATE_HOME"];
  if (xdg && xdg.startsWith("/")) return `${xdg.replace(/\/+$/, "")}/coldpack`;
  const home = env["HOME"];
  if (!home || !home.startsWith("/")) {
    throw new ConfigError(
      "--state-dir",
      "no state directory: set --state-dir, COLDPACK_STATE_DIR or HOME",
    );
  }
  return `${home.replace(/\/+$/, "")}/.local/state/coldpack`;
}

/** Encodes a path for a `file://` or `sqlite://` URL. */
function pathUrl(scheme: string, path: string): string {
  return `${scheme}://${path.split("/").map(encodeURIComponent).join("/")}`;
}

/** Resolves the backup daemon's configuration; `source` is required. */
export function resolveBackupConfig(inputs: ConfigInputs): BackupConfig {
  const { values: v } = resolveSettings(BACKUP_SETTINGS, inputs, {
    allowFileKeys: FILE_KEYS_OF_OTHER_BINARIES,
  });
  if (v.source === undefined) {
    throw new ConfigError(
      "--source",
      "nothing to back up: give --source DIR|mogilefs://...|s3://... (or COLDPACK_SOURCE, or source in the config file)",
    );
  }
  const stateDir = v.stateDir ?? defaultStateDir(inputs.env);
  return {
    source: v.source,
    store: v.store ?? pathUrl("file", `${stateDir}/vault`),
    catalog: v.catalog ?? pathUrl("sqlite", `${stateDir}/catalog.db`),
    stateDir,
    targetSize: v.targetSize ?? DEFAULT_TARGET_SIZE,
    maxAgeMs: v.maxAge ?? DEFAULT_MAX_AGE_MS,
    workers: v.workers ?? null,
    fetchers: v.fetchers ?? 8,
    uploaders: v.uploaders ?? 2,
    rescanMs: v.rescan ?? null,
    pollMs: v.poll ?? null,
    bufferBytes: v.buffer ?? 64 * 1024 * 1024,
    shutdownTimeoutMs: v.shutdownTimeout ?? 60_000,
    owner: v.owner ?? null,
    leaseTtlMs: Math.max(1_000, v.leaseTtl ?? 60_000),
    autoMigrate: v.autoMigrate ?? true,
    storeAttempts: v.storeAttempts ?? 8,
    storeTimeoutMs: v.storeTimeout ?? 30 * 60_000,
    metricsAgent: v.metricsAgent ?? null,
    metricsPort: v.metricsPort ?? null,
  };
}

/**
 * The catalog URL a program that only reads or migrates the catalog uses
 * (`status`, `coldpack-admin`): the same as the backup's, from the same
 * settings and default. Backup settings in the file are accepted.
 */
export function resolveCatalogUrl(inputs: ConfigInputs): string {
  const { values } = resolveSettings(COMMON_SETTINGS, inputs, {
    allowFileKeys: [
      ...Object.values(BACKUP_SETTINGS).map((s) => s.file),
      ...FILE_KEYS_OF_OTHER_BINARIES,
    ],
  });
  const stateDir = values.stateDir ?? defaultStateDir(inputs.env);
  return values.catalog ?? pathUrl("sqlite", `${stateDir}/catalog.db`);
}

/** What `coldpack-restore` needs: the backup's catalog and store, and its source if any. */
export interface RestoreConfig {
  /** The backup's source URL, when configured (keys and `mogilefs` destinations need it). */
  readonly source: string | null;
  readonly store: string;
  readonly catalog: string;
  readonly stateDir: string;
  readonly autoMigrate: boolean;
  readonly storeAttempts: number;
  readonly storeTimeoutMs: number;
}

/**
 * Resolves the restore tool's configuration from the same settings, file
 * and defaults as the backup, so that it finds the same catalog and store.
 */
export function resolveRestoreConfig(inputs: ConfigInputs): RestoreConfig {
  const { values: v } = resolveSettings(COMMON_SETTINGS, inputs, {
    allowFileKeys: [
      ...Object.values(BACKUP_SETTINGS).map((s) => s.file),
      ...FILE_KEYS_OF_OTHER_BINARIES,
    ],
  });
  const stateDir = v.stateDir ?? defaultStateDir(inputs.env);
  return {
    source: v.source ?? null,
    store: v.store ?? pathUrl("file", `${stateDir}/vault`),
    catalog: v.catalog ?? pathUrl("sqlite", `${stateDir}/catalog.db`),
    stateDir,
    autoMigrate: v.autoMigrate ?? true,
    storeAttempts: v.storeAttempts ?? 8,
    storeTimeoutMs: v.storeTimeout ?? 30 * 60_000,
  };
}

/** Settings of the restore listener daemon (beyond the common ones). */
export const LISTENER_SETTINGS = {
  ...METRICS_SETTINGS,
  queue: {
    flag: "queue",
    env: "COLDPACK_RESTORE_QUEUE",
    file: "restore_queue",
    help: "SQS queue URL the store's completion notices arrive on " +
      "(https://sqs.REGION.amazonaws.com/ACCOUNT/NAME); none: ask the store every --poll",
    parse: (raw: unknown) => {
      const url = nonEmpty(raw);
      if (!/^https?:\/\/[^/\s]+\/\d{12}\/[A-Za-z0-9_-]{1,80}(\.fifo)?$/.test(url)) {
        throw new RangeError(
          `"${url}" is not an SQS queue URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)`,
        );
      }
      return url;
    },
  },
  topic: {
    flag: "topic",
    env: "COLDPACK_RESTORE_TOPIC",
    file: "restore_topic",
    help: "the SNS topic ARN notices must come from (default: the store's ?sns-topic=, " +
      "else any); a notice from another topic is logged and dropped",
    parse: (raw: unknown) => {
      const arn = nonEmpty(raw);
      if (!/^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/.test(arn)) {
        throw new RangeError(`"${arn}" is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME)`);
      }
      return arn;
    },
  },
  roots: {
    flag: "roots",
    env: "COLDPACK_RESTORE_ROOTS",
    file: "restore_roots",
    help: "directories local DESTs must lie in, comma-separated (a list in the file); " +
      "default none: local DESTs are refused",
    parse: (raw: unknown): string[] => {
      const list = Array.isArray(raw) ? raw.map(nonEmpty) : nonEmpty(raw).split(",");
      return list.map((d) => {
        const t = d.trim();
        if (!t.startsWith("/")) throw new RangeError(`root "${t}" is not an absolute path`);
        return t;
      });
    },
  },
  poll: {
    flag: "poll",
    env: "COLDPACK_RESTORE_POLL",
    file: "restore_poll",
    help: "how often to ask the store about pending restores (default 1m; 15m with --queue, " +
      "which tells sooner)",
    parse: duration,
  },
  stuckAfter: {
    flag: "stuck-after",
    env: "COLDPACK_RESTORE_STUCK_AFTER",
    file: "restore_stuck_after",
    help: "report a restore still pending this long after it was requested (default 24h)",
    parse: duration,
  },
  visibility: {
    flag: "visibility",
    env: "COLDPACK_RESTORE_VISIBILITY",
    file: "restore_visibility",
    help: "how long a received notice stays hidden while its restores are written; " +
      "not deleted by then, it comes again (default 5m, at most 12h)",
    parse: (raw: unknown) => {
      const ms = duration(raw);
      if (ms < 1000 || ms > 43_200_000) throw new RangeError("must be from 1s to 12h");
      return ms;
    },
  },
} as const satisfies Settings;

/** The restore listener's configuration. */
export interface ListenerConfig extends RestoreConfig {
  readonly queue: string | null;
  /** `null`: notices from any topic. */
  readonly topic: string | null;
  readonly roots: readonly string[];
  readonly pollMs: number;
  readonly stuckAfterMs: number;
  readonly visibilityMs: number;
  /** As {@linkcode BackupConfig.metricsAgent}. */
  readonly metricsAgent: { readonly host: string; readonly port: number } | null;
  /** As {@linkcode BackupConfig.metricsPort}. */
  readonly metricsPort: number | null;
}

/** Resolves the restore listener's configuration: the restore tool's, plus its own settings. */
export function resolveListenerConfig(inputs: ConfigInputs): ListenerConfig {
  const base = resolveRestoreConfig(inputs);
  const { values: v } = resolveSettings(LISTENER_SETTINGS, inputs, {
    allowFileKeys: [
      ...Object.values(COMMON_SETTINGS).map((s) => s.file),
      ...Object.values(BACKUP_SETTINGS).map((s) => s.file),
      ...FILE_KEYS_OF_OTHER_BINARIES,
    ],
  });
  const queue = v.queue ?? null;
  return {
    ...base,
    queue,
    topic: v.topic ?? null,
    roots: v.roots ?? [],
    pollMs: v.poll ?? (queue === null ? 60_000 : 15 * 60_000),
    stuckAfterMs: v.stuckAfter ?? 24 * 3_600_000,
    visibilityMs: v.visibility ?? 5 * 60_000,
    metricsAgent: v.metricsAgent ?? null,
    metricsPort: v.metricsPort ?? null,
  };
}

/**
 * Config file keys that belong to other binaries (restore, audit, metrics,
 * MySQL credentials): one file serves them all, so the backup accepts them.
 */
export const FILE_KEYS_OF_OTHER_BINARIES: readonly string[] = [
  "mysql_password",
  "restore",
  "audit",
  "metrics",
  "alerts",
  "url_patterns",
  ...Object.values(LISTENER_SETTINGS).map((s) => s.file),
  // The metrics agent's (core/agent_config.ts, which builds on this module).
  "agent_port",
  "agent_bind",
  "agent_forward",
  "agent_spool",
  "agent_spool_max",
  "agent_metrics_port",
  "agent_flush",
  "agent_hostname",
];

/**
 * The MySQL password: `COLDPACK_MYSQL_PASSWORD`, else `mysql_password` in the
 * config file, else `null`. Never a flag: argv is visible to every user of
 * the host. Returns where it came from for messages (never the value).
 */
export function resolveMysqlPassword(
  inputs: ConfigInputs,
): { readonly password: string; readonly where: string } | null {
  const env = inputs.env["COLDPACK_MYSQL_PASSWORD"];
  if (env !== undefined) return { password: env, where: "COLDPACK_MYSQL_PASSWORD" };
  const raw = inputs.file?.values["mysql_password"];
  if (raw === undefined) return null;
  const where = `${inputs.file?.path}: mysql_password`;
  if (typeof raw !== "string") {
    throw new ConfigError(where, `expected a string, got ${describe(raw)}`);
  }
  return { password: raw, where };
}
