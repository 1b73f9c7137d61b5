/**
 * The privacy taps: what the relays see, checked as the run goes. Every byte
 * a relay saw or stored is scanned for the sent texts and secrets
 * (server_blind); what a relay stored is kept for traffic_blind; every byte
 * that leaves a device is scanned for its identity root private key
 * (root_key_private). A tap does nothing for an expectation the run does not
 * check.
 *
 * @module
 */
import { decode } from "../proto/mod.ts";
import { PackedUserMessageSchema } from "../proto/mod.ts";
import type { SimDevice } from "./devices.ts";
import type { Recording } from "./recording.ts";
import { hex } from "./state.ts";

const HEX = hex;

/** What the {@linkcode PrivacyTaps} read and where they write what they find. */
export interface PrivacyTapsOptions {
  /** The expectations this run checks. */
  expects: ReadonlySet<string>;
  /** Where leaks and stored traffic are recorded. */
  recording: Recording;
  /** The world's devices by ref (to read a device's root key). */
  devices: Map<string, SimDevice>;
}

/** Scans what relays see and what leaves devices, for the privacy expectations. */
export class PrivacyTaps {
  readonly #expects: ReadonlySet<string>;
  readonly #recording: Recording;
  readonly #devices: Map<string, SimDevice>;
  #textIndex = new Map<number, { text: string; encoded: Uint8Array }[]>();
  /** First two bytes of every watched text, as a 64 Ki bitmap. */
  #textPairs = new Uint8Array(65536);

  /** Taps over `options.recording`. */
  constructor(options: PrivacyTapsOptions) {
    this.#expects = options.expects;
    this.#recording = options.recording;
    this.#devices = options.devices;
  }

  /** root_key_private: the sending device's root private key must never be in what it sends. */
  leftDevice(ref: string, bytes: Uint8Array, where: string): void {
    if (!this.#expects.has("root_key_private")) return;
    const device = this.#devices.get(ref);
    if (!device) return;
    // The root key never changes on a device: read it once (identity() copies the record).
    if (device.rootKey === undefined && device.kernel?.hasIdentity()) {
      device.rootKey = device.kernel.identity().root?.privateKey ?? null;
    }
    const root = device.rootKey;
    if (root && root.length === 32 && indexOf(bytes, root) >= 0) {
      this.#recording.rootLeaks.push({ device: ref, where });
    }
  }

  /** server_blind: no sent text in any byte a relay saw or stored. */
  relaySaw(relay: string, kind: string, bytes: Uint8Array): void {
    if (kind === "stored" && bytes.length > 0 && this.#expects.has("traffic_blind")) {
      const { destination, payload, signature } = decode(PackedUserMessageSchema, bytes);
      this.#recording.traffic.stored.push({
        relay,
        destination,
        payload,
        signature: HEX(signature),
      });
    }
    if (this.#textIndex.size === 0 || bytes.length < 4) return;
    const pairs = this.#textPairs;
    for (let i = 0; i + 4 <= bytes.length; i++) {
      // Most positions fail on their first two bytes: an array lookup, before any map lookup.
      if (pairs[(bytes[i] << 8) | bytes[i + 1]] === 0) continue;
      const word =
        ((bytes[i] << 24) | (bytes[i + 1] << 16) | (bytes[i + 2] << 8) | bytes[i + 3]) >>> 0;
      const texts = this.#textIndex.get(word);
      if (!texts) continue;
      for (const { text, encoded } of texts) {
        if (indexOf(bytes.subarray(i, i + encoded.length), encoded) === 0) {
          this.#recording.serverLeaks.push({ text, relay });
        }
      }
    }
  }

  /** Registers a sent text for the server_blind scan (texts under 4 bytes match by chance). */
  watchText(text: string): void {
    this.watchBytes(new TextEncoder().encode(text), text);
  }

  /** Registers bytes (a text, a key, a card) the relay must never see, under `label`. */
  watchBytes(encoded: Uint8Array, label: string): void {
    if (!this.#expects.has("server_blind")) return;
    if (encoded.length < 4) return;
    this.#textPairs[(encoded[0] << 8) | encoded[1]] = 1;
    const key = ((encoded[0] << 24) | (encoded[1] << 16) | (encoded[2] << 8) | encoded[3]) >>> 0;
    const list = this.#textIndex.get(key) ?? [];
    if (!list.some((t) => t.text === label)) list.push({ text: label, encoded: encoded.slice() });
    this.#textIndex.set(key, list);
  }
}

/** Index of `needle` in `haystack`, or -1. */
export function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  if (needle.length === 0) return 0;
  const first = needle[0];
  outer: for (
    let i = haystack.indexOf(first);
    i >= 0 && i + needle.length <= haystack.length;
    i = haystack.indexOf(first, i + 1)
  ) {
    for (let j = 1; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}
