// Golden vectors: one datagram per message type in test/fixtures/protocol/<type>.hex. Each must decode to
// the object written out below and encode back to the same bytes. After a deliberate wire change,
// regenerate with `WASMLB_WRITE_GOLDEN=1 npx vitest run test/host/protocol/golden.test.ts` and review the diff.
import { createHmac, createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  decodeMessage,
  encodeMessage,
  FixedAffinityFlag,
  IdentifierFlag,
  InterestBit,
  DenyReason,
  ipToU32,
  Keyring,
  SecurityVerifier,
  SegmentType,
  WildcardAffinityFlag,
  prefixToMask,
  type ServiceMessage,
} from '../../../host/protocol/index.ts';

const FIXTURES = fileURLToPath(new URL('../../fixtures/protocol/', import.meta.url));
const WRITE = process.env['WASMLB_WRITE_GOLDEN'] === '1';

const ip = ipToU32;
/** A 40-byte TCP SYN 10.0.0.1:40000 → 192.0.2.10:80 (checksums not meaningful here: opaque bytes). */
const SYN = Buffer.from(
  '4500002800010000400600000a000001c000020a9c400050000003e80000000050022000' + '00000000',
  'hex',
);

const vip = ip('192.0.2.10');
const client = ip('10.0.0.1');
const backend = ip('10.1.0.5');
const managerAddr = ip('10.9.0.1');

const flowKey = { protocol: 6, srcAddr: client, dstAddr: vip, srcPort: 40000, dstPort: 80 };
const replyKey = { protocol: 6, srcAddr: backend, dstAddr: client, srcPort: 8080, dstPort: 40000 };

const webWildcard = {
  protocol: 6,
  srcAddr: 0,
  srcMask: 0,
  dstAddr: vip,
  dstMask: prefixToMask(32),
  srcPort: 0,
  dstPort: 80,
  flags: WildcardAffinityFlag.NewFlowsOnly,
  ttlMs: 3000,
};

const GOLDEN: Record<ServiceMessage['type'], ServiceMessage> = {
  'affinity-update-wildcard': {
    type: 'affinity-update-wildcard',
    sender: 0x0a090001,
    sequence: 1,
    identity: { addr: managerAddr, hostName: 'mgr-a' },
    servicePrecedence: { value: 100, wildcardFirst: false },
    backupPrecedence: 200,
    managerInterestData: undefined,
    wildcards: [
      {
        affinity: webWildcard,
        actions: [
          { kind: 'interest-criteria', addr: managerAddr, port: 1701, mask: InterestBit.Syn, data: true, copy: false, hold: true },
          { kind: 'advertise', addr: vip, mask: undefined },
        ],
      },
    ],
  },
  'affinity-update-fixed': {
    type: 'affinity-update-fixed',
    sender: 0x0a090001,
    sequence: 2,
    identity: undefined,
    managerInterestData: Buffer.from('m1'),
    agentInterestData: Buffer.from('cookie42'),
    fixed: [
      {
        affinity: { ...flowKey, flags: FixedAffinityFlag.Information, ttlMs: 10000 },
        actions: [{ kind: 'nat', srcAddr: undefined, srcPort: undefined, dstAddr: backend, dstPort: 8080 }],
      },
      {
        affinity: { ...replyKey, flags: 0, ttlMs: 10000 },
        actions: [
          { kind: 'nat', srcAddr: vip, srcPort: 80, dstAddr: undefined, dstPort: undefined },
          { kind: 'sequence-adjust', seqDelta: 0xfffffc18, initialSeq: 1000, ackDelta: 1000, initialAck: 2000 },
        ],
      },
    ],
    packet: SYN,
  },
  'affinity-update-deny': {
    type: 'affinity-update-deny',
    sender: 0x0a000001,
    sequence: 3,
    identity: undefined,
    deniedType: 'affinity-update-fixed',
    deniedSequence: 2,
    denied: [
      { segmentType: 0x7abc, offset: 48, reason: DenyReason.UnknownRequiredSegment },
      { segmentType: SegmentType.ActionAdvertise, offset: 96, reason: DenyReason.UnsupportedAction },
    ],
    wildcards: [],
    fixed: [{ ...flowKey, flags: 0, ttlMs: 10000 }],
  },
  'interest-match-wildcard': {
    type: 'interest-match-wildcard',
    sender: 0x0a000001,
    sequence: 4,
    identity: { addr: ip('10.0.0.254'), hostName: 'router1.example' },
    identifier: { ...flowKey, flags: 0, reason: InterestBit.Syn | InterestBit.All },
    wildcard: webWildcard,
    agentInterestData: Buffer.from('cookie42'),
    managerInterestData: undefined,
    packet: SYN,
  },
  'interest-match-fixed': {
    type: 'interest-match-fixed',
    sender: 0x0a000001,
    sequence: 5,
    identity: undefined,
    identifier: { ...flowKey, flags: IdentifierFlag.Dispatched, reason: InterestBit.Fin | InterestBit.Ack | InterestBit.All },
    agentInterestData: undefined,
    managerInterestData: Buffer.from('m1'),
    packet: undefined,
  },
  'ip-packet-only': { type: 'ip-packet-only', sender: 0x0a090001, sequence: 6, packet: SYN },
  replication: {
    type: 'replication',
    sender: 0x0a090001,
    sequence: 7,
    entries: [
      {
        affinity: { ...flowKey, flags: 0, ttlMs: 10000 },
        remainingMs: 13500,
        backendAddr: backend,
        backendPort: 8080,
        owner: 0x0a090001,
        actions: [{ kind: 'nat', srcAddr: undefined, srcPort: undefined, dstAddr: backend, dstPort: 8080 }],
      },
      {
        affinity: { ...replyKey, flags: 0, ttlMs: 10000 },
        remainingMs: 13500,
        backendAddr: backend,
        backendPort: 8080,
        owner: 0x0a090001,
        actions: [],
      },
    ],
  },
  'replication-ack': { type: 'replication-ack', sender: 0x0a090002, sequence: 8, acked: [7, 0x1_0000_0001] },
  'resync-request': { type: 'resync-request', sender: 0x0a090002, sequence: 9, resync: { resyncId: 77, epoch: 3, entryCount: 0 } },
  'resync-data': {
    type: 'resync-data',
    sender: 0x0a090001,
    sequence: 10,
    resync: { resyncId: 77, epoch: 3, entryCount: 1 },
    entries: [
      {
        affinity: { ...flowKey, flags: 0, ttlMs: 10000 },
        remainingMs: 9000,
        backendAddr: backend,
        backendPort: 8080,
        owner: 0x0a090001,
        actions: [{ kind: 'dispatch', nextHop: ip('10.1.0.1') }],
      },
    ],
  },
  'resync-done': { type: 'resync-done', sender: 0x0a090001, sequence: 11, resync: { resyncId: 77, epoch: 3, entryCount: 1 } },
  heartbeat: {
    type: 'heartbeat',
    sender: 0x0a090002,
    sequence: 12,
    identity: { addr: ip('10.9.0.2'), hostName: 'mgr-b' },
    heartbeat: { role: 'backup', resyncState: 'complete', epoch: 3, backupPrecedence: 100, intervalMs: 50 },
  },
};

function fixture(name: string): Buffer {
  const path = `${FIXTURES}${name}.hex`;
  return Buffer.from(readFileSync(path, 'utf8').replace(/\s+/g, ''), 'hex');
}

/** Hex with one 16-byte row per line, so a diff of a fixture points at the offset. */
function toHexRows(b: Buffer): string {
  const rows: string[] = [];
  for (let i = 0; i < b.length; i += 16) rows.push(b.subarray(i, i + 16).toString('hex'));
  return rows.join('\n') + '\n';
}

const keyring = new Keyring([{ id: 7, secret: 'golden-secret', algorithm: 'hmac-sha256' }]);
const md5Keyring = new Keyring([{ id: 9, secret: 'golden-md5', algorithm: 'keyed-md5' }]);

describe('golden vectors', () => {
  if (WRITE) {
    for (const [name, msg] of Object.entries(GOLDEN)) writeFileSync(`${FIXTURES}${name}.hex`, toHexRows(encodeMessage(msg)));
    writeFileSync(`${FIXTURES}affinity-update-fixed.hmac-sha256.hex`, toHexRows(encodeMessage(GOLDEN['affinity-update-fixed'], { security: keyring })));
    writeFileSync(`${FIXTURES}heartbeat.keyed-md5.hex`, toHexRows(encodeMessage(GOLDEN.heartbeat, { security: md5Keyring })));
  }

  for (const [name, msg] of Object.entries(GOLDEN)) {
    it(`${name}: decodes to the expected message and encodes back to the same bytes`, () => {
      const bytes = fixture(name);
      expect(bytes[1]).not.toBe(0);
      expect(decodeMessage(bytes)).toStrictEqual(msg);
      expect(encodeMessage(msg).equals(bytes)).toBe(true);
    });
  }

  it('the header of every vector is at the documented offsets', () => {
    const codes: Record<string, number> = {
      'affinity-update-wildcard': 1,
      'affinity-update-fixed': 2,
      'affinity-update-deny': 3,
      'interest-match-wildcard': 4,
      'interest-match-fixed': 5,
      'ip-packet-only': 6,
      replication: 16,
      'replication-ack': 17,
      'resync-request': 18,
      'resync-data': 19,
      'resync-done': 20,
      heartbeat: 21,
    };
    for (const [name, msg] of Object.entries(GOLDEN)) {
      const b = fixture(name);
      expect(b[0], name).toBe(1);
      expect(b[1], name).toBe(codes[name]);
      expect(b.readUInt16BE(2), name).toBe(0);
      expect(b.readUInt32BE(4), name).toBe(b.length);
      expect(b.readUInt32BE(8), name).toBe(msg.sender);
      expect(Number(b.readBigUInt64BE(12)), name).toBe(msg.sequence);
    }
  });

  it('ip-packet-only is laid out byte for byte as docs/protocol.md says', () => {
    // header (20) + IP packet segment: type 0x800a (required, code 10), length 40, 40 bytes, no padding
    const expected = Buffer.concat([
      Buffer.from('01' + '06' + '0000' + '00000040' + '0a090001' + '0000000000000006', 'hex'),
      Buffer.from('800a' + '0028', 'hex'),
      SYN,
    ]);
    expect(fixture('ip-packet-only').equals(expected)).toBe(true);
  });

  it('affinity-update-fixed places the fixed affinity and its NAT action as documented', () => {
    const b = fixture('affinity-update-fixed');
    // after the header: manager interest data (optional, code 8, "m1" + 2 pad), agent interest data (code 9)
    expect(b.subarray(20, 28).toString('hex')).toBe('00080002' + '6d310000');
    expect(b.subarray(28, 32).toString('hex')).toBe('00090008');
    // first fixed affinity at 40: type 0x8004, length 20, protocol 6, reserved, flags 1, src, dst, ports, ttl
    expect(b.subarray(40, 64).toString('hex')).toBe(
      '80040014' + '06' + '00' + '0001' + '0a000001' + 'c000020a' + '9c40' + '0050' + '00002710',
    );
    // its action list (0x8010, 20 bytes) holding one NAT action (0x8020, 16 bytes, which = dst addr|dst port)
    expect(b.subarray(64, 88).toString('hex')).toBe(
      '80100014' + '80200010' + '0c' + '00' + '0000' + '00000000' + '0a010005' + '0000' + '1f90',
    );
  });

  it('a signed vector carries an RFC 2104 HMAC-SHA256 over the datagram with the MAC zeroed', () => {
    const b = fixture('affinity-update-fixed.hmac-sha256');
    // security segment right after the header: 0x8001, length 36, algorithm 1, key id 7
    expect(b.subarray(20, 28).toString('hex')).toBe('80010024' + '01' + '00' + '0007');
    const mac = Buffer.from(b.subarray(28, 60));
    const zeroed = Buffer.from(b);
    zeroed.fill(0, 28, 60);
    expect(mac.equals(createHmac('sha256', 'golden-secret').update(zeroed).digest())).toBe(true);
    const verifier = new SecurityVerifier({ keyring });
    expect(decodeMessage(b, { security: verifier })).toStrictEqual(GOLDEN['affinity-update-fixed']);
    expect(encodeMessage(GOLDEN['affinity-update-fixed'], { security: keyring }).equals(b)).toBe(true);
    expect(verifier.counters.accepted).toBe(1);
  });

  it('a keyed-MD5 vector carries MD5(key ‖ datagram with MAC zeroed ‖ key)', () => {
    const b = fixture('heartbeat.keyed-md5');
    expect(b.subarray(20, 28).toString('hex')).toBe('80010014' + '02' + '00' + '0009');
    const mac = Buffer.from(b.subarray(28, 44));
    const zeroed = Buffer.from(b);
    zeroed.fill(0, 28, 44);
    const key = Buffer.from('golden-md5');
    expect(mac.equals(createHash('md5').update(key).update(zeroed).update(key).digest())).toBe(true);
    const verifier = new SecurityVerifier({ keyring: md5Keyring });
    expect(decodeMessage(b, { security: verifier })).toStrictEqual(GOLDEN.heartbeat);
  });

  it('decoded byte payloads are views of the datagram, not copies', () => {
    const b = fixture('affinity-update-fixed');
    const m = decodeMessage(b);
    if (m.type !== 'affinity-update-fixed' || m.packet === undefined) throw new Error('unexpected decode');
    expect(m.packet.buffer).toBe(b.buffer);
    b[b.length - 1] ^= 0xff;
    expect(m.packet[m.packet.length - 1]).toBe(b[b.length - 1]);
  });
});
