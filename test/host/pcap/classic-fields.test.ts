// The classic pcap record loop reads header fields with one load each and answers the common Ethernet
// case inline: every field and every IPv4 offset must be what the plain decoders give, in both byte orders
// and precisions.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { CaptureReaderSync, encodePcap, ipv4Offset } from '../../../host/pcap/index.ts';

const frame = fc
  .record({
    len: fc.nat({ max: 40 }),
    type: fc.constantFrom(0x0800, 0x0800, 0x8100, 0x86dd, 0x0806, 0x0801),
    first: fc.integer({ min: 0, max: 255 }), // version nibble (and IHL) of what follows the ethertype
    inner: fc.constantFrom(0x0800, 0x86dd),
    fill: fc.integer({ min: 0, max: 255 }),
  })
  .map((f) => {
    const b = Buffer.alloc(f.len, f.fill);
    if (f.len > 12) b[12] = f.type >> 8;
    if (f.len > 13) b[13] = f.type & 0xff;
    if (f.len > 14) b[14] = f.first;
    if (f.len > 17) b.writeUInt16BE(f.inner, 16);
    if (f.len > 18) b[18] = f.first;
    return b;
  });

describe('classic pcap record fields', () => {
  it('caplen, origlen, timestamps and IPv4 offsets match the plain decoders (both byte orders, µs and ns)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(frame, fc.nat(), fc.nat({ max: 999_999_999 }), fc.nat({ max: 100 })), { minLength: 1, maxLength: 30 }),
        fc.constantFrom('le', 'be'),
        fc.constantFrom('us', 'ns'),
        fc.constantFrom(1, 101, 113),
        (pk, byteOrder, precision, linkType) => {
          const file = encodePcap(
            { linkType, byteOrder, precision },
            pk.map(([data, sec, ns, extra]) => ({ data, tsSec: sec, tsNsec: precision === 'us' ? Math.floor(ns / 1000) * 1000 : ns, origLen: data.length + extra })),
          );
          const got: unknown[] = [];
          for (const b of new CaptureReaderSync(file, { batchSize: 7 }))
            for (let i = 0; i < b.count; i++) got.push([b.capLen[i], b.origLen[i], b.tsSec[i], b.tsNsec[i], b.ipOffset[i], b.linkType[i]]);
          expect(got).toEqual(
            pk.map(([data, sec, ns, extra]) => [
              data.length, data.length + extra, sec, precision === 'us' ? Math.floor(ns / 1000) * 1000 : ns, ipv4Offset(linkType, data, 0, data.length), linkType,
            ]),
          );
        },
      ),
      { numRuns: 300 },
    );
  });
});
