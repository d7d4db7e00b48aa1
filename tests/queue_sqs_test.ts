/**
 * The SQS notification queue against the SQS double (real `@aws-sdk/client-sqs`
 * requests, signed and checked): receive and delete, long polls, visibility
 * timeouts and redelivery, duplicates, aborts, error mapping; and the bodies
 * SNS, S3 and the Glacier double put in a queue, read back through
 * `parseQueueMessage`.
 * @module
 */

import assert from "node:assert/strict";
import {
  openSqsQueue,
  parseSqsQueueUrl,
  SqsNotificationQueue,
  type SqsQueueOptions,
} from "../adapters/queue/sqs.ts";
import { GlacierStore } from "../adapters/store/glacier.ts";
import { newArchiveId } from "../core/ids.ts";
import type { NotificationQueue, QueueMessage } from "../core/ports.ts";
import { parseQueueMessage, type QueueNotice } from "../core/restore_events.ts";
import { GlacierDouble } from "./doubles/glacier.ts";
import { ManualClock } from "./doubles/s3_archive.ts";
import {
  DOUBLE_ACCOUNT_ID,
  publishToQueue,
  s3RestoreEvent,
  s3TestEvent,
  snsEnvelope,
  SqsDouble,
  type SqsQueue,
  TEST_CREDENTIALS,
} from "./doubles/sqs.ts";
import { bytesOf, expectError, portError } from "./_helpers.ts";
import { referenceTreeHash } from "./store_conformance.ts";
import { chunked } from "./_streams.ts";

const START = Date.UTC(2026, 0, 1);
const TOPIC = `arn:aws:sns:us-east-1:${DOUBLE_ACCOUNT_ID}:coldpack-retrievals`;
const POLL: {
  readonly waitSeconds: number;
  readonly max: number;
  readonly visibilitySeconds: number;
} = { waitSeconds: 0, max: 10, visibilitySeconds: 60 };

interface Ctx {
  sqs: SqsDouble;
  clock: ManualClock;
  double: SqsQueue;
  queue: NotificationQueue;
}

async function withQueue(
  fn: (ctx: Ctx) => Promise<void>,
  options: SqsQueueOptions = {},
): Promise<void> {
  const clock = new ManualClock(START);
  const sqs = await SqsDouble.start({ clock, pollIntervalMs: 10 });
  const double = sqs.createQueue("restores");
  const queue = openSqsQueue(double.url, { ...sqs.connection, ...options });
  try {
    await fn({ sqs, clock, double, queue });
  } finally {
    await queue.close();
    await sqs.close();
  }
}

/** Waits until `cond` holds, checking every 5 ms; the bound is a safety net, not a claim. */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2000; i++) {
    if (cond()) return;
    await new Promise((r) => setTimeout(r, 5));
  }
  throw new Error(`Gave up waiting for ${what}`);
}

async function receiveOne(queue: NotificationQueue, visibilitySeconds = 60): Promise<QueueMessage> {
  const got = await queue.receive({ ...POLL, visibilitySeconds });
  assert.equal(got.length, 1, `one message expected, got ${got.length}`);
  return got[0]!;
}

// ---------------------------------------------------------------------------
// URLs and options

Deno.test("sqs queue: the queue URL is checked, the region taken from an AWS host", () => {
  assert.deepEqual(parseSqsQueueUrl("https://sqs.eu-west-1.amazonaws.com/123456789012/restores"), {
    url: "https://sqs.eu-west-1.amazonaws.com/123456789012/restores",
    region: "eu-west-1",
    account: "123456789012",
    name: "restores",
  });
  assert.equal(
    parseSqsQueueUrl("https://us-west-2.queue.amazonaws.com/123456789012/q").region,
    "us-west-2",
  );
  assert.equal(
    parseSqsQueueUrl("https://sqs.cn-north-1.amazonaws.com.cn/123456789012/q").region,
    "cn-north-1",
  );
  assert.deepEqual(parseSqsQueueUrl("http://127.0.0.1:4566/000000000000/jobs.fifo"), {
    url: "http://127.0.0.1:4566/000000000000/jobs.fifo",
    region: null,
    account: "000000000000",
    name: "jobs.fifo",
  });
  const bad = (url: string, ...words: string[]) =>
    assert.throws(() => openSqsQueue(url), expectError(TypeError, ...words));
  bad("sqs/restores", 'Invalid SQS queue URL "sqs/restores": not a URL');
  bad("ftp://sqs.us-east-1.amazonaws.com/123456789012/q", "the scheme ftp: is not https:");
  bad(
    "https://sqs.us-east-1.amazonaws.com/restores",
    '"https://sqs.us-east-1.amazonaws.com/restores"',
  );
  bad("https://sqs.us-east-1.amazonaws.com/12345/q", "12-digit account");
  bad("https://sqs.us-east-1.amazonaws.com/123456789012/a/b", "the path must be /ACCOUNT/NAME");
  bad("https://sqs.us-east-1.amazonaws.com/123456789012/bad.name", "the path must be");
  bad(`https://sqs.us-east-1.amazonaws.com/123456789012/${"q".repeat(81)}`, "the path must be");
  bad("https://sqs.us-east-1.amazonaws.com/123456789012/q?Action=x", "no query or fragment");
  // Credentials in the URL are refused without repeating them.
  assert.throws(
    () => openSqsQueue("https://AKID:hunter2@sqs.us-east-1.amazonaws.com/123456789012/q"),
    (e: unknown) => {
      assert.ok(e instanceof TypeError);
      assert.match(e.message, /carries a user name or password/);
      assert.ok(!e.message.includes("hunter2") && !e.message.includes("AKID"), e.message);
      return true;
    },
  );
});

Deno.test("sqs queue: receive options out of range are RangeErrors, and send nothing", async () => {
  await withQueue(async ({ sqs, queue }) => {
    const bad = async (options: Partial<typeof POLL>, words: string) =>
      await assert.rejects(queue.receive({ ...POLL, ...options }), expectError(RangeError, words));
    await bad(
      { waitSeconds: 21 },
      "Invalid wait seconds: 21 (must be a whole number from 0 to 20)",
    );
    await bad({ waitSeconds: -1 }, "Invalid wait seconds: -1");
    await bad({ waitSeconds: 0.5 }, "Invalid wait seconds: 0.5");
    await bad({ max: 0 }, "Invalid max messages: 0 (must be a whole number from 1 to 10)");
    await bad({ max: 11 }, "Invalid max messages: 11");
    await bad({ visibilitySeconds: 43_201 }, "Invalid visibility seconds: 43201");
    await bad({ visibilitySeconds: Number.NaN }, "Invalid visibility seconds: NaN");
    assert.equal(sqs.requestCount("ReceiveMessage"), 0);
    // The bounds themselves are fine.
    assert.deepEqual(await queue.receive({ waitSeconds: 0, max: 1, visibilitySeconds: 0 }), []);
    assert.deepEqual(
      await queue.receive({ waitSeconds: 0, max: 10, visibilitySeconds: 43_200 }),
      [],
    );
  });
});

// ---------------------------------------------------------------------------
// Messages

Deno.test("sqs queue: receive then delete; deleting again succeeds, as in SQS", async () => {
  await withQueue(async ({ sqs, double, queue }) => {
    assert.equal(queue.location, double.url);
    assert.ok(queue instanceof SqsNotificationQueue);
    assert.deepEqual(await queue.receive(POLL), [], "an empty queue answers none");
    const first = double.send("restore r-1 finished");
    const second = double.send("restore r-2 finished");
    const got = await queue.receive({ ...POLL, max: 10 });
    assert.deepEqual(
      got.map((m) => [m.id, m.body, m.receiveCount]),
      [[first, "restore r-1 finished", 1], [second, "restore r-2 finished", 1]],
    );
    assert.deepEqual(await queue.receive(POLL), [], "in flight: hidden from other receives");
    await queue.delete(got[0]!);
    await queue.delete(got[1]!);
    assert.deepEqual(sqs.messages("restores"), []);
    await queue.delete(got[0]!); // already deleted: SQS answers success
    assert.deepEqual(sqs.requestCounts(), { ReceiveMessage: 3, DeleteMessage: 3 });
  });
});

Deno.test("sqs queue: max bounds a receive; messages come oldest first", async () => {
  await withQueue(async ({ double, queue }) => {
    for (let i = 0; i < 5; i++) double.send(`m${i}`);
    assert.deepEqual((await queue.receive({ ...POLL, max: 3 })).map((m) => m.body), [
      "m0",
      "m1",
      "m2",
    ]);
    assert.deepEqual((await queue.receive({ ...POLL, max: 3 })).map((m) => m.body), ["m3", "m4"]);
  });
});

Deno.test("sqs queue: a long poll answers as soon as a message arrives", async () => {
  await withQueue(async ({ sqs, double, queue }) => {
    const polled = queue.receive({ ...POLL, waitSeconds: 20 });
    await until(() => sqs.waitingReceives("restores") === 1, "the long poll to wait");
    const id = double.send("job done");
    const got = await polled;
    assert.deepEqual(got.map((m) => [m.id, m.body]), [[id, "job done"]]);
  });
});

Deno.test("sqs queue: not deleted in time, a message comes back with receiveCount 2", async () => {
  await withQueue(async ({ sqs, clock, double, queue }) => {
    const id = double.send("restore r-9 finished");
    const first = await receiveOne(queue, 60);
    assert.equal(first.receiveCount, 1);
    clock.advance(59_999);
    assert.deepEqual(await queue.receive(POLL), [], "still hidden 1 ms before the end");
    clock.advance(1);
    const again = await receiveOne(queue, 60);
    assert.equal(again.id, id);
    assert.equal(again.receiveCount, 2);
    assert.notEqual(again.receipt, first.receipt, "a new receipt handle with every receive");
    // The old handle deletes nothing (SQS: "will succeed, but the message might not be
    // deleted"); the latest one does.
    await queue.delete(first);
    assert.equal(sqs.ignoredDeletes("restores"), 1);
    assert.equal(sqs.messages("restores").length, 1);
    await queue.delete(again);
    assert.deepEqual(sqs.messages("restores"), []);
  });
});

Deno.test("sqs queue: a long poll picks up a message whose visibility ran out", async () => {
  await withQueue(async ({ sqs, clock, double, queue }) => {
    double.send("m");
    await receiveOne(queue, 30);
    const polled = queue.receive({ ...POLL, waitSeconds: 20 });
    await until(() => sqs.waitingReceives("restores") === 1, "the long poll to wait");
    clock.advance(30_000);
    sqs.wake();
    const [m] = await polled;
    assert.equal(m?.receiveCount, 2);
  });
});

Deno.test("sqs queue: a duplicate delivery is a second message with the same id", async () => {
  await withQueue(async ({ sqs, double, queue }) => {
    sqs.inject({ kind: "duplicate" });
    const id = double.send("job j-7 done");
    const first = await receiveOne(queue, 300);
    const twin = await receiveOne(queue, 300);
    assert.equal(twin.id, id);
    assert.equal(twin.body, first.body);
    assert.notEqual(twin.receipt, first.receipt);
    await queue.delete(first);
    assert.equal(sqs.messages("restores").length, 1, "the twin outlives the original");
    await queue.delete(twin);
    assert.deepEqual(sqs.messages("restores"), []);
  });
});

// ---------------------------------------------------------------------------
// Aborts and close

Deno.test("sqs queue: an abort ends a long poll with the signal's reason", async () => {
  await withQueue(async ({ sqs, double, queue }) => {
    const stop = new AbortController();
    const polled = queue.receive({ ...POLL, waitSeconds: 20, signal: stop.signal });
    await until(() => sqs.waitingReceives("restores") === 1, "the long poll to wait");
    const reason = new Error("daemon shutting down");
    stop.abort(reason);
    await assert.rejects(polled, (e: unknown) => e === reason);
    await until(() => sqs.waitingReceives("restores") === 0, "the double to see the poll go");
    // The abandoned poll took nothing.
    double.send("for the next poll");
    assert.equal((await receiveOne(queue)).receiveCount, 1);
  });
});

Deno.test("sqs queue: an aborted signal rejects at once, sending nothing", async () => {
  await withQueue(async ({ sqs, double, queue }) => {
    double.send("m");
    const stopped = AbortSignal.abort(new Error("stopped before"));
    await assert.rejects(queue.receive({ ...POLL, signal: stopped }), /stopped before/);
    const m = await receiveOne(queue);
    await assert.rejects(queue.delete(m, { signal: stopped }), /stopped before/);
    assert.deepEqual(sqs.requestCounts(), { ReceiveMessage: 1 });
  });
});

Deno.test("sqs queue: an abort ends a slow delete with the signal's reason", async () => {
  await withQueue(async ({ sqs, double, queue }) => {
    double.send("m");
    const m = await receiveOne(queue);
    sqs.inject({ kind: "slow", action: "DeleteMessage", delayMs: 30_000 });
    const stop = new AbortController();
    const deleting = queue.delete(m, { signal: stop.signal });
    await until(() => sqs.requestCount("DeleteMessage") === 1, "the delete to arrive");
    stop.abort(new DOMException("per-call timeout", "TimeoutError"));
    await assert.rejects(
      deleting,
      (e: unknown) => e instanceof DOMException && e.name === "TimeoutError",
    );
    assert.equal(sqs.messages("restores").length, 1, "the abandoned delete deleted nothing");
  });
});

Deno.test("sqs queue: close() ends a waiting long poll; calls after it are Closed", async () => {
  await withQueue(async ({ sqs, queue }) => {
    const polled = queue.receive({ ...POLL, waitSeconds: 20 });
    await until(() => sqs.waitingReceives("restores") === 1, "the long poll to wait");
    await queue.close();
    await assert.rejects(polled, portError("Closed", false, "ReceiveMessage", "is closed"));
    await assert.rejects(queue.receive(POLL), portError("Closed", false, "ReceiveMessage"));
    await queue.close(); // idempotent
  });
});

// ---------------------------------------------------------------------------
// Errors

Deno.test("sqs queue: a missing queue is QueueDoesNotExist, naming SQS's code and the URL", async () => {
  await withQueue(async ({ sqs }) => {
    const url = `${sqs.endpoint}/${DOUBLE_ACCOUNT_ID}/no-such-queue`;
    const queue = openSqsQueue(url, sqs.connection);
    try {
      await assert.rejects(
        queue.receive(POLL),
        portError(
          "QueueDoesNotExist",
          false,
          "ReceiveMessage",
          url,
          "AWS.SimpleQueueService.NonExistentQueue",
          "HTTP 400",
        ),
      );
    } finally {
      await queue.close();
    }
  });
});

Deno.test("sqs queue: a queue URL the endpoint does not serve is InvalidAddress", async () => {
  await withQueue(async ({ sqs }) => {
    const url = `https://sqs.eu-west-1.amazonaws.com/${DOUBLE_ACCOUNT_ID}/restores`;
    const queue = openSqsQueue(url, { ...sqs.connection, region: "us-east-1" });
    try {
      await assert.rejects(queue.receive(POLL), portError("InvalidAddress", false, "HTTP 404"));
    } finally {
      await queue.close();
    }
  });
});

Deno.test("sqs queue: the region of an AWS queue URL is the one requests are signed for", async () => {
  await withQueue(async ({ sqs }) => {
    // The double serves us-east-1; a URL naming eu-west-1 signs for eu-west-1.
    const url = `https://sqs.eu-west-1.amazonaws.com/${DOUBLE_ACCOUNT_ID}/restores`;
    const { region: _, ...connection } = sqs.connection;
    const queue = openSqsQueue(url, connection);
    try {
      await assert.rejects(
        queue.receive(POLL),
        portError("SignatureDoesNotMatch", false, "eu-west-1/sqs"),
      );
    } finally {
      await queue.close();
    }
    // An AWS URL of the double's own region works through the custom endpoint.
    const ok = openSqsQueue(`https://sqs.us-east-1.amazonaws.com/${DOUBLE_ACCOUNT_ID}/restores`, {
      endpoint: sqs.endpoint,
      credentials: TEST_CREDENTIALS,
    });
    try {
      assert.deepEqual(await ok.receive(POLL), []);
    } finally {
      await ok.close();
    }
  });
});

Deno.test("sqs queue: wrong credentials are not retryable, and the secret is not shown", async () => {
  await withQueue(async ({ sqs, double }) => {
    const secret = "not-the-secret-but-secret-anyway";
    const wrongSecret = openSqsQueue(double.url, {
      ...sqs.connection,
      credentials: { ...TEST_CREDENTIALS, secretAccessKey: secret },
    });
    const unknownKey = openSqsQueue(double.url, {
      ...sqs.connection,
      credentials: { ...TEST_CREDENTIALS, accessKeyId: "AKIDSOMEONEELSE" },
    });
    try {
      await assert.rejects(wrongSecret.receive(POLL), (e: unknown) => {
        portError("SignatureDoesNotMatch", false, "HTTP 403", double.url)(e);
        assert.ok(!(e as Error).message.includes(secret));
        return true;
      });
      await assert.rejects(
        unknownKey.receive(POLL),
        portError("InvalidClientTokenId", false, "HTTP 403"),
      );
    } finally {
      await wrongSecret.close();
      await unknownKey.close();
    }
  });
});

Deno.test("sqs queue: 5xx and throttling are retryable PortErrors with SQS's code", async () => {
  await withQueue(async ({ sqs, double, queue }) => {
    double.send("survives the faults");
    sqs.inject({ kind: "server-error", action: "ReceiveMessage" });
    sqs.inject({ kind: "unavailable", action: "ReceiveMessage" });
    sqs.inject({ kind: "request-throttled", action: "ReceiveMessage" });
    sqs.inject({ kind: "throttle", action: "ReceiveMessage" });
    await assert.rejects(queue.receive(POLL), portError("InternalError", true, "HTTP 500"));
    await assert.rejects(queue.receive(POLL), portError("ServiceUnavailable", true, "HTTP 503"));
    await assert.rejects(queue.receive(POLL), portError("RequestThrottled", true, "HTTP 403"));
    await assert.rejects(queue.receive(POLL), portError("ThrottlingException", true, "HTTP 400"));
    const m = await receiveOne(queue);
    assert.equal(m.receiveCount, 1, "the faulted receives took nothing");
    sqs.inject({ kind: "error", action: "DeleteMessage", code: "KMS.ThrottlingException" });
    await assert.rejects(
      queue.delete(m),
      portError("KmsThrottled", true, "DeleteMessage", "KMS.ThrottlingException"),
    );
    sqs.inject({ kind: "error", action: "DeleteMessage", code: "AccessDenied", status: 403 });
    await assert.rejects(queue.delete(m), portError("AccessDenied", false, "HTTP 403"));
    await queue.delete(m);
    assert.deepEqual(sqs.messages("restores"), []);
  });
});

Deno.test("sqs queue: a forged receipt handle is ReceiptHandleIsInvalid, not retryable", async () => {
  await withQueue(async ({ queue }) => {
    const forged: QueueMessage = { id: "x", receipt: "forged-handle", body: "", receiveCount: 1 };
    await assert.rejects(
      queue.delete(forged),
      portError("ReceiptHandleIsInvalid", false, "DeleteMessage", "HTTP 404"),
    );
  });
});

Deno.test("sqs queue: resets, lost answers and bad MD5s are retryable", async () => {
  await withQueue(async ({ sqs, clock, double, queue }) => {
    double.send("m");
    sqs.inject({ kind: "reset", action: "ReceiveMessage" });
    await assert.rejects(queue.receive(POLL), portError("ECONNRESET", true, "ReceiveMessage"));
    sqs.inject({ kind: "wrong-md5", action: "ReceiveMessage" });
    await assert.rejects(queue.receive(POLL), portError("MD5OfBodyMismatch", true));
    clock.advance(60_000);
    const m = await receiveOne(queue);
    assert.equal(m.receiveCount, 2, "the bad-MD5 receive took the message");
    sqs.inject({ kind: "lost-response", action: "DeleteMessage" });
    await assert.rejects(queue.delete(m), portError("ECONNRESET", true, "DeleteMessage"));
    assert.deepEqual(sqs.messages("restores"), [], "the delete happened");
    await queue.delete(m); // the retry the wrapper makes: already deleted, success
  });
});

Deno.test("sqs queue: nobody listening is ECONNREFUSED, retryable", async () => {
  const sqs = await SqsDouble.start({ queues: ["restores"] });
  const url = sqs.queue("restores").url;
  const connection = sqs.connection;
  await sqs.close();
  const queue = openSqsQueue(url, connection);
  try {
    await assert.rejects(queue.receive(POLL), portError("ECONNREFUSED", true, url));
  } finally {
    await queue.close();
  }
});

// ---------------------------------------------------------------------------
// What SNS, S3 and Glacier put in the queue, read back

function events(notice: QueueNotice) {
  assert.equal(notice.kind, "events", JSON.stringify(notice));
  return notice as Extract<QueueNotice, { kind: "events" }>;
}

Deno.test("sqs queue: SNS, S3 and test-event bodies from the double parse end to end", async () => {
  await withQueue(async ({ double, queue }) => {
    const jobId =
      "kKB7ymWJVpPSwhGP6ycSOAekp9ZYe_--zM_mw6k76ZFGEIWQX-ybtRDvc2VkPSDtfKmQrj0IRQLSGsNuDp" +
      "-AJVlu2ccmDSyDUmZwKbwbpAdGATGDiB3hHO0bjbGehXTcApVud_wyDw";
    const job = {
      Action: "ArchiveRetrieval",
      ArchiveId: "archive-1",
      Completed: true,
      JobDescription: "r20260101T000000.000Z-0a1b2c3d4e5f",
      JobId: jobId,
      StatusCode: "Succeeded",
      StatusMessage: "Succeeded",
      VaultARN: `arn:aws:glacier:us-east-1:${DOUBLE_ACCOUNT_ID}:vaults/coldpack`,
    };
    publishToQueue(double, TOPIC, job);
    publishToQueue(double, TOPIC, { ...job, StatusCode: "Failed", StatusMessage: "gone" }, {
      raw: true,
    });
    publishToQueue(double, TOPIC, s3RestoreEvent("archives", "pack/red flower+1 é.tar"));
    double.send(s3RestoreEvent("archives", "pack/a b.tar", { encodeSlash: true }));
    double.send(s3RestoreEvent("archives", "pack/c.tar", { eventName: "ObjectRestore:Post" }));
    double.send(s3TestEvent("archives"));
    double.send(snsEnvelope(TOPIC, "not json at all"));
    const got = await queue.receive({ ...POLL, max: 10 });
    const notices = got.map((m) => parseQueueMessage(m.body));
    assert.equal(notices.length, 7);
    const [sns, raw, s3Sns, s3Raw, post, test, bad] = notices as QueueNotice[];
    assert.deepEqual(events(sns!), {
      kind: "events",
      topic: TOPIC,
      events: [{
        kind: "glacier-job",
        jobId,
        statusCode: "Succeeded",
        vaultArn: job.VaultARN,
        description: job.JobDescription,
        statusMessage: "Succeeded",
      }],
    });
    assert.equal(events(raw!).topic, null);
    assert.deepEqual(events(raw!).events.map((e) => e.kind === "glacier-job" && e.statusCode), [
      "Failed",
    ]);
    assert.deepEqual(events(s3Sns!), {
      kind: "events",
      topic: TOPIC,
      events: [{
        kind: "s3-restore",
        bucket: "archives",
        key: "pack/red flower+1 é.tar",
        eventName: "ObjectRestore:Completed",
      }],
    });
    assert.deepEqual(events(s3Raw!).events, [{
      kind: "s3-restore",
      bucket: "archives",
      key: "pack/a b.tar",
      eventName: "ObjectRestore:Completed",
    }]);
    assert.equal(events(s3Raw!).topic, null);
    assert.deepEqual(post, {
      kind: "ignored",
      reason: 'S3 events other than ObjectRestore:Completed: "ObjectRestore:Post"',
    });
    assert.deepEqual(test, { kind: "ignored", reason: "S3 test event" });
    assert.equal(bad?.kind, "malformed");
    assert.match((bad as { reason: string }).reason, /SNS Message from .* is not JSON/);
  });
});

Deno.test("sqs queue: the Glacier double's job notification, through SNS, names the job", async () => {
  const vault = "coldpack-test";
  const glacier = await GlacierDouble.start({ vaults: [vault], jobDelayMs: 4 * 3_600_000 });
  const store = new GlacierStore({ region: "us-east-1", vault }, {
    endpoint: glacier.endpoint,
    credentials: TEST_CREDENTIALS,
    snsTopic: TOPIC,
  });
  try {
    await withQueue(async ({ double, queue }) => {
      const data = bytesOf(3, 1000);
      const put = await store.put({
        archiveId: newArchiveId(START, new Uint8Array(6)),
        size: data.length,
        treeHash: referenceTreeHash(data),
        description: "coldpack test archive",
        body: () => chunked(data),
      });
      const job = await store.startRetrieval(put.remoteId, { description: "r-listener" });
      glacier.completeJob(job.jobId);
      const [note] = glacier.notifications();
      assert.equal(note?.topic, TOPIC);
      publishToQueue(double, note!.topic, note!.message);
      const m = await receiveOne(queue);
      const notice = events(parseQueueMessage(m.body));
      assert.equal(notice.topic, TOPIC);
      const [event] = notice.events;
      assert.ok(event?.kind === "glacier-job", JSON.stringify(event));
      assert.equal(event.jobId, job.jobId);
      assert.equal(event.statusCode, "Succeeded");
      assert.equal(event.description, "r-listener");
      assert.match(event.vaultArn ?? "", /:vaults\/coldpack-test$/);
      await queue.delete(m);
    });
  } finally {
    await store.close();
    await glacier.close();
  }
});
