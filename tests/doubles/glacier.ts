/**
 * A strict test double of the Amazon Glacier vault API (2012-06-01, REST +
 * JSON), as `@aws-sdk/client-glacier` calls it through `endpoint`. It
 * follows PROTOCOLS.md section 2 and rejects what Glacier rejects: bad part
 * sizes and ranges, tree hashes or payload hashes that do not match the
 * body, descriptions that are too long or not printable ASCII, misaligned
 * retrieval ranges, unsigned or wrongly signed requests (full SigV4 check
 * against {@linkcode TEST_CREDENTIALS}), a missing `x-amz-glacier-version`.
 *
 * Time is the double's own clock (`setNow`, `advance`): jobs complete after
 * `jobDelayMs` on it (or at once through {@linkcode GlacierDouble.completeJob}),
 * and completed jobs disappear 24 hours after completion, as Glacier's do.
 * Idle multipart uploads vanish after 24 hours.
 *
 * Notifications: a job with an `SNSTopic` publishes its DescribeJob JSON to
 * that topic when it completes (succeeded or failed), in completion order
 * ({@linkcode GlacierDouble.notifications}). {@linkcode GlacierDouble.subscribe}
 * plays an SNS -> SQS subscription: from then on each notification of the
 * topic reaches an SQS double's queue at the moment the double notices the
 * completion, which is on `advance`/`setNow`, on any request and on any
 * control call, so a test that moves the clock finds the message without a
 * Glacier request. The body is SNS's envelope, or the job JSON itself with
 * raw message delivery. A vault's notification configuration is not
 * modelled. SQS's at-least-once duplicates are the SQS double's `duplicate`
 * fault.
 *
 * Faults: {@linkcode GlacierDouble.inject} makes the next N requests (of one
 * operation, or any) answer 5xx, throttling, 408, 503, a custom error, be
 * slow, have their connection reset, carry a truncated body or a wrong tree
 * hash; {@linkcode GlacierDouble.randomFaults} gives a seeded fault rate for
 * load tests. Counters of requests and of the most requests in flight at once,
 * per operation, let tests prove what the client did.
 *
 * It holds everything in memory (one archive's bytes at a time per request),
 * binds 127.0.0.1 on a free port, and {@linkcode GlacierDouble.close} ends
 * every connection and timer.
 *
 * @example
 * ```ts
 * const glacier = await GlacierDouble.start({ jobDelayMs: 4 * 3_600_000 });
 * glacier.createVault("v");
 * // new GlacierClient({ endpoint: glacier.endpoint, region: "us-east-1", credentials: TEST_CREDENTIALS })
 * glacier.inject({ kind: "throttle", operation: "UploadMultipartPart", count: 2 });
 * glacier.subscribe("arn:aws:sns:us-east-1:123456789012:jobs", sqs.createQueue("jobs"));
 * glacier.advance(4 * 3_600_000); // jobs are done; their notifications are in the queue
 * await glacier.close();
 * ```
 * @module
 */

import { listenLoopback } from "./_http.ts";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { Buffer } from "node:buffer";
import { createHash, createHmac, randomBytes } from "node:crypto";
import { hex } from "../../core/ids.ts";
import { combineTreeHashes, isTreeHashAligned, MIB, TreeHasher } from "../../core/tree_hash.ts";
import { prng } from "../../scripts/corpus.ts";
import { DOUBLE_ACCOUNT_ID, publishToQueue, type SqsQueue, TEST_CREDENTIALS } from "./sqs.ts";

export { DOUBLE_ACCOUNT_ID, TEST_CREDENTIALS };

const GIB = 1024 * MIB;
/** An SNS topic ARN, as InitiateJob's `SNSTopic` must be. */
const SNS_TOPIC_ARN = /^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$/;
const HOUR = 3_600_000;
/** Completed jobs stay downloadable this long, then disappear. */
export const JOB_TTL_MS = 24 * HOUR;
/** A multipart upload without activity for this long disappears. */
const UPLOAD_IDLE_MS = 24 * HOUR;
const MAX_SINGLE_UPLOAD = 4 * GIB;
const MAX_PARTS = 10_000;
const MAX_JSON_BODY = 1 * MIB;
const WRITE_CHUNK = 256 * 1024;
const ID_CHARS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** The Glacier operations the double answers, by the SDK's command names. */
export type GlacierOperation =
  | "ListVaults"
  | "CreateVault"
  | "DescribeVault"
  | "DeleteVault"
  | "UploadArchive"
  | "DeleteArchive"
  | "InitiateMultipartUpload"
  | "ListMultipartUploads"
  | "UploadMultipartPart"
  | "ListParts"
  | "CompleteMultipartUpload"
  | "AbortMultipartUpload"
  | "InitiateJob"
  | "ListJobs"
  | "DescribeJob"
  | "GetJobOutput";

/**
 * What a fault does to a request.
 *
 * - `server-error`: 500 ServiceUnavailableException
 * - `throttle`: 400 ThrottlingException
 * - `timeout`: 408 RequestTimeoutException
 * - `capacity`: 503 InsufficientCapacityException
 * - `error`: a custom error (`code`, `status`, `message`), e.g. PolicyEnforcedException
 * - `slow`: waits `delayMs` of real time, then answers normally
 * - `reset`: destroys the connection once the request has arrived, answering nothing
 *   (the client sees ECONNRESET / socket hang up); nothing is stored
 * - `truncate`: answers normally, but the connection is cut once half the answer's
 *   body is flushed (GetJobOutput and the JSON answers; body-less answers are whole)
 * - `wrong-tree-hash`: answers normally with a wrong tree hash (UploadArchive,
 *   UploadMultipartPart, CompleteMultipartUpload, DescribeJob, GetJobOutput)
 */
export type FaultKind =
  | "server-error"
  | "throttle"
  | "timeout"
  | "capacity"
  | "error"
  | "slow"
  | "reset"
  | "truncate"
  | "wrong-tree-hash";

/** A fault to serve to the next matching requests. */
export interface Fault {
  readonly kind: FaultKind;
  /** Only requests of this operation; default any. */
  readonly operation?: GlacierOperation;
  /** How many requests get it; default 1. */
  readonly count?: number;
  /** For `slow`: real milliseconds to wait; default 1000. */
  readonly delayMs?: number;
  /** For `error`: the error code, e.g. `PolicyEnforcedException`. */
  readonly code?: string;
  /** For `error`: the HTTP status; default 400. */
  readonly status?: number;
  /** For `error`: the message; default names the code. */
  readonly message?: string;
}

/** A seeded random fault rate. */
export interface RandomFaults {
  /** Probability in [0, 1] that a request gets a fault. */
  readonly rate: number;
  /** Seed of the generator, so that a run can be repeated. */
  readonly seed: number;
  /** Kinds to choose from, uniformly; default server-error, throttle, timeout, reset. */
  readonly kinds?: readonly FaultKind[];
  /** Only these operations; default all. */
  readonly operations?: readonly GlacierOperation[];
}

/** Options for {@linkcode GlacierDouble.start}. */
export interface GlacierDoubleOptions {
  /** The region requests must be signed for; default `us-east-1`. */
  readonly region?: string;
  /** How long a job stays InProgress on the double's clock, ms; default 0 (done at once). */
  readonly jobDelayMs?: number;
  /** The clock's start, ms since the epoch; default `Date.now()`. */
  readonly startMs?: number;
  /** Vaults that exist from the start. */
  readonly vaults?: readonly string[];
}

/** An archive as the double holds it. */
export interface DoubleArchive {
  readonly archiveId: string;
  readonly size: number;
  readonly treeHash: string;
  readonly description: string;
  readonly createdAt: number;
}

/** A multipart upload in progress. */
export interface DoubleUpload {
  readonly uploadId: string;
  readonly partSize: number;
  readonly description: string;
  /** Byte ranges received, `a-b`, by start. */
  readonly ranges: readonly string[];
  readonly createdAt: number;
}

/** A job as DescribeJob would show it now (fields as Glacier names them). */
export interface DoubleJob {
  readonly JobId: string;
  readonly Action: "ArchiveRetrieval" | "InventoryRetrieval";
  readonly StatusCode: "InProgress" | "Succeeded" | "Failed";
  readonly Completed: boolean;
  readonly ArchiveId: string | null;
  readonly JobDescription: string | null;
  readonly SNSTopic: string | null;
  readonly Tier: string | null;
  readonly RetrievalByteRange: string | null;
  readonly SHA256TreeHash: string | null;
  readonly CreationDate: string;
  readonly CompletionDate: string | null;
}

/** Options for {@linkcode GlacierDouble.subscribe}. */
export interface SubscribeOptions {
  /** Raw message delivery: the SQS body is the job JSON itself; default false (SNS's envelope). */
  readonly raw?: boolean;
}

/** What would have been published to SNS when a job with `SNSTopic` completed. */
export interface Notification {
  readonly topic: string;
  /** The DescribeJob JSON, as SNS's `Message` carries it. */
  readonly message: string;
  readonly jobId: string;
}

interface Archive extends DoubleArchive {
  readonly data: Uint8Array;
}

interface Part {
  readonly start: number;
  readonly data: Uint8Array;
  readonly treeHash: Uint8Array;
}

interface Upload {
  readonly uploadId: string;
  readonly partSize: number;
  readonly description: string;
  readonly createdAt: number;
  lastActivity: number;
  readonly parts: Map<number, Part>;
}

interface Job {
  readonly id: string;
  readonly vault: string;
  readonly action: "ArchiveRetrieval" | "InventoryRetrieval";
  readonly archiveId: string | null;
  /** Retrieved bytes (the archive's, whole), or the inventory document. */
  readonly data: Uint8Array;
  readonly archiveSize: number | null;
  readonly archiveTreeHash: string | null;
  /** The retrieved range of the archive; whole archive for inventory (unused). */
  readonly range: { start: number; end: number } | null;
  readonly treeHash: string | null;
  readonly description: string | null;
  readonly snsTopic: string | null;
  readonly tier: string | null;
  readonly format: string | null;
  readonly createdAt: number;
  readonly dueAt: number;
  completedAt: number | null;
  failure: string | null;
  published: boolean;
}

interface Vault {
  readonly name: string;
  readonly createdAt: number;
  readonly archives: Map<string, Archive>;
  readonly uploads: Map<string, Upload>;
  readonly jobs: Map<string, Job>;
}

/** An error answered as Glacier answers: JSON `{code, message, type}` and headers. */
class GlacierError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

function invalid(message: string): GlacierError {
  return new GlacierError(400, "InvalidParameterValueException", message);
}

function missing(message: string): GlacierError {
  return new GlacierError(400, "MissingParameterValueException", message);
}

function notFound(message: string): GlacierError {
  return new GlacierError(404, "ResourceNotFoundException", message);
}

const FAULT_ERRORS: Partial<Record<FaultKind, [number, string, string]>> = {
  "server-error": [500, "ServiceUnavailableException", "Service is temporarily unavailable"],
  throttle: [400, "ThrottlingException", "Rate exceeded"],
  timeout: [408, "RequestTimeoutException", "Request timed out"],
  capacity: [503, "InsufficientCapacityException", "Insufficient capacity for Expedited"],
};

/** What one request was, once routed. */
interface Route {
  readonly op: GlacierOperation;
  readonly vault: string | null;
  /** Archive, upload or job id. */
  readonly id: string | null;
}

/** The body read from a request, with its hashes. */
interface ReadBody {
  readonly data: Uint8Array;
  readonly sha256: string;
  readonly treeHash: Uint8Array;
}

/**
 * A Glacier vault service on 127.0.0.1, with an in-process control API.
 * Start it with {@linkcode GlacierDouble.start}; always {@linkcode close} it.
 */
export class GlacierDouble {
  /** `http://127.0.0.1:PORT`, for the SDK's `endpoint`. */
  readonly endpoint: string;
  /** The region requests must be signed for. */
  readonly region: string;
  readonly #server: Server;
  #sockets = new Set<Socket>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  readonly #vaults = new Map<string, Vault>();
  readonly #faults: Fault[] = [];
  readonly #requests = new Map<GlacierOperation, number>();
  readonly #inFlight = new Map<GlacierOperation, number>();
  readonly #maxInFlight = new Map<GlacierOperation, number>();
  readonly #served: { operation: GlacierOperation; kind: FaultKind }[] = [];
  readonly #notifications: Notification[] = [];
  /** SNS -> SQS subscriptions, by topic ARN. */
  readonly #subscriptions = new Map<string, { queue: SqsQueue; raw: boolean }[]>();
  readonly #barriers = new Map<GlacierOperation, { n: number; waiting: (() => void)[] }>();
  #random:
    | { rate: number; next: () => number; kinds: FaultKind[]; ops: GlacierOperation[] | null }
    | null = null;
  #now: number;
  #jobDelayMs: number;
  #closed = false;

  private constructor(server: Server, port: number, options: GlacierDoubleOptions) {
    this.#server = server;
    this.endpoint = `http://127.0.0.1:${port}`;
    this.region = options.region ?? "us-east-1";
    this.#now = options.startMs ?? Date.now();
    this.#jobDelayMs = options.jobDelayMs ?? 0;
    for (const v of options.vaults ?? []) this.createVault(v);
  }

  /** Starts the double on a free port of 127.0.0.1. */
  static async start(options: GlacierDoubleOptions = {}): Promise<GlacierDouble> {
    const delay = options.jobDelayMs ?? 0;
    if (!Number.isSafeInteger(delay) || delay < 0) {
      throw new RangeError(`Invalid job delay: ${delay} ms is not a whole number >= 0`);
    }
    const { server, port, sockets } = await listenLoopback("Glacier");
    const double = new GlacierDouble(server, port, options);
    double.#sockets = sockets;
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      double.#handle(req, res).catch((e) => {
        if (!res.headersSent) {
          double.#sendError(res, new GlacierError(500, "InternalFailure", String(e)));
        } else {
          res.destroy();
        }
      });
    });
    return double;
  }

  // -------------------------------------------------------------------------
  // Control API

  /** The double's clock, ms since the epoch. */
  now(): number {
    return this.#now;
  }

  /** Sets the clock. Jobs due by then complete; jobs done 24 h before disappear. */
  setNow(ms: number): void {
    this.#now = ms;
    this.#sweep();
  }

  /** Moves the clock forward by `ms`. */
  advance(ms: number): void {
    this.setNow(this.#now + ms);
  }

  /** How long new jobs stay InProgress, ms. */
  setJobDelay(ms: number): void {
    this.#jobDelayMs = ms;
  }

  /** Creates a vault (no-op when it exists). */
  createVault(name: string): void {
    if (!this.#vaults.has(name)) {
      this.#vaults.set(name, {
        name,
        createdAt: this.#now,
        archives: new Map(),
        uploads: new Map(),
        jobs: new Map(),
      });
    }
  }

  /** Names of the vaults, sorted. */
  vaults(): string[] {
    return [...this.#vaults.keys()].sort();
  }

  /** The archives a vault holds, in creation order. */
  archives(vault: string): DoubleArchive[] {
    return [...this.#vault(vault).archives.values()].map((a) => ({
      archiveId: a.archiveId,
      size: a.size,
      treeHash: a.treeHash,
      description: a.description,
      createdAt: a.createdAt,
    }));
  }

  /** The bytes of one archive. */
  archiveBytes(vault: string, archiveId: string): Uint8Array {
    const a = this.#vault(vault).archives.get(archiveId);
    if (!a) throw new RangeError(`No archive ${archiveId} in vault ${vault}`);
    return a.data;
  }

  /** Multipart uploads in progress in a vault. */
  uploads(vault: string): DoubleUpload[] {
    this.#sweep();
    return [...this.#vault(vault).uploads.values()].map((u) => ({
      uploadId: u.uploadId,
      partSize: u.partSize,
      description: u.description,
      ranges: [...u.parts.values()].sort((a, b) => a.start - b.start).map((p) =>
        `${p.start}-${p.start + p.data.length - 1}`
      ),
      createdAt: u.createdAt,
    }));
  }

  /** The jobs of a vault that still exist, as DescribeJob would show them. */
  jobs(vault: string): DoubleJob[] {
    this.#sweep();
    return [...this.#vault(vault).jobs.values()].map((j) => {
      const d = this.#describe(j);
      return {
        JobId: j.id,
        Action: j.action,
        StatusCode: d.StatusCode as DoubleJob["StatusCode"],
        Completed: d.Completed as boolean,
        ArchiveId: j.archiveId,
        JobDescription: j.description,
        SNSTopic: j.snsTopic,
        Tier: j.tier,
        RetrievalByteRange: d.RetrievalByteRange as string | null,
        SHA256TreeHash: j.treeHash,
        CreationDate: iso(j.createdAt),
        CompletionDate: d.CompletionDate as string | null,
      };
    });
  }

  /** Completes a job now (at the double's clock), whatever its delay. */
  completeJob(jobId: string): void {
    const job = this.#job(jobId);
    if (job.completedAt === null && job.failure === null && this.#now < job.dueAt) {
      job.completedAt = this.#now;
    }
    this.#sweep();
  }

  /** Fails a job now with `message` (its StatusMessage). */
  failJob(jobId: string, message: string): void {
    const job = this.#job(jobId);
    job.failure = message;
    job.completedAt = this.#now;
    this.#sweep();
  }

  /** What SNS would have published so far, in order. */
  notifications(): Notification[] {
    this.#sweep();
    return [...this.#notifications];
  }

  /**
   * Subscribes an SQS double's `queue` to `topicArn`, as an SNS -> SQS
   * subscription: every notification published to the topic from now on
   * (not those before) is delivered to the queue when the double notices the
   * job's completion (on `advance`/`setNow`, a request or a control call),
   * as the SNS envelope (`Timestamp` from the SQS double's clock) or, with
   * `raw`, the job JSON itself. A topic may have several subscriptions;
   * subscribing the same queue again with the same options changes nothing,
   * with other options is a `RangeError` (SNS refuses it too). A delivery the
   * queue refuses (deleted since, body above its MaximumMessageSize) is
   * dropped, as SNS drops it.
   *
   * @example
   * ```ts
   * const topic = "arn:aws:sns:us-east-1:123456789012:jobs";
   * glacier.subscribe(topic, sqs.createQueue("restores"));
   * glacier.subscribe(topic, sqs.createQueue("raw-copy"), { raw: true });
   * ```
   */
  subscribe(topicArn: string, queue: SqsQueue, options: SubscribeOptions = {}): void {
    if (!topicArn.startsWith("arn:aws:sns:") || !SNS_TOPIC_ARN.test(topicArn)) {
      throw new RangeError(
        `Cannot subscribe to "${topicArn}": expected arn:aws:sns:<region>:<account>:<name>`,
      );
    }
    this.#sweep();
    const raw = options.raw ?? false;
    const subscriptions = this.#subscriptions.get(topicArn) ?? [];
    const same = subscriptions.find((s) => s.queue.arn === queue.arn);
    if (same !== undefined) {
      if (same.raw === raw) return;
      throw new RangeError(
        `Cannot subscribe ${queue.arn} to ${topicArn}: already subscribed with raw=${same.raw}`,
      );
    }
    subscriptions.push({ queue, raw });
    this.#subscriptions.set(topicArn, subscriptions);
  }

  /** Serves `fault` to the next matching requests (after faults injected before it). */
  inject(fault: Fault): void {
    const count = fault.count ?? 1;
    if (!Number.isSafeInteger(count) || count < 1) {
      throw new RangeError(`Invalid fault count: ${count}`);
    }
    if (fault.kind === "error" && fault.code === undefined) {
      throw new TypeError("An error fault needs a code");
    }
    this.#faults.push({ ...fault, count });
  }

  /** Faults still waiting to be served (injected ones, not random ones). */
  faultsLeft(): number {
    return this.#faults.reduce((n, f) => n + (f.count ?? 1), 0);
  }

  /** Faults served so far, injected and random, in order. */
  faultsServed(): { operation: GlacierOperation; kind: FaultKind }[] {
    return [...this.#served];
  }

  /** Serves random faults at a seeded rate; `null` stops them. */
  randomFaults(spec: RandomFaults | null): void {
    if (spec === null) {
      this.#random = null;
      return;
    }
    if (!(spec.rate >= 0 && spec.rate <= 1)) throw new RangeError(`Invalid rate: ${spec.rate}`);
    this.#random = {
      rate: spec.rate,
      next: prng(spec.seed),
      kinds: [...(spec.kinds ?? ["server-error", "throttle", "timeout", "reset"])],
      ops: spec.operations ? [...spec.operations] : null,
    };
  }

  /**
   * Holds requests of `operation` until `n` of them are in flight at once,
   * then lets them all go (once). Proves parallelism without timing; after
   * `timeoutMs` of real time they go anyway, so a serial client only slows.
   */
  barrier(operation: GlacierOperation, n: number, timeoutMs = 5000): void {
    const barrier = { n, waiting: [] as (() => void)[] };
    this.#barriers.set(operation, barrier);
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (this.#barriers.get(operation) === barrier) this.#releaseBarrier(operation);
    }, timeoutMs);
    this.#timers.add(timer);
  }

  /** Requests received per operation (faulted ones included). */
  requestCounts(): Partial<Record<GlacierOperation, number>> {
    return Object.fromEntries(this.#requests);
  }

  /** Requests received for one operation. */
  requestCount(operation: GlacierOperation): number {
    return this.#requests.get(operation) ?? 0;
  }

  /** The most requests of `operation` that were in flight at once. */
  maxInFlight(operation: GlacierOperation): number {
    return this.#maxInFlight.get(operation) ?? 0;
  }

  /** Forgets the request counters (not the data). */
  resetCounters(): void {
    this.#requests.clear();
    this.#maxInFlight.clear();
    this.#served.length = 0;
  }

  /** Stops the server, ends every connection and timer. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    for (const op of [...this.#barriers.keys()]) this.#releaseBarrier(op);
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }

  // -------------------------------------------------------------------------
  // Request handling

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomId(32);
    res.setHeader("x-amzn-RequestId", requestId);
    const url = new URL(req.url ?? "/", "http://double");
    let route: Route;
    try {
      route = this.#route(req.method ?? "GET", url.pathname);
    } catch (e) {
      await drain(req);
      return this.#sendError(res, e);
    }
    const { op } = route;
    this.#requests.set(op, (this.#requests.get(op) ?? 0) + 1);
    const inFlight = (this.#inFlight.get(op) ?? 0) + 1;
    this.#inFlight.set(op, inFlight);
    this.#maxInFlight.set(op, Math.max(this.#maxInFlight.get(op) ?? 0, inFlight));
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      this.#inFlight.set(op, (this.#inFlight.get(op) ?? 1) - 1);
    };
    res.on("close", finish);
    try {
      await this.#atBarrier(op);
      const fault = this.#takeFault(op);
      if (fault?.kind === "slow") await this.#sleep(fault.delayMs ?? 1000);
      if (this.#closed) return;
      this.#checkHeaders(req);
      const body = await readBody(
        req,
        op === "UploadArchive" || op === "UploadMultipartPart" ? MAX_SINGLE_UPLOAD : MAX_JSON_BODY,
      );
      if (fault?.kind === "reset") {
        req.socket.destroy();
        return;
      }
      this.#checkSignature(req, url, body);
      const error = fault ? faultError(fault) : null;
      if (error) throw error;
      this.#sweep();
      await this.#dispatch(route, req, url, body, res, fault?.kind ?? null);
    } catch (e) {
      if (!res.headersSent && !res.destroyed) this.#sendError(res, e);
      else res.destroy();
    } finally {
      if (res.writableEnded || res.destroyed) finish();
    }
  }

  #route(method: string, pathname: string): Route {
    const segs = pathname.split("/").slice(1).map((s) => {
      try {
        return decodeURIComponent(s);
      } catch {
        throw invalid(`Invalid path: ${pathname}`);
      }
    });
    const [account, vaults, vault, kind, id, output] = segs;
    if (account !== "-" && account !== DOUBLE_ACCOUNT_ID) {
      throw new GlacierError(
        403,
        "AccessDeniedException",
        `Access denied to account ${account ?? ""}`,
      );
    }
    const unknown = () =>
      new GlacierError(400, "UnknownOperationException", `No operation ${method} ${pathname}`);
    if (vaults !== "vaults") throw unknown();
    const v = vault ?? null;
    switch (segs.length) {
      case 2:
        if (method === "GET") return { op: "ListVaults", vault: null, id: null };
        break;
      case 3: {
        const op = ({ PUT: "CreateVault", GET: "DescribeVault", DELETE: "DeleteVault" } as const)[
          method as "PUT"
        ];
        if (op) return { op, vault: v, id: null };
        break;
      }
      case 4:
        if (kind === "archives" && method === "POST") {
          return { op: "UploadArchive", vault: v, id: null };
        }
        if (kind === "multipart-uploads" && method === "POST") {
          return { op: "InitiateMultipartUpload", vault: v, id: null };
        }
        if (kind === "multipart-uploads" && method === "GET") {
          return { op: "ListMultipartUploads", vault: v, id: null };
        }
        if (kind === "jobs" && method === "POST") return { op: "InitiateJob", vault: v, id: null };
        if (kind === "jobs" && method === "GET") return { op: "ListJobs", vault: v, id: null };
        break;
      case 5: {
        const i = id ?? null;
        if (kind === "archives" && method === "DELETE") {
          return { op: "DeleteArchive", vault: v, id: i };
        }
        if (kind === "multipart-uploads") {
          const op = ({
            PUT: "UploadMultipartPart",
            GET: "ListParts",
            POST: "CompleteMultipartUpload",
            DELETE: "AbortMultipartUpload",
          } as const)[method as "PUT"];
          if (op) return { op, vault: v, id: i };
        }
        if (kind === "jobs" && method === "GET") return { op: "DescribeJob", vault: v, id: i };
        break;
      }
      case 6:
        if (kind === "jobs" && output === "output" && method === "GET") {
          return { op: "GetJobOutput", vault: v, id: id ?? null };
        }
        break;
    }
    throw unknown();
  }

  /** Authorization and version headers, before anything else is looked at. */
  #checkHeaders(req: IncomingMessage): void {
    const auth = req.headers.authorization;
    if (auth === undefined) {
      throw new GlacierError(
        403,
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
      );
    }
    if (!SIGV4.test(auth)) {
      throw new GlacierError(
        400,
        "IncompleteSignatureException",
        `Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' with AWS4-HMAC-SHA256`,
      );
    }
    if (req.headers["x-amz-date"] === undefined) {
      throw new GlacierError(
        400,
        "IncompleteSignatureException",
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header",
      );
    }
    const version = req.headers["x-amz-glacier-version"];
    if (version === undefined) throw missing("Required header x-amz-glacier-version is missing");
    if (version !== "2012-06-01") {
      throw invalid(`Invalid x-amz-glacier-version: ${version} (expected 2012-06-01)`);
    }
  }

  /** Checks the SigV4 signature against {@linkcode TEST_CREDENTIALS}. */
  #checkSignature(req: IncomingMessage, url: URL, body: ReadBody): void {
    const m = SIGV4.exec(req.headers.authorization ?? "");
    if (!m) throw new GlacierError(400, "IncompleteSignatureException", "Bad Authorization header");
    const [, accessKey, date, region, service, signedList, signature] = m as unknown as string[];
    if (accessKey !== TEST_CREDENTIALS.accessKeyId) {
      throw new GlacierError(
        403,
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
      );
    }
    if (service !== "glacier" || region !== this.region) {
      throw new GlacierError(
        403,
        "InvalidSignatureException",
        `Credential should be scoped to a valid region and service: ${region}/${service}, not ${this.region}/glacier`,
      );
    }
    const amzDate = String(req.headers["x-amz-date"]);
    if (amzDate.slice(0, 8) !== date) {
      throw new GlacierError(
        403,
        "InvalidSignatureException",
        `Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '${date}' != '${
          amzDate.slice(0, 8)
        }'`,
      );
    }
    const signed = signedList!.split(";");
    if (!signed.includes("host") || !signed.includes("x-amz-date")) {
      throw new GlacierError(
        403,
        "InvalidSignatureException",
        "The host and x-amz-date headers must be signed",
      );
    }
    const headers: string[] = [];
    for (const name of signed) {
      const raw = req.headers[name];
      if (raw === undefined) {
        throw new GlacierError(
          403,
          "InvalidSignatureException",
          `Signed header ${name} is missing`,
        );
      }
      const value = Array.isArray(raw) ? raw.join(",") : raw;
      headers.push(`${name}:${value.replace(/[ \t]+/g, " ").trim()}`);
    }
    const payloadHash = headerValue(req, "x-amz-content-sha256") ?? body.sha256;
    const canonical = [
      req.method ?? "GET",
      canonicalPath(url.pathname),
      canonicalQuery(url),
      headers.join("\n") + "\n",
      signedList,
      payloadHash,
    ].join("\n");
    const scope = `${date}/${region}/${service}/aws4_request`;
    const toSign = [
      "AWS4-HMAC-SHA256",
      amzDate,
      scope,
      createHash("sha256").update(canonical).digest("hex"),
    ].join("\n");
    let key: Uint8Array = new TextEncoder().encode(`AWS4${TEST_CREDENTIALS.secretAccessKey}`);
    for (const part of [date!, region!, service!, "aws4_request"]) {
      key = createHmac("sha256", key).update(part).digest();
    }
    const expected = createHmac("sha256", key).update(toSign).digest("hex");
    if (expected !== signature) {
      throw new GlacierError(
        403,
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided.",
      );
    }
    const declared = headerValue(req, "x-amz-content-sha256");
    if (declared !== undefined && declared !== body.sha256) {
      throw invalid(
        `Invalid x-amz-content-sha256: ${declared} does not match the payload's SHA-256 ${body.sha256}`,
      );
    }
  }

  async #dispatch(
    route: Route,
    req: IncomingMessage,
    url: URL,
    body: ReadBody,
    res: ServerResponse,
    fault: FaultKind | null,
  ): Promise<void> {
    const { op } = route;
    if (op === "ListVaults") return this.#listVaults(url, res);
    const name = route.vault ?? "";
    if (op === "CreateVault") return this.#createVault(name, res);
    const vault = this.#vaults.get(name);
    if (!vault) throw notFound(`Vault not found for ARN: ${this.#vaultArn(name)}`);
    const id = route.id ?? "";
    switch (op) {
      case "DescribeVault":
        return sendJson(res, 200, this.#describeVault(vault), fault);
      case "DeleteVault":
        if (vault.archives.size > 0) {
          throw invalid(`Vault not empty or recently written to: ${this.#vaultArn(name)}`);
        }
        this.#vaults.delete(name);
        return sendEmpty(res, 204, {});
      case "UploadArchive":
        return this.#uploadArchive(vault, req, body, res, fault);
      case "DeleteArchive":
        if (!vault.archives.delete(id)) throw notFound(`Archive not found: ${id}`);
        return sendEmpty(res, 204, {});
      case "InitiateMultipartUpload":
        return this.#initiateUpload(vault, req, res);
      case "ListMultipartUploads":
        return this.#listUploads(vault, url, res, fault);
      case "UploadMultipartPart":
        return this.#uploadPart(vault, id, req, body, res, fault);
      case "ListParts":
        return this.#listParts(vault, id, url, res, fault);
      case "CompleteMultipartUpload":
        return this.#completeUpload(vault, id, req, res, fault);
      case "AbortMultipartUpload":
        vault.uploads.delete(id);
        return sendEmpty(res, 204, {});
      case "InitiateJob":
        return this.#initiateJob(vault, body, res);
      case "ListJobs":
        return this.#listJobs(vault, url, res, fault);
      case "DescribeJob": {
        const job = this.#liveJob(vault, id);
        const described = this.#describe(job);
        if (fault === "wrong-tree-hash" && described.SHA256TreeHash) {
          described.SHA256TreeHash = corrupt(described.SHA256TreeHash as string);
        }
        return sendJson(res, 200, described, fault);
      }
      case "GetJobOutput":
        return await this.#getJobOutput(vault, id, req, res, fault);
    }
  }

  #listVaults(url: URL, res: ServerResponse): void {
    const limit = intParam(url, "limit", 1000, 1, 1000);
    const names = this.vaults();
    const marker = url.searchParams.get("marker");
    const from = marker === null ? 0 : names.indexOf(marker) + 1;
    const page = names.slice(from, from + limit);
    const next = from + limit < names.length ? names[from + limit - 1] ?? null : null;
    sendJson(res, 200, {
      VaultList: page.map((n) => this.#describeVault(this.#vaults.get(n)!)),
      Marker: next,
    }, null);
  }

  #createVault(name: string, res: ServerResponse): void {
    if (!/^[A-Za-z0-9_.-]{1,255}$/.test(name)) {
      throw invalid(`Invalid vault name: ${name} (1-255 of A-Z a-z 0-9 _ . -)`);
    }
    this.createVault(name);
    sendEmpty(res, 201, { Location: `/${DOUBLE_ACCOUNT_ID}/vaults/${name}` });
  }

  #describeVault(vault: Vault): Record<string, unknown> {
    let size = 0;
    for (const a of vault.archives.values()) size += a.size;
    return {
      CreationDate: iso(vault.createdAt),
      LastInventoryDate: null,
      NumberOfArchives: vault.archives.size,
      SizeInBytes: size,
      VaultARN: this.#vaultArn(vault.name),
      VaultName: vault.name,
    };
  }

  #uploadArchive(
    vault: Vault,
    req: IncomingMessage,
    body: ReadBody,
    res: ServerResponse,
    fault: FaultKind | null,
  ): void {
    const description = checkDescription(headerValue(req, "x-amz-archive-description") ?? "");
    requireStreamingHeaders(req);
    const size = body.data.length;
    if (size < 1 || size > MAX_SINGLE_UPLOAD) {
      throw invalid(`Invalid Content-Length: ${size} (an archive is 1 byte to 4 GiB)`);
    }
    const treeHash = hex(body.treeHash);
    const declared = headerValue(req, "x-amz-sha256-tree-hash");
    if (declared !== treeHash) {
      throw invalid(
        `Checksum mismatch: x-amz-sha256-tree-hash is ${declared} but the payload's tree hash is ${treeHash}`,
      );
    }
    const archive = this.#addArchive(vault, body.data, treeHash, description);
    sendEmpty(res, 201, {
      Location: `/${DOUBLE_ACCOUNT_ID}/vaults/${vault.name}/archives/${archive.archiveId}`,
      "x-amz-archive-id": archive.archiveId,
      "x-amz-sha256-tree-hash": fault === "wrong-tree-hash" ? corrupt(treeHash) : treeHash,
    });
  }

  #addArchive(vault: Vault, data: Uint8Array, treeHash: string, description: string): Archive {
    const archive: Archive = {
      archiveId: randomId(138),
      size: data.length,
      treeHash,
      description,
      createdAt: this.#now,
      data,
    };
    vault.archives.set(archive.archiveId, archive);
    return archive;
  }

  #initiateUpload(vault: Vault, req: IncomingMessage, res: ServerResponse): void {
    const description = checkDescription(headerValue(req, "x-amz-archive-description") ?? "");
    const raw = headerValue(req, "x-amz-part-size");
    if (raw === undefined) throw missing("Required header x-amz-part-size is missing");
    const partSize = /^\d{1,12}$/.test(raw) ? Number(raw) : NaN;
    if (!isPartSize(partSize)) {
      throw invalid(
        `Invalid part size: ${raw}. Part size must not be null, must be a power of two and be between 1048576 and 4294967296 bytes.`,
      );
    }
    const upload: Upload = {
      uploadId: randomId(92),
      partSize,
      description,
      createdAt: this.#now,
      lastActivity: this.#now,
      parts: new Map(),
    };
    vault.uploads.set(upload.uploadId, upload);
    sendEmpty(res, 201, {
      Location: `/${DOUBLE_ACCOUNT_ID}/vaults/${vault.name}/multipart-uploads/${upload.uploadId}`,
      "x-amz-multipart-upload-id": upload.uploadId,
    });
  }

  #upload(vault: Vault, id: string): Upload {
    const upload = vault.uploads.get(id);
    if (!upload) throw notFound(`The upload ID was not found: ${id}`);
    return upload;
  }

  #uploadPart(
    vault: Vault,
    id: string,
    req: IncomingMessage,
    body: ReadBody,
    res: ServerResponse,
    fault: FaultKind | null,
  ): void {
    const upload = this.#upload(vault, id);
    requireStreamingHeaders(req);
    const range = headerValue(req, "content-range");
    if (range === undefined) throw missing("Required header Content-Range is missing");
    const m = /^bytes (\d+)-(\d+)\/\*$/.exec(range);
    if (!m) throw invalid(`Invalid Content-Range: ${range} (expected bytes a-b/*)`);
    const start = Number(m[1]);
    const end = Number(m[2]);
    const { partSize } = upload;
    if (end < start) throw invalid(`Invalid Content-Range: ${range}: end before start`);
    if (start % partSize !== 0) {
      throw invalid(
        `Content-Range ${range} does not start at a multiple of the part size ${partSize}`,
      );
    }
    const length = end + 1 - start;
    if (length > partSize) {
      throw invalid(
        `Content-Range ${range} spans ${length} bytes, more than the part size ${partSize}`,
      );
    }
    if (start / partSize >= MAX_PARTS) {
      throw invalid(`Content-Range ${range}: a multipart upload has at most ${MAX_PARTS} parts`);
    }
    if (body.data.length !== length) {
      throw invalid(
        `Content-Range ${range} declares ${length} bytes but the payload has ${body.data.length}`,
      );
    }
    const treeHash = hex(body.treeHash);
    const declared = headerValue(req, "x-amz-sha256-tree-hash");
    if (declared !== treeHash) {
      throw invalid(
        `Checksum mismatch: x-amz-sha256-tree-hash is ${declared} but the part's tree hash is ${treeHash}`,
      );
    }
    upload.parts.set(start, { start, data: body.data, treeHash: body.treeHash });
    upload.lastActivity = this.#now;
    sendEmpty(res, 204, {
      "x-amz-sha256-tree-hash": fault === "wrong-tree-hash" ? corrupt(treeHash) : treeHash,
    });
  }

  #listParts(
    vault: Vault,
    id: string,
    url: URL,
    res: ServerResponse,
    fault: FaultKind | null,
  ): void {
    const upload = this.#upload(vault, id);
    const limit = intParam(url, "limit", 50, 1, 50);
    const parts = [...upload.parts.values()].sort((a, b) => a.start - b.start);
    const marker = url.searchParams.get("marker");
    const from = marker === null ? 0 : parts.findIndex((p) => String(p.start) === marker);
    if (from < 0) throw invalid(`Invalid marker: ${marker}`);
    const page = parts.slice(from, from + limit);
    const next = parts[from + limit];
    sendJson(res, 200, {
      ArchiveDescription: upload.description,
      CreationDate: iso(upload.createdAt),
      Marker: next === undefined ? null : String(next.start),
      MultipartUploadId: upload.uploadId,
      PartSizeInBytes: upload.partSize,
      Parts: page.map((p) => ({
        RangeInBytes: `${p.start}-${p.start + p.data.length - 1}`,
        SHA256TreeHash: hex(p.treeHash),
      })),
      VaultARN: this.#vaultArn(vault.name),
    }, fault);
  }

  #listUploads(vault: Vault, url: URL, res: ServerResponse, fault: FaultKind | null): void {
    const limit = intParam(url, "limit", 50, 1, 50);
    const uploads = [...vault.uploads.values()];
    const marker = url.searchParams.get("marker");
    const from = marker === null ? 0 : uploads.findIndex((u) => u.uploadId === marker);
    if (from < 0) throw invalid(`Invalid marker: ${marker}`);
    const page = uploads.slice(from, from + limit);
    sendJson(res, 200, {
      UploadsList: page.map((u) => ({
        ArchiveDescription: u.description,
        CreationDate: iso(u.createdAt),
        MultipartUploadId: u.uploadId,
        PartSizeInBytes: u.partSize,
        VaultARN: this.#vaultArn(vault.name),
      })),
      Marker: uploads[from + limit]?.uploadId ?? null,
    }, fault);
  }

  #completeUpload(
    vault: Vault,
    id: string,
    req: IncomingMessage,
    res: ServerResponse,
    fault: FaultKind | null,
  ): void {
    const upload = this.#upload(vault, id);
    const rawSize = headerValue(req, "x-amz-archive-size");
    if (rawSize === undefined) throw missing("Required header x-amz-archive-size is missing");
    const declared = headerValue(req, "x-amz-sha256-tree-hash");
    if (declared === undefined) throw missing("Required header x-amz-sha256-tree-hash is missing");
    const size = /^\d{1,15}$/.test(rawSize) ? Number(rawSize) : NaN;
    if (!(size >= 1)) throw invalid(`Invalid x-amz-archive-size: ${rawSize}`);
    const { partSize } = upload;
    const count = Math.ceil(size / partSize);
    if (count > MAX_PARTS) {
      throw invalid(
        `Archive size ${size} needs ${count} parts of ${partSize}: more than ${MAX_PARTS}`,
      );
    }
    const parts: Part[] = [];
    for (let i = 0; i < count; i++) {
      const start = i * partSize;
      const part = upload.parts.get(start);
      const want = Math.min(partSize, size - start);
      if (!part) {
        throw invalid(
          `Archive size ${size} does not match the uploaded parts: no part at byte ${start} (a gap)`,
        );
      }
      if (part.data.length !== want) {
        throw invalid(
          `Archive size ${size} does not match the uploaded parts: part at byte ${start} has ${part.data.length} bytes, not ${want}`,
        );
      }
      parts.push(part);
    }
    for (const start of upload.parts.keys()) {
      if (start >= size) {
        throw invalid(
          `Archive size ${size} does not match the uploaded parts: a part starts at byte ${start}`,
        );
      }
    }
    const treeHash = hex(combineTreeHashes(parts.map((p) => p.treeHash)));
    if (declared !== treeHash) {
      throw invalid(
        `Checksum mismatch: x-amz-sha256-tree-hash is ${declared} but the parts' tree hash is ${treeHash}`,
      );
    }
    const data = new Uint8Array(size);
    for (const p of parts) data.set(p.data, p.start);
    vault.uploads.delete(id);
    const archive = this.#addArchive(vault, data, treeHash, upload.description);
    sendEmpty(res, 201, {
      Location: `/${DOUBLE_ACCOUNT_ID}/vaults/${vault.name}/archives/${archive.archiveId}`,
      "x-amz-archive-id": archive.archiveId,
      "x-amz-sha256-tree-hash": fault === "wrong-tree-hash" ? corrupt(treeHash) : treeHash,
    });
  }

  #initiateJob(vault: Vault, body: ReadBody, res: ServerResponse): void {
    let params: unknown;
    try {
      params = JSON.parse(new TextDecoder().decode(body.data));
    } catch {
      throw invalid("Invalid job parameters: the body is not JSON");
    }
    if (!isRecord(params)) throw invalid("Invalid job parameters: expected a JSON object");
    const type = params.Type;
    if (type === undefined) throw missing("Job parameter Type is missing");
    const description = optionalString(params, "Description");
    if (description !== null) checkDescription(description, "job description");
    const snsTopic = optionalString(params, "SNSTopic");
    if (snsTopic !== null && !SNS_TOPIC_ARN.test(snsTopic)) {
      throw invalid(`Invalid SNSTopic: ${snsTopic} is not an SNS topic ARN`);
    }
    let job: Job;
    const createdAt = this.#now;
    const base = {
      id: randomId(92),
      vault: vault.name,
      description,
      snsTopic,
      createdAt,
      dueAt: createdAt + this.#jobDelayMs,
      completedAt: null,
      failure: null,
      published: false,
    };
    if (type === "archive-retrieval") {
      const archiveId = optionalString(params, "ArchiveId");
      if (archiveId === null) throw missing("Job parameter ArchiveId is missing");
      const tier = optionalString(params, "Tier") ?? "Standard";
      if (!["Expedited", "Standard", "Bulk"].includes(tier)) {
        throw invalid(`Invalid Tier: ${tier} (Expedited, Standard or Bulk)`);
      }
      const archive = vault.archives.get(archiveId);
      if (!archive) throw notFound(`Archive not found: ${archiveId}`);
      const rawRange = optionalString(params, "RetrievalByteRange");
      const range = rawRange === null
        ? { start: 0, end: archive.size - 1 }
        : parseRetrievalRange(rawRange, archive.size);
      const treeHash = isTreeHashAligned(range, archive.size)
        ? treeHashOf(archive.data.subarray(range.start, range.end + 1))
        : null;
      job = {
        ...base,
        action: "ArchiveRetrieval",
        archiveId,
        data: archive.data,
        archiveSize: archive.size,
        archiveTreeHash: archive.treeHash,
        range,
        treeHash,
        tier,
        format: null,
      };
    } else if (type === "inventory-retrieval") {
      const format = optionalString(params, "Format") ?? "JSON";
      if (format !== "JSON" && format !== "CSV") {
        throw invalid(`Invalid Format: ${format} (JSON or CSV)`);
      }
      job = {
        ...base,
        action: "InventoryRetrieval",
        archiveId: null,
        data: this.#inventory(vault, format),
        archiveSize: null,
        archiveTreeHash: null,
        range: null,
        treeHash: null,
        tier: null,
        format,
      };
    } else {
      throw invalid(`Invalid job type: ${String(type)} (archive-retrieval or inventory-retrieval)`);
    }
    vault.jobs.set(job.id, job);
    this.#sweep();
    sendEmpty(res, 202, {
      Location: `/${DOUBLE_ACCOUNT_ID}/vaults/${vault.name}/jobs/${job.id}`,
      "x-amz-job-id": job.id,
    });
  }

  #inventory(vault: Vault, format: "JSON" | "CSV"): Uint8Array {
    const archives = [...vault.archives.values()];
    if (format === "CSV") {
      const q = (s: string) => `"${s.replace(/"/g, '""')}"`;
      const lines = ["ArchiveId,ArchiveDescription,CreationDate,Size,SHA256TreeHash"];
      for (const a of archives) {
        lines.push([a.archiveId, q(a.description), iso(a.createdAt), a.size, a.treeHash].join(","));
      }
      return new TextEncoder().encode(lines.join("\n") + "\n");
    }
    return new TextEncoder().encode(JSON.stringify({
      VaultARN: this.#vaultArn(vault.name),
      InventoryDate: iso(this.#now),
      ArchiveList: archives.map((a) => ({
        ArchiveId: a.archiveId,
        ArchiveDescription: a.description,
        CreationDate: iso(a.createdAt),
        Size: a.size,
        SHA256TreeHash: a.treeHash,
      })),
    }));
  }

  #listJobs(vault: Vault, url: URL, res: ServerResponse, fault: FaultKind | null): void {
    const limit = intParam(url, "limit", 50, 1, 1000);
    const status = url.searchParams.get("statuscode");
    if (status !== null && !["InProgress", "Succeeded", "Failed"].includes(status)) {
      throw invalid(`Invalid statuscode: ${status}`);
    }
    const completed = url.searchParams.get("completed");
    if (completed !== null && completed !== "true" && completed !== "false") {
      throw invalid(`Invalid completed: ${completed}`);
    }
    const all = [...vault.jobs.values()].map((j) => this.#describe(j)).filter((d) =>
      (status === null || d.StatusCode === status) &&
      (completed === null || String(d.Completed) === completed)
    );
    const marker = url.searchParams.get("marker");
    const from = marker === null ? 0 : all.findIndex((d) => d.JobId === marker);
    if (from < 0) throw invalid(`Invalid marker: ${marker}`);
    sendJson(res, 200, {
      JobList: all.slice(from, from + limit),
      Marker: (all[from + limit]?.JobId as string | undefined) ?? null,
    }, fault);
  }

  async #getJobOutput(
    vault: Vault,
    id: string,
    req: IncomingMessage,
    res: ServerResponse,
    fault: FaultKind | null,
  ): Promise<void> {
    const job = this.#liveJob(vault, id);
    if (job.failure !== null) {
      throw invalid(`The job failed and has no output: ${id}: ${job.failure}`);
    }
    if (job.completedAt === null) {
      throw invalid(`The job is not currently available for download: ${id}`);
    }
    const base = job.range?.start ?? 0;
    const length = job.range ? job.range.end + 1 - job.range.start : job.data.length;
    const rawRange = headerValue(req, "range");
    let start = 0;
    let end = length - 1;
    if (rawRange !== undefined) {
      const m = /^bytes=(\d+)-(\d*)$/.exec(rawRange);
      if (!m) throw invalid(`Invalid Range: ${rawRange} (expected bytes=a-b)`);
      start = Number(m[1]);
      end = m[2] === "" ? length - 1 : Number(m[2]);
      if (start > end || end >= length) {
        throw new GlacierError(
          416,
          "InvalidParameterValueException",
          `The requested range ${start}-${end} is not satisfiable: the job output has ${length} bytes`,
        );
      }
    }
    const headers: Record<string, string> = {
      "Content-Type": job.action === "InventoryRetrieval"
        ? (job.format === "CSV" ? "text/csv" : "application/json")
        : "application/octet-stream",
      "Accept-Ranges": "bytes",
      "Content-Length": String(end + 1 - start),
    };
    if (job.action === "ArchiveRetrieval") {
      const archive = vault.archives.get(job.archiveId ?? "");
      if (archive) headers["x-amz-archive-description"] = archive.description;
      const abs = { start: base + start, end: base + end };
      if (job.treeHash !== null && isTreeHashAligned(abs, job.archiveSize ?? 0)) {
        const hash = rawRange === undefined
          ? job.treeHash
          : treeHashOf(job.data.subarray(abs.start, abs.end + 1));
        headers["x-amz-sha256-tree-hash"] = fault === "wrong-tree-hash" ? corrupt(hash) : hash;
      }
    }
    if (rawRange !== undefined) headers["Content-Range"] = `bytes ${start}-${end}/${length}`;
    res.writeHead(rawRange === undefined ? 200 : 206, headers);
    const bytes = job.data.subarray(base + start, base + end + 1);
    const cut = fault === "truncate" ? Math.floor(bytes.length / 2) : bytes.length;
    await writeBytes(res, bytes.subarray(0, cut));
    if (fault === "truncate") {
      res.destroy();
      return;
    }
    res.end();
  }

  #liveJob(vault: Vault, id: string): Job {
    const job = vault.jobs.get(id);
    if (!job) throw notFound(`The job ID was not found: ${id}`);
    return job;
  }

  #describe(job: Job): Record<string, unknown> {
    const done = job.completedAt !== null || (job.failure === null && this.#now >= job.dueAt);
    const completedAt = job.completedAt ?? (done ? job.dueAt : null);
    const status = job.failure !== null ? "Failed" : done ? "Succeeded" : "InProgress";
    const archive = job.action === "ArchiveRetrieval";
    return {
      Action: job.action,
      ArchiveId: job.archiveId,
      ArchiveSHA256TreeHash: job.archiveTreeHash,
      ArchiveSizeInBytes: job.archiveSize,
      Completed: status !== "InProgress",
      CompletionDate: completedAt === null ? null : iso(completedAt),
      CreationDate: iso(job.createdAt),
      InventoryRetrievalParameters: archive ? null : {
        Format: job.format,
        StartDate: null,
        EndDate: null,
        Limit: null,
        Marker: null,
      },
      InventorySizeInBytes: archive || status !== "Succeeded" ? null : job.data.length,
      JobDescription: job.description,
      JobId: job.id,
      RetrievalByteRange: job.range ? `${job.range.start}-${job.range.end}` : null,
      SHA256TreeHash: job.treeHash,
      SNSTopic: job.snsTopic,
      StatusCode: status,
      StatusMessage: job.failure ?? (status === "Succeeded" ? "Succeeded" : "In progress"),
      Tier: job.tier,
      VaultARN: this.#vaultArn(job.vault),
    };
  }

  /**
   * Completes due jobs and publishes their notifications (in completion
   * order, across vaults, to the subscribed queues too), drops expired jobs
   * and idle uploads.
   */
  #sweep(): void {
    const now = this.#now;
    const done: { vault: Vault; job: Job }[] = [];
    for (const vault of this.#vaults.values()) {
      for (const job of vault.jobs.values()) {
        if (job.completedAt === null && job.failure === null && now >= job.dueAt) {
          job.completedAt = job.dueAt;
        }
        if (job.completedAt !== null) done.push({ vault, job });
      }
      for (const upload of vault.uploads.values()) {
        if (now >= upload.lastActivity + UPLOAD_IDLE_MS) vault.uploads.delete(upload.uploadId);
      }
    }
    done.sort((a, b) => a.job.completedAt! - b.job.completedAt!);
    for (const { vault, job } of done) {
      if (!job.published && job.snsTopic !== null) {
        job.published = true;
        this.#publish({
          topic: job.snsTopic,
          jobId: job.id,
          message: JSON.stringify(this.#describe(job)),
        });
      }
      if (now >= job.completedAt! + JOB_TTL_MS) vault.jobs.delete(job.id);
    }
  }

  /** Records a notification and delivers it to the topic's subscribed queues. */
  #publish(note: Notification): void {
    this.#notifications.push(note);
    for (const { queue, raw } of this.#subscriptions.get(note.topic) ?? []) {
      try {
        publishToQueue(queue, note.topic, note.message, { raw });
      } catch {
        // The queue refused it (deleted since, or a MaximumMessageSize too small): SNS drops it.
      }
    }
  }

  #takeFault(op: GlacierOperation): Fault | null {
    const i = this.#faults.findIndex((f) => f.operation === undefined || f.operation === op);
    let fault: Fault | null = null;
    if (i >= 0) {
      const f = this.#faults[i]!;
      fault = f;
      const left = (f.count ?? 1) - 1;
      if (left <= 0) this.#faults.splice(i, 1);
      else this.#faults[i] = { ...f, count: left };
    } else if (this.#random && (this.#random.ops === null || this.#random.ops.includes(op))) {
      const r = this.#random;
      if (r.next() < r.rate) {
        fault = { kind: r.kinds[Math.floor(r.next() * r.kinds.length)] ?? "server-error" };
      }
    }
    if (fault) this.#served.push({ operation: op, kind: fault.kind });
    return fault;
  }

  #atBarrier(op: GlacierOperation): Promise<void> {
    const barrier = this.#barriers.get(op);
    if (!barrier) return Promise.resolve();
    return new Promise((resolve) => {
      barrier.waiting.push(resolve);
      if (barrier.waiting.length >= barrier.n) this.#releaseBarrier(op);
    });
  }

  #releaseBarrier(op: GlacierOperation): void {
    const barrier = this.#barriers.get(op);
    if (!barrier) return;
    this.#barriers.delete(op);
    for (const go of barrier.waiting) go();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.#timers.delete(t);
        resolve();
      }, ms);
      this.#timers.add(t);
    });
  }

  #sendError(res: ServerResponse, e: unknown): void {
    const err = e instanceof GlacierError
      ? e
      : new GlacierError(500, "InternalFailure", e instanceof Error ? e.message : String(e));
    const body = JSON.stringify({
      code: err.code,
      message: err.message,
      type: err.status >= 500 ? "Server" : "Client",
    });
    res.writeHead(err.status, {
      "Content-Type": "application/json",
      "Content-Length": String(Buffer.byteLength(body)),
      "x-amzn-ErrorType": `${err.code}:`,
    });
    res.end(body);
  }

  #vault(name: string): Vault {
    const vault = this.#vaults.get(name);
    if (!vault) throw new RangeError(`No vault ${name} in the Glacier double`);
    return vault;
  }

  #job(id: string): Job {
    for (const vault of this.#vaults.values()) {
      const job = vault.jobs.get(id);
      if (job) return job;
    }
    throw new RangeError(`No job ${id} in the Glacier double`);
  }

  #vaultArn(name: string): string {
    return `arn:aws:glacier:${this.region}:${DOUBLE_ACCOUNT_ID}:vaults/${name}`;
  }
}

const SIGV4 =
  /^AWS4-HMAC-SHA256 Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request,\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$/;

function faultError(fault: Fault): GlacierError | null {
  if (fault.kind === "error") {
    const code = fault.code ?? "InternalFailure";
    return new GlacierError(fault.status ?? 400, code, fault.message ?? `Injected ${code}`);
  }
  const spec = FAULT_ERRORS[fault.kind];
  return spec ? new GlacierError(spec[0], spec[1], fault.message ?? spec[2]) : null;
}

/** Reads a request body (at most `limit` bytes), hashing it as it streams in. */
async function readBody(req: IncomingMessage, limit: number): Promise<ReadBody> {
  const sha = createHash("sha256");
  const tree = new TreeHasher();
  const declared = req.headers["content-length"];
  const expected = declared === undefined ? null : Number(declared);
  if (expected !== null && expected > limit) {
    req.resume();
    throw invalid(`Invalid Content-Length: ${declared} is more than ${limit} bytes`);
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of req) {
    const c = chunk as Uint8Array;
    total += c.length;
    if (total > limit) throw invalid(`Request body larger than ${limit} bytes`);
    sha.update(c);
    tree.update(c);
    chunks.push(c);
  }
  let data: Uint8Array;
  if (chunks.length === 1) {
    data = new Uint8Array(chunks[0]!);
  } else {
    data = new Uint8Array(total);
    let off = 0;
    for (const c of chunks) {
      data.set(c, off);
      off += c.length;
    }
  }
  return { data, sha256: sha.digest("hex"), treeHash: tree.digestBytes() };
}

async function drain(req: IncomingMessage): Promise<void> {
  for await (const _ of req) { /* discard */ }
}

/** Writes `bytes` with backpressure; resolves once the last of them is flushed. */
async function writeBytes(res: ServerResponse, bytes: Uint8Array): Promise<void> {
  for (let off = 0; off < bytes.length; off += WRITE_CHUNK) {
    if (res.destroyed) return;
    const chunk = bytes.subarray(off, off + WRITE_CHUNK);
    if (off + WRITE_CHUNK >= bytes.length) {
      await new Promise<void>((resolve) => res.write(chunk, () => resolve()));
      return;
    }
    const ok = res.write(chunk);
    if (!ok) {
      await new Promise<void>((resolve) => {
        const done = () => {
          res.off("drain", done);
          res.off("close", done);
          resolve();
        };
        res.on("drain", done);
        res.on("close", done);
      });
    }
  }
}

function sendEmpty(res: ServerResponse, status: number, headers: Record<string, string>): void {
  res.writeHead(status, { ...headers, "Content-Length": "0" });
  res.end();
}

function sendJson(
  res: ServerResponse,
  status: number,
  value: unknown,
  fault: FaultKind | null,
): void {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, {
    "Content-Type": "application/json",
    "Content-Length": String(body.length),
  });
  if (fault === "truncate") {
    // Cut the connection once half the body is flushed, so that the headers arrive.
    res.write(body.subarray(0, Math.floor(body.length / 2)), () => res.destroy());
    return;
  }
  res.end(body);
}

function requireStreamingHeaders(req: IncomingMessage): void {
  if (req.headers["content-length"] === undefined) {
    throw new GlacierError(411, "MissingContentLength", "Content-Length is required");
  }
  if (headerValue(req, "x-amz-content-sha256") === undefined) {
    throw missing("Required header x-amz-content-sha256 is missing");
  }
  if (headerValue(req, "x-amz-sha256-tree-hash") === undefined) {
    throw missing("Required header x-amz-sha256-tree-hash is missing");
  }
}

function checkDescription(description: string, what = "archive description"): string {
  if (description.length > 1024) {
    throw invalid(`Invalid ${what}: ${description.length} characters, at most 1024`);
  }
  for (let i = 0; i < description.length; i++) {
    const c = description.charCodeAt(i);
    if (c < 32 || c > 126) {
      throw invalid(`Invalid ${what}: character ${c} at ${i} is not printable ASCII (32..126)`);
    }
  }
  return description;
}

function parseRetrievalRange(raw: string, size: number): { start: number; end: number } {
  const m = /^(\d{1,15})-(\d{1,15})$/.exec(raw);
  if (!m) throw invalid(`Invalid RetrievalByteRange: ${raw} (expected a-b)`);
  const start = Number(m[1]);
  const end = Number(m[2]);
  let why: string | null = null;
  if (start > end) why = "start is after end";
  else if (end >= size) why = `end is past the archive's last byte ${size - 1}`;
  else if (start % MIB !== 0) why = "start is not megabyte aligned";
  else if ((end + 1) % MIB !== 0 && end + 1 !== size) {
    why = "end + 1 is neither megabyte aligned nor the archive size";
  }
  if (why !== null) throw invalid(`Invalid RetrievalByteRange ${raw} for ${size} bytes: ${why}`);
  return { start, end };
}

function isPartSize(n: number): boolean {
  if (!Number.isSafeInteger(n) || n < MIB || n > 4 * GIB) return false;
  const mib = n / MIB;
  return Number.isInteger(mib) && (mib & (mib - 1)) === 0;
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(",") : v;
}

function optionalString(params: Record<string, unknown>, key: string): string | null {
  const v = params[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== "string") throw invalid(`Invalid ${key}: expected a string`);
  return v;
}

function intParam(url: URL, key: string, fallback: number, min: number, max: number): number {
  const raw = url.searchParams.get(key);
  if (raw === null) return fallback;
  const n = /^\d{1,9}$/.test(raw) ? Number(raw) : NaN;
  if (!(n >= min && n <= max)) throw invalid(`Invalid ${key}: ${raw} (${min}..${max})`);
  return n;
}

/** The SigV4 canonical path of a non-S3 service: each raw segment encoded once more. */
function canonicalPath(pathname: string): string {
  return pathname.split("/").map((s) => escapeUri(s)).join("/");
}

function canonicalQuery(url: URL): string {
  const pairs: string[] = [];
  for (const [k, v] of url.searchParams) pairs.push(`${escapeUri(k)}=${escapeUri(v)}`);
  return pairs.sort().join("&");
}

function escapeUri(s: string): string {
  return encodeURIComponent(s).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  );
}

function treeHashOf(data: Uint8Array): string {
  const h = new TreeHasher();
  h.update(data);
  return h.digest();
}

/** Another valid-looking hash: the first hex digit changed. */
function corrupt(hash: string): string {
  return (hash[0] === "0" ? "1" : "0") + hash.slice(1);
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function randomId(n: number): string {
  const bytes = randomBytes(n);
  let s = "";
  for (const b of bytes) s += ID_CHARS[b & 63];
  return s;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
