/**
 * Pairing and invitations through a relay mailbox, end to end encrypted
 * (SECURITY.md, "Pairing and invitations"): the steps each side takes over
 * the mailbox, on the pure protocol of {@linkcode ./pairing.ts}.
 *
 * - **Link form**: the initiator allocates a mailbox with its card sealed
 *   under a key from the link's secret; the joiner claims the mailbox (no
 *   one else can read it after), opens the card and answers it to the
 *   initiator's queue with a MAC only a holder of the link can make.
 * - **Code form**: the initiator allocates a mailbox and posts its CPace
 *   share; the joiner claims it and posts its share with a confirmation; the
 *   initiator checks it and only then posts its own confirmation and the
 *   card sealed under the exchange's key; the joiner checks that and answers
 *   as above. A failed confirmation kills the mailbox on both sides.
 *
 * Either way the mailbox is single use (claimed by the first joiner, closed
 * once answered), and both sides derive the same six-digit safety code.
 *
 * @module
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  type ContactCard,
  MailboxAction,
  type MailboxAnswer,
  type MailboxRequestSchema,
  type ServerCard,
} from "../proto/mod.ts";
import { equalBytes, type Random } from "../crypto/mod.ts";
import { BadCiphertext, Malformed, NoSuchCode, PairingInterfered } from "./errors.ts";
import * as protocol from "./pairing.ts";
import {
  answerMac,
  drawPairingPassword,
  drawPairingSecret,
  formatPairingCode,
  formatPairingLink,
  type PairingKeys,
  pairingLinkKeys,
  type PairingLinkKind,
  parsePairingCode,
  parsePairingLink,
  safetyCode,
} from "./pairing.ts";

/**
 * The protocol steps a pairing runs: the real ones of `kernel/pairing.ts` by
 * default. Tests plant a weakened protocol here (a card in clear, a skipped
 * confirmation) to show that the attacks it lets through are caught.
 */
export interface PairingProtocol {
  sealCardPost: typeof protocol.sealCardPost;
  openCardPost: typeof protocol.openCardPost;
  codeInitiatorStart: typeof protocol.codeInitiatorStart;
  codeInitiatorConfirm: typeof protocol.codeInitiatorConfirm;
  codeResponderStart: typeof protocol.codeResponderStart;
  codeResponderFinish: typeof protocol.codeResponderFinish;
  verifyAnswerMac: typeof protocol.verifyAnswerMac;
}

/** The protocol as specified (PROTOCOL.md, "Pairing and invitations (end to end)"). */
export const PAIRING_PROTOCOL: Readonly<PairingProtocol> = Object.freeze({
  sealCardPost: protocol.sealCardPost,
  openCardPost: protocol.openCardPost,
  codeInitiatorStart: protocol.codeInitiatorStart,
  codeInitiatorConfirm: protocol.codeInitiatorConfirm,
  codeResponderStart: protocol.codeResponderStart,
  codeResponderFinish: protocol.codeResponderFinish,
  verifyAnswerMac: protocol.verifyAnswerMac,
});

/** Bytes of a mailbox member id. */
const SIDE_BYTES = 16;
/** Longest single wait for the other side's post, in ms (the relay may grant less). */
const MAILBOX_WAIT_MS_MAX = 25_000;
/** Between two short polls of a mailbox (a device that does not long-poll), in ms. */
const MAILBOX_SHORT_POLL_MS = 250;

/** How a pairing is handed over: a link (QR code or paste) or a short code typed by hand. */
export type PairingForm = "link" | "code";

/** What the mailbox steps need of the kernel. */
export interface MailboxPorts {
  random: Random;
  now(): number;
  /** Whether to wait for a post in long polls (else short polls, a moment apart). */
  longPoll: boolean;
  /** Sleeps on the kernel's clock. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** The protocol steps ({@linkcode PAIRING_PROTOCOL}). */
  protocol: PairingProtocol;
  /** Told each secret a pairing draws (link secret, password), before anything leaves. */
  secret(bytes: Uint8Array, what: string): void;
  /**
   * One mailbox step at `server`; resolves with the relay's answer.
   * @throws {NoSuchCode} when the relay has no such mailbox for this side
   */
  mailbox(
    server: ServerCard,
    request: MessageInitShape<typeof MailboxRequestSchema>,
    options?: { timeoutMs?: number; signal?: AbortSignal },
  ): Promise<MailboxAnswer>;
}

/** What the initiator keeps to check the answer and show the safety code. */
export interface PendingPairing {
  keys: PairingKeys;
  /** The post that carried the card (the transcript's first half). */
  cardPost: Uint8Array;
}

/** The initiator's part once the mailbox is open. */
export interface OfferStart {
  nameplate: string;
  expiresAt: number;
  /** Link form: the link. */
  link: string;
  /** Code form: the code to type. */
  code: string;
  /** Link form: known at once; code form: once the exchange confirmed (see `exchange`). */
  pending?: PendingPairing;
  /**
   * Code form: runs the exchange to its end. `commit` stores the keys before
   * the card leaves, so the answer can be checked whenever it arrives.
   */
  exchange?: (
    commit: (pending: PendingPairing) => Promise<void>,
    signal?: AbortSignal,
  ) => Promise<void>;
}

/** Initiator, step 1: opens a mailbox on `server` for `card`. */
export async function startOffer(
  ports: MailboxPorts,
  options: {
    server: ServerCard;
    form: PairingForm;
    kind: PairingLinkKind;
    card: ContactCard;
    cardBytes: Uint8Array;
    expiresMs?: number;
  },
): Promise<OfferStart> {
  const { server, random } = { server: options.server, random: ports.random };
  const side = random.bytes(SIDE_BYTES);
  if (options.form === "link") {
    const secret = drawPairingSecret(random);
    ports.secret(secret, "pairing link secret");
    const keys = pairingLinkKeys({ kind: options.kind, secret });
    const cardPost = ports.protocol.sealCardPost(options.cardBytes, keys, random);
    const answer = await ports.mailbox(server, {
      action: MailboxAction.ALLOCATE,
      side,
      post: cardPost,
      expiresMs: options.expiresMs ?? 0,
    });
    const link = formatPairingLink({
      kind: options.kind,
      relayUrl: server.url,
      relayUid: server.uid,
      nameplate: answer.nameplate,
      secret,
    });
    return {
      nameplate: answer.nameplate,
      expiresAt: answer.expiresAt,
      link,
      code: "",
      pending: { keys, cardPost },
      exchange: (_commit, signal) =>
        watchJoiner(
          ports,
          { server, nameplate: answer.nameplate, side, after: 1 },
          answer.expiresAt,
          signal,
        ),
    };
  }
  const password = drawPairingPassword(random);
  ports.secret(new TextEncoder().encode(password), "pairing code password");
  const allocated = await ports.mailbox(server, {
    action: MailboxAction.ALLOCATE,
    side,
    expiresMs: options.expiresMs ?? 0,
  });
  const nameplate = allocated.nameplate;
  const session = { password, relayUid: server.uid, nameplate };
  const start = ports.protocol.codeInitiatorStart({ ...session, random });
  await ports.mailbox(server, {
    action: MailboxAction.EXCHANGE,
    nameplate,
    side,
    post: start.post,
  });
  const exchange = async (
    commit: (pending: PendingPairing) => Promise<void>,
    signal?: AbortSignal,
  ) => {
    try {
      // A1 is post 0; the joiner's B1 is the first post of the other side.
      const b1 = await waitPost(ports, { server, nameplate, side, after: 1 }, {
        expiresAt: allocated.expiresAt,
        signal,
      });
      const confirmed = ports.protocol.codeInitiatorConfirm(
        start.state,
        b1.body,
        options.cardBytes,
        random,
      );
      await commit({ keys: confirmed.keys, cardPost: confirmed.post });
      await ports.mailbox(server, {
        action: MailboxAction.EXCHANGE,
        nameplate,
        side,
        post: confirmed.post,
      });
      await watchJoiner(
        ports,
        { server, nameplate, side, after: b1.index + 1 },
        allocated.expiresAt,
        signal,
      );
    } catch (e) {
      if (e instanceof PairingInterfered) await closeQuietly(ports, server, nameplate, side);
      throw e;
    }
  };
  return {
    nameplate,
    expiresAt: allocated.expiresAt,
    link: "",
    code: formatPairingCode(nameplate, password),
    exchange,
  };
}

/** What the joiner holds once the initiator's card is open. */
export interface Joined {
  server: ServerCard;
  kind: PairingLinkKind | "code";
  cardBytes: Uint8Array;
  keys: PairingKeys;
  cardPost: Uint8Array;
  /** Closes the mailbox: the exchange is done (call once the answer is committed). */
  close(): Promise<void>;
}

/** What the joiner was given: a link, or a code and the relay it is on. */
export type JoinInput = { link: string } | { code: string; server: ServerCard };

/**
 * Joiner, steps 1 and 2: claims the mailbox and opens the initiator's card.
 * `resolveServer` turns a link's relay URL into the relay's card.
 *
 * @throws {NoSuchCode} when the mailbox is unknown, used, expired or killed
 * @throws {PairingInterfered} when a confirmation fails or the card does not open
 * @throws {Malformed} for a malformed link or code, or a link whose relay is not the one reached
 */
export async function joinOffer(
  ports: MailboxPorts,
  input: JoinInput,
  options: {
    resolveServer: (url: string) => Promise<ServerCard>;
    signal?: AbortSignal;
  },
): Promise<Joined> {
  const side = ports.random.bytes(SIDE_BYTES);
  if ("link" in input) {
    const link = parsePairingLink(input.link);
    const server = await options.resolveServer(link.relayUrl);
    if (server.uid !== link.relayUid) {
      throw new Malformed(
        `Cannot use this link: it names relay ${link.relayUid}, but ${link.relayUrl} is relay ${server.uid}`,
      );
    }
    const keys = pairingLinkKeys(link);
    const answer = await ports.mailbox(server, {
      action: MailboxAction.EXCHANGE,
      nameplate: link.nameplate,
      side,
      after: 0,
    });
    const cardPost = answer.posts[0]?.body;
    if (!cardPost) throw new PairingInterfered();
    let cardBytes: Uint8Array;
    try {
      cardBytes = ports.protocol.openCardPost(cardPost, keys);
    } catch (e) {
      if (e instanceof BadCiphertext || e instanceof Malformed) {
        await abandon(ports, server, link.nameplate, side);
        throw new PairingInterfered(undefined, { cause: e });
      }
      throw e;
    }
    return {
      server,
      kind: link.kind,
      cardBytes,
      keys,
      cardPost,
      close: () => closeQuietly(ports, server, link.nameplate, side),
    };
  }
  const { nameplate, password } = parsePairingCode(input.code);
  const server = input.server;
  const session = { password, relayUid: server.uid, nameplate };
  const a1 = await waitPost(ports, { server, nameplate, side, after: 0 }, {
    expiresAt: Number.POSITIVE_INFINITY,
    signal: options.signal,
  });
  let started;
  try {
    started = ports.protocol.codeResponderStart({ ...session, random: ports.random, a1: a1.body });
  } catch (e) {
    await closeQuietly(ports, server, nameplate, side);
    if (e instanceof Malformed) throw new PairingInterfered(undefined, { cause: e });
    throw e;
  }
  await ports.mailbox(server, {
    action: MailboxAction.EXCHANGE,
    nameplate,
    side,
    post: started.post,
  });
  let a2;
  try {
    a2 = await waitPost(ports, { server, nameplate, side, after: a1.index + 1 }, {
      expiresAt: Number.POSITIVE_INFINITY,
      signal: options.signal,
      skip: [a1.body],
    });
  } catch (e) {
    // The initiator killed the mailbox: its check of our confirmation failed.
    if (e instanceof NoSuchCode) throw new PairingInterfered(undefined, { cause: e });
    throw e;
  }
  let finished;
  try {
    finished = ports.protocol.codeResponderFinish(started.state, a2.body);
  } catch (e) {
    await abandon(ports, server, nameplate, side);
    throw e;
  }
  return {
    server,
    kind: "code",
    cardBytes: finished.cardBytes,
    keys: finished.keys,
    cardPost: a2.body,
    close: () => closeQuietly(ports, server, nameplate, side),
  };
}

/** The answer MAC and the safety code of an answer card. */
export function answerProof(
  pending: PendingPairing,
  answerCard: Uint8Array,
): { mac: Uint8Array; safetyCode: string } {
  const transcript = { cardPost: pending.cardPost, answerCard };
  return {
    mac: answerMac(pending.keys, transcript),
    safetyCode: safetyCode(pending.keys, transcript),
  };
}

/** Waits for the other side's first post at index `after` or later, with long polls. */
async function waitPost(
  ports: MailboxPorts,
  at: { server: ServerCard; nameplate: string; side: Uint8Array; after: number },
  options: { expiresAt: number; signal?: AbortSignal; skip?: Uint8Array[] },
): Promise<{ index: number; body: Uint8Array }> {
  for (;;) {
    if (options.signal?.aborted) throw options.signal.reason;
    const waitMs = ports.longPoll
      ? Math.max(1, Math.min(options.expiresAt - ports.now(), MAILBOX_WAIT_MS_MAX))
      : 0;
    const answer = await ports.mailbox(at.server, {
      action: MailboxAction.EXCHANGE,
      nameplate: at.nameplate,
      side: at.side,
      after: at.after,
    }, { timeoutMs: waitMs, signal: options.signal });
    // A request delivered twice posts twice: a copy of a post already taken is not the next one.
    const post = answer.posts.find((p) =>
      p.index >= at.after && !(options.skip ?? []).some((seen) => equalBytes(seen, p.body))
    );
    if (post) return { index: post.index, body: post.body };
    if (ports.now() >= Math.min(options.expiresAt, answer.expiresAt)) {
      throw new NoSuchCode();
    }
    if (!ports.longPoll) await ports.sleep(MAILBOX_SHORT_POLL_MS, options.signal);
  }
}

/**
 * The joiner's "I give up" post (version 1, type 0xff), before it closes the
 * mailbox: the initiator then knows the pairing failed rather than waiting for
 * an answer that will not come. It says nothing the closing does not.
 */
const ABANDON_POST = new Uint8Array([1, 0xff]);

async function abandon(
  ports: MailboxPorts,
  server: ServerCard,
  nameplate: string,
  side: Uint8Array,
): Promise<void> {
  try {
    await ports.mailbox(server, {
      action: MailboxAction.EXCHANGE,
      nameplate,
      side,
      post: ABANDON_POST,
    });
  } catch {
    // Gone already: the initiator learns of it by the mailbox's absence.
  }
  await closeQuietly(ports, server, nameplate, side);
}

/**
 * The initiator, its part done, watches the mailbox until the joiner closes it
 * (its answer is on the way) or says it gave up (the pairing failed on its
 * side: a card that did not open, a confirmation that failed).
 *
 * @throws {PairingInterfered} when the joiner gave up
 */
async function watchJoiner(
  ports: MailboxPorts,
  at: { server: ServerCard; nameplate: string; side: Uint8Array; after: number },
  expiresAt: number,
  signal?: AbortSignal,
): Promise<void> {
  let post;
  try {
    post = await waitPost(ports, at, { expiresAt, signal });
  } catch (e) {
    if (e instanceof NoSuchCode) return; // closed, or expired: the answer, if any, comes by the queue
    throw e;
  }
  if (equalBytes(post.body, ABANDON_POST)) {
    await closeQuietly(ports, at.server, at.nameplate, at.side);
    throw new PairingInterfered();
  }
}

async function closeQuietly(
  ports: MailboxPorts,
  server: ServerCard,
  nameplate: string,
  side: Uint8Array,
): Promise<void> {
  try {
    await ports.mailbox(server, { action: MailboxAction.CLOSE, nameplate, side });
  } catch {
    // Gone already (closed by the other side, expired): nothing left to close.
  }
}
