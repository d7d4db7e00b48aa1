/**
 * `coldpack-audit-verifier` as a subprocess: archives backed up by the real
 * backup into local vaults, one corrupted on disk; manifests POSTed over
 * HTTP; mail received by a real SMTP server (aiosmtpd); SIGTERM; a restart
 * on the same results file.
 * @module
 */

import assert from "node:assert/strict";
import { auditCase, backUpOnce, flipByte, startVerifier } from "./_audit_fixture.ts";
import { smtpTestOptions, startSmtp } from "./_smtp.ts";
import { runCmd, tempDir } from "./_helpers.ts";

const TOKEN = "e2e-token-0123456789abcdef";
const options = smtpTestOptions("audit verifier e2e");

function startDaemon(args: string[]) {
  return startVerifier(args, TOKEN);
}

function auth(): HeadersInit {
  return { authorization: `Bearer ${TOKEN}` };
}

Deno.test({
  name: "audit verifier binary: --help, bad flags and a missing token",
  ...options,
}, async () => {
  const help = await runCmd("audit_verifier", ["--help"]);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /POST \/manifests/);
  assert.match(help.stdout, /Exit codes:/);
  const bad = await runCmd("audit_verifier", ["--frobnicate"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /frobnicate/);
  const noToken = await runCmd("audit_verifier", ["--results", "/nonexistent/x.db"], {
    env: { COLDPACK_VERIFIER_TOKEN: "" },
  });
  assert.equal(noToken.code, 2);
  assert.match(noToken.stderr, /COLDPACK_VERIFIER_TOKEN: not set/);
  const badListen = await runCmd("audit_verifier", ["--listen", "nowhere"], {
    env: { COLDPACK_VERIFIER_TOKEN: TOKEN },
  });
  assert.equal(badListen.code, 2);
  assert.match(badListen.stderr, /--listen: expected HOST:PORT/);
  const mailToAlone = await runCmd("audit_verifier", ["--mail-to", "a@b.test"], {
    env: { COLDPACK_VERIFIER_TOKEN: TOKEN },
  });
  assert.equal(mailToAlone.code, 2);
  assert.match(mailToAlone.stderr, /--mail-to: needs --smtp/);
});

Deno.test({
  name: "audit verifier binary: a clean and a corrupted archive, one mail, SIGTERM, restart",
  ...options,
}, async () => {
  const backed = await backUpOnce();
  const dir = await tempDir();
  const smtp = await startSmtp();
  const clean = await auditCase(backed, { retrievalDelayMs: 0 });
  const bad = await auditCase(backed, { retrievalDelayMs: 0 });
  const results = `${dir.path}/results.db`;
  const args = [
    "--results",
    results,
    "--smtp",
    smtp.url,
    "--mail-to",
    "ops@example.test",
    "--mail-from",
    "verifier@example.test",
    "--poll",
    "1h",
  ];
  try {
    const victim = backed.entries[4]!;
    await flipByte(bad.tarPath, victim.dataOffset + 1);
    const good = await clean.start();
    const broken = await bad.start();

    const daemon = await startDaemon(args);
    let stopped = false;
    try {
      const health = await fetch(`${daemon.base}/health`);
      assert.equal((await health.json()).status, "running");
      const anonymous = await fetch(`${daemon.base}/manifests`, {
        method: "POST",
        body: good.bytes.slice(),
      });
      assert.equal(anonymous.status, 401);
      await anonymous.body?.cancel();
      for (const m of [good, broken]) {
        const r = await fetch(`${daemon.base}/manifests`, {
          method: "POST",
          body: m.bytes.slice(),
          headers: auth(),
        });
        assert.equal(r.status, 202, await r.clone().text());
        await r.body?.cancel();
      }
      const mails = await smtp.waitFor(1);
      // Both checked (a new manifest is looked at at once, not at the next --poll).
      let audits: { auditId: string; state: string; findings: { kind: string }[] }[] = [];
      for (let i = 0; i < 600; i++) {
        audits = (await (await fetch(`${daemon.base}/audits`, { headers: auth() })).json()).audits;
        if (audits.every((a) => a.state !== "waiting")) break;
        await new Promise((r) => setTimeout(r, 50));
      }
      const state = new Map(audits.map((a) => [a.auditId, a]));
      assert.equal(state.get(good.auditId)?.state, "verified");
      assert.equal(state.get(broken.auditId)?.state, "failed");
      assert.deepEqual(state.get(broken.auditId)?.findings.map((f) => f.kind), ["md5-mismatch"]);
      assert.equal(mails.length, 1);
      assert.match(mails[0]!.subject, new RegExp(`archive ${backed.archive.id}`));
      assert.ok(mails[0]!.body.includes(victim.name), mails[0]!.body);

      const code = await daemon.stop();
      stopped = true;
      assert.equal(code, 0, daemon.stderr());
      assert.match(daemon.stderr(), /stopped by SIGTERM/);
    } finally {
      if (!stopped) await daemon.stop();
    }

    const again = await startDaemon(args);
    try {
      const one = await fetch(`${again.base}/audits/${broken.auditId}`, { headers: auth() });
      const a = await one.json();
      assert.equal(a.state, "failed", "results survive a restart");
      assert.notEqual(a.mailSentAt, null);
      assert.match(again.stderr(), /1 verified, 1 failed/);
    } finally {
      assert.equal(await again.stop(), 0);
    }
    assert.equal(smtp.mails.length, 1, "no mail sent twice after the restart");
  } finally {
    await smtp.stop();
    await clean.cleanup();
    await bad.cleanup();
    await dir.cleanup();
    await backed.cleanup();
  }
});
