// Decoder: datagrams → ServiceMessage objects. docs/protocol.md is the byte layout.
//
// Invariants:
// - every read is preceded by a bounds check against the message length (the header's total length must
//   equal the length of the bytes given); segment walking only moves forward, by at least 4 bytes a step,
//   and action lists nest exactly one level, so work is linear in the length;
// - byte payloads (IP packet, interest data) are subarray views of the datagram, never copies;
// - anything malformed throws ProtocolError with a code; nothing else is thrown.
import * as C from './constants.ts';
import type { MessageTypeCode, MessageTypeName } from './constants.ts';
import { ProtocolError, type DeniedSegment } from './errors.ts';
import * as P from './placement.ts';
import type { SecurityVerifier } from './security.ts';
import type {
  Action,
  AffinityIdentifier,
  FixedAffinity,
  FixedEntry,
  HeartbeatData,
  IdentityInfo,
  ReplicationEntry,
  ResyncMarker,
  ServiceMessage,
  ServicePrecedence,
  WildcardAffinity,
  WildcardEntry,
} from './types.ts';

// Local copies: the hot paths read module-local constants rather than import bindings, which a CommonJS
// transpilation (tsx running outside an ESM package, for one) turns into getter calls.
const HEADER_BYTES = C.HEADER_BYTES;
const MAX_MESSAGE_BYTES = C.MAX_MESSAGE_BYTES;
const MAX_HOST_NAME_BYTES = C.MAX_HOST_NAME_BYTES;
const MessageType = C.MessageType;
const NatField = C.NatField;
const InterestCriteriaFlag = C.InterestCriteriaFlag;
const PROTOCOL_VERSION = C.PROTOCOL_VERSION;
const REQUIRED_FLAG = C.REQUIRED_FLAG;
const RESYNC_STATES = C.RESYNC_STATES;
const ROLE_NAMES = C.ROLE_NAMES;
const SEGMENT_HEADER_BYTES = C.SEGMENT_HEADER_BYTES;
const SegmentBytes = C.SegmentBytes;
const SegmentType = C.SegmentType;
const DenyReason = C.DenyReason;
const TWO_32 = P.TWO_32;
const KNOWN_SEGMENT = P.KNOWN_SEGMENT;
const ALLOWED = P.ALLOWED;
const IS_ACTION = P.IS_ACTION;
const NAME_BY_CODE = P.NAME_BY_CODE;

export interface DecodeOptions {
  /** Verify the security segment and the sequence number; see SecurityVerifier. */
  security?: SecurityVerifier | undefined;
}

function r16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}
function r32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}
function rSeq(b: Uint8Array, o: number, field: string): number {
  const hi = r32(b, o);
  if (hi > 0x1fffff) throw new ProtocolError('BAD_FIELD', `sequence beyond 2^53-1`, { field, offset: o });
  return hi * TWO_32 + r32(b, o + 4);
}

function expectLength(code: number, got: number, want: number, o: number): void {
  if (got !== want) {
    throw new ProtocolError('BAD_SEGMENT_LENGTH', `segment ${code} has ${got} data bytes, expected ${want}`, { offset: o });
  }
}
function duplicate(code: number, o: number): never {
  throw new ProtocolError('DUPLICATE_SEGMENT', `segment ${code} appears twice`, { offset: o });
}

function readFixed(b: Uint8Array, d: number): FixedAffinity {
  return {
    protocol: b[d]!,
    srcAddr: r32(b, d + 4),
    dstAddr: r32(b, d + 8),
    srcPort: r16(b, d + 12),
    dstPort: r16(b, d + 14),
    flags: r16(b, d + 2),
    ttlMs: r32(b, d + 16),
  };
}

function readWildcard(b: Uint8Array, d: number): WildcardAffinity {
  return {
    protocol: b[d]!,
    srcAddr: r32(b, d + 4),
    srcMask: r32(b, d + 8),
    dstAddr: r32(b, d + 12),
    dstMask: r32(b, d + 16),
    srcPort: r16(b, d + 20),
    dstPort: r16(b, d + 22),
    flags: r16(b, d + 2),
    ttlMs: r32(b, d + 24),
  };
}

/** Refused required segments of the message being decoded (null while there are none). */
let denied: DeniedSegment[] | null = null;
function deny(segmentType: number, offset: number, reason: number): void {
  (denied ??= []).push({ segmentType, offset, reason });
}

function readAction(b: Uint8Array, code: number, d: number, len: number, o: number): Action {
  switch (code) {
    case SegmentType.ActionNat: {
      expectLength(code, len, SegmentBytes.ActionNat, o);
      const which = b[d]!;
      if (which === 0 || which > 0x0f) throw new ProtocolError('BAD_FIELD', `NAT field selector ${which}`, { field: 'nat.which', offset: d });
      return {
        kind: 'nat',
        srcAddr: which & NatField.SrcAddr ? r32(b, d + 4) : undefined,
        srcPort: which & NatField.SrcPort ? r16(b, d + 12) : undefined,
        dstAddr: which & NatField.DstAddr ? r32(b, d + 8) : undefined,
        dstPort: which & NatField.DstPort ? r16(b, d + 14) : undefined,
      };
    }
    case SegmentType.ActionAdvertise:
      if (len !== SegmentBytes.ActionAdvertise && len !== SegmentBytes.ActionAdvertiseWithMask) {
        throw new ProtocolError('BAD_SEGMENT_LENGTH', `advertise action of ${len} bytes, expected 4 or 8`, { offset: o });
      }
      return { kind: 'advertise', addr: r32(b, d), mask: len === 8 ? r32(b, d + 4) : undefined };
    case SegmentType.ActionSequenceAdjust:
      expectLength(code, len, SegmentBytes.ActionSequenceAdjust, o);
      return { kind: 'sequence-adjust', seqDelta: r32(b, d), initialSeq: r32(b, d + 4), ackDelta: r32(b, d + 8), initialAck: r32(b, d + 12) };
    case SegmentType.ActionInterestCriteria: {
      expectLength(code, len, SegmentBytes.ActionInterestCriteria, o);
      const f = b[d + 8]!;
      if (f > 7) throw new ProtocolError('BAD_FIELD', `interest criteria flags ${f}`, { field: 'interestCriteria.flags', offset: d + 8 });
      return {
        kind: 'interest-criteria',
        addr: r32(b, d),
        port: r16(b, d + 4),
        mask: r16(b, d + 6),
        data: (f & InterestCriteriaFlag.Data) !== 0,
        copy: (f & InterestCriteriaFlag.Copy) !== 0,
        hold: (f & InterestCriteriaFlag.Hold) !== 0,
      };
    }
    default: // SegmentType.ActionDispatch
      expectLength(code, len, SegmentBytes.ActionDispatch, o);
      return { kind: 'dispatch', nextHop: r32(b, d) };
  }
}

/** The actions nested in an action list whose data spans [d, d + len). */
function readActionList(b: Uint8Array, d: number, len: number): Action[] {
  const actions: Action[] = [];
  const stop = d + len;
  let o = d;
  while (o < stop) {
    if (o + SEGMENT_HEADER_BYTES > stop) throw new ProtocolError('TRUNCATED_SEGMENT', 'action header past the action list', { offset: o });
    const th = r16(b, o);
    const code = th & 0x7fff;
    const alen = r16(b, o + 2);
    const ad = o + SEGMENT_HEADER_BYTES;
    const next = ad + ((alen + 3) & ~3);
    if (next > stop) throw new ProtocolError('TRUNCATED_SEGMENT', `action ${code} runs past its action list`, { offset: o });
    if (code < 64 && IS_ACTION[code] === 1) {
      actions.push(readAction(b, code, ad, alen, o));
    } else if ((th & REQUIRED_FLAG) !== 0) {
      deny(code, o, code < 64 && KNOWN_SEGMENT[code] === 1 ? DenyReason.SegmentNotAllowed : DenyReason.UnknownRequiredSegment);
    }
    o = next;
  }
  return actions;
}

function readIdentity(b: Uint8Array, d: number, len: number, o: number): IdentityInfo {
  const n = len - SegmentBytes.IdentityInfoHead;
  if (n < 0 || n > MAX_HOST_NAME_BYTES) {
    throw new ProtocolError('BAD_SEGMENT_LENGTH', `identity info of ${len} bytes`, { offset: o });
  }
  let hostName = '';
  for (let i = 0; i < n; i++) {
    const c = b[d + 4 + i]!;
    if (c < 0x21 || c > 0x7e) throw new ProtocolError('BAD_FIELD', 'host name is not printable ASCII', { field: 'identity.hostName', offset: d + 4 + i });
  }
  if (n > 0) hostName = String.fromCharCode.apply(null, Array.from(b.subarray(d + 4, d + 4 + n)));
  return { addr: r32(b, d), hostName };
}

function readReplicationEntry(b: Uint8Array, d: number): ReplicationEntry {
  return {
    affinity: readFixed(b, d),
    remainingMs: r32(b, d + 20),
    backendAddr: r32(b, d + 24),
    backendPort: r16(b, d + 28),
    owner: r32(b, d + 32),
    actions: [],
  };
}

function missing(field: string): never {
  throw new ProtocolError('MISSING_SEGMENT', `message lacks its ${field} segment`, { field });
}

/**
 * Decodes one datagram (exactly one message, `buf.length` bytes). Returns the message or throws
 * ProtocolError; with `opts.security`, the security verdict is checked (and counted) before the body.
 */
export function decodeMessage(buf: Uint8Array, opts?: DecodeOptions): ServiceMessage {
  const len = buf.length;
  if (len > MAX_MESSAGE_BYTES) throw new ProtocolError('TOO_LARGE', `datagram of ${len} bytes exceeds ${MAX_MESSAGE_BYTES}`);
  if (len < HEADER_BYTES) throw new ProtocolError('TOO_SHORT', `datagram of ${len} bytes is shorter than the header`);
  if (buf[0] !== PROTOCOL_VERSION) throw new ProtocolError('BAD_VERSION', `protocol version ${buf[0]}`, { offset: 0 });
  const typeCode = buf[1]!;
  const typeName = NAME_BY_CODE[typeCode];
  if (typeName === undefined) throw new ProtocolError('UNKNOWN_MESSAGE_TYPE', `message type ${typeCode}`, { offset: 1 });
  const declared = r32(buf, 4);
  if (declared !== len || (len & 3) !== 0) {
    throw new ProtocolError('LENGTH_MISMATCH', `header says ${declared} bytes, datagram has ${len}`, { offset: 4 });
  }
  const sender = r32(buf, 8);
  const sequence = rSeq(buf, 12, 'sequence');
  try {
    return decodeBody(buf, len, typeCode as MessageTypeCode, typeName, sender, sequence, opts?.security);
  } catch (e) {
    if (e instanceof ProtocolError) {
      e.messageType = typeCode;
      e.sender = sender;
      e.sequence = sequence;
    }
    throw e;
  } finally {
    denied = null;
  }
}

function decodeBody(
  b: Uint8Array,
  len: number,
  typeCode: MessageTypeCode,
  typeName: MessageTypeName,
  sender: number,
  sequence: number,
  verifier: SecurityVerifier | undefined,
): ServiceMessage {
  let o = HEADER_BYTES;
  let secAt = -1;
  let secLen = 0;
  if (len >= HEADER_BYTES + SEGMENT_HEADER_BYTES && (r16(b, o) & 0x7fff) === SegmentType.Security) {
    secLen = r16(b, o + 2);
    const next = o + SEGMENT_HEADER_BYTES + ((secLen + 3) & ~3);
    if (next > len) throw new ProtocolError('TRUNCATED_SEGMENT', 'security segment runs past the datagram', { offset: o });
    if (secLen < SegmentBytes.SecurityHead) throw new ProtocolError('BAD_SEGMENT_LENGTH', `security segment of ${secLen} bytes`, { offset: o });
    secAt = o;
    o = next;
  }
  if (typeCode === MessageType.IpPacketOnly) {
    if (secAt >= 0) throw new ProtocolError('SECURITY_NOT_ALLOWED', 'IP packet only messages carry no security segment', { offset: secAt });
  } else if (verifier !== undefined) {
    verifier.check(b, secAt, secLen, sender, sequence);
  }

  let identity: IdentityInfo | undefined;
  let servicePrecedence: ServicePrecedence | undefined;
  let backupPrecedence: number | undefined;
  let managerInterestData: Uint8Array | undefined;
  let agentInterestData: Uint8Array | undefined;
  let packet: Uint8Array | undefined;
  let identifier: AffinityIdentifier | undefined;
  let resync: ResyncMarker | undefined;
  let heartbeat: HeartbeatData | undefined;
  let acked: number[] | undefined;
  let denyReport: { deniedType: MessageTypeName; deniedSequence: number; denied: DeniedSegment[] } | undefined;
  const wildcards: WildcardEntry[] = [];
  const fixed: FixedEntry[] = [];
  const entries: ReplicationEntry[] = [];
  /** The entry an action list right here would belong to. */
  let owner: { actions: Action[] } | null = null;
  const allowedBase = typeCode * 64;

  while (o < len) {
    const th = r16(b, o);
    const code = th & 0x7fff;
    const slen = r16(b, o + 2);
    const d = o + SEGMENT_HEADER_BYTES;
    const next = d + ((slen + 3) & ~3);
    if (next > len) throw new ProtocolError('TRUNCATED_SEGMENT', `segment ${code} runs past the datagram`, { offset: o });
    const head = owner;
    owner = null;
    if (code >= 64 || ALLOWED[allowedBase + code] !== 1) {
      if (code === SegmentType.Security) throw new ProtocolError('SECURITY_MISPLACED', 'security segment not right after the header', { offset: o });
      if ((th & REQUIRED_FLAG) !== 0) {
        deny(code, o, code < 64 && KNOWN_SEGMENT[code] === 1 ? DenyReason.SegmentNotAllowed : DenyReason.UnknownRequiredSegment);
      }
      o = next;
      continue;
    }
    switch (code) {
      case SegmentType.FixedAffinity: {
        expectLength(code, slen, SegmentBytes.FixedAffinity, o);
        const e: FixedEntry = { affinity: readFixed(b, d), actions: [] };
        fixed.push(e);
        owner = e;
        break;
      }
      case SegmentType.ActionList:
        if (head === null) throw new ProtocolError('ORPHAN_ACTION_LIST', 'action list does not follow an affinity', { offset: o });
        head.actions = readActionList(b, d, slen);
        break;
      case SegmentType.IpPacket:
        if (packet !== undefined) duplicate(code, o);
        if (slen === 0) throw new ProtocolError('BAD_SEGMENT_LENGTH', 'empty IP packet', { offset: o });
        packet = b.subarray(d, d + slen);
        break;
      case SegmentType.WildcardAffinity: {
        expectLength(code, slen, SegmentBytes.WildcardAffinity, o);
        const e: WildcardEntry = { affinity: readWildcard(b, d), actions: [] };
        wildcards.push(e);
        owner = e;
        break;
      }
      case SegmentType.ReplicationEntry: {
        expectLength(code, slen, SegmentBytes.ReplicationEntry, o);
        const e = readReplicationEntry(b, d);
        entries.push(e);
        owner = e;
        break;
      }
      case SegmentType.IdentityInfo:
        if (identity !== undefined) duplicate(code, o);
        identity = readIdentity(b, d, slen, o);
        break;
      case SegmentType.AffinityIdentifier:
        if (identifier !== undefined) duplicate(code, o);
        expectLength(code, slen, SegmentBytes.AffinityIdentifier, o);
        identifier = {
          protocol: b[d]!,
          srcAddr: r32(b, d + 4),
          dstAddr: r32(b, d + 8),
          srcPort: r16(b, d + 12),
          dstPort: r16(b, d + 14),
          flags: r16(b, d + 2),
          reason: r32(b, d + 16),
        };
        break;
      case SegmentType.ServicePrecedence: {
        if (servicePrecedence !== undefined) duplicate(code, o);
        expectLength(code, slen, SegmentBytes.ServicePrecedence, o);
        const f = b[d]!;
        if (f > 1) throw new ProtocolError('BAD_FIELD', `service precedence flags ${f}`, { field: 'servicePrecedence.flags', offset: d });
        servicePrecedence = { value: r32(b, d + 4), wildcardFirst: f === 1 };
        break;
      }
      case SegmentType.BackupPrecedence:
        if (backupPrecedence !== undefined) duplicate(code, o);
        expectLength(code, slen, SegmentBytes.BackupPrecedence, o);
        backupPrecedence = r32(b, d);
        break;
      case SegmentType.ManagerInterestData:
        if (managerInterestData !== undefined) duplicate(code, o);
        managerInterestData = b.subarray(d, d + slen);
        break;
      case SegmentType.AgentInterestData:
        if (agentInterestData !== undefined) duplicate(code, o);
        agentInterestData = b.subarray(d, d + slen);
        break;
      case SegmentType.DenyReport: {
        if (denyReport !== undefined) duplicate(code, o);
        if (slen < SegmentBytes.DenyReportHead) throw new ProtocolError('BAD_SEGMENT_LENGTH', `deny report of ${slen} bytes`, { offset: o });
        const deniedType = NAME_BY_CODE[b[d]!];
        if (deniedType === undefined) throw new ProtocolError('BAD_FIELD', `denied message type ${b[d]}`, { field: 'deniedType', offset: d });
        const count = r16(b, d + 2);
        expectLength(code, slen, SegmentBytes.DenyReportHead + count * SegmentBytes.DenyReportEntry, o);
        const list: DeniedSegment[] = [];
        for (let i = 0, p = d + SegmentBytes.DenyReportHead; i < count; i++, p += SegmentBytes.DenyReportEntry) {
          const segmentType = r16(b, p);
          if (segmentType > 0x7fff) throw new ProtocolError('BAD_FIELD', `denied segment type ${segmentType}`, { field: 'denied.segmentType', offset: p });
          list.push({ segmentType, offset: r32(b, p + 4), reason: r16(b, p + 2) });
        }
        denyReport = { deniedType, deniedSequence: rSeq(b, d + 4, 'deniedSequence'), denied: list };
        break;
      }
      case SegmentType.ReplicationAck: {
        if (acked !== undefined) duplicate(code, o);
        if (slen === 0 || slen % SegmentBytes.ReplicationAckEntry !== 0) {
          throw new ProtocolError('BAD_SEGMENT_LENGTH', `replication ack of ${slen} bytes`, { offset: o });
        }
        acked = [];
        for (let p = d; p < d + slen; p += SegmentBytes.ReplicationAckEntry) acked.push(rSeq(b, p, 'acked'));
        break;
      }
      case SegmentType.ResyncMarker:
        if (resync !== undefined) duplicate(code, o);
        expectLength(code, slen, SegmentBytes.ResyncMarker, o);
        resync = { resyncId: r32(b, d), epoch: r32(b, d + 4), entryCount: r32(b, d + 8) };
        break;
      default: {
        // SegmentType.HeartbeatData: the only allowed code left
        if (heartbeat !== undefined) duplicate(code, o);
        expectLength(code, slen, SegmentBytes.HeartbeatData, o);
        const role = ROLE_NAMES[b[d]! as 1 | 2];
        if (role === undefined) throw new ProtocolError('BAD_FIELD', `heartbeat role ${b[d]}`, { field: 'heartbeat.role', offset: d });
        const resyncState = RESYNC_STATES[b[d + 1]!];
        if (resyncState === undefined) {
          throw new ProtocolError('BAD_FIELD', `resync state ${b[d + 1]}`, { field: 'heartbeat.resyncState', offset: d + 1 });
        }
        heartbeat = { role, resyncState, epoch: r32(b, d + 4), backupPrecedence: r32(b, d + 8), intervalMs: r32(b, d + 12) };
      }
    }
    o = next;
  }

  if (denied !== null) {
    const list = denied;
    throw new ProtocolError('UNPROCESSABLE_SEGMENT', `${list.length} required segment(s) cannot be processed`, { segments: list });
  }

  switch (typeName) {
    case 'affinity-update-wildcard':
      if (wildcards.length === 0) missing('wildcards');
      return { type: typeName, sender, sequence, identity, servicePrecedence, backupPrecedence, managerInterestData, wildcards };
    case 'affinity-update-fixed':
      if (fixed.length === 0) missing('fixed');
      return { type: typeName, sender, sequence, identity, managerInterestData, agentInterestData, fixed, packet };
    case 'affinity-update-deny':
      if (denyReport === undefined) missing('denied');
      return {
        type: typeName,
        sender,
        sequence,
        identity,
        deniedType: denyReport.deniedType,
        deniedSequence: denyReport.deniedSequence,
        denied: denyReport.denied,
        wildcards: wildcards.map((e) => e.affinity),
        fixed: fixed.map((e) => e.affinity),
      };
    case 'interest-match-wildcard':
      if (identifier === undefined) missing('identifier');
      if (wildcards.length > 1) throw new ProtocolError('DUPLICATE_SEGMENT', 'more than one matching wildcard');
      return {
        type: typeName,
        sender,
        sequence,
        identity,
        identifier,
        wildcard: wildcards.length === 1 ? wildcards[0]!.affinity : undefined,
        agentInterestData,
        managerInterestData,
        packet,
      };
    case 'interest-match-fixed':
      if (identifier === undefined) missing('identifier');
      return { type: typeName, sender, sequence, identity, identifier, agentInterestData, managerInterestData, packet };
    case 'ip-packet-only':
      if (packet === undefined) missing('packet');
      return { type: typeName, sender, sequence, packet };
    case 'replication':
      if (entries.length === 0) missing('entries');
      return { type: typeName, sender, sequence, entries };
    case 'replication-ack':
      if (acked === undefined) missing('acked');
      return { type: typeName, sender, sequence, acked };
    case 'resync-request':
    case 'resync-done':
      if (resync === undefined) missing('resync');
      return { type: typeName, sender, sequence, resync };
    case 'resync-data':
      if (resync === undefined) missing('resync');
      return { type: typeName, sender, sequence, resync, entries };
    case 'heartbeat':
      if (heartbeat === undefined) missing('heartbeat');
      return { type: typeName, sender, sequence, identity, heartbeat };
  }
}

/**
 * The affinity update-deny answering a refused message: `error` is the UNPROCESSABLE_SEGMENT (or other)
 * ProtocolError thrown by decodeMessage for it. Returns undefined when the error carries no header
 * (the datagram was too broken to say who sent it or what it was).
 */
export function denyFor(
  error: ProtocolError,
  from: { sender: number; sequence: number },
  echo: { wildcards?: WildcardAffinity[]; fixed?: FixedAffinity[] } = {},
): ServiceMessage | undefined {
  if (error.messageType === undefined || error.sequence === undefined) return undefined;
  const deniedType = NAME_BY_CODE[error.messageType];
  if (deniedType === undefined) return undefined;
  return {
    type: 'affinity-update-deny',
    sender: from.sender,
    sequence: from.sequence,
    deniedType,
    deniedSequence: error.sequence,
    denied: error.segments ?? [],
    wildcards: echo.wildcards ?? [],
    fixed: echo.fixed ?? [],
  };
}
