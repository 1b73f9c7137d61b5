/**
 * `deno task agent`: the device agent a person runs. The logic lives in
 * `agent/` (see `agent/cli.ts`); this entry only runs it and exits with its code.
 *
 *   deno task agent --home ~/meow/phone init --name alice --server http://127.0.0.1:8080
 *   deno task agent --home ~/meow/phone run
 *   deno task agent --help
 *
 * @module
 */
import { runCli } from "../agent/mod.ts";

if (import.meta.main) Deno.exit(await runCli(Deno.args));
