// Affinity tables: TTL and expiry, precedence and backup precedence, table full, no supporting wildcard,
// unsupported action, sweep, owner deletion, advertise lifecycle, churn at 90 % load, tuple-space scale.

import { describe, expect, it } from 'vitest';
import {
  Capability, FirmwareError, ForwardingFirmware, InterestBit, Status, ipv4, prefixMask, type AffinityKey,
  type FixedAffinity, type WildcardAffinity,
} from '../../../host/agent/wasm.ts';
import { TCP, UDP, buildPacket } from './packets.ts';
import { NOW, catchAll, loadSmall, runOne } from './helpers.ts';

const VIP = ipv4('198.51.100.1');
const CLIENT = ipv4('192.0.2.10');
const key: AffinityKey = { proto: TCP, saddr: CLIENT, daddr: VIP, sport: 40000, dport: 80 };
const pkt = buildPacket({ ...key, flags: 0x10 });
const vipWildcard = (over: Partial<WildcardAffinity> = {}): WildcardAffinity => catchAll({
  proto: TCP, daddr: VIP, dmask: prefixMask(32), dport: 80, owner: 1, servicePrecedence: 100,
  interest: { mask: InterestBit.ALL, target: 0, data: true }, ...over,
});
const fixed = (over: Partial<FixedAffinity> = {}): FixedAffinity => ({ ...key, ttlSec: 10, owner: 1, natDstAddr: ipv4('10.1.0.7'), ...over });

describe('fixed affinity TTL and expiry', () => {
  it('matches until now + TTL, never after; TTL 0 deletes; the sweep removes expired entries', async () => {
    const fw = await loadSmall();
    fw.installWildcard(vipWildcard({ ttlSec: 1000 }), NOW);
    expect(fw.installFixed(fixed({ ttlSec: 2 }), NOW)).toBe(Status.OK);
    expect(runOne(fw, pkt, NOW + 1999).verdict.fixedHit).toBe(true);
    expect(runOne(fw, pkt, NOW + 2000).verdict.fixedHit).toBe(false);
    expect(fw.lookupFixed(key, NOW + 2000)).toBeNull();
    expect(fw.lookupFixed(key, NOW + 1000)?.expiry32).toBe((NOW + 2000) % 2 ** 32);
    expect(fw.counter('FIXED_OCCUPANCY')).toBe(1n);
    expect(fw.tick(NOW + 1500)).toBe(0);
    expect(fw.tick(NOW + 2000)).toBe(1);
    expect(fw.counter('FIXED_OCCUPANCY')).toBe(0n);
    expect(fw.counter('FIXED_EXPIRED')).toBe(1n);
    // TTL 0 deletes
    expect(fw.installFixed(fixed(), NOW)).toBe(Status.OK);
    expect(fw.installFixed(fixed({ ttlSec: 0 }), NOW)).toBe(Status.OK);
    expect(fw.lookupFixed(key, NOW)).toBeNull();
    expect(fw.installFixed(fixed({ ttlSec: 0 }), NOW)).toBe(Status.NOT_FOUND);
  });

  it('expiry is wrap-safe across 2^32 ms', async () => {
    const fw = await loadSmall();
    const t = 397 * 2 ** 32 - 500;
    fw.installWildcard(vipWildcard({ ttlSec: 1000 }), t);
    fw.installFixed(fixed({ ttlSec: 1 }), t);
    expect(runOne(fw, pkt, t + 999).verdict.fixedHit).toBe(true);
    expect(runOne(fw, pkt, t + 1000).verdict.fixedHit).toBe(false);
  });

  it('a refresh (affinity update) keeps counters and replaces actions', async () => {
    const fw = await loadSmall();
    fw.installWildcard(vipWildcard(), NOW);
    fw.installFixed(fixed(), NOW);
    runOne(fw, pkt, NOW);
    expect(fw.installFixed(fixed({ ttlSec: 20, natDstAddr: ipv4('10.1.0.8') }), NOW + 5000)).toBe(Status.OK);
    const s = fw.lookupFixed(key, NOW + 5000)!;
    expect(s.natDstAddr).toBe(ipv4('10.1.0.8'));
    expect(s.packets).toBe(1);
    expect(s.expiry32).toBe((NOW + 25000) % 2 ** 32);
    expect(fw.counter('FIXED_UPDATES')).toBe(1n);
  });

  it('rejects TTLs beyond the serial-arithmetic window', async () => {
    const fw = await loadSmall();
    fw.installWildcard(vipWildcard(), NOW);
    expect(fw.installFixed(fixed({ ttlSec: 3_000_000 }), NOW)).toBe(Status.BAD_ARGUMENT);
  });
});

describe('arguments out of range', () => {
  it('are refused with BAD_ARGUMENT before they reach the firmware, and change nothing', async () => {
    const fw = await loadSmall();
    fw.installWildcard(vipWildcard({ ttlSec: 1000 }), NOW);
    expect(fw.installFixed(fixed(), NOW)).toBe(Status.OK);
    const bad: Array<Partial<FixedAffinity>> = [
      { sport: 70000 }, { dport: -1 }, { proto: 256 }, { ttlSec: Number.NaN }, { ttlSec: 1.5 }, { natDstPort: -1 },
      { natDstAddr: 2 ** 32 }, { owner: 65536 }, { interest: { mask: 1 << 16, target: 0 } },
    ];
    for (const over of bad) {
      expect(() => fw.installFixed(fixed(over), NOW), JSON.stringify(over)).toThrow(FirmwareError);
    }
    // the affinity installed before is there as it was (a NaN TTL used to become 0: a delete)
    expect(fw.lookupFixed(key, NOW)?.natDstAddr).toBe(ipv4('10.1.0.7'));
    expect(() => fw.installWildcard(vipWildcard({ dmask: -(2 ** 32) }), NOW)).toThrow(FirmwareError);
    // addresses from bit operations may be negative: the same 32 bits
    expect(fw.installFixed(fixed({ natDstAddr: ipv4('200.1.0.7') | 0 }), NOW)).toBe(Status.OK);
    expect(fw.lookupFixed(key, NOW)?.natDstAddr).toBe(ipv4('200.1.0.7'));
  });
});

describe('supporting wildcard, capabilities', () => {
  it('a fixed affinity needs a live wildcard matching either direction', async () => {
    const fw = await loadSmall();
    expect(fw.installFixed(fixed(), NOW)).toBe(Status.NO_WILDCARD);
    expect(fw.counter('FIXED_NO_WILDCARD')).toBe(1n);
    fw.installWildcard(vipWildcard({ ttlSec: 1 }), NOW);
    expect(fw.installFixed(fixed(), NOW)).toBe(Status.OK);
    // the return direction is supported by the same wildcard
    const back = { proto: TCP, saddr: VIP, daddr: CLIENT, sport: 80, dport: 40000 };
    expect(fw.installFixed({ ...back, ttlSec: 10, owner: 1, natSrcAddr: VIP }, NOW)).toBe(Status.OK);
    // once the wildcard has expired, refreshes are refused
    expect(fw.installFixed(fixed(), NOW + 1000)).toBe(Status.NO_WILDCARD);
    expect(fw.installFixed({ ...key, sport: 1, ttlSec: 10, owner: 1 }, NOW)).toBe(Status.OK);
  });

  it('UNSUPPORTED_ACTION for an action switched off, counted', async () => {
    const fw = await loadSmall({ disabledCapabilities: Capability.SEQ_ADJUST | Capability.ADVERTISE });
    expect(fw.hasCapability('SEQ_ADJUST')).toBe(false);
    expect(fw.hasCapability('NAT')).toBe(true);
    expect(fw.installWildcard(vipWildcard({ advertise: true }), NOW)).toBe(Status.UNSUPPORTED_ACTION);
    expect(fw.installWildcard(vipWildcard(), NOW)).toBe(Status.OK);
    expect(fw.installFixed(fixed({ seqAdjust: { seqInit: 0, seqDelta: 1, ackInit: 0, ackDelta: 0 } }), NOW)).toBe(Status.UNSUPPORTED_ACTION);
    expect(fw.installFixed(fixed(), NOW)).toBe(Status.OK);
    expect(fw.counter('UNSUPPORTED_ACTION')).toBe(2n);
  });
});

describe('wildcard precedence', () => {
  it('best service precedence first, then the lowest backup precedence', async () => {
    const fw = await loadSmall();
    fw.installWildcard(vipWildcard({ owner: 2, backupPrecedence: 1 }), NOW); // backup
    fw.installWildcard(vipWildcard({ owner: 1, backupPrecedence: 0 }), NOW); // primary
    fw.installWildcard(vipWildcard({ owner: 3, backupPrecedence: 2 }), NOW); // second backup
    expect(runOne(fw, pkt).verdict.owner).toBe(1);
    expect(fw.installWildcard(vipWildcard({ owner: 1, ttlSec: 0 }), NOW)).toBe(Status.OK);
    expect(runOne(fw, pkt).verdict.owner).toBe(2);
    expect(fw.deleteByOwner(2)).toBe(1);
    expect(runOne(fw, pkt).verdict.owner).toBe(3);
  });

  it('service precedence chain: a returned packet resumes below the precedence it came from', async () => {
    const fw = await loadSmall();
    // firewall service (precedence 200) over everything to the /24, load balancer (100) on the VIP:80
    fw.installWildcard(catchAll({ owner: 10, daddr: ipv4('198.51.100.0'), dmask: prefixMask(24), servicePrecedence: 200, interest: { mask: InterestBit.ALL, target: 1, data: true } }), NOW);
    fw.installWildcard(vipWildcard({ owner: 1, servicePrecedence: 100 }), NOW);
    const first = runOne(fw, pkt);
    expect(first.verdict).toMatchObject({ verdict: 'TO_MANAGER', owner: 10, servicePrecedence: 200 });
    const second = runOne(fw, pkt, NOW, { resumeAfterPrecedence: 200, seenByOwner: 10 });
    expect(second.verdict).toMatchObject({ verdict: 'TO_MANAGER', owner: 1, servicePrecedence: 100 });
    const third = runOne(fw, pkt, NOW, { resumeAfterPrecedence: 100, seenByOwner: 1 });
    expect(third.verdict).toMatchObject({ verdict: 'FORWARD', wildcardHit: false });
  });

  it('search-order flag: a search-first wildcard is matched before the fixed affinities', async () => {
    const fw = await loadSmall();
    fw.installWildcard(vipWildcard({ owner: 1 }), NOW);
    fw.installFixed(fixed(), NOW);
    expect(runOne(fw, pkt).verdict.fixedHit).toBe(true);
    fw.installWildcard(catchAll({ owner: 7, servicePrecedence: 300, searchFirst: true, interest: { mask: InterestBit.ALL, target: 2, data: true } }), NOW);
    expect(runOne(fw, pkt).verdict).toMatchObject({ verdict: 'TO_MANAGER', owner: 7, fixedHit: false });
    // resumed below 300: the fixed affinity applies
    expect(runOne(fw, pkt, NOW, { resumeAfterPrecedence: 300, seenByOwner: 7 }).verdict).toMatchObject({ verdict: 'FORWARD', fixedHit: true, rewritten: true });
  });

  it('wildcard TTL: an expired wildcard never matches and is swept', async () => {
    const fw = await loadSmall();
    fw.installWildcard(vipWildcard({ ttlSec: 1 }), NOW);
    expect(runOne(fw, pkt, NOW + 999).verdict.wildcardHit).toBe(true);
    expect(runOne(fw, pkt, NOW + 1000).verdict.wildcardHit).toBe(false);
    expect(fw.tick(NOW + 1000)).toBe(1);
    expect(fw.counter('WILDCARD_OCCUPANCY')).toBe(0n);
    expect(fw.counter('WILDCARD_PATTERNS')).toBe(0n);
  });

  it('advertised prefix leaves with its wildcard', async () => {
    const fw = await loadSmall();
    const adv = catchAll({ owner: 4, proto: UDP, daddr: ipv4('198.51.100.0'), dmask: prefixMask(24), advertise: true });
    fw.installWildcard(adv, NOW);
    fw.installWildcard({ ...adv, owner: 5 }, NOW); // same prefix, second reference
    expect(runOne(fw, pkt).verdict).toMatchObject({ verdict: 'DROP', reason: 'ADVERTISED' });
    fw.installWildcard({ ...adv, ttlSec: 0 }, NOW);
    expect(runOne(fw, pkt).verdict.verdict).toBe('DROP');
    fw.deleteByOwner(5);
    expect(fw.counter('ADVERTISED_PREFIXES')).toBe(0n);
    expect(runOne(fw, pkt).verdict).toMatchObject({ verdict: 'FORWARD', reason: 'NONE' });
  });

  it('at most 16 distinct patterns', async () => {
    const fw = await loadSmall();
    for (let len = 17; len <= 32; len++) expect(fw.installWildcard(catchAll({ owner: len, daddr: VIP, dmask: prefixMask(len) }), NOW)).toBe(Status.OK);
    expect(fw.installWildcard(catchAll({ daddr: VIP, dmask: prefixMask(16) }), NOW)).toBe(Status.PATTERN_LIMIT);
    fw.deleteByOwner(17);
    expect(fw.installWildcard(catchAll({ daddr: VIP, dmask: prefixMask(16) }), NOW)).toBe(Status.OK);
  });

  it('10,000 wildcards in 4 patterns: each packet finds its own', async () => {
    const fw = await loadSmall();
    const ws: WildcardAffinity[] = [];
    for (let i = 0; i < 10_000; i++) {
      const vip = (ipv4('100.64.0.0') + i * 256) >>> 0;
      switch (i % 4) {
        case 0: ws.push(catchAll({ owner: i, proto: TCP, daddr: vip, dmask: prefixMask(32), dport: 80 })); break;
        case 1: ws.push(catchAll({ owner: i, daddr: vip, dmask: prefixMask(24) })); break;
        case 2: ws.push(catchAll({ owner: i, proto: UDP, daddr: vip, dmask: prefixMask(32), sport: 53 })); break;
        default: ws.push(catchAll({ owner: i, saddr: CLIENT, smask: prefixMask(32), daddr: vip, dmask: prefixMask(32) })); break;
      }
    }
    for (const w of ws) expect(fw.installWildcard(w, NOW)).toBe(Status.OK);
    expect(fw.counter('WILDCARD_PATTERNS')).toBe(4n);
    for (let i = 0; i < 10_000; i += 97) {
      const w = ws[i]!;
      const p = buildPacket({ proto: w.proto || TCP, saddr: CLIENT, daddr: (w.daddr + 1) >>> 0, sport: w.sport || 1234, dport: w.dport || 80 });
      const v = runOne(fw, p).verdict;
      if (i % 4 === 1) expect(v.owner).toBe(i); // +1 stays inside the /24
      else expect(v.wildcardHit).toBe(false); // +1 leaves a /32
      const exact = buildPacket({ proto: w.proto || TCP, saddr: CLIENT, daddr: w.daddr, sport: w.sport || 1234, dport: w.dport || 80 });
      expect(runOne(fw, exact).verdict.owner).toBe(i);
    }
  });
});

describe('fixed table capacity', () => {
  it('TABLE_FULL at the load cap, counted; an expired entry is reused; live entries are never overwritten', async () => {
    const fw = await loadSmall({ fixedCapacity: 100 });
    const cap = fw.capacities.fixed;
    expect(cap).toBeGreaterThanOrEqual(100);
    fw.installWildcard(catchAll({ ttlSec: 1000 }), NOW);
    const k = (i: number): AffinityKey => ({ proto: TCP, saddr: i + 1, daddr: VIP, sport: i, dport: 80 });
    for (let i = 0; i < cap; i++) expect(fw.installFixed({ ...k(i), ttlSec: i === 5 ? 1 : 100, owner: 1, natDstPort: i }, NOW)).toBe(Status.OK);
    expect(fw.installFixed({ ...k(cap), ttlSec: 100, owner: 1 }, NOW)).toBe(Status.TABLE_FULL);
    expect(fw.counter('FIXED_TABLE_FULL')).toBe(1n);
    // a refresh of a live key still works at the cap
    expect(fw.installFixed({ ...k(7), ttlSec: 100, owner: 1, natDstPort: 7 }, NOW)).toBe(Status.OK);
    // once entry 5 has expired, a new key gets its place
    expect(fw.installFixed({ ...k(cap), ttlSec: 100, owner: 1, natDstPort: 4242 }, NOW + 1000)).toBe(Status.OK);
    for (let i = 0; i < cap; i++) {
      const s = fw.lookupFixed(k(i), NOW + 1000);
      if (i === 5) expect(s).toBeNull();
      else expect(s?.natDstPort).toBe(i);
    }
    expect(fw.lookupFixed(k(cap), NOW + 1000)?.natDstPort).toBe(4242);
  });

  it('insert/delete churn at 90 % load keeps every live key reachable (backward-shift deletion)', async () => {
    const fw = await loadSmall({ fixedCapacity: 4000, seed: 7 });
    const slots = fw.capacities.fixedSlots;
    const target = Math.floor(slots * 0.9);
    expect(fw.capacities.fixed).toBeGreaterThanOrEqual(target);
    fw.installWildcard(catchAll({ ttlSec: 100000 }), NOW);
    let rnd = 12345;
    const next = (): number => (rnd = (Math.imul(rnd, 1103515245) + 12345) >>> 0);
    const live = new Map<string, AffinityKey>();
    const id = (k: AffinityKey): string => `${k.saddr}:${k.sport}`;
    const fresh = (): AffinityKey => ({ proto: UDP, saddr: next(), daddr: VIP, sport: next() & 0xffff, dport: 53 });
    while (live.size < target) {
      const k = fresh();
      expect(fw.installFixed({ ...k, ttlSec: 1000, owner: 1, natDstPort: k.sport }, NOW)).toBe(Status.OK);
      live.set(id(k), k);
    }
    const keys = [...live.values()];
    for (let op = 0; op < 60_000; op++) {
      const j = next() % keys.length;
      const old = keys[j]!;
      expect(fw.deleteFixed(old)).toBe(Status.OK);
      live.delete(id(old));
      const k = fresh();
      expect(fw.installFixed({ ...k, ttlSec: 1000, owner: 1, natDstPort: k.sport }, NOW)).toBe(Status.OK);
      live.set(id(k), k);
      keys[j] = k;
      if (op % 10_000 === 0) expect(fw.lookupFixed(old, NOW)).toBeNull();
    }
    expect(fw.counter('FIXED_OCCUPANCY')).toBe(BigInt(live.size));
    // Robin Hood insertion keeps displacements short, which bounds every lookup
    expect(fw.counter('FIXED_MAX_DISPLACEMENT')).toBeLessThan(256n);
    for (const k of live.values()) expect(fw.lookupFixed(k, NOW)?.natDstPort).toBe(k.sport);
  });

  it('deleteByOwner cancels one manager\'s fixed and wildcard affinities', async () => {
    const fw = await loadSmall();
    fw.installWildcard(vipWildcard({ owner: 1 }), NOW);
    fw.installWildcard(vipWildcard({ owner: 2, backupPrecedence: 1 }), NOW);
    for (let i = 0; i < 50; i++) fw.installFixed(fixed({ sport: i, owner: i % 2 === 0 ? 1 : 2 }), NOW);
    expect(fw.deleteByOwner(1)).toBe(26);
    expect(fw.counter('FIXED_OCCUPANCY')).toBe(25n);
    for (let i = 0; i < 50; i++) expect(fw.lookupFixed({ ...key, sport: i }, NOW) !== null).toBe(i % 2 === 1);
  });
});

describe('init', () => {
  it('a budget too small for the asked capacities is a clear error', async () => {
    await expect(ForwardingFirmware.load({ budgetBytes: 4 * 1024 * 1024, fixedCapacity: 1_000_000 })).rejects.toMatchObject({ code: 'NO_MEMORY' });
    await expect(ForwardingFirmware.load({ budgetBytes: 1_000_000 })).rejects.toBeInstanceOf(FirmwareError);
  });

  it('1M fixed affinities fit the default 64 MiB budget at <= 80 % load', async () => {
    const fw = await ForwardingFirmware.load({ fixedCapacity: 1_000_000 });
    expect(fw.capacities.budgetBytes).toBe(64 * 1024 * 1024);
    expect(fw.capacities.fixed).toBeGreaterThanOrEqual(1_000_000);
    expect(1_000_000 / fw.capacities.fixedSlots).toBeLessThanOrEqual(0.8);
    expect(fw.capacities.fixedEntryBytes).toBeLessThanOrEqual(64);
    expect(fw.capacities.endBytes).toBeLessThanOrEqual(64 * 1024 * 1024);
  });
});

describe('batch prefetch at the end of memory', () => {
  // The firmware's key hash (assembly/hash.ts) and home slot, to place keys at the very end of the table.
  const M = (1n << 64n) - 1n;
  const wire32 = (a: number): bigint => BigInt((((a & 0xff) << 24) | ((a & 0xff00) << 8) | ((a >>> 8) & 0xff00) | (a >>> 24)) >>> 0);
  const wire16 = (p: number): bigint => BigInt(((p & 0xff) << 8) | (p >>> 8));
  function home(seed: number, k: AffinityKey, slots: number): number {
    const hashSeed = ((BigInt(seed) * 0x9e3779b97f4a7c15n) & M) ^ 0x6a09e667f3bcc909n;
    const k0 = wire32(k.saddr) | (wire32(k.daddr) << 32n);
    const k1 = wire16(k.sport) | (wire16(k.dport) << 16n) | (BigInt(k.proto) << 32n);
    let x = ((k0 ^ hashSeed) * 0x9e3779b97f4a7c15n) & M;
    x ^= (k1 * 0xc2b2ae3d27d4eb4fn) & M;
    x ^= x >> 29n;
    x = (x * 0xbf58476d1ce4e5b9n) & M;
    x ^= x >> 32n;
    return Number(((x & 0xffffffffn) * BigInt(slots)) >> 32n);
  }

  it('keys homed in the last slots of a table that ends at the end of memory hit, at every prefetch depth', async () => {
    const seed = 11;
    const fw = await ForwardingFirmware.load({ budgetBytes: 4 * 1024 * 1024, wildcardCapacity: 16, extCapacity: 16, seed });
    const slots = fw.capacities.fixedSlots;
    expect(4 * 1024 * 1024 - fw.capacities.endBytes).toBeLessThan(48); // the table's last slot ends the memory
    fw.installWildcard(catchAll({ ttlSec: 100000 }), NOW);
    let rnd = 777;
    const next = (): number => (rnd = (Math.imul(rnd, 1103515245) + 12345) >>> 0);
    const fresh = (): AffinityKey => ({ proto: TCP, saddr: next(), daddr: VIP, sport: next() & 0xffff, dport: 80 });
    const edge: AffinityKey[] = [];
    for (let want = slots - 1; want >= slots - 4; want--) {
      let k = fresh();
      while (home(seed, k, slots) !== want) k = fresh();
      edge.push(k);
    }
    // installed first into an empty table, each sits at its home: the hash above is the firmware's
    edge.forEach((k) => expect(fw.installFixed({ ...k, ttlSec: 1000, owner: 1, natDstPort: 8080 }, NOW)).toBe(Status.OK));
    edge.forEach((k, i) => expect(fw.lookupFixed(k, NOW)?.slot).toBe(slots - 1 - i));
    const check = (): void => {
      edge.forEach((k, i) => fw.writePacket(i, buildPacket({ ...k, flags: 0x10 })));
      fw.process(edge.length, NOW);
      // (later installs may move an entry along its run: the slot is the one lookupFixed reports now)
      edge.forEach((k, i) => expect(fw.verdict(i)).toMatchObject({ verdict: 'FORWARD', fixedHit: true, affinitySlot: fw.lookupFixed(k, NOW)!.slot }));
    };
    // the prefetch loop's depth follows the load (below 25 %, 25-50 %, above 50 %): each one at the edge
    for (const load of [0, 0.4, 0.6]) {
      while (Number(fw.counter('FIXED_OCCUPANCY')) <= slots * load) {
        expect(fw.installFixed({ ...fresh(), ttlSec: 1000, owner: 1 }, NOW)).toBe(Status.OK);
      }
      check();
    }
  });
});
