/**
 * Catalog benchmark on a throwaway MariaDB (started here through
 * `tests/_mariadb.ts`), each figure next to a baseline measured in the same
 * run on the same machine (these machines are shared and noisy):
 *
 *   commit   `--files` file rows discovered (`addDiscovered`, pages of 1,000)
 *            then committed in archives of 500 files of ~50 KB (25 MB
 *            archives), through `MysqlCatalog`: files/s and archives/s; the
 *            same through `SqliteCatalog` on a file on disk is the baseline.
 *   lookups  `--lookup-rows` file rows in `--lookup-rows / 25` archives,
 *            bulk-loaded with LOAD DATA LOCAL INFILE (rows generated on the
 *            fly, ~5 % of keys with two versions); then `--lookups` random
 *            `file(id)` and `fileVersions(source, key)` calls, one at a time:
 *            p50 / p99 / max, against a `SELECT 1` round trip through the same
 *            pool (`ping()`), interleaved with them. Target: p99 <= 5 ms.
 *
 * Durability as in production on both sides: InnoDB flushes its log at every
 * commit (`innodb_flush_log_at_trx_commit=1`), SQLite runs `synchronous=FULL`.
 *
 * Usage: deno run -A scripts/bench_catalog.ts [--files 1000000]
 *        [--lookup-rows 10000000] [--lookups 10000] [--buffer-pool 4G]
 *        [--skip-commit] [--skip-lookups]
 * Quick run: --files 20000 --lookup-rows 200000 --lookups 2000
 * @module
 */

import { parseArgs } from "node:util";
import { Buffer } from "node:buffer";
import { Readable } from "node:stream";
import mysql from "mysql2/promise";
import { type MariaDB, startMariaDB } from "../tests/_mariadb.ts";
import { MysqlCatalog } from "../adapters/catalog/mysql.ts";
import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
import { archiveId, type FileId, fileId, remoteArchiveId, sourceId } from "../core/ids.ts";
import type { ArchiveMember, Catalog, SourceEntry } from "../core/ports.ts";

const args = parseArgs({
  options: {
    files: { type: "string", default: "1000000" },
    "lookup-rows": { type: "string", default: "10000000" },
    lookups: { type: "string", default: "10000" },
    "buffer-pool": { type: "string", default: "4G" },
    "skip-commit": { type: "boolean", default: false },
    "skip-lookups": { type: "boolean", default: false },
  },
});

function count(flag: string, text: string): number {
  const n = Number(text.replaceAll("_", "").replaceAll(",", ""));
  if (!Number.isSafeInteger(n) || n <= 0) {
    throw new RangeError(`Invalid --${flag}: ${text} is not a positive integer`);
  }
  return n;
}

const FILES = count("files", args.values.files);
const LOOKUP_ROWS = count("lookup-rows", args.values["lookup-rows"]);
const LOOKUPS = count("lookups", args.values.lookups);
const PER_ARCHIVE = 500;
const FILES_PER_LOOKUP_ARCHIVE = 25;
const PAGE = 1000;
const SRC = sourceId("mogilefs://tracker:7001/ugc");
const NOW = 1_760_000_000_000;

/** A deterministic size around 50 KB (20-80 KB) for file `i`. */
function sizeOf(i: number): number {
  return 20_000 + ((i * 2_654_435_761) >>> 0) % 60_000;
}

function md5Of(i: number): string {
  return i.toString(16).padStart(32, "0");
}

function fmt(n: number, digits = 0): string {
  return n.toLocaleString("en-US", {
    minimumFractionDigits: digits,
    maximumFractionDigits: digits,
  });
}

// ---------------------------------------------------------------------------
// (a) commit rate

interface CommitFigures {
  discoverSeconds: number;
  commitSeconds: number;
  archives: number;
}

async function commitRate(catalog: Catalog, files: number): Promise<CommitFigures> {
  const ids = new Float64Array(files);
  const t0 = performance.now();
  for (let p = 0; p < files; p += PAGE) {
    const entries: SourceEntry[] = [];
    for (let i = p; i < Math.min(files, p + PAGE); i++) {
      entries.push({
        key: `ugc/product/${Math.floor(i / 4)}/file-${i % 4}.jpg`,
        version: `fid:${i + 1}`,
        length: sizeOf(i),
        mtimeMs: NOW - 60_000,
        domain: "ugc",
        storageClass: "original",
        sourceFid: i + 1,
      });
    }
    const rows = await catalog.addDiscovered(SRC, entries, NOW);
    if (rows.length !== entries.length) {
      throw new Error(`addDiscovered returned ${rows.length} rows for ${entries.length} entries`);
    }
    rows.forEach((r, j) => ids[p + j] = r.id);
  }
  const t1 = performance.now();
  let archives = 0;
  for (let a = 0; a < files; a += PER_ARCHIVE) {
    const members: ArchiveMember[] = [];
    let offset = 0;
    let dataBytes = 0;
    for (let i = a; i < Math.min(files, a + PER_ARCHIVE); i++) {
      const length = sizeOf(i);
      members.push({
        fileId: fileId(ids[i] ?? 0),
        md5: md5Of(i + 1),
        length,
        headerOffset: offset,
        dataOffset: offset + 512,
      });
      offset += 512 + Math.ceil(length / 512) * 512;
      dataBytes += length;
    }
    const id = `bench-${String(archives).padStart(8, "0")}`;
    const { skipped } = await catalog.commitArchive({
      id: archiveId(id),
      store: "file:///srv/vault",
      remoteId: remoteArchiveId(`${id}.tar`),
      size: offset + 1024,
      treeHash: "ab".repeat(32),
      fileCount: members.length,
      dataBytes,
      description: `coldpack v1 ${id}`,
      createdAt: NOW,
      committedAt: NOW + 1,
    }, members);
    if (skipped.length > 0) throw new Error(`archive ${id} skipped ${skipped.length} members`);
    archives++;
  }
  const t2 = performance.now();
  const status = await catalog.status();
  if (status.files.archived !== files || status.archives !== archives) {
    throw new Error(`status after the run is wrong: ${JSON.stringify(status)}`);
  }
  return { discoverSeconds: (t1 - t0) / 1000, commitSeconds: (t2 - t1) / 1000, archives };
}

// ---------------------------------------------------------------------------
// (b) lookups

/** The key of lookup row `id` (1-based): every 20th row is a second version of the row before. */
function lookupKey(id: number): string {
  const k = id % 20 === 0 ? id - 1 : id;
  return `ugc/product/${k}/texture.png`;
}

function lookupArchiveId(a: number): string {
  return `20261122T000000.000Z-${a.toString(16).padStart(12, "0")}`;
}

/** Tab-separated rows, generated in ~1 MiB chunks. */
function tsv(total: number, line: (i: number) => string): Readable {
  return Readable.from((function* () {
    let chunk = "";
    for (let i = 0; i < total; i++) {
      chunk += line(i);
      if (chunk.length >= 1 << 20) {
        yield Buffer.from(chunk);
        chunk = "";
      }
    }
    if (chunk.length > 0) yield Buffer.from(chunk);
  })());
}

async function load(server: MariaDB, database: string, rows: number): Promise<number> {
  const archives = Math.ceil(rows / FILES_PER_LOOKUP_ARCHIVE);
  let stream: Readable | undefined;
  const c = await mysql.createConnection({
    host: server.host,
    port: server.port,
    user: server.user,
    password: server.password,
    database,
    infileStreamFactory: () => {
      if (stream === undefined) throw new Error("LOAD DATA without a stream");
      return stream;
    },
  });
  const t0 = performance.now();
  try {
    await c.query("SET foreign_key_checks = 0, unique_checks = 0");
    stream = tsv(archives, (a) => {
      const id = lookupArchiveId(a);
      return `${id}\t${a + 1}\tfile:///srv/vault\t${id}.tar\t26214400\t${"ab".repeat(32)}\t` +
        `${FILES_PER_LOOKUP_ARCHIVE}\t26000000\tcoldpack v1 ${id}\t${NOW}\t${NOW + 1}\tcommitted\n`;
    });
    await c.query(
      `LOAD DATA LOCAL INFILE 'archives.tsv' INTO TABLE archives (id, seq, store, remote_id, size,
         tree_hash, file_count, data_bytes, description, created_at, committed_at, state)`,
    );
    // Files in statements of 1,000,000 rows, in id order.
    const step = 1_000_000;
    for (let first = 1; first <= rows; first += step) {
      const n = Math.min(step, rows - first + 1);
      stream = tsv(n, (j) => {
        const id = first + j;
        const position = (id - 1) % FILES_PER_LOOKUP_ARCHIVE;
        const length = 1_000_000 + (id % 48_000);
        const header = position * 1_049_088;
        return `${id}\t${SRC}\t${lookupKey(id)}\tfid:${id}\tugc\toriginal\t${id}\t${length}\t` +
          `${NOW - 60_000}\t${NOW}\tarchived\t${md5Of(id)}\t` +
          `${lookupArchiveId(Math.floor((id - 1) / FILES_PER_LOOKUP_ARCHIVE))}\t${header}\t` +
          `${header + 512}\t${NOW + 1}\t0\t\\N\t\\N\t\\N\n`;
      });
      await c.query(
        `LOAD DATA LOCAL INFILE 'files.tsv' INTO TABLE files (id, source, file_key, version,
           domain, storage_class, source_fid, length, mtime_ms, discovered_at, state, md5,
           archive_id, header_offset, data_offset, archived_at, attempts, next_attempt_at, note,
           claimed_by)`,
      );
      console.error(`  loaded ${fmt(first + n - 1)} / ${fmt(rows)} file rows`);
    }
    await c.query("ANALYZE TABLE files, archives");
  } finally {
    await c.end();
  }
  return (performance.now() - t0) / 1000;
}

interface Latencies {
  p50: number;
  p99: number;
  max: number;
}

function latencies(ms: number[]): Latencies {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? NaN;
  return { p50: at(0.5), p99: at(0.99), max: s[s.length - 1] ?? NaN };
}

/** Random ids from a seeded generator, so runs compare. */
function* randomIds(max: number, seed: number): Generator<number> {
  let x = seed >>> 0;
  for (;;) {
    x = (Math.imul(x, 1_664_525) + 1_013_904_223) >>> 0;
    yield 1 + (x % max);
  }
}

async function lookups(catalog: MysqlCatalog, rows: number, n: number) {
  const ids = randomIds(rows, 42);
  const next = () => ids.next().value as number;
  const time = async (fn: () => Promise<unknown>) => {
    const t = performance.now();
    await fn();
    return performance.now() - t;
  };
  // Warm-up: a server in production is warm; the first calls also prepare the pool.
  for (let i = 0; i < Math.min(2000, n); i++) {
    await catalog.file(fileId(next()));
    await catalog.fileVersions(SRC, lookupKey(next()));
  }
  const ping: number[] = [];
  const byId: number[] = [];
  const byKey: number[] = [];
  for (let i = 0; i < n; i++) {
    ping.push(await time(() => catalog.ping()));
    const id = next();
    byId.push(
      await time(async () => {
        const row = await catalog.file(fileId(id) as FileId);
        if (row === null || row.id !== id) throw new Error(`file fid:${id} not found`);
      }),
    );
    const key = lookupKey(next());
    byKey.push(
      await time(async () => {
        const versions = await catalog.fileVersions(SRC, key);
        if (versions.length === 0) throw new Error(`no versions of ${key}`);
      }),
    );
  }
  return { ping: latencies(ping), byId: latencies(byId), byKey: latencies(byKey) };
}

// ---------------------------------------------------------------------------

const server = await startMariaDB({
  bufferPoolSize: args.values["buffer-pool"],
  logFileSize: "1G",
  extraArgs: ["--local-infile=1"],
  readyTimeoutMs: 120_000,
});
const tmp = await Deno.makeTempDir({ prefix: "coldpack_bench_catalog_" });
const lines: string[] = [];
const say = (s = "") => {
  lines.push(s);
  console.error(s);
};
try {
  const version = (await server.rootQuery("SELECT VERSION() AS v"))[0]?.v;
  say(
    `coldpack catalog benchmark, ${new Date().toISOString()}, MariaDB ${version}, ` +
      `${navigator.hardwareConcurrency} CPUs, buffer pool ${args.values["buffer-pool"]}`,
  );

  if (!args.values["skip-commit"]) {
    say();
    say(
      `(a) commit rate: ${fmt(FILES)} files discovered in pages of ${fmt(PAGE)}, committed in ` +
        `archives of ${PER_ARCHIVE} files (~25 MB)`,
    );
    const sqlite = await SqliteCatalog.open(`${tmp}/catalog.db`);
    let base: CommitFigures;
    try {
      base = await commitRate(sqlite, FILES);
    } finally {
      await sqlite.close();
    }
    const database = await server.createDatabase("bench_commit");
    const my = await MysqlCatalog.open({
      host: server.host,
      port: server.port,
      user: server.user,
      password: server.password,
      database,
    });
    let got: CommitFigures;
    try {
      got = await commitRate(my, FILES);
    } finally {
      await my.close();
    }
    const row = (name: string, f: CommitFigures) =>
      `  ${name.padEnd(22)}${fmt(FILES / f.discoverSeconds).padStart(14)}` +
      `${fmt(FILES / f.commitSeconds).padStart(16)}${
        fmt(f.archives / f.commitSeconds, 1).padStart(14)
      }` +
      `${fmt(f.discoverSeconds + f.commitSeconds, 1).padStart(12)}`;
    say(
      `  ${"".padEnd(22)}${"discover f/s".padStart(14)}${"commit files/s".padStart(16)}` +
        `${"archives/s".padStart(14)}${"total s".padStart(12)}`,
    );
    say(row("sqlite (baseline)", base));
    say(row("mysql", got));
    say(
      `  ${"mysql / sqlite".padEnd(22)}` +
        `${fmt(base.discoverSeconds / got.discoverSeconds, 2).padStart(14)}` +
        `${fmt(base.commitSeconds / got.commitSeconds, 2).padStart(16)}` +
        `${fmt(base.commitSeconds / got.commitSeconds, 2).padStart(14)}` +
        `${
          fmt(
            (base.discoverSeconds + base.commitSeconds) /
              (got.discoverSeconds + got.commitSeconds),
            2,
          ).padStart(12)
        }`,
    );
    await server.dropDatabase(database);
  }

  if (!args.values["skip-lookups"]) {
    say();
    const archives = Math.ceil(LOOKUP_ROWS / FILES_PER_LOOKUP_ARCHIVE);
    say(
      `(b) lookups: ${fmt(LOOKUP_ROWS)} file rows, ${fmt(archives)} archives; ` +
        `${fmt(LOOKUPS)} random calls of each, one at a time, after a warm-up`,
    );
    const database = await server.createDatabase("bench_lookup");
    const my = await MysqlCatalog.open({
      host: server.host,
      port: server.port,
      user: server.user,
      password: server.password,
      database,
    });
    try {
      const seconds = await load(server, database, LOOKUP_ROWS);
      say(`  bulk load (LOAD DATA): ${fmt(seconds, 1)} s, ${fmt(LOOKUP_ROWS / seconds)} rows/s`);
      const r = await lookups(my, LOOKUP_ROWS, LOOKUPS);
      const line = (name: string, l: Latencies) =>
        `  ${name.padEnd(30)}${fmt(l.p50, 3).padStart(10)}${fmt(l.p99, 3).padStart(10)}` +
        `${fmt(l.max, 3).padStart(10)}${fmt(l.p99 / r.ping.p99, 2).padStart(17)}`;
      say(
        `  ${"".padEnd(30)}${"p50 ms".padStart(10)}${"p99 ms".padStart(10)}${
          "max ms".padStart(10)
        }` +
          `${"p99 / SELECT 1".padStart(17)}`,
      );
      say(line("SELECT 1 (baseline, ping())", r.ping));
      say(line("file(id)", r.byId));
      say(line("fileVersions(source, key)", r.byKey));
      const pass = r.byId.p99 <= 5 && r.byKey.p99 <= 5;
      say(`  target p99 <= 5 ms: ${pass ? "met" : "NOT met"}`);
    } finally {
      await my.close();
    }
  }
} finally {
  await server.stop();
  await Deno.remove(tmp, { recursive: true }).catch(() => {});
}
console.log(lines.join("\n"));
