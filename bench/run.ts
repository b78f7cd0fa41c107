// `npm run bench [-- --json] [--quick] [--only name,name]`: runs every benchmark section.
import type { BenchRow, BenchSection } from './lib.ts';
import { formatTable } from './lib.ts';

const SECTIONS: Array<() => Promise<BenchSection>> = [
  // Each section module is added here as it lands.
];

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const quick = args.includes('--quick');
  const onlyIdx = args.indexOf('--only');
  const only = onlyIdx >= 0 ? new Set((args[onlyIdx + 1] ?? '').split(',')) : null;
  const result: Record<string, BenchRow[]> = {};
  for (const load of SECTIONS) {
    const section = await load();
    if (only && !only.has(section.name)) continue;
    if (!json) process.stdout.write(`\n== ${section.title} ==\n`);
    const rows = await section.run({ quick });
    result[section.name] = rows;
    if (!json) process.stdout.write(formatTable(rows));
  }
  if (json) process.stdout.write(JSON.stringify(result, null, 2) + '\n');
}

await main();
