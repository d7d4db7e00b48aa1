/**
 * The default {@linkcode Fetcher}: streams a source file, computing its md5
 * and length, into memory when small and into a spool file when large, so
 * that memory stays bounded whatever the file sizes.
 * @module
 */

import { createHash } from "node:crypto";
import { ChangedError } from "../../core/errors.ts";
import type { Body, Fetched, Fetcher, Source, SourceEntry } from "../../core/ports.ts";

/** Options for {@linkcode SpoolFetcher.open}. */
export interface SpoolFetcherOptions {
  /** Files up to this many bytes are held in memory (default 4 MiB). */
  readonly memoryThreshold?: number;
}

/** Reads source files into memory or a spool directory. */
export class SpoolFetcher implements Fetcher {
  #source: Source;
  #dir: string;
  #threshold: number;
  #seq = 0;

  private constructor(source: Source, dir: string, threshold: number) {
    this.#source = source;
    this.#dir = dir;
    this.#threshold = threshold;
  }

  /**
   * Opens a fetcher whose spool lives in `spoolDir` (created if missing).
   * Spool files left by a crashed run are removed: their files are still
   * pending in the catalog and will be fetched again.
   */
  static async open(
    source: Source,
    spoolDir: string,
    options: SpoolFetcherOptions = {},
  ): Promise<SpoolFetcher> {
    await Deno.mkdir(spoolDir, { recursive: true });
    for await (const e of Deno.readDir(spoolDir)) {
      if (e.isFile && e.name.endsWith(".spool")) {
        await Deno.remove(`${spoolDir}/${e.name}`).catch(() => {});
      }
    }
    return new SpoolFetcher(source, spoolDir, options.memoryThreshold ?? 4 * 1024 * 1024);
  }

  async fetch(entry: SourceEntry, options: { signal?: AbortSignal } = {}): Promise<Fetched> {
    const stream = await this.#source.open(entry, options);
    return entry.length <= this.#threshold
      ? await readToMemory(entry, stream)
      : await this.#readToSpool(entry, stream);
  }

  async #readToSpool(entry: SourceEntry, stream: ReadableStream<Uint8Array>): Promise<Fetched> {
    const path = `${this.#dir}/${Date.now()}-${Deno.pid}-${++this.#seq}.spool`;
    const md5 = createHash("md5");
    let length = 0;
    const file = await Deno.open(path, { write: true, createNew: true, mode: 0o600 });
    try {
      for await (const chunk of stream) {
        length += chunk.length;
        if (length > entry.length) throw grew(entry, length);
        md5.update(chunk);
        let off = 0;
        while (off < chunk.length) off += await file.write(chunk.subarray(off));
      }
      if (length !== entry.length) throw shrank(entry, length);
    } catch (e) {
      file.close();
      await Deno.remove(path).catch(() => {});
      throw e;
    }
    file.close();
    return { md5: md5.digest("hex"), length, body: spoolBody(path, length) };
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}

async function readToMemory(
  entry: SourceEntry,
  stream: ReadableStream<Uint8Array>,
): Promise<Fetched> {
  const buf = new Uint8Array(entry.length);
  let length = 0;
  for await (const chunk of stream) {
    if (length + chunk.length > entry.length) {
      await stream.cancel().catch(() => {});
      throw grew(entry, length + chunk.length);
    }
    buf.set(chunk, length);
    length += chunk.length;
  }
  if (length !== entry.length) throw shrank(entry, length);
  const md5 = createHash("md5").update(buf).digest("hex");
  return { md5, length, body: memoryBody(buf) };
}

function grew(entry: SourceEntry, n: number): ChangedError {
  return new ChangedError(
    `File ${
      JSON.stringify(entry.key)
    } grew while being read: listed ${entry.length} bytes, read at least ${n}`,
  );
}

function shrank(entry: SourceEntry, n: number): ChangedError {
  return new ChangedError(
    `File ${
      JSON.stringify(entry.key)
    } shrank while being read: listed ${entry.length} bytes, read ${n}`,
  );
}

/** A body held in memory. */
export function memoryBody(bytes: Uint8Array): Body {
  let data: Uint8Array | null = bytes;
  return {
    length: bytes.length,
    stream() {
      if (data === null) throw new TypeError("Cannot stream a released body");
      const d = data;
      return new ReadableStream({
        pull(c) {
          if (d.length > 0) c.enqueue(d);
          c.close();
        },
      });
    },
    release() {
      data = null;
      return Promise.resolve();
    },
  };
}

function spoolBody(path: string, length: number): Body {
  let released = false;
  return {
    length,
    stream() {
      if (released) throw new TypeError("Cannot stream a released body");
      let file: Deno.FsFile | null = null;
      const buf = new Uint8Array(1024 * 1024);
      return new ReadableStream({
        async pull(c) {
          file ??= await Deno.open(path, { read: true });
          const n = await file.read(buf);
          if (n === null) {
            file.close();
            c.close();
            return;
          }
          c.enqueue(buf.slice(0, n));
        },
        cancel() {
          file?.close();
        },
      });
    },
    async release() {
      if (released) return;
      released = true;
      await Deno.remove(path).catch(() => {});
    },
  };
}
