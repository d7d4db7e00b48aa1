/**
 * A {@linkcode Fetcher} for reading a directory source's files one after
 * another in one thread (a pack worker): a small file is read with one
 * synchronous call into a single reused buffer and md5'd there, with no
 * stream and no allocation; a large one is copied to a spool file through
 * the same buffer, also with synchronous calls.
 *
 * The body of a small file is a view of that shared buffer: it is valid
 * only until the next `fetch`. Use it with one fetch at a time, consuming
 * each body before the next (`packFiles` with `readAhead: 1`).
 * @module
 */

import { createHash } from "node:crypto";
import type { Body, Fetched, Fetcher, SourceEntry } from "../../core/ports.ts";
import type { DirectorySource } from "../source/directory.ts";
import { DEFAULT_MEMORY_THRESHOLD, spoolBody, spoolFileName } from "./spool_fetcher.ts";

/** Reads small files into one reused buffer, and spools large ones through it. */
export class DirectFetcher implements Fetcher {
  #source: DirectorySource;
  #spoolDir: string;
  #threshold: number;
  #scratch: Uint8Array;

  /** `spoolDir` must exist; the caller cleans it. */
  constructor(
    source: DirectorySource,
    spoolDir: string,
    options: { memoryThreshold?: number } = {},
  ) {
    this.#source = source;
    this.#spoolDir = spoolDir;
    this.#threshold = options.memoryThreshold ?? DEFAULT_MEMORY_THRESHOLD;
    this.#scratch = new Uint8Array(Math.max(this.#threshold + 1, 1024 * 1024));
  }

  fetch(entry: SourceEntry, options: { signal?: AbortSignal } = {}): Promise<Fetched> {
    try {
      options.signal?.throwIfAborted();
      if (entry.length > this.#threshold) return Promise.resolve(this.#spool(entry));
      const bytes = this.#source.readSmallSync(entry, this.#scratch);
      const md5 = createHash("md5").update(bytes).digest("hex");
      return Promise.resolve({ md5, length: bytes.length, body: sharedBody(bytes) });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  #spool(entry: SourceEntry): Fetched {
    const path = spoolFileName(this.#spoolDir);
    const md5 = createHash("md5");
    const file = Deno.openSync(path, { write: true, createNew: true, mode: 0o600 });
    try {
      this.#source.readChunksSync(entry, this.#scratch, (chunk) => {
        md5.update(chunk);
        let off = 0;
        while (off < chunk.length) off += file.writeSync(chunk.subarray(off));
      });
    } catch (e) {
      file.close();
      try {
        Deno.removeSync(path);
      } catch {
        // already gone
      }
      throw e;
    }
    file.close();
    return { md5: md5.digest("hex"), length: entry.length, body: spoolBody(path, entry.length) };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

/** A body over the shared buffer: valid until the next fetch. */
function sharedBody(bytes: Uint8Array): Body {
  return {
    length: bytes.length,
    bytes,
    stream() {
      return new ReadableStream({
        pull(c) {
          if (bytes.length > 0) c.enqueue(bytes.slice());
          c.close();
        },
      });
    },
    release() {
      return Promise.resolve();
    },
  };
}
