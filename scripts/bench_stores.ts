/**
 * Backfill throughput into the remote cold stores, over loopback, as a
 * ratio to the local vault in the same run (issue 3's target: >= 0.8).
 *
 * The same mixed corpus (scripts/corpus.ts) is backed up, in this process,
 * through the whole pipeline (directory source, worker packer, SQLite
 * catalog) into: the local vault directory (the baseline), the Glacier vault
 * adapter against the Glacier double, and the S3 adapter (DEEP_ARCHIVE)
 * against the S3 archive-class double over s3rver. Each double runs as its
 * own process (tests/doubles/serve.ts), as a remote service would; they
 * verify every tree hash, SHA-256 and SigV4 signature they receive, and
 * they share this machine's cores with the pipeline, so the ratio is a
 * floor.
 * Rounds alternate the stores; the best round of each counts.
 *
 * Usage:
 *   deno run -A scripts/bench_stores.ts [--total 200MB] [--rounds 3] [--keep DIR]
 * @module
 */

import { parseArgs } from "node:util";
import { DirectorySource } from "../adapters/source/directory.ts";
import { GlacierStore } from "../adapters/store/glacier.ts";
import { S3GlacierStore } from "../adapters/store/s3_glacier.ts";
import { parseSize } from "../core/size.ts";
import type { S3Connection } from "../tests/doubles/s3_archive.ts";
import { backfill, type BackfillTarget, localVault, serveDouble } from "./_bench.ts";
import { mixedCorpus } from "./corpus.ts";

/** What the Glacier double prints: where it listens and how to sign in. */
interface GlacierInfo {
  readonly endpoint: string;
  readonly region: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      total: { type: "string", default: "200MB" },
      rounds: { type: "string", default: "3" },
      keep: { type: "string" },
    },
  });
  const total = parseSize(values.total);
  const rounds = Number(values.rounds);
  const work = values.keep ?? await Deno.makeTempDir({ prefix: "coldpack_bench_stores_" });
  const src = `${work}/corpus`;
  let files: number;
  let bytes: number;
  try {
    await Deno.stat(src);
    [files, bytes] = await count(src);
  } catch {
    await Deno.mkdir(src, { recursive: true });
    [files, bytes] = await mixedCorpus(src, total);
  }
  console.log(`corpus: ${files} files, ${(bytes / 1e6).toFixed(1)} MB (mixed) in ${src}`);

  const glacierDouble = await serveDouble<GlacierInfo>(["glacier", "--vault", "bench"]);
  const s3Double = await serveDouble<S3Connection>(["s3", "--bucket", "bench-bucket"]);
  const glacier = glacierDouble.info;
  const s3 = s3Double.info;
  const targets: BackfillTarget[] = [
    localVault(work),
    {
      name: "glacier double",
      open: async () => {
        const store = await GlacierStore.open(`glacier://${glacier.region}/bench`, {
          endpoint: glacier.endpoint,
          credentials: glacier.credentials,
        });
        return { store, close: () => store.close() };
      },
    },
    {
      name: "s3 double (DEEP_ARCHIVE)",
      open: async () => {
        const prefix = `run-${crypto.randomUUID()}`;
        const store = await S3GlacierStore.open(
          `s3://bench-bucket/${prefix}?storage-class=DEEP_ARCHIVE`,
          s3,
        );
        return { store, close: () => store.close() };
      },
    },
  ];
  const best = new Map<string, number>();
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const t of targets) {
        const source = await DirectorySource.open(src);
        let mbps: number;
        try {
          mbps = await backfill(source, t, { work, workers: 1 });
        } finally {
          await source.close();
        }
        console.log(`round ${round}  ${t.name.padEnd(26)} ${mbps.toFixed(1)} MB/s`);
        best.set(t.name, Math.max(best.get(t.name) ?? 0, mbps));
      }
    }
  } finally {
    await glacierDouble.close();
    await s3Double.close();
    if (values.keep === undefined) await Deno.remove(work, { recursive: true });
  }
  const base = best.get("local vault")!;
  console.log("\nbest of rounds (ratio to the local vault in this run; target >= 0.80)");
  for (const [name, mbps] of best) {
    console.log(
      `  ${name.padEnd(26)} ${mbps.toFixed(1).padStart(7)} MB/s  ${(mbps / base).toFixed(2)}x`,
    );
  }
}

async function count(dir: string): Promise<[number, number]> {
  let files = 0;
  let bytes = 0;
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) {
      const [f, b] = await count(path);
      files += f;
      bytes += b;
    } else if (e.isFile) {
      files++;
      bytes += (await Deno.stat(path)).size;
    }
  }
  return [files, bytes];
}

if (import.meta.main) await main();
