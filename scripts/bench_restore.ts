/**
 * Issue 5's restore benchmarks, on the embedded default (SQLite catalog,
 * local vault with a retrieval delay, local destination), through
 * core/restore.ts as `coldpack-restore --wait` runs it:
 *
 * 1. One 100 KB file from a 25 MB vault archive: bytes retrieved / bytes
 *    needed, for every file of the archive (target: at most 1 MiB plus the
 *    file), and what aligning small files' data to 1 MiB blocks costs: the
 *    pax padding bytes in % of the archive bytes, measured by reading the
 *    vault's tars (header bytes beyond those of an unaligned header).
 * 2. A batch of 1,000 files spread over 40 archives: retrievals started
 *    (target: at most 40), and seconds from "retrievals ready" to "all files
 *    written", with the same bytes read by `cat` as the baseline.
 *
 * Usage: deno run -A scripts/bench_restore.ts [--keep DIR]
 * @module
 */

import { parseArgs } from "node:util";
import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
import { randomBytes, systemClock } from "../adapters/clock.ts";
import { LocalDestination } from "../adapters/destination/local.ts";
import { DirectorySource } from "../adapters/source/directory.ts";
import { LocalVault } from "../adapters/store/local_vault.ts";
import { openPacker } from "../adapters/registry.ts";
import { runBackup } from "../core/backup.ts";
import type { FileRow, RestoreRow } from "../core/ports.ts";
import { completeRestores, requestRestores } from "../core/restore.ts";
import { prng } from "../core/prng.ts";
import { tarHeader } from "../core/tar.ts";
import { TarParser } from "../core/tar_reader.ts";

const MIB = 1024 * 1024;

async function backup(src: string, state: string, now: () => number): Promise<SqliteCatalog> {
  await Deno.mkdir(state, { recursive: true });
  const source = await DirectorySource.open(src);
  const catalog = await SqliteCatalog.open(`${state}/catalog.db`);
  const vault = await LocalVault.open(`${state}/vault`, { retrievalDelayMs: 3_600_000, now });
  const packer = await openPacker(source, `${state}/spool`, { workers: 2 });
  try {
    const s = await runBackup({
      source,
      packer,
      store: vault,
      catalog,
      clock: systemClock,
      random: randomBytes,
    }, { once: true });
    if (s.fatal !== null || s.failedFiles > 0) throw new Error(`backup failed: ${s.fatal}`);
  } finally {
    await packer.close();
    await vault.close();
    await source.close();
  }
  return catalog;
}

async function archivedRows(catalog: SqliteCatalog): Promise<FileRow[]> {
  const rows: FileRow[] = [];
  let afterId: string | undefined;
  for (;;) {
    const page = await catalog.archives({
      limit: 100,
      ...(afterId ? { afterId: afterId as never } : {}),
    });
    if (page.length === 0) return rows;
    for (const a of page) rows.push(...await catalog.archiveFiles(a.id));
    afterId = page[page.length - 1]!.id;
  }
}

/** Alignment padding in the vault's tars: header bytes beyond an unaligned header's. */
async function alignmentPadding(
  vaultDir: string,
): Promise<{ archives: number; bytes: number; padding: number; padded: number }> {
  const total = { archives: 0, bytes: 0, padding: 0, padded: 0 };
  for await (const e of Deno.readDir(vaultDir)) {
    if (!e.isFile || !e.name.endsWith(".tar")) continue;
    const parser = new TarParser({
      entry(h) {
        const plain = tarHeader({ name: h.name, size: h.size, mtimeMs: h.mtimeMs }).length;
        const extra = h.dataOffset - h.headerOffset - plain;
        total.padding += extra;
        if (extra > 0) total.padded++;
      },
    });
    using file = await Deno.open(`${vaultDir}/${e.name}`);
    for await (const chunk of file.readable) parser.write(chunk);
    parser.end();
    total.archives++;
    total.bytes += parser.offset;
  }
  return total;
}

function describePadding(p: Awaited<ReturnType<typeof alignmentPadding>>): string {
  return `alignment padding ${(p.padding / MIB).toFixed(2)} MiB in ${p.padded} entries = ` +
    `${(100 * p.padding / p.bytes).toFixed(2)}% of ${(p.bytes / MIB).toFixed(1)} MiB ` +
    `in ${p.archives} archives`;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ args: Deno.args, options: { keep: { type: "string" } } });
  const work = values.keep ?? await Deno.makeTempDir({ prefix: "coldpack_bench_restore_" });
  let offset = 0;
  const now = () => Date.now() + offset;
  const clock = { now, sleep: systemClock.sleep };
  try {
    // 1. 250 files of 100 KB: one 25 MB archive (and a bit).
    const src1 = `${work}/one`;
    await Deno.mkdir(src1, { recursive: true });
    const rand = prng(3);
    for (let i = 0; i < 250; i++) {
      const b = new Uint8Array(100_000).map(() => (rand() * 256) | 0);
      await Deno.writeFile(`${src1}/f${String(i).padStart(3, "0")}.bin`, b);
    }
    const state1 = `${work}/state1`;
    const catalog1 = await backup(src1, state1, now);
    const vault1 = await LocalVault.open(`${state1}/vault`, { retrievalDelayMs: 3_600_000, now });
    const ratios: number[] = [];
    let worst = 0;
    try {
      const rows = await archivedRows(catalog1);
      for (const f of rows) {
        const r = await requestRestores(
          { catalog: catalog1, store: vault1, clock, random: randomBytes },
          [{ key: `one:${f.id}`, fileId: f.id, dest: "x" }],
          { requestedBy: "bench", dryRun: true },
        );
        const bytes = r.plan.totals.bytesToRetrieve;
        ratios.push(bytes / f.length);
        worst = Math.max(worst, bytes - f.length);
      }
    } finally {
      await vault1.close();
      await catalog1.close();
    }
    const padding1 = await alignmentPadding(`${state1}/vault`);
    ratios.sort((a, b) => a - b);
    const within = ratios.filter((r) => r * 100_000 - 100_000 <= MIB).length;
    console.log(
      `one 100 KB file from a 25 MB archive, each of ${ratios.length} files: ` +
        `retrieved/needed median ${ratios[ratios.length >> 1]!.toFixed(2)}x, max ${
          ratios.at(-1)!.toFixed(2)
        }x; ` +
        `worst excess ${
          (worst / MIB).toFixed(2)
        } MiB; within 1 MiB + file: ${within}/${ratios.length}; ${describePadding(padding1)}`,
    );

    // 2. 1,000 files of 1 MB over 40 archives of 25 MiB.
    const src2 = `${work}/batch`;
    await Deno.mkdir(src2, { recursive: true });
    const pool = new Uint8Array(8 * MIB).map(() => (rand() * 256) | 0);
    for (let i = 0; i < 1000; i++) {
      const at = Math.floor(rand() * (pool.length - 1_000_000));
      await Deno.writeFile(
        `${src2}/f${String(i).padStart(4, "0")}.bin`,
        pool.subarray(at, at + 1_000_000),
      );
    }
    const state2 = `${work}/state2`;
    const catalog2 = await backup(src2, state2, now);
    const vault2 = await LocalVault.open(`${state2}/vault`, { retrievalDelayMs: 3_600_000, now });
    const out = `${work}/out`;
    await Deno.mkdir(out, { recursive: true });
    const dest = await LocalDestination.open(out);
    try {
      const rows = await archivedRows(catalog2);
      const archives = new Set(rows.map((r) => r.archiveId)).size;
      const deps = { catalog: catalog2, store: vault2, clock, random: randomBytes };
      const req = await requestRestores(
        deps,
        rows.map((f) => ({ key: `batch:${f.id}`, fileId: f.id, dest: f.key })),
        { requestedBy: "bench" },
      );
      offset += 3_600_000; // the vault's retrievals are ready now
      const t0 = performance.now();
      const pass = await completeRestores(deps, {
        resolve: (r: RestoreRow) => Promise.resolve({ destination: dest, write: { key: r.dest } }),
      });
      const seconds = (performance.now() - t0) / 1000;
      const bytes = rows.reduce((n, f) => n + f.length, 0);
      const cat = new Deno.Command("sh", { args: ["-c", `cat ${state2}/vault/*.tar > /dev/null`] });
      const c0 = performance.now();
      await cat.output();
      const catSeconds = (performance.now() - c0) / 1000;
      console.log(
        `batch of ${rows.length} files over ${archives} archives: ${req.started.length} retrievals started ` +
          `(target <= 40); ready -> all written in ${seconds.toFixed(2)} s ` +
          `(${
            (bytes / 1e6 / seconds).toFixed(0)
          } MB/s, ${pass.done} done, ${pass.failed} failed); ` +
          `cat of the archives: ${catSeconds.toFixed(2)} s; ` +
          describePadding(await alignmentPadding(`${state2}/vault`)),
      );
    } finally {
      await dest.close();
      await vault2.close();
      await catalog2.close();
    }
  } finally {
    if (values.keep === undefined) await Deno.remove(work, { recursive: true });
  }
}

if (import.meta.main) await main();
