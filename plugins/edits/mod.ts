/**
 * Edits: a new text for one of this user's own messages, synced to the user's devices and sent to
 * the contact; the last writer wins on the edit's time, then its device uid, so two devices editing
 * one message at once end on the same text everywhere. An edit of a deleted message is refused
 * here, and one that arrives after the deletion never shows (plugins/deletions). Built only on the
 * public plugin API, over plugins/marks. Agent command `edit`, step `edit:`, expectation
 * `edits_converged`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { editsModule } from "./mod.ts";
 * assert.equal(editsModule.create().name, "edits");
 * ```
 *
 * @module
 */
import { apiKey, Malformed, type Plugin, type PluginModule } from "../../kernel/mod.ts";
import { type Mark, marksConverged, marksPlugin } from "../marks/mod.ts";

/** The plugin's name, message type and collection. */
export const EDITS = "edits";
/** The longest edited text, in UTF-16 units. */
export const EDIT_TEXT_MAX = 4096;

/** What the edits plugin offers, under {@linkcode EDITS_API}. */
export interface EditsApi {
  /**
   * Replaces the text of this user's message `target` of conversation `peerUid`.
   *
   * @throws {TypeError} for a message this device does not hold, the contact's, or a deleted one
   */
  edit(peerUid: string, target: string, text: string): Promise<Mark<string>>;
  /** The edits of a conversation (of one message with `target`). */
  edits(peerUid: string, target?: string): Promise<Mark<string>[]>;
}

/** The typed key of the edits api. */
export const EDITS_API = apiKey<EditsApi>(EDITS);

function parse(value: unknown): string {
  if (typeof value !== "string" || value === "" || value.length > EDIT_TEXT_MAX) {
    throw new Malformed(`edits: not a text (1 to ${EDIT_TEXT_MAX} characters)`);
  }
  return value;
}

/** Test builds only: switch a mechanism off to show what it is worth. */
export interface EditsOptions {
  /** The last edit to arrive wins, whatever its time. */
  lastArrivalWins?: boolean;
}

/** Creates the edits plugin. */
export function editsPlugin(options: EditsOptions = {}): Plugin {
  const marks = marksPlugin<string>({
    name: EDITS,
    parse,
    lastArrivalWins: options.lastArrivalWins,
  });
  let checks:
    | ((peerUid: string, uuid: string) => Promise<{ outbound?: boolean; deleted: boolean }>)
    | undefined;
  const api: EditsApi = {
    edit: async (peerUid, target, text) => {
      parse(text);
      const found = await checks!(peerUid, target);
      if (found.outbound === undefined) throw new TypeError(`edits: no message ${target} here`);
      if (!found.outbound) throw new TypeError("edits: only your own messages can be edited");
      if (found.deleted) throw new TypeError("edits: the message was deleted");
      return await marks.api.set(peerUid, target, text, { shared: true });
    },
    edits: (peerUid, target) => marks.api.list(peerUid, target),
  };
  return {
    ...marks,
    api,
    setup(host) {
      marks.setup!(host);
      checks = (peerUid, uuid) =>
        host.transact(async (tx) => {
          const outbound = (await tx.message(peerUid, uuid))?.outbound;
          let deleted = false;
          try {
            deleted = (await tx.data("deletions").list(`${peerUid}/${uuid}/`)).length > 0;
          } catch {
            // No deletions plugin on this device.
          }
          return { outbound, deleted };
        });
    },
  };
}

/** The edits module: the plugin, its step, expectation, command and history notes. */
export const editsModule: PluginModule = {
  name: EDITS,
  create: () => editsPlugin(),
  steps: {
    edit: {
      description: "{ device: user/device, to: user, message: text, text: text }",
      fields: {
        device: { kind: "device", required: true },
        to: { kind: "user", required: true },
        message: { kind: "text", required: true },
        text: { kind: "text", required: true },
      },
      async run(args, ctx) {
        const device = String(args.device);
        const to = String(args.to);
        const target = await ctx.messageUuid(device, to, String(args.message));
        await ctx.kernel(device).api(EDITS_API)
          .edit(ctx.conversation(device, to), target, String(args.text));
      },
    },
  },
  expectations: {
    edits_converged: {
      description: "every device of both users shows the same text for every edited message",
      check: (_args, ctx) => marksConverged(EDITS, ctx),
    },
  },
  commands: {
    edit: {
      summary: "replace the text of one of your messages",
      args: ["contact", "message", "text..."],
      async run(ctx, [contact, message, ...words]) {
        const peerUid = ctx.contact(contact);
        const target = await ctx.message(peerUid, message);
        const mark = await ctx.kernel.api(EDITS_API).edit(peerUid, target, words.join(" "));
        return { lines: [`edited: ${mark.value}`], value: mark };
      },
    },
  },
  async annotate(kernel, peerUid) {
    const out = new Map<string, { text: string; notes: string[] }>();
    const direction = new Map(
      (await kernel.messages(peerUid)).map((m) => [m.message?.status?.uuid ?? "", m.outbound]),
    );
    for (const m of await kernel.api(EDITS_API).edits(peerUid)) {
      // An edit counts only from the message's author.
      if (direction.get(m.target) !== (m.side === "self")) continue;
      out.set(m.target, { text: m.value, notes: ["edited"] });
    }
    return out;
  },
};
