// The exported ABI of the forwarding agent firmware, and nothing else.
// Host side: host/agent/wasm.ts. Every control entry point returns a Status (assembly/status.ts).
//
// Hot exports (never allocate, never grow memory; checked by test/assembly/wasm-structure.test.ts):
//   process, tick, lookupFixed.

import { Status } from './status';
import { BATCH_MAX, LAYOUT, initLayout, ready, capabilities } from './layout';
import { processBatch } from './batch';
import { fixedDelete, fixedDeleteByOwner, fixedInstall, fixedLookup, fixedSweep } from './fixed';
import { wcDeleteByOwner, wcInstall, wcSweep } from './wildcard';

/** The host clock in ms (a double from Date.now() or a replay clock), reduced to the u32 the tables use. */
// @ts-ignore: decorator
@inline function ms(nowMs: f64): u32 {
  return <u32><i64>nowMs;
}

/** Carves the memory map; see layout.ts. Returns OK, BAD_ARGUMENT or NO_MEMORY. */
export function init(budgetBytes: u32, fixedWanted: u32, wildcardWanted: u32, extWanted: u32, seed: u32, disabledCaps: u32): i32 {
  return initLayout(budgetBytes, fixedWanted, wildcardWanted, extWanted, seed, disabledCaps);
}

/** Address of the layout record (u32 words, L_* in layout.ts). Valid before init (zeros). */
export function layout(): usize {
  return LAYOUT;
}

/** Capability bits (CAP_* in features.ts) of this build and init. */
export function getCapabilities(): u32 {
  return capabilities;
}

/** Runs descriptors [0, count) of the batch region. */
export function process(count: u32, nowMs: f64): i32 {
  if (!ready) return Status.NOT_INITIALIZED;
  if (count > BATCH_MAX) return Status.BAD_ARGUMENT;
  processBatch(count, ms(nowMs));
  return Status.OK;
}

/** Sweeps up to `budget` fixed slots (and as many wildcard slots) for expired entries; returns how many were removed. */
export function tick(nowMs: f64, budget: u32): u32 {
  if (!ready) return 0;
  const now = ms(nowMs);
  return fixedSweep(now, budget) + wcSweep(now, budget);
}

export function installFixed(nowMs: f64): i32 {
  if (!ready) return Status.NOT_INITIALIZED;
  return fixedInstall(ms(nowMs));
}

export function deleteFixed(): i32 {
  if (!ready) return Status.NOT_INITIALIZED;
  return fixedDelete();
}

export function lookupFixed(nowMs: f64): i32 {
  if (!ready) return Status.NOT_INITIALIZED;
  return fixedLookup(ms(nowMs));
}

export function installWildcard(nowMs: f64): i32 {
  if (!ready) return Status.NOT_INITIALIZED;
  return wcInstall(ms(nowMs));
}

/** Removes every fixed and wildcard affinity of a manager; returns how many. */
export function deleteByOwner(owner: u32): u32 {
  if (!ready) return 0;
  return fixedDeleteByOwner(owner) + wcDeleteByOwner(owner);
}
