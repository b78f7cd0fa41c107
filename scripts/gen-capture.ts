// Generates synthetic captures (deterministic: same options and seed, same bytes).
//
//   npx tsx scripts/gen-capture.ts                       # examples/capture/demo.pcap, 2000 TCP flows
//   npx tsx scripts/gen-capture.ts -f 500 -o /tmp/x.pcap --link raw
//   npx tsx scripts/gen-capture.ts --bench -n 1000000 -k 100000 -o /tmp/bench.pcap
import { Command, InvalidArgumentError } from 'commander';
import { writeBenchCapture, writeDemoCapture } from '../host/pcap/generate.ts';

const int = (v: string): number => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
};
const link = (v: string): 'ethernet' | 'raw' => {
  if (v !== 'ethernet' && v !== 'raw') throw new InvalidArgumentError('ethernet or raw');
  return v;
};

const program = new Command()
  .name('gen-capture')
  .description('write a synthetic pcap: TCP conversations with a VIP (both directions), UDP, ARP/IPv6/ICMP')
  .option('-o, --out <path>', 'output file', 'examples/capture/demo.pcap')
  .option('-f, --flows <n>', 'TCP conversations (demo) or flows (bench)', int)
  .option('-n, --packets <n>', 'packets (bench only)', int)
  .option('-k, --bench-flows <n>', 'alias of --flows for --bench', int)
  .option('-s, --seed <n>', 'PRNG seed', int, 1)
  .option('--link <type>', 'ethernet | raw', link, 'ethernet')
  .option('--udp-fraction <x>', 'UDP flows per TCP flow', parseFloat, 0.1)
  .option('--no-odd', 'leave out ARP, IPv6 and ICMP packets')
  .option('--vip <addr>', 'virtual IP', '10.0.0.100')
  .option('--port <n>', 'VIP TCP port', int, 80)
  .option('--bench', 'write the benchmark capture: small TCP packets to the VIP, round robin over flows');

program.parse();
const o = program.opts<{
  out: string; flows?: number; packets?: number; benchFlows?: number; seed: number; link: 'ethernet' | 'raw';
  udpFraction: number; odd: boolean; vip: string; port: number; bench?: boolean;
}>();

const t0 = performance.now();
if (o.bench) {
  const r = await writeBenchCapture(o.out, {
    packets: o.packets ?? 1_000_000, flows: o.benchFlows ?? o.flows ?? 100_000, link: o.link, vip: o.vip, vipPort: o.port, seed: o.seed,
  });
  console.log(`${o.out}: ${r.packets} packets, ${r.flows} flows, ${r.bytes} bytes in ${(performance.now() - t0).toFixed(0)} ms`);
} else {
  const r = await writeDemoCapture(o.out, {
    flows: o.flows ?? 2000, seed: o.seed, link: o.link, udpFraction: o.udpFraction, oddTraffic: o.odd, vip: o.vip, vipPort: o.port,
  });
  console.log(`${o.out}: ${r.packets} packets (${r.tcpFlows} TCP flows, ${r.udpFlows} UDP flows, ${r.oddPackets} other), ${r.bytes} packet bytes`);
}
