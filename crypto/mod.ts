/**
 * The crypto core of meowsync: keys, signatures, sealed boxes, the symmetric
 * layer, the Double Ratchet, CPace pairing and Crockford base32 codes. Ed25519 and X25519 run through `node:crypto`
 * (cross-checked against noble); everything else is noble.
 *
 * @module
 */
export {
  BadCiphertext,
  BadSignature,
  Malformed,
  MeowError,
  Replay,
  TooManySkipped,
} from "./errors.ts";
export * from "./random.ts";
export { SystemRandom } from "./system_random.ts";
export { fromBase64Url, toBase64Url } from "./base64.ts";
export { concatBytes, containsBytes, equalBytes } from "./bytes.ts";
export {
  generateEncryptionKeyPair,
  generateLookupKeyPair,
  generateSigningKeyPair,
  type KeyPair,
  signingKeyPairFromSeed,
  x25519EphemeralAgreement,
  x25519SharedSecret,
} from "./keys.ts";
export { sign, verify } from "./sign.ts";
export { open, seal } from "./seal.ts";
export { symBoxBytes, symDecrypt, symEncrypt } from "./sym.ts";
export { deriveKey, mac, MAC_BYTES, verifyMac } from "./mac.ts";
export { hkdfSha256 } from "./_primitives.ts";
export {
  initRatchetInitiator,
  initRatchetResponder,
  previousRemoteKeysMax,
  ratchetAdBytesMax,
  ratchetDecrypt,
  ratchetEncrypt,
  type RatchetState,
} from "./ratchet.ts";
export {
  CPACE_ISK_BYTES,
  CPACE_POINT_BYTES,
  CPACE_SCALAR_BYTES,
  CPACE_TAG_BYTES,
  cpaceConfirmationTag,
  cpaceFinish,
  type CpaceOptions,
  type CpaceRole,
  cpaceSidOutput,
  cpaceStart,
  type CpaceTagInput,
  cpaceVerifyTag,
} from "./cpace.ts";
export { groupCode, normalizeCrockford, randomCrockford } from "./crockford.ts";
export { decodeRatchetHeader, encodeRatchetHeader, type RatchetHeader } from "./_ratchet_header.ts";
export { deserializeRatchet, serializeRatchet } from "./_ratchet_state.ts";
export {
  MAX_SKIP,
  SKIPPED_KEY_TTL_MS,
  SKIPPED_KEYS_MAX,
  type SkippedMessageKey,
} from "./_skipped_keys.ts";
export {
  IMPORTED_KEYS_MAX_DEFAULT,
  importedKeysMax,
  type PublicKeyOperation,
  publicKeyOperations,
  setImportedKeysMax,
} from "./_native.ts";
