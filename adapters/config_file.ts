/**
 * Reads the config file: TOML (`.toml`) or JSON (`.json`).
 * @module
 */

import { parse as parseToml } from "smol-toml";
import { ConfigError } from "../core/errors.ts";
import type { ConfigInputs } from "../core/config.ts";

/** A parsed config file. */
export interface ConfigFile {
  readonly path: string;
  readonly values: Record<string, unknown>;
}

/**
 * Reads and parses a config file. A missing or unparsable file is a
 * ConfigError naming the path (and the line, for TOML syntax errors).
 *
 * @param where the flag or variable that named the file
 */
export async function readConfigFile(path: string, where = "--config"): Promise<ConfigFile> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    const why = e instanceof Deno.errors.NotFound ? "no such file" : String(e);
    throw new ConfigError(where, `cannot read config file ${path}: ${why}`);
  }
  let values: unknown;
  try {
    values = path.endsWith(".json") ? JSON.parse(text) : parseToml(text);
  } catch (e) {
    const msg = e instanceof Error ? e.message.split("\n")[0] : String(e);
    throw new ConfigError(path, `cannot parse config file: ${msg}`);
  }
  if (values === null || typeof values !== "object" || Array.isArray(values)) {
    throw new ConfigError(path, "the config file must hold a table of settings");
  }
  return { path, values: values as Record<string, unknown> };
}

/**
 * What a program's settings are resolved from: its string flags, the
 * environment, and the config file named by `--config` or `COLDPACK_CONFIG`.
 */
export async function collectInputs(
  values: Record<string, string | boolean | (string | boolean)[] | undefined>,
): Promise<ConfigInputs> {
  const env = Deno.env.toObject();
  const flags: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(values)) if (typeof v === "string") flags[k] = v;
  const configPath = flags["config"] ?? env["COLDPACK_CONFIG"];
  const where = flags["config"] !== undefined ? "--config" : "COLDPACK_CONFIG";
  const file = configPath ? await readConfigFile(configPath, where) : undefined;
  return file ? { flags, env, file } : { flags, env };
}
