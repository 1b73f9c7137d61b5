/**
 * `deno task cloud-call URL OP [ARGS]`: one control call to an always-online
 * device (deploy/agent.ts), signed with $MEOW_PASSPHRASE; ARGS is a JSON
 * object. Prints the result as JSON; a refusal is one line on stderr and the
 * agent's exit code.
 *
 *   deno task cloud-call https://me.deno.dev join '{"code":"K7M2-XQ4P-9R3T","server":"https://relay"}'
 *
 * @module
 */
import { AgentError, EXIT } from "../agent/mod.ts";
import { CloudClient } from "../deploy/mod.ts";

const [url, op, args] = Deno.args;
if (url === undefined || op === undefined || url === "--help" || url === "-h") {
  console.log(
    "usage: deno task cloud-call URL OP [ARGS_JSON]\n" +
      "  one control call to an always-online device; the passphrase is read from $MEOW_PASSPHRASE\n" +
      "  OP: status, contacts, devices, history, read, send, rename, profileSet, pairStart, invite,\n" +
      "      accept, handover, retire, removeDevice, recover, join, poll\n" +
      '  example: cloud-call https://me.deno.dev send \'{"contact":"bob","text":"hi"}\'\n' +
      "  exit codes: those of deno task agent (2 bad arguments, 3 not paired yet, 5 unreachable,\n" +
      "      7 wrong passphrase or refused authorization, 8 too many refusals: wait a minute)",
  );
  Deno.exit(url === undefined || op === undefined ? EXIT.usage : EXIT.ok);
}
const passphrase = Deno.env.get("MEOW_PASSPHRASE") ?? "";
try {
  if (passphrase === "") throw new AgentError("set MEOW_PASSPHRASE", EXIT.passphrase);
  let parsed: Record<string, unknown> = {};
  try {
    parsed = args === undefined ? {} : JSON.parse(args);
  } catch {
    throw new AgentError(`ARGS is not a JSON object: ${args}`, EXIT.usage);
  }
  console.log(JSON.stringify(await new CloudClient(url, passphrase).call(op, parsed)));
} catch (e) {
  if (!(e instanceof AgentError)) throw e;
  console.error(`meowsync cloud: ${e.message}`);
  Deno.exit(e.exitCode);
}
