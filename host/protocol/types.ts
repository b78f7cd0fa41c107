// The decoded form of every message and segment. Addresses are u32 numbers (see addr.ts), ports u16,
// TTLs milliseconds, sequence numbers exact integers ≤ 2^53-1. Byte payloads (IP packet, interest data)
// are views into the datagram after decoding: copy them if the datagram buffer is reused.
import type { DeniedSegment } from './errors.ts';
import type { HeartbeatRoleName, MessageTypeName, ResyncState } from './constants.ts';

/** Wildcard affinity: which new flows a manager wants to see. Zero ports / protocol mean "any". */
export interface WildcardAffinity {
  protocol: number;
  srcAddr: number;
  srcMask: number;
  dstAddr: number;
  dstMask: number;
  srcPort: number;
  dstPort: number;
  /** `WildcardAffinityFlag` bits. */
  flags: number;
  /** Time to live on the agent; 0 cancels the wildcard. */
  ttlMs: number;
}

/** Affinity key (protocol, source and destination address and port) of one flow direction. */
export interface AffinityKey {
  protocol: number;
  srcAddr: number;
  dstAddr: number;
  srcPort: number;
  dstPort: number;
}

/** Fixed affinity: per-flow instructions for one direction, identified by its affinity key. */
export interface FixedAffinity extends AffinityKey {
  /** `FixedAffinityFlag` bits. */
  flags: number;
  /** Time to live on the agent; 0 cancels the fixed affinity. */
  ttlMs: number;
}

/** Which flow an interest match is about, and why it was sent. */
export interface AffinityIdentifier extends AffinityKey {
  /** `IdentifierFlag` bits (dispatch and information flags). */
  flags: number;
  /** `InterestBit` bits: the reason for the interest match. */
  reason: number;
}

export interface ServicePrecedence {
  /** Higher value is searched first when wildcards of several services overlap. */
  value: number;
  /** Search this service's wildcards before the fixed affinity table. */
  wildcardFirst: boolean;
}

export interface IdentityInfo {
  addr: number;
  /** Printable ASCII, at most 255 bytes; may be empty. */
  hostName: string;
}

/** Rewrite the selected header fields; absent fields are left alone. At least one must be present. */
export interface NatAction {
  kind: 'nat';
  srcAddr?: number | undefined;
  srcPort?: number | undefined;
  dstAddr?: number | undefined;
  dstPort?: number | undefined;
}

/** Advertise a route to `addr` (with `mask`, a host route when absent). */
export interface AdvertiseAction {
  kind: 'advertise';
  addr: number;
  mask?: number | undefined;
}

/** TCP sequence adjust: add the deltas (mod 2^32) to seq/ack numbers at or after the initial values. */
export interface SequenceAdjustAction {
  kind: 'sequence-adjust';
  seqDelta: number;
  initialSeq: number;
  ackDelta: number;
  initialAck: number;
}

/** Tell the manager at addr:port about packets whose interest bits intersect `mask`. */
export interface InterestCriteriaAction {
  kind: 'interest-criteria';
  addr: number;
  port: number;
  /** `InterestBit` bits (u16). */
  mask: number;
  /** Send the packet itself along with the interest match. */
  data: boolean;
  /** Forward the packet as well as sending it (a copy goes to the manager). */
  copy: boolean;
  /** Hold the packet on the agent until the manager answers. */
  hold: boolean;
}

/** Forward to next hop `nextHop` without rewriting; 0 drops the packet. */
export interface DispatchAction {
  kind: 'dispatch';
  nextHop: number;
}

export type Action = NatAction | AdvertiseAction | SequenceAdjustAction | InterestCriteriaAction | DispatchAction;

export interface WildcardEntry {
  affinity: WildcardAffinity;
  /** Actions of this wildcard (on the wire: an action list segment right after the affinity). */
  actions: Action[];
}

export interface FixedEntry {
  affinity: FixedAffinity;
  actions: Action[];
}

/** One fixed affinity as a backup stores it: mirrored timers, the chosen backend and the owning manager. */
export interface ReplicationEntry {
  affinity: FixedAffinity;
  /** Remaining lifetime on the primary's store, milliseconds. */
  remainingMs: number;
  backendAddr: number;
  backendPort: number;
  /** Identity of the manager that owns the affinity. */
  owner: number;
  actions: Action[];
}

export interface ResyncMarker {
  resyncId: number;
  epoch: number;
  /** Resync done: total entries sent; otherwise informational (0 allowed). */
  entryCount: number;
}

export interface HeartbeatData {
  role: HeartbeatRoleName;
  resyncState: ResyncState;
  epoch: number;
  /** Higher is preferred. */
  backupPrecedence: number;
  intervalMs: number;
}

interface MessageBase {
  /** Sender identity (manager or agent id). */
  sender: number;
  /** Sender sequence number: strictly increasing per sender (replay protection). */
  sequence: number;
}

export interface AffinityUpdateWildcardMessage extends MessageBase {
  type: 'affinity-update-wildcard';
  identity?: IdentityInfo | undefined;
  servicePrecedence?: ServicePrecedence | undefined;
  /** Higher is preferred; a backup manager announces a lower one than its primary. */
  backupPrecedence?: number | undefined;
  managerInterestData?: Uint8Array | undefined;
  wildcards: WildcardEntry[];
}

export interface AffinityUpdateFixedMessage extends MessageBase {
  type: 'affinity-update-fixed';
  identity?: IdentityInfo | undefined;
  managerInterestData?: Uint8Array | undefined;
  agentInterestData?: Uint8Array | undefined;
  fixed: FixedEntry[];
  /** The packet that caused the interest match, handed back to be forwarded under the new affinity. */
  packet?: Uint8Array | undefined;
}

export interface AffinityUpdateDenyMessage extends MessageBase {
  type: 'affinity-update-deny';
  identity?: IdentityInfo | undefined;
  deniedType: MessageTypeName;
  deniedSequence: number;
  denied: DeniedSegment[];
  /** The refused affinities, echoed so the sender need not keep the original datagram. */
  wildcards: WildcardAffinity[];
  fixed: FixedAffinity[];
}

export interface InterestMatchWildcardMessage extends MessageBase {
  type: 'interest-match-wildcard';
  identity?: IdentityInfo | undefined;
  identifier: AffinityIdentifier;
  /** The wildcard that matched. */
  wildcard?: WildcardAffinity | undefined;
  agentInterestData?: Uint8Array | undefined;
  managerInterestData?: Uint8Array | undefined;
  packet?: Uint8Array | undefined;
}

export interface InterestMatchFixedMessage extends MessageBase {
  type: 'interest-match-fixed';
  identity?: IdentityInfo | undefined;
  identifier: AffinityIdentifier;
  agentInterestData?: Uint8Array | undefined;
  managerInterestData?: Uint8Array | undefined;
  packet?: Uint8Array | undefined;
}

export interface IpPacketOnlyMessage extends MessageBase {
  type: 'ip-packet-only';
  packet: Uint8Array;
}

export interface ReplicationMessage extends MessageBase {
  type: 'replication';
  entries: ReplicationEntry[];
}

export interface ReplicationAckMessage extends MessageBase {
  type: 'replication-ack';
  /** Sequence numbers of the replication (or resync data) messages acknowledged. */
  acked: number[];
}

export interface ResyncRequestMessage extends MessageBase {
  type: 'resync-request';
  resync: ResyncMarker;
}

export interface ResyncDataMessage extends MessageBase {
  type: 'resync-data';
  resync: ResyncMarker;
  entries: ReplicationEntry[];
}

export interface ResyncDoneMessage extends MessageBase {
  type: 'resync-done';
  resync: ResyncMarker;
}

export interface HeartbeatMessage extends MessageBase {
  type: 'heartbeat';
  identity?: IdentityInfo | undefined;
  heartbeat: HeartbeatData;
}

export type ServiceMessage =
  | AffinityUpdateWildcardMessage
  | AffinityUpdateFixedMessage
  | AffinityUpdateDenyMessage
  | InterestMatchWildcardMessage
  | InterestMatchFixedMessage
  | IpPacketOnlyMessage
  | ReplicationMessage
  | ReplicationAckMessage
  | ResyncRequestMessage
  | ResyncDataMessage
  | ResyncDoneMessage
  | HeartbeatMessage;

/** A message of one type, e.g. `MessageOf<'heartbeat'>`. */
export type MessageOf<T extends ServiceMessage['type']> = Extract<ServiceMessage, { type: T }>;
