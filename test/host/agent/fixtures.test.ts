// Table-driven packet fixtures: input bytes -> expected output bytes -> expected verdict.
// Expected bytes are built independently with the test packet builder (full RFC 1071 checksums over the
// rewritten fields), never produced by the firmware.

import { beforeEach, describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import {
  ForwardingFirmware, InterestBit, ipv4, prefixMask, type DescriptorInput, type FixedAffinity,
  type VerdictName, type DropReasonName, type WildcardAffinity,
} from '../../../host/agent/wasm.ts';
import { ICMP, TCP, UDP, buildFragments, buildPacket, fromHex, hex, pseudoSum, rfc1071, type PacketSpec } from './packets.ts';
import { NOW, catchAll, loadSmall, runOne } from './helpers.ts';

const CLIENT = ipv4('192.0.2.10');
const VIP = ipv4('198.51.100.1');
const REAL = ipv4('10.1.0.7');
const NATSRC = ipv4('203.0.113.5');
const ROUTER = ipv4('10.9.9.9');

const base: PacketSpec = { proto: TCP, saddr: CLIENT, daddr: VIP, sport: 40000, dport: 80, flags: 0x18, seq: 1000, ack: 2000, payload: new Uint8Array([0xde, 0xad, 0xbe, 0xef, 0x01]) };
const udp: PacketSpec = { proto: UDP, saddr: CLIENT, daddr: VIP, sport: 5353, dport: 53, payload: new Uint8Array([1, 2, 3, 4, 5, 6, 7]) };
const key = (s: PacketSpec) => ({ proto: s.proto, saddr: s.saddr, daddr: s.daddr, sport: s.sport ?? 0, dport: s.dport ?? 0 });
const sack = (pre: number[], edges: number[], post: number[]): Uint8Array => {
  const b = [...pre, 5, 2 + edges.length * 4];
  for (const e of edges) b.push((e >>> 24) & 255, (e >>> 16) & 255, (e >>> 8) & 255, e & 255);
  b.push(...post);
  return new Uint8Array(b);
};

/** A UDP payload word that makes the rewritten datagram's checksum compute to 0 (sent as 0xFFFF). */
function udpZeroPayload(after: PacketSpec): Uint8Array {
  const withZero = { ...after, payload: new Uint8Array([0, 0]) };
  const l4 = new Uint8Array([0, 0, 0, 0, 0, 10, 0, 0, 0, 0]);
  l4[0] = (withZero.sport! >> 8) & 255; l4[1] = withZero.sport! & 255; l4[2] = (withZero.dport! >> 8) & 255; l4[3] = withZero.dport! & 255;
  const s = ~rfc1071(l4, pseudoSum(after.saddr, after.daddr, UDP, 10)) & 0xffff; // folded sum without the word
  const w = (0xffff - s) & 0xffff;
  return new Uint8Array([w >> 8, w & 255]);
}

interface Case {
  name: string;
  wildcards?: WildcardAffinity[];
  fixed?: FixedAffinity[];
  input: Uint8Array;
  /** Expected bytes after (defaults to the input, unchanged). */
  output?: Uint8Array;
  verdict: VerdictName;
  reason?: DropReasonName;
  nextHop?: number;
  fixedHit?: boolean;
  wildcardHit?: boolean;
  attach?: boolean;
  interestBits?: number;
  descriptor?: DescriptorInput;
  length?: number; // captured length override
}

const dnat = { natDstAddr: REAL, natDstPort: 8080 };
const zeroPayload = udpZeroPayload({ ...udp, daddr: REAL, dport: 5300 });
const [frag1, frag2] = buildFragments({ ...udp, payload: new Uint8Array(40).fill(7) }, 24);
const [frag1Nat, frag2Nat] = buildFragments({ ...udp, daddr: REAL, dport: 5300, payload: new Uint8Array(40).fill(7) }, 24);
const [tfrag1, tfrag2] = buildFragments({ ...base, payload: new Uint8Array(64).fill(3) }, 32);
const [tfrag1Nat, tfrag2Nat] = buildFragments({ ...base, daddr: REAL, dport: 8080, payload: new Uint8Array(64).fill(3) }, 32);
const ipOpts = new Uint8Array([0x94, 0x04, 0x00, 0x00]); // router alert
const icmpEcho = { proto: ICMP, saddr: CLIENT, daddr: VIP, payload: new Uint8Array([8, 0, 0, 0, 0, 1, 0, 1, 0x61, 0x62]) };

const cases: Case[] = [
  { name: 'TCP destination NAT (address + port)', fixed: [{ ...key(base), ttlSec: 10, owner: 1, ...dnat }], input: buildPacket(base), output: buildPacket({ ...base, daddr: REAL, dport: 8080 }), verdict: 'FORWARD', fixedHit: true },
  { name: 'TCP source NAT (address + port)', fixed: [{ ...key(base), ttlSec: 10, owner: 1, natSrcAddr: NATSRC, natSrcPort: 61000 }], input: buildPacket(base), output: buildPacket({ ...base, saddr: NATSRC, sport: 61000 }), verdict: 'FORWARD', fixedHit: true },
  { name: 'TCP source and destination NAT (extension entry)', fixed: [{ ...key(base), ttlSec: 10, owner: 1, natSrcAddr: NATSRC, natSrcPort: 61000, ...dnat }], input: buildPacket(base), output: buildPacket({ ...base, saddr: NATSRC, sport: 61000, daddr: REAL, dport: 8080 }), verdict: 'FORWARD', fixedHit: true },
  { name: 'TCP destination address only', fixed: [{ ...key(base), ttlSec: 10, owner: 1, natDstAddr: REAL }], input: buildPacket(base), output: buildPacket({ ...base, daddr: REAL }), verdict: 'FORWARD' },
  { name: 'TCP source port only', fixed: [{ ...key(base), ttlSec: 10, owner: 1, natSrcPort: 1 }], input: buildPacket(base), output: buildPacket({ ...base, sport: 1 }), verdict: 'FORWARD' },
  { name: 'TCP with IP options, destination NAT', fixed: [{ ...key(base), ttlSec: 10, owner: 1, ...dnat }], input: buildPacket({ ...base, ipOptions: ipOpts }), output: buildPacket({ ...base, ipOptions: ipOpts, daddr: REAL, dport: 8080 }), verdict: 'FORWARD' },
  { name: 'TCP with options (MSS, NOP, wscale), destination NAT', fixed: [{ ...key(base), ttlSec: 10, owner: 1, ...dnat }], input: buildPacket({ ...base, flags: 2, payload: new Uint8Array(0), tcpOptions: new Uint8Array([2, 4, 5, 0xb4, 1, 3, 3, 7]) }), output: buildPacket({ ...base, flags: 2, payload: new Uint8Array(0), tcpOptions: new Uint8Array([2, 4, 5, 0xb4, 1, 3, 3, 7]), daddr: REAL, dport: 8080 }), verdict: 'FORWARD' },
  { name: 'UDP destination NAT', fixed: [{ ...key(udp), ttlSec: 10, owner: 1, natDstAddr: REAL, natDstPort: 5300 }], input: buildPacket(udp), output: buildPacket({ ...udp, daddr: REAL, dport: 5300 }), verdict: 'FORWARD', fixedHit: true },
  { name: 'UDP checksum 0 stays 0', fixed: [{ ...key(udp), ttlSec: 10, owner: 1, natDstAddr: REAL, natDstPort: 5300 }], input: buildPacket({ ...udp, udpNoChecksum: true }), output: buildPacket({ ...udp, udpNoChecksum: true, daddr: REAL, dport: 5300 }), verdict: 'FORWARD' },
  { name: 'UDP checksum computing to 0 is sent as 0xFFFF', fixed: [{ ...key(udp), ttlSec: 10, owner: 1, natDstAddr: REAL, natDstPort: 5300 }], input: buildPacket({ ...udp, payload: zeroPayload }), output: buildPacket({ ...udp, payload: zeroPayload, daddr: REAL, dport: 5300 }), verdict: 'FORWARD' },
  { name: 'UDP first fragment: ports and whole-datagram checksum rewritten', fixed: [{ ...key(udp), ttlSec: 10, owner: 1, natDstAddr: REAL, natDstPort: 5300 }], input: frag1, output: frag1Nat, verdict: 'FORWARD', fixedHit: true },
  { name: 'UDP non-first fragment: address only (no ports in it)', fixed: [{ ...key(udp), sport: 0, dport: 0, ttlSec: 10, owner: 1, natDstAddr: REAL, natDstPort: 5300 }], input: frag2, output: frag2Nat, verdict: 'FORWARD', fixedHit: true },
  { name: 'TCP first fragment, destination NAT', fixed: [{ ...key(base), ttlSec: 10, owner: 1, ...dnat }], input: tfrag1, output: tfrag1Nat, verdict: 'FORWARD', fixedHit: true },
  { name: 'TCP non-first fragment, address only', fixed: [{ ...key(base), sport: 0, dport: 0, ttlSec: 10, owner: 1, ...dnat }], input: tfrag2, output: tfrag2Nat, verdict: 'FORWARD', fixedHit: true },
  { name: 'ICMP destination NAT: IP level only', fixed: [{ ...key(icmpEcho), ttlSec: 10, owner: 1, natDstAddr: REAL }], input: buildPacket(icmpEcho), output: buildPacket({ ...icmpEcho, daddr: REAL }), verdict: 'FORWARD', fixedHit: true },
  {
    name: 'sequence adjust: seq and ack past their initial values, SACK edges',
    fixed: [{ ...key(base), ttlSec: 10, owner: 1, seqAdjust: { seqInit: 500, seqDelta: 100, ackInit: 1500, ackDelta: 0xffffff00 } }],
    input: buildPacket({ ...base, tcpOptions: sack([1, 1], [1600, 1700, 1000, 1100], []) }),
    output: buildPacket({ ...base, seq: 1100, ack: 2000 - 256, tcpOptions: sack([1, 1], [1600 - 256, 1700 - 256, 1000, 1100], []) }),
    verdict: 'FORWARD',
  },
  {
    name: 'sequence adjust: SACK block at an odd offset',
    fixed: [{ ...key(base), ttlSec: 10, owner: 1, seqAdjust: { seqInit: 0, seqDelta: 0, ackInit: 1500, ackDelta: 7 } }],
    input: buildPacket({ ...base, tcpOptions: sack([1], [1600, 1700], [1]) }),
    output: buildPacket({ ...base, ack: 2007, tcpOptions: sack([1], [1607, 1707], [1]) }),
    verdict: 'FORWARD',
  },
  {
    name: 'sequence adjust wraps mod 2^32 (serial arithmetic)',
    fixed: [{ ...key(base), ttlSec: 10, owner: 1, seqAdjust: { seqInit: 0xfffffff0, seqDelta: 0x20, ackInit: 0, ackDelta: 0 } }],
    input: buildPacket({ ...base, seq: 0x00000005 }),
    output: buildPacket({ ...base, seq: 0x00000025 }),
    verdict: 'FORWARD',
  },
  {
    // 0xffffffff → 0 changes the bytes though the checksum delta is a ones'-complement zero: still rewritten
    name: 'sequence adjust to 0 from 0xffffffff counts as a rewrite',
    fixed: [{ ...key(base), ttlSec: 10, owner: 1, seqAdjust: { seqInit: 0x80000000, seqDelta: 1, ackInit: 0, ackDelta: 0 } }],
    input: buildPacket({ ...base, seq: 0xffffffff }),
    output: buildPacket({ ...base, seq: 0 }),
    verdict: 'FORWARD',
  },
  {
    name: 'sequence adjust: seq before the initial value is left alone',
    fixed: [{ ...key(base), ttlSec: 10, owner: 1, seqAdjust: { seqInit: 5000, seqDelta: 100, ackInit: 5000, ackDelta: 100 } }],
    input: buildPacket(base), verdict: 'FORWARD',
  },
  { name: 'dispatch: next hop = forward IP, destination untouched', fixed: [{ ...key(base), ttlSec: 10, owner: 1, dispatch: ROUTER }], input: buildPacket(base), verdict: 'FORWARD', nextHop: ROUTER, fixedHit: true },
  { name: 'dispatch + destination NAT', fixed: [{ ...key(base), ttlSec: 10, owner: 1, dispatch: ROUTER, ...dnat }], input: buildPacket(base), output: buildPacket({ ...base, daddr: REAL, dport: 8080 }), verdict: 'FORWARD', nextHop: ROUTER },
  { name: 'dispatch to 0 drops after statistics', fixed: [{ ...key(base), ttlSec: 10, owner: 1, dispatch: 0, info: true }], input: buildPacket(base), verdict: 'DROP', reason: 'DISPATCH_ZERO' },
  { name: 'drop action', fixed: [{ ...key(base), ttlSec: 10, owner: 1, drop: true }], input: buildPacket(base), verdict: 'DROP', reason: 'ACTION' },
  { name: 'wildcard static NAT without a manager', wildcards: [catchAll({ owner: 5, proto: UDP, daddr: VIP, dmask: prefixMask(32), dport: 53, natDstAddr: REAL })], input: buildPacket(udp), output: buildPacket({ ...udp, daddr: REAL }), verdict: 'FORWARD', wildcardHit: true },
  { name: 'wildcard interest (all packets, data flag) sends the packet to the manager untouched', wildcards: [catchAll({ owner: 5, proto: TCP, daddr: VIP, dmask: prefixMask(32), dport: 80, interest: { mask: InterestBit.ALL, target: 3, data: true }, natDstAddr: REAL })], input: buildPacket(base), verdict: 'TO_MANAGER', attach: true, interestBits: InterestBit.ALL, wildcardHit: true },
  { name: 'SYN interest with hold flag', wildcards: [catchAll({ owner: 5, proto: TCP, daddr: VIP, dmask: prefixMask(32), interest: { mask: InterestBit.SYN, target: 1, hold: true } })], input: buildPacket({ ...base, flags: 2, payload: new Uint8Array(0) }), verdict: 'HOLD', attach: false, interestBits: InterestBit.SYN },
  { name: 'FIN interest with copy flag: NAT applied, forwarded, copy attached', fixed: [{ ...key(base), ttlSec: 10, owner: 1, ...dnat, interest: { mask: InterestBit.FIN | InterestBit.RST, target: 2, copy: true } }], input: buildPacket({ ...base, flags: 0x11 }), output: buildPacket({ ...base, flags: 0x11, daddr: REAL, dport: 8080 }), verdict: 'COPY', attach: true, interestBits: InterestBit.FIN },
  { name: 'interest without data/copy/hold: forwarded, manager notified (COPY without attach)', fixed: [{ ...key(base), ttlSec: 10, owner: 1, ...dnat, interest: { mask: InterestBit.RST, target: 2 } }], input: buildPacket({ ...base, flags: 0x14 }), output: buildPacket({ ...base, flags: 0x14, daddr: REAL, dport: 8080 }), verdict: 'COPY', attach: false, interestBits: InterestBit.RST },
  { name: 'interest mask not matched: plain forward', fixed: [{ ...key(base), ttlSec: 10, owner: 1, ...dnat, interest: { mask: InterestBit.FIN, target: 2, data: true } }], input: buildPacket(base), output: buildPacket({ ...base, daddr: REAL, dport: 8080 }), verdict: 'FORWARD', interestBits: 0 },
  { name: 'first data bit on a fixed affinity', fixed: [{ ...key(base), ttlSec: 10, owner: 1, interest: { mask: InterestBit.FIRST_DATA, target: 2, data: true } }], input: buildPacket(base), verdict: 'TO_MANAGER', interestBits: InterestBit.FIRST_DATA },
  { name: 'UDP fragment interest bit', wildcards: [catchAll({ owner: 5, proto: UDP, interest: { mask: InterestBit.FRAGMENT, target: 1, data: true } })], input: frag2, verdict: 'TO_MANAGER', interestBits: InterestBit.FRAGMENT },
  { name: 'returned by its manager: interest suppressed, actions applied', fixed: [{ ...key(base), ttlSec: 10, owner: 1, ...dnat, interest: { mask: InterestBit.ALL, target: 2, data: true } }], input: buildPacket(base), output: buildPacket({ ...base, daddr: REAL, dport: 8080 }), verdict: 'FORWARD', descriptor: { seenByOwner: 1 } },
  { name: 'advertised prefix without affinity is dropped', wildcards: [catchAll({ owner: 5, proto: TCP, daddr: ipv4('198.51.100.0'), dmask: prefixMask(24), dport: 443, advertise: true })], input: buildPacket(base), verdict: 'DROP', reason: 'ADVERTISED' },
  { name: 'no affinity, not advertised: routed unchanged', input: buildPacket(base), verdict: 'FORWARD', fixedHit: false, wildcardHit: false },
  { name: 'malformed: shorter than an IP header', input: buildPacket(base).subarray(0, 19), verdict: 'DROP', reason: 'TRUNCATED' },
  { name: 'malformed: IP version 6', input: (() => { const b = buildPacket(base); b[0] = 0x65; return b; })(), verdict: 'DROP', reason: 'VERSION' },
  { name: 'malformed: IHL below 5', input: (() => { const b = buildPacket(base); b[0] = 0x44; return b; })(), verdict: 'DROP', reason: 'IHL' },
  { name: 'malformed: total length beyond the captured bytes', input: buildPacket(base), length: 40, verdict: 'DROP', reason: 'TOTAL_LENGTH' },
  { name: 'malformed: TCP data offset below 5', input: (() => { const b = buildPacket(base); b[32] = 0x40; return b; })(), verdict: 'DROP', reason: 'L4_HEADER' },
  { name: 'malformed: TCP header beyond the datagram', input: buildPacket({ ...base, payload: new Uint8Array(0) }).subarray(0, 30), verdict: 'DROP', reason: 'TOTAL_LENGTH' },
  { name: 'malformed: UDP header cut', input: (() => { const b = buildPacket(udp).slice(0, 24); b[3] = 24; return b; })(), verdict: 'DROP', reason: 'L4_HEADER' },
];

describe('packet fixtures', () => {
  let fw: ForwardingFirmware;
  beforeEach(async () => {
    fw = await loadSmall();
  });

  it.each(cases.map((c) => [c.name, c] as const))('%s', (_name, c) => {
    const support = c.fixed ? [catchAll(), ...(c.wildcards ?? [])] : (c.wildcards ?? []);
    for (const w of support) expect(fw.installWildcard(w, NOW)).toBe(0);
    for (const f of c.fixed ?? []) expect(fw.installFixed(f, NOW)).toBe(0);
    fw.writePacket(0, c.input, c.descriptor);
    if (c.length !== undefined) fw.setDescriptor(0, 0, c.length, c.descriptor);
    fw.process(1, NOW + 1);
    const v = fw.verdict(0);
    const out = fw.packet(0);
    expect(v.verdict).toBe(c.verdict);
    expect(v.reason).toBe(c.reason ?? 'NONE');
    const captured = c.length ?? c.input.length;
    expect(hex(out)).toBe(hex((c.output ?? c.input).subarray(0, captured)));
    if (c.nextHop !== undefined) expect(v.nextHop).toBe(c.nextHop);
    if (c.fixedHit !== undefined) expect(v.fixedHit).toBe(c.fixedHit);
    if (c.wildcardHit !== undefined) expect(v.wildcardHit).toBe(c.wildcardHit);
    if (c.attach !== undefined) expect(v.attach).toBe(c.attach);
    if (c.interestBits !== undefined) expect(v.interestBits).toBe(c.interestBits);
    expect(v.rewritten).toBe(c.output !== undefined && hex(c.output) !== hex(c.input));
  });

  it('information flag counts packets and bytes per forward IP', () => {
    fw.installWildcard(catchAll(), NOW);
    fw.installFixed({ ...key(base), ttlSec: 10, owner: 1, dispatch: ROUTER, info: true }, NOW);
    fw.installFixed({ ...key(udp), ttlSec: 10, owner: 1, natDstAddr: REAL, info: true }, NOW);
    const a = buildPacket(base);
    const b = buildPacket(udp);
    fw.writePacket(0, a);
    fw.writePacket(1, b);
    fw.writePacket(2, a);
    fw.process(3, NOW);
    const stats = fw.forwardStats();
    expect(stats.get(ROUTER)).toEqual({ packets: 2n, bytes: BigInt(a.length * 2) });
    expect(stats.get(REAL)).toEqual({ packets: 1n, bytes: BigInt(b.length) });
    expect(fw.counter('DISPATCHED')).toBe(2n);
  });

  it('golden bytes in test/fixtures/packets/dnat.json', () => {
    const file = JSON.parse(readFileSync(new URL('../../fixtures/packets/dnat.json', import.meta.url), 'utf8')) as {
      wildcard: { daddr: string; dport: number };
      fixed: { proto: number; saddr: string; daddr: string; sport: number; dport: number; natDstAddr: string; natDstPort: number };
      cases: { name: string; input: string; output: string; verdict: VerdictName }[];
    };
    fw.installWildcard(catchAll({ daddr: ipv4(file.wildcard.daddr), dmask: prefixMask(32), dport: file.wildcard.dport }), NOW);
    const f = file.fixed;
    expect(fw.installFixed({ proto: f.proto, saddr: ipv4(f.saddr), daddr: ipv4(f.daddr), sport: f.sport, dport: f.dport, ttlSec: 10, owner: 1, natDstAddr: ipv4(f.natDstAddr), natDstPort: f.natDstPort }, NOW)).toBe(0);
    for (const c of file.cases) {
      const r = runOne(fw, fromHex(c.input), NOW);
      expect(r.verdict.verdict, c.name).toBe(c.verdict);
      expect(hex(r.out), c.name).toBe(c.output.replace(/\s+/g, ''));
    }
  });
});
