/**
 * The message commands: `send`, `read` and `history`.
 *
 * @module
 */
import { type Ctx, emit, withSession } from "../session.ts";
import { historyLines, messageLine, readLines } from "../views.ts";

/** `send <contact> <text...>`: sends the words, joined with spaces. */
export async function cmdSend(ctx: Ctx, contact: string, words: string[]): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const sent = await session.call("send", { contact, text: words.join(" ") });
    // A relay is down: the message waits in the outbox and goes out when the relay is back.
    const line = sent.queued
      ? `${
        messageLine(sent.contact.name, sent.message, { state: false })
      } [queued — ${sent.queued}]`
      : messageLine(sent.contact.name, sent.message);
    emit(ctx, sent, line);
  });
}

/** `read <contact>`: the unread messages, then marks them read. */
export async function cmdRead(ctx: Ctx, contact: string): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const view = await session.call("read", { contact });
    emit(ctx, view, readLines(view));
  });
}

/** `history <contact> [--limit n]`: the conversation, oldest first. */
export async function cmdHistory(ctx: Ctx, contact: string, o: { limit?: number }): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const view = await session.call("history", { contact, limit: o.limit });
    emit(ctx, view, historyLines(view));
  });
}
