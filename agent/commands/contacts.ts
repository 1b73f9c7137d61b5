/**
 * The contact commands: `contacts` and `rename`.
 *
 * @module
 */
import { type Ctx, emit, withSession } from "../session.ts";
import { contactsLines } from "../views.ts";

/** `contacts`: every contact, by name. */
export async function cmdContacts(ctx: Ctx): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const contacts = await session.call("contacts", {});
    emit(ctx, contacts, contactsLines(contacts));
  });
}

/** `rename <contact> <name>`: renames a contact on every device. */
export async function cmdRename(ctx: Ctx, contact: string, name: string): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const view = await session.call("rename", { contact, name });
    emit(ctx, view, `renamed to "${view.name}"`);
  });
}
