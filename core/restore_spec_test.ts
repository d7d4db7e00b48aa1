import assert from "node:assert/strict";
import { ConfigError } from "./errors.ts";
import {
  compilePatterns,
  formatBatchError,
  parseBatch,
  parseRestoreDest,
  parseRestoreSource,
  type UrlPattern,
} from "./restore_spec.ts";

function syntaxError(fn: () => unknown, words: RegExp): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof SyntaxError, `expected SyntaxError, got ${e}`);
    assert.match(e.message, words);
    return true;
  });
}

function configError(raw: unknown, where: string, words: RegExp, file?: string): void {
  assert.throws(() => compilePatterns(raw, file === undefined ? {} : { file }), (e: unknown) => {
    assert.ok(e instanceof ConfigError, `expected ConfigError, got ${e}`);
    assert.equal(e.where, where);
    assert.match(e.message, words);
    return true;
  });
}

const PATTERNS: readonly UrlPattern[] = compilePatterns([
  { match: String.raw`^https?://cdn\.example\.com/(?<domain>[^/]+)/(?<key>[^?#]+)` },
  { match: String.raw`^https://img\.example\.com/(?<key>[^?#]+)`, domain: "ugc" },
  { match: String.raw`^https://shop\.example\.com/p/(?<key>[0-9]+)(?:/(?<domain>[a-z]+))?$` },
]);

// ---------------------------------------------------------------------------
// SOURCE

Deno.test("parseRestoreSource: fid:N and a bare number are file ids", () => {
  assert.deepEqual(parseRestoreSource("fid:123"), { kind: "id", id: 123 });
  assert.deepEqual(parseRestoreSource("123"), { kind: "id", id: 123 });
  assert.deepEqual(parseRestoreSource("0042"), { kind: "id", id: 42 });
  assert.deepEqual(parseRestoreSource(String(2 ** 53 - 1)), { kind: "id", id: 2 ** 53 - 1 });
});

Deno.test("parseRestoreSource: bad file ids say the id must be a positive whole number", () => {
  const words = /the file id must be a positive whole number/;
  syntaxError(() => parseRestoreSource("fid:"), /"fid:": the file id must be/);
  syntaxError(() => parseRestoreSource("fid:abc"), words);
  syntaxError(() => parseRestoreSource("fid:-1"), words);
  syntaxError(() => parseRestoreSource("fid:1.5"), words);
  syntaxError(() => parseRestoreSource("fid: 1"), words);
  syntaxError(() => parseRestoreSource("fid:0"), /"fid:0": the file id must be/);
  syntaxError(() => parseRestoreSource("0"), /"0": the file id must be a positive/);
  syntaxError(() => parseRestoreSource("9007199254740993"), /below 2\^53/);
});

Deno.test("parseRestoreSource: an empty source is refused", () => {
  syntaxError(() => parseRestoreSource(""), /^Invalid restore source: empty$/);
});

Deno.test("parseRestoreSource: DOMAIN:KEY is a domain and key", () => {
  assert.deepEqual(parseRestoreSource("ugc:product/1/texture.png"), {
    kind: "domain-key",
    domain: "ugc",
    key: "product/1/texture.png",
  });
  assert.deepEqual(parseRestoreSource("my-dom.v_2:a:b c"), {
    kind: "domain-key",
    domain: "my-dom.v_2",
    key: "a:b c",
  });
  assert.deepEqual(parseRestoreSource("ugc:/abs"), {
    kind: "domain-key",
    domain: "ugc",
    key: "/abs",
  });
  assert.deepEqual(parseRestoreSource("ugc:ü/日本.png"), {
    kind: "domain-key",
    domain: "ugc",
    key: "ü/日本.png",
  });
  assert.deepEqual(parseRestoreSource("FID:1"), { kind: "domain-key", domain: "FID", key: "1" });
  assert.deepEqual(parseRestoreSource("123:abc"), {
    kind: "domain-key",
    domain: "123",
    key: "abc",
  });
  assert.deepEqual(parseRestoreSource("http:x"), { kind: "domain-key", domain: "http", key: "x" });
});

Deno.test("parseRestoreSource: an empty key after a domain is refused, naming the escape", () => {
  syntaxError(
    () => parseRestoreSource("ugc:"),
    /"ugc:": the key after the domain "ugc" is empty \(a file named "ugc:" is written \.\/ugc:\)/,
  );
});

Deno.test("parseRestoreSource: anything else is a key, as given", () => {
  assert.deepEqual(parseRestoreSource("photos/2024/cat.jpg"), {
    kind: "key",
    key: "photos/2024/cat.jpg",
  });
  assert.deepEqual(parseRestoreSource("dir/a:b"), { kind: "key", key: "dir/a:b" });
  assert.deepEqual(parseRestoreSource("a b:c"), { kind: "key", key: "a b:c" });
  assert.deepEqual(parseRestoreSource(":x"), { kind: "key", key: ":x" });
  assert.deepEqual(parseRestoreSource("/srv/up/a.png"), { kind: "key", key: "/srv/up/a.png" });
  assert.deepEqual(parseRestoreSource("日本/ü ö.png"), { kind: "key", key: "日本/ü ö.png" });
  assert.deepEqual(parseRestoreSource(" 12"), { kind: "key", key: " 12" });
  assert.deepEqual(parseRestoreSource("../x"), { kind: "key", key: "../x" });
  assert.deepEqual(parseRestoreSource("1a"), { kind: "key", key: "1a" });
});

Deno.test("parseRestoreSource: ./ and key: escape keys that look like something else", () => {
  assert.deepEqual(parseRestoreSource("./123"), { kind: "key", key: "123" });
  assert.deepEqual(parseRestoreSource("./a:b"), { kind: "key", key: "a:b" });
  assert.deepEqual(parseRestoreSource("././x"), { kind: "key", key: "./x" });
  assert.deepEqual(parseRestoreSource("key:123"), { kind: "key", key: "123" });
  assert.deepEqual(parseRestoreSource("key:a:b"), { kind: "key", key: "a:b" });
  assert.deepEqual(parseRestoreSource("key:./x"), { kind: "key", key: "./x" });
  assert.deepEqual(parseRestoreSource("key:fid:1"), { kind: "key", key: "fid:1" });
  assert.deepEqual(parseRestoreSource("key:https://x/y"), { kind: "key", key: "https://x/y" });
  syntaxError(() => parseRestoreSource("key:"), /"key:": the key is empty/);
  syntaxError(() => parseRestoreSource("./"), /"\.\/": the key is empty/);
});

Deno.test("parseRestoreSource: mogilefs:DOMAIN/KEY names reserved domains and odd keys", () => {
  assert.deepEqual(parseRestoreSource("mogilefs:fid/123"), {
    kind: "domain-key",
    domain: "fid",
    key: "123",
  });
  assert.deepEqual(parseRestoreSource("mogilefs:key/a"), {
    kind: "domain-key",
    domain: "key",
    key: "a",
  });
  assert.deepEqual(parseRestoreSource("mogilefs:mogilefs/x/y"), {
    kind: "domain-key",
    domain: "mogilefs",
    key: "x/y",
  });
  assert.deepEqual(parseRestoreSource("mogilefs:http///x"), {
    kind: "domain-key",
    domain: "http",
    key: "//x",
  });
  syntaxError(() => parseRestoreSource("mogilefs:ugc"), /"mogilefs:ugc": the key is empty/);
  syntaxError(() => parseRestoreSource("mogilefs:ugc/"), /the key is empty/);
  syntaxError(() => parseRestoreSource("mogilefs:/k"), /the domain is empty/);
  syntaxError(() => parseRestoreSource("mogilefs:u g/k"), /bad domain name "u g"/);
});

Deno.test("parseRestoreSource: a URL maps through the first pattern that matches", () => {
  const url = "https://cdn.example.com/ugc/product/1/my%20texture%C3%BC.png?v=2";
  assert.deepEqual(parseRestoreSource(url, { patterns: PATTERNS }), {
    kind: "url",
    url,
    domain: "ugc",
    key: "product/1/my textureü.png",
    pattern: 0,
  });
  assert.deepEqual(
    parseRestoreSource("https://img.example.com/a+b/c%3Ad.png", { patterns: PATTERNS }),
    {
      kind: "url",
      url: "https://img.example.com/a+b/c%3Ad.png",
      domain: "ugc",
      key: "a+b/c:d.png",
      pattern: 1,
    },
    "a fixed domain; + stays +",
  );
  assert.deepEqual(
    parseRestoreSource("https://shop.example.com/p/77/models", { patterns: PATTERNS }),
    {
      kind: "url",
      url: "https://shop.example.com/p/77/models",
      domain: "models",
      key: "77",
      pattern: 2,
    },
  );
});

Deno.test("parseRestoreSource: earlier patterns win", () => {
  const patterns = compilePatterns([
    { match: "^https://a/(?<key>.+)$", domain: "first" },
    { match: "^https://a/(?<key>.+)$", domain: "second" },
  ]);
  const r = parseRestoreSource("https://a/k", { patterns });
  assert.equal(r.kind === "url" && r.domain, "first");
});

Deno.test("parseRestoreSource: a URL no pattern matches names the URL and the count tried", () => {
  syntaxError(
    () => parseRestoreSource("https://other.example.com/x", { patterns: PATTERNS }),
    /^No URL pattern matches "https:\/\/other\.example\.com\/x" \(3 patterns tried\)$/,
  );
  syntaxError(
    () => parseRestoreSource("https://x/y", { patterns: PATTERNS.slice(0, 1) }),
    /\(1 pattern tried\)/,
  );
  syntaxError(
    () => parseRestoreSource("https://x/y"),
    /No URL pattern matches "https:\/\/x\/y" \(no url_patterns are configured\)/,
  );
  syntaxError(() => parseRestoreSource("s3://bucket/k", { patterns: PATTERNS }), /3 patterns/);
  syntaxError(() => parseRestoreSource("ugc://k"), /No URL pattern matches "ugc:\/\/k"/);
});

Deno.test("parseRestoreSource: a pattern that matches with a bad capture names it", () => {
  syntaxError(
    () => parseRestoreSource("https://cdn.example.com/ugc/a%E0%A4%A.png", { patterns: PATTERNS }),
    /URL pattern 0 matched ".*" but its key "a%E0%A4%A\.png" has bad percent-encoding/,
  );
  syntaxError(
    () => parseRestoreSource("https://cdn.example.com/u%20g/a.png", { patterns: PATTERNS }),
    /URL pattern 0 matched .* but bad domain name "u g"/,
  );
  syntaxError(
    () => parseRestoreSource("https://shop.example.com/p/77", { patterns: PATTERNS }),
    /URL pattern 2 matched "https:\/\/shop\.example\.com\/p\/77" but the domain is empty/,
  );
  const optionalKey = compilePatterns([{ match: "^https://z/(?<key>[a-z]*)$", domain: "d" }]);
  syntaxError(
    () => parseRestoreSource("https://z/", { patterns: optionalKey }),
    /URL pattern 0 matched "https:\/\/z\/" but its key is empty/,
  );
});

// ---------------------------------------------------------------------------
// URL patterns

Deno.test("compilePatterns: none configured is an empty list", () => {
  assert.deepEqual(compilePatterns(undefined), []);
  assert.deepEqual(compilePatterns([]), []);
});

Deno.test("compilePatterns: a domain group or a fixed domain", () => {
  const [a, b] = compilePatterns([
    { match: "(?<domain>[a-z]+):(?<key>.+)" },
    { match: "^/(?<key>.+)", domain: "ugc" },
  ]);
  assert.equal(a?.index, 0);
  assert.equal(a?.domain, undefined);
  assert.equal(b?.index, 1);
  assert.equal(b?.domain, "ugc");
  assert.ok(b?.regex.test("/x"));
});

Deno.test("compilePatterns: errors name url_patterns[i] and the problem", () => {
  configError("x", "url_patterns", /expected a list of \{ match, domain \} tables, got a string/);
  configError({ match: "x" }, "url_patterns", /got a table/);
  configError(
    [{ match: "(?<key>.+)", domain: "d" }, "nope"],
    "url_patterns[1]",
    /^url_patterns\[1\]: expected a \{ match, domain \} table, got a string$/,
  );
  configError([{ domain: "d" }], "url_patterns[0]", /match is missing/);
  configError([{ match: 7 }], "url_patterns[0]", /match must be a non-empty .* got a number/);
  configError([{ match: "" }], "url_patterns[0]", /match must be a non-empty/);
  configError(
    [{ match: "(?<key>.+)", domain: "d" }, { match: "(?<key>[a-z" }],
    "url_patterns[1]",
    /match is not a valid regular expression/,
  );
  configError(
    [{ match: "^https://x/(.+)$", domain: "d" }],
    "url_patterns[0]",
    /the regex has no \(\?<key>\.\.\.\) group: \^https:\/\/x\/\(\.\+\)\$/,
  );
  configError(
    [{ match: "(?<key>.+)" }],
    "url_patterns[0]",
    /no \(\?<domain>\.\.\.\) group and no fixed domain/,
  );
  configError(
    [{ match: "(?<domain>a)(?<key>.+)", domain: "d" }],
    "url_patterns[0]",
    /both a \(\?<domain>\.\.\.\) group and a fixed domain "d"/,
  );
  configError(
    [{ match: "(?<key>.+)", domain: "u g" }],
    "url_patterns[0]",
    /domain must be a MogileFS domain name .* got "u g"/,
  );
  configError([{ match: "(?<key>.+)", domain: 3 }], "url_patterns[0]", /got a number/);
  configError(
    [{ match: "(?<key>.+)", domian: "d" }],
    "url_patterns[0]",
    /unknown key "domian"/,
  );
});

Deno.test("compilePatterns: the config file's path prefixes where", () => {
  configError(
    [{ match: "(?<key>.+)" }],
    "/etc/coldpack.toml: url_patterns[0]",
    /^\/etc\/coldpack\.toml: url_patterns\[0\]: /,
    "/etc/coldpack.toml",
  );
});

Deno.test("compilePatterns: groups inside alternatives and lookarounds are found", () => {
  const [p] = compilePatterns([
    { match: "^x://(?:a/(?<domain>[a-z]+)/|b/)(?<key>(?<=/)[^/]+)$" },
  ]);
  assert.equal(p?.domain, undefined);
  assert.deepEqual(parseRestoreSource("x://a/ugc/k", { patterns: [p!] }), {
    kind: "url",
    url: "x://a/ugc/k",
    domain: "ugc",
    key: "k",
    pattern: 0,
  });
});

// ---------------------------------------------------------------------------
// DEST

Deno.test("parseRestoreDest: mogilefs back where it was, or into a domain and key", () => {
  assert.deepEqual(parseRestoreDest("mogilefs"), { kind: "mogilefs-origin" });
  assert.deepEqual(parseRestoreDest("mogilefs:test"), { kind: "mogilefs", domain: "test" });
  assert.deepEqual(parseRestoreDest("mogilefs:test/restored/a b.png"), {
    kind: "mogilefs",
    domain: "test",
    key: "restored/a b.png",
    prefix: false,
  });
  assert.deepEqual(parseRestoreDest("mogilefs:test/drill/"), {
    kind: "mogilefs",
    domain: "test",
    key: "drill/",
    prefix: true,
  });
  assert.deepEqual(parseRestoreDest("mogilefs:test/a%20b:c"), {
    kind: "mogilefs",
    domain: "test",
    key: "a%20b:c",
    prefix: false,
  }, "not a URL: no percent-decoding");
});

Deno.test("parseRestoreDest: bad mogilefs destinations say what to write", () => {
  syntaxError(() => parseRestoreDest("mogilefs:"), /"mogilefs:": the domain is empty/);
  syntaxError(() => parseRestoreDest("mogilefs:/k"), /the domain is empty/);
  syntaxError(() => parseRestoreDest("mogilefs:u g"), /bad domain name "u g"/);
  syntaxError(
    () => parseRestoreDest("mogilefs:ugc/"),
    /the key after "ugc\/" is empty \(write mogilefs:ugc to keep each file's own key\)/,
  );
  syntaxError(
    () => parseRestoreDest("mogilefs://t1:7001/ugc"),
    /write mogilefs:DOMAIN\[\/KEY\] \(the trackers come from the configuration/,
  );
});

Deno.test("parseRestoreDest: s3://bucket/key, a trailing / meaning a directory", () => {
  assert.deepEqual(parseRestoreDest("s3://restores/drill/a.png"), {
    kind: "s3",
    bucket: "restores",
    key: "drill/a.png",
    prefix: false,
  });
  assert.deepEqual(parseRestoreDest("s3://restores/drill/"), {
    kind: "s3",
    bucket: "restores",
    key: "drill/",
    prefix: true,
  });
  assert.deepEqual(parseRestoreDest("s3://restores"), {
    kind: "s3",
    bucket: "restores",
    key: "",
    prefix: true,
  });
  assert.deepEqual(parseRestoreDest("S3://my.bucket-1/a%20b/%E6%97%A5.png"), {
    kind: "s3",
    bucket: "my.bucket-1",
    key: "a b/日.png",
    prefix: false,
  });
});

Deno.test("parseRestoreDest: bad s3 destinations name the problem", () => {
  syntaxError(() => parseRestoreDest("s3:bucket/k"), /"s3:bucket\/k": expected s3:\/\/BUCKET\/KEY/);
  syntaxError(() => parseRestoreDest("s3:///k"), /the bucket is missing/);
  syntaxError(
    () => parseRestoreDest("s3://Bad_Bucket/k"),
    /bad bucket name "Bad_Bucket" \(3 to 63/,
  );
  syntaxError(() => parseRestoreDest("s3://ab/k"), /bad bucket name "ab"/);
  syntaxError(() => parseRestoreDest("s3://a..b/k"), /bad bucket name "a\.\.b"/);
  syntaxError(() => parseRestoreDest("s3://bk1/k?x=1"), /query and fragment are not supported/);
  syntaxError(() => parseRestoreDest("s3://bk1/k%ZZ"), /"s3:\/\/bk1\/k%ZZ": bad percent-encoding/);
});

Deno.test("parseRestoreDest: anything without a WORD: start is a local path, as given", () => {
  assert.deepEqual(parseRestoreDest("/srv/restore/a.png"), {
    kind: "local",
    path: "/srv/restore/a.png",
    prefix: false,
  });
  assert.deepEqual(parseRestoreDest("out/"), { kind: "local", path: "out/", prefix: true });
  assert.deepEqual(parseRestoreDest("./backup:1"), {
    kind: "local",
    path: "./backup:1",
    prefix: false,
  });
  assert.deepEqual(parseRestoreDest("a/b:c"), { kind: "local", path: "a/b:c", prefix: false });
  assert.deepEqual(parseRestoreDest("日本 ü/"), { kind: "local", path: "日本 ü/", prefix: true });
  assert.deepEqual(parseRestoreDest("Mogilefs.d"), {
    kind: "local",
    path: "Mogilefs.d",
    prefix: false,
  });
  assert.deepEqual(parseRestoreDest("file:///srv/my%20restore/"), {
    kind: "local",
    path: "/srv/my restore/",
    prefix: true,
  });
  assert.deepEqual(parseRestoreDest("file://localhost/x"), {
    kind: "local",
    path: "/x",
    prefix: false,
  });
});

Deno.test("parseRestoreDest: empty, unknown schemes and bad local paths are refused", () => {
  syntaxError(() => parseRestoreDest(""), /^Invalid restore destination: empty$/);
  syntaxError(
    () => parseRestoreDest("ftp:x"),
    new RegExp(
      String.raw`^Invalid restore destination "ftp:x": unknown destination "ftp:" ` +
        String.raw`\(give mogilefs\[:DOMAIN\[/KEY\]\], s3://BUCKET/KEY or a local path; ` +
        String.raw`a local path with a colon is written \./ftp:x\)$`,
    ),
  );
  syntaxError(() => parseRestoreDest("mogilfs:ugc"), /unknown destination "mogilfs:"/);
  syntaxError(() => parseRestoreDest("MOGILEFS:ugc"), /unknown destination "MOGILEFS:"/);
  syntaxError(() => parseRestoreDest("https://x/y"), /unknown destination "https:"/);
  syntaxError(() => parseRestoreDest("C:\\x"), /unknown destination "C:"/);
  syntaxError(
    () => parseRestoreDest("file://host/x"),
    /a file URL must name an absolute local path/,
  );
  syntaxError(() => parseRestoreDest("file:x"), /a file URL must name an absolute local path/);
  syntaxError(() => parseRestoreDest("a\0b"), /contains a NUL character/);
  syntaxError(() => parseRestoreDest("file:///a%00b"), /contains a NUL character/);
});

// ---------------------------------------------------------------------------
// Batch files

Deno.test("parseBatch: one SOURCE DEST per line; blanks and comments skipped", () => {
  const text = [
    "# restores for ticket 42",
    "",
    "fid:1 /tmp/out/",
    "   \t  ",
    "  ugc:product/1/texture.png\tmogilefs   ",
    "  # indented comment",
    "123 s3://restores/x.png # trailing note",
    "photo#1.jpg out/",
  ].join("\n");
  assert.deepEqual(parseBatch(text), {
    lines: [
      { line: 3, source: "fid:1", dest: "/tmp/out/" },
      { line: 5, source: "ugc:product/1/texture.png", dest: "mogilefs" },
      { line: 7, source: "123", dest: "s3://restores/x.png" },
      { line: 8, source: "photo#1.jpg", dest: "out/" },
    ],
    errors: [],
  });
  assert.deepEqual(parseBatch(""), { lines: [], errors: [] });
  assert.deepEqual(parseBatch("\n\n"), { lines: [], errors: [] });
});

Deno.test("parseBatch: CRLF line ends and a byte order mark are ignored", () => {
  const batch = parseBatch("\uFEFFfid:1 a\r\n\r\n# c\r\nfid:2 b\r\nfid:3\r\n");
  assert.deepEqual(batch.lines, [
    { line: 1, source: "fid:1", dest: "a" },
    { line: 4, source: "fid:2", dest: "b" },
  ]);
  assert.deepEqual(batch.errors, [
    { line: 5, text: "fid:3", reason: "expected SOURCE DEST, found 1 field" },
  ]);
});

Deno.test('parseBatch: double quotes hold spaces, \\" and \\\\', () => {
  const text = String.raw`"ugc:my file.png" "/tmp/out dir/"
"a \"q\" b" "c\\d"
key:a:b	"日本 ü.png"
"" x
"#tag.png" out/
a\b out/`;
  assert.deepEqual(parseBatch(text), {
    lines: [
      { line: 1, source: "ugc:my file.png", dest: "/tmp/out dir/" },
      { line: 2, source: 'a "q" b', dest: "c\\d" },
      { line: 3, source: "key:a:b", dest: "日本 ü.png" },
      { line: 4, source: "", dest: "x" },
      { line: 5, source: "#tag.png", dest: "out/" },
      { line: 6, source: "a\\b", dest: "out/" },
    ],
    errors: [],
  });
});

Deno.test("parseBatch: bad lines are collected with their number and reason", () => {
  const text = [
    "fid:1",
    "fid:1 a b",
    '"ugc:a b',
    '"ugc:a\\" x',
    '"a\\nb" x',
    '"a"b x',
    'ab"c x',
    "fid:2 ok",
  ].join("\n");
  const batch = parseBatch(text);
  assert.deepEqual(batch.lines, [{ line: 8, source: "fid:2", dest: "ok" }]);
  assert.deepEqual(batch.errors, [
    { line: 1, text: "fid:1", reason: "expected SOURCE DEST, found 1 field" },
    {
      line: 2,
      text: "fid:1 a b",
      reason: "expected SOURCE DEST, found 3 fields (a field with spaces is written in double " +
        "quotes)",
    },
    { line: 3, text: '"ugc:a b', reason: "field 1: the double quote is never closed" },
    { line: 4, text: '"ugc:a\\" x', reason: "field 1: the double quote is never closed" },
    {
      line: 5,
      text: '"a\\nb" x',
      reason: 'field 1: unknown escape "\\n" in double quotes (only \\" and \\\\)',
    },
    {
      line: 6,
      text: '"a"b x',
      reason: "field 1: text right after the closing double quote (separate fields with a space)",
    },
    {
      line: 7,
      text: 'ab"c x',
      reason:
        'field 1: a double quote inside an unquoted field (quote the whole field, writing \\" ' +
        "for a quote)",
    },
  ]);
});

Deno.test("parseBatch: with patterns, each line's SOURCE and DEST are parsed too", () => {
  const text = [
    "fid:7 mogilefs",
    "https://img.example.com/a%20b.png s3://restores/",
    "https://nowhere/x out/",
    "ugc: ftp:x",
    '"ugc:a b.png" mogilefs:test/restored/',
    "fid:0 mogilefs:",
  ].join("\r\n");
  const batch = parseBatch(text, { patterns: PATTERNS });
  assert.deepEqual(batch.lines, [
    {
      line: 1,
      source: "fid:7",
      dest: "mogilefs",
      request: { source: { kind: "id", id: 7 }, dest: { kind: "mogilefs-origin" } },
    },
    {
      line: 2,
      source: "https://img.example.com/a%20b.png",
      dest: "s3://restores/",
      request: {
        source: {
          kind: "url",
          url: "https://img.example.com/a%20b.png",
          domain: "ugc",
          key: "a b.png",
          pattern: 1,
        },
        dest: { kind: "s3", bucket: "restores", key: "", prefix: true },
      },
    },
    {
      line: 5,
      source: "ugc:a b.png",
      dest: "mogilefs:test/restored/",
      request: {
        source: { kind: "domain-key", domain: "ugc", key: "a b.png" },
        dest: { kind: "mogilefs", domain: "test", key: "restored/", prefix: true },
      },
    },
  ]);
  assert.equal(batch.errors.length, 3);
  const [nowhere, both, fid0] = batch.errors;
  assert.equal(nowhere?.line, 3);
  assert.equal(
    nowhere?.reason,
    'no URL pattern matches "https://nowhere/x" (3 patterns tried)',
  );
  assert.equal(both?.line, 4);
  assert.equal(both?.text, "ugc: ftp:x");
  assert.match(both?.reason ?? "", /^invalid restore source "ugc:": the key after the domain/);
  assert.match(both?.reason ?? "", /; invalid restore destination "ftp:x": unknown destination/);
  assert.equal(fid0?.line, 6);
  assert.match(fid0?.reason ?? "", /"fid:0": the file id must be a positive whole number/);
  assert.match(fid0?.reason ?? "", /"mogilefs:": the domain is empty/);
  assert.equal(
    formatBatchError(nowhere!),
    'Cannot parse restore line 3: no URL pattern matches "https://nowhere/x" (3 patterns tried)',
  );
});

Deno.test("parseBatch: a pattern that matches badly keeps its own wording", () => {
  const bad = parseBatch("https://shop.example.com/p/1 out/\n", { patterns: PATTERNS });
  assert.equal(
    bad.errors[0]?.reason,
    'URL pattern 2 matched "https://shop.example.com/p/1" but the domain is empty',
  );
});
