/**
 * The multipart upload loop that the Glacier store, the S3 store and the S3
 * destination share: read a body once, cut it into part-sized buffers, send
 * up to N parts at once, retry each part on its own, stop everything at the
 * first failure. Each caller keeps what differs: what it hashes per chunk,
 * how it checks the length, and the part upload call itself. Creating,
 * completing and aborting the upload stay with the caller.
 * @module
 */

import { retry, type RetryPolicy } from "../../core/retry.ts";

/** One part of a body, as handed to {@linkcode PartUpload.send}. */
export interface Part {
  /** 1 for the first part. */
  readonly number: number;
  /** Where its first byte is in the body. */
  readonly offset: number;
  /**
   * Its bytes: a view of a buffer that is reused for a later part once the
   * send (retries included) has settled, so do not keep it past that.
   */
  readonly bytes: Uint8Array;
}

/** What {@linkcode uploadParts} needs. */
export interface PartUpload<R> {
  /** The bytes to send; read once, to its end unless something fails. */
  readonly body: ReadableStream<Uint8Array>;
  /** Bytes per part (the last may have fewer). */
  readonly partSize: number;
  /** Parts in flight at once, each holding its own buffer of `partSize` bytes. */
  readonly concurrency: number;
  /** How one part is retried (retryable `PortError`s only, see core/retry.ts). */
  readonly retry: RetryPolicy;
  /** Aborting it cancels the reading and the parts in flight; the call rejects with its reason. */
  readonly signal: AbortSignal | undefined;
  /**
   * Sees every chunk of the body in order as it is read, with the count of
   * bytes read so far (this chunk included), before the chunk goes into a
   * part. Throwing stops the upload with that error (a body that runs past
   * its declared length, say).
   */
  readonly onChunk: (chunk: Uint8Array, bytesRead: number) => void;
  /**
   * Called once the body has ended without error, with its byte count,
   * before the parts still in flight are awaited: throwing stops them (a
   * body shorter than declared, or with another digest).
   */
  readonly onEnd?: (bytes: number) => void;
  /**
   * Sends one part, one try (it is retried as `retry` says); `signal`
   * aborts when the caller's does or another part failed for good.
   */
  readonly send: (part: Part, signal: AbortSignal) => Promise<R>;
}

/**
 * Reads `upload.body` once, cutting it into parts, and sends them with at
 * most `concurrency` in flight (so at most that many buffers), each retried
 * on its own. The first error (reading, `onChunk`, `onEnd` or a part that
 * failed for good) stops the reading and aborts the parts in flight; once
 * they have settled it is thrown, or the signal's reason when the caller
 * aborted.
 * Memory: `concurrency` buffers of `partSize` bytes, whatever the body.
 *
 * @returns what `send` answered for each part, in part order, and the
 *   number of bytes the body had (0 and no part for an empty body)
 */
export async function uploadParts<R>(
  upload: PartUpload<R>,
): Promise<{ readonly results: R[]; readonly bytes: number }> {
  const { signal, partSize } = upload;
  const stop = new AbortController();
  const partSignal = signal ? AbortSignal.any([signal, stop.signal]) : stop.signal;
  const reader = upload.body.getReader();
  const onAbort = () => {
    reader.cancel(partSignal.reason).catch(() => {});
  };
  partSignal.addEventListener("abort", onAbort, { once: true });
  // An object, so that the compiler does not narrow it to "not failed" across the awaits.
  const failed: { set: boolean; error?: unknown } = { set: false };
  const fail = (error: unknown) => {
    if (failed.set) return;
    Object.assign(failed, { set: true, error });
    stop.abort(error);
  };
  const free: Uint8Array[] = [];
  let allocated = 0;
  const inflight = new Set<Promise<void>>();
  const results: R[] = [];
  let bytes = 0;
  let offset = 0;
  let pending: Uint8Array | null = null;
  let ended = false;
  let number = 0;
  try {
    while (!ended && !failed.set) {
      while (free.length === 0 && allocated >= upload.concurrency && !failed.set) {
        await Promise.race(inflight);
      }
      if (failed.set) break;
      let buf = free.pop();
      if (buf === undefined) {
        buf = new Uint8Array(partSize);
        allocated++;
      }
      let filled = 0;
      while (filled < partSize) {
        if (pending !== null) {
          const take = Math.min(pending.length, partSize - filled);
          buf.set(pending.subarray(0, take), filled);
          filled += take;
          pending = take < pending.length ? pending.subarray(take) : null;
          continue;
        }
        const { done, value } = await reader.read();
        partSignal.throwIfAborted();
        if (done) {
          ended = true;
          break;
        }
        bytes += value.length;
        upload.onChunk(value, bytes);
        pending = value;
      }
      if (filled === 0) {
        free.push(buf);
        break;
      }
      const part: Part = { number: ++number, offset, bytes: buf.subarray(0, filled) };
      offset += filled;
      const slot = buf;
      const task: Promise<void> = retry(
        () => upload.send(part, partSignal),
        upload.retry,
        partSignal,
      )
        .then((result) => {
          results[part.number - 1] = result;
        }, fail)
        .finally(() => {
          inflight.delete(task);
          free.push(slot);
        });
      inflight.add(task);
    }
    if (!failed.set) upload.onEnd?.(bytes);
  } catch (e) {
    fail(e);
  } finally {
    partSignal.removeEventListener("abort", onAbort);
    await Promise.allSettled(inflight);
    if (failed.set) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
  if (signal?.aborted) throw signal.reason;
  if (failed.set) throw failed.error;
  return { results, bytes };
}
