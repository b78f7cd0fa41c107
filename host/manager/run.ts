// `wasmlb manager`: one service manager process. Logs NDJSON control-plane events on stderr; the
// first line with event "ready" carries its control endpoint, so a parent process can wait for it.
import { Keyring, SecurityVerifier } from '../protocol/index.ts';
import { readSecurityKey, type ManagerConfig, type WasmlbConfig } from '../config/index.ts';
import { createLogger, type LogLevel } from '../ops/log.ts';
import { ServiceChannel } from '../transport/channel.ts';
import { ControlSocket, type Endpoint } from '../transport/udp.ts';
import { managerId, ServiceManager } from './manager.ts';

export interface ManagerRunOptions {
  config: WasmlbConfig;
  manager: ManagerConfig;
  /** Agents to reach by unicast (wildcards and takeover pushes). */
  agents: Endpoint[];
  logLevel: LogLevel;
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
  const manager = new ServiceManager({
    config: opts.config,
    manager: opts.manager,
    channel,
    now: () => Math.floor(performance.now()),
    agents: opts.agents,
    onEvent: (event, fields) => log.info({ event, ...fields }),
  });
  channel.onRefusal((err, from) => log.debug({ event: 'refused', code: err.code, from: `${from.address}:${from.port}` }));
  manager.start();
  log.info({ event: 'ready', role: opts.manager.role, control: socket.local, id: manager.id });
  const shutdown = async (): Promise<void> => {
    await manager.stop(true);
    socket.flush();
    log.info({ event: 'stopped', stats: manager.stats });
    await channel.close();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown());
  process.once('SIGINT', () => void shutdown());
  return manager;
}
