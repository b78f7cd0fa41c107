// `wasmlb` processes inside a network namespace (`ip netns exec <ns> node --import tsx host/cli.ts …`),
// started and killed by test/support/process.ts. `ip netns exec` execs the command, so the child's pid is
// the wasmlb process itself: a SIGKILL reaches it directly (no shell in between).
import { killAll, spawnWasmlb, type WasmlbProcess } from '../support/process.ts';
import { nsExec } from './netns.ts';

export function spawnWasmlbIn(netns: string, args: string[]): WasmlbProcess {
  return spawnWasmlb(args, { prefix: nsExec(netns, []) });
}

/** SIGKILLs every process started here and waits for them. */
export const killAllIn = killAll;
