/**
 * Worker thread of {@linkcode WorkerPacker}: packs whole bundles (reads,
 * md5s, tar, tree hash) and hands back the tar buffers by transfer. Private
 * to adapters/pack.
 * @module
 */

/// <reference lib="deno.worker" />

import { packFiles } from "../../core/pack.ts";
import { ARCHIVE_CHUNK_SIZE } from "../../core/archive_builder.ts";
import type { Fetcher, Source } from "../../core/ports.ts";
import { DirectorySource } from "../source/directory.ts";
import { DirectFetcher } from "../fetch/direct_fetcher.ts";
import { SpoolFetcher } from "../fetch/spool_fetcher.ts";
import type { PackerReply, PackerRequest, PackSource, WireSegment } from "./worker_packer.ts";

let fetcher: Fetcher | null = null;
/** Files read at once within a bundle. */
let readAhead = 1;

/** Opens a remote source again in this thread (only the adapter it needs is loaded). */
async function openRemote(spec: Exclude<PackSource, { kind: "dir" }>): Promise<Source> {
  if (spec.kind === "mogilefs") {
    const { MogileFsSource } = await import("../source/mogilefs.ts");
    return await MogileFsSource.open(spec.url);
  }
  const { S3Source } = await import("../source/s3.ts");
  return await S3Source.open(spec.url, spec.options);
}
/** Buffers the main thread gave back after upload: archives are assembled in them again. */
const pool: ArrayBuffer[] = [];
const POOL_MAX = 128;
function chunk(): Uint8Array {
  const b = pool.pop();
  return b ? new Uint8Array(b) : new Uint8Array(ARCHIVE_CHUNK_SIZE);
}
/** Packs wait for the (asynchronous) init that came before them. */
let ready: Promise<void> = Promise.resolve();

function describe(e: unknown) {
  const err = e as { name?: unknown; message?: unknown; code?: unknown };
  return {
    name: typeof err?.name === "string" ? err.name : "Error",
    message: typeof err?.message === "string" ? err.message : String(e),
    ...(typeof err?.code === "string" ? { code: err.code } : {}),
  };
}

self.onmessage = async (ev: MessageEvent<PackerRequest>) => {
  const msg = ev.data;
  if (msg.type === "recycle") {
    for (const b of msg.buffers) if (pool.length < POOL_MAX) pool.push(b);
    return;
  }
  if (msg.type === "init") {
    ready = (async () => {
      const spec = msg.source;
      if (spec.kind === "dir") {
        const source = await DirectorySource.open(spec.root);
        await Deno.mkdir(msg.spoolDir, { recursive: true });
        fetcher = new DirectFetcher(source, msg.spoolDir, { memoryThreshold: msg.memoryThreshold });
        // Reads here are synchronous: one at a time (DirectFetcher reuses one buffer).
        readAhead = 1;
      } else {
        fetcher = await SpoolFetcher.open(await openRemote(spec), msg.spoolDir, {
          memoryThreshold: msg.memoryThreshold,
        });
        readAhead = msg.readAhead;
      }
    })();
    return;
  }
  let reply: PackerReply;
  const transfer: ArrayBuffer[] = [];
  try {
    await ready;
    if (!fetcher) throw new TypeError("Pack worker used before init");
    const result = await packFiles(fetcher, msg.request, { readAhead, chunk });
    const segments: WireSegment[] = [];
    let meta = null;
    if (result.finished) {
      const built = result.builder.finish(msg.request.nowMs);
      for (const seg of result.builder.segments()) {
        if (seg instanceof Uint8Array) {
          segments.push(seg);
          // A chunk's buffer appears once (the last one may be a partial view).
          transfer.push(seg.buffer as ArrayBuffer);
        } else {
          // Spooled by this worker's SpoolFetcher, whose bodies expose their path.
          const path = (seg as Partial<{ path: string }>).path;
          if (path === undefined) throw new TypeError("A spooled body without a path");
          segments.push({ spool: path, length: seg.length });
        }
      }
      meta = {
        size: built.size,
        treeHash: built.treeHash,
        sha256: built.sha256,
        description: built.description,
        dataBytes: built.dataBytes,
        members: [...built.members],
      };
    }
    reply = { type: "packed", id: msg.id, ok: true, meta, segments, outcomes: result.outcomes };
  } catch (e) {
    reply = { type: "packed", id: msg.id, ok: false, error: describe(e) };
  }
  self.postMessage(reply, transfer);
};
