// The manager's fixed affinity store: one record per flow, reachable by the affinity key of either
// direction (client → VIP, and backend → client), with the timers of the design.
//
// Timers (defaults from DESIGN.md, all configurable):
//   agent fixed TTL           10 s   the TTL sent to the agent with every fixed affinity
//   manager expiry            agent TTL + 4 s, so the agent always forgets first and asks again
//   backup expiry             the primary's remaining expiry + 0.5 s (replication delay)
//   sticky after FIN/RST      2 s on the agent (+ the same 4 s slack here), so the final ACK/RST
//                             still reaches the same backend
//
// Invariants:
//   - Both directions of a flow map to the same record; a record is in the affinity index under
//     exactly its two keys (open addressing on the 5-tuple, no key strings) and in the expiry heap
//     exactly once (heapIndex), until it expires or is removed.
//   - Expiry is an indexed binary min-heap on expiresAt: renew and close move one record in
//     O(log n); `expire(now)` pops only what is due. No per-tick scan, so 1M flows cost nothing
//     while idle.
//   - Time comes from the injected clock (`now()`, milliseconds), never from Date directly.
//   - `version` grows on every change a primary makes (create, renew, close) and is carried by
//     replication: a backup keeps the highest version it has seen of a key, so a late, older
//     replication never overwrites a newer one. A backup's clock follows the highest version it
//     has seen, so after takeover its own changes are newer than anything the old primary sent
//     (an old primary returns as backup and resyncs before it may lead again).

import type { Backend, Balancer, FlowKey } from './decision.ts';

export type ForwardingMode = 'nat' | 'dispatch';
export type FlowState = 'active' | 'closing';
export type CloseReason = 'fin' | 'rst';

export interface StoreTimers {
  /** TTL the agent gets with each fixed affinity (ms). */
  readonly agentFixedTtlMs: number;
  /** Manager expiry = agent TTL + this (ms). */
  readonly expirySlackMs: number;
  /** Backup expiry = primary's remaining expiry + this (ms). */
  readonly backupSlackMs: number;
  /** Agent TTL after FIN/RST (ms); the manager keeps the flow expirySlackMs longer. */
  readonly stickyMs: number;
}

export const DEFAULT_STORE_TIMERS: StoreTimers = {
  agentFixedTtlMs: 10_000,
  expirySlackMs: 4_000,
  backupSlackMs: 500,
  stickyMs: 2_000,
};

/** A flow as the store holds it. Fields other than state/expiry/version never change. */
export interface AffinityFlow {
  readonly proto: number;
  readonly clientIp: number;
  readonly clientPort: number;
  readonly vipIp: number;
  readonly vipPort: number;
  readonly backend: Backend;
  readonly mode: ForwardingMode;
  /** Identity of the manager that placed the flow (changes only on takeover, see adoptAll). */
  readonly owner: string;
  readonly state: FlowState;
  /** Manager expiry on the store's clock (ms). */
  readonly expiresAt: number;
  readonly version: number;
  readonly createdAt: number;
}

/** One direction's fixed affinity: the key the agent matches and what it does to the packet. */
export interface DirectionAffinity {
  readonly key: FlowKey;
  /** NAT rewrite (new source and/or destination); null when the packet is not rewritten. */
  readonly rewrite: {
    readonly srcIp?: number;
    readonly srcPort?: number;
    readonly dstIp?: number;
    readonly dstPort?: number;
  } | null;
  /** Dispatch mode: forward unchanged to this next hop (the backend). */
  readonly dispatchTo: number | null;
}

export interface FlowAffinities {
  /** client → VIP: DNAT to the backend (nat) or dispatch to the backend (dispatch). */
  readonly toBackend: DirectionAffinity;
  /** return traffic: backend → client, SNAT back to the VIP (nat); VIP → client untouched (dispatch). */
  readonly toClient: DirectionAffinity;
}

/** Something the caller must (re-)send to the agent: both fixed affinities of a flow with a TTL. */
export interface AffinityUpdate {
  readonly flow: AffinityFlow;
  readonly agentTtlMs: number;
}

export interface NewFlow {
  /** The first packet's key, client → VIP. */
  readonly key: FlowKey;
  readonly backend: Backend;
  readonly mode: ForwardingMode;
  readonly owner: string;
}

/** A flow as replication carries it (the primary's record; its expiry travels as remaining TTL). */
export type ReplicatedAffinity = Omit<AffinityFlow, 'expiresAt' | 'createdAt'>;

export type ReplicationOutcome = 'inserted' | 'updated' | 'stale' | 'removed' | 'absent';

export interface AffinityStoreOptions {
  readonly now: () => number;
  readonly timers?: Partial<StoreTimers>;
}

export class StoreError extends Error {
  readonly code: 'BAD_TIMER' | 'KEY_CONFLICT';
  constructor(code: StoreError['code'], message: string) {
    super(message);
    this.name = 'StoreError';
    this.code = code;
  }
}

/** The two fixed affinities of a flow, derived from the record (the NAT data). */
export function flowAffinities(flow: AffinityFlow): FlowAffinities {
  const b = flow.backend;
  if (flow.mode === 'nat') {
    return {
      toBackend: {
        key: { proto: flow.proto, srcIp: flow.clientIp, srcPort: flow.clientPort, dstIp: flow.vipIp, dstPort: flow.vipPort },
        rewrite: { dstIp: b.ip, dstPort: b.port },
        dispatchTo: null,
      },
      toClient: {
        key: { proto: flow.proto, srcIp: b.ip, srcPort: b.port, dstIp: flow.clientIp, dstPort: flow.clientPort },
        rewrite: { srcIp: flow.vipIp, srcPort: flow.vipPort },
        dispatchTo: null,
      },
    };
  }
  return {
    toBackend: {
      key: { proto: flow.proto, srcIp: flow.clientIp, srcPort: flow.clientPort, dstIp: flow.vipIp, dstPort: flow.vipPort },
      rewrite: null,
      dispatchTo: b.ip,
    },
    toClient: {
      key: { proto: flow.proto, srcIp: flow.vipIp, srcPort: flow.vipPort, dstIp: flow.clientIp, dstPort: flow.clientPort },
      rewrite: null,
      dispatchTo: null,
    },
  };
}

class FlowRecord implements AffinityFlow {
  state: FlowState;
  expiresAt: number;
  version: number;
  owner: string;
  backend: Backend;
  heapIndex = -1;
  /** Source of the return direction's key (its destination is the client): backend (nat) or VIP (dispatch). */
  readonly returnSrcIp: number;
  readonly returnSrcPort: number;

  constructor(
    readonly proto: number,
    readonly clientIp: number,
    readonly clientPort: number,
    readonly vipIp: number,
    readonly vipPort: number,
    backend: Backend,
    readonly mode: ForwardingMode,
    owner: string,
    state: FlowState,
    expiresAt: number,
    version: number,
    readonly createdAt: number,
  ) {
    this.backend = backend;
    this.owner = owner;
    this.state = state;
    this.expiresAt = expiresAt;
    this.version = version;
    this.returnSrcIp = mode === 'nat' ? backend.ip : vipIp;
    this.returnSrcPort = mode === 'nat' ? backend.port : vipPort;
  }
}


// ---------------------------------------------------------------------------------------------
// The affinity index: open addressing with linear probing over two slots per flow (one per
// direction). No key strings are built: a lookup hashes the 5-tuple and compares fields. Deletion
// shifts the following run back (no tombstones), so probe runs stay short under churn.

const DIR_FORWARD = 0;
const DIR_REVERSE = 1;

function hashKey(proto: number, srcIp: number, srcPort: number, dstIp: number, dstPort: number): number {
  let h = Math.imul(srcIp ^ ((srcPort << 16) | dstPort), 0x9e3779b1);
  h ^= Math.imul(dstIp ^ (proto << 24), 0x85ebca77);
  h ^= h >>> 15;
  h = Math.imul(h, 0xc2b2ae3d);
  h ^= h >>> 13;
  return h >>> 0;
}

class AffinityIndex {
  private records: (FlowRecord | null)[];
  private dirs: Uint8Array;
  private hashes: Uint32Array;
  private mask: number;
  private used = 0;

  constructor(capacity = 1024) {
    this.records = new Array<FlowRecord | null>(capacity).fill(null);
    this.dirs = new Uint8Array(capacity);
    this.hashes = new Uint32Array(capacity);
    this.mask = capacity - 1;
  }

  get(proto: number, srcIp: number, srcPort: number, dstIp: number, dstPort: number): FlowRecord | undefined {
    const h = hashKey(proto, srcIp, srcPort, dstIp, dstPort);
    const hashes = this.hashes;
    let i = h & this.mask;
    for (;;) {
      const r = this.records[i];
      if (r === null || r === undefined) return undefined;
      // The stored hash first: a slot of another key is passed over without touching its record.
      if (hashes[i] === h && r.proto === proto) {
        if (this.dirs[i] === DIR_FORWARD) {
          if (r.clientIp === srcIp && r.clientPort === srcPort && r.vipIp === dstIp && r.vipPort === dstPort) return r;
        } else if (r.returnSrcIp === srcIp && r.returnSrcPort === srcPort && r.clientIp === dstIp && r.clientPort === dstPort) {
          return r;
        }
      }
      i = (i + 1) & this.mask;
    }
  }

  /** Adds both directions of a record (the caller checked that neither key is held). */
  add(record: FlowRecord): void {
    if ((this.used + 2) * 2 > this.records.length) this.grow();
    this.put(record, DIR_FORWARD);
    this.put(record, DIR_REVERSE);
  }

  remove(record: FlowRecord): void {
    this.removeSlot(record, DIR_FORWARD);
    this.removeSlot(record, DIR_REVERSE);
  }

  private hashOf(record: FlowRecord, dir: number): number {
    return dir === DIR_FORWARD
      ? hashKey(record.proto, record.clientIp, record.clientPort, record.vipIp, record.vipPort)
      : hashKey(record.proto, record.returnSrcIp, record.returnSrcPort, record.clientIp, record.clientPort);
  }

  private put(record: FlowRecord, dir: number, h = this.hashOf(record, dir)): void {
    let i = h & this.mask;
    while (this.records[i] !== null) i = (i + 1) & this.mask;
    this.records[i] = record;
    this.dirs[i] = dir;
    this.hashes[i] = h;
    this.used++;
  }

  private removeSlot(record: FlowRecord, dir: number): void {
    const mask = this.mask;
    let i = this.hashOf(record, dir) & mask;
    for (;;) {
      const r = this.records[i];
      if (r === null || r === undefined) return;
      if (r === record && this.dirs[i] === dir) break;
      i = (i + 1) & mask;
    }
    // Backward-shift deletion: move later entries of the run into the hole when their home
    // slot is not between the hole and where they sit.
    let j = i;
    for (;;) {
      j = (j + 1) & mask;
      const r = this.records[j];
      if (r === null || r === undefined) break;
      const home = this.hashes[j]! & mask;
      const stays = i <= j ? i < home && home <= j : i < home || home <= j;
      if (stays) continue;
      this.records[i] = r;
      this.dirs[i] = this.dirs[j]!;
      this.hashes[i] = this.hashes[j]!;
      i = j;
    }
    this.records[i] = null;
    this.used--;
  }

  private grow(): void {
    const old = this.records;
    const oldDirs = this.dirs;
    const oldHashes = this.hashes;
    const capacity = old.length * 2;
    this.records = new Array<FlowRecord | null>(capacity).fill(null);
    this.dirs = new Uint8Array(capacity);
    this.hashes = new Uint32Array(capacity);
    this.mask = capacity - 1;
    this.used = 0;
    for (let k = 0; k < old.length; k++) {
      const r = old[k];
      if (r) this.put(r, oldDirs[k]!, oldHashes[k]!);
    }
  }
}

export class AffinityStore {
  readonly timers: StoreTimers;
  private readonly now: () => number;
  private readonly index = new AffinityIndex();
  private readonly heap: FlowRecord[] = [];
  private readonly perBackend = new Map<string, number>();
  private versionClock = 0;

  constructor(options: AffinityStoreOptions) {
    this.now = options.now;
    this.timers = { ...DEFAULT_STORE_TIMERS, ...options.timers };
    for (const [name, value] of Object.entries(this.timers)) {
      if (!Number.isFinite(value) || value < 0) throw new StoreError('BAD_TIMER', `timer ${name} must be ≥ 0 ms`);
    }
    if (this.timers.agentFixedTtlMs <= 0) throw new StoreError('BAD_TIMER', 'agentFixedTtlMs must be > 0');
  }

  /** Number of flows held. */
  get size(): number {
    return this.heap.length;
  }

  /** The flow owning this affinity key (either direction), if any. */
  lookup(key: FlowKey): AffinityFlow | undefined {
    return this.find(key);
  }

  /**
   * Records a new flow decided by this manager (client → VIP key, chosen backend). When the key
   * already belongs to a flow (duplicate SYN, retransmit, another UDP datagram), nothing changes
   * and the existing flow comes back with created = false: the caller re-sends it, not a new pick.
   */
  insert(flow: NewFlow): { readonly flow: AffinityFlow; readonly created: boolean; readonly update: AffinityUpdate } {
    const existing = this.find(flow.key);
    if (existing) return { flow: existing, created: false, update: this.resendOf(existing) };
    const update = this.insertAbsent(flow);
    return { flow: update.flow, created: true, update };
  }

  /** `insert` of a key the caller just found absent (admitFlow): the new flow's update. */
  insertAbsent(flow: NewFlow): AffinityUpdate {
    const now = this.now();
    const record = new FlowRecord(
      flow.key.proto,
      flow.key.srcIp,
      flow.key.srcPort,
      flow.key.dstIp,
      flow.key.dstPort,
      flow.backend,
      flow.mode,
      flow.owner,
      'active',
      now + this.timers.agentFixedTtlMs + this.timers.expirySlackMs,
      ++this.versionClock,
      now,
    );
    const clash = this.index.get(record.proto, record.returnSrcIp, record.returnSrcPort, record.clientIp, record.clientPort);
    if (clash) {
      // The return key is held by another flow: the same backend address:port already talks to
      // this client address:port. Refuse rather than corrupt the other flow.
      throw new StoreError('KEY_CONFLICT', `return affinity of ${flow.backend.id} already belongs to another flow`);
    }
    this.add(record);
    return { flow: record, agentTtlMs: this.timers.agentFixedTtlMs };
  }

  /**
   * Interest match (renewal, or any packet the agent reported) on an active flow: extends the
   * manager expiry and returns the update to re-send with a fresh agent TTL. On a closing flow the
   * expiry is not extended; the update carries the remaining sticky time. Unknown key: null.
   */
  renew(key: FlowKey): AffinityUpdate | null {
    const record = this.find(key);
    if (!record) return null;
    if (record.state === 'closing') return this.resendOf(record);
    this.setExpiry(record, this.now() + this.timers.agentFixedTtlMs + this.timers.expirySlackMs);
    record.version = ++this.versionClock;
    return { flow: record, agentTtlMs: this.timers.agentFixedTtlMs };
  }

  /** A new expiry, earlier or later (a replicated flow carries the backup slack: a renewal can lower it). */
  private setExpiry(record: FlowRecord, expiresAt: number): void {
    const before = record.expiresAt;
    record.expiresAt = expiresAt;
    if (expiresAt > before) this.siftDown(record.heapIndex);
    else this.siftUp(record.heapIndex);
  }

  /**
   * A closing flow whose connection goes on (a packet that opens nothing, after the sticky time): active
   * again on the same backend, with a fresh expiry. Unknown key: null.
   */
  reopen(key: FlowKey): AffinityUpdate | null {
    const record = this.find(key);
    if (!record) return null;
    record.state = 'active';
    this.setExpiry(record, this.now() + this.timers.agentFixedTtlMs + this.timers.expirySlackMs);
    record.version = ++this.versionClock;
    return { flow: record, agentTtlMs: this.timers.agentFixedTtlMs };
  }

  /**
   * FIN or RST interest match: the flow becomes closing and lives for the sticky time on the
   * agent (plus the slack here). A second FIN/RST never extends it. Unknown key: null.
   */
  close(key: FlowKey, _reason: CloseReason): AffinityUpdate | null {
    const record = this.find(key);
    if (!record) return null;
    if (record.state === 'closing') return this.resendOf(record);
    const expiresAt = this.now() + this.timers.stickyMs + this.timers.expirySlackMs;
    record.state = 'closing';
    record.version = ++this.versionClock;
    if (expiresAt < record.expiresAt) {
      record.expiresAt = expiresAt;
      this.siftUp(record.heapIndex);
    }
    return this.resendOf(record);
  }

  /** Removes a flow now (e.g. the agent denied it). Returns it so the balancer count goes down. */
  remove(key: FlowKey): AffinityFlow | undefined {
    const record = this.find(key);
    if (!record) return undefined;
    this.delete(record);
    return record;
  }

  /**
   * Removes every flow whose expiry is ≤ now (at most `limit`) and returns them, earliest first,
   * so the caller can end them on its balancer and stop tracking them.
   */
  expire(now: number = this.now(), limit = Number.POSITIVE_INFINITY): AffinityFlow[] {
    const out: AffinityFlow[] = [];
    while (this.heap.length > 0 && out.length < limit) {
      const top = this.heap[0]!;
      if (top.expiresAt > now) break;
      this.delete(top);
      out.push(top);
    }
    return out;
  }

  /** Earliest expiry in the store (to arm one timer), or undefined when empty. */
  nextExpiry(): number | undefined {
    return this.heap.length > 0 ? this.heap[0]!.expiresAt : undefined;
  }

  /** Time until the manager forgets this flow (ms, ≥ 0): what replication carries. */
  remainingTtl(flow: AffinityFlow): number {
    return Math.max(0, flow.expiresAt - this.now());
  }

  /**
   * Removes every flow placed on this backend (a VIP configured with unhealthyFlows: remove) and
   * returns them. O(flows): meant for rare health events, not the packet path.
   */
  removeByBackend(backendId: string): AffinityFlow[] {
    const doomed = this.heap.filter((r) => r.backend.id === backendId);
    for (const record of doomed) this.delete(record);
    return doomed;
  }

  /** Whether this flow (the object lookup/entries returned) is still held. */
  holds(flow: AffinityFlow): boolean {
    return flow instanceof FlowRecord && flow.heapIndex >= 0 && this.heap[flow.heapIndex] === flow;
  }

  /**
   * Every live flow, for periodic replication refresh and bulk resync. Do not change the store
   * while iterating; take a snapshot (`[...store.entries()]`) to spread work over time.
   */
  entries(): IterableIterator<AffinityFlow> {
    return this.heap.values();
  }

  /**
   * Backup side of replication. Stores (or replaces) the flow with expiry = now + remaining TTL +
   * backup slack. A replication older than what is held (lower version) is ignored ('stale'); a
   * remaining TTL ≤ 0 removes the flow ('removed', or 'absent' when it was not held). The
   * wildcard filter (store only what a held wildcard matches) is the caller's.
   */
  upsertReplicated(entry: ReplicatedAffinity, remainingTtlMs: number): ReplicationOutcome {
    if (entry.version > this.versionClock) this.versionClock = entry.version;
    const existing = this.index.get(entry.proto, entry.clientIp, entry.clientPort, entry.vipIp, entry.vipPort);
    if (existing && existing.version > entry.version) return 'stale';
    if (remainingTtlMs <= 0) {
      if (!existing) return 'absent';
      this.delete(existing);
      return 'removed';
    }
    const expiresAt = this.now() + remainingTtlMs + this.timers.backupSlackMs;
    if (existing && existing.backend.id === entry.backend.id && existing.mode === entry.mode) {
      existing.state = entry.state;
      existing.version = entry.version;
      existing.owner = entry.owner;
      const before = existing.expiresAt;
      existing.expiresAt = expiresAt;
      if (expiresAt > before) this.siftDown(existing.heapIndex);
      else this.siftUp(existing.heapIndex);
      return 'updated';
    }
    if (existing) this.delete(existing);
    const record = new FlowRecord(
      entry.proto,
      entry.clientIp,
      entry.clientPort,
      entry.vipIp,
      entry.vipPort,
      entry.backend,
      entry.mode,
      entry.owner,
      entry.state,
      expiresAt,
      entry.version,
      this.now(),
    );
    const clash = this.index.get(record.proto, record.returnSrcIp, record.returnSrcPort, record.clientIp, record.clientPort);
    if (clash) this.delete(clash); // the primary's view wins: it gave the return key to this flow
    this.add(record);
    return existing ? 'updated' : 'inserted';
  }

  /** Takeover: this manager now owns every flow it holds. Returns how many changed owner. */
  adoptAll(owner: string): number {
    let changed = 0;
    for (const record of this.heap) {
      if (record.owner !== owner) {
        record.owner = owner;
        record.version = ++this.versionClock;
        changed++;
      }
    }
    return changed;
  }

  /** Live flows per backend id (for metrics and the summary). */
  flowsPerBackend(): ReadonlyMap<string, number> {
    return this.perBackend;
  }

  /** Highest version issued or seen; a new primary continues above it. */
  get currentVersion(): number {
    return this.versionClock;
  }

  // -------------------------------------------------------------------------------------------

  private find(key: FlowKey): FlowRecord | undefined {
    return this.index.get(key.proto, key.srcIp, key.srcPort, key.dstIp, key.dstPort);
  }

  private resendOf(record: FlowRecord): AffinityUpdate {
    // The agent forgets expirySlackMs before the manager does, in both states.
    const ttl = Math.max(0, Math.min(this.timers.agentFixedTtlMs, record.expiresAt - this.now() - this.timers.expirySlackMs));
    return { flow: record, agentTtlMs: ttl };
  }

  private add(record: FlowRecord): void {
    this.index.add(record);
    record.heapIndex = this.heap.length;
    this.heap.push(record);
    this.siftUp(record.heapIndex);
    const id = record.backend.id;
    this.perBackend.set(id, (this.perBackend.get(id) ?? 0) + 1);
  }

  private delete(record: FlowRecord): void {
    this.index.remove(record);
    const i = record.heapIndex;
    const last = this.heap.pop()!;
    if (last !== record) {
      this.heap[i] = last;
      last.heapIndex = i;
      this.siftDown(i);
      this.siftUp(last.heapIndex);
    }
    record.heapIndex = -1;
    const id = record.backend.id;
    const n = (this.perBackend.get(id) ?? 1) - 1;
    if (n > 0) this.perBackend.set(id, n);
    else this.perBackend.delete(id);
  }

  private siftUp(i: number): void {
    const heap = this.heap;
    const item = heap[i]!;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = heap[parent]!;
      if (p.expiresAt <= item.expiresAt) break;
      heap[i] = p;
      p.heapIndex = i;
      i = parent;
    }
    heap[i] = item;
    item.heapIndex = i;
  }

  private siftDown(i: number): void {
    const heap = this.heap;
    const n = heap.length;
    const item = heap[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && heap[r]!.expiresAt < heap[l]!.expiresAt ? r : l;
      const child = heap[c]!;
      if (child.expiresAt >= item.expiresAt) break;
      heap[i] = child;
      child.heapIndex = i;
      i = c;
    }
    heap[i] = item;
    item.heapIndex = i;
  }
}

// ---------------------------------------------------------------------------------------------
// The new-flow path, store first: what a manager does with an interest match on a VIP wildcard.

export type Admission =
  /** The key already has a flow (duplicate SYN, retransmit, UDP from the same addr:port): renewed. */
  | { readonly kind: 'existing'; readonly update: AffinityUpdate }
  /** A new flow on the balancer's pick; the balancer counted it. */
  | { readonly kind: 'new'; readonly update: AffinityUpdate }
  /** No healthy backend: nothing stored; the caller lets the packet go (or denies). */
  | { readonly kind: 'no-backend' }
  /** The pick's return key belongs to another flow; nothing stored. */
  | { readonly kind: 'conflict'; readonly backend: Backend };

/**
 * Looks the key up first (stickiness; a closing flow past its sticky time counts only for a packet that
 * does not open a connection), else asks the balancer, stores the flow and commits it on
 * the balancer. The returned update is what to send to the agent (both directions, with its TTL).
 */
export function admitFlow(
  store: AffinityStore,
  balancer: Balancer,
  key: FlowKey,
  mode: ForwardingMode,
  owner: string,
  opensConnection = true,
): Admission {
  const renewed = store.renew(key);
  if (renewed) {
    if (renewed.flow.state === 'active' || renewed.agentTtlMs > 0) return { kind: 'existing', update: renewed };
    // A closing flow past its sticky time. A packet that opens a connection (a SYN) reuses the key for a
    // new one: a new pick. Any other packet is the old connection going on (the client reconnected from
    // the same port within the sticky time, or a late segment): it keeps its backend.
    if (!opensConnection) return { kind: 'existing', update: store.reopen(key)! };
    store.remove(key);
    balancer.onFlowEnd(renewed.flow.backend);
  }
  const backend = balancer.pick(key);
  if (!backend) return { kind: 'no-backend' };
  try {
    // renew() just found no flow under the key (or removed the stale one): no second lookup.
    const update = store.insertAbsent({ key, backend, mode, owner });
    balancer.onFlowStart(backend);
    return { kind: 'new', update };
  } catch (err) {
    if (err instanceof StoreError && err.code === 'KEY_CONFLICT') return { kind: 'conflict', backend };
    throw err;
  }
}

/**
 * Expires what is due and ends each flow on its VIP's balancer (looked up by the flow), so
 * weighted least connections sees the load go down. Returns the expired flows.
 */
export function expireFlows(
  store: AffinityStore,
  balancerOf: (flow: AffinityFlow) => Balancer | undefined,
  now?: number,
): AffinityFlow[] {
  const expired = store.expire(now);
  for (const flow of expired) balancerOf(flow)?.onFlowEnd(flow.backend);
  return expired;
}

// ---------------------------------------------------------------------------------------------
// Periodic replication refresh, spread over the period.

/**
 * Hands out every live flow once per period, a slice at a time in proportion to the time passed,
 * so a refresh of 1M flows is a steady trickle instead of a burst. Each period walks a snapshot
 * taken at its start; flows gone since are skipped, flows created since were replicated when they
 * were created and join the next period.
 */
export class RefreshCursor {
  private snapshot: AffinityFlow[] = [];
  private position = 0;
  private periodStart: number;

  constructor(
    private readonly store: AffinityStore,
    private readonly periodMs: number,
    now: number,
  ) {
    if (!(periodMs > 0)) throw new StoreError('BAD_TIMER', 'refresh period must be > 0 ms');
    this.periodStart = now;
    this.snapshot = [...store.entries()];
  }

  /** The flows to re-send now (live ones only). Call on any tick; the slice grows with the gap. */
  due(now: number): AffinityFlow[] {
    const out: AffinityFlow[] = [];
    for (;;) {
      const elapsed = now - this.periodStart;
      const target = elapsed >= this.periodMs ? this.snapshot.length : Math.ceil((this.snapshot.length * elapsed) / this.periodMs);
      while (this.position < target) {
        const flow = this.snapshot[this.position++]!;
        if (this.store.holds(flow)) out.push(flow);
      }
      if (elapsed < this.periodMs) return out;
      // Period over: the next one starts where this one should have ended.
      this.periodStart += this.periodMs;
      if (now - this.periodStart >= this.periodMs) this.periodStart = now; // after a long stall, no catch-up burst
      this.snapshot = [...this.store.entries()];
      this.position = 0;
      if (now === this.periodStart) return out;
    }
  }
}
