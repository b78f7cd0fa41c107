// The record parser: turns bytes of a classic pcap or pcapng file into PacketBatch entries. It works on a
// window buf[pos, end) of the file and never reads past `end`; when the next record is not complete in the
// window it stops and says how many bytes it needs (`need`), and the reader brings more. Errors found after
// some packets were parsed are kept in `error` so those packets are delivered first.

import type { ByteOrder, PacketBatch, TimestampPrecision } from './batch.ts';
import { PcapError } from './errors.ts';
import { LINKTYPE_ETHERNET, ipv4Offset } from './linktype.ts';

export const CLASSIC_HEADER_LEN = 24;
export const CLASSIC_RECORD_HEADER_LEN = 16;
/** libpcap's limit for a record (MAXIMUM_SNAPLEN); a larger caplen in a file is corruption. */
export const MAX_SNAPLEN = 262_144;
/** Largest pcapng block we accept (libpcap uses 16 MiB as well). */
export const MAX_BLOCK_LEN = 16 * 1024 * 1024;

const MAGIC_US = 0xa1b2c3d4;
const MAGIC_NS = 0xa1b23c4d;
const MAGIC_US_SWAPPED = 0xd4c3b2a1;
const MAGIC_NS_SWAPPED = 0x4d3cb2a1;
const MAGIC_MODIFIED = 0xa1b2cd34;
const MAGIC_MODIFIED_SWAPPED = 0x34cdb2a1;

const BT_SHB = 0x0a0d0d0a;
const BT_IDB = 0x00000001;
const BT_PB = 0x00000002; // obsolete packet block
const BT_SPB = 0x00000003;
const BT_EPB = 0x00000006;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;
const OPT_IF_TSRESOL = 9;
const OPT_IF_TSOFFSET = 14;

export type CaptureFormat = 'pcap' | 'pcapng';

export interface InterfaceInfo {
  readonly linkType: number;
  readonly snaplen: number;
  /** if_tsresol: units per second are 10^exp (decimal) or 2^exp (binary). Default 10^6. */
  readonly tsresolDecimal: boolean;
  readonly tsresolExp: number;
  /** if_tsoffset, seconds added to every timestamp. */
  readonly tsOffsetSec: number;
}

export interface CaptureInfo {
  readonly format: CaptureFormat;
  /** Byte order of the (first) section. */
  readonly byteOrder: ByteOrder;
  /** Classic pcap: the file's precision. pcapng: 'ns' (timestamps are converted). */
  readonly precision: TimestampPrecision;
  readonly versionMajor: number;
  readonly versionMinor: number;
  /** Classic: header snaplen. pcapng: the first interface's (0 until one is seen). */
  readonly snaplen: number;
  /** Classic: header link type. pcapng: the first interface's (-1 until one is seen). */
  readonly linkType: number;
  /** Classic: the raw thiszone / sigfigs header fields (0 for pcapng). */
  readonly thiszone: number;
  readonly sigfigs: number;
  /** pcapng: interfaces of the current section (classic: one). */
  readonly interfaces: readonly InterfaceInfo[];
}

const u32le = (b: Uint8Array, p: number): number =>
  (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24)) >>> 0;
const u32be = (b: Uint8Array, p: number): number =>
  ((b[p]! << 24) | (b[p + 1]! << 16) | (b[p + 2]! << 8) | b[p + 3]!) >>> 0;
const u16le = (b: Uint8Array, p: number): number => b[p]! | (b[p + 1]! << 8);
const u16be = (b: Uint8Array, p: number): number => (b[p]! << 8) | b[p + 1]!;

const POW10 = [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/** Detects the format from the first 4 bytes; throws BAD_MAGIC / UNSUPPORTED. */
export function detectFormat(b: Uint8Array, path?: string): CaptureFormat {
  if (b.length < 4) throw new PcapError('TRUNCATED', 'file too short for a capture header', 0, path);
  const m = u32le(b, 0);
  if (m === MAGIC_US || m === MAGIC_NS || m === MAGIC_US_SWAPPED || m === MAGIC_NS_SWAPPED) return 'pcap';
  if (m === BT_SHB) return 'pcapng';
  if (m === MAGIC_MODIFIED || m === MAGIC_MODIFIED_SWAPPED)
    throw new PcapError('UNSUPPORTED', 'modified (Kuznetzov) pcap format is not supported', 0, path);
  throw new PcapError('BAD_MAGIC', `not a pcap or pcapng file (magic 0x${m.toString(16).padStart(8, '0')})`, 0, path);
}

interface MutableInterface {
  linkType: number;
  snaplen: number;
  tsresolDecimal: boolean;
  tsresolExp: number;
  tsOffsetSec: number;
}

export class CaptureParser {
  format: CaptureFormat = 'pcap';
  le = true;
  precision: TimestampPrecision = 'us';
  versionMajor = 0;
  versionMinor = 0;
  snaplen = 0;
  linkType = -1;
  thiszone = 0;
  sigfigs = 0;
  firstByteOrder: ByteOrder = 'le';
  private interfaces: MutableInterface[] = [];
  private sawSection = false;
  /** Bytes needed from `pos` to make progress (set when fill stops short). */
  need = 0;
  /** An error found after the packets already put into the batch. */
  error: PcapError | null = null;

  constructor(readonly path?: string) {}

  info(): CaptureInfo {
    return {
      format: this.format,
      byteOrder: this.firstByteOrder,
      precision: this.precision,
      versionMajor: this.versionMajor,
      versionMinor: this.versionMinor,
      snaplen: this.snaplen,
      linkType: this.linkType,
      thiszone: this.thiszone,
      sigfigs: this.sigfigs,
      interfaces: this.interfaces.map((i) => ({ ...i })),
    };
  }

  /**
   * Parses the file header at buf[0..end). Returns the bytes consumed, or -1 when more bytes are needed.
   * For pcapng nothing is consumed here (section headers are blocks handled by fill()).
   */
  start(buf: Uint8Array, end: number): number {
    this.format = detectFormat(buf.subarray(0, end), this.path);
    if (this.format === 'pcapng') return 0;
    if (end < CLASSIC_HEADER_LEN) return -1;
    const m = u32le(buf, 0);
    this.le = m === MAGIC_US || m === MAGIC_NS;
    this.precision = m === MAGIC_NS || m === MAGIC_NS_SWAPPED ? 'ns' : 'us';
    this.firstByteOrder = this.le ? 'le' : 'be';
    const u16 = this.le ? u16le : u16be;
    const u32 = this.le ? u32le : u32be;
    this.versionMajor = u16(buf, 4);
    this.versionMinor = u16(buf, 6);
    this.thiszone = u32(buf, 8) | 0;
    this.sigfigs = u32(buf, 12);
    this.snaplen = u32(buf, 16);
    this.linkType = u32(buf, 20) & 0x03ffffff; // the upper bits carry FCS information
    this.interfaces = [
      { linkType: this.linkType, snaplen: this.snaplen, tsresolDecimal: true, tsresolExp: this.precision === 'ns' ? 9 : 6, tsOffsetSec: 0 },
    ];
    if (this.versionMajor !== 2)
      throw new PcapError('UNSUPPORTED', `pcap version ${this.versionMajor}.${this.versionMinor} is not supported`, 0, this.path);
    return CLASSIC_HEADER_LEN;
  }

  /**
   * Fills `batch` (from its current count) with packets from buf[pos, end); `base` is the file offset of
   * buf[0]. Returns the new position. Stops when the batch holds `max` packets, when the next record is not
   * complete (then `need` > 0), or on an error (then `error` is set and the position is the bad record's).
   */
  fill(batch: PacketBatch, buf: Buffer, pos: number, end: number, base: number, max = batch.capacity): number {
    this.need = 0;
    if (batch.count === 0) {
      batch.data = buf;
      batch.spanStart = pos;
      batch.fileOffset = base + pos;
      batch.classic = this.format === 'pcap' ? { byteOrder: this.le ? 'le' : 'be', precision: this.precision } : null;
    }
    const p = this.format === 'pcap' ? this.fillClassic(batch, buf, pos, end, base, max) : this.fillNg(batch, buf, pos, end, base, max);
    batch.spanEnd = p;
    return p;
  }

  private fillClassic(batch: PacketBatch, b: Buffer, pos: number, end: number, base: number, max: number): number {
    const le = this.le;
    const nsMul = this.precision === 'ns' ? 1 : 1000;
    const maxCap = Math.max(this.snaplen, MAX_SNAPLEN);
    const linkType = this.linkType;
    const ethernet = linkType === LINKTYPE_ETHERNET;
    // one unaligned load per header field (a DataView read compiles to a single load)
    const dv = new DataView(b.buffer, b.byteOffset, b.length);
    let n = batch.count;
    const { offset, capLen, origLen, tsSec, tsNsec, ipOffset } = batch;
    while (n < max) {
      if (pos + CLASSIC_RECORD_HEADER_LEN > end) {
        this.need = CLASSIC_RECORD_HEADER_LEN;
        break;
      }
      const sec = dv.getUint32(pos, le);
      const frac = dv.getUint32(pos + 4, le);
      const cap = dv.getUint32(pos + 8, le);
      const orig = dv.getUint32(pos + 12, le);
      if (cap > maxCap) {
        this.error = new PcapError('CORRUPT', `record caplen ${cap} exceeds the maximum ${maxCap}`, base + pos, this.path);
        break;
      }
      const rec = CLASSIC_RECORD_HEADER_LEN + cap;
      if (pos + rec > end) {
        this.need = rec;
        break;
      }
      const start = pos + CLASSIC_RECORD_HEADER_LEN;
      offset[n] = start;
      capLen[n] = cap;
      origLen[n] = orig;
      tsSec[n] = sec;
      tsNsec[n] = frac * nsMul;
      // the common case inline (untagged Ethernet, IPv4 ethertype, version 4): what ipv4Offset() answers
      ipOffset[n] = ethernet && cap > 14 && dv.getUint16(start + 12) === 0x0800 && b[start + 14]! >> 4 === 4 ? 14 : ipv4Offset(linkType, b, start, cap);
      n++;
      pos += rec;
    }
    if (n > batch.count) {
      batch.linkType.fill(linkType, batch.count, n);
      batch.interfaceId.fill(0, batch.count, n);
    }
    batch.count = n;
    return pos;
  }

  private fillNg(batch: PacketBatch, b: Buffer, pos: number, end: number, base: number, max: number): number {
    let n = batch.count;
    while (true) {
      if (pos + 12 > end) {
        this.need = 12;
        break;
      }
      let type = this.le ? u32le(b, pos) : u32be(b, pos);
      if (type === BT_SHB) {
        const magic = u32le(b, pos + 8);
        if (magic === BYTE_ORDER_MAGIC) this.le = true;
        else if (magic === 0x4d3c2b1a) this.le = false;
        else {
          this.error = new PcapError('CORRUPT', `bad section header byte-order magic 0x${magic.toString(16)}`, base + pos, this.path);
          break;
        }
        type = BT_SHB;
      } else if (!this.sawSection) {
        this.error = new PcapError('CORRUPT', 'pcapng file does not start with a section header block', base + pos, this.path);
        break;
      }
      const u32 = this.le ? u32le : u32be;
      const len = u32(b, pos + 4);
      if (len < 12 || len % 4 !== 0 || len > MAX_BLOCK_LEN) {
        this.error = new PcapError('CORRUPT', `bad block length ${len}`, base + pos, this.path);
        break;
      }
      const isPacket = type === BT_EPB || type === BT_SPB || type === BT_PB;
      if (isPacket && n >= max) break;
      if (pos + len > end) {
        this.need = len;
        break;
      }
      if (u32(b, pos + len - 4) !== len) {
        this.error = new PcapError('CORRUPT', `block trailing length differs from ${len}`, base + pos, this.path);
        break;
      }
      if (isPacket) {
        if (this.packetBlock(batch, n, b, pos, len, type, base)) n++;
        else break;
      } else if (type === BT_SHB) {
        if (!this.sectionHeader(b, pos, len, base)) break;
      } else if (type === BT_IDB) {
        if (!this.interfaceBlock(b, pos, len, base)) break;
      }
      // every other block type (name resolution, statistics, custom, decryption secrets…) is skipped
      pos += len;
    }
    batch.count = n;
    return pos;
  }

  private sectionHeader(b: Uint8Array, pos: number, len: number, base: number): boolean {
    if (len < 28) {
      this.error = new PcapError('CORRUPT', `section header block too short (${len})`, base + pos, this.path);
      return false;
    }
    const u16 = this.le ? u16le : u16be;
    const major = u16(b, pos + 12);
    if (major !== 1) {
      this.error = new PcapError('UNSUPPORTED', `pcapng version ${major}.${u16(b, pos + 14)} is not supported`, base + pos, this.path);
      return false;
    }
    if (!this.sawSection) {
      this.versionMajor = major;
      this.versionMinor = u16(b, pos + 14);
      this.firstByteOrder = this.le ? 'le' : 'be';
      this.precision = 'ns';
    }
    this.sawSection = true;
    this.interfaces = []; // interface ids are per section
    return true;
  }

  private interfaceBlock(b: Uint8Array, pos: number, len: number, base: number): boolean {
    if (len < 20) {
      this.error = new PcapError('CORRUPT', `interface description block too short (${len})`, base + pos, this.path);
      return false;
    }
    const u16 = this.le ? u16le : u16be;
    const u32 = this.le ? u32le : u32be;
    const iface: MutableInterface = {
      linkType: u16(b, pos + 8),
      snaplen: u32(b, pos + 12),
      tsresolDecimal: true,
      tsresolExp: 6,
      tsOffsetSec: 0,
    };
    let o = pos + 16;
    const optEnd = pos + len - 4;
    while (o + 4 <= optEnd) {
      const code = u16(b, o);
      const olen = u16(b, o + 2);
      if (code === 0) break;
      if (o + 4 + olen > optEnd) {
        this.error = new PcapError('CORRUPT', `interface option ${code} runs past its block`, base + pos, this.path);
        return false;
      }
      if (code === OPT_IF_TSRESOL && olen >= 1) {
        const v = b[o + 4]!;
        iface.tsresolDecimal = (v & 0x80) === 0;
        iface.tsresolExp = v & 0x7f;
      } else if (code === OPT_IF_TSOFFSET && olen >= 8) {
        const hi = u32(b, this.le ? o + 8 : o + 4) | 0;
        const lo = u32(b, this.le ? o + 4 : o + 8);
        iface.tsOffsetSec = hi * 4294967296 + lo;
      }
      o += 4 + ((olen + 3) & ~3);
    }
    if (this.interfaces.length === 0 && this.linkType === -1) {
      this.linkType = iface.linkType;
      this.snaplen = iface.snaplen;
    }
    this.interfaces.push(iface);
    return true;
  }

  private packetBlock(batch: PacketBatch, n: number, b: Uint8Array, pos: number, len: number, type: number, base: number): boolean {
    const u32 = this.le ? u32le : u32be;
    let ifId: number, tsHigh: number, tsLow: number, cap: number, orig: number, dataAt: number;
    if (type === BT_EPB) {
      if (len < 32) return this.blockError('enhanced packet block too short', pos, base);
      ifId = u32(b, pos + 8);
      tsHigh = u32(b, pos + 12);
      tsLow = u32(b, pos + 16);
      cap = u32(b, pos + 20);
      orig = u32(b, pos + 24);
      dataAt = pos + 28;
      if (cap > len - 32) return this.blockError(`captured length ${cap} exceeds its block`, pos, base);
    } else if (type === BT_PB) {
      if (len < 32) return this.blockError('packet block too short', pos, base);
      ifId = (this.le ? u16le : u16be)(b, pos + 8);
      tsHigh = u32(b, pos + 12);
      tsLow = u32(b, pos + 16);
      cap = u32(b, pos + 20);
      orig = u32(b, pos + 24);
      dataAt = pos + 28;
      if (cap > len - 32) return this.blockError(`captured length ${cap} exceeds its block`, pos, base);
    } else {
      if (len < 16) return this.blockError('simple packet block too short', pos, base);
      ifId = 0;
      tsHigh = 0;
      tsLow = 0;
      orig = u32(b, pos + 8);
      dataAt = pos + 12;
      cap = Math.min(orig, len - 16);
      const i0 = this.interfaces[0];
      if (i0 !== undefined && i0.snaplen !== 0) cap = Math.min(cap, i0.snaplen);
    }
    const iface = this.interfaces[ifId];
    if (iface === undefined) return this.blockError(`packet for undeclared interface ${ifId}`, pos, base);
    batch.offset[n] = dataAt;
    batch.capLen[n] = cap;
    batch.origLen[n] = orig;
    batch.linkType[n] = iface.linkType;
    batch.interfaceId[n] = ifId;
    batch.ipOffset[n] = ipv4Offset(iface.linkType, b, dataAt, cap);
    if (type === BT_SPB) {
      batch.tsSec[n] = 0;
      batch.tsNsec[n] = 0;
    } else {
      setTimestamp(batch, n, tsHigh, tsLow, iface);
    }
    return true;
  }

  private blockError(message: string, pos: number, base: number): false {
    this.error = new PcapError('CORRUPT', message, base + pos, this.path);
    return false;
  }
}

/** Converts a pcapng 64-bit timestamp in the interface's units to seconds + nanoseconds. */
function setTimestamp(batch: PacketBatch, n: number, high: number, low: number, iface: MutableInterface): void {
  const exp = iface.tsresolExp;
  let sec: number, ns: number;
  if (iface.tsresolDecimal && exp <= 9) {
    // long division of the 64-bit value by 10^exp in base 2^16: every intermediate stays below 2^46
    const d = POW10[exp]!;
    let cur = high >>> 16;
    const q3 = Math.floor(cur / d);
    let r = cur - q3 * d;
    cur = r * 65536 + (high & 0xffff);
    const q2 = Math.floor(cur / d);
    r = cur - q2 * d;
    cur = r * 65536 + (low >>> 16);
    const q1 = Math.floor(cur / d);
    r = cur - q1 * d;
    cur = r * 65536 + (low & 0xffff);
    const q0 = Math.floor(cur / d);
    r = cur - q0 * d;
    sec = ((q3 * 65536 + q2) * 65536 + q1) * 65536 + q0;
    ns = r * POW10[9 - exp]!;
  } else if (!iface.tsresolDecimal && exp <= 32) {
    const units = 2 ** exp;
    sec = high * 2 ** (32 - exp) + Math.floor(low / units);
    const frac = low - Math.floor(low / units) * units;
    ns = Math.floor((frac / units) * 1e9);
  } else {
    const v = (BigInt(high) << 32n) | BigInt(low);
    const units = iface.tsresolDecimal ? 10n ** BigInt(exp) : 1n << BigInt(exp);
    sec = Number(v / units);
    ns = Number(((v % units) * 1_000_000_000n) / units);
  }
  batch.tsSec[n] = sec + iface.tsOffsetSec;
  batch.tsNsec[n] = ns;
}
