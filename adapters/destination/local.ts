/**
 * A {@linkcode Destination} in a local directory tree: restored files are
 * written under a root directory, atomically.
 *
 * - A write goes to a temp file beside its target
 *   (`.<name>.coldpack-tmp-<random>`), counting the bytes and computing
 *   their md5 on the way; only when both match is the temp file fsynced and
 *   renamed over the target (`overwrite`), or hard-linked to it (the
 *   default: atomic no-clobber, `DestinationExists` when the name is taken)
 *   and then removed. The directory is fsynced after. On any failure, an
 *   abort or a mismatch the temp file is removed, so a reader never sees a
 *   partial file and nothing is left behind. Where the file system has no
 *   hard links (`EPERM`, `ENOTSUP`), no-clobber falls back to a check just
 *   before the rename.
 * - Files are created with mode 0644 (less what the umask takes).
 * - Staying inside the root: keys are relative paths without empty, `.` or
 *   `..` segments (else `TypeError`), and every parent directory is created
 *   one level at a time and resolved (`realPath`) before anything is made
 *   inside it: a parent that is a symlink leading outside the root is
 *   refused with a `PortError` coded `OutsideRoot` before a byte is written.
 *   The checks and the writes use the resolved paths, so only a parent
 *   swapped for a symlink in the instant between them could escape; the
 *   root must not be writable by whoever one defends against.
 * - Errors of the file system are `PortError`s coded with the errno name
 *   (`EACCES`, `ENOSPC`, `EISDIR`...), retryable only for transient ones
 *   (`EIO`, `EAGAIN`, `EBUSY`, `EINTR`, `EMFILE`, `ENFILE`...).
 *
 * @example
 * ```ts
 * const destination = await LocalDestination.open("/srv/restore");
 * const { location } = await destination.write({
 *   key: "photos/1/a.jpg", length, md5, body: () => stream(),
 * });
 * ```
 * @module
 */

import { createHash } from "node:crypto";
import { errorCode, PortError } from "../../core/errors.ts";
import { hex } from "../../core/ids.ts";
import type { Destination, DestinationWrite } from "../../core/ports.ts";
import { closeQuietly, FS_RETRYABLE_CODES, isGone, openRootDirectory, syncDir } from "../_fs.ts";

/** Codes of a file system that cannot make hard links. */
const NO_LINKS = new Set(["EPERM", "ENOTSUP", "EOPNOTSUPP", "EMLINK", "ENOSYS"]);
const MD5_HEX = /^[0-9a-f]{32}$/;
const TEMP_MARK = ".coldpack-tmp-";
/** Bytes of the target's name kept in its temp file's name (names are at most 255 bytes). */
const TEMP_NAME_BYTES = 200;

/**
 * Restored files under a local root directory; see the module notes.
 */
export class LocalDestination implements Destination {
  /** The real path of the root directory. */
  readonly location: string;
  readonly #prefix: string;

  private constructor(root: string) {
    this.location = root;
    this.#prefix = root.endsWith("/") ? root : `${root}/`;
  }

  /**
   * Opens the tree under `root`, which must be an existing directory; it is
   * resolved with `realPath`.
   *
   * @throws {PortError} code `ENOENT`, `ENOTDIR`, `EACCES`...: the message names the path
   */
  static async open(root: string): Promise<LocalDestination> {
    const real = await openRootDirectory(root, "destination");
    return new LocalDestination(real);
  }

  /**
   * Writes one file atomically (see the module notes); resolves to its
   * absolute path.
   *
   * @throws {TypeError} a key that is not a safe relative path, an md5 that is not 32 hex digits
   * @throws {RangeError} a length that is not a whole number >= 0
   * @throws {PortError} `ChecksumMismatch`, `LengthMismatch`, `DestinationExists`,
   *   `OutsideRoot`, or the errno of a file system error
   */
  async write(file: DestinationWrite): Promise<{ readonly location: string }> {
    const segments = checkKey(file.key);
    if (!MD5_HEX.test(file.md5)) {
      throw new TypeError(
        `Invalid md5 for ${quote(file.key)}: "${file.md5}" is not 32 lower-case hex digits`,
      );
    }
    if (!Number.isSafeInteger(file.length) || file.length < 0) {
      throw new RangeError(`Invalid length for ${quote(file.key)}: ${file.length}`);
    }
    const { signal } = file;
    signal?.throwIfAborted();
    const name = segments[segments.length - 1]!;
    const dir = await this.#parent(file.key, segments.slice(0, -1));
    const target = `${dir}/${name}`;
    if (!file.overwrite && (await exists(target))) throw this.#exists(file.key, target);
    signal?.throwIfAborted();
    const temp = `${dir}/.${truncateName(name)}${TEMP_MARK}${randomHex()}`;
    let handle: Deno.FsFile;
    try {
      handle = await Deno.open(temp, { write: true, createNew: true, mode: 0o644 });
    } catch (e) {
      throw fsError(e, `create a temp file for ${quote(file.key)} in ${dir}`);
    }
    let open = true;
    try {
      await this.#copy(file, handle, target);
      try {
        await handle.sync();
      } catch (e) {
        throw fsError(e, `sync ${target}`);
      }
      handle.close();
      open = false;
      signal?.throwIfAborted();
      if (file.overwrite) {
        try {
          await Deno.rename(temp, target);
        } catch (e) {
          throw fsError(e, `rename the temp file to ${target}`);
        }
      } else {
        await this.#linkNoClobber(file.key, temp, target);
      }
    } finally {
      if (open) closeQuietly(handle);
      // Gone after a rename; after a link, or any failure, this removes it.
      await Deno.remove(temp).catch(() => {});
    }
    await syncDir(dir);
    return { location: target };
  }

  /**
   * Reads `key` back, or `null` when there is no regular file there.
   *
   * @throws {TypeError} a key that is not a safe relative path
   * @throws {PortError} `OutsideRoot` when the path leads out of the root (a symlink),
   *   or the errno of a file system error
   */
  async read(
    key: string,
    options: { readonly domain?: string; readonly signal?: AbortSignal } = {},
  ): Promise<ReadableStream<Uint8Array> | null> {
    checkKey(key);
    const { signal } = options;
    signal?.throwIfAborted();
    let real: string;
    try {
      real = await Deno.realPath(this.#prefix + key);
    } catch (e) {
      if (isGone(errorCode(e))) return null;
      throw fsError(e, `read ${quote(key)} in ${this.location}`);
    }
    if (!this.#inside(real)) throw this.#outside(key, real);
    let handle: Deno.FsFile;
    try {
      handle = await Deno.open(real, { read: true });
    } catch (e) {
      if (isGone(errorCode(e))) return null;
      throw fsError(e, `read ${quote(key)} in ${this.location}`);
    }
    try {
      if (!(await handle.stat()).isFile) {
        handle.close();
        return null;
      }
    } catch (e) {
      closeQuietly(handle);
      throw fsError(e, `read ${quote(key)} in ${this.location}`);
    }
    // Closes the file at the end, on cancel and when `signal` aborts.
    return signal === undefined
      ? handle.readable
      : handle.readable.pipeThrough(new TransformStream<Uint8Array, Uint8Array>(), { signal });
  }

  /** Nothing to release. Idempotent. */
  close(): Promise<void> {
    return Promise.resolve();
  }

  /**
   * Creates the parent directories of a key one level at a time, resolving
   * each and refusing one outside the root; returns the real path of the
   * last.
   */
  async #parent(key: string, dirs: readonly string[]): Promise<string> {
    let dir = this.location;
    for (const segment of dirs) {
      const path = `${dir}/${segment}`;
      try {
        await Deno.mkdir(path);
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) {
          throw fsError(e, `create the directory ${path} for ${quote(key)}`);
        }
      }
      let real: string;
      try {
        real = await Deno.realPath(path);
      } catch (e) {
        const code = errorCode(e);
        if (isGone(code)) {
          throw new PortError(
            `Cannot write ${quote(key)} in ${this.location}: ${path} is a broken symlink`,
            { code, retryable: false, cause: e },
          );
        }
        throw fsError(e, `resolve ${path} for ${quote(key)}`);
      }
      if (!this.#inside(real)) throw this.#outside(key, real);
      let info: Deno.FileInfo;
      try {
        info = await Deno.stat(real);
      } catch (e) {
        throw fsError(e, `resolve ${path} for ${quote(key)}`);
      }
      if (!info.isDirectory) {
        throw new PortError(
          `Cannot write ${quote(key)} in ${this.location}: ${path} is not a directory`,
          { code: "ENOTDIR", retryable: false },
        );
      }
      dir = real;
    }
    return dir;
  }

  /** Copies the body into `handle`, checking its length and md5 on the way. */
  async #copy(file: DestinationWrite, handle: Deno.FsFile, target: string): Promise<void> {
    const { signal } = file;
    const reader = file.body().getReader();
    const onAbort = () => {
      reader.cancel(signal?.reason).catch(() => {});
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    const md5 = createHash("md5");
    let count = 0;
    try {
      for (;;) {
        const { done, value } = await reader.read();
        signal?.throwIfAborted();
        if (done) break;
        count += value.length;
        if (count > file.length) throw lengthMismatch(file, target, count, true);
        md5.update(value);
        let written = 0;
        while (written < value.length) {
          try {
            written += await handle.write(value.subarray(written));
          } catch (e) {
            throw fsError(e, `write ${target}`);
          }
        }
      }
    } catch (e) {
      await reader.cancel(e).catch(() => {});
      throw signal?.aborted ? signal.reason : e;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      reader.releaseLock();
    }
    if (count !== file.length) throw lengthMismatch(file, target, count, false);
    const got = md5.digest("hex");
    if (got !== file.md5) {
      throw new PortError(
        `Cannot write ${
          quote(file.key)
        } to ${target}: the bytes have md5 ${got}, expected ${file.md5}`,
        { code: "ChecksumMismatch", retryable: false },
      );
    }
  }

  /** Links `temp` to `target` unless `target` exists (checked just before where links are missing). */
  async #linkNoClobber(key: string, temp: string, target: string): Promise<void> {
    try {
      await Deno.link(temp, target);
      return;
    } catch (e) {
      if (e instanceof Deno.errors.AlreadyExists) throw this.#exists(key, target);
      if (!NO_LINKS.has(errorCode(e))) throw fsError(e, `link the temp file to ${target}`);
    }
    if (await exists(target)) throw this.#exists(key, target);
    try {
      await Deno.rename(temp, target);
    } catch (e) {
      throw fsError(e, `rename the temp file to ${target}`);
    }
  }

  #inside(real: string): boolean {
    return real === this.location || real.startsWith(this.#prefix);
  }

  #outside(key: string, real: string): PortError {
    return new PortError(
      `Cannot write ${quote(key)} in ${this.location}: the path leads outside the root, to ${real}`,
      { code: "OutsideRoot", retryable: false },
    );
  }

  #exists(key: string, target: string): PortError {
    return new PortError(
      `Cannot write ${quote(key)}: ${target} already exists (overwrite not asked)`,
      { code: "DestinationExists", retryable: false },
    );
  }
}

/** The segments of a safe relative key. */
function checkKey(key: string): string[] {
  const segments = typeof key === "string" ? key.split("/") : [];
  if (
    typeof key !== "string" || key === "" || key.includes("\0") ||
    segments.some((s) => s === "" || s === "." || s === "..")
  ) {
    throw new TypeError(
      `Invalid destination key ${
        quote(key)
      }: must be a relative /-separated path without empty, . or .. segments or NUL`,
    );
  }
  return segments;
}

function lengthMismatch(
  file: DestinationWrite,
  target: string,
  count: number,
  atLeast: boolean,
): PortError {
  return new PortError(
    `Cannot write ${quote(file.key)} to ${target}: the body has ${atLeast ? "more than " : ""}${
      atLeast ? file.length : count
    } bytes, expected ${file.length}`,
    { code: "LengthMismatch", retryable: false },
  );
}

function fsError(e: unknown, what: string): unknown {
  if (!(e instanceof Error) || e instanceof PortError || e.name === "AbortError") return e;
  const code = errorCode(e);
  return new PortError(`Cannot ${what}: ${code}`, {
    code,
    retryable: FS_RETRYABLE_CODES.has(code),
    cause: e,
  });
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (e) {
    if (isGone(errorCode(e))) return false;
    throw fsError(e, `check ${path}`);
  }
}

/** At most {@linkcode TEMP_NAME_BYTES} bytes of `name`, cut between characters. */
function truncateName(name: string): string {
  const encoder = new TextEncoder();
  if (encoder.encode(name).length <= TEMP_NAME_BYTES) return name;
  let out = "";
  let bytes = 0;
  for (const ch of name) {
    bytes += encoder.encode(ch).length;
    if (bytes > TEMP_NAME_BYTES) break;
    out += ch;
  }
  return out;
}

function randomHex(): string {
  return hex(crypto.getRandomValues(new Uint8Array(8)));
}

/** A key for a message: JSON-quoted so that newlines and spaces show. */
function quote(key: string): string {
  return JSON.stringify(key);
}
