// Internet checksum (RFC 1071) helpers for building and verifying packets on the host side.

/** Ones'-complement sum of b[start, end) as 16-bit big-endian words, not folded, added to `initial`. */
export function sum16(b: Uint8Array, start: number, end: number, initial = 0): number {
  let s = initial;
  let i = start;
  for (; i + 1 < end; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (i < end) s += b[i]! << 8;
  return s;
}

/** Folds a sum to 16 bits and complements it: the value to store in a checksum field. */
export function finish(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 65536);
  return ~sum & 0xffff;
}

/** The IPv4 header checksum of the header at `ip` (with its checksum field treated as zero). */
export function ipv4HeaderChecksum(b: Uint8Array, ip: number): number {
  const ihl = (b[ip]! & 0x0f) * 4;
  const s = sum16(b, ip, ip + ihl) - ((b[ip + 10]! << 8) | b[ip + 11]!);
  return finish(s);
}

/**
 * The TCP/UDP/ICMP checksum of the IPv4 packet at `ip` (checksum field treated as zero), over the
 * transport bytes present in b up to `end`. ICMP has no pseudo-header. Returns -1 for other protocols.
 */
export function transportChecksum(b: Uint8Array, ip: number, end: number): number {
  const ihl = (b[ip]! & 0x0f) * 4;
  const proto = b[ip + 9]!;
  const totalLen = (b[ip + 2]! << 8) | b[ip + 3]!;
  const l4 = ip + ihl;
  const l4End = Math.min(end, ip + totalLen);
  const field = proto === 6 ? 16 : proto === 17 ? 6 : proto === 1 ? 2 : -1;
  if (field < 0) return -1;
  let s = sum16(b, l4, l4End);
  if (l4 + field + 2 <= l4End) s -= (b[l4 + field]! << 8) | b[l4 + field + 1]!;
  if (proto !== 1) {
    s = sum16(b, ip + 12, ip + 20, s); // source and destination address
    s += proto + (totalLen - ihl);
  }
  return finish(s);
}

/** RFC 1624 eqn. 3: the checksum `ck` after a 16-bit word of the covered data changed `from` → `to`. */
export function csumReplace16(ck: number, from: number, to: number): number {
  let s = (~ck & 0xffff) + (~from & 0xffff) + (to & 0xffff);
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** RFC 1624 for a 32-bit field (an address): two 16-bit replacements. */
export function csumReplace32(ck: number, from: number, to: number): number {
  return csumReplace16(csumReplace16(ck, from >>> 16, to >>> 16), from & 0xffff, to & 0xffff);
}
