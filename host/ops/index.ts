// Operations surface: metrics (Prometheus), control-plane logs (pino NDJSON), the /metrics + /status
// endpoint and the `wasmlb status` client.
//
// Wiring a process (the agent; a manager is the same with managerMetrics and its own status):
//
//   const registry = createRegistry({ processMetrics: true });
//   buildInfo(registry, { version, role: 'agent' });
//   agentMetrics(registry, () => agentSnapshotFromFirmware(firmware.counters(), firmware.capacities, { heldPackets }));
//   controlMetrics(registry, () => ({ sent, received, rejected: controlRejections(channel.stats.refusedByCode, true) }));
//   const ops = await startStatusServer({ port: config.agent.metricsPort, registry,
//     status: () => agentStatus(snapshot(), { name: 'agent', version }) });
//   const log = createLogger({ name: 'agent', level: parseLogLevel(opts.logLevel) });
//   const events = controlEvents(log); // events.deny({ agent, manager, vip, reason }) …
//   …
//   await ops.close();
export {
  agentMetrics,
  buildInfo,
  controlMetrics,
  createRegistry,
  managerMetrics,
  controlRejections,
  agentSnapshotFromFirmware,
  MANAGER_ROLES,
  RESYNC_STATES,
  type AgentHostFigures,
  type AgentSnapshot,
  type BackendSnapshot,
  type ControlSnapshot,
  type Count,
  type ManagerMetrics,
  type ManagerSnapshot,
} from './metrics.ts';
export {
  controlEvents,
  createLogger,
  parseLogLevel,
  LogConfigError,
  LOG_EVENTS,
  LOG_LEVELS,
  type ControlEvents,
  type Logger,
  type LogLevel,
} from './log.ts';
export {
  agentStatus,
  fetchStatus,
  formatStatus,
  managerStatus,
  parseTarget,
  runStatusCommand,
  startStatusServer,
  StatusError,
  type StatusInput,
  type StatusReport,
  type StatusServer,
  type StatusServerOptions,
} from './status.ts';
