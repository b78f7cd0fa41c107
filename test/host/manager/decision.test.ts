import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  buildMaglevTable,
  createBalancer,
  DecisionError,
  hashFlowKey,
  intToIpv4,
  ipv4ToInt,
  isPrime,
  makeBackend,
  maglevTableSize,
  PROTO_TCP,
  PROTO_UDP,
  VipTable,
  type Backend,
  type FlowKey,
} from '../../../host/manager/decision.ts';
import { loadConfig, vipSpecOf } from '../../../host/config/index.ts';

const VIP = ipv4ToInt('10.0.0.100');

function key(i: number, proto = PROTO_TCP): FlowKey {
  return { proto, srcIp: (0xc0a80000 + (i >>> 10)) >>> 0, srcPort: 1024 + (i & 1023), dstIp: VIP, dstPort: 80 };
}

function backends(n: number, weight = 1): Backend[] {
  return Array.from({ length: n }, (_, i) => makeBackend(`10.1.0.${i + 1}`, 8080, weight));
}

function countPicks(picks: (Backend | null)[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const b of picks) {
    const id = b ? b.id : 'null';
    counts.set(id, (counts.get(id) ?? 0) + 1);
  }
  return counts;
}

describe('addresses', () => {
  it('round-trips IPv4 addresses as unsigned integers', () => {
    expect(ipv4ToInt('255.255.255.255')).toBe(0xffffffff);
    expect(ipv4ToInt('10.0.0.1')).toBe(0x0a000001);
    fc.assert(fc.property(fc.ipV4(), (a) => intToIpv4(ipv4ToInt(a)) === a));
  });
  it('rejects malformed addresses and backends with a typed error', () => {
    for (const bad of ['10.0.0', '10.0.0.256', 'a.b.c.d', '1.2.3.4.5', '']) {
      expect(() => ipv4ToInt(bad)).toThrow(DecisionError);
    }
    expect(() => makeBackend('10.0.0.1', 0)).toThrow(/port/);
    expect(() => makeBackend('10.0.0.1', 80, -1)).toThrow(/weight/);
    expect(() => createBalancer('rr', [makeBackend('10.0.0.1', 80), makeBackend('10.0.0.1', 80)])).toThrow(
      /duplicate/,
    );
  });
});

describe('round robin (smooth weighted)', () => {
  it('cycles through equal backends in order', () => {
    const lb = createBalancer('rr', backends(3));
    const ids = Array.from({ length: 6 }, (_, i) => lb.pick(key(i))!.address);
    expect(ids).toEqual(['10.1.0.1', '10.1.0.2', '10.1.0.3', '10.1.0.1', '10.1.0.2', '10.1.0.3']);
  });
  it('honours weights and interleaves instead of bursting', () => {
    const list = [makeBackend('10.1.0.1', 80, 5), makeBackend('10.1.0.2', 80, 1), makeBackend('10.1.0.3', 80, 1)];
    const lb = createBalancer('rr', list);
    const seq = Array.from({ length: 7 }, (_, i) => lb.pick(key(i))!.address.slice(-1));
    expect(seq.join('')).toBe('1121311');
    const counts = countPicks(Array.from({ length: 700 }, (_, i) => lb.pick(key(i))));
    expect(counts.get('10.1.0.1:80')).toBe(500);
    expect(counts.get('10.1.0.2:80')).toBe(100);
  });
  it('skips unhealthy and drained backends; null when none is eligible', () => {
    const list = [...backends(2), makeBackend('10.1.0.9', 8080, 0)];
    const lb = createBalancer('rr', list);
    lb.setHealth('10.1.0.1:8080', false);
    for (let i = 0; i < 5; i++) expect(lb.pick(key(i))!.id).toBe('10.1.0.2:8080');
    lb.setHealth('10.1.0.2:8080', false);
    expect(lb.pick(key(0))).toBeNull();
    lb.setHealth('10.1.0.1:8080', true);
    expect(lb.pick(key(0))!.id).toBe('10.1.0.1:8080');
    expect(createBalancer('rr', []).pick(key(0))).toBeNull();
  });
});

describe('weighted least connections', () => {
  it('sends new flows to the backend with fewest active flows per weight', () => {
    const [a, b] = [makeBackend('10.1.0.1', 80, 1), makeBackend('10.1.0.2', 80, 3)];
    const lb = createBalancer('wlc', [a!, b!]);
    const picks: string[] = [];
    for (let i = 0; i < 400; i++) {
      const p = lb.pick(key(i))!;
      lb.onFlowStart(p);
      picks.push(p.id);
    }
    const st = lb.status();
    expect(st.find((s) => s.backend.id === a!.id)!.activeFlows).toBe(100);
    expect(st.find((s) => s.backend.id === b!.id)!.activeFlows).toBe(300);
    // Ending flows on a makes it the least loaded: the next flows go there.
    for (let i = 0; i < 50; i++) lb.onFlowEnd(a!);
    for (let i = 0; i < 10; i++) {
      const p = lb.pick(key(i))!;
      expect(p.id).toBe(a!.id);
      lb.onFlowStart(p);
    }
  });
  it('spreads ties instead of piling on the first backend', () => {
    const lb = createBalancer('wlc', backends(4));
    const counts = countPicks(Array.from({ length: 400 }, (_, i) => lb.pick(key(i))));
    for (const c of counts.values()) expect(c).toBe(100);
  });
  it('keeps counts across setBackends and ignores unhealthy backends', () => {
    const list = backends(2);
    const lb = createBalancer('wlc', list);
    for (let i = 0; i < 5; i++) lb.onFlowStart(list[0]!);
    lb.setBackends([...list, makeBackend('10.1.0.3', 8080)]);
    expect(lb.status()[0]!.activeFlows).toBe(5);
    lb.setHealth('10.1.0.2:8080', false);
    lb.setHealth('10.1.0.3:8080', false);
    expect(lb.pick(key(1))!.id).toBe(list[0]!.id);
    lb.onFlowEnd(list[1]!); // never below zero
    expect(lb.status()[1]!.activeFlows).toBe(0);
  });
  it('a backend taken out and put back resumes the flows it still has (they drained meanwhile)', () => {
    const list = backends(2);
    const lb = createBalancer('wlc', list);
    for (let i = 0; i < 5; i++) lb.onFlowStart(list[0]!);
    lb.setBackends([list[1]!]);
    lb.onFlowEnd(list[0]!); // one of its flows ends while it is out
    lb.onFlowStart(list[0]!); // and one replicated to it arrives
    lb.setBackends(list);
    expect(lb.status().map((s) => s.activeFlows)).toEqual([5, 0]);
    lb.setBackends([list[1]!]);
    for (let i = 0; i < 5; i++) lb.onFlowEnd(list[0]!); // drained to 0 while out
    lb.setBackends(list);
    expect(lb.status().map((s) => s.activeFlows)).toEqual([0, 0]);
    // a flow committed on a backend never in the set (replicated from a primary that has it) counts when it joins
    const extra = makeBackend('10.1.0.9', 8080);
    lb.onFlowStart(extra);
    lb.setBackends([...list, extra]);
    expect(lb.status().map((s) => s.activeFlows)).toEqual([0, 0, 1]);
  });
});

describe('maglev', () => {
  it('uses a prime table of at least 100 × backends', () => {
    expect(isPrime(65537)).toBe(true);
    expect(maglevTableSize(10, 0)).toBe(1009);
    expect(maglevTableSize(3)).toBe(65537);
    expect(maglevTableSize(1000)).toBe(100003);
    for (const n of [1, 7, 50, 700]) {
      const m = maglevTableSize(n, 0);
      expect(isPrime(m)).toBe(true);
      expect(m).toBeGreaterThanOrEqual(100 * n);
    }
  });
  it('fills a balanced table (within a few percent)', () => {
    for (const n of [3, 10, 100]) {
      const list = backends(n);
      const m = maglevTableSize(n);
      const table = buildMaglevTable(list, m);
      const counts = new Array<number>(n).fill(0);
      for (const e of table) counts[e]!++;
      expect(counts.every((c) => c > 0)).toBe(true);
      const ideal = m / n;
      for (const c of counts) expect(Math.abs(c - ideal) / ideal).toBeLessThan(0.03);
    }
  });
  it('honours weights in the table', () => {
    const list = [makeBackend('10.1.0.1', 80, 3), makeBackend('10.1.0.2', 80, 1), makeBackend('10.1.0.3', 80, 0)];
    const table = buildMaglevTable(list, 65537);
    const counts = [0, 0, 0];
    for (const e of table) counts[e]!++;
    expect(counts[2]).toBe(0);
    expect(counts[0]! / counts[1]!).toBeGreaterThan(2.9);
    expect(counts[0]! / counts[1]!).toBeLessThan(3.1);
  });
  it('is deterministic: same key same backend, across instances', () => {
    const a = createBalancer('maglev', backends(5));
    const b = createBalancer('maglev', [...backends(5)].reverse());
    for (let i = 0; i < 2000; i++) {
      expect(a.pick(key(i))!.id).toBe(a.pick(key(i))!.id);
      expect(a.pick(key(i))!.id).toBe(b.pick(key(i))!.id);
    }
    expect(hashFlowKey(key(1, PROTO_TCP))).not.toBe(hashFlowKey(key(1, PROTO_UDP)));
  });
  it('spreads keys evenly and moves about 1/N of them when one of N goes away', () => {
    const n = 10;
    const keys = 50_000;
    const lb = createBalancer('maglev', backends(n));
    const before = Array.from({ length: keys }, (_, i) => lb.pick(key(i))!.id);
    const counts = countPicks(before.map((id) => ({ id }) as Backend));
    for (const c of counts.values()) expect(Math.abs(c - keys / n) / (keys / n)).toBeLessThan(0.06);

    lb.setHealth('10.1.0.4:8080', false);
    const after = Array.from({ length: keys }, (_, i) => lb.pick(key(i))!.id);
    let moved = 0;
    let movedFromOthers = 0;
    for (let i = 0; i < keys; i++) {
      if (before[i] !== after[i]) {
        moved++;
        if (before[i] !== '10.1.0.4:8080') movedFromOthers++;
      }
      expect(after[i]).not.toBe('10.1.0.4:8080');
    }
    expect(moved / keys).toBeGreaterThan(0.08);
    expect(moved / keys).toBeLessThan(0.13);
    // Keys of the surviving backends almost all stay put.
    expect(movedFromOthers / keys).toBeLessThan(0.02);

    // Back to healthy: the original mapping returns exactly.
    lb.setHealth('10.1.0.4:8080', true);
    for (let i = 0; i < keys; i += 7) expect(lb.pick(key(i))!.id).toBe(before[i]);
  });
  it('returns null when no backend is healthy', () => {
    const lb = createBalancer('maglev', backends(2));
    lb.setHealth('10.1.0.1:8080', false);
    lb.setHealth('10.1.0.2:8080', false);
    expect(lb.pick(key(3))).toBeNull();
    expect(createBalancer('maglev', []).pick(key(3))).toBeNull();
  });
});

describe('every balancer', () => {
  it('never picks an unhealthy or drained backend, and returns null only when none is eligible', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('rr', 'wlc', 'maglev'),
        fc.array(fc.record({ weight: fc.integer({ min: 0, max: 5 }), healthy: fc.boolean() }), { minLength: 0, maxLength: 8 }),
        fc.array(fc.nat(100_000), { minLength: 1, maxLength: 30 }),
        (kind, specs, keys) => {
          const list = specs.map((s, i) => makeBackend(`10.2.0.${i + 1}`, 80, s.weight));
          const lb = createBalancer(kind, list, { maglev: { minTableSize: 0 } });
          specs.forEach((s, i) => lb.setHealth(list[i]!.id, s.healthy));
          const eligible = new Set(list.filter((_, i) => specs[i]!.healthy && specs[i]!.weight > 0).map((b) => b.id));
          for (const k of keys) {
            const p = lb.pick(key(k));
            if (eligible.size === 0) expect(p).toBeNull();
            else {
              expect(p).not.toBeNull();
              expect(eligible.has(p!.id)).toBe(true);
              lb.onFlowStart(p!);
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('VIP table', () => {
  it('finds the VIP of a new flow and of a stored flow; each VIP has its own balancer', () => {
    const config = loadConfig(new URL('../../../examples/dsr.yaml', import.meta.url).pathname);
    const table = new VipTable(config.vips.map(vipSpecOf), 'wlc');
    const vip = ipv4ToInt('10.0.0.200');
    const dns = table.forKey({ proto: PROTO_UDP, srcIp: 1, srcPort: 5353, dstIp: vip, dstPort: 53 })!;
    expect(dns.id).toBe('udp/10.0.0.200:53');
    expect(dns.balancer.pick(key(1))!.port).toBe(53);
    const web = table.forFlow({ proto: PROTO_TCP, vipIp: vip, vipPort: 80 })!;
    expect(web.id).toBe('tcp/10.0.0.200:80');
    expect(web.balancer).not.toBe(dns.balancer);
    expect(table.forKey({ proto: PROTO_TCP, srcIp: 1, srcPort: 5353, dstIp: vip, dstPort: 53 })).toBeUndefined();
    expect(table.forKey({ proto: 1, srcIp: 1, srcPort: 0, dstIp: vip, dstPort: 80 })).toBeUndefined(); // ICMP: no VIP
    expect(table.all()).toHaveLength(2);
    expect(() => new VipTable([{ proto: 6, ip: vip, port: 80, backends: [] }, { proto: 6, ip: vip, port: 80, backends: [] }], 'rr')).toThrow(/duplicate VIP/);
  });
});
