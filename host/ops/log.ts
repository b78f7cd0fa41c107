// Control-plane logs: pino NDJSON, one object a line.
//
// Invariants:
// - Only control-plane events are logged (role changes, health changes, takeovers, resyncs, denies,
//   config errors), never one line per packet or per flow.
// - Keys are stable so that operators can filter on them: `time` (ISO 8601), `level` (label, not number),
//   `name` (the process: "agent", "manager-a"…), `event` (one of `LOG_EVENTS`), and where they apply
//   `vip`, `backend` ("addr:port"), `manager`, `agent`, `epoch`, `reason`.
// - The event helpers below are the only place event names and their fields are spelled.
import pino from 'pino';
import type { Logger } from 'pino';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export class LogConfigError extends Error {
  readonly code = 'E_LOG_LEVEL';
  constructor(message: string) {
    super(message);
    this.name = 'LogConfigError';
  }
}

/** Parses a `--log-level` value; throws `LogConfigError` naming the accepted levels. */
export function parseLogLevel(value: string): LogLevel {
  const v = value.trim().toLowerCase();
  if ((LOG_LEVELS as readonly string[]).includes(v)) return v as LogLevel;
  throw new LogConfigError(`invalid log level "${value}": expected one of ${LOG_LEVELS.join(', ')}`);
}

/** Something pino can write NDJSON lines to. */
export interface LineSink {
  write(line: string): unknown;
}

export interface CreateLoggerOptions {
  level?: LogLevel;
  /** Process name in every line, e.g. "agent" or "manager-a". */
  name: string;
  /** Where lines go: a file path, a file descriptor, or a sink; default stdout (fd 1). */
  destination?: string | number | LineSink;
  /** Extra fields put on every line (e.g. `{ manager: 'a' }`). */
  bindings?: Record<string, string | number>;
}

/** A pino logger writing NDJSON with the stable keys above. */
export function createLogger(opts: CreateLoggerOptions): Logger {
  const dest = opts.destination ?? 1;
  const stream =
    typeof dest === 'string' || typeof dest === 'number'
      ? pino.destination({ dest, sync: true, mkdir: typeof dest === 'string' })
      : dest;
  return pino(
    {
      level: opts.level ?? 'info',
      name: opts.name,
      base: { pid: process.pid, ...opts.bindings },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  );
}

export const LOG_EVENTS = ['role_change', 'health_change', 'takeover', 'resync', 'deny', 'config_error'] as const;
export type LogEvent = (typeof LOG_EVENTS)[number];

export interface ControlEvents {
  /** A manager's role or epoch changed (info). */
  roleChange(f: { manager: string; from: string; to: string; epoch: number; reason?: string }): void;
  /** A backend's health changed (warn when it goes down, info when it comes back). */
  healthChange(f: { vip: string; backend: string; healthy: boolean; reason?: string }): void;
  /** A backup took over from a dead primary (warn). `seconds`: declared dead → agents updated. */
  takeover(f: { manager: string; from: string; epoch: number; flows: number; seconds: number }): void;
  /** Bulk resync progress on a backup or a primary serving one (info; warn when failed). */
  resync(f: { manager: string; peer: string; state: string; affinities?: number }): void;
  /** An agent refused an affinity update (update-deny) (warn). */
  deny(f: { agent: string; manager?: string; vip?: string; reason: string }): void;
  /** A configuration file or value was rejected (error). */
  configError(f: { path: string; message: string }): void;
}

/** Event helpers bound to one logger, so every event carries `event` and the same field names. */
export function controlEvents(log: Logger): ControlEvents {
  return {
    roleChange(f) {
      log.info({ event: 'role_change', ...f }, `role ${f.from} -> ${f.to} (epoch ${f.epoch})`);
    },
    healthChange(f) {
      const msg = `backend ${f.backend} of ${f.vip} is ${f.healthy ? 'up' : 'down'}`;
      if (f.healthy) log.info({ event: 'health_change', ...f }, msg);
      else log.warn({ event: 'health_change', ...f }, msg);
    },
    takeover(f) {
      log.warn(
        { event: 'takeover', ...f },
        `took over from ${f.from} in ${(f.seconds * 1000).toFixed(1)} ms with ${f.flows} flows (epoch ${f.epoch})`,
      );
    },
    resync(f) {
      const msg = `resync with ${f.peer}: ${f.state}`;
      if (f.state === 'failed') log.warn({ event: 'resync', ...f }, msg);
      else log.info({ event: 'resync', ...f }, msg);
    },
    deny(f) {
      log.warn({ event: 'deny', ...f }, `agent ${f.agent} denied an update: ${f.reason}`);
    },
    configError(f) {
      log.error({ event: 'config_error', ...f }, `config ${f.path}: ${f.message}`);
    },
  };
}
