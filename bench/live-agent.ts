// The whole live path with the real agent: client → VIP → TUN → `wasmlb agent` (firmware, NAT) → TUN →
// backend and the replies back, on the live topology, with 1 and 2 queues; and the takeover time a real
// client sees when the primary manager is SIGKILLed. Needs root (TUN + netns); otherwise the section
// reports why and measures nothing.
//
// Packets/s are packets through the agent: the TUN device's own tx counter (packets the kernel put into the
// device for the agent, both directions of every flow) over the transfer; agent CPU is the agent process's user+system time over the same window
// (all its threads) as a share of one core.

import { readFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import type { BenchOptions, BenchRow, BenchSection } from './lib.ts';
import { writeConfig } from '../test/support/agent.ts';
import type { WasmlbProcess } from '../test/support/process.ts';
import { NsHttpClient, type HttpOutcome } from '../test/live/client.ts';
import { liveUnavailableReason } from '../test/live/netns.ts';
import { topologyDown, topologyUp, type Topology } from '../test/live/topology.ts';
import { killAllIn, spawnWasmlbIn } from '../test/live/wasmlb-ns.ts';

const PREFIX = 'wlbt-bench-agent-';

function config(topo: Topology): string {
  return `
agent:
  control: { address: 127.0.0.1, port: 7400 }
  multicast: { enabled: true, group: 239.7.7.7, port: 7401, interface: 127.0.0.1 }
managers:
  - { identity: mgr-a, role: primary, balancer: rr, control: { address: 127.0.0.1, port: 7501 } }
  - { identity: mgr-b, role: backup, balancer: rr, control: { address: 127.0.0.1, port: 7502 } }
vips:
  - address: ${topo.vip}
    port: ${topo.servicePort}
    backends: [${topo.backends.map((b) => `{ address: ${b.address} }`).join(', ')}]
`;
}

function packetsThroughAgent(topo: Topology): number {
  const out = spawnSync('ip', ['-n', topo.netns.router, '-s', '-j', 'link', 'show', topo.router.tunName], { encoding: 'utf8' }).stdout;
  const [link] = JSON.parse(out) as Array<{ stats64: { rx: { packets: number }; tx: { packets: number } } }>;
  // The device's tx: packets the kernel handed to the agent (each is read once and written back once).
  return link!.stats64.tx.packets;
}

function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime in clock ticks (USER_HZ 100)
}

async function startAgent(topo: Topology, file: string, queues: number): Promise<WasmlbProcess> {
  const p = spawnWasmlbIn(topo.netns.router, ['agent', '--tun', topo.router.tunName, '--config', file, '--setup', '--queues', String(queues), '--log-level', 'info']);
  await p.waitForEvent('ready', 20_000);
  return p;
}

async function startManagers(topo: Topology, file: string): Promise<{ primary: WasmlbProcess; backup: WasmlbProcess }> {
  const m = (role: string): WasmlbProcess =>
    spawnWasmlbIn(topo.netns.router, ['manager', '--config', file, '--role', role, '--agent', '127.0.0.1:7400', '--log-level', 'info']);
  const primary = m('primary');
  const backup = m('backup');
  await Promise.all([primary.waitForEvent('ready', 20_000), backup.waitForEvent('ready', 20_000)]);
  return { primary, backup };
}

async function transfer(topo: Topology, client: NsHttpClient, agentPid: number, parallel: number): Promise<{ mbit: number; pps: number; cpu: number; ok: boolean }> {
  const p0 = packetsThroughAgent(topo);
  const c0 = cpuMs(agentPid);
  const t0 = performance.now();
  const res = await Promise.all(Array.from({ length: parallel }, () => client.get(`http://${topo.vip}/big`, { timeoutMs: 120_000 }).result));
  const ms = performance.now() - t0;
  const bytes = res.reduce((a, r) => a + r.bytes, 0);
  return {
    mbit: (bytes * 8) / (ms / 1000) / 1e6,
    pps: (packetsThroughAgent(topo) - p0) / (ms / 1000),
    cpu: (cpuMs(agentPid) - c0) / ms,
    ok: res.every((r) => r.ok),
  };
}

async function connections(client: NsHttpClient, topo: Topology, n: number, concurrency: number): Promise<{ perSec: number; ok: number }> {
  const t0 = performance.now();
  const all: HttpOutcome[] = [];
  for (let i = 0; i < n; i += concurrency) {
    all.push(...(await Promise.all(Array.from({ length: Math.min(concurrency, n - i) }, () => client.get(`http://${topo.vip}/`, { timeoutMs: 5000 }).result))));
  }
  return { perSec: n / ((performance.now() - t0) / 1000), ok: all.filter((r) => r.ok).length };
}

/** SIGKILL the primary; probe new connections (100 ms timeout each) until one is answered. */
async function takeoverMs(topo: Topology, client: NsHttpClient, primary: WasmlbProcess): Promise<number> {
  primary.kill('SIGKILL');
  const t0 = performance.now();
  while (performance.now() - t0 < 5000) {
    const r = await client.get(`http://${topo.vip}/`, { timeoutMs: 100, freshPort: true }).result;
    if (r.ok) return performance.now() - t0;
  }
  return NaN;
}

export const section: BenchSection = {
  name: 'live-agent',
  title: 'Live path: client → VIP → TUN → wasmlb agent → backend (HTTP in namespaces), and takeover seen by a client',
  async run(opts: BenchOptions): Promise<BenchRow[]> {
    const reason = liveUnavailableReason();
    if (reason) return [{ case: 'skipped', reason }];
    const bigBytes = opts.quick ? 16 << 20 : 50 << 20;
    const topo = await topologyUp({ prefix: PREFIX, backends: 2, bigFileBytes: bigBytes });
    const cfg = writeConfig(config(topo));
    const client = await NsHttpClient.start(topo.netns.client);
    const rows: BenchRow[] = [];
    try {
      let managers = await startManagers(topo, cfg.file);
      for (const queues of [1, 2]) {
        const agent = await startAgent(topo, cfg.file, queues);
        await new Promise((r) => setTimeout(r, 1500)); // wildcards on every queue (refresh ≤ 1 s)
        const pid = agent.child.pid!;
        await client.get(`http://${topo.vip}/big`, { timeoutMs: 60_000 }).result; // warm-up: backends build the file
        await client.get(`http://${topo.vip}/big`, { timeoutMs: 60_000 }).result;
        for (const parallel of [1, 4]) {
          const t = await transfer(topo, client, pid, parallel);
          rows.push({
            case: `${parallel} × GET ${bigBytes >> 20} MiB, ${queues} queue${queues > 1 ? 's' : ''}`,
            queues,
            mbitPerS: Math.round(t.mbit),
            pps: Math.round(t.pps),
            agentCpu: Number(t.cpu.toFixed(2)),
            newConnPerS: null,
            ms: null,
            ok: t.ok ? 'yes' : 'NO',
          });
        }
        const c = await connections(client, topo, opts.quick ? 100 : 400, 20);
        rows.push({ case: `new connections (GET /, 20 concurrent), ${queues} queue${queues > 1 ? 's' : ''}`, queues, mbitPerS: null, pps: null, agentCpu: null, newConnPerS: Math.round(c.perSec), ms: null, ok: `${c.ok}` });
        agent.kill('SIGTERM');
        await agent.exited;
      }
      const agent = await startAgent(topo, cfg.file, 1);
      for (let i = 0; i < (opts.quick ? 1 : 3); i++) {
        await new Promise((r) => setTimeout(r, 1500)); // backup resynced, wildcards everywhere
        await client.get(`http://${topo.vip}/`, { timeoutMs: 2000 }).result;
        const ms = await takeoverMs(topo, client, managers.primary);
        rows.push({ case: `takeover: first new connection after SIGKILL of the primary (run ${i + 1})`, queues: 1, mbitPerS: null, pps: null, agentCpu: null, newConnPerS: null, ms: Math.round(ms), ok: Number.isNaN(ms) ? 'NO' : 'yes' });
        managers.backup.kill('SIGKILL');
        await Promise.all([managers.primary.exited, managers.backup.exited]);
        managers = await startManagers(topo, cfg.file);
      }
      agent.kill('SIGTERM');
      await agent.exited;
      return rows;
    } finally {
      client.close();
      await killAllIn();
      cfg.cleanup();
      topologyDown(PREFIX);
    }
  },
};
