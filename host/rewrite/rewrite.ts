// File-to-file rewrite: stream a capture through a packet rewriter and write classic pcap the way
// tcprewrite writes it (little-endian, µs, version 2.4, snaplen 65535, the input's link type).

import { CaptureReader } from '../pcap/reader.ts';
import { PcapWriter } from '../pcap/writer.ts';
import type { PacketBatch } from '../pcap/batch.ts';
import { OUTCOME_CHANGED, OUTCOME_TCPREWRITE_ABORTS, ReferenceRewriter } from './reference.ts';
import { hasRules, type RewriteRules } from './rules.ts';
import { loadFirmwareRewriter, planWildcards, type FirmwareRewriter } from './firmware.ts';

export interface RewriteProgress {
  packets: number;
  bytesRead: number;
}

export type RewriteEngine = 'auto' | 'firmware' | 'reference';

export interface RewriteOptions {
  onProgress?: (p: RewriteProgress) => void;
  batchSize?: number;
  /**
   * 'firmware': the rules as wildcard affinities in the forwarding firmware (error if they cannot be);
   * 'reference': the TypeScript reference rewriter; 'auto' (default): firmware when the rules allow.
   */
  engine?: RewriteEngine;
  /** Firmware engine: skip the checksum verification (see FirmwareRewriterOptions). */
  trustChecksums?: boolean;
  /** A ready batch rewriter (tests); overrides `engine`. */
  rewriter?: BatchRewriter;
}

export interface RewriteSummary {
  packetsIn: number;
  packetsOut: number;
  /** Packets with at least one byte changed. */
  rewritten: number;
  /** Packets tcprewrite 4.4.3 would abort on (malformed IPv4 under an IPv4 ethertype); written unchanged. */
  tcprewriteAborts: number;
  linkType: number;
  /** Which engine ran, and for the firmware engine why some packets went to the reference rewriter. */
  engine: 'firmware' | 'reference' | 'custom';
  /** Firmware engine: packets rewritten by the firmware and packets handled by the reference rewriter. */
  firmwarePackets: number;
  referencePackets: number;
  /** Why 'auto' fell back to the reference rewriter (empty otherwise). */
  fallbackReasons: string[];
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
      const { data, linkType, offset, capLen, origLen } = batch;
      const w = (data.byteOffset & 1) === 0 ? new Uint16Array(data.buffer, data.byteOffset, data.length >>> 1) : null;
      for (let i = 0; i < batch.count; i++) {
        const o = r.rewrite(linkType[i]!, data, offset[i]!, capLen[i]!, origLen[i]!, w);
        if (o & OUTCOME_CHANGED) rewritten++;
        if (o & OUTCOME_TCPREWRITE_ABORTS) aborts++;
      }
      return { rewritten, aborts };
    },
  };
}

/** Rewrites `inPath` into `outPath` with the pure-TypeScript reference rewriter (or another one). */
export async function rewriteFile(inPath: string, outPath: string, rules: RewriteRules, opts: RewriteOptions = {}): Promise<RewriteSummary> {
  const t0 = performance.now();
  let engine: RewriteSummary['engine'] = 'custom';
  let rewriter: BatchRewriter;
  let fw: FirmwareRewriter | null = null;
  let fallbackReasons: string[] = [];
  if (opts.rewriter) rewriter = opts.rewriter;
  else {
    const want = opts.engine ?? 'auto';
    const plan = planWildcards(rules);
    if (want === 'firmware' || (want === 'auto' && plan.unsupported.length === 0 && hasRules(rules))) {
      fw = await loadFirmwareRewriter(rules, {}, { verifyChecksums: !(opts.trustChecksums ?? false) });
      rewriter = fw;
      engine = 'firmware';
    } else {
      rewriter = referenceBatchRewriter(rules);
      engine = 'reference';
      if (want === 'auto') fallbackReasons = hasRules(rules) ? plan.unsupported : ['no rules: tcprewrite\'s repairs only'];
    }
  }
  const reader = await CaptureReader.open(inPath, { batchSize: opts.batchSize ?? 1024 });
  const linkType = reader.info.linkType;
  const writer = await PcapWriter.open(outPath, tcprewriteOutputHeader(linkType));
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
  return {
    packetsIn: packets, packetsOut: writer.packets, rewritten, tcprewriteAborts: aborts, linkType, engine,
    firmwarePackets: fw?.stats.firmware ?? 0, referencePackets: fw?.stats.reference ?? (engine === 'reference' ? packets : 0),
    fallbackReasons, seconds, mpps: packets / seconds / 1e6,
  };
}
