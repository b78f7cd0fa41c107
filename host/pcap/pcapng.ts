// A small pcapng encoder: section headers in either byte order, interface descriptions with if_tsresol
// and if_tsoffset, enhanced and simple packet blocks, and arbitrary other blocks. It builds files in
// memory; the load balancer writes classic pcap, this exists for fixtures, tests and tools.

import type { ByteOrder } from './batch.ts';

export interface PcapngInterface {
  linkType: number;
  snaplen?: number;
  /** Raw if_tsresol byte: 6 → µs (default), 9 → ns, 0x80 | n → 2^-n. */
  tsresol?: number;
  tsOffsetSec?: number;
}

export class PcapngBuilder {
  private readonly parts: Buffer[] = [];
  private le = true;

  /** Starts a section; interfaces declared before it are forgotten (ids restart at 0). */
  section(byteOrder: ByteOrder = 'le'): this {
    this.le = byteOrder === 'le';
    const body = Buffer.alloc(16);
    this.w32(body, 0, 0x1a2b3c4d);
    this.w16(body, 4, 1);
    this.w16(body, 6, 0);
    // section length -1: unknown
    body.fill(0xff, 8, 16);
    return this.block(0x0a0d0d0a, body);
  }

  interface(i: PcapngInterface): this {
    const opts: Buffer[] = [];
    if (i.tsresol !== undefined) opts.push(this.option(9, Buffer.from([i.tsresol])));
    if (i.tsOffsetSec !== undefined) {
      const v = Buffer.alloc(8);
      if (this.le) v.writeBigInt64LE(BigInt(i.tsOffsetSec));
      else v.writeBigInt64BE(BigInt(i.tsOffsetSec));
      opts.push(this.option(14, v));
    }
    if (opts.length > 0) opts.push(Buffer.alloc(4)); // opt_endofopt
    const head = Buffer.alloc(8);
    this.w16(head, 0, i.linkType);
    this.w32(head, 4, i.snaplen ?? 262144);
    return this.block(1, Buffer.concat([head, ...opts]));
  }

  /** An enhanced packet block; `timestamp` is in the interface's units. */
  packet(interfaceId: number, timestamp: bigint, data: Uint8Array, origLen = data.length): this {
    const head = Buffer.alloc(20);
    this.w32(head, 0, interfaceId);
    this.w32(head, 4, Number(timestamp >> 32n));
    this.w32(head, 8, Number(timestamp & 0xffffffffn));
    this.w32(head, 12, data.length);
    this.w32(head, 16, origLen);
    return this.block(6, Buffer.concat([head, pad4(data)]));
  }

  simplePacket(data: Uint8Array, origLen = data.length): this {
    const head = Buffer.alloc(4);
    this.w32(head, 0, origLen);
    return this.block(3, Buffer.concat([head, pad4(data)]));
  }

  /** Any block, e.g. a name resolution block (4) or a custom one, to check that readers skip it. */
  block(type: number, body: Uint8Array): this {
    const padded = pad4(body);
    const len = 12 + padded.length;
    const b = Buffer.alloc(len);
    this.w32(b, 0, type);
    this.w32(b, 4, len);
    b.set(padded, 8);
    this.w32(b, len - 4, len);
    this.parts.push(b);
    return this;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.parts);
  }

  private option(code: number, value: Uint8Array): Buffer {
    const h = Buffer.alloc(4);
    this.w16(h, 0, code);
    this.w16(h, 2, value.length);
    return Buffer.concat([h, pad4(value)]);
  }
  private w32(b: Buffer, o: number, v: number): void {
    if (this.le) b.writeUInt32LE(v >>> 0, o);
    else b.writeUInt32BE(v >>> 0, o);
  }
  private w16(b: Buffer, o: number, v: number): void {
    if (this.le) b.writeUInt16LE(v, o);
    else b.writeUInt16BE(v, o);
  }
}

function pad4(b: Uint8Array): Buffer {
  const n = (b.length + 3) & ~3;
  const out = Buffer.alloc(n);
  out.set(b);
  return out;
}
