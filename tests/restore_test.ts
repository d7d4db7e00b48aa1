/**
 * The restore path (core/restore.ts) on real adapters: a SQLite catalog, a
 * local vault with retrieval delays and expiry on a clock the test moves,
 * local destinations. Faults are injected by wrapping the store: bytes
 * corrupted or cut short on the way back, a retrieval that fails.
 */

import assert from "node:assert/strict";
import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
import { randomBytes, systemClock } from "../adapters/clock.ts";
import { LocalDestination } from "../adapters/destination/local.ts";
import { DirectorySource } from "../adapters/source/directory.ts";
import { SpoolFetcher } from "../adapters/fetch/spool_fetcher.ts";
import { LocalVault } from "../adapters/store/local_vault.ts";
import { runBackup } from "../core/backup.ts";
import { InlinePacker } from "../core/pack.ts";
import { type JobId, sourceId } from "../core/ids.ts";
import type { ColdStore, FileRow, RestoreRow } from "../core/ports.ts";
import {
  completeRestores,
  type FinishedOutcome,
  requestRestores,
  type RestoreDeps,
} from "../core/restore.ts";
import { runListener } from "../core/restore_listener.ts";
import { ManualClock } from "./doubles/s3_archive.ts";
import { bytesOf, put, tempDir } from "./_helpers.ts";

const HOUR = 3_600_000;

interface Rig {
  readonly deps: RestoreDeps;
  readonly clock: ManualClock;
  readonly files: Map<string, Uint8Array>;
  readonly rows: Map<string, FileRow>;
  readonly out: string;
  readonly vault: LocalVault;
  readonly catalog: SqliteCatalog;
  cleanup(): Promise<void>;
}

/** Backs up a small corpus into a vault whose retrievals take an hour and live a day. */
async function rig(): Promise<Rig> {
  const src = await tempDir();
  const state = await tempDir();
  const out = await tempDir();
  const clock = new ManualClock(Date.UTC(2026, 10, 22));
  const files = new Map<string, Uint8Array>();
  for (let i = 0; i < 12; i++) files.set(`f${i}.bin`, bytesOf(i + 1, 20_000 + i * 5_000));
  for (const [k, v] of files) await put(src.path, k, v);
  const source = await DirectorySource.open(src.path);
  const catalog = await SqliteCatalog.open(`${state.path}/catalog.db`);
  const vault = await LocalVault.open(`${state.path}/vault`, {
    retrievalDelayMs: HOUR,
    retrievalTtlMs: 24 * HOUR,
    now: () => clock.now(),
  });
  const packer = new InlinePacker(await SpoolFetcher.open(source, `${state.path}/spool`));
  const s = await runBackup({
    source,
    packer,
    store: vault,
    catalog,
    // The backup runs on real time (its timers must fire); retrievals on the test's clock.
    clock: systemClock,
    random: randomBytes,
  }, { once: true, targetSize: 64 * 1024 });
  assert.equal(s.archivedFiles, files.size);
  await packer.close();
  const rows = new Map<string, FileRow>();
  for (const key of files.keys()) {
    rows.set(key, (await catalog.fileVersions(sourceId(source.id), key))[0]!);
  }
  await source.close();
  const destination = await LocalDestination.open(out.path);
  return {
    deps: { catalog, store: vault, clock, random: randomBytes },
    clock,
    files,
    rows,
    out: out.path,
    vault,
    catalog,
    cleanup: async () => {
      await destination.close();
      await vault.close();
      await catalog.close();
      await src.cleanup();
      await state.cleanup();
      await out.cleanup();
    },
  };
}

/** The store with some methods replaced (a fault injected). */
function wrap(store: ColdStore, over: Partial<ColdStore>): ColdStore {
  return {
    location: store.location,
    capabilities: store.capabilities,
    put: (a, o) => store.put(a, o),
    startRetrieval: (id, o) => store.startRetrieval(id, o),
    retrieval: (id, o) => store.retrieval(id, o),
    readRetrieval: (id, o) => store.readRetrieval(id, o),
    list: (o) => store.list(o),
    delete: (id, o) => store.delete(id, o),
    close: () => store.close(),
    ...over,
  };
}

function toOut(out: string) {
  return async (r: RestoreRow) => ({
    destination: await LocalDestination.open(out),
    write: { key: r.dest },
  });
}

Deno.test("restores wait for their retrieval, then write exactly the file; a second request reuses it", async () => {
  const r = await rig();
  try {
    // Two files of one archive.
    const rows = [...r.rows.values()];
    const a = rows.find((x) => rows.some((y) => y !== x && y.archiveId === x.archiveId))!;
    const b = rows.find((y) => y !== a && y.archiveId === a.archiveId)!;
    const first = await requestRestores(r.deps, [{ key: "t1:1", fileId: a.id, dest: "a.bin" }], {
      requestedBy: "test",
    });
    assert.equal(first.started.length, 1);
    const range = first.started[0]!.range;
    assert.ok(range !== null && range.end - range.start + 1 <= 1024 * 1024 + a.length);
    // The same request again (a retried call) adds nothing.
    const repeat = await requestRestores(r.deps, [{ key: "t1:1", fileId: a.id, dest: "a.bin" }], {
      requestedBy: "test",
    });
    assert.equal(repeat.started.length, 0);
    assert.deepEqual(repeat.restores.map((x) => x.id), first.restores.map((x) => x.id));
    // A neighbour in the same MiB is served by the live retrieval.
    const second = await requestRestores(r.deps, [{ key: "t2:1", fileId: b.id, dest: "b.bin" }], {
      requestedBy: "test",
    });
    assert.equal(second.started.length, 0);
    assert.equal(second.plan.totals.retrievalsReused, 1);

    const finished: FinishedOutcome[] = [];
    const opts = {
      resolve: toOut(r.out),
      onFinished: (_: RestoreRow, o: FinishedOutcome) => finished.push(o),
    };
    assert.deepEqual(await completeRestores(r.deps, opts), {
      done: 0,
      failed: 0,
      waiting: 2,
      deferred: 0,
      restarted: 0,
    });
    r.clock.advance(HOUR);
    assert.deepEqual(await completeRestores(r.deps, opts), {
      done: 2,
      failed: 0,
      waiting: 0,
      deferred: 0,
      restarted: 0,
    });
    assert.deepEqual(await Deno.readFile(`${r.out}/a.bin`), r.files.get(a.key));
    assert.deepEqual(await Deno.readFile(`${r.out}/b.bin`), r.files.get(b.key));
    assert.equal(finished.length, 2);
    // Nothing is written twice.
    assert.deepEqual(await completeRestores(r.deps, opts), {
      done: 0,
      failed: 0,
      waiting: 0,
      deferred: 0,
      restarted: 0,
    });
  } finally {
    await r.cleanup();
  }
});

Deno.test("a retrieval that expired before it was used is started again", async () => {
  const r = await rig();
  try {
    const a = r.rows.get("f7.bin")!;
    const req = await requestRestores(r.deps, [{ key: "t:1", fileId: a.id, dest: "a.bin" }], {
      requestedBy: "test",
    });
    const firstJob = req.started[0]!.jobId;
    r.clock.advance(30 * HOUR); // ready after 1 h, gone 24 h later
    const pass = await completeRestores(r.deps, { resolve: toOut(r.out) });
    assert.deepEqual(pass, { done: 0, failed: 0, waiting: 1, deferred: 0, restarted: 1 });
    assert.equal((await r.catalog.retrievalByJob(r.vault.location, firstJob))?.state, "expired");
    r.clock.advance(HOUR);
    assert.equal((await completeRestores(r.deps, { resolve: toOut(r.out) })).done, 1);
    assert.deepEqual(await Deno.readFile(`${r.out}/a.bin`), r.files.get("f7.bin"));
  } finally {
    await r.cleanup();
  }
});

Deno.test("corrupted or truncated bytes are read again, never written; a retrieval that fails fails its restores", async () => {
  const r = await rig();
  try {
    let corrupt = 0;
    const store = wrap(r.vault, {
      readRetrieval: async (jobId: JobId, options?: Parameters<ColdStore["readRetrieval"]>[1]) => {
        const stream = await r.vault.readRetrieval(jobId, options);
        if (corrupt <= 0) return stream;
        corrupt--;
        const bytes = new Uint8Array(await new Response(stream).arrayBuffer());
        // Alternate: a flipped byte, then a body cut short.
        const bad = corrupt % 2 === 0 ? bytes.slice() : bytes.slice(0, bytes.length - 7);
        if (corrupt % 2 === 0) bad[10] = bad[10]! ^ 0xff;
        return new Response(bad).body!;
      },
    });
    const deps = { ...r.deps, store };
    const a = r.rows.get("f1.bin")!;
    await requestRestores(deps, [{ key: "t:1", fileId: a.id, dest: "a.bin" }], {
      requestedBy: "test",
    });
    r.clock.advance(HOUR);
    corrupt = 2; // two bad reads, then a good one
    assert.equal((await completeRestores(deps, { resolve: toOut(r.out) })).done, 1);
    assert.deepEqual(await Deno.readFile(`${r.out}/a.bin`), r.files.get("f1.bin"));

    const b = r.rows.get("f2.bin")!;
    await requestRestores(deps, [{ key: "t:2", fileId: b.id, dest: "b.bin" }], {
      requestedBy: "test",
    });
    r.clock.advance(HOUR);
    corrupt = 3; // every read of the 3 allowed is bad
    const reasons: string[] = [];
    const pass = await completeRestores(deps, {
      resolve: toOut(r.out),
      onFinished: (_, o) => o.state === "failed" && reasons.push(o.reason),
    });
    assert.equal(pass.failed, 1);
    assert.match(reasons[0] ?? "", /(ChecksumMismatch|LengthMismatch).*after 3 reads/);
    await assert.rejects(Deno.stat(`${r.out}/b.bin`), Deno.errors.NotFound);

    // The store says a retrieval failed: its restores fail with the store's reason.
    const failing = wrap(r.vault, {
      retrieval: async (jobId: JobId) => ({
        ...(await r.vault.retrieval(jobId)),
        state: "failed",
        failure: "InsufficientCapacityException: try a slower tier",
      }),
    });
    const c = r.rows.get("f11.bin")!;
    const deps2 = { ...r.deps, store: failing };
    await requestRestores(deps2, [{ key: "t:3", fileId: c.id, dest: "c.bin" }], {
      requestedBy: "test",
      tier: "Expedited",
    });
    const why: string[] = [];
    const failedPass = await completeRestores(deps2, {
      resolve: toOut(r.out),
      onFinished: (_, o) => o.state === "failed" && why.push(o.reason),
    });
    assert.equal(failedPass.failed, 1);
    assert.match(why[0] ?? "", /InsufficientCapacityException/);
  } finally {
    await r.cleanup();
  }
});

Deno.test("the listener loop without a queue: reports a stuck restore once, writes it when ready, stops on abort", async () => {
  const r = await rig();
  try {
    const file = [...r.rows.values()][0]!;
    await requestRestores(r.deps, [{ key: "l:1", fileId: file.id, dest: "stuck.bin" }], {
      requestedBy: "test",
    });
    const lines: string[] = [];
    const controller = new AbortController();
    const limit = r.clock.now() + 5 * HOUR;
    // The test's clock, stopping the loop once five hours have passed.
    const clock = {
      now: () => r.clock.now(),
      sleep: async (ms: number, signal?: AbortSignal) => {
        await r.clock.sleep(ms, signal);
        if (r.clock.now() >= limit) controller.abort();
      },
    };
    const stats = await runListener({ ...r.deps, clock, queue: null, log: (l) => lines.push(l) }, {
      resolve: toOut(r.out),
      topic: null,
      pollMs: 10 * 60_000,
      stuckAfterMs: 30 * 60_000,
      visibilityMs: 60_000,
      signal: controller.signal,
    });
    // Ready after an hour (the vault's delay): reported stuck at 30 min, once.
    const stuck = lines.filter((l) => /stuck/.test(l));
    assert.equal(stuck.length, 1, lines.join("\n"));
    assert.match(
      stuck[0]!,
      /restore \d+ \(fid:\d+ -> stuck\.bin\) is stuck: pending for 0\.5 h, retrieval \S+ .* is in-progress/,
    );
    assert.equal(stats.done, 1);
    assert.equal(stats.stuck, 1);
    assert.deepEqual(await Deno.readFile(`${r.out}/stuck.bin`), r.files.get(file.key));
  } finally {
    await r.cleanup();
  }
});
