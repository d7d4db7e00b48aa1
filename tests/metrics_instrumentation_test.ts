/**
 * What the daemons' cores count, read back from the Prometheus registry:
 * the backup pipeline's failures by stage and its oldest-pending gauge
 * (real SQLite catalog, local vault, directory source, faults injected by
 * wrapping the ports), and the restore listener's notice counters (an
 * in-memory queue standing in for SQS).
 */

import assert from "node:assert/strict";
import { randomBytes, systemClock } from "../adapters/clock.ts";
import { SpoolFetcher } from "../adapters/fetch/spool_fetcher.ts";
import { MetricsRegistry } from "../adapters/metrics/registry.ts";
import { runBackup } from "../core/backup.ts";
import { PortError } from "../core/errors.ts";
import { InlinePacker } from "../core/pack.ts";
import type { ColdStore, NotificationQueue, QueueMessage, Source } from "../core/ports.ts";
import { runListener } from "../core/restore_listener.ts";
import { bytesOf, localRig, put } from "./_helpers.ts";

/** The value of one sample line of Prometheus text, or `undefined`. */
function value(text: string, name: string): number | undefined {
  const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
  return m === null ? undefined : Number(m[1]);
}

const rig = localRig;

Deno.test("a file that cannot be read is counted as failed at fetch, for good when not retryable", async () => {
  const r = await rig();
  try {
    for (let i = 0; i < 5; i++) await put(r.src, `f${i}.bin`, bytesOf(i + 1, 2000));
    const source: Source = {
      id: r.source.id,
      list: (o) => r.source.list(o),
      open: (e, o) =>
        e.key === "f3.bin"
          ? Promise.reject(
            new PortError("f3.bin: permission denied", {
              code: "EACCES",
              retryable: false,
            }),
          )
          : r.source.open(e, o),
      close: () => Promise.resolve(),
    };
    const registry = new MetricsRegistry();
    const packer = new InlinePacker(await SpoolFetcher.open(source, `${r.state}/spool`));
    const summary = await runBackup({
      source,
      packer,
      store: r.store,
      catalog: r.catalog,
      clock: systemClock,
      random: randomBytes,
      metrics: registry,
    }, { once: true });
    assert.equal(summary.failedFiles, 1);
    const text = registry.render();
    assert.equal(value(text, "coldpack_backup_files_archived"), 4);
    assert.equal(value(text, "coldpack_backup_files_failed_fetch"), 1);
    assert.equal(value(text, "coldpack_backup_files_failed_for_good"), 1);
    assert.equal(value(text, "coldpack_backup_failures_fetch"), 1);
    // Failed for good is not pending: no backlog is left.
    assert.equal(value(text, "coldpack_backup_oldest_pending_seconds"), 0);
  } finally {
    await r.cleanup();
  }
});

Deno.test("while uploads fail, the daemon counts the files and the oldest pending file ages", async () => {
  const r = await rig();
  try {
    for (let i = 0; i < 3; i++) await put(r.src, `g${i}.bin`, bytesOf(i + 7, 1500));
    let puts = 0;
    const store: ColdStore = Object.assign(Object.create(r.store), {
      put: () => {
        puts++;
        return Promise.reject(
          new PortError("store down", { code: "ServiceUnavailable", retryable: true }),
        );
      },
    });
    const registry = new MetricsRegistry();
    const packer = new InlinePacker(await SpoolFetcher.open(r.source, `${r.state}/spool`));
    const stop = new AbortController();
    const running = runBackup({
      source: r.source,
      packer,
      store,
      catalog: r.catalog,
      clock: systemClock,
      random: randomBytes,
      metrics: registry,
    }, {
      maxAgeMs: 10,
      uploadAttempts: 2,
      retryBaseMs: 5,
      rescanMs: 60_000,
      gaugeIntervalMs: 10,
      signal: stop.signal,
    });
    let text = "";
    try {
      for (let i = 0; i < 300; i++) {
        text = registry.render();
        if (
          (value(text, "coldpack_backup_files_failed_upload") ?? 0) >= 3 &&
          (value(text, "coldpack_backup_oldest_pending_seconds") ?? 0) > 0
        ) break;
        await new Promise((res) => setTimeout(res, 20));
      }
    } finally {
      stop.abort();
    }
    const summary = await running;
    assert.equal(summary.fatal, null);
    assert.ok(puts >= 2, `${puts} puts`);
    assert.ok(value(text, "coldpack_backup_files_failed_upload")! >= 3, text);
    assert.ok(value(text, "coldpack_backup_oldest_pending_seconds")! > 0, text);
    assert.ok(value(text, "coldpack_backup_failures_upload")! >= 2, text);
    assert.equal(value(text, "coldpack_backup_files_archived"), undefined);
    assert.match(text, /# TYPE coldpack_backup_queue_upload_archives gauge\n/);
    assert.match(text, /# TYPE coldpack_backup_buffer_bytes gauge\n/);
  } finally {
    await r.cleanup();
  }
});

/** An in-memory notification queue: hands out its messages once, records deletes. */
class MemoryQueue implements NotificationQueue {
  readonly location = "memory://notices";
  readonly deleted: string[] = [];
  #messages: QueueMessage[];

  constructor(bodies: readonly string[]) {
    this.#messages = bodies.map((body, i) => ({
      id: `m${i}`,
      receipt: `r${i}`,
      body,
      receiveCount: 1,
    }));
  }

  receive(options: { signal?: AbortSignal }): Promise<QueueMessage[]> {
    const out = this.#messages.splice(0, 10);
    if (out.length > 0) return Promise.resolve(out);
    // Nothing more: wait like a long poll, until aborted.
    return new Promise((_, reject) => {
      const signal = options.signal!;
      if (signal.aborted) return reject(signal.reason);
      signal.addEventListener("abort", () => reject(signal.reason), { once: true });
    });
  }

  delete(message: QueueMessage): Promise<void> {
    this.deleted.push(message.id);
    return Promise.resolve();
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

Deno.test("the restore listener counts notices received, deleted, malformed, ignored, unknown", async () => {
  const r = await rig();
  try {
    const queue = new MemoryQueue([
      "not json",
      JSON.stringify({ Event: "s3:TestEvent", Service: "Amazon S3" }),
      JSON.stringify({
        JobId: "job-nobody-started",
        Action: "ArchiveRetrieval",
        StatusCode: "Succeeded",
        Completed: true,
        VaultARN: "arn:aws:glacier:us-east-1:123456789012:vaults/v",
      }),
    ]);
    const registry = new MetricsRegistry();
    const stop = new AbortController();
    const logs: string[] = [];
    const running = runListener({
      catalog: r.catalog,
      store: r.store,
      clock: systemClock,
      random: randomBytes,
      queue,
      log: (l) => logs.push(l),
      metrics: registry,
    }, {
      resolve: () => Promise.reject(new Error("no restore expected")),
      topic: null,
      pollMs: 3_600_000,
      stuckAfterMs: 3_600_000,
      visibilityMs: 60_000,
      signal: stop.signal,
    });
    for (let i = 0; i < 200 && queue.deleted.length < 3; i++) {
      await new Promise((res) => setTimeout(res, 10));
    }
    stop.abort();
    const stats = await running;
    const text = registry.render();
    assert.equal(stats.received, 3, logs.join("\n"));
    assert.equal(value(text, "coldpack_restore_listener_notices_received"), 3);
    assert.equal(value(text, "coldpack_restore_listener_notices_deleted"), 3);
    assert.equal(value(text, "coldpack_restore_listener_notices_malformed"), 1);
    assert.equal(value(text, "coldpack_restore_listener_notices_ignored"), 1);
    assert.equal(value(text, "coldpack_restore_listener_notices_unknown"), 1);
    assert.equal(value(text, "coldpack_restore_listener_restores_done"), undefined);
    assert.equal(value(text, "coldpack_restore_listener_sweep_seconds_count"), 1);
  } finally {
    await r.cleanup();
  }
});
