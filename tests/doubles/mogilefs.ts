/**
 * A strict test double of MogileFS: trackers (mogilefsd's line protocol on
 * TCP) and storage nodes (mogstored's plain HTTP), sharing one in-memory
 * state. It follows PROTOCOLS.md section 1 and the reference tracker
 * (MogileFS::Worker::Query): the same commands, answers and error codes, and
 * it refuses what a sloppy client gets away with elsewhere:
 *
 * - a request line must end with CRLF (`ERR bad_params`, the connection
 *   stays); a line longer than {@linkcode MAX_LINE_BYTES} closes it;
 * - arguments must be encoded as mogilefsd's clients encode them: only
 *   `A-Za-z0-9_,-./\:` raw, `+` for space, `%XX` for the rest (lower-case hex
 *   decodes too); any other raw byte or a malformed escape is
 *   `ERR bad_params Invalid+encoding...`, and so are duplicated arguments;
 * - the keys of an `OK` answer come in a seeded random order, and so do the
 *   rows of `list_fids` (the real tracker has no ORDER BY);
 * - `list_fids` takes `to` as a row count (default 100, at most 500);
 * - fids only grow, with seeded gaps, and a fid is allocated at
 *   `create_open` while its row appears only at `create_close`;
 * - a storage node accepts a `PUT` only to a path `create_open` handed out
 *   and not yet closed (403 otherwise); `create_close` checks the path, the
 *   device, the size on the node (`size_mismatch`) and, with
 *   `checksumverify=1`, the MD5 (`checksum_mismatch`); a failed close drops
 *   the temp file, as mogilefsd does, so a retry gets `no_temp_file`.
 *
 * After a close the double copies the bytes to further devices (other nodes
 * first) until the class's `mindevcount` is met, at once. Unknown domains are
 * `ERR unreg_domain` (mogilefsd's code; `domain_not_found` is what its admin
 * commands say).
 *
 * Faults ({@linkcode MogileFsDouble.inject}) apply to requests from clients
 * over TCP, never to the double's own {@linkcode MogileFsDouble.put}. Trackers
 * and nodes can be stopped and started again on the same port, and a replica
 * can be truncated or removed ({@linkcode MogileFsDouble.damage}).
 *
 * Everything binds 127.0.0.1 on free ports; {@linkcode MogileFsDouble.close}
 * ends every listener, connection and timer.
 *
 * @example
 * ```ts
 * const mogile = await MogileFsDouble.start({ domains: { ugc: { thumbs: { mindevcount: 1 } } } });
 * const fid = await mogile.put("ugc", "a/b.png", new Uint8Array([1, 2, 3]));
 * // a client speaks to mogile.trackers[0] ("127.0.0.1:PORT") or mogile.url("ugc")
 * mogile.inject({ kind: "drop" }, { command: "get_paths", count: 1 });
 * await mogile.close();
 * ```
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from "node:http";
import { createServer as createTcpServer, type Server as TcpServer, type Socket } from "node:net";
import { prng } from "../../scripts/corpus.ts";

/** A class of a domain: how many copies a file gets and whether its checksum is kept. */
export interface MogileFsClassSpec {
  /** Devices a file of this class is copied to; default 2. */
  readonly mindevcount?: number;
  /** `"MD5"`: `file_info` reports `checksum=MD5:<hex>`; default null (none). */
  readonly hashtype?: "MD5" | null;
}

/** Options for {@linkcode MogileFsDouble.start}. */
export interface MogileFsDoubleOptions {
  /**
   * Domains and their classes; every domain also has class "default" (mindevcount 2, no hash),
   * which an entry named "default" overrides. Default: `{ ugc: {} }`.
   */
  readonly domains?: Record<string, Record<string, MogileFsClassSpec>>;
  /** Tracker listeners sharing one state; default 1 (failover tests use 2). */
  readonly trackers?: number;
  /** Storage node HTTP servers; default 2. */
  readonly nodes?: number;
  /**
   * Devices per node; default 1. Devids are 1..nodes*devicesPerNode, node i holding
   * i*devicesPerNode+1...
   */
  readonly devicesPerNode?: number;
  /** Seed of the PRNG for fid gaps, answer key order, list_fids row order, devices; default 1. */
  readonly seed?: number;
  /** Default true: the fid counter sometimes skips 1-3 values. */
  readonly fidGaps?: boolean;
}

/** A tracker command; faults can be limited to one. */
export type TrackerCommand =
  | "list_fids"
  | "file_info"
  | "get_paths"
  | "list_keys"
  | "get_domains"
  | "create_open"
  | "create_close"
  | "delete"
  | string;

/**
 * What a fault does to a tracker request.
 *
 * - `err`: answers `ERR code text` (text defaults to the code); the command does not run.
 * - `drop`: closes the connection without answering. The command does not run, unless
 *   `afterExecute` is true: then it takes effect and only its answer is lost.
 * - `delay`: the command takes effect at once, its answer is written `ms` later (a slow
 *   tracker); later answers on the same connection wait behind it.
 * - `garbage`: answers a line that is neither `OK` nor `ERR`; the command does not run.
 */
export type MogileFsFault =
  | { readonly kind: "err"; readonly code: string; readonly text?: string }
  | { readonly kind: "drop"; readonly afterExecute?: boolean }
  | { readonly kind: "delay"; readonly ms: number }
  | { readonly kind: "garbage" };

/** The longest request line a tracker reads; a longer one closes the connection. */
export const MAX_LINE_BYTES = 64 * 1024;
/** `list_fids`: rows when `to` is missing or 0. */
export const LIST_FIDS_DEFAULT = 100;
/** `list_fids`: the most rows in one answer; a larger `to` is clamped. */
export const LIST_FIDS_MAX = 500;
/** `list_keys`: the most keys in one answer (and the default). */
export const LIST_KEYS_MAX = 1000;
/** The malformed line a `garbage` fault answers. */
export const GARBAGE_LINE = "OKAY garbage=%ZZ&\u0001\r\n";

const MULTI_DEST_MAX = 3;
const DEFAULT_CLASS = "default";
const EMPTY = Buffer.alloc(0);
const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
const HEX = Array.from({ length: 256 }, (_, b) => b.toString(16).toUpperCase().padStart(2, "0"));
/** Bytes a client sends raw: `A-Za-z0-9_,-./\:`. */
const SAFE = new Uint8Array(256);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_,-./\\:") {
  SAFE[c.charCodeAt(0)] = 1;
}
const PATH = /^\/dev(\d+)\/(\d)\/(\d{3})\/(\d{3})\/(\d{10})\.fid$/;

/** The default texts of mogilefsd's error codes (its `err_line` table); others repeat the code. */
const ERROR_TEXTS: Record<string, string> = {
  after_mismatch: "Pattern does not match the after-value?",
  bad_params: "Invalid parameters to command; please see documentation",
  no_devices: "No devices found to store file",
  no_domain: "No domain provided",
  no_temp_file: "No tempfile or file already closed",
  none_match: "No keys match that pattern and after-value (if any).",
  unknown_command: "Unknown server command",
  unreg_domain: "Domain name invalid/not found",
};

/**
 * Encodes text as mogilefsd and its clients do (`eurl`): UTF-8 bytes, `A-Za-z0-9_,-./\:` kept,
 * space as `+`, every other byte as `%XX` in upper-case hex.
 *
 * @example
 * ```ts
 * eurl("a b&c"); // "a+b%26c"
 * ```
 */
export function eurl(text: string): string {
  let out = "";
  for (const b of utf8.encode(text)) {
    if (SAFE[b]) out += String.fromCharCode(b);
    else if (b === 0x20) out += "+";
    else out += "%" + HEX[b];
  }
  return out;
}

/** An error answer of the tracker: `ERR code text`. */
class TrackerError extends Error {
  readonly code: string;
  constructor(code: string, text?: string) {
    super(text ?? ERROR_TEXTS[code] ?? code);
    this.name = "TrackerError";
    this.code = code;
  }
}

function badParams(text: string): TrackerError {
  return new TrackerError("bad_params", text);
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

function describeByte(c: number): string {
  return c >= 0x21 && c <= 0x7e ? `"${String.fromCharCode(c)}" (0x${HEX[c]})` : `0x${HEX[c]}`;
}

/** Decodes one form-encoded name or value (given as latin1 text of the raw bytes), strictly. */
function decodePart(part: string, at: number): string {
  const out = new Uint8Array(part.length);
  let n = 0;
  for (let i = 0; i < part.length; i++) {
    const c = part.charCodeAt(i);
    if (c === 0x2b) {
      out[n++] = 0x20;
    } else if (c === 0x25) {
      const h1 = part.charCodeAt(i + 1);
      const h2 = part.charCodeAt(i + 2);
      if (!isHex(h1) || !isHex(h2)) {
        const where = at + i;
        throw badParams(
          `Invalid encoding: malformed escape "${
            part.slice(i, i + 3)
          }" at byte ${where} of the arguments (want %XX, two hex digits)`,
        );
      }
      out[n++] = parseInt(part.slice(i + 1, i + 3), 16);
      i += 2;
    } else if (SAFE[c]) {
      out[n++] = c;
    } else {
      const where = at + i;
      const what = describeByte(c);
      throw badParams(
        `Invalid encoding: raw byte ${what} at byte ${where} of the arguments; ` +
          "only A-Za-z0-9_,-./\\: go raw, space is +, the rest %XX",
      );
    }
  }
  try {
    return strictUtf8.decode(out.subarray(0, n));
  } catch {
    throw badParams(`Invalid encoding: "${part}" at byte ${at} does not decode to UTF-8 text`);
  }
}

/** Decodes `k=v&k=v` (latin1 text of the raw bytes) strictly; throws `bad_params`. */
function decodeArgs(raw: string): Map<string, string> {
  const args = new Map<string, string>();
  let at = 0;
  for (const pair of raw.split("&")) {
    const start = at;
    at += pair.length + 1;
    if (pair === "") continue; // mogilefsd skips empty pairs
    const eq = pair.indexOf("=");
    if (eq < 0) {
      throw badParams(`Invalid encoding: argument "${pair}" at byte ${start} has no "="`);
    }
    if (pair.indexOf("=", eq + 1) >= 0) {
      const name = pair.slice(0, eq);
      throw badParams(
        `Invalid encoding: raw "=" in the value of argument "${name}" at byte ${start} (%3D)`,
      );
    }
    const name = decodePart(pair.slice(0, eq), start);
    const value = decodePart(pair.slice(eq + 1), start + eq + 1);
    if (name === "") {
      throw badParams(`Invalid parameters: an argument at byte ${start} has no name`);
    }
    if (args.has(name)) throw badParams(`Invalid parameters: argument "${name}" is given twice`);
    args.set(name, value);
  }
  return args;
}

/** A whole-number argument; `fallback` when missing or empty. */
function intArg(args: Map<string, string>, name: string, fallback: number): number {
  const v = args.get(name);
  if (v === undefined || v === "") return fallback;
  if (!/^-?\d{1,15}$/.test(v)) {
    throw badParams(`Invalid parameters: ${name}=${v} is not a whole number`);
  }
  return Number(v);
}

/** Perl truthiness of an argument, as mogilefsd tests flags (`multi_dest`, `noverify`...). */
function flag(args: Map<string, string>, name: string): boolean {
  const v = args.get(name);
  return v !== undefined && v !== "" && v !== "0";
}

/** The storage path of a fid on a device, e.g. `/dev1/0/000/000/0000000123.fid`. */
export function fidPath(devid: number, fid: number): string {
  const n = String(fid).padStart(10, "0");
  return `/dev${devid}/${n.slice(0, 1)}/${n.slice(1, 4)}/${n.slice(4, 7)}/${n}.fid`;
}

function md5Hex(bytes: Uint8Array): string {
  return createHash("md5").update(bytes).digest("hex");
}

function shuffle<T>(items: T[], rand: () => number): T[] {
  for (let i = items.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    const t = items[i] as T;
    items[i] = items[j] as T;
    items[j] = t;
  }
  return items;
}

/** The index of the first row whose key bytes satisfy `pred` (false, then true, along `rows`). */
function firstKey(rows: readonly { keyBytes: Buffer }[], pred: (key: Buffer) => boolean): number {
  let lo = 0;
  let hi = rows.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (pred((rows[mid] as { keyBytes: Buffer }).keyBytes)) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** The index of the first element of sorted `a` greater than `x`. */
function upperBound(a: readonly number[], x: number): number {
  let lo = 0;
  let hi = a.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((a[mid] as number) <= x) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

function listen(server: TcpServer | HttpServer, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, "127.0.0.1", () => {
      server.off("error", reject);
      const address = server.address();
      if (address === null || typeof address === "string") {
        reject(new TypeError("Cannot start the MogileFS double: no TCP address"));
      } else resolve(address.port);
    });
  });
}

function closeServer(server: TcpServer | HttpServer, sockets: Set<Socket>): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  for (const s of sockets) s.destroy();
  sockets.clear();
  return closed;
}

interface ClassDef {
  readonly name: string;
  readonly mindevcount: number;
  readonly hashtype: "MD5" | null;
}

interface Domain {
  readonly name: string;
  readonly classes: Map<string, ClassDef>;
  /** Closed files by key. */
  readonly files: Map<string, FileRow>;
  /** The files by key bytes, built when list_keys needs it; null after a change. */
  byKey: FileRow[] | null;
}

interface FileRow {
  readonly fid: number;
  readonly domain: string;
  readonly key: string;
  readonly keyBytes: Buffer;
  readonly class: string;
  readonly length: number;
  readonly devids: number[];
  /** `MD5:<hex>` as `file_info` reports it, when the class has a hash type. */
  readonly checksum: string | null;
}

interface TempFile {
  readonly fid: number;
  readonly domain: string;
  readonly key: string;
  readonly class: string;
  readonly devids: readonly number[];
}

interface Device {
  readonly devid: number;
  readonly node: number;
  /** Replicas and temp files by fid. */
  readonly files: Map<number, Uint8Array>;
}

interface Listener {
  readonly port: number;
  server: TcpServer | HttpServer | null;
  readonly sockets: Set<Socket>;
}

interface PendingFault {
  readonly fault: MogileFsFault;
  readonly command: string | null;
  left: number;
}

type Answer = Record<string, string | number>;

/**
 * MogileFS trackers and storage nodes on 127.0.0.1, with an in-process control API.
 * Start it with {@linkcode MogileFsDouble.start}; always {@linkcode close} it.
 */
export class MogileFsDouble {
  /** "127.0.0.1:PORT" per tracker, in order. */
  readonly trackers: readonly string[];
  /** Storage node base URLs, "http://127.0.0.1:PORT", in order. */
  readonly nodes: readonly string[];
  readonly #trackers: Listener[];
  readonly #nodes: Listener[];
  readonly #devices: Device[];
  readonly #domains = new Map<string, Domain>();
  readonly #files = new Map<number, FileRow>();
  /** Closed fids, ascending. */
  readonly #sorted: number[] = [];
  readonly #open = new Map<number, TempFile>();
  readonly #faults: PendingFault[] = [];
  readonly #counts = new Map<string, number>();
  readonly #sleeps = new Map<ReturnType<typeof setTimeout>, () => void>();
  readonly #gapRand: () => number;
  readonly #orderRand: () => number;
  readonly #fidGaps: boolean;
  #nextFid = 1;
  #closed = false;

  private constructor(
    trackers: Listener[],
    nodes: Listener[],
    options: MogileFsDoubleOptions,
    devicesPerNode: number,
  ) {
    this.#trackers = trackers;
    this.#nodes = nodes;
    this.trackers = trackers.map((t) => `127.0.0.1:${t.port}`);
    this.nodes = nodes.map((n) => `http://127.0.0.1:${n.port}`);
    this.#devices = [];
    for (let n = 0; n < nodes.length; n++) {
      for (let d = 1; d <= devicesPerNode; d++) {
        this.#devices.push({ devid: n * devicesPerNode + d, node: n, files: new Map() });
      }
    }
    const seed = options.seed ?? 1;
    this.#gapRand = prng(seed);
    this.#orderRand = prng(seed ^ 0x5bd1e995);
    this.#fidGaps = options.fidGaps ?? true;
    for (const [name, classes] of Object.entries(options.domains ?? { ugc: {} })) {
      const map = new Map<string, ClassDef>();
      map.set(DEFAULT_CLASS, { name: DEFAULT_CLASS, mindevcount: 2, hashtype: null });
      for (const [cname, spec] of Object.entries(classes)) {
        map.set(cname, {
          name: cname,
          mindevcount: spec.mindevcount ?? 2,
          hashtype: spec.hashtype ?? null,
        });
      }
      this.#domains.set(name, { name, classes: map, files: new Map(), byKey: null });
    }
  }

  /** Starts the trackers and storage nodes on free ports of 127.0.0.1. */
  static async start(options: MogileFsDoubleOptions = {}): Promise<MogileFsDouble> {
    const trackers = options.trackers ?? 1;
    const nodes = options.nodes ?? 2;
    const devicesPerNode = options.devicesPerNode ?? 1;
    for (
      const [what, n, min] of [
        ["trackers", trackers, 1],
        ["nodes", nodes, 1],
        ["devicesPerNode", devicesPerNode, 1],
      ] as const
    ) {
      if (!Number.isSafeInteger(n) || n < min) {
        throw new RangeError(
          `Invalid MogileFS double option: ${what}=${n} is not a whole number >= ${min}`,
        );
      }
    }
    for (const [domain, classes] of Object.entries(options.domains ?? {})) {
      if (domain === "") {
        throw new RangeError("Invalid MogileFS double option: an empty domain name");
      }
      for (const [name, spec] of Object.entries(classes)) {
        const m = spec.mindevcount ?? 2;
        if (name === "" || !Number.isSafeInteger(m) || m < 1) {
          throw new RangeError(
            `Invalid MogileFS double class "${domain}/${name}": mindevcount=${m} is not >= 1`,
          );
        }
      }
    }
    const started: Listener[] = [];
    const make = async (server: TcpServer | HttpServer): Promise<Listener> => {
      const port = await listen(server, 0);
      const l: Listener = { port, server, sockets: new Set() };
      started.push(l);
      return l;
    };
    try {
      const t: Listener[] = [];
      for (let i = 0; i < trackers; i++) {
        t.push(await make(createTcpServer({ allowHalfOpen: true })));
      }
      const n: Listener[] = [];
      for (let i = 0; i < nodes; i++) n.push(await make(createHttpServer()));
      const double = new MogileFsDouble(t, n, options, devicesPerNode);
      t.forEach((l) => double.#wireTracker(l));
      n.forEach((l, i) => double.#wireNode(l, i));
      return double;
    } catch (e) {
      await Promise.all(started.map((l) => l.server && closeServer(l.server, l.sockets)));
      throw e;
    }
  }

  /** `mogilefs://127.0.0.1:P1,127.0.0.1:P2/DOMAIN` (all trackers); without domain: every domain. */
  url(domain?: string): string {
    const base = `mogilefs://${this.trackers.join(",")}`;
    return domain === undefined ? base : `${base}/${domain}`;
  }

  // -------------------------------------------------------------------------
  // Acting as another MogileFS client

  /**
   * Stores `bytes` under `key` as a client would (create_open, the bytes onto the first
   * device, create_close with size and MD5), replacing an earlier file of the key.
   * Resolves to the new fid. Throws when the tracker would answer ERR (e.g. no live device).
   */
  async put(
    domain: string,
    key: string,
    bytes: Uint8Array,
    options: { class?: string } = {},
  ): Promise<number> {
    const upload = await this.openUpload(domain, key, bytes, options);
    await upload.finish();
    return upload.fid;
  }

  /**
   * create_open only: allocates a fid and a temp path but does not close it (a slow upload).
   * Returns the fid and a function that finishes it (the bytes onto the node + create_close)
   * later.
   */
  openUpload(
    domain: string,
    key: string,
    bytes: Uint8Array,
    options: { class?: string } = {},
  ): Promise<{ fid: number; finish(): Promise<void> }> {
    try {
      const open = this.#run(
        "create_open",
        new Map([["domain", domain], ["key", key], ["class", options.class ?? ""], [
          "multi_dest",
          "1",
        ], ["fid", "0"]]),
      );
      const fid = Number(open.fid);
      const devid = Number(open.devid_1);
      const path = String(open.path_1);
      const finish = (): Promise<void> => {
        try {
          const dev = this.#device(devid);
          const temp = this.#open.get(fid);
          if (temp === undefined) {
            throw new Error(`MogileFS double: fid ${fid} of ${domain}/${key} is no longer open`);
          }
          if (this.#nodes[dev.node]?.server == null) {
            throw new Error(
              `MogileFS double: cannot write ${path}: storage node ${dev.node} is stopped`,
            );
          }
          dev.files.set(fid, bytes.slice());
          this.#run(
            "create_close",
            new Map([
              ["domain", domain],
              ["key", key],
              ["fid", String(fid)],
              ["devid", String(devid)],
              ["path", path],
              ["size", String(bytes.length)],
              ["checksum", `MD5:${md5Hex(bytes)}`],
            ]),
          );
          return Promise.resolve();
        } catch (e) {
          return Promise.reject(e);
        }
      };
      return Promise.resolve({ fid, finish });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** Deletes a key as the `delete` command does; false when there is no such key. */
  delete(domain: string, key: string): boolean {
    const row = this.#domain(domain).files.get(key);
    if (row === undefined) return false;
    this.#removeRow(row);
    return true;
  }

  /** What the tracker has for a key, or null. `bytes` come from the first replica that has any. */
  file(
    domain: string,
    key: string,
  ): { fid: number; class: string; length: number; devids: number[]; bytes: Uint8Array } | null {
    const row = this.#domain(domain).files.get(key);
    if (row === undefined) return null;
    let bytes: Uint8Array = new Uint8Array(0);
    for (const d of row.devids) {
      const b = this.#device(d).files.get(row.fid);
      if (b !== undefined) {
        bytes = new Uint8Array(b);
        break;
      }
    }
    return {
      fid: row.fid,
      class: row.class,
      length: row.length,
      devids: [...row.devids],
      bytes,
    };
  }

  /** Every closed file, by fid. */
  files(): { fid: number; domain: string; key: string; class: string; length: number }[] {
    return this.#sorted.map((fid) => {
      const r = this.#files.get(fid) as FileRow;
      return { fid, domain: r.domain, key: r.key, class: r.class, length: r.length };
    });
  }

  /** Fids allocated by create_open and never closed (leftover temp files), ascending. */
  openFids(): number[] {
    return [...this.#open.keys()].sort((a, b) => a - b);
  }

  /** The highest fid allocated so far (0 before the first create_open). */
  lastFid(): number {
    return this.#nextFid - 1;
  }

  // -------------------------------------------------------------------------
  // Faults

  /** The next `count` requests (default 1; of `command`, if given) get `fault`. */
  inject(fault: MogileFsFault, options: { command?: TrackerCommand; count?: number } = {}): void {
    const count = options.count ?? 1;
    if (!Number.isSafeInteger(count) || count < 1) {
      throw new RangeError(`Invalid fault count: ${count} is not a whole number >= 1`);
    }
    if (fault.kind === "delay" && (!Number.isFinite(fault.ms) || fault.ms < 0)) {
      throw new RangeError(`Invalid delay fault: ${fault.ms} ms`);
    }
    this.#faults.push({ fault, command: options.command ?? null, left: count });
  }

  /** Forgets faults not served yet. */
  clearFaults(): void {
    this.#faults.length = 0;
  }

  /** Stops tracker i (its connections are closed, new ones refused). */
  async stopTracker(i: number): Promise<void> {
    const t = this.#listener(this.#trackers, "tracker", i);
    const server = t.server;
    if (server === null) return;
    t.server = null;
    await closeServer(server, t.sockets);
  }

  /** Starts tracker i again on the same port. */
  async startTracker(i: number): Promise<void> {
    const t = this.#listener(this.#trackers, "tracker", i);
    if (t.server !== null || this.#closed) return;
    const server = createTcpServer({ allowHalfOpen: true });
    t.server = server;
    this.#wireTracker(t); // before listening: a client retrying meanwhile must be served
    try {
      await listen(server, t.port);
    } catch (e) {
      t.server = null;
      throw e;
    }
  }

  /** Stops storage node i (its connections are closed, new ones refused). */
  async stopNode(i: number): Promise<void> {
    const n = this.#listener(this.#nodes, "storage node", i);
    const server = n.server;
    if (server === null) return;
    n.server = null;
    await closeServer(server, n.sockets);
  }

  /** Starts storage node i again on the same port, with the replicas it held. */
  async startNode(i: number): Promise<void> {
    const n = this.#listener(this.#nodes, "storage node", i);
    if (n.server !== null || this.#closed) return;
    const server = createHttpServer();
    n.server = server;
    this.#wireNode(n, i); // before listening: a client retrying meanwhile must be served
    try {
      await listen(server, n.port);
    } catch (e) {
      n.server = null;
      throw e;
    }
  }

  /**
   * Damages the replica of key's file on device `devid` (default: the first path get_paths
   * gives with noverify): truncates it to `length` bytes (default: half), or removes it
   * (`length: -1`; GET answers 404). The tracker's row is unchanged, as when a disk goes bad.
   */
  damage(domain: string, key: string, options: { devid?: number; length?: number } = {}): void {
    const row = this.#domain(domain).files.get(key);
    if (row === undefined) throw new RangeError(`Cannot damage ${domain}/${key}: no such key`);
    const devid = options.devid ?? this.#readOrder(row)[0];
    if (devid === undefined || !row.devids.includes(devid)) {
      throw new RangeError(
        `Cannot damage ${domain}/${key} (fid ${row.fid}) on device ${devid}: it has devices ${
          row.devids.join(",")
        }`,
      );
    }
    const dev = this.#device(devid);
    const bytes = dev.files.get(row.fid);
    if (bytes === undefined) {
      throw new RangeError(`Cannot damage ${domain}/${key}: no replica left on device ${devid}`);
    }
    const length = options.length ?? Math.floor(bytes.length / 2);
    if (length === -1) dev.files.delete(row.fid);
    else if (Number.isSafeInteger(length) && length >= 0 && length <= bytes.length) {
      dev.files.set(row.fid, bytes.slice(0, length));
    } else {
      throw new RangeError(
        `Cannot damage ${domain}/${key}: length ${length} is not -1..${bytes.length}`,
      );
    }
  }

  /**
   * Requests served: per tracker command (by name, faulted ones included), `GET`, `PUT`, `HEAD`
   * (and any other method) on the storage nodes, and `connections` accepted by the trackers.
   */
  counts(): Record<string, number> {
    return Object.fromEntries(this.#counts);
  }

  /** Sets every count back to zero. */
  resetCounts(): void {
    this.#counts.clear();
  }

  /** Stops every tracker and node, ends every connection and timer. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const [timer, wake] of this.#sleeps) {
      clearTimeout(timer);
      wake();
    }
    this.#sleeps.clear();
    const all = [...this.#trackers, ...this.#nodes];
    await Promise.all(all.map((l) => {
      const server = l.server;
      l.server = null;
      return server === null ? Promise.resolve() : closeServer(server, l.sockets);
    }));
  }

  // -------------------------------------------------------------------------
  // Tracker: connections and lines

  #wireTracker(t: Listener): void {
    t.server?.on("connection", (socket: Socket) => this.#serveConnection(t, socket));
  }

  #serveConnection(t: Listener, socket: Socket): void {
    t.sockets.add(socket);
    this.#count("connections");
    socket.setNoDelay(true);
    socket.on("error", () => {/* resets are the client's business */});
    socket.on("close", () => t.sockets.delete(socket));
    let pending: Buffer = EMPTY;
    let queue = Promise.resolve();
    let refused = false;
    const tooLong = () => {
      refused = true;
      pending = EMPTY;
      socket.pause();
      queue = queue.then(() => {
        if (socket.destroyed) return;
        this.#write(
          socket,
          this.#errLine("bad_params", `Request line longer than ${MAX_LINE_BYTES} bytes`),
        );
        socket.end();
      });
    };
    socket.on("data", (chunk: Buffer) => {
      if (refused) return;
      pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
      for (let nl = pending.indexOf(0x0a); nl >= 0; nl = pending.indexOf(0x0a)) {
        if (nl > MAX_LINE_BYTES) return tooLong();
        const line = pending.subarray(0, nl);
        pending = pending.subarray(nl + 1);
        queue = queue.then(() => this.#serveLine(socket, line));
      }
      if (pending.length > MAX_LINE_BYTES) tooLong();
    });
    socket.on("end", () => {
      // The client is done sending: answer what it asked, then close our side.
      queue = queue.then(() => {
        if (!socket.destroyed) socket.end();
      });
    });
  }

  async #serveLine(socket: Socket, raw: Buffer): Promise<void> {
    if (socket.destroyed || this.#closed) return;
    if (raw.length === 0 || raw[raw.length - 1] !== 0x0d) {
      this.#write(
        socket,
        this.#errLine("bad_params", "Request line must end with CRLF (\\r\\n), not a bare LF"),
      );
      return;
    }
    const text = raw.subarray(0, raw.length - 1).toString("latin1");
    if (text === "") return; // mogilefsd ignores blank lines
    const m = /^(\w+)(.*)$/s.exec(text);
    if (m === null) {
      this.#write(socket, this.#errLine("unknown_command", "Unknown server command"));
      return;
    }
    const command = (m[1] as string).toLowerCase();
    const rest = m[2] as string;
    this.#count(command);
    const fault = this.#takeFault(command);
    if (fault !== null) {
      switch (fault.kind) {
        case "err":
          this.#write(socket, this.#errLine(fault.code, fault.text ?? fault.code));
          return;
        case "garbage":
          this.#write(socket, GARBAGE_LINE);
          return;
        case "drop":
          if (fault.afterExecute) this.#answer(command, rest);
          socket.destroy();
          return;
        case "delay": {
          const line = this.#answer(command, rest);
          await this.#sleep(fault.ms);
          if (!socket.destroyed && !this.#closed) this.#write(socket, line);
          return;
        }
      }
    }
    this.#write(socket, this.#answer(command, rest));
  }

  #takeFault(command: string): MogileFsFault | null {
    const i = this.#faults.findIndex((f) => f.command === null || f.command === command);
    if (i < 0) return null;
    const f = this.#faults[i] as PendingFault;
    if (--f.left <= 0) this.#faults.splice(i, 1);
    return f.fault;
  }

  #write(socket: Socket, line: string): void {
    if (!socket.destroyed && socket.writable) socket.write(line, "latin1");
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#sleeps.delete(timer);
        resolve();
      }, ms);
      this.#sleeps.set(timer, resolve);
    });
  }

  #errLine(code: string, text: string): string {
    return `ERR ${code} ${eurl(text)}\r\n`;
  }

  /** Runs one command line (after the command name) and formats its answer line. */
  #answer(command: string, rest: string): string {
    try {
      const ok = this.#execute(command, rest);
      const pairs = shuffle(Object.entries(ok), this.#orderRand);
      return `OK ${pairs.map(([k, v]) => `${eurl(k)}=${eurl(String(v))}`).join("&")}\r\n`;
    } catch (e) {
      if (e instanceof TrackerError) return this.#errLine(e.code, e.message);
      return this.#errLine("failure", `Operation failed: ${e instanceof Error ? e.message : e}`);
    }
  }

  #execute(command: string, rest: string): Answer {
    const handler = this.#handler(command);
    if (handler === null) {
      throw new TrackerError("unknown_command", `Unknown server command: ${command}`);
    }
    if (rest !== "" && !rest.startsWith(" ")) {
      throw badParams(
        `Invalid request line: want "${command} <args>", one space after the command`,
      );
    }
    return handler(decodeArgs(rest.slice(1)));
  }

  /** Runs a command for the double's own client methods; throws an Error naming the ERR. */
  #run(command: string, args: Map<string, string>): Answer {
    const handler = this.#handler(command) as (args: Map<string, string>) => Answer;
    try {
      return handler(args);
    } catch (e) {
      if (!(e instanceof TrackerError)) throw e;
      throw new Error(
        `MogileFS double: ${command} of ${args.get("domain")}/${
          args.get("key")
        }: ERR ${e.code} ${e.message}`,
      );
    }
  }

  #handler(command: string): ((args: Map<string, string>) => Answer) | null {
    switch (command) {
      case "noop":
        return () => ({});
      case "list_fids":
        return (a) => this.#listFids(a);
      case "file_info":
        return (a) => this.#fileInfo(a);
      case "get_paths":
        return (a) => this.#getPaths(a);
      case "list_keys":
        return (a) => this.#listKeys(a);
      case "get_domains":
        return () => this.#getDomains();
      case "create_open":
        return (a) => this.#createOpen(a);
      case "create_close":
        return (a) => this.#createClose(a);
      case "delete":
        return (a) => this.#deleteCommand(a);
      default:
        return null;
    }
  }

  // -------------------------------------------------------------------------
  // Tracker commands

  /** mogilefsd's check_domain: `no_domain` when missing or empty, `unreg_domain` when unknown. */
  #checkDomain(args: Map<string, string>): Domain {
    const name = args.get("domain");
    if (name === undefined || name === "") throw new TrackerError("no_domain");
    const d = this.#domains.get(name);
    if (d === undefined) throw new TrackerError("unreg_domain");
    return d;
  }

  #checkKey(args: Map<string, string>): string {
    const key = args.get("key");
    if (key === undefined || key === "") throw new TrackerError("no_key");
    return key;
  }

  #listFids(args: Map<string, string>): Answer {
    const from = intArg(args, "from", 0);
    let count = intArg(args, "to", 0);
    if (count === 0) count = LIST_FIDS_DEFAULT;
    if (count > LIST_FIDS_MAX || count < 0) count = LIST_FIDS_MAX;
    const start = upperBound(this.#sorted, from);
    const fids = shuffle(this.#sorted.slice(start, start + count), this.#orderRand);
    const out: Answer = { fid_count: fids.length };
    fids.forEach((fid, i) => {
      const r = this.#files.get(fid) as FileRow;
      const p = `fid_${i + 1}_`;
      out[`${p}fid`] = fid;
      out[`${p}domain`] = r.domain;
      out[`${p}key`] = r.key;
      out[`${p}class`] = r.class;
      out[`${p}length`] = r.length;
      out[`${p}devcount`] = r.devids.length;
    });
    return out;
  }

  #fileInfo(args: Map<string, string>): Answer {
    const d = this.#checkDomain(args);
    const key = this.#checkKey(args);
    const row = d.files.get(key);
    if (row === undefined) throw new TrackerError("unknown_key");
    const out: Answer = {
      fid: row.fid,
      domain: row.domain,
      class: row.class,
      key: row.key,
      length: row.length,
      devcount: row.devids.length,
    };
    if (d.classes.get(row.class)?.hashtype) out.checksum = row.checksum ?? "MISSING";
    if (flag(args, "devices")) out.devids = row.devids.join(",");
    return out;
  }

  /** A file's devices in the order get_paths offers them: those on running nodes first. */
  #readOrder(row: FileRow): number[] {
    const up = row.devids.filter((d) => this.#nodeUp(this.#device(d).node));
    const down = row.devids.filter((d) => !this.#nodeUp(this.#device(d).node));
    return [...up, ...down];
  }

  #getPaths(args: Map<string, string>): Answer {
    const d = this.#checkDomain(args);
    const key = this.#checkKey(args);
    let pathcount = intArg(args, "pathcount", 0) || 2;
    if (pathcount < 2) pathcount = 2;
    const row = d.files.get(key);
    if (row === undefined) throw new TrackerError("unknown_key");
    const out: Answer = { paths: 0 };
    const noverify = flag(args, "noverify");
    let backup: string | null = null;
    let n = 0;
    for (const devid of row.devids) {
      const dev = this.#device(devid);
      const url = this.#url(devid, row.fid);
      if (!this.#nodeUp(dev.node)) {
        backup = url;
        continue;
      }
      // mogilefsd verifies the size of the first path only, and not with noverify
      if (n === 0 && !noverify && dev.files.get(row.fid)?.length !== row.length) continue;
      out[`path${++n}`] = url;
      if (n === pathcount) break;
    }
    if (n === 0 && backup !== null) {
      out.path1 = backup;
      n = 1;
    }
    out.paths = n;
    return out;
  }

  #listKeys(args: Map<string, string>): Answer {
    const d = this.#checkDomain(args);
    const prefix = args.get("prefix") ?? "";
    const after = args.get("after") ?? "";
    if (prefix !== "" && after !== "" && !after.startsWith(prefix)) {
      throw new TrackerError("after_mismatch");
    }
    let limit = intArg(args, "limit", 0);
    if (limit < 0) throw badParams(`Invalid parameters: limit=${limit} is negative`);
    if (limit === 0 || limit > LIST_KEYS_MAX) limit = LIST_KEYS_MAX;
    const p = Buffer.from(prefix, "utf8");
    const a = Buffer.from(after, "utf8");
    d.byKey ??= [...d.files.values()].sort((x, y) => Buffer.compare(x.keyBytes, y.keyBytes));
    const sorted = d.byKey;
    // start at the first key above `after` and not below `prefix`: keys with the prefix follow
    const from = Buffer.compare(p, a) > 0
      ? firstKey(sorted, (k) => Buffer.compare(k, p) >= 0)
      : firstKey(sorted, (k) => Buffer.compare(k, a) > 0);
    const keys: FileRow[] = [];
    for (let i = from; i < sorted.length && keys.length < limit; i++) {
      const r = sorted[i] as FileRow;
      if (r.keyBytes.length < p.length || !r.keyBytes.subarray(0, p.length).equals(p)) break;
      keys.push(r);
    }
    if (keys.length === 0) throw new TrackerError("none_match");
    const out: Answer = {
      key_count: keys.length,
      next_after: (keys[keys.length - 1] as FileRow).key,
    };
    keys.forEach((r, i) => out[`key_${i + 1}`] = r.key);
    return out;
  }

  #getDomains(): Answer {
    const out: Answer = {};
    let dn = 0;
    for (const d of this.#domains.values()) {
      dn++;
      out[`domain${dn}`] = d.name;
      let cn = 0;
      for (const c of d.classes.values()) {
        cn++;
        const p = `domain${dn}class${cn}`;
        out[`${p}name`] = c.name;
        out[`${p}mindevcount`] = c.mindevcount;
        out[`${p}replpolicy`] = `MultipleHosts(${c.mindevcount})`;
        out[`${p}hashtype`] = c.hashtype ?? "NONE";
      }
      out[`domain${dn}classes`] = cn;
    }
    out.domains = dn;
    return out;
  }

  #createOpen(args: Map<string, string>): Answer {
    const d = this.#checkDomain(args);
    const key = args.get("key") ?? "";
    const multi = flag(args, "multi_dest");
    const wanted = intArg(args, "fid", 0);
    const className = args.get("class") ?? "";
    const cls = className === "" ? DEFAULT_CLASS : className;
    if (!d.classes.has(cls)) throw new TrackerError("unreg_class");
    // devices on running nodes, in random order, one per node (MultipleHosts)
    const dests: Device[] = [];
    for (const dev of shuffle(this.#devices.filter((x) => this.#nodeUp(x.node)), this.#orderRand)) {
      if (dests.length >= (multi ? MULTI_DEST_MAX : 1)) break;
      if (dests.some((x) => x.node === dev.node)) continue;
      dests.push(dev);
    }
    if (dests.length === 0) throw new TrackerError("no_devices");
    let fid: number;
    if (wanted > 0) {
      if (this.#open.has(wanted) || this.#files.has(wanted)) throw new TrackerError("fid_in_use");
      fid = wanted;
      if (fid >= this.#nextFid) this.#nextFid = fid + 1;
    } else {
      if (this.#fidGaps && this.#gapRand() < 0.25) {
        this.#nextFid += 1 + Math.floor(this.#gapRand() * 3);
      }
      fid = this.#nextFid++;
    }
    this.#open.set(fid, {
      fid,
      domain: d.name,
      key,
      class: cls,
      devids: dests.map((x) => x.devid),
    });
    const out: Answer = { fid };
    if (multi) {
      dests.forEach((dev, i) => {
        out[`devid_${i + 1}`] = dev.devid;
        out[`path_${i + 1}`] = this.#url(dev.devid, fid);
      });
      out.dev_count = dests.length;
    } else {
      const dev = dests[0] as Device;
      out.devid = dev.devid;
      out.path = this.#url(dev.devid, fid);
    }
    return out;
  }

  #createClose(args: Map<string, string>): Answer {
    const d = this.#checkDomain(args);
    const key = args.get("key") ?? "";
    const fid = intArg(args, "fid", 0);
    if (fid === 0) throw new TrackerError("no_fid");
    const devid = intArg(args, "devid", 0);
    if (devid === 0) throw new TrackerError("no_devid");
    const path = args.get("path") ?? "";
    if (path === "") throw new TrackerError("no_path");
    let checksum: string | null = null;
    const given = args.get("checksum") ?? "";
    if (given !== "") {
      const m = /^(\w+):([a-fA-F0-9]{32,128})$/.exec(given);
      if (m === null || m[1] !== "MD5" || (m[2] as string).length !== 32) {
        throw new TrackerError("invalid_checksum_format", `invalid_checksum_format: ${given}`);
      }
      checksum = `MD5:${(m[2] as string).toLowerCase()}`;
    }
    const dev = this.#devices[devid - 1];
    if (dev === undefined) {
      throw new TrackerError("bogus_args", `No device ${devid}: path ${path} cannot be closed`);
    }
    const expected = this.#url(devid, fid);
    if (path !== expected) {
      throw new TrackerError(
        "bogus_args",
        `Path does not match fid ${fid} on device ${devid}: got ${path}, want ${expected}`,
      );
    }
    const temp = this.#open.get(fid);
    if (temp === undefined) throw new TrackerError("no_temp_file");
    this.#open.delete(fid);
    const failed = () => {
      for (const x of temp.devids) this.#device(x).files.delete(fid);
    };
    if (!temp.devids.includes(devid)) {
      failed();
      throw new TrackerError(
        "invalid_destdev",
        `File uploaded to invalid dest ${devid}. Valid devices were: ${temp.devids.join(",")}`,
      );
    }
    if (temp.domain !== d.name) {
      failed();
      throw badParams(
        `Invalid parameters: fid ${fid} was opened in domain ${temp.domain}, closed in ${d.name}`,
      );
    }
    if (key === "") {
      failed(); // mogilefsd: closing without a key deletes the temp file
      return {};
    }
    const wantSize = intArg(args, "size", 0);
    const want = wantSize === 0 ? -1 : wantSize;
    const bytes = dev.files.get(fid);
    if (!this.#nodeUp(dev.node) || bytes === undefined) {
      failed();
      const type = bytes === undefined ? "missing" : "cantreach";
      throw new TrackerError(
        "size_verify_error",
        `Expected: ${want}; actual: 0 (${type}); path: ${path}; error: ${
          type === "missing" ? "404 Not Found" : "connection refused"
        }`,
      );
    }
    if (want > -1 && want !== bytes.length) {
      failed();
      throw new TrackerError(
        "size_mismatch",
        `Expected: ${want}; actual: ${bytes.length}; path: ${path}`,
      );
    }
    if (checksum !== null && flag(args, "checksumverify")) {
      const actual = `MD5:${md5Hex(bytes)}`;
      if (actual !== checksum) {
        failed();
        throw new TrackerError(
          "checksum_mismatch",
          `Expected: ${checksum}; actual: ${actual}; path: ${path}`,
        );
      }
    }
    const old = d.files.get(key);
    if (old !== undefined) {
      if (old.fid === fid) throw new TrackerError("fid_exists");
      this.#removeRow(old);
    }
    // temp copies on the other destinations are not the file: mogilefsd never learns of them
    for (const x of temp.devids) if (x !== devid) this.#device(x).files.delete(fid);
    const cls = d.classes.get(temp.class) as ClassDef;
    const row: FileRow = {
      fid,
      domain: d.name,
      key,
      keyBytes: Buffer.from(key, "utf8"),
      class: cls.name,
      length: bytes.length,
      devids: [devid],
      checksum: cls.hashtype === null ? null : (checksum ?? `MD5:${md5Hex(bytes)}`),
    };
    this.#replicate(row, bytes, cls.mindevcount);
    d.files.set(key, row);
    d.byKey = null;
    this.#files.set(fid, row);
    this.#sorted.splice(upperBound(this.#sorted, fid), 0, fid);
    return {};
  }

  #deleteCommand(args: Map<string, string>): Answer {
    const d = this.#checkDomain(args);
    const key = this.#checkKey(args);
    const row = d.files.get(key);
    if (row === undefined) throw new TrackerError("unknown_key");
    this.#removeRow(row);
    return {};
  }

  /** Copies a closed file to further devices, other nodes first, until `mindevcount`. */
  #replicate(row: FileRow, bytes: Uint8Array, mindevcount: number): void {
    const live = this.#devices.filter((x) => this.#nodeUp(x.node));
    while (row.devids.length < mindevcount) {
      const free = live.filter((x) => !row.devids.includes(x.devid));
      const used = new Set(row.devids.map((x) => this.#device(x).node));
      const next = free.find((x) => !used.has(x.node)) ?? free[0];
      if (next === undefined) return; // fewer live devices than mindevcount
      next.files.set(row.fid, bytes);
      row.devids.push(next.devid);
    }
  }

  #removeRow(row: FileRow): void {
    this.#files.delete(row.fid);
    const d = this.#domains.get(row.domain);
    if (d !== undefined) {
      d.files.delete(row.key);
      d.byKey = null;
    }
    const i = upperBound(this.#sorted, row.fid) - 1;
    if (this.#sorted[i] === row.fid) this.#sorted.splice(i, 1);
    for (const d of row.devids) this.#device(d).files.delete(row.fid);
  }

  // -------------------------------------------------------------------------
  // Storage nodes

  #wireNode(n: Listener, i: number): void {
    const server = n.server as HttpServer;
    server.on("connection", (socket: Socket) => {
      n.sockets.add(socket);
      socket.on("close", () => n.sockets.delete(socket));
    });
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      try {
        this.#serveStorage(i, req, res);
      } catch (e) {
        if (!res.headersSent) {
          send(res, 500, `Internal error: ${e instanceof Error ? e.message : e}`);
        } else res.destroy();
      }
    });
  }

  #serveStorage(node: number, req: IncomingMessage, res: ServerResponse): void {
    const method = req.method ?? "GET";
    this.#count(method);
    const pathname = new URL(req.url ?? "/", "http://node").pathname;
    const m = PATH.exec(pathname);
    let devid = 0;
    let fid = 0;
    if (m !== null) {
      const n = m[5] as string;
      if (m[2] === n.slice(0, 1) && m[3] === n.slice(1, 4) && m[4] === n.slice(4, 7)) {
        devid = Number(m[1]);
        fid = Number(n);
      }
    }
    const dev = devid > 0 ? this.#devices[devid - 1] : undefined;
    if (method !== "GET" && method !== "HEAD" && method !== "PUT") {
      req.resume();
      res.setHeader("Allow", "GET, HEAD, PUT");
      return send(res, 405, `Method ${method} not allowed`);
    }
    if (dev === undefined || dev.node !== node || fid === 0) {
      req.resume();
      return send(res, 404, `Not found: ${pathname} (this node holds ${this.#devicesOf(node)})`);
    }
    if (method === "PUT") return this.#put(req, res, dev, fid, pathname);
    const bytes = dev.files.get(fid);
    if (bytes === undefined) return send(res, 404, `Not found: ${pathname}`);
    res.setHeader("Accept-Ranges", "bytes");
    res.setHeader("Content-Type", "application/octet-stream");
    if (method === "HEAD") {
      res.writeHead(200, { "Content-Length": String(bytes.length) });
      res.end();
      return;
    }
    const range = parseRange(req.headers.range, bytes.length);
    if (range === "unsatisfiable") {
      res.setHeader("Content-Range", `bytes */${bytes.length}`);
      return send(res, 416, `Range not satisfiable: ${req.headers.range} of ${bytes.length} bytes`);
    }
    if (range === null) {
      res.writeHead(200, { "Content-Length": String(bytes.length) });
      res.end(bytes);
      return;
    }
    const [a, b] = range;
    res.writeHead(206, {
      "Content-Length": String(b - a + 1),
      "Content-Range": `bytes ${a}-${b}/${bytes.length}`,
    });
    res.end(bytes.subarray(a, b + 1));
  }

  #put(req: IncomingMessage, res: ServerResponse, dev: Device, fid: number, path: string): void {
    const temp = this.#open.get(fid);
    if (temp === undefined || !temp.devids.includes(dev.devid)) {
      req.resume();
      const why = temp === undefined
        ? `fid ${fid} is not open (never handed out by create_open, or already closed)`
        : `create_open gave fid ${fid} devices ${temp.devids.join(",")}, not ${dev.devid}`;
      return send(res, 403, `Forbidden: PUT ${path}: ${why}`);
    }
    const chunks: Buffer[] = [];
    let done = false;
    // mogstored writes as bytes arrive: a cut upload leaves a short file behind
    const store = () => {
      if (done) return;
      done = true;
      if (this.#open.get(fid) === temp) dev.files.set(fid, Buffer.concat(chunks));
    };
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => {
      store();
      send(res, 201, "Created");
    });
    req.on("close", store);
    req.on("error", store);
  }

  // -------------------------------------------------------------------------
  // Helpers

  #count(name: string): void {
    this.#counts.set(name, (this.#counts.get(name) ?? 0) + 1);
  }

  #domain(name: string): Domain {
    const d = this.#domains.get(name);
    if (d === undefined) {
      throw new RangeError(
        `MogileFS double has no domain "${name}" (it has ${[...this.#domains.keys()].join(", ")})`,
      );
    }
    return d;
  }

  #device(devid: number): Device {
    const d = this.#devices[devid - 1];
    if (d === undefined) throw new RangeError(`MogileFS double has no device ${devid}`);
    return d;
  }

  #devicesOf(node: number): string {
    return this.#devices.filter((d) => d.node === node).map((d) => `dev${d.devid}`).join(", ");
  }

  #nodeUp(node: number): boolean {
    return this.#nodes[node]?.server != null;
  }

  #url(devid: number, fid: number): string {
    const dev = this.#device(devid);
    return `${this.nodes[dev.node]}${fidPath(devid, fid)}`;
  }

  #listener(list: Listener[], what: string, i: number): Listener {
    const l = list[i];
    if (l === undefined) {
      throw new RangeError(`MogileFS double has no ${what} ${i} (it has 0..${list.length - 1})`);
    }
    return l;
  }
}

function send(res: ServerResponse, status: number, text: string): void {
  const body = Buffer.from(`${text}\n`, "utf8");
  res.writeHead(status, { "Content-Type": "text/plain", "Content-Length": String(body.length) });
  res.end(body);
}

/** A single `bytes=a-b`, `a-` or `-n` range; null to serve the whole body. */
function parseRange(
  header: string | undefined,
  size: number,
): [number, number] | null | "unsatisfiable" {
  if (header === undefined) return null;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (m === null || (m[1] === "" && m[2] === "")) return null; // several ranges or junk: ignored
  if (m[1] === "") {
    const n = Number(m[2]);
    if (n === 0 || size === 0) return "unsatisfiable";
    return [Math.max(0, size - n), size - 1];
  }
  const a = Number(m[1]);
  const b = m[2] === "" ? size - 1 : Math.min(Number(m[2]), size - 1);
  if (a >= size) return "unsatisfiable";
  if (b < a) return null;
  return [a, b];
}
