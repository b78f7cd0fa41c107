// The async reader's read-ahead: records cut at every kind of boundary, records larger than a chunk and
// than the tail reserve, truncation, all compared with the in-memory parse of the same bytes.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CaptureReader, PcapError, PcapngBuilder, encodePcap, readCapture } from '../../../host/pcap/index.ts';

let dir: string;
let n = 0;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pcap-stream-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function readAsync(file: Buffer, opts: { chunkSize: number; batchSize: number; prefetch?: boolean }): Promise<{ hex: string[]; error: unknown }> {
  const path = join(dir, `f${n++}`);
  writeFileSync(path, file);
  const hex: string[] = [];
  let error: unknown = null;
  try {
    const r = await CaptureReader.open(path, opts);
    for await (const b of r) for (let i = 0; i < b.count; i++) hex.push(b.packet(i).toString('hex'));
  } catch (e) {
    error = e;
  }
  return { hex, error };
}

describe('read-ahead', () => {
  it('random record sizes and chunk sizes: same packets as the in-memory parse, with and without read-ahead', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof(fc.integer({ min: 0, max: 3000 }), fc.integer({ min: 60_000, max: 262_144 })), { minLength: 1, maxLength: 25 }),
        fc.constantFrom(65536, 100_000, 300_000),
        fc.integer({ min: 1, max: 50 }),
        fc.boolean(),
        async (sizes, chunkSize, batchSize, prefetch) => {
          const pk = sizes.map((s, i) => ({ data: Buffer.alloc(s, i & 0xff), tsSec: i, tsNsec: 0 }));
          const file = encodePcap({ linkType: 1 }, pk);
          const r = await readAsync(file, { chunkSize, batchSize, prefetch });
          expect(r.error).toBeNull();
          expect(r.hex.length).toBe(sizes.length);
          r.hex.forEach((h, i) => expect(h.length / 2).toBe(sizes[i]));
          expect(r.hex).toEqual(readCapture(file).packets.map((p) => p.data.toString('hex')));
        },
      ),
      { numRuns: 25 },
    );
  });

  it('a pcapng block larger than the tail reserve and the chunk', async () => {
    const big = Buffer.alloc(1_200_000, 3);
    const file = new PcapngBuilder().section().interface({ linkType: 1 }).packet(0, 1n, Buffer.alloc(100, 1)).packet(0, 2n, big).packet(0, 3n, Buffer.alloc(50, 2)).toBuffer();
    for (const chunkSize of [65536, 1 << 20]) {
      const r = await readAsync(file, { chunkSize, batchSize: 8 });
      expect(r.error).toBeNull();
      expect(r.hex.map((h) => h.length / 2)).toEqual([100, 1_200_000, 50]);
    }
  });

  it('a truncated file still reports the offset of the cut record with read-ahead on', async () => {
    const pk = Array.from({ length: 5000 }, (_, i) => ({ data: Buffer.alloc(100, i & 0xff), tsSec: i, tsNsec: 0 }));
    const file = encodePcap({ linkType: 1 }, pk);
    const cutRecord = 4321;
    const r = await readAsync(file.subarray(0, 24 + cutRecord * 116 + 50), { chunkSize: 65536, batchSize: 64 });
    expect(r.hex.length).toBe(cutRecord);
    expect(r.error).toBeInstanceOf(PcapError);
    expect(r.error).toMatchObject({ code: 'TRUNCATED', offset: 24 + cutRecord * 116 });
  });
});
