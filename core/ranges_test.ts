import assert from "node:assert/strict";
import { readRange, retrievalRangeProblem } from "./ranges.ts";
import { MIB } from "./tree_hash.ts";

Deno.test("retrievalRangeProblem accepts Glacier's megabyte-aligned ranges", () => {
  const size = 3 * MIB + 100;
  assert.equal(retrievalRangeProblem({ start: 0, end: MIB - 1 }, size), null);
  assert.equal(retrievalRangeProblem({ start: MIB, end: size - 1 }, size), null);
  assert.equal(retrievalRangeProblem({ start: 2 * MIB, end: 2 * MIB + 5 }, null), null);
});

Deno.test("retrievalRangeProblem says what is wrong with a range", () => {
  const size = 3 * MIB + 100;
  const cases: [number, number, number | null, string][] = [
    [-1, 5, size, "bounds must be whole numbers >= 0"],
    [0.5, 5, size, "bounds must be whole numbers >= 0"],
    [MIB, MIB - 1, size, "start is after end"],
    [MIB, size, size, `end is past the archive's last byte ${size - 1}`],
    [1, MIB - 1, size, "start is not a multiple of 1 MiB"],
    [1, MIB - 1, null, "start is not a multiple of 1 MiB"],
    [0, MIB, size, "end + 1 is neither a multiple of 1 MiB nor the archive size"],
  ];
  for (const [start, end, s, why] of cases) {
    assert.equal(retrievalRangeProblem({ start, end }, s), why, `${start}-${end} of ${s}`);
  }
});

Deno.test("readRange is the whole retrieval or a range within it", () => {
  assert.deepEqual(readRange(undefined, 10, "retrieval j"), { start: 0, end: 9 });
  assert.deepEqual(readRange({ start: 3, end: 9 }, 10, "retrieval j"), { start: 3, end: 9 });
  for (const [start, end] of [[0, 10], [5, 4], [-1, 3], [0.5, 2]]) {
    assert.throws(
      () => readRange({ start: start!, end: end! }, 10, "retrieval j"),
      (e: unknown) =>
        e instanceof RangeError &&
        e.message ===
          `Invalid read range ${start}-${end} for retrieval j: the retrieval holds bytes 0-9`,
    );
  }
});
