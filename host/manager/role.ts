// Who answers the agents: heartbeats between managers, failure detection, epochs, takeover, resync
// and step-down. One RoleController per manager process.
//
// Rules (one winner by epoch and precedence, never two answering managers for long):
//   - Every manager sends a heartbeat to every peer each heartbeatInterval: its role (primary while
//     it answers agents, backup while it only stores), epoch, configured backup precedence and
//     resync state. A peer is dead after heartbeatMisses intervals without one.
//   - A configured primary with no peers answers at once (epoch 1). With peers it first listens for
//     one dead-after period: when some peer already answers for its client domain it stays backup
//     and resyncs (a returning old primary); otherwise it becomes primary.
//   - A backup requests a resync from the primary it hears and may not take over before the resync
//     is complete. When that primary dies and no other live primary overlaps its client domain, the
//     best live backup (precedence, then identity; resync complete) takes over: epoch = highest seen
//     (or the wall clock in seconds since 2020, whichever is higher) + 1, a takeover notice to every agent (a heartbeat carrying the dead manager's identity in its
//     identity-info segment: the agent drops every affinity that manager owns), its own wildcards at
//     primary precedence, then every stored fixed affinity pushed (same backend, no reset).
//   - Two primaries that hear each other: the higher epoch wins, then the higher precedence, then
//     the higher identity; the other steps down to backup and resyncs from the winner.
//   - With takeover.preempt, a backup whose precedence is higher than the live primary's takes over
//     from it once its resync is complete (the returning old primary).
import type { HeartbeatRoleName, MessageOf, ResyncState, ServiceMessage } from '../protocol/index.ts';
import type { WasmlbConfig } from '../config/index.ts';
import type { ServiceChannel } from '../transport/channel.ts';
import type { Endpoint } from '../transport/udp.ts';
import { managerId, parsePrefix, type ServiceManager } from './manager.ts';
import type { ReplicationReceiver, ReplicationSender } from './replication.ts';
import type { AffinityFlow } from './store.ts';

/** Host name of the identity-info segment that marks a heartbeat as a takeover notice to agents. */
/** A dead peer's replication queue is kept this long (it may only have stalled), then dropped. */
const FORGET_PEER_MS = 30_000;

/** Must equal TAKEOVER_NOTICE in host/agent/agent.ts (kept apart so a manager never loads the firmware host; a test pins both). */
export const TAKEOVER_NOTICE = 'wasmlb-takeover';

interface PeerState {
  readonly id: number;
  readonly name: string;
  endpoint: Endpoint;
  role: HeartbeatRoleName;
  epoch: number;
  precedence: number;
  resyncState: ResyncState;
  intervalMs: number;
  lastHeard: number;
  alive: boolean;
  /** Its client domain overlaps ours (unknown peers are assumed to overlap). */
  readonly overlaps: boolean;
}

export interface RoleStats {
  heartbeatsSent: number;
  heartbeatsReceived: number;
  /** Heartbeats ignored: their epoch was implausibly far ahead of the wall clock. */
  implausibleEpochs: number;
  takeovers: number;
  stepDowns: number;
  resyncsRequested: number;
  resyncsCompleted: number;
  lastTakeoverMs: number | null;
}

export interface RoleControllerOptions {
  manager: ServiceManager;
  channel: ServiceChannel;
  config: WasmlbConfig;
  sender: ReplicationSender;
  receiver: ReplicationReceiver;
  /** Peer managers' control endpoints (from --peer or the config). */
  peers: Endpoint[];
  now: () => number;
  onEvent?: (event: string, fields: Record<string, unknown>) => void;
}

export class RoleController {
  epoch = 0;
  resyncState: ResyncState = 'none';
  readonly stats: RoleStats = { heartbeatsSent: 0, heartbeatsReceived: 0, implausibleEpochs: 0, takeovers: 0, stepDowns: 0, resyncsRequested: 0, resyncsCompleted: 0, lastTakeoverMs: null };
  private readonly manager: ServiceManager;
  private readonly channel: ServiceChannel;
  private readonly sender: ReplicationSender;
  private readonly receiver: ReplicationReceiver;
  private readonly now: () => number;
  private readonly onEvent: (event: string, fields: Record<string, unknown>) => void;
  private readonly configured: Endpoint[];
  private readonly peers = new Map<number, PeerState>();
  private readonly domainOf = new Map<number, Array<[number, number]>>();
  private readonly nameOf = new Map<number, string>();
  private readonly myDomain: Array<[number, number]>;
  private timers: NodeJS.Timeout[] = [];
  private startupUntil: number | null = null;
  private maxSeenEpoch = 0;
  /** The primary this backup mirrors (its resync), and when the resync was asked for. */
  private resyncFrom: { peer: number; epoch: number; id: number; requestedAt: number; startedAt: number } | null = null;
  private blockedLogged = false;
  private lastCheckAt = 0;

  constructor(opts: RoleControllerOptions) {
    this.manager = opts.manager;
    this.channel = opts.channel;
    this.sender = opts.sender;
    this.receiver = opts.receiver;
    this.now = opts.now;
    this.onEvent = opts.onEvent ?? (() => undefined);
    this.configured = opts.peers;
    this.myDomain = opts.manager.cfg.clientDomain.map(parsePrefix);
    for (const m of opts.config.managers) {
      const id = managerId(m.identity);
      this.nameOf.set(id, m.identity);
      this.domainOf.set(id, m.clientDomain.map(parsePrefix));
    }
    this.receiver.onResyncData = (marker) => {
      if (this.resyncState === 'requested' && marker.resyncId === this.resyncFrom?.id) this.resyncState = 'in-progress';
    };
    this.receiver.onResyncDone = (p) => {
      if (!this.resyncFrom || p.marker.resyncId !== this.resyncFrom.id) return;
      this.resyncState = 'complete';
      this.stats.resyncsCompleted++;
      this.onEvent('resync-complete', {
        from: this.nameOf.get(this.resyncFrom.peer) ?? this.resyncFrom.peer,
        entries: p.received,
        announced: p.marker.entryCount,
        stored: this.manager.store.size,
        ms: Math.round(this.now() - this.resyncFrom.startedAt),
      });
    };
    // A configured primary answers from the start only when it has nobody to ask.
    if (this.manager.active) {
      if (this.configured.length === 0) this.epoch = 1;
      else this.manager.active = false;
    }
  }

  /** A peer's configured name (or manager-<hex id>). */
  peerName(id: number): string {
    return this.peers.get(id)?.name ?? this.nameOf.get(id) ?? `manager-${id.toString(16)}`;
  }

  get role(): HeartbeatRoleName {
    return this.manager.active ? 'primary' : 'backup';
  }

  get deadAfterMs(): number {
    const t = this.manager.cfg.timers;
    return t.heartbeatInterval * t.heartbeatMisses;
  }

  start(): void {
    const t = this.manager.cfg.timers;
    if (this.manager.cfg.role === 'primary' && !this.manager.active) this.startupUntil = this.now() + this.deadAfterMs;
    if (this.manager.active) this.onEvent('role', { role: 'primary', epoch: this.epoch, reason: 'startup' });
    this.beat();
    this.timers.push(setInterval(() => this.beat(), t.heartbeatInterval));
    // Failure detection runs more often than heartbeats so a death is acted on within one interval.
    this.timers.push(setInterval(() => this.check(), Math.max(2, Math.min(10, t.heartbeatInterval / 5))));
  }

  stop(): void {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
  }

  /** Routes the messages between managers. */
  handle(msg: ServiceMessage, from: Endpoint): void {
    // Any authenticated message from a live peer shows it is alive: under a replication burst its
    // heartbeats queue behind the data in the same socket, and must not look like silence.
    const peer = this.peers.get(msg.sender);
    if (peer?.alive) peer.lastHeard = this.now();
    switch (msg.type) {
      case 'heartbeat':
        this.onHeartbeat(msg, from);
        break;
      case 'replication-ack':
        this.sender.onAck(msg);
        break;
      case 'resync-request':
        if (this.manager.active) this.sender.startResync(msg.sender, from, msg.resync, this.epoch);
        break;
      case 'replication':
      case 'resync-data':
      case 'resync-done':
        // A primary stores nothing from others (a brief split brain resolves by heartbeats).
        if (!this.manager.active) this.receiver.handle(msg, from);
        break;
      default:
        break;
    }
  }

  // ---- heartbeats --------------------------------------------------------------------------------------

  private targets(): Endpoint[] {
    const seen = new Map<string, Endpoint>();
    for (const e of this.configured) seen.set(`${e.address}:${e.port}`, e);
    for (const p of this.peers.values()) seen.set(`${p.endpoint.address}:${p.endpoint.port}`, p.endpoint);
    return [...seen.values()];
  }

  private beat(): void {
    const targets = this.targets();
    if (targets.length === 0) return;
    this.stats.heartbeatsSent++;
    this.channel.sendMany({ type: 'heartbeat', heartbeat: this.heartbeatData() }, targets);
  }

  private heartbeatData(): MessageOf<'heartbeat'>['heartbeat'] {
    return {
      role: this.role,
      resyncState: this.resyncState,
      epoch: this.epoch,
      backupPrecedence: this.manager.cfg.backupPrecedence,
      intervalMs: this.manager.cfg.timers.heartbeatInterval,
    };
  }

  private onHeartbeat(msg: MessageOf<'heartbeat'>, from: Endpoint): void {
    if (msg.identity?.hostName === TAKEOVER_NOTICE) return; // meant for agents
    if (msg.sender === this.manager.id) return;
    this.stats.heartbeatsReceived++;
    const hb = msg.heartbeat;
    // Epochs start at the wall clock (seconds since 2020) and grow by one per takeover: one far ahead
    // comes from a broken or hostile peer, and following it would run the epoch out of its 32 bits.
    if (hb.epoch > wallClockEpoch() + EPOCH_AHEAD_MAX) {
      this.stats.implausibleEpochs++;
      return;
    }
    let p = this.peers.get(msg.sender);
    if (!p) {
      const domain = this.domainOf.get(msg.sender);
      p = {
        id: msg.sender,
        name: this.nameOf.get(msg.sender) ?? `manager-${msg.sender.toString(16)}`,
        endpoint: from,
        role: hb.role,
        epoch: hb.epoch,
        precedence: hb.backupPrecedence,
        resyncState: hb.resyncState,
        intervalMs: hb.intervalMs,
        lastHeard: this.now(),
        alive: false,
        overlaps: domain ? overlaps(domain, this.myDomain) : true,
      };
      this.peers.set(msg.sender, p);
    }
    const wasAlive = p.alive;
    p.endpoint = from;
    p.role = hb.role;
    p.epoch = hb.epoch;
    p.precedence = hb.backupPrecedence;
    p.resyncState = hb.resyncState;
    p.intervalMs = Math.max(1, hb.intervalMs);
    p.lastHeard = this.now();
    p.alive = true;
    if (hb.epoch > this.maxSeenEpoch) this.maxSeenEpoch = hb.epoch;
    if (!wasAlive) this.onEvent('peer-up', { peer: p.name, role: p.role, epoch: p.epoch });

    if (this.manager.active) {
      if (p.role === 'primary' && p.overlaps && beats(p, this.self())) this.stepDown(p);
      else if (p.role === 'backup') this.sender.addPeer(p.id, from); // new, or back from a stall
      return;
    }
    if (p.role === 'primary' && p.overlaps) {
      const r = this.resyncFrom;
      if (!r || r.peer !== p.id || r.epoch !== p.epoch) {
        // Follow the best live primary only.
        const current = r ? this.peers.get(r.peer) : undefined;
        if (!current || !current.alive || current.role !== 'primary' || current.id === p.id || beats(p, current)) this.requestResync(p);
      } else if (!wasAlive && this.resyncState !== 'complete') {
        // Back after a silence long enough to be declared dead: the primary may have dropped our resync
        // (it forgets a peer silent for 30 s) and would never finish it. Ask again.
        this.requestResync(p);
      }
    }
  }

  private self(): { id: number; epoch: number; precedence: number } {
    return { id: this.manager.id, epoch: this.epoch, precedence: this.manager.cfg.backupPrecedence };
  }

  // ---- resync ---------------------------------------------------------------------------------------------

  private requestResync(p: PeerState): void {
    const id = (Math.random() * 0xffffffff) >>> 0 || 1;
    const now = this.now();
    this.resyncFrom = { peer: p.id, epoch: p.epoch, id, requestedAt: now, startedAt: now };
    this.resyncState = 'requested';
    this.blockedLogged = false;
    this.stats.resyncsRequested++;
    this.receiver.expectResync(id);
    this.channel.send({ type: 'resync-request', resync: { resyncId: id, epoch: p.epoch, entryCount: 0 } }, p.endpoint);
    this.onEvent('resync-request', { from: p.name, epoch: p.epoch, resyncId: id });
  }

  // ---- failure detection and takeover ----------------------------------------------------------------------

  private check(): void {
    const now = this.now();
    const misses = this.manager.cfg.timers.heartbeatMisses;
    // This check itself ran late: our own event loop stalled (a burst of work), so heartbeats may be
    // waiting in the socket. Let them be read before anybody is declared dead.
    const late = now - this.lastCheckAt > this.manager.cfg.timers.heartbeatInterval;
    this.lastCheckAt = now;
    if (late) return;
    for (const p of this.peers.values()) {
      if (p.alive && now - p.lastHeard > p.intervalMs * misses) {
        p.alive = false;
        this.sender.pausePeer(p.id);
        this.onEvent('peer-dead', { peer: p.name, role: p.role, epoch: p.epoch, silentMs: Math.round(now - p.lastHeard) });
      } else if (!p.alive && this.sender.hasPeer(p.id) && now - p.lastHeard > FORGET_PEER_MS) this.sender.removePeer(p.id);
    }
    if (this.manager.active) return;

    const livePrimaries = [...this.peers.values()].filter((p) => p.alive && p.role === 'primary' && p.overlaps);
    if (this.startupUntil !== null) {
      if (livePrimaries.length > 0) {
        this.startupUntil = null; // somebody answers already: stay backup (resync under way)
        this.onEvent('role', { role: 'backup', epoch: this.epoch, reason: 'peer-is-primary' });
      } else if (now >= this.startupUntil) {
        this.startupUntil = null;
        this.becomeActive('startup', [], now);
      }
      return;
    }

    // Resync request lost (or the primary was busy): ask again.
    const r = this.resyncFrom;
    if (r && this.resyncState === 'requested' && now - r.requestedAt > Math.max(200, this.deadAfterMs)) {
      const p = this.peers.get(r.peer);
      if (p?.alive) {
        r.requestedAt = now;
        this.channel.send({ type: 'resync-request', resync: { resyncId: r.id, epoch: r.epoch, entryCount: 0 } }, p.endpoint);
      }
    }

    if (livePrimaries.length === 0) {
      const watched = r ? this.peers.get(r.peer) : undefined;
      if (!watched || watched.alive) return; // never had a primary: nothing to take over from
      if (this.resyncState !== 'complete') {
        if (!this.blockedLogged) {
          this.blockedLogged = true;
          this.onEvent('takeover-blocked', { dead: watched.name, resyncState: this.resyncState });
        }
        return;
      }
      // The best live backup of this domain takes over; the others follow it.
      const me = this.self();
      const better = [...this.peers.values()].some(
        (p) => p.alive && p.role === 'backup' && p.overlaps && p.resyncState === 'complete' && beatsByPrecedence(p, me),
      );
      if (better) return;
      const deadPrimaries = [...this.peers.values()].filter((p) => !p.alive && p.role === 'primary' && p.overlaps);
      this.becomeActive('primary-dead', deadPrimaries, watched.lastHeard);
      return;
    }

    // Preemption: a better backup (the returning old primary) takes its place back, after its resync.
    if (this.manager.cfg.takeover.preempt && this.resyncState === 'complete') {
      const worse = livePrimaries.filter((p) => p.precedence < this.manager.cfg.backupPrecedence);
      if (worse.length === livePrimaries.length) this.becomeActive('preempt', worse, now);
    }
  }

  /** Takes over: new epoch, agents drop the replaced managers' affinities, ours are pushed. */
  private becomeActive(reason: string, replaced: PeerState[], since: number): void {
    const t0 = this.now();
    this.epoch = Math.max(this.epoch, this.maxSeenEpoch, wallClockEpoch()) + 1;
    this.maxSeenEpoch = this.epoch;
    this.manager.active = true;
    this.startupUntil = null;
    const m = this.manager;
    for (const r of replaced) {
      m.notifyAgents({ type: 'heartbeat', identity: { addr: r.id, hostName: TAKEOVER_NOTICE }, heartbeat: this.heartbeatData() });
    }
    m.sendWildcards(m.cfg.timers.wildcardTtl);
    const adopted = m.store.adoptAll(m.identity);
    let pushed = 0;
    if (m.cfg.takeover.pushAffinities && m.store.size > 0) {
      const fixedTtl = m.cfg.timers.fixedTtl;
      const slack = m.cfg.timers.expirySlack;
      const ttlOf = (f: AffinityFlow): number => Math.min(fixedTtl, Math.max(1, m.store.remainingTtl(f) - slack));
      pushed = m.pushAffinities(m.store.entries(), ttlOf);
    }
    this.resyncFrom = null;
    this.resyncState = 'none';
    for (const p of this.peers.values()) if (p.alive && p.role === 'backup') this.sender.addPeer(p.id, p.endpoint);
    this.beat();
    this.channel.socket.flush();
    if (replaced.length > 0) {
      this.stats.takeovers++;
      this.stats.lastTakeoverMs = Math.round(this.now() - since);
    }
    this.onEvent(replaced.length > 0 ? 'takeover' : 'role', {
      role: 'primary',
      reason,
      epoch: this.epoch,
      replaced: replaced.map((r) => r.name),
      adopted,
      pushed,
      flows: m.store.size,
      sinceLastHeartbeatMs: Math.round(t0 - since),
      workMs: Math.round((this.now() - t0) * 10) / 10,
    });
  }

  private stepDown(winner: PeerState): void {
    this.manager.active = false;
    this.stats.stepDowns++;
    for (const id of this.sender.peerIds()) this.sender.removePeer(id);
    this.manager.sendWildcards(this.manager.cfg.timers.wildcardTtl);
    this.onEvent('step-down', { to: winner.name, theirEpoch: winner.epoch, ourEpoch: this.epoch });
    this.beat();
    this.requestResync(winner);
  }
}

/** How far ahead of the wall clock a peer's epoch may be (2^24 takeovers: 194 days of one a second). */
const EPOCH_AHEAD_MAX = 1 << 24;

/**
 * Epochs must grow across restarts too: an agent ignores a takeover notice with a lower epoch than one
 * it applied before, so a manager pair restarted from epoch 1 would otherwise never be able to cancel a
 * dead peer on an agent that outlived them. Seconds since 2020 (fits u32 until 2156) as a floor.
 */
function wallClockEpoch(): number {
  return Math.max(0, Math.floor(Date.now() / 1000) - 1_577_836_800);
}

function beats(a: { id: number; epoch: number; precedence: number }, b: { id: number; epoch: number; precedence: number }): boolean {
  if (a.epoch !== b.epoch) return a.epoch > b.epoch;
  return beatsByPrecedence(a, b);
}

function beatsByPrecedence(a: { id: number; precedence: number }, b: { id: number; precedence: number }): boolean {
  if (a.precedence !== b.precedence) return a.precedence > b.precedence;
  return a.id > b.id;
}

function overlaps(a: Array<[number, number]>, b: Array<[number, number]>): boolean {
  for (const [na, ma] of a) {
    for (const [nb, mb] of b) {
      const m = (ma & mb) >>> 0; // the shorter prefix's mask
      if (((na & m) >>> 0) === ((nb & m) >>> 0)) return true;
    }
  }
  return false;
}
