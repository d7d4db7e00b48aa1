/**
 * A UDP receiver for tests: a socket on 127.0.0.1 (a free port) that keeps
 * every datagram it gets, as the metrics agent would receive them.
 * @module
 */

import assert from "node:assert/strict";
import dgram from "node:dgram";

/** A UDP socket on 127.0.0.1 that keeps every datagram it gets. */
export async function udpReceiver(): Promise<{
  port: number;
  datagrams: string[];
  /** Resolves once `n` datagrams came (fails after 5 s). */
  waitFor(n: number): Promise<void>;
  close(): Promise<void>;
}> {
  const socket = dgram.createSocket("udp4");
  const datagrams: string[] = [];
  socket.on("message", (m) => datagrams.push(m.toString("utf8")));
  await new Promise<void>((resolve) => socket.bind(0, "127.0.0.1", () => resolve()));
  return {
    port: socket.address().port,
    datagrams,
    async waitFor(n) {
      for (let i = 0; i < 500 && datagrams.length < n; i++) {
        await new Promise((r) => setTimeout(r, 10));
      }
      assert.ok(datagrams.length >= n, `expected ${n} datagrams, got ${datagrams.length}`);
    },
    close: () => new Promise<void>((resolve) => socket.close(() => resolve())),
  };
}
