// The manager's per-flow fixed entries (written out directly for speed) must be exactly what the
// flow's two direction affinities (flowAffinities) describe, in both forwarding modes, and must encode
// to the same bytes.
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../../host/config/index.ts';
import { ipv4ToInt, makeBackend } from '../../../host/manager/decision.ts';
import { ServiceManager } from '../../../host/manager/manager.ts';
import { AffinityStore } from '../../../host/manager/store.ts';
import { encodeMessage } from '../../../host/protocol/index.ts';
import type { ServiceChannel } from '../../../host/transport/channel.ts';

function managerIn(mode: 'nat' | 'dispatch'): ServiceManager {
  const config = defaultConfig();
  const manager = { ...config.managers[0]!, mode };
  const channel = { socket: { local: { address: '127.0.0.1', port: 47123 } }, onMessage: () => undefined } as unknown as ServiceChannel;
  return new ServiceManager({ config, manager, channel, now: () => 1000 });
}

describe('ServiceManager.fixedEntries', () => {
  for (const mode of ['nat', 'dispatch'] as const) {
    it(`equals the flowAffinities entries in ${mode} mode and encodes to the same bytes`, () => {
      const m = managerIn(mode);
      const store = new AffinityStore({ now: () => 1000 });
      const backend = makeBackend('10.0.1.7', 8081, 1);
      for (let i = 0; i < 50; i++) {
        const key = { proto: i % 2 ? 17 : 6, srcIp: (0x0a090000 + i) >>> 0, srcPort: 1024 + i * 7, dstIp: 0x0a000064, dstPort: 80 };
        const { flow } = store.insert({ key, backend, mode, owner: 'mgr' });
        for (const ttl of [0, 1, 10_000]) {
          const direct = m.fixedEntries(flow, ttl);
          expect(direct).toStrictEqual(m.fixedEntriesReference(flow, ttl));
          const msg = (fixed: typeof direct) => encodeMessage({ type: 'affinity-update-fixed', sender: 1, sequence: 2, fixed, packet: new Uint8Array([0x45, 1, 2, 3]) });
          expect(Buffer.compare(msg(direct), msg(m.fixedEntriesReference(flow, ttl)))).toBe(0);
        }
      }
    });
  }
});

describe('ServiceManager on a removed VIP', () => {
  it('takes no new connection on a closing flow\'s key past its sticky time (it would keep the VIP from draining)', () => {
    let now = 1_000_000;
    const config = defaultConfig();
    const second = { ...config.vips[0]!, address: '10.0.0.101', backends: [{ ...config.vips[0]!.backends[0]!, address: '10.0.2.1' }] };
    const manager = new ServiceManager({
      config: { ...config, vips: [config.vips[0]!, second] },
      manager: { ...config.managers[0]!, balancer: 'rr' },
      channel: { socket: { local: { address: '127.0.0.1', port: 47123 } }, onMessage: () => undefined, send: () => undefined, sendMany: () => undefined } as unknown as ServiceChannel,
      now: () => now,
    });
    const packet = (flags: number): Uint8Array => {
      const p = new Uint8Array(40);
      p[0] = 0x45;
      p[33] = flags;
      return p;
    };
    const match = (flags: number, reason: number): void =>
      manager.handleMessage(
        { type: 'interest-match-wildcard', sender: 9, sequence: 1, identifier: { protocol: 6, srcAddr: 0x0a090001, srcPort: 1000, dstAddr: 0x0a000065, dstPort: 80, flags: 0, reason }, packet: packet(flags) },
        { address: '127.0.0.1', port: 9 },
      );
    match(0x02, 0x8000); // SYN: a flow on .101
    match(0x11, 0x01); //   FIN: closing
    expect(manager.reloadVips([config.vips[0]!]).removed).toEqual(['10.0.0.101:80']);
    now += 3000; // past the sticky time (2 s), before the manager forgets the flow
    match(0x02, 0x8000); // a new connection from the same client port
    expect(manager.stats.newFlows).toBe(1);
    expect(manager.stats.vipRemoved).toBe(1);
    // nor is a flow taken on from its backend's packet to a client nobody knows
    const backend = second.backends[0]!;
    manager.handleMessage(
      { type: 'interest-match-wildcard', sender: 9, sequence: 2, identifier: { protocol: 6, srcAddr: ipv4ToInt(backend.address), srcPort: backend.port, dstAddr: 0x0a090002, dstPort: 2000, flags: 0, reason: 0x8000 }, packet: packet(0x18) },
      { address: '127.0.0.1', port: 9 },
    );
    expect(manager.stats.adopted).toBe(0);
  });
});
