/**
 * Shared test helpers: temp dirs, running a cmd/ entry as a subprocess,
 * checking a vault against its source with GNU tar and the catalog.
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
import { sourceId } from "../core/ids.ts";
import type { ArchiveRow, Catalog, FileRow } from "../core/ports.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

import { BACKUP_PERMISSIONS, V8_FLAGS } from "../scripts/runtime_flags.ts";

/** A temp dir removed by the returned function. */
export async function tempDir(prefix = "coldpack-test-"): Promise<{
  path: string;
  cleanup: () => Promise<void>;
}> {
  const path = await Deno.makeTempDir({ prefix });
  return { path, cleanup: () => Deno.remove(path, { recursive: true }).catch(() => {}) };
}

/** The result of running a command. */
export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Options for {@linkcode runCmd}. */
export interface RunOptions {
  env?: Record<string, string>;
  /** Prefix the deno invocation (e.g. `setpriv ...`). */
  wrap?: string[];
  stdin?: string;
}

/** Runs `cmd/<entry>.ts` with `args` as a subprocess. */
export async function runCmd(
  entry: string,
  args: string[],
  options: RunOptions = {},
): Promise<RunResult> {
  const child = spawnCmd(entry, args, { ...options, piped: true });
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/** Starts `cmd/<entry>.ts` as a subprocess and returns the child. */
export function spawnCmd(
  entry: string,
  args: string[],
  options: RunOptions & { piped?: boolean } = {},
): Deno.ChildProcess {
  const deno = [
    Deno.execPath(),
    "run",
    "--quiet",
    ...BACKUP_PERMISSIONS,
    V8_FLAGS,
    `${ROOT}/cmd/${entry}.ts`,
  ];
  const argv = [...(options.wrap ?? []), ...deno, ...args];
  return new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    cwd: ROOT,
    env: { NO_COLOR: "1", ...(options.env ?? {}) },
    stdin: options.stdin !== undefined ? "piped" : "null",
    stdout: options.piped === false ? "null" : "piped",
    stderr: options.piped === false ? "null" : "piped",
  }).spawn();
}

/** Writes a file, creating parent directories. */
export async function put(root: string, key: string, bytes: Uint8Array | string): Promise<void> {
  const path = `${root}/${key}`;
  await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
  await Deno.writeFile(path, typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes);
}

/** Deterministic pseudo-random bytes (xorshift), so corpora are reproducible. */
export function bytesOf(seed: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/** Every regular file under `root`, as relative path -> bytes. */
export async function readTree(root: string): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  async function walk(dir: string, rel: string) {
    for await (const e of Deno.readDir(dir)) {
      const p = `${dir}/${e.name}`;
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory) await walk(p, r);
      else if (e.isFile) out.set(r, await Deno.readFile(p));
    }
  }
  await walk(root, "");
  return out;
}

/** The `.tar` files of a local vault. */
export async function vaultTars(vault: string): Promise<string[]> {
  const tars: string[] = [];
  for await (const e of Deno.readDir(vault)) {
    if (e.isFile && e.name.endsWith(".tar")) tars.push(`${vault}/${e.name}`);
  }
  return tars.sort();
}

/** Runs a command and returns stdout; fails the test with stderr on a non-zero exit. */
export async function sh(cmd: string, args: string[], cwd?: string): Promise<string> {
  const out = await new Deno.Command(cmd, { args, ...(cwd ? { cwd } : {}) }).output();
  const err = new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, `${cmd} ${args.join(" ")} failed: ${err}`);
  return new TextDecoder().decode(out.stdout);
}

/** Extracts every vault tar with GNU tar into `dest` (manifests land in dest/.coldpack). */
export async function extractVault(vault: string, dest: string): Promise<void> {
  await Deno.mkdir(dest, { recursive: true });
  for (const tar of await vaultTars(vault)) await sh("tar", ["-xf", tar, "-C", dest]);
}

/** md5 hex of bytes. */
export function md5(bytes: Uint8Array): string {
  return createHash("md5").update(bytes).digest("hex");
}

/**
 * The core promise, checked from the outside: every archived catalog row
 * points at an archive whose tar holds exactly the file's bytes at the
 * recorded offset, with the recorded md5; returns the archived rows by key
 * (newest version per key).
 */
export async function checkCatalogAgainstVault(
  catalogPath: string,
  vault: string,
  sourceRoot: string,
): Promise<Map<string, FileRow>> {
  const catalog = await SqliteCatalog.open(catalogPath, { migrate: false });
  try {
    return await checkCatalogArchives(
      catalog,
      sourceRoot,
      (a) => Deno.readFile(`${vault}/${a.remoteId}`),
    );
  } finally {
    await catalog.close();
  }
}

/**
 * {@linkcode checkCatalogAgainstVault} for any catalog and any store:
 * `read` fetches an archive's bytes (from a double's memory, or through a
 * retrieval).
 */
export async function checkCatalogArchives(
  catalog: Catalog,
  sourceRoot: string,
  read: (archive: ArchiveRow) => Promise<Uint8Array>,
): Promise<Map<string, FileRow>> {
  const src = sourceId(`dir:${await Deno.realPath(sourceRoot)}`);
  const byKey = new Map<string, FileRow>();
  let after: string | undefined;
  for (;;) {
    const page = await catalog.archives({
      limit: 100,
      ...(after === undefined ? {} : { afterId: after as never }),
    });
    if (page.length === 0) break;
    for (const a of page) {
      const bytes = await read(a);
      assert.equal(bytes.length, a.size, `archive ${a.id} size`);
      const files = await catalog.archiveFiles(a.id);
      assert.equal(files.length > 0, true, `archive ${a.id} has files`);
      for (const f of files) {
        assert.equal(f.state, "archived");
        assert.equal(f.source, src);
        const data = bytes.subarray(f.dataOffset!, f.dataOffset! + f.length);
        assert.equal(md5(data), f.md5, `md5 of ${f.key} in ${a.id}`);
        const prev = byKey.get(f.key);
        if (!prev || prev.id < f.id) byKey.set(f.key, f);
      }
    }
    after = page[page.length - 1]!.id;
  }
  return byKey;
}
