/**
 * meowsync on Deno Deploy (or anywhere `deno serve` runs): the relay (`main.ts`) and the
 * always-online device agent (`agent.ts`), both `deno serve` default exports, and what the
 * user's other devices use to reach the agent: {@linkcode CloudClient} signs each control call
 * with a key derived from the agent's passphrase ({@linkcode controlKey},
 * {@linkcode controlAuthorization}). `cloud_agent.ts` holds the agent itself: its sealed Deno KV
 * store, the bounded work each cron run does, and the control API.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { controlAuthorization, controlKey } from "./mod.ts";
 * const key = controlKey("correct horse battery staple", 10);
 * const body = new TextEncoder().encode("{}");
 * const header = controlAuthorization(key, { ts: 1, nonce: "n", path: "/control", body });
 * assert.match(header, /^Meow ts=1,nonce=n,mac=/);
 * ```
 *
 * @module
 */
export {
  CLOUD_KDF_LOG_N,
  CloudAgent,
  type CloudAgentOptions,
  CONTROL_BODY_BYTES_MAX,
  CONTROL_FAILURES_PER_MINUTE_MAX,
  CONTROL_SKEW_MS,
  controlAuthorization,
  controlKey,
  TICK_MS_MAX,
} from "./cloud_agent.ts";
export { CloudClient } from "./cloud_client.ts";
