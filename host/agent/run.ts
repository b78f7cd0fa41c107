// `wasmlb agent --tun <name>`: the forwarding agent on a router's TUN device. Packets the kernel routes
// into the device (client → VIP, backend replies) are read in batches straight into the firmware's packet
// slots, run through it, and what it forwards (rewritten) is written back for the kernel to route on.
//
// One queue = one `QueueAgent`: a firmware instance, its ForwardingAgent, a unicast control socket, the
// wildcard multicast membership and the tick timer. With `--queues N` the device is opened with N queues
// (IFF_MULTI_QUEUE) and each queue runs its own QueueAgent on its own worker thread (host/agent/tun-worker.ts):
// nothing is shared between them, so the hot path never crosses threads. Each queue has its own control
// socket (control port + queue index): a manager answers an interest match to the socket it came from;
// wildcards reach every queue by multicast (each joins the group) or by unicast to each queue's socket.
// The only traffic between threads is control-plane: every fixed affinity update a queue receives is
// passed on (without its packet) to the other queues, because the kernel may hash a flow's other direction
// to another queue. The main thread opens the device, keeps the VIP routes, serves metrics/status, logs.
//
// Nothing on the host changes silently: without `--setup` the `ip` commands it would run (the device's
// addresses and routes, and one route per advertised VIP while its wildcard affinity lives) are printed
// on stdout; with `--setup` they run.
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { Worker } from 'node:worker_threads';
import { u32ToIp, type MessageOf, type ServiceMessage, type WildcardAffinity as WireWildcard } from '../protocol/index.ts';
import type { WasmlbConfig } from '../config/index.ts';
import { securityOf } from '../manager/run.ts';
import { managerId } from '../manager/manager.ts';
import { runCommands, tunSetupCommands, VipRoutes } from '../io/netconf.ts';
import { TunDevice, type TunError, type TunQueue, type TunStats } from '../io/tun.ts';
import { pumpTun, type TunPump } from '../io/tun-pump.ts';
import { agentMetrics, agentSnapshotFromFirmware, agentStatus, buildInfo, controlEvents, controlMetrics, createLogger, createRegistry, startStatusServer, controlRejections } from '../ops/index.ts';
import type { LogLevel, StatusServer } from '../ops/index.ts';
import { ServiceChannel } from '../transport/channel.ts';
import { ControlSocket, type Endpoint } from '../transport/udp.ts';
import { ForwardingAgent, TAKEOVER_NOTICE, type AgentStats } from './agent.ts';
import { ForwardingFirmware } from './wasm.ts';
import { ttlSeconds } from './affinity.ts';

export class AgentRunError extends Error {
  constructor(
    readonly code: 'BAD_ARGUMENT' | 'WORKER_FAILED' | 'DEVICE_FAILED',
    message: string,
  ) {
    super(message);
    this.name = 'AgentRunError';
  }
}

type EventSink = (event: string, fields: Record<string, unknown>) => void;

/** Announce this agent to the unicast manager list this often (a restarted manager learns it again). */
const ANNOUNCE_MS = 1000;
const TICK_MS = 10;
const VIP_CHECK_MS = 50;

// ---- advertised VIPs ------------------------------------------------------------------------------------

/**
 * The VIPs advertised by live wildcard affinities, mirrored on the host side from the wildcards the
 * firmware took (the firmware has no listing call; one it refused advertises nothing): a wildcard with a
 * destination prefix and a destination port is a VIP (clients → VIP); the return-direction wildcards
 * (backend → any client) are not, nor is one whose destination mask is not a prefix (no route can say
 * it). An entry lives for the TTL the firmware gave it, goes with TTL 0, and with a takeover notice for
 * its manager.
 */
export class AdvertisedVips {
  private readonly live = new Map<string, { sender: number; prefix: string; expiresMs: number }>();

  /** A wildcard the firmware installed, refreshed or deleted (agent's onWildcardInstalled). */
  onWildcard(a: WireWildcard, sender: number, nowMs: number): void {
    const mask = a.dstMask >>> 0;
    if (mask === 0 || a.dstPort === 0 || !isPrefixMask(mask)) return;
    const prefix = `${u32ToIp((a.dstAddr & mask) >>> 0)}/${popcount(mask)}`;
    const key = `${sender}|${a.protocol}|${a.srcAddr}/${a.srcMask}|${prefix}:${a.dstPort}`;
    if (a.ttlMs === 0) this.live.delete(key);
    else this.live.set(key, { sender, prefix, expiresMs: nowMs + ttlSeconds(a.ttlMs) * 1000 });
  }

  /** Every wildcard of manager `sender` is gone (takeover notice). */
  dropSender(sender: number): void {
    for (const [k, v] of this.live) if (v.sender === sender) this.live.delete(k);
  }

  /** Live VIP prefixes, sorted. */
  prefixes(nowMs: number): string[] {
    const out = new Set<string>();
    for (const [k, v] of this.live) {
      if (v.expiresMs <= nowMs) this.live.delete(k);
      else out.add(v.prefix);
    }
    return [...out].sort();
  }
}

/** Ones then zeros (a.b.c.d/len), as a route needs. */
function isPrefixMask(mask: number): boolean {
  const inv = ~mask >>> 0;
  return ((inv + 1) & inv) >>> 0 === 0;
}

function popcount(v: number): number {
  let n = 0;
  for (; v !== 0; v = (v & (v - 1)) >>> 0) n++;
  return n;
}

// ---- one queue ------------------------------------------------------------------------------------------

export interface QueueAgentOptions {
  config: WasmlbConfig;
  queue: TunQueue;
  /** Bind address of this queue's unicast control socket (port 0 = any). */
  control: Endpoint;
  /** Managers to announce this queue's control socket to (unicast). */
  managers: readonly Endpoint[];
  /** Wire identity (sender id) of this queue's control channel. */
  sender: number;
  onEvent: EventSink;
  onVipsChanged: (prefixes: string[]) => void;
  /**
   * Called with every fixed affinity update a manager sent this queue (packet stripped), so the other
   * queues can install the same affinities (`applyShared`): the kernel may hash a flow's other direction
   * to another queue.
   */
  onFixedUpdate?: ((msg: MessageOf<'affinity-update-fixed'>, from: Endpoint) => void) | undefined;
}

/** What a queue reports for metrics and status (structured-clonable, so a worker can post it). */
export interface QueueSnapshot {
  index: number;
  control: Endpoint;
  counters: Record<string, bigint>;
  capacities: { fixed: number; wildcards: number };
  heldPackets: number;
  /** Packets kept for a resend at a takeover. */
  unanswered: number;
  agent: AgentStats;
  tun: TunStats;
  pump: { batches: number; packets: number };
  channel: { sent: number; received: number; sentByType: Record<string, number>; receivedByType: Record<string, number>; refused: number; refusedByCode: Record<string, number> };
  security: { unauthenticated: number; forged: number; wrongKey: number; replayed: number } | null;
  vips: string[];
}

export class QueueAgent {
  private readonly timers: NodeJS.Timeout[] = [];
  private readonly vips = new AdvertisedVips();
  private vipKey = '';
  private pump: TunPump | null = null;

  private constructor(
    private readonly opts: QueueAgentOptions,
    readonly firmware: ForwardingFirmware,
    readonly agent: ForwardingAgent,
    readonly channel: ServiceChannel,
    readonly multicast: ServiceChannel | null,
    private readonly verifier: ReturnType<typeof securityOf>['verifier'],
  ) {}

  static async start(opts: QueueAgentOptions): Promise<QueueAgent> {
    const cfg = opts.config.agent;
    const fw = await ForwardingFirmware.load({
      budgetBytes: cfg.firmware.budget,
      ...(cfg.firmware.fixedCapacity !== undefined ? { fixedCapacity: cfg.firmware.fixedCapacity } : {}),
      ...(cfg.firmware.wildcardCapacity !== undefined ? { wildcardCapacity: cfg.firmware.wildcardCapacity } : {}),
    });
    if (fw.capacities.packetSlot < opts.queue.maxPacket + 1) {
      throw new AgentRunError('BAD_ARGUMENT', `firmware packet slot ${fw.capacities.packetSlot} B < TUN maxPacket + 1`);
    }
    const sec = securityOf(opts.config);
    const socket = await ControlSocket.open({ bind: opts.control });
    const channel = new ServiceChannel({ socket, sender: opts.sender, ...sec });
    let multicast: ServiceChannel | null = null;
    const mc = cfg.multicast;
    if (mc.enabled) {
      const msock = await ControlSocket.open({
        bind: { address: '0.0.0.0', port: mc.port },
        multicast: { group: mc.group, interface: mc.interface, ttl: mc.ttl },
        reuseAddr: true,
      });
      multicast = new ServiceChannel({ socket: msock, sender: opts.sender, ...sec });
    }
    const now = (): number => Math.floor(performance.now());
    let qa: QueueAgent | null = null;
    const agent = new ForwardingAgent({
      firmware: fw,
      control: channel,
      sink: opts.queue,
      now,
      holdQueue: { size: cfg.holdQueue.size, deadlineMs: cfg.holdQueue.deadline },
      onEvent: opts.onEvent,
      onWildcardInstalled: (w, sender) => qa?.vips.onWildcard(w, sender, now()),
    });
    qa = new QueueAgent(opts, fw, agent, channel, multicast, sec.verifier);
    // The agent registered itself as the channels' handler; route through ours to see wildcards pass.
    channel.onMessage((m, from) => qa.onControl(m, from));
    multicast?.onMessage((m, from) => qa.onControl(m, from));
    channel.onRefusal((err, from) => opts.onEvent('refused', { code: err.code, from: `${from.address}:${from.port}` }));
    // a message the agent failed on is logged and dropped: the firmware's tables outlive it
    for (const c of [channel, multicast]) {
      c?.onHandlerError((err, m, from) => opts.onEvent('handler_error', { type: m.type, from: `${from.address}:${from.port}`, error: err instanceof Error ? err.message : String(err) }));
    }
    qa.begin();
    return qa;
  }

  get control(): Endpoint {
    return this.channel.socket.local;
  }

  private begin(): void {
    const now = (): number => Math.floor(performance.now());
    this.pump = pumpTun(this.opts.queue, this.agent, {
      onError: (err: TunError) => this.opts.onEvent('device_error', { queue: this.opts.queue.index, code: err.code, message: err.message }),
    });
    this.timers.push(setInterval(() => this.agent.tick(), TICK_MS));
    this.timers.push(setInterval(() => this.checkVips(now()), VIP_CHECK_MS));
    if (this.opts.managers.length > 0) {
      this.announce();
      this.timers.push(setInterval(() => this.announce(), ANNOUNCE_MS));
    }
  }

  /**
   * Tells the unicast manager list where this queue's control socket is: an interest match with an
   * all-zero identifier and no packet: a manager learns the sender's address, as from every interest
   * match, counts it as an announcement and sends its wildcards to a newly learned agent at once.
   */
  private announce(): void {
    const identifier = { protocol: 0, srcAddr: 0, dstAddr: 0, srcPort: 0, dstPort: 0, flags: 0, reason: 0 };
    this.channel.sendMany({ type: 'interest-match-wildcard', identifier, packet: undefined }, this.opts.managers);
  }

  /** A fixed affinity update another queue received: installed here too (its packet stays there). */
  applyShared(msg: MessageOf<'affinity-update-fixed'>, from: Endpoint): void {
    this.agent.applySharedFixed(msg, from);
  }

  private onControl(msg: ServiceMessage, from: Endpoint): void {
    const now = Math.floor(performance.now());
    if (msg.type === 'affinity-update-fixed' && this.opts.onFixedUpdate) this.opts.onFixedUpdate({ ...msg, packet: undefined }, from);
    const notices = this.agent.stats.takeoverNotices;
    this.agent.handleMessage(msg, from);
    if (msg.type === 'heartbeat' && this.agent.stats.takeoverNotices !== notices && msg.identity?.hostName === TAKEOVER_NOTICE) {
      this.vips.dropSender(msg.identity.addr >>> 0);
    }
    if (msg.type === 'affinity-update-wildcard' || msg.type === 'heartbeat') this.checkVips(now);
  }

  private checkVips(now: number): void {
    const list = this.vips.prefixes(now);
    const key = list.join(',');
    if (key === this.vipKey) return;
    this.vipKey = key;
    this.opts.onVipsChanged(list);
  }

  snapshot(): QueueSnapshot {
    const fw = this.firmware;
    return {
      index: this.opts.queue.index,
      control: this.control,
      counters: fw.counters(),
      capacities: { fixed: fw.capacities.fixed, wildcards: fw.capacities.wildcards },
      heldPackets: this.agent.hold.size,
      unanswered: this.agent.unanswered.packets,
      agent: { ...this.agent.stats },
      tun: { ...this.opts.queue.stats },
      pump: { ...(this.pump?.stats ?? { batches: 0, packets: 0 }) },
      channel: {
        ...this.channel.stats,
        sentByType: { ...this.channel.stats.sentByType },
        receivedByType: { ...this.channel.stats.receivedByType },
        refusedByCode: { ...this.channel.stats.refusedByCode },
      },
      security: this.verifier ? { ...this.verifier.counters } : null,
      vips: this.vips.prefixes(Math.floor(performance.now())),
    };
  }

  async stop(): Promise<void> {
    for (const t of this.timers) clearInterval(t);
    this.timers.length = 0;
    this.pump?.stop();
    this.pump = null;
    this.channel.socket.flush();
    await this.channel.close();
    await this.multicast?.close();
    this.opts.queue.close();
  }
}

// ---- the process ----------------------------------------------------------------------------------------

export interface AgentRunOptions {
  config: WasmlbConfig;
  /** TUN device name (attached if it exists, e.g. persistent; else created for the process's lifetime). */
  tun: string;
  /** Queues (IFF_MULTI_QUEUE when > 1), one firmware instance and worker thread each. */
  queues: number;
  /** Run the `ip` commands instead of printing them. */
  setup: boolean;
  /** Addresses of the device (CIDR), for the setup commands. */
  addresses: readonly string[];
  /** Prefixes routed into the device besides the VIPs (CIDR). */
  routes: readonly string[];
  /** Control socket bind (overrides agent.control); queue i binds port + i, skipping the multicast port (port 0: any). */
  control?: Endpoint | undefined;
  /** Unicast manager list (overrides agent.managers). */
  managers?: readonly Endpoint[] | undefined;
  /** Metrics/status port (overrides agent.metricsPort); 0 = off. */
  statusPort?: number | undefined;
  logLevel: LogLevel;
  /** Where the `ip` command lines go without --setup; default stdout. */
  print?: (line: string) => void;
  /** A queue's device or worker thread failed (its queue is no longer read); `wasmlb agent` stops and exits 1. */
  onDeviceError?: (() => void) | undefined;
}

export interface RunningAgent {
  readonly device: TunDevice;
  readonly controls: Endpoint[];
  readonly statusUrl: string | null;
  snapshot(): QueueSnapshot[];
  stop(): Promise<void>;
}

/** A queue run in this thread or on a worker: the same surface to the main thread. */
interface QueueHandle {
  control: Endpoint;
  /** Install a fixed affinity update another queue received. */
  share(msg: MessageOf<'affinity-update-fixed'>, from: Endpoint): void;
  snapshot(): QueueSnapshot | null;
  stop(): Promise<void>;
}

const WORKER_BOOT = `import(${JSON.stringify(import.meta.resolve('tsx/esm/api'))})
  .then((m) => { m.register(); return import(${JSON.stringify(new URL('./tun-worker.ts', import.meta.url).href)}); })`;

/** What the main thread sends a queue worker at start (workerData). */
export interface QueueWorkerJob {
  fd: number;
  index: number;
  maxPacket: number;
  config: WasmlbConfig;
  control: Endpoint;
  managers: Endpoint[];
  sender: number;
}

/** Messages a queue worker posts to the main thread. */
export type QueueWorkerMessage =
  | { type: 'ready'; control: Endpoint }
  | { type: 'failed'; message: string }
  | { type: 'event'; event: string; fields: Record<string, unknown> }
  | { type: 'vips'; prefixes: string[] }
  | { type: 'snapshot'; snapshot: QueueSnapshot }
  | { type: 'fixed'; msg: MessageOf<'affinity-update-fixed'>; from: Endpoint }
  | { type: 'stopped' };

/** Messages the main thread sends a queue worker. */
export type QueueWorkerCommand = { type: 'stop' } | { type: 'fixed'; msg: MessageOf<'affinity-update-fixed'>; from: Endpoint };

function startWorker(
  job: QueueWorkerJob,
  onEvent: EventSink,
  onVips: (p: string[]) => void,
  onFixed: (msg: MessageOf<'affinity-update-fixed'>, from: Endpoint) => void,
): Promise<QueueHandle> {
  const w = new Worker(WORKER_BOOT, { eval: true, workerData: job });
  let latest: QueueSnapshot | null = null;
  let stopped: (() => void) | null = null;
  let ready = false;
  let exited = false;
  return new Promise((resolve, reject) => {
    w.on('message', (m: QueueWorkerMessage) => {
      switch (m.type) {
        case 'ready':
          ready = true;
          resolve({
            control: m.control,
            share: (msg, from) => w.postMessage({ type: 'fixed', msg, from } satisfies QueueWorkerCommand),
            snapshot: () => latest,
            stop: () =>
              new Promise<void>((done) => {
                if (exited) return done();
                stopped = done;
                // a dead worker never answers: its exit ends the wait (an unref'd timer alone let the
                // process end with code 0 and no cleanup once the other workers were gone)
                w.once('exit', () => done());
                const t = setTimeout(() => void w.terminate().then(() => done()), 2000);
                t.unref();
                w.postMessage({ type: 'stop' } satisfies QueueWorkerCommand);
              }),
          });
          break;
        case 'failed':
          reject(new AgentRunError('WORKER_FAILED', `queue ${job.index}: ${m.message}`));
          break;
        case 'event':
          onEvent(m.event, { queue: job.index, ...m.fields });
          break;
        case 'vips':
          onVips(m.prefixes);
          break;
        case 'fixed':
          onFixed(m.msg, m.from);
          break;
        case 'snapshot':
          latest = m.snapshot;
          break;
        case 'stopped':
          stopped?.();
          break;
      }
    });
    w.once('error', (err) => {
      if (ready) onEvent('worker_error', { queue: job.index, message: err.message });
      reject(new AgentRunError('WORKER_FAILED', `queue ${job.index}: ${err.message}`));
    });
    // A queue's thread that ends without being asked to leaves its queue unread: as bad as a failed device.
    w.once('exit', (code) => {
      exited = true;
      if (ready && stopped === null) onEvent('worker_error', { queue: job.index, message: `worker exited (${code})` });
    });
  });
}

/** The wire identity of queue `index` of this host's agent on `tun`. */
export function agentSender(tun: string, index: number): number {
  return managerId(`agent:${hostname()}:${tun}:${index}`);
}

function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

/** Starts the agent on the TUN device; resolves once every queue is ready ("ready" logged). */
export async function runAgent(opts: AgentRunOptions): Promise<RunningAgent> {
  if (!Number.isInteger(opts.queues) || opts.queues < 1 || opts.queues > 64) {
    throw new AgentRunError('BAD_ARGUMENT', `--queues must be 1..64, got ${opts.queues}`);
  }
  const config = opts.config;
  const log = createLogger({ level: opts.logLevel, name: 'wasmlb-agent', destination: 2, bindings: { tun: opts.tun } });
  const print = opts.print ?? ((line: string) => process.stdout.write(line + '\n'));
  const ev = controlEvents(log);
  const onEvent: EventSink = (event, fields) => {
    // an update this agent refused: the operations event (docs/operations.md, Logs)
    if (event === 'deny') return ev.deny({ agent: `${opts.tun}${fields['queue'] === undefined ? '' : `#${String(fields['queue'])}`}`, manager: String(fields['manager']), reason: `${String(fields['segments'])} of a ${String(fields['type'])} refused` });
    if (event === 'device_error' || event === 'worker_error') {
      log.error({ event, ...fields });
      opts.onDeviceError?.();
    } else if (event === 'handler_error') log.error({ event, ...fields }); // one message failed: the agent goes on
    else log.info({ event, ...fields });
  };

  const device = TunDevice.open(opts.tun, { queues: opts.queues });
  const netconf = (lines: string[], what: string): void => {
    if (lines.length === 0) return;
    if (!opts.setup) {
      print(`# ${what} (run these, or start the agent with --setup):`);
      for (const l of lines) print(l);
    }
    log.info({ event: 'netconf', what, applied: opts.setup, commands: lines });
  };
  const vipRoutes = new VipRoutes(device.name, { apply: opts.setup });
  const controls: Endpoint[] = [];
  const handles: QueueHandle[] = [];
  try {
    netconf(
      runCommands(tunSetupCommands({ device: device.name, addresses: opts.addresses, routes: opts.routes, disableIpv6: true, acceptLocal: true }), { dryRun: !opts.setup }),
      `device ${device.name}`,
    );
    // A VIP is routed into the device only while every queue holds its wildcard: the kernel hashes flows
    // over the queues, and a queue without the wildcard would forward the VIP's packets untouched (back
    // into the device, round and round until the TTL runs out).
    const vipsByQueue: string[][] = Array.from({ length: opts.queues }, () => []);
    const onVips = (index: number, prefixes: string[]): void => {
      vipsByQueue[index] = prefixes;
      if (opts.queues > 1) log.info({ event: 'queue_vips', queue: index, vips: prefixes });
      const everywhere = vipsByQueue[0]!.filter((v) => vipsByQueue.every((q) => q.includes(v)));
      const lines = vipRoutes.update(everywhere, (command, error) => log.error({ event: 'route_failed', command, error }));
      if (lines.length > 0) {
        netconf(lines, 'VIP routes');
        log.info({ event: 'vips', vips: vipRoutes.routed() });
      }
    };
    const base = opts.control ?? config.agent.control;
    const managers = [...(opts.managers ?? config.agent.managers)];
    // Queue i binds the i-th port from the control port on, skipping the multicast port (the defaults
    // 7400 and 7401 are neighbours); port 0 lets every queue take any free port.
    const mc = config.agent.multicast;
    const ports: number[] = [];
    for (let p = base.port; base.port !== 0 && ports.length < opts.queues && p <= 65535; p++) {
      if (!(mc.enabled && p === mc.port)) ports.push(p);
    }
    const bindOf = (i: number): Endpoint => ({ address: base.address, port: base.port === 0 ? 0 : ports[i]! });
    if (opts.queues === 1) {
      const q = await QueueAgent.start({
        config,
        queue: device.queues[0]!,
        control: bindOf(0),
        managers,
        sender: agentSender(device.name, 0),
        onEvent,
        onVipsChanged: (p) => onVips(0, p),
      });
      handles.push({ control: q.control, share: (m, from) => q.applyShared(m, from), snapshot: () => q.snapshot(), stop: () => q.stop() });
    } else {
      const started = await Promise.allSettled(
        device.queues.map((q, i) =>
          startWorker(
            { fd: q.fd, index: i, maxPacket: q.maxPacket, config, control: bindOf(i), managers, sender: agentSender(device.name, i) },
            onEvent,
            (p) => onVips(i, p),
            // Every other queue installs what this one was sent.
            (m, from) => handles.forEach((h, k) => k !== i && h.share(m, from)),
          ),
        ),
      );
      for (const s of started) if (s.status === 'fulfilled') handles.push(s.value);
      const failed = started.find((s): s is PromiseRejectedResult => s.status === 'rejected');
      if (failed) throw failed.reason;
    }
    for (const h of handles) controls.push(h.control);
  } catch (err) {
    await Promise.all(handles.map((h) => h.stop()));
    device.close();
    throw err;
  }

  const snapshot = (): QueueSnapshot[] => handles.map((h) => h.snapshot()).filter((s): s is QueueSnapshot => s !== null);
  const sum = <K extends 'counters'>(key: K): Record<string, bigint> => {
    const out: Record<string, bigint> = {};
    for (const s of snapshot()) for (const [k, v] of Object.entries(s[key])) out[k] = (out[k] ?? 0n) + v;
    return out;
  };
  let status: StatusServer | null = null;
  const port = opts.statusPort ?? config.agent.metricsPort;
  const ver = version();
  if (port > 0) {
    const registry = createRegistry({ processMetrics: true });
    buildInfo(registry, { version: ver, role: 'agent' });
    const snap = (): ReturnType<typeof agentSnapshotFromFirmware> => {
      const all = snapshot();
      const held = all.reduce((a, s) => a + s.heldPackets, 0);
      const first = all[0];
      const caps = first ? { fixed: first.capacities.fixed * all.length, wildcards: first.capacities.wildcards } : { fixed: 0, wildcards: 0 };
      const agent = all.reduce((a, s) => ({ overflow: a.overflow + s.agent.holdOverflow, expired: a.expired + s.agent.holdExpired }), { overflow: 0, expired: 0 });
      const unansweredPackets = all.reduce((a, s) => a + s.unanswered, 0);
      const resentAfterTakeover = all.reduce((a, s) => a + s.agent.resentAfterTakeover, 0);
      // the host's own drops next to the firmware's: the device's and those of packets from managers
      const total = (f: (s: QueueSnapshot) => number): number => all.reduce((a, s) => a + f(s), 0);
      const drops = {
        hold_overflow: agent.overflow,
        tun_oversize: total((s) => s.tun.rxOversize),
        tun_write_error: total((s) => s.tun.txErrors),
        returned_oversize: total((s) => s.agent.oversizePackets),
        no_interest_target: total((s) => s.agent.noInterestTarget),
      };
      return agentSnapshotFromFirmware(sum('counters'), caps, { heldPackets: held, unansweredPackets, resentAfterTakeover, drops });
    };
    agentMetrics(registry, snap);
    controlMetrics(registry, () => {
      const all = snapshot();
      const sent: Record<string, number> = {};
      const received: Record<string, number> = {};
      const add = (into: Record<string, number>, from: Record<string, number>): void => {
        for (const [k, v] of Object.entries(from)) into[k] = (into[k] ?? 0) + v;
      };
      const rejected: Record<string, number> = {};
      for (const s of all) {
        add(sent, s.channel.sentByType);
        add(received, s.channel.receivedByType);
        controlRejections(s.channel.refusedByCode, s.security !== null, rejected);
      }
      return { sent, received, rejected };
    });
    status = await startStatusServer({
      port,
      host: config.agent.metricsAddress,
      registry,
      // The VIPs routed into the device (the agent knows no backends: those are the managers' business).
      status: () => agentStatus(snap(), { name: device.name, version: ver, vips: vipRoutes.routed().map((vip) => ({ vip, backends: [] })) }),
    });
  }

  log.info({
    event: 'ready',
    tun: device.name,
    queues: opts.queues,
    multiQueue: device.multiQueue,
    control: controls[0],
    controls,
    multicast: config.agent.multicast.enabled ? `${config.agent.multicast.group}:${config.agent.multicast.port}` : null,
    managers: opts.managers ?? config.agent.managers,
    setup: opts.setup,
    status: status?.url ?? null,
  });

  let stopping: Promise<void> | null = null;
  const stop = (): Promise<void> =>
    (stopping ??= (async () => {
      const final = snapshot();
      // every step runs whatever one before it threw: the routes above all (a route left behind sends the
      // VIP's traffic into a device nobody reads)
      const failed: unknown[] = [];
      for (const h of handles) await h.stop().catch((e: unknown) => failed.push(e));
      for (const step of [() => netconf(vipRoutes.clear(), 'VIP routes removed'), () => device.close()]) {
        try {
          step();
        } catch (e) {
          failed.push(e);
        }
      }
      await status?.close().catch((e: unknown) => failed.push(e));
      for (const e of failed) log.error({ event: 'stop_error', error: e instanceof Error ? e.message : String(e) });
      log.info({
        event: 'stopped',
        queues: final.map((s) => ({ index: s.index, tun: s.tun, pump: s.pump, agent: s.agent })),
      });
    })());
  return { device, controls, statusUrl: status?.url ?? null, snapshot, stop };
}

/** `wasmlb agent`: runs until SIGTERM/SIGINT, then stops cleanly and exits 0 (1 after a device failure). */
export async function runAgentProcess(opts: AgentRunOptions): Promise<void> {
  let agent: RunningAgent | null = null;
  let failed = false;
  const shutdown = (): void => {
    void (agent?.stop() ?? Promise.resolve()).then(
      () => process.exit(failed ? 1 : 0),
      () => process.exit(1),
    );
  };
  agent = await runAgent({
    ...opts,
    // A device that fails does not come back by itself: stop, and let the supervisor restart us.
    onDeviceError: () => {
      failed = true;
      shutdown();
    },
  });
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
}

