/**
 * coldpack-restore on the embedded default (SQLite catalog, local vault), as
 * a new user meets it: back up a directory, delete files from it, and get
 * them back byte-identical with one command each, by key and by file id,
 * one at a time and in a batch with bad lines; a dry run starts nothing; a
 * slow vault (retrieval delay) is waited for.
 * @module
 */

import assert from "node:assert/strict";
import { bytesOf, put, runCmd, tempDir } from "./_helpers.ts";
import { MogileFsDouble } from "./doubles/mogilefs.ts";
import { S3ArchiveDouble } from "./doubles/s3_archive.ts";

interface Setup {
  readonly src: string;
  readonly state: string;
  readonly out: string;
}

async function withBackup(
  files: ReadonlyMap<string, Uint8Array>,
  fn: (s: Setup) => Promise<void>,
  store?: string,
): Promise<void> {
  const src = await tempDir();
  const state = await tempDir();
  const out = await tempDir();
  try {
    for (const [k, v] of files) await put(src.path, k, v);
    const run = await runCmd("backup", [
      "--source",
      src.path,
      "--once",
      "--state-dir",
      state.path,
      "--target-size",
      "256KiB",
      ...(store === undefined ? [] : ["--store", store.replace("STATE", state.path)]),
    ]);
    assert.equal(run.code, 0, run.stderr);
    await fn({ src: src.path, state: state.path, out: out.path });
  } finally {
    await src.cleanup();
    await state.cleanup();
    await out.cleanup();
  }
}

function corpus(): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  for (let i = 0; i < 40; i++) {
    files.set(`photos/${i % 4}/img-${i}.jpg`, bytesOf(i + 1, 3_000 + i * 900));
  }
  files.set("docs/ünï cødé (1).txt", bytesOf(99, 777));
  files.set("empty.txt", new Uint8Array(0));
  return files;
}

Deno.test("restore KEY PATH --wait brings a deleted file back byte-identical", async () => {
  const files = corpus();
  await withBackup(files, async ({ src, state, out }) => {
    const key = "photos/2/img-6.jpg";
    await Deno.remove(`${src}/${key}`);
    const run = await runCmd("restore", [
      key,
      `${out}/img-6.jpg`,
      "--wait",
      "--source",
      src,
      "--state-dir",
      state,
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /restoring 1 file\(s\), 8400 bytes, from 1 archive\(s\)/);
    assert.match(run.stdout, /restored fid:\d+ -> .*img-6\.jpg/);
    assert.deepEqual(await Deno.readFile(`${out}/img-6.jpg`), files.get(key));

    // Back to where it was: a directory destination keeps the key below it.
    const back = await runCmd("restore", [
      key,
      `${src}/`,
      "--wait",
      "--source",
      src,
      "--state-dir",
      state,
    ]);
    assert.equal(back.code, 0, back.stderr);
    assert.deepEqual(await Deno.readFile(`${src}/${key}`), files.get(key));

    // The same bytes there already: nothing to write, done.
    const same = await runCmd("restore", [
      key,
      `${out}/img-6.jpg`,
      "--wait",
      "--source",
      src,
      "--state-dir",
      state,
    ]);
    assert.equal(same.code, 0, same.stderr);
    assert.match(same.stdout, /already there, identical/);
    // Another file there: without --force it is not replaced.
    await Deno.writeTextFile(`${out}/img-6.jpg`, "someone else's file");
    const again = await runCmd("restore", [
      key,
      `${out}/img-6.jpg`,
      "--wait",
      "--source",
      src,
      "--state-dir",
      state,
    ]);
    assert.equal(again.code, 1, again.stderr);
    assert.match(again.stderr, /DestinationExists/);
    assert.equal(await Deno.readTextFile(`${out}/img-6.jpg`), "someone else's file");
    const forced = await runCmd("restore", [
      key,
      `${out}/img-6.jpg`,
      "--wait",
      "--force",
      "--source",
      src,
      "--state-dir",
      state,
    ]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.deepEqual(await Deno.readFile(`${out}/img-6.jpg`), files.get(key));

    const status = await runCmd("restore", ["status", "--state-dir", state]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /\tdone\t/);
    assert.match(status.stdout, /\tfailed\t.*DestinationExists/);
  });
});

Deno.test("restore --batch: good lines run, bad lines are named by number; ids, unicode, empty files", async () => {
  const files = corpus();
  await withBackup(files, async ({ src, state, out }) => {
    const lines = [
      "# restores for ticket 4711",
      "",
      `photos/0/img-0.jpg ${out}/a.jpg`,
      `"docs/ünï cødé (1).txt" "${out}/ü (1).txt"`,
      `empty.txt ${out}/empty.txt`,
      `photos/1/img-1.jpg`,
      `no/such/file.jpg ${out}/x.jpg`,
      `photos/3/img-3.jpg ftp:nowhere`,
    ];
    const run = await runCmd("restore", [
      "--batch",
      "-",
      "--wait",
      "--source",
      src,
      "--state-dir",
      state,
    ], { stdin: lines.join("\n") + "\n" });
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, /line 6: .*found 1 field/);
    assert.match(run.stderr, /line 7: "no\/such\/file\.jpg" is not in the catalog/);
    assert.match(run.stderr, /line 8: .*ftp/);
    assert.deepEqual(await Deno.readFile(`${out}/a.jpg`), files.get("photos/0/img-0.jpg"));
    assert.deepEqual(await Deno.readFile(`${out}/ü (1).txt`), files.get("docs/ünï cødé (1).txt"));
    assert.deepEqual(await Deno.readFile(`${out}/empty.txt`), new Uint8Array(0));

    // By file id, from the status output of the first restore.
    const status = await runCmd("restore", ["status", "--json", "--state-dir", state]);
    const fid = (JSON.parse(status.stdout) as { fileId: number }[])[0]!.fileId;
    const byId = await runCmd("restore", [
      `fid:${fid}`,
      `${out}/by-id.jpg`,
      "--wait",
      "--state-dir",
      state,
    ]);
    assert.equal(byId.code, 0, byId.stderr);
    assert.deepEqual(await Deno.readFile(`${out}/by-id.jpg`), files.get("photos/0/img-0.jpg"));
  });
});

Deno.test("restore --dry-run starts nothing; a slow vault is waited for, and its retrieval reused", async () => {
  const files = corpus();
  await withBackup(files, async ({ src, state, out }) => {
    const dry = await runCmd("restore", [
      "photos/1/img-5.jpg",
      `${out}/x.jpg`,
      "--dry-run",
      "--source",
      src,
      "--state-dir",
      state,
      "--store",
      `file://${state}/vault?retrieval-delay=2s`,
    ]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /would restore 1 file\(s\), .* 1 retrieval\(s\) to start/);
    assert.match(dry.stdout, /estimated cost: \$0\.0000 \(Standard, 0\.000 GB, 1 request\(s\); /);
    const none = await runCmd("restore", ["status", "--state-dir", state]);
    assert.match(none.stdout, /no restores recorded/);

    const args = [
      "--source",
      src,
      "--state-dir",
      state,
      "--store",
      `file://${state}/vault?retrieval-delay=2s`,
    ];
    // Without --wait: recorded, the retrieval started, nothing written yet.
    const first = await runCmd("restore", ["photos/1/img-5.jpg", `${out}/x.jpg`, ...args]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /1 retrieval\(s\) to start/);
    // A neighbour in the same archive: the live retrieval is reused, then waited for.
    const second = await runCmd("restore", [
      "photos/1/img-9.jpg",
      `${out}/y.jpg`,
      "--wait",
      "--poll",
      "500ms",
      ...args,
    ]);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /0 retrieval\(s\) to start .* 1 reused/);
    assert.match(second.stderr, /waiting for their retrieval/);
    assert.deepEqual(await Deno.readFile(`${out}/y.jpg`), files.get("photos/1/img-9.jpg"));
  }, "file://STATE/vault?retrieval-delay=2s");
});

Deno.test("restore DOMAIN:KEY mogilefs puts a deleted MogileFS file back, same class; fid:N s3://... writes an object", async () => {
  const mogile = await MogileFsDouble.start({ domains: { ugc: { thumb: {} } } });
  const s3 = await S3ArchiveDouble.start();
  const state = await tempDir();
  try {
    await s3.createBucket("restores");
    const bytes = bytesOf(5, 70_000);
    await mogile.put("ugc", "product/1/texture.png", bytes, { class: "thumb" });
    await mogile.put("ugc", "product/2/other.png", bytesOf(6, 1_000));
    const url = mogile.url("ugc");
    const backup = await runCmd("backup", ["--source", url, "--once", "--state-dir", state.path]);
    assert.equal(backup.code, 0, backup.stderr);
    const oldFid = mogile.file("ugc", "product/1/texture.png")!.fid;
    assert.ok(mogile.delete("ugc", "product/1/texture.png"));

    const run = await runCmd("restore", [
      "ugc:product/1/texture.png",
      "mogilefs",
      "--wait",
      "--source",
      url,
      "--state-dir",
      state.path,
    ]);
    assert.equal(run.code, 0, run.stderr);
    const back = mogile.file("ugc", "product/1/texture.png");
    assert.ok(back, "the key is back in MogileFS");
    assert.deepEqual(back.bytes, bytes);
    assert.equal(back.class, "thumb");
    assert.ok(back.fid > oldFid, "written as a new fid");

    const status = await runCmd("restore", ["status", "--json", "--state-dir", state.path]);
    const fid = (JSON.parse(status.stdout) as { fileId: number }[])[0]!.fileId;
    const toS3 = await runCmd("restore", [
      String(fid),
      "s3://restores/tickets/4711/texture.png",
      "--wait",
      "--state-dir",
      state.path,
    ], { env: s3.env() });
    assert.equal(toS3.code, 0, toS3.stderr);
    const got = s3.objects("restores").find((o) => o.key === "tickets/4711/texture.png");
    assert.ok(got, "the object was written");
    assert.equal(got.size, bytes.length);
  } finally {
    await mogile.close();
    await s3.close();
    await state.cleanup();
  }
});

Deno.test("restore --version / --as-of bring back an older version; versions lists them; status ID shows one", async () => {
  const files = corpus();
  await withBackup(files, async ({ src, state, out }) => {
    const key = "photos/3/img-7.jpg";
    const between = new Date().toISOString();
    const newer = bytesOf(4242, 5_000);
    await Deno.writeFile(`${src}/${key}`, newer);
    const again = await runCmd("backup", ["--source", src, "--once", "--state-dir", state]);
    assert.equal(again.code, 0, again.stderr);
    const args = ["--source", src, "--state-dir", state];

    const list = await runCmd("restore", ["versions", key, "--json", ...args]);
    assert.equal(list.code, 0, list.stderr);
    const versions = JSON.parse(list.stdout) as { id: number; version: string; length: number }[];
    assert.deepEqual(versions.map((v) => v.length), [newer.length, files.get(key)!.length]);

    const latest = await runCmd("restore", [key, `${out}/latest.jpg`, "--wait", ...args]);
    assert.equal(latest.code, 0, latest.stderr);
    assert.deepEqual(await Deno.readFile(`${out}/latest.jpg`), newer);
    const byVersion = await runCmd("restore", [
      key,
      `${out}/old.jpg`,
      "--wait",
      "--version",
      versions[1]!.version,
      ...args,
    ]);
    assert.equal(byVersion.code, 0, byVersion.stderr);
    assert.deepEqual(await Deno.readFile(`${out}/old.jpg`), files.get(key));
    const asOf = await runCmd("restore", [
      key,
      `${out}/as-of.jpg`,
      "--wait",
      "--as-of",
      between,
      ...args,
    ]);
    assert.equal(asOf.code, 0, asOf.stderr);
    assert.deepEqual(await Deno.readFile(`${out}/as-of.jpg`), files.get(key));

    const tooEarly = await runCmd("restore", [
      key,
      `${out}/x.jpg`,
      "--as-of",
      "2001-01-01",
      ...args,
    ]);
    assert.equal(tooEarly.code, 1);
    assert.match(tooEarly.stderr, /has no archived version found by 2001-01-01T23:59:59\.999Z/);
    const bad = await runCmd("restore", [key, `${out}/x.jpg`, "--as-of", "yesterday", ...args]);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /--as-of: "yesterday" is not a time/);
    const both = await runCmd("restore", ["fid:1", `${out}/x.jpg`, "--version", "v", ...args]);
    assert.equal(both.code, 1);
    assert.match(both.stderr, /fid:1 names one version already/);

    const one = await runCmd("restore", ["status", "2", "--state-dir", state]);
    assert.equal(one.code, 0, one.stderr);
    assert.match(one.stdout, /^restore +2 /m);
    assert.match(one.stdout, /^state +done: /m);
    assert.match(one.stdout, /^retrieval +\S+ ready/m);
    const missing = await runCmd("restore", ["status", "99", "--state-dir", state]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no restore 99 in the catalog/);
  });
});
