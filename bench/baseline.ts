// The fast path's algorithm in plain TypeScript, for comparison with the WebAssembly firmware on
// the same packets: parse IPv4/TCP/UDP with one length check, look the affinity key up in an
// open-addressing table (linear probing, typed arrays, no objects per packet), apply DNAT with
// RFC 1624 incremental checksum updates, write a verdict per packet. No manager, no wildcards:
// this is the fixed-hit path the `fixed-hit-*` rows measure.

export const VERDICT_FORWARD = 1;
export const VERDICT_MISS = 2;
export const VERDICT_DROP = 3;

const WORDS = 8; // saddr, daddr, ports, proto|live, natAddr, natPort, packets, bytes

export class BaselineFastPath {
  private readonly table: Uint32Array;
  private readonly mask: number;
  size = 0;

  constructor(capacity: number) {
    let cap = 1;
    while (cap < capacity) cap <<= 1;
    this.mask = cap - 1;
    this.table = new Uint32Array(cap * WORDS);
  }

  install(saddr: number, daddr: number, sport: number, dport: number, proto: number, natAddr: number, natPort: number): boolean {
    const ports = ((sport << 16) | dport) >>> 0;
    let i = hash(saddr, daddr, ports, proto) & this.mask;
    for (let probes = 0; probes <= this.mask; probes++, i = (i + 1) & this.mask) {
      const o = i * WORDS;
      const t = this.table;
      const live = t[o + 3]! & 0x100;
      if (live && t[o] === saddr >>> 0 && t[o + 1] === daddr >>> 0 && t[o + 2] === ports && (t[o + 3]! & 0xff) === proto) {
        t[o + 4] = natAddr >>> 0;
        t[o + 5] = natPort;
        return true;
      }
      if (!live) {
        t[o] = saddr >>> 0;
        t[o + 1] = daddr >>> 0;
        t[o + 2] = ports;
        t[o + 3] = proto | 0x100;
        t[o + 4] = natAddr >>> 0;
        t[o + 5] = natPort;
        t[o + 6] = 0;
        t[o + 7] = 0;
        this.size++;
        return true;
      }
    }
    return false;
  }

  /** Processes `count` packets laid out at offsets[i] with lengths[i] in `buf`; verdicts[i] out. */
  process(buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, verdicts: Uint8Array, count: number): void {
    const t = this.table;
    const mask = this.mask;
    for (let p = 0; p < count; p++) {
      const off = offsets[p]!;
      const cap = lengths[p]!;
      if (cap < 20 || buf[off]! >> 4 !== 4) {
        verdicts[p] = VERDICT_DROP;
        continue;
      }
      const ihl = (buf[off]! & 15) << 2;
      const total = (buf[off + 2]! << 8) | buf[off + 3]!;
      const proto = buf[off + 9]!;
      if (ihl < 20 || total > cap || total < ihl + 8 || (proto !== 6 && proto !== 17)) {
        verdicts[p] = VERDICT_DROP;
        continue;
      }
      const saddr = rd32(buf, off + 12);
      const daddr = rd32(buf, off + 16);
      const l4 = off + ihl;
      const ports = rd32(buf, l4);
      let i = hash(saddr, daddr, ports, proto) & mask;
      let hit = -1;
      for (;;) {
        const o = i * WORDS;
        const meta = t[o + 3]!;
        if (!(meta & 0x100)) break;
        if (t[o] === saddr && t[o + 1] === daddr && t[o + 2] === ports && (meta & 0xff) === proto) {
          hit = o;
          break;
        }
        i = (i + 1) & mask;
      }
      if (hit < 0) {
        verdicts[p] = VERDICT_MISS;
        continue;
      }
      t[hit + 6] = (t[hit + 6]! + 1) >>> 0;
      t[hit + 7] = (t[hit + 7]! + total) >>> 0;
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
      const csumOff = proto === 6 ? l4 + 16 : l4 + 6;
      const oldPort = ports & 0xffff;
      const l4old = rd16(buf, csumOff);
      if (proto === 6 || l4old !== 0) {
        let s = (~l4old & 0xffff) + (~oldHi & 0xffff) + (~oldLo & 0xffff) + newHi + newLo + (~oldPort & 0xffff) + newPort;
        s = ~fold(s) & 0xffff;
        wr16(buf, csumOff, proto === 17 && s === 0 ? 0xffff : s);
      }
      wr32(buf, off + 16, newAddr);
      wr16(buf, l4 + 2, newPort);
      verdicts[p] = VERDICT_FORWARD;
    }
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
