import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseSamples, writeReport } from '../../bench/report.ts';
import type { BenchReport } from '../../bench/report.ts';
import type { BenchRow } from '../../bench/lib.ts';

interface El {
  name: string;
  attrs: Record<string, string>;
  children: El[];
  text: string;
}

/** A strict little XML parser: throws on anything not well-formed (what browsers refuse to draw). */
function parseXml(src: string): El {
  const root: El = { name: '#root', attrs: {}, children: [], text: '' };
  const stack: El[] = [root];
  let i = 0;
  const checkText = (t: string): void => {
    if (/<|&(?!(amp|lt|gt|quot|apos|#\d+);)/.test(t)) throw new Error(`unescaped text: ${t.slice(0, 40)}`);
  };
  while (i < src.length) {
    const lt = src.indexOf('<', i);
    const text = src.slice(i, lt < 0 ? src.length : lt);
    checkText(text);
    stack[stack.length - 1]!.text += text;
    if (lt < 0) break;
    const gt = src.indexOf('>', lt);
    if (gt < 0) throw new Error('unterminated tag');
    const tag = src.slice(lt + 1, gt);
    i = gt + 1;
    if (tag.startsWith('?') || tag.startsWith('!')) continue;
    if (tag.startsWith('/')) {
      const open = stack.pop();
      if (!open || open.name !== tag.slice(1).trim()) throw new Error(`mismatched </${tag.slice(1)}>`);
      continue;
    }
    const selfClosing = tag.endsWith('/');
    const body = selfClosing ? tag.slice(0, -1) : tag;
    const m = /^([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*$/.exec(body);
    if (!m) throw new Error(`malformed tag <${tag}>`);
    const attrs: Record<string, string> = {};
    for (const a of m[2]!.matchAll(/([\w:-]+)="([^"]*)"/g)) {
      if (a[1]! in attrs) throw new Error(`duplicate attribute ${a[1]}`);
      checkText(a[2]!);
      attrs[a[1]!] = a[2]!;
    }
    const el: El = { name: m[1]!, attrs, children: [], text: '' };
    stack[stack.length - 1]!.children.push(el);
    if (!selfClosing) stack.push(el);
  }
  if (stack.length !== 1) throw new Error(`unclosed <${stack[stack.length - 1]!.name}>`);
  if (root.children.length !== 1 || root.children[0]!.name !== 'svg') throw new Error('not one <svg> root');
  return root.children[0]!;
}

function all(el: El, pred: (e: El) => boolean): El[] {
  const out: El[] = [];
  const walk = (e: El): void => {
    if (pred(e)) out.push(e);
    e.children.forEach(walk);
  };
  walk(el);
  return out;
}

const takeoverMs = [84.2, 91.5, 88, 102.7, 79.9, 95.1, 87.3, 140.6, 90.2, 85.5, 93.8, 89.9];
const results: Record<string, BenchRow[]> = {
  fastpath: [
    { name: 'fixed-hit-1k', flows: 1000, mpps: 12.5, baselineMpps: 6.25 },
    { name: 'fixed-hit-10k', flows: 10000, mpps: 11.75, baselineMpps: 5.5 },
    { name: 'fixed-hit-100k', flows: 100000, mpps: 9.125, baselineMpps: 3.875 },
    { name: 'fixed-hit-1m', flows: 1000000, mpps: 6.5, baselineMpps: null },
  ],
  protocol: [{ name: 'encode | decode', opsPerSec: 1234567, note: 'a < b & c' }],
  failover: [{ name: 'takeover', kills: takeoverMs.length, samplesMs: takeoverMs.join(',') }],
};

describe('bench/report writeReport', () => {
  const dir = mkdtempSync(join(tmpdir(), 'wasmlb-report-'));
  const written = writeReport(results, {
    dir,
    titles: { fastpath: 'Fast path (64-byte packets)' },
    now: new Date('2026-11-24T12:00:00Z'),
  });

  it('writes results.json, BENCHMARKS.md and the plots', () => {
    expect(written.map((p) => p.slice(dir.length + 1)).sort()).toEqual([
      'BENCHMARKS.md',
      'bench/plots/failover-takeover.svg',
      'bench/plots/fastpath.svg',
      'bench/results.json',
    ]);
    for (const p of written) expect(existsSync(p)).toBe(true);
    const json = JSON.parse(readFileSync(join(dir, 'bench/results.json'), 'utf8')) as BenchReport;
    expect(json.generatedAt).toBe('2026-11-24T12:00:00.000Z');
    expect(json.sections).toEqual(results);
    expect(json.environment.node).toBe(process.version);
  });

  it('puts the numbers in markdown tables and links the plots', () => {
    const md = readFileSync(join(dir, 'BENCHMARKS.md'), 'utf8');
    expect(md).toContain('## Fast path (64-byte packets)');
    expect(md).toContain('| name | flows | mpps | baselineMpps |');
    expect(md).toContain('| fixed-hit-1k | 1000 | 12.50 | 6.25 |');
    expect(md).toContain('| fixed-hit-1m | 1000000 | 6.50 | - |');
    expect(md).toContain('| encode \\| decode | 1234567 | a < b & c |');
    // Samples are summarised, not dumped.
    expect(md).toContain('| name | kills | samples | minMs | medianMs | p99Ms | maxMs |');
    expect(md).toContain('| takeover | 12 | 12 | 79.90 | 90.05 | 136 | 141 |');
    expect(md).not.toContain('84.2,91.5');
    expect(md).toContain('](bench/plots/fastpath.svg)');
    expect(md).toContain('](bench/plots/failover-takeover.svg)');
    expect(md).toContain('](bench/results.json)');
  });

  it('draws packets/s against table size for wasm and the baseline', () => {
    const svg = parseXml(readFileSync(join(dir, 'bench/plots/fastpath.svg'), 'utf8'));
    expect(svg.attrs['xmlns']).toBe('http://www.w3.org/2000/svg');
    const series = all(svg, (e) => e.attrs['data-series'] !== undefined);
    expect(series.map((s) => s.attrs['data-series'])).toEqual(['wasm', 'TypeScript baseline']);
    const pts = (s: El): string[] =>
      all(s, (e) => e.name === 'circle').map((c) => `${c.attrs['data-x']}:${c.attrs['data-y']}`);
    expect(pts(series[0]!)).toEqual(['1000:12.5', '10000:11.75', '100000:9.125', '1000000:6.5']);
    expect(pts(series[1]!)).toEqual(['1000:6.25', '10000:5.5', '100000:3.875']);
    // Higher Mpps is drawn higher (smaller y), larger tables further right.
    const cy = all(series[0]!, (e) => e.name === 'circle').map((c) => Number(c.attrs['cy']));
    const cx = all(series[0]!, (e) => e.name === 'circle').map((c) => Number(c.attrs['cx']));
    expect(cy).toEqual([...cy].sort((a, b) => a - b));
    // Every point lies inside the drawing (the y axis covers the largest value).
    const [, , vw, vh] = svg.attrs['viewBox']!.split(' ').map(Number);
    for (const c of all(svg, (e) => e.name === 'circle')) {
      expect(Number(c.attrs['cy'])).toBeGreaterThan(30);
      expect(Number(c.attrs['cy'])).toBeLessThan(vh!);
      expect(Number(c.attrs['cx'])).toBeLessThan(vw!);
    }
    expect(cx).toEqual([...cx].sort((a, b) => a - b));
    expect(all(series[1]!, (e) => e.name === 'path')[0]!.attrs['stroke-dasharray']).toBeDefined();
  });

  it('draws the takeover distribution with every sample', () => {
    const svg = parseXml(readFileSync(join(dir, 'bench/plots/failover-takeover.svg'), 'utf8'));
    const dots = all(svg, (e) => e.attrs['data-ms'] !== undefined).map((e) => Number(e.attrs['data-ms']));
    expect(dots).toEqual(takeoverMs);
    const bins = all(svg, (e) => e.attrs['data-count'] !== undefined).map((e) => Number(e.attrs['data-count']));
    expect(bins.reduce((a, b) => a + b, 0)).toBe(takeoverMs.length);
    expect(bins.length).toBeGreaterThanOrEqual(5);
    const markers = all(svg, (e) => e.attrs['data-marker'] !== undefined).map((e) => e.attrs['data-marker']);
    expect(markers).toEqual(['median', 'p99']);
  });

  it('handles degenerate inputs', () => {
    const d = mkdtempSync(join(tmpdir(), 'wasmlb-report-'));
    const w = writeReport(
      { fastpath: [{ name: 'x', flows: 100, mpps: 1, baselineMpps: 1 }], failover: [{ name: 'one', samplesMs: '50' }], empty: [] },
      { dir: d },
    );
    expect(w).toHaveLength(4);
    for (const p of w.filter((f) => f.endsWith('.svg'))) parseXml(readFileSync(p, 'utf8'));
    expect(readFileSync(join(d, 'BENCHMARKS.md'), 'utf8')).toContain('(no rows)');
    expect(parseSamples('1, 2 ,3')).toEqual([1, 2, 3]);
    expect(parseSamples('n/a')).toBeNull();
    expect(parseSamples(5)).toBeNull();
  });

  it('the checker rejects broken SVG (so the tests above can fail)', () => {
    expect(() => parseXml('<svg><g></svg>')).toThrow();
    expect(() => parseXml('<svg><text>a < b</text></svg>')).toThrow();
    expect(() => parseXml('<svg x=1></svg>')).toThrow();
  });
});
