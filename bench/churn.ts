// Fixed-table churn at the load cap: the 64 MiB table filled to its 90 % cap, then 10M cycles that each
// delete a random live fixed affinity and install a new one, so the load stays at the cap. Tombstones
// would lengthen every probe run with each delete; backward-shift deletion leaves the runs as they were.
// Rows: install + delete cycles per second over the first and over the last million cycles, and
// fixed-hit + DNAT lookups (Mpps, 64-byte TCP, batches of 256) on live flows before and after the churn.
import { type BenchOptions, type BenchRow, type BenchSection } from './lib.ts';
import { FIXED_DNAT, interleaved, wasmRunner } from './fastpath.ts';
import { backendAddr, PACKET_LEN, VIP, VIP_PORT, writeTcpPacket, type PacketSet } from './packets.ts';
import { ForwardingFirmware, Status, type FixedAffinity } from '../host/agent/wasm.ts';

const NOW = 1_000_000;
const WINDOW = 1_000_000;
const SAMPLE = 1 << 16; // packets of the lookup rows

/** Key k: client 10.64.0.0/10 + (k mod 2^22), port 1024 + k / 2^22: distinct for k < 2^22 * 64512. */
const saddrOf = (k: number): number => (0x0a400000 | (k & 0x3fffff)) >>> 0;
const sportOf = (k: number): number => 1024 + Math.floor(k / 0x400000);

function lookupSet(live: Uint32Array, rand: () => number): PacketSet {
  const bytes = new Uint8Array(SAMPLE * PACKET_LEN);
  for (let p = 0; p < SAMPLE; p++) {
    const k = live[rand() % live.length]!;
    writeTcpPacket(bytes, p * PACKET_LEN, saddrOf(k), sportOf(k), VIP, VIP_PORT, p);
  }
  return { bytes, count: SAMPLE, clientAddr: saddrOf, clientPort: sportOf };
}

export async function churnRows(cycles: number, lookupMs: number): Promise<BenchRow[]> {
  const fw = await ForwardingFirmware.load({ seed: 4242 });
  const cap = fw.capacities.fixed;
  const st = fw.installWildcard({ proto: 6, saddr: 0x0a400000, smask: 0xffc00000, daddr: VIP, dmask: 0xffffffff, sport: 0, dport: VIP_PORT, ttlSec: 3600, owner: 1, servicePrecedence: 1, backupPrecedence: 0 }, NOW);
  if (st !== Status.OK) throw new Error(`churn bench: wildcard install ${st}`);
  // one affinity object, rewritten in place: the loop measures the firmware's table, not the allocator
  const f: FixedAffinity = { proto: 6, saddr: 0, daddr: VIP, sport: 0, dport: VIP_PORT, ttlSec: 3600, owner: 1, natDstAddr: backendAddr(0), natDstPort: 8080 };
  const install = (k: number): void => {
    f.saddr = saddrOf(k);
    f.sport = sportOf(k);
    f.natDstAddr = backendAddr(k & 7);
    const s = fw.installFixed(f, NOW);
    if (s !== Status.OK) throw new Error(`churn bench: install of key ${k}: ${s}`);
  };
  const live = new Uint32Array(cap);
  let next = 0;
  for (let i = 0; i < cap; i++) {
    live[i] = next;
    install(next++);
  }
  let x = 0x9e3779b9;
  const rand = (): number => ((x ^= x << 13), (x ^= x >>> 17), (x ^= x << 5), x >>> 0);

  const hit = (): number => interleaved([wasmRunner(fw, lookupSet(live, rand), FIXED_DNAT)], lookupMs)[0]! / 1e6;
  const before = hit();
  const maxDispBefore = Number(fw.counter('FIXED_MAX_DISPLACEMENT'));

  const windows: number[] = [];
  for (let done = 0; done < cycles; ) {
    const n = Math.min(WINDOW, cycles - done);
    const t0 = process.hrtime.bigint();
    for (let c = 0; c < n; c++) {
      const idx = rand() % cap;
      const k = live[idx]!;
      f.saddr = saddrOf(k);
      f.sport = sportOf(k);
      const s = fw.deleteFixed(f);
      if (s !== Status.OK) throw new Error(`churn bench: delete of key ${k}: ${s}`);
      live[idx] = next;
      install(next++);
    }
    windows.push(n / (Number(process.hrtime.bigint() - t0) / 1e9));
    done += n;
  }
  const after = hit();
  const occupancy = Number(fw.counter('FIXED_OCCUPANCY'));
  if (occupancy !== cap) throw new Error(`churn bench: ${occupancy} affinities after churn, expected ${cap}`);
  const loadPct = (100 * occupancy) / fw.capacities.fixedSlots;
  const label = (n: number): string => (n >= 1e6 ? `${n / 1e6}M` : `${n / 1e3}K`);
  const common = { flows: occupancy, loadPct };
  return [
    { name: `install+delete, first ${label(Math.min(WINDOW, cycles))} cycles`, ...common, cyclesPerSec: windows[0]!, mpps: null, maxDisplacement: maxDispBefore },
    { name: `install+delete, last ${label(Math.min(WINDOW, cycles))} of ${label(cycles)} cycles`, ...common, cyclesPerSec: windows.at(-1)!, mpps: null, maxDisplacement: Number(fw.counter('FIXED_MAX_DISPLACEMENT')) },
    { name: 'fixed hit + DNAT, before the churn', ...common, cyclesPerSec: null, mpps: before, maxDisplacement: maxDispBefore },
    { name: `fixed hit + DNAT, after ${label(cycles)} cycles`, ...common, cyclesPerSec: null, mpps: after, maxDisplacement: Number(fw.counter('FIXED_MAX_DISPLACEMENT')) },
  ];
}

export const section: BenchSection = {
  name: 'churn',
  title: 'Fixed table churn at the 90 % load cap (64 MiB, delete a random affinity + install a new one per cycle)',
  async run(opts: BenchOptions): Promise<BenchRow[]> {
    return churnRows(opts.quick ? 2 * WINDOW : 10 * WINDOW, opts.quick ? 300 : 1500);
  },
};
