/**
 * The verifier's streaming path: reads a tar from a stream once, in bounded
 * memory, and md5s every entry's data as it passes (core/tar_reader.ts's
 * push parser hands the data over as views of the stream's chunks, no
 * copy). A tar that cannot be parsed (bad checksum, truncated, ...) stops
 * the reading and is reported with the offset and reason, together with
 * every entry read whole before it.
 *
 * @example
 * ```ts
 * const result = await digestTar(await store.readRetrieval(jobId));
 * for (const e of result.entries) console.log(e.name, e.size, e.md5);
 * if (result.unreadable) console.log(result.unreadable.offset, result.unreadable.reason);
 * ```
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { TarParser } from "../../core/tar_reader.ts";

/** One tar entry as read: name, data size and md5 of its data (lower hex). */
export interface DigestedEntry {
  readonly name: string;
  readonly size: number;
  readonly md5: string;
  /** The entry's typeflag (`"0"` regular file). */
  readonly type: string;
  readonly headerOffset: number;
}

/** What {@linkcode digestTar} found. */
export interface TarDigest {
  /** Every entry read whole, in tar order. */
  readonly entries: readonly DigestedEntry[];
  /** Set when the tar could not be parsed: where, and why. */
  readonly unreadable?: { readonly offset: number; readonly reason: string };
  /** Bytes read from the stream. */
  readonly bytes: number;
}

/**
 * Reads `stream` as a tar, md5ing each entry. Rejects only when the stream
 * itself fails (the store's error, unchanged) or `signal` aborts; a tar
 * that does not parse resolves with `unreadable`.
 *
 * @param stream the archive's bytes
 * @param options `signal`: stops reading (the stream is cancelled)
 */
export async function digestTar(
  stream: ReadableStream<Uint8Array>,
  options: { readonly signal?: AbortSignal } = {},
): Promise<TarDigest> {
  const entries: DigestedEntry[] = [];
  let hash: Hash | null = null;
  let current: number | null = null;
  const parser = new TarParser({
    entry(h) {
      hash = createHash("md5");
      current = h.headerOffset;
    },
    data(chunk) {
      hash!.update(chunk);
    },
    entryEnd(h) {
      entries.push({
        name: h.name,
        size: h.size,
        md5: hash!.digest("hex"),
        type: h.type,
        headerOffset: h.headerOffset,
      });
      hash = null;
      current = null;
    },
  });
  let bytes = 0;
  const reader = stream.getReader();
  const { signal } = options;
  const onAbort = () => void reader.cancel(signal?.reason).catch(() => {});
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    for (;;) {
      signal?.throwIfAborted();
      const { done, value } = await reader.read();
      signal?.throwIfAborted();
      if (done) break;
      bytes += value.length;
      try {
        parser.write(value);
      } catch (e) {
        await reader.cancel().catch(() => {});
        return { entries, unreadable: unreadable(e, parser.offset, current), bytes };
      }
      if (parser.done) {
        // Whatever follows the end-of-archive marker is not tar: drain it uncounted.
        await reader.cancel().catch(() => {});
        return { entries, bytes };
      }
    }
    try {
      parser.end();
    } catch (e) {
      return { entries, unreadable: unreadable(e, parser.offset, current), bytes };
    }
    return { entries, bytes };
  } finally {
    signal?.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
}

/**
 * Where reading failed: the start of the entry that could not be read whole
 * (so that it counts as not checked rather than missing), else the offset
 * the reader's message names ("... at offset 1024: bad checksum").
 */
function unreadable(
  e: unknown,
  parserOffset: number,
  entryStart: number | null,
): { offset: number; reason: string } {
  if (!(e instanceof SyntaxError)) throw e;
  const m = /at offset (\d+)/.exec(e.message);
  const at = m === null ? parserOffset : Number(m[1]);
  return { offset: entryStart === null ? at : Math.min(entryStart, at), reason: e.message };
}
