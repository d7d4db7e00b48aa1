import assert from "node:assert/strict";
import {
  decodeArgs,
  encodeArgs,
  encodeValue,
  parseResponse,
  requestLine,
} from "./mogilefs_protocol.ts";

Deno.test("encodeValue keeps the safe bytes, + for space, %XX upper-case for the rest", () => {
  assert.equal(encodeValue("AZaz09_,-./\\:"), "AZaz09_,-./\\:");
  assert.equal(encodeValue("a b"), "a+b");
  assert.equal(encodeValue("a+b&c=d%e?f#g~h'i"), "a%2Bb%26c%3Dd%25e%3Ff%23g%7Eh%27i");
  assert.equal(encodeValue("ü"), "%C3%BC");
  assert.equal(encodeValue("日本"), "%E6%97%A5%E6%9C%AC");
  assert.equal(encodeValue("🎉"), "%F0%9F%8E%89");
  assert.equal(encodeValue("\r\n\0"), "%0D%0A%00");
  assert.equal(encodeValue(""), "");
});

Deno.test("encodeArgs joins k=v with & in order, numbers in decimal, undefined left out", () => {
  assert.equal(
    encodeArgs({ domain: "ugc", key: "a b/ü", noverify: 1, skip: undefined, empty: "" }),
    "domain=ugc&key=a+b/%C3%BC&noverify=1&empty=",
  );
  assert.equal(encodeArgs({}), "");
  assert.throws(() => encodeArgs({ n: NaN }), (e: unknown) => {
    assert.ok(e instanceof TypeError);
    assert.match(e.message, /argument n: NaN is not a finite number/);
    return true;
  });
});

Deno.test("decodeArgs decodes + and %xx in either case as UTF-8", () => {
  assert.deepEqual(decodeArgs("a=b+c&key=%c3%bc%C3%BC&x=&y=1%2B1"), {
    a: "b c",
    key: "üü",
    x: "",
    y: "1+1",
  });
  assert.deepEqual(decodeArgs(""), {});
  assert.deepEqual(decodeArgs("&a=1&&"), { a: "1" });
  // A value may itself hold "=".
  assert.deepEqual(decodeArgs("a=b=c"), { a: "b=c" });
});

Deno.test("decodeArgs round-trips what encodeArgs makes", () => {
  const record = {
    "key with space": "ünïcødé/日本語 ファイル.txt",
    emoji: "🎉 party & more = %25",
    ctl: "line\r\nbreak\ttab\0nul",
    __proto__x: "y",
  };
  assert.deepEqual(decodeArgs(encodeArgs(record)), record);
});

Deno.test("decodeArgs keeps a key named __proto__ as data", () => {
  const args = decodeArgs("__proto__=x&a=1");
  assert.equal(Object.getPrototypeOf(args), Object.prototype);
  assert.equal(Object.getOwnPropertyDescriptor(args, "__proto__")?.value, "x");
  assert.equal(args.a, "1");
});

Deno.test("decodeArgs rejects a part without = and a bad escape with SyntaxError", () => {
  assert.throws(() => decodeArgs("a=1&junk"), (e: unknown) => {
    assert.ok(e instanceof SyntaxError);
    assert.match(e.message, /"junk" has no "="/);
    return true;
  });
  assert.throws(() => decodeArgs("a=%G1"), (e: unknown) => {
    assert.ok(e instanceof SyntaxError);
    assert.match(e.message, /bad escape "%G1"/);
    return true;
  });
  assert.throws(() => decodeArgs("a=%4"), (e: unknown) => {
    assert.ok(e instanceof SyntaxError);
    assert.match(e.message, /bad escape "%4"/);
    return true;
  });
});

Deno.test("requestLine ends with CRLF and refuses a command that is not one word", () => {
  assert.equal(
    requestLine("get_paths", { domain: "ugc", key: "a b", noverify: 1 }),
    "get_paths domain=ugc&key=a+b&noverify=1\r\n",
  );
  assert.equal(requestLine("get_domains"), "get_domains \r\n");
  for (const bad of ["", "get paths", "x\r\ny", "list-fids"]) {
    assert.throws(() => requestLine(bad, {}), (e: unknown) => {
      assert.ok(e instanceof TypeError, `${JSON.stringify(bad)}: ${e}`);
      assert.match(e.message, /Invalid MogileFS command/);
      return true;
    });
  }
});

Deno.test("parseResponse reads OK lines, with or without arguments and line end", () => {
  assert.deepEqual(parseResponse("OK \r\n"), { ok: true, args: {} });
  assert.deepEqual(parseResponse("OK"), { ok: true, args: {} });
  assert.deepEqual(
    parseResponse("OK paths=1&path1=http://h:7500/dev1/0/000/000/0000000123.fid\n"),
    {
      ok: true,
      args: { paths: "1", path1: "http://h:7500/dev1/0/000/000/0000000123.fid" },
    },
  );
  assert.deepEqual(parseResponse("OK key_1=a+b%2Fc&key_count=1"), {
    ok: true,
    args: { key_1: "a b/c", key_count: "1" },
  });
});

Deno.test("parseResponse reads ERR lines: code and decoded text", () => {
  assert.deepEqual(parseResponse("ERR unknown_key unknown_key\r\n"), {
    ok: false,
    code: "unknown_key",
    text: "unknown_key",
  });
  assert.deepEqual(parseResponse("ERR no_domain No+domain+provided"), {
    ok: false,
    code: "no_domain",
    text: "No domain provided",
  });
  assert.deepEqual(parseResponse("ERR none_match"), { ok: false, code: "none_match", text: "" });
  // A text with a stray % is kept as sent (it is only for people).
  assert.deepEqual(parseResponse("ERR failure 100%+sure"), {
    ok: false,
    code: "failure",
    text: "100%+sure",
  });
});

Deno.test("parseResponse names values that are not UTF-8", () => {
  const r = parseResponse("OK fid_1_key=ok&fid_2_key=bad%FF%FE&fid_count=2");
  assert.ok(r.ok);
  assert.deepEqual(r.invalidUtf8, ["fid_2_key"]);
  assert.equal(r.args.fid_2_key, "bad\uFFFD\uFFFD");
  const clean = parseResponse("OK a=1");
  assert.ok(clean.ok);
  assert.equal(clean.invalidUtf8, undefined);
});

Deno.test("parseResponse rejects malformed lines with a SyntaxError naming the line", () => {
  const cases: [string, RegExp][] = [
    ["", /expected a line starting with OK or ERR/],
    ["HTTP/1.0 400 Bad request", /"HTTP\/1.0 400 Bad request": expected a line starting with OK/],
    ["OKAY a=1", /expected a line starting with OK or ERR/],
    ["ok a=1", /expected a line starting with OK or ERR/],
    ["ERR", /ERR without a code/],
    ["ERR  text", /ERR without a code/],
    ["OK a=1&garbage", /"garbage" has no "="/],
    ["OK a=%zz", /bad escape "%zz"/],
    ["\x00\x01\x7f", /"\\x00\\x01\\x7f"/],
  ];
  for (const [line, why] of cases) {
    assert.throws(() => parseResponse(line), (e: unknown) => {
      assert.ok(e instanceof SyntaxError, `${JSON.stringify(line)}: ${e}`);
      assert.match(e.message, why);
      return true;
    });
  }
});

Deno.test("parseResponse clips a very long malformed line in its message", () => {
  assert.throws(() => parseResponse("X".repeat(10_000)), (e: unknown) => {
    assert.ok(e instanceof SyntaxError);
    assert.ok(e.message.length < 200, `message of ${e.message.length} characters`);
    return true;
  });
});
