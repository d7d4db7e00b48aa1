/**
 * A {@linkcode Source} over MogileFS (`--source mogilefs://t1:7001,t2:7001/ugc`):
 * one domain, or every domain when the URL names none.
 *
 * Listing follows fids: `list_fids` above a fid, in pages of `pageSize`
 * rows (default 500, the tracker's most), sorted by fid here (the tracker
 * does not sort). `list({ after })` takes a fid as its cursor (`null` or
 * `""`: from 0, a full listing) and every page carries
 *
 * - `cursor`: the highest fid seen so far (never below `after`), as a
 *   decimal string;
 * - `span`: `(from, highest fid of the page]`, where `from` is the fid the
 *   page was asked from. A successful `list_fids` answer holds every file in
 *   that span (the tracker takes the rows above `from` in primary key order
 *   before its `LIMIT`), so a file the catalog has there but the page lacks
 *   is gone. Files of other domains are left out of `entries` (unless every
 *   domain is listed) but still count for the cursor and the span. An empty
 *   answer yields no page.
 *
 * A page with fewer rows than asked ends the listing.
 *
 * Late uploads. MogileFS allocates a fid at `create_open` but lists the file
 * only after `create_close`, which comes after the upload: a slow upload
 * appears below fids already listed, that is below the cursor. So an
 * incremental listing starts `lookbackFids` (default 10,000) below the
 * given cursor whenever `lookbackMs` (default 30 s) have passed since the
 * last look back that listed to its end (the first incremental listing
 * after opening always looks back). Files found again that way are
 * repeats, which the caller
 * de-duplicates by (key, version); an upload slower than the look back
 * reaches is found by the next full listing (`rescanMs`, 1 hour).
 *
 * Entries: `key` is the MogileFS key exactly, `version` the fid in
 * decimal, `domain` and `storageClass` as the tracker names them,
 * `sourceFid` the fid. MogileFS keeps no creation time, so `mtimeMs` is
 * the time of the listing that returned the entry; the catalog keeps what
 * it recorded first (it ignores versions it knows), so in effect it is
 * the time the file was first listed. A key whose bytes are not UTF-8 is
 * skipped (its name cannot be said again to the tracker). The same key in
 * two domains is two files.
 *
 * `open` reads through `get_paths` and HTTP with failover across paths
 * (see `adapters/mogilefs/client.ts`): a key that is gone is
 * `VanishedError`, a key written again (another fid) `ChangedError`.
 *
 * @module
 */

import { PortError } from "../../core/errors.ts";
import { type SourceId, sourceId } from "../../core/ids.ts";
import type { Clock, ListOptions, ListPage, Source, SourceEntry } from "../../core/ports.ts";
import { formatSourceUrl, type MogileFsSourceUrl, remoteSourceId } from "../../core/source_url.ts";
import { MogileFsClient, type MogileFsClientOptions } from "../mogilefs/client.ts";

/** Options for {@linkcode MogileFsSource.open}. */
export interface MogileFsSourceOptions extends Omit<MogileFsClientOptions, "trackers"> {
  /** Rows asked of `list_fids` per page, 1 to 500. Default 500. */
  readonly pageSize?: number;
  /** How often an incremental listing looks back below its cursor, ms. Default 30,000. */
  readonly lookbackMs?: number;
  /** How many fids below the cursor a look back starts. Default 10,000. */
  readonly lookbackFids?: number;
  /** Time source for the look back and `mtimeMs`. Default: the system clock. */
  readonly clock?: Pick<Clock, "now">;
}

/** Why a file whose key is not UTF-8 is skipped. */
export const KEY_NOT_UTF8_REASON = "key is not valid UTF-8";

const MAX_PAGE = 500;

/**
 * MogileFS as a {@linkcode Source} (see the module notes).
 *
 * @example
 * ```ts
 * const source = await MogileFsSource.open(parseSourceUrl("mogilefs://10.0.0.1:7001/ugc") as MogileFsSourceUrl);
 * let cursor: string | null = null;
 * for await (const page of source.list({ after: cursor })) cursor = page.cursor ?? cursor;
 * await source.close();
 * ```
 */
export class MogileFsSource implements Source {
  /** `mogilefs:<domain>`, or `mogilefs:*` for every domain (trackers change; they are not part of it). */
  readonly id: SourceId;
  /** Poll after the cursor every second. */
  readonly pollMs = 1000;
  /** A full listing every hour. */
  readonly rescanMs = 3_600_000;
  /** The one domain listed, or null for every domain. */
  readonly domain: string | null;
  /** E.g. `mogilefs://t1:7001,t2:7001/ugc`, for messages. */
  readonly location: string;
  readonly #client: MogileFsClient;
  readonly #pageSize: number;
  readonly #lookbackMs: number;
  readonly #lookbackFids: number;
  readonly #clock: Pick<Clock, "now">;
  #lastLookback = -Infinity;
  #domainChecked = false;
  #closed = false;

  readonly #url: MogileFsSourceUrl;

  private constructor(url: MogileFsSourceUrl, client: MogileFsClient, o: MogileFsSourceOptions) {
    this.#url = url;
    this.domain = url.domain ?? null;
    this.id = sourceId(remoteSourceId(url));
    this.location = formatSourceUrl(url);
    this.#client = client;
    this.#pageSize = o.pageSize ?? MAX_PAGE;
    this.#lookbackMs = o.lookbackMs ?? 30_000;
    this.#lookbackFids = o.lookbackFids ?? 10_000;
    this.#clock = o.clock ?? { now: () => Date.now() };
  }

  /** What opens this source again in another thread (the pack workers): plain data. */
  spec(): { readonly url: MogileFsSourceUrl } {
    return { url: this.#url };
  }

  /**
   * Opens the source. When the URL names a domain, checks with `get_domains`
   * that it exists; if no tracker answers, the check is made again before
   * the first listing instead.
   *
   * @throws {RangeError} a bad page size or look back
   * @throws {PortError} `unreg_domain` when the domain does not exist
   */
  static async open(
    url: MogileFsSourceUrl,
    options: MogileFsSourceOptions = {},
  ): Promise<MogileFsSource> {
    const pageSize = options.pageSize ?? MAX_PAGE;
    if (!Number.isSafeInteger(pageSize) || pageSize < 1 || pageSize > MAX_PAGE) {
      throw new RangeError(`Invalid MogileFS page size: ${pageSize} (1 to ${MAX_PAGE})`);
    }
    checkWholeNumber("lookbackMs", options.lookbackMs);
    checkWholeNumber("lookbackFids", options.lookbackFids);
    const { pageSize: _p, lookbackMs: _l, lookbackFids: _f, clock: _c, ...clientOptions } = options;
    const client = new MogileFsClient({ ...clientOptions, trackers: url.trackers });
    const source = new MogileFsSource(url, client, options);
    try {
      await source.#checkDomain(undefined);
    } catch (e) {
      if (!(e instanceof PortError && e.code === "TrackerUnavailable")) {
        await client.close();
        throw e;
      }
    }
    return source;
  }

  /**
   * Lists files by fid after the cursor `after` (see the module notes).
   *
   * @throws {SyntaxError} a cursor that is not a fid
   * @throws {PortError} from the tracker (`TrackerUnavailable`, `unreg_domain`...)
   */
  async *list(options: ListOptions = {}): AsyncGenerator<ListPage> {
    this.#checkOpen("list");
    const { signal } = options;
    signal?.throwIfAborted();
    const after = parseCursor(options.after ?? null);
    await this.#checkDomain(signal);
    let from = after;
    // A look back counts once its listing got to the end (a failed one is tried again).
    let lookback: number | null = null;
    if (after > 0) {
      const now = this.#clock.now();
      if (now - this.#lastLookback >= this.#lookbackMs) {
        lookback = now;
        from = Math.max(0, after - this.#lookbackFids);
      }
    }
    const finished = () => {
      if (lookback !== null) this.#lastLookback = lookback;
    };
    let high = after;
    for (;;) {
      const rows = await this.#client.listFids(from, this.#pageSize, signal ? { signal } : {});
      if (rows.length === 0) return finished();
      const last = rows[rows.length - 1]!.fid;
      high = Math.max(high, last);
      const now = this.#clock.now();
      const entries: SourceEntry[] = [];
      const skipped: { key: string; reason: string }[] = [];
      for (const row of rows) {
        if (this.domain !== null && row.domain !== this.domain) continue;
        if (!row.keyIsUtf8) {
          skipped.push({ key: row.key, reason: KEY_NOT_UTF8_REASON });
          continue;
        }
        const entry: SourceEntry = {
          key: row.key,
          version: String(row.fid),
          length: row.length,
          mtimeMs: now,
          domain: row.domain,
          sourceFid: row.fid,
          ...(row.class !== "" ? { storageClass: row.class } : {}),
        };
        entries.push(entry);
      }
      yield { entries, skipped, cursor: String(high), span: { from, to: last } };
      if (rows.length < this.#pageSize) return finished();
      from = last;
      signal?.throwIfAborted();
    }
  }

  /**
   * Opens one version: `get_paths`, then GETs with failover, the length and
   * fid checked.
   *
   * @throws {VanishedError} the key is gone
   * @throws {ChangedError} the key has another fid now
   * @throws {TypeError} an entry without a domain from an every-domain source
   * @throws {PortError} `NoReadablePath`, `LengthMismatch`, tracker errors
   */
  async open(
    entry: SourceEntry,
    options: { signal?: AbortSignal } = {},
  ): Promise<ReadableStream<Uint8Array>> {
    const { signal } = options;
    signal?.throwIfAborted();
    this.#checkOpen("open");
    const domain = entry.domain ?? this.domain;
    if (domain === null || domain === "") {
      throw new TypeError(
        `Cannot open MogileFS key ${JSON.stringify(entry.key)}: the entry names no domain`,
      );
    }
    const fid = entry.sourceFid ?? (/^\d+$/.test(entry.version) ? Number(entry.version) : NaN);
    return await this.#client.openRead(domain, entry.key, {
      expectLength: entry.length,
      ...(Number.isSafeInteger(fid) ? { expectFid: fid } : {}),
      ...(signal ? { signal } : {}),
    });
  }

  /** Closes the tracker connections. Idempotent. */
  async close(): Promise<void> {
    this.#closed = true;
    await this.#client.close();
  }

  async #checkDomain(signal: AbortSignal | undefined): Promise<void> {
    if (this.#domainChecked || this.domain === null) return;
    const domains = await this.#client.getDomains(signal ? { signal } : {});
    if (!domains.some((d) => d.name === this.domain)) {
      const names = domains.map((d) => d.name).sort().join(", ");
      throw new PortError(
        `MogileFS source ${this.location}: the domain "${this.domain}" does not exist (the trackers know ${
          names === "" ? "no domain" : names
        })`,
        { code: "unreg_domain", retryable: false },
      );
    }
    this.#domainChecked = true;
  }

  #checkOpen(what: string): void {
    if (this.#closed) {
      throw new PortError(`MogileFS source ${this.location}: ${what} after close`, {
        code: "Closed",
        retryable: false,
      });
    }
  }
}

function checkWholeNumber(name: string, v: number | undefined): void {
  if (v !== undefined && (!Number.isSafeInteger(v) || v < 0)) {
    throw new RangeError(`Invalid MogileFS ${name}: ${v} is not a whole number`);
  }
}

function parseCursor(after: string | null): number {
  if (after === null || after === "") return 0;
  const fid = /^\d{1,16}$/.test(after) ? Number(after) : NaN;
  if (!Number.isSafeInteger(fid)) {
    throw new SyntaxError(`Invalid MogileFS cursor "${after.slice(0, 40)}": not a fid`);
  }
  return fid;
}
