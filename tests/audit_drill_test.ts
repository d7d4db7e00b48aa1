/**
 * The monthly restore drill: `coldpack-audit drill` end to end on the
 * embedded default (files restored and found byte-identical on the next
 * run), and core/audit_drill.ts on real adapters with a clock the test
 * moves: a drill whose retrievals never finish alerts once its window has
 * passed, with exactly one mail to a real SMTP server (aiosmtpd), and not
 * again.
 * @module
 */

import assert from "node:assert/strict";
import { randomBytes, systemClock } from "../adapters/clock.ts";
import { SpoolFetcher } from "../adapters/fetch/spool_fetcher.ts";
import { SmtpMailer } from "../adapters/audit/mailer.ts";
import { DestResolver } from "../adapters/restore_dest.ts";
import { LocalVault } from "../adapters/store/local_vault.ts";
import { runBackup } from "../core/backup.ts";
import { runDrill } from "../core/audit_drill.ts";
import { InlinePacker } from "../core/pack.ts";
import { noMetrics } from "../core/ports.ts";
import { prng } from "../core/prng.ts";
import { ManualClock } from "./doubles/s3_archive.ts";
import { smtpTestOptions, startSmtp } from "./_smtp.ts";
import { bytesOf, localRig, put, readTree, runCmd, tempDir } from "./_helpers.ts";

const HOUR = 3_600_000;

Deno.test("coldpack-audit drill: restores random files to the test destination; the next run finds them byte-identical", async () => {
  const src = await tempDir();
  const state = await tempDir();
  const out = await tempDir();
  try {
    const files = new Map<string, Uint8Array>();
    for (let i = 0; i < 20; i++) files.set(`d/${i}.bin`, bytesOf(i + 11, 1_500 + i * 700));
    for (const [k, v] of files) await put(src.path, k, v);
    const common = ["--source", src.path, "--state-dir", state.path];
    assert.equal((await runCmd("backup", [...common, "--once", "--target-size", "8KiB"])).code, 0);
    const first = await runCmd("audit", [
      "drill",
      "--files",
      "5",
      "--dest",
      `${out.path}/`,
      ...common,
    ]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /drill: 5 file\(s\) started; earlier drills: 0 ok/);
    // One folder per drill below the destination, each file at its key.
    const written = await readTree(out.path);
    assert.equal(written.size, 5);
    for (const [path, bytes] of written) {
      const key = path.split("/").slice(1).join("/");
      assert.deepEqual(bytes, files.get(key), path);
    }
    const second = await runCmd("audit", [
      "drill",
      "--files",
      "0",
      ...common,
      "--dest",
      `${out.path}/`,
    ]);
    assert.equal(second.code, 0, second.stderr);
    assert.match(
      second.stdout,
      /drill: 0 file\(s\) started; earlier drills: 5 ok, 0 pending, 0 failed/,
    );
    const report = await runCmd("audit", ["report", "--json", ...common]);
    const parsed = JSON.parse(report.stdout);
    assert.deepEqual(parsed.summary.drills.byState, { pending: 0, ok: 5, failed: 0, alerted: 0 });
  } finally {
    await src.cleanup();
    await state.cleanup();
    await out.cleanup();
  }
});

Deno.test({
  name: "drill: retrievals that never finish alert after the window, one mail, not twice",
  ...smtpTestOptions("audit drill"),
}, async () => {
  const r = await localRig();
  const smtp = await startSmtp();
  const out = await tempDir();
  const clock = new ManualClock(Date.UTC(2026, 10, 1));
  // The vault's retrievals take 48 h on the test's clock: longer than the drill's 24 h.
  const slow = await LocalVault.open(`${r.state}/vault`, {
    retrievalDelayMs: 48 * HOUR,
    now: () => clock.now(),
  });
  const resolver = new DestResolver({ source: null, roots: null });
  const mailer = SmtpMailer.open(smtp.url, { from: "coldpack@test", to: ["ops@example.com"] });
  try {
    for (let i = 0; i < 8; i++) await put(r.src, `f/${i}`, bytesOf(i, 4_000));
    const packer = new InlinePacker(await SpoolFetcher.open(r.source, `${r.state}/spool`));
    await runBackup({
      source: r.source,
      packer,
      store: r.store,
      catalog: r.catalog,
      clock: systemClock,
      random: randomBytes,
    }, { once: true, targetSize: 8 * 1024 });
    await packer.close();
    const deps = {
      catalog: r.catalog,
      store: slow,
      clock,
      random: randomBytes,
      random01: prng(7),
      resolve: resolver.resolve.bind(resolver),
      alert: (subject: string, text: string) => mailer.send({ subject, text }),
      metrics: noMetrics,
      log: () => {},
    };
    const options = {
      files: 3,
      dests: [`${out.path}/`],
      windowMs: 24 * HOUR,
      tier: "Standard" as const,
    };
    const started = await runDrill(deps, options);
    assert.equal(started.started, 3);
    clock.advance(23 * HOUR);
    const early = await runDrill(deps, { ...options, files: 0 });
    assert.deepEqual(early, { started: 0, ok: 0, pending: 3, failed: 0, alerted: 0 });
    assert.equal(smtp.mails.length, 0);
    clock.advance(2 * HOUR);
    const late = await runDrill(deps, { ...options, files: 0 });
    assert.deepEqual(late, { started: 0, ok: 0, pending: 0, failed: 3, alerted: 3 });
    const [mail] = await smtp.waitFor(1);
    assert.match(mail!.subject, /coldpack drill: 3 file\(s\) not restored in time/);
    assert.match(mail!.body, /not restored byte-identical within 24 h/);
    const again = await runDrill(deps, { ...options, files: 0 });
    assert.deepEqual(again, { started: 0, ok: 0, pending: 0, failed: 0, alerted: 0 });
    assert.equal(smtp.mails.length, 1, "one mail, not one per run");
    const drills = await r.catalog.drills({ limit: 10 });
    assert.deepEqual(drills.map((d) => d.state), ["alerted", "alerted", "alerted"]);
  } finally {
    await mailer.close();
    await resolver.close();
    await slow.close();
    await smtp.stop();
    await out.cleanup();
    await r.cleanup();
  }
});
