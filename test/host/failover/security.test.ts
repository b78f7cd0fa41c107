// Forged and replayed heartbeats and replication are refused by a real backup process, and counted.
import { afterEach, describe, expect, it } from 'vitest';
import { managerId } from '../../../host/manager/manager.ts';
import { ipToU32, Keyring } from '../../../host/protocol/index.ts';
import { ServiceChannel } from '../../../host/transport/channel.ts';
import { ControlSocket } from '../../../host/transport/udp.ts';
import { killAll } from '../../support/process.ts';
import { parseConfig } from '../../../host/config/index.ts';
import { ConfigFile, failoverConfig, KEY, openFlows, primaryBackupSetup, sleep, startManager, statsWhere, TestAgent, VIP, VIP_PORT } from './harness.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  await killAll();
  for (const c of cleanups.splice(0)) await c();
});

const secret = (hex: string): Uint8Array => Buffer.from(hex, 'hex');

describe('failover: security', () => {
  it('a forged heartbeat cannot make a backup follow (or fight) an impostor; a replayed replication cannot resurrect a flow', async () => {
    const { cfg, agent } = await primaryBackupSetup(cleanups);
    const a = await startManager(cfg.file, 'mgr-a', agent.endpoint);
    const b = await startManager(cfg.file, 'mgr-b', agent.endpoint, [a.control]);
    await b.proc.waitForEvent('resync-complete');

    const socket = await ControlSocket.open({ bind: { address: '127.0.0.1', port: 0 } });
    const impostorId = managerId('impostor');
    // Same key id, wrong secret: the MAC does not verify.
    const forger = new ServiceChannel({
      socket,
      sender: impostorId,
      keyring: new Keyring([{ id: 1, secret: secret('00'.repeat(32)), algorithm: 'hmac-sha256' }]),
    });
    cleanups.push(() => forger.close());
    for (let i = 0; i < 5; i++) {
      forger.send({ type: 'heartbeat', heartbeat: { role: 'primary', resyncState: 'none', epoch: 1000, backupPrecedence: 65535, intervalMs: 50 } }, b.control);
      forger.send({ type: 'heartbeat', heartbeat: { role: 'primary', resyncState: 'none', epoch: 1000, backupPrecedence: 65535, intervalMs: 50 } }, a.control);
    }
    socket.flush();
    const sb = await statsWhere(b, (e) => (e.security?.forged ?? 0) + (e.security?.wrongKey ?? 0) >= 5);
    expect(sb.role).toBe('backup');
    const sa = await statsWhere(a, (e) => (e.security?.forged ?? 0) + (e.security?.wrongKey ?? 0) >= 5);
    expect(sa.role).toBe('primary'); // a forged higher epoch does not make the primary step down
    expect(b.proc.events.some((e) => e.event === 'peer-up' && String(e['peer']).includes(impostorId.toString(16)))).toBe(false);
    expect(a.proc.events.some((e) => e.event === 'step-down')).toBe(false);

    // A genuine (correctly signed) replication, a newer one removing the flow, then the first replayed.
    const socket2 = await ControlSocket.open({ bind: { address: '127.0.0.1', port: 0 } });
    // Its own sender identity: sharing mgr-a's would push mgr-a's sequence numbers out of the replay window.
    const peer = new ServiceChannel({ socket: socket2, sender: managerId('replicator'), keyring: new Keyring([{ id: 1, secret: secret(KEY), algorithm: 'hmac-sha256' }]) });
    cleanups.push(() => peer.close());
    const entry = (remainingMs: number) => ({
      affinity: { protocol: 6, srcAddr: ipToU32('10.9.0.1'), srcPort: 5555, dstAddr: ipToU32(VIP), dstPort: VIP_PORT, flags: 0, ttlMs: 0 },
      remainingMs,
      backendAddr: ipToU32('10.0.1.2'),
      backendPort: 8080,
      owner: managerId('mgr-a'),
      actions: [],
    });
    const base = (await statsWhere(b, () => true)).flows;
    const insert = peer.encode({ type: 'replication', entries: [entry(10_000)] });
    socket2.sendNow(insert, b.control);
    await statsWhere(b, (e) => e.flows === base + 1);
    socket2.sendNow(peer.encode({ type: 'replication', entries: [entry(0)] }), b.control);
    await statsWhere(b, (e) => e.flows === base);
    socket2.sendNow(insert, b.control); // replayed
    const after = await statsWhere(b, (e) => (e.security?.replayed ?? 0) >= 1);
    await sleep(150);
    expect((await statsWhere(b, () => true)).flows).toBe(base);
    expect(after.security!.replayed).toBeGreaterThanOrEqual(1);

    // Unsigned messages are refused too (security.require).
    const socket3 = await ControlSocket.open({ bind: { address: '127.0.0.1', port: 0 } });
    const unsigned = new ServiceChannel({ socket: socket3, sender: impostorId });
    cleanups.push(() => unsigned.close());
    unsigned.send({ type: 'replication', entries: [entry(10_000)] }, b.control);
    socket3.flush();
    const s3 = await statsWhere(b, (e) => (e.security?.unauthenticated ?? 0) + ((e['refusedByCode'] as Record<string, number>)['UNAUTHENTICATED'] ?? 0) >= 1);
    expect(s3.flows).toBe(base);
  });
});

describe('failover: rolling the key', () => {
  it('processes that send with different keys work together while each accepts the other\'s (security.accept)', async () => {
    const NEW_KEY = 'a1'.repeat(32);
    const base = JSON.parse(failoverConfig([{ identity: 'mgr-a', role: 'primary' }]).text) as Record<string, unknown>;
    // mid-roll: the manager still sends with key 1 and accepts key 2; the agent already sends with 2
    const managerSide = { ...base, security: { keyId: 1, key: KEY, accept: [{ keyId: 2, key: NEW_KEY }] } };
    const agentSide = { ...base, security: { keyId: 2, key: NEW_KEY, accept: [{ keyId: 1, key: KEY }] } };
    const cfg = new ConfigFile(JSON.stringify(managerSide));
    const agent = await TestAgent.open(parseConfig(JSON.stringify(agentSide)));
    cleanups.push(() => agent.close(), () => cfg.cleanup());
    const a = await startManager(cfg.file, 'mgr-a', agent.endpoint);
    const flows = await openFlows(agent, '10.4', 20);
    for (const k of flows) expect(agent.flows.get(k)!.backends.length).toBe(1);
    const s = await statsWhere(a, (e) => e.flows === 20);
    expect(s.security?.accepted).toBeGreaterThan(0);
    expect(s.security?.wrongKey).toBe(0);
    expect(agent.channel.stats.refusedByCode['WRONG_KEY'] ?? 0).toBe(0);
  });
});
