/**
 * Tests of the S3 bucket source against its test peer: `s3rver` (a real S3
 * server) behind the strict double in `tests/doubles/s3_archive.ts`, which
 * serves ListObjectsV2 with each object's real storage class. The shared
 * Source conformance suite first, then what only S3 has: prefixes, cursor
 * paging, folder markers and archive classes, ETag checks, faults.
 *
 * Run: deno test --allow-read --allow-write --allow-env --allow-run
 *   --allow-net=127.0.0.1,localhost --allow-sys tests/source_s3_test.ts
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { DeleteObjectCommand, PutObjectCommand, type StorageClass } from "@aws-sdk/client-s3";
import { FOLDER_MARKER_REASON, S3Source, type S3SourceOptions } from "../adapters/source/s3.ts";
import { ChangedError, PortError, VanishedError } from "../core/errors.ts";
import type { ListPage, Source } from "../core/ports.ts";
import { refusedS3Connection, S3ArchiveDouble } from "./doubles/s3_archive.ts";
import { entryOf, listAll, sourceConformance } from "./source_conformance.ts";
import { expectError, portError } from "./_helpers.ts";
import { readAll } from "./_streams.ts";

const BUCKET = "coldpack-source";
const encoder = new TextEncoder();

/** A double with one bucket, a client to fill it, and sources over it. */
interface Peer {
  readonly s3: S3ArchiveDouble;
  /** Puts an object straight into the bucket (full key). */
  put(key: string, bytes: Uint8Array, storageClass?: StorageClass): Promise<void>;
  remove(key: string): Promise<void>;
  /** Opens a source on `prefix` over the double. */
  source(prefix: string, options?: S3SourceOptions): Promise<S3Source>;
  close(): Promise<void>;
}

async function startPeer(): Promise<Peer> {
  const s3 = await S3ArchiveDouble.start();
  const client = s3.client();
  const sources: S3Source[] = [];
  try {
    await s3.createBucket(BUCKET);
  } catch (e) {
    client.destroy();
    await s3.close();
    throw e;
  }
  return {
    s3,
    put: async (key, bytes, storageClass) => {
      await client.send(
        new PutObjectCommand({
          Bucket: BUCKET,
          Key: key,
          Body: bytes,
          ContentLength: bytes.length,
          ...(storageClass === undefined ? {} : { StorageClass: storageClass }),
        }),
      );
    },
    remove: async (key) => {
      await client.send(new DeleteObjectCommand({ Bucket: BUCKET, Key: key }));
    },
    source: async (prefix, options = {}) => {
      const source = await S3Source.open({ kind: "s3", bucket: BUCKET, prefix }, {
        ...s3.connection,
        ...options,
      });
      sources.push(source);
      return source;
    },
    close: async () => {
      for (const source of sources) await source.close();
      client.destroy();
      await s3.close();
    },
  };
}

async function withPeer(body: (peer: Peer) => Promise<void>): Promise<void> {
  const peer = await startPeer();
  try {
    await body(peer);
  } finally {
    await peer.close();
  }
}

sourceConformance("S3Source", async () => {
  const peer = await startPeer();
  try {
    const source = await peer.source("ugc/photos/", { pageSize: 7 });
    return {
      source,
      pageSize: 7,
      put: (key, bytes) => peer.put(`ugc/photos/${key}`, bytes),
      remove: (key) => peer.remove(`ugc/photos/${key}`),
      cleanup: () => peer.close(),
    };
  } catch (e) {
    await peer.close();
    throw e;
  }
});

Deno.test("s3 source: id, no pollMs, an hourly rescan", async () => {
  await withPeer(async (peer) => {
    const source = await peer.source("ugc/");
    assert.equal(source.id, `s3://${BUCKET}/ugc/`);
    assert.equal((source as Source).pollMs, undefined);
    assert.equal(source.rescanMs, 3_600_000);
    assert.equal((await peer.source("")).id, `s3://${BUCKET}/`);
  });
});

Deno.test("s3 source: a page size outside 1..1000 is a RangeError", async () => {
  for (const pageSize of [0, 1001, 1.5]) {
    await assert.rejects(
      S3Source.open({ kind: "s3", bucket: BUCKET, prefix: "" }, { pageSize }),
      expectError(RangeError, String(pageSize)),
    );
  }
});

Deno.test("s3 source: entries carry the ETag, the size and LastModified", async () => {
  await withPeer(async (peer) => {
    const data = encoder.encode("some bytes of a photo");
    const before = Date.now();
    await peer.put("p/a.jpg", data);
    const entry = await entryOf(await peer.source("p/"), "a.jpg");
    assert.equal(entry.version, createHash("md5").update(data).digest("hex"));
    assert.equal(entry.length, data.length);
    // S3 keeps LastModified to the second.
    assert.ok(
      Math.abs(entry.mtimeMs - before) < 5_000,
      `mtimeMs ${entry.mtimeMs} is not the put time ${before}`,
    );
    assert.equal(entry.mtimeMs % 1000, 0);
  });
});

Deno.test("s3 source: the prefix is cut exactly; keys outside it are not listed", async () => {
  await withPeer(async (peer) => {
    for (const key of ["photos/a.jpg", "photos/sub/b.jpg", "photosX/c.jpg", "other/d.jpg", "e"]) {
      await peer.put(key, encoder.encode(key));
    }
    const keys = async (prefix: string) =>
      [...(await listAll(await peer.source(prefix))).entries.keys()].sort();
    assert.deepEqual(await keys("photos/"), ["a.jpg", "sub/b.jpg"]);
    assert.deepEqual(await keys("photos"), ["/a.jpg", "/sub/b.jpg", "X/c.jpg"]);
    assert.deepEqual(await keys(""), [
      "e",
      "other/d.jpg",
      "photos/a.jpg",
      "photos/sub/b.jpg",
      "photosX/c.jpg",
    ]);
    const source = await peer.source("photos");
    const entry = await entryOf(source, "X/c.jpg");
    assert.deepEqual(await readAll(await source.open(entry)), encoder.encode("photosX/c.jpg"));
  });
});

Deno.test("s3 source: one request per page; the cursor is the last full key; after continues", async () => {
  await withPeer(async (peer) => {
    const keys = ["k0", "k1", "k2", "k3", "k4"];
    for (const k of keys) await peer.put(`pre/${k}`, encoder.encode(k));
    await peer.put("pre0", encoder.encode("outside"));
    const source = await peer.source("pre/", { pageSize: 2 });
    const lists = peer.s3.requestCount("ListObjectsV2");
    const pages: ListPage[] = [];
    for await (const page of source.list()) pages.push(page);
    assert.equal(peer.s3.requestCount("ListObjectsV2") - lists, 3);
    assert.deepEqual(pages.map((p) => p.entries.map((e) => e.key)), [
      ["k0", "k1"],
      ["k2", "k3"],
      ["k4"],
    ]);
    assert.deepEqual(pages.map((p) => p.cursor), ["pre/k1", "pre/k3", "pre/k4"]);

    const rest: string[] = [];
    for await (const page of source.list({ after: "pre/k1" })) {
      rest.push(...page.entries.map((e) => e.key));
    }
    assert.deepEqual(rest, ["k2", "k3", "k4"]);
    let after: string[] = [];
    for await (const page of source.list({ after: "pre/k4" })) after = [...after, page.cursor!];
    assert.deepEqual(after, [], "nothing after the last key");
    // A cursor between keys works too (it need not be a key that exists).
    const between: string[] = [];
    for await (const page of source.list({ after: "pre/k2a" })) {
      between.push(...page.entries.map((e) => e.key));
    }
    assert.deepEqual(between, ["k3", "k4"]);
  });
});

Deno.test("s3 source: folder markers and archive classes are skipped, saying why", async () => {
  await withPeer(async (peer) => {
    await peer.put("p/", new Uint8Array(0));
    await peer.put("p/dir/", new Uint8Array(0));
    await peer.put("p/dir/file.txt", encoder.encode("file"));
    await peer.put("p/not-a-folder/", encoder.encode("has bytes"));
    await peer.put("p/cold.bin", encoder.encode("cold"), "GLACIER");
    await peer.put("p/deep.bin", encoder.encode("deep"), "DEEP_ARCHIVE");
    await peer.put("p/instant.bin", encoder.encode("instant"), "GLACIER_IR");
    await peer.put("p/ia.bin", encoder.encode("ia"), "STANDARD_IA");
    const source = await peer.source("p/");
    const listing = await listAll(source);
    assert.deepEqual([...listing.entries.keys()].sort(), [
      "dir/file.txt",
      "ia.bin",
      "instant.bin",
      "not-a-folder/",
    ]);
    const reasons = Object.fromEntries(listing.skipped.map((s) => [s.key, s.reason]));
    assert.deepEqual(Object.keys(reasons).sort(), ["cold.bin", "deep.bin", "dir/", "p/"]);
    assert.equal(reasons["dir/"], FOLDER_MARKER_REASON);
    assert.equal(reasons["p/"], FOLDER_MARKER_REASON);
    assert.match(reasons["cold.bin"]!, /storage class GLACIER: not readable without a restore/);
    assert.match(reasons["deep.bin"]!, /storage class DEEP_ARCHIVE: not readable without/);
    const instant = listing.entries.get("instant.bin")!;
    assert.deepEqual(await readAll(await source.open(instant)), encoder.encode("instant"));
  });
});

Deno.test("s3 source: another ETag or length at open is ChangedError naming the key", async () => {
  await withPeer(async (peer) => {
    await peer.put("p/x.txt", encoder.encode("first"));
    const source = await peer.source("p/");
    const old = await entryOf(source, "x.txt");
    // Same length, other bytes: only the ETag tells.
    await peer.put("p/x.txt", encoder.encode("secnd"));
    await assert.rejects(source.open(old), expectError(ChangedError, '"x.txt"', old.version));
    const current = await entryOf(source, "x.txt");
    assert.notEqual(current.version, old.version);
    await assert.rejects(
      source.open({ ...current, length: current.length + 1 }),
      expectError(ChangedError, '"x.txt"', "length 6 -> 5"),
    );
    assert.deepEqual(await readAll(await source.open(current)), encoder.encode("secnd"));
  });
});

Deno.test("s3 source: an object replaced between listing and open is S3's 412, a ChangedError", async () => {
  await withPeer(async (peer) => {
    await peer.put("p/race.txt", encoder.encode("before"));
    const source = await peer.source("p/");
    const listed = await entryOf(source, "race.txt");
    // Another writer replaces it (same length: only the ETag differs) just as the GET arrives.
    peer.s3.beforeNext("GetObject", () => peer.put("p/race.txt", encoder.encode("after!")));
    let failure: unknown;
    await assert.rejects(source.open(listed), (e: unknown) => {
      failure = e;
      return expectError(ChangedError, '"race.txt"', `no longer has the ETag ${listed.version}`)(e);
    });
    // The If-Match path: S3's 412 is the cause, from the one GET made.
    const cause = (failure as Error).cause;
    assert.ok(cause instanceof PortError, `cause: ${cause}`);
    assert.equal(cause.code, "PreconditionFailed");
    assert.match(cause.message, /HTTP 412/);
    assert.equal(peer.s3.requestCount("GetObject"), 1);
    const current = await entryOf(source, "race.txt");
    assert.deepEqual(await readAll(await source.open(current)), encoder.encode("after!"));
  });
});

Deno.test("s3 source: a deleted object is VanishedError naming the key", async () => {
  await withPeer(async (peer) => {
    await peer.put("p/sub/gone.txt", encoder.encode("soon gone"));
    const source = await peer.source("p/");
    const entry = await entryOf(source, "sub/gone.txt");
    await peer.remove("p/sub/gone.txt");
    await assert.rejects(source.open(entry), expectError(VanishedError, '"sub/gone.txt"'));
  });
});

Deno.test("s3 source: faults are retryable PortErrors with their code", async () => {
  await withPeer(async (peer) => {
    await peer.put("p/a.txt", encoder.encode("a"));
    const source = await peer.source("p/");
    const entry = await entryOf(source, "a.txt");
    const list = async () => {
      for await (const _ of source.list()) { /* nothing */ }
    };

    peer.s3.inject({ kind: "InternalError", op: "ListObjectsV2" });
    await assert.rejects(list(), portError("InternalError", true, "ListObjectsV2", BUCKET));
    peer.s3.inject({ kind: "SlowDown", op: "GetObject" });
    await assert.rejects(source.open(entry), portError("SlowDown", true, "GetObject", "p/a.txt"));
    // Deno's HTTP client re-sends once, unseen, a request whose reused
    // keep-alive connection was reset; two resets reach the source.
    peer.s3.inject({ kind: "reset", op: "GetObject", count: 2 });
    await assert.rejects(source.open(entry), portError("ECONNRESET", true, "GetObject"));
    peer.s3.clearFaults();
    peer.s3.inject({ kind: "reset", op: "ListObjectsV2", count: 2 });
    await assert.rejects(list(), portError("ECONNRESET", true, "ListObjectsV2"));
    peer.s3.clearFaults();
    // Everything works again once the faults are gone.
    assert.deepEqual(await readAll(await source.open(entry)), encoder.encode("a"));
  });
});

Deno.test("s3 source: a body cut short is a retryable TruncatedBody", async () => {
  await withPeer(async (peer) => {
    const data = new Uint8Array(300_000).map((_, i) => i * 7);
    await peer.put("p/big.bin", data);
    const source = await peer.source("p/");
    const entry = await entryOf(source, "big.bin");
    peer.s3.inject({ kind: "truncate", op: "GetObject" });
    await assert.rejects(
      (async () => await readAll(await source.open(entry)))(),
      portError("TruncatedBody", true, '"big.bin"', `s3://${BUCKET}/p/`),
    );
    assert.deepEqual(await readAll(await source.open(entry)), data);
  });
});

Deno.test("s3 source: a refused connection is a retryable ECONNREFUSED", async () => {
  const refused = refusedS3Connection();
  const source = await S3Source.open({ kind: "s3", bucket: BUCKET, prefix: "p/" }, refused);
  try {
    await assert.rejects(
      (async () => {
        for await (const _ of source.list()) { /* nothing */ }
      })(),
      (e: unknown) => {
        portError("ECONNREFUSED", true, "ListObjectsV2", `s3://${BUCKET}/p/`)(e);
        assert.ok(!(e as Error).message.includes(refused.credentials.secretAccessKey));
        return true;
      },
    );
  } finally {
    await source.close();
  }
});

Deno.test("s3 source: a missing bucket is NoSuchBucket, not retryable", async () => {
  await withPeer(async (peer) => {
    const source = await S3Source.open(
      { kind: "s3", bucket: "no-such-bucket", prefix: "" },
      peer.s3.connection,
    );
    try {
      await assert.rejects(
        (async () => {
          for await (const _ of source.list()) { /* nothing */ }
        })(),
        portError("NoSuchBucket", false, "no-such-bucket"),
      );
    } finally {
      await source.close();
    }
  });
});

Deno.test("s3 source: a signal aborted while listing stops the listing with its reason", async () => {
  await withPeer(async (peer) => {
    await peer.put("p/a", encoder.encode("a"));
    const source = await peer.source("p/");
    peer.s3.inject({ kind: "slow", op: "ListObjectsV2", delayMs: 30_000 });
    const controller = new AbortController();
    const reason = new Error("operator stopped the listing");
    const pending = (async () => {
      for await (const _ of source.list({ signal: controller.signal })) { /* nothing */ }
    })();
    while (peer.s3.requestCount("ListObjectsV2") < 1) {
      await new Promise((r) => setTimeout(r, 5));
    }
    controller.abort(reason);
    await assert.rejects(pending, (e) => e === reason);
  });
});
