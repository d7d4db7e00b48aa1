/**
 * `teeMetrics`: one `Metrics` that hands every sample to several, e.g. the
 * istatd agent client and the daemon's own Prometheus registry.
 *
 * @example
 * ```ts
 * const metrics = teeMetrics(new IstatdClient({ port: 8111 }), new MetricsRegistry());
 * metrics.count("coldpack.backup.files_archived");
 * ```
 * @module
 */

import { type Metrics, noMetrics } from "../../core/ports.ts";

/**
 * Sends every sample to each of `sinks`, in order. One that throws (none
 * should) does not keep the sample from the others, nor reach the caller.
 * No sinks: {@linkcode noMetrics}; one: that one itself.
 */
export function teeMetrics(...sinks: Metrics[]): Metrics {
  if (sinks.length === 0) return noMetrics;
  if (sinks.length === 1) return sinks[0]!;
  return {
    count(name, value) {
      for (const m of sinks) {
        try {
          m.count(name, value);
        } catch { /* metrics never fail the caller */ }
      }
    },
    gauge(name, value) {
      for (const m of sinks) {
        try {
          m.gauge(name, value);
        } catch { /* metrics never fail the caller */ }
      }
    },
    timing(name, seconds) {
      for (const m of sinks) {
        try {
          m.timing(name, seconds);
        } catch { /* metrics never fail the caller */ }
      }
    },
  };
}
