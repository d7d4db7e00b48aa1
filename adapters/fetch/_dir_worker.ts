/**
 * Worker thread of {@linkcode WorkerFetcher}: reads directory-source files
 * (checks, read, md5) off the main thread and hands the bytes back by
 * transfer (no copy). Private to adapters/fetch.
 * @module
 */

/// <reference lib="deno.worker" />

import { DirectorySource } from "../source/directory.ts";
import { type RawFetched, readEntry } from "./spool_fetcher.ts";
import type { SourceEntry } from "../../core/ports.ts";
import type { WorkerError, WorkerRequest, WorkerResult } from "./worker_fetcher.ts";

let source: DirectorySource | null = null;
let spoolDir = "";
let memoryThreshold = 0;
/** Batches wait for the (asynchronous) init that came before them. */
let ready: Promise<void> = Promise.resolve();

function describe(e: unknown): WorkerError {
  const err = e as { name?: unknown; message?: unknown; code?: unknown; retryable?: unknown };
  return {
    name: typeof err?.name === "string" ? err.name : "Error",
    message: typeof err?.message === "string" ? err.message : String(e),
    ...(typeof err?.code === "string" ? { code: err.code } : {}),
    ...(typeof err?.retryable === "boolean" ? { retryable: err.retryable } : {}),
  };
}

async function one(id: number, entry: SourceEntry): Promise<[WorkerResult, ArrayBuffer | null]> {
  try {
    if (!source) throw new TypeError("Worker used before init");
    const raw: RawFetched = await readEntry(source, entry, { spoolDir, memoryThreshold });
    const buffer = raw.bytes ? raw.bytes.buffer as ArrayBuffer : null;
    return [{ id, ok: true, raw }, buffer];
  } catch (e) {
    return [{ id, ok: false, error: describe(e) }, null];
  }
}

self.onmessage = async (ev: MessageEvent<WorkerRequest>) => {
  const msg = ev.data;
  if (msg.type === "init") {
    spoolDir = msg.spoolDir;
    memoryThreshold = msg.memoryThreshold;
    ready = DirectorySource.open(msg.root).then((s) => void (source = s));
    return;
  }
  await ready.catch(() => {});
  const results: WorkerResult[] = [];
  const transfer: ArrayBuffer[] = [];
  for (const { id, entry } of msg.items) {
    const [r, buffer] = await one(id, entry);
    results.push(r);
    if (buffer) transfer.push(buffer);
  }
  self.postMessage({ type: "results", items: results }, transfer);
};
