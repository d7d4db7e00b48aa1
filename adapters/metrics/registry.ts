/**
 * An in-process metrics registry that implements the `Metrics` port and
 * renders what it holds as Prometheus text (exposition format 0.0.4), for a
 * daemon's own `/metrics`. Counts are cumulative counters, gauges keep their
 * last value, timings become a summary without quantiles (`_count` and
 * `_sum`, in seconds).
 *
 * Names are the istatd names (`coldpack.backup.files_archived`), shown as
 * Prometheus names (`coldpack_backup_files_archived`, by core/istatd.ts's
 * `prometheusName`, as the agent shows them). It renders itself rather than
 * through `renderPrometheus`, which has no summary type.
 *
 * A name used first as one kind (say a counter) keeps that kind: a later
 * sample of another kind under the same Prometheus name is dropped, with one
 * warning; so is a value that is not a finite number. The registry holds at
 * most `maxNames` names (default 10,000); samples of further names are
 * dropped. Every dropped sample is counted in
 * `coldpack_metrics_dropped_samples`.
 *
 * @example
 * ```ts
 * const registry = new MetricsRegistry();
 * registry.count("coldpack.backup.files_archived", 3);
 * registry.render();
 * // # TYPE coldpack_backup_files_archived counter
 * // coldpack_backup_files_archived 3
 * ```
 * @module
 */

import { prometheusName } from "../../core/istatd.ts";
import type { Metrics } from "../../core/ports.ts";

/** Options of {@linkcode MetricsRegistry}. */
export interface MetricsRegistryOptions {
  /** `# HELP` text by istatd name (default: none, no HELP lines). */
  readonly help?: Readonly<Record<string, string>>;
  /** Distinct names held at most (default 10,000). */
  readonly maxNames?: number;
  /** Warnings (a name used as two kinds, the name limit reached). Default: none. */
  readonly log?: (line: string) => void;
}

type Kind = "counter" | "gauge" | "summary";

interface Entry {
  readonly kind: Kind;
  /** Counter total, last gauge value, or summary sum. */
  value: number;
  /** Summary count. */
  count: number;
  readonly help: string | undefined;
}

/** A number as Prometheus text writes it. */
function prometheusValue(n: number): string {
  if (Number.isNaN(n)) return "NaN";
  if (n === Infinity) return "+Inf";
  if (n === -Infinity) return "-Inf";
  return String(n);
}

function escapeHelp(text: string): string {
  return text.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** Metrics kept in memory and shown as Prometheus text. */
export class MetricsRegistry implements Metrics {
  readonly #entries = new Map<string, Entry>();
  readonly #help: Readonly<Record<string, string>>;
  readonly #maxNames: number;
  readonly #log: (line: string) => void;
  readonly #warned = new Set<string>();
  #dropped = 0;

  constructor(options: MetricsRegistryOptions = {}) {
    this.#help = options.help ?? {};
    this.#maxNames = options.maxNames ?? 10_000;
    this.#log = options.log ?? (() => {});
  }

  /** Adds `value` (default 1) to the counter `name`. */
  count(name: string, value = 1): void {
    const e = this.#entry(name, "counter", value);
    if (e !== null) e.value += value;
  }

  /** Sets the gauge `name` to `value`. */
  gauge(name: string, value: number): void {
    const e = this.#entry(name, "gauge", value);
    if (e !== null) e.value = value;
  }

  /** Adds one observation of `seconds` to the summary `name`. */
  timing(name: string, seconds: number): void {
    const e = this.#entry(name, "summary", seconds);
    if (e === null) return;
    e.count++;
    e.value += seconds;
  }

  /** Distinct names held. */
  get size(): number {
    return this.#entries.size;
  }

  /** Everything held, as Prometheus text: names sorted, each with its `# TYPE` line. */
  render(): string {
    const names = [...this.#entries.keys()].sort();
    let out = "";
    for (const name of names) {
      const e = this.#entries.get(name)!;
      if (e.help !== undefined) out += `# HELP ${name} ${escapeHelp(e.help)}\n`;
      out += `# TYPE ${name} ${e.kind}\n`;
      if (e.kind === "summary") {
        out += `${name}_count ${e.count}\n${name}_sum ${prometheusValue(e.value)}\n`;
      } else {
        out += `${name} ${prometheusValue(e.value)}\n`;
      }
    }
    if (this.#dropped > 0) {
      out += "# TYPE coldpack_metrics_dropped_samples counter\n" +
        `coldpack_metrics_dropped_samples ${this.#dropped}\n`;
    }
    return out;
  }

  /** The entry `value` goes to, or `null` when it is dropped (and counted). */
  #entry(name: string, kind: Kind, value: number): Entry | null {
    try {
      if (typeof value !== "number" || !Number.isFinite(value)) {
        this.#warn(`value:${name}`, `Metric ${name}: dropped a value that is not a finite number`);
        this.#dropped++;
        return null;
      }
      const key = prometheusName(String(name));
      const found = this.#entries.get(key);
      if (found !== undefined) {
        if (found.kind === kind) return found;
        this.#warn(
          `kind:${key}`,
          `Metric ${name}: a ${kind} sample dropped, the name is a ${found.kind}`,
        );
        this.#dropped++;
        return null;
      }
      if (this.#entries.size >= this.#maxNames) {
        this.#warn("full", `Metrics registry full (${this.#maxNames} names): ${name} dropped`);
        this.#dropped++;
        return null;
      }
      const e: Entry = { kind, value: 0, count: 0, help: this.#help[name] };
      this.#entries.set(key, e);
      return e;
    } catch {
      // Metrics never fail the daemon.
      this.#dropped++;
      return null;
    }
  }

  #warn(key: string, line: string): void {
    if (this.#warned.has(key) || this.#warned.size > 1_000) return;
    this.#warned.add(key);
    this.#log(line);
  }
}
