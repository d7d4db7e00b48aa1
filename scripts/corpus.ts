/**
 * Generates benchmark corpora of incompressible files.
 *
 * - `mixed`: sizes log-normal around a ~50 KB median, 1 % of files 2-8 MB,
 *   until the total reaches `--total` (default 500 MB).
 * - `tiny`: `--count` files (default 100,000) of 1-10 KB, 1,000 per directory.
 *
 * Usage: deno run -A scripts/corpus.ts mixed|tiny DIR [--total 500MB] [--count N] [--seed N]
 * @module
 */

import { parseArgs } from "node:util";
import { parseSize } from "../core/size.ts";

import { prng } from "../core/prng.ts";

export { prng };

const big = new Uint8Array(8 * 1024 * 1024);
for (let i = 0; i < big.length; i += 65536) crypto.getRandomValues(big.subarray(i, i + 65536));

/** Bytes for one file: a slice of a random pool at a random offset. */
function content(rand: () => number, size: number): Uint8Array {
  const off = Math.floor(rand() * (big.length - size + 1));
  if (size <= big.length) return big.subarray(off, off + size);
  throw new RangeError(`File too large for the pool: ${size}`);
}

/** Writes the mixed corpus, up to `total` bytes or `maxFiles` files; returns [files, bytes]. */
export async function mixedCorpus(
  dir: string,
  total: number,
  seed = 1,
  maxFiles = Number.MAX_SAFE_INTEGER,
): Promise<[number, number]> {
  const rand = prng(seed);
  let bytes = 0;
  let n = 0;
  while (bytes < total && n < maxFiles) {
    let size: number;
    if (rand() < 0.01) {
      size = Math.floor(2_000_000 + rand() * 6_000_000);
    } else {
      // log-normal: median 50 KB, sigma 1.0
      const z = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
      size = Math.min(1_900_000, Math.max(1, Math.floor(50_000 * Math.exp(z))));
    }
    const sub = `${dir}/d${String(n % 64).padStart(2, "0")}/e${Math.floor(n / 64) % 16}`;
    if (n < 64 * 16) await Deno.mkdir(sub, { recursive: true });
    const data = content(rand, size);
    await Deno.writeFile(`${sub}/f${n}.bin`, data);
    bytes += size;
    n++;
  }
  return [n, bytes];
}

/** Writes `count` files of 1-10 KB, 1,000 per directory; returns [files, bytes]. */
export async function tinyCorpus(dir: string, count: number, seed = 2): Promise<[number, number]> {
  const rand = prng(seed);
  let bytes = 0;
  for (let i = 0; i < count; i++) {
    const sub = `${dir}/d${Math.floor(i / 1000)}`;
    if (i % 1000 === 0) await Deno.mkdir(sub, { recursive: true });
    const size = 1024 + Math.floor(rand() * 9 * 1024);
    const off = Math.floor(rand() * (big.length - size));
    Deno.writeFileSync(`${sub}/t${i}.bin`, big.subarray(off, off + size));
    bytes += size;
  }
  return [count, bytes];
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({
    args: Deno.args,
    allowPositionals: true,
    options: { total: { type: "string" }, count: { type: "string" }, seed: { type: "string" } },
  });
  const [kind, dir] = positionals;
  if (!dir || (kind !== "mixed" && kind !== "tiny")) {
    console.error("Usage: corpus.ts mixed|tiny DIR [--total 500MB] [--count N] [--seed N]");
    Deno.exit(2);
  }
  const seed = Number(values.seed ?? (kind === "mixed" ? 1 : 2));
  const [n, b] = kind === "mixed"
    ? await mixedCorpus(dir, parseSize(values.total ?? "500MB"), seed)
    : await tinyCorpus(dir, Number(values.count ?? 100_000), seed);
  console.log(`${kind}: ${n} files, ${(b / 1e6).toFixed(1)} MB in ${dir}`);
}
