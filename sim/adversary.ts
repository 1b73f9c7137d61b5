/**
 * A hostile relay for the simulator (`relay: { adversary: [...] }`): the
 * relay's storage, wrapped, acting on pairing mailboxes the way a relay
 * operator could (SECURITY.md, "Whom we defend against").
 *
 * - `guess_pairing`: it answers pairings itself before the real joiner: it
 *   claims a link's mailbox (it cannot open the card), and answers a short
 *   code's first post with a guessed password; should the initiator ever send
 *   its card to such a guess, it opens it and answers it with keys of its own.
 * - `swap_mailbox`: it hands a joiner a post of its own making in place of
 *   the initiator's (a card sealed under another secret, a CPace share for a
 *   guessed password).
 *
 * Each mailbox is attacked or left alone by a draw from the adversary's own
 * seeded stream (`relay: { share }`, half by default), so a run has pairings
 * of both kinds. Every key it makes is
 * recorded: `pairings_authentic` checks that no device ends up holding one.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { encode } from "../proto/mod.ts";
import { PackedUserMessageSchema } from "../proto/mod.ts";
import { randomCrockford, randomFloat, randomUuid, type SeededRandom } from "../crypto/mod.ts";
import { answerInvitation, createInvitation, decodeCard } from "../kernel/mod.ts";
import {
  answerMac,
  codeInitiatorStart,
  codeResponderFinish,
  codeResponderStart,
  type CodeResponderState,
  pairingLinkKeys,
  sealCardPost,
} from "../kernel/mod.ts";
import { cardBytes } from "../kernel/mod.ts";
import type { Backend, MailboxPostRecord } from "../server/mod.ts";

/** What a hostile relay may do. */
export type AdversaryKind = "guess_pairing" | "swap_mailbox";

/** The adversaries a scenario may name. */
export const ADVERSARY_KINDS: readonly AdversaryKind[] = ["guess_pairing", "swap_mailbox"];

/** Bytes of a mailbox member id. */
const SIDE_BYTES = 16;
/** Post types of the pairing protocol (kernel/pairing.ts: version 1, then the type). */
const POST_CARD = 1;
const POST_CODE_A1 = 2;
const POST_CODE_A2 = 4;
/** As many posts as a step may take: the adversary does not mind the relay's limit. */
const POSTS_MAX = 1_000;

/** What the adversary tells the run. */
export interface AdversaryOptions {
  kinds: readonly AdversaryKind[];
  /** Share of mailboxes attacked (each drawn once). */
  share: number;
  random: SeededRandom;
  /** The relay's uid (the short code's CPace channel names it). */
  relayUid: () => string;
  /** Every public key the adversary made (hex), for `pairings_authentic`. */
  made: Set<string>;
  /** Relay limits for the answer it stores. */
  retentionMs: number;
  queueLengthMax: number;
  trace: (line: Record<string, unknown>) => void;
}

const hex = (bytes: Uint8Array) =>
  Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");

function isPost(body: Uint8Array | undefined, type: number): boolean {
  return body !== undefined && body.length > 2 && body[0] === 1 && body[1] === type;
}

/** Wraps `inner`: every operation goes to it, the mailbox ones through the adversary. */
export function adversaryBackend(inner: Backend, options: AdversaryOptions): Backend {
  const { random, kinds } = options;
  const guess = kinds.includes("guess_pairing");
  const swap = kinds.includes("swap_mailbox");
  /** Nameplate → whether it is attacked (drawn once, when first seen). */
  const attacked = new Map<string, boolean>();
  /** Nameplate → the adversary's own side and CPace state in it. */
  const joined = new Map<string, { side: Uint8Array; state?: CodeResponderState }>();
  const decide = (nameplate: string) => {
    let yes = attacked.get(nameplate);
    if (yes === undefined) attacked.set(nameplate, yes = randomFloat(random) < options.share);
    return yes;
  };
  const recordCard = (
    card: {
      identityPublicKey: Uint8Array;
      encryptionPublicKey: Uint8Array;
      lookupPublicKey: Uint8Array;
    },
  ) => {
    for (const key of [card.identityPublicKey, card.encryptionPublicKey, card.lookupPublicKey]) {
      options.made.add(hex(key));
    }
  };

  /** guess_pairing on a short code: answer its first post with a guessed password. */
  async function answerA1(nameplate: string, a1: Uint8Array, nowMs: number): Promise<void> {
    const side = random.bytes(SIDE_BYTES);
    const password = randomCrockford(random, 8);
    const started = codeResponderStart({
      password,
      relayUid: options.relayUid(),
      nameplate,
      random,
      a1,
    });
    const step = await inner.stepMailbox(nameplate, {
      side,
      post: started.post,
      after: 0,
      postsMax: POSTS_MAX,
    }, nowMs);
    if (step) {
      joined.set(nameplate, { side, state: started.state });
      options.trace({ kind: "adversary.guess", nameplate });
    }
  }

  /** A card sent to the adversary's guess: open it and answer with keys of its own. */
  async function answerA2(nameplate: string, a2: Uint8Array, nowMs: number): Promise<void> {
    const state = joined.get(nameplate)?.state;
    if (!state) return;
    let finished;
    try {
      finished = codeResponderFinish(state, a2);
    } catch {
      return; // the confirmation held: the guess is worth nothing
    }
    const card = decodeCard(finished.cardBytes);
    await answerCard(
      card,
      nowMs,
      (answerCard) => answerMac(finished.keys, { cardPost: a2, answerCard }),
    );
  }

  /**
   * A card a broken client posted in clear: answer it with keys of its own (a
   * client that checks the answer's MAC refuses it; one that does not pairs
   * with the relay).
   */
  async function answerClearCard(post: Uint8Array, nowMs: number): Promise<void> {
    const card = clearCard(post);
    // Sealed, as it should be: the relay learns nothing.
    if (card) await answerCard(card, nowMs, () => new Uint8Array(32));
  }

  /** The card in `post` when a broken client posted it in clear. */
  function clearCard(post: Uint8Array): ReturnType<typeof decodeCard> | undefined {
    try {
      return decodeCard(post);
    } catch {
      return undefined;
    }
  }

  /** Answers `card` with a fresh peer of the adversary's, stored straight in the initiator's queue. */
  async function answerCard(
    card: ReturnType<typeof decodeCard>,
    nowMs: number,
    mac: (answerCard: Uint8Array) => Uint8Array,
  ): Promise<void> {
    const { peer, answer } = await answerInvitation(card, {
      random,
      now: nowMs,
      name: "mallory",
      servers: card.pullServers,
      type: card.type,
      mac,
    });
    options.made.add(hex(peer.myIdentity!.publicKey));
    options.made.add(hex(peer.myEncryption!.publicKey));
    options.made.add(hex(peer.myLookup!.publicKey));
    const deliveryUuid = randomUuid(random);
    answer.serverDeliveryUuid = deliveryUuid;
    answer.serverReceivedMs = nowMs;
    await inner.storeMessages([{
      queue: answer.destination,
      deliveryUuid,
      receivedMs: nowMs,
      bytes: encode(PackedUserMessageSchema, create(PackedUserMessageSchema, answer)),
    }], { nowMs, retentionMs: options.retentionMs, queueLengthMax: options.queueLengthMax });
    options.trace({ kind: "adversary.answer" });
  }

  /** swap_mailbox: a post of the adversary's making instead of the initiator's. */
  function forged(nameplate: string, post: MailboxPostRecord): MailboxPostRecord {
    const clear = clearCard(post.body);
    if (clear) {
      // A card a broken client posted in clear: hand over one of the relay's, in clear too.
      const { card } = createInvitation({
        random,
        now: 0,
        name: clear.name,
        servers: clear.pullServers,
        type: clear.type,
      });
      recordCard(card);
      return { ...post, body: cardBytes(card) };
    }
    if (isPost(post.body, POST_CARD)) {
      const { card } = createInvitation({ random, now: 0, name: "mallory", servers: [] });
      recordCard(card);
      const keys = pairingLinkKeys({ kind: "invite", secret: random.bytes(32) });
      return { ...post, body: sealCardPost(cardBytes(card), keys, random) };
    }
    if (isPost(post.body, POST_CODE_A1)) {
      const start = codeInitiatorStart({
        password: randomCrockford(random, 8),
        relayUid: options.relayUid(),
        nameplate,
        random,
      });
      return { ...post, body: start.post };
    }
    return post;
  }

  const createMailbox: Backend["createMailbox"] = async (nameplate, init, nowMs) => {
    const ok = await inner.createMailbox(nameplate, init, nowMs);
    // A mailbox created with a post is a link's (a code's first post comes with its first step).
    if (ok && guess && init.post !== undefined && init.post.length > 0 && decide(nameplate)) {
      // A link's mailbox: claim it before the joiner (the card stays closed to the relay).
      const side = random.bytes(SIDE_BYTES);
      await inner.stepMailbox(nameplate, { side, after: 0, postsMax: POSTS_MAX }, nowMs);
      joined.set(nameplate, { side });
      options.trace({ kind: "adversary.claim", nameplate });
      await answerClearCard(init.post!, nowMs);
    }
    return ok;
  };

  const stepMailbox: Backend["stepMailbox"] = async (nameplate, step, nowMs) => {
    const result = await inner.stepMailbox(nameplate, step, nowMs);
    if (!result) return result;
    if (guess && result.member && !joined.has(nameplate)) {
      if (isPost(step.post, POST_CODE_A1) && decide(nameplate)) {
        await answerA1(nameplate, step.post!, nowMs);
      }
    }
    if (guess && result.member && isPost(step.post, POST_CODE_A2)) {
      await answerA2(nameplate, step.post!, nowMs);
    }
    if (swap && !result.member && result.posts.length > 0 && decide(nameplate)) {
      options.trace({ kind: "adversary.swap", nameplate });
      return { ...result, posts: result.posts.map((p) => forged(nameplate, p)) };
    }
    return result;
  };

  return new Proxy(inner, {
    get(target, property, receiver) {
      if (property === "createMailbox") return createMailbox;
      if (property === "stepMailbox") return stepMailbox;
      const value = Reflect.get(target, property, receiver);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
