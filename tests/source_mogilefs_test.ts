/**
 * Tests of the MogileFS source: the shared Source conformance suite against
 * the MogileFS test double, then what only MogileFS has: fid cursors,
 * spans, every-domain listings, late uploads found by the look back, the
 * domain check.
 *
 * Run: deno test --allow-read --allow-write --allow-env --allow-run
 *   --allow-net=127.0.0.1,localhost --allow-sys tests/source_mogilefs_test.ts
 */

import assert from "node:assert/strict";
import { MogileFsSource, type MogileFsSourceOptions } from "../adapters/source/mogilefs.ts";
import { ChangedError, PortError, VanishedError } from "../core/errors.ts";
import type { ListPage, SourceEntry } from "../core/ports.ts";
import { type MogileFsSourceUrl, parseSourceUrl } from "../core/source_url.ts";
import { MogileFsDouble, type MogileFsDoubleOptions } from "./doubles/mogilefs.ts";
import { listAll, sourceConformance } from "./source_conformance.ts";
import { readAll } from "./_streams.ts";

const encoder = new TextEncoder();

function urlOf(mogile: MogileFsDouble, domain?: string): MogileFsSourceUrl {
  return parseSourceUrl(mogile.url(domain)) as MogileFsSourceUrl;
}

sourceConformance("MogileFsSource", async () => {
  const mogile = await MogileFsDouble.start();
  try {
    const source = await MogileFsSource.open(urlOf(mogile, "ugc"), { pageSize: 7 });
    return {
      source,
      pageSize: 7,
      put: async (key, bytes) => {
        await mogile.put("ugc", key, bytes);
      },
      remove: (key) => {
        assert.ok(mogile.delete("ugc", key), `nothing to remove at ${key}`);
        return Promise.resolve();
      },
      cleanup: () => mogile.close(),
    };
  } catch (e) {
    await mogile.close();
    throw e;
  }
});

/** A clock the test moves by hand. */
class ManualClock {
  ms = 1_000_000;
  now(): number {
    return this.ms;
  }
}

/** A double and a source on it, both closed afterwards. */
async function withSource(
  options: {
    double?: MogileFsDoubleOptions;
    domain?: string | null;
    source?: MogileFsSourceOptions;
  },
  body: (mogile: MogileFsDouble, source: MogileFsSource) => Promise<void>,
): Promise<void> {
  const mogile = await MogileFsDouble.start(options.double ?? {});
  let source: MogileFsSource | null = null;
  try {
    const domain = options.domain === undefined ? "ugc" : options.domain;
    source = await MogileFsSource.open(
      urlOf(mogile, domain ?? undefined),
      options.source ?? {},
    );
    await body(mogile, source);
  } finally {
    await source?.close();
    await mogile.close();
  }
}

async function pages(source: MogileFsSource, after: string | null = null): Promise<ListPage[]> {
  const out: ListPage[] = [];
  for await (const page of source.list({ after })) out.push(page);
  return out;
}

function keys(list: readonly ListPage[]): string[] {
  return list.flatMap((p) => p.entries.map((e) => e.key));
}

Deno.test("ids name the domain, or * for every domain; poll and rescan intervals", async () => {
  await withSource({}, async (mogile, source) => {
    assert.equal(source.id, "mogilefs:ugc");
    assert.equal(source.pollMs, 1000);
    assert.equal(source.rescanMs, 3_600_000);
    assert.equal(source.location, `mogilefs://${mogile.trackers[0]}/ugc`);
    const every = await MogileFsSource.open(urlOf(mogile));
    try {
      assert.equal(every.id, "mogilefs:*");
      assert.equal(every.domain, null);
    } finally {
      await every.close();
    }
  });
});

Deno.test("entries carry the fid as version and sourceFid, domain, class and length", async () => {
  await withSource(
    { double: { domains: { ugc: { thumbs: { mindevcount: 1 } } } } },
    async (mogile, source) => {
      const fid = await mogile.put("ugc", "t/1.png", encoder.encode("png!"), { class: "thumbs" });
      const other = await mogile.put("ugc", "plain", encoder.encode("x"));
      const listing = await listAll(source);
      const entry = listing.entries.get("t/1.png")!;
      assert.deepEqual({ ...entry, mtimeMs: 0 }, {
        key: "t/1.png",
        version: String(fid),
        length: 4,
        mtimeMs: 0,
        domain: "ugc",
        storageClass: "thumbs",
        sourceFid: fid,
      });
      assert.equal(listing.entries.get("plain")!.storageClass, "default");
      assert.equal(listing.entries.get("plain")!.version, String(other));
    },
  );
});

Deno.test("cursors: an incremental listing finds only what came after the cursor", async () => {
  const clock = new ManualClock();
  await withSource({ source: { clock, lookbackMs: 30_000 } }, async (mogile, source) => {
    for (const k of ["a", "b", "c"]) await mogile.put("ugc", k, encoder.encode(k));
    const full = await pages(source);
    const cursor = full.at(-1)!.cursor!;
    assert.equal(cursor, String(mogile.files().at(-1)!.fid));
    // The first incremental listing looks back below the cursor: old files again.
    assert.deepEqual(keys(await pages(source, cursor)).sort(), ["a", "b", "c"]);
    // Within lookbackMs: only what is new.
    assert.deepEqual(await pages(source, cursor), []);
    await mogile.put("ugc", "d", encoder.encode("d"));
    await mogile.put("ugc", "e", encoder.encode("e"));
    const next = await pages(source, cursor);
    assert.deepEqual(keys(next), ["d", "e"]);
    assert.equal(next.at(-1)!.cursor, String(mogile.files().at(-1)!.fid));
    // A replaced key is a new fid above the cursor.
    const after = next.at(-1)!.cursor!;
    const fid = await mogile.put("ugc", "a", encoder.encode("a2"));
    const replaced = await pages(source, after);
    assert.deepEqual(replaced.flatMap((p) => p.entries.map((e) => [e.key, e.version])), [
      ["a", String(fid)],
    ]);
  });
});

Deno.test("spans: each page covers (from, its highest fid], pages abut, cursor grows", async () => {
  await withSource({ source: { pageSize: 5, lookbackFids: 0 } }, async (mogile, source) => {
    for (let i = 0; i < 12; i++) await mogile.put("ugc", `f${i}`, encoder.encode(`${i}`));
    const fids = mogile.files().map((f) => f.fid);
    const list = await pages(source);
    assert.deepEqual(list.map((p) => p.span), [
      { from: 0, to: fids[4] },
      { from: fids[4], to: fids[9] },
      { from: fids[9], to: fids[11] },
    ]);
    assert.deepEqual(list.map((p) => p.cursor), [fids[4], fids[9], fids[11]].map(String));
    assert.deepEqual(list.map((p) => p.entries.length), [5, 5, 2]);
    // A deletion shows as a fid missing from its span.
    mogile.delete("ugc", "f6");
    const again = await pages(source);
    const second = again[1]!;
    assert.deepEqual(second.span, { from: fids[4], to: fids[10] });
    assert.equal(second.entries.some((e) => e.sourceFid === fids[6]), false);
    // An empty answer gives no page (and so no span).
    assert.deepEqual(await pages(source, String(fids[11]! + 100)), []);
  });
});

Deno.test("files of other domains are left out but advance the cursor and the span", async () => {
  await withSource(
    { double: { domains: { ugc: {}, other: {} } }, source: { pageSize: 10 } },
    async (mogile, source) => {
      await mogile.put("ugc", "mine", encoder.encode("1"));
      const last = await mogile.put("other", "theirs", encoder.encode("2"));
      const list = await pages(source);
      assert.equal(list.length, 1);
      assert.deepEqual(keys(list), ["mine"]);
      assert.equal(list[0]!.cursor, String(last));
      assert.deepEqual(list[0]!.span, { from: 0, to: last });
    },
  );
});

Deno.test("every-domain mode lists all domains; one key in two domains is two files", async () => {
  await withSource(
    { double: { domains: { ugc: {}, other: {} } }, domain: null },
    async (mogile, source) => {
      const a = await mogile.put("ugc", "same/key", encoder.encode("in ugc"));
      const b = await mogile.put("other", "same/key", encoder.encode("in other, longer"));
      const entries: SourceEntry[] = (await pages(source)).flatMap((p) => [...p.entries]);
      assert.deepEqual(
        entries.map((e) => [e.domain, e.key, e.sourceFid]),
        [["ugc", "same/key", a], ["other", "same/key", b]],
      );
      for (const e of entries) {
        const got = new TextDecoder().decode(await readAll(await source.open(e)));
        assert.equal(got, e.domain === "ugc" ? "in ugc" : "in other, longer");
      }
      await assert.rejects(
        source.open({ key: "same/key", version: String(a), length: 6, mtimeMs: 0 }),
        (e: unknown) => e instanceof TypeError && e.message.includes("names no domain"),
      );
    },
  );
});

Deno.test("a late upload below the cursor is found by the look back", async () => {
  const clock = new ManualClock();
  await withSource(
    { source: { clock, lookbackMs: 30_000, lookbackFids: 100 } },
    async (mogile, source) => {
      await mogile.put("ugc", "early", encoder.encode("e"));
      const slow = await mogile.openUpload("ugc", "slow", encoder.encode("slow bytes"));
      for (let i = 0; i < 3; i++) await mogile.put("ugc", `fast${i}`, encoder.encode(`${i}`));
      const first = await pages(source);
      const cursor = first.at(-1)!.cursor!;
      assert.ok(Number(cursor) > slow.fid, "the cursor passed the open fid");
      assert.equal(keys(first).includes("slow"), false);
      // One incremental listing (it looks back, finding nothing new), then the upload ends.
      assert.equal(keys(await pages(source, cursor)).includes("slow"), false);
      await slow.finish();
      // Within lookbackMs the listing starts at the cursor: the late file is not seen...
      assert.deepEqual(await pages(source, cursor), []);
      // ...once lookbackMs passed, it starts lookbackFids below and finds it.
      clock.ms += 30_000;
      const late = await pages(source, cursor);
      const found = late.flatMap((p) => p.entries).find((e) => e.key === "slow");
      assert.equal(found?.sourceFid, slow.fid);
      assert.equal(late.at(-1)!.cursor, cursor, "the cursor never goes back");
      assert.ok(late[0]!.span!.from < slow.fid);
      assert.equal(
        new TextDecoder().decode(await readAll(await source.open(found!))),
        "slow bytes",
      );
    },
  );
});

Deno.test("a look back that failed is made again by the next listing", async () => {
  const clock = new ManualClock();
  await withSource({ source: { clock, lookbackFids: 100 } }, async (mogile, source) => {
    const slow = await mogile.openUpload("ugc", "slow", encoder.encode("s"));
    await mogile.put("ugc", "fast", encoder.encode("f"));
    const cursor = (await pages(source)).at(-1)!.cursor!;
    await slow.finish();
    mogile.inject({ kind: "err", code: "db" }, { command: "list_fids" });
    await assert.rejects(pages(source, cursor), (e: unknown) => {
      assert.ok(e instanceof PortError && e.code === "db" && e.retryable, `${e}`);
      return true;
    });
    assert.deepEqual(keys(await pages(source, cursor)), ["slow", "fast"]);
    assert.deepEqual(await pages(source, cursor), []);
  });
});

Deno.test("open maps a deleted key to VanishedError and a rewritten one to ChangedError", async () => {
  await withSource({}, async (mogile, source) => {
    const old = await mogile.put("ugc", "k", encoder.encode("one"));
    const entry = (await listAll(source)).entries.get("k")!;
    const newer = await mogile.put("ugc", "k", encoder.encode("two"));
    await assert.rejects(source.open(entry), (e: unknown) => {
      assert.ok(e instanceof ChangedError, `${e}`);
      assert.ok(e.message.includes(`fid ${newer} now, not fid ${old}`), e.message);
      return true;
    });
    mogile.delete("ugc", "k");
    await assert.rejects(source.open(entry), (e: unknown) => {
      assert.ok(e instanceof VanishedError, `${e}`);
      assert.ok(e.message.includes(`ugc/"k"`), e.message);
      return true;
    });
  });
});

Deno.test("open of a damaged replica reads the good one; all damaged is LengthMismatch", async () => {
  await withSource({}, async (mogile, source) => {
    const bytes = new Uint8Array(4000).map((_, i) => i & 0xff);
    await mogile.put("ugc", "k", bytes);
    const entry = (await listAll(source)).entries.get("k")!;
    mogile.damage("ugc", "k");
    assert.deepEqual(await readAll(await source.open(entry)), bytes);
    for (const devid of mogile.file("ugc", "k")!.devids) {
      mogile.damage("ugc", "k", { devid, length: 10 });
    }
    await assert.rejects(source.open(entry), (e: unknown) => {
      assert.ok(e instanceof PortError && e.code === "LengthMismatch", `${e}`);
      assert.equal(e.retryable, true);
      return true;
    });
  });
});

Deno.test("open of an unknown domain is refused as unreg_domain naming it", async () => {
  const mogile = await MogileFsDouble.start({ domains: { ugc: {}, test: {} } });
  try {
    await assert.rejects(MogileFsSource.open(urlOf(mogile, "ugx")), (e: unknown) => {
      assert.ok(e instanceof PortError, `${e}`);
      assert.equal(e.code, "unreg_domain");
      assert.equal(e.retryable, false);
      assert.match(e.message, /the domain "ugx" does not exist \(the trackers know test, ugc\)/);
      return true;
    });
  } finally {
    await mogile.close();
  }
});

Deno.test("trackers down at open: the domain is checked before the first listing", async () => {
  const mogile = await MogileFsDouble.start();
  try {
    await mogile.stopTracker(0);
    const source = await MogileFsSource.open(urlOf(mogile, "nosuch"));
    try {
      await assert.rejects(pages(source), (e: unknown) => {
        assert.ok(e instanceof PortError && e.code === "TrackerUnavailable", `${e}`);
        return true;
      });
      await mogile.startTracker(0);
      await assert.rejects(pages(source), (e: unknown) => {
        assert.ok(e instanceof PortError && e.code === "unreg_domain", `${e}`);
        return true;
      });
    } finally {
      await source.close();
    }
  } finally {
    await mogile.close();
  }
});

Deno.test("a cursor that is not a fid is a SyntaxError; bad options are RangeErrors", async () => {
  await withSource({}, async (mogile, source) => {
    await assert.rejects(pages(source, "abc"), (e: unknown) => {
      assert.ok(e instanceof SyntaxError, `${e}`);
      assert.match(e.message, /Invalid MogileFS cursor "abc"/);
      return true;
    });
    await assert.rejects(MogileFsSource.open(urlOf(mogile, "ugc"), { pageSize: 501 }), RangeError);
    await assert.rejects(
      MogileFsSource.open(urlOf(mogile, "ugc"), { lookbackFids: -1 }),
      RangeError,
    );
  });
});

Deno.test("a listing survives a tracker failing over mid-way", async () => {
  await withSource(
    { double: { trackers: 2 }, source: { pageSize: 4 } },
    async (mogile, source) => {
      for (let i = 0; i < 10; i++) await mogile.put("ugc", `k${i}`, encoder.encode(`${i}`));
      mogile.inject({ kind: "drop" }, { command: "list_fids" });
      assert.equal(keys(await pages(source)).length, 10);
    },
  );
});
