/**
 * A MogileFS client: tracker commands over the line protocol of
 * `core/mogilefs_protocol.ts` (PROTOCOLS.md section 1), and HTTP reads and
 * writes on the storage nodes.
 *
 * Trackers. Requests go over persistent TCP connections, one request in
 * flight per connection, at most `maxConnections` (default 4) at once so
 * that a source can poll while fetches run. All connections go to one
 * tracker, the preferred one. A connection that fails (connect error,
 * reset, no answer within `timeoutMs`, a malformed answer) is dropped, its
 * tracker is marked down for `downMs` (1 s, doubling per failure in a row
 * up to `maxDownMs`, 30 s), and the request goes to the next tracker: each
 * request tries each tracker at most once, trackers marked down last (so
 * a lone tracker that comes back is used again at once). When every
 * tracker failed: `PortError` `TrackerUnavailable` (retryable) naming the
 * trackers tried and why. An idle connection closed by the tracker is
 * noticed and dropped; a read-only command whose reused connection turns
 * out closed before any byte of the answer is sent once more on a fresh
 * connection to the same tracker before that tracker counts as failed.
 *
 * `ERR` answers become `PortError`s with the tracker's code. Not retryable,
 * except the codes of {@linkcode TRANSIENT_ERR_CODES} (a tracker-side
 * database error, no writable device for now, a storage node the tracker
 * could not reach or that stored other bytes than were sent). After `ERR
 * unreg_domain` or `ERR no_domain` the connection is dropped: some
 * mogilefsd versions send a second `ERR domain_not_found` line for the same
 * request, which would otherwise be read as the next request's answer.
 *
 * Storage nodes. Reads are `GET`s with failover across the paths of
 * `get_paths`, in order; writes are `create_open` (multi_dest) -> `PUT` with
 * a `Content-Length` (on its own TCP connection; Deno's `fetch` would send a
 * streamed body chunked) -> `create_close`. Nothing here retries a call as
 * a whole: that is `core/retry.ts`'s job; every method honours `signal`.
 *
 * @example
 * ```ts
 * const client = new MogileFsClient({ trackers: [{ host: "10.0.0.1", port: 7001 }] });
 * try {
 *   const rows = await client.listFids(0, 500);
 *   const stream = await client.openRead("ugc", rows[0]!.key, { expectFid: rows[0]!.fid });
 * } finally {
 *   await client.close();
 * }
 * ```
 * @module
 */

import { createHash } from "node:crypto";
import { ChangedError, PortError, VanishedError } from "../../core/errors.ts";
import {
  type MogileFsArgs,
  type MogileFsResponse,
  parseResponse,
  requestLine,
} from "../../core/mogilefs_protocol.ts";
import { Limiter } from "../../core/retry.ts";
import { closeQuietly } from "../_fs.ts";
import type { TrackerAddress } from "../../core/source_url.ts";

/** Options for {@linkcode MogileFsClient}. */
export interface MogileFsClientOptions {
  /** The trackers, in order of preference; at least one. */
  readonly trackers: readonly TrackerAddress[];
  /**
   * How long one tracker request may wait for its answer, and how long a
   * storage node may keep a read or a write waiting, ms. Default 10,000.
   */
  readonly timeoutMs?: number;
  /** How long a TCP connect may take, ms. Default 3,000. */
  readonly connectTimeoutMs?: number;
  /** How long a tracker that failed is tried last, ms; doubles per failure in a row. Default 1,000. */
  readonly downMs?: number;
  /** Cap of that time, ms. Default 30,000. */
  readonly maxDownMs?: number;
  /** Tracker requests in flight at once (one connection each). Default 4. */
  readonly maxConnections?: number;
}

/** One row of `list_fids`. */
export interface FidRow {
  readonly fid: number;
  readonly domain: string;
  readonly key: string;
  /** Class name (`default` for the domain's default class). */
  readonly class: string;
  readonly length: number;
  readonly devcount: number;
  /**
   * False when the key's bytes are not UTF-8: `key` then holds U+FFFD in
   * their place and cannot be used to address the file.
   */
  readonly keyIsUtf8: boolean;
}

/** What `file_info` says about a key. */
export interface FileInfo {
  readonly fid: number;
  readonly domain: string;
  readonly key: string;
  readonly class: string;
  readonly length: number;
  readonly devcount: number;
  /** E.g. `MD5:<hex>` or `MISSING` when the class has a hash type; else null. */
  readonly checksum: string | null;
}

/** One page of `list_keys`. */
export interface KeyPage {
  readonly keys: readonly string[];
  /** Pass as `after` for the next page; null when nothing matched. */
  readonly nextAfter: string | null;
}

/** A class as `get_domains` describes it. */
export interface ClassInfo {
  readonly name: string;
  readonly mindevcount: number;
  /** E.g. `MD5`; null when the class keeps no checksum (or the tracker is too old to say). */
  readonly hashtype: string | null;
}

/** A domain and its classes. */
export interface DomainInfo {
  readonly name: string;
  readonly classes: ReadonlyMap<string, ClassInfo>;
}

/** Options for {@linkcode MogileFsClient.openRead}. */
export interface OpenReadOptions {
  /** The length the file must have: a replica of another length is skipped. */
  readonly expectLength?: number;
  /** The fid the key must still have: another fid means a new version (`ChangedError`). */
  readonly expectFid?: number;
  readonly signal?: AbortSignal;
}

/** Where {@linkcode MogileFsClient.write} put the file. */
export interface WriteResult {
  readonly fid: number;
  readonly devid: number;
  /** The storage node URL the bytes went to. */
  readonly path: string;
}

/**
 * `ERR` codes after which the same call may succeed later: `db`,
 * `db_error` and `failure` (mogilefsd's answer to any exception, such as a
 * lost database connection), `no_devices` (no writable device right now),
 * `size_verify_error` (the tracker could not reach the storage node to
 * check the size), `size_mismatch` and `checksum_mismatch` (the node holds
 * other bytes than were sent, and the client checked what it sent), and
 * `no_temp_file` (the temp file was reaped before `create_close`; a new
 * write starts over).
 */
export const TRANSIENT_ERR_CODES: ReadonlySet<string> = new Set([
  "db",
  "db_error",
  "failure",
  "no_devices",
  "size_verify_error",
  "size_mismatch",
  "checksum_mismatch",
  "no_temp_file",
]);

/** Commands that change nothing, so may be sent twice. */
const READ_ONLY = new Set(["list_fids", "file_info", "get_paths", "list_keys", "get_domains"]);
/** After these codes the connection may carry a second answer line: drop it. */
const DOUBLE_ANSWER_CODES = new Set(["unreg_domain", "no_domain"]);
/** How long a class missing from the cached `get_domains` answer is taken as missing. */
const DOMAINS_REFRESH_MS = 60_000;
/** Longest answer line accepted. */
const MAX_LINE = 64 * 1024 * 1024;
/** Most rows `list_fids` gives at once. */
const MAX_LIST_FIDS = 500;
/** Most keys `list_keys` gives at once. */
const MAX_LIST_KEYS = 1000;
/** The fid in a storage path: `.../0000000123.fid`. */
const FID_PATH = /\/(\d+)\.fid$/;

const encoder = new TextEncoder();
const lineDecoder = new TextDecoder("utf-8", { ignoreBOM: true });

/** A tracker failure that makes the request go to the next tracker. */
class TrackerFault extends Error {
  /** Closed or reset before any byte of the answer: a stale connection, maybe. */
  readonly beforeAnswer: boolean;
  constructor(message: string, beforeAnswer = false, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "TrackerFault";
    this.beforeAnswer = beforeAnswer;
  }
}

/** A storage node failure that makes a read or write try the next path. */
class NodeFault extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = "NodeFault";
  }
}

/** Per tracker: whether it is marked down, and for how long. */
interface TrackerState {
  readonly address: TrackerAddress;
  readonly label: string;
  downUntil: number;
  failures: number;
}

/**
 * A MogileFS tracker and storage node client (see the module notes).
 */
export class MogileFsClient {
  readonly #trackers: TrackerState[];
  readonly #timeoutMs: number;
  readonly #connectTimeoutMs: number;
  readonly #downMs: number;
  readonly #maxDownMs: number;
  readonly #maxConnections: number;
  readonly #limiter: Limiter;
  readonly #idle: TrackerConnection[] = [];
  readonly #open = new Set<TrackerConnection>();
  readonly #http: Deno.HttpClient;
  #preferred = 0;
  #closed = false;
  #domains: Map<string, DomainInfo> | null = null;
  /** When `#domains` was fetched (performance.now()). */
  #domainsAt = -Infinity;

  /**
   * @throws {RangeError} no tracker, or a timeout or count that is not a positive number
   */
  constructor(options: MogileFsClientOptions) {
    if (options.trackers.length === 0) {
      throw new RangeError("Invalid MogileFS client options: no tracker given");
    }
    this.#trackers = options.trackers.map((address) => ({
      address,
      label: trackerLabel(address),
      downUntil: 0,
      failures: 0,
    }));
    this.#timeoutMs = positive("timeoutMs", options.timeoutMs ?? 10_000);
    this.#connectTimeoutMs = positive("connectTimeoutMs", options.connectTimeoutMs ?? 3_000);
    this.#downMs = positive("downMs", options.downMs ?? 1_000);
    this.#maxDownMs = positive("maxDownMs", options.maxDownMs ?? 30_000);
    this.#maxConnections = options.maxConnections ?? 4;
    if (!Number.isSafeInteger(this.#maxConnections) || this.#maxConnections < 1) {
      throw new RangeError(
        `Invalid MogileFS client options: maxConnections ${this.#maxConnections} is not a positive integer`,
      );
    }
    this.#limiter = new Limiter(this.#maxConnections);
    this.#http = Deno.createHttpClient({ poolMaxIdlePerHost: 4 });
  }

  /** The trackers as `host:port`, comma-separated (for messages and locations). */
  get trackers(): string {
    return this.#trackers.map((t) => t.label).join(",");
  }

  // -------------------------------------------------------------------------
  // Tracker commands

  /**
   * `list_fids`: up to `count` (1 to 500) files whose fid is above `from`,
   * sorted by fid (the tracker does not sort).
   *
   * @throws {RangeError} a bad `from` or `count`
   * @throws {PortError} `TrackerUnavailable`, an `ERR` code, or `BadResponse`
   */
  async listFids(
    from: number,
    count: number,
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<FidRow[]> {
    if (!Number.isSafeInteger(from) || from < 0) {
      throw new RangeError(`Invalid list_fids start: ${from} is not a whole number`);
    }
    if (!Number.isSafeInteger(count) || count < 1 || count > MAX_LIST_FIDS) {
      throw new RangeError(`Invalid list_fids count: ${count} (1 to ${MAX_LIST_FIDS})`);
    }
    const what = `list_fids from ${from}`;
    const answer = await this.#command("list_fids", { from, to: count }, what, options.signal);
    const args = answer.args;
    const bad = new Set(answer.invalidUtf8 ?? []);
    const n = int(args, "fid_count", what);
    const seen = new Set<number>();
    const rows: FidRow[] = [];
    for (let i = 1; i <= n; i++) {
      const p = `fid_${i}_`;
      const fid = int(args, `${p}fid`, what);
      if (fid <= from || seen.has(fid)) continue; // Not asked for, or a repeat.
      seen.add(fid);
      rows.push({
        fid,
        domain: str(args, `${p}domain`, what),
        key: str(args, `${p}key`, what),
        class: args[`${p}class`] ?? "",
        length: int(args, `${p}length`, what),
        devcount: optionalInt(args, `${p}devcount`, what) ?? 0,
        keyIsUtf8: !bad.has(`${p}key`),
      });
    }
    rows.sort((a, b) => a.fid - b.fid);
    return rows;
  }

  /**
   * `file_info` of a key.
   *
   * @throws {PortError} `unknown_key` when there is none, `TrackerUnavailable`...
   */
  async fileInfo(
    domain: string,
    key: string,
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<FileInfo> {
    const what = `file_info of ${describe(domain, key)}`;
    const { args } = await this.#command("file_info", { domain, key }, what, options.signal);
    return {
      fid: int(args, "fid", what),
      domain: args.domain ?? domain,
      key: args.key ?? key,
      class: args.class ?? "",
      length: int(args, "length", what),
      devcount: optionalInt(args, "devcount", what) ?? 0,
      checksum: args.checksum ?? null,
    };
  }

  /**
   * `get_paths` with `noverify=1`: the storage URLs of a key, in the order to try.
   *
   * @param options.pathcount most paths wanted (the tracker gives at least 2 if it has them)
   * @throws {PortError} `unknown_key` when there is none, `TrackerUnavailable`...
   */
  async getPaths(
    domain: string,
    key: string,
    options: { readonly pathcount?: number; readonly signal?: AbortSignal } = {},
  ): Promise<string[]> {
    const what = `get_paths of ${describe(domain, key)}`;
    const { args } = await this.#command(
      "get_paths",
      { domain, key, noverify: 1, pathcount: options.pathcount },
      what,
      options.signal,
    );
    const n = int(args, "paths", what);
    const paths: string[] = [];
    for (let i = 1; i <= n; i++) {
      const path = args[`path${i}`];
      if (path !== undefined && path !== "") paths.push(path);
    }
    return paths;
  }

  /**
   * `list_keys`: keys of a domain in key order, after `after`, starting
   * with `prefix`. No match is an empty page, not an error.
   */
  async listKeys(
    domain: string,
    options: {
      readonly prefix?: string;
      readonly after?: string;
      readonly limit?: number;
      readonly signal?: AbortSignal;
    } = {},
  ): Promise<KeyPage> {
    const limit = options.limit ?? MAX_LIST_KEYS;
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > MAX_LIST_KEYS) {
      throw new RangeError(`Invalid list_keys limit: ${limit} (1 to ${MAX_LIST_KEYS})`);
    }
    const what = `list_keys of domain "${domain}"`;
    let args: MogileFsArgs;
    try {
      ({ args } = await this.#command(
        "list_keys",
        { domain, prefix: options.prefix, after: options.after, limit },
        what,
        options.signal,
      ));
    } catch (e) {
      if (e instanceof PortError && e.code === "none_match") return { keys: [], nextAfter: null };
      throw e;
    }
    const n = int(args, "key_count", what);
    const keys: string[] = [];
    for (let i = 1; i <= n; i++) keys.push(str(args, `key_${i}`, what));
    const next = args.next_after;
    return { keys, nextAfter: next === undefined || next === "" ? (keys.at(-1) ?? null) : next };
  }

  /** `get_domains`: every domain and its classes (also refreshes the class cache). */
  async getDomains(options: { readonly signal?: AbortSignal } = {}): Promise<DomainInfo[]> {
    const what = "get_domains";
    const { args } = await this.#command("get_domains", {}, what, options.signal);
    const domains: DomainInfo[] = [];
    const n = int(args, "domains", what);
    for (let d = 1; d <= n; d++) {
      const name = str(args, `domain${d}`, what);
      const classes = new Map<string, ClassInfo>();
      const c = optionalInt(args, `domain${d}classes`, what) ?? 0;
      for (let j = 1; j <= c; j++) {
        const p = `domain${d}class${j}`;
        const className = str(args, `${p}name`, what);
        const hash = args[`${p}hashtype`];
        classes.set(className, {
          name: className,
          mindevcount: optionalInt(args, `${p}mindevcount`, what) ?? 0,
          hashtype: hash === undefined || hash === "" || hash.toUpperCase() === "NONE"
            ? null
            : hash.toUpperCase(),
        });
      }
      domains.push({ name, classes });
    }
    this.#domains = new Map(domains.map((d) => [d.name, d]));
    this.#domainsAt = performance.now();
    return domains;
  }

  /**
   * `delete` of a key.
   *
   * @throws {PortError} `unknown_key` when there is none, `TrackerUnavailable`...
   */
  async delete(
    domain: string,
    key: string,
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<void> {
    await this.#command(
      "delete",
      { domain, key },
      `delete of ${describe(domain, key)}`,
      options.signal,
    );
  }

  // -------------------------------------------------------------------------
  // Storage nodes

  /**
   * Opens a key for reading: `get_paths`, then a `GET` of each path in
   * order until one answers 200 with the expected length. The stream
   * errors with a retryable `PortError` `Truncated` when the body ends
   * before its length, `Timeout` when the node sends nothing for
   * `timeoutMs`, and with the signal's reason on abort.
   *
   * @throws {VanishedError} the key is gone (`unknown_key`)
   * @throws {ChangedError} the key now has another fid than `expectFid`
   * @throws {PortError} `NoReadablePath` (retryable) when no path could be
   *   read, `LengthMismatch` (retryable) when every readable copy had
   *   another length than `expectLength`; tracker errors as for the commands
   */
  async openRead(
    domain: string,
    key: string,
    options: OpenReadOptions = {},
  ): Promise<ReadableStream<Uint8Array>> {
    const { signal, expectLength, expectFid } = options;
    signal?.throwIfAborted();
    const name = describe(domain, key);
    let paths: string[];
    try {
      paths = await this.getPaths(domain, key, { pathcount: 4, ...(signal ? { signal } : {}) });
    } catch (e) {
      if (e instanceof PortError && e.code === "unknown_key") {
        throw new VanishedError(`MogileFS ${name} is gone: the tracker knows no such key`, {
          cause: e,
        });
      }
      throw e;
    }
    const fid = paths.length > 0 ? fidOfPath(paths[0]!) : null;
    if (expectFid !== undefined && fid !== null && fid !== expectFid) {
      throw new ChangedError(
        `MogileFS ${name} changed: it is fid ${fid} now, not fid ${expectFid} (the key was written again)`,
      );
    }
    const fidText = fid !== null ? `fid ${fid}` : `fid ${expectFid ?? "unknown"}`;
    if (paths.length === 0) {
      throw new PortError(`Cannot read MogileFS ${name} (${fidText}): the tracker gave no path`, {
        code: "NoReadablePath",
        retryable: true,
      });
    }
    const problems: string[] = [];
    let readable = 0;
    let wrongLength = 0;
    for (const path of paths) {
      let response: Response;
      try {
        response = await this.#get(path, signal);
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        problems.push(`${path}: ${errorText(e)}`);
        continue;
      }
      if (response.status !== 200) {
        await response.body?.cancel().catch(() => {});
        problems.push(`${path}: HTTP ${response.status}`);
        continue;
      }
      readable++;
      const header = response.headers.get("content-length");
      const contentLength = header !== null && /^\d+$/.test(header) ? Number(header) : null;
      if (expectLength !== undefined && contentLength !== null && contentLength !== expectLength) {
        await response.body?.cancel().catch(() => {});
        wrongLength++;
        problems.push(`${path}: ${contentLength} bytes, not ${expectLength}`);
        continue;
      }
      return this.#bodyStream(response, {
        what: `MogileFS ${name} (${fidText}) from ${path}`,
        length: contentLength ?? expectLength ?? null,
        signal,
      });
    }
    const code = readable > 0 && wrongLength === readable ? "LengthMismatch" : "NoReadablePath";
    throw new PortError(
      `Cannot read MogileFS ${name} (${fidText}): ${
        code === "LengthMismatch" ? "every copy has the wrong length" : "no path could be read"
      }: ${problems.join("; ")}`,
      { code, retryable: true },
    );
  }

  /**
   * Stores a file: `create_open` (multi_dest), a `PUT` of exactly `length`
   * bytes to the first path that takes them (the next path on a failure
   * of the node), then `create_close`, with `checksum=MD5:<hex>` and
   * `checksumverify=1` when the class keeps MD5 checksums. The md5 and the
   * byte count are computed while the bytes stream; when either differs
   * from what was promised, `create_close` is not called (the tracker reaps
   * the temp file) and the write rejects. An existing key is replaced.
   *
   * @param storageClass `""` for the domain's default class
   * @param md5 lower-case hex md5 the bytes must have
   * @param body a fresh stream of the bytes each time it is called
   * @throws {PortError} `LengthMismatch` or `ChecksumMismatch` (not retryable);
   *   `NoWritablePath` (retryable) when no path took the bytes; tracker errors
   *   as for the commands (`unreg_class`, `no_devices`...)
   */
  async write(
    domain: string,
    key: string,
    storageClass: string,
    length: number,
    md5: string,
    body: () => ReadableStream<Uint8Array>,
    options: { readonly signal?: AbortSignal } = {},
  ): Promise<WriteResult> {
    const { signal } = options;
    if (!Number.isSafeInteger(length) || length < 0) {
      throw new RangeError(`Invalid length for MogileFS ${describe(domain, key)}: ${length}`);
    }
    if (!/^[0-9a-f]{32}$/.test(md5)) {
      throw new TypeError(
        `Invalid md5 for MogileFS ${
          describe(domain, key)
        }: "${md5}" is not 32 lower-case hex digits`,
      );
    }
    signal?.throwIfAborted();
    const name = describe(domain, key);
    const hashtype = await this.#hashtype(domain, storageClass, signal);
    const { args } = await this.#command(
      "create_open",
      { domain, key, class: storageClass, fid: 0, multi_dest: 1 },
      `create_open of ${name}`,
      signal,
    );
    const what = `create_open of ${name}`;
    const fid = int(args, "fid", what);
    const dests: { devid: number; path: string }[] = [];
    if (args.dev_count !== undefined) {
      const n = int(args, "dev_count", what);
      for (let i = 1; i <= n; i++) {
        dests.push({ devid: int(args, `devid_${i}`, what), path: str(args, `path_${i}`, what) });
      }
    } else {
      dests.push({ devid: int(args, "devid", what), path: str(args, "path", what) });
    }
    const problems: string[] = [];
    for (const dest of dests) {
      let sent: { md5: string; count: number };
      try {
        sent = await this.#put(dest.path, length, body, `MogileFS ${name} (fid ${fid})`, signal);
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        if (e instanceof NodeFault) {
          problems.push(`${dest.path}: ${e.message}`);
          continue;
        }
        throw e;
      }
      if (sent.md5 !== md5) {
        throw new PortError(
          `Cannot write MogileFS ${name} (fid ${fid}): the bytes have md5 ${sent.md5}, not ${md5}; the file was not closed`,
          { code: "ChecksumMismatch", retryable: false },
        );
      }
      const close: Record<string, string | number> = {
        fid,
        devid: dest.devid,
        path: dest.path,
        domain,
        key,
        size: length,
      };
      if (hashtype === "MD5") {
        close.checksum = `MD5:${md5}`;
        close.checksumverify = 1;
      }
      await this.#command("create_close", close, `create_close of ${name} (fid ${fid})`, signal);
      return { fid, devid: dest.devid, path: dest.path };
    }
    throw new PortError(
      `Cannot write MogileFS ${name} (fid ${fid}): no storage path took the bytes: ${
        problems.join("; ")
      }`,
      { code: "NoWritablePath", retryable: true },
    );
  }

  /** Closes every connection; calls in flight reject. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#idle.length = 0;
    await Promise.all([...this.#open].map((c) => c.close()));
    this.#open.clear();
    this.#http.close();
  }

  // -------------------------------------------------------------------------
  // Tracker plumbing

  /** Sends one command; resolves to an OK answer, rejects with a PortError for ERR. */
  async #command(
    command: string,
    args: Readonly<Record<string, string | number | undefined>>,
    what: string,
    signal: AbortSignal | undefined,
  ): Promise<Extract<MogileFsResponse, { ok: true }>> {
    const line = requestLine(command, args);
    signal?.throwIfAborted();
    this.#checkOpen(what);
    const { answer, tracker } = await this.#limiter.run(
      () => this.#send(command, line, what, signal),
      signal,
    );
    if (answer.ok) return answer;
    const text = answer.text !== "" && answer.text !== answer.code ? `: ${answer.text}` : "";
    throw new PortError(`MogileFS ${what}: tracker ${tracker} answered ERR ${answer.code}${text}`, {
      code: answer.code,
      retryable: TRANSIENT_ERR_CODES.has(answer.code),
    });
  }

  /** Tries each tracker once, the ones marked down last. */
  async #send(
    command: string,
    line: string,
    what: string,
    signal: AbortSignal | undefined,
  ): Promise<{ answer: MogileFsResponse; tracker: string }> {
    const tried: string[] = [];
    let last: unknown;
    for (const i of this.#order()) {
      this.#checkOpen(what);
      const tracker = this.#trackers[i]!;
      try {
        const answer = await this.#ask(i, command, line, signal);
        tracker.failures = 0;
        tracker.downUntil = 0;
        this.#preferred = i;
        return { answer, tracker: tracker.label };
      } catch (e) {
        if (signal?.aborted) throw signal.reason;
        if (!(e instanceof TrackerFault)) throw e;
        this.#checkOpen(what);
        last = e;
        tried.push(`${tracker.label} (${e.message})`);
        this.#markDown(i);
      }
    }
    throw new PortError(
      `MogileFS ${what}: no tracker answered; tried ${tried.join(", ")}`,
      { code: "TrackerUnavailable", retryable: true, cause: last },
    );
  }

  /** Tracker indexes to try: from the preferred one on, those marked down last (soonest up first). */
  #order(): number[] {
    const now = performance.now();
    const n = this.#trackers.length;
    const up: number[] = [];
    const down: number[] = [];
    for (let k = 0; k < n; k++) {
      const i = (this.#preferred + k) % n;
      (this.#trackers[i]!.downUntil > now ? down : up).push(i);
    }
    down.sort((a, b) => this.#trackers[a]!.downUntil - this.#trackers[b]!.downUntil);
    return [...up, ...down];
  }

  #markDown(i: number): void {
    const t = this.#trackers[i]!;
    t.failures++;
    const ms = Math.min(this.#maxDownMs, this.#downMs * 2 ** Math.min(t.failures - 1, 30));
    t.downUntil = performance.now() + ms;
    // Every idle connection to it is suspect now.
    for (const c of this.#idle.filter((c) => c.tracker === i)) this.#drop(c);
    if (this.#preferred === i) this.#preferred = (i + 1) % this.#trackers.length;
  }

  /** One request on one tracker: an idle connection if there is one, else a new one. */
  async #ask(
    i: number,
    command: string,
    line: string,
    signal: AbortSignal | undefined,
  ): Promise<MogileFsResponse> {
    let conn = this.#takeIdle(i);
    let text: string;
    if (conn !== null) {
      try {
        text = await conn.ask(line, this.#timeoutMs, signal);
      } catch (e) {
        const stale = e instanceof TrackerFault && e.beforeAnswer && READ_ONLY.has(command);
        if (!stale || signal?.aborted) throw e;
        // A connection the tracker closed while it sat idle: once more, afresh.
        conn = await this.#connect(i, signal);
        text = await conn.ask(line, this.#timeoutMs, signal);
      }
    } else {
      conn = await this.#connect(i, signal);
      text = await conn.ask(line, this.#timeoutMs, signal);
    }
    let answer: MogileFsResponse;
    try {
      answer = parseResponse(text);
    } catch (e) {
      this.#drop(conn);
      throw new TrackerFault(`malformed answer: ${errorText(e)}`, false, e);
    }
    if (!answer.ok && DOUBLE_ANSWER_CODES.has(answer.code)) this.#drop(conn);
    else this.#release(conn);
    return answer;
  }

  async #connect(i: number, signal: AbortSignal | undefined): Promise<TrackerConnection> {
    const { address, label } = this.#trackers[i]!;
    let conn: Deno.TcpConn;
    try {
      conn = await connectTcp(address.host, address.port, this.#connectTimeoutMs, signal);
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      throw new TrackerFault(`cannot connect: ${errorText(e)}`, false, e);
    }
    if (this.#closed) {
      closeQuietly(conn);
      this.#checkOpen(`connect to ${label}`);
    }
    try {
      conn.setNoDelay(true);
    } catch {
      // Not fatal: a request line is one small segment anyway.
    }
    const tc = new TrackerConnection(conn, i, (dead) => {
      this.#open.delete(dead);
      const k = this.#idle.indexOf(dead);
      if (k >= 0) this.#idle.splice(k, 1);
    });
    this.#open.add(tc);
    return tc;
  }

  #takeIdle(i: number): TrackerConnection | null {
    for (let k = this.#idle.length - 1; k >= 0; k--) {
      const c = this.#idle[k]!;
      if (c.tracker === i && c.alive) {
        this.#idle.splice(k, 1);
        return c;
      }
    }
    return null;
  }

  #release(conn: TrackerConnection): void {
    if (this.#closed || !conn.alive || conn.tracker !== this.#preferred) {
      this.#drop(conn);
      return;
    }
    this.#idle.push(conn);
    while (this.#idle.length > this.#maxConnections) this.#drop(this.#idle[0]!);
  }

  #drop(conn: TrackerConnection): void {
    const k = this.#idle.indexOf(conn);
    if (k >= 0) this.#idle.splice(k, 1);
    conn.destroy();
  }

  #checkOpen(what: string): void {
    if (this.#closed) {
      throw new PortError(`MogileFS ${what}: the client is closed`, {
        code: "Closed",
        retryable: false,
      });
    }
  }

  /** The hash type of a class, from `get_domains` (cached; looked up again once when unknown). */
  /**
   * The hash type of a class, from `get_domains`: cached; a class missing
   * from the cache is looked up again at most once a minute (a tracker may
   * not list the `default` class).
   */
  async #hashtype(
    domain: string,
    storageClass: string,
    signal: AbortSignal | undefined,
  ): Promise<string | null> {
    const className = storageClass === "" ? "default" : storageClass;
    const find = () => this.#domains?.get(domain)?.classes.get(className);
    if (find() === undefined && performance.now() - this.#domainsAt >= DOMAINS_REFRESH_MS) {
      await this.getDomains(signal ? { signal } : {});
    }
    return find()?.hashtype ?? null;
  }

  // -------------------------------------------------------------------------
  // Storage node plumbing

  /** A GET whose headers must arrive within `timeoutMs`. */
  async #get(path: string, signal: AbortSignal | undefined): Promise<Response> {
    const url = httpUrl(path);
    const timer = new AbortController();
    const id = setTimeout(
      () => timer.abort(new NodeFault(`no answer within ${this.#timeoutMs} ms`)),
      this.#timeoutMs,
    );
    try {
      return await fetch(url, {
        client: this.#http,
        headers: { "accept-encoding": "identity" },
        signal: signal ? AbortSignal.any([signal, timer.signal]) : timer.signal,
      });
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      if (timer.signal.aborted) throw timer.signal.reason;
      throw e;
    } finally {
      clearTimeout(id);
    }
  }

  /** The body of a 200 answer, checked for its length and for stalls. */
  #bodyStream(
    response: Response,
    o: { what: string; length: number | null; signal: AbortSignal | undefined },
  ): ReadableStream<Uint8Array> {
    const body = response.body;
    const timeoutMs = this.#timeoutMs;
    if (body === null) {
      return new ReadableStream({
        start(controller) {
          if (o.length !== null && o.length > 0) {
            controller.error(truncated(o.what, 0, o.length));
          } else controller.close();
        },
      });
    }
    const reader = body.getReader();
    let received = 0;
    return new ReadableStream<Uint8Array>({
      async pull(controller) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        const stalled = new Promise<"stalled">((resolve) => {
          timer = setTimeout(() => resolve("stalled"), timeoutMs);
        });
        let r: ReadableStreamReadResult<Uint8Array> | "stalled";
        try {
          r = await Promise.race([reader.read(), stalled]);
        } catch (e) {
          if (o.signal?.aborted) controller.error(o.signal.reason);
          else if (o.length !== null && received < o.length) {
            controller.error(truncated(o.what, received, o.length, e));
          } else {
            controller.error(
              new PortError(`Cannot read ${o.what}: ${errorText(e)}`, {
                code: "ReadFailed",
                retryable: true,
                cause: e,
              }),
            );
          }
          return;
        } finally {
          clearTimeout(timer);
        }
        if (r === "stalled") {
          await reader.cancel().catch(() => {});
          controller.error(
            new PortError(`Cannot read ${o.what}: no bytes for ${timeoutMs} ms`, {
              code: "Timeout",
              retryable: true,
            }),
          );
          return;
        }
        if (r.done) {
          if (o.length !== null && received < o.length) {
            controller.error(truncated(o.what, received, o.length));
          } else controller.close();
          return;
        }
        received += r.value.length;
        if (o.length !== null && received > o.length) {
          await reader.cancel().catch(() => {});
          controller.error(
            new PortError(`Cannot read ${o.what}: more than the expected ${o.length} bytes`, {
              code: "LengthMismatch",
              retryable: true,
            }),
          );
          return;
        }
        controller.enqueue(r.value);
      },
      async cancel(reason) {
        await reader.cancel(reason).catch(() => {});
      },
    }, { highWaterMark: 0 });
  }

  /**
   * PUTs exactly `length` bytes of a fresh `body()` to `path` over its own
   * connection, hashing them on the way. Node failures reject with
   * `NodeFault` (try the next path); a body of the wrong length rejects with
   * `PortError` `LengthMismatch`; a failing body with its own error.
   */
  async #put(
    path: string,
    length: number,
    body: () => ReadableStream<Uint8Array>,
    what: string,
    signal: AbortSignal | undefined,
  ): Promise<{ md5: string; count: number }> {
    const url = httpUrl(path);
    if (url.protocol !== "http:") {
      throw new NodeFault(`not an http:// path`);
    }
    let conn: Deno.TcpConn;
    try {
      conn = await connectTcp(
        url.hostname.replace(/^\[|\]$/g, ""),
        Number(url.port || "80"),
        this.#connectTimeoutMs,
        signal,
      );
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      throw new NodeFault(`cannot connect: ${errorText(e)}`, e);
    }
    const onAbort = () => closeQuietly(conn);
    signal?.addEventListener("abort", onAbort, { once: true });
    let reader: ReadableStreamDefaultReader<Uint8Array> | null = null;
    try {
      const head = `PUT ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\n` +
        `Content-Length: ${length}\r\nConnection: close\r\n\r\n`;
      await this.#sendBytes(conn, encoder.encode(head));
      const hash = createHash("md5");
      let count = 0;
      reader = body().getReader();
      for (;;) {
        const r = await readOrAbort(reader, signal);
        if (r.done) break;
        if (count + r.value.length > length) {
          throw new PortError(
            `Cannot write ${what}: the body has more than the promised ${length} bytes; the file was not closed`,
            { code: "LengthMismatch", retryable: false },
          );
        }
        hash.update(r.value);
        count += r.value.length;
        await this.#sendBytes(conn, r.value);
      }
      reader = null;
      if (count !== length) {
        throw new PortError(
          `Cannot write ${what}: the body has ${count} bytes, not the promised ${length}; the file was not closed`,
          { code: "LengthMismatch", retryable: false },
        );
      }
      const status = await this.#readStatus(conn);
      if (status < 200 || status > 299) throw new NodeFault(`HTTP ${status}`);
      return { md5: hash.digest("hex"), count };
    } finally {
      signal?.removeEventListener("abort", onAbort);
      closeQuietly(conn);
      if (reader !== null) await reader.cancel().catch(() => {});
    }
  }

  /** Writes all of `bytes`; a write stalled for `timeoutMs` is a NodeFault. */
  async #sendBytes(conn: Deno.TcpConn, bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      try {
        const n = await Promise.race([
          conn.write(bytes.subarray(offset)),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => {
              closeQuietly(conn);
              reject(new NodeFault(`the node took no bytes for ${this.#timeoutMs} ms`));
            }, this.#timeoutMs);
          }),
        ]);
        offset += n;
      } catch (e) {
        if (e instanceof NodeFault) throw e;
        throw new NodeFault(`cannot send: ${errorText(e)}`, e);
      } finally {
        clearTimeout(timer);
      }
    }
  }

  /** Reads an HTTP response head; resolves to its status code. */
  async #readStatus(conn: Deno.TcpConn): Promise<number> {
    const buf = new Uint8Array(4096);
    let head = "";
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      let n: number | null;
      try {
        n = await Promise.race([
          conn.read(buf),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => {
              closeQuietly(conn);
              reject(new NodeFault(`no answer within ${this.#timeoutMs} ms`));
            }, this.#timeoutMs);
          }),
        ]);
      } catch (e) {
        if (e instanceof NodeFault) throw e;
        throw new NodeFault(`no answer: ${errorText(e)}`, e);
      } finally {
        clearTimeout(timer);
      }
      if (n === null) {
        throw new NodeFault(head === "" ? "closed without an answer" : "answer cut short");
      }
      head += lineDecoder.decode(buf.subarray(0, n));
      const m = /^HTTP\/\d\.\d (\d{3})/.exec(head);
      if (m && head.includes("\r\n")) return Number(m[1]);
      if (head.length > 8192 || (head.includes("\n") && !m)) {
        throw new NodeFault(`not an HTTP answer: "${head.slice(0, 40)}"`);
      }
    }
  }
}

/**
 * One persistent tracker connection. A read loop runs all along, so that a
 * connection the tracker closes while idle is noticed and dropped.
 */
class TrackerConnection {
  readonly tracker: number;
  readonly #conn: Deno.TcpConn;
  readonly #loop: Promise<void>;
  readonly #onDead: (c: TrackerConnection) => void;
  #pending: Uint8Array[] = [];
  #pendingLength = 0;
  #waiter: {
    resolve: (line: string) => void;
    reject: (e: unknown) => void;
    gotBytes: boolean;
  } | null = null;
  #dead = false;

  constructor(conn: Deno.TcpConn, tracker: number, onDead: (c: TrackerConnection) => void) {
    this.#conn = conn;
    this.tracker = tracker;
    this.#onDead = onDead;
    this.#loop = this.#readLoop();
  }

  get alive(): boolean {
    return !this.#dead;
  }

  /** Sends `line` and resolves to the answer line (without its line end). */
  ask(line: string, timeoutMs: number, signal: AbortSignal | undefined): Promise<string> {
    if (this.#dead) {
      return Promise.reject(new TrackerFault("connection already closed", true));
    }
    return new Promise<string>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined = undefined;
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", onAbort);
        this.#waiter = null;
      };
      const onAbort = () => {
        done();
        this.destroy();
        reject(signal?.reason);
      };
      this.#waiter = {
        resolve: (l) => {
          done();
          resolve(l);
        },
        reject: (e) => {
          done();
          reject(e);
        },
        gotBytes: this.#pendingLength > 0,
      };
      timer = setTimeout(() => {
        const w = this.#waiter;
        this.destroy();
        w?.reject(new TrackerFault(`no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      signal?.addEventListener("abort", onAbort, { once: true });
      this.#write(encoder.encode(line)).catch((e) => {
        const w = this.#waiter;
        this.destroy();
        w?.reject(new TrackerFault(`cannot send: ${errorText(e)}`, true, e));
      });
    });
  }

  /** Closes the connection (a pending request rejects). */
  destroy(): void {
    if (this.#dead) return;
    this.#dead = true;
    closeQuietly(this.#conn);
    this.#onDead(this);
  }

  /** Closes and waits for the read loop to end. */
  async close(): Promise<void> {
    const w = this.#waiter;
    this.destroy();
    w?.reject(new TrackerFault("the client was closed"));
    await this.#loop;
  }

  async #write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) offset += await this.#conn.write(bytes.subarray(offset));
  }

  async #readLoop(): Promise<void> {
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      let n: number | null;
      try {
        n = await this.#conn.read(buf);
      } catch (e) {
        this.#fail(this.#dead ? "connection closed" : `connection failed: ${errorText(e)}`, e);
        return;
      }
      if (n === null) {
        this.#fail("the tracker closed the connection");
        return;
      }
      if (!this.#take(buf.subarray(0, n))) return;
    }
  }

  /** Adds bytes; hands out complete lines. False when the connection is done for. */
  #take(chunk: Uint8Array): boolean {
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl === -1) break;
      const part = chunk.subarray(start, nl);
      const bytes = this.#pendingLength === 0 ? part : concat([...this.#pending, part]);
      this.#pending = [];
      this.#pendingLength = 0;
      start = nl + 1;
      const line = lineDecoder.decode(bytes).replace(/\r$/, "");
      const w = this.#waiter;
      if (w === null) {
        this.#fail(`an answer nobody asked for: "${line.slice(0, 60)}"`);
        return false;
      }
      w.resolve(line);
    }
    if (start < chunk.length) {
      if (this.#waiter === null) {
        this.#fail("bytes nobody asked for after an answer");
        return false;
      }
      const rest = chunk.slice(start);
      this.#pending.push(rest);
      this.#pendingLength += rest.length;
      this.#waiter.gotBytes = true;
      if (this.#pendingLength > MAX_LINE) {
        this.#fail(`an answer longer than ${MAX_LINE} bytes`);
        return false;
      }
    }
    return true;
  }

  #fail(message: string, cause?: unknown): void {
    const w = this.#waiter;
    const wasDead = this.#dead;
    this.destroy();
    if (w !== null && !wasDead) w.reject(new TrackerFault(message, !w.gotBytes, cause));
  }
}

// ---------------------------------------------------------------------------
// Helpers

/** Connects with a timeout; the caller's abort rejects with its reason. */
async function connectTcp(
  hostname: string,
  port: number,
  timeoutMs: number,
  signal: AbortSignal | undefined,
): Promise<Deno.TcpConn> {
  signal?.throwIfAborted();
  const controller = new AbortController();
  const onAbort = () => controller.abort(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  const timer = setTimeout(
    () => controller.abort(new Error(`no connection within ${timeoutMs} ms`)),
    timeoutMs,
  );
  try {
    return await Deno.connect({ hostname, port, signal: controller.signal });
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    if (controller.signal.aborted) throw controller.signal.reason;
    throw e;
  } finally {
    clearTimeout(timer);
    signal?.removeEventListener("abort", onAbort);
  }
}

/** `reader.read()`, or the signal's reason as soon as it aborts (a stalled body cannot hold a write). */
function readOrAbort<T>(
  reader: ReadableStreamDefaultReader<T>,
  signal: AbortSignal | undefined,
): Promise<ReadableStreamReadResult<T>> {
  if (signal === undefined) return reader.read();
  signal.throwIfAborted();
  let onAbort = () => {};
  const aborted = new Promise<never>((_, reject) => {
    onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
  });
  return Promise.race([reader.read(), aborted]).finally(() => {
    signal.removeEventListener("abort", onAbort);
  });
}

function concat(parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const p of parts) length += p.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const p of parts) {
    out.set(p, offset);
    offset += p.length;
  }
  return out;
}

function positive(name: string, value: number): number {
  if (!(value > 0) || !Number.isFinite(value)) {
    throw new RangeError(
      `Invalid MogileFS client options: ${name} ${value} is not a positive number`,
    );
  }
  return value;
}

function trackerLabel(t: TrackerAddress): string {
  return `${t.host.includes(":") ? `[${t.host}]` : t.host}:${t.port}`;
}

/** `domain/"key"` for messages: the key quoted so odd characters show. */
function describe(domain: string, key: string): string {
  return `${domain}/${JSON.stringify(key)}`;
}

/** The fid a storage path names, or null when it does not look like one. */
export function fidOfPath(path: string): number | null {
  const m = FID_PATH.exec(path.replace(/[?#].*$/, ""));
  if (!m) return null;
  const fid = Number(m[1]);
  return Number.isSafeInteger(fid) ? fid : null;
}

function httpUrl(path: string): URL {
  try {
    return new URL(path);
  } catch (e) {
    throw new NodeFault(`not a URL`, e);
  }
}

function truncated(what: string, got: number, want: number, cause?: unknown): PortError {
  return new PortError(`Cannot read ${what}: the body ended after ${got} of ${want} bytes`, {
    code: "Truncated",
    retryable: true,
    ...(cause === undefined ? {} : { cause }),
  });
}

function errorText(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return typeof code === "string" && !e.message.includes(code)
      ? `${code}: ${e.message}`
      : e.message;
  }
  return String(e);
}

function str(args: MogileFsArgs, name: string, what: string): string {
  const v = args[name];
  if (v === undefined) throw badResponse(what, `${name} is missing`);
  return v;
}

function int(args: MogileFsArgs, name: string, what: string): number {
  const v = optionalInt(args, name, what);
  if (v === null) throw badResponse(what, `${name} is missing`);
  return v;
}

function optionalInt(args: MogileFsArgs, name: string, what: string): number | null {
  const v = args[name];
  if (v === undefined) return null;
  const n = /^\d+$/.test(v) ? Number(v) : NaN;
  if (!Number.isSafeInteger(n)) {
    throw badResponse(what, `${name} "${v.slice(0, 40)}" is not a whole number`);
  }
  return n;
}

function badResponse(what: string, problem: string): PortError {
  return new PortError(`MogileFS ${what}: malformed answer: ${problem}`, {
    code: "BadResponse",
    retryable: false,
  });
}
