/**
 * A {@linkcode Destination} in MogileFS: restored files are written back
 * into a domain (`mogilefs://t1:7001,t2:7001/ugc`), each with its class.
 *
 * - A write is `create_open` -> HTTP `PUT` -> `create_close` (see
 *   `adapters/mogilefs/client.ts`): the key shows the new file only after
 *   `create_close`, which is sent only when the bytes sent had the promised
 *   length and md5; otherwise the temp file is left for the tracker to reap
 *   and the write rejects with `LengthMismatch` or `ChecksumMismatch`. For
 *   a class that keeps MD5 checksums the tracker verifies the stored bytes
 *   too (`checksumverify=1`).
 * - `overwrite` false (the default): `file_info` first, and an existing key
 *   is `DestinationExists`. MogileFS has no conditional write, so a file
 *   written by someone else between that check and `create_close` is
 *   replaced.
 * - Keys: any non-empty text of at most 255 UTF-8 bytes (MogileFS's
 *   `file.dkey` column); other keys are a `TypeError`.
 * - `domain` and `storageClass` of a write override the destination's
 *   domain and the domain's default class.
 *
 * @example
 * ```ts
 * const destination = await MogileFsDestination.open({
 *   trackers: [{ host: "10.0.0.1", port: 7001 }],
 *   domain: "ugc",
 * });
 * await destination.write({ key: "product/1/texture.png", storageClass: "textures", length, md5, body });
 * await destination.close();
 * ```
 * @module
 */

import { PortError, VanishedError } from "../../core/errors.ts";
import type { Destination, DestinationWrite } from "../../core/ports.ts";
import { formatSourceUrl, type TrackerAddress } from "../../core/source_url.ts";
import { MogileFsClient, type MogileFsClientOptions } from "../mogilefs/client.ts";

/** Options for {@linkcode MogileFsDestination.open}. */
export interface MogileFsDestinationOptions extends MogileFsClientOptions {
  /** At least one tracker. */
  readonly trackers: readonly TrackerAddress[];
  /** The domain files go to when a write names none. */
  readonly domain: string;
}

/** The longest key MogileFS stores, in UTF-8 bytes. */
export const MAX_KEY_BYTES = 255;

const encoder = new TextEncoder();

/**
 * Restored files written into MogileFS; see the module notes.
 */
export class MogileFsDestination implements Destination {
  /** E.g. `mogilefs://t1:7001,t2:7001/ugc`. */
  readonly location: string;
  /** The default domain. */
  readonly domain: string;
  readonly #client: MogileFsClient;
  readonly #trackers: readonly TrackerAddress[];

  private constructor(options: MogileFsDestinationOptions) {
    this.domain = options.domain;
    this.#trackers = options.trackers;
    this.location = formatSourceUrl({
      kind: "mogilefs",
      trackers: options.trackers,
      domain: options.domain,
    });
    this.#client = new MogileFsClient(options);
  }

  /**
   * Makes a destination; nothing is sent to the trackers until the first write.
   *
   * @throws {TypeError} an empty domain
   * @throws {RangeError} no tracker, or bad client options
   */
  static open(options: MogileFsDestinationOptions): Promise<MogileFsDestination> {
    try {
      checkDomain(options.domain);
      return Promise.resolve(new MogileFsDestination(options));
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Writes one file (see the module notes); resolves to its
   * `mogilefs://trackers/domain/key` location.
   *
   * @throws {TypeError} a key MogileFS cannot hold, an empty domain, a bad md5
   * @throws {PortError} `DestinationExists`, `ChecksumMismatch`, `LengthMismatch`,
   *   tracker codes (`unreg_domain`, `unreg_class`, `no_devices`...)
   */
  async write(file: DestinationWrite): Promise<{ readonly location: string }> {
    const { signal } = file;
    checkKey(file.key);
    const domain = file.domain ?? this.domain;
    checkDomain(domain);
    if (!Number.isSafeInteger(file.length) || file.length < 0) {
      throw new RangeError(
        `Invalid length for MogileFS ${domain}/${JSON.stringify(file.key)}: ${file.length}`,
      );
    }
    signal?.throwIfAborted();
    const options = signal ? { signal } : {};
    if (file.overwrite !== true) {
      let fid: number | null = null;
      try {
        fid = (await this.#client.fileInfo(domain, file.key, options)).fid;
      } catch (e) {
        if (!(e instanceof PortError && e.code === "unknown_key")) throw e;
      }
      if (fid !== null) {
        throw new PortError(
          `Cannot write MogileFS ${domain}/${
            JSON.stringify(file.key)
          } at ${this.location}: the key exists (fid ${fid}) and overwrite is off`,
          { code: "DestinationExists", retryable: false },
        );
      }
    }
    await this.#client.write(
      domain,
      file.key,
      file.storageClass ?? "",
      file.length,
      file.md5,
      file.body,
      options,
    );
    return { location: this.#locationOf(domain, file.key) };
  }

  /**
   * Reads the file at `key` (in `domain`, default the destination's), or
   * null when there is none.
   *
   * @throws {TypeError} a key MogileFS cannot hold
   * @throws {PortError} `NoReadablePath`, tracker codes
   */
  async read(
    key: string,
    options: { readonly domain?: string; readonly signal?: AbortSignal } = {},
  ): Promise<ReadableStream<Uint8Array> | null> {
    checkKey(key);
    const domain = options.domain ?? this.domain;
    checkDomain(domain);
    try {
      return await this.#client.openRead(
        domain,
        key,
        options.signal ? { signal: options.signal } : {},
      );
    } catch (e) {
      if (e instanceof VanishedError) return null;
      throw e;
    }
  }

  /** Closes the tracker connections. Idempotent. */
  close(): Promise<void> {
    return this.#client.close();
  }

  #locationOf(domain: string, key: string): string {
    const base = formatSourceUrl({ kind: "mogilefs", trackers: this.#trackers, domain });
    return `${base}/${key.split("/").map(encodeURIComponent).join("/")}`;
  }
}

function checkKey(key: string): void {
  if (typeof key !== "string" || key === "") {
    throw new TypeError(`Invalid MogileFS key ${JSON.stringify(key)}: empty`);
  }
  const bytes = encoder.encode(key).length;
  if (bytes > MAX_KEY_BYTES) {
    throw new TypeError(
      `Invalid MogileFS key ${
        JSON.stringify(key)
      }: ${bytes} bytes, more than MogileFS's ${MAX_KEY_BYTES}`,
    );
  }
}

function checkDomain(domain: string): void {
  if (typeof domain !== "string" || domain === "") {
    throw new TypeError("Invalid MogileFS domain: empty");
  }
}
