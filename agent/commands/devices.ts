/**
 * The device commands: `devices` (list, retire, remove; pairing a device is in `pairing.ts`).
 *
 * @module
 */
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
