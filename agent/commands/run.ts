/**
 * The commands of a running agent: `run` (stay online, serve the other
 * commands through the control endpoint) and `stop`.
 *
 * @module
 */
import { Agent, type RelayChange } from "../agent.ts";
import { serveControl } from "../control.ts";
import { AgentError, EXIT } from "../errors.ts";
import { HomeLock, readConfig, readControlAddress, removeControlAddress } from "../home.ts";
import { type Ctx, emit, toAgentError, unlock, warn, withSession } from "../session.ts";
import { type IncomingView, messageLine, requestsWord, time } from "../views.ts";

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
    // Several agents may share one terminal: every line names user and device.
    let [user, device] = ["", ""];
    const who = () => `${user}/${device}`;
    const troubled = new Set<string>(); // relay/request pairs reported as in trouble
    const agent = await Agent.open(ctx.paths, key, {
      transport: ctx.transport,
      modules: ctx.modules,
      onMessage: (m: IncomingView) => {
        if (ctx.json) ctx.io.out(JSON.stringify({ user, device, ...m }));
        else ctx.io.out(`[${who()}] ${messageLine(m.contact, m, { state: false })}`);
      },
      log: (level, line) => {
        if (level === "error" || ctx.io.env("MEOW_DEBUG")) ctx.io.err(`${level} ${line}`);
      },
      onRelay: (change) => {
        const line = relayLine(change, troubled, Date.now());
        if (line === undefined) return;
        if (ctx.json) ctx.io.err(JSON.stringify({ user, device, ...change }));
        else ctx.io.err(`[${who()}] ${line}`);
      },
    });
    let server: { close(): Promise<void> } | undefined;
    try {
      if (!agent.kernel.hasIdentity()) {
        throw new AgentError(`no identity in ${ctx.paths.dir} yet`, EXIT.noIdentity);
      }
      const identity = agent.kernel.identity();
      [user, device] = [identity.profile?.nickname || "(joining)", identity.deviceName];
      agent.serving = true;
      agent.goOnline();
      const stopped = new Promise<void>((resolve) => {
        agent.onStopRequest(resolve);
        if (ctx.interrupt.aborted) resolve();
        ctx.interrupt.addEventListener("abort", () => resolve(), { once: true });
      });
      server = await serveControl(agent, ctx.paths, { toError: toAgentError });
      ctx.io.err(
        `meowsync agent: ${who()} is online (${ctx.paths.dir}); stop it with Ctrl-C, SIGTERM or ` +
          `\`stop --home ${ctx.paths.dir}\``,
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

/**
 * What `run` prints when a relay's treatment of one kind of request changes: trouble when it
 * begins, "reachable again" when it ends; undefined for a first "ok", which is no news.
 */
export function relayLine(
  change: RelayChange,
  troubled: Set<string>,
  nowMs: number,
): string | undefined {
  const key = `${change.relay}/${change.request}`;
  const what = requestsWord(change.request);
  switch (change.state) {
    case "ok":
      if (!troubled.delete(key)) return undefined;
      return `relay ${change.relay}: ${what} go through again`;
    case "unreachable":
      troubled.add(key);
      return `relay ${change.relay}: unreachable since ${
        time(nowMs)
      } (${what}): ${change.detail}; ` +
        "messages wait in the outbox and go out when it is back";
    case "refused":
      troubled.add(key);
      return `relay ${change.relay}: ${what} refused since ${time(nowMs)}: ${change.detail}`;
    case "dropped":
      return `relay ${change.relay}: a message it will never take failed: ${change.detail}`;
  }
}
