/**
 * Parses the `--source` URL that picks a `Source` implementation (see `ports.ts`).
 *
 * | text | result |
 * |---|---|
 * | `/srv/uploads`, `file:///srv/uploads` | `{ kind: "dir", path: "/srv/uploads" }` |
 * | `mogilefs://t1:7001,t2:7001/ugc` | `{ kind: "mogilefs", trackers: [...], domain: "ugc" }` |
 * | `mogilefs://t1:7001` | every domain (no `domain` property) |
 * | `s3://bucket/photos/` | `{ kind: "s3", bucket: "bucket", prefix: "photos/" }` |
 *
 * Pure: no I/O.
 * @module
 */

/** One MogileFS tracker address. */
export interface TrackerAddress {
  /** Host name or IP address; an IPv6 address without brackets. */
  readonly host: string;
  readonly port: number;
}

/** A local directory tree. */
export interface DirSourceUrl {
  readonly kind: "dir";
  /** Absolute path, percent-decoded, without a trailing `/` (except the root `/`). */
  readonly path: string;
}

/** A MogileFS installation reached through its trackers. */
export interface MogileFsSourceUrl {
  readonly kind: "mogilefs";
  /** At least one tracker, in the order given. */
  readonly trackers: readonly TrackerAddress[];
  /** The one domain to back up; absent: every domain. */
  readonly domain?: string;
}

/** An S3 bucket, or the part of it under a key prefix. */
export interface S3SourceUrl {
  readonly kind: "s3";
  readonly bucket: string;
  /** Key prefix exactly as given (percent-decoded), `""` for the whole bucket. */
  readonly prefix: string;
}

/** What a `--source` URL names. */
export type SourceUrl = DirSourceUrl | MogileFsSourceUrl | S3SourceUrl;

/** The tracker port when a `mogilefs://` host gives none. */
export const DEFAULT_TRACKER_PORT = 7001;

const SCHEMES = ["file", "mogilefs", "s3"];
const SCHEME = /^([A-Za-z][A-Za-z0-9+.-]*):/;
const HOST_NAME =
  /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;
const IPV6 = /^[0-9A-Fa-f:.]+$/;
const BUCKET = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;

/**
 * Parses a `--source` value.
 *
 * @param text the flag's value
 * @returns what it names
 * @throws {SyntaxError} naming the problem, e.g.
 *   `Unsupported source URL "ftp://x": scheme must be file, mogilefs or s3`
 *
 * @example
 * ```ts
 * parseSourceUrl("mogilefs://10.0.0.1:7001,10.0.0.2/ugc");
 * // { kind: "mogilefs", trackers: [{ host: "10.0.0.1", port: 7001 },
 * //   { host: "10.0.0.2", port: 7001 }], domain: "ugc" }
 * ```
 */
export function parseSourceUrl(text: string): SourceUrl {
  if (text.length === 0) throw new SyntaxError("Invalid source URL: empty");
  if (text.startsWith("/")) return { kind: "dir", path: dirPath(text, text) };
  const scheme = SCHEME.exec(text)?.[1]?.toLowerCase();
  if (scheme === undefined) {
    throw new SyntaxError(
      `Invalid source path "${text}": the path must be absolute (start with /) or be a file://, mogilefs:// or s3:// URL`,
    );
  }
  if (!SCHEMES.includes(scheme)) {
    throw new SyntaxError(
      `Unsupported source URL "${text}": scheme must be file, mogilefs or s3`,
    );
  }
  if (!text.slice(scheme.length + 1).startsWith("//")) {
    throw new SyntaxError(
      `Invalid source URL "${text}": expected ${scheme}:// followed by ${
        scheme === "file" ? "an absolute path" : scheme === "s3" ? "a bucket" : "tracker hosts"
      }`,
    );
  }
  const rest = text.slice(scheme.length + 3);
  if (/[?#]/.test(rest)) {
    throw new SyntaxError(`Invalid source URL "${text}": query and fragment are not supported`);
  }
  switch (scheme) {
    case "file":
      return parseFile(text, rest);
    case "mogilefs":
      return parseMogileFs(text, rest);
    default: // "s3": SCHEMES was checked above.
      return parseS3(text, rest);
  }
}

/**
 * The id recorded with every file of a MogileFS or S3 source:
 * `mogilefs:DOMAIN` (`mogilefs:*` for every domain; tracker hosts change
 * over time, so they are not part of it) or `s3://BUCKET/PREFIX`. A
 * directory's id needs its real path, which only its adapter can learn.
 */
export function remoteSourceId(url: MogileFsSourceUrl | S3SourceUrl): string {
  return url.kind === "mogilefs"
    ? `mogilefs:${url.domain ?? "*"}`
    : `s3://${url.bucket}/${url.prefix}`;
}

/** A short description of a source URL for logs, e.g. `mogilefs://t1:7001/ugc`. */
export function formatSourceUrl(url: SourceUrl): string {
  switch (url.kind) {
    case "dir":
      return url.path;
    case "mogilefs": {
      const hosts = url.trackers.map((t) =>
        `${t.host.includes(":") ? `[${t.host}]` : t.host}:${t.port}`
      );
      return `mogilefs://${hosts.join(",")}/${url.domain ?? ""}`;
    }
    case "s3":
      return `s3://${url.bucket}/${url.prefix}`;
  }
}

function parseFile(text: string, rest: string): DirSourceUrl {
  // file:///abs/path (empty host) or file://localhost/abs/path.
  const slash = rest.indexOf("/");
  const host = slash === -1 ? rest : rest.slice(0, slash);
  if (slash === -1 || (host !== "" && host.toLowerCase() !== "localhost")) {
    throw new SyntaxError(
      `Invalid source URL "${text}": a file URL must name an absolute local path, as in file:///srv/uploads`,
    );
  }
  return { kind: "dir", path: dirPath(text, decode(text, rest.slice(slash))) };
}

function dirPath(text: string, path: string): string {
  if (!path.startsWith("/")) {
    throw new SyntaxError(`Invalid source path "${text}": the path must be absolute`);
  }
  if (path.includes("\0")) {
    throw new SyntaxError(`Invalid source path "${text}": the path contains a NUL character`);
  }
  const trimmed = path.replace(/\/+$/, "");
  return trimmed === "" ? "/" : trimmed;
}

function parseMogileFs(text: string, rest: string): MogileFsSourceUrl {
  const slash = rest.indexOf("/");
  const authority = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? "" : rest.slice(slash + 1);
  if (authority === "") {
    throw new SyntaxError(`Invalid source URL "${text}": at least one tracker host is required`);
  }
  const trackers = authority.split(",").map((part) => tracker(text, part));
  const domain = decode(text, path.replace(/\/+$/, ""));
  if (domain.includes("/")) {
    throw new SyntaxError(`Invalid source URL "${text}": the domain "${domain}" contains a /`);
  }
  return domain === "" ? { kind: "mogilefs", trackers } : { kind: "mogilefs", trackers, domain };
}

function tracker(text: string, part: string): TrackerAddress {
  let host: string;
  let portText: string | undefined;
  if (part.startsWith("[")) {
    const close = part.indexOf("]");
    host = close === -1 ? "" : part.slice(1, close);
    const after = close === -1 ? "" : part.slice(close + 1);
    if (close === -1 || !IPV6.test(host) || (after !== "" && !after.startsWith(":"))) {
      throw new SyntaxError(`Invalid source URL "${text}": bad tracker address "${part}"`);
    }
    portText = after === "" ? undefined : after.slice(1);
  } else {
    const colon = part.lastIndexOf(":");
    host = colon === -1 ? part : part.slice(0, colon);
    portText = colon === -1 ? undefined : part.slice(colon + 1);
    if (!HOST_NAME.test(host)) {
      throw new SyntaxError(
        `Invalid source URL "${text}": bad tracker host "${host}"${host === "" ? " (empty)" : ""}`,
      );
    }
  }
  if (portText === undefined) return { host, port: DEFAULT_TRACKER_PORT };
  const port = /^[0-9]{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (!(port >= 1 && port <= 65535)) {
    throw new SyntaxError(
      `Invalid source URL "${text}": bad tracker port "${portText}" (must be 1 to 65535)`,
    );
  }
  return { host, port };
}

function parseS3(text: string, rest: string): S3SourceUrl {
  const slash = rest.indexOf("/");
  const bucket = slash === -1 ? rest : rest.slice(0, slash);
  if (bucket === "") throw new SyntaxError(`Invalid source URL "${text}": the bucket is missing`);
  if (!BUCKET.test(bucket) || bucket.includes("..")) {
    throw new SyntaxError(
      `Invalid source URL "${text}": bad bucket name "${bucket}" (3 to 63 lower-case letters, digits, dots and hyphens)`,
    );
  }
  return { kind: "s3", bucket, prefix: slash === -1 ? "" : decode(text, rest.slice(slash + 1)) };
}

function decode(text: string, s: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new SyntaxError(`Invalid source URL "${text}": bad percent-encoding`);
  }
}
