// Which segment may go where: the tables behind docs/protocol.md's processing rules, as flat lookups
// indexed by wire code (segment codes below 64, message type codes below 256) for the hot paths.
import * as C from './constants.ts';
import type { MessageTypeCode, MessageTypeName } from './constants.ts';

// Local copies: the hot paths read module-local constants rather than import bindings, which a CommonJS
// transpilation (tsx running outside an ESM package, for one) turns into getter calls.
const MESSAGE_TYPE_NAMES = C.MESSAGE_TYPE_NAMES;
const MessageType = C.MessageType;
const SegmentType = C.SegmentType;

/** 2^32: sequence numbers are u64 on the wire, exact JS numbers in memory. */
export const TWO_32 = 4294967296;
/** Segments the encoder marks required; the rest (informational) are sent optional. */
export const OPTIONAL_ON_SEND = new Uint8Array(64);
OPTIONAL_ON_SEND[SegmentType.IdentityInfo] = 1;
OPTIONAL_ON_SEND[SegmentType.ManagerInterestData] = 1;
OPTIONAL_ON_SEND[SegmentType.AgentInterestData] = 1;
export const KNOWN_SEGMENT = new Uint8Array(64);
for (const code of Object.values(SegmentType)) KNOWN_SEGMENT[code] = 1;

/** Which top-level segments each message type takes (security is handled apart: first or nowhere). */
const ALLOWED_BY_TYPE: Record<MessageTypeCode, readonly number[]> = {
  [MessageType.AffinityUpdateWildcard]: [
    SegmentType.IdentityInfo,
    SegmentType.ServicePrecedence,
    SegmentType.BackupPrecedence,
    SegmentType.ManagerInterestData,
    SegmentType.WildcardAffinity,
    SegmentType.ActionList,
  ],
  [MessageType.AffinityUpdateFixed]: [
    SegmentType.IdentityInfo,
    SegmentType.ManagerInterestData,
    SegmentType.AgentInterestData,
    SegmentType.FixedAffinity,
    SegmentType.ActionList,
    SegmentType.IpPacket,
  ],
  [MessageType.AffinityUpdateDeny]: [
    SegmentType.IdentityInfo,
    SegmentType.DenyReport,
    SegmentType.WildcardAffinity,
    SegmentType.FixedAffinity,
  ],
  [MessageType.InterestMatchWildcard]: [
    SegmentType.IdentityInfo,
    SegmentType.AffinityIdentifier,
    SegmentType.WildcardAffinity,
    SegmentType.AgentInterestData,
    SegmentType.ManagerInterestData,
    SegmentType.IpPacket,
  ],
  [MessageType.InterestMatchFixed]: [
    SegmentType.IdentityInfo,
    SegmentType.AffinityIdentifier,
    SegmentType.AgentInterestData,
    SegmentType.ManagerInterestData,
    SegmentType.IpPacket,
  ],
  [MessageType.IpPacketOnly]: [SegmentType.IpPacket],
  [MessageType.Replication]: [SegmentType.ReplicationEntry, SegmentType.ActionList],
  [MessageType.ReplicationAck]: [SegmentType.ReplicationAck],
  [MessageType.ResyncRequest]: [SegmentType.ResyncMarker],
  [MessageType.ResyncData]: [SegmentType.ResyncMarker, SegmentType.ReplicationEntry, SegmentType.ActionList],
  [MessageType.ResyncDone]: [SegmentType.ResyncMarker],
  [MessageType.Heartbeat]: [SegmentType.IdentityInfo, SegmentType.HeartbeatData],
};
/** ALLOWED[typeCode * 64 + segmentCode] = 1 when allowed at top level. */
export const ALLOWED = new Uint8Array(256 * 64);
for (const [code, segs] of Object.entries(ALLOWED_BY_TYPE)) {
  for (const s of segs) ALLOWED[Number(code) * 64 + s] = 1;
}
const ACTION_CODES = [
  SegmentType.ActionNat,
  SegmentType.ActionAdvertise,
  SegmentType.ActionSequenceAdjust,
  SegmentType.ActionInterestCriteria,
  SegmentType.ActionDispatch,
];
export const IS_ACTION = new Uint8Array(64);
for (const c of ACTION_CODES) IS_ACTION[c] = 1;

/** Type name by wire code; undefined for codes that are not message types. */
export const NAME_BY_CODE: Array<MessageTypeName | undefined> = new Array<MessageTypeName | undefined>(256).fill(undefined);
for (const [code, name] of Object.entries(MESSAGE_TYPE_NAMES)) NAME_BY_CODE[Number(code)] = name;
