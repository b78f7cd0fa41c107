// Packets for tests, and an independent checksum check (full RFC 1071 recompute).
import { tcpPacket, udpPacket, TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN } from '../../host/pcap/packets.ts';

export { TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN };

export const ip = (s: string): number => s.split('.').reduce((a, o) => a * 256 + Number(o), 0) >>> 0;

export function tcp(src: string, sport: number, dst: string, dport: number, flags: number, opts: { seq?: number; payload?: string } = {}): Buffer {
  return tcpPacket(
    { link: 'raw' },
    { src: ip(src), dst: ip(dst), id: (sport * 7) & 0xffff },
    { sport, dport, flags, seq: opts.seq ?? 1000, ack: flags & TCP_ACK ? 1 : 0, payload: opts.payload ? Buffer.from(opts.payload) : undefined },
  );
}

export function udp(src: string, sport: number, dst: string, dport: number, payload = 'ping'): Buffer {
  return udpPacket({ link: 'raw' }, { src: ip(src), dst: ip(dst) }, { sport, dport, payload: Buffer.from(payload) });
}

function sum(b: Uint8Array, start: number, end: number, init: number): number {
  let s = init;
  for (let i = start; i + 1 < end; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if ((end - start) & 1) s += b[end - 1]! << 8;
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** True when the IPv4 header checksum and the TCP/UDP checksum verify (recomputed from scratch). */
export function checksumsValid(p: Uint8Array): { ip: boolean; l4: boolean } {
  const ihl = (p[0]! & 15) * 4;
  const total = (p[2]! << 8) | p[3]!;
  const ipOk = sum(p, 0, ihl, 0) === 0xffff;
  const proto = p[9]!;
  if (proto !== 6 && proto !== 17) return { ip: ipOk, l4: true };
  if (proto === 17 && ((p[ihl + 6]! << 8) | p[ihl + 7]!) === 0) return { ip: ipOk, l4: true };
  const len = total - ihl;
  const pseudo = sum(p, 12, 20, 0) + proto + len;
  return { ip: ipOk, l4: sum(p, ihl, total, pseudo) === 0xffff };
}

export const srcOf = (p: Uint8Array): string => `${p[12]}.${p[13]}.${p[14]}.${p[15]}:${(p[20]! << 8) | p[21]!}`;
export const dstOf = (p: Uint8Array): string => `${p[16]}.${p[17]}.${p[18]}.${p[19]}:${(p[22]! << 8) | p[23]!}`;
