/**
 * coldpack-audit-verifier: the daemon, run next to the storage, that checks
 * sampled archives against the md5 manifests `coldpack-audit sample` sends.
 *
 * Wiring only: flags and environment in, the results file, stores and
 * mailer opened, adapters/audit/verifier.ts run until SIGTERM or SIGINT,
 * errors mapped to exit codes.
 * @module
 */

import {
  exitForError,
  listenForStop,
  parseCommandLine,
  usage as cliUsage,
} from "../adapters/cli.ts";
import { openStore } from "../adapters/registry.ts";
import { AuditResults } from "../adapters/audit/results.ts";
import { type Mailer, SmtpMailer } from "../adapters/audit/mailer.ts";
import { AuditVerifier } from "../adapters/audit/verifier.ts";
import { IstatdClient } from "../adapters/metrics/istatd_client.ts";
import { defaultStateDir } from "../core/config.ts";
import { parseDuration } from "../core/duration.ts";
import { ConfigError, errorMessage } from "../core/errors.ts";
import type { ColdStore } from "../core/ports.ts";

/** Exit codes, documented in --help and docs/audit.md. */
export const EXIT = {
  ok: 0,
  usage: 2,
  fatal: 3,
} as const;

const NAME = "coldpack-audit-verifier";

const HELP = `${NAME}: check sampled archives against their md5 manifests

Usage:
  COLDPACK_VERIFIER_TOKEN=... ${NAME} [options]

coldpack-audit sample starts a retrieval of each sampled archive and POSTs
the md5s of its files to this daemon. The daemon waits until the retrieval is
ready (asking the store every --poll), streams the archive once, md5s every
tar entry and compares: a missing entry, an extra entry, a size mismatch, an
md5 mismatch and an unreadable tar are each a finding. Results are kept in
--results (SQLite), survive restarts, and are listed by GET /audits. Any
finding, an audit that cannot be checked (retrieval failed or expired), and a
retrieval still not ready after --ready-timeout each send one mail to
--mail-to.

HTTP API (all but /health need "Authorization: Bearer $COLDPACK_VERIFIER_TOKEN"):
  POST /manifests      a manifest (JSON): 202 accepted, 400 malformed, 401, 409
  GET  /audits         audits and findings, newest first (?state=failed&limit=N)
  GET  /audits/ID      one audit
  GET  /health         status and counts

Options:
  --listen HOST:PORT   where the API listens (default 127.0.0.1:8420)
  --results PATH       the results file (default STATE_DIR/audit-verifier.db)
  --store URL[,URL]    the stores manifests may name (their --store URLs, so that
                       endpoints and options apply); default: any store, opened
                       from the location the manifest names
  --smtp URL           smtp://HOST:PORT or smtps://HOST:PORT (default: no mail,
                       findings are only logged and listed); a user may be in the
                       URL, the password comes from COLDPACK_SMTP_PASSWORD
  --mail-to ADDR[,ADDR]  who gets the alerts (required with --smtp)
  --mail-from ADDR     sender (default coldpack-audit-verifier@HOSTNAME)
  --poll DURATION      look at waiting audits this often (default 5m); a new
                       manifest is looked at at once
  --ready-timeout DURATION  mail when a retrieval is not ready this long after
                       its manifest came (default 48h)
  --public-url URL     the verifier's URL as operators reach it, for the mails
                       (default http://LISTEN)
  --metrics-agent HOST:PORT  send counters (coldpack.audit_verifier.*) to the
                       metrics agent over UDP (default: none)
  --state-dir DIR      default COLDPACK_STATE_DIR, else ~/.local/state/coldpack
  -h, --help           this help

Environment: COLDPACK_VERIFIER_TOKEN (required, at least 16 characters: the
bearer token the sampler sends), COLDPACK_SMTP_PASSWORD, COLDPACK_STATE_DIR.

Signals: SIGTERM or SIGINT stops it; an archive being read is abandoned and
checked again from the start after a restart (its audit stays waiting).

Exit codes:
  0    stopped by a signal
  2    bad usage or configuration; the message names the flag or variable
  3    the results file or the listen address could not be used; the message says why
`;

const FLAG_OPTIONS = {
  listen: { type: "string" as const },
  results: { type: "string" as const },
  store: { type: "string" as const },
  smtp: { type: "string" as const },
  "mail-to": { type: "string" as const },
  "mail-from": { type: "string" as const },
  poll: { type: "string" as const },
  "ready-timeout": { type: "string" as const },
  "public-url": { type: "string" as const },
  "metrics-agent": { type: "string" as const },
  "state-dir": { type: "string" as const },
  help: { type: "boolean" as const, short: "h" },
};

function log(line: string): void {
  console.error(`${NAME}: ${line}`);
}

/** `HOST:PORT` (IPv6 in brackets) for `flag`. */
function hostPort(flag: string, text: string): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:\[\]]*)):(\d{1,5})$/.exec(text.trim());
  const port = m === null ? NaN : Number(m[3]);
  if (m === null || port > 65535) {
    throw new ConfigError(flag, `expected HOST:PORT, got "${text}"`);
  }
  return { hostname: m[1] ?? (m[2] || "127.0.0.1"), port };
}

function duration(flag: string, text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  try {
    return parseDuration(text);
  } catch (e) {
    throw new ConfigError(flag, errorMessage(e));
  }
}

function list(text: string | undefined): string[] {
  return (text ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
}

async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine(NAME, args, FLAG_OPTIONS, HELP);
  if (parsed.exit !== null) return parsed.exit;
  const { values, positionals } = parsed;
  if (positionals.length > 0) return cliUsage(NAME, `unexpected argument "${positionals[0]}"`);
  const stop = listenForStop(log);
  let results: AuditResults | null = null;
  let mailer: Mailer | null = null;
  let agent: IstatdClient | null = null;
  const stores: ColdStore[] = [];
  let verifier: AuditVerifier | null = null;
  try {
    const env = Deno.env.toObject();
    const token = env["COLDPACK_VERIFIER_TOKEN"] ?? "";
    if (token.length < 16) {
      throw new ConfigError(
        "COLDPACK_VERIFIER_TOKEN",
        token === ""
          ? "not set (the bearer token the sampler sends)"
          : "shorter than 16 characters",
      );
    }
    const listen = hostPort("--listen", values.listen ?? "127.0.0.1:8420");
    const pollMs = duration("--poll", values.poll, 300_000);
    if (pollMs <= 0) throw new ConfigError("--poll", "must be more than 0");
    const readyTimeoutMs = duration("--ready-timeout", values["ready-timeout"], 48 * 3_600_000);
    const stateDir = values["state-dir"] ?? env["COLDPACK_STATE_DIR"] ?? defaultStateDir(env);
    const resultsPath = values.results ?? `${stateDir}/audit-verifier.db`;
    if (values.smtp !== undefined) {
      mailer = SmtpMailer.open(values.smtp, {
        from: values["mail-from"] ?? `${NAME}@${Deno.hostname()}`,
        to: list(values["mail-to"]),
      });
    } else if (values["mail-to"] !== undefined) {
      throw new ConfigError("--mail-to", "needs --smtp (where to send the mail)");
    }
    const agentAt = values["metrics-agent"] === undefined
      ? null
      : hostPort("--metrics-agent", values["metrics-agent"]);
    for (const url of list(values.store)) stores.push(await openStore(url, "--store"));
    if (values.results === undefined) await Deno.mkdir(stateDir, { recursive: true });
    results = AuditResults.open(resultsPath);
    if (agentAt !== null) {
      agent = new IstatdClient({ host: agentAt.hostname, port: agentAt.port, log });
    }
    verifier = await AuditVerifier.start({
      token,
      results,
      hostname: listen.hostname,
      port: listen.port,
      ...(stores.length > 0
        ? { stores }
        : { openStore: (location: string) => openStore(location, `store ${location}`) }),
      mailer,
      pollMs,
      readyTimeoutMs,
      ...(values["public-url"] === undefined ? {} : { publicUrl: values["public-url"] }),
      log,
      ...(agent === null ? {} : { metrics: agent }),
    });
    const counts = results.counts();
    log(
      `listening on ${verifier.url}; results ${resultsPath} (${counts.waiting} waiting, ` +
        `${counts.verified} verified, ${counts.failed} failed, ${counts.error} error); ` +
        `stores: ${stores.length === 0 ? "any" : stores.map((s) => s.location).join(", ")}; ` +
        `mail: ${mailer === null ? "none (no --smtp)" : mailer.location}; poll every ${
          pollMs / 1000
        } s`,
    );
    const signal = await stop.stopped;
    await verifier.stop();
    log(`stopped by ${signal}`);
    return EXIT.ok;
  } catch (e) {
    return exitForError(NAME, e);
  } finally {
    stop.dispose();
    await verifier?.stop();
    for (const s of stores) await s.close().catch(() => {});
    await mailer?.close();
    results?.close();
    await agent?.close();
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
