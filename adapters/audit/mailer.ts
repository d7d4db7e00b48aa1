/**
 * Alert mail over SMTP, through nodemailer (`--smtp smtp://HOST:PORT`,
 * `smtps://HOST:PORT` for TLS from the first byte; a server that offers
 * STARTTLS gets it). A user may be named in the URL (`smtp://alerts@HOST`);
 * the password comes only from `COLDPACK_SMTP_PASSWORD`, never the URL.
 *
 * @example
 * ```ts
 * const mailer = SmtpMailer.open("smtp://127.0.0.1:25", {
 *   from: "coldpack@backup1",
 *   to: ["ops@example.com"],
 * });
 * await mailer.send({ subject: "coldpack audit: archive X FAILED", text: "..." });
 * await mailer.close();
 * ```
 * @module
 */

import nodemailer from "nodemailer";
import { ConfigError, PortError } from "../../core/errors.ts";

/** One mail: the list and the sender are the mailer's. */
export interface Mail {
  readonly subject: string;
  readonly text: string;
}

/** Where alert mails go. */
export interface Mailer {
  /** Where mail is sent, without secrets, for logs (e.g. `smtp://127.0.0.1:25`). */
  readonly location: string;
  /**
   * Sends one mail to the list. Rejects with a `PortError` coded like the
   * server's answer (`EENVELOPE`, `ECONNECTION`, `SMTP_550`, ...), retryable
   * for connection problems, timeouts and 4xx answers.
   */
  send(mail: Mail): Promise<void>;
  close(): Promise<void>;
}

/** Options for {@linkcode SmtpMailer.open}. */
export interface SmtpMailerOptions {
  /** The `From:` address. */
  readonly from: string;
  /** The recipients (at least one). */
  readonly to: readonly string[];
  /** The password for the URL's user; default `COLDPACK_SMTP_PASSWORD`, else none. */
  readonly password?: string;
  /** Connection, greeting and socket timeout, ms; default 30 s. */
  readonly timeoutMs?: number;
}

interface Transport {
  sendMail(message: Record<string, unknown>): Promise<{ accepted?: unknown[] }>;
  close(): void;
}

const ADDRESS = /^[^\s@<>,;]+@[^\s@<>,;]+$/;

/** Alert mail through one SMTP server. */
export class SmtpMailer implements Mailer {
  readonly location: string;
  readonly #transport: Transport;
  readonly #from: string;
  readonly #to: readonly string[];

  private constructor(location: string, transport: Transport, from: string, to: readonly string[]) {
    this.location = location;
    this.#transport = transport;
    this.#from = from;
    this.#to = to;
  }

  /**
   * Prepares a mailer for `url` (no connection yet: each send connects).
   * @throws {ConfigError} for a URL, sender or recipient that cannot work (names the flag)
   */
  static open(url: string, options: SmtpMailerOptions): SmtpMailer {
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new ConfigError("--smtp", `not a URL: "${url}" (expected smtp://HOST:PORT)`);
    }
    if (u.protocol !== "smtp:" && u.protocol !== "smtps:") {
      throw new ConfigError("--smtp", `unsupported scheme "${u.protocol}" (smtp: or smtps:)`);
    }
    if (u.password !== "") {
      throw new ConfigError(
        "--smtp",
        "a password in the URL is refused (it would show in ps and logs): " +
          "set COLDPACK_SMTP_PASSWORD",
      );
    }
    if (u.hostname === "") throw new ConfigError("--smtp", `no host in the URL`);
    if (u.pathname !== "" && u.pathname !== "/") {
      throw new ConfigError("--smtp", `unexpected path "${u.pathname}" (smtp://HOST:PORT)`);
    }
    if (options.to.length === 0) {
      throw new ConfigError("--mail-to", "no recipient: give ADDR[,ADDR] with --smtp");
    }
    for (const a of options.to) {
      if (!ADDRESS.test(a)) throw new ConfigError("--mail-to", `not a mail address: "${a}"`);
    }
    if (!ADDRESS.test(options.from)) {
      throw new ConfigError("--mail-from", `not a mail address: "${options.from}"`);
    }
    const secure = u.protocol === "smtps:";
    const port = u.port === "" ? (secure ? 465 : 25) : Number(u.port);
    const host = u.hostname.replace(/^\[(.*)\]$/, "$1");
    const timeout = options.timeoutMs ?? 30_000;
    const user = decodeURIComponent(u.username);
    const transport = nodemailer.createTransport({
      host,
      port,
      secure,
      connectionTimeout: timeout,
      greetingTimeout: timeout,
      socketTimeout: timeout,
      ...(user === "" ? {} : {
        auth: { user, pass: options.password ?? Deno.env.get("COLDPACK_SMTP_PASSWORD") ?? "" },
      }),
    }) as Transport;
    const location = `${u.protocol}//${user === "" ? "" : `${encodeURIComponent(user)}@`}${u.host}`;
    return new SmtpMailer(location, transport, options.from, options.to);
  }

  async send(mail: Mail): Promise<void> {
    try {
      await this.#transport.sendMail({
        from: this.#from,
        to: this.#to.join(", "),
        subject: mail.subject,
        text: mail.text,
      });
    } catch (e) {
      throw smtpError(this.location, e);
    }
  }

  close(): Promise<void> {
    this.#transport.close();
    return Promise.resolve();
  }
}

/** nodemailer's error as a `PortError` naming the server and its answer. */
function smtpError(location: string, e: unknown): PortError {
  const err = (e ?? {}) as { code?: unknown; responseCode?: unknown; message?: unknown };
  const responseCode = typeof err.responseCode === "number" ? err.responseCode : null;
  const code = responseCode !== null
    ? `SMTP_${responseCode}`
    : typeof err.code === "string"
    ? err.code
    : "SMTP_ERROR";
  const retryable = responseCode !== null
    ? responseCode >= 400 && responseCode < 500
    : ["ECONNECTION", "ETIMEDOUT", "ESOCKET", "EDNS", "ECONNRESET", "ECONNREFUSED"].includes(code);
  const message = String(err.message ?? e).replace(/\s+/g, " ").trim();
  return new PortError(`Cannot send mail through ${location}: ${message}`, {
    code,
    retryable,
    cause: e,
  });
}
