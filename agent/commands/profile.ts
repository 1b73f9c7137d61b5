/**
 * The profile and status commands: `profile show`, `profile set` and `status`.
 *
 * @module
 */
import { AgentError, EXIT } from "../errors.ts";
import { type Ctx, emit, withSession } from "../session.ts";
import { profileLine, statusLines } from "../views.ts";

/** `profile show`: the nickname and status line contacts see. */
export async function cmdProfileShow(ctx: Ctx): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const profile = await session.call("profile", {});
    emit(ctx, profile, profileLine(profile));
  });
}

/** `profile set [--nickname …] [--status …]`: changes the profile on every device. */
export async function cmdProfileSet(
  ctx: Ctx,
  o: { nickname?: string; status?: string },
): Promise<void> {
  if (o.nickname === undefined && o.status === undefined) {
    throw new AgentError("give --nickname and/or --status", EXIT.usage);
  }
  await withSession(ctx, { catchUp: true }, async (session) => {
    const profile = await session.call("profileSet", o);
    emit(ctx, profile, profileLine(profile));
  });
}

/** `status`: relays, devices, contacts, outbox and last poll. */
export async function cmdStatus(ctx: Ctx): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const s = await session.call("status", {});
    emit(ctx, s, statusLines(s));
  });
}
