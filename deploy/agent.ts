/**
 * The always-online device on Deno Deploy (or anywhere `deno serve` runs):
 * deploy/cloud_agent.ts behind the default export, polled by `Deno.cron`.
 *
 *   deno serve --unstable-kv --unstable-cron --allow-net --allow-env --allow-read --allow-write deploy/agent.ts
 *
 * Environment: MEOW_PASSPHRASE (required: seals the store, derives the
 * control key), MEOW_KV_PATH (a KV file; unset: the default KV, Deploy's
 * database), MEOW_DEVICE (this device's name, default "cloud"),
 * MEOW_PAIR_CODE and MEOW_RELAY (on first boot: join the user's devices with
 * a code from `pair start` on the home relay at that URL), MEOW_CRON (the
 * poll schedule, default every minute), MEOW_LOG_LEVEL (debug | info | warn).
 *
 * @module
 */
import { CloudAgent } from "./cloud_agent.ts";
import type { LogLevel } from "../kernel/mod.ts";
import { fetchServerCard } from "../agent/mod.ts";
import { DEVICE_SYNC_API } from "../plugins/device_sync/mod.ts";

const LEVELS: LogLevel[] = ["debug", "info", "warn", "error"];
const threshold = Math.max(
  0,
  LEVELS.indexOf((Deno.env.get("MEOW_LOG_LEVEL") ?? "info") as LogLevel),
);
const log = (level: LogLevel, line: string) => {
  if (LEVELS.indexOf(level) >= threshold) {
    console.log(JSON.stringify({ at: new Date().toISOString(), level, line }));
  }
};

const cloud = await CloudAgent.open({
  kvPath: Deno.env.get("MEOW_KV_PATH") || undefined,
  passphrase: Deno.env.get("MEOW_PASSPHRASE") ?? "",
  deviceName: Deno.env.get("MEOW_DEVICE") || "cloud",
  log,
});

const pairCode = Deno.env.get("MEOW_PAIR_CODE");
const relay = Deno.env.get("MEOW_RELAY");
if (pairCode && relay && !cloud.agent.kernel.hasIdentity()) {
  const server = await fetchServerCard(cloud.agent.transport, relay);
  await cloud.agent.kernel.api(DEVICE_SYNC_API).joinDevices({ code: pairCode, server }, {
    deviceName: Deno.env.get("MEOW_DEVICE") || "cloud",
  });
  log("info", "joining the user's devices with MEOW_PAIR_CODE");
}

// Deploy runs cron jobs itself; a timer in an isolate that sleeps between requests would not.
Deno.cron("meowsync poll", Deno.env.get("MEOW_CRON") || "* * * * *", async () => {
  await cloud.tick("cron");
});

/** The fetch handler `deno serve` and Deno Deploy call. */
export default {
  fetch: (req) => cloud.handle(req),
} satisfies Deno.ServeDefaultExport;
