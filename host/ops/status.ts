// The operations endpoint of a process (agent or manager) and the `wasmlb status` client.
//
// One HTTP port per process serves:
//   GET /metrics  Prometheus text exposition of the process's registry
//   GET /status   JSON `StatusReport` built from a getter callback at request time
// The client fetches /status, validates it (anything else is a clear `StatusError`), and prints a
// human table or the JSON itself.
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import type { AgentSnapshot, Count, ManagerSnapshot } from './metrics.ts';

// ---------------------------------------------------------------------------------------------
// The report

const tableUse = z.object({ entries: z.number(), capacity: z.number() });

const statusSchema = z.object({
  /** Which process answered. */
  kind: z.enum(['agent', 'manager']),
  /** Process name ("agent-1", "manager-a"). */
  name: z.string(),
  version: z.string(),
  /** "agent" for agents; "primary", "backup"… for managers. */
  role: z.string(),
  /** Manager epoch; null on agents. */
  epoch: z.number().nullable(),
  uptimeSeconds: z.number(),
  vips: z.array(
    z.object({
      vip: z.string(),
      backends: z.array(z.object({ backend: z.string(), healthy: z.boolean(), draining: z.boolean().optional(), flows: z.number() })),
    }),
  ),
  /** Firmware table use; null on managers. */
  tables: z.object({ fixed: tableUse, wildcard: tableUse }).nullable(),
  /** Replication with the peer manager; null on agents. */
  replication: z
    .object({
      peer: z.string().nullable(),
      lagSeconds: z.number().nullable(),
      sent: z.number(),
      acked: z.number(),
      resent: z.number(),
      resync: z.string(),
    })
    .nullable(),
});

export type StatusReport = z.infer<typeof statusSchema>;
/** What the process supplies; the server adds `uptimeSeconds`. */
export type StatusInput = Omit<StatusReport, 'uptimeSeconds'>;

export type StatusErrorCode = 'E_TARGET' | 'E_UNREACHABLE' | 'E_TIMEOUT' | 'E_HTTP' | 'E_BAD_RESPONSE' | 'E_LISTEN';

export class StatusError extends Error {
  constructor(
    readonly code: StatusErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'StatusError';
  }
}

/** A manager's /status document from the same snapshot its metrics read. */
export function managerStatus(
  snap: ManagerSnapshot,
  about: { name: string; version: string; peer: string | null; lagSeconds: number | null },
): StatusInput {
  const vips = new Map<string, StatusReport['vips'][number]>();
  for (const b of snap.backends) {
    let v = vips.get(b.vip);
    if (v === undefined) vips.set(b.vip, (v = { vip: b.vip, backends: [] }));
    v.backends.push({ backend: b.backend, healthy: b.healthy, flows: b.flows, ...(b.draining ? { draining: true } : {}) });
  }
  const r = snap.replication;
  return {
    kind: 'manager',
    name: about.name,
    version: about.version,
    role: snap.role,
    epoch: snap.epoch,
    vips: [...vips.values()],
    tables: null,
    replication: {
      peer: about.peer,
      lagSeconds: about.lagSeconds,
      sent: num(r.sent),
      acked: num(r.acked),
      resent: num(r.resent),
      resync: r.resyncState,
    },
  };
}

/** An agent's /status document from the same snapshot its metrics read. */
export function agentStatus(
  snap: AgentSnapshot,
  about: { name: string; version: string; vips?: StatusReport['vips'] },
): StatusInput {
  return {
    kind: 'agent',
    name: about.name,
    version: about.version,
    role: 'agent',
    epoch: null,
    vips: about.vips ?? [],
    tables: {
      fixed: { entries: snap.fixedEntries, capacity: snap.fixedCapacity },
      wildcard: { entries: snap.wildcardEntries, capacity: snap.wildcardCapacity },
    },
    replication: null,
  };
}

function num(n: Count): number {
  return typeof n === 'bigint' ? Number(n) : n;
}

// ---------------------------------------------------------------------------------------------
// Server

export interface StatusServerOptions {
  /** Address to bind; default 127.0.0.1. Use 0.0.0.0 (or ::) to be scraped from other hosts. */
  host?: string;
  /** TCP port; 0 picks a free one (see `StatusServer.port`). */
  port: number;
  registry: Registry;
  status: () => StatusInput | Promise<StatusInput>;
  /** Seconds since the process started; default `process.uptime()`. */
  uptimeSeconds?: () => number;
}

export interface StatusServer {
  /** Base URL, e.g. http://127.0.0.1:9464 */
  readonly url: string;
  readonly port: number;
  close(): Promise<void>;
}

/** Starts the /metrics + /status endpoint; rejects with `StatusError` E_LISTEN if the port is taken. */
export async function startStatusServer(opts: StatusServerOptions): Promise<StatusServer> {
  const host = opts.host ?? '127.0.0.1';
  const uptime = opts.uptimeSeconds ?? (() => process.uptime());
  const server: Server = createServer((req, res) => {
    handle(req, res, opts, uptime).catch((err: unknown) => {
      send(res, 500, 'application/json', JSON.stringify({ error: errorMessage(err) }) + '\n');
    });
  });
  await new Promise<void>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      reject(new StatusError('E_LISTEN', `cannot listen on ${host}:${opts.port}: ${err.code ?? err.message}`));
    };
    server.once('error', onError);
    server.listen(opts.port, host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://${host.includes(':') ? `[${host}]` : host}:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}

async function handle(
  req: IncomingMessage,
  res: ServerResponse,
  opts: StatusServerOptions,
  uptime: () => number,
): Promise<void> {
  let path: string;
  try {
    path = new URL(req.url ?? '/', 'http://x').pathname;
  } catch {
    send(res, 400, 'text/plain', 'bad request target\n');
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.setHeader('Allow', 'GET, HEAD');
    send(res, 405, 'text/plain', 'method not allowed\n');
    return;
  }
  if (path === '/metrics') {
    const text = await opts.registry.metrics();
    send(res, 200, opts.registry.contentType, text);
  } else if (path === '/status') {
    const input = await opts.status();
    const report: StatusReport = { ...input, uptimeSeconds: uptime() };
    send(res, 200, 'application/json', JSON.stringify(report) + '\n');
  } else if (path === '/') {
    send(res, 200, 'text/plain', 'wasmlb: GET /metrics (Prometheus), GET /status (JSON)\n');
  } else {
    send(res, 404, 'text/plain', 'not found\n');
  }
}

function send(res: ServerResponse, code: number, type: string, body: string): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(code, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body) });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

// ---------------------------------------------------------------------------------------------
// Client

/** Accepts "host:port", "[v6]:port", a bare port (localhost) or an http:// URL; returns the base URL. */
export function parseTarget(target: string): string {
  const t = target.trim();
  let url: URL;
  try {
    if (/^\d+$/.test(t)) url = new URL(`http://127.0.0.1:${t}`);
    else url = new URL(/^https?:\/\//.test(t) ? t : `http://${t}`);
  } catch {
    throw new StatusError('E_TARGET', `invalid target "${target}": expected host:port`);
  }
  // URL drops a scheme's default port (host:80): look at what was written
  if (url.port === '' && !/^https?:\/\//.test(t) && !/:\d+$/.test(t)) {
    throw new StatusError('E_TARGET', `invalid target "${target}": missing port (expected host:port)`);
  }
  return `${url.protocol}//${url.host}`;
}

export interface FetchStatusOptions {
  /** Give up after this many milliseconds; default 3000. */
  timeoutMs?: number;
}

/** A /status document larger than this is not one of ours (a VIP list of tens of thousands fits). */
const STATUS_MAX_BYTES = 16 << 20;

/** The body as text, refused beyond `max` bytes (a wrong port may stream without end). */
async function readCapped(res: Response, max: number): Promise<string> {
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let n = 0;
  for await (const chunk of res.body) {
    n += chunk.length;
    if (n > max) throw new StatusError('E_BAD_RESPONSE', `answer larger than ${max >> 20} MiB (is this a wasmlb status port?)`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Fetches and validates /status; throws `StatusError`. */
export async function fetchStatus(target: string, opts: FetchStatusOptions = {}): Promise<StatusReport> {
  const base = parseTarget(target);
  const timeoutMs = opts.timeoutMs ?? 3000;
  let res: Response;
  try {
    res = await fetch(`${base}/status`, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (err) {
    if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
      throw new StatusError('E_TIMEOUT', `${base} did not answer within ${timeoutMs} ms`);
    }
    throw new StatusError('E_UNREACHABLE', `cannot reach ${base}: ${causeMessage(err)}`);
  }
  let body: string;
  try {
    body = await readCapped(res, STATUS_MAX_BYTES);
  } catch (err) {
    if (err instanceof StatusError) throw err;
    if (err instanceof Error && (err.name === 'TimeoutError' || err.name === 'AbortError')) {
      throw new StatusError('E_TIMEOUT', `${base} did not finish its answer within ${timeoutMs} ms`);
    }
    throw new StatusError('E_UNREACHABLE', `connection to ${base} failed: ${causeMessage(err)}`);
  }
  if (!res.ok) {
    throw new StatusError('E_HTTP', `${base}/status answered HTTP ${res.status}: ${body.trim().slice(0, 200)}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw new StatusError('E_BAD_RESPONSE', `${base}/status did not answer JSON (is this a wasmlb status port?)`);
  }
  const parsed = statusSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'unknown shape';
    throw new StatusError('E_BAD_RESPONSE', `${base}/status answered an unexpected document (${where})`);
  }
  return parsed.data;
}

/** The human table printed by `wasmlb status`. */
export function formatStatus(r: StatusReport): string {
  const out: string[] = [];
  out.push(`${r.kind} ${r.name}  version ${r.version}  up ${formatDuration(r.uptimeSeconds)}`);
  out.push(`role ${r.role}${r.epoch === null ? '' : `  epoch ${r.epoch}`}`);
  if (r.replication) {
    const p = r.replication;
    out.push(
      `replication  peer ${p.peer ?? '-'}  lag ${p.lagSeconds === null ? '-' : formatSeconds(p.lagSeconds)}` +
        `  sent ${p.sent}  acked ${p.acked}  resent ${p.resent}  resync ${p.resync}`,
    );
  }
  out.push('');
  if (r.vips.length === 0) out.push('no VIPs');
  else {
    const rows: string[][] = [];
    for (const v of r.vips) {
      if (v.backends.length === 0) rows.push([v.vip, '-', '-', '-']);
      v.backends.forEach((b, i) => rows.push([i === 0 ? v.vip : '', b.backend, b.draining ? 'drain' : b.healthy ? 'up' : 'DOWN', String(b.flows)]));
    }
    out.push(...table(['VIP', 'BACKEND', 'HEALTH', 'FLOWS'], rows, [false, false, false, true]));
  }
  if (r.tables) {
    out.push('');
    const row = (name: string, t: { entries: number; capacity: number }): string[] => [
      name,
      String(t.entries),
      String(t.capacity),
      t.capacity > 0 ? `${((100 * t.entries) / t.capacity).toFixed(1)}%` : '-',
    ];
    out.push(
      ...table(
        ['TABLE', 'ENTRIES', 'CAPACITY', 'USE'],
        [row('fixed', r.tables.fixed), row('wildcard', r.tables.wildcard)],
        [false, true, true, true],
      ),
    );
  }
  return out.join('\n') + '\n';
}

export interface StatusCommandOptions extends FetchStatusOptions {
  json?: boolean;
  stdout?: { write(s: string): unknown };
  stderr?: { write(s: string): unknown };
}

/**
 * `wasmlb status <host:port> [--json]`. Returns the exit code: 0 printed, 1 the target is unreachable
 * or answered something that is not a wasmlb status, 2 the target is not host:port.
 */
export async function runStatusCommand(target: string, opts: StatusCommandOptions = {}): Promise<number> {
  const stdout = opts.stdout ?? process.stdout;
  const stderr = opts.stderr ?? process.stderr;
  try {
    const report = await fetchStatus(target, opts);
    stdout.write(opts.json === true ? JSON.stringify(report, null, 2) + '\n' : formatStatus(report));
    return 0;
  } catch (err) {
    if (err instanceof StatusError) {
      stderr.write(`wasmlb status: ${err.message}\n`);
      return err.code === 'E_TARGET' ? 2 : 1;
    }
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Formatting helpers

function table(head: string[], rows: string[][], right: boolean[]): string[] {
  // a loop, not Math.max(...rows): a report of 100K rows would overflow the argument stack
  const widths = head.map((h, i) => rows.reduce((w, r) => Math.max(w, (r[i] ?? '').length), h.length));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) => (right[i] ? c.padStart(widths[i]!) : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(head), ...rows.map(line)];
}

function formatDuration(s: number): string {
  const t = Math.floor(s);
  const d = Math.floor(t / 86400);
  const h = Math.floor((t % 86400) / 3600);
  const m = Math.floor((t % 3600) / 60);
  const sec = t % 60;
  if (d > 0) return `${d}d${h}h${m}m`;
  if (h > 0) return `${h}h${m}m${sec}s`;
  if (m > 0) return `${m}m${sec}s`;
  return `${sec}s`;
}

function formatSeconds(s: number): string {
  return s < 1 ? `${(s * 1000).toFixed(1)} ms` : `${s.toFixed(2)} s`;
}

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

function causeMessage(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as Error & { cause?: unknown }).cause;
    if (cause instanceof Error) {
      const code = (cause as NodeJS.ErrnoException).code;
      return code ? `${code} (${cause.message})` : cause.message;
    }
    return err.message;
  }
  return String(err);
}
