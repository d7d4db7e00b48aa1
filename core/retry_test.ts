import assert from "node:assert/strict";
import {
  backoffDelay,
  Limiter,
  retry,
  type RetryPolicy,
  withRetryCatalog,
  withRetryStore,
  withTimeout,
} from "./retry.ts";
import { PortError } from "./errors.ts";
import type { Catalog, Clock, ColdStore, PutArchive, StoredArchive } from "./ports.ts";
import { archiveId, remoteArchiveId } from "./ids.ts";

/** A clock whose sleeps resolve when the test advances it; records each sleep. */
function manualClock() {
  let now = 0;
  const sleeps: number[] = [];
  const waiters: { at: number; resolve: () => void }[] = [];
  const clock: Clock = {
    now: () => now,
    sleep(ms, signal) {
      sleeps.push(ms);
      return new Promise((resolve, reject) => {
        if (signal?.aborted) return reject(signal.reason);
        const w = { at: now + ms, resolve };
        waiters.push(w);
        signal?.addEventListener("abort", () => {
          waiters.splice(waiters.indexOf(w), 1);
          reject(signal.reason);
        }, { once: true });
      });
    },
  };
  return {
    clock,
    sleeps,
    advance(ms: number) {
      now += ms;
      for (const w of [...waiters]) {
        if (w.at <= now) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve();
        }
      }
    },
  };
}

/** Sleeps that return at once, recording the delays. */
function instantClock() {
  const sleeps: number[] = [];
  const clock: Clock = {
    now: () => 0,
    sleep: (ms, signal) => {
      sleeps.push(ms);
      if (signal?.aborted) return Promise.reject(signal.reason);
      return Promise.resolve();
    },
  };
  return { clock, sleeps };
}

const throttled = () =>
  new PortError("glacier://r/v: ThrottlingException: slow down", {
    code: "ThrottlingException",
    retryable: true,
  });
const notFound = () =>
  new PortError("glacier://r/v: ResourceNotFoundException: no vault", {
    code: "ResourceNotFoundException",
    retryable: false,
  });

function policy(clock: Clock, extra: Partial<RetryPolicy> = {}) {
  // No timeouts in these tests: an instant clock would fire them at once.
  return {
    attempts: 5,
    baseMs: 100,
    maxMs: 1_000,
    clock,
    random: () => 0.5,
    putTimeoutMs: 0,
    callTimeoutMs: 0,
    ...extra,
  };
}

Deno.test("backoffDelay doubles per attempt up to the cap, scaled by the jitter", () => {
  const p = { baseMs: 100, maxMs: 1_000, random: () => 0.5 };
  assert.deepEqual([1, 2, 3, 4, 5, 6].map((a) => backoffDelay(a, p)), [
    50,
    100,
    200,
    400,
    500,
    500,
  ]);
  assert.equal(backoffDelay(3, { ...p, random: () => 0 }), 0);
  assert.equal(backoffDelay(3, { ...p, random: () => 0.999 }), 399);
});

Deno.test("retry retries retryable errors with backoff, then succeeds", async () => {
  const { clock, sleeps } = instantClock();
  const seen: [string, number, number][] = [];
  let calls = 0;
  const result = await retry(
    (attempt) => {
      calls++;
      assert.equal(attempt, calls);
      if (calls < 3) return Promise.reject(throttled());
      return Promise.resolve("done");
    },
    policy(clock, { onRetry: (e, a, d) => seen.push([(e as PortError).code, a, d]) }),
  );
  assert.equal(result, "done");
  assert.deepEqual(sleeps, [50, 100]);
  assert.deepEqual(seen, [["ThrottlingException", 1, 50], ["ThrottlingException", 2, 100]]);
});

Deno.test("retry surfaces a non-retryable error at once, with its code", async () => {
  const { clock, sleeps } = instantClock();
  let calls = 0;
  await assert.rejects(
    retry(() => {
      calls++;
      return Promise.reject(notFound());
    }, policy(clock)),
    (e: unknown) => e instanceof PortError && e.code === "ResourceNotFoundException",
  );
  assert.equal(calls, 1);
  assert.deepEqual(sleeps, []);
});

Deno.test("retry gives up after its attempts with the last error", async () => {
  const { clock } = instantClock();
  let calls = 0;
  await assert.rejects(
    retry(() => {
      calls++;
      return Promise.reject(
        new PortError(`fault ${calls}`, { code: "InternalError", retryable: true }),
      );
    }, policy(clock, { attempts: 3 })),
    (e: unknown) => e instanceof PortError && e.message === "fault 3",
  );
  assert.equal(calls, 3);
});

Deno.test("retry stops waiting when its signal aborts", async () => {
  const m = manualClock();
  const ac = new AbortController();
  const p = retry(() => Promise.reject(throttled()), policy(m.clock), ac.signal);
  await Promise.resolve();
  await Promise.resolve();
  ac.abort(new DOMException("stop", "AbortError"));
  await assert.rejects(p, (e: unknown) => e instanceof DOMException && e.message === "stop");
});

Deno.test("retry rejects a policy without attempts", async () => {
  const { clock } = instantClock();
  await assert.rejects(
    retry(() => Promise.resolve(1), policy(clock, { attempts: 0 })),
    (e: unknown) => e instanceof RangeError && e.message.includes("attempts: 0"),
  );
});

Deno.test("withTimeout aborts a slow call with a retryable Timeout naming it", async () => {
  const m = manualClock();
  let sawAbort = false;
  const p = withTimeout(
    "glacier://r/v: put",
    5_000,
    m.clock,
    (signal) =>
      new Promise((_, reject) => {
        signal.addEventListener("abort", () => {
          sawAbort = true;
          reject(new DOMException("aborted", "AbortError"));
        });
      }),
  );
  m.advance(5_000);
  await assert.rejects(
    p,
    (e: unknown) =>
      e instanceof PortError && e.code === "Timeout" && e.retryable &&
      e.message === "glacier://r/v: put: no answer within 5 s",
  );
  assert.ok(sawAbort);
});

Deno.test("withTimeout passes a fast answer through and the caller's abort as it is", async () => {
  const m = manualClock();
  assert.equal(await withTimeout("x", 1_000, m.clock, () => Promise.resolve(7)), 7);
  const ac = new AbortController();
  const p = withTimeout(
    "x",
    1_000,
    m.clock,
    (signal) =>
      new Promise((_, reject) => signal.addEventListener("abort", () => reject(signal.reason))),
    ac.signal,
  );
  ac.abort(new DOMException("mine", "AbortError"));
  await assert.rejects(p, (e: unknown) => e instanceof DOMException && e.message === "mine");
});

Deno.test("Limiter holds calls beyond its size until a slot frees", async () => {
  const limiter = new Limiter(2);
  let running = 0;
  let peak = 0;
  const gates: (() => void)[] = [];
  const runs = [1, 2, 3, 4, 5].map(() =>
    limiter.run(async () => {
      running++;
      peak = Math.max(peak, running);
      await new Promise<void>((r) => gates.push(r));
      running--;
    })
  );
  for (let i = 0; i < 5; i++) {
    while (gates.length === 0) await new Promise((r) => setTimeout(r, 0));
    assert.ok(running <= 2);
    gates.shift()!();
  }
  await Promise.all(runs);
  assert.equal(peak, 2);
  assert.throws(() => new Limiter(0), /Invalid concurrency: 0/);
});

/** A store whose every method fails `failures` times with `error` first. */
function failingStore(failures: number, error: () => Error) {
  const calls: Record<string, number> = {};
  const bodies: number[] = [];
  const hit = (op: string) => {
    calls[op] = (calls[op] ?? 0) + 1;
    if (calls[op]! <= failures) throw error();
  };
  const archive: StoredArchive = {
    remoteId: remoteArchiveId("r1"),
    size: 1,
    treeHash: null,
    description: "",
    createdAt: 0,
  };
  const store: ColdStore = {
    location: "glacier://us-east-1/v",
    capabilities: { rangedRetrieval: true, rangeAlignment: 1 },
    put: async (a: PutArchive) => {
      const r = a.body().getReader();
      let n = 0;
      for (let c = await r.read(); !c.done; c = await r.read()) n += c.value.length;
      bodies.push(n);
      hit("put");
      return { remoteId: remoteArchiveId("r1"), size: n, treeHash: a.treeHash };
    },
    startRetrieval: () => Promise.reject(new Error("unused")),
    retrieval: () => Promise.reject(new Error("unused")),
    readRetrieval: () => Promise.reject(new Error("unused")),
    async *list() {
      hit("list");
      yield archive;
    },
    delete: () => Promise.resolve(hit("delete")),
    close: () => Promise.resolve(),
  };
  return { store, calls, bodies };
}

Deno.test("withRetryStore retries a put with a fresh body and reports each retry", async () => {
  const { clock } = instantClock();
  const { store, calls, bodies } = failingStore(2, throttled);
  const retries: string[] = [];
  const wrapped = withRetryStore(store, {
    ...policy(clock),
    onStoreRetry: (op, e, attempt) => retries.push(`${op} ${(e as PortError).code} ${attempt}`),
  });
  const data = new Uint8Array([1, 2, 3]);
  const result = await wrapped.put({
    archiveId: archiveId("a1"),
    size: 3,
    treeHash: "t",
    description: "",
    body: () => new Blob([data]).stream(),
  });
  assert.equal(result.size, 3);
  assert.equal(calls.put, 3);
  assert.deepEqual(bodies, [3, 3, 3]);
  assert.deepEqual(retries, ["put ThrottlingException 1", "put ThrottlingException 2"]);
  assert.equal(wrapped.location, store.location);
});

Deno.test("withRetryStore surfaces a non-retryable error after one call", async () => {
  const { clock } = instantClock();
  const { store, calls } = failingStore(1, notFound);
  const wrapped = withRetryStore(store, policy(clock));
  await assert.rejects(
    wrapped.delete(remoteArchiveId("r1")),
    (e: unknown) => e instanceof PortError && e.code === "ResourceNotFoundException",
  );
  assert.equal(calls.delete, 1);
});

Deno.test("withRetryStore retries a listing that failed before its first archive", async () => {
  const { clock } = instantClock();
  const { store, calls } = failingStore(1, throttled);
  const wrapped = withRetryStore(store, policy(clock));
  const listed: StoredArchive[] = [];
  for await (const a of wrapped.list()) listed.push(a);
  assert.equal(listed.length, 1);
  assert.equal(calls.list, 2);
});

Deno.test("withRetryCatalog retries a lost connection and names the operation", async () => {
  const { clock } = instantClock();
  let calls = 0;
  const inner = {
    getCursor: (name: string) => {
      calls++;
      if (calls === 1) {
        return Promise.reject(
          new PortError("mysql://u@h:3306/db: lost", {
            code: "PROTOCOL_CONNECTION_LOST",
            retryable: true,
          }),
        );
      }
      return Promise.resolve(`value of ${name}`);
    },
    close: () => Promise.resolve(),
  } as unknown as Catalog;
  const ops: string[] = [];
  const wrapped = withRetryCatalog(inner, {
    ...policy(clock),
    onCatalogRetry: (op, e) => ops.push(`${op} ${(e as PortError).code}`),
  });
  assert.equal(await wrapped.getCursor("c"), "value of c");
  assert.deepEqual(ops, ["getCursor PROTOCOL_CONNECTION_LOST"]);
});
