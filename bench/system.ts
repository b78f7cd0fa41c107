// System benchmarks: whole paths rather than the firmware alone.
//  - new-flows-udp: SYNs of distinct flows through the agent (this process) to a real `wasmlb
//    manager` process over UDP on loopback and back: flows set up per second, end to end.
//  - rewrite-1m: `wasmlb rewrite` of a generated 1M-packet pcap (100K flows, 64-byte TCP), file to file.
import { ForwardingAgent } from '../host/agent/agent.ts';
import { ForwardingFirmware } from '../host/agent/wasm.ts';
import { defaultConfig } from '../host/config/index.ts';
import { spawnManager, writeEffectiveConfig } from '../host/replay/replay.ts';
import { ServiceChannel } from '../host/transport/channel.ts';
import { ControlSocket } from '../host/transport/udp.ts';
import { benchRewrite } from '../host/rewrite/benchmark.ts';
import type { BenchOptions, BenchRow, BenchSection } from './lib.ts';
import { makePacketSet, PACKET_LEN } from './packets.ts';

export async function newFlowsPerSec(flows: number): Promise<BenchRow> {
  const config = defaultConfig();
  config.agent.multicast.enabled = false;
  const fw = await ForwardingFirmware.load({ seed: 5 });
  const socket = await ControlSocket.open({ bind: { address: '127.0.0.1', port: 0 } });
  const channel = new ServiceChannel({ socket, sender: 0xbe7c0001 });
  let forwarded = 0;
  const agent = new ForwardingAgent({ firmware: fw, control: channel, now: () => Math.floor(performance.now()), sink: { send: () => void forwarded++ } });
  const cfg = writeEffectiveConfig(config);
  const { child } = await spawnManager(cfg.file, ['--control', '127.0.0.1:0', '--agent', `127.0.0.1:${socket.local.port}`, '--log-level', 'info']);
  try {
    while (agent.stats.wildcardsInstalled === 0) await new Promise((r) => setTimeout(r, 5));
    // One packet per flow: each is a new flow the manager must decide and answer.
    const set = makePacketSet(flows, flows);
    const batch = fw.capacities.batchMax;
    // Keep a bounded window of flows in flight, as a capture replay at top speed would.
    const window = 4096;
    const start = performance.now();
    let sent = 0;
    while (forwarded < flows) {
      if (sent < flows && sent - forwarded < window) {
        const n = Math.min(batch, flows - sent);
        for (let i = 0; i < n; i++) fw.writePacket(i, set.bytes.subarray((sent + i) * PACKET_LEN, (sent + i + 1) * PACKET_LEN));
        agent.processBatch(n);
        sent += n;
      }
      await new Promise((r) => setImmediate(r));
      if (performance.now() - start > 60_000) throw new Error(`new-flows bench: ${forwarded} of ${flows} flows after 60 s`);
    }
    const sec = (performance.now() - start) / 1000;
    return { name: 'new-flows-udp', flows, flowsPerSec: flows / sec };
  } finally {
    child.kill('SIGTERM');
    await channel.close();
    cfg.cleanup();
  }
}

export const section: BenchSection = {
  name: 'system',
  title: 'System: whole paths (agent ↔ manager over UDP, pcap rewrite)',
  async run(opts: BenchOptions): Promise<BenchRow[]> {
    const rows: BenchRow[] = [];
    rows.push(await newFlowsPerSec(opts.quick ? 20_000 : 200_000));
    for (const r of await benchRewrite({ quick: opts.quick })) rows.push({ ...r });
    return rows;
  },
};
