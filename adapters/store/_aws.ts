/**
 * AWS SDK client settings the Glacier and S3 stores share.
 * @module
 */

import { Agent as HttpAgent } from "node:http";
import { Agent as HttpsAgent } from "node:https";

/**
 * A logger that says nothing: the SDK warns on the console about failed
 * streaming requests, and those failures reach the caller as PortErrors.
 */
export const QUIET_LOGGER = { debug() {}, info() {}, warn() {}, error() {} };

/**
 * HTTP agents that open one connection per request. Deno's `node:http`
 * client silently re-sends a request whose pooled keep-alive connection
 * turns out reset (denoland/deno#31932); a streamed body cannot be sent
 * twice, so that re-send hangs the upload. With fresh connections a reset
 * reaches the store as a retryable ECONNRESET. A connection costs little
 * next to MiB-sized bodies.
 */
export function freshConnectionAgents(): {
  readonly httpAgent: HttpAgent;
  readonly httpsAgent: HttpsAgent;
} {
  return {
    httpAgent: new HttpAgent({ keepAlive: false }),
    httpsAgent: new HttpsAgent({ keepAlive: false }),
  };
}
