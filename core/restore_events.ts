/**
 * What a completion message on the restore queue says (PROTOCOLS.md sections
 * 2 and 3): a Glacier job notification (the DescribeJob JSON, inside an SNS
 * envelope or delivered raw) or S3 event records (`ObjectRestore:Completed`,
 * inside an SNS envelope or sent by S3 straight to the queue). Pure: no I/O.
 *
 * A message is only a hint that a retrieval may have finished: it carries no
 * verifiable signature here, so the listener asks the store before it trusts
 * it. Every body gets an answer, never an exception: the events it names,
 * why it is ignored (S3's test event, SNS subscription messages, inventory
 * jobs, S3 events other than a completed restore), or why it is malformed.
 *
 * @example
 * ```ts
 * const notice = parseQueueMessage(message.body);
 * if (notice.kind === "events") {
 *   for (const e of notice.events) if (e.kind === "glacier-job") console.log(e.jobId);
 * }
 * ```
 * @module
 */

import type { JobId } from "./ids.ts";

/** A Glacier job's `StatusCode`. */
export type GlacierJobStatus = "InProgress" | "Succeeded" | "Failed";

/** One "this retrieval changed" fact read from a queue message. */
export type RetrievalEvent =
  | {
    readonly kind: "glacier-job";
    /** Glacier's job id (`JobId`). */
    readonly jobId: JobId;
    /** Check it: a notification also comes for a job that failed. */
    readonly statusCode: GlacierJobStatus;
    /** `VaultARN`, e.g. `arn:aws:glacier:us-east-1:123456789012:vaults/v`, when given. */
    readonly vaultArn: string | null;
    /** `JobDescription` (coldpack puts its retrieval id there), when given. */
    readonly description: string | null;
    /** `StatusMessage`, e.g. why the job failed, when given. */
    readonly statusMessage: string | null;
  }
  | {
    readonly kind: "s3-restore";
    readonly bucket: string;
    /** The object key, decoded: `+` is a space, then percent-decoding (UTF-8). */
    readonly key: string;
    /** The record's `eventName`: always `ObjectRestore:Completed` (others are dropped). */
    readonly eventName: string;
  };

/** What one queue message amounts to. */
export type QueueNotice =
  | {
    readonly kind: "events";
    /** The SNS `TopicArn` when the body was an SNS envelope; `null` for a raw body. */
    readonly topic: string | null;
    /** At least one. */
    readonly events: readonly RetrievalEvent[];
  }
  | {
    /** A well-formed message that asks for nothing: delete it. */
    readonly kind: "ignored";
    readonly reason: string;
  }
  | {
    /** A body that is none of the known shapes; `reason` names the field or problem. */
    readonly kind: "malformed";
    readonly reason: string;
  };

/** The S3 event name of a finished restore. */
export const S3_RESTORE_COMPLETED = "ObjectRestore:Completed";

const GLACIER_STATUS: readonly GlacierJobStatus[] = ["InProgress", "Succeeded", "Failed"];
/** Glacier job actions that are not an archive retrieval, and need nothing from the listener. */
const IGNORED_ACTIONS = new Set(["InventoryRetrieval", "Select"]);
const SNS_IGNORED_TYPES = new Set(["SubscriptionConfirmation", "UnsubscribeConfirmation"]);
/** Job ids are URL-safe base64 of about 92 characters; this leaves room, and refuses junk. */
const JOB_ID = /^[\x21-\x7e]{1,1024}$/;
/** At most this many characters of a body, a key or a value are quoted in a reason. */
const QUOTE_MAX = 100;

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

/** Thrown inside this module only, turned into a `malformed` notice. */
class Malformed {
  constructor(readonly reason: string) {}
}

/** Ends parsing with an `ignored` notice. */
class Ignored {
  constructor(readonly reason: string) {}
}

/**
 * Reads one queue message body: an SNS envelope (`Type` `Notification`,
 * `TopicArn`, and a `Message` string parsed again) around a Glacier job
 * notification or S3 event records, or either of those delivered raw.
 * Never throws.
 *
 * - `events`: Glacier archive-retrieval jobs (any `StatusCode`: the caller
 *   checks it), and S3 `ObjectRestore:Completed` records (other records of
 *   the same message are dropped).
 * - `ignored`: S3's `s3:TestEvent`, SNS `SubscriptionConfirmation` and
 *   `UnsubscribeConfirmation`, Glacier inventory (and select) jobs, and S3
 *   records none of which is a completed restore.
 * - `malformed`: anything else, with a reason naming the field or problem
 *   and quoting at most about 100 characters of the body.
 *
 * @param body the message body as the queue delivered it
 */
export function parseQueueMessage(body: string): QueueNotice {
  try {
    if (typeof body !== "string") throw new Malformed(`the body is not text but ${typeof body}`);
    const outer = parseObject(body, "the message body");
    if (has(outer, "Type")) return fromEnvelope(outer);
    return { kind: "events", topic: null, events: fromPayload(outer, "") };
  } catch (e) {
    if (e instanceof Ignored) return { kind: "ignored", reason: e.reason };
    if (e instanceof Malformed) return { kind: "malformed", reason: e.reason };
    // Not reached: every path above throws one of the two. Kept so that no body can throw.
    return { kind: "malformed", reason: `cannot read the message: ${String(e).slice(0, 200)}` };
  }
}

/** An SNS message: a notification to unwrap, or a subscription message to ignore. */
function fromEnvelope(envelope: JsonObject): QueueNotice {
  const type = envelope.Type;
  if (typeof type !== "string") {
    throw new Malformed(`SNS envelope: Type is ${describe(type)}, not a string`);
  }
  if (SNS_IGNORED_TYPES.has(type)) throw new Ignored(`SNS ${type} message`);
  if (type !== "Notification") {
    throw new Malformed(
      `SNS envelope: unknown Type ${quote(type)} (expected Notification, ` +
        `SubscriptionConfirmation or UnsubscribeConfirmation)`,
    );
  }
  const topic = envelope.TopicArn;
  if (typeof topic !== "string" || topic === "") {
    throw new Malformed(`SNS envelope: TopicArn is ${describe(topic)}, not a topic ARN`);
  }
  const message = envelope.Message;
  if (typeof message !== "string") {
    throw new Malformed(`SNS envelope from ${quote(topic)}: Message is ${describe(message)}`);
  }
  const where = `SNS Message from ${quote(topic)}: `;
  const inner = parseObject(message, `the SNS Message from ${quote(topic)}`);
  if (has(inner, "Type")) throw new Malformed(`${where}an SNS envelope inside an SNS envelope`);
  return { kind: "events", topic, events: fromPayload(inner, where) };
}

/** A Glacier job notification, S3 event records, or S3's test event. */
function fromPayload(o: JsonObject, where: string): RetrievalEvent[] {
  if (has(o, "JobId")) return [glacierJob(o, where)];
  if (has(o, "Records")) return s3Records(o.Records, where);
  if (has(o, "Event")) {
    if (o.Event === "s3:TestEvent") throw new Ignored("S3 test event");
    throw new Malformed(`${where}unknown S3 Event ${describe(o.Event)} (expected s3:TestEvent)`);
  }
  throw new Malformed(
    `${where}neither a Glacier job notification (JobId) nor S3 event records (Records): ` +
      `keys ${keyList(o)}`,
  );
}

function glacierJob(o: JsonObject, where: string): RetrievalEvent {
  const id = o.JobId;
  if (typeof id !== "string" || !JOB_ID.test(id)) {
    throw new Malformed(
      `${where}Glacier job notification: JobId is ${describe(id)}, not a job id ` +
        "(1 to 1024 printable ASCII characters)",
    );
  }
  const what = `${where}Glacier job ${quote(id)}`;
  const action = o.Action;
  if (typeof action === "string" && IGNORED_ACTIONS.has(action)) {
    throw new Ignored(`Glacier ${action} job ${quote(id)}`);
  }
  if (action !== "ArchiveRetrieval") {
    throw new Malformed(
      `${what}: Action is ${describe(action)} (expected ArchiveRetrieval, InventoryRetrieval ` +
        "or Select)",
    );
  }
  const status = o.StatusCode;
  const statusCode = GLACIER_STATUS.find((s) => s === status);
  if (statusCode === undefined) {
    throw new Malformed(
      `${what}: StatusCode is ${describe(status)} (expected InProgress, Succeeded or Failed)`,
    );
  }
  return {
    kind: "glacier-job",
    jobId: id as JobId,
    statusCode,
    vaultArn: optionalString(o, "VaultARN", what),
    description: optionalString(o, "JobDescription", what),
    statusMessage: optionalString(o, "StatusMessage", what),
  };
}

function s3Records(records: Json | undefined, where: string): RetrievalEvent[] {
  if (!Array.isArray(records)) {
    throw new Malformed(`${where}S3 event: Records is ${describe(records)}, not an array`);
  }
  if (records.length === 0) throw new Malformed(`${where}S3 event: Records is empty`);
  const events: RetrievalEvent[] = [];
  const others = new Set<string>();
  records.forEach((record, i) => {
    const what = `${where}S3 event record ${i}`;
    if (!isObject(record)) throw new Malformed(`${what} is ${describe(record)}, not an object`);
    if (has(record, "eventSource") && record.eventSource !== "aws:s3") {
      throw new Malformed(`${what}: eventSource is ${describe(record.eventSource)}, not aws:s3`);
    }
    const eventName = record.eventName;
    if (typeof eventName !== "string" || eventName === "") {
      throw new Malformed(`${what}: eventName is ${describe(eventName)}`);
    }
    const s3 = record.s3;
    if (!isObject(s3)) throw new Malformed(`${what}: s3 is ${describe(s3)}, not an object`);
    const bucket = isObject(s3.bucket) ? s3.bucket.name : undefined;
    if (typeof bucket !== "string" || bucket === "") {
      throw new Malformed(`${what}: s3.bucket.name is ${describe(bucket)}`);
    }
    const rawKey = isObject(s3.object) ? s3.object.key : undefined;
    if (typeof rawKey !== "string" || rawKey === "") {
      throw new Malformed(`${what}: s3.object.key is ${describe(rawKey)}`);
    }
    const key = decodeEventKey(rawKey);
    if (key === null) {
      throw new Malformed(`${what}: s3.object.key ${quote(rawKey)} has broken percent-encoding`);
    }
    if (eventName === S3_RESTORE_COMPLETED) {
      events.push({ kind: "s3-restore", bucket, key, eventName });
    } else others.add(eventName);
  });
  if (events.length === 0) {
    throw new Ignored(
      `S3 events other than ${S3_RESTORE_COMPLETED}: ${[...others].map(quote).join(", ")}`,
    );
  }
  return events;
}

/**
 * Decodes a key as S3 events carry it (form encoding: `+` is a space, `%XX`
 * bytes of UTF-8); `null` when the escapes are broken or not UTF-8.
 */
export function decodeEventKey(raw: string): string | null {
  try {
    return decodeURIComponent(raw.replaceAll("+", " "));
  } catch {
    return null;
  }
}

/** `text` parsed as JSON, which must be an object. */
function parseObject(text: string, what: string): JsonObject {
  let value: Json;
  try {
    value = JSON.parse(text);
  } catch {
    throw new Malformed(`${what} is not JSON: ${quote(text)}`);
  }
  if (!isObject(value)) {
    throw new Malformed(`${what} is JSON ${describe(value)}, not an object`);
  }
  return value;
}

/** A field that is a string, or absent or `null` (then `null`). */
function optionalString(o: JsonObject, key: string, what: string): string | null {
  const v = has(o, key) ? o[key] : null;
  if (v === null || v === undefined) return null;
  if (typeof v !== "string") throw new Malformed(`${what}: ${key} is ${describe(v)}, not a string`);
  return v;
}

function isObject(v: Json | undefined): v is JsonObject {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** Own keys only: `{"constructor": 1}` has a `constructor`, `{}` has none. */
function has(o: JsonObject, key: string): boolean {
  return Object.hasOwn(o, key);
}

/** A JSON value named for a message: its kind, and for a scalar its (shortened) value. */
function describe(v: Json | undefined): string {
  if (v === undefined) return "missing";
  if (v === null) return "null";
  if (Array.isArray(v)) return "an array";
  switch (typeof v) {
    case "string":
      return v === "" ? "empty" : quote(v);
    case "number":
    case "boolean":
      return `${typeof v} ${String(v).slice(0, 40)}`;
    default:
      return "an object";
  }
}

/** `s` as a JSON string, shortened to {@linkcode QUOTE_MAX} characters. */
function quote(s: string): string {
  if (s.length <= QUOTE_MAX) return JSON.stringify(s);
  // Cut before a lone high surrogate, so that the quote stays valid text.
  const cut = s.slice(0, QUOTE_MAX).replace(/[\uD800-\uDBFF]$/, "");
  return `${JSON.stringify(cut)}...`;
}

/** The first keys of an object, quoted, within about 100 characters. */
function keyList(o: JsonObject): string {
  const keys = Object.keys(o);
  if (keys.length === 0) return "none";
  let out = "";
  let n = 0;
  for (const k of keys) {
    const q = quote(k.length > 30 ? `${k.slice(0, 30)}...` : k);
    if (out.length + q.length > QUOTE_MAX) break;
    out += (n === 0 ? "" : ", ") + q;
    n++;
  }
  return n < keys.length ? `${out} (and ${keys.length - n} more)` : out;
}
