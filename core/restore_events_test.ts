/**
 * `parseQueueMessage` on literal bodies as SNS, Glacier and S3 write them:
 * events, what is ignored, and malformed input named precisely.
 * @module
 */

import assert from "node:assert/strict";
import { decodeEventKey, parseQueueMessage, type QueueNotice } from "./restore_events.ts";

const TOPIC = "arn:aws:sns:us-east-1:123456789012:coldpack-retrievals";
const JOB_ID = "HkF9p6o7yjhFx-K3CGl6fuSm6VzW9T7esGQfco8nUXVYwS0jlb5gq1JZ55yHgt5vP54ZShjoQzQVVh7v" +
  "EXAMPLEjobID";
const VAULT_ARN = "arn:aws:glacier:us-east-1:123456789012:vaults/coldpack";

/** A DescribeJob JSON as Glacier publishes it (the AWS documentation's example, reshaped). */
function glacierJob(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    Action: "ArchiveRetrieval",
    ArchiveId:
      "NkbByEejwEggmBz2fTHgJrg0XBoDfjP4q6iu87-TjhqG6eGoOY9Z8i1_AUyUsuhPAdTqLHy8pTl5nfCFJmDl2" +
      "yEZONi5L26Omw12vcs01MNGntHEQL8MBfGlqrEXAMPLEArchiveId",
    ArchiveSHA256TreeHash: "9628195fcdbcbbe76cdde932d4646fa7de5f219fb39823836d81f0cc0e18aa67",
    ArchiveSizeInBytes: 26214400,
    Completed: true,
    CompletionDate: "2026-01-01T12:00:00.000Z",
    CreationDate: "2026-01-01T08:00:00.000Z",
    InventoryRetrievalParameters: null,
    InventorySizeInBytes: null,
    JobDescription: "r20260101T080000.000Z-0a1b2c3d4e5f",
    JobId: JOB_ID,
    RetrievalByteRange: "0-1048575",
    SHA256TreeHash: "9628195fcdbcbbe76cdde932d4646fa7de5f219fb39823836d81f0cc0e18aa67",
    SNSTopic: TOPIC,
    StatusCode: "Succeeded",
    StatusMessage: "Succeeded",
    Tier: "Standard",
    VaultARN: VAULT_ARN,
    ...overrides,
  };
}

/** The SNS envelope as SNS lays it out in an SQS body. */
function envelope(message: string, overrides: Record<string, unknown> = {}): string {
  return JSON.stringify(
    {
      Type: "Notification",
      MessageId: "2ae4f5c8-9d1b-5f7a-8f3e-1c2d3e4f5a6b",
      TopicArn: TOPIC,
      Message: message,
      Timestamp: "2026-01-01T12:00:01.000Z",
      SignatureVersion: "1",
      Signature:
        "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiT",
      SigningCertURL: "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000.pem",
      UnsubscribeURL: "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=x",
      ...overrides,
    },
    null,
    2,
  );
}

/** One S3 event record as S3 sends it; `key` already form-encoded. */
function s3Record(
  key: string,
  eventName = "ObjectRestore:Completed",
  bucket = "coldpack-archives",
): Record<string, unknown> {
  return {
    eventVersion: "2.1",
    eventSource: "aws:s3",
    awsRegion: "us-east-1",
    eventTime: "2026-01-01T12:00:00.000Z",
    eventName,
    userIdentity: { principalId: "AmazonCustomer:A1EXAMPLE" },
    requestParameters: { sourceIPAddress: "s3.amazonaws.com" },
    responseElements: { "x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURI" },
    s3: {
      s3SchemaVersion: "1.0",
      configurationId: "coldpack-restores",
      bucket: {
        name: bucket,
        ownerIdentity: { principalId: "A1EXAMPLE" },
        arn: `arn:aws:s3:::${bucket}`,
      },
      object: { key, size: 26214400, eTag: "d41d8cd98f00b204e9800998ecf8427e", sequencer: "0A1B" },
    },
    glacierEventData: {
      restoreEventData: {
        lifecycleRestorationExpiryTime: "2026-01-03T00:00:00.000Z",
        lifecycleRestoreStorageClass: "GLACIER",
      },
    },
  };
}

function records(...rs: unknown[]): string {
  return JSON.stringify({ Records: rs });
}

const TEST_EVENT = JSON.stringify({
  Service: "Amazon S3",
  Event: "s3:TestEvent",
  Time: "2026-01-01T12:00:00.000Z",
  Bucket: "coldpack-archives",
  RequestId: "5582815E1AEA5ADF",
  HostId: "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
});

function malformed(body: string, words: RegExp): string {
  const notice = parseQueueMessage(body);
  assert.equal(notice.kind, "malformed", `expected malformed, got ${JSON.stringify(notice)}`);
  const reason = (notice as { reason: string }).reason;
  assert.match(reason, words);
  return reason;
}

function ignored(body: string, words: RegExp): void {
  const notice = parseQueueMessage(body);
  assert.equal(notice.kind, "ignored", `expected ignored, got ${JSON.stringify(notice)}`);
  assert.match((notice as { reason: string }).reason, words);
}

function glacierEvent(
  statusCode: string,
  extra: { vaultArn?: string | null; description?: string | null; statusMessage?: string | null } =
    {},
) {
  return {
    kind: "glacier-job",
    jobId: JOB_ID,
    statusCode,
    vaultArn: VAULT_ARN,
    description: "r20260101T080000.000Z-0a1b2c3d4e5f",
    statusMessage: "Succeeded",
    ...extra,
  };
}

// ---------------------------------------------------------------------------
// Glacier

Deno.test("parseQueueMessage: a Glacier job in an SNS envelope names the job and the topic", () => {
  const notice = parseQueueMessage(envelope(JSON.stringify(glacierJob())));
  assert.deepEqual(notice, { kind: "events", topic: TOPIC, events: [glacierEvent("Succeeded")] });
});

Deno.test("parseQueueMessage: a raw Glacier job JSON has no topic", () => {
  assert.deepEqual(parseQueueMessage(JSON.stringify(glacierJob())), {
    kind: "events",
    topic: null,
    events: [glacierEvent("Succeeded")],
  });
});

Deno.test("parseQueueMessage: Failed and InProgress jobs are events too (check StatusCode)", () => {
  const failed = glacierJob({ StatusCode: "Failed", StatusMessage: "Insufficient capacity" });
  assert.deepEqual(parseQueueMessage(envelope(JSON.stringify(failed))), {
    kind: "events",
    topic: TOPIC,
    events: [glacierEvent("Failed", { statusMessage: "Insufficient capacity" })],
  });
  // "Completed": true with StatusCode InProgress: StatusCode is what counts.
  const odd = glacierJob({ StatusCode: "InProgress", Completed: true });
  const notice = parseQueueMessage(JSON.stringify(odd));
  assert.equal(notice.kind, "events");
  assert.equal((notice as Extract<QueueNotice, { kind: "events" }>).events[0]?.kind, "glacier-job");
  assert.deepEqual(
    (notice as Extract<QueueNotice, { kind: "events" }>).events[0],
    glacierEvent("InProgress"),
  );
});

Deno.test("parseQueueMessage: a job's optional fields may be null or absent", () => {
  const bare = { Action: "ArchiveRetrieval", JobId: JOB_ID, StatusCode: "Succeeded" };
  assert.deepEqual(parseQueueMessage(JSON.stringify(bare)), {
    kind: "events",
    topic: null,
    events: [glacierEvent("Succeeded", { vaultArn: null, description: null, statusMessage: null })],
  });
  const nulls = glacierJob({ JobDescription: null, StatusMessage: null, VaultARN: null });
  assert.deepEqual(parseQueueMessage(JSON.stringify(nulls)), {
    kind: "events",
    topic: null,
    events: [glacierEvent("Succeeded", { vaultArn: null, description: null, statusMessage: null })],
  });
});

Deno.test("parseQueueMessage: inventory and select jobs are ignored, naming the job", () => {
  const inventory = glacierJob({ Action: "InventoryRetrieval", InventorySizeInBytes: 1234 });
  ignored(envelope(JSON.stringify(inventory)), /^Glacier InventoryRetrieval job "HkF9p6o7/);
  ignored(JSON.stringify(inventory), /InventoryRetrieval/);
  ignored(JSON.stringify(glacierJob({ Action: "Select" })), /^Glacier Select job/);
});

Deno.test("parseQueueMessage: a bad JobId, Action or StatusCode is malformed, naming it", () => {
  const job = (o: Record<string, unknown>) => JSON.stringify(glacierJob(o));
  malformed(job({ JobId: 42 }), /Glacier job notification: JobId is number 42, not a job id/);
  malformed(job({ JobId: null }), /JobId is null/);
  malformed(job({ JobId: "" }), /JobId is empty/);
  malformed(job({ JobId: "has space" }), /JobId is "has space", not a job id/);
  malformed(job({ JobId: "x".repeat(1025) }), /JobId is "x{100}"\.\.\., not a job id/);
  malformed(
    JSON.stringify({ JobId: JOB_ID, StatusCode: "Succeeded" }),
    /Glacier job "HkF9.*": Action is missing \(expected ArchiveRetrieval/,
  );
  malformed(job({ Action: "ArchiveDeletion" }), /Action is "ArchiveDeletion"/);
  malformed(
    job({ StatusCode: "Done" }),
    /StatusCode is "Done" \(expected InProgress, Succeeded or Failed\)/,
  );
  malformed(job({ StatusCode: undefined }), /StatusCode is missing/);
  malformed(job({ StatusCode: "succeeded" }), /StatusCode is "succeeded"/);
  malformed(job({ VaultARN: 7 }), /VaultARN is number 7, not a string/);
  malformed(job({ JobDescription: ["r1"] }), /JobDescription is an array, not a string/);
  malformed(job({ StatusMessage: { a: 1 } }), /StatusMessage is an object, not a string/);
  // Inside an envelope, the reason says where.
  malformed(
    envelope(job({ StatusCode: "Done" })),
    /^SNS Message from "arn:aws:sns:us-east-1:123456789012:coldpack-retrievals": Glacier job/,
  );
});

// ---------------------------------------------------------------------------
// S3

Deno.test("parseQueueMessage: an S3 restore-completed record, raw or in an envelope", () => {
  const body = records(s3Record("pack/2026/0001.tar"));
  const event = {
    kind: "s3-restore",
    bucket: "coldpack-archives",
    key: "pack/2026/0001.tar",
    eventName: "ObjectRestore:Completed",
  };
  assert.deepEqual(parseQueueMessage(body), { kind: "events", topic: null, events: [event] });
  assert.deepEqual(parseQueueMessage(envelope(body)), {
    kind: "events",
    topic: TOPIC,
    events: [event],
  });
});

Deno.test("parseQueueMessage: S3 keys are decoded: '+' is a space, then %XX as UTF-8", () => {
  const key = (encoded: string) => {
    const notice = parseQueueMessage(records(s3Record(encoded)));
    assert.equal(notice.kind, "events", JSON.stringify(notice));
    const e = (notice as Extract<QueueNotice, { kind: "events" }>).events[0];
    assert.equal(e?.kind, "s3-restore");
    return (e as { key: string }).key;
  };
  assert.equal(key("pack/red+flower%2B1.tar"), "pack/red flower+1.tar");
  assert.equal(key("pack%2Fa.tar"), "pack/a.tar");
  assert.equal(key("caf%C3%A9/%E2%82%AC+%F0%9F%93%A6.tar"), "café/€ 📦.tar");
  assert.equal(key("100%25.tar"), "100%.tar");
  assert.equal(decodeEventKey("a+b%20c"), "a b c");
  assert.equal(decodeEventKey("%E2%82"), null, "a cut UTF-8 sequence");
});

Deno.test("parseQueueMessage: several records; other S3 events are dropped", () => {
  const body = records(
    s3Record("a.tar", "ObjectRestore:Post"),
    s3Record("b.tar"),
    s3Record("c.tar", "ObjectRestore:Delete"),
    s3Record("d.tar", "ObjectRestore:Completed", "other-bucket"),
  );
  assert.deepEqual(parseQueueMessage(body), {
    kind: "events",
    topic: null,
    events: [
      {
        kind: "s3-restore",
        bucket: "coldpack-archives",
        key: "b.tar",
        eventName: "ObjectRestore:Completed",
      },
      {
        kind: "s3-restore",
        bucket: "other-bucket",
        key: "d.tar",
        eventName: "ObjectRestore:Completed",
      },
    ],
  });
});

Deno.test("parseQueueMessage: no completed restore among the records: ignored, naming them", () => {
  ignored(
    records(s3Record("a.tar", "ObjectRestore:Post")),
    /^S3 events other than ObjectRestore:Completed: "ObjectRestore:Post"$/,
  );
  ignored(
    envelope(records(
      s3Record("a.tar", "ObjectRestore:Post"),
      s3Record("a.tar", "ObjectRestore:Delete"),
      s3Record("b.tar", "ObjectRestore:Post"),
    )),
    /: "ObjectRestore:Post", "ObjectRestore:Delete"$/,
  );
  ignored(records(s3Record("a.tar", "ObjectCreated:Put")), /"ObjectCreated:Put"/);
});

Deno.test("parseQueueMessage: S3's test event is ignored, raw or in an envelope", () => {
  ignored(TEST_EVENT, /^S3 test event$/);
  ignored(envelope(TEST_EVENT), /^S3 test event$/);
  malformed(
    JSON.stringify({ Service: "Amazon S3", Event: "s3:Other" }),
    /unknown S3 Event "s3:Other" \(expected s3:TestEvent\)/,
  );
});

Deno.test("parseQueueMessage: a bad record is malformed, naming the record and the field", () => {
  const withS3 = (s3: unknown) => records({ ...s3Record("a.tar"), s3 });
  malformed(JSON.stringify({ Records: "x" }), /S3 event: Records is "x", not an array/);
  malformed(JSON.stringify({ Records: {} }), /Records is an object, not an array/);
  malformed(records(), /S3 event: Records is empty/);
  malformed(records(s3Record("a.tar"), 5), /S3 event record 1 is number 5, not an object/);
  malformed(records({ ...s3Record("a.tar"), eventName: 3 }), /record 0: eventName is number 3/);
  malformed(records({ ...s3Record("a.tar"), eventName: undefined }), /eventName is missing/);
  malformed(
    records({ ...s3Record("a.tar"), eventSource: "aws:sqs" }),
    /record 0: eventSource is "aws:sqs", not aws:s3/,
  );
  malformed(withS3(undefined), /record 0: s3 is missing, not an object/);
  malformed(withS3({ object: { key: "a.tar" } }), /record 0: s3\.bucket\.name is missing/);
  malformed(withS3({ bucket: { name: "" }, object: { key: "a" } }), /s3\.bucket\.name is empty/);
  malformed(withS3({ bucket: { name: "b" } }), /record 0: s3\.object\.key is missing/);
  malformed(withS3({ bucket: { name: "b" }, object: { key: 12 } }), /s3\.object\.key is number 12/);
  // A bad record among good ones spoils the message: it is not what S3 sends.
  malformed(
    records(s3Record("ok.tar"), s3Record("x", "ObjectRestore:Post", "")),
    /record 1: s3\.bucket\.name is empty/,
  );
});

Deno.test("parseQueueMessage: a key with broken percent-encoding is malformed, quoting it", () => {
  malformed(records(s3Record("pack/100%.tar")), /s3\.object\.key "pack\/100%\.tar" has broken/);
  malformed(records(s3Record("a%zz")), /"a%zz" has broken percent-encoding/);
  malformed(records(s3Record("a%E2%82")), /"a%E2%82" has broken percent-encoding/);
  malformed(
    envelope(records(s3Record("a%"))),
    /^SNS Message from .*: S3 event record 0: s3\.object/,
  );
});

// ---------------------------------------------------------------------------
// SNS

Deno.test("parseQueueMessage: SNS subscription messages are ignored, naming the type", () => {
  const confirmation = JSON.stringify({
    Type: "SubscriptionConfirmation",
    MessageId: "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
    Token: "2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb",
    TopicArn: TOPIC,
    Message: "You have chosen to subscribe to the topic ...",
    SubscribeURL: "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=2336",
    Timestamp: "2026-01-01T12:00:00.000Z",
  });
  ignored(confirmation, /^SNS SubscriptionConfirmation message$/);
  const reason = (parseQueueMessage(confirmation) as { reason: string }).reason;
  assert.ok(!reason.includes("2336"), "the token is not repeated");
  ignored(
    JSON.stringify({ Type: "UnsubscribeConfirmation", TopicArn: TOPIC, Message: "bye" }),
    /^SNS UnsubscribeConfirmation message$/,
  );
});

Deno.test("parseQueueMessage: a bad SNS envelope is malformed, naming the field", () => {
  const job = JSON.stringify(glacierJob());
  malformed(envelope(job, { Message: undefined }), /SNS envelope from ".*": Message is missing/);
  malformed(envelope(job, { Message: glacierJob() }), /Message is an object/);
  malformed(envelope(job, { TopicArn: undefined }), /SNS envelope: TopicArn is missing/);
  malformed(envelope(job, { TopicArn: "" }), /TopicArn is empty, not a topic ARN/);
  malformed(envelope(job, { Type: "Notice" }), /SNS envelope: unknown Type "Notice"/);
  malformed(envelope(job, { Type: 1 }), /SNS envelope: Type is number 1, not a string/);
  malformed(envelope("restore done"), /the SNS Message from ".*" is not JSON: "restore done"/);
  malformed(envelope("[1,2]"), /the SNS Message from ".*" is JSON an array, not an object/);
  malformed(envelope(envelope(job)), /an SNS envelope inside an SNS envelope/);
  malformed(
    envelope(JSON.stringify({ hello: "world", n: 1 })),
    /neither a Glacier job notification \(JobId\) nor S3 event records \(Records\): keys "hello"/,
  );
});

// ---------------------------------------------------------------------------
// Not JSON, wrong shapes, hostile input

Deno.test("parseQueueMessage: a body that is not JSON is malformed, quoting its start", () => {
  malformed("hello world", /^the message body is not JSON: "hello world"$/);
  malformed("", /^the message body is not JSON: ""$/);
  malformed('{"JobId": "x"', /is not JSON/);
  const long = malformed(`<xml>${"z".repeat(100_000)}</xml>`, /is not JSON: "<xml>z+"\.\.\.$/);
  assert.ok(long.length < 200, `a short reason: ${long.length} characters`);
});

Deno.test("parseQueueMessage: JSON of the wrong shape is malformed", () => {
  malformed("null", /the message body is JSON null, not an object/);
  malformed("42", /is JSON number 42, not an object/);
  malformed('"text"', /is JSON "text", not an object/);
  malformed("[]", /is JSON an array, not an object/);
  malformed("{}", /neither a Glacier job notification .*: keys none$/);
  // Inherited names are not fields: {} has no JobId, "constructor" is only a key.
  malformed('{"constructor":1,"__proto__":{"JobId":"x"}}', /keys "constructor", "__proto__"/);
});

Deno.test("parseQueueMessage: reasons stay short whatever the body", () => {
  const keys = Object.fromEntries(
    Array.from({ length: 500 }, (_, i) => [`key-${i}-${"k".repeat(50)}`, i]),
  );
  const reason = malformed(JSON.stringify(keys), /keys ".*" \(and \d+ more\)$/);
  assert.ok(reason.length <= 250, `${reason.length} characters`);
  const bigTopic = "t".repeat(10_000);
  const r2 = malformed(
    envelope(JSON.stringify(glacierJob({ StatusCode: "s".repeat(10_000) })), {
      TopicArn: bigTopic,
    }),
    /StatusCode is "s+"\.\.\./,
  );
  assert.ok(r2.length <= 400, `${r2.length} characters`);
  // A long key is cut inside quotes, never in the middle of a surrogate pair.
  const emoji = malformed(records(s3Record(`${"a".repeat(99)}📦%`)), /has broken/);
  assert.ok(!/[\uD800-\uDBFF](?![\uDC00-\uDFFF])/.test(emoji), "no lone surrogate");
});

Deno.test("parseQueueMessage: never throws, whatever it is given", () => {
  const deep = "[".repeat(200_000) + "]".repeat(200_000);
  for (
    const body of [
      deep,
      "\u0000",
      '{"Records":[null]}',
      '{"Type":null}',
      '{"JobId":{}}',
      '{"Records":[{"eventName":"ObjectRestore:Completed","s3":[]}]}',
      undefined as unknown as string,
      42 as unknown as string,
    ]
  ) {
    const notice = parseQueueMessage(body);
    assert.equal(notice.kind, "malformed", `${String(body).slice(0, 40)}: ${notice.kind}`);
  }
  assert.match(
    (parseQueueMessage(undefined as unknown as string) as { reason: string }).reason,
    /the body is not text but undefined/,
  );
});
