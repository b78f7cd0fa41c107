// The fast path's algorithm in plain TypeScript, for comparison with the WebAssembly firmware on the
// same packets: the fixed-hit path with the same per-packet work as assembly/batch.ts — header checks
// against the captured length (version, IHL, total length, fragments, TCP data offset), the TCP flags
// as interest bits, the affinity key looked up in an open-addressing table (linear probing, typed
// arrays, no objects per packet) with the expiry check, the interest check, first-data tracking, per-
// affinity packet/byte counters, global counters kept per batch, DNAT with RFC 1624 incremental
// checksum updates, and a descriptor written per packet (verdict, next hop, affinity slot, flags).

export const VERDICT_FORWARD = 1;
export const VERDICT_MISS = 2;
export const VERDICT_DROP = 5;
export const VERDICT_TO_MANAGER = 2;

// Entry words: saddr, daddr, ports, proto | live << 8 | firstData << 9, natAddr, natPort, packets,
// expiry (ms, serial), interest mask.
const WORDS = 9;
const LIVE = 0x100;
const FIRST_DATA = 0x200;
const BIT_DATA = 1 << 6;
const BIT_FIRST_DATA = 1 << 7;
const BIT_FRAGMENT = 1 << 8;
const BIT_ALL = 1 << 15;

/** Descriptor outputs, as the firmware writes them (struct of arrays here). */
export class Descriptors {
  readonly verdict: Uint8Array;
  readonly flags: Uint16Array;
  readonly nextHop: Uint32Array;
  readonly slot: Uint32Array;
  readonly interest: Uint16Array;
  constructor(n: number) {
    this.verdict = new Uint8Array(n);
    this.flags = new Uint16Array(n);
    this.nextHop = new Uint32Array(n);
    this.slot = new Uint32Array(n);
    this.interest = new Uint16Array(n);
  }
}

export class BaselineFastPath {
  private readonly table: Uint32Array;
  private readonly bytes: Float64Array;
  private readonly mask: number;
  /** Global counters: packets, bytes, fixed hits, forwarded, NAT applied, misses, malformed. */
  readonly counters = new Float64Array(7);
  size = 0;

  constructor(capacity: number) {
    let cap = 1;
    while (cap < capacity) cap <<= 1;
    this.mask = cap - 1;
    this.table = new Uint32Array(cap * WORDS);
    this.bytes = new Float64Array(cap);
  }

  install(saddr: number, daddr: number, sport: number, dport: number, proto: number, natAddr: number, natPort: number, expiry = 0x7fffffff, interestMask = 0): boolean {
    const ports = ((sport << 16) | dport) >>> 0;
    let i = hash(saddr, daddr, ports, proto) & this.mask;
    for (let probes = 0; probes <= this.mask; probes++, i = (i + 1) & this.mask) {
      const o = i * WORDS;
      const t = this.table;
      const live = t[o + 3]! & LIVE;
      const same = live && t[o] === saddr >>> 0 && t[o + 1] === daddr >>> 0 && t[o + 2] === ports && (t[o + 3]! & 0xff) === proto;
      if (same || !live) {
        t[o] = saddr >>> 0;
        t[o + 1] = daddr >>> 0;
        t[o + 2] = ports;
        t[o + 3] = proto | LIVE;
        t[o + 4] = natAddr >>> 0;
        t[o + 5] = natPort;
        t[o + 7] = expiry >>> 0;
        t[o + 8] = interestMask;
        if (!same) {
          t[o + 6] = 0;
          this.bytes[i] = 0;
          this.size++;
        }
        return true;
      }
    }
    return false;
  }

  /** Processes `count` packets at offsets[i] / lengths[i] of `buf`; descriptors out. */
  process(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, out: Descriptors, count: number, now: number): void {
    const t = this.table;
    const mask = this.mask;
    let packets = 0;
    let bytes = 0;
    let hits = 0;
    let forwarded = 0;
    let nat = 0;
    let misses = 0;
    let malformed = 0;
    for (let p = 0; p < count; p++) {
      out.flags[p] = 0;
      out.interest[p] = 0;
      out.nextHop[p] = 0;
      const off = offsets[p]!;
      const cap = lengths[p]!;
      packets++;
      if (cap < 20 || buf[off]! >> 4 !== 4) {
        out.verdict[p] = VERDICT_DROP;
        malformed++;
        continue;
      }
      const ihl = (buf[off]! & 15) << 2;
      const total = (buf[off + 2]! << 8) | buf[off + 3]!;
      bytes += total;
      if (ihl < 20 || total > cap || total < ihl) {
        out.verdict[p] = VERDICT_DROP;
        malformed++;
        continue;
      }
      const proto = buf[off + 9]!;
      const frag = ((buf[off + 6]! & 0x3f) << 8) | buf[off + 7]!;
      const saddr = rd32(buf, off + 12);
      const daddr = rd32(buf, off + 16);
      const l4 = off + ihl;
      let ports = 0;
      let bits = BIT_ALL;
      let doff = 0;
      if (frag !== 0) bits |= BIT_FRAGMENT;
      if ((frag & 0x1fff) === 0 && (proto === 6 || proto === 17)) {
        if (total < ihl + (proto === 6 ? 20 : 8)) {
          out.verdict[p] = VERDICT_DROP;
          malformed++;
          continue;
        }
        ports = rd32(buf, l4);
        if (proto === 6) {
          doff = (buf[l4 + 12]! >> 4) << 2;
          if (doff < 20 || ihl + doff > total) {
            out.verdict[p] = VERDICT_DROP;
            malformed++;
            continue;
          }
          bits |= buf[l4 + 13]! & 0x3f;
          if (total > ihl + doff) bits |= BIT_DATA;
        } else if (total > ihl + 8) bits |= BIT_DATA;
      }
      let i = hash(saddr, daddr, ports, proto) & mask;
      let hit = -1;
      for (;;) {
        const o = i * WORDS;
        const meta = t[o + 3]!;
        if (!(meta & LIVE)) break;
        if (t[o] === saddr && t[o + 1] === daddr && t[o + 2] === ports && (meta & 0xff) === proto) {
          if ((((t[o + 7]! - now) | 0) > 0)) hit = o;
          break;
        }
        i = (i + 1) & mask;
      }
      if (hit < 0) {
        out.verdict[p] = VERDICT_MISS;
        misses++;
        continue;
      }
      hits++;
      if (bits & BIT_DATA && !(t[hit + 3]! & FIRST_DATA)) {
        bits |= BIT_FIRST_DATA;
        t[hit + 3] = t[hit + 3]! | FIRST_DATA;
      }
      out.slot[p] = i;
      out.flags[p] = 2; // fixed hit
      const matched = bits & t[hit + 8]!;
      if (matched !== 0) {
        out.interest[p] = matched;
        out.verdict[p] = VERDICT_TO_MANAGER;
        continue;
      }
      t[hit + 6] = (t[hit + 6]! + 1) >>> 0;
      this.bytes[i] = this.bytes[i]! + total;
      const newAddr = t[hit + 4]!;
      const newPort = t[hit + 5]!;
      // RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for the address words in the IP header and the
      // pseudo-header, and the port word in the L4 header.
      const oldHi = daddr >>> 16;
      const oldLo = daddr & 0xffff;
      const newHi = newAddr >>> 16;
      const newLo = newAddr & 0xffff;
      const ipSum = (~rd16(buf, off + 10) & 0xffff) + (~oldHi & 0xffff) + (~oldLo & 0xffff) + newHi + newLo;
      wr16(buf, off + 10, ~fold(ipSum) & 0xffff);
      if ((frag & 0x1fff) === 0 && (proto === 6 || proto === 17)) {
        const csumOff = proto === 6 ? l4 + 16 : l4 + 6;
        const oldPort = ports & 0xffff;
        const l4old = rd16(buf, csumOff);
        if (proto === 6 || l4old !== 0) {
          let s = (~l4old & 0xffff) + (~oldHi & 0xffff) + (~oldLo & 0xffff) + newHi + newLo + (~oldPort & 0xffff) + newPort;
          s = ~fold(s) & 0xffff;
          wr16(buf, csumOff, proto === 17 && s === 0 ? 0xffff : s);
        }
        wr16(buf, l4 + 2, newPort);
      }
      wr32(buf, off + 16, newAddr);
      nat++;
      forwarded++;
      out.flags[p] = 2 | 8; // fixed hit, rewritten
      out.nextHop[p] = newAddr;
      out.verdict[p] = VERDICT_FORWARD;
    }
    const c = this.counters;
    c[0] = c[0]! + packets;
    c[1] = c[1]! + bytes;
    c[2] = c[2]! + hits;
    c[3] = c[3]! + forwarded;
    c[4] = c[4]! + nat;
    c[5] = c[5]! + misses;
    c[6] = c[6]! + malformed;
  }
}

function hash(a: number, b: number, c: number, d: number): number {
  let h = Math.imul(a ^ 0x9e3779b9, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ b, 0xc2b2ae35);
  h = Math.imul(h ^ (h >>> 16) ^ c, 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13) ^ d, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
function fold(s: number): number {
  s = (s & 0xffff) + (s >>> 16);
  return (s & 0xffff) + (s >>> 16);
}
function rd16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}
function rd32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}
function wr16(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 8;
  b[o + 1] = v;
}
function wr32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = v >>> 16;
  b[o + 2] = v >>> 8;
  b[o + 3] = v;
}
