// The admission kernel (wasm over the firmware's memory): its embedded bytes are the compiled source, and
// it admits exactly the packets the rules of the incremental path and a full checksum recompute admit.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ForwardingFirmware } from '../../../host/agent/wasm.ts';
import { ipv4HeaderChecksum, transportChecksum } from '../../../host/pcap/checksum.ts';
import { tcpPacket, udpPacket } from '../../../host/pcap/packets.ts';
import { VERIFY_KERNEL_WASM, loadAdmitKernel } from '../../../host/rewrite/verify-kernel.ts';

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
    const admit = loadAdmitKernel(fw.memory);
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
});
