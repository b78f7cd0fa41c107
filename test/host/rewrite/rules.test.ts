import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { RuleError, inCidr, mapPort, parseRules, remap } from '../../../host/rewrite/rules.ts';

const ip = (s: string): number => s.split('.').reduce((a, p) => a * 256 + Number(p), 0) >>> 0;

describe('rule parser', () => {
  it('parses tcprewrite port maps: single, range, list, repeated', () => {
    const r = parseRules({ portmap: ['80:8080', '1-100:49148,443:8443'] });
    expect(r.portmap).toEqual([
      { first: 80, last: 80, to: 8080 },
      { first: 1, last: 100, to: 49148 },
      { first: 443, last: 443, to: 8443 },
    ]);
    // the last matching entry wins, as in tcprewrite; unmatched ports stay
    expect(mapPort(r.portmap, 80)).toBe(49148);
    expect(mapPort(r.portmap, 100)).toBe(49148);
    expect(mapPort(r.portmap, 101)).toBe(101);
    expect(mapPort(r.portmap, 443)).toBe(8443);
  });

  it('parses CIDR maps and maps host bits below the target prefix', () => {
    const r = parseRules({ pnat: ['10.1.0.0/16:192.168.0.0/24,10.0.0.100:192.168.1.10'] });
    expect(r.pnat[0]).toEqual({ from: { network: ip('10.1.0.0'), prefix: 16 }, to: { network: ip('192.168.0.0'), prefix: 24 } });
    expect(r.pnat[1]!.from).toEqual({ network: ip('10.0.0.100'), prefix: 32 });
    expect(remap(r.pnat[0]!.to, ip('10.1.2.3'))).toBe(ip('192.168.0.3'));
    expect(inCidr(r.pnat[0]!.from, ip('10.1.255.1'))).toBe(true);
    expect(inCidr(r.pnat[0]!.from, ip('10.2.0.1'))).toBe(false);
    // host bits in the written network are cleared
    expect(parseRules({ dstipmap: ['10.0.0.7/24:1.2.3.4/8'] }).dstipmap[0]).toEqual({
      from: { network: ip('10.0.0.0'), prefix: 24 },
      to: { network: ip('1.0.0.0'), prefix: 8 },
    });
  });

  it('parses --dnat / --snat with and without ports', () => {
    const r = parseRules({ dnat: ['10.0.0.100:80=192.168.1.10:8080', '10.0.0.101=192.168.1.11'], snat: ['192.168.1.10:8080=10.0.0.100:80'] });
    expect(r.dnat).toEqual([
      { matchAddr: ip('10.0.0.100'), matchPort: 80, toAddr: ip('192.168.1.10'), toPort: 8080 },
      { matchAddr: ip('10.0.0.101'), matchPort: null, toAddr: ip('192.168.1.11'), toPort: null },
    ]);
    expect(r.snat[0]).toEqual({ matchAddr: ip('192.168.1.10'), matchPort: 8080, toAddr: ip('10.0.0.100'), toPort: 80 });
  });

  const bad: [Parameters<typeof parseRules>[0], string, RegExp][] = [
    [{ portmap: ['80'] }, 'BAD_RULE', /--portmap "80": "80" is not FROM\[-TO\]:PORT/],
    [{ portmap: ['100-1:5'] }, 'BAD_RULE', /runs backwards/],
    [{ portmap: ['70000:80'] }, 'BAD_RULE', /not a port/],
    [{ portmap: [''] }, 'BAD_RULE', /empty/],
    [{ pnat: ['10.0.0.0/33:1.0.0.0/8'] }, 'BAD_RULE', /prefix length 33/],
    [{ pnat: ['10.0.0.0/8'] }, 'BAD_RULE', /FROM_CIDR:TO_CIDR/],
    [{ pnat: ['10.0.0.300/8:1.0.0.0/8'] }, 'BAD_RULE', /not an IPv4 address/],
    [{ pnat: ['[2001:db8::/32]:[2001:db9::/32]'] }, 'UNSUPPORTED', /IPv6/],
    [{ pnat: ['10.0.0.0/8:1.0.0.0/8', '11.0.0.0/8:2.0.0.0/8'] }, 'UNSUPPORTED', /second --pnat/],
    [{ pnat: ['10.0.0.0/8:1.0.0.0/8'], srcipmap: ['10.0.0.0/8:1.0.0.0/8'] }, 'CONFLICT', /--srcipmap/],
    [{ dnat: ['10.0.0.100:80'] }, 'BAD_RULE', /ADDR\[:PORT\]=ADDR\[:PORT\]/],
    [{ dnat: ['10.0.0.100:80=10.0.0.1:x'] }, 'BAD_RULE', /not ADDR\[:PORT\]/],
    [{ dnat: ['10.0.0.100:80=1.1.1.1', '10.0.0.100:80=2.2.2.2'] }, 'CONFLICT', /same traffic/],
  ];
  for (const [opts, code, message] of bad) {
    it(`rejects ${JSON.stringify(opts)}`, () => {
      try {
        parseRules(opts);
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(RuleError);
        expect((e as RuleError).code).toBe(code);
        expect((e as RuleError).message).toMatch(message);
      }
    });
  }

  it('never throws anything but RuleError on arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40 }), fc.constantFrom('portmap', 'pnat', 'srcipmap', 'dnat', 'snat'), (text, key) => {
        try {
          parseRules({ [key]: [text] });
        } catch (e) {
          expect(e).toBeInstanceOf(RuleError);
        }
      }),
      { numRuns: 500 },
    );
  });
});
