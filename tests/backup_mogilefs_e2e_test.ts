/**
 * coldpack-backup with a MogileFS source, as an operator runs it: the binary
 * as a subprocess, `--source mogilefs://TRACKER,TRACKER/DOMAIN`, the strict
 * MogileFS double (trackers + storage nodes) as the peer, a local vault and
 * a SQLite catalog. What lands in the vault is checked from the outside:
 * GNU tar extracts `domain/key` entries, the manifest keeps the exact key,
 * and every catalog row's offsets hold the file's bytes.
 * @module
 */

import assert from "node:assert/strict";
import type { FileRow } from "../core/ports.ts";
import { MANIFEST_NAME } from "../core/manifest.ts";
import { MogileFsDouble } from "./doubles/mogilefs.ts";
import {
  archivedBytes,
  bytesOf,
  catalogRows,
  md5,
  runCmd,
  sh,
  spawnCmd,
  tempDir,
  vaultTars,
} from "./_helpers.ts";

interface Paths {
  readonly state: string;
  readonly vault: string;
  readonly catalog: string;
}

async function withSetup(
  options: { domains?: Record<string, Record<string, { mindevcount?: number }>> },
  fn: (mogile: MogileFsDouble, paths: Paths) => Promise<void>,
): Promise<void> {
  const mogile = await MogileFsDouble.start({
    domains: options.domains ?? { ugc: { thumb: {} }, assets: {} },
    trackers: 2,
    nodes: 2,
  });
  const state = await tempDir();
  try {
    await fn(mogile, {
      state: state.path,
      vault: `${state.path}/vault`,
      catalog: `${state.path}/catalog.db`,
    });
  } finally {
    await mogile.close();
    await state.cleanup();
  }
}

function backupArgs(url: string, paths: Paths, ...extra: string[]): string[] {
  return ["--source", url, "--state-dir", paths.state, "--target-size", "96KiB", ...extra];
}

/** Every catalog row of the source, read from the SQLite file. */
function rows(paths: Paths, source: string): Promise<FileRow[]> {
  return catalogRows(paths.catalog, { source });
}

Deno.test("backup --source mogilefs://.../DOMAIN --once archives every file with its MogileFS facts", async () => {
  await withSetup({}, async (mogile, paths) => {
    const files = new Map<string, Uint8Array>();
    const keys = [
      "product/1/texture.png",
      "product/1/model.obj",
      "/leading/slash.jpg",
      "../escape/attempt.bin",
      "ünï cødé/日本 語.png",
      "a".repeat(180) + "/long-name.bin",
    ];
    for (let i = 0; i < 24; i++) {
      const key = keys[i] ?? `uploads/${i % 5}/file-${i}.bin`;
      const bytes = bytesOf(i + 1, 500 + i * 2_500);
      files.set(key, bytes);
      await mogile.put("ugc", key, bytes, { class: i % 3 === 0 ? "thumb" : "default" });
    }
    // Another domain, same key: not part of this source.
    await mogile.put("assets", "product/1/texture.png", bytesOf(99, 1234));

    const run = await runCmd("backup", backupArgs(mogile.url("ugc"), paths, "--once"));
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /archived 24 files/);

    const got = await rows(paths, "mogilefs:ugc");
    assert.equal(got.length, 24);
    for (const row of got) {
      const info = mogile.file("ugc", row.key);
      assert.ok(info, `catalog key ${JSON.stringify(row.key)} is exact`);
      assert.equal(row.state, "archived");
      assert.equal(row.domain, "ugc");
      assert.equal(row.sourceFid, info.fid);
      assert.equal(row.version, String(info.fid));
      assert.equal(row.storageClass, info.class);
      assert.equal(row.length, info.length);
      assert.equal(row.md5, md5(files.get(row.key)!));
      assert.deepEqual(await archivedBytes(paths.catalog, paths.vault, row), files.get(row.key));
    }

    // GNU tar extracts domain/key entries, made safe; the manifest keeps the exact key.
    const out = `${paths.state}/extract`;
    await Deno.mkdir(out);
    const manifests: { domain?: string; key: string; fid?: number }[] = [];
    for (const tar of await vaultTars(paths.vault)) {
      await sh("tar", ["-xf", tar, "-C", out]);
      const m = JSON.parse(await Deno.readTextFile(`${out}/${MANIFEST_NAME}`));
      manifests.push(...m.files);
    }
    const texture = await Deno.readFile(`${out}/ugc/product/1/texture.png`);
    assert.deepEqual(texture, files.get("product/1/texture.png"));
    const names = await sh("tar", ["-tf", ...(await vaultTars(paths.vault)).slice(0, 1)]);
    for (const name of names.split("\n")) {
      assert.ok(!name.startsWith("/") && !name.split("/").includes(".."), name);
    }
    const exact = manifests.map((f) => f.key).sort();
    assert.deepEqual(exact, [...files.keys()].sort(), "manifests keep the exact keys");
    assert.ok(manifests.every((f) => f.domain === "ugc"));

    // A second run finds nothing new (the fid cursor) and archives nothing.
    const again = await runCmd("backup", backupArgs(mogile.url("ugc"), paths, "--once"));
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /archived 0 files/);
  });
});

Deno.test("backup --source mogilefs://TRACKERS/ (every domain) keeps same-named keys apart", async () => {
  await withSetup({}, async (mogile, paths) => {
    const a = bytesOf(1, 3000);
    const b = bytesOf(2, 5000);
    await mogile.put("ugc", "same/key.png", a);
    await mogile.put("assets", "same/key.png", b);
    const run = await runCmd("backup", backupArgs(mogile.url(), paths, "--once"));
    assert.equal(run.code, 0, run.stderr);
    const got = await rows(paths, "mogilefs:*");
    assert.deepEqual(got.map((r) => [r.domain, r.key, r.state]).sort(), [
      ["assets", "same/key.png", "archived"],
      ["ugc", "same/key.png", "archived"],
    ]);
    for (const row of got) {
      assert.deepEqual(
        await archivedBytes(paths.catalog, paths.vault, row),
        row.domain === "ugc" ? a : b,
      );
    }
  });
});

Deno.test("MogileFS daemon: follows uploads, replacements and deletions; survives a dead node and a tracker restart", async () => {
  await withSetup({}, async (mogile, paths) => {
    await mogile.put("ugc", "old/one.bin", bytesOf(1, 4000));
    await mogile.put("ugc", "old/two.bin", bytesOf(2, 4000));
    const daemon = spawnCmd(
      "backup",
      backupArgs(
        mogile.url("ugc"),
        paths,
        "--max-age",
        "300ms",
        "--poll",
        "200ms",
        "--rescan",
        "2s",
      ),
      { piped: true },
    );
    const stderr = daemon.stderr.pipeThrough(new TextDecoderStream());
    let log = "";
    const logging = (async () => {
      for await (const chunk of stderr) log += chunk;
    })();
    /** Waits (bounded) until `check` holds for the source's rows. */
    const until = async (what: string, check: (rs: FileRow[]) => boolean) => {
      for (let i = 0; i < 300; i++) {
        // The daemon may not have created (or migrated) the catalog yet.
        const current = await rows(paths, "mogilefs:ugc").catch(() => null);
        if (current !== null && check(current)) return;
        await new Promise((r) => setTimeout(r, 100));
      }
      assert.fail(`timed out waiting until ${what}; daemon said:\n${log}`);
    };
    const archived = (key: string, fid: number) => (rs: FileRow[]) =>
      rs.some((r) => r.key === key && r.sourceFid === fid && r.state === "archived");
    try {
      await until(
        "the first two are archived",
        (rs) => rs.filter((r) => r.state === "archived").length === 2,
      );

      // A new upload is found by the fid poll.
      const fresh = await mogile.put("ugc", "new/three.bin", bytesOf(3, 6000));
      await until("a new upload is archived", archived("new/three.bin", fresh));

      // One storage node dies: reads fail over to the other replica.
      await mogile.stopNode(0);
      const whileDown = await mogile.put("ugc", "new/four.bin", bytesOf(4, 7000));
      await until("a file is archived with a node down", archived("new/four.bin", whileDown));
      await mogile.startNode(0);

      // The tracker the daemon uses restarts: it reconnects (to it or the other).
      await mogile.stopTracker(0);
      const afterRestart = await mogile.put("ugc", "new/five.bin", bytesOf(5, 3000));
      await mogile.startTracker(0);
      await until(
        "a file uploaded around a tracker restart is archived",
        archived(
          "new/five.bin",
          afterRestart,
        ),
      );

      // A replaced key is a new version; the old fid is noticed gone.
      const oldFid = mogile.file("ugc", "old/one.bin")!.fid;
      const replaced = await mogile.put("ugc", "old/one.bin", bytesOf(11, 4500));
      await until("the replacement is archived", archived("old/one.bin", replaced));
      // A deleted file is noticed gone by the next full listing; it stays archived.
      assert.ok(mogile.delete("ugc", "old/two.bin"));
      await until(
        "the reconciliation notices the replaced and deleted fids",
        (rs) =>
          rs.some((r) => r.sourceFid === oldFid && r.goneAt !== null) &&
          rs.some((r) => r.key === "old/two.bin" && r.goneAt !== null),
      );
      const final = await rows(paths, "mogilefs:ugc");
      const two = final.find((r) => r.key === "old/two.bin")!;
      assert.equal(two.state, "archived", "a deleted file stays restorable");
      const versions = final.filter((r) => r.key === "old/one.bin");
      assert.deepEqual(versions.map((r) => r.state), ["archived", "archived"]);
      assert.equal(final.filter((r) => r.state !== "archived").length, 0);
    } finally {
      daemon.kill("SIGTERM");
      await daemon.status;
      await logging;
    }
    assert.equal((await daemon.status).code, 0, log);
  });
});

Deno.test("MogileFS: a file with no good replica is recorded with its reason and retried later", async () => {
  await withSetup({}, async (mogile, paths) => {
    await mogile.put("ugc", "keep.bin", bytesOf(1, 2000));
    const broken = await mogile.put("ugc", "broken.bin", bytesOf(2, 9000));
    // Every replica shorter than the fid's length: no path can be read whole.
    for (const devid of mogile.file("ugc", "broken.bin")!.devids) {
      mogile.damage("ugc", "broken.bin", { devid, length: 100 });
    }
    const run = await runCmd("backup", backupArgs(mogile.url("ugc"), paths, "--once"));
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /broken\.bin.*LengthMismatch/);
    const got = await rows(paths, "mogilefs:ugc");
    const row = got.find((r) => r.sourceFid === broken)!;
    assert.equal(row.state, "pending", "kept for a retry, not dropped");
    assert.equal(row.attempts, 1);
    assert.ok(row.nextAttemptAt !== null, "a retry is scheduled");
    assert.match(row.note ?? "", /9000/);
    assert.equal(got.find((r) => r.key === "keep.bin")!.state, "archived");
  });
});

Deno.test("backup --source mogilefs://.../UNKNOWN exits 2 naming the domain and the ones there are", async () => {
  await withSetup({}, async (mogile, paths) => {
    const run = await runCmd("backup", backupArgs(mogile.url("ugcc"), paths, "--once"));
    assert.equal(run.code, 2, run.stderr);
    assert.match(run.stderr, /--source: .*the domain "ugcc" does not exist/);
    assert.match(run.stderr, /assets, ugc/);
  });
});
