/**
 * coldpack-restore: bring files back from cold storage.
 *
 * Wiring only: flags and config in, SOURCE and DEST parsed (core/restore_spec.ts),
 * files looked up in the catalog, restores recorded and retrievals started
 * (core/restore.ts), and with `--wait` completed here, errors mapped to exit
 * codes.
 * @module
 */

import {
  CATALOG_STORE_FLAGS,
  exitForError,
  parseCommandLine,
  usage as cliUsage,
} from "../adapters/cli.ts";
import { collectInputs } from "../adapters/config_file.ts";
import { openCatalog, openCatalogAndStore, openSource } from "../adapters/registry.ts";
import { canonicalDest, DestResolver } from "../adapters/restore_dest.ts";
import { randomBytes, systemClock } from "../adapters/clock.ts";
import { type ConfigInputs, resolveMysqlPassword, resolveRestoreConfig } from "../core/config.ts";
import { ConfigError, errorMessage } from "../core/errors.ts";
import { hex, type SourceId, sourceId } from "../core/ids.ts";
import { type Catalog, type FileRow, type RestoreRow, type Tier, TIERS } from "../core/ports.ts";
import { completeRestores, requestRestores, type RestoreRequest } from "../core/restore.ts";
import {
  compilePatterns,
  parseBatch,
  parseRestoreSource,
  type RestoreSource,
} from "../core/restore_spec.ts";
import { parseSourceUrl, remoteSourceId } from "../core/source_url.ts";
import { parseDuration } from "../core/duration.ts";
import { estimateRetrievalCost, pricedStore } from "../core/prices.ts";

/** Exit codes, documented in --help and the README. */
export const EXIT = {
  ok: 0,
  /** Some restores failed, or some batch lines were bad. */
  someFailed: 1,
  usage: 2,
  fatal: 3,
} as const;

const HELP = `coldpack-restore: bring files back from cold storage

Usage:
  coldpack-restore SOURCE DEST [options]      restore one file
  coldpack-restore --batch FILE|- [options]   one "SOURCE DEST" per line
  coldpack-restore status [ID] [--json]       restores recorded in the catalog (one in full)
  coldpack-restore versions SOURCE [--json]   every version the catalog has of a file

SOURCE  fid:123 or 123 (a catalog file id), DOMAIN:KEY (MogileFS), a key or
        relative path of the configured --source, or a URL that url_patterns
        in the config file map to a domain and key. key:REST forces a key.
DEST    a local path (a path ending in / keeps the file's key under it),
        s3://BUCKET/KEY, mogilefs (back where it was) or mogilefs:DOMAIN[/KEY]
        (the trackers of the configured mogilefs:// --source).

The newest archived version is restored unless --version or --as-of picks
another (for keys, not fid:N, which names one version already). Each restore
is recorded in the catalog; retrievals are started only for bytes no live
retrieval holds (megabyte ranges of a vault archive; whole objects of an S3
archive class). A file already at DEST with the same bytes is not written again.
Without --wait the command returns once the retrievals are started and the
restore listener (or a later --wait) writes the files.

Options (the catalog and store are the backup's: same flags, env, config):
  --wait               write the files here, polling until every one is done
  --poll DURATION      --wait: how often to ask the store (default 30s)
  --dry-run            print the archives, bytes and retrievals; start nothing
  --tier TIER          Expedited, Standard (default) or Bulk
  --force              replace a file already at the destination
  --version V          the version the catalog recorded (see: versions SOURCE)
  --as-of TIME         the newest archived version found by TIME (YYYY-MM-DD: end of
                       that day, UTC; or YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM])
  --batch FILE|-       requests from a file or standard input
  --store URL, --catalog URL, --source URL, --state-dir DIR, --config FILE
  --json               status, versions: print JSON
  -h, --help           this help

Exit codes:
  0    done: every restore requested (with --wait: written and md5-checked)
  1    some restores failed, or some batch lines were bad (each is reported)
  2    bad usage or configuration; the message names the flag or line
  3    the catalog or store could not be used; the message says why
`;

const FLAG_OPTIONS = {
  ...CATALOG_STORE_FLAGS,
  batch: { type: "string" as const },
  version: { type: "string" as const },
  "as-of": { type: "string" as const },
  tier: { type: "string" as const },
  poll: { type: "string" as const },
  wait: { type: "boolean" as const },
  "dry-run": { type: "boolean" as const },
  force: { type: "boolean" as const },
  json: { type: "boolean" as const },
  help: { type: "boolean" as const, short: "h" },
};

async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine("coldpack-restore", args, FLAG_OPTIONS, HELP);
  if (parsed.exit !== null) return parsed.exit;
  const { values, positionals } = parsed;
  try {
    const inputs = await collectInputs(values);
    if (positionals[0] === "status") {
      if (positionals.length > 2) return usage(`status takes at most one restore ID`);
      let id: number | null = null;
      if (positionals[1] !== undefined) {
        id = Number(positionals[1]);
        if (!/^\d+$/.test(positionals[1]) || !Number.isSafeInteger(id) || id < 1) {
          return usage(`status: "${positionals[1]}" is not a restore ID (a whole number)`);
        }
      }
      return await status(inputs, id, values.json === true);
    }
    let pick: Pick;
    try {
      pick = parsePick(values.version, values["as-of"]);
    } catch (e) {
      if (e instanceof ConfigError) return usage(e.message);
      throw e;
    }
    if (positionals[0] === "versions") {
      if (positionals.length !== 2) return usage("versions takes one SOURCE");
      return await versions(inputs, positionals[1]!, values.json === true);
    }
    const tier = values.tier ?? "Standard";
    if (!TIERS.includes(tier as Tier)) {
      return usage(`--tier: "${tier}" is not a tier (Expedited, Standard or Bulk)`);
    }
    let pollMs = 30_000;
    if (values.poll !== undefined) {
      try {
        pollMs = parseDuration(values.poll);
      } catch (e) {
        return usage(`--poll: ${errorMessage(e)}`);
      }
    }
    let text: string;
    let single: boolean;
    if (values.batch !== undefined) {
      if (positionals.length > 0) return usage("give SOURCE DEST or --batch, not both");
      text = values.batch === "-"
        ? await new Response(Deno.stdin.readable).text()
        : await Deno.readTextFile(values.batch).catch((e) => {
          throw new ConfigError("--batch", `cannot read ${values.batch}: ${errorMessage(e)}`);
        });
      single = false;
    } else {
      if (positionals.length !== 2) {
        return usage(
          positionals.length < 2 ? "missing SOURCE and DEST" : "too many arguments (SOURCE DEST)",
        );
      }
      text = positionals.map(quote).join(" ");
      single = true;
    }
    return await restore(inputs, text, {
      pick,
      single,
      tier: tier as Tier,
      pollMs,
      wait: values.wait === true,
      dryRun: values["dry-run"] === true,
      force: values.force === true,
    });
  } catch (e) {
    return exitForError("coldpack-restore", e);
  }
}

function usage(message: string): number {
  return cliUsage("coldpack-restore", message);
}

/** A batch field for one argument: quoted when it needs to be. */
function quote(s: string): string {
  return /^[^\s"#]+$/.test(s) ? s : `"${s.replace(/[\\"]/g, (c) => `\\${c}`)}"`;
}

/** `--version` and `--as-of`, checked. */
function parsePick(version: string | undefined, asOf: string | undefined): Pick {
  if (version !== undefined && asOf !== undefined) {
    throw new ConfigError("--as-of", "give --version or --as-of, not both");
  }
  if (version !== undefined && version.trim() === "") {
    throw new ConfigError("--version", "must not be empty");
  }
  let asOfMs: number | null = null;
  if (asOf !== undefined) {
    // A date alone is the end of that day (UTC); a date and time as given (UTC unless it says).
    const dateOnly = /^\d{4}-\d{2}-\d{2}$/.test(asOf);
    const t = Date.parse(dateOnly ? `${asOf}T23:59:59.999Z` : asOf);
    if (
      !/^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?)?$/.test(asOf) ||
      !Number.isFinite(t)
    ) {
      throw new ConfigError(
        "--as-of",
        `"${asOf}" is not a time: write YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM]`,
      );
    }
    asOfMs = t;
  }
  return { version: version ?? null, asOfMs };
}

/** Which version of a key: the newest archived one unless told. */
interface Pick {
  /** `--version`: the version identity the catalog recorded. */
  readonly version: string | null;
  /** `--as-of`: the newest archived version discovered by then (ms). */
  readonly asOfMs: number | null;
}

interface RestoreFlags {
  readonly pick: Pick;
  readonly single: boolean;
  readonly tier: Tier;
  readonly pollMs: number;
  readonly wait: boolean;
  readonly dryRun: boolean;
  readonly force: boolean;
}

async function restore(inputs: ConfigInputs, text: string, flags: RestoreFlags): Promise<number> {
  const config = resolveRestoreConfig(inputs);
  const patterns = compilePatterns(
    inputs.file?.values["url_patterns"],
    inputs.file ? { file: inputs.file.path } : {},
  );
  const batch = parseBatch(text, { patterns });
  let bad = 0;
  const where = (line: number) => flags.single ? "" : `line ${line}: `;
  for (const e of batch.errors) {
    bad++;
    if (flags.single) return usage(e.reason);
    console.error(`coldpack-restore: line ${e.line}: ${e.reason}`);
  }
  const { catalog, store } = await openCatalogAndStore(config, resolveMysqlPassword(inputs));
  const resolver = new DestResolver({ source: config.source, roots: null });
  try {
    const sources = await sourceIds(config.source);
    const requests: RestoreRequest[] = [];
    const invocation = `${Date.now().toString(36)}-${hex(randomBytes(4))}`;
    for (const line of batch.lines) {
      const request = line.request!;
      let file: FileRow;
      try {
        file = await lookUp(catalog, request.source, sources, flags.pick);
      } catch (e) {
        bad++;
        if (flags.single) {
          console.error(`coldpack-restore: ${errorMessage(e)}`);
          return EXIT.someFailed;
        }
        console.error(`coldpack-restore: line ${line.line}: ${errorMessage(e)}`);
        continue;
      }
      requests.push({
        key: `${invocation}:${line.line}`,
        fileId: file.id,
        dest: canonicalDest(line.dest, Deno.cwd()),
        ...(flags.force ? { overwrite: true } : {}),
      });
      console.error(
        `coldpack-restore: ${where(line.line)}fid:${file.id} ${
          JSON.stringify(file.domain === null ? file.key : `${file.domain}:${file.key}`)
        } (${file.length} bytes, archive ${file.archiveId}) -> ${line.dest}`,
      );
    }
    if (requests.length === 0) return bad > 0 ? EXIT.someFailed : EXIT.ok;
    const deps = { catalog, store, clock: systemClock, random: randomBytes };
    const result = await requestRestores(deps, requests, {
      requestedBy: `restore@${Deno.hostname()}`,
      tier: flags.tier,
      dryRun: flags.dryRun,
    });
    const t = result.plan.totals;
    console.log(
      `${
        flags.dryRun ? "would restore" : "restoring"
      } ${requests.length} file(s), ${t.bytesNeeded} bytes, ` +
        `from ${t.archives} archive(s): ${t.retrievalsToStart} retrieval(s) to start ` +
        `(${t.bytesToRetrieve} bytes), ${t.retrievalsReused} reused`,
    );
    console.log(costLine(store.location, flags.tier, t.bytesToRetrieve, t.retrievalsToStart));
    if (flags.dryRun) return bad > 0 ? EXIT.someFailed : EXIT.ok;
    if (!flags.wait) {
      console.log(
        `recorded restores ${result.restores.map((r) => r.id).join(", ")}; ` +
          "the restore listener (or coldpack-restore --wait) writes them when the retrieval is ready",
      );
      return bad > 0 ? EXIT.someFailed : EXIT.ok;
    }
    const ids = result.restores.map((r) => r.id);
    const resolve = (r: RestoreRow, file: FileRow) => resolver.resolve(r, file);
    let failed = 0;
    for (;;) {
      const pass = await completeRestores(deps, {
        resolve,
        ids,
        tier: flags.tier,
        onFinished: (r, outcome) => {
          if (outcome.state === "done") {
            console.log(`restored fid:${r.fileId} -> ${outcome.location}`);
          } else {
            console.error(
              `coldpack-restore: restore ${r.id} (fid:${r.fileId}) failed: ${outcome.reason}`,
            );
          }
        },
      });
      failed += pass.failed;
      if (pass.waiting === 0) break;
      console.error(
        `coldpack-restore: ${pass.waiting} restore(s) waiting for their retrieval; asking again in ${
          flags.pollMs / 1000
        } s`,
      );
      await systemClock.sleep(flags.pollMs);
    }
    return bad + failed > 0 ? EXIT.someFailed : EXIT.ok;
  } finally {
    await resolver.close();
    await store.close();
    await catalog.close();
  }
}

/** The estimated charges of the retrievals to start, or why there is no estimate. */
function costLine(location: string, tier: Tier, bytes: number, requests: number): string {
  const priced = pricedStore(location);
  if (priced === null) return `estimated cost: unknown (no prices for ${location})`;
  try {
    const c = estimateRetrievalCost({ store: priced, tier, bytes, requests });
    return `estimated cost: $${c.dollars.toFixed(c.dollars < 1 ? 4 : 2)} (${tier}, ${
      c.gb.toFixed(3)
    } GB, ${requests} request(s)${c.complete ? "" : "; request charges unknown"}; ` +
      `us-east-1 prices in core/prices.ts)`;
  } catch (e) {
    return `estimated cost: none: ${errorMessage(e)}`;
  }
}

/** The source ids a key or a domain may belong to, from the configured source. */
async function sourceIds(
  source: string | null,
): Promise<{ id: SourceId | null; url: string | null }> {
  if (source === null) return { id: null, url: null };
  const spec = parseSourceUrl(source);
  if (spec.kind === "mogilefs") {
    // Without opening it: that would ask the trackers for nothing the id needs.
    return { id: sourceId(remoteSourceId(spec)), url: source };
  }
  // A directory's id is its real path; an S3 source's its URL: ask the adapter.
  const opened = await openSource(source);
  try {
    return { id: opened.id, url: source };
  } finally {
    await opened.close();
  }
}

/** The newest archived version a SOURCE names. */
async function lookUp(
  catalog: Catalog,
  source: RestoreSource,
  sources: { id: SourceId | null },
  pick: Pick,
): Promise<FileRow> {
  if (source.kind === "id") {
    if (pick.version !== null || pick.asOfMs !== null) {
      throw new RangeError(
        `fid:${source.id} names one version already: --version and --as-of apply to keys`,
      );
    }
    const f = await catalog.file(source.id);
    if (f === null) throw new RangeError(`no file with id ${source.id} in the catalog`);
    if (f.state !== "archived") {
      throw new RangeError(
        `fid:${source.id} (${JSON.stringify(f.key)}) is ${f.state}, not archived`,
      );
    }
    return f;
  }
  const candidates = await versionsOf(catalog, source, sources);
  const name = source.kind === "key" ? source.key : `${source.domain}:${source.key}`;
  const archived = candidates.filter((r) => r.state === "archived");
  const picked = archived.filter((r) =>
    (pick.version === null || r.version === pick.version) &&
    (pick.asOfMs === null || r.discoveredAt <= pick.asOfMs)
  )[0];
  if (picked === undefined) {
    const which = pick.version !== null
      ? ` with version ${JSON.stringify(pick.version)}`
      : pick.asOfMs !== null
      ? ` found by ${new Date(pick.asOfMs).toISOString()}`
      : "";
    throw new RangeError(
      candidates.length === 0
        ? `${JSON.stringify(name)} is not in the catalog`
        : `${JSON.stringify(name)} has no archived version${which} (${candidates.length} ` +
          `version(s): ${
            candidates.map((c) => c.state).join(", ")
          }; see coldpack-restore versions)`,
    );
  }
  return picked;
}

/** Every version the catalog has of a key, newest first. */
async function versionsOf(
  catalog: Catalog,
  source: Exclude<RestoreSource, { kind: "id" }>,
  sources: { id: SourceId | null },
): Promise<FileRow[]> {
  let candidates: FileRow[] = [];
  if (source.kind === "key") {
    if (sources.id === null) {
      throw new ConfigError(
        "--source",
        `a key (${JSON.stringify(source.key)}) needs the backup's --source to find its files`,
      );
    }
    candidates = await catalog.fileVersions(sources.id, source.key);
  } else {
    // The domain's own source, or an every-domain one.
    for (const domain of [source.domain, undefined]) {
      const id = remoteSourceId({ kind: "mogilefs", trackers: [], ...(domain ? { domain } : {}) });
      const rows = await catalog.fileVersions(sourceId(id), source.key);
      candidates.push(...rows.filter((r) => r.domain === source.domain));
    }
  }
  return candidates.sort((a, b) => b.id - a.id);
}

async function status(inputs: ConfigInputs, id: number | null, json: boolean): Promise<number> {
  const config = resolveRestoreConfig(inputs);
  const catalog = await openCatalog(config.catalog, {
    migrate: false,
    password: resolveMysqlPassword(inputs),
  });
  try {
    if (id !== null) {
      const row = (await catalog.restores({ limit: 1, afterId: id - 1 }))[0];
      if (row?.id !== id) {
        console.error(`coldpack-restore: no restore ${id} in the catalog`);
        return EXIT.someFailed;
      }
      const file = await catalog.file(row.fileId);
      const retrieval = row.retrievalId === null ? null : await catalog.retrieval(row.retrievalId);
      if (json) {
        console.log(JSON.stringify({ ...row, file, retrieval }, null, 2));
        return EXIT.ok;
      }
      const time = (ms: number | null) => ms === null ? "-" : new Date(ms).toISOString();
      const lines: [string, string][] = [
        ["restore", `${row.id} (${row.key}), requested by ${row.requestedBy}`],
        ["state", row.state + (row.note === null ? "" : `: ${row.note}`)],
        [
          "file",
          file === null
            ? `fid:${row.fileId}`
            : `fid:${file.id} ${
              JSON.stringify(file.domain === null ? file.key : `${file.domain}:${file.key}`)
            } version ${
              JSON.stringify(file.version)
            }, ${file.length} bytes, archive ${file.archiveId}`,
        ],
        ["dest", row.dest + (row.overwrite ? " (replace what is there)" : "")],
        ["requested", time(row.requestedAt)],
        ["finished", time(row.finishedAt)],
        [
          "retrieval",
          retrieval === null
            ? "none yet"
            : `${retrieval.id} ${retrieval.state} (${retrieval.tier}${
              retrieval.range === null
                ? ""
                : `, bytes ${retrieval.range.start}-${retrieval.range.end}`
            }), started ${time(retrieval.startedAt)}, ready ${time(retrieval.readyAt)}, expires ${
              time(retrieval.expiresAt)
            }` + (retrieval.failure === null ? "" : `, failed: ${retrieval.failure}`),
        ],
      ];
      for (const [k, v] of lines) console.log(`${k.padEnd(10)} ${v}`);
      return EXIT.ok;
    }
    const rows: RestoreRow[] = [];
    let afterId: number | undefined;
    for (;;) {
      const page = await catalog.restores({
        limit: 500,
        ...(afterId === undefined ? {} : { afterId }),
      });
      if (page.length === 0) break;
      rows.push(...page);
      afterId = page[page.length - 1]!.id;
    }
    if (json) {
      console.log(JSON.stringify(rows, null, 2));
      return EXIT.ok;
    }
    if (rows.length === 0) console.log("no restores recorded");
    for (const r of rows) {
      console.log(
        `${r.id}\t${r.state}\tfid:${r.fileId}\t${r.dest}\t${
          new Date(r.requestedAt).toISOString()
        }` +
          (r.note === null ? "" : `\t${r.note}`),
      );
    }
    return EXIT.ok;
  } finally {
    await catalog.close();
  }
}

/** `versions SOURCE`: every version the catalog has of a key, newest first. */
async function versions(inputs: ConfigInputs, text: string, json: boolean): Promise<number> {
  const config = resolveRestoreConfig(inputs);
  const patterns = compilePatterns(
    inputs.file?.values["url_patterns"],
    inputs.file ? { file: inputs.file.path } : {},
  );
  let source: RestoreSource;
  try {
    source = parseRestoreSource(text, { patterns });
  } catch (e) {
    return usage(errorMessage(e));
  }
  const catalog = await openCatalog(config.catalog, {
    migrate: false,
    password: resolveMysqlPassword(inputs),
  });
  try {
    let rows: FileRow[];
    if (source.kind === "id") {
      const f = await catalog.file(source.id);
      rows = f === null ? [] : await catalog.fileVersions(f.source, f.key);
      rows = rows.filter((r) => f !== null && r.domain === f.domain).sort((a, b) => b.id - a.id);
    } else {
      rows = await versionsOf(catalog, source, await sourceIds(config.source));
    }
    if (rows.length === 0) {
      console.error(`coldpack-restore: ${JSON.stringify(text)} is not in the catalog`);
      return EXIT.someFailed;
    }
    if (json) {
      console.log(JSON.stringify(rows, null, 2));
      return EXIT.ok;
    }
    console.log("fid\tstate\tversion\tbytes\tdiscovered\tarchive");
    for (const r of rows) {
      console.log(
        `${r.id}\t${r.state}\t${r.version}\t${r.length}\t${
          new Date(r.discoveredAt).toISOString()
        }\t${r.archiveId ?? "-"}`,
      );
    }
    return EXIT.ok;
  } finally {
    await catalog.close();
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
