/**
 * Reading an archive body before it is sent, shared by the stores that
 * must know its SHA-256 up front (SigV4's payload hash, S3's checksum).
 * @module
 */

import { createHash } from "node:crypto";
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
