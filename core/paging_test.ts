import assert from "node:assert/strict";
import { allPages } from "./paging.ts";

Deno.test("allPages reads every page with the last row's cursor, until an empty one", async () => {
  const rows = Array.from({ length: 7 }, (_, i) => ({ id: i + 1 }));
  const asked: (number | undefined)[] = [];
  const got = await allPages(
    (after: number | undefined) => {
      asked.push(after);
      return Promise.resolve(rows.filter((r) => r.id > (after ?? 0)).slice(0, 3));
    },
    (r) => r.id,
  );
  assert.deepEqual(got, rows);
  assert.deepEqual(asked, [undefined, 3, 6, 7]);
});
