// Property tests (fast-check, >= 10,000 cases each):
// - after any NAT or sequence adjust, a full RFC 1071 recompute equals the incrementally updated IP and
//   TCP/UDP checksums, and the rewritten fields hold the asked values;
// - an ICMP error about a NATed flow: quoted header translated, every checksum equal to a full recompute;
// - random and mutated bytes (ICMP errors among them) never trap and never change bytes outside their packet.

import { beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ForwardingFirmware, InterestBit, type Verdict } from '../../../host/agent/wasm.ts';
import { ICMP, TCP, UDP, buildPacket, get16, get32, ipChecksumOf, l4ChecksumOf, rfc1071, type PacketSpec } from './packets.ts';
import { NOW, catchAll, loadSmall } from './helpers.ts';

const RUNS = 10_000;
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const bytes = (max: number) => fc.uint8Array({ minLength: 0, maxLength: max });
const words = (maxWords: number) => fc.integer({ min: 0, max: maxWords }).chain((n) => fc.uint8Array({ minLength: n * 4, maxLength: n * 4 }));

const packetSpec: fc.Arbitrary<PacketSpec> = fc.record({
  proto: fc.constantFrom(TCP, UDP),
  saddr: u32,
  daddr: u32,
  sport: u16,
  dport: u16,
  flags: fc.integer({ min: 0, max: 0x3f }),
  seq: u32,
  ack: u32,
  payload: bytes(80),
  ipOptions: words(4),
  udpNoChecksum: fc.boolean(),
  id: u16,
});

const natSpec = fc.record({
  natSrcAddr: fc.option(u32, { nil: undefined }),
  natSrcPort: fc.option(u16, { nil: undefined }),
  natDstAddr: fc.option(u32, { nil: undefined }),
  natDstPort: fc.option(u16, { nil: undefined }),
});

describe('checksum properties', () => {
  let fw: ForwardingFirmware;
  beforeAll(async () => {
    fw = await loadSmall({ budgetBytes: 32 * 1024 * 1024 });
    expect(fw.installWildcard(catchAll({ ttlSec: 1_000_000 }), NOW)).toBe(0);
  });

  it('NAT: incremental IP and TCP/UDP checksums equal a full recompute', () => {
    let n = 0;
    fc.assert(
      fc.property(packetSpec, natSpec, (spec, nat) => {
        const key = { proto: spec.proto, saddr: spec.saddr, daddr: spec.daddr, sport: spec.sport!, dport: spec.dport! };
        expect(fw.installFixed({ ...key, ttlSec: 60, owner: 1, ...nat }, NOW)).toBe(0);
        const input = buildPacket(spec);
        fw.writePacket(0, input);
        fw.process(1, NOW);
        const out = fw.packet(0);
        expect(fw.verdict(0).verdict).toBe('FORWARD');
        const ihl = (out[0]! & 15) * 4;
        expect(get32(out, 12)).toBe(nat.natSrcAddr ?? spec.saddr);
        expect(get32(out, 16)).toBe(nat.natDstAddr ?? spec.daddr);
        expect(get16(out, ihl)).toBe(nat.natSrcPort ?? spec.sport);
        expect(get16(out, ihl + 2)).toBe(nat.natDstPort ?? spec.dport);
        expect(get16(out, 10)).toBe(ipChecksumOf(out));
        const csumAt = ihl + (spec.proto === TCP ? 16 : 6);
        if (spec.proto === UDP && spec.udpNoChecksum) expect(get16(out, csumAt)).toBe(0);
        else expect(get16(out, csumAt)).toBe(l4ChecksumOf(out));
        // everything else unchanged
        const changed = new Set([10, 11, 12, 13, 14, 15, 16, 17, 18, 19, ihl, ihl + 1, ihl + 2, ihl + 3, csumAt, csumAt + 1]);
        const diff: number[] = [];
        for (let i = 0; i < input.length; i++) if (!changed.has(i) && out[i] !== input[i]) diff.push(i);
        expect(diff).toEqual([]);
        expect(fw.deleteFixed(key)).toBe(0); // frees its extension entry
        n++;
      }),
      { numRuns: RUNS, seed: 1 },
    );
    expect(n).toBe(RUNS);
  });

  it('ICMP errors: the quoted header translated as its flow, every checksum equal to a full recompute', () => {
    let n = 0;
    fc.assert(
      fc.property(
        packetSpec,
        natSpec,
        fc.integer({ min: 0, max: 200 }),
        fc.record({ fromServer: fc.boolean(), toVip: fc.boolean(), other: u32 }),
        (q, nat, cut, outer) => {
          // the quoted packet went against the flow: its affinity's key is the quote reversed
          const key = { proto: q.proto, saddr: q.daddr, daddr: q.saddr, sport: q.dport!, dport: q.sport! };
          expect(fw.installFixed({ ...key, ttlSec: 60, owner: 1, ...nat }, NOW)).toBe(0);
          const quotedIn = buildPacket(q);
          const iihl = (quotedIn[0]! & 15) * 4;
          const quote = quotedIn.subarray(0, Math.min(quotedIn.length, iihl + 8 + cut));
          const from = outer.fromServer ? q.daddr : outer.other;
          const to = outer.toVip ? q.saddr : (outer.other ^ 1) >>> 0;
          const body = new Uint8Array(8 + quote.length);
          body[0] = 3;
          body[1] = 4;
          body.set(quote, 8);
          const input = buildPacket({ proto: ICMP, saddr: from, daddr: to, payload: body });
          fw.writePacket(0, input);
          fw.process(1, NOW);
          const out = fw.packet(0).slice();
          expect(fw.verdict(0)).toMatchObject({ verdict: 'FORWARD', fixedHit: true });
          expect(get16(out, 10)).toBe(ipChecksumOf(out));
          expect(get32(out, 12)).toBe(from === q.daddr && nat.natSrcAddr !== undefined ? nat.natSrcAddr : from);
          expect(get32(out, 16)).toBe(to === q.saddr && nat.natDstAddr !== undefined ? nat.natDstAddr : to);
          const icmp = out.subarray(20);
          expect(rfc1071(icmp)).toBe(0);
          const quoted = icmp.subarray(8);
          expect(get16(quoted, 10)).toBe(ipChecksumOf(quoted));
          expect(get32(quoted, 12)).toBe(nat.natDstAddr ?? q.saddr);
          expect(get32(quoted, 16)).toBe(nat.natSrcAddr ?? q.daddr);
          expect(get16(quoted, iihl)).toBe(nat.natDstPort ?? q.sport);
          expect(get16(quoted, iihl + 2)).toBe(nat.natSrcPort ?? q.dport);
          if (quote.length === quotedIn.length) {
            // the whole datagram quoted: its transport checksum is checkable too
            const at = iihl + (q.proto === TCP ? 16 : 6);
            if (q.proto === UDP && q.udpNoChecksum) expect(get16(quoted, at)).toBe(0);
            else expect(get16(quoted, at)).toBe(l4ChecksumOf(quoted));
          }
          expect(fw.deleteFixed(key)).toBe(0);
          n++;
        },
      ),
      { numRuns: RUNS, seed: 5 },
    );
    expect(n).toBe(RUNS);
  });

  it('sequence adjust: serial arithmetic on seq/ack/SACK edges, checksum equals a full recompute', () => {
    const adjust = (v: number, init: number, delta: number): number => (((v - init) | 0) >= 0 ? (v + delta) >>> 0 : v);
    let n = 0;
    fc.assert(
      fc.property(
        packetSpec.filter((s) => s.proto === TCP),
        u32, u32, u32, u32,
        fc.integer({ min: 0, max: 3 }),
        fc.array(u32, { minLength: 2, maxLength: 8 }).filter((a) => a.length % 2 === 0),
        fc.boolean(),
        (spec, seqInit, seqDelta, ackInit, ackDelta, nops, edges, ackFlag) => {
          // SACK option after `nops` NOPs, padded with NOPs to a multiple of 4
          const opt = [...Array<number>(nops).fill(1), 5, 2 + edges.length * 4];
          for (const e of edges) opt.push(e >>> 24, (e >>> 16) & 255, (e >>> 8) & 255, e & 255);
          while (opt.length % 4) opt.push(1);
          if (opt.length > 40) return;
          const flags = ackFlag ? spec.flags! | 0x10 : spec.flags! & ~0x10;
          const s = { ...spec, flags, tcpOptions: new Uint8Array(opt) };
          const key = { proto: TCP, saddr: s.saddr, daddr: s.daddr, sport: s.sport!, dport: s.dport! };
          expect(fw.installFixed({ ...key, ttlSec: 60, owner: 1, seqAdjust: { seqInit, seqDelta, ackInit, ackDelta } }, NOW)).toBe(0);
          fw.writePacket(0, buildPacket(s));
          fw.process(1, NOW);
          const out = fw.packet(0);
          const ihl = (out[0]! & 15) * 4;
          expect(get32(out, ihl + 4)).toBe(seqDelta ? adjust(s.seq!, seqInit, seqDelta) : s.seq);
          const adjAck = ackFlag && ackDelta !== 0;
          expect(get32(out, ihl + 8)).toBe(adjAck ? adjust(s.ack!, ackInit, ackDelta) : s.ack);
          const at = ihl + 20 + nops + 2;
          edges.forEach((e, i) => expect(get32(out, at + i * 4)).toBe(adjAck ? adjust(e, ackInit, ackDelta) : e));
          expect(get16(out, ihl + 16)).toBe(l4ChecksumOf(out));
          expect(get16(out, 10)).toBe(ipChecksumOf(out));
          expect(fw.deleteFixed(key)).toBe(0);
          n++;
        },
      ),
      { numRuns: RUNS, seed: 2 },
    );
    expect(n).toBeGreaterThan(RUNS * 0.9);
  });
});

describe('robustness', () => {
  const CANARY = 0xa5;
  let fw: ForwardingFirmware;
  beforeAll(async () => {
    fw = await loadSmall();
    // rewriting affinities so that parsed packets get written to: static NAT + interest on everything,
    // and a fixed affinity with NAT and sequence adjust for the base flow that mutations start from
    expect(fw.installWildcard(catchAll({ ttlSec: 1_000_000, natDstAddr: 0x0a000001, natSrcPort: 7 }), NOW)).toBe(0);
    expect(fw.installWildcard(catchAll({ ttlSec: 1_000_000, owner: 3, proto: UDP, servicePrecedence: 5, interest: { mask: InterestBit.ALL, target: 1, copy: true }, natSrcAddr: 0x0b000001 }), NOW)).toBe(0);
    expect(fw.installFixed({ proto: TCP, saddr: 0x01020304, daddr: 0x05060708, sport: 1000, dport: 80, ttlSec: 1_000_000, owner: 1, natDstAddr: 0x0a0a0a0a, natDstPort: 8080, seqAdjust: { seqInit: 0, seqDelta: 5, ackInit: 0, ackDelta: 9 } }, NOW)).toBe(0);
  });

  const base = buildPacket({ proto: TCP, saddr: 0x01020304, daddr: 0x05060708, sport: 1000, dport: 80, flags: 0x10, tcpOptions: new Uint8Array([1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2]), payload: new Uint8Array(16) });
  const mutated = fc.tuple(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.integer({ min: 0, max: base.length + 8 })).map(([muts, cut]) => {
    const b = base.slice(0, Math.min(cut, base.length));
    for (const [i, v] of muts) if (b.length) b[i % b.length] = v;
    return b;
  });
  // an ICMP error quoting the reply direction of that flow (translated through its affinity), mutated
  const reply = buildPacket({ proto: TCP, saddr: 0x05060708, daddr: 0x01020304, sport: 80, dport: 1000, payload: new Uint8Array(8) });
  const icmpBase = buildPacket({ proto: ICMP, saddr: 0x09090909, daddr: 0x05060708, payload: Uint8Array.from([3, 4, 0, 0, 0, 0, 5, 120, ...reply]) });
  const mutatedIcmp = fc.tuple(fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.integer({ min: 0, max: icmpBase.length + 8 })).map(([muts, cut]) => {
    const b = icmpBase.slice(0, Math.min(cut, icmpBase.length));
    for (const [i, v] of muts) if (b.length) b[i % b.length] = v;
    return b;
  });
  const anyPacket = fc.oneof(bytes(120), mutated, mutated, mutatedIcmp);

  it('never traps and never writes outside a packet', () => {
    const region = fw.packets;
    region.fill(CANARY);
    const slot = fw.capacities.packetSlot;
    const last = region.length;
    let n = 0;
    fc.assert(
      fc.property(
        fc.array(fc.tuple(anyPacket, fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 40 })), { minLength: 1, maxLength: 8 }),
        fc.boolean(),
        (pkts, edge) => {
          const ranges: [number, number][] = [];
          pkts.forEach(([bytesIn, slotIndex, extra], i) => {
            // packets at slot starts, or flush against the end of the region; the descriptor may claim a
            // few bytes more than were written (still canary) but never past the region
            let off = edge && i === 0 ? last - bytesIn.length : slotIndex * slot;
            if (ranges.some(([a, b]) => off < b + 64 && a < off + bytesIn.length + 64)) off = -1;
            if (off < 0) return;
            const len = Math.min(bytesIn.length + extra, last - off, 0xffff);
            region.set(bytesIn, off);
            fw.setDescriptor(ranges.length, off, len);
            ranges.push([off, off + len]);
          });
          // one descriptor pointing outside the region must be refused
          fw.setDescriptor(ranges.length, last - 10, 20);
          fw.process(ranges.length + 1, NOW);
          expect(fw.verdict(ranges.length).reason).toBe('DESCRIPTOR');
          for (const [a, b] of ranges) {
            for (let i = Math.max(0, a - 64); i < a; i++) if (region[i] !== CANARY && !ranges.some(([x, y]) => i >= x && i < y)) throw new Error(`byte ${i} before a packet changed`);
            for (let i = b; i < Math.min(last, b + 64); i++) if (region[i] !== CANARY && !ranges.some(([x, y]) => i >= x && i < y)) throw new Error(`byte ${i} after a packet changed`);
          }
          for (let i = 0; i < ranges.length; i++) expect(['FORWARD', 'TO_MANAGER', 'HOLD', 'COPY', 'DROP']).toContain(fw.verdict(i).verdict);
          for (const [a, b] of ranges) region.fill(CANARY, a, b);
          if (++n % 1000 === 0) expect(region.every((v) => v === CANARY)).toBe(true);
        },
      ),
      { numRuns: RUNS, seed: 3 },
    );
    expect(region.every((v) => v === CANARY)).toBe(true);
    expect(fw.counter('PACKETS')).toBeGreaterThan(BigInt(RUNS));
    expect(fw.counter('NAT_APPLIED')).toBeGreaterThan(0n);
    expect(fw.counter('SEQ_ADJUSTED')).toBeGreaterThan(0n);
    expect(fw.counter('MALFORMED_TOTAL_LENGTH')).toBeGreaterThan(0n);
  });
});

describe('counters', () => {
  // Fixed affinities with every kind of action set, a wildcard that supports them (TCP to port 80 only, so
  // UDP and other ports miss), and batches mixing hits, misses, expired flows and malformed packets: the
  // batch counters and the per-affinity counters must agree with the verdicts, packet by packet.
  const MALFORMED = ['DESCRIPTOR', 'TRUNCATED', 'VERSION', 'IHL', 'TOTAL_LENGTH', 'L4_HEADER'];
  const NAMES = ['PACKETS', 'BYTES', 'FIXED_HITS', 'WILDCARD_HITS', 'MISSES', 'FORWARDED', 'TO_MANAGER', 'HOLD', 'COPY', 'DROPPED', 'NAT_APPLIED'] as const;
  const actionSets: Parameters<ForwardingFirmware['installFixed']>[0][] = [];
  const flows = Array.from({ length: 64 }, (_, i) => ({ proto: TCP, saddr: 0x0a000001 + i, daddr: 0x0b000001, sport: 1000 + i, dport: 80 }));
  let fw: ForwardingFirmware;
  beforeAll(async () => {
    fw = await loadSmall();
    expect(fw.installWildcard(catchAll({ proto: TCP, dport: 80, ttlSec: 1_000_000 }), NOW)).toBe(0);
    const kinds = [
      { natDstAddr: 0x0c000001, natDstPort: 8080 },
      { natDstAddr: 0x0c000002 },
      { natSrcAddr: 0x0d000001, natSrcPort: 4000 },
      { natSrcAddr: 0x0d000002, natDstAddr: 0x0c000003, natDstPort: 81 },
      {},
      { natDstAddr: 0x0c000004, interest: { mask: InterestBit.FIN | InterestBit.RST, target: 1, data: true } },
      { natDstAddr: 0x0c000005, interest: { mask: InterestBit.SYN, target: 2, copy: true } },
      { interest: { mask: InterestBit.PSH, target: 3, hold: true } },
      { natDstAddr: 0x0c000006, seqAdjust: { seqInit: 0, seqDelta: 7, ackInit: 0, ackDelta: 3 } },
      { dispatch: 0x0e000001, info: true },
      { natDstAddr: 0x0c000007, dispatch: 0x0e000002 },
      { dispatch: 0 },
      { drop: true },
    ];
    flows.forEach((k, i) => {
      const a = { ...k, ttlSec: i % 16 === 15 ? 1 : 1000, owner: 1 + (i % 3), ...kinds[i % kinds.length]! };
      actionSets.push(a);
      expect(fw.installFixed(a, NOW)).toBe(0);
    });
  });

  it('batch counters and per-affinity packets/bytes agree with the verdicts', () => {
    const pick = fc.record({
      kind: fc.constantFrom('hit', 'hit', 'hit', 'miss-udp', 'miss-port', 'truncated', 'bad-version'),
      flow: fc.integer({ min: 0, max: flows.length - 1 }),
      flags: fc.integer({ min: 0, max: 0x3f }),
      payload: fc.integer({ min: 0, max: 40 }),
    });
    fc.assert(
      fc.property(fc.array(pick, { minLength: 1, maxLength: 64 }), fc.boolean(), (picks, late) => {
        const now = late ? NOW + 5_000 : NOW; // flows with a 1 s TTL have expired when late
        const before = NAMES.map((n) => fw.counter(n));
        const flowBefore = flows.map((k) => fw.lookupFixed(k, NOW)!);
        const lens: number[] = [];
        picks.forEach((p, i) => {
          const k = flows[p.flow]!;
          let b = buildPacket({ ...k, proto: p.kind === 'miss-udp' ? UDP : TCP, dport: p.kind === 'miss-port' ? 81 : k.dport, flags: p.flags, payload: new Uint8Array(p.payload) });
          if (p.kind === 'truncated') b = b.slice(0, 12);
          if (p.kind === 'bad-version') b[0] = 0x65;
          fw.writePacket(i, b);
          lens.push(b.length);
        });
        fw.process(picks.length, now);
        const v = picks.map((_, i) => fw.verdict(i));
        const d = Object.fromEntries(NAMES.map((n, j) => [n, fw.counter(n) - before[j]!]));
        const count = (f: (x: Verdict, i: number) => boolean): bigint => BigInt(v.filter(f).length);
        expect(d.PACKETS).toBe(BigInt(picks.length));
        expect(d.BYTES).toBe(lens.reduce((s, l, i) => s + (MALFORMED.includes(v[i]!.reason) ? 0n : BigInt(l)), 0n));
        expect(d.FORWARDED).toBe(count((x) => x.verdict === 'FORWARD'));
        expect(d.TO_MANAGER).toBe(count((x) => x.verdict === 'TO_MANAGER'));
        expect(d.HOLD).toBe(count((x) => x.verdict === 'HOLD'));
        expect(d.COPY).toBe(count((x) => x.verdict === 'COPY'));
        expect(d.DROPPED).toBe(count((x) => x.verdict === 'DROP'));
        expect(d.FIXED_HITS).toBe(count((x) => x.fixedHit));
        expect(d.WILDCARD_HITS).toBe(count((x) => x.wildcardHit));
        expect(d.MISSES).toBe(count((x) => !x.fixedHit && !x.wildcardHit && !MALFORMED.includes(x.reason)));
        const natOf = (i: number): boolean => {
          const a = actionSets[picks[i]!.flow]!;
          return a.natSrcAddr !== undefined || a.natSrcPort !== undefined || a.natDstAddr !== undefined || a.natDstPort !== undefined;
        };
        const diverted = (x: Verdict): boolean => x.verdict === 'TO_MANAGER' || x.verdict === 'HOLD';
        expect(d.NAT_APPLIED).toBe(count((x, i) => x.fixedHit && natOf(i) && !diverted(x) && x.reason !== 'ACTION'));
        // hits are on the flows picked (and only live ones), expired flows are not hits
        picks.forEach((p, i) => {
          const live = !late || actionSets[p.flow]!.ttlSec !== 1;
          expect(v[i]!.fixedHit).toBe(p.kind === 'hit' && live);
        });
        flows.forEach((k, f) => {
          const after = fw.lookupFixed(k, NOW)!;
          const mine = picks.map((p, i) => [p, v[i]!, lens[i]!] as const).filter(([p, x]) => p.flow === f && x.fixedHit && !diverted(x));
          expect(after.packets - flowBefore[f]!.packets).toBe(mine.length);
          expect(after.bytes - flowBefore[f]!.bytes).toBe(mine.reduce((s, [, , l]) => s + BigInt(l), 0n));
        });
      }),
      { numRuns: 1000, seed: 4 },
    );
  });
});
