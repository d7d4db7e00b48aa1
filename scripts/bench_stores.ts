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
import { WorkerPacker } from "../adapters/pack/worker_packer.ts";
import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
import { LocalVault } from "../adapters/store/local_vault.ts";
import { GlacierStore } from "../adapters/store/glacier.ts";
import { S3GlacierStore } from "../adapters/store/s3_glacier.ts";
import { randomBytes, systemClock } from "../adapters/clock.ts";
import { runBackup } from "../core/backup.ts";
import type { ColdStore } from "../core/ports.ts";
import { parseSize } from "../core/size.ts";
import { mixedCorpus } from "./corpus.ts";

interface Target {
  readonly name: string;
  open(): Promise<{ store: ColdStore; close: () => Promise<void> }>;
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

  const glacier = await serveDouble(["glacier", "--vault", "bench"]);
  const s3 = await serveDouble(["s3", "--bucket", "bench-bucket"]);
  const targets: Target[] = [
    {
      name: "local vault",
      open: async () => {
        const dir = await Deno.makeTempDir({ dir: work, prefix: "vault_" });
        const store = await LocalVault.open(dir);
        return {
          store,
          close: async () => {
            await store.close();
            await Deno.remove(dir, { recursive: true });
          },
        };
      },
    },
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
          {
            endpoint: s3.endpoint,
            forcePathStyle: true,
            region: s3.region,
            credentials: s3.credentials,
          },
        );
        return { store, close: () => store.close() };
      },
    },
  ];
  const best = new Map<string, number>();
  try {
    for (let round = 1; round <= rounds; round++) {
      for (const t of targets) {
        const mbps = await backfill(src, work, t);
        console.log(`round ${round}  ${t.name.padEnd(26)} ${mbps.toFixed(1)} MB/s`);
        best.set(t.name, Math.max(best.get(t.name) ?? 0, mbps));
      }
    }
  } finally {
    await glacier.close();
    await s3.close();
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

interface Served {
  readonly endpoint: string;
  readonly region: string;
  readonly credentials: { accessKeyId: string; secretAccessKey: string };
  close(): Promise<void>;
}

/** Starts a double in its own process and reads where it listens. */
async function serveDouble(args: string[]): Promise<Served> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../tests/doubles/serve.ts", import.meta.url).pathname, ...args],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the ${args[0]} double exited before saying where it listens`);
    text += value;
  }
  reader.releaseLock();
  child.stdout.cancel().catch(() => {});
  const info = JSON.parse(text.slice(0, text.indexOf("\n")));
  return {
    ...info,
    close: async () => {
      await child.stdin.close();
      await child.status;
    },
  };
}

async function backfill(src: string, work: string, target: Target): Promise<number> {
  const state = await Deno.makeTempDir({ dir: work, prefix: "state_" });
  const { store, close } = await target.open();
  const source = await DirectorySource.open(src);
  const catalog = await SqliteCatalog.open(`${state}/catalog.db`);
  const packer = await WorkerPacker.open(source.root, `${state}/spool`, { workers: 1 });
  try {
    const t0 = performance.now();
    const s = await runBackup({
      source,
      packer,
      store,
      catalog,
      clock: systemClock,
      random: randomBytes,
    }, { once: true, packers: 1 });
    const seconds = (performance.now() - t0) / 1000;
    if (s.fatal !== null || s.failedFiles > 0) {
      throw new Error(`${target.name}: backfill failed: ${s.fatal ?? `${s.failedFiles} files`}`);
    }
    return s.archivedBytes / 1e6 / seconds;
  } finally {
    await packer.close();
    await catalog.close();
    await source.close();
    await close();
    await Deno.remove(state, { recursive: true });
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
