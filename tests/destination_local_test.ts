/**
 * Tests of the local directory destination: the shared Destination
 * conformance suite, then what only a directory has (symlinks leading out
 * of the root, temp files, file modes, the root itself).
 *
 * Run: deno test --allow-read --allow-write --allow-env --allow-run
 *   --allow-net=127.0.0.1,localhost --allow-sys tests/destination_local_test.ts
 * @module
 */

import assert from "node:assert/strict";
import { LocalDestination } from "../adapters/destination/local.ts";
import { PortError } from "../core/errors.ts";
import { destinationConformance, file } from "./destination_conformance.ts";
import { bytesOf, md5, portError } from "./_helpers.ts";
import { failingStream, readAll, stallingStream } from "./_streams.ts";

const encoder = new TextEncoder();

destinationConformance("LocalDestination", async () => {
  const root = await Deno.makeTempDir({ prefix: "coldpack_dest_local_" });
  const destination = await LocalDestination.open(root);
  return {
    destination,
    peek: (key) => peekFile(`${root}/${key}`),
    cleanup: () => Deno.remove(root, { recursive: true }),
    badKeys: ["", "/abs/path", "a//b", "a/", "./a", "a/./b", "a/../b", "..", "nul\0byte"],
  };
});

async function peekFile(path: string): Promise<Uint8Array | null> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return null;
    throw e;
  }
}

/** A temporary directory for one test, removed afterwards. */
async function withDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.realPath(await Deno.makeTempDir({ prefix: "coldpack_dest_test_" }));
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Every path under `dir`, relative, sorted (directories too). */
async function tree(dir: string, rel = ""): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const r = rel === "" ? e.name : `${rel}/${e.name}`;
    out.push(r);
    if (e.isDirectory) out.push(...await tree(`${dir}/${e.name}`, r));
  }
  return out.sort();
}

Deno.test("local destination: the location is the real root; write resolves to the file", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/root`);
    await Deno.symlink(`${dir}/root`, `${dir}/via-link`);
    const destination = await LocalDestination.open(`${dir}/via-link`);
    assert.equal(destination.location, `${dir}/root`);
    const result = await destination.write(file("a/b.txt", encoder.encode("b")));
    assert.equal(result.location, `${dir}/root/a/b.txt`);
    await destination.close();
    await destination.close();
  });
});

Deno.test("local destination: a missing root or a file as root is refused with its code", async () => {
  await withDir(async (dir) => {
    await assert.rejects(
      LocalDestination.open(`${dir}/missing`),
      portError("ENOENT", false, `${dir}/missing`),
    );
    await Deno.writeFile(`${dir}/file`, new Uint8Array(1));
    await assert.rejects(
      LocalDestination.open(`${dir}/file`),
      portError("ENOTDIR", false, `${dir}/file`),
    );
  });
});

Deno.test("local destination: a parent symlink leading outside the root is OutsideRoot", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/root`);
    await Deno.mkdir(`${dir}/outside`);
    await Deno.writeFile(`${dir}/outside/secret.txt`, encoder.encode("secret"));
    await Deno.symlink(`${dir}/outside`, `${dir}/root/escape`);
    await Deno.symlink("../outside", `${dir}/root/escape-relative`);
    const destination = await LocalDestination.open(`${dir}/root`);
    for (const key of ["escape/x.txt", "escape/new/dir/x.txt", "escape-relative/x.txt"]) {
      await assert.rejects(
        destination.write(file(key, encoder.encode("x"))),
        portError("OutsideRoot", false, JSON.stringify(key), `${dir}/outside`),
      );
    }
    assert.deepEqual(await tree(`${dir}/outside`), ["secret.txt"], "nothing made outside");
    await assert.rejects(
      destination.read("escape/secret.txt"),
      portError("OutsideRoot", false, "escape/secret.txt"),
    );
    // A symlink that stays inside the root is followed.
    await Deno.mkdir(`${dir}/root/real`);
    await Deno.symlink(`${dir}/root/real`, `${dir}/root/inside`);
    await destination.write(file("inside/y.txt", encoder.encode("y")));
    assert.deepEqual(await Deno.readFile(`${dir}/root/real/y.txt`), encoder.encode("y"));
  });
});

Deno.test("local destination: a broken symlink or a file as parent is refused", async () => {
  await withDir(async (dir) => {
    await Deno.symlink(`${dir}/nowhere`, `${dir}/broken`);
    await Deno.writeFile(`${dir}/plain`, new Uint8Array(1));
    const destination = await LocalDestination.open(dir);
    await assert.rejects(
      destination.write(file("broken/x.txt", encoder.encode("x"))),
      portError("ENOENT", false, "broken symlink"),
    );
    await assert.rejects(
      destination.write(file("plain/x.txt", encoder.encode("x"))),
      portError("ENOTDIR", false, `${dir}/plain`),
    );
    assert.equal(await Deno.lstat(`${dir}/nowhere`).catch(() => null), null);
  });
});

Deno.test("local destination: no temp file is left after any failure", async () => {
  await withDir(async (dir) => {
    const destination = await LocalDestination.open(dir);
    const bytes = bytesOf(1, 200_000);
    await destination.write(file("d/taken.bin", encoder.encode("taken")));
    const attempts: Promise<unknown>[] = [
      destination.write({ ...file("d/md5.bin", bytes), md5: md5(new Uint8Array(3)) }),
      destination.write({ ...file("d/short.bin", bytes), length: bytes.length + 5 }),
      destination.write({ ...file("d/long.bin", bytes), length: 10 }),
      destination.write({
        ...file("d/fails.bin", bytes),
        body: () => failingStream(bytes, 70_000, new Error("read failed")),
      }),
      destination.write({ ...file("d/taken.bin", bytes) }),
    ];
    const controller = new AbortController();
    attempts.push(destination.write({
      ...file("d/aborted.bin", bytes),
      body: () => stallingStream(bytes, 64 * 1024, controller, new Error("stop")),
      signal: controller.signal,
    }));
    const results = await Promise.allSettled(attempts);
    assert.deepEqual(results.map((r) => r.status), Array(6).fill("rejected"));
    assert.deepEqual(await tree(dir), ["d", "d/taken.bin"]);
  });
});

Deno.test("local destination: a no-clobber write racing another for one key: one wins", async () => {
  await withDir(async (dir) => {
    const destination = await LocalDestination.open(dir);
    const a = bytesOf(2, 300_000);
    const b = bytesOf(3, 300_000);
    const results = await Promise.allSettled([
      destination.write(file("race.bin", a)),
      destination.write(file("race.bin", b)),
    ]);
    const won = results.filter((r) => r.status === "fulfilled").length;
    assert.equal(won, 1, "exactly one write wins");
    const lost = results.find((r) => r.status === "rejected") as PromiseRejectedResult;
    portError("DestinationExists", false, "race.bin")(lost.reason);
    const got = await Deno.readFile(`${dir}/race.bin`);
    assert.ok(md5(got) === md5(a) || md5(got) === md5(b), "the file is one of the two whole");
    assert.deepEqual(await tree(dir), ["race.bin"]);
  });
});

Deno.test("local destination: files get mode 0644 less the umask", async () => {
  await withDir(async (dir) => {
    const destination = await LocalDestination.open(dir);
    await destination.write(file("m.txt", encoder.encode("mode")));
    const mode = (await Deno.stat(`${dir}/m.txt`)).mode! & 0o777;
    assert.equal(mode, 0o644 & ~Deno.umask());
  });
});

Deno.test("local destination: overwrite replaces a symlink at the key, not its target", async () => {
  await withDir(async (dir) => {
    await Deno.mkdir(`${dir}/root`);
    await Deno.writeFile(`${dir}/target.txt`, encoder.encode("outside, untouched"));
    await Deno.symlink(`${dir}/target.txt`, `${dir}/root/link.txt`);
    const destination = await LocalDestination.open(`${dir}/root`);
    await assert.rejects(
      destination.write(file("link.txt", encoder.encode("new"))),
      portError("DestinationExists", false, "link.txt"),
    );
    await destination.write({ ...file("link.txt", encoder.encode("new")), overwrite: true });
    assert.equal((await Deno.lstat(`${dir}/root/link.txt`)).isFile, true);
    assert.deepEqual(await Deno.readFile(`${dir}/root/link.txt`), encoder.encode("new"));
    assert.deepEqual(
      await Deno.readFile(`${dir}/target.txt`),
      encoder.encode("outside, untouched"),
    );
  });
});

Deno.test("local destination: a name near the 255-byte limit still gets a temp file", async () => {
  await withDir(async (dir) => {
    const destination = await LocalDestination.open(dir);
    const name = "é".repeat(127); // 254 bytes
    await destination.write(file(`long/${name}`, encoder.encode("long")));
    assert.deepEqual(await Deno.readFile(`${dir}/long/${name}`), encoder.encode("long"));
  });
});

Deno.test("local destination: read of a directory is null; a bad md5 or length is refused", async () => {
  await withDir(async (dir) => {
    const destination = await LocalDestination.open(dir);
    await destination.write(file("sub/x.txt", encoder.encode("x")));
    assert.equal(await destination.read("sub"), null);
    await assert.rejects(
      destination.write({ ...file("y.txt", encoder.encode("y")), md5: "ABC" }),
      (e: unknown) => e instanceof TypeError && e.message.includes('"ABC"'),
    );
    await assert.rejects(
      destination.write({ ...file("y.txt", encoder.encode("y")), length: -1 }),
      (e: unknown) => e instanceof RangeError && e.message.includes("-1"),
    );
    await assert.rejects(
      destination.read("../escape"),
      (e: unknown) => e instanceof TypeError && e.message.includes('"../escape"'),
    );
  });
});

Deno.test("local destination: read honours its signal", async () => {
  await withDir(async (dir) => {
    const destination = await LocalDestination.open(dir);
    const bytes = bytesOf(4, 1 << 20);
    await destination.write(file("big.bin", bytes));
    assert.equal(md5(await readAll((await destination.read("big.bin"))!)), md5(bytes));
    const controller = new AbortController();
    const reason = new Error("stop reading");
    const stream = (await destination.read("big.bin", { signal: controller.signal }))!;
    const reader = stream.getReader();
    await reader.read();
    controller.abort(reason);
    await assert.rejects(
      (async () => {
        for (;;) if ((await reader.read()).done) break;
      })(),
      (e: unknown) => e === reason,
    );
    const before = new AbortController();
    before.abort(reason);
    await assert.rejects(
      destination.read("big.bin", { signal: before.signal }),
      (e) => e === reason,
    );
  });
});

Deno.test("local destination: a failed write is a PortError, not a partial file", async () => {
  await withDir(async (dir) => {
    const destination = await LocalDestination.open(dir);
    await Deno.mkdir(`${dir}/dir-at-key`);
    await Deno.writeFile(`${dir}/dir-at-key/inner`, new Uint8Array(1));
    await assert.rejects(
      destination.write({ ...file("dir-at-key", encoder.encode("x")), overwrite: true }),
      (e: unknown) => {
        assert.ok(e instanceof PortError, `expected PortError, got ${e}`);
        assert.ok(/^E[A-Z]+$/.test(e.code), `errno code expected: ${e.code}`);
        assert.ok(e.message.includes(`${dir}/dir-at-key`), e.message);
        return true;
      },
    );
    assert.deepEqual(await tree(dir), ["dir-at-key", "dir-at-key/inner"]);
  });
});
