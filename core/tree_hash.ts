/**
 * The Glacier SHA-256 tree hash (PROTOCOLS.md section 2) and the byte-range
 * alignment rules of Glacier retrievals.
 *
 * Tree hash: SHA-256 of each 1 MiB chunk (the last may be short), then
 * SHA-256 of each pair of neighbouring digests (raw 32-byte concatenation),
 * an odd last node promoted unchanged, until one root is left. Data of at
 * most 1 MiB hashes to its plain SHA-256. Empty data hashes to the SHA-256
 * of the empty string (Glacier itself accepts no empty archive).
 *
 * The tree of parts of 2^k MiB is the top of the whole tree, so the hash of
 * a multipart upload is {@linkcode combineTreeHashes} of its parts' hashes.
 *
 * @example
 * ```ts
 * const hasher = new TreeHasher();
 * for await (const chunk of body) hasher.update(chunk);
 * hasher.digest(); // "9f86d08..." (lower-case hex)
 * ```
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { hex } from "./ids.ts";
import type { ByteRange } from "./ports.ts";

/** The tree hash leaf size and Glacier's retrieval alignment: 1 MiB. */
export const MIB = 1024 * 1024;

// Digests are copied out of node's Buffer into plain Uint8Arrays (32 bytes each).
function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(data).digest());
}

function parent(left: Uint8Array, right: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha256").update(left).update(right).digest());
}

/**
 * Computes a tree hash over data fed in chunks of any size. Memory stays
 * small: a chunk that spans whole MiB is hashed in place (no copy), a
 * partial MiB goes into a running SHA-256, and only one digest per tree
 * level is kept.
 */
export class TreeHasher {
  #bytes = 0;
  /** Running hash of the current, incomplete 1 MiB leaf. */
  #leaf: Hash | null = null;
  #leafBytes = 0;
  /** Roots of complete subtrees, strictly decreasing levels (like binary carry). */
  #stack: { level: number; hash: Uint8Array }[] = [];
  #result: Uint8Array | null = null;

  /** Bytes fed so far. */
  get bytes(): number {
    return this.#bytes;
  }

  /**
   * Feeds the next bytes.
   * @throws {TypeError} after {@linkcode digest}
   */
  update(chunk: Uint8Array): void {
    if (this.#result !== null) throw new TypeError("Cannot update a tree hasher: already digested");
    const n = chunk.length;
    this.#bytes += n;
    let i = 0;
    if (this.#leafBytes > 0) {
      const take = Math.min(MIB - this.#leafBytes, n);
      this.#leaf!.update(chunk.subarray(0, take));
      this.#leafBytes += take;
      i = take;
      if (this.#leafBytes === MIB) {
        this.#push(new Uint8Array(this.#leaf!.digest()));
        this.#leaf = null;
        this.#leafBytes = 0;
      }
    }
    for (; n - i >= MIB; i += MIB) this.#push(sha256(chunk.subarray(i, i + MIB)));
    if (i < n) {
      this.#leaf = createHash("sha256").update(chunk.subarray(i));
      this.#leafBytes = n - i;
    }
  }

  #push(leaf: Uint8Array): void {
    let hash = leaf;
    let level = 0;
    const stack = this.#stack;
    while (stack.length > 0 && stack[stack.length - 1]!.level === level) {
      hash = parent(stack.pop()!.hash, hash);
      level++;
    }
    stack.push({ level, hash });
  }

  /** The root as 32 raw bytes. Ends the hasher; calling again returns the same. */
  digestBytes(): Uint8Array {
    if (this.#result !== null) return this.#result;
    if (this.#leafBytes > 0) {
      this.#push(new Uint8Array(this.#leaf!.digest()));
      this.#leaf = null;
      this.#leafBytes = 0;
    }
    const stack = this.#stack;
    if (stack.length === 0) {
      this.#result = sha256(new Uint8Array(0));
    } else {
      // The smaller subtrees on the right were promoted until they met their left neighbour.
      let hash = stack[stack.length - 1]!.hash;
      for (let k = stack.length - 2; k >= 0; k--) hash = parent(stack[k]!.hash, hash);
      this.#result = hash;
    }
    this.#stack = [];
    return this.#result;
  }

  /** The root as lower-case hex. Ends the hasher; calling again returns the same. */
  digest(): string {
    return hex(this.digestBytes());
  }
}

/**
 * The tree hash of `data`, lower-case hex.
 *
 * @example
 * ```ts
 * treeHash(new Uint8Array(0)); // "e3b0c442...b855" (SHA-256 of nothing)
 * ```
 */
export function treeHash(data: Uint8Array): string {
  const hasher = new TreeHasher();
  hasher.update(data);
  return hasher.digest();
}

/**
 * Combines neighbouring hashes into a root: pairs of each level hashed
 * together, an odd last node promoted, until one is left. Given the 1 MiB
 * chunk hashes it gives the tree hash; given the tree hashes of multipart
 * parts of 2^k MiB (in order) it gives the whole archive's.
 *
 * @throws {RangeError} for no hashes or a hash that is not 32 bytes
 */
export function combineTreeHashes(hashes: readonly Uint8Array[]): Uint8Array {
  if (hashes.length === 0) throw new RangeError("Cannot combine tree hashes: no hashes");
  for (const [i, h] of hashes.entries()) {
    if (h.length !== 32) {
      throw new RangeError(`Cannot combine tree hashes: hash ${i} has ${h.length} bytes, not 32`);
    }
  }
  let level: Uint8Array[] = [...hashes];
  while (level.length > 1) {
    const next: Uint8Array[] = [];
    for (let i = 0; i < level.length; i += 2) {
      next.push(i + 1 < level.length ? parent(level[i]!, level[i + 1]!) : level[i]!);
    }
    level = next;
  }
  return level[0]!;
}

function checkRange(range: ByteRange, archiveSize: number, what: string): void {
  const { start, end } = range;
  if (!Number.isSafeInteger(archiveSize) || archiveSize <= 0) {
    throw new RangeError(`Cannot ${what}: invalid archive size ${archiveSize}`);
  }
  if (
    !Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start < 0 || end < start ||
    end >= archiveSize
  ) {
    throw new RangeError(
      `Cannot ${what}: range ${start}-${end} is not within 0-${archiveSize - 1}`,
    );
  }
}

/**
 * Whether an inclusive byte range is tree-hash aligned: it starts at
 * j x 2^i MiB and spans 2^i MiB, or starts there and runs to the end of the
 * archive within 2^i MiB. Only for such ranges does Glacier return a tree
 * hash (each is one node of the archive's tree).
 *
 * @throws {RangeError} when the range is empty, inverted or outside the archive
 *
 * @example
 * ```ts
 * isTreeHashAligned({ start: 2 * MIB, end: 4 * MIB - 1 }, 10 * MIB); // true
 * isTreeHashAligned({ start: 1 * MIB, end: 3 * MIB - 1 }, 10 * MIB); // false
 * ```
 */
export function isTreeHashAligned(range: ByteRange, archiveSize: number): boolean {
  checkRange(range, archiveSize, "check tree-hash alignment");
  const { start, end } = range;
  if (start % MIB !== 0) return false;
  const span = end + 1 - start;
  let unit = MIB;
  while (unit < span) unit *= 2;
  if (start % unit !== 0) return false;
  return span === unit || end + 1 === archiveSize;
}

/**
 * Expands an inclusive range to a retrieval Glacier accepts: start down to
 * a multiple of `unit`, end + 1 up to a multiple of `unit` or to the archive
 * size, whichever comes first.
 *
 * @param unit alignment in bytes; default 1 MiB (see `StoreCapabilities.rangeAlignment`)
 * @throws {RangeError} when the range is outside the archive or `unit` is not positive
 *
 * @example
 * ```ts
 * alignRange({ start: 1_500_000, end: 1_600_000 }, 25 * MIB); // { start: 1048576, end: 2097151 }
 * ```
 */
export function alignRange(range: ByteRange, archiveSize: number, unit = MIB): ByteRange {
  checkRange(range, archiveSize, "align range");
  if (!Number.isSafeInteger(unit) || unit <= 0) {
    throw new RangeError(`Cannot align range: invalid unit ${unit}`);
  }
  const start = range.start - (range.start % unit);
  const stop = Math.min(Math.ceil((range.end + 1) / unit) * unit, archiveSize);
  return { start, end: stop - 1 };
}

/**
 * The smallest tree-hash-aligned range (see {@linkcode isTreeHashAligned})
 * that covers `range`: the smallest node of the archive's tree holding both
 * ends. Retrieving it costs more bytes than {@linkcode alignRange} but lets
 * the store's tree hash be checked.
 *
 * @throws {RangeError} when the range is outside the archive
 *
 * @example
 * ```ts
 * treeHashAlignedRange({ start: MIB + 5, end: 2 * MIB + 5 }, 10 * MIB); // { start: 0, end: 4 * MIB - 1 }
 * ```
 */
export function treeHashAlignedRange(range: ByteRange, archiveSize: number): ByteRange {
  checkRange(range, archiveSize, "align range to the tree hash");
  let unit = MIB;
  while (Math.floor(range.start / unit) !== Math.floor(range.end / unit)) unit *= 2;
  const start = range.start - (range.start % unit);
  return { start, end: Math.min(start + unit, archiveSize) - 1 };
}
