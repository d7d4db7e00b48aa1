/**
 * Safe tar entry names for source keys.
 *
 * A source key (a relative path, an S3 key, a MogileFS key with its domain)
 * becomes a tar entry name that cannot escape an extraction directory and
 * that maps back to exactly one key. The escaping scheme, applied by
 * {@linkcode safeEntryName} and undone by {@linkcode decodeEntryName}:
 *
 * | in the key | in the entry name |
 * |---|---|
 * | `%` | `%25` |
 * | NUL | `%00` |
 * | a lone UTF-16 surrogate `\uD800` | `%uD800` (four upper-case hex digits) |
 * | a `/` at the start or the end, or next to another `/` | `%2F` |
 * | a whole segment `.` | `%2E` |
 * | a whole segment `..` | `%2E%2E` |
 * | `.coldpack` as the first segment of the name (coldpack's own entries) | `%2Ecoldpack` |
 *
 * Everything else (unicode, spaces, newlines, backslashes) is kept as is:
 * pax headers carry any UTF-8 name. Every remaining `/` therefore separates
 * two non-empty segments, and no segment is `.` or `..`. A key whose name
 * needs no escaping is returned unchanged (the common case, and fast).
 *
 * With a MogileFS domain the name is `<domain>/<key>`, the domain escaped as
 * one segment (a `/` inside it becomes `%2F`). Names are unique within one
 * source: two different keys (or domain + key pairs) never get the same name.
 *
 * @example
 * ```ts
 * safeEntryName("photos/2024/cat.jpg"); // "photos/2024/cat.jpg"
 * safeEntryName("../etc/passwd"); // "%2E%2E/etc/passwd"
 * safeEntryName("/abs//x%y"); // "%2Fabs%2F%2Fx%25y"
 * safeEntryName("product/1/t.png", { domain: "ugc" }); // "ugc/product/1/t.png"
 * ```
 * @module
 */

/** The first segment reserved for coldpack's own entries (the manifest). */
const RESERVED_FIRST_SEGMENT = ".coldpack";

/** Anything in a key that the fast path cannot pass through unchanged. */
const NEEDS_ESCAPE = /[%\0]|\/\/|^\/|\/$|(?:^|\/)\.\.?(?:\/|$)/;
/** Characters escaped inside a key: `%`, NUL, lone surrogates, and `/` that do not separate two non-empty segments. */
const KEY_ESCAPES = /[%\0\uD800-\uDFFF]|(?<![^/])\/|\/(?![^/])/gu;
/** Characters escaped inside a domain (every `/`). */
const DOMAIN_ESCAPES = /[%\0/\uD800-\uDFFF]/gu;

function escapeChar(c: string): string {
  switch (c) {
    case "%":
      return "%25";
    case "\0":
      return "%00";
    case "/":
      return "%2F";
    default:
      // A lone surrogate (the regexes match nothing else).
      return "%u" + c.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
  }
}

function escapeDots(segment: string): string {
  if (segment === ".") return "%2E";
  if (segment === "..") return "%2E%2E";
  return segment;
}

function escapeKey(key: string): string {
  const segments = key.replace(KEY_ESCAPES, escapeChar).split("/");
  for (let i = 0; i < segments.length; i++) segments[i] = escapeDots(segments[i]!);
  return segments.join("/");
}

function escapeReserved(name: string): string {
  if (
    name.startsWith(RESERVED_FIRST_SEGMENT) &&
    (name.length === RESERVED_FIRST_SEGMENT.length || name[RESERVED_FIRST_SEGMENT.length] === "/")
  ) {
    return "%2E" + name.slice(1);
  }
  return name;
}

/**
 * Turns a source key into a safe, reversible tar entry name (see the module
 * documentation for the escaping scheme).
 *
 * @param key the key at the source: a relative path, an S3 key or a MogileFS key
 * @param options `domain`: the MogileFS domain, which becomes the first segment (default: none)
 * @returns a `/`-separated name with no leading `/`, no empty, `.` or `..`
 *   segment and no NUL, for which {@linkcode isSafeEntryName} is true
 * @throws {RangeError} when the key or the domain is empty
 *
 * @example
 * ```ts
 * safeEntryName("a/./b/../c"); // "a/%2E/b/%2E%2E/c"
 * ```
 */
export function safeEntryName(key: string, options?: { domain?: string }): string {
  if (typeof key !== "string") {
    throw new TypeError(`Cannot make a tar entry name: key is ${typeof key}`);
  }
  if (key.length === 0) throw new RangeError("Cannot make a tar entry name: empty key");
  const domain = options?.domain;
  const fast = !NEEDS_ESCAPE.test(key) && key.isWellFormed();
  const escapedKey = fast ? key : escapeKey(key);
  if (domain === undefined) return escapeReserved(escapedKey);
  if (domain.length === 0) throw new RangeError("Cannot make a tar entry name: empty domain");
  const escapedDomain = escapeReserved(escapeDots(domain.replace(DOMAIN_ESCAPES, escapeChar)));
  return `${escapedDomain}/${escapedKey}`;
}

const ESCAPE = /%(?:([0-9A-F]{2})|u([0-9A-F]{4}))/g;
const DECODABLE = /^(?:[^%]|%[0-9A-F]{2}|%u[0-9A-F]{4})*$/;

function unescapeSegment(segment: string): string {
  if (!segment.includes("%")) return segment;
  return segment.replace(
    ESCAPE,
    (_m, byte: string | undefined, unit: string | undefined) =>
      String.fromCharCode(parseInt(byte ?? unit!, 16)),
  );
}

/**
 * Undoes {@linkcode safeEntryName}: the key (and domain) an entry name came from.
 *
 * @param name a name made by {@linkcode safeEntryName}
 * @param options `domain`: true when the name was made with a domain (default: false)
 * @throws {SyntaxError} when the name has a malformed escape, or no domain segment when one is expected
 *
 * @example
 * ```ts
 * decodeEntryName("ugc/a%25b", { domain: true }); // { domain: "ugc", key: "a%b" }
 * ```
 */
export function decodeEntryName(
  name: string,
  options?: { domain?: boolean },
): { key: string; domain?: string } {
  if (!DECODABLE.test(name)) {
    throw new SyntaxError(`Cannot decode tar entry name "${name}": malformed % escape`);
  }
  const segments = name.split("/");
  if (options?.domain) {
    if (segments.length < 2) {
      throw new SyntaxError(`Cannot decode tar entry name "${name}": no domain segment`);
    }
    const domain = unescapeSegment(segments[0]!);
    return { domain, key: segments.slice(1).map(unescapeSegment).join("/") };
  }
  return { key: segments.map(unescapeSegment).join("/") };
}

/**
 * Whether a tar entry name read from an archive is safe to extract below a
 * destination directory: not empty, not absolute, no `..` segment, no NUL.
 * Use it on every name before joining it to a destination path (a backslash
 * is an ordinary character on the POSIX systems coldpack extracts on).
 *
 * @example
 * ```ts
 * isSafeEntryName("a/b.txt"); // true
 * isSafeEntryName("../x"); // false
 * isSafeEntryName("/etc/passwd"); // false
 * ```
 */
export function isSafeEntryName(name: string): boolean {
  if (typeof name !== "string" || name.length === 0) return false;
  if (name.includes("\0")) return false;
  if (name.startsWith("/")) return false;
  for (const segment of name.split("/")) {
    if (segment === "..") return false;
  }
  return true;
}
