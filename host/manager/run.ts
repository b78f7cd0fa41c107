// `wasmlb manager`: one service manager process. Logs NDJSON control-plane events on stderr; the
// first line with event "ready" carries its control endpoint, so a parent process can wait for it.
import { readFileSync } from 'node:fs';
import { Keyring, SecurityVerifier, type SecurityCounters } from '../protocol/index.ts';
import { buildInfo, controlMetrics, createRegistry, managerMetrics, controlRejections, type ManagerMetrics, type ManagerSnapshot } from '../ops/metrics.ts';
import { managerStatus, startStatusServer, type StatusServer } from '../ops/status.ts';
import { ConfigError, securityKeysOf, type ManagerConfig, type WasmlbConfig } from '../config/index.ts';
import { controlEvents, createLogger, type LogLevel } from '../ops/log.ts';
import { ServiceChannel } from '../transport/channel.ts';
import { ControlSocket, type Endpoint } from '../transport/udp.ts';
import { managerId, ServiceManager, vipConfigId } from './manager.ts';
import { faultDropRateFromEnv, ReplicationReceiver, ReplicationSender, storeDigest } from './replication.ts';
import { RoleController } from './role.ts';

export interface ManagerRunOptions {
  config: WasmlbConfig;
  manager: ManagerConfig;
  /** Agents to reach by unicast (wildcards and takeover pushes). */
  agents: Endpoint[];
  /**
   * Peer managers (heartbeats, replication, resync). Absent: the config's other managers' control
   * endpoints, unless this manager's control endpoint was overridden (then only peers that send us
   * heartbeats are known).
   */
  peers?: Endpoint[] | undefined;
  /** Log a "stats" event (store size and digest, role, replication counters) this often; 0 = never. */
  statsIntervalMs?: number | undefined;
  logLevel: LogLevel;
  /** Reads the configuration again (SIGHUP); absent when there is no file to read. */
  reload?: (() => WasmlbConfig) | undefined;
}

/**
 * What a reload does not apply that differs between the configuration the manager runs with and the
 * file now: this manager's own settings by key (`managers[a].timers`), `security`, `agent`, and the
 * settings of a VIP other than its backends (`vips[10.0.0.1:80].healthCheck`). Names only (no values:
 * keys live there).
 */
export function settingsNeedingRestart(running: WasmlbConfig, next: WasmlbConfig, identity: string): string[] {
  const was = running.managers.find((m) => m.identity === identity) as Record<string, unknown> | undefined;
  const now = next.managers.find((m) => m.identity === identity) as Record<string, unknown> | undefined;
  if (!was || !now) return [`managers[${identity}] ${now ? 'added' : 'gone'}`];
  const same = (a: unknown, b: unknown): boolean => JSON.stringify(a) === JSON.stringify(b);
  const out = [...new Set([...Object.keys(was), ...Object.keys(now)])].filter((k) => !same(was[k], now[k])).map((k) => `managers[${identity}].${k}`);
  for (const k of ['security', 'agent'] as const) if (!same(running[k], next[k])) out.push(k);
  // a VIP's settings other than its backends (health check, unhealthyFlows, …)
  const before = new Map(running.vips.map((v) => [vipConfigId(v), v as Record<string, unknown>]));
  for (const v of next.vips) {
    const old = before.get(vipConfigId(v));
    if (!old) continue;
    const cur = v as Record<string, unknown>;
    for (const k of Object.keys(cur)) if (k !== 'backends' && !same(old[k], cur[k])) out.push(`vips[${v.address}:${v.port}].${k}`);
  }
  return out;
}

/** The peers of a manager from the config: every other manager's control endpoint. */
export function configPeers(config: WasmlbConfig, self: ManagerConfig): Endpoint[] {
  return config.managers.filter((m) => m.identity !== self.identity).map((m) => ({ address: m.control.address, port: m.control.port }));
}

export function securityOf(config: WasmlbConfig): { keyring?: Keyring; verifier?: SecurityVerifier } {
  const s = config.security;
  if (!s) return {};
  // the send key and every accepted one (a key roll); messages are signed with keyId's
  const keyring = new Keyring(securityKeysOf(s), s.keyId);
  return { keyring, verifier: new SecurityVerifier({ keyring, required: s.require }) };
}

/** A manager with its failover parts, wired (the process body of `wasmlb manager`, also used in-process by the benchmark). */
export interface ManagerNode {
  manager: ServiceManager;
  channel: ServiceChannel;
  sender: ReplicationSender;
  receiver: ReplicationReceiver;
  role: RoleController;
  /** Role, store size and digest, replication and security counters (the "stats" log event). */
  failoverStats(): Record<string, unknown>;
  /** Stops timers; with `withdraw`, cancels the manager's wildcards on the agents. */
  close(withdraw: boolean): Promise<void>;
  /** The message verifier's counters (null without security). */
  security: SecurityCounters | null;
}

/** The manager's figures for its metrics and /status. */
export function managerSnapshot(node: ManagerNode): ManagerSnapshot {
  const m = node.manager;
  const perBackend = m.store.flowsPerBackend();
  const backends = m.vips.flatMap((v) => {
    const health = new Map(v.balancer.status().map((s) => [s.backend.id, s.healthy]));
    const vip = `${v.config.address}:${v.port}`;
    // a removed VIP drains as a whole: every backend shown draining until its last flow has ended
    const current = v.backends.map((b) => ({ vip, backend: b.id, healthy: health.get(b.id) ?? true, flows: perBackend.get(b.id) ?? 0, packets: 0, bytes: 0, ...(v.removed ? { draining: true } : {}) }));
    // removed by a reload, while flows placed before are left on them
    const draining = v.draining
      .filter((b) => (perBackend.get(b.id) ?? 0) > 0)
      .map((b) => ({ vip, backend: b.id, healthy: false, draining: true, flows: perBackend.get(b.id)!, packets: 0, bytes: 0 }));
    return [...current, ...draining];
  });
  const s = node.sender.stats;
  return {
    role: node.role.role,
    epoch: node.role.epoch,
    backends,
    replication: { sent: s.messagesSent, acked: s.acked, resent: s.resends, resyncState: node.role.resyncState },
    takeovers: { total: node.role.stats.takeovers, lastSeconds: node.role.stats.lastTakeoverMs === null ? null : node.role.stats.lastTakeoverMs / 1000 },
    adoptedFlows: m.stats.adopted,
  };
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string };
    return pkg.version ?? '0.0.0';
  } catch {
    return '0.0.0';
  }
}

export interface ManagerNodeOptions extends Omit<ManagerRunOptions, 'logLevel' | 'statsIntervalMs'> {
  onEvent: (event: string, fields: Record<string, unknown>) => void;
  /** Replication send → ack latency (ms) of every batch acked on its first send. */
  onAckLatency?: ((ms: number) => void) | undefined;
  /** Fraction of replication messages not sent (fault injection); default from WASMLB_FAULT_DROP_REPLICATION. */
  dropRate?: number | undefined;
}

export async function openManagerNode(opts: ManagerNodeOptions): Promise<ManagerNode> {
  // wildcards go to the multicast group from this socket: with the config's TTL (agent.multicast.ttl), or
  // they would leave at the kernel's 1 whatever operators set (the interface is the agent host's: not here)
  const mc = opts.config.agent.multicast;
  const socket = await ControlSocket.open({ bind: opts.manager.control, ...(mc.enabled ? { multicastTtl: mc.ttl } : {}) });
  const sec = securityOf(opts.config);
  const channel = new ServiceChannel({ socket, sender: managerId(opts.manager.identity), ...sec });
  const now = (): number => Math.floor(performance.now());
  const onEvent = opts.onEvent;
  let sender: ReplicationSender | null = null;
  const manager = new ServiceManager({
    config: opts.config,
    manager: opts.manager,
    channel,
    now,
    agents: opts.agents,
    onAffinitySent: (flow) => sender?.track(flow),
    onEvent,
  });
  const replicationSender = new ReplicationSender({
    channel,
    store: manager.store,
    now,
    config: opts.manager.replication,
    dropRate: opts.dropRate ?? faultDropRateFromEnv(),
    onEvent,
    onAckLatency: opts.onAckLatency,
  });
  sender = replicationSender;
  const receiver = new ReplicationReceiver(manager, channel, opts.config.managers.map((m) => m.identity));
  const role = new RoleController({
    manager,
    channel,
    config: opts.config,
    sender: replicationSender,
    receiver,
    peers: opts.peers ?? configPeers(opts.config, opts.manager),
    now,
    onEvent,
  });
  manager.extraHandler = (msg, from) => role.handle(msg, from);
  const failoverStats = (): Record<string, unknown> => ({
    role: role.role,
    epoch: role.epoch,
    resyncState: role.resyncState,
    flows: manager.store.size,
    digest: storeDigest(manager.store.entries()),
    roles: role.stats,
    sent: replicationSender.stats,
    received: receiver.stats,
    security: sec.verifier?.counters ?? null,
    refusedByCode: channel.stats.refusedByCode,
    peers: replicationSender.peerState(),
  });
  manager.start();
  replicationSender.start();
  role.start();
  return {
    manager,
    channel,
    sender: replicationSender,
    receiver,
    role,
    failoverStats,
    security: sec.verifier?.counters ?? null,
    close: async (withdraw) => {
      role.stop();
      replicationSender.stop();
      await manager.stop(withdraw);
      socket.flush();
      await channel.close();
    },
  };
}

export async function runManager(opts: ManagerRunOptions): Promise<ServiceManager> {
  const log = createLogger({ level: opts.logLevel, name: 'wasmlb-manager', destination: 2, bindings: { manager: opts.manager.identity } });
  const ev = controlEvents(log);
  const self = opts.manager.identity;
  let role = 'starting';
  const onEvent = (event: string, fields: Record<string, unknown>): void => {
    if (event === 'takeover') {
      // One line: the operations table's fields (from, seconds) and the details.
      const replaced = Array.isArray(fields['replaced']) ? (fields['replaced'] as string[]).join(',') : '';
      log.warn({ event, manager: self, from: replaced, seconds: Number(fields['workMs'] ?? 0) / 1000, ...fields });
    } else log.info({ event, ...fields });
    // The operations events (docs/operations.md, Logs).
    if (event === 'role' || event === 'takeover' || event === 'step-down') {
      const to = event === 'step-down' ? 'backup' : String(fields['role']);
      const epoch = Number(fields['epoch'] ?? fields['ourEpoch'] ?? 0);
      if (to !== role) ev.roleChange({ manager: self, from: role, to, epoch, reason: String(fields['reason'] ?? event) });
      role = to;
    } else if (event === 'resync-request') ev.resync({ manager: self, peer: String(fields['from']), state: 'requested' });
    else if (event === 'resync-complete') ev.resync({ manager: self, peer: String(fields['from']), state: 'complete', affinities: Number(fields['stored'] ?? 0) });
    else if (event === 'health') {
      const reason = fields['reason'] === undefined ? {} : { reason: String(fields['reason']) };
      ev.healthChange({ vip: String(fields['vip']), backend: String(fields['backend']), healthy: fields['healthy'] === true, ...reason });
    } else if (event === 'deny-received') ev.deny({ agent: String(fields['agent']), manager: self, reason: `${String(fields['denied'])} of a ${String(fields['type'])} refused` });
  };
  let metrics: ManagerMetrics | null = null;
  const node = await openManagerNode({ ...opts, onEvent, onAckLatency: (ms) => metrics?.observeReplicationLag(ms / 1000) });
  const { manager, channel } = node;
  let status: StatusServer | null = null;
  if (opts.manager.metricsPort > 0) {
    const ver = packageVersion();
    const registry = createRegistry({ processMetrics: true });
    buildInfo(registry, { version: ver, role: 'manager' });
    const snap = (): ManagerSnapshot => managerSnapshot(node);
    metrics = managerMetrics(registry, snap);
    controlMetrics(registry, () => ({
      sent: { ...channel.stats.sentByType },
      received: { ...channel.stats.receivedByType },
      rejected: controlRejections(channel.stats.refusedByCode, node.security !== null),
    }));
    status = await startStatusServer({
      port: opts.manager.metricsPort,
      host: opts.manager.metricsAddress,
      registry,
      status: () => managerStatus(snap(), { name: self, version: ver, peer: node.sender.activePeerIds().map((id) => node.role.peerName(id)).join(',') || null, lagSeconds: metrics?.lastReplicationLag() ?? null }),
    });
  }
  channel.onRefusal((err, from) => log.debug({ event: 'refused', code: err.code, from: `${from.address}:${from.port}` }));
  // a message the manager failed on is logged and dropped: its flows and role outlive it
  channel.onHandlerError((err, m, from) => log.error({ event: 'handler-error', type: m.type, from: `${from.address}:${from.port}`, error: err instanceof Error ? err.message : String(err) }));
  log.info({ event: 'ready', role: opts.manager.role, control: channel.socket.local, id: manager.id });
  const statsTimer = opts.statsIntervalMs ? setInterval(() => log.info({ event: 'stats', ...node.failoverStats() }), opts.statsIntervalMs) : null;
  const shutdown = async (): Promise<void> => {
    if (statsTimer) clearInterval(statsTimer);
    const failover = node.failoverStats();
    await status?.close();
    await node.close(true);
    log.info({ event: 'stopped', stats: manager.stats, failover });
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown());
  process.once('SIGINT', () => void shutdown());
  // SIGHUP: the VIPs and backend lists of the file as it is now (ServiceManager.reloadVips); a bad file
  // changes nothing
  process.on('SIGHUP', () => {
    if (!opts.reload) {
      log.error({ event: 'reload-failed', error: 'no configuration file to read again (bundled defaults)' });
      return;
    }
    try {
      const next = opts.reload();
      const r = manager.reloadVips(next.vips);
      log.info({ event: 'reloaded', changed: r.changed, removed: r.removed, restartNeeded: settingsNeedingRestart(opts.config, next, opts.manager.identity) });
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      log.error({ event: 'reload-failed', error: message });
      ev.configError({ path: err instanceof ConfigError ? (err.issues[0]?.file ?? 'config') : 'config', message });
    }
  });
  return manager;
}
