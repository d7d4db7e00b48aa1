/**
 * A strict test double of Amazon SQS (standard queues) as the pinned
 * `@aws-sdk/client-sqs` speaks to it through `endpoint`, plus the bodies SNS
 * and S3 put into a queue (PROTOCOLS.md sections 2 and 3).
 *
 * Protocol: the AWS JSON 1.0 protocol only, as this SDK version sends it:
 * `POST /`, `Content-Type: application/x-amz-json-1.0`,
 * `X-Amz-Target: AmazonSQS.<Action>`, `x-amzn-query-mode: true`, the queue
 * URL in the JSON body. Every request must carry a SigV4 `Authorization`
 * header, checked in full against {@linkcode TEST_CREDENTIALS} (shared with
 * the Glacier double, so that one credential chain serves both). A query-protocol
 * request (`application/x-www-form-urlencoded`) gets an XML `InvalidAction`
 * error that says so. Members the API does not define, wrong JSON types and
 * out-of-range values are refused.
 *
 * Errors are answered as SQS answers them: JSON `{"__type", "message"}` and
 * the `x-amzn-query-error: <code>;Sender|Receiver` header, from which the
 * SDK takes the error's `name` (`QueueDoesNotExist` for
 * `AWS.SimpleQueueService.NonExistentQueue`, `ReceiptHandleIsInvalid` (404),
 * `InvalidParameterValue`, `MissingParameter`, `InvalidAttributeName`,
 * `InvalidAddress`, `SignatureDoesNotMatch`, `InvalidClientTokenId`,
 * `MissingAuthenticationToken` ...). The `__type` of the errors SQS does not
 * model (`InvalidParameterValue` and the signature errors) follows the coral
 * names reported for AWS (`com.amazon.coral.service#...Exception`); the SDK
 * ignores it once the header is there.
 *
 * Actions: CreateQueue, GetQueueUrl, GetQueueAttributes, DeleteQueue,
 * PurgeQueue, SendMessage, ReceiveMessage, DeleteMessage,
 * ChangeMessageVisibility. The other SQS actions (batches, ListQueues,
 * SetQueueAttributes, tags, permissions, move tasks) answer 501
 * `NotImplemented`; FIFO queues, message attributes and
 * `MessageDeduplicationId` are refused the same way.
 *
 * Semantics, on the double's clock (injectable, e.g. a `ManualClock`):
 * - ReceiveMessage: `MaxNumberOfMessages` 1..10, `VisibilityTimeout`
 *   0..43200 s (default the queue's, 30 s), `WaitTimeSeconds` 0..20 (default
 *   the queue's `ReceiveMessageWaitTimeSeconds`, 0). Messages come oldest
 *   first. A long poll answers as soon as a message is visible, else empty
 *   after `WaitTimeSeconds` of real time; it re-checks the clock every
 *   `pollIntervalMs` of real time, and at once on a send or on
 *   {@linkcode SqsDouble.wake} (call it after moving a manual clock). A long
 *   poll that the client abandons takes nothing. A received message is
 *   invisible for the visibility timeout, then comes back with
 *   `ApproximateReceiveCount` one higher and a new `ReceiptHandle`
 *   (attributes through `MessageSystemAttributeNames` or the deprecated
 *   `AttributeNames`). `MD5OfBody` is right (the SDK checks it).
 * - DeleteMessage: a handle the double never issued for this queue is 404
 *   `ReceiptHandleIsInvalid`. The latest handle of a message deletes it,
 *   visible or not. An older handle of a message received again since
 *   succeeds but deletes nothing: the API reference says such a request
 *   "will succeed, but the message might not be deleted", and the double
 *   takes the case that catches a consumer deleting with a stale handle
 *   ({@linkcode SqsDouble.ignoredDeletes} counts them). Deleting a message
 *   already gone succeeds.
 * - ChangeMessageVisibility: counts from now; 0 makes the message visible at
 *   once; more than 12 h after the receive in total is 400
 *   `InvalidParameterValue`; an older handle of a message received again
 *   since, or of a message that is gone, is 400 `InvalidParameterValue`
 *   ("Message does not exist or is not available for visibility timeout
 *   change"); the latest handle of a message whose timeout already ran out
 *   succeeds and changes nothing (LocalStack's AWS-validated behaviour).
 * - SendMessage: body 1 byte .. `MaximumMessageSize` (default and most
 *   1 MiB) of the characters SQS allows; `DelaySeconds` 0..900.
 * - Messages older than `MessageRetentionPeriod` (default 4 days) vanish;
 *   PurgeQueue twice within 60 s is 403 `PurgeQueueInProgress`; re-creating
 *   a queue within 60 s of deleting it is `QueueDeletedRecently`.
 * - Receipt handles do not expire with time (AWS's expiry of old handles is
 *   not modelled).
 *
 * Faults ({@linkcode SqsDouble.inject}), for the next N requests, optionally
 * of one action: 500 `InternalError`, 503 `ServiceUnavailable`, 400
 * `ThrottlingException`, 403 `RequestThrottled`, a custom error, a real-time
 * delay, a connection reset before anything is done, a lost response (the
 * action is carried out, then the connection is cut), a duplicate delivery
 * (every message the next non-empty receive delivers gets a twin, visible at
 * once, with the same MessageId and body: SQS's at-least-once delivery, and
 * the twin outlives the original's deletion), a false empty answer, and a
 * wrong `MD5OfBody`. Requests are counted per action.
 *
 * Helpers for what reaches a queue: {@linkcode publishToQueue} wraps a
 * message in the SNS envelope (or delivers it raw), {@linkcode snsEnvelope}
 * builds that envelope, {@linkcode s3RestoreEvent} and
 * {@linkcode s3TestEvent} build S3 event bodies, {@linkcode s3EventKey}
 * encodes a key as S3 events do. The envelope's `Signature` is random bytes:
 * it cannot be verified.
 *
 * @example
 * ```ts
 * const clock = new ManualClock();
 * const sqs = await SqsDouble.start({ clock });
 * const queue = sqs.createQueue("restores");
 * const client = new SQSClient({ ...sqs.connection, maxAttempts: 1 });
 * try {
 *   publishToQueue(queue, "arn:aws:sns:us-east-1:123456789012:jobs", jobJson);
 *   // ReceiveMessageCommand({ QueueUrl: queue.url, WaitTimeSeconds: 20 }) ...
 *   clock.advance(30_000); // in-flight messages come back
 *   sqs.wake();
 * } finally {
 *   client.destroy();
 *   await sqs.close();
 * }
 * ```
 * @module
 */

import { listenLoopback } from "./_http.ts";
import type { IncomingMessage, Server, ServerResponse } from "node:http";
import type { Socket } from "node:net";
import { Buffer } from "node:buffer";
import { createHash, createHmac, randomBytes, randomUUID } from "node:crypto";

/**
 * The only credentials the AWS doubles accept (SigV4 is checked in full); the
 * Glacier double re-exports them, so that one credential chain serves both.
 */
export const TEST_CREDENTIALS = {
  accessKeyId: "AKIDCOLDPACKGLACIERDOUBLE",
  secretAccessKey: "coldpack-double-secret-not-a-real-key",
} as const;

/** The account the AWS doubles play; Glacier requests may name it or `-`. */
export const DOUBLE_ACCOUNT_ID = "123456789012";

const SECOND = 1000;
const DAY = 86_400_000;
/** The most a message body may have, and the default `MaximumMessageSize`. */
export const MAX_MESSAGE_BYTES = 1_048_576;
/** The longest visibility timeout, s; also the most a receive may stay in flight in total. */
export const MAX_VISIBILITY_TIMEOUT_S = 43_200;
/** The longest long poll, s. */
export const MAX_WAIT_TIME_S = 20;
const MAX_REQUEST_BYTES = 8 * MAX_MESSAGE_BYTES;
const PURGE_INTERVAL_MS = 60 * SECOND;
const RECREATE_DELAY_MS = 60 * SECOND;
/** The SenderId of messages SNS delivers (any constant: consumers should not rely on it). */
const SNS_SENDER_ID = "AIDASNSDOUBLEPUBLISHER";

/** The SQS actions the double answers, by the SDK's command names. */
export type SqsAction =
  | "CreateQueue"
  | "GetQueueUrl"
  | "GetQueueAttributes"
  | "DeleteQueue"
  | "PurgeQueue"
  | "SendMessage"
  | "ReceiveMessage"
  | "DeleteMessage"
  | "ChangeMessageVisibility";

/** The members each action accepts (the API reference's request syntax). */
const MEMBERS: Record<SqsAction, readonly string[]> = {
  CreateQueue: ["QueueName", "Attributes", "tags"],
  GetQueueUrl: ["QueueName", "QueueOwnerAWSAccountId"],
  GetQueueAttributes: ["QueueUrl", "AttributeNames"],
  DeleteQueue: ["QueueUrl"],
  PurgeQueue: ["QueueUrl"],
  SendMessage: [
    "QueueUrl",
    "MessageBody",
    "DelaySeconds",
    "MessageAttributes",
    "MessageSystemAttributes",
    "MessageDeduplicationId",
    "MessageGroupId",
  ],
  ReceiveMessage: [
    "QueueUrl",
    "AttributeNames",
    "MessageSystemAttributeNames",
    "MessageAttributeNames",
    "MaxNumberOfMessages",
    "VisibilityTimeout",
    "WaitTimeSeconds",
    "ReceiveRequestAttemptId",
  ],
  DeleteMessage: ["QueueUrl", "ReceiptHandle"],
  ChangeMessageVisibility: ["QueueUrl", "ReceiptHandle", "VisibilityTimeout"],
};

/** SQS actions that exist but that the double does not implement (501). */
const NOT_IMPLEMENTED = new Set([
  "AddPermission",
  "CancelMessageMoveTask",
  "ChangeMessageVisibilityBatch",
  "DeleteMessageBatch",
  "ListDeadLetterSourceQueues",
  "ListMessageMoveTasks",
  "ListQueueTags",
  "ListQueues",
  "RemovePermission",
  "SendMessageBatch",
  "SetQueueAttributes",
  "StartMessageMoveTask",
  "TagQueue",
  "UntagQueue",
]);

/** Queue attributes with an effect: name -> [min, max, default]. */
const NUMERIC_ATTRIBUTES: Record<string, [number, number, number]> = {
  DelaySeconds: [0, 900, 0],
  MaximumMessageSize: [1024, MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES],
  MessageRetentionPeriod: [60, 1_209_600, 345_600],
  ReceiveMessageWaitTimeSeconds: [0, MAX_WAIT_TIME_S, 0],
  VisibilityTimeout: [0, MAX_VISIBILITY_TIMEOUT_S, 30],
};

/** Queue attributes accepted and answered, without an effect in the double. */
const STORED_ATTRIBUTES = new Set([
  "Policy",
  "RedrivePolicy",
  "RedriveAllowPolicy",
  "KmsMasterKeyId",
  "KmsDataKeyReusePeriodSeconds",
  "SqsManagedSseEnabled",
]);

/** Message system attributes a standard queue answers. */
const MESSAGE_ATTRIBUTES = [
  "SenderId",
  "SentTimestamp",
  "ApproximateReceiveCount",
  "ApproximateFirstReceiveTimestamp",
];

/** Names ReceiveMessage accepts (FIFO-only ones are accepted and answer nothing). */
const RECEIVE_ATTRIBUTE_NAMES = new Set([
  "All",
  ...MESSAGE_ATTRIBUTES,
  "SequenceNumber",
  "MessageDeduplicationId",
  "MessageGroupId",
  "AWSTraceHeader",
  "DeadLetterQueueSourceArn",
]);

/**
 * What a fault does to a request.
 *
 * - `server-error`: 500 `InternalError`
 * - `unavailable`: 503 `ServiceUnavailable`
 * - `throttle`: 400 `ThrottlingException`
 * - `request-throttled`: 403 `RequestThrottled` (SQS's own throttling error)
 * - `error`: a custom error (`code`, `status`, `message`)
 * - `slow`: waits `delayMs` of real time, then answers normally
 * - `reset`: destroys the connection once the request has arrived; nothing is done
 * - `lost-response`: the action is carried out (a receive puts its messages in
 *   flight, a delete deletes), then the connection is cut before the answer
 * - `duplicate` (ReceiveMessage): every message the next receive that delivers
 *   any delivers gets a twin, visible at once (a receive that delivers nothing
 *   leaves the fault waiting)
 * - `empty` (ReceiveMessage): answers no messages at once, whatever is visible
 * - `wrong-md5` (ReceiveMessage, SendMessage): answers a wrong MD5 of the body
 */
export type SqsFaultKind =
  | "server-error"
  | "unavailable"
  | "throttle"
  | "request-throttled"
  | "error"
  | "slow"
  | "reset"
  | "lost-response"
  | "duplicate"
  | "empty"
  | "wrong-md5";

/** A fault to serve to the next matching requests. */
export interface SqsFault {
  readonly kind: SqsFaultKind;
  /** Only requests of this action; default any (ReceiveMessage for `duplicate` and `empty`). */
  readonly action?: SqsAction;
  /** How many requests get it; default 1. */
  readonly count?: number;
  /** For `slow`: real milliseconds to wait; default 1000. */
  readonly delayMs?: number;
  /** For `error`: the error code the SDK will name, e.g. `KMS.ThrottlingException`. */
  readonly code?: string;
  /** For `error`: the HTTP status; default 400. */
  readonly status?: number;
  /** For `error`: the message; default names the code. */
  readonly message?: string;
}

/** Options for {@linkcode SqsDouble.start}. */
export interface SqsDoubleOptions {
  /** The region requests must be signed for; default `us-east-1`. */
  readonly region?: string;
  /** The clock visibility, delays and retention run on; default the real time. */
  readonly clock?: { now(): number };
  /** Queues that exist from the start, with default attributes. */
  readonly queues?: readonly string[];
  /** The credentials requests must be signed with; default {@linkcode TEST_CREDENTIALS}. */
  readonly credentials?: { readonly accessKeyId: string; readonly secretAccessKey: string };
  /** Real milliseconds between re-checks of a waiting long poll; default 50. */
  readonly pollIntervalMs?: number;
}

/** Where a client finds the double: spread it into `new SQSClient({...})`. */
export interface SqsConnection {
  readonly endpoint: string;
  readonly region: string;
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
}

/** Options for {@linkcode SqsQueue.send}. */
export interface SendOptions {
  /** Seconds before the message becomes visible; default the queue's `DelaySeconds`. */
  readonly delaySeconds?: number;
  /** The `SenderId` attribute; default the account id. */
  readonly senderId?: string;
}

/** A message as the double holds it now. */
export interface DoubleMessage {
  readonly messageId: string;
  readonly body: string;
  readonly receiveCount: number;
  /** Receivable now. */
  readonly visible: boolean;
  /** Received and its visibility timeout not yet over. */
  readonly inFlight: boolean;
  /** A twin made by a `duplicate` fault. */
  readonly duplicate: boolean;
}

interface Message {
  readonly serial: number;
  readonly messageId: string;
  readonly body: string;
  readonly md5: string;
  readonly sentAt: number;
  readonly senderId: string;
  readonly duplicate: boolean;
  visibleAt: number;
  receiveCount: number;
  firstReceiveAt: number | null;
  /** When the latest receive happened (the 12-hour limit counts from it). */
  receivedAt: number | null;
  /** The latest receipt handle; older ones are stale. */
  handle: string | null;
}

interface Queue {
  readonly name: string;
  readonly url: string;
  readonly arn: string;
  readonly createdAt: number;
  readonly attributes: Map<string, string>;
  /** By serial; insertion order is send order. */
  readonly messages: Map<number, Message>;
  /** Wakers of the long polls waiting on this queue. */
  readonly waiters: Set<() => void>;
  lastPurgeAt: number | null;
  ignoredDeletes: number;
  polling: number;
  deleted: boolean;
}

/** An error answered as SQS answers: JSON `{__type, message}` and `x-amzn-query-error`. */
class SqsError extends Error {
  readonly status: number;
  /** The query-compatible code the SDK names the error by; null: no header. */
  readonly code: string | null;
  readonly type: string;
  constructor(status: number, code: string | null, type: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
    this.type = type;
  }
}

function sqsError(status: number, code: string, shape: string, message: string): SqsError {
  return new SqsError(status, code, `com.amazonaws.sqs#${shape}`, message);
}

function coralError(status: number, code: string, shape: string, message: string): SqsError {
  return new SqsError(status, code, `com.amazon.coral.service#${shape}`, message);
}

function invalid(message: string): SqsError {
  return coralError(400, "InvalidParameterValue", "InvalidParameterValueException", message);
}

function missing(name: string): SqsError {
  return coralError(
    400,
    "MissingParameter",
    "MissingRequiredParameterException",
    `The request must contain the parameter ${name}.`,
  );
}

function serialization(message: string): SqsError {
  return new SqsError(400, null, "com.amazon.coral.service#SerializationException", message);
}

function queueDoesNotExist(): SqsError {
  return sqsError(
    400,
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "The specified queue does not exist.",
  );
}

function receiptHandleIsInvalid(handle: string): SqsError {
  return sqsError(
    404,
    "ReceiptHandleIsInvalid",
    "ReceiptHandleIsInvalid",
    `The input receipt handle "${handle}" is not a valid receipt handle.`,
  );
}

function unknownAttribute(name: string): SqsError {
  return sqsError(
    400,
    "InvalidAttributeName",
    "InvalidAttributeName",
    `Unknown Attribute ${name}.`,
  );
}

function notImplemented(what: string): SqsError {
  return new SqsError(
    501,
    "NotImplemented",
    "NotImplemented",
    `The SQS double does not implement ${what}`,
  );
}

function outOfRange(name: string, value: number, reason: string): SqsError {
  return invalid(`Value ${value} for parameter ${name} is invalid. Reason: ${reason}`);
}

const FAULT_ERRORS: Partial<Record<SqsFaultKind, () => SqsError>> = {
  "server-error": () =>
    sqsError(500, "InternalError", "InternalError", "We encountered an internal error."),
  unavailable: () =>
    new SqsError(
      503,
      "ServiceUnavailable",
      "com.amazon.coral.availability#ServiceUnavailableException",
      "Service is unavailable. Please try again.",
    ),
  throttle: () =>
    new SqsError(
      400,
      "ThrottlingException",
      "com.amazon.coral.availability#ThrottlingException",
      "Rate exceeded",
    ),
  "request-throttled": () =>
    sqsError(403, "RequestThrottled", "RequestThrottled", "Request is throttled."),
};

/** Per-request facts handed to the action. */
interface Call {
  readonly res: ServerResponse;
  readonly fault: SqsFault | null;
  /** Aborted when the client goes away before the answer. */
  readonly gone: AbortSignal;
}

/**
 * A queue of an {@linkcode SqsDouble}; get one from
 * {@linkcode SqsDouble.createQueue} or {@linkcode SqsDouble.queue}.
 */
export class SqsQueue {
  /** The queue's name. */
  readonly name: string;
  /** The URL to pass as `QueueUrl`. */
  readonly url: string;
  /** `arn:aws:sqs:<region>:<account>:<name>`. */
  readonly arn: string;
  readonly #send: (body: string, options: SendOptions, senderId: string) => string;
  readonly #now: () => number;

  /** Made by the double only. */
  constructor(
    queue: { name: string; url: string; arn: string },
    send: (body: string, options: SendOptions, senderId: string) => string,
    now: () => number,
  ) {
    this.name = queue.name;
    this.url = queue.url;
    this.arn = queue.arn;
    this.#send = send;
    this.#now = now;
  }

  /**
   * Puts a message in the queue as SendMessage would (no HTTP request) and
   * wakes the long polls waiting on it. Returns the MessageId.
   */
  send(body: string, options: SendOptions = {}): string {
    return this.#send(body, options, options.senderId ?? DOUBLE_ACCOUNT_ID);
  }

  /** The double's clock, ms since the epoch. */
  now(): number {
    return this.#now();
  }
}

/**
 * An SQS service on 127.0.0.1, with an in-process control API.
 * Start it with {@linkcode SqsDouble.start}; always {@linkcode close} it.
 */
export class SqsDouble {
  /** `http://127.0.0.1:PORT`, for the SDK's `endpoint`. */
  readonly endpoint: string;
  /** The region requests must be signed for. */
  readonly region: string;
  /** The credentials requests must be signed with. */
  readonly credentials: { readonly accessKeyId: string; readonly secretAccessKey: string };
  readonly #port: number;
  readonly #server: Server;
  readonly #clock: { now(): number };
  readonly #pollIntervalMs: number;
  #sockets = new Set<Socket>();
  readonly #timers = new Set<ReturnType<typeof setTimeout>>();
  readonly #sleepers = new Set<() => void>();
  readonly #queues = new Map<string, Queue>();
  readonly #deletedAt = new Map<string, number>();
  readonly #handles = new Map<string, { queue: Queue; serial: number }>();
  readonly #faults: SqsFault[] = [];
  readonly #served: { action: string; kind: SqsFaultKind }[] = [];
  readonly #requests = new Map<string, number>();
  #serial = 0;
  #closed = false;

  private constructor(server: Server, port: number, options: SqsDoubleOptions) {
    this.#server = server;
    this.#port = port;
    this.endpoint = `http://127.0.0.1:${port}`;
    this.region = options.region ?? "us-east-1";
    this.credentials = { ...(options.credentials ?? TEST_CREDENTIALS) };
    this.#clock = options.clock ?? { now: () => Date.now() };
    this.#pollIntervalMs = options.pollIntervalMs ?? 50;
    for (const name of options.queues ?? []) this.createQueue(name);
  }

  /** Starts the double on a free port of 127.0.0.1. */
  static async start(options: SqsDoubleOptions = {}): Promise<SqsDouble> {
    const interval = options.pollIntervalMs ?? 50;
    if (!Number.isSafeInteger(interval) || interval < 1) {
      throw new RangeError(`Invalid poll interval: ${interval} ms is not a whole number >= 1`);
    }
    const { server, port, sockets } = await listenLoopback("SQS");
    const double = new SqsDouble(server, port, options);
    double.#sockets = sockets;
    server.on("request", (req: IncomingMessage, res: ServerResponse) => {
      double.#handle(req, res).catch((e) => {
        if (!res.headersSent && !res.destroyed) double.#sendError(res, e);
        else res.destroy();
      });
    });
    return double;
  }

  // -------------------------------------------------------------------------
  // Control API

  /** What an SDK client needs: `new SQSClient({ ...sqs.connection, maxAttempts: 1 })`. */
  get connection(): SqsConnection {
    return { endpoint: this.endpoint, region: this.region, credentials: { ...this.credentials } };
  }

  /** The double's clock, ms since the epoch. */
  now(): number {
    return this.#clock.now();
  }

  /**
   * Creates a queue (returns the existing one when it exists). `attributes`
   * as CreateQueue takes them, e.g. `{ VisibilityTimeout: "60" }`.
   */
  createQueue(name: string, attributes: Readonly<Record<string, string>> = {}): SqsQueue {
    try {
      checkQueueName(name);
      const existing = this.#queues.get(name);
      if (existing) return this.#handleOf(existing);
      return this.#handleOf(this.#create(name, checkAttributes(attributes)));
    } catch (e) {
      throw e instanceof SqsError ? new RangeError(`Cannot create queue ${name}: ${e.message}`) : e;
    }
  }

  /** The queue of that name. */
  queue(name: string): SqsQueue {
    return this.#handleOf(this.#queue(name));
  }

  /** Names of the queues, sorted. */
  queues(): string[] {
    return [...this.#queues.keys()].sort();
  }

  /** The messages a queue holds, in send order. */
  messages(name: string): DoubleMessage[] {
    const queue = this.#queue(name);
    this.#sweep(queue);
    const now = this.now();
    return [...queue.messages.values()].map((m) => ({
      messageId: m.messageId,
      body: m.body,
      receiveCount: m.receiveCount,
      visible: m.visibleAt <= now,
      inFlight: m.visibleAt > now && m.receiveCount > 0,
      duplicate: m.duplicate,
    }));
  }

  /** DeleteMessage calls on a queue that succeeded with a stale handle and deleted nothing. */
  ignoredDeletes(name: string): number {
    return this.#queue(name).ignoredDeletes;
  }

  /** Long polls waiting now (on one queue, or on all). */
  waitingReceives(name?: string): number {
    if (name !== undefined) return this.#queue(name).polling;
    let n = 0;
    for (const q of this.#queues.values()) n += q.polling;
    return n;
  }

  /** Makes waiting long polls look at the clock now (call it after moving a manual clock). */
  wake(): void {
    for (const q of this.#queues.values()) this.#notify(q);
  }

  /** Serves `fault` to the next matching requests (after faults injected before it). */
  inject(fault: SqsFault): void {
    const count = fault.count ?? 1;
    if (!Number.isSafeInteger(count) || count < 1) {
      throw new RangeError(`Invalid fault count: ${count}`);
    }
    if (fault.kind === "error" && fault.code === undefined) {
      throw new TypeError("An error fault needs a code");
    }
    const receiveOnly = fault.kind === "duplicate" || fault.kind === "empty";
    if (receiveOnly && fault.action !== undefined && fault.action !== "ReceiveMessage") {
      throw new RangeError(`A ${fault.kind} fault applies to ReceiveMessage, not ${fault.action}`);
    }
    const action = fault.action ?? (receiveOnly ? "ReceiveMessage" : undefined);
    this.#faults.push(action === undefined ? { ...fault, count } : { ...fault, action, count });
  }

  /** Faults still waiting to be served. */
  faultsLeft(): number {
    return this.#faults.reduce((n, f) => n + (f.count ?? 1), 0);
  }

  /** Faults served so far, in order. */
  faultsServed(): { action: string; kind: SqsFaultKind }[] {
    return [...this.#served];
  }

  /** Requests received per action (`X-Amz-Target` without `AmazonSQS.`), faulted ones included. */
  requestCounts(): Record<string, number> {
    return Object.fromEntries(this.#requests);
  }

  /** Requests received for one action. */
  requestCount(action: SqsAction): number {
    return this.#requests.get(action) ?? 0;
  }

  /** Forgets the request counters and served faults (not the queues). */
  resetCounters(): void {
    this.#requests.clear();
    this.#served.length = 0;
  }

  /** Stops the server, ends every connection, long poll and timer. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#timers) clearTimeout(t);
    this.#timers.clear();
    for (const wake of [...this.#sleepers]) wake();
    for (const q of this.#queues.values()) this.#notify(q);
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sockets) s.destroy();
    await closed;
  }

  // -------------------------------------------------------------------------
  // Queues and messages

  #create(name: string, attributes: Map<string, string>): Queue {
    const queue: Queue = {
      name,
      url: `${this.endpoint}/${DOUBLE_ACCOUNT_ID}/${name}`,
      arn: `arn:aws:sqs:${this.region}:${DOUBLE_ACCOUNT_ID}:${name}`,
      createdAt: this.now(),
      attributes,
      messages: new Map(),
      waiters: new Set(),
      lastPurgeAt: null,
      ignoredDeletes: 0,
      polling: 0,
      deleted: false,
    };
    this.#queues.set(name, queue);
    return queue;
  }

  #handleOf(queue: Queue): SqsQueue {
    return new SqsQueue(
      queue,
      (body, options, senderId) => {
        const live = this.#queues.get(queue.name);
        if (live !== queue) throw new RangeError(`The queue ${queue.name} was deleted`);
        const why = bodyProblem(body, numberAttribute(queue, "MaximumMessageSize"));
        if (why !== null) throw new RangeError(`Cannot send to ${queue.name}: ${why}`);
        const delay = options.delaySeconds ?? numberAttribute(queue, "DelaySeconds");
        if (!Number.isSafeInteger(delay) || delay < 0 || delay > 900) {
          throw new RangeError(`Invalid delay: ${delay} s (0..900)`);
        }
        return this.#enqueue(queue, body, delay, senderId);
      },
      () => this.now(),
    );
  }

  #queue(name: string): Queue {
    const queue = this.#queues.get(name);
    if (!queue) throw new RangeError(`No queue ${name} in the SQS double`);
    return queue;
  }

  #enqueue(queue: Queue, body: string, delaySeconds: number, senderId: string): string {
    const now = this.now();
    const message: Message = {
      serial: ++this.#serial,
      messageId: randomUUID(),
      body,
      md5: md5(body),
      sentAt: now,
      senderId,
      duplicate: false,
      visibleAt: now + delaySeconds * SECOND,
      receiveCount: 0,
      firstReceiveAt: null,
      receivedAt: null,
      handle: null,
    };
    queue.messages.set(message.serial, message);
    this.#notify(queue);
    return message.messageId;
  }

  #notify(queue: Queue): void {
    for (const wake of [...queue.waiters]) wake();
  }

  /** Drops messages past the retention period. */
  #sweep(queue: Queue): void {
    const keepMs = numberAttribute(queue, "MessageRetentionPeriod") * SECOND;
    const now = this.now();
    for (const m of queue.messages.values()) {
      if (now >= m.sentAt + keepMs) queue.messages.delete(m.serial);
    }
  }

  /** Takes up to `max` visible messages, oldest first, and puts them in flight. */
  #take(queue: Queue, max: number, visibilitySeconds: number): Message[] {
    this.#sweep(queue);
    const now = this.now();
    const taken: Message[] = [];
    for (const m of queue.messages.values()) {
      if (taken.length >= max) break;
      if (m.visibleAt > now) continue;
      m.receiveCount++;
      m.firstReceiveAt ??= now;
      m.receivedAt = now;
      m.visibleAt = now + visibilitySeconds * SECOND;
      m.handle = this.#newHandle(queue, m.serial);
      taken.push(m);
    }
    return taken;
  }

  #newHandle(queue: Queue, serial: number): string {
    let handle: string;
    do {
      handle = `AQEB${randomBytes(108).toString("base64")}`;
    } while (this.#handles.has(handle));
    this.#handles.set(handle, { queue, serial });
    return handle;
  }

  #twin(queue: Queue, m: Message): void {
    const twin: Message = {
      serial: ++this.#serial,
      messageId: m.messageId,
      body: m.body,
      md5: m.md5,
      sentAt: m.sentAt,
      senderId: m.senderId,
      duplicate: true,
      visibleAt: this.now(),
      receiveCount: m.receiveCount - 1,
      firstReceiveAt: null,
      receivedAt: null,
      handle: null,
    };
    queue.messages.set(twin.serial, twin);
  }

  // -------------------------------------------------------------------------
  // Request handling

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    res.setHeader("x-amzn-RequestId", randomUUID());
    const mediaType = (headerValue(req, "content-type") ?? "").split(";")[0]!.trim().toLowerCase();
    const url = new URL(req.url ?? "/", "http://double");
    if (mediaType === "application/x-www-form-urlencoded" || url.searchParams.has("Action")) {
      await drain(req);
      return sendQueryProtocolError(res);
    }
    const gone = new AbortController();
    res.on("close", () => {
      if (!res.writableEnded) gone.abort();
    });
    try {
      const target = headerValue(req, "x-amz-target");
      const m = target === undefined ? null : /^AmazonSQS\.([A-Za-z]+)$/.exec(target);
      if (!m) {
        await drain(req);
        throw new SqsError(
          400,
          null,
          "com.amazon.coral.service#UnknownOperationException",
          `Unknown operation: X-Amz-Target ${target ?? "is missing"}`,
        );
      }
      const action = m[1]!;
      this.#requests.set(action, (this.#requests.get(action) ?? 0) + 1);
      if (req.method !== "POST" || url.pathname !== "/" || url.search !== "") {
        await drain(req);
        throw sqsError(
          404,
          "InvalidAddress",
          "InvalidAddress",
          `The address ${req.method} ${req.url} is not valid for this endpoint (POST / expected).`,
        );
      }
      if (mediaType !== "application/x-amz-json-1.0") {
        await drain(req);
        throw serialization(
          `Content-Type ${mediaType || "(none)"} is not application/x-amz-json-1.0`,
        );
      }
      if (!(action in MEMBERS)) {
        await drain(req);
        if (NOT_IMPLEMENTED.has(action)) throw notImplemented(action);
        throw new SqsError(
          400,
          null,
          "com.amazon.coral.service#UnknownOperationException",
          `Unknown operation: ${action}`,
        );
      }
      const op = action as SqsAction;
      const fault = this.#takeFault(op);
      if (fault?.kind === "slow") await this.#sleep(fault.delayMs ?? 1000, gone.signal);
      if (this.#closed || gone.signal.aborted) {
        res.destroy();
        return;
      }
      const body = await readBody(req, MAX_REQUEST_BYTES);
      if (fault?.kind === "reset") {
        req.socket.destroy();
        return;
      }
      this.#checkSignature(req, body);
      const error = fault ? faultError(fault) : null;
      if (error) throw error;
      const params = parseParams(op, body);
      await this.#dispatch(op, params, { res, fault, gone: gone.signal });
    } catch (e) {
      if (!res.headersSent && !res.destroyed) this.#sendError(res, e);
      else res.destroy();
    }
  }

  /** Checks the SigV4 `Authorization` header against the double's credentials. */
  #checkSignature(req: IncomingMessage, body: Uint8Array): void {
    const auth = headerValue(req, "authorization");
    if (auth === undefined) {
      throw coralError(
        403,
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "Request is missing Authentication Token",
      );
    }
    const m = SIGV4.exec(auth);
    if (!m) {
      throw coralError(
        400,
        "IncompleteSignature",
        "IncompleteSignatureException",
        "Authorization header requires 'Credential', 'SignedHeaders' and 'Signature' " +
          "with AWS4-HMAC-SHA256",
      );
    }
    const [, accessKey, date, region, service, signedList, signature] = m as unknown as string[];
    const amzDate = headerValue(req, "x-amz-date");
    if (amzDate === undefined) {
      throw coralError(
        400,
        "IncompleteSignature",
        "IncompleteSignatureException",
        "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header",
      );
    }
    if (accessKey !== this.credentials.accessKeyId) {
      throw coralError(
        403,
        "InvalidClientTokenId",
        "UnrecognizedClientException",
        "The security token included in the request is invalid.",
      );
    }
    const mismatch = (why: string) =>
      coralError(403, "SignatureDoesNotMatch", "InvalidSignatureException", why);
    if (service !== "sqs" || region !== this.region) {
      throw mismatch(
        "Credential should be scoped to a valid region and service: " +
          `${region}/${service}, not ${this.region}/sqs`,
      );
    }
    if (amzDate.slice(0, 8) !== date) {
      throw mismatch(
        "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date " +
          `from HTTP: '${date}' != '${amzDate.slice(0, 8)}'`,
      );
    }
    const signed = signedList!.split(";");
    if (!signed.includes("host") || !signed.includes("x-amz-date")) {
      throw mismatch("The host and x-amz-date headers must be signed");
    }
    const lines: string[] = [];
    for (const name of signed) {
      const value = headerValue(req, name);
      if (value === undefined) throw mismatch(`Signed header ${name} is missing`);
      lines.push(`${name}:${value.replace(/[ \t]+/g, " ").trim()}`);
    }
    const sha = createHash("sha256").update(body).digest("hex");
    const declared = headerValue(req, "x-amz-content-sha256");
    const canonical = [
      req.method ?? "POST",
      "/",
      "",
      lines.join("\n") + "\n",
      signedList,
      declared ?? sha,
    ].join("\n");
    const toSign = [
      "AWS4-HMAC-SHA256",
      amzDate,
      `${date}/${region}/${service}/aws4_request`,
      createHash("sha256").update(canonical).digest("hex"),
    ].join("\n");
    let key: Uint8Array = new TextEncoder().encode(`AWS4${this.credentials.secretAccessKey}`);
    for (const part of [date!, region!, service!, "aws4_request"]) {
      key = createHmac("sha256", key).update(part).digest();
    }
    if (createHmac("sha256", key).update(toSign).digest("hex") !== signature) {
      throw mismatch(
        "The request signature we calculated does not match the signature you provided.",
      );
    }
    if (declared !== undefined && declared !== sha) {
      throw mismatch(
        `x-amz-content-sha256 ${declared} does not match the payload's SHA-256 ${sha}`,
      );
    }
  }

  #dispatch(op: SqsAction, p: Params, call: Call): Promise<void> | void {
    switch (op) {
      case "CreateQueue":
        return this.#createQueueAction(p, call);
      case "GetQueueUrl": {
        const name = p.string("QueueName", true);
        const owner = p.string("QueueOwnerAWSAccountId", false);
        const queue = this.#queues.get(name);
        if (!queue || (owner !== undefined && owner !== DOUBLE_ACCOUNT_ID)) {
          throw queueDoesNotExist();
        }
        return answer(call, { QueueUrl: queue.url });
      }
      case "GetQueueAttributes":
        return this.#getQueueAttributes(p, call);
      case "DeleteQueue": {
        const queue = this.#queueOf(p);
        queue.deleted = true;
        this.#queues.delete(queue.name);
        this.#deletedAt.set(queue.name, this.now());
        this.#notify(queue);
        return answer(call, {});
      }
      case "PurgeQueue": {
        const queue = this.#queueOf(p);
        const now = this.now();
        if (queue.lastPurgeAt !== null && now < queue.lastPurgeAt + PURGE_INTERVAL_MS) {
          throw sqsError(
            403,
            "AWS.SimpleQueueService.PurgeQueueInProgress",
            "PurgeQueueInProgress",
            `Only one PurgeQueue operation on ${queue.name} is allowed every 60 seconds.`,
          );
        }
        queue.lastPurgeAt = now;
        queue.messages.clear();
        return answer(call, {});
      }
      case "SendMessage":
        return this.#sendMessage(p, call);
      case "ReceiveMessage":
        return this.#receiveMessage(p, call);
      case "DeleteMessage":
        return this.#deleteMessage(p, call);
      case "ChangeMessageVisibility":
        return this.#changeMessageVisibility(p, call);
    }
  }

  #createQueueAction(p: Params, call: Call): void {
    const name = p.string("QueueName", true);
    checkQueueName(name);
    const attrs = p.stringMap("Attributes") ?? {};
    p.stringMap("tags");
    const checked = checkAttributes(attrs);
    const existing = this.#queues.get(name);
    if (existing) {
      for (const [k, v] of checked) {
        if (existing.attributes.get(k) !== v) {
          throw sqsError(
            400,
            "QueueAlreadyExists",
            "QueueNameExists",
            `A queue already exists with the same name and a different value for attribute ${k}`,
          );
        }
      }
      return answer(call, { QueueUrl: existing.url });
    }
    const deletedAt = this.#deletedAt.get(name);
    if (deletedAt !== undefined && this.now() < deletedAt + RECREATE_DELAY_MS) {
      throw sqsError(
        400,
        "AWS.SimpleQueueService.QueueDeletedRecently",
        "QueueDeletedRecently",
        "You must wait 60 seconds after deleting a queue before you can create another " +
          "with the same name.",
      );
    }
    return answer(call, { QueueUrl: this.#create(name, checked).url });
  }

  #getQueueAttributes(p: Params, call: Call): void {
    const queue = this.#queueOf(p);
    const names = p.stringList("AttributeNames") ?? [];
    this.#sweep(queue);
    const now = this.now();
    const all: Record<string, string> = {};
    let visible = 0;
    let inFlight = 0;
    let delayed = 0;
    for (const m of queue.messages.values()) {
      if (m.visibleAt <= now) visible++;
      else if (m.receiveCount > 0) inFlight++;
      else delayed++;
    }
    all.ApproximateNumberOfMessages = String(visible);
    all.ApproximateNumberOfMessagesNotVisible = String(inFlight);
    all.ApproximateNumberOfMessagesDelayed = String(delayed);
    all.CreatedTimestamp = String(Math.floor(queue.createdAt / SECOND));
    all.LastModifiedTimestamp = String(Math.floor(queue.createdAt / SECOND));
    all.QueueArn = queue.arn;
    for (const [k, v] of queue.attributes) all[k] = v;
    const out: Record<string, string> = {};
    for (const name of names) {
      if (name === "All") {
        Object.assign(out, all);
      } else if (name in all) {
        out[name] = all[name]!;
      } else if (!STORED_ATTRIBUTES.has(name)) {
        throw unknownAttribute(name);
      }
    }
    return answer(call, Object.keys(out).length === 0 ? {} : { Attributes: out });
  }

  #sendMessage(p: Params, call: Call): void {
    const queue = this.#queueOf(p);
    const body = p.string("MessageBody", true);
    const delay = p.integer("DelaySeconds");
    if (p.has("MessageAttributes") || p.has("MessageSystemAttributes")) {
      throw notImplemented("message attributes");
    }
    if (p.has("MessageDeduplicationId")) {
      throw invalid(
        "Value for parameter MessageDeduplicationId is invalid. Reason: The request includes " +
          "a parameter that is not valid for this queue type.",
      );
    }
    p.string("MessageGroupId", false);
    const max = numberAttribute(queue, "MaximumMessageSize");
    if (Buffer.byteLength(body) > max) {
      throw invalid(
        `One or more parameters are invalid. Reason: Message must be shorter than ${max} bytes.`,
      );
    }
    const why = bodyProblem(body, max);
    if (why !== null) {
      throw sqsError(400, "InvalidMessageContents", "InvalidMessageContents", why);
    }
    if (delay !== undefined && (delay < 0 || delay > 900)) {
      throw outOfRange("DelaySeconds", delay, "DelaySeconds must be >= 0 and <= 900.");
    }
    const messageId = this.#enqueue(
      queue,
      body,
      delay ?? numberAttribute(queue, "DelaySeconds"),
      DOUBLE_ACCOUNT_ID,
    );
    const digest = md5(body);
    answer(call, {
      MD5OfMessageBody: call.fault?.kind === "wrong-md5" ? corrupt(digest) : digest,
      MessageId: messageId,
    });
  }

  async #receiveMessage(p: Params, call: Call): Promise<void> {
    const queue = this.#queueOf(p);
    const names = [
      ...(p.stringList("AttributeNames") ?? []),
      ...(p.stringList("MessageSystemAttributeNames") ?? []),
    ];
    for (const n of names) {
      if (!RECEIVE_ATTRIBUTE_NAMES.has(n)) {
        throw unknownAttribute(n);
      }
    }
    p.stringList("MessageAttributeNames");
    p.string("ReceiveRequestAttemptId", false);
    const max = p.integer("MaxNumberOfMessages") ?? 1;
    if (max < 1 || max > 10) {
      throw outOfRange("MaxNumberOfMessages", max, "Must be between 1 and 10, if provided.");
    }
    const visibility = p.integer("VisibilityTimeout") ??
      numberAttribute(queue, "VisibilityTimeout");
    if (visibility < 0 || visibility > MAX_VISIBILITY_TIMEOUT_S) {
      throw outOfRange(
        "VisibilityTimeout",
        visibility,
        `Must be >= 0 and <= ${MAX_VISIBILITY_TIMEOUT_S}, if provided.`,
      );
    }
    const wait = p.integer("WaitTimeSeconds") ??
      numberAttribute(queue, "ReceiveMessageWaitTimeSeconds");
    if (wait < 0 || wait > MAX_WAIT_TIME_S) {
      throw outOfRange(
        "WaitTimeSeconds",
        wait,
        `Must be >= 0 and <= ${MAX_WAIT_TIME_S}, if provided.`,
      );
    }
    const fault = call.fault;
    if (fault?.kind === "empty") return answer(call, {});
    let taken: Message[] = [];
    const deadline = performance.now() + wait * SECOND;
    queue.polling++;
    try {
      while (!this.#closed && !call.gone.aborted && !queue.deleted) {
        taken = this.#take(queue, max, visibility);
        const left = deadline - performance.now();
        if (taken.length > 0 || left <= 0) break;
        await this.#changed(queue, Math.min(left, this.#pollIntervalMs), call.gone);
      }
    } finally {
      queue.polling--;
    }
    if (this.#closed) {
      call.res.destroy();
      return;
    }
    if (fault?.kind === "duplicate") {
      if (taken.length === 0) {
        this.#unserve(fault);
      } else {
        for (const m of taken) this.#twin(queue, m);
      }
    }
    if (taken.length === 0) return answer(call, {});
    const wanted = new Set(names.includes("All") ? MESSAGE_ATTRIBUTES : names);
    answer(call, {
      Messages: taken.map((m) => {
        const attributes: Record<string, string> = {};
        if (wanted.has("SenderId")) attributes.SenderId = m.senderId;
        if (wanted.has("SentTimestamp")) attributes.SentTimestamp = String(m.sentAt);
        if (wanted.has("ApproximateReceiveCount")) {
          attributes.ApproximateReceiveCount = String(m.receiveCount);
        }
        if (wanted.has("ApproximateFirstReceiveTimestamp")) {
          attributes.ApproximateFirstReceiveTimestamp = String(m.firstReceiveAt);
        }
        return {
          MessageId: m.messageId,
          ReceiptHandle: m.handle,
          MD5OfBody: fault?.kind === "wrong-md5" ? corrupt(m.md5) : m.md5,
          Body: m.body,
          ...(Object.keys(attributes).length > 0 ? { Attributes: attributes } : {}),
        };
      }),
    });
  }

  #deleteMessage(p: Params, call: Call): void {
    const queue = this.#queueOf(p);
    const handle = p.string("ReceiptHandle", true);
    const issued = this.#handles.get(handle);
    if (!issued || issued.queue !== queue) throw receiptHandleIsInvalid(handle);
    const message = queue.messages.get(issued.serial);
    if (message) {
      if (message.handle === handle) queue.messages.delete(message.serial);
      else queue.ignoredDeletes++;
    }
    answer(call, {});
  }

  #changeMessageVisibility(p: Params, call: Call): void {
    const queue = this.#queueOf(p);
    const handle = p.string("ReceiptHandle", true);
    const seconds = p.integer("VisibilityTimeout");
    if (seconds === undefined) throw missing("VisibilityTimeout");
    if (seconds < 0 || seconds > MAX_VISIBILITY_TIMEOUT_S) {
      throw outOfRange(
        "VisibilityTimeout",
        seconds,
        `Must be >= 0 and <= ${MAX_VISIBILITY_TIMEOUT_S}, if provided.`,
      );
    }
    const issued = this.#handles.get(handle);
    if (!issued || issued.queue !== queue) throw receiptHandleIsInvalid(handle);
    this.#sweep(queue);
    const message = queue.messages.get(issued.serial);
    if (!message || message.handle !== handle) {
      throw invalid(
        `Value ${handle} for parameter ReceiptHandle is invalid. Reason: Message does not ` +
          "exist or is not available for visibility timeout change.",
      );
    }
    const now = this.now();
    if (message.visibleAt <= now) return answer(call, {});
    if (now + seconds * SECOND > message.receivedAt! + MAX_VISIBILITY_TIMEOUT_S * SECOND) {
      throw outOfRange(
        "VisibilityTimeout",
        seconds,
        "Total VisibilityTimeout for the message is beyond the limit " +
          `[${MAX_VISIBILITY_TIMEOUT_S} seconds]`,
      );
    }
    message.visibleAt = now + seconds * SECOND;
    if (seconds === 0) this.#notify(queue);
    answer(call, {});
  }

  /** The queue a request's `QueueUrl` names. */
  #queueOf(p: Params): Queue {
    const raw = p.string("QueueUrl", true);
    let url: URL;
    try {
      url = new URL(raw);
    } catch {
      throw sqsError(
        404,
        "InvalidAddress",
        "InvalidAddress",
        `The address ${raw} is not valid for this endpoint.`,
      );
    }
    const ours = url.protocol === "http:" && url.port === String(this.#port) &&
      (url.hostname === "127.0.0.1" || url.hostname === "localhost");
    const aws = url.protocol === "https:" && url.host === `sqs.${this.region}.amazonaws.com`;
    if (!ours && !aws) {
      throw sqsError(
        404,
        "InvalidAddress",
        "InvalidAddress",
        `The address ${raw} is not valid for this endpoint.`,
      );
    }
    const m = /^\/(\d{12})\/([A-Za-z0-9_-]{1,80})\/?$/.exec(url.pathname);
    if (!m || m[1] !== DOUBLE_ACCOUNT_ID) throw queueDoesNotExist();
    const queue = this.#queues.get(m[2]!);
    if (!queue) throw queueDoesNotExist();
    return queue;
  }

  /** Resolves after `ms` of real time, on a change to the queue, or when the client goes. */
  #changed(queue: Queue, ms: number, gone: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#timers.delete(timer);
        queue.waiters.delete(done);
        gone.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#timers.add(timer);
      queue.waiters.add(done);
      gone.addEventListener("abort", done, { once: true });
    });
  }

  #takeFault(action: SqsAction): SqsFault | null {
    const i = this.#faults.findIndex((f) => f.action === undefined || f.action === action);
    if (i < 0) return null;
    const f = this.#faults[i]!;
    const left = (f.count ?? 1) - 1;
    if (left <= 0) this.#faults.splice(i, 1);
    else this.#faults[i] = { ...f, count: left };
    this.#served.push({ action, kind: f.kind });
    return f;
  }

  /** Puts back a fault that found nothing to act on (a duplicate with no message). */
  #unserve(fault: SqsFault): void {
    this.#served.pop();
    const i = this.#faults.findIndex((f) => f.kind === fault.kind && f.action === fault.action);
    if (i >= 0) this.#faults[i] = { ...fault, count: (this.#faults[i]!.count ?? 1) + 1 };
    else this.#faults.unshift({ ...fault, count: 1 });
  }

  /** Resolves after `ms` of real time, when the client goes, or when the double closes. */
  #sleep(ms: number, gone: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#timers.delete(timer);
        this.#sleepers.delete(done);
        gone.removeEventListener("abort", done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#timers.add(timer);
      this.#sleepers.add(done);
      gone.addEventListener("abort", done, { once: true });
    });
  }

  #sendError(res: ServerResponse, e: unknown): void {
    const err = e instanceof SqsError ? e : sqsError(
      500,
      "InternalError",
      "InternalError",
      `The SQS double failed: ${e instanceof Error ? e.message : String(e)}`,
    );
    const body = JSON.stringify({ __type: err.type, message: err.message });
    const headers: Record<string, string> = {
      "Content-Type": "application/x-amz-json-1.0",
      "Content-Length": String(Buffer.byteLength(body)),
    };
    if (err.code !== null) {
      headers["x-amzn-query-error"] = `${err.code};${err.status >= 500 ? "Receiver" : "Sender"}`;
    }
    res.writeHead(err.status, headers);
    res.end(body);
  }
}

// ---------------------------------------------------------------------------
// SNS and S3 bodies

/** Options for {@linkcode snsEnvelope}. */
export interface SnsEnvelopeOptions {
  /** The notification's `Subject`; default none (the key is left out). */
  readonly subject?: string;
  /** SNS's `MessageId`; default a random UUID. */
  readonly messageId?: string;
  /** The `Timestamp`, ms since the epoch; default now. */
  readonly timestampMs?: number;
}

/**
 * The body SNS puts in an SQS queue for `message` published to `topicArn`
 * (without raw message delivery), laid out as SNS lays it out. Parse it, then
 * parse its `Message` a second time.
 *
 * @example
 * ```ts
 * const body = snsEnvelope("arn:aws:sns:us-east-1:123456789012:jobs", '{"JobId":"j1"}');
 * JSON.parse(JSON.parse(body).Message).JobId; // "j1"
 * ```
 */
export function snsEnvelope(
  topicArn: string,
  message: string,
  options: SnsEnvelopeOptions = {},
): string {
  const m = /^arn:aws:sns:([a-z0-9-]+):(\d{12}):([A-Za-z0-9_-]{1,256})$/.exec(topicArn);
  if (!m) {
    throw new SyntaxError(
      `Cannot parse topic ARN "${topicArn}": expected arn:aws:sns:<region>:<account>:<name>`,
    );
  }
  const region = m[1]!;
  const fields: [string, string][] = [
    ["Type", "Notification"],
    ["MessageId", options.messageId ?? randomUUID()],
    ["TopicArn", topicArn],
  ];
  if (options.subject !== undefined) fields.push(["Subject", options.subject]);
  fields.push(
    ["Message", message],
    ["Timestamp", new Date(options.timestampMs ?? Date.now()).toISOString()],
    ["SignatureVersion", "1"],
    ["Signature", randomBytes(256).toString("base64")],
    [
      "SigningCertURL",
      `https://sns.${region}.amazonaws.com/SimpleNotificationService-${
        randomBytes(16).toString("hex")
      }.pem`,
    ],
    [
      "UnsubscribeURL",
      `https://sns.${region}.amazonaws.com/?Action=Unsubscribe` +
      `&SubscriptionArn=${topicArn}:${randomUUID()}`,
    ],
  );
  return `{\n${fields.map(([k, v]) => `  "${k}" : ${JSON.stringify(v)}`).join(",\n")}\n}`;
}

/** Options for {@linkcode publishToQueue}. */
export interface PublishOptions {
  /** Raw message delivery: the body is `message` itself; default false (the SNS envelope). */
  readonly raw?: boolean;
  /** The notification's `Subject` (envelope only); default none. */
  readonly subject?: string;
  /** SNS's `MessageId` (envelope only); default a random UUID. */
  readonly messageId?: string;
}

/** What {@linkcode publishToQueue} put in the queue. */
export interface Published {
  /** SQS's MessageId of the delivered message. */
  readonly sqsMessageId: string;
  /** The SQS message body. */
  readonly body: string;
}

/**
 * Delivers `message`, published to `topicArn`, to `queue` as an SNS -> SQS
 * subscription would: wrapped in the SNS envelope (its `Timestamp` from the
 * double's clock), or as is with `raw`. An object is sent as its JSON.
 *
 * @example
 * ```ts
 * publishToQueue(queue, "arn:aws:sns:us-east-1:123456789012:jobs", describeJobJson);
 * publishToQueue(queue, topic, s3RestoreEvent("archives", "pack/a b.tar"), { raw: true });
 * ```
 */
export function publishToQueue(
  queue: SqsQueue,
  topicArn: string,
  message: string | Readonly<Record<string, unknown>>,
  options: PublishOptions = {},
): Published {
  const text = typeof message === "string" ? message : JSON.stringify(message);
  const body = options.raw ? text : snsEnvelope(topicArn, text, {
    timestampMs: queue.now(),
    ...(options.subject === undefined ? {} : { subject: options.subject }),
    ...(options.messageId === undefined ? {} : { messageId: options.messageId }),
  });
  return { sqsMessageId: queue.send(body, { senderId: SNS_SENDER_ID }), body };
}

/** Options for {@linkcode s3EventKey}. */
export interface S3EventKeyOptions {
  /** Encode `/` as `%2F` too (reported of older S3 events); default false. */
  readonly encodeSlash?: boolean;
}

/**
 * A key as S3 event notifications carry it: form-URL-encoded (UTF-8, space as
 * `+`, only `A-Za-z0-9._*-` and by default `/` left as they are).
 *
 * @example
 * ```ts
 * s3EventKey("pack/red flower+1.tar"); // "pack/red+flower%2B1.tar"
 * ```
 */
export function s3EventKey(key: string, options: S3EventKeyOptions = {}): string {
  let out = "";
  for (const b of new TextEncoder().encode(key)) {
    const c = String.fromCharCode(b);
    if (/^[A-Za-z0-9._*-]$/.test(c)) out += c;
    else if (b === 0x20) out += "+";
    else if (b === 0x2f && !options.encodeSlash) out += "/";
    else out += `%${b.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}

/** The S3 restore events. */
export type S3RestoreEventName =
  | "ObjectRestore:Post"
  | "ObjectRestore:Completed"
  | "ObjectRestore:Delete";

/** Options for {@linkcode s3RestoreEvent}. */
export interface S3RestoreEventOptions extends S3EventKeyOptions {
  /** Default `ObjectRestore:Completed`. */
  readonly eventName?: S3RestoreEventName;
  /** Default `us-east-1`. */
  readonly region?: string;
  /** `eventTime`, ms since the epoch; default now. */
  readonly timeMs?: number;
  /** The object's size; default 0. */
  readonly size?: number;
  /** The object's ETag (no quotes); default the MD5 of nothing. */
  readonly eTag?: string;
  /** Included when given (versioned buckets). */
  readonly versionId?: string;
  /** When the restored copy expires (Completed only); default midnight UTC after a day. */
  readonly expiryMs?: number;
  /** The object's archive class (Completed only); default `GLACIER`. */
  readonly storageClass?: "GLACIER" | "DEEP_ARCHIVE";
  /** The notification configuration's id; default `coldpack-restores`. */
  readonly configurationId?: string;
}

/**
 * The body S3 sends to SQS (or SNS) for a restore event of `bucket`/`key`:
 * `{"Records":[{ "eventName": "ObjectRestore:Completed", "s3": {...}, ... }]}`,
 * the key encoded by {@linkcode s3EventKey}.
 *
 * @example
 * ```ts
 * const body = s3RestoreEvent("archives", "pack/0001.tar", { size: 26_214_400 });
 * JSON.parse(body).Records[0].s3.object.key; // "pack/0001.tar"
 * ```
 */
export function s3RestoreEvent(
  bucket: string,
  key: string,
  options: S3RestoreEventOptions = {},
): string {
  const time = options.timeMs ?? Date.now();
  const eventName = options.eventName ?? "ObjectRestore:Completed";
  const object: Record<string, unknown> = {
    key: s3EventKey(key, options),
    size: options.size ?? 0,
    eTag: options.eTag ?? "d41d8cd98f00b204e9800998ecf8427e",
  };
  if (options.versionId !== undefined) object.versionId = options.versionId;
  object.sequencer = randomBytes(9).toString("hex").toUpperCase();
  const record: Record<string, unknown> = {
    eventVersion: "2.1",
    eventSource: "aws:s3",
    awsRegion: options.region ?? "us-east-1",
    eventTime: new Date(time).toISOString(),
    eventName,
    userIdentity: { principalId: "AmazonCustomer:A1DOUBLEOWNER" },
    requestParameters: { sourceIPAddress: "s3.amazonaws.com" },
    responseElements: {
      "x-amz-request-id": randomBytes(8).toString("hex").toUpperCase(),
      "x-amz-id-2": randomBytes(48).toString("base64"),
    },
    s3: {
      s3SchemaVersion: "1.0",
      configurationId: options.configurationId ?? "coldpack-restores",
      bucket: {
        name: bucket,
        ownerIdentity: { principalId: "A1DOUBLEOWNER" },
        arn: `arn:aws:s3:::${bucket}`,
      },
      object,
    },
  };
  if (eventName === "ObjectRestore:Completed") {
    const expiry = options.expiryMs ?? Math.ceil((time + DAY) / DAY) * DAY;
    record.glacierEventData = {
      restoreEventData: {
        lifecycleRestorationExpiryTime: new Date(expiry).toISOString(),
        lifecycleRestoreStorageClass: options.storageClass ?? "GLACIER",
      },
    };
  }
  return JSON.stringify({ Records: [record] });
}

/**
 * The `s3:TestEvent` body S3 sends once a bucket's notifications are set up
 * (consumers must ignore it).
 */
export function s3TestEvent(bucket: string, options: { readonly timeMs?: number } = {}): string {
  return JSON.stringify({
    Service: "Amazon S3",
    Event: "s3:TestEvent",
    Time: new Date(options.timeMs ?? Date.now()).toISOString(),
    Bucket: bucket,
    RequestId: randomBytes(8).toString("hex").toUpperCase(),
    HostId: randomBytes(48).toString("base64"),
  });
}

// ---------------------------------------------------------------------------
// Helpers

/** The SigV4 `Authorization` header: credential scope, signed headers, signature. */
const SIGV4 = new RegExp(
  String.raw`^AWS4-HMAC-SHA256 Credential=([^/,\s]+)/(\d{8})/([^/,\s]+)/([^/,\s]+)/aws4_request,` +
    String.raw`\s*SignedHeaders=([a-z0-9;-]+),\s*Signature=([0-9a-f]{64})$`,
);

/** A request's JSON members, read with the types the API gives them. */
class Params {
  readonly #op: SqsAction;
  readonly #values: Record<string, unknown>;
  constructor(op: SqsAction, values: Record<string, unknown>) {
    this.#op = op;
    this.#values = values;
  }
  has(name: string): boolean {
    return this.#values[name] !== undefined && this.#values[name] !== null;
  }
  string(name: string, required: true): string;
  string(name: string, required: false): string | undefined;
  string(name: string, required: boolean): string | undefined {
    const v = this.#values[name];
    if (v === undefined || v === null || (required && v === "")) {
      if (required) throw missing(name);
      return undefined;
    }
    if (typeof v !== "string") throw this.#wrongType(name, "a string");
    return v;
  }
  integer(name: string): number | undefined {
    const v = this.#values[name];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== "number" || !Number.isSafeInteger(v)) {
      throw this.#wrongType(name, "an integer");
    }
    return v;
  }
  stringList(name: string): string[] | undefined {
    const v = this.#values[name];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) {
      throw this.#wrongType(name, "a list of strings");
    }
    return v as string[];
  }
  stringMap(name: string): Record<string, string> | undefined {
    const v = this.#values[name];
    if (v === undefined || v === null) return undefined;
    if (!isRecord(v) || !Object.values(v).every((s) => typeof s === "string")) {
      throw this.#wrongType(name, "a map of strings");
    }
    return v as Record<string, string>;
  }
  #wrongType(name: string, what: string): SqsError {
    return serialization(`${this.#op}: ${name} must be ${what}`);
  }
}

function parseParams(op: SqsAction, body: Uint8Array): Params {
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(body));
  } catch (e) {
    throw serialization(`${op}: the body is not JSON: ${e instanceof Error ? e.message : e}`);
  }
  if (!isRecord(value)) throw serialization(`${op}: the body is not a JSON object`);
  const allowed = MEMBERS[op];
  for (const k of Object.keys(value)) {
    if (!allowed.includes(k)) {
      throw invalid(`${op} has no parameter ${k} (the SQS double refuses unknown members)`);
    }
  }
  return new Params(op, value);
}

/** Checks CreateQueue attributes; answers them as strings, defaults filled in. */
function checkAttributes(attributes: Readonly<Record<string, string>>): Map<string, string> {
  const out = new Map<string, string>();
  for (const [name, [, , fallback]] of Object.entries(NUMERIC_ATTRIBUTES)) {
    out.set(name, String(fallback));
  }
  for (const [name, value] of Object.entries(attributes)) {
    if (name === "FifoQueue" || name === "ContentBasedDeduplication") {
      throw notImplemented("FIFO queues");
    }
    const range = NUMERIC_ATTRIBUTES[name];
    if (range) {
      const n = /^\d{1,9}$/.test(value) ? Number(value) : NaN;
      if (!(n >= range[0] && n <= range[1])) {
        throw sqsError(
          400,
          "InvalidAttributeValue",
          "InvalidAttributeValue",
          `Invalid value for the parameter ${name}: ${value} (${range[0]}..${range[1]})`,
        );
      }
      out.set(name, String(n));
    } else if (STORED_ATTRIBUTES.has(name)) {
      out.set(name, value);
    } else {
      throw unknownAttribute(name);
    }
  }
  return out;
}

function checkQueueName(name: string): void {
  if (name.endsWith(".fifo")) throw notImplemented("FIFO queues");
  if (!/^[A-Za-z0-9_-]{1,80}$/.test(name)) {
    throw invalid(
      `Invalid queue name "${name}": 1 to 80 characters of A-Z, a-z, 0-9, hyphen and underscore`,
    );
  }
}

function numberAttribute(queue: Queue, name: string): number {
  return Number(queue.attributes.get(name) ?? NUMERIC_ATTRIBUTES[name]![2]);
}

/** Why SQS would refuse `body`, or null. */
function bodyProblem(body: string, maxBytes: number): string | null {
  if (body.length === 0) return "the message body is empty";
  const bytes = Buffer.byteLength(body);
  if (bytes > maxBytes) return `the message body has ${bytes} bytes, at most ${maxBytes}`;
  for (let i = 0; i < body.length; i++) {
    const c = body.codePointAt(i)!;
    if (c > 0xffff) {
      i++;
      continue;
    }
    const ok = c === 0x9 || c === 0xa || c === 0xd || (c >= 0x20 && c <= 0xd7ff) ||
      (c >= 0xe000 && c <= 0xfffd);
    if (!ok) {
      return `Invalid characters found. Character U+${
        c.toString(16).toUpperCase().padStart(4, "0")
      } at ${i} is not allowed in a message body`;
    }
  }
  return null;
}

function faultError(fault: SqsFault): SqsError | null {
  if (fault.kind === "error") {
    const code = fault.code ?? "InternalError";
    return sqsError(fault.status ?? 400, code, code, fault.message ?? `Injected ${code}`);
  }
  const make = FAULT_ERRORS[fault.kind];
  if (!make) return null;
  const e = make();
  return fault.message === undefined ? e : new SqsError(e.status, e.code, e.type, fault.message);
}

/** Writes a JSON 1.0 answer, or cuts the connection for a `lost-response` fault. */
function answer(call: Call, value: unknown): void {
  if (call.res.destroyed) return;
  if (call.fault?.kind === "lost-response") {
    call.res.destroy();
    return;
  }
  const body = Buffer.from(JSON.stringify(value));
  call.res.writeHead(200, {
    "Content-Type": "application/x-amz-json-1.0",
    "Content-Length": String(body.length),
  });
  call.res.end(body);
}

/** The XML error a query-protocol client can read. */
function sendQueryProtocolError(res: ServerResponse): void {
  const body = `<?xml version="1.0"?><ErrorResponse><Error><Type>Sender</Type>` +
    `<Code>InvalidAction</Code><Message>The SQS double speaks only the AWS JSON 1.0 protocol ` +
    `(Content-Type: application/x-amz-json-1.0, X-Amz-Target: AmazonSQS.&lt;Action&gt;), ` +
    `not the query protocol</Message><Detail/></Error><RequestId>` +
    `${String(res.getHeader("x-amzn-RequestId"))}</RequestId></ErrorResponse>`;
  res.writeHead(400, {
    "Content-Type": "text/xml",
    "Content-Length": String(Buffer.byteLength(body)),
  });
  res.end(body);
}

async function readBody(req: IncomingMessage, limit: number): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of req) {
    const c = chunk as Uint8Array;
    total += c.length;
    if (total > limit) {
      throw invalid(`Request body larger than ${limit} bytes`);
    }
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

async function drain(req: IncomingMessage): Promise<void> {
  for await (const _ of req) { /* discard */ }
}

function headerValue(req: IncomingMessage, name: string): string | undefined {
  const v = req.headers[name];
  return Array.isArray(v) ? v.join(",") : v;
}

function md5(text: string): string {
  return createHash("md5").update(text).digest("hex");
}

/** Another valid-looking digest: the first hex digit changed. */
function corrupt(hex: string): string {
  return (hex[0] === "0" ? "1" : "0") + hex.slice(1);
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
