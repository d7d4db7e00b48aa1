/**
 * The {@linkcode NotificationQueue} on Amazon SQS (`@aws-sdk/client-sqs`):
 * the queue that Glacier's SNS notifications and S3's restore events reach
 * (PROTOCOLS.md sections 2 and 3). What a body says is read by
 * `core/restore_events.ts`; this file only moves messages.
 *
 * - receive: one ReceiveMessage (long poll up to 20 s) asking for the
 *   `ApproximateReceiveCount` system attribute; an abort of the caller's
 *   signal ends the poll at once with the signal's reason, and `close()`
 *   ends it with a `PortError` coded `Closed`.
 * - delete: one DeleteMessage with the receipt handle of the receive. As in
 *   SQS, deleting a message already deleted succeeds; a handle SQS never
 *   issued (or one expired) is `ReceiptHandleIsInvalid`, not retryable.
 *
 * One attempt per call (`maxAttempts: 1`): the wrappers of `core/retry.ts`
 * retry. Each request gets a fresh connection (see
 * `freshConnectionAgents` in `adapters/store/_aws.ts`).
 * @module
 */

import {
  DeleteMessageCommand,
  type Message,
  ReceiveMessageCommand,
  type ReceiveMessageCommandOutput,
  SQSClient,
  type SQSClientConfig,
} from "@aws-sdk/client-sqs";
import { PortError } from "../../core/errors.ts";
import type { NotificationQueue, QueueMessage } from "../../core/ports.ts";
import { freshConnectionAgents, NETWORK_CODES, QUIET_LOGGER, wholeNumber } from "../store/_aws.ts";

/** The longest long poll SQS allows, s. */
export const MAX_WAIT_SECONDS = 20;
/** The most messages one ReceiveMessage returns. */
export const MAX_MESSAGES = 10;
/** The longest visibility timeout, s (12 hours). */
export const MAX_VISIBILITY_SECONDS = 43_200;

/** SQS error names worth another try (besides any 5xx and 429, and connection failures). */
const RETRYABLE_CODES = new Set([
  "RequestThrottled",
  "ThrottlingException",
  "Throttling",
  "KmsThrottled",
  "TooManyRequestsException",
  "RequestTimeout",
  "RequestTimeoutException",
  "ServiceUnavailable",
  "InternalError",
  "InternalFailure",
  "TimeoutError",
  "MalformedResponse",
  "MD5OfBodyMismatch",
]);

/** The SDK's generic names, which say nothing of the cause. */
const GENERIC_NAMES = /^(Error|Unknown|UnknownError|SQSServiceException)$/;

/** Where and how the SQS client connects; every field defaults to the SDK's own chain. */
export interface SqsQueueOptions {
  /**
   * The SQS endpoint, e.g. a test double's `http://127.0.0.1:PORT`. Default:
   * the SDK's chain (`AWS_ENDPOINT_URL_SQS`, `AWS_ENDPOINT_URL`, config
   * files), else the queue URL's own host.
   */
  readonly endpoint?: string;
  /**
   * AWS region. Default: the region of an AWS queue URL
   * (`https://sqs.REGION.amazonaws.com/...`), else the SDK's chain
   * (`AWS_REGION`, profile).
   */
  readonly region?: string;
  /** Credentials. Default: the SDK's chain (environment, profile, instance role). */
  readonly credentials?: {
    readonly accessKeyId: string;
    readonly secretAccessKey: string;
    readonly sessionToken?: string;
  };
}

/** A queue URL taken apart. */
export interface SqsQueueUrl {
  /** The URL as given. */
  readonly url: string;
  /** The region an AWS queue URL names; `null` for another host. */
  readonly region: string | null;
  /** The 12-digit account id. */
  readonly account: string;
  /** The queue name. */
  readonly name: string;
}

const REGION = String.raw`([a-z]{2}(?:-[a-z]+)+-\d+)`;
/**
 * AWS queue hosts: `sqs.REGION.amazonaws.com` (also `sqs-fips.` and
 * `.amazonaws.com.cn`), and the legacy `REGION.queue.amazonaws.com`.
 */
const AWS_HOST = new RegExp(
  `^(?:sqs(?:-fips)?\\.${REGION}\\.amazonaws\\.com(?:\\.cn)?` +
    `|${REGION}\\.queue\\.amazonaws\\.com)$`,
);
const QUEUE_PATH = /^\/(\d{12})\/([A-Za-z0-9_-]{1,80}|[A-Za-z0-9_-]{1,75}\.fifo)$/;

/**
 * Checks a queue URL: `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`, or any
 * `http(s)://HOST[:PORT]/ACCOUNT/NAME` (a custom endpoint, a test double),
 * with a 12-digit account, a queue name of `A-Za-z0-9_-` (up to 80
 * characters, `.fifo` included), and no credentials, query or fragment.
 *
 * @example
 * ```ts
 * parseSqsQueueUrl("https://sqs.eu-west-1.amazonaws.com/123456789012/restores").region;
 * // "eu-west-1"
 * ```
 * @throws {TypeError} naming the URL (unless it carries credentials) and what is wrong
 */
export function parseSqsQueueUrl(url: string): SqsQueueUrl {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new TypeError(`Invalid SQS queue URL ${shown(url)}: not a URL`);
  }
  if (u.username !== "" || u.password !== "") {
    // Not repeated: what sits there may be a secret.
    throw new TypeError(
      "Invalid SQS queue URL: it carries a user name or password (credentials come from the " +
        "AWS SDK's chain)",
    );
  }
  const bad = (why: string) =>
    new TypeError(
      `Invalid SQS queue URL ${shown(url)}: ${why} ` +
        "(expected https://sqs.REGION.amazonaws.com/ACCOUNT/NAME)",
    );
  if (u.protocol !== "https:" && u.protocol !== "http:") {
    throw bad(`the scheme ${u.protocol} is not https: or http:`);
  }
  if (u.search !== "" || u.hash !== "") throw bad("a queue URL has no query or fragment");
  const path = QUEUE_PATH.exec(u.pathname);
  if (!path) {
    throw bad(
      "the path must be /ACCOUNT/NAME with a 12-digit account and a queue name of " +
        "A-Za-z0-9_- (at most 80 characters, .fifo included)",
    );
  }
  const host = AWS_HOST.exec(u.hostname);
  return {
    url,
    region: host ? (host[1] ?? host[2] ?? null) : null,
    account: path[1]!,
    name: path[2]!,
  };
}

/**
 * A {@linkcode NotificationQueue} on one SQS queue.
 *
 * Errors are `PortError`s coded with SQS's error name (`QueueDoesNotExist`
 * for `AWS.SimpleQueueService.NonExistentQueue`, whose query code the
 * message repeats; `InvalidAddress`, `ReceiptHandleIsInvalid`,
 * `RequestThrottled`, `ThrottlingException`, `KmsThrottled`,
 * `SignatureDoesNotMatch`, `InvalidClientTokenId`...) or a connection
 * failure's code (`ECONNRESET`, `ECONNREFUSED`), naming the operation and
 * the queue URL. Retryable: throttling, timeouts, 5xx, 429, connection
 * failures, and answers that could not be read (`MalformedResponse`, and
 * `MD5OfBodyMismatch` when a body's MD5 differs from SQS's).
 */
export class SqsNotificationQueue implements NotificationQueue {
  /** The queue URL. */
  readonly location: string;
  readonly #client: SQSClient;
  readonly #agents = freshConnectionAgents();
  /** Aborted by `close()`, ending requests in flight. */
  readonly #closing = new AbortController();

  /**
   * @param url the queue URL (see {@linkcode parseSqsQueueUrl})
   * @param options endpoint, region and credentials; each defaults to the SDK's chain
   * @throws {TypeError} a malformed queue URL
   */
  constructor(url: string, options: SqsQueueOptions = {}) {
    const parsed = parseSqsQueueUrl(url);
    this.location = parsed.url;
    const config: SQSClientConfig = {
      maxAttempts: 1,
      logger: QUIET_LOGGER,
      requestHandler: this.#agents,
    };
    if (options.endpoint !== undefined) config.endpoint = options.endpoint;
    const region = options.region ?? parsed.region;
    if (region !== null) config.region = region;
    if (options.credentials !== undefined) config.credentials = { ...options.credentials };
    this.#client = new SQSClient(config);
  }

  /**
   * Waits up to `waitSeconds` for up to `max` messages, each then hidden
   * for `visibilitySeconds`. `receiveCount` is SQS's
   * `ApproximateReceiveCount` (1 when SQS leaves it out).
   *
   * @throws {RangeError} an option out of range, naming it
   * @throws {PortError} SQS's error; `MalformedResponse` for a message without id or handle
   */
  async receive(options: {
    readonly waitSeconds: number;
    readonly max: number;
    readonly visibilitySeconds: number;
    readonly signal?: AbortSignal;
  }): Promise<QueueMessage[]> {
    const wait = wholeNumber("wait seconds", options.waitSeconds, 0, MAX_WAIT_SECONDS);
    const max = wholeNumber("max messages", options.max, 1, MAX_MESSAGES);
    const visibility = wholeNumber(
      "visibility seconds",
      options.visibilitySeconds,
      0,
      MAX_VISIBILITY_SECONDS,
    );
    const out = await this.#send<ReceiveMessageCommandOutput>(
      "ReceiveMessage",
      new ReceiveMessageCommand({
        QueueUrl: this.location,
        WaitTimeSeconds: wait,
        MaxNumberOfMessages: max,
        VisibilityTimeout: visibility,
        MessageSystemAttributeNames: ["ApproximateReceiveCount"],
      }),
      options.signal,
    );
    return (out.Messages ?? []).map((m) => this.#message(m));
  }

  /**
   * Deletes a received message. SQS answers success for a message already
   * deleted (by this handle or another); a duplicate delivery is another
   * message copy, deleted through its own handle.
   *
   * @throws {PortError} SQS's error, e.g. `ReceiptHandleIsInvalid`
   */
  async delete(message: QueueMessage, options: { signal?: AbortSignal } = {}): Promise<void> {
    await this.#send(
      "DeleteMessage",
      new DeleteMessageCommand({ QueueUrl: this.location, ReceiptHandle: message.receipt }),
      options.signal,
    );
  }

  /** Ends requests in flight (they reject with `Closed`) and the connections. Idempotent. */
  close(): Promise<void> {
    if (!this.#closing.signal.aborted) {
      this.#closing.abort();
      this.#client.destroy();
      this.#agents.httpAgent.destroy();
      this.#agents.httpsAgent.destroy();
    }
    return Promise.resolve();
  }

  #message(m: Message): QueueMessage {
    if (typeof m.MessageId !== "string" || typeof m.ReceiptHandle !== "string") {
      throw new PortError(
        `SQS ReceiveMessage on ${this.location} answered a message without ` +
          `${typeof m.MessageId !== "string" ? "MessageId" : "ReceiptHandle"}`,
        { code: "MalformedResponse", retryable: true },
      );
    }
    const count = Number(m.Attributes?.ApproximateReceiveCount);
    return {
      id: m.MessageId,
      receipt: m.ReceiptHandle,
      body: m.Body ?? "",
      receiveCount: Number.isSafeInteger(count) && count >= 1 ? count : 1,
    };
  }

  /** Sends one command: an abort rejects with the signal's reason, a failure with a PortError. */
  async #send<O>(op: string, command: unknown, signal: AbortSignal | undefined): Promise<O> {
    signal?.throwIfAborted();
    const closing = this.#closing.signal;
    if (closing.aborted) throw this.#closed(op);
    const abortSignal = signal === undefined ? closing : AbortSignal.any([signal, closing]);
    const send = this.#client.send.bind(this.#client) as unknown as (
      c: unknown,
      o: { abortSignal: AbortSignal },
    ) => Promise<O>;
    try {
      return await send(command, { abortSignal });
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      if (closing.aborted) throw this.#closed(op);
      throw sqsPortError(e, op, this.location);
    }
  }

  #closed(op: string): PortError {
    return new PortError(`SQS ${op} on ${this.location}: the queue is closed`, {
      code: "Closed",
      retryable: false,
    });
  }
}

/**
 * Opens the SQS queue at `url` (no request is made until the first call).
 *
 * @example
 * ```ts
 * const queue = openSqsQueue("https://sqs.us-east-1.amazonaws.com/123456789012/restores");
 * const messages = await queue.receive({ waitSeconds: 20, max: 10, visibilitySeconds: 300 });
 * ```
 * @param url the queue URL, `https://sqs.REGION.amazonaws.com/ACCOUNT/NAME`
 * @param options endpoint, region and credentials; each defaults to the SDK's chain
 * @throws {TypeError} a malformed queue URL, naming it
 */
export function openSqsQueue(url: string, options: SqsQueueOptions = {}): NotificationQueue {
  return new SqsNotificationQueue(url, options);
}

/**
 * Turns what an SQS call threw into a `PortError` (see
 * {@linkcode SqsNotificationQueue} for the codes). A `PortError` and a
 * non-error pass as they are.
 *
 * @param e what the SDK threw
 * @param op the operation, e.g. `ReceiveMessage`
 * @param location the queue URL
 */
export function sqsPortError(e: unknown, op: string, location: string): unknown {
  if (e instanceof PortError || !(e instanceof Error)) return e;
  const o = e as Error & {
    code?: unknown;
    Code?: unknown;
    $metadata?: { httpStatusCode?: unknown };
  };
  const status = typeof o.$metadata?.httpStatusCode === "number"
    ? o.$metadata.httpStatusCode
    : null;
  const errno = typeof o.code === "string" && /^E[A-Z_]+$/.test(o.code) ? o.code : null;
  const message = oneLine(e.message)
    .replace(/\s*Deserialization error: to see the raw response.*$/s, " (unreadable answer)");
  let code: string;
  if (errno !== null) {
    code = errno;
  } else if (/Invalid MD5 checksum on messages/.test(message)) {
    code = "MD5OfBodyMismatch";
  } else if (status !== null && status < 300) {
    code = "MalformedResponse";
  } else if (!GENERIC_NAMES.test(e.name)) {
    code = e.name;
  } else if (/socket hang up|ECONNRESET|connection reset/i.test(message)) {
    code = "ECONNRESET";
  } else if (/ECONNREFUSED/.test(message)) {
    code = "ECONNREFUSED";
  } else if (/Region is missing/i.test(message)) {
    code = "RegionMissing";
  } else {
    code = status !== null ? `HTTP${status}` : e.name;
  }
  const retryable = RETRYABLE_CODES.has(code) || NETWORK_CODES.has(code) ||
    (status !== null && (status >= 500 || status === 429));
  const wire = typeof o.Code === "string" && o.Code !== code ? ` (${o.Code})` : "";
  const http = status === null ? "" : ` (HTTP ${status})`;
  return new PortError(`SQS ${op} on ${location} failed: ${code}${wire}${http}: ${message}`, {
    code,
    retryable,
    cause: e,
  });
}

function shown(url: string): string {
  return JSON.stringify(url.length > 200 ? `${url.slice(0, 200)}...` : url);
}

function oneLine(s: string): string {
  return s.replace(/\s+/g, " ").trim();
}
