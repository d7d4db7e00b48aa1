/**
 * Reading a keyset-paged list to its end: the catalog's list methods take
 * `limit` and `afterId` and return one page in id order.
 * @module
 */

/**
 * Every row of a paged list: asks `page(after)` with the cursor of the last
 * row so far (`undefined` first) until a page comes back empty.
 *
 * @example
 * ```ts
 * const rows = await allPages(
 *   (afterId) => catalog.restores({ limit: 500, ...(afterId === undefined ? {} : { afterId }) }),
 *   (r) => r.id,
 * );
 * ```
 */
export async function allPages<T, C>(
  page: (after: C | undefined) => Promise<readonly T[]>,
  cursor: (row: T) => C,
): Promise<T[]> {
  const out: T[] = [];
  let after: C | undefined;
  for (;;) {
    const rows = await page(after);
    if (rows.length === 0) return out;
    out.push(...rows);
    after = cursor(rows[rows.length - 1]!);
  }
}
