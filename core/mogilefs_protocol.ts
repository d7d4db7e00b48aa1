/**
 * The MogileFS tracker's line protocol (PROTOCOLS.md section 1), without any
 * I/O: one request line `<command> <k=v&k=v>\r\n`, one answer line
 * `OK <k=v&...>\r\n` or `ERR <code> <text>\r\n`.
 *
 * Arguments are form-encoded the way MogileFS's Perl code does it: the
 * bytes `A-Za-z0-9_,-./\:` stay as they are, a space becomes `+`, every
 * other UTF-8 byte becomes `%XX` (upper-case hex). Decoding accepts any
 * standard form encoding (`+` for space, `%xx` in either case).
 *
 * @example
 * ```ts
 * requestLine("get_paths", { domain: "ugc", key: "a b/ü", noverify: 1 });
 * // "get_paths domain=ugc&key=a+b/%C3%BC&noverify=1\r\n"
 * parseResponse("OK paths=1&path1=http://10.0.0.5:7500/dev1/0/000/000/0000000123.fid\r\n");
 * // { ok: true, args: { paths: "1", path1: "http://10.0.0.5:7500/dev1/0/000/000/0000000123.fid" } }
 * parseResponse("ERR unknown_key unknown_key");
 * // { ok: false, code: "unknown_key", text: "unknown_key" }
 * ```
 * @module
 */

/** Decoded arguments of a request or an answer. */
export type MogileFsArgs = Record<string, string>;

/** One decoded answer line. */
export type MogileFsResponse =
  | {
    readonly ok: true;
    readonly args: MogileFsArgs;
    /**
     * Names of the arguments whose bytes were not valid UTF-8 (their values
     * hold U+FFFD in place of the bad bytes, so they cannot name the same
     * thing again). Absent when every value decoded cleanly.
     */
    readonly invalidUtf8?: readonly string[];
  }
  | { readonly ok: false; readonly code: string; readonly text: string };

const encoder = new TextEncoder();
const HEX = "0123456789ABCDEF";
/** Bytes kept as they are: A-Z a-z 0-9 _ , - . / \ : */
const KEEP = new Uint8Array(256);
for (const c of "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_,-./\\:") {
  KEEP[c.charCodeAt(0)] = 1;
}
/** A command name: what mogilefsd's `^(\w+)` accepts. */
const COMMAND = /^\w+$/;

/** Form-encodes one string (see the module notes). */
export function encodeValue(value: string): string {
  const bytes = encoder.encode(value);
  let out = "";
  for (const b of bytes) {
    if (KEEP[b] === 1) out += String.fromCharCode(b);
    else if (b === 0x20) out += "+";
    else out += "%" + HEX[b >> 4] + HEX[b & 15];
  }
  return out;
}

/**
 * Form-encodes a record as `k=v&k=v`, in the record's order. Numbers are
 * written in decimal; `undefined` values are left out.
 *
 * @throws {TypeError} a number that is not finite
 */
export function encodeArgs(
  args: Readonly<Record<string, string | number | undefined>>,
): string {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(args)) {
    if (v === undefined) continue;
    if (typeof v === "number" && !Number.isFinite(v)) {
      throw new TypeError(`Cannot encode MogileFS argument ${k}: ${v} is not a finite number`);
    }
    parts.push(`${encodeValue(k)}=${encodeValue(String(v))}`);
  }
  return parts.join("&");
}

/**
 * Decodes `k=v&k=v` (empty parts are skipped; a later key wins).
 *
 * @throws {SyntaxError} a part without `=`, or a `%` not followed by two hex digits
 */
export function decodeArgs(text: string): MogileFsArgs {
  return decodeArgsDetailed(text).args;
}

function decodeArgsDetailed(text: string): { args: MogileFsArgs; invalidUtf8: string[] } {
  const args: MogileFsArgs = {};
  const invalidUtf8: string[] = [];
  if (text === "") return { args, invalidUtf8 };
  for (const part of text.split("&")) {
    if (part === "") continue;
    const eq = part.indexOf("=");
    if (eq === -1) {
      throw new SyntaxError(`Malformed MogileFS arguments: "${clip(part)}" has no "="`);
    }
    const key = decodeComponent(part.slice(0, eq));
    const value = decodeComponent(part.slice(eq + 1));
    if (!key.valid) {
      throw new SyntaxError(`Malformed MogileFS arguments: the name "${clip(part)}" is not UTF-8`);
    }
    // defineProperty: a key named __proto__ is data, not the prototype.
    Object.defineProperty(args, key.text, {
      value: value.text,
      enumerable: true,
      writable: true,
      configurable: true,
    });
    if (!value.valid) invalidUtf8.push(key.text);
  }
  return { args, invalidUtf8 };
}

const fatalDecoder = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true });
const lenientDecoder = new TextDecoder("utf-8", { ignoreBOM: true });

function decodeComponent(s: string): { text: string; valid: boolean } {
  if (!s.includes("%") && !s.includes("+")) {
    // Plain bytes: only ASCII can arrive this way from a tracker, but a
    // line decoded from raw UTF-8 is passed through as it is.
    return { text: s, valid: true };
  }
  const bytes: number[] = [];
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0x2b) {
      bytes.push(0x20);
    } else if (c === 0x25) {
      const h = hexValue(s.charCodeAt(i + 1));
      const l = hexValue(s.charCodeAt(i + 2));
      if (h < 0 || l < 0) {
        throw new SyntaxError(
          `Malformed MogileFS arguments: bad escape "${clip(s.slice(i, i + 3))}" in "${clip(s)}"`,
        );
      }
      bytes.push(h * 16 + l);
      i += 2;
    } else if (c < 0x80) {
      bytes.push(c);
    } else {
      // A raw non-ASCII character (not from a conforming tracker): keep it.
      for (const b of encoder.encode(s[i]!)) bytes.push(b);
    }
  }
  const raw = new Uint8Array(bytes);
  try {
    return { text: fatalDecoder.decode(raw), valid: true };
  } catch {
    return { text: lenientDecoder.decode(raw), valid: false };
  }
}

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/**
 * A request line, `\r\n` included.
 *
 * @throws {TypeError} a command that is not a single word (`^\w+$`)
 */
export function requestLine(
  command: string,
  args: Readonly<Record<string, string | number | undefined>> = {},
): string {
  if (!COMMAND.test(command)) {
    throw new TypeError(`Invalid MogileFS command "${clip(command)}": not a single word`);
  }
  return `${command} ${encodeArgs(args)}\r\n`;
}

/**
 * Parses one answer line (a trailing `\r\n` or `\n` is ignored).
 *
 * @throws {SyntaxError} naming what is wrong: neither `OK` nor `ERR`, an
 *   `ERR` without a code, or malformed arguments
 */
export function parseResponse(line: string): MogileFsResponse {
  const text = line.replace(/\r?\n$/, "");
  if (text === "OK" || text.startsWith("OK ")) {
    const { args, invalidUtf8 } = decodeArgsDetailed(text.slice(3).trimEnd());
    return invalidUtf8.length > 0 ? { ok: true, args, invalidUtf8 } : { ok: true, args };
  }
  if (text === "ERR" || text.startsWith("ERR ")) {
    const rest = text.slice(4);
    const space = rest.indexOf(" ");
    const code = space === -1 ? rest : rest.slice(0, space);
    if (code === "" || /\s/.test(code)) {
      throw new SyntaxError(`Malformed MogileFS answer "${clip(text)}": ERR without a code`);
    }
    const encoded = space === -1 ? "" : rest.slice(space + 1).trim();
    let message: string;
    try {
      message = decodeComponent(encoded).text;
    } catch {
      message = encoded; // The text is for people: keep it as sent.
    }
    return { ok: false, code, text: message };
  }
  throw new SyntaxError(
    `Malformed MogileFS answer "${clip(text)}": expected a line starting with OK or ERR`,
  );
}

/** At most 80 characters of `s`, for error messages about untrusted text. */
function clip(s: string): string {
  let flat = "";
  for (const c of s.length > 200 ? s.slice(0, 200) : s) {
    const code = c.charCodeAt(0);
    flat += code < 0x20 || code === 0x7f ? `\\x${code.toString(16).padStart(2, "0")}` : c;
  }
  return flat.length > 80 ? `${flat.slice(0, 77)}...` : flat;
}
