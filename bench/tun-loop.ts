// The read → write loop the TUN benchmark measures, shared by the main thread and the per-queue workers.
// A closed loop: packets injected once circulate TUN → loop → kernel forwarding → TUN, so the figure is the
// device I/O plus one kernel forward per packet, with no generator process competing for the 2 cores.

import { TunQueue } from '../host/io/tun.ts';
import { buildUdp } from '../test/host/io/packets.ts';

export const BENCH_LOCAL = '10.98.0.1';
export const BENCH_SRC = '10.98.0.2';
/** Routed into the TUN, not local: the kernel forwards what the loop writes straight back into the TUN. */
export const BENCH_DST_PREFIX = '10.98.1.0/24';

export interface EchoResult {
  packets: number;
  bytes: number;
  ms: number;
  wakeups: number;
}

/** Writes `count` UDP packets of `payload` bytes (distinct flows from `flowBase`) into the queue. */
export function inject(queue: TunQueue, count: number, payload: number, flowBase: number): void {
  for (let i = 0; i < count; i++) {
    const f = flowBase + i;
    const p = buildUdp({
      src: BENCH_SRC,
      dst: `10.98.1.${1 + (f % 250)}`,
      sport: 10000 + f,
      dport: 9,
      payload: new Uint8Array(payload),
    });
    queue.writePacket(p);
  }
}

/**
 * Reads batches when the queue is readable, restores the TTL the kernel's forward took (RFC 1624 checksum
 * update), writes them back. Runs for `durationMs` after `warmupMs`; returns what it moved in that window.
 */
export function echoLoop(queue: TunQueue, durationMs: number, warmupMs: number, batch = 64): Promise<EchoResult> {
  const buf = new Uint8Array(batch * 2056 + 4096);
  const offs = new Uint32Array(batch);
  const lens = new Uint32Array(batch);
  let packets = 0;
  let bytes = 0;
  let wakeups = 0;
  let counting = false;
  let t0 = 0;
  return new Promise((resolve) => {
    const stop = queue.onReadable((err) => {
      if (err) throw err;
      const n = queue.readBatch(buf, offs, lens, batch);
      for (let i = 0; i < n; i++) {
        const o = offs[i]!;
        const ttl = buf[o + 8]!;
        if (ttl !== 64) {
          // checksum' = ~(~checksum + ~old + new) over the 16-bit word (ttl, protocol)
          const old = (ttl << 8) | buf[o + 9]!;
          const neu = (64 << 8) | buf[o + 9]!;
          let sum = (~((buf[o + 10]! << 8) | buf[o + 11]!) & 0xffff) + (~old & 0xffff) + neu;
          sum = (sum & 0xffff) + (sum >>> 16);
          sum = (sum & 0xffff) + (sum >>> 16);
          const c = ~sum & 0xffff;
          buf[o + 8] = 64;
          buf[o + 10] = c >>> 8;
          buf[o + 11] = c & 0xff;
        }
      }
      queue.writeBatch(buf, offs, lens, n);
      if (counting) {
        packets += n;
        for (let i = 0; i < n; i++) bytes += lens[i]!;
        wakeups++;
      }
    });
    setTimeout(() => {
      counting = true;
      t0 = performance.now();
      setTimeout(() => {
        const ms = performance.now() - t0;
        counting = false;
        stop();
        resolve({ packets, bytes, ms, wakeups });
      }, durationMs);
    }, warmupMs);
  });
}
