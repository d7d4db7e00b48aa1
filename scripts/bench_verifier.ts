/**
 * Issue 8's verifier benchmark: md5 throughput of the audit verifier's
 * streaming path (a local vault retrieval read through
 * `ColdStore.readRetrieval`, parsed by core/tar_reader.ts, every entry
 * md5'd by adapters/audit/tar_digest.ts) against `openssl dgst -md5` over
 * the same tar files, in the same run. Target: ratio >= 0.8.
 *
 * The tars are ~25 MB each, with files of 4 KiB to 2 MiB (log-uniform, a
 * fixed seed), as the backup makes them. Each round times the verifier over
 * every tar, then one `openssl dgst -md5` process over every tar; the
 * median of the rounds is reported (the first round also warms the page
 * cache, so both read from memory). The verifier hashes on two threads
 * (adapters/audit/tar_digest.ts): on a 2-core machine, other load lowers its
 * figure more than openssl's single-threaded one, so bench on a quiet machine.
 *
 * Usage: deno run -A scripts/bench_verifier.ts [--archives N] [--rounds R] [--keep DIR]
 * @module
 */

import { parseArgs } from "node:util";
import { digestTar } from "../adapters/audit/tar_digest.ts";
import { LocalVault } from "../adapters/store/local_vault.ts";
import { remoteArchiveId } from "../core/ids.ts";
import { prng } from "../core/prng.ts";
import { tarHeader, tarPadding, tarTrailer } from "../core/tar.ts";

const MB = 1_000_000;
const TARGET = 25 * MB;

async function writeTar(path: string, seed: number): Promise<{ bytes: number; entries: number }> {
  const random = prng(seed);
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const data = new Uint8Array(2 * 1024 * 1024);
  for (let i = 0; i < data.length; i++) data[i] = (random() * 256) | 0;
  let offset = 0;
  let entries = 0;
  const write = async (b: Uint8Array) => {
    let at = 0;
    while (at < b.length) at += await file.write(b.subarray(at));
    offset += b.length;
  };
  try {
    while (offset < TARGET) {
      const size = Math.round(4096 * Math.pow(512, random()));
      const header = tarHeader(
        { name: `f/${seed}/${entries}.bin`, size, mtimeMs: 0 },
        { offset, alignBelow: 256 * 1024 },
      );
      await write(header);
      const start = (random() * (data.length - size)) | 0;
      await write(data.subarray(start, start + size));
      await write(new Uint8Array(tarPadding(size)));
      entries++;
    }
    await write(tarTrailer());
  } finally {
    file.close();
  }
  return { bytes: offset, entries };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      archives: { type: "string", default: "8" },
      rounds: { type: "string", default: "5" },
      keep: { type: "string" },
    },
  });
  const n = Number(values.archives);
  const rounds = Number(values.rounds);
  const work = values.keep ?? await Deno.makeTempDir({ prefix: "coldpack-bench-verifier-" });
  try {
    const vault = await LocalVault.open(`${work}/vault`);
    const names: string[] = [];
    let total = 0;
    let entries = 0;
    for (let i = 0; i < n; i++) {
      const name = `bench-${i}.tar`;
      const t = await writeTar(`${work}/vault/${name}`, i + 1);
      names.push(name);
      total += t.bytes;
      entries += t.entries;
    }
    // Retrievals are ready at once (no delay); their start hashes each file once, untimed.
    const jobs = [];
    for (const name of names) {
      jobs.push(
        (await vault.startRetrieval(remoteArchiveId(name), { description: "bench" })).jobId,
      );
    }
    console.log(
      `${n} tars, ${(total / MB).toFixed(1)} MB, ${entries} entries ` +
        `(${(total / n / MB).toFixed(1)} MB and ${Math.round(entries / n)} entries per tar)`,
    );
    const ours: number[] = [];
    const openssl: number[] = [];
    for (let r = 0; r < rounds; r++) {
      let t0 = performance.now();
      let read = 0;
      for (const job of jobs) {
        const d = await digestTar(await vault.readRetrieval(job));
        if (d.unreadable) throw new Error(`bench tar unreadable: ${d.unreadable.reason}`);
        read += d.bytes;
      }
      const verifierS = (performance.now() - t0) / 1000;
      if (read !== total) throw new Error(`read ${read} bytes, expected ${total}`);
      t0 = performance.now();
      const out = await new Deno.Command("openssl", {
        args: ["dgst", "-md5", ...names.map((x) => `${work}/vault/${x}`)],
        stdout: "null",
        stderr: "inherit",
      }).output();
      const opensslS = (performance.now() - t0) / 1000;
      if (!out.success) throw new Error("openssl dgst -md5 failed");
      ours.push(total / MB / verifierS);
      openssl.push(total / MB / opensslS);
      console.log(
        `round ${r + 1}: verifier ${(total / MB / verifierS).toFixed(0)} MB/s, ` +
          `openssl dgst -md5 ${(total / MB / opensslS).toFixed(0)} MB/s`,
      );
    }
    const v = median(ours);
    const o = median(openssl);
    console.log(
      `median: verifier ${v.toFixed(0)} MB/s, openssl dgst -md5 ${o.toFixed(0)} MB/s, ` +
        `ratio ${(v / o).toFixed(2)} (target >= 0.8) ${v / o >= 0.8 ? "OK" : "BELOW TARGET"}`,
    );
    await vault.close();
  } finally {
    if (values.keep === undefined) await Deno.remove(work, { recursive: true });
  }
}

if (import.meta.main) await main();
