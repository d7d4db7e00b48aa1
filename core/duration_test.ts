import assert from "node:assert/strict";
import { formatDuration, parseDuration } from "./duration.ts";

Deno.test("parseDuration reads each unit", () => {
  assert.equal(parseDuration("250ms"), 250);
  assert.equal(parseDuration("30s"), 30_000);
  assert.equal(parseDuration("5m"), 300_000);
  assert.equal(parseDuration("24h"), 86_400_000);
  assert.equal(parseDuration("7d"), 604_800_000);
});

Deno.test("parseDuration reads zero, plain seconds, fractions and compounds", () => {
  assert.equal(parseDuration("0"), 0);
  assert.equal(parseDuration("0s"), 0);
  assert.equal(parseDuration("90"), 90_000);
  assert.equal(parseDuration("1.5"), 1_500);
  assert.equal(parseDuration("1.5h"), 5_400_000);
  assert.equal(parseDuration("1h30m"), 5_400_000);
  assert.equal(parseDuration("1m30s500ms"), 90_500);
  assert.equal(parseDuration(" 5m "), 300_000);
});

Deno.test("parseDuration rounds to whole milliseconds", () => {
  assert.equal(parseDuration("0.0004"), 0);
  assert.equal(parseDuration("1.2345s"), 1_235);
});

Deno.test("parseDuration rejects text that is not a duration", () => {
  for (const bad of ["", "s", "-5s", "5 m", "5x", "5mins", "1e3", "m5", "5m-", "Infinity"]) {
    assert.throws(
      () => parseDuration(bad),
      (e: unknown) =>
        e instanceof SyntaxError && e.message.startsWith(`Cannot parse duration "${bad}":`),
      bad,
    );
  }
});

Deno.test("parseDuration rejects a duration too large to count", () => {
  assert.throws(
    () => parseDuration("99999999999999999d"),
    (e: unknown) =>
      e instanceof RangeError && /Duration too large: "99999999999999999d"/.test(e.message),
  );
});

Deno.test("formatDuration writes compact units and round-trips through parseDuration", () => {
  assert.equal(formatDuration(0), "0");
  assert.equal(formatDuration(250), "250ms");
  assert.equal(formatDuration(300_000), "5m");
  assert.equal(formatDuration(86_400_000), "1d");
  assert.equal(formatDuration(90_500), "1m30s500ms");
  for (const ms of [1, 999, 1_000, 61_001, 5_400_000, 90_061_001]) {
    assert.equal(parseDuration(formatDuration(ms)), ms);
  }
});

Deno.test("formatDuration rejects negative and fractional milliseconds", () => {
  for (const bad of [-1, 1.5, Number.NaN]) {
    assert.throws(
      () => formatDuration(bad),
      (e: unknown) => e instanceof RangeError && e.message.startsWith(`Cannot format duration`),
    );
  }
});
