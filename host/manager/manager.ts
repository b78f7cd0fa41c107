// The service manager: multicasts wildcard affinities for its VIPs, answers each new flow's first
// packet with fixed affinities for both directions (backend picked by the balancer, remembered in
// the store), renews them on every interest match, closes them on FIN/RST, and tells its
// replication hook about every affinity it sends so a backup can mirror it.
import {
  FixedAffinityFlag,
  ipToU32,
  type Action,
  type FixedEntry,
  type MessageOf,
  type ServiceMessage,
  type WildcardEntry,
} from '../protocol/index.ts';
import type { ManagerConfig, VipConfig, WasmlbConfig } from '../config/index.ts';
import type { Outgoing, ServiceChannel } from '../transport/channel.ts';
import type { Endpoint } from '../transport/udp.ts';
import { createBalancer, makeBackend, type Backend, type Balancer, type FlowKey } from './decision.ts';
import { admitFlow, AffinityStore, flowAffinities, StoreError, type AffinityFlow, type AffinityUpdate, type DirectionAffinity } from './store.ts';
import { HealthMonitor, healthOptionsOf } from './health.ts';

/** Interest bits (the firmware's numbering, carried on the wire in interest criteria masks). */
export const Interest = { FIN: 1 << 0, SYN: 1 << 1, RST: 1 << 2, ALL: 1 << 15 } as const;

/** A manager's wire identity: FNV-1a of its configured name, so every process derives the same id. */
export function managerId(identity: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < identity.length; i++) h = Math.imul(h ^ identity.charCodeAt(i), 0x01000193);
  return h >>> 0 || 1;
}

export interface Vip {
  readonly config: VipConfig;
  readonly proto: number;
  readonly ip: number;
  readonly port: number;
  readonly balancer: Balancer;
  /** The current set (a reload replaces it: `reloadVips`). */
  backends: readonly Backend[];
  /** Backends a reload removed; their flows drain (shown while any is left). */
  draining: readonly Backend[];
  /** A reload removed the VIP: no new flows; its wildcards stay until its last flow ends. */
  removed: boolean;
  readonly health: HealthMonitor | null;
}

/** What a reload applied. */
export interface ReloadResult {
  /** VIPs (address:port) added, or whose backend set changed. */
  changed: string[];
  /** VIPs (address:port) removed: they take no new flow and go when their last flow has ended. */
  removed: string[];
}

export interface ManagerOptions {
  config: WasmlbConfig;
  manager: ManagerConfig;
  channel: ServiceChannel;
  now: () => number;
  /** Agents reached by unicast (in addition to the multicast group). */
  agents?: Endpoint[];
  /** Called with every flow whose affinities were sent to an agent (new flow, renewal, close). */
  onAffinitySent?: (flow: AffinityFlow) => void;
  onEvent?: (event: string, fields: Record<string, unknown>) => void;
}

export interface ManagerStats {
  interestMatches: number;
  newFlows: number;
  renewals: number;
  closes: number;
  noBackend: number;
  unknownFlow: number;
  /** Return packets of flows this manager did not know, taken on with the backend that sent them. */
  adopted: number;
  /** New flows refused because a reload removed their VIP. */
  vipRemoved: number;
  keyConflicts: number;
  deniesReceived: number;
  expired: number;
  wildcardUpdates: number;
  /** Interest matches with an all-zero identifier: agents announcing their control address. */
  agentAnnounces: number;
  errors: number;
}

export class ServiceManager {
  readonly id: number;
  readonly identity: string;
  readonly store: AffinityStore;
  /** The VIPs served (a reload may add some: `reloadVips`). */
  readonly vips: Vip[];
  readonly stats: ManagerStats = {
    interestMatches: 0,
    newFlows: 0,
    renewals: 0,
    closes: 0,
    noBackend: 0,
    unknownFlow: 0,
    adopted: 0,
    vipRemoved: 0,
    keyConflicts: 0,
    deniesReceived: 0,
    expired: 0,
    wildcardUpdates: 0,
    agentAnnounces: 0,
    errors: 0,
  };
  /** Answering agents (primary, or a backup after takeover). A passive backup only stores. */
  active: boolean;
  readonly cfg: ManagerConfig;
  private readonly channel: ServiceChannel;
  private readonly now: () => number;
  private readonly agents = new Map<string, Endpoint>();
  private readonly wildcardTargets: Endpoint[] = [];
  private readonly control: { addr: number; port: number };
  private readonly onAffinitySent: (flow: AffinityFlow) => void;
  private readonly onEvent: (event: string, fields: Record<string, unknown>) => void;
  private timers: NodeJS.Timeout[] = [];
  /** The sender endpoint of the last interest match (already in `agents`). */
  private lastFrom: Endpoint | null = null;
  /** The interest criteria every fixed affinity carries (FIN/RST to our control address); never mutated. */
  private readonly closeInterest: Action;

  constructor(opts: ManagerOptions) {
    this.cfg = opts.manager;
    this.identity = opts.manager.identity;
    this.id = managerId(this.identity);
    this.channel = opts.channel;
    this.now = opts.now;
    this.active = opts.manager.role === 'primary';
    this.onAffinitySent = opts.onAffinitySent ?? (() => undefined);
    this.onEvent = opts.onEvent ?? (() => undefined);
    this.control = { addr: ipToU32(opts.manager.control.address), port: opts.channel.socket.local.port };
    this.closeInterest = { kind: 'interest-criteria', addr: this.control.addr, port: this.control.port, mask: Interest.FIN | Interest.RST, data: false, copy: false, hold: false };
    this.store = new AffinityStore({
      now: opts.now,
      timers: {
        agentFixedTtlMs: opts.manager.timers.fixedTtl,
        expirySlackMs: opts.manager.timers.expirySlack,
        backupSlackMs: opts.manager.timers.backupSlack,
        stickyMs: opts.manager.timers.sticky,
      },
    });
    this.vips = opts.config.vips.map((v) => this.makeVip(v));
    const mc = opts.config.agent.multicast;
    if (mc.enabled) this.wildcardTargets.push({ address: mc.group, port: mc.port });
    for (const a of opts.agents ?? []) this.agents.set(`${a.address}:${a.port}`, a);
    this.channel.onMessage((m, from) => this.handleMessage(m, from));
  }

  private makeVip(v: VipConfig): Vip {
    const backends = v.backends.map((b) => makeBackend(b.address, b.port, b.weight));
    const balancer = createBalancer(this.cfg.balancer, backends);
    const health = v.healthCheck.type !== 'none' ? new HealthMonitor(backends, healthOptionsOf(v.healthCheck)) : null;
    const vip: Vip = { config: v, proto: v.protocol === 'udp' ? 17 : 6, ip: ipToU32(v.address), port: v.port, balancer, backends, draining: [], removed: false, health };
    health?.onChange((c) => {
      balancer.setHealth(c.id, c.healthy);
      this.onEvent('health', { backend: c.id, healthy: c.healthy, reason: c.reason, vip: `${v.address}:${v.port}` });
      if (!c.healthy && v.unhealthyFlows === 'remove') this.removeBackendFlows(vip, c.id);
    });
    return vip;
  }

  /** Starts wildcard refresh, store expiry and health checks. */
  start(): void {
    const t = this.cfg.timers;
    this.sendWildcards(t.wildcardTtl);
    this.timers.push(setInterval(() => this.sendWildcards(t.wildcardTtl), t.wildcardRefresh));
    this.timers.push(setInterval(() => this.expire(), 100));
    for (const v of this.vips) v.health?.start();
  }

  /** Stops timers; with `withdraw`, cancels this manager's wildcards on the agents (TTL 0). */
  async stop(withdraw: boolean): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    if (withdraw) this.sendWildcards(0);
    await Promise.all(this.vips.map((v) => v.health?.stop()));
  }

  expire(): void {
    for (const flow of this.store.expire()) {
      this.stats.expired++;
      this.vipOf(flow.proto, flow.vipIp, flow.vipPort)?.balancer.onFlowEnd(flow.backend);
    }
    if (this.vips.some((v) => v.removed) && this.now() >= this.nextDrainCheck) this.finishRemovedVips();
  }

  /** Earliest time of the next scan for removed VIPs left without flows (a scan walks the store). */
  private nextDrainCheck = 0;

  /**
   * Removed VIPs whose last flow has ended leave: their wildcards (and the return wildcards of backends
   * no other VIP of the protocol has) are withdrawn from the agents, their health checks stop.
   */
  private finishRemovedVips(): void {
    this.nextDrainCheck = this.now() + 1000;
    const left = new Set<Vip>();
    for (const f of this.store.entries()) {
      const v = this.vipOf(f.proto, f.vipIp, f.vipPort);
      if (v?.removed) left.add(v);
    }
    const done = this.vips.filter((v) => v.removed && !left.has(v));
    if (done.length === 0) return;
    const ttl0 = this.vipWildcards(done, 0);
    for (const v of done) {
      this.vips.splice(this.vips.indexOf(v), 1);
      void v.health?.stop();
      this.onEvent('vip-removed', { vip: `${v.config.address}:${v.port}` });
    }
    this.withdrawWildcards(ttl0);
  }

  /** Sends these TTL-0 wildcards, but for the return wildcards of a backend another VIP still has. */
  private withdrawWildcards(entries: WildcardEntry[]): void {
    const kept = entries.filter((w) => !this.vips.some((v) => this.returnWildcardOf(v, w)));
    this.sendWildcardEntries(kept, [...this.wildcardTargets, ...this.agents.values()]);
  }

  // ---- wildcards ------------------------------------------------------------------------------------

  /** Wildcards for every VIP: clients → VIP, and backends → clients for the return direction. */
  wildcardEntries(ttlMs: number): WildcardEntry[] {
    return this.vipWildcards(this.vips, ttlMs);
  }

  private vipWildcards(vips: readonly Vip[], ttlMs: number): WildcardEntry[] {
    const interest = this.wildcardInterest();
    const out: WildcardEntry[] = [];
    for (const v of vips) {
      for (const prefix of this.cfg.clientDomain) {
        const [net, len] = parsePrefix(prefix);
        out.push({
          affinity: { protocol: v.proto, srcAddr: net, srcMask: len, dstAddr: v.ip, dstMask: 0xffffffff, srcPort: 0, dstPort: v.port, flags: 0, ttlMs },
          actions: [interest],
        });
      }
      if (this.cfg.mode === 'nat') out.push(...this.returnWildcards(v.proto, v.backends, ttlMs, interest));
    }
    return out;
  }

  /** Whether `w` is one of VIP v's return wildcards (the same backend → client domain). */
  private returnWildcardOf(v: Vip, w: WildcardEntry): boolean {
    const a = w.affinity;
    return this.cfg.mode === 'nat' && a.protocol === v.proto && a.dstPort === 0 && v.backends.some((b) => b.ip === a.srcAddr && b.port === a.srcPort);
  }

  private wildcardInterest(): Action {
    return { kind: 'interest-criteria', addr: this.control.addr, port: this.control.port, mask: Interest.ALL, data: true, copy: false, hold: false };
  }

  /** The return direction of NAT: each backend → the client domain. */
  private returnWildcards(proto: number, backends: readonly Backend[], ttlMs: number, interest: Action): WildcardEntry[] {
    const out: WildcardEntry[] = [];
    for (const prefix of this.cfg.clientDomain) {
      const [net, len] = parsePrefix(prefix);
      for (const b of backends) {
        out.push({
          affinity: { protocol: proto, srcAddr: b.ip, srcMask: 0xffffffff, dstAddr: net, dstMask: len, srcPort: b.port, dstPort: 0, flags: 0, ttlMs },
          actions: [interest],
        });
      }
    }
    return out;
  }

  /**
   * Applies the backend lists of a reloaded configuration to the running VIPs: new flows are balanced
   * over the new set at once, flows already placed keep their backend (a removed backend drains: its
   * fixed affinities live on until the flows end), health checks follow the set, and the agents get the
   * return-direction wildcards of added backends (those of removed ones withdrawn). A VIP added is
   * served at once (health checks, wildcards); a VIP removed drains: no new flow, and it goes when its
   * last flow has ended (finishRemovedVips). Other settings need a restart (run.ts lists them).
   */
  reloadVips(vips: readonly VipConfig[]): ReloadResult {
    const fresh = new Map(vips.map((v) => [vipConfigId(v), v]));
    const result: ReloadResult = { changed: [], removed: [] };
    const withdrawn: WildcardEntry[] = [];
    for (const v of this.vips) {
      const name = `${v.config.address}:${v.port}`;
      const id = vipConfigId(v.config);
      const next = fresh.get(id);
      fresh.delete(id);
      if (!next) {
        // drains: existing flows keep their backend (their renewals need the VIP's wildcards), new ones are refused
        if (!v.removed) result.removed.push(name);
        v.removed = true;
        continue;
      }
      const back = v.removed;
      v.removed = false;
      const backends = next.backends.map((b) => makeBackend(b.address, b.port, b.weight));
      const same = backends.length === v.backends.length && backends.every((b, i) => b.id === v.backends[i]!.id && b.weight === v.backends[i]!.weight);
      if (same) {
        if (back) result.changed.push(name);
        continue;
      }
      const gone = v.backends.filter((b) => !backends.some((n) => n.id === b.id));
      v.balancer.setBackends(backends);
      v.health?.setTargets(backends); // a Backend is a HealthTarget
      v.backends = backends;
      const flows = this.store.flowsPerBackend();
      v.draining = [...v.draining.filter((d) => !backends.some((n) => n.id === d.id) && (flows.get(d.id) ?? 0) > 0), ...gone];
      if (this.cfg.mode === 'nat') withdrawn.push(...this.returnWildcards(v.proto, gone, 0, this.wildcardInterest()));
      result.changed.push(name);
    }
    for (const nv of fresh.values()) {
      const v = this.makeVip(nv);
      this.vips.push(v);
      if (this.timers.length > 0) v.health?.start(); // started: probe like the others
      result.changed.push(`${nv.address}:${nv.port}`);
    }
    if (result.changed.length > 0) {
      this.sendWildcards(this.cfg.timers.wildcardTtl);
      this.withdrawWildcards(withdrawn);
    }
    if (result.removed.length > 0) this.nextDrainCheck = 0;
    return result;
  }

  sendWildcards(ttlMs: number): void {
    this.sendWildcardsTo(ttlMs, [...this.wildcardTargets, ...this.agents.values()]);
  }

  private sendWildcardsTo(ttlMs: number, targets: Endpoint[]): void {
    this.stats.wildcardUpdates++;
    this.sendWildcardEntries(this.wildcardEntries(ttlMs), targets);
  }

  private sendWildcardEntries(entries: WildcardEntry[], targets: Endpoint[]): void {
    // Keep each message well under the datagram limit.
    for (let i = 0; i < entries.length; i += 64) {
      this.channel.sendMany(
        {
          type: 'affinity-update-wildcard',
          servicePrecedence: { value: this.cfg.servicePrecedence, wildcardFirst: false },
          backupPrecedence: this.announcedPrecedence(),
          wildcards: entries.slice(i, i + 64),
        },
        targets,
      );
    }
  }

  /**
   * The backup precedence agents see in our wildcards. The one that answers (active) always beats
   * every passive manager, whatever their configured precedences: a returning old primary with a
   * higher configured precedence must not draw new flows while it is only a backup.
   */
  announcedPrecedence(): number {
    const p = this.cfg.backupPrecedence;
    return this.active ? Math.min(0xffff, 0x8000 + p) : Math.min(0x7fff, p);
  }

  /** Sends a message to every agent (multicast group and unicast list): takeover notices. */
  notifyAgents(msg: Outgoing): void {
    this.channel.sendMany(msg, [...this.wildcardTargets, ...this.agents.values()]);
  }

  // ---- interest matches --------------------------------------------------------------------------------

  handleMessage(msg: ServiceMessage, from: Endpoint): void {
    try {
      this.dispatch(msg, from);
    } catch (e) {
      // One message must never take the manager (and every flow's state) down.
      this.stats.errors++;
      this.onEvent('error', { type: msg.type, error: e instanceof Error ? e.message : String(e) });
    }
  }

  private dispatch(msg: ServiceMessage, from: Endpoint): void {
    switch (msg.type) {
      case 'interest-match-wildcard':
      case 'interest-match-fixed': {
        // Messages coalesced in one datagram share its `from` object: one agent-map update for all.
        let isNew = false;
        if (from !== this.lastFrom) {
          const key = `${from.address}:${from.port}`;
          isNew = !this.agents.has(key);
          this.agents.set(key, from);
          this.lastFrom = from;
        }
        if (isAnnounce(msg.identifier)) {
          // An agent making itself known (no flow): it gets our wildcards now, not at the next refresh.
          this.stats.agentAnnounces++;
          if (isNew) this.sendWildcardsTo(this.cfg.timers.wildcardTtl, [from]);
        } else if (this.active) this.interestMatch(msg, from);
        break;
      }
      case 'affinity-update-deny':
        this.stats.deniesReceived++;
        this.onEvent('deny-received', { agent: `${from.address}:${from.port}`, denied: msg.denied.length, type: msg.deniedType });
        for (const f of msg.fixed) {
          const flow = this.store.remove({ proto: f.protocol, srcIp: f.srcAddr, srcPort: f.srcPort, dstIp: f.dstAddr, dstPort: f.dstPort });
          if (!flow) continue;
          this.vipOf(flow.proto, flow.vipIp, flow.vipPort)?.balancer.onFlowEnd(flow.backend);
          this.onAffinitySent(flow); // replicated as a removal
        }
        break;
      default:
        this.extraHandler?.(msg, from);
    }
  }

  /** Messages the manager core does not handle (replication, heartbeats) go here. */
  extraHandler: ((msg: ServiceMessage, from: Endpoint) => void) | null = null;

  private interestMatch(msg: MessageOf<'interest-match-wildcard'> | MessageOf<'interest-match-fixed'>, from: Endpoint): void {
    this.stats.interestMatches++;
    const id = msg.identifier;
    const key: FlowKey = { proto: id.protocol, srcIp: id.srcAddr, srcPort: id.srcPort, dstIp: id.dstAddr, dstPort: id.dstPort };
    const existing = this.store.lookup(key);
    let update: AffinityUpdate | null = null;
    const vip = this.vipOf(key.proto, key.dstIp, key.dstPort);
    if (existing && (id.reason & (Interest.FIN | Interest.RST)) !== 0) {
      update = this.store.close(key, id.reason & Interest.RST ? 'rst' : 'fin');
      this.stats.closes++;
    } else if (vip?.removed && (!existing || (existing.state === 'closing' && opensConnection(key, msg.packet)))) {
      // A VIP a reload removed takes no new flow (it is only there until its flows have ended), not even
      // a new connection on a closing flow's key.
      this.stats.vipRemoved++;
    } else if (vip) {
      // Client → VIP: the flow's backend (duplicate SYNs and retransmits keep theirs), or a new pick.
      const opens = opensConnection(key, msg.packet);
      const admission = admitFlow(this.store, vip.balancer, key, this.cfg.mode, this.identity, opens);
      if (admission.kind === 'new') {
        this.stats.newFlows++;
        update = admission.update;
      } else if (admission.kind === 'existing') {
        this.stats.renewals++;
        update = admission.update;
      } else if (admission.kind === 'no-backend') this.stats.noBackend++;
      else this.stats.keyConflicts++;
    } else if (existing) {
      update = this.store.renew(key);
      this.stats.renewals++;
    } else {
      // A return packet (backend → client) of a flow this manager does not know.
      update = this.adoptReturn(key, msg.packet);
      if (update) this.stats.adopted++;
      else this.stats.unknownFlow++;
    }
    if (update) this.sendUpdate(update, from, msg.packet);
  }

  /**
   * A backend's packet to a client, of a flow no store here holds: one placed by a manager that died
   * before its replication reached us (or one whose fixed affinities expired with no manager to renew
   * them). The packet names the flow's backend, so the flow is taken on with that backend instead of
   * being cut: a server that talks first (a download) would otherwise retransmit into the void. The
   * backend must serve exactly one VIP of the packet's protocol (several: the one whose Maglev pick for
   * the client is this backend, else none); a RST is not adopted (that flow is ending).
   */
  private adoptReturn(key: FlowKey, packet: Uint8Array | undefined): AffinityUpdate | null {
    if (this.cfg.mode !== 'nat' || (key.proto === 6 && tcpFlags(packet) & 0x04)) return null;
    const clientKeyOf = (vip: Vip): FlowKey => ({ proto: key.proto, srcIp: key.dstIp, srcPort: key.dstPort, dstIp: vip.ip, dstPort: vip.port });
    let candidates: { vip: Vip; backend: Backend }[] = [];
    for (const vip of this.vips) {
      // a removed VIP takes no new flow, not even this way (it would keep it from draining)
      const backend = vip.proto === key.proto && !vip.removed ? vip.backends.find((b) => b.ip === key.srcIp && b.port === key.srcPort) : undefined;
      if (backend) candidates.push({ vip, backend });
    }
    // Maglev picks are pure functions of the key: they tell which VIP's flow this is (rr / wlc can't)
    if (candidates.length > 1) candidates = candidates.filter((c) => c.vip.balancer.kind === 'maglev' && c.vip.balancer.pick(clientKeyOf(c.vip))?.id === c.backend.id);
    if (candidates.length !== 1) return null;
    const { vip, backend } = candidates[0]!;
    const clientKey = clientKeyOf(vip);
    // the client's side already placed elsewhere: not this backend's flow
    if (this.store.lookup(clientKey)) return null;
    try {
      const update = this.store.insertAbsent({ key: clientKey, backend, mode: 'nat', owner: this.identity });
      vip.balancer.onFlowStart(backend);
      return update;
    } catch (err) {
      if (err instanceof StoreError && err.code === 'KEY_CONFLICT') return null;
      throw err;
    }
  }

  /** Sends both directions' fixed affinities of the flow (and the packet back) to an agent. */
  sendUpdate(update: AffinityUpdate, to: Endpoint, packet?: Uint8Array): void {
    this.channel.send({ type: 'affinity-update-fixed', fixed: this.fixedEntries(update.flow, Math.ceil(update.agentTtlMs)), packet }, to);
    this.onAffinitySent(update.flow);
  }

  /**
   * Sends flows' affinities to every known agent and the multicast group (takeover push: a backup
   * may never have heard from an agent); several flows per message.
   */
  pushAffinities(flows: Iterable<AffinityFlow>, ttlOf: (f: AffinityFlow) => number): number {
    const agents = [...this.wildcardTargets, ...this.agents.values()];
    let batch: FixedEntry[] = [];
    let n = 0;
    const flush = (): void => {
      if (batch.length === 0) return;
      this.channel.sendMany({ type: 'affinity-update-fixed', fixed: batch }, agents);
      batch = [];
    };
    for (const f of flows) {
      batch.push(...this.fixedEntries(f, Math.ceil(ttlOf(f))));
      n++;
      if (batch.length >= 32) flush();
    }
    flush();
    return n;
  }

  /**
   * Both directions' fixed affinities of a flow: the entries `flowAffinities` describes (client →
   * VIP, then the return direction), written out directly on this per-flow path.
   */
  fixedEntries(flow: AffinityFlow, ttlMs: number): FixedEntry[] {
    const b = flow.backend;
    const flags = FixedAffinityFlag.Information;
    const toBackend: FixedEntry = {
      affinity: { protocol: flow.proto, srcAddr: flow.clientIp, dstAddr: flow.vipIp, srcPort: flow.clientPort, dstPort: flow.vipPort, flags, ttlMs },
      actions:
        flow.mode === 'nat'
          ? [{ kind: 'nat', srcAddr: undefined, srcPort: undefined, dstAddr: b.ip, dstPort: b.port }, this.closeInterest]
          : [{ kind: 'dispatch', nextHop: b.ip }, this.closeInterest],
    };
    const toClient: FixedEntry =
      flow.mode === 'nat'
        ? {
            affinity: { protocol: flow.proto, srcAddr: b.ip, dstAddr: flow.clientIp, srcPort: b.port, dstPort: flow.clientPort, flags, ttlMs },
            actions: [{ kind: 'nat', srcAddr: flow.vipIp, srcPort: flow.vipPort, dstAddr: undefined, dstPort: undefined }, this.closeInterest],
          }
        : {
            affinity: { protocol: flow.proto, srcAddr: flow.vipIp, dstAddr: flow.clientIp, srcPort: flow.vipPort, dstPort: flow.clientPort, flags, ttlMs },
            actions: [this.closeInterest],
          };
    return [toBackend, toClient];
  }

  /** `fixedEntries` by way of `flowAffinities` (the reference the direct version must equal). */
  fixedEntriesReference(flow: AffinityFlow, ttlMs: number): FixedEntry[] {
    const a = flowAffinities(flow);
    return [this.entryOf(a.toBackend, ttlMs), this.entryOf(a.toClient, ttlMs)];
  }

  private entryOf(d: DirectionAffinity, ttlMs: number): FixedEntry {
    const actions: Action[] = [];
    if (d.rewrite) actions.push({ kind: 'nat', srcAddr: d.rewrite.srcIp, srcPort: d.rewrite.srcPort, dstAddr: d.rewrite.dstIp, dstPort: d.rewrite.dstPort });
    if (d.dispatchTo !== null) actions.push({ kind: 'dispatch', nextHop: d.dispatchTo });
    actions.push(this.closeInterest);
    return {
      affinity: { protocol: d.key.proto, srcAddr: d.key.srcIp, dstAddr: d.key.dstIp, srcPort: d.key.srcPort, dstPort: d.key.dstPort, flags: FixedAffinityFlag.Information, ttlMs },
      actions,
    };
  }

  knownAgents(): Endpoint[] {
    return [...this.agents.values()];
  }

  addAgent(ep: Endpoint): void {
    this.agents.set(`${ep.address}:${ep.port}`, ep);
  }

  vipOf(proto: number, ip: number, port: number): Vip | undefined {
    return this.vips.find((v) => v.proto === proto && v.ip === ip && v.port === port);
  }

  /** The flows of this VIP on that backend (another VIP sharing the backend keeps its own). */
  private removeBackendFlows(vip: Vip, backendId: string): void {
    const victims = [...this.store.entries()].filter((f) => f.backend.id === backendId && f.proto === vip.proto && f.vipIp === vip.ip && f.vipPort === vip.port);
    for (const f of victims) {
      const a = flowAffinities(f);
      this.store.remove(a.toBackend.key);
      this.vipOf(f.proto, f.vipIp, f.vipPort)?.balancer.onFlowEnd(f.backend);
    }
    this.pushAffinities(victims, () => 0);
    for (const f of victims) this.onAffinitySent(f); // replicated as removals
  }
}

/** An agent's announcement: an interest match about no flow at all (see host/agent/run.ts). */
function isAnnounce(id: { protocol: number; srcAddr: number; dstAddr: number; srcPort: number; dstPort: number; reason: number }): boolean {
  return id.protocol === 0 && id.srcAddr === 0 && id.dstAddr === 0 && id.srcPort === 0 && id.dstPort === 0 && id.reason === 0;
}

/** "10.0.0.0/8" → [network, mask]. */
export function parsePrefix(prefix: string): [number, number] {
  const [addr, lenText] = prefix.split('/');
  const len = Number(lenText ?? 32);
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
  return [(ipToU32(addr!) & mask) >>> 0, mask];
}

/** A VIP's identity in a configuration: protocol, address and port (what a reload matches on). */
export function vipConfigId(v: Pick<VipConfig, 'protocol' | 'address' | 'port'>): string {
  return `${v.protocol}/${v.address}:${v.port}`;
}

/** Whether the packet can open a connection: a TCP SYN, any other protocol, or no packet to tell. */
function opensConnection(key: FlowKey, packet: Uint8Array | undefined): boolean {
  return key.proto !== 6 || !packet || (tcpFlags(packet) & 0x02) !== 0;
}

/** The TCP flags of `packet` (IPv4, as attached to an interest match); 0 when there are none to read. */
function tcpFlags(packet: Uint8Array | undefined): number {
  if (!packet || packet.length < 20) return 0;
  const l4 = (packet[0]! & 15) * 4;
  return packet.length > l4 + 13 ? packet[l4 + 13]! : 0;
}
