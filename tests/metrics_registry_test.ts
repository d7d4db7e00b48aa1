/**
 * The in-process registry: what it renders as Prometheus text, exactly, and
 * teeMetrics handing every sample to several sinks.
 */

import assert from "node:assert/strict";
import { MetricsRegistry } from "../adapters/metrics/registry.ts";
import { teeMetrics } from "../adapters/metrics/tee.ts";
import { type Metrics, noMetrics } from "../core/ports.ts";

Deno.test("counters add up, gauges keep the last value, timings are count and sum", () => {
  const r = new MetricsRegistry({
    help: { "coldpack.backup.files_archived": "Files committed to the catalog\nafter upload" },
  });
  r.count("coldpack.backup.files_archived");
  r.count("coldpack.backup.files_archived", 41);
  r.gauge("coldpack.backup.queue.plan_files", 7);
  r.gauge("coldpack.backup.queue.plan_files", 2.5);
  r.timing("coldpack.backup.upload_seconds", 1.5);
  r.timing("coldpack.backup.upload_seconds", 0.25);
  r.count("coldpack.backup.store-retries.throttling", 2);
  r.gauge("9lives", -1);
  assert.equal(
    r.render(),
    [
      "# TYPE _9lives gauge",
      "_9lives -1",
      "# HELP coldpack_backup_files_archived Files committed to the catalog\\nafter upload",
      "# TYPE coldpack_backup_files_archived counter",
      "coldpack_backup_files_archived 42",
      "# TYPE coldpack_backup_queue_plan_files gauge",
      "coldpack_backup_queue_plan_files 2.5",
      "# TYPE coldpack_backup_store_retries_throttling counter",
      "coldpack_backup_store_retries_throttling 2",
      "# TYPE coldpack_backup_upload_seconds summary",
      "coldpack_backup_upload_seconds_count 2",
      "coldpack_backup_upload_seconds_sum 1.75",
      "",
    ].join("\n"),
  );
  assert.equal(r.size, 5);
});

Deno.test("an empty registry renders nothing", () => {
  assert.equal(new MetricsRegistry().render(), "");
});

Deno.test("a name used as two kinds keeps its first; the rest and bad values are dropped, counted, warned once per name", () => {
  const logs: string[] = [];
  const r = new MetricsRegistry({ log: (l) => logs.push(l) });
  r.count("coldpack.x.n", 3);
  r.gauge("coldpack.x.n", 9);
  r.timing("coldpack.x.n", 9);
  r.gauge("coldpack.x.n", 10);
  r.gauge("coldpack.x.bad", NaN);
  assert.equal(
    r.render(),
    "# TYPE coldpack_x_n counter\ncoldpack_x_n 3\n" +
      "# TYPE coldpack_metrics_dropped_samples counter\ncoldpack_metrics_dropped_samples 4\n",
  );
  assert.deepEqual(logs, [
    "Metric coldpack.x.n: a gauge sample dropped, the name is a counter",
    "Metric coldpack.x.bad: dropped a value that is not a finite number",
  ]);
});

Deno.test("the registry holds at most maxNames names", () => {
  const logs: string[] = [];
  const r = new MetricsRegistry({ maxNames: 2, log: (l) => logs.push(l) });
  r.count("a");
  r.count("b");
  r.count("c");
  r.count("d");
  r.count("a");
  assert.equal(
    r.render(),
    "# TYPE a counter\na 2\n# TYPE b counter\nb 1\n" +
      "# TYPE coldpack_metrics_dropped_samples counter\ncoldpack_metrics_dropped_samples 2\n",
  );
  assert.deepEqual(logs, ["Metrics registry full (2 names): c dropped"]);
});

Deno.test("teeMetrics hands every sample to each sink, even past one that throws", () => {
  const a = new MetricsRegistry();
  const b = new MetricsRegistry();
  const throwing: Metrics = {
    count: () => {
      throw new Error("boom");
    },
    gauge: () => {
      throw new Error("boom");
    },
    timing: () => {
      throw new Error("boom");
    },
  };
  const m = teeMetrics(a, throwing, b);
  m.count("n", 2);
  m.gauge("g", 5);
  m.timing("t", 0.5);
  const expected = "# TYPE g gauge\ng 5\n# TYPE n counter\nn 2\n" +
    "# TYPE t summary\nt_count 1\nt_sum 0.5\n";
  assert.equal(a.render(), expected);
  assert.equal(b.render(), expected);
  assert.equal(teeMetrics(), noMetrics);
  assert.equal(teeMetrics(a), a);
});
