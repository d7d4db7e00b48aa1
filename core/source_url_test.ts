import assert from "node:assert/strict";
import { formatSourceUrl, parseSourceUrl } from "./source_url.ts";

function syntaxError(text: string, words: RegExp): void {
  assert.throws(() => parseSourceUrl(text), (e: unknown) => {
    assert.ok(e instanceof SyntaxError, `expected SyntaxError, got ${e}`);
    assert.match(e.message, words);
    return true;
  });
}

Deno.test("parseSourceUrl: an absolute path is a directory", () => {
  assert.deepEqual(parseSourceUrl("/srv/uploads"), { kind: "dir", path: "/srv/uploads" });
  assert.deepEqual(parseSourceUrl("/srv/uploads///"), { kind: "dir", path: "/srv/uploads" });
  assert.deepEqual(parseSourceUrl("/"), { kind: "dir", path: "/" });
  assert.deepEqual(parseSourceUrl("/a b/ü"), { kind: "dir", path: "/a b/ü" });
});

Deno.test("parseSourceUrl: a file URL is a directory, percent-decoded", () => {
  assert.deepEqual(parseSourceUrl("file:///srv/uploads"), { kind: "dir", path: "/srv/uploads" });
  assert.deepEqual(parseSourceUrl("file:///srv/my%20files/"), {
    kind: "dir",
    path: "/srv/my files",
  });
  assert.deepEqual(parseSourceUrl("FILE://localhost/x"), { kind: "dir", path: "/x" });
});

Deno.test("parseSourceUrl: relative paths are refused, saying the path must be absolute", () => {
  syntaxError("uploads", /"uploads": the path must be absolute/);
  syntaxError("./uploads", /"\.\/uploads": the path must be absolute/);
  syntaxError("~/uploads", /the path must be absolute/);
  syntaxError(
    "file://uploads/x",
    /"file:\/\/uploads\/x": a file URL must name an absolute local path/,
  );
  syntaxError("file:uploads", /expected file:\/\/ followed by an absolute path/);
});

Deno.test("parseSourceUrl: unknown schemes name the allowed ones", () => {
  syntaxError(
    "ftp://x",
    /^Unsupported source URL "ftp:\/\/x": scheme must be file, mogilefs or s3$/,
  );
  syntaxError("http://host/a", /Unsupported source URL "http:\/\/host\/a"/);
});

Deno.test("parseSourceUrl: mogilefs trackers and domain", () => {
  assert.deepEqual(parseSourceUrl("mogilefs://tracker1:7001,10.0.0.2:7002/ugc"), {
    kind: "mogilefs",
    trackers: [{ host: "tracker1", port: 7001 }, { host: "10.0.0.2", port: 7002 }],
    domain: "ugc",
  });
  assert.deepEqual(parseSourceUrl("mogilefs://t1/ugc/"), {
    kind: "mogilefs",
    trackers: [{ host: "t1", port: 7001 }],
    domain: "ugc",
  });
  assert.deepEqual(parseSourceUrl("mogilefs://[::1]:7001,[fe80::1]"), {
    kind: "mogilefs",
    trackers: [{ host: "::1", port: 7001 }, { host: "fe80::1", port: 7001 }],
  });
});

Deno.test("parseSourceUrl: mogilefs without a domain means every domain", () => {
  const url = parseSourceUrl("mogilefs://t1:7001/");
  assert.deepEqual(url, { kind: "mogilefs", trackers: [{ host: "t1", port: 7001 }] });
  assert.ok(!("domain" in url));
  assert.ok(!("domain" in parseSourceUrl("mogilefs://t1:7001")));
});

Deno.test("parseSourceUrl: bad mogilefs URLs name the bad part", () => {
  syntaxError("mogilefs:///ugc", /at least one tracker host is required/);
  syntaxError("mogilefs://t1:0/ugc", /bad tracker port "0" \(must be 1 to 65535\)/);
  syntaxError("mogilefs://t1:70000/ugc", /bad tracker port "70000"/);
  syntaxError("mogilefs://t1:x/ugc", /bad tracker port "x"/);
  syntaxError("mogilefs://t1:7001,/ugc", /bad tracker host "" \(empty\)/);
  syntaxError("mogilefs://user@t1/ugc", /bad tracker host "user@t1"/);
  syntaxError("mogilefs://[zz]:1/ugc", /bad tracker address "\[zz\]:1"/);
  syntaxError("mogilefs://t1/ugc/more", /the domain "ugc\/more" contains a \//);
  syntaxError("mogilefs://t1/ugc?x=1", /query and fragment are not supported/);
});

Deno.test("parseSourceUrl: s3 bucket and prefix", () => {
  assert.deepEqual(parseSourceUrl("s3://my-bucket/photos/2024/"), {
    kind: "s3",
    bucket: "my-bucket",
    prefix: "photos/2024/",
  });
  assert.deepEqual(parseSourceUrl("s3://my.bucket"), {
    kind: "s3",
    bucket: "my.bucket",
    prefix: "",
  });
  assert.deepEqual(parseSourceUrl("s3://b12/a%20b"), { kind: "s3", bucket: "b12", prefix: "a b" });
});

Deno.test("parseSourceUrl: bad s3 URLs name the bad part", () => {
  syntaxError("s3:///prefix", /"s3:\/\/\/prefix": the bucket is missing/);
  syntaxError("s3://My_Bucket/x", /bad bucket name "My_Bucket"/);
  syntaxError("s3://ab/x", /bad bucket name "ab"/);
  syntaxError("s3://b12/%zz", /bad percent-encoding/);
});

Deno.test("parseSourceUrl: empty text", () => {
  syntaxError("", /^Invalid source URL: empty$/);
});

Deno.test("formatSourceUrl: round-trips", () => {
  for (
    const text of [
      "/srv/uploads",
      "mogilefs://t1:7001,[::1]:7002/ugc",
      "mogilefs://t1:7001/",
      "s3://bucket/photos/",
    ]
  ) {
    assert.equal(formatSourceUrl(parseSourceUrl(text)), text);
  }
});
