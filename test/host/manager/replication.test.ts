// ReplicationSender / ReplicationReceiver in one process over real UDP on loopback: the periodic
// refresh alone heals losses, an older message never overwrites a newer entry, a bulk resync counts
// what it sent, and the wildcard filter keeps only this manager's client domain.
import { afterEach, describe, expect, it } from 'vitest';
import { TAKEOVER_NOTICE as AGENT_NOTICE } from '../../../host/agent/agent.ts';
import { parseConfig, type WasmlbConfig } from '../../../host/config/index.ts';
import { ServiceManager } from '../../../host/manager/manager.ts';
import { replicationEntryOf, ReplicationReceiver, ReplicationSender, storeDigest } from '../../../host/manager/replication.ts';
import { TAKEOVER_NOTICE as MANAGER_NOTICE } from '../../../host/manager/role.ts';
import { ipToU32, type ServiceMessage } from '../../../host/protocol/index.ts';
import { ServiceChannel } from '../../../host/transport/channel.ts';
import { ControlSocket } from '../../../host/transport/udp.ts';

const now = (): number => Math.floor(performance.now());

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const closers: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of closers.splice(0).reverse()) await c();
});

function config(backupDomain = '0.0.0.0/0'): WasmlbConfig {
  return parseConfig(
    JSON.stringify({
      agent: { multicast: { enabled: false } },
      managers: [
        { identity: 'p', role: 'primary', control: { address: '127.0.0.1', port: 1 } },
        { identity: 'b', role: 'backup', control: { address: '127.0.0.1', port: 2 }, clientDomain: [backupDomain] },
      ],
      vips: [{ address: '10.0.0.100', port: 80, backends: [{ address: '10.0.1.1', port: 8080 }, { address: '10.0.1.2', port: 8080 }] }],
    }),
  );
}

async function pair(opts: { dropRate?: number; resendAfter?: number; refreshPeriod?: number; backupDomain?: string } = {}) {
  const cfg = config(opts.backupDomain);
  const mk = async (identity: string): Promise<{ channel: ServiceChannel; manager: ServiceManager }> => {
    const socket = await ControlSocket.open({ bind: { address: '127.0.0.1', port: 0 } });
    const channel = new ServiceChannel({ socket, sender: identity === 'p' ? 1 : 2 });
    const m = cfg.managers.find((x) => x.identity === identity)!;
    const manager = new ServiceManager({ config: cfg, manager: m, channel, now });
    closers.push(() => channel.close());
    return { channel, manager };
  };
  const p = await mk('p');
  const b = await mk('b');
  const pm = cfg.managers[0]!;
  const sender = new ReplicationSender({
    channel: p.channel,
    store: p.manager.store,
    now,
    config: { ...pm.replication, resendAfter: opts.resendAfter ?? pm.replication.resendAfter, refreshPeriod: opts.refreshPeriod ?? pm.replication.refreshPeriod },
    dropRate: opts.dropRate ?? 0,
    random: mulberry32(7), // deterministic losses
  });
  closers.push(() => sender.stop());
  const receiver = new ReplicationReceiver(b.manager, b.channel, ['p', 'b']);
  p.manager.extraHandler = (msg) => {
    if (msg.type === 'replication-ack') sender.onAck(msg);
  };
  b.manager.extraHandler = (msg, from) => void receiver.handle(msg, from);
  sender.addPeer(2, b.channel.socket.local);
  return { p: p.manager, b: b.manager, sender, receiver, bChannel: b.channel };
}

/** Creates flows on the primary's store as an interest match would, and tells the sender (unless null). */
function createFlows(p: ServiceManager, sender: ReplicationSender | null, n: number, prefix = '10.1'): void {
  const vip = p.vips[0]!;
  for (let i = 0; i < n; i++) {
    const key = { proto: 6, srcIp: ipToU32(`${prefix}.${Math.floor(i / 250)}.${(i % 250) + 1}`), srcPort: 1000 + i, dstIp: vip.ip, dstPort: vip.port };
    const backend = vip.backends[i % vip.backends.length]!;
    const { flow } = p.store.insert({ key, backend, mode: 'nat', owner: 'p' });
    sender?.track(flow);
  }
}

describe('replication', () => {
  it('the periodic refresh alone heals lost datagrams (no resend within the test)', async () => {
    const { p, b, sender } = await pair({ dropRate: 0.3, resendAfter: 60_000, refreshPeriod: 300 });
    sender.start();
    createFlows(p, sender, 300);
    await sleep(100);
    expect(sender.stats.dropped).toBeGreaterThan(0);
    expect(b.store.size).toBeLessThan(300); // the loss shows before the refresh
    const end = performance.now() + 2000;
    while (storeDigest(b.store.entries()) !== storeDigest(p.store.entries()) && performance.now() < end) await sleep(20);
    expect(b.store.size).toBe(300);
    expect(storeDigest(b.store.entries())).toBe(storeDigest(p.store.entries()));
    expect(sender.stats.resends).toBe(0);
    expect(sender.stats.refreshed).toBeGreaterThan(0);
  });

  it('an older message never overwrites a newer entry (the message sequence is the version)', async () => {
    const { p, b, receiver, bChannel } = await pair();
    const vip = p.vips[0]!;
    const { flow } = p.store.insert({ key: { proto: 6, srcIp: ipToU32('10.1.0.1'), srcPort: 4000, dstIp: vip.ip, dstPort: vip.port }, backend: vip.backends[0]!, mode: 'nat', owner: 'p' });
    const from = bChannel.socket.local;
    const msg = (sequence: number, remainingMs: number): ServiceMessage => ({ type: 'replication', sender: 1, sequence, entries: [replicationEntryOf(flow, remainingMs)] });
    receiver.handle(msg(200, 0), from); // the newer state: gone
    receiver.handle(msg(100, 10_000), from); // late, older: must not bring it back
    expect(b.store.size).toBe(0);
    receiver.handle(msg(300, 10_000), from);
    expect(b.store.size).toBe(1);
    receiver.handle(msg(250, 0), from);
    expect(b.store.size).toBe(1);
    expect(receiver.stats.stale).toBe(2);
  });

  it('the backup\'s balancer counts follow its store when the primary placed a key again on another backend', async () => {
    const { p, b, receiver, bChannel } = await pair();
    const vip = p.vips[0]!;
    const [b1, b2] = [vip.backends[0]!, vip.backends[1]!];
    const counts = (): number[] => b.vips[0]!.balancer.status().map((s) => s.activeFlows);
    const from = bChannel.socket.local;
    let seq = 1;
    const send = (flow: Parameters<typeof replicationEntryOf>[0], remainingMs = 10_000): void =>
      void receiver.handle({ type: 'replication', sender: 1, sequence: ++seq, entries: [replicationEntryOf(flow, remainingMs)] }, from);
    const key = { proto: 6, srcIp: ipToU32('10.1.0.1'), srcPort: 4000, dstIp: vip.ip, dstPort: vip.port };
    send(p.store.insert({ key, backend: b1, mode: 'nat', owner: 'p' }).flow);
    expect(counts()).toEqual([1, 0]);
    // the primary placed the key again (it had expired there) on the other backend
    p.store.remove(key);
    const again = p.store.insert({ key, backend: b2, mode: 'nat', owner: 'p' }).flow;
    send(again);
    expect(counts()).toEqual([0, 1]);
    send(again, 0); // and it ends
    expect(counts()).toEqual([0, 0]);
    expect(b.store.size).toBe(0);
  });

  it('a bulk resync streams every flow and announces the count; the backup keeps only its client domain', async () => {
    const { p, b, sender, receiver, bChannel } = await pair({ backupDomain: '10.1.0.0/16' });
    // flows the sender was never told of: only the resync can bring them to the backup
    createFlows(p, null, 2000, '10.1');
    createFlows(p, null, 1000, '10.2');
    expect(b.store.size).toBe(0);
    let done: { received: number; count: number } | null = null;
    receiver.expectResync(7);
    receiver.onResyncDone = (d) => (done = { received: d.received, count: d.marker.entryCount });
    sender.startResync(2, bChannel.socket.local, { resyncId: 7, epoch: 1, entryCount: 0 }, 1);
    const end = performance.now() + 5000;
    while (!done && performance.now() < end) await sleep(10);
    expect(done).toEqual({ received: 3000, count: 3000 });
    expect(b.store.size).toBe(2000);
    expect(receiver.stats.filtered).toBeGreaterThanOrEqual(1000);
  });

  it('the agent and the manager agree on the takeover notice marker', () => {
    expect(MANAGER_NOTICE).toBe(AGENT_NOTICE);
  });
});
