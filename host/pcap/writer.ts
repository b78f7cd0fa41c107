// Streaming classic pcap writer. Records are encoded into a large Buffer; a full buffer is handed to an
// asynchronous file write and a free buffer takes its place, so encoding and disk I/O overlap. writeBatch()
// waits when more than two buffers are in flight, which bounds memory whatever the output size.
//
// When a batch comes from a classic pcap reader of the same byte order and precision and every packet is
// kept, its records are copied as one span (headers included): a rewrite that changes packet bytes in place
// writes every other byte exactly as read. A batch from the async CaptureReader (batch.lease set) is not
// copied at all: its span is written from the reader's buffer, which stays pinned until the write is done,
// and consecutive spans of one buffer become one write.

import { open, type FileHandle } from 'node:fs/promises';
import type { BufferLease, ByteOrder, PacketBatch, TimestampPrecision } from './batch.ts';
import { PcapError } from './errors.ts';
import { CLASSIC_HEADER_LEN, CLASSIC_RECORD_HEADER_LEN, MAX_SNAPLEN } from './parser.ts';

export interface PcapWriterOptions {
  linkType: number;
  snaplen?: number; // default 262144
  precision?: TimestampPrecision; // default 'us'
  byteOrder?: ByteOrder; // default 'le'
  versionMajor?: number; // default 2
  versionMinor?: number; // default 4
  thiszone?: number; // default 0
  sigfigs?: number; // default 0
  /** Bytes buffered per file write (default 4 MiB). */
  bufferSize?: number;
}

const DEFAULT_BUFFER = 4 * 1024 * 1024;
const SMALL_COPY = 96; // below this a byte loop beats a native copy call

/** Encodes the 24-byte classic pcap file header. */
export function encodePcapHeader(opts: PcapWriterOptions): Buffer {
  const h = Buffer.alloc(CLASSIC_HEADER_LEN);
  const le = (opts.byteOrder ?? 'le') === 'le';
  const magic = (opts.precision ?? 'us') === 'ns' ? 0xa1b23c4d : 0xa1b2c3d4;
  const w32 = (v: number, o: number): number => (le ? h.writeUInt32LE(v >>> 0, o) : h.writeUInt32BE(v >>> 0, o));
  const w16 = (v: number, o: number): number => (le ? h.writeUInt16LE(v, o) : h.writeUInt16BE(v, o));
  w32(magic, 0);
  w16(opts.versionMajor ?? 2, 4);
  w16(opts.versionMinor ?? 4, 6);
  w32(opts.thiszone ?? 0, 8);
  w32(opts.sigfigs ?? 0, 12);
  w32(opts.snaplen ?? MAX_SNAPLEN, 16);
  w32(opts.linkType, 20);
  return h;
}

/** Encodes records into a sequence of buffers; the sink decides what to do with a full one. */
class RecordEncoder {
  buf: Buffer;
  pos = 0;
  readonly le: boolean;
  readonly ns: boolean;

  constructor(
    readonly opts: PcapWriterOptions,
    size: number,
    private readonly onFull: (full: Buffer, needNext: number) => Buffer,
  ) {
    this.buf = Buffer.allocUnsafe(size);
    this.le = (opts.byteOrder ?? 'le') === 'le';
    this.ns = (opts.precision ?? 'us') === 'ns';
  }

  ensure(n: number): void {
    if (this.pos + n > this.buf.length) {
      this.buf = this.onFull(this.buf.subarray(0, this.pos), n);
      this.pos = 0;
    }
  }

  record(tsSec: number, tsNsec: number, origLen: number, src: Uint8Array, start: number, capLen: number): void {
    this.ensure(CLASSIC_RECORD_HEADER_LEN + capLen);
    const b = this.buf;
    let p = this.pos;
    const frac = this.ns ? tsNsec : Math.floor(tsNsec / 1000);
    if (this.le) {
      p = put32le(b, p, tsSec);
      p = put32le(b, p, frac);
      p = put32le(b, p, capLen);
      p = put32le(b, p, origLen);
    } else {
      p = put32be(b, p, tsSec);
      p = put32be(b, p, frac);
      p = put32be(b, p, capLen);
      p = put32be(b, p, origLen);
    }
    if (capLen <= SMALL_COPY) {
      for (let i = 0; i < capLen; i++) b[p + i] = src[start + i]!;
    } else {
      b.set(src.subarray(start, start + capLen), p);
    }
    this.pos = p + capLen;
  }

  raw(src: Uint8Array, start: number, end: number): void {
    const n = end - start;
    this.ensure(n);
    this.buf.set(src.subarray(start, end), this.pos);
    this.pos += n;
  }

  /** True when the batch's span is records in this encoder's format, to be written as they are. */
  sameFormat(batch: PacketBatch): boolean {
    const f = batch.classic;
    return f !== null && f.byteOrder === (this.le ? 'le' : 'be') && f.precision === (this.ns ? 'ns' : 'us');
  }

  batch(batch: PacketBatch, keep?: Uint8Array): number {
    if (keep === undefined && this.sameFormat(batch)) {
      this.raw(batch.data, batch.spanStart, batch.spanEnd);
      return batch.count;
    }
    const { data, offset, capLen, origLen, tsSec, tsNsec } = batch;
    let written = 0;
    for (let i = 0; i < batch.count; i++) {
      if (keep !== undefined && keep[i] === 0) continue;
      this.record(tsSec[i]!, tsNsec[i]!, origLen[i]!, data, offset[i]!, capLen[i]!);
      written++;
    }
    return written;
  }
}

function put32le(b: Uint8Array, p: number, v: number): number {
  b[p] = v;
  b[p + 1] = v >>> 8;
  b[p + 2] = v >>> 16;
  b[p + 3] = v >>> 24;
  return p + 4;
}
function put32be(b: Uint8Array, p: number, v: number): number {
  b[p] = v >>> 24;
  b[p + 1] = v >>> 16;
  b[p + 2] = v >>> 8;
  b[p + 3] = v;
  return p + 4;
}

/** A span written from a reader's buffer: queued behind the writes before it, extended while not started. */
interface DirectWrite {
  readonly lease: BufferLease;
  readonly start: number;
  end: number;
  readonly at: number;
  started: boolean;
  done: Promise<void>;
}

export class PcapWriter {
  private readonly enc: RecordEncoder;
  private chain: Promise<void> = Promise.resolve();
  private inFlight = 0;
  /** The last direct write queued, and the bytes of direct writes not yet done (bounded like buffers). */
  private lastDirect: DirectWrite | null = null;
  private readonly directs: DirectWrite[] = [];
  private directBytes = 0;
  private readonly directLimit: number;
  private readonly free: Buffer[] = [];
  private failure: unknown = null;
  private closed = false;
  private filePos = 0;
  /** Packets written so far. */
  packets = 0;

  private constructor(
    private readonly fh: FileHandle,
    readonly options: PcapWriterOptions,
    private readonly path: string,
  ) {
    const size = Math.max(options.bufferSize ?? DEFAULT_BUFFER, 64 * 1024);
    this.directLimit = 2 * size;
    this.enc = new RecordEncoder(options, size, (full, need) => this.handOff(full, need, size));
    this.enc.raw(encodePcapHeader(options), 0, CLASSIC_HEADER_LEN);
  }

  /** Creates (truncates) `path` and writes the file header. */
  static async open(path: string, options: PcapWriterOptions): Promise<PcapWriter> {
    const fh = await open(path, 'w');
    return new PcapWriter(fh, options, path);
  }

  /** Appends one record (the packet is copied into the write buffer). */
  writePacket(tsSec: number, tsNsec: number, origLen: number, src: Uint8Array, start = 0, capLen = src.length - start): void {
    this.check();
    if (start < 0 || start + capLen > src.length)
      throw new PcapError('BAD_ARGUMENT', `packet [${start}, ${start + capLen}) outside its buffer of ${src.length}`, -1, this.path);
    this.enc.record(tsSec, tsNsec, origLen, src, start, capLen);
    this.packets++;
  }

  /**
   * Appends the batch's packets (those with keep[i] !== 0 when `keep` is given); waits if I/O lags. A
   * whole batch from the async CaptureReader in this format is written from the reader's buffer: its bytes
   * must not change after this call (the reader does not reuse the buffer until they are written).
   */
  async writeBatch(batch: PacketBatch, keep?: Uint8Array): Promise<void> {
    this.check();
    const lease = batch.lease;
    if (keep === undefined && lease !== null && lease.buf === batch.data && this.enc.sameFormat(batch)) {
      if (batch.spanEnd > batch.spanStart) this.direct(lease, batch.spanStart, batch.spanEnd);
      this.packets += batch.count;
      while (this.directBytes > this.directLimit) await this.directs[0]!.done;
    } else {
      this.packets += this.enc.batch(batch, keep);
    }
    if (this.inFlight > 1) await this.chain;
    this.check();
  }

  /** Queues lease.buf[start, end) for the file, after everything before it; no copy. */
  private direct(lease: BufferLease, start: number, end: number): void {
    if (this.enc.pos > 0) {
      // what is encoded so far goes first (the file header, records of other batches)
      this.enc.buf = this.handOff(this.enc.buf.subarray(0, this.enc.pos), 0, this.enc.buf.length);
      this.enc.pos = 0;
    }
    const last = this.lastDirect;
    const len = end - start;
    if (last !== null && !last.started && last.lease === lease && last.end === start && last.at + (last.end - last.start) === this.filePos) {
      last.end = end;
      this.filePos += len;
      this.directBytes += len;
      return;
    }
    const w: DirectWrite = { lease, start, end, at: this.filePos, started: false, done: Promise.resolve() };
    this.filePos += len;
    this.directBytes += len;
    lease.pins++;
    this.lastDirect = w;
    this.directs.push(w);
    w.done = this.chain = this.chain.then(async () => {
      w.started = true;
      const total = w.end - w.start;
      try {
        if (this.failure === null) {
          let done = 0;
          while (done < total) {
            const { bytesWritten } = await this.fh.write(lease.buf, w.start + done, total - done, w.at + done);
            done += bytesWritten;
          }
        }
      } catch (e) {
        this.failure = e;
      } finally {
        lease.pins--;
        this.directBytes -= total;
        this.directs.shift();
      }
    });
  }

  /** Waits while more than two buffers are being written (call now and then between writePacket calls). */
  async drain(): Promise<void> {
    if (this.inFlight > 1) await this.chain;
    this.check();
  }

  /** Writes everything buffered so far and waits for it to reach the file. */
  async flush(): Promise<void> {
    this.check();
    if (this.enc.pos > 0) {
      this.enc.buf = this.handOff(this.enc.buf.subarray(0, this.enc.pos), 0, this.enc.buf.length);
      this.enc.pos = 0;
    }
    await this.chain;
    this.check();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush();
    } finally {
      this.closed = true;
      await this.fh.close();
    }
  }

  private check(): void {
    if (this.failure !== null) throw this.failure;
    if (this.closed) throw new PcapError('CLOSED', 'writer is closed', -1, this.path);
  }

  private handOff(full: Buffer, need: number, size: number): Buffer {
    if (full.length > 0) {
      const at = this.filePos;
      this.filePos += full.length;
      this.inFlight++;
      this.chain = this.chain.then(async () => {
        if (this.failure === null) {
          try {
            let done = 0;
            while (done < full.length) {
              const { bytesWritten } = await this.fh.write(full, done, full.length - done, at + done);
              done += bytesWritten;
            }
          } catch (e) {
            this.failure = e;
          }
        }
        this.inFlight--;
        if (full.buffer.byteLength >= size && this.free.length < 2) this.free.push(Buffer.from(full.buffer, full.byteOffset, size));
      });
    }
    if (need > size) return Buffer.allocUnsafe(need);
    return this.free.pop() ?? Buffer.allocUnsafe(size);
  }
}

/** Encodes a whole classic pcap in memory (for tests, fixtures and small generated files). */
export function encodePcap(
  options: PcapWriterOptions,
  packets: Iterable<{ data: Uint8Array; tsSec: number; tsNsec: number; origLen?: number }>,
): Buffer {
  const parts: Buffer[] = [];
  const enc = new RecordEncoder(options, 1024 * 1024, (full, need) => {
    parts.push(Buffer.from(full));
    return Buffer.allocUnsafe(Math.max(need, 1024 * 1024));
  });
  enc.raw(encodePcapHeader(options), 0, CLASSIC_HEADER_LEN);
  for (const p of packets) enc.record(p.tsSec, p.tsNsec, p.origLen ?? p.data.length, p.data, 0, p.data.length);
  parts.push(enc.buf.subarray(0, enc.pos));
  return Buffer.concat(parts);
}
