/**
 * Audit sample pick benchmark on a throwaway MariaDB (started here through
 * `tests/_mariadb.ts`): `--archives` archive rows (default 1,000,000),
 * bulk-loaded with multi-row INSERTs (ids time-ordered like coldpack's, seq
 * from AUTO_INCREMENT, sizes around 25 MB), then `--picks` picks (default
 * 200, after 20 for warm-up) of `--sample` archives each (default 5), the
 * way `coldpack-audit sample` picks through the catalog port:
 * `archiveSeqRange()`, then `archivesBySeq()` of distinct random seqs in
 * `[min, max]`, again for the seqs that hit a gap, until enough are found.
 *
 * Prints per pick median / p99 / max in ms (target: <= 50 ms), next to a
 * `SELECT 1` round trip through the same pool (`ping()`) interleaved with
 * the picks, and what the pick avoids: `COUNT(*)` and `SUM(size)` over the
 * archives (median of 5), which `archive_stats` replaces.
 *
 * Usage: deno run -A scripts/bench_audit_pick.ts [--archives 1000000]
 *        [--picks 200] [--sample 5] [--buffer-pool 1G] [--seed 1]
 * Quick run: --archives 50000 --picks 50
 * @module
 */

import { parseArgs } from "node:util";
import mysql from "mysql2/promise";
import { startMariaDB } from "../tests/_mariadb.ts";
import { MysqlCatalog } from "../adapters/catalog/mysql.ts";
import { prng } from "../core/prng.ts";
import type { ArchiveRow, Catalog } from "../core/ports.ts";

const args = parseArgs({
  options: {
    archives: { type: "string", default: "1000000" },
    picks: { type: "string", default: "200" },
    sample: { type: "string", default: "5" },
    "buffer-pool": { type: "string", default: "1G" },
    seed: { type: "string", default: "1" },
  },
});

function count(flag: string, text: string): number {
  const n = Number(text.replaceAll("_", "").replaceAll(",", ""));
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new RangeError(`Invalid --${flag}: ${text} is not a positive integer`);
  }
  return n;
}

const ARCHIVES = count("archives", args.values.archives);
const PICKS = count("picks", args.values.picks);
const SAMPLE = count("sample", args.values.sample);
const SEED = count("seed", args.values.seed);
const WARMUP = 20;
/** Rows per INSERT statement of the bulk load. */
const LOAD_CHUNK = 5000;
const T0 = Date.UTC(2020, 0, 1);

/** The rows of one INSERT: archive k was committed k minutes after T0. */
function archiveValues(from: number, n: number): string {
  const rows: string[] = [];
  for (let k = from; k < from + n; k++) {
    const at = T0 + k * 60_000;
    const id = `${new Date(at).toISOString().replace(/[-:]/g, "")}-${
      k.toString(16).padStart(12, "0")
    }`;
    const size = 25_000_000 + (k * 7919) % 1_000_000;
    rows.push(
      `('${id}', 'glacier://eu-west-1/coldpack', 'remote-${k}', ${size}, '${
        "ab".repeat(32)
      }', 500, ${size - 512_000}, 'coldpack v1 ${id}', ${at}, ${at + 1000})`,
    );
  }
  return rows.join(",\n");
}

function quantile(sorted: readonly number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
}

function summary(ms: number[]): string {
  const s = [...ms].sort((a, b) => a - b);
  return `median ${quantile(s, 0.5).toFixed(2)} ms, p99 ${quantile(s, 0.99).toFixed(2)} ms, ` +
    `max ${(s[s.length - 1] ?? NaN).toFixed(2)} ms`;
}

/**
 * One pick as the sampler makes it: the seq range, then distinct random
 * seqs not tried before, until `n` archives are found (or every seq was tried).
 */
async function pick(catalog: Catalog, n: number, random: () => number): Promise<ArchiveRow[]> {
  const range = await catalog.archiveSeqRange();
  if (range === null) return [];
  const want = Math.min(n, range.count);
  const span = range.max - range.min + 1;
  const tried = new Set<number>();
  const found: ArchiveRow[] = [];
  while (found.length < want && tried.size < span) {
    const seqs: number[] = [];
    while (seqs.length < want - found.length && tried.size < span) {
      const seq = range.min + Math.floor(random() * span);
      if (tried.has(seq)) continue;
      tried.add(seq);
      seqs.push(seq);
    }
    found.push(...await catalog.archivesBySeq(seqs));
  }
  return found;
}

const server = await startMariaDB({
  bufferPoolSize: args.values["buffer-pool"],
  logFileSize: "512M",
  readyTimeoutMs: 120_000,
});
try {
  const version = (await server.rootQuery("SELECT VERSION() AS v"))[0]?.v;
  console.log(
    `coldpack audit pick benchmark, ${new Date().toISOString()}, MariaDB ${version}, ` +
      `${navigator.hardwareConcurrency} CPUs, buffer pool ${args.values["buffer-pool"]}`,
  );
  const database = await server.createDatabase("bench_audit");
  const options = {
    host: server.host,
    port: server.port,
    user: server.user,
    password: server.password,
    database,
  };
  const catalog = await MysqlCatalog.open(options);
  try {
    const conn = await mysql.createConnection(options);
    let avoided: { count: string; sum: string };
    try {
      const started = performance.now();
      for (let i = 0; i < ARCHIVES; i += LOAD_CHUNK) {
        await conn.query(
          `INSERT INTO archives (id, store, remote_id, size, tree_hash, file_count, data_bytes,
             description, created_at, committed_at)
           VALUES ${archiveValues(i, Math.min(LOAD_CHUNK, ARCHIVES - i))}`,
        );
      }
      // What commitArchive keeps up to date, computed once for the bulk load.
      await conn.query(
        `UPDATE archive_stats SET archives = (SELECT COUNT(*) FROM archives),
           bytes = (SELECT COALESCE(SUM(size), 0) FROM archives) WHERE id = 1`,
      );
      await conn.query("ANALYZE TABLE archives");
      console.log(
        `loaded ${ARCHIVES.toLocaleString("en")} archives in ` +
          `${((performance.now() - started) / 1000).toFixed(1)} s`,
      );
      const timed = async (sql: string) => {
        const ms: number[] = [];
        for (let i = 0; i < 5; i++) {
          const t = performance.now();
          await conn.query(sql);
          ms.push(performance.now() - t);
        }
        return summary(ms).split(",")[0] ?? "";
      };
      avoided = {
        count: await timed("SELECT COUNT(*) FROM archives"),
        sum: await timed("SELECT SUM(size) FROM archives"),
      };
    } finally {
      await conn.end();
    }

    const range = await catalog.archiveSeqRange();
    if (range === null) throw new Error("no archives after the load");
    console.log(
      `seq range [${range.min}, ${range.max}], ${range.count.toLocaleString("en")} archives ` +
        `(${(range.count / (range.max - range.min + 1) * 100).toFixed(2)} % dense), ` +
        `${(range.bytes / 1e12).toFixed(2)} TB`,
    );
    const random = prng(SEED);
    const picks: number[] = [];
    const pings: number[] = [];
    let picked = 0;
    for (let i = 0; i < WARMUP + PICKS; i++) {
      let t = performance.now();
      await catalog.ping();
      const ping = performance.now() - t;
      t = performance.now();
      const rows = await pick(catalog, SAMPLE, random);
      const ms = performance.now() - t;
      if (rows.length !== Math.min(SAMPLE, range.count)) {
        throw new Error(`pick ${i} found ${rows.length} archives, expected ${SAMPLE}`);
      }
      if (i >= WARMUP) {
        picks.push(ms);
        pings.push(ping);
        picked += rows.length;
      }
    }
    console.log(
      `pick of ${SAMPLE} (archiveSeqRange + archivesBySeq), ${PICKS} picks ` +
        `(${picked} archives): ${summary(picks)}  (target <= 50 ms)`,
    );
    console.log(`ping (SELECT 1 round trip, same pool): ${summary(pings)}`);
    console.log(
      `avoided by archive_stats: COUNT(*) ${avoided.count}, SUM(size) ${avoided.sum} ` +
        `(median of 5, warm)`,
    );
  } finally {
    await catalog.close();
  }
} finally {
  await server.stop();
}
