// The service message protocol: the wire between forwarding agents and service managers.
// Bytes: docs/protocol.md. Import from here; the other files are the implementation.
export { encodeMessage, encodeMessageInto, encodeNumbered, encodeNumberedInto } from './encode.ts';
export type { EncodeOptions, UnnumberedMessage } from './encode.ts';
export { decodeMessage, denyFor } from './decode.ts';
export type { DecodeOptions } from './decode.ts';
export { ProtocolError } from './errors.ts';
export type { ProtocolErrorCode, DeniedSegment } from './errors.ts';
export { Keyring, SecurityVerifier, ReplayWindow, initialSequence, DEFAULT_REPLAY_WINDOW } from './security.ts';
export type { SecurityKey, SecurityConfig, SecurityCounters, SecurityVerifierOptions, MacAlgorithm } from './security.ts';
export { ipToU32, u32ToIp, prefixToMask } from './addr.ts';
export {
  PROTOCOL_VERSION,
  HEADER_BYTES,
  MAX_MESSAGE_BYTES,
  MessageType,
  SegmentType,
  FixedAffinityFlag,
  WildcardAffinityFlag,
  IdentifierFlag,
  InterestBit,
  DenyReason,
} from './constants.ts';
export type { MessageTypeName, ResyncState, HeartbeatRoleName } from './constants.ts';
export type * from './types.ts';
