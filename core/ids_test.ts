import assert from "node:assert/strict";
import {
  archiveId,
  auditId,
  drillId,
  fileId,
  hex,
  newArchiveId,
  newAuditId,
  newDrillId,
  newRetrievalId,
  retrievalId,
  sourceId,
} from "./ids.ts";

Deno.test("ids: new archive ids carry the time to the millisecond and sort by it", () => {
  const a = newArchiveId(
    Date.UTC(2026, 10, 22, 10, 53, 1, 123),
    new Uint8Array([1, 2, 3, 4, 5, 255]),
  );
  assert.equal(a, "20261122T105301.123Z-0102030405ff");
  const b = newArchiveId(Date.UTC(2026, 10, 22, 10, 53, 1, 124), new Uint8Array(6));
  assert.ok(a < b, "a later id sorts after");
  const r = newRetrievalId(0, new Uint8Array([0xab]));
  assert.equal(r, "r19700101T000000.000Z-ab");
  assert.equal(retrievalId(r), r);
});

Deno.test("ids: branding refuses values that cannot be ids, naming them", () => {
  assert.throws(() => fileId(0), {
    name: "RangeError",
    message: "Invalid file id: 0 is not a positive integer",
  });
  assert.throws(() => fileId(1.5), { name: "RangeError", message: /1\.5/ });
  assert.throws(() => archiveId("../etc"), {
    name: "SyntaxError",
    message: 'Invalid archive id: "../etc"',
  });
  assert.throws(() => archiveId(""), { name: "SyntaxError" });
  assert.throws(() => sourceId(""), { name: "SyntaxError", message: /empty/ });
  assert.equal(fileId(42), 42);
  assert.equal(hex(new Uint8Array([0, 15, 16])), "000f10");
});

Deno.test("ids: audit and drill ids are shaped like retrieval ids with their own prefix", () => {
  const t = Date.UTC(2026, 10, 22, 10, 53, 1, 123);
  const a = newAuditId(t, new Uint8Array([1, 2, 3, 4, 5, 255]));
  assert.equal(a, "a20261122T105301.123Z-0102030405ff");
  assert.equal(auditId(a), a);
  const d = newDrillId(t, new Uint8Array([0xab, 0xcd, 0, 0, 0, 1]));
  assert.equal(d, "d20261122T105301.123Z-abcd00000001");
  assert.equal(drillId(d), d);
  assert.ok(newAuditId(t + 1, new Uint8Array(6)) > newAuditId(t, new Uint8Array(6)));
  assert.throws(() => auditId("a/../x"), {
    name: "SyntaxError",
    message: 'Invalid audit id: "a/../x"',
  });
  assert.throws(() => drillId(""), { name: "SyntaxError", message: 'Invalid drill id: ""' });
});
