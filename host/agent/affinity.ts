// Translation between the service protocol's affinities and the firmware's: units (ms → s TTLs),
// precedence direction (on the wire a higher backup precedence wins; in the firmware the lower),
// and the interned indices the firmware stores instead of addresses (owner, interest target).
import type { Endpoint } from '../transport/udp.ts';
import type * as P from '../protocol/index.ts';
import { FixedAffinityFlag } from '../protocol/index.ts';
import type { AffinityActions, FixedAffinity, WildcardAffinity } from './wasm.ts';

/** Interns values to small indices the firmware can store in 16 bits; index 0 is never used. */
export class Interner<T> {
  private readonly byKey = new Map<string, number>();
  private readonly values: T[] = [];

  constructor(
    private readonly keyOf: (v: T) => string,
    readonly limit = 0xffff,
  ) {}

  /** Index of `v`, adding it; undefined when the table is full. */
  intern(v: T): number | undefined {
    const k = this.keyOf(v);
    const found = this.byKey.get(k);
    if (found !== undefined) return found;
    if (this.values.length >= this.limit) return undefined;
    this.values.push(v);
    const idx = this.values.length;
    this.byKey.set(k, idx);
    return idx;
  }

  find(v: T): number | undefined {
    return this.byKey.get(this.keyOf(v));
  }

  get(index: number): T | undefined {
    return this.values[index - 1];
  }
}

export const endpointKey = (e: Endpoint): string => `${e.address}:${e.port}`;

/** Protocol TTL (ms) → firmware TTL (whole seconds, rounded up so a short TTL never becomes a delete). */
export function ttlSeconds(ttlMs: number): number {
  return ttlMs <= 0 ? 0 : Math.min(0xffff, Math.ceil(ttlMs / 1000));
}

/** Wire backup precedence (higher wins, u16) → firmware (lower wins). */
export function firmwareBackupPrecedence(wire: number): number {
  return 0xffff - (wire & 0xffff);
}

export class UnsupportedActionError extends Error {
  readonly code = 'UNSUPPORTED_ACTION';
}

/**
 * Actions of an affinity update in firmware form. `target` interns an interest address:port;
 * undefined from it (interest table full) surfaces as an unsupported action.
 */
export function firmwareActions(
  actions: readonly P.Action[],
  target: (e: Endpoint) => number | undefined,
  u32ToIp: (v: number) => string,
): AffinityActions & { advertise?: boolean } {
  const a: AffinityActions & { advertise?: boolean } = {};
  for (const act of actions) {
    switch (act.kind) {
      case 'nat':
        if (act.srcAddr !== undefined) a.natSrcAddr = act.srcAddr;
        if (act.srcPort !== undefined) a.natSrcPort = act.srcPort;
        if (act.dstAddr !== undefined) a.natDstAddr = act.dstAddr;
        if (act.dstPort !== undefined) a.natDstPort = act.dstPort;
        break;
      case 'sequence-adjust':
        a.seqAdjust = { seqInit: act.initialSeq, seqDelta: act.seqDelta, ackInit: act.initialAck, ackDelta: act.ackDelta };
        break;
      case 'dispatch':
        a.dispatch = act.nextHop;
        break;
      case 'advertise':
        a.advertise = true;
        break;
      case 'interest-criteria': {
        const t = target({ address: u32ToIp(act.addr), port: act.port });
        if (t === undefined) throw new UnsupportedActionError('interest target table full');
        a.interest = { mask: act.mask, target: t, data: act.data, copy: act.copy, hold: act.hold };
        break;
      }
    }
  }
  return a;
}

/**
 * `firmwareFixed(e, owner, firmwareActions(e.actions, …))` in one step and one object shape (every
 * action field present, undefined when unset), for the per-flow install path. `target` interns an
 * interest address (u32) and port; undefined (table full) throws UnsupportedActionError.
 */
export function firmwareFixedEntry(e: P.FixedEntry, owner: number, target: (addr: number, port: number) => number | undefined): FixedAffinity {
  let natSrcAddr: number | undefined;
  let natSrcPort: number | undefined;
  let natDstAddr: number | undefined;
  let natDstPort: number | undefined;
  let seqAdjust: FixedAffinity['seqAdjust'];
  let dispatch: number | undefined;
  let interest: FixedAffinity['interest'];
  const actions = e.actions;
  for (let i = 0; i < actions.length; i++) {
    const act = actions[i]!;
    switch (act.kind) {
      case 'nat':
        if (act.srcAddr !== undefined) natSrcAddr = act.srcAddr;
        if (act.srcPort !== undefined) natSrcPort = act.srcPort;
        if (act.dstAddr !== undefined) natDstAddr = act.dstAddr;
        if (act.dstPort !== undefined) natDstPort = act.dstPort;
        break;
      case 'sequence-adjust':
        seqAdjust = { seqInit: act.initialSeq, seqDelta: act.seqDelta, ackInit: act.initialAck, ackDelta: act.ackDelta };
        break;
      case 'dispatch':
        dispatch = act.nextHop;
        break;
      case 'advertise':
        break; // wildcards only; the firmware's fixed affinities have no use for it
      case 'interest-criteria': {
        const t = target(act.addr, act.port);
        if (t === undefined) throw new UnsupportedActionError('interest target table full');
        interest = { mask: act.mask, target: t, data: act.data, copy: act.copy, hold: act.hold };
        break;
      }
    }
  }
  const f = e.affinity;
  return {
    proto: f.protocol,
    saddr: f.srcAddr,
    daddr: f.dstAddr,
    sport: f.srcPort,
    dport: f.dstPort,
    ttlSec: ttlSeconds(f.ttlMs),
    owner,
    natSrcAddr,
    natSrcPort,
    natDstAddr,
    natDstPort,
    seqAdjust,
    dispatch,
    drop: undefined,
    info: (f.flags & FixedAffinityFlag.Information) !== 0 ? true : undefined,
    interest,
  };
}

export function firmwareWildcard(
  e: P.WildcardEntry,
  owner: number,
  servicePrecedence: P.ServicePrecedence | undefined,
  backupPrecedence: number | undefined,
  actions: AffinityActions & { advertise?: boolean },
): WildcardAffinity {
  const w = e.affinity;
  return {
    proto: w.protocol,
    saddr: w.srcAddr,
    smask: w.srcMask,
    daddr: w.dstAddr,
    dmask: w.dstMask,
    sport: w.srcPort,
    dport: w.dstPort,
    ttlSec: ttlSeconds(w.ttlMs),
    owner,
    servicePrecedence: servicePrecedence?.value ?? 0,
    searchFirst: servicePrecedence?.wildcardFirst ?? false,
    backupPrecedence: firmwareBackupPrecedence(backupPrecedence ?? 0),
    ...actions,
  };
}
