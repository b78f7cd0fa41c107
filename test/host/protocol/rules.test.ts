// The protocol's processing rules: optional vs required segments, placement of the security segment and of
// action lists, what a receiver reports for an update-deny, and what the encoder refuses.
import { describe, expect, it } from 'vitest';
import {
  decodeMessage,
  denyFor,
  DenyReason,
  encodeMessage,
  encodeMessageInto,
  ipToU32,
  u32ToIp,
  prefixToMask,
  Keyring,
  ProtocolError,
  SegmentType,
  type FixedAffinity,
  type ServiceMessage,
  type ProtocolErrorCode,
} from '../../../host/protocol/index.ts';

const fixedAffinity: FixedAffinity = {
  protocol: 17,
  srcAddr: ipToU32('10.0.0.1'),
  dstAddr: ipToU32('192.0.2.10'),
  srcPort: 5000,
  dstPort: 53,
  flags: 0,
  ttlMs: 10_000,
};

const update: ServiceMessage = {
  type: 'affinity-update-fixed',
  sender: 9,
  sequence: 41,
  fixed: [{ affinity: fixedAffinity, actions: [{ kind: 'nat', dstAddr: ipToU32('10.1.0.5') }] }],
};

/** A segment as bytes: type (with required flag), length, data, zero padding. */
function segment(code: number, required: boolean, data: Uint8Array): Buffer {
  const padded = (data.length + 3) & ~3;
  const b = Buffer.alloc(4 + padded);
  b.writeUInt16BE(code | (required ? 0x8000 : 0), 0);
  b.writeUInt16BE(data.length, 2);
  Buffer.from(data).copy(b, 4);
  return b;
}

/** `datagram` with `extra` inserted at `at` and the header length fixed. */
function insert(datagram: Buffer, at: number, extra: Buffer): Buffer {
  const b = Buffer.concat([datagram.subarray(0, at), extra, datagram.subarray(at)]);
  b.writeUInt32BE(b.length, 4);
  return b;
}

function errorOf(fn: () => unknown): ProtocolError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ProtocolError) return e;
    throw e;
  }
  throw new Error('expected a ProtocolError');
}

function codeOf(fn: () => unknown): ProtocolErrorCode {
  return errorOf(fn).code;
}

describe('segments the receiver does not know', () => {
  const bytes = encodeMessage(update);

  it('skips an unknown optional segment anywhere between affinities', () => {
    const b = insert(bytes, 20, segment(0x0321, false, Buffer.from('future extension')));
    expect(decodeMessage(b)).toStrictEqual(decodeMessage(bytes));
  });

  it('drops the whole message for an unknown required segment and lists every offending one', () => {
    let b = insert(bytes, 20, segment(0x0321, true, Buffer.from('abc')));
    const secondAt = b.length;
    b = insert(b, b.length, segment(0x0400, true, Buffer.alloc(0)));
    const e = errorOf(() => decodeMessage(b));
    expect(e.code).toBe('UNPROCESSABLE_SEGMENT');
    expect(e.segments).toEqual([
      { segmentType: 0x0321, offset: 20, reason: DenyReason.UnknownRequiredSegment },
      { segmentType: 0x0400, offset: secondAt, reason: DenyReason.UnknownRequiredSegment },
    ]);
    expect(e.messageType).toBe(2);
    expect(e.sender).toBe(9);
    expect(e.sequence).toBe(41);
  });

  it('treats a known segment that does not belong in this message type like an unknown one', () => {
    const heartbeatData = Buffer.alloc(16);
    heartbeatData[0] = 1;
    const optional = insert(bytes, bytes.length, segment(SegmentType.HeartbeatData, false, heartbeatData));
    expect(decodeMessage(optional).type).toBe('affinity-update-fixed');
    const required = insert(bytes, bytes.length, segment(SegmentType.HeartbeatData, true, heartbeatData));
    expect(errorOf(() => decodeMessage(required)).segments).toEqual([
      { segmentType: SegmentType.HeartbeatData, offset: bytes.length, reason: DenyReason.SegmentNotAllowed },
    ]);
  });

  it('reports an unknown required action inside an action list with its own offset', () => {
    // fixed affinity at 20 (24 bytes), action list at 44: header 4, NAT action at 48 (20 bytes)
    const b = Buffer.from(bytes);
    expect(b.readUInt16BE(44)).toBe(0x8000 | SegmentType.ActionList);
    expect(b.readUInt16BE(48)).toBe(0x8000 | SegmentType.ActionNat);
    b.writeUInt16BE(0x8000 | 0x2f, 48); // an action code this receiver does not implement
    expect(errorOf(() => decodeMessage(b)).segments).toEqual([
      { segmentType: 0x2f, offset: 48, reason: DenyReason.UnknownRequiredSegment },
    ]);
    b.writeUInt16BE(0x2f, 48); // the same, optional: skipped, the affinity keeps no actions
    const m = decodeMessage(b);
    expect(m.type === 'affinity-update-fixed' && m.fixed[0]!.actions).toEqual([]);
  });

  it('builds the affinity update-deny that answers a refused update, and it round-trips', () => {
    const b = insert(bytes, 20, segment(0x0321, true, Buffer.alloc(4)));
    const e = errorOf(() => decodeMessage(b));
    const deny = denyFor(e, { sender: 77, sequence: 1000 }, { fixed: [fixedAffinity] });
    expect(deny).toStrictEqual({
      type: 'affinity-update-deny',
      sender: 77,
      sequence: 1000,
      deniedType: 'affinity-update-fixed',
      deniedSequence: 41,
      denied: [{ segmentType: 0x0321, offset: 20, reason: DenyReason.UnknownRequiredSegment }],
      wildcards: [],
      fixed: [fixedAffinity],
    });
    expect(decodeMessage(encodeMessage(deny!))).toStrictEqual({ ...deny, identity: undefined });
    expect(denyFor(errorOf(() => decodeMessage(Buffer.alloc(3))), { sender: 1, sequence: 1 })).toBeUndefined();
  });
});

describe('placement rules', () => {
  it('binds each action list to the affinity right before it, for several affinities in one message', () => {
    const two: ServiceMessage = {
      ...update,
      fixed: [
        { affinity: fixedAffinity, actions: [{ kind: 'dispatch', nextHop: 0 }] },
        { affinity: { ...fixedAffinity, srcPort: 5001 }, actions: [] },
        { affinity: { ...fixedAffinity, srcPort: 5002 }, actions: [{ kind: 'advertise', addr: 1, mask: 0xffffff00 }] },
      ],
    };
    const m = decodeMessage(encodeMessage(two));
    if (m.type !== 'affinity-update-fixed') throw new Error('type');
    expect(m.fixed.map((e) => [e.affinity.srcPort, e.actions.map((a) => a.kind)])).toEqual([
      [5000, ['dispatch']],
      [5001, []],
      [5002, ['advertise']],
    ]);
  });

  it('refuses an action list that does not follow an affinity', () => {
    const bytes = encodeMessage(update);
    // move the action list (at 44) before the fixed affinity (at 20)
    const list = bytes.subarray(44);
    const b = Buffer.concat([bytes.subarray(0, 20), list, bytes.subarray(20, 44)]);
    expect(codeOf(() => decodeMessage(b))).toBe('ORPHAN_ACTION_LIST');
  });

  it('accepts the security segment only right after the header', () => {
    const signed = encodeMessage(update, { security: new Keyring([{ id: 1, secret: 'k' }]) });
    const sec = signed.subarray(20, 60);
    const moved = Buffer.concat([signed.subarray(0, 20), signed.subarray(60), sec]);
    expect(codeOf(() => decodeMessage(moved))).toBe('SECURITY_MISPLACED');
  });

  it('IP packet only messages carry no security segment: the encoder leaves it out, the decoder refuses one', () => {
    const keyring = new Keyring([{ id: 1, secret: 'k' }]);
    const msg: ServiceMessage = { type: 'ip-packet-only', sender: 1, sequence: 1, packet: Buffer.from([0x45, 0, 0, 20]) };
    const b = encodeMessage(msg, { security: keyring });
    expect(b.equals(encodeMessage(msg))).toBe(true);
    const withSecurity = insert(b, 20, segment(SegmentType.Security, true, Buffer.from([1, 0, 0, 1, ...new Array<number>(32).fill(0)])));
    expect(codeOf(() => decodeMessage(withSecurity))).toBe('SECURITY_NOT_ALLOWED');
  });

  it('refuses duplicated single segments and missing mandatory ones', () => {
    const im: ServiceMessage = {
      type: 'interest-match-fixed',
      sender: 1,
      sequence: 2,
      identifier: { ...fixedAffinity, reason: 1 },
      packet: Buffer.from([0x45]),
    };
    const b = encodeMessage(im);
    const packetSeg = b.subarray(b.length - 8);
    expect(codeOf(() => decodeMessage(insert(b, b.length, packetSeg)))).toBe('DUPLICATE_SEGMENT');
    const noIdentifier = Buffer.concat([b.subarray(0, 20), packetSeg]);
    noIdentifier.writeUInt32BE(noIdentifier.length, 4);
    expect(errorOf(() => decodeMessage(noIdentifier))).toMatchObject({ code: 'MISSING_SEGMENT', field: 'identifier' });
  });
});

describe('datagram shape', () => {
  const bytes = encodeMessage(update);
  it.each<[string, (b: Buffer) => Buffer, ProtocolErrorCode]>([
    ['shorter than a header', (b) => b.subarray(0, 19), 'TOO_SHORT'],
    ['another protocol version', (b) => Buffer.from([2, ...b.subarray(1)]), 'BAD_VERSION'],
    ['an unknown message type', (b) => Buffer.from([1, 99, ...b.subarray(2)]), 'UNKNOWN_MESSAGE_TYPE'],
    ['a length field that disagrees with the datagram', (b) => b.subarray(0, b.length - 4), 'LENGTH_MISMATCH'],
    [
      'a segment running past the end',
      (b) => {
        const c = Buffer.from(b);
        c.writeUInt16BE(200, 22);
        return c;
      },
      'TRUNCATED_SEGMENT',
    ],
    [
      'a fixed-size segment of the wrong size',
      (b) => {
        const c = Buffer.from(b);
        c.writeUInt16BE(16, 22);
        return c;
      },
      'BAD_SEGMENT_LENGTH',
    ],
    [
      'a sequence number beyond 2^53',
      (b) => {
        const c = Buffer.from(b);
        c.writeUInt32BE(0x00200000, 12);
        return c;
      },
      'BAD_FIELD',
    ],
  ])('refuses %s', (_what, change, code) => {
    expect(codeOf(() => decodeMessage(change(bytes)))).toBe(code);
  });

  it('ignores the reserved header flags and segment padding contents', () => {
    const b = encodeMessage({ ...update, managerInterestData: Buffer.from('m1') });
    expect(b.readUInt16BE(20)).toBe(SegmentType.ManagerInterestData);
    expect(b.readUInt16BE(22)).toBe(2); // two data bytes at 24, padding at 26..27
    const c = Buffer.from(b);
    c.writeUInt16BE(0xffff, 2);
    c[26] = 0xaa;
    c[27] = 0x55;
    expect(decodeMessage(c)).toStrictEqual(decodeMessage(b));
  });
});

describe('encoder validation names the wrong field', () => {
  it.each<[string, ServiceMessage, string]>([
    ['a port over 65535', { ...update, fixed: [{ affinity: { ...fixedAffinity, srcPort: 70000 }, actions: [] }] }, 'fixed[0].affinity.srcPort'],
    [
      'a negative NAT address in the second action',
      { ...update, fixed: [{ affinity: fixedAffinity, actions: [{ kind: 'dispatch', nextHop: 1 }, { kind: 'nat', dstAddr: -1 }] }] },
      'fixed[0].actions[1].dstAddr',
    ],
    ['a NAT rewriting nothing', { ...update, fixed: [{ affinity: fixedAffinity, actions: [{ kind: 'nat' }] }] }, 'fixed[0].actions[0].nat'],
    ['a fractional TTL', { ...update, fixed: [{ affinity: { ...fixedAffinity, ttlMs: 1.5 }, actions: [] }] }, 'fixed[0].affinity.ttlMs'],
    ['no fixed affinity at all', { ...update, fixed: [] }, 'fixed'],
    ['a sender over u32', { ...update, sender: 2 ** 32 }, 'sender'],
    ['an unsafe sequence number', { ...update, sequence: 2 ** 53 }, 'sequence'],
    ['an empty IP packet', { type: 'ip-packet-only', sender: 1, sequence: 1, packet: new Uint8Array(0) }, 'packet'],
    [
      'a host name with a space',
      { type: 'heartbeat', sender: 1, sequence: 1, identity: { addr: 1, hostName: 'a b' }, heartbeat: { role: 'primary', resyncState: 'none', epoch: 1, backupPrecedence: 1, intervalMs: 50 } },
      'identity.hostName',
    ],
    [
      'an unknown heartbeat role',
      { type: 'heartbeat', sender: 1, sequence: 1, heartbeat: { role: 'leader' as 'primary', resyncState: 'none', epoch: 1, backupPrecedence: 1, intervalMs: 50 } },
      'heartbeat.role',
    ],
    [
      'a replication entry with a bad backend port',
      { type: 'replication', sender: 1, sequence: 1, entries: [{ affinity: fixedAffinity, remainingMs: 1, backendAddr: 1, backendPort: -5, owner: 1, actions: [] }] },
      'entries[0].backendPort',
    ],
  ])('%s', (_what, msg, field) => {
    const e = errorOf(() => encodeMessage(msg));
    expect(e.code).toBe('BAD_FIELD');
    expect(e.field).toBe(field);
    expect(e.message).toContain(field);
  });

  it('refuses a type name that is not a message type, even one every object has', () => {
    for (const type of ['constructor', 'toString', 'heartbeats']) {
      expect(errorOf(() => encodeMessage({ ...update, type } as unknown as ServiceMessage))).toMatchObject({ code: 'BAD_FIELD', field: 'type' });
    }
    const deny = { type: 'affinity-update-deny', sender: 1, sequence: 1, deniedType: 'constructor', deniedSequence: 1, denied: [], wildcards: [], fixed: [] };
    expect(errorOf(() => encodeMessage(deny as unknown as ServiceMessage))).toMatchObject({ code: 'BAD_FIELD', field: 'deniedType' });
  });

  it('refuses a message over 64 KiB', () => {
    const msg: ServiceMessage = { type: 'ip-packet-only', sender: 1, sequence: 1, packet: Buffer.alloc(65520) };
    expect(codeOf(() => encodeMessage(msg))).toBe('TOO_LARGE');
    expect(encodeMessage({ ...msg, packet: Buffer.alloc(65512) }).length).toBe(65536);
  });
});

describe('padding', () => {
  it('is zero even when the encoder scratch held other bytes before', () => {
    encodeMessage({ type: 'ip-packet-only', sender: 1, sequence: 1, packet: Buffer.alloc(2000, 0xff) });
    const b = encodeMessage({ ...update, managerInterestData: Buffer.from([7]), agentInterestData: Buffer.from([1, 2, 3]) });
    // manager interest data at 20: 1 byte + 3 padding; agent interest data at 28: 3 bytes + 1 padding
    expect(b.subarray(20, 36).toString('hex')).toBe('00080001' + '07000000' + '00090003' + '01020300');
  });
});

describe('encodeMessageInto', () => {
  it('writes the same bytes as encodeMessage at an offset, and refuses a target too small', () => {
    const keyring = new Keyring([{ id: 3, secret: 'x' }]);
    const expected = encodeMessage(update, { security: keyring });
    const target = Buffer.alloc(expected.length + 10, 0xee);
    expect(encodeMessageInto(update, target, 7, { security: keyring })).toBe(expected.length);
    expect(target.subarray(7, 7 + expected.length).equals(expected)).toBe(true);
    expect(target[6]).toBe(0xee);
    expect(target[7 + expected.length]).toBe(0xee);
    expect(codeOf(() => encodeMessageInto(update, Buffer.alloc(expected.length - 1), 0, { security: keyring }))).toBe('BUFFER_TOO_SMALL');
  });
});

describe('addresses', () => {
  it('converts dotted quads and prefixes', () => {
    expect(ipToU32('192.0.2.10')).toBe(0xc000020a);
    expect(u32ToIp(0xc000020a)).toBe('192.0.2.10');
    expect(u32ToIp(ipToU32('255.255.255.255'))).toBe('255.255.255.255');
    expect(prefixToMask(24)).toBe(0xffffff00);
    expect(prefixToMask(0)).toBe(0);
    expect(prefixToMask(32)).toBe(0xffffffff);
    for (const bad of ['1.2.3', '256.1.1.1', 'a.b.c.d', '1.2.3.4 ']) expect(codeOf(() => ipToU32(bad))).toBe('BAD_FIELD');
  });
});
