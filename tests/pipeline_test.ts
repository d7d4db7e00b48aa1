/**
 * The pipeline (core/backup.ts) against the real SQLite catalog, local vault
 * and directory source, with faults injected by wrapping the ports: files
 * deleted or changed between listing and fetch, store errors, a store that
 * answers with the wrong checksum, and a graceful stop of the daemon.
 */

import assert from "node:assert/strict";
import { randomBytes, systemClock } from "../adapters/clock.ts";
import { SpoolFetcher } from "../adapters/fetch/spool_fetcher.ts";
import { runBackup } from "../core/backup.ts";
import { InlinePacker } from "../core/pack.ts";
import { PortError } from "../core/errors.ts";
import type { ColdStore, Metrics, PutArchive, Source, SourceEntry } from "../core/ports.ts";
import { bytesOf, checkCatalogAgainstVault, type LocalRig, localRig, put } from "./_helpers.ts";

type Rig = LocalRig;

const rig = localRig;

async function backupOnce(
  r: Rig,
  over: { source?: Source; store?: ColdStore; metrics?: Metrics } = {},
  options: Parameters<typeof runBackup>[1] = {},
) {
  const source = over.source ?? r.source;
  const packer = new InlinePacker(await SpoolFetcher.open(source, `${r.state}/spool`));
  return await runBackup({
    source,
    packer,
    store: over.store ?? r.store,
    catalog: r.catalog,
    clock: systemClock,
    random: randomBytes,
    ...(over.metrics ? { metrics: over.metrics } : {}),
  }, { once: true, targetSize: 64 * 1024, retryBaseMs: 10, ...options });
}

/** A source that runs `beforeOpen` once per key before opening it. */
function interceptOpen(
  inner: Source,
  beforeOpen: (e: SourceEntry) => Promise<void>,
): Source {
  return {
    id: inner.id,
    list: (o) => inner.list(o),
    open: async (e, o) => {
      await beforeOpen(e);
      return await inner.open(e, o);
    },
    close: () => inner.close(),
  };
}

Deno.test("a file deleted between listing and fetch is vanished, not failed", async () => {
  const r = await rig();
  try {
    await put(r.src, "stays.txt", "stays");
    await put(r.src, "goes.txt", "goes");
    const source = interceptOpen(r.source, async (e) => {
      if (e.key === "goes.txt") await Deno.remove(`${r.src}/goes.txt`).catch(() => {});
    });
    const s = await backupOnce(r, { source });
    assert.equal(s.archivedFiles, 1);
    assert.equal(s.vanished, 1);
    assert.equal(s.failures, 0);
    const st = await r.catalog.status();
    assert.equal(st.files.vanished, 1);
    assert.equal(st.files.archived, 1);
    const [gone] = await r.catalog.fileVersions(r.source.id, "goes.txt");
    assert.equal(gone?.state, "vanished");
    assert.match(gone?.note ?? "", /deleted at the source/);
  } finally {
    await r.cleanup();
  }
});

Deno.test("a file changed between listing and fetch is backed up in its new version", async () => {
  const r = await rig();
  try {
    await put(r.src, "edited.txt", "first");
    let edited = false;
    const source = interceptOpen(r.source, async (e) => {
      if (e.key === "edited.txt" && !edited) {
        edited = true;
        await put(r.src, "edited.txt", "second, longer version");
      }
    });
    const s = await backupOnce(r, { source });
    assert.equal(s.archivedFiles, 1);
    const versions = await r.catalog.fileVersions(r.source.id, "edited.txt");
    assert.deepEqual(versions.map((v) => v.state), ["archived", "vanished"]);
    assert.equal(versions[0]?.length, "second, longer version".length);
    await checkCatalogAgainstVault(`${r.state}/catalog.db`, `${r.state}/vault`, r.src);
  } finally {
    await r.cleanup();
  }
});

/** A store that delegates every call to `inner`, except those in `over`. */
function wrapStore(inner: ColdStore, over: Partial<ColdStore>): ColdStore {
  return {
    location: inner.location,
    capabilities: inner.capabilities,
    put: (a, o) => inner.put(a, o),
    startRetrieval: (id, o) => inner.startRetrieval(id, o),
    retrieval: (id, o) => inner.retrieval(id, o),
    readRetrieval: (id, o) => inner.readRetrieval(id, o),
    list: (o) => inner.list(o),
    delete: (id, o) => inner.delete(id, o),
    close: () => inner.close(),
    ...over,
  };
}

/** A store whose first `failures` puts fail with `error`. */
function flakyStore(inner: ColdStore, failures: number, error: () => Error): ColdStore & {
  puts: number;
} {
  const s = wrapStore(inner, {}) as ColdStore & { puts: number };
  s.puts = 0;
  s.put = async (a: PutArchive, o) => {
    s.puts++;
    if (s.puts <= failures) {
      // Nothing read the body: no stream was made.
      throw error();
    }
    return await inner.put(a, o);
  };
  return s;
}

Deno.test("a throttled store is retried and the archive committed once", async () => {
  const r = await rig();
  try {
    for (let i = 0; i < 5; i++) await put(r.src, `f${i}`, bytesOf(i, 1000));
    const store = flakyStore(
      r.store,
      2,
      () => new PortError("Rate exceeded", { code: "ThrottlingException", retryable: true }),
    );
    const s = await backupOnce(r, { store });
    assert.equal(s.archivedFiles, 5);
    assert.equal(s.archives, 1);
    assert.equal(store.puts, 3);
    assert.equal(s.failures, 2, "each failed attempt is counted");
    assert.equal(s.failedFiles, 0, "but no file failed");
    assert.equal(s.retryLater, 0);
  } finally {
    await r.cleanup();
  }
});

Deno.test("a store that keeps failing leaves files pending and the run fatal", async () => {
  const r = await rig();
  try {
    for (let i = 0; i < 3; i++) await put(r.src, `f${i}`, bytesOf(i, 100));
    const store = flakyStore(
      r.store,
      1000,
      () => new PortError("vault is read-only", { code: "EROFS", retryable: false }),
    );
    const s = await backupOnce(r, { store });
    assert.equal(s.archivedFiles, 0);
    assert.match(s.fatal ?? "", /vault is read-only/);
    const st = await r.catalog.status();
    assert.equal(st.files.pending, 3, "nothing lost, nothing marked archived");
    assert.equal(st.archives, 0);
    const failures = await r.catalog.recentFailures(10);
    assert.ok(failures.some((f) => f.stage === "upload" && f.code === "EROFS"));
    // The next run with a healthy store, once the retry is due, finishes the job.
    await new Promise((res) => setTimeout(res, 50));
    const s2 = await backupOnce(r, {}, { retryBaseMs: 0 });
    assert.equal(s2.fatal, null);
    assert.equal((await r.catalog.status()).files.archived, 3);
  } finally {
    await r.cleanup();
  }
});

Deno.test("a store answering with another checksum never gets files pointed at it", async () => {
  const r = await rig();
  try {
    await put(r.src, "a", "aaa");
    let lies = 1;
    const store = wrapStore(r.store, {
      put: async (a, o) => {
        const res = await r.store.put(a, o);
        if (lies-- > 0) return { ...res, treeHash: "0".repeat(64) };
        return res;
      },
    });
    const s = await backupOnce(r, { store });
    assert.equal(s.archivedFiles, 1);
    assert.equal(s.archives, 1);
    const listed = [];
    for await (const a of r.store.list()) listed.push(a);
    assert.equal(listed.length, 1, "the mismatched archive was deleted from the store");
    await checkCatalogAgainstVault(`${r.state}/catalog.db`, `${r.state}/vault`, r.src);
  } finally {
    await r.cleanup();
  }
});

Deno.test("metrics count what an operator asks about", async () => {
  const r = await rig();
  try {
    for (let i = 0; i < 4; i++) await put(r.src, `f${i}`, bytesOf(i, 2000));
    const seen = new Map<string, number>();
    const metrics: Metrics = {
      count: (n, v = 1) => void seen.set(n, (seen.get(n) ?? 0) + v),
      gauge: () => {},
      timing: (n) => void seen.set(n, (seen.get(n) ?? 0) + 1),
    };
    await backupOnce(r, { metrics });
    assert.equal(seen.get("coldpack.backup.files_discovered"), 4);
    assert.equal(seen.get("coldpack.backup.files_fetched"), 4);
    assert.equal(seen.get("coldpack.backup.files_archived"), 4);
    assert.equal(seen.get("coldpack.backup.bytes_archived"), 8000);
    assert.equal(seen.get("coldpack.backup.archives_uploaded"), 1);
    assert.equal(seen.get("coldpack.backup.file_to_commit_seconds"), 4);
  } finally {
    await r.cleanup();
  }
});

Deno.test("the daemon closes a bundle by max age and stops gracefully on abort, leaving no timer", async () => {
  const r = await rig();
  try {
    await put(r.src, "one.txt", "one");
    // The system clock, with every sleep that has not ended yet recorded.
    const pending = new Map<number, number>();
    let n = 0;
    const clock = {
      now: () => Date.now(),
      sleep(ms: number, signal?: AbortSignal) {
        const id = ++n;
        pending.set(id, ms);
        return systemClock.sleep(ms, signal).finally(() => pending.delete(id));
      },
    };
    const stop = new AbortController();
    const packer = new InlinePacker(await SpoolFetcher.open(r.source, `${r.state}/spool`));
    const running = runBackup({
      source: r.source,
      packer,
      store: r.store,
      catalog: r.catalog,
      clock,
      random: randomBytes,
    }, { maxAgeMs: 100, rescanMs: 50, shutdownTimeoutMs: 60_000, signal: stop.signal });
    for (let i = 0; i < 100 && (await r.catalog.status()).files.archived < 1; i++) {
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.equal((await r.catalog.status()).files.archived, 1, "archived by age, not size");
    await put(r.src, "two.txt", "two");
    for (let i = 0; i < 100 && (await r.catalog.status()).files.archived < 2; i++) {
      await new Promise((res) => setTimeout(res, 50));
    }
    stop.abort();
    const s = await running;
    assert.equal(s.fatal, null);
    assert.equal((await r.catalog.status()).files.archived, 2);
    // The shutdown timeout ends with the run: a stopped daemon must not linger.
    await new Promise((res) => setTimeout(res, 0));
    assert.deepEqual([...pending.values()], [], "sleeps still pending after the run, in ms");
  } finally {
    await r.cleanup();
  }
});

Deno.test("a daemon stops on a store error that will not go away, naming it", async () => {
  const r = await rig();
  try {
    for (let i = 0; i < 3; i++) await put(r.src, `f${i}`, bytesOf(i, 1000));
    const store = flakyStore(
      r.store,
      100,
      () =>
        new PortError(
          "glacier://us-east-1/gone: UploadArchive: ResourceNotFoundException: no vault",
          {
            code: "ResourceNotFoundException",
            retryable: false,
          },
        ),
    );
    const s = await backupOnce(r, { store }, { once: false, maxAgeMs: 50 });
    assert.equal(store.puts, 1, "a non-retryable error is not tried again");
    assert.match(s.fatal ?? "", /glacier:\/\/us-east-1\/gone: .*ResourceNotFoundException/);
    assert.equal(s.archivedFiles, 0);
    assert.equal((await r.catalog.status()).files.pending, 3, "the files stay pending");
  } finally {
    await r.cleanup();
  }
});

Deno.test("two runs sharing one catalog: one discovers, both archive, no file twice", async () => {
  const r = await rig();
  try {
    for (let i = 0; i < 40; i++) {
      await put(r.src, `f${String(i).padStart(2, "0")}`, bytesOf(i, 20_000));
    }
    // Run b holds the discovery lease, as a daemon on another host would.
    assert.ok(await r.catalog.acquireLease(`discover:${r.source.id}`, "b", 60_000, Date.now()));
    const notes: string[] = [];
    const a = await runBackup({
      source: r.source,
      packer: new InlinePacker(await SpoolFetcher.open(r.source, `${r.state}/spool-a`)),
      store: r.store,
      catalog: r.catalog,
      clock: systemClock,
      random: randomBytes,
      progress: { update() {}, note: (m) => notes.push(m) },
    }, { once: true, owner: "a", targetSize: 64 * 1024 });
    assert.equal(a.discovered, 0, "a does not discover while b holds the lease");
    assert.ok(notes.some((n) => n.includes("Another daemon is discovering")), notes.join("\n"));
    assert.equal(a.archivedFiles, 0);
    // b discovers and claims half the files, then "dies" holding them.
    await r.catalog.releaseLease(`discover:${r.source.id}`, "b");
    for await (const page of r.source.list()) {
      await r.catalog.addDiscovered(r.source.id, page.entries, Date.now());
    }
    assert.ok(await r.catalog.acquireLease("worker:b", "b", 60_000, Date.now()));
    const held = await r.catalog.claimFiles(r.source.id, {
      owner: "b",
      limit: 20,
      nowMs: Date.now(),
    });
    assert.equal(held.length, 20);
    const a2 = await backupOnce(r, {}, { owner: "a" });
    assert.equal(a2.archivedFiles, 20, "a archives only the files b does not hold");
    const heldIds = new Set(held.map((f) => f.id));
    for (const f of held) assert.equal((await r.catalog.file(f.id))?.state, "pending");
    // b's lease ends (released here; expiry does the same): a takes the rest.
    await r.catalog.releaseLease("worker:b", "b");
    const a3 = await backupOnce(r, {}, { owner: "a" });
    assert.equal(a3.archivedFiles, 20);
    const status = await r.catalog.status();
    assert.equal(status.files.archived, 40);
    assert.equal(status.files.pending, 0);
    for (const id of heldIds) assert.equal((await r.catalog.file(id))?.state, "archived");
  } finally {
    await r.cleanup();
  }
});
