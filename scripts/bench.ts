/**
 * Backup benchmarks, each against a baseline measured in the same run on the
 * same files (these machines are shared and noisy; only ratios compare).
 *
 *   mixed    backfill of a mixed corpus (median ~50 KB, 1 % of 2-8 MB, 500 MB):
 *            MB/s vs `tar -cf - DIR | tee OUT.tar | openssl dgst -sha256`, and vs
 *            `restic backup`; peak RSS of coldpack-backup.
 *   tiny     backfill of 100,000 files of 1-10 KB: files/s vs `restic backup`
 *            (and vs the tar pipeline).
 *   latency  a writer adds 50 files/s for 60 s to a followed directory, max age
 *            5 s: p50 / p99 seconds from file creation to catalog commit.
 *
 * Each tool runs `--rounds` times (default 2) in alternation after a warm-up
 * read of the corpus; the best time of each is compared (the page cache of
 * these VMs is dropped often, so the best run is the one least disturbed).
 *
 * Usage: deno task bench [mixed] [tiny] [latency] [--dir DIR] [--rounds N]
 *        [--total 500MB] [--count 100000] [--seconds 60]
 * @module
 */

import { parseArgs } from "node:util";
import { DatabaseSync } from "node:sqlite";
import { mixedCorpus, tinyCorpus } from "./corpus.ts";
import { parseSize } from "../core/size.ts";
import { BACKUP_PERMISSIONS, V8_FLAGS } from "./runtime_flags.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const PERMS = [...BACKUP_PERMISSIONS, V8_FLAGS];

interface Timed {
  seconds: number;
  rssKb: number;
  out: string;
}

/** Runs a command under /usr/bin/time; returns wall seconds and peak RSS. */
async function timed(cmd: string[], env: Record<string, string> = {}): Promise<Timed> {
  const out = await new Deno.Command("/usr/bin/time", {
    args: ["-f", "BENCH %e %M", ...cmd],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  const m = /BENCH ([\d.]+) (\d+)/.exec(stderr);
  if (out.code !== 0 || !m) {
    throw new Error(`${cmd.join(" ")} failed (${out.code}): ${stderr.slice(-2000)}`);
  }
  return {
    seconds: Number(m[1]),
    rssKb: Number(m[2]),
    out: new TextDecoder().decode(out.stdout) + stderr,
  };
}

async function sh(script: string): Promise<Timed> {
  return await timed(["sh", "-c", script]);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

async function which(cmd: string): Promise<boolean> {
  const out = await new Deno.Command("sh", { args: ["-c", `command -v ${cmd}`] }).output();
  return out.code === 0;
}

async function rmrf(path: string): Promise<void> {
  await Deno.remove(path, { recursive: true }).catch(() => {});
}

/** Reads every file once so that each tool starts from the same warm cache. */
async function warm(dir: string): Promise<void> {
  await sh(`find ${dir} -type f -print0 | xargs -0 cat > /dev/null`);
}

async function coldpackOnce(dir: string, state: string): Promise<Timed> {
  await rmrf(state);
  return await timed([
    Deno.execPath(),
    "run",
    "--quiet",
    ...PERMS,
    `${ROOT}/cmd/backup.ts`,
    "--source",
    dir,
    "--once",
    "--state-dir",
    state,
  ]);
}

async function tarPipeline(dir: string, out: string): Promise<Timed> {
  const parent = dir.slice(0, dir.lastIndexOf("/"));
  const base = dir.slice(dir.lastIndexOf("/") + 1);
  const t = await sh(
    `tar -C ${parent} -cf - ${base} | tee ${out} | openssl dgst -sha256 >/dev/null`,
  );
  await rmrf(out);
  return t;
}

async function resticOnce(dir: string, repo: string): Promise<Timed> {
  await rmrf(repo);
  const env = { RESTIC_PASSWORD: "coldpack-bench", RESTIC_CACHE_DIR: `${repo}-cache` };
  await timed(["restic", "init", "--repo", repo], env);
  const t = await timed(["restic", "backup", "--repo", repo, "--quiet", dir], env);
  await rmrf(repo);
  await rmrf(`${repo}-cache`);
  return t;
}

function best(ts: Timed[]): Timed {
  return ts.reduce((a, b) => (b.seconds < a.seconds ? b : a));
}

interface Row {
  what: string;
  figure: string;
  ratio: string;
  target: string;
}

function table(rows: Row[]): string {
  const w = [
    Math.max(...rows.map((r) => r.what.length), 4),
    Math.max(...rows.map((r) => r.figure.length), 6),
    Math.max(...rows.map((r) => r.ratio.length), 5),
  ];
  const line = (a: string, b: string, c: string, d: string) =>
    `${a.padEnd(w[0]!)}  ${b.padEnd(w[1]!)}  ${c.padEnd(w[2]!)}  ${d}`;
  return [
    line("what", "figure", "ratio", "target"),
    ...rows.map((r) => line(r.what, r.figure, r.ratio, r.target)),
  ].join("\n");
}

async function corpus(
  kind: "mixed" | "tiny",
  dir: string,
  opts: { total: number; count: number },
): Promise<{ files: number; bytes: number }> {
  const marker = `${dir}.done`;
  if (await exists(marker)) return JSON.parse(await Deno.readTextFile(marker));
  await rmrf(dir);
  await Deno.mkdir(dir, { recursive: true });
  console.error(`bench: generating the ${kind} corpus in ${dir} ...`);
  const [files, bytes] = kind === "mixed"
    ? await mixedCorpus(dir, opts.total)
    : await tinyCorpus(dir, opts.count);
  await Deno.writeTextFile(marker, JSON.stringify({ files, bytes }));
  return { files, bytes };
}

async function benchBackfill(
  kind: "mixed" | "tiny",
  work: string,
  rounds: number,
  opts: { total: number; count: number },
): Promise<Row[]> {
  const dir = `${work}/${kind}`;
  const { files, bytes } = await corpus(kind, dir, opts);
  const hasRestic = await which("restic");
  console.error(
    `bench ${kind}: ${files} files, ${(bytes / 1e6).toFixed(1)} MB; ${rounds} rounds` +
      (hasRestic ? "" : " (restic not installed: apt-get install restic)"),
  );
  const runs: Record<string, Timed[]> = { coldpack: [], tar: [], restic: [] };
  await warm(dir);
  for (let r = 0; r < rounds; r++) {
    runs.tar!.push(await tarPipeline(dir, `${work}/out.tar`));
    runs.coldpack!.push(await coldpackOnce(dir, `${work}/state-${kind}`));
    if (hasRestic) runs.restic!.push(await resticOnce(dir, `${work}/restic-${kind}`));
    console.error(
      `  round ${r + 1}: tar ${runs.tar!.at(-1)!.seconds} s, coldpack ${
        runs.coldpack!.at(-1)!.seconds
      } s` + (hasRestic ? `, restic ${runs.restic!.at(-1)!.seconds} s` : ""),
    );
  }
  const cp = best(runs.coldpack!);
  const tar = best(runs.tar!);
  const rows: Row[] = [];
  const mb = bytes / 1e6;
  if (kind === "mixed") {
    rows.push({
      what: "mixed backfill, coldpack",
      figure: `${(mb / cp.seconds).toFixed(1)} MB/s`,
      ratio: `${(tar.seconds / cp.seconds).toFixed(2)} x tar`,
      target: ">= 0.6 x tar",
    });
    rows.push({
      what: "mixed backfill, tar|tee|sha256",
      figure: `${(mb / tar.seconds).toFixed(1)} MB/s`,
      ratio: "1.00",
      target: "baseline",
    });
    if (hasRestic) {
      const rs = best(runs.restic!);
      rows.push({
        what: "mixed backfill, restic",
        figure: `${(mb / rs.seconds).toFixed(1)} MB/s`,
        ratio: `coldpack ${(rs.seconds / cp.seconds).toFixed(2)} x restic`,
        target: "(restic ~0.4 x tar)",
      });
    }
  } else {
    rows.push({
      what: "tiny backfill, coldpack",
      figure: `${(files / cp.seconds).toFixed(0)} files/s`,
      ratio: hasRestic ? `${(best(runs.restic!).seconds / cp.seconds).toFixed(2)} x restic` : "",
      target: ">= 2 x restic",
    });
    if (hasRestic) {
      const rs = best(runs.restic!);
      rows.push({
        what: "tiny backfill, restic",
        figure: `${(files / rs.seconds).toFixed(0)} files/s`,
        ratio: "1.00",
        target: "baseline",
      });
    }
    rows.push({
      what: "tiny backfill, tar|tee|sha256",
      figure: `${(files / tar.seconds).toFixed(0)} files/s`,
      ratio: `coldpack ${(tar.seconds / cp.seconds).toFixed(2)} x tar`,
      target: "(reference)",
    });
  }
  const peak = Math.max(...runs.coldpack!.map((t) => t.rssKb));
  rows.push({
    what: `${kind} backfill, peak RSS`,
    figure: `${(peak / 1024).toFixed(0)} MB`,
    ratio: "",
    target: "<= 256 MB",
  });
  return rows;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)]!;
}

async function benchLatency(work: string, seconds: number): Promise<Row[]> {
  const dir = `${work}/latency-src`;
  const state = `${work}/latency-state`;
  await rmrf(dir);
  await rmrf(state);
  await Deno.mkdir(dir, { recursive: true });
  const daemon = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      ...PERMS,
      `${ROOT}/cmd/backup.ts`,
      "--source",
      dir,
      "--state-dir",
      state,
      "--max-age",
      "5s",
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  await new Promise((r) => setTimeout(r, 2000)); // let it start and watch
  console.error(`bench latency: writing 50 files/s for ${seconds} s ...`);
  const payload = crypto.getRandomValues(new Uint8Array(20_000));
  const start = Date.now();
  let n = 0;
  while (Date.now() - start < seconds * 1000) {
    const due = start + (n * 1000) / 50;
    const wait = due - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    await Deno.writeFile(`${dir}/f${String(n).padStart(6, "0")}.bin`, payload.subarray(n % 1000));
    n++;
  }
  // Wait for the last files to be committed (max age 5 s + upload), then stop.
  const db = `${state}/catalog.db`;
  for (let i = 0; i < 60; i++) {
    await new Promise((r) => setTimeout(r, 500));
    const c = new DatabaseSync(db, { readOnly: true });
    const row = c.prepare("SELECT COUNT(*) AS n FROM files WHERE state = 'archived'").get() as {
      n: number;
    };
    c.close();
    if (row.n >= n) break;
  }
  daemon.kill("SIGTERM");
  await daemon.status;
  const c = new DatabaseSync(db, { readOnly: true });
  const rows = c.prepare(
    "SELECT (archived_at - mtime_ms) / 1000.0 AS s FROM files WHERE state = 'archived' ORDER BY s",
  ).all() as { s: number }[];
  c.close();
  const lat = rows.map((r) => r.s);
  await rmrf(dir);
  await rmrf(state);
  return [
    {
      what: `latency, ${n} files at 50/s, max age 5 s`,
      figure: `p50 ${percentile(lat, 50).toFixed(2)} s, p99 ${percentile(lat, 99).toFixed(2)} s`,
      ratio: `${lat.length}/${n} committed`,
      target: "p99 <= 10 s",
    },
  ];
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: {
      dir: { type: "string" },
      rounds: { type: "string" },
      total: { type: "string" },
      count: { type: "string" },
      seconds: { type: "string" },
    },
  });
  const which_ = positionals.length > 0 ? positionals : ["mixed", "tiny", "latency"];
  const work = values.dir ?? "/tmp/coldpack-bench";
  await Deno.mkdir(work, { recursive: true });
  const rounds = Number(values.rounds ?? 2);
  const opts = {
    total: parseSize(values.total ?? "500MB"),
    count: Number(values.count ?? 100_000),
  };
  const rows: Row[] = [];
  for (const b of which_) {
    if (b === "mixed" || b === "tiny") rows.push(...await benchBackfill(b, work, rounds, opts));
    else if (b === "latency") rows.push(...await benchLatency(work, Number(values.seconds ?? 60)));
    else {
      console.error(`bench: unknown benchmark "${b}" (mixed, tiny, latency)`);
      Deno.exit(2);
    }
  }
  console.log(`\ncoldpack benchmarks, ${new Date().toISOString()}, ${Deno.build.target}`);
  console.log(table(rows));
}
