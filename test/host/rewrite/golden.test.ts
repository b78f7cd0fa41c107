// The reference rewriter against tcprewrite 4.4.3's own outputs (test/fixtures/pcap/tcprewrite/, made by
// make.ts there): every case must match byte for byte.
import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseRules, type RuleOptions } from '../../../host/rewrite/rules.ts';
import { rewriteFile, type RewriteEngine } from '../../../host/rewrite/rewrite.ts';
import { planWildcards } from '../../../host/rewrite/firmware.ts';
import { readCapture } from '../../../host/pcap/index.ts';

const dir = new URL('../../fixtures/pcap/tcprewrite/', import.meta.url).pathname;
interface Manifest {
  tool: string;
  inputs: Record<string, { file: string; labels: string[] }>;
  cases: { name: string; input: string; args: string[]; output: string; exitCode: number }[];
}
const manifest = JSON.parse(readFileSync(join(dir, 'manifest.json'), 'utf8')) as Manifest;

/** tcprewrite flags → our rule options (the subset the fixtures use). */
function optionsFromArgs(args: string[]): RuleOptions & { fixcsum: boolean } {
  const o: { portmap: string[]; pnat: string[]; srcipmap: string[]; dstipmap: string[]; fixcsum: boolean } = { portmap: [], pnat: [], srcipmap: [], dstipmap: [], fixcsum: false };
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!;
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, undefined];
    const value = (): string => inline ?? args[++i]!;
    if (flag === '--portmap' || flag === '-r') o.portmap.push(value());
    else if (flag === '--pnat' || flag === '-N') o.pnat.push(value());
    else if (flag === '--srcipmap' || flag === '-S') o.srcipmap.push(value());
    else if (flag === '--dstipmap' || flag === '-D') o.dstipmap.push(value());
    else if (flag === '--fixcsum' || flag === '-C') o.fixcsum = true;
    else throw new Error(`flag ${a} not mapped`);
  }
  return o;
}

describe(`reference rewriter vs ${manifest.tool}`, () => {
  const tmp = mkdtempSync(join(tmpdir(), 'golden-'));
  const runs: [(typeof manifest.cases)[number], RewriteEngine][] = [];
  for (const c of manifest.cases) {
    runs.push([c, 'reference']);
    if (planWildcards(parseRules(optionsFromArgs(c.args))).unsupported.length === 0) runs.push([c, 'firmware']);
  }
  it('the firmware engine covers the cases its wildcards can express', () => {
    expect(runs.filter(([, e]) => e === 'firmware').map(([c]) => c.name)).toEqual(expect.arrayContaining(['copy', 'dstipmap', 'fixcsum', 'bad1-copy']));
  });
  for (const [c, engine] of runs) {
    it(`${engine}: ${c.name}: tcprewrite ${c.args.join(' ')}`, async () => {
      const rules = parseRules(optionsFromArgs(c.args));
      const out = join(tmp, `${c.name}-${engine}.pcap`);
      const input = manifest.inputs[c.input]!;
      const summary = await rewriteFile(join(dir, input.file), out, rules, { engine });
      expect(summary.engine).toBe(engine);
      const mine = readFileSync(out);
      const golden = readFileSync(join(dir, c.output));
      if (c.exitCode === 0) {
        const a = readCapture(mine).packets, g = readCapture(golden).packets;
        expect(a.length).toBe(g.length);
        a.forEach((p, i) => expect(p.data.toString('hex'), `packet #${i} ${input.labels[i]}`).toBe(g[i]!.data.toString('hex')));
        expect(mine.equals(golden)).toBe(true);
      } else {
        // tcprewrite aborted on a malformed packet: it wrote the packets before it; we keep going
        expect(summary.tcprewriteAborts).toBeGreaterThan(0);
        expect(mine.subarray(0, golden.length).equals(golden)).toBe(true);
        expect(summary.packetsOut).toBe(input.labels.length);
      }
    });
  }
  it.sequential('cleans up', () => rmSync(tmp, { recursive: true, force: true }));
});
