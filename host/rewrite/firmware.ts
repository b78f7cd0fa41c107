// The firmware path of `wasmlb rewrite`: static rules become wildcard affinities with NAT actions in the
// forwarding firmware (no manager), and batches of packets go through `process()` in wasm memory. The
// reader's batch bytes are copied into the firmware's packet region as one span, descriptors point at the
// IPv4 headers inside it, and the span is copied back: the writer then writes every other byte as read.
//
// The firmware does RFC 1624 incremental NAT on the IPv4 packet. That is tcprewrite's result for whole,
// unfragmented, unpadded IPv4 TCP/UDP packets with correct checksums; the admission kernel
// (verify-kernel.wat, run over the copy in wasm memory) checks those rules and sums the checksums. Every
// other packet (non-IPv4, truncated, fragments, padding, multicast, wrong checksums, malformed, firmware
// drops) goes through the TypeScript reference rewriter, which reproduces tcprewrite's repairs. Rules the
// firmware cannot express (prefix maps, port maps) make the whole run use the reference rewriter: see
// planWildcards().

import { ForwardingFirmware, VerdictCode, type WildcardAffinity, type LoadOptions } from '../agent/wasm.ts';
import { LINKTYPE_ETHERNET } from '../pcap/linktype.ts';
import type { PacketBatch } from '../pcap/batch.ts';
import { OUTCOME_CHANGED, OUTCOME_TCPREWRITE_ABORTS, ReferenceRewriter } from './reference.ts';
import type { RewriteRules } from './rules.ts';
import type { BatchRewriter } from './rewrite.ts';
import { loadAdmissionKernel } from './verify-kernel.ts';

const OWNER = 1;
const TTL_SEC = 2_000_000; // the firmware's MAX_TTL_SEC; the rewrite clock stays at 0
const ANY = 0;
const ALL = 0xffffffff;

export interface WildcardPlan {
  wildcards: WildcardAffinity[];
  /** Why the rules cannot run on the firmware (empty when they can). */
  unsupported: string[];
}

/**
 * Translates rules into wildcard affinities with NAT actions, or says what the firmware cannot express.
 * Where several rules match one packet the reference takes the first of its kind on the command line, and
 * applies the address maps after the NAT rules: the wildcards' service precedence follows that order (NAT
 * rules above maps, earlier above later; the firmware takes the highest), and a later rule with the same
 * match as an earlier one is left out (it would replace it: the same wildcard identity).
 */
export function planWildcards(rules: RewriteRules): WildcardPlan {
  const wildcards: WildcardAffinity[] = [];
  const unsupported: string[] = [];
  const seen = new Set<string>();
  const add = (w: WildcardAffinity): void => {
    const id = `${w.proto}/${w.saddr}/${w.smask}/${w.sport}/${w.daddr}/${w.dmask}/${w.dport}`;
    if (seen.has(id)) return;
    seen.add(id);
    wildcards.push(w);
  };
  const base = (precedence: number) => ({ ttlSec: TTL_SEC, owner: OWNER, servicePrecedence: precedence, backupPrecedence: 0 });
  const protos = (port: number | null, toPort: number | null): number[] => (port === null && toPort === null ? [ANY] : [6, 17]);
  const multicast = (a: number): boolean => a >>> 28 === 0xe;
  rules.dnat.forEach((r, i) => {
    // a port 0 match is exact in the reference, any port in a wildcard; a multicast target changes the MAC
    if (r.matchPort === 0) unsupported.push('--dnat matching port 0: a wildcard port 0 means any port');
    if (multicast(r.toAddr)) unsupported.push('--dnat to a multicast address: its MAC is rewritten too, outside the IP packet');
    if (rules.dstipmap.some((m) => m.from.prefix === 32 && m.from.network === r.toAddr)) unsupported.push('--dnat to an address --dstipmap maps again: one wildcard match rewrites once');
    for (const proto of protos(r.matchPort, r.toPort))
      add({
        ...base(0xffff - i), proto, saddr: 0, smask: 0, sport: 0, daddr: r.matchAddr, dmask: ALL, dport: r.matchPort ?? 0,
        natDstAddr: r.toAddr, ...(r.toPort !== null ? { natDstPort: r.toPort } : {}),
      });
  });
  rules.snat.forEach((r, i) => {
    if (r.matchPort === 0) unsupported.push('--snat matching port 0: a wildcard port 0 means any port');
    if (multicast(r.toAddr)) unsupported.push('--snat to a multicast address: its MAC is rewritten too, outside the IP packet');
    if (rules.srcipmap.some((m) => m.from.prefix === 32 && m.from.network === r.toAddr)) unsupported.push('--snat to an address --srcipmap maps again: one wildcard match rewrites once');
    for (const proto of protos(r.matchPort, r.toPort))
      add({
        ...base(0xffff - i), proto, daddr: 0, dmask: 0, dport: 0, saddr: r.matchAddr, smask: ALL, sport: r.matchPort ?? 0,
        natSrcAddr: r.toAddr, ...(r.toPort !== null ? { natSrcPort: r.toPort } : {}),
      });
  });
  rules.dstipmap.forEach((m, i) => {
    if (m.from.prefix !== 32 || m.to.prefix !== 32) unsupported.push(`--dstipmap with a /${m.from.prefix}→/${m.to.prefix} map keeps host bits: the NAT action sets one address`);
    else if (multicast(m.to.network)) unsupported.push('--dstipmap to a multicast address: its MAC is rewritten too, outside the IP packet');
    else add({ ...base(0x7fff - i), proto: ANY, saddr: 0, smask: 0, sport: 0, daddr: m.from.network, dmask: ALL, dport: 0, natDstAddr: m.to.network });
  });
  rules.srcipmap.forEach((m, i) => {
    if (m.from.prefix !== 32 || m.to.prefix !== 32) unsupported.push(`--srcipmap with a /${m.from.prefix}→/${m.to.prefix} map keeps host bits: the NAT action sets one address`);
    else if (multicast(m.to.network)) unsupported.push('--srcipmap to a multicast address: its MAC is rewritten too, outside the IP packet');
    else add({ ...base(0x7fff - i), proto: ANY, daddr: 0, dmask: 0, dport: 0, saddr: m.from.network, smask: ALL, sport: 0, natSrcAddr: m.to.network });
  });
  if (rules.pnat.length > 0) unsupported.push('--pnat rewrites source and destination of one packet and ARP: one wildcard match rewrites one side');
  if (rules.portmap.length > 0) unsupported.push('--portmap maps both ports of one packet and port ranges: a wildcard matches one port or any');
  return { wildcards, unsupported };
}

export interface FirmwareRewriter extends BatchRewriter {
  readonly firmware: ForwardingFirmware;
  /** Packets the firmware rewrote / the reference rewriter handled. */
  readonly stats: { firmware: number; reference: number };
}

export interface FirmwareRewriterOptions {
  /**
   * Verify each packet's IPv4 and TCP/UDP checksums before the incremental path (default true). Without it
   * a packet whose checksum was already wrong keeps it wrong, where tcprewrite would correct it; every
   * other byte is the same. The check runs in wasm (verify-kernel.wat), a few ns a small packet.
   */
  verifyChecksums?: boolean;
}

/** Loads the firmware and installs the rules' wildcards; throws if planWildcards() reported anything. */
export async function loadFirmwareRewriter(rules: RewriteRules, load: LoadOptions = {}, opts: FirmwareRewriterOptions = {}): Promise<FirmwareRewriter> {
  const verify = opts.verifyChecksums ?? true;
  const plan = planWildcards(rules);
  if (plan.unsupported.length > 0) throw new Error(`rules need the reference rewriter: ${plan.unsupported.join('; ')}`);
  // static rules are wildcards only: no fixed affinities or extensions are made, so the smallest budget
  // that holds the packet region will do (init clears the tables: a larger one costs milliseconds a run)
  // (a wildcard takes up to 512 bytes: capacity 2x, slots a power of two at most half full, 64 bytes each)
  const wildcardCapacity = Math.max(64, plan.wildcards.length * 2);
  const budgetBytes = 1024 * 1024 + Math.ceil((wildcardCapacity * 256) / 65536) * 65536;
  const fw = await ForwardingFirmware.load({ budgetBytes, extCapacity: 16, wildcardCapacity, ...load });
  for (const w of plan.wildcards) {
    const st = fw.installWildcard(w, 0);
    if (st !== 0) throw new Error(`installWildcard failed with status ${st}`);
  }
  const reference = new ReferenceRewriter(rules);
  const region = fw.packets;
  const regionBytes = region.length;
  const batchMax = fw.capacities.batchMax;
  const du32 = fw.descriptorU32;
  const du16 = fw.descriptorU16;
  const dbytes = fw.descriptorBytes;
  const stats = { firmware: 0, reference: 0 };
  const slotOf = new Int32Array(batchMax); // descriptor → packet index
  // a packet matching a source rule and a destination rule needs two rewrites; one wildcard match does
  // one, so such packets go to the reference rewriter
  const srcAddrs = new Set<number>([...rules.snat.map((r) => r.matchAddr), ...rules.srcipmap.map((m) => m.from.network)]);
  const dstAddrs = new Set<number>([...rules.dnat.map((r) => r.matchAddr), ...rules.dstipmap.map((m) => m.from.network)]);
  const bothSides = srcAddrs.size > 0 && dstAddrs.size > 0;
  const matchesBoth = (b: Uint8Array, p: number): boolean => {
    const src = ((b[p + 12]! << 24) | (b[p + 13]! << 16) | (b[p + 14]! << 8) | b[p + 15]!) >>> 0;
    const dst = ((b[p + 16]! << 24) | (b[p + 17]! << 16) | (b[p + 18]! << 8) | b[p + 19]!) >>> 0;
    return srcAddrs.has(src) && dstAddrs.has(dst);
  };
  const toReference: number[] = [];
  const kernel = loadAdmissionKernel(fw.memory);
  const admit = kernel.admit;
  const settle = kernel.settle;
  const verifyFlag = verify ? 1 : 0;
  const regionAddr = region.byteOffset;
  const descAddr = dbytes.byteOffset;

  function rewriteBatch(batch: PacketBatch): { rewritten: number; aborts: number } {
    const { data, offset, capLen, origLen, ipOffset, linkType } = batch;
    let rewritten = 0, aborts = 0, firmwarePackets = 0;
    toReference.length = 0;
    let i = 0;
    while (i < batch.count) {
      // one chunk: at most batchMax descriptors, a span that fits the packet region
      const chunkStart = offset[i]!;
      let n = 0;
      let end = chunkStart;
      let j = i;
      for (; j < batch.count; j++) {
        const pEnd = offset[j]! + capLen[j]!;
        if (pEnd - chunkStart > regionBytes) break;
        const ip = ipOffset[j]!;
        // whole Ethernet IPv4 packets are candidates; the admission kernel decides after the copy in
        if (linkType[j] === LINKTYPE_ETHERNET && ip >= 0 && capLen[j] === origLen[j] && capLen[j]! - ip <= 0xffff && !(bothSides && matchesBoth(data, offset[j]! + ip))) {
          if (n === batchMax) break;
          const d = n * 8;
          du32[d] = offset[j]! - chunkStart + ip;
          du16[d * 2 + 2] = capLen[j]! - ip;
          du16[d * 2 + 3] = 0;
          slotOf[n++] = j;
        } else {
          toReference.push(j);
        }
        end = pEnd;
      }
      if (j === i) throw new Error(`packet ${i} (${capLen[i]} bytes) does not fit the firmware packet region`);
      if (n > 0) region.set(data.subarray(chunkStart, end), 0);
      // a packet the kernel turns away leaves the chunk (the last descriptor takes its place) for the
      // reference rewriter
      for (let k = 0; (k = admit(descAddr, k, n, regionAddr, verifyFlag)) < n; ) {
        toReference.push(slotOf[k]!);
        n--;
        du32[k * 8] = du32[n * 8]!;
        du16[k * 16 + 2] = du16[n * 16 + 2]!;
        slotOf[k] = slotOf[n]!;
      }
      if (n > 0) {
        fw.process(n, 0);
        // dropped or diverted packets go to the reference rewriter: their bytes are as read
        let forwarded = n;
        for (let k = 0; (k = settle(descAddr, k, n, regionAddr)) < n; k++) {
          toReference.push(slotOf[k]!);
          forwarded--;
        }
        firmwarePackets += forwarded;
        data.set(region.subarray(0, end - chunkStart), chunkStart);
      }
      i = j;
    }
    rewritten += kernel.rewritten();
    stats.firmware += firmwarePackets;
    const words = toReference.length > 0 && (data.byteOffset & 1) === 0 ? new Uint16Array(data.buffer, data.byteOffset, data.length >>> 1) : null;
    for (const k of toReference) {
      const o = reference.rewrite(linkType[k]!, data, offset[k]!, capLen[k]!, origLen[k]!, words);
      if (o & OUTCOME_CHANGED) rewritten++;
      if (o & OUTCOME_TCPREWRITE_ABORTS) aborts++;
    }
    stats.reference += toReference.length;
    return { rewritten, aborts };
  }
  return { firmware: fw, stats, rewriteBatch };
}
