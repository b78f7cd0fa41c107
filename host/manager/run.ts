// `wasmlb manager`: one service manager process. Logs NDJSON control-plane events on stderr; the
// first line with event "ready" carries its control endpoint, so a parent process can wait for it.
import { Keyring, SecurityVerifier } from '../protocol/index.ts';
import { readSecurityKey, type ManagerConfig, type WasmlbConfig } from '../config/index.ts';
import { createLogger, type LogLevel } from '../ops/log.ts';
import { ServiceChannel } from '../transport/channel.ts';
import { ControlSocket, type Endpoint } from '../transport/udp.ts';
import { managerId, ServiceManager } from './manager.ts';
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
}

/** The peers of a manager from the config: every other manager's control endpoint. */
export function configPeers(config: WasmlbConfig, self: ManagerConfig): Endpoint[] {
  return config.managers.filter((m) => m.identity !== self.identity).map((m) => ({ address: m.control.address, port: m.control.port }));
}

export function securityOf(config: WasmlbConfig): { keyring?: Keyring; verifier?: SecurityVerifier } {
  const s = config.security;
  if (!s) return {};
  const keyring = new Keyring([{ id: s.keyId, secret: readSecurityKey(s), algorithm: s.algorithm === 'md5' ? 'keyed-md5' : 'hmac-sha256' }]);
  return { keyring, verifier: new SecurityVerifier({ keyring, required: s.require }) };
}

export async function runManager(opts: ManagerRunOptions): Promise<ServiceManager> {
  const log = createLogger({ level: opts.logLevel, name: 'wasmlb-manager', destination: 2, bindings: { manager: opts.manager.identity } });
  const socket = await ControlSocket.open({ bind: opts.manager.control });
  const sec = securityOf(opts.config);
  const channel = new ServiceChannel({ socket, sender: managerId(opts.manager.identity), ...sec });
  const now = (): number => Math.floor(performance.now());
  const onEvent = (event: string, fields: Record<string, unknown>): void => log.info({ event, ...fields });
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
  sender = new ReplicationSender({ channel, store: manager.store, now, config: opts.manager.replication, dropRate: faultDropRateFromEnv(), onEvent });
  const receiver = new ReplicationReceiver(manager, channel, opts.config.managers.map((m) => m.identity));
  const role = new RoleController({
    manager,
    channel,
    config: opts.config,
    sender,
    receiver,
    peers: opts.peers ?? configPeers(opts.config, opts.manager),
    now,
    onEvent,
  });
  manager.extraHandler = (msg, from) => role.handle(msg, from);
  channel.onRefusal((err, from) => log.debug({ event: 'refused', code: err.code, from: `${from.address}:${from.port}` }));
  const failoverStats = (): Record<string, unknown> => ({
    role: role.role,
    epoch: role.epoch,
    resyncState: role.resyncState,
    flows: manager.store.size,
    digest: storeDigest(manager.store.entries()),
    roles: role.stats,
    sent: sender!.stats,
    received: receiver.stats,
    security: sec.verifier?.counters ?? null,
    refusedByCode: channel.stats.refusedByCode,
  });
  manager.start();
  sender.start();
  role.start();
  log.info({ event: 'ready', role: opts.manager.role, control: socket.local, id: manager.id });
  const statsTimer = opts.statsIntervalMs ? setInterval(() => log.info({ event: 'stats', ...failoverStats() }), opts.statsIntervalMs) : null;
  const shutdown = async (): Promise<void> => {
    if (statsTimer) clearInterval(statsTimer);
    role.stop();
    sender!.stop();
    await manager.stop(true);
    socket.flush();
    log.info({ event: 'stopped', stats: manager.stats, failover: failoverStats() });
    await channel.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown());
  process.once('SIGINT', () => void shutdown());
  return manager;
}
