// `npm run bench [-- --json] [--quick] [--only name,name] [--no-report]`: runs every benchmark
// section, prints one table per section (or one JSON object keyed by section name), and writes
// bench/results.json and BENCHMARKS.md with plots.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchRow, BenchSection } from './lib.ts';
import { formatTable } from './lib.ts';
import { writeReport } from './report.ts';

const SECTIONS: Array<() => Promise<BenchSection>> = [
  async () => (await import('./fastpath.ts')).section,
  async () => (await import('./churn.ts')).section,
  async () => (await import('./protocol.ts')).section,
  async () => (await import('./system.ts')).section,
  async () => (await import('./failover.ts')).section,
  async () => (await import('./tun.ts')).section,
  async () => (await import('./live-agent.ts')).section,
];

export interface RunOptions {
  json: boolean;
  quick: boolean;
  only: Set<string> | null;
  /** Write bench/results.json and BENCHMARKS.md. */
  report: boolean;
}

export async function runBenchmarks({ json, quick, only, report }: RunOptions): Promise<void> {
  const result: Record<string, BenchRow[]> = {};
  const titles: Record<string, string> = {};
  for (const load of SECTIONS) {
    const section = await load();
    if (only && !only.has(section.name)) continue;
    titles[section.name] = section.title;
    if (!json) process.stdout.write(`\n== ${section.title} ==\n`);
    try {
      result[section.name] = await section.run({ quick });
    } catch (e) {
      // A section that cannot run here (e.g. no TUN device) says why and the others still run.
      result[section.name] = [{ name: 'error', error: e instanceof Error ? e.message : String(e) }];
    }
    if (!json) process.stdout.write(formatTable(result[section.name]!));
  }
  if (json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
  if (report) {
    const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
    const files = writeReport(result, { dir: root, titles });
    if (!json) process.stdout.write(`\nwrote ${files.map((f) => path.relative(root, f)).join(', ')}\n`);
  }
}

// Run directly (npm run bench), not when imported by `wasmlb bench`.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const onlyIdx = args.indexOf('--only');
  const only = onlyIdx >= 0 ? new Set((args[onlyIdx + 1] ?? '').split(',')) : null;
  await runBenchmarks({ json: args.includes('--json'), quick: args.includes('--quick'), only, report: !only && !args.includes('--no-report') });
}
