// What a replay prints: a progress bar on a terminal while it runs, then a summary table or JSON.
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';
import type { ReplaySummary } from './replay.ts';

export const DEMO_CAPTURE = fileURLToPath(new URL('../../examples/capture/demo.pcap', import.meta.url));

export function progressBar(label: string): { update: (done: number, total: number) => void; stop: () => void } | null {
  if (!process.stderr.isTTY) return null;
  const bar = new cliProgress.SingleBar(
    { format: `${label} [{bar}] {percentage}% | {value}/{total} bytes | eta {eta}s`, stream: process.stderr, hideCursor: true },
    cliProgress.Presets.shades_classic,
  );
  let started = false;
  return {
    update: (done, total) => {
      if (!started) {
        bar.start(total, 0);
        started = true;
      }
      bar.update(done);
    },
    stop: () => {
      if (started) bar.stop();
    },
  };
}

export function printSummary(s: ReplaySummary, json: boolean): void {
  if (json) {
    process.stdout.write(JSON.stringify(s) + '\n');
    return;
  }
  const rows: Array<[string, string]> = [
    ['packets in', String(s.packetsIn)],
    ['packets out', String(s.packetsOut)],
    ['packets dropped', `${s.packetsDropped}${Object.keys(s.dropsByReason).length ? ` (${Object.entries(s.dropsByReason).map(([k, v]) => `${k} ${v}`).join(', ')})` : ''}`],
    ['not IPv4 (skipped)', String(s.nonIpv4)],
    ['flows', String(s.flows)],
    ...Object.entries(s.backends)
      .sort(([a], [b]) => a.localeCompare(b))
      .map(([b, n]): [string, string] => [`  backend ${b}`, `${n} flows`]),
    ['return packets', `${s.returnPackets} (${s.returnMismatches} differ from the capture, ${s.returnUnmapped} unmapped)`],
    ['packets lost', String(s.packetsLost)],
    ...(s.replicated !== null
      ? ([
          ['replicated to backup', `${s.replicated} flows (${s.resyncs ?? 0} resyncs)`],
          ['takeover', s.takeoverMs === null ? 'none' : `${s.takeoverMs} ms after the primary was killed`],
          ['packets asked again', `${s.packetsRetried} (sent to a manager that never answered, run again after the takeover)`],
          ['flows moved', `${s.flowsMoved}${s.takeoverMs !== null ? ' (flows whose backend changed across the takeover)' : ''}`],
        ] satisfies Array<[string, string]>)
      : []),
    ['elapsed', `${s.elapsedSec.toFixed(3)} s`],
    ['rate', `${s.mpps.toFixed(3)} Mpps`],
    ['new flows', `${Math.round(s.newFlowsPerSec)} /s`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  process.stdout.write(rows.map(([k, v]) => `${k.padEnd(w)}  ${v}`).join('\n') + '\n');
}
