// End to end on real namespaces: `wasmlb agent --tun` in the router namespace on the topology's TUN
// device, a primary and a backup `wasmlb manager` as separate processes there, real HTTP servers in the
// backend namespaces and a real client. Requests through the VIP are balanced as the balancer says; a
// 50 MiB download survives a SIGKILL of the primary manager byte for byte with no reset, and new
// connections work again within a second; without --setup the agent only prints its ip commands; it
// stops cleanly (exit 1 when its device fails); and all of it again on two queues, failover included.

import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeConfig } from '../support/agent.ts';
import type { WasmlbProcess } from '../support/process.ts';
import { bigFileSha256, BIG_FILE_BYTES } from './bigfile.ts';
import { NsHttpClient, tcpCounterDelta, tcpCounters, type HttpOutcome } from './client.ts';
import { deleteNetns, listNetns, liveUnavailableReason, processAlive } from './netns.ts';
import { httpGetFrom, topologyDown, topologyIsGone, topologyUp, type Topology } from './topology.ts';
import { killAllIn, spawnWasmlbIn } from './wasmlb-ns.ts';

const reason = liveUnavailableReason();
if (reason) console.warn(`\n!!! SKIPPING live end-to-end tests (agent on TUN, managers, failover): ${reason}\n`);

// A prefix per run (pid): two test runs on one machine (a developer's and a CI copy) must not remove each
// other's namespaces. Leftovers of crashed runs (their pid gone) are removed before we start.
const PREFIX = `wlbt-e2e${process.pid}-`;
function removeLeftovers(): void {
  for (const n of listNetns()) {
    const m = /^wlbt-e2e(\d+)-(?:client|router|be\d+)$/.exec(n);
    if (m && Number(m[1]) !== process.pid && !processAlive(Number(m[1]))) deleteNetns(n);
  }
}
const AGENT_CONTROL = '127.0.0.1:7400';

function config(topo: Topology): string {
  const backends = topo.backends.map((b) => `{ address: ${b.address} }`).join(', ');
  return `
agent:
  control: { address: 127.0.0.1, port: 7400 }
  # Multicast on lo inside the router namespace: only this topology's processes hear it.
  multicast: { enabled: true, group: 239.7.7.7, port: 7401, interface: 127.0.0.1 }
# Dead after 5 missed heartbeats of 50 ms (default 3): margin against a false takeover while a loaded CI
# machine starves a live primary; a takeover still comes in ≈ 300 ms, well inside the 1 s asked for.
managers:
  - { identity: mgr-a, role: primary, balancer: rr, control: { address: 127.0.0.1, port: 7501 }, timers: { heartbeatMisses: 5 } }
  - { identity: mgr-b, role: backup, balancer: rr, control: { address: 127.0.0.1, port: 7502 }, timers: { heartbeatMisses: 5 } }
vips:
  - address: ${topo.vip}
    port: ${topo.servicePort}
    backends: [${backends}]
`;
}

let cfg: { file: string; cleanup: () => void };
const keyFile = (): string => path.join(path.dirname(cfg.file), 'key.hex');
const routes = (topo: Topology): string => spawnSync('ip', ['-n', topo.netns.router, 'route'], { encoding: 'utf8' }).stdout;

describe.skipIf(reason !== null)('live: wasmlb agent on a TUN device with primary and backup managers', () => {
  let topo: Topology;
  let agent: WasmlbProcess;
  let primary: WasmlbProcess;
  let backup: WasmlbProcess;
  let client: NsHttpClient;
  const base = (): string => `http://${topo.vip}:${topo.servicePort}`;

  const startAgent = async (extra: string[] = []): Promise<WasmlbProcess> => {
    const p = spawnWasmlbIn(topo.netns.router, ['agent', '--tun', topo.router.tunName, '--config', cfg.file, '--key-file', keyFile(), '--setup', '--log-level', 'info', ...extra]);
    await p.waitForEvent('ready', 20_000);
    return p;
  };

  beforeAll(async () => {
    removeLeftovers();
    topo = await topologyUp({ prefix: PREFIX, backends: 2 });
    cfg = writeConfig(config(topo));
    // Every control message authenticated (HMAC-SHA256, required), as in a real deployment.
    writeFileSync(keyFile(), randomBytes(32).toString('hex') + '\n', { mode: 0o600 });
    agent = await startAgent();
    const manager = (role: string): WasmlbProcess =>
      spawnWasmlbIn(topo.netns.router, ['manager', '--config', cfg.file, '--key-file', keyFile(), '--role', role, '--agent', AGENT_CONTROL, '--log-level', 'info']);
    primary = manager('primary');
    backup = manager('backup');
    await Promise.all([primary.waitForEvent('ready', 20_000), backup.waitForEvent('ready', 20_000)]);
    // The agent routes the VIP into its device once a wildcard affinity advertises it.
    await agent.waitFor((e) => e.event === 'vips' && Array.isArray(e['vips']) && e['vips'].includes(`${topo.vip}/32`), 10_000);
    client = await NsHttpClient.start(topo.netns.client);
  });

  afterAll(async () => {
    client?.close();
    await killAllIn();
    cfg?.cleanup();
    topologyDown(PREFIX);
  });

  it('answers 200 requests through the VIP, split evenly over the backends by round robin', async () => {
    expect(routes(topo)).toMatch(new RegExp(`^${topo.vip.replace(/\./g, '\\.')} dev ${topo.router.tunName}`, 'm'));
    const results: HttpOutcome[] = [];
    // 20 concurrent connections at a time, each a new flow (no keep-alive).
    for (let round = 0; round < 10; round++) {
      results.push(...(await Promise.all(Array.from({ length: 20 }, () => client.get(`${base()}/`, { timeoutMs: 5000 }).result))));
    }
    const failed = results.filter((r) => !r.ok || r.status !== 200);
    expect(failed).toEqual([]);
    const byBackend: Record<string, number> = {};
    for (const r of results) if (r.ok) byBackend[r.backend ?? '?'] = (byBackend[r.backend ?? '?'] ?? 0) + 1;
    expect(byBackend).toEqual({ be1: 100, be2: 100 });
    for (const r of results) if (r.ok) expect(r.body).toBe(`backend ${r.backend}\n`);
  });

  /**
   * A throttled 50 MiB download through the VIP; at 12 MiB `victim` (the answering manager) is SIGKILLed.
   * Checks: new connections answered again < 1 s after the kill, `successor` logged a takeover that
   * adopted the flow, the download completes byte-identical, no reset reached the client.
   */
  const downloadAcrossKill = async (victim: WasmlbProcess, successor: WasmlbProcess, label: string): Promise<void> => {
    const before = tcpCounters(topo.netns.client);
    const takeoversBefore = successor.events.filter((e) => e.event === 'takeover' && 'adopted' in e).length;
    // The victim answers until we kill it: no takeover by anybody before (a false one would void the test).
    expect(victim.events.filter((e) => e.event === 'step-down').length, 'the victim stepped down before the kill').toBe(0);
    // Throttled so the transfer spans the kill and the takeover by seconds on either side.
    const dl = client.get(`${base()}/big`, { bytesPerSecond: 14 << 20, progressEvery: 1 << 20, timeoutMs: 60_000 });
    expect(await dl.waitForBytes(12 << 20)).toBeLessThan(BIG_FILE_BYTES);
    victim.kill('SIGKILL');
    const killedAt = performance.now();
    await victim.exited;

    // New connections: each try a new flow with a short timeout, until one gets through.
    let firstOkMs = -1;
    let tries = 0;
    while (performance.now() - killedAt < 5000) {
      tries++;
      const r = await client.get(`${base()}/`, { timeoutMs: 150, freshPort: true }).result;
      if (r.ok && r.status === 200) {
        firstOkMs = performance.now() - killedAt;
        break;
      }
    }
    // The successor's takeover line (with the flows it adopted), newer than any before this kill.
    const isTakeover = (e: { event?: string }): boolean => e.event === 'takeover' && 'adopted' in e;
    const takeover = await successor.waitFor((e) => isTakeover(e) && successor.events.filter(isTakeover).indexOf(e) >= takeoversBefore, 5000);
    console.log(`failover (${label}): new connection OK ${firstOkMs.toFixed(0)} ms after SIGKILL (${tries} tries); takeover after ${String(takeover['sinceLastHeartbeatMs'])} ms without heartbeat, ${String(takeover['adopted'])} flows adopted`);
    expect(firstOkMs).toBeGreaterThanOrEqual(0);
    expect(firstOkMs).toBeLessThan(1000);
    // The flow was in flight through the takeover: the successor adopted it from replication.
    expect(Number(takeover['adopted'])).toBeGreaterThanOrEqual(1);
    expect(dl.bytes()).toBeLessThan(BIG_FILE_BYTES);

    const res = await dl.result;
    expect(res).toMatchObject({ ok: true, status: 200, bytes: BIG_FILE_BYTES });
    expect(res.ok && res.sha256).toBe(bigFileSha256(BIG_FILE_BYTES));
    const delta = tcpCounterDelta(before, tcpCounters(topo.netns.client));
    expect(delta.EstabResets ?? 0).toBe(0);
    expect(delta.InErrs ?? 0).toBe(0);

    // And the new primary keeps serving: a few more requests, both backends.
    const more = await Promise.all(Array.from({ length: 10 }, () => client.get(`${base()}/`, { timeoutMs: 5000 }).result));
    expect(more.every((r) => r.ok && r.status === 200)).toBe(true);
    expect(new Set(more.map((r) => (r.ok ? r.backend : null)))).toEqual(new Set(['be1', 'be2']));
  };

  it('keeps a 50 MiB download byte-identical and reset-free across a SIGKILL of the primary manager', async () => {
    await downloadAcrossKill(primary, backup, 'one queue');
    await agent.waitForEvent('takeover', 5000);
  });

  it('path MTU discovery through the VIP: the router\'s "fragmentation needed" reaches the real server translated', async () => {
    // The router's client-side link carries 1200 bytes; the client's own end says 1500 (MSS 1460), so the
    // servers' full-size segments (DF) stop at the router, whose kernel sends "fragmentation needed" to
    // their source as the client sees it: the VIP, routed into the TUN. The agent translates it for the
    // real server (outer destination, quoted source and checksums) and writes it back into the TUN with
    // the router's own source (accepted: --setup sets accept_local on the device); untranslated, it would
    // never reach a server that could act on it and the download would stall.
    const link = (mtu: number): void => void spawnSync('ip', ['-n', topo.netns.router, 'link', 'set', 'dev', 'c0', 'mtu', String(mtu)]);
    link(1200);
    try {
      const big = await client.get(`${base()}/big`, { timeoutMs: 30_000 }).result;
      expect(big).toMatchObject({ ok: true, bytes: BIG_FILE_BYTES });
      expect(big.ok && big.sha256).toBe(bigFileSha256(BIG_FILE_BYTES));
      // the server that sent it learned the path MTU towards the client from the translated error
      const learned = topo.backends.map((b) => spawnSync('ip', ['-n', b.netns, 'route', 'get', topo.client.address], { encoding: 'utf8' }).stdout);
      expect(learned.some((r) => /\bmtu 1200\b/.test(r)), learned.join('\n')).toBe(true);
    } finally {
      link(1500);
    }
  });

  it('without --setup prints the ip commands (device, VIP route once a wildcard advertises it) and changes nothing; exits 1 when its device goes', async () => {
    // Unicast only: no multicast membership, and the managers were not told about this agent; it
    // announces itself to them (--manager) and so receives their wildcards.
    const unicast = writeConfig(config(topo).replace(/multicast: \{[^}]*\}/, 'multicast: { enabled: false }'));
    const dry = spawnWasmlbIn(topo.netns.router, [
      'agent', '--tun', 'wlbx0', '--config', unicast.file, '--key-file', keyFile(), '--control', '127.0.0.1:7600', '--address', '10.98.0.1/24',
      '--manager', '127.0.0.1:7501,127.0.0.1:7502', '--log-level', 'info',
    ]);
    try {
      expect(await dry.waitForEvent('ready', 20_000)).toMatchObject({ multicast: null });
      await dry.waitFor((e) => e.event === 'vips', 5000);
      expect(dry.stdout).toContain('ip addr replace 10.98.0.1/24 dev wlbx0');
      expect(dry.stdout).toContain('ip link set dev wlbx0 up');
      expect(dry.stdout).toContain(`ip route replace ${topo.vip}/32 dev wlbx0`);
      const addrs = spawnSync('ip', ['-n', topo.netns.router, '-o', 'addr', 'show', 'dev', 'wlbx0'], { encoding: 'utf8' }).stdout;
      expect(addrs).not.toContain('10.98.0.1');
      expect(routes(topo)).not.toContain('wlbx0');
      // The device goes away under the agent: it reports the failure and exits 1 (for its supervisor).
      spawnSync('ip', ['-n', topo.netns.router, 'link', 'del', 'wlbx0']);
      expect(await dry.waitForEvent('device_error', 5000)).toMatchObject({ code: 'TUN_READ' });
      expect(await dry.exited).toEqual({ code: 1, signal: null });
    } finally {
      dry.kill('SIGKILL');
      unicast.cleanup();
    }
  });

  it('stops cleanly on SIGTERM (VIP route withdrawn), then carries traffic on two queues', async () => {
    agent.kill('SIGTERM');
    const stopped = await agent.waitForEvent('stopped', 10_000);
    expect(await agent.exited).toEqual({ code: 0, signal: null });
    expect(Array.isArray(stopped['queues'])).toBe(true);
    expect(routes(topo)).not.toMatch(new RegExp(`^${topo.vip.replace(/\./g, '\\.')} dev`, 'm'));

    // This time the agent also announces its queues to the managers by unicast (--manager).
    agent = await startAgent(['--queues', '2', '--manager', '127.0.0.1:7501,127.0.0.1:7502', '--status-port', '9464']);
    expect(agent.events.find((e) => e.event === 'ready')).toMatchObject({
      queues: 2,
      multiQueue: true,
      controls: [{ address: '127.0.0.1', port: 7400 }, { address: '127.0.0.1', port: 7402 }],
    });
    // Routed only once both queues hold the VIP's wildcard.
    await agent.waitFor((e) => e.event === 'vips' && Array.isArray(e['vips']) && e['vips'].includes(`${topo.vip}/32`), 10_000);
    expect(agent.events.filter((e) => e.event === 'queue_vips').map((e) => e['queue']).sort()).toEqual([0, 1]);
    const results: HttpOutcome[] = [];
    for (let round = 0; round < 5; round++) {
      results.push(...(await Promise.all(Array.from({ length: 20 }, () => client.get(`${base()}/`, { timeoutMs: 5000 }).result))));
    }
    if (results.some((r) => !r.ok)) console.log('diagnostics:', routes(topo), agent.stderr.slice(-3000), backup.stderr.slice(-2000));
    expect(results.filter((r) => !r.ok || r.status !== 200)).toEqual([]);
    const big = await client.get(`${base()}/big`, { timeoutMs: 60_000 }).result;
    expect(big).toMatchObject({ ok: true, bytes: BIG_FILE_BYTES });
    expect(big.ok && big.sha256).toBe(bigFileSha256(BIG_FILE_BYTES));

    // Status and metrics of both queues together, served in the router namespace.
    const status = await httpGetFrom(topo.netns.router, 'http://127.0.0.1:9464/status');
    const report = JSON.parse(status.body ?? '{}') as {
      kind?: string;
      vips?: Array<{ vip: string }>;
      tables?: Record<'fixed' | 'wildcard', { entries: number; capacity: number }>;
    };
    expect(report.kind).toBe('agent');
    expect(report.vips).toEqual([{ vip: `${topo.vip}/32`, backends: [] }]);
    // Both queues hold the live manager's wildcards (VIP and return direction for each backend).
    expect(report.tables!.wildcard.entries).toBeGreaterThanOrEqual(2 * 3);
    expect(report.tables!.fixed.capacity).toBeGreaterThan(0);
    // the host's own drops are there next to the firmware's (none in this run)
    const metrics = await httpGetFrom(topo.netns.router, 'http://127.0.0.1:9464/metrics');
    for (const reason of ['tun_oversize', 'tun_write_error', 'returned_oversize', 'no_interest_target']) {
      expect(metrics.body).toMatch(new RegExp(`^wasmlb_agent_drops_total\\{reason="${reason}"\\} 0$`, 'm'));
    }
  });

  it('on two queues: the old primary returns as backup, and a download survives a SIGKILL of the new primary', async () => {
    // mgr-a comes back; mgr-b answers now, so mgr-a stays backup and resyncs from it.
    primary = spawnWasmlbIn(topo.netns.router, ['manager', '--config', cfg.file, '--key-file', keyFile(), '--role', 'primary', '--agent', AGENT_CONTROL, '--log-level', 'info']);
    await primary.waitForEvent('resync-complete', 20_000);
    expect(primary.events.some((e) => e.event === 'takeover')).toBe(false);
    await downloadAcrossKill(backup, primary, 'two queues');
  });

  it('stops the two-queue agent cleanly; both queues carried traffic', async () => {
    agent.kill('SIGTERM');
    const done = await agent.waitForEvent('stopped', 10_000);
    const queues = done['queues'] as Array<{ index: number; tun: { rxPackets: number; txPackets: number }; agent: { fixedInstalled: number } }>;
    expect(queues.map((q) => q.index)).toEqual([0, 1]);
    // The kernel spreads flows over both queues: each one carried packets both ways.
    for (const q of queues) {
      expect(q.tun.rxPackets).toBeGreaterThan(100);
      expect(q.tun.txPackets).toBeGreaterThan(100);
    }
    // Every fixed affinity update one queue received was installed on the other too (> 110 flows, both
    // directions, plus renewals and FIN updates): the two counts are nearly equal, whatever the kernel's split.
    const installed = queues.map((q) => q.agent.fixedInstalled);
    expect(Math.min(...installed)).toBeGreaterThan(400);
    expect(Math.min(...installed)).toBeGreaterThanOrEqual(0.9 * Math.max(...installed));
    expect(await agent.exited).toEqual({ code: 0, signal: null });
  });

  it('leaves nothing behind', async () => {
    client.close();
    await killAllIn();
    topologyDown(PREFIX);
    expect(topologyIsGone(PREFIX)).toBe(true);
  });
});
