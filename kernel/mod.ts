/**
 * The meowsync microkernel: identity, peers, the crypto pipeline, the plugin
 * router, the outbox and the poll loop, over the ports.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { Kernel } from "./mod.ts";
 * assert(typeof Kernel.open === "function");
 * ```
 *
 * @module
 */
export { Kernel } from "./kernel.ts";
export type {
  AcceptInvitationOptions,
  AcceptPairingOptions,
  IdentityRecordInit,
  InvitationOptions,
  InvitationTicket,
  KernelObservation,
  KernelOptions,
  KernelSealing,
  LogLevel,
  OfferPairingOptions,
  ReceiveOutcome,
  RelayHealth,
  RelayRequestKind,
} from "./kernel.ts";
export { ASSUMED_LIMITS, type RelayLimits, relayLimits } from "../envelope/mod.ts";
export { type ApiKey, apiKey, POLL_MARK_MS_MAX } from "./plugin.ts";
export { pluginErrorOf } from "./plugin_driver.ts";
export type {
  CheckContext,
  CheckDevice,
  CheckOutcome,
  CommandContext,
  CommandExtension,
  ExpectationExtension,
  FieldKind,
  FieldSpec,
  MessageAnnotation,
  PluginModule,
  StepContext,
  StepExtension,
} from "./plugin_module.ts";
export type {
  EventHooks,
  KernelEventName,
  KernelEvents,
  Plugin,
  PluginData,
  PluginDataReader,
  PluginHost,
  PluginInput,
  ReceiveContext,
  Tx,
} from "./plugin.ts";
export type {
  Batch,
  Clock,
  ListMessagesOptions,
  PluginRecord,
  Random,
  SeenMark,
  Store,
  Transport,
} from "../ports/mod.ts";
export { TransportError } from "../ports/mod.ts";
export { systemClock } from "../ports/mod.ts";
export * from "./errors.ts";
export {
  answerInvitation,
  type AnswerOptions,
  createInvitation,
  decodeCard,
  finalizeInvitation,
  type FinalizeOptions,
  HELLO_TYPE,
} from "./invitation.ts";
export {
  answerMac,
  cardPostBytesMax,
  CODE_A1_BYTES,
  CODE_B1_BYTES,
  CODE_SID_BYTES,
  codeA2BytesMax,
  codeInitiatorConfirm,
  codeInitiatorStart,
  type CodeInitiatorState,
  codeResponderFinish,
  codeResponderStart,
  type CodeResponderState,
  type CodeSession,
  drawPairingPassword,
  drawPairingSecret,
  formatPairingCode,
  formatPairingLink,
  NAMEPLATE_CHARS,
  openCardPost,
  PAIRING_PASSWORD_CHARS,
  PAIRING_SECRET_BYTES,
  pairingCodeCharsMax,
  type PairingKeys,
  type PairingLink,
  pairingLinkCharsMax,
  pairingLinkKeys,
  type PairingLinkKind,
  type PairingTranscript,
  parseNameplate,
  parsePairingCode,
  parsePairingLink,
  SAFETY_CODE_DIGITS,
  safetyCode,
  sealCardPost,
  verifyAnswerMac,
} from "./pairing.ts";
export { contactLookupKey, lookupKeyOf, myLookupKey, pack, ratchetAd, unpack } from "./pipeline.ts";
export { cardBytes } from "./invitation.ts";
export {
  assertDeviceList,
  BadRecoveryCode,
  DEVICE_LIST_MAX,
  deviceListBytes,
  holdsRoot,
  newRecoveryCode,
  RECOVERY_CODE_CHARS,
  rootFromRecoveryCode,
  signDeviceList,
} from "./device_list.ts";
export {
  acceptRekey,
  acceptReset,
  createRekey,
  createReset,
  isRetired,
  REKEY_TYPE,
  RESET_TYPE,
  RETIRED_KEYS_MAX,
} from "./rekey.ts";
export { type PairingAccepted, type PairingOffer } from "./kernel.ts";
export { type JoinInput, type PairingForm, type PairingProtocol } from "./pairing_flow.ts";
export {
  assertFits,
  PAD_BUCKETS_BYTES,
  RATCHET_FRAME_OVERHEAD_BYTES,
  SEAL_OVERHEAD_BYTES,
  USER_MESSAGE_BYTES_MAX,
  userMessageBytesMax,
} from "./pipeline.ts";
