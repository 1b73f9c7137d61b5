/**
 * `deno task agent`: the command line of the device agent. {@linkcode runCli}
 * parses the arguments (commander: the commands, their options and the
 * global ones), runs one command of `commands/` — which acts on the home
 * through a session (`session.ts`) — and resolves with the exit code.
 * Failures a user can cause end as one line on stderr and an exit code from
 * {@linkcode EXIT}; only a bug shows a stack (and only with MEOW_DEBUG=1).
 *
 * @module
 */
import { Command, CommanderError, Option } from "commander";
import { HttpTransport } from "../server/mod.ts";
import { cmdContacts, cmdHandover, cmdRename } from "./commands/contacts.ts";
import { cmdDevices, cmdRecover, cmdRemoveDevice, cmdRetire } from "./commands/devices.ts";
import { historyWindow } from "./operations.ts";
import { HISTORY_OPTION_DEFAULT } from "./commands/pairing.ts";
import { cmdInit } from "./commands/init.ts";
import { cmdHistory, cmdRead, cmdSend } from "./commands/messages.ts";
import { cmdAccept, cmdInvite, cmdPairJoin, cmdPairStart } from "./commands/pairing.ts";
import { cmdProfileSet, cmdProfileShow, cmdStatus } from "./commands/profile.ts";
import { cmdRun, cmdStop } from "./commands/run.ts";
import { cmdPlugin } from "./commands/plugin.ts";
import { allModules, loadHomeModules } from "./plugins.ts";
import type { PluginModule } from "../kernel/mod.ts";
import { AgentError, EXIT, EXIT_HELP } from "./errors.ts";
import { defaultHome, type HomePaths, homePaths, STORE_KINDS } from "./home.ts";
import { KDF_LOG_N_DEFAULT } from "./passphrase.ts";
import { type CliIo, type Ctx, toAgentError } from "./session.ts";

export { type CliIo, toAgentError } from "./session.ts";

/** Default wait of `pair start`, `pair join` and `invite` for the other side, in s. */
const WAIT_S_DEFAULT = 300;

/** How pairing and invitations work, for their `--help`. */
const PAIRING_HELP = `
The waiting side prints a code like K7M2-XQ4P-9R3T to type on the other side
(case and dashes do not matter; the relay it is on goes with --server), or with
--link a meow: link and its QR code (the link names its relay; --out FILE
writes it to an owner-only file for --in FILE). A code or link works once and
expires after 10 minutes (the printed time); a code works only while the side
that printed it keeps waiting. Both sides then print the same six-digit safety
code: compare them. A used, expired or mistyped code or link, and a failed
check ("wrong code, or someone interfered"), end with exit code 6 and change
nothing: start again.`;

/**
 * The process's stdio, environment and signals.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { denoIo } from "./cli.ts";
 * assert(typeof denoIo().out === "function");
 * ```
 */
export function denoIo(): CliIo {
  return {
    out: (line) => console.log(line),
    err: (line) => console.error(line),
    env: (name) => Deno.env.get(name),
  };
}

/**
 * Runs one agent command; resolves with its exit code.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { runCli } from "./cli.ts";
 * const lines: string[] = [];
 * const io = { out: (l: string) => lines.push(l), err: (l: string) => lines.push(l), env: () => undefined };
 * assert(await runCli(["--help"], io) === 0);
 * assert(lines.join("\n").includes("pair"));
 * ```
 */
export async function runCli(args: string[], io: CliIo = denoIo()): Promise<number> {
  const interrupt = new AbortController();
  const removeSignals = io.interrupt
    ? linkAbort(io.interrupt, interrupt)
    : listenSignals(() => interrupt.abort());
  let code: number = EXIT.ok;
  const early = prescan(args);
  try {
    const modules = await loadHomeModules(prescanHome(early.home, io), early.plugins);
    const program = buildProgram(io, interrupt.signal, modules, early.json);
    await program.parseAsync(args, { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      const helpCodes = ["commander.helpDisplayed", "commander.version"];
      code = helpCodes.includes(e.code) ? EXIT.ok : EXIT.usage;
    } else {
      const error = toAgentError(e);
      if (early.json) io.out(jsonError(error.exitCode, error.message));
      else io.err(`meowsync agent: ${error.message}`);
      if (error.exitCode === EXIT.failure && io.env("MEOW_DEBUG")) {
        io.err(String((e as Error).stack));
      }
      code = error.exitCode;
    }
  } finally {
    removeSignals();
  }
  return code;
}

/**
 * The `--home` and `--plugin` values of `args`, read before the commands are built (a plugin
 * module adds commands).
 */
function prescan(args: readonly string[]): { home?: string; plugins: string[]; json: boolean } {
  const out: { home?: string; plugins: string[]; json: boolean } = { plugins: [], json: false };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i];
    if (arg === "--") break;
    if (arg === "--json") out.json = true;
    const [flag, inline] = arg.startsWith("--") && arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    if (flag !== "--home" && flag !== "--plugin") continue;
    const value = inline ?? args[++i];
    if (value === undefined) break; // commander says what is missing
    if (flag === "--home") out.home = value;
    else out.plugins.push(value);
  }
  return out;
}

/**
 * A failure as `--json` prints it: one object on stdout, `{"error": {"exit": 4, "code":
 * "unknownContact", "message": "…"}}` (`code` names the exit code in {@linkcode EXIT}).
 */
export function jsonError(exit: number, message: string): string {
  const code = Object.entries(EXIT).find(([, n]) => n === exit)?.[0] ?? "failure";
  return JSON.stringify({ error: { exit, code, message } });
}

/** The home whose `plugins` list to load; undefined when none can be named (no $HOME). */
function prescanHome(given: string | undefined, io: CliIo): HomePaths | undefined {
  try {
    return homePaths(given ?? defaultHome(io.env));
  } catch {
    return undefined; // the command says so, if it needs a home
  }
}

// ─── The program ──────────────────────────────────────────────────────────────

function buildProgram(
  io: CliIo,
  interrupt: AbortSignal,
  modules: readonly PluginModule[],
  json: boolean,
): Command {
  const program = new Command("agent")
    .description(
      "meowsync device agent: one device of one person, synced with its sibling devices",
    )
    .option(
      "--home <dir>",
      "this device's state (default: $MEOW_HOME, else $XDG_DATA_HOME/meowsync or " +
        "~/.local/share/meowsync)",
    )
    .option("--json", "print JSON (one object per line) instead of text")
    .option(
      "--plugin <file>",
      'load a plugin module (repeatable; also the home\'s "plugins" list in agent.json; ' +
        "see docs/PLUGINS.md)",
      (file: string, files: string[]) => [...files, file],
      [] as string[],
    )
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.out(s.trimEnd()),
      writeErr: (s) => io.err(s.trimEnd()),
      outputError: (s, write) => {
        const message = `${s.replace(/^error: /, "").trim()} (see --help)`;
        if (json) io.out(jsonError(EXIT.usage, message));
        else write(`meowsync agent: ${message}\n`);
      },
    })
    .addHelpText(
      "after",
      `
The passphrase that encrypts the home is read from $MEOW_PASSPHRASE, else asked
on the terminal, by \`run\` and by a command that opens the home itself. While
\`run\` runs on a home, the other commands act through it and never ask for the
passphrase: access then rests on the home's agent.token, readable by its owner
only (as the home itself is).

With --json every answer is one JSON object per line on stdout, and a failure
too: {"error": {"exit": N, "code": "…", "message": "…"}}, with the exit code N.

${EXIT_HELP}`,
    );
  const ctxOf = (command: Command): Ctx => {
    const opts = command.optsWithGlobals() as { home?: string; json?: boolean };
    return {
      io,
      paths: homePaths(opts.home ?? defaultHome(io.env)),
      json: opts.json === true,
      interrupt,
      transport: io.transport ?? new HttpTransport(),
      modules,
    };
  };
  // deno-lint-ignore no-explicit-any
  const act = (fn: (ctx: Ctx, ...args: any[]) => Promise<void>) =>
  // deno-lint-ignore no-explicit-any
  async (...args: any[]) => {
    const command = args[args.length - 1] as Command;
    await fn(ctxOf(command), ...args.slice(0, -1));
  };
  const sub = (name: string, description: string, more = "") =>
    program.command(name).description(description).addHelpText("after", `${more}\n${EXIT_HELP}`);
  const timeout = () =>
    new Option("--timeout <seconds>", "how long to wait for the other side")
      .default(WAIT_S_DEFAULT)
      .argParser(positiveInt("--timeout"));
  const kdfCost = () =>
    new Option("--scrypt-log-n <n>", "scrypt cost of the passphrase key: N = 2^n")
      .default(KDF_LOG_N_DEFAULT)
      .argParser(positiveInt("--scrypt-log-n"));

  const storeKind = () =>
    new Option("--store <kind>", "the database of this device's encrypted store")
      .choices([...STORE_KINDS])
      .default("kv");

  sub("init", "create an identity on this device (its first device)")
    .requiredOption("--name <nickname>", "your nickname, as contacts see it")
    .requiredOption("--server <url>", "your home relay, e.g. http://127.0.0.1:8080")
    .option("--device <name>", "this device's name (default: the host name)")
    .addOption(storeKind())
    .addOption(kdfCost())
    .action(act(cmdInit));

  const noWait = () =>
    new Option(
      "--no-wait",
      "return at once (with --link or --out, or while `run` runs); `run` or a later command " +
        "completes it",
    );
  const pairing = `${PAIRING_HELP}\n`;
  const pair = program.command("pair")
    .description("pair this device with a sibling device, by code or link")
    .addHelpText("after", `${pairing}\n${EXIT_HELP}`);
  pair.command("start").description(
    "on a device that has the identity: print a code (or a link and QR code) for the new " +
      "device, then wait for it",
  )
    .option("--link", "a link and a QR code instead of a code to type")
    .option("--out <file>", "write the link to a file (owner-only) instead of printing it")
    .addOption(
      new Option(
        "--history <window>",
        "the old messages the new device gets: 0 (none), N (the last N of each conversation, " +
          "up to 1000) or a time such as 30d or 12h (at most 1000 per conversation)",
      ).default(HISTORY_OPTION_DEFAULT).argParser((value: string) => {
        historyWindow(value);
        return value;
      }),
    )
    .addOption(noWait())
    .addOption(timeout())
    .addHelpText("after", `${pairing}\n${EXIT_HELP}`)
    .action(act(cmdPairStart));
  pair.command("join").description("on a new device: join the devices of the code's owner")
    .argument("[code-or-link]", "the code or the meow:pair link `pair start` printed")
    .option("--server <url>", "the relay the code is on (needed with a code; a link names it)")
    .option("--in <file>", "read the link `pair start --out` wrote")
    .option("--device <name>", "this device's name (default: the host name)")
    .addOption(storeKind())
    .addOption(timeout())
    .addOption(kdfCost())
    .addHelpText("after", `${pairing}\n${EXIT_HELP}`)
    .action(act(cmdPairJoin));

  sub(
    "invite",
    "invite a contact: print a code (or a link and QR code) for them, then wait for their answer",
    pairing,
  )
    .option("--link", "a link and a QR code instead of a code to type")
    .option("--out <file>", "write the link to a file (owner-only) instead of printing it")
    .addOption(noWait())
    .addOption(timeout())
    .action(act(cmdInvite));
  sub("accept", "accept a contact's invitation, by its code or link", pairing)
    .argument("[code-or-link]", "the code or the meow:invite link their `invite` printed")
    .option("--in <file>", "read the link their `invite --out` wrote")
    .option("--server <url>", "the relay the code is on (default: your home relay)")
    .option("--name <name>", "the name to give the contact (default: their nickname)")
    .action(act(cmdAccept));

  sub("send", "send a text to a contact")
    .argument(
      "<contact>",
      "a contact's name or a unique prefix of it (any case), or a uid prefix of 4+ characters",
    )
    .argument("<text...>", "the text (several words are joined with spaces)")
    .action(act(cmdSend));
  sub("read", "show a contact's unread messages and mark them read")
    .argument("<contact>", "a contact's name, name prefix or uid prefix")
    .action(act(cmdRead));
  sub(
    "history",
    "show a conversation, oldest first (by the sender's send time, then uuid: the same order on every device)",
  )
    .argument("<contact>", "a contact's name, name prefix or uid prefix")
    .addOption(
      new Option("--limit <n>", "only the newest n messages").argParser(positiveInt("--limit")),
    )
    .action(act(cmdHistory));
  const contacts = program.command("contacts").description("your contacts")
    .addHelpText("after", `\n${EXIT_HELP}`);
  contacts.command("list", { isDefault: true }).description("list contacts (the default)")
    .addHelpText("after", `\n${EXIT_HELP}`)
    .action(act(cmdContacts));
  contacts.command("handover").description(
    "on a contact's primary device: make another of your devices its primary (the contact " +
      "sees nothing change)",
  )
    .argument("<contact>", "a contact's name, name prefix or uid prefix")
    .requiredOption("--to <device>", "the sibling device that becomes primary (name or uid prefix)")
    .addHelpText("after", `\n${EXIT_HELP}`)
    .action(act(cmdHandover));
  const devices = program.command("devices").description("this user's devices")
    .addHelpText("after", `\n${EXIT_HELP}`);
  devices.command("list", { isDefault: true }).description("list the devices (the default)")
    .addHelpText("after", `\n${EXIT_HELP}`)
    .action(act(cmdDevices));
  devices.command("retire").description(
    "on the device to retire: hand every contact it is primary for to a sibling, then leave " +
      "this user's devices",
  )
    .argument("<device>", "this device's name (a device retires itself)")
    .option("--to <device>", "the sibling that takes the contacts over (default: the first)")
    .addHelpText("after", `\n${EXIT_HELP}`)
    .action(act(cmdRetire));
  devices.command("remove").description(
    "remove a sibling device for good, on the device holding the identity root: this device " +
      "takes over the contacts it was primary for, and every conversation moves to new keys",
  )
    .argument("<device>", "the sibling's name or device uid prefix")
    .addHelpText("after", `\n${EXIT_HELP}`)
    .action(act(cmdRemoveDevice));
  devices.command("recover").description(
    "take the identity root over on this device from the recovery code `init` printed (the " +
      "root's device was lost); the code is read from $MEOW_RECOVERY_CODE, else asked",
  )
    .addHelpText("after", `\n${EXIT_HELP}`)
    .action(act(cmdRecover));
  const profile = program.command("profile").description("your profile, synced to every device")
    .addHelpText("after", `\n${EXIT_HELP}`);
  profile.command("show", { isDefault: true }).description(
    "your nickname and status line, as contacts see them (the default)",
  )
    .addHelpText("after", `\n${EXIT_HELP}`)
    .action(act(cmdProfileShow));
  profile.command("set").description("change your nickname and/or status line")
    .option("--nickname <name>", "the new nickname")
    .option("--status <text>", "the new status line")
    .addHelpText("after", `\n${EXIT_HELP}`)
    .action(act(cmdProfileSet));
  sub("rename", "rename a contact (on every device)")
    .argument("<contact>", "a contact's name, name prefix or uid prefix")
    .argument("<name>", "the new name")
    .action(act(cmdRename));
  sub("status", "relays, devices, contacts, outbox and last poll").action(act(cmdStatus));
  sub(
    "run",
    "stay online: sync, send, print incoming messages; Ctrl-C or SIGTERM stops it cleanly",
  ).action(act(cmdRun));
  sub("stop", "stop the agent `run` started on this home").action(act(cmdStop));
  for (const module of allModules(modules)) {
    for (const [name, extension] of Object.entries(module.commands ?? {})) {
      if (program.commands.some((c) => c.name() === name)) {
        throw new AgentError(
          `plugin ${module.name}: its command "${name}" is one meowsync has already`,
          EXIT.usage,
        );
      }
      const command = sub(name, `${extension.summary} (plugin ${module.name})`);
      for (const arg of extension.args) command.argument(`<${arg}>`);
      command.action(
        act((ctx, ...words: (string | string[])[]) =>
          // commander passes the arguments, then the options
          cmdPlugin(ctx, name, words.slice(0, extension.args.length).flat())
        ),
      );
    }
  }
  return program;
}

function positiveInt(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n <= 0) {
      throw new AgentError(`${flag} must be a positive integer, got "${value}"`, EXIT.usage);
    }
    return n;
  };
}

function listenSignals(fn: () => void): () => void {
  const signals: Deno.Signal[] = Deno.build.os === "windows" ? ["SIGINT"] : ["SIGINT", "SIGTERM"];
  for (const s of signals) Deno.addSignalListener(s, fn);
  return () => {
    for (const s of signals) Deno.removeSignalListener(s, fn);
  };
}

function linkAbort(from: AbortSignal, to: AbortController): () => void {
  const fn = () => to.abort();
  if (from.aborted) fn();
  from.addEventListener("abort", fn, { once: true });
  return () => from.removeEventListener("abort", fn);
}
