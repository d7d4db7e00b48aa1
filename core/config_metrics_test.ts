import assert from "node:assert/strict";
import { ConfigError } from "./errors.ts";
import { resolveBackupConfig, resolveListenerConfig } from "./config.ts";

const HOME = { HOME: "/home/ana" };

Deno.test("config: metrics are off by default", () => {
  const c = resolveBackupConfig({ flags: { source: "/s" }, env: HOME });
  assert.equal(c.metricsAgent, null);
  assert.equal(c.metricsPort, null);
  const l = resolveListenerConfig({ flags: {}, env: HOME });
  assert.equal(l.metricsAgent, null);
  assert.equal(l.metricsPort, null);
});

Deno.test("config: the metrics agent is HOST:PORT, from a flag, the environment or the file", () => {
  const flag = resolveBackupConfig({
    flags: { source: "/s", "metrics-agent": "127.0.0.1:8111", "metrics-port": "0" },
    env: HOME,
  });
  assert.deepEqual(flag.metricsAgent, { host: "127.0.0.1", port: 8111 });
  assert.equal(flag.metricsPort, 0);
  const env = resolveListenerConfig({
    flags: {},
    env: { ...HOME, COLDPACK_METRICS_AGENT: "[::1]:9000", COLDPACK_METRICS_PORT: "9464" },
  });
  assert.deepEqual(env.metricsAgent, { host: "::1", port: 9000 });
  assert.equal(env.metricsPort, 9464);
  const file = resolveBackupConfig({
    flags: { source: "/s" },
    env: HOME,
    file: {
      path: "/etc/coldpack.toml",
      values: { metrics_agent: "metrics.local:8111", metrics_port: 9100 },
    },
  });
  assert.deepEqual(file.metricsAgent, { host: "metrics.local", port: 8111 });
  assert.equal(file.metricsPort, 9100);
});

Deno.test("config: a bad metrics setting names where it came from", () => {
  const bad = (flags: Record<string, string>, message: RegExp) =>
    assert.throws(
      () => resolveBackupConfig({ flags: { source: "/s", ...flags }, env: HOME }),
      (e) => e instanceof ConfigError && message.test(e.message),
    );
  bad({ "metrics-agent": "8111" }, /--metrics-agent: expected HOST:PORT .*got "8111"/);
  bad({ "metrics-agent": "host:0" }, /--metrics-agent: expected HOST:PORT \(port 1 to 65535\)/);
  bad({ "metrics-agent": "a b:1" }, /--metrics-agent: expected HOST:PORT/);
  bad({ "metrics-port": "65536" }, /--metrics-port: must be a whole number from 0 to 65535/);
  bad({ "metrics-port": "http" }, /--metrics-port: must be a whole number from 0 to 65535/);
});
