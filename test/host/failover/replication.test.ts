// Replication and resync between real manager processes: losses healed, late and restarted backups,
// two backups splitting one primary's flows by client domain.
import { afterEach, describe, expect, it } from 'vitest';
import { ipToU32 } from '../../../host/protocol/index.ts';
import { killAll } from '../../support/process.ts';
import { ConfigFile, failoverConfig, openFlows, sleep, startManager, statsWhere, TestAgent, type FlowRecord, primaryBackupSetup } from './harness.ts';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  await killAll();
  for (const c of cleanups.splice(0)) await c();
});

const inPrefix = (prefix: string) => {
  const net = ipToU32(`${prefix}.0.0`);
  return (f: FlowRecord): boolean => (f.clientIp & 0xffff0000) >>> 0 === net;
};

describe('failover: replication', () => {
  it('with 10 % of replication datagrams dropped, the backup holds every live affinity after one refresh period', async () => {
    const { text, config } = failoverConfig(
      [
        { identity: 'mgr-a', role: 'primary' },
        { identity: 'mgr-b', role: 'backup' },
      ],
      { refreshPeriod: '1s' },
    );
    const cfg = new ConfigFile(text);
    const agent = await TestAgent.open(config);
    cleanups.push(() => agent.close(), () => cfg.cleanup());
    const a = await startManager(cfg.file, 'mgr-a', agent.endpoint, [], { WASMLB_FAULT_DROP_REPLICATION: '0.1' });
    const b = await startManager(cfg.file, 'mgr-b', agent.endpoint, [a.control]);
    await b.proc.waitForEvent('resync-complete');
    await openFlows(agent, '10.1', 400);
    expect(agent.backendMap().size).toBe(400);
    // Within one refresh period (1 s), plus slack for a loaded test machine, the backup holds exactly
    // the primary's flows.
    await statsWhere(b, (e) => e.flows === 400 && e.digest === agent.digestOf(), 1000 + 4000);
    // The fault really dropped datagrams, and they were made up for by resends and the refresh.
    const p = await statsWhere(a, (e) => e.sent.dropped > 0 && e.sent.refreshed >= 400);
    expect(p.sent.resends).toBeGreaterThan(0);
  });

  it('a late-joining backup resyncs; a restarted one resyncs again', async () => {
    const { cfg, agent } = await primaryBackupSetup(cleanups);
    const a = await startManager(cfg.file, 'mgr-a', agent.endpoint);
    await a.proc.waitFor((e) => e.event === 'role' && e['role'] === 'primary');
    await openFlows(agent, '10.1', 500);
    expect(agent.backendMap().size).toBe(500);

    const b = await startManager(cfg.file, 'mgr-b', agent.endpoint, [a.control]);
    const done = await b.proc.waitForEvent('resync-complete');
    expect(done['announced']).toBe(500);
    expect(done['stored']).toBe(500);
    expect(done['entries']).toBeGreaterThanOrEqual(500); // resent data (a busy machine) counts twice
    await statsWhere(b, (e) => e.flows === 500 && e.digest === agent.digestOf() && e.resyncState === 'complete');

    // Restarted backup: state gone with the process, back by resync; flows opened meanwhile included.
    b.proc.kill('SIGKILL');
    await b.proc.exited;
    await openFlows(agent, '10.2', 100);
    const b2 = await startManager(cfg.file, 'mgr-b', agent.endpoint, [a.control]);
    const again = await b2.proc.waitForEvent('resync-complete');
    expect(again['announced']).toBe(600);
    await statsWhere(b2, (e) => e.flows === 600 && e.digest === agent.digestOf());
    await statsWhere(a, (e) => e.role === 'primary');
  });

  it('a backup whose resync never completes does not take over when the primary dies', async () => {
    const { cfg, agent } = await primaryBackupSetup(cleanups);
    // Every replication and resync-data message of the primary is lost: the resync cannot finish.
    const a = await startManager(cfg.file, 'mgr-a', agent.endpoint, [], { WASMLB_FAULT_DROP_REPLICATION: '1' });
    await a.proc.waitFor((e) => e.event === 'role' && e['role'] === 'primary');
    await openFlows(agent, '10.1', 50);
    const b = await startManager(cfg.file, 'mgr-b', agent.endpoint, [a.control]);
    await b.proc.waitForEvent('resync-request');
    await sleep(300);
    expect(b.proc.events.some((e) => e.event === 'resync-complete')).toBe(false);
    a.proc.kill('SIGKILL');
    const blocked = await b.proc.waitForEvent('takeover-blocked', 5000);
    expect(blocked['dead']).toBe('mgr-a');
    await sleep(500);
    expect(b.proc.events.some((e) => e.event === 'takeover')).toBe(false);
    await statsWhere(b, (s) => s.role === 'backup');
    expect(agent.notices.length).toBe(0);
  });

  it('two backups with different client domains split the primary\'s flows and both take over their part', async () => {
    const { text, config } = failoverConfig([
      { identity: 'mgr-a', role: 'primary' },
      { identity: 'mgr-b', role: 'backup', clientDomain: ['10.1.0.0/16'] },
      { identity: 'mgr-c', role: 'backup', clientDomain: ['10.2.0.0/16'] },
    ]);
    const cfg = new ConfigFile(text);
    const agent = await TestAgent.open(config);
    cleanups.push(() => agent.close(), () => cfg.cleanup());
    const a = await startManager(cfg.file, 'mgr-a', agent.endpoint);
    const [b, c] = await Promise.all([
      startManager(cfg.file, 'mgr-b', agent.endpoint, [a.control]),
      startManager(cfg.file, 'mgr-c', agent.endpoint, [a.control]),
    ]);
    await Promise.all([b.proc.waitForEvent('resync-complete'), c.proc.waitForEvent('resync-complete')]);
    await openFlows(agent, '10.1', 120);
    await openFlows(agent, '10.2', 80);
    await openFlows(agent, '10.3', 30); // neither backup's domain
    expect(agent.backendMap().size).toBe(230);
    await statsWhere(b, (e) => e.flows === 120 && e.digest === agent.digestOf(inPrefix('10.1')));
    await statsWhere(c, (e) => e.flows === 80 && e.digest === agent.digestOf(inPrefix('10.2')));

    const before = agent.backendMap();
    a.proc.kill('SIGKILL');
    await Promise.all([b.proc.waitForEvent('takeover', 5000), c.proc.waitForEvent('takeover', 5000)]);
    await agent.waitNotice(2);
    // Each backup's flows keep their backend.
    for (const [k, backend] of before) {
      const f = agent.flows.get(k)!;
      if (!inPrefix('10.1')(f) && !inPrefix('10.2')(f)) continue;
      const [ip, port] = k.split(':').map(Number) as [number, number];
      agent.send(`${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`, port);
      void backend;
    }
    await agent.settle();
    for (const [k, backend] of before) {
      const f = agent.flows.get(k)!;
      if (inPrefix('10.1')(f) || inPrefix('10.2')(f)) expect(new Set(f.backends)).toEqual(new Set([backend]));
    }
    // New flows of each domain go to that domain's new primary.
    await openFlows(agent, '10.1', 10, 30000);
    await openFlows(agent, '10.2', 10, 30000);
    await statsWhere(b, (e) => e.role === 'primary' && e.flows === 130);
    await statsWhere(c, (e) => e.role === 'primary' && e.flows === 90);
    await sleep(1);
  });
});
