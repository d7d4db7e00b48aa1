import assert from "node:assert/strict";
import { formatBytes, parseSize } from "./size.ts";

Deno.test("parseSize reads binary and decimal units", () => {
  assert.equal(parseSize("25MiB"), 25 * 1024 * 1024);
  assert.equal(parseSize("25M"), 25 * 1024 * 1024);
  assert.equal(parseSize("25MB"), 25_000_000);
  assert.equal(parseSize("4096"), 4096);
  assert.equal(parseSize("1.5 GiB"), 1.5 * 1024 ** 3);
  assert.equal(parseSize("10kb"), 10_000);
});

Deno.test("parseSize names the text it cannot read", () => {
  assert.throws(() => parseSize("25 parsecs"), {
    name: "SyntaxError",
    message: /Cannot parse size "25 parsecs"/,
  });
  assert.throws(() => parseSize("-5"), { name: "SyntaxError", message: /"-5"/ });
  assert.throws(() => parseSize("99999999TiB"), { name: "RangeError" });
});

Deno.test("formatBytes uses decimal units", () => {
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(26_214_400), "26.2 MB");
  assert.equal(formatBytes(1_500_000_000), "1.5 GB");
});
