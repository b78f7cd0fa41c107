// Host wrapper of the forwarding agent firmware (build/agent.wasm).
//
// Loads the module through @assemblyscript/loader into a WebAssembly.Memory of a fixed budget
// (initial == maximum, and the module's memory import declares the same limits), calls init, and keeps
// typed views created once: the module contains no memory.grow, so the views never detach.
//
// Hot path for a batch (no allocation): write packets into `packets` (the packet region), fill
// descriptors with `setDescriptor` (or `writePacket`), call `process(count, nowMs)`, read verdicts with
// the raw accessors `verdictCode(i)`, `nextHop(i)`... `verdict(i)` decodes into an object for the control
// path and tests.
//
// Addresses are u32 numbers in host order (10.0.0.1 = 0x0a000001); `ipv4()` parses dotted quads.

import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { instantiate } from '@assemblyscript/loader';
import { adviseHugePages } from './hugepages.ts';
import { COUNTER_NAMES, type CounterName } from './counters.ts';
import { FirmwareError, Status, type StatusCode } from './status.ts';

export { FirmwareError, Status } from './status.ts';
export type { StatusCode, StatusName } from './status.ts';
export { COUNTER_NAMES, type CounterName } from './counters.ts';

export const WASM_PAGE = 65536;
/** Default memory budget: 64 MiB holds ~1.2M fixed affinities (48 B each, 90 % load cap). */
export const DEFAULT_BUDGET_BYTES = 64 * 1024 * 1024;
export const DEFAULT_WASM_PATH = fileURLToPath(new URL('../../build/agent.wasm', import.meta.url));

// ---- ABI constants (assembly/layout.ts, features.ts, control.ts) --------------------------------------

export const Action = {
  NAT_SRC_ADDR: 1 << 0,
  NAT_SRC_PORT: 1 << 1,
  NAT_DST_ADDR: 1 << 2,
  NAT_DST_PORT: 1 << 3,
  SEQ_ADJUST: 1 << 4,
  DISPATCH: 1 << 5,
  DROP: 1 << 6,
  INFO: 1 << 7,
  INTEREST_DATA: 1 << 8,
  INTEREST_COPY: 1 << 9,
  INTEREST_HOLD: 1 << 10,
  ADVERTISE: 1 << 11,
} as const;

export const Capability = {
  NAT: 1 << 0,
  SEQ_ADJUST: 1 << 1,
  DISPATCH: 1 << 2,
  DROP: 1 << 3,
  INFO: 1 << 4,
  INTEREST: 1 << 5,
  ADVERTISE: 1 << 6,
} as const;
export type CapabilityName = keyof typeof Capability;

/** Interest bits (the seed's numbering). TCP: 0-8 and 15; UDP: 6, 7, 8, 15. */
export const InterestBit = {
  FIN: 1 << 0,
  SYN: 1 << 1,
  RST: 1 << 2,
  PSH: 1 << 3,
  ACK: 1 << 4,
  URG: 1 << 5,
  DATA: 1 << 6,
  FIRST_DATA: 1 << 7,
  FRAGMENT: 1 << 8,
  ALL: 1 << 15,
} as const;

export const VerdictCode = { NONE: 0, FORWARD: 1, TO_MANAGER: 2, HOLD: 3, COPY: 4, DROP: 5 } as const;
export type VerdictName = keyof typeof VerdictCode;
const VERDICT_NAMES: readonly VerdictName[] = ['NONE', 'FORWARD', 'TO_MANAGER', 'HOLD', 'COPY', 'DROP'];

export const DropReason = {
  NONE: 0,
  DESCRIPTOR: 1,
  TRUNCATED: 2,
  VERSION: 3,
  IHL: 4,
  TOTAL_LENGTH: 5,
  L4_HEADER: 6,
  ACTION: 7,
  DISPATCH_ZERO: 8,
  ADVERTISED: 9,
} as const;
export type DropReasonName = keyof typeof DropReason;
const REASON_NAMES = Object.keys(DropReason) as DropReasonName[];

// descriptor (32 bytes)
export const DESC = {
  SIZE: 32,
  OFFSET: 0,
  LENGTH: 4,
  FLAGS_IN: 6,
  RESUME_PREC: 8,
  SEEN_OWNER: 10,
  VERDICT: 12,
  REASON: 13,
  FLAGS_OUT: 14,
  NEXT_HOP: 16,
  AFFINITY: 20,
  INTEREST_BITS: 24,
  INTEREST_TARGET: 26,
  OWNER: 28,
  SERVICE_PREC: 30,
} as const;
export const DescIn = { RESUME: 1, SEEN: 2 } as const;
export const DescOut = { ATTACH: 1, FIXED: 2, WILDCARD: 4, REWRITTEN: 8, INTEREST: 16 } as const;

// control record (assembly/control.ts)
export const CONTROL_LAYOUT = {
  SADDR: 0, DADDR: 4, SPORT: 8, DPORT: 10, PROTO: 12, PREC_FLAGS: 13, ACTIONS: 14, TTL: 16, OWNER: 20,
  INTEREST_MASK: 22, INTEREST_TARGET: 24, SERVICE_PREC: 26, NAT_SRC_ADDR: 28, NAT_SRC_PORT: 32,
  NAT_DST_PORT: 34, NAT_DST_ADDR: 36, FORWARD_IP: 40, SEQ_INIT: 44, SEQ_DELTA: 48, ACK_INIT: 52,
  ACK_DELTA: 56, SMASK: 60, DMASK: 64, BACKUP_PREC: 68,
  O_SLOT: 128, O_STATE: 132, O_ACTIONS: 134, O_EXPIRY: 136, O_OWNER: 140, O_INTEREST_MASK: 142,
  O_INTEREST_TARGET: 144, O_NAT_SRC_PORT: 146, O_NAT_SRC_ADDR: 148, O_NAT_DST_ADDR: 152, O_NAT_DST_PORT: 156,
  O_FORWARD_IP: 160, O_SEQ_INIT: 164, O_SEQ_DELTA: 168, O_ACK_INIT: 172, O_ACK_DELTA: 176, O_PACKETS: 180,
  O_BYTES: 184,
} as const;
const C = CONTROL_LAYOUT;

// layout record word indices (assembly/layout.ts L_*)
export const LAYOUT_WORDS = {
  VERSION: 0, BUDGET: 1, COUNTERS: 2, COUNTER_COUNT: 3, CONTROL: 4, DESCRIPTORS: 5, BATCH_MAX: 6,
  DESC_SIZE: 7, PACKETS: 8, PACKET_REGION: 9, PACKET_SLOT: 10, FIXED: 11, FIXED_SLOTS: 12,
  FIXED_CAPACITY: 13, FIXED_SIZE: 14, WILDCARDS: 15, WILDCARD_SLOTS: 16, WILDCARD_CAPACITY: 17, EXT: 18,
  EXT_CAPACITY: 19, INFO: 20, INFO_SLOTS: 21, END: 22, CAPABILITIES: 23, MAX_PATTERNS: 24,
} as const;
const L = LAYOUT_WORDS;
export const ABI_VERSION = 1;

// ---- public types ---------------------------------------------------------------------------------------

/** The affinity key: protocol, source/destination address (host order u32) and port. */
export interface AffinityKey {
  proto: number;
  saddr: number;
  daddr: number;
  sport: number;
  dport: number;
}

export interface SeqAdjust {
  /** seq += seqDelta when seq >= seqInit (serial arithmetic). */
  seqInit: number;
  seqDelta: number;
  /** ack (and SACK edges) += ackDelta when >= ackInit. */
  ackInit: number;
  ackDelta: number;
}

export interface InterestCriteria {
  /** InterestBit mask. */
  mask: number;
  /** Interned interest address:port index (the host maps it back when encoding the message). */
  target: number;
  /** Attach the packet to the interest message (TO_MANAGER when neither copy nor hold). */
  data?: boolean;
  /** Forward and send a copy (COPY verdict). */
  copy?: boolean;
  /** Hold the packet until the manager answers (HOLD verdict). */
  hold?: boolean;
}

/** Actions shared by fixed and wildcard affinities. An absent field is an action not taken. */
export interface AffinityActions {
  natSrcAddr?: number;
  natSrcPort?: number;
  natDstAddr?: number;
  natDstPort?: number;
  seqAdjust?: SeqAdjust;
  /** Dispatch: next hop = this forward IP, destination untouched; 0 = drop after statistics. */
  dispatch?: number;
  drop?: boolean;
  /** Per forward IP packet/byte counters. */
  info?: boolean;
  interest?: InterestCriteria;
}

export interface FixedAffinity extends AffinityKey, AffinityActions {
  /** Seconds; 0 deletes. */
  ttlSec: number;
  /** Manager that installed it. */
  owner: number;
}

export interface WildcardAffinity extends AffinityActions {
  /** 0 = any protocol. */
  proto: number;
  saddr: number;
  smask: number;
  daddr: number;
  dmask: number;
  /** 0 = any. */
  sport: number;
  dport: number;
  ttlSec: number;
  owner: number;
  /** Higher is searched first; a packet resumed after precedence X only sees wildcards below X. */
  servicePrecedence: number;
  /** Search-order flag: match this wildcard before the fixed affinities. */
  searchFirst?: boolean;
  /** Lower wins among equal service precedence (primary 0, backups above). */
  backupPrecedence: number;
  /** Put the destination prefix in the advertised set while this wildcard lives. */
  advertise?: boolean;
}

export interface FixedAffinityState extends AffinityActions {
  slot: number;
  owner: number;
  /** Expiry in ms, low 32 bits of the host clock. */
  expiry32: number;
  firstDataSeen: boolean;
  packets: number;
  bytes: bigint;
}

export interface Capacities {
  budgetBytes: number;
  batchMax: number;
  packetSlot: number;
  packetRegionBytes: number;
  fixedSlots: number;
  /** Fixed affinities that fit (90 % of the slots). */
  fixed: number;
  fixedEntryBytes: number;
  wildcards: number;
  wildcardSlots: number;
  extensions: number;
  infoSlots: number;
  maxPatterns: number;
  /** First byte after the last region. */
  endBytes: number;
}

export interface Verdict {
  verdict: VerdictName;
  reason: DropReasonName;
  fixedHit: boolean;
  wildcardHit: boolean;
  rewritten: boolean;
  interest: boolean;
  attach: boolean;
  /** Host order; 0 = route on the destination. */
  nextHop: number;
  affinitySlot: number;
  interestBits: number;
  interestTarget: number;
  owner: number;
  servicePrecedence: number;
}

export interface DescriptorInput {
  /** Continue the service precedence chain: only wildcards with precedence below this one. */
  resumeAfterPrecedence?: number;
  /** The packet comes back from this manager: its interest matches are suppressed. */
  seenByOwner?: number;
}

export interface LoadOptions {
  /** Memory budget in bytes, a multiple of 64 KiB (default 64 MiB). */
  budgetBytes?: number;
  wasmPath?: string;
  /** Minimum fixed affinities (0 = as many as fit). */
  fixedCapacity?: number;
  wildcardCapacity?: number;
  extCapacity?: number;
  /** Hash seed (default random). */
  seed?: number;
  /** Capabilities to switch off at init, on top of what the build left out. */
  disabledCapabilities?: number;
  /** Back the memory with transparent huge pages where the kernel allows (default true). */
  hugePages?: boolean;
}

/** The part of WebAssembly.Memory we use (tsconfig's lib has no WebAssembly types). */
export interface WasmMemory {
  readonly buffer: ArrayBuffer;
  grow(pages: number): number;
}
interface WasmMemoryConstructor {
  new (descriptor: { initial: number; maximum: number }): WasmMemory;
}
const WasmMemoryCtor = (globalThis as unknown as { WebAssembly: { Memory: WasmMemoryConstructor } }).WebAssembly.Memory;

interface RawExports {
  init(budget: number, fixed: number, wildcards: number, ext: number, seed: number, disabledCaps: number): number;
  layout(): number;
  getCapabilities(): number;
  process(count: number, nowMs: number): number;
  tick(nowMs: number, budget: number): number;
  installFixed(nowMs: number): number;
  deleteFixed(): number;
  lookupFixed(nowMs: number): number;
  installWildcard(nowMs: number): number;
  deleteByOwner(owner: number): number;
}

// ---- helpers --------------------------------------------------------------------------------------------

/** Parses a dotted quad into a host-order u32. */
export function ipv4(dotted: string): number {
  const parts = dotted.split('.');
  if (parts.length !== 4) throw new RangeError(`not an IPv4 address: ${dotted}`);
  let v = 0;
  for (const p of parts) {
    const n = Number(p);
    if (!/^\d{1,3}$/.test(p) || n > 255) throw new RangeError(`not an IPv4 address: ${dotted}`);
    v = v * 256 + n;
  }
  return v >>> 0;
}

export function ipv4String(v: number): string {
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join('.');
}

/** Netmask of a prefix length (0..32), host order. */
export function prefixMask(len: number): number {
  if (!Number.isInteger(len) || len < 0 || len > 32) throw new RangeError(`bad prefix length ${len}`);
  return len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0;
}

function readLeb(buf: Uint8Array, pos: number): [value: number, next: number] {
  let v = 0;
  let shift = 0;
  for (;;) {
    const b = buf[pos++]!;
    v += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return [v, pos];
    shift += 7;
  }
}

function leb(v: number): number[] {
  const out: number[] = [];
  do {
    let b = v & 0x7f;
    v = Math.floor(v / 128);
    if (v !== 0) b |= 0x80;
    out.push(b);
  } while (v !== 0);
  return out;
}

/** Limits of the module's imported memory (pages). */
export function memoryImportLimits(wasm: Uint8Array): { min: number; max: number | undefined } {
  const found = findMemoryImport(wasm);
  return { min: found.min, max: found.max };
}

function findMemoryImport(wasm: Uint8Array): { min: number; max: number | undefined; limitsStart: number; limitsEnd: number; sectionStart: number; sectionContentStart: number; sectionEnd: number } {
  let pos = 8;
  while (pos < wasm.length) {
    const id = wasm[pos]!;
    const sectionStart = pos;
    const [size, contentStart] = readLeb(wasm, pos + 1);
    const end = contentStart + size;
    if (id === 2) {
      let q = contentStart;
      let count: number;
      [count, q] = readLeb(wasm, q);
      for (let i = 0; i < count; i++) {
        let len: number;
        [len, q] = readLeb(wasm, q);
        q += len;
        [len, q] = readLeb(wasm, q);
        q += len;
        const kind = wasm[q++]!;
        if (kind === 0) {
          [, q] = readLeb(wasm, q);
        } else if (kind === 1) {
          q++;
          const flags = wasm[q++]!;
          [, q] = readLeb(wasm, q);
          if (flags & 1) [, q] = readLeb(wasm, q);
        } else if (kind === 2) {
          const limitsStart = q;
          const flags = wasm[q++]!;
          let min: number;
          let max: number | undefined;
          [min, q] = readLeb(wasm, q);
          if (flags & 1) [max, q] = readLeb(wasm, q);
          return { min, max, limitsStart, limitsEnd: q, sectionStart, sectionContentStart: contentStart, sectionEnd: end };
        } else if (kind === 3) {
          q += 2;
        } else {
          break;
        }
      }
    }
    pos = end;
  }
  throw new FirmwareError(Status.BAD_ARGUMENT, 'firmware has no memory import');
}

/** Rewrites the memory import limits to min == max == pages (the binary is otherwise unchanged). */
export function withMemoryPages(wasm: Uint8Array, pages: number): Uint8Array {
  const m = findMemoryImport(wasm);
  if (m.min === pages && m.max === pages) return wasm;
  const limits = [0x01, ...leb(pages), ...leb(pages)];
  const content = [
    ...wasm.subarray(m.sectionContentStart, m.limitsStart),
    ...limits,
    ...wasm.subarray(m.limitsEnd, m.sectionEnd),
  ];
  const header = [2, ...leb(content.length)];
  const out = new Uint8Array(m.sectionStart + header.length + content.length + (wasm.length - m.sectionEnd));
  out.set(wasm.subarray(0, m.sectionStart), 0);
  out.set(header, m.sectionStart);
  out.set(content, m.sectionStart + header.length);
  out.set(wasm.subarray(m.sectionEnd), m.sectionStart + header.length + content.length);
  return out;
}

// ---- the firmware ---------------------------------------------------------------------------------------

export class ForwardingFirmware {
  readonly capacities: Capacities;
  /** Capability bits (Capability.*). */
  readonly capabilities: number;
  readonly memory: WasmMemory;
  /** Bytes of the budget advised to transparent huge pages at load (0: ordinary pages). */
  readonly hugePageBytes: number;
  /** Raw exports for the hot path. */
  readonly raw: RawExports;
  /** The packet region (BATCH_MAX x packetSlot bytes); descriptor offsets are relative to it. */
  readonly packets: Uint8Array;
  /** Descriptor region as bytes / u16 / u32 views (index = byte offset / element size). */
  readonly descriptorBytes: Uint8Array;
  readonly descriptorU16: Uint16Array;
  readonly descriptorU32: Uint32Array;
  private readonly view: DataView;
  private readonly ctl: number;
  private readonly ctlBytes: Uint8Array;
  private readonly counterView: BigUint64Array;
  private readonly infoBase: number;

  private constructor(memory: WasmMemory, raw: RawExports, hugePageBytes: number) {
    this.memory = memory;
    this.hugePageBytes = hugePageBytes;
    this.raw = raw;
    const buf = memory.buffer;
    this.view = new DataView(buf);
    const lay = raw.layout();
    const w = (i: number): number => this.view.getUint32(lay + i * 4, true);
    if (w(L.VERSION) !== ABI_VERSION) throw new FirmwareError(Status.BAD_ARGUMENT, `firmware ABI ${w(L.VERSION)} != ${ABI_VERSION}`);
    this.capacities = Object.freeze({
      budgetBytes: w(L.BUDGET),
      batchMax: w(L.BATCH_MAX),
      packetSlot: w(L.PACKET_SLOT),
      packetRegionBytes: w(L.PACKET_REGION),
      fixedSlots: w(L.FIXED_SLOTS),
      fixed: w(L.FIXED_CAPACITY),
      fixedEntryBytes: w(L.FIXED_SIZE),
      wildcards: w(L.WILDCARD_CAPACITY),
      wildcardSlots: w(L.WILDCARD_SLOTS),
      extensions: w(L.EXT_CAPACITY),
      infoSlots: w(L.INFO_SLOTS),
      maxPatterns: w(L.MAX_PATTERNS),
      endBytes: w(L.END),
    });
    this.capabilities = w(L.CAPABILITIES);
    this.ctl = w(L.CONTROL);
    this.ctlBytes = new Uint8Array(buf, this.ctl, 128);
    this.infoBase = w(L.INFO);
    const counters = w(L.COUNTERS);
    if (w(L.COUNTER_COUNT) !== COUNTER_NAMES.length) {
      throw new FirmwareError(Status.BAD_ARGUMENT, `firmware has ${w(L.COUNTER_COUNT)} counters, host names ${COUNTER_NAMES.length}`);
    }
    this.counterView = new BigUint64Array(buf, counters, COUNTER_NAMES.length);
    this.packets = new Uint8Array(buf, w(L.PACKETS), w(L.PACKET_REGION));
    const desc = w(L.DESCRIPTORS);
    const descBytes = w(L.BATCH_MAX) * w(L.DESC_SIZE);
    this.descriptorBytes = new Uint8Array(buf, desc, descBytes);
    this.descriptorU16 = new Uint16Array(buf, desc, descBytes / 2);
    this.descriptorU32 = new Uint32Array(buf, desc, descBytes / 4);
  }

  static async load(opts: LoadOptions = {}): Promise<ForwardingFirmware> {
    const budget = opts.budgetBytes ?? DEFAULT_BUDGET_BYTES;
    if (!Number.isInteger(budget) || budget <= 0 || budget % WASM_PAGE !== 0 || budget > 2 ** 32 - WASM_PAGE) {
      throw new FirmwareError(Status.BAD_ARGUMENT, `budget ${budget} is not a positive multiple of 64 KiB below 4 GiB`);
    }
    const pages = budget / WASM_PAGE;
    const binary = withMemoryPages(new Uint8Array(await readFile(opts.wasmPath ?? DEFAULT_WASM_PATH)), pages);
    const memory = new WasmMemoryCtor({ initial: pages, maximum: pages });
    // before anything touches the memory, so the kernel maps it with huge pages from the first fault
    const hugePageBytes = opts.hugePages === false ? 0 : adviseHugePages(memory.buffer);
    const { instance } = await instantiate<Record<string, unknown>>(binary, { env: { memory } });
    const raw = instance.exports as unknown as RawExports;
    const seed = opts.seed ?? Math.floor(Math.random() * 2 ** 32);
    const st = raw.init(
      budget >>> 0, opts.fixedCapacity ?? 0, opts.wildcardCapacity ?? 0, opts.extCapacity ?? 0, seed >>> 0,
      opts.disabledCapabilities ?? 0,
    );
    if (st !== Status.OK) throw new FirmwareError(st, `init(budget ${budget}, fixed ${opts.fixedCapacity ?? 0}, wildcards ${opts.wildcardCapacity ?? 0})`);
    return new ForwardingFirmware(memory, raw, hugePageBytes);
  }

  hasCapability(name: CapabilityName): boolean {
    return (this.capabilities & Capability[name]) !== 0;
  }

  // ---- control path ----

  private writeKey(k: AffinityKey): void {
    const v = this.view;
    const c = this.ctl;
    this.ctlBytes.fill(0);
    v.setUint32(c + C.SADDR, addr('saddr', k.saddr), true);
    v.setUint32(c + C.DADDR, addr('daddr', k.daddr), true);
    v.setUint16(c + C.SPORT, uint('sport', k.sport, 0xffff), true);
    v.setUint16(c + C.DPORT, uint('dport', k.dport, 0xffff), true);
    v.setUint8(c + C.PROTO, uint('proto', k.proto, 0xff));
  }

  private writeActions(a: AffinityActions, ttlSec: number, owner: number): void {
    // each optional field is read once (these objects come in many shapes: keep property lookups few)
    const { natSrcAddr, natSrcPort, natDstAddr, natDstPort, seqAdjust, dispatch, drop, info, interest } = a;
    let bits = 0;
    if (natSrcAddr !== undefined) bits |= Action.NAT_SRC_ADDR;
    if (natSrcPort !== undefined) bits |= Action.NAT_SRC_PORT;
    if (natDstAddr !== undefined) bits |= Action.NAT_DST_ADDR;
    if (natDstPort !== undefined) bits |= Action.NAT_DST_PORT;
    if (seqAdjust !== undefined) bits |= Action.SEQ_ADJUST;
    if (dispatch !== undefined) bits |= Action.DISPATCH;
    if (drop) bits |= Action.DROP;
    if (info) bits |= Action.INFO;
    const v = this.view;
    const c = this.ctl;
    if (interest !== undefined) {
      if (interest.data) bits |= Action.INTEREST_DATA;
      if (interest.copy) bits |= Action.INTEREST_COPY;
      if (interest.hold) bits |= Action.INTEREST_HOLD;
      v.setUint16(c + C.INTEREST_MASK, uint('interest.mask', interest.mask, 0xffff), true);
      v.setUint16(c + C.INTEREST_TARGET, uint('interest.target', interest.target, 0xffff), true);
    }
    v.setUint16(c + C.ACTIONS, bits, true);
    v.setUint32(c + C.TTL, uint('ttlSec', ttlSec, 0xffffffff), true);
    v.setUint16(c + C.OWNER, uint('owner', owner, 0xffff), true);
    if (natSrcAddr !== undefined) v.setUint32(c + C.NAT_SRC_ADDR, addr('natSrcAddr', natSrcAddr), true);
    if (natSrcPort !== undefined) v.setUint16(c + C.NAT_SRC_PORT, uint('natSrcPort', natSrcPort, 0xffff), true);
    if (natDstAddr !== undefined) v.setUint32(c + C.NAT_DST_ADDR, addr('natDstAddr', natDstAddr), true);
    if (natDstPort !== undefined) v.setUint16(c + C.NAT_DST_PORT, uint('natDstPort', natDstPort, 0xffff), true);
    if (dispatch !== undefined) v.setUint32(c + C.FORWARD_IP, addr('dispatch', dispatch), true);
    if (seqAdjust !== undefined) {
      v.setUint32(c + C.SEQ_INIT, addr('seqAdjust.seqInit', seqAdjust.seqInit), true);
      v.setUint32(c + C.SEQ_DELTA, addr('seqAdjust.seqDelta', seqAdjust.seqDelta), true);
      v.setUint32(c + C.ACK_INIT, addr('seqAdjust.ackInit', seqAdjust.ackInit), true);
      v.setUint32(c + C.ACK_DELTA, addr('seqAdjust.ackDelta', seqAdjust.ackDelta), true);
    }
  }

  /** Installs or refreshes (TTL 0 deletes) a fixed affinity. */
  installFixed(f: FixedAffinity, nowMs: number): StatusCode {
    this.writeKey(f);
    this.writeActions(f, f.ttlSec, f.owner);
    return this.raw.installFixed(nowMs) as StatusCode;
  }

  deleteFixed(key: AffinityKey): StatusCode {
    this.writeKey(key);
    return this.raw.deleteFixed() as StatusCode;
  }

  lookupFixed(key: AffinityKey, nowMs: number): FixedAffinityState | null {
    this.writeKey(key);
    if (this.raw.lookupFixed(nowMs) !== Status.OK) return null;
    const v = this.view;
    const c = this.ctl;
    const actions = v.getUint16(c + C.O_ACTIONS, true);
    const imask = v.getUint16(c + C.O_INTEREST_MASK, true);
    const s: FixedAffinityState = {
      slot: v.getUint32(c + C.O_SLOT, true),
      owner: v.getUint16(c + C.O_OWNER, true),
      expiry32: v.getUint32(c + C.O_EXPIRY, true),
      firstDataSeen: (v.getUint8(c + C.O_STATE) & 2) !== 0,
      packets: v.getUint32(c + C.O_PACKETS, true),
      bytes: v.getBigUint64(c + C.O_BYTES, true),
    };
    if (actions & Action.NAT_SRC_ADDR) s.natSrcAddr = v.getUint32(c + C.O_NAT_SRC_ADDR, true);
    if (actions & Action.NAT_SRC_PORT) s.natSrcPort = v.getUint16(c + C.O_NAT_SRC_PORT, true);
    if (actions & Action.NAT_DST_ADDR) s.natDstAddr = v.getUint32(c + C.O_NAT_DST_ADDR, true);
    if (actions & Action.NAT_DST_PORT) s.natDstPort = v.getUint16(c + C.O_NAT_DST_PORT, true);
    if (actions & Action.DISPATCH) s.dispatch = v.getUint32(c + C.O_FORWARD_IP, true);
    if (actions & Action.SEQ_ADJUST) {
      s.seqAdjust = {
        seqInit: v.getUint32(c + C.O_SEQ_INIT, true),
        seqDelta: v.getUint32(c + C.O_SEQ_DELTA, true),
        ackInit: v.getUint32(c + C.O_ACK_INIT, true),
        ackDelta: v.getUint32(c + C.O_ACK_DELTA, true),
      };
    }
    if (actions & Action.DROP) s.drop = true;
    if (actions & Action.INFO) s.info = true;
    if (imask !== 0 || (actions & (Action.INTEREST_DATA | Action.INTEREST_COPY | Action.INTEREST_HOLD))) {
      s.interest = {
        mask: imask,
        target: v.getUint16(c + C.O_INTEREST_TARGET, true),
        data: (actions & Action.INTEREST_DATA) !== 0,
        copy: (actions & Action.INTEREST_COPY) !== 0,
        hold: (actions & Action.INTEREST_HOLD) !== 0,
      };
    }
    return s;
  }

  /** Installs or refreshes (TTL 0 deletes) a wildcard affinity; identity = masked key + owner. */
  installWildcard(w: WildcardAffinity, nowMs: number): StatusCode {
    this.writeKey(w);
    this.writeActions(w, w.ttlSec, w.owner);
    const v = this.view;
    const c = this.ctl;
    if (w.advertise) v.setUint16(c + C.ACTIONS, v.getUint16(c + C.ACTIONS, true) | Action.ADVERTISE, true);
    v.setUint32(c + C.SMASK, addr('smask', w.smask), true);
    v.setUint32(c + C.DMASK, addr('dmask', w.dmask), true);
    v.setUint16(c + C.SERVICE_PREC, uint('servicePrecedence', w.servicePrecedence, 0xffff), true);
    v.setUint16(c + C.BACKUP_PREC, uint('backupPrecedence', w.backupPrecedence, 0xffff), true);
    v.setUint8(c + C.PREC_FLAGS, w.searchFirst ? 1 : 0);
    return this.raw.installWildcard(nowMs) as StatusCode;
  }

  /** Removes every fixed and wildcard affinity installed by a manager; returns how many. */
  deleteByOwner(owner: number): number {
    return this.raw.deleteByOwner(owner);
  }

  /** Bounded sweep of expired affinities (up to `budget` slots of each table); returns how many expired. */
  tick(nowMs: number, budget = 65536): number {
    return this.raw.tick(nowMs, budget);
  }

  counters(): Record<CounterName, bigint> {
    const out = {} as Record<CounterName, bigint>;
    COUNTER_NAMES.forEach((n, i) => {
      out[n] = this.counterView[i]!;
    });
    return out;
  }

  counter(name: CounterName): bigint {
    return this.counterView[COUNTER_NAMES.indexOf(name)]!;
  }

  /** Per forward IP statistics (information flag). */
  forwardStats(): Map<number, { packets: bigint; bytes: bigint }> {
    const out = new Map<number, { packets: bigint; bytes: bigint }>();
    const v = this.view;
    for (let i = 0; i < this.capacities.infoSlots; i++) {
      const e = this.infoBase + i * 32;
      if (v.getUint32(e + 4, true) === 0) continue;
      const wire = v.getUint32(e, true);
      const addr = ((wire & 0xff) << 24 | (wire & 0xff00) << 8 | (wire >>> 8) & 0xff00 | wire >>> 24) >>> 0;
      out.set(addr, { packets: v.getBigUint64(e + 8, true), bytes: v.getBigUint64(e + 16, true) });
    }
    return out;
  }

  // ---- batch ----

  /** Fills descriptor i: packet at `offset` in the packet region, `length` captured bytes. */
  setDescriptor(i: number, offset: number, length: number, input?: DescriptorInput): void {
    const b = i * 8; // u32 index
    const h = i * 16; // u16 index
    this.descriptorU32[b] = offset;
    this.descriptorU16[h + 2] = length;
    let flags = 0;
    let resume = 0;
    let seen = 0;
    if (input?.resumeAfterPrecedence !== undefined) {
      flags |= DescIn.RESUME;
      resume = input.resumeAfterPrecedence;
    }
    if (input?.seenByOwner !== undefined) {
      flags |= DescIn.SEEN;
      seen = input.seenByOwner;
    }
    this.descriptorU16[h + 3] = flags;
    this.descriptorU16[h + 4] = resume;
    this.descriptorU16[h + 5] = seen;
  }

  /** Copies a packet into slot i (offset i x packetSlot) and fills descriptor i. */
  writePacket(i: number, bytes: Uint8Array, input?: DescriptorInput): void {
    const slot = this.capacities.packetSlot;
    if (bytes.length > slot) throw new FirmwareError(Status.BAD_ARGUMENT, `packet of ${bytes.length} bytes exceeds the ${slot}-byte slot`);
    this.packets.set(bytes, i * slot);
    this.setDescriptor(i, i * slot, bytes.length, input);
  }

  /** The (possibly rewritten) bytes of packet i, a view into wasm memory (copy it to keep it). */
  packet(i: number): Uint8Array {
    const off = this.descriptorU32[i * 8]!;
    const len = this.descriptorU16[i * 16 + 2]!;
    return this.packets.subarray(off, off + len);
  }

  /** Runs descriptors [0, count). */
  process(count: number, nowMs: number): void {
    const st = this.raw.process(count, nowMs);
    if (st !== Status.OK) throw new FirmwareError(st, `process(${count})`);
  }

  // raw accessors (no allocation)
  verdictCode(i: number): number {
    return this.descriptorBytes[i * 32 + DESC.VERDICT]!;
  }
  dropReason(i: number): number {
    return this.descriptorBytes[i * 32 + DESC.REASON]!;
  }
  outFlags(i: number): number {
    return this.descriptorU16[i * 16 + 7]!;
  }
  nextHop(i: number): number {
    return this.descriptorU32[i * 8 + 4]!;
  }
  affinitySlot(i: number): number {
    return this.descriptorU32[i * 8 + 5]!;
  }
  interestBits(i: number): number {
    return this.descriptorU16[i * 16 + 12]!;
  }
  interestTarget(i: number): number {
    return this.descriptorU16[i * 16 + 13]!;
  }
  owner(i: number): number {
    return this.descriptorU16[i * 16 + 14]!;
  }
  servicePrecedence(i: number): number {
    return this.descriptorU16[i * 16 + 15]!;
  }

  /** Decoded verdict of descriptor i (allocates; for the control path and tests). */
  verdict(i: number): Verdict {
    const f = this.outFlags(i);
    return {
      verdict: VERDICT_NAMES[this.verdictCode(i)] ?? 'NONE',
      reason: REASON_NAMES[this.dropReason(i)] ?? 'NONE',
      fixedHit: (f & DescOut.FIXED) !== 0,
      wildcardHit: (f & DescOut.WILDCARD) !== 0,
      rewritten: (f & DescOut.REWRITTEN) !== 0,
      interest: (f & DescOut.INTEREST) !== 0,
      attach: (f & DescOut.ATTACH) !== 0,
      nextHop: this.nextHop(i),
      affinitySlot: this.affinitySlot(i),
      interestBits: this.interestBits(i),
      interestTarget: this.interestTarget(i),
      owner: this.owner(i),
      servicePrecedence: this.servicePrecedence(i),
    };
  }
}

/** An integer field of the control record in 0..max, else BAD_ARGUMENT (a DataView setter would wrap it). */
function uint(name: string, v: number, max: number): number {
  if (!Number.isInteger(v) || v < 0 || v > max) throw new FirmwareError(Status.BAD_ARGUMENT, `${name} ${v} is not an integer in 0..${max}`);
  return v;
}

/** A 32-bit word (address, mask, sequence number): signed or unsigned, as bit operations leave it. */
function addr(name: string, v: number): number {
  if (!Number.isInteger(v) || v < -0x80000000 || v > 0xffffffff) throw new FirmwareError(Status.BAD_ARGUMENT, `${name} ${v} is not a 32-bit value`);
  return v >>> 0;
}
