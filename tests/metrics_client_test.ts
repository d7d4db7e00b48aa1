/**
 * The istatd UDP client against a UDP receiver in the test that records
 * every datagram: line formats, batching under 1,400 bytes, flushing by
 * timer and on close, name checks, and no harm when nobody listens.
 */

import assert from "node:assert/strict";
import { IstatdClient, istatdName } from "../adapters/metrics/istatd_client.ts";
import { udpReceiver } from "./_udp.ts";

Deno.test("counts, gauges and timings go out as istatd lines", async () => {
  const rx = await udpReceiver();
  try {
    const client = new IstatdClient({ port: rx.port, flushMs: 60_000 });
    client.count("coldpack.backup.files_archived");
    client.count("coldpack.backup.files_archived", 12);
    client.gauge("coldpack.backup.queue.plan_files", 3.5);
    client.timing("coldpack.backup.upload_seconds", 0.25);
    client.gauge("coldpack.backup.oldest_pending_seconds", 0);
    await client.close();
    await rx.waitFor(1);
    assert.deepEqual(rx.datagrams, [
      "*coldpack.backup.files_archived 1\n" +
      "*coldpack.backup.files_archived 12\n" +
      "coldpack.backup.queue.plan_files 3.5\n" +
      "coldpack.backup.upload_seconds 0.25\n" +
      "coldpack.backup.oldest_pending_seconds 0\n",
    ]);
    assert.deepEqual(client.stats(), {
      lines: 5,
      datagrams: 1,
      sendErrors: 0,
      dropped: 0,
      renamed: 0,
    });
  } finally {
    await rx.close();
  }
});

Deno.test("lines are batched into whole-line datagrams of at most 1,400 bytes", async () => {
  const rx = await udpReceiver();
  try {
    const client = new IstatdClient({ port: rx.port, flushMs: 60_000 });
    const expected: string[] = [];
    for (let i = 0; i < 500; i++) {
      const name = `coldpack.test.counter_${i}.${"x".repeat(i % 40)}`;
      client.count(name, i);
      expected.push(`*${name} ${i}`);
    }
    await client.close();
    const sent = client.stats().datagrams;
    await rx.waitFor(sent);
    assert.ok(sent > 10, `${sent} datagrams`);
    const longest = Math.max(...expected.map((l) => l.length + 1));
    for (const [i, d] of rx.datagrams.entries()) {
      assert.ok(d.length <= 1400, `datagram ${i} has ${d.length} bytes`);
      assert.ok(d.endsWith("\n"), `datagram ${i} ends in a whole line`);
    }
    // Each was full when it was sent (the next line did not fit), but the last one.
    const notFull = rx.datagrams.filter((d) => d.length <= 1400 - longest);
    assert.ok(notFull.length <= 1, `${notFull.length} datagrams sent before they were full`);
    // Nothing lost, nothing split (UDP may reorder datagrams, so compare as sets).
    const lines = rx.datagrams.join("").split("\n").filter((l) => l !== "");
    assert.deepEqual(lines.sort(), expected.sort());
  } finally {
    await rx.close();
  }
});

Deno.test("a batch goes out by itself after the flush interval", async () => {
  const rx = await udpReceiver();
  const client = new IstatdClient({ port: rx.port, flushMs: 20 });
  try {
    client.count("coldpack.test.ticks", 2);
    await rx.waitFor(1);
    assert.deepEqual(rx.datagrams, ["*coldpack.test.ticks 2\n"]);
  } finally {
    await client.close();
    await rx.close();
  }
});

Deno.test("close sends what is batched; samples after close are dropped and counted", async () => {
  const rx = await udpReceiver();
  try {
    const client = new IstatdClient({ port: rx.port, flushMs: 3_600_000 });
    client.gauge("coldpack.test.last", 7);
    await client.close();
    await rx.waitFor(1);
    assert.deepEqual(rx.datagrams, ["coldpack.test.last 7\n"]);
    client.count("coldpack.test.late");
    await client.close();
    assert.equal(client.stats().dropped, 1);
    assert.equal(rx.datagrams.length, 1);
  } finally {
    await rx.close();
  }
});

Deno.test("names are made valid istatd names, with one warning per name", async () => {
  const rx = await udpReceiver();
  try {
    const logs: string[] = [];
    const client = new IstatdClient({ port: rx.port, flushMs: 60_000, log: (l) => logs.push(l) });
    client.count("coldpack.backup.store_retries.ThrottlingException");
    client.count("coldpack.backup.store_retries.ThrottlingException");
    client.gauge("coldpack.test.a b/c", 1);
    client.count("^^^");
    client.gauge("coldpack.test.nan", NaN);
    client.gauge("coldpack.test.nan", Infinity);
    await client.close();
    await rx.waitFor(1);
    assert.deepEqual(rx.datagrams, [
      "*coldpack.backup.store_retries.throttlingexception 1\n" +
      "*coldpack.backup.store_retries.throttlingexception 1\n" +
      "coldpack.test.a_b_c 1\n",
    ]);
    assert.equal(logs.length, 4, logs.join("\n"));
    assert.match(logs[0]!, /"coldpack\.backup\.store_retries\.ThrottlingException" is not a valid/);
    assert.match(logs[0]!, /sent as coldpack\.backup\.store_retries\.throttlingexception/);
    assert.match(logs[1]!, /sent as coldpack\.test\.a_b_c/);
    assert.match(logs[2]!, /"\^\^\^" has no valid character: dropped/);
    assert.match(
      logs[3]!,
      /coldpack\.test\.nan: dropped a value that is not a finite number \(NaN\)/,
    );
    assert.equal(client.stats().renamed, 3);
    assert.equal(client.stats().dropped, 3);
  } finally {
    await rx.close();
  }
});

Deno.test("istatdName keeps valid names and fixes the rest", () => {
  assert.equal(istatdName("coldpack.backup.files_archived"), "coldpack.backup.files_archived");
  assert.equal(istatdName("a-b_c.9"), "a-b_c.9");
  assert.equal(istatdName("Coldpack.Upload Seconds"), "coldpack.upload_seconds");
  assert.equal(istatdName("*x"), "_x");
  assert.equal(istatdName("..."), null);
  assert.equal(istatdName("@@"), null);
  assert.equal(istatdName("a".repeat(300))?.length, 200);
});

Deno.test("nobody listening: sends neither throw nor block, and close resolves", async () => {
  // A port that was free a moment ago: nothing listens there.
  const rx = await udpReceiver();
  const port = rx.port;
  await rx.close();
  const logs: string[] = [];
  const client = new IstatdClient({ port, flushMs: 5, log: (l) => logs.push(l) });
  for (let i = 0; i < 2_000; i++) {
    client.count("coldpack.test.into_the_void", i);
    if (i % 500 === 0) await new Promise((r) => setTimeout(r, 20));
  }
  await client.close();
  const s = client.stats();
  assert.equal(s.lines + s.dropped, 2_000);
  // Loopback reports nothing for an unconnected socket; at most one log line a minute if it did.
  assert.ok(logs.length <= 1, logs.join("\n"));
});

Deno.test("datagrams beyond the in-flight limit are dropped and counted, not queued", async () => {
  const rx = await udpReceiver();
  try {
    const client = new IstatdClient({ port: rx.port, flushMs: 60_000, maxInFlight: 1 });
    // Three full datagrams in one synchronous burst: the socket has taken none yet.
    for (let d = 0; d < 3; d++) {
      for (let i = 0; i < 10; i++) client.count(`coldpack.test.burst_${d}_${i}`, i);
      client.flush();
    }
    await client.close();
    await rx.waitFor(1);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(rx.datagrams.length, 1);
    assert.match(rx.datagrams[0]!, /^\*coldpack\.test\.burst_0_0 0\n/);
    assert.deepEqual(client.stats(), {
      lines: 10,
      datagrams: 1,
      sendErrors: 0,
      dropped: 20,
      renamed: 0,
    });
  } finally {
    await rx.close();
  }
});

Deno.test("a port out of range is refused at construction", () => {
  assert.throws(
    () => new IstatdClient({ port: 70_000 }),
    (e) => e instanceof RangeError && /Invalid metrics agent port: 70000/.test(e.message),
  );
});
