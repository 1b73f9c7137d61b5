/**
 * Reactions: an emoji on a message, one per side of the conversation (a new one replaces it; an
 * empty one takes it back), synced to the user's devices and sent to the contact. Built only on the
 * public plugin API, over plugins/marks. Agent command `react`, scenario step `react:`,
 * expectation `reactions_converged`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { reactionsModule } from "./mod.ts";
 * assert.equal(reactionsModule.create().name, "reactions");
 * assert.deepEqual(Object.keys(reactionsModule.steps ?? {}), ["react"]);
 * ```
 *
 * @module
 */
import { apiKey, Malformed, type Plugin, type PluginModule } from "../../kernel/mod.ts";
import { type Mark, marksConverged, marksPlugin } from "../marks/mod.ts";

/** The plugin's name, message type and collection. */
export const REACTIONS = "reactions";
/** The longest reaction, in code points. */
export const REACTION_CHARS_MAX = 16;

/** What the reactions plugin offers, under {@linkcode REACTIONS_API}. */
export interface ReactionsApi {
  /** Puts `emoji` on message `target` of conversation `peerUid` ("" takes this user's back). */
  react(peerUid: string, target: string, emoji: string): Promise<Mark<string>>;
  /** The reactions of a conversation (of one message with `target`). */
  reactions(peerUid: string, target?: string): Promise<Mark<string>[]>;
}

/** The typed key of the reactions api. */
export const REACTIONS_API = apiKey<ReactionsApi>(REACTIONS);

function parse(value: unknown): string {
  if (typeof value !== "string" || [...value].length > REACTION_CHARS_MAX) {
    throw new Malformed(`reactions: not a reaction (a string of up to ${REACTION_CHARS_MAX})`);
  }
  return value;
}

/** Test builds only: switch a mechanism off to show what it is worth. */
export interface ReactionsOptions {
  /** The primary keeps the contact's reactions to itself. */
  noPassOn?: boolean;
}

/** Creates the reactions plugin. */
export function reactionsPlugin(options: ReactionsOptions = {}): Plugin {
  const marks = marksPlugin<string>({ name: REACTIONS, parse, noPassOn: options.noPassOn });
  const api: ReactionsApi = {
    react: async (peerUid, target, emoji) => {
      parse(emoji);
      return await marks.api.set(peerUid, target, emoji, { shared: true });
    },
    reactions: async (peerUid, target) =>
      (await marks.api.list(peerUid, target)).filter((m) => m.value !== ""),
  };
  return { ...marks, api };
}

/** The reactions module: the plugin, its step, expectation, command and history notes. */
export const reactionsModule: PluginModule = {
  name: REACTIONS,
  create: () => reactionsPlugin(),
  steps: {
    react: {
      description: "{ device: user/device, to: user, message: text, emoji: text }",
      fields: {
        device: { kind: "device", required: true },
        to: { kind: "user", required: true },
        message: { kind: "text", required: true },
        emoji: { kind: "text", required: true },
      },
      async run(args, ctx) {
        const device = String(args.device);
        const to = String(args.to);
        const target = await ctx.messageUuid(device, to, String(args.message));
        await ctx.kernel(device).api(REACTIONS_API)
          .react(ctx.conversation(device, to), target, String(args.emoji));
      },
    },
  },
  expectations: {
    reactions_converged: {
      description: "every device of both users shows the same reactions",
      check: (_args, ctx) => marksConverged(REACTIONS, ctx),
    },
  },
  commands: {
    react: {
      summary: 'react to a message with an emoji ("" takes yours back)',
      args: ["contact", "message", "emoji"],
      async run(ctx, [contact, message, emoji]) {
        const peerUid = ctx.contact(contact);
        const target = await ctx.message(peerUid, message);
        const mark = await ctx.kernel.api(REACTIONS_API).react(peerUid, target, emoji);
        return {
          lines: [emoji === "" ? "reaction taken back" : `reacted ${emoji}`],
          value: mark,
        };
      },
    },
  },
  async annotate(kernel, peerUid) {
    const notes = new Map<string, { notes: string[] }>();
    for (const m of await kernel.api(REACTIONS_API).reactions(peerUid)) {
      const entry = notes.get(m.target) ?? { notes: [] };
      entry.notes.push(`${m.value} ${m.side === "self" ? "me" : "them"}`);
      notes.set(m.target, entry);
    }
    return notes;
  },
};
