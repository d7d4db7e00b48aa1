/**
 * The conformance suite every {@linkcode Source} must pass. It drives the
 * source only through the `Source` interface and the fixture's helpers, so
 * that the directory, MogileFS and S3 sources are held to the same rules.
 *
 * @example
 * ```ts
 * sourceConformance("DirectorySource", async () => {
 *   const root = await Deno.makeTempDir();
 *   const source = await DirectorySource.open(root, { batchSize: 7 });
 *   return {
 *     source,
 *     pageSize: 7,
 *     put: (key, bytes) => Deno.writeFile(`${root}/${key}`, bytes),
 *     remove: (key) => Deno.remove(`${root}/${key}`),
 *     cleanup: () => Deno.remove(root, { recursive: true }),
 *   };
 * });
 * ```
 * @module
 */

import assert from "node:assert/strict";
import { ChangedError, VanishedError } from "../core/errors.ts";
import type { ListPage, SkippedEntry, Source, SourceEntry } from "../core/ports.ts";
import { assertBytes, fixtureTests } from "./_helpers.ts";
import { readAll } from "./_streams.ts";

/** A fresh, empty source and the means to change what it holds. */
export interface SourceFixture {
  /** The source under test; it must hold nothing at first. */
  readonly source: Source;
  /** Creates or replaces the file at `key` (parents created as needed). */
  put(key: string, bytes: Uint8Array): Promise<void>;
  /** Deletes the file at `key`. */
  remove(key: string): Promise<void>;
  /** Removes whatever the fixture made (called after `source.close()`). */
  cleanup(): Promise<void>;
  /**
   * The most entries the source was set up to put in one page; the paging
   * test puts more than twice as many files. Default 1,000: set up small
   * pages to keep that test quick.
   */
  readonly pageSize?: number;
}

/** What one full listing returned. */
interface Listing {
  readonly pages: readonly ListPage[];
  readonly entries: ReadonlyMap<string, SourceEntry>;
  readonly skipped: readonly SkippedEntry[];
}

const encoder = new TextEncoder();

/** Files of every shape the suite puts: key and bytes. */
function sampleFiles(): Map<string, Uint8Array> {
  const big = new Uint8Array(600 * 1024 + 1);
  for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >> 8)) & 0xff;
  return new Map([
    ["a.txt", encoder.encode("hello")],
    ["empty", new Uint8Array(0)],
    ["dir/b.bin", new Uint8Array(1000).map((_, i) => i & 0xff)],
    ["ünïcødé/日本語 ファイル.txt", encoder.encode("unicode ✓")],
    ["emoji/🎉 party.txt", encoder.encode("🎉")],
    ["with space/x y (1).txt", encoder.encode("spaces")],
    ["d1/d2/d3/d4/d5/d6/d7/d8/d9/deep.txt", encoder.encode("deep")],
    ["big/multi-chunk.bin", big],
  ]);
}

/**
 * Registers the conformance tests for one Source implementation.
 *
 * @param name shown in front of each test's name
 * @param setup makes a fresh, empty source per test
 */
export function sourceConformance(name: string, setup: () => Promise<SourceFixture>): void {
  const test = fixtureTests(name, setup, {
    teardown: async (fixture) => {
      await fixture.source.close();
      await fixture.cleanup();
    },
  });

  test("has a non-empty id", ({ source }) => {
    assert.equal(typeof source.id, "string");
    assert.ok(source.id.length > 0, "the id is empty");
    return Promise.resolve();
  });

  test("an empty source lists no entries", async ({ source }) => {
    const listing = await listAll(source);
    assert.deepEqual([...listing.entries.keys()], []);
    assert.deepEqual(listing.skipped, []);
  });

  test("list finds every file put, with its length, once", async (fixture) => {
    const files = sampleFiles();
    for (const [key, bytes] of files) await fixture.put(key, bytes);
    const listing = await listAll(fixture.source);
    assert.deepEqual([...listing.entries.keys()].sort(), [...files.keys()].sort());
    for (const [key, bytes] of files) {
      const entry = listing.entries.get(key)!;
      assert.equal(entry.length, bytes.length, `length of ${key}`);
      assert.equal(typeof entry.version, "string");
      assert.ok(entry.version.length > 0, `version of ${key} is empty`);
      assert.ok(Number.isFinite(entry.mtimeMs), `mtimeMs of ${key}: ${entry.mtimeMs}`);
    }
    assert.deepEqual(listing.skipped, []);
  });

  test("listing twice without changes gives the same versions", async (fixture) => {
    for (const [key, bytes] of sampleFiles()) await fixture.put(key, bytes);
    const first = await listAll(fixture.source);
    const second = await listAll(fixture.source);
    assert.deepEqual(versions(second), versions(first));
  });

  test("open reads the exact bytes of every file", async (fixture) => {
    const files = sampleFiles();
    for (const [key, bytes] of files) await fixture.put(key, bytes);
    const listing = await listAll(fixture.source);
    for (const [key, bytes] of files) {
      const got = await readAll(await fixture.source.open(listing.entries.get(key)!));
      assertBytes(got, bytes, `the bytes read of ${key}`);
    }
  });

  test("a stream cancelled part-way leaves the file readable again", async (fixture) => {
    const key = "big/multi-chunk.bin";
    const bytes = sampleFiles().get(key)!;
    await fixture.put(key, bytes);
    const entry = (await listAll(fixture.source)).entries.get(key)!;
    const reader = (await fixture.source.open(entry)).getReader();
    const first = await reader.read();
    assert.equal(first.done, false);
    await reader.cancel();
    assertBytes(await readAll(await fixture.source.open(entry)), bytes, "a second read");
  });

  test("list pages hold at most a page of entries and together list all", async (fixture) => {
    const pageSize = fixture.pageSize ?? 1000;
    const count = pageSize * 2 + 1;
    const keys: string[] = [];
    for (let i = 0; i < count; i++) {
      const key = `paged/${i % 3}/file-${i}.txt`;
      keys.push(key);
      await fixture.put(key, encoder.encode(String(i)));
    }
    const seen: string[] = [];
    let pages = 0;
    for await (const page of fixture.source.list()) {
      pages++;
      assert.ok(
        page.entries.length <= pageSize,
        `a page holds ${page.entries.length} entries, more than ${pageSize}`,
      );
      for (const entry of page.entries) seen.push(entry.key);
    }
    assert.ok(pages >= 3, `${count} entries came in ${pages} pages of at most ${pageSize}`);
    assert.deepEqual(seen.sort(), keys.sort());
  });

  test("open after remove rejects with VanishedError naming the key", async (fixture) => {
    const key = "gone/soon.txt";
    await fixture.put(key, encoder.encode("here today"));
    const entry = (await listAll(fixture.source)).entries.get(key)!;
    await fixture.remove(key);
    await assert.rejects(fixture.source.open(entry), (e: unknown) => {
      assert.ok(e instanceof VanishedError, `expected VanishedError, got ${e}`);
      assert.ok(e.message.includes(key), `the message does not name the key: ${e.message}`);
      return true;
    });
    const listing = await listAll(fixture.source);
    assert.equal(listing.entries.has(key), false, "a removed file is still listed");
  });

  test("replaced content is a new version; the old one no longer opens", async (fixture) => {
    const key = "replaced.txt";
    await fixture.put(key, encoder.encode("first"));
    const old = (await listAll(fixture.source)).entries.get(key)!;
    const newer = encoder.encode("second, and longer");
    await fixture.put(key, newer);
    const current = (await listAll(fixture.source)).entries.get(key)!;
    assert.notEqual(current.version, old.version);
    assert.equal(current.length, newer.length);
    await assert.rejects(fixture.source.open(old), (e: unknown) => {
      assert.ok(
        e instanceof ChangedError || e instanceof VanishedError,
        `expected ChangedError or VanishedError, got ${e}`,
      );
      assert.ok(e.message.includes(key), `the message does not name the key: ${e.message}`);
      return true;
    });
    assertBytes(await readAll(await fixture.source.open(current)), newer, "the new version");
  });

  test("open with an aborted signal rejects with the signal's reason", async (fixture) => {
    await fixture.put("x.txt", encoder.encode("x"));
    const entry = (await listAll(fixture.source)).entries.get("x.txt")!;
    const controller = new AbortController();
    const reason = new Error("stop now");
    controller.abort(reason);
    await assert.rejects(fixture.source.open(entry, { signal: controller.signal }), (e) => {
      assert.equal(e, reason);
      return true;
    });
  });

  test("close is idempotent", async ({ source }) => {
    await source.close();
    await source.close();
  });
}

/** Lists everything, checking that no key comes twice. */
export async function listAll(source: Source): Promise<Listing> {
  const pages: ListPage[] = [];
  const entries = new Map<string, SourceEntry>();
  const skipped: SkippedEntry[] = [];
  for await (const page of source.list()) {
    pages.push(page);
    for (const entry of page.entries) {
      assert.ok(!entries.has(entry.key), `the key ${JSON.stringify(entry.key)} is listed twice`);
      entries.set(entry.key, entry);
    }
    skipped.push(...page.skipped);
  }
  return { pages, entries, skipped };
}

/** The entry a full listing gives for `key`; fails the test when it is not listed. */
export async function entryOf(source: Source, key: string): Promise<SourceEntry> {
  const entry = (await listAll(source)).entries.get(key);
  assert.ok(entry !== undefined, `${key} is not listed`);
  return entry;
}

function versions(listing: Listing): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [key, entry] of listing.entries) out[key] = entry.version;
  return out;
}
