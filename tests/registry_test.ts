/**
 * The registry turns source and destination URLs into adapters, and bad
 * ones into ConfigErrors that name the flag and the problem.
 */

import assert from "node:assert/strict";
import { openDestination, openSource } from "../adapters/registry.ts";
import { LocalDestination } from "../adapters/destination/local.ts";
import { MogileFsDestination } from "../adapters/destination/mogilefs.ts";
import { MogileFsSource } from "../adapters/source/mogilefs.ts";
import { ConfigError, PortError } from "../core/errors.ts";
import { MogileFsDouble } from "./doubles/mogilefs.ts";
import { tempDir } from "./_helpers.ts";

Deno.test("openDestination: a local directory, a MogileFS domain, and what it refuses", async () => {
  const dir = await tempDir();
  const mogile = await MogileFsDouble.start({ domains: { ugc: {} } });
  try {
    const local = await openDestination(dir.path);
    assert.ok(local instanceof LocalDestination);
    await local.close();
    const mog = await openDestination(mogile.url("ugc"), "--to");
    assert.ok(mog instanceof MogileFsDestination);
    assert.equal(mog.location, mogile.url("ugc"));
    await mog.close();
    await assert.rejects(
      openDestination(mogile.url(), "--to"),
      (e: unknown) =>
        e instanceof ConfigError && e.where === "--to" && /names no domain/.test(e.message),
    );
    await assert.rejects(
      openDestination("ftp://x/y"),
      (e: unknown) =>
        e instanceof ConfigError && /scheme must be file, mogilefs or s3/.test(e.message),
    );
    await assert.rejects(
      openDestination(`${dir.path}/missing`),
      (e: unknown) => e instanceof ConfigError && e.message.includes(`${dir.path}/missing`),
    );
  } finally {
    await mogile.close();
    await dir.cleanup();
  }
});

Deno.test("openSource: MogileFS; an unknown domain is a ConfigError, no tracker a retryable error", async () => {
  const mogile = await MogileFsDouble.start({ domains: { ugc: {} } });
  try {
    const source = await openSource(mogile.url("ugc"));
    assert.ok(source instanceof MogileFsSource);
    assert.equal(source.id, "mogilefs:ugc");
    assert.equal(source.pollMs, 1000);
    await source.close();
    await assert.rejects(
      openSource(mogile.url("nope")),
      (e: unknown) =>
        e instanceof ConfigError && e.where === "--source" &&
        /"nope" does not exist/.test(e.message),
    );
  } finally {
    await mogile.close();
  }
  // Nothing listens there any more: the error says so and may be retried.
  const stale = await MogileFsDouble.start({ domains: { ugc: {} } });
  const url = stale.url("ugc");
  await stale.close();
  // Opening does not fail: the domain check waits for the first listing, which says so.
  const source = await openSource(url);
  assert.ok(source instanceof MogileFsSource);
  await assert.rejects(
    (async () => {
      for await (const _ of source.list()) break;
    })(),
    (e: unknown) => e instanceof PortError && e.code === "TrackerUnavailable" && e.retryable,
  );
  await source.close();
});
