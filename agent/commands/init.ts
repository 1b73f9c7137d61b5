/**
 * `init`: a new identity on a new home (its first device).
 *
 * @module
 */
import { newRecoveryCode } from "../../kernel/mod.ts";
import { Agent } from "../agent.ts";
import { AgentError, EXIT } from "../errors.ts";
import type { StoreKind } from "../home.ts";
import { fetchServerCard } from "../pairing.ts";
import { type Ctx, emit } from "../session.ts";
import { createHomeFiles, hostName, withNewHome } from "./new_home.ts";

/** `init --name … --server …`: creates the home and the identity on it. */
export async function cmdInit(
  ctx: Ctx,
  o: { name: string; server: string; device?: string; store: StoreKind; scryptLogN: number },
): Promise<void> {
  if (o.name.trim() === "") throw new AgentError("--name must not be empty", EXIT.usage);
  await withNewHome(ctx, async () => {
    const server = await fetchServerCard(ctx.transport, o.server);
    const key = await createHomeFiles(ctx, o.scryptLogN, o.store);
    const deviceName = o.device ?? hostName();
    const agent = await Agent.open(ctx.paths, key, {
      transport: ctx.transport,
      modules: ctx.modules,
    });
    let recoveryCode: string;
    try {
      // Shown once and never stored: it re-derives the identity root (`devices recover`).
      recoveryCode = newRecoveryCode(agent.kernel.random);
      await agent.kernel.createIdentity({
        nickname: o.name.trim(),
        deviceName,
        servers: [server],
        recoveryCode,
      });
    } finally {
      await agent.finish();
    }
    emit(ctx, { nickname: o.name.trim(), device: deviceName, server: server.url, recoveryCode }, [
      `created ${o.name.trim()} on device "${deviceName}" in ${ctx.paths.dir}`,
      `home relay: ${server.name || "relay"} at ${server.url}`,
      `recovery code: ${recoveryCode}`,
      "  write it down now: it is shown only this once. This device holds the identity root, which",
      "  pairs and removes devices; if it is lost, `devices recover` with the code on another of",
      "  your devices takes the root over. Without the code, the list of devices is then frozen.",
    ]);
  });
}
