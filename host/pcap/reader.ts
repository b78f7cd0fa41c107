// Streaming capture readers. The file is read in large chunks into one reused Buffer; a record that spans
// two chunks is moved to the front of the buffer before the next read, and the buffer grows only for a
// record larger than itself. Memory use is bounded by the chunk size, whatever the file size.
//
//   const reader = await CaptureReader.open('in.pcap');
//   for await (const batch of reader) for (let i = 0; i < batch.count; i++) use(batch.packet(i));
//
// A batch is valid until the next one is asked for. A truncated or corrupt file throws a PcapError naming
// the byte offset, after every complete packet before it has been delivered.

import { open, type FileHandle } from 'node:fs/promises';
import { closeSync, openSync, readSync } from 'node:fs';
import { BufferLease, PacketBatch, copyPacket, type CapturedPacket } from './batch.ts';
import { PcapError } from './errors.ts';
import { CaptureParser, MAX_BLOCK_LEN, type CaptureInfo } from './parser.ts';

export interface ReadOptions {
  /** Bytes read per file read (default 4 MiB). */
  chunkSize?: number;
  /** Packets per batch (default 1024). */
  batchSize?: number;
}

const DEFAULT_CHUNK = 4 * 1024 * 1024;
const DEFAULT_BATCH = 1024;

/** The chunk/parse state shared by the async and sync readers; `read` does the I/O. */
class ChunkState {
  buf: Buffer;
  pos = 0;
  end = 0;
  /** File offset of buf[0]. */
  base = 0;
  eof = false;
  readonly batch: PacketBatch;
  readonly parser: CaptureParser;
  private failed: PcapError | null = null;

  readonly chunkSize: number;

  constructor(opts: ReadOptions, readonly path: string | undefined) {
    this.chunkSize = Math.max(opts.chunkSize ?? DEFAULT_CHUNK, 64 * 1024);
    this.buf = Buffer.allocUnsafe(this.chunkSize);
    this.batch = new PacketBatch(opts.batchSize ?? DEFAULT_BATCH);
    this.parser = new CaptureParser(path);
  }

  /** Makes room so that at least `need` bytes from pos fit, moving the unread tail to the front. */
  prepareRead(need: number): void {
    if (this.pos > 0) {
      this.buf.copyWithin(0, this.pos, this.end);
      this.base += this.pos;
      this.end -= this.pos;
      this.pos = 0;
    }
    if (need > this.buf.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.buf.length * 2));
      this.buf.copy(grown, 0, 0, this.end);
      this.buf = grown;
    }
  }

  /** After the first read(s): parse the file header. Returns false if more bytes are needed. */
  header(): boolean {
    const used = this.parser.start(this.buf, this.end);
    if (used < 0) {
      if (this.eof) throw new PcapError('TRUNCATED', 'file ends inside the file header', 0, this.path);
      return false;
    }
    this.pos = used;
    if (this.parser.format === 'pcapng') {
      // run the leading section and interface blocks so info() knows the link type
      this.batch.count = 0;
      this.pos = this.parser.fill(this.batch, this.buf, this.pos, this.end, this.base, 0);
      if (this.parser.error) {
        this.failed = this.parser.error;
        this.parser.error = null;
      }
    }
    return true;
  }

  /**
   * One parse step. Returns the batch, null at the end of the file, or a number of bytes to read before
   * calling again.
   */
  step(): PacketBatch | null | number {
    if (this.failed) throw this.failed;
    const batch = this.batch;
    batch.count = 0;
    this.pos = this.parser.fill(batch, this.buf, this.pos, this.end, this.base);
    const err = this.parser.error;
    if (err) {
      this.parser.error = null;
      this.failed = err;
      if (batch.count > 0) return batch;
      throw err;
    }
    if (batch.count > 0) return batch;
    const need = this.parser.need;
    if (this.eof) {
      if (this.pos < this.end) {
        this.failed = new PcapError(
          'TRUNCATED',
          `file ends inside a record (${this.end - this.pos} of ${need} bytes present)`,
          this.base + this.pos,
          this.path,
        );
        throw this.failed;
      }
      return null;
    }
    if (need > MAX_BLOCK_LEN + 16) throw new PcapError('CORRUPT', `record of ${need} bytes`, this.base + this.pos, this.path);
    return need;
  }
}

/** Room kept in front of a prefetched chunk for the tail of the previous one (a record cut in two). */
const TAIL_RESERVE = 320 * 1024;
/** Buffers kept for reuse; a writer holding more (it lags) makes the reader allocate, not wait. */
const POOL_MAX = 8;

export class CaptureReader implements AsyncIterable<PacketBatch> {
  /** Read-ahead: the next chunk is read into `spare` (at TAIL_RESERVE) while the current one is parsed. */
  private spare: Buffer | null = null;
  private pending: Promise<number> | null = null;
  private pendingAt = 0;
  private closed = false;
  /**
   * Every buffer the reader reads into, with its lease: a writer may pin a batch's buffer to write from it
   * directly, and a pinned buffer is never overwritten (the reader takes another one).
   */
  private readonly pool: BufferLease[] = [];

  private constructor(
    private readonly fh: FileHandle,
    private readonly st: ChunkState,
    private readonly prefetch: boolean,
  ) {}

  /** Opens a capture file and reads its header. Throws PcapError for a file that is not a capture. */
  static async open(path: string, opts: ReadOptions & { prefetch?: boolean } = {}): Promise<CaptureReader> {
    const fh = await open(path, 'r');
    const reader = new CaptureReader(fh, new ChunkState(opts, path), opts.prefetch ?? true);
    try {
      await reader.fillBuffer(24);
      while (!reader.st.header()) await reader.fillBuffer(reader.st.end + 24);
    } catch (e) {
      await reader.close();
      throw e;
    }
    return reader;
  }

  get info(): CaptureInfo {
    return this.st.parser.info();
  }

  /** The next batch, or null at the end of the file. */
  async next(): Promise<PacketBatch | null> {
    for (;;) {
      const r = this.st.step();
      if (typeof r !== 'number') {
        if (r !== null) r.lease = this.leaseOf(r.data);
        return r;
      }
      await this.fillBuffer(r);
    }
  }

  async *[Symbol.asyncIterator](): AsyncIterator<PacketBatch> {
    try {
      for (let b = await this.next(); b !== null; b = await this.next()) yield b;
    } finally {
      await this.close();
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.pending) await this.pending.catch(() => 0);
    this.pending = null;
    await this.fh.close();
  }

  private leaseOf(buf: Buffer): BufferLease {
    for (const l of this.pool) if (l.buf === buf) return l;
    const l = new BufferLease(buf);
    this.pool.push(l);
    return l;
  }

  /** A buffer of at least `size` bytes that is not the current one, the prefetch's, or pinned by a writer. */
  private freeBuffer(size: number): Buffer {
    const cur = this.st.buf, spare = this.spare;
    for (const l of this.pool) if (l.pins === 0 && l.buf !== cur && l.buf !== spare && l.buf.length >= size) return l.buf;
    // forget idle buffers beyond the pool's size (too small ones first); pinned ones stay known
    for (let i = 0; this.pool.length >= POOL_MAX && i < this.pool.length; ) {
      const l = this.pool[i]!;
      if (l.pins === 0 && l.buf !== cur && l.buf !== spare) this.pool.splice(i, 1);
      else i++;
    }
    const b = Buffer.allocUnsafe(size);
    this.pool.push(new BufferLease(b));
    return b;
  }

  /**
   * st.prepareRead(need), except that a buffer a writer has pinned is not rewritten in place: the unread
   * tail moves to a free buffer instead.
   */
  private makeRoom(need: number): void {
    const st = this.st;
    if (st.pos > 0 && this.leaseOf(st.buf).pins > 0) {
      const tail = st.end - st.pos;
      const nb = this.freeBuffer(Math.max(need, st.buf.length));
      st.buf.copy(nb, 0, st.pos, st.end);
      st.buf = nb;
      st.base += st.pos;
      st.end = tail;
      st.pos = 0;
    }
    st.prepareRead(need);
  }

  private startPrefetch(): void {
    if (!this.prefetch || this.st.eof || this.closed) return;
    const spare = (this.spare = this.freeBuffer(TAIL_RESERVE + this.st.chunkSize));
    const at = this.st.base + this.st.end;
    this.pendingAt = at;
    this.pending = this.fh.read(spare, TAIL_RESERVE, spare.length - TAIL_RESERVE, at).then((r) => r.bytesRead);
  }

  /** Makes at least `need` bytes available from st.pos (fewer only at the end of the file). */
  private async fillBuffer(need: number): Promise<void> {
    const st = this.st;
    while (this.pending !== null) {
      const n = await this.pending;
      this.pending = null;
      if (n === 0) {
        st.eof = true;
        return;
      }
      const spare = this.spare!;
      const tail = st.end - st.pos;
      if (tail <= TAIL_RESERVE) {
        // the unread tail goes just in front of the prefetched bytes, which become the current buffer
        st.buf.copy(spare, TAIL_RESERVE - tail, st.pos, st.end);
        st.buf = spare;
        st.base = this.pendingAt - TAIL_RESERVE;
        st.pos = TAIL_RESERVE - tail;
        st.end = TAIL_RESERVE + n;
      } else {
        this.makeRoom(tail + n);
        spare.copy(st.buf, st.end, TAIL_RESERVE, TAIL_RESERVE + n);
        st.end += n;
      }
      this.spare = null;
      if (st.end - st.pos >= need) {
        this.startPrefetch();
        return;
      }
      if (need > st.buf.length - st.pos) break; // a record larger than the buffer: read it directly
      this.startPrefetch();
    }
    this.makeRoom(need);
    do {
      const { bytesRead } = await this.fh.read(st.buf, st.end, st.buf.length - st.end, st.base + st.end);
      if (bytesRead === 0) {
        st.eof = true;
        return;
      }
      st.end += bytesRead;
    } while (st.end - st.pos < need);
    this.startPrefetch();
  }
}

/** Synchronous reader over a file (fs.readSync) or an in-memory Buffer; same batches as CaptureReader. */
export class CaptureReaderSync implements Iterable<PacketBatch> {
  private readonly st: ChunkState;
  private fd: number | null;

  constructor(source: string | Buffer, opts: ReadOptions = {}) {
    if (typeof source === 'string') {
      this.st = new ChunkState(opts, source);
      this.fd = openSync(source, 'r');
    } else {
      this.st = new ChunkState({ ...opts, chunkSize: 64 * 1024 }, undefined);
      this.st.buf = source; // parse in place, no copy
      this.st.end = source.length;
      this.st.eof = true;
      this.fd = null;
    }
    try {
      if (this.fd !== null) this.fillBuffer(24);
      while (!this.st.header()) this.fillBuffer(this.st.end + 24);
    } catch (e) {
      this.close();
      throw e;
    }
  }

  get info(): CaptureInfo {
    return this.st.parser.info();
  }

  next(): PacketBatch | null {
    for (;;) {
      const r = this.st.step();
      if (typeof r !== 'number') return r;
      this.fillBuffer(r);
    }
  }

  *[Symbol.iterator](): Iterator<PacketBatch> {
    try {
      for (let b = this.next(); b !== null; b = this.next()) yield b;
    } finally {
      this.close();
    }
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
    }
  }

  private fillBuffer(need: number): void {
    const st = this.st;
    if (this.fd === null) {
      st.eof = true;
      return;
    }
    st.prepareRead(need);
    do {
      const n = readSync(this.fd, st.buf, st.end, st.buf.length - st.end, st.base + st.end);
      if (n === 0) {
        st.eof = true;
        return;
      }
      st.end += n;
    } while (st.end < need);
  }
}

/** Reads a whole capture into packet objects (a copy of each packet). For tests and small files. */
export function readCapture(source: string | Buffer): { info: CaptureInfo; packets: CapturedPacket[] } {
  const reader = new CaptureReaderSync(source);
  const packets: CapturedPacket[] = [];
  try {
    for (let b = reader.next(); b !== null; b = reader.next()) for (let i = 0; i < b.count; i++) packets.push(copyPacket(b, i));
  } finally {
    reader.close();
  }
  return { info: reader.info, packets };
}
