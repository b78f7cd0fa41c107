// Kill -9 of the primary under load, and the old primary coming back: real manager processes, a real
// agent (firmware + UDP) in this process.
import { readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { parseConfig } from '../../../host/config/index.ts';
import { securityOf } from '../../../host/manager/run.ts';
import { ServiceChannel } from '../../../host/transport/channel.ts';
import { ControlSocket } from '../../../host/transport/udp.ts';
import { managerId } from '../../../host/manager/manager.ts';
import { ipToU32, u32ToIp } from '../../../host/protocol/index.ts';
import { killAll } from '../../support/process.ts';
import { ConfigFile, failoverConfig, openFlows, sleep, startManager, statsWhere, TestAgent, primaryBackupSetup } from './harness.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  await killAll();
  for (const c of cleanups.splice(0)) await c();
});

describe('failover: kill -9 of the primary', () => {
  it('keeps every flow on its backend, loses no packet of an established flow, and serves new flows after takeover', async () => {
    const { cfg, agent } = await primaryBackupSetup(cleanups);

    const a = await startManager(cfg.file, 'mgr-a', agent.endpoint);
    await a.proc.waitFor((e) => e.event === 'role' && e['role'] === 'primary');
    const b = await startManager(cfg.file, 'mgr-b', agent.endpoint, [a.control]);
    await b.proc.waitForEvent('resync-complete');

    const established = await openFlows(agent, '10.1', 300);
    const before = agent.backendMap();
    expect(before.size).toBe(300);
    // The backup mirrors every one of them (same key, same backend).
    await statsWhere(b, (s) => s.flows === 300 && s.digest === agent.digestOf());

    // Load: a data packet on every established flow each 10 ms, across the kill.
    let stop = false;
    const load = (async () => {
      while (!stop) {
        for (const k of established) {
          const f = agent.flows.get(k)!;
          const [ip, port] = k.split(':').map(Number) as [number, number];
          agent.send(`${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`, port);
          void f;
        }
        await sleep(10);
      }
    })();
    await sleep(100);
    a.proc.kill('SIGKILL');
    const killedAt = performance.now();
    const takeover = await b.proc.waitForEvent('takeover', 5000);
    expect(takeover['replaced']).toEqual(['mgr-a']);
    expect(takeover['epoch']).toBeGreaterThan(1);
    // The agent applied the takeover notice naming the dead primary.
    const deadline = performance.now() + 2000;
    while (agent.notices.length === 0 && performance.now() < deadline) await sleep(5);
    expect(agent.notices[0]?.replaced).toBe(managerId('mgr-a'));
    expect(agent.notices[0]!.at).toBeGreaterThan(killedAt);
    await sleep(300);
    stop = true;
    await load;
    // Established flows hit their fixed affinities: nothing of theirs went to the dead primary (after the
    // notice the new primary answers at once what meets its wildcards).
    expect(agent.unanswered).toBe(0);

    for (const k of established) {
      const f = agent.flows.get(k)!;
      // Every packet forwarded (no loss), every one to the backend the primary picked (no move).
      expect(f.backends.length).toBe(f.sent);
      expect(new Set(f.backends)).toEqual(new Set([before.get(k)]));
    }

    // New flows after the takeover are answered by the backup.
    const fresh = await openFlows(agent, '10.2', 50);
    for (const k of fresh) expect(agent.flows.get(k)!.backends.length).toBe(1);
    await statsWhere(b, (s) => s.role === 'primary' && s.flows === 350);
  });

  it('a flow whose replication died with the primary is taken on from its backend\'s next packet, on that backend', async () => {
    const { cfg, agent } = await primaryBackupSetup(cleanups);
    // Every replication message of the primary is lost (the backup's resync, done before any flow, is empty).
    const a = await startManager(cfg.file, 'mgr-a', agent.endpoint, [], { WASMLB_FAULT_DROP_REPLICATION: '1' });
    await a.proc.waitFor((e) => e.event === 'role' && e['role'] === 'primary');
    const b = await startManager(cfg.file, 'mgr-b', agent.endpoint, [a.control]);
    await b.proc.waitForEvent('resync-complete');
    const flows = await openFlows(agent, '10.1', 40);
    const before = agent.backendMap();
    expect(before.size).toBe(40);
    await sleep(300);
    await statsWhere(b, (s) => s.flows === 0); // none of them reached the backup

    a.proc.kill('SIGKILL');
    await b.proc.waitForEvent('takeover', 5000);
    await agent.waitNotice(); // mgr-a's fixed affinities are gone from the agent

    // The servers talk first (a download in progress): each backend's next segment reaches its client,
    // from the VIP, and the flow is mgr-b's now, on the same backend.
    for (const k of flows) {
      const f = agent.flows.get(k)!;
      agent.sendFromBackend(before.get(k)!, f.clientIp, f.clientPort);
    }
    await agent.settle();
    for (const k of flows) expect(agent.flows.get(k)!.returned, k).toBe(1);
    await statsWhere(b, (s) => s.role === 'primary' && s.flows === 40);
    // The client's next packets go to that backend by the fixed affinity, without asking anybody.
    const asked = agent.agent.stats.interestMatches;
    for (const k of flows) {
      const [ip, port] = k.split(':').map(Number) as [number, number];
      agent.send(u32ToIp(ip), port);
    }
    expect(agent.agent.stats.interestMatches).toBe(asked);
    for (const [k, backend] of before) expect(new Set(agent.flows.get(k)!.backends)).toEqual(new Set([backend]));
    // A backend's RST of a flow nobody knows is not taken on (the flow is ending).
    const stranger = { clientIp: ipToU32('10.9.0.1'), clientPort: 30000, backends: [], sent: 0, returned: 0 };
    agent.flows.set(`${stranger.clientIp}:30000`, stranger);
    agent.sendFromBackend(before.get(flows[0]!)!, stranger.clientIp, 30000, 0x14);
    await sleep(300);
    expect(stranger.returned).toBe(0);
    await statsWhere(b, (s) => s.flows === 40);
  });

  it('a heartbeat whose epoch is far ahead of the wall clock is ignored: the takeover still happens, with an epoch that fits', async () => {
    const { cfg, agent } = await primaryBackupSetup(cleanups);
    const a = await startManager(cfg.file, 'mgr-a', agent.endpoint);
    const b = await startManager(cfg.file, 'mgr-b', agent.endpoint, [a.control]);
    await b.proc.waitForEvent('resync-complete');
    // a peer holding the key but broken (or hostile): epoch 2^32 - 1, as a primary
    const socket = await ControlSocket.open({ bind: { address: '127.0.0.1', port: 0 } });
    const rogue = new ServiceChannel({ socket, sender: managerId('mgr-rogue'), ...securityOf(parseConfig(readFileSync(cfg.file, 'utf8'))) });
    cleanups.push(() => rogue.close());
    for (let i = 0; i < 3; i++) {
      rogue.send({ type: 'heartbeat', heartbeat: { role: 'primary', resyncState: 'none', epoch: 0xffffffff, backupPrecedence: 200, intervalMs: 50 } }, b.control);
      await sleep(20);
    }
    a.proc.kill('SIGKILL');
    const t = await b.proc.waitForEvent('takeover', 5000);
    expect(t['epoch']).toBeLessThan(0xffffffff);
    await agent.waitNotice();
    await statsWhere(b, (s) => s.role === 'primary');
  });

  it('the old primary comes back as backup (no split brain), resyncs, and with preempt takes over again without moving flows', async () => {
    const { text, config } = failoverConfig([
      { identity: 'mgr-a', role: 'primary', preempt: true },
      { identity: 'mgr-b', role: 'backup' },
    ]);
    const cfg = new ConfigFile(text);
    const agent = await TestAgent.open(config);
    cleanups.push(() => agent.close(), () => cfg.cleanup());

    const a = await startManager(cfg.file, 'mgr-a', agent.endpoint);
    const b = await startManager(cfg.file, 'mgr-b', agent.endpoint, [a.control]);
    await b.proc.waitForEvent('resync-complete');
    await openFlows(agent, '10.1', 100);
    await statsWhere(b, (s) => s.flows === 100);
    a.proc.kill('SIGKILL');
    await b.proc.waitForEvent('takeover', 5000);
    await agent.waitNotice();
    await openFlows(agent, '10.2', 50);
    const before = agent.backendMap();
    expect(before.size).toBe(150);

    // mgr-a restarts (configured primary, precedence 200 > 100): it hears mgr-b answering and stays
    // backup until its resync is complete; only then does it preempt (takeover.preempt: true).
    const a2 = await startManager(cfg.file, 'mgr-a', agent.endpoint, [b.control]);
    const roleEvent = await a2.proc.waitFor((e) => e.event === 'role' || e.event === 'takeover');
    expect(roleEvent['role']).toBe('backup');
    const resync = await a2.proc.waitForEvent('resync-complete');
    expect(resync['stored']).toBe(150);
    const preempt = await a2.proc.waitForEvent('takeover', 5000);
    expect(preempt['reason']).toBe('preempt');
    expect(preempt['epoch']).toBeGreaterThan(2);
    // mgr-b steps down: exactly one primary.
    await b.proc.waitForEvent('step-down', 5000);
    await statsWhere(b, (s) => s.role === 'backup');
    await statsWhere(a2, (s) => s.role === 'primary' && s.flows === 150);

    // Every flow still on its backend; packets keep flowing; new flows go to mgr-a.
    for (const [k] of before) {
      const [ip, port] = k.split(':').map(Number) as [number, number];
      agent.send(`${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`, port);
    }
    await agent.settle();
    for (const [k, backend] of before) expect(new Set(agent.flows.get(k)!.backends)).toEqual(new Set([backend]));
    await openFlows(agent, '10.3', 20);
    await statsWhere(a2, (s) => s.flows === 170);
    await statsWhere(b, (s) => s.flows === 170); // mgr-b mirrors mgr-a now
  });

  it('a primary that was only frozen (SIGSTOP) and resumes steps down to the higher epoch: one primary', async () => {
    const { cfg, agent } = await primaryBackupSetup(cleanups);
    const a = await startManager(cfg.file, 'mgr-a', agent.endpoint);
    const b = await startManager(cfg.file, 'mgr-b', agent.endpoint, [a.control]);
    await b.proc.waitForEvent('resync-complete');
    await openFlows(agent, '10.1', 60);
    await statsWhere(b, (s) => s.flows === 60);
    const before = agent.backendMap();
    a.proc.kill('SIGSTOP');
    await b.proc.waitForEvent('takeover', 5000);
    await agent.waitNotice();
    await openFlows(agent, '10.2', 20);
    a.proc.kill('SIGCONT');
    const down = await a.proc.waitForEvent('step-down', 5000);
    expect(down['to']).toBe('mgr-b');
    await statsWhere(a, (s) => s.role === 'backup' && s.flows === 80);
    await statsWhere(b, (s) => s.role === 'primary' && s.flows === 80);
    expect(b.proc.events.some((e) => e.event === 'step-down')).toBe(false);
    // Old and new flows keep their backends; new flows are still answered.
    for (const [k] of before) {
      const [ip, port] = k.split(':').map(Number) as [number, number];
      agent.send(`${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`, port);
    }
    await agent.settle();
    for (const [k, backend] of before) expect(new Set(agent.flows.get(k)!.backends)).toEqual(new Set([backend]));
    const fresh = await openFlows(agent, '10.3', 10);
    for (const k of fresh) expect(agent.flows.get(k)!.backends.length).toBe(1);
    await statsWhere(b, (s) => s.flows === 90);
  });

  it('with two backups of the same domain only the better one takes over; the other follows it', async () => {
    const { text, config } = failoverConfig([
      { identity: 'mgr-a', role: 'primary' },
      { identity: 'mgr-b', role: 'backup', backupPrecedence: 100 },
      { identity: 'mgr-c', role: 'backup', backupPrecedence: 150 },
    ]);
    const cfg = new ConfigFile(text);
    const agent = await TestAgent.open(config);
    cleanups.push(() => agent.close(), () => cfg.cleanup());
    const a = await startManager(cfg.file, 'mgr-a', agent.endpoint);
    const b = await startManager(cfg.file, 'mgr-b', agent.endpoint, [a.control]);
    const c = await startManager(cfg.file, 'mgr-c', agent.endpoint, [a.control, b.control]);
    await Promise.all([b.proc.waitForEvent('resync-complete'), c.proc.waitForEvent('resync-complete')]);
    await openFlows(agent, '10.1', 80);
    await statsWhere(b, (s) => s.flows === 80);
    await statsWhere(c, (s) => s.flows === 80);
    // mgr-b learned mgr-c from its heartbeats (mgr-c was started with both peers).
    await b.proc.waitFor((e) => e.event === 'peer-up' && e['peer'] === 'mgr-c');
    const before = agent.backendMap();
    a.proc.kill('SIGKILL');
    const t = await c.proc.waitForEvent('takeover', 5000);
    expect(t['replaced']).toEqual(['mgr-a']);
    // mgr-b does not take over: it follows mgr-c and resyncs from it.
    await b.proc.waitFor((e) => e.event === 'resync-complete' && e['from'] === 'mgr-c', 5000);
    expect(b.proc.events.some((e) => e.event === 'takeover')).toBe(false);
    await agent.waitNotice();
    await sleep(200);
    expect(agent.notices.length).toBe(1);
    for (const [k] of before) {
      const [ip, port] = k.split(':').map(Number) as [number, number];
      agent.send(`${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`, port);
    }
    await agent.settle();
    for (const [k, backend] of before) expect(new Set(agent.flows.get(k)!.backends)).toEqual(new Set([backend]));
    await openFlows(agent, '10.2', 10);
    await statsWhere(c, (s) => s.role === 'primary' && s.flows === 90);
    await statsWhere(b, (s) => s.role === 'backup' && s.flows === 90);
  });

  it('without preempt the returning primary stays backup', async () => {
    const { cfg, agent } = await primaryBackupSetup(cleanups);
    const a = await startManager(cfg.file, 'mgr-a', agent.endpoint);
    const b = await startManager(cfg.file, 'mgr-b', agent.endpoint, [a.control]);
    await b.proc.waitForEvent('resync-complete');
    await openFlows(agent, '10.1', 40);
    await statsWhere(b, (s) => s.flows === 40); // replicated before the kill
    a.proc.kill('SIGKILL');
    await b.proc.waitForEvent('takeover', 5000);
    const a2 = await startManager(cfg.file, 'mgr-a', agent.endpoint, [b.control]);
    await a2.proc.waitForEvent('resync-complete');
    await sleep(400);
    expect(a2.proc.events.some((e) => e.event === 'takeover')).toBe(false);
    await statsWhere(a2, (s) => s.role === 'backup' && s.flows === 40);
    await statsWhere(b, (s) => s.role === 'primary');
    // New flows are answered (by mgr-b) although mgr-a's configured precedence is higher.
    const fresh = await openFlows(agent, '10.2', 10);
    for (const k of fresh) expect(agent.flows.get(k)!.backends.length).toBe(1);
    await statsWhere(a2, (s) => s.flows === 50);
  });
});

describe('failover: an agent that outlives its managers', () => {
  it('applies the takeover notice of a manager pair restarted from scratch (epochs grow across restarts)', async () => {
    const { cfg, agent } = await primaryBackupSetup(cleanups);
    for (let round = 1; round <= 2; round++) {
      const a = await startManager(cfg.file, 'mgr-a', agent.endpoint);
      await a.proc.waitFor((e) => e.event === 'role' && e['role'] === 'primary');
      const b = await startManager(cfg.file, 'mgr-b', agent.endpoint, [a.control]);
      await b.proc.waitForEvent('resync-complete');
      a.proc.kill('SIGKILL');
      await b.proc.waitFor((e) => e.event === 'takeover' && 'adopted' in e);
      // The agent dropped the dead primary's affinities: in the second round too, although both
      // managers started again from nothing and the agent kept the first round's epoch.
      const deadline = performance.now() + 5000;
      while (agent.agent.stats.takeoverNotices < round && performance.now() < deadline) await sleep(10);
      expect(agent.agent.stats.takeoverNotices).toBe(round);
      b.proc.kill('SIGKILL');
      await Promise.all([a.proc.exited, b.proc.exited]);
    }
  });
});

describe('failover: flows that start while the primary is dead', () => {
  it('the agent runs their first packets again at the takeover notice: they reach a backend through the backup, no client retransmission needed', async () => {
    const { text, config } = failoverConfig([
      { identity: 'mgr-a', role: 'primary' },
      { identity: 'mgr-b', role: 'backup' },
    ]);
    const cfg = new ConfigFile(text);
    // The agent's own resend on: the test never asks again itself.
    const agent = await TestAgent.open(config, { resendOnTakeover: true });
    cleanups.push(() => agent.close(), () => cfg.cleanup());
    const a = await startManager(cfg.file, 'mgr-a', agent.endpoint);
    await a.proc.waitFor((e) => e.event === 'role' && e['role'] === 'primary');
    const b = await startManager(cfg.file, 'mgr-b', agent.endpoint, [a.control]);
    await b.proc.waitForEvent('resync-complete');
    const before = await openFlows(agent, '10.1', 20);
    for (const k of before) expect(agent.flows.get(k)!.backends.length).toBe(1);
    // replicated before the kill (on a loaded machine the primary may pause a backup it heard late)
    await statsWhere(b, (s) => s.flows === 20);

    a.proc.kill('SIGKILL');
    await a.proc.exited;
    // The primary is dead but not declared so (3 missed heartbeats): its wildcards still match, so
    // these SYNs go to it and are lost with it.
    const blind: string[] = [];
    for (let i = 0; i < 30; i++) {
      agent.send(`10.3.0.${i + 1}`, 30000 + i, true);
      blind.push(`${ipToU32(`10.3.0.${i + 1}`)}:${30000 + i}`);
    }
    expect(agent.agent.stats.takeoverNotices).toBe(0);
    for (const k of blind) expect(agent.flows.get(k)!.backends.length).toBe(0);

    const notice = performance.now() + 5000;
    while (agent.agent.stats.takeoverNotices === 0 && performance.now() < notice) await sleep(5);
    expect(agent.agent.stats.takeoverNotices).toBe(1);
    expect(agent.agent.stats.resentAfterTakeover).toBe(30);
    // Answered by the backup well before a client's first SYN retransmission (1 s).
    const noticeAt = performance.now();
    while (blind.some((k) => agent.flows.get(k)!.backends.length === 0) && performance.now() - noticeAt < 900) await sleep(5);
    for (const k of blind) expect(agent.flows.get(k)!.backends.length).toBe(1);
    await statsWhere(b, (s) => s.role === 'primary' && s.flows === 50);
  });
});
