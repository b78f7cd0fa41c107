// Network-namespace plumbing shared by the TUN tests, the live topology and scripts/topology.ts.
// Every name we create starts with a prefix ("wlbt-" by default) so a cleanup can find leftovers of a
// crashed run; nothing here touches an interface or namespace without that prefix.

import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { tunUnavailableReason } from '../../host/io/tun.ts';

export class LiveSetupError extends Error {
  constructor(
    readonly code: 'COMMAND_FAILED' | 'BAD_ARGUMENT' | 'TIMEOUT',
    message: string,
  ) {
    super(message);
    this.name = 'LiveSetupError';
  }
}

/** Runs a command, returns stdout; throws LiveSetupError with stderr on failure. */
export function run(argv: readonly string[], input?: string): string {
  try {
    return execFileSync(argv[0]!, argv.slice(1), {
      encoding: 'utf8',
      stdio: ['pipe', 'pipe', 'pipe'],
      input,
      timeout: 20_000,
    });
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new LiveSetupError('COMMAND_FAILED', `${argv.join(' ')}: ${(e.stderr ?? e.message).trim()}`);
  }
}

/** Runs a command and ignores failure (teardown of things that may already be gone). */
export function tryRun(argv: readonly string[]): boolean {
  return spawnSync(argv[0]!, argv.slice(1), { stdio: 'ignore', timeout: 20_000 }).status === 0;
}

/** Runs `ip -batch -` with one command per line (one process instead of dozens). */
export function ipBatch(lines: readonly string[], netns?: string): void {
  if (lines.length === 0) return;
  run(netns === undefined ? ['ip', '-batch', '-'] : ['ip', '-n', netns, '-batch', '-'], lines.join('\n') + '\n');
}

export function nsExec(netns: string, argv: readonly string[]): string[] {
  return ['ip', 'netns', 'exec', netns, ...argv];
}

export function listNetns(): string[] {
  try {
    return readdirSync('/run/netns');
  } catch {
    return [];
  }
}

/** Kills every process still running inside `netns` (servers we started there), then deletes it. */
export function deleteNetns(netns: string): void {
  if (!listNetns().includes(netns)) return;
  const out = spawnSync('ip', ['netns', 'pids', netns], { encoding: 'utf8' }).stdout ?? '';
  const pids = out.split(/\s+/).filter(Boolean).map(Number);
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  // Wait (bounded) until they are dead, so the namespace and its devices are really gone on return.
  const deadline = Date.now() + 3000;
  while (pids.some(processAlive) && Date.now() < deadline) sleepSync(10);
  tryRun(['ip', 'netns', 'del', netns]);
}

/** True while `pid` runs (a zombie waiting for its parent to reap it counts as dead). */
export function processAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Deletes every namespace whose name starts with `prefix` (leftovers of earlier, crashed runs too). */
export function deleteNetnsWithPrefix(prefix: string): string[] {
  if (prefix.length < 3) throw new LiveSetupError('BAD_ARGUMENT', `prefix '${prefix}' too short to be safe`);
  const gone = listNetns().filter((n) => n.startsWith(prefix));
  for (const n of gone) deleteNetns(n);
  return gone;
}

let cachedReason: string | null | undefined;

/**
 * Why the live tests cannot run here (no root, no TUN, no `ip`, netns refused), or null when they can.
 * Tried once per process by creating and deleting a throw-away namespace.
 */
export function liveUnavailableReason(): string | null {
  if (cachedReason !== undefined) return cachedReason;
  cachedReason = computeReason();
  return cachedReason;
}

function computeReason(): string | null {
  const tun = tunUnavailableReason();
  if (tun) return tun;
  if (spawnSync('ip', ['-V'], { stdio: 'ignore' }).status !== 0) return "no 'ip' command (install iproute2)";
  const probe = `wlbt-probe${process.pid}`;
  const made = spawnSync('ip', ['netns', 'add', probe], { encoding: 'utf8' });
  if (made.status !== 0) return `ip netns add failed: ${(made.stderr ?? '').trim()}`;
  // `ip netns exec` also needs to remount /sys (CAP_SYS_ADMIN): containers may allow add but not exec.
  const exec = spawnSync('ip', ['netns', 'exec', probe, 'true'], { encoding: 'utf8' });
  tryRun(['ip', 'netns', 'del', probe]);
  if (exec.status !== 0) return `ip netns exec failed: ${(exec.stderr ?? '').trim()}`;
  return null;
}
