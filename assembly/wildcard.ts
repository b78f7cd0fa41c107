// Wildcard affinities: tuple-space search.
//
// A pattern is (source mask, destination mask, source port any?, destination port any?, protocol any?).
// Every wildcard belongs to one pattern; its key is stored already masked, with the pattern index, in one
// open-addressing table (power of two slots, load <= 50 %, linear probing, backward-shift deletion).
// A lookup masks the packet's key once per active pattern and probes: the cost grows with the number of
// patterns (<= MAX_PATTERNS), not with the number of wildcards.
//
// Several wildcards may share a masked key (a primary and its backups, or several services): they sit in
// the same probe run, and the lookup keeps the best: highest service precedence, then lowest backup
// precedence. A wildcard's identity is (masked key, pattern, owner): installing it again refreshes it.

import { Counter, bump } from './counters';
import { Status } from './status';
import { hashKey, reduce } from './hash';
import {
  ACT_ADVERTISE, ACT_ALL, requiredCaps,
} from './features';
import {
  ACTIVE_PATTERNS, ADV_SIZE, ADVERTISED, A_MASK, A_PREFIX, A_REFS, CONTROL, MAX_ADVERTISED, MAX_PATTERNS,
  PATTERNS, PATTERN_SIZE, P_DMASK, P_PORT_MASK, P_PROTO_MASK, P_REFS, P_SMASK, ST_LIVE, WC_SIZE,
  WP_SEARCH_FIRST, W_ACTIONS, W_BACKUP_PREC, W_DADDR, W_DMASK, W_DPORT, W_EXPIRY, W_FORWARD_IP,
  W_HITS, W_INTEREST_MASK, W_INTEREST_TARGET, W_NAT_ADDR, W_NAT_PORT, W_OWNER, W_PATTERN, W_PREC_FLAGS,
  W_PROTO, W_SADDR, W_SERVICE_PREC, W_SMASK, W_SPORT, W_SRC_NAT_ADDR, W_SRC_NAT_PORT, W_STATE,
  advertisedCount, capabilities, patternCount, setAdvertisedCount, setPatternCount, setWcCount, setWcSearchFirst,
  setWcSweepCursor, wcBase, wcCapacity, wcCount, wcSearchFirst, wcSlots, wcSweepCursor,
} from './layout';
import {
  C_ACTIONS, C_BACKUP_PREC, C_DADDR, C_DMASK, C_DPORT, C_FORWARD_IP, C_INTEREST_MASK, C_INTEREST_TARGET,
  C_NAT_DST_ADDR, C_NAT_DST_PORT, C_NAT_SRC_ADDR, C_NAT_SRC_PORT, C_OWNER, C_PREC_FLAGS, C_PROTO, C_SADDR,
  C_SERVICE_PREC, C_SMASK, C_SPORT, C_TTL, MAX_TTL_SEC,
} from './control';
import { ACT_NAT_DST, ACT_NAT_SRC } from './features';

/** Bytes 8..13 of an entry: ports (4), protocol, pattern. */
const WKEY1_MASK: u64 = 0xffff_ffff_ffff;

// @ts-ignore: decorator
@inline export function wcSlot(i: u32): usize {
  return wcBase + <usize>i * WC_SIZE;
}

// @ts-ignore: decorator
@inline function expired(e: usize, now: u32): bool {
  return <i32>(load<u32>(e, W_EXPIRY) - now) <= 0;
}

/**
 * Best live wildcard matching the packet key (wire order; ports = raw sport | dport << 16), or 0.
 * precLimit: only service precedences < precLimit (0x10000 = all). onlyFirst: only search-first ones.
 */
export function wcLookup(saddr: u32, daddr: u32, ports: u32, proto: u32, now: u32, precLimit: u32, onlyFirst: bool): usize {
  let best: usize = 0;
  let bestSp: i32 = -1;
  let bestBp: u32 = 0;
  const n = patternCount;
  const slots = wcSlots;
  for (let a: u32 = 0; a < n; a++) {
    const pid = <u32>load<u8>(ACTIVE_PATTERNS + a);
    const pp = PATTERNS + <usize>pid * PATTERN_SIZE;
    const k0 = <u64>(saddr & load<u32>(pp, P_SMASK)) | (<u64>(daddr & load<u32>(pp, P_DMASK)) << 32);
    const k1 = <u64>(ports & load<u32>(pp, P_PORT_MASK)) | (<u64>(proto & <u32>load<u8>(pp, P_PROTO_MASK)) << 32) | (<u64>pid << 40);
    let i = reduce(hashKey(k0, k1), slots);
    for (let m: u32 = 0; m < slots; m++) {
      const e = wcSlot(i);
      if (load<u8>(e, W_STATE) == 0) break;
      if (load<u64>(e) == k0 && (load<u64>(e, 8) & WKEY1_MASK) == k1 && !expired(e, now)) {
        const sp = <u32>load<u16>(e, W_SERVICE_PREC);
        if (sp < precLimit && (!onlyFirst || (load<u8>(e, W_PREC_FLAGS) & WP_SEARCH_FIRST))) {
          const bp = <u32>load<u16>(e, W_BACKUP_PREC);
          if (<i32>sp > bestSp || (<i32>sp == bestSp && bp < bestBp)) {
            best = e;
            bestSp = <i32>sp;
            bestBp = bp;
          }
        }
      }
      if (++i == slots) i = 0;
    }
  }
  return best;
}

/** A fixed affinity key is supported when a live wildcard matches it in either direction. */
export function wcSupports(saddr: u32, daddr: u32, ports: u32, proto: u32, now: u32): bool {
  if (wcLookup(saddr, daddr, ports, proto, now, 0x10000, false) != 0) return true;
  return wcLookup(daddr, saddr, (ports >>> 16) | (ports << 16), proto, now, 0x10000, false) != 0;
}

// ---- advertised prefixes ----------------------------------------------------------------------------

/** True when the destination (wire order) falls in an advertised prefix. */
// @ts-ignore: decorator
@inline export function advertised(daddr: u32): bool {
  const n = advertisedCount;
  for (let i: u32 = 0; i < n; i++) {
    const a = ADVERTISED + <usize>i * ADV_SIZE;
    if ((daddr & load<u32>(a, A_MASK)) == load<u32>(a, A_PREFIX)) return true;
  }
  return false;
}

function advAcquire(prefix: u32, mask: u32): bool {
  const n = advertisedCount;
  for (let i: u32 = 0; i < n; i++) {
    const a = ADVERTISED + <usize>i * ADV_SIZE;
    if (load<u32>(a, A_PREFIX) == prefix && load<u32>(a, A_MASK) == mask) {
      store<u32>(a, load<u32>(a, A_REFS) + 1, A_REFS);
      return true;
    }
  }
  if (n >= MAX_ADVERTISED) return false;
  const a = ADVERTISED + <usize>n * ADV_SIZE;
  store<u32>(a, prefix, A_PREFIX);
  store<u32>(a, mask, A_MASK);
  store<u32>(a, 1, A_REFS);
  setAdvertisedCount(n + 1);
  return true;
}

function advRelease(prefix: u32, mask: u32): void {
  const n = advertisedCount;
  for (let i: u32 = 0; i < n; i++) {
    const a = ADVERTISED + <usize>i * ADV_SIZE;
    if (load<u32>(a, A_PREFIX) == prefix && load<u32>(a, A_MASK) == mask) {
      const r = load<u32>(a, A_REFS) - 1;
      if (r > 0) {
        store<u32>(a, r, A_REFS);
      } else {
        const last = ADVERTISED + <usize>(n - 1) * ADV_SIZE;
        memory.copy(a, last, ADV_SIZE);
        memory.fill(last, 0, ADV_SIZE);
        setAdvertisedCount(n - 1);
      }
      return;
    }
  }
}

// ---- patterns ---------------------------------------------------------------------------------------

function rebuildActivePatterns(): void {
  let n: u32 = 0;
  for (let p: u32 = 0; p < MAX_PATTERNS; p++) {
    if (load<u16>(PATTERNS + <usize>p * PATTERN_SIZE, P_REFS) != 0) {
      store<u8>(ACTIVE_PATTERNS + n, <u8>p);
      n++;
    }
  }
  setPatternCount(n);
}

/** Pattern index with one more reference, or -1 when all MAX_PATTERNS are taken by other patterns. */
function patternAcquire(smask: u32, dmask: u32, portMask: u32, protoMask: u32): i32 {
  let free: i32 = -1;
  for (let p: u32 = 0; p < MAX_PATTERNS; p++) {
    const pp = PATTERNS + <usize>p * PATTERN_SIZE;
    const refs = <u32>load<u16>(pp, P_REFS);
    if (refs == 0) {
      if (free < 0) free = <i32>p;
      continue;
    }
    if (load<u32>(pp, P_SMASK) == smask && load<u32>(pp, P_DMASK) == dmask &&
        load<u32>(pp, P_PORT_MASK) == portMask && <u32>load<u8>(pp, P_PROTO_MASK) == protoMask) {
      store<u16>(pp, <u16>(refs + 1), P_REFS);
      return <i32>p;
    }
  }
  if (free < 0) return -1;
  const pp = PATTERNS + <usize>free * PATTERN_SIZE;
  store<u32>(pp, smask, P_SMASK);
  store<u32>(pp, dmask, P_DMASK);
  store<u32>(pp, portMask, P_PORT_MASK);
  store<u8>(pp, <u8>protoMask, P_PROTO_MASK);
  store<u16>(pp, 1, P_REFS);
  rebuildActivePatterns();
  return free;
}

function patternRelease(p: u32): void {
  const pp = PATTERNS + <usize>p * PATTERN_SIZE;
  const refs = <u32>load<u16>(pp, P_REFS);
  if (refs == 0) return;
  store<u16>(pp, <u16>(refs - 1), P_REFS);
  if (refs == 1) rebuildActivePatterns();
}

/** Drops the references an entry holds (pattern, advertised prefix, search-first count). */
function wcRelease(e: usize): void {
  patternRelease(<u32>load<u8>(e, W_PATTERN));
  if (<u32>load<u16>(e, W_ACTIONS) & ACT_ADVERTISE) advRelease(load<u32>(e, W_DADDR), load<u32>(e, W_DMASK));
  if (load<u8>(e, W_PREC_FLAGS) & WP_SEARCH_FIRST) setWcSearchFirst(wcSearchFirst - 1);
}

/** Removes slot i: releases its references, then backward-shifts the following run (no tombstones). */
export function wcRemoveAt(i: u32): void {
  wcRelease(wcSlot(i));
  const slots = wcSlots;
  let hole = i;
  let j = i;
  for (let m: u32 = 0; m < slots; m++) {
    j = j + 1 == slots ? 0 : j + 1;
    const e = wcSlot(j);
    if (load<u8>(e, W_STATE) == 0) break;
    const home = reduce(hashKey(load<u64>(e), load<u64>(e, 8) & WKEY1_MASK), slots);
    const dj = j >= home ? j - home : j + slots - home;
    const dh = j >= hole ? j - hole : j + slots - hole;
    if (dj >= dh) {
      memory.copy(wcSlot(hole), e, WC_SIZE);
      hole = j;
    }
  }
  memory.fill(wcSlot(hole), 0, WC_SIZE);
  setWcCount(wcCount - 1);
}

/** Installs, refreshes or (TTL 0) deletes the wildcard affinity in the control record. */
export function wcInstall(now: u32): i32 {
  const C = CONTROL;
  const smask = bswap<u32>(load<u32>(C, C_SMASK));
  const dmask = bswap<u32>(load<u32>(C, C_DMASK));
  const saddr = bswap<u32>(load<u32>(C, C_SADDR)) & smask;
  const daddr = bswap<u32>(load<u32>(C, C_DADDR)) & dmask;
  const sport = <u32>bswap<u16>(load<u16>(C, C_SPORT));
  const dport = <u32>bswap<u16>(load<u16>(C, C_DPORT));
  const proto = <u32>load<u8>(C, C_PROTO);
  const owner = <u32>load<u16>(C, C_OWNER);
  const ttl = load<u32>(C, C_TTL);
  const actions = <u32>load<u16>(C, C_ACTIONS);
  const imask = <u32>load<u16>(C, C_INTEREST_MASK);
  const precFlags = <u32>load<u8>(C, C_PREC_FLAGS);
  const portMask: u32 = (sport != 0 ? 0xffff : 0) | (dport != 0 ? 0xffff0000 : 0);
  const protoMask: u32 = proto != 0 ? 0xff : 0;
  const ports = sport | (dport << 16);

  if (ttl > MAX_TTL_SEC || (actions & ~ACT_ALL) || (precFlags & ~(<u32>WP_SEARCH_FIRST))) {
    bump(Counter.BAD_ARGUMENT);
    return Status.BAD_ARGUMENT;
  }
  if (ttl != 0 && (requiredCaps(actions, imask) & ~capabilities)) {
    bump(Counter.UNSUPPORTED_ACTION);
    return Status.UNSUPPORTED_ACTION;
  }

  // find the pattern without taking a reference (it may not exist yet)
  let pid: i32 = -1;
  for (let p: u32 = 0; p < MAX_PATTERNS; p++) {
    const pp = PATTERNS + <usize>p * PATTERN_SIZE;
    if (load<u16>(pp, P_REFS) != 0 && load<u32>(pp, P_SMASK) == smask && load<u32>(pp, P_DMASK) == dmask &&
        load<u32>(pp, P_PORT_MASK) == portMask && <u32>load<u8>(pp, P_PROTO_MASK) == protoMask) {
      pid = <i32>p;
      break;
    }
  }

  const slots = wcSlots;
  let found: i32 = -1;
  let reuse: i32 = -1;
  let empty: i32 = -1;
  if (pid >= 0) {
    const k0 = <u64>saddr | (<u64>daddr << 32);
    const k1 = <u64>ports | (<u64>proto << 32) | (<u64>pid << 40);
    let i = reduce(hashKey(k0, k1), slots);
    for (let m: u32 = 0; m < slots; m++) {
      const e = wcSlot(i);
      if (load<u8>(e, W_STATE) == 0) {
        empty = <i32>i;
        break;
      }
      if (load<u64>(e) == k0 && (load<u64>(e, 8) & WKEY1_MASK) == k1 && <u32>load<u16>(e, W_OWNER) == owner) {
        found = <i32>i;
        break;
      }
      if (reuse < 0 && expired(e, now)) reuse = <i32>i;
      if (++i == slots) i = 0;
    }
  }

  if (ttl == 0) {
    if (found < 0) return Status.NOT_FOUND;
    wcRemoveAt(<u32>found);
    bump(Counter.WILDCARD_DELETES);
    return Status.OK;
  }

  const adv = (actions & ACT_ADVERTISE) != 0;
  let e: usize;
  if (found >= 0) {
    e = wcSlot(<u32>found);
    // take the new references before dropping the old ones
    if (adv && !advAcquire(daddr, dmask)) {
      bump(Counter.WILDCARD_TABLE_FULL);
      return Status.TABLE_FULL;
    }
    patternAcquire(smask, dmask, portMask, protoMask); // balanced by wcRelease below
    wcRelease(e);
    bump(Counter.WILDCARD_UPDATES);
  } else {
    // (a new pattern's key was never probed: any free slot will do while under capacity)
    if (reuse < 0 && ((pid >= 0 && empty < 0) || wcCount >= wcCapacity)) {
      bump(Counter.WILDCARD_TABLE_FULL);
      return Status.TABLE_FULL;
    }
    const np = patternAcquire(smask, dmask, portMask, protoMask);
    if (np < 0) {
      bump(Counter.WILDCARD_TABLE_FULL);
      return Status.PATTERN_LIMIT;
    }
    if (adv && !advAcquire(daddr, dmask)) {
      patternRelease(<u32>np);
      bump(Counter.WILDCARD_TABLE_FULL);
      return Status.TABLE_FULL;
    }
    if (pid < 0) {
      // new pattern: its key was never probed; find the slot now
      pid = np;
      const k0 = <u64>saddr | (<u64>daddr << 32);
      const k1 = <u64>ports | (<u64>proto << 32) | (<u64>pid << 40);
      let i = reduce(hashKey(k0, k1), slots);
      for (let m: u32 = 0; m < slots; m++) {
        const x = wcSlot(i);
        if (load<u8>(x, W_STATE) == 0) {
          empty = <i32>i;
          break;
        }
        if (reuse < 0 && expired(x, now)) reuse = <i32>i;
        if (++i == slots) i = 0;
      }
    }
    if (reuse >= 0) {
      e = wcSlot(<u32>reuse);
      wcRelease(e);
      bump(Counter.WILDCARD_EXPIRED);
    } else {
      e = wcSlot(<u32>empty);
      setWcCount(wcCount + 1);
    }
    store<u32>(e, 0, W_HITS);
    bump(Counter.WILDCARD_INSTALLS);
  }

  store<u32>(e, saddr, W_SADDR);
  store<u32>(e, daddr, W_DADDR);
  store<u16>(e, <u16>sport, W_SPORT);
  store<u16>(e, <u16>dport, W_DPORT);
  store<u8>(e, <u8>proto, W_PROTO);
  store<u8>(e, <u8>pid, W_PATTERN);
  store<u16>(e, <u16>actions, W_ACTIONS);
  store<u32>(e, now + ttl * 1000, W_EXPIRY);
  const natDst = (actions & ACT_NAT_DST) != 0;
  const natSrc = (actions & ACT_NAT_SRC) != 0;
  store<u32>(e, bswap<u32>(natDst ? load<u32>(C, C_NAT_DST_ADDR) : load<u32>(C, C_NAT_SRC_ADDR)), W_NAT_ADDR);
  store<u16>(e, bswap<u16>(natDst ? load<u16>(C, C_NAT_DST_PORT) : load<u16>(C, C_NAT_SRC_PORT)), W_NAT_PORT);
  store<u32>(e, bswap<u32>(natDst && natSrc ? load<u32>(C, C_NAT_SRC_ADDR) : 0), W_SRC_NAT_ADDR);
  store<u16>(e, bswap<u16>(natDst && natSrc ? load<u16>(C, C_NAT_SRC_PORT) : 0), W_SRC_NAT_PORT);
  store<u32>(e, bswap<u32>(load<u32>(C, C_FORWARD_IP)), W_FORWARD_IP);
  store<u16>(e, <u16>imask, W_INTEREST_MASK);
  store<u16>(e, load<u16>(C, C_INTEREST_TARGET), W_INTEREST_TARGET);
  store<u16>(e, <u16>owner, W_OWNER);
  store<u8>(e, ST_LIVE, W_STATE);
  store<u8>(e, <u8>precFlags, W_PREC_FLAGS);
  store<u16>(e, load<u16>(C, C_SERVICE_PREC), W_SERVICE_PREC);
  store<u16>(e, load<u16>(C, C_BACKUP_PREC), W_BACKUP_PREC);
  store<u32>(e, smask, W_SMASK);
  store<u32>(e, dmask, W_DMASK);
  if (precFlags & WP_SEARCH_FIRST) setWcSearchFirst(wcSearchFirst + 1);
  return Status.OK;
}

/** Bounded sweep of expired wildcards; returns how many were removed. */
export function wcSweep(now: u32, budget: u32): u32 {
  const slots = wcSlots;
  if (slots == 0) return 0;
  let i = wcSweepCursor;
  if (i >= slots) i = 0;
  let removed: u32 = 0;
  const n = budget < slots ? budget : slots;
  for (let m: u32 = 0; m < n; m++) {
    const e = wcSlot(i);
    if (load<u8>(e, W_STATE) != 0 && expired(e, now)) {
      wcRemoveAt(i);
      bump(Counter.WILDCARD_EXPIRED);
      removed++;
    } else {
      i = i + 1 == slots ? 0 : i + 1;
    }
  }
  setWcSweepCursor(i);
  return removed;
}

/** Removes every wildcard of an owner; returns how many. */
export function wcDeleteByOwner(owner: u32): u32 {
  const slots = wcSlots;
  let removed: u32 = 0;
  for (let i: u32 = 0; i < slots; i++) {
    for (let guard: u32 = 0; guard < slots; guard++) {
      const e = wcSlot(i);
      if (load<u8>(e, W_STATE) == 0 || <u32>load<u16>(e, W_OWNER) != owner) break;
      wcRemoveAt(i);
      bump(Counter.WILDCARD_DELETES);
      removed++;
    }
  }
  return removed;
}
