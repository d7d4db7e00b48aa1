/**
 * A real SMTP server for tests: Debian's python3-aiosmtpd, on 127.0.0.1 and
 * a free port, with a handler that prints each message it accepts as one
 * JSON line, so that a test can count and read the mails it received.
 * @module
 */

import { peerTestOptions } from "./_mariadb.ts";

/** One mail the server accepted. */
export interface ReceivedMail {
  readonly from: string;
  readonly to: string[];
  /** The whole message (headers and body) as received. */
  readonly data: string;
  /** The `Subject:` header, unfolded. */
  readonly subject: string;
  /** The body, its transfer encoding (quoted-printable, base64) undone. */
  readonly body: string;
}

/** A running SMTP server. */
export interface SmtpServer {
  readonly port: number;
  /** `smtp://127.0.0.1:PORT` */
  readonly url: string;
  /** Every mail accepted so far. */
  readonly mails: readonly ReceivedMail[];
  /** Resolves once at least `n` mails have arrived (rejects after `timeoutMs`, default 30 s). */
  waitFor(n: number, timeoutMs?: number): Promise<readonly ReceivedMail[]>;
  stop(): Promise<void>;
}

const PYTHON_CANDIDATES = ["/usr/bin/python3", "python3"];

const SCRIPT = `
import asyncio, json, sys
from aiosmtpd.smtp import SMTP

class Handler:
    async def handle_DATA(self, server, session, envelope):
        content = envelope.content
        if isinstance(content, bytes):
            content = content.decode("utf-8", "replace")
        print(json.dumps({"from": envelope.mail_from, "to": envelope.rcpt_tos, "data": content}),
              flush=True)
        return "250 Message accepted for delivery"

async def main():
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(Handler()), "127.0.0.1", 0)
    print("LISTENING %d" % server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)

asyncio.run(main())
`;

let python: string | null | undefined;

/** The python3 that has aiosmtpd, or null. */
export function aiosmtpdPython(): string | null {
  if (python !== undefined) return python;
  python = null;
  for (const p of PYTHON_CANDIDATES) {
    try {
      const out = new Deno.Command(p, {
        args: ["-c", "import aiosmtpd"],
        stdout: "null",
        stderr: "null",
      }).outputSync();
      if (out.success) return python = p;
    } catch {
      // not installed there
    }
  }
  return python;
}

/** The peer policy (see tests/_mariadb.ts): skip loudly, or fail under COLDPACK_REQUIRE_PEERS=1. */
export function smtpTestOptions(what: string): { readonly ignore: boolean } {
  const p = aiosmtpdPython();
  return peerTestOptions(
    what,
    p === null
      ? { available: false, missing: "python3 module aiosmtpd (Debian package python3-aiosmtpd)" }
      : { available: true },
    "no SMTP server for the tests",
    "apt-get install python3-aiosmtpd",
  );
}

/** Starts aiosmtpd on a free port; always `stop()` it. */
export async function startSmtp(): Promise<SmtpServer> {
  const py = aiosmtpdPython();
  if (py === null) throw new Error("python3-aiosmtpd is not installed");
  const child = new Deno.Command(py, {
    args: ["-c", SCRIPT],
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const mails: ReceivedMail[] = [];
  const waiters: { n: number; resolve: () => void }[] = [];
  const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const errText: string[] = [];
  const errDone = (async () => {
    for (;;) {
      const { done, value } = await stderr.read();
      if (done) return;
      errText.push(value);
    }
  })();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  const ready = Promise.withResolvers<number>();
  const outDone = (async () => {
    for (;;) {
      const { done, value } = await lines.read();
      if (done) break;
      buffer += value;
      let nl: number;
      while ((nl = buffer.indexOf("\n")) !== -1) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        const m = /^LISTENING (\d+)$/.exec(line);
        if (m) {
          ready.resolve(Number(m[1]));
          continue;
        }
        const o = JSON.parse(line) as { from: string; to: string[]; data: string };
        mails.push({ ...o, subject: subjectOf(o.data), body: bodyOf(o.data) });
        for (const w of waiters) if (mails.length >= w.n) w.resolve();
      }
    }
    ready.reject(new Error(`aiosmtpd exited before listening: ${errText.join("")}`));
  })();
  let port: number;
  try {
    port = await ready.promise;
  } catch (e) {
    await child.stdin.close().catch(() => {});
    await Promise.all([outDone, errDone, child.status]);
    throw e;
  }
  let stopping: Promise<void> | null = null;
  return {
    port,
    url: `smtp://127.0.0.1:${port}`,
    mails,
    waitFor(n, timeoutMs = 30_000) {
      if (mails.length >= n) return Promise.resolve(mails);
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => {
          reject(new Error(`waited ${timeoutMs} ms for ${n} mail(s), got ${mails.length}`));
        }, timeoutMs);
        waiters.push({
          n,
          resolve: () => {
            clearTimeout(t);
            resolve(mails);
          },
        });
      });
    },
    stop() {
      return stopping ??= (async () => {
        // Closing stdin ends the script's wait; kill it if it does not go.
        await child.stdin.close().catch(() => {});
        const t = setTimeout(() => {
          try {
            child.kill("SIGKILL");
          } catch {
            // already gone
          }
        }, 5_000);
        await child.status;
        clearTimeout(t);
        await Promise.all([outDone, errDone]);
      })();
    },
  };
}

function subjectOf(data: string): string {
  const m = /^Subject:(.*(?:\r?\n[ \t].*)*)/im.exec(data);
  return m === null ? "" : m[1]!.replace(/\r?\n[ \t]/g, " ").trim();
}

function bodyOf(data: string): string {
  const split = /\r?\n\r?\n/.exec(data);
  if (split === null) return "";
  const headers = data.slice(0, split.index);
  const body = data.slice(split.index + split[0].length);
  const encoding = /^Content-Transfer-Encoding:\s*(\S+)/im.exec(headers)?.[1]?.toLowerCase();
  if (encoding === "base64") {
    const bin = atob(body.replace(/\s+/g, ""));
    return new TextDecoder().decode(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
  }
  if (encoding === "quoted-printable") {
    const joined = body.replace(/=\r?\n/g, "");
    const bytes: number[] = [];
    for (let i = 0; i < joined.length; i++) {
      const c = joined[i]!;
      if (c === "=" && /^[0-9A-Fa-f]{2}$/.test(joined.slice(i + 1, i + 3))) {
        bytes.push(parseInt(joined.slice(i + 1, i + 3), 16));
        i += 2;
      } else {
        for (const b of new TextEncoder().encode(c)) bytes.push(b);
      }
    }
    return new TextDecoder().decode(new Uint8Array(bytes));
  }
  return body;
}
