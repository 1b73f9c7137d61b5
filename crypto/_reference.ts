/**
 * The reference implementations (noble) of what `_native.ts` does fast.
 * Tests cross-check the two; nothing on a hot path uses these.
 *
 * @module
 */
import { ed25519, x25519 } from "@noble/curves/ed25519.js";

/** Ed25519 signature by noble. */
export function signReference(privateKey: Uint8Array, message: Uint8Array): Uint8Array {
  return ed25519.sign(message, privateKey);
}

/** Ed25519 verification by noble (RFC 8032 strict decoding, never throws). */
export function verifyReference(
  publicKey: Uint8Array,
  message: Uint8Array,
  signature: Uint8Array,
): boolean {
  try {
    return ed25519.verify(signature, message, publicKey, { zip215: false });
  } catch {
    return false;
  }
}

/** X25519 by noble; throws on a low-order public key, as `node:crypto` does. */
export function x25519Reference(privateKey: Uint8Array, publicKey: Uint8Array): Uint8Array {
  return x25519.getSharedSecret(privateKey, publicKey);
}

/** X25519 public key by noble. */
export function x25519PublicKeyReference(privateKey: Uint8Array): Uint8Array {
  return x25519.getPublicKey(privateKey);
}
