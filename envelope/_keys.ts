/**
 * The key schedule both halves of the relay envelope share: one X25519
 * agreement between the request's ephemeral key and the relay's key, then
 * HKDF-SHA-256 into a request key and an answer key.
 *
 * @module
 */
import { concatBytes, hkdfSha256 } from "../crypto/mod.ts";

/** The HKDF info of the envelope keys; a new envelope version gets a new label. */
const ENVELOPE_INFO = new TextEncoder().encode("meowsync/relay-envelope/v2");
/** Length of each envelope key (XChaCha20-Poly1305), in bytes. */
const ENVELOPE_KEY_BYTES = 32;
/** Length of an X25519 public key, in bytes. */
export const PUBLIC_KEY_BYTES = 32;

/** The two keys of one request: the device seals under `requestKey`, the relay under `answerKey`. */
export interface EnvelopeKeys {
  /** Seals the request's ToServerMessage. */
  requestKey: Uint8Array;
  /** Seals the relay's FromServerMessage. */
  answerKey: Uint8Array;
}

/**
 * HKDF-SHA-256(ikm = shared, salt = ephemeral public ‖ relay public, info = the v2 label) split
 * into the request key (first 32 bytes) and the answer key (last 32).
 */
export function envelopeKeys(
  shared: Uint8Array,
  ephemeralPublicKey: Uint8Array,
  relayPublicKey: Uint8Array,
): EnvelopeKeys {
  const salt = concatBytes(ephemeralPublicKey, relayPublicKey);
  const okm = hkdfSha256(shared, { salt, info: ENVELOPE_INFO, length: 2 * ENVELOPE_KEY_BYTES });
  return {
    requestKey: okm.slice(0, ENVELOPE_KEY_BYTES),
    answerKey: okm.slice(ENVELOPE_KEY_BYTES),
  };
}
