/**
 * The SQS double is strict: it speaks the AWS JSON 1.0 protocol the pinned
 * `@aws-sdk/client-sqs` sends, answers errors so that the SDK names them as
 * SQS's, and its visibility timeouts, long polls, receipt handles and faults
 * behave as documented. Driven with the real SDK client, and with raw signed
 * HTTP where the SDK would not send the request. The SNS envelope and the S3
 * event bodies are parsed back as a consumer would.
 * @module
 */

import assert from "node:assert/strict";
import { createHash, createHmac } from "node:crypto";
import { Agent as HttpAgent } from "node:http";
import {
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  type Message,
  PurgeQueueCommand,
  ReceiveMessageCommand,
  type ReceiveMessageCommandInput,
  SendMessageBatchCommand,
  SendMessageCommand,
  SQSClient,
} from "@aws-sdk/client-sqs";
import { ManualClock } from "./doubles/s3_archive.ts";
import {
  DOUBLE_ACCOUNT_ID,
  publishToQueue,
  s3EventKey,
  s3RestoreEvent,
  s3TestEvent,
  snsEnvelope,
  SqsDouble,
  type SqsQueue,
  TEST_CREDENTIALS,
} from "./doubles/sqs.ts";

const START = Date.UTC(2026, 0, 1);
const HOUR = 3_600_000;
const TOPIC = `arn:aws:sns:us-east-1:${DOUBLE_ACCOUNT_ID}:coldpack-jobs`;
const QUIET = { debug() {}, info() {}, warn() {}, error() {} };

function sdk(
  sqs: SqsDouble,
  credentials: { accessKeyId: string; secretAccessKey: string } = TEST_CREDENTIALS,
  region = sqs.region,
): SQSClient {
  return new SQSClient({
    endpoint: sqs.endpoint,
    region,
    credentials: { ...credentials },
    maxAttempts: 1,
    logger: QUIET,
    requestHandler: { httpAgent: new HttpAgent({ keepAlive: false }) },
  });
}

interface Ctx {
  sqs: SqsDouble;
  client: SQSClient;
  clock: ManualClock;
  queue: SqsQueue;
}

async function withDouble(fn: (ctx: Ctx) => Promise<void>): Promise<void> {
  const clock = new ManualClock(START);
  const sqs = await SqsDouble.start({ clock, pollIntervalMs: 10 });
  const client = sdk(sqs);
  try {
    await fn({ sqs, client, clock, queue: sqs.createQueue("restores") });
  } finally {
    client.destroy();
    await sqs.close();
  }
}

/** Asserts an SDK call fails with the error `name` and HTTP `status`, naming `words`. */
async function rejectsWith(
  call: Promise<unknown>,
  name: string,
  status: number,
  words?: string | RegExp,
): Promise<void> {
  await assert.rejects(call, (e: unknown) => {
    const err = e as { name?: string; message?: string; $metadata?: { httpStatusCode?: number } };
    assert.equal(err.name, name, `error name of: ${err.message}`);
    assert.equal(err.$metadata?.httpStatusCode, status, `status of: ${err.message}`);
    if (typeof words === "string") assert.ok(err.message?.includes(words), err.message);
    else if (words) assert.match(err.message ?? "", words);
    return true;
  });
}

/** Waits until `cond` holds, checking every 5 ms; the bound is a safety net, not a claim. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`Gave up waiting for ${what}`);
}

function receive(
  client: SQSClient,
  queue: SqsQueue,
  input: Omit<ReceiveMessageCommandInput, "QueueUrl"> = {},
  abortSignal?: AbortSignal,
): Promise<Message[]> {
  return client.send(
    new ReceiveMessageCommand({
      QueueUrl: queue.url,
      MessageSystemAttributeNames: ["All"],
      WaitTimeSeconds: 0,
      ...input,
    }),
    abortSignal ? { abortSignal } : {},
  ).then((r) => r.Messages ?? []);
}

async function receiveOne(
  client: SQSClient,
  queue: SqsQueue,
  input: Omit<ReceiveMessageCommandInput, "QueueUrl"> = {},
): Promise<Message> {
  const messages = await receive(client, queue, input);
  assert.equal(messages.length, 1, `one message expected, got ${messages.length}`);
  return messages[0]!;
}

function md5(text: string): string {
  return createHash("md5").update(text).digest("hex");
}

// ---------------------------------------------------------------------------
// Raw signed HTTP, for requests the SDK would never make.

interface Raw {
  status: number;
  headers: Headers;
  text: string;
  json: Record<string, unknown> | null;
}

async function raw(
  sqs: SqsDouble,
  options: {
    target?: string | null;
    contentType?: string;
    body?: string;
    sign?: boolean;
    path?: string;
  } = {},
): Promise<Raw> {
  const body = new TextEncoder().encode(options.body ?? "{}");
  const url = new URL(options.path ?? "/", sqs.endpoint);
  const headers: Record<string, string> = {
    "content-type": options.contentType ?? "application/x-amz-json-1.0",
  };
  if (options.target !== null) headers["x-amz-target"] = options.target ?? "AmazonSQS.ListQueues";
  if (options.sign !== false) sign(url, headers, body, sqs.region);
  const res = await fetch(url, { method: "POST", headers, body });
  const text = await res.text();
  let json: Record<string, unknown> | null = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = null;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** SigV4 as the AWS docs describe it, for `POST /` to SQS. */
function sign(url: URL, headers: Record<string, string>, body: Uint8Array, region: string): void {
  const amzDate = new Date().toISOString().replace(/[-:]/g, "").replace(/\.\d{3}/, "");
  const date = amzDate.slice(0, 8);
  headers["x-amz-date"] = amzDate;
  headers["x-amz-content-sha256"] = createHash("sha256").update(body).digest("hex");
  const all: Record<string, string> = { host: url.host };
  for (const [k, v] of Object.entries(headers)) all[k.toLowerCase()] = v.trim();
  const names = Object.keys(all).sort();
  const canonical = [
    "POST",
    url.pathname,
    "",
    names.map((n) => `${n}:${all[n]}`).join("\n") + "\n",
    names.join(";"),
    headers["x-amz-content-sha256"],
  ].join("\n");
  const scope = `${date}/${region}/sqs/aws4_request`;
  const toSign = [
    "AWS4-HMAC-SHA256",
    amzDate,
    scope,
    createHash("sha256").update(canonical).digest("hex"),
  ].join("\n");
  let key: Uint8Array = new TextEncoder().encode(`AWS4${TEST_CREDENTIALS.secretAccessKey}`);
  for (const part of [date, region, "sqs", "aws4_request"]) {
    key = createHmac("sha256", key).update(part).digest();
  }
  const signature = createHmac("sha256", key).update(toSign).digest("hex");
  headers.authorization = `AWS4-HMAC-SHA256 Credential=${TEST_CREDENTIALS.accessKeyId}/${scope}, ` +
    `SignedHeaders=${names.join(";")}, Signature=${signature}`;
}

// ---------------------------------------------------------------------------
// Messages

Deno.test("SQS double: send, receive, delete through the SDK; MD5s, attributes", async () => {
  await withDouble(async ({ sqs, client, clock, queue }) => {
    const url = (await client.send(new GetQueueUrlCommand({ QueueName: "restores" }))).QueueUrl;
    assert.equal(url, queue.url);
    assert.equal(url, `${sqs.endpoint}/${DOUBLE_ACCOUNT_ID}/restores`);
    const body = '{"JobId":"j-1","note":"héllo ✓"}';
    const sent = await client.send(new SendMessageCommand({ QueueUrl: url, MessageBody: body }));
    assert.equal(sent.MD5OfMessageBody, md5(body));
    clock.advance(5_000);
    const m = await receiveOne(client, queue, { MaxNumberOfMessages: 10 });
    assert.equal(m.MessageId, sent.MessageId);
    assert.equal(m.Body, body);
    assert.equal(m.MD5OfBody, md5(body));
    assert.deepEqual(m.Attributes, {
      SenderId: DOUBLE_ACCOUNT_ID,
      SentTimestamp: String(START),
      ApproximateReceiveCount: "1",
      ApproximateFirstReceiveTimestamp: String(START + 5_000),
    });
    assert.ok(m.ReceiptHandle && m.ReceiptHandle.length > 100, "an opaque receipt handle");
    const attrs = await client.send(
      new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ["All"] }),
    );
    assert.equal(attrs.Attributes?.ApproximateNumberOfMessages, "0");
    assert.equal(attrs.Attributes?.ApproximateNumberOfMessagesNotVisible, "1");
    assert.equal(attrs.Attributes?.QueueArn, `arn:aws:sqs:us-east-1:${DOUBLE_ACCOUNT_ID}:restores`);
    await client.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: m.ReceiptHandle }));
    assert.deepEqual(sqs.messages("restores"), []);
    clock.advance(HOUR);
    assert.deepEqual(await receive(client, queue), []);
    // Only what is asked for: no attribute names, no Attributes.
    queue.send("second");
    const plain = await receiveOne(client, queue, { MessageSystemAttributeNames: [] });
    assert.equal(plain.Attributes, undefined);
    // The deprecated AttributeNames still works.
    clock.advance(HOUR);
    const old = await receiveOne(client, queue, {
      MessageSystemAttributeNames: [],
      AttributeNames: ["All"],
    });
    assert.equal(old.Attributes?.ApproximateReceiveCount, "2");
    assert.deepEqual(sqs.requestCounts(), {
      GetQueueUrl: 1,
      SendMessage: 1,
      ReceiveMessage: 4,
      GetQueueAttributes: 1,
      DeleteMessage: 1,
    });
  });
});

Deno.test("SQS double: a receive hands out at most MaxNumberOfMessages, oldest first", async () => {
  await withDouble(async ({ client, queue }) => {
    for (let i = 0; i < 12; i++) queue.send(`m${i}`);
    const first = await receive(client, queue, { MaxNumberOfMessages: 10 });
    assert.deepEqual(first.map((m) => m.Body), [...Array(10).keys()].map((i) => `m${i}`));
    const rest = await receive(client, queue, { MaxNumberOfMessages: 10 });
    assert.deepEqual(rest.map((m) => m.Body), ["m10", "m11"]);
    const one = await receive(client, queue);
    assert.deepEqual(one, [], "default MaxNumberOfMessages is 1 and nothing is left");
  });
});

Deno.test("SQS double: a long poll answers as soon as a message arrives", async () => {
  await withDouble(async ({ sqs, client, queue }) => {
    const polled = receive(client, queue, { WaitTimeSeconds: 20 });
    await until(() => sqs.waitingReceives("restores") === 1, "the long poll to wait");
    const id = queue.send("arrived while polling");
    const messages = await polled;
    assert.deepEqual(messages.map((m) => [m.MessageId, m.Body]), [[id, "arrived while polling"]]);
    assert.equal(sqs.waitingReceives(), 0);
  });
});

Deno.test("SQS double: a long poll answers empty after its wait, a short one at once", async () => {
  await withDouble(async ({ sqs, client, queue }) => {
    const polled = receive(client, queue, { WaitTimeSeconds: 1 });
    await until(() => sqs.waitingReceives() === 1, "the long poll to wait");
    assert.deepEqual(await polled, []);
    assert.deepEqual(await receive(client, queue, { WaitTimeSeconds: 0 }), []);
    assert.equal(sqs.requestCount("ReceiveMessage"), 2);
  });
});

Deno.test("SQS double: the queue's ReceiveMessageWaitTimeSeconds is the default wait", async () => {
  await withDouble(async ({ sqs, client }) => {
    const q = sqs.createQueue("polling", { ReceiveMessageWaitTimeSeconds: "20" });
    const polled = client.send(new ReceiveMessageCommand({ QueueUrl: q.url }));
    await until(() => sqs.waitingReceives("polling") === 1, "the long poll to wait");
    q.send("x");
    assert.equal((await polled).Messages?.[0]?.Body, "x");
  });
});

Deno.test("SQS double: a long poll gets a message whose visibility ran out", async () => {
  await withDouble(async ({ sqs, client, clock, queue }) => {
    queue.send("job done");
    const first = await receiveOne(client, queue, { VisibilityTimeout: 30 });
    const polled = receive(client, queue, { WaitTimeSeconds: 20 });
    await until(() => sqs.waitingReceives() === 1, "the long poll to wait");
    clock.advance(30_000);
    sqs.wake();
    const again = await polled;
    assert.equal(again.length, 1);
    assert.equal(again[0]!.MessageId, first.MessageId);
    assert.equal(again[0]!.Attributes?.ApproximateReceiveCount, "2");
  });
});

Deno.test("SQS double: an abandoned long poll takes nothing", async () => {
  await withDouble(async ({ sqs, client, queue }) => {
    const stop = new AbortController();
    const polled = receive(client, queue, { WaitTimeSeconds: 20 }, stop.signal);
    await until(() => sqs.waitingReceives() === 1, "the long poll to wait");
    stop.abort();
    await assert.rejects(polled, (e: Error) => e.name === "AbortError");
    await until(() => sqs.waitingReceives() === 0, "the long poll to end");
    queue.send("for the next poll");
    const m = await receiveOne(client, queue);
    assert.equal(m.Attributes?.ApproximateReceiveCount, "1");
  });
});

Deno.test("SQS double: close() ends a waiting long poll", async () => {
  const sqs = await SqsDouble.start({ queues: ["q"] });
  const client = sdk(sqs);
  try {
    const polled = receive(client, sqs.queue("q"), { WaitTimeSeconds: 20 });
    await until(() => sqs.waitingReceives() === 1, "the long poll to wait");
    const ended = assert.rejects(polled, /socket hang up|ECONNRESET|reset/i);
    await sqs.close();
    await ended;
  } finally {
    client.destroy();
    await sqs.close();
  }
});

Deno.test("SQS double: redelivery after the visibility timeout, new handle, count+1", async () => {
  await withDouble(async ({ sqs, client, clock, queue }) => {
    const id = queue.send("restore 42 finished");
    const first = await receiveOne(client, queue, { VisibilityTimeout: 60 });
    assert.deepEqual(await receive(client, queue), [], "invisible while in flight");
    assert.deepEqual(sqs.messages("restores").map((m) => [m.inFlight, m.visible]), [[true, false]]);
    clock.advance(59_999);
    assert.deepEqual(await receive(client, queue), [], "still invisible 1 ms before the end");
    clock.advance(1);
    const second = await receiveOne(client, queue);
    assert.equal(second.MessageId, id);
    assert.notEqual(second.ReceiptHandle, first.ReceiptHandle);
    assert.equal(second.Attributes?.ApproximateReceiveCount, "2");
    assert.equal(
      second.Attributes?.ApproximateFirstReceiveTimestamp,
      first.Attributes?.ApproximateFirstReceiveTimestamp,
    );
    // The queue's VisibilityTimeout (30 s by default) when the receive names none.
    clock.advance(30_000);
    assert.equal((await receiveOne(client, queue)).Attributes?.ApproximateReceiveCount, "3");
  });
});

Deno.test("SQS double: an old receipt handle deletes nothing, the latest one deletes", async () => {
  await withDouble(async ({ sqs, client, clock, queue }) => {
    queue.send("twice received");
    const first = await receiveOne(client, queue, { VisibilityTimeout: 10 });
    clock.advance(10_000);
    const second = await receiveOne(client, queue, { VisibilityTimeout: 10 });
    await client.send(
      new DeleteMessageCommand({ QueueUrl: queue.url, ReceiptHandle: first.ReceiptHandle }),
    );
    assert.equal(sqs.messages("restores").length, 1, "the stale handle deleted nothing");
    assert.equal(sqs.ignoredDeletes("restores"), 1);
    await client.send(
      new DeleteMessageCommand({ QueueUrl: queue.url, ReceiptHandle: second.ReceiptHandle }),
    );
    assert.equal(sqs.messages("restores").length, 0);
    // Deleting a message already gone succeeds.
    await client.send(
      new DeleteMessageCommand({ QueueUrl: queue.url, ReceiptHandle: second.ReceiptHandle }),
    );
    // The latest handle deletes a message whose timeout ran out (visible again).
    queue.send("late delete");
    const late = await receiveOne(client, queue, { VisibilityTimeout: 10 });
    clock.advance(60_000);
    await client.send(
      new DeleteMessageCommand({ QueueUrl: queue.url, ReceiptHandle: late.ReceiptHandle }),
    );
    assert.deepEqual(sqs.messages("restores"), []);
  });
});

Deno.test("SQS double: ChangeMessageVisibility extends, releases, refuses as SQS", async () => {
  await withDouble(async ({ sqs, client, clock, queue }) => {
    const change = (handle: string | undefined, seconds: number) =>
      client.send(
        new ChangeMessageVisibilityCommand({
          QueueUrl: queue.url,
          ReceiptHandle: handle,
          VisibilityTimeout: seconds,
        }),
      );
    queue.send("long restore");
    const m = await receiveOne(client, queue, { VisibilityTimeout: 30 });
    clock.advance(20_000);
    await change(m.ReceiptHandle, 600); // counts from now: invisible until +620 s
    clock.advance(599_000);
    assert.deepEqual(await receive(client, queue), []);
    await change(m.ReceiptHandle, 0);
    const again = await receiveOne(client, queue, { VisibilityTimeout: 30 });
    assert.equal(again.Attributes?.ApproximateReceiveCount, "2");
    await rejectsWith(
      change(m.ReceiptHandle, 60),
      "InvalidParameterValue",
      400,
      "Message does not exist or is not available for visibility timeout change",
    );
    await rejectsWith(
      change(again.ReceiptHandle, 43_201),
      "InvalidParameterValue",
      400,
      "Must be >= 0 and <= 43200",
    );
    await change(again.ReceiptHandle, 7_200);
    clock.advance(HOUR);
    await change(again.ReceiptHandle, 39_600); // exactly 12 h after the receive: allowed
    await rejectsWith(
      change(again.ReceiptHandle, 39_601),
      "InvalidParameterValue",
      400,
      "Total VisibilityTimeout for the message is beyond the limit [43200 seconds]",
    );
    // The latest handle, after its timeout ran out: accepted, nothing changes.
    clock.advance(11 * HOUR);
    assert.deepEqual(sqs.messages("restores").map((x) => x.visible), [true]);
    await change(again.ReceiptHandle, 3_600);
    assert.deepEqual(sqs.messages("restores").map((x) => x.visible), [true]);
    await rejectsWith(change("AQEBnot-a-handle", 30), "ReceiptHandleIsInvalid", 404);
  });
});

Deno.test("SQS double: DelaySeconds and the retention period, on the clock", async () => {
  await withDouble(async ({ sqs, client, clock, queue }) => {
    await client.send(
      new SendMessageCommand({ QueueUrl: queue.url, MessageBody: "later", DelaySeconds: 60 }),
    );
    assert.deepEqual(await receive(client, queue), []);
    const attrs = await client.send(
      new GetQueueAttributesCommand({
        QueueUrl: queue.url,
        AttributeNames: ["ApproximateNumberOfMessagesDelayed"],
      }),
    );
    assert.deepEqual(attrs.Attributes, { ApproximateNumberOfMessagesDelayed: "1" });
    clock.advance(60_000);
    assert.equal((await receiveOne(client, queue)).Body, "later");
    clock.advance(4 * 24 * HOUR);
    assert.deepEqual(sqs.messages("restores"), [], "gone after 4 days (the default retention)");
  });
});

// ---------------------------------------------------------------------------
// Errors as the SDK surfaces them

Deno.test("SQS double: errors carry the names the SDK gives SQS's errors", async () => {
  await withDouble(async ({ sqs, client, queue }) => {
    const missingUrl = `${sqs.endpoint}/${DOUBLE_ACCOUNT_ID}/no-such-queue`;
    await assert.rejects(
      client.send(new ReceiveMessageCommand({ QueueUrl: missingUrl })),
      (e: { name: string; Code?: string; $metadata: { httpStatusCode: number } }) => {
        assert.equal(e.name, "QueueDoesNotExist");
        assert.equal(e.Code, "AWS.SimpleQueueService.NonExistentQueue");
        assert.equal(e.$metadata.httpStatusCode, 400);
        return true;
      },
    );
    await rejectsWith(
      client.send(new GetQueueUrlCommand({ QueueName: "no-such-queue" })),
      "QueueDoesNotExist",
      400,
      "The specified queue does not exist.",
    );
    await rejectsWith(
      client.send(new DeleteMessageCommand({ QueueUrl: queue.url, ReceiptHandle: "garbage" })),
      "ReceiptHandleIsInvalid",
      404,
      '"garbage"',
    );
    // A handle of another queue is not valid for this one.
    const other = sqs.createQueue("other");
    other.send("x");
    const m = await receiveOne(client, other);
    await rejectsWith(
      client.send(
        new DeleteMessageCommand({ QueueUrl: queue.url, ReceiptHandle: m.ReceiptHandle }),
      ),
      "ReceiptHandleIsInvalid",
      404,
    );
    await rejectsWith(
      receive(client, queue, { MaxNumberOfMessages: 11 }),
      "InvalidParameterValue",
      400,
      "Value 11 for parameter MaxNumberOfMessages is invalid. Reason: Must be between 1 and 10",
    );
    await rejectsWith(
      receive(client, queue, { WaitTimeSeconds: 21 }),
      "InvalidParameterValue",
      400,
      "Value 21 for parameter WaitTimeSeconds is invalid",
    );
    await rejectsWith(
      receive(client, queue, { MessageSystemAttributeNames: ["ApproximateReceiveCnt" as "All"] }),
      "InvalidAttributeName",
      400,
      "ApproximateReceiveCnt",
    );
    await rejectsWith(
      client.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: "" })),
      "MissingParameter",
      400,
      "MessageBody",
    );
    await rejectsWith(
      client.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: "bad \u0001" })),
      "InvalidMessageContents",
      400,
      "U+0001",
    );
    await rejectsWith(
      client.send(
        new SendMessageCommand({ QueueUrl: queue.url, MessageBody: "x".repeat(1_048_577) }),
      ),
      "InvalidParameterValue",
      400,
      "Message must be shorter than 1048576 bytes",
    );
    await rejectsWith(
      client.send(new ReceiveMessageCommand({ QueueUrl: "http://example.com/1/q" })),
      "InvalidAddress",
      404,
      "http://example.com/1/q",
    );
    await rejectsWith(
      client.send(new SendMessageBatchCommand({ QueueUrl: queue.url, Entries: [] })),
      "NotImplemented",
      501,
      "SendMessageBatch",
    );
    // The real AWS URL form of the same queue is accepted.
    const awsUrl = `https://sqs.us-east-1.amazonaws.com/${DOUBLE_ACCOUNT_ID}/restores`;
    assert.deepEqual(
      (await client.send(new ReceiveMessageCommand({ QueueUrl: awsUrl }))).Messages,
      undefined,
    );
  });
});

Deno.test("SQS double: CreateQueue idempotent and checked; PurgeQueue, DeleteQueue", async () => {
  await withDouble(async ({ sqs, client, clock, queue }) => {
    const created = await client.send(
      new CreateQueueCommand({ QueueName: "jobs", Attributes: { VisibilityTimeout: "120" } }),
    );
    assert.equal(created.QueueUrl, `${sqs.endpoint}/${DOUBLE_ACCOUNT_ID}/jobs`);
    const same = await client.send(
      new CreateQueueCommand({ QueueName: "jobs", Attributes: { VisibilityTimeout: "120" } }),
    );
    assert.equal(same.QueueUrl, created.QueueUrl);
    await rejectsWith(
      client.send(
        new CreateQueueCommand({ QueueName: "jobs", Attributes: { VisibilityTimeout: "60" } }),
      ),
      "QueueNameExists",
      400,
      "VisibilityTimeout",
    );
    await rejectsWith(
      client.send(
        new CreateQueueCommand({ QueueName: "x", Attributes: { VisibilityTimeout: "43201" } }),
      ),
      "InvalidAttributeValue",
      400,
      "VisibilityTimeout",
    );
    await rejectsWith(
      client.send(
        new CreateQueueCommand({ QueueName: "x", Attributes: { Colour: "blue" } as never }),
      ),
      "InvalidAttributeName",
      400,
      "Colour",
    );
    await rejectsWith(
      client.send(new CreateQueueCommand({ QueueName: "bad name" })),
      "InvalidParameterValue",
      400,
      "bad name",
    );
    // The queue's own VisibilityTimeout applies.
    const jobs = sqs.queue("jobs");
    jobs.send("j");
    await receiveOne(client, jobs);
    clock.advance(119_000);
    assert.deepEqual(await receive(client, jobs), []);
    clock.advance(1_000);
    await receiveOne(client, jobs);

    queue.send("a");
    queue.send("b");
    await client.send(new PurgeQueueCommand({ QueueUrl: queue.url }));
    assert.deepEqual(sqs.messages("restores"), []);
    await rejectsWith(
      client.send(new PurgeQueueCommand({ QueueUrl: queue.url })),
      "PurgeQueueInProgress",
      403,
    );
    await client.send(new DeleteQueueCommand({ QueueUrl: created.QueueUrl }));
    assert.deepEqual(sqs.queues(), ["restores"]);
    await rejectsWith(receive(client, jobs), "QueueDoesNotExist", 400);
    await rejectsWith(
      client.send(new CreateQueueCommand({ QueueName: "jobs" })),
      "QueueDeletedRecently",
      400,
    );
    clock.advance(60_000);
    await client.send(new CreateQueueCommand({ QueueName: "jobs" }));
  });
});

// ---------------------------------------------------------------------------
// Faults

Deno.test("SQS double: a duplicate delivery's twin outlives the original's deletion", async () => {
  await withDouble(async ({ sqs, client, queue }) => {
    sqs.inject({ kind: "duplicate" });
    assert.deepEqual(await receive(client, queue), [], "an empty receive leaves the fault waiting");
    assert.equal(sqs.faultsLeft(), 1);
    const id = queue.send("job j-7 done");
    const first = await receiveOne(client, queue, { VisibilityTimeout: 300 });
    assert.equal(sqs.faultsLeft(), 0);
    const twin = await receiveOne(client, queue, { VisibilityTimeout: 300 });
    assert.equal(twin.MessageId, id);
    assert.equal(twin.Body, first.Body);
    assert.notEqual(twin.ReceiptHandle, first.ReceiptHandle);
    await client.send(
      new DeleteMessageCommand({ QueueUrl: queue.url, ReceiptHandle: first.ReceiptHandle }),
    );
    assert.deepEqual(
      sqs.messages("restores").map((m) => [m.messageId, m.duplicate, m.inFlight]),
      [[id, true, true]],
    );
    await client.send(
      new DeleteMessageCommand({ QueueUrl: queue.url, ReceiptHandle: twin.ReceiptHandle }),
    );
    assert.deepEqual(sqs.messages("restores"), []);
    assert.deepEqual(sqs.faultsServed(), [{ action: "ReceiveMessage", kind: "duplicate" }]);
  });
});

Deno.test("SQS double: error faults answer 500, 503 and throttling as SQS does", async () => {
  await withDouble(async ({ sqs, client, queue }) => {
    queue.send("survives the faults");
    sqs.inject({ kind: "server-error", action: "ReceiveMessage" });
    sqs.inject({ kind: "unavailable", action: "ReceiveMessage" });
    sqs.inject({ kind: "throttle", action: "ReceiveMessage" });
    sqs.inject({ kind: "request-throttled", action: "ReceiveMessage" });
    sqs.inject({ kind: "error", action: "DeleteMessage", code: "KMS.ThrottlingException" });
    await assert.rejects(receive(client, queue), (e: { name: string; $fault: string }) => {
      assert.equal(e.name, "InternalError");
      assert.equal(e.$fault, "server");
      return true;
    });
    await rejectsWith(receive(client, queue), "ServiceUnavailable", 503);
    await rejectsWith(receive(client, queue), "ThrottlingException", 400, "Rate exceeded");
    await rejectsWith(receive(client, queue), "RequestThrottled", 403);
    const m = await receiveOne(client, queue);
    assert.equal(m.Attributes?.ApproximateReceiveCount, "1", "faulted receives took nothing");
    await rejectsWith(
      client.send(
        new DeleteMessageCommand({ QueueUrl: queue.url, ReceiptHandle: m.ReceiptHandle }),
      ),
      "KmsThrottled",
      400,
    );
    assert.equal(sqs.messages("restores").length, 1, "the faulted delete deleted nothing");
    assert.deepEqual(sqs.requestCounts(), { ReceiveMessage: 5, DeleteMessage: 1 });
    assert.equal(sqs.faultsLeft(), 0);
  });
});

Deno.test("SQS double: a reset does nothing; a lost response does the work", async () => {
  await withDouble(async ({ sqs, client, clock, queue }) => {
    queue.send("m");
    sqs.inject({ kind: "reset", action: "ReceiveMessage" });
    await assert.rejects(receive(client, queue), /socket hang up|ECONNRESET|reset/i);
    assert.deepEqual(sqs.messages("restores").map((m) => m.receiveCount), [0]);
    sqs.inject({ kind: "lost-response", action: "ReceiveMessage" });
    await assert.rejects(receive(client, queue), /socket hang up|ECONNRESET|reset/i);
    assert.deepEqual(
      sqs.messages("restores").map((m) => [m.receiveCount, m.inFlight]),
      [[1, true]],
      "the lost receive put the message in flight",
    );
    clock.advance(30_000);
    const m = await receiveOne(client, queue);
    assert.equal(m.Attributes?.ApproximateReceiveCount, "2");
    sqs.inject({ kind: "lost-response", action: "DeleteMessage" });
    await assert.rejects(
      client.send(
        new DeleteMessageCommand({ QueueUrl: queue.url, ReceiptHandle: m.ReceiptHandle }),
      ),
      /socket hang up|ECONNRESET|reset/i,
    );
    assert.deepEqual(sqs.messages("restores"), [], "the delete happened");
    assert.equal(sqs.requestCount("ReceiveMessage"), 3);
  });
});

Deno.test("SQS double: a wrong MD5 fails the SDK's check; a false empty is empty", async () => {
  await withDouble(async ({ sqs, client, queue }) => {
    queue.send("checked");
    sqs.inject({ kind: "wrong-md5", action: "ReceiveMessage" });
    await assert.rejects(receive(client, queue), /Invalid MD5 checksum on messages/);
    sqs.inject({ kind: "wrong-md5", action: "SendMessage" });
    await assert.rejects(
      client.send(new SendMessageCommand({ QueueUrl: queue.url, MessageBody: "sent anyway" })),
      /InvalidChecksumError/,
    );
    assert.equal(sqs.messages("restores").length, 2);
    sqs.inject({ kind: "empty" });
    assert.deepEqual(await receive(client, queue, { WaitTimeSeconds: 20 }), []);
    assert.equal((await receiveOne(client, queue)).Body, "sent anyway");
  });
});

Deno.test("SQS double: a slow answer can be abandoned through the SDK's abort signal", async () => {
  await withDouble(async ({ sqs, client, queue }) => {
    queue.send("m");
    sqs.inject({ kind: "slow", action: "ReceiveMessage", delayMs: 30_000 });
    const stop = new AbortController();
    const call = receive(client, queue, {}, stop.signal);
    await until(() => sqs.requestCount("ReceiveMessage") === 1, "the request to arrive");
    stop.abort();
    await assert.rejects(call, (e: Error) => e.name === "AbortError");
    assert.deepEqual(sqs.faultsServed(), [{ action: "ReceiveMessage", kind: "slow" }]);
    const m = await receiveOne(client, queue);
    assert.equal(m.Attributes?.ApproximateReceiveCount, "1", "the abandoned request took nothing");
  });
});

Deno.test("SQS double: fault options are checked", async () => {
  await withDouble(({ sqs }) => {
    assert.throws(() => sqs.inject({ kind: "server-error", count: 0 }), RangeError);
    assert.throws(() => sqs.inject({ kind: "error" }), /needs a code/);
    assert.throws(
      () => sqs.inject({ kind: "duplicate", action: "SendMessage" }),
      /applies to ReceiveMessage/,
    );
    assert.throws(() => sqs.queue("nope"), /No queue nope/);
    assert.throws(() => sqs.createQueue("x.fifo"), /FIFO/);
    assert.throws(() => sqs.queue("restores").send(""), /empty/);
    return Promise.resolve();
  });
});

// ---------------------------------------------------------------------------
// Signatures and protocol

Deno.test("SQS double: requests must be signed with the double's credentials", async () => {
  await withDouble(async ({ sqs, queue }) => {
    const input = { QueueUrl: queue.url };
    const wrongSecret = sdk(sqs, { ...TEST_CREDENTIALS, secretAccessKey: "not-the-secret" });
    const unknownKey = sdk(sqs, { ...TEST_CREDENTIALS, accessKeyId: "AKIDSOMEONEELSE" });
    const otherRegion = sdk(sqs, TEST_CREDENTIALS, "eu-west-1");
    try {
      await rejectsWith(
        wrongSecret.send(new ReceiveMessageCommand(input)),
        "SignatureDoesNotMatch",
        403,
        "signature we calculated does not match",
      );
      await rejectsWith(
        unknownKey.send(new ReceiveMessageCommand(input)),
        "InvalidClientTokenId",
        403,
      );
      await rejectsWith(
        otherRegion.send(new ReceiveMessageCommand(input)),
        "SignatureDoesNotMatch",
        403,
        "eu-west-1/sqs",
      );
    } finally {
      wrongSecret.destroy();
      unknownKey.destroy();
      otherRegion.destroy();
    }
    const unsigned = await raw(sqs, {
      target: "AmazonSQS.ReceiveMessage",
      body: JSON.stringify(input),
      sign: false,
    });
    assert.equal(unsigned.status, 403);
    assert.equal(unsigned.headers.get("x-amzn-query-error"), "MissingAuthenticationToken;Sender");
  });
});

Deno.test("SQS double: only the AWS JSON 1.0 protocol, strictly", async () => {
  await withDouble(async ({ sqs, queue }) => {
    const query = await raw(sqs, {
      contentType: "application/x-www-form-urlencoded",
      body: `Action=ReceiveMessage&QueueUrl=${encodeURIComponent(queue.url)}`,
      target: null,
    });
    assert.equal(query.status, 400);
    assert.match(query.text, /<Code>InvalidAction<\/Code>/);
    assert.match(query.text, /only the AWS JSON 1\.0 protocol/);

    const noTarget = await raw(sqs, { target: null });
    assert.equal(noTarget.status, 400);
    assert.equal(noTarget.json?.__type, "com.amazon.coral.service#UnknownOperationException");

    const json11 = await raw(sqs, {
      target: "AmazonSQS.ReceiveMessage",
      contentType: "application/x-amz-json-1.1",
      body: JSON.stringify({ QueueUrl: queue.url }),
    });
    assert.equal(json11.status, 400);
    assert.match(String(json11.json?.message), /application\/x-amz-json-1\.0/);

    const typo = await raw(sqs, {
      target: "AmazonSQS.ReceiveMessage",
      body: JSON.stringify({ QueueUrl: queue.url, MaxNumberOfMessage: 10 }),
    });
    assert.equal(typo.status, 400);
    assert.equal(typo.headers.get("x-amzn-query-error"), "InvalidParameterValue;Sender");
    assert.match(String(typo.json?.message), /no parameter MaxNumberOfMessage/);

    const wrongType = await raw(sqs, {
      target: "AmazonSQS.ReceiveMessage",
      body: JSON.stringify({ QueueUrl: queue.url, MaxNumberOfMessages: "10" }),
    });
    assert.equal(wrongType.status, 400);
    assert.equal(wrongType.json?.__type, "com.amazon.coral.service#SerializationException");

    const missing = await raw(sqs, { target: "AmazonSQS.QueueDoesNotExist", body: "{}" });
    assert.equal(missing.status, 400);
    assert.equal(missing.json?.__type, "com.amazon.coral.service#UnknownOperationException");

    const path = await raw(sqs, {
      target: "AmazonSQS.ReceiveMessage",
      path: `/${DOUBLE_ACCOUNT_ID}/restores`,
      body: JSON.stringify({ QueueUrl: queue.url }),
    });
    assert.equal(path.status, 404);
    assert.equal(path.headers.get("x-amzn-query-error"), "InvalidAddress;Sender");

    // The error shape SQS documents: __type, message, x-amzn-query-error, x-amzn-RequestId.
    const gone = await raw(sqs, {
      target: "AmazonSQS.GetQueueUrl",
      body: JSON.stringify({ QueueName: "missing" }),
    });
    assert.equal(gone.status, 400);
    assert.equal(gone.headers.get("content-type"), "application/x-amz-json-1.0");
    assert.equal(
      gone.headers.get("x-amzn-query-error"),
      "AWS.SimpleQueueService.NonExistentQueue;Sender",
    );
    assert.match(gone.headers.get("x-amzn-requestid") ?? "", /^[0-9a-f-]{36}$/);
    assert.deepEqual(gone.json, {
      __type: "com.amazonaws.sqs#QueueDoesNotExist",
      message: "The specified queue does not exist.",
    });
  });
});

// ---------------------------------------------------------------------------
// SNS and S3 bodies

Deno.test("SQS double: publishToQueue wraps in the SNS envelope, or delivers raw", async () => {
  await withDouble(async ({ client, clock, queue }) => {
    const job = {
      JobId: "job-1",
      Action: "ArchiveRetrieval",
      StatusCode: "Succeeded",
      Completed: true,
      JobDescription: "coldpack:r-17",
    };
    clock.advance(1_234);
    const published = publishToQueue(queue, TOPIC, JSON.stringify(job), {
      subject: "Glacier job",
    });
    publishToQueue(queue, TOPIC, job, { raw: true });
    const [wrapped, rawDelivered] = await receive(client, queue, { MaxNumberOfMessages: 10 });
    assert.equal(wrapped!.MessageId, published.sqsMessageId);
    assert.equal(wrapped!.Body, published.body);
    const envelope = JSON.parse(wrapped!.Body!);
    assert.deepEqual(Object.keys(envelope), [
      "Type",
      "MessageId",
      "TopicArn",
      "Subject",
      "Message",
      "Timestamp",
      "SignatureVersion",
      "Signature",
      "SigningCertURL",
      "UnsubscribeURL",
    ]);
    assert.equal(envelope.Type, "Notification");
    assert.equal(envelope.TopicArn, TOPIC);
    assert.equal(envelope.Subject, "Glacier job");
    assert.equal(envelope.Timestamp, new Date(START + 1_234).toISOString());
    assert.equal(envelope.SignatureVersion, "1");
    assert.match(envelope.SigningCertURL, /^https:\/\/sns\.us-east-1\.amazonaws\.com\/.+\.pem$/);
    assert.ok(envelope.UnsubscribeURL.includes(`SubscriptionArn=${TOPIC}:`));
    assert.deepEqual(JSON.parse(envelope.Message), job);
    assert.deepEqual(JSON.parse(rawDelivered!.Body!), job);
    assert.equal(rawDelivered!.Attributes?.SenderId, "AIDASNSDOUBLEPUBLISHER");

    const noSubject = JSON.parse(snsEnvelope(TOPIC, "plain text", { messageId: "m-1" }));
    assert.equal(noSubject.Subject, undefined);
    assert.equal(noSubject.MessageId, "m-1");
    assert.equal(noSubject.Message, "plain text");
    assert.throws(() => snsEnvelope("arn:aws:sqs:us-east-1:1:q", "x"), SyntaxError);
  });
});

Deno.test("SQS double: S3 restore and test events parse back; keys form-encoded", async () => {
  await withDouble(async ({ client, queue }) => {
    const key = "packs/2026/red flower+1 é.tar";
    assert.equal(s3EventKey(key), "packs/2026/red+flower%2B1+%C3%A9.tar");
    assert.equal(s3EventKey("a/b:c", { encodeSlash: true }), "a%2Fb%3Ac");
    const decode = (k: string) => decodeURIComponent(k.replace(/\+/g, " "));
    const time = Date.UTC(2026, 2, 3, 10, 0, 0);
    queue.send(s3TestEvent("archives", { timeMs: time }));
    queue.send(
      s3RestoreEvent("archives", key, {
        timeMs: time,
        size: 26_214_400,
        storageClass: "DEEP_ARCHIVE",
      }),
    );
    publishToQueue(
      queue,
      TOPIC,
      s3RestoreEvent("archives", key, { eventName: "ObjectRestore:Post" }),
    );
    const [test, completed, viaSns] = await receive(client, queue, { MaxNumberOfMessages: 10 });
    const t = JSON.parse(test!.Body!);
    assert.equal(t.Service, "Amazon S3");
    assert.equal(t.Event, "s3:TestEvent");
    assert.equal(t.Bucket, "archives");
    assert.equal(t.Time, new Date(time).toISOString());
    assert.equal(t.Records, undefined);
    const record = JSON.parse(completed!.Body!).Records[0];
    assert.equal(record.eventName, "ObjectRestore:Completed");
    assert.equal(record.eventSource, "aws:s3");
    assert.equal(record.eventTime, new Date(time).toISOString());
    assert.equal(record.s3.bucket.name, "archives");
    assert.equal(record.s3.bucket.arn, "arn:aws:s3:::archives");
    assert.equal(record.s3.object.size, 26_214_400);
    assert.equal(decode(record.s3.object.key), key);
    assert.deepEqual(record.glacierEventData.restoreEventData, {
      lifecycleRestorationExpiryTime: "2026-03-05T00:00:00.000Z",
      lifecycleRestoreStorageClass: "DEEP_ARCHIVE",
    });
    const post = JSON.parse(JSON.parse(viaSns!.Body!).Message).Records[0];
    assert.equal(post.eventName, "ObjectRestore:Post");
    assert.equal(post.glacierEventData, undefined);
    assert.equal(decode(post.s3.object.key), key);
  });
});
