/**
 * The contact commands: `contacts` (list, handover) and `rename`.
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

/** `contacts handover <contact> --to <device>`: this device, the contact's primary, hands it over. */
export async function cmdHandover(ctx: Ctx, contact: string, o: { to: string }): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const view = await session.call("handover", { contact, to: o.to });
    emit(ctx, view, `${view.name}: handed over; primary now ${view.primary}`);
  });
}

/** `rename <contact> <name>`: renames a contact on every device. */
export async function cmdRename(ctx: Ctx, contact: string, name: string): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const view = await session.call("rename", { contact, name });
    const found = view.name.toLowerCase().startsWith(view.previous.toLowerCase())
      ? `"${view.previous}" still finds it (a name prefix)`
      : `commands find it as "${view.name}" (or a prefix of it) from now on`;
    emit(ctx, view, `renamed "${view.previous}" to "${view.name}" on every device; ${found}`);
  });
}
