// The configuration's public surface: load a YAML file (or the bundled defaults), merge flags.
export {
  applyOverrides,
  ConfigError,
  defaultConfig,
  loadConfig,
  parseConfig,
  readSecurityKey,
  selectManager,
  storeTimersOf,
  type ConfigErrorCode,
  type ConfigIssue,
  type ConfigOverrides,
} from './load.ts';
export {
  parseDuration,
  parseSize,
  type AgentConfig,
  type BackendConfig,
  type BalancerName,
  type HealthCheckConfig,
  type ManagerConfig,
  type ManagerTimers,
  type Mode,
  type Role,
  type SecurityConfig,
  type VipConfig,
  type WasmlbConfig,
} from './schema.ts';
