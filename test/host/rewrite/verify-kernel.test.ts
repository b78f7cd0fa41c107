// The checksum verification kernel (wasm over the firmware's memory): its embedded bytes are the
// compiled source, and it decides exactly what a full recompute decides.
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { ForwardingFirmware } from '../../../host/agent/wasm.ts';
import { ipv4HeaderChecksum, transportChecksum } from '../../../host/pcap/checksum.ts';
import { tcpPacket, udpPacket } from '../../../host/pcap/packets.ts';
import { VERIFY_KERNEL_WASM, loadVerifyKernel } from '../../../host/rewrite/verify-kernel.ts';

interface Wabt {
  parseWat(name: string, text: string): { toBinary(o: object): { buffer: Uint8Array } };
}

describe('verify kernel', () => {
  it('embeds exactly the bytes wat2wasm makes of verify-kernel.wat', async () => {
    const wabt = (await (createRequire(import.meta.url)('wabt') as () => Promise<Wabt>)()) as Wabt;
    const src = readFileSync(new URL('../../../host/rewrite/verify-kernel.wat', import.meta.url), 'utf8');
    const bin = wabt.parseWat('verify-kernel.wat', src).toBinary({}).buffer;
    expect(Buffer.from(bin).equals(VERIFY_KERNEL_WASM)).toBe(true);
  });

  it('stops at the first packet whose IPv4 or TCP/UDP checksum is wrong, as a full recompute says', async () => {
    const fw = await ForwardingFirmware.load({ budgetBytes: 2 * 1024 * 1024, wildcardCapacity: 64, extCapacity: 16 });
    const verify = loadVerifyKernel(fw.memory);
    const region = fw.packets, du32 = fw.descriptorU32, du16 = fw.descriptorU16;
    const pkt = fc
      .record({
        udp: fc.boolean(),
        payload: fc.uint8Array({ maxLength: 41 }), // odd and even lengths, any 4-byte remainder
        at: fc.nat({ max: 3 }), // alignment of the IPv4 header in the region
        badIp: fc.boolean(),
        badL4: fc.boolean(),
        flip: fc.option(fc.tuple(fc.nat(), fc.integer({ min: 1, max: 255 })), { nil: undefined }),
      })
      .map((p) => {
        const ip = { src: 0x0a010203, dst: 0x0a000064, badIpChecksum: p.badIp && !p.badL4, badL4Checksum: p.badL4 };
        const f = p.udp
          ? udpPacket({ link: 'raw' }, ip, { sport: 1234, dport: 80, payload: p.payload })
          : tcpPacket({ link: 'raw' }, ip, { sport: 1234, dport: 80, flags: 0x10, payload: p.payload });
        // any byte but those the caller has checked already (version and IHL 5, total length = the
        // descriptor's length, TCP or UDP)
        const at = p.flip ? p.flip[0] % f.length : 0;
        if (p.flip && at !== 0 && at !== 2 && at !== 3 && at !== 9) f[at] ^= p.flip[1];
        return { f, at: p.at };
      });
    fc.assert(
      fc.property(fc.array(pkt, { minLength: 1, maxLength: 12 }), (pk) => {
        let pos = 0;
        pk.forEach(({ f, at }, k) => {
          pos = ((pos + 3) & ~3) + at;
          region.set(f, pos);
          du32[k * 8] = pos;
          du16[k * 16 + 2] = f.length;
          pos += f.length;
        });
        const ok = pk.map(({ f }) => {
          const b = Buffer.from(f);
          const wantIp = ipv4HeaderChecksum(b, 0) === b.readUInt16BE(10);
          const ck = b[9] === 6 ? 36 : 26;
          return wantIp && transportChecksum(b, 0, b.length) === b.readUInt16BE(ck);
        });
        // every stop is a bad packet, every packet skipped over is a good one
        const seen: number[] = [];
        for (let k = 0; (k = verify(fw.descriptorBytes.byteOffset, k, pk.length, region.byteOffset)) < pk.length; k++) seen.push(k);
        expect(seen).toEqual(ok.flatMap((g, k) => (g ? [] : [k])));
      }),
      { numRuns: 400 },
    );
  });
});
