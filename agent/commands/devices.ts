/**
 * The device commands: `devices` (pairing a device is in `pairing.ts`).
 *
 * @module
 */
import { type Ctx, emit, withSession } from "../session.ts";
import { devicesLines } from "../views.ts";

/** `devices`: this device and its siblings. */
export async function cmdDevices(ctx: Ctx): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const devices = await session.call("devices", {});
    emit(ctx, devices, devicesLines(devices));
  });
}
