/**
 * The pairing commands: `pair start` and `pair join` (a sibling device),
 * `invite` and `accept` (a contact), by short code or by `meow:` link.
 *
 * @module
 */
import encodeQR from "qr";
import { DEVICE_SYNC_API } from "../../plugins/device_sync/mod.ts";
import { Agent } from "../agent.ts";
import { AgentError, EXIT } from "../errors.ts";
import type { StoreKind } from "../home.ts";
import { fetchServerCard, pairingErrors, pairingInput } from "../pairing.ts";
import { type Ctx, emit, type Session, warn, withProgress, withSession } from "../session.ts";
import { type TicketView, time } from "../views.ts";
import { createHomeFiles, hostName, withNewHome } from "./new_home.ts";

/** The value `pair start --history` has when it is not given. */
export const HISTORY_OPTION_DEFAULT = "30d";

/** `pair start`: a code or link for a new device, then (unless --no-wait) the wait for it. */
export async function cmdPairStart(
  ctx: Ctx,
  o: { link?: boolean; out?: string; wait: boolean; timeout: number; history: string },
): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    if (!o.wait && !session.remote && o.history !== HISTORY_OPTION_DEFAULT) {
      // The window lives in the memory of the process that offered the pairing: a later `run`
      // that completes it would send the default window instead.
      throw new AgentError(
        "--history with --no-wait needs `run` running on this home: the process that completes " +
          "the pairing sends the history",
        EXIT.usage,
      );
    }
    const ticket = await session.call("pairStart", {
      form: ticketForm(o, session),
      history: o.history,
    });
    await showTicket(
      ctx,
      ticket,
      o.out,
      (given) =>
        agentHint(
          "on the new device",
          "<new home>",
          `pair join ${given}${ticket.form === "code" ? ` --server ${ticket.server}` : ""}`,
        ),
    );
    if (!o.wait) return;
    const peer = await withProgress(
      ctx,
      "the new device to join",
      session.call("waitPeer", {
        peerUid: ticket.peerUid,
        timeoutMs: o.timeout * 1000,
      }),
    );
    emit(ctx, { paired: peer }, [
      `paired with device "${peer.name}"`,
      `safety code: ${peer.safetyCode} (the new device shows the same)`,
    ]);
  });
}

/**
 * The form `pair start` or `invite` offers: a link with --link or --out,
 * else a code, whose exchange runs in the process that printed it (so
 * --no-wait with a code needs `run` to carry it on).
 */
function ticketForm(
  o: { link?: boolean; out?: string; wait: boolean },
  session: Session,
): "link" | "code" {
  if (o.link || o.out !== undefined) return "link";
  if (!o.wait && !session.remote) {
    throw new AgentError(
      "--no-wait needs --link or --out (or `run` running on this home): a code works only " +
        "while the command that printed it runs",
      EXIT.usage,
    );
  }
  return "code";
}

/**
 * A hint to copy: `rest` run by the agent on `home`, written for `./dev` (a fresh checkout) and for
 * `deno task` (Deno on the PATH), both from the checkout's root.
 */
function agentHint(where: string, home: string, rest: string): string {
  return `${where}: ./dev task agent --home ${home} ${rest}\n` +
    `  (or, with Deno on your PATH: deno task agent --home ${home} ${rest})`;
}

async function showTicket(
  ctx: Ctx,
  ticket: TicketView,
  out: string | undefined,
  hint: (given: string) => string,
): Promise<void> {
  const expires = `expires ${time(ticket.expiresAt)}, single use`;
  if (out !== undefined) {
    await Deno.writeTextFile(out, ticket.link + "\n", { mode: 0o600 });
    emit(
      ctx,
      { peerUid: ticket.peerUid, file: out, expiresAt: ticket.expiresAt },
      `link written to ${out} (${expires})`,
    );
    if (!ctx.json) ctx.io.err(hint(`--in ${out}`));
    return;
  }
  if (ticket.form === "link") {
    emit(ctx, { link: ticket.link, peerUid: ticket.peerUid, expiresAt: ticket.expiresAt }, [
      `link: ${ticket.link}`,
    ]);
    if (!ctx.json) {
      ctx.io.err(encodeQR(ticket.link, "ascii", { ecc: "low" }));
      ctx.io.err(`(${expires}) ${hint(`'${ticket.link}'`)}`);
    }
    return;
  }
  emit(ctx, {
    code: ticket.code,
    peerUid: ticket.peerUid,
    server: ticket.server,
    expiresAt: ticket.expiresAt,
  }, [`code: ${ticket.code}`]);
  if (!ctx.json) ctx.io.err(`(${expires}) ${hint(ticket.code)}`);
}

/** `pair join`: a new home that joins the devices of the code's or link's owner. */
export async function cmdPairJoin(
  ctx: Ctx,
  given: string | undefined,
  o: {
    server?: string;
    in?: string;
    device?: string;
    store: StoreKind;
    timeout: number;
    scryptLogN: number;
  },
): Promise<void> {
  if ((given === undefined) === (o.in === undefined)) {
    throw new AgentError("give either a code, a link or --in <file>", EXIT.usage);
  }
  const text = given ?? await readIn(o.in!);
  const input = await pairingInput(
    text,
    async () => o.server === undefined ? undefined : await fetchServerCard(ctx.transport, o.server),
  );
  await withNewHome(ctx, async (keep) => {
    const key = await createHomeFiles(ctx, o.scryptLogN, o.store);
    const deviceName = o.device ?? hostName();
    const agent = await Agent.open(ctx.paths, key, {
      transport: ctx.transport,
      modules: ctx.modules,
    });
    try {
      const joined = await pairingErrors(
        () =>
          agent.kernel.api(DEVICE_SYNC_API).joinDevices(input, {
            deviceName,
            signal: ctx.interrupt,
          }),
        "server" in input ? input.server.url : "",
      );
      keep(); // joined: the answer completes it, now or with a later command
      await withProgress(
        ctx,
        "the other device to answer",
        agent.waitFor(() => agent.kernel.identity().uid !== "", {
          timeoutMs: o.timeout * 1000,
          signal: ctx.interrupt,
        }),
      );
      // The contacts and the other siblings come right behind the identity.
      await agent.kernel.stop();
      warn(ctx, await agent.catchUp());
      const identity = agent.kernel.identity();
      const devices = agent.kernel.devices().map((d) => d.name);
      emit(
        ctx,
        {
          nickname: identity.profile?.nickname ?? "",
          device: deviceName,
          devices,
          contacts: agent.kernel.peers().length,
          safetyCode: joined.safetyCode,
        },
        [
          `joined ${identity.profile?.nickname ?? ""}'s devices as "${deviceName}" (with ${
            devices.join(", ")
          })`,
          `safety code: ${joined.safetyCode} (the other device shows the same)`,
        ],
      );
    } finally {
      warn(ctx, await agent.finish());
    }
  });
}

async function readIn(path: string): Promise<string> {
  try {
    return await Deno.readTextFile(path);
  } catch (e) {
    throw new AgentError(`cannot read ${path}: ${(e as Error).message}`, EXIT.badCode);
  }
}

/** `invite`: a code or link for a contact, then (unless --no-wait) the wait for their answer. */
export async function cmdInvite(
  ctx: Ctx,
  o: { link?: boolean; out?: string; wait: boolean; timeout: number },
): Promise<void> {
  await withSession(ctx, { catchUp: true }, async (session) => {
    const ticket = await session.call("invite", { form: ticketForm(o, session) });
    await showTicket(
      ctx,
      ticket,
      o.out,
      (given) =>
        agentHint(
          "on your contact's device",
          "<their home>",
          `accept ${given}${ticket.form === "code" ? ` --server ${ticket.server}` : ""}`,
        ),
    );
    if (!o.wait) return;
    const peer = await withProgress(
      ctx,
      "your contact to accept",
      session.call("waitPeer", {
        peerUid: ticket.peerUid,
        timeoutMs: o.timeout * 1000,
      }),
    );
    emit(ctx, { contact: peer }, [
      `${peer.name} accepted: you can chat now`,
      `safety code: ${peer.safetyCode} (they see the same)`,
    ]);
  });
}

/** `accept`: answers a contact's invitation. */
export async function cmdAccept(
  ctx: Ctx,
  given: string | undefined,
  o: { in?: string; server?: string; name?: string },
): Promise<void> {
  if ((given === undefined) === (o.in === undefined)) {
    throw new AgentError("give either a code, a link or --in <file>", EXIT.usage);
  }
  const invitation = given ?? await readIn(o.in!);
  await withSession(ctx, { catchUp: true }, async (session) => {
    const contact = await session.call("accept", {
      invitation,
      server: o.server,
      name: o.name,
    });
    emit(ctx, { contact }, [
      `added contact "${contact.name}": you can chat now`,
      `safety code: ${contact.safetyCode} (they see the same)`,
    ]);
  });
}
