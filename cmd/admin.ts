/**
 * coldpack-admin: the operator's tool for the catalog itself. This version
 * does schema migrations; cost planning, fsck and catalog rebuild come with
 * later releases and are refused with a clear message until then.
 *
 * Wiring only: flags and config in, the catalog opened without migrating,
 * the migration run, errors mapped to exit codes.
 * @module
 */

import { parseCommandLine, usage as cliUsage } from "../adapters/cli.ts";
import { openCatalog } from "../adapters/registry.ts";
import { collectInputs } from "../adapters/config_file.ts";
import { LATEST_SCHEMA_VERSION, MIGRATIONS } from "../adapters/catalog/schema.ts";
import { type ConfigInputs, resolveCatalogUrl, resolveMysqlPassword } from "../core/config.ts";
import { ConfigError, errorMessage, PortError } from "../core/errors.ts";

/** Exit codes, documented in --help and the README. */
export const EXIT = {
  ok: 0,
  /** `migrate --check`: the schema is behind this coldpack. */
  behind: 1,
  usage: 2,
  fatal: 3,
} as const;

const HELP = `coldpack-admin: look after the coldpack catalog

Usage:
  coldpack-admin migrate [--catalog URL]           bring the schema to version ${LATEST_SCHEMA_VERSION}
  coldpack-admin migrate --check [--catalog URL]   say whether a migration is due; change nothing

The catalog is the one the backup uses: --catalog, COLDPACK_CATALOG or
catalog in the config file, else STATE_DIR/catalog.db. A MySQL password comes
from COLDPACK_MYSQL_PASSWORD or mysql_password in the config file, never a flag.
Daemons migrate on start unless auto_migrate is false; several hosts migrating
at once are safe (MySQL: a named lock; SQLite: one writer).

Options:
  --catalog URL        sqlite:///PATH.db or mysql://USER@HOST:PORT/DB (env COLDPACK_CATALOG)
  --state-dir DIR      for the default catalog (env COLDPACK_STATE_DIR)
  --config FILE        TOML or JSON config file (env COLDPACK_CONFIG)
  --check              migrate: report only
  -h, --help           this help

Exit codes:
  0    done (or, with --check, the schema is current)
  1    --check: a migration is due
  2    bad usage or configuration; the message names the flag, variable or key
  3    the catalog could not be reached or migrated; the message says why
`;

const FLAG_OPTIONS = {
  catalog: { type: "string" as const },
  "state-dir": { type: "string" as const },
  config: { type: "string" as const },
  check: { type: "boolean" as const },
  help: { type: "boolean" as const, short: "h" },
};

async function main(args: string[]): Promise<number> {
  const parsed = parseCommandLine("coldpack-admin", args, FLAG_OPTIONS, HELP);
  if (parsed.exit !== null) return parsed.exit;
  const { values, positionals } = parsed;
  const command = positionals[0];
  if (command === undefined) return usage("missing command (expected migrate)");
  if (["fsck", "cost", "plan", "rebuild", "status"].includes(command)) {
    return usage(`"${command}" is not available in this version yet (expected migrate)`);
  }
  if (command !== "migrate" || positionals.length > 1) {
    return usage(`unknown command "${positionals.join(" ")}" (expected migrate)`);
  }
  try {
    const inputs = await collectInputs(values);
    return await migrate(inputs, values.check === true);
  } catch (e) {
    if (e instanceof ConfigError) return usage(e.message);
    const code = e instanceof PortError ? ` [${e.code}]` : "";
    console.error(`coldpack-admin: ${errorMessage(e)}${code}`);
    return EXIT.fatal;
  }
}

function usage(message: string): number {
  return cliUsage("coldpack-admin", message);
}

async function migrate(inputs: ConfigInputs, check: boolean): Promise<number> {
  const url = resolveCatalogUrl(inputs);
  const catalog = await openCatalog(url, {
    migrate: false,
    password: resolveMysqlPassword(inputs),
  });
  try {
    const before = await catalog.schemaVersion();
    const due = MIGRATIONS.filter((m) => m.version > before);
    if (check) {
      if (due.length === 0) {
        console.log(`catalog ${url}: schema version ${before}, current`);
        return EXIT.ok;
      }
      console.log(
        `catalog ${url}: schema version ${before}, ${LATEST_SCHEMA_VERSION} available; due: ` +
          due.map((m) => `${m.version} ${m.name}`).join(", "),
      );
      return EXIT.behind;
    }
    const after = await catalog.migrate();
    if (before === after) {
      console.log(`catalog ${url}: schema version ${after}, already current`);
    } else {
      const applied = due.filter((m) => m.version <= after).map((m) => `${m.version} ${m.name}`);
      console.log(
        `catalog ${url}: schema version ${before} -> ${after} (applied ${applied.join(", ")})`,
      );
    }
    return EXIT.ok;
  } finally {
    await catalog.close();
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
