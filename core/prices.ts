/**
 * What cold storage costs: the price table of PROTOCOLS.md section 4 as
 * data, and estimates of retrieval and storage charges from it.
 *
 * The figures are us-east-1 list prices gathered in June 2026, several from
 * third parties (each entry names its source). They change: verify them
 * against https://aws.amazon.com/s3/pricing/ before relying on them.
 *
 * A GB here is 2^30 bytes, as AWS bills it (its own worked examples count
 * 100 TB as 102,400 GB and 10 KB as 10 / 1,048,576 GB).
 *
 * @example
 * ```ts
 * estimateRetrievalCost({ store: "glacier", tier: "Standard", bytes: 2 ** 30, requests: 1000 });
 * // { dollars: 0.06, perGb: 0.01, perRequest: 0.05, ... }
 * ```
 * @module
 */

import { type Tier, TIERS } from "./ports.ts";

/** The stores priced here: a Glacier vault, an S3 Glacier storage class, a local vault. */
export type PricedStore = "glacier" | "s3:GLACIER" | "s3:DEEP_ARCHIVE" | "s3:GLACIER_IR" | "file";

/** What one retrieval tier costs. */
export interface RetrievalPrice {
  /** Dollars per GB (2^30 bytes) retrieved. */
  readonly perGb: number;
  /** Dollars per retrieval request (a Glacier job, an S3 restore); `null` when not sourced. */
  readonly perRequest: number | null;
  /** Where the figures come from. */
  readonly source: string;
}

/** What one store costs. */
export interface StorePrices {
  readonly name: string;
  /** Dollars per GB-month stored. */
  readonly storagePerGbMonth: number;
  /** Deleting earlier is billed as if kept this long (days). */
  readonly minimumDays: number;
  /**
   * Bytes AWS adds per stored object: `archiveRate` billed at the class's
   * rate, `standardRate` at S3 Standard's.
   */
  readonly overheadPerObject: { readonly archiveRate: number; readonly standardRate: number };
  /** Dollars per 1,000 uploads (PUT, UploadArchive); `null` when not sourced. */
  readonly putPer1000: number | null;
  /** Per tier; a tier the store does not offer is absent and explained in `unavailable`. */
  readonly retrieval: { readonly [T in Tier]?: RetrievalPrice };
  readonly unavailable: { readonly [T in Tier]?: string };
  readonly source: string;
}

/** The shape of {@linkcode PRICES}. */
export interface PriceTable {
  readonly region: string;
  /** When the figures were gathered. */
  readonly asOf: string;
  readonly caution: string;
  /** Bytes in a billed GB. */
  readonly bytesPerGb: number;
  /** S3 Standard, dollars per GB-month (for the per-object overhead of archive classes). */
  readonly s3StandardPerGbMonth: number;
  readonly stores: { readonly [S in PricedStore]: StorePrices };
  /** The original Glacier vault pricing (2012 to late 2016), kept for history. */
  readonly glacierLegacy: {
    /** Storage dollars per GB-month, by the month each took effect. */
    readonly storagePerGbMonth: readonly { readonly from: string; readonly price: number }[];
    readonly requestsPer1000: number;
    /** Share of the average stored bytes retrievable free each month, prorated daily. */
    readonly freeFraction: number;
    /** A job's bytes counted as spread over this many hours. */
    readonly jobHours: number;
    /** Hours billed per month at the peak hourly rate. */
    readonly billedHours: number;
    /** Dollars per GB of the peak hourly rate above the free rate, per billed hour. */
    readonly perPeakGbHour: number;
    readonly source: string;
  };
}

const NO_OVERHEAD = { archiveRate: 0, standardRate: 0 } as const;
const S3_ARCHIVE_OVERHEAD = { archiveRate: 32 * 1024, standardRate: 8 * 1024 } as const;
const IR_READ: RetrievalPrice = {
  perGb: 0.03,
  perRequest: null,
  source: "third-party (usage.ai, June 2026): $0.03/GB; GET request charges not sourced. " +
    "Objects are read at once: the tier does not apply",
};
const FREE: RetrievalPrice = { perGb: 0, perRequest: 0, source: "a local vault costs nothing" };

/**
 * The price table. Verify before relying on it: prices change, and several
 * entries come from third parties (see each `source`).
 */
export const PRICES: PriceTable = {
  region: "us-east-1",
  asOf: "2026-06",
  caution: "List prices gathered in June 2026, several from third parties; they change. " +
    "Verify before relying on them: https://aws.amazon.com/s3/pricing/",
  bytesPerGb: 2 ** 30,
  s3StandardPerGbMonth: 0.023,
  stores: {
    glacier: {
      name: "Glacier vault",
      storagePerGbMonth: 0.004,
      minimumDays: 90,
      overheadPerObject: NO_OVERHEAD,
      putPer1000: 0.05,
      retrieval: {
        Expedited: {
          perGb: 0.03,
          perRequest: 0.01,
          source: "PROTOCOLS.md section 4 (vault retrieval since late 2016)",
        },
        Standard: {
          perGb: 0.01,
          perRequest: 0.05 / 1000,
          source: "PROTOCOLS.md section 4; Glacier FAQ (2017): $0.01/GB and $0.05 per 1,000",
        },
        Bulk: {
          perGb: 0.0025,
          perRequest: 0.025 / 1000,
          source: "third-party (preproom.ai): $0.0025/GB and $0.025 per 1,000; not in PROTOCOLS.md",
        },
      },
      unavailable: {},
      source: "storage $0.004/GB-month since Dec 2016 (Glacier FAQ 2017, Wikipedia); " +
        "uploads $0.05 per 1,000 (PROTOCOLS.md)",
    },
    "s3:GLACIER": {
      name: "S3 Glacier Flexible Retrieval",
      storagePerGbMonth: 0.0036,
      minimumDays: 90,
      overheadPerObject: S3_ARCHIVE_OVERHEAD,
      putPer1000: 0.03,
      retrieval: {
        Expedited: {
          perGb: 0.03,
          perRequest: 10 / 1000,
          source: "PROTOCOLS.md section 4; AWS re:Post knowledge center: $10 per 1,000 requests",
        },
        Standard: {
          perGb: 0.01,
          perRequest: 0.05 / 1000,
          source: "PROTOCOLS.md section 4; AWS re:Post knowledge center: $0.05 per 1,000 requests",
        },
        Bulk: {
          perGb: 0,
          perRequest: 0,
          source: "PROTOCOLS.md section 4; S3 user guide: Bulk retrievals are free",
        },
      },
      unavailable: {},
      source: "PROTOCOLS.md section 4 (third-party figures, mid 2026)",
    },
    "s3:DEEP_ARCHIVE": {
      name: "S3 Glacier Deep Archive",
      storagePerGbMonth: 0.00099,
      minimumDays: 180,
      overheadPerObject: S3_ARCHIVE_OVERHEAD,
      putPer1000: 0.05,
      retrieval: {
        Standard: {
          perGb: 0.02,
          perRequest: 0.10 / 1000,
          source: "PROTOCOLS.md section 4 ($/GB); third-party (gist, 2023): $0.10 per 1,000",
        },
        Bulk: {
          perGb: 0.0025,
          perRequest: 0.025 / 1000,
          source: "PROTOCOLS.md section 4 ($/GB); third-party (gist, 2023): $0.025 per 1,000",
        },
      },
      unavailable: { Expedited: "only Standard (within 12 h) and Bulk (within 48 h) exist" },
      source: "PROTOCOLS.md section 4 (third-party figures, mid 2026); " +
        "PUT $0.05 per 1,000 third-party (GitHub gist)",
    },
    "s3:GLACIER_IR": {
      name: "S3 Glacier Instant Retrieval",
      storagePerGbMonth: 0.004,
      minimumDays: 90,
      overheadPerObject: NO_OVERHEAD,
      putPer1000: null,
      retrieval: { Expedited: IR_READ, Standard: IR_READ, Bulk: IR_READ },
      unavailable: {},
      source: "PROTOCOLS.md section 4 (storage); retrieval per GB third-party; " +
        "objects under 128 KB are billed as 128 KB",
    },
    file: {
      name: "local vault directory",
      storagePerGbMonth: 0,
      minimumDays: 0,
      overheadPerObject: NO_OVERHEAD,
      putPer1000: 0,
      retrieval: { Expedited: FREE, Standard: FREE, Bulk: FREE },
      unavailable: {},
      source: "no charges (the disk it lives on is not priced here)",
    },
  },
  glacierLegacy: {
    storagePerGbMonth: [
      { from: "2012-08", price: 0.01 },
      { from: "2015-09", price: 0.007 },
      { from: "2016-12", price: 0.004 },
    ],
    requestsPer1000: 0.05,
    freeFraction: 0.05,
    jobHours: 4,
    billedHours: 720,
    perPeakGbHour: 0.01,
    source: "PROTOCOLS.md section 4; dates from Wikipedia (Amazon Glacier, Cost)",
  },
};

const STORES = Object.keys(PRICES.stores) as PricedStore[];

/**
 * Which priced store a store location is (`ColdStore.location`):
 * `glacier://...` a vault, `s3://...?storage-class=C` that class, `file://...`
 * a local vault; `null` for anything else.
 *
 * @example
 * ```ts
 * pricedStore("s3://b/p?storage-class=DEEP_ARCHIVE"); // "s3:DEEP_ARCHIVE"
 * ```
 */
export function pricedStore(location: string): PricedStore | null {
  if (location.startsWith("glacier://")) return "glacier";
  if (location.startsWith("file://")) return "file";
  const m = /^s3:\/\/[^?]*\?(?:.*&)?storage-class=([A-Z_]+)/.exec(location);
  const key = m === null ? null : `s3:${m[1]}`;
  return key !== null && (STORES as string[]).includes(key) ? key as PricedStore : null;
}

/** What {@linkcode estimateRetrievalCost} needs. */
export interface RetrievalCostInput {
  readonly store: PricedStore;
  readonly tier: Tier;
  /** Bytes retrieved. */
  readonly bytes: number;
  /** Retrieval requests (Glacier jobs, S3 restores). */
  readonly requests: number;
}

/** A retrieval's estimated charges, in dollars. */
export interface RetrievalCost {
  /** The known charges: `perGb` plus `perRequest` when known. */
  readonly dollars: number;
  /** The per-GB part. */
  readonly perGb: number;
  /** The per-request part; `null` when the store's request price is not sourced. */
  readonly perRequest: number | null;
  /** Whether every part is known (else `dollars` leaves the request charges out). */
  readonly complete: boolean;
  /** GB retrieved (2^30 bytes each). */
  readonly gb: number;
  readonly source: string;
}

/**
 * Estimates what retrieving `bytes` in `requests` requests costs, from
 * {@linkcode PRICES}. Not the data-transfer charge for sending it out of AWS.
 *
 * @throws {RangeError} for a store or tier not in the table (Deep Archive
 *   has no Expedited tier), or a negative or fractional count
 * @throws {TypeError} when a count is not a number
 *
 * @example
 * ```ts
 * const bytes = 100 * 2 ** 30;
 * estimateRetrievalCost({ store: "s3:DEEP_ARCHIVE", tier: "Bulk", bytes, requests: 4000 });
 * // { dollars: 0.35, perGb: 0.25, perRequest: 0.1, complete: true, gb: 100, ... }
 * ```
 */
export function estimateRetrievalCost(input: RetrievalCostInput): RetrievalCost {
  const what = `Cannot estimate the retrieval cost`;
  const prices = storePrices(input.store, what);
  if (!TIERS.includes(input.tier)) {
    throw new RangeError(`${what}: unknown tier "${input.tier}" (Expedited, Standard or Bulk)`);
  }
  count(input.bytes, "bytes", what);
  count(input.requests, "requests", what);
  const price = prices.retrieval[input.tier];
  if (price === undefined) {
    const why = prices.unavailable[input.tier] ?? "no price for it is known";
    throw new RangeError(`${what}: ${prices.name} has no ${input.tier} tier: ${why}`);
  }
  const gb = input.bytes / PRICES.bytesPerGb;
  const perGb = gb * price.perGb;
  const perRequest = price.perRequest === null ? null : input.requests * price.perRequest;
  return {
    dollars: perGb + (perRequest ?? 0),
    perGb,
    perRequest,
    complete: perRequest !== null || input.requests === 0,
    gb,
    source: price.source,
  };
}

/** What {@linkcode estimateStorageCost} needs. */
export interface StorageCostInput {
  readonly class: PricedStore;
  /** Bytes stored. */
  readonly bytes: number;
  /** For how long, in months of 30 days (fractions allowed). */
  readonly months: number;
  /** Objects (archives) the bytes are in, for the per-object overhead; default 0. */
  readonly objects?: number;
}

/** Storage's estimated charges, in dollars. */
export interface StorageCost {
  readonly dollars: number;
  /** The stored bytes' part. */
  readonly storage: number;
  /** The per-object overhead's part (S3 GLACIER and DEEP_ARCHIVE). */
  readonly overhead: number;
  /** `months`, or the minimum storage duration when longer (billed even if deleted sooner). */
  readonly billedMonths: number;
  /** GB stored (2^30 bytes each). */
  readonly gb: number;
}

/**
 * Estimates what keeping `bytes` in `objects` objects for `months` costs,
 * from {@linkcode PRICES}. An object is billed for at least the class's
 * minimum duration (90 or 180 days, taken as 3 or 6 months).
 *
 * @throws {RangeError} for a class not in the table, or a negative or fractional count
 * @throws {TypeError} when a count is not a number
 *
 * @example
 * ```ts
 * estimateStorageCost({ class: "s3:DEEP_ARCHIVE", bytes: 1024 * 2 ** 30, months: 12 });
 * // { dollars: 12.16512, storage: 12.16512, overhead: 0, billedMonths: 12, gb: 1024 }
 * ```
 */
export function estimateStorageCost(input: StorageCostInput): StorageCost {
  const what = `Cannot estimate the storage cost`;
  const prices = storePrices(input.class, what);
  count(input.bytes, "bytes", what);
  const objects = input.objects ?? 0;
  count(objects, "objects", what);
  if (typeof input.months !== "number") throw new TypeError(`${what}: months is not a number`);
  if (!Number.isFinite(input.months) || input.months < 0) {
    throw new RangeError(`${what}: months is ${input.months}, not a number >= 0`);
  }
  const billedMonths = Math.max(input.months, prices.minimumDays / 30);
  const gb = input.bytes / PRICES.bytesPerGb;
  const storage = gb * prices.storagePerGbMonth * billedMonths;
  const { archiveRate, standardRate } = prices.overheadPerObject;
  const overhead = objects * billedMonths / PRICES.bytesPerGb *
    (archiveRate * prices.storagePerGbMonth + standardRate * PRICES.s3StandardPerGbMonth);
  return { dollars: storage + overhead, storage, overhead, billedMonths, gb };
}

function storePrices(store: PricedStore, what: string): StorePrices {
  if (!STORES.includes(store)) {
    throw new RangeError(`${what}: unknown store "${store}" (${STORES.join(", ")})`);
  }
  return PRICES.stores[store];
}

function count(n: number, name: string, what: string): void {
  if (typeof n !== "number") throw new TypeError(`${what}: ${name} is not a number`);
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new RangeError(`${what}: ${name} is ${n}, not a whole number >= 0`);
  }
}
