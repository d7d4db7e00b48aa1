/**
 * End to end: the daemons' metrics. cmd/backup.ts and
 * cmd/restore_listener.ts as subprocesses send their counters to a UDP
 * receiver standing in for the local agent, and serve /metrics and /health
 * on loopback while they run.
 */

import assert from "node:assert/strict";
import { bytesOf, put, runCmd, spawnCmd, tempDir, vaultTars } from "./_helpers.ts";
import { udpReceiver } from "./_udp.ts";

/** istatd lines received, split into events (summed) and gauge/timing samples. */
function parse(datagrams: readonly string[]): {
  events: Map<string, number>;
  samples: Map<string, number[]>;
} {
  const events = new Map<string, number>();
  const samples = new Map<string, number[]>();
  for (const d of datagrams) {
    assert.ok(d.endsWith("\n"), `a datagram of whole lines: ${JSON.stringify(d)}`);
    for (const line of d.slice(0, -1).split("\n")) {
      const m = /^(\*?)([a-z0-9_.-]+) (-?[0-9.e+-]+)$/.exec(line);
      assert.ok(m !== null, `an istatd line: ${JSON.stringify(line)}`);
      const [, star, name, value] = m;
      if (star === "*") events.set(name!, (events.get(name!) ?? 0) + Number(value));
      else samples.set(name!, [...(samples.get(name!) ?? []), Number(value)]);
    }
  }
  return { events, samples };
}

/** Waits (bounded) until `test` holds. */
async function until(what: string, test: () => boolean | Promise<boolean>): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (await test()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.fail(`gave up waiting for ${what}`);
}

/** `n` files of different sizes; returns their total length. */
async function corpus(root: string, n: number): Promise<number> {
  let total = 0;
  for (let i = 0; i < n; i++) {
    const length = 500 + i * 731;
    await put(root, `dir${i % 4}/file-${i}.bin`, bytesOf(i + 1, length));
    total += length;
  }
  return total;
}

Deno.test("backup --once sends its counters to the agent: one per file archived, nothing lost", async () => {
  const rx = await udpReceiver();
  const src = await tempDir();
  const state = await tempDir();
  try {
    const n = 40;
    const bytes = await corpus(src.path, n);
    const r = await runCmd("backup", [
      "--source",
      src.path,
      "--once",
      "--target-size",
      "64KiB",
      "--state-dir",
      state.path,
      "--metrics-agent",
      `127.0.0.1:${rx.port}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`metrics  -> 127\\.0\\.0\\.1:${rx.port} \\(UDP\\)`));
    const archives = (await vaultTars(`${state.path}/vault`)).length;
    assert.ok(archives > 1, `${archives} archives`);
    // The process has exited: every datagram is already in the receiver's socket buffer.
    await until(
      "the last counters",
      () => parse(rx.datagrams).events.get("coldpack.backup.archives_uploaded") === archives,
    );
    const { events, samples } = parse(rx.datagrams);
    assert.equal(events.get("coldpack.backup.files_discovered"), n);
    assert.equal(events.get("coldpack.backup.bytes_discovered"), bytes);
    assert.equal(events.get("coldpack.backup.files_fetched"), n);
    assert.equal(events.get("coldpack.backup.bytes_fetched"), bytes);
    assert.equal(events.get("coldpack.backup.files_archived"), n);
    assert.equal(events.get("coldpack.backup.bytes_archived"), bytes);
    assert.ok(events.get("coldpack.backup.bytes_stored")! > bytes, "tar headers and padding");
    assert.equal(samples.get("coldpack.backup.upload_seconds")?.length, archives);
    assert.equal(samples.get("coldpack.backup.pack_seconds")?.length, archives);
    assert.equal(samples.get("coldpack.backup.file_to_commit_seconds")?.length, n);
    assert.equal(samples.get("coldpack.backup.discovery_to_commit_seconds")?.length, n);
    assert.equal(samples.get("coldpack.backup.full_listing_seconds")?.length, 1);
    // The last sample of the backlog, after the run: nothing is left pending.
    assert.equal(samples.get("coldpack.backup.oldest_pending_seconds")?.at(-1), 0);
    assert.equal(samples.get("coldpack.backup.in_flight_files")?.at(-1), 0);
    for (const q of ["plan_files", "bundle_files", "pack_bundles", "upload_archives"]) {
      assert.equal(samples.get(`coldpack.backup.queue.${q}`)?.at(-1), 0, q);
    }
    assert.equal(events.get("coldpack.backup.failures.fetch"), undefined);
  } finally {
    await rx.close();
    await src.cleanup();
    await state.cleanup();
  }
});

Deno.test("the backup daemon serves /metrics and /health on loopback while it runs", async () => {
  const src = await tempDir();
  const state = await tempDir();
  const n = 12;
  await corpus(src.path, n);
  const child = spawnCmd("backup", [
    "--source",
    src.path,
    "--max-age",
    "200ms",
    "--state-dir",
    state.path,
    "--metrics-port",
    "0",
  ]);
  let stderr = "";
  const drain = (async () => {
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) stderr += decoder.decode(chunk, { stream: true });
  })();
  const drainOut = (async () => {
    for await (const _ of child.stdout) { /* the summary line */ }
  })();
  let stopped = false;
  try {
    let port = 0;
    await until("the metrics address in the start-up lines", () => {
      const m = /metrics {2}-> http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(stderr);
      if (m !== null) port = Number(m[1]);
      return m !== null;
    });
    let text = "";
    await until("every file archived, as /metrics tells", async () => {
      const r = await fetch(`http://127.0.0.1:${port}/metrics`);
      text = await r.text();
      return text.includes(`\ncoldpack_backup_files_archived ${n}\n`);
    });
    assert.match(text, /# TYPE coldpack_backup_files_archived counter\n/);
    assert.match(text, /# TYPE coldpack_backup_upload_seconds summary\n/);
    assert.match(text, /\ncoldpack_backup_upload_seconds_count [1-9]\d*\n/);
    assert.match(text, /# TYPE coldpack_backup_oldest_pending_seconds gauge\n/);
    const health = await (await fetch(`http://127.0.0.1:${port}/health`)).json();
    assert.equal(health.status, "running");
    assert.equal(health.program, "coldpack-backup");
    assert.equal(health.progress.archivedFiles, n);
    const missing = await fetch(`http://127.0.0.1:${port}/`);
    assert.equal(missing.status, 404);
    await missing.body?.cancel();

    child.kill("SIGTERM");
    const status = await child.status;
    stopped = true;
    await drain;
    await drainOut;
    assert.equal(status.code, 0, stderr);
    // Closed with the daemon.
    await assert.rejects(fetch(`http://127.0.0.1:${port}/metrics`), TypeError);
  } finally {
    if (!stopped) {
      child.kill("SIGKILL");
      await child.status;
      await drain;
      await drainOut;
    }
    await src.cleanup();
    await state.cleanup();
  }
});

Deno.test("a bad --metrics-agent or --metrics-port is a usage error naming the flag", async () => {
  const state = await tempDir();
  try {
    const common = ["--source", state.path, "--once", "--state-dir", state.path];
    const agent = await runCmd("backup", [...common, "--metrics-agent", "localhost"]);
    assert.equal(agent.code, 2);
    assert.match(
      agent.stderr,
      /--metrics-agent: expected HOST:PORT \(port 1 to 65535\), got "localhost"/,
    );
    const port = await runCmd("backup", [...common], { env: { COLDPACK_METRICS_PORT: "70000" } });
    assert.equal(port.code, 2);
    assert.match(port.stderr, /COLDPACK_METRICS_PORT: must be a whole number from 0 to 65535/);
  } finally {
    await state.cleanup();
  }
});

Deno.test("a metrics port in use stops the backup before it starts, naming the address", async () => {
  const src = await tempDir();
  const state = await tempDir();
  const taken = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const r = await runCmd("backup", [
      "--source",
      src.path,
      "--once",
      "--state-dir",
      state.path,
      "--metrics-port",
      String(taken.addr.port),
    ]);
    assert.equal(r.code, 3, r.stderr);
    assert.match(
      r.stderr,
      new RegExp(`Cannot serve metrics on 127\\.0\\.0\\.1:${taken.addr.port}: address in use`),
    );
  } finally {
    taken.close();
    await src.cleanup();
    await state.cleanup();
  }
});

Deno.test("the restore listener counts restores done and its sweeps", async () => {
  const rx = await udpReceiver();
  const src = await tempDir();
  const state = await tempDir();
  const root = await tempDir();
  try {
    await corpus(src.path, 3);
    const common = ["--source", src.path, "--state-dir", state.path];
    const backup = await runCmd("backup", [...common, "--once"]);
    assert.equal(backup.code, 0, backup.stderr);
    for (const i of [0, 1]) {
      const request = await runCmd("restore", [
        `dir${i}/file-${i}.bin`,
        `${root.path}/file-${i}.bin`,
        ...common,
      ]);
      assert.equal(request.code, 0, request.stderr);
    }
    const listener = await runCmd("restore_listener", [
      ...common,
      "--roots",
      root.path,
      "--once",
      "--metrics-agent",
      `127.0.0.1:${rx.port}`,
    ]);
    assert.equal(listener.code, 0, listener.stderr);
    assert.match(listener.stderr, /2 restore\(s\) done/);
    await until(
      "the listener's counters",
      () => parse(rx.datagrams).events.get("coldpack.restore_listener.restores_done") === 2,
    );
    const { events, samples } = parse(rx.datagrams);
    assert.equal(events.get("coldpack.restore_listener.restores_failed"), undefined);
    assert.equal(samples.get("coldpack.restore_listener.sweep_seconds")?.length, 1);
    assert.deepEqual(await Deno.readFile(`${root.path}/file-1.bin`), bytesOf(2, 500 + 731));
  } finally {
    await rx.close();
    await src.cleanup();
    await state.cleanup();
    await root.cleanup();
  }
});
