/**
 * A daemon's own small HTTP server for monitoring: `GET /metrics` answers
 * Prometheus text (exposition format 0.0.4), `GET /health` a JSON object;
 * any other path is a 404 and any other method on those two a 405. It binds
 * loopback unless told otherwise: what it shows is for the host's own
 * scraper, not the network. The backup daemon, the restore listener and the
 * metrics agent all use it.
 *
 * @example
 * ```ts
 * const registry = new MetricsRegistry();
 * const server = await serveMetrics({
 *   port: 9464,
 *   render: () => registry.render(),
 *   health: () => ({ status: "ok" }),
 * });
 * // curl http://127.0.0.1:9464/metrics
 * await server.close();
 * ```
 * @module
 */

/** Options of {@linkcode serveMetrics}. */
export interface ServeMetricsOptions {
  /** TCP port; 0 takes a free one (see {@linkcode MetricsServer.port}). */
  readonly port: number;
  /** Address to listen on (default `127.0.0.1`). */
  readonly hostname?: string;
  /** The Prometheus text of `GET /metrics`. */
  readonly render: () => string | Promise<string>;
  /** The JSON object of `GET /health`. */
  readonly health: () => object | Promise<object>;
}

/** A running metrics server. */
export interface MetricsServer {
  /** The port it listens on (the free one taken for port 0). */
  readonly port: number;
  readonly hostname: string;
  /** Stops listening, ends open connections and waits until it has. */
  close(): Promise<void>;
}

const PROMETHEUS_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/**
 * Starts serving `/metrics` and `/health`. Rejects when the port cannot be
 * had (in use, no permission), naming the address.
 */
export function serveMetrics(options: ServeMetricsOptions): Promise<MetricsServer> {
  const hostname = options.hostname ?? "127.0.0.1";
  if (!Number.isInteger(options.port) || options.port < 0 || options.port > 65535) {
    return Promise.reject(
      new RangeError(`Invalid metrics port: ${options.port} (expected 0 to 65535)`),
    );
  }
  let server: Deno.HttpServer<Deno.NetAddr>;
  try {
    server = Deno.serve(
      { port: options.port, hostname, onListen: () => {} },
      (request) => answer(request, options),
    );
  } catch (e) {
    const why = e instanceof Deno.errors.AddrInUse
      ? "address in use"
      : e instanceof Error
      ? e.message
      : String(e);
    return Promise.reject(
      new Error(`Cannot serve metrics on ${hostname}:${options.port}: ${why}`, { cause: e }),
    );
  }
  let closing: Promise<void> | null = null;
  return Promise.resolve({
    port: server.addr.port,
    hostname,
    close: () => closing ??= server.shutdown().then(() => server.finished),
  });
}

async function answer(request: Request, options: ServeMetricsOptions): Promise<Response> {
  const path = new URL(request.url).pathname;
  if (path !== "/metrics" && path !== "/health") {
    return text(404, `Not found: ${path} (try /metrics or /health)\n`);
  }
  if (request.method !== "GET" && request.method !== "HEAD") {
    return text(405, `Method not allowed: ${request.method} (only GET)\n`, { allow: "GET, HEAD" });
  }
  try {
    if (path === "/metrics") {
      return new Response(await options.render(), {
        headers: { "content-type": PROMETHEUS_TYPE },
      });
    }
    return new Response(JSON.stringify(await options.health()), {
      headers: { "content-type": "application/json" },
    });
  } catch (e) {
    return text(500, `Cannot render ${path}: ${e instanceof Error ? e.message : String(e)}\n`);
  }
}

function text(status: number, body: string, headers: Record<string, string> = {}): Response {
  return new Response(body, {
    status,
    headers: { "content-type": "text/plain; charset=utf-8", ...headers },
  });
}
