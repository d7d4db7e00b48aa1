import assert from "node:assert/strict";
import { ConfigError } from "./errors.ts";
import {
  BACKUP_SETTINGS,
  defaultStateDir,
  resolveBackupConfig,
  resolveSettings,
} from "./config.ts";

const HOME = { HOME: "/home/ana" };

Deno.test("config: defaults put the embedded catalog and vault in the state dir", () => {
  const c = resolveBackupConfig({ flags: { source: "/srv/up" }, env: HOME });
  assert.equal(c.stateDir, "/home/ana/.local/state/coldpack");
  assert.equal(c.store, "file:///home/ana/.local/state/coldpack/vault");
  assert.equal(c.catalog, "sqlite:///home/ana/.local/state/coldpack/catalog.db");
  assert.equal(c.targetSize, 25 * 1024 * 1024);
  assert.equal(c.maxAgeMs, 30_000);
  assert.equal(c.workers, null, "null: one per CPU, decided by the binary");
  assert.equal(c.bufferBytes, 64 * 1024 * 1024);
});

Deno.test("config: XDG_STATE_HOME wins over HOME; paths with spaces are URL-encoded", () => {
  assert.equal(defaultStateDir({ XDG_STATE_HOME: "/x/state/", HOME: "/h" }), "/x/state/coldpack");
  const c = resolveBackupConfig({
    flags: { source: "/s", "state-dir": "/var/lib/cold pack" },
    env: {},
  });
  assert.equal(c.store, "file:///var/lib/cold%20pack/vault");
});

Deno.test("config: a flag wins over the environment, which wins over the file", () => {
  const file = { path: "/etc/coldpack.toml", values: { target_size: "1MiB", max_age: 7 } };
  const fromFile = resolveBackupConfig({ flags: { source: "/s" }, env: HOME, file });
  assert.equal(fromFile.targetSize, 1024 * 1024);
  assert.equal(fromFile.maxAgeMs, 7000, "a bare number in the file is seconds");
  const fromEnv = resolveBackupConfig({
    flags: { source: "/s" },
    env: { ...HOME, COLDPACK_TARGET_SIZE: "2MiB" },
    file,
  });
  assert.equal(fromEnv.targetSize, 2 * 1024 * 1024);
  const fromFlag = resolveBackupConfig({
    flags: { source: "/s", "target-size": "3MiB" },
    env: { ...HOME, COLDPACK_TARGET_SIZE: "2MiB" },
    file,
  });
  assert.equal(fromFlag.targetSize, 3 * 1024 * 1024);
  const { origins } = resolveSettings(BACKUP_SETTINGS, {
    flags: { "target-size": "3MiB" },
    env: { COLDPACK_MAX_AGE: "5s" },
    file,
  });
  assert.equal(origins.targetSize, "flag");
  assert.equal(origins.maxAge, "env");
  assert.equal(origins.fetchers, "default");
});

Deno.test("config: an empty environment variable counts as unset", () => {
  const c = resolveBackupConfig({
    flags: { source: "/s" },
    env: { ...HOME, COLDPACK_TARGET_SIZE: "" },
  });
  assert.equal(c.targetSize, 25 * 1024 * 1024);
});

function configError(f: () => unknown, where: string, message: RegExp): void {
  assert.throws(f, (e: unknown) => {
    assert.ok(e instanceof ConfigError, String(e));
    assert.equal(e.where, where);
    assert.match(e.message, message);
    return true;
  });
}

Deno.test("config: every bad value names where it came from", () => {
  configError(
    () => resolveBackupConfig({ flags: { source: "/s", "max-age": "soon" }, env: HOME }),
    "--max-age",
    /--max-age: .*"soon"/,
  );
  configError(
    () =>
      resolveBackupConfig({ flags: { source: "/s" }, env: { ...HOME, COLDPACK_UPLOADERS: "0" } }),
    "COLDPACK_UPLOADERS",
    /must be a whole number from 1 to 64, got 0/,
  );
  configError(
    () =>
      resolveBackupConfig({
        flags: { source: "/s" },
        env: HOME,
        file: { path: "/etc/c.toml", values: { fetchers: [1] } },
      }),
    "/etc/c.toml: fetchers",
    /expected a string, got a list/,
  );
  configError(
    () => resolveBackupConfig({ flags: { source: "/s", "state-dir": "rel/dir" }, env: HOME }),
    "--state-dir",
    /must be an absolute path, got "rel\/dir"/,
  );
});

Deno.test("config: a typo in the file is an error, another program's key is not", () => {
  configError(
    () =>
      resolveBackupConfig({
        flags: { source: "/s" },
        env: HOME,
        file: { path: "/etc/c.toml", values: { targt_size: "1MiB" } },
      }),
    "/etc/c.toml: targt_size",
    /unknown setting "targt_size"/,
  );
  const c = resolveBackupConfig({
    flags: { source: "/s" },
    env: HOME,
    file: { path: "/etc/c.toml", values: { mysql_password: "x", audit: {} } },
  });
  assert.equal(c.source, "/s");
});

Deno.test("config: without a source or a home, the message says what to set", () => {
  configError(
    () => resolveBackupConfig({ flags: {}, env: HOME }),
    "--source",
    /nothing to back up: give --source DIR/,
  );
  configError(
    () => resolveBackupConfig({ flags: { source: "/s" }, env: {} }),
    "--state-dir",
    /set --state-dir, COLDPACK_STATE_DIR or HOME/,
  );
});
