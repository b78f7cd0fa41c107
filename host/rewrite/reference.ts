// A pure-TypeScript rewriter that reproduces tcprewrite 4.4.3 byte for byte (see docs/tcprewrite-compat.md
// for every behaviour and the fixtures that pin it). It is the oracle for the firmware path and a fallback
// for what the firmware cannot express (prefix maps, port ranges, tcprewrite's checksum and MAC quirks).
//
// Per packet, in tcprewrite's order:
//   1. Ethernet only (other link types are written unchanged, as tcprewrite 4.4.3 does).
//   2. IPv4 total length := frame length − link header, unless the packet is a fragment (IPv6: payload
//      length likewise).
//   3. addresses (--dnat/--snat, then --pnat or --srcipmap/--dstipmap), then ports (--portmap); an IPv4
//      multicast source or destination then sets the first three bytes of that MAC to 01:00:5e; IPv6 sets
//      each MAC whose address is NOT multicast to 33:33 + the address's last four bytes.
//   4. checksums: a whole, unfragmented packet gets TCP, UDP (unless 0) and ICMP (if ≥ 28 bytes) fully
//      recomputed — even when nothing changed; a truncated packet or a fragment gets incremental updates for
//      what changed; the IPv4 header checksum is always recomputed.

import { csumReplace16, csumReplace32 } from '../pcap/checksum.ts';
import { LINKTYPE_ETHERNET } from '../pcap/linktype.ts';
import { inCidr, mapPort, remap, type CidrMap, type RewriteRules } from './rules.ts';

/** rewrite() result bits. */
export const OUTCOME_CHANGED = 1; // some byte of the packet changed
export const OUTCOME_TCPREWRITE_ABORTS = 2; // tcprewrite 4.4.3 aborts the whole run here (we leave it unchanged)

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_IPV6 = 0x86dd;
const ETHERTYPE_ARP = 0x0806;
const ICMP_MIN_RECOMPUTE = 28;

const u16 = (b: Uint8Array, o: number): number => (b[o]! << 8) | b[o + 1]!;
const u32 = (b: Uint8Array, o: number): number => ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
// every store goes through these, which note whether a byte changed (no copy of the packet needed)
let dirty = false;
function put8(b: Uint8Array, o: number, v: number): void {
  if (b[o] !== (v & 0xff)) {
    b[o] = v;
    dirty = true;
  }
}
function put16(b: Uint8Array, o: number, v: number): void {
  put8(b, o, v >>> 8);
  put8(b, o + 1, v);
}
function put32(b: Uint8Array, o: number, v: number): void {
  put16(b, o, v >>> 16);
  put16(b, o + 2, v);
}

function sum16(b: Uint8Array, start: number, end: number, s = 0): number {
  let i = start;
  for (; i + 1 < end; i += 2) s += (b[i]! << 8) | b[i + 1]!;
  if (i < end) s += b[i]! << 8;
  return s;
}

/**
 * sum16() through a little-endian u16 view of the same bytes when `start` is even: a ones'-complement sum
 * of swapped words is the swapped sum, so fold, swap back. Half the loads of the byte loop. The result is
 * congruent to sum16()'s modulo 0xffff, which is all a checksum sees.
 */
function sumFast(b: Uint8Array, w: Uint16Array | null, start: number, end: number): number {
  if (w === null || (start & 1) !== 0) return sum16(b, start, end);
  const n = end - start;
  const h = start >>> 1;
  const he = h + (n >>> 1);
  let s = 0;
  for (let k = h; k < he; k++) s += w[k]!;
  s = fold(s);
  s = ((s & 0xff) << 8) | (s >>> 8);
  if ((n & 1) !== 0) s += b[end - 1]! << 8;
  // plus 2 x 0xffff (a ones'-complement zero) so that callers can subtract a 16-bit field and stay positive
  return s + 0x1fffe;
}
function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + Math.floor(s / 65536);
  return s;
}


function firstMap(maps: readonly CidrMap[], addr: number): number {
  for (let i = 0; i < maps.length; i++) {
    const m = maps[i]!;
    if (inCidr(m.from, addr)) return remap(m.to, addr);
  }
  return addr;
}

let aborts = false;

interface AddressMaps {
  src: readonly CidrMap[];
  dst: readonly CidrMap[];
}

export class ReferenceRewriter {
  private readonly maps: AddressMaps;
  private readonly arp: boolean;

  constructor(private readonly rules: RewriteRules) {
    this.maps = rules.pnat.length > 0 ? { src: rules.pnat, dst: rules.pnat } : { src: rules.srcipmap, dst: rules.dstipmap };
    this.arp = rules.pnat.length > 0; // tcprewrite rewrites ARP for --pnat only
  }

  /**
   * Rewrites the packet b[start, start+capLen) in place; returns OUTCOME_* bits. `w`, when given, is a
   * little-endian u16 view of b's bytes (w[k] covers b[2k], b[2k+1]) used for faster checksum sums.
   */
  rewrite(linkType: number, b: Uint8Array, start: number, capLen: number, origLen: number, w: Uint16Array | null = null): number {
    if (linkType !== LINKTYPE_ETHERNET || capLen < 14) return 0;
    dirty = false;
    aborts = false;
    const end = start + capLen;
    let at = start + 12;
    let type = u16(b, at);
    while ((type === 0x8100 || type === 0x88a8 || type === 0x9100) && at + 6 <= end) {
      at += 4;
      type = u16(b, at);
    }
    const l3 = at + 2;
    const l2len = l3 - start;
    if (type === ETHERTYPE_IPV4) this.ipv4(b, w, start, l3, end, l2len, origLen);
    else if (type === ETHERTYPE_IPV6) this.ipv6(b, start, l3, end, origLen, l2len);
    else if (type === ETHERTYPE_ARP && this.arp) this.arpPacket(b, l3, end);
    return (dirty ? OUTCOME_CHANGED : 0) | (aborts ? OUTCOME_TCPREWRITE_ABORTS : 0);
  }

  private ipv4(b: Uint8Array, w: Uint16Array | null, start: number, ip: number, end: number, l2len: number, origLen: number): void {
    if (ip + 20 > end) return;
    if (b[ip]! >> 4 !== 4) {
      aborts = true; // "Invalid packet: Expected IPv4 packet"
      return;
    }
    // tcprewrite trusts IHL even below 5 (the transport header then starts inside the IPv4 header)
    const ihl = (b[ip]! & 0x0f) * 4;
    if (ip + ihl > end) return;
    let total = u16(b, ip + 2);
    const frag = u16(b, ip + 6);
    const isFragment = (frag & 0x3fff) !== 0;
    const firstPart = (frag & 0x1fff) === 0;
    // 2. total length follows the frame length (whole datagrams only)
    if (!isFragment && total !== origLen - l2len) {
      total = (origLen - l2len) & 0xffff;
      put16(b, ip + 2, total);
    }
    const truncated = end - start < origLen;
    const whole = !isFragment && !truncated;
    const proto = b[ip + 9]!;
    const l4 = ip + ihl;
    const isTcp = proto === 6;
    const isUdp = proto === 17;
    const ckAt = isTcp ? l4 + 16 : isUdp ? l4 + 6 : -1;
    const ckPresent = ckAt >= 0 && ckAt + 2 <= end;
    const udpZero = isUdp && ckPresent && u16(b, ckAt) === 0;
    // 3. addresses
    const src = u32(b, ip + 12);
    const dst = u32(b, ip + 16);
    const portsPresent = (isTcp && l4 + 20 <= end) || (isUdp && l4 + 8 <= end);
    // our exact NAT rules look at the ports as captured
    const sport0 = portsPresent ? u16(b, l4) : -1;
    const dport0 = portsPresent ? u16(b, l4 + 2) : -1;
    let nsrc = src, ndst = dst, natSport = -1, natDport = -1;
    const dnat = this.rules.dnat;
    for (let i = 0; i < dnat.length; i++) {
      const r = dnat[i]!;
      if (ndst === r.matchAddr && (r.matchPort === null || (portsPresent && dport0 === r.matchPort))) {
        ndst = r.toAddr;
        if (r.toPort !== null && portsPresent) natDport = r.toPort;
        break;
      }
    }
    const snat = this.rules.snat;
    for (let i = 0; i < snat.length; i++) {
      const r = snat[i]!;
      if (nsrc === r.matchAddr && (r.matchPort === null || (portsPresent && sport0 === r.matchPort))) {
        nsrc = r.toAddr;
        if (r.toPort !== null && portsPresent) natSport = r.toPort;
        break;
      }
    }
    ndst = firstMap(this.maps.dst, ndst);
    nsrc = firstMap(this.maps.src, nsrc);
    put32(b, ip + 12, nsrc);
    put32(b, ip + 16, ndst);
    // a multicast address (after the rewrite) sets the first three bytes of its MAC to 01:00:5e, the
    // other three stay as they were (source too)
    if (ndst >>> 28 === 0xe) {
      put16(b, start, 0x0100);
      put8(b, start + 2, 0x5e);
    }
    if (nsrc >>> 28 === 0xe) {
      put16(b, start + 6, 0x0100);
      put8(b, start + 8, 0x5e);
    }
    // ports are read after the addresses are written (with IHL < 5 they overlap, as in tcprewrite)
    const sport = portsPresent ? u16(b, l4) : -1;
    const dport = portsPresent ? u16(b, l4 + 2) : -1;
    let nsport = sport, ndport = dport;
    if (portsPresent) {
      if (natSport >= 0) nsport = natSport;
      if (natDport >= 0) ndport = natDport;
      if (this.rules.portmap.length > 0) {
        nsport = mapPort(this.rules.portmap, nsport);
        ndport = mapPort(this.rules.portmap, ndport);
      }
      put16(b, l4, nsport);
      put16(b, l4 + 2, ndport);
    }
    // 4. checksums
    if (whole && total >= ihl && ip + total <= end) {
      const l4len = total - ihl;
      if (isTcp || (isUdp && !udpZero)) {
        if (ckPresent) {
          let s = sumFast(b, w, l4, ip + total) - (ckAt + 2 <= ip + total ? u16(b, ckAt) : 0);
          s = sum16(b, ip + 12, ip + 20, s) + proto + l4len;
          put16(b, ckAt, ~fold(s) & 0xffff);
        }
      } else if (proto === 1 && l4len >= ICMP_MIN_RECOMPUTE) {
        put16(b, l4 + 2, ~fold(sum16(b, l4, ip + total) - u16(b, l4 + 2)) & 0xffff);
      }
    } else if (ckPresent && !udpZero) {
      let ck = u16(b, ckAt);
      if (firstPart) {
        ck = csumReplace32(ck, src, nsrc);
        ck = csumReplace32(ck, dst, ndst);
      }
      if (portsPresent) {
        ck = csumReplace16(ck, sport, nsport);
        ck = csumReplace16(ck, dport, ndport);
      }
      put16(b, ckAt, ck);
    }
    if (ihl >= 12) put16(b, ip + 10, ~fold(sumFast(b, w, ip, ip + ihl) - u16(b, ip + 10)) & 0xffff);
    else put16(b, ip + 10, ~fold(sum16(b, ip, ip + ihl)) & 0xffff);
  }

  private ipv6(b: Uint8Array, start: number, ip: number, end: number, origLen: number, l2len: number): void {
    if (ip + 40 > end) return;
    // tcprewrite sets a MAC to 33:33:xx:xx:xx:xx when its IPv6 address is NOT multicast (inverted test)
    if (b[ip + 24] !== 0xff) {
      put16(b, start, 0x3333);
      put32(b, start + 2, u32(b, ip + 36));
    }
    if (b[ip + 8] !== 0xff) {
      put16(b, start + 6, 0x3333);
      put32(b, start + 8, u32(b, ip + 20));
    }
    // payload length follows the frame length, as IPv4's total length does
    let payload = u16(b, ip + 4);
    let lengthFixed = false;
    if (payload !== origLen - l2len - 40) {
      lengthFixed = true;
      payload = (origLen - l2len - 40) & 0xffff;
      put16(b, ip + 4, payload);
    }
    const next = b[ip + 6]!;
    const l4 = ip + 40;
    const isTcp = next === 6;
    const isUdp = next === 17;
    if (!isTcp && !isUdp) return;
    const portsPresent = (isTcp && l4 + 20 <= end) || (isUdp && l4 + 8 <= end);
    if (!portsPresent) return;
    const sport = u16(b, l4);
    const dport = u16(b, l4 + 2);
    const nsport = mapPort(this.rules.portmap, sport);
    const ndport = mapPort(this.rules.portmap, dport);
    put16(b, l4, nsport);
    put16(b, l4 + 2, ndport);
    const ckAt = isTcp ? l4 + 16 : l4 + 6;
    if (isUdp && u16(b, ckAt) === 0) return;
    // unlike IPv4, a full recompute happens only when the payload length had to be fixed
    if ((lengthFixed || this.rules.fixcsum) && end - start === origLen && ip + 40 + payload <= end) {
      let s = sum16(b, l4, l4 + payload) - u16(b, ckAt);
      s = sum16(b, ip + 8, ip + 40, s) + next + payload;
      put16(b, ckAt, ~fold(s) & 0xffff);
      return;
    }
    let ck = u16(b, ckAt);
    ck = csumReplace16(ck, sport, nsport);
    ck = csumReplace16(ck, dport, ndport);
    put16(b, ckAt, ck);
  }

  private arpPacket(b: Uint8Array, arp: number, end: number): void {
    if (arp + 8 > end) return;
    const op = u16(b, arp + 6);
    if (u16(b, arp + 2) !== ETHERTYPE_IPV4 || (op !== 1 && op !== 2)) return;
    const hln = b[arp + 4]!;
    const pln = b[arp + 5]!;
    const sender = arp + 8 + hln;
    const target = sender + pln + hln;
    if (pln !== 4 || target + 4 > end) return;
    put32(b, target, firstMap(this.maps.dst, u32(b, target)));
    put32(b, sender, firstMap(this.maps.src, u32(b, sender)));
  }
}
