/**
 * Parses what an operator asks `coldpack-restore` for: `SOURCE DEST`, on the
 * command line or one pair per line of a `--batch` file.
 *
 * ## SOURCE ({@linkcode parseRestoreSource})
 *
 * The first rule that applies, in this order:
 *
 * 1. `""`: a `SyntaxError` (empty).
 * 2. `key:REST`: `{ kind: "key", key: REST }`, exactly as written: the escape
 *    for any key that would read as something else (`key:123`, `key:a:b`).
 * 3. `fid:N`: `{ kind: "id", id: N }`; N must be a positive decimal number
 *    below 2^53, else a `SyntaxError`.
 * 4. `mogilefs:DOMAIN/KEY`: `{ kind: "domain-key", domain, key }`: the escape
 *    for a domain named `fid`, `key` or `mogilefs`, or a key starting with `//`.
 * 5. Only digits (`123`): `{ kind: "id", id: 123 }`. A directory file named
 *    `123` is written `./123` (or `key:123`).
 * 6. `SCHEME://...` (`https://`, `http://`, any scheme): tried against the URL
 *    patterns in order; the first that matches gives
 *    `{ kind: "url", url, domain, key, pattern }` (`pattern`: its index). No
 *    match: a `SyntaxError` naming the URL and how many patterns were tried.
 * 7. `./REST`: `{ kind: "key", key: REST }` (one `./` removed).
 * 8. `DOMAIN:KEY`, DOMAIN only letters, digits, `_`, `-` and `.`:
 *    `{ kind: "domain-key", domain, key }`; an empty KEY (`ugc:`) is a
 *    `SyntaxError`.
 * 9. Anything else: `{ kind: "key", key }`, as given (`photos/a.jpg`, `/abs`).
 *
 * The prefixes `key:`, `fid:` and `mogilefs:` are lower case (`FID:1` is
 * domain `FID`, key `1`). Only the text before the first `:` can be a domain, so `dir/a:b` is
 * the key `dir/a:b`; a directory file named `a:b` is written `./a:b` or
 * `key:a:b`. Nothing is trimmed: every character belongs to the key. A key
 * with a leading `/` stays as given: the caller, which knows a directory
 * source's root, may make an absolute path under the root relative.
 *
 * A URL pattern is a regular expression searched in the URL (not anchored:
 * write `^...$` to match a whole URL) with a named group `(?<key>...)` and
 * either a group `(?<domain>...)` or a fixed `domain`. Both captures are
 * percent-decoded (`%20` is a space; `+` stays `+`); the domain must then be a
 * valid domain name and the key non-empty. In the config file (TOML):
 *
 * ```toml
 * [[url_patterns]]
 * match = '^https://cdn\.example\.com/(?<domain>[a-z]+)/(?<key>[^?#]+)'
 * [[url_patterns]]
 * match = '^https://img\.example\.com/(?<key>[^?#]+)'
 * domain = "ugc"
 * ```
 *
 * ## DEST ({@linkcode parseRestoreDest})
 *
 * | text | result |
 * |---|---|
 * | `mogilefs` | `{ kind: "mogilefs-origin" }`: back where each file was |
 * | `mogilefs:DOMAIN` | `{ kind: "mogilefs", domain }`: the file's own key, in DOMAIN |
 * | `mogilefs:DOMAIN/KEY` | `{ kind: "mogilefs", domain, key, prefix: false }` |
 * | `mogilefs:DOMAIN/DIR/` | `{ kind: "mogilefs", domain, key: "DIR/", prefix: true }` |
 * | `s3://BUCKET/KEY` | `{ kind: "s3", bucket, key, prefix: false }`, KEY percent-decoded |
 * | `s3://BUCKET/DIR/`, `s3://BUCKET` | `{ kind: "s3", bucket, key: "DIR/" or "", prefix: true }` |
 * | `file:///PATH` | `{ kind: "local", path, prefix }`, percent-decoded |
 * | `/abs/path`, `rel/path`, `./x` | `{ kind: "local", path, prefix }`, as given |
 *
 * `prefix: true` (a DEST ending in `/`) means a directory: each file keeps its
 * own key under it. A relative local path is the caller's to resolve against
 * its working directory. Any other `WORD:` start is refused, so that a typo
 * (`mogilfs:ugc`, `ftp:x`) never becomes a local directory of that name: a
 * local path with a colon is written `./backup:1`.
 *
 * ## Batch files ({@linkcode parseBatch})
 *
 * One `SOURCE DEST` per line. Lines are numbered from 1; a trailing `\r` and
 * a byte order mark on line 1 are ignored. Blank lines are skipped, and so is
 * everything from a `#` that starts a field to the end of the line (so whole
 * lines and trailing notes are comments; a `#` inside a field is kept). Fields
 * are separated by spaces and tabs. A field with spaces (or starting with `#`)
 * is written in double quotes; inside quotes `\"` is a quote and `\\` a
 * backslash, and any other backslash is an error. Outside quotes a backslash
 * is an ordinary character and a `"` is an error. A bad line never stops the
 * others: it is collected with its number and the reason.
 *
 * Pure: no I/O.
 * @module
 */

import { ConfigError } from "./errors.ts";
import { type FileId, fileId } from "./ids.ts";

/** A compiled URL pattern (see {@linkcode compilePatterns}). */
export interface UrlPattern {
  /** Position in `url_patterns`, from 0; named in messages. */
  readonly index: number;
  /** The compiled `match`, with a `key` group and, unless `domain` is set, a `domain` group. */
  readonly regex: RegExp;
  /** The fixed domain, when the regex has no `domain` group. */
  readonly domain?: string;
}

/** What a restore SOURCE names. */
export type RestoreSource =
  /** A catalog file id (`fid:123` or `123`). */
  | { readonly kind: "id"; readonly id: FileId }
  /** A MogileFS domain and key (`ugc:product/1/texture.png`). */
  | { readonly kind: "domain-key"; readonly domain: string; readonly key: string }
  /** A key (a relative path of a directory source, an S3 key). */
  | { readonly kind: "key"; readonly key: string }
  /** A URL that pattern number `pattern` mapped to a domain and key. */
  | {
    readonly kind: "url";
    readonly url: string;
    readonly domain: string;
    readonly key: string;
    readonly pattern: number;
  };

/** Where a restore DEST puts the file. */
export type RestoreDest =
  /** Back into MogileFS, at the file's own domain and key. */
  | { readonly kind: "mogilefs-origin" }
  /**
   * Into MogileFS `domain`: without `key`, at the file's own key; with
   * `prefix: false`, at `key`; with `prefix: true`, at `key` + the file's key.
   */
  | {
    readonly kind: "mogilefs";
    readonly domain: string;
    readonly key?: string;
    readonly prefix?: boolean;
  }
  /** A local path; `prefix: true` (ends in `/`): a directory, the file's key below it. */
  | { readonly kind: "local"; readonly path: string; readonly prefix: boolean }
  /** An S3 object `key`; `prefix: true` (`""` or ends in `/`): `key` + the file's key. */
  | {
    readonly kind: "s3";
    readonly bucket: string;
    readonly key: string;
    readonly prefix: boolean;
  };

/** One parsed SOURCE DEST pair. */
export interface RestoreRequest {
  readonly source: RestoreSource;
  readonly dest: RestoreDest;
}

/** One good line of a batch file: its fields, unquoted. */
export interface BatchLine {
  /** Line number, from 1. */
  readonly line: number;
  readonly source: string;
  readonly dest: string;
}

/** One good line of a batch file parsed with URL patterns. */
export interface ParsedBatchLine extends BatchLine {
  readonly request: RestoreRequest;
}

/** One bad line of a batch file. */
export interface BatchError {
  /** Line number, from 1. */
  readonly line: number;
  /** The line as written (without its `\r`). */
  readonly text: string;
  /** What is wrong, e.g. `expected SOURCE DEST, found 3 fields`. */
  readonly reason: string;
}

/** What a batch file holds: the good lines and the bad ones, in file order. */
export interface Batch<L extends BatchLine = BatchLine> {
  readonly lines: readonly L[];
  readonly errors: readonly BatchError[];
}

/** A MogileFS domain name. */
const DOMAIN = /^[A-Za-z0-9_.-]+$/;
const DIGITS = /^[0-9]+$/;
const URL_START = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//;
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;
/** S3 bucket names, as in `source_url.ts` and `store_url.ts`. */
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * Validates and compiles the `url_patterns` of the config file: a list of
 * tables `{ match = "REGEX", domain = "DOMAIN" }` (`domain` optional). Each
 * regex is compiled without flags (case-sensitive) and must have a `key`
 * group and either a `domain` group or a fixed `domain`, not both.
 *
 * @param raw the value of `url_patterns` as read from the file; `undefined`: none
 * @param options.file the config file's path, to prefix `where` (default: none)
 * @returns the patterns, in order
 * @throws {ConfigError} with `where` = `url_patterns[i]` (or `FILE: url_patterns[i]`),
 *   e.g. `url_patterns[1]: the regex has no (?<key>...) group`
 *
 * @example
 * ```ts
 * const patterns = compilePatterns([
 *   { match: "^https://img\\.x\\.com/(?<key>.+)$", domain: "ugc" },
 * ]);
 * parseRestoreSource("https://img.x.com/a%20b.png", { patterns });
 * // { kind: "url", url: "https://img.x.com/a%20b.png", domain: "ugc", key: "a b.png",
 * //   pattern: 0 }
 * ```
 */
export function compilePatterns(
  raw: unknown,
  options: { readonly file?: string } = {},
): UrlPattern[] {
  const prefix = options.file === undefined ? "" : `${options.file}: `;
  if (raw === undefined) return [];
  if (!Array.isArray(raw)) {
    throw new ConfigError(
      `${prefix}url_patterns`,
      `expected a list of { match, domain } tables, got ${describe(raw)}`,
    );
  }
  return raw.map((entry: unknown, index) => compilePattern(entry, index, `${prefix}url_patterns`));
}

function compilePattern(entry: unknown, index: number, list: string): UrlPattern {
  const where = `${list}[${index}]`;
  if (entry === null || typeof entry !== "object" || Array.isArray(entry)) {
    throw new ConfigError(where, `expected a { match, domain } table, got ${describe(entry)}`);
  }
  const fields = entry as Record<string, unknown>;
  for (const name of Object.keys(fields)) {
    if (name !== "match" && name !== "domain") {
      throw new ConfigError(where, `unknown key "${name}" (a pattern has match and domain)`);
    }
  }
  const match = fields["match"];
  if (match === undefined) throw new ConfigError(where, "match is missing");
  if (typeof match !== "string" || match === "") {
    throw new ConfigError(
      where,
      `match must be a non-empty regular expression string, got ${describe(match)}`,
    );
  }
  let regex: RegExp;
  let groups: string[];
  try {
    regex = new RegExp(match);
    // An empty alternative always matches, and lists every named group.
    groups = Object.keys(new RegExp(`(?:${match})|`).exec("")?.groups ?? {});
  } catch (e) {
    const detail = e instanceof Error ? e.message : String(e);
    throw new ConfigError(where, `match is not a valid regular expression: ${detail}`);
  }
  if (!groups.includes("key")) {
    throw new ConfigError(where, `the regex has no (?<key>...) group: ${match}`);
  }
  const fixed = fields["domain"];
  const hasDomainGroup = groups.includes("domain");
  if (fixed === undefined) {
    if (!hasDomainGroup) {
      throw new ConfigError(
        where,
        `the regex has no (?<domain>...) group and no fixed domain is given: ${match}`,
      );
    }
    return { index, regex };
  }
  if (typeof fixed !== "string" || !DOMAIN.test(fixed)) {
    throw new ConfigError(
      where,
      `domain must be a MogileFS domain name (letters, digits, _, - and .), got ${
        typeof fixed === "string" ? JSON.stringify(fixed) : describe(fixed)
      }`,
    );
  }
  if (hasDomainGroup) {
    throw new ConfigError(
      where,
      `both a (?<domain>...) group and a fixed domain "${fixed}": keep one`,
    );
  }
  return { index, regex, domain: fixed };
}

function describe(raw: unknown): string {
  if (Array.isArray(raw)) return "a list";
  if (raw === null) return "null";
  if (typeof raw === "object") return "a table";
  return `a ${typeof raw}`;
}

/**
 * Parses a restore SOURCE (rules in the module doc).
 *
 * @param text the SOURCE as given
 * @param options.patterns URL patterns from {@linkcode compilePatterns} (default: none, so
 *   every URL is refused)
 * @throws {SyntaxError} naming the SOURCE and the problem, e.g.
 *   `No URL pattern matches "https://x/y" (2 patterns tried)`
 *
 * @example
 * ```ts
 * parseRestoreSource("fid:123"); // { kind: "id", id: 123 }
 * parseRestoreSource("ugc:product/1/texture.png");
 * // { kind: "domain-key", domain: "ugc", key: "product/1/texture.png" }
 * parseRestoreSource("./123"); // { kind: "key", key: "123" }
 * ```
 */
export function parseRestoreSource(
  text: string,
  options: { readonly patterns?: readonly UrlPattern[] } = {},
): RestoreSource {
  if (text === "") throw new SyntaxError("Invalid restore source: empty");
  if (text.startsWith("key:")) {
    const key = text.slice(4);
    if (key === "") throw new SyntaxError(`Invalid restore source "${text}": the key is empty`);
    return { kind: "key", key };
  }
  if (text.startsWith("fid:")) return { kind: "id", id: fileIdOf(text, text.slice(4)) };
  if (text.startsWith("mogilefs:")) return explicitDomainKey(text);
  if (DIGITS.test(text)) return { kind: "id", id: fileIdOf(text, text) };
  if (URL_START.test(text)) return matchUrl(text, options.patterns ?? []);
  if (text.startsWith("./")) {
    const key = text.slice(2);
    if (key === "") throw new SyntaxError(`Invalid restore source "${text}": the key is empty`);
    return { kind: "key", key };
  }
  const colon = text.indexOf(":");
  if (colon > 0 && DOMAIN.test(text.slice(0, colon))) {
    const domain = text.slice(0, colon);
    const key = text.slice(colon + 1);
    if (key === "") {
      throw new SyntaxError(
        `Invalid restore source "${text}": the key after the domain "${domain}" is empty ` +
          `(a file named "${text}" is written ./${text})`,
      );
    }
    return { kind: "domain-key", domain, key };
  }
  return { kind: "key", key: text };
}

function fileIdOf(text: string, digits: string): FileId {
  const id = DIGITS.test(digits) ? Number(digits) : NaN;
  if (!Number.isSafeInteger(id) || id < 1) {
    throw new SyntaxError(
      `Invalid restore source "${text}": the file id must be a positive whole number` +
        (DIGITS.test(digits) && id > 0 ? " below 2^53" : ""),
    );
  }
  return fileId(id);
}

function explicitDomainKey(text: string): RestoreSource {
  const rest = text.slice("mogilefs:".length);
  const slash = rest.indexOf("/");
  const domain = slash === -1 ? rest : rest.slice(0, slash);
  const key = slash === -1 ? "" : rest.slice(slash + 1);
  if (!DOMAIN.test(domain)) {
    throw new SyntaxError(
      `Invalid restore source "${text}": ${badDomain(domain)} (write mogilefs:DOMAIN/KEY)`,
    );
  }
  if (key === "") {
    throw new SyntaxError(
      `Invalid restore source "${text}": the key is empty (write mogilefs:DOMAIN/KEY)`,
    );
  }
  return { kind: "domain-key", domain, key };
}

function badDomain(domain: string): string {
  return domain === ""
    ? "the domain is empty"
    : `bad domain name "${domain}" (letters, digits, _, - and . only)`;
}

function matchUrl(url: string, patterns: readonly UrlPattern[]): RestoreSource {
  for (const p of patterns) {
    const m = p.regex.exec(url);
    if (m === null) continue;
    const where = `URL pattern ${p.index} matched "${url}" but`;
    const key = decodeCapture(where, "key", m.groups?.["key"]);
    const domain = p.domain ?? decodeCapture(where, "domain", m.groups?.["domain"]);
    if (key === "") throw new SyntaxError(`${where} its key is empty`);
    if (!DOMAIN.test(domain)) throw new SyntaxError(`${where} ${badDomain(domain)}`);
    return { kind: "url", url, domain, key, pattern: p.index };
  }
  throw new SyntaxError(
    `No URL pattern matches "${url}" (${
      patterns.length === 0
        ? "no url_patterns are configured"
        : `${patterns.length} pattern${patterns.length === 1 ? "" : "s"} tried`
    })`,
  );
}

function decodeCapture(
  where: string,
  group: string,
  captured: string | undefined,
): string {
  try {
    return decodeURIComponent(captured ?? "");
  } catch {
    throw new SyntaxError(`${where} its ${group} "${captured}" has bad percent-encoding`);
  }
}

/**
 * Parses a restore DEST (rules in the module doc).
 *
 * @param text the DEST as given
 * @throws {SyntaxError} naming the DEST and the problem, e.g.
 *   `Invalid restore destination "ftp:x": unknown destination "ftp:" ...`
 *
 * @example
 * ```ts
 * parseRestoreDest("mogilefs"); // { kind: "mogilefs-origin" }
 * parseRestoreDest("s3://restores/drill/");
 * // { kind: "s3", bucket: "restores", key: "drill/", prefix: true }
 * parseRestoreDest("out/a.png"); // { kind: "local", path: "out/a.png", prefix: false }
 * ```
 */
export function parseRestoreDest(text: string): RestoreDest {
  if (text === "") throw new SyntaxError("Invalid restore destination: empty");
  if (text.includes("\0")) {
    throw new SyntaxError(`Invalid restore destination "${text}": it contains a NUL character`);
  }
  if (text === "mogilefs") return { kind: "mogilefs-origin" };
  const scheme = SCHEME.exec(text)?.[1];
  if (scheme === undefined) return { kind: "local", path: text, prefix: text.endsWith("/") };
  if (scheme === "mogilefs") return mogileFsDest(text);
  const lower = scheme.toLowerCase();
  if (lower === "s3") return s3Dest(text);
  if (lower === "file") return fileDest(text);
  throw new SyntaxError(
    `Invalid restore destination "${text}": unknown destination "${scheme}:" ` +
      `(give mogilefs[:DOMAIN[/KEY]], s3://BUCKET/KEY or a local path; ` +
      `a local path with a colon is written ./${text})`,
  );
}

function mogileFsDest(text: string): RestoreDest {
  const rest = text.slice("mogilefs:".length);
  if (rest.startsWith("//")) {
    throw new SyntaxError(
      `Invalid restore destination "${text}": write mogilefs:DOMAIN[/KEY] ` +
        `(the trackers come from the configuration, not the destination)`,
    );
  }
  const slash = rest.indexOf("/");
  const domain = slash === -1 ? rest : rest.slice(0, slash);
  if (!DOMAIN.test(domain)) {
    throw new SyntaxError(
      `Invalid restore destination "${text}": ${badDomain(domain)} (write mogilefs:DOMAIN[/KEY])`,
    );
  }
  if (slash === -1) return { kind: "mogilefs", domain };
  const key = rest.slice(slash + 1);
  if (key === "") {
    throw new SyntaxError(
      `Invalid restore destination "${text}": the key after "${domain}/" is empty ` +
        `(write mogilefs:${domain} to keep each file's own key)`,
    );
  }
  return { kind: "mogilefs", domain, key, prefix: key.endsWith("/") };
}

function s3Dest(text: string): RestoreDest {
  const rest = text.slice(3);
  if (!rest.startsWith("//")) {
    throw new SyntaxError(`Invalid restore destination "${text}": expected s3://BUCKET/KEY`);
  }
  const path = rest.slice(2);
  if (/[?#]/.test(path)) {
    throw new SyntaxError(
      `Invalid restore destination "${text}": query and fragment are not supported ` +
        `(a ? or # in a key is written %3F or %23)`,
    );
  }
  const slash = path.indexOf("/");
  const bucket = slash === -1 ? path : path.slice(0, slash);
  if (bucket === "") {
    throw new SyntaxError(`Invalid restore destination "${text}": the bucket is missing`);
  }
  if (!BUCKET.test(bucket) || bucket.includes("..")) {
    throw new SyntaxError(
      `Invalid restore destination "${text}": bad bucket name "${bucket}" ` +
        `(3 to 63 lower-case letters, digits, dots and hyphens)`,
    );
  }
  const key = slash === -1 ? "" : decode(text, path.slice(slash + 1));
  return { kind: "s3", bucket, key, prefix: key === "" || key.endsWith("/") };
}

function fileDest(text: string): RestoreDest {
  const rest = text.slice(5);
  const m = /^\/\/(?:localhost)?(\/.*)$/i.exec(rest);
  if (m === null) {
    throw new SyntaxError(
      `Invalid restore destination "${text}": a file URL must name an absolute local path, ` +
        `as in file:///srv/restore/`,
    );
  }
  const path = decode(text, m[1]!);
  if (path.includes("\0")) {
    throw new SyntaxError(`Invalid restore destination "${text}": it contains a NUL character`);
  }
  return { kind: "local", path, prefix: path.endsWith("/") };
}

function decode(text: string, s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new SyntaxError(`Invalid restore destination "${text}": bad percent-encoding`);
  }
}

/**
 * Parses a batch file (rules in the module doc). Never throws for a bad
 * line: it is collected in `errors`, and the good lines are returned. With
 * `patterns`, each line's SOURCE and DEST are parsed too (a line that fails
 * goes to `errors`), and good lines carry the parsed `request`.
 *
 * @param text the whole file
 * @param options.patterns URL patterns from {@linkcode compilePatterns}; absent: fields only
 *
 * @example
 * ```ts
 * const batch = parseBatch('fid:1 /tmp/out/\n"ugc:a b.png" mogilefs\nfid:2\n', { patterns: [] });
 * batch.lines.length; // 2
 * batch.errors; // [{ line: 3, text: "fid:2", reason: "expected SOURCE DEST, found 1 field" }]
 * ```
 */
export function parseBatch(text: string): Batch<BatchLine>;
export function parseBatch(
  text: string,
  options: { readonly patterns: readonly UrlPattern[] },
): Batch<ParsedBatchLine>;
export function parseBatch(
  text: string,
  options?: { readonly patterns: readonly UrlPattern[] },
): Batch<BatchLine | ParsedBatchLine> {
  const lines: (BatchLine | ParsedBatchLine)[] = [];
  const errors: BatchError[] = [];
  const rows = (text.startsWith("\uFEFF") ? text.slice(1) : text).split("\n");
  for (let i = 0; i < rows.length; i++) {
    const row = rows[i]!;
    const lineText = row.endsWith("\r") ? row.slice(0, -1) : row;
    const line = i + 1;
    const split = splitFields(lineText);
    if (typeof split === "string") {
      errors.push({ line, text: lineText, reason: split });
      continue;
    }
    if (split.length === 0) continue;
    if (split.length !== 2) {
      errors.push({ line, text: lineText, reason: fieldCountReason(split.length) });
      continue;
    }
    const [source, dest] = split as [string, string];
    if (options === undefined) {
      lines.push({ line, source, dest });
      continue;
    }
    const reasons: string[] = [];
    let parsedSource: RestoreSource | undefined;
    let parsedDest: RestoreDest | undefined;
    try {
      parsedSource = parseRestoreSource(source, options);
    } catch (e) {
      reasons.push(reasonOf(e));
    }
    try {
      parsedDest = parseRestoreDest(dest);
    } catch (e) {
      reasons.push(reasonOf(e));
    }
    if (parsedSource === undefined || parsedDest === undefined) {
      errors.push({ line, text: lineText, reason: reasons.join("; ") });
      continue;
    }
    lines.push({ line, source, dest, request: { source: parsedSource, dest: parsedDest } });
  }
  return { lines, errors };
}

/**
 * The message a CLI prints for a bad batch line, e.g.
 * `Cannot parse restore line 7: expected SOURCE DEST, found 3 fields`.
 */
export function formatBatchError(error: BatchError): string {
  return `Cannot parse restore line ${error.line}: ${error.reason}`;
}

function reasonOf(e: unknown): string {
  if (!(e instanceof SyntaxError)) throw e;
  // Our messages start with a capital ("Invalid ...", "No URL pattern ...", "URL pattern ...");
  // after "line 7: " they read as one sentence.
  return e.message.startsWith("URL") ? e.message : e.message[0]!.toLowerCase() + e.message.slice(1);
}

function fieldCountReason(n: number): string {
  if (n === 1) return "expected SOURCE DEST, found 1 field";
  return `expected SOURCE DEST, found ${n} fields ` +
    "(a field with spaces is written in double quotes)";
}

/** The fields of one line, or the reason it cannot be split. */
function splitFields(line: string): string[] | string {
  const fields: string[] = [];
  let i = 0;
  while (true) {
    while (i < line.length && isBlank(line[i]!)) i++;
    if (i >= line.length || line[i] === "#") return fields;
    const n = fields.length + 1;
    if (line[i] === '"') {
      let value = "";
      let j = i + 1;
      let closed = false;
      while (j < line.length) {
        const c = line[j]!;
        if (c === '"') {
          closed = true;
          j++;
          break;
        }
        if (c === "\\") {
          const next = line[j + 1];
          if (next === '"' || next === "\\") {
            value += next;
            j += 2;
            continue;
          }
          if (next === undefined) break;
          return `field ${n}: unknown escape "\\${next}" in double quotes (only \\" and \\\\)`;
        }
        value += c;
        j++;
      }
      if (!closed) return `field ${n}: the double quote is never closed`;
      if (j < line.length && !isBlank(line[j]!)) {
        return `field ${n}: text right after the closing double quote ` +
          "(separate fields with a space)";
      }
      fields.push(value);
      i = j;
    } else {
      let j = i;
      while (j < line.length && !isBlank(line[j]!)) j++;
      const value = line.slice(i, j);
      if (value.includes('"')) {
        return `field ${n}: a double quote inside an unquoted field ` +
          `(quote the whole field, writing \\" for a quote)`;
      }
      fields.push(value);
      i = j;
    }
  }
}

function isBlank(c: string): boolean {
  return c === " " || c === "\t";
}
