/**
 * The device commands: `devices` (list, retire, remove; pairing a device is in `pairing.ts`).
 *
 * @module
 */
import { AgentError, EXIT } from "../errors.ts";
import { askOnTerminal } from "../passphrase.ts";
import { type Ctx, emit, withSession } from "../session.ts";
import { devicesLines } from "../views.ts";

/** `devices retire <device>`: this device hands its contacts over, then leaves. */
export async function cmdRetire(ctx: Ctx, device: string, o: { to?: string }): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const result = await session.call("retire", { device, to: o.to });
    emit(ctx, result, [
      ...result.handedOver.map((c) => `${c.name}: handed over to ${c.primary}`),
      "this device left its user's devices; its siblings no longer sync with it",
    ]);
  });
}

/** `devices remove <device>`: a sibling leaves this user's devices, for good. */
export async function cmdRemoveDevice(ctx: Ctx, device: string): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const removed = await session.call("removeDevice", { device });
    emit(ctx, removed, `removed device "${removed.name}"; it is never accepted again`);
  });
}

/** `devices`: this device and its siblings. */
export async function cmdDevices(ctx: Ctx): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const devices = await session.call("devices", {});
    emit(ctx, devices, devicesLines(devices));
  });
}

/**
 * `devices recover`: the identity root moves to this device, re-derived from the recovery code
 * printed at `init` (read from $MEOW_RECOVERY_CODE, else asked on the terminal).
 */
export async function cmdRecover(ctx: Ctx): Promise<void> {
  const fromEnv = ctx.io.env("MEOW_RECOVERY_CODE");
  const code = fromEnv !== undefined && fromEnv !== ""
    ? fromEnv
    : await (ctx.io.ask ?? askOnTerminal)("recovery code: ");
  if (code === undefined || code.trim() === "") {
    throw new AgentError(
      "no recovery code: set MEOW_RECOVERY_CODE or run the command in a terminal",
      EXIT.usage,
    );
  }
  await withSession(ctx, { catchUp: true }, async (session) => {
    const result = await session.call("recover", { code });
    emit(ctx, result, [
      "this device holds the identity root now: it can pair and remove devices",
    ]);
  });
}
