// TUN device throughput: packets/s and Mbit/s through a read → write loop on a real TUN device in a
// throw-away network namespace, one queue on the main thread vs N queues each on its own worker thread.
// Needs root (TUN + netns); without it the section reports why and measures nothing.

import { Worker } from 'node:worker_threads';
import type { BenchOptions, BenchRow, BenchSection } from './lib.ts';
import { TunDevice } from '../host/io/tun.ts';
import { runCommands, tunSetupCommands } from '../host/io/netconf.ts';
import { deleteNetns, liveUnavailableReason, nsExec, run } from '../test/live/netns.ts';
import { BENCH_DST_PREFIX, BENCH_LOCAL, echoLoop, inject, type EchoResult } from './tun-loop.ts';
import { startStaticNat } from '../test/live/static-nat.ts';
import { httpGetFrom, topologyDown, topologyUp } from '../test/live/topology.ts';

const NS = `wlbt-bench${process.pid}`;
const DEV = 'wlbtb0';
/** Packets circulating per queue for throughput: below the TUN's tx queue (500) so the kernel drops none. */
const INFLIGHT = 256;

// The worker runs TypeScript too: it registers tsx's loader itself (whatever started this process).
const WORKER_BOOT = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})
  .then((m) => { m.register(); return import(${JSON.stringify(new URL('./tun-worker.ts', import.meta.url).href)}); })`;

interface Case {
  mode: 'main thread' | 'workers';
  queues: number;
  payload: number;
  /** Packets circulating per queue; 1 measures the wake-up path (libuv poll → callback) per packet. */
  inflight: number;
}

async function measure(c: Case, durationMs: number, warmupMs: number): Promise<EchoResult> {
  const dev = TunDevice.open(DEV, { netns: NS, queues: c.queues, multiQueue: true });
  try {
    runCommands(
      tunSetupCommands({
        device: DEV,
        netns: NS,
        addresses: [`${BENCH_LOCAL}/24`],
        routes: [BENCH_DST_PREFIX],
        disableIpv6: true,
      }),
      { dryRun: false },
    );
    if (c.mode === 'main thread') {
      const q = dev.queues[0]!;
      const done = echoLoop(q, durationMs, warmupMs);
      inject(q, c.inflight, c.payload, 0);
      return await done;
    }
    const results = await Promise.all(
      dev.queues.map(
        (q) =>
          new Promise<EchoResult>((resolve, reject) => {
            const w = new Worker(WORKER_BOOT, {
              eval: true,
              workerData: { fd: q.fd, index: q.index, inflight: c.inflight, payload: c.payload, durationMs, warmupMs },
            });
            w.once('message', (r: EchoResult) => resolve(r));
            w.once('error', reject);
          }),
      ),
    );
    return results.reduce((a, r) => ({
      packets: a.packets + r.packets,
      bytes: a.bytes + r.bytes,
      ms: Math.max(a.ms, r.ms),
      wakeups: a.wakeups + r.wakeups,
    }));
  } finally {
    dev.close();
  }
}

export const section: BenchSection = {
  name: 'tun',
  title: 'TUN device: read → write loop through kernel forwarding (closed loop)',
  async run(opts: BenchOptions): Promise<BenchRow[]> {
    const reason = liveUnavailableReason();
    if (reason) return [{ case: 'skipped', reason }];
    const durationMs = opts.quick ? 300 : 1500;
    const warmupMs = opts.quick ? 100 : 300;
    const cases: Case[] = [
      { mode: 'main thread', queues: 1, payload: 64 - 28, inflight: INFLIGHT },
      { mode: 'main thread', queues: 1, payload: 1400 - 28, inflight: INFLIGHT },
      { mode: 'main thread', queues: 1, payload: 64 - 28, inflight: 1 },
      { mode: 'workers', queues: 1, payload: 64 - 28, inflight: INFLIGHT },
      { mode: 'workers', queues: 2, payload: 64 - 28, inflight: INFLIGHT },
      { mode: 'workers', queues: 2, payload: 1400 - 28, inflight: INFLIGHT },
    ];
    deleteNetns(NS);
    run(['ip', 'netns', 'add', NS]);
    try {
      run(
        nsExec(NS, [
          'sysctl',
          '-qw',
          'net.ipv4.ip_forward=1',
          'net.ipv4.conf.all.rp_filter=0',
          'net.ipv4.conf.default.rp_filter=0',
          'net.ipv4.conf.all.send_redirects=0',
          'net.ipv4.conf.default.send_redirects=0',
        ]),
      );
      const rows: BenchRow[] = [];
      for (const c of cases) {
        const r = await measure(c, durationMs, warmupMs);
        const s = r.ms / 1000;
        rows.push({
          case: `${c.mode}, ${c.queues} queue${c.queues > 1 ? 's' : ''}, ${c.payload + 28} B, ${c.inflight} in flight`,
          queues: c.queues,
          inflight: c.inflight,
          packetBytes: c.payload + 28,
          pps: Math.round(r.packets / s),
          mbitPerS: Number(((r.bytes * 8) / s / 1e6).toFixed(1)),
          packetsPerWakeup: r.wakeups ? Number((r.packets / r.wakeups).toFixed(1)) : null,
          // With one packet in flight this is the full turn: wake-up, read, write, kernel forward.
          usPerTurn: r.packets && c.inflight === 1 ? Number(((r.ms * 1000 * c.inflight * c.queues) / r.packets).toFixed(2)) : null,
        });
      }
      rows.push(...(await httpThroughNat(opts.quick ? 16 << 20 : 50 << 20)));
      return rows;
    } finally {
      deleteNetns(NS);
    }
  },
};

/**
 * The whole TUN path as the agent will see it: one HTTP download client → VIP → (TUN, a static-NAT loop on
 * the main thread, TUN) → backend, and its replies back through the same loop, on the live topology.
 */
async function httpThroughNat(bytes: number): Promise<BenchRow[]> {
  const prefix = 'wlbt-bench-';
  const topo = await topologyUp({ prefix, backends: 1, bigFileBytes: bytes });
  try {
    const dev = TunDevice.open(topo.router.tunName, { netns: topo.netns.router });
    const be = topo.backends[0]!;
    const nat = startStaticNat(dev.queues[0]!, { vip: topo.vip, port: topo.servicePort, backend: be.address });
    try {
      // Warm the backend (it builds the file on first request) and the path, then measure.
      await httpGetFrom(topo.netns.client, `http://${topo.vip}/big`, 60_000);
      const before = dev.stats();
      const res = await httpGetFrom(topo.netns.client, `http://${topo.vip}/big`, 60_000);
      const after = dev.stats();
      const s = res.ms / 1000;
      const packets = after.rxPackets - before.rxPackets;
      return [
        {
          case: `HTTP GET ${bytes >> 20} MiB via VIP, static NAT loop on the TUN`,
          queues: 1,
          inflight: null,
          packetBytes: null,
          pps: Math.round(packets / s),
          mbitPerS: Number(((res.bytes * 8) / s / 1e6).toFixed(1)),
          packetsPerWakeup: null,
          usPerTurn: null,
        },
      ];
    } finally {
      nat.stop();
      dev.close();
    }
  } finally {
    topologyDown(prefix);
  }
}
