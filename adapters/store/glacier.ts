/**
 * The Amazon Glacier vault cold store, `glacier://REGION/VAULT`, on
 * `@aws-sdk/client-glacier` (PROTOCOLS.md section 2).
 *
 * - put: one UploadArchive below `multipartThreshold` (the body is read
 *   twice: once to compute the payload's SHA-256 that SigV4 needs up front,
 *   once to stream it), multipart above it (one part buffered per
 *   concurrent slot, parts retried one by one, the upload aborted on any
 *   failure). Glacier's answered tree hash is compared with ours.
 * - retrievals: InitiateJob `archive-retrieval` with a megabyte-aligned
 *   `RetrievalByteRange`; DescribeJob for the state; GetJobOutput streams the
 *   bytes, checking their count and, when Glacier sends one, their tree hash.
 * - list: an `inventory-retrieval` job (reused when a recent one exists,
 *   else started and polled), its JSON parsed as it streams.
 *
 * Memory: a single upload holds no copy of the body; a multipart upload at
 * most `partConcurrency` parts of `partSize`; inventories and retrieved
 * bytes stream.
 *
 * No retries here (the SDK client makes one attempt per call) except for
 * multipart parts: the `withRetryStore` wrapper of `core/retry.ts` retries
 * whole calls on retryable `PortError`s. Every call honours its `signal`.
 * @module
 */

import { createHash } from "node:crypto";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  DeleteArchiveCommand,
  DescribeJobCommand,
  GetJobOutputCommand,
  GlacierClient,
  type GlacierJobDescription,
  InitiateJobCommand,
  InitiateMultipartUploadCommand,
  ListJobsCommand,
  UploadArchiveCommand,
  UploadMultipartPartCommand,
} from "@aws-sdk/client-glacier";
import { systemClock } from "../clock.ts";
import { ArchiveMismatchError, PortError } from "../../core/errors.ts";
import { hex, type JobId, jobId, type RemoteArchiveId, remoteArchiveId } from "../../core/ids.ts";
import {
  type ByteRange,
  type Clock,
  type ColdStore,
  type PutArchive,
  type PutResult,
  type RetrievalJob,
  type RetrievalState,
  type StoreCapabilities,
  type StoredArchive,
  type Tier,
  TIERS,
} from "../../core/ports.ts";
import type { RetryPolicy } from "../../core/retry.ts";
import { parseStoreUrl } from "../../core/store_url.ts";
import { combineTreeHashes, MIB, TreeHasher } from "../../core/tree_hash.ts";
import { type BodyFacts, digest, streamedBody } from "./_body.ts";
import { checkDescription } from "../../core/manifest.ts";
import { readRange, retrievalRangeProblem } from "../../core/ranges.ts";
import { freshConnectionAgents, NETWORK_CODES, QUIET_LOGGER } from "./_aws.ts";
import { type Part, uploadParts } from "./_parts.ts";

const SHA256_HEX = /^[0-9a-f]{64}$/;

const GIB = 1024 * MIB;
const HOUR = 3_600_000;
/** Glacier keeps a completed job's output at least this long. */
const JOB_TTL_MS = 24 * HOUR;
const MAX_PARTS = 10_000;
const MAX_SINGLE_UPLOAD = 4 * GIB;
/** How long a clean-up request (abort an upload, delete a mismatched archive) may take. */
const CLEANUP_TIMEOUT_MS = 30_000;

/** Service codes worth another try (besides any 5xx, 408 and 429). */
const RETRYABLE_CODES = new Set([
  "ThrottlingException",
  "RequestTimeoutException",
  "ServiceUnavailableException",
  "InsufficientCapacityException",
  "RequestLimitExceeded",
  "TooManyRequestsException",
  "SlowDown",
  "InternalFailure",
  "InternalError",
]);

/** Options for {@linkcode GlacierStore}. */
export interface GlacierStoreOptions {
  /**
   * The service endpoint, e.g. a test double's `http://127.0.0.1:PORT`.
   * Default: the SDK's chain (`AWS_ENDPOINT_URL_GLACIER`, `AWS_ENDPOINT_URL`,
   * config files, else the region's public endpoint).
   */
  readonly endpoint?: string;
  /** Credentials. Default: the SDK's chain (environment, profiles, instance roles). */
  readonly credentials?: {
    readonly accessKeyId: string;
    readonly secretAccessKey: string;
    readonly sessionToken?: string;
  };
  /** SNS topic ARN set on every archive-retrieval job. Default none. */
  readonly snsTopic?: string;
  /** Archives above this many bytes go multipart. Default 64 MiB; at most 4 GiB. */
  readonly multipartThreshold?: number;
  /**
   * Multipart part size: 1 MiB x a power of two. Default 8 MiB, doubled as
   * needed so that an archive has at most 10,000 parts.
   */
  readonly partSize?: number;
  /** Parts in flight at once (each buffered in memory). Default 4. */
  readonly partConcurrency?: number;
  /** How one multipart part is retried. Default 5 attempts, 0.5 s doubling up to 20 s. */
  readonly retry?: RetryPolicy;
  /** How often `list` asks whether its inventory job is done, ms. Default 10 minutes. */
  readonly inventoryPollMs?: number;
  /** How old an existing inventory job `list` may reuse, ms. Default 12 hours. */
  readonly inventoryMaxAgeMs?: number;
  /** Time for inventory polling and job ages. Default the system clock. */
  readonly clock?: Clock;
}

/** The vault a {@linkcode GlacierStore} writes to. */
export interface GlacierVault {
  /** AWS region, e.g. `eu-west-1`. */
  readonly region: string;
  /** Vault name. */
  readonly vault: string;
}

/** Hashes of a body the adapter computed itself, handed to the SDK instead of its own. */
/**
 * A {@linkcode ColdStore} on an Amazon Glacier vault.
 *
 * Errors: every service error becomes a `PortError` with Glacier's code
 * (`ResourceNotFoundException`, `InvalidParameterValueException`,
 * `ThrottlingException`...; a connection failure its system code such as
 * `ECONNRESET`), retryable for throttling, timeouts, 5xx and connection
 * failures. Its message names the store, the operation and the code:
 * `glacier://us-east-1/v: UploadArchive: ThrottlingException: Rate exceeded`.
 * `ArchiveMismatchError` when a body's size or tree hash differs from what the
 * archive declares, or Glacier answers another tree hash (the archive it
 * stored is then deleted). `RangeError` for a bad description or read range.
 *
 * Glacier cannot tell a job it never issued from one that expired, so
 * `retrieval` of either answers `expired` (with the job id only: the
 * remote id is `unknown` and the times 0) and `readRetrieval` rejects with
 * `RetrievalExpired`.
 *
 * `list` reads Glacier's inventory, which Glacier refreshes about once a
 * day: archives put or deleted since are not in it. It reuses an inventory
 * job made after this store's last put or delete and at most
 * `inventoryMaxAgeMs` old; else it starts one (typically 4 hours) and polls.
 *
 * @example
 * ```ts
 * const store = new GlacierStore({ region: "eu-west-1", vault: "ugc" }, { partConcurrency: 4 });
 * const put = await store.put({ archiveId, size, treeHash, description, body });
 * const job = await store.startRetrieval(put.remoteId, { description: "r1", tier: "Bulk" });
 * await store.close();
 * ```
 */
export class GlacierStore implements ColdStore {
  /** `glacier://REGION/VAULT`. */
  readonly location: string;
  readonly capabilities: StoreCapabilities = { rangedRetrieval: true, rangeAlignment: MIB };
  readonly #vault: string;
  readonly #client: GlacierClient;
  readonly #snsTopic: string | null;
  readonly #threshold: number;
  readonly #partSize: number;
  readonly #concurrency: number;
  readonly #retry: RetryPolicy;
  readonly #pollMs: number;
  readonly #maxAgeMs: number;
  readonly #clock: Clock;
  /** Hashes of bodies in flight, by body object, for the SDK's checksum and length hooks. */
  readonly #facts = new WeakMap<object, BodyFacts>();
  /**
   * Descriptions of succeeded jobs, which no longer change: a restore reads
   * many files from one job, and each read needs the job's output length
   * and tree hash, not another DescribeJob. Bounded; an entry whose job has
   * gone is dropped when GetJobOutput says so.
   */
  readonly #succeeded = new Map<JobId, GlacierJobDescription>();
  /** When this store last put or deleted an archive (its clock), so stale inventories are not reused. */
  #lastChange = Number.NEGATIVE_INFINITY;

  /**
   * A store on `where.vault` in `where.region` (as parsed from
   * `glacier://REGION/VAULT`). Nothing is sent until the first call.
   *
   * @throws {RangeError} for an option out of range
   */
  constructor(where: GlacierVault, options: GlacierStoreOptions = {}) {
    this.#vault = where.vault;
    this.location = `glacier://${where.region}/${where.vault}`;
    this.#snsTopic = options.snsTopic ?? null;
    this.#threshold = options.multipartThreshold ?? 64 * MIB;
    if (
      !Number.isSafeInteger(this.#threshold) || this.#threshold < 1 ||
      this.#threshold > MAX_SINGLE_UPLOAD
    ) {
      throw new RangeError(
        `Invalid multipart threshold for ${this.location}: ${this.#threshold} (1 byte to 4 GiB)`,
      );
    }
    this.#partSize = options.partSize ?? 8 * MIB;
    if (!isPartSize(this.#partSize)) {
      throw new RangeError(
        `Invalid part size for ${this.location}: ${this.#partSize} (1 MiB x a power of two, at most 4 GiB)`,
      );
    }
    this.#concurrency = options.partConcurrency ?? 4;
    if (!Number.isSafeInteger(this.#concurrency) || this.#concurrency < 1) {
      throw new RangeError(
        `Invalid part concurrency for ${this.location}: ${this.#concurrency} (at least 1)`,
      );
    }
    this.#pollMs = options.inventoryPollMs ?? 10 * 60_000;
    this.#maxAgeMs = options.inventoryMaxAgeMs ?? 12 * HOUR;
    for (const [name, value] of Object.entries({ poll: this.#pollMs, age: this.#maxAgeMs })) {
      if (!(value > 0) || !Number.isFinite(value)) {
        throw new RangeError(`Invalid inventory ${name} for ${this.location}: ${value} ms`);
      }
    }
    this.#clock = options.clock ?? systemClock;
    this.#retry = options.retry ?? { attempts: 5, baseMs: 500, maxMs: 20_000, clock: this.#clock };
    this.#client = new GlacierClient({
      region: where.region,
      maxAttempts: 1,
      ...(options.endpoint === undefined ? {} : { endpoint: options.endpoint }),
      ...(options.credentials === undefined ? {} : { credentials: { ...options.credentials } }),
      bodyChecksumGenerator: (request) => Promise.resolve(this.#checksums(request.body)),
      bodyLengthChecker: (body: unknown) => this.#bodyLength(body),
      // Uploads stream: one connection per request (see freshConnectionAgents).
      requestHandler: freshConnectionAgents(),
      logger: QUIET_LOGGER,
    });
  }

  /**
   * Opens the store a `glacier://REGION/VAULT[?sns-topic=ARN]` URL names
   * (the URL's topic unless `options.snsTopic` is given). Makes no request:
   * a missing vault shows at the first call as a `PortError`
   * `ResourceNotFoundException` naming it.
   *
   * Rejects with `SyntaxError` for a URL that is not a `glacier://` store
   * URL and `RangeError` for an option out of range.
   */
  static open(url: string, options: GlacierStoreOptions = {}): Promise<GlacierStore> {
    // A promise's executor turns a throw into a rejection.
    return new Promise((resolve) => {
      const spec = parseStoreUrl(url);
      if (spec.kind !== "glacier") {
        throw new SyntaxError(
          `Invalid Glacier store URL "${url}": expected glacier://REGION/VAULT`,
        );
      }
      const topic = options.snsTopic ?? spec.snsTopic ?? undefined;
      resolve(
        new GlacierStore(spec, { ...options, ...(topic === undefined ? {} : { snsTopic: topic }) }),
      );
    });
  }

  /**
   * Stores an archive: one UploadArchive up to `multipartThreshold` bytes,
   * else a multipart upload. The body's size and tree hash are checked
   * against `archive` before Glacier is asked to keep it, and Glacier's
   * answer against ours after.
   */
  async put(archive: PutArchive, options: { signal?: AbortSignal } = {}): Promise<PutResult> {
    const { signal } = options;
    const what = `archive ${archive.archiveId}`;
    checkDescription(archive.description, what);
    if (!Number.isSafeInteger(archive.size) || archive.size < 1) {
      throw new RangeError(
        `Invalid archive size for ${what}: ${archive.size} (Glacier keeps 1 byte or more)`,
      );
    }
    signal?.throwIfAborted();
    const result = archive.size <= this.#threshold
      ? await this.#putSingle(archive, signal)
      : await this.#putMultipart(archive, signal);
    this.#lastChange = this.#clock.now();
    return result;
  }

  async #putSingle(archive: PutArchive, signal: AbortSignal | undefined): Promise<PutResult> {
    // The packer's SHA-256 spares a reading; Glacier checks it and the tree hash.
    const facts = archive.sha256 !== undefined && SHA256_HEX.test(archive.sha256)
      ? { length: archive.size, sha256: archive.sha256, treeHash: archive.treeHash }
      : await digest(archive.body(), signal);
    this.#checkBody(archive, facts.length, facts.treeHash);
    // Second pass: stream the same bytes (SigV4 needed their SHA-256 before the
    // first byte). A body that now gives another count breaks the request off.
    const mismatch = (n: number) =>
      new ArchiveMismatchError(
        `Cannot put archive ${archive.archiveId} to ${this.location}: the body gave ${n} bytes on its second reading, ${archive.size} on its first`,
      );
    const upload = streamedBody(archive.body(), signal, {
      onChunk: (_, n) => {
        if (n > archive.size) throw mismatch(n);
      },
      onEnd: (n) => {
        if (n !== archive.size) throw mismatch(n);
      },
    });
    this.#facts.set(upload.body, facts);
    let out;
    try {
      out = await this.#client.send(
        new UploadArchiveCommand({
          accountId: "-",
          vaultName: this.#vault,
          checksum: facts.treeHash,
          body: upload.body,
          ...(archive.description === "" ? {} : { archiveDescription: archive.description }),
        }),
        { abortSignal: upload.signal },
      );
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      const failure = upload.failure();
      if (failure !== null) throw failure;
      throw this.#error(`UploadArchive ${archive.archiveId}`, e);
    } finally {
      upload.body.destroy();
    }
    return await this.#confirm(archive, facts.treeHash, out.archiveId, out.checksum);
  }

  async #putMultipart(archive: PutArchive, signal: AbortSignal | undefined): Promise<PutResult> {
    const partSize = partSizeFor(archive.size, this.#partSize);
    const init = await this.#call(
      `InitiateMultipartUpload ${archive.archiveId}`,
      signal,
      (o) =>
        this.#client.send(
          new InitiateMultipartUploadCommand({
            accountId: "-",
            vaultName: this.#vault,
            partSize: String(partSize),
            ...(archive.description === "" ? {} : { archiveDescription: archive.description }),
          }),
          o,
        ),
    );
    const uploadId = init.uploadId;
    if (!uploadId) {
      throw new PortError(
        `${this.location}: InitiateMultipartUpload ${archive.archiveId}: no upload id in the answer`,
        { code: "MalformedResponse", retryable: true },
      );
    }
    let completed = false;
    try {
      const sent = await this.#uploadParts(uploadId, archive, partSize, signal);
      this.#checkBody(archive, sent.length, sent.treeHash);
      const out = await this.#call(
        `CompleteMultipartUpload ${archive.archiveId}`,
        signal,
        (o) =>
          this.#client.send(
            new CompleteMultipartUploadCommand({
              accountId: "-",
              vaultName: this.#vault,
              uploadId,
              archiveSize: String(sent.length),
              checksum: sent.treeHash,
            }),
            o,
          ),
      );
      completed = true;
      return await this.#confirm(archive, sent.treeHash, out.archiveId, out.checksum);
    } finally {
      if (!completed) await this.#abortUpload(uploadId);
    }
  }

  /**
   * Sends the body in parts (see `uploadParts`), each with its tree hash,
   * which Glacier must answer back; resolves to the byte count and, when it
   * is the archive's size, the tree hash of the whole (else `""`: the
   * caller reports the mismatch). A body longer than the archive stops at
   * once.
   */
  async #uploadParts(
    uploadId: string,
    archive: PutArchive,
    partSize: number,
    signal: AbortSignal | undefined,
  ): Promise<{ length: number; treeHash: string }> {
    const { results, bytes } = await uploadParts({
      body: archive.body(),
      partSize,
      concurrency: this.#concurrency,
      retry: this.#retry,
      signal,
      onChunk: (_, n) => {
        if (n > archive.size) throw this.#sizeMismatch(archive, `at least ${n}`);
      },
      send: (part, partSignal) => this.#uploadPart(uploadId, archive, part, partSignal),
    });
    if (bytes !== archive.size) return { length: bytes, treeHash: "" };
    return { length: bytes, treeHash: hex(combineTreeHashes(results)) };
  }

  /** Uploads one part, one try; resolves to its raw tree hash. */
  async #uploadPart(
    uploadId: string,
    archive: PutArchive,
    part: Part,
    signal: AbortSignal,
  ): Promise<Uint8Array> {
    const data = part.bytes;
    const hasher = new TreeHasher();
    hasher.update(data);
    const raw = hasher.digestBytes();
    const facts: BodyFacts = {
      length: data.length,
      sha256: createHash("sha256").update(data).digest("hex"),
      treeHash: hex(raw),
    };
    this.#facts.set(data, facts);
    const range = `bytes ${part.offset}-${part.offset + data.length - 1}/*`;
    const what = `UploadMultipartPart ${archive.archiveId} ${range}`;
    const out = await this.#call(what, signal, (o) =>
      this.#client.send(
        new UploadMultipartPartCommand({
          accountId: "-",
          vaultName: this.#vault,
          uploadId,
          range,
          checksum: facts.treeHash,
          body: data,
        }),
        o,
      ));
    if (out.checksum !== facts.treeHash) {
      // Glacier says it got other bytes: sending the range again (a retry) overwrites them.
      throw new PortError(
        `${this.location}: ${what}: Glacier answered tree hash ${out.checksum}, not ${facts.treeHash}`,
        { code: "PartTreeHashMismatch", retryable: true },
      );
    }
    return raw;
  }

  /** Aborts a multipart upload, best effort: Glacier drops an idle one after 24 hours anyway. */
  async #abortUpload(uploadId: string): Promise<void> {
    await this.#cleanup((o) =>
      this.#client.send(
        new AbortMultipartUploadCommand({ accountId: "-", vaultName: this.#vault, uploadId }),
        o,
      )
    ).catch(() => {});
  }

  /**
   * A clean-up request made after the caller's call failed or was aborted:
   * not tied to the caller's signal, but given up after 30 s of real time.
   */
  async #cleanup<T>(send: (options: { abortSignal: AbortSignal }) => Promise<T>): Promise<T> {
    const timer = new AbortController();
    const done = new AbortController();
    systemClock.sleep(CLEANUP_TIMEOUT_MS, done.signal).then(() => timer.abort(), () => {});
    try {
      return await send({ abortSignal: timer.signal });
    } finally {
      done.abort();
    }
  }

  /** Throws `ArchiveMismatchError` unless what was read is what `archive` declares. */
  #checkBody(archive: PutArchive, length: number, treeHash: string): void {
    if (length !== archive.size) throw this.#sizeMismatch(archive, String(length));
    if (treeHash !== archive.treeHash) {
      throw new ArchiveMismatchError(
        `Cannot put archive ${archive.archiveId} to ${this.location}: the body's tree hash is ${treeHash} but the archive declares ${archive.treeHash}`,
      );
    }
  }

  /** The body has `bytes` (a count, or `at least N`) bytes, not the archive's size. */
  #sizeMismatch(archive: PutArchive, bytes: string): ArchiveMismatchError {
    return new ArchiveMismatchError(
      `Cannot put archive ${archive.archiveId} to ${this.location}: the body has ${bytes} bytes but the archive declares ${archive.size}`,
    );
  }

  /** Checks Glacier's answer; an archive it stored with another tree hash is deleted again. */
  async #confirm(
    archive: PutArchive,
    sent: string,
    remote: string | undefined,
    answered: string | undefined,
  ): Promise<PutResult> {
    if (!remote) {
      throw new PortError(
        `${this.location}: put ${archive.archiveId}: Glacier answered no archive id`,
        { code: "MalformedResponse", retryable: true },
      );
    }
    if (answered !== sent) {
      let fate = "it was deleted again";
      try {
        await this.#cleanup((o) =>
          this.#client.send(
            new DeleteArchiveCommand({ accountId: "-", vaultName: this.#vault, archiveId: remote }),
            o,
          )
        );
      } catch (e) {
        fate = `deleting it failed (${errorText(e)}): an orphan to remove`;
      }
      throw new ArchiveMismatchError(
        `Cannot put archive ${archive.archiveId} to ${this.location}: Glacier answered tree hash ${answered} for ${remote}, but the body's tree hash is ${sent}; ${fate}`,
      );
    }
    return { remoteId: remoteArchiveId(remote), size: archive.size, treeHash: sent };
  }

  /**
   * Starts an archive-retrieval job for the whole archive or `range`. The
   * range's start must be a multiple of 1 MiB, checked here; its end + 1 a
   * multiple of 1 MiB or the archive size, checked by Glacier. Both answer a
   * `PortError` coded `InvalidParameterValueException`.
   */
  async startRetrieval(
    remoteId: RemoteArchiveId,
    options: {
      readonly range?: ByteRange;
      readonly tier?: Tier;
      readonly description: string;
      readonly signal?: AbortSignal;
    },
  ): Promise<RetrievalJob> {
    const { signal, range } = options;
    checkDescription(options.description, "retrieval");
    const tier = options.tier ?? "Standard";
    if (!TIERS.includes(tier)) {
      throw new RangeError(`Invalid retrieval tier "${tier}": must be Expedited, Standard or Bulk`);
    }
    if (range !== undefined) this.#checkRange(range, remoteId);
    signal?.throwIfAborted();
    const out = await this.#call(
      `InitiateJob archive ${remoteId}`,
      signal,
      (o) =>
        this.#client.send(
          new InitiateJobCommand({
            accountId: "-",
            vaultName: this.#vault,
            jobParameters: {
              Type: "archive-retrieval",
              ArchiveId: remoteId,
              Description: options.description,
              Tier: tier,
              ...(range === undefined ? {} : { RetrievalByteRange: `${range.start}-${range.end}` }),
              ...(this.#snsTopic === null ? {} : { SNSTopic: this.#snsTopic }),
            },
          }),
          o,
        ),
    );
    if (!out.jobId) {
      throw new PortError(`${this.location}: InitiateJob archive ${remoteId}: no job id`, {
        code: "MalformedResponse",
        retryable: false,
      });
    }
    const id = jobId(out.jobId);
    const requested = range === undefined ? null : { start: range.start, end: range.end };
    try {
      const described = await this.#describe(id, signal);
      if (described !== null) return { ...toJob(described, id), range: requested };
    } catch {
      if (signal?.aborted) throw signal.reason;
      // The job exists: report it as started rather than fail (a retry would start another).
    }
    return {
      jobId: id,
      remoteId,
      range: requested,
      state: "in-progress",
      treeHash: null,
      description: options.description,
      startedAt: this.#clock.now(),
      completedAt: null,
      expiresAt: null,
    };
  }

  #checkRange(range: ByteRange, remoteId: RemoteArchiveId): void {
    // The archive's size is Glacier's to know: only the start is checked here.
    const why = retrievalRangeProblem(range, null);
    if (why !== null) {
      throw new PortError(
        `${this.location}: InitiateJob archive ${remoteId}: InvalidParameterValueException: invalid retrieval range ${range.start}-${range.end}: ${why}`,
        { code: "InvalidParameterValueException", retryable: false },
      );
    }
  }

  /**
   * The job's state from DescribeJob. A job Glacier does not know (expired
   * 24 hours after completion, or never issued) is `expired`.
   */
  async retrieval(id: JobId, options: { signal?: AbortSignal } = {}): Promise<RetrievalJob> {
    const described = await this.#describe(id, options.signal);
    if (described === null) {
      return {
        jobId: id,
        remoteId: remoteArchiveId("unknown"),
        range: null,
        state: "expired",
        treeHash: null,
        description: "",
        startedAt: 0,
        completedAt: null,
        expiresAt: null,
        failure: `${this.location} does not know job ${id}: it expired or was never issued`,
      };
    }
    return toJob(described, id);
  }

  /**
   * Streams retrieved bytes (all, or `range` relative to the retrieved
   * range). The stream errors at its end when fewer bytes came than
   * expected (`PortError` `TruncatedBody`, retryable), more came
   * (`ArchiveMismatchError`), or their tree hash differs from the one
   * Glacier sent for them (`ArchiveMismatchError`).
   */
  async readRetrieval(
    id: JobId,
    options: { readonly range?: ByteRange; readonly signal?: AbortSignal } = {},
  ): Promise<ReadableStream<Uint8Array>> {
    const { signal } = options;
    const described = this.#succeeded.get(id) ?? await this.#describe(id, signal);
    if (described === null) {
      throw new PortError(
        `Cannot read retrieval ${id} from ${this.location}: Glacier no longer knows the job (its output expires 24 hours after completion)`,
        { code: "RetrievalExpired", retryable: false },
      );
    }
    const job = toJob(described, id);
    if (job.state !== "ready") {
      const [code, why] = job.state === "in-progress"
        ? ["RetrievalNotReady", "it is in progress"]
        : ["RetrievalFailed", `it failed: ${job.failure ?? "no reason given"}`];
      throw new PortError(`Cannot read retrieval ${id} from ${this.location}: ${why}`, {
        code,
        retryable: false,
      });
    }
    const length = outputLength(described);
    const { start, end } = readRange(options.range, length, `retrieval ${id}`);
    const whole = start === 0 && end === length - 1;
    const what = `GetJobOutput ${id}${whole ? "" : ` bytes ${start}-${end}`}`;
    let out;
    try {
      out = await this.#call(what, signal, (o) =>
        this.#client.send(
          new GetJobOutputCommand({
            accountId: "-",
            vaultName: this.#vault,
            jobId: id,
            ...(whole ? {} : { range: `bytes=${start}-${end}` }),
          }),
          o,
        ));
    } catch (e) {
      if (e instanceof PortError && e.code === "ResourceNotFoundException") {
        this.#succeeded.delete(id);
        throw new PortError(
          `Cannot read retrieval ${id} from ${this.location}: Glacier no longer knows the job (${e.message})`,
          { code: "RetrievalExpired", retryable: false, cause: e },
        );
      }
      throw e;
    }
    const expectedHash = out.checksum ?? (whole ? job.treeHash : null);
    return checkedStream(out.body as unknown as NodeBody, {
      expected: end + 1 - start,
      treeHash: expectedHash ?? null,
      what: `${this.location}: ${what}`,
      signal,
    });
  }

  /**
   * Lists the vault's inventory: an inventory-retrieval job's JSON, parsed
   * one archive at a time as it streams (memory stays small whatever the
   * vault's size). Starting a job takes hours at Glacier; this waits,
   * asking every `inventoryPollMs`, until the job is done or `signal` aborts.
   */
  async *list(options: { signal?: AbortSignal } = {}): AsyncIterable<StoredArchive> {
    const { signal } = options;
    const id = await this.#inventoryJob(signal);
    const out = await this.#call(`GetJobOutput inventory ${id}`, signal, (o) =>
      this.#client.send(
        new GetJobOutputCommand({ accountId: "-", vaultName: this.#vault, jobId: id }),
        o,
      ));
    const body = out.body as unknown as NodeBody;
    yield* parseInventory(body, `${this.location}: inventory ${id}`, signal);
  }

  /** A succeeded inventory job to read: a fresh enough one if listed, else a new one, awaited. */
  async #inventoryJob(signal: AbortSignal | undefined): Promise<JobId> {
    const now = this.#clock.now();
    const oldest = Math.max(now - this.#maxAgeMs, this.#lastChange);
    let done: GlacierJobDescription | null = null;
    let running: GlacierJobDescription | null = null;
    let marker: string | undefined;
    do {
      const page = await this.#call("ListJobs", signal, (o) =>
        this.#client.send(
          new ListJobsCommand({
            accountId: "-",
            vaultName: this.#vault,
            ...(marker === undefined ? {} : { marker }),
          }),
          o,
        ));
      for (const j of page.JobList ?? []) {
        if (j.Action !== "InventoryRetrieval" || !j.JobId) continue;
        if ((j.InventoryRetrievalParameters?.Format ?? "JSON") !== "JSON") continue;
        const created = Date.parse(j.CreationDate ?? "");
        if (!(created > oldest)) continue;
        const newer = (b: GlacierJobDescription | null) =>
          b === null || created > Date.parse(b.CreationDate ?? "");
        if (j.StatusCode === "Succeeded" && newer(done)) done = j;
        if (j.StatusCode === "InProgress" && newer(running)) running = j;
      }
      marker = page.Marker ?? undefined;
    } while (marker);
    if (done?.JobId) return jobId(done.JobId);
    let id: JobId;
    if (running?.JobId) {
      id = jobId(running.JobId);
    } else {
      const out = await this.#call("InitiateJob inventory", signal, (o) =>
        this.#client.send(
          new InitiateJobCommand({
            accountId: "-",
            vaultName: this.#vault,
            jobParameters: {
              Type: "inventory-retrieval",
              Format: "JSON",
              Description: "coldpack inventory",
            },
          }),
          o,
        ));
      if (!out.jobId) {
        throw new PortError(`${this.location}: InitiateJob inventory: no job id`, {
          code: "MalformedResponse",
          retryable: true,
        });
      }
      id = jobId(out.jobId);
    }
    for (;;) {
      const d = await this.#describe(id, signal);
      if (d === null) {
        throw new PortError(
          `${this.location}: inventory job ${id} disappeared while it was awaited`,
          { code: "ResourceNotFoundException", retryable: true },
        );
      }
      if (d.StatusCode === "Succeeded") return id;
      if (d.StatusCode === "Failed") {
        throw new PortError(
          `${this.location}: inventory job ${id} failed: ${d.StatusMessage ?? "no reason given"}`,
          { code: "InventoryFailed", retryable: true },
        );
      }
      await this.#clock.sleep(this.#pollMs, signal);
    }
  }

  /** Deletes an archive; one Glacier does not know is fine. */
  async delete(remoteId: RemoteArchiveId, options: { signal?: AbortSignal } = {}): Promise<void> {
    try {
      await this.#call(`DeleteArchive ${remoteId}`, options.signal, (o) =>
        this.#client.send(
          new DeleteArchiveCommand({
            accountId: "-",
            vaultName: this.#vault,
            archiveId: remoteId,
          }),
          o,
        ));
    } catch (e) {
      if (!(e instanceof PortError && e.code === "ResourceNotFoundException")) throw e;
      if (/vault not found/i.test(e.message)) throw e;
    }
    this.#lastChange = this.#clock.now();
  }

  /** Closes the SDK client's connections. */
  close(): Promise<void> {
    this.#client.destroy();
    return Promise.resolve();
  }

  /** DescribeJob, or `null` when Glacier does not know the job. */
  async #describe(
    id: JobId,
    signal: AbortSignal | undefined,
  ): Promise<GlacierJobDescription | null> {
    let described: GlacierJobDescription;
    try {
      described = await this.#call(`DescribeJob ${id}`, signal, (o) =>
        this.#client.send(
          new DescribeJobCommand({ accountId: "-", vaultName: this.#vault, jobId: id }),
          o,
        ));
    } catch (e) {
      if (
        e instanceof PortError && e.code === "ResourceNotFoundException" &&
        !/vault not found/i.test(e.message)
      ) {
        this.#succeeded.delete(id);
        return null;
      }
      throw e;
    }
    if (described.StatusCode === "Succeeded") {
      if (this.#succeeded.size >= 1024) {
        this.#succeeded.delete(this.#succeeded.keys().next().value!);
      }
      this.#succeeded.set(id, described);
    }
    return described;
  }

  /** Sends one request; a failure becomes a `PortError`, an abort the signal's reason. */
  async #call<T>(
    operation: string,
    signal: AbortSignal | undefined,
    send: (options: { abortSignal?: AbortSignal }) => Promise<T>,
  ): Promise<T> {
    signal?.throwIfAborted();
    try {
      return await send(signal ? { abortSignal: signal } : {});
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      throw this.#error(operation, e);
    }
  }

  /** Maps an SDK or connection error to a `PortError` naming the store and the operation. */
  #error(operation: string, e: unknown): unknown {
    if (
      e instanceof PortError || e instanceof ArchiveMismatchError || e instanceof RangeError
    ) {
      return e;
    }
    const o = (typeof e === "object" && e !== null ? e : {}) as {
      name?: unknown;
      code?: unknown;
      message?: unknown;
      $metadata?: { httpStatusCode?: unknown };
    };
    const status = typeof o.$metadata?.httpStatusCode === "number"
      ? o.$metadata.httpStatusCode
      : null;
    const name = typeof o.name === "string" ? o.name : "";
    const sysCode = typeof o.code === "string" ? o.code : "";
    const message = (typeof o.message === "string" ? o.message : String(e))
      .replace(/\s*Deserialization error: to see the raw response.*$/s, " (unreadable answer)");
    let code: string;
    if (status !== null && status < 300) {
      // A success status with an error: the answer was cut off or could not be read.
      code = /aborted|ECONNRESET|socket hang up|premature|ended/i.test(message)
        ? "TruncatedBody"
        : "MalformedResponse";
    } else if (status !== null) {
      code = name !== "" && !/^(Error|Unknown|UnknownError|GlacierServiceException)$/.test(name)
        ? name
        : `HTTP${status}`;
    } else {
      code = sysCode || name || "Unknown";
    }
    const retryable = RETRYABLE_CODES.has(code) || code === "TruncatedBody" ||
      code === "MalformedResponse" ||
      (status !== null && (status >= 500 || status === 408 || status === 429)) ||
      (status === null &&
        (NETWORK_CODES.has(code) || NETWORK_CODES.has(name) ||
          /socket hang up|connection (reset|closed)|ECONNRESET|EPIPE/i.test(message)));
    return new PortError(`${this.location}: ${operation}: ${code}: ${oneLine(message)}`, {
      code,
      retryable,
      cause: e,
    });
  }

  /** The SDK's checksum hook: our precomputed hashes, or hashes of a small in-memory body. */
  #checksums(body: unknown): [string, string] {
    if (typeof body === "object" && body !== null) {
      const facts = this.#facts.get(body);
      if (facts) return [facts.sha256, facts.treeHash];
    }
    let bytes: Uint8Array;
    if (typeof body === "string") bytes = new TextEncoder().encode(body);
    else if (body instanceof Uint8Array) bytes = body;
    else throw new TypeError(`${this.location}: cannot checksum a streamed body without its facts`);
    const hasher = new TreeHasher();
    hasher.update(bytes);
    return [createHash("sha256").update(bytes).digest("hex"), hasher.digest()];
  }

  /** The SDK's content-length hook. */
  #bodyLength(body: unknown): number | undefined {
    if (typeof body === "string") return new TextEncoder().encode(body).length;
    if (body instanceof Uint8Array) return body.length;
    if (typeof body === "object" && body !== null) return this.#facts.get(body)?.length;
    return undefined;
  }
}

/** A node stream as the SDK hands out response bodies. */
type NodeBody = AsyncIterable<Uint8Array> & { destroy(error?: Error): void };

function isPartSize(n: number): boolean {
  if (!Number.isSafeInteger(n) || n < MIB || n > 4 * GIB || n % MIB !== 0) return false;
  const mib = n / MIB;
  return (mib & (mib - 1)) === 0;
}

/**
 * The multipart part size for an archive of `size` bytes: `partSize` (1 MiB
 * x a power of two), doubled until the archive fits in Glacier's 10,000 parts.
 *
 * @throws {RangeError} when even 10,000 parts of 4 GiB cannot hold it
 *
 * @example
 * ```ts
 * partSizeFor(25 * MIB, 8 * MIB); // 8 MiB
 * partSizeFor(100 * GIB, 8 * MIB); // 16 MiB: 6,400 parts
 * ```
 */
export function partSizeFor(size: number, partSize: number): number {
  let n = partSize;
  while (Math.ceil(size / n) > MAX_PARTS) n *= 2;
  if (n > 4 * GIB) {
    throw new RangeError(
      `Cannot split ${size} bytes into at most 10,000 parts of at most 4 GiB`,
    );
  }
  return n;
}

/**
 * A web stream over a response body that counts its bytes and, given one,
 * checks their tree hash; it errors at the end when either is wrong, and
 * when the connection breaks midway (`TruncatedBody`, retryable).
 */
function checkedStream(
  body: NodeBody,
  check: {
    readonly expected: number;
    readonly treeHash: string | null;
    readonly what: string;
    readonly signal: AbortSignal | undefined;
  },
): ReadableStream<Uint8Array> {
  const { expected, what, signal } = check;
  const it = body[Symbol.asyncIterator]();
  const hasher = check.treeHash === null ? null : new TreeHasher();
  let received = 0;
  const onAbort = () => body.destroy(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  const finish = () => signal?.removeEventListener("abort", onAbort);
  const truncated = (cause?: unknown) =>
    new PortError(
      `${what}: TruncatedBody: the body ended after ${received} of ${expected} bytes${
        cause === undefined ? "" : ` (${errorText(cause)})`
      }`,
      { code: "TruncatedBody", retryable: true, ...(cause === undefined ? {} : { cause }) },
    );
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      let r: IteratorResult<Uint8Array>;
      try {
        signal?.throwIfAborted();
        r = await it.next();
        signal?.throwIfAborted();
      } catch (e) {
        finish();
        controller.error(signal?.aborted ? signal.reason : truncated(e));
        return;
      }
      if (r.done) {
        finish();
        if (received < expected) return controller.error(truncated());
        const got = hasher?.digest();
        if (got !== undefined && got !== check.treeHash) {
          return controller.error(
            new ArchiveMismatchError(
              `${what}: the bytes' tree hash is ${got} but Glacier gave ${check.treeHash}`,
            ),
          );
        }
        return controller.close();
      }
      const chunk = new Uint8Array(r.value.buffer, r.value.byteOffset, r.value.byteLength);
      received += chunk.length;
      if (received > expected) {
        finish();
        body.destroy();
        return controller.error(
          new ArchiveMismatchError(
            `${what}: the body has more than the ${expected} bytes asked for`,
          ),
        );
      }
      hasher?.update(chunk);
      controller.enqueue(chunk);
    },
    async cancel(reason) {
      finish();
      body.destroy();
      await it.return?.(reason);
    },
  }, { highWaterMark: 0 });
}

/**
 * The archives of an inventory JSON document, one at a time as the text
 * streams in: only the current element of `ArchiveList` is held.
 */
async function* parseInventory(
  body: NodeBody,
  what: string,
  signal: AbortSignal | undefined,
): AsyncGenerator<StoredArchive> {
  const decoder = new TextDecoder();
  let depth = 0;
  let inString = false;
  let escaped = false;
  let lastKey = "";
  let str = "";
  let inList = false;
  let sawList = false;
  let element: string[] | null = null;
  let elementStart = 0;
  const onAbort = () => body.destroy(signal?.reason);
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for await (const raw of body) {
      signal?.throwIfAborted();
      const text = decoder.decode(raw as Uint8Array, { stream: true });
      const found: StoredArchive[] = [];
      elementStart = 0;
      for (let i = 0; i < text.length; i++) {
        const c = text[i]!;
        if (inString) {
          if (escaped) escaped = false;
          else if (c === "\\") escaped = true;
          else if (c === '"') inString = false;
          else if (depth === 1) str += c;
          continue;
        }
        if (c === '"') {
          inString = true;
          if (depth === 1) str = "";
        } else if (c === ":" && depth === 1) {
          lastKey = str;
        } else if (c === "{" || c === "[") {
          depth++;
          if (depth === 2 && c === "[" && lastKey === "ArchiveList") {
            inList = true;
            sawList = true;
          } else if (depth === 3 && inList && c === "{") {
            element = [];
            elementStart = i;
          }
        } else if (c === "}" || c === "]") {
          depth--;
          if (depth === 2 && inList && element !== null && c === "}") {
            element.push(text.slice(elementStart, i + 1));
            found.push(toStored(element.join(""), what));
            element = null;
          } else if (depth === 1) {
            inList = false;
          }
        }
      }
      if (element !== null) {
        element.push(text.slice(elementStart));
        elementStart = 0;
      }
      yield* found;
    }
  } catch (e) {
    if (signal?.aborted) throw signal.reason;
    if (e instanceof SyntaxError) throw e;
    throw new PortError(`${what}: TruncatedBody: the inventory broke off (${errorText(e)})`, {
      code: "TruncatedBody",
      retryable: true,
      cause: e,
    });
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
  if (depth !== 0 || inString) {
    throw new PortError(`${what}: TruncatedBody: the inventory JSON ends midway`, {
      code: "TruncatedBody",
      retryable: true,
    });
  }
  if (!sawList) throw new SyntaxError(`Cannot parse ${what}: no ArchiveList`);
}

function toStored(text: string, what: string): StoredArchive {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new SyntaxError(`Cannot parse ${what}: ${errorText(e)}`);
  }
  const o = (typeof v === "object" && v !== null ? v : {}) as Record<string, unknown>;
  const created = typeof o.CreationDate === "string" ? Date.parse(o.CreationDate) : NaN;
  if (
    typeof o.ArchiveId !== "string" || o.ArchiveId === "" || !Number.isSafeInteger(o.Size) ||
    !Number.isFinite(created) ||
    (o.SHA256TreeHash !== null && o.SHA256TreeHash !== undefined &&
      typeof o.SHA256TreeHash !== "string")
  ) {
    throw new SyntaxError(`Cannot parse ${what}: unexpected archive entry ${text.slice(0, 200)}`);
  }
  return {
    remoteId: remoteArchiveId(o.ArchiveId),
    size: o.Size as number,
    treeHash: typeof o.SHA256TreeHash === "string" ? o.SHA256TreeHash : null,
    description: typeof o.ArchiveDescription === "string" ? o.ArchiveDescription : "",
    createdAt: created,
  };
}

/** A DescribeJob answer as a {@linkcode RetrievalJob}. */
function toJob(d: GlacierJobDescription, id: JobId): RetrievalJob {
  const state: RetrievalState = d.StatusCode === "Succeeded"
    ? "ready"
    : d.StatusCode === "Failed"
    ? "failed"
    : "in-progress";
  const completedAt = d.Completed && d.CompletionDate ? Date.parse(d.CompletionDate) : null;
  let range: ByteRange | null = null;
  const m = /^(\d+)-(\d+)$/.exec(d.RetrievalByteRange ?? "");
  if (m) {
    const start = Number(m[1]);
    const end = Number(m[2]);
    if (!(start === 0 && end === (d.ArchiveSizeInBytes ?? -1) - 1)) range = { start, end };
  }
  return {
    jobId: id,
    remoteId: remoteArchiveId(d.ArchiveId || "unknown"),
    range,
    state,
    treeHash: d.SHA256TreeHash ?? null,
    description: d.JobDescription ?? "",
    startedAt: Date.parse(d.CreationDate ?? "") || 0,
    completedAt,
    expiresAt: completedAt === null ? null : completedAt + JOB_TTL_MS,
    ...(state === "failed" ? { failure: d.StatusMessage ?? "Glacier gave no reason" } : {}),
  };
}

/** Bytes a job's output holds: the retrieved range, the archive, or the inventory. */
function outputLength(d: GlacierJobDescription): number {
  const m = /^(\d+)-(\d+)$/.exec(d.RetrievalByteRange ?? "");
  if (m) return Number(m[2]) + 1 - Number(m[1]);
  return d.ArchiveSizeInBytes ?? d.InventorySizeInBytes ?? 0;
}

function errorText(e: unknown): string {
  if (e instanceof Error) {
    const code = (e as { code?: unknown }).code;
    return oneLine(typeof code === "string" ? `${code}: ${e.message}` : e.message);
  }
  return oneLine(String(e));
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, " ").trim();
}
