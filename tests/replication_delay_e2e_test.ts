/**
 * End-to-end tests of `check_replication_delay` against a real MariaDB
 * primary and delayed replica with pt-heartbeat writing heartbeats
 * (tests/_replication.ts): the binary runs as Nagios would, several times
 * with one state file, with the limits scaled down to seconds (a
 * `MASTER_DELAY` of 4 s in a band of [2, 20] s, a 60 s window).
 *
 * No timed assertions: states that need time to pass are awaited with
 * bounded polling loops.
 * @module
 */

import assert from "node:assert/strict";
import { runCmd } from "./_helpers.ts";
import {
  lazyReplication,
  PRIMARY_SERVER_ID,
  REPLICA_SERVER_ID,
  type ReplicationPair,
  replicationTestOptions,
  waitUntil,
} from "./_replication.ts";

const MASTER_DELAY = 4;
const { ignore } = replicationTestOptions("check_replication_delay e2e");
const pair = lazyReplication({ masterDelay: MASTER_DELAY });

/** The limits of these tests, in seconds (flag -> value); a test overrides some. */
const LIMITS: Readonly<Record<string, string>> = {
  "min-delay-time": "2",
  "max-delay-time": "20",
  window: "60",
  "max-last-seen": "8",
  "max-master-behind": "15",
  "max-relay-behind": "15",
  "max-seconds-behind": "5",
};

// The password must come from where each test says, not from the caller's shell.
Deno.env.delete("MYSQL_PWD");

/** A temp directory of this file's tests (state files, markers), removed by the last test. */
let workDir: string | undefined;
async function work(): Promise<string> {
  workDir ??= await Deno.makeTempDir({ prefix: "coldpack_replcheck_" });
  return workDir;
}

/** One run of the check. */
interface CheckRun {
  code: number;
  /** The first line of stdout. */
  line: string;
  stdout: string;
  stderr: string;
  /** Perfdata by label (numbers without the unit). */
  perf: Record<string, number>;
}

async function runCheck(args: string[], env: Record<string, string> = {}): Promise<CheckRun> {
  const r = await runCmd("check_replication_delay", args, { env });
  const line = r.stdout.split("\n")[0] ?? "";
  const perf: Record<string, number> = {};
  const bar = line.indexOf(" | ");
  if (bar >= 0) {
    for (const item of line.slice(bar + 3).split(" ")) {
      const m = /^'?([^=']+)'?=(-?[\d.]+)/.exec(item);
      if (m !== null) perf[m[1]!] = Number(m[2]);
    }
  }
  return { code: r.code, line, stdout: r.stdout, stderr: r.stderr, perf };
}

/** `runCheck` against the replica, password from MYSQL_PWD, these limits over {@linkcode LIMITS}. */
async function checkReplica(
  p: ReplicationPair,
  state: string,
  limits: Record<string, string> = {},
  extra: string[] = [],
): Promise<CheckRun> {
  const dir = await work();
  const args = [
    "--host",
    "127.0.0.1",
    "--port",
    String(p.replica.port),
    "--user",
    p.replica.user,
    "--database",
    p.database,
    "--table",
    p.table,
    "--master-server-id",
    String(PRIMARY_SERVER_ID),
    "--state-file",
    `${dir}/${state}`,
    "--backup-marker",
    `${dir}/backup.marker`,
    "--deshard-marker",
    `${dir}/deshard.marker`,
    "-t",
    "20",
  ];
  for (const [flag, value] of Object.entries({ ...LIMITS, ...limits })) {
    args.push(`--${flag}`, value);
  }
  return await runCheck([...args, ...extra], { MYSQL_PWD: p.replica.password });
}

/** Fails with the whole output of a run. */
function show(run: CheckRun): string {
  return `exit ${run.code}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Runs the check every second until `done` accepts a run (bounded); returns every run. */
async function checkUntil(
  what: string,
  run: () => Promise<CheckRun>,
  done: (r: CheckRun) => boolean,
  timeoutMs: number,
): Promise<CheckRun[]> {
  const runs: CheckRun[] = [];
  try {
    await waitUntil(what, async () => {
      const r = await run();
      runs.push(r);
      return done(r);
    }, { timeoutMs, intervalMs: 1000 });
  } catch (e) {
    const seen = runs.map((r) => `  ${r.code} ${r.line} ${r.stderr.trim()}`).join("\n");
    throw new Error(`${(e as Error).message}; the runs said:\n${seen}`);
  }
  return runs;
}

Deno.test({
  name: "replication harness: the primary's heartbeat row reaches the replica MASTER_DELAY late",
  ignore,
}, async () => {
  const p = await pair.get();
  const status = await p.slaveStatus();
  assert.equal(status.Slave_IO_Running, "Yes");
  assert.equal(status.Slave_SQL_Running, "Yes");
  assert.equal(Number(status.SQL_Delay), MASTER_DELAY);
  assert.equal(Number(status.Master_Server_Id), PRIMARY_SERVER_ID);
  for (const file of [p.primaryDefaultsFile, p.replicaDefaultsFile]) {
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600, file);
  }

  const replicated = async () => {
    const rows = await p.heartbeatRows("replica");
    const row = rows.find((r) => r.serverId === PRIMARY_SERVER_ID);
    assert.ok(row, `the replica has the primary's row: ${JSON.stringify(rows)}`);
    // An event applies once its (whole-second) binlog timestamp is MASTER_DELAY old.
    assert.ok(
      row.unix <= Date.now() / 1000 - (MASTER_DELAY - 1),
      `the replica's copy of the row (${row.ts}) is not older than MASTER_DELAY`,
    );
    return row;
  };
  const first = await replicated();
  const primaryRow = (await p.heartbeatRows("primary")).find((r) =>
    r.serverId === PRIMARY_SERVER_ID
  );
  assert.ok(primaryRow !== undefined && primaryRow.unix > first.unix, "the primary is ahead");
  // The replica keeps applying, MASTER_DELAY behind.
  await waitUntil("the replica's copy of the heartbeat row advances", async () => {
    const row = await replicated();
    return row.unix > first.unix;
  }, { timeoutMs: 30_000 });
});

Deno.test({
  name: "check_replication_delay: OK for a healthy delay, the samples kept in the state file",
  ignore,
}, async () => {
  const p = await pair.get();
  for (let i = 1; i <= 3; i++) {
    const r = await checkReplica(p, "main.json");
    assert.equal(r.code, 0, show(r));
    assert.match(r.line, /^REPLICATION_DELAY OK - delay intercept \d+ s within \[2, 20\] \| /);
    for (const label of ["delay", "intercept", "slope", "correlation", "samples"]) {
      assert.ok(label in r.perf, `perfdata ${label} in: ${r.line}`);
    }
    assert.match(r.line, / intercept=[\d.]+s;2:20;;0 /);
    assert.equal(r.perf.samples, i, `one more sample per run: ${r.line}`);
    assert.ok(r.perf.delay! >= MASTER_DELAY - 1, `delay at least MASTER_DELAY - 1: ${r.line}`);
    await sleep(1000);
  }

  // The password from --defaults-file instead of MYSQL_PWD.
  const dir = await work();
  const r = await runCheck([
    "--host=127.0.0.1",
    `--port=${p.replica.port}`,
    `--user=${p.replica.user}`,
    `--defaults-file=${p.replicaDefaultsFile}`,
    `--database=${p.database}`,
    `--table=${p.table}`,
    `--state-file=${dir}/main.json`,
    `--backup-marker=${dir}/backup.marker`,
    `--deshard-marker=${dir}/deshard.marker`,
    ...Object.entries(LIMITS).map(([flag, value]) => `--${flag}=${value}`),
  ]);
  assert.equal(r.code, 0, show(r));
  assert.match(r.line, /^REPLICATION_DELAY OK - /);
  assert.equal(r.perf.samples, 4, r.line);
});

Deno.test({
  name: "check_replication_delay: STOP SLAVE SQL_THREAD is a WARNING, CRITICAL past " +
    "--max-last-seen, and OK again once it runs",
  ignore,
}, async () => {
  const p = await pair.get();
  const check = () => checkReplica(p, "main.json");
  const ok = await check();
  assert.equal(ok.code, 0, show(ok));

  await p.stopSqlThread();
  try {
    const warning = await check();
    assert.equal(warning.code, 1, show(warning));
    assert.match(
      warning.line,
      /^REPLICATION_DELAY WARNING - SQL thread stopped \d+ seconds ago \(deliberate STOP SLAVE\? CRITICAL after --max-last-seen\)/,
    );
    const runs = await checkUntil(
      "the check says CRITICAL",
      check,
      (r) => r.code !== 1,
      60_000,
    );
    const last = runs[runs.length - 1]!;
    assert.equal(last.code, 2, show(last));
    const m =
      /^REPLICATION_DELAY CRITICAL - replication stopped: SQL thread not running for (\d+) seconds/
        .exec(last.line);
    assert.ok(m, show(last));
    assert.ok(Number(m[1]) >= 8, `stopped longer than --max-last-seen 8: ${last.line}`);
    for (const r of runs.slice(0, -1)) assert.match(r.line, /WARNING - SQL thread stopped/);
  } finally {
    await p.startSqlThread();
  }

  // The samples taken while it was stopped stay in the window a while: OK eventually.
  const runs = await checkUntil("the check says OK again", check, (r) => r.code === 0, 120_000);
  for (const r of runs) assert.notEqual(r.code, 3, show(r));
});

Deno.test({
  name: "check_replication_delay: a backup or deshard marker explains a delay out of the band, " +
    "for a while",
  ignore,
}, async () => {
  const p = await pair.get();
  const dir = await work();
  const backup = `${dir}/backup.marker`;
  const deshard = `${dir}/deshard.marker`;
  // The real delay (about MASTER_DELAY) is above this band.
  const band = { "min-delay-time": "0", "max-delay-time": "1", "max-trend-time": "1" };
  const check = (limits: Record<string, string> = {}) =>
    checkReplica(p, "markers.json", { ...band, ...limits });
  const now = () => Math.floor(Date.now() / 1000);
  try {
    await Deno.writeTextFile(backup, `started=${now()}\n`);
    let r = await check();
    assert.equal(r.code, 1, show(r));
    assert.match(
      r.line,
      /^REPLICATION_DELAY WARNING - active backup \(running \d+ seconds\), delay intercept \d+ s above maximum \| /,
    );

    // Running longer than allowed.
    await Deno.writeTextFile(backup, `started=${now() - 30}\n`);
    r = await check({ "max-backup-behind": "10" });
    assert.equal(r.code, 2, show(r));
    assert.match(
      r.line,
      /^REPLICATION_DELAY CRITICAL - active backup running \d+ seconds, longer than --max-backup-behind 10, delay intercept \d+ s above maximum/,
    );

    // Completed: a recovery window, then an alarm once it is over.
    await Deno.writeTextFile(backup, `completed=${now() - 2}\n`, { append: true });
    r = await check();
    assert.equal(r.code, 1, show(r));
    assert.match(
      r.line,
      /^REPLICATION_DELAY WARNING - out of bounds, in recovery window for backup which completed \d+ seconds ago/,
    );
    r = await check({ "max-recovery-time": "1" });
    assert.equal(r.code, 2, show(r));
    assert.match(
      r.line,
      /^REPLICATION_DELAY CRITICAL - recovery exceeded window: backup completed \d+ seconds ago, --max-recovery-time 1/,
    );

    await Deno.remove(backup);
    await Deno.writeTextFile(deshard, `started=${now()}\n`);
    r = await check();
    assert.equal(r.code, 1, show(r));
    assert.match(r.line, /^REPLICATION_DELAY WARNING - active deshard \(running \d+ seconds\)/);

    // No job: nothing explains it.
    await Deno.remove(deshard);
    r = await check();
    assert.equal(r.code, 2, show(r));
    assert.match(
      r.line,
      /^REPLICATION_DELAY CRITICAL - out of bounds and slope does not indicate recovery: delay intercept \d+ s above maximum, slope /,
    );

    // A garbled marker is UNKNOWN, naming the file and the line.
    await Deno.writeTextFile(backup, `started=${now()}\nhalf-done\n`);
    r = await check();
    assert.equal(r.code, 3, show(r));
    assert.match(r.line, /^REPLICATION_DELAY UNKNOWN - /);
    assert.ok(r.line.includes(backup) && r.line.includes("line 2"), show(r));
  } finally {
    await Deno.remove(backup).catch(() => {});
    await Deno.remove(deshard).catch(() => {});
  }
});

Deno.test({
  name: "check_replication_delay: UNKNOWN with a wrong password, which it does not print",
  ignore,
}, async () => {
  const p = await pair.get();
  const dir = await work();
  const wrong = "not-the-password-4c1d";
  const r = await runCheck([
    "--host",
    "127.0.0.1",
    "--port",
    String(p.replica.port),
    "--user",
    p.replica.user,
    "--database",
    p.database,
    "--state-file",
    `${dir}/denied.json`,
  ], { MYSQL_PWD: wrong });
  assert.equal(r.code, 3, show(r));
  assert.match(r.line, /^REPLICATION_DELAY UNKNOWN - /);
  assert.match(r.line, /Access denied/, show(r));
  assert.ok(!r.stdout.includes(wrong) && !r.stderr.includes(wrong), "the password is printed");
});

Deno.test("check_replication_delay: UNKNOWN when nothing listens on the port", async () => {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  const dir = await work();
  const r = await runCheck([
    "-H",
    "127.0.0.1",
    "--port",
    String(port),
    "--state-file",
    `${dir}/closed.json`,
    "--backup-marker",
    `${dir}/backup.marker`,
    "--deshard-marker",
    `${dir}/deshard.marker`,
    "-t",
    "5",
  ], { MYSQL_PWD: "x" });
  assert.equal(r.code, 3, show(r));
  assert.match(r.line, /^REPLICATION_DELAY UNKNOWN - /);
  assert.ok(r.line.includes(String(port)), `names the port: ${r.line}`);
  assert.match(r.line, /ECONNREFUSED|refused/i, show(r));
  await assert.rejects(Deno.stat(`${dir}/closed.json`), Deno.errors.NotFound, "no state written");
});

Deno.test("check_replication_delay: UNKNOWN for a password on the command line", async () => {
  const secret = "hunter2-on-argv";
  for (const args of [["--password", secret], [`--password=${secret}`], [`-p${secret}`]]) {
    const r = await runCheck(["-H", "127.0.0.1", "--port", "1", ...args]);
    assert.equal(r.code, 3, show(r));
    assert.match(r.line, /^REPLICATION_DELAY UNKNOWN - bad arguments: /);
    assert.match(r.line, /password/);
    assert.match(r.line, /MYSQL_PWD/);
    assert.ok(!r.stdout.includes(secret) && !r.stderr.includes(secret), "the password is echoed");
  }
  const r = await runCheck(["--no-such-flag"]);
  assert.equal(r.code, 3, show(r));
  assert.match(r.line, /^REPLICATION_DELAY UNKNOWN - bad arguments: .*no-such-flag/);
});

Deno.test({
  name: "check_replication_delay: the replica's own heartbeat row measures the delay, " +
    "and CRITICAL once it is stale",
  ignore,
}, async () => {
  const p = await pair.get();
  await p.startLocalHeartbeat();
  try {
    const r = await checkReplica(p, "local.json", {}, ["-v"]);
    assert.equal(r.code, 0, show(r));
    assert.match(r.line, /^REPLICATION_DELAY OK - delay intercept \d+ s within \[2, 20\]/);
    assert.match(r.stdout, /from the local heartbeat row/, show(r));
    assert.ok(r.perf.delay! >= MASTER_DELAY - 1, r.line);

    await p.stopLocalHeartbeat();
    const runs = await checkUntil(
      "the check says the local heartbeat is stale",
      // The delay (localTs - masterTs) now shrinks too: no lower bound, so that staleness shows.
      () =>
        checkReplica(p, "local-stale.json", { "max-seconds-behind": "2", "min-delay-time": "0" }),
      (x) => x.code !== 0,
      60_000,
    );
    const last = runs[runs.length - 1]!;
    assert.equal(last.code, 2, show(last));
    assert.match(
      last.line,
      /^REPLICATION_DELAY CRITICAL - local heartbeat stale: the replica's own row is \d+ seconds old, --max-seconds-behind 2/,
    );
  } finally {
    await p.stopLocalHeartbeat();
    // Leave the replica as the other tests know it: without a local row.
    await p.replica.rootQuery(`DELETE FROM \`${p.database}\`.\`${p.table}\` WHERE server_id = ?`, [
      REPLICA_SERVER_ID,
    ]);
  }
});

Deno.test({ name: "replication harness: stop", ignore: false }, async () => {
  await pair.stop();
  if (workDir !== undefined) await Deno.remove(workDir, { recursive: true });
  workDir = undefined;
});
