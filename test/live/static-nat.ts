// A stand-in for the agent on the live topology: reads packets from the TUN, rewrites VIP:port → one
// backend (and the backend's replies back to the VIP) with correct checksums, and writes them back.
// It proves the topology's routing through the TUN in both directions before the real agent exists.

import type { TunQueue } from '../../host/io/tun.ts';
import { ipv4ToBytes, rewriteAddress } from '../host/io/packets.ts';

export interface StaticNatOptions {
  vip: string;
  port: number;
  backend: string;
}

export interface StaticNat {
  /** Packets rewritten and written back. */
  forwarded(): number;
  /** Packets read that matched neither direction (dropped, never written back: no routing loop). */
  ignored(): number;
  stop(): void;
}

const BATCH = 64;

export function startStaticNat(queue: TunQueue, opts: StaticNatOptions): StaticNat {
  const vip = ipv4ToBytes(opts.vip);
  const be = ipv4ToBytes(opts.backend);
  const buf = new Uint8Array(BATCH * 2048 + 4096);
  const offs = new Uint32Array(BATCH);
  const lens = new Uint32Array(BATCH);
  const outOffs = new Uint32Array(BATCH);
  const outLens = new Uint32Array(BATCH);
  let forwarded = 0;
  let ignored = 0;
  const eq = (p: Uint8Array, at: number, a: readonly number[]): boolean =>
    p[at] === a[0] && p[at + 1] === a[1] && p[at + 2] === a[2] && p[at + 3] === a[3];
  const stop = queue.onReadable((err) => {
    if (err) return; // device gone: the listener has stopped itself
    const n = queue.readBatch(buf, offs, lens, BATCH);
    let out = 0;
    for (let i = 0; i < n; i++) {
      const p = buf.subarray(offs[i]!, offs[i]! + lens[i]!);
      const ihl = (p[0]! & 0x0f) * 4;
      if (p[0]! >> 4 !== 4 || p[9] !== 6 || p.length < ihl + 20) {
        ignored++;
        continue;
      }
      const sport = (p[ihl]! << 8) | p[ihl + 1]!;
      const dport = (p[ihl + 2]! << 8) | p[ihl + 3]!;
      if (dport === opts.port && eq(p, 16, vip)) rewriteAddress(p, 16, be);
      else if (sport === opts.port && eq(p, 12, be)) rewriteAddress(p, 12, vip);
      else {
        ignored++;
        continue;
      }
      outOffs[out] = offs[i]!;
      outLens[out] = lens[i]!;
      out++;
    }
    forwarded += queue.writeBatch(buf, outOffs, outLens, out);
  });
  return { forwarded: () => forwarded, ignored: () => ignored, stop };
}
