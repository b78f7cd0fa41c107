// The rewrite benchmark: a generated capture of small TCP packets over many flows, rewritten file to file.
// Rows { name, mpps } for bench/ (the lead registers them under `system`). Not used by tests.

import { spawnSync } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeBenchCapture } from '../pcap/generate.ts';
import { CaptureReader } from '../pcap/reader.ts';
import { PcapWriter } from '../pcap/writer.ts';
import { parseRules } from './rules.ts';
import { rewriteFile } from './rewrite.ts';

export interface RewriteBenchRow {
  [key: string]: string | number | null;
  name: string;
  mpps: number;
}

/** 1M packets / 100K flows (quick: 200K / 20K); best of `repeats` runs per row. */
export async function benchRewrite(opts: { quick: boolean; repeats?: number; tcprewrite?: boolean }): Promise<RewriteBenchRow[]> {
  const packets = opts.quick ? 200_000 : 1_000_000;
  const flows = packets / 10;
  const repeats = opts.repeats ?? (opts.quick ? 1 : 3);
  const dir = await mkdtemp(join(tmpdir(), 'wasmlb-bench-rewrite-'));
  const input = join(dir, 'in.pcap');
  const output = join(dir, 'out.pcap');
  const label = `${packets / 1e6}M x 64B, ${flows / 1000}K flows`;
  try {
    await writeBenchCapture(input, { packets, flows });
    const best = async (run: () => Promise<number>): Promise<number> => {
      let m = 0;
      for (let i = 0; i < repeats; i++) {
        await rm(output, { force: true }); // every run writes a new file (truncating 80 MB costs more than the rewrite)
        m = Math.max(m, await run());
      }
      return m;
    };
    const rules = parseRules({ dnat: ['10.0.0.100:80=192.168.1.10:8080'] });
    const rows: RewriteBenchRow[] = [];
    rows.push({ name: `pcap read+write ${label}`, mpps: await best(() => copyMpps(input, output)) });
    // a row is what it says: the engine named did the packets, and every client packet was rewritten
    const checked = async (o: Parameters<typeof rewriteFile>[3]): Promise<number> => {
      const r = await rewriteFile(input, output, rules, o);
      if (r.engine !== o!.engine || r.rewritten < packets / 2 || (r.engine === 'firmware' && r.firmwarePackets < packets * 0.99)) {
        throw new Error(`rewrite bench: ${o!.engine} run: engine ${r.engine}, ${r.firmwarePackets} packets in wasm, ${r.rewritten} rewritten of ${packets}`);
      }
      return r.mpps;
    };
    for (const engine of ['firmware', 'reference'] as const) {
      rows.push({ name: `rewrite --dnat ${label} (${engine})`, mpps: await best(() => checked({ engine })) });
    }
    rows.push({ name: `rewrite --dnat ${label} (firmware, --trust-checksums)`, mpps: await best(() => checked({ engine: 'firmware', trustChecksums: true })) });
    if (opts.tcprewrite ?? true) {
      const ours = join(dir, 'ours.pcap');
      await rewriteFile(input, ours, rules, { engine: 'firmware' });
      const t = await best(async () => {
        const t0 = performance.now();
        const r = spawnSync('tcprewrite', ['--dstipmap=10.0.0.100/32:192.168.1.10/32', '--portmap=80:8080', `--infile=${input}`, `--outfile=${output}`]);
        if (r.error || r.status !== 0) return 0;
        return packets / ((performance.now() - t0) / 1000) / 1e6;
      });
      // the same mapping in tcprewrite's words: its file and ours must be the same bytes
      if (t > 0) rows.push({ name: `tcprewrite ${label} (reference point)`, mpps: t, identicalToFirmware: (await readFile(output)).equals(await readFile(ours)) ? 'yes' : 'NO' });
    }
    return rows;
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function copyMpps(input: string, output: string): Promise<number> {
  const t0 = performance.now();
  const r = await CaptureReader.open(input);
  const w = await PcapWriter.open(output, { linkType: r.info.linkType, snaplen: r.info.snaplen });
  let n = 0;
  for await (const b of r) {
    n += b.count;
    await w.writeBatch(b);
  }
  await w.close();
  return n / ((performance.now() - t0) / 1000) / 1e6;
}
