/**
 * The ledger of the relay soak (soak_http_test.ts): what every client sent, what the relay
 * answered, what each device received, and the checker that turns it into violations.
 *
 * Message identity is what a receiver sees inside the payload: the sender's message id (the
 * kernel's message uuid). A relay copy is one delivery uuid. The checker's rules:
 *
 * - **No loss**: every message the relay answered as stored was processed by its receiver.
 * - **None delivered twice to one device**: (i) a delivery uuid never reaches its device again
 *   after the relay answered the device's ack of it; (ii) a message reaches its device under at
 *   most one delivery uuid more than the store attempts for it whose answer the sender never read
 *   or that the relay refused BUSY because its backend failed (only such an attempt may leave a
 *   second stored copy, which the receiver drops as a repeat by message id, as the kernel does);
 *   (iii) the device processes each message id once.
 * - **Every client answered or told to retry**: no request hung past its bound, got a malformed
 *   answer, an HTTP status other than 200 or 503, or an error the client cannot retry on.
 * - Every message was delivered only to its destination, and every one was stored in the end.
 *
 * @module
 */

/** One message a client sent, as the ledger follows it. */
export interface SentMessage {
  /** The sender's device. */
  from: string;
  /** The receiver's device. */
  to: string;
  /** Store attempts made (each its own request). */
  attempts: number;
  /**
   * Store attempts whose answer the sender never read (crashed, hung up, connection lost), or
   * that the relay refused because its backend failed: it cannot tell what the backend applied.
   */
  unread: number;
  /** Whether an answer said it was stored. */
  stored: boolean;
}

/** One message a device found in an answer. */
export interface Delivery {
  /** The device that pulled it. */
  device: string;
  /** Its relay delivery uuid. */
  deliveryUuid: string;
  /** The message id in its payload. */
  messageId: string;
  /** Whether the relay had answered this device's ack of `deliveryUuid` before. */
  afterAck: boolean;
}

/** How one request ended. */
export type OutcomeKind =
  | "answered"
  | "busy"
  | "network"
  | "unavailable"
  | "crashed"
  | "hung-up"
  | "bad";

/** Everything the soak records. */
export class SoakLedger {
  /** Message id → what happened to it. */
  readonly messages: Map<string, SentMessage> = new Map();
  /** Every message found in an answer, in order. */
  readonly deliveries: Delivery[] = [];
  /** Device → message id → how many times the device processed it (not dropped as a repeat). */
  readonly processed: Map<string, Map<string, number>> = new Map();
  /** Requests by how they ended. */
  readonly outcomes: Record<OutcomeKind, number> = {
    answered: 0,
    busy: 0,
    network: 0,
    unavailable: 0,
    crashed: 0,
    "hung-up": 0,
    bad: 0,
  };
  /** What each bad outcome was. */
  readonly bad: string[] = [];
  /** Copies a device dropped as repeats (its message id was processed before). */
  repeats = 0;

  /** Records a request's end; a `bad` one with why. */
  outcome(kind: OutcomeKind, why = ""): void {
    this.outcomes[kind]++;
    if (kind === "bad") this.bad.push(why);
  }

  /** Records that `device` processed `messageId` (not a repeat). */
  process(device: string, messageId: string): void {
    const seen = this.processed.get(device) ?? new Map<string, number>();
    seen.set(messageId, (seen.get(messageId) ?? 0) + 1);
    this.processed.set(device, seen);
  }

  /** How many requests ended, however they ended. */
  requests(): number {
    return Object.values(this.outcomes).reduce((a, b) => a + b, 0);
  }
}

/** Every broken rule of the module doc in `ledger`, one line each; empty when it holds. */
export function soakViolations(ledger: SoakLedger): string[] {
  const violations = ledger.bad.map((why) => `not answered nor told to retry: ${why}`);
  const copies = new Map<string, Set<string>>();
  for (const d of ledger.deliveries) {
    const sent = ledger.messages.get(d.messageId);
    if (!sent) {
      violations.push(`${d.device} got ${d.messageId}, which nobody sent`);
      continue;
    }
    if (sent.to !== d.device) {
      violations.push(`${d.device} got ${d.messageId}, which was for ${sent.to}`);
    }
    if (d.afterAck) {
      violations.push(`${d.device} got ${d.messageId} (${d.deliveryUuid}) again after its ack`);
    }
    const uuids = copies.get(d.messageId) ?? new Set<string>();
    uuids.add(d.deliveryUuid);
    copies.set(d.messageId, uuids);
  }
  for (const [id, sent] of ledger.messages) {
    if (!sent.stored) violations.push(`${id} from ${sent.from} was never stored`);
    const count = ledger.processed.get(sent.to)?.get(id) ?? 0;
    if (sent.stored && count === 0) violations.push(`${id} was stored but ${sent.to} never got it`);
    if (count > 1) violations.push(`${sent.to} processed ${id} ${count} times`);
    const stored = copies.get(id)?.size ?? 0;
    if (stored > 1 + sent.unread) {
      violations.push(
        `${id} reached ${sent.to} as ${stored} copies after ${sent.unread} unread store answers`,
      );
    }
  }
  return violations;
}
