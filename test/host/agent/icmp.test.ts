// ICMP errors about a flow with a fixed affinity (RFC 5508): the quoted header is translated the way the
// flow's packets are, every checksum stays valid (checked by full RFC 1071 recomputes and against the
// translated packet built from scratch), and anything else passes unchanged.
import { describe, expect, it } from 'vitest';
import { ipv4, Status, type FixedAffinity } from '../../../host/agent/wasm.ts';
import { ICMP, TCP, UDP, buildPacket, get16, get32, ipHeaderValid, rfc1071 } from './packets.ts';
import { NOW, catchAll, loadSmall, runOne } from './helpers.ts';

const CLIENT = ipv4('192.0.2.10');
const VIP = ipv4('198.51.100.1');
const BACKEND = ipv4('10.1.0.7');
const ROUTER = ipv4('203.0.113.254');

/** An ICMP error from `from` to `to` quoting `quoted` (type 3 code 4: fragmentation needed, MTU 1400). */
function icmpError(from: number, to: number, quoted: Uint8Array, type = 3, code = 4): Uint8Array {
  const body = new Uint8Array(8 + quoted.length);
  body[0] = type;
  body[1] = code;
  body[6] = 1400 >>> 8;
  body[7] = 1400 & 255;
  body.set(quoted, 8);
  return buildPacket({ proto: ICMP, saddr: from, daddr: to, payload: body });
}

/** ICMP message of a packet (after the outer header). */
const icmpOf = (p: Uint8Array): Uint8Array => p.subarray((p[0]! & 15) * 4);
const quotedOf = (p: Uint8Array): Uint8Array => icmpOf(p).subarray(8);

async function firmwareWith(f: FixedAffinity): Promise<Awaited<ReturnType<typeof loadSmall>>> {
  const fw = await loadSmall();
  expect(fw.installWildcard(catchAll(), NOW)).toBe(Status.OK);
  expect(fw.installFixed(f, NOW)).toBe(Status.OK);
  return fw;
}

describe('ICMP errors about a NATed flow', () => {
  it('from the client side to the VIP: outer destination and quoted source become the real server (TCP)', async () => {
    const fw = await firmwareWith({ proto: TCP, saddr: CLIENT, daddr: VIP, sport: 40000, dport: 80, ttlSec: 10, owner: 1, natDstAddr: BACKEND, natDstPort: 8080 });
    const payload = Uint8Array.from({ length: 1200 }, (_, i) => i & 255);
    // what the balancer sent the client (a reply after source NAT), and what the real server had sent
    const sent = buildPacket({ proto: TCP, saddr: VIP, daddr: CLIENT, sport: 80, dport: 40000, seq: 7, ack: 9, payload });
    const original = buildPacket({ proto: TCP, saddr: BACKEND, daddr: CLIENT, sport: 8080, dport: 40000, seq: 7, ack: 9, payload });
    // a router on the client's path quotes the IP header and the whole TCP header (checksum included)
    const err = icmpError(ROUTER, VIP, sent.subarray(0, 40));
    const { verdict, out } = runOne(fw, err);
    expect(verdict).toMatchObject({ verdict: 'FORWARD', fixedHit: true, rewritten: true });
    expect(get32(out, 12)).toBe(ROUTER);
    expect(get32(out, 16)).toBe(BACKEND);
    expect(ipHeaderValid(out)).toBe(true);
    expect(rfc1071(icmpOf(out))).toBe(0);
    expect(Buffer.from(quotedOf(out))).toEqual(Buffer.from(original.subarray(0, 40)));
    expect(fw.counter('ICMP_TRANSLATED')).toBe(1n);
    expect(fw.counter('FIXED_HITS')).toBe(1n);
    // not a packet of the flow: the affinity's own counters are untouched
    expect(fw.lookupFixed({ proto: TCP, saddr: CLIENT, daddr: VIP, sport: 40000, dport: 80 }, NOW)).toMatchObject({ packets: 0, bytes: 0n });
  });

  it('from the servers\' side to the client: the quoted destination becomes the VIP, the outer source where it is the server (UDP checksum kept right)', async () => {
    // the return-direction affinity the manager installs: real server → client, source NAT to the VIP
    const fw = await firmwareWith({ proto: UDP, saddr: BACKEND, daddr: CLIENT, sport: 8053, dport: 5000, ttlSec: 10, owner: 1, natSrcAddr: VIP, natSrcPort: 53 });
    const payload = Uint8Array.from([1, 2, 3, 4, 5, 6]);
    const sent = buildPacket({ proto: UDP, saddr: CLIENT, daddr: BACKEND, sport: 5000, dport: 8053, payload }); // after DNAT
    const original = buildPacket({ proto: UDP, saddr: CLIENT, daddr: VIP, sport: 5000, dport: 53, payload }); // as the client sent it

    const fromRouter = runOne(fw, icmpError(ROUTER, CLIENT, sent, 11, 0));
    expect(fromRouter.verdict).toMatchObject({ verdict: 'FORWARD', fixedHit: true, rewritten: true });
    expect([get32(fromRouter.out, 12), get32(fromRouter.out, 16)]).toEqual([ROUTER, CLIENT]);
    expect(ipHeaderValid(fromRouter.out)).toBe(true);
    expect(rfc1071(icmpOf(fromRouter.out))).toBe(0);
    // the whole datagram is quoted: quoted IP and UDP checksums equal the client's own packet
    expect(Buffer.from(quotedOf(fromRouter.out))).toEqual(Buffer.from(original));

    // port unreachable from the real server itself: the outer source is the server, seen as the VIP
    const fromServer = runOne(fw, icmpError(BACKEND, CLIENT, sent, 3, 3));
    expect([get32(fromServer.out, 12), get32(fromServer.out, 16)]).toEqual([VIP, CLIENT]);
    expect(ipHeaderValid(fromServer.out)).toBe(true);
    expect(rfc1071(icmpOf(fromServer.out))).toBe(0);
    expect(Buffer.from(quotedOf(fromServer.out))).toEqual(Buffer.from(original));
  });

  it('a quoted UDP checksum of 0 stays 0; a quote of 8 TCP bytes leaves the (absent) TCP checksum alone', async () => {
    const fw = await firmwareWith({ proto: UDP, saddr: CLIENT, daddr: VIP, sport: 6000, dport: 53, ttlSec: 10, owner: 1, natDstAddr: BACKEND, natDstPort: 8053 });
    const sent = buildPacket({ proto: UDP, saddr: VIP, daddr: CLIENT, sport: 53, dport: 6000, payload: Uint8Array.from([9, 9]), udpNoChecksum: true });
    const { out } = runOne(fw, icmpError(ROUTER, VIP, sent));
    expect(get16(quotedOf(out), 20 + 6)).toBe(0);
    expect(get32(quotedOf(out), 12)).toBe(BACKEND);
    expect(rfc1071(icmpOf(out))).toBe(0);

    const tcp = await firmwareWith({ proto: TCP, saddr: CLIENT, daddr: VIP, sport: 40001, dport: 80, ttlSec: 10, owner: 1, natDstAddr: BACKEND, natDstPort: 8080 });
    const reply = buildPacket({ proto: TCP, saddr: VIP, daddr: CLIENT, sport: 80, dport: 40001 });
    const short = runOne(tcp, icmpError(ROUTER, VIP, reply.subarray(0, 28)));
    expect(short.verdict.fixedHit).toBe(true);
    expect(get16(quotedOf(short.out), 20)).toBe(8080);
    expect(ipHeaderValid(quotedOf(short.out))).toBe(true);
    expect(rfc1071(icmpOf(short.out))).toBe(0);
  });

  it('anything else passes unchanged: no affinity for the quoted flow, echo requests, quotes cut short', async () => {
    const fw = await firmwareWith({ proto: TCP, saddr: CLIENT, daddr: VIP, sport: 40000, dport: 80, ttlSec: 10, owner: 1, natDstAddr: BACKEND, natDstPort: 8080 });
    const other = buildPacket({ proto: TCP, saddr: VIP, daddr: CLIENT, sport: 80, dport: 40999 });
    const reply = buildPacket({ proto: TCP, saddr: VIP, daddr: CLIENT, sport: 80, dport: 40000 });
    const echo = buildPacket({ proto: ICMP, saddr: ROUTER, daddr: VIP, payload: Uint8Array.from([8, 0, 0, 0, 0, 1, 0, 1, ...reply.subarray(0, 28)]) });
    for (const pkt of [icmpError(ROUTER, VIP, other.subarray(0, 28)), echo, icmpError(ROUTER, VIP, reply.subarray(0, 24)), icmpError(ROUTER, VIP, reply.subarray(0, 20))]) {
      const { verdict, out } = runOne(fw, pkt);
      expect(verdict).toMatchObject({ verdict: 'FORWARD', fixedHit: false, rewritten: false });
      expect(Buffer.from(out)).toEqual(Buffer.from(pkt));
    }
    expect(fw.counter('ICMP_TRANSLATED')).toBe(0n);
  });
});
