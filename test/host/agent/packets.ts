// Test helper: builds IPv4/TCP/UDP packets and computes checksums independently of the firmware
// (plain RFC 1071 over the bytes, pseudo-header included).

export const TCP = 6;
export const UDP = 17;
export const ICMP = 1;

/** RFC 1071: one's complement of the one's complement sum of 16-bit big-endian words. */
export function rfc1071(bytes: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i + 1 < bytes.length; i += 2) sum += (bytes[i]! << 8) | bytes[i + 1]!;
  if (bytes.length & 1) sum += bytes[bytes.length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 65536);
  return ~sum & 0xffff;
}

export interface PacketSpec {
  proto: number;
  saddr: number;
  daddr: number;
  sport?: number;
  dport?: number;
  /** TCP flags byte (FIN 1, SYN 2, RST 4, PSH 8, ACK 16, URG 32). */
  flags?: number;
  seq?: number;
  ack?: number;
  payload?: Uint8Array;
  /** IP options (multiple of 4 bytes). */
  ipOptions?: Uint8Array;
  /** TCP options (multiple of 4 bytes). */
  tcpOptions?: Uint8Array;
  /** IP fragment: more fragments flag and offset in 8-byte units. */
  mf?: boolean;
  fragOffset?: number;
  /** UDP: send checksum 0 (none). */
  udpNoChecksum?: boolean;
  ttl?: number;
  id?: number;
}

function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 255;
  b[o + 1] = v & 255;
}
function put32(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 24) & 255;
  b[o + 1] = (v >>> 16) & 255;
  b[o + 2] = (v >>> 8) & 255;
  b[o + 3] = v & 255;
}
export function get16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}
export function get32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/** L4 bytes of a whole (unfragmented) datagram: header + payload, with checksum. */
function l4Bytes(s: PacketSpec): Uint8Array {
  const payload = s.payload ?? new Uint8Array(0);
  if (s.proto === TCP) {
    const opts = s.tcpOptions ?? new Uint8Array(0);
    const hl = 20 + opts.length;
    const b = new Uint8Array(hl + payload.length);
    put16(b, 0, s.sport ?? 0);
    put16(b, 2, s.dport ?? 0);
    put32(b, 4, s.seq ?? 0);
    put32(b, 8, s.ack ?? 0);
    b[12] = (hl / 4) << 4;
    b[13] = s.flags ?? 0x10;
    put16(b, 14, 65535);
    b.set(opts, 20);
    b.set(payload, hl);
    return b;
  }
  if (s.proto === UDP) {
    const b = new Uint8Array(8 + payload.length);
    put16(b, 0, s.sport ?? 0);
    put16(b, 2, s.dport ?? 0);
    put16(b, 4, b.length);
    b.set(payload, 8);
    return b;
  }
  return payload.slice();
}

/** Pseudo-header sum (not complemented) for TCP/UDP. */
export function pseudoSum(saddr: number, daddr: number, proto: number, l4len: number): number {
  return (saddr >>> 16) + (saddr & 0xffff) + (daddr >>> 16) + (daddr & 0xffff) + proto + l4len;
}

/** Computes and stores the L4 checksum of a complete datagram's L4 bytes. */
function fillL4Checksum(s: PacketSpec, l4: Uint8Array): void {
  if (s.proto === TCP) {
    put16(l4, 16, 0);
    put16(l4, 16, rfc1071(l4, pseudoSum(s.saddr, s.daddr, TCP, l4.length)));
  } else if (s.proto === UDP) {
    put16(l4, 6, 0);
    if (s.udpNoChecksum) return;
    const c = rfc1071(l4, pseudoSum(s.saddr, s.daddr, UDP, l4.length));
    put16(l4, 6, c === 0 ? 0xffff : c);
  } else if (s.proto === ICMP && l4.length >= 4) {
    put16(l4, 2, 0);
    put16(l4, 2, rfc1071(l4));
  }
}

function ipHeader(s: PacketSpec, bodyLen: number, fragField: number): Uint8Array {
  const opts = s.ipOptions ?? new Uint8Array(0);
  const ihl = 20 + opts.length;
  const h = new Uint8Array(ihl);
  h[0] = 0x40 | (ihl / 4);
  put16(h, 2, ihl + bodyLen);
  put16(h, 4, s.id ?? 0x1234);
  put16(h, 6, fragField);
  h[8] = s.ttl ?? 64;
  h[9] = s.proto;
  put32(h, 12, s.saddr);
  put32(h, 16, s.daddr);
  h.set(opts, 20);
  put16(h, 10, rfc1071(h));
  return h;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

/** A complete IPv4 packet with correct checksums. */
export function buildPacket(s: PacketSpec): Uint8Array {
  const l4 = l4Bytes(s);
  fillL4Checksum(s, l4);
  const frag = (s.mf ? 0x2000 : 0) | (s.fragOffset ?? 0);
  return concat(ipHeader(s, l4.length, frag), l4);
}

/**
 * Splits the datagram of `s` into fragments at `cut` bytes of L4 data (a multiple of 8): the first
 * fragment carries the L4 header and the checksum over the whole datagram.
 */
export function buildFragments(s: PacketSpec, cut: number): [Uint8Array, Uint8Array] {
  const l4 = l4Bytes(s);
  fillL4Checksum(s, l4);
  const first = concat(ipHeader(s, cut, 0x2000), l4.subarray(0, cut));
  const second = concat(ipHeader(s, l4.length - cut, cut / 8), l4.subarray(cut));
  return [first, second];
}

/** Recomputes the IP header checksum from scratch (RFC 1071) for a packet. */
export function ipChecksumOf(pkt: Uint8Array): number {
  const ihl = (pkt[0]! & 15) * 4;
  const h = pkt.slice(0, ihl);
  put16(h, 10, 0);
  return rfc1071(h);
}

/** Recomputes the TCP/UDP checksum (pseudo-header included) of an unfragmented packet. */
export function l4ChecksumOf(pkt: Uint8Array): number {
  const ihl = (pkt[0]! & 15) * 4;
  const tot = get16(pkt, 2);
  const proto = pkt[9]!;
  const l4 = pkt.slice(ihl, tot);
  const off = proto === TCP ? 16 : 6;
  put16(l4, off, 0);
  const c = rfc1071(l4, pseudoSum(get32(pkt, 12), get32(pkt, 16), proto, l4.length));
  return proto === UDP && c === 0 ? 0xffff : c;
}

/** True when the one's complement sum over the header (checksum included) is 0xFFFF. */
export function ipHeaderValid(pkt: Uint8Array): boolean {
  const ihl = (pkt[0]! & 15) * 4;
  return rfc1071(pkt.subarray(0, ihl)) === 0;
}

export function hex(b: Uint8Array): string {
  return Buffer.from(b).toString('hex');
}

export function fromHex(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s.replace(/\s+/g, ''), 'hex'));
}

export { put16, put32 };
