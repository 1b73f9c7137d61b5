/**
 * A plugin module: what a file that extends meowsync exports — the plugin itself (a factory, one
 * fresh plugin per device) and, optionally, what it adds around the kernel: simulator steps and
 * expectations, agent commands, and notes on the messages `history` shows. The simulator
 * (`deno task sim --plugin FILE`, a scenario's `plugins:`) and the agent (`--plugin FILE`, the
 * home's `plugins` list) load such a file with plugins/loader.ts; docs/PLUGINS.md is the guide.
 *
 * Everything here is types over the kernel's public API: a module needs nothing else.
 *
 * @module
 */
import type { DbMessage } from "../proto/mod.ts";
import type { Kernel } from "./kernel.ts";
import type { Plugin, PluginDataReader } from "./plugin.ts";

/**
 * What one field of a plugin's scenario step or expectation holds; the simulator validates it as it
 * validates its own fields (the same messages and suggestions): `device` — a `user/device` of the
 * scenario; `user` — a user of the scenario; `text` — a non-empty string; `duration` — `250ms`,
 * `10s`, … (given to the step as ms); `count` — a whole number ≥ 0; `boolean`; `oneOf` — one of the
 * listed strings.
 */
export type FieldKind =
  | "device"
  | "user"
  | "text"
  | "duration"
  | "count"
  | "boolean"
  | { oneOf: readonly string[] };

/** One field of a step or an expectation. */
export interface FieldSpec {
  kind: FieldKind;
  /** Whether the field must be given. @default {false} */
  required?: boolean;
}

/** What a plugin's step runs with, in the simulator. */
export interface StepContext {
  /** The scheduler's time, in virtual ms. */
  readonly now: number;
  /**
   * The live kernel of `device` (`user/device`).
   *
   * @throws {Error} when the device is crashed or gone (the step is then refused)
   */
  kernel(device: string): Kernel;
  /** The uid, on `device`, of its user's conversation with `user`. */
  conversation(device: string, user: string): string;
  /**
   * The uuid of the message whose text is `text` in `device`'s conversation with `user` (a `send`
   * with `count` numbers its texts: `"hi #2"`).
   *
   * @throws {Error} when that device holds no such message (yet)
   */
  messageUuid(device: string, user: string, text: string): Promise<string>;
}

/** A step kind a plugin adds to scenarios: `- { at: 10s, react: { device: …, … } }`. */
export interface StepExtension {
  /** What a person writes under the step's name, for `--help`-like messages. */
  description: string;
  /** The step's fields. */
  fields: Readonly<Record<string, FieldSpec>>;
  /** Runs one step with its validated fields; a throw is a refused step. */
  run(args: Readonly<Record<string, unknown>>, context: StepContext): Promise<void>;
}

/** One device at the end of a run, as a plugin's expectation sees it. */
export interface CheckDevice {
  /** `user/device`. */
  readonly ref: string;
  /** Its user. */
  readonly user: string;
  /** A plugin's committed collection on this device. */
  data(namespace: string): PluginDataReader;
  /** The user on the other side of the conversation `peerUid` on this device ("" when unknown). */
  contactOf(peerUid: string): string;
  /** The stored messages of a conversation on this device. */
  messages(peerUid: string): Promise<DbMessage[]>;
}

/** What a plugin's expectation checks, in the simulator. */
export interface CheckContext {
  /** Every device that ended the run (devices lost for good are not among them). */
  readonly devices: readonly CheckDevice[];
}

/** The outcome of an expectation. */
export interface CheckOutcome {
  ok: boolean;
  /** What failed (or what held), for the report. */
  detail: string;
}

/** An expectation a plugin adds to scenarios: `- reactions_converged` or `- { name: { … } }`. */
export interface ExpectationExtension {
  /** What it checks, one line, for the report. */
  description: string;
  /** Its fields, when it takes any. @default {none} */
  fields?: Readonly<Record<string, FieldSpec>>;
  /** Checks the run's end state. */
  check(args: Readonly<Record<string, unknown>>, context: CheckContext): Promise<CheckOutcome>;
}

/** What a plugin's agent command runs with. */
export interface CommandContext {
  /** The device's kernel. */
  readonly kernel: Kernel;
  /**
   * The conversation uid of a contact named (any case) or uid-prefixed `name`.
   *
   * @throws {Error} the agent's "no contact matches" error
   */
  contact(name: string): string;
  /**
   * The uuid of a message of conversation `peerUid` given by a uuid prefix (4+ characters, as
   * `history --json` shows uuids) or by its exact text.
   *
   * @throws {Error} when none or several match
   */
  message(peerUid: string, ref: string): Promise<string>;
}

/** An agent command a plugin adds: `deno task agent … react bob <message> 👍`. */
export interface CommandExtension {
  /** One line for `--help`. */
  summary: string;
  /** The argument names; a last one ending in `...` takes the rest of the words. */
  args: readonly string[];
  /** Runs it; `lines` are printed, `value` is the `--json` output. */
  run(
    context: CommandContext,
    args: readonly string[],
  ): Promise<{ lines: string[]; value: unknown }>;
}

/** What a plugin adds to one message as `history` shows it. */
export interface MessageAnnotation {
  /** The text to show instead (an edit, a deletion). */
  text?: string;
  /** Short notes after the text ("edited", "👍 bob"). */
  notes?: string[];
}

/** What a plugin module's default export is (or a bare factory of the plugin). */
export interface PluginModule {
  /** The plugin's name (each device's plugin has it). */
  name: string;
  /** Makes the plugin of one device (called once per kernel). */
  create(): Plugin;
  /** Simulator step kinds it adds, by name. */
  steps?: Readonly<Record<string, StepExtension>>;
  /** Simulator expectations it adds, by name. */
  expectations?: Readonly<Record<string, ExpectationExtension>>;
  /** Agent commands it adds, by name. */
  commands?: Readonly<Record<string, CommandExtension>>;
  /** Notes on the messages of conversation `peerUid`, by message uuid (for `history`). */
  annotate?(kernel: Kernel, peerUid: string): Promise<Map<string, MessageAnnotation>>;
}
