/**
 * The audit verifier's own durable record (a SQLite file, `--results PATH`):
 * every manifest it accepted, where its audit stands, the findings, and
 * which alert mails are owed or sent. It needs no catalog, so the verifier
 * can run next to the storage with nothing but this file. Every write is one
 * statement (atomic); a restart picks up every audit still `waiting` and
 * every mail still owed.
 *
 * @example
 * ```ts
 * const results = AuditResults.open("/var/lib/coldpack/audit-verifier.db");
 * results.add({ auditId, digest, manifest: text, archiveId, store, jobId, receivedAt: Date.now() });
 * results.waiting(); // [ ...audits whose retrieval is not checked yet ]
 * results.close();
 * ```
 * @module
 */

import { DatabaseSync } from "node:sqlite";
import { PortError } from "../../core/errors.ts";

/**
 * Where an audit stands: `waiting` for its retrieval, `verified` (no finding),
 * `failed` (findings), `error` (it could not be checked: the retrieval
 * failed, expired or is unknown to the store).
 */
export type AuditState = "waiting" | "verified" | "failed" | "error";

/** One finding, as recorded (see `Finding` in core/audit.ts). */
export interface RecordedFinding {
  readonly kind: string;
  readonly name?: string;
  readonly expected?: string | number;
  readonly actual?: string | number;
  readonly detail: string;
}

/** One audit as the verifier records it. */
export interface AuditRecord {
  readonly auditId: string;
  /** sha256 hex of the manifest bytes as received. */
  readonly digest: string;
  /** The manifest text as received. */
  readonly manifest: string;
  readonly archiveId: string;
  /** The store's location, as the manifest names it. */
  readonly store: string;
  readonly remoteId: string;
  readonly jobId: string;
  readonly state: AuditState;
  /** The findings; `null` until checked (and for `error`). */
  readonly findings: readonly RecordedFinding[] | null;
  readonly receivedAt: number;
  /** When the archive was checked, or the audit ended in `error`. */
  readonly checkedAt: number | null;
  /** Why it is `error`, or the last transient problem while `waiting`. */
  readonly note: string | null;
  /** A findings or error mail is owed and not yet sent. */
  readonly mailDue: boolean;
  /** When the findings or error mail went out. */
  readonly mailSentAt: number | null;
  /** When the "retrieval not ready" mail went out. */
  readonly overdueMailAt: number | null;
}

/** A new audit, as {@linkcode AuditResults.add} takes it. */
export interface NewAudit {
  readonly auditId: string;
  readonly digest: string;
  readonly manifest: string;
  readonly archiveId: string;
  readonly store: string;
  readonly remoteId: string;
  readonly jobId: string;
  readonly receivedAt: number;
}

const SCHEMA = `
CREATE TABLE IF NOT EXISTS audits (
  audit_id TEXT PRIMARY KEY,
  digest TEXT NOT NULL,
  manifest TEXT NOT NULL,
  archive_id TEXT NOT NULL,
  store TEXT NOT NULL,
  remote_id TEXT NOT NULL,
  job_id TEXT NOT NULL,
  state TEXT NOT NULL CHECK (state IN ('waiting', 'verified', 'failed', 'error')),
  findings TEXT,
  received_at INTEGER NOT NULL,
  checked_at INTEGER,
  note TEXT,
  mail_due INTEGER NOT NULL DEFAULT 0,
  mail_sent_at INTEGER,
  overdue_mail_at INTEGER
) STRICT;
CREATE INDEX IF NOT EXISTS audits_state ON audits (state, received_at);
CREATE INDEX IF NOT EXISTS audits_received ON audits (received_at, audit_id);
`;

const COLUMNS = "audit_id, digest, manifest, archive_id, store, remote_id, job_id, state, " +
  "findings, received_at, checked_at, note, mail_due, mail_sent_at, overdue_mail_at";

/**
 * The results file. Synchronous calls (node:sqlite): each is a single
 * statement on a local file, quick next to the archive streaming.
 * Errors opening or writing the file are `PortError`s with SQLite's code.
 */
export class AuditResults {
  readonly #db: DatabaseSync;
  /** The file, for logs. */
  readonly path: string;

  private constructor(db: DatabaseSync, path: string) {
    this.#db = db;
    this.path = path;
  }

  /** Opens (creating if missing) the results file at `path`. */
  static open(path: string): AuditResults {
    let db: DatabaseSync;
    try {
      db = new DatabaseSync(path);
      db.exec("PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 5000;");
      db.exec(SCHEMA);
    } catch (e) {
      throw sqliteError(`Cannot open the audit results file ${path}`, e);
    }
    return new AuditResults(db, path);
  }

  /**
   * Records a new audit as `waiting`. Returns the existing record instead
   * when `auditId` is known (the caller compares digests), `null` when added.
   */
  add(audit: NewAudit): AuditRecord | null {
    return this.#write(`Cannot record audit ${audit.auditId}`, () => {
      const existing = this.get(audit.auditId);
      if (existing !== null) return existing;
      this.#db.prepare(
        `INSERT INTO audits (audit_id, digest, manifest, archive_id, store, remote_id, job_id,
           state, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, 'waiting', ?)`,
      ).run(
        audit.auditId,
        audit.digest,
        audit.manifest,
        audit.archiveId,
        audit.store,
        audit.remoteId,
        audit.jobId,
        audit.receivedAt,
      );
      return null;
    });
  }

  /** The audit `auditId`, or `null`. */
  get(auditId: string): AuditRecord | null {
    const row = this.#db.prepare(`SELECT ${COLUMNS} FROM audits WHERE audit_id = ?`).get(auditId);
    return row === undefined ? null : toRecord(row);
  }

  /** Audits still `waiting`, oldest first. */
  waiting(): AuditRecord[] {
    return this.#db.prepare(
      `SELECT ${COLUMNS} FROM audits WHERE state = 'waiting' ORDER BY received_at, audit_id`,
    ).all().map(toRecord);
  }

  /** Audits whose findings or error mail is owed and not sent, oldest first. */
  mailsDue(): AuditRecord[] {
    return this.#db.prepare(
      `SELECT ${COLUMNS} FROM audits WHERE mail_due = 1 ORDER BY received_at, audit_id`,
    ).all().map(toRecord);
  }

  /** Newest first, at most `limit`, only in `states` when given. */
  list(
    options: { readonly limit: number; readonly states?: readonly AuditState[] },
  ): AuditRecord[] {
    const states = options.states ?? [];
    const where = states.length === 0 ? "" : `WHERE state IN (${states.map(() => "?").join(",")})`;
    return this.#db.prepare(
      `SELECT ${COLUMNS} FROM audits ${where} ORDER BY received_at DESC, audit_id DESC LIMIT ?`,
    ).all(...states, options.limit).map(toRecord);
  }

  /** Counts per state. */
  counts(): Record<AuditState, number> {
    const out: Record<AuditState, number> = { waiting: 0, verified: 0, failed: 0, error: 0 };
    for (
      const r of this.#db.prepare("SELECT state, COUNT(*) AS n FROM audits GROUP BY state").all()
    ) {
      out[r.state as AuditState] = Number(r.n);
    }
    return out;
  }

  /**
   * Ends an audit: `verified` or `failed` with its findings, or `error` with
   * a note. A mail becomes due for `failed` and `error`. Only a `waiting`
   * audit changes; returns whether this one did.
   */
  finish(
    auditId: string,
    outcome:
      | { readonly state: "verified" | "failed"; readonly findings: readonly RecordedFinding[] }
      | { readonly state: "error"; readonly note: string },
    nowMs: number,
  ): boolean {
    return this.#write(`Cannot record the result of audit ${auditId}`, () => {
      const findings = outcome.state === "error" ? null : JSON.stringify(outcome.findings);
      const note = outcome.state === "error" ? outcome.note : null;
      const due = outcome.state === "verified" ? 0 : 1;
      const r = this.#db.prepare(
        `UPDATE audits SET state = ?, findings = ?, note = ?, checked_at = ?, mail_due = ?
         WHERE audit_id = ? AND state = 'waiting'`,
      ).run(outcome.state, findings, note, nowMs, due, auditId);
      return Number(r.changes) === 1;
    });
  }

  /** Notes a transient problem on a `waiting` audit (shown by `GET /audits`). */
  note(auditId: string, note: string): void {
    this.#write(`Cannot record a note on audit ${auditId}`, () => {
      this.#db.prepare("UPDATE audits SET note = ? WHERE audit_id = ? AND state = 'waiting'")
        .run(note, auditId);
    });
  }

  /** Records that the findings or error mail went out. */
  mailSent(auditId: string, nowMs: number): void {
    this.#write(`Cannot record the mail of audit ${auditId}`, () => {
      this.#db.prepare("UPDATE audits SET mail_due = 0, mail_sent_at = ? WHERE audit_id = ?")
        .run(nowMs, auditId);
    });
  }

  /** Records that the "retrieval not ready" mail went out. */
  overdueMailSent(auditId: string, nowMs: number): void {
    this.#write(`Cannot record the overdue mail of audit ${auditId}`, () => {
      this.#db.prepare("UPDATE audits SET overdue_mail_at = ? WHERE audit_id = ?")
        .run(nowMs, auditId);
    });
  }

  /** Closes the file. Idempotent. */
  close(): void {
    if (this.#db.isOpen) this.#db.close();
  }

  #write<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw sqliteError(`${what} in ${this.path}`, e);
    }
  }
}

function toRecord(r: Record<string, unknown>): AuditRecord {
  const num = (v: unknown) => (v === null ? null : Number(v));
  return {
    auditId: String(r.audit_id),
    digest: String(r.digest),
    manifest: String(r.manifest),
    archiveId: String(r.archive_id),
    store: String(r.store),
    remoteId: String(r.remote_id),
    jobId: String(r.job_id),
    state: String(r.state) as AuditState,
    findings: r.findings === null ? null : JSON.parse(String(r.findings)) as RecordedFinding[],
    receivedAt: Number(r.received_at),
    checkedAt: num(r.checked_at),
    note: r.note === null ? null : String(r.note),
    mailDue: Number(r.mail_due) === 1,
    mailSentAt: num(r.mail_sent_at),
    overdueMailAt: num(r.overdue_mail_at),
  };
}

/** SQLite primary result codes by number (node:sqlite errors carry `errcode`). */
const SQLITE_NUMBERS: Readonly<Record<number, string>> = {
  5: "SQLITE_BUSY",
  6: "SQLITE_LOCKED",
  8: "SQLITE_READONLY",
  10: "SQLITE_IOERR",
  11: "SQLITE_CORRUPT",
  13: "SQLITE_FULL",
  14: "SQLITE_CANTOPEN",
  19: "SQLITE_CONSTRAINT",
  26: "SQLITE_NOTADB",
};

function sqliteError(what: string, e: unknown): PortError {
  if (e instanceof PortError) return e;
  const errcode = (e as { errcode?: unknown } | null)?.errcode;
  const code = (typeof errcode === "number" ? SQLITE_NUMBERS[errcode & 0xff] : undefined) ??
    (/database is locked/i.test(String(e)) ? "SQLITE_BUSY" : "SQLITE_ERROR");
  const retryable = code === "SQLITE_BUSY" || code === "SQLITE_LOCKED";
  const message = (e instanceof Error ? e.message : String(e)).replace(/\s+/g, " ").trim();
  return new PortError(`${what}: ${message}`, { code, retryable, cause: e });
}
