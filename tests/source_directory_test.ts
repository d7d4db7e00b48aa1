/**
 * Tests of the directory source: the shared Source conformance suite, then
 * what only a directory has (symlinks, fifos, sockets, devices, odd names,
 * permissions, files changing under the reader, the watcher).
 *
 * Run: deno test --allow-read --allow-write --allow-env --allow-run tests/source_directory_test.ts
 * (as root, or the EACCES and device cases are skipped, saying so).
 */

import assert from "node:assert/strict";
import { DirectorySource, NOT_UTF8_REASON } from "../adapters/source/directory.ts";
import { ChangedError, PortError, VanishedError } from "../core/errors.ts";
import { entryOf, listAll, sourceConformance } from "./source_conformance.ts";
import { expectError } from "./_helpers.ts";
import { readAll } from "./_streams.ts";

const encoder = new TextEncoder();

sourceConformance("DirectorySource", async () => {
  const root = await Deno.makeTempDir({ prefix: "coldpack_dir_source_" });
  const source = await DirectorySource.open(root, { batchSize: 7 });
  return {
    source,
    pageSize: 7,
    put: async (key, bytes) => {
      const path = `${root}/${key}`;
      await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
      await Deno.writeFile(path, bytes);
    },
    remove: (key) => Deno.remove(`${root}/${key}`),
    cleanup: () => Deno.remove(root, { recursive: true }),
  };
});

/** A temporary tree for one test, removed afterwards. */
async function withTree(
  body: (root: string) => Promise<void>,
): Promise<void> {
  const root = await Deno.makeTempDir({ prefix: "coldpack_dir_test_" });
  try {
    await body(root);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
}

async function write(root: string, key: string, text: string | Uint8Array): Promise<void> {
  const path = `${root}/${key}`;
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeFile(path, typeof text === "string" ? encoder.encode(text) : text);
}

async function run(cmd: string, args: string[], cwd = "."): Promise<void> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", cwd })
    .output();
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
}

function skippedReasons(skipped: readonly { key: string; reason: string }[]) {
  return Object.fromEntries(skipped.map((s) => [s.key, s.reason]));
}

// --------------------------------------------------------------------------
// Opening the source

Deno.test("DirectorySource.open: the id is dir: and the real path of the root", async () => {
  await withTree(async (root) => {
    await Deno.mkdir(`${root}/real`);
    await Deno.symlink(`${root}/real`, `${root}/alias`);
    const source = await DirectorySource.open(`${root}/alias/`);
    assert.equal(source.id, `dir:${await Deno.realPath(`${root}/real`)}`);
    await source.close();
  });
});

Deno.test("DirectorySource.open: a missing root is a PortError ENOENT naming the path", async () => {
  await withTree(async (root) => {
    await assert.rejects(
      DirectorySource.open(`${root}/nope`),
      (e: unknown) => {
        assert.ok(e instanceof PortError, `expected PortError, got ${e}`);
        assert.equal(e.code, "ENOENT");
        assert.ok(e.message.includes(`${root}/nope`), e.message);
        return true;
      },
    );
  });
});

Deno.test("DirectorySource.open: a root that is a file is a PortError ENOTDIR", async () => {
  await withTree(async (root) => {
    await write(root, "file", "x");
    await assert.rejects(DirectorySource.open(`${root}/file`), (e: unknown) => {
      assert.ok(e instanceof PortError, `expected PortError, got ${e}`);
      assert.equal(e.code, "ENOTDIR");
      assert.ok(e.message.includes(`${root}/file": not a directory`), e.message);
      return true;
    });
  });
});

Deno.test("DirectorySource.open: a bad batch size is a RangeError", async () => {
  await withTree(async (root) => {
    await assert.rejects(
      DirectorySource.open(root, { batchSize: 0 }),
      expectError(RangeError, "Invalid batch size: 0"),
    );
    await assert.rejects(
      DirectorySource.open(root, { chunkSize: 1.5 }),
      expectError(RangeError, "Invalid chunk size: 1.5"),
    );
  });
});

// --------------------------------------------------------------------------
// Listing

Deno.test("list: versions are size:mtime-ms:inode and change with the mtime", async () => {
  await withTree(async (root) => {
    await write(root, "f.txt", "12345");
    const mtime = new Date(1_700_000_000_123);
    await Deno.utime(`${root}/f.txt`, mtime, mtime);
    const source = await DirectorySource.open(root);
    const entry = await entryOf(source, "f.txt");
    const ino = (await Deno.stat(`${root}/f.txt`)).ino;
    assert.deepEqual(entry, {
      key: "f.txt",
      version: `5:1700000000123:${ino}`,
      length: 5,
      mtimeMs: 1_700_000_000_123,
    });
    const later = new Date(1_700_000_000_124);
    await Deno.utime(`${root}/f.txt`, later, later);
    assert.equal((await entryOf(source, "f.txt")).version, `5:1700000000124:${ino}`);
    // Replaced by another file of the same size and mtime: a new inode, a new version.
    await write(root, "g.txt", "54321");
    await Deno.utime(`${root}/g.txt`, later, later);
    await Deno.rename(`${root}/g.txt`, `${root}/f.txt`);
    assert.notEqual((await entryOf(source, "f.txt")).version, `5:1700000000124:${ino}`);
    await source.close();
  });
});

Deno.test("list: pages hold batchSize items, carry no cursor, and ignore after", async () => {
  await withTree(async (root) => {
    for (let i = 0; i < 7; i++) await write(root, `f${i}`, "x");
    const source = await DirectorySource.open(root, { batchSize: 3 });
    const sizes: number[] = [];
    for await (const page of source.list({ after: "anything" })) {
      sizes.push(page.entries.length);
      assert.equal("cursor" in page, false, "a directory page has a cursor");
    }
    assert.deepEqual(sizes, [3, 3, 1]);
    await source.close();
  });
});

Deno.test("list: names are kept exactly (newline, NFD, backslash, colon)", async () => {
  await withTree(async (root) => {
    const keys = [
      "line1\nline2.txt",
      "cafe\u0301.txt", // NFD: e + combining acute
      "caf\u00e9.txt", // NFC: a different name
      "back\\slash:colon.txt",
      "tab\there/-leading-dash",
    ];
    for (const key of keys) await write(root, key, key);
    const source = await DirectorySource.open(root);
    const listing = await listAll(source);
    assert.deepEqual([...listing.entries.keys()].sort(), [...keys].sort());
    for (const key of keys) {
      const bytes = await readAll(await source.open(listing.entries.get(key)!));
      assert.equal(new TextDecoder().decode(bytes), key);
    }
    await source.close();
  });
});

Deno.test("list: names that are not UTF-8 are skipped with a reason", async () => {
  await withTree(async (root) => {
    await write(root, "ok.txt", "ok");
    await run(
      "sh",
      ["-c", `touch "$(printf 'bad\\377file')"; mkdir "$(printf 'bad\\376dir')"`],
      root,
    );
    const source = await DirectorySource.open(root);
    const listing = await listAll(source);
    assert.deepEqual([...listing.entries.keys()], ["ok.txt"]);
    assert.deepEqual(skippedReasons(listing.skipped), {
      "bad\uFFFDfile": NOT_UTF8_REASON,
      "bad\uFFFDdir": NOT_UTF8_REASON,
    });
    await source.close();
  });
});

Deno.test("list: symlinks are skipped and never followed", async () => {
  await withTree(async (top) => {
    const root = `${top}/root`;
    await write(root, "real.txt", "real");
    await write(root, "sub/inner.txt", "inner");
    await write(top, "outside/secret.txt", "secret");
    await Deno.symlink(`${root}/real.txt`, `${root}/link-in`);
    await Deno.symlink("../real.txt", `${root}/sub/relative-link-in`);
    await Deno.symlink(`${top}/outside/secret.txt`, `${root}/link-out`);
    await Deno.symlink(`${top}/outside`, `${root}/dir-out`);
    await Deno.symlink(".", `${root}/sub/loop`);
    await Deno.symlink(root, `${root}/sub/root-again`);
    await Deno.symlink(`${root}/missing`, `${root}/dangling`);
    const source = await DirectorySource.open(root);
    const listing = await listAll(source);
    assert.deepEqual([...listing.entries.keys()].sort(), ["real.txt", "sub/inner.txt"]);
    assert.deepEqual(skippedReasons(listing.skipped), {
      "link-in": "symlink",
      "sub/relative-link-in": "symlink",
      "link-out": "symlink outside the root",
      "dir-out": "symlink outside the root",
      "sub/loop": "symlink",
      "sub/root-again": "symlink",
      "dangling": "broken symlink",
    });
    await source.close();
  });
});

Deno.test("list: fifos, sockets and devices are skipped with their kind", async () => {
  await withTree(async (root) => {
    await write(root, "file.txt", "file");
    await run("mkfifo", [`${root}/pipe`]);
    // mknod needs root (CAP_MKNOD); without it the device case is left out.
    const device = await run("mknod", [`${root}/null-device`, "c", "1", "3"]).then(
      () => true,
      (e) => {
        console.error(`SKIPPING the device case: ${e.message}`);
        return false;
      },
    );
    // perl-base (essential on Debian) binds the socket: Deno.listen would
    // need --allow-net for the socket path, and Deno unlinks it on close.
    await run("perl", [
      "-MSocket",
      "-e",
      "socket(my $s, PF_UNIX, SOCK_STREAM, 0) or die $!; bind($s, pack_sockaddr_un($ARGV[0])) or die $!",
      `${root}/sock`,
    ]);
    const source = await DirectorySource.open(root);
    const listing = await listAll(source);
    assert.deepEqual([...listing.entries.keys()], ["file.txt"]);
    assert.deepEqual(skippedReasons(listing.skipped), {
      pipe: "fifo",
      sock: "socket",
      ...(device ? { "null-device": "device" } : {}),
    });
    await source.close();
  });
});

Deno.test("list: an aborted signal stops the walk with its reason", async () => {
  await withTree(async (root) => {
    for (let i = 0; i < 5; i++) await write(root, `f${i}`, "x");
    const source = await DirectorySource.open(root, { batchSize: 2 });
    const controller = new AbortController();
    const reason = new Error("enough");
    const pages: number[] = [];
    await assert.rejects(
      (async () => {
        for await (const page of source.list({ signal: controller.signal })) {
          pages.push(page.entries.length);
          controller.abort(reason);
        }
      })(),
      (e) => e === reason,
    );
    assert.deepEqual(pages, [2]);
    await source.close();
  });
});

Deno.test("list: a root removed after opening is a PortError ENOENT", async () => {
  await withTree(async (top) => {
    await write(top, "root/f", "x");
    const source = await DirectorySource.open(`${top}/root`);
    await Deno.remove(`${top}/root`, { recursive: true });
    await assert.rejects(listAll(source), (e: unknown) => {
      assert.ok(e instanceof PortError, `expected PortError, got ${e}`);
      assert.equal(e.code, "ENOENT");
      assert.ok(e.message.includes(`${top}/root`), e.message);
      return true;
    });
    await source.close();
  });
});

Deno.test("list and open: a closed source refuses with code ECLOSED", async () => {
  await withTree(async (root) => {
    await write(root, "f", "x");
    const source = await DirectorySource.open(root);
    const entry = await entryOf(source, "f");
    await source.close();
    await assert.rejects(listAll(source), (e: unknown) => {
      assert.ok(e instanceof PortError && e.code === "ECLOSED", `got ${e}`);
      return true;
    });
    await assert.rejects(source.open(entry), expectError(PortError, "is closed"));
  });
});

// --------------------------------------------------------------------------
// Permissions. As root, mode 000 stops nothing, so these run in a child
// process whose capabilities to override file permissions are dropped.

/** How to run a child that cannot read a mode-000 file, or why we cannot. */
async function restrictedRunner(): Promise<string[] | string> {
  const dir = await Deno.makeTempDir({ prefix: "coldpack_perm_probe_" });
  try {
    await Deno.writeTextFile(`${dir}/probe`, "x");
    await Deno.chmod(`${dir}/probe`, 0o000);
    try {
      await Deno.readTextFile(`${dir}/probe`);
    } catch (e) {
      if (e instanceof Deno.errors.PermissionDenied) return []; // not root: chmod works
      throw e;
    }
    const args = [
      "--bounding-set=-dac_override,-dac_read_search",
      "--inh-caps=-dac_override,-dac_read_search",
      "--",
    ];
    const probe = await new Deno.Command("setpriv", {
      args: [...args, "cat", `${dir}/probe`],
      stdout: "null",
      stderr: "piped",
    }).output().catch((e) => e as Error);
    if (probe instanceof Error) return `setpriv cannot run: ${probe.message}`;
    const err = new TextDecoder().decode(probe.stderr);
    if (probe.success || !err.includes("Permission denied")) {
      return `setpriv did not take away the permission to read: ${err}`;
    }
    return ["setpriv", ...args];
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const runner = await restrictedRunner();
if (typeof runner === "string") {
  console.error(`SKIPPING the EACCES tests of the directory source: ${runner}`);
}

Deno.test({
  name: "list and open: unreadable directories are skipped, unreadable files are EACCES",
  ignore: typeof runner === "string",
  fn: async () => {
    await withTree(async (root) => {
      await write(root, "a/ok.txt", "ok");
      await write(root, "locked/hidden.txt", "hidden");
      await write(root, "z/secret.txt", "secret");
      await write(root, "z/after.txt", "after");
      await Deno.chmod(`${root}/locked`, 0o000);
      await Deno.chmod(`${root}/z/secret.txt`, 0o000);
      const moduleUrl = new URL("../adapters/source/directory.ts", import.meta.url).href;
      const code = `
        const { DirectorySource } = await import(${JSON.stringify(moduleUrl)});
        const source = await DirectorySource.open(${JSON.stringify(root)});
        const keys = [];
        const skipped = [];
        let secret;
        for await (const page of source.list()) {
          for (const e of page.entries) {
            keys.push(e.key);
            if (e.key === "z/secret.txt") secret = e;
          }
          skipped.push(...page.skipped);
        }
        let error = null;
        try {
          await source.open(secret);
        } catch (e) {
          error = { name: e.name, code: e.code, retryable: e.retryable, message: e.message };
        }
        console.log(JSON.stringify({ keys, skipped, error }));
      `;
      const [cmd, ...pre] = runner.length > 0 ? runner : [Deno.execPath()];
      const args = runner.length > 0 ? [...pre, Deno.execPath(), "eval", code] : ["eval", code];
      const out = await new Deno.Command(cmd!, { args, stdout: "piped", stderr: "piped" })
        .output();
      await Deno.chmod(`${root}/locked`, 0o755);
      assert.ok(out.success, new TextDecoder().decode(out.stderr));
      const result = JSON.parse(new TextDecoder().decode(out.stdout));
      assert.deepEqual(result.keys.sort(), ["a/ok.txt", "z/after.txt", "z/secret.txt"]);
      assert.deepEqual(result.skipped, [{ key: "locked", reason: "unreadable directory: EACCES" }]);
      assert.equal(result.error.name, "PortError");
      assert.equal(result.error.code, "EACCES");
      assert.equal(result.error.retryable, false);
      assert.match(result.error.message, /"z\/secret\.txt": EACCES/);
    });
  },
});

// --------------------------------------------------------------------------
// Opening files

Deno.test("open: keys that could leave the root are a TypeError naming the key", async () => {
  await withTree(async (root) => {
    const source = await DirectorySource.open(root);
    for (const key of ["../etc/passwd", "/etc/passwd", "a/../../x", "a//b", "./a", ""]) {
      const entry = { key, version: "1:1", length: 1, mtimeMs: 1 };
      await assert.rejects(
        source.open(entry),
        expectError(TypeError, `Invalid source key ${JSON.stringify(key)}`),
      );
    }
    await source.close();
  });
});

Deno.test("open: a version not made by this source is a TypeError", async () => {
  await withTree(async (root) => {
    await write(root, "f", "x");
    const source = await DirectorySource.open(root);
    await assert.rejects(
      source.open({ key: "f", version: "etag-123", length: 1, mtimeMs: 0 }),
      expectError(TypeError, `"etag-123" is not <size>:<mtime ms>`),
    );
    await source.close();
  });
});

Deno.test("open: a new size or mtime since listing is a ChangedError saying what", async () => {
  await withTree(async (root) => {
    await write(root, "size.txt", "12345");
    await write(root, "time.txt", "12345");
    const source = await DirectorySource.open(root);
    const listing = await listAll(source);
    const size = listing.entries.get("size.txt")!;
    const time = listing.entries.get("time.txt")!;
    await write(root, "size.txt", "12345678901");
    const later = new Date(time.mtimeMs + 1500);
    await Deno.utime(`${root}/time.txt`, later, later);
    await assert.rejects(
      source.open(size),
      expectError(ChangedError, `"size.txt" changed`, "size 5 -> 11"),
    );
    await assert.rejects(
      source.open(time),
      expectError(
        ChangedError,
        `"time.txt" changed`,
        `mtime ${time.mtimeMs} -> ${later.getTime()}`,
      ),
    );
    await source.close();
  });
});

Deno.test("open: a file replaced by another kind is a ChangedError naming the kind", async () => {
  await withTree(async (root) => {
    for (const key of ["dir", "link", "pipe"]) await write(root, key, "x");
    const source = await DirectorySource.open(root);
    const listing = await listAll(source);
    for (const key of ["dir", "link", "pipe"]) await Deno.remove(`${root}/${key}`);
    await Deno.mkdir(`${root}/dir`);
    await write(root, "target", "x");
    await Deno.symlink(`${root}/target`, `${root}/link`);
    await run("mkfifo", [`${root}/pipe`]);
    const kinds = { dir: "directory", link: "symlink", pipe: "fifo" };
    for (const [key, kind] of Object.entries(kinds)) {
      await assert.rejects(
        source.open(listing.entries.get(key)!),
        expectError(ChangedError, `"${key}" changed: it is no longer a regular file but a ${kind}`),
      );
    }
    await source.close();
  });
});

Deno.test("open: a file under a now missing directory is a VanishedError", async () => {
  await withTree(async (root) => {
    await write(root, "d/f.txt", "x");
    const source = await DirectorySource.open(root);
    const entry = await entryOf(source, "d/f.txt");
    await Deno.remove(`${root}/d`, { recursive: true });
    await write(root, "d", "now a file");
    await assert.rejects(source.open(entry), expectError(VanishedError, `"d/f.txt" vanished`));
    await source.close();
  });
});

Deno.test("open: a parent swapped for a symlink leading out is a ChangedError", async () => {
  await withTree(async (top) => {
    const root = `${top}/root`;
    await write(root, "sub/f.txt", "inside");
    await write(top, "outside/f.txt", "SECRET");
    const source = await DirectorySource.open(root);
    const entry = await entryOf(source, "sub/f.txt");
    // The outside file is made to look like the listed version.
    const mtime = new Date(entry.mtimeMs);
    await Deno.utime(`${top}/outside/f.txt`, mtime, mtime);
    await Deno.rename(`${root}/sub`, `${top}/moved`);
    await Deno.symlink(`${top}/outside`, `${root}/sub`);
    await assert.rejects(
      source.open(entry),
      expectError(
        ChangedError,
        `"sub/f.txt" changed: it is another file now`,
      ),
    );
    await source.close();
  });
});

Deno.test("open: a file that grows while being read errors with ChangedError", async () => {
  await withTree(async (root) => {
    await write(root, "growing.bin", new Uint8Array(100_000));
    const source = await DirectorySource.open(root, { chunkSize: 16_384 });
    const entry = await entryOf(source, "growing.bin");
    const reader = (await source.open(entry)).getReader();
    const first = await reader.read();
    assert.equal(first.value?.length, 16_384);
    const file = await Deno.open(`${root}/growing.bin`, { append: true });
    await file.write(new Uint8Array(10));
    file.close();
    await assert.rejects(
      (async () => {
        for (let r = await reader.read(); !r.done; r = await reader.read());
      })(),
      expectError(
        ChangedError,
        `"growing.bin" changed while being read: it grew past 100000 bytes`,
      ),
    );
    await source.close();
  });
});

Deno.test("open: a file grown since listing, its mtime put back, is a ChangedError", async () => {
  await withTree(async (root) => {
    await write(root, "small.txt", "12345");
    const source = await DirectorySource.open(root);
    const entry = await entryOf(source, "small.txt");
    // Grown between the listing and the read, with the listed mtime kept:
    // only the read can notice.
    const file = await Deno.open(`${root}/small.txt`, { append: true });
    await file.write(encoder.encode("678"));
    file.close();
    const mtime = new Date(entry.mtimeMs);
    await Deno.utime(`${root}/small.txt`, mtime, mtime);
    await assert.rejects(
      source.open(entry),
      expectError(ChangedError, `"small.txt" changed`, "size 5 -> 8"),
    );
    await source.close();
  });
});

Deno.test("open: a file that shrinks while being read errors with ChangedError", async () => {
  await withTree(async (root) => {
    await write(root, "shrinking.bin", new Uint8Array(100_000));
    const source = await DirectorySource.open(root, { chunkSize: 16_384 });
    const entry = await entryOf(source, "shrinking.bin");
    const reader = (await source.open(entry)).getReader();
    await reader.read();
    await Deno.truncate(`${root}/shrinking.bin`, 20_000);
    await assert.rejects(
      (async () => {
        for (let r = await reader.read(); !r.done; r = await reader.read());
      })(),
      (e: unknown) => {
        // The stream may have read one chunk ahead before the truncation.
        assert.ok(e instanceof ChangedError, String(e));
        assert.match(
          e.message,
          /"shrinking\.bin" changed while being read: it shrank to \d+ of 100000 bytes/,
        );
        return true;
      },
    );
    await source.close();
  });
});

Deno.test("open: reads a file of exactly one chunk and one of a chunk and a byte", async () => {
  await withTree(async (root) => {
    const one = new Uint8Array(4096).map((_, i) => i % 251);
    const more = new Uint8Array(4097).map((_, i) => i % 253);
    await write(root, "one", one);
    await write(root, "more", more);
    const source = await DirectorySource.open(root, { chunkSize: 4096 });
    const listing = await listAll(source);
    assert.deepEqual(await readAll(await source.open(listing.entries.get("one")!)), one);
    assert.deepEqual(await readAll(await source.open(listing.entries.get("more")!)), more);
    await source.close();
  });
});

// --------------------------------------------------------------------------
// Watching

/** Waits for the next yield of `events`, creating files until one comes (5 s at most). */
async function nextEvent(
  events: AsyncIterator<void>,
  root: string,
): Promise<"event" | "ended" | "timeout"> {
  const next = events.next().then((r) => (r.done ? "ended" : "event") as "event" | "ended");
  let timer: ReturnType<typeof setTimeout> | undefined;
  let n = 0;
  const poke = setInterval(() => {
    Deno.writeTextFileSync(`${root}/poke-${n++}`, "x");
  }, 100);
  const timeout = new Promise<"timeout">((resolve) => {
    timer = setTimeout(() => resolve("timeout"), 5000);
  });
  try {
    return await Promise.race([next, timeout]);
  } finally {
    clearInterval(poke);
    clearTimeout(timer);
  }
}

Deno.test("watch: yields after a new file appears, ends when the signal aborts", async () => {
  await withTree(async (root) => {
    const source = await DirectorySource.open(root);
    const controller = new AbortController();
    const events = source.watch({ signal: controller.signal })[Symbol.asyncIterator]();
    assert.equal(await nextEvent(events, root), "event");
    const after = events.next();
    controller.abort();
    assert.deepEqual(await after, { done: true, value: undefined });
    await source.close();
  });
});

Deno.test("watch: ends when the source closes", async () => {
  await withTree(async (root) => {
    const source = await DirectorySource.open(root);
    const events = source.watch({ signal: new AbortController().signal })[Symbol.asyncIterator]();
    const next = events.next();
    await source.close();
    assert.deepEqual(await next, { done: true, value: undefined });
  });
});

Deno.test("watch: ends at once when the signal is already aborted", async () => {
  await withTree(async (root) => {
    const source = await DirectorySource.open(root);
    const events = source.watch({ signal: AbortSignal.abort() })[Symbol.asyncIterator]();
    assert.deepEqual(await events.next(), { done: true, value: undefined });
    await source.close();
  });
});

Deno.test("watch: ends quietly when no watcher can be made", async () => {
  await withTree(async (top) => {
    await Deno.mkdir(`${top}/root`);
    const source = await DirectorySource.open(`${top}/root`);
    await Deno.remove(`${top}/root`);
    const events = source.watch({ signal: new AbortController().signal })[Symbol.asyncIterator]();
    assert.deepEqual(await events.next(), { done: true, value: undefined });
    await source.close();
  });
});
