// The firmware engine (wildcard affinities with NAT actions) against the reference rewriter: same bytes.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { demoPackets } from '../../../host/pcap/generate.ts';
import { encodePcap, readCapture } from '../../../host/pcap/index.ts';
import { parseRules } from '../../../host/rewrite/rules.ts';
import { rewriteFile } from '../../../host/rewrite/rewrite.ts';
import { planWildcards } from '../../../host/rewrite/firmware.ts';
import { TCP_ACK, tcpPacket, udpPacket } from '../../../host/pcap/packets.ts';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'fw-rewrite-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('firmware engine', () => {
  it('plans wildcards for exact rules and explains what it cannot express', () => {
    const ok = planWildcards(parseRules({ dnat: ['10.0.0.100:80=192.168.1.10:8080'], snat: ['192.168.1.10=10.0.0.100'], dstipmap: ['10.0.0.1/32:10.0.0.2/32'] }));
    expect(ok.unsupported).toEqual([]);
    expect(ok.wildcards.map((w) => [w.proto, w.dport, w.natDstPort ?? null, w.natSrcAddr ?? null, w.natDstAddr ?? null])).toEqual([
      [6, 80, 8080, null, 0xc0a8010a],
      [17, 80, 8080, null, 0xc0a8010a],
      [0, 0, null, 0x0a000064, null],
      [0, 0, null, null, 0x0a000002],
    ]);
    const no = planWildcards(parseRules({ pnat: ['10.0.0.0/24:192.168.1.0/24'], portmap: ['80:8080'], srcipmap: [] }));
    expect(no.unsupported.join(' ')).toMatch(/--pnat.*--portmap/);
    expect(planWildcards(parseRules({ dstipmap: ['10.0.0.0/24:10.1.0.0/24'] })).unsupported[0]).toMatch(/host bits/);
  });

  it('where several rules match a packet, takes the one the reference takes (the first on the command line, NAT before maps)', async () => {
    const input = join(dir, 'overlap.pcap');
    const pkts = [
      tcpPacket({}, { src: 0x01020304, dst: 0x0a000001 }, { sport: 5000, dport: 80, flags: TCP_ACK }),
      udpPacket({}, { src: 0x01020304, dst: 0x0a000001 }, { sport: 5000, dport: 80 }),
      tcpPacket({}, { src: 0x01020304, dst: 0x0a000001 }, { sport: 5000, dport: 443, flags: TCP_ACK }),
      tcpPacket({}, { src: 0x0a000002, dst: 0x01020304 }, { sport: 80, dport: 5000, flags: TCP_ACK }),
    ];
    writeFileSync(input, encodePcap({ linkType: 1 }, pkts.map((data, i) => ({ data, tsSec: 1e9 + i, tsNsec: 0 }))));
    const cases = [
      // an address-only rule before a port rule for the same address (its pattern made first by another rule)
      { dnat: ['9.9.9.9:53=8.8.8.8:53', '10.0.0.1=192.168.0.1', '10.0.0.1:80=192.168.0.2:8080'] },
      { snat: ['9.9.9.9:53=8.8.8.8:53', '10.0.0.2=10.0.0.99', '10.0.0.2:80=10.0.0.98:8080'] },
      // a NAT rule and a map for the same address: the rule, then the map of what it wrote
      { dnat: ['10.0.0.1:80=10.0.0.5'], dstipmap: ['10.0.0.1/32:10.0.0.7/32'] },
      // a NAT rule and a map with the same match (one wildcard identity): the rule
      { dnat: ['10.0.0.1=10.0.0.8'], dstipmap: ['10.0.0.1/32:10.0.0.7/32'] },
    ];
    for (const [k, o] of cases.entries()) {
      const rules = parseRules(o);
      expect(planWildcards(rules).unsupported, JSON.stringify(o)).toEqual([]);
      const a = await rewriteFile(input, join(dir, `o${k}-fw.pcap`), rules, { engine: 'firmware' });
      await rewriteFile(input, join(dir, `o${k}-ref.pcap`), rules, { engine: 'reference' });
      expect(a.firmwarePackets).toBe(4);
      expect(readFileSync(join(dir, `o${k}-fw.pcap`)).equals(readFileSync(join(dir, `o${k}-ref.pcap`))), JSON.stringify(o)).toBe(true);
    }
    // what one wildcard match cannot do the same way goes to the reference rewriter
    for (const o of [
      { dnat: ['10.0.0.1:0=192.168.0.3:8080'] }, // port 0 is exact there, any port in a wildcard
      { dnat: ['10.0.0.1=10.0.0.5'], dstipmap: ['10.0.0.5/32:10.0.0.6/32'] }, // mapped again after the NAT
      { dnat: ['10.0.0.1=239.1.2.3'] }, // a multicast target changes the MAC too
    ]) expect(planWildcards(parseRules(o)).unsupported.length, JSON.stringify(o)).toBeGreaterThan(0);
  });

  it('gives the reference bytes on the demo capture (both directions, odd traffic), most packets in wasm', async () => {
    const input = join(dir, 'demo.pcap');
    const { packets } = demoPackets({ flows: 300, seed: 9 });
    // plus a few packets the firmware must leave to the reference rewriter
    const extra = [
      tcpPacket({}, { src: 0x0a010203, dst: 0x0a000064, badL4Checksum: true }, { sport: 5000, dport: 80, flags: TCP_ACK }),
      Buffer.concat([tcpPacket({}, { src: 0x0a010204, dst: 0x0a000064 }, { sport: 5001, dport: 80, flags: TCP_ACK }), Buffer.alloc(6)]),
      tcpPacket({}, { src: 0x0a000064, dst: 0x0a000064 }, { sport: 80, dport: 80, flags: TCP_ACK }), // matches both rules
    ];
    writeFileSync(input, encodePcap({ linkType: 1 }, [...packets, ...extra.map((data, i) => ({ data, tsSec: 2e9 + i, tsNsec: 0 }))]));
    const rules = parseRules({ dnat: ['10.0.0.100:80=192.168.1.10:8080'], snat: ['10.0.0.100:80=10.0.0.200:8080'] });
    const viaFw = join(dir, 'fw.pcap');
    const viaRef = join(dir, 'ref.pcap');
    const a = await rewriteFile(input, viaFw, rules, { engine: 'firmware', batchSize: 300 });
    const b = await rewriteFile(input, viaRef, rules, { engine: 'reference' });
    expect(a.engine).toBe('firmware');
    expect(b.engine).toBe('reference');
    expect(a.packetsIn).toBe(packets.length + 3);
    expect(a.firmwarePackets).toBeGreaterThan(packets.length * 0.9);
    expect(a.referencePackets).toBeGreaterThanOrEqual(3 + 30);
    expect(a.rewritten).toBe(b.rewritten);
    const fa = readCapture(viaFw).packets, fb = readCapture(viaRef).packets;
    fa.forEach((p, i) => expect(p.data.toString('hex'), `packet ${i}`).toBe(fb[i]!.data.toString('hex')));
    expect(readFileSync(viaFw).equals(readFileSync(viaRef))).toBe(true);
    // and the rewrite did happen: no client packet to VIP:80 is left
    const left = fa.filter((p) => p.ipOffset >= 0 && p.data.readUInt32BE(p.ipOffset + 16) === 0x0a000064 && p.data[p.ipOffset + 9] === 6 && p.data.readUInt16BE(p.ipOffset + 22) === 80);
    expect(left.length).toBe(0);
  });

  it('--trust-checksums: a wrong checksum stays wrong (only that), where the verified path corrects it', async () => {
    const input = join(dir, 'bad.pcap');
    const good = tcpPacket({}, { src: 0x0a010203, dst: 0x0a000064 }, { sport: 5000, dport: 80, flags: TCP_ACK });
    const bad = tcpPacket({}, { src: 0x0a010204, dst: 0x0a000064, badL4Checksum: true }, { sport: 5001, dport: 80, flags: TCP_ACK });
    writeFileSync(input, encodePcap({ linkType: 1 }, [good, bad].map((data, i) => ({ data, tsSec: i, tsNsec: 0 }))));
    const rules = parseRules({ dnat: ['10.0.0.100:80=192.168.1.10:8080'] });
    const verified = await rewriteFile(input, join(dir, 'v.pcap'), rules, { engine: 'firmware' });
    const trusted = await rewriteFile(input, join(dir, 't.pcap'), rules, { engine: 'firmware', trustChecksums: true });
    expect([verified.firmwarePackets, verified.referencePackets]).toEqual([1, 1]);
    expect([trusted.firmwarePackets, trusted.referencePackets]).toEqual([2, 0]);
    const v = readCapture(join(dir, 'v.pcap')).packets, t = readCapture(join(dir, 't.pcap')).packets;
    expect(t[0]!.data.equals(v[0]!.data)).toBe(true);
    const diff = [...t[1]!.data].flatMap((x, i) => (x !== v[1]!.data[i] ? [i] : []));
    expect(diff).toEqual([14 + 20 + 17]); // the low byte of the TCP checksum, off by the input's one
  });

  it('a UDP checksum that becomes 0 is written as 0x0000, as tcprewrite does (the firmware writes 0xffff)', async () => {
    // build the rewritten datagram with a true checksum of 0, then the original it comes from
    const payload = Buffer.alloc(8, 0x11);
    const post = udpPacket({}, { src: 0x0a010203, dst: 0xc0a8010a }, { sport: 5000, dport: 8080, payload });
    const ip = 14;
    let s = 0;
    for (let k = ip + 12; k < post.length; k += 2) if (k !== ip + 26 && k !== post.length - 2) s += post.readUInt16BE(k);
    s += 17 + 16;
    while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
    payload.writeUInt16BE(0xffff - s, 6);
    const pre = udpPacket({}, { src: 0x0a010203, dst: 0x0a000064 }, { sport: 5000, dport: 80, payload });
    const input = join(dir, 'udp0.pcap');
    writeFileSync(input, encodePcap({ linkType: 1 }, [{ data: pre, tsSec: 0, tsNsec: 0 }]));
    const rules = parseRules({ dnat: ['10.0.0.100:80=192.168.1.10:8080'] });
    for (const engine of ['firmware', 'reference'] as const) {
      const out = join(dir, `udp0-${engine}.pcap`);
      const sum = await rewriteFile(input, out, rules, { engine });
      const p = readCapture(out).packets[0]!;
      expect(p.data.readUInt32BE(ip + 16)).toBe(0xc0a8010a);
      expect(p.data.readUInt16BE(ip + 26)).toBe(0x0000);
      if (engine === 'firmware') expect(sum.firmwarePackets).toBe(1);
    }
  });

  it("'auto' picks the firmware when it can and says why not otherwise", async () => {
    const input = join(dir, 'small.pcap');
    writeFileSync(input, encodePcap({ linkType: 1 }, demoPackets({ flows: 5 }).packets));
    const fw = await rewriteFile(input, join(dir, 'a.pcap'), parseRules({ dnat: ['10.0.0.100:80=192.168.1.10:8080'] }));
    expect(fw.engine).toBe('firmware');
    const ref = await rewriteFile(input, join(dir, 'b.pcap'), parseRules({ pnat: ['10.0.0.0/24:192.168.1.0/24'] }));
    expect(ref.engine).toBe('reference');
    expect(ref.fallbackReasons.join(' ')).toMatch(/--pnat/);
  });
});
