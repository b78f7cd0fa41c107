// Replication between service managers: the active manager mirrors every fixed affinity it sends to
// an agent onto its backups (ReplicationSender), and a backup stores what its own wildcards cover
// (ReplicationReceiver).
//
// Invariants:
//   - A batch names flows, not bytes: every (re)send serialises the flows' state at that moment (a
//     flow no longer held travels as a removal, remainingMs 0). So a message with a higher sequence
//     number always carries state at least as new as any message with a lower one, and the backup
//     uses the message sequence as the entry version: a late or resent older message never
//     overwrites a newer entry (AffinityStore.upsertReplicated ignores lower versions).
//   - Every replication, resync-data and resync-done message is acknowledged by sequence
//     (replication-ack); an unacknowledged one is rebuilt and resent after resendAfter. A periodic
//     refresh re-sends every live flow once per refreshPeriod (RefreshCursor), which heals anything
//     a dead peer or a full in-flight window dropped.
//   - Resync streams the whole store in resync-data messages, at most RESYNC_WINDOW unacknowledged at
//     a time, and sends resync-done (with the entry count) only once every data message was acked.
//   - An injected fault (dropRate, or env WASMLB_FAULT_DROP_REPLICATION) skips the socket send of a
//     fraction of replication messages; they stay in flight and are resent like real losses.
import { u32ToIp, type ReplicationEntry, type ResyncMarker, type ServiceMessage, type MessageOf } from '../protocol/index.ts';
import type { ManagerConfig } from '../config/index.ts';
import type { Outgoing, ServiceChannel } from '../transport/channel.ts';
import type { Endpoint } from '../transport/udp.ts';
import { makeBackend, type Backend } from './decision.ts';
import { RefreshCursor, type AffinityFlow, type AffinityStore, type ReplicatedAffinity } from './store.ts';
import { managerId, parsePrefix, type ServiceManager } from './manager.ts';

/** Fixed-affinity flag bits the protocol leaves unnamed; replication uses them for the flow state. */
export const ReplicationFlag = { Closing: 0x0100, Dispatch: 0x0200 } as const;

/** Resync-data messages in flight at once (flow control of a bulk resync). */
export const RESYNC_WINDOW = 16;
/** Least resend timeout of resync data (ms). */
const RESYNC_RTO_MS = 100;
/** Entries per resync-data message (≈ 40 bytes each: well inside one datagram). */
export const RESYNC_BATCH = 512;
/** How long a backup remembers a removal's version (well above any resend or reordering delay). */
const TOMBSTONE_MS = 10_000;
/**
 * Replication batches in flight to one peer (flow control): beyond it flows wait, deduplicated, until
 * acks come back, so a burst of new flows cannot overrun the backup's socket buffer and turn into a
 * resend storm. 256 × 64 entries ≈ 1 MB on the wire.
 */
export const REPLICATION_WINDOW = 256;

export class ReplicationError extends Error {
  constructor(
    readonly code: 'BAD_FAULT' | 'NO_PEER',
    message: string,
  ) {
    super(message);
    this.name = 'ReplicationError';
  }
}

/** Drop rate of the injected fault from the environment (0 when unset). */
export function faultDropRateFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const text = env['WASMLB_FAULT_DROP_REPLICATION'];
  if (text === undefined || text === '') return 0;
  const v = Number(text);
  if (!Number.isFinite(v) || v < 0 || v > 1) throw new ReplicationError('BAD_FAULT', `WASMLB_FAULT_DROP_REPLICATION must be in [0, 1], got "${text}"`);
  return v;
}

/** The sequence number the channel wrote into an encoded message's header. */
export function sequenceOf(bytes: Buffer): number {
  return bytes.readUInt32BE(12) * 0x1_0000_0000 + bytes.readUInt32BE(16);
}

/** A flow as a replication entry (client → VIP key; state and mode in the unnamed flag bits). */
export function replicationEntryOf(flow: AffinityFlow, remainingMs: number): ReplicationEntry {
  let flags = 0;
  if (flow.state === 'closing') flags |= ReplicationFlag.Closing;
  if (flow.mode === 'dispatch') flags |= ReplicationFlag.Dispatch;
  return {
    affinity: { protocol: flow.proto, srcAddr: flow.clientIp, srcPort: flow.clientPort, dstAddr: flow.vipIp, dstPort: flow.vipPort, flags, ttlMs: 0 },
    remainingMs: Math.max(0, Math.ceil(remainingMs)),
    backendAddr: flow.backend.ip,
    backendPort: flow.backend.port,
    owner: managerId(flow.owner),
    actions: [],
  };
}

type BatchKind = 'replication' | 'resync-data' | 'resync-done';

interface Batch {
  readonly kind: BatchKind;
  readonly flows: AffinityFlow[];
  readonly resync: ResyncMarker | null;
  sentAt: number;
  /** Sends so far (the resend timeout doubles with each). */
  attempts: number;
  acked: boolean;
  /** Every sequence this batch went out under (a late ack of an earlier send counts). */
  seqs: number[];
}

interface ResyncJob {
  readonly marker: ResyncMarker;
  readonly flows: AffinityFlow[];
  position: number;
  inFlight: number;
  sent: number;
  done: boolean;
  readonly startedAt: number;
}

class PeerQueue {
  readonly waiting = new Set<AffinityFlow>();
  readonly inFlight = new Map<number, Batch>();
  resync: ResyncJob | null = null;
  /** Replication (not resync) batches in flight. */
  replicationInFlight = 0;
  /** Silent peer (missed heartbeats): nothing is sent, the queue is kept for when it comes back. */
  paused = false;
  /** Smoothed round trip (send → ack) of batches acked on their first send, ms. */
  srtt = 0;
  constructor(
    readonly id: number,
    public endpoint: Endpoint,
  ) {}
}

export interface ReplicationSenderOptions {
  channel: ServiceChannel;
  store: AffinityStore;
  now: () => number;
  config: ManagerConfig['replication'];
  /** Fraction of replication messages not put on the wire (fault injection for tests). */
  dropRate?: number;
  random?: () => number;
  onEvent?: (event: string, fields: Record<string, unknown>) => void;
  /** Send → ack time of every message acknowledged on its first send (ms), for the lag histogram. */
  onAckLatency?: (ms: number) => void;
}

export interface ReplicationSenderStats {
  /** Affinities put in replication messages (first sends, resends and refreshes). */
  entriesSent: number;
  messagesSent: number;
  resends: number;
  acked: number;
  dropped: number;
  refreshed: number;
  resyncs: number;
  resyncEntries: number;
  /** Flushes that left flows waiting because the in-flight window was full. */
  windowFull: number;
}

export class ReplicationSender {
  readonly stats: ReplicationSenderStats = { entriesSent: 0, messagesSent: 0, resends: 0, acked: 0, dropped: 0, refreshed: 0, resyncs: 0, resyncEntries: 0, windowFull: 0 };
  private readonly channel: ServiceChannel;
  private readonly store: AffinityStore;
  private readonly now: () => number;
  private readonly cfg: ManagerConfig['replication'];
  private readonly dropRate: number;
  private readonly random: () => number;
  private readonly onEvent: (event: string, fields: Record<string, unknown>) => void;
  private readonly onAckLatency: ((ms: number) => void) | undefined;
  private readonly peers = new Map<number, PeerQueue>();
  private readonly bySeq = new Map<number, { peer: PeerQueue; batch: Batch }>();
  private flushTimer: NodeJS.Timeout | null = null;
  private timers: NodeJS.Timeout[] = [];
  private cursor: RefreshCursor | null = null;
  /** Lag samples: time from track() to the ack of the batch carrying the flow (ms). */
  readonly lagSamples: number[] = [];
  private readonly trackedAt = new Map<AffinityFlow, number>();
  measureLag = false;

  constructor(opts: ReplicationSenderOptions) {
    this.channel = opts.channel;
    this.store = opts.store;
    this.now = opts.now;
    this.cfg = opts.config;
    this.dropRate = opts.dropRate ?? 0;
    this.random = opts.random ?? Math.random;
    this.onEvent = opts.onEvent ?? (() => undefined);
    this.onAckLatency = opts.onAckLatency;
  }

  start(): void {
    this.cursor = new RefreshCursor(this.store, this.cfg.refreshPeriod, this.now());
    const tick = Math.max(1, Math.min(this.cfg.resendAfter / 2, 50));
    this.timers.push(setInterval(() => this.tick(), tick));
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
  }

  /** Per peer: waiting flows, batches in flight by kind and attempts (diagnostics). */
  peerState(): Array<Record<string, unknown>> {
    return [...this.peers.values()].map((p) => ({
      id: p.id,
      paused: p.paused,
      srtt: Math.round(p.srtt),
      waiting: p.waiting.size,
      replicationInFlight: p.replicationInFlight,
      inFlight: [...p.inFlight.values()].map((b) => `${b.kind}:${b.attempts}:${b.flows.length}`).slice(0, 20),
      resync: p.resync ? { position: p.resync.position, total: p.resync.flows.length, inFlight: p.resync.inFlight, done: p.resync.done } : null,
    }));
  }

  peerIds(): number[] {
    return [...this.peers.keys()];
  }

  hasPeer(id: number): boolean {
    return this.peers.has(id);
  }

  addPeer(id: number, endpoint: Endpoint): void {
    const p = this.peers.get(id);
    if (p) {
      p.endpoint = endpoint;
      if (p.paused) {
        p.paused = false;
        this.flush();
        this.pumpResync(p);
      }
    } else this.peers.set(id, new PeerQueue(id, endpoint));
  }

  /** A peer stopped answering heartbeats: keep its queue, stop sending until it is heard again. */
  pausePeer(id: number): void {
    const p = this.peers.get(id);
    if (p) p.paused = true;
  }

  /** Live (not paused) peers. */
  activePeerIds(): number[] {
    return [...this.peers.values()].filter((p) => !p.paused).map((p) => p.id);
  }

  removePeer(id: number): void {
    const p = this.peers.get(id);
    if (!p) return;
    for (const b of p.inFlight.values()) for (const s of b.seqs) this.bySeq.delete(s);
    this.peers.delete(id);
  }

  /** A flow whose affinities were just sent to an agent: mirror it to every backup. */
  track(flow: AffinityFlow): void {
    if (this.peers.size === 0) return;
    if (this.measureLag && !this.trackedAt.has(flow)) this.trackedAt.set(flow, performance.now());
    let full = false;
    for (const p of this.peers.values()) {
      p.waiting.add(flow);
      if (p.waiting.size >= this.cfg.batchSize) full = true;
    }
    if (full) this.flush();
    else if (!this.flushTimer) this.flushTimer = setTimeout(() => this.flush(), this.cfg.flushDelay);
  }

  /** Sends what is waiting, batchSize flows a message. */
  flush(): void {
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = null;
    for (const p of this.peers.values()) {
      if (p.waiting.size === 0 || p.paused) continue;
      let flows: AffinityFlow[] = [];
      for (const f of p.waiting) {
        if (p.replicationInFlight >= REPLICATION_WINDOW) break;
        flows.push(f);
        p.waiting.delete(f);
        if (flows.length >= this.cfg.batchSize) {
          this.sendBatch(p, { kind: 'replication', flows, resync: null, sentAt: 0, attempts: 0, acked: false, seqs: [] });
          flows = [];
        }
      }
      if (flows.length > 0) this.sendBatch(p, { kind: 'replication', flows, resync: null, sentAt: 0, attempts: 0, acked: false, seqs: [] });
      if (p.waiting.size > 0) this.stats.windowFull++;
    }
  }

  /** replication-ack from a peer. */
  onAck(msg: MessageOf<'replication-ack'>): void {
    const nowMs = performance.now();
    for (const seq of msg.acked) {
      const hit = this.bySeq.get(seq);
      if (!hit) continue;
      const { peer, batch } = hit;
      for (const s of batch.seqs) this.bySeq.delete(s);
      if (batch.acked) continue;
      batch.acked = true;
      this.stats.acked++;
      if (batch.attempts === 1) {
        const rtt = this.now() - batch.sentAt;
        peer.srtt = peer.srtt === 0 ? rtt : peer.srtt * 0.875 + rtt * 0.125;
        this.onAckLatency?.(rtt);
      }
      peer.inFlight.delete(batch.seqs[0]!);
      if (batch.kind === 'replication') {
        peer.replicationInFlight--;
        if (peer.waiting.size > 0 && !this.flushTimer) this.flushTimer = setTimeout(() => this.flush(), 0);
      }
      if (this.measureLag && batch.kind === 'replication') {
        for (const f of batch.flows) {
          const t = this.trackedAt.get(f);
          if (t !== undefined) {
            this.lagSamples.push(nowMs - t);
            this.trackedAt.delete(f);
          }
        }
      }
      if (peer.resync && batch.kind === 'resync-data') {
        peer.resync.inFlight--;
        this.pumpResync(peer);
      } else if (peer.resync && batch.kind === 'resync-done') {
        this.onEvent('resync-sent', { peer: peer.id, entries: peer.resync.sent, ms: Math.round(this.now() - peer.resync.startedAt) });
        peer.resync = null;
      }
    }
  }

  /** resync-request from a backup: stream the whole store to it. */
  startResync(peerId: number, endpoint: Endpoint, request: ResyncMarker, epoch: number): void {
    this.addPeer(peerId, endpoint);
    const p = this.peers.get(peerId)!;
    if (p.resync && p.resync.marker.resyncId === request.resyncId) return; // a repeated request
    // A new resync replaces an old one: its batches in flight no longer count.
    for (const [first, b] of p.inFlight) {
      if (b.kind !== 'replication') {
        p.inFlight.delete(first);
        for (const s of b.seqs) this.bySeq.delete(s);
      }
    }
    this.stats.resyncs++;
    p.resync = {
      marker: { resyncId: request.resyncId, epoch, entryCount: 0 },
      flows: [...this.store.entries()],
      position: 0,
      inFlight: 0,
      sent: 0,
      done: false,
      startedAt: this.now(),
    };
    this.onEvent('resync-start', { peer: peerId, resyncId: request.resyncId, entries: p.resync.flows.length });
    this.pumpResync(p);
  }

  private pumpResync(p: PeerQueue): void {
    const job = p.resync;
    if (!job || job.done || p.paused) return;
    while (job.inFlight < RESYNC_WINDOW && job.position < job.flows.length) {
      const flows = job.flows.slice(job.position, job.position + RESYNC_BATCH);
      job.position += flows.length;
      job.inFlight++;
      this.sendBatch(p, { kind: 'resync-data', flows, resync: job.marker, sentAt: 0, attempts: 0, acked: false, seqs: [] });
    }
    if (job.position >= job.flows.length && job.inFlight === 0) {
      job.done = true;
      this.sendBatch(p, { kind: 'resync-done', flows: [], resync: { ...job.marker, entryCount: job.sent }, sentAt: 0, attempts: 0, acked: false, seqs: [] });
    }
  }

  private tick(): void {
    const now = this.now();
    // Periodic refresh: a slice of every live flow, to every peer.
    if (this.cursor && this.peers.size > 0) {
      const due = this.cursor.due(now);
      if (due.length > 0) {
        this.stats.refreshed += due.length;
        for (const p of this.peers.values()) for (const f of due) p.waiting.add(f);
        this.flush();
      }
    } else if (this.cursor) this.cursor.due(now); // keep the cursor's period moving
    // Resend what was not acknowledged in time.
    for (const p of this.peers.values()) {
      if (p.paused) continue;
      if (p.resync && !p.resync.done) this.pumpResync(p);
      // Resend timeout: resendAfter, or twice the measured round trip when the backup is slower
      // (a busy backup must not be answered with a resend storm), doubled per attempt, at most 2 s.
      const rto = Math.max(this.cfg.resendAfter, 2 * p.srtt);
      for (const b of [...p.inFlight.values()]) {
        // Bulk resync data: duplicates cost more than a later repair, so wait at least RESYNC_RTO_MS.
        const base = b.kind === 'resync-data' ? Math.max(rto, RESYNC_RTO_MS) : rto;
        if (now - b.sentAt < Math.min(2000, base * 2 ** (b.attempts - 1))) continue;
        this.stats.resends++;
        this.sendBatch(p, b);
      }
    }
  }

  private entriesOf(flows: readonly AffinityFlow[]): ReplicationEntry[] {
    const out: ReplicationEntry[] = [];
    for (const f of flows) {
      if (this.store.holds(f)) out.push(replicationEntryOf(f, this.store.remainingTtl(f)));
      else {
        // Gone (closed and expired, removed): a removal, unless the key already belongs to a new flow.
        const current = this.store.lookup({ proto: f.proto, srcIp: f.clientIp, srcPort: f.clientPort, dstIp: f.vipIp, dstPort: f.vipPort });
        if (!current) out.push(replicationEntryOf(f, 0));
      }
    }
    return out;
  }

  private sendBatch(p: PeerQueue, b: Batch): void {
    let msg: Outgoing;
    let entries = 0;
    if (b.kind === 'resync-done') msg = { type: 'resync-done', resync: b.resync! };
    else {
      const list = this.entriesOf(b.flows);
      entries = list.length;
      if (b.kind === 'replication') {
        if (list.length === 0) {
          if (b.seqs.length > 0) this.forget(p, b);
          return;
        }
        msg = { type: 'replication', entries: list };
      } else msg = { type: 'resync-data', resync: b.resync!, entries: list };
    }
    const bytes = this.channel.encode(msg);
    const seq = sequenceOf(bytes);
    const first = b.seqs.length === 0;
    if (!first) p.inFlight.delete(b.seqs[0]!);
    else if (b.kind === 'replication') p.replicationInFlight++;
    b.seqs.unshift(seq);
    if (b.seqs.length > 4) for (const s of b.seqs.splice(4)) this.bySeq.delete(s);
    b.sentAt = this.now();
    b.attempts++;
    p.inFlight.set(seq, b);
    this.bySeq.set(seq, { peer: p, batch: b });
    if (first && b.kind === 'resync-data' && p.resync) {
      p.resync.sent += entries;
      this.stats.resyncEntries += entries;
    }
    this.stats.entriesSent += entries;
    this.stats.messagesSent++;
    if (this.dropRate > 0 && b.kind !== 'resync-done' && this.random() < this.dropRate) {
      this.stats.dropped++;
      return;
    }
    this.channel.socket.send(bytes, p.endpoint);
  }

  private forget(p: PeerQueue, b: Batch): void {
    if (b.seqs.length > 0) p.inFlight.delete(b.seqs[0]!);
    if (b.kind === 'replication' && b.seqs.length > 0 && !b.acked) p.replicationInFlight--;
    for (const s of b.seqs) this.bySeq.delete(s);
  }
}

// ---------------------------------------------------------------------------------------------
// Backup side.

export interface ReplicationReceiverStats {
  messages: number;
  entries: number;
  stored: number;
  removed: number;
  stale: number;
  /** Entries outside this manager's wildcards (another backup's client domain, another VIP). */
  filtered: number;
  resyncEntries: number;
}

export interface ResyncProgress {
  readonly marker: ResyncMarker;
  readonly received: number;
}

export class ReplicationReceiver {
  readonly stats: ReplicationReceiverStats = { messages: 0, entries: 0, stored: 0, removed: 0, stale: 0, filtered: 0, resyncEntries: 0 };
  private readonly manager: ServiceManager;
  private readonly channel: ServiceChannel;
  private readonly domains: Array<[number, number]>;
  private readonly ownerNames = new Map<number, string>();
  private readonly pendingAcks = new Map<string, { to: Endpoint; seqs: number[] }>();
  private readonly tombstones = new Map<string, { version: number; at: number }>();
  private tombstonesPrunedAt = 0;
  private ackScheduled = false;
  /** Resync in progress (the id this manager asked for) and entries received for it. */
  private resync: { id: number; received: number } | null = null;
  onResyncData: ((marker: ResyncMarker) => void) | null = null;
  onResyncDone: ((progress: ResyncProgress) => void) | null = null;

  constructor(manager: ServiceManager, channel: ServiceChannel, managerNames: readonly string[]) {
    this.manager = manager;
    this.channel = channel;
    this.domains = manager.cfg.clientDomain.map(parsePrefix);
    for (const n of managerNames) this.ownerNames.set(managerId(n), n);
  }

  /** Expect the resync with this id (entries of other resyncs are still stored, not counted). */
  expectResync(id: number): void {
    this.resync = { id, received: 0 };
  }

  /** Whether this manager's own wildcards cover the flow (its client domain and one of its VIPs). */
  covers(proto: number, clientIp: number, vipIp: number, vipPort: number): boolean {
    if (!this.manager.vipOf(proto, vipIp, vipPort)) return false;
    for (const [net, mask] of this.domains) if (((clientIp & mask) >>> 0) === net) return true;
    return false;
  }

  /** Handles replication, resync-data and resync-done; returns false for other messages. */
  handle(msg: ServiceMessage, from: Endpoint): boolean {
    switch (msg.type) {
      case 'replication':
        this.apply(msg.entries, msg.sequence);
        break;
      case 'resync-data':
        this.apply(msg.entries, msg.sequence);
        if (this.resync && this.resync.id === msg.resync.resyncId) {
          this.resync.received += msg.entries.length;
          this.stats.resyncEntries += msg.entries.length;
        }
        this.onResyncData?.(msg.resync);
        break;
      case 'resync-done':
        if (this.resync && this.resync.id === msg.resync.resyncId) {
          const progress = { marker: msg.resync, received: this.resync.received };
          this.resync = null;
          this.onResyncDone?.(progress);
        }
        break;
      default:
        return false;
    }
    this.stats.messages++;
    this.ack(msg.sequence, from);
    return true;
  }

  private apply(entries: readonly ReplicationEntry[], version: number): void {
    const store = this.manager.store;
    const t = performance.now();
    if (this.tombstones.size > 0 && t - this.tombstonesPrunedAt > TOMBSTONE_MS) {
      this.tombstonesPrunedAt = t;
      for (const [k, v] of this.tombstones) if (t - v.at > TOMBSTONE_MS) this.tombstones.delete(k);
    }
    for (const e of entries) {
      this.stats.entries++;
      const a = e.affinity;
      const vip = this.manager.vipOf(a.protocol, a.dstAddr, a.dstPort);
      if (!vip || !this.covers(a.protocol, a.srcAddr, a.dstAddr, a.dstPort)) {
        this.stats.filtered++;
        continue;
      }
      const backend = vip.backends.find((b) => b.ip === e.backendAddr && b.port === e.backendPort) ?? this.foreignBackend(e.backendAddr, e.backendPort);
      const entry: ReplicatedAffinity = {
        proto: a.protocol,
        clientIp: a.srcAddr,
        clientPort: a.srcPort,
        vipIp: a.dstAddr,
        vipPort: a.dstPort,
        backend,
        mode: a.flags & ReplicationFlag.Dispatch ? 'dispatch' : 'nat',
        owner: this.ownerName(e.owner),
        state: a.flags & ReplicationFlag.Closing ? 'closing' : 'active',
        version,
      };
      const key = { proto: a.protocol, srcIp: a.srcAddr, srcPort: a.srcPort, dstIp: a.dstAddr, dstPort: a.dstPort };
      const before = store.lookup(key);
      // another flow holding this flow's return key is displaced by it (the primary's view wins)
      const clash = store.lookup({ proto: a.protocol, srcIp: backend.ip, srcPort: backend.port, dstIp: a.srcAddr, dstPort: a.srcPort });
      // A removal leaves no record in the store: remember its version for a while, so an older
      // message arriving late cannot bring the flow back.
      const tk = `${a.protocol}/${a.srcAddr}:${a.srcPort}>${a.dstAddr}:${a.dstPort}`;
      const tomb = this.tombstones.get(tk);
      if (tomb !== undefined) {
        if (tomb.version > version) {
          this.stats.stale++;
          continue;
        }
        this.tombstones.delete(tk);
      }
      if (e.remainingMs <= 0) this.tombstones.set(tk, { version, at: t });
      const outcome = store.upsertReplicated(entry, e.remainingMs);
      if (outcome === 'stale') this.stats.stale++;
      else if (outcome === 'removed') {
        this.stats.removed++;
        if (before) vip.balancer.onFlowEnd(before.backend);
      } else if (outcome === 'inserted' || outcome === 'updated') {
        this.stats.stored++;
        // the balancer counts follow the store: a new flow, a flow moved to another backend, one displaced
        if (before?.backend.id !== backend.id) {
          if (before) vip.balancer.onFlowEnd(before.backend);
          vip.balancer.onFlowStart(backend);
        }
        if (clash && clash !== before && !store.holds(clash)) this.manager.vipOf(clash.proto, clash.vipIp, clash.vipPort)?.balancer.onFlowEnd(clash.backend);
      }
    }
  }

  private foreignBackend(ip: number, port: number): Backend {
    return makeBackend(u32ToIp(ip), port || 1, 1);
  }

  private ownerName(id: number): string {
    let n = this.ownerNames.get(id);
    if (n === undefined) {
      n = `manager-${id.toString(16)}`;
      this.ownerNames.set(id, n);
    }
    return n;
  }

  private ack(seq: number, to: Endpoint): void {
    const k = `${to.address}:${to.port}`;
    let p = this.pendingAcks.get(k);
    if (!p) {
      p = { to, seqs: [] };
      this.pendingAcks.set(k, p);
    }
    p.seqs.push(seq);
    if (p.seqs.length >= 256) this.flushAcks();
    else if (!this.ackScheduled) {
      this.ackScheduled = true;
      setImmediate(() => this.flushAcks());
    }
  }

  private flushAcks(): void {
    this.ackScheduled = false;
    for (const p of this.pendingAcks.values()) {
      if (p.seqs.length > 0) this.channel.send({ type: 'replication-ack', acked: p.seqs }, p.to);
      p.seqs = [];
    }
  }
}

/** Per-flow hash of what must survive a failover: the flow's key and its backend. */
export function flowHash(proto: number, clientIp: number, clientPort: number, vipIp: number, vipPort: number, backendIp: number, backendPort: number): number {
  let h = 0x811c9dc5;
  for (const v of [proto, clientIp, clientPort, vipIp, vipPort, backendIp, backendPort]) {
    h = Math.imul(h ^ (v & 0xffff), 0x01000193);
    h = Math.imul(h ^ (v >>> 16), 0x01000193);
  }
  return h >>> 0;
}

/** Order-independent digest of a set of flows (sum of flowHash mod 2^32): two stores agree when equal. */
export function storeDigest(flows: Iterable<AffinityFlow>): number {
  let d = 0;
  for (const f of flows) d = (d + flowHash(f.proto, f.clientIp, f.clientPort, f.vipIp, f.vipPort, f.backend.ip, f.backend.port)) >>> 0;
  return d;
}
