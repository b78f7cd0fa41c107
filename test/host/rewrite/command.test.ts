import { describe, expect, it, afterAll } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { addRewriteCommand, runRewrite } from '../../../host/rewrite/command.ts';
import { readCapture } from '../../../host/pcap/index.ts';

const demo = new URL('../../../examples/capture/demo.pcap', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'rewrite-cmd-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('wasmlb rewrite', () => {
  it('--json prints one summary object and the output holds the rewritten capture', async () => {
    const lines: string[] = [];
    const out = join(dir, 'out.pcap');
    await runRewrite(demo, out, { dnat: ['10.0.0.100:80=192.168.1.10:8080'], json: true }, (s) => lines.push(s));
    expect(lines.length).toBe(1);
    const s = JSON.parse(lines[0]!) as Record<string, unknown>;
    expect(s).toMatchObject({ packetsIn: 20430, packetsOut: 20430, engine: 'firmware' });
    const { packets } = readCapture(out);
    const toBackend = packets.filter((p) => p.ipOffset >= 0 && p.data.readUInt32BE(p.ipOffset + 16) === 0xc0a8010a);
    expect(toBackend.length).toBe(12_000); // 2000 flows x 6 client packets
    expect(toBackend.every((p) => p.data.readUInt16BE(p.ipOffset + 22) === 8080)).toBe(true);
  });

  it('parses tcprewrite flags and reports bad ones with exit code 2', async () => {
    const program = new Command().exitOverride();
    addRewriteCommand(program);
    const errors: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string) => (errors.push(String(s)), true)) as typeof process.stderr.write;
    try {
      await program.parseAsync(['node', 'wasmlb', 'rewrite', demo, join(dir, 'x.pcap'), '-r', '80']);
    } finally {
      process.stderr.write = write;
    }
    expect(process.exitCode).toBe(2);
    process.exitCode = 0;
    expect(errors.join('')).toMatch(/--portmap "80"/);
    const lines: string[] = [];
    await runRewrite(demo, join(dir, 'y.pcap'), { pnat: ['10.0.0.0/24:192.168.1.0/24'], portmap: ['80:8080'] }, (s) => lines.push(s));
    expect(lines.join('\n')).toMatch(/engine reference/);
    expect(lines.join('\n')).toMatch(/reference rewriter because: --pnat/);
  });
});
