/**
 * Issue 4's benchmarks: remote sources.
 *
 * 1. Backfill: the same mixed corpus (scripts/corpus.ts, default 20,000
 *    files) backed up through the whole pipeline into a local vault with a
 *    SQLite catalog, from three sources: the directory itself (the baseline,
 *    with the worker packer), the MogileFS double (trackers + storage nodes)
 *    and the S3 double over the real s3rver. Each double runs as its own
 *    process (tests/doubles/serve.ts), filled beforehand over its own
 *    protocol, and shares this machine's two cores with the pipeline, so the
 *    ratios are floors. Target: >= 0.7 x the directory. Rounds alternate
 *    the sources; the best round of each counts.
 * 2. Discovery latency: a backup daemon follows the MogileFS double while
 *    this process uploads 1,000 files at 50/s (create_open, PUT,
 *    create_close); for each, the seconds from create_close's answer to the
 *    file's catalog row (`discovered_at`). Target: p99 <= 2 s.
 *
 * Usage:
 *   deno run -A scripts/bench_sources.ts [--files 20000] [--rounds 2]
 *     [--uploads 1000] [--rate 50] [--only backfill|latency] [--keep DIR]
 * @module
 */

import { parseArgs } from "node:util";
import { createHash } from "node:crypto";
import { DatabaseSync } from "node:sqlite";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import { openPacker } from "../adapters/registry.ts";
import { DirectorySource } from "../adapters/source/directory.ts";
import { MogileFsSource } from "../adapters/source/mogilefs.ts";
import { S3Source } from "../adapters/source/s3.ts";
import { MogileFsClient } from "../adapters/mogilefs/client.ts";
import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
import { LocalVault } from "../adapters/store/local_vault.ts";
import { runBackup } from "../core/backup.ts";
import type { Source } from "../core/ports.ts";
import { type MogileFsSourceUrl, parseSourceUrl } from "../core/source_url.ts";
import { Limiter } from "../core/retry.ts";
import { plainS3Client, type S3Connection } from "../tests/doubles/s3_archive.ts";
import { backfill, liveDeps, localVault, serveDouble } from "./_bench.ts";
import { mixedCorpus, prng } from "./corpus.ts";

/** The doubles' heap limit: the MogileFS double keeps every file in memory. */
const DOUBLE_HEAP_MB = 8192;

/** Starts the MogileFS double with the domain `ugc`; `url` is the source URL of that domain. */
async function serveMogile(): Promise<{ url: MogileFsSourceUrl; close(): Promise<void> }> {
  const served = await serveDouble<{ url: string }>(["mogilefs", "--domain", "ugc"], {
    maxHeapMb: DOUBLE_HEAP_MB,
  });
  try {
    const url = parseSourceUrl(`${served.info.url.replace(/\/*$/, "")}/ugc`);
    return { url: url as MogileFsSourceUrl, close: served.close };
  } catch (e) {
    await served.close();
    throw e;
  }
}

/** Every file under `dir`: relative path and absolute path. */
async function listTree(dir: string, rel = ""): Promise<{ key: string; path: string }[]> {
  const out: { key: string; path: string }[] = [];
  for await (const e of Deno.readDir(dir)) {
    const r = rel === "" ? e.name : `${rel}/${e.name}`;
    if (e.isDirectory) out.push(...await listTree(`${dir}/${e.name}`, r));
    else if (e.isFile) out.push({ key: r, path: `${dir}/${e.name}` });
  }
  return out;
}

function md5(bytes: Uint8Array): string {
  return createHash("md5").update(bytes).digest("hex");
}

function once(bytes: Uint8Array): () => ReadableStream<Uint8Array> {
  return () =>
    new ReadableStream({
      start(c) {
        c.enqueue(bytes);
        c.close();
      },
    });
}

/** Copies every file into the store with `put`, 8 at a time; returns seconds. */
async function fill(
  files: { key: string; path: string }[],
  put: (key: string, bytes: Uint8Array) => Promise<void>,
): Promise<number> {
  const t0 = performance.now();
  const limiter = new Limiter(8);
  await Promise.all(files.map((f) =>
    limiter.run(async () => {
      await put(f.key, await Deno.readFile(f.path));
    })
  ));
  return (performance.now() - t0) / 1000;
}

/**
 * What the peer itself can serve: every file listed and read (8 in flight,
 * bytes counted and dropped, no pipeline); returns MB/s. The ceiling a
 * remote source's backfill can reach on this machine.
 */
async function bareRead(source: Source): Promise<number> {
  const entries = [];
  for await (const page of source.list({ after: null })) entries.push(...page.entries);
  const limiter = new Limiter(8);
  let bytes = 0;
  const t0 = performance.now();
  await Promise.all(entries.map((e) =>
    limiter.run(async () => {
      for await (const chunk of await source.open(e)) bytes += chunk.length;
    })
  ));
  return bytes / 1e6 / ((performance.now() - t0) / 1000);
}

async function benchBackfill(work: string, fileCount: number, rounds: number): Promise<void> {
  const src = `${work}/corpus`;
  try {
    await Deno.stat(src);
  } catch {
    await Deno.mkdir(src, { recursive: true });
    await mixedCorpus(src, Number.MAX_SAFE_INTEGER, 1, fileCount);
  }
  const files = await listTree(src);
  let bytes = 0;
  for (const f of files) bytes += (await Deno.stat(f.path)).size;
  console.log(`corpus: ${files.length} files, ${(bytes / 1e6).toFixed(1)} MB (mixed) in ${src}`);

  const mogile = await serveMogile();
  const s3 = await serveDouble<S3Connection>(["s3", "--bucket", "uploads"], {
    maxHeapMb: DOUBLE_HEAP_MB,
  });
  try {
    const client = new MogileFsClient({ trackers: mogile.url.trackers });
    const mogileFill = await fill(files, async (key, b) => {
      await client.write("ugc", key, "", b.length, md5(b), once(b));
    });
    await client.close();
    console.log(`filled the MogileFS double in ${mogileFill.toFixed(1)} s`);
    const s3client = plainS3Client(s3.info);
    const s3Fill = await fill(files, async (key, b) => {
      await s3client.send(
        new PutObjectCommand({
          Bucket: "uploads",
          Key: `corpus/${key}`,
          Body: b,
          ContentLength: b.length,
        }),
      );
    });
    s3client.destroy();
    console.log(`filled the S3 double in ${s3Fill.toFixed(1)} s`);

    const sources: { name: string; open: () => Promise<Source> }[] = [
      { name: "directory (baseline)", open: () => DirectorySource.open(src) },
      { name: "MogileFS double", open: () => MogileFsSource.open(mogile.url) },
      {
        name: "S3 double (s3rver)",
        open: () => S3Source.open({ kind: "s3", bucket: "uploads", prefix: "corpus/" }, s3.info),
      },
    ];
    const best = new Map<string, number>();
    const ceiling = new Map<string, number>();
    for (let round = 1; round <= rounds; round++) {
      for (const s of sources) {
        const source = await s.open();
        try {
          const mbps = await backfill(source, localVault(work), { work, workers: 2 });
          let line = `round ${round}  ${s.name.padEnd(22)} ${mbps.toFixed(1)} MB/s`;
          best.set(s.name, Math.max(best.get(s.name) ?? 0, mbps));
          if (!(source instanceof DirectorySource)) {
            const bare = await bareRead(source);
            ceiling.set(s.name, Math.max(ceiling.get(s.name) ?? 0, bare));
            line += `   (the peer alone serves ${bare.toFixed(1)} MB/s)`;
          }
          console.log(line);
        } finally {
          await source.close();
        }
      }
    }
    const base = best.get("directory (baseline)")!;
    console.log(
      "\nbackfill, best of rounds: ratio to the directory in this run (target >= 0.70), " +
        "and to what the peer alone serves",
    );
    for (const [name, mbps] of best) {
      const bare = ceiling.get(name);
      console.log(
        `  ${name.padEnd(22)} ${mbps.toFixed(1).padStart(7)} MB/s  ${(mbps / base).toFixed(2)}x` +
          (bare === undefined ? "" : `   ${(mbps / bare).toFixed(2)}x of ${bare.toFixed(1)} MB/s`),
      );
    }
  } finally {
    await mogile.close();
    await s3.close();
  }
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
}

async function benchLatency(work: string, uploads: number, rate: number): Promise<void> {
  const mogile = await serveMogile();
  const state = await Deno.makeTempDir({ dir: work, prefix: "latency_" });
  const source = await MogileFsSource.open(mogile.url);
  const catalog = await SqliteCatalog.open(`${state}/catalog.db`);
  const store = await LocalVault.open(`${state}/vault`);
  const packer = await openPacker(source, `${state}/spool`, { readAhead: 8 });
  const stop = new AbortController();
  const client = new MogileFsClient({ trackers: mogile.url.trackers });
  const closedAt = new Map<number, number>();
  try {
    const daemon = runBackup(liveDeps({ source, packer, store, catalog }), {
      maxAgeMs: 5_000,
      signal: stop.signal,
    });
    await new Promise((r) => setTimeout(r, 1_500));
    const rand = prng(7);
    const t0 = performance.now();
    const inFlight: Promise<void>[] = [];
    for (let i = 0; i < uploads; i++) {
      const due = t0 + (i * 1000) / rate;
      const wait = due - performance.now();
      if (wait > 0) await new Promise((r) => setTimeout(r, wait));
      const size = 1_000 + Math.floor(rand() * 200_000);
      const bytes = new Uint8Array(size).fill(i & 0xff);
      inFlight.push(
        client.write("ugc", `trickle/${i}.bin`, "", size, md5(bytes), once(bytes)).then((w) => {
          closedAt.set(w.fid, Date.now());
        }),
      );
    }
    await Promise.all(inFlight);
    const sent = (performance.now() - t0) / 1000;
    // Bounded wait for the last rows.
    for (let i = 0; i < 100; i++) {
      const n = (await catalog.status()).files;
      if (n.pending + n.archived >= uploads) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    stop.abort();
    await daemon;
    const db = new DatabaseSync(`${state}/catalog.db`, { readOnly: true });
    const rows = db.prepare("SELECT source_fid, discovered_at FROM files").all();
    db.close();
    const latencies: number[] = [];
    for (const r of rows) {
      const at = closedAt.get(Number(r.source_fid));
      if (at !== undefined) latencies.push((Number(r.discovered_at) - at) / 1000);
    }
    latencies.sort((a, b) => a - b);
    console.log(
      `\ndiscovery latency, MogileFS double: ${uploads} uploads at ${rate}/s (sent in ${
        sent.toFixed(1)
      } s); ${latencies.length} found`,
    );
    console.log(
      `  create_close -> catalog row: p50 ${percentile(latencies, 50).toFixed(3)} s, p99 ${
        percentile(latencies, 99).toFixed(3)
      } s, max ${latencies.at(-1)?.toFixed(3)} s (target p99 <= 2 s)`,
    );
    if (latencies.length < uploads) console.log(`  MISSING: ${uploads - latencies.length} files`);
  } finally {
    stop.abort();
    await client.close();
    await packer.close();
    await catalog.close();
    await store.close();
    await source.close();
    await mogile.close();
    await Deno.remove(state, { recursive: true });
  }
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      files: { type: "string", default: "20000" },
      rounds: { type: "string", default: "2" },
      uploads: { type: "string", default: "1000" },
      rate: { type: "string", default: "50" },
      only: { type: "string" },
      keep: { type: "string" },
    },
  });
  const work = values.keep ?? await Deno.makeTempDir({ prefix: "coldpack_bench_sources_" });
  try {
    if (values.only !== "latency") {
      await benchBackfill(work, Number(values.files), Number(values.rounds));
    }
    if (values.only !== "backfill") {
      await benchLatency(work, Number(values.uploads), Number(values.rate));
    }
  } finally {
    if (values.keep === undefined) await Deno.remove(work, { recursive: true });
  }
}

if (import.meta.main) await main();
