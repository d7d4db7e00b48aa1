/**
 * Bodies on their way to a service, shared by the stores and the S3
 * destination: `digest` reads one before it is sent, for the stores that
 * must know its SHA-256 up front (SigV4's payload hash, S3's checksum);
 * `streamedBody` checks one while it is streamed into a single request.
 * @module
 */

import { createHash } from "node:crypto";
import { Readable } from "node:stream";
import type { ReadableStream as NodeWebStream } from "node:stream/web";
import { TreeHasher } from "../../core/tree_hash.ts";

/** What a body holds. */
export interface BodyFacts {
  readonly length: number;
  /** Plain SHA-256, lower-case hex. */
  readonly sha256: string;
  /** Glacier's tree hash, lower-case hex. */
  readonly treeHash: string;
}

/** Length, SHA-256 and tree hash of a stream; stops early when `signal` aborts. */
export async function digest(
  body: ReadableStream<Uint8Array>,
  signal: AbortSignal | undefined,
): Promise<BodyFacts> {
  const reader = body.getReader();
  const onAbort = () => {
    reader.cancel(signal?.reason).catch(() => {});
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  const sha = createHash("sha256");
  const tree = new TreeHasher();
  let length = 0;
  try {
    signal?.throwIfAborted();
    for (;;) {
      const { done, value } = await reader.read();
      signal?.throwIfAborted();
      if (done) break;
      sha.update(value);
      tree.update(value);
      length += value.length;
    }
  } catch (e) {
    await reader.cancel(e).catch(() => {});
    throw e;
  } finally {
    signal?.removeEventListener("abort", onAbort);
    reader.releaseLock();
  }
  return { length, sha256: sha.digest("hex"), treeHash: tree.digest() };
}

/** What {@linkcode streamedBody} checks; either may throw to stop the request. */
export interface StreamChecks {
  /** Sees each chunk before it is sent, with the count of bytes so far (this chunk included). */
  readonly onChunk?: (chunk: Uint8Array, count: number) => void;
  /** Called at the body's end with its byte count, before the request may complete. */
  readonly onEnd?: (count: number) => void;
}

/** A checked body for one streamed request; see {@linkcode streamedBody}. */
export interface StreamedBody {
  /** The bytes as the Node stream that the AWS SDK sends. Destroy it once the request settled. */
  readonly body: Readable;
  /** Give the request this signal: it aborts with the caller's, and when the body fails. */
  readonly signal: AbortSignal;
  /** Why the body failed (a check's error, or the stream's own), or `null`. */
  failure(): unknown;
}

/**
 * `source` passed through for one streamed request, checked by `checks`.
 * The first failure (a check throws, or `source` errors) is kept, and it
 * aborts `signal` so that the request breaks off: a Node stream piped into
 * a request does not end it on error, and the request would wait for bytes
 * that never come. A request that rejects should then reject with
 * `failure()` when there is one, rather than with the SDK's report.
 */
export function streamedBody(
  source: ReadableStream<Uint8Array>,
  signal: AbortSignal | undefined,
  checks: StreamChecks,
): StreamedBody {
  const stop = new AbortController();
  const failed: { set: boolean; error?: unknown } = { set: false };
  const reader = source.getReader();
  let count = 0;
  const web = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const next = await reader.read();
        if (next.done) {
          checks.onEnd?.(count);
          controller.close();
          return;
        }
        count += next.value.length;
        checks.onChunk?.(next.value, count);
        controller.enqueue(next.value);
      } catch (e) {
        if (!failed.set) Object.assign(failed, { set: true, error: e });
        stop.abort(e);
        controller.error(e);
        reader.cancel(e).catch(() => {});
      }
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 });
  const body = Readable.fromWeb(web as NodeWebStream<Uint8Array>);
  body.on("error", () => {}); // reported through failure(), and the request is aborted
  return {
    body,
    signal: signal === undefined ? stop.signal : AbortSignal.any([signal, stop.signal]),
    failure: () => (failed.set ? failed.error : null),
  };
}
