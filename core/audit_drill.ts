/**
 * `coldpack-audit drill`, over the ports: check the drills of earlier runs
 * (restored byte-identical within the window? else one alert mail), then
 * start a new one: random archived files restored through the normal
 * restore path (core/restore.ts) to test destinations.
 * @module
 */

import { createHash } from "node:crypto";
import { judgeDrill, pickDrillFiles, type Random, sampleBySeq } from "./audit.ts";
import { errorMessage } from "./errors.ts";
import { allPages } from "./paging.ts";
import { type FileId, newDrillId } from "./ids.ts";
import type { Catalog, DrillRow, FileRow, Metrics, RestoreRow, Tier } from "./ports.ts";
import {
  completeRestores,
  requestRestores,
  type ResolvedDest,
  type RestoreDeps,
} from "./restore.ts";

/** What a drill works with. */
export interface DrillDeps extends RestoreDeps {
  /** Uniform in [0, 1). */
  readonly random01: Random;
  /** Where a drill restore is written (the same resolution as the restore tools). */
  readonly resolve: (restore: RestoreRow, file: FileRow) => Promise<ResolvedDest>;
  /** Sends the alert mail; rejects when it could not (the drills stay `failed`, tried next run). */
  readonly alert: (subject: string, text: string) => Promise<void>;
  readonly metrics: Metrics;
  readonly log: (line: string) => void;
}

/** Options of one drill run. */
export interface DrillOptions {
  /** Files in a new drill (default 10); 0: only check earlier drills. */
  readonly files: number;
  /** Test destinations (each a directory or prefix DEST, ending in `/`); files go round them. */
  readonly dests: readonly string[];
  /** A drill must be restored byte-identical within this (default 24 h). */
  readonly windowMs: number;
  readonly tier: Tier;
}

/** What one run did. */
export interface DrillResult {
  readonly started: number;
  readonly ok: number;
  readonly pending: number;
  /** Drills found failed or late this run (alerted, or to be alerted). */
  readonly failed: number;
  readonly alerted: number;
}

/** Checks earlier drills, alerts on failures, starts a new drill. */
export async function runDrill(deps: DrillDeps, options: DrillOptions): Promise<DrillResult> {
  const { catalog, clock, log, metrics } = deps;
  const open = await allDrills(catalog, ["pending", "failed"]);
  // Give restores a chance to finish here (the embedded default has no listener).
  if (open.length > 0) {
    await completeRestores(deps, {
      resolve: deps.resolve,
      ids: open.map((d) => d.restoreId),
    });
  }
  let ok = 0;
  let pending = 0;
  const toAlert: { drill: DrillRow; reason: string }[] = [];
  for (const d of open) {
    const restore = (await catalog.restores({ limit: 1, afterId: d.restoreId - 1 }))[0];
    const file = await catalog.file(d.fileId);
    if (restore === undefined || restore.id !== d.restoreId || file === null) {
      toAlert.push({ drill: d, reason: "its restore or file is no longer in the catalog" });
      continue;
    }
    if (d.state === "failed") {
      toAlert.push({ drill: d, reason: d.note ?? "failed" });
      continue;
    }
    let identical: boolean | null = null;
    if (restore.state === "done") {
      try {
        identical = await holdsOriginal(deps, restore, file);
      } catch (e) {
        log(`drill ${d.id}: cannot read back fid:${file.id} at ${d.dest}: ${errorMessage(e)}`);
      }
    }
    const verdict = judgeDrill(
      {
        startedAt: d.startedAt,
        restoreState: restore.state === "pending"
          ? "pending"
          : restore.state === "done"
          ? "done"
          : "failed",
        finishedAt: restore.finishedAt,
        identical,
      },
      clock.now(),
      { windowMs: options.windowMs },
    );
    if (verdict.state === "ok") {
      ok++;
      await catalog.updateDrill(d.id, {
        state: "ok",
        checkedAt: clock.now(),
        note: verdict.reason,
      });
    } else if (verdict.state === "pending") {
      pending++;
      await catalog.updateDrill(d.id, { state: "pending", checkedAt: clock.now() });
    } else {
      const reason = restore.state === "failed" && restore.note !== null
        ? `${verdict.reason}: ${restore.note}`
        : verdict.reason;
      await catalog.updateDrill(d.id, { state: "failed", checkedAt: clock.now(), note: reason });
      toAlert.push({ drill: d, reason });
    }
  }
  metrics.count("coldpack.audit.drill_ok", ok);
  metrics.count("coldpack.audit.drill_failed", toAlert.length);
  let alerted = 0;
  if (toAlert.length > 0) {
    const text = [
      `${toAlert.length} drill file(s) were not restored byte-identical in time:`,
      "",
      ...toAlert.map(({ drill, reason }) =>
        `- drill ${drill.id}: fid:${drill.fileId} -> ${drill.dest} (restore ${drill.restoreId}, ` +
        `started ${new Date(drill.startedAt).toISOString()}): ${reason}`
      ),
      "",
      "See: coldpack-restore status ID (each restore), coldpack-audit report.",
    ].join("\n");
    try {
      await deps.alert(`coldpack drill: ${toAlert.length} file(s) not restored in time`, text);
      for (const { drill, reason } of toAlert) {
        await catalog.updateDrill(drill.id, {
          state: "alerted",
          checkedAt: clock.now(),
          note: reason,
        });
      }
      alerted = toAlert.length;
      log(`alerted: ${toAlert.length} drill file(s) not restored in time`);
    } catch (e) {
      log(`could not send the drill alert (tried again next run): ${errorMessage(e)}`);
    }
  }
  const started = options.files > 0 ? await startDrill(deps, options) : 0;
  return { started, ok, pending, failed: toAlert.length, alerted };
}

async function startDrill(deps: DrillDeps, options: DrillOptions): Promise<number> {
  const { catalog, clock, log } = deps;
  if (options.dests.length === 0) {
    throw new RangeError("A drill needs at least one test destination");
  }
  const range = await catalog.archiveSeqRange();
  if (range === null) {
    log("no archives yet: no drill");
    return 0;
  }
  const { rows: archives } = await sampleBySeq(
    range,
    options.files,
    (seqs) => catalog.archivesBySeq(seqs),
    { random: deps.random01 },
  );
  const groups: FileRow[][] = [];
  for (const a of archives) groups.push(await catalog.archiveFiles(a.id));
  const files = pickDrillFiles(groups, options.files, {
    random: deps.random01,
    eligible: (f) => f.state === "archived",
  });
  if (files.length === 0) return 0;
  const now = clock.now();
  const ids = files.map(() => newDrillId(now, deps.random(6)));
  const requests = files.map((f, i) => ({
    key: `drill:${ids[i]}`,
    fileId: f.id as FileId,
    dest: `${options.dests[i % options.dests.length]}${ids[0]}/`,
  }));
  const { restores } = await requestRestores(deps, requests, {
    requestedBy: "drill",
    tier: options.tier,
  });
  for (let i = 0; i < files.length; i++) {
    const r = restores[i]!;
    await catalog.addDrill({
      id: ids[i]!,
      restoreId: r.id,
      fileId: files[i]!.id,
      dest: r.dest,
      startedAt: now,
      checkedAt: null,
      state: "pending",
      note: null,
    });
  }
  await completeRestores(deps, { resolve: deps.resolve, ids: restores.map((r) => r.id) });
  log(
    `drill ${ids[0]}: ${files.length} file(s) from ${archives.length} archive(s) to ` +
      `${options.dests.join(", ")}; checked on later runs (window ${
        options.windowMs / 3_600_000
      } h)`,
  );
  return files.length;
}

/** Whether the restore's destination holds exactly the file's bytes. */
async function holdsOriginal(
  deps: DrillDeps,
  restore: RestoreRow,
  file: FileRow,
): Promise<boolean> {
  const { destination, write } = await deps.resolve(restore, file);
  const body = await destination.read(
    write.key,
    write.domain === undefined ? {} : { domain: write.domain },
  );
  if (body === null) return false;
  const md5 = createHash("md5");
  let n = 0;
  for await (const chunk of body) {
    n += chunk.length;
    md5.update(chunk);
  }
  return n === file.length && md5.digest("hex") === file.md5;
}

function allDrills(
  catalog: Catalog,
  states: readonly DrillRow["state"][],
): Promise<DrillRow[]> {
  return allPages(
    (afterId: DrillRow["id"] | undefined) =>
      catalog.drills({ limit: 500, states, ...(afterId === undefined ? {} : { afterId }) }),
    (d) => d.id,
  );
}
