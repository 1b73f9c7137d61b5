/**
 * Deletions: a tombstone on a message — for everyone (this user's own messages: sent to the
 * contact too) or for me (any message: this user's devices only). A tombstone is final: one for
 * everyone outranks one for me, and an edit, whenever it was made, never shows through it. Built
 * only on the public plugin API, over plugins/marks. The message row stays (sealed in the store);
 * every view shows the tombstone instead. Agent command `delete`, step `delete:`, expectation
 * `deletions_converged`.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { deletionsModule } from "./mod.ts";
 * assert.equal(deletionsModule.create().name, "deletions");
 * ```
 *
 * @module
 */
import { apiKey, Malformed, type Plugin, type PluginModule } from "../../kernel/mod.ts";
import { later, type Mark, marksConverged, marksPlugin } from "../marks/mod.ts";

/** The plugin's name, message type and collection. */
export const DELETIONS = "deletions";

/** Whom a deletion is for. */
export type DeletionScope = "me" | "everyone";

/** What the deletions plugin offers, under {@linkcode DELETIONS_API}. */
export interface DeletionsApi {
  /**
   * Deletes message `target` of conversation `peerUid`: `everyone` (only this user's own messages)
   * or `me`.
   *
   * @throws {TypeError} for a message this device does not hold, or `everyone` on the contact's
   */
  delete(peerUid: string, target: string, scope: DeletionScope): Promise<Mark<DeletionScope>>;
  /** The tombstones of a conversation (of one message with `target`). */
  tombstones(peerUid: string, target?: string): Promise<Mark<DeletionScope>[]>;
}

/** The typed key of the deletions api. */
export const DELETIONS_API = apiKey<DeletionsApi>(DELETIONS);

function parse(value: unknown): DeletionScope {
  if (value !== "me" && value !== "everyone") throw new Malformed("deletions: not a scope");
  return value;
}

/** For everyone outranks for me; then the later one. */
function wins(a: Mark<DeletionScope>, b: Mark<DeletionScope>): boolean {
  if (a.value !== b.value) return a.value === "everyone";
  return later(a, b);
}

/** Test builds only: switch a mechanism off to show what it is worth. */
export interface DeletionsOptions {
  /** The primary keeps the contact's deletions to itself. */
  noPassOn?: boolean;
}

/** Creates the deletions plugin. */
export function deletionsPlugin(options: DeletionsOptions = {}): Plugin {
  const marks = marksPlugin<DeletionScope>({
    name: DELETIONS,
    parse,
    wins,
    noPassOn: options.noPassOn,
  });
  let kernelMessage: ((peerUid: string, uuid: string) => Promise<boolean | undefined>) | undefined;
  const api: DeletionsApi = {
    delete: async (peerUid, target, scope) => {
      parse(scope);
      const outbound = await kernelMessage?.(peerUid, target);
      if (outbound === undefined) throw new TypeError(`deletions: no message ${target} here`);
      if (scope === "everyone" && !outbound) {
        throw new TypeError("deletions: only your own messages can be deleted for everyone");
      }
      return await marks.api.set(peerUid, target, scope, { shared: scope === "everyone" });
    },
    tombstones: (peerUid, target) => marks.api.list(peerUid, target),
  };
  return {
    ...marks,
    api,
    setup(host) {
      marks.setup!(host);
      kernelMessage = (peerUid, uuid) =>
        host.transact(async (tx) => (await tx.message(peerUid, uuid))?.outbound);
    },
  };
}

/** The deletions module: the plugin, its step, expectation, command and history notes. */
export const deletionsModule: PluginModule = {
  name: DELETIONS,
  create: () => deletionsPlugin(),
  steps: {
    delete: {
      description: "{ device: user/device, to: user, message: text, for: me | everyone }",
      fields: {
        device: { kind: "device", required: true },
        to: { kind: "user", required: true },
        message: { kind: "text", required: true },
        for: { kind: { oneOf: ["me", "everyone"] }, required: true },
      },
      async run(args, ctx) {
        const device = String(args.device);
        const to = String(args.to);
        const target = await ctx.messageUuid(device, to, String(args.message));
        await ctx.kernel(device).api(DELETIONS_API)
          .delete(ctx.conversation(device, to), target, args.for as DeletionScope);
      },
    },
  },
  expectations: {
    deletions_converged: {
      description: "every device that must show a deletion shows the same tombstones",
      check: (_args, ctx) => marksConverged(DELETIONS, ctx),
    },
  },
  commands: {
    delete: {
      summary: "delete a message: for everyone (your own) or for me",
      args: ["contact", "message", "for"],
      async run(ctx, [contact, message, scope]) {
        if (scope !== "me" && scope !== "everyone") {
          throw new TypeError(`"${scope}" is neither me nor everyone`);
        }
        const peerUid = ctx.contact(contact);
        const target = await ctx.message(peerUid, message);
        const mark = await ctx.kernel.api(DELETIONS_API).delete(peerUid, target, scope);
        return { lines: [`deleted for ${scope}`], value: mark };
      },
    },
  },
  async annotate(kernel, peerUid) {
    const out = new Map<string, { text: string; notes: string[] }>();
    for (const m of await kernel.api(DELETIONS_API).tombstones(peerUid)) {
      const current = out.get(m.target);
      if (current && current.text === "(deleted)") continue;
      out.set(m.target, {
        text: m.value === "everyone" ? "(deleted)" : "(deleted for me)",
        notes: [],
      });
    }
    return out;
  },
};
