/**
 * Shared test helpers: temp dirs, running a cmd/ entry as a subprocess,
 * deterministic bytes, the checks `assert.rejects` takes, the per-test
 * fixture of the conformance suites, and reading a SQLite catalog and a
 * local vault from the outside.
 * @module
 */

import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { DatabaseSync } from "node:sqlite";
import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
import { DirectorySource } from "../adapters/source/directory.ts";
import { LocalVault } from "../adapters/store/local_vault.ts";
import { PortError } from "../core/errors.ts";
import { fileId, sourceId } from "../core/ids.ts";
import type { ArchiveRow, Catalog, FileRow } from "../core/ports.ts";
import { BACKUP_PERMISSIONS, V8_FLAGS } from "../scripts/runtime_flags.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

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
 * Asserts that `actual` holds exactly `expected`, naming the first offset
 * where they differ.
 *
 * @param actual the bytes found, or null for "nothing there"
 * @param expected the bytes wanted
 * @param label what is compared, in front of each failure message
 */
export function assertBytes(
  actual: Uint8Array | null,
  expected: Uint8Array,
  label: string,
): void {
  assert.ok(actual !== null, `${label}: nothing there`);
  assert.equal(actual.length, expected.length, `${label}: length`);
  for (let i = 0; i < actual.length; i++) {
    if (actual[i] !== expected[i]) assert.fail(`${label}: bytes differ at offset ${i}`);
  }
}

/**
 * A check for `assert.rejects`: a {@linkcode PortError} with this code and
 * retryability whose message holds every one of `words`.
 *
 * @example
 * ```ts
 * await assert.rejects(source.open(entry), portError("SlowDown", true, "GetObject"));
 * ```
 */
export function portError(
  code: string,
  retryable: boolean,
  ...words: string[]
): (e: unknown) => true {
  return (e: unknown) => {
    assert.ok(e instanceof PortError, `expected PortError ${code}, got ${e}`);
    assert.equal(e.code, code, `code of: ${e.message}`);
    assert.equal(e.retryable, retryable, `retryable of: ${e.message}`);
    for (const w of words) assert.ok(e.message.includes(w), `"${w}" missing from: ${e.message}`);
    return true;
  };
}

/**
 * A check for `assert.rejects`: an instance of `ErrorClass` whose message
 * holds every one of `words`.
 *
 * @example
 * ```ts
 * await assert.rejects(source.open(entry), expectError(VanishedError, '"a.txt"'));
 * ```
 */
export function expectError(
  ErrorClass: abstract new (...args: never[]) => Error,
  ...words: string[]
): (e: unknown) => true {
  return (e: unknown) => {
    assert.ok(e instanceof ErrorClass, `expected ${ErrorClass.name}, got ${e}`);
    for (const w of words) assert.ok(e.message.includes(w), `"${w}" missing from: ${e.message}`);
    return true;
  };
}

/** A part-retry policy for adapters under test: three attempts, no real waiting between them. */
export const FAST_RETRY = {
  attempts: 3,
  baseMs: 1,
  maxMs: 2,
  clock: { now: () => Date.now(), sleep: () => Promise.resolve() },
} as const;

/** Options for {@linkcode fixtureTests}. */
export interface FixtureTestOptions<F> {
  /** Disposes of a fixture after its test, whether the test passed or not. */
  readonly teardown: (fixture: F) => Promise<void>;
  /** Registers the tests as ignored; default false. */
  readonly ignore?: boolean;
}

/**
 * The `test` function of a conformance suite: each call registers a
 * `Deno.test` named `<name>: <title>` that runs its body on a fresh fixture
 * from `setup`, then always tears the fixture down.
 *
 * @param name shown in front of each test's title: the implementation under test
 * @param setup makes a fresh fixture for one test
 * @example
 * ```ts
 * const test = fixtureTests("local vault", open, { teardown: (s) => s.cleanup() });
 * test("lists nothing when empty", async ({ store }) => { ... });
 * ```
 */
export function fixtureTests<F>(
  name: string,
  setup: () => Promise<F>,
  options: FixtureTestOptions<F>,
): (title: string, body: (fixture: F) => Promise<void>) => void {
  return (title, body) => {
    Deno.test({ name: `${name}: ${title}`, ignore: options.ignore ?? false }, async () => {
      const fixture = await setup();
      try {
        await body(fixture);
      } finally {
        await options.teardown(fixture);
      }
    });
  };
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

/**
 * Every file row of the SQLite catalog at `path`, in id order: all of them,
 * or only those of `options.source`.
 */
export async function catalogRows(
  path: string,
  options: { readonly source?: string } = {},
): Promise<FileRow[]> {
  // Ids have gaps (SQLite spends one on each conflicting insert): ask SQL for them.
  const db = new DatabaseSync(path, { readOnly: true });
  let ids: number[];
  try {
    const rows = options.source === undefined
      ? db.prepare("SELECT id FROM files ORDER BY id").all()
      : db.prepare("SELECT id FROM files WHERE source = ? ORDER BY id").all(options.source);
    ids = rows.map((r) => Number(r.id));
  } finally {
    db.close();
  }
  const catalog = await SqliteCatalog.open(path, { migrate: false });
  try {
    const out: FileRow[] = [];
    for (const id of ids) out.push((await catalog.file(fileId(id)))!);
    return out;
  } finally {
    await catalog.close();
  }
}

/**
 * The bytes of an archived row, read at its recorded offset in its
 * archive's tar in the local vault directory `vault`.
 */
export async function archivedBytes(
  catalogPath: string,
  vault: string,
  row: FileRow,
): Promise<Uint8Array> {
  const catalog = await SqliteCatalog.open(catalogPath, { migrate: false });
  try {
    const archive = await catalog.archive(row.archiveId!);
    assert.ok(archive, `archive ${row.archiveId} of ${row.key}`);
    const tar = await Deno.readFile(`${vault}/${archive.remoteId}`);
    return tar.subarray(row.dataOffset!, row.dataOffset! + row.length);
  } finally {
    await catalog.close();
  }
}

/** A directory source, a local vault and a SQLite catalog in fresh temp directories. */
export interface LocalRig {
  readonly src: string;
  readonly state: string;
  readonly source: DirectorySource;
  readonly store: LocalVault;
  readonly catalog: SqliteCatalog;
  cleanup(): Promise<void>;
}

/** Opens a {@linkcode LocalRig}; always `cleanup()` it. */
export async function localRig(): Promise<LocalRig> {
  const src = await tempDir();
  const state = await tempDir();
  const source = await DirectorySource.open(src.path);
  const store = await LocalVault.open(`${state.path}/vault`);
  const catalog = await SqliteCatalog.open(`${state.path}/catalog.db`);
  return {
    src: src.path,
    state: state.path,
    source,
    store,
    catalog,
    cleanup: async () => {
      await catalog.close();
      await store.close();
      await source.close();
      await src.cleanup();
      await state.cleanup();
    },
  };
}
