// Shared benchmark plumbing: every bench module exports a `BenchSection`; bench/run.ts runs them,
// prints one table per section, or with --json one object keyed by section name.

export type BenchValue = string | number | null;
export type BenchRow = Record<string, BenchValue>;

export interface BenchOptions {
  /** Shorter runs (fewer iterations) for smoke checks; figures are still measured, only noisier. */
  quick: boolean;
}

export interface BenchSection {
  /** Key in the --json object, e.g. "fastpath", "protocol", "system", "failover". */
  name: string;
  /** Human title printed above the table. */
  title: string;
  run(opts: BenchOptions): Promise<BenchRow[]>;
}

/** Runs `fn` repeatedly until at least `minMs` elapsed; returns operations per second. */
export function opsPerSec(fn: () => number, minMs: number): number {
  let ops = 0;
  const start = process.hrtime.bigint();
  let elapsedNs = 0n;
  const minNs = BigInt(Math.round(minMs * 1e6));
  while (elapsedNs < minNs) {
    ops += fn();
    elapsedNs = process.hrtime.bigint() - start;
  }
  return ops / (Number(elapsedNs) / 1e9);
}

export function formatTable(rows: BenchRow[]): string {
  if (rows.length === 0) return '(no rows)\n';
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const cell = (v: BenchValue | undefined): string =>
    v === null || v === undefined ? '-' : typeof v === 'number' ? fmtNum(v) : v;
  const widths = cols.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (vals: string[]): string =>
    vals.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('  ');
  const out = [line(cols), line(widths.map((w) => '-'.repeat(w)))];
  for (const r of rows) out.push(line(cols.map((c) => cell(r[c]))));
  return out.join('\n') + '\n';
}

function fmtNum(v: number): string {
  if (Number.isInteger(v)) return String(v);
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 1 ? v.toFixed(2) : v.toFixed(3);
}
