/**
 * Tests of the MogileFS client against the MogileFS test double (trackers
 * and storage nodes on 127.0.0.1): every command, tracker failover and
 * recovery, faults, storage node failover, truncated bodies, writes.
 *
 * Two cases need a peer that misbehaves in a way the double does not: a
 * tracker whose `get_paths` offers a path on a port nobody listens on, and
 * a storage node that sends fewer bytes than its Content-Length. Both are
 * small scripted servers below.
 *
 * Run: deno test --allow-read --allow-write --allow-env --allow-run
 *   --allow-net=127.0.0.1,localhost --allow-sys tests/mogilefs_client_test.ts
 */

import assert from "node:assert/strict";
import { MogileFsClient, type MogileFsClientOptions } from "../adapters/mogilefs/client.ts";
import { ChangedError, VanishedError } from "../core/errors.ts";
import { encodeArgs } from "../core/mogilefs_protocol.ts";
import type { TrackerAddress } from "../core/source_url.ts";
import { MogileFsDouble, type MogileFsDoubleOptions } from "./doubles/mogilefs.ts";
import { md5, portError } from "./_helpers.ts";
import { chunked, readAll } from "./_streams.ts";

const encoder = new TextEncoder();

function address(hostPort: string): TrackerAddress {
  const colon = hostPort.lastIndexOf(":");
  return { host: hostPort.slice(0, colon), port: Number(hostPort.slice(colon + 1)) };
}

function bytesOf(n: number, seed = 7): Uint8Array {
  return new Uint8Array(n).map((_, i) => (i * seed + (i >> 8)) & 0xff);
}

function streamOf(bytes: Uint8Array, chunk = 4096): () => ReadableStream<Uint8Array> {
  return () => chunked(bytes, [chunk]);
}

/** A double and a client on all its trackers, both closed afterwards. */
async function withMogile(
  options: MogileFsDoubleOptions,
  body: (mogile: MogileFsDouble, client: MogileFsClient) => Promise<void>,
  clientOptions: Partial<MogileFsClientOptions> = {},
): Promise<void> {
  const mogile = await MogileFsDouble.start(options);
  const client = new MogileFsClient({
    trackers: mogile.trackers.map(address),
    ...clientOptions,
  });
  try {
    await body(mogile, client);
  } finally {
    await client.close();
    await mogile.close();
  }
}

// ---------------------------------------------------------------------------
// Commands

Deno.test("listFids lists every file sorted by fid, in pages, from any start", async () => {
  // The double answers list_fids rows in a seeded random order.
  await withMogile({ seed: 42 }, async (mogile, client) => {
    for (let i = 0; i < 45; i++) await mogile.put("ugc", `k/${i}`, encoder.encode(`v${i}`));
    const all = mogile.files();
    const page = await client.listFids(0, 20);
    assert.deepEqual(page.map((r) => r.fid), all.slice(0, 20).map((f) => f.fid));
    const seen: number[] = [];
    let from = 0;
    for (;;) {
      const rows = await client.listFids(from, 20);
      for (let i = 1; i < rows.length; i++) {
        assert.ok(rows[i - 1]!.fid < rows[i]!.fid, "rows are not sorted by fid");
      }
      seen.push(...rows.map((r) => r.fid));
      if (rows.length < 20) break;
      from = rows.at(-1)!.fid;
    }
    assert.deepEqual(seen, all.map((f) => f.fid));
    const row = page[3]!;
    const file = all[3]!;
    assert.deepEqual(
      { fid: row.fid, domain: row.domain, key: row.key, class: row.class, length: row.length },
      { fid: file.fid, domain: "ugc", key: file.key, class: "default", length: file.length },
    );
    assert.equal(row.devcount, 2);
    assert.equal(row.keyIsUtf8, true);
    assert.deepEqual(await client.listFids(all.at(-1)!.fid, 500), []);
    await assert.rejects(client.listFids(0, 501), RangeError);
    await assert.rejects(client.listFids(-1, 10), RangeError);
  });
});

Deno.test("fileInfo, getPaths, delete: answers and unknown_key", async () => {
  await withMogile(
    { domains: { ugc: { sums: { hashtype: "MD5" } } } },
    async (mogile, client) => {
      const bytes = encoder.encode("hello, mogile");
      const key = "dir/ünï cødé & = %.txt";
      const fid = await mogile.put("ugc", key, bytes);
      const info = await client.fileInfo("ugc", key);
      assert.deepEqual(info, {
        fid,
        domain: "ugc",
        key,
        class: "default",
        length: bytes.length,
        devcount: 2,
        checksum: null,
      });
      const summed = await mogile.put("ugc", "summed", bytes, { class: "sums" });
      const sumInfo = await client.fileInfo("ugc", "summed");
      assert.equal(sumInfo.fid, summed);
      assert.equal(sumInfo.checksum, `MD5:${md5(bytes)}`);

      const paths = await client.getPaths("ugc", key);
      assert.equal(paths.length, 2);
      for (const p of paths) {
        assert.ok(mogile.nodes.some((n) => p.startsWith(n)), p);
        assert.ok(p.endsWith(`/${String(fid).padStart(10, "0")}.fid`), p);
      }

      await client.delete("ugc", key);
      assert.equal(mogile.file("ugc", key), null);
      await assert.rejects(client.fileInfo("ugc", key), portError("unknown_key", false, "ugc/"));
      await assert.rejects(client.getPaths("ugc", key), portError("unknown_key", false));
      await assert.rejects(client.delete("ugc", key), portError("unknown_key", false));
    },
  );
});

Deno.test("listKeys pages by prefix and after; no match is an empty page", async () => {
  await withMogile({}, async (mogile, client) => {
    for (const k of ["a/1", "a/2", "a/3", "b/1", "a_x"]) {
      await mogile.put("ugc", k, encoder.encode(k));
    }
    const first = await client.listKeys("ugc", { prefix: "a/", limit: 2 });
    assert.deepEqual(first.keys, ["a/1", "a/2"]);
    assert.equal(first.nextAfter, "a/2");
    const second = await client.listKeys("ugc", { prefix: "a/", after: "a/2", limit: 2 });
    assert.deepEqual(second.keys, ["a/3"]);
    assert.deepEqual(await client.listKeys("ugc", { prefix: "zzz" }), {
      keys: [],
      nextAfter: null,
    });
    assert.deepEqual((await client.listKeys("ugc")).keys, ["a/1", "a/2", "a/3", "a_x", "b/1"]);
  });
});

Deno.test("getDomains lists domains and classes with their hash types", async () => {
  await withMogile(
    { domains: { ugc: { thumbs: { mindevcount: 1 } }, test: { sums: { hashtype: "MD5" } } } },
    async (_mogile, client) => {
      const domains = await client.getDomains();
      const byName = new Map(domains.map((d) => [d.name, d]));
      assert.deepEqual([...byName.keys()].sort(), ["test", "ugc"]);
      assert.deepEqual(byName.get("ugc")!.classes.get("thumbs"), {
        name: "thumbs",
        mindevcount: 1,
        hashtype: null,
      });
      assert.equal(byName.get("test")!.classes.get("sums")!.hashtype, "MD5");
      assert.equal(byName.get("test")!.classes.get("default")!.hashtype, null);
    },
  );
});

Deno.test("an unknown domain is ERR unreg_domain, and the client goes on", async () => {
  await withMogile({}, async (mogile, client) => {
    await assert.rejects(
      client.fileInfo("nosuch", "k"),
      portError("unreg_domain", false, "nosuch", "ERR unreg_domain"),
    );
    await mogile.put("ugc", "k", encoder.encode("x"));
    assert.equal((await client.fileInfo("ugc", "k")).length, 1);
  });
});

Deno.test("concurrent callers share a few connections and each get their own answer", async () => {
  await withMogile({}, async (mogile, client) => {
    const keys = Array.from({ length: 30 }, (_, i) => `c/${i}`);
    const fids = new Map<string, number>();
    for (const k of keys) fids.set(k, await mogile.put("ugc", k, encoder.encode(k.repeat(3))));
    mogile.resetCounts();
    const results = await Promise.all(keys.map(async (k, i) => {
      if (i % 3 === 0) return (await client.fileInfo("ugc", k)).fid;
      if (i % 3 === 1) return (await client.getPaths("ugc", k))[0]!;
      return (await client.listFids(fids.get(k)! - 1, 1))[0]!.fid;
    }));
    results.forEach((r, i) => {
      const fid = fids.get(keys[i]!)!;
      if (typeof r === "number") assert.equal(r, fid, keys[i]);
      else assert.ok(r.endsWith(`${String(fid).padStart(10, "0")}.fid`), `${keys[i]}: ${r}`);
    });
    const connections = mogile.counts().connections ?? 0;
    assert.ok(connections >= 1 && connections <= 4, `${connections} connections`);
  });
});

// ---------------------------------------------------------------------------
// Tracker failures

Deno.test("a stopped tracker fails over to the next; a restarted one is used again", async () => {
  await withMogile({ trackers: 2 }, async (mogile, client) => {
    await mogile.put("ugc", "k", encoder.encode("x"));
    assert.equal((await client.fileInfo("ugc", "k")).length, 1);
    await mogile.stopTracker(0);
    assert.equal((await client.fileInfo("ugc", "k")).length, 1);
    assert.equal((await client.fileInfo("ugc", "k")).length, 1);
    // Tracker 0 comes back on its port, tracker 1 goes: 0 is used though marked down.
    await mogile.startTracker(0);
    await mogile.stopTracker(1);
    assert.equal((await client.fileInfo("ugc", "k")).length, 1);
    await mogile.stopTracker(0);
    await assert.rejects(
      client.fileInfo("ugc", "k"),
      portError("TrackerUnavailable", true, mogile.trackers[0]!, mogile.trackers[1]!, "refused"),
    );
    await mogile.startTracker(1);
    assert.equal((await client.fileInfo("ugc", "k")).length, 1);
  });
});

Deno.test("a lone tracker restarted on the same port is reached again", async () => {
  await withMogile({}, async (mogile, client) => {
    await mogile.put("ugc", "k", encoder.encode("x"));
    assert.equal((await client.fileInfo("ugc", "k")).fid > 0, true);
    // The idle connection dies with the tracker.
    await mogile.stopTracker(0);
    await assert.rejects(client.fileInfo("ugc", "k"), portError("TrackerUnavailable", true));
    await mogile.startTracker(0);
    assert.equal((await client.fileInfo("ugc", "k")).length, 1);
    // And once more with the tracker bounced between two requests.
    await mogile.stopTracker(0);
    await mogile.startTracker(0);
    assert.equal((await client.fileInfo("ugc", "k")).length, 1);
  });
});

Deno.test("a connection dropped mid-request goes to the next tracker", async () => {
  await withMogile({ trackers: 2 }, async (mogile, client) => {
    await mogile.put("ugc", "k", encoder.encode("x"));
    mogile.inject({ kind: "drop" }, { command: "file_info" });
    assert.equal((await client.fileInfo("ugc", "k")).length, 1);
    assert.equal(mogile.counts().file_info, 2);
  });
});

Deno.test("a dropped connection on a lone tracker is TrackerUnavailable naming the cause", async () => {
  await withMogile({}, async (mogile, client) => {
    await mogile.put("ugc", "k", encoder.encode("x"));
    await client.fileInfo("ugc", "k"); // an idle connection now exists
    // Dropped on the reused connection, then on a fresh one.
    mogile.inject({ kind: "drop" }, { command: "file_info", count: 2 });
    await assert.rejects(
      client.fileInfo("ugc", "k"),
      portError("TrackerUnavailable", true, "file_info", "closed the connection"),
    );
    assert.equal((await client.fileInfo("ugc", "k")).length, 1);
  });
});

Deno.test("a command that changes something is not sent twice after a drop", async () => {
  await withMogile({}, async (mogile, client) => {
    await mogile.put("ugc", "k", encoder.encode("x"));
    await client.fileInfo("ugc", "k");
    mogile.inject({ kind: "drop", afterExecute: true }, { command: "delete" });
    await assert.rejects(client.delete("ugc", "k"), portError("TrackerUnavailable", true));
    assert.equal(mogile.counts().delete, 1);
    assert.equal(mogile.file("ugc", "k"), null);
  });
});

Deno.test("ERR answers become PortErrors with the tracker's code", async () => {
  await withMogile({}, async (mogile, client) => {
    await mogile.put("ugc", "k", encoder.encode("x"));
    const cases: [string, boolean][] = [
      ["db", true],
      ["failure", true],
      ["no_devices", true],
      ["plugin_aborted", false],
      ["unknown_command", false],
    ];
    for (const [code, retryable] of cases) {
      mogile.inject({ kind: "err", code, text: `text of ${code}` }, { command: "file_info" });
      await assert.rejects(
        client.fileInfo("ugc", "k"),
        portError(code, retryable, `ERR ${code}`, `text of ${code}`, 'ugc/"k"'),
      );
    }
    assert.equal((await client.fileInfo("ugc", "k")).length, 1);
  });
});

Deno.test("a slow tracker times out and the next one answers", async () => {
  await withMogile({ trackers: 2 }, async (mogile, client) => {
    await mogile.put("ugc", "k", encoder.encode("x"));
    mogile.inject({ kind: "delay", ms: 5_000 }, { command: "file_info" });
    assert.equal((await client.fileInfo("ugc", "k")).length, 1);
  }, { timeoutMs: 200 });
});

Deno.test("a slow lone tracker is TrackerUnavailable naming the timeout", async () => {
  await withMogile({}, async (mogile, client) => {
    await mogile.put("ugc", "k", encoder.encode("x"));
    mogile.inject({ kind: "delay", ms: 5_000 }, { command: "get_paths" });
    await assert.rejects(
      client.getPaths("ugc", "k"),
      portError("TrackerUnavailable", true, "no answer within 200 ms"),
    );
    // The late answer must not be taken for the next request's.
    assert.equal((await client.fileInfo("ugc", "k")).length, 1);
  }, { timeoutMs: 200 });
});

Deno.test("a malformed answer fails over, or is TrackerUnavailable naming it", async () => {
  await withMogile({ trackers: 2 }, async (mogile, client) => {
    await mogile.put("ugc", "k", encoder.encode("x"));
    mogile.inject({ kind: "garbage" }, { command: "file_info" });
    assert.equal((await client.fileInfo("ugc", "k")).length, 1);
    mogile.inject({ kind: "garbage" }, { command: "file_info", count: 2 });
    await assert.rejects(
      client.fileInfo("ugc", "k"),
      portError("TrackerUnavailable", true, "malformed answer", "OKAY"),
    );
  });
});

Deno.test("an abort rejects with the signal's reason, before and during a request", async () => {
  await withMogile({}, async (mogile, client) => {
    await mogile.put("ugc", "k", encoder.encode("x"));
    const reason = new Error("stop now");
    await assert.rejects(
      client.fileInfo("ugc", "k", { signal: AbortSignal.abort(reason) }),
      (e) => e === reason,
    );
    mogile.inject({ kind: "delay", ms: 5_000 }, { command: "file_info" });
    const controller = new AbortController();
    const pending = client.fileInfo("ugc", "k", { signal: controller.signal });
    setTimeout(() => controller.abort(reason), 50);
    await assert.rejects(pending, (e) => e === reason);
    assert.equal((await client.fileInfo("ugc", "k")).length, 1);
  });
});

Deno.test("a closed client refuses calls with PortError Closed", async () => {
  await withMogile({}, async (_mogile, client) => {
    await client.close();
    await client.close();
    await assert.rejects(client.getDomains(), portError("Closed", false));
  });
});

// ---------------------------------------------------------------------------
// Reads

Deno.test("openRead reads the bytes; a gone key is VanishedError, a new fid ChangedError", async () => {
  await withMogile({}, async (mogile, client) => {
    const bytes = bytesOf(300_001);
    const fid = await mogile.put("ugc", "big", bytes);
    const got = await readAll(
      await client.openRead("ugc", "big", { expectLength: bytes.length, expectFid: fid }),
    );
    assert.equal(md5(got), md5(bytes));
    const newer = await mogile.put("ugc", "big", encoder.encode("small now"));
    await assert.rejects(client.openRead("ugc", "big", { expectFid: fid }), (e: unknown) => {
      assert.ok(e instanceof ChangedError, `${e}`);
      assert.match(e.message, new RegExp(`"big" changed: it is fid ${newer} now, not fid ${fid}`));
      return true;
    });
    mogile.delete("ugc", "big");
    await assert.rejects(client.openRead("ugc", "big"), (e: unknown) => {
      assert.ok(e instanceof VanishedError, `${e}`);
      assert.match(e.message, /ugc\/"big" is gone/);
      return true;
    });
  });
});

Deno.test("openRead skips a missing replica (404) and one of the wrong length", async () => {
  await withMogile({}, async (mogile, client) => {
    const bytes = bytesOf(10_000);
    const fid = await mogile.put("ugc", "k", bytes);
    const read = async () =>
      md5(
        await readAll(await client.openRead("ugc", "k", { expectLength: 10_000, expectFid: fid })),
      );
    const [first, second] = mogile.file("ugc", "k")!.devids;
    mogile.damage("ugc", "k", { devid: first!, length: -1 });
    mogile.resetCounts();
    assert.equal(await read(), md5(bytes));
    assert.equal(mogile.counts().GET, 2);
    await mogile.put("ugc", "k2", bytes);
    mogile.damage("ugc", "k2"); // the first path now has half the bytes
    assert.equal(
      md5(await readAll(await client.openRead("ugc", "k2", { expectLength: bytes.length }))),
      md5(bytes),
    );
    // Every replica damaged: every readable copy has the wrong length.
    assert.ok(second !== undefined);
    await mogile.put("ugc", "k3", bytes);
    for (const devid of mogile.file("ugc", "k3")!.devids) {
      mogile.damage("ugc", "k3", { devid, length: 100 });
    }
    await assert.rejects(
      client.openRead("ugc", "k3", { expectLength: bytes.length }),
      portError("LengthMismatch", true, 'ugc/"k3"', "100 bytes, not 10000"),
    );
  });
});

Deno.test("openRead with every storage node down is NoReadablePath naming key and fid", async () => {
  await withMogile({}, async (mogile, client) => {
    const fid = await mogile.put("ugc", "k", encoder.encode("x"));
    const before = md5(await readAll(await client.openRead("ugc", "k")));
    assert.equal(before, md5(encoder.encode("x")));
    await mogile.stopNode(0);
    await mogile.stopNode(1);
    await assert.rejects(
      client.openRead("ugc", "k", { expectFid: fid }),
      portError("NoReadablePath", true, 'ugc/"k"', `fid ${fid}`),
    );
    await mogile.startNode(1);
    assert.equal(md5(await readAll(await client.openRead("ugc", "k"))), before);
  });
});

/** A scripted tracker: answers every request line (without CRLF) with `answer(command, line)`. */
function scriptedTracker(answer: (command: string, line: string) => string): {
  address: TrackerAddress;
  close(): Promise<void>;
} {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns = new Set<Deno.Conn>();
  const served = (async () => {
    const serving: Promise<void>[] = [];
    for await (const conn of listener) {
      conns.add(conn);
      serving.push((async () => {
        const buf = new Uint8Array(65536);
        let text = "";
        try {
          for (;;) {
            const n = await conn.read(buf);
            if (n === null) break;
            text += new TextDecoder().decode(buf.subarray(0, n));
            for (let nl = text.indexOf("\n"); nl >= 0; nl = text.indexOf("\n")) {
              const line = text.slice(0, nl).replace(/\r$/, "");
              text = text.slice(nl + 1);
              await conn.write(encoder.encode(answer(line.split(" ")[0]!, line)));
            }
          }
        } catch {
          // closed
        } finally {
          conns.delete(conn);
          try {
            conn.close();
          } catch { /* closed */ }
        }
      })());
    }
    await Promise.all(serving);
  })();
  return {
    address: { host: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port },
    async close() {
      listener.close();
      for (const c of conns) {
        try {
          c.close();
        } catch { /* closed */ }
      }
      await served;
    },
  };
}

/** A scripted storage node: reads one PUT per connection, answers `status(body)`. */
function scriptedNode(status: (body: Uint8Array) => number): {
  port: number;
  close(): Promise<void>;
} {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    for await (const conn of listener) {
      try {
        let data = new Uint8Array(0);
        const buf = new Uint8Array(65536);
        let want = -1;
        let headEnd = -1;
        for (;;) {
          const n = await conn.read(buf);
          if (n === null) break;
          const next = new Uint8Array(data.length + n);
          next.set(data);
          next.set(buf.subarray(0, n), data.length);
          data = next;
          if (headEnd < 0) {
            const text = new TextDecoder().decode(data);
            const i = text.indexOf("\r\n\r\n");
            if (i < 0) continue;
            headEnd = i + 4;
            want = Number(/content-length: *(\d+)/i.exec(text.slice(0, i))?.[1] ?? "0");
          }
          if (data.length - headEnd >= want) break;
        }
        const code = status(data.subarray(headEnd, headEnd + want));
        await conn.write(encoder.encode(`HTTP/1.1 ${code} X\r\nContent-Length: 0\r\n\r\n`));
      } catch {
        // the client went away
      } finally {
        try {
          conn.close();
        } catch { /* closed */ }
      }
    }
  })();
  return {
    port: (listener.addr as Deno.NetAddr).port,
    async close() {
      listener.close();
      await served.catch(() => {});
    },
  };
}

/** A port nobody listens on (bound, then closed). */
function deadPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

Deno.test("a second answer line to one request is never taken for the next answer", async () => {
  // Some mogilefsd versions answer an unknown domain twice (check_domain's
  // ERR, then the caller's); a client that reused the connection would read
  // the second line as the answer to its next request.
  const tracker = scriptedTracker((command) =>
    command === "file_info"
      ? "ERR unreg_domain Domain+name+invalid/not+found\r\nERR domain_not_found Domain+not+found\r\n"
      : `OK ${encodeArgs({ domains: 0 })}\r\n`
  );
  const client = new MogileFsClient({ trackers: [tracker.address] });
  try {
    for (let i = 0; i < 3; i++) {
      await assert.rejects(
        client.fileInfo("nosuch", "k"),
        portError("unreg_domain", false, "Domain name invalid/not found"),
      );
      assert.deepEqual(await client.getDomains(), []);
    }
  } finally {
    await client.close();
    await tracker.close();
  }
});

Deno.test("openRead fails over from a refused storage node to the next path", async () => {
  const mogile = await MogileFsDouble.start();
  const bytes = bytesOf(5000);
  const fid = await mogile.put("ugc", "k", bytes);
  const real = mogile.file("ugc", "k")!;
  const suffix = `/dev${real.devids[0]}/0/000/000/${String(fid).padStart(10, "0")}.fid`;
  const goodPath = `${mogile.nodes[Math.floor(real.devids[0]! - 1)]!}${suffix}`;
  const badPath = `http://127.0.0.1:${deadPort()}${suffix}`;
  const tracker = scriptedTracker(() =>
    `OK ${encodeArgs({ paths: 2, path1: badPath, path2: goodPath })}\r\n`
  );
  const client = new MogileFsClient({ trackers: [tracker.address] });
  try {
    const got = await readAll(await client.openRead("ugc", "k", { expectFid: fid }));
    assert.equal(md5(got), md5(bytes));
  } finally {
    await client.close();
    await tracker.close();
    await mogile.close();
  }
});

Deno.test("a body cut short of its Content-Length errors with Truncated", async () => {
  const node = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const nodePort = (node.addr as Deno.NetAddr).port;
  const serving = (async () => {
    for await (const conn of node) {
      try {
        const buf = new Uint8Array(4096);
        await conn.read(buf);
        await conn.write(
          encoder.encode("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + "x".repeat(400)),
        );
      } finally {
        conn.close();
      }
    }
  })();
  const path = `http://127.0.0.1:${nodePort}/dev1/0/000/000/0000000007.fid`;
  const tracker = scriptedTracker(() => `OK ${encodeArgs({ paths: 1, path1: path })}\r\n`);
  const client = new MogileFsClient({ trackers: [tracker.address] });
  try {
    const stream = await client.openRead("ugc", "k", { expectLength: 1000, expectFid: 7 });
    await assert.rejects(
      readAll(stream),
      portError("Truncated", true, 'ugc/"k"', "fid 7", "after 400 of 1000 bytes"),
    );
  } finally {
    await client.close();
    await tracker.close();
    node.close();
    await serving.catch(() => {});
  }
});

// ---------------------------------------------------------------------------
// Writes

Deno.test("write stores the bytes and replaces an existing key", async () => {
  await withMogile({}, async (mogile, client) => {
    const bytes = bytesOf(200_000);
    const result = await client.write(
      "ugc",
      "w/ü 1",
      "",
      bytes.length,
      md5(bytes),
      streamOf(bytes),
    );
    const file = mogile.file("ugc", "w/ü 1")!;
    assert.equal(file.fid, result.fid);
    assert.equal(file.class, "default");
    assert.equal(md5(file.bytes), md5(bytes));
    const again = encoder.encode("replaced");
    const second = await client.write(
      "ugc",
      "w/ü 1",
      "",
      again.length,
      md5(again),
      streamOf(again),
    );
    assert.notEqual(second.fid, result.fid);
    assert.equal(md5(mogile.file("ugc", "w/ü 1")!.bytes), md5(again));
    const empty = new Uint8Array(0);
    await client.write("ugc", "empty", "", 0, md5(empty), streamOf(empty));
    assert.equal(mogile.file("ugc", "empty")!.length, 0);
    assert.deepEqual(mogile.openFids(), []);
  });
});

Deno.test("write to an MD5 class sends the checksum; an unknown class is unreg_class", async () => {
  await withMogile(
    { domains: { ugc: { sums: { hashtype: "MD5", mindevcount: 1 } } } },
    async (mogile, client) => {
      const bytes = bytesOf(5000);
      await client.write("ugc", "s", "sums", bytes.length, md5(bytes), streamOf(bytes));
      assert.equal((await client.fileInfo("ugc", "s")).checksum, `MD5:${md5(bytes)}`);
      assert.equal(mogile.file("ugc", "s")!.class, "sums");
      await assert.rejects(
        client.write("ugc", "t", "nosuch", bytes.length, md5(bytes), streamOf(bytes)),
        portError("unreg_class", false, "create_open"),
      );
    },
  );
});

Deno.test("write with the wrong md5 or length is refused and leaves no key", async () => {
  await withMogile({}, async (mogile, client) => {
    const bytes = bytesOf(10_000);
    await assert.rejects(
      client.write("ugc", "bad", "", bytes.length, md5(encoder.encode("other")), streamOf(bytes)),
      portError("ChecksumMismatch", false, 'ugc/"bad"', md5(bytes)),
    );
    assert.equal(mogile.file("ugc", "bad"), null);
    await assert.rejects(
      client.write("ugc", "short", "", bytes.length + 5, md5(bytes), streamOf(bytes)),
      portError("LengthMismatch", false, "10000 bytes, not the promised 10005"),
    );
    await assert.rejects(
      client.write("ugc", "long", "", bytes.length - 5, md5(bytes), streamOf(bytes)),
      portError("LengthMismatch", false, "more than the promised 9995"),
    );
    assert.equal(mogile.file("ugc", "short"), null);
    assert.equal(mogile.file("ugc", "long"), null);
    // Nothing was closed: the tracker reaps the temp files.
    assert.equal(mogile.openFids().length, 3);
    await assert.rejects(
      client.write("ugc", "x", "", 1, "not-an-md5", streamOf(new Uint8Array(1))),
      TypeError,
    );
  });
});

Deno.test("write fails over to the next path when a storage node refuses", async () => {
  const bytes = bytesOf(3000);
  const received: Uint8Array[] = [];
  const node = scriptedNode((body) => {
    received.push(body);
    return 201;
  });
  const dead = `http://127.0.0.1:${deadPort()}/dev1/0/000/000/0000000042.fid`;
  const good = `http://127.0.0.1:${node.port}/dev2/0/000/000/0000000042.fid`;
  const lines: string[] = [];
  const tracker = scriptedTracker((command, line) => {
    lines.push(line);
    if (command === "get_domains") {
      return `OK ${
        encodeArgs({
          domains: 1,
          domain1: "ugc",
          domain1classes: 1,
          domain1class1name: "sums",
          domain1class1hashtype: "MD5",
        })
      }\r\n`;
    }
    if (command === "create_open") {
      return `OK ${
        encodeArgs({ fid: 42, dev_count: 2, devid_1: 1, path_1: dead, devid_2: 2, path_2: good })
      }\r\n`;
    }
    return "OK \r\n";
  });
  const client = new MogileFsClient({ trackers: [tracker.address] });
  try {
    const result = await client.write("ugc", "k", "sums", 3000, md5(bytes), streamOf(bytes));
    assert.deepEqual(result, { fid: 42, devid: 2, path: good });
    assert.equal(received.length, 1);
    assert.equal(md5(received[0]!), md5(bytes));
    const close = lines.find((l) => l.startsWith("create_close "));
    assert.equal(
      close,
      `create_close ${
        encodeArgs({
          fid: 42,
          devid: 2,
          path: good,
          domain: "ugc",
          key: "k",
          size: 3000,
          checksum: `MD5:${md5(bytes)}`,
          checksumverify: 1,
        })
      }`,
    );
    assert.ok(
      lines.some((l) => l === "create_open domain=ugc&key=k&class=sums&fid=0&multi_dest=1"),
      lines.join("\n"),
    );
  } finally {
    await client.close();
    await tracker.close();
    await node.close();
  }
});

Deno.test("write with no path taking the bytes is NoWritablePath naming the paths", async () => {
  const bytes = bytesOf(100);
  const node = scriptedNode(() => 507);
  const full = `http://127.0.0.1:${node.port}/dev2/0/000/000/0000000042.fid`;
  const tracker = scriptedTracker((command) =>
    command === "create_open"
      ? `OK ${encodeArgs({ fid: 42, devid: 2, path: full })}\r\n`
      : `OK ${encodeArgs({ domains: 0 })}\r\n`
  );
  const client = new MogileFsClient({ trackers: [tracker.address] });
  try {
    await assert.rejects(
      client.write("ugc", "k", "", 100, md5(bytes), streamOf(bytes)),
      portError("NoWritablePath", true, "fid 42", `${full}: HTTP 507`),
    );
  } finally {
    await client.close();
    await tracker.close();
    await node.close();
  }
});

Deno.test("a failing body rejects the write with the body's own error", async () => {
  await withMogile({}, async (mogile, client) => {
    const boom = new Error("source broke");
    const body = () =>
      new ReadableStream<Uint8Array>({
        start(c) {
          c.enqueue(new Uint8Array(10));
        },
        pull(c) {
          c.error(boom);
        },
      });
    await assert.rejects(
      client.write("ugc", "b", "", 100, "0".repeat(32), body),
      (e) => e === boom,
    );
    assert.equal(mogile.file("ugc", "b"), null);
  });
});
