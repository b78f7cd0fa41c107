// Every code that appears on the wire, in one place. docs/protocol.md is the prose version of this file;
// a test checks that the two agree.

export const PROTOCOL_VERSION = 1;
/** Fixed header size in bytes (see docs/protocol.md, "Header"). */
export const HEADER_BYTES = 20;
/** Segment header: type/required (u16) + data length (u16). */
export const SEGMENT_HEADER_BYTES = 4;
/** Datagrams longer than 64 KiB are refused before anything else is read. */
export const MAX_MESSAGE_BYTES = 65536;
/** Set in a segment's type field when the receiver must understand the segment. */
export const REQUIRED_FLAG = 0x8000;
/** Largest sender sequence number: sequences are u64 on the wire but kept as exact JS numbers. */
export const MAX_SEQUENCE = Number.MAX_SAFE_INTEGER;

export const MessageType = {
  AffinityUpdateWildcard: 1,
  AffinityUpdateFixed: 2,
  AffinityUpdateDeny: 3,
  InterestMatchWildcard: 4,
  InterestMatchFixed: 5,
  IpPacketOnly: 6,
  Replication: 16,
  ReplicationAck: 17,
  ResyncRequest: 18,
  ResyncData: 19,
  ResyncDone: 20,
  Heartbeat: 21,
} as const;
export type MessageTypeCode = (typeof MessageType)[keyof typeof MessageType];

/** The `type` discriminant of a decoded message, by wire code. */
export const MESSAGE_TYPE_NAMES = {
  1: 'affinity-update-wildcard',
  2: 'affinity-update-fixed',
  3: 'affinity-update-deny',
  4: 'interest-match-wildcard',
  5: 'interest-match-fixed',
  6: 'ip-packet-only',
  16: 'replication',
  17: 'replication-ack',
  18: 'resync-request',
  19: 'resync-data',
  20: 'resync-done',
  21: 'heartbeat',
} as const satisfies Record<MessageTypeCode, string>;
export type MessageTypeName = (typeof MESSAGE_TYPE_NAMES)[MessageTypeCode];

/** Wire code by type name. No prototype: a name like "constructor" finds nothing. */
export const MESSAGE_TYPE_CODES: Readonly<Record<MessageTypeName, MessageTypeCode>> = Object.freeze(
  Object.assign(
    Object.create(null) as Record<MessageTypeName, MessageTypeCode>,
    Object.fromEntries(Object.entries(MESSAGE_TYPE_NAMES).map(([code, name]) => [name, Number(code)])),
  ),
);

export const SegmentType = {
  Security: 1,
  IdentityInfo: 2,
  WildcardAffinity: 3,
  FixedAffinity: 4,
  AffinityIdentifier: 5,
  ServicePrecedence: 6,
  BackupPrecedence: 7,
  ManagerInterestData: 8,
  AgentInterestData: 9,
  IpPacket: 10,
  DenyReport: 11,
  ActionList: 16,
  ActionNat: 32,
  ActionAdvertise: 33,
  ActionSequenceAdjust: 34,
  ActionInterestCriteria: 35,
  ActionDispatch: 36,
  ReplicationEntry: 48,
  ReplicationAck: 49,
  ResyncMarker: 50,
  HeartbeatData: 51,
} as const;
export type SegmentTypeCode = (typeof SegmentType)[keyof typeof SegmentType];

/** Fixed data sizes (bytes, before padding) of the fixed-size segments. */
export const SegmentBytes = {
  WildcardAffinity: 28,
  FixedAffinity: 20,
  AffinityIdentifier: 20,
  ServicePrecedence: 8,
  BackupPrecedence: 4,
  DenyReportHead: 12,
  DenyReportEntry: 8,
  ActionNat: 16,
  ActionAdvertise: 4,
  ActionAdvertiseWithMask: 8,
  ActionSequenceAdjust: 16,
  ActionInterestCriteria: 12,
  ActionDispatch: 4,
  ReplicationEntry: 36,
  ReplicationAckEntry: 8,
  ResyncMarker: 12,
  HeartbeatData: 16,
  SecurityHead: 4,
  IdentityInfoHead: 4,
} as const;

export const MAX_HOST_NAME_BYTES = 255;

/** Security segment `algorithm` codes and their MAC sizes. */
export const MacAlgorithmCode = { HmacSha256: 1, KeyedMd5: 2 } as const;
export const MAC_BYTES = { 1: 32, 2: 16 } as const;

/** Fixed affinity `flags`. Bits not named here are carried unchanged. */
export const FixedAffinityFlag = {
  /** The agent reports flow statistics in an information interest match when the affinity ends. */
  Information: 0x0001,
} as const;

/** Wildcard affinity `flags`. */
export const WildcardAffinityFlag = {
  /** Match only packets that open a flow (TCP SYN without ACK; any first UDP packet). */
  NewFlowsOnly: 0x0001,
} as const;

/** Affinity identifier `flags` (dispatch and information flags). */
export const IdentifierFlag = {
  /** The agent dispatched the packet to a next hop before telling the manager. */
  Dispatched: 0x0001,
  /** This interest match is an information report, not a request for a decision. */
  Information: 0x0002,
} as const;

/**
 * Interest bits, in the firmware's numbering (assembly/batch.ts; host/agent/wasm.ts mirrors it and a test
 * checks both agree): the reason an interest match was sent (affinity identifier `reason`, u32) and the
 * events a manager asks for (interest criteria `mask`, u16). Bits 0–5 are the TCP header's flag bits.
 */
export const InterestBit = {
  Fin: 0x0001,
  Syn: 0x0002,
  Rst: 0x0004,
  Psh: 0x0008,
  Ack: 0x0010,
  Urg: 0x0020,
  /** The packet carries payload. */
  Data: 0x0040,
  /** The flow's first payload-carrying packet. */
  FirstData: 0x0080,
  /** An IP fragment. */
  Fragment: 0x0100,
  /** Set for every packet: a mask of All selects every packet. */
  All: 0x8000,
  /** @deprecated Old name of the SYN bit (a new TCP flow); use Syn. */
  NewFlow: 0x0002,
  /** @deprecated Not an interest bit (zero): an information report is flagged by IdentifierFlag.Information. */
  Information: 0,
} as const;

/** NAT action `which` bits. */
export const NatField = { SrcAddr: 0x01, SrcPort: 0x02, DstAddr: 0x04, DstPort: 0x08 } as const;

/** Interest criteria action `flags`. */
export const InterestCriteriaFlag = { Data: 0x01, Copy: 0x02, Hold: 0x04 } as const;

/** Service precedence `flags`. */
export const ServicePrecedenceFlag = {
  /** Search this service's wildcards before the fixed affinity table. */
  WildcardFirst: 0x01,
} as const;

/** Why a segment was refused (deny report entries, `DeniedSegment.reason`). */
export const DenyReason = {
  UnknownRequiredSegment: 1,
  SegmentNotAllowed: 2,
  UnsupportedAction: 3,
  TableFull: 4,
  NoSupportingWildcard: 5,
  BadArgument: 6,
} as const;

export const HeartbeatRole = { Primary: 1, Backup: 2 } as const;
export const RESYNC_STATES = ['none', 'requested', 'in-progress', 'complete'] as const;
export type ResyncState = (typeof RESYNC_STATES)[number];
export const ROLE_NAMES = { 1: 'primary', 2: 'backup' } as const;
export type HeartbeatRoleName = 'primary' | 'backup';
