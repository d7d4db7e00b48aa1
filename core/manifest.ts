/**
 * The archive manifest and the archive description: what keeps a vault
 * understandable without the catalog.
 *
 * The manifest is the last tar entry, {@linkcode MANIFEST_NAME}: UTF-8 JSON
 * listing every file of the archive with its source identity, md5 and tar
 * offsets. The description (the only metadata Glacier keeps with an
 * archive) is one line of printable ASCII, at most 1,024 characters:
 *
 * ```
 * coldpack/1 id=20261122T105301Z-1a2b3c4d5e6f files=412 fid=1000-1411 src=dir:/srv/uploads
 * ```
 *
 * @module
 */

import { type ArchiveId, archiveId, type FileId, fileId, type SourceId, sourceId } from "./ids.ts";
import { isSafeEntryName } from "./safe_name.ts";

/** The tar entry name of the manifest (reserved: `safeEntryName` never yields a name under `.coldpack/`). */
export const MANIFEST_NAME = ".coldpack/manifest.json";
/** The manifest format this code writes and reads. */
export const MANIFEST_FORMAT = 1;

/** One file of an archive, as the manifest records it. */
export interface ManifestFile {
  /** The catalog's id of this file version. */
  readonly fileId: FileId;
  /** The key at the source. */
  readonly key: string;
  /** The source's version string. */
  readonly version: string;
  /** MogileFS domain, when the source has domains. */
  readonly domain?: string;
  /** MogileFS class, when known. */
  readonly class?: string;
  /** The source's own numeric id (MogileFS fid), when it has one. */
  readonly sourceFid?: number;
  /** The tar entry name. */
  readonly name: string;
  /** Length in bytes. */
  readonly length: number;
  /** Lower-case hex md5 of the bytes. */
  readonly md5: string;
  /** Modification time, ISO 8601 (`2026-11-22T10:53:01.000Z`). */
  readonly mtime: string;
  /** Offset of the file's first tar header block (its pax header if it has one). */
  readonly headerOffset: number;
  /** Offset of its first data byte. */
  readonly dataOffset: number;
}

/** The manifest of one archive. */
export interface ArchiveManifest {
  readonly format: 1;
  readonly archiveId: ArchiveId;
  /** The source's id, e.g. `dir:/srv/uploads`. */
  readonly source: SourceId;
  /** When the bundle was closed, ISO 8601. */
  readonly createdAt: string;
  /** The files, in tar order. */
  readonly files: readonly ManifestFile[];
}

const encoder = new TextEncoder();
const MD5 = /^[0-9a-f]{32}$/;
const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:Z|[+-]\d{2}:\d{2})$/;

/** The file's fields in their fixed order, optional ones only when present. */
function orderedFile(f: ManifestFile): Record<string, unknown> {
  const o: Record<string, unknown> = { fileId: f.fileId, key: f.key, version: f.version };
  if (f.domain !== undefined) o.domain = f.domain;
  if (f.class !== undefined) o.class = f.class;
  if (f.sourceFid !== undefined) o.sourceFid = f.sourceFid;
  o.name = f.name;
  o.length = f.length;
  o.md5 = f.md5;
  o.mtime = f.mtime;
  o.headerOffset = f.headerOffset;
  o.dataOffset = f.dataOffset;
  return o;
}

/**
 * Serializes a manifest: UTF-8 JSON with a fixed key order, one file per
 * line. The same manifest always gives the same bytes. The manifest is
 * validated first, so that what is written can be read back.
 *
 * @throws {SyntaxError} like {@linkcode parseManifest}, naming the bad field
 *
 * @example
 * ```ts
 * const bytes = buildManifest(manifest);
 * parseManifest(bytes); // deep-equals manifest
 * ```
 */
export function buildManifest(m: ArchiveManifest): Uint8Array {
  validateManifest(m);
  const head = JSON.stringify({
    format: m.format,
    archiveId: m.archiveId,
    source: m.source,
    createdAt: m.createdAt,
  });
  const files = m.files.map((f) => JSON.stringify(orderedFile(f)));
  const body = files.length === 0 ? "[]" : `[\n${files.join(",\n")}\n]`;
  return encoder.encode(`${head.slice(0, -1)},"files":${body}}\n`);
}

function fail(field: string, why: string): never {
  throw new SyntaxError(`Cannot parse manifest: ${field} ${why}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

function str(o: Record<string, unknown>, key: string, path: string): string {
  const v = o[key];
  if (typeof v !== "string") fail(path, v === undefined ? "is missing" : "is not a string");
  return v;
}

function offset(o: Record<string, unknown>, key: string, path: string): number {
  const v = o[key];
  if (!Number.isSafeInteger(v) || (v as number) < 0) {
    fail(path, v === undefined ? "is missing" : "is not a non-negative integer");
  }
  return v as number;
}

function iso(o: Record<string, unknown>, key: string, path: string): string {
  const v = str(o, key, path);
  if (!ISO.test(v) || Number.isNaN(Date.parse(v))) fail(path, `is not an ISO 8601 time: "${v}"`);
  return v;
}

function parseFile(v: unknown, i: number): ManifestFile {
  const at = `files[${i}]`;
  if (!isObject(v)) fail(at, "is not an object");
  const rawId = v.fileId;
  if (!Number.isSafeInteger(rawId) || (rawId as number) <= 0) {
    fail(`${at}.fileId`, rawId === undefined ? "is missing" : "is not a positive integer");
  }
  const key = str(v, "key", `${at}.key`);
  if (key.length === 0) fail(`${at}.key`, "is empty");
  const version = str(v, "version", `${at}.version`);
  const domain = v.domain === undefined ? undefined : str(v, "domain", `${at}.domain`);
  const cls = v.class === undefined ? undefined : str(v, "class", `${at}.class`);
  const sourceFid = v.sourceFid === undefined
    ? undefined
    : offset(v, "sourceFid", `${at}.sourceFid`);
  const name = str(v, "name", `${at}.name`);
  if (!isSafeEntryName(name) || name === MANIFEST_NAME) {
    fail(`${at}.name`, `is not a safe entry name: ${JSON.stringify(name)}`);
  }
  const length = offset(v, "length", `${at}.length`);
  const md5 = str(v, "md5", `${at}.md5`);
  if (!MD5.test(md5)) fail(`${at}.md5`, "is not 32 lower-case hex digits");
  const mtime = iso(v, "mtime", `${at}.mtime`);
  const headerOffset = offset(v, "headerOffset", `${at}.headerOffset`);
  const dataOffset = offset(v, "dataOffset", `${at}.dataOffset`);
  if (headerOffset % 512 !== 0) fail(`${at}.headerOffset`, "is not a multiple of 512");
  if (dataOffset % 512 !== 0 || dataOffset <= headerOffset) {
    fail(`${at}.dataOffset`, "is not a block boundary after headerOffset");
  }
  return {
    fileId: fileId(rawId as number),
    key,
    version,
    ...(domain === undefined ? {} : { domain }),
    ...(cls === undefined ? {} : { class: cls }),
    ...(sourceFid === undefined ? {} : { sourceFid }),
    name,
    length,
    md5,
    mtime,
    headerOffset,
    dataOffset,
  };
}

function parseObject(v: unknown): ArchiveManifest {
  if (!isObject(v)) fail("the top level", "is not an object");
  if (v.format !== MANIFEST_FORMAT) {
    fail(
      "format",
      v.format === undefined ? "is missing" : `${JSON.stringify(v.format)} is not supported`,
    );
  }
  const id = str(v, "archiveId", "archiveId");
  let archive: ArchiveId;
  try {
    archive = archiveId(id);
  } catch {
    fail("archiveId", `is not a valid archive id: "${id}"`);
  }
  const source = str(v, "source", "source");
  if (source.length === 0) fail("source", "is empty");
  const createdAt = iso(v, "createdAt", "createdAt");
  if (!Array.isArray(v.files)) {
    fail("files", v.files === undefined ? "is missing" : "is not an array");
  }
  const files = v.files.map(parseFile);
  return {
    format: MANIFEST_FORMAT,
    archiveId: archive,
    source: sourceId(source),
    createdAt,
    files,
  };
}

function validateManifest(m: ArchiveManifest): void {
  // The same checks the reader applies, so that what is written can be read.
  parseObject(m);
}

/**
 * Parses and validates manifest bytes. Unknown fields are ignored (a later
 * format 1 writer may add some); a different `format` is refused.
 *
 * @throws {SyntaxError} naming the field: `Cannot parse manifest: files[3].md5 is not 32 lower-case hex digits`
 */
export function parseManifest(bytes: Uint8Array): ArchiveManifest {
  let v: unknown;
  try {
    v = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw new SyntaxError(
      `Cannot parse manifest: not UTF-8 JSON: ${e instanceof Error ? e.message : e}`,
    );
  }
  return parseObject(v);
}

// ---------------------------------------------------------------------------
// Archive description

/** Glacier's limit on an archive description, in characters. */
export const DESCRIPTION_MAX = 1024;

/**
 * Why `description` cannot be an archive or retrieval description (Glacier's
 * rule: at most 1,024 characters of printable ASCII, 32..126), or `null`
 * when it can. Every store checks with this and throws its own error class.
 */
export function descriptionProblem(description: string): string | null {
  if (description.length > DESCRIPTION_MAX) {
    return `${description.length} characters, at most 1,024`;
  }
  for (let i = 0; i < description.length; i++) {
    const c = description.charCodeAt(i);
    if (c < 32 || c > 126) {
      return `character ${c} at index ${i} is not printable ASCII (32..126)`;
    }
  }
  return null;
}

/**
 * Throws a `RangeError` naming `what` (e.g. `archive X`, `retrieval`) when
 * `description` breaks {@linkcode descriptionProblem}'s rule.
 */
export function checkDescription(description: string, what: string): void {
  const problem = descriptionProblem(description);
  if (problem !== null) throw new RangeError(`Invalid description for ${what}: ${problem}`);
}

/** What an archive description says. */
export interface ArchiveDescription {
  readonly format: 1;
  readonly archiveId: ArchiveId;
  /** Number of files in the archive. */
  readonly count: number;
  /** Lowest and highest file id in the archive. */
  readonly fidMin: FileId;
  readonly fidMax: FileId;
  /** The source id, or its beginning when `sourceTruncated`. */
  readonly source: string;
  /** True when the source was cut to fit the 1,024-character limit. */
  readonly sourceTruncated: boolean;
}

const DESCRIPTION =
  /^coldpack\/1 id=([A-Za-z0-9][A-Za-z0-9._-]{0,127}) files=(\d{1,15}) fid=(\d{1,16})-(\d{1,16}) (src|srcprefix)=([\x21-\x7e]*)$/;

/** Percent-escapes one code point unless it is printable ASCII other than `%`. */
function escapeCodePoint(c: string): string {
  const code = c.codePointAt(0)!;
  if (code > 0x20 && code < 0x7f && code !== 0x25) return c;
  let out = "";
  for (const b of encoder.encode(c)) out += "%" + b.toString(16).toUpperCase().padStart(2, "0");
  return out;
}

/**
 * Makes the archive description: printable ASCII (32..126), at most 1,024
 * characters. The source is percent-escaped (UTF-8, `%` and space escaped)
 * and, when too long, cut at a character boundary and marked `srcprefix=`.
 *
 * @param d `fileIds`: the archive's file ids, or their `{ min, max }`; `count`: the number of files
 * @throws {RangeError} for no file ids, a file id that is not a positive integer or a negative count
 * @throws {SyntaxError} for an invalid archive id
 *
 * @example
 * ```ts
 * describeArchive({ archiveId: id, fileIds: [1000, 1411], count: 2, source: "dir:/srv/up loads" });
 * // "coldpack/1 id=... files=2 fid=1000-1411 src=dir:/srv/up%20loads"
 * ```
 */
export function describeArchive(d: {
  readonly archiveId: string;
  readonly fileIds: readonly number[] | { readonly min: number; readonly max: number };
  readonly count: number;
  readonly source: string;
}): string {
  const id = archiveId(d.archiveId);
  let min: number;
  let max: number;
  if (Array.isArray(d.fileIds)) {
    const ids = d.fileIds as readonly number[];
    if (ids.length === 0) throw new RangeError("Cannot describe archive: no file ids");
    min = Infinity;
    max = -Infinity;
    for (const f of ids) {
      if (f < min) min = f;
      if (f > max) max = f;
    }
  } else {
    ({ min, max } = d.fileIds as { min: number; max: number });
  }
  fileId(min);
  fileId(max);
  if (min > max) {
    throw new RangeError(`Cannot describe archive: fid range ${min}-${max} is inverted`);
  }
  if (!Number.isSafeInteger(d.count) || d.count < 0) {
    throw new RangeError(`Cannot describe archive: invalid count ${d.count}`);
  }
  const head = `coldpack/1 id=${id} files=${d.count} fid=${min}-${max} `;
  let src = "";
  for (const c of d.source) src += escapeCodePoint(c);
  if (head.length + 4 + src.length <= DESCRIPTION_MAX) return `${head}src=${src}`;
  // Too long: keep whole escaped code points while they fit.
  const room = DESCRIPTION_MAX - head.length - "srcprefix=".length;
  let cut = "";
  for (const c of d.source) {
    const e = escapeCodePoint(c);
    if (cut.length + e.length > room) break;
    cut += e;
  }
  return `${head}srcprefix=${cut}`;
}

/**
 * Reads an archive description made by {@linkcode describeArchive}.
 * Returns `null` for anything else (another tool's archive, a later format).
 *
 * @example
 * ```ts
 * parseDescription("coldpack/1 id=a files=1 fid=5-5 src=x")?.fidMin; // 5
 * parseDescription("my holiday photos"); // null
 * ```
 */
export function parseDescription(s: string): ArchiveDescription | null {
  const m = DESCRIPTION.exec(s);
  if (m === null || s.length > DESCRIPTION_MAX) return null;
  const [, id, count, min, max, kind, src] = m;
  const fidMin = Number(min);
  const fidMax = Number(max);
  if (
    !Number.isSafeInteger(fidMin) || !Number.isSafeInteger(fidMax) || fidMin < 1 || fidMin > fidMax
  ) return null;
  let source: string;
  try {
    source = decodeURIComponent(src!);
  } catch {
    return null;
  }
  return {
    format: 1,
    archiveId: archiveId(id!),
    count: Number(count),
    fidMin: fileId(fidMin),
    fidMax: fileId(fidMax),
    source,
    sourceTruncated: kind === "srcprefix",
  };
}
