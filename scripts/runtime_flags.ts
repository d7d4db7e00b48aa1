/**
 * How coldpack's programs run: the V8 flags and permissions that `deno task`,
 * `deno compile`, the tests and the benchmarks all use, from this one place
 * (tests/runtime_flags_test.ts checks that deno.json says the same).
 *
 * The V8 flags bound the JavaScript heaps of the main thread and of each
 * pack worker (young generation 1 MiB, old generation 160 MiB per isolate):
 * measured on a 100,000-file backfill they take peak RSS from ~380 MB to
 * ~230 MB at the same speed. Every structure the daemon keeps is bounded
 * (pages, bundles, queues), far below the old-generation limit.
 * @module
 */

/** V8 flags of every coldpack program. */
export const V8_FLAGS = "--v8-flags=--max-semi-space-size=1,--max-old-space-size=160";

/** Permissions of coldpack-backup: read/write (source, state, vault, spool), env (config), net (catalog and stores), sys (hostname). */
export const BACKUP_PERMISSIONS = [
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-net",
  "--allow-sys",
];
