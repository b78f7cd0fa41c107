// Operations surface: metrics (Prometheus), control-plane logs (pino NDJSON), the /metrics + /status
// endpoint and the `wasmlb status` client.
export {
  agentMetrics,
  buildInfo,
  controlMetrics,
  createRegistry,
  managerMetrics,
  securityRejections,
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
  fetchStatus,
  formatStatus,
  parseTarget,
  runStatusCommand,
  startStatusServer,
  StatusError,
  type StatusInput,
  type StatusReport,
  type StatusServer,
  type StatusServerOptions,
} from './status.ts';
