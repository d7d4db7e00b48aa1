/**
 * Local file system pieces that the directory source and the local
 * destination share: opening the root directory, and what Deno's error
 * codes mean. Read an error's code with `errorCode` of core/errors.ts.
 * @module
 */

import { errorCode, PortError } from "../core/errors.ts";

/** Errno codes after which the same file system call may succeed later. */
export const FS_RETRYABLE_CODES: ReadonlySet<string> = new Set([
  "EIO",
  "EAGAIN",
  "EBUSY",
  "EINTR",
  "EMFILE",
  "ENFILE",
  "ENOMEM",
  "ETIMEDOUT",
  "ESTALE",
]);

/** Whether an errno code means that the path does not exist (any more). */
export function isGone(code: string): boolean {
  return code === "ENOENT" || code === "ENOTDIR";
}

/** Closes `resource`, ignoring that it may be closed already. */
export function closeQuietly(resource: { close(): void }): void {
  try {
    resource.close();
  } catch {
    // Already closed.
  }
}

/**
 * The real path (symlinks resolved) of `root`, which must be an existing
 * directory.
 *
 * @param role what the directory is, for messages: `source`, `destination`
 * @throws {PortError} coded `ENOENT`, `ENOTDIR`, `EACCES`..., not retryable;
 *   the message names `root`
 */
export async function openRootDirectory(root: string, role: string): Promise<string> {
  let real: string;
  try {
    real = await Deno.realPath(root);
    const info = await Deno.stat(real);
    if (!info.isDirectory) {
      throw new PortError(`Cannot open ${role} directory "${root}": not a directory`, {
        code: "ENOTDIR",
        retryable: false,
      });
    }
  } catch (e) {
    if (e instanceof PortError) throw e;
    const code = errorCode(e);
    throw new PortError(`Cannot open ${role} directory "${root}": ${code}`, {
      code,
      retryable: false,
      cause: e,
    });
  }
  return real;
}

/** Resolves `.` and `..` lexically and drops doubled and trailing slashes: `/a/./b/../c/` -> `/a/c`. */
export function normalizePath(abs: string): string {
  const out: string[] = [];
  for (const seg of abs.split("/")) {
    if (seg === "" || seg === ".") continue;
    if (seg === "..") out.pop();
    else out.push(seg);
  }
  return `/${out.join("/")}`;
}

/**
 * Makes creations, renames and deletions in `dir` durable. Best effort: a
 * file system that cannot sync a directory is let be (the files themselves
 * were synced before they became visible).
 */
export async function syncDir(dir: string): Promise<void> {
  try {
    const handle = await Deno.open(dir, { read: true });
    try {
      await handle.sync();
    } finally {
      handle.close();
    }
  } catch {
    // Best effort, as said.
  }
}
