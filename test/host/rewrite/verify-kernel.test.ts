// The admission kernel (wasm over the firmware's memory): its embedded bytes are the compiled source, and
// it admits exactly the packets the rules of the incremental path and a full checksum recompute admit.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ForwardingFirmware } from '../../../host/agent/wasm.ts';
import { ipv4HeaderChecksum, transportChecksum } from '../../../host/pcap/checksum.ts';
import { tcpPacket, udpPacket } from '../../../host/pcap/packets.ts';
import { VERIFY_KERNEL_WASM, loadAdmissionKernel } from '../../../host/rewrite/verify-kernel.ts';

interface Wabt {
  parseWat(name: string, text: string): { toBinary(o: object): { buffer: Uint8Array } };
}

/** The rules, written out plainly: the IPv4 packet b (caplen = b.length) may take the firmware's path. */
function qualifies(b: Buffer, verify: boolean): boolean {
  const len = b.length;
  if (len < 20 || b[0] !== 0x45 || b.readUInt16BE(2) !== len) return false;
  if (b.readUInt16BE(6) & 0x3fff) return false;
  if (b[12]! >> 4 === 0xe || b[16]! >> 4 === 0xe) return false;
  const proto = b[9]!;
  if (proto !== 6 && proto !== 17) return false;
  if (len < (proto === 6 ? 40 : 28)) return false;
  const ckAt = proto === 6 ? 36 : 26;
  const ck = b.readUInt16BE(ckAt);
  if ((proto === 17 && ck === 0) || ck === 0xffff || b.readUInt16BE(10) === 0xffff) return false;
  return !verify || (ipv4HeaderChecksum(b, 0) === b.readUInt16BE(10) && transportChecksum(b, 0, len) === ck);
}

describe('admission kernel', () => {
  it('embeds exactly the bytes wat2wasm makes of verify-kernel.wat', async () => {
    const wabt = await (createRequire(import.meta.url)('wabt') as () => Promise<Wabt>)();
    const src = readFileSync(new URL('../../../host/rewrite/verify-kernel.wat', import.meta.url), 'utf8');
    const bin = wabt.parseWat('verify-kernel.wat', src).toBinary({}).buffer;
    expect(Buffer.from(bin).equals(VERIFY_KERNEL_WASM)).toBe(true);
  });

  it('stops at each packet the rules or a full checksum recompute turn away, and only there', async () => {
    const fw = await ForwardingFirmware.load({ budgetBytes: 2 * 1024 * 1024, wildcardCapacity: 64, extCapacity: 16 });
    const { admit } = loadAdmissionKernel(fw.memory);
    const region = fw.packets, du32 = fw.descriptorU32, du16 = fw.descriptorU16;
    const pkt = fc
      .record({
        udp: fc.boolean(),
        payload: fc.uint8Array({ maxLength: 41 }), // odd and even lengths, every 4-byte remainder
        at: fc.nat({ max: 3 }), // alignment of the IPv4 header in the region
        dst: fc.constantFrom(0x0a000064, 0xe0000001, 0xefffffff),
        badIp: fc.boolean(),
        badL4: fc.boolean(),
        flips: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { maxLength: 2 }),
        cut: fc.option(fc.nat(), { nil: undefined, freq: 6 }),
      })
      .map((p) => {
        const ip = { src: 0x0a010203, dst: p.dst, badIpChecksum: p.badIp && !p.badL4, badL4Checksum: p.badL4 };
        let f = p.udp
          ? udpPacket({ link: 'raw' }, ip, { sport: 1234, dport: 80, payload: p.payload })
          : tcpPacket({ link: 'raw' }, ip, { sport: 1234, dport: 80, flags: 0x10, payload: p.payload });
        for (const [at, x] of p.flips) f[at % f.length] ^= x;
        if (p.cut !== undefined) f = f.subarray(0, p.cut % (f.length + 1));
        return { f: Buffer.from(f), at: p.at };
      });
    fc.assert(
      fc.property(fc.array(pkt, { minLength: 1, maxLength: 12 }), fc.boolean(), (pk, verify) => {
        let pos = 0;
        pk.forEach(({ f, at }, k) => {
          pos = ((pos + 3) & ~3) + at;
          region.set(f, pos);
          du32[k * 8] = pos;
          du16[k * 16 + 2] = f.length;
          pos += f.length;
        });
        const stops: number[] = [];
        for (let k = 0; (k = admit(fw.descriptorBytes.byteOffset, k, pk.length, region.byteOffset, verify ? 1 : 0)) < pk.length; k++) stops.push(k);
        expect(stops).toEqual(pk.flatMap(({ f }, k) => (qualifies(f, verify) ? [] : [k])));
      }),
      { numRuns: 600 },
    );
  });

  it('settle: stops at each packet not forwarded, counts the rewritten ones, writes a rewritten UDP 0xffff as 0', async () => {
    const fw = await ForwardingFirmware.load({ budgetBytes: 2 * 1024 * 1024, wildcardCapacity: 64, extCapacity: 16 });
    const k = loadAdmissionKernel(fw.memory);
    const region = fw.packets, du32 = fw.descriptorU32, db = fw.descriptorBytes, du16 = fw.descriptorU16;
    const udp = (ck: number): Buffer => {
      const f = udpPacket({ link: 'raw' }, { src: 1, dst: 2 }, { sport: 1, dport: 2, payload: Buffer.alloc(3) });
      f.writeUInt16BE(ck, 26);
      return f;
    };
    const tcp = tcpPacket({ link: 'raw' }, { src: 1, dst: 2 }, { sport: 1, dport: 2, flags: 0x10 });
    tcp.writeUInt16BE(0xffff, 26); // not a UDP checksum field: left alone
    // [packet, verdict, out flags]: FORWARD = 1, DROP = 5, TO_MANAGER = 2; REWRITTEN = 8
    const rows: [Buffer, number, number][] = [
      [udp(0xffff), 1, 8], [udp(0xffff), 1, 0], [tcp, 1, 8], [udp(0x1234), 5, 8], [udp(0xffff), 1, 8 | 4], [udp(0xffff), 2, 0],
    ];
    rows.forEach(([f, v, flags], i) => {
      region.set(f, i * 100);
      du32[i * 8] = i * 100;
      du16[i * 16 + 2] = f.length;
      db[i * 32 + 12] = v;
      du16[i * 16 + 7] = flags;
    });
    k.rewritten(); // clear
    const stops: number[] = [];
    for (let i = 0; (i = k.settle(db.byteOffset, i, rows.length, region.byteOffset)) < rows.length; i++) stops.push(i);
    expect(stops).toEqual([3, 5]);
    expect(k.rewritten()).toBe(3);
    expect(k.rewritten()).toBe(0);
    expect([0, 1, 2, 3, 4].map((i) => Buffer.from(region.subarray(i * 100 + 26, i * 100 + 28)).toString('hex'))).toEqual(['0000', 'ffff', 'ffff', '1234', '0000']);
  });
});
