// The memory map. Nothing is allocated: fixed regions are carved from __heap_base at init, sized from the
// budget; small fixed-size tables (counters, control record, wildcard patterns, advertised set) live in
// static memory (memory.data) so their addresses are constants.
//
//   static   counters (64 x u64) | layout record | control record | patterns | advertised set
//   heap     descriptors  BATCH_MAX x DESC_SIZE
//            packets      BATCH_MAX x PACKET_SLOT  (a descriptor may point anywhere inside this region)
//            wildcards    wcSlots x WC_SIZE        (power of two, load <= 50%)
//            extension    extCapacity x EXT_SIZE
//            info         INFO_SLOTS x INFO_SIZE   (per forward IP statistics)
//            fixed        fixedSlots x FIXED_SIZE  (every remaining byte of the budget)
//
// Addresses, ports and NAT values are kept in wire order as a little-endian load sees them: a packet's
// 4 address bytes are compared and rewritten without byte swaps. The host converts at install time.

import { Counter, setCounter } from './counters';
import { Status } from './status';
import { CAP_ALL, FEATURES } from './features';

// ---- batch ABI --------------------------------------------------------------------------------------
/** Packets per process() call: 256 amortises the JS->wasm call to nothing and keeps the batch in L2. */
export const BATCH_MAX: u32 = 256;
/** Bytes reserved per packet by default; a packet may be placed anywhere in the region. */
export const PACKET_SLOT: u32 = 2048;
export const PACKET_REGION: u32 = BATCH_MAX * PACKET_SLOT;

// descriptor, 32 bytes
export const DESC_SIZE: u32 = 32;
export const D_OFFSET = 0; //        u32 in: offset of the packet in the packet region
export const D_LENGTH = 4; //        u16 in: captured length
export const D_FLAGS_IN = 6; //      u16 in: DIN_* flags
export const D_RESUME_PREC = 8; //   u16 in: with DIN_RESUME: only wildcards with service precedence < this
export const D_SEEN_OWNER = 10; //   u16 in: with DIN_SEEN: interest matches of this owner are suppressed
export const D_VERDICT = 12; //      u8  out: V_*
export const D_REASON = 13; //       u8  out: R_* (why dropped / malformed)
export const D_FLAGS_OUT = 14; //    u16 out: DOUT_*
export const D_NEXT_HOP = 16; //     u32 out: next hop (host order), 0 = route on the destination
export const D_AFFINITY = 20; //     u32 out: slot of the fixed or wildcard affinity that matched
export const D_INTEREST_BITS = 24; //u16 out: interest bits of the packet that matched the mask
export const D_INTEREST_TARGET = 26; // u16 out: interned interest address:port index
export const D_OWNER = 28; //        u16 out: owner (manager) of the matched affinity
export const D_SERVICE_PREC = 30; // u16 out: service precedence of the matched wildcard (for resume)

export const DIN_RESUME: u32 = 1;
export const DIN_SEEN: u32 = 2;

export const DOUT_ATTACH: u32 = 1; //   the interest message carries the packet
export const DOUT_FIXED: u32 = 2; //    matched a fixed affinity
export const DOUT_WILDCARD: u32 = 4; // matched a wildcard affinity
export const DOUT_REWRITTEN: u32 = 8; // bytes changed in place (NAT / sequence adjust)
export const DOUT_INTEREST: u32 = 16; // an interest match happened (TO_MANAGER, HOLD, COPY)

export const V_NONE: u8 = 0;
export const V_FORWARD: u8 = 1;
export const V_TO_MANAGER: u8 = 2;
export const V_HOLD: u8 = 3;
export const V_COPY: u8 = 4;
export const V_DROP: u8 = 5;

export const R_NONE: u8 = 0;
export const R_DESCRIPTOR: u8 = 1;
export const R_TRUNCATED: u8 = 2;
export const R_VERSION: u8 = 3;
export const R_IHL: u8 = 4;
export const R_TOTAL_LENGTH: u8 = 5;
export const R_L4_HEADER: u8 = 6;
export const R_ACTION: u8 = 7;
export const R_DISPATCH_ZERO: u8 = 8;
export const R_ADVERTISED: u8 = 9;

// ---- fixed affinity entry, 48 bytes -----------------------------------------------------------------
// Everything an established flow needs on the fast path. What does not fit (the second NAT half when
// both source and destination are rewritten, the forward IP when dispatch is combined with NAT, sequence
// adjust deltas) lives in the extension table, referenced by F_EXT.
export const FIXED_SIZE: u32 = 48;
export const F_SADDR = 0; //     u32 wire order   } affinity key: compared as u64 @0 and
export const F_DADDR = 4; //     u32 wire order   } (u64 @8 & 0xFF_FFFF_FFFF)
export const F_SPORT = 8; //     u16 wire order
export const F_DPORT = 10; //    u16 wire order
export const F_PROTO = 12; //    u8
export const F_STATE = 13; //    u8  ST_* (0 = empty slot)
export const F_ACTIONS = 14; //  u16 ACT_*
export const F_EXPIRY = 16; //   u32 ms, serial arithmetic against now (wrap-safe for TTL < 2^31 ms)
export const F_NAT_ADDR = 20; // u32 wire: destination NAT address if any destination NAT, else source NAT
                              //     address, else (dispatch without NAT) the forward IP
export const F_NAT_PORT = 24; // u16 wire: the port of the same NAT half
export const F_INTEREST_MASK = 26; // u16
export const F_INTEREST_TARGET = 28; // u16 interned by the host
export const F_OWNER = 30; //    u16 manager that installed it
export const F_EXT = 32; //      u32 extension index + 1 (0 = none)
export const F_PACKETS = 36; //  u32
export const F_BYTES = 40; //    u64

export const ST_LIVE: u8 = 1;
export const ST_FIRST_DATA_SEEN: u8 = 2;

// ---- extension entry, 32 bytes ----------------------------------------------------------------------
export const EXT_SIZE: u32 = 32;
export const X_SRC_ADDR = 0; //   u32 wire: source NAT half when both halves are rewritten
export const X_SRC_PORT = 4; //   u16 wire
export const X_FORWARD_IP = 8; // u32 wire: forward IP when dispatch is combined with NAT
export const X_SEQ_INIT = 12; //  u32 host order
export const X_SEQ_DELTA = 16; // u32
export const X_ACK_INIT = 20; //  u32
export const X_ACK_DELTA = 24; // u32
export const X_NEXT_FREE = 28; // u32 free list link (index + 1)

// ---- wildcard affinity entry, 64 bytes --------------------------------------------------------------
export const WC_SIZE: u32 = 64;
export const W_SADDR = 0; //  u32 wire, masked
export const W_DADDR = 4; //  u32 wire, masked
export const W_SPORT = 8; //  u16 wire (0 = any)
export const W_DPORT = 10; // u16 wire (0 = any)
export const W_PROTO = 12; // u8 (0 = any)
export const W_PATTERN = 13; // u8 pattern index (part of the hashed key)
export const W_ACTIONS = 14; // u16
export const W_EXPIRY = 16; // u32
export const W_NAT_ADDR = 20; // u32 wire: destination NAT address (or source if no destination NAT)
export const W_NAT_PORT = 24; // u16
export const W_INTEREST_MASK = 26;
export const W_INTEREST_TARGET = 28;
export const W_OWNER = 30;
export const W_STATE = 32; //  u8 ST_LIVE (0 = empty)
export const W_PREC_FLAGS = 33; // u8 WP_*
export const W_SERVICE_PREC = 34; // u16 higher is searched first
export const W_BACKUP_PREC = 36; //  u16 lower wins among equal service precedence
export const W_SRC_NAT_ADDR = 40; // u32 wire: source NAT half when both halves are rewritten
export const W_SRC_NAT_PORT = 44; // u16
export const W_FORWARD_IP = 48; // u32 wire
export const W_SMASK = 52; //    u32 wire
export const W_DMASK = 56; //    u32 wire
export const W_HITS = 60; //     u32

/** Search-order flag of the service precedence: match this wildcard before the fixed affinities. */
export const WP_SEARCH_FIRST: u8 = 1;

// ---- per forward IP statistics ----------------------------------------------------------------------
export const INFO_SLOTS: u32 = 1024; // next hops of one agent: a handful of real servers per service
export const INFO_SIZE: u32 = 32;
export const I_ADDR = 0; // u32 wire
export const I_USED = 4; // u32
export const I_PACKETS = 8; // u64
export const I_BYTES = 16; // u64

// ---- small static tables ----------------------------------------------------------------------------
/** Distinct (source mask, destination mask, port-any, protocol-any) patterns: lookup cost is per pattern. */
export const MAX_PATTERNS: u32 = 16;
export const PATTERN_SIZE: u32 = 16;
export const P_SMASK = 0;
export const P_DMASK = 4;
export const P_PORT_MASK = 8; // u32 applied to the packet's raw (sport | dport << 16)
export const P_PROTO_MASK = 12; // u8
export const P_REFS = 14; // u16 wildcards using it (0 = free)
export const PATTERNS: usize = memory.data(MAX_PATTERNS * PATTERN_SIZE, 16);

export const MAX_ADVERTISED: u32 = 256;
export const ADV_SIZE: u32 = 12;
export const A_PREFIX = 0;
export const A_MASK = 4;
export const A_REFS = 8;
export const ADVERTISED: usize = memory.data(MAX_ADVERTISED * ADV_SIZE, 16);

/** Control record: the host writes an affinity here and calls an install/delete/lookup export; lookups
 *  write their answer to CONTROL + CONTROL_OUT. Layout in host/agent/wasm.ts (CTL_*). */
export const CONTROL_SIZE: u32 = 256;
export const CONTROL_OUT: u32 = 128;
export const CONTROL: usize = memory.data(CONTROL_SIZE, 64);

/** Layout record read by the host after init: u32 words, L_* indices. */
export const L_VERSION = 0;
export const L_BUDGET = 1;
export const L_COUNTERS = 2;
export const L_COUNTER_COUNT = 3;
export const L_CONTROL = 4;
export const L_DESCRIPTORS = 5;
export const L_BATCH_MAX = 6;
export const L_DESC_SIZE = 7;
export const L_PACKETS = 8;
export const L_PACKET_REGION = 9;
export const L_PACKET_SLOT = 10;
export const L_FIXED = 11;
export const L_FIXED_SLOTS = 12;
export const L_FIXED_CAPACITY = 13;
export const L_FIXED_SIZE = 14;
export const L_WILDCARDS = 15;
export const L_WILDCARD_SLOTS = 16;
export const L_WILDCARD_CAPACITY = 17;
export const L_EXT = 18;
export const L_EXT_CAPACITY = 19;
export const L_INFO = 20;
export const L_INFO_SLOTS = 21;
export const L_END = 22;
export const L_CAPABILITIES = 23;
export const L_MAX_PATTERNS = 24;
export const L_WORDS = 32;
export const ABI_VERSION: u32 = 1;
export const LAYOUT: usize = memory.data(L_WORDS * 4, 16);

// ---- region globals (set by init, read on the hot path) ---------------------------------------------
export let ready = false;
export let capabilities: u32 = 0;
export let hashSeed: u64 = 0;
export let descBase: usize = 0;
export let pktBase: usize = 0;
export let fixedBase: usize = 0;
export let fixedSlots: u32 = 0;
export let fixedCapacity: u32 = 0;
export let fixedCount: u32 = 0;
export let sweepCursor: u32 = 0;
/** Largest displacement from its home slot any fixed entry has had since init: lookups stop after it. */
export let fixedMaxDisp: u32 = 0;
export let wcBase: usize = 0;
export let wcSlots: u32 = 0; // power of two
export let wcCapacity: u32 = 0;
export let wcCount: u32 = 0;
export let wcSweepCursor: u32 = 0;
export let wcSearchFirst: u32 = 0; // live wildcards with WP_SEARCH_FIRST
export let extBase: usize = 0;
export let extCapacity: u32 = 0;
export let extFree: u32 = 0; // index + 1 of the first free extension entry
export let extCount: u32 = 0;
export let infoBase: usize = 0;
export let patternCount: u32 = 0; // active patterns, listed densely in ACTIVE_PATTERNS
export let advertisedCount: u32 = 0;
export const ACTIVE_PATTERNS: usize = memory.data(MAX_PATTERNS, 16);

export function setFixedCount(n: u32): void {
  fixedCount = n;
  setCounter(Counter.FIXED_OCCUPANCY, n);
}
export function setWcCount(n: u32): void {
  wcCount = n;
  setCounter(Counter.WILDCARD_OCCUPANCY, n);
}
export function setExtCount(n: u32): void {
  extCount = n;
  setCounter(Counter.EXT_OCCUPANCY, n);
}
export function setExtFree(n: u32): void {
  extFree = n;
}
export function setPatternCount(n: u32): void {
  patternCount = n;
  setCounter(Counter.WILDCARD_PATTERNS, n);
}
export function setAdvertisedCount(n: u32): void {
  advertisedCount = n;
  setCounter(Counter.ADVERTISED_PREFIXES, n);
}
export function setFixedMaxDisp(n: u32): void {
  fixedMaxDisp = n;
  setCounter(Counter.FIXED_MAX_DISPLACEMENT, n);
}
export function setSweepCursor(n: u32): void {
  sweepCursor = n;
}
export function setWcSweepCursor(n: u32): void {
  wcSweepCursor = n;
}
export function setWcSearchFirst(n: u32): void {
  wcSearchFirst = n;
}

/** Default wildcard capacity: a few managers x a few hundred services x primary and backup. */
export const DEFAULT_WILDCARDS: u32 = 16384;
/** Default extension entries: two-sided NAT and TCP splices are rare next to plain DNAT/SNAT flows. */
export const DEFAULT_EXT: u32 = 65536;
/** Fixed table load cap: linear probing stays short up to 90 % (expected hit probe ~5.5 slots). */
export const FIXED_LOAD_NUM: u32 = 9;
export const FIXED_LOAD_DEN: u32 = 10;

// @ts-ignore: decorator
@inline function align64(x: usize): usize {
  return (x + 63) & ~(<usize>63);
}

/**
 * Carves the regions. budgetBytes 0 = the whole memory. fixedWanted / wildcardWanted / extWanted 0 =
 * defaults (fixed: all remaining memory). The fixed table always takes every remaining byte, so its
 * reported capacity may exceed what was asked; asking more than fits is NO_MEMORY.
 * disabledCaps removes capabilities at run time on top of what the build left out.
 */
export function initLayout(
  budgetBytes: u32,
  fixedWanted: u32,
  wildcardWanted: u32,
  extWanted: u32,
  seed: u32,
  disabledCaps: u32,
): i32 {
  ready = false;
  const memBytes: u64 = <u64>memory.size() << 16;
  let budget: u64 = budgetBytes == 0 ? memBytes : <u64>budgetBytes;
  if (budget > memBytes) return Status.BAD_ARGUMENT;
  if (wildcardWanted > (1 << 22) || extWanted > (1 << 24)) return Status.BAD_ARGUMENT;
  const wcCap = wildcardWanted == 0 ? DEFAULT_WILDCARDS : wildcardWanted;
  const exCap = extWanted == 0 ? DEFAULT_EXT : extWanted;
  let wSlots: u32 = 16;
  while (wSlots < wcCap * 2) wSlots <<= 1;

  let p: u64 = <u64>align64(__heap_base);
  const dBase = p;
  p += <u64>(BATCH_MAX * DESC_SIZE);
  const pBase = p;
  p += <u64>PACKET_REGION;
  const wBase = p;
  p += <u64>wSlots * WC_SIZE;
  const xBase = p;
  p = (p + <u64>exCap * EXT_SIZE + 63) & ~(<u64>63);
  const iBase = p;
  p += <u64>(INFO_SLOTS * INFO_SIZE);
  const fBase = p;
  if (p + <u64>(16 * FIXED_SIZE) > budget) return Status.NO_MEMORY;
  // the fixed table takes every remaining byte, or (when a capacity is asked) 5/4 of it: 80 % load at
  // the asked capacity, and a smaller table is a smaller cache / TLB footprint
  let fSlots64 = (budget - p) / FIXED_SIZE;
  if (fixedWanted != 0) {
    const want = (<u64>fixedWanted * 5 + 3) / 4;
    if (want < fSlots64) fSlots64 = want < 16 ? 16 : want;
  }
  const fSlots: u32 = fSlots64 > 0x7fffffff ? 0x7fffffff : <u32>fSlots64;
  const fCap = <u32>((<u64>fSlots * FIXED_LOAD_NUM) / FIXED_LOAD_DEN);
  if (fixedWanted > fCap) return Status.NO_MEMORY;

  const used = fBase + <u64>fSlots * FIXED_SIZE;
  memory.fill(<usize>dBase, 0, <usize>(used - dBase));
  memory.fill(COUNTERS_ADDR(), 0, 64 * 8);
  memory.fill(PATTERNS, 0, MAX_PATTERNS * PATTERN_SIZE);
  memory.fill(ADVERTISED, 0, MAX_ADVERTISED * ADV_SIZE);
  memory.fill(CONTROL, 0, CONTROL_SIZE);

  descBase = <usize>dBase;
  pktBase = <usize>pBase;
  wcBase = <usize>wBase;
  wcSlots = wSlots;
  wcCapacity = wcCap;
  extBase = <usize>xBase;
  extCapacity = exCap;
  infoBase = <usize>iBase;
  fixedBase = <usize>fBase;
  fixedSlots = fSlots;
  fixedCapacity = fCap;
  hashSeed = (<u64>seed * 0x9e3779b97f4a7c15) ^ 0x6a09e667f3bcc909;
  capabilities = FEATURES & CAP_ALL & ~disabledCaps;
  sweepCursor = 0;
  setFixedMaxDisp(0);
  wcSweepCursor = 0;
  wcSearchFirst = 0;
  setFixedCount(0);
  setWcCount(0);
  setPatternCount(0);
  setAdvertisedCount(0);
  // extension free list: 1 -> 2 -> ... -> cap -> 0
  for (let i: u32 = 0; i < exCap; i++) {
    store<u32>(<usize>xBase + <usize>i * EXT_SIZE, i + 2 <= exCap ? i + 2 : 0, X_NEXT_FREE);
  }
  extFree = exCap > 0 ? 1 : 0;
  setExtCount(0);

  const L = LAYOUT;
  store<u32>(L + (L_VERSION << 2), ABI_VERSION);
  store<u32>(L + (L_BUDGET << 2), <u32>budget);
  store<u32>(L + (L_COUNTERS << 2), <u32>COUNTERS_ADDR());
  store<u32>(L + (L_COUNTER_COUNT << 2), <u32>Counter.COUNT);
  store<u32>(L + (L_CONTROL << 2), <u32>CONTROL);
  store<u32>(L + (L_DESCRIPTORS << 2), <u32>dBase);
  store<u32>(L + (L_BATCH_MAX << 2), BATCH_MAX);
  store<u32>(L + (L_DESC_SIZE << 2), DESC_SIZE);
  store<u32>(L + (L_PACKETS << 2), <u32>pBase);
  store<u32>(L + (L_PACKET_REGION << 2), PACKET_REGION);
  store<u32>(L + (L_PACKET_SLOT << 2), PACKET_SLOT);
  store<u32>(L + (L_FIXED << 2), <u32>fBase);
  store<u32>(L + (L_FIXED_SLOTS << 2), fSlots);
  store<u32>(L + (L_FIXED_CAPACITY << 2), fCap);
  store<u32>(L + (L_FIXED_SIZE << 2), FIXED_SIZE);
  store<u32>(L + (L_WILDCARDS << 2), <u32>wBase);
  store<u32>(L + (L_WILDCARD_SLOTS << 2), wSlots);
  store<u32>(L + (L_WILDCARD_CAPACITY << 2), wcCap);
  store<u32>(L + (L_EXT << 2), <u32>xBase);
  store<u32>(L + (L_EXT_CAPACITY << 2), exCap);
  store<u32>(L + (L_INFO << 2), <u32>iBase);
  store<u32>(L + (L_INFO_SLOTS << 2), INFO_SLOTS);
  store<u32>(L + (L_END << 2), <u32>used);
  store<u32>(L + (L_CAPABILITIES << 2), capabilities);
  store<u32>(L + (L_MAX_PATTERNS << 2), MAX_PATTERNS);
  ready = true;
  return Status.OK;
}

import { COUNTERS } from './counters';
// @ts-ignore: decorator
@inline function COUNTERS_ADDR(): usize {
  return COUNTERS;
}
