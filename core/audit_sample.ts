/**
 * `coldpack-audit sample`, over the ports: pick a uniform random sample of
 * archives without a scan, keep within the monthly retrieval budget, md5
 * every file of each from the live source (or take the catalog's md5 when
 * the file is gone or replaced there), start a whole-archive retrieval
 * tagged `audit`, hand the manifest to the verifier, and record the audit.
 * @module
 */

import { createHash } from "node:crypto";
import {
  type AuditEntry,
  type AuditManifest,
  budgetBytes,
  type BudgetSpec,
  budgetVerdict,
  buildManifest,
  manifestDigest,
  monthStartUtc,
  type Random,
  sampleBySeq,
  sampleSize,
} from "./audit.ts";
import { ChangedError, errorMessage, VanishedError } from "./errors.ts";
import { newAuditId } from "./ids.ts";
import { startRetrieval } from "./restore.ts";
import type {
  ArchiveRow,
  Catalog,
  Clock,
  ColdStore,
  FileRow,
  Metrics,
  Source,
  Tier,
} from "./ports.ts";
import { safeEntryName } from "./safe_name.ts";

/** What a sample works with. */
export interface SampleDeps {
  readonly catalog: Catalog;
  readonly store: ColdStore;
  /** The live source; `null`: every md5 from the catalog (said in the manifest). */
  readonly source: Source | null;
  readonly clock: Clock;
  /** Random bytes (ids). */
  readonly random: (n: number) => Uint8Array;
  /** Uniform in [0, 1) (the sample). */
  readonly random01: Random;
  /** Hands a manifest to the verifier; rejects with why it was not taken. */
  readonly send: (manifest: Uint8Array, parsed: AuditManifest) => Promise<void>;
  readonly metrics: Metrics;
  readonly log: (line: string) => void;
}

/** Options of one sample. */
export interface SampleOptions {
  /** Expected sample size = archives x fraction (randomized rounding). */
  readonly fraction: number;
  /** At least this many archives (when there are so many). Default 0. */
  readonly min?: number;
  readonly budget: BudgetSpec;
  readonly tier: Tier;
  /** Pick and report only: no retrieval, nothing sent or recorded. */
  readonly dryRun?: boolean;
}

/** What one sample did. */
export interface SampleResult {
  readonly archives: number;
  readonly picked: readonly ArchiveRow[];
  /** Audits sent to the verifier. */
  readonly sent: number;
  /** Skipped by the budget (all of the sample) or failed (errors). */
  readonly skipped: number;
  readonly errors: number;
  readonly budget: { readonly spentBytes: number; readonly budgetBytes: number };
}

/** Runs one sample. Never throws for one archive's trouble: it is recorded as an `error` audit. */
export async function sampleAudits(
  deps: SampleDeps,
  options: SampleOptions,
): Promise<SampleResult> {
  const { catalog, clock, metrics, log } = deps;
  const range = await catalog.archiveSeqRange();
  const now = clock.now();
  const spentBytes = await catalog.retrievedBytesSince(monthStartUtc(now));
  const limit = range === null ? 0 : budgetBytes(options.budget, range.bytes);
  const empty = { archives: 0, picked: [], sent: 0, skipped: 0, errors: 0 };
  if (range === null) {
    log("no archives yet: nothing to audit");
    return { ...empty, budget: { spentBytes, budgetBytes: limit } };
  }
  const n = sampleSize(range.count, {
    fraction: options.fraction,
    min: options.min ?? 0,
    random: deps.random01,
  });
  const { rows: picked } = await sampleBySeq(
    range,
    n,
    (seqs) => catalog.archivesBySeq(seqs),
    { random: deps.random01 },
  );
  metrics.count("coldpack.audit.archives_picked", picked.length);
  const want = picked.reduce((s, a) => s + a.size, 0);
  const verdict = budgetVerdict(want, { spentBytes, budgetBytes: limit });
  log(
    `${range.count} archive(s), expected sample ${(range.count * options.fraction).toFixed(3)}: ` +
      `picked ${picked.length} (${want} bytes); retrieved this month ${spentBytes} of a ` +
      `${limit}-byte budget`,
  );
  const budget = { spentBytes, budgetBytes: limit };
  if (options.dryRun || picked.length === 0) {
    return { ...empty, archives: range.count, picked, budget };
  }
  if (!verdict.ok) {
    const why = `retrieval budget: ${want} bytes would exceed what is left this month ` +
      `(${verdict.remainingBytes} of ${limit} bytes)`;
    log(`skipped the sample: ${why}`);
    metrics.count("coldpack.audit.skipped_budget", picked.length);
    for (const a of picked) {
      await catalog.addAudit({
        id: newAuditId(now, deps.random(6)),
        archiveId: a.id,
        retrievalId: null,
        manifestDigest: null,
        state: "skipped",
        findings: null,
        createdAt: now,
        updatedAt: null,
        note: why,
      });
    }
    return { ...empty, archives: range.count, picked, skipped: picked.length, budget };
  }
  let sent = 0;
  let errors = 0;
  for (const a of picked) {
    const id = newAuditId(clock.now(), deps.random(6));
    try {
      await auditOne(deps, options, a, id);
      sent++;
      metrics.count("coldpack.audit.sent");
    } catch (e) {
      errors++;
      metrics.count("coldpack.audit.errors");
      log(`archive ${a.id}: ${errorMessage(e)}`);
      await catalog.addAudit({
        id,
        archiveId: a.id,
        retrievalId: null,
        manifestDigest: null,
        state: "error",
        findings: null,
        createdAt: clock.now(),
        updatedAt: null,
        note: errorMessage(e),
      });
    }
  }
  return { archives: range.count, picked, sent, skipped: 0, errors, budget };
}

async function auditOne(
  deps: SampleDeps,
  options: SampleOptions,
  archive: ArchiveRow,
  id: ReturnType<typeof newAuditId>,
): Promise<void> {
  const { catalog, store, clock, log } = deps;
  const files = await catalog.archiveFiles(archive.id);
  const entries: AuditEntry[] = [];
  let fromCatalog = 0;
  for (const f of files) {
    const live = await liveMd5(deps.source, f);
    if (live === null) fromCatalog++;
    entries.push({
      name: safeEntryName(f.key, f.domain === null ? {} : { domain: f.domain }),
      headerOffset: f.headerOffset!,
      dataOffset: f.dataOffset!,
      length: f.length,
      md5: live ?? f.md5!,
      basis: live === null ? "catalog" : "live",
    });
    if (live !== null && live !== f.md5) {
      log(
        `archive ${archive.id}: fid:${f.id} ${JSON.stringify(f.key)} reads at the source with ` +
          `md5 ${live}, the catalog says ${f.md5}: the verifier will compare the archive with the source`,
      );
    }
  }
  const retrieval = await startRetrieval(deps, {
    archiveId: archive.id,
    remoteId: archive.remoteId,
    range: null,
    tier: options.tier,
    purpose: "audit",
  });
  const { id: retrievalId, jobId, state } = retrieval;
  const now = retrieval.startedAt;
  const manifest: AuditManifest = {
    version: 1,
    auditId: id,
    archiveId: archive.id,
    store: store.location,
    remoteId: archive.remoteId,
    jobId,
    archiveSize: archive.size,
    createdAt: now,
    entries,
  };
  const bytes = buildManifest(manifest);
  const digest = manifestDigest(bytes);
  // Recorded before it is sent: a verifier that took it finds the audit known.
  await catalog.addAudit({
    id,
    archiveId: archive.id,
    retrievalId,
    manifestDigest: digest,
    state: "sent",
    findings: null,
    createdAt: now,
    updatedAt: null,
    note: fromCatalog === 0 ? null : `${fromCatalog} file(s) gone or replaced at the source: ` +
      "checked against the catalog's md5",
  });
  try {
    await deps.send(bytes, manifest);
  } catch (e) {
    await catalog.updateAudit(id, {
      state: "error",
      updatedAt: clock.now(),
      note: `the verifier did not take the manifest: ${errorMessage(e)}`,
    });
    throw e;
  }
  log(
    `archive ${archive.id}: audit ${id}, ${entries.length} file(s) (${fromCatalog} from the ` +
      `catalog), retrieval ${retrievalId} (${state}), manifest ${digest.slice(0, 12)} sent`,
  );
}

/** The md5 of a file as the source has it now, or `null` when it is gone or another version. */
async function liveMd5(source: Source | null, f: FileRow): Promise<string | null> {
  if (source === null) return null;
  let body: ReadableStream<Uint8Array>;
  try {
    body = await source.open({
      key: f.key,
      version: f.version,
      length: f.length,
      mtimeMs: f.mtimeMs,
      ...(f.domain === null ? {} : { domain: f.domain }),
      ...(f.storageClass === null ? {} : { storageClass: f.storageClass }),
      ...(f.sourceFid === null ? {} : { sourceFid: f.sourceFid }),
    });
  } catch (e) {
    if (e instanceof VanishedError || e instanceof ChangedError) return null;
    throw e;
  }
  const md5 = createHash("md5");
  try {
    for await (const chunk of body) md5.update(chunk);
  } catch (e) {
    if (e instanceof VanishedError || e instanceof ChangedError) return null;
    throw e;
  }
  return md5.digest("hex");
}
