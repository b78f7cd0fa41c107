// RoleController on a fake clock with real UDP channels on loopback: a backup whose resync was cut by a
// partition long enough for the primary to forget it asks again when the primary is back, completes,
// and can then take over.
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../host/config/index.ts';
import { managerId, ServiceManager } from '../../../host/manager/manager.ts';
import { ReplicationReceiver, ReplicationSender } from '../../../host/manager/replication.ts';
import { RoleController } from '../../../host/manager/role.ts';
import { ipToU32, type ServiceMessage } from '../../../host/protocol/index.ts';
import { ServiceChannel } from '../../../host/transport/channel.ts';
import { ControlSocket, type Endpoint } from '../../../host/transport/udp.ts';

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

const config = parseConfig(
  JSON.stringify({
    agent: { multicast: { enabled: false } },
    managers: [
      { identity: 'p', role: 'primary', control: { address: '127.0.0.1', port: 1 } },
      { identity: 'b', role: 'backup', control: { address: '127.0.0.1', port: 2 } },
    ],
    vips: [{ address: '10.0.0.100', port: 80, backends: [{ address: '10.0.1.1', port: 8080 }, { address: '10.0.1.2', port: 8080 }] }],
  }),
);

describe('RoleController', () => {
  it('a backup whose resync a long partition cut asks again when the primary is back, and can take over', async () => {
    let clock = 1_000_000;
    const now = (): number => clock;
    const node = async (identity: string, peers: Endpoint[]) => {
      const socket = await ControlSocket.open({ bind: { address: '127.0.0.1', port: 0 } });
      const channel = new ServiceChannel({ socket, sender: managerId(identity) });
      closers.push(() => channel.close());
      const m = config.managers.find((x) => x.identity === identity)!;
      const manager = new ServiceManager({ config, manager: m, channel, now });
      const sender = new ReplicationSender({ channel, store: manager.store, now, config: m.replication });
      const receiver = new ReplicationReceiver(manager, channel, ['p', 'b']);
      const events: string[] = [];
      const role = new RoleController({ manager, channel, config, sender, receiver, peers, now, onEvent: (e) => events.push(e) });
      manager.extraHandler = (msg, from) => role.handle(msg, from);
      return { channel, manager, sender, role, events };
    };
    const p = await node('p', []);
    const b = await node('b', [p.channel.socket.local]);
    const vip = p.manager.vips[0]!;
    // long-lived flows (they must outlive the partition on the fake clock)
    for (let i = 0; i < 3000; i++) {
      const { flow } = p.manager.store.insert({ key: { proto: 6, srcIp: ipToU32('10.9.0.0') + (i >> 8), srcPort: 1000 + i, dstIp: vip.ip, dstPort: 80 }, backend: vip.backends[i % 2]!, mode: 'nat', owner: 'p' });
      (flow as { expiresAt: number }).expiresAt = clock + 3_600_000;
    }
    // the partition starts right after the first resync-data reaches the backup
    let partition = false;
    let cutOnce = false;
    const gate = (x: typeof p, cut: (m: ServiceMessage) => boolean): void => x.channel.onMessage((m, from) => {
      if (partition) return;
      if (!cutOnce && cut(m)) partition = cutOnce = true;
      x.manager.handleMessage(m, from);
    });
    gate(b, (m) => m.type === 'resync-data');
    gate(p, () => false);
    const run = async (ms: number, step: number): Promise<void> => {
      for (let t = 0; t < ms; t += step) {
        clock += step;
        const roles = [p.role, b.role] as unknown as Array<{ beat(): void; check(): void }>;
        for (const r of roles) r.beat();
        for (const r of roles) r.check();
        (p.sender as unknown as { tick(): void }).tick();
        p.channel.socket.flush();
        b.channel.socket.flush();
        await new Promise((r) => setTimeout(r, 1));
      }
    };
    await run(500, 10);
    expect(partition).toBe(true);
    expect(b.role.resyncState).toBe('in-progress');
    await run(31_000, 250); // past the primary's 30 s: it forgets the backup and the resync with it
    partition = false;
    await run(2_000, 10);
    expect(b.role.resyncState, b.events.join(',')).toBe('complete');
    expect(b.manager.store.size).toBe(3000);
    // the primary dies: the backup takes over
    p.channel.onMessage(() => undefined);
    (p.role as unknown as { beat(): void }).beat = () => undefined;
    partition = true;
    await run(1_000, 10);
    expect(b.events).toContain('takeover');
    expect(b.manager.active).toBe(true);
  });
});
