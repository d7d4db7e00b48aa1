/**
 * What every coldpack binary does with its command line the same way:
 * parse flags strictly, answer `--help`, and say what is wrong with the
 * usage (exit 2). Used by every `cmd/` entry.
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { ConfigError, errorMessage, PortError } from "../core/errors.ts";

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

/** Exit code of "the catalog, store or another service could not be used", the same in every binary. */
export const FATAL_EXIT = 3;

/**
 * What a binary does with an error that ended its work: bad configuration
 * is a usage error (exit 2, naming where); anything else is printed with
 * its code and is {@linkcode FATAL_EXIT}.
 */
export function exitForError(program: string, e: unknown): number {
  if (e instanceof ConfigError) return usage(program, e.message);
  const code = e instanceof PortError ? ` [${e.code}]` : "";
  console.error(`${program}: ${errorMessage(e)}${code}`);
  return FATAL_EXIT;
}

/** What {@linkcode listenForStop} gives a daemon. */
export interface StopSignals {
  /** Aborted (reason: an `AbortError` naming the signal) at the first SIGTERM or SIGINT. */
  readonly signal: AbortSignal;
  /** Resolves to the signal's name. */
  readonly stopped: Promise<string>;
  /** Removes the signal listeners. */
  dispose(): void;
}

/** A daemon's graceful stop: SIGTERM or SIGINT aborts `signal`, logged once. */
export function listenForStop(log: (line: string) => void): StopSignals {
  const controller = new AbortController();
  const stopped = Promise.withResolvers<string>();
  const on = (name: "SIGTERM" | "SIGINT") => () => {
    if (!controller.signal.aborted) log(`${name}: stopping`);
    controller.abort(new DOMException(`stopped by ${name}`, "AbortError"));
    stopped.resolve(name);
  };
  const onTerm = on("SIGTERM");
  const onInt = on("SIGINT");
  Deno.addSignalListener("SIGTERM", onTerm);
  Deno.addSignalListener("SIGINT", onInt);
  return {
    signal: controller.signal,
    stopped: stopped.promise,
    dispose() {
      Deno.removeSignalListener("SIGTERM", onTerm);
      Deno.removeSignalListener("SIGINT", onInt);
    },
  };
}

/** The flags of every program that opens the backup's catalog and store (values for `collectInputs`). */
export const CATALOG_STORE_FLAGS = {
  store: { type: "string" },
  catalog: { type: "string" },
  source: { type: "string" },
  "state-dir": { type: "string" },
  config: { type: "string" },
} as const;
