/**
 * The identity root, its recovery code and the device list it signs
 * (docs/PROTOCOL.md "The device list"; LIFECYCLE.md §4.4).
 *
 * The root key pair is derived from a **recovery code** — 32 Crockford
 * base32 characters (160 random bits), printed once when the identity is
 * created — so a remaining device can re-derive it when the root's device is
 * lost (`recoverRoot`). The root private key never leaves its device in any
 * message. Every change of the user's device list (an introduction, a
 * removal) carries the list's next version signed by the root; devices
 * refuse unsigned changes, so a removed or stolen device cannot remove the
 * others or introduce a device of its own. Without the code and the root's
 * device, the list is frozen. Every function here is pure.
 *
 * @module
 */
import { create } from "@bufbuild/protobuf";
import { type DeviceList, DeviceListSchema, type IdentityRecord } from "../proto/mod.ts";
import {
  deriveKey,
  groupCode,
  type KeyPair,
  normalizeCrockford,
  randomCrockford,
  sign,
  signingKeyPairFromSeed,
  verify,
} from "../crypto/mod.ts";
import { Malformed, MeowError } from "./errors.ts";
import type { Random } from "../ports/mod.ts";

/** Characters of a recovery code (5 bits each: 160 bits), without the group separators. */
export const RECOVERY_CODE_CHARS = 32;
/** Devices one list names, at most. */
export const DEVICE_LIST_MAX = 64;

const encoder = new TextEncoder();

/** A recovery code that is malformed or does not derive this identity's root. */
export class BadRecoveryCode extends MeowError {
  /** @param message what is wrong with the code (never the code itself) */
  constructor(message: string, options?: ErrorOptions) {
    super("BadRecoveryCode", message, options);
  }
}

/**
 * A fresh recovery code, grouped by four characters for reading aloud.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { SeededRandom } from "../crypto/mod.ts";
 * import { newRecoveryCode, rootFromRecoveryCode } from "./device_list.ts";
 * const code = newRecoveryCode(new SeededRandom(1));
 * assert.equal(code.replaceAll("-", "").length, 32);
 * assert.deepEqual(rootFromRecoveryCode(code).publicKey, rootFromRecoveryCode(code.toLowerCase()).publicKey);
 * ```
 */
export function newRecoveryCode(random: Random): string {
  return groupCode(randomCrockford(random, RECOVERY_CODE_CHARS));
}

/**
 * The root key pair a recovery code derives (HKDF-SHA-256 of the normalized
 * code, info `"meowsync root key v1"`, as the Ed25519 seed). Case, `-` and
 * spaces do not matter; `O`/`I`/`L` read as `0`/`1`/`1`.
 *
 * @throws {BadRecoveryCode} when the code is not 32 Crockford characters
 */
export function rootFromRecoveryCode(code: string): KeyPair {
  let normalized: string;
  try {
    normalized = normalizeCrockford(code);
  } catch (e) {
    throw new BadRecoveryCode(`Not a recovery code: ${(e as Error).message}`);
  }
  if (normalized.length !== RECOVERY_CODE_CHARS) {
    throw new BadRecoveryCode(
      `Not a recovery code: it has ${normalized.length} characters, a code has ${RECOVERY_CODE_CHARS}`,
    );
  }
  return signingKeyPairFromSeed(deriveKey(encoder.encode(normalized), "meowsync root key v1"));
}

/** The bytes the root signs for `version` of `identityUid`'s device list of `deviceUids`. */
export function deviceListBytes(
  identityUid: string,
  version: number,
  deviceUids: readonly string[],
): Uint8Array {
  const head = encoder.encode(`meowsync device list v1\u0000${identityUid}\u0000`);
  const body = encoder.encode([...deviceUids].sort().map((uid) => `${uid}\u0000`).join(""));
  const out = new Uint8Array(head.length + 4 + body.length);
  out.set(head);
  new DataView(out.buffer).setUint32(head.length, version);
  out.set(body, head.length + 4);
  return out;
}

/**
 * Signs `version` of the device list with the root private key of `identity`.
 *
 * @throws {TypeError} when this device does not hold the root private key
 */
export function signDeviceList(
  identity: IdentityRecord,
  version: number,
  deviceUids: readonly string[],
): DeviceList {
  const root = identity.root;
  if (!root || root.privateKey.length !== 32) {
    throw new TypeError(
      "Only the device holding the identity root can change the device list " +
        "(the device that created the identity, or one that ran `devices recover`)",
    );
  }
  const uids = [...new Set(deviceUids)].sort();
  return create(DeviceListSchema, {
    version,
    deviceUids: uids,
    signature: sign(root.privateKey, deviceListBytes(identity.uid, version, uids)),
  });
}

/** Whether this device holds the root private key (it can change the device list). */
export function holdsRoot(identity: IdentityRecord): boolean {
  return (identity.root?.privateKey.length ?? 0) === 32;
}

/**
 * Checks a device list against the root public key of `identity`: a root
 * signature over its version and devices, at most {@linkcode DEVICE_LIST_MAX}
 * devices. Versions only order lists (the newest is kept); a removed device is
 * never accepted again whatever list names it.
 *
 * @throws {Malformed} naming what is wrong; nothing is changed by it
 */
export function assertDeviceList(
  identity: IdentityRecord,
  list: DeviceList | undefined,
  what: string,
): DeviceList {
  const rootPublic = identity.root?.publicKey;
  if (!rootPublic || rootPublic.length !== 32) {
    throw new Malformed(`Refused ${what}: this device does not know the identity root`);
  }
  if (!list || list.signature.length === 0) {
    throw new Malformed(`Refused ${what}: the device list it carries is not signed by the root`);
  }
  if (list.deviceUids.length > DEVICE_LIST_MAX) {
    throw new Malformed(
      `Refused ${what}: ${list.deviceUids.length} devices, at most ${DEVICE_LIST_MAX}`,
    );
  }
  const signed = deviceListBytes(identity.uid, list.version, list.deviceUids);
  if (!verify(rootPublic, signed, list.signature)) {
    throw new Malformed(`Refused ${what}: the device list's root signature does not verify`);
  }
  return list;
}
