// Test-side IPv4/UDP/TCP helpers: craft packets and check them, independent of the firmware's own code.

export function ipv4ToBytes(addr: string): [number, number, number, number] {
  const parts = addr.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) {
    throw new Error(`bad IPv4 address ${addr}`);
  }
  return parts as [number, number, number, number];
}

export function bytesToIpv4(b: Uint8Array, off: number): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

/** RFC 1071 one's-complement sum of `b[off..off+len)`, folded, not inverted. */
export function onesSum(b: Uint8Array, off: number, len: number, initial = 0): number {
  let sum = initial;
  let i = off;
  for (; i + 1 < off + len; i += 2) sum += (b[i]! << 8) | b[i + 1]!;
  if (i < off + len) sum += b[i]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return sum;
}

export function ipv4HeaderChecksumOk(p: Uint8Array): boolean {
  const ihl = (p[0]! & 0x0f) * 4;
  return onesSum(p, 0, ihl) === 0xffff;
}

function pseudoSum(p: Uint8Array, proto: number, l4len: number): number {
  return onesSum(p, 12, 8, proto + l4len);
}

/** Checks the UDP or TCP checksum of an IPv4 packet (UDP checksum 0 means "none" and passes). */
export function l4ChecksumOk(p: Uint8Array): boolean {
  const ihl = (p[0]! & 0x0f) * 4;
  const total = (p[2]! << 8) | p[3]!;
  const proto = p[9]!;
  if (proto === 17 && p[ihl + 6] === 0 && p[ihl + 7] === 0) return true;
  return onesSum(p, ihl, total - ihl, pseudoSum(p, proto, total - ihl)) === 0xffff;
}

export interface UdpSpec {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  payload: Uint8Array;
  ttl?: number;
}

/** A complete IPv4/UDP datagram with correct IP and UDP checksums. */
export function buildUdp(spec: UdpSpec): Uint8Array {
  const total = 20 + 8 + spec.payload.length;
  const p = new Uint8Array(total);
  const dv = new DataView(p.buffer);
  p[0] = 0x45;
  dv.setUint16(2, total);
  dv.setUint16(4, 0x1234);
  dv.setUint16(6, 0x4000); // DF
  p[8] = spec.ttl ?? 64;
  p[9] = 17;
  p.set(ipv4ToBytes(spec.src), 12);
  p.set(ipv4ToBytes(spec.dst), 16);
  dv.setUint16(10, ~onesSum(p, 0, 20) & 0xffff);
  dv.setUint16(20, spec.sport);
  dv.setUint16(22, spec.dport);
  dv.setUint16(24, 8 + spec.payload.length);
  p.set(spec.payload, 28);
  const c = ~onesSum(p, 20, 8 + spec.payload.length, pseudoSum(p, 17, 8 + spec.payload.length)) & 0xffff;
  dv.setUint16(26, c === 0 ? 0xffff : c);
  return p;
}

/** RFC 1624 incremental update of a 16-bit checksum at `off` when a 16-bit word changes old → new. */
function adjust16(p: Uint8Array, off: number, oldWord: number, newWord: number): void {
  const hc = (p[off]! << 8) | p[off + 1]!;
  let sum = (~hc & 0xffff) + (~oldWord & 0xffff) + newWord;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const r = ~sum & 0xffff;
  p[off] = r >>> 8;
  p[off + 1] = r & 0xff;
}

/**
 * Rewrites the IPv4 source (which = 12) or destination (which = 16) address in place, keeping the IP and
 * (for TCP/UDP, unfragmented) L4 checksums right.
 */
export function rewriteAddress(p: Uint8Array, which: 12 | 16, addr: readonly number[]): void {
  const ihl = (p[0]! & 0x0f) * 4;
  const proto = p[9]!;
  const l4sum = proto === 6 ? ihl + 16 : proto === 17 ? ihl + 6 : -1;
  const udpNoSum = proto === 17 && p[ihl + 6] === 0 && p[ihl + 7] === 0;
  for (let w = 0; w < 4; w += 2) {
    const o = (p[which + w]! << 8) | p[which + w + 1]!;
    const n = (addr[w]! << 8) | addr[w + 1]!;
    adjust16(p, 10, o, n);
    if (l4sum >= 0 && !udpNoSum) adjust16(p, l4sum, o, n);
    p[which + w] = addr[w]!;
    p[which + w + 1] = addr[w + 1]!;
  }
}
