// Glue between a TUN queue and the forwarding agent: packets go from the kernel straight into the firmware's
// packet slots (one read(2) per packet, no copy in JavaScript), one `processBatch` per batch, and forwarded
// packets go back to the same queue (TunQueue has the agent's PacketSink shape: `send(packet, nextHop)`).
//
// The types here are the structural minimum of ForwardingAgent / ForwardingFirmware, so this module does
// not depend on the agent's internals and a test can drive it with a stand-in.

import { TunError, type TunQueue } from './tun.ts';

export interface BatchFirmware {
  /** The packet region: slot i starts at i * capacities.packetSlot. */
  readonly packets: Uint8Array;
  readonly capacities: { readonly batchMax: number; readonly packetSlot: number };
  setDescriptor(i: number, offset: number, length: number): void;
}

export interface BatchAgent {
  readonly firmware: BatchFirmware;
  /** Runs descriptors [0, count) and acts on the verdicts (forwards through its sink). */
  processBatch(count: number): void;
}

export interface TunPumpStats {
  batches: number;
  packets: number;
}

export interface TunPump {
  readonly stats: TunPumpStats;
  stop(): void;
}

/**
 * Feeds `queue` into `agent` on every readable event, at most `maxBatches` batches per event (so timers and
 * control messages get their turn under load; the level-triggered poll calls again while packets remain).
 * `onError` gets a device failure (the pump has stopped by then). The queue must have been opened with
 * maxPacket < packetSlot (TunDevice's default 2047 fits the firmware's 2048-byte slots).
 */
export function pumpTun(
  queue: TunQueue,
  agent: BatchAgent,
  opts: { maxBatches?: number; onError?: (err: TunError) => void } = {},
): TunPump {
  const fw = agent.firmware;
  const { batchMax, packetSlot } = fw.capacities;
  const offsets = new Uint32Array(batchMax);
  const lengths = new Uint32Array(batchMax);
  const maxBatches = opts.maxBatches ?? 4;
  const stats: TunPumpStats = { batches: 0, packets: 0 };
  let stopped = false;
  const stop = queue.onReadable((err) => {
    if (err) {
      stopped = true;
      opts.onError?.(err);
      return;
    }
    try {
      for (let b = 0; b < maxBatches; b++) {
        const n = queue.readBatch(fw.packets, offsets, lengths, batchMax, packetSlot);
        if (n === 0) return;
        for (let i = 0; i < n; i++) fw.setDescriptor(i, offsets[i]!, lengths[i]!);
        agent.processBatch(n);
        stats.batches++;
        stats.packets += n;
        if (n < batchMax) return;
      }
    } catch (e) {
      // a read that fails between two of a wake-up's batches (the device deleted), or anything the batch
      // threw: thrown out of the poll callback it would leave the queue unread and nobody told
      stopped = true;
      try {
        stop();
      } catch {
        // the poll may be gone with the device already
      }
      opts.onError?.(e instanceof TunError ? e : new TunError('TUN_READ', `batch from TUN queue ${queue.index} failed: ${e instanceof Error ? e.message : String(e)}`));
    }
  });
  return {
    stats,
    stop: () => {
      if (stopped) return;
      stopped = true;
      stop();
    },
  };
}
