// The batch loop: one descriptor per packet, one verdict per descriptor. No allocation, no calls out.
//
// Per packet: one bounds check of the descriptor against the packet region, then header checks against
// the captured length (after which every load/store below stays inside the packet), the fixed affinity
// lookup by affinity key, else the wildcard search, else the advertised-prefix check.

import { Counter, bump, bumpBy } from './counters';
import { hashKey, reduce } from './hash';
import { swap16, swap32 } from './bytes';
import { csumApply, delta16, delta32 } from './checksum';
import {
  ACT_DISPATCH, ACT_DROP, ACT_INFO, ACT_INTEREST_COPY, ACT_INTEREST_DATA, ACT_INTEREST_HOLD, ACT_NAT_ANY,
  ACT_NAT_DST, ACT_NAT_DST_ADDR, ACT_NAT_DST_PORT, ACT_NAT_SRC, ACT_NAT_SRC_ADDR, ACT_NAT_SRC_PORT,
  ACT_SEQ_ADJUST, CAP_DISPATCH, CAP_DROP, CAP_INFO, CAP_INTEREST, CAP_NAT, CAP_SEQ_ADJUST, FEATURES,
} from './features';
import {
  DESC_SIZE, DIN_RESUME, DIN_SEEN, DOUT_ATTACH, DOUT_FIXED, DOUT_INTEREST, DOUT_REWRITTEN, DOUT_WILDCARD,
  D_AFFINITY, D_FLAGS_IN, D_FLAGS_OUT, D_INTEREST_BITS, D_INTEREST_TARGET, D_LENGTH, D_NEXT_HOP, D_OFFSET,
  D_OWNER, D_REASON, D_RESUME_PREC, D_SEEN_OWNER, D_SERVICE_PREC, D_VERDICT, EXT_SIZE, FIXED_SIZE, F_ACTIONS,
  F_BYTES, F_EXT, F_INTEREST_MASK, F_INTEREST_TARGET, F_NAT_ADDR, F_NAT_PORT, F_OWNER, F_PACKETS, F_STATE,
  PACKET_REGION, R_ACTION, R_ADVERTISED, R_DESCRIPTOR, R_DISPATCH_ZERO, R_IHL, R_L4_HEADER, R_TOTAL_LENGTH,
  R_TRUNCATED, R_VERSION, ST_FIRST_DATA_SEEN, V_COPY, V_DROP, V_FORWARD, V_HOLD, V_TO_MANAGER, WC_SIZE,
  W_ACTIONS, W_FORWARD_IP, W_HITS, W_INTEREST_MASK, W_INTEREST_TARGET, W_NAT_ADDR, W_NAT_PORT, W_OWNER,
  W_SERVICE_PREC, W_SRC_NAT_ADDR, W_SRC_NAT_PORT, X_ACK_DELTA, X_ACK_INIT, X_FORWARD_IP, X_SEQ_DELTA,
  X_SEQ_INIT, X_SRC_ADDR, X_SRC_PORT, advertisedCount, descBase, extBase, fixedBase, patternCount, pktBase,
  wcBase, wcSearchFirst, fixedSlots, fixedMaxDisp, fixedCount,
} from './layout';
import { KEY1_LIVE, KEY1_LIVE_MASK, NO_SLOT, fixedFind, fixedProbe, isExpired } from './fixed';
import { advertised, wcLookup } from './wildcard';
import { PROTO_ICMP, PROTO_TCP, PROTO_UDP, applyL4Csum, applyNat, applySeqAdjust, infoCount } from './actions';

const BIT_DATA: u32 = 1 << 6;
const BIT_FIRST_DATA: u32 = 1 << 7;
const BIT_FRAGMENT: u32 = 1 << 8;
const BIT_ALL: u32 = 1 << 15;

// @ts-ignore: decorator
@inline function drop(d: usize, reason: u8, counter: i32): void {
  store<u8>(d, V_DROP, D_VERDICT);
  store<u8>(d, reason, D_REASON);
  bump(counter);
  bump(Counter.DROPPED);
}

/**
 * Interest check, then the actions, then the verdict. Returns false when the packet was diverted to the
 * manager untouched (TO_MANAGER / HOLD), true when it was forwarded, copied or dropped by an action.
 * Source NAT half: (sAddr, sPort); destination half: (dAddr, dPort); all wire order.
 */
// @ts-ignore: decorator
@inline function act(
  d: usize, p: usize, l4: usize, proto: u32, l4ok: bool, tot: u32, doff: u32, bits: u32, seenOwner: u32,
  actions: u32, imask: u32, itarget: u32, owner: u32, sAddr: u32, sPort: u32, dAddr: u32, dPort: u32,
  fwd: u32, xe: usize,
): bool {
  let copy = false;
  const matched = bits & imask;
  if ((FEATURES & CAP_INTEREST) && matched != 0) {
    if (owner == seenOwner) {
      bump(Counter.INTEREST_SUPPRESSED);
    } else {
      bump(Counter.INTEREST_MATCHES);
      store<u16>(d, <u16>matched, D_INTEREST_BITS);
      store<u16>(d, <u16>itarget, D_INTEREST_TARGET);
      const attach: u32 = (actions & ACT_INTEREST_DATA) ? DOUT_ATTACH : 0;
      if (actions & ACT_INTEREST_HOLD) {
        store<u8>(d, V_HOLD, D_VERDICT);
        store<u16>(d, <u16>(load<u16>(d, D_FLAGS_OUT) | DOUT_INTEREST | attach), D_FLAGS_OUT);
        bump(Counter.HOLD);
        return false;
      }
      if (!(actions & ACT_INTEREST_COPY) && attach != 0) {
        store<u8>(d, V_TO_MANAGER, D_VERDICT);
        store<u16>(d, <u16>(load<u16>(d, D_FLAGS_OUT) | DOUT_INTEREST | DOUT_ATTACH), D_FLAGS_OUT);
        bump(Counter.TO_MANAGER);
        return false;
      }
      // copy flag: forward and send a copy; no flag: forward and notify (COPY without ATTACH)
      copy = true;
      store<u16>(d, <u16>(load<u16>(d, D_FLAGS_OUT) | DOUT_INTEREST | ((actions & ACT_INTEREST_COPY) ? DOUT_ATTACH : 0)), D_FLAGS_OUT);
    }
  }
  if ((FEATURES & CAP_DROP) && (actions & ACT_DROP)) {
    drop(d, R_ACTION, Counter.DROP_ACTION);
    return true;
  }
  let rewritten = false;
  if ((FEATURES & CAP_NAT) && (actions & ACT_NAT_ANY)) {
    applyNat(p, l4, proto, l4ok, (actions & ACT_NAT_SRC_ADDR) != 0, (actions & ACT_NAT_SRC_PORT) != 0,
      (actions & ACT_NAT_DST_ADDR) != 0, (actions & ACT_NAT_DST_PORT) != 0, sAddr, sPort, dAddr, dPort);
    bump(Counter.NAT_APPLIED);
    rewritten = true;
  }
  if ((FEATURES & CAP_SEQ_ADJUST) && (actions & ACT_SEQ_ADJUST) && xe != 0 && proto == PROTO_TCP && l4ok) {
    if (applySeqAdjust(l4, doff, load<u32>(xe, X_SEQ_INIT), load<u32>(xe, X_SEQ_DELTA), load<u32>(xe, X_ACK_INIT), load<u32>(xe, X_ACK_DELTA))) {
      bump(Counter.SEQ_ADJUSTED);
      rewritten = true;
    }
  }
  if (rewritten) store<u16>(d, <u16>(load<u16>(d, D_FLAGS_OUT) | DOUT_REWRITTEN), D_FLAGS_OUT);
  let hop = load<u32>(p, 16); // destination after NAT
  if ((FEATURES & CAP_DISPATCH) && (actions & ACT_DISPATCH)) {
    hop = fwd;
    store<u32>(d, swap32(fwd), D_NEXT_HOP);
    bump(Counter.DISPATCHED);
  }
  if ((FEATURES & CAP_INFO) && (actions & ACT_INFO)) infoCount(hop, tot);
  if ((FEATURES & CAP_DISPATCH) && (actions & ACT_DISPATCH) && fwd == 0) {
    drop(d, R_DISPATCH_ZERO, Counter.DROP_DISPATCH_ZERO);
    return true;
  }
  if (copy) {
    store<u8>(d, V_COPY, D_VERDICT);
    bump(Counter.COPY);
  } else {
    store<u8>(d, V_FORWARD, D_VERDICT);
    bump(Counter.FORWARDED);
  }
  return true;
}

// @ts-ignore: decorator
@inline function onWildcard(
  d: usize, w: usize, p: usize, l4: usize, proto: u32, l4ok: bool, tot: u32, doff: u32, bits: u32, seenOwner: u32,
): void {
  bump(Counter.WILDCARD_HITS);
  store<u32>(w, load<u32>(w, W_HITS) + 1, W_HITS);
  store<u16>(d, DOUT_WILDCARD, D_FLAGS_OUT);
  store<u32>(d, <u32>((w - wcBase) / WC_SIZE), D_AFFINITY);
  const owner = <u32>load<u16>(w, W_OWNER);
  store<u16>(d, <u16>owner, D_OWNER);
  store<u16>(d, load<u16>(w, W_SERVICE_PREC), D_SERVICE_PREC);
  const actions = <u32>load<u16>(w, W_ACTIONS);
  // no per-flow state behind a wildcard: the first data packet we can know of is any data packet
  if (bits & BIT_DATA) bits |= BIT_FIRST_DATA;
  const both = (actions & ACT_NAT_SRC) != 0 && (actions & ACT_NAT_DST) != 0;
  const prim = load<u32>(w, W_NAT_ADDR);
  const primPort = <u32>load<u16>(w, W_NAT_PORT);
  act(d, p, l4, proto, l4ok, tot, doff, bits, seenOwner, actions,
    <u32>load<u16>(w, W_INTEREST_MASK), <u32>load<u16>(w, W_INTEREST_TARGET), owner,
    both ? load<u32>(w, W_SRC_NAT_ADDR) : prim, both ? <u32>load<u16>(w, W_SRC_NAT_PORT) : primPort,
    prim, primPort, load<u32>(w, W_FORWARD_IP), 0);
}

/** Per packet results of pass 1, SCRATCH_SIZE bytes each: home slot, raw ports, interest bits | total
 *  length << 16, doff | l4ok << 8 | ok << 9 | ihl << 16 | proto << 24, packet address. */
const SCRATCH_SIZE: u32 = 32;
const SCRATCH: usize = memory.data(256 * SCRATCH_SIZE, 64);
const S_OK: u32 = 1 << 9;
const S_L4OK: u32 = 1 << 8;
/** An ICMP error quoting a TCP/UDP packet (instead of S_OK): handled after pass 2 by icmpError. */
const S_ICMP_ERROR: u32 = 1 << 10;
/** Packets per prefetch-then-lookup chunk of pass 2. */
const CHUNK: u32 = 64;
/** Sink for the prefetching loads (keeps them from being optimised away). */
let touched: u32 = 0;

/** Outputs (bytes 12..31) of a packet dropped as malformed: verdict, reason, everything else 0. */
// @ts-ignore: decorator
@inline function dropMalformed(d: usize, reason: u8, counter: i32): void {
  store<u32>(d, <u32>V_DROP | (<u32>reason << 8), D_VERDICT);
  store<u64>(d, 0, D_NEXT_HOP);
  store<u64>(d, 0, D_INTEREST_BITS);
  bump(counter);
  bump(Counter.DROPPED);
}

/** Clears the outputs (bytes 12..31) before a path that writes them field by field. */
// @ts-ignore: decorator
@inline function clearOut(d: usize): void {
  store<u32>(d, 0, D_VERDICT);
  store<u64>(d, 0, D_NEXT_HOP);
  store<u64>(d, 0, D_INTEREST_BITS);
}

/** Search-first wildcards: true when one matched (verdict written). Kept out of the batch loop. */
function wildcardFirst(d: usize, s: usize, now: u32): bool {
  const st = load<u32>(s, 12);
  const p = <usize>load<u32>(s, 16);
  const k0 = load<u64>(p, 12);
  const ports = load<u32>(s, 4);
  const proto = st >>> 24;
  const flagsIn = <u32>load<u16>(d, D_FLAGS_IN);
  const precLimit: u32 = (flagsIn & DIN_RESUME) ? <u32>load<u16>(d, D_RESUME_PREC) : 0x10000;
  const w = wcLookup(<u32>k0, <u32>(k0 >>> 32), ports, proto, now, precLimit, true);
  if (w == 0) return false;
  const seenOwner: u32 = (flagsIn & DIN_SEEN) ? <u32>load<u16>(d, D_SEEN_OWNER) : 0x10000;
  const bt = load<u32>(s, 8);
  clearOut(d);
  onWildcard(d, w, p, p + <usize>((st >>> 16) & 0xff), proto, (st & S_L4OK) != 0, bt >>> 16, st & 0xff,
    bt & 0xffff, seenOwner);
  return true;
}

/** A fixed hit beyond the common case (interest match, extension, drop, dispatch, info, seq adjust). */
function fixedGeneral(d: usize, s: usize, e: usize, i: u32, bits: u32, now: u32): void {
  const st = load<u32>(s, 12);
  const p = <usize>load<u32>(s, 16);
  const proto = st >>> 24;
  const l4 = p + <usize>((st >>> 16) & 0xff);
  const doff = st & 0xff;
  const l4ok = (st & S_L4OK) != 0;
  const tot = load<u32>(s, 8) >>> 16;
  const flagsIn = <u32>load<u16>(d, D_FLAGS_IN);
  const seenOwner: u32 = (flagsIn & DIN_SEEN) ? <u32>load<u16>(d, D_SEEN_OWNER) : 0x10000;
  const owner = <u32>load<u16>(e, F_OWNER);
  const actions = <u32>load<u16>(e, F_ACTIONS);
  bump(Counter.FIXED_HITS);
  clearOut(d);
  store<u16>(d, DOUT_FIXED, D_FLAGS_OUT);
  store<u32>(d, i, D_AFFINITY);
  store<u16>(d, <u16>owner, D_OWNER);
  const prim = load<u32>(e, F_NAT_ADDR);
  const primPort = <u32>load<u16>(e, F_NAT_PORT);
  const x = load<u32>(e, F_EXT);
  const xe: usize = x != 0 ? extBase + <usize>(x - 1) * EXT_SIZE : 0;
  let sAddr = prim;
  let sPort = primPort;
  let fwd = prim;
  if (xe != 0) {
    if ((actions & ACT_NAT_SRC) != 0 && (actions & ACT_NAT_DST) != 0) {
      sAddr = load<u32>(xe, X_SRC_ADDR);
      sPort = <u32>load<u16>(xe, X_SRC_PORT);
    }
    if (actions & ACT_NAT_ANY) fwd = load<u32>(xe, X_FORWARD_IP);
  }
  const forwarded = act(d, p, l4, proto, l4ok, tot, doff, bits, seenOwner, actions,
    <u32>load<u16>(e, F_INTEREST_MASK), <u32>load<u16>(e, F_INTEREST_TARGET), owner,
    sAddr, sPort, prim, primPort, fwd, xe);
  if (forwarded) {
    store<u32>(e, load<u32>(e, F_PACKETS) + 1, F_PACKETS);
    store<u64>(e, load<u64>(e, F_BYTES) + tot, F_BYTES);
  }
}

/**
 * True when the ICMP message at `icmp` is an error (destination unreachable, source quench, time
 * exceeded, parameter problem) that quotes an IPv4 header and the first 8 bytes of a TCP/UDP packet
 * (not a later fragment) inside the `room` bytes after the outer header.
 */
function icmpErrorQuotesFlow(icmp: usize, room: u32): bool {
  if (room < 8 + 20 + 8) return false;
  const type = <u32>load<u8>(icmp);
  if (type != 3 && type != 4 && type != 11 && type != 12) return false;
  const v = <u32>load<u8>(icmp, 8);
  const iihl = (v & 15) << 2;
  if ((v >>> 4) != 4 || iihl < 20 || iihl + 16 > room) return false;
  const iproto = <u32>load<u8>(icmp, 8 + 9);
  if (iproto != PROTO_TCP && iproto != PROTO_UDP) return false;
  return (swap16(<u32>load<u16>(icmp, 8 + 6)) & 0x1fff) == 0;
}

/**
 * An ICMP error about a flow with a fixed affinity (RFC 5508): the quoted packet went the other way, so
 * the affinity's key is the quoted header reversed. Its NAT is applied as the flow's packets see it:
 * destination NAT rewrites the quoted source (and the outer destination where it is the VIP), source NAT
 * the quoted destination (and the outer source where it is the real server); the quoted IP checksum, the
 * quoted TCP/UDP checksum when quoted, the ICMP checksum and the outer checksum follow incrementally.
 * Dispatch gives the next hop; a drop action drops. No fixed affinity: the usual wildcard path.
 */
function icmpError(d: usize, s: usize, now: u32): void {
  const st = load<u32>(s, 12);
  const p = <usize>load<u32>(s, 16);
  const tot = load<u32>(s, 8) >>> 16;
  const icmp = p + <usize>((st >>> 16) & 0xff);
  const inner = icmp + 8;
  const il4 = inner + (<usize>(load<u8>(inner) & 15) << 2);
  const iproto = <u32>load<u8>(inner, 9);
  const iSrc = load<u32>(inner, 12);
  const iDst = load<u32>(inner, 16);
  const iPorts = load<u32>(il4); // quoted source port (low half), destination port (high half), raw
  const k0 = <u64>iDst | (<u64>iSrc << 32);
  const k1 = <u64>rotr<u32>(iPorts, 16) | (<u64>iproto << 32);
  const e = fixedFind(k0, k1, hashKey(k0, k1), now);
  if (e == 0) {
    notFixed(d, s, now);
    return;
  }
  // a fixed hit (counter and FIXED flag), but not a packet of the flow: its packets/bytes stay as they were
  bump(Counter.FIXED_HITS);
  clearOut(d);
  const actions = <u32>load<u16>(e, F_ACTIONS);
  if ((FEATURES & CAP_DROP) && (actions & ACT_DROP)) {
    drop(d, R_ACTION, Counter.DROP_ACTION);
    return;
  }
  const prim = load<u32>(e, F_NAT_ADDR);
  const primPort = <u32>load<u16>(e, F_NAT_PORT);
  const x = load<u32>(e, F_EXT);
  const xe: usize = x != 0 ? extBase + <usize>(x - 1) * EXT_SIZE : 0;
  const both = (actions & ACT_NAT_SRC) != 0 && (actions & ACT_NAT_DST) != 0;
  const sAddr = both && xe != 0 ? load<u32>(xe, X_SRC_ADDR) : prim;
  const sPort = both && xe != 0 ? <u32>load<u16>(xe, X_SRC_PORT) : primPort;
  let accOuter: u32 = 0;
  let accAddr: u32 = 0; //  quoted addresses: quoted IP header and pseudo-header
  let accPorts: u32 = 0;
  let outer = false;
  let addrs = false;
  let rewritten = false;
  if (FEATURES & CAP_NAT) {
    if (actions & ACT_NAT_DST_ADDR) {
      accAddr += delta32(iSrc, prim);
      store<u32>(inner, prim, 12);
      addrs = true;
      if (load<u32>(p, 16) == iSrc) {
        accOuter += delta32(iSrc, prim);
        store<u32>(p, prim, 16);
        outer = true;
      }
    }
    if (actions & ACT_NAT_DST_PORT) {
      accPorts += delta16(iPorts & 0xffff, primPort);
      store<u16>(il4, <u16>primPort);
      rewritten = true;
    }
    if (actions & ACT_NAT_SRC_ADDR) {
      accAddr += delta32(iDst, sAddr);
      store<u32>(inner, sAddr, 16);
      addrs = true;
      if (load<u32>(p, 12) == iDst) {
        accOuter += delta32(iDst, sAddr);
        store<u32>(p, sAddr, 12);
        outer = true;
      }
    }
    if (actions & ACT_NAT_SRC_PORT) {
      accPorts += delta16(iPorts >>> 16, sPort);
      store<u16>(il4, <u16>sPort, 2);
      rewritten = true;
    }
  }
  if (addrs || rewritten) {
    let accIcmp = accAddr + accPorts;
    if (addrs) {
      const o = <u32>load<u16>(inner, 10);
      const n = csumApply(o, accAddr);
      store<u16>(inner, <u16>n, 10);
      accIcmp += delta16(o, n);
    }
    // the quoted TCP/UDP checksum, where quoted (TCP's sits 16 bytes in: past the 8 an error must quote)
    if (iproto == PROTO_TCP) {
      if (il4 + 18 <= p + <usize>tot) {
        const o = <u32>load<u16>(il4, 16);
        const n = csumApply(o, accAddr + accPorts);
        store<u16>(il4, <u16>n, 16);
        accIcmp += delta16(o, n);
      }
    } else {
      const o = <u32>load<u16>(il4, 6);
      if (o != 0) {
        let n = csumApply(o, accAddr + accPorts);
        if (n == 0) n = 0xffff;
        store<u16>(il4, <u16>n, 6);
        accIcmp += delta16(o, n);
      }
    }
    store<u16>(icmp, <u16>csumApply(<u32>load<u16>(icmp, 2), accIcmp), 2);
    if (outer) store<u16>(p, <u16>csumApply(<u32>load<u16>(p, 10), accOuter), 10);
    rewritten = true;
  }
  const fo: u32 = DOUT_FIXED | (rewritten ? DOUT_REWRITTEN : 0);
  store<u16>(d, <u16>fo, D_FLAGS_OUT);
  store<u32>(d, <u32>((e - fixedBase) / FIXED_SIZE), D_AFFINITY);
  store<u16>(d, load<u16>(e, F_OWNER), D_OWNER);
  if ((FEATURES & CAP_DISPATCH) && (actions & ACT_DISPATCH)) {
    const fwd = (actions & ACT_NAT_ANY) && xe != 0 ? load<u32>(xe, X_FORWARD_IP) : prim;
    if (fwd == 0) {
      drop(d, R_DISPATCH_ZERO, Counter.DROP_DISPATCH_ZERO);
      return;
    }
    store<u32>(d, swap32(fwd), D_NEXT_HOP);
  }
  store<u8>(d, V_FORWARD, D_VERDICT);
  bump(Counter.ICMP_TRANSLATED);
  bump(Counter.FORWARDED);
}

/** No live fixed affinity: the wildcards (by precedence), else a miss (dropped when advertised). */
function notFixed(d: usize, s: usize, now: u32): void {
  const st = load<u32>(s, 12);
  const p = <usize>load<u32>(s, 16);
  const k0 = load<u64>(p, 12);
  clearOut(d);
  if (patternCount != 0) {
    const flagsIn = <u32>load<u16>(d, D_FLAGS_IN);
    const precLimit: u32 = (flagsIn & DIN_RESUME) ? <u32>load<u16>(d, D_RESUME_PREC) : 0x10000;
    const proto = st >>> 24;
    const w = wcLookup(<u32>k0, <u32>(k0 >>> 32), load<u32>(s, 4), proto, now, precLimit, false);
    if (w != 0) {
      const seenOwner: u32 = (flagsIn & DIN_SEEN) ? <u32>load<u16>(d, D_SEEN_OWNER) : 0x10000;
      const bt = load<u32>(s, 8);
      onWildcard(d, w, p, p + <usize>((st >>> 16) & 0xff), proto, (st & S_L4OK) != 0, bt >>> 16, st & 0xff,
        bt & 0xffff, seenOwner);
      return;
    }
  }
  bump(Counter.MISSES);
  if (advertisedCount != 0 && advertised(<u32>(k0 >>> 32))) {
    drop(d, R_ADVERTISED, Counter.DROP_ADVERTISED);
    return;
  }
  store<u8>(d, V_FORWARD, D_VERDICT);
  bump(Counter.FORWARDED);
}

/**
 * Processes descriptors [0, count) in two passes. Pass 1 validates and parses every packet (a short path
 * for IPv4 without options, unfragmented, TCP; the general parse for everything else) and hashes its
 * affinity key. Pass 2 goes in chunks of CHUNK: a tight loop loads the home slot of every packet's key
 * in the chunk (the loads are independent, so the CPU overlaps their cache and TLB misses instead of
 * paying them one after another), then the chunk is looked up (now from L1), acted on and given its
 * verdicts; a fixed hit with no action or DNAT of address and port, no extension and no interest match
 * writes its outputs with three stores.
 */
export function processBatch(count: u32, now: u32): void {
  const dBase = descBase;
  const pBase = pktBase;
  const fBase = fixedBase;
  const end = dBase + <usize>count * DESC_SIZE;
  const slots = fixedSlots;
  // the common outcomes are counted in locals and added to the counters once per batch
  let nBytes: u64 = 0;
  let nInline: u64 = 0; // fixed hits forwarded in line (fixedGeneral counts its own)
  let nNat: u64 = 0;
  let nIcmpErrors: u32 = 0;
  let s = SCRATCH;
  for (let d = dBase; d < end; d += DESC_SIZE, s += SCRATCH_SIZE) {
    store<u32>(s, 0, 12);
    const off = load<u32>(d, D_OFFSET);
    const len = <u32>load<u16>(d, D_LENGTH);
    if (off > PACKET_REGION - len) {
      dropMalformed(d, R_DESCRIPTOR, Counter.MALFORMED_DESCRIPTOR);
      continue;
    }
    const p = pBase + <usize>off;
    if (len < 20) {
      dropMalformed(d, R_TRUNCATED, Counter.MALFORMED_TRUNCATED);
      continue;
    }
    {
      // short path: version 4, IHL 5, MF clear and offset 0, TCP, TCP header inside the total length
      const w0 = load<u32>(p); //   version/IHL, TOS, total length
      const w1 = load<u32>(p, 4); // identification, flags/fragment offset
      const tot = swap16(w0 >>> 16);
      if ((w0 & 0xff) == 0x45 && (w1 & 0xff3f0000) == 0 && <u32>load<u8>(p, 9) == PROTO_TCP && tot <= len && tot >= 40) {
        const l4 = p + 20;
        const w3 = load<u32>(l4, 12); // data offset, flags, window
        const doff = (w3 >>> 2) & 0x3c;
        if (doff >= 20 && doff + 20 <= tot) {
          nBytes += tot;
          let bits: u32 = BIT_ALL | ((w3 >>> 8) & 0x3f);
          if (tot > doff + 20) bits |= BIT_DATA;
          const ports = load<u32>(l4);
          // saddr | daddr << 32 is the little-endian u64 at offset 12
          store<u32>(s, reduce(hashKey(load<u64>(p, 12), <u64>ports | (<u64>PROTO_TCP << 32)), slots));
          store<u32>(s, ports, 4);
          store<u32>(s, bits | (tot << 16), 8);
          store<u32>(s, doff | S_L4OK | S_OK | (20 << 16) | (PROTO_TCP << 24), 12);
          store<u32>(s, <u32>p, 16);
          continue;
        }
      }
    }
    const vihl = <u32>load<u8>(p);
    if ((vihl >>> 4) != 4) {
      dropMalformed(d, R_VERSION, Counter.MALFORMED_VERSION);
      continue;
    }
    const ihl = (vihl & 15) << 2;
    if (ihl < 20) {
      dropMalformed(d, R_IHL, Counter.MALFORMED_IHL);
      continue;
    }
    const tot = swap16(<u32>load<u16>(p, 2));
    if (tot > len || tot < ihl) {
      dropMalformed(d, R_TOTAL_LENGTH, Counter.MALFORMED_TOTAL_LENGTH);
      continue;
    }
    nBytes += tot;
    const fragw = swap16(<u32>load<u16>(p, 6));
    const fragOff = fragw & 0x1fff;
    const proto = <u32>load<u8>(p, 9);
    const l4 = p + <usize>ihl;
    let bits: u32 = BIT_ALL;
    if (fragw & 0x3fff) {
      bits |= BIT_FRAGMENT;
      bump(Counter.FRAGMENTS);
    }
    let ports: u32 = 0;
    let doff: u32 = 0;
    let l4ok: u32 = 0;
    let kind = S_OK;
    if (fragOff == 0 && proto == PROTO_TCP) {
      if (ihl + 20 > tot) {
        dropMalformed(d, R_L4_HEADER, Counter.MALFORMED_L4_HEADER);
        continue;
      }
      doff = (<u32>load<u8>(l4, 12) >>> 4) << 2;
      if (doff < 20 || ihl + doff > tot) {
        dropMalformed(d, R_L4_HEADER, Counter.MALFORMED_L4_HEADER);
        continue;
      }
      ports = load<u32>(l4);
      bits |= <u32>load<u8>(l4, 13) & 0x3f;
      if (tot > ihl + doff) bits |= BIT_DATA;
      l4ok = S_L4OK;
    } else if (fragOff == 0 && proto == PROTO_UDP) {
      if (ihl + 8 > tot) {
        dropMalformed(d, R_L4_HEADER, Counter.MALFORMED_L4_HEADER);
        continue;
      }
      ports = load<u32>(l4);
      if (tot > ihl + 8) bits |= BIT_DATA;
      l4ok = S_L4OK;
    } else if (proto == PROTO_TCP || proto == PROTO_UDP) {
      if (tot > ihl) bits |= BIT_DATA; // a non-first fragment carries data, no ports
    } else if (fragOff == 0 && proto == PROTO_ICMP && !(fragw & 0x2000) && icmpErrorQuotesFlow(l4, tot - ihl)) {
      kind = S_ICMP_ERROR;
      nIcmpErrors++;
    }
    store<u32>(s, reduce(hashKey(load<u64>(p, 12), <u64>ports | (<u64>proto << 32)), slots));
    store<u32>(s, ports, 4);
    store<u32>(s, bits | (tot << 16), 8);
    store<u32>(s, doff | l4ok | kind | (ihl << 16) | (proto << 24), 12);
    store<u32>(s, <u32>p, 16);
  }
  const bound = fixedMaxDisp;
  const searchFirst = wcSearchFirst != 0;
  // Pass 2 runs in chunks, each after its own prefetch: the chunk's entries, packets and descriptors
  // stay in L1 from the touch to the lookup.
  for (let c: u32 = 0; c < count; c += CHUNK) {
    const cn = count - c < CHUNK ? count - c : CHUNK;
    const s0 = SCRATCH + <usize>c * SCRATCH_SIZE;
    const send = s0 + <usize>cn * SCRATCH_SIZE;
    // prefetch: a tight loop of independent loads of every home slot (both cache lines a 48-byte entry
    // may straddle) and, as far as a hit's probe is expected to run at the table's load, the slots
    // after it, so many cache / TLB misses are in flight at once (a load in the lookup that misses
    // waits alone)
    s = s0;
    let sink: u32 = 0;
    if (fixedCount > (slots >>> 1)) {
      // above 50 % load a Robin Hood hit is often 1-3 slots past its home: the next three entries' tails
      for (; s < send; s += SCRATCH_SIZE) {
        const hi = load<u32>(s);
        const home = fBase + <usize>hi * FIXED_SIZE;
        const run = hi + 3 < slots ? home : fBase; // stay inside the table
        sink ^= load<u32>(home) ^ load<u32>(home, FIXED_SIZE - 4) ^ load<u32>(run, 2 * FIXED_SIZE - 4) ^
          load<u32>(run, 3 * FIXED_SIZE - 4) ^ load<u32>(run, 4 * FIXED_SIZE - 4);
      }
    } else if (fixedCount > (slots >>> 2)) {
      for (; s < send; s += SCRATCH_SIZE) {
        const hi = load<u32>(s);
        const home = fBase + <usize>hi * FIXED_SIZE;
        const next = hi + 1 < slots ? home + FIXED_SIZE : home;
        sink ^= load<u32>(home) ^ load<u32>(home, FIXED_SIZE - 4) ^ load<u32>(next, FIXED_SIZE - 4);
      }
    } else {
      // below 25 % nearly every hit (and every miss's empty slot) is at home
      for (; s < send; s += SCRATCH_SIZE) {
        const home = fBase + <usize>load<u32>(s) * FIXED_SIZE;
        sink ^= load<u32>(home) ^ load<u32>(home, FIXED_SIZE - 4);
      }
    }
    touched = sink;

    s = s0;
    const dEnd = dBase + <usize>(c + cn) * DESC_SIZE;
    for (let d = dBase + <usize>c * DESC_SIZE; d < dEnd; d += DESC_SIZE, s += SCRATCH_SIZE) {
      const st = load<u32>(s, 12);
      if (!(st & S_OK)) continue;
      if (searchFirst && wildcardFirst(d, s, now)) continue;
      const p = <usize>load<u32>(s, 16);
      const k0 = load<u64>(p, 12);
      const ports = load<u32>(s, 4);
      const proto = st >>> 24;

      // fixed affinity lookup: the home slot in line (one compare covers the key and the live bit),
      // the rest of the Robin Hood run out of line
      const k1 = <u64>ports | (<u64>proto << 32) | KEY1_LIVE;
      let i = load<u32>(s);
      let e = fBase + <usize>i * FIXED_SIZE;
      let w8 = load<u64>(e, 8); // ports, protocol, state, actions
      if (((load<u64>(e) ^ k0) | ((w8 ^ k1) & KEY1_LIVE_MASK)) != 0) {
        i = fixedProbe(k0, k1, i, slots, bound);
        if (i == NO_SLOT) {
          notFixed(d, s, now);
          continue;
        }
        e = fBase + <usize>i * FIXED_SIZE;
        w8 = load<u64>(e, 8);
      }
      if (isExpired(e, now)) {
        notFixed(d, s, now);
        continue;
      }
      const bt = load<u32>(s, 8);
      let bits = bt & 0xffff;
      const est = <u32>(w8 >>> 40) & 0xff;
      if ((bits & BIT_DATA) && !(est & ST_FIRST_DATA_SEEN)) {
        bits |= BIT_FIRST_DATA;
        store<u8>(e, <u8>(est | ST_FIRST_DATA_SEEN), F_STATE);
      }
      const actions = <u32>(w8 >>> 48);
      const w24 = load<u64>(e, F_NAT_PORT); //  NAT port, interest mask, interest target, owner
      const w32 = load<u64>(e, F_EXT); //       extension, packets
      // in line: no action, or DNAT of address and port of a TCP/UDP packet with its ports; no extension,
      // no interest match. Everything else (other NAT subsets included) out of line, which keeps this
      // loop's registers for the common case.
      const inline = actions == 0 || (actions == ACT_NAT_DST && (st & S_L4OK) != 0);
      if (!inline || (<u32>w32 | (bits & (<u32>w24 >>> 16))) != 0) {
        fixedGeneral(d, s, e, i, bits, now);
        continue;
      }
      const tot = bt >>> 16;
      let fo: u32 = DOUT_FIXED;
      if ((FEATURES & CAP_NAT) && actions != 0) {
        // DNAT; the old values are the key's (RFC 1624 as in applyNat)
        const l4 = p + <usize>((st >>> 16) & 0xff);
        const na = load<u32>(e, F_NAT_ADDR);
        const np = <u32>w24 & 0xffff;
        const acc = delta32(<u32>(k0 >>> 32), na);
        store<u32>(p, na, 16);
        store<u16>(p, <u16>csumApply(<u32>load<u16>(p, 10), acc), 10);
        const acc4 = acc + delta16(ports >>> 16, np);
        store<u16>(l4, <u16>np, 2);
        applyL4Csum(l4, proto, acc4);
        nNat++;
        fo |= DOUT_REWRITTEN;
      }
      store<u32>(d, <u32>V_FORWARD | (fo << 16), D_VERDICT);
      store<u64>(d, <u64>i << 32, D_NEXT_HOP); //       next hop 0, affinity slot
      store<u64>(d, (w24 >>> 48) << 32, D_INTEREST_BITS); // no interest, owner, no service precedence
      store<u64>(e, w32 + (<u64>1 << 32), F_EXT); //     packets + 1 (the extension index is 0 here)
      store<u64>(e, load<u64>(e, F_BYTES) + tot, F_BYTES);
      nInline++;
    }
  }
  // ICMP errors quoting a flow: rare, so out of the chunks' way
  if (nIcmpErrors != 0) {
    s = SCRATCH;
    for (let d = dBase; d < end; d += DESC_SIZE, s += SCRATCH_SIZE) {
      if (load<u32>(s, 12) & S_ICMP_ERROR) icmpError(d, s, now);
    }
  }
  bumpBy(Counter.PACKETS, <u64>count);
  bumpBy(Counter.BYTES, nBytes);
  bumpBy(Counter.FIXED_HITS, nInline);
  bumpBy(Counter.NAT_APPLIED, nNat);
  bumpBy(Counter.FORWARDED, nInline);
}
