/**
 * The device agent a person runs (`deno task agent`): a kernel with the
 * production plugins over one home — a directory with the device's SQLite
 * store, every record encrypted with a key derived from a passphrase — and
 * the command line around it. See `agent.ts` for the agent's life cycle and
 * why the store is one database, `operations.ts` for the operations the CLI
 * runs (in-process or through a running agent), `views.ts` for what they
 * show, `home.ts` for the files of a home and the lock that keeps kernels to
 * one per home, `control.ts` for how commands reach a running agent, and
 * `cli.ts`, `session.ts` and `commands/` for the command line.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { EXIT, runCli } from "./mod.ts";
 * const out: string[] = [];
 * const io = { out: (l: string) => out.push(l), err: (l: string) => out.push(l), env: () => undefined };
 * assert(await runCli(["send", "--help"], io) === EXIT.ok);
 * ```
 *
 * @module
 */
export { Agent, type AgentOptions, LONG_POLL_MS } from "./agent.ts";
export {
  type ContactView,
  type ConversationView,
  type DeviceView,
  type IncomingView,
  type MessageView,
  messageView,
  type PairedView,
  type StatusView,
  type TicketView,
} from "./views.ts";
export {
  isOpName,
  type NoInput,
  OP_NAMES,
  type Operation,
  OPERATIONS,
  type OpInput,
  type OpName,
  type OpResult,
  runOperation,
} from "./operations.ts";
export { fetchServerCard } from "./pairing.ts";
export { type CliIo, denoIo, runCli, toAgentError } from "./cli.ts";
export {
  callControl,
  CONTROL_OPS,
  type ControlOp,
  type ControlServer,
  serveControl,
} from "./control.ts";
export { AgentError, EXIT, EXIT_HELP } from "./errors.ts";
export {
  defaultHome,
  type HomeConfig,
  HomeLock,
  type HomePaths,
  homePaths,
  type LockHolder,
  readConfig,
} from "./home.ts";
export {
  deriveKey,
  getPassphrase,
  KDF_LOG_N_DEFAULT,
  type KdfParams,
  keyCheck,
  keyMatches,
  newKdfParams,
} from "./passphrase.ts";
