/**
 * `coldpack-audit sample` and `report` as cron runs them, on the embedded
 * default (SQLite catalog, local vault): the binary as a subprocess, the
 * verifier binary as its peer, a real SMTP server (Debian's aiosmtpd)
 * behind the verifier. A clean sample is verified; a file deleted at the
 * source is checked against the catalog; the budget stops a sample; a wrong
 * token is refused and recorded.
 * @module
 */

import assert from "node:assert/strict";
import { SqliteCatalog } from "../adapters/catalog/sqlite.ts";
import type { AuditRow } from "../core/ports.ts";
import { startVerifier } from "./_audit_fixture.ts";
import { GlacierDouble, TEST_CREDENTIALS } from "./doubles/glacier.ts";
import { smtpTestOptions, startSmtp } from "./_smtp.ts";
import { bytesOf, put, runCmd, tempDir } from "./_helpers.ts";

const TOKEN = "sample-e2e-token-0123456789";
const options = smtpTestOptions("coldpack-audit sample e2e");

async function audits(state: string): Promise<AuditRow[]> {
  const catalog = await SqliteCatalog.open(`${state}/catalog.db`, { migrate: false });
  try {
    return await catalog.audits({ limit: 100 });
  } finally {
    await catalog.close();
  }
}

Deno.test({
  name:
    "coldpack-audit sample: every archive verified; a deleted file checked against the catalog; report",
  ...options,
}, async () => {
  const smtp = await startSmtp();
  const src = await tempDir();
  const state = await tempDir();
  const results = await tempDir();
  let verifier: Awaited<ReturnType<typeof startVerifier>> | null = null;
  try {
    for (let i = 0; i < 30; i++) await put(src.path, `u/${i}.bin`, bytesOf(i + 3, 2_000 + i * 900));
    const common = ["--source", src.path, "--state-dir", state.path];
    const backup = await runCmd("backup", [...common, "--once", "--target-size", "16KiB"]);
    assert.equal(backup.code, 0, backup.stderr);
    await Deno.remove(`${src.path}/u/4.bin`);
    verifier = await startVerifier([
      "--results",
      `${results.path}/verifier.db`,
      "--smtp",
      smtp.url,
      "--mail-to",
      "ops@example.com",
      "--poll",
      "200ms",
    ], TOKEN);
    const dry = await runCmd("audit", ["sample", "--fraction", "1", "--dry-run", ...common]);
    assert.equal(dry.code, 0, dry.stderr);
    assert.match(dry.stdout, /would audit /);
    assert.deepEqual(await audits(state.path), [], "a dry run records nothing");

    const run = await runCmd("audit", [
      "sample",
      "--fraction",
      "1",
      "--budget",
      "100%",
      "--verifier",
      verifier.base,
      ...common,
    ], { env: { COLDPACK_VERIFIER_TOKEN: TOKEN } });
    assert.equal(run.code, 0, run.stderr);
    const m = /(\d+) archive\(s\) picked of (\d+): (\d+) sent, 0 skipped \(budget\), 0 error/.exec(
      run.stdout,
    );
    assert.ok(m, run.stdout);
    assert.equal(m[1], m[2], "a fraction of 1 picks every archive");
    assert.equal(m[3], m[1]);
    assert.match(run.stderr, /\(1 from the catalog\)/, "the deleted file");
    const rows = await audits(state.path);
    assert.equal(rows.length, Number(m[1]));
    assert.ok(rows.every((r) => r.state === "sent" && r.manifestDigest !== null));
    assert.ok(rows.some((r) => /gone or replaced at the source/.test(r.note ?? "")));

    // The verifier retrieves and checks each archive: all clean, no mail.
    const v = verifier;
    const deadline = Date.now() + 60_000;
    let listed: { state: string }[] = [];
    while (Date.now() < deadline) {
      const res = await fetch(`${v.base}/audits`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      const body = await res.json();
      listed = Array.isArray(body) ? body : body.audits;
      if (listed.length === rows.length && listed.every((a) => a.state !== "waiting")) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(listed.map((a) => a.state), rows.map(() => "verified"), v.stderr());
    assert.equal(smtp.mails.length, 0);

    // report --verifier records the verifier's results in the catalog.
    const report = await runCmd("audit", ["report", "--json", "--verifier", v.base, ...common], {
      env: { COLDPACK_VERIFIER_TOKEN: TOKEN },
    });
    assert.equal(report.code, 0, report.stderr);
    const parsed = JSON.parse(report.stdout);
    assert.equal(parsed.audits.length, rows.length);
    assert.equal(parsed.summary.audits.total, rows.length);
    assert.ok(
      parsed.audits.every((a: AuditRow) => a.state === "verified" && a.findings === 0),
      report.stdout,
    );
  } finally {
    if (verifier !== null) await verifier.stop();
    await smtp.stop();
    await src.cleanup();
    await state.cleanup();
    await results.cleanup();
  }
});

Deno.test({
  name: "coldpack-audit sample: the budget skips a sample; a wrong token is refused and recorded",
  ...options,
}, async () => {
  const src = await tempDir();
  const state = await tempDir();
  const results = await tempDir();
  let verifier: Awaited<ReturnType<typeof startVerifier>> | null = null;
  try {
    for (let i = 0; i < 5; i++) await put(src.path, `f${i}`, bytesOf(i, 3_000));
    const common = ["--source", src.path, "--state-dir", state.path];
    assert.equal((await runCmd("backup", [...common, "--once"])).code, 0);
    verifier = await startVerifier(["--results", `${results.path}/v.db`], TOKEN);
    const skipped = await runCmd("audit", [
      "sample",
      "--fraction",
      "1",
      "--budget",
      "100",
      "--verifier",
      verifier.base,
      ...common,
    ], { env: { COLDPACK_VERIFIER_TOKEN: TOKEN } });
    assert.equal(skipped.code, 0, skipped.stderr);
    assert.match(skipped.stderr, /skipped the sample: retrieval budget: \d+ bytes would exceed/);
    assert.match(skipped.stdout, /1 archive\(s\) picked of 1: 0 sent, 1 skipped \(budget\)/);
    assert.deepEqual((await audits(state.path)).map((a) => a.state), ["skipped"]);

    const refused = await runCmd("audit", [
      "sample",
      "--fraction",
      "1",
      "--budget",
      "100%",
      "--verifier",
      verifier.base,
      ...common,
    ], { env: { COLDPACK_VERIFIER_TOKEN: "not-the-token-at-all" } });
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /answered 401/);
    const last = (await audits(state.path)).at(-1)!;
    assert.equal(last.state, "error");
    assert.match(last.note ?? "", /the verifier did not take the manifest: .*401/);

    const usage = await runCmd("audit", ["sample", "--fraction", "2", ...common]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /--fraction: "2" is not a fraction/);
  } finally {
    if (verifier !== null) await verifier.stop();
    await src.cleanup();
    await state.cleanup();
    await results.cleanup();
  }
});

Deno.test({
  name: "coldpack-audit sample and the verifier on a Glacier vault (the strict double): verified",
  ...options,
}, async () => {
  const glacier = await GlacierDouble.start({ vaults: ["ugc-archive"] });
  const src = await tempDir();
  const state = await tempDir();
  const results = await tempDir();
  const env = {
    AWS_ENDPOINT_URL_GLACIER: glacier.endpoint,
    AWS_REGION: glacier.region,
    AWS_ACCESS_KEY_ID: TEST_CREDENTIALS.accessKeyId,
    AWS_SECRET_ACCESS_KEY: TEST_CREDENTIALS.secretAccessKey,
  };
  let verifier: Awaited<ReturnType<typeof startVerifier>> | null = null;
  try {
    for (let i = 0; i < 6; i++) await put(src.path, `g/${i}.bin`, bytesOf(i + 40, 5_000 + i));
    const common = [
      "--source",
      src.path,
      "--state-dir",
      state.path,
      "--store",
      "glacier://us-east-1/ugc-archive",
    ];
    const backup = await runCmd("backup", [...common, "--once"], { env });
    assert.equal(backup.code, 0, backup.stderr);
    verifier = await startVerifier(
      ["--results", `${results.path}/v.db`, "--poll", "200ms"],
      TOKEN,
      env,
    );
    const run = await runCmd("audit", [
      "sample",
      "--fraction",
      "1",
      "--budget",
      "100%",
      "--verifier",
      verifier.base,
      ...common,
    ], { env: { ...env, COLDPACK_VERIFIER_TOKEN: TOKEN } });
    assert.equal(run.code, 0, run.stderr);
    assert.match(run.stdout, /1 archive\(s\) picked of 1: 1 sent/);
    const v = verifier;
    const deadline = Date.now() + 60_000;
    let states: string[] = [];
    while (Date.now() < deadline) {
      const res = await fetch(`${v.base}/audits`, {
        headers: { authorization: `Bearer ${TOKEN}` },
      });
      states = ((await res.json()).audits as { state: string }[]).map((a) => a.state);
      if (states.length === 1 && states[0] !== "waiting") break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.deepEqual(states, ["verified"], v.stderr());
  } finally {
    if (verifier !== null) await verifier.stop();
    await glacier.close();
    await src.cleanup();
    await state.cleanup();
    await results.cleanup();
  }
});
