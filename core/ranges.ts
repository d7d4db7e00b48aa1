/**
 * Byte-range rules every ranged store applies the same way: which
 * retrieval ranges Glacier accepts, and which reads fit inside what a
 * retrieval holds. Pure; each store wraps a problem in its own error.
 * @module
 */

import type { ByteRange } from "./ports.ts";
import { MIB } from "./tree_hash.ts";

/**
 * Why Glacier would refuse to retrieve `range` of an archive of
 * `archiveSize` bytes (`null` when the size is not known here, so that only
 * the start is checked), or `null` when it accepts it: the start a multiple
 * of 1 MiB, end + 1 a multiple of 1 MiB or the archive size.
 */
export function retrievalRangeProblem(
  range: ByteRange,
  archiveSize: number | null,
): string | null {
  const { start, end } = range;
  if (!Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0) {
    return "bounds must be whole numbers >= 0";
  }
  if (start > end) return "start is after end";
  if (archiveSize !== null && end >= archiveSize) {
    return `end is past the archive's last byte ${archiveSize - 1}`;
  }
  if (start % MIB !== 0) return "start is not a multiple of 1 MiB";
  if (archiveSize !== null && (end + 1) % MIB !== 0 && end + 1 !== archiveSize) {
    return "end + 1 is neither a multiple of 1 MiB nor the archive size";
  }
  return null;
}

/**
 * The inclusive range to read of a retrieval holding `length` bytes: all
 * of it, or `range` when it lies within.
 *
 * @param what names the retrieval in the error, e.g. `retrieval j-123`
 * @throws {RangeError} naming the range and what the retrieval holds
 */
export function readRange(range: ByteRange | undefined, length: number, what: string): ByteRange {
  if (range === undefined) return { start: 0, end: length - 1 };
  const { start, end } = range;
  if (
    !Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || start > end ||
    end >= length
  ) {
    throw new RangeError(
      `Invalid read range ${start}-${end} for ${what}: the retrieval holds bytes 0-${length - 1}`,
    );
  }
  return { start, end };
}
