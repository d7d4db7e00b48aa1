/**
 * Worker thread of {@linkcode digestTar}: md5s entry data that the reading
 * thread copies into batches, so that reading and parsing (there) overlap
 * with hashing (here). Private to adapters/audit.
 *
 * Protocol: it posts `{ type: "ready" }` once loaded. Each batch is
 * `{ buffer, segments }`: `segments` is a flat list of triples (entry
 * number, byte count, 1 if the entry ends with it else 0) whose bytes lie
 * one after the other in `buffer`. The reply gives the buffer back (by
 * transfer) with the md5 (lower hex) of every entry that ended in the batch.
 * @module
 */

/// <reference lib="deno.worker" />

import { createHash, type Hash } from "node:crypto";

/** A batch of entry data to md5. */
export interface DigestBatch {
  readonly buffer: ArrayBuffer;
  /** (entry number, byte count, ends) triples; the bytes follow one another in `buffer`. */
  readonly segments: readonly number[];
}

/** The worker's answer to a {@linkcode DigestBatch}. */
export interface DigestBatchReply {
  readonly buffer: ArrayBuffer;
  /** (entry number, md5) of every entry that ended in the batch. */
  readonly digests: readonly (readonly [number, string])[];
}

const hashes = new Map<number, Hash>();

self.onmessage = (ev: MessageEvent<DigestBatch>) => {
  const { buffer, segments } = ev.data;
  const bytes = new Uint8Array(buffer);
  const digests: [number, string][] = [];
  let at = 0;
  for (let i = 0; i + 2 < segments.length; i += 3) {
    const entry = segments[i]!;
    const length = segments[i + 1]!;
    let hash = hashes.get(entry);
    if (hash === undefined) {
      hash = createHash("md5");
      hashes.set(entry, hash);
    }
    if (length > 0) hash.update(bytes.subarray(at, at + length));
    at += length;
    if (segments[i + 2] === 1) {
      digests.push([entry, hash.digest("hex")]);
      hashes.delete(entry);
    }
  }
  const reply: DigestBatchReply = { buffer, digests };
  self.postMessage(reply, [buffer]);
};

self.postMessage({ type: "ready" });
