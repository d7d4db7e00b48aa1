/**
 * Runs a test double as its own process, for benchmarks and for trying
 * coldpack by hand: prints one JSON line with the endpoint, region and
 * credentials to point the AWS SDK at (S3: the double's `S3Connection`, with
 * `forcePathStyle`; SQS: also the URL of each queue; MogileFS: the
 * `mogilefs://` URL, the tracker addresses and the storage node URLs), then
 * serves until stdin closes or SIGTERM/SIGINT.
 *
 * Usage:
 *   deno run -A tests/doubles/serve.ts glacier [--vault NAME]...
 *   deno run -A tests/doubles/serve.ts s3 [--bucket NAME]...
 *   deno run -A tests/doubles/serve.ts sqs [--queue NAME]...
 *   deno run -A tests/doubles/serve.ts mogilefs [--domain NAME]... [--trackers N] [--nodes N]
 * @module
 */

import { parseArgs } from "node:util";
import { GlacierDouble, TEST_CREDENTIALS } from "./glacier.ts";
import { MogileFsDouble } from "./mogilefs.ts";
import { S3ArchiveDouble } from "./s3_archive.ts";
import { SqsDouble } from "./sqs.ts";

const { values, positionals } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: {
    vault: { type: "string", multiple: true },
    bucket: { type: "string", multiple: true },
    queue: { type: "string", multiple: true },
    domain: { type: "string", multiple: true },
    trackers: { type: "string" },
    nodes: { type: "string" },
  },
});
const kind = positionals[0];
let close: () => Promise<void>;
if (kind === "glacier") {
  const g = await GlacierDouble.start({ vaults: values.vault ?? [] });
  close = () => g.close();
  console.log(JSON.stringify({
    endpoint: g.endpoint,
    region: g.region,
    credentials: TEST_CREDENTIALS,
  }));
} else if (kind === "s3") {
  const s3 = await S3ArchiveDouble.start();
  for (const b of values.bucket ?? []) await s3.createBucket(b);
  close = () => s3.close();
  console.log(JSON.stringify(s3.connection));
} else if (kind === "sqs") {
  const sqs = await SqsDouble.start({ queues: values.queue ?? [] });
  close = () => sqs.close();
  console.log(JSON.stringify({
    ...sqs.connection,
    queues: Object.fromEntries(sqs.queues().map((q) => [q, sqs.queue(q).url])),
  }));
} else if (kind === "mogilefs") {
  const mogile = await MogileFsDouble.start({
    domains: Object.fromEntries((values.domain ?? ["ugc"]).map((d) => [d, {}])),
    trackers: Number(values.trackers ?? 1),
    nodes: Number(values.nodes ?? 2),
  });
  close = () => mogile.close();
  console.log(
    JSON.stringify({ url: mogile.url(), trackers: mogile.trackers, nodes: mogile.nodes }),
  );
} else {
  console.error(
    "usage: serve.ts glacier|s3|sqs|mogilefs [--vault|--bucket|--queue|--domain NAME]...",
  );
  Deno.exit(2);
}
const stop = new Promise<void>((resolve) => {
  Deno.addSignalListener("SIGTERM", resolve);
  Deno.addSignalListener("SIGINT", resolve);
  (async () => {
    for await (const _ of Deno.stdin.readable) { /* until stdin closes */ }
    resolve();
  })();
});
await stop;
await close();
Deno.exit(0);
