/**
 * End to end: cmd/backup.ts as a subprocess on generated corpora, checked
 * with GNU tar and against the catalog.
 */

import assert from "node:assert/strict";
import {
  bytesOf,
  checkCatalogAgainstVault,
  extractVault,
  put,
  readTree,
  runCmd,
  sh,
  spawnCmd,
  tempDir,
  vaultTars,
} from "./_helpers.ts";

const KIB = 1024;

/** A corpus with the awkward cases the issue lists. */
async function awkwardCorpus(root: string): Promise<void> {
  await put(root, "empty.bin", new Uint8Array(0));
  await put(root, "ünïcødé/日本語のファイル.txt", "こんにちは");
  await put(root, "new\nline name.txt", "a newline in the name");
  await put(root, "spaces and 'quotes' \"here\".txt", "q");
  await put(root, `${"deep/".repeat(30)}leaf.txt`, "deep");
  await put(root, `${"long-segment-name-".repeat(8)}/${"x".repeat(200)}.dat`, bytesOf(7, 3000));
  await put(root, "big/larger-than-target.bin", bytesOf(1, 300 * KIB));
  await put(root, "exact-512.bin", bytesOf(2, 512));
  for (let i = 0; i < 60; i++) {
    await put(root, `photos/${String(i).padStart(3, "0")}.jpg`, bytesOf(100 + i, 1000 + i * 997));
  }
}

function stateArgs(state: string): string[] {
  return ["--state-dir", state];
}

Deno.test("backup --once archives an awkward corpus that GNU tar extracts byte-identical", async () => {
  const src = await tempDir();
  const state = await tempDir();
  const out = await tempDir();
  try {
    await awkwardCorpus(src.path);
    const r = await runCmd("backup", [
      "--source",
      src.path,
      "--once",
      "--target-size",
      "64KiB",
      ...stateArgs(state.path),
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`archives -> file://${state.path}/vault`));
    assert.match(r.stderr, new RegExp(`catalog  -> sqlite://${state.path}/catalog.db`));
    assert.match(r.stdout, /archived 68 files, .*, 0 failed/);

    const vault = `${state.path}/vault`;
    const tars = await vaultTars(vault);
    assert.ok(tars.length >= 4, `several archives at a 64 KiB target, got ${tars.length}`);
    // The file larger than the target travels alone.
    let alone = 0;
    for (const t of tars) {
      const names = (await sh("tar", ["-tf", t])).split("\n").filter((n) => n !== "");
      assert.equal(names[names.length - 1], ".coldpack/manifest.json", `${t} ends with manifest`);
      if (names.includes("big/larger-than-target.bin")) {
        assert.equal(names.length, 2, "the large file has an archive of its own");
        alone++;
      }
    }
    assert.equal(alone, 1);

    await extractVault(vault, out.path);
    const want = await readTree(src.path);
    const got = await readTree(out.path);
    for (const [key, bytes] of want) {
      assert.deepEqual(got.get(key), bytes, `extracted ${JSON.stringify(key)}`);
    }
    const extras = [...got.keys()].filter((k) => !want.has(k) && !k.startsWith(".coldpack/"));
    assert.deepEqual(extras, []);

    const rows = await checkCatalogAgainstVault(`${state.path}/catalog.db`, vault, src.path);
    assert.deepEqual([...rows.keys()].sort(), [...want.keys()].sort());
  } finally {
    await Promise.all([src.cleanup(), state.cleanup(), out.cleanup()]);
  }
});

Deno.test("a second --once archives nothing; added files archive exactly those", async () => {
  const src = await tempDir();
  const state = await tempDir();
  try {
    for (let i = 0; i < 20; i++) await put(src.path, `f${i}.txt`, `file ${i}`);
    const args = ["--source", src.path, "--once", ...stateArgs(state.path)];
    const first = await runCmd("backup", args);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /archived 20 files/);
    const vault = `${state.path}/vault`;
    assert.equal((await vaultTars(vault)).length, 1);

    const second = await runCmd("backup", args);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /archived 0 files, 0 B, 0 archives/);
    assert.equal((await vaultTars(vault)).length, 1, "no new archive");

    await put(src.path, "new-a.txt", "A");
    await put(src.path, "f3.txt", "file 3, changed");
    const before = new Set(await vaultTars(vault));
    const third = await runCmd("backup", args);
    assert.equal(third.code, 0, third.stderr);
    assert.match(third.stdout, /archived 2 files/);
    const tars = await vaultTars(vault);
    assert.equal(tars.length, 2);
    const added = tars.filter((t) => !before.has(t));
    assert.equal(added.length, 1);
    const names = (await sh("tar", ["-tf", added[0]!])).trim().split("\n");
    assert.deepEqual(names.filter((n) => !n.startsWith(".coldpack")).sort(), [
      "f3.txt",
      "new-a.txt",
    ]);
    const rows = await checkCatalogAgainstVault(`${state.path}/catalog.db`, vault, src.path);
    assert.equal(rows.size, 21);

    const status = await runCmd("backup", ["status", "--json", ...stateArgs(state.path)]);
    assert.equal(status.code, 0, status.stderr);
    const s = JSON.parse(status.stdout);
    assert.equal(s.files.archived, 22, "20 + 1 new + 1 new version of f3");
    assert.equal(s.files.pending, 0);
    assert.equal(s.archives, 2);
  } finally {
    await Promise.all([src.cleanup(), state.cleanup()]);
  }
});

Deno.test("an unreadable file is a recorded failure; the run continues and exits 1", async () => {
  const src = await tempDir();
  const state = await tempDir();
  try {
    await put(src.path, "ok-1.txt", "one");
    await put(src.path, "ok-2.txt", "two");
    await put(src.path, "secret.txt", "no");
    await Deno.chmod(`${src.path}/secret.txt`, 0o000);
    // As root, permission bits do not stop reads: drop the capabilities that bypass them.
    const wrap = Deno.uid() === 0
      ? ["setpriv", "--bounding-set=-dac_override,-dac_read_search", "--"]
      : [];
    const r = await runCmd("backup", ["--source", src.path, "--once", ...stateArgs(state.path)], {
      wrap,
    });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /Cannot read "secret\.txt" \(EACCES\)/);
    assert.match(r.stdout, /archived 2 files, .*, 1 failed/);

    const status = await runCmd("backup", ["status", ...stateArgs(state.path)]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /2 archived, 0 pending, 1 failed/);
    assert.match(status.stdout, /fetch EACCES "secret\.txt"/);
  } finally {
    await Deno.chmod(`${src.path}/secret.txt`, 0o644).catch(() => {});
    await Promise.all([src.cleanup(), state.cleanup()]);
  }
});

Deno.test("sockets and fifos are skipped with a recorded reason", async () => {
  const src = await tempDir();
  const state = await tempDir();
  try {
    // A bound unix socket file (made by perl: Deno would need net permission for it).
    await sh("perl", [
      "-MIO::Socket::UNIX",
      "-e",
      "IO::Socket::UNIX->new(Type => SOCK_STREAM(), Local => $ARGV[0], Listen => 1) or die $!",
      `${src.path}/app.sock`,
    ]);
    await put(src.path, "real.txt", "real");
    await sh("mkfifo", [`${src.path}/pipe`]);
    const r = await runCmd("backup", ["--source", src.path, "--once", ...stateArgs(state.path)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /archived 1 files, .*2 skipped/);
    assert.match(r.stderr, /Skipped "pipe": fifo/);
    assert.match(r.stderr, /Skipped "app\.sock": socket/);
    // Skipping is by design: recorded, but not an open failure.
    const status = await runCmd("backup", ["status", "--json", ...stateArgs(state.path)]);
    assert.equal(JSON.parse(status.stdout).openFailures, 0);
  } finally {
    await Promise.all([src.cleanup(), state.cleanup()]);
  }
});

Deno.test("bad flags and URLs exit 2 with a message naming the flag", async () => {
  const src = await tempDir();
  try {
    const cases: [string[], RegExp][] = [
      [
        ["--source", src.path, "--once", "--store", "ftp://x/y"],
        /--store: Unsupported store URL "ftp:\/\/x\/y"/,
      ],
      [["--source", "relative/dir", "--once"], /--source: .*absolute/],
      [["--source", src.path, "--target-size", "lots"], /--target-size: Cannot parse size "lots"/],
      [
        ["--source", src.path, "--fetchers", "0"],
        /--fetchers: must be a whole number from 1 to 256/,
      ],
      [["--once"], /--source: nothing to back up/],
      [["--bogus"], /Unknown option '--bogus'/],
      [
        ["--source", src.path, "--catalog", "mysql://u:hunter2@h/d"],
        /--catalog: .*contains a password/,
      ],
    ];
    for (const [args, want] of cases) {
      const r = await runCmd("backup", args, { env: { XDG_STATE_HOME: src.path } });
      assert.equal(r.code, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, want, args.join(" "));
      assert.doesNotMatch(r.stderr, /hunter2/, "a secret never reaches the log");
    }
  } finally {
    await src.cleanup();
  }
});

Deno.test("status before any backup says so and creates nothing", async () => {
  const state = await tempDir();
  try {
    const r = await runCmd("backup", ["status", ...stateArgs(state.path)]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /none yet: nothing has been backed up/);
    const j = await runCmd("backup", ["status", "--json", ...stateArgs(state.path)]);
    assert.equal(JSON.parse(j.stdout).exists, false);
    assert.deepEqual([...Deno.readDirSync(state.path)], [], "no catalog was created");
  } finally {
    await state.cleanup();
  }
});

Deno.test("config file and environment feed the settings; flags win", async () => {
  const src = await tempDir();
  const state = await tempDir();
  try {
    for (let i = 0; i < 10; i++) await put(src.path, `f${i}.bin`, bytesOf(i, 20 * KIB));
    const config = `${state.path}/coldpack.toml`;
    await Deno.writeTextFile(
      config,
      `source = "${src.path}"\nstate_dir = "${state.path}"\ntarget_size = "1MiB"\n`,
    );
    // env says 64KiB and wins over the file: 200 KiB of files make several archives.
    const r = await runCmd("backup", ["--once", "--config", config], {
      env: { COLDPACK_TARGET_SIZE: "64KiB" },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await vaultTars(`${state.path}/vault`)).length >= 3);

    await Deno.writeTextFile(config, `sorce = "${src.path}"\n`);
    const bad = await runCmd("backup", ["--once", "--config", config]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /coldpack\.toml: sorce: unknown setting "sorce"/);

    await Deno.writeTextFile(config, `source = [1,\n`);
    const broken = await runCmd("backup", ["--once", "--config", config]);
    assert.equal(broken.code, 2);
    assert.match(broken.stderr, /coldpack\.toml: cannot parse config file/);
  } finally {
    await Promise.all([src.cleanup(), state.cleanup()]);
  }
});

Deno.test("the daemon follows new, changed and deleted files, and stops cleanly on SIGTERM", async () => {
  const src = await tempDir();
  const state = await tempDir();
  try {
    await put(src.path, "before.txt", "before");
    const child = spawnCmd("backup", [
      "--source",
      src.path,
      "--max-age",
      "200ms",
      "--rescan",
      "30s",
      ...stateArgs(state.path),
    ]);
    const catalogPath = `${state.path}/catalog.db`;
    const waitArchived = async (n: number) => {
      for (let i = 0; i < 100; i++) {
        const r = await runCmd("backup", ["status", "--json", ...stateArgs(state.path)]);
        if (r.code === 0 && (JSON.parse(r.stdout).files?.archived ?? 0) >= n) return;
        await new Promise((res) => setTimeout(res, 200));
      }
      throw new Error(`Timed out waiting for ${n} archived files`);
    };
    await waitArchived(1);
    await put(src.path, "after/new.txt", "new");
    await put(src.path, "before.txt", "before, changed");
    await waitArchived(3);
    // Deleted at the source while the daemon runs: the backup keeps it.
    await Deno.remove(`${src.path}/after/new.txt`);
    await put(src.path, "last.txt", "last");
    await waitArchived(4);
    child.kill("SIGTERM");
    const out = await child.output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(new TextDecoder().decode(out.stderr), /SIGTERM: finishing in-flight archives/);
    const rows = await checkCatalogAgainstVault(catalogPath, `${state.path}/vault`, src.path);
    assert.deepEqual([...rows.keys()].sort(), ["after/new.txt", "before.txt", "last.txt"]);
    assert.equal(rows.get("before.txt")?.length, "before, changed".length);
    const s = JSON.parse(
      (await runCmd("backup", ["status", "--json", ...stateArgs(state.path)])).stdout,
    );
    assert.equal(s.files.archived, 4, "both versions of before.txt, new.txt, last.txt");
    assert.equal(s.files.pending, 0);
  } finally {
    await Promise.all([src.cleanup(), state.cleanup()]);
  }
});
