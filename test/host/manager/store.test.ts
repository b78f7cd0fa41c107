import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createBalancer, ipv4ToInt, makeBackend, PROTO_TCP, PROTO_UDP, type FlowKey } from '../../../host/manager/decision.ts';
import {
  admitFlow,
  AffinityStore,
  expireFlows,
  flowAffinities,
  RefreshCursor,
  StoreError,
  type AffinityFlow,
  type ReplicatedAffinity,
} from '../../../host/manager/store.ts';

const VIP = ipv4ToInt('10.0.0.100');
const B1 = makeBackend('10.1.0.1', 8080);
const B2 = makeBackend('10.1.0.2', 8080);

function clientKey(i: number, proto = PROTO_TCP): FlowKey {
  return { proto, srcIp: (0xc0a80000 + (i >>> 14)) >>> 0, srcPort: 1024 + (i & 0x3fff), dstIp: VIP, dstPort: 80 };
}

function returnKey(i: number, backend = B1, proto = PROTO_TCP): FlowKey {
  const k = clientKey(i, proto);
  return { proto, srcIp: backend.ip, srcPort: backend.port, dstIp: k.srcIp, dstPort: k.srcPort };
}

class Clock {
  t = 1_000_000;
  readonly now = (): number => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

function storeWithClock(timers = {}): { store: AffinityStore; clock: Clock } {
  const clock = new Clock();
  return { store: new AffinityStore({ now: clock.now, timers }), clock };
}

function replicated(flow: AffinityFlow, patch: Partial<ReplicatedAffinity> = {}): ReplicatedAffinity {
  return {
    proto: flow.proto,
    clientIp: flow.clientIp,
    clientPort: flow.clientPort,
    vipIp: flow.vipIp,
    vipPort: flow.vipPort,
    backend: flow.backend,
    mode: flow.mode,
    owner: flow.owner,
    state: flow.state,
    version: flow.version,
    ...patch,
  };
}

describe('fixed affinity store', () => {
  it('finds a flow by the affinity key of either direction and derives the NAT data', () => {
    const { store } = storeWithClock();
    const { flow, created, update } = store.insert({ key: clientKey(1), backend: B1, mode: 'nat', owner: 'mgr-a' });
    expect(created).toBe(true);
    expect(update.agentTtlMs).toBe(10_000);
    expect(store.lookup(clientKey(1))).toBe(flow);
    expect(store.lookup(returnKey(1))).toBe(flow);
    expect(store.lookup(clientKey(1, PROTO_UDP))).toBeUndefined();
    expect(store.lookup(clientKey(2))).toBeUndefined();

    const a = flowAffinities(flow);
    expect(a.toBackend.key).toEqual(clientKey(1));
    expect(a.toBackend.rewrite).toEqual({ dstIp: B1.ip, dstPort: 8080 });
    expect(a.toClient.key).toEqual(returnKey(1));
    expect(a.toClient.rewrite).toEqual({ srcIp: VIP, srcPort: 80 });
  });

  it('dispatch mode: no rewrite, the return key is VIP → client', () => {
    const { store } = storeWithClock();
    const { flow } = store.insert({ key: clientKey(1), backend: B1, mode: 'dispatch', owner: 'mgr-a' });
    const a = flowAffinities(flow);
    expect(a.toBackend.rewrite).toBeNull();
    expect(a.toBackend.dispatchTo).toBe(B1.ip);
    const k = clientKey(1);
    expect(a.toClient.key).toEqual({ proto: PROTO_TCP, srcIp: VIP, srcPort: 80, dstIp: k.srcIp, dstPort: k.srcPort });
    expect(store.lookup(a.toClient.key)).toBe(flow);
  });

  it('a duplicate SYN or another UDP datagram gets the existing flow, not a new decision', () => {
    const { store, clock } = storeWithClock();
    const first = store.insert({ key: clientKey(7, PROTO_UDP), backend: B1, mode: 'nat', owner: 'a' });
    clock.advance(3_000);
    const again = store.insert({ key: clientKey(7, PROTO_UDP), backend: B2, mode: 'nat', owner: 'a' });
    expect(again.created).toBe(false);
    expect(again.flow).toBe(first.flow);
    expect(again.flow.backend).toBe(B1);
    expect(again.update.agentTtlMs).toBe(7_000);
    expect(store.size).toBe(1);
  });

  it('expires on the manager timer (agent TTL + 4 s), renewal extends it', () => {
    const { store, clock } = storeWithClock();
    store.insert({ key: clientKey(1), backend: B1, mode: 'nat', owner: 'a' });
    store.insert({ key: clientKey(2), backend: B2, mode: 'nat', owner: 'a' });
    clock.advance(9_000);
    const renewal = store.renew(returnKey(2, B2));
    expect(renewal!.agentTtlMs).toBe(10_000);
    expect(renewal!.flow.expiresAt).toBe(clock.t + 14_000);
    clock.advance(4_999); // 13.999 s after creation
    expect(store.expire()).toEqual([]);
    clock.advance(1);
    const gone = store.expire();
    expect(gone.map((f) => f.clientPort)).toEqual([clientKey(1).srcPort]);
    expect(store.lookup(clientKey(1))).toBeUndefined();
    expect(store.lookup(returnKey(1))).toBeUndefined();
    expect(store.flowsPerBackend().get(B1.id)).toBeUndefined();
    expect(store.flowsPerBackend().get(B2.id)).toBe(1);
    expect(store.nextExpiry()).toBe(clock.t - 5_000 + 14_000);
    expect(store.renew(clientKey(1))).toBeNull();
  });

  it('FIN/RST makes the flow sticky for 2 s on the agent, then it expires; no extension after', () => {
    const { store, clock } = storeWithClock();
    store.insert({ key: clientKey(1), backend: B1, mode: 'nat', owner: 'a' });
    clock.advance(1_000);
    const closing = store.close(clientKey(1), 'fin');
    expect(closing!.flow.state).toBe('closing');
    expect(closing!.agentTtlMs).toBe(2_000);
    clock.advance(1_000);
    // The other side's FIN and a renewal do not extend it; they re-send what is left.
    expect(store.close(returnKey(1), 'fin')!.agentTtlMs).toBe(1_000);
    expect(store.renew(clientKey(1))!.agentTtlMs).toBe(1_000);
    clock.advance(1_000 + 4_000 - 1);
    expect(store.expire()).toHaveLength(0);
    clock.advance(1);
    expect(store.expire()).toHaveLength(1);
    expect(store.size).toBe(0);
  });

  it('configurable timers', () => {
    const { store, clock } = storeWithClock({ agentFixedTtlMs: 100, expirySlackMs: 50, stickyMs: 10 });
    const { update } = store.insert({ key: clientKey(1), backend: B1, mode: 'nat', owner: 'a' });
    expect(update.agentTtlMs).toBe(100);
    expect(update.flow.expiresAt).toBe(clock.t + 150);
    expect(store.close(clientKey(1), 'rst')!.agentTtlMs).toBe(10);
    clock.advance(60);
    expect(store.expire()).toHaveLength(1);
    expect(() => new AffinityStore({ now: clock.now, timers: { stickyMs: -1 } })).toThrow(StoreError);
  });

  it('refuses a flow whose return key belongs to another flow', () => {
    const { store } = storeWithClock();
    store.insert({ key: clientKey(1), backend: B1, mode: 'nat', owner: 'a' });
    // Same client addr:port to a second VIP on the same backend: the return key would collide.
    const k = { ...clientKey(1), dstIp: ipv4ToInt('10.0.0.101') };
    expect(() => store.insert({ key: k, backend: B1, mode: 'nat', owner: 'a' })).toThrow(/another flow/);
  });

  it('remove and explicit expiry with a limit', () => {
    const { store, clock } = storeWithClock();
    for (let i = 0; i < 10; i++) store.insert({ key: clientKey(i), backend: B1, mode: 'nat', owner: 'a' });
    expect(store.remove(returnKey(3))!.clientPort).toBe(clientKey(3).srcPort);
    expect(store.remove(returnKey(3))).toBeUndefined();
    clock.advance(20_000);
    expect(store.expire(clock.t, 4)).toHaveLength(4);
    expect(store.expire(clock.t)).toHaveLength(5);
  });

  it('the expiry order is right under random inserts, renewals, closes and removals', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({ op: fc.constantFrom('insert', 'renew', 'close', 'remove', 'tick'), i: fc.nat(30), dt: fc.nat(5_000) }),
          { maxLength: 200 },
        ),
        (ops) => {
          const { store, clock } = storeWithClock();
          const model = new Map<number, number>(); // i → expiresAt
          const closing = new Set<number>();
          for (const { op, i, dt } of ops) {
            if (op === 'insert') {
              if (!model.has(i)) model.set(i, clock.t + 14_000);
              store.insert({ key: clientKey(i), backend: B1, mode: 'nat', owner: 'a' });
            } else if (op === 'renew') {
              if (model.has(i) && !closing.has(i)) model.set(i, clock.t + 14_000);
              store.renew(clientKey(i));
            } else if (op === 'close') {
              if (model.has(i) && !closing.has(i)) {
                closing.add(i);
                model.set(i, Math.min(model.get(i)!, clock.t + 6_000));
              }
              store.close(returnKey(i), 'rst');
            } else if (op === 'remove') {
              model.delete(i);
              closing.delete(i);
              store.remove(clientKey(i));
            } else {
              clock.advance(dt);
              const expected = [...model].filter(([, t]) => t <= clock.t).map(([k]) => k);
              const got = store.expire().map((f) => f.clientPort - 1024);
              expect(got.sort()).toEqual(expected.sort());
              for (const k of expected) {
                model.delete(k);
                closing.delete(k);
              }
            }
            expect(store.size).toBe(model.size);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('holds 1M flows and expires them without scanning', () => {
    const { store, clock } = storeWithClock();
    const n = 1_000_000;
    for (let i = 0; i < n; i++) {
      store.insert({ key: clientKey(i), backend: i & 1 ? B1 : B2, mode: 'nat', owner: 'a' });
      if ((i & 0x3fff) === 0) clock.advance(1);
    }
    expect(store.size).toBe(n);
    expect(store.flowsPerBackend().get(B1.id)).toBe(n / 2);
    // Renew every tenth: they outlive the rest.
    clock.advance(5_000);
    for (let i = 0; i < n; i += 10) store.renew(clientKey(i));
    clock.advance(9_100);
    const t0 = performance.now();
    expect(store.expire()).toHaveLength(0.9 * n);
    const first = performance.now() - t0;
    expect(store.size).toBe(n / 10);
    // An idle tick costs nothing: nothing due, nothing visited.
    const t1 = performance.now();
    for (let k = 0; k < 1000; k++) store.expire();
    expect(performance.now() - t1).toBeLessThan(first);
    expect(store.lookup(clientKey(10))!.backend).toBe(B2);
  });
});

describe('replication hooks', () => {
  it('a backup mirrors the primary with its remaining TTL + 0.5 s', () => {
    const primary = storeWithClock();
    const backup = storeWithClock();
    const { flow } = primary.store.insert({ key: clientKey(1), backend: B1, mode: 'nat', owner: 'mgr-a' });
    primary.clock.advance(3_000);
    const remaining = primary.store.remainingTtl(flow);
    expect(remaining).toBe(11_000);
    expect(backup.store.upsertReplicated(replicated(flow), remaining)).toBe('inserted');
    const mirrored = backup.store.lookup(returnKey(1))!;
    expect(mirrored.backend.id).toBe(B1.id);
    expect(mirrored.owner).toBe('mgr-a');
    expect(backup.store.remainingTtl(mirrored)).toBe(11_500);
    // The periodic refresh re-sends the same version: it refreshes the timer.
    backup.clock.advance(1_000);
    expect(backup.store.upsertReplicated(replicated(flow), 10_000)).toBe('updated');
    expect(backup.store.remainingTtl(mirrored)).toBe(10_500);
    expect([...backup.store.entries()]).toHaveLength(1);
  });

  it('a newer replication replaces, an older one is ignored, TTL 0 removes', () => {
    const primary = storeWithClock();
    const backup = storeWithClock();
    const { flow } = primary.store.insert({ key: clientKey(1), backend: B1, mode: 'nat', owner: 'a' });
    const v1 = replicated(flow);
    primary.store.close(clientKey(1), 'fin');
    const v2 = replicated(flow);
    expect(v2.version).toBeGreaterThan(v1.version);
    expect(backup.store.upsertReplicated(v2, 6_000)).toBe('inserted');
    expect(backup.store.upsertReplicated(v1, 14_000)).toBe('stale');
    expect(backup.store.lookup(clientKey(1))!.state).toBe('closing');
    expect(backup.store.remainingTtl(backup.store.lookup(clientKey(1))!)).toBe(6_500);
    // The key reused by a new flow on another backend: the newer record replaces the old.
    const v3 = replicated(flow, { backend: B2, state: 'active', version: v2.version + 1 });
    expect(backup.store.upsertReplicated(v3, 14_000)).toBe('updated');
    expect(backup.store.lookup(clientKey(1))!.backend).toBe(B2);
    expect(backup.store.lookup(returnKey(1, B1))).toBeUndefined();
    expect(backup.store.lookup(returnKey(1, B2))).toBeDefined();
    expect(backup.store.flowsPerBackend().get(B1.id)).toBeUndefined();
    expect(backup.store.upsertReplicated({ ...v3, version: v3.version + 1 }, 0)).toBe('removed');
    expect(backup.store.size).toBe(0);
    expect(backup.store.upsertReplicated({ ...v3, version: v3.version + 2 }, 0)).toBe('absent');
  });

  it('after takeover the backup owns the flows and its versions are newer', () => {
    const backup = storeWithClock();
    const primary = storeWithClock();
    for (let i = 0; i < 5; i++) primary.store.insert({ key: clientKey(i), backend: B1, mode: 'nat', owner: 'a' });
    for (const f of primary.store.entries()) backup.store.upsertReplicated(replicated(f), primary.store.remainingTtl(f));
    expect(backup.store.adoptAll('b')).toBe(5);
    expect([...backup.store.entries()].every((f) => f.owner === 'b' && f.version > 5)).toBe(true);
    // It renews on its own timers from now on.
    const r = backup.store.renew(clientKey(0))!;
    expect(r.agentTtlMs).toBe(10_000);
    expect(backup.store.currentVersion).toBe(r.flow.version);
  });
});

describe('the new-flow path (store first, then balancer)', () => {
  it('same key, same backend; balancer counts follow creation and expiry', () => {
    const { store, clock } = storeWithClock();
    const lb = createBalancer('wlc', [B1, B2]);
    const first = admitFlow(store, lb, clientKey(1), 'nat', 'a');
    expect(first.kind).toBe('new');
    // A duplicate SYN even after the balancer would now choose the other backend.
    clock.advance(1_000);
    const dup = admitFlow(store, lb, clientKey(1), 'nat', 'a');
    expect(dup.kind).toBe('existing');
    if (first.kind === 'new' && dup.kind === 'existing') {
      expect(dup.update.flow.backend).toBe(first.update.flow.backend);
      expect(dup.update.agentTtlMs).toBe(10_000);
    }
    expect(admitFlow(store, lb, clientKey(2), 'nat', 'a').kind).toBe('new');
    expect(lb.status().map((s) => s.activeFlows)).toEqual([1, 1]);
    clock.advance(14_000);
    expect(expireFlows(store, () => lb)).toHaveLength(2);
    expect(lb.status().map((s) => s.activeFlows)).toEqual([0, 0]);
    // FIN: within the sticky time the key keeps its backend; after it, the key is a new flow.
    const c = admitFlow(store, lb, clientKey(4), 'nat', 'a');
    store.close(clientKey(4), 'fin');
    clock.advance(1_999);
    expect(admitFlow(store, lb, clientKey(4), 'nat', 'a')).toMatchObject({ kind: 'existing', update: { agentTtlMs: 1 } });
    clock.advance(1);
    // a packet that opens nothing (the connection going on) keeps the backend, active again
    const goesOn = admitFlow(store, lb, clientKey(5), 'nat', 'a');
    store.close(clientKey(5), 'rst');
    clock.advance(2_000);
    const kept = admitFlow(store, lb, clientKey(5), 'nat', 'a', false);
    expect(kept).toMatchObject({ kind: 'existing', update: { agentTtlMs: 10_000, flow: { state: 'active' } } });
    if (kept.kind === 'existing' && goesOn.kind === 'new') expect(kept.update.flow.backend).toBe(goesOn.update.flow.backend);
    store.remove(clientKey(5));
    if (goesOn.kind === 'new') lb.onFlowEnd(goesOn.update.flow.backend);
    // a SYN (the default) reuses the key for a new connection: a new pick
    const reused = admitFlow(store, lb, clientKey(4), 'nat', 'a');
    expect(reused.kind).toBe('new');
    if (reused.kind === 'new' && c.kind === 'new') expect(reused.update.flow).not.toBe(c.update.flow);
    expect(lb.status().reduce((a, s) => a + s.activeFlows, 0)).toBe(1);
    expect(store.size).toBe(1);
    store.remove(clientKey(4));
    lb.setHealth(B1.id, false);
    lb.setHealth(B2.id, false);
    expect(admitFlow(store, lb, clientKey(3), 'nat', 'a')).toEqual({ kind: 'no-backend' });
    expect(store.size).toBe(0);
  });

  it('a renewal that lowers an expiry (a replicated flow carries the backup slack) keeps the timer heap in order', () => {
    const { store, clock } = storeWithClock();
    const base = { proto: 6, vipIp: 100, vipPort: 80, backend: B1, mode: 'nat' as const, owner: 'p', state: 'active' as const };
    store.upsertReplicated({ ...base, clientIp: 1, clientPort: 1, version: 1 }, 14_000);
    store.upsertReplicated({ ...base, clientIp: 2, clientPort: 2, version: 2 }, 14_000);
    clock.advance(100);
    const k2 = { proto: 6, srcIp: 2, srcPort: 2, dstIp: 100, dstPort: 80 };
    store.renew(k2); // now + fixed TTL + slack: below now + 14,000 + backup slack
    const due = store.lookup(k2)!.expiresAt;
    expect(store.nextExpiry()).toBe(due);
    clock.advance(due - clock.t);
    expect(store.expire().map((f) => f.clientIp)).toEqual([2]);
  });

  it('removeByBackend takes only that backend\'s flows', () => {
    const { store } = storeWithClock();
    for (let i = 0; i < 10; i++) store.insert({ key: clientKey(i), backend: i < 3 ? B1 : B2, mode: 'nat', owner: 'a' });
    expect(store.removeByBackend(B1.id)).toHaveLength(3);
    expect(store.size).toBe(7);
    expect(store.lookup(clientKey(0))).toBeUndefined();
    expect(store.lookup(returnKey(5, B2))).toBeDefined();
    expect(store.flowsPerBackend().get(B1.id)).toBeUndefined();
  });
});

describe('replication refresh', () => {
  it('hands out every live flow once per period, spread over it', () => {
    const { store, clock } = storeWithClock();
    for (let i = 0; i < 1000; i++) store.insert({ key: clientKey(i), backend: B1, mode: 'nat', owner: 'a' });
    const cursor = new RefreshCursor(store, 5_000, clock.t);
    const seen = new Map<AffinityFlow, number>();
    let largest = 0;
    for (let tick = 0; tick < 50; tick++) {
      clock.advance(100);
      if (tick === 10) store.remove(clientKey(999)); // gone before its turn: skipped
      const slice = cursor.due(clock.t);
      largest = Math.max(largest, slice.length);
      for (const f of slice) seen.set(f, (seen.get(f) ?? 0) + 1);
    }
    expect(seen.size).toBe(999);
    expect([...seen.values()].every((n) => n === 1)).toBe(true);
    expect(largest).toBeLessThanOrEqual(21); // ~1000 / 50 ticks, not a burst
    // The next period starts over from a fresh snapshot; a flow created during it joins the one after.
    store.insert({ key: clientKey(5000), backend: B2, mode: 'nat', owner: 'a' });
    const counts: number[] = [];
    for (let period = 0; period < 2; period++) {
      let n = 0;
      for (let tick = 0; tick < 50; tick++) {
        clock.advance(100);
        n += cursor.due(clock.t).length;
      }
      counts.push(n);
    }
    expect(counts).toEqual([999, 1000]);
    expect(() => new RefreshCursor(store, 0, clock.t)).toThrow(StoreError);
  });

  it('a long stall hands out the rest of the period, then starts afresh without a burst', () => {
    const { store, clock } = storeWithClock();
    for (let i = 0; i < 100; i++) store.insert({ key: clientKey(i), backend: B1, mode: 'nat', owner: 'a' });
    const cursor = new RefreshCursor(store, 1_000, clock.t);
    clock.advance(100);
    expect(cursor.due(clock.t)).toHaveLength(10);
    clock.advance(10_000);
    expect(cursor.due(clock.t)).toHaveLength(90);
    clock.advance(500);
    expect(cursor.due(clock.t)).toHaveLength(50);
    expect(store.holds(store.lookup(clientKey(1))!)).toBe(true);
    const gone = store.remove(clientKey(1))!;
    expect(store.holds(gone)).toBe(false);
  });
});
