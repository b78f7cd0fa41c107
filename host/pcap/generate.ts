// Deterministic synthetic captures: the bundled demo capture (TCP conversations between many clients and
// a VIP in both directions, some UDP, a little odd traffic) and the benchmark capture (N small TCP packets
// over K flows). Same seed, same bytes.

import { PcapWriter } from './writer.ts';
import { LINKTYPE_ETHERNET, LINKTYPE_RAW } from './linktype.ts';
import { finish, sum16 } from './checksum.ts';
import {
  IPPROTO_ICMP,
  TCP_ACK,
  TCP_FIN,
  TCP_PSH,
  TCP_SYN,
  arpPacket,
  icmpMessage,
  ipv4Packet,
  ipv6UdpPacket,
  parseIPv4,
  tcpPacket,
  udpPacket,
  type L2,
} from './packets.ts';

/** mulberry32: a small, fast, seedable PRNG (good enough for synthetic traffic). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface DemoCaptureOptions {
  /** TCP conversations (default 2000). */
  flows?: number;
  /** Fraction of extra UDP request/response flows relative to TCP flows (default 0.1). */
  udpFraction?: number;
  /** Include ARP, IPv6 and ICMP packets (default true). */
  oddTraffic?: boolean;
  seed?: number;
  link?: 'ethernet' | 'raw';
  vip?: string; // default 10.0.0.100
  vipPort?: number; // default 80
  udpPort?: number; // default 7777
  /** Client addresses are drawn from this /16 (default 10.1.0.0). */
  clientNet?: string;
  /** Capture start, seconds since the epoch (default 2026-01-01T00:00:00Z). */
  startSec?: number;
}

export interface GeneratedPacket {
  data: Buffer;
  tsSec: number;
  tsNsec: number;
}

export interface DemoCaptureSummary {
  packets: number;
  tcpFlows: number;
  udpFlows: number;
  oddPackets: number;
  bytes: number;
}

const CLIENT_MAC = Uint8Array.from([0x02, 0x00, 0x0a, 0x01, 0x00, 0x01]); // the clients' router
const VIP_MAC = Uint8Array.from([0x02, 0x00, 0x0a, 0x00, 0x00, 0x64]);

/** Generates the demo capture's packets in timestamp order. */
export function demoPackets(opts: DemoCaptureOptions = {}): { packets: GeneratedPacket[]; summary: DemoCaptureSummary } {
  const rnd = prng(opts.seed ?? 1);
  const flows = opts.flows ?? 2000;
  const udpFlows = Math.round(flows * (opts.udpFraction ?? 0.1));
  const vip = parseIPv4(opts.vip ?? '10.0.0.100');
  const vipPort = opts.vipPort ?? 80;
  const udpPort = opts.udpPort ?? 7777;
  const net = parseIPv4(opts.clientNet ?? '10.1.0.0') & 0xffff0000;
  const link = opts.link ?? 'ethernet';
  const toVip: L2 = { link, srcMac: CLIENT_MAC, dstMac: VIP_MAC };
  const fromVip: L2 = { link, srcMac: VIP_MAC, dstMac: CLIENT_MAC };
  const startUs = (opts.startSec ?? 1_767_225_600) * 1e6;
  const timed: { us: number; order: number; data: Buffer }[] = [];
  let order = 0;
  const at = (us: number, data: Buffer): void => {
    timed.push({ us, order: order++, data });
  };
  const usedEndpoints = new Set<number>();
  const client = (): [number, number] => {
    for (;;) {
      const host = 1 + Math.floor(rnd() * 65534);
      const port = 1024 + Math.floor(rnd() * (65536 - 1024));
      const key = host * 65536 + port;
      if (!usedEndpoints.has(key)) {
        usedEndpoints.add(key);
        return [(net | host) >>> 0, port];
      }
    }
  };
  const text = (s: string): Buffer => Buffer.from(s, 'latin1');
  // flows start over ~10 s, each lasts a few ms
  const spanUs = 10e6;
  for (let f = 0; f < flows; f++) {
    const [cip, cport] = client();
    let t = startUs + Math.floor((f / flows) * spanUs + rnd() * 1000);
    const rtt = 200 + Math.floor(rnd() * 800);
    const cIsn = Math.floor(rnd() * 2 ** 32);
    const sIsn = Math.floor(rnd() * 2 ** 32);
    let cid = Math.floor(rnd() * 65536);
    let sid = Math.floor(rnd() * 65536);
    const c2s = (flags: number, seq: number, ack: number, payload?: Buffer): Buffer =>
      tcpPacket(toVip, { src: cip, dst: vip, id: cid++ & 0xffff }, { sport: cport, dport: vipPort, seq, ack, flags, payload, window: 64240 });
    const s2c = (flags: number, seq: number, ack: number, payload?: Buffer): Buffer =>
      tcpPacket(fromVip, { src: vip, dst: cip, id: sid++ & 0xffff }, { sport: vipPort, dport: cport, seq, ack, flags, payload, window: 65160 });
    const req = text(`GET /item/${f} HTTP/1.1\r\nHost: vip\r\n\r\n`);
    const body = 'x'.repeat(Math.floor(rnd() * 200));
    const resp = text(`HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
    let cs = cIsn, ss = sIsn;
    at(t, c2s(TCP_SYN, cs, 0));
    cs++;
    at((t += rtt), s2c(TCP_SYN | TCP_ACK, ss, cs));
    ss++;
    at((t += rtt), c2s(TCP_ACK, cs, ss));
    at((t += 20), c2s(TCP_PSH | TCP_ACK, cs, ss, req));
    cs += req.length;
    at((t += rtt), s2c(TCP_ACK, ss, cs));
    at((t += 50), s2c(TCP_PSH | TCP_ACK, ss, cs, resp));
    ss += resp.length;
    at((t += rtt), c2s(TCP_ACK, cs, ss));
    at((t += 30), c2s(TCP_FIN | TCP_ACK, cs, ss));
    cs++;
    at((t += rtt), s2c(TCP_FIN | TCP_ACK, ss, cs));
    ss++;
    at((t += rtt), c2s(TCP_ACK, cs, ss));
  }
  for (let f = 0; f < udpFlows; f++) {
    const [cip, cport] = client();
    const t = startUs + Math.floor(rnd() * spanUs);
    const q = Buffer.alloc(12 + Math.floor(rnd() * 40), f & 0xff);
    at(t, udpPacket(toVip, { src: cip, dst: vip, id: f }, { sport: cport, dport: udpPort, payload: q }));
    at(t + 300, udpPacket(fromVip, { src: vip, dst: cip, id: f + 1 }, { sport: udpPort, dport: cport, payload: Buffer.concat([q, q]) }));
  }
  let odd = 0;
  if (opts.oddTraffic ?? true) {
    const [cip] = client();
    const [cip2, cport2] = client();
    for (let k = 0; k < 5; k++) {
      const t = startUs + Math.floor(((k + 0.5) / 5) * spanUs);
      if (link === 'ethernet') {
        at(t, arpPacket({ srcMac: CLIENT_MAC, dstMac: new Uint8Array(6).fill(0xff) }, 1, cip, vip));
        at(t + 50, arpPacket({ srcMac: VIP_MAC, dstMac: CLIENT_MAC }, 2, vip, cip));
        odd += 2;
      }
      const v6a = Buffer.from('fd000000000000000000000000000001', 'hex');
      const v6b = Buffer.from('fd000000000000000000000000000064', 'hex');
      at(t + 100, ipv6UdpPacket(toVip, v6a, v6b, 40000, 40001, text(`ipv6 ${k}`)));
      const ping = icmpMessage(8, 0, (0x1234 << 16) | k, text('ping-payload'));
      at(t + 200, ipv4Packet(toVip, { src: cip, dst: vip, id: 7000 + k }, IPPROTO_ICMP, ping));
      const pong = icmpMessage(0, 0, (0x1234 << 16) | k, text('ping-payload'));
      at(t + 400, ipv4Packet(fromVip, { src: vip, dst: cip, id: 8000 + k }, IPPROTO_ICMP, pong));
      // an ICMP port unreachable from the VIP quoting a UDP datagram of a client
      const quoted = udpPacket({ link: 'raw' }, { src: cip2, dst: vip, id: 9000 + k }, { sport: cport2, dport: 9999, payload: text('late') });
      const unreach = icmpMessage(3, 3, 0, quoted.subarray(0, 28));
      at(t + 600, ipv4Packet(fromVip, { src: vip, dst: cip2, id: 9100 + k }, IPPROTO_ICMP, unreach));
      odd += 4;
    }
  }
  timed.sort((a, b) => a.us - b.us || a.order - b.order);
  let bytes = 0;
  const packets = timed.map((p) => {
    bytes += p.data.length;
    return { data: p.data, tsSec: Math.floor(p.us / 1e6), tsNsec: (p.us % 1e6) * 1000 };
  });
  return { packets, summary: { packets: packets.length, tcpFlows: flows, udpFlows, oddPackets: odd, bytes } };
}

/** Writes the demo capture to `path` (classic pcap, µs). */
export async function writeDemoCapture(path: string, opts: DemoCaptureOptions = {}): Promise<DemoCaptureSummary> {
  const { packets, summary } = demoPackets(opts);
  const w = await PcapWriter.open(path, { linkType: (opts.link ?? 'ethernet') === 'raw' ? LINKTYPE_RAW : LINKTYPE_ETHERNET, snaplen: 65535 });
  for (const p of packets) w.writePacket(p.tsSec, p.tsNsec, p.data.length, p.data);
  await w.close();
  return summary;
}

export interface BenchCaptureOptions {
  packets?: number; // default 1,000,000
  flows?: number; // default 100,000
  /** Frame size in bytes incl. the Ethernet header (default 64; at least 54). */
  frameSize?: number;
  link?: 'ethernet' | 'raw';
  vip?: string; // default 10.0.0.100
  vipPort?: number; // default 80
  clientNet?: string; // default 10.1.0.0 (a /16; flows beyond 65534 clients reuse hosts with other ports)
  seed?: number;
}

/**
 * Writes the benchmark capture: `packets` TCP ACK segments from `flows` clients to the VIP, round robin
 * over the flows, checksums correct, 1 µs apart. 1M packets take well under a second.
 */
export async function writeBenchCapture(path: string, opts: BenchCaptureOptions = {}): Promise<{ packets: number; flows: number; bytes: number }> {
  const n = opts.packets ?? 1_000_000;
  const flows = Math.max(1, Math.min(opts.flows ?? 100_000, n));
  const link = opts.link ?? 'ethernet';
  const frame = Math.max(opts.frameSize ?? 64, 54);
  const rnd = prng(opts.seed ?? 7);
  const vip = parseIPv4(opts.vip ?? '10.0.0.100');
  const net = parseIPv4(opts.clientNet ?? '10.1.0.0') & 0xffff0000;
  const l2len = link === 'ethernet' ? 14 : 0;
  const template = tcpPacket(
    { link, srcMac: CLIENT_MAC, dstMac: VIP_MAC },
    { src: net | 1, dst: vip },
    { sport: 1024, dport: opts.vipPort ?? 80, flags: TCP_ACK, payload: Buffer.alloc(frame - 54) },
  );
  const pkt = Buffer.from(template);
  const ip = l2len;
  const tcp = ip + 20;
  // per flow: client address and port; sequence numbers advance per packet
  const addr = new Uint32Array(flows);
  const port = new Uint16Array(flows);
  const seq = new Uint32Array(flows);
  for (let f = 0; f < flows; f++) {
    addr[f] = (net | (1 + (f % 65534))) >>> 0;
    port[f] = 1024 + ((Math.floor(f / 65534) * 7919 + Math.floor(rnd() * 60000)) % 64000);
    seq[f] = Math.floor(rnd() * 2 ** 32);
  }
  const w = await PcapWriter.open(path, { linkType: link === 'raw' ? LINKTYPE_RAW : LINKTYPE_ETHERNET, snaplen: 65535 });
  const tcpLen = pkt.length - tcp;
  const baseSec = 1_767_225_600;
  for (let i = 0; i < n; i++) {
    const f = i % flows;
    const a = addr[f]!;
    pkt.writeUInt32BE(a, ip + 12);
    pkt.writeUInt16BE(i & 0xffff, ip + 4);
    pkt[ip + 10] = 0;
    pkt[ip + 11] = 0;
    pkt.writeUInt16BE(finish(sum16(pkt, ip, ip + 20)), ip + 10);
    pkt.writeUInt16BE(port[f]!, tcp);
    pkt.writeUInt32BE(seq[f]!, tcp + 4);
    seq[f] = (seq[f]! + (tcpLen - 20)) >>> 0;
    pkt[tcp + 16] = 0;
    pkt[tcp + 17] = 0;
    let s = sum16(pkt, tcp, pkt.length);
    s = sum16(pkt, ip + 12, ip + 20, s) + 6 + tcpLen;
    pkt.writeUInt16BE(finish(s), tcp + 16);
    w.writePacket(baseSec + Math.floor(i / 1e6), (i % 1e6) * 1000, pkt.length, pkt);
    if ((i & 0x3fff) === 0x3fff) await w.drain();
  }
  await w.close();
  return { packets: n, flows, bytes: 24 + n * (16 + pkt.length) };
}
