/**
 * Error classes that callers catch by class. Everything else uses the
 * built-in `TypeError`, `RangeError` and `SyntaxError`.
 * @module
 */

/** Where in the backup path an error happened; recorded in the failures table. */
export type Stage = "discover" | "fetch" | "bundle" | "upload" | "commit";

/**
 * An error from a remote part (store, source, catalog) with a stable code
 * and whether trying again may help.
 */
export class PortError extends Error {
  /** A stable code, e.g. `EACCES`, `ThrottlingException`, `SQLITE_BUSY`. */
  readonly code: string;
  /** True when the same call may succeed later (timeouts, throttling, 5xx). */
  readonly retryable: boolean;
  constructor(message: string, options: { code: string; retryable: boolean; cause?: unknown }) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "PortError";
    this.code = options.code;
    this.retryable = options.retryable;
  }
}

/** The file no longer exists at the source (deleted between listing and fetch). */
export class VanishedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "VanishedError";
  }
}

/** The file changed while it was read (length or version differs): a new version exists. */
export class ChangedError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "ChangedError";
  }
}

/** The store's checksum or size of an archive differs from ours. */
export class ArchiveMismatchError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "ArchiveMismatchError";
  }
}

/** Bad configuration: a flag, an environment variable or a config file key. */
export class ConfigError extends Error {
  /** What was wrong, e.g. `--store` or `config.toml: target_size`. */
  readonly where: string;
  constructor(where: string, message: string) {
    super(`${where}: ${message}`);
    this.name = "ConfigError";
    this.where = where;
  }
}

/** A short code for an unknown error, for the failures table. */
export function errorCode(e: unknown): string {
  if (e instanceof PortError) return e.code;
  if (e && typeof e === "object" && "code" in e && typeof e.code === "string") return e.code;
  if (e instanceof Error) return e.name;
  return "Unknown";
}

/** Whether an error may go away when the same call is made again. */
export function isRetryable(e: unknown): boolean {
  if (e instanceof PortError) return e.retryable;
  return false;
}

/** The message of an unknown error, on one line. */
export function errorMessage(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.replace(/\s+/g, " ").trim();
}
