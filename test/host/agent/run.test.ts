// The agent process's mirror of advertised VIPs (host/agent/run.ts): which wildcard affinities make a VIP
// route, how long it lives, and what removes it.
import { describe, expect, it } from 'vitest';
import { AdvertisedVips } from '../../../host/agent/run.ts';
import { ipToU32, type MessageOf, type WildcardEntry } from '../../../host/protocol/index.ts';

function update(sender: number, entries: Array<Partial<WildcardEntry['affinity']>>): MessageOf<'affinity-update-wildcard'> {
  return {
    type: 'affinity-update-wildcard',
    sender,
    sequence: 1,
    servicePrecedence: { value: 100, wildcardFirst: false },
    backupPrecedence: 200,
    wildcards: entries.map((a) => ({
      affinity: { protocol: 6, srcAddr: 0, srcMask: 0, dstAddr: 0, dstMask: 0, srcPort: 0, dstPort: 0, flags: 0, ttlMs: 3000, ...a },
      actions: [],
    })),
  } as MessageOf<'affinity-update-wildcard'>;
}

const vip = { dstAddr: ipToU32('10.99.100.1'), dstMask: 0xffffffff, dstPort: 80 };
const ret = { srcAddr: ipToU32('10.99.2.2'), srcMask: 0xffffffff, srcPort: 80 }; // backend → any client

describe('AdvertisedVips', () => {
  it('routes the VIP of a client → VIP wildcard, not the return direction, for the wildcard TTL', () => {
    const v = new AdvertisedVips();
    v.onWildcards(update(1, [vip, ret, { dstAddr: ipToU32('10.99.200.0'), dstMask: 0xffffff00, dstPort: 443 }]), 1000);
    expect(v.prefixes(1000)).toEqual(['10.99.100.1/32', '10.99.200.0/24']);
    expect(v.prefixes(3999)).toEqual(['10.99.100.1/32', '10.99.200.0/24']);
    expect(v.prefixes(4000)).toEqual([]);
  });

  it('keeps a VIP while any manager advertises it; TTL 0 and a takeover notice remove one manager', () => {
    const v = new AdvertisedVips();
    v.onWildcards(update(1, [vip]), 0);
    v.onWildcards(update(2, [vip]), 0);
    v.onWildcards(update(1, [{ ...vip, ttlMs: 0 }]), 10);
    expect(v.prefixes(10)).toEqual(['10.99.100.1/32']);
    v.dropSender(2);
    expect(v.prefixes(10)).toEqual([]);
  });
});
