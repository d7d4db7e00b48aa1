import assert from "node:assert/strict";
import {
  checkLimits,
  type CheckResult,
  type CheckState,
  decide,
  DEFAULT_LIMITS,
  emptyState,
  formatNagios,
  type Limits,
  nextState,
  type Observation,
  parseMarker,
  parsePtHeartbeatTs,
  parseState,
  regress,
  type Status,
} from "./replication_delay.ts";

const NOW = 1_700_000_000;
/** Nagios every 3 minutes: 11 samples over the default 1800 s window. */
const STEP = 180;
const L: Limits = { ...DEFAULT_LIMITS };

function status(over: Partial<Status> = {}): Status {
  return {
    ioRunning: true,
    sqlRunning: true,
    ioError: null,
    sqlError: null,
    sqlDelay: 3600,
    secondsBehindMaster: 3600,
    masterLogFile: "mariadb-bin.000001",
    readMasterLogPos: 4000,
    relayMasterLogFile: "mariadb-bin.000001",
    execMasterLogPos: 3000,
    masterServerId: 1,
    ...over,
  };
}

/** A healthy run at `t` measuring `delay` (null: no heartbeat row); positions move with t. */
function obsAt(t: number, delay: number | null): Observation {
  return {
    now: t,
    status: status({ readMasterLogPos: t, execMasterLogPos: t - 3600 }),
    heartbeat: { masterTs: delay === null ? null : t - delay, localTs: null },
    markers: { backup: null, deshard: null },
    masterServerId: 1,
    heartbeatTable: "percona.heartbeat",
  };
}

/** One run every `step` seconds, the last at NOW. */
function series(delays: readonly number[], step = STEP): Observation[] {
  return delays.map((d, i) => obsAt(NOW - (delays.length - 1 - i) * step, d));
}

function run(
  observations: readonly Observation[],
  limits: Limits = L,
): { state: CheckState; result: CheckResult } {
  let state = emptyState();
  for (const obs of observations) state = nextState(state, obs, limits);
  const last = observations.at(-1)!;
  return { state, result: decide(state, last, limits) };
}

function lastOf(observations: Observation[]): Observation {
  return observations.at(-1)!;
}

function verdict(result: CheckResult): [string, string] {
  return [result.status, result.message];
}

const flat = (delay: number, n = 11) => Array.from({ length: n }, () => delay);
const line = (from: number, perStep: number, n = 11) =>
  Array.from({ length: n }, (_, i) => from + i * perStep);

function close(actual: number, expected: number, epsilon = 1e-9) {
  assert.ok(
    Math.abs(actual - expected) <= epsilon,
    `expected ${expected} (within ${epsilon}), got ${actual}`,
  );
}

// ---------------------------------------------------------------------------------------------
// decide, state by state, over sampled series

Deno.test("decide: a flat delay in the band is OK with its perfdata", () => {
  const { result } = run(series(flat(3600)));
  assert.deepEqual(verdict(result), ["OK", "delay intercept 3600 s within [3000, 10800]"]);
  assert.deepEqual(result.perfdata, {
    delay: 3600,
    intercept: 3600,
    slope: 0,
    correlation: 0,
    samples: 11,
  });
  assert.deepEqual(result.details, [
    "delay 3600 s against this host's clock (no local heartbeat row)",
    "fit over 11 samples in the last 1800 s: intercept 3600 s, slope 0 s/s, correlation 0",
    "IO thread running, SQL thread running, SQL_Delay 3600, Seconds_Behind_Master 3600",
  ]);
  assert.deepEqual(formatNagios(result, L), {
    line: "REPLICATION_DELAY OK - delay intercept 3600 s within [3000, 10800] | delay=3600s;;;0 " +
      "intercept=3600s;3000:10800;;0 slope=0 correlation=0;;;-1;1 samples=11;;;0",
    details: result.details,
    exitCode: 0,
  });
});

Deno.test("decide: the band's bounds are inside it", () => {
  assert.equal(run(series(flat(3000))).result.status, "OK");
  assert.equal(run(series(flat(10800))).result.status, "OK");
});

Deno.test("decide: a delay rising past the maximum is CRITICAL", () => {
  // 10000 s rising 0.5 s/s: 10900 s now.
  const { result } = run(series(line(10000, 0.5 * STEP)));
  assert.deepEqual(verdict(result), [
    "CRITICAL",
    "out of bounds and slope does not indicate recovery: delay intercept 10900 s above maximum, " +
    "slope 0.5",
  ]);
  close(result.perfdata!.intercept, 10900, 1e-6);
  close(result.perfdata!.slope, 0.5);
  close(result.perfdata!.correlation, 1);
  assert.equal(formatNagios(result, L).exitCode, 2);
});

Deno.test("decide: falling back to the band with a strong trend is WARNING", () => {
  // 12600 s falling 0.5 s/s: 11700 s now, 900 s above the band, 1800 s to reach it.
  const above = run(series(line(12600, -0.5 * STEP))).result;
  assert.deepEqual(verdict(above), [
    "WARNING",
    "intercept recovering - above maximum with slope -0.5",
  ]);
  // 1000 s rising 0.5 s/s: 1900 s now, 1100 s below the band, 2200 s to reach it.
  const below = run(series(line(1000, 0.5 * STEP))).result;
  assert.deepEqual(verdict(below), [
    "WARNING",
    "intercept recovering - below minimum with slope 0.5",
  ]);
  assert.equal(formatNagios(below, L).exitCode, 1);
});

Deno.test("decide: a trend back that reaches the band after --max-trend-time is CRITICAL", () => {
  // 12600 s falling 0.1 s/s: 12420 s now, 16200 s to reach 10800.
  const obs = series(line(12600, -0.1 * STEP));
  assert.deepEqual(verdict(run(obs).result), [
    "CRITICAL",
    "out of bounds and slope does not indicate recovery: delay intercept 12420 s above maximum, " +
    "slope -0.1",
  ]);
  assert.deepEqual(verdict(run(obs, { ...L, maxTrendTime: 16300 }).result), [
    "WARNING",
    "intercept recovering - above maximum with slope -0.1",
  ]);
});

Deno.test("decide: a trend away from the band is not a recovery", () => {
  // Below the minimum and falling further.
  const { result } = run(series(line(2500, -0.5 * STEP)));
  assert.deepEqual(verdict(result), [
    "CRITICAL",
    "out of bounds and slope does not indicate recovery: delay intercept 1600 s below minimum, " +
    "slope -0.5",
  ]);
});

Deno.test("decide: a noisy series (|r| < 0.5) is no trend, even heading back fast enough", () => {
  const noise = [0, 1500, -1200, 1400, -1500, 1100, -1300, 1500, -1100, 1200, -900];
  const delays = line(12500, -60).map((d, i) => d + noise[i]!);
  const { state, result } = run(series(delays));
  const fit = regress(state.samples, NOW, L.window);
  close(fit.slope, -58 / 99); // the band is (11736 - 10800) / 0.586 = 1598 s away: fast enough
  close(fit.intercept, 129100 / 11);
  assert.ok(Math.abs(fit.correlation) < 0.5, `r = ${fit.correlation}`);
  assert.deepEqual(verdict(result), [
    "CRITICAL",
    "out of bounds and slope does not indicate recovery: delay intercept 11736 s above maximum, " +
    "slope -0.5859",
  ]);
});

Deno.test("decide: a single sample is its own intercept, with no trend", () => {
  const ok = run([obsAt(NOW, 3600)]).result;
  assert.deepEqual(verdict(ok), ["OK", "delay intercept 3600 s within [3000, 10800]"]);
  assert.deepEqual(ok.perfdata, {
    delay: 3600,
    intercept: 3600,
    slope: 0,
    correlation: 0,
    samples: 1,
  });
  assert.equal(
    ok.details![1],
    "fit over 1 sample in the last 1800 s: intercept 3600 s, slope 0 s/s, correlation 0",
  );
  assert.deepEqual(verdict(run([obsAt(NOW, 12000)]).result), [
    "CRITICAL",
    "out of bounds and slope does not indicate recovery: delay intercept 12000 s above maximum, " +
    "slope 0",
  ]);
});

Deno.test("decide: two samples are too few for a trend", () => {
  // A perfect line back (slope -0.5, r -1) through only 2 samples.
  const { result } = run(series([12600, 11700], 1800));
  assert.equal(result.perfdata!.samples, 2);
  assert.deepEqual(verdict(result), [
    "CRITICAL",
    "out of bounds and slope does not indicate recovery: delay intercept 11700 s above maximum, " +
    "slope -0.5",
  ]);
});

Deno.test("decide: an active backup is WARNING within --max-backup-behind, then CRITICAL", () => {
  const obs = series(flat(1000));
  lastOf(obs).markers.backup = { startedAt: NOW - 3600, completedAt: null };
  assert.deepEqual(verdict(run(obs).result), [
    "WARNING",
    "active backup (running 3600 seconds), delay intercept 1000 s below minimum",
  ]);
  lastOf(obs).markers.backup = { startedAt: NOW - 14400, completedAt: null };
  assert.equal(run(obs).result.status, "WARNING");
  lastOf(obs).markers.backup = { startedAt: NOW - 20000, completedAt: null };
  assert.deepEqual(verdict(run(obs).result), [
    "CRITICAL",
    "active backup running 20000 seconds, longer than --max-backup-behind 14400, " +
    "delay intercept 1000 s below minimum",
  ]);
});

Deno.test("decide: an active deshard is WARNING within --max-deshard-behind, then CRITICAL", () => {
  const obs = series(flat(12000));
  lastOf(obs).markers.deshard = { startedAt: NOW - 7200, completedAt: null };
  assert.deepEqual(verdict(run(obs).result), [
    "WARNING",
    "active deshard (running 7200 seconds), delay intercept 12000 s above maximum",
  ]);
  lastOf(obs).markers.deshard = { startedAt: NOW - 30000, completedAt: null };
  assert.deepEqual(verdict(run(obs).result), [
    "CRITICAL",
    "active deshard running 30000 seconds, longer than --max-deshard-behind 21600, " +
    "delay intercept 12000 s above maximum",
  ]);
});

Deno.test("decide: an active backup is checked before an active deshard", () => {
  const obs = series(flat(12000));
  lastOf(obs).markers = {
    backup: { startedAt: NOW - 20000, completedAt: null },
    deshard: { startedAt: NOW - 60, completedAt: null },
  };
  assert.deepEqual(verdict(run(obs).result), [
    "CRITICAL",
    "active backup running 20000 seconds, longer than --max-backup-behind 14400, " +
    "delay intercept 12000 s above maximum",
  ]);
});

Deno.test("decide: an active job with the delay in the band is just OK", () => {
  const obs = series(flat(3600));
  lastOf(obs).markers.backup = { startedAt: NOW - 100000, completedAt: null };
  const { result } = run(obs);
  assert.deepEqual(verdict(result), ["OK", "delay intercept 3600 s within [3000, 10800]"]);
  assert.equal(result.details!.at(-1), "backup marker: started 100000 seconds ago, running");
});

Deno.test("decide: a job completed within --max-recovery-time is WARNING", () => {
  const obs = series(flat(12000));
  lastOf(obs).markers.backup = { startedAt: NOW - 9000, completedAt: NOW - 600 };
  const { result } = run(obs);
  assert.deepEqual(verdict(result), [
    "WARNING",
    "out of bounds, in recovery window for backup which completed 600 seconds ago",
  ]);
  assert.equal(
    result.details!.at(-1),
    "backup marker: started 9000 seconds ago, completed 600 seconds ago",
  );
  // The most recent completion of either job counts.
  lastOf(obs).markers = {
    backup: { startedAt: NOW - 9000, completedAt: NOW - 5000 },
    deshard: { startedAt: NOW - 4000, completedAt: NOW - 100 },
  };
  assert.deepEqual(verdict(run(obs).result), [
    "WARNING",
    "out of bounds, in recovery window for deshard which completed 100 seconds ago",
  ]);
});

Deno.test("decide: a recovery past --max-recovery-time is CRITICAL", () => {
  const obs = series(flat(12000));
  lastOf(obs).markers.backup = { startedAt: NOW - 20000, completedAt: NOW - 8000 };
  assert.deepEqual(verdict(run(obs).result), [
    "CRITICAL",
    "recovery exceeded window: backup completed 8000 seconds ago, --max-recovery-time 7200",
  ]);
  // Long after (past --max-recovery-time + --window), the job is no longer the story.
  lastOf(obs).markers.backup = { startedAt: NOW - 30000, completedAt: NOW - 20000 };
  assert.deepEqual(verdict(run(obs).result), [
    "CRITICAL",
    "out of bounds and slope does not indicate recovery: delay intercept 12000 s above maximum, " +
    "slope 0",
  ]);
});

Deno.test("decide: a trend back still counts after the recovery window", () => {
  const obs = series(line(12600, -0.5 * STEP));
  lastOf(obs).markers.deshard = { startedAt: NOW - 20000, completedAt: NOW - 8000 };
  assert.deepEqual(verdict(run(obs).result), [
    "WARNING",
    "intercept recovering - above maximum with slope -0.5",
  ]);
});

Deno.test("decide: the real value back in the band while the intercept is still out", () => {
  const delays = [12000, 13000, 11500, 12800, 11600, 12900, 11700, 12600, 11900, 12400, 10700];
  const { result } = run(series(delays));
  close(result.perfdata!.intercept, 129100 / 11); // 11736 s: above the band
  assert.ok(Math.abs(result.perfdata!.correlation) < 0.5); // no trend worth believing
  assert.equal(result.perfdata!.delay, 10700);
  assert.deepEqual(verdict(result), ["WARNING", "recovering - real value within range"]);
});

Deno.test("decide: SQL thread stopped is WARNING until --max-last-seen, then CRITICAL", () => {
  // Healthy, then STOP SLAVE SQL_THREAD: the exec position and the heartbeat row freeze.
  const obs = series(flat(3600, 13)).concat(obsAt(NOW + STEP, 0), obsAt(NOW + 2 * STEP, 0));
  const stopAt = NOW - 2 * STEP;
  const frozen = obs.find((o) => o.now === stopAt - STEP)!;
  for (const o of obs.filter((o) => o.now >= stopAt)) {
    o.status = status({
      sqlRunning: false,
      secondsBehindMaster: null,
      readMasterLogPos: o.now,
      execMasterLogPos: frozen.status!.execMasterLogPos,
    });
    o.heartbeat.masterTs = frozen.heartbeat.masterTs;
  }
  const upTo = (t: number) => obs.filter((o) => o.now <= t);
  assert.deepEqual(verdict(run(upTo(NOW)).result), [
    "WARNING",
    "SQL thread stopped 360 seconds ago (deliberate STOP SLAVE? CRITICAL after --max-last-seen)",
  ]);
  assert.equal(
    run(upTo(NOW)).result.details![2],
    "IO thread running, SQL thread stopped, SQL_Delay 3600, Seconds_Behind_Master NULL",
  );
  assert.deepEqual(verdict(run(upTo(NOW + 2 * STEP)).result), [
    "CRITICAL",
    "replication stopped: SQL thread not running for 720 seconds",
  ]);
  // Exactly --max-last-seen is still a WARNING.
  assert.deepEqual(verdict(run(upTo(NOW), { ...L, maxLastSeen: 360 }).result), [
    "WARNING",
    "SQL thread stopped 360 seconds ago (deliberate STOP SLAVE? CRITICAL after --max-last-seen)",
  ]);
});

Deno.test("decide: IO thread stopped is CRITICAL, before a stopped SQL thread", () => {
  const obs = series(flat(3600));
  lastOf(obs).status = status({ ioRunning: false, sqlRunning: false });
  assert.deepEqual(verdict(run(obs).result), [
    "CRITICAL",
    "replication stopped: IO thread not running",
  ]);
});

Deno.test("decide: a replication error is CRITICAL, the IO error first", () => {
  const obs = series(flat(3600));
  const sqlError = "Error 'Unknown table 'catalog.files'' on query. Default database: 'catalog'. " +
    "Query: 'DROP TABLE `files`'";
  lastOf(obs).status = status({ sqlRunning: false, sqlError });
  assert.deepEqual(verdict(run(obs).result), ["CRITICAL", `replication broken: ${sqlError}`]);

  lastOf(obs).status = status({
    ioRunning: false,
    ioError: "error connecting to master 'repl@db1:3306' - retry-time: 60  maximum-retries: 86400",
    sqlError,
  });
  assert.deepEqual(verdict(run(obs).result), [
    "CRITICAL",
    "replication broken: error connecting to master 'repl@db1:3306' - retry-time: 60 " +
    "maximum-retries: 86400",
  ]);
});

Deno.test("decide: a replication error is cut to 200 characters on one line", () => {
  const obs = series(flat(3600));
  lastOf(obs).status = status({
    sqlError: "Could not execute\n  Delete_rows_v1 " + "x".repeat(300),
  });
  const { message } = run(obs).result;
  assert.equal(message, "replication broken: Could not execute Delete_rows_v1 " + "x".repeat(167));
  assert.equal(message.length, "replication broken: ".length + 200);
});

Deno.test("decide: empty error texts are no errors", () => {
  const obs = series(flat(3600));
  lastOf(obs).status = status({ ioError: "", sqlError: " " });
  assert.equal(run(obs).result.status, "OK");
});

Deno.test("decide: no replication configured is CRITICAL", () => {
  const obs = series(flat(3600));
  lastOf(obs).status = null;
  const { result } = run(obs);
  assert.deepEqual(verdict(result), [
    "CRITICAL",
    "replication not configured: SHOW SLAVE STATUS is empty",
  ]);
  assert.equal(result.perfdata!.delay, 3600); // the heartbeat row still tells the delay
});

Deno.test("decide: no heartbeat row is CRITICAL, without perfdata", () => {
  const obs = series(flat(3600));
  lastOf(obs).heartbeat.masterTs = null;
  const { result } = run(obs);
  assert.deepEqual(verdict(result), [
    "CRITICAL",
    "no heartbeat row for server_id 1 in percona.heartbeat",
  ]);
  assert.equal(result.perfdata, null);
  assert.deepEqual(formatNagios(result, L), {
    line: "REPLICATION_DELAY CRITICAL - no heartbeat row for server_id 1 in percona.heartbeat",
    details: [
      "IO thread running, SQL thread running, SQL_Delay 3600, Seconds_Behind_Master 3600",
    ],
    exitCode: 2,
  });

  const bare: Observation = {
    now: NOW,
    status: status({ masterServerId: 7 }),
    heartbeat: { masterTs: null, localTs: null },
    markers: { backup: null, deshard: null },
  };
  assert.equal(
    run([bare]).result.message,
    "no heartbeat row for server_id 7 in the heartbeat table",
  );
  bare.masterServerId = null;
  assert.equal(
    run([bare]).result.message,
    "no heartbeat row for server_id 7 in the heartbeat table",
  );
  bare.status = status({ masterServerId: null });
  assert.equal(
    run([bare]).result.message,
    "no heartbeat row for server_id unknown in the heartbeat table",
  );
});

Deno.test("decide: a primary heartbeat unchanged past --max-last-seen is CRITICAL", () => {
  const obs = series(flat(3600));
  // The row stops changing at NOW - 900 (pt-heartbeat died on the primary); the delay grows.
  const frozenAt = NOW - 5 * STEP;
  for (const o of obs.filter((o) => o.now >= frozenAt)) o.heartbeat.masterTs = frozenAt - 3600;
  const { result } = run(obs);
  assert.deepEqual(verdict(result), [
    "CRITICAL",
    "heartbeats stale: the primary's heartbeat last changed 900 seconds ago",
  ]);
  assert.equal(result.perfdata!.delay, 4500);
  assert.equal(run(obs, { ...L, maxLastSeen: 900 }).result.status, "OK");
});

Deno.test("decide: a stale local heartbeat is CRITICAL; a fresh one measures the delay", () => {
  const obs = series(flat(3600));
  lastOf(obs).heartbeat = { masterTs: NOW - 2 - 3600, localTs: NOW - 2 };
  const fresh = run(obs).result;
  assert.deepEqual(verdict(fresh), ["OK", "delay intercept 3600 s within [3000, 10800]"]);
  assert.equal(fresh.details![0], "delay 3600 s from the local heartbeat row (free of clock skew)");

  lastOf(obs).heartbeat = { masterTs: NOW - 120 - 3600, localTs: NOW - 120 };
  assert.deepEqual(verdict(run(obs).result), [
    "CRITICAL",
    "local heartbeat stale: the replica's own row is 120 seconds old, --max-seconds-behind 60",
  ]);
});

Deno.test("decide: an IO thread that received nothing for --max-master-behind is CRITICAL", () => {
  const obs = [NOW - 600, NOW - 400, NOW - 200, NOW].map((t) => obsAt(t, 3600));
  for (const o of obs.slice(1)) {
    o.status = status({ readMasterLogPos: 777, execMasterLogPos: o.now });
  }
  assert.deepEqual(verdict(run(obs).result), [
    "CRITICAL",
    "IO thread received nothing for 400 seconds",
  ]);
  // A new binlog file at the same position is progress.
  lastOf(obs).status = status({
    masterLogFile: "mariadb-bin.000002",
    readMasterLogPos: 777,
    execMasterLogPos: NOW,
  });
  assert.equal(run(obs).result.status, "OK");
});

Deno.test("decide: an SQL thread that applied nothing for --max-relay-behind is CRITICAL", () => {
  const obs = [NOW - 900, NOW - 700, NOW - 350, NOW].map((t) => obsAt(t, 3600));
  for (const o of obs.slice(1)) o.status = status({ readMasterLogPos: o.now, execMasterLogPos: 5 });
  assert.deepEqual(verdict(run(obs).result), [
    "CRITICAL",
    "SQL thread applied nothing for 700 seconds",
  ]);
  assert.equal(run(obs, { ...L, maxRelayBehind: 700 }).result.status, "OK");
});

Deno.test("decide: a state that misses this run's sample is UNKNOWN", () => {
  assert.deepEqual(verdict(decide(emptyState(), obsAt(NOW, 3600), L)), [
    "UNKNOWN",
    "no delay sample within the last 1800 seconds: the state misses this run",
  ]);
});

// ---------------------------------------------------------------------------------------------
// regress

Deno.test("regress: slope, intercept at now and r against hand-computed values", () => {
  // x = t - now = -200, -100, 0; y = 10, 14, 15. Means -100 and 13; Sxx 20000, Sxy 500, Syy 14.
  const fit = regress(
    [{ t: NOW - 200, delay: 10 }, { t: NOW - 100, delay: 14 }, { t: NOW, delay: 15 }],
    NOW,
    1800,
  );
  assert.equal(fit.count, 3);
  close(fit.slope, 0.025); // 500 / 20000
  close(fit.intercept, 15.5); // 13 - 0.025 * -100
  close(fit.correlation, 500 / Math.sqrt(20000 * 14)); // 0.944911...
  close(fit.correlation, 0.9449111825230679);
});

Deno.test("regress: the intercept is the fitted delay at now, not at t = 0", () => {
  // delay = 2 + 0.5 (t - now), sampled before now.
  const samples = [-1500, -1000, -400, -10].map((x) => ({ t: NOW + x, delay: 2 + 0.5 * x }));
  const fit = regress(samples, NOW, 1800);
  close(fit.slope, 0.5);
  close(fit.intercept, 2, 1e-9);
  close(fit.correlation, 1);
});

Deno.test("regress: only samples within the window count, its start included", () => {
  const fit = regress(
    [{ t: NOW - 1801, delay: 99999 }, { t: NOW - 1800, delay: 10 }, { t: NOW, delay: 10 }],
    NOW,
    1800,
  );
  assert.deepEqual(fit, { slope: 0, intercept: 10, correlation: 0, count: 2 });
});

Deno.test("regress: r is 0 without variance; one sample is its own intercept", () => {
  assert.deepEqual(regress([{ t: NOW, delay: 42 }], NOW, 1800), {
    slope: 0,
    intercept: 42,
    correlation: 0,
    count: 1,
  });
  // Two samples at the same time: no variance in t.
  assert.deepEqual(regress([{ t: NOW, delay: 10 }, { t: NOW, delay: 20 }], NOW, 1800), {
    slope: 0,
    intercept: 15,
    correlation: 0,
    count: 2,
  });
});

Deno.test("regress: no sample in the window is a RangeError", () => {
  assert.throws(() => regress([{ t: NOW - 5000, delay: 1 }], NOW, 1800), {
    name: "RangeError",
    message: "Cannot fit the delay: no sample within the 1800 s window before 1700000000",
  });
});

// ---------------------------------------------------------------------------------------------
// nextState

Deno.test("nextState: adds this run's sample and drops those outside the window", () => {
  const prev: CheckState = {
    ...emptyState(),
    samples: [
      { t: NOW - 2000, delay: 1 },
      { t: NOW - 1800, delay: 2 },
      { t: NOW - 60, delay: 3 },
      { t: NOW, delay: 4 }, // an earlier run in the same second: replaced
      { t: NOW + 10, delay: 5 }, // from the future (the clock went back): dropped
    ],
  };
  const state = nextState(prev, obsAt(NOW, 3600), L);
  assert.deepEqual(state.samples, [
    { t: NOW - 1800, delay: 2 },
    { t: NOW - 60, delay: 3 },
    { t: NOW, delay: 3600 },
  ]);
  assert.equal(prev.samples.length, 5); // prev is not changed
});

Deno.test("nextState: the delay is local ts - master ts with a local row, else now - it", () => {
  const obs = obsAt(NOW, 3600);
  obs.heartbeat = { masterTs: NOW - 3650, localTs: NOW - 40 };
  assert.deepEqual(nextState(emptyState(), obs, L).samples, [{ t: NOW, delay: 3610 }]);
  obs.heartbeat = { masterTs: NOW - 3650, localTs: null };
  assert.deepEqual(nextState(emptyState(), obs, L).samples, [{ t: NOW, delay: 3650 }]);
  obs.heartbeat = { masterTs: null, localTs: NOW };
  const none = nextState(emptyState(), obs, L);
  assert.deepEqual(none.samples, []);
  assert.equal(none.heartbeat, null);
});

Deno.test("nextState: tracks since when the primary's heartbeat ts is unchanged", () => {
  const a = obsAt(NOW, 3600); // masterTs NOW - 3600
  const b = obsAt(NOW + 60, 3660); // same masterTs
  const c = obsAt(NOW + 120, 3600); // a new masterTs
  let state = nextState(emptyState(), a, L);
  assert.deepEqual(state.heartbeat, { masterTs: NOW - 3600, since: NOW });
  state = nextState(state, b, L);
  assert.deepEqual(state.heartbeat, { masterTs: NOW - 3600, since: NOW });
  state = nextState(state, c, L);
  assert.deepEqual(state.heartbeat, { masterTs: NOW - 3480, since: NOW + 120 });
  state = nextState(state, obsAt(NOW + 180, null), L);
  assert.equal(state.heartbeat, null);
});

Deno.test("nextState: tracks since when the read and executed positions are unchanged", () => {
  const at = (t: number, over: Partial<Status>): Observation => ({
    ...obsAt(t, 3600),
    status: status(over),
  });
  let state = nextState(emptyState(), at(NOW, { readMasterLogPos: 10, execMasterLogPos: 5 }), L);
  assert.deepEqual(state.readMasterPos, { file: "mariadb-bin.000001", pos: 10, since: NOW });
  assert.deepEqual(state.execMasterPos, { file: "mariadb-bin.000001", pos: 5, since: NOW });
  state = nextState(state, at(NOW + 60, { readMasterLogPos: 20, execMasterLogPos: 5 }), L);
  assert.deepEqual(state.readMasterPos, { file: "mariadb-bin.000001", pos: 20, since: NOW + 60 });
  assert.deepEqual(state.execMasterPos, { file: "mariadb-bin.000001", pos: 5, since: NOW });
  state = nextState(
    state,
    at(NOW + 120, {
      readMasterLogPos: 20,
      relayMasterLogFile: "mariadb-bin.000002",
      execMasterLogPos: 5,
    }),
    L,
  );
  assert.deepEqual(state.readMasterPos, { file: "mariadb-bin.000001", pos: 20, since: NOW + 60 });
  assert.deepEqual(state.execMasterPos, { file: "mariadb-bin.000002", pos: 5, since: NOW + 120 });
  state = nextState(state, { ...obsAt(NOW + 180, 3600), status: null }, L);
  assert.equal(state.readMasterPos, null);
  assert.equal(state.execMasterPos, null);
});

Deno.test("nextState: sqlStoppedSince is set by the first stopped run, cleared on restart", () => {
  const at = (t: number, sqlRunning: boolean): Observation => ({
    ...obsAt(t, 3600),
    status: status({ sqlRunning }),
  });
  let state = nextState(emptyState(), at(NOW, true), L);
  assert.equal(state.sqlStoppedSince, null);
  state = nextState(state, at(NOW + 60, false), L);
  assert.equal(state.sqlStoppedSince, NOW + 60);
  state = nextState(state, at(NOW + 120, false), L);
  assert.equal(state.sqlStoppedSince, NOW + 60);
  state = nextState(state, at(NOW + 180, true), L);
  assert.equal(state.sqlStoppedSince, null);
  state = nextState(state, at(NOW + 240, false), L);
  assert.equal(state.sqlStoppedSince, NOW + 240);
  state = nextState(state, { ...obsAt(NOW + 300, 3600), status: null }, L);
  assert.equal(state.sqlStoppedSince, null);
});

// ---------------------------------------------------------------------------------------------
// parseState, checkLimits

Deno.test("parseState reads back what nextState wrote", () => {
  const state = run(series(flat(3600))).state;
  assert.deepEqual(parseState(JSON.stringify(state), "/var/tmp/s.json"), state);
  assert.deepEqual(parseState(JSON.stringify(emptyState()), "/var/tmp/s.json"), emptyState());
});

Deno.test("parseState rejects a garbled state file, naming it and the field", () => {
  const where = "/var/tmp/s.json";
  const cases: [string, string][] = [
    ["[]", "expected a JSON object"],
    [
      JSON.stringify({ ...emptyState(), samples: [{ t: 1 }] }),
      `"samples" must be an array of {"t": number, "delay": number}`,
    ],
    [
      JSON.stringify({ ...emptyState(), heartbeat: { masterTs: "x", since: 1 } }),
      `"heartbeat" must be null or {"masterTs": number, "since": number}`,
    ],
    [
      JSON.stringify({ ...emptyState(), execMasterPos: { file: "f", pos: 1 } }),
      `"execMasterPos" must be null or {"file": string, "pos": number, "since": number}`,
    ],
    [
      JSON.stringify({ ...emptyState(), sqlStoppedSince: "yesterday" }),
      `"sqlStoppedSince" must be null or a number`,
    ],
  ];
  for (const [text, what] of cases) {
    assert.throws(() => parseState(text, where), {
      name: "SyntaxError",
      message: `Cannot parse state file /var/tmp/s.json: ${what}`,
    });
  }
  assert.throws(() => parseState("{", where), (e: unknown) => {
    assert.ok(e instanceof SyntaxError);
    assert.match(e.message, /^Cannot parse state file \/var\/tmp\/s\.json: not JSON \(/);
    return true;
  });
});

Deno.test("checkLimits accepts the defaults and names a bad flag", () => {
  checkLimits(DEFAULT_LIMITS);
  assert.throws(() => checkLimits({ ...L, maxLastSeen: -5 }), {
    name: "RangeError",
    message: "Invalid --max-last-seen -5: expected a number of seconds, 0 or more",
  });
  assert.throws(() => checkLimits({ ...L, maxTrendTime: NaN }), {
    name: "RangeError",
    message: "Invalid --max-trend-time NaN: expected a number of seconds, 0 or more",
  });
  assert.throws(() => checkLimits({ ...L, window: 0 }), {
    name: "RangeError",
    message: "Invalid --window 0: expected a number of seconds above 0",
  });
  assert.throws(() => checkLimits({ ...L, minDelayTime: 5000, maxDelayTime: 3000 }), {
    name: "RangeError",
    message: "Invalid --min-delay-time 5000: above --max-delay-time 3000",
  });
});

// ---------------------------------------------------------------------------------------------
// formatNagios

Deno.test("formatNagios: exact line, perfdata numbers and exit codes", () => {
  const result: CheckResult = {
    status: "WARNING",
    message: "intercept recovering - above maximum with slope -0.00001235",
    perfdata: {
      delay: 11000.26,
      intercept: 11736.3636,
      slope: -0.0000123456,
      correlation: -0.264680190,
      samples: 11,
    },
  };
  assert.deepEqual(formatNagios(result, { ...L, minDelayTime: 6600, maxDelayTime: 8400 }), {
    line:
      "REPLICATION_DELAY WARNING - intercept recovering - above maximum with slope -0.00001235" +
      " | delay=11000.3s;;;0 intercept=11736.4s;6600:8400;;0 slope=-0.00001235 " +
      "correlation=-0.2647;;;-1;1 samples=11;;;0",
    details: [],
    exitCode: 1,
  });
  const big = formatNagios({ ...result, perfdata: { ...result.perfdata!, slope: -1234567 } }, L);
  assert.match(big.line, / slope=-1235000 /);
});

Deno.test("formatNagios: without perfdata, and every state's exit code", () => {
  const codes = { OK: 0, WARNING: 1, CRITICAL: 2, UNKNOWN: 3 } as const;
  for (const [s, code] of Object.entries(codes)) {
    const out = formatNagios(
      { status: s as keyof typeof codes, message: "cannot connect to db2:3306", perfdata: null },
      L,
    );
    assert.deepEqual(out, {
      line: `REPLICATION_DELAY ${s} - cannot connect to db2:3306`,
      details: [],
      exitCode: code,
    });
  }
});

Deno.test("formatNagios: a pipe or a newline in the text cannot break the output", () => {
  const out = formatNagios({
    status: "CRITICAL",
    message: "replication broken: Query: 'SELECT a | b'\nnext",
    perfdata: null,
    details: ["x | y", "two\nlines"],
  }, L);
  assert.deepEqual(out, {
    line: "REPLICATION_DELAY CRITICAL - replication broken: Query: 'SELECT a / b' next",
    details: ["x / y", "two lines"],
    exitCode: 2,
  });
});

// ---------------------------------------------------------------------------------------------
// parsePtHeartbeatTs

Deno.test("parsePtHeartbeatTs reads UTC with the fraction", () => {
  // 2024-05-01T12:00:00Z = 1714564800.
  assert.equal(parsePtHeartbeatTs("2024-05-01T12:00:00.250000", { utc: true }), 1714564800.25);
  assert.equal(parsePtHeartbeatTs("2024-05-01T12:00:00", { utc: true }), 1714564800);
  assert.equal(parsePtHeartbeatTs("2024-05-01T12:00:00.5", { utc: true }), 1714564800.5);
  assert.equal(parsePtHeartbeatTs("2024-05-01 12:00:00.000000", { utc: true }), 1714564800);
  close(parsePtHeartbeatTs("2024-05-01T12:00:00.123456", { utc: true }), 1714564800.123456, 1e-6);
});

Deno.test("parsePtHeartbeatTs reads local time with an injected offset", () => {
  const cest = { utc: false, offsetMinutes: () => -120 };
  assert.equal(parsePtHeartbeatTs("2024-05-01T14:00:00.250000", cest), 1714564800.25);
  const est = { utc: false, offsetMinutes: () => 300 };
  assert.equal(parsePtHeartbeatTs("2024-05-01T07:00:00.000000", est), 1714564800);
  // utc ignores the offset.
  assert.equal(parsePtHeartbeatTs("2024-05-01T12:00:00", { ...cest, utc: true }), 1714564800);
});

Deno.test("parsePtHeartbeatTs reads local time in this process's time zone by default", () => {
  const local = new Date(2024, 4, 1, 14, 0, 0).getTime() / 1000;
  assert.equal(parsePtHeartbeatTs("2024-05-01T14:00:00.250000", { utc: false }), local + 0.25);
});

Deno.test("parsePtHeartbeatTs takes the offset at the instant, across a DST change", () => {
  // Europe/Paris: CET (+1 h) until 2024-03-31T01:00:00Z, then CEST (+2 h).
  const change = 1711846800;
  const paris = { utc: false, offsetMinutes: (t: number) => (t < change ? -60 : -120) };
  // 01:30 local is still CET: 00:30Z, though 01:30 read as UTC is past the change.
  assert.equal(parsePtHeartbeatTs("2024-03-31T01:30:00", paris), change - 1800);
  // 04:00 local is CEST: 02:00Z.
  assert.equal(parsePtHeartbeatTs("2024-03-31T04:00:00", paris), change + 3600);
});

Deno.test("parsePtHeartbeatTs rejects garbage with a SyntaxError naming it", () => {
  for (
    const bad of [
      "yesterday",
      "",
      "2024-05-01",
      "2024-05-01T12:00",
      "2024-05-01T12:00:00.1234567",
      "2024-02-30T00:00:00",
      "2024-05-01T24:00:00",
      "2024-05-01T12:00:00Z",
    ]
  ) {
    assert.throws(() => parsePtHeartbeatTs(bad, { utc: true }), {
      name: "SyntaxError",
      message: `Cannot parse pt-heartbeat ts ${
        JSON.stringify(bad)
      }: expected YYYY-MM-DDTHH:MM:SS.ffffff`,
    });
  }
  assert.throws(
    () => parsePtHeartbeatTs("NULL", { utc: false, where: "percona.heartbeat server_id 1" }),
    {
      name: "SyntaxError",
      message: 'Cannot parse pt-heartbeat ts "NULL" in percona.heartbeat server_id 1: ' +
        "expected YYYY-MM-DDTHH:MM:SS.ffffff",
    },
  );
});

// ---------------------------------------------------------------------------------------------
// parseMarker

const MARKER = "/var/run/coldpack/backup.marker";

Deno.test("parseMarker: started only is an active job", () => {
  assert.deepEqual(parseMarker("started=1700000000\n", MARKER), {
    startedAt: 1700000000,
    completedAt: null,
  });
});

Deno.test("parseMarker: started then completed is a completed job", () => {
  assert.deepEqual(parseMarker("started=1700000000\ncompleted=1700003600\n", MARKER), {
    startedAt: 1700000000,
    completedAt: 1700003600,
  });
  assert.deepEqual(parseMarker("started = 10\r\n\r\ncompleted= 20", MARKER), {
    startedAt: 10,
    completedAt: 20,
  });
});

Deno.test("parseMarker: with two runs in one file the last one counts", () => {
  assert.deepEqual(parseMarker("started=10\ncompleted=20\nstarted=30\ncompleted=40\n", MARKER), {
    startedAt: 30,
    completedAt: 40,
  });
  assert.deepEqual(parseMarker("started=10\ncompleted=20\nstarted=30\n", MARKER), {
    startedAt: 30,
    completedAt: null,
  });
});

Deno.test("parseMarker: an empty file is no marker", () => {
  assert.equal(parseMarker("", MARKER), null);
  assert.equal(parseMarker("\n \n", MARKER), null);
});

Deno.test("parseMarker: garbage is a SyntaxError naming the file and line", () => {
  assert.throws(() => parseMarker("started=10\nstarted=$(date +%s)\n", MARKER), {
    name: "SyntaxError",
    message: "Cannot parse marker /var/run/coldpack/backup.marker line 2: expected " +
      'started=<unix seconds> or completed=<unix seconds>, got "started=$(date +%s)"',
  });
  assert.throws(() => parseMarker("\ncompleted=20\n", MARKER), {
    name: "SyntaxError",
    message: "Cannot parse marker /var/run/coldpack/backup.marker line 2: " +
      "completed= before any started=",
  });
  assert.throws(() => parseMarker("started=30\ncompleted=20\n", MARKER), {
    name: "SyntaxError",
    message: "Cannot parse marker /var/run/coldpack/backup.marker line 2: " +
      "completed=20 is before started=30",
  });
});
