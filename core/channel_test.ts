import assert from "node:assert/strict";
import { ByteBudget, Channel, Notifier, TIMED_OUT } from "./channel.ts";

Deno.test("channel delivers in order and ends after close", async () => {
  const ch = new Channel<number>(2);
  await ch.push(1);
  await ch.push(2);
  ch.close();
  assert.equal(await ch.pop(), 1);
  assert.equal(await ch.pop(), 2);
  assert.equal(await ch.pop(), undefined);
});

Deno.test("channel push waits while full", async () => {
  const ch = new Channel<number>(1);
  await ch.push(1);
  let pushed = false;
  const p = ch.push(2).then(() => pushed = true);
  await Promise.resolve();
  assert.equal(pushed, false);
  assert.equal(await ch.pop(), 1);
  await p;
  assert.equal(pushed, true);
  assert.equal(await ch.pop(), 2);
});

Deno.test("an aborted pop takes nothing", async () => {
  const ch = new Channel<string>(4);
  const ac = new AbortController();
  const p = ch.pop(ac.signal);
  ac.abort();
  assert.equal(await p, TIMED_OUT);
  await ch.push("kept");
  assert.equal(await ch.pop(), "kept");
});

Deno.test("push after close names the reason", async () => {
  const ch = new Channel<number>(1);
  ch.close();
  await assert.rejects(ch.push(1), { name: "TypeError", message: /channel is closed/ });
});

Deno.test("byte budget waits, serves in order, lets an oversized request go alone", async () => {
  const b = new ByteBudget(100);
  await b.acquire(60);
  const order: string[] = [];
  const big = b.acquire(500).then(() => order.push("big"));
  const small = b.acquire(10).then(() => order.push("small"));
  await Promise.resolve();
  assert.deepEqual(order, [], "a request behind a waiter waits even if it would fit");
  b.release(60);
  await big;
  assert.deepEqual(order, ["big"]);
  assert.equal(b.held, 500);
  b.release(500);
  await small;
  assert.deepEqual(order, ["big", "small"]);
  assert.throws(() => b.release(20), { name: "RangeError", message: /released more than held/ });
});

Deno.test("notifier wakes every waiter once", async () => {
  const n = new Notifier();
  let woken = 0;
  const a = n.wait().then(() => woken++);
  const c = n.wait().then(() => woken++);
  n.notify();
  await Promise.all([a, c]);
  assert.equal(woken, 2);
});
