// A batch of captured packets: one Buffer plus parallel typed arrays, reused from batch to batch so that
// reading a capture allocates nothing per packet. Packet i is data[offset[i] .. offset[i] + capLen[i]).
//
// Invariant: a batch (and the Buffer it points into) is valid only until the reader is asked for the next
// batch; copy what must outlive it.

export type ByteOrder = 'le' | 'be';
export type TimestampPrecision = 'us' | 'ns';

/** How the records of a classic pcap batch are laid out, so a writer of the same format can copy spans. */
export interface ClassicRecordFormat {
  readonly byteOrder: ByteOrder;
  readonly precision: TimestampPrecision;
}

/**
 * A reader buffer that a writer may write from directly (no copy): the reader does not overwrite it while
 * it is pinned. The async CaptureReader sets PacketBatch.lease; PcapWriter pins it until the bytes are
 * written.
 */
export class BufferLease {
  pins = 0;
  constructor(readonly buf: Buffer) {}
}

export class PacketBatch {
  count = 0;
  data: Buffer = Buffer.alloc(0);
  /** Start of each packet's bytes in `data`. */
  readonly offset: Uint32Array;
  readonly capLen: Uint32Array;
  readonly origLen: Uint32Array;
  /** Timestamp seconds (a float64 so pcapng's 64-bit timestamps fit). */
  readonly tsSec: Float64Array;
  /** Nanoseconds within the second (a µs file gives multiples of 1000; kept exact even when out of range). */
  readonly tsNsec: Float64Array;
  readonly linkType: Uint16Array;
  /** Offset of the IPv4 header from the packet start, or -1 when the packet is not IPv4. */
  readonly ipOffset: Int32Array;
  /** pcapng interface id (0 for classic pcap). */
  readonly interfaceId: Uint32Array;
  /** Bytes of `data` covering this batch's records including their headers: [spanStart, spanEnd). */
  spanStart = 0;
  spanEnd = 0;
  /** File offset of data[spanStart]. */
  fileOffset = 0;
  /** Set when the span holds back-to-back classic pcap records (16-byte header + packet) in this format. */
  classic: ClassicRecordFormat | null = null;
  /** The reader buffer `data` is, when a writer may write the span from it directly (async reader). */
  lease: BufferLease | null = null;

  constructor(readonly capacity: number) {
    this.offset = new Uint32Array(capacity);
    this.capLen = new Uint32Array(capacity);
    this.origLen = new Uint32Array(capacity);
    this.tsSec = new Float64Array(capacity);
    this.tsNsec = new Float64Array(capacity);
    this.linkType = new Uint16Array(capacity);
    this.ipOffset = new Int32Array(capacity);
    this.interfaceId = new Uint32Array(capacity);
  }

  /** The bytes of packet i (a view, not a copy). */
  packet(i: number): Buffer {
    const o = this.offset[i]!;
    return this.data.subarray(o, o + this.capLen[i]!);
  }

  /** Timestamp of packet i in nanoseconds since the epoch. */
  timestampNs(i: number): bigint {
    return BigInt(this.tsSec[i]!) * 1_000_000_000n + BigInt(this.tsNsec[i]!);
  }
}

/** One packet as a standalone object: for tests, tools and small files, not for the hot path. */
export interface CapturedPacket {
  readonly data: Buffer;
  readonly origLen: number;
  readonly tsSec: number;
  readonly tsNsec: number;
  readonly linkType: number;
  readonly ipOffset: number;
  readonly interfaceId: number;
}

export function copyPacket(batch: PacketBatch, i: number): CapturedPacket {
  return {
    data: Buffer.from(batch.packet(i)),
    origLen: batch.origLen[i]!,
    tsSec: batch.tsSec[i]!,
    tsNsec: batch.tsNsec[i]!,
    linkType: batch.linkType[i]!,
    ipOffset: batch.ipOffset[i]!,
    interfaceId: batch.interfaceId[i]!,
  };
}
