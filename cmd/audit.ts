/**
 * coldpack-audit: the hourly sampled verification (`sample`) and the
 * summary of audits (`report`).
 *
 * Wiring only: flags and config in, catalog, store and source opened
 * through the registry, core/audit_sample.ts run, the manifest POSTed to
 * the verifier, errors mapped to exit codes.
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
import { randomBytes, systemClock } from "../adapters/clock.ts";
import { IstatdClient } from "../adapters/metrics/istatd_client.ts";
import {
  type BudgetSpec,
  DEFAULT_BUDGET,
  formatReport,
  parseBudget,
  summarize,
} from "../core/audit.ts";
import { sampleAudits } from "../core/audit_sample.ts";
import { allPages } from "../core/paging.ts";
import { runDrill } from "../core/audit_drill.ts";
import { parseDuration } from "../core/duration.ts";
import { canonicalDest, DestResolver } from "../adapters/restore_dest.ts";
import { SmtpMailer } from "../adapters/audit/mailer.ts";
import { type ConfigInputs, resolveMysqlPassword, resolveRestoreConfig } from "../core/config.ts";
import { parseHostPort } from "../core/agent_config.ts";
import { errorMessage } from "../core/errors.ts";
import {
  type AuditRow,
  type Catalog,
  type DrillRow,
  type Metrics,
  noMetrics,
  type Tier,
  TIERS,
} from "../core/ports.ts";

/** Exit codes, documented in --help and docs/audit.md. */
export const EXIT = {
  ok: 0,
  /** Some audits could not be carried out (each is recorded and logged). */
  someFailed: 1,
  usage: 2,
  fatal: 3,
} as const;

const NAME = "coldpack-audit";

const HELP = `coldpack-audit: prove the archives are intact

Usage:
  coldpack-audit sample [--fraction F] [--min N] --verifier URL [options]   (hourly cron)
  coldpack-audit drill [--files 10] [--dest DEST[,DEST]] --smtp URL --mail-to ADDR   (monthly cron)
  coldpack-audit report [--json] [--verifier URL]

sample picks a uniformly random sample of archives (expected size: archives x
--fraction, with randomized rounding so that small fleets are audited over
time too; at least --min), without scanning the archives table. For each it
md5s every file from the live source (a file since deleted or replaced there
is checked against the catalog's md5, and said so), starts a whole-archive
retrieval tagged as an audit, and sends the md5 manifest to the verifier
(coldpack-audit-verifier, near the storage) with the bearer token from
COLDPACK_VERIFIER_TOKEN. A sample that would take this month's retrievals
(restores and audits) past the budget is skipped, and said so.

drill first checks the drills of earlier runs: each file must have been
restored byte-identical (read back from its destination and md5-checked)
within --window; any that was not is reported in one alert mail. Then it
picks --files random archived files and restores them through the normal
restore path (the restore listener, or the next drill run on the embedded
default, writes them) below each test destination, in a folder per drill.

Options (the catalog, store and source are the backup's: same flags, env, config):
  --fraction F         share of archives per run (default 0.000001)
  --min N              at least N archives per run (default 0)
  --verifier URL       the verifier, e.g. https://verifier.example.com:8420
  --budget B           monthly retrieval budget: a fraction of stored bytes (0.05, 5%)
                       or bytes (50GiB); default 5%
  --tier TIER          retrieval tier (default Bulk: audits are not urgent)
  --dry-run            pick and print; start nothing, send nothing
  --metrics-agent HOST:PORT   counters to the local metrics agent
  --files N            drill: files per drill (default 10; 0: only check earlier drills)
  --dest DEST[,DEST]   drill: test destinations, directories or prefixes ending in /
                       (default mogilefs:coldpack-drill/ and s3://coldpack-drill/ for a
                       MogileFS source, else STATE_DIR/drill/)
  --window DURATION    drill: restored byte-identical within this (default 24h)
  --smtp URL --mail-to ADDR[,ADDR] --mail-from ADDR   drill: where the alert goes
                       (password, if any, from COLDPACK_SMTP_PASSWORD)
  --json               report: JSON
                       (report --verifier URL first records the verifier's results; sample
                       does so on every run)
  --store URL, --catalog URL, --source URL, --state-dir DIR, --config FILE
  -h, --help           this help

Exit codes:
  0    done (a sample skipped by the budget is done too)
  1    some audits could not be carried out (recorded with the reason)
  2    bad usage or configuration; the message names the flag
  3    the catalog or store could not be used
`;

const FLAG_OPTIONS = {
  ...CATALOG_STORE_FLAGS,
  fraction: { type: "string" as const },
  min: { type: "string" as const },
  verifier: { type: "string" as const },
  budget: { type: "string" as const },
  tier: { type: "string" as const },
  "metrics-agent": { type: "string" as const },
  files: { type: "string" as const },
  dest: { type: "string" as const },
  window: { type: "string" as const },
  smtp: { type: "string" as const },
  "mail-to": { type: "string" as const },
  "mail-from": { type: "string" as const },
  "dry-run": { type: "boolean" as const },
  json: { type: "boolean" as const },
  help: { type: "boolean" as const, short: "h" },
};

function log(line: string): void {
  console.error(`${NAME}: ${line}`);
}

async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(NAME, args, FLAG_OPTIONS, HELP);
  if (parsed.exit !== null) return parsed.exit;
  const { values, positionals } = parsed;
  const command = positionals[0];
  if (
    positionals.length !== 1 ||
    (command !== "sample" && command !== "report" && command !== "drill")
  ) {
    return cliUsage(NAME, "give one command: sample, drill or report");
  }
  try {
    const inputs = await collectInputs(values);
    if (command === "report") {
      const token = Deno.env.get("COLDPACK_VERIFIER_TOKEN") ?? "";
      if (values.verifier !== undefined && token === "") {
        return cliUsage(NAME, "COLDPACK_VERIFIER_TOKEN is not set (the verifier's bearer token)");
      }
      return await report(
        inputs,
        values.json === true,
        values.verifier === undefined ? null : { url: new URL(values.verifier), token },
      );
    }
    if (command === "drill") {
      const agent = values["metrics-agent"] === undefined
        ? null
        : new IstatdClient({ ...parseHostPort(values["metrics-agent"]), log });
      try {
        return await drill(inputs, values, agent ?? noMetrics);
      } finally {
        await agent?.close();
      }
    }
    const fraction = Number(values.fraction ?? "0.000001");
    if (!(fraction >= 0 && fraction <= 1)) {
      return cliUsage(NAME, `--fraction: "${values.fraction}" is not a fraction from 0 to 1`);
    }
    const min = Number(values.min ?? "0");
    if (!Number.isInteger(min) || min < 0) {
      return cliUsage(NAME, `--min: "${values.min}" is not a whole number`);
    }
    let budget: BudgetSpec = DEFAULT_BUDGET;
    if (values.budget !== undefined) {
      try {
        budget = parseBudget(values.budget);
      } catch (e) {
        return cliUsage(NAME, `--budget: ${errorMessage(e)}`);
      }
    }
    const tier = (values.tier ?? "Bulk") as Tier;
    if (!TIERS.includes(tier)) {
      return cliUsage(NAME, `--tier: "${values.tier}" is not a tier (Expedited, Standard or Bulk)`);
    }
    const dryRun = values["dry-run"] === true;
    const token = Deno.env.get("COLDPACK_VERIFIER_TOKEN") ?? "";
    if (!dryRun && values.verifier === undefined) {
      return cliUsage(NAME, "--verifier URL is needed (or --dry-run)");
    }
    if (!dryRun && token === "") {
      return cliUsage(NAME, "COLDPACK_VERIFIER_TOKEN is not set (the verifier's bearer token)");
    }
    let verifier: URL | null = null;
    if (values.verifier !== undefined) {
      try {
        verifier = new URL(values.verifier);
        if (verifier.protocol !== "http:" && verifier.protocol !== "https:") throw new Error();
      } catch {
        return cliUsage(NAME, `--verifier: "${values.verifier}" is not an http(s) URL`);
      }
    }
    let metrics: Metrics = noMetrics;
    let client: IstatdClient | null = null;
    if (values["metrics-agent"] !== undefined) {
      const where = parseHostPort(values["metrics-agent"]);
      client = new IstatdClient({ host: where.host, port: where.port, log });
      metrics = client;
    }
    try {
      return await sample(inputs, {
        fraction,
        min,
        budget,
        tier,
        dryRun,
        verifier,
        token,
        metrics,
      });
    } finally {
      await client?.close();
    }
  } catch (e) {
    if (e instanceof RangeError && /HOST:PORT/.test(e.message)) {
      return cliUsage(NAME, `--metrics-agent: ${e.message}`);
    }
    return exitForError(NAME, e);
  }
}

interface SampleFlags {
  readonly fraction: number;
  readonly min: number;
  readonly budget: BudgetSpec;
  readonly tier: Tier;
  readonly dryRun: boolean;
  readonly verifier: URL | null;
  readonly token: string;
  readonly metrics: Metrics;
}

async function sample(inputs: ConfigInputs, flags: SampleFlags): Promise<number> {
  const config = resolveRestoreConfig(inputs);
  const { catalog, store } = await openCatalogAndStore(config, resolveMysqlPassword(inputs));
  const source = config.source === null ? null : await openSource(config.source);
  if (source === null) log("no --source: every md5 comes from the catalog (said in each manifest)");
  try {
    const send = async (bytes: Uint8Array) => {
      const url = new URL(
        "manifests",
        flags.verifier!.href.endsWith("/") ? flags.verifier! : `${flags.verifier!.href}/`,
      );
      const res = await fetch(url, {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${flags.token}`,
        },
        body: new Blob([bytes as Uint8Array<ArrayBuffer>]),
        signal: AbortSignal.timeout(60_000),
      });
      const text = (await res.text()).slice(0, 300);
      if (res.status !== 202 && res.status !== 200) {
        throw new Error(`${url.origin} answered ${res.status}: ${text.trim()}`);
      }
    };
    if (!flags.dryRun && flags.verifier !== null) {
      try {
        const n = await syncFromVerifier(catalog, flags.verifier, flags.token);
        if (n > 0) log(`${n} earlier audit result(s) from the verifier recorded`);
      } catch (e) {
        log(`could not read earlier results from the verifier: ${errorMessage(e)}`);
      }
    }
    const result = await sampleAudits({
      catalog,
      store,
      source,
      clock: systemClock,
      random: randomBytes,
      random01: Math.random,
      send,
      metrics: flags.metrics,
      log,
    }, {
      fraction: flags.fraction,
      min: flags.min,
      budget: flags.budget,
      tier: flags.tier,
      dryRun: flags.dryRun,
    });
    if (flags.dryRun) {
      for (const a of result.picked) {
        console.log(`would audit ${a.id} (${a.size} bytes, ${a.fileCount} files)`);
      }
    }
    console.log(
      `${result.picked.length} archive(s) picked of ${result.archives}: ${result.sent} sent, ` +
        `${result.skipped} skipped (budget), ${result.errors} error(s)`,
    );
    return result.errors > 0 ? EXIT.someFailed : EXIT.ok;
  } finally {
    await source?.close();
    await store.close();
    await catalog.close();
  }
}

async function drill(
  inputs: ConfigInputs,
  values: Record<string, string | boolean | undefined>,
  metrics: Metrics,
): Promise<number> {
  const str = (k: string) => values[k] as string | undefined;
  const files = Number(str("files") ?? "10");
  if (!Number.isInteger(files) || files < 0 || files > 1000) {
    return cliUsage(NAME, `--files: "${str("files")}" is not a whole number from 0 to 1000`);
  }
  let windowMs = 24 * 3_600_000;
  if (str("window") !== undefined) {
    try {
      windowMs = parseDuration(str("window")!);
    } catch (e) {
      return cliUsage(NAME, `--window: ${errorMessage(e)}`);
    }
  }
  const tier = (str("tier") ?? "Standard") as Tier;
  if (!TIERS.includes(tier)) {
    return cliUsage(NAME, `--tier: "${str("tier")}" is not a tier (Expedited, Standard or Bulk)`);
  }
  const config = resolveRestoreConfig(inputs);
  const isMogile = config.source !== null && config.source.startsWith("mogilefs:");
  const dests = (str("dest")?.split(",").map((d) => d.trim()).filter((d) => d !== "") ??
    (isMogile
      ? ["mogilefs:coldpack-drill/", "s3://coldpack-drill/"]
      : [`${config.stateDir}/drill/`]))
    .map((d) => canonicalDest(d, Deno.cwd()));
  for (const d of dests) {
    if (!d.endsWith("/")) {
      return cliUsage(NAME, `--dest: "${d}" must be a directory or prefix ending in /`);
    }
  }
  let mailer: SmtpMailer | null = null;
  if (str("smtp") !== undefined) {
    mailer = SmtpMailer.open(str("smtp")!, {
      from: str("mail-from") ?? `coldpack@${Deno.hostname()}`,
      to: (str("mail-to") ?? "").split(",").map((a) => a.trim()).filter((a) => a !== ""),
    });
  }
  const { catalog, store } = await openCatalogAndStore(config, resolveMysqlPassword(inputs));
  const resolver = new DestResolver({ source: config.source, roots: null });
  try {
    const result = await runDrill({
      catalog,
      store,
      clock: systemClock,
      random: randomBytes,
      random01: Math.random,
      resolve: (r, f) => resolver.resolve(r, f),
      alert: async (subject, text) => {
        if (mailer === null) {
          throw new Error("no --smtp: the alert is only in this log:\n" + text);
        }
        await mailer.send({ subject, text });
      },
      metrics,
      log,
    }, { files, dests, windowMs, tier });
    console.log(
      `drill: ${result.started} file(s) started; earlier drills: ${result.ok} ok, ` +
        `${result.pending} pending, ${result.failed} failed (${result.alerted} alerted)`,
    );
    return result.failed > 0 ? EXIT.someFailed : EXIT.ok;
  } finally {
    await resolver.close();
    await mailer?.close();
    await store.close();
    await catalog.close();
  }
}

/**
 * Brings the verifier's results into the catalog: audits still `sent` there
 * that the verifier has verified, failed or given up on. Returns how many
 * changed.
 */
async function syncFromVerifier(
  catalog: Catalog,
  verifier: URL,
  token: string,
): Promise<number> {
  const sent = await allPages(
    (afterId: AuditRow["id"] | undefined) =>
      catalog.audits({
        limit: 500,
        states: ["sent"],
        ...(afterId === undefined ? {} : { afterId }),
      }),
    (a) => a.id,
  );
  if (sent.length === 0) return 0;
  const url = new URL(
    "audits?limit=10000",
    verifier.href.endsWith("/") ? verifier : `${verifier.href}/`,
  );
  const res = await fetch(url, {
    headers: { authorization: `Bearer ${token}` },
    signal: AbortSignal.timeout(60_000),
  });
  if (res.status !== 200) {
    const text = (await res.text()).slice(0, 200).trim();
    throw new Error(`${url.origin} answered ${res.status} to GET /audits: ${text}`);
  }
  const body = await res.json() as {
    audits: { auditId: string; state: string; findings: unknown[] | null; note: string | null }[];
  };
  const byId = new Map(body.audits.map((a) => [a.auditId, a]));
  let changed = 0;
  for (const a of sent) {
    const v = byId.get(a.id);
    if (v === undefined || v.state === "waiting") continue;
    const state = v.state === "verified" ? "verified" : v.state === "failed" ? "failed" : "error";
    await catalog.updateAudit(a.id, {
      state,
      updatedAt: Date.now(),
      findings: Array.isArray(v.findings) ? v.findings.length : null,
      ...(v.note === null ? {} : { note: v.note }),
    });
    changed++;
  }
  return changed;
}

async function report(
  inputs: ConfigInputs,
  json: boolean,
  verifier: { url: URL; token: string } | null,
): Promise<number> {
  const config = resolveRestoreConfig(inputs);
  const catalog = await openCatalog(config.catalog, {
    migrate: false,
    password: resolveMysqlPassword(inputs),
  });
  try {
    if (verifier !== null) {
      const n = await syncFromVerifier(catalog, verifier.url, verifier.token);
      if (n > 0) log(`${n} audit result(s) from the verifier recorded`);
    }
    const audits = await allPages(
      (afterId: AuditRow["id"] | undefined) =>
        catalog.audits({ limit: 500, ...(afterId === undefined ? {} : { afterId }) }),
      (a) => a.id,
    );
    const drills = await allPages(
      (afterId: DrillRow["id"] | undefined) =>
        catalog.drills({ limit: 500, ...(afterId === undefined ? {} : { afterId }) }),
      (d) => d.id,
    );
    if (json) {
      console.log(JSON.stringify({ summary: summarize(audits, drills), audits, drills }, null, 2));
    } else {
      console.log(formatReport(audits, drills));
    }
    return EXIT.ok;
  } finally {
    await catalog.close();
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
