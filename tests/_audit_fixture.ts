/**
 * A backed-up archive to audit: a small corpus backed up once per test file
 * by the real `coldpack-backup --once` into a local vault, then, per test, a
 * fresh copy of that vault (to corrupt on disk), a retrieval started on it,
 * and the audit manifest built from the catalog (md5s, offsets) and the
 * archive's own `.coldpack/manifest.json` (tar entry names).
 * @module
 */

import assert from "node:assert/strict";
import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
import { LocalVault } from "../adapters/store/local_vault.ts";
import { type AuditEntry, buildManifest } from "../core/audit.ts";
import { auditId, type RemoteArchiveId } from "../core/ids.ts";
import { MANIFEST_NAME, parseManifest as parseArchiveManifest } from "../core/manifest.ts";
import type { ArchiveRow } from "../core/ports.ts";
import { readTar } from "../core/tar_reader.ts";
import { bytesOf, put, runCmd, spawnCmd, tempDir } from "./_helpers.ts";

/** The archive backed up once: where its pristine vault is, its row and entries. */
export interface BackedUp {
  /** The vault directory the backup wrote. */
  readonly vault: string;
  readonly archive: ArchiveRow;
  /** Every file of the archive, in tar order, as the manifest lists them. */
  readonly entries: readonly AuditEntry[];
  cleanup(): Promise<void>;
}

/** Short ASCII names (no pax path records), so that a test can rename an entry in place. */
export function auditCorpus(): Map<string, Uint8Array> {
  const files = new Map<string, Uint8Array>();
  for (let i = 0; i < 12; i++) files.set(`photos/img-${i}.jpg`, bytesOf(i + 7, 1_000 + i * 5_000));
  files.set("docs/readme.txt", new TextEncoder().encode("hello audit\n"));
  return files;
}

/** Backs up {@linkcode auditCorpus} once into one archive. */
export async function backUpOnce(): Promise<BackedUp> {
  const src = await tempDir();
  const state = await tempDir();
  try {
    for (const [k, v] of auditCorpus()) await put(src.path, k, v);
    const run = await runCmd("backup", [
      "--source",
      src.path,
      "--once",
      "--state-dir",
      state.path,
      "--target-size",
      "8MiB",
    ]);
    assert.equal(run.code, 0, run.stderr);
    const catalog = await SqliteCatalog.open(`${state.path}/catalog.db`, { migrate: false });
    let archive: ArchiveRow;
    let rows;
    try {
      const archives = await catalog.archives({ limit: 10 });
      assert.equal(archives.length, 1, "the corpus fits one archive");
      archive = archives[0]!;
      rows = await catalog.archiveFiles(archive.id);
    } finally {
      await catalog.close();
    }
    const vault = `${state.path}/vault`;
    const names = new Map<number, string>();
    for await (const e of readTar([await Deno.readFile(`${vault}/${archive.remoteId}`)])) {
      if (e.name !== MANIFEST_NAME) continue;
      for (const f of parseArchiveManifest(e.data).files) names.set(f.fileId, f.name);
    }
    const entries = rows.map((r): AuditEntry => ({
      name: names.get(r.id)!,
      headerOffset: r.headerOffset!,
      dataOffset: r.dataOffset!,
      length: r.length,
      md5: r.md5!,
      basis: "live",
    }));
    assert.equal(entries.length, auditCorpus().size);
    return {
      vault,
      archive,
      entries,
      cleanup: async () => {
        await src.cleanup();
        await state.cleanup();
      },
    };
  } catch (e) {
    await src.cleanup();
    await state.cleanup();
    throw e;
  }
}

/** A copy of the backed-up vault with a retrieval started on it, and the manifest to send. */
export interface AuditCase {
  readonly vaultDir: string;
  readonly vault: LocalVault;
  /** The archive's `.tar` in `vaultDir` (corrupt it before {@linkcode AuditCase.start}). */
  readonly tarPath: string;
  readonly archive: ArchiveRow;
  readonly entries: readonly AuditEntry[];
  /** Starts the retrieval and builds the manifest bytes (entries may be overridden). */
  start(options?: { entries?: readonly AuditEntry[]; id?: string }): Promise<{
    readonly auditId: string;
    readonly jobId: string;
    readonly bytes: Uint8Array;
  }>;
  cleanup(): Promise<void>;
}

let seq = 0;

/**
 * Copies the pristine vault into a fresh directory and opens it with
 * `retrievalDelayMs` and the clock `now`.
 */
export async function auditCase(
  backed: BackedUp,
  options: { retrievalDelayMs?: number; now?: () => number } = {},
): Promise<AuditCase> {
  const dir = await tempDir("coldpack-audit-vault-");
  const remote = backed.archive.remoteId as RemoteArchiveId;
  await Deno.copyFile(`${backed.vault}/${remote}`, `${dir.path}/${remote}`);
  await Deno.copyFile(`${backed.vault}/${remote}.json`, `${dir.path}/${remote}.json`);
  const vault = await LocalVault.open(dir.path, {
    retrievalDelayMs: options.retrievalDelayMs ?? 0,
    ...(options.now === undefined ? {} : { now: options.now }),
  });
  return {
    vaultDir: dir.path,
    vault,
    tarPath: `${dir.path}/${remote}`,
    archive: backed.archive,
    entries: backed.entries,
    async start(o = {}) {
      const id = o.id ?? `a20260101T000000.000Z-${(++seq).toString(16).padStart(12, "0")}`;
      const job = await vault.startRetrieval(remote, { description: id });
      const bytes = buildManifest({
        version: 1,
        auditId: auditId(id),
        archiveId: backed.archive.id,
        store: vault.location,
        remoteId: remote,
        jobId: job.jobId,
        archiveSize: backed.archive.size,
        createdAt: Date.now(),
        entries: o.entries ?? backed.entries,
      });
      return { auditId: id, jobId: job.jobId, bytes };
    },
    async cleanup() {
      await vault.close();
      await dir.cleanup();
    },
  };
}

/** Flips one bit of the byte at `offset` of the file at `path`. */
export async function flipByte(path: string, offset: number): Promise<void> {
  const f = await Deno.open(path, { read: true, write: true });
  try {
    const b = new Uint8Array(1);
    await f.seek(offset, Deno.SeekMode.Start);
    assert.equal(await f.read(b), 1);
    b[0] = b[0]! ^ 0x01;
    await f.seek(offset, Deno.SeekMode.Start);
    await f.write(b);
  } finally {
    f.close();
  }
}

/**
 * Renames, in place, the entry whose ustar header block is at `blockOffset`
 * (`dataOffset - 512`: after any pax header), fixing the header checksum.
 */
export async function renameEntry(path: string, blockOffset: number, name: string): Promise<void> {
  const f = await Deno.open(path, { read: true, write: true });
  try {
    const block = new Uint8Array(512);
    await f.seek(blockOffset, Deno.SeekMode.Start);
    assert.equal(await f.read(block), 512);
    const encoded = new TextEncoder().encode(name);
    assert.ok(encoded.length < 100);
    block.fill(0, 0, 100);
    block.set(encoded, 0);
    block.fill(0x20, 148, 156);
    let sum = 0;
    for (const c of block) sum += c;
    block.set(new TextEncoder().encode(sum.toString(8).padStart(6, "0") + "\0 "), 148);
    await f.seek(blockOffset, Deno.SeekMode.Start);
    await f.write(block);
  } finally {
    f.close();
  }
}

/** coldpack-audit-verifier as a subprocess, with its stderr collected and its address read from the start-up line. */
export async function startVerifier(
  args: string[],
  token: string,
  env: Record<string, string> = {},
): Promise<{
  base: string;
  stderr: () => string;
  stop: () => Promise<number>;
}> {
  const child = spawnCmd("audit_verifier", ["--listen", "127.0.0.1:0", ...args], {
    env: { ...env, COLDPACK_VERIFIER_TOKEN: token },
  });
  await child.stdout.cancel();
  let text = "";
  const listening = Promise.withResolvers<string>();
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const drained = (async () => {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += value;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(text);
      if (m) listening.resolve(m[1]!);
    }
    listening.reject(new Error(`the verifier exited before listening:\n${text}`));
  })();
  let base: string;
  try {
    base = await listening.promise;
  } catch (e) {
    await child.status;
    await drained;
    throw e;
  }
  return {
    base,
    stderr: () => text,
    async stop() {
      child.kill("SIGTERM");
      const status = await child.status;
      await drained;
      return status.code;
    },
  };
}
