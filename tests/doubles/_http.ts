/**
 * What the HTTP doubles share: a `node:http` server on a free port of
 * 127.0.0.1 whose open connections are tracked, so that `close()` can end
 * them (Deno's test sanitizers check for leaks).
 * @module
 */

import { createServer, type Server } from "node:http";
import type { Socket } from "node:net";

/** A listening loopback server and its open connections. */
export interface LoopbackServer {
  readonly server: Server;
  readonly port: number;
  /** Connections now open; destroy them to close at once. */
  readonly sockets: Set<Socket>;
}

/**
 * Starts an HTTP server on 127.0.0.1, port 0.
 * @param what names the double in the error when no TCP address comes back
 */
export async function listenLoopback(what: string): Promise<LoopbackServer> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") {
    server.close();
    throw new TypeError(`Cannot start the ${what} double: no TCP address`);
  }
  const sockets = new Set<Socket>();
  server.on("connection", (socket: Socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
  });
  return { server, port: address.port, sockets };
}
