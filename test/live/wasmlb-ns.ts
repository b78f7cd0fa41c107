// `wasmlb` processes inside a network namespace (`ip netns exec <ns> node --import tsx host/cli.ts …`),
// with the NDJSON log handling of test/support/process.ts. `ip netns exec` execs the command, so the
// child's pid is the wasmlb process itself: a SIGKILL reaches it directly (no shell in between).
import { spawn } from 'node:child_process';
import path from 'node:path';
import { ROOT, WasmlbProcess } from '../support/process.ts';
import { nsExec } from './netns.ts';

const CLI = path.join(ROOT, 'host/cli.ts');
const running = new Set<WasmlbProcess>();

export function spawnWasmlbIn(netns: string, args: string[]): WasmlbProcess {
  const argv = nsExec(netns, [process.execPath, '--import', 'tsx', CLI, ...args]);
  const child = spawn(argv[0]!, argv.slice(1), { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const p = new WasmlbProcess(child, args);
  running.add(p);
  void p.exited.then(() => running.delete(p));
  return p;
}

/** SIGKILLs every process started here and waits for them. */
export async function killAllIn(): Promise<void> {
  const all = [...running];
  for (const p of all) p.kill('SIGKILL');
  await Promise.all(all.map((p) => p.exited));
}
