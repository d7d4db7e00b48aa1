/**
 * The metrics HTTP server: /metrics and /health on loopback, 404 and 405
 * otherwise, a free port for port 0, and a clear error for a taken port.
 */

import assert from "node:assert/strict";
import { serveMetrics } from "../adapters/metrics/http.ts";
import { MetricsRegistry } from "../adapters/metrics/registry.ts";

Deno.test("GET /metrics is Prometheus text and GET /health is JSON, on 127.0.0.1", async () => {
  const registry = new MetricsRegistry();
  registry.count("coldpack.backup.files_archived", 5);
  let calls = 0;
  const server = await serveMetrics({
    port: 0,
    render: () => registry.render(),
    health: () => ({ status: "ok", calls: ++calls }),
  });
  try {
    assert.equal(server.hostname, "127.0.0.1");
    assert.ok(server.port > 0);
    const base = `http://127.0.0.1:${server.port}`;
    const m = await fetch(`${base}/metrics`);
    assert.equal(m.status, 200);
    assert.equal(m.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
    assert.equal(
      await m.text(),
      "# TYPE coldpack_backup_files_archived counter\ncoldpack_backup_files_archived 5\n",
    );
    registry.count("coldpack.backup.files_archived");
    assert.match(await (await fetch(`${base}/metrics`)).text(), /archived 6\n/);
    const h = await fetch(`${base}/health`);
    assert.equal(h.status, 200);
    assert.equal(h.headers.get("content-type"), "application/json");
    assert.deepEqual(await h.json(), { status: "ok", calls: 1 });

    const missing = await fetch(`${base}/nope`);
    assert.equal(missing.status, 404);
    assert.match(await missing.text(), /Not found: \/nope/);
    const post = await fetch(`${base}/metrics`, { method: "POST", body: "x" });
    assert.equal(post.status, 405);
    assert.equal(post.headers.get("allow"), "GET, HEAD");
    await post.body?.cancel();
  } finally {
    await server.close();
  }
  await assert.rejects(fetch(`http://127.0.0.1:${server.port}/metrics`), TypeError);
});

Deno.test("a render that throws is a 500 naming the cause; the server keeps serving", async () => {
  let fail = true;
  const server = await serveMetrics({
    port: 0,
    render: () => {
      if (fail) throw new Error("catalog gone");
      return "";
    },
    health: () => Promise.resolve({ status: "ok" }),
  });
  try {
    const r = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    assert.equal(r.status, 500);
    assert.equal(await r.text(), "Cannot render /metrics: catalog gone\n");
    fail = false;
    const ok = await fetch(`http://127.0.0.1:${server.port}/metrics`);
    assert.equal(ok.status, 200);
    await ok.body?.cancel();
  } finally {
    await server.close();
  }
});

Deno.test("a port in use is refused with the address named", async () => {
  const first = await serveMetrics({ port: 0, render: () => "", health: () => ({}) });
  try {
    await assert.rejects(
      serveMetrics({ port: first.port, render: () => "", health: () => ({}) }),
      (e) =>
        e instanceof Error &&
        e.message === `Cannot serve metrics on 127.0.0.1:${first.port}: address in use`,
    );
    await assert.rejects(
      serveMetrics({ port: 65536, render: () => "", health: () => ({}) }),
      RangeError,
    );
  } finally {
    await first.close();
  }
});
