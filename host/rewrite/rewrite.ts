// File-to-file rewrite: stream a capture through a packet rewriter and write classic pcap the way
// tcprewrite writes it (little-endian, µs, version 2.4, snaplen 65535, the input's link type).

import { CaptureReader } from '../pcap/reader.ts';
import { PcapWriter } from '../pcap/writer.ts';
import type { PacketBatch } from '../pcap/batch.ts';
import { ReferenceRewriter } from './reference.ts';
import type { RewriteRules } from './rules.ts';

export interface RewriteProgress {
  packets: number;
  bytesRead: number;
}

export interface RewriteOptions {
  onProgress?: (p: RewriteProgress) => void;
  batchSize?: number;
}

export interface RewriteSummary {
  packetsIn: number;
  packetsOut: number;
  /** Packets with at least one byte changed. */
  rewritten: number;
  /** Packets tcprewrite 4.4.3 would abort on (malformed IPv4 under an IPv4 ethertype); written unchanged. */
  tcprewriteAborts: number;
  linkType: number;
  seconds: number;
  mpps: number;
}

/** The output header tcprewrite writes (pcap_dump_open on pcap_open_dead(dlt, 65535)). */
export function tcprewriteOutputHeader(linkType: number): { linkType: number; snaplen: number; precision: 'us'; byteOrder: 'le' } {
  return { linkType, snaplen: 65535, precision: 'us', byteOrder: 'le' };
}

/** A batch rewriter: rewrites the packets of a batch in place (in batch.data) and counts. */
export interface BatchRewriter {
  rewriteBatch(batch: PacketBatch): { rewritten: number; aborts: number };
}

export function referenceBatchRewriter(rules: RewriteRules): BatchRewriter {
  const r = new ReferenceRewriter(rules);
  return {
    rewriteBatch(batch) {
      let rewritten = 0, aborts = 0;
      for (let i = 0; i < batch.count; i++) {
        const o = r.rewrite(batch.linkType[i]!, batch.data, batch.offset[i]!, batch.capLen[i]!, batch.origLen[i]!);
        if (o.changed) rewritten++;
        if (o.tcprewriteAborts) aborts++;
      }
      return { rewritten, aborts };
    },
  };
}

/** Rewrites `inPath` into `outPath` with the pure-TypeScript reference rewriter (or another one). */
export async function rewriteFile(
  inPath: string,
  outPath: string,
  rules: RewriteRules,
  opts: RewriteOptions & { rewriter?: BatchRewriter } = {},
): Promise<RewriteSummary> {
  const t0 = performance.now();
  const reader = await CaptureReader.open(inPath, { batchSize: opts.batchSize ?? 1024 });
  const linkType = reader.info.linkType;
  const writer = await PcapWriter.open(outPath, tcprewriteOutputHeader(linkType));
  const rewriter = opts.rewriter ?? referenceBatchRewriter(rules);
  let packets = 0, rewritten = 0, aborts = 0, lastReport = 0;
  try {
    for (let b = await reader.next(); b !== null; b = await reader.next()) {
      const r = rewriter.rewriteBatch(b);
      rewritten += r.rewritten;
      aborts += r.aborts;
      packets += b.count;
      await writer.writeBatch(b);
      if (opts.onProgress && packets - lastReport >= 65536) {
        lastReport = packets;
        opts.onProgress({ packets, bytesRead: b.fileOffset + (b.spanEnd - b.spanStart) });
      }
    }
  } finally {
    await reader.close();
    await writer.close();
  }
  const seconds = (performance.now() - t0) / 1000;
  return { packetsIn: packets, packetsOut: writer.packets, rewritten, tcprewriteAborts: aborts, linkType, seconds, mpps: packets / seconds / 1e6 };
}
