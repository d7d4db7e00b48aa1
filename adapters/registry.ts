/**
 * The one place that turns a URL into an adapter (restic's backend
 * registry). `cmd/` asks here; nothing else knows the implementations.
 * @module
 */

import { parseCatalogUrl } from "../core/catalog_url.ts";
import type { resolveMysqlPassword, RestoreConfig } from "../core/config.ts";
import { withRetryCatalog, withRetryStore } from "../core/retry.ts";
import { systemClock } from "./clock.ts";
import { ConfigError, PortError } from "../core/errors.ts";
import type { Catalog, ColdStore, Destination, NotificationQueue, Source } from "../core/ports.ts";
import { parseSourceUrl } from "../core/source_url.ts";
import { parseStoreUrl } from "../core/store_url.ts";
import { MysqlCatalog } from "./catalog/mysql.ts";
import { SqliteCatalog } from "./catalog/sqlite.ts";
import { DirectorySource } from "./source/directory.ts";
import { MogileFsSource } from "./source/mogilefs.ts";
import { S3Source } from "./source/s3.ts";
import { LocalDestination } from "./destination/local.ts";
import { MogileFsDestination } from "./destination/mogilefs.ts";
import { S3Destination } from "./destination/s3.ts";
import { LocalVault } from "./store/local_vault.ts";
import { GlacierStore } from "./store/glacier.ts";
import { S3GlacierStore } from "./store/s3_glacier.ts";
import { SpoolFetcher } from "./fetch/spool_fetcher.ts";
import { openSqsQueue } from "./queue/sqs.ts";
import { WorkerPacker } from "./pack/worker_packer.ts";
import { InlinePacker } from "../core/pack.ts";
import type { Packer } from "../core/ports.ts";

/** Reads a URL with `parse`, turning its complaint into a ConfigError naming `where`. */
function parsed<T>(where: string, parse: (s: string) => T, text: string): T {
  try {
    return parse(text);
  } catch (e) {
    throw new ConfigError(where, e instanceof Error ? e.message : String(e));
  }
}

/**
 * Opens the source a `--source` URL names.
 * @param where the flag or variable the URL came from, for error messages
 */
export async function openSource(url: string, where = "--source"): Promise<Source> {
  const spec = parsed(where, parseSourceUrl, url);
  switch (spec.kind) {
    case "dir":
      try {
        return await DirectorySource.open(spec.path);
      } catch (e) {
        throw new ConfigError(where, e instanceof Error ? e.message : String(e));
      }
    case "mogilefs":
      try {
        return await MogileFsSource.open(spec);
      } catch (e) {
        // No tracker answering is worth retrying; an unknown domain is not.
        throw openError(where, e);
      }
    case "s3":
      try {
        return await S3Source.open(spec, { forcePathStyle: pathStyle("S3") });
      } catch (e) {
        throw openError(where, e);
      }
  }
}

/**
 * Opens the SQS queue a `--queue` URL names. The endpoint and credentials
 * come from the SDK's chain (`AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL`,
 * the environment, profile or instance role). Sends nothing yet.
 * @param where the flag or variable the URL came from, for error messages
 */
export function openQueue(url: string, where = "--queue"): NotificationQueue {
  const endpoint = Deno.env.get("AWS_ENDPOINT_URL_SQS") ?? Deno.env.get("AWS_ENDPOINT_URL");
  return parsed(where, (u) => openSqsQueue(u, endpoint === undefined ? {} : { endpoint }), url);
}

/**
 * Opens the destination of restored files a URL names: a local directory
 * (`/path` or `file:///path`; keys are paths below it), a MogileFS domain
 * (`mogilefs://tracker:7001/domain`), or an S3 bucket and prefix
 * (`s3://bucket/prefix/`). The same URL forms as `--source`.
 */
export async function openDestination(url: string, where = "--dest"): Promise<Destination> {
  const spec = parsed(where, parseSourceUrl, url);
  try {
    switch (spec.kind) {
      case "dir":
        return await LocalDestination.open(spec.path);
      case "mogilefs":
        if (spec.domain === undefined) {
          throw new ConfigError(where, `${url} names no domain: use mogilefs://HOST:PORT/DOMAIN`);
        }
        return await MogileFsDestination.open({ trackers: spec.trackers, domain: spec.domain });
      case "s3":
        return await S3Destination.open(
          { bucket: spec.bucket, prefix: spec.prefix },
          { forcePathStyle: pathStyle("S3") },
        );
    }
  } catch (e) {
    throw openError(where, e);
  }
}

/**
 * Why a source or destination could not be opened: a service that may come
 * back (no tracker answering) stays a retryable PortError; anything else
 * (an unknown domain, a missing directory) is bad configuration of `where`.
 */
function openError(where: string, e: unknown): Error {
  if (e instanceof PortError && e.retryable) return e;
  if (e instanceof ConfigError) return e;
  return new ConfigError(where, e instanceof Error ? e.message : String(e));
}

/** Opens the cold store a `--store` URL names. */
export async function openStore(url: string, where = "--store"): Promise<ColdStore> {
  const spec = parsed(where, parseStoreUrl, url);
  switch (spec.kind) {
    case "vault-dir":
      try {
        return await LocalVault.open(spec.path, {
          retrievalDelayMs: spec.retrievalDelayMs,
          retrievalTtlMs: spec.retrievalTtlMs,
        });
      } catch (e) {
        throw new ConfigError(
          where,
          `cannot open the vault directory ${spec.path}: ${e instanceof Error ? e.message : e}`,
        );
      }
    case "glacier":
      try {
        return await GlacierStore.open(url);
      } catch (e) {
        throw new ConfigError(where, e instanceof Error ? e.message : String(e));
      }
    case "s3":
      try {
        return await S3GlacierStore.open(url, {
          restoreDays: spec.restoreDays,
          forcePathStyle: pathStyle("S3"),
        });
      } catch (e) {
        throw new ConfigError(where, e instanceof Error ? e.message : String(e));
      }
  }
}

/**
 * Path-style S3 addressing (`http://HOST/BUCKET/KEY`): on when
 * `COLDPACK_S3_PATH_STYLE` is true, or when the endpoint is overridden to a
 * host that is not AWS (MinIO, LocalStack, s3rver cannot serve
 * `BUCKET.HOST` names); AWS itself gets virtual-hosted names.
 */
function pathStyle(service: string): boolean {
  const flag = Deno.env.get("COLDPACK_S3_PATH_STYLE");
  if (flag !== undefined) return ["1", "true", "yes", "on"].includes(flag.toLowerCase());
  const endpoint = Deno.env.get(`AWS_ENDPOINT_URL_${service}`) ?? Deno.env.get("AWS_ENDPOINT_URL");
  if (endpoint === undefined) return false;
  try {
    return !new URL(endpoint).hostname.endsWith(".amazonaws.com");
  } catch {
    return true;
  }
}

/** A catalog as the registry opens it: every adapter can also tell its schema version. */
export type OpenedCatalog = Catalog & {
  /** The schema version of the database: 0 when no migration was applied. */
  schemaVersion(): Promise<number>;
};

/** Opens the catalog a `--catalog` URL names, migrating it unless told not to. */
export async function openCatalog(
  url: string,
  options: {
    where?: string;
    migrate?: boolean;
    /** The MySQL password and where it came from (never a flag). */
    password?: { readonly password: string; readonly where: string } | null;
  } = {},
): Promise<OpenedCatalog> {
  const where = options.where ?? "--catalog";
  const spec = parsed(where, parseCatalogUrl, url);
  switch (spec.kind) {
    case "sqlite": {
      const dir = spec.path.replace(/\/[^/]*$/, "") || "/";
      try {
        await Deno.mkdir(dir, { recursive: true });
        return await SqliteCatalog.open(spec.path, { migrate: options.migrate ?? true });
      } catch (e) {
        throw new ConfigError(
          where,
          `cannot open the SQLite catalog ${spec.path}: ${e instanceof Error ? e.message : e}`,
        );
      }
    }
    case "mysql": {
      const secret = options.password ?? null;
      if (secret === null) {
        throw new ConfigError(
          where,
          `no password for ${url}: set COLDPACK_MYSQL_PASSWORD or mysql_password in the config file`,
        );
      }
      // Connection and server errors keep their MySQL code (PortError): the
      // caller tells "cannot reach" from "bad configuration" by it.
      return await MysqlCatalog.open({
        host: spec.host,
        port: spec.port,
        user: spec.user,
        password: secret.password,
        database: spec.database,
        migrate: options.migrate ?? true,
      });
    }
  }
}

/** Options for {@linkcode openPacker}. */
export interface PackerOptions {
  /** Worker threads for a directory source (default 2). */
  readonly workers?: number;
  /** Remote sources: files read at once, over all workers (default 8). */
  readonly readAhead?: number;
}

/**
 * The packer for a source: worker threads (reading, md5, tar and tree hash
 * beside the main thread) for the sources the workers can open again
 * (directory, MogileFS, S3); in-thread for any other.
 */
export async function openPacker(
  source: Source,
  spoolDir: string,
  options: PackerOptions = {},
): Promise<Packer> {
  const readAhead = options.readAhead ?? 8;
  const workers = options.workers ?? 2;
  if (source instanceof DirectorySource) {
    return await WorkerPacker.open(source.root, spoolDir, { workers });
  }
  // Remote sources are opened again in each worker; reads in flight are shared out.
  const perWorker = { workers, readAhead: Math.max(1, Math.ceil(readAhead / workers)) };
  if (source instanceof MogileFsSource) {
    return await WorkerPacker.open({ kind: "mogilefs", ...source.spec() }, spoolDir, perWorker);
  }
  if (source instanceof S3Source) {
    return await WorkerPacker.open({ kind: "s3", ...source.spec() }, spoolDir, perWorker);
  }
  return new InlinePacker(await SpoolFetcher.open(source, spoolDir), { readAhead });
}

/**
 * The catalog and the store of a program that reads and restores (restore,
 * listener, audit), each wrapped in the retry policy every program uses:
 * store calls tried `config.storeAttempts` times with backoff (0.5 s to
 * 60 s), catalog calls likewise (0.25 s to 15 s).
 */
export async function openCatalogAndStore(
  config: RestoreConfig,
  password: ReturnType<typeof resolveMysqlPassword>,
): Promise<{ catalog: Catalog; store: ColdStore }> {
  const raw = await openCatalog(config.catalog, { migrate: config.autoMigrate, password });
  const policy = { attempts: config.storeAttempts, baseMs: 500, maxMs: 60_000, clock: systemClock };
  const catalog = withRetryCatalog(raw, { ...policy, baseMs: 250, maxMs: 15_000 });
  try {
    const store = withRetryStore(await openStore(config.store), {
      ...policy,
      putTimeoutMs: config.storeTimeoutMs,
    });
    return { catalog, store };
  } catch (e) {
    await catalog.close();
    throw e;
  }
}
