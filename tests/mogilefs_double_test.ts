/**
 * The MogileFS double is strict: it speaks mogilefsd's line protocol and
 * mogstored's HTTP as PROTOCOLS.md section 1 describes them, and refuses
 * what the real system would not tolerate or what a sloppy client gets
 * wrong. Driven here with raw TCP lines (Deno.connect) and fetch(), and an
 * encoder written for the test, not the double's own.
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { GARBAGE_LINE, MAX_LINE_BYTES, MogileFsDouble } from "./doubles/mogilefs.ts";

const utf8 = new TextEncoder();

/** Form-encodes as a MogileFS client must: `A-Za-z0-9_,-./\:` raw, space `+`, the rest `%XX`. */
function enc(text: string): string {
  let out = "";
  for (const b of utf8.encode(text)) {
    const c = String.fromCharCode(b);
    if (/[A-Za-z0-9_,\-./\\:]/.test(c)) out += c;
    else if (b === 0x20) out += "+";
    else out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
  }
  return out;
}

function q(args: Record<string, string | number>): string {
  return Object.entries(args).map(([k, v]) => `${enc(k)}=${enc(String(v))}`).join("&");
}

function md5(bytes: Uint8Array): string {
  return createHash("md5").update(bytes).digest("hex");
}

function bytesOf(n: number, seed = 1): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
}

/** A raw tracker connection: write bytes, read CRLF-terminated lines. */
class Conn {
  readonly #conn: Deno.TcpConn;
  #buf = new Uint8Array(0);
  #closed = false;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  static async open(address: string): Promise<Conn> {
    const [hostname, port] = address.split(":");
    return new Conn(await Deno.connect({ hostname: hostname as string, port: Number(port) }));
  }

  async write(text: string | Uint8Array): Promise<void> {
    const data = typeof text === "string" ? utf8.encode(text) : text;
    for (let off = 0; off < data.length;) off += await this.#conn.write(data.subarray(off));
  }

  /** The next line without its CRLF, or null at EOF (or a reset). */
  async line(): Promise<string | null> {
    for (;;) {
      for (let i = 0; i + 1 < this.#buf.length; i++) {
        if (this.#buf[i] === 0x0d && this.#buf[i + 1] === 0x0a) {
          const line = new TextDecoder("latin1").decode(this.#buf.subarray(0, i));
          this.#buf = this.#buf.subarray(i + 2);
          return line;
        }
      }
      const chunk = new Uint8Array(65536);
      let n: number | null;
      try {
        n = await this.#conn.read(chunk);
      } catch (e) {
        if (e instanceof Deno.errors.ConnectionReset) return null;
        throw e;
      }
      if (n === null) return null;
      const next = new Uint8Array(this.#buf.length + n);
      next.set(this.#buf);
      next.set(chunk.subarray(0, n), this.#buf.length);
      this.#buf = next;
    }
  }

  /** Sends `command args` with CRLF and reads the answer line. */
  async call(command: string, args: Record<string, string | number> = {}): Promise<string> {
    const a = q(args);
    await this.write(`${command}${a === "" ? "" : " " + a}\r\n`);
    const line = await this.line();
    assert.notEqual(line, null, `no answer to ${command}`);
    return line as string;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed by the peer */ }
  }
}

/** The fields of an `OK` line (decoded as standard form encoding). */
function ok(line: string): Map<string, string> {
  assert.ok(line.startsWith("OK "), `expected OK, got ${line}`);
  return new Map(new URLSearchParams(line.slice(3)));
}

/** Asserts an `ERR code text` line; returns the decoded text. */
function err(line: string, code: string): string {
  const m = /^ERR (\S+) (.*)$/.exec(line);
  assert.ok(m, `expected ERR ${code}, got ${line}`);
  assert.equal(m[1], code, `expected ERR ${code}, got ${line}`);
  return decodeURIComponent((m[2] as string).replace(/\+/g, " "));
}

function num(fields: Map<string, string>, key: string): number {
  const v = fields.get(key);
  assert.ok(v !== undefined, `no ${key} in the answer`);
  return Number(v);
}

/** The fids of a list_fids answer, in answer order. */
function fidsOf(fields: Map<string, string>): number[] {
  const n = num(fields, "fid_count");
  return Array.from({ length: n }, (_, i) => num(fields, `fid_${i + 1}_fid`));
}

async function withDouble(
  fn: (mogile: MogileFsDouble, t: Conn) => Promise<void>,
  options: Parameters<typeof MogileFsDouble.start>[0] = {},
): Promise<void> {
  const mogile = await MogileFsDouble.start(options);
  let t: Conn | null = null;
  try {
    t = await Conn.open(mogile.trackers[0] as string);
    await fn(mogile, t);
  } finally {
    t?.close();
    await mogile.close();
  }
}

/** create_open (multi_dest) + PUT + create_close over the wire; resolves to the fid. */
async function upload(
  t: Conn,
  domain: string,
  key: string,
  bytes: Uint8Array<ArrayBuffer>,
  cls = "",
): Promise<number> {
  const open = ok(await t.call("create_open", { domain, key, class: cls, fid: 0, multi_dest: 1 }));
  const fid = num(open, "fid");
  const path = open.get("path_1") as string;
  const res = await fetch(path, { method: "PUT", body: bytes });
  await res.body?.cancel();
  assert.equal(res.status, 201);
  const close = await t.call("create_close", {
    fid,
    devid: num(open, "devid_1"),
    path,
    domain,
    key,
    size: bytes.length,
  });
  assert.equal(close, "OK ");
  return fid;
}

async function get(url: string, init?: RequestInit): Promise<[number, Uint8Array, Headers]> {
  const res = await fetch(url, init);
  return [res.status, new Uint8Array(await res.arrayBuffer()), res.headers];
}

// ---------------------------------------------------------------------------
// Lines and encoding

Deno.test("mogilefs double: keys with spaces, &, =, %, + and unicode round-trip", async () => {
  await withDouble(async (mogile, t) => {
    const key = "dir/a b&c=d%e+f ünï 😀 ~*'()";
    const bytes = bytesOf(1000);
    const fid = await upload(t, "ugc", key, bytes);
    const info = await t.call("file_info", { domain: "ugc", key });
    // the answer is encoded as mogilefsd's eurl: upper-case hex, + for space, / raw
    assert.match(
      info,
      /key=dir\/a\+b%26c%3Dd%25e%2Bf\+%C3%BCn%C3%AF\+%F0%9F%98%80\+%7E%2A%27%28%29/,
    );
    const fields = ok(info);
    assert.equal(fields.get("key"), key);
    assert.equal(num(fields, "fid"), fid);
    assert.equal(
      ok(await t.call("list_keys", { domain: "ugc", prefix: "dir/a b&" })).get("key_1"),
      key,
    );
    assert.deepEqual(mogile.file("ugc", key)?.bytes, bytes);
    // lower-case hex escapes decode too (standard form encoding interoperates)
    await mogile.put("ugc", "ü", bytesOf(3));
    assert.equal(ok(await t.call("file_info", { domain: "ugc", key: "ü" })).get("key"), "ü");
    await t.write("file_info domain=ugc&key=%c3%bc\r\n");
    assert.equal(ok(await t.line() as string).get("key"), "ü");
  });
});

Deno.test("mogilefs double: bytes outside the safe set, bad escapes: bad_params", async () => {
  await withDouble(async (_mogile, t) => {
    const cases: [string, RegExp][] = [
      [
        "file_info domain=ugc&key=a b\r\n",
        /Invalid encoding: raw byte 0x20 at byte 16 of the arguments/,
      ],
      ["file_info domain=ugc&key=a*b\r\n", /raw byte "\*"/],
      ["file_info domain=ugc&key=a~b\r\n", /raw byte "~"/],
      ["file_info domain=ugc&key=%G1\r\n", /malformed escape "%G1"/],
      ["file_info domain=ugc&key=abc%4\r\n", /malformed escape "%4"/],
      ["file_info domain=ugc&key=a=b\r\n", /raw "=" in the value of argument "key"/],
      ["file_info domain=ugc&key&x=1\r\n", /argument "key" at byte 11 has no "="/],
      ["file_info domain=ugc&key=a&key=b\r\n", /argument "key" is given twice/],
      ["file_info domain=ugc&key=%FF\r\n", /does not decode to UTF-8/],
      ["file_info  domain=ugc&key=a\r\n", /raw byte 0x20 at byte 0/],
    ];
    for (const [line, why] of cases) {
      await t.write(line);
      assert.match(err(await t.line() as string, "bad_params"), why, line);
    }
    // a raw non-ASCII byte (unencoded UTF-8)
    await t.write(utf8.encode("file_info domain=ugc&key=ü\r\n"));
    assert.match(err(await t.line() as string, "bad_params"), /raw byte 0xC3/);
    // the connection is still usable
    assert.equal(await t.call("noop"), "OK ");
  });
});

Deno.test("mogilefs double: a line without CRLF is refused, an endless line closes", async () => {
  await withDouble(async (mogile, t) => {
    await t.write("noop\n");
    assert.match(err(await t.line() as string, "bad_params"), /must end with CRLF/);
    assert.equal(await t.call("noop"), "OK ");
    // blank lines are ignored, as mogilefsd does
    await t.write("\r\nnoop\r\n");
    assert.equal(await t.line(), "OK ");
    const long = await Conn.open(mogile.trackers[0] as string);
    try {
      await long.write("list_keys domain=ugc&prefix=" + "a".repeat(MAX_LINE_BYTES + 10));
      assert.match(err(await long.line() as string, "bad_params"), /longer than 65536 bytes/);
      assert.equal(await long.line(), null);
    } finally {
      long.close();
    }
  });
});

Deno.test("mogilefs double: pipelined requests are answered in order, keys shuffled", async () => {
  await withDouble(async (mogile, t) => {
    await mogile.put("ugc", "a", bytesOf(5));
    await t.write(
      "file_info domain=ugc&key=a\r\nfile_info domain=ugc&key=nope\r\nnoop\r\nget_domains\r\n",
    );
    assert.equal(ok(await t.line() as string).get("key"), "a");
    err(await t.line() as string, "unknown_key");
    assert.equal(await t.line(), "OK ");
    assert.equal(ok(await t.line() as string).get("domain1"), "ugc");
    const firstKeys = new Set<string>();
    for (let i = 0; i < 10; i++) {
      const line = await t.call("file_info", { domain: "ugc", key: "a" });
      firstKeys.add(line.slice(3).split("=")[0] as string);
    }
    assert.ok(firstKeys.size > 1, "the keys of OK answers always come in the same order");
  });
});

// ---------------------------------------------------------------------------
// Errors

Deno.test("mogilefs double: mogilefsd's error codes and texts", async () => {
  await withDouble(async (_mogile, t) => {
    assert.equal(
      await t.call("file_info", { domain: "ugc", key: "x" }),
      "ERR unknown_key unknown_key",
    );
    assert.equal(
      await t.call("get_paths", { domain: "ugc", key: "x" }),
      "ERR unknown_key unknown_key",
    );
    assert.equal(
      await t.call("delete", { domain: "ugc", key: "x" }),
      "ERR unknown_key unknown_key",
    );
    assert.equal(await t.call("file_info", { key: "x" }), "ERR no_domain No+domain+provided");
    assert.equal(
      await t.call("file_info", { domain: "", key: "x" }),
      "ERR no_domain No+domain+provided",
    );
    assert.equal(
      await t.call("file_info", { domain: "nope", key: "x" }),
      "ERR unreg_domain Domain+name+invalid/not+found",
    );
    assert.equal(await t.call("get_paths", { domain: "ugc" }), "ERR no_key no_key");
    assert.equal(
      await t.call("create_open", { domain: "ugc", key: "k", class: "nope" }),
      "ERR unreg_class unreg_class",
    );
    assert.match(err(await t.call("frobnicate", { a: 1 }), "unknown_command"), /frobnicate/);
    assert.equal(
      await t.call("list_keys", { domain: "ugc", prefix: "zzz" }),
      "ERR none_match No+keys+match+that+pattern+and+after-value+%28if+any%29.",
    );
    assert.match(err(await t.call("list_fids", { from: "x" }), "bad_params"), /from=x/);
  });
});

// ---------------------------------------------------------------------------
// list_fids

Deno.test("mogilefs double: list_fids answers the N lowest fids above from, shuffled", async () => {
  await withDouble(async (mogile, t) => {
    const fids: number[] = [];
    for (let i = 0; i < 30; i++) fids.push(await mogile.put("ugc", `k${i}`, bytesOf(i + 1)));
    assert.deepEqual([...fids].sort((a, b) => a - b), fids, "fids only grow");
    let unordered = 0;
    for (let i = 0; i < 8; i++) {
      const got = fidsOf(ok(await t.call("list_fids", { from: fids[3] as number, to: 10 })));
      assert.equal(got.length, 10);
      const sorted = [...got].sort((a, b) => a - b);
      assert.deepEqual(sorted, fids.slice(4, 14), "the 10 lowest fids above from (exclusive)");
      if (got.join() !== sorted.join()) unordered++;
    }
    assert.ok(unordered > 0, "list_fids answers are always sorted: the double must shuffle them");
    // every row's fields
    const one = ok(await t.call("list_fids", { from: fids[0] as number, to: 1 }));
    assert.equal(num(one, "fid_count"), 1);
    assert.equal(num(one, "fid_1_fid"), fids[1]);
    assert.equal(one.get("fid_1_domain"), "ugc");
    assert.equal(one.get("fid_1_key"), "k1");
    assert.equal(one.get("fid_1_class"), "default");
    assert.equal(num(one, "fid_1_length"), 2);
    assert.equal(num(one, "fid_1_devcount"), 2);
    // default count 100 (here: all 30); nothing above the last fid is fid_count=0, not an error
    assert.equal(fidsOf(ok(await t.call("list_fids", { from: 0 }))).length, 30);
    assert.equal(fidsOf(ok(await t.call("list_fids", { from: 0, to: 0 }))).length, 30);
    assert.equal(await t.call("list_fids", { from: fids[29] as number, to: 5 }), "OK fid_count=0");
  });
});

Deno.test("mogilefs double: list_fids clamps the count at 500; fids have gaps", async () => {
  await withDouble(async (mogile, t) => {
    const fids: number[] = [];
    for (let i = 0; i < 520; i++) fids.push(await mogile.put("ugc", `k${i}`, bytesOf(1)));
    for (const to of [501, 1000, -1]) {
      const got = fidsOf(ok(await t.call("list_fids", { from: 0, to })));
      assert.equal(got.length, 500, `to=${to}`);
      assert.deepEqual(got.sort((a, b) => a - b), fids.slice(0, 500));
    }
    const gaps = fids.filter((f, i) => i > 0 && f - (fids[i - 1] as number) > 1).length;
    assert.ok(gaps > 0, "fids have no gaps");
    assert.ok(fids.every((f, i) => i === 0 || f - (fids[i - 1] as number) <= 4), "gaps are 1-3");
  });
  await withDouble(async (mogile) => {
    const fids: number[] = [];
    for (let i = 0; i < 50; i++) fids.push(await mogile.put("ugc", `k${i}`, bytesOf(1)));
    assert.deepEqual(fids, Array.from({ length: 50 }, (_, i) => i + 1));
  }, { fidGaps: false });
});

Deno.test("mogilefs double: a slow upload's fid appears below fids closed before it", async () => {
  await withDouble(async (mogile, t) => {
    const slow = await mogile.openUpload("ugc", "slow", bytesOf(100));
    const fast = await mogile.put("ugc", "fast", bytesOf(50));
    assert.ok(slow.fid < fast);
    assert.deepEqual(fidsOf(ok(await t.call("list_fids", { from: 0 }))), [fast]);
    assert.deepEqual(mogile.openFids(), [slow.fid]);
    err(await t.call("file_info", { domain: "ugc", key: "slow" }), "unknown_key");
    await slow.finish();
    assert.deepEqual(mogile.openFids(), []);
    const all = fidsOf(ok(await t.call("list_fids", { from: 0 }))).sort((a, b) => a - b);
    assert.deepEqual(all, [slow.fid, fast]);
    // a client that only asks above its high-water mark never sees it
    assert.equal(await t.call("list_fids", { from: fast }), "OK fid_count=0");
  });
});

// ---------------------------------------------------------------------------
// list_keys, get_domains

Deno.test("mogilefs double: list_keys pages by key bytes: prefix, after, limit", async () => {
  await withDouble(async (mogile, t) => {
    for (const k of ["k05", "k01", "k03", "k02", "k04", "other", "k\uff61", "k😀"]) {
      await mogile.put("ugc", k, bytesOf(2));
    }
    const page1 = ok(await t.call("list_keys", { domain: "ugc", prefix: "k", limit: 2 }));
    assert.equal(num(page1, "key_count"), 2);
    assert.deepEqual([page1.get("key_1"), page1.get("key_2")], ["k01", "k02"]);
    assert.equal(page1.get("next_after"), "k02");
    const page2 = ok(
      await t.call("list_keys", { domain: "ugc", prefix: "k", after: "k02", limit: 10 }),
    );
    // UTF-8 byte order: U+FF61 (EF BD A1) sorts before U+1F600 (F0 9F 98 80); UTF-16 says otherwise
    const keys = Array.from(
      { length: num(page2, "key_count") },
      (_, i) => page2.get(`key_${i + 1}`),
    );
    assert.deepEqual(keys, ["k03", "k04", "k05", "k\uff61", "k😀"]);
    assert.equal(page2.get("next_after"), "k😀");
    err(await t.call("list_keys", { domain: "ugc", prefix: "k", after: "k😀" }), "none_match");
    err(await t.call("list_keys", { domain: "ugc", prefix: "k", after: "z" }), "after_mismatch");
    assert.equal(num(ok(await t.call("list_keys", { domain: "ugc" })), "key_count"), 8);
    err(await t.call("list_keys", {}), "no_domain");
  });
});

Deno.test("mogilefs double: get_domains lists domains and classes, default included", async () => {
  await withDouble(async (_mogile, t) => {
    const d = ok(await t.call("get_domains"));
    assert.equal(num(d, "domains"), 2);
    const i = d.get("domain1") === "ugc" ? 1 : 2;
    assert.equal(d.get(`domain${i}`), "ugc");
    assert.equal(num(d, `domain${i}classes`), 2);
    const classes = new Map<string, [string, string]>();
    for (let j = 1; j <= 2; j++) {
      classes.set(d.get(`domain${i}class${j}name`) as string, [
        d.get(`domain${i}class${j}mindevcount`) as string,
        d.get(`domain${i}class${j}hashtype`) as string,
      ]);
    }
    assert.deepEqual(classes.get("default"), ["2", "NONE"]);
    assert.deepEqual(classes.get("sums"), ["1", "MD5"]);
    assert.equal(d.get(`domain${3 - i}`), "test");
  }, { domains: { ugc: { sums: { mindevcount: 1, hashtype: "MD5" } }, test: {} } });
});

// ---------------------------------------------------------------------------
// Writing: create_open, PUT, create_close

Deno.test("mogilefs double: create_open hands out paths on distinct devices", async () => {
  await withDouble(async (mogile, t) => {
    const multi = ok(
      await t.call("create_open", { domain: "ugc", key: "k", fid: 0, multi_dest: 1 }),
    );
    assert.equal(num(multi, "dev_count"), 3);
    const devids = [1, 2, 3].map((n) => num(multi, `devid_${n}`));
    const nodesUsed = devids.map((d) => Math.ceil(d / 2));
    assert.deepEqual(nodesUsed.sort(), [1, 2, 3], "one device per node (devicesPerNode 2)");
    const fid = num(multi, "fid");
    for (const n of [1, 2, 3]) {
      const devid = devids[n - 1] as number;
      const node = mogile.nodes[Math.floor((devid - 1) / 2)];
      const padded = String(fid).padStart(10, "0");
      assert.equal(
        multi.get(`path_${n}`),
        `${node}/dev${devid}/${padded[0]}/${padded.slice(1, 4)}/${
          padded.slice(4, 7)
        }/${padded}.fid`,
      );
    }
    const single = ok(await t.call("create_open", { domain: "ugc", key: "k2", fid: 0 }));
    assert.deepEqual([...single.keys()].sort(), ["devid", "fid", "path"]);
    assert.ok(num(single, "fid") > fid);
    assert.deepEqual(mogile.openFids(), [fid, num(single, "fid")]);
    err(await t.call("create_open", { domain: "ugc", key: "k3", fid }), "fid_in_use");
  }, { nodes: 3, devicesPerNode: 2 });
});

Deno.test("mogilefs double: fid 123 on dev1 is at /dev1/0/000/000/0000000123.fid", async () => {
  await withDouble(async (mogile, t) => {
    const open = ok(await t.call("create_open", { domain: "ugc", key: "k", fid: 123 }));
    assert.equal(num(open, "fid"), 123);
    const path = open.get("path") as string;
    const devid = num(open, "devid");
    assert.equal(path, `${mogile.nodes[devid - 1]}/dev${devid}/0/000/000/0000000123.fid`);
  });
});

Deno.test("mogilefs double: create_close checks the size on the node (size_mismatch)", async () => {
  await withDouble(async (mogile, t) => {
    const open = ok(
      await t.call("create_open", { domain: "ugc", key: "k", fid: 0, multi_dest: 1 }),
    );
    const fid = num(open, "fid");
    const path = open.get("path_1") as string;
    const devid = num(open, "devid_1");
    const res = await fetch(path, { method: "PUT", body: bytesOf(7) });
    await res.body?.cancel();
    assert.equal(res.status, 201);
    const close = { fid, devid, path, domain: "ugc", key: "k" };
    const text = err(await t.call("create_close", { ...close, size: 10 }), "size_mismatch");
    assert.equal(text, `Expected: 10; actual: 7; path: ${path}`);
    // mogilefsd dropped the temp file: the fid is gone and a retry finds nothing to close
    assert.deepEqual(mogile.openFids(), []);
    err(await t.call("create_close", { ...close, size: 7 }), "no_temp_file");
    assert.equal((await get(path))[0], 404);
    err(await t.call("file_info", { domain: "ugc", key: "k" }), "unknown_key");
  });
});

Deno.test("mogilefs double: create_close verifies the MD5 with checksumverify=1", async () => {
  await withDouble(async (mogile, t) => {
    const bytes = bytesOf(300);
    const openAndPut = async (key: string) => {
      const open = ok(await t.call("create_open", { domain: "ugc", key, class: "sums", fid: 0 }));
      const path = open.get("path") as string;
      const res = await fetch(path, { method: "PUT", body: bytes });
      await res.body?.cancel();
      return { fid: num(open, "fid"), devid: num(open, "devid"), path, domain: "ugc", key };
    };
    const bad = await openAndPut("bad");
    const wrong = md5(bytesOf(300, 2));
    const text = err(
      await t.call("create_close", {
        ...bad,
        size: 300,
        checksum: `MD5:${wrong}`,
        checksumverify: 1,
      }),
      "checksum_mismatch",
    );
    assert.equal(text, `Expected: MD5:${wrong}; actual: MD5:${md5(bytes)}; path: ${bad.path}`);
    assert.deepEqual(mogile.openFids(), []);
    const good = await openAndPut("good");
    assert.equal(
      await t.call("create_close", {
        ...good,
        size: 300,
        checksum: `MD5:${md5(bytes).toUpperCase()}`,
        checksumverify: 1,
      }),
      "OK ",
    );
    const info = ok(await t.call("file_info", { domain: "ugc", key: "good" }));
    assert.equal(info.get("checksum"), `MD5:${md5(bytes)}`);
    assert.equal(info.get("class"), "sums");
    assert.equal(num(info, "devcount"), 1);
    const c = await openAndPut("c");
    err(await t.call("create_close", { ...c, checksum: "MD5:xyz" }), "invalid_checksum_format");
  }, { domains: { ugc: { sums: { mindevcount: 1, hashtype: "MD5" } } } });
});

Deno.test("mogilefs double: create_close refuses a wrong path, device, no upload", async () => {
  await withDouble(async (mogile, t) => {
    const open = ok(await t.call("create_open", { domain: "ugc", key: "k", fid: 0 }));
    const fid = num(open, "fid");
    const path = open.get("path") as string;
    const devid = num(open, "devid");
    const base = { fid, devid, domain: "ugc", key: "k", size: 3 };
    assert.match(
      err(
        await t.call("create_close", { ...base, path: path.replace("127.0.0.1", "localhost") }),
        "bogus_args",
      ),
      /Path does not match/,
    );
    const other = 3 - devid;
    const otherPath = `${mogile.nodes[other - 1]}/dev${other}${new URL(path).pathname.slice(5)}`;
    assert.match(
      err(
        await t.call("create_close", { ...base, devid: other, path: otherPath }),
        "invalid_destdev",
      ),
      new RegExp(`invalid dest ${other}\\. Valid devices were: ${devid}`),
    );
    // that close consumed the temp file, as mogilefsd's does
    err(await t.call("create_close", { ...base, path }), "no_temp_file");
    const again = ok(await t.call("create_open", { domain: "ugc", key: "k", fid: 0 }));
    const text = err(
      await t.call("create_close", {
        ...base,
        fid: num(again, "fid"),
        devid: num(again, "devid"),
        path: again.get("path") as string,
      }),
      "size_verify_error",
    );
    assert.match(text, /actual: 0 \(missing\)/);
    err(await t.call("create_close", { domain: "ugc", key: "k" }), "no_fid");
  });
});

Deno.test("mogilefs double: storage nodes refuse PUTs to paths not handed out", async () => {
  await withDouble(async (mogile, t) => {
    const node0 = mogile.nodes[0] as string;
    const [s1, b1] = await get(`${node0}/dev1/0/000/000/0000000999.fid`, {
      method: "PUT",
      body: "x",
    });
    assert.equal(s1, 403);
    assert.match(new TextDecoder().decode(b1), /fid 999 is not open/);
    const open = ok(await t.call("create_open", { domain: "ugc", key: "k", fid: 0 }));
    const devid = num(open, "devid");
    const path = open.get("path") as string;
    const other = 3 - devid;
    const otherPath = `${mogile.nodes[other - 1]}/dev${other}${new URL(path).pathname.slice(5)}`;
    const [s2, b2] = await get(otherPath, { method: "PUT", body: "x" });
    assert.equal(s2, 403);
    assert.match(new TextDecoder().decode(b2), new RegExp(`devices ${devid}, not ${other}`));
    // a device this node does not hold
    const foreign = `${mogile.nodes[devid === 1 ? 1 : 0]}${new URL(path).pathname}`;
    assert.equal((await get(foreign, { method: "PUT", body: "x" }))[0], 404);
    assert.equal((await get(path, { method: "DELETE" }))[0], 405);
    assert.equal((await get(path, { method: "PUT", body: "abc" }))[0], 201);
    assert.equal(
      await t.call("create_close", {
        fid: num(open, "fid"),
        devid,
        path,
        domain: "ugc",
        key: "k",
        size: 3,
      }),
      "OK ",
    );
    // closed: no more writes
    assert.equal((await get(path, { method: "PUT", body: "abcd" }))[0], 403);
    assert.deepEqual(mogile.file("ugc", "k")?.bytes, utf8.encode("abc"));
  });
});

Deno.test("mogilefs double: replacing a key gives a new fid, the old one goes", async () => {
  await withDouble(async (mogile, t) => {
    const first = await upload(t, "ugc", "k", bytesOf(10));
    const oldPaths = ok(await t.call("get_paths", { domain: "ugc", key: "k", noverify: 1 }));
    const second = await upload(t, "ugc", "k", bytesOf(20));
    assert.ok(second > first);
    assert.deepEqual(fidsOf(ok(await t.call("list_fids", { from: 0 }))), [second]);
    assert.equal(num(ok(await t.call("file_info", { domain: "ugc", key: "k" })), "length"), 20);
    assert.equal((await get(oldPaths.get("path1") as string))[0], 404);
    assert.deepEqual(mogile.files().map((f) => f.fid), [second]);
    assert.equal(await t.call("delete", { domain: "ugc", key: "k" }), "OK ");
    assert.equal(await t.call("list_fids", { from: 0 }), "OK fid_count=0");
    assert.equal(mogile.delete("ugc", "k"), false);
  });
});

// ---------------------------------------------------------------------------
// Reading: get_paths and storage GETs

Deno.test("mogilefs double: get_paths gives two working URLs; GET, HEAD and Range", async () => {
  await withDouble(async (mogile, t) => {
    const bytes = bytesOf(5000);
    const fid = await upload(t, "ugc", "k", bytes);
    const info = ok(await t.call("file_info", { domain: "ugc", key: "k", devices: 1 }));
    assert.equal(num(info, "devcount"), 2);
    assert.equal(info.get("devids")?.split(",").sort().join(), "1,2");
    assert.equal(info.has("checksum"), false);
    const paths = ok(
      await t.call("get_paths", { domain: "ugc", key: "k", noverify: 1, pathcount: 2 }),
    );
    assert.equal(num(paths, "paths"), 2);
    const urls = [paths.get("path1") as string, paths.get("path2") as string];
    assert.notEqual(new URL(urls[0] as string).host, new URL(urls[1] as string).host);
    for (const url of urls) {
      assert.ok(url.endsWith(`${String(fid).padStart(10, "0")}.fid`));
      const [status, body] = await get(url);
      assert.equal(status, 200);
      assert.deepEqual(body, bytes);
    }
    const head = await fetch(urls[0] as string, { method: "HEAD" });
    assert.equal(head.status, 200);
    assert.equal(head.headers.get("content-length"), "5000");
    const [s, part, h] = await get(urls[1] as string, { headers: { Range: "bytes=100-199" } });
    assert.equal(s, 206);
    assert.equal(h.get("content-range"), "bytes 100-199/5000");
    assert.deepEqual(part, bytes.subarray(100, 200));
    assert.equal((await get(urls[1] as string, { headers: { Range: "bytes=9000-" } }))[0], 416);
    assert.equal(num(ok(await t.call("get_paths", { domain: "ugc", key: "k" })), "paths"), 2);
    const c = mogile.counts();
    assert.equal(c.get_paths, 2);
    assert.equal(c.HEAD, 1);
    assert.ok((c.GET ?? 0) >= 4);
  });
});

Deno.test("mogilefs double: damage shortens or removes one replica only", async () => {
  await withDouble(async (mogile, t) => {
    const bytes = bytesOf(1000);
    await upload(t, "ugc", "k", bytes);
    const paths = ok(await t.call("get_paths", { domain: "ugc", key: "k", noverify: 1 }));
    const [p1, p2] = [paths.get("path1") as string, paths.get("path2") as string];
    mogile.damage("ugc", "k");
    assert.deepEqual((await get(p1))[1], bytes.subarray(0, 500));
    assert.deepEqual((await get(p2))[1], bytes);
    assert.equal(num(ok(await t.call("file_info", { domain: "ugc", key: "k" })), "length"), 1000);
    // without noverify the tracker checks the first path's size and skips the bad one
    const verified = ok(await t.call("get_paths", { domain: "ugc", key: "k" }));
    assert.equal(verified.get("path1"), p2);
    const devid2 = Number(/\/dev(\d+)\//.exec(p2)?.[1]);
    mogile.damage("ugc", "k", { devid: devid2, length: -1 });
    assert.equal((await get(p2))[0], 404);
    assert.equal((await fetch(p2, { method: "HEAD" })).status, 404);
    assert.throws(() => mogile.damage("ugc", "nope"), /no such key/);
  });
});

// ---------------------------------------------------------------------------
// Faults, trackers and nodes

Deno.test("mogilefs double: injected err, garbage, drop and delay", async () => {
  await withDouble(async (mogile, t) => {
    await mogile.put("ugc", "k", bytesOf(4));
    mogile.inject({ kind: "err", code: "failure", text: "Operation failed" }, {
      command: "get_paths",
      count: 2,
    });
    assert.equal(await t.call("noop"), "OK ", "a fault for get_paths spares other commands");
    assert.equal(
      await t.call("get_paths", { domain: "ugc", key: "k" }),
      "ERR failure Operation+failed",
    );
    err(await t.call("get_paths", { domain: "ugc", key: "k" }), "failure");
    assert.equal(num(ok(await t.call("get_paths", { domain: "ugc", key: "k" })), "paths"), 2);

    mogile.inject({ kind: "garbage" });
    assert.equal((await t.call("noop")) + "\r\n", GARBAGE_LINE);

    // delay: the answer comes late, and answers behind it wait their turn
    mogile.inject({ kind: "delay", ms: 150 }, { command: "file_info" });
    await t.write("file_info domain=ugc&key=k\r\nnoop\r\n");
    assert.equal(ok(await t.line() as string).get("key"), "k");
    assert.equal(await t.line(), "OK ");

    mogile.inject({ kind: "drop" }, { command: "delete" });
    await t.write("delete domain=ugc&key=k\r\n");
    assert.equal(await t.line(), null);
    assert.ok(mogile.file("ugc", "k"), "a dropped command does not run");

    const t2 = await Conn.open(mogile.trackers[0] as string);
    try {
      mogile.inject({ kind: "drop", afterExecute: true }, { command: "delete" });
      await t2.write("delete domain=ugc&key=k\r\n");
      assert.equal(await t2.line(), null);
      assert.equal(mogile.file("ugc", "k"), null, "afterExecute: it ran, only the answer was lost");
    } finally {
      t2.close();
    }
    const c = mogile.counts();
    assert.equal(c.get_paths, 3);
    assert.equal(c.delete, 2);
    assert.equal(c.connections, 2);
  });
});

Deno.test("mogilefs double: a tracker stops and starts again on the same port", async () => {
  await withDouble(async (mogile, t) => {
    const [a0, a1] = mogile.trackers as [string, string];
    assert.equal(mogile.url("ugc"), `mogilefs://${a0},${a1}/ugc`);
    assert.equal(mogile.url(), `mogilefs://${a0},${a1}`);
    // both trackers share one state
    const t1 = await Conn.open(a1);
    try {
      await upload(t1, "ugc", "k", bytesOf(9));
      assert.equal(num(ok(await t.call("file_info", { domain: "ugc", key: "k" })), "length"), 9);
    } finally {
      t1.close();
    }
    await mogile.stopTracker(0);
    assert.equal(await t.line(), null, "open connections are closed");
    const port = Number(a0.split(":")[1]);
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port }),
      Deno.errors.ConnectionRefused,
    );
    await mogile.startTracker(0);
    const again = await Conn.open(a0);
    try {
      assert.equal(
        num(ok(await again.call("file_info", { domain: "ugc", key: "k" })), "length"),
        9,
      );
    } finally {
      again.close();
    }
  }, { trackers: 2 });
});

Deno.test("mogilefs double: a stopped node refuses connections and gets no new files", async () => {
  await withDouble(async (mogile, t) => {
    const bytes = bytesOf(64);
    await upload(t, "ugc", "k", bytes);
    const paths = ok(await t.call("get_paths", { domain: "ugc", key: "k", noverify: 1 }));
    const url1 = paths.get("path1") as string;
    const nodeIndex = mogile.nodes.indexOf(new URL(url1).origin);
    await mogile.stopNode(nodeIndex);
    const port = Number(new URL(url1).port);
    await assert.rejects(
      Deno.connect({ hostname: "127.0.0.1", port }),
      Deno.errors.ConnectionRefused,
    );
    // the tracker offers the live replica first now, and writes only to live devices
    const now = ok(await t.call("get_paths", { domain: "ugc", key: "k" }));
    assert.equal(now.get("path1"), paths.get("path2"));
    const open = ok(
      await t.call("create_open", { domain: "ugc", key: "n", fid: 0, multi_dest: 1 }),
    );
    assert.equal(num(open, "dev_count"), 1);
    assert.notEqual(new URL(open.get("path_1") as string).origin, new URL(url1).origin);
    await mogile.startNode(nodeIndex);
    const client = Deno.createHttpClient({});
    try {
      const res = await fetch(url1, { client });
      assert.equal(res.status, 200);
      assert.deepEqual(new Uint8Array(await res.arrayBuffer()), bytes);
    } finally {
      client.close();
    }
    await mogile.stopNode(0);
    await mogile.stopNode(1);
    err(await t.call("create_open", { domain: "ugc", key: "x" }), "no_devices");
    await assert.rejects(mogile.put("ugc", "x", bytes), /ERR no_devices/);
  });
});

Deno.test("mogilefs double: classes set how many devices a file gets", async () => {
  await withDouble(async (mogile, t) => {
    await mogile.put("ugc", "one", bytesOf(1), { class: "single" });
    await mogile.put("ugc", "three", bytesOf(1), { class: "triple" });
    await mogile.put("ugc", "dflt", bytesOf(1));
    assert.equal(mogile.file("ugc", "one")?.devids.length, 1);
    assert.equal(mogile.file("ugc", "three")?.devids.length, 3);
    const dflt = mogile.file("ugc", "dflt")?.devids ?? [];
    assert.equal(dflt.length, 2);
    assert.notEqual(
      Math.ceil((dflt[0] as number) / 2),
      Math.ceil((dflt[1] as number) / 2),
      "other node first",
    );
    assert.equal(
      num(ok(await t.call("file_info", { domain: "ugc", key: "three" })), "devcount"),
      3,
    );
    await assert.rejects(mogile.put("ugc", "x", bytesOf(1), { class: "nope" }), /ERR unreg_class/);
  }, {
    domains: { ugc: { single: { mindevcount: 1 }, triple: { mindevcount: 3 } } },
    devicesPerNode: 2,
  });
});

Deno.test("mogilefs double: a cut PUT leaves a short file that create_close catches", async () => {
  await withDouble(async (_mogile, t) => {
    const open = ok(await t.call("create_open", { domain: "ugc", key: "k", fid: 0 }));
    const path = new URL(open.get("path") as string);
    const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(path.port) });
    try {
      await conn.write(utf8.encode(
        `PUT ${path.pathname} HTTP/1.1\r\nHost: ${path.host}\r\nContent-Length: 10\r\n\r\n12345`,
      ));
    } finally {
      conn.close();
    }
    // wait (by polling, not by time) until the node has noticed the cut
    let status = 0;
    for (let i = 0; i < 200 && status !== 200; i++) {
      const res = await fetch(path, { method: "HEAD" });
      status = res.status;
      if (status !== 200) await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(status, 200);
    const text = err(
      await t.call("create_close", {
        fid: num(open, "fid"),
        devid: num(open, "devid"),
        path: path.href,
        domain: "ugc",
        key: "k",
        size: 10,
      }),
      "size_mismatch",
    );
    assert.match(text, /^Expected: 10; actual: 5; /);
  });
});
