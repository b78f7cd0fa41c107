// Real processes for multi-process tests: spawns `wasmlb <args>` through tsx, collects its NDJSON
// log lines (stderr) and stdout, and waits for events. Every child is killed in `killAll`.
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { readJsonLines } from '../../host/ops/ndjson.ts';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CLI = path.join(ROOT, 'host/cli.ts');

export interface LogEvent {
  event?: string;
  msg?: string;
  [k: string]: unknown;
}

export class WasmlbProcess {
  readonly events: LogEvent[] = [];
  stdout = '';
  stderr = '';
  private waiters: Array<{ pred: (e: LogEvent) => boolean; resolve: (e: LogEvent) => void }> = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;

  constructor(readonly child: ChildProcess, readonly args: string[]) {
    readJsonLines(
      child.stderr!,
      (line) => {
        const e = line as LogEvent;
        this.events.push(e);
        this.waiters = this.waiters.filter((w) => (w.pred(e) ? (w.resolve(e), false) : true));
      },
      (chunk) => {
        this.stderr += chunk;
      },
    );
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      this.stdout += chunk;
    });
    this.exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  }

  /** Resolves with the first log event (past or future) satisfying `pred`. */
  waitFor(pred: (e: LogEvent) => boolean, timeoutMs = 10_000): Promise<LogEvent> {
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`timeout waiting for event in wasmlb ${this.args.join(' ')}\nstderr:\n${this.stderr.slice(-3000)}`)),
        timeoutMs,
      );
      this.waiters.push({
        pred,
        resolve: (e) => {
          clearTimeout(t);
          resolve(e);
        },
      });
    });
  }

  waitForEvent(name: string, timeoutMs?: number): Promise<LogEvent> {
    return this.waitFor((e) => e.event === name, timeoutMs);
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
  }
}

const running = new Set<WasmlbProcess>();

/** `prefix`: a command that execs the rest, e.g. `ip netns exec <ns>` (test/live/wasmlb-ns.ts). */
export function spawnWasmlb(args: string[], opts: { env?: NodeJS.ProcessEnv; prefix?: readonly string[] } = {}): WasmlbProcess {
  const argv = [...(opts.prefix ?? []), process.execPath, '--import', 'tsx', CLI, ...args];
  const child = spawn(argv[0]!, argv.slice(1), {
    cwd: ROOT,
    env: { ...process.env, ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const p = new WasmlbProcess(child, args);
  running.add(p);
  void p.exited.then(() => running.delete(p));
  return p;
}

export async function killAll(): Promise<void> {
  const all = [...running];
  for (const p of all) p.kill('SIGKILL');
  await Promise.all(all.map((p) => p.exited));
}
