// Encoder: ServiceMessage objects → datagrams. docs/protocol.md is the byte layout.
// Every field is validated (a ProtocolError BAD_FIELD names it by path, e.g. `fixed[0].actions[1].dstPort`)
// and the message is written in one pass, into a reusable scratch buffer (`encodeMessage`, which returns a
// right-sized copy) or straight into the caller's buffer (`encodeMessageInto`). When signing, the MAC is
// computed last (over a copy with the MAC field zeroed, see security.ts) and written into its field.
import * as C from './constants.ts';
import type { MessageTypeName } from './constants.ts';
import { ProtocolError, type DeniedSegment } from './errors.ts';
import * as P from './placement.ts';
import { computeMac, type Keyring } from './security.ts';
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
const MessageType = C.MessageType;
const NatField = C.NatField;
const InterestCriteriaFlag = C.InterestCriteriaFlag;
const PROTOCOL_VERSION = C.PROTOCOL_VERSION;
const REQUIRED_FLAG = C.REQUIRED_FLAG;
const RESYNC_STATES = C.RESYNC_STATES;
const HeartbeatRole = C.HeartbeatRole;
const SEGMENT_HEADER_BYTES = C.SEGMENT_HEADER_BYTES;
const SegmentBytes = C.SegmentBytes;
const SegmentType = C.SegmentType;
const ServicePrecedenceFlag = C.ServicePrecedenceFlag;
const TWO_32 = P.TWO_32;
const OPTIONAL_ON_SEND = P.OPTIONAL_ON_SEND;

export interface EncodeOptions {
  /** Sign with the keyring's send key (not applied to IP packet only messages, which carry none). */
  security?: Keyring | undefined;
}

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

/**
 * Encodes into `target` from `start` (at most 64 KiB); returns the message length. The header's
 * sender and sequence come from the arguments (a channel numbers messages without copying them).
 */
function encodeAt(
  msg: ServiceMessage | UnnumberedMessage,
  sender: number,
  sequence: number,
  target: Uint8Array,
  start: number,
  limit: number,
  keyring: Keyring | undefined,
): number {
  const typeCode = MESSAGE_TYPE_CODES[msg.type];
  if (typeCode === undefined) badField('type', msg.type, 'a message type name');
  out = target;
  lim = limit;
  if (start + HEADER_BYTES > lim) roomError(start + HEADER_BYTES);
  out[start] = PROTOCOL_VERSION;
  out[start + 1] = typeCode;
  w16(start + 2, 0);
  w32(start + 8, u32(sender, 'sender'));
  wSeq(start + 12, sequence, 'sequence');
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
  o = writeBody(o, msg as ServiceMessage);
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
  if (typeof msg !== 'object' || msg === null) badField('message', msg, 'a service message');
  roomIsTarget = false;
  const len = encodeAt(msg, msg.sender, msg.sequence, scratch, 0, MAX_MESSAGE_BYTES, opts?.security);
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
  if (typeof msg !== 'object' || msg === null) badField('message', msg, 'a service message');
  roomIsTarget = target.length - offset < MAX_MESSAGE_BYTES;
  return encodeAt(msg, msg.sender, msg.sequence, target, offset, Math.min(target.length, offset + MAX_MESSAGE_BYTES), opts?.security);
}

/** A message without its header's sender and sequence (a channel supplies those). */
export type UnnumberedMessage = ServiceMessage extends infer M ? (M extends ServiceMessage ? Omit<M, 'sender' | 'sequence'> : never) : never;

/**
 * `encodeMessageInto` for a message whose header sender and sequence are given apart from it: the
 * same bytes as encoding `{ ...msg, sender, sequence }`, without building that object. Throws
 * BUFFER_TOO_SMALL when it does not fit in `target` from `offset` (a partial message may be left).
 */
export function encodeNumberedInto(
  msg: UnnumberedMessage,
  sender: number,
  sequence: number,
  target: Uint8Array,
  offset: number,
  opts?: EncodeOptions,
): number {
  if (!Number.isInteger(offset) || offset < 0 || offset > target.length) badField('offset', offset, 'an offset inside target');
  if (typeof msg !== 'object' || msg === null) badField('message', msg, 'a service message');
  roomIsTarget = target.length - offset < MAX_MESSAGE_BYTES;
  return encodeAt(msg, sender, sequence, target, offset, Math.min(target.length, offset + MAX_MESSAGE_BYTES), opts?.security);
}

/** `encodeMessage` with the header's sender and sequence given apart from the message. */
export function encodeNumbered(msg: UnnumberedMessage, sender: number, sequence: number, opts?: EncodeOptions): Buffer {
  if (typeof msg !== 'object' || msg === null) badField('message', msg, 'a service message');
  roomIsTarget = false;
  const len = encodeAt(msg, sender, sequence, scratch, 0, MAX_MESSAGE_BYTES, opts?.security);
  const b = Buffer.allocUnsafe(len);
  scratch.copy(b, 0, 0, len);
  return b;
}
