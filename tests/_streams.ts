/**
 * Byte streams for tests: bodies cut into chunks, bodies that fail or stall
 * part-way, and reading a stream back to one array. Every stream here
 * produces a chunk only when asked (`highWaterMark: 0`) and yields copies, so
 * a consumer may keep what it is given.
 *
 * @example
 * ```ts
 * const data = new Uint8Array(70_000).fill(7);
 * assert.deepEqual(await readAll(chunked(data, [4099])), data);
 * ```
 * @module
 */

const KIB64 = 64 * 1024;

/**
 * `data` as a stream of pieces whose sizes cycle through `sizes`.
 *
 * @param data the bytes to deliver
 * @param sizes piece sizes, used in turn; default one size of 64 KiB
 */
export function chunked(
  data: Uint8Array,
  sizes: readonly number[] = [KIB64],
): ReadableStream<Uint8Array> {
  let offset = 0;
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (offset >= data.length) {
        c.close();
        return;
      }
      const n = sizes[i++ % sizes.length]!;
      c.enqueue(data.slice(offset, offset + n));
      offset += n;
    },
  }, { highWaterMark: 0 });
}

/**
 * Yields `data` in 64 KiB pieces, then errors with `failure` once
 * `failAfter` bytes are out: a source read that breaks midway.
 */
export function failingStream(
  data: Uint8Array,
  failAfter: number,
  failure: Error,
): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (offset >= failAfter) {
        c.error(failure);
        return;
      }
      const end = Math.min(offset + KIB64, failAfter, data.length);
      c.enqueue(data.slice(offset, end));
      offset = end;
    },
  }, { highWaterMark: 0 });
}

/**
 * Yields `data` in 64 KiB pieces until `stallAfter` bytes are out, then
 * aborts `controller` with `reason` and stalls until cancelled: an upload or
 * a write stopped midway by its signal.
 */
export function stallingStream(
  data: Uint8Array,
  stallAfter: number,
  controller: AbortController,
  reason: Error,
): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream<Uint8Array>({
    pull(c) {
      if (offset >= stallAfter) {
        controller.abort(reason);
        return new Promise(() => {});
      }
      c.enqueue(data.slice(offset, offset + KIB64));
      offset += KIB64;
    },
  }, { highWaterMark: 0 });
}

/** Reads a stream to its end and returns its bytes in one array. */
export async function readAll(stream: ReadableStream<Uint8Array>): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  let length = 0;
  for await (const chunk of stream) {
    chunks.push(chunk);
    length += chunk.length;
  }
  const all = new Uint8Array(length);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.length;
  }
  return all;
}
