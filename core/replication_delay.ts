/**
 * The decision logic of `check_replication_delay`, the Nagios plugin for a delayed MariaDB/MySQL
 * replica (PROTOCOLS.md sections 6 and 7, docs/replication.md).
 *
 * Each run the adapter gathers an {@linkcode Observation} (replica status, pt-heartbeat rows, job
 * markers); {@linkcode nextState} folds it into the {@linkcode CheckState} kept in the state file
 * (delay samples over the window, when the heartbeat and the binlog positions last changed, when
 * the SQL thread was first seen stopped); {@linkcode decide} turns state and observation into a
 * Nagios state and message; {@linkcode formatNagios} prints it. All times are unix seconds.
 *
 * @example
 * ```ts
 * const limits = { ...DEFAULT_LIMITS, minDelayTime: 6600, maxDelayTime: 8400 };
 * const state = nextState(previous, observation, limits); // save it to the state file
 * const { line, details, exitCode } = formatNagios(decide(state, observation, limits), limits);
 * ```
 * @module
 */

/** A Nagios plugin state. */
export type NagiosStatus = "OK" | "WARNING" | "CRITICAL" | "UNKNOWN";

/** The first word of every output line. */
export const CHECK_NAME = "REPLICATION_DELAY";

/** Exit code per Nagios state (PROTOCOLS.md section 7). */
export const EXIT_CODES: Readonly<Record<NagiosStatus, 0 | 1 | 2 | 3>> = {
  OK: 0,
  WARNING: 1,
  CRITICAL: 2,
  UNKNOWN: 3,
};

/** The replica's `SHOW SLAVE STATUS`, as the adapter maps it. */
export interface Status {
  /** `Slave_IO_Running` is `Yes`. */
  ioRunning: boolean;
  /** `Slave_SQL_Running` is `Yes`. */
  sqlRunning: boolean;
  /** `Last_IO_Error`; `""` maps to null. */
  ioError: string | null;
  /** `Last_SQL_Error`; `""` maps to null. */
  sqlError: string | null;
  /** `SQL_Delay` (the configured master_delay). */
  sqlDelay: number | null;
  /** `Seconds_Behind_Master` (NULL while the SQL thread is stopped). */
  secondsBehindMaster: number | null;
  /** `Master_Log_File`: the primary's binlog the IO thread reads. */
  masterLogFile: string;
  /** `Read_Master_Log_Pos`. */
  readMasterLogPos: number;
  /** `Relay_Master_Log_File`: the primary's binlog the SQL thread executes. */
  relayMasterLogFile: string;
  /** `Exec_Master_Log_Pos`. */
  execMasterLogPos: number;
  /** `Master_Server_Id`. */
  masterServerId: number | null;
}

/** The pt-heartbeat rows as seen on the replica, `ts` parsed by {@linkcode parsePtHeartbeatTs}. */
export interface Heartbeat {
  /** The primary's row's ts; null when there is no row. */
  masterTs: number | null;
  /** The replica's own row's ts (its `@@server_id`), when a pt-heartbeat also writes there. */
  localTs: number | null;
}

/** A backup or deshard job's marker (see {@linkcode parseMarker}). */
export interface Marker {
  /** When the job started. */
  startedAt: number;
  /** When it completed; null while it runs. */
  completedAt: number | null;
}

/** The job markers; null = no marker file. */
export interface Markers {
  /** From `--backup-marker`. */
  backup: Marker | null;
  /** From `--deshard-marker`. */
  deshard: Marker | null;
}

/** What one run of the check sees. */
export interface Observation {
  /** The check's clock. */
  now: number;
  /** null when the server is not a replica (`SHOW SLAVE STATUS` empty). */
  status: Status | null;
  /** The pt-heartbeat rows. */
  heartbeat: Heartbeat;
  /** The job markers. */
  markers: Markers;
  /** The server_id whose heartbeat row was read (for messages); default `status.masterServerId`. */
  masterServerId?: number | null;
  /** `DB.TABLE` of the heartbeat table (for messages); default "the heartbeat table". */
  heartbeatTable?: string;
}

/** The check's limits in seconds; see {@linkcode DEFAULT_LIMITS} and {@linkcode LIMIT_FLAGS}. */
export interface Limits {
  /** The replica's own heartbeat row may be at most this old. */
  maxSecondsBehind: number;
  /** The SQL thread must have applied something within this long. */
  maxRelayBehind: number;
  /** The IO thread must have received something within this long. */
  maxMasterBehind: number;
  /** How long a backup may run with the delay out of the band. */
  maxBackupBehind: number;
  /** How long a deshard may run with the delay out of the band. */
  maxDeshardBehind: number;
  /** The primary's heartbeat must have changed within this long; also the longest SQL stop. */
  maxLastSeen: number;
  /** Lower bound of the OK band for the intercept. */
  minDelayTime: number;
  /** Upper bound of the OK band for the intercept. */
  maxDelayTime: number;
  /** How long after a job completed the delay may stay out of the band. */
  maxRecoveryTime: number;
  /** A trend back must reach the band within this long. */
  maxTrendTime: number;
  /** The regression window. */
  window: number;
}

/** Default limits (seconds). */
export const DEFAULT_LIMITS: Readonly<Limits> = {
  maxSecondsBehind: 60,
  maxRelayBehind: 600,
  maxMasterBehind: 300,
  maxBackupBehind: 14400,
  maxDeshardBehind: 21600,
  maxLastSeen: 600,
  minDelayTime: 3000,
  maxDelayTime: 10800,
  maxRecoveryTime: 7200,
  maxTrendTime: 3600,
  window: 1800,
};

/** The command-line flag of each limit, as messages name them. */
export const LIMIT_FLAGS: Readonly<Record<keyof Limits, string>> = {
  maxSecondsBehind: "--max-seconds-behind",
  maxRelayBehind: "--max-relay-behind",
  maxMasterBehind: "--max-master-behind",
  maxBackupBehind: "--max-backup-behind",
  maxDeshardBehind: "--max-deshard-behind",
  maxLastSeen: "--max-last-seen",
  minDelayTime: "--min-delay-time",
  maxDelayTime: "--max-delay-time",
  maxRecoveryTime: "--max-recovery-time",
  maxTrendTime: "--max-trend-time",
  window: "--window",
};

/** A trend is believed only with at least this |correlation|. */
export const MIN_TREND_CORRELATION = 0.5;

/** A trend needs at least this many samples in the window. */
export const MIN_TREND_SAMPLES = 3;

/**
 * Checks limits (bad ones are the caller's UNKNOWN "bad arguments"). Throws `RangeError` naming
 * the flag: a value that is not a finite number of seconds >= 0, a `--window` of 0, or
 * `--min-delay-time` above `--max-delay-time`.
 *
 * @example
 * ```ts
 * checkLimits({ ...DEFAULT_LIMITS, window: 0 }); // RangeError: Invalid --window 0: ...
 * ```
 */
export function checkLimits(limits: Limits): void {
  for (const key of Object.keys(LIMIT_FLAGS) as (keyof Limits)[]) {
    const value = limits[key];
    if (typeof value !== "number" || !Number.isFinite(value) || value < 0) {
      throw new RangeError(
        `Invalid ${LIMIT_FLAGS[key]} ${value}: expected a number of seconds, 0 or more`,
      );
    }
  }
  if (limits.window === 0) {
    throw new RangeError(`Invalid --window 0: expected a number of seconds above 0`);
  }
  if (limits.minDelayTime > limits.maxDelayTime) {
    throw new RangeError(
      `Invalid --min-delay-time ${limits.minDelayTime}: ` +
        `above --max-delay-time ${limits.maxDelayTime}`,
    );
  }
}

/** One delay measurement. */
export interface Sample {
  /** When it was taken (the run's `now`). */
  t: number;
  /** The delay in seconds. */
  delay: number;
}

/** A binlog position and when it was first seen. */
export interface LogPosition {
  /** The primary's binlog file name. */
  file: string;
  /** The position in it. */
  pos: number;
  /** The first run that saw this file and position. */
  since: number;
}

/** What the check remembers between runs (the JSON state file). */
export interface CheckState {
  /** Delay samples within the window, oldest first. */
  samples: Sample[];
  /** The primary's heartbeat ts and when that value was first seen; null without a row. */
  heartbeat: { masterTs: number; since: number } | null;
  /** `Master_Log_File`/`Read_Master_Log_Pos` and when first seen; null without status. */
  readMasterPos: LogPosition | null;
  /** `Relay_Master_Log_File`/`Exec_Master_Log_Pos` and when first seen; null without status. */
  execMasterPos: LogPosition | null;
  /** The first run that saw the SQL thread stopped; null while it runs. */
  sqlStoppedSince: number | null;
}

/** The state of a first run (no state file yet). */
export function emptyState(): CheckState {
  return {
    samples: [],
    heartbeat: null,
    readMasterPos: null,
    execMasterPos: null,
    sqlStoppedSince: null,
  };
}

/**
 * Parses a state file's text (`JSON.stringify` of a {@linkcode CheckState}). Throws `SyntaxError`
 * naming `where` and what is wrong.
 *
 * @example
 * ```ts
 * parseState(JSON.stringify(emptyState()), "/var/tmp/check.json"); // emptyState()
 * ```
 */
export function parseState(text: string, where: string): CheckState {
  const bad = (what: string) => new SyntaxError(`Cannot parse state file ${where}: ${what}`);
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw bad(`not JSON (${(e as Error).message})`);
  }
  if (!isRecord(raw)) throw bad("expected a JSON object");
  const { samples, heartbeat, readMasterPos, execMasterPos, sqlStoppedSince } = raw;
  if (
    !Array.isArray(samples) || !samples.every((s) => isRecord(s) && isNum(s.t) && isNum(s.delay))
  ) {
    throw bad(`"samples" must be an array of {"t": number, "delay": number}`);
  }
  if (
    heartbeat !== null &&
    !(isRecord(heartbeat) && isNum(heartbeat.masterTs) && isNum(heartbeat.since))
  ) {
    throw bad(`"heartbeat" must be null or {"masterTs": number, "since": number}`);
  }
  for (const [name, p] of [["readMasterPos", readMasterPos], ["execMasterPos", execMasterPos]]) {
    if (
      p !== null && !(isRecord(p) && typeof p.file === "string" && isNum(p.pos) && isNum(p.since))
    ) {
      throw bad(`"${name}" must be null or {"file": string, "pos": number, "since": number}`);
    }
  }
  if (sqlStoppedSince !== null && !isNum(sqlStoppedSince)) {
    throw bad(`"sqlStoppedSince" must be null or a number`);
  }
  const pos = (p: unknown): LogPosition | null => {
    if (!isRecord(p)) return null;
    return { file: p.file as string, pos: p.pos as number, since: p.since as number };
  };
  return {
    samples: (samples as { t: number; delay: number }[]).map(({ t, delay }) => ({ t, delay })),
    heartbeat: isRecord(heartbeat)
      ? { masterTs: heartbeat.masterTs as number, since: heartbeat.since as number }
      : null,
    readMasterPos: pos(readMasterPos),
    execMasterPos: pos(execMasterPos),
    sqlStoppedSince: sqlStoppedSince as number | null,
  };
}

function isRecord(x: unknown): x is Record<string, unknown> {
  return typeof x === "object" && x !== null && !Array.isArray(x);
}

function isNum(x: unknown): x is number {
  return typeof x === "number" && Number.isFinite(x);
}

/** A least-squares line of delay on time. */
export interface Regression {
  /** Seconds of delay per second. */
  slope: number;
  /** The fitted delay at `now`. */
  intercept: number;
  /** Pearson's r; 0 when undefined (fewer than 2 samples, or no variance). */
  correlation: number;
  /** Samples used. */
  count: number;
}

/**
 * Fits delay = intercept + slope * (t - now) by least squares over the samples with
 * `t >= now - windowSec`. One sample gives slope 0, its delay, r 0. Throws `RangeError` when no
 * sample is within the window.
 *
 * @example
 * ```ts
 * regress([{ t: 100, delay: 10 }, { t: 200, delay: 14 }, { t: 300, delay: 15 }], 300, 1800);
 * // { slope: 0.025, intercept: 15.5, correlation: 0.9449..., count: 3 }
 * ```
 */
export function regress(samples: readonly Sample[], now: number, windowSec: number): Regression {
  const from = now - windowSec;
  const points = samples.filter((s) => s.t >= from);
  const n = points.length;
  if (n === 0) {
    throw new RangeError(
      `Cannot fit the delay: no sample within the ${windowSec} s window before ${now}`,
    );
  }
  // x relative to now, so the intercept is the fitted delay at now; two passes for precision.
  let mx = 0;
  let my = 0;
  for (const p of points) {
    mx += p.t - now;
    my += p.delay;
  }
  mx /= n;
  my /= n;
  let sxx = 0;
  let sxy = 0;
  let syy = 0;
  for (const p of points) {
    const dx = p.t - now - mx;
    const dy = p.delay - my;
    sxx += dx * dx;
    sxy += dx * dy;
    syy += dy * dy;
  }
  const slope = sxx > 0 ? sxy / sxx : 0;
  const correlation = sxx > 0 && syy > 0
    ? Math.max(-1, Math.min(1, sxy / Math.sqrt(sxx * syy)))
    : 0;
  return { slope, intercept: my - slope * mx, correlation, count: n };
}

/**
 * The delay an observation measures: `localTs - masterTs` with a local heartbeat row (free of
 * clock skew between the hosts), else `now - masterTs`; null without the primary's row.
 */
export function sampleDelay(obs: Observation): number | null {
  const { masterTs, localTs } = obs.heartbeat;
  if (masterTs === null) return null;
  return (localTs ?? obs.now) - masterTs;
}

/**
 * Folds one observation into the state: adds its delay sample (replacing one taken at the same
 * `now`), drops samples older than `limits.window` (and any newer than `now`), and tracks since
 * when the primary's heartbeat ts, the read and the executed binlog positions have their current
 * values, and since when the SQL thread is stopped.
 *
 * @example
 * ```ts
 * let state = emptyState();
 * state = nextState(state, observation, DEFAULT_LIMITS);
 * ```
 */
export function nextState(prev: CheckState, obs: Observation, limits: Limits): CheckState {
  const { now, status } = obs;
  const from = now - limits.window;
  const samples = prev.samples.filter((s) => s.t >= from && s.t < now).map((s) => ({ ...s }));
  const delay = sampleDelay(obs);
  if (delay !== null) samples.push({ t: now, delay });
  samples.sort((a, b) => a.t - b.t);

  const { masterTs } = obs.heartbeat;
  const heartbeat = masterTs === null
    ? null
    : prev.heartbeat !== null && prev.heartbeat.masterTs === masterTs
    ? { ...prev.heartbeat }
    : { masterTs, since: now };

  if (status === null) {
    return { samples, heartbeat, readMasterPos: null, execMasterPos: null, sqlStoppedSince: null };
  }
  return {
    samples,
    heartbeat,
    readMasterPos: track(prev.readMasterPos, status.masterLogFile, status.readMasterLogPos, now),
    execMasterPos: track(
      prev.execMasterPos,
      status.relayMasterLogFile,
      status.execMasterLogPos,
      now,
    ),
    sqlStoppedSince: status.sqlRunning ? null : prev.sqlStoppedSince ?? now,
  };
}

function track(prev: LogPosition | null, file: string, pos: number, now: number): LogPosition {
  if (prev !== null && prev.file === file && prev.pos === pos) return { ...prev };
  return { file, pos, since: now };
}

/** The numbers a result reports as perfdata. */
export interface Perfdata {
  /** The newest real delay (this run's sample). */
  delay: number;
  /** The fitted delay now (see {@linkcode Regression}). */
  intercept: number;
  /** Seconds of delay per second. */
  slope: number;
  /** Pearson's r of the fit. */
  correlation: number;
  /** Samples in the window. */
  samples: number;
}

/** A check's verdict. */
export interface CheckResult {
  /** The Nagios state. */
  status: NagiosStatus;
  /** One line, without the `REPLICATION_DELAY STATE - ` prefix. */
  message: string;
  /** null when there is no delay to report. */
  perfdata: Perfdata | null;
  /** Further output lines (the numbers behind the verdict); none when absent. */
  details?: string[];
}

/**
 * Decides the Nagios state of the replica, first rule that applies (issue 7 design, "Decision
 * order"): replication not configured, broken, stopped (IO; SQL a WARNING until
 * `--max-last-seen`), no/stale heartbeats, idle threads, then the intercept against the band,
 * with the exceptions for active jobs, recovery windows and trends back. `state` must be
 * {@linkcode nextState} of this observation.
 *
 * @example
 * ```ts
 * decide(state, observation, DEFAULT_LIMITS);
 * // { status: "OK", message: "delay intercept 3600 s within [3000, 10800]", perfdata: {...} }
 * ```
 */
export function decide(state: CheckState, obs: Observation, limits: Limits): CheckResult {
  const { now, status, heartbeat } = obs;
  const delay = sampleDelay(obs);
  const inWindow = state.samples.filter((s) => s.t >= now - limits.window);
  const fit = inWindow.length > 0 ? regress(inWindow, now, limits.window) : null;
  const perfdata: Perfdata | null = delay !== null && fit !== null
    ? {
      delay,
      intercept: fit.intercept,
      slope: fit.slope,
      correlation: fit.correlation,
      samples: fit.count,
    }
    : null;
  const details = describe(obs, fit, delay, limits);
  const result = (s: NagiosStatus, message: string): CheckResult => ({
    status: s,
    message,
    perfdata,
    details,
  });

  // 1-4: replication itself.
  if (status === null) {
    return result("CRITICAL", "replication not configured: SHOW SLAVE STATUS is empty");
  }
  const error = nonEmpty(status.ioError) ?? nonEmpty(status.sqlError);
  if (error !== null) {
    const text = error.replace(/\s+/g, " ").trim().slice(0, 200);
    return result("CRITICAL", `replication broken: ${text}`);
  }
  if (!status.ioRunning) {
    return result("CRITICAL", "replication stopped: IO thread not running");
  }
  if (!status.sqlRunning) {
    const stopped = now - (state.sqlStoppedSince ?? now);
    if (stopped > limits.maxLastSeen) {
      return result(
        "CRITICAL",
        `replication stopped: SQL thread not running for ${secs(stopped)} seconds`,
      );
    }
    return result(
      "WARNING",
      `SQL thread stopped ${
        secs(stopped)
      } seconds ago (deliberate STOP SLAVE? CRITICAL after --max-last-seen)`,
    );
  }

  // 5-8: heartbeats and thread progress.
  if (heartbeat.masterTs === null) {
    const id = obs.masterServerId ?? status.masterServerId ?? "unknown";
    const table = obs.heartbeatTable ?? "the heartbeat table";
    return result("CRITICAL", `no heartbeat row for server_id ${id} in ${table}`);
  }
  if (heartbeat.localTs !== null && now - heartbeat.localTs > limits.maxSecondsBehind) {
    return result(
      "CRITICAL",
      `local heartbeat stale: the replica's own row is ${
        secs(now - heartbeat.localTs)
      } seconds old, --max-seconds-behind ${limits.maxSecondsBehind}`,
    );
  }
  if (state.heartbeat !== null && now - state.heartbeat.since > limits.maxLastSeen) {
    return result(
      "CRITICAL",
      `heartbeats stale: the primary's heartbeat last changed ${
        secs(now - state.heartbeat.since)
      } seconds ago`,
    );
  }
  if (state.readMasterPos !== null && now - state.readMasterPos.since > limits.maxMasterBehind) {
    return result(
      "CRITICAL",
      `IO thread received nothing for ${secs(now - state.readMasterPos.since)} seconds`,
    );
  }
  if (state.execMasterPos !== null && now - state.execMasterPos.since > limits.maxRelayBehind) {
    return result(
      "CRITICAL",
      `SQL thread applied nothing for ${secs(now - state.execMasterPos.since)} seconds`,
    );
  }
  if (delay === null || fit === null) {
    return result(
      "UNKNOWN",
      `no delay sample within the last ${limits.window} seconds: the state misses this run`,
    );
  }

  // 9-10: the intercept against the band.
  const { minDelayTime: min, maxDelayTime: max } = limits;
  const intercept = fit.intercept;
  if (intercept >= min && intercept <= max) {
    return result("OK", `delay intercept ${secs(intercept)} s within [${min}, ${max}]`);
  }
  const below = intercept < min;
  const side = below ? "below minimum" : "above maximum";
  const where = `delay intercept ${secs(intercept)} s ${side}`;

  for (const kind of ["backup", "deshard"] as const) {
    const marker = obs.markers[kind];
    if (marker === null || marker.completedAt !== null) continue;
    const age = now - marker.startedAt;
    const key = kind === "backup" ? "maxBackupBehind" : "maxDeshardBehind";
    if (age <= limits[key]) {
      return result("WARNING", `active ${kind} (running ${secs(age)} seconds), ${where}`);
    }
    return result(
      "CRITICAL",
      `active ${kind} running ${secs(age)} seconds, longer than ${LIMIT_FLAGS[key]} ${
        limits[key]
      }, ${where}`,
    );
  }

  const job = lastCompleted(obs.markers);
  if (job !== null && now - job.completedAt <= limits.maxRecoveryTime) {
    return result(
      "WARNING",
      `out of bounds, in recovery window for ${job.kind} which completed ${
        secs(now - job.completedAt)
      } seconds ago`,
    );
  }

  const bound = below ? min : max;
  const towards = below ? fit.slope > 0 : fit.slope < 0;
  if (
    towards && fit.count >= MIN_TREND_SAMPLES &&
    Math.abs(fit.correlation) >= MIN_TREND_CORRELATION &&
    Math.abs(bound - intercept) / Math.abs(fit.slope) <= limits.maxTrendTime
  ) {
    return result("WARNING", `intercept recovering - ${side} with slope ${sig4(fit.slope)}`);
  }

  if (delay >= min && delay <= max) {
    return result("WARNING", "recovering - real value within range");
  }

  if (job !== null) {
    const ago = now - job.completedAt;
    if (ago > limits.maxRecoveryTime && ago < limits.maxRecoveryTime + limits.window) {
      return result(
        "CRITICAL",
        `recovery exceeded window: ${job.kind} completed ${
          secs(ago)
        } seconds ago, --max-recovery-time ${limits.maxRecoveryTime}`,
      );
    }
  }

  return result(
    "CRITICAL",
    `out of bounds and slope does not indicate recovery: ${where}, slope ${sig4(fit.slope)}`,
  );
}

function nonEmpty(s: string | null): string | null {
  return s === null || s.trim() === "" ? null : s;
}

function lastCompleted(
  markers: Markers,
): { kind: "backup" | "deshard"; completedAt: number } | null {
  let best: { kind: "backup" | "deshard"; completedAt: number } | null = null;
  for (const kind of ["backup", "deshard"] as const) {
    const completedAt = markers[kind]?.completedAt ?? null;
    if (completedAt !== null && (best === null || completedAt > best.completedAt)) {
      best = { kind, completedAt };
    }
  }
  return best;
}

function describe(
  obs: Observation,
  fit: Regression | null,
  delay: number | null,
  limits: Limits,
): string[] {
  const lines: string[] = [];
  if (delay !== null) {
    lines.push(
      obs.heartbeat.localTs !== null
        ? `delay ${dec(delay, 1)} s from the local heartbeat row (free of clock skew)`
        : `delay ${dec(delay, 1)} s against this host's clock (no local heartbeat row)`,
    );
  }
  if (delay !== null && fit !== null) {
    lines.push(
      `fit over ${fit.count} sample${fit.count === 1 ? "" : "s"} in the last ${limits.window} s: ` +
        `intercept ${dec(fit.intercept, 1)} s, slope ${sig4(fit.slope)} s/s, correlation ${
          dec(fit.correlation, 4)
        }`,
    );
  }
  const s = obs.status;
  if (s !== null) {
    lines.push(
      `IO thread ${s.ioRunning ? "running" : "stopped"}, SQL thread ${
        s.sqlRunning ? "running" : "stopped"
      }, SQL_Delay ${s.sqlDelay ?? "NULL"}, Seconds_Behind_Master ${
        s.secondsBehindMaster ?? "NULL"
      }`,
    );
  }
  for (const kind of ["backup", "deshard"] as const) {
    const m = obs.markers[kind];
    if (m === null) continue;
    lines.push(
      m.completedAt === null
        ? `${kind} marker: started ${secs(obs.now - m.startedAt)} seconds ago, running`
        : `${kind} marker: started ${secs(obs.now - m.startedAt)} seconds ago, completed ${
          secs(obs.now - m.completedAt)
        } seconds ago`,
    );
  }
  return lines;
}

/** Whole seconds, never "-0". */
function secs(x: number): string {
  return dec(x, 0);
}

/** `x` rounded to `decimals`, trailing zeros dropped, never "-0" nor an exponent. */
function dec(x: number, decimals: number): string {
  let s = x.toFixed(decimals);
  if (s.includes(".")) s = s.replace(/0+$/, "").replace(/\.$/, "");
  return s === "-0" ? "0" : s;
}

/** `x` to 4 significant digits, trailing zeros dropped, never an exponent. */
function sig4(x: number): string {
  if (x === 0 || !Number.isFinite(x)) return x === 0 ? "0" : String(x);
  const rounded = Number(x.toPrecision(4));
  const exponent = Math.floor(Math.log10(Math.abs(rounded)));
  return dec(rounded, Math.min(100, Math.max(0, 3 - exponent)));
}

/** A Nagios plugin's output. */
export interface NagiosOutput {
  /** `REPLICATION_DELAY STATE - message | perfdata`. */
  line: string;
  /** Further lines to print after it. */
  details: string[];
  /** The process exit code: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. */
  exitCode: 0 | 1 | 2 | 3;
}

/**
 * Formats a result per PROTOCOLS.md section 7: `REPLICATION_DELAY STATE - message | delay=Ds;;;0
 * intercept=Is;MIN:MAX;;0 slope=S correlation=R;;;-1;1 samples=K;;;0` (perfdata only with a
 * delay; trailing empty fields dropped). A `|` in the text becomes `/` and whitespace runs one
 * space, so the perfdata stays parseable and every line stays one line.
 *
 * @example
 * ```ts
 * const result = { status: "UNKNOWN", message: "cannot connect to db2:3306", perfdata: null };
 * formatNagios(result, DEFAULT_LIMITS);
 * // { line: "REPLICATION_DELAY UNKNOWN - cannot connect to db2:3306", details: [], exitCode: 3 }
 * ```
 */
export function formatNagios(result: CheckResult, limits: Limits): NagiosOutput {
  let line = `${CHECK_NAME} ${result.status} - ${oneLine(result.message)}`;
  const p = result.perfdata;
  if (p !== null) {
    const perf = [
      perfItem("delay", dec(p.delay, 1), "s", "", "", "0"),
      perfItem(
        "intercept",
        dec(p.intercept, 1),
        "s",
        `${limits.minDelayTime}:${limits.maxDelayTime}`,
        "",
        "0",
      ),
      perfItem("slope", sig4(p.slope), ""),
      perfItem("correlation", dec(p.correlation, 4), "", "", "", "-1", "1"),
      perfItem("samples", String(p.samples), "", "", "", "0"),
    ];
    line += ` | ${perf.join(" ")}`;
  }
  return {
    line,
    details: (result.details ?? []).map(oneLine),
    exitCode: EXIT_CODES[result.status],
  };
}

function oneLine(text: string): string {
  return text.replace(/\|/g, "/").replace(/\s+/g, " ").trim();
}

/** `'label'=valueUOM;warn;crit;min;max`, label quoted only when needed, trailing `;` dropped. */
function perfItem(label: string, value: string, uom: string, ...fields: string[]): string {
  const name = /^[A-Za-z0-9_.:-]+$/.test(label) ? label : `'${label.replace(/'/g, "''")}'`;
  return [`${name}=${value}${uom}`, ...fields].join(";").replace(/;+$/, "");
}

/** Options of {@linkcode parsePtHeartbeatTs}. */
export interface PtHeartbeatTsOptions {
  /** The writer ran with `--utc`; else the ts is local time. */
  utc: boolean;
  /**
   * The time zone at a unix time as `Date#getTimezoneOffset` gives it: UTC minus local time in
   * minutes (-120 in CEST, 300 in EST). Default: this process's time zone.
   */
  offsetMinutes?: (unixSeconds: number) => number;
  /** Where the ts was read, for the error (e.g. "percona.heartbeat server_id 1"). */
  where?: string;
}

const PT_TS = /^(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,6}))?$/;

/**
 * Parses pt-heartbeat's `ts` (`YYYY-MM-DDTHH:MM:SS.ffffff`, local time unless `utc`) into unix
 * seconds with the fraction. Throws `SyntaxError` naming the text.
 *
 * @example
 * ```ts
 * parsePtHeartbeatTs("2024-05-01T12:00:00.250000", { utc: true }); // 1714564800.25
 * parsePtHeartbeatTs("2024-05-01T14:00:00.250000", { utc: false, offsetMinutes: () => -120 });
 * // 1714564800.25
 * ```
 */
export function parsePtHeartbeatTs(ts: string, options: PtHeartbeatTsOptions): number {
  const bad = () =>
    new SyntaxError(
      `Cannot parse pt-heartbeat ts ${JSON.stringify(ts)}${
        options.where === undefined ? "" : ` in ${options.where}`
      }: expected YYYY-MM-DDTHH:MM:SS.ffffff`,
    );
  const m = PT_TS.exec(ts);
  if (m === null) throw bad();
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [
    number,
    number,
    number,
    number,
    number,
    number,
  ];
  const d = new Date(Date.UTC(year, month - 1, day, hour, minute, second));
  d.setUTCFullYear(year); // Date.UTC maps years 0-99 to 1900-1999
  if (
    d.getUTCFullYear() !== year || d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day ||
    d.getUTCHours() !== hour || d.getUTCMinutes() !== minute || d.getUTCSeconds() !== second
  ) {
    throw bad();
  }
  const fraction = m[7] === undefined ? 0 : Number(`0.${m[7]}`);
  const wall = d.getTime() / 1000;
  if (options.utc) return wall + fraction;
  const minutes = options.offsetMinutes ?? systemOffsetMinutes;
  const offset = (t: number) => -minutes(t) * 60; // local - UTC, seconds
  // The offset at the instant, not at the wall time read as UTC: refine once (DST changes).
  const t = wall - offset(wall - offset(wall));
  return t + fraction;
}

function systemOffsetMinutes(unixSeconds: number): number {
  return new Date(unixSeconds * 1000).getTimezoneOffset();
}

const MARKER_LINE = /^(started|completed)\s*=\s*(\d+(?:\.\d+)?)$/;

/**
 * Parses a job marker file: `started=<unix seconds>` written when a job starts, and
 * `completed=<unix seconds>` appended when it ends. The last `started=` and a `completed=` after
 * it make the marker (an earlier run's lines are ignored); blank lines are skipped; an empty file
 * is no marker (null). Throws `SyntaxError` naming `where` and the line for any other line, a
 * `completed=` before any `started=`, or one earlier than its `started=`.
 *
 * @example
 * ```ts
 * parseMarker("started=1700000000\ncompleted=1700003600\n", "/var/run/coldpack/backup.marker");
 * // { startedAt: 1700000000, completedAt: 1700003600 }
 * ```
 */
export function parseMarker(text: string, where: string): Marker | null {
  let marker: Marker | null = null;
  const lines = text.split("\n");
  for (const [i, raw] of lines.entries()) {
    const line = raw.trim();
    if (line === "") continue;
    const prefix = `Cannot parse marker ${where} line ${i + 1}`;
    const m = MARKER_LINE.exec(line);
    if (m === null) {
      throw new SyntaxError(
        `${prefix}: expected started=<unix seconds> or completed=<unix seconds>, got ${
          JSON.stringify(line.slice(0, 80))
        }`,
      );
    }
    const value = Number(m[2]);
    if (m[1] === "started") {
      marker = { startedAt: value, completedAt: null };
    } else if (marker === null) {
      throw new SyntaxError(`${prefix}: completed= before any started=`);
    } else if (value < marker.startedAt) {
      throw new SyntaxError(
        `${prefix}: completed=${value} is before started=${marker.startedAt}`,
      );
    } else {
      marker = { startedAt: marker.startedAt, completedAt: value };
    }
  }
  return marker;
}
