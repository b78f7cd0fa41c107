// `wasmlb replay` as a user runs it: a real process, which spawns a real manager process, over UDP.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readCapture } from '../../../host/pcap/index.ts';
import { killAll, ROOT, spawnWasmlb } from '../../support/process.ts';
import { checksumsValid, dstOf, srcOf } from '../../support/packets.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'wasmlb-replay-'));
afterAll(async () => {
  await killAll();
  rmSync(dir, { recursive: true, force: true });
});
const DEMO = path.join(ROOT, 'examples/capture/demo.pcap');

async function run(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = spawnWasmlb(args);
  const { code } = await p.exited;
  return { code, stdout: p.stdout, stderr: p.stderr };
}

describe('wasmlb replay', () => {
  it('balances every flow, rewrites both directions and gives back the return packets byte for byte', async () => {
    const out = path.join(dir, 'out.pcap');
    const r = await run(['replay', DEMO, '--balancer', 'rr', '--out', out, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as Record<string, unknown> & { backends: Record<string, number> };
    expect(s).toMatchObject({ packetsIn: 20430, flows: 2000, returnMismatches: 0, returnUnmapped: 0, packetsLost: 0, packetsDropped: 0 });
    // Round robin over the 4 default backends: 500 flows each.
    expect(Object.values(s.backends)).toEqual([500, 500, 500, 500]);
    for (const k of ['packetsOut', 'mpps', 'newFlowsPerSec']) expect(typeof s[k]).toBe('number');

    const { packets } = readCapture(out);
    expect(packets.length).toBe(s['packetsOut']);
    let toBackend = 0;
    let toClient = 0;
    // each direction of each flow leaves in capture order (the capture's IP ids grow along it), though
    // flows wait for their manager's answer apart
    const lastId = new Map<string, number>();
    let outOfOrder = 0;
    for (const p of packets) {
      const b = p.data.subarray(p.ipOffset);
      if (b[9] !== 6) continue;
      const dir = `${srcOf(b)}>${dstOf(b)}`;
      const id = b.readUInt16BE(4);
      if ((lastId.get(dir) ?? -1) >= id) outOfOrder++;
      lastId.set(dir, id);
      // Every TCP packet leaves with checksums that verify from scratch.
      expect(checksumsValid(b)).toEqual({ ip: true, l4: true });
      if (/^10\.0\.1\.[1-4]:8080$/.test(dstOf(b))) toBackend++;
      if (srcOf(b) === '10.0.0.100:80') toClient++;
      // Nothing reaches a client from a backend address: SNAT caught every return packet.
      expect(srcOf(b)).not.toMatch(/^10\.0\.1\./);
    }
    expect(toBackend).toBeGreaterThan(10_000);
    expect(toClient).toBe(8000);
    expect(outOfOrder).toBe(0);
  });

  it('refuses bad input with one clear line and exit status 2', async () => {
    const missing = await run(['replay', path.join(dir, 'nope.pcap')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/cannot read .*nope\.pcap/);

    const vip = await run(['replay', DEMO, '--vip', '10.0.0.1']);
    expect(vip.code).toBe(2);
    expect(vip.stderr).toMatch(/--vip/);

    const badPps = await run(['replay', DEMO, '--pps', '-5']);
    expect(badPps.code).not.toBe(0);
    expect(badPps.stderr).toMatch(/positive number/);

    // a timer Node cannot hold (it would fire every millisecond)
    const interval = await run(['manager', '--stats-interval', '3000000000']);
    expect(interval.code).not.toBe(0);
    expect(interval.stderr).toMatch(/--stats-interval.*at most 2147483647/);

    const cfg = path.join(dir, 'bad.yaml');
    writeFileSync(cfg, 'vips:\n  - address: 10.0.0.100\n    port: 99999\n    backends: [{ address: 10.0.1.1 }]\n');
    const config = await run(['replay', DEMO, '--config', cfg]);
    expect(config.code).toBe(2);
    expect(config.stderr).toMatch(/bad\.yaml:3: vips\[0\]\.port/);

    const garbage = path.join(dir, 'garbage.pcap');
    writeFileSync(garbage, Buffer.from('this is not a capture at all, just text'));
    const notPcap = await run(['replay', garbage]);
    expect(notPcap.code).toBe(2);
    expect(notPcap.stderr).toMatch(/garbage\.pcap/);
  });
});
