// Files written by Wireshark's editcap (see test/fixtures/pcap/codec/README.md) read like the original.
import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { readCapture } from '../../../host/pcap/index.ts';

const fx = (p: string): string => new URL(`../../fixtures/pcap/${p}`, import.meta.url).pathname;

describe('captures from other tools', () => {
  const original = readCapture(fx('tcprewrite/in-eth.pcap'));

  it('editcap pcapng: same packets, lengths and timestamps as the source pcap, as tshark reports them', () => {
    const ng = readCapture(fx('codec/editcap.pcapng'));
    expect(ng.info).toMatchObject({ format: 'pcapng', linkType: 1, byteOrder: 'le', versionMajor: 1 });
    expect(ng.packets.length).toBe(original.packets.length);
    const tsv = readFileSync(fx('codec/editcap.pcapng.tshark.tsv'), 'utf8').trim().split('\n').map((l) => l.split('\t'));
    ng.packets.forEach((p, i) => {
      const o = original.packets[i]!;
      expect(p.data.equals(o.data)).toBe(true);
      expect([p.tsSec, p.tsNsec, p.origLen]).toEqual([o.tsSec, o.tsNsec, o.origLen]);
      const [epoch, len, capLen, iface] = tsv[i]!;
      expect(`${p.tsSec}.${String(p.tsNsec).padStart(9, '0')}`).toBe(epoch);
      expect([p.origLen, p.data.length, p.interfaceId]).toEqual([Number(len), Number(capLen), Number(iface)]);
      expect(p.ipOffset).toBe(o.ipOffset);
    });
  });

  it('editcap nanosecond pcap', () => {
    const ns = readCapture(fx('codec/editcap-ns.pcap'));
    expect(ns.info).toMatchObject({ format: 'pcap', precision: 'ns', linkType: 1 });
    expect(ns.packets.map((p) => [p.data.toString('hex'), p.tsSec, p.tsNsec, p.origLen])).toEqual(
      original.packets.map((p) => [p.data.toString('hex'), p.tsSec, p.tsNsec, p.origLen]),
    );
  });
});
