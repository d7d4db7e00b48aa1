/**
 * Where a recorded restore is written: turns a restore's DEST (as recorded
 * in the catalog, see {@linkcode canonicalDest}) into a `Destination` and the
 * write's key, for `coldpack-restore --wait` and the restore listener alike.
 *
 * - a local path: the operator's own command writes anywhere it may; a
 *   daemon (given `roots`) only below one of its configured roots, and the
 *   destination is opened at that root, so a symlink under it cannot lead
 *   out either (`OutsideRoot`, from the local destination);
 * - `s3://BUCKET/KEY`, `s3://BUCKET/PREFIX/`;
 * - `mogilefs` (the file's own domain and key) and `mogilefs:DOMAIN[/KEY]`,
 *   on the trackers of the configured `mogilefs://` source.
 *
 * A file's key becomes a relative path under a directory destination; the
 * local destination refuses empty, `.` and `..` segments, so no key leads
 * out of it.
 * @module
 */

import { ConfigError, PortError } from "../core/errors.ts";
import type { Destination, FileRow, RestoreRow } from "../core/ports.ts";
import type { ResolvedDest } from "../core/restore.ts";
import { parseRestoreDest, type RestoreDest } from "../core/restore_spec.ts";
import { parseSourceUrl } from "../core/source_url.ts";
import { normalizePath } from "./_fs.ts";
import { openDestination } from "./registry.ts";

/** How DESTs are resolved. */
export interface DestResolverOptions {
  /** The configured source URL: a `mogilefs://` one gives the trackers of MogileFS DESTs. */
  readonly source: string | null;
  /**
   * Directories local DESTs must lie in (the daemon's `--roots`); `null`:
   * anywhere (the operator's own command). An empty list allows none.
   */
  readonly roots: readonly string[] | null;
}

/**
 * The DEST to record for a restore: a relative local path made absolute
 * against `cwd` (the daemon that writes it later runs elsewhere); anything
 * else as given.
 *
 * @throws {SyntaxError} a DEST that does not parse
 */
export function canonicalDest(dest: string, cwd: string): string {
  const parsed = parseRestoreDest(dest);
  if (parsed.kind !== "local") return dest;
  const abs = normalizePath(parsed.path.startsWith("/") ? parsed.path : `${cwd}/${parsed.path}`);
  return parsed.prefix && abs !== "/" ? `${abs}/` : abs;
}

/** Resolves DESTs to destinations, opening each destination once. */
export class DestResolver {
  readonly #options: DestResolverOptions;
  readonly #roots: readonly string[] | null;
  readonly #open = new Map<string, Promise<Destination>>();

  constructor(options: DestResolverOptions) {
    this.#options = options;
    this.#roots = options.roots === null ? null : options.roots.map(normalizePath);
  }

  /**
   * Where `restore` (of `file`) is written.
   *
   * @throws {PortError} `OutsideRoots` for a local DEST outside the roots
   * @throws {ConfigError} a MogileFS DEST without a `mogilefs://` source
   * @throws {SyntaxError} a DEST that does not parse
   */
  async resolve(restore: RestoreRow, file: FileRow): Promise<ResolvedDest> {
    const dest: RestoreDest = parseRestoreDest(restore.dest);
    const overwrite = restore.overwrite;
    const base = file.key.split("/").pop() || file.key;
    switch (dest.kind) {
      case "local":
        return await this.#local(restore, file, dest, overwrite);
      case "s3":
        return {
          destination: await this.#get(`s3://${dest.bucket}/`, restore),
          write: { key: dest.prefix ? `${dest.key}${file.key}` : dest.key || base, overwrite },
        };
      case "mogilefs-origin":
      case "mogilefs": {
        const spec = this.#options.source === null ? null : parseSourceUrl(this.#options.source);
        if (spec?.kind !== "mogilefs") {
          throw new ConfigError(
            "DEST",
            `${restore.dest} needs a mogilefs:// --source for its trackers`,
          );
        }
        const domain = dest.kind === "mogilefs" ? dest.domain : file.domain;
        if (domain === null) throw new TypeError(`fid:${file.id} has no MogileFS domain`);
        const trackers = spec.trackers.map((t) => `${t.host}:${t.port}`).join(",");
        const key = dest.kind === "mogilefs" && dest.key !== undefined
          ? (dest.prefix ? `${dest.key}${file.key}` : dest.key)
          : file.key;
        return {
          destination: await this.#get(
            `mogilefs://${trackers}/${encodeURIComponent(domain)}`,
            restore,
          ),
          write: {
            key,
            ...(file.storageClass === null ? {} : { storageClass: file.storageClass }),
            // Back where it was: the file is the same one (or gone), so replace.
            overwrite: overwrite || dest.kind === "mogilefs-origin",
          },
        };
      }
    }
  }

  /** Closes every destination opened. */
  async close(): Promise<void> {
    const open = [...this.#open.values()];
    this.#open.clear();
    for (const p of open) await p.then((d) => d.close()).catch(() => {});
  }

  async #local(
    restore: RestoreRow,
    file: FileRow,
    dest: { readonly path: string; readonly prefix: boolean },
    overwrite: boolean,
  ): Promise<ResolvedDest> {
    const abs = normalizePath(dest.path.startsWith("/") ? dest.path : `${Deno.cwd()}/${dest.path}`);
    // The file's path: below the directory for a prefix DEST, else the path itself.
    const target = dest.prefix ? null : abs;
    if (this.#roots === null) {
      if (target === null) {
        await Deno.mkdir(abs, { recursive: true });
        return { destination: await this.#get(abs, restore), write: { key: file.key, overwrite } };
      }
      const slash = target.lastIndexOf("/");
      const dir = target.slice(0, slash) || "/";
      await Deno.mkdir(dir, { recursive: true });
      return {
        destination: await this.#get(dir, restore),
        write: { key: target.slice(slash + 1), overwrite },
      };
    }
    const root = this.#roots.find((r) => abs === r || abs.startsWith(r === "/" ? "/" : `${r}/`));
    if (root === undefined || (target !== null && target === root)) {
      throw new PortError(
        `${restore.dest} is not inside the restore roots (${
          this.#roots.length === 0 ? "none configured: set --roots" : this.#roots.join(", ")
        })`,
        { code: "OutsideRoots", retryable: false },
      );
    }
    const below = abs === root ? "" : abs.slice(root === "/" ? 1 : root.length + 1);
    const key = target === null ? (below === "" ? file.key : `${below}/${file.key}`) : below;
    return { destination: await this.#get(root, restore), write: { key, overwrite } };
  }

  #get(url: string, restore: RestoreRow): Promise<Destination> {
    let p = this.#open.get(url);
    if (p === undefined) {
      p = openDestination(url, `DEST ${restore.dest}`);
      // A destination that could not be opened is tried again next time.
      p.catch(() => this.#open.delete(url));
      this.#open.set(url, p);
    }
    return p;
  }
}
