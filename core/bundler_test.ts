import assert from "node:assert/strict";
import { Bundler } from "./bundler.ts";

Deno.test("bundler closes when the next item would pass the target", () => {
  const b = new Bundler<string>({ targetSize: 100, maxAgeMs: 1000 });
  assert.deepEqual(b.add("a", 60, 0), []);
  const closed = b.add("b", 60, 1);
  assert.equal(closed.length, 1);
  assert.deepEqual(closed[0]?.items, ["a"]);
  assert.equal(closed[0]?.reason, "size");
  assert.equal(b.count, 1);
  assert.equal(b.deadline(), 1001, "the new bundle's age counts from its first item");
});

Deno.test("bundler closes at exactly the target size", () => {
  const b = new Bundler<string>({ targetSize: 100, maxAgeMs: 1000 });
  b.add("a", 40, 0);
  const closed = b.add("b", 60, 0);
  assert.deepEqual(closed.map((c) => c.items), [["a", "b"]]);
  assert.equal(closed[0]?.size, 100);
  assert.equal(b.count, 0);
  assert.equal(b.deadline(), null);
});

Deno.test("bundler gives a file at least the target size its own bundle", () => {
  const b = new Bundler<string>({ targetSize: 100, maxAgeMs: 1000 });
  b.add("small", 10, 0);
  const closed = b.add("big", 250, 5);
  assert.deepEqual(closed.map((c) => [c.items, c.reason]), [[["big"], "large"]]);
  assert.equal(b.count, 1, "the open bundle keeps its small file");
  assert.deepEqual(b.add("exact", 100, 6).map((c) => c.items), [["exact"]]);
});

Deno.test("bundler closes by age only once the oldest item waited max age", () => {
  const b = new Bundler<number>({ targetSize: 1000, maxAgeMs: 30 });
  b.add(1, 1, 100);
  b.add(2, 1, 120);
  assert.equal(b.due(129), null);
  const closed = b.due(130);
  assert.deepEqual(closed?.items, [1, 2]);
  assert.equal(closed?.reason, "age");
  assert.equal(b.due(1000), null, "nothing open, nothing due");
});

Deno.test("bundler flush closes whatever is open", () => {
  const b = new Bundler<number>({ targetSize: 1000, maxAgeMs: 30 });
  assert.equal(b.flush(), null);
  b.add(1, 5, 0);
  assert.deepEqual(b.flush()?.items, [1]);
  assert.equal(b.flush(), null);
});

Deno.test("bundler rejects a nonsensical policy with the value named", () => {
  assert.throws(() => new Bundler({ targetSize: 0, maxAgeMs: 1 }), {
    name: "RangeError",
    message: "Invalid target size: 0 bytes",
  });
  assert.throws(() => new Bundler({ targetSize: 1, maxAgeMs: -1 }), {
    name: "RangeError",
    message: "Invalid max age: -1 ms",
  });
});
