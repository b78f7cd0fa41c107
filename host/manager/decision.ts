// Load-balancing decisions: which backend gets a new flow.
//
// Three balancers share one interface:
//   - round robin: smooth weighted round robin (nginx's algorithm). With equal weights it is plain
//     round robin; with weights 5:1:1 it interleaves (a a b a c a a) instead of bursting.
//   - weighted least connections: the backend with the lowest (active flows + 1) / weight.
//   - Maglev consistent hashing (Eisenbud et al., NSDI 2016): a lookup table of prime size M,
//     filled from per-backend permutations (offset, skip from two hashes of the backend's id),
//     weights honoured; removing one of N backends moves about 1/N of the keys — while the table size
//     stays the same: it is the smallest prime ≥ max(65537, 100 × N), so above 655 backends a VIP whose
//     set changes gets another size and nearly every key moves (flows placed keep their backend through
//     the store; only re-placements, e.g. after a takeover, would differ).
//
// Invariants:
//   - `pick` never counts a flow: the caller commits a decision with `onFlowStart` and releases it
//     with `onFlowEnd` (when the fixed affinity expires), so a rejected pick costs nothing.
//   - An unhealthy backend, or one with weight 0 (draining), gets no new flows. With no eligible
//     backend `pick` returns null. Health and weight never touch flows already placed: the
//     affinity store keeps existing flows on their backend.
//   - Stickiness of one flow (duplicate SYNs, retransmits, UDP from the same client address and
//     port) is the affinity store's job: it is asked first. Maglev is deterministic on the flow
//     key anyway, so even without the store the same key maps to the same backend.
//   - Addresses are IPv4 held as unsigned 32-bit integers.

export type BalancerKind = 'rr' | 'wlc' | 'maglev';

export const BALANCER_KINDS: readonly BalancerKind[] = ['rr', 'wlc', 'maglev'];

/** IANA protocol numbers carried in affinity keys. */
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;

/** A real server behind a VIP. `id` is "address:port" and names the backend everywhere. */
export interface Backend {
  readonly id: string;
  readonly address: string;
  /** IPv4 address as an unsigned 32-bit integer. */
  readonly ip: number;
  readonly port: number;
  /** Relative share of new flows; 0 drains the backend (no new flows). */
  readonly weight: number;
}

/** The 5-tuple of a packet as the agent reports it; for a new flow: client → VIP. */
export interface FlowKey {
  readonly proto: number;
  readonly srcIp: number;
  readonly srcPort: number;
  readonly dstIp: number;
  readonly dstPort: number;
}

export interface BackendStatus {
  readonly backend: Backend;
  readonly healthy: boolean;
  /** Flows committed with onFlowStart and not yet ended. */
  readonly activeFlows: number;
}

export interface Balancer {
  readonly kind: BalancerKind;
  /** The backend for a new flow, or null when no backend is healthy (or all are drained). */
  pick(key: FlowKey): Backend | null;
  /** Commits a decision: one more active flow on this backend. */
  onFlowStart(backend: Backend): void;
  /** Releases a flow (its fixed affinity expired or was removed). */
  onFlowEnd(backend: Backend): void;
  /** Replaces the backend set. Backends that stay (same id) keep their health and flow counts. */
  setBackends(backends: readonly Backend[]): void;
  /** Marks a backend (by id) healthy or not. Unknown ids are ignored. */
  setHealth(backendId: string, healthy: boolean): void;
  status(): readonly BackendStatus[];
}

export class DecisionError extends Error {
  readonly code: 'BAD_ADDRESS' | 'BAD_BACKEND' | 'BAD_BALANCER';
  constructor(code: DecisionError['code'], message: string) {
    super(message);
    this.name = 'DecisionError';
    this.code = code;
  }
}

// ---------------------------------------------------------------------------------------------
// Addresses and keys

export function ipv4ToInt(address: string): number {
  const parts = address.split('.');
  if (parts.length !== 4) throw new DecisionError('BAD_ADDRESS', `not an IPv4 address: ${address}`);
  let value = 0;
  for (const part of parts) {
    if (!/^\d{1,3}$/.test(part)) throw new DecisionError('BAD_ADDRESS', `not an IPv4 address: ${address}`);
    const octet = Number(part);
    if (octet > 255) throw new DecisionError('BAD_ADDRESS', `not an IPv4 address: ${address}`);
    value = value * 256 + octet;
  }
  return value >>> 0;
}

export function intToIpv4(ip: number): string {
  return `${(ip >>> 24) & 255}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`;
}

export function makeBackend(address: string, port: number, weight = 1): Backend {
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new DecisionError('BAD_BACKEND', `backend port out of range: ${port}`);
  }
  if (!Number.isInteger(weight) || weight < 0) {
    throw new DecisionError('BAD_BACKEND', `backend weight must be an integer ≥ 0: ${weight}`);
  }
  return { id: `${address}:${port}`, address, ip: ipv4ToInt(address), port, weight };
}

/** 32-bit finaliser from MurmurHash3: full avalanche, cheap. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** FNV-1a over the UTF-16 code units of a string, seeded, then finalised. */
export function hashString(text: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return fmix32(h);
}

/** Deterministic hash of a flow's 5-tuple (no per-process seed: every manager agrees). */
export function hashFlowKey(key: FlowKey): number {
  let h = 0x9747b28c;
  h = fmix32(h ^ key.srcIp);
  h = fmix32(h ^ ((key.srcPort << 16) | (key.dstPort & 0xffff)));
  h = fmix32(h ^ key.dstIp);
  h = fmix32(h ^ key.proto);
  return h;
}

// ---------------------------------------------------------------------------------------------
// Shared bookkeeping: backend list, health, active flow counts.

interface Slot {
  backend: Backend;
  healthy: boolean;
  active: number;
  /** Smooth weighted round robin's running credit. */
  current: number;
}

abstract class BaseBalancer implements Balancer {
  abstract readonly kind: BalancerKind;
  protected slots: Slot[] = [];
  protected readonly byId = new Map<string, Slot>();
  /** Active flows of backends a setBackends removed (they drain): kept so a backend put back resumes its count. */
  private readonly retired = new Map<string, number>();

  constructor(backends: readonly Backend[]) {
    this.replaceSlots(backends);
  }

  abstract pick(key: FlowKey): Backend | null;

  /** Called after the slot list or any health changed. */
  protected abstract rebuild(): void;

  onFlowStart(backend: Backend): void {
    const slot = this.byId.get(backend.id);
    if (slot) slot.active++;
    // a backend not (or no longer) in the set (a replicated flow on it): counted for when it comes back
    else this.retired.set(backend.id, (this.retired.get(backend.id) ?? 0) + 1);
  }

  onFlowEnd(backend: Backend): void {
    const slot = this.byId.get(backend.id);
    if (slot) {
      if (slot.active > 0) slot.active--;
      return;
    }
    const n = this.retired.get(backend.id);
    if (n !== undefined) {
      if (n > 1) this.retired.set(backend.id, n - 1);
      else this.retired.delete(backend.id);
    }
  }

  setBackends(backends: readonly Backend[]): void {
    this.replaceSlots(backends);
    this.rebuild();
  }

  setHealth(backendId: string, healthy: boolean): void {
    const slot = this.byId.get(backendId);
    if (!slot || slot.healthy === healthy) return;
    slot.healthy = healthy;
    this.rebuild();
  }

  status(): readonly BackendStatus[] {
    return this.slots.map((s) => ({ backend: s.backend, healthy: s.healthy, activeFlows: s.active }));
  }

  protected eligible(slot: Slot): boolean {
    return slot.healthy && slot.backend.weight > 0;
  }

  private replaceSlots(backends: readonly Backend[]): void {
    const next: Slot[] = [];
    const seen = new Set<string>();
    for (const backend of backends) {
      if (seen.has(backend.id)) throw new DecisionError('BAD_BACKEND', `duplicate backend ${backend.id}`);
      seen.add(backend.id);
      const old = this.byId.get(backend.id);
      next.push({ backend, healthy: old ? old.healthy : true, active: old ? old.active : (this.retired.get(backend.id) ?? 0), current: 0 });
      this.retired.delete(backend.id);
    }
    for (const slot of this.slots) if (!seen.has(slot.backend.id) && slot.active > 0) this.retired.set(slot.backend.id, slot.active);
    this.slots = next;
    this.byId.clear();
    for (const slot of next) this.byId.set(slot.backend.id, slot);
  }
}

// ---------------------------------------------------------------------------------------------
// Round robin: smooth weighted round robin.

class RoundRobinBalancer extends BaseBalancer {
  readonly kind = 'rr' as const;

  constructor(backends: readonly Backend[]) {
    super(backends);
    this.rebuild();
  }

  pick(_key: FlowKey): Backend | null {
    let total = 0;
    let best: Slot | null = null;
    for (const slot of this.slots) {
      if (!this.eligible(slot)) continue;
      slot.current += slot.backend.weight;
      total += slot.backend.weight;
      if (best === null || slot.current > best.current) best = slot;
    }
    if (!best) return null;
    best.current -= total;
    return best.backend;
  }

  protected rebuild(): void {
    // Restart the interleaving when the eligible set changes so no backend carries stale credit.
    for (const slot of this.slots) slot.current = 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Weighted least connections.

class LeastConnectionsBalancer extends BaseBalancer {
  readonly kind = 'wlc' as const;
  /** Rotates the tie-break so equal backends share new flows instead of the first taking all. */
  private cursor = 0;

  constructor(backends: readonly Backend[]) {
    super(backends);
  }

  pick(_key: FlowKey): Backend | null {
    const n = this.slots.length;
    let best: Slot | null = null;
    for (let k = 0; k < n; k++) {
      const slot = this.slots[(this.cursor + k) % n]!;
      if (!this.eligible(slot)) continue;
      // (a + 1) / wa < (b + 1) / wb without division.
      if (
        best === null ||
        (slot.active + 1) * best.backend.weight < (best.active + 1) * slot.backend.weight
      ) {
        best = slot;
      }
    }
    if (n > 0) this.cursor = (this.cursor + 1) % n;
    return best ? best.backend : null;
  }

  protected rebuild(): void {}
}

// ---------------------------------------------------------------------------------------------
// Maglev consistent hashing.

/** Default floor for the table size: Katran's 65537, a prime, ≥ 100 × backends up to 655. */
export const MAGLEV_DEFAULT_MIN_TABLE = 65537;

export function isPrime(n: number): boolean {
  if (n < 2) return false;
  if (n % 2 === 0) return n === 2;
  for (let d = 3; d * d <= n; d += 2) if (n % d === 0) return false;
  return true;
}

/** Smallest prime ≥ max(100 × backends, minTable). */
export function maglevTableSize(backendCount: number, minTable = MAGLEV_DEFAULT_MIN_TABLE): number {
  let m = Math.max(100 * backendCount, minTable, 2);
  while (!isPrime(m)) m++;
  return m;
}

const MAGLEV_SEED_OFFSET = 0x2545f491;
const MAGLEV_SEED_SKIP = 0x6b43a9b5;

/**
 * Fills a Maglev lookup table of size m (prime). Entry = index into `backends`, or -1 when no
 * backend is eligible. Backends with weight w fill entries in proportion to w: each round a
 * backend earns w / wmax credit and claims one preferred slot per whole credit.
 */
export function buildMaglevTable(
  backends: readonly { readonly id: string; readonly weight: number }[],
  m: number,
): Int32Array {
  const table = new Int32Array(m).fill(-1);
  const n = backends.length;
  const maxWeight = backends.reduce((a, b) => Math.max(a, b.weight), 0);
  if (n === 0 || maxWeight <= 0) return table;
  const offset = new Uint32Array(n);
  const skip = new Uint32Array(n);
  const next = new Uint32Array(n);
  const credit = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const id = backends[i]!.id;
    offset[i] = hashString(id, MAGLEV_SEED_OFFSET) % m;
    skip[i] = (hashString(id, MAGLEV_SEED_SKIP) % (m - 1)) + 1;
  }
  let filled = 0;
  while (filled < m) {
    for (let i = 0; i < n && filled < m; i++) {
      const w = backends[i]!.weight;
      if (w <= 0) continue;
      credit[i]! += w / maxWeight;
      while (credit[i]! >= 1 && filled < m) {
        credit[i]! -= 1;
        // Next slot in this backend's permutation that is still free.
        let c = (offset[i]! + next[i]! * skip[i]!) % m;
        while (table[c] !== -1) {
          next[i]!++;
          c = (offset[i]! + next[i]! * skip[i]!) % m;
        }
        table[c] = i;
        next[i]!++;
        filled++;
      }
    }
  }
  return table;
}

export interface MaglevOptions {
  /** Floor for the lookup table size (the size is the smallest prime ≥ max(100 × backends, this)). */
  readonly minTableSize?: number;
}

class MaglevBalancer extends BaseBalancer {
  readonly kind = 'maglev' as const;
  private table: Int32Array = new Int32Array(0);
  private members: Slot[] = [];
  private readonly minTableSize: number;
  /** Fixed while the configured backend count is: health changes never resize the table. */
  private size = 0;

  constructor(backends: readonly Backend[], options: MaglevOptions = {}) {
    super(backends);
    this.minTableSize = options.minTableSize ?? MAGLEV_DEFAULT_MIN_TABLE;
    this.rebuild();
  }

  get tableSize(): number {
    return this.size;
  }

  pick(key: FlowKey): Backend | null {
    if (this.size === 0) return null;
    const index = this.table[hashFlowKey(key) % this.size]!;
    return index < 0 ? null : this.members[index]!.backend;
  }

  protected rebuild(): void {
    this.size = maglevTableSize(this.slots.length, this.minTableSize);
    // Sorted by id: the table depends on the set of backends, not on the order they were listed,
    // so a primary and its backup with the same backends build the same table.
    this.members = this.slots
      .filter((s) => this.eligible(s))
      .sort((a, b) => (a.backend.id < b.backend.id ? -1 : a.backend.id > b.backend.id ? 1 : 0));
    this.table = buildMaglevTable(
      this.members.map((s) => s.backend),
      this.size,
    );
  }
}

export interface BalancerOptions {
  readonly maglev?: MaglevOptions;
}

export function createBalancer(
  kind: BalancerKind,
  backends: readonly Backend[],
  options: BalancerOptions = {},
): Balancer {
  switch (kind) {
    case 'rr':
      return new RoundRobinBalancer(backends);
    case 'wlc':
      return new LeastConnectionsBalancer(backends);
    case 'maglev':
      return new MaglevBalancer(backends, options.maglev);
    default: {
      const never: never = kind;
      throw new DecisionError('BAD_BALANCER', `unknown balancer ${String(never)}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// One balancer per VIP, found by the key of a new flow (its destination) or by a stored flow.

export interface VipSpec {
  readonly proto: number;
  readonly ip: number;
  readonly port: number;
  readonly backends: readonly Backend[];
}

export interface VipEntry {
  /** "tcp/10.0.0.100:80" */
  readonly id: string;
  readonly proto: number;
  readonly ip: number;
  readonly port: number;
  readonly balancer: Balancer;
}

function vipIndexKey(proto: number, ip: number, port: number): number {
  // 8 + 32 + 16 bits would overflow 2^53; proto is 6 or 17, so one bit suffices past the 48.
  return (proto === PROTO_UDP ? 2 ** 48 : 0) + ip * 65536 + port;
}

export class VipTable {
  private readonly byKey = new Map<number, VipEntry>();

  constructor(vips: readonly VipSpec[], kind: BalancerKind, options: BalancerOptions = {}) {
    for (const v of vips) {
      if (v.proto !== PROTO_TCP && v.proto !== PROTO_UDP) throw new DecisionError('BAD_BACKEND', `VIP protocol ${v.proto} is neither TCP nor UDP`);
      const k = vipIndexKey(v.proto, v.ip, v.port);
      const id = `${v.proto === PROTO_UDP ? 'udp' : 'tcp'}/${intToIpv4(v.ip)}:${v.port}`;
      if (this.byKey.has(k)) throw new DecisionError('BAD_BACKEND', `duplicate VIP ${id}`);
      this.byKey.set(k, { id, proto: v.proto, ip: v.ip, port: v.port, balancer: createBalancer(kind, v.backends, options) });
    }
  }

  /** The VIP a new flow's first packet (client → VIP) is addressed to. */
  forKey(key: FlowKey): VipEntry | undefined {
    // VIPs are TCP or UDP: the index key has no room for other protocols, and they have no VIP
    if (key.proto !== PROTO_TCP && key.proto !== PROTO_UDP) return undefined;
    return this.byKey.get(vipIndexKey(key.proto, key.dstIp, key.dstPort));
  }

  /** The VIP a stored flow belongs to. */
  forFlow(flow: { readonly proto: number; readonly vipIp: number; readonly vipPort: number }): VipEntry | undefined {
    return this.byKey.get(vipIndexKey(flow.proto, flow.vipIp, flow.vipPort));
  }

  all(): VipEntry[] {
    return [...this.byKey.values()];
  }
}
