import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, rmSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  CaptureReader,
  CaptureReaderSync,
  PcapError,
  PcapWriter,
  PcapngBuilder,
  encodePcap,
  readCapture,
  LINKTYPE_ETHERNET,
  LINKTYPE_RAW,
  LINKTYPE_IPV4,
  LINKTYPE_LINUX_SLL,
  LINKTYPE_LINUX_SLL2,
  type CapturedPacket,
} from '../../../host/pcap/index.ts';
import { arpPacket, ipv6UdpPacket, tcpPacket, udpPacket, TCP_SYN } from '../../../host/pcap/packets.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'pcap-codec-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const tcp = (n: number, extra: Parameters<typeof tcpPacket>[0] = {}): Buffer =>
  tcpPacket(extra, { src: 0x0a010000 + n, dst: 0x0a000064 }, { sport: 1000 + n, dport: 80, flags: TCP_SYN, payload: Buffer.alloc(n % 50, n) });

function samplePackets(count: number): { data: Buffer; tsSec: number; tsNsec: number }[] {
  return Array.from({ length: count }, (_, i) => ({ data: tcp(i), tsSec: 1_700_000_000 + i, tsNsec: (i * 1000) % 1e9 }));
}

async function readAllAsync(path: string, opts = {}): Promise<{ packets: CapturedPacket[]; error: unknown; batches: number }> {
  const packets: CapturedPacket[] = [];
  let error: unknown = null;
  let batches = 0;
  try {
    const r = await CaptureReader.open(path, opts);
    for await (const b of r) {
      batches++;
      for (let i = 0; i < b.count; i++) packets.push({ data: Buffer.from(b.packet(i)), origLen: b.origLen[i]!, tsSec: b.tsSec[i]!, tsNsec: b.tsNsec[i]!, linkType: b.linkType[i]!, ipOffset: b.ipOffset[i]!, interfaceId: b.interfaceId[i]! });
    }
  } catch (e) {
    error = e;
  }
  return { packets, error, batches };
}

describe('classic pcap', () => {
  for (const byteOrder of ['le', 'be'] as const) {
    for (const precision of ['us', 'ns'] as const) {
      it(`round-trips ${byteOrder} ${precision}`, () => {
        const pk = samplePackets(20);
        const file = encodePcap({ linkType: LINKTYPE_ETHERNET, byteOrder, precision, snaplen: 1500 }, pk);
        const { info, packets } = readCapture(file);
        expect(info).toMatchObject({ format: 'pcap', byteOrder, precision, snaplen: 1500, linkType: 1, versionMajor: 2, versionMinor: 4 });
        expect(packets.length).toBe(20);
        packets.forEach((p, i) => {
          expect(p.data.equals(pk[i]!.data)).toBe(true);
          expect(p.tsSec).toBe(pk[i]!.tsSec);
          expect(p.tsNsec).toBe(pk[i]!.tsNsec);
          expect(p.ipOffset).toBe(14);
          expect(p.origLen).toBe(pk[i]!.data.length);
        });
      });
    }
  }

  it('reads the magic numbers as tcpdump writes them', () => {
    const le = encodePcap({ linkType: 1 }, []);
    expect(le.subarray(0, 4).toString('hex')).toBe('d4c3b2a1');
    const beNs = encodePcap({ linkType: 1, byteOrder: 'be', precision: 'ns' }, []);
    expect(beNs.subarray(0, 4).toString('hex')).toBe('a1b23c4d');
  });

  it('keeps out-of-range fraction fields exactly', () => {
    const file = encodePcap({ linkType: 1 }, [{ data: tcp(1), tsSec: 5, tsNsec: 0 }]);
    file.writeUInt32LE(2_000_000, 24 + 4); // 2,000,000 µs: invalid but seen in the wild
    const { packets } = readCapture(file);
    expect(packets[0]!.tsNsec).toBe(2e9);
    const again = encodePcap({ linkType: 1 }, packets);
    expect(again.equals(file)).toBe(true);
  });

  it('streams a file across many chunk boundaries, sync and async agree', async () => {
    const pk = Array.from({ length: 3000 }, (_, i) => ({ data: Buffer.alloc(60 + ((i * 37) % 1400), i & 0xff), tsSec: i, tsNsec: 0 }));
    const path = join(dir, 'chunks.pcap');
    writeFileSync(path, encodePcap({ linkType: LINKTYPE_RAW }, pk));
    const a = await readAllAsync(path, { chunkSize: 65536, batchSize: 100 });
    expect(a.error).toBeNull();
    expect(a.packets.length).toBe(3000);
    expect(a.batches).toBeGreaterThanOrEqual(30);
    a.packets.forEach((p, i) => expect(p.data.equals(pk[i]!.data)).toBe(true));
    let n = 0;
    for (const b of new CaptureReaderSync(path, { chunkSize: 65536, batchSize: 77 })) {
      expect(b.count).toBeLessThanOrEqual(77);
      for (let i = 0; i < b.count; i++) expect(b.packet(i).equals(pk[n++]!.data)).toBe(true);
    }
    expect(n).toBe(3000);
  });

  it('grows the buffer for a record larger than a chunk', async () => {
    const big = Buffer.alloc(200_000, 7);
    const path = join(dir, 'big.pcap');
    writeFileSync(path, encodePcap({ linkType: 1 }, [{ data: tcp(1), tsSec: 1, tsNsec: 0 }, { data: big, tsSec: 2, tsNsec: 0 }, { data: tcp(2), tsSec: 3, tsNsec: 0 }]));
    const a = await readAllAsync(path, { chunkSize: 65536 });
    expect(a.error).toBeNull();
    expect(a.packets.map((p) => p.data.length)).toEqual([tcp(1).length, 200_000, tcp(2).length]);
  });

  it('a truncated record: the packets before it, then TRUNCATED naming its offset', async () => {
    const pk = samplePackets(10);
    const file = encodePcap({ linkType: 1 }, pk);
    let off = 24;
    for (let i = 0; i < 7; i++) off += 16 + pk[i]!.data.length;
    for (const cut of [off + 5, off + 16 + 3]) {
      const path = join(dir, `trunc-${cut}.pcap`);
      writeFileSync(path, file.subarray(0, cut));
      const a = await readAllAsync(path, { batchSize: 4 });
      expect(a.packets.length).toBe(7);
      expect(a.error).toBeInstanceOf(PcapError);
      expect((a.error as PcapError).code).toBe('TRUNCATED');
      expect((a.error as PcapError).offset).toBe(off);
      expect((a.error as PcapError).message).toContain(`byte offset ${off}`);
      expect(() => readCapture(path)).toThrow(PcapError);
    }
  });

  it('a corrupt caplen: CORRUPT at that record after the packets before it', () => {
    const pk = samplePackets(5);
    const file = encodePcap({ linkType: 1 }, pk);
    const off = 24 + 16 + pk[0]!.data.length + 16 + pk[1]!.data.length;
    file.writeUInt32LE(0x7fffffff, off + 8);
    const r = new CaptureReaderSync(file, { batchSize: 100 });
    const b = r.next()!;
    expect(b.count).toBe(2);
    try {
      r.next();
      expect.unreachable();
    } catch (e) {
      expect(e).toBeInstanceOf(PcapError);
      expect((e as PcapError).code).toBe('CORRUPT');
      expect((e as PcapError).offset).toBe(off);
    }
  });

  it('rejects non-captures and truncated headers', () => {
    expect(() => readCapture(Buffer.from('hello world, not a pcap file at all'))).toThrow(/not a pcap/);
    try {
      readCapture(encodePcap({ linkType: 1 }, []).subarray(0, 20));
      expect.unreachable();
    } catch (e) {
      expect((e as PcapError).code).toBe('TRUNCATED');
      expect((e as PcapError).offset).toBe(0);
    }
    expect(readCapture(encodePcap({ linkType: 1 }, [])).packets).toEqual([]);
  });
});

describe('link types: where the IPv4 header starts', () => {
  const ipv4 = tcp(3, { link: 'raw' });
  const v6 = ipv6UdpPacket({ link: 'raw' }, Buffer.alloc(16, 1), Buffer.alloc(16, 2), 1, 2, Buffer.from('x'));
  const cases: [string, number, Buffer, number][] = [
    ['ethernet', LINKTYPE_ETHERNET, tcp(3), 14],
    ['802.1Q', LINKTYPE_ETHERNET, tcp(3, { vlans: [10] }), 18],
    ['802.1Q in 802.1ad', LINKTYPE_ETHERNET, (() => { const b = tcp(3, { vlans: [10, 20] }); b.writeUInt16BE(0x88a8, 12); return b; })(), 22],
    ['ARP', LINKTYPE_ETHERNET, arpPacket({}, 1, 1, 2), -1],
    ['IPv6 over ethernet', LINKTYPE_ETHERNET, ipv6UdpPacket({}, Buffer.alloc(16, 1), Buffer.alloc(16, 2), 1, 2, Buffer.from('x')), -1],
    ['runt ethernet', LINKTYPE_ETHERNET, Buffer.alloc(10), -1],
    ['ethertype IPv4, no IP byte', LINKTYPE_ETHERNET, tcp(3).subarray(0, 14), -1],
    ['raw IPv4', LINKTYPE_RAW, ipv4, 0],
    ['raw IPv6', LINKTYPE_RAW, v6, -1],
    ['DLT 228 IPv4', LINKTYPE_IPV4, ipv4, 0],
    ['SLL', LINKTYPE_LINUX_SLL, Buffer.concat([Buffer.from('0000000100060200000000010000', 'hex'), Buffer.from('0800', 'hex'), ipv4]), 16],
    ['SLL ARP', LINKTYPE_LINUX_SLL, Buffer.concat([Buffer.from('0000000100060200000000010000', 'hex'), Buffer.from('0806', 'hex'), Buffer.alloc(28)]), -1],
    ['SLL2', LINKTYPE_LINUX_SLL2, Buffer.concat([Buffer.from('08000000000000020001000602000000', 'hex'), Buffer.from('00010000', 'hex'), ipv4]), 20],
    ['SLL2 IPv6', LINKTYPE_LINUX_SLL2, Buffer.concat([Buffer.from('86dd0000000000020001000602000000', 'hex'), Buffer.from('00010000', 'hex'), v6]), -1],
    ['unknown link type', 147, tcp(3), -1],
  ];
  for (const [name, linkType, data, expected] of cases) {
    it(name, () => {
      const { packets } = readCapture(encodePcap({ linkType }, [{ data, tsSec: 0, tsNsec: 0 }]));
      expect(packets[0]!.linkType).toBe(linkType);
      expect(packets[0]!.ipOffset).toBe(expected);
      if (expected >= 0) expect(packets[0]!.data[expected]! >> 4).toBe(4);
    });
  }
});

describe('pcapng', () => {
  for (const byteOrder of ['le', 'be'] as const) {
    it(`reads ${byteOrder} sections with several interfaces, resolutions and skipped blocks`, () => {
      const p1 = tcp(1);
      const p2 = tcp(2, { link: 'raw' });
      const p3 = udpPacket({}, { src: 1, dst: 2 }, { sport: 1, dport: 2, payload: Buffer.from('abc') });
      const file = new PcapngBuilder()
        .section(byteOrder)
        .interface({ linkType: LINKTYPE_ETHERNET }) // µs default
        .interface({ linkType: LINKTYPE_RAW, tsresol: 9, snaplen: 0 })
        .block(4, Buffer.alloc(8)) // name resolution block: skipped
        .packet(0, 1_700_000_000_123_456n, p1)
        .packet(1, 1_700_000_000_987_654_321n, p2, 1000)
        .block(0x40000bad, Buffer.from('custom block')) // unknown: skipped
        .interface({ linkType: LINKTYPE_ETHERNET, tsresol: 0x80 | 20, tsOffsetSec: 100 })
        .packet(2, (5n << 20n) + (1n << 19n), p3) // 5.5 s in 2^-20 units, plus 100 s offset
        .simplePacket(p1)
        .toBuffer();
      const { info, packets } = readCapture(file);
      expect(info).toMatchObject({ format: 'pcapng', byteOrder, linkType: 1, versionMajor: 1, versionMinor: 0 });
      expect(packets.length).toBe(4);
      expect(packets[0]).toMatchObject({ tsSec: 1_700_000_000, tsNsec: 123_456_000, linkType: 1, ipOffset: 14, interfaceId: 0 });
      expect(packets[1]).toMatchObject({ tsSec: 1_700_000_000, tsNsec: 987_654_321, linkType: 101, ipOffset: 0, interfaceId: 1, origLen: 1000 });
      expect(packets[2]).toMatchObject({ tsSec: 105, tsNsec: 500_000_000, linkType: 1, interfaceId: 2 });
      expect(packets[3]).toMatchObject({ linkType: 1, ipOffset: 14, interfaceId: 0 });
      expect(packets[0]!.data.equals(p1)).toBe(true);
      expect(packets[1]!.data.equals(p2)).toBe(true);
      expect(packets[2]!.data.equals(p3)).toBe(true);
      expect(packets[3]!.data.equals(p1)).toBe(true);
    });
  }

  it('a new section restarts interface ids and may switch byte order', () => {
    const file = new PcapngBuilder()
      .section('le')
      .interface({ linkType: LINKTYPE_ETHERNET })
      .packet(0, 1n, tcp(1))
      .section('be')
      .interface({ linkType: LINKTYPE_RAW })
      .packet(0, 2_000_000n, tcp(2, { link: 'raw' }))
      .toBuffer();
    const { packets } = readCapture(file);
    expect(packets.map((p) => [p.linkType, p.ipOffset, p.tsSec, p.tsNsec])).toEqual([
      [1, 14, 0, 1000],
      [101, 0, 2, 0],
    ]);
  });

  it('nanosecond timestamps beyond 2^53 units convert exactly', () => {
    const ts = 1_767_225_600_999_999_999n;
    const file = new PcapngBuilder().section().interface({ linkType: 1, tsresol: 9 }).packet(0, ts, tcp(1)).toBuffer();
    const p = readCapture(file).packets[0]!;
    expect(p.tsSec).toBe(1_767_225_600);
    expect(p.tsNsec).toBe(999_999_999);
  });

  it('a packet for an undeclared interface or a bad block length is CORRUPT at that block', () => {
    const head = new PcapngBuilder().section().interface({ linkType: 1 }).packet(0, 1n, tcp(1)).toBuffer();
    const bad = new PcapngBuilder().section().interface({ linkType: 1 }).packet(0, 1n, tcp(1)).packet(3, 1n, tcp(2)).toBuffer();
    const r = new CaptureReaderSync(bad);
    expect(r.next()!.count).toBe(1);
    expect(() => r.next()).toThrow(expect.objectContaining({ code: 'CORRUPT', offset: head.length }));
    const len = Buffer.from(head);
    const epbAt = head.length - (32 + ((tcp(1).length + 3) & ~3));
    len.writeUInt32LE(13, epbAt + 4);
    expect(() => readCapture(len)).toThrow(expect.objectContaining({ code: 'CORRUPT', offset: epbAt }));
  });

  it('a file cut inside a block: TRUNCATED at the block start', async () => {
    const full = new PcapngBuilder().section().interface({ linkType: 1 }).packet(0, 1n, tcp(1)).packet(0, 2n, tcp(2)).toBuffer();
    const firstEnd = full.length - (32 + ((tcp(2).length + 3) & ~3));
    const path = join(dir, 'cut.pcapng');
    writeFileSync(path, full.subarray(0, full.length - 6));
    const a = await readAllAsync(path);
    expect(a.packets.length).toBe(1);
    expect(a.error).toMatchObject({ code: 'TRUNCATED', offset: firstEnd });
  });
});

describe('writer', () => {
  it('writes batches byte-identically, span-copied or record by record, and keeps a selection', async () => {
    const pk = samplePackets(2500);
    const src = join(dir, 'w-src.pcap');
    writeFileSync(src, encodePcap({ linkType: 1, snaplen: 65535 }, pk));
    for (const mode of ['span', 'records', 'be'] as const) {
      const out = join(dir, `w-${mode}.pcap`);
      const r = await CaptureReader.open(src, { batchSize: 256 });
      const w = await PcapWriter.open(out, { linkType: r.info.linkType, snaplen: r.info.snaplen, byteOrder: mode === 'be' ? 'be' : 'le', bufferSize: 65536 });
      for await (const b of r) await w.writeBatch(b, mode === 'records' ? new Uint8Array(b.count).fill(1) : undefined);
      await w.close();
      expect(w.packets).toBe(2500);
      const back = readCapture(out);
      expect(back.packets.map((p) => p.data.toString('hex'))).toEqual(pk.map((p) => p.data.toString('hex')));
      if (mode !== 'be') expect(readFileSync(out).equals(readFileSync(src))).toBe(true);
      else expect(back.info.byteOrder).toBe('be');
    }
    const out = join(dir, 'w-odd.pcap');
    const r = await CaptureReader.open(src, { batchSize: 100 });
    const w = await PcapWriter.open(out, { linkType: 1, precision: 'ns' });
    for await (const b of r) await w.writeBatch(b, Uint8Array.from({ length: b.count }, (_, i) => (i % 2 === 0 ? 1 : 0)));
    await w.close();
    const odd = readCapture(out);
    expect(odd.info.precision).toBe('ns');
    expect(odd.packets.length).toBe(1250);
    expect(odd.packets[1]!.data.equals(pk[2]!.data)).toBe(true);
    expect(odd.packets[1]!.tsNsec).toBe(pk[2]!.tsNsec);
  });

  it('refuses use after close and out-of-range slices', async () => {
    const w = await PcapWriter.open(join(dir, 'closed.pcap'), { linkType: 1 });
    expect(() => w.writePacket(0, 0, 10, Buffer.alloc(5), 2, 10)).toThrow(expect.objectContaining({ code: 'BAD_ARGUMENT' }));
    await w.close();
    expect(() => w.writePacket(0, 0, 1, Buffer.alloc(1))).toThrow(expect.objectContaining({ code: 'CLOSED' }));
  });
});

describe('fuzz', () => {
  it('any bytes after a valid header give packets or a PcapError, never anything else', () => {
    const header = encodePcap({ linkType: 1 }, []);
    const ngHeader = new PcapngBuilder().section().interface({ linkType: 1 }).toBuffer();
    fc.assert(
      fc.property(fc.boolean(), fc.uint8Array({ maxLength: 400 }), (ng, tail) => {
        const file = Buffer.concat([ng ? ngHeader : header, tail]);
        try {
          const { packets } = readCapture(file);
          for (const p of packets) expect(p.data.length).toBeLessThanOrEqual(file.length);
        } catch (e) {
          expect(e).toBeInstanceOf(PcapError);
          expect((e as PcapError).offset).toBeGreaterThanOrEqual(0);
          expect((e as PcapError).offset).toBeLessThan(file.length);
        }
      }),
      { numRuns: 500 },
    );
  });

  it('random packets round-trip through the writer and both readers', () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ data: fc.uint8Array({ maxLength: 300 }), tsSec: fc.nat(), tsUs: fc.nat({ max: 999_999 }) }), { maxLength: 30 }),
        fc.constantFrom('le' as const, 'be' as const),
        (pk, byteOrder) => {
          const file = encodePcap({ linkType: 1, byteOrder }, pk.map((p) => ({ data: p.data, tsSec: p.tsSec, tsNsec: p.tsUs * 1000 })));
          const { packets } = readCapture(file);
          expect(packets.map((p) => [Buffer.from(p.data).toString('hex'), p.tsSec, p.tsNsec])).toEqual(
            pk.map((p) => [Buffer.from(p.data).toString('hex'), p.tsSec, p.tsUs * 1000]),
          );
        },
      ),
      { numRuns: 200 },
    );
  });
});
