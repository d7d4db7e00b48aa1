/**
 * coldpack-restore-listener as an operator runs it: the binaries as
 * subprocesses, the strict Glacier, SQS, MogileFS and S3 doubles (s3rver
 * behind the S3 one) as peers. Files are backed up, deleted at the source,
 * restored with coldpack-restore (no --wait), and the listener writes them
 * when the store's notice arrives through SNS -> SQS, or, without a queue,
 * when polling finds them ready. Bytes are compared with the originals.
 * @module
 */

import assert from "node:assert/strict";
import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
import type { RestoreRow } from "../core/ports.ts";
import { GlacierDouble, TEST_CREDENTIALS } from "./doubles/glacier.ts";
import { MogileFsDouble } from "./doubles/mogilefs.ts";
import { ManualClock, S3ArchiveDouble } from "./doubles/s3_archive.ts";
import { publishToQueue, s3TestEvent, SqsDouble } from "./doubles/sqs.ts";
import { bytesOf, catalogRows, put, runCmd, spawnCmd, tempDir } from "./_helpers.ts";

const VAULT = "ugc-archive";
const TOPIC = "arn:aws:sns:us-east-1:123456789012:coldpack-restores";
const HOUR = 3_600_000;

/** A running listener: its stderr collected as it comes. */
interface Listener {
  readonly child: Deno.ChildProcess;
  /** Everything it printed so far. */
  log(): string;
  /** SIGTERM, then its exit code and whole log. */
  stop(): Promise<{ code: number; log: string }>;
  kill(): Promise<void>;
}

function startListener(args: string[], env: Record<string, string>): Listener {
  const child = spawnCmd("restore_listener", args, { env });
  let text = "";
  const decoder = new TextDecoder();
  const drain = (async () => {
    for await (const chunk of child.stderr) text += decoder.decode(chunk, { stream: true });
  })();
  const drainOut = (async () => {
    for await (const _ of child.stdout) { /* nothing printed there */ }
  })();
  return {
    child,
    log: () => text,
    async stop() {
      child.kill("SIGTERM");
      const status = await child.status;
      await drain;
      await drainOut;
      return { code: status.code, log: text };
    },
    async kill() {
      child.kill("SIGKILL");
      await child.status;
      await drain;
      await drainOut;
    },
  };
}

/** Waits (bounded) until `test` holds, re-checking every 100 ms; fails with `what` and the log. */
async function until(
  what: string,
  test: () => boolean | Promise<boolean>,
  log: () => string,
  limitMs = 60_000,
): Promise<void> {
  const deadline = Date.now() + limitMs;
  while (Date.now() < deadline) {
    if (await test()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`gave up waiting for ${what}; listener said:\n${log()}`);
}

async function restoresIn(catalogPath: string): Promise<RestoreRow[]> {
  const catalog = await SqliteCatalog.open(catalogPath);
  try {
    return await catalog.restores({ limit: 1000 });
  } finally {
    await catalog.close();
  }
}

function allFinished(rows: readonly RestoreRow[], n: number): boolean {
  return rows.length === n && rows.every((r) => r.state !== "pending");
}

Deno.test("listener + SQS: Glacier notices through SNS bring files back to MogileFS, another domain and a local root; forged notices are dropped", async () => {
  const glacier = await GlacierDouble.start({ vaults: [VAULT], jobDelayMs: 4 * HOUR });
  const sqs = await SqsDouble.start({ queues: ["restores"] });
  const mogile = await MogileFsDouble.start({ domains: { ugc: { thumb: {} }, recovered: {} } });
  const state = await tempDir();
  const root = await tempDir();
  const outside = await tempDir();
  const queue = sqs.queue("restores");
  glacier.subscribe(TOPIC, queue);
  const env = {
    AWS_ENDPOINT_URL_GLACIER: glacier.endpoint,
    AWS_ENDPOINT_URL_SQS: sqs.endpoint,
    AWS_REGION: glacier.region,
    AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
  };
  const store = `glacier://us-east-1/${VAULT}?sns-topic=${TOPIC}`;
  const source = mogile.url("ugc");
  const config = `${state.path}/coldpack.toml`;
  await Deno.writeTextFile(
    config,
    `[[url_patterns]]\nmatch = '^https://img\\.example\\.com/p/(?<key>.+)$'\ndomain = "ugc"\n`,
  );
  const common = [
    "--store",
    store,
    "--source",
    source,
    "--state-dir",
    state.path,
    "--config",
    config,
  ];
  let listener: Listener | null = null;
  try {
    const files = new Map<string, Uint8Array>();
    for (let i = 0; i < 30; i++) {
      const key = `product/${i}/texture.png`;
      files.set(key, bytesOf(100 + i, 2_000 + i * 3_001));
      await mogile.put("ugc", key, files.get(key)!, { class: i % 2 === 0 ? "thumb" : "" });
    }
    const backup = await runCmd("backup", [
      ...common,
      "--once",
      "--target-size",
      "128KiB",
    ], { env });
    assert.equal(backup.code, 0, backup.stderr);
    for (const k of ["product/3/texture.png", "product/17/texture.png"]) {
      assert.ok(mogile.delete("ugc", k));
    }
    const ids = new Map(
      (await catalogRows(`${state.path}/catalog.db`)).map((r) => [r.key, r.id]),
    );

    const batch = [
      "# back where they were, by domain and key and by MogileFS fid",
      "ugc:product/3/texture.png mogilefs",
      `${ids.get("product/17/texture.png")} mogilefs`,
      `fid:${ids.get("product/6/texture.png")} ${root.path}/by-id.png`,
      "ugc:product/5/texture.png mogilefs:recovered/tickets/5.png",
      `ugc:product/8/texture.png ${root.path}/t8/texture.png`,
      `ugc:product/9/texture.png ${root.path}/dir/`,
      `https://img.example.com/p/product/12/texture.png ${root.path}/by-url.png`,
      `ugc:product/10/texture.png ${outside.path}/nope.png`,
      "ugc:product/11/texture.png not-a-dest:",
    ].join("\n");
    const request = await runCmd("restore", ["--batch", "-", ...common], { env, stdin: batch });
    // The bad DEST line is reported, the others recorded.
    assert.equal(request.code, 1, request.stderr);
    assert.match(request.stderr, /line 10: .*not-a-dest/);
    assert.match(request.stdout, /restoring 8 file\(s\)/);
    // Glacier Standard: $0.01 per GB and $0.05 per 1,000 requests.
    assert.match(
      request.stdout,
      /estimated cost: \$0\.0\d{3} \(Standard, 0\.00\d GB, \d request\(s\); /,
    );

    listener = startListener([
      ...common,
      "--queue",
      queue.url,
      "--roots",
      root.path,
      "--poll",
      "1h",
    ], env);
    await until(
      "the listener to start",
      () => /store glacier:/.test(listener!.log()),
      listener.log,
    );

    // Forged and foreign notices, before the real ones: each dropped, none fatal.
    queue.send("not json at all");
    publishToQueue(queue, TOPIC, {
      Action: "ArchiveRetrieval",
      JobId: "forged-job",
      StatusCode: "Succeeded",
      Completed: true,
    });
    publishToQueue(queue, "arn:aws:sns:us-east-1:123456789012:someone-else", {
      Action: "ArchiveRetrieval",
      JobId: "x",
      StatusCode: "Succeeded",
      Completed: true,
    });
    queue.send(s3TestEvent("some-bucket"));

    // Two downloads cut short half-way: read again, never written short.
    glacier.inject({ kind: "truncate", operation: "GetJobOutput", count: 2 });
    glacier.advance(5 * HOUR); // the jobs are done; Glacier publishes to the topic
    await until(
      "every restore to finish",
      async () => allFinished(await restoresIn(`${state.path}/catalog.db`), 8),
      listener.log,
    );
    const rows = await restoresIn(`${state.path}/catalog.db`);
    const byDest = new Map(rows.map((r) => [r.dest, r]));
    for (const k of ["product/3/texture.png", "product/17/texture.png"]) {
      const back = mogile.file("ugc", k);
      assert.ok(back, `${k} is back in MogileFS`);
      assert.deepEqual(back.bytes, files.get(k));
    }
    assert.deepEqual(
      mogile.file("recovered", "tickets/5.png")?.bytes,
      files.get("product/5/texture.png"),
    );
    assert.deepEqual(
      await Deno.readFile(`${root.path}/t8/texture.png`),
      files.get("product/8/texture.png"),
    );
    assert.deepEqual(
      await Deno.readFile(`${root.path}/by-url.png`),
      files.get("product/12/texture.png"),
    );
    assert.deepEqual(
      await Deno.readFile(`${root.path}/by-id.png`),
      files.get("product/6/texture.png"),
    );
    assert.deepEqual(
      await Deno.readFile(`${root.path}/dir/product/9/texture.png`),
      files.get("product/9/texture.png"),
    );
    const refused = byDest.get(`${outside.path}/nope.png`)!;
    assert.equal(refused.state, "failed");
    assert.match(refused.note ?? "", /OutsideRoots|not inside the restore roots/);
    await assert.rejects(Deno.stat(`${outside.path}/nope.png`), Deno.errors.NotFound);

    // A notice delivered twice changes nothing.
    const again = glacier.notifications().at(-1)!;
    publishToQueue(queue, TOPIC, again.message);
    await until(
      "the duplicate notice to be handled",
      () => sqs.messages("restores").length === 0,
      listener.log,
    );

    const { code, log } = await listener.stop();
    listener = null;
    assert.equal(code, 0, log);
    assert.match(log, /dropped, malformed/);
    assert.match(log, /dropped, unknown: job forged-job was not started by coldpack/);
    assert.match(log, /dropped, unknown: from topic .*someone-else/);
    assert.match(log, /ignored: .*test event/i);
    assert.match(log, /7 restore\(s\) done, 1 failed/);
    assert.equal(glacier.faultsLeft(), 0, "both truncated downloads were served");
  } finally {
    if (listener !== null) await listener.kill();
    await glacier.close();
    await sqs.close();
    await mogile.close();
    await state.cleanup();
    await root.cleanup();
    await outside.cleanup();
  }
});

Deno.test("listener + SQS: S3 ObjectRestore:Completed events bring files to S3 and a local root; SIGKILL mid-way loses and doubles nothing", async () => {
  const clock = new ManualClock(Date.now());
  const s3 = await S3ArchiveDouble.start({ clock });
  const sqs = await SqsDouble.start({ queues: ["s3-restores"], credentials: s3.credentials });
  const src = await tempDir();
  const state = await tempDir();
  const root = await tempDir();
  const queue = sqs.queue("s3-restores");
  const env = { ...s3.env(), AWS_ENDPOINT_URL_SQS: sqs.endpoint };
  const common = [
    "--store",
    "s3://archives/cold?storage-class=GLACIER",
    "--source",
    src.path,
    "--state-dir",
    state.path,
  ];
  let listener: Listener | null = null;
  try {
    await s3.createBucket("archives");
    await s3.createBucket("restores");
    s3.notifyRestores("archives", queue);
    const files = new Map<string, Uint8Array>();
    for (let i = 0; i < 40; i++) {
      const key = `u/${i % 4}/file ${i}.bin`;
      files.set(key, bytesOf(300 + i, 1_500 + i * 2_500));
      await put(src.path, key, files.get(key)!);
    }
    const backup = await runCmd("backup", [...common, "--once", "--target-size", "64KiB"], { env });
    assert.equal(backup.code, 0, backup.stderr);
    for (const k of files.keys()) await Deno.remove(`${src.path}/${k}`);

    // Ten to S3 (one object each, below a prefix), thirty to a local root.
    const lines = [...files.keys()].map((k, i) =>
      `"${k}" ${i < 10 ? "s3://restores/back/" : `${root.path}/`}`
    );
    const request = await runCmd("restore", ["--batch", "-", ...common], {
      env,
      stdin: lines.join("\n"),
    });
    assert.equal(request.code, 0, request.stderr);
    const args = [...common, "--queue", queue.url, "--roots", root.path, "--poll", "1h"];
    listener = startListener(args, env);
    clock.advance(6 * HOUR); // every restore of the archives is done: S3 sends the events
    // Killed as soon as it has written some: nothing half-written, nothing lost.
    await until(
      "a first restore",
      () => /restore \d+ done/.test(listener!.log()),
      listener.log,
    );
    await listener.kill();
    listener = startListener(args, env);
    await until(
      "every restore to finish",
      async () => allFinished(await restoresIn(`${state.path}/catalog.db`), files.size),
      listener.log,
    );
    const rows = await restoresIn(`${state.path}/catalog.db`);
    assert.deepEqual(rows.filter((r) => r.state !== "done"), []);
    let i = 0;
    for (const [k, bytes] of files) {
      if (i++ < 10) {
        const o = s3.objects("restores").find((x) => x.key === `back/${k}`);
        assert.ok(o, `s3://restores/back/${k} was written`);
        assert.equal(o.size, bytes.length);
      } else {
        assert.deepEqual(await Deno.readFile(`${root.path}/${k}`), bytes);
      }
    }
    assert.equal(s3.objects("restores").length, 10);
    // No temp file left behind by the killed run.
    const left: string[] = [];
    for await (const e of Deno.readDir(root.path)) if (e.name !== "u") left.push(e.name);
    assert.deepEqual(left, []);
    const { code, log } = await listener.stop();
    listener = null;
    assert.equal(code, 0, log);
    assert.match(log, /ignored: .*test event/i);
  } finally {
    if (listener !== null) await listener.kill();
    await s3.close();
    await sqs.close();
    await src.cleanup();
    await state.cleanup();
    await root.cleanup();
  }
});

Deno.test("listener without a queue: polling finds retrievals ready; one that expired unused is started again", async () => {
  const clock = new ManualClock(Date.now());
  const s3 = await S3ArchiveDouble.start({ clock });
  const src = await tempDir();
  const state = await tempDir();
  const root = await tempDir();
  const env = s3.env();
  const common = [
    "--store",
    "s3://archives/cold?storage-class=GLACIER&restore-days=1",
    "--source",
    src.path,
    "--state-dir",
    state.path,
  ];
  let listener: Listener | null = null;
  try {
    await s3.createBucket("archives");
    const bytes = bytesOf(7, 33_333);
    await put(src.path, "a/b.bin", bytes);
    const backup = await runCmd("backup", [...common, "--once"], { env });
    assert.equal(backup.code, 0, backup.stderr);
    await Deno.remove(`${src.path}/a/b.bin`);
    const request = await runCmd("restore", ["a/b.bin", `${root.path}/b.bin`, ...common], { env });
    assert.equal(request.code, 0, request.stderr);
    // Ready after 5 h; a restored copy kept 1 day lives until the midnight
    // (UTC) after that day: gone by 5 h + 50 h, and nobody wrote it in time.
    clock.advance(5 * HOUR + 50 * HOUR);
    const first = (await restoresIn(`${state.path}/catalog.db`))[0]!.retrievalId;
    assert.ok(first !== null);
    listener = startListener([...common, "--roots", root.path, "--poll", "500ms"], env);
    await until("the expired retrieval to be started again", async () => {
      const r = (await restoresIn(`${state.path}/catalog.db`))[0]!;
      return r.retrievalId !== first;
    }, listener.log);
    assert.equal((await restoresIn(`${state.path}/catalog.db`))[0]!.state, "pending");
    clock.advance(6 * HOUR);
    await until(
      "the restore to finish",
      async () => allFinished(await restoresIn(`${state.path}/catalog.db`), 1),
      listener.log,
    );
    assert.deepEqual(await Deno.readFile(`${root.path}/b.bin`), bytes);
    const { code, log } = await listener.stop();
    listener = null;
    assert.equal(code, 0, log);
    assert.match(log, /no queue: asking the store every 0.5 s/);
    assert.match(log, /1 restore\(s\) done, 0 failed, 1 retrieval\(s\) restarted/);
  } finally {
    if (listener !== null) await listener.kill();
    await s3.close();
    await src.cleanup();
    await state.cleanup();
    await root.cleanup();
  }
});
