// Actions applied to a packet in place: NAT (RFC 1624 incremental checksums), sequence adjust (serial
// arithmetic, SACK blocks), per forward IP statistics. The caller (batch.ts) has validated the headers:
// for a first fragment of TCP/UDP the whole L4 header lies inside the packet, so no access here can leave
// the packet.

import { Counter, bump } from './counters';
import { csumApply, delta16, delta32 } from './checksum';
import { swap32 } from './bytes';
import { INFO_SIZE, INFO_SLOTS, I_ADDR, I_BYTES, I_PACKETS, I_USED, infoBase } from './layout';

export const PROTO_ICMP: u32 = 1;
export const PROTO_TCP: u32 = 6;
export const PROTO_UDP: u32 = 17;

/**
 * Rewrites the requested NAT fields. `l4ok`: TCP/UDP header present (first fragment): ports and the L4
 * checksum are updated too; otherwise only the addresses and the IP header checksum change.
 */
// @ts-ignore: decorator
@inline export function applyNat(
  p: usize, l4: usize, proto: u32, l4ok: bool, natSrcAddr: bool, natSrcPort: bool, natDstAddr: bool,
  natDstPort: bool, srcAddr: u32, srcPort: u32, dstAddr: u32, dstPort: u32,
): void {
  let acc: u32 = 0;
  if (natSrcAddr) {
    acc += delta32(load<u32>(p, 12), srcAddr);
    store<u32>(p, srcAddr, 12);
  }
  if (natDstAddr) {
    acc += delta32(load<u32>(p, 16), dstAddr);
    store<u32>(p, dstAddr, 16);
  }
  if (natSrcAddr | natDstAddr) store<u16>(p, <u16>csumApply(<u32>load<u16>(p, 10), acc), 10);
  if (l4ok) {
    if (natSrcPort) {
      acc += delta16(<u32>load<u16>(l4), srcPort);
      store<u16>(l4, <u16>srcPort);
    }
    if (natDstPort) {
      acc += delta16(<u32>load<u16>(l4, 2), dstPort);
      store<u16>(l4, <u16>dstPort, 2);
    }
    applyL4Csum(l4, proto, acc);
  }
}

/** Applies a checksum delta to the TCP or UDP checksum of the header at l4: a UDP checksum of 0 (none)
 *  stays 0, and a computed 0 is sent as 0xFFFF. */
// @ts-ignore: decorator
@inline export function applyL4Csum(l4: usize, proto: u32, acc: u32): void {
  if (proto == PROTO_TCP) {
    store<u16>(l4, <u16>csumApply(<u32>load<u16>(l4, 16), acc), 16);
  } else {
    const c = <u32>load<u16>(l4, 6);
    if (c != 0) {
      const r = csumApply(c, acc);
      store<u16>(l4, <u16>(r == 0 ? 0xffff : r), 6);
    }
  }
}

// @ts-ignore: decorator
@inline function fold(x: u32): u32 {
  x = (x & 0xffff) + (x >>> 16);
  return (x & 0xffff) + (x >>> 16);
}

/** Set by adjust32 when it changed a field: the checksum delta alone can be a ones'-complement zero
 *  (0xffffffff → 0) for bytes that did change. */
let adjusted = false;

/** Adjusts the 32-bit sequence number at q when it is at or after `init` (serial arithmetic). Returns
 *  the checksum delta, byte-swapped when the field sits at an odd offset from the TCP header start. */
// @ts-ignore: decorator
@inline function adjust32(q: usize, init: u32, delta: u32, odd: bool): u32 {
  const raw = load<u32>(q);
  const v = swap32(raw);
  if (<i32>(v - init) < 0) return 0;
  const nraw = swap32(v + delta);
  store<u32>(q, nraw);
  adjusted = true;
  let d = fold(delta32(raw, nraw));
  if (odd) d = ((d & 0xff) << 8) | (d >>> 8);
  return d;
}

/**
 * Sequence adjust on a TCP first fragment with header length doff: seq += seqDelta when seq >= seqInit,
 * ack += ackDelta when the ACK flag is set and ack >= ackInit, and every SACK block edge like ack.
 * Returns true when bytes changed.
 */
export function applySeqAdjust(l4: usize, doff: u32, seqInit: u32, seqDelta: u32, ackInit: u32, ackDelta: u32): bool {
  let acc: u32 = 0;
  adjusted = false;
  if (seqDelta != 0) acc += adjust32(l4 + 4, seqInit, seqDelta, false);
  if (ackDelta != 0 && (load<u8>(l4, 13) & 0x10)) {
    acc += adjust32(l4 + 8, ackInit, ackDelta, false);
    // SACK blocks (kind 5) carry acknowledgement-space edges
    let o: u32 = 20;
    while (o < doff) {
      const kind = <u32>load<u8>(l4 + o);
      if (kind == 0) break;
      if (kind == 1) {
        o++;
        continue;
      }
      if (o + 1 >= doff) break;
      const olen = <u32>load<u8>(l4 + o, 1);
      if (olen < 2 || o + olen > doff) break;
      if (kind == 5) {
        for (let b = o + 2; b + 8 <= o + olen; b += 8) {
          acc += adjust32(l4 + b, ackInit, ackDelta, (b & 1) != 0);
          acc += adjust32(l4 + b + 4, ackInit, ackDelta, (b & 1) != 0);
        }
      }
      o += olen;
    }
  }
  if (!adjusted) return false;
  if (acc != 0) store<u16>(l4, <u16>csumApply(<u32>load<u16>(l4, 16), acc), 16);
  return true;
}

/** Packet and byte counters per forward IP (wire order) in a small open-addressing table. */
export function infoCount(addr: u32, bytes: u32): void {
  let i = (addr * 0x9e3779b1) >>> 22; // top 10 bits: INFO_SLOTS = 1024
  for (let n: u32 = 0; n < INFO_SLOTS; n++) {
    const e = infoBase + <usize>i * INFO_SIZE;
    if (load<u32>(e, I_USED) == 0) {
      store<u32>(e, addr, I_ADDR);
      store<u32>(e, 1, I_USED);
    }
    if (load<u32>(e, I_ADDR) == addr) {
      store<u64>(e, load<u64>(e, I_PACKETS) + 1, I_PACKETS);
      store<u64>(e, load<u64>(e, I_BYTES) + bytes, I_BYTES);
      return;
    }
    i = (i + 1) & (INFO_SLOTS - 1);
  }
  bump(Counter.INFO_TABLE_FULL);
}
