// The forwarding agent host: owns one firmware instance, its control channel(s) and a packet sink.
// A packet source writes a batch into the firmware's packet slots and calls `processBatch`; the
// agent acts on every verdict (forward to the sink, interest match to a manager, hold), applies the
// affinity updates managers send, and runs a packet a manager hands back through the firmware again,
// marked as seen by that manager so it cannot loop.
import {
  DenyReason,
  SegmentType,
  ipToU32,
  u32ToIp,
  type DeniedSegment,
  type FixedAffinity as WireFixed,
  type FixedEntry,
  type IdentityInfo,
  type ServiceMessage,
  type MessageOf,
  type WildcardAffinity as WireWildcard,
} from '../protocol/index.ts';
import type { ServiceChannel, Outgoing } from '../transport/channel.ts';
import type { Endpoint } from '../transport/udp.ts';
import { endpointKey, firmwareActions, firmwareFixedEntry, firmwareWildcard, Interner, UnsupportedActionError } from './affinity.ts';
import { HoldQueue } from './hold.ts';

/** Host name of the identity-info segment that marks a manager heartbeat as a takeover notice. */
export const TAKEOVER_NOTICE = 'wasmlb-takeover';
import { DescOut, Status, VerdictCode, type AffinityKey, type ForwardingFirmware } from './wasm.ts';

/** Where forwarded packets go: a pcap writer, a TUN device. Must consume `packet` before returning. */
export interface PacketSink {
  send(packet: Uint8Array, nextHop: number): void;
}

export interface AgentOptions {
  firmware: ForwardingFirmware;
  /** Unicast control channel: interest matches out, affinity updates in. */
  control: ServiceChannel;
  /** Channel on the wildcard multicast group (receive only), if any. */
  multicast?: ServiceChannel | undefined;
  sink: PacketSink;
  now: () => number;
  holdQueue?: { size: number; deadlineMs: number };
  /** Who this agent is (identity info segment in its interest matches). */
  identity?: IdentityInfo | undefined;
  /** Called with every fixed affinity installed (or deleted, TTL 0) from an affinity update. */
  onFixedInstalled?: ((e: FixedEntry) => void) | undefined;
  /** Called with every wildcard affinity the firmware took (installed, refreshed, or deleted with TTL 0). */
  onWildcardInstalled?: ((w: WireWildcard, sender: number) => void) | undefined;
  /** Called for each control-plane event worth a log line. */
  onEvent?: (event: string, fields: Record<string, unknown>) => void;
  /**
   * Keep a copy of each packet handed to a manager (TO_MANAGER) until a fixed affinity for its flow
   * arrives, and run the copies of a replaced manager again when its takeover notice comes (default
   * true): the first packet of a flow that started while the primary was dead but not yet declared so
   * then reaches the new primary at the takeover, not at the client's retransmission a second later.
   * Off for hosts that keep and retry such packets themselves (the replay).
   */
  resendOnTakeover?: boolean;
}

/** Denied segments (with their echoed affinities, ≤ 48 bytes each with the segment) per deny message. */
const DENY_PART = 512;

/** The interest target of an affinity being deleted: none needed, none taken. */
const noTarget = (): number => 0;

/** Packets kept for a resend after a takeover: at most this many flows and bytes (a flood of large first
 *  packets must not grow the heap), each for at most this long. */
const UNANSWERED_MAX = 4096;
const UNANSWERED_MAX_BYTES = 4 << 20;
const UNANSWERED_TTL_MS = 3000;

interface Unanswered {
  /** The flow's affinity key (the map is keyed by its hash). */
  key: AffinityKey;
  bytes: Uint8Array;
  /** Firmware owner index of the manager the packet went to. */
  owner: number;
  at: number;
}

/** 30-bit hash of an affinity key: a small-integer map key, no string per new flow. */
function keyHash(proto: number, saddr: number, sport: number, daddr: number, dport: number): number {
  let h = Math.imul(saddr ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ daddr, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16) ^ ((sport << 16) | dport), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ proto, 0xc2b2ae35);
  return (h ^ (h >>> 16)) & 0x3fffffff;
}

const STATUS_TO_DENY: Record<number, number> = {
  [Status.TABLE_FULL]: DenyReason.TableFull,
  [Status.NO_WILDCARD]: DenyReason.NoSupportingWildcard,
  [Status.UNSUPPORTED_ACTION]: DenyReason.UnsupportedAction,
  [Status.PATTERN_LIMIT]: DenyReason.TableFull,
};

export interface AgentStats {
  interestMatches: number;
  packetsToManager: number;
  holdOverflow: number;
  holdExpired: number;
  /** Packets from a manager (returned or released) larger than a batch slot: counted, not run. */
  oversizePackets: number;
  /** Fixed affinities of an update shared by another queue that this queue could not install. */
  sharedRefused: number;
  noInterestTarget: number;
  wildcardsInstalled: number;
  fixedInstalled: number;
  fixedDeleted: number;
  updatesDenied: number;
  packetsReturned: number;
  ipPacketOnly: number;
  forwarded: number;
  takeoverNotices: number;
  /** Packets a replaced manager never answered, run again at its takeover notice. */
  resentAfterTakeover: number;
}

export class ForwardingAgent {
  readonly firmware: ForwardingFirmware;
  readonly hold: HoldQueue;
  readonly stats: AgentStats = {
    interestMatches: 0,
    packetsToManager: 0,
    holdOverflow: 0,
    holdExpired: 0,
    oversizePackets: 0,
    sharedRefused: 0,
    noInterestTarget: 0,
    wildcardsInstalled: 0,
    fixedInstalled: 0,
    fixedDeleted: 0,
    updatesDenied: 0,
    packetsReturned: 0,
    ipPacketOnly: 0,
    forwarded: 0,
    takeoverNotices: 0,
    resentAfterTakeover: 0,
  };
  /** Highest epoch of a takeover notice applied. */
  private takeoverEpoch = 0;
  private lastNotice = '';
  private readonly control: ServiceChannel;
  private readonly sink: PacketSink;
  private readonly now: () => number;
  private readonly onEvent: (event: string, fields: Record<string, unknown>) => void;
  private readonly onFixedInstalled: ((e: FixedEntry) => void) | undefined;
  private readonly onWildcardInstalled: ((w: WireWildcard, sender: number) => void) | undefined;
  /** Manager identities (wire sender ids) ↔ firmware owner indices. */
  private readonly owners = new Interner<number>((v) => String(v));
  /** Interest address:port ↔ firmware interest target indices. */
  private readonly targets = new Interner<Endpoint>(endpointKey);
  /** Interned target index by address * 2^16 + port (the interner never forgets, so neither does this). */
  private readonly targetByAddrPort = new Map<number, number>();
  private readonly internTarget = (addr: number, port: number): number | undefined => {
    const k = addr * 0x10000 + port;
    const found = this.targetByAddrPort.get(k);
    if (found !== undefined) return found;
    const t = this.targets.intern({ address: u32ToIp(addr), port });
    if (t !== undefined) this.targetByAddrPort.set(k, t);
    return t;
  };
  /** The last manager identity interned and its owner index (updates come in bursts from one). */
  private lastSender = -1;
  private lastOwner: number | undefined;
  /** Latest service manager interest data per owner, echoed in interest matches to that manager. */
  private readonly managerData = new Map<number, Uint8Array>();
  private readonly identity: IdentityInfo | undefined;
  private readonly fixedBase: number;
  private readonly fixedEntryBytes: number;
  private readonly mem: Uint8Array;
  private readonly resend: boolean;
  /** Packets handed to a manager and not answered by a fixed affinity yet, by key hash (oldest first;
   *  two flows with one hash keep the later: the resend is best effort). */
  private readonly unansweredByKey = new Map<number, Unanswered>();
  private unansweredBytes = 0;
  /** The clock at the last tick: the age of unanswered packets needs no finer one. */
  private tickNow: number;

  constructor(opts: AgentOptions) {
    this.firmware = opts.firmware;
    this.control = opts.control;
    this.sink = opts.sink;
    this.now = opts.now;
    this.onEvent = opts.onEvent ?? (() => undefined);
    this.onFixedInstalled = opts.onFixedInstalled;
    this.onWildcardInstalled = opts.onWildcardInstalled;
    this.identity = opts.identity;
    this.resend = opts.resendOnTakeover ?? true;
    this.tickNow = this.now();
    this.hold = new HoldQueue(opts.holdQueue?.size ?? 1024, opts.holdQueue?.deadlineMs ?? 20);
    const fw = this.firmware;
    const layout = fw.raw.layout();
    const words = new DataView(fw.memory.buffer);
    this.fixedBase = words.getUint32(layout + 11 * 4, true); // layout record word L.FIXED
    this.fixedEntryBytes = fw.capacities.fixedEntryBytes;
    this.mem = new Uint8Array(fw.memory.buffer);
    this.control.onMessage((m, from) => this.handleMessage(m, from));
    opts.multicast?.onMessage((m, from) => this.handleMessage(m, from));
  }

  /** Packets kept for a resend at a takeover (see AgentOptions.resendOnTakeover), and their bytes. */
  get unanswered(): { packets: number; bytes: number } {
    return { packets: this.unansweredByKey.size, bytes: this.unansweredBytes };
  }

  /** Owner index the firmware uses for a manager identity (interned on first sight). */
  ownerOf(sender: number): number | undefined {
    if (sender === this.lastSender) return this.lastOwner;
    const owner = this.owners.intern(sender);
    // Only a success is remembered: a full table may have room again never, but stay exact.
    if (owner !== undefined) {
      this.lastSender = sender;
      this.lastOwner = owner;
    }
    return owner;
  }

  /** Runs descriptors [0, count) (filled by the source) and acts on every verdict. */
  processBatch(count: number): void {
    const fw = this.firmware;
    fw.process(count, this.now());
    const d8 = fw.descriptorBytes;
    const d16 = fw.descriptorU16;
    const d32 = fw.descriptorU32;
    for (let i = 0; i < count; i++) {
      const base = i * 32;
      const verdict = d8[base + 12]!;
      if (verdict === VerdictCode.FORWARD) {
        this.sink.send(fw.packet(i), d32[(base + 16) >> 2]!);
        continue;
      }
      if (verdict === VerdictCode.DROP) continue;
      const flags = d16[(base + 14) >> 1]!;
      if (verdict === VerdictCode.COPY) {
        this.interestMatch(i, flags, (flags & DescOut.ATTACH) !== 0);
        this.sink.send(fw.packet(i), d32[(base + 16) >> 2]!);
      } else if (verdict === VerdictCode.TO_MANAGER) {
        const key = this.interestMatch(i, flags, true);
        if (key && this.resend) this.keepUnanswered(i, key);
      } else if (verdict === VerdictCode.HOLD) {
        this.holdPacket(i, flags);
      }
    }
    this.stats.forwarded = Number(fw.counter('FORWARDED'));
  }

  /** Copies packets into the batch and runs them (packets a manager returned, held packets). */
  runPackets(packets: readonly Uint8Array[], seenByOwner: number): void {
    const fw = this.firmware;
    const max = fw.capacities.batchMax;
    const slot = fw.capacities.packetSlot;
    const input = seenByOwner ? { seenByOwner } : undefined;
    let n = 0;
    for (const p of packets) {
      // a packet a manager returned can be anything: one that no slot holds is counted, not run
      if (p.length > slot) {
        this.stats.oversizePackets++;
        continue;
      }
      fw.writePacket(n++, p, input);
      if (n === max) {
        this.processBatch(n);
        n = 0;
      }
    }
    if (n > 0) this.processBatch(n);
  }

  /** Timers: the firmware's bounded expiry sweep, the hold queue's deadlines, unanswered packets' age. */
  tick(): void {
    const now = this.now();
    this.tickNow = now;
    this.firmware.tick(now);
    // insertion order is age order (keepUnanswered re-inserts): stop at the first young one
    for (const [h, u] of this.unansweredByKey) {
      if (now - u.at < UNANSWERED_TTL_MS) break;
      this.forgetUnanswered(h);
    }
    for (const p of this.hold.expire(now)) {
      this.stats.holdExpired++;
      this.sendPacketToManager(p.bytes, p.target, true);
    }
  }

  // ---- verdicts ------------------------------------------------------------------------------------

  /** Sends the interest match of descriptor i; returns the flow's key, or null when nothing was sent. */
  private interestMatch(i: number, flags: number, attach: boolean): AffinityKey | null {
    const fw = this.firmware;
    const target = this.targets.get(fw.interestTarget(i));
    if (!target) {
      this.stats.noInterestTarget++;
      return null;
    }
    const fixed = (flags & DescOut.FIXED) !== 0;
    const key = fixed ? this.fixedKeyAt(fw.affinitySlot(i)) : packetKey(fw.packet(i));
    if (!key) {
      this.stats.noInterestTarget++;
      return null;
    }
    this.stats.interestMatches++;
    if (attach) this.stats.packetsToManager++;
    const identifier = {
      protocol: key.proto,
      srcAddr: key.saddr,
      dstAddr: key.daddr,
      srcPort: key.sport,
      dstPort: key.dport,
      flags: fw.nextHop(i) !== 0 ? 1 : 0,
      reason: fw.interestBits(i),
    };
    const packet = attach ? fw.packet(i) : undefined;
    const identity = this.identity;
    const managerInterestData = this.managerData.size === 0 ? undefined : this.managerData.get(fw.owner(i));
    const msg: Outgoing = fixed
      ? { type: 'interest-match-fixed', identifier, packet, identity, managerInterestData }
      : { type: 'interest-match-wildcard', identifier, packet, identity, managerInterestData };
    this.control.send(msg, target);
    return key;
  }

  /** A fixed affinity arrived: the packet kept for its flow (if any) was answered. */
  private forgetAnswered(a: WireFixed): void {
    const h = keyHash(a.protocol, a.srcAddr, a.srcPort, a.dstAddr, a.dstPort);
    const k = this.unansweredByKey.get(h)?.key;
    if (k && k.saddr === a.srcAddr && k.daddr === a.dstAddr && k.sport === a.srcPort && k.dport === a.dstPort && k.proto === a.protocol) {
      this.forgetUnanswered(h);
    }
  }

  private forgetUnanswered(h: number): Unanswered | undefined {
    const u = this.unansweredByKey.get(h);
    if (u) {
      this.unansweredByKey.delete(h);
      this.unansweredBytes -= u.bytes.length;
    }
    return u;
  }

  /** Keeps descriptor i's packet, just handed to a manager for the flow `key`, until it is answered. */
  private keepUnanswered(i: number, key: AffinityKey): void {
    const fw = this.firmware;
    const bytes = fw.packet(i);
    const h = keyHash(key.proto, key.saddr, key.sport, key.daddr, key.dport);
    this.forgetUnanswered(h);
    if (bytes.length > UNANSWERED_MAX_BYTES) return;
    // the oldest make room
    while (this.unansweredByKey.size >= UNANSWERED_MAX || this.unansweredBytes + bytes.length > UNANSWERED_MAX_BYTES) {
      this.forgetUnanswered(this.unansweredByKey.keys().next().value!);
    }
    // a copy on the JS heap for the usual small first packet (V8 keeps typed arrays <= 64 B there)
    const copy = new Uint8Array(bytes.length);
    copy.set(bytes);
    this.unansweredByKey.set(h, { key, bytes: copy, owner: fw.owner(i), at: this.tickNow });
    this.unansweredBytes += copy.length;
  }

  private holdPacket(i: number, flags: number): void {
    const fw = this.firmware;
    const bytes = fw.packet(i);
    const key = packetKey(bytes);
    const targetIdx = fw.interestTarget(i);
    const flow = key ? flowId(key) : '';
    const first = flow !== '' && !this.hold.has(flow);
    if (flow !== '' && this.hold.hold(flow, bytes, targetIdx, this.now(), fw.owner(i))) {
      // One interest match per held flow; later packets of it wait for the same answer.
      if (first) this.interestMatch(i, flags, false);
      return;
    }
    this.stats.holdOverflow++;
    this.interestMatch(i, flags, true);
  }

  private sendPacketToManager(bytes: Uint8Array, targetIdx: number, expired: boolean): void {
    const target = this.targets.get(targetIdx);
    const key = packetKey(bytes);
    if (!target || !key) {
      this.stats.noInterestTarget++;
      return;
    }
    this.stats.packetsToManager++;
    this.control.send(
      {
        type: 'interest-match-wildcard',
        identifier: { protocol: key.proto, srcAddr: key.saddr, dstAddr: key.daddr, srcPort: key.sport, dstPort: key.dport, flags: 0, reason: expired ? 1 << 15 : 0 },
        packet: bytes,
      },
      target,
    );
  }

  // ---- control messages ------------------------------------------------------------------------------

  /**
   * Installs a fixed affinity update another queue of this agent received and answered (multi-queue: the
   * kernel may hash a flow's other direction here). What this queue refuses is counted, not denied: the
   * manager heard that queue's answer, and a deny would make it drop a flow that queue installed.
   */
  applySharedFixed(msg: MessageOf<'affinity-update-fixed'>, from: Endpoint): void {
    this.applyFixed({ ...msg, packet: undefined }, from, true);
  }

  handleMessage(msg: ServiceMessage, from: Endpoint): void {
    switch (msg.type) {
      case 'affinity-update-wildcard':
        this.applyWildcards(msg, from);
        break;
      case 'affinity-update-fixed':
        this.applyFixed(msg, from);
        break;
      case 'ip-packet-only':
        this.stats.ipPacketOnly++;
        this.runPackets([msg.packet], 0);
        break;
      case 'heartbeat':
        this.applyTakeoverNotice(msg);
        break;
      default:
        // Replication, heartbeats and interest matches are between managers; an agent ignores them.
        break;
    }
  }

  /**
   * Takeover notice (host/manager/role.ts): a manager that took over another's service sends a
   * heartbeat whose identity-info segment names the replaced manager (addr = its wire identity,
   * host name TAKEOVER_NOTICE). Every wildcard and fixed affinity that manager installed here is
   * dropped at once, so no new flow or FIN waits on a dead manager until its TTLs run out. A notice
   * with an epoch lower than one already applied is stale and ignored; a manager cannot cancel itself.
   * Returns how many affinities were removed.
   */
  applyTakeoverNotice(msg: MessageOf<'heartbeat'>): number {
    if (msg.heartbeat.role !== 'primary' || msg.identity?.hostName !== TAKEOVER_NOTICE) return 0;
    const replaced = msg.identity.addr >>> 0;
    if (replaced === msg.sender) return 0;
    if (msg.heartbeat.epoch < this.takeoverEpoch) return 0;
    // The same notice arrives by multicast and by unicast: apply (and log) it once.
    const notice = `${replaced}/${msg.sender}/${msg.heartbeat.epoch}`;
    if (notice === this.lastNotice) return 0;
    this.lastNotice = notice;
    this.takeoverEpoch = msg.heartbeat.epoch;
    const owner = this.owners.find(replaced);
    const removed = owner === undefined ? 0 : this.firmware.deleteByOwner(owner);
    this.stats.takeoverNotices++;
    // What the replaced manager never answered goes through the firmware again: its affinities are
    // gone, so the packets now meet the new owner's wildcards.
    const again: Uint8Array[] = [];
    if (owner !== undefined) {
      for (const [h, u] of this.unansweredByKey) {
        if (u.owner !== owner) continue;
        this.forgetUnanswered(h);
        again.push(u.bytes);
      }
      // held for it: at their deadline they would go to the dead manager
      for (const p of this.hold.releaseOwner(owner)) again.push(p.bytes);
    }
    this.stats.resentAfterTakeover += again.length;
    this.onEvent('takeover', { replaced, by: msg.sender, epoch: msg.heartbeat.epoch, removed, resent: again.length });
    if (again.length > 0) this.runPackets(again, 0);
    return removed;
  }

  /**
   * The owner index of an update's sender. Owner and interest target indices are never freed: only an
   * update that installs something takes a new one (one that only deletes, or is empty, must not use up
   * the tables); undefined when the sender has none (then nothing of it is here to delete).
   */
  private updateOwner(sender: number, entries: readonly { affinity: { ttlMs: number } }[]): number | undefined {
    return entries.some((e) => e.affinity.ttlMs > 0) ? this.ownerOf(sender) : this.owners.find(sender);
  }

  private applyWildcards(msg: MessageOf<'affinity-update-wildcard'>, from: Endpoint): void {
    const owner = this.updateOwner(msg.sender, msg.wildcards);
    this.keepInterestData(owner, msg.managerInterestData);
    const denied: DeniedSegment[] = [];
    const refused: WireWildcard[] = [];
    for (const e of msg.wildcards) {
      let status: number;
      const remove = e.affinity.ttlMs === 0;
      if (owner === undefined) status = remove ? Status.NOT_FOUND : Status.TABLE_FULL;
      else {
        try {
          const actions = remove ? {} : firmwareActions(e.actions, (t) => this.internTarget(ipToU32(t.address), t.port), u32ToIp);
          status = this.firmware.installWildcard(firmwareWildcard(e, owner, msg.servicePrecedence, msg.backupPrecedence, actions), this.now());
        } catch (err) {
          if (!(err instanceof UnsupportedActionError)) throw err;
          status = Status.UNSUPPORTED_ACTION;
        }
      }
      if (status === Status.OK) {
        this.stats.wildcardsInstalled++;
        this.onWildcardInstalled?.(e.affinity, msg.sender);
      } else if (status === Status.NOT_FOUND && e.affinity.ttlMs === 0) {
        this.onWildcardInstalled?.(e.affinity, msg.sender); // already gone: gone all the same
      } else {
        denied.push({ segmentType: SegmentType.WildcardAffinity, offset: 0, reason: STATUS_TO_DENY[status] ?? DenyReason.BadArgument });
        refused.push(e.affinity);
      }
    }
    if (denied.length > 0) this.deny(msg, from, denied, refused, []);
  }

  /** `shared`: the update came from another queue (applySharedFixed): refusals are counted, not denied. */
  private applyFixed(msg: MessageOf<'affinity-update-fixed'>, from: Endpoint, shared = false): void {
    const owner = this.updateOwner(msg.sender, msg.fixed);
    this.keepInterestData(owner, msg.managerInterestData);
    let denied: DeniedSegment[] | null = null;
    let refused: WireFixed[] | null = null;
    let released: Uint8Array[] | null = null;
    const fixed = msg.fixed;
    for (let i = 0; i < fixed.length; i++) {
      const e = fixed[i]!;
      let status: number;
      const remove = e.affinity.ttlMs === 0;
      if (owner === undefined) status = remove ? Status.NOT_FOUND : Status.TABLE_FULL;
      else {
        try {
          status = this.firmware.installFixed(firmwareFixedEntry(e, owner, remove ? noTarget : this.internTarget), this.now());
        } catch (err) {
          if (!(err instanceof UnsupportedActionError)) throw err;
          status = Status.UNSUPPORTED_ACTION;
        }
      }
      if (status === Status.OK) {
        if (this.unansweredByKey.size > 0) this.forgetAnswered(e.affinity);
        this.onFixedInstalled?.(e);
        if (e.affinity.ttlMs === 0) this.stats.fixedDeleted++;
        else this.stats.fixedInstalled++;
      } else if (!(status === Status.NOT_FOUND && e.affinity.ttlMs === 0)) {
        (denied ??= []).push({ segmentType: SegmentType.FixedAffinity, offset: 0, reason: STATUS_TO_DENY[status] ?? DenyReason.BadArgument });
        (refused ??= []).push(e.affinity);
      }
      // Held packets of the flow (none at all, the common case, costs no flow id).
      if (this.hold.size > 0) {
        const a = e.affinity;
        const flow = flowId({ proto: a.protocol, saddr: a.srcAddr, daddr: a.dstAddr, sport: a.srcPort, dport: a.dstPort });
        for (const p of this.hold.release(flow)) (released ??= []).push(p.bytes);
      }
    }
    if (denied !== null && shared) this.stats.sharedRefused += denied.length;
    else if (denied !== null) this.deny(msg, from, denied, [], refused ?? []);
    if (msg.packet) {
      this.stats.packetsReturned++;
      this.runPackets(released === null ? [msg.packet] : [msg.packet, ...released], owner ?? 0);
    } else if (released !== null) this.runPackets(released, owner ?? 0);
  }

  private keepInterestData(owner: number | undefined, data: Uint8Array | undefined): void {
    // Copied: the decoded segment is a view into a datagram buffer that is not ours to keep.
    if (owner !== undefined && data !== undefined) this.managerData.set(owner, Uint8Array.from(data));
  }

  private deny(
    msg: ServiceMessage,
    from: Endpoint,
    denied: DeniedSegment[],
    wildcards: WireWildcard[],
    fixed: WireFixed[],
  ): void {
    this.stats.updatesDenied++;
    this.onEvent('deny', { manager: endpointKey(from), type: msg.type, segments: denied.length });
    // denied[i] goes with the i-th echoed affinity; a large update's deny is sent in parts that each fit
    // one message (an echo of thousands of entries would not)
    for (let i = 0; i < denied.length; i += DENY_PART) {
      const part = { denied: denied.slice(i, i + DENY_PART), wildcards: wildcards.slice(i, i + DENY_PART), fixed: fixed.slice(i, i + DENY_PART) };
      this.control.send({ type: 'affinity-update-deny', deniedType: msg.type, deniedSequence: msg.sequence, ...part }, from);
    }
  }

  /** The affinity key stored in fixed table slot `slot` (wire order in memory). */
  private fixedKeyAt(slot: number): AffinityKey | null {
    if (slot >= this.firmware.capacities.fixedSlots) return null;
    const e = this.fixedBase + slot * this.fixedEntryBytes;
    const m = this.mem;
    return {
      saddr: ((m[e]! << 24) | (m[e + 1]! << 16) | (m[e + 2]! << 8) | m[e + 3]!) >>> 0,
      daddr: ((m[e + 4]! << 24) | (m[e + 5]! << 16) | (m[e + 6]! << 8) | m[e + 7]!) >>> 0,
      sport: (m[e + 8]! << 8) | m[e + 9]!,
      dport: (m[e + 10]! << 8) | m[e + 11]!,
      proto: m[e + 12]!,
    };
  }
}

/** The affinity key of an IPv4 packet (ports 0 for non-first fragments and other protocols). */
export function packetKey(p: Uint8Array): AffinityKey | null {
  if (p.length < 20 || p[0]! >> 4 !== 4) return null;
  const ihl = (p[0]! & 15) * 4;
  const proto = p[9]!;
  const saddr = ((p[12]! << 24) | (p[13]! << 16) | (p[14]! << 8) | p[15]!) >>> 0;
  const daddr = ((p[16]! << 24) | (p[17]! << 16) | (p[18]! << 8) | p[19]!) >>> 0;
  const fragOffset = ((p[6]! & 0x1f) << 8) | p[7]!;
  let sport = 0;
  let dport = 0;
  if ((proto === 6 || proto === 17) && fragOffset === 0 && p.length >= ihl + 4) {
    sport = (p[ihl]! << 8) | p[ihl + 1]!;
    dport = (p[ihl + 2]! << 8) | p[ihl + 3]!;
  }
  return { proto, saddr, daddr, sport, dport };
}

export function flowId(k: AffinityKey): string {
  return `${k.proto}/${k.saddr}:${k.sport}>${k.daddr}:${k.dport}`;
}
