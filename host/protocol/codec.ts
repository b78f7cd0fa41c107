// Service message codec: ServiceMessage objects ⇄ datagrams. docs/protocol.md is the byte layout.
//
// Invariants of the decoder:
// - every read is preceded by a bounds check against the datagram length (the header length field must
//   equal the datagram length); segment walking only moves forward, by at least 4 bytes a step, and action
//   lists nest exactly one level, so work is linear in the datagram length;
// - byte payloads (IP packet, interest data) are subarray views of the datagram, never copies;
// - anything malformed throws ProtocolError with a code; nothing else is thrown.
// The encoder validates every field and writes in one pass, into a reusable scratch buffer
// (`encodeMessage`) or straight into the caller's buffer (`encodeMessageInto`).
import * as C from './constants.ts';
import type { MessageTypeCode, MessageTypeName } from './constants.ts';
import { ProtocolError, type DeniedSegment } from './errors.ts';
import { computeMac, type Keyring, type SecurityVerifier } from './security.ts';
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
const MESSAGE_TYPE_CODES = C.MESSAGE_TYPE_CODES;
const MESSAGE_TYPE_NAMES = C.MESSAGE_TYPE_NAMES;
const MessageType = C.MessageType;
const NatField = C.NatField;
const InterestCriteriaFlag = C.InterestCriteriaFlag;
const PROTOCOL_VERSION = C.PROTOCOL_VERSION;
const REQUIRED_FLAG = C.REQUIRED_FLAG;
const RESYNC_STATES = C.RESYNC_STATES;
const ROLE_NAMES = C.ROLE_NAMES;
const HeartbeatRole = C.HeartbeatRole;
const SEGMENT_HEADER_BYTES = C.SEGMENT_HEADER_BYTES;
const SegmentBytes = C.SegmentBytes;
const SegmentType = C.SegmentType;
const ServicePrecedenceFlag = C.ServicePrecedenceFlag;
const DenyReason = C.DenyReason;

export interface EncodeOptions {
  /** Sign with the keyring's send key (not applied to IP packet only messages, which carry none). */
  security?: Keyring | undefined;
}

export interface DecodeOptions {
  /** Verify the security segment and the sequence number; see SecurityVerifier. */
  security?: SecurityVerifier | undefined;
}

const TWO_32 = 4294967296;
/** Segments the encoder marks required; the rest (informational) are sent optional. */
const OPTIONAL_ON_SEND = new Uint8Array(64);
OPTIONAL_ON_SEND[SegmentType.IdentityInfo] = 1;
OPTIONAL_ON_SEND[SegmentType.ManagerInterestData] = 1;
OPTIONAL_ON_SEND[SegmentType.AgentInterestData] = 1;
const KNOWN_SEGMENT = new Uint8Array(64);
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
const ALLOWED = new Uint8Array(256 * 64);
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
const IS_ACTION = new Uint8Array(64);
for (const c of ACTION_CODES) IS_ACTION[c] = 1;

/** Type name by wire code; undefined for codes that are not message types. */
const NAME_BY_CODE: Array<MessageTypeName | undefined> = new Array<MessageTypeName | undefined>(256).fill(undefined);
for (const [code, name] of Object.entries(MESSAGE_TYPE_NAMES)) NAME_BY_CODE[Number(code)] = name;

// ───────────────────────────────────────────── encoding ─────────────────────────────────────────────

const scratch = Buffer.allocUnsafe(MAX_MESSAGE_BYTES);
/** Current output and its limit (absolute index one past the last writable byte). */
let out: Uint8Array = scratch;
let lim = 0;

function badField(field: string, value: unknown, what: string): never {
  throw new ProtocolError('BAD_FIELD', `must be ${what}, got ${describe(value)}`, { field });
}

function describe(v: unknown): string {
  if (typeof v === 'string') return JSON.stringify(v);
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  return String(v);
}

function u8(v: number, field: string): number {
  if ((v & 0xff) !== v) badField(field, v, 'an integer 0..255');
  return v;
}
function u16(v: number, field: string): number {
  if ((v & 0xffff) !== v) badField(field, v, 'an integer 0..65535');
  return v;
}
function u32(v: number, field: string): number {
  if (v >>> 0 !== v) badField(field, v, 'an integer 0..4294967295');
  return v;
}
function bool(v: boolean, field: string): boolean {
  if (v !== true && v !== false) badField(field, v, 'a boolean');
  return v;
}

function w16(o: number, v: number): void {
  out[o] = v >>> 8;
  out[o + 1] = v;
}
function w32(o: number, v: number): void {
  out[o] = v >>> 24;
  out[o + 1] = v >>> 16;
  out[o + 2] = v >>> 8;
  out[o + 3] = v;
}
function wSeq(o: number, seq: number, field: string): void {
  if (!Number.isSafeInteger(seq) || seq < 0) badField(field, seq, 'an integer 0..2^53-1');
  w32(o, Math.floor(seq / TWO_32));
  w32(o + 4, seq >>> 0);
}

/**
 * Writes a segment header for `len` data bytes at `o` after checking room for the padded segment, and
 * zeroes the padding. Returns the data offset.
 */
function segment(o: number, code: number, len: number): number {
  if (len > 0xffff) throw new ProtocolError('TOO_LARGE', `segment ${code} data of ${len} bytes exceeds 65535`);
  const padded = (len + 3) & ~3;
  if (o + SEGMENT_HEADER_BYTES + padded > lim) roomError(o + SEGMENT_HEADER_BYTES + padded);
  w16(o, OPTIONAL_ON_SEND[code] === 1 ? code : code | REQUIRED_FLAG);
  w16(o + 2, len);
  const d = o + SEGMENT_HEADER_BYTES;
  for (let i = d + len; i < d + padded; i++) out[i] = 0;
  return d;
}
let roomIsTarget = false;
function roomError(need: number): never {
  if (roomIsTarget) throw new ProtocolError('BUFFER_TOO_SMALL', `message needs more than the target's room (${need} bytes)`);
  throw new ProtocolError('TOO_LARGE', `message exceeds ${MAX_MESSAGE_BYTES} bytes`);
}
function end(d: number, len: number): number {
  return d + ((len + 3) & ~3);
}

function writeIdentity(o: number, id: IdentityInfo): number {
  const name = id.hostName;
  if (typeof name !== 'string' || name.length > MAX_HOST_NAME_BYTES) {
    badField('identity.hostName', name, `a string of at most ${MAX_HOST_NAME_BYTES} printable ASCII characters`);
  }
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c < 0x21 || c > 0x7e) badField('identity.hostName', name, 'printable ASCII without spaces');
  }
  const len = SegmentBytes.IdentityInfoHead + name.length;
  const d = segment(o, SegmentType.IdentityInfo, len);
  w32(d, u32(id.addr, 'identity.addr'));
  for (let i = 0; i < name.length; i++) out[d + 4 + i] = name.charCodeAt(i);
  return end(d, len);
}

function writeKeyFields(d: number, k: FixedAffinity | AffinityIdentifier): void {
  out[d] = u8(k.protocol, 'protocol');
  out[d + 1] = 0;
  w16(d + 2, u16(k.flags, 'flags'));
  w32(d + 4, u32(k.srcAddr, 'srcAddr'));
  w32(d + 8, u32(k.dstAddr, 'dstAddr'));
  w16(d + 12, u16(k.srcPort, 'srcPort'));
  w16(d + 14, u16(k.dstPort, 'dstPort'));
}

function writeFixed(o: number, f: FixedAffinity): number {
  const d = segment(o, SegmentType.FixedAffinity, SegmentBytes.FixedAffinity);
  writeKeyFields(d, f);
  w32(d + 16, u32(f.ttlMs, 'ttlMs'));
  return d + SegmentBytes.FixedAffinity;
}

function writeIdentifier(o: number, f: AffinityIdentifier): number {
  const d = segment(o, SegmentType.AffinityIdentifier, SegmentBytes.AffinityIdentifier);
  writeKeyFields(d, f);
  w32(d + 16, u32(f.reason, 'reason'));
  return d + SegmentBytes.AffinityIdentifier;
}

function writeWildcard(o: number, w: WildcardAffinity): number {
  const d = segment(o, SegmentType.WildcardAffinity, SegmentBytes.WildcardAffinity);
  out[d] = u8(w.protocol, 'protocol');
  out[d + 1] = 0;
  w16(d + 2, u16(w.flags, 'flags'));
  w32(d + 4, u32(w.srcAddr, 'srcAddr'));
  w32(d + 8, u32(w.srcMask, 'srcMask'));
  w32(d + 12, u32(w.dstAddr, 'dstAddr'));
  w32(d + 16, u32(w.dstMask, 'dstMask'));
  w16(d + 20, u16(w.srcPort, 'srcPort'));
  w16(d + 22, u16(w.dstPort, 'dstPort'));
  w32(d + 24, u32(w.ttlMs, 'ttlMs'));
  return d + SegmentBytes.WildcardAffinity;
}

function writeServicePrecedence(o: number, p: ServicePrecedence): number {
  const d = segment(o, SegmentType.ServicePrecedence, SegmentBytes.ServicePrecedence);
  out[d] = bool(p.wildcardFirst, 'servicePrecedence.wildcardFirst') ? ServicePrecedenceFlag.WildcardFirst : 0;
  out[d + 1] = 0;
  w16(d + 2, 0);
  w32(d + 4, u32(p.value, 'servicePrecedence.value'));
  return d + SegmentBytes.ServicePrecedence;
}

function writeU32Segment(o: number, code: number, v: number, field: string): number {
  const d = segment(o, code, 4);
  w32(d, u32(v, field));
  return d + 4;
}

function writeBytes(o: number, code: number, bytes: Uint8Array, field: string, minLength: number): number {
  if (!(bytes instanceof Uint8Array) || bytes.length < minLength) {
    badField(field, bytes, minLength > 0 ? `a Uint8Array of at least ${minLength} byte(s)` : 'a Uint8Array');
  }
  const d = segment(o, code, bytes.length);
  out.set(bytes, d);
  return end(d, bytes.length);
}

function writeAction(o: number, a: Action): number {
  switch (a.kind) {
    case 'nat': {
      const d = segment(o, SegmentType.ActionNat, SegmentBytes.ActionNat);
      let which = 0;
      if (a.srcAddr !== undefined) which |= NatField.SrcAddr;
      if (a.srcPort !== undefined) which |= NatField.SrcPort;
      if (a.dstAddr !== undefined) which |= NatField.DstAddr;
      if (a.dstPort !== undefined) which |= NatField.DstPort;
      if (which === 0) badField('nat', 'nothing', 'at least one of srcAddr, srcPort, dstAddr, dstPort');
      out[d] = which;
      out[d + 1] = 0;
      w16(d + 2, 0);
      w32(d + 4, a.srcAddr === undefined ? 0 : u32(a.srcAddr, 'srcAddr'));
      w32(d + 8, a.dstAddr === undefined ? 0 : u32(a.dstAddr, 'dstAddr'));
      w16(d + 12, a.srcPort === undefined ? 0 : u16(a.srcPort, 'srcPort'));
      w16(d + 14, a.dstPort === undefined ? 0 : u16(a.dstPort, 'dstPort'));
      return d + SegmentBytes.ActionNat;
    }
    case 'advertise': {
      const len = a.mask === undefined ? SegmentBytes.ActionAdvertise : SegmentBytes.ActionAdvertiseWithMask;
      const d = segment(o, SegmentType.ActionAdvertise, len);
      w32(d, u32(a.addr, 'addr'));
      if (a.mask !== undefined) w32(d + 4, u32(a.mask, 'mask'));
      return d + len;
    }
    case 'sequence-adjust': {
      const d = segment(o, SegmentType.ActionSequenceAdjust, SegmentBytes.ActionSequenceAdjust);
      w32(d, u32(a.seqDelta, 'seqDelta'));
      w32(d + 4, u32(a.initialSeq, 'initialSeq'));
      w32(d + 8, u32(a.ackDelta, 'ackDelta'));
      w32(d + 12, u32(a.initialAck, 'initialAck'));
      return d + SegmentBytes.ActionSequenceAdjust;
    }
    case 'interest-criteria': {
      const d = segment(o, SegmentType.ActionInterestCriteria, SegmentBytes.ActionInterestCriteria);
      w32(d, u32(a.addr, 'addr'));
      w16(d + 4, u16(a.port, 'port'));
      w16(d + 6, u16(a.mask, 'mask'));
      out[d + 8] =
        (bool(a.data, 'data') ? InterestCriteriaFlag.Data : 0) |
        (bool(a.copy, 'copy') ? InterestCriteriaFlag.Copy : 0) |
        (bool(a.hold, 'hold') ? InterestCriteriaFlag.Hold : 0);
      out[d + 9] = 0;
      w16(d + 10, 0);
      return d + SegmentBytes.ActionInterestCriteria;
    }
    case 'dispatch': {
      const d = segment(o, SegmentType.ActionDispatch, SegmentBytes.ActionDispatch);
      w32(d, u32(a.nextHop, 'nextHop'));
      return d + SegmentBytes.ActionDispatch;
    }
    default:
      return badField('kind', (a as { kind: unknown }).kind, 'an action kind');
  }
}

/** Action list segment holding `actions` as nested segments; nothing when there are no actions. */
function writeActionList(o: number, actions: readonly Action[], field: string): number {
  if (!Array.isArray(actions)) badField(field, actions, 'an array of actions');
  if (actions.length === 0) return o;
  if (o + SEGMENT_HEADER_BYTES > lim) roomError(o + SEGMENT_HEADER_BYTES);
  const d = o + SEGMENT_HEADER_BYTES;
  let p = d;
  for (let i = 0; i < actions.length; i++) {
    try {
      p = writeAction(p, actions[i]!);
    } catch (e) {
      throw prefixed(e, `${field}[${i}].`);
    }
  }
  const len = p - d;
  if (len > 0xffff) throw new ProtocolError('TOO_LARGE', `action list of ${len} bytes exceeds 65535`, { field });
  w16(o, SegmentType.ActionList | REQUIRED_FLAG);
  w16(o + 2, len);
  return p;
}

function prefixed(e: unknown, prefix: string): unknown {
  return e instanceof ProtocolError && e.code === 'BAD_FIELD' ? e.withFieldPrefix(prefix) : e;
}

function writeReplicationEntry(o: number, e: ReplicationEntry): number {
  const d = segment(o, SegmentType.ReplicationEntry, SegmentBytes.ReplicationEntry);
  const f = e.affinity;
  if (typeof f !== 'object' || f === null) badField('affinity', f, 'a fixed affinity');
  try {
    writeKeyFields(d, f);
    w32(d + 16, u32(f.ttlMs, 'ttlMs'));
  } catch (err) {
    throw prefixed(err, 'affinity.');
  }
  w32(d + 20, u32(e.remainingMs, 'remainingMs'));
  w32(d + 24, u32(e.backendAddr, 'backendAddr'));
  w16(d + 28, u16(e.backendPort, 'backendPort'));
  w16(d + 30, 0);
  w32(d + 32, u32(e.owner, 'owner'));
  return writeActionList(d + SegmentBytes.ReplicationEntry, e.actions, 'actions');
}

function writeEntries<T>(o: number, list: readonly T[], field: string, write: (o: number, e: T) => number): number {
  if (!Array.isArray(list)) badField(field, list, 'an array');
  for (let i = 0; i < list.length; i++) {
    try {
      o = write(o, list[i]!);
    } catch (e) {
      throw prefixed(e, `${field}[${i}].`);
    }
  }
  return o;
}

function writeWildcardEntry(o: number, e: WildcardEntry): number {
  o = writeWildcardIn(o, e.affinity);
  return writeActionList(o, e.actions, 'actions');
}
function writeFixedEntry(o: number, e: FixedEntry): number {
  o = writeFixedIn(o, e.affinity);
  return writeActionList(o, e.actions, 'actions');
}
function writeWildcardIn(o: number, w: WildcardAffinity): number {
  if (typeof w !== 'object' || w === null) badField('affinity', w, 'a wildcard affinity');
  try {
    return writeWildcard(o, w);
  } catch (e) {
    throw prefixed(e, 'affinity.');
  }
}
function writeFixedIn(o: number, f: FixedAffinity): number {
  if (typeof f !== 'object' || f === null) badField('affinity', f, 'a fixed affinity');
  try {
    return writeFixed(o, f);
  } catch (e) {
    throw prefixed(e, 'affinity.');
  }
}

function writeMarker(o: number, m: ResyncMarker): number {
  if (typeof m !== 'object' || m === null) badField('resync', m, 'a resync marker');
  const d = segment(o, SegmentType.ResyncMarker, SegmentBytes.ResyncMarker);
  w32(d, u32(m.resyncId, 'resync.resyncId'));
  w32(d + 4, u32(m.epoch, 'resync.epoch'));
  w32(d + 8, u32(m.entryCount, 'resync.entryCount'));
  return d + SegmentBytes.ResyncMarker;
}

function writeHeartbeat(o: number, h: HeartbeatData): number {
  if (typeof h !== 'object' || h === null) badField('heartbeat', h, 'heartbeat data');
  const d = segment(o, SegmentType.HeartbeatData, SegmentBytes.HeartbeatData);
  const role = h.role === 'primary' ? HeartbeatRole.Primary : h.role === 'backup' ? HeartbeatRole.Backup : 0;
  if (role === 0) badField('heartbeat.role', h.role, "'primary' or 'backup'");
  const state = RESYNC_STATES.indexOf(h.resyncState);
  if (state < 0) badField('heartbeat.resyncState', h.resyncState, RESYNC_STATES.join(' | '));
  out[d] = role;
  out[d + 1] = state;
  w16(d + 2, 0);
  w32(d + 4, u32(h.epoch, 'heartbeat.epoch'));
  w32(d + 8, u32(h.backupPrecedence, 'heartbeat.backupPrecedence'));
  w32(d + 12, u32(h.intervalMs, 'heartbeat.intervalMs'));
  return d + SegmentBytes.HeartbeatData;
}

function writeDenyReport(o: number, deniedType: MessageTypeName, deniedSequence: number, denied: readonly DeniedSegment[]): number {
  const typeCode = MESSAGE_TYPE_CODES[deniedType];
  if (typeCode === undefined) badField('deniedType', deniedType, 'a message type name');
  if (!Array.isArray(denied) || denied.length > 0xffff) badField('denied', denied, 'an array of denied segments');
  const len = SegmentBytes.DenyReportHead + denied.length * SegmentBytes.DenyReportEntry;
  const d = segment(o, SegmentType.DenyReport, len);
  out[d] = typeCode;
  out[d + 1] = 0;
  w16(d + 2, denied.length);
  wSeq(d + 4, deniedSequence, 'deniedSequence');
  let p = d + SegmentBytes.DenyReportHead;
  for (let i = 0; i < denied.length; i++) {
    const s = denied[i]!;
    const f = `denied[${i}].`;
    const code = u16(s.segmentType, `${f}segmentType`);
    if (code > 0x7fff) badField(`${f}segmentType`, code, 'a segment type code 0..32767');
    w16(p, code);
    w16(p + 2, u16(s.reason, `${f}reason`));
    w32(p + 4, u32(s.offset, `${f}offset`));
    p += SegmentBytes.DenyReportEntry;
  }
  return p;
}

function writeOptional<T>(o: number, v: T | undefined, write: (o: number, v: T) => number): number {
  return v === undefined ? o : write(o, v);
}

function writeBody(o: number, m: ServiceMessage): number {
  switch (m.type) {
    case 'affinity-update-wildcard':
      if (!Array.isArray(m.wildcards) || m.wildcards.length === 0) badField('wildcards', m.wildcards, 'at least one wildcard');
      o = writeOptional(o, m.identity, writeIdentity);
      o = writeOptional(o, m.servicePrecedence, writeServicePrecedence);
      if (m.backupPrecedence !== undefined) o = writeU32Segment(o, SegmentType.BackupPrecedence, m.backupPrecedence, 'backupPrecedence');
      if (m.managerInterestData !== undefined) o = writeBytes(o, SegmentType.ManagerInterestData, m.managerInterestData, 'managerInterestData', 0);
      return writeEntries(o, m.wildcards, 'wildcards', writeWildcardEntry);
    case 'affinity-update-fixed':
      if (!Array.isArray(m.fixed) || m.fixed.length === 0) badField('fixed', m.fixed, 'at least one fixed affinity');
      o = writeOptional(o, m.identity, writeIdentity);
      if (m.managerInterestData !== undefined) o = writeBytes(o, SegmentType.ManagerInterestData, m.managerInterestData, 'managerInterestData', 0);
      if (m.agentInterestData !== undefined) o = writeBytes(o, SegmentType.AgentInterestData, m.agentInterestData, 'agentInterestData', 0);
      o = writeEntries(o, m.fixed, 'fixed', writeFixedEntry);
      if (m.packet !== undefined) o = writeBytes(o, SegmentType.IpPacket, m.packet, 'packet', 1);
      return o;
    case 'affinity-update-deny':
      o = writeOptional(o, m.identity, writeIdentity);
      o = writeDenyReport(o, m.deniedType, m.deniedSequence, m.denied);
      o = writeEntries(o, m.wildcards, 'wildcards', writeWildcard);
      return writeEntries(o, m.fixed, 'fixed', writeFixed);
    case 'interest-match-wildcard':
    case 'interest-match-fixed':
      o = writeOptional(o, m.identity, writeIdentity);
      if (typeof m.identifier !== 'object' || m.identifier === null) badField('identifier', m.identifier, 'an affinity identifier');
      try {
        o = writeIdentifier(o, m.identifier);
      } catch (e) {
        throw prefixed(e, 'identifier.');
      }
      if (m.type === 'interest-match-wildcard' && m.wildcard !== undefined) {
        try {
          o = writeWildcard(o, m.wildcard);
        } catch (e) {
          throw prefixed(e, 'wildcard.');
        }
      }
      if (m.agentInterestData !== undefined) o = writeBytes(o, SegmentType.AgentInterestData, m.agentInterestData, 'agentInterestData', 0);
      if (m.managerInterestData !== undefined) o = writeBytes(o, SegmentType.ManagerInterestData, m.managerInterestData, 'managerInterestData', 0);
      if (m.packet !== undefined) o = writeBytes(o, SegmentType.IpPacket, m.packet, 'packet', 1);
      return o;
    case 'ip-packet-only':
      return writeBytes(o, SegmentType.IpPacket, m.packet, 'packet', 1);
    case 'replication':
      if (!Array.isArray(m.entries) || m.entries.length === 0) badField('entries', m.entries, 'at least one replication entry');
      return writeEntries(o, m.entries, 'entries', writeReplicationEntry);
    case 'replication-ack': {
      const acked = m.acked;
      if (!Array.isArray(acked) || acked.length === 0) badField('acked', acked, 'at least one sequence number');
      const len = acked.length * SegmentBytes.ReplicationAckEntry;
      const d = segment(o, SegmentType.ReplicationAck, len);
      for (let i = 0; i < acked.length; i++) wSeq(d + i * 8, acked[i]!, `acked[${i}]`);
      return d + len;
    }
    case 'resync-request':
    case 'resync-done':
      return writeMarker(o, m.resync);
    case 'resync-data':
      o = writeMarker(o, m.resync);
      return writeEntries(o, m.entries, 'entries', writeReplicationEntry);
    case 'heartbeat':
      o = writeOptional(o, m.identity, writeIdentity);
      return writeHeartbeat(o, m.heartbeat);
    default:
      return badField('type', (m as { type: unknown }).type, 'a message type name');
  }
}

/** Encodes into `target` from `start` (at most 64 KiB); returns the message length. */
function encodeAt(msg: ServiceMessage, target: Uint8Array, start: number, limit: number, keyring: Keyring | undefined): number {
  if (typeof msg !== 'object' || msg === null) badField('message', msg, 'a service message');
  const typeCode = MESSAGE_TYPE_CODES[msg.type];
  if (typeCode === undefined) badField('type', msg.type, 'a message type name');
  out = target;
  lim = limit;
  if (start + HEADER_BYTES > lim) roomError(start + HEADER_BYTES);
  out[start] = PROTOCOL_VERSION;
  out[start + 1] = typeCode;
  w16(start + 2, 0);
  w32(start + 8, u32(msg.sender, 'sender'));
  wSeq(start + 12, msg.sequence, 'sequence');
  let o = start + HEADER_BYTES;
  let macAt = -1;
  const key = keyring !== undefined && typeCode !== MessageType.IpPacketOnly ? keyring.sendKey : undefined;
  if (key !== undefined) {
    const len = 4 + key.macBytes;
    const d = segment(o, SegmentType.Security, len);
    out[d] = key.algorithmCode;
    out[d + 1] = 0;
    w16(d + 2, key.id);
    macAt = d + 4;
    o = d + len;
  }
  o = writeBody(o, msg);
  const total = o - start;
  w32(start + 4, total);
  if (key !== undefined) {
    const mac = computeMac(key, target.subarray(start, o), macAt - start);
    for (let i = 0; i < key.macBytes; i++) out[macAt + i] = mac.charCodeAt(i);
  }
  return total;
}

/** Encodes a message into a new Buffer. Throws ProtocolError BAD_FIELD (with `field`) on invalid input. */
export function encodeMessage(msg: ServiceMessage, opts?: EncodeOptions): Buffer {
  roomIsTarget = false;
  const len = encodeAt(msg, scratch, 0, MAX_MESSAGE_BYTES, opts?.security);
  const b = Buffer.allocUnsafe(len);
  scratch.copy(b, 0, 0, len);
  return b;
}

/**
 * Encodes a message into `target` at `offset` without allocating; returns its length.
 * Throws BUFFER_TOO_SMALL when it does not fit (the target may then hold a partial message).
 */
export function encodeMessageInto(msg: ServiceMessage, target: Uint8Array, offset = 0, opts?: EncodeOptions): number {
  if (!Number.isInteger(offset) || offset < 0 || offset > target.length) badField('offset', offset, 'an offset inside target');
  roomIsTarget = target.length - offset < MAX_MESSAGE_BYTES;
  return encodeAt(msg, target, offset, Math.min(target.length, offset + MAX_MESSAGE_BYTES), opts?.security);
}

// ───────────────────────────────────────────── decoding ─────────────────────────────────────────────

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
