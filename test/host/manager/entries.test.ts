// The manager's per-flow fixed entries (written out directly for speed) must be exactly what the
// flow's two direction affinities (flowAffinities) describe, in both forwarding modes, and must encode
// to the same bytes.
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../../host/config/index.ts';
import { makeBackend } from '../../../host/manager/decision.ts';
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
