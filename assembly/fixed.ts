// Fixed affinity table: open addressing over fixedSlots x 48-byte entries (any slot count: the home slot
// is a multiply-shift of the hash), linear probe runs kept in Robin Hood order (an insert takes the place
// of the first entry closer to its own home, which is carried on), backward-shift deletion (no tombstones,
// so churn never lengthens runs), load capped at 90 %.
//
// Invariants: an entry sits in the contiguous non-empty run that starts at its home slot, at most
// fixedMaxDisp (< MAX_PROBE) slots after it, and runs are in Robin Hood order, so an install's existence
// scan stops early; a key is in the table at most once; an expired entry (serial compare of F_EXPIRY
// against now) never matches, is removed by the sweep, or - when an install finds the table at its load
// cap - by that install (on its probe path, else a bounded sweep). Slot indices reported to the host are
// valid until the next install/delete/tick.

import { Counter, bump } from './counters';
import { Status } from './status';
import { hashKey, reduce } from './hash';
import {
  ACT_ADVERTISE, ACT_ALL, ACT_DISPATCH, ACT_NAT_ANY, ACT_NAT_DST, ACT_NAT_SRC, ACT_SEQ_ADJUST, requiredCaps,
} from './features';
import {
  CONTROL, EXT_SIZE, FIXED_SIZE, F_ACTIONS, F_BYTES, F_EXPIRY, F_EXT, F_INTEREST_MASK, F_INTEREST_TARGET,
  F_NAT_ADDR, F_NAT_PORT, F_OWNER, F_PACKETS, F_STATE, ST_LIVE, X_ACK_DELTA, X_ACK_INIT, X_FORWARD_IP,
  X_NEXT_FREE, X_SEQ_DELTA, X_SEQ_INIT, X_SRC_ADDR, X_SRC_PORT, capabilities, extBase, extCount, extFree,
  fixedBase, fixedCapacity, fixedCount, fixedSlots, setExtCount, setExtFree, setFixedCount, setSweepCursor,
  sweepCursor, ST_FIRST_DATA_SEEN, fixedMaxDisp, setFixedMaxDisp,
} from './layout';
import {
  C_ACK_DELTA, C_ACK_INIT, C_ACTIONS, C_DADDR, C_DPORT, C_FORWARD_IP, C_INTEREST_MASK, C_INTEREST_TARGET,
  C_NAT_DST_ADDR, C_NAT_DST_PORT, C_NAT_SRC_ADDR, C_NAT_SRC_PORT, C_OWNER, C_PROTO, C_SADDR, C_SEQ_DELTA,
  C_SEQ_INIT, C_SPORT, C_TTL, MAX_TTL_SEC, O_ACK_DELTA, O_ACK_INIT, O_ACTIONS, O_BYTES, O_EXPIRY,
  O_FORWARD_IP, O_INTEREST_MASK, O_INTEREST_TARGET, O_NAT_DST_ADDR, O_NAT_DST_PORT, O_NAT_SRC_ADDR,
  O_NAT_SRC_PORT, O_OWNER, O_PACKETS, O_SEQ_DELTA, O_SEQ_INIT, O_SLOT, O_STATE,
} from './control';
import { wcSupports } from './wildcard';

/** Probe bound: at the 90 % load cap linear probing averages ~5.5 slots for a hit and ~50 for a miss;
 *  1024 is far in the tail, and keeps a pathological key set from turning a lookup into a table scan. */
export const MAX_PROBE: u32 = 1024;
/** Bytes 8..12 of an entry: ports (4) and protocol. */
export const KEY1_MASK: u64 = 0xff_ffff_ffff;
/** Slots an install examines for expired entries when the table is at its load cap. */
export const SWEEP_ON_FULL: u32 = 4096;

// @ts-ignore: decorator
@inline export function fixedSlot(i: u32): usize {
  return fixedBase + <usize>i * FIXED_SIZE;
}

// @ts-ignore: decorator
@inline export function isExpired(e: usize, now: u32): bool {
  return <i32>(load<u32>(e, F_EXPIRY) - now) <= 0;
}

/** The live bit of the state byte (13) in the u64 at offset 8 of an entry, and the mask that compares
 *  ports, protocol and that bit at once (an empty slot never equals a key). */
export const KEY1_LIVE: u64 = <u64>ST_LIVE << 40;
export const KEY1_LIVE_MASK: u64 = KEY1_MASK | KEY1_LIVE;
export const NO_SLOT: u32 = 0xffffffff;

/** The Robin Hood run from slot `home`: slot of the key (k1 with KEY1_LIVE, live or expired), else
 *  NO_SLOT at the first empty slot or after `bound` + 1 slots. */
export function fixedProbe(k0: u64, k1: u64, home: u32, slots: u32, bound: u32): u32 {
  let i = home;
  for (let n: u32 = 0; n <= bound; n++) {
    const e = fixedBase + <usize>i * FIXED_SIZE;
    const w8 = load<u64>(e, 8);
    if ((w8 & KEY1_LIVE) == 0) return NO_SLOT;
    if (((load<u64>(e) ^ k0) | ((w8 ^ k1) & KEY1_LIVE_MASK)) == 0) return i;
    i = i + 1 == slots ? 0 : i + 1;
  }
  return NO_SLOT;
}

/** Entry address of the live affinity with key (k0 = saddr | daddr << 32, k1 = ports | proto << 32), or 0. */
export function fixedFind(k0: u64, k1: u64, h: u32, now: u32): usize {
  const slots = fixedSlots;
  const i = fixedProbe(k0, k1 | KEY1_LIVE, reduce(h, slots), slots, fixedMaxDisp);
  if (i == NO_SLOT) return 0;
  const e = fixedBase + <usize>i * FIXED_SIZE;
  return isExpired(e, now) ? 0 : e;
}

function extRelease(e: usize): void {
  const x = load<u32>(e, F_EXT);
  if (x == 0) return;
  store<u32>(extBase + <usize>(x - 1) * EXT_SIZE, extFree, X_NEXT_FREE);
  setExtFree(x);
  setExtCount(extCount - 1);
  store<u32>(e, 0, F_EXT);
}

/**
 * Removes slot i and backward-shifts the rest of its run: in Robin Hood order every following entry that
 * is not at its home moves back one slot; the first empty slot or entry at its home ends the shift.
 */
export function fixedRemoveAt(i: u32): void {
  extRelease(fixedSlot(i));
  const slots = fixedSlots;
  let hole = i;
  let j = i + 1 == slots ? 0 : i + 1;
  for (let m: u32 = 0; m < slots; m++) {
    const e = fixedSlot(j);
    if (load<u8>(e, F_STATE) == 0) break;
    const home = reduce(hashKey(load<u64>(e), load<u64>(e, 8) & KEY1_MASK), slots);
    if (home == j) break;
    copy48(fixedSlot(hole), e);
    hole = j;
    j = j + 1 == slots ? 0 : j + 1;
  }
  const z = fixedSlot(hole);
  store<u64>(z, 0);
  store<u64>(z, 0, 8);
  store<u64>(z, 0, 16);
  store<u64>(z, 0, 24);
  store<u64>(z, 0, 32);
  store<u64>(z, 0, 40);
  setFixedCount(fixedCount - 1);
}

// @ts-ignore: decorator
@inline function controlKey0(): u64 {
  return <u64>bswap<u32>(load<u32>(CONTROL, C_SADDR)) | (<u64>bswap<u32>(load<u32>(CONTROL, C_DADDR)) << 32);
}
// @ts-ignore: decorator
@inline function controlKey1(): u64 {
  const ports = <u32>bswap<u16>(load<u16>(CONTROL, C_SPORT)) | (<u32>bswap<u16>(load<u16>(CONTROL, C_DPORT)) << 16);
  return <u64>ports | (<u64>load<u8>(CONTROL, C_PROTO) << 32);
}

/** Slot of key (live or expired), or -1. */
function findSlot(k0: u64, k1: u64): i32 {
  const slots = fixedSlots;
  let i = reduce(hashKey(k0, k1), slots);
  for (let n: u32 = 0; n <= fixedMaxDisp; n++) {
    const e = fixedSlot(i);
    if (load<u8>(e, F_STATE) == 0) return -1;
    if (load<u64>(e) == k0 && (load<u64>(e, 8) & KEY1_MASK) == k1) return <i32>i;
    i = i + 1 == slots ? 0 : i + 1;
  }
  return -1;
}


// @ts-ignore: decorator
@inline function copy48(dst: usize, src: usize): void {
  store<u64>(dst, load<u64>(src));
  store<u64>(dst, load<u64>(src, 8), 8);
  store<u64>(dst, load<u64>(src, 16), 16);
  store<u64>(dst, load<u64>(src, 24), 24);
  store<u64>(dst, load<u64>(src, 32), 32);
  store<u64>(dst, load<u64>(src, 40), 40);
}

/** Carried entry and swap buffer of the Robin Hood insertion. */
const CARRY: usize = memory.data(2 * 48, 16);

// @ts-ignore: decorator
@inline function homeOf(e: usize, slots: u32): u32 {
  return reduce(hashKey(load<u64>(e), load<u64>(e, 8) & KEY1_MASK), slots);
}

/**
 * Robin Hood insertion of a new key whose run ends at an empty slot: walking from the home slot, the
 * carried entry takes the place of the first entry that sits closer to its own home than the carried one
 * does, and that entry is carried on. Entries stay inside their run (lookups scan to the empty slot, so
 * they are unaffected) but displacements stay short even at 90 % load, which keeps every entry within
 * MAX_PROBE. A dry run first refuses (-1) an insert that would push any entry beyond MAX_PROBE, before
 * anything moves. Returns the slot the new key landed in, its key written and marked live.
 */
function robinHoodSlot(k0: u64, k1: u64, start: u32, startDist: u32): i32 {
  const slots = fixedSlots;
  let i = start;
  let d: u32 = startDist;
  if (d >= MAX_PROBE) return -1;
  for (let n: u32 = 0; n < slots; n++) {
    const e = fixedSlot(i);
    if (load<u8>(e, F_STATE) == 0) break;
    const h = homeOf(e, slots);
    const de = i >= h ? i - h : i + slots - h;
    if (de < d) d = de;
    if (++d >= MAX_PROBE) return -1;
    i = i + 1 == slots ? 0 : i + 1;
  }
  const carry = CARRY;
  const tmp = CARRY + FIXED_SIZE;
  memory.fill(carry, 0, FIXED_SIZE);
  store<u64>(carry, k0);
  store<u32>(carry, <u32>k1, 8);
  store<u8>(carry, <u8>(k1 >>> 32), 12);
  store<u8>(carry, ST_LIVE, F_STATE);
  let placed: i32 = -1;
  i = start;
  d = startDist;
  for (let n: u32 = 0; n < slots; n++) {
    const e = fixedSlot(i);
    if (load<u8>(e, F_STATE) == 0) {
      copy48(e, carry);
      if (placed < 0) placed = <i32>i;
      if (d > fixedMaxDisp) setFixedMaxDisp(d);
      break;
    }
    const h = homeOf(e, slots);
    const de = i >= h ? i - h : i + slots - h;
    if (de < d) {
      copy48(tmp, e);
      copy48(e, carry);
      copy48(carry, tmp);
      if (placed < 0) placed = <i32>i;
      if (d > fixedMaxDisp) setFixedMaxDisp(d);
      d = de;
    }
    d++;
    i = i + 1 == slots ? 0 : i + 1;
  }
  return placed;
}

/** Installs or refreshes (affinity update) the fixed affinity in the control record; TTL 0 deletes it. */
export function fixedInstall(now: u32): i32 {
  const C = CONTROL;
  const k0 = controlKey0();
  const k1 = controlKey1();
  const ttl = load<u32>(C, C_TTL);
  const actions = <u32>load<u16>(C, C_ACTIONS);
  const imask = <u32>load<u16>(C, C_INTEREST_MASK);

  if (ttl == 0) return fixedDelete();
  if (ttl > MAX_TTL_SEC || (actions & ~ACT_ALL) || (actions & ACT_ADVERTISE)) {
    bump(Counter.BAD_ARGUMENT);
    return Status.BAD_ARGUMENT;
  }
  if (requiredCaps(actions, imask) & ~capabilities) {
    bump(Counter.UNSUPPORTED_ACTION);
    return Status.UNSUPPORTED_ACTION;
  }
  if (!wcSupports(<u32>k0, <u32>(k0 >>> 32), <u32>k1, <u32>(k1 >>> 32), now)) {
    bump(Counter.FIXED_NO_WILDCARD);
    return Status.NO_WILDCARD;
  }

  const slots = fixedSlots;
  const home = reduce(hashKey(k0, k1), slots);
  let found: i32 = -1;
  let stop: u32 = home; // Robin Hood insertion point of an absent key
  let stopDist: u32 = 0;
  for (let attempt = 0; attempt < 3; attempt++) {
    // Robin Hood lookup: stops at the key, at an empty slot, or at an entry closer to its own home than
    // the key would be to its home (the key cannot be further on)
    found = -1;
    let expiredAt: i32 = -1;
    let i = home;
    let d: u32 = 0;
    for (; d < slots; d++) {
      const e = fixedSlot(i);
      if (load<u8>(e, F_STATE) == 0) break;
      if (load<u64>(e) == k0 && (load<u64>(e, 8) & KEY1_MASK) == k1) {
        found = <i32>i;
        break;
      }
      const h = homeOf(e, slots);
      if ((i >= h ? i - h : i + slots - h) < d) break;
      if (expiredAt < 0 && isExpired(e, now)) expiredAt = <i32>i;
      i = i + 1 == slots ? 0 : i + 1;
    }
    stop = i;
    stopDist = d;
    if (found >= 0 || fixedCount < fixedCapacity) break;
    // at the load cap: remove an expired entry on this probe path (backward shift keeps the Robin Hood
    // order), else sweep a bounded stretch for expired entries elsewhere; then look again
    if (expiredAt >= 0) {
      fixedRemoveAt(<u32>expiredAt);
      bump(Counter.FIXED_EXPIRED);
      continue;
    }
    if (attempt > 0 || fixedSweep(now, SWEEP_ON_FULL) == 0) break;
  }

  const needExt = (actions & ACT_SEQ_ADJUST) != 0 ||
    ((actions & ACT_NAT_SRC) != 0 && (actions & ACT_NAT_DST) != 0) ||
    ((actions & ACT_DISPATCH) != 0 && (actions & ACT_NAT_ANY) != 0);
  if (needExt && extFree == 0 && (found < 0 || load<u32>(fixedSlot(<u32>found), F_EXT) == 0)) {
    bump(Counter.FIXED_TABLE_FULL);
    return Status.TABLE_FULL;
  }

  let slot: i32;
  let fresh = true;
  if (found >= 0) {
    slot = found;
    fresh = isExpired(fixedSlot(<u32>found), now); // an expired key starts over: counters and state reset
  } else if (fixedCount < fixedCapacity) {
    slot = robinHoodSlot(k0, k1, stop, stopDist);
    if (slot < 0) {
      bump(Counter.FIXED_TABLE_FULL);
      return Status.TABLE_FULL;
    }
  } else {
    bump(Counter.FIXED_TABLE_FULL);
    return Status.TABLE_FULL;
  }
  const e = fixedSlot(<u32>slot);

  const occupied = found >= 0;
  let x = occupied ? load<u32>(e, F_EXT) : 0;
  if (needExt && x == 0) {
    x = extFree; // checked above
    setExtFree(load<u32>(extBase + <usize>(x - 1) * EXT_SIZE, X_NEXT_FREE));
    setExtCount(extCount + 1);
  } else if (!needExt && x != 0) {
    extRelease(e);
    x = 0;
  }

  if (found >= 0) {
    bump(Counter.FIXED_UPDATES);
  } else {
    setFixedCount(fixedCount + 1);
    bump(Counter.FIXED_INSTALLS);
  }

  store<u64>(e, k0);
  store<u32>(e, <u32>k1, 8);
  store<u8>(e, <u8>(k1 >>> 32), 12);
  const keepState = fresh ? 0 : load<u8>(e, F_STATE) & ST_FIRST_DATA_SEEN;
  store<u8>(e, ST_LIVE | keepState, F_STATE);
  store<u16>(e, <u16>actions, F_ACTIONS);
  store<u32>(e, now + ttl * 1000, F_EXPIRY);
  const natDst = (actions & ACT_NAT_DST) != 0;
  const natSrc = (actions & ACT_NAT_SRC) != 0;
  let primAddr: u32 = 0;
  let primPort: u16 = 0;
  if (natDst) {
    primAddr = load<u32>(C, C_NAT_DST_ADDR);
    primPort = load<u16>(C, C_NAT_DST_PORT);
  } else if (natSrc) {
    primAddr = load<u32>(C, C_NAT_SRC_ADDR);
    primPort = load<u16>(C, C_NAT_SRC_PORT);
  } else if (actions & ACT_DISPATCH) {
    primAddr = load<u32>(C, C_FORWARD_IP);
  }
  store<u32>(e, bswap<u32>(primAddr), F_NAT_ADDR);
  store<u16>(e, bswap<u16>(primPort), F_NAT_PORT);
  store<u16>(e, <u16>imask, F_INTEREST_MASK);
  store<u16>(e, load<u16>(C, C_INTEREST_TARGET), F_INTEREST_TARGET);
  store<u16>(e, load<u16>(C, C_OWNER), F_OWNER);
  store<u32>(e, x, F_EXT);
  if (fresh) {
    store<u32>(e, 0, F_PACKETS);
    store<u64>(e, 0, F_BYTES);
  }
  if (x != 0) {
    const xe = extBase + <usize>(x - 1) * EXT_SIZE;
    store<u32>(xe, natDst && natSrc ? bswap<u32>(load<u32>(C, C_NAT_SRC_ADDR)) : 0, X_SRC_ADDR);
    store<u16>(xe, natDst && natSrc ? bswap<u16>(load<u16>(C, C_NAT_SRC_PORT)) : 0, X_SRC_PORT);
    store<u32>(xe, bswap<u32>(load<u32>(C, C_FORWARD_IP)), X_FORWARD_IP);
    store<u32>(xe, load<u32>(C, C_SEQ_INIT), X_SEQ_INIT);
    store<u32>(xe, load<u32>(C, C_SEQ_DELTA), X_SEQ_DELTA);
    store<u32>(xe, load<u32>(C, C_ACK_INIT), X_ACK_INIT);
    store<u32>(xe, load<u32>(C, C_ACK_DELTA), X_ACK_DELTA);
    store<u32>(xe, 0, X_NEXT_FREE);
  }
  return Status.OK;
}

/** Deletes the fixed affinity whose key is in the control record. */
export function fixedDelete(): i32 {
  const s = findSlot(controlKey0(), controlKey1());
  if (s < 0) return Status.NOT_FOUND;
  fixedRemoveAt(<u32>s);
  bump(Counter.FIXED_DELETES);
  return Status.OK;
}

/** Looks up the live affinity with the control record's key; writes its state at CONTROL_OUT. */
export function fixedLookup(now: u32): i32 {
  const k0 = controlKey0();
  const k1 = controlKey1();
  const e = fixedFind(k0, k1, hashKey(k0, k1), now);
  if (e == 0) return Status.NOT_FOUND;
  const C = CONTROL;
  const actions = <u32>load<u16>(e, F_ACTIONS);
  const x = load<u32>(e, F_EXT);
  const xe = x != 0 ? extBase + <usize>(x - 1) * EXT_SIZE : 0;
  const natDst = (actions & ACT_NAT_DST) != 0;
  const natSrc = (actions & ACT_NAT_SRC) != 0;
  const primAddr = bswap<u32>(load<u32>(e, F_NAT_ADDR));
  const primPort = bswap<u16>(load<u16>(e, F_NAT_PORT));
  store<u32>(C, <u32>((e - fixedBase) / FIXED_SIZE), O_SLOT);
  store<u8>(C, load<u8>(e, F_STATE), O_STATE);
  store<u16>(C, <u16>actions, O_ACTIONS);
  store<u32>(C, load<u32>(e, F_EXPIRY), O_EXPIRY);
  store<u16>(C, load<u16>(e, F_OWNER), O_OWNER);
  store<u16>(C, load<u16>(e, F_INTEREST_MASK), O_INTEREST_MASK);
  store<u16>(C, load<u16>(e, F_INTEREST_TARGET), O_INTEREST_TARGET);
  store<u32>(C, natDst ? primAddr : 0, O_NAT_DST_ADDR);
  store<u16>(C, natDst ? primPort : 0, O_NAT_DST_PORT);
  store<u32>(C, natSrc ? (natDst ? bswap<u32>(load<u32>(xe, X_SRC_ADDR)) : primAddr) : 0, O_NAT_SRC_ADDR);
  store<u16>(C, natSrc ? (natDst ? bswap<u16>(load<u16>(xe, X_SRC_PORT)) : primPort) : 0, O_NAT_SRC_PORT);
  let fwd: u32 = 0;
  if (actions & ACT_DISPATCH) fwd = (actions & ACT_NAT_ANY) ? bswap<u32>(load<u32>(xe, X_FORWARD_IP)) : primAddr;
  store<u32>(C, fwd, O_FORWARD_IP);
  store<u32>(C, xe != 0 ? load<u32>(xe, X_SEQ_INIT) : 0, O_SEQ_INIT);
  store<u32>(C, xe != 0 ? load<u32>(xe, X_SEQ_DELTA) : 0, O_SEQ_DELTA);
  store<u32>(C, xe != 0 ? load<u32>(xe, X_ACK_INIT) : 0, O_ACK_INIT);
  store<u32>(C, xe != 0 ? load<u32>(xe, X_ACK_DELTA) : 0, O_ACK_DELTA);
  store<u32>(C, load<u32>(e, F_PACKETS), O_PACKETS);
  store<u64>(C, load<u64>(e, F_BYTES), O_BYTES);
  return Status.OK;
}

/** Bounded incremental sweep: examines up to `budget` slots from the cursor; returns how many expired. */
export function fixedSweep(now: u32, budget: u32): u32 {
  const slots = fixedSlots;
  if (slots == 0) return 0;
  let i = sweepCursor;
  if (i >= slots) i = 0;
  let removed: u32 = 0;
  const n = budget < slots ? budget : slots;
  for (let m: u32 = 0; m < n; m++) {
    const e = fixedSlot(i);
    if (load<u8>(e, F_STATE) != 0 && isExpired(e, now)) {
      fixedRemoveAt(i); // a later entry may shift into i: look at i again
      bump(Counter.FIXED_EXPIRED);
      removed++;
    } else {
      i = i + 1 == slots ? 0 : i + 1;
    }
  }
  setSweepCursor(i);
  return removed;
}

/** Removes every fixed affinity installed by `owner`; returns how many. */
export function fixedDeleteByOwner(owner: u32): u32 {
  const slots = fixedSlots;
  let removed: u32 = 0;
  for (let i: u32 = 0; i < slots; i++) {
    for (let guard: u32 = 0; guard < slots; guard++) {
      const e = fixedSlot(i);
      if (load<u8>(e, F_STATE) == 0 || <u32>load<u16>(e, F_OWNER) != owner) break;
      fixedRemoveAt(i);
      bump(Counter.FIXED_DELETES);
      removed++;
    }
  }
  return removed;
}
