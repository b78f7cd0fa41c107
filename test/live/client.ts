// The client side of the live tests: a long-lived HTTP client process inside a namespace (see
// http-client.ts) with throttled, observable downloads, and the namespace's TCP counters (resets seen).

import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { LiveSetupError, nsExec, run } from './netns.ts';
import type { HttpResult } from './topology.ts';

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));

export type HttpOutcome =
  | ({ ok: true } & HttpResult)
  | { ok: false; code: string; message: string; bytes: number; ms: number };

export interface GetOptions {
  /** Read no faster than this (TCP flow control slows the server): stretches a download over time. */
  bytesPerSecond?: number;
  /** Report progress every this many bytes (needed for waitForBytes). Default 1 MiB. */
  progressEvery?: number;
  timeoutMs?: number;
  /** A client port never used before: the request is certainly a new flow (see http-client.ts). */
  freshPort?: boolean;
}

export interface RequestHandle {
  /** Resolves when the request ends, successfully or not (never rejects for network errors). */
  result: Promise<HttpOutcome>;
  /** Resolves once at least `n` bytes of the body arrived (progress granularity), or when it ended. */
  waitForBytes(n: number): Promise<number>;
  bytes(): number;
}

type Line =
  | { event: 'ready' }
  | { id: number; event: 'progress'; bytes: number }
  | ({ id: number; event: 'done' } & HttpResult)
  | { id: number; event: 'error'; code: string; message: string; bytes: number; ms: number };

interface Pending {
  bytes: number;
  waiters: Array<{ n: number; resolve: (b: number) => void }>;
  resolve: (o: HttpOutcome) => void;
}

export class NsHttpClient {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();

  private constructor(private readonly child: ChildProcessWithoutNullStreams) {
    createInterface({ input: child.stdout }).on('line', (line) => this.onLine(JSON.parse(line) as Line));
  }

  /** Starts the client process in `netns` and waits until it is ready. */
  static start(netns: string): Promise<NsHttpClient> {
    const argv = nsExec(netns, [process.execPath, '--import', 'tsx', join(REPO_ROOT, 'test/live/http-client.ts')]);
    const child = spawn(argv[0]!, argv.slice(1), { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        reject(new LiveSetupError('TIMEOUT', `HTTP client in ${netns} not ready: ${stderr.trim()}`));
      }, 15_000);
      const rl = createInterface({ input: child.stdout });
      rl.once('line', () => {
        clearTimeout(timer);
        rl.close();
        resolve(new NsHttpClient(child));
      });
      child.once('exit', (code) => {
        clearTimeout(timer);
        reject(new LiveSetupError('COMMAND_FAILED', `HTTP client in ${netns} exited (${code}): ${stderr.trim()}`));
      });
    });
  }

  get(url: string, opts: GetOptions = {}): RequestHandle {
    const id = this.nextId++;
    let entry!: Pending;
    const result = new Promise<HttpOutcome>((resolve) => {
      entry = { bytes: 0, waiters: [], resolve };
    });
    this.pending.set(id, entry);
    this.child.stdin.write(
      JSON.stringify({ op: 'get', id, url, progressEvery: opts.progressEvery ?? 1 << 20, ...opts }) + '\n',
    );
    return {
      result,
      bytes: () => entry.bytes,
      waitForBytes: (n) =>
        entry.bytes >= n || !this.pending.has(id)
          ? Promise.resolve(entry.bytes)
          : new Promise((resolve) => entry.waiters.push({ n, resolve })),
    };
  }

  close(): void {
    this.child.stdin.end();
    this.child.kill('SIGKILL');
    for (const p of this.pending.values()) {
      p.resolve({ ok: false, code: 'CLOSED', message: 'client closed', bytes: p.bytes, ms: 0 });
    }
    this.pending.clear();
  }

  private onLine(line: Line): void {
    if (!('id' in line)) return;
    const p = this.pending.get(line.id);
    if (!p) return;
    if (line.event === 'progress') {
      p.bytes = line.bytes;
      p.waiters = p.waiters.filter((w) => (w.n <= line.bytes ? (w.resolve(line.bytes), false) : true));
      return;
    }
    this.pending.delete(line.id);
    p.bytes = line.bytes;
    for (const w of p.waiters) w.resolve(line.bytes);
    const { id: _id, event, ...rest } = line;
    p.resolve(event === 'done' ? ({ ok: true, ...rest } as HttpOutcome) : ({ ok: false, ...rest } as HttpOutcome));
  }
}

/**
 * TCP counters of a namespace (/proc/net/snmp "Tcp:" and /proc/net/netstat "TcpExt:"), e.g. EstabResets
 * (connections reset while established: a reset reaching the client counts here), OutRsts, InErrs,
 * TCPAbortOnData. Take a snapshot before and after and compare with `tcpCounterDelta`.
 */
export function tcpCounters(netns: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const file of ['/proc/net/snmp', '/proc/net/netstat']) {
    const lines = run(nsExec(netns, ['cat', file])).split('\n');
    for (let i = 0; i + 1 < lines.length; i += 2) {
      const names = lines[i]!.split(/\s+/);
      const values = lines[i + 1]!.split(/\s+/);
      if (names[0] !== 'Tcp:' && names[0] !== 'TcpExt:') continue;
      for (let k = 1; k < names.length; k++) out[names[k]!] = Number(values[k]);
    }
  }
  return out;
}

export function tcpCounterDelta(before: Record<string, number>, after: Record<string, number>): Record<string, number> {
  const d: Record<string, number> = {};
  for (const [k, v] of Object.entries(after)) if (v !== before[k]) d[k] = v - (before[k] ?? 0);
  return d;
}
