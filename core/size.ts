/**
 * Byte sizes as operators write them: `25MiB`, `25M`, `1.5GB`, `4096`.
 * @module
 */

const UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  k: 1024,
  kb: 1000,
  kib: 1024,
  m: 1024 ** 2,
  mb: 1000 ** 2,
  mib: 1024 ** 2,
  g: 1024 ** 3,
  gb: 1000 ** 3,
  gib: 1024 ** 3,
  t: 1024 ** 4,
  tb: 1000 ** 4,
  tib: 1024 ** 4,
};

/**
 * Parses a byte size. Binary units (`KiB`, `MiB`, `GiB`, `TiB`, and the bare
 * letters `K`, `M`, `G`, `T`) are powers of 1024; `KB`, `MB`, `GB`, `TB` are
 * powers of 1000. The result is rounded down to whole bytes.
 *
 * @example
 * ```ts
 * parseSize("25MiB"); // 26214400
 * ```
 */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(text);
  const unit = m ? UNITS[m[2]!.toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new SyntaxError(
      `Cannot parse size "${text}": expected a number with an optional unit (B, KiB, MiB, GiB, KB, MB, GB)`,
    );
  }
  const n = Math.floor(Number(m[1]) * unit);
  if (!Number.isSafeInteger(n)) throw new RangeError(`Size too large: "${text}"`);
  return n;
}

/**
 * Formats bytes for people: `26.2 MB`, `512 B`. Decimal units, one decimal.
 *
 * @example
 * ```ts
 * formatBytes(26214400); // "26.2 MB"
 * ```
 */
export function formatBytes(n: number): string {
  if (n < 1000) return `${n} B`;
  const units = ["kB", "MB", "GB", "TB", "PB"];
  let v = n;
  let i = -1;
  while (v >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}
