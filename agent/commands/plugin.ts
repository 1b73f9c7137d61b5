/**
 * The commands plugin modules add (`react`, `edit`, `delete`, and those of `--plugin` modules):
 * each runs as the operation `command` — in this process, or in the running agent, which must
 * have loaded the same module.
 *
 * @module
 */
import { type Ctx, emit, withSession } from "../session.ts";

/** Runs plugin command `name` with its words; prints its lines (its value with `--json`). */
export async function cmdPlugin(ctx: Ctx, name: string, args: string[]): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const result = await session.call("command", { name, args });
    emit(ctx, result.value, result.lines);
  });
}
