// Packet builders for generated captures and test fixtures: Ethernet (optionally VLAN-tagged) or raw
// IPv4 frames carrying TCP, UDP or ICMP with correct checksums, plus ARP and IPv6 frames.

import { finish, ipv4HeaderChecksum, sum16, transportChecksum } from './checksum.ts';
import { ETHERTYPE_ARP, ETHERTYPE_IPV4, ETHERTYPE_IPV6, ETHERTYPE_VLAN } from './linktype.ts';

export const IPPROTO_ICMP = 1;
export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

export function parseIPv4(s: string): number {
  const parts = s.split('.');
  if (parts.length !== 4) throw new RangeError(`bad IPv4 address ${s}`);
  let v = 0;
  for (const p of parts) {
    const n = Number(p);
    if (!/^\d{1,3}$/.test(p) || n > 255) throw new RangeError(`bad IPv4 address ${s}`);
    v = v * 256 + n;
  }
  return v;
}

export function formatIPv4(v: number): string {
  return `${(v >>> 24) & 255}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
}

export interface L2 {
  /** 'ethernet' (default) or 'raw' (no link header). */
  link?: 'ethernet' | 'raw';
  srcMac?: Uint8Array;
  dstMac?: Uint8Array;
  /** 802.1Q VLAN ids, outermost first. */
  vlans?: number[];
}

export interface IPv4Fields {
  src: number;
  dst: number;
  ttl?: number;
  id?: number;
  tos?: number;
  /** Flags+fragment offset field as on the wire (e.g. 0x4000 = DF, 0x2000 = MF). */
  fragField?: number;
  /** Store a wrong IPv4 header checksum (off by one) on purpose. */
  badIpChecksum?: boolean;
  /** Store a wrong transport checksum (off by one) on purpose. */
  badL4Checksum?: boolean;
  /** Zero UDP checksum (allowed for UDP over IPv4). */
  zeroUdpChecksum?: boolean;
}

export interface TcpFields {
  sport: number;
  dport: number;
  seq?: number;
  ack?: number;
  flags: number;
  window?: number;
  payload?: Uint8Array;
}

export interface UdpFields {
  sport: number;
  dport: number;
  payload?: Uint8Array;
}

const MAC_A = Uint8Array.from([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
const MAC_B = Uint8Array.from([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]);

function linkHeader(l2: L2, ethertype: number): Buffer {
  if ((l2.link ?? 'ethernet') === 'raw') return Buffer.alloc(0);
  const vlans = l2.vlans ?? [];
  const h = Buffer.alloc(14 + 4 * vlans.length);
  h.set(l2.dstMac ?? MAC_B, 0);
  h.set(l2.srcMac ?? MAC_A, 6);
  let o = 12;
  for (const v of vlans) {
    h.writeUInt16BE(ETHERTYPE_VLAN, o);
    h.writeUInt16BE(v & 0x0fff, o + 2);
    o += 4;
  }
  h.writeUInt16BE(ethertype, o);
  return h;
}

/** An IPv4 packet (with link header) around a transport segment whose checksum field is at `ckAt`. */
export function ipv4Packet(l2: L2, ip: IPv4Fields, proto: number, l4: Uint8Array): Buffer {
  const link = linkHeader(l2, ETHERTYPE_IPV4);
  const b = Buffer.alloc(link.length + 20 + l4.length);
  b.set(link, 0);
  const o = link.length;
  b[o] = 0x45;
  b[o + 1] = ip.tos ?? 0;
  b.writeUInt16BE(20 + l4.length, o + 2);
  b.writeUInt16BE(ip.id ?? 0, o + 4);
  b.writeUInt16BE(ip.fragField ?? 0x4000, o + 6);
  b[o + 8] = ip.ttl ?? 64;
  b[o + 9] = proto;
  b.writeUInt32BE(ip.src >>> 0, o + 12);
  b.writeUInt32BE(ip.dst >>> 0, o + 16);
  b.set(l4, o + 20);
  const frag = ip.fragField ?? 0x4000;
  const firstFragment = (frag & 0x1fff) === 0;
  if (firstFragment && (proto === IPPROTO_TCP || proto === IPPROTO_UDP || proto === IPPROTO_ICMP) && (frag & 0x2000) === 0) {
    const field = proto === IPPROTO_TCP ? 16 : proto === IPPROTO_UDP ? 6 : 2;
    let ck = transportChecksum(b, o, b.length);
    if (proto === IPPROTO_UDP && ck === 0) ck = 0xffff;
    if (ip.zeroUdpChecksum && proto === IPPROTO_UDP) ck = 0;
    else if (ip.badL4Checksum) ck = (ck + 1) & 0xffff;
    b.writeUInt16BE(ck, o + 20 + field);
  }
  let ipck = ipv4HeaderChecksum(b, o);
  if (ip.badIpChecksum) ipck = (ipck + 1) & 0xffff;
  b.writeUInt16BE(ipck, o + 10);
  return b;
}

export function tcpSegment(t: TcpFields): Buffer {
  const payload = t.payload ?? new Uint8Array(0);
  const s = Buffer.alloc(20 + payload.length);
  s.writeUInt16BE(t.sport, 0);
  s.writeUInt16BE(t.dport, 2);
  s.writeUInt32BE((t.seq ?? 0) >>> 0, 4);
  s.writeUInt32BE((t.ack ?? 0) >>> 0, 8);
  s[12] = 5 << 4;
  s[13] = t.flags;
  s.writeUInt16BE(t.window ?? 65535, 14);
  s.set(payload, 20);
  return s;
}

export function udpDatagram(u: UdpFields): Buffer {
  const payload = u.payload ?? new Uint8Array(0);
  const s = Buffer.alloc(8 + payload.length);
  s.writeUInt16BE(u.sport, 0);
  s.writeUInt16BE(u.dport, 2);
  s.writeUInt16BE(8 + payload.length, 4);
  s.set(payload, 8);
  return s;
}

/** An ICMP message: type, code, 4 bytes of rest-of-header, body (checksum filled by ipv4Packet). */
export function icmpMessage(type: number, code: number, rest: number, body: Uint8Array = new Uint8Array(0)): Buffer {
  const s = Buffer.alloc(8 + body.length);
  s[0] = type;
  s[1] = code;
  s.writeUInt32BE(rest >>> 0, 4);
  s.set(body, 8);
  return s;
}

export function tcpPacket(l2: L2, ip: IPv4Fields, t: TcpFields): Buffer {
  return ipv4Packet(l2, ip, IPPROTO_TCP, tcpSegment(t));
}

export function udpPacket(l2: L2, ip: IPv4Fields, u: UdpFields): Buffer {
  return ipv4Packet(l2, ip, IPPROTO_UDP, udpDatagram(u));
}

/** ARP request (op 1) or reply (op 2) over Ethernet. */
export function arpPacket(l2: L2, op: 1 | 2, senderIp: number, targetIp: number): Buffer {
  const link = linkHeader({ ...l2, link: 'ethernet' }, ETHERTYPE_ARP);
  const b = Buffer.alloc(link.length + 28);
  b.set(link, 0);
  const o = link.length;
  b.writeUInt16BE(1, o); // Ethernet
  b.writeUInt16BE(ETHERTYPE_IPV4, o + 2);
  b[o + 4] = 6;
  b[o + 5] = 4;
  b.writeUInt16BE(op, o + 6);
  b.set(l2.srcMac ?? MAC_A, o + 8);
  b.writeUInt32BE(senderIp >>> 0, o + 14);
  if (op === 2) b.set(l2.dstMac ?? MAC_B, o + 18);
  b.writeUInt32BE(targetIp >>> 0, o + 24);
  return b;
}

/** An IPv6 UDP datagram (addresses as 16-byte arrays) with a correct checksum. */
export function ipv6UdpPacket(l2: L2, src: Uint8Array, dst: Uint8Array, sport: number, dport: number, payload: Uint8Array): Buffer {
  const link = linkHeader(l2, ETHERTYPE_IPV6);
  const udp = udpDatagram({ sport, dport, payload });
  const b = Buffer.alloc(link.length + 40 + udp.length);
  b.set(link, 0);
  const o = link.length;
  b.writeUInt32BE(0x60000000, o);
  b.writeUInt16BE(udp.length, o + 4);
  b[o + 6] = IPPROTO_UDP;
  b[o + 7] = 64;
  b.set(src, o + 8);
  b.set(dst, o + 24);
  b.set(udp, o + 40);
  let s = sum16(b, o + 8, o + 40);
  s += udp.length + IPPROTO_UDP;
  s = sum16(b, o + 40, b.length, s);
  let ck = finish(s);
  if (ck === 0) ck = 0xffff;
  b.writeUInt16BE(ck, o + 46);
  return b;
}
