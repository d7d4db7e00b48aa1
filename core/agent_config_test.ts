import assert from "node:assert/strict";
import { AGENT_SETTINGS, parseHostPort, resolveAgentConfig } from "./agent_config.ts";
import { ConfigError } from "./errors.ts";
import { FILE_KEYS_OF_OTHER_BINARIES } from "./config.ts";

const env = { HOME: "/home/ops" };

Deno.test("agent config: defaults, flags over env over file", () => {
  const none = resolveAgentConfig({ flags: {}, env }, []);
  assert.deepEqual(none, {
    port: 8111,
    bind: "127.0.0.1",
    forward: [],
    spoolDir: "/home/ops/.local/state/coldpack/metrics-spool",
    spoolMax: 256 * 1024 * 1024,
    metricsPort: 8112,
    flushMs: 10_000,
    hostname: null,
  });
  const c = resolveAgentConfig({
    flags: { forward: "istatd1:8111,[::1]:9000", "spool-max": "1MiB" },
    env: { ...env, COLDPACK_AGENT_FORWARD: "ignored:1", COLDPACK_AGENT_FLUSH: "2s" },
    file: { path: "/etc/coldpack.toml", values: { agent_port: 9111, store: "file:///v" } },
  }, []);
  assert.deepEqual(c.forward, [{ host: "istatd1", port: 8111 }, { host: "::1", port: 9000 }]);
  assert.equal(c.spoolMax, 1024 * 1024);
  assert.equal(c.flushMs, 2_000);
  assert.equal(c.port, 9111);
});

Deno.test("agent config: bad values name where they came from", () => {
  const bad = (flags: Record<string, string>, words: RegExp) =>
    assert.throws(
      () => resolveAgentConfig({ flags, env }, []),
      (e: unknown) => e instanceof ConfigError && words.test(e.message),
    );
  bad({ forward: "istatd1" }, /--forward: "istatd1" is not HOST:PORT/);
  bad({ forward: "a:1,a:1" }, /--forward: a:1 is given twice/);
  bad({ port: "70000" }, /--port: must be a port number from 0 to 65535/);
  bad({ "spool-max": "1KiB" }, /--spool-max: must be at least 64KiB/);
  bad({ flush: "5m" }, /--flush: must be from 100ms to 60s/);
  bad({ spool: "rel/dir" }, /--spool: "rel\/dir" is not an absolute path/);
  assert.throws(() => parseHostPort("h:0"), /not HOST:PORT/);
});

Deno.test("every agent file key is accepted by the other programs' config", () => {
  for (const s of Object.values(AGENT_SETTINGS)) {
    assert.ok(FILE_KEYS_OF_OTHER_BINARIES.includes(s.file), s.file);
  }
});
