// Message authentication and replay protection.
//
// The MAC covers the whole datagram (header and every segment) with the MAC field itself set to zero.
// HMAC-SHA256 is RFC 2104 HMAC computed with node:crypto's one-shot `hash` over precomputed ipad/opad
// blocks (the same bytes as crypto.createHmac, about twice as fast per message); keyed MD5 is the
// RFC 1828 envelope MD5(key ‖ datagram ‖ key). Replay protection is a per-sender sliding window over
// sender sequence numbers (RFC 4303 style, ring bitmap of `replayWindow` bits).
import * as nodeCrypto from 'node:crypto';
import * as C from './constants.ts';

const { MAC_BYTES, MAX_MESSAGE_BYTES, MacAlgorithmCode, SEGMENT_HEADER_BYTES } = C;
import { ProtocolError } from './errors.ts';

export type MacAlgorithm = 'hmac-sha256' | 'keyed-md5';

export interface SecurityKey {
  /** Key id carried in the security segment (u16), so keys can roll. */
  id: number;
  /** Shared secret: bytes, or a string taken as UTF-8. */
  secret: Uint8Array | string;
  /** Default 'hmac-sha256'. */
  algorithm?: MacAlgorithm;
}

const hash = nodeCrypto.hash;
const HMAC_BLOCK = 64;
const MAX_MD5_KEY_BYTES = 255;

/** A key ready for use: pads precomputed. Internal to the protocol module. */
export class PreparedKey {
  readonly id: number;
  readonly algorithm: MacAlgorithm;
  readonly algorithmCode: number;
  readonly macBytes: number;
  /** HMAC: K ⊕ ipad / K ⊕ opad (64 bytes each). Keyed MD5: the raw key in `ipad`, `opad` empty. */
  readonly ipad: Buffer;
  readonly opad: Buffer;

  constructor(key: SecurityKey) {
    if ((key.id & 0xffff) !== key.id) {
      throw new ProtocolError('BAD_FIELD', `key id must be u16, got ${String(key.id)}`, { field: 'key.id' });
    }
    const algorithm = key.algorithm ?? 'hmac-sha256';
    const secret = typeof key.secret === 'string' ? Buffer.from(key.secret, 'utf8') : Buffer.from(key.secret);
    if (secret.length === 0) throw new ProtocolError('BAD_FIELD', 'secret is empty', { field: 'key.secret' });
    this.id = key.id;
    this.algorithm = algorithm;
    if (algorithm === 'hmac-sha256') {
      this.algorithmCode = MacAlgorithmCode.HmacSha256;
      const k = Buffer.alloc(HMAC_BLOCK);
      (secret.length > HMAC_BLOCK ? hash('sha256', secret, 'buffer') : secret).copy(k);
      this.ipad = Buffer.alloc(HMAC_BLOCK);
      this.opad = Buffer.alloc(HMAC_BLOCK);
      for (let i = 0; i < HMAC_BLOCK; i++) {
        this.ipad[i] = k[i]! ^ 0x36;
        this.opad[i] = k[i]! ^ 0x5c;
      }
    } else if (algorithm === 'keyed-md5') {
      if (secret.length > MAX_MD5_KEY_BYTES) {
        throw new ProtocolError('BAD_FIELD', `keyed-md5 secret longer than ${MAX_MD5_KEY_BYTES} bytes`, { field: 'key.secret' });
      }
      this.algorithmCode = MacAlgorithmCode.KeyedMd5;
      this.ipad = secret;
      this.opad = Buffer.alloc(0);
    } else {
      throw new ProtocolError('BAD_FIELD', `unknown MAC algorithm ${String(algorithm)}`, { field: 'key.algorithm' });
    }
    this.macBytes = MAC_BYTES[this.algorithmCode as 1 | 2];
  }
}

// One scratch area for every MAC computation: the leading pad (HMAC) or key (keyed MD5, up to
// MAX_MD5_KEY_BYTES, more than a HMAC block) + the largest datagram + the trailing key (keyed MD5).
const macScratch = Buffer.allocUnsafe(Math.max(HMAC_BLOCK, MAX_MD5_KEY_BYTES) + MAX_MESSAGE_BYTES + MAX_MD5_KEY_BYTES);
const outerScratch = Buffer.allocUnsafe(HMAC_BLOCK + 32);
/** The key whose pads (HMAC) or prefix (keyed MD5) sit at the start of the scratch areas. */
let padsInScratch: PreparedKey | null = null;

/**
 * MAC of `datagram` (exactly the message bytes) with the `key.macBytes` bytes at `macOffset` taken as zero.
 * Returned as a binary string (one char per byte): node's one-shot hash is much cheaper with string output.
 */
export function computeMac(key: PreparedKey, datagram: Uint8Array, macOffset: number): string {
  const len = datagram.length;
  const pre = key.ipad.length;
  if (key !== padsInScratch) {
    macScratch.set(key.ipad, 0);
    outerScratch.set(key.opad, 0);
    padsInScratch = key;
  }
  macScratch.set(datagram, pre);
  const z = pre + macOffset;
  for (let i = 0; i < key.macBytes; i++) macScratch[z + i] = 0;
  if (key.algorithmCode === MacAlgorithmCode.HmacSha256) {
    const inner = hash('sha256', scratchView(pre + len), 'binary');
    for (let i = 0; i < 32; i++) outerScratch[HMAC_BLOCK + i] = inner.charCodeAt(i);
    return hash('sha256', outerScratch, 'binary');
  }
  macScratch.set(key.ipad, pre + len);
  return hash('md5', scratchView(pre + len + pre), 'binary');
}

/** macScratch[0, n) as a view, cached per length: a datagram stream has few distinct lengths. */
const scratchViews: Array<Buffer | undefined> = [];
function scratchView(n: number): Buffer {
  let v = scratchViews[n];
  if (v === undefined) {
    v = macScratch.subarray(0, n);
    scratchViews[n] = v;
  }
  return v;
}

/** Keys accepted on receive (by id) and the one used to send. */
export class Keyring {
  readonly #keys = new Map<number, PreparedKey>();
  #sendId: number;

  /** `sendKeyId` defaults to the first key's id. */
  constructor(keys: readonly SecurityKey[], sendKeyId?: number) {
    if (keys.length === 0) throw new ProtocolError('BAD_FIELD', 'a keyring needs at least one key', { field: 'keys' });
    for (const k of keys) this.add(k);
    this.#sendId = sendKeyId ?? keys[0]!.id;
    this.useForSending(this.#sendId);
  }

  add(key: SecurityKey): void {
    this.#keys.set(key.id, new PreparedKey(key));
  }

  /** Stop accepting a key (roll-over done). The send key cannot be removed. */
  remove(id: number): void {
    if (id === this.#sendId) throw new ProtocolError('BAD_FIELD', `key ${id} is the send key`, { field: 'keys' });
    this.#keys.delete(id);
  }

  useForSending(id: number): void {
    if (!this.#keys.has(id)) throw new ProtocolError('BAD_FIELD', `no key with id ${id}`, { field: 'sendKeyId' });
    this.#sendId = id;
  }

  get sendKey(): PreparedKey {
    return this.#keys.get(this.#sendId)!;
  }

  lookup(id: number): PreparedKey | undefined {
    return this.#keys.get(id);
  }

  get ids(): number[] {
    return [...this.#keys.keys()];
  }
}

/** What a sender passes to `encodeMessage`: its keyring (the send key signs). */
export type SecurityConfig = Keyring;

/** Sliding window over one sender's sequence numbers. */
export class ReplayWindow {
  readonly size: number;
  #top = -1;
  readonly #bits: Uint32Array;

  /** `size` in sequence numbers, a power of two ≥ 32. */
  constructor(size = DEFAULT_REPLAY_WINDOW) {
    if (!Number.isInteger(size) || size < 32 || (size & (size - 1)) !== 0) {
      throw new ProtocolError('BAD_FIELD', `replay window must be a power of two ≥ 32, got ${size}`, { field: 'replayWindow' });
    }
    this.size = size;
    this.#bits = new Uint32Array(size >>> 5);
  }

  /** Highest sequence accepted so far (-1 before the first). */
  get highest(): number {
    return this.#top;
  }

  /** True and records `seq` if it is new; false if it was seen or is older than the window. */
  accept(seq: number): boolean {
    const top = this.#top;
    const bits = this.#bits;
    const size = this.size;
    if (seq > top) {
      if (top < 0 || seq - top >= size) {
        bits.fill(0);
      } else {
        for (let s = top + 1; s < seq; s++) {
          const i = s % size;
          bits[i >>> 5]! &= ~(1 << (i & 31));
        }
      }
      const i = seq % size;
      bits[i >>> 5]! |= 1 << (i & 31);
      this.#top = seq;
      return true;
    }
    if (top - seq >= size) return false;
    const i = seq % size;
    const mask = 1 << (i & 31);
    if ((bits[i >>> 5]! & mask) !== 0) return false;
    bits[i >>> 5]! |= mask;
    return true;
  }
}

export const DEFAULT_REPLAY_WINDOW = 1024;

export interface SecurityCounters {
  /** Authenticated and fresh. */
  accepted: number;
  /** Accepted without a security segment (only when security is not required). */
  unsigned: number;
  /** Dropped: no security segment while security is required. */
  unauthenticated: number;
  /** Dropped: MAC does not match (or a MAC of the wrong size for its algorithm). */
  forged: number;
  /** Dropped: unknown key id, or an algorithm other than the key's. */
  wrongKey: number;
  /** Dropped: sequence number already seen or older than the window. */
  replayed: number;
}

export interface SecurityVerifierOptions {
  keyring: Keyring;
  /** Drop messages without a security segment (default true). */
  required?: boolean;
  /** Replay window per sender, in sequence numbers (default 1024). */
  replayWindow?: number;
}

/**
 * Receive-side security: checks the security segment of every message passed to `decodeMessage` with
 * `{ security: verifier }`, and counts each verdict. A present segment is always checked, also when security
 * is not required: a wrong MAC is evidence of tampering whether or not signing is mandatory.
 * IP packet only messages carry no security segment and are not checked.
 */
export class SecurityVerifier {
  readonly keyring: Keyring;
  readonly required: boolean;
  readonly counters: SecurityCounters = { accepted: 0, unsigned: 0, unauthenticated: 0, forged: 0, wrongKey: 0, replayed: 0 };
  readonly #windowSize: number;
  readonly #windows = new Map<number, ReplayWindow>();

  constructor(opts: SecurityVerifierOptions) {
    this.keyring = opts.keyring;
    this.required = opts.required ?? true;
    this.#windowSize = opts.replayWindow ?? DEFAULT_REPLAY_WINDOW;
    new ReplayWindow(this.#windowSize); // validates the size now rather than on the first message
  }

  /** Forget a sender's replay window (e.g. after it announced a restart by other means). */
  forgetSender(sender: number): void {
    this.#windows.delete(sender);
  }

  /**
   * Called by the decoder after the header is read. `segmentOffset` is the security segment's header
   * offset (-1 when absent) and `dataLength` its data length. Throws the verdict as a ProtocolError.
   */
  check(datagram: Uint8Array, segmentOffset: number, dataLength: number, sender: number, sequence: number): void {
    const c = this.counters;
    if (segmentOffset < 0) {
      if (this.required) {
        c.unauthenticated++;
        throw new ProtocolError('UNAUTHENTICATED', 'message has no security segment');
      }
      c.unsigned++;
      return;
    }
    const d = segmentOffset + SEGMENT_HEADER_BYTES;
    const algorithm = datagram[d]!;
    const keyId = (datagram[d + 2]! << 8) | datagram[d + 3]!;
    const key = this.keyring.lookup(keyId);
    if (key === undefined || key.algorithmCode !== algorithm) {
      c.wrongKey++;
      throw new ProtocolError('WRONG_KEY', `no key ${keyId} for algorithm ${algorithm}`, { offset: d });
    }
    if (dataLength !== 4 + key.macBytes) {
      c.forged++;
      throw new ProtocolError('FORGED', `MAC of ${dataLength - 4} bytes for ${key.algorithm}`, { offset: d });
    }
    const macOffset = d + 4;
    const expected = computeMac(key, datagram, macOffset);
    let diff = 0;
    for (let i = 0; i < key.macBytes; i++) diff |= expected.charCodeAt(i) ^ datagram[macOffset + i]!;
    if (diff !== 0) {
      c.forged++;
      throw new ProtocolError('FORGED', 'MAC does not match', { offset: macOffset });
    }
    let w = this.#windows.get(sender);
    if (w === undefined) {
      w = new ReplayWindow(this.#windowSize);
      this.#windows.set(sender, w);
    }
    if (!w.accept(sequence)) {
      c.replayed++;
      throw new ProtocolError('REPLAYED', `sequence ${sequence} from sender ${sender} already seen or too old`);
    }
    c.accepted++;
  }
}

/**
 * A sender's first sequence number: wall-clock milliseconds × 1024, so a restarted sender still moves
 * forward past what receivers saw before the restart (room for 1024 messages per ms until year 2248).
 */
export function initialSequence(nowMs: number = Date.now()): number {
  return Math.floor(nowMs) * 1024;
}
