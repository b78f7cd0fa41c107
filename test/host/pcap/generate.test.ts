import { describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoPackets, writeBenchCapture, writeDemoCapture } from '../../../host/pcap/generate.ts';
import { encodePcap, readCapture } from '../../../host/pcap/index.ts';
import { ipv4HeaderChecksum, transportChecksum } from '../../../host/pcap/checksum.ts';
import { formatIPv4 } from '../../../host/pcap/packets.ts';

function checkChecksums(data: Buffer, ip: number): void {
  expect(data.readUInt16BE(ip + 10)).toBe(ipv4HeaderChecksum(data, ip));
  const proto = data[ip + 9]!;
  const field = proto === 6 ? 16 : proto === 17 ? 6 : 2;
  expect(data.readUInt16BE(ip + 20 + field)).toBe(transportChecksum(data, ip, data.length));
}

describe('demo capture generator', () => {
  it('the bundled examples/capture/demo.pcap is exactly what the script writes by default', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gen-'));
    try {
      const out = join(dir, 'demo.pcap');
      await writeDemoCapture(out);
      expect(readFileSync(out).equals(readFileSync(new URL('../../../examples/capture/demo.pcap', import.meta.url)))).toBe(true);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('has complete TCP conversations in both directions with correct checksums, plus UDP and odd traffic', () => {
    const { packets, summary } = demoPackets({ flows: 50, seed: 3 });
    expect(summary).toMatchObject({ tcpFlows: 50, udpFlows: 5, oddPackets: 30, packets: 50 * 10 + 5 * 2 + 30 });
    const perFlow = new Map<string, { toVip: number; fromVip: number; flags: number[] }>();
    let ts = -1;
    const { packets: read } = readCapture(encodePcap({ linkType: 1 }, packets));
    let odd = 0;
    for (const p of read) {
      const t = p.tsSec * 1e9 + p.tsNsec;
      expect(t).toBeGreaterThanOrEqual(ts);
      ts = t;
      if (p.ipOffset < 0) {
        odd++;
        continue;
      }
      const d = p.data;
      const ip = p.ipOffset;
      checkChecksums(d, ip);
      if (d[ip + 9] !== 6) continue;
      const src = formatIPv4(d.readUInt32BE(ip + 12));
      const dst = formatIPv4(d.readUInt32BE(ip + 16));
      const toVip = dst === '10.0.0.100';
      const client = toVip ? `${src}:${d.readUInt16BE(ip + 20)}` : `${dst}:${d.readUInt16BE(ip + 22)}`;
      expect(toVip ? d.readUInt16BE(ip + 22) : d.readUInt16BE(ip + 20)).toBe(80);
      const f = perFlow.get(client) ?? { toVip: 0, fromVip: 0, flags: [] };
      if (toVip) f.toVip++;
      else f.fromVip++;
      f.flags.push(d[ip + 33]!);
      perFlow.set(client, f);
    }
    expect(odd).toBe(15); // ARP and IPv6
    expect(perFlow.size).toBe(50);
    for (const f of perFlow.values()) {
      expect(f).toMatchObject({ toVip: 6, fromVip: 4 });
      expect(f.flags[0]).toBe(0x02); // SYN first
      expect(f.flags[1]).toBe(0x12); // SYN-ACK
      expect(f.flags.filter((x) => x & 0x01).length).toBe(2); // FIN both ways
    }
    // deterministic
    expect(demoPackets({ flows: 50, seed: 3 }).packets.map((p) => p.data.toString('hex'))).toEqual(packets.map((p) => p.data.toString('hex')));
    expect(demoPackets({ flows: 50, seed: 4 }).packets[0]!.data.equals(packets[0]!.data)).toBe(false);
  });

  it('raw link type: no Ethernet header, no ARP', () => {
    const { packets } = demoPackets({ flows: 5, link: 'raw' });
    expect(packets.every((p) => p.data[0]! >> 4 === 4 || p.data[0]! >> 4 === 6)).toBe(true);
    expect(packets.length).toBe(5 * 10 + 2 * 1 + 20);
  });
});

describe('bench capture generator', () => {
  it('writes N 64-byte TCP packets over K flows with correct checksums', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gen-'));
    try {
      const out = join(dir, 'bench.pcap');
      const r = await writeBenchCapture(out, { packets: 5000, flows: 700 });
      expect(r).toEqual({ packets: 5000, flows: 700, bytes: 24 + 5000 * 80 });
      const { packets, info } = readCapture(out);
      expect(info.linkType).toBe(1);
      expect(packets.length).toBe(5000);
      const flows = new Set<string>();
      for (const p of packets) {
        expect(p.data.length).toBe(64);
        checkChecksums(p.data, 14);
        flows.add(p.data.subarray(26, 36).toString('hex'));
      }
      expect(flows.size).toBe(700);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
