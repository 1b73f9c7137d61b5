/**
 * The relay on Deno Deploy (or anywhere `deno serve` runs): Deno KV backend,
 * system clock and randomness, the HTTP handler as the default export.
 *
 *   deno serve --unstable-kv --allow-env deploy/main.ts
 *
 * Environment: MEOW_NAME (the card's name), MEOW_URL (the public base URL in
 * the card), MEOW_KV_PATH (a KV file; unset: the default KV, which on Deploy
 * is the project's database), MEOW_LOG_LEVEL (debug | info | warn).
 *
 * @module
 */
import { SystemRandom } from "../crypto/mod.ts";
import { systemClock } from "../ports/mod.ts";
import { createHandler, KvBackend, type LogLevel, ServerCore } from "../server/mod.ts";

const LEVELS: LogLevel[] = ["debug", "info", "warn"];
const threshold = Math.max(
  0,
  LEVELS.indexOf((Deno.env.get("MEOW_LOG_LEVEL") ?? "info") as LogLevel),
);
const log = (level: LogLevel, line: string) => {
  if (LEVELS.indexOf(level) >= threshold) console.log(`${level} ${line}`);
};

const core = await ServerCore.create({
  backend: await KvBackend.open({ path: Deno.env.get("MEOW_KV_PATH") || undefined }),
  clock: systemClock,
  random: new SystemRandom(),
  name: Deno.env.get("MEOW_NAME") ?? "meowsync relay",
  url: Deno.env.get("MEOW_URL") ?? "",
});

// Deploy runs cron jobs itself; timers in an isolate that sleeps between requests would not.
if (typeof Deno.cron === "function") {
  Deno.cron("meowsync retention sweep", "*/15 * * * *", async () => {
    log("info", `sweep dropped ${await core.sweep()} expired messages`);
  });
}

/** The fetch handler `deno serve` and Deno Deploy call. */
export default {
  fetch: createHandler(core, { log, clock: systemClock }),
} satisfies Deno.ServeDefaultExport;
