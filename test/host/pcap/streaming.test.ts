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

describe('writing from the reader buffer', () => {
  it('batches changed in place and written without a copy come out exactly, whatever the chunk, batch and buffer sizes', async () => {
    const { PcapWriter } = await import('../../../host/pcap/writer.ts');
    const { readFileSync } = await import('node:fs');
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.oneof({ arbitrary: fc.integer({ min: 0, max: 2000 }), weight: 8 }, { arbitrary: fc.integer({ min: 60_000, max: 200_000 }), weight: 1 }), { minLength: 1, maxLength: 120 }),
        fc.constantFrom(65536, 100_000),
        fc.integer({ min: 1, max: 40 }),
        fc.constantFrom(65536, 200_000),
        async (sizes, chunkSize, batchSize, bufferSize) => {
          const pk = sizes.map((s, i) => ({ data: Buffer.alloc(s, i & 0xff), tsSec: i, tsNsec: 0 }));
          const input = join(dir, `z${n++}`), output = join(dir, `z${n++}`);
          writeFileSync(input, encodePcap({ linkType: 1 }, pk));
          const r = await CaptureReader.open(input, { chunkSize, batchSize });
          const w = await PcapWriter.open(output, { linkType: 1 });
          let direct = 0;
          for await (const b of r) {
            // a rewrite in place: every byte of every packet changes
            for (let i = 0; i < b.count; i++) {
              const o = b.offset[i]!;
              for (let k = 0; k < b.capLen[i]!; k++) b.data[o + k] ^= 0x5a;
            }
            if (b.lease !== null) direct++;
            await w.writeBatch(b);
          }
          await w.close();
          expect(direct).toBeGreaterThan(0);
          const want = encodePcap({ linkType: 1 }, pk.map((p) => ({ ...p, data: p.data.map((x) => x ^ 0x5a) })));
          expect(readFileSync(output).equals(want)).toBe(true);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('a pinned buffer is never overwritten: every pinned span keeps its bytes to the end of the file', async () => {
    await fc.assert(
      fc.asyncProperty(
        // records beyond the tail reserve too (a header snaplen above libpcap's maximum allows them)
        fc.array(
          fc.oneof(
            { arbitrary: fc.integer({ min: 0, max: 3000 }), weight: 6 },
            { arbitrary: fc.integer({ min: 60_000, max: 262_144 }), weight: 1 },
            { arbitrary: fc.integer({ min: 300_000, max: 700_000 }), weight: 1 },
          ),
          { minLength: 1, maxLength: 30 },
        ),
        fc.constantFrom(65536, 100_000, 300_000),
        fc.integer({ min: 1, max: 30 }),
        fc.boolean(),
        async (sizes, chunkSize, batchSize, prefetch) => {
          const pk = sizes.map((s, i) => ({ data: Buffer.alloc(s, i & 0xff), tsSec: i, tsNsec: 0 }));
          const input = join(dir, `p${n++}`);
          writeFileSync(input, encodePcap({ linkType: 1, snaplen: 1 << 20 }, pk));
          const r = await CaptureReader.open(input, { chunkSize, batchSize, prefetch });
          const held: { buf: Buffer; start: number; copy: Buffer }[] = [];
          const leases = new Set<{ pins: number }>();
          for await (const b of r) {
            expect(b.lease?.buf).toBe(b.data);
            b.lease!.pins++; // as a writer that has not written yet
            leases.add(b.lease!);
            held.push({ buf: b.data, start: b.spanStart, copy: Buffer.from(b.data.subarray(b.spanStart, b.spanEnd)) });
          }
          for (const h of held) expect(h.buf.subarray(h.start, h.start + h.copy.length).equals(h.copy)).toBe(true);
          for (const l of leases) l.pins = 0;
        },
      ),
      { numRuns: 60 },
    );
  });
});
