/**
 * The Catalog conformance suite: every catalog implementation (SQLite, MySQL)
 * must pass it. It uses the {@linkcode Catalog} interface only.
 *
 * Behaviour it pins down beyond the interface's doc comments, which every
 * implementation must share:
 * - `addDiscovered` returns the inserted rows in input order with their final
 *   state (a version followed in the same batch by a newer one is `superseded`).
 * - `commitArchive` of an archive already committed with the same remote id
 *   and tree hash is a no-op; with another one it rejects with a `PortError`
 *   coded `ARCHIVE_EXISTS`; it rejects an invalid member md5 with a `RangeError` naming the
 *   md5, changing nothing; unknown member ids come back in `skipped`.
 * - `recordFailure` rejects an unknown file id with a `RangeError`; failures
 *   that concern no file merge when source, stage, code, key and archive match.
 * - `archives()` pages in byte-wise id order.
 * - Retrievals: `addRetrieval` rejects an unknown archive with a `RangeError`
 *   naming it, and a store job already recorded under another retrieval id
 *   with a `PortError` coded `RETRIEVAL_EXISTS`; `updateRetrieval` writes the
 *   state and each optional field that is present (`null` clears it, an
 *   absent one is kept); `liveRetrievals` counts `expiresAt <= nowMs` as
 *   expired.
 * - Restores: keys are 1 to 255 characters; `overwrite` is false unless a
 *   request sets it (a non-boolean is a `TypeError`); `addRestores` returns the row
 *   already recorded for a repeated key (also within one call) and rejects an
 *   unknown file id with a `RangeError` naming it, recording nothing;
 *   `assignRestores` and `finishRestore` reject unknown ids with a
 *   `RangeError`; `restores()` applies `states` and `retrievalId` together
 *   (an empty `states` matches nothing). Arguments are checked before the
 *   database is touched: `TypeError` for a malformed id or text, `RangeError`
 *   for a value out of range, each naming the value.
 * - Sampling: `archiveSeqRange` counts every committed archive once (a
 *   repeated commit adds nothing) and agrees with `status()`; the seqs of
 *   archives committed one after another grow; `archivesBySeq` answers by
 *   seq, leaves out seqs with no archive and refuses a seq that is not a
 *   whole number (`RangeError`) or more than 1,000 seqs.
 * - Audits and drills: a second `addAudit`/`addDrill` with the same id
 *   keeps the first row; unknown archives, retrievals, restores and ids are
 *   `RangeError`s naming them; a drill's restore must be of the drill's
 *   file; `audits()`/`drills()` page by id both ways and filter by states.
 *
 * @example
 * ```ts
 * import { catalogConformance } from "./catalog_conformance.ts";
 * import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
 * catalogConformance("sqlite memory", async () => {
 *   const catalog = await SqliteCatalog.open(":memory:");
 *   return { catalog, cleanup: () => catalog.close() };
 * });
 * ```
 * @module
 */

import assert from "node:assert/strict";
import type {
  ArchiveMember,
  ArchiveRow,
  AuditRow,
  Catalog,
  CatalogStatus,
  DrillRow,
  FileRow,
  RestoreRow,
  RetrievalRow,
  SourceEntry,
} from "../core/ports.ts";
import {
  type ArchiveId,
  archiveId,
  type AuditId,
  auditId,
  type DrillId,
  drillId,
  type FileId,
  fileId,
  jobId,
  remoteArchiveId,
  type RetrievalId,
  retrievalId,
  sourceId,
} from "../core/ids.ts";
import { PortError } from "../core/errors.ts";
import { fixtureTests } from "./_helpers.ts";

/** What the suite's factory returns: an empty, migrated catalog and how to dispose of it. */
export interface CatalogFixture {
  readonly catalog: Catalog;
  /** Closes the catalog and removes whatever the factory created. */
  readonly cleanup: () => Promise<void>;
}

const T0 = 1_760_000_000_000;
const SRC = sourceId("dir:/srv/uploads");
const OTHER = sourceId("mogilefs://tracker:7001/ugc");

function entry(key: string, version = "v1", extra: Partial<SourceEntry> = {}): SourceEntry {
  return { key, version, length: 100, mtimeMs: T0 - 60_000, ...extra };
}

function md5Of(n: number): string {
  return n.toString(16).padStart(32, "0");
}

function archiveRow(id: string, extra: Partial<ArchiveRow> = {}): ArchiveRow {
  return {
    id: archiveId(id),
    store: "file:///srv/vault",
    remoteId: remoteArchiveId(`${id}.tar`),
    size: 10_240,
    treeHash: "ab".repeat(32),
    fileCount: 1,
    dataBytes: 100,
    description: `coldpack v1 ${id}`,
    createdAt: T0 + 50,
    committedAt: T0 + 100,
    ...extra,
  };
}

/** Members laid out one after another, 512-byte header then data rounded to 512. */
function membersOf(rows: readonly FileRow[]): ArchiveMember[] {
  let offset = 0;
  return rows.map((r, i) => {
    const m = {
      fileId: r.id,
      md5: md5Of(r.id * 1000 + i),
      length: r.length,
      headerOffset: offset,
      dataOffset: offset + 512,
    };
    offset += 512 + Math.ceil(r.length / 512) * 512;
    return m;
  });
}

async function mustFile(c: Catalog, id: FileId): Promise<FileRow> {
  const row = await c.file(id);
  assert.ok(row, `file fid:${id} should exist`);
  return row;
}

function one<T>(xs: readonly T[], i = 0): T {
  const x = xs[i];
  assert.ok(x !== undefined, `expected an element at index ${i} of ${xs.length}`);
  return x;
}

const VAULT = "file:///srv/vault";

function retrievalRow(
  id: string,
  archive: string,
  extra: Partial<RetrievalRow> = {},
): RetrievalRow {
  return {
    id: retrievalId(id),
    archiveId: archiveId(archive),
    store: VAULT,
    jobId: jobId(`job-${id}`),
    range: { start: 1_048_576, end: 3_145_727 },
    tier: "Bulk",
    purpose: "restore",
    state: "in-progress",
    startedAt: T0 + 1000,
    readyAt: null,
    expiresAt: null,
    failure: null,
    ...extra,
  };
}

/** Files committed in archive `arc`, one per key, for retrievals and restores to point at. */
async function archived(c: Catalog, arc: string, keys: readonly string[]): Promise<FileRow[]> {
  const rows = await c.addDiscovered(SRC, keys.map((k) => entry(`${arc}/${k}`)), T0);
  await c.commitArchive(archiveRow(arc, { fileCount: rows.length }), membersOf(rows));
  return rows;
}

/** One restore request for `file`. */
function request(key: string, file: FileRow, dest = `/tmp/restore/${key}`) {
  return { key, fileId: file.id, dest, requestedBy: "restore@host1" };
}

async function mustRetrieval(c: Catalog, id: string): Promise<RetrievalRow> {
  const row = await c.retrieval(retrievalId(id));
  assert.ok(row, `retrieval ${id} should exist`);
  return row;
}

/** The restore with `id`, read through `restores()`. */
async function mustRestore(c: Catalog, id: number): Promise<RestoreRow> {
  const [row] = await c.restores({ limit: 1, afterId: id - 1 });
  assert.ok(row && row.id === id, `restore ${id} should exist`);
  return row;
}

/** An audit row; `id` unchecked, so that a test can hand the catalog a malformed one. */
function auditRow(id: string, archive: string, extra: Partial<AuditRow> = {}): AuditRow {
  return {
    id: id as AuditId,
    archiveId: archiveId(archive),
    retrievalId: retrievalId("ra-1"),
    manifestDigest: "ab".repeat(32),
    state: "sent",
    findings: null,
    createdAt: T0 + 3000,
    updatedAt: null,
    note: null,
    ...extra,
  };
}

function drillRow(id: DrillId, restore: RestoreRow, extra: Partial<DrillRow> = {}): DrillRow {
  return {
    id,
    restoreId: restore.id,
    fileId: restore.fileId,
    dest: restore.dest,
    startedAt: T0,
    checkedAt: null,
    state: "pending",
    note: null,
    ...extra,
  };
}

function rejectsWith(
  kind: typeof RangeError | typeof TypeError,
  pattern: RegExp,
): (e: unknown) => boolean {
  return (e: unknown) => {
    assert.ok(e instanceof kind, `expected a ${kind.name}, got ${e}`);
    assert.match(e.message, pattern);
    return true;
  };
}

const EMPTY_STATUS: CatalogStatus = {
  files: { pending: 0, archived: 0, vanished: 0, failed: 0, superseded: 0 },
  archives: 0,
  storedBytes: 0,
  archivedBytes: 0,
  pendingBytes: 0,
  oldestPendingAt: null,
  openFailures: 0,
};

/**
 * Registers the conformance tests as `Deno.test` cases named `${name}: ...`.
 *
 * @param name prefix of every test name, e.g. `sqlite file`
 * @param open makes a fresh, empty, migrated catalog for one test
 */
export function catalogConformance(
  name: string,
  open: () => Promise<CatalogFixture>,
  options: { readonly ignore?: boolean } = {},
): void {
  const register = fixtureTests(name, open, {
    teardown: (fixture) => fixture.cleanup(),
    ignore: options.ignore ?? false,
  });
  const test = (title: string, fn: (c: Catalog) => Promise<void>) =>
    register(title, ({ catalog }) => fn(catalog));

  test("migrate is idempotent and returns the schema version", async (c) => {
    const v = await c.migrate();
    assert.ok(Number.isSafeInteger(v) && v >= 1, `version ${v} should be a positive integer`);
    const [row] = await c.addDiscovered(SRC, [entry("kept.txt")], T0);
    assert.equal(await c.migrate(), v);
    assert.equal(await c.migrate(), v);
    assert.ok(row);
    assert.deepEqual(await c.file(row.id), row);
  });

  test("addDiscovered records pending rows with every field", async (c) => {
    const rows = await c.addDiscovered(SRC, [
      entry("ugc/product/1/texture.png", "fid:123", {
        length: 1000,
        mtimeMs: T0 - 5000,
        domain: "ugc",
        storageClass: "thumb",
        sourceFid: 123,
      }),
      entry("plain.txt", "42:1759999999000", { length: 0 }),
    ], T0);
    assert.equal(rows.length, 2);
    const [a, b] = [one(rows, 0), one(rows, 1)];
    assert.ok(b.id > a.id, "ids grow in input order");
    assert.deepEqual(a, {
      id: a.id,
      source: SRC,
      key: "ugc/product/1/texture.png",
      version: "fid:123",
      domain: "ugc",
      storageClass: "thumb",
      sourceFid: 123,
      length: 1000,
      mtimeMs: T0 - 5000,
      discoveredAt: T0,
      state: "pending",
      md5: null,
      archiveId: null,
      headerOffset: null,
      dataOffset: null,
      archivedAt: null,
      attempts: 0,
      nextAttemptAt: null,
      note: null,
      goneAt: null,
    });
    assert.deepEqual(b, {
      ...a,
      id: b.id,
      key: "plain.txt",
      version: "42:1759999999000",
      domain: null,
      storageClass: null,
      sourceFid: null,
      length: 0,
      mtimeMs: T0 - 60_000,
    });
    assert.deepEqual(await c.file(a.id), a);
    assert.deepEqual(await c.file(b.id), b);
    assert.equal(await c.file(fileId(987_654_321)), null);
    assert.deepEqual(await c.addDiscovered(SRC, [], T0), []);
  });

  test("addDiscovered ignores versions already known", async (c) => {
    const first = await c.addDiscovered(SRC, [entry("a"), entry("b")], T0);
    assert.equal(first.length, 2);
    assert.deepEqual(await c.addDiscovered(SRC, [entry("a"), entry("b")], T0 + 1), []);
    const mixed = await c.addDiscovered(SRC, [entry("a"), entry("c"), entry("b")], T0 + 2);
    assert.deepEqual(mixed.map((r) => [r.key, r.discoveredAt]), [["c", T0 + 2]]);
    const twice = await c.addDiscovered(SRC, [entry("d"), entry("d")], T0 + 3);
    assert.equal(twice.length, 1);
    const elsewhere = await c.addDiscovered(OTHER, [entry("a")], T0 + 4);
    assert.equal(elsewhere.length, 1, "the same key and version at another source is new");
    // The first rows are untouched by the repeats.
    assert.deepEqual(await c.file(one(first).id), one(first));
    const pending = await c.pendingFiles(SRC, { limit: 100, nowMs: T0 + 10 });
    assert.deepEqual(pending.map((r) => r.key), ["a", "b", "c", "d"]);
    assert.deepEqual((await c.fileVersions(SRC, "a")).length, 1);
  });

  test("a new version supersedes older pending versions only", async (c) => {
    // pending -> superseded
    const [k1v1] = await c.addDiscovered(SRC, [entry("k1", "v1")], T0);
    const [k1v2] = await c.addDiscovered(SRC, [entry("k1", "v2")], T0 + 1);
    assert.ok(k1v1 && k1v2);
    assert.equal(k1v2.state, "pending");
    assert.equal((await mustFile(c, k1v1.id)).state, "superseded");
    // the old version listed again stays ignored, the new one stays pending
    assert.deepEqual(await c.addDiscovered(SRC, [entry("k1", "v1")], T0 + 2), []);
    assert.equal((await mustFile(c, k1v2.id)).state, "pending");
    assert.deepEqual(
      (await c.fileVersions(SRC, "k1")).map((r) => [r.version, r.state]),
      [["v2", "pending"], ["v1", "superseded"]],
    );

    // archived, failed and vanished versions are not superseded
    const [k2, k3, k4] = await c.addDiscovered(SRC, [entry("k2"), entry("k3"), entry("k4")], T0);
    assert.ok(k2 && k3 && k4);
    await c.commitArchive(archiveRow("arc-k2"), membersOf([k2]));
    await c.recordFailure({
      stage: "fetch",
      code: "EACCES",
      message: "permission denied",
      source: SRC,
      fileId: k3.id,
      nowMs: T0 + 3,
      retryAt: null,
    });
    await c.markVanished([k4.id], "gone", T0 + 3);
    const newer = await c.addDiscovered(SRC, [
      entry("k2", "v2"),
      entry("k3", "v2"),
      entry("k4", "v2"),
    ], T0 + 4);
    assert.deepEqual(newer.map((r) => r.state), ["pending", "pending", "pending"]);
    assert.equal((await mustFile(c, k2.id)).state, "archived");
    assert.equal((await mustFile(c, k3.id)).state, "failed");
    assert.equal((await mustFile(c, k4.id)).state, "vanished");

    // two versions in one batch: the earlier comes back superseded
    const batch = await c.addDiscovered(SRC, [entry("k5", "v1"), entry("k5", "v2")], T0 + 5);
    assert.deepEqual(batch.map((r) => [r.version, r.state]), [["v1", "superseded"], [
      "v2",
      "pending",
    ]]);
    assert.equal((await mustFile(c, one(batch).id)).state, "superseded");

    // a version at another source does not supersede
    await c.addDiscovered(OTHER, [entry("k1", "v9")], T0 + 6);
    assert.equal((await mustFile(c, k1v2.id)).state, "pending");
  });

  test("superseding resolves the failures of the superseded version", async (c) => {
    const [f] = await c.addDiscovered(SRC, [entry("retried.bin")], T0);
    assert.ok(f);
    await c.recordFailure({
      stage: "fetch",
      code: "ECONNRESET",
      message: "connection reset",
      source: SRC,
      fileId: f.id,
      key: f.key,
      nowMs: T0 + 1,
      retryAt: T0 + 60_000,
    });
    assert.equal((await c.status()).openFailures, 1);
    await c.addDiscovered(SRC, [entry("retried.bin", "v2")], T0 + 2);
    assert.equal((await mustFile(c, f.id)).state, "superseded");
    assert.deepEqual(await c.recentFailures(10), []);
    assert.equal((await c.status()).openFailures, 0);
  });

  test("latestVersions returns the newest known version of each key", async (c) => {
    // "b" before "a": newest means last discovered, not largest string
    await c.addDiscovered(SRC, [entry("x", "b"), entry("y", "only")], T0);
    await c.addDiscovered(SRC, [entry("x", "a")], T0 + 1);
    await c.addDiscovered(OTHER, [entry("z", "other")], T0 + 1);
    const found = await c.latestVersions(SRC, ["x", "y", "z", "unknown", "x"]);
    assert.deepEqual(
      [...found.entries()].sort(([p], [q]) => p < q ? -1 : 1),
      [["x", { version: "a", state: "pending" }], ["y", { version: "only", state: "pending" }]],
    );
    assert.equal((await c.latestVersions(SRC, [])).size, 0);

    const [y] = await c.fileVersions(SRC, "y");
    assert.ok(y);
    await c.commitArchive(archiveRow("arc-y"), membersOf([y]));
    assert.deepEqual(
      (await c.latestVersions(SRC, ["y"])).get("y"),
      { version: "only", state: "archived" },
    );

    // more keys than one query's IN list
    const keys = Array.from({ length: 1234 }, (_, i) => `many/${i}`);
    await c.addDiscovered(SRC, keys.map((k) => entry(k, `v-${k}`)), T0 + 2);
    const many = await c.latestVersions(SRC, [...keys, "many/missing"]);
    assert.equal(many.size, 1234);
    for (const k of keys) assert.deepEqual(many.get(k), { version: `v-${k}`, state: "pending" });
  });

  test("pendingFiles pages due pending files by id", async (c) => {
    const rows = await c.addDiscovered(
      SRC,
      ["p0", "p1", "p2", "p3", "p4", "p5", "p6"].map((k) => entry(k)),
      T0,
    );
    await c.addDiscovered(OTHER, [entry("other")], T0);
    const ids = rows.map((r) => r.id);
    const page1 = await c.pendingFiles(SRC, { limit: 3, nowMs: T0 });
    assert.deepEqual(page1, rows.slice(0, 3));
    const page2 = await c.pendingFiles(SRC, { limit: 3, afterId: one(ids, 2), nowMs: T0 });
    assert.deepEqual(page2.map((r) => r.id), ids.slice(3, 6));
    const page3 = await c.pendingFiles(SRC, { limit: 3, afterId: one(ids, 5), nowMs: T0 });
    assert.deepEqual(page3.map((r) => r.id), ids.slice(6));
    assert.deepEqual(await c.pendingFiles(SRC, { limit: 3, afterId: one(ids, 6), nowMs: T0 }), []);
    assert.deepEqual(await c.pendingFiles(SRC, { limit: 0, nowMs: T0 }), []);

    // only pending ones: archived, vanished, failed and superseded drop out
    await c.commitArchive(archiveRow("arc-p0"), membersOf([one(rows, 0)]));
    await c.markVanished([one(ids, 1)], "deleted", T0 + 1);
    await c.recordFailure({
      stage: "fetch",
      code: "EISDIR",
      message: "is a directory",
      source: SRC,
      fileId: one(ids, 2),
      nowMs: T0 + 1,
      retryAt: null,
    });
    await c.addDiscovered(SRC, [entry("p3", "v2")], T0 + 2);
    const left = await c.pendingFiles(SRC, { limit: 100, nowMs: T0 + 3 });
    assert.deepEqual(left.map((r) => r.key), ["p4", "p5", "p6", "p3"]);
    assert.deepEqual(
      (await c.pendingFiles(OTHER, { limit: 100, nowMs: T0 })).map((r) => r.key),
      ["other"],
    );
  });

  test("a scheduled retry is pending but not due until retryAt", async (c) => {
    const [f, g] = await c.addDiscovered(SRC, [entry("later.jpg"), entry("now.jpg")], T0);
    assert.ok(f && g);
    await c.recordFailure({
      stage: "fetch",
      code: "ETIMEDOUT",
      message: "timed out after 30 s",
      source: SRC,
      fileId: f.id,
      key: f.key,
      nowMs: T0 + 1000,
      retryAt: T0 + 60_000,
    });
    const row = await mustFile(c, f.id);
    assert.equal(row.state, "pending");
    assert.equal(row.attempts, 1);
    assert.equal(row.nextAttemptAt, T0 + 60_000);
    assert.equal(row.note, "timed out after 30 s");
    const due = async (nowMs: number) =>
      (await c.pendingFiles(SRC, { limit: 10, nowMs })).map((r) => r.key);
    assert.deepEqual(await due(T0 + 1000), ["now.jpg"]);
    assert.deepEqual(await due(T0 + 59_999), ["now.jpg"]);
    assert.deepEqual(await due(T0 + 60_000), ["later.jpg", "now.jpg"]);
    assert.equal((await c.status()).files.pending, 2, "a waiting retry still counts as pending");
  });

  test("recordFailure keeps one row per file, stage and code", async (c) => {
    const [f] = await c.addDiscovered(SRC, [entry("flaky.png")], T0);
    assert.ok(f);
    const base = { source: SRC, fileId: f.id, key: f.key } as const;
    await c.recordFailure({
      ...base,
      stage: "fetch",
      code: "ECONNRESET",
      message: "reset 1",
      nowMs: T0 + 1,
      retryAt: T0 + 10,
    });
    await c.recordFailure({
      ...base,
      stage: "fetch",
      code: "ECONNRESET",
      message: "reset 2",
      nowMs: T0 + 2,
      retryAt: T0 + 20,
    });
    let failures = await c.recentFailures(10);
    assert.equal(failures.length, 1);
    assert.deepEqual(failures[0], {
      id: one(failures).id,
      stage: "fetch",
      code: "ECONNRESET",
      message: "reset 2",
      source: SRC,
      fileId: f.id,
      key: "flaky.png",
      archiveId: null,
      attempts: 2,
      firstAt: T0 + 1,
      lastAt: T0 + 2,
      resolvedAt: null,
    });
    await c.recordFailure({
      ...base,
      stage: "fetch",
      code: "ETIMEDOUT",
      message: "timed out",
      nowMs: T0 + 3,
      retryAt: T0 + 30,
    });
    await c.recordFailure({
      ...base,
      stage: "upload",
      code: "ECONNRESET",
      message: "upload reset",
      archiveId: archiveId("arc-flaky"),
      nowMs: T0 + 4,
      retryAt: T0 + 40,
    });
    failures = await c.recentFailures(10);
    assert.deepEqual(
      failures.map((x) => [x.stage, x.code, x.attempts, x.archiveId]),
      [["upload", "ECONNRESET", 1, "arc-flaky"], ["fetch", "ETIMEDOUT", 1, null], [
        "fetch",
        "ECONNRESET",
        2,
        null,
      ]],
      "newest first",
    );
    assert.deepEqual((await c.recentFailures(2)).map((x) => x.lastAt), [T0 + 4, T0 + 3]);
    assert.deepEqual(await c.recentFailures(0), []);
    let row = await mustFile(c, f.id);
    assert.equal(row.attempts, 4);
    assert.equal(row.note, "upload reset");
    assert.equal(row.nextAttemptAt, T0 + 40);
    assert.equal(row.state, "pending");

    // retryAt null: failed for good, failure stays open
    await c.recordFailure({
      ...base,
      stage: "fetch",
      code: "EACCES",
      message: "permission denied",
      nowMs: T0 + 5,
      retryAt: null,
    });
    row = await mustFile(c, f.id);
    assert.equal(row.state, "failed");
    assert.equal(row.attempts, 5);
    assert.equal(row.nextAttemptAt, null);
    assert.equal(row.note, "permission denied");
    assert.deepEqual(await c.pendingFiles(SRC, { limit: 10, nowMs: T0 + 1e9 }), []);
    assert.equal(one(await c.recentFailures(10)).code, "EACCES");
    assert.equal((await c.status()).openFailures, 4);
  });

  test("recordFailure without a file merges repeats and never touches files", async (c) => {
    const [f] = await c.addDiscovered(SRC, [entry("bystander")], T0);
    assert.ok(f);
    const listing = {
      stage: "discover",
      code: "EACCES",
      source: SRC,
      key: "private/dir",
      retryAt: null,
    } as const;
    await c.recordFailure({ ...listing, message: "cannot list 1", nowMs: T0 + 1 });
    await c.recordFailure({ ...listing, message: "cannot list 2", nowMs: T0 + 2 });
    await c.recordFailure({
      stage: "upload",
      code: "ThrottlingException",
      message: "slow down",
      source: SRC,
      archiveId: archiveId("arc-throttled"),
      nowMs: T0 + 3,
      retryAt: T0 + 100,
    });
    const failures = await c.recentFailures(10);
    assert.deepEqual(
      failures.map((x) => ({ ...x, id: 0 })),
      [
        {
          id: 0,
          stage: "upload",
          code: "ThrottlingException",
          message: "slow down",
          source: SRC,
          fileId: null,
          key: null,
          archiveId: "arc-throttled",
          attempts: 1,
          firstAt: T0 + 3,
          lastAt: T0 + 3,
          resolvedAt: null,
        },
        {
          id: 0,
          stage: "discover",
          code: "EACCES",
          message: "cannot list 2",
          source: SRC,
          fileId: null,
          key: "private/dir",
          archiveId: null,
          attempts: 2,
          firstAt: T0 + 1,
          lastAt: T0 + 2,
          resolvedAt: null,
        },
      ],
    );
    assert.deepEqual(await c.file(f.id), f);
  });

  test("a failure recorded as resolved is kept but never counts as open", async (c) => {
    const skip = {
      stage: "discover",
      code: "skipped",
      message: "fifo",
      source: SRC,
      key: "pipe",
      retryAt: null,
      resolved: true,
    } as const;
    await c.recordFailure({ ...skip, nowMs: T0 + 1 });
    await c.recordFailure({ ...skip, nowMs: T0 + 2 });
    assert.equal((await c.status()).openFailures, 0);
    assert.deepEqual(await c.recentFailures(10), []);
    // An open failure of the same shape stays apart from the resolved fact.
    await c.recordFailure({ ...skip, resolved: false, message: "cannot stat", nowMs: T0 + 3 });
    const open = await c.recentFailures(10);
    assert.equal(open.length, 1);
    assert.equal(open[0]?.message, "cannot stat");
    assert.equal(open[0]?.attempts, 1);
    assert.equal((await c.status()).openFailures, 1);
  });

  test("recordFailure on a file no longer pending leaves its state alone", async (c) => {
    const [sup, arch, fail] = await c.addDiscovered(
      SRC,
      [entry("sup"), entry("arch"), entry("fail")],
      T0,
    );
    assert.ok(sup && arch && fail);
    await c.addDiscovered(SRC, [entry("sup", "v2")], T0 + 1);
    await c.commitArchive(archiveRow("arc-done"), membersOf([arch]));
    const changed = {
      stage: "fetch",
      code: "ChangedError",
      message: "length differs",
      source: SRC,
      nowMs: T0 + 2,
      retryAt: null,
    } as const;
    // A late failure of a superseded or archived file needs no attention.
    await c.recordFailure({ ...changed, fileId: sup.id });
    await c.recordFailure({ ...changed, fileId: arch.id });
    assert.deepEqual(await c.file(sup.id), { ...sup, state: "superseded" });
    assert.equal((await mustFile(c, arch.id)).state, "archived");
    assert.equal((await mustFile(c, arch.id)).attempts, 0);
    assert.deepEqual(await c.recentFailures(10), []);
    assert.equal((await c.status()).openFailures, 0);
    // A failed file stays failed and its failures stay open.
    await c.recordFailure({ ...changed, code: "EACCES", message: "denied", fileId: fail.id });
    await c.recordFailure({ ...changed, code: "EPERM", message: "not permitted", fileId: fail.id });
    const failed = await mustFile(c, fail.id);
    assert.equal(failed.state, "failed");
    assert.equal(failed.attempts, 2);
    assert.equal(failed.note, "not permitted");
    assert.deepEqual((await c.recentFailures(10)).map((x) => x.code).sort(), ["EACCES", "EPERM"]);
  });

  test("recordFailure rejects an unknown file id", async (c) => {
    await assert.rejects(
      c.recordFailure({
        stage: "fetch",
        code: "ENOENT",
        message: "gone",
        source: SRC,
        fileId: fileId(987_654_321),
        nowMs: T0,
        retryAt: null,
      }),
      (e: unknown) => e instanceof RangeError && /unknown file fid:987654321/.test(e.message),
    );
    assert.deepEqual(await c.recentFailures(10), []);
  });

  test("commitArchive archives members with md5 and offsets", async (c) => {
    const rows = await c.addDiscovered(SRC, [
      entry("m/one.jpg", "v1", { length: 700 }),
      entry("m/two.jpg", "v1", { length: 3 }),
      entry("m/three.jpg", "v1", { length: 1500 }),
    ], T0);
    const [one_, two, three] = rows;
    assert.ok(one_ && two && three);
    await c.recordFailure({
      stage: "fetch",
      code: "ECONNRESET",
      message: "reset",
      source: SRC,
      fileId: two.id,
      nowMs: T0 + 1,
      retryAt: T0 + 2,
    });
    // tar order three, one, two; members handed over in another order
    const m3 = { fileId: three.id, md5: md5Of(3), length: 1500, headerOffset: 0, dataOffset: 512 };
    const m1 = {
      fileId: one_.id,
      md5: md5Of(1),
      length: 701,
      headerOffset: 2048,
      dataOffset: 3072,
    };
    const m2 = { fileId: two.id, md5: md5Of(2), length: 3, headerOffset: 3584, dataOffset: 4096 };
    const archive = archiveRow("20261122T105301Z-1a2b3c4d5e6f", {
      size: 6144,
      fileCount: 3,
      dataBytes: 2204,
      committedAt: T0 + 500,
    });
    const result = await c.commitArchive(archive, [m1, m2, m3]);
    assert.deepEqual(result.skipped, []);
    assert.deepEqual(await c.archive(archive.id), archive);
    for (const [row, m] of [[one_, m1], [two, m2], [three, m3]] as const) {
      assert.deepEqual(await c.file(row.id), {
        ...row,
        state: "archived",
        md5: m.md5,
        length: m.length,
        archiveId: archive.id,
        headerOffset: m.headerOffset,
        dataOffset: m.dataOffset,
        archivedAt: T0 + 500,
        nextAttemptAt: null,
        attempts: row.id === two.id ? 1 : 0,
        note: row.id === two.id ? "reset" : null,
      });
    }
    assert.deepEqual(
      (await c.archiveFiles(archive.id)).map((r) => [r.key, r.dataOffset]),
      [["m/three.jpg", 512], ["m/one.jpg", 3072], ["m/two.jpg", 4096]],
    );
    assert.deepEqual(await c.pendingFiles(SRC, { limit: 10, nowMs: T0 + 1e6 }), []);
    assert.deepEqual(await c.recentFailures(10), [], "a member's failures are resolved");
    assert.equal(await c.archive(archiveId("no-such-archive")), null);
    assert.deepEqual(await c.archiveFiles(archiveId("no-such-archive")), []);
  });

  test("commitArchive archives superseded members and skips the rest", async (c) => {
    const rows = await c.addDiscovered(
      SRC,
      ["pend", "sup", "van", "fail", "else"].map((k) => entry(k)),
      T0,
    );
    const [pend, sup, van, fail, other] = rows;
    assert.ok(pend && sup && van && fail && other);
    await c.addDiscovered(SRC, [entry("sup", "v2")], T0 + 1);
    await c.markVanished([van.id], "deleted at source", T0 + 1);
    await c.recordFailure({
      stage: "fetch",
      code: "EISDIR",
      message: "is a directory",
      source: SRC,
      fileId: fail.id,
      nowMs: T0 + 1,
      retryAt: null,
    });
    const first = archiveRow("arc-first");
    await c.commitArchive(first, membersOf([other]));
    const unknown = fileId(987_654_321);
    const members = [
      ...membersOf([pend, van, sup, fail, other]),
      { fileId: unknown, md5: md5Of(9), length: 1, headerOffset: 90_000, dataOffset: 90_512 },
    ];
    const { skipped } = await c.commitArchive(archiveRow("arc-second"), members);
    assert.deepEqual(skipped, [van.id, fail.id, other.id, unknown]);
    assert.equal((await mustFile(c, pend.id)).archiveId, "arc-second");
    const supRow = await mustFile(c, sup.id);
    assert.equal(supRow.state, "archived");
    assert.equal(supRow.archiveId, "arc-second");
    assert.deepEqual(await c.file(van.id), {
      ...van,
      state: "vanished",
      note: "deleted at source",
    });
    const failRow = await mustFile(c, fail.id);
    assert.equal(failRow.state, "failed");
    assert.equal(failRow.archiveId, null);
    assert.equal(failRow.md5, null);
    const otherRow = await mustFile(c, other.id);
    assert.equal(otherRow.archiveId, "arc-first");
    assert.equal(otherRow.md5, one(membersOf([other])).md5);
    assert.deepEqual(
      (await c.archiveFiles(archiveId("arc-second"))).map((r) => r.key),
      ["pend", "sup"],
    );
  });

  test("commitArchive refuses an archive id already committed and changes nothing", async (c) => {
    const [f1, f2] = await c.addDiscovered(SRC, [entry("f1"), entry("f2")], T0);
    assert.ok(f1 && f2);
    const original = archiveRow("arc-once");
    await c.commitArchive(original, membersOf([f1]));
    await assert.rejects(
      c.commitArchive(archiveRow("arc-once", { size: 999, remoteId: remoteArchiveId("other") }), [
        ...membersOf([f2]),
      ]),
      (e: unknown) =>
        e instanceof PortError && e.code === "ARCHIVE_EXISTS" && e.retryable === false &&
        e.message.includes("arc-once"),
    );
    assert.deepEqual(await c.file(f2.id), f2, "the second commit's member is untouched");
    assert.deepEqual(await c.archive(original.id), original);
    assert.deepEqual((await c.archiveFiles(original.id)).map((r) => r.id), [f1.id]);
    assert.equal((await c.status()).archives, 1);
  });

  test("commitArchive again after a lost answer changes nothing", async (c) => {
    const [f1, f2] = await c.addDiscovered(SRC, [entry("i1"), entry("i2")], T0);
    assert.ok(f1 && f2);
    const archive = archiveRow("arc-retry", { fileCount: 1 });
    assert.deepEqual(await c.commitArchive(archive, membersOf([f1])), { skipped: [] });
    const after = await mustFile(c, f1.id);
    // The retry lists one member that is in it and one that never was.
    const again = await c.commitArchive(archive, [...membersOf([f1]), ...membersOf([f2])]);
    assert.deepEqual(again, { skipped: [f2.id] });
    assert.deepEqual(await mustFile(c, f1.id), after);
    assert.equal((await mustFile(c, f2.id)).state, "pending");
    assert.equal((await c.status()).archives, 1);
  });

  test("claimFiles hands each due pending file to one owner at a time", async (c) => {
    const rows = await c.addDiscovered(
      SRC,
      ["c1", "c2", "c3", "c4", "c5"].map((k) => entry(k)),
      T0,
    );
    assert.ok(await c.acquireLease("worker:a", "a", 60_000, T0));
    assert.ok(await c.acquireLease("worker:b", "b", 60_000, T0));
    const a = await c.claimFiles(SRC, { owner: "a", limit: 3, nowMs: T0 });
    assert.deepEqual(a.map((r) => r.key), ["c1", "c2", "c3"]);
    assert.deepEqual(a, rows.slice(0, 3), "claimed rows are the pending rows as they are");
    const b = await c.claimFiles(SRC, { owner: "b", limit: 10, nowMs: T0 });
    assert.deepEqual(b.map((r) => r.key), ["c4", "c5"]);
    assert.deepEqual(
      await c.claimFiles(SRC, { owner: "b", limit: 10, nowMs: T0, afterId: one(b, 1).id }),
      [],
    );
    // An owner sees its own claims again (a restarted walk), never another's.
    assert.deepEqual(
      (await c.claimFiles(SRC, { owner: "a", limit: 10, nowMs: T0 })).map((r) => r.key),
      ["c1", "c2", "c3"],
    );
    assert.deepEqual(
      (await c.claimFiles(SRC, { owner: "a", limit: 10, nowMs: T0, afterId: one(a, 0).id }))
        .map((r) => r.key),
      ["c2", "c3"],
    );
    // pendingFiles still lists every pending file (status, tools).
    assert.equal((await c.pendingFiles(SRC, { limit: 10, nowMs: T0 })).length, 5);
  });

  test("claimFiles takes over the files of an owner whose lease expired", async (c) => {
    await c.addDiscovered(SRC, ["d1", "d2"].map((k) => entry(k)), T0);
    assert.ok(await c.acquireLease("worker:dead", "dead", 30_000, T0));
    assert.equal((await c.claimFiles(SRC, { owner: "dead", limit: 10, nowMs: T0 })).length, 2);
    assert.ok(await c.acquireLease("worker:live", "live", 30_000, T0 + 10_000));
    assert.deepEqual(await c.claimFiles(SRC, { owner: "live", limit: 10, nowMs: T0 + 10_000 }), []);
    // The dead owner never renewed; at its expiry its claims are free.
    const taken = await c.claimFiles(SRC, { owner: "live", limit: 10, nowMs: T0 + 30_000 });
    assert.deepEqual(taken.map((r) => r.key), ["d1", "d2"]);
    // A claimer that never took a worker lease holds nothing against others.
    await c.addDiscovered(SRC, [entry("d3")], T0);
    assert.equal(
      (await c.claimFiles(SRC, { owner: "nolease", limit: 10, nowMs: T0 + 30_000 })).length,
      1,
    );
    assert.deepEqual(
      (await c.claimFiles(SRC, { owner: "live", limit: 10, nowMs: T0 + 30_000 })).map((r) => r.key),
      ["d1", "d2", "d3"],
    );
  });

  test("claims end when a file is settled or scheduled for a retry", async (c) => {
    const rows = await c.addDiscovered(SRC, ["s1", "s2", "s3", "s4"].map((k) => entry(k)), T0);
    assert.ok(await c.acquireLease("worker:a", "a", 600_000, T0));
    assert.ok(await c.acquireLease("worker:b", "b", 600_000, T0));
    assert.equal((await c.claimFiles(SRC, { owner: "a", limit: 10, nowMs: T0 })).length, 4);
    const [r1, r2, r3, r4] = rows;
    assert.ok(r1 && r2 && r3 && r4);
    await c.recordFailure({
      stage: "fetch",
      code: "EIO",
      message: "read error",
      source: SRC,
      fileId: r1.id,
      nowMs: T0,
      retryAt: T0 + 5_000,
    });
    await c.markVanished([r2.id], "deleted", T0);
    await c.commitArchive(archiveRow("arc-claims"), membersOf([r3]));
    // b gets the retried file once it is due; r4 stays a's.
    assert.deepEqual(await c.claimFiles(SRC, { owner: "b", limit: 10, nowMs: T0 + 1_000 }), []);
    const b = await c.claimFiles(SRC, { owner: "b", limit: 10, nowMs: T0 + 5_000 });
    assert.deepEqual(b.map((r) => r.key), ["s1"]);
    // A release of a's worker lease frees r4 at once.
    await c.releaseLease("worker:a", "a");
    const after = await c.claimFiles(SRC, { owner: "b", limit: 10, nowMs: T0 + 5_000 });
    assert.deepEqual(after.map((r) => r.key), ["s1", "s4"]);
  });

  test("acquireLease grants one owner at a time until expiry", async (c) => {
    assert.equal(await c.acquireLease("discover:x", "one", 10_000, T0), true);
    assert.equal(await c.acquireLease("discover:x", "two", 10_000, T0 + 5_000), false);
    assert.equal(await c.acquireLease("discover:x", "one", 10_000, T0 + 5_000), true, "renew");
    assert.equal(await c.acquireLease("discover:x", "two", 10_000, T0 + 14_999), false);
    assert.equal(await c.acquireLease("discover:x", "two", 10_000, T0 + 15_000), true, "expired");
    assert.equal(await c.acquireLease("discover:x", "one", 10_000, T0 + 15_001), false);
    await c.releaseLease("discover:x", "one"); // not the holder: nothing happens
    assert.equal(await c.acquireLease("discover:x", "one", 10_000, T0 + 15_002), false);
    await c.releaseLease("discover:x", "two");
    assert.equal(await c.acquireLease("discover:x", "one", 10_000, T0 + 15_003), true);
    assert.equal(
      await c.acquireLease("discover:y", "two", 10_000, T0 + 15_003),
      true,
      "names are separate",
    );
    await assert.rejects(
      c.acquireLease("discover:x", "one", 0, T0),
      (e: unknown) => e instanceof RangeError && e.message.includes("ttl"),
    );
    await assert.rejects(
      c.acquireLease("discover:x", "", 10, T0),
      (e: unknown) => e instanceof TypeError && e.message.includes("owner"),
    );
  });

  test("commitArchive that fails midway leaves no member archived", async (c) => {
    const rows = await c.addDiscovered(SRC, ["x1", "x2", "x3"].map((k) => entry(k)), T0);
    const members = membersOf(rows);
    const bad = [...members.slice(0, 2), { ...one(members, 2), md5: "NOT-AN-MD5" }];
    const archive = archiveRow("arc-atomic", { fileCount: 3 });
    await assert.rejects(
      c.commitArchive(archive, bad),
      (e: unknown) => e instanceof RangeError && /md5/.test(e.message),
    );
    for (const r of rows) assert.deepEqual(await c.file(r.id), r);
    assert.equal(await c.archive(archive.id), null);
    assert.deepEqual(await c.archiveFiles(archive.id), []);
    assert.deepEqual(await c.status(), {
      ...EMPTY_STATUS,
      files: { ...EMPTY_STATUS.files, pending: 3 },
      pendingBytes: 300,
      oldestPendingAt: T0,
    });
    // the same commit done right succeeds afterwards
    assert.deepEqual(await c.commitArchive(archive, members), { skipped: [] });
    assert.deepEqual((await c.archiveFiles(archive.id)).map((r) => r.key), ["x1", "x2", "x3"]);
  });

  test("markVanished marks pending files only and resolves their failures", async (c) => {
    const rows = await c.addDiscovered(SRC, ["v1", "v2", "arch", "sup"].map((k) => entry(k)), T0);
    const [p1, p2, arch, sup] = rows;
    assert.ok(p1 && p2 && arch && sup);
    await c.recordFailure({
      stage: "fetch",
      code: "EIO",
      message: "read error",
      source: SRC,
      fileId: p1.id,
      nowMs: T0 + 1,
      retryAt: T0 + 100,
    });
    await c.commitArchive(archiveRow("arc-v"), membersOf([arch]));
    await c.addDiscovered(SRC, [entry("sup", "v2")], T0 + 2);
    await c.markVanished(
      [p1.id, p2.id, arch.id, sup.id, fileId(987_654_321)],
      "deleted at source",
      T0 + 3,
    );
    for (const p of [p1, p2]) {
      const row = await mustFile(c, p.id);
      assert.equal(row.state, "vanished");
      assert.equal(row.note, "deleted at source");
      assert.equal(row.nextAttemptAt, null);
    }
    assert.equal((await mustFile(c, arch.id)).state, "archived");
    assert.equal((await mustFile(c, sup.id)).state, "superseded");
    assert.deepEqual(await c.recentFailures(10), []);
    await c.markVanished([], "nothing", T0 + 4);
    assert.equal((await c.status()).files.vanished, 2);
  });

  test("the same key in two domains is two files: neither supersedes the other", async (c) => {
    const mog = (domain: string, fid: number) =>
      entry("product/1.png", String(fid), { domain, sourceFid: fid });
    const [a, b] = await c.addDiscovered(OTHER, [mog("ugc", 10), mog("thumbs", 11)], T0);
    assert.ok(a && b);
    assert.deepEqual([a.state, b.state], ["pending", "pending"]);
    const [a2] = await c.addDiscovered(OTHER, [mog("ugc", 12)], T0 + 1);
    assert.ok(a2);
    assert.equal((await mustFile(c, a.id)).state, "superseded", "a new fid in ugc replaces ugc's");
    assert.equal((await mustFile(c, b.id)).state, "pending", "thumbs' copy is another file");
    // Files without a domain still supersede each other (null is one scope).
    const [p1] = await c.addDiscovered(SRC, [entry("plain", "v1")], T0);
    await c.addDiscovered(SRC, [entry("plain", "v2")], T0 + 1);
    assert.equal((await mustFile(c, p1!.id)).state, "superseded");
  });

  test("markGone marks what a fid span no longer lists; pending ones vanish", async (c) => {
    const mog = (key: string, fid: number) =>
      entry(key, String(fid), { domain: "ugc", sourceFid: fid });
    const rows = await c.addDiscovered(
      OTHER,
      [mog("a", 5), mog("b", 7), mog("c", 9), mog("d", 12), mog("e", 20)],
      T0,
    );
    const [a, b, cc, d, e] = rows;
    assert.ok(a && b && cc && d && e);
    // Another source's fids in the same span are not this source's business.
    const [dirFile] = await c.addDiscovered(SRC, [entry("x", "v1", { sourceFid: 8 })], T0);
    await c.commitArchive(archiveRow("arc-g"), membersOf([b]));
    await c.recordFailure({
      stage: "fetch",
      code: "NoReadablePath",
      message: "no path",
      source: OTHER,
      fileId: cc.id,
      nowMs: T0 + 1,
      retryAt: T0 + 100,
    });
    // The span (5, 12] lists only fid 12: 7 (archived) and 9 (pending) are gone; 5 is outside.
    const result = await c.markGone(OTHER, { from: 5, to: 12 }, [12], T0 + 10);
    assert.deepEqual(result, { gone: 2, vanished: 1 });
    const gotB = await mustFile(c, b.id);
    assert.equal(gotB.state, "archived", "an archived file stays archived");
    assert.equal(gotB.goneAt, T0 + 10);
    const gotC = await mustFile(c, cc.id);
    assert.equal(gotC.state, "vanished");
    assert.equal(gotC.goneAt, T0 + 10);
    assert.match(gotC.note ?? "", /deleted or replaced at the source/);
    assert.deepEqual(await c.recentFailures(10), [], "the vanished file's failure is resolved");
    for (const kept of [a, d, e]) assert.equal((await mustFile(c, kept.id)).goneAt, null);
    assert.equal((await mustFile(c, dirFile!.id)).goneAt, null);
    // Marking again changes nothing: the first time is kept.
    assert.deepEqual(await c.markGone(OTHER, { from: 0, to: 20 }, [5, 12, 20], T0 + 20), {
      gone: 0,
      vanished: 0,
    });
    assert.equal((await mustFile(c, b.id)).goneAt, T0 + 10);
    await assert.rejects(
      c.markGone(OTHER, { from: 9, to: 9 }, [], T0),
      (err: unknown) => err instanceof RangeError && /from < to/.test(err.message),
    );
  });

  test("status counts every state and sums bytes", async (c) => {
    assert.deepEqual(await c.status(), EMPTY_STATUS);
    const [a1, b, e0] = await c.addDiscovered(SRC, [
      entry("a", "v1", { length: 10 }),
      entry("b", "v1", { length: 20 }),
      entry("e0", "v1", { length: 5 }),
    ], T0);
    const [cc, d, e, a2] = await c.addDiscovered(SRC, [
      entry("c", "v1", { length: 30 }),
      entry("d", "v1", { length: 40 }),
      entry("e", "v1", { length: 50 }),
      entry("a", "v2", { length: 15 }),
    ], T0 + 10);
    assert.ok(a1 && b && e0 && cc && d && e && a2);
    await c.commitArchive(
      archiveRow("arc-status", { size: 4096, fileCount: 2, dataBytes: 50 }),
      membersOf([b, cc]),
    );
    await c.markVanished([d.id], "gone", T0 + 20);
    for (const f of [e, e0]) {
      await c.recordFailure({
        stage: "fetch",
        code: "EACCES",
        message: "denied",
        source: SRC,
        fileId: f.id,
        nowMs: T0 + 20,
        retryAt: null,
      });
    }
    await c.recordFailure({
      stage: "fetch",
      code: "ECONNRESET",
      message: "reset",
      source: SRC,
      fileId: a2.id,
      nowMs: T0 + 21,
      retryAt: T0 + 1e6,
    });
    await c.recordFailure({
      stage: "discover",
      code: "EACCES",
      message: "cannot list",
      source: SRC,
      key: "secret",
      nowMs: T0 + 22,
      retryAt: null,
    });
    assert.deepEqual(await c.status(), {
      files: { pending: 1, archived: 2, vanished: 1, failed: 2, superseded: 1 },
      archives: 1,
      storedBytes: 4096,
      archivedBytes: 50,
      pendingBytes: 15,
      oldestPendingAt: T0 + 10,
      openFailures: 4,
    });
  });

  test("cursors are stored, replaced and kept apart", async (c) => {
    assert.equal(await c.getCursor("mogilefs:ugc"), null);
    await c.setCursor("mogilefs:ugc", "1234");
    assert.equal(await c.getCursor("mogilefs:ugc"), "1234");
    await c.setCursor("mogilefs:ugc", "5678");
    assert.equal(await c.getCursor("mogilefs:ugc"), "5678");
    await c.setCursor("s3:bücket/日本", "key\nwith newline");
    assert.equal(await c.getCursor("s3:bücket/日本"), "key\nwith newline");
    assert.equal(await c.getCursor("mogilefs:ugc"), "5678");
    await c.setCursor("empty", "");
    assert.equal(await c.getCursor("empty"), "");
  });

  test("fileVersions lists every version of one key, newest first", async (c) => {
    await c.addDiscovered(SRC, [entry("doc", "1"), entry("doc/sub", "1")], T0);
    await c.addDiscovered(SRC, [entry("doc", "2")], T0 + 1);
    await c.addDiscovered(OTHER, [entry("doc", "9")], T0 + 1);
    await c.addDiscovered(SRC, [entry("doc", "3")], T0 + 2);
    const versions = await c.fileVersions(SRC, "doc");
    assert.deepEqual(
      versions.map((r) => [r.key, r.version, r.state, r.discoveredAt]),
      [
        ["doc", "3", "pending", T0 + 2],
        ["doc", "2", "superseded", T0 + 1],
        ["doc", "1", "superseded", T0],
      ],
    );
    assert.deepEqual(await c.fileVersions(SRC, "nope"), []);
    assert.deepEqual(await c.fileVersions(SRC, "do"), []);
  });

  test("archives pages by id", async (c) => {
    const ids = ["arc-03", "arc-01", "arc-05", "arc-02", "arc-04"];
    const rows = await c.addDiscovered(SRC, ids.map((id) => entry(`file-of-${id}`)), T0);
    const committed = new Map<string, ArchiveRow>();
    for (const [i, id] of ids.entries()) {
      const row = archiveRow(id, { size: 1000 + i, committedAt: T0 + i });
      committed.set(id, row);
      await c.commitArchive(row, membersOf([one(rows, i)]));
    }
    const page = async (limit: number, afterId?: ArchiveId) =>
      (await c.archives(afterId === undefined ? { limit } : { limit, afterId })).map((a) => a.id);
    assert.deepEqual(await page(2), ["arc-01", "arc-02"]);
    assert.deepEqual(await page(2, archiveId("arc-02")), ["arc-03", "arc-04"]);
    assert.deepEqual(await page(2, archiveId("arc-04")), ["arc-05"]);
    assert.deepEqual(await page(2, archiveId("arc-05")), []);
    assert.deepEqual(await page(0), []);
    assert.deepEqual(await page(10, archiveId("arc-025")), ["arc-03", "arc-04", "arc-05"]);
    const all = await c.archives({ limit: 100 });
    assert.deepEqual(all, [...committed.values()].sort((p, q) => p.id < q.id ? -1 : 1));
    const status = await c.status();
    assert.equal(status.archives, 5);
    assert.equal(status.storedBytes, 1000 + 1001 + 1002 + 1003 + 1004);
  });

  test("keys with unicode, newlines and quotes round-trip exactly", async (c) => {
    const keys = [
      "ünïcödé/日本語/ファイル.png",
      "line\nbreak.txt",
      "tab\tand\r\ncrlf",
      "emoji 😀/🧊.glb",
      "quote'\"back\\slash",
      "percent%_under*glob?[x]",
      " leading and trailing ",
      "nul-free but \u0007 bell",
      `${"long/".repeat(300)}end`,
    ];
    const rows = await c.addDiscovered(SRC, keys.map((k) => entry(k, `vérsion\n${k.length}`)), T0);
    assert.deepEqual(rows.map((r) => r.key), keys);
    const latest = await c.latestVersions(SRC, keys);
    assert.equal(latest.size, keys.length);
    for (const [i, k] of keys.entries()) {
      assert.deepEqual(latest.get(k), { version: `vérsion\n${k.length}`, state: "pending" });
      assert.deepEqual(await c.fileVersions(SRC, k), [one(rows, i)]);
      assert.equal((await mustFile(c, one(rows, i).id)).key, k);
    }
    assert.deepEqual(
      await c.addDiscovered(SRC, keys.map((k) => entry(k, `vérsion\n${k.length}`)), T0),
      [],
    );
    await c.commitArchive(archiveRow("arc-unicode", { fileCount: keys.length }), membersOf(rows));
    assert.deepEqual((await c.archiveFiles(archiveId("arc-unicode"))).map((r) => r.key), keys);
  });

  test("a 20,000-entry discovery batch is recorded whole", async (c) => {
    const n = 20_000;
    const entries = Array.from(
      { length: n },
      (_, i) => entry(`bulk/${String(i).padStart(5, "0")}.jpg`, `${i}`, { length: i }),
    );
    const rows = await c.addDiscovered(SRC, entries, T0);
    assert.equal(rows.length, n);
    for (let i = 1; i < n; i++) {
      assert.ok(one(rows, i).id > one(rows, i - 1).id, `ids grow at ${i}`);
    }
    assert.equal(one(rows, n - 1).key, "bulk/19999.jpg");
    assert.equal((await c.latestVersions(SRC, entries.map((e) => e.key))).size, n);
    const seen: FileId[] = [];
    let afterId: FileId | undefined;
    for (;;) {
      const page = await c.pendingFiles(
        SRC,
        afterId === undefined ? { limit: 7000, nowMs: T0 } : { limit: 7000, afterId, nowMs: T0 },
      );
      if (page.length === 0) break;
      for (const r of page) seen.push(r.id);
      afterId = one(page, page.length - 1).id;
    }
    assert.deepEqual(seen, rows.map((r) => r.id));
    assert.deepEqual(await c.addDiscovered(SRC, entries, T0 + 1), []);
    const status = await c.status();
    assert.equal(status.files.pending, n);
    assert.equal(status.pendingBytes, (n * (n - 1)) / 2);
  });

  test("addRetrieval records every field, read back by id and by store job", async (c) => {
    await archived(c, "arc-r1", ["a.png"]);
    const ranged = retrievalRow("r-ranged", "arc-r1", {
      state: "ready",
      tier: "Expedited",
      readyAt: T0 + 2000,
      expiresAt: T0 + 86_400_000,
    });
    const whole = retrievalRow("r-whole", "arc-r1", {
      range: null,
      purpose: "audit",
      state: "failed",
      tier: "Standard",
      failure: "RetrievalFailed: the vault said no",
      startedAt: T0 + 3000,
    });
    // An S3 job id carries the object key: long, and the same job id may
    // exist at another store.
    const longJob = jobId("eyJrIjoi".repeat(300));
    const s3 = retrievalRow("r-s3", "arc-r1", {
      store: "s3://bücket/日本?storage-class=DEEP_ARCHIVE",
      jobId: longJob,
      range: { start: 0, end: 0 },
    });
    const s3Twin = retrievalRow("r-s3-twin", "arc-r1", { store: "s3://other/x", jobId: longJob });
    for (const row of [ranged, whole, s3, s3Twin]) await c.addRetrieval(row);
    for (const row of [ranged, whole, s3, s3Twin]) {
      assert.deepEqual(await c.retrieval(row.id), row);
      assert.deepEqual(await c.retrievalByJob(row.store, row.jobId), row);
    }
    assert.equal(await c.retrieval(retrievalId("r-nope")), null);
    assert.equal(await c.retrievalByJob(VAULT, jobId("job-nope")), null);
    assert.equal(await c.retrievalByJob("glacier://us-east-1/v", ranged.jobId), null);
    assert.equal(await c.retrievalByJob(VAULT, jobId("JOB-r-ranged")), null, "job ids are exact");
  });

  test("addRetrieval again with the same id changes nothing", async (c) => {
    await archived(c, "arc-r2", ["a.png"]);
    const first = retrievalRow("r-once", "arc-r2");
    await c.addRetrieval(first);
    await c.addRetrieval(first);
    await c.addRetrieval({ ...first, state: "ready", jobId: jobId("job-other"), tier: "Bulk" });
    assert.deepEqual(await mustRetrieval(c, "r-once"), first);
    assert.equal(await c.retrievalByJob(VAULT, jobId("job-other")), null);
    // Two at once (a retry racing the first try): one row.
    const racing = retrievalRow("r-race", "arc-r2");
    await Promise.all([c.addRetrieval(racing), c.addRetrieval(racing)]);
    assert.deepEqual(await c.retrieval(racing.id), racing);
  });

  test("addRetrieval refuses another id for a recorded job, an unknown archive, bad fields", async (c) => {
    await archived(c, "arc-r3", ["a.png"]);
    const first = retrievalRow("r-first", "arc-r3");
    await c.addRetrieval(first);
    await assert.rejects(
      c.addRetrieval(retrievalRow("r-second", "arc-r3", { jobId: first.jobId })),
      (e: unknown) => {
        assert.ok(e instanceof PortError, `expected a PortError, got ${e}`);
        assert.equal(e.code, "RETRIEVAL_EXISTS");
        assert.equal(e.retryable, false);
        assert.match(e.message, /r-second.*job-r-first.*r-first/);
        return true;
      },
    );
    await assert.rejects(
      c.addRetrieval(retrievalRow("r-orphan", "arc-nope")),
      rejectsWith(RangeError, /unknown archive arc-nope/),
    );
    const bad: [Partial<RetrievalRow>, typeof RangeError | typeof TypeError, RegExp][] = [
      [{ range: { start: 10, end: 9 } }, RangeError, /Invalid range of retrieval r-bad: 10-9/],
      [{ range: { start: -1, end: 9 } }, RangeError, /Invalid range of retrieval r-bad: -1-9/],
      [{ tier: "Fast" as RetrievalRow["tier"] }, RangeError, /Invalid tier .*"Fast"/],
      [{ purpose: "fun" as RetrievalRow["purpose"] }, RangeError, /Invalid purpose .*"fun"/],
      [{ state: "done" as RetrievalRow["state"] }, RangeError, /Invalid state .*"done"/],
      [{ startedAt: T0 + 0.5 }, RangeError, /Invalid startedAt of retrieval r-bad: /],
      [{ expiresAt: Number.NaN }, RangeError, /Invalid expiresAt of retrieval r-bad: NaN/],
      [{ store: "" }, TypeError, /Invalid store of retrieval r-bad: ""/],
      [{ jobId: "" as RetrievalRow["jobId"] }, TypeError, /Invalid job id of retrieval r-bad: ""/],
      [{ id: "bad id" as RetrievalId }, TypeError, /Invalid retrieval id: "bad id"/],
    ];
    for (const [extra, kind, pattern] of bad) {
      await assert.rejects(
        c.addRetrieval(retrievalRow("r-bad", "arc-r3", extra)),
        rejectsWith(kind, pattern),
      );
    }
    assert.equal(await c.retrieval(retrievalId("r-bad")), null);
    assert.equal(await c.retrieval(retrievalId("r-second")), null);
  });

  test("updateRetrieval writes the state and only the fields given", async (c) => {
    await archived(c, "arc-r4", ["a.png"]);
    const row = retrievalRow("r-upd", "arc-r4");
    await c.addRetrieval(row);
    await c.updateRetrieval(row.id, { state: "ready", readyAt: T0 + 5000, expiresAt: T0 + 9000 });
    const ready = { ...row, state: "ready" as const, readyAt: T0 + 5000, expiresAt: T0 + 9000 };
    assert.deepEqual(await c.retrieval(row.id), ready);
    await c.updateRetrieval(row.id, { state: "expired" });
    assert.deepEqual(await c.retrieval(row.id), { ...ready, state: "expired" });
    await c.updateRetrieval(row.id, { state: "failed", failure: "gone", expiresAt: null });
    const failed = { ...ready, state: "failed" as const, failure: "gone", expiresAt: null };
    assert.deepEqual(await c.retrieval(row.id), failed);
    await c.updateRetrieval(row.id, { state: "failed", failure: "gone" });
    assert.deepEqual(await c.retrieval(row.id), failed, "the same update again is harmless");
    await assert.rejects(
      c.updateRetrieval(retrievalId("r-unknown"), { state: "ready" }),
      rejectsWith(RangeError, /Cannot update retrieval r-unknown.*unknown retrieval id/),
    );
    await assert.rejects(
      c.updateRetrieval(row.id, { state: "lost" as RetrievalRow["state"] }),
      rejectsWith(RangeError, /Invalid state of retrieval r-upd: "lost"/),
    );
    await assert.rejects(
      c.updateRetrieval(row.id, { state: "ready", readyAt: 1.5 }),
      rejectsWith(RangeError, /Invalid readyAt of retrieval r-upd: 1.5/),
    );
    assert.deepEqual(await c.retrieval(row.id), failed);
    // The row is found by its job afterwards too.
    assert.deepEqual(await c.retrievalByJob(VAULT, row.jobId), failed);
  });

  test("liveRetrievals: in-progress or ready, unexpired, by archive then start", async (c) => {
    for (const arc of ["arc-la", "arc-lb", "arc-lc"]) await archived(c, arc, ["f"]);
    const rows = [
      retrievalRow("l1", "arc-lb", { startedAt: T0 + 30 }),
      retrievalRow("l2", "arc-la", { state: "ready", startedAt: T0 + 20, expiresAt: T0 + 1000 }),
      retrievalRow("l3", "arc-la", { startedAt: T0 + 10 }),
      retrievalRow("l4", "arc-la", { state: "failed", startedAt: T0 + 5, failure: "no" }),
      retrievalRow("l5", "arc-la", { state: "expired", startedAt: T0 + 6 }),
      retrievalRow("l6", "arc-lc", { state: "ready", startedAt: T0 + 7 }),
      retrievalRow("l7", "arc-lb", { state: "ready", startedAt: T0 + 8, expiresAt: T0 + 500 }),
      retrievalRow("l8", "arc-lb", { startedAt: T0 + 30, range: null }),
    ];
    for (const r of rows) await c.addRetrieval(r);
    const live = async (ids: readonly string[], nowMs: number) =>
      (await c.liveRetrievals(ids.map(archiveId), nowMs)).map((r) => r.id);
    const asked = ["arc-lb", "arc-la", "arc-la", "arc-nope"];
    assert.deepEqual(await live(asked, T0 + 499), ["l3", "l2", "l7", "l1", "l8"]);
    assert.deepEqual(await live(asked, T0 + 999), ["l3", "l2", "l1", "l8"]);
    assert.deepEqual(
      await live(asked, T0 + 1000),
      ["l3", "l1", "l8"],
      "expiresAt = now is expired",
    );
    assert.deepEqual(await live(["arc-lc"], T0 + 1e9), ["l6"], "unknown expiry counts as live");
    assert.deepEqual(await live([], T0), []);
    assert.deepEqual(await live(["arc-nope"], T0), []);
    const full = await c.liveRetrievals([archiveId("arc-la")], T0);
    assert.deepEqual(full, [rows[2], rows[1]]);
    await c.updateRetrieval(retrievalId("l3"), { state: "expired" });
    await c.updateRetrieval(retrievalId("l1"), { state: "ready", expiresAt: T0 + 100 });
    assert.deepEqual(await live(asked, T0 + 99), ["l2", "l7", "l1", "l8"]);
    assert.deepEqual(await live(asked, T0 + 100), ["l2", "l7", "l8"]);
    await assert.rejects(
      c.liveRetrievals([archiveId("arc-la")], Number.NaN),
      rejectsWith(RangeError, /Invalid nowMs: NaN/),
    );
  });

  test("liveRetrievals of many archives at once", async (c) => {
    const files = await c.addDiscovered(
      SRC,
      Array.from({ length: 1200 }, (_, i) => entry(`many/${i}`)),
      T0,
    );
    const ids: ArchiveId[] = [];
    for (const [i, f] of files.entries()) {
      const id = `arc-m${String(i).padStart(4, "0")}`;
      ids.push(archiveId(id));
      await c.commitArchive(archiveRow(id), membersOf([f]));
      if (i % 2 === 0) await c.addRetrieval(retrievalRow(`rm${i}`, id, { startedAt: T0 + i }));
    }
    const live = await c.liveRetrievals([...ids].reverse(), T0);
    assert.equal(live.length, 600);
    assert.deepEqual(live.map((r) => r.archiveId), ids.filter((_, i) => i % 2 === 0));
  });

  test("addRestores records pending restores in input order, idempotent by key", async (c) => {
    const [f1, f2] = await archived(c, "arc-s1", ["a.png", "b.png"]);
    assert.ok(f1 && f2);
    const added = await c.addRestores([
      request("batch1:1", f1, "/tmp/x.png"),
      { key: "batch1:2", fileId: f2.id, dest: "s3://b/k", requestedBy: "drill" },
    ], T0 + 50);
    assert.equal(added.length, 2);
    const [r1, r2] = [one(added, 0), one(added, 1)];
    assert.ok(Number.isSafeInteger(r1.id) && r1.id > 0 && r2.id > r1.id, "ids grow in input order");
    assert.deepEqual(r1, {
      id: r1.id,
      key: "batch1:1",
      fileId: f1.id,
      dest: "/tmp/x.png",
      state: "pending",
      retrievalId: null,
      requestedAt: T0 + 50,
      finishedAt: null,
      note: null,
      requestedBy: "restore@host1",
      overwrite: false,
    });
    assert.deepEqual(r2, {
      ...r1,
      id: r2.id,
      key: "batch1:2",
      fileId: f2.id,
      dest: "s3://b/k",
      requestedBy: "drill",
    });
    // The same call again (its answer was lost) adds nothing and changes nothing.
    const again = await c.addRestores([
      request("batch1:1", f2, "/elsewhere"),
      request("batch1:2", f1),
    ], T0 + 60);
    assert.deepEqual(again, [r1, r2]);
    // Known and new keys mixed, a new key twice in one call.
    const mixed = await c.addRestores([
      request("batch1:3", f1),
      request("batch1:2", f2),
      request("batch1:3", f2, "/tmp/other"),
    ], T0 + 70);
    const r3 = one(mixed, 0);
    assert.deepEqual(mixed, [r3, r2, r3]);
    assert.equal(r3.fileId, f1.id);
    assert.equal(r3.dest, "/tmp/restore/batch1:3");
    assert.ok(r3.id > r2.id);
    assert.deepEqual(await c.restores({ limit: 100 }), [r1, r2, r3]);
    assert.deepEqual(await c.addRestores([], T0), []);
    // Unicode, newlines, quotes, the longest key: exact round trips.
    const odd = await c.addRestores([
      { ...request("ünï:日本😀", f1, "/tmp/ünï cödé\n'\"\\.png"), requestedBy: "drill@höst" },
      request("k".repeat(255), f2),
      request("batch1:1 ", f2),
      request("BATCH1:1", f2),
    ], T0 + 80);
    assert.deepEqual(odd.map((r) => [r.key, r.dest, r.requestedBy]), [
      ["ünï:日本😀", "/tmp/ünï cödé\n'\"\\.png", "drill@höst"],
      ["k".repeat(255), `/tmp/restore/${"k".repeat(255)}`, "restore@host1"],
      ["batch1:1 ", "/tmp/restore/batch1:1 ", "restore@host1"],
      ["BATCH1:1", "/tmp/restore/BATCH1:1", "restore@host1"],
    ]);
    assert.equal((await c.restores({ limit: 100 })).length, 7, "keys are compared exactly");
  });

  test("addRestores records overwrite, false unless asked; a repeated key keeps it", async (c) => {
    const [f1, f2] = await archived(c, "arc-s7", ["a.png", "b.png"]);
    assert.ok(f1 && f2);
    const added = await c.addRestores([
      request("force:1", f1),
      { ...request("force:2", f2), overwrite: true },
      { ...request("force:3", f1), overwrite: false },
    ], T0);
    assert.deepEqual(added.map((r) => [r.key, r.overwrite]), [
      ["force:1", false],
      ["force:2", true],
      ["force:3", false],
    ]);
    assert.deepEqual(await c.restores({ limit: 100 }), added);
    assert.deepEqual(await mustRestore(c, one(added, 1).id), one(added, 1));
    // A repeat with another overwrite returns the recorded row unchanged.
    const again = await c.addRestores([
      { ...request("force:1", f1), overwrite: true },
      request("force:2", f2),
      { ...request("force:4", f2), overwrite: true },
      request("force:4", f2),
    ], T0 + 10);
    const r4 = one(again, 2);
    assert.equal(r4.overwrite, true);
    assert.deepEqual(again, [one(added, 0), one(added, 1), r4, r4]);
    assert.deepEqual(await c.restores({ limit: 100 }), [...added, r4]);
    // Assigning and finishing keep it.
    await c.addRetrieval(retrievalRow("rf", "arc-s7"));
    await c.assignRestores([one(added, 1).id], retrievalId("rf"));
    await c.finishRestore(one(added, 1).id, { state: "done", note: "/tmp/x" }, T0 + 20);
    assert.equal((await mustRestore(c, one(added, 1).id)).overwrite, true);
    await assert.rejects(
      c.addRestores([
        request("force:5", f1),
        { ...request("force:6", f1), overwrite: "yes" as unknown as boolean },
      ], T0),
      rejectsWith(TypeError, /Invalid overwrite of restore "force:6": "yes" is not a boolean/),
    );
    assert.equal((await c.restores({ limit: 100 })).length, 4, "a rejected call adds nothing");
  });

  test("addRestores refuses an unknown file and bad requests, recording nothing", async (c) => {
    const [f1] = await archived(c, "arc-s2", ["a.png"]);
    assert.ok(f1);
    await assert.rejects(
      c.addRestores([
        request("bad:1", f1),
        { key: "bad:2", fileId: fileId(987_654_321), dest: "/tmp/y", requestedBy: "x" },
      ], T0),
      rejectsWith(RangeError, /unknown file fid:987654321/),
    );
    assert.deepEqual(await c.restores({ limit: 100 }), [], "the valid request is not recorded");
    const bad: [Record<string, unknown>, typeof RangeError | typeof TypeError, RegExp][] = [
      [{ key: "" }, TypeError, /Invalid restore key: "" \(1 to 255 characters\)/],
      [{ key: "k".repeat(256) }, TypeError, /Invalid restore key: "k{256}"/],
      [{ fileId: 0 }, RangeError, /Invalid file id of restore "bad:3": 0 is not a positive/],
      [{ fileId: 1.5 }, RangeError, /Invalid file id of restore "bad:3": 1.5/],
      [{ dest: "" }, TypeError, /Invalid destination of restore "bad:3": ""/],
      [{ requestedBy: "" }, TypeError, /Invalid requestedBy of restore "bad:3": ""/],
    ];
    for (const [extra, kind, pattern] of bad) {
      const q = { ...request("bad:3", f1), ...extra } as ReturnType<typeof request>;
      await assert.rejects(
        c.addRestores([request("bad:4", f1), q], T0),
        rejectsWith(kind, pattern),
      );
    }
    await assert.rejects(
      c.addRestores([request("bad:5", f1)], T0 + 0.25),
      rejectsWith(RangeError, /Invalid nowMs: /),
    );
    assert.deepEqual(await c.restores({ limit: 100 }), []);
  });

  test("two callers adding the same restore key at once get the same row", async (c) => {
    const [f1, f2] = await archived(c, "arc-s3", ["a.png", "b.png"]);
    assert.ok(f1 && f2);
    const [a, b] = await Promise.all([
      c.addRestores([request("race:1", f1), request("race:2", f2)], T0),
      c.addRestores([request("race:1", f1), request("race:2", f2)], T0 + 1),
    ]);
    assert.deepEqual(a, b);
    assert.deepEqual(await c.restores({ limit: 100 }), a);
  });

  test("assignRestores points pending restores only; finishRestore finishes once", async (c) => {
    const [f1, f2] = await archived(c, "arc-s4", ["a.png", "b.png"]);
    assert.ok(f1 && f2);
    await c.addRetrieval(retrievalRow("ra", "arc-s4"));
    await c.addRetrieval(retrievalRow("rb", "arc-s4"));
    const [r1, r2, r3] = await c.addRestores(
      [request("as:1", f1), request("as:2", f2), request("as:3", f1)],
      T0,
    );
    assert.ok(r1 && r2 && r3);
    assert.equal(
      await c.finishRestore(r3.id, { state: "failed", note: "operator cancelled" }, T0 + 5),
      true,
    );
    await c.assignRestores([r1.id, r2.id, r3.id, r1.id], retrievalId("ra"));
    assert.equal((await mustRestore(c, r1.id)).retrievalId, "ra");
    assert.equal((await mustRestore(c, r2.id)).retrievalId, "ra");
    const failed = {
      ...r3,
      state: "failed" as const,
      finishedAt: T0 + 5,
      note: "operator cancelled",
    };
    assert.deepEqual(await mustRestore(c, r3.id), failed, "a finished restore is not assigned");

    assert.equal(
      await c.finishRestore(r1.id, { state: "done", note: "/tmp/restore/as:1" }, T0 + 10),
      true,
    );
    const done = {
      ...r1,
      state: "done" as const,
      retrievalId: retrievalId("ra"),
      finishedAt: T0 + 10,
      note: "/tmp/restore/as:1",
    };
    assert.deepEqual(await mustRestore(c, r1.id), done);
    // A second listener finishing the same restore: false, nothing changes.
    assert.equal(await c.finishRestore(r1.id, { state: "failed", note: "late" }, T0 + 20), false);
    assert.equal(await c.finishRestore(r1.id, { state: "done", note: "again" }, T0 + 20), false);
    assert.deepEqual(await mustRestore(c, r1.id), done);
    // Reassigning: the pending one moves, the done one stays.
    await c.assignRestores([r1.id, r2.id], retrievalId("rb"));
    assert.equal((await mustRestore(c, r1.id)).retrievalId, "ra");
    assert.equal((await mustRestore(c, r2.id)).retrievalId, "rb");
    await c.assignRestores([], retrievalId("rb"));

    await assert.rejects(
      c.assignRestores([r2.id], retrievalId("r-nope")),
      rejectsWith(RangeError, /retrieval r-nope.*unknown retrieval id/),
    );
    await assert.rejects(
      c.assignRestores([r2.id, 987_654], retrievalId("ra")),
      rejectsWith(RangeError, /restore 987654 to retrieval ra.*unknown restore id/),
    );
    assert.equal((await mustRestore(c, r2.id)).retrievalId, "rb", "nothing changed");
    await assert.rejects(
      c.assignRestores([0], retrievalId("ra")),
      rejectsWith(RangeError, /Invalid restore id: 0/),
    );
    await assert.rejects(
      c.assignRestores([r2.id], "not an id" as RetrievalId),
      rejectsWith(TypeError, /Invalid retrieval id: "not an id"/),
    );
    await assert.rejects(
      c.finishRestore(987_654, { state: "done", note: "x" }, T0),
      rejectsWith(RangeError, /Cannot finish restore 987654.*unknown restore id/),
    );
    await assert.rejects(
      c.finishRestore(r2.id, { state: "pending" as "done", note: "x" }, T0),
      rejectsWith(RangeError, /Invalid outcome of restore \d+: "pending"/),
    );
    await assert.rejects(
      c.finishRestore(-3, { state: "done", note: "x" }, T0),
      rejectsWith(RangeError, /Invalid restore id: -3/),
    );
    assert.equal((await mustRestore(c, r2.id)).state, "pending");
  });

  test("two listeners finishing one restore at once: exactly one wins", async (c) => {
    const [f1] = await archived(c, "arc-s5", ["a.png"]);
    assert.ok(f1);
    const [r] = await c.addRestores([request("once:1", f1)], T0);
    assert.ok(r);
    const outcomes = await Promise.all([
      c.finishRestore(r.id, { state: "done", note: "first" }, T0 + 1),
      c.finishRestore(r.id, { state: "done", note: "second" }, T0 + 2),
      c.finishRestore(r.id, { state: "failed", note: "third" }, T0 + 3),
    ]);
    assert.equal(outcomes.filter((x) => x).length, 1, `outcomes ${outcomes}`);
    const winner = ["first", "second", "third"][outcomes.indexOf(true)];
    assert.equal((await mustRestore(c, r.id)).note, winner);
  });

  test("restores pages by id, filtered by states and retrieval", async (c) => {
    const files = await archived(c, "arc-s6", ["a", "b", "c", "d", "e"]);
    await c.addRetrieval(retrievalRow("rp1", "arc-s6"));
    await c.addRetrieval(retrievalRow("rp2", "arc-s6"));
    const rows = await c.addRestores(files.map((f, i) => request(`page:${i + 1}`, f)), T0);
    const id = (i: number) => one(rows, i - 1).id;
    await c.assignRestores([id(1), id(2), id(4)], retrievalId("rp1"));
    await c.assignRestores([id(3)], retrievalId("rp2"));
    await c.finishRestore(id(2), { state: "done", note: "ok" }, T0 + 1);
    await c.finishRestore(id(5), { state: "failed", note: "bad" }, T0 + 1);
    const page = async (options: Parameters<Catalog["restores"]>[0]) =>
      (await c.restores(options)).map((r) => rows.findIndex((x) => x.id === r.id) + 1);
    assert.deepEqual(await page({ limit: 2 }), [1, 2]);
    assert.deepEqual(await page({ limit: 2, afterId: id(2) }), [3, 4]);
    assert.deepEqual(await page({ limit: 2, afterId: id(4) }), [5]);
    assert.deepEqual(await page({ limit: 2, afterId: id(5) }), []);
    assert.deepEqual(await page({ limit: 0 }), []);
    assert.deepEqual(await page({ limit: 10, states: ["pending"] }), [1, 3, 4]);
    assert.deepEqual(await page({ limit: 10, states: ["done", "failed"] }), [2, 5]);
    assert.deepEqual(await page({ limit: 10, states: ["failed", "failed"] }), [5]);
    assert.deepEqual(await page({ limit: 1, afterId: id(1), states: ["pending"] }), [3]);
    assert.deepEqual(await page({ limit: 10, states: [] }), []);
    assert.deepEqual(await page({ limit: 10, retrievalId: retrievalId("rp1") }), [1, 2, 4]);
    assert.deepEqual(await page({ limit: 10, retrievalId: retrievalId("rp2") }), [3]);
    assert.deepEqual(
      await page({ limit: 10, retrievalId: retrievalId("rp1"), states: ["pending"] }),
      [1, 4],
    );
    assert.deepEqual(
      await page({ limit: 1, afterId: id(1), retrievalId: retrievalId("rp1") }),
      [2],
    );
    assert.deepEqual(await page({ limit: 10, retrievalId: retrievalId("rp-none") }), []);
    await assert.rejects(
      c.restores({ limit: 10, states: ["lost" as "done"] }),
      rejectsWith(RangeError, /Invalid restore state: "lost"/),
    );
    await assert.rejects(
      c.restores({ limit: -1 }),
      rejectsWith(RangeError, /Invalid limit: -1/),
    );
    await assert.rejects(
      c.restores({ limit: 1, afterId: -1 }),
      rejectsWith(RangeError, /Invalid afterId: -1/),
    );
  });

  test("archiveSeqRange and archivesBySeq pick archives by seq without a scan", async (c) => {
    assert.equal(await c.archiveSeqRange(), null);
    assert.deepEqual(await c.archivesBySeq([]), []);
    assert.deepEqual(await c.archivesBySeq([1, 2, 3]), []);
    const ids = ["arc-q1", "arc-q2", "arc-q3", "arc-q4", "arc-q5"];
    for (const [i, id] of ids.entries()) {
      const rows = await c.addDiscovered(SRC, [entry(`${id}/f`)], T0);
      await c.commitArchive(archiveRow(id, { size: 1000 * (i + 1) }), membersOf(rows));
    }
    // A commit repeated after a lost answer, and a refused one, count nothing.
    const [first] = await c.archiveFiles(archiveId("arc-q1"));
    assert.ok(first);
    await c.commitArchive(archiveRow("arc-q1", { size: 1000 }), membersOf([first]));
    await assert.rejects(
      c.commitArchive(archiveRow("arc-q2", { remoteId: remoteArchiveId("other") }), []),
      (e: unknown) => e instanceof PortError && e.code === "ARCHIVE_EXISTS",
    );
    const range = await c.archiveSeqRange();
    assert.ok(range);
    assert.equal(range.count, 5);
    assert.equal(range.bytes, 15_000);
    assert.ok(Number.isSafeInteger(range.min) && range.min >= 1, `min ${range.min}`);
    assert.ok(range.max - range.min + 1 >= 5, `[${range.min}, ${range.max}] holds 5 archives`);
    const status = await c.status();
    assert.equal(status.archives, range.count);
    assert.equal(status.storedBytes, range.bytes);
    const span = Array.from({ length: range.max - range.min + 1 }, (_, i) => range.min + i);
    const all = await c.archivesBySeq(span);
    assert.deepEqual(all.map((a) => a.id), ids, "seqs grow in commit order");
    assert.deepEqual(one(all, 2), await c.archive(archiveId("arc-q3")));
    const ends = await c.archivesBySeq([range.max, range.min, range.min]);
    assert.deepEqual(ends.map((a) => a.id), ["arc-q1", "arc-q5"]);
    assert.deepEqual(await c.archivesBySeq([range.max + 1, range.min - 1, -5]), []);
    await assert.rejects(
      c.archivesBySeq([range.min, 1.5]),
      rejectsWith(RangeError, /Invalid archive seq: 1\.5 is not a whole number/),
    );
    await assert.rejects(
      c.archivesBySeq(Array.from({ length: 1001 }, (_, i) => i)),
      rejectsWith(RangeError, /1001 seqs in one call \(at most 1000\)/),
    );
  });

  test("retrievedBytesSince sums range lengths and whole archives since a time", async (c) => {
    await archived(c, "arc-budget", ["a"]);
    assert.equal(await c.retrievedBytesSince(T0), 0);
    await c.addRetrieval(
      retrievalRow("rb-range", "arc-budget", { range: { start: 1024, end: 2047 } }),
    );
    await c.addRetrieval(
      retrievalRow("rb-whole", "arc-budget", {
        range: null,
        purpose: "audit",
        startedAt: T0 + 2000,
      }),
    );
    await c.addRetrieval(retrievalRow("rb-old", "arc-budget", { startedAt: T0 - 1 }));
    assert.equal(await c.retrievedBytesSince(T0), 1024 + 10_240);
    assert.equal(await c.retrievedBytesSince(T0 + 1001), 10_240);
    assert.equal(await c.retrievedBytesSince(T0 + 2000), 10_240);
    assert.equal(await c.retrievedBytesSince(T0 + 2001), 0);
    assert.equal(await c.retrievedBytesSince(0), 1024 + 10_240 + 2_097_152);
    await assert.rejects(
      c.retrievedBytesSince(1.5),
      rejectsWith(RangeError, /Invalid sinceMs: 1\.5/),
    );
  });

  test("addAudit records every field once; updateAudit writes only the fields given", async (c) => {
    await archived(c, "arc-audit", ["a"]);
    await c.addRetrieval(
      retrievalRow("ra-1", "arc-audit", { range: null, purpose: "audit" }),
    );
    await c.addRetrieval(
      retrievalRow("ra-2", "arc-audit", { range: null, purpose: "audit" }),
    );
    const sent = auditRow(auditId("a-001"), "arc-audit", { note: "3 files, 1 from the catalog" });
    await c.addAudit(sent);
    await c.addAudit({ ...sent, state: "failed", note: "again" });
    assert.deepEqual(await c.audits({ limit: 10 }), [sent]);
    const skipped = auditRow(auditId("a-002"), "arc-audit", {
      retrievalId: null,
      manifestDigest: null,
      state: "skipped",
      note: "over budget",
    });
    await c.addAudit(skipped);
    await c.updateAudit(auditId("a-001"), { state: "failed", findings: 2, updatedAt: T0 + 5000 });
    const failed = { ...sent, state: "failed" as const, findings: 2, updatedAt: T0 + 5000 };
    assert.deepEqual(await c.audits({ limit: 10 }), [failed, skipped]);
    await c.updateAudit(auditId("a-001"), {
      state: "error",
      updatedAt: T0 + 6000,
      note: null,
      findings: null,
      retrievalId: retrievalId("ra-2"),
      manifestDigest: "cd".repeat(32),
    });
    assert.deepEqual(await c.audits({ limit: 1 }), [{
      ...failed,
      state: "error",
      updatedAt: T0 + 6000,
      note: null,
      findings: null,
      retrievalId: retrievalId("ra-2"),
      manifestDigest: "cd".repeat(32),
    }]);
    await assert.rejects(
      c.updateAudit(auditId("a-404"), { state: "verified", updatedAt: T0 }),
      rejectsWith(RangeError, /unknown audit id/),
    );
    await assert.rejects(
      c.updateAudit(auditId("a-001"), {
        state: "verified",
        updatedAt: T0,
        retrievalId: retrievalId("ra-none"),
      }),
      rejectsWith(RangeError, /unknown retrieval ra-none/),
    );
    await assert.rejects(
      c.addAudit(auditRow(auditId("a-003"), "arc-none")),
      rejectsWith(RangeError, /Cannot record audit a-003.*: unknown archive arc-none/),
    );
    await assert.rejects(
      c.addAudit(auditRow(auditId("a-003"), "arc-audit", { retrievalId: retrievalId("ra-none") })),
      rejectsWith(RangeError, /unknown retrieval ra-none/),
    );
    await assert.rejects(
      c.addAudit(auditRow(auditId("a-003"), "arc-audit", { manifestDigest: "AB".repeat(32) })),
      rejectsWith(TypeError, /Invalid manifest digest of audit a-003: .* 64 lower-case hex/),
    );
    await assert.rejects(
      c.addAudit(auditRow(auditId("a-003"), "arc-audit", { state: "lost" as "sent" })),
      rejectsWith(RangeError, /Invalid state of audit a-003: "lost"/),
    );
    await assert.rejects(
      c.addAudit(auditRow(auditId("a-003"), "arc-audit", { findings: -1 })),
      rejectsWith(RangeError, /Invalid findings of audit a-003: -1/),
    );
    await assert.rejects(
      c.addAudit(auditRow("a 3", "arc-audit")),
      rejectsWith(TypeError, /Invalid audit id: "a 3"/),
    );
    await assert.rejects(
      c.updateAudit(auditId("a-001"), { state: "verified", updatedAt: 1.5 }),
      rejectsWith(RangeError, /Invalid updatedAt of audit a-001: 1\.5/),
    );
    assert.equal((await c.audits({ limit: 10 })).length, 2, "the refused calls recorded nothing");
  });

  test("audits page by id both ways, filtered by states", async (c) => {
    await archived(c, "arc-ap", ["a"]);
    const states = ["sent", "verified", "failed", "verified", "skipped"] as const;
    for (const [i, state] of states.entries()) {
      await c.addAudit(
        auditRow(auditId(`a-10${i + 1}`), "arc-ap", {
          retrievalId: null,
          state,
          createdAt: T0 + i,
        }),
      );
    }
    const page = async (options: Parameters<Catalog["audits"]>[0]) =>
      (await c.audits(options)).map((a) => Number(a.id.slice(-1)));
    assert.deepEqual(await page({ limit: 2 }), [1, 2]);
    assert.deepEqual(await page({ limit: 2, afterId: auditId("a-102") }), [3, 4]);
    assert.deepEqual(await page({ limit: 2, afterId: auditId("a-104") }), [5]);
    assert.deepEqual(await page({ limit: 2, newestFirst: true }), [5, 4]);
    assert.deepEqual(await page({ limit: 2, newestFirst: true, afterId: auditId("a-104") }), [
      3,
      2,
    ]);
    assert.deepEqual(await page({ limit: 9, newestFirst: true, afterId: auditId("a-101") }), []);
    assert.deepEqual(await page({ limit: 9, states: ["verified"] }), [2, 4]);
    assert.deepEqual(await page({ limit: 9, states: ["verified", "skipped"] }), [2, 4, 5]);
    assert.deepEqual(
      await page({ limit: 1, newestFirst: true, states: ["verified", "verified"] }),
      [4],
    );
    assert.deepEqual(await page({ limit: 9, states: [] }), []);
    assert.deepEqual(await page({ limit: 0 }), []);
    await assert.rejects(
      c.audits({ limit: 9, states: ["lost" as "sent"] }),
      rejectsWith(RangeError, /Invalid audit state: "lost"/),
    );
    await assert.rejects(c.audits({ limit: -1 }), rejectsWith(RangeError, /Invalid limit: -1/));
    await assert.rejects(
      c.audits({ limit: 1, afterId: "" as AuditId }),
      rejectsWith(TypeError, /Invalid audit id: ""/),
    );
  });

  test("addDrill records a drill once; updateDrill and drills", async (c) => {
    const files = await archived(c, "arc-drill", ["a", "b", "c"]);
    const restores = await c.addRestores(
      files.map((f, i) => ({
        ...request(`drill:${i}`, f, "s3://test-bucket/drill"),
        requestedBy: "drill",
      })),
      T0,
    );
    const rows = restores.map((r, i) =>
      drillRow(drillId(`d-00${i + 1}`), r, { startedAt: T0 + i, dest: "s3://test-bucket/drill" })
    );
    for (const row of rows) await c.addDrill(row);
    await c.addDrill({ ...one(rows, 0), state: "ok" });
    assert.deepEqual(await c.drills({ limit: 10 }), rows);
    await c.updateDrill(drillId("d-002"), {
      state: "ok",
      checkedAt: T0 + 3_600_000,
      note: "byte-identical",
    });
    await c.updateDrill(drillId("d-003"), { state: "failed", checkedAt: T0 + 3_600_000 });
    await c.updateDrill(drillId("d-003"), { state: "alerted", note: "not restored within 24 h" });
    const [d1, d2, d3] = [one(rows, 0), one(rows, 1), one(rows, 2)];
    const after = [
      d1,
      { ...d2, state: "ok" as const, checkedAt: T0 + 3_600_000, note: "byte-identical" },
      {
        ...d3,
        state: "alerted" as const,
        checkedAt: T0 + 3_600_000,
        note: "not restored within 24 h",
      },
    ];
    assert.deepEqual(await c.drills({ limit: 10 }), after);
    await c.updateDrill(drillId("d-002"), { state: "ok", note: null, checkedAt: null });
    assert.deepEqual((await c.drills({ limit: 1, afterId: drillId("d-001") }))[0], {
      ...d2,
      state: "ok",
    });
    const page = async (options: Parameters<Catalog["drills"]>[0]) =>
      (await c.drills(options)).map((d) => d.id);
    assert.deepEqual(await page({ limit: 2, newestFirst: true }), [
      drillId("d-003"),
      drillId("d-002"),
    ]);
    assert.deepEqual(await page({ limit: 2, newestFirst: true, afterId: drillId("d-002") }), [
      drillId("d-001"),
    ]);
    assert.deepEqual(await page({ limit: 9, states: ["pending", "alerted"] }), [
      drillId("d-001"),
      drillId("d-003"),
    ]);
    assert.deepEqual(await page({ limit: 9, states: [] }), []);
    await assert.rejects(
      c.updateDrill(drillId("d-404"), { state: "ok" }),
      rejectsWith(RangeError, /unknown drill id/),
    );
    await assert.rejects(
      c.addDrill({ ...d1, id: drillId("d-004"), restoreId: 999_999 }),
      rejectsWith(RangeError, /Cannot record drill d-004.*: unknown restore 999999/),
    );
    await assert.rejects(
      c.addDrill({ ...d1, id: drillId("d-004"), fileId: d2.fileId }),
      rejectsWith(
        RangeError,
        new RegExp(`restore ${d1.restoreId} is of file fid:${d1.fileId}, not fid:${d2.fileId}`),
      ),
    );
    await assert.rejects(
      c.addDrill({ ...d1, id: drillId("d-004"), state: "lost" as "ok" }),
      rejectsWith(RangeError, /Invalid state of drill d-004: "lost"/),
    );
    await assert.rejects(
      c.addDrill({ ...d1, id: drillId("d-004"), dest: "" }),
      rejectsWith(TypeError, /Invalid destination of drill d-004/),
    );
    await assert.rejects(
      c.drills({ limit: 9, states: ["lost" as "ok"] }),
      rejectsWith(RangeError, /Invalid drill state: "lost"/),
    );
    assert.equal((await c.drills({ limit: 10 })).length, 3, "the refused calls recorded nothing");
  });
}

/**
 * What a catalog migrated from schema version 4 must show of the two
 * restores the migration tests put in it (ids 1 and 2, file 7, retrieval
 * `rt-old`): both as they were, with `overwrite: false`; a repeated key
 * keeps its row and a new one records `overwrite`. Returns the first row.
 */
export async function checkMigratedRestores(catalog: Catalog, nowMs: number): Promise<RestoreRow> {
  const [r1, r2] = await catalog.restores({ limit: 10 });
  assert.deepEqual(r1, {
    id: 1,
    key: "old:1",
    fileId: fileId(7),
    dest: "/tmp/a.jpg",
    state: "pending",
    retrievalId: retrievalId("rt-old"),
    requestedAt: 10,
    finishedAt: null,
    note: null,
    requestedBy: "restore@h",
    overwrite: false,
  });
  assert.deepEqual(r2, {
    id: 2,
    key: "old:2",
    fileId: fileId(7),
    dest: "mogilefs",
    state: "done",
    retrievalId: null,
    requestedAt: 11,
    finishedAt: 12,
    note: "fid 7",
    requestedBy: "drill",
    overwrite: false,
  });
  const added = await catalog.addRestores([
    { key: "old:1", fileId: fileId(7), dest: "/x", requestedBy: "r", overwrite: true },
    { key: "new:1", fileId: fileId(7), dest: "/x", requestedBy: "r", overwrite: true },
  ], nowMs);
  assert.deepEqual(added[0], r1);
  assert.equal(added[1]?.overwrite, true);
  return r1!;
}
