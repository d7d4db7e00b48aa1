import assert from "node:assert/strict";
import { decodeEntryName, isSafeEntryName, safeEntryName } from "./safe_name.ts";

Deno.test("safeEntryName keeps ordinary keys unchanged", () => {
  for (
    const key of [
      "a.txt",
      "photos/2024/cat.jpg",
      "ünïcödé/日本語/файл.png",
      "with space/and\nnewline",
      "back\\slash",
      ".hidden/.x",
      "...",
      "a/.../b",
      "a/.b/c.",
      ".coldpackage/x",
      "x/.coldpack/manifest.json",
    ]
  ) {
    assert.equal(safeEntryName(key), key, key);
  }
});

Deno.test("safeEntryName escapes dot segments, slashes, percent and NUL", () => {
  const cases: [string, string][] = [
    ["../etc/passwd", "%2E%2E/etc/passwd"],
    ["a/../../b", "a/%2E%2E/%2E%2E/b"],
    ["a/./b", "a/%2E/b"],
    ["./a", "%2E/a"],
    [".", "%2E"],
    ["..", "%2E%2E"],
    ["a/..", "a/%2E%2E"],
    ["/etc/passwd", "%2Fetc/passwd"],
    ["a//b", "a%2F%2Fb"],
    ["a/b/", "a/b%2F"],
    ["/", "%2F"],
    ["//", "%2F%2F"],
    ["100%", "100%25"],
    ["%2E%2E", "%252E%252E"],
    ["nul\0byte", "nul%00byte"],
    ["lone\uD800surrogate", "lone%uD800surrogate"],
    [".coldpack/manifest.json", "%2Ecoldpack/manifest.json"],
    [".coldpack", "%2Ecoldpack"],
  ];
  for (const [key, name] of cases) assert.equal(safeEntryName(key), name, JSON.stringify(key));
});

Deno.test("safeEntryName puts the escaped domain first", () => {
  assert.equal(safeEntryName("product/1/t.png", { domain: "ugc" }), "ugc/product/1/t.png");
  assert.equal(safeEntryName("x", { domain: "a/b" }), "a%2Fb/x");
  assert.equal(safeEntryName("x", { domain: ".." }), "%2E%2E/x");
  assert.equal(safeEntryName("x", { domain: ".coldpack" }), "%2Ecoldpack/x");
  // The reserved name only matters as the first segment of the whole name.
  assert.equal(safeEntryName(".coldpack/m", { domain: "d" }), "d/.coldpack/m");
  assert.equal(safeEntryName("/abs", { domain: "d" }), "d/%2Fabs");
});

Deno.test("safeEntryName rejects empty keys and domains", () => {
  assert.throws(() => safeEntryName(""), { name: "RangeError", message: /empty key/ });
  assert.throws(() => safeEntryName("x", { domain: "" }), {
    name: "RangeError",
    message: /empty domain/,
  });
});

const awkwardKeys = [
  "a",
  "a/b",
  "a//b",
  "a/./b",
  "a/b",
  "./a/b",
  "/a/b",
  "a/b/",
  "a%2Fb",
  "a%b",
  "a/%2E/b",
  "..",
  "%2E%2E",
  ".",
  "%2E",
  "/",
  "//",
  "///",
  "a\0",
  "a%00",
  "\uD800",
  "%uD800",
  "\uD83D\uDE00",
  ".coldpack/manifest.json",
  "%2Ecoldpack/manifest.json",
  "./.",
  "../..",
  ". /x",
  "x/ ..",
];

Deno.test("safeEntryName never yields an unsafe name and decodes back to the key", () => {
  for (const key of awkwardKeys) {
    const name = safeEntryName(key);
    assert.ok(
      isSafeEntryName(name),
      `unsafe name ${JSON.stringify(name)} for ${JSON.stringify(key)}`,
    );
    assert.ok(!name.startsWith("/") && !name.endsWith("/"), name);
    for (const segment of name.split("/")) {
      assert.ok(segment !== "" && segment !== "." && segment !== "..", JSON.stringify(name));
    }
    assert.notEqual(name.split("/")[0], ".coldpack");
    assert.deepEqual(decodeEntryName(name), { key }, JSON.stringify(key));
    const withDomain = safeEntryName(key, { domain: "d/." });
    assert.deepEqual(decodeEntryName(withDomain, { domain: true }), { domain: "d/.", key });
  }
});

Deno.test("safeEntryName gives different keys different names", () => {
  const names = new Map<string, string>();
  for (const key of awkwardKeys) {
    const name = safeEntryName(key);
    const before = names.get(name);
    assert.ok(
      before === undefined || before === key,
      `${JSON.stringify(before)} and ${JSON.stringify(key)} collide`,
    );
    names.set(name, key);
  }
  const pairs = new Set<string>();
  for (const [domain, key] of [["a/b", "c"], ["a", "b/c"], ["a", "b%2Fc"], ["a%2Fb", "c"]]) {
    pairs.add(safeEntryName(key!, { domain: domain! }));
  }
  assert.equal(pairs.size, 4);
});

Deno.test("decodeEntryName rejects malformed escapes and a missing domain", () => {
  assert.throws(() => decodeEntryName("a%zz"), {
    name: "SyntaxError",
    message: /malformed % escape/,
  });
  assert.throws(() => decodeEntryName("a%2"), {
    name: "SyntaxError",
    message: /malformed % escape/,
  });
  assert.throws(() => decodeEntryName("a%2e"), {
    name: "SyntaxError",
    message: /malformed % escape/,
  });
  assert.throws(() => decodeEntryName("nodomain", { domain: true }), {
    name: "SyntaxError",
    message: /no domain segment/,
  });
});

Deno.test("isSafeEntryName rejects names that escape the destination", () => {
  for (const name of ["a", "a/b", "./a", "a/./b", "a//b", "...", "a/..b", "%2E%2E/x", "a\\..\\b"]) {
    assert.equal(isSafeEntryName(name), true, name);
  }
  for (const name of ["", "/", "/etc/passwd", "..", "../x", "a/../b", "a/..", "a\0b", "//x"]) {
    assert.equal(isSafeEntryName(name), false, JSON.stringify(name));
  }
});
