import assert from "node:assert/strict";
import {
  estimateRetrievalCost,
  estimateStorageCost,
  type PricedStore,
  pricedStore,
  PRICES,
  type RetrievalCost,
} from "./prices.ts";
import type { Tier } from "./ports.ts";

const GB = 2 ** 30;

function near(actual: number | null, expected: number, what: string): void {
  assert.ok(actual !== null, `${what}: null`);
  assert.ok(Math.abs(actual - expected) < 1e-9, `${what}: ${actual}, expected ${expected}`);
}

Deno.test("the table says when it was gathered and to verify it", () => {
  assert.equal(PRICES.asOf, "2026-06");
  assert.equal(PRICES.region, "us-east-1");
  assert.match(PRICES.caution, /[Vv]erify before relying/);
  assert.equal(PRICES.bytesPerGb, 1024 ** 3, "AWS bills a GB as 2^30 bytes");
});

Deno.test("retrieval cost of every priced store and tier: per GB plus per request", () => {
  // [store, tier, $/GB, $ per 1,000 requests]: PROTOCOLS.md section 4 and the table's sources.
  const rows: [PricedStore, Tier, number, number][] = [
    ["glacier", "Expedited", 0.03, 10],
    ["glacier", "Standard", 0.01, 0.05],
    ["glacier", "Bulk", 0.0025, 0.025],
    ["s3:GLACIER", "Expedited", 0.03, 10],
    ["s3:GLACIER", "Standard", 0.01, 0.05],
    ["s3:GLACIER", "Bulk", 0, 0],
    ["s3:DEEP_ARCHIVE", "Standard", 0.02, 0.10],
    ["s3:DEEP_ARCHIVE", "Bulk", 0.0025, 0.025],
    ["file", "Expedited", 0, 0],
    ["file", "Standard", 0, 0],
    ["file", "Bulk", 0, 0],
  ];
  for (const [store, tier, perGb, per1000] of rows) {
    const what = `${store} ${tier}`;
    const c = estimateRetrievalCost({ store, tier, bytes: 250 * GB, requests: 4000 });
    near(c.perGb, 250 * perGb, `${what} per GB`);
    near(c.perRequest, 4 * per1000, `${what} per request`);
    near(c.dollars, 250 * perGb + 4 * per1000, `${what} total`);
    assert.equal(c.complete, true, what);
    assert.equal(c.gb, 250, what);
    assert.ok(c.source.length > 0, what);
  }
});

Deno.test("retrieval cost matches the worked examples", () => {
  // Glacier FAQ: 500 archives of 1 GB, Standard: 500 x $0.01 + 500 x $0.05/1,000 = $5.025.
  near(
    estimateRetrievalCost({ store: "glacier", tier: "Standard", bytes: 500 * GB, requests: 500 })
      .dollars,
    5.025,
    "Glacier FAQ example",
  );
  // AWS re:Post: 15,000,000 objects, 100 TB (102,400 GB) from Flexible Retrieval, Standard: $1,774.
  const repost = estimateRetrievalCost({
    store: "s3:GLACIER",
    tier: "Standard",
    bytes: 100 * 1024 ** 4,
    requests: 15_000_000,
  });
  near(repost.perRequest, 750, "re:Post requests");
  near(repost.perGb, 1024, "re:Post per GB");
  near(repost.dollars, 1774, "re:Post total");
  // One 1 MiB ranged Glacier retrieval, Expedited: the request dominates.
  const one = estimateRetrievalCost({
    store: "glacier",
    tier: "Expedited",
    bytes: 2 ** 20,
    requests: 1,
  });
  near(one.dollars, 0.03 / 1024 + 0.01, "1 MiB Expedited");
});

Deno.test("GLACIER_IR reads cost $0.03/GB; its request charge is unknown and said so", () => {
  for (const tier of ["Expedited", "Standard", "Bulk"] as const) {
    const c: RetrievalCost = estimateRetrievalCost({
      store: "s3:GLACIER_IR",
      tier,
      bytes: 10 * GB,
      requests: 3,
    });
    near(c.perGb, 0.3, tier);
    assert.equal(c.perRequest, null);
    assert.equal(c.complete, false);
    near(c.dollars, 0.3, tier);
    assert.match(c.source, /third-party/);
  }
  const none = estimateRetrievalCost({
    store: "s3:GLACIER_IR",
    tier: "Standard",
    bytes: GB,
    requests: 0,
  });
  assert.equal(none.complete, true, "no requests, nothing unknown");
});

Deno.test("Deep Archive has no Expedited tier", () => {
  assert.throws(
    () =>
      estimateRetrievalCost({
        store: "s3:DEEP_ARCHIVE",
        tier: "Expedited",
        bytes: GB,
        requests: 1,
      }),
    (e: unknown) =>
      e instanceof RangeError &&
      e.message ===
        "Cannot estimate the retrieval cost: S3 Glacier Deep Archive has no Expedited tier: only Standard (within 12 h) and Bulk (within 48 h) exist",
  );
});

Deno.test("retrieval estimates refuse what they cannot price", () => {
  const ok = { store: "glacier" as const, tier: "Standard" as const, bytes: GB, requests: 1 };
  const cases: [string, Parameters<typeof estimateRetrievalCost>[0], typeof Error, string][] = [
    [
      "unknown store",
      { ...ok, store: "s3:STANDARD" as PricedStore },
      RangeError,
      'Cannot estimate the retrieval cost: unknown store "s3:STANDARD" (glacier, s3:GLACIER, s3:DEEP_ARCHIVE, s3:GLACIER_IR, file)',
    ],
    [
      "unknown tier",
      { ...ok, tier: "Slow" as Tier },
      RangeError,
      'Cannot estimate the retrieval cost: unknown tier "Slow" (Expedited, Standard or Bulk)',
    ],
    [
      "negative bytes",
      { ...ok, bytes: -1 },
      RangeError,
      "Cannot estimate the retrieval cost: bytes is -1, not a whole number >= 0",
    ],
    [
      "fractional requests",
      { ...ok, requests: 1.5 },
      RangeError,
      "Cannot estimate the retrieval cost: requests is 1.5, not a whole number >= 0",
    ],
    [
      "bytes not a number",
      { ...ok, bytes: "5" as unknown as number },
      TypeError,
      "Cannot estimate the retrieval cost: bytes is not a number",
    ],
  ];
  for (const [what, input, cls, message] of cases) {
    assert.throws(() => estimateRetrievalCost(input), (e: unknown) => {
      assert.ok(e instanceof cls, `${what}: ${e}`);
      assert.equal((e as Error).message, message, what);
      return true;
    });
  }
});

Deno.test("storage cost of every priced class", () => {
  const rows: [PricedStore, number][] = [
    ["glacier", 0.004],
    ["s3:GLACIER", 0.0036],
    ["s3:DEEP_ARCHIVE", 0.00099],
    ["s3:GLACIER_IR", 0.004],
    ["file", 0],
  ];
  for (const [cls, perGbMonth] of rows) {
    const c = estimateStorageCost({ class: cls, bytes: 1024 * GB, months: 12 });
    near(c.storage, 1024 * perGbMonth * 12, cls);
    near(c.dollars, c.storage, `${cls}: no objects, no overhead`);
    assert.equal(c.billedMonths, 12);
    assert.equal(c.gb, 1024);
  }
});

Deno.test("storage is billed for at least the minimum duration", () => {
  const cases: [PricedStore, number][] = [
    ["glacier", 3],
    ["s3:GLACIER", 3],
    ["s3:GLACIER_IR", 3],
    ["s3:DEEP_ARCHIVE", 6],
    ["file", 0],
  ];
  for (const [cls, minimum] of cases) {
    const c = estimateStorageCost({ class: cls, bytes: 100 * GB, months: 0 });
    assert.equal(c.billedMonths, minimum, cls);
    near(c.storage, 100 * PRICES.stores[cls].storagePerGbMonth * minimum, cls);
  }
  assert.equal(
    estimateStorageCost({ class: "s3:GLACIER", bytes: GB, months: 4.5 }).billedMonths,
    4.5,
  );
});

Deno.test("S3 archive classes bill 40 KB per object: 32 KB at their rate, 8 KB at Standard", () => {
  const objects = 1_000_000;
  const c = estimateStorageCost({
    class: "s3:GLACIER",
    bytes: 25 * objects * 2 ** 20,
    months: 12,
    objects,
  });
  const perMonth = objects * (32 * 1024 * 0.0036 + 8 * 1024 * 0.023) / GB;
  near(c.overhead, 12 * perMonth, "overhead");
  near(c.dollars, c.storage + c.overhead, "total");
  const vault = estimateStorageCost({ class: "glacier", bytes: GB, months: 12, objects });
  assert.equal(vault.overhead, 0, "a vault has no S3 object overhead");
});

Deno.test("storage estimates refuse what they cannot price", () => {
  assert.throws(
    () => estimateStorageCost({ class: "tape" as PricedStore, bytes: 1, months: 1 }),
    (e: unknown) =>
      e instanceof RangeError &&
      e.message.startsWith('Cannot estimate the storage cost: unknown store "tape"'),
  );
  assert.throws(
    () => estimateStorageCost({ class: "glacier", bytes: 1, months: -1 }),
    (e: unknown) =>
      e instanceof RangeError &&
      e.message === "Cannot estimate the storage cost: months is -1, not a number >= 0",
  );
  assert.throws(
    () => estimateStorageCost({ class: "glacier", bytes: 1, months: 1, objects: -3 }),
    (e: unknown) =>
      e instanceof RangeError &&
      e.message === "Cannot estimate the storage cost: objects is -3, not a whole number >= 0",
  );
});

Deno.test("the legacy Glacier data reproduces PROTOCOLS.md's $450 example", () => {
  const l = PRICES.glacierLegacy;
  // 250 GB requested at once, spread over 4 hours = 62.5 GB/h; nothing free at that peak.
  const peakGbPerHour = 250 / l.jobHours;
  near(peakGbPerHour * l.billedHours * l.perPeakGbHour, 450, "legacy peak fee");
  assert.deepEqual(l.storagePerGbMonth.map((s) => s.price), [0.01, 0.007, 0.004]);
});

Deno.test("pricedStore names the priced store of a store location", () => {
  assert.equal(pricedStore("glacier://us-east-1/ugc"), "glacier");
  assert.equal(pricedStore("file:///srv/vault"), "file");
  assert.equal(pricedStore("s3://b/p?storage-class=DEEP_ARCHIVE"), "s3:DEEP_ARCHIVE");
  assert.equal(pricedStore("s3://b?storage-class=GLACIER"), "s3:GLACIER");
  assert.equal(pricedStore("s3://b/p?storage-class=STANDARD"), null);
  assert.equal(pricedStore("ftp://x"), null);
});
