/**
 * Durations as operators write them: `30s`, `5m`, `24h`, `250ms`, `1h30m`, `0`.
 * @module
 */

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

const PLAIN_NUMBER = /^\d+(?:\.\d+)?$/;
const WHOLE = /^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d))+$/;
const PART = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/g;

/**
 * Parses a duration into milliseconds. Units: `ms`, `s`, `m` (minutes), `h`,
 * `d`; several may follow each other (`1h30m`). A plain number is seconds
 * (`"90"` is 90 s); `"0"` is zero. Fractions are allowed (`1.5h`); the result
 * is rounded to whole milliseconds. Surrounding spaces are ignored.
 *
 * Throws `SyntaxError` for text that is not a duration (including negative
 * values) and `RangeError` for one too large to count in milliseconds.
 *
 * @example
 * ```ts
 * parseDuration("5m"); // 300000
 * parseDuration("250ms"); // 250
 * parseDuration("90"); // 90000
 * ```
 */
export function parseDuration(text: string): number {
  const t = text.trim();
  let ms: number;
  if (PLAIN_NUMBER.test(t)) {
    ms = Number(t) * 1000;
  } else if (WHOLE.test(t)) {
    ms = 0;
    for (const m of t.matchAll(PART)) ms += Number(m[1]) * UNIT_MS[m[2]!]!;
  } else {
    throw new SyntaxError(
      `Cannot parse duration "${text}": expected a number with a unit (250ms, 30s, 5m, 24h, 7d) or plain seconds`,
    );
  }
  const rounded = Math.round(ms);
  if (!Number.isSafeInteger(rounded)) {
    throw new RangeError(`Duration too large: "${text}"`);
  }
  return rounded;
}

/**
 * Formats milliseconds compactly, the inverse of {@linkcode parseDuration}
 * for whole units: `300000` is `5m`, `90500` is `1m30s500ms`, `0` is `0`.
 *
 * @example
 * ```ts
 * formatDuration(86_400_000); // "1d"
 * ```
 */
export function formatDuration(ms: number): string {
  if (!Number.isSafeInteger(ms) || ms < 0) {
    throw new RangeError(`Cannot format duration ${ms}: not a whole number of milliseconds >= 0`);
  }
  if (ms === 0) return "0";
  let rest = ms;
  let out = "";
  for (const unit of ["d", "h", "m", "s", "ms"] as const) {
    const size = UNIT_MS[unit]!;
    const n = Math.floor(rest / size);
    if (n > 0) {
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}
