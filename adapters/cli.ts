/**
 * What every coldpack binary does with its command line the same way:
 * parse flags strictly, answer `--help`, and say what is wrong with the
 * usage (exit 2). Used by every `cmd/` entry.
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { errorMessage } from "../core/errors.ts";

/** Exit code of bad usage or configuration, the same in every binary. */
export const USAGE_EXIT = 2;

/** Prints `program: message` and where to look, and returns {@linkcode USAGE_EXIT}. */
export function usage(program: string, message: string): number {
  console.error(`${program}: ${message}\nTry: ${program} --help`);
  return USAGE_EXIT;
}

type Options = NonNullable<ParseArgsConfig["options"]> & {
  readonly help: { readonly type: "boolean"; readonly short?: string };
};

/**
 * Parses `args` strictly with `options` (which must have `help`). Returns
 * the values and positionals, or the exit code when there is nothing more to
 * do: 0 after printing `help`, 2 after naming a bad flag.
 */
export function parseCommandLine<O extends Options>(
  program: string,
  args: string[],
  options: O,
  help: string,
) {
  let parsed;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true });
  } catch (e) {
    return { exit: usage(program, errorMessage(e)) } as const;
  }
  if ((parsed.values as Record<string, unknown>)["help"] === true) {
    console.log(help);
    return { exit: 0 } as const;
  }
  return { exit: null, values: parsed.values, positionals: parsed.positionals } as const;
}
