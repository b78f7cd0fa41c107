// The agent process's mirror of advertised VIPs (host/agent/run.ts): which wildcard affinities make a VIP
// route, how long it lives, and what removes it. Fed as the agent process feeds it: from the wildcards
// the firmware took.
import { describe, expect, it } from 'vitest';
import { ForwardingAgent } from '../../../host/agent/agent.ts';
import { AdvertisedVips } from '../../../host/agent/run.ts';
import { ForwardingFirmware } from '../../../host/agent/wasm.ts';
import { ipToU32, type MessageOf, type ServiceMessage, type WildcardEntry } from '../../../host/protocol/index.ts';
import type { ServiceChannel } from '../../../host/transport/channel.ts';

function update(sender: number, entries: Array<Partial<WildcardEntry['affinity']>>): MessageOf<'affinity-update-wildcard'> {
  return {
    type: 'affinity-update-wildcard',
    sender,
    sequence: 1,
    servicePrecedence: { value: 100, wildcardFirst: false },
    backupPrecedence: 200,
    wildcards: entries.map((a) => ({
      affinity: { protocol: 6, srcAddr: 0, srcMask: 0, dstAddr: 0, dstMask: 0, srcPort: 0, dstPort: 0, flags: 0, ttlMs: 3000, ...a },
      actions: [{ kind: 'nat', dstAddr: ipToU32('10.99.1.1'), dstPort: 8080 }],
    })),
  } as MessageOf<'affinity-update-wildcard'>;
}

/** An agent with a firmware and no sockets, its taken wildcards mirrored into `vips`. */
async function agentWithVips(): Promise<{ vips: AdvertisedVips; send: (m: ServiceMessage) => void; clock: { now: number }; sent: ServiceMessage[] }> {
  const fw = await ForwardingFirmware.load({ budgetBytes: 8 << 20, hugePages: false });
  const vips = new AdvertisedVips();
  const clock = { now: 0 };
  const sent: ServiceMessage[] = [];
  const control = { onMessage: () => undefined, send: (m: ServiceMessage) => sent.push(m) } as unknown as ServiceChannel;
  const agent = new ForwardingAgent({
    firmware: fw,
    control,
    now: () => clock.now,
    sink: { send: () => undefined },
    onWildcardInstalled: (w, sender) => vips.onWildcard(w, sender, clock.now),
  });
  return { vips, send: (m) => agent.handleMessage(m, { address: '127.0.0.1', port: 1 }), clock, sent };
}

const vip = { dstAddr: ipToU32('10.99.100.1'), dstMask: 0xffffffff, dstPort: 80 };
const ret = { srcAddr: ipToU32('10.99.2.2'), srcMask: 0xffffffff, srcPort: 80 }; // backend → any client

describe('AdvertisedVips', () => {
  it('routes the VIP of a client → VIP wildcard, not the return direction, for the wildcard TTL', async () => {
    const { vips, send, clock } = await agentWithVips();
    clock.now = 1000;
    send(update(1, [vip, ret, { dstAddr: ipToU32('10.99.200.0'), dstMask: 0xffffff00, dstPort: 443 }]));
    expect(vips.prefixes(1000)).toEqual(['10.99.100.1/32', '10.99.200.0/24']);
    expect(vips.prefixes(3999)).toEqual(['10.99.100.1/32', '10.99.200.0/24']);
    expect(vips.prefixes(4000)).toEqual([]);
  });

  it('keeps a VIP while any manager advertises it; TTL 0 and a takeover notice remove one manager', async () => {
    const { vips, send, clock } = await agentWithVips();
    send(update(1, [vip]));
    send(update(2, [vip]));
    clock.now = 10;
    send(update(1, [{ ...vip, ttlMs: 0 }]));
    expect(vips.prefixes(10)).toEqual(['10.99.100.1/32']);
    vips.dropSender(2);
    expect(vips.prefixes(10)).toEqual([]);
  });

  it('advertises nothing the firmware refused, nothing with a mask no route can say, and for the TTL the firmware gave', async () => {
    const { vips, send, sent } = await agentWithVips();
    // 17 destination prefix lengths: 17 mask patterns, one more than the firmware holds
    for (let len = 32; len >= 16; len--) send(update(1, [{ dstAddr: ipToU32(`10.${len}.0.0`), dstMask: (0xffffffff << (32 - len)) >>> 0, dstPort: 80 }]));
    expect(sent.filter((m) => m.type === 'affinity-update-deny')).toHaveLength(1);
    expect(vips.prefixes(0)).toHaveLength(16);
    expect(vips.prefixes(0)).not.toContain('10.16.0.0/16');

    const other = await agentWithVips();
    other.send(update(1, [{ dstAddr: ipToU32('10.99.0.100'), dstMask: 0x000000ff, dstPort: 80 }])); // installed, but 0.0.0.100/8 is no route
    expect(other.vips.prefixes(0)).toEqual([]);
    other.send(update(1, [{ ...vip, ttlMs: 100_000_000 }])); // the firmware keeps it 65,535 s
    expect(other.vips.prefixes(65_534_999)).toEqual(['10.99.100.1/32']);
    expect(other.vips.prefixes(65_535_000)).toEqual([]);
  });
});
