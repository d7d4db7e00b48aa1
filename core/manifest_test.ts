import assert from "node:assert/strict";
import { archiveId, fileId, sourceId } from "./ids.ts";
import {
  type ArchiveManifest,
  buildManifest,
  describeArchive,
  DESCRIPTION_MAX,
  descriptionProblem,
  MANIFEST_FORMAT,
  MANIFEST_NAME,
  type ManifestFile,
  parseDescription,
  parseManifest,
} from "./manifest.ts";
import { safeEntryName } from "./safe_name.ts";

const ID = archiveId("20261122T105301Z-1a2b3c4d5e6f");

function file(n: number, extra: Partial<ManifestFile> = {}): ManifestFile {
  return {
    fileId: fileId(n),
    key: `product/${n}/texture.png`,
    version: String(n),
    name: `ugc/product/${n}/texture.png`,
    length: 100 * n,
    md5: "0123456789abcdef0123456789abcdef",
    mtime: "2026-11-22T10:53:01.000Z",
    headerOffset: 1024 * n,
    dataOffset: 1024 * n + 512,
    ...extra,
  };
}

const MANIFEST: ArchiveManifest = {
  format: 1,
  archiveId: ID,
  source: sourceId("mogilefs://tracker:7001/ugc"),
  createdAt: "2026-11-22T10:53:30.123Z",
  files: [
    file(1, { domain: "ugc", class: "images", sourceFid: 123 }),
    file(2, {
      key: "ünï\ncödé",
      name: safeEntryName("ünï\ncödé", { domain: "ugc" }),
      domain: "ugc",
    }),
    file(3),
  ],
};

function bytesOf(v: unknown): Uint8Array {
  return new TextEncoder().encode(JSON.stringify(v));
}

function withFile(patch: Record<string, unknown>): Uint8Array {
  const v = JSON.parse(new TextDecoder().decode(buildManifest(MANIFEST)));
  Object.assign(v.files[1], patch);
  return bytesOf(v);
}

Deno.test("manifest constants", () => {
  assert.equal(MANIFEST_NAME, ".coldpack/manifest.json");
  assert.equal(MANIFEST_FORMAT, 1);
  // No source key can take the manifest's name.
  assert.notEqual(safeEntryName(MANIFEST_NAME), MANIFEST_NAME);
});

Deno.test("buildManifest and parseManifest round-trip", () => {
  const bytes = buildManifest(MANIFEST);
  assert.deepEqual(parseManifest(bytes), MANIFEST);
  assert.deepEqual(parseManifest(buildManifest({ ...MANIFEST, files: [] })), {
    ...MANIFEST,
    files: [],
  });
});

Deno.test("buildManifest is deterministic, with a fixed key order and one file per line", () => {
  const shuffled = {
    files: MANIFEST.files.map((f) =>
      Object.fromEntries(Object.entries(f).reverse()) as unknown as ManifestFile
    ),
    createdAt: MANIFEST.createdAt,
    source: MANIFEST.source,
    archiveId: MANIFEST.archiveId,
    format: 1 as const,
  };
  const text = new TextDecoder().decode(buildManifest(MANIFEST));
  assert.equal(new TextDecoder().decode(buildManifest(shuffled)), text);
  const lines = text.split("\n");
  assert.equal(
    lines[0],
    '{"format":1,"archiveId":"20261122T105301Z-1a2b3c4d5e6f","source":"mogilefs://tracker:7001/ugc",' +
      '"createdAt":"2026-11-22T10:53:30.123Z","files":[',
  );
  assert.equal(
    lines[1],
    '{"fileId":1,"key":"product/1/texture.png","version":"1","domain":"ugc","class":"images",' +
      '"sourceFid":123,"name":"ugc/product/1/texture.png","length":100,' +
      '"md5":"0123456789abcdef0123456789abcdef","mtime":"2026-11-22T10:53:01.000Z",' +
      '"headerOffset":1024,"dataOffset":1536},',
  );
  assert.equal(lines.length, 3 + MANIFEST.files.length);
  assert.equal(lines.at(-2), "]}");
});

Deno.test("parseManifest ignores unknown fields", () => {
  const v = JSON.parse(new TextDecoder().decode(buildManifest(MANIFEST)));
  v.future = true;
  v.files[0].future = "x";
  assert.deepEqual(parseManifest(bytesOf(v)), MANIFEST);
});

Deno.test("parseManifest names the bad field", () => {
  const cases: [Uint8Array, string][] = [
    [new TextEncoder().encode("{nope"), "not UTF-8 JSON"],
    [new Uint8Array([0xff, 0xfe]), "not UTF-8 JSON"],
    [bytesOf([]), "the top level is not an object"],
    [bytesOf({ ...MANIFEST, format: 2 }), "format 2 is not supported"],
    [bytesOf({ ...MANIFEST, format: undefined }), "format is missing"],
    [bytesOf({ ...MANIFEST, archiveId: "../x" }), 'archiveId is not a valid archive id: "../x"'],
    [bytesOf({ ...MANIFEST, source: 5 }), "source is not a string"],
    [
      bytesOf({ ...MANIFEST, createdAt: "yesterday" }),
      'createdAt is not an ISO 8601 time: "yesterday"',
    ],
    [bytesOf({ ...MANIFEST, files: {} }), "files is not an array"],
    [withFile({ fileId: 0 }), "files[1].fileId is not a positive integer"],
    [withFile({ key: "" }), "files[1].key is empty"],
    [withFile({ version: undefined }), "files[1].version is missing"],
    [withFile({ domain: 7 }), "files[1].domain is not a string"],
    [withFile({ sourceFid: -1 }), "files[1].sourceFid is not a non-negative integer"],
    [
      withFile({ name: "../etc/passwd" }),
      'files[1].name is not a safe entry name: "../etc/passwd"',
    ],
    [withFile({ name: "/abs" }), 'files[1].name is not a safe entry name: "/abs"'],
    [
      withFile({ name: MANIFEST_NAME }),
      `files[1].name is not a safe entry name: "${MANIFEST_NAME}"`,
    ],
    [withFile({ length: 1.5 }), "files[1].length is not a non-negative integer"],
    [
      withFile({ md5: "0123456789ABCDEF0123456789ABCDEF" }),
      "files[1].md5 is not 32 lower-case hex digits",
    ],
    [
      withFile({ mtime: "2026-13-45T99:00:00Z" }),
      'files[1].mtime is not an ISO 8601 time: "2026-13-45T99:00:00Z"',
    ],
    [withFile({ headerOffset: 100 }), "files[1].headerOffset is not a multiple of 512"],
    [
      withFile({ dataOffset: 2048 }),
      "files[1].dataOffset is not a block boundary after headerOffset",
    ],
  ];
  for (const [bytes, cause] of cases) {
    assert.throws(() => parseManifest(bytes), (e: unknown) => {
      assert.ok(e instanceof SyntaxError, String(e));
      assert.ok(e.message.startsWith(`Cannot parse manifest: ${cause}`), `${e.message} / ${cause}`);
      return true;
    });
  }
});

Deno.test("buildManifest refuses what parseManifest would refuse", () => {
  assert.throws(() => buildManifest({ ...MANIFEST, files: [file(1, { md5: "abc" })] }), {
    name: "SyntaxError",
    message: "Cannot parse manifest: files[0].md5 is not 32 lower-case hex digits",
  });
});

function assertPrintable(s: string): void {
  assert.ok(s.length <= DESCRIPTION_MAX, `length ${s.length}`);
  for (const c of s) {
    const code = c.charCodeAt(0);
    assert.ok(code >= 32 && code <= 126, `char ${code}`);
  }
}

Deno.test("describeArchive writes a compact printable summary", () => {
  const d = describeArchive({
    archiveId: ID,
    fileIds: [1411, 1000, 1200],
    count: 3,
    source: "dir:/srv/uploads",
  });
  assert.equal(
    d,
    "coldpack/1 id=20261122T105301Z-1a2b3c4d5e6f files=3 fid=1000-1411 src=dir:/srv/uploads",
  );
  assert.equal(
    describeArchive({ archiveId: ID, fileIds: { min: 5, max: 9 }, count: 5, source: "s3://b/p" }),
    "coldpack/1 id=20261122T105301Z-1a2b3c4d5e6f files=5 fid=5-9 src=s3://b/p",
  );
});

Deno.test("describeArchive and parseDescription round-trip awkward sources", () => {
  const sources = [
    "dir:/srv/up loads",
    "dir:/fötos/日本/😀",
    "100%+x",
    "tab\there\nnl",
    "",
    "\uD800lone",
  ];
  for (const source of sources) {
    const d = describeArchive({ archiveId: ID, fileIds: [7, 9], count: 2, source });
    assertPrintable(d);
    assert.deepEqual(parseDescription(d), {
      format: 1,
      archiveId: ID,
      count: 2,
      fidMin: fileId(7),
      fidMax: fileId(9),
      source: source.replace("\uD800", "\uFFFD"),
      sourceTruncated: false,
    });
  }
});

Deno.test("describeArchive cuts a long source to fit 1,024 characters", () => {
  for (
    const source of ["x".repeat(5000), "ü".repeat(2000), "😀".repeat(700), "a" + "日".repeat(400)]
  ) {
    const d = describeArchive({
      archiveId: ID,
      fileIds: [1, Number.MAX_SAFE_INTEGER],
      count: 99,
      source,
    });
    assertPrintable(d);
    assert.ok(d.length > DESCRIPTION_MAX - 12, `only ${d.length} characters used`);
    const parsed = parseDescription(d);
    assert.equal(parsed?.sourceTruncated, true);
    assert.ok(source.startsWith(parsed.source), "the kept part is a prefix of the source");
    assert.ok(parsed.source.length > 0);
  }
  // Exactly at the limit: not cut.
  const head = `coldpack/1 id=${ID} files=1 fid=1-1 src=`;
  const fits = "y".repeat(DESCRIPTION_MAX - head.length);
  const d = describeArchive({ archiveId: ID, fileIds: [1], count: 1, source: fits });
  assert.equal(d.length, DESCRIPTION_MAX);
  assert.equal(parseDescription(d)?.sourceTruncated, false);
});

Deno.test("describeArchive rejects bad input, naming the cause", () => {
  assert.throws(() => describeArchive({ archiveId: ID, fileIds: [], count: 0, source: "s" }), {
    name: "RangeError",
    message: /no file ids/,
  });
  assert.throws(
    () => describeArchive({ archiveId: ID, fileIds: { min: 9, max: 5 }, count: 1, source: "s" }),
    {
      name: "RangeError",
      message: /fid range 9-5 is inverted/,
    },
  );
  assert.throws(() => describeArchive({ archiveId: ID, fileIds: [0], count: 1, source: "s" }), {
    name: "RangeError",
    message: /Invalid file id: 0/,
  });
  assert.throws(() => describeArchive({ archiveId: ID, fileIds: [1], count: -1, source: "s" }), {
    name: "RangeError",
    message: /invalid count -1/,
  });
  assert.throws(
    () => describeArchive({ archiveId: "bad id", fileIds: [1], count: 1, source: "s" }),
    {
      name: "SyntaxError",
      message: /Invalid archive id/,
    },
  );
});

Deno.test("parseDescription returns null for anything that is not a coldpack/1 description", () => {
  for (
    const s of [
      "",
      "my holiday photos",
      "coldpack/2 id=a files=1 fid=1-1 src=x",
      "coldpack/1 id=a files=1 fid=1-1",
      "coldpack/1 id=a files=1 fid=0-1 src=x",
      "coldpack/1 id=a files=1 fid=5-1 src=x",
      "coldpack/1 id=a files=x fid=1-1 src=x",
      "coldpack/1 id=../a files=1 fid=1-1 src=x",
      "coldpack/1 id=a files=1 fid=1-1 src=has space",
      "coldpack/1 id=a files=1 fid=1-1 src=%E0%A4",
      "coldpack/1 id=a files=1 fid=1-1 src=" + "x".repeat(1000),
    ]
  ) {
    assert.equal(parseDescription(s), null, s.slice(0, 60));
  }
});

Deno.test("descriptionProblem names the first thing Glacier would refuse", () => {
  assert.equal(descriptionProblem("coldpack/1 id=a files=1 fid=5-5 src=x"), null);
  assert.equal(descriptionProblem("x".repeat(1024)), null);
  assert.equal(descriptionProblem("x".repeat(1025)), "1025 characters, at most 1,024");
  assert.equal(
    descriptionProblem("caf\u00e9"),
    "character 233 at index 3 is not printable ASCII (32..126)",
  );
  assert.equal(
    descriptionProblem("a\tb"),
    "character 9 at index 1 is not printable ASCII (32..126)",
  );
});
