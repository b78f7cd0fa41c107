// Backend health checks: TCP connect or HTTP GET, every interval, each with a timeout; a backend
// turns unhealthy after `fall` failures in a row and healthy again after `rise` successes in a row.
// Listeners hear only changes (the balancer's setHealth), never every probe.
//
// Invariants:
//   - Probes never throw and never reject: an unreachable, refusing, slow or garbage-speaking
//     backend is a failed probe with a reason.
//   - One probe at a time per backend; the next starts one interval after the previous started
//     (or at once if the probe took longer). Timers are unref'd: health checks never keep a
//     process alive on their own.
//   - stop() aborts the probes in flight and resolves when they are gone; no listener is called
//     after stop() returns.

import http from 'node:http';
import net from 'node:net';
import type { HealthCheckConfig } from '../config/schema.ts';

export type HealthCheckKind = 'none' | 'tcp' | 'http';

export interface HealthTarget {
  /** The backend's id ("address:port"), as the balancer knows it. */
  readonly id: string;
  readonly address: string;
  readonly port: number;
}

export interface HealthCheckOptions {
  readonly kind: HealthCheckKind;
  readonly intervalMs: number;
  readonly timeoutMs: number;
  /** Consecutive successes to become healthy. */
  readonly rise: number;
  /** Consecutive failures to become unhealthy. */
  readonly fall: number;
  /** HTTP: the path to GET (default "/") and the status that means healthy (default 200). */
  readonly path?: string;
  readonly expectStatus?: number;
  /** Probe this port instead of the backend's. */
  readonly port?: number;
  /** State before the first verdict; default healthy (traffic flows while the checks warm up). */
  readonly initiallyHealthy?: boolean;
}

export interface HealthChange {
  readonly id: string;
  readonly healthy: boolean;
  /** Why: the last probe's failure reason, or "ok". */
  readonly reason: string;
}

export interface HealthStatus {
  readonly id: string;
  readonly healthy: boolean;
  readonly successes: number;
  readonly failures: number;
  readonly lastReason: string;
}

export type ProbeResult = { readonly ok: true } | { readonly ok: false; readonly reason: string };

export class HealthError extends Error {
  readonly code: 'BAD_OPTIONS';
  constructor(code: HealthError['code'], message: string) {
    super(message);
    this.name = 'HealthError';
    this.code = code;
  }
}

function errorReason(err: unknown): string {
  if (err && typeof err === 'object' && 'code' in err && typeof err.code === 'string') return err.code;
  return err instanceof Error ? err.message : String(err);
}

/** Opens a TCP connection and closes it. ok when the handshake completes within the timeout. */
export function probeTcp(address: string, port: number, timeoutMs: number, signal?: AbortSignal): Promise<ProbeResult> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve({ ok: false, reason: 'aborted' });
    const socket = net.connect({ host: address, port });
    let done = false;
    const finish = (result: ProbeResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      socket.destroy();
      resolve(result);
    };
    const onAbort = (): void => finish({ ok: false, reason: 'aborted' });
    const timer = setTimeout(() => finish({ ok: false, reason: 'timeout' }), timeoutMs);
    signal?.addEventListener('abort', onAbort);
    socket.once('connect', () => finish({ ok: true }));
    socket.once('error', (err) => finish({ ok: false, reason: errorReason(err) }));
  });
}

/** GET http://address:port/path; ok when the status is `expectStatus` within the timeout. */
export function probeHttp(
  address: string,
  port: number,
  path: string,
  expectStatus: number,
  timeoutMs: number,
  signal?: AbortSignal,
): Promise<ProbeResult> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve({ ok: false, reason: 'aborted' });
    let done = false;
    let req: http.ClientRequest;
    try {
      req = http.request({
        host: address,
        port,
        path,
        method: 'GET',
        agent: false,
        headers: { 'user-agent': 'wasmlb-health', connection: 'close' },
      });
    } catch (err) {
      // a request Node refuses to build (the config checks the path; this is the last guard) fails the probe
      return resolve({ ok: false, reason: err instanceof Error ? err.message : String(err) });
    }
    const finish = (result: ProbeResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      req.destroy();
      resolve(result);
    };
    const onAbort = (): void => finish({ ok: false, reason: 'aborted' });
    const timer = setTimeout(() => finish({ ok: false, reason: 'timeout' }), timeoutMs);
    signal?.addEventListener('abort', onAbort);
    req.once('response', (res) => {
      res.resume();
      res.on('error', () => {});
      const status = res.statusCode ?? 0;
      finish(status === expectStatus ? { ok: true } : { ok: false, reason: `status ${status}` });
    });
    req.on('error', (err) => finish({ ok: false, reason: errorReason(err) }));
    req.end();
  });
}

interface TargetState {
  readonly target: HealthTarget;
  healthy: boolean;
  successes: number;
  failures: number;
  lastReason: string;
  timer: NodeJS.Timeout | null;
  inFlight: Promise<void> | null;
}

/** Health options from a VIP's `healthCheck` config section. */
export function healthOptionsOf(config: HealthCheckConfig): HealthCheckOptions {
  return {
    kind: config.type,
    intervalMs: config.interval,
    timeoutMs: config.timeout,
    rise: config.rise,
    fall: config.fall,
    path: config.path,
    expectStatus: config.expectStatus,
    ...(config.port !== undefined ? { port: config.port } : {}),
  };
}

export class HealthMonitor {
  private readonly states = new Map<string, TargetState>();
  private readonly listeners = new Set<(change: HealthChange) => void>();
  private abort: AbortController | null = null;
  private running = false;

  constructor(
    targets: readonly HealthTarget[],
    private readonly options: HealthCheckOptions,
  ) {
    const { intervalMs, timeoutMs, rise, fall } = options;
    if (!(intervalMs > 0) || !(timeoutMs > 0) || !(rise >= 1) || !(fall >= 1)) {
      throw new HealthError('BAD_OPTIONS', 'interval and timeout must be > 0 ms, rise and fall ≥ 1');
    }
    const healthy = options.initiallyHealthy ?? true;
    for (const target of targets) {
      this.states.set(target.id, { target, healthy, successes: 0, failures: 0, lastReason: 'not checked', timer: null, inFlight: null });
    }
  }

  /** Registers a listener for health changes; returns its removal. */
  onChange(listener: (change: HealthChange) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  isHealthy(id: string): boolean {
    return this.states.get(id)?.healthy ?? false;
  }

  statuses(): HealthStatus[] {
    return [...this.states.values()].map((s) => ({
      id: s.target.id,
      healthy: s.healthy,
      successes: s.successes,
      failures: s.failures,
      lastReason: s.lastReason,
    }));
  }

  /**
   * Replaces the targets (a reloaded backend list): those that stay (same id) keep their state and
   * schedule, new ones start as at construction and are probed at once when running, gone ones stop.
   */
  setTargets(targets: readonly HealthTarget[]): void {
    const keep = new Set(targets.map((t) => t.id));
    for (const [id, state] of this.states) {
      if (keep.has(id)) continue;
      if (state.timer) clearTimeout(state.timer);
      this.states.delete(id);
    }
    const healthy = this.options.initiallyHealthy ?? true;
    for (const target of targets) {
      if (this.states.has(target.id)) continue;
      const state: TargetState = { target, healthy, successes: 0, failures: 0, lastReason: 'not checked', timer: null, inFlight: null };
      this.states.set(target.id, state);
      if (this.running && this.options.kind !== 'none') this.schedule(state, 0);
    }
  }

  /** Starts probing every target (the first probe at once). With kind "none", nothing runs. */
  start(): void {
    if (this.running || this.options.kind === 'none') return;
    this.running = true;
    this.abort = new AbortController();
    for (const state of this.states.values()) this.schedule(state, 0);
  }

  /** Stops probing, aborts probes in flight and waits for them. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.abort?.abort();
    const pending: Promise<void>[] = [];
    for (const state of this.states.values()) {
      if (state.timer) clearTimeout(state.timer);
      state.timer = null;
      if (state.inFlight) pending.push(state.inFlight);
    }
    await Promise.all(pending);
  }

  /** One probe of every target now (also without start(); used by tests and `status`). */
  async checkNow(): Promise<void> {
    await Promise.all([...this.states.values()].map((s) => this.probeAndRecord(s)));
  }

  private schedule(state: TargetState, delayMs: number): void {
    state.timer = setTimeout(() => {
      state.timer = null;
      const started = Date.now();
      const run = this.probeAndRecord(state).then(() => {
        if (state.inFlight === run) state.inFlight = null;
        // a target removed meanwhile (setTargets) is not probed again
        if (this.running && this.states.get(state.target.id) === state) {
          this.schedule(state, Math.max(0, this.options.intervalMs - (Date.now() - started)));
        }
      });
      state.inFlight = run;
    }, delayMs);
    state.timer.unref();
  }

  private async probeAndRecord(state: TargetState): Promise<void> {
    const { address } = state.target;
    const port = this.options.port ?? state.target.port;
    const signal = this.abort?.signal;
    const result =
      this.options.kind === 'http'
        ? await probeHttp(address, port, this.options.path ?? '/', this.options.expectStatus ?? 200, this.options.timeoutMs, signal)
        : this.options.kind === 'tcp'
          ? await probeTcp(address, port, this.options.timeoutMs, signal)
          : ({ ok: true } as const);
    if (signal?.aborted && !this.running) return; // stopped while probing: no verdict
    if (this.states.get(state.target.id) !== state) return; // removed while probing
    this.record(state, result);
  }

  private record(state: TargetState, result: ProbeResult): void {
    if (result.ok) {
      state.successes++;
      state.failures = 0;
      state.lastReason = 'ok';
      if (!state.healthy && state.successes >= this.options.rise) this.change(state, true);
    } else {
      state.failures++;
      state.successes = 0;
      state.lastReason = result.reason;
      if (state.healthy && state.failures >= this.options.fall) this.change(state, false);
    }
  }

  private change(state: TargetState, healthy: boolean): void {
    state.healthy = healthy;
    const change: HealthChange = { id: state.target.id, healthy, reason: state.lastReason };
    for (const listener of this.listeners) {
      try {
        listener(change);
      } catch (err) {
        // A listener's bug must not stop the health checks; it is reported, not swallowed.
        process.emitWarning(`health change listener failed: ${errorReason(err)}`, 'WasmlbHealthWarning');
      }
    }
  }
}
