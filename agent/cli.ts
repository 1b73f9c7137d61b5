/**
 * `deno task agent`: the command line of the device agent. {@linkcode runCli}
 * parses the arguments (commander), opens the home — through the running
 * agent's control endpoint when `run` holds it, else directly under the home
 * lock — runs one command and resolves with the exit code. Failures a user
 * can cause end as one line on stderr and an exit code from
 * {@linkcode EXIT}; only a bug shows a stack (and only with MEOW_DEBUG=1).
 *
 * @module
 */
import { Command, CommanderError, Option } from "commander";
import { SystemRandom } from "../crypto/mod.ts";
import { MeowError } from "../kernel/mod.ts";
import { type Transport, TransportError } from "../ports/mod.ts";
import { DEVICE_SYNC_API } from "../plugins/device_sync/mod.ts";
import { UnreadableRecord } from "../plugins/storage/mod.ts";
import { HttpTransport } from "../server/mod.ts";
import encodeQR from "qr";
import {
  Agent,
  type ContactView,
  type ConversationView,
  type DeviceView,
  fetchServerCard,
  type IncomingView,
  type MessageView,
  type PairedView,
  pairingErrors,
  pairingInput,
  type StatusView,
  type TicketView,
} from "./agent.ts";
import { callControl, type ControlOp, ControlUnreachable, serveControl } from "./control.ts";
import { AgentError, EXIT, EXIT_HELP } from "./errors.ts";
import {
  defaultHome,
  HomeLock,
  type HomePaths,
  homePaths,
  readConfig,
  readControlAddress,
  removeControlAddress,
  STORE_KINDS,
  type StoreKind,
  writeConfig,
} from "./home.ts";
import {
  deriveKey,
  getPassphrase,
  KDF_LOG_N_DEFAULT,
  keyCheck,
  keyMatches,
  newKdfParams,
} from "./passphrase.ts";

/** How long a command waits for another command to release the home, in ms. */
const BUSY_WAIT_MS = 5_000;
/** Default wait of `pair start`, `pair join` and `invite` for the other side, in s. */
const WAIT_S_DEFAULT = 300;
/** How often a wait says it is still waiting, in ms. */
const PROGRESS_MS = 10_000;

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

/** What the CLI reads and writes; tests pass their own. */
export interface CliIo {
  /** Writes one line to stdout. */
  out(line: string): void;
  /** Writes one line to stderr. */
  err(line: string): void;
  /** Reads an environment variable. */
  env(name: string): string | undefined;
  /**
   * Asks for a passphrase without echo; undefined without a terminal.
   * @default {the terminal}
   */
  ask?(prompt: string): Promise<string | undefined>;
  /**
   * Aborts waits and stops `run`.
   * @default {SIGINT or SIGTERM}
   */
  interrupt?: AbortSignal;
  /**
   * The way to the relays.
   * @default {new HttpTransport()}
   */
  transport?: Transport;
}

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

interface Ctx {
  io: CliIo;
  paths: HomePaths;
  json: boolean;
  interrupt: AbortSignal;
  transport: Transport;
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
  const program = buildProgram(io, interrupt.signal);
  try {
    await program.parseAsync(args, { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) {
      const helpCodes = ["commander.helpDisplayed", "commander.version"];
      code = helpCodes.includes(e.code) ? EXIT.ok : EXIT.usage;
    } else {
      const error = toAgentError(e);
      io.err(`meowsync agent: ${error.message}`);
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

/** Turns any failure into the one line and exit code the user sees. */
export function toAgentError(e: unknown): AgentError {
  if (e instanceof AgentError) return e;
  if (e instanceof TransportError) {
    return new AgentError(`cannot reach the relay: ${e.message}`, EXIT.unreachable);
  }
  if (e instanceof UnreadableRecord) {
    return new AgentError(
      `the store does not open with this passphrase (${e.message})`,
      EXIT.passphrase,
    );
  }
  if (e instanceof MeowError) return new AgentError(e.message, EXIT.failure);
  const message = e instanceof Error ? e.message : String(e);
  return new AgentError(message.split("\n")[0], EXIT.failure);
}

// ─── The program ──────────────────────────────────────────────────────────────

function buildProgram(io: CliIo, interrupt: AbortSignal): Command {
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
    .exitOverride()
    .configureOutput({
      writeOut: (s) => io.out(s.trimEnd()),
      writeErr: (s) => io.err(s.trimEnd()),
      outputError: (s, write) =>
        write(`meowsync agent: ${s.replace(/^error: /, "").trim()} (see --help)\n`),
    })
    .addHelpText(
      "after",
      `
The passphrase that encrypts the home is read from $MEOW_PASSPHRASE, else asked
on the terminal. While \`run\` runs on a home, the other commands act through it.

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
    .argument("<contact>", "a contact's name (any case) or a uid prefix of 4+ characters")
    .argument("<text...>", "the text (several words are joined with spaces)")
    .action(act(cmdSend));
  sub("read", "show a contact's unread messages and mark them read")
    .argument("<contact>", "a contact's name or uid prefix")
    .action(act(cmdRead));
  sub("history", "show a conversation, oldest first")
    .argument("<contact>", "a contact's name or uid prefix")
    .addOption(
      new Option("--limit <n>", "only the newest n messages").argParser(positiveInt("--limit")),
    )
    .action(act(cmdHistory));
  sub("contacts", "list contacts").action(act(cmdContacts));
  sub("devices", "list this user's devices").action(act(cmdDevices));
  const profile = program.command("profile").description("your profile, synced to every device")
    .addHelpText("after", `\n${EXIT_HELP}`);
  profile.command("set").description("change your nickname and/or status line")
    .option("--nickname <name>", "the new nickname")
    .option("--status <text>", "the new status line")
    .addHelpText("after", `\n${EXIT_HELP}`)
    .action(act(cmdProfileSet));
  sub("rename", "rename a contact (on every device)")
    .argument("<contact>", "a contact's name or uid prefix")
    .argument("<name>", "the new name")
    .action(act(cmdRename));
  sub("status", "relays, devices, contacts, outbox and last poll").action(act(cmdStatus));
  sub(
    "run",
    "stay online: sync, send, print incoming messages; Ctrl-C or SIGTERM stops it cleanly",
  ).action(act(cmdRun));
  sub("stop", "stop the agent `run` started on this home").action(act(cmdStop));
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

// ─── Sessions: through the running agent, or on the store under the lock ──────

interface Session {
  /** Whether a running agent serves the calls. */
  remote: boolean;
  call<T>(op: ControlOp, args?: Record<string, unknown>): Promise<T>;
  /** Ends the session (a local one flushes, closes and releases the lock). */
  close(): Promise<void>;
}

async function openSession(ctx: Ctx, options: { catchUp: boolean }): Promise<Session> {
  const config = await readConfig(ctx.paths);
  if (!config) {
    throw new AgentError(
      `no identity in ${ctx.paths.dir} yet: run \`init\` or \`pair join\` first`,
      EXIT.noIdentity,
    );
  }
  const deadline = Date.now() + BUSY_WAIT_MS;
  for (;;) {
    const lock = await HomeLock.tryAcquire(ctx.paths);
    if (lock instanceof HomeLock) {
      try {
        return await localSession(ctx, lock, options);
      } catch (e) {
        lock.release();
        throw e;
      }
    }
    const address = await readControlAddress(ctx.paths);
    if (address) {
      try {
        await callControl(address, "status", {});
        return {
          remote: true,
          call: <T>(op: ControlOp, args: Record<string, unknown> = {}) =>
            callControl(address, op, args, ctx.interrupt) as Promise<T>,
          close: () => Promise.resolve(),
        };
      } catch (e) {
        if (!(e instanceof ControlUnreachable)) throw e;
      }
    }
    if (Date.now() > deadline) {
      throw new AgentError(
        `another meowsync command${
          lock.pid ? ` (pid ${lock.pid})` : ""
        } is using ${ctx.paths.dir}; try again when it has finished`,
        EXIT.busy,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

async function unlock(ctx: Ctx): Promise<Uint8Array> {
  const config = await readConfig(ctx.paths);
  if (!config) {
    throw new AgentError(`no identity in ${ctx.paths.dir} yet`, EXIT.noIdentity);
  }
  const passphrase = await getPassphrase({ env: ctx.io.env, ask: ctx.io.ask });
  const key = deriveKey(passphrase, config.kdf);
  if (!keyMatches(key, config.check)) {
    throw new AgentError(`wrong passphrase for ${ctx.paths.dir}`, EXIT.passphrase);
  }
  return key;
}

async function localSession(
  ctx: Ctx,
  lock: HomeLock,
  options: { catchUp: boolean },
): Promise<Session> {
  // A killed `run` leaves its control files behind; the lock says it is gone.
  await removeControlAddress(ctx.paths);
  const key = await unlock(ctx);
  const agent = await Agent.open(ctx.paths, key, { transport: ctx.transport });
  if (options.catchUp && agent.kernel.hasIdentity()) warn(ctx, await agent.catchUp());
  return {
    remote: false,
    call: <T>(op: ControlOp, args: Record<string, unknown> = {}) =>
      (agent[op] as (a: unknown, s?: AbortSignal) => Promise<T>).call(agent, args, ctx.interrupt),
    close: async () => {
      try {
        warn(ctx, await agent.finish());
      } finally {
        lock.release();
      }
    },
  };
}

async function withSession(
  ctx: Ctx,
  options: { catchUp: boolean },
  fn: (session: Session) => Promise<void>,
): Promise<void> {
  const session = await openSession(ctx, options);
  try {
    await fn(session);
  } finally {
    await session.close();
  }
}

/**
 * Runs `fn` on a new home (none there yet) under the home lock. When `fn`
 * fails before it calls `keep()`, the home is undone — its files, and its
 * directory when this command made it — so the same --home works again.
 */
async function withNewHome(ctx: Ctx, fn: (keep: () => void) => Promise<void>): Promise<void> {
  const fresh = await Deno.stat(ctx.paths.dir).then(() => false, () => true);
  const lock = await HomeLock.tryAcquire(ctx.paths);
  if (!(lock instanceof HomeLock)) {
    throw new AgentError(
      `${ctx.paths.dir} is in use${lock.pid ? ` by pid ${lock.pid}` : ""}: ` +
        "it has an identity already (see `status`)",
      EXIT.noIdentity,
    );
  }
  try {
    await assertNewHome(ctx);
    let kept = false;
    try {
      await fn(() => kept = true);
    } catch (e) {
      if (!kept) await removeNewHome(ctx.paths, fresh);
      throw e;
    }
  } finally {
    lock.release();
  }
}

async function assertNewHome(ctx: Ctx): Promise<void> {
  if (await readConfig(ctx.paths)) {
    throw new AgentError(
      `${ctx.paths.dir} has an identity already (see \`status\`); give another --home ` +
        "for another device",
      EXIT.noIdentity,
    );
  }
}

async function createHomeFiles(ctx: Ctx, logN: number, store: StoreKind): Promise<Uint8Array> {
  await assertNewHome(ctx);
  const random = new SystemRandom();
  const kdf = newKdfParams(random, logN);
  const passphrase = await getPassphrase({ env: ctx.io.env, ask: ctx.io.ask }, { confirm: true });
  await removeHomeFiles(ctx.paths); // a half-made home from an earlier failure
  const key = deriveKey(passphrase, kdf);
  await writeConfig(ctx.paths, { version: 1, store, kdf, check: keyCheck(key, random) });
  return key;
}

async function removeHomeFiles(paths: HomePaths): Promise<void> {
  const stores = [paths.db, paths.kv].flatMap((db) => [db, `${db}-wal`, `${db}-shm`]);
  for (const path of [paths.config, ...stores]) {
    await Deno.remove(path).catch(() => {});
  }
}

/** Undoes a home a failed command began; its directory too when `made` (if nothing else is in it). */
async function removeNewHome(paths: HomePaths, made: boolean): Promise<void> {
  await removeHomeFiles(paths);
  if (!made) return;
  await Deno.remove(paths.lock).catch(() => {});
  await Deno.remove(paths.dir).catch(() => {});
}

// ─── Output ───────────────────────────────────────────────────────────────────

function emit(ctx: Ctx, value: unknown, text: string | string[]): void {
  if (ctx.json) ctx.io.out(JSON.stringify(value));
  else for (const line of [text].flat()) ctx.io.out(line);
}

function warn(ctx: Ctx, warning: string | undefined): void {
  if (warning) ctx.io.err(`meowsync agent: warning: ${warning}`);
}

function time(ms: number): string {
  return ms > 0 ? new Date(ms).toLocaleString("sv-SE") : "-";
}

function messageLine(contact: string, m: MessageView, options = { state: true }): string {
  const who = m.direction === "out" ? `me → ${contact}` : contact;
  const shown = options.state && (m.direction === "out" || m.state === "unread");
  const state = !shown ? "" : m.state === "failed" ? ` [failed: ${m.reason}]` : ` [${m.state}]`;
  return `${time(m.sentAt)}  ${who}: ${m.text}${state}`;
}

/** Says "still waiting" every {@linkcode PROGRESS_MS} while `promise` runs. */
async function withProgress<T>(ctx: Ctx, what: string, promise: Promise<T>): Promise<T> {
  const started = Date.now();
  ctx.io.err(`waiting for ${what} (Ctrl-C stops waiting)…`);
  const timer = setInterval(() => {
    ctx.io.err(`still waiting for ${what} (${Math.round((Date.now() - started) / 1000)} s)…`);
  }, PROGRESS_MS);
  try {
    return await promise;
  } finally {
    clearInterval(timer);
  }
}

// ─── Commands ─────────────────────────────────────────────────────────────────

async function cmdInit(
  ctx: Ctx,
  o: { name: string; server: string; device?: string; store: StoreKind; scryptLogN: number },
): Promise<void> {
  if (o.name.trim() === "") throw new AgentError("--name must not be empty", EXIT.usage);
  await withNewHome(ctx, async () => {
    const server = await fetchServerCard(ctx.transport, o.server);
    const key = await createHomeFiles(ctx, o.scryptLogN, o.store);
    const deviceName = o.device ?? hostName();
    const agent = await Agent.open(ctx.paths, key, { transport: ctx.transport });
    try {
      await agent.kernel.createIdentity({
        nickname: o.name.trim(),
        deviceName,
        servers: [server],
      });
    } finally {
      await agent.finish();
    }
    emit(ctx, { nickname: o.name.trim(), device: deviceName, server: server.url }, [
      `created ${o.name.trim()} on device "${deviceName}" in ${ctx.paths.dir}`,
      `home relay: ${server.name || "relay"} at ${server.url}`,
    ]);
  });
}

async function cmdPairStart(
  ctx: Ctx,
  o: { link?: boolean; out?: string; wait: boolean; timeout: number },
): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const ticket = await session.call<TicketView>("pairStart", { form: ticketForm(o, session) });
    await showTicket(
      ctx,
      ticket,
      o.out,
      (given) =>
        `on the new device: ${agentCommand("<new home>")} pair join ${given}` +
        (ticket.form === "code" ? ` --server ${ticket.server}` : ""),
    );
    if (!o.wait) return;
    const peer = await withProgress(
      ctx,
      "the new device to join",
      session.call<PairedView>("waitPeer", {
        peerUid: ticket.peerUid,
        timeoutMs: o.timeout * 1000,
      }),
    );
    emit(ctx, { paired: peer }, [
      `paired with device "${peer.name}"`,
      `safety code: ${peer.safetyCode} (the new device shows the same)`,
    ]);
  });
}

/**
 * The form `pair start` or `invite` offers: a link with --link or --out,
 * else a code, whose exchange runs in the process that printed it (so
 * --no-wait with a code needs `run` to carry it on).
 */
function ticketForm(
  o: { link?: boolean; out?: string; wait: boolean },
  session: Session,
): "link" | "code" {
  if (o.link || o.out !== undefined) return "link";
  if (!o.wait && !session.remote) {
    throw new AgentError(
      "--no-wait needs --link or --out (or `run` running on this home): a code works only " +
        "while the command that printed it runs",
      EXIT.usage,
    );
  }
  return "code";
}

/** How to run the agent on `home`, for a hint to copy. */
function agentCommand(home: string): string {
  return `./dev task agent --home ${home}`;
}

async function showTicket(
  ctx: Ctx,
  ticket: TicketView,
  out: string | undefined,
  hint: (given: string) => string,
): Promise<void> {
  const expires = `expires ${time(ticket.expiresAt)}, single use`;
  if (out !== undefined) {
    await Deno.writeTextFile(out, ticket.link + "\n", { mode: 0o600 });
    emit(
      ctx,
      { peerUid: ticket.peerUid, file: out, expiresAt: ticket.expiresAt },
      `link written to ${out} (${expires})`,
    );
    if (!ctx.json) ctx.io.err(hint(`--in ${out}`));
    return;
  }
  if (ticket.form === "link") {
    emit(ctx, { link: ticket.link, peerUid: ticket.peerUid, expiresAt: ticket.expiresAt }, [
      `link: ${ticket.link}`,
    ]);
    if (!ctx.json) {
      ctx.io.err(encodeQR(ticket.link, "ascii", { ecc: "low" }));
      ctx.io.err(`(${expires}) ${hint(`'${ticket.link}'`)}`);
    }
    return;
  }
  emit(ctx, {
    code: ticket.code,
    peerUid: ticket.peerUid,
    server: ticket.server,
    expiresAt: ticket.expiresAt,
  }, [`code: ${ticket.code}`]);
  if (!ctx.json) ctx.io.err(`(${expires}) ${hint(ticket.code)}`);
}

async function cmdPairJoin(
  ctx: Ctx,
  given: string | undefined,
  o: {
    server?: string;
    in?: string;
    device?: string;
    store: StoreKind;
    timeout: number;
    scryptLogN: number;
  },
): Promise<void> {
  if ((given === undefined) === (o.in === undefined)) {
    throw new AgentError("give either a code, a link or --in <file>", EXIT.usage);
  }
  const text = given ?? await readIn(o.in!);
  const input = await pairingInput(
    text,
    async () => o.server === undefined ? undefined : await fetchServerCard(ctx.transport, o.server),
  );
  await withNewHome(ctx, async (keep) => {
    const key = await createHomeFiles(ctx, o.scryptLogN, o.store);
    const deviceName = o.device ?? hostName();
    const agent = await Agent.open(ctx.paths, key, { transport: ctx.transport });
    try {
      const joined = await pairingErrors(
        () =>
          agent.kernel.api(DEVICE_SYNC_API).joinDevices(input, {
            deviceName,
            signal: ctx.interrupt,
          }),
        "server" in input ? input.server.url : "",
      );
      keep(); // joined: the answer completes it, now or with a later command
      await withProgress(
        ctx,
        "the other device to answer",
        agent.waitFor(() => agent.kernel.identity().uid !== "", {
          timeoutMs: o.timeout * 1000,
          signal: ctx.interrupt,
        }),
      );
      // The contacts and the other siblings come right behind the identity.
      await agent.kernel.stop();
      warn(ctx, await agent.catchUp());
      const identity = agent.kernel.identity();
      const devices = agent.kernel.devices().map((d) => d.name);
      emit(
        ctx,
        {
          nickname: identity.profile?.nickname ?? "",
          device: deviceName,
          devices,
          contacts: agent.kernel.peers().length,
          safetyCode: joined.safetyCode,
        },
        [
          `joined ${identity.profile?.nickname ?? ""}'s devices as "${deviceName}" (with ${
            devices.join(", ")
          })`,
          `safety code: ${joined.safetyCode} (the other device shows the same)`,
        ],
      );
    } finally {
      warn(ctx, await agent.finish());
    }
  });
}

async function readIn(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new AgentError(`cannot read ${path}: ${(e as Error).message}`, EXIT.badCode);
  }
}

async function cmdInvite(
  ctx: Ctx,
  o: { link?: boolean; out?: string; wait: boolean; timeout: number },
): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const ticket = await session.call<TicketView>("invite", { form: ticketForm(o, session) });
    await showTicket(
      ctx,
      ticket,
      o.out,
      (given) =>
        `on your contact's device: ${agentCommand("<their home>")} accept ${given}` +
        (ticket.form === "code" ? ` --server ${ticket.server}` : ""),
    );
    if (!o.wait) return;
    const peer = await withProgress(
      ctx,
      "your contact to accept",
      session.call<PairedView>("waitPeer", {
        peerUid: ticket.peerUid,
        timeoutMs: o.timeout * 1000,
      }),
    );
    emit(ctx, { contact: peer }, [
      `${peer.name} accepted: you can chat now`,
      `safety code: ${peer.safetyCode} (they see the same)`,
    ]);
  });
}

async function cmdAccept(
  ctx: Ctx,
  given: string | undefined,
  o: { in?: string; server?: string; name?: string },
): Promise<void> {
  if ((given === undefined) === (o.in === undefined)) {
    throw new AgentError("give either a code, a link or --in <file>", EXIT.usage);
  }
  const invitation = given ?? await readIn(o.in!);
  await withSession(ctx, { catchUp: true }, async (session) => {
    const contact = await session.call<ContactView & { safetyCode: string }>("accept", {
      invitation,
      server: o.server,
      name: o.name,
    });
    emit(ctx, { contact }, [
      `added contact "${contact.name}": you can chat now`,
      `safety code: ${contact.safetyCode} (they see the same)`,
    ]);
  });
}

async function cmdSend(ctx: Ctx, contact: string, words: string[]): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const sent = await session.call<{ contact: ContactView; message: MessageView }>("send", {
      contact,
      text: words.join(" "),
    });
    emit(ctx, sent, messageLine(sent.contact.name, sent.message));
  });
}

async function cmdRead(ctx: Ctx, contact: string): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const view = await session.call<ConversationView>("read", { contact });
    emit(
      ctx,
      view,
      view.messages.length === 0
        ? `no unread messages from ${view.contact.name}`
        : view.messages.map((m) => messageLine(view.contact.name, { ...m, state: "read" })),
    );
  });
}

async function cmdHistory(ctx: Ctx, contact: string, o: { limit?: number }): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const view = await session.call<ConversationView>("history", { contact, limit: o.limit });
    emit(
      ctx,
      view,
      view.messages.length === 0
        ? `no messages with ${view.contact.name} yet`
        : view.messages.map((m) => messageLine(view.contact.name, m)),
    );
  });
}

async function cmdContacts(ctx: Ctx): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const contacts = await session.call<ContactView[]>("contacts");
    emit(
      ctx,
      contacts,
      contacts.length === 0
        ? "no contacts yet (see `invite` and `accept`)"
        : contacts.map((c) =>
          `${c.name}  ${c.uid.slice(0, 8)}  ${c.unread} unread  primary: ${c.primary}`
        ),
    );
  });
}

async function cmdDevices(ctx: Ctx): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const devices = await session.call<DeviceView[]>("devices");
    emit(
      ctx,
      devices,
      devices.map((d) => `${d.name}  ${d.deviceUid.slice(0, 8)}${d.self ? "  (this device)" : ""}`),
    );
  });
}

async function cmdProfileSet(ctx: Ctx, o: { nickname?: string; status?: string }): Promise<void> {
  if (o.nickname === undefined && o.status === undefined) {
    throw new AgentError("give --nickname and/or --status", EXIT.usage);
  }
  await withSession(ctx, { catchUp: true }, async (session) => {
    const profile = await session.call<{ nickname: string; status: string }>("profileSet", o);
    emit(
      ctx,
      profile,
      `profile: ${profile.nickname}${profile.status ? ` — ${profile.status}` : ""}`,
    );
  });
}

async function cmdRename(ctx: Ctx, contact: string, name: string): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const view = await session.call<ContactView>("rename", { contact, name });
    emit(ctx, view, `renamed to "${view.name}"`);
  });
}

async function cmdStatus(ctx: Ctx): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const s = await session.call<StatusView>("status");
    emit(ctx, s, [
      `${s.nickname || "(identity not learned yet)"}${s.status ? ` — ${s.status}` : ""}`,
      `home:     ${s.home}${s.running ? " (agent running)" : ""}`,
      `device:   ${s.device.name} ${s.device.deviceUid.slice(0, 8)}`,
      `devices:  ${s.devices.map((d) => d.name).join(", ")}`,
      `relays:   ${s.servers.map((r) => `${r.name || "relay"} ${r.url}`).join(", ") || "none"}`,
      `contacts: ${s.contacts}`,
      `outbox:   ${s.outbox} waiting`,
      `last poll: ${time(s.lastPollAt)}`,
      ...(s.failed > 0 ? [`failed:   ${s.failed} sent message(s) a relay refused for good`] : []),
      ...quarantineLine(s),
      ...relayTrouble(s),
    ]);
  });
}

/** The quarantine, when it holds anything: how many, and the newest one's error. */
function quarantineLine(s: StatusView): string[] {
  const { count, latest } = s.quarantine;
  if (count === 0 || !latest) return [];
  return [
    `quarantine: ${count} message(s) that could not be opened; latest: ${time(latest.at)} ` +
    `${latest.errorCode}: ${latest.errorMessage}`,
  ];
}

/** One line per relay that refuses this device's requests, cannot be reached, or dropped messages. */
function relayTrouble(s: StatusView): string[] {
  const lines: string[] = [];
  for (const h of s.relayHealth) {
    const relay = h.serverName || h.serverUid.slice(0, 8);
    const what = h.request === "poll" ? "polls" : h.request === "send" ? "sends" : "pairings";
    if (h.state === "refused") {
      lines.push(`relay ${relay}: ${what} refused since ${time(h.since)}: ${h.detail}`);
    } else if (h.state === "unreachable") {
      lines.push(`relay ${relay}: unreachable since ${time(h.since)} (${what}): ${h.detail}`);
    }
    if (h.dropped > 0) {
      lines.push(`relay ${relay}: ${h.dropped} message(s) it will never take failed`);
    }
  }
  return lines;
}

async function cmdStop(ctx: Ctx): Promise<void> {
  const lock = await HomeLock.tryAcquire(ctx.paths);
  if (lock instanceof HomeLock) {
    lock.release();
    emit(ctx, { stopping: false }, `no agent runs on ${ctx.paths.dir}`);
    return;
  }
  await withSession(ctx, { catchUp: false }, async (session) => {
    const result = await session.call<{ stopping: boolean }>("stop");
    emit(ctx, result, result.stopping ? "stopping the agent" : "no agent runs on this home");
  });
}

async function cmdRun(ctx: Ctx): Promise<void> {
  const config = await readConfig(ctx.paths);
  if (!config) {
    throw new AgentError(
      `no identity in ${ctx.paths.dir} yet: run \`init\` or \`pair join\` first`,
      EXIT.noIdentity,
    );
  }
  const lock = await HomeLock.tryAcquire(ctx.paths);
  if (!(lock instanceof HomeLock)) {
    const running = await readControlAddress(ctx.paths);
    throw new AgentError(
      running
        ? `an agent runs on ${ctx.paths.dir} already${lock.pid ? ` (pid ${lock.pid})` : ""}`
        : `another meowsync command${
          lock.pid ? ` (pid ${lock.pid})` : ""
        } is using ${ctx.paths.dir}; try again when it has finished`,
      EXIT.busy,
    );
  }
  try {
    await removeControlAddress(ctx.paths);
    const key = await unlock(ctx);
    let device = "";
    const agent = await Agent.open(ctx.paths, key, {
      transport: ctx.transport,
      onMessage: (m: IncomingView) => {
        if (ctx.json) ctx.io.out(JSON.stringify({ device, ...m }));
        else ctx.io.out(`[${device}] ${messageLine(m.contact, m, { state: false })}`);
      },
      log: (level, line) => {
        if (level === "error" || ctx.io.env("MEOW_DEBUG")) ctx.io.err(`${level} ${line}`);
      },
    });
    let server: { close(): Promise<void> } | undefined;
    try {
      if (!agent.kernel.hasIdentity()) {
        throw new AgentError(`no identity in ${ctx.paths.dir} yet`, EXIT.noIdentity);
      }
      const identity = agent.kernel.identity();
      device = identity.deviceName;
      agent.serving = true;
      agent.goOnline();
      const stopped = new Promise<void>((resolve) => {
        agent.onStopRequest(resolve);
        if (ctx.interrupt.aborted) resolve();
        ctx.interrupt.addEventListener("abort", () => resolve(), { once: true });
      });
      server = await serveControl(agent, ctx.paths, { toError: toAgentError });
      ctx.io.err(
        `meowsync agent: ${identity.profile?.nickname || "(joining)"} on "${device}" is online ` +
          `(${ctx.paths.dir}); Ctrl-C stops it`,
      );
      await stopped;
    } finally {
      agent.interruptWaits();
      await removeControlAddress(ctx.paths);
      await server?.close();
      warn(ctx, await agent.finish());
    }
    ctx.io.err("meowsync agent: stopped; everything is saved");
  } finally {
    lock.release();
  }
}

function hostName(): string {
  try {
    return Deno.hostname();
  } catch {
    return "device";
  }
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
