/**
 * The audit verifier in process: its HTTP API over real HTTP, a real local
 * vault (archives backed up by the real backup, corrupted on disk), a real
 * SMTP server (aiosmtpd) and its SQLite results file.
 * @module
 */

import assert from "node:assert/strict";
import { AuditResults } from "../adapters/audit/results.ts";
import { SmtpMailer } from "../adapters/audit/mailer.ts";
import { AuditVerifier } from "../adapters/audit/verifier.ts";
import { digestTar } from "../adapters/audit/tar_digest.ts";
import { PortError } from "../core/errors.ts";
import type { ColdStore } from "../core/ports.ts";
import {
  type AuditCase,
  auditCase,
  type BackedUp,
  backUpOnce,
  flipByte,
  renameEntry,
} from "./_audit_fixture.ts";
import { lazyPeer } from "./_mariadb.ts";
import { type SmtpServer, smtpTestOptions, startSmtp } from "./_smtp.ts";
import { bytesOf, tempDir } from "./_helpers.ts";
import { createHash } from "node:crypto";
import { planTar } from "../core/tar.ts";

const TOKEN = "test-token-0123456789abcdef";
const options = smtpTestOptions("audit verifier");
const backup = lazyPeer<BackedUp & { stop(): Promise<void> }>(async () => {
  const b = await backUpOnce();
  return { ...b, stop: () => b.cleanup() };
});

interface Rig {
  readonly verifier: AuditVerifier;
  readonly results: AuditResults;
  readonly smtp: SmtpServer;
  readonly c: AuditCase;
  readonly resultsPath: string;
  /** The verifier's clock (ms), which the test moves. */
  now: number;
  post(bytes: Uint8Array | string, token?: string | null): Promise<Response>;
  get(path: string): Promise<Response>;
  /** Waits until a whole check pass started after this call has finished. */
  settle(): Promise<void>;
  restart(): Promise<Rig>;
  stop(): Promise<void>;
}

async function withRig(
  setup: {
    retrievalDelayMs?: number;
    readyTimeoutMs?: number;
    vaultNow?: () => number;
    /** The SMTP URL before the first restart (default the real server). */
    firstSmtpUrl?: string;
  },
  fn: (rig: Rig) => Promise<void>,
): Promise<void> {
  const backed = await backup.get();
  const dir = await tempDir();
  const smtp = await startSmtp();
  const c = await auditCase(backed, {
    ...(setup.retrievalDelayMs === undefined ? {} : { retrievalDelayMs: setup.retrievalDelayMs }),
    ...(setup.vaultNow === undefined ? {} : { now: setup.vaultNow }),
  });
  const resultsPath = `${dir.path}/results.db`;
  let current: Rig | null = null;
  async function open(): Promise<Rig> {
    const results = AuditResults.open(resultsPath);
    const url = current === null ? setup.firstSmtpUrl ?? smtp.url : smtp.url;
    const mailer = SmtpMailer.open(url, {
      from: "verifier@example.test",
      to: ["ops@example.test", "oncall@example.test"],
      timeoutMs: 5_000,
    });
    const rig: Rig = {
      now: current?.now ?? Date.now(),
    } as Rig;
    const verifier = await AuditVerifier.start({
      token: TOKEN,
      results,
      port: 0,
      stores: [c.vault as ColdStore],
      mailer,
      pollMs: 60_000,
      readyTimeoutMs: setup.readyTimeoutMs ?? 3_600_000,
      clock: { now: () => rig.now },
    });
    const base = `http://127.0.0.1:${verifier.port}`;
    const stop = async () => {
      await verifier.stop();
      await mailer.close();
      results.close();
    };
    Object.assign(rig, {
      verifier,
      results,
      smtp,
      c,
      resultsPath,
      post: (bytes: Uint8Array | string, token: string | null = TOKEN) =>
        fetch(`${base}/manifests`, {
          method: "POST",
          body: typeof bytes === "string" ? bytes : bytes.slice(),
          headers: token === null ? {} : { authorization: `Bearer ${token}` },
        }),
      get: (path: string) =>
        fetch(`${base}${path}`, { headers: { authorization: `Bearer ${TOKEN}` } }),
      async settle() {
        const p = verifier.passes;
        verifier.wake();
        while (verifier.passes < p + 2) {
          await new Promise((r) => setTimeout(r, 10));
          verifier.wake();
        }
      },
      async restart() {
        await stop();
        return current = await open();
      },
      stop,
    });
    return current = rig;
  }
  try {
    await fn(await open());
  } finally {
    await (current as Rig | null)?.stop();
    await smtp.stop();
    await c.cleanup();
    await dir.cleanup();
  }
}

async function audit(rig: Rig, id: string): Promise<Record<string, unknown>> {
  const r = await rig.get(`/audits/${id}`);
  assert.equal(r.status, 200);
  return await r.json();
}

async function postAndSettle(rig: Rig, bytes: Uint8Array): Promise<void> {
  const r = await rig.post(bytes);
  assert.equal(r.status, 202, await r.clone().text());
  await r.body?.cancel();
  await rig.settle();
}

function kinds(a: Record<string, unknown>): string[] {
  return (a.findings as { kind: string }[]).map((f) => f.kind);
}

Deno.test({
  name: "verifier: a clean archive is verified and no mail is sent",
  ...options,
}, async () => {
  await withRig({}, async (rig) => {
    const m = await rig.c.start();
    await postAndSettle(rig, m.bytes);
    const a = await audit(rig, m.auditId);
    assert.equal(a.state, "verified", JSON.stringify(a));
    assert.deepEqual(a.findings, []);
    assert.equal(a.entries, rig.c.entries.length);
    assert.equal(a.mailSentAt, null);
    assert.equal(rig.smtp.mails.length, 0);
    const health = await (await fetch(`http://127.0.0.1:${rig.verifier.port}/health`)).json();
    assert.equal(health.verified, 1);
  });
});

Deno.test({
  name: "verifier: a flipped byte is an md5-mismatch and exactly one mail",
  ...options,
}, async () => {
  await withRig({}, async (rig) => {
    const victim = rig.c.entries[3]!;
    await flipByte(rig.c.tarPath, victim.dataOffset + 100);
    const m = await rig.c.start();
    await postAndSettle(rig, m.bytes);
    const a = await audit(rig, m.auditId);
    assert.equal(a.state, "failed");
    assert.deepEqual(kinds(a), ["md5-mismatch"]);
    const f = (a.findings as { name: string; expected: string }[])[0]!;
    assert.equal(f.name, victim.name);
    assert.equal(f.expected, victim.md5);
    const mails = await rig.smtp.waitFor(1);
    await rig.settle();
    assert.equal(rig.smtp.mails.length, 1, "exactly one mail");
    const mail = mails[0]!;
    assert.deepEqual(mail.to, ["ops@example.test", "oncall@example.test"]);
    assert.match(mail.subject, new RegExp(`archive ${rig.c.archive.id}`));
    assert.match(mail.subject, /FAILED.*md5-mismatch/);
    assert.ok(mail.body.includes(`md5-mismatch: `), mail.body);
    assert.ok(mail.body.includes(victim.name), mail.body);
    assert.ok(mail.body.includes(`Store:      ${rig.c.vault.location}`), mail.body);
    assert.ok(mail.body.includes(`tar -xOf ${rig.c.tarPath} ${victim.name}`), mail.body);
    assert.notEqual((await audit(rig, m.auditId)).mailSentAt, null);
  });
});

Deno.test({
  name: "verifier: a truncated archive is an unreadable-tar with the offset",
  ...options,
}, async () => {
  await withRig({}, async (rig) => {
    const victim = rig.c.entries[5]!;
    await Deno.truncate(rig.c.tarPath, victim.dataOffset + 10);
    const m = await rig.c.start();
    await postAndSettle(rig, m.bytes);
    const a = await audit(rig, m.auditId);
    assert.equal(a.state, "failed");
    assert.deepEqual(kinds(a), ["unreadable-tar"]);
    const f = (a.findings as { actual: number; detail: string }[])[0]!;
    assert.equal(f.actual, victim.headerOffset, "reading failed in the victim's entry");
    assert.match(f.detail, /Truncated tar/);
    await rig.smtp.waitFor(1);
    await rig.settle();
    assert.equal(rig.smtp.mails.length, 1);
    assert.match(rig.smtp.mails[0]!.subject, /unreadable-tar/);
  });
});

Deno.test({
  name: "verifier: a replaced entry is a missing-entry plus an extra-entry",
  ...options,
}, async () => {
  await withRig({}, async (rig) => {
    const victim = rig.c.entries[2]!;
    await renameEntry(rig.c.tarPath, victim.dataOffset - 512, "photos/intruder.jpg");
    const m = await rig.c.start();
    await postAndSettle(rig, m.bytes);
    const a = await audit(rig, m.auditId);
    assert.equal(a.state, "failed");
    assert.deepEqual(kinds(a), ["missing-entry", "extra-entry"]);
    const [missing, extra] = a.findings as { name: string }[];
    assert.equal(missing!.name, victim.name);
    assert.equal(extra!.name, "photos/intruder.jpg");
    await rig.smtp.waitFor(1);
    await rig.settle();
    assert.equal(rig.smtp.mails.length, 1);
  });
});

Deno.test({
  name: "verifier: a length the archive does not have is a size-mismatch",
  ...options,
}, async () => {
  await withRig({}, async (rig) => {
    const entries = rig.c.entries.map((e, i) => i === 1 ? { ...e, length: e.length + 1 } : e);
    const m = await rig.c.start({ entries });
    await postAndSettle(rig, m.bytes);
    const a = await audit(rig, m.auditId);
    assert.deepEqual(kinds(a), ["size-mismatch"]);
    const f = (a.findings as { expected: number; actual: number }[])[0]!;
    assert.equal(f.expected, rig.c.entries[1]!.length + 1);
    assert.equal(f.actual, rig.c.entries[1]!.length);
  });
});

Deno.test({
  name: "verifier: 401 without or with a wrong token, 400 for malformed, 409 for a clash",
  ...options,
}, async () => {
  await withRig({}, async (rig) => {
    const m = await rig.c.start();
    for (const token of [null, "wrong-token-0123456789abcdef", TOKEN.slice(0, -1)]) {
      const r = await rig.post(m.bytes, token);
      assert.equal(r.status, 401);
      assert.match(r.headers.get("www-authenticate") ?? "", /^Bearer/);
      await r.body?.cancel();
    }
    const list = await fetch(`http://127.0.0.1:${rig.verifier.port}/audits`);
    assert.equal(list.status, 401);
    await list.body?.cancel();

    const notJson = await rig.post("{not json");
    assert.equal(notJson.status, 400);
    assert.match((await notJson.json()).error, /Malformed manifest: .*JSON/);
    const text = new TextDecoder().decode(m.bytes);
    const badMd5 = await rig.post(text.replace(/"md5":"[0-9a-f]{32}"/, '"md5":"xyz"'));
    assert.equal(badMd5.status, 400);
    assert.match((await badMd5.json()).error, /entries\[0\]\.md5/);
    const otherStore = await rig.post(
      text.replace(rig.c.vault.location, "file:///somewhere/else"),
    );
    assert.equal(otherStore.status, 400);
    assert.match((await otherStore.json()).error, /file:\/\/\/somewhere\/else is not one/);

    const first = await rig.post(m.bytes);
    assert.equal(first.status, 202);
    assert.equal((await first.json()).auditId, m.auditId);
    const again = await rig.post(m.bytes);
    assert.equal(again.status, 200, "the same manifest again is accepted once");
    await again.body?.cancel();
    const clash = await rig.post(text.replace(/"createdAt":\d+/, '"createdAt":1'));
    assert.equal(clash.status, 409);
    assert.match((await clash.json()).error, new RegExp(`Audit ${m.auditId} already has`));
    const all = await (await rig.get("/audits")).json();
    assert.equal(all.audits.length, 1);
  });
});

Deno.test({
  name: "verifier: results and waiting audits survive a restart",
  ...options,
}, async () => {
  let vaultNow = Date.now();
  await withRig({ retrievalDelayMs: 3_600_000, vaultNow: () => vaultNow }, async (rig) => {
    const done = await rig.c.start();
    vaultNow += 3_600_001;
    await postAndSettle(rig, done.bytes);
    assert.equal((await audit(rig, done.auditId)).state, "verified");
    const later = await rig.c.start();
    await postAndSettle(rig, later.bytes);
    assert.equal((await audit(rig, later.auditId)).state, "waiting", "retrieval in progress");

    const rig2 = await rig.restart();
    assert.equal((await audit(rig2, done.auditId)).state, "verified");
    assert.equal((await audit(rig2, later.auditId)).state, "waiting");
    vaultNow += 3_600_001;
    await rig2.settle();
    assert.equal((await audit(rig2, later.auditId)).state, "verified");
    const waiting = await (await rig2.get("/audits?state=waiting")).json();
    assert.equal(waiting.audits.length, 0);
  });
});

Deno.test({
  name: "verifier: a retrieval not ready after the ready timeout gets exactly one mail",
  ...options,
}, async () => {
  await withRig({ retrievalDelayMs: 100 * 3_600_000, readyTimeoutMs: 3_600_000 }, async (rig) => {
    const m = await rig.c.start();
    await postAndSettle(rig, m.bytes);
    assert.equal(rig.smtp.mails.length, 0, "not yet overdue");
    rig.now += 3_600_000;
    await rig.settle();
    const mails = await rig.smtp.waitFor(1);
    rig.now += 3_600_000;
    await rig.settle();
    assert.equal(rig.smtp.mails.length, 1, "one mail, not one per poll");
    assert.match(mails[0]!.subject, new RegExp(`archive ${rig.c.archive.id}: retrieval not ready`));
    const a = await audit(rig, m.auditId);
    assert.equal(a.state, "waiting");
    assert.notEqual(a.overdueMailAt, null);
  });
});

Deno.test({
  name: "verifier: a mail the SMTP server did not take is owed, and sent after a restart",
  ...options,
}, async () => {
  const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const deadPort = (closed.addr as Deno.NetAddr).port;
  closed.close();
  const dead = `smtp://127.0.0.1:${deadPort}`;
  await withRig({ firstSmtpUrl: dead }, async (rig) => {
    await flipByte(rig.c.tarPath, rig.c.entries[0]!.dataOffset);
    const m = await rig.c.start();
    await postAndSettle(rig, m.bytes);
    assert.equal((await audit(rig, m.auditId)).state, "failed");
    assert.deepEqual(rig.results.mailsDue().map((a) => a.auditId), [m.auditId]);
    assert.equal(rig.smtp.mails.length, 0);
    const rig2 = await rig.restart();
    await rig2.settle();
    await rig2.smtp.waitFor(1);
    assert.equal(rig2.results.mailsDue().length, 0);
    await rig2.settle();
    assert.equal(rig2.smtp.mails.length, 1);
  });
  const mailer = SmtpMailer.open(dead, { from: "a@b.test", to: ["c@d.test"], timeoutMs: 5_000 });
  try {
    await assert.rejects(mailer.send({ subject: "x", text: "y" }), (e: unknown) => {
      assert.ok(e instanceof PortError, String(e));
      // Deno's sockets surface a refused connection as nodemailer's ESOCKET.
      assert.equal(e.code, "ESOCKET", e.message);
      assert.equal(e.retryable, true);
      assert.match(e.message, new RegExp(`Cannot send mail through ${dead}: .*ECONNREFUSED`));
      return true;
    });
  } finally {
    await mailer.close();
  }
});

Deno.test("verifier: digestTar md5s every entry of a tar read in odd-sized chunks", async () => {
  const backed = await backup.get();
  const tar = await Deno.readFile(`${backed.vault}/${backed.archive.remoteId}`);
  const chunks: Uint8Array[] = [];
  for (let i = 0; i < tar.length; i += 777) chunks.push(tar.subarray(i, i + 777));
  const stream = ReadableStream.from(chunks);
  const d = await digestTar(stream);
  assert.equal(d.unreadable, undefined);
  const byName = new Map(d.entries.map((e) => [e.name, e]));
  for (const e of backed.entries) {
    assert.equal(byName.get(e.name)?.md5, e.md5, e.name);
    assert.equal(byName.get(e.name)?.size, e.length, e.name);
  }
});

Deno.test("verifier: digestTar gives the same digests when its md5 thread does the hashing", async () => {
  // A tar of several MiB with entries of many sizes, built in memory.
  const sizes = [0, 1, 511, 512, 513, 70_000, 1_048_576, 1_048_577, 3_000_001, 200, 2_500_000];
  const entries = sizes.map((n, i) => ({ name: `e/${i}.bin`, data: bytesOf(i + 101, n) }));
  const plan = planTar(entries.map((e) => ({ name: e.name, size: e.data.length, mtimeMs: 0 })));
  const tar = new Uint8Array(plan.totalSize);
  plan.entries.forEach((p, i) => {
    tar.set(p.header, p.headerOffset);
    tar.set(entries[i]!.data, p.dataOffset);
  });
  const expected = entries.map((e) => createHash("md5").update(e.data).digest("hex"));
  const digest = async (chunk: number) => {
    const chunks: Uint8Array[] = [];
    for (let i = 0; i < tar.length; i += chunk) chunks.push(tar.subarray(i, i + chunk));
    return await digestTar(ReadableStream.from(chunks));
  };
  const first = await digest(1_048_576);
  // The worker starts with the first call: the next ones find it ready.
  await new Promise((r) => setTimeout(r, 150));
  for (const chunk of [777, 65_536, 3_145_728]) {
    const d = await digest(chunk);
    assert.deepEqual(d, first, `chunks of ${chunk}`);
  }
  assert.deepEqual(first.entries.map((e) => e.md5), expected);
  assert.deepEqual(first.entries.map((e) => e.size), sizes);
});

Deno.test("verifier: the smtp URL is checked and a password in it refused", () => {
  assert.throws(
    () => SmtpMailer.open("smtp://u:secret@h:25", { from: "a@b.c", to: ["d@e.f"] }),
    (e: unknown) =>
      e instanceof Error && /COLDPACK_SMTP_PASSWORD/.test(e.message) &&
      !e.message.includes("secret"),
  );
  assert.throws(
    () => SmtpMailer.open("http://h:25", { from: "a@b.c", to: ["d@e.f"] }),
    /--smtp: unsupported scheme/,
  );
  assert.throws(() => SmtpMailer.open("smtp://h:25", { from: "a@b.c", to: [] }), /--mail-to/);
});

Deno.test("verifier: stop the shared backup", async () => {
  await backup.stop();
});
