// Arbitrary and mutated packets through both engines: never a throw, never a byte outside the packet,
// and the firmware engine writes exactly what the reference engine writes.
import { describe, expect, it, afterAll } from 'vitest';
import fc from 'fast-check';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { encodePcap, readCapture } from '../../../host/pcap/index.ts';
import { tcpPacket, udpPacket } from '../../../host/pcap/packets.ts';
import { parseRules } from '../../../host/rewrite/rules.ts';
import { rewriteFile } from '../../../host/rewrite/rewrite.ts';
import { OUTCOME_CHANGED, ReferenceRewriter } from '../../../host/rewrite/reference.ts';

const dir = mkdtempSync(join(tmpdir(), 'rewrite-fuzz-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const VIP = 0x0a000064;

const packet = fc
  .record({
    udp: fc.boolean(),
    src: fc.oneof(fc.constant(0x0a010203), fc.constant(VIP), fc.integer({ min: 0, max: 0xffffffff })),
    dst: fc.oneof({ arbitrary: fc.constant(VIP), weight: 3 }, { arbitrary: fc.integer({ min: 0, max: 0xffffffff }), weight: 1 }),
    sport: fc.oneof(fc.constant(80), fc.integer({ min: 0, max: 65535 })),
    dport: fc.oneof({ arbitrary: fc.constant(80), weight: 3 }, { arbitrary: fc.integer({ min: 0, max: 65535 }), weight: 1 }),
    payload: fc.uint8Array({ maxLength: 40 }),
    vlans: fc.array(fc.integer({ min: 0, max: 4095 }), { maxLength: 2 }),
    // mostly clean packets (the firmware path), some mutated, cut or padded (the reference path)
    mutations: fc.oneof(
      { arbitrary: fc.constant<[number, number][]>([]), weight: 3 },
      { arbitrary: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 3 }), weight: 1 },
    ),
    cut: fc.option(fc.nat(), { nil: undefined, freq: 5 }),
    pad: fc.oneof({ arbitrary: fc.constant(0), weight: 4 }, { arbitrary: fc.integer({ min: 1, max: 8 }), weight: 1 }),
  })
  .map((p) => {
    const l2 = { vlans: p.vlans };
    const ip = { src: p.src >>> 0, dst: p.dst >>> 0 };
    let b = p.udp
      ? udpPacket(l2, ip, { sport: p.sport, dport: p.dport, payload: p.payload })
      : tcpPacket(l2, ip, { sport: p.sport, dport: p.dport, flags: 0x10, payload: p.payload });
    b = Buffer.concat([b, Buffer.alloc(p.pad)]);
    for (const [at, v] of p.mutations) b[at % b.length] = v;
    const origLen = b.length;
    if (p.cut !== undefined) b = b.subarray(0, p.cut % (b.length + 1));
    return { data: b, origLen };
  });

describe('rewrite fuzz', () => {
  it('random and mutated packets: the firmware engine writes what the reference engine writes', async () => {
    const rules = parseRules({ dnat: ['10.0.0.100:80=192.168.1.10:8080'], snat: ['10.0.0.100:80=10.0.0.200:8080'] });
    let run = 0;
    let inWasm = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(packet, { minLength: 10, maxLength: 40 }), async (pk) => {
        const input = join(dir, `in${run}.pcap`);
        writeFileSync(input, encodePcap({ linkType: 1 }, pk.map((p, i) => ({ data: p.data, origLen: p.origLen, tsSec: i, tsNsec: 0 }))));
        const a = join(dir, `fw${run}.pcap`), b = join(dir, `ref${run}.pcap`);
        run++;
        const sa = await rewriteFile(input, a, rules, { engine: 'firmware', batchSize: 7 });
        const sb = await rewriteFile(input, b, rules, { engine: 'reference' });
        expect(sa.packetsOut).toBe(pk.length);
        expect(readFileSync(a).equals(readFileSync(b))).toBe(true);
        expect(sa.rewritten).toBe(sb.rewritten);
        inWasm += sa.firmwarePackets;
      }),
      { numRuns: 60 },
    );
    expect(inWasm).toBeGreaterThan(50); // the comparison is not vacuous: many packets were rewritten in wasm
  });

  it('arbitrary bytes under every link type: no throw, nothing written outside the packet', () => {
    const r = new ReferenceRewriter(parseRules({ pnat: ['0.0.0.0/1:128.0.0.0/1'], portmap: ['0-65535:1'] }));
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 120 }), fc.constantFrom(1, 101, 113), fc.nat({ max: 200 }), (bytes, linkType, extra) => {
        const guard = 8;
        const buf = new Uint8Array(guard + bytes.length + guard).fill(0xa5);
        buf.set(bytes, guard);
        const o = r.rewrite(linkType, buf, guard, bytes.length, bytes.length + extra);
        expect(buf.subarray(0, guard).every((x) => x === 0xa5)).toBe(true);
        expect(buf.subarray(guard + bytes.length).every((x) => x === 0xa5)).toBe(true);
        if ((o & OUTCOME_CHANGED) === 0) expect(Buffer.from(buf.subarray(guard, guard + bytes.length)).equals(Buffer.from(bytes))).toBe(true);
      }),
      { numRuns: 3000 },
    );
  });

  it('a capture of only odd packets round-trips through the file path', async () => {
    const input = join(dir, 'odd.pcap');
    writeFileSync(input, encodePcap({ linkType: 1 }, [Buffer.alloc(0), Buffer.alloc(13), Buffer.from('ffffffffffff0000000000010800', 'hex')].map((data, i) => ({ data, tsSec: i, tsNsec: 0 }))));
    const s = await rewriteFile(input, join(dir, 'odd-out.pcap'), parseRules({ pnat: ['10.0.0.0/8:11.0.0.0/8'] }));
    expect(s).toMatchObject({ packetsIn: 3, packetsOut: 3, rewritten: 0 });
    expect(readCapture(join(dir, 'odd-out.pcap')).packets.map((p) => p.data.length)).toEqual([0, 13, 14]);
  });
});
