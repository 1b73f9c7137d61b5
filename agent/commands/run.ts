/**
 * The commands of a running agent: `run` (stay online, serve the other
 * commands through the control endpoint) and `stop`.
 *
 * @module
 */
import { Agent } from "../agent.ts";
import { serveControl } from "../control.ts";
import { AgentError, EXIT } from "../errors.ts";
import { HomeLock, readConfig, readControlAddress, removeControlAddress } from "../home.ts";
import { type Ctx, emit, toAgentError, unlock, warn, withSession } from "../session.ts";
import { type IncomingView, messageLine } from "../views.ts";

/** `stop`: asks the agent `run` started on this home to stop. */
export async function cmdStop(ctx: Ctx): Promise<void> {
  const lock = await HomeLock.tryAcquire(ctx.paths);
  if (lock instanceof HomeLock) {
    lock.release();
    emit(ctx, { stopping: false }, `no agent runs on ${ctx.paths.dir}`);
    return;
  }
  await withSession(ctx, { catchUp: false }, async (session) => {
    const result = await session.call("stop", {});
    emit(ctx, result, result.stopping ? "stopping the agent" : "no agent runs on this home");
  });
}

/**
 * `run`: stays online on the home under its lock, serves the other commands
 * through the control endpoint, prints incoming messages; stops on Ctrl-C,
 * SIGTERM or `stop`.
 */
export async function cmdRun(ctx: Ctx): Promise<void> {
  const config = await readConfig(ctx.paths);
  if (!config) {
    throw new AgentError(
      `no identity in ${ctx.paths.dir} yet: run \`init\` or \`pair join\` first`,
      EXIT.noIdentity,
    );
  }
  const lock = await HomeLock.tryAcquire(ctx.paths);
  if (!(lock instanceof HomeLock)) {
    const running = await readControlAddress(ctx.paths);
    throw new AgentError(
      running
        ? `an agent runs on ${ctx.paths.dir} already${lock.pid ? ` (pid ${lock.pid})` : ""}`
        : `another meowsync command${
          lock.pid ? ` (pid ${lock.pid})` : ""
        } is using ${ctx.paths.dir}; try again when it has finished`,
      EXIT.busy,
    );
  }
  try {
    await removeControlAddress(ctx.paths);
    const key = await unlock(ctx);
    let device = "";
    const agent = await Agent.open(ctx.paths, key, {
      transport: ctx.transport,
      modules: ctx.modules,
      onMessage: (m: IncomingView) => {
        if (ctx.json) ctx.io.out(JSON.stringify({ device, ...m }));
        else ctx.io.out(`[${device}] ${messageLine(m.contact, m, { state: false })}`);
      },
      log: (level, line) => {
        if (level === "error" || ctx.io.env("MEOW_DEBUG")) ctx.io.err(`${level} ${line}`);
      },
    });
    let server: { close(): Promise<void> } | undefined;
    try {
      if (!agent.kernel.hasIdentity()) {
        throw new AgentError(`no identity in ${ctx.paths.dir} yet`, EXIT.noIdentity);
      }
      const identity = agent.kernel.identity();
      device = identity.deviceName;
      agent.serving = true;
      agent.goOnline();
      const stopped = new Promise<void>((resolve) => {
        agent.onStopRequest(resolve);
        if (ctx.interrupt.aborted) resolve();
        ctx.interrupt.addEventListener("abort", () => resolve(), { once: true });
      });
      server = await serveControl(agent, ctx.paths, { toError: toAgentError });
      ctx.io.err(
        `meowsync agent: ${identity.profile?.nickname || "(joining)"} on "${device}" is online ` +
          `(${ctx.paths.dir}); Ctrl-C stops it`,
      );
      await stopped;
    } finally {
      agent.interruptWaits();
      await removeControlAddress(ctx.paths);
      await server?.close();
      warn(ctx, await agent.finish());
    }
    ctx.io.err("meowsync agent: stopped; everything is saved");
  } finally {
    lock.release();
  }
}
