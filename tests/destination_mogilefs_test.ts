/**
 * Tests of the MogileFS destination against the MogileFS test double: the
 * shared Destination conformance suite, then domain and class overrides,
 * checksums for an MD5 class, tracker failover during a write.
 *
 * Run: deno test --allow-read --allow-write --allow-env --allow-run
 *   --allow-net=127.0.0.1,localhost --allow-sys tests/destination_mogilefs_test.ts
 * @module
 */

import assert from "node:assert/strict";
import {
  MogileFsDestination,
  type MogileFsDestinationOptions,
} from "../adapters/destination/mogilefs.ts";
import { MogileFsClient } from "../adapters/mogilefs/client.ts";
import type { TrackerAddress } from "../core/source_url.ts";
import { MogileFsDouble, type MogileFsDoubleOptions } from "./doubles/mogilefs.ts";
import { destinationConformance, file } from "./destination_conformance.ts";
import { bytesOf, md5, portError } from "./_helpers.ts";
import { readAll } from "./_streams.ts";

const encoder = new TextEncoder();

function address(hostPort: string): TrackerAddress {
  const colon = hostPort.lastIndexOf(":");
  return { host: hostPort.slice(0, colon), port: Number(hostPort.slice(colon + 1)) };
}

destinationConformance("MogileFsDestination", async () => {
  const mogile = await MogileFsDouble.start();
  const destination = await MogileFsDestination.open({
    trackers: mogile.trackers.map(address),
    domain: "ugc",
  });
  return {
    destination,
    peek: (key) => Promise.resolve(mogile.file("ugc", key)?.bytes ?? null),
    cleanup: () => mogile.close(),
    badKeys: ["", "k".repeat(256), "ü".repeat(128)],
    // No multipart path: a few MiB checks that nothing is buffered or cut.
    largeSize: 3 * 1024 * 1024 + 5,
  };
});

/** A double and a destination on it, both closed afterwards. */
async function withDestination(
  options: MogileFsDoubleOptions,
  body: (mogile: MogileFsDouble, destination: MogileFsDestination) => Promise<void>,
  destinationOptions: Partial<MogileFsDestinationOptions> = {},
): Promise<void> {
  const mogile = await MogileFsDouble.start(options);
  const destination = await MogileFsDestination.open({
    trackers: mogile.trackers.map(address),
    domain: "ugc",
    ...destinationOptions,
  });
  try {
    await body(mogile, destination);
  } finally {
    await destination.close();
    await mogile.close();
  }
}

Deno.test("location names every tracker and the domain; writes name the key", async () => {
  await withDestination({ trackers: 2 }, async (mogile, destination) => {
    assert.equal(destination.location, `mogilefs://${mogile.trackers.join(",")}/ugc`);
    const result = await destination.write(file("a b/ü.txt", encoder.encode("x")));
    assert.equal(result.location, `${destination.location}/a%20b/%C3%BC.txt`);
  });
});

Deno.test("a write's class and domain override the destination's", async () => {
  await withDestination(
    { domains: { ugc: { thumbs: { mindevcount: 1 } }, test: { keep: { mindevcount: 2 } } } },
    async (mogile, destination) => {
      const bytes = bytesOf(1, 3000);
      await destination.write(file("plain.bin", bytes));
      assert.equal(mogile.file("ugc", "plain.bin")!.class, "default");
      await destination.write({ ...file("thumb.png", bytes), storageClass: "thumbs" });
      assert.equal(mogile.file("ugc", "thumb.png")!.class, "thumbs");
      await destination.write({ ...file("thumb2.png", bytes), storageClass: "" });
      assert.equal(mogile.file("ugc", "thumb2.png")!.class, "default");
      await destination.write({
        ...file("drill/1.bin", bytes),
        domain: "test",
        storageClass: "keep",
      });
      assert.equal(mogile.file("ugc", "drill/1.bin"), null);
      const there = mogile.file("test", "drill/1.bin")!;
      assert.equal(there.class, "keep");
      assert.equal(md5(there.bytes), md5(bytes));
      assert.equal(await destination.read("drill/1.bin"), null);
      assert.equal(
        md5(await readAll((await destination.read("drill/1.bin", { domain: "test" }))!)),
        md5(bytes),
      );
      // The same key in another domain is another file: no DestinationExists.
      await destination.write({ ...file("plain.bin", bytes), domain: "test" });
      await assert.rejects(
        destination.write({ ...file("x", bytes), storageClass: "nosuch" }),
        portError("unreg_class", false, "create_open", '"x"'),
      );
      await assert.rejects(
        destination.write({ ...file("x", bytes), domain: "nosuch" }),
        portError("unreg_domain", false, "nosuch"),
      );
    },
  );
});

Deno.test("an MD5 class gets the checksum, verified by the tracker", async () => {
  await withDestination(
    { domains: { ugc: { sums: { hashtype: "MD5", mindevcount: 1 } } } },
    async (mogile, destination) => {
      const bytes = bytesOf(2, 70_000);
      await destination.write({ ...file("summed.bin", bytes), storageClass: "sums" });
      const client = new MogileFsClient({ trackers: mogile.trackers.map(address) });
      try {
        const info = await client.fileInfo("ugc", "summed.bin");
        assert.equal(info.checksum, `MD5:${md5(bytes)}`);
        assert.equal(info.class, "sums");
      } finally {
        await client.close();
      }
    },
  );
});

Deno.test("a write goes on through the second tracker when the first is down", async () => {
  await withDestination({ trackers: 2 }, async (mogile, destination) => {
    await mogile.stopTracker(0);
    const bytes = bytesOf(3, 5000);
    await destination.write(file("failover.bin", bytes));
    assert.equal(md5(mogile.file("ugc", "failover.bin")!.bytes), md5(bytes));
  });
});

Deno.test("DestinationExists names the key and its fid; nothing is sent", async () => {
  await withDestination({}, async (mogile, destination) => {
    const fid = await mogile.put("ugc", "taken", encoder.encode("theirs"));
    mogile.resetCounts();
    await assert.rejects(
      destination.write(file("taken", encoder.encode("ours"))),
      portError("DestinationExists", false, '"taken"', `fid ${fid}`),
    );
    assert.equal(mogile.counts().create_open, undefined);
    assert.equal(mogile.counts().PUT, undefined);
  });
});

Deno.test("a tracker that cannot reach the storage node is a retryable error", async () => {
  await withDestination({}, async (mogile, destination) => {
    mogile.inject({ kind: "err", code: "size_verify_error", text: "cantreach" }, {
      command: "create_close",
    });
    await assert.rejects(
      destination.write(file("k", encoder.encode("bytes"))),
      portError("size_verify_error", true, "create_close", '"k"'),
    );
    assert.equal(mogile.file("ugc", "k"), null);
    await destination.write(file("k", encoder.encode("bytes")));
    assert.equal(mogile.file("ugc", "k")!.length, 5);
  });
});
