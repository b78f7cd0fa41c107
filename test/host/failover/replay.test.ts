// `wasmlb replay --backup --kill-primary-at`: the demo capture through a real agent, a primary and a
// backup manager process; the primary is SIGKILLed halfway and no flow may change backend.
import { afterEach, describe, expect, it } from 'vitest';
import { DEMO_CAPTURE } from '../../../host/replay/summary.ts';
import type { ReplaySummary } from '../../../host/replay/replay.ts';
import { killAll, spawnWasmlb } from '../../support/process.ts';

afterEach(killAll);

async function replayJson(args: string[]): Promise<ReplaySummary> {
  const p = spawnWasmlb(['replay', DEMO_CAPTURE, '--json', '--log-level', 'warn', ...args]);
  const { code } = await p.exited;
  expect(code, p.stderr.slice(-2000)).toBe(0);
  return JSON.parse(p.stdout.trim().split('\n').at(-1)!) as ReplaySummary;
}

describe('replay with a backup', () => {
  it('kills the primary halfway: every flow keeps its backend, nothing is lost, the takeover is timed', async () => {
    const s = await replayJson(['--kill-primary-at', '0.5']);
    expect(s.flows).toBe(2000);
    expect(s.flowsMoved).toBe(0);
    expect(s.packetsLost).toBe(0);
    expect(s.returnMismatches).toBe(0);
    expect(s.returnUnmapped).toBe(0);
    expect(s.takeoverMs).not.toBeNull();
    expect(s.takeoverMs!).toBeGreaterThan(0);
    expect(s.replicated!).toBeGreaterThan(500); // about half the flows existed at the kill
    expect(s.resyncs).toBe(1);
  });

  it('paced, with the kill while flows wait: what waited on the dead primary is asked again at once, nothing leaves twice', async () => {
    const s = await replayJson(['--kill-primary-at', '0.3', '--pps', '8000']);
    expect(s.flows).toBe(2000);
    expect(s.flowsMoved).toBe(0);
    expect(s.packetsLost).toBe(0);
    expect(s.packetsRetried).toBeGreaterThan(0);
    // every packet once: 20,430 in, 15 not IPv4 (a retry of a packet the new primary was answering
    // already would make one leave twice)
    expect(s.packetsOut).toBe(20415);
    expect(s.returnMismatches).toBe(0);
  });

  it('without a kill, the backup mirrors every flow and no takeover happens', async () => {
    const s = await replayJson(['--backup']);
    expect(s.flows).toBe(2000);
    expect(s.flowsMoved).toBe(0);
    expect(s.takeoverMs).toBeNull();
    expect(s.replicated).toBe(2000);
  });
});
