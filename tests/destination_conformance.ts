/**
 * The conformance suite every {@linkcode Destination} must pass. It drives
 * the destination only through the `Destination` interface, and checks what
 * is really there through the fixture's `peek` (which reads around the
 * destination), so that the local, S3 and MogileFS destinations are held to
 * the same rules: all or nothing, md5 and length checked before anything
 * becomes visible, no clobbering unless asked, aborts honoured.
 *
 * @example
 * ```ts
 * destinationConformance("LocalDestination", async () => {
 *   const root = await Deno.makeTempDir();
 *   const destination = await LocalDestination.open(root);
 *   return {
 *     destination,
 *     peek: (key) => Deno.readFile(`${root}/${key}`).catch(() => null),
 *     cleanup: () => Deno.remove(root, { recursive: true }),
 *     badKeys: ["", "/abs", "a/../b"],
 *   };
 * });
 * ```
 * @module
 */

import assert from "node:assert/strict";
import type { Destination, DestinationWrite } from "../core/ports.ts";
import { assertBytes, bytesOf, fixtureTests, md5, portError } from "./_helpers.ts";
import { chunked, failingStream, readAll, stallingStream } from "./_streams.ts";

/** A fresh, empty destination and a way to see what it holds. */
export interface DestinationFixture {
  readonly destination: Destination;
  /** What is at `key` now, read directly (not through the destination), or null. */
  peek(key: string): Promise<Uint8Array | null>;
  /** Removes whatever the fixture made (called after destination.close()). */
  cleanup(): Promise<void>;
  /** Keys this destination must refuse with TypeError (default none). */
  readonly badKeys?: readonly string[];
  /** A size that takes the multipart path, when the destination has one. */
  readonly largeSize?: number;
}

const MIB = 1024 * 1024;
const encoder = new TextEncoder();

/**
 * Registers the conformance tests for one Destination implementation.
 *
 * @param name shown in front of each test's name
 * @param setup makes a fresh, empty destination per test
 */
export function destinationConformance(
  name: string,
  setup: () => Promise<DestinationFixture>,
): void {
  const test = fixtureTests(name, setup, {
    teardown: async (fixture) => {
      await fixture.destination.close();
      await fixture.cleanup();
    },
  });

  test("has a non-empty location", ({ destination }) => {
    assert.equal(typeof destination.location, "string");
    assert.ok(destination.location.length > 0, "the location is empty");
    return Promise.resolve();
  });

  test("writes files of every shape; read and peek give the same bytes", async (fixture) => {
    const files = new Map<string, Uint8Array>([
      ["small.txt", encoder.encode("hello")],
      ["empty", new Uint8Array(0)],
      ["nested/a/b/c/deep.bin", bytesOf(1, 70_000)],
      ["ünïcødé/日本語 ファイル.txt", encoder.encode("unicode ✓")],
      ["with space/x y (1).txt", encoder.encode("spaces")],
      ["emoji/🎉 party.txt", encoder.encode("🎉")],
      ["multi-chunk.bin", bytesOf(2, MIB + 17)],
    ]);
    for (const [key, bytes] of files) {
      const result = await fixture.destination.write(file(key, bytes));
      assert.equal(typeof result.location, "string");
      assert.ok(result.location.length > 0, `the location of ${key} is empty`);
    }
    for (const [key, bytes] of files) {
      assertBytes(await fixture.peek(key), bytes, `peek of ${key}`);
      const stream = await fixture.destination.read(key);
      assert.ok(stream !== null, `read of ${key} found nothing`);
      assertBytes(await readAll(stream), bytes, `read of ${key}`);
    }
  });

  test("read of a missing key is null", async ({ destination }) => {
    assert.equal(await destination.read("no/such/file.txt"), null);
    await destination.write(file("present.txt", encoder.encode("x")));
    assert.equal(await destination.read("present.txt/x"), null);
    assert.equal(await destination.read("presen"), null);
  });

  test("a wrong md5 is ChecksumMismatch and leaves nothing", async (fixture) => {
    const bytes = bytesOf(3, 10_000);
    await assert.rejects(
      fixture.destination.write({ ...file("bad/md5.bin", bytes), md5: md5(new Uint8Array(1)) }),
      portError("ChecksumMismatch", false, "bad/md5.bin"),
    );
    assert.equal(await fixture.peek("bad/md5.bin"), null, "a file with the wrong md5 is there");
  });

  test("a wrong md5 over an existing file keeps the old bytes", async (fixture) => {
    const old = encoder.encode("old bytes");
    await fixture.destination.write(file("keep.txt", old));
    await assert.rejects(
      fixture.destination.write({
        ...file("keep.txt", encoder.encode("new bytes")),
        md5: md5(old),
        overwrite: true,
      }),
      portError("ChecksumMismatch", false, "keep.txt"),
    );
    assertBytes(await fixture.peek("keep.txt"), old, "the old bytes");
  });

  test("a body shorter than its length is LengthMismatch and leaves nothing", async (fixture) => {
    const bytes = bytesOf(4, 5000);
    await assert.rejects(
      fixture.destination.write({ ...file("short.bin", bytes), length: bytes.length + 1 }),
      portError("LengthMismatch", false, "short.bin"),
    );
    assert.equal(await fixture.peek("short.bin"), null);
  });

  test("a body longer than its length is LengthMismatch and leaves nothing", async (fixture) => {
    const bytes = bytesOf(5, 5000);
    await assert.rejects(
      fixture.destination.write({
        ...file("long.bin", bytes),
        length: bytes.length - 1,
        md5: md5(bytes.subarray(0, bytes.length - 1)),
      }),
      portError("LengthMismatch", false, "long.bin"),
    );
    assert.equal(await fixture.peek("long.bin"), null);
  });

  test("overwrite false on an existing key is DestinationExists; old bytes intact", async (fixture) => {
    const old = encoder.encode("first version");
    await fixture.destination.write(file("dir/taken.txt", old));
    await assert.rejects(
      fixture.destination.write(file("dir/taken.txt", encoder.encode("second version"))),
      portError("DestinationExists", false, "dir/taken.txt"),
    );
    await assert.rejects(
      fixture.destination.write({
        ...file("dir/taken.txt", encoder.encode("third")),
        overwrite: false,
      }),
      portError("DestinationExists", false, "dir/taken.txt"),
    );
    assertBytes(await fixture.peek("dir/taken.txt"), old, "the first version");
  });

  test("overwrite true replaces the file", async (fixture) => {
    await fixture.destination.write(file("replace.txt", encoder.encode("a much longer old text")));
    const now = encoder.encode("new");
    await fixture.destination.write({ ...file("replace.txt", now), overwrite: true });
    assertBytes(await fixture.peek("replace.txt"), now, "the new bytes");
    assertBytes(await readAll((await fixture.destination.read("replace.txt"))!), now, "read");
  });

  test("a body that fails part-way rejects and changes nothing", async (fixture) => {
    const bytes = bytesOf(6, 3 * 64 * 1024);
    const failure = new Error("the archive read failed");
    const failing = () => failingStream(bytes, 64 * 1024 + 10, failure);
    await assert.rejects(
      fixture.destination.write({ ...file("fails/new.bin", bytes), body: failing }),
      causedBy(failure),
    );
    assert.equal(await fixture.peek("fails/new.bin"), null, "a partial new file is there");
    const old = encoder.encode("previous content");
    await fixture.destination.write(file("fails/old.bin", old));
    await assert.rejects(
      fixture.destination.write({
        ...file("fails/old.bin", bytes),
        body: failing,
        overwrite: true,
      }),
      causedBy(failure),
    );
    assertBytes(await fixture.peek("fails/old.bin"), old, "the previous content");
  });

  test("an aborted signal rejects with its reason and writes nothing", async (fixture) => {
    const bytes = bytesOf(7, 1000);
    const controller = new AbortController();
    const reason = new Error("operator stopped the restore");
    controller.abort(reason);
    await assert.rejects(
      fixture.destination.write({ ...file("aborted.bin", bytes), signal: controller.signal }),
      (e: unknown) => {
        assert.ok(e === reason || (e instanceof Error && e.name === "AbortError"), `got ${e}`);
        return true;
      },
    );
    assert.equal(await fixture.peek("aborted.bin"), null);
  });

  test("a signal aborted mid-write rejects with its reason and writes nothing", async (fixture) => {
    const bytes = bytesOf(8, 4 * 64 * 1024);
    const controller = new AbortController();
    const reason = new Error("operator stopped the restore midway");
    await assert.rejects(
      fixture.destination.write({
        ...file("midway.bin", bytes),
        body: () => stallingStream(bytes, 2 * 64 * 1024, controller, reason),
        signal: controller.signal,
      }),
      (e: unknown) => {
        assert.ok(e === reason || (e instanceof Error && e.name === "AbortError"), `got ${e}`);
        return true;
      },
    );
    assert.equal(await fixture.peek("midway.bin"), null);
  });

  test("keys it cannot hold are a TypeError naming the key", async (fixture) => {
    for (const key of fixture.badKeys ?? []) {
      await assert.rejects(
        fixture.destination.write(file(key, encoder.encode("x"))),
        (e: unknown) => {
          assert.ok(e instanceof TypeError, `${JSON.stringify(key)}: expected TypeError, got ${e}`);
          assert.ok(
            e.message.includes(JSON.stringify(key)) || e.message.includes(key),
            `the message does not name ${JSON.stringify(key)}: ${e.message}`,
          );
          return true;
        },
      );
    }
  });

  test("a large file round-trips and a wrong md5 leaves nothing", async (fixture) => {
    const size = fixture.largeSize;
    if (size === undefined) return;
    const bytes = bytesOf(9, size);
    await assert.rejects(
      fixture.destination.write({ ...file("large/bad.bin", bytes), md5: md5(new Uint8Array(2)) }),
      portError("ChecksumMismatch", false, "large/bad.bin"),
    );
    assert.equal(await fixture.peek("large/bad.bin"), null);
    await assert.rejects(
      fixture.destination.write({ ...file("large/short.bin", bytes), length: size + 1 }),
      portError("LengthMismatch", false, "large/short.bin"),
    );
    assert.equal(await fixture.peek("large/short.bin"), null);
    await fixture.destination.write(file("large/ok.bin", bytes));
    assertBytes(await fixture.peek("large/ok.bin"), bytes, "peek of the large file");
    assertBytes(
      await readAll((await fixture.destination.read("large/ok.bin"))!),
      bytes,
      "read of the large file",
    );
  });
}

/** A write of `bytes` at `key` with the right length and md5, in 64 KiB chunks. */
export function file(key: string, bytes: Uint8Array): DestinationWrite {
  return { key, length: bytes.length, md5: md5(bytes), body: () => chunked(bytes) };
}

/** Asserts that an error is `failure`, has it in its `cause` chain, or repeats its message. */
function causedBy(failure: Error): (e: unknown) => true {
  return (e: unknown) => {
    for (let c: unknown = e, depth = 0; c !== undefined && depth < 10; depth++) {
      if (c === failure) return true;
      c = c instanceof Error ? c.cause : undefined;
    }
    assert.ok(
      e instanceof Error && e.message.includes(failure.message),
      `expected the body's failure "${failure.message}", got ${e}`,
    );
    return true;
  };
}
