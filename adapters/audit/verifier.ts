/**
 * The audit verifier daemon's engine: an HTTP API that takes md5 manifests
 * from `coldpack-audit sample`, and a loop that waits for each audit's
 * retrieval, streams the archive once, md5s every tar entry, compares with
 * the manifest, records the result (adapters/audit/results.ts) and mails
 * the list on any finding, on an audit that cannot be checked, and on a
 * retrieval still not ready after the ready timeout.
 *
 * HTTP (JSON answers; every route but `/health` needs
 * `Authorization: Bearer <token>`, compared in constant time):
 *
 * - `POST /manifests`: body = the manifest (JSON, `version: 1`). 202
 *   `{auditId, state: "waiting"}` when new; 200 with the audit when the same
 *   bytes came before (a retried send); 409 when another manifest already
 *   has that `auditId`; 400 with the reason when malformed (or naming a
 *   store this verifier does not serve); 401 without the right token; 413
 *   above 16 MiB.
 * - `GET /audits[?state=failed&limit=100]`: newest first, with findings.
 * - `GET /audits/ID`: one audit, with its manifest's entry count.
 * - `GET /health`: `{status, waiting, verified, failed, error}`.
 *
 * Memory: one archive is streamed at a time, through the tar parser, with
 * one md5 state; nothing of the archive is kept.
 *
 * @example
 * ```ts
 * const verifier = await AuditVerifier.start({
 *   token, results: AuditResults.open("/var/lib/coldpack/verifier.db"),
 *   port: 8420, pollMs: 300_000, readyTimeoutMs: 48 * 3_600_000,
 *   openStore: (location) => openStore(location), mailer,
 * });
 * // ... later (SIGTERM):
 * await verifier.stop();
 * ```
 * @module
 */

import { createHash, timingSafeEqual } from "node:crypto";
import {
  type AuditManifest,
  compareEntries,
  manifestDigest,
  parseManifest,
} from "../../core/audit.ts";
import { errorCode, errorMessage, PortError } from "../../core/errors.ts";
import { jobId as toJobId } from "../../core/ids.ts";
import { type Clock, type ColdStore, type Metrics, noMetrics } from "../../core/ports.ts";
import { formatDuration } from "../../core/duration.ts";
import type { Mail, Mailer } from "./mailer.ts";
import type { AuditRecord, AuditResults, AuditState, RecordedFinding } from "./results.ts";
import { digestTar } from "./tar_digest.ts";

// ---------------------------------------------------------------------------
// The mails.

/** What a mail needs besides the audit. */
export interface MailContext {
  /** The verifier's base URL as operators reach it (for the curl line). */
  readonly verifierUrl: string;
  /** How long the retrieval has not been ready (the overdue mail). */
  readonly readyTimeoutMs?: number;
}

/** The local vault path of an archive when the store is a `file://` vault, else null. */
function vaultPath(store: string, remoteId: string): string | null {
  if (!store.startsWith("file://")) return null;
  try {
    const path = decodeURIComponent(new URL(store).pathname).replace(/\/+$/, "");
    return `${path}/${remoteId}`;
  } catch {
    return null;
  }
}

function shellQuote(s: string): string {
  return /^[A-Za-z0-9._\/:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

/**
 * The mail for an audit: findings (state `failed`), could not be checked
 * (`error`), or retrieval overdue (`overdue`). Subject names the archive.
 */
export function auditMail(
  audit: AuditRecord,
  kind: "result" | "overdue",
  context: MailContext,
): Mail {
  const lines: string[] = [];
  const findings = audit.findings ?? [];
  let subject: string;
  if (kind === "overdue") {
    subject = `coldpack audit: archive ${audit.archiveId}: retrieval not ready after ${
      formatDuration(context.readyTimeoutMs ?? 0)
    }`;
    lines.push(
      `The retrieval of archive ${audit.archiveId} for audit ${audit.auditId} is still not ready.`,
      `It was handed to the verifier at ${new Date(audit.receivedAt).toISOString()}.`,
    );
  } else if (audit.state === "failed") {
    subject = `coldpack audit FAILED: archive ${audit.archiveId}: ${findings.length} finding${
      findings.length === 1 ? "" : "s"
    } (${[...new Set(findings.map((f) => f.kind))].join(", ")})`;
    lines.push(
      `The archive ${audit.archiveId}, read back from the store, differs from the md5s of its`,
      `files (audit ${audit.auditId}).`,
    );
  } else {
    subject = `coldpack audit: archive ${audit.archiveId} could not be checked`;
    lines.push(`Audit ${audit.auditId} of archive ${audit.archiveId} could not be checked:`);
    lines.push(`  ${audit.note ?? "unknown reason"}`);
  }
  lines.push(
    "",
    `Archive:    ${audit.archiveId}`,
    `Store:      ${audit.store}`,
    `Remote id:  ${audit.remoteId}`,
    `Retrieval:  job ${audit.jobId}`,
    `Audit:      ${audit.auditId} (state ${audit.state}${
      audit.checkedAt === null ? "" : `, checked ${new Date(audit.checkedAt).toISOString()}`
    })`,
  );
  if (kind === "result" && findings.length > 0) {
    lines.push("", "Findings:");
    for (const f of findings) lines.push(`  - ${f.kind}: ${f.detail}`);
  }
  lines.push("", "How to reproduce:");
  lines.push(
    `  curl -H "Authorization: Bearer $COLDPACK_VERIFIER_TOKEN" ${context.verifierUrl}/audits/${audit.auditId}`,
  );
  const path = vaultPath(audit.store, audit.remoteId);
  const archive = path === null ? `${audit.archiveId}.tar` : shellQuote(path);
  if (path === null) {
    lines.push(
      `  # fetch the archive while the retrieval lasts (job ${audit.jobId} at ${audit.store}),`,
      `  # save it as ${audit.archiveId}.tar, then:`,
    );
  }
  lines.push(`  tar -tvf ${archive}`);
  for (const f of findings) {
    if (f.name !== undefined && f.kind !== "missing-entry") {
      lines.push(`  tar -xOf ${archive} ${shellQuote(f.name)} | md5sum   # ${f.kind}`);
    }
  }
  lines.push("", "-- coldpack-audit-verifier");
  return { subject, text: lines.join("\n") + "\n" };
}

// ---------------------------------------------------------------------------
// The daemon.

/** Options for {@linkcode AuditVerifier.start}. */
export interface VerifierOptions {
  /** The bearer token (`COLDPACK_VERIFIER_TOKEN`); at least 16 characters. */
  readonly token: string;
  readonly results: AuditResults;
  /** TCP port; 0 takes a free one (see {@linkcode AuditVerifier.port}). */
  readonly port: number;
  /** Address to listen on; default `127.0.0.1`. */
  readonly hostname?: string;
  /**
   * Stores opened by the caller (`--store`), by their `location`. When
   * given without `openStore`, a manifest naming another store is refused.
   */
  readonly stores?: readonly ColdStore[];
  /** Opens the store a manifest names (its location URL); default none. */
  readonly openStore?: (location: string) => Promise<ColdStore>;
  /** Where alert mails go; `null`: findings are only logged and listed. */
  readonly mailer: Mailer | null;
  /** How often waiting audits are looked at, ms. */
  readonly pollMs: number;
  /** A retrieval not ready this long after its manifest came gets one mail, ms. */
  readonly readyTimeoutMs: number;
  /** The base URL operators reach this verifier at, for the mails; default from the address. */
  readonly publicUrl?: string;
  /** Default the system clock. */
  readonly clock?: Pick<Clock, "now">;
  readonly log?: (line: string) => void;
  /** Counters `coldpack.audit_verifier.*`; default none. */
  readonly metrics?: Metrics;
}

/** Largest manifest accepted, bytes. */
export const MAX_MANIFEST_BYTES = 16 * 1024 * 1024;
const METRIC = "coldpack.audit_verifier";
const MIN_TOKEN = 16;

/** The running verifier: HTTP server plus check loop. */
export class AuditVerifier {
  /** The port listened on. */
  readonly port: number;
  readonly hostname: string;
  readonly #o: VerifierOptions;
  readonly #server: Deno.HttpServer<Deno.NetAddr>;
  readonly #tokenHash: Uint8Array;
  readonly #stores = new Map<string, Promise<ColdStore>>();
  /** The stores this verifier opened itself (and closes). */
  readonly #opened: Promise<ColdStore>[] = [];
  readonly #stop = new AbortController();
  readonly #now: () => number;
  readonly #log: (line: string) => void;
  readonly #metrics: Metrics;
  readonly #startedAt: number;
  #wake: (() => void) | null = null;
  #woken = false;
  #loop: Promise<void> = Promise.resolve();
  #stopping: Promise<void> | null = null;
  #passes = 0;

  private constructor(options: VerifierOptions) {
    this.#o = options;
    this.#now = options.clock?.now ?? Date.now;
    this.#log = options.log ?? (() => {});
    this.#metrics = options.metrics ?? noMetrics;
    this.#tokenHash = sha256(options.token);
    this.#startedAt = Date.now();
    for (const s of options.stores ?? []) this.#stores.set(s.location, Promise.resolve(s));
    this.hostname = options.hostname ?? "127.0.0.1";
    try {
      this.#server = Deno.serve(
        { port: options.port, hostname: this.hostname, onListen: () => {} },
        (request) => this.#answer(request),
      );
    } catch (e) {
      const why = e instanceof Deno.errors.AddrInUse ? "address in use" : errorMessage(e);
      throw new PortError(`Cannot listen on ${this.hostname}:${options.port}: ${why}`, {
        code: errorCode(e),
        retryable: false,
        cause: e,
      });
    }
    this.port = this.#server.addr.port;
  }

  /**
   * Starts listening and checking. Rejects with a `PortError` when the
   * address cannot be had, a `RangeError` for a token shorter than 16.
   */
  static start(options: VerifierOptions): Promise<AuditVerifier> {
    if (options.token.length < MIN_TOKEN) {
      return Promise.reject(
        new RangeError(`The verifier token is too short: at least ${MIN_TOKEN} characters`),
      );
    }
    try {
      const v = new AuditVerifier(options);
      v.#loop = v.#run();
      return Promise.resolve(v);
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /** The URL the verifier answers on. */
  get url(): string {
    const host = this.hostname.includes(":") ? `[${this.hostname}]` : this.hostname;
    return this.#o.publicUrl ?? `http://${host}:${this.port}`;
  }

  /** Check passes completed so far (tests wait on it). */
  get passes(): number {
    return this.#passes;
  }

  /** Looks at the waiting audits now instead of at the next poll. */
  wake(): void {
    this.#woken = true;
    this.#wake?.();
  }

  /**
   * Stops: no new requests, the check in progress is abandoned (its audit
   * stays `waiting` and is checked again after a restart), the stores it
   * opened closed (not those given as `stores`, nor the results file).
   * Idempotent.
   */
  stop(): Promise<void> {
    return this.#stopping ??= (async () => {
      this.#stop.abort(new DOMException("verifier stopping", "AbortError"));
      this.#wake?.();
      await this.#server.shutdown();
      await this.#loop;
      for (const s of this.#opened) await s.then((store) => store.close()).catch(() => {});
    })();
  }

  async #run(): Promise<void> {
    const signal = this.#stop.signal;
    while (!signal.aborted) {
      this.#woken = false;
      try {
        await this.#pass(signal);
      } catch (e) {
        if (!signal.aborted) this.#log(`check pass failed: ${errorMessage(e)} [${errorCode(e)}]`);
      }
      this.#passes++;
      if (signal.aborted || this.#woken) continue;
      await new Promise<void>((resolve) => {
        const t = setTimeout(done, this.#o.pollMs);
        function done() {
          clearTimeout(t);
          resolve();
        }
        this.#wake = done;
      });
      this.#wake = null;
    }
  }

  async #pass(signal: AbortSignal): Promise<void> {
    for (const audit of this.#o.results.waiting()) {
      if (signal.aborted) return;
      await this.#check(audit, signal);
    }
    for (const audit of this.#o.results.mailsDue()) {
      if (signal.aborted) return;
      await this.#mail(audit, "result");
    }
    this.#metrics.gauge(`${METRIC}.waiting`, this.#o.results.counts().waiting);
  }

  async #check(audit: AuditRecord, signal: AbortSignal): Promise<void> {
    const results = this.#o.results;
    let store: ColdStore;
    try {
      store = await this.#store(audit.store);
    } catch (e) {
      this.#transient(audit, `cannot open store ${audit.store}: ${errorMessage(e)}`);
      return;
    }
    const job = toJobId(audit.jobId);
    try {
      const state = await store.retrieval(job, { signal });
      if (state.state === "in-progress") {
        await this.#maybeOverdue(audit);
        return;
      }
      if (state.state === "failed" || state.state === "expired") {
        const why = state.state === "failed"
          ? `the retrieval failed at ${store.location}: ${state.failure ?? "no reason given"}`
          : `the retrieval expired at ${store.location} before it could be read`;
        this.#error(audit, `${why} (job ${audit.jobId})`);
        return;
      }
      const started = performance.now();
      const manifest = parseManifest(audit.manifest);
      const digest = await digestTar(await store.readRetrieval(job, { signal }), { signal });
      const observed = digest.entries
        .filter((e) => e.type !== "5")
        .map((e) => ({ name: e.name, size: e.size, md5: e.md5 }));
      const findings = compareEntries(manifest, observed, digest.unreadable);
      const outcome = findings.length === 0 ? "verified" : "failed";
      if (!results.finish(audit.auditId, { state: outcome, findings }, this.#now())) return;
      this.#metrics.timing(`${METRIC}.verify_seconds`, (performance.now() - started) / 1000);
      this.#metrics.count(`${METRIC}.bytes`, digest.bytes);
      this.#metrics.count(`${METRIC}.${outcome}`);
      if (findings.length > 0) this.#metrics.count(`${METRIC}.findings`, findings.length);
      for (const f of findings) this.#metrics.count(`${METRIC}.finding.${f.kind}`);
      this.#log(
        findings.length === 0
          ? `audit ${audit.auditId}: archive ${audit.archiveId} verified ` +
            `(${observed.length} entries, ${digest.bytes} bytes)`
          : `audit ${audit.auditId}: archive ${audit.archiveId} FAILED: ` +
            findings.map((f) => `${f.kind}${f.name === undefined ? "" : ` "${f.name}"`}`)
              .join(", "),
      );
      if (findings.length > 0) await this.#mail(results.get(audit.auditId)!, "result");
    } catch (e) {
      if (signal.aborted) return;
      if (
        e instanceof PortError &&
        ["ResourceNotFoundException", "RetrievalExpired", "RetrievalFailed"].includes(e.code)
      ) {
        this.#error(audit, `${errorMessage(e)} [${e.code}]`);
        return;
      }
      this.#transient(audit, `${errorMessage(e)} [${errorCode(e)}]`);
    }
  }

  #transient(audit: AuditRecord, note: string): void {
    this.#log(`audit ${audit.auditId}: will try again: ${note}`);
    this.#metrics.count(`${METRIC}.check_errors`);
    this.#o.results.note(audit.auditId, note);
  }

  #error(audit: AuditRecord, note: string): void {
    if (!this.#o.results.finish(audit.auditId, { state: "error", note }, this.#now())) return;
    this.#metrics.count(`${METRIC}.error`);
    this.#log(`audit ${audit.auditId}: archive ${audit.archiveId} cannot be checked: ${note}`);
  }

  async #maybeOverdue(audit: AuditRecord): Promise<void> {
    if (audit.overdueMailAt !== null) return;
    if (this.#now() - audit.receivedAt < this.#o.readyTimeoutMs) return;
    this.#log(
      `audit ${audit.auditId}: the retrieval of archive ${audit.archiveId} is not ready after ${
        formatDuration(this.#o.readyTimeoutMs)
      }`,
    );
    this.#metrics.count(`${METRIC}.overdue`);
    await this.#mail(audit, "overdue");
  }

  /** Sends the mail; records it sent. A failed send is retried at the next pass. */
  async #mail(audit: AuditRecord, kind: "result" | "overdue"): Promise<void> {
    const results = this.#o.results;
    const mailer = this.#o.mailer;
    const now = this.#now();
    if (mailer === null) {
      // Nobody to tell: the result is logged and listed; do not keep it owed.
      if (kind === "overdue") results.overdueMailSent(audit.auditId, now);
      else results.mailSent(audit.auditId, now);
      return;
    }
    const mail = auditMail(audit, kind, {
      verifierUrl: this.url,
      readyTimeoutMs: this.#o.readyTimeoutMs,
    });
    try {
      await mailer.send(mail);
    } catch (e) {
      this.#metrics.count(`${METRIC}.mail_failures`);
      this.#log(`audit ${audit.auditId}: mail not sent, will try again: ${errorMessage(e)}`);
      return;
    }
    if (kind === "overdue") results.overdueMailSent(audit.auditId, now);
    else results.mailSent(audit.auditId, now);
    this.#metrics.count(`${METRIC}.mails`);
    this.#log(`audit ${audit.auditId}: mail sent through ${mailer.location}: ${mail.subject}`);
  }

  #store(location: string): Promise<ColdStore> {
    let s = this.#stores.get(location);
    if (s === undefined) {
      const open = this.#o.openStore;
      if (open === undefined) {
        return Promise.reject(new Error(`store ${location} is not one this verifier serves`));
      }
      s = open(location);
      // A store that failed to open is tried again next time.
      s.catch(() => this.#stores.delete(location));
      this.#stores.set(location, s);
      this.#opened.push(s);
    }
    return s;
  }

  // -------------------------------------------------------------------------
  // HTTP

  async #answer(request: Request): Promise<Response> {
    const url = new URL(request.url);
    const path = url.pathname;
    try {
      if (path === "/health") {
        if (request.method !== "GET" && request.method !== "HEAD") return notAllowed("GET");
        return json(200, {
          status: this.#stop.signal.aborted ? "stopping" : "running",
          program: "coldpack-audit-verifier",
          uptimeSeconds: (Date.now() - this.#startedAt) / 1000,
          ...this.#o.results.counts(),
        });
      }
      const routed = path === "/manifests" || path === "/audits" || path.startsWith("/audits/");
      if (!routed) {
        return json(404, { error: `Not found: ${path} (try /manifests, /audits, /health)` });
      }
      if (!this.#authorized(request)) {
        this.#metrics.count(`${METRIC}.unauthorized`);
        await request.body?.cancel().catch(() => {});
        return json(401, { error: "Unauthorized: send Authorization: Bearer <token>" }, {
          "www-authenticate": 'Bearer realm="coldpack-audit-verifier"',
        });
      }
      if (path === "/manifests") {
        if (request.method !== "POST") return notAllowed("POST");
        return await this.#postManifest(request);
      }
      if (request.method !== "GET" && request.method !== "HEAD") return notAllowed("GET");
      if (path === "/audits") return this.#listAudits(url);
      const id = decodeURIComponent(path.slice("/audits/".length));
      const audit = this.#o.results.get(id);
      if (audit === null) return json(404, { error: `No audit "${id}"` });
      return json(200, view(audit, true));
    } catch (e) {
      this.#log(`${request.method} ${path}: ${errorMessage(e)}`);
      return json(500, { error: `Cannot answer ${request.method} ${path}: ${errorMessage(e)}` });
    }
  }

  #authorized(request: Request): boolean {
    const h = request.headers.get("authorization") ?? "";
    const m = /^Bearer\s+(\S+)\s*$/i.exec(h);
    if (m === null) return false;
    // Equal-length digests: timingSafeEqual does not leak the token's length or prefix.
    return timingSafeEqual(sha256(m[1]!), this.#tokenHash);
  }

  async #postManifest(request: Request): Promise<Response> {
    const length = Number(request.headers.get("content-length") ?? "0");
    if (length > MAX_MANIFEST_BYTES) {
      await request.body?.cancel().catch(() => {});
      return json(413, {
        error: `Manifest too large: ${length} bytes (limit ${MAX_MANIFEST_BYTES})`,
      });
    }
    const bytes = await readBody(request, MAX_MANIFEST_BYTES);
    if (bytes === null) {
      return json(413, { error: `Manifest too large: over ${MAX_MANIFEST_BYTES} bytes` });
    }
    let text: string;
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      return this.#malformed("the body is not UTF-8");
    }
    let manifest: AuditManifest;
    try {
      manifest = parseManifest(text);
    } catch (e) {
      return this.#malformed(errorMessage(e));
    }
    if (this.#o.openStore === undefined && !this.#stores.has(manifest.store)) {
      return this.#malformed(
        `store ${manifest.store} is not one this verifier serves (--store: ${
          [...this.#stores.keys()].join(", ") || "none"
        })`,
      );
    }
    const digest = manifestDigest(bytes);
    const existing = this.#o.results.add({
      auditId: manifest.auditId,
      digest,
      manifest: text,
      archiveId: manifest.archiveId,
      store: manifest.store,
      remoteId: manifest.remoteId,
      jobId: manifest.jobId,
      receivedAt: this.#now(),
    });
    if (existing !== null) {
      if (existing.digest !== digest) {
        return json(409, {
          error:
            `Audit ${manifest.auditId} already has another manifest (digest ${existing.digest})`,
        });
      }
      return json(200, view(existing, false));
    }
    this.#metrics.count(`${METRIC}.manifests`);
    this.#log(
      `audit ${manifest.auditId}: manifest for archive ${manifest.archiveId} ` +
        `(${manifest.entries.length} entries), retrieval job ${manifest.jobId} at ${manifest.store}`,
    );
    this.wake();
    return json(202, { auditId: manifest.auditId, state: "waiting", digest });
  }

  #malformed(reason: string): Response {
    this.#metrics.count(`${METRIC}.malformed`);
    this.#log(`manifest refused: ${reason}`);
    return json(400, { error: `Malformed manifest: ${reason}` });
  }

  #listAudits(url: URL): Response {
    const limitText = url.searchParams.get("limit") ?? "100";
    const limit = Number(limitText);
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 10_000) {
      return json(400, { error: `Invalid limit "${limitText}": 1 to 10000` });
    }
    const states = url.searchParams.getAll("state").flatMap((s) => s.split(","));
    for (const s of states) {
      if (!["waiting", "verified", "failed", "error"].includes(s)) {
        return json(400, { error: `Invalid state "${s}": waiting, verified, failed or error` });
      }
    }
    const audits = this.#o.results.list({ limit, states: states as AuditState[] });
    return json(200, { audits: audits.map((a) => view(a, false)) });
  }
}

/** An audit as the API shows it (without the manifest text). */
function view(a: AuditRecord, entries: boolean): Record<string, unknown> {
  let count: number | undefined;
  if (entries) {
    try {
      count = parseManifest(a.manifest).entries.length;
    } catch {
      count = undefined;
    }
  }
  const findings: readonly RecordedFinding[] | null = a.findings;
  return {
    auditId: a.auditId,
    archiveId: a.archiveId,
    store: a.store,
    remoteId: a.remoteId,
    jobId: a.jobId,
    digest: a.digest,
    state: a.state,
    findings,
    receivedAt: a.receivedAt,
    checkedAt: a.checkedAt,
    note: a.note,
    mailSentAt: a.mailSentAt,
    overdueMailAt: a.overdueMailAt,
    ...(count === undefined ? {} : { entries: count }),
  };
}

function sha256(s: string): Uint8Array {
  return createHash("sha256").update(s).digest();
}

async function readBody(request: Request, max: number): Promise<Uint8Array | null> {
  if (request.body === null) return new Uint8Array(0);
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const c of request.body) {
    n += c.length;
    if (n > max) return null;
    chunks.push(c);
  }
  const out = new Uint8Array(n);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

function json(status: number, body: unknown, headers: Record<string, string> = {}): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

function notAllowed(allow: string): Response {
  return json(405, { error: `Method not allowed (only ${allow})` }, { allow });
}
