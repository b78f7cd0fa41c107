// Robustness of the decoder against hostile datagrams (≥ 100,000 cases in total), and round trips of
// arbitrary valid messages. The decoder must return a message or throw a ProtocolError with a known code,
// never anything else; it must not look outside the datagram it was given.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  decodeMessage,
  encodeMessage,
  Keyring,
  ProtocolError,
  SecurityVerifier,
  type ProtocolErrorCode,
  type ServiceMessage,
} from '../../../host/protocol/index.ts';
import { serviceMessage } from './arbitraries.ts';

const CODES = new Set<ProtocolErrorCode>([
  'TOO_SHORT',
  'TOO_LARGE',
  'BAD_VERSION',
  'UNKNOWN_MESSAGE_TYPE',
  'LENGTH_MISMATCH',
  'TRUNCATED_SEGMENT',
  'BAD_SEGMENT_LENGTH',
  'BAD_FIELD',
  'DUPLICATE_SEGMENT',
  'MISSING_SEGMENT',
  'ORPHAN_ACTION_LIST',
  'SECURITY_MISPLACED',
  'SECURITY_NOT_ALLOWED',
  'UNPROCESSABLE_SEGMENT',
  'UNAUTHENTICATED',
  'FORGED',
  'WRONG_KEY',
  'REPLAYED',
]);

const keyring = new Keyring([{ id: 1, secret: 'fuzz-key' }]);

type Outcome = { ok: true; msg: ServiceMessage } | { ok: false; code: ProtocolErrorCode };

/** Decodes and classifies; fails the property on any exception other than a ProtocolError with a known code. */
function outcome(datagram: Uint8Array, verifier?: SecurityVerifier): Outcome {
  try {
    return { ok: true, msg: decodeMessage(datagram, verifier === undefined ? undefined : { security: verifier }) };
  } catch (e) {
    if (!(e instanceof ProtocolError)) throw new Error(`decoder threw a non-ProtocolError: ${String(e)}`);
    if (!CODES.has(e.code)) throw new Error(`unknown error code ${e.code}`);
    if (e.code === 'UNPROCESSABLE_SEGMENT' && (e.segments === undefined || e.segments.length === 0)) {
      throw new Error('UNPROCESSABLE_SEGMENT without the offending segments');
    }
    return { ok: false, code: e.code };
  }
}

/** Every byte payload in a decoded message lies inside `view` (and shares its memory). */
function payloadsInside(v: unknown, view: Uint8Array): boolean {
  if (v instanceof Uint8Array) {
    return v.buffer === view.buffer && v.byteOffset >= view.byteOffset && v.byteOffset + v.length <= view.byteOffset + view.length;
  }
  if (Array.isArray(v)) return v.every((x) => payloadsInside(x, view));
  if (typeof v === 'object' && v !== null) return Object.values(v).every((x) => payloadsInside(x, view));
  return true;
}

/** A decoded message re-encodes, and the re-encoding decodes to the same message. */
function checkCanonical(msg: ServiceMessage): void {
  const again = encodeMessage(msg);
  expect(decodeMessage(again)).toStrictEqual(msg);
}

// A corpus of valid datagrams to mutate: plain and signed.
const corpus = fc.sample(serviceMessage, { numRuns: 300, seed: 42 });
const plain = corpus.map((m) => encodeMessage(m));
const signed = corpus.filter((m) => m.type !== 'ip-packet-only').map((m) => encodeMessage(m, { security: keyring }));

type Mutation =
  | { kind: 'flip'; bits: number[] }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'truncate'; to: number; fixLength: boolean }
  | { kind: 'extend'; tail: Uint8Array; fixLength: boolean }
  | { kind: 'length'; at: number; value: number; segment: boolean }
  | { kind: 'splice'; donor: number; from: number; to: number; fixLength: boolean };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), bits: fc.array(fc.nat(), { minLength: 1, maxLength: 8 }) }),
  fc.record({ kind: fc.constant('set' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ kind: fc.constant('truncate' as const), to: fc.nat(), fixLength: fc.boolean() }),
  fc.record({ kind: fc.constant('extend' as const), tail: fc.uint8Array({ minLength: 1, maxLength: 40 }), fixLength: fc.boolean() }),
  fc.record({ kind: fc.constant('length' as const), at: fc.nat(), value: fc.integer({ min: 0, max: 0xffff }), segment: fc.boolean() }),
  fc.record({ kind: fc.constant('splice' as const), donor: fc.nat(), from: fc.nat(), to: fc.nat(), fixLength: fc.boolean() }),
);

function setLength(b: Buffer): void {
  if (b.length >= 8) b.writeUInt32BE(b.length, 4);
}

function mutate(src: Buffer, ms: Mutation[], donors: Buffer[]): Buffer {
  let b = Buffer.from(src);
  for (const m of ms) {
    switch (m.kind) {
      case 'flip':
        for (const bit of m.bits) {
          const i = (bit >>> 3) % b.length;
          b[i]! ^= 1 << (bit & 7);
        }
        break;
      case 'set':
        b[m.at % b.length] = m.value;
        break;
      case 'truncate':
        b = b.subarray(0, m.to % (b.length + 1));
        if (m.fixLength) setLength(b);
        break;
      case 'extend':
        b = Buffer.concat([b, m.tail]);
        if (m.fixLength) setLength(b);
        break;
      case 'length':
        // a header length (offset 4) or the length field of a segment header (4-aligned offsets ≥ 20)
        if (m.segment) {
          const at = 20 + 4 * (m.at % Math.max(1, (b.length - 20) >>> 2)) + 2;
          if (at + 2 <= b.length) b.writeUInt16BE(m.value, at);
        } else if (b.length >= 8) {
          b.writeUInt32BE(m.value, 4);
        }
        break;
      case 'splice': {
        // graft a 4-aligned run of another datagram's segments into this one
        const d = donors[m.donor % donors.length]!;
        const from = 20 + 4 * (m.from % Math.max(1, (d.length - 20) >>> 2));
        const to = Math.min(d.length, from + 4 * (1 + (m.to % 16)));
        const at = Math.min(b.length, 20 + 4 * (m.to % Math.max(1, (b.length - 20) >>> 2)));
        b = Buffer.concat([b.subarray(0, at), d.subarray(from, to), b.subarray(at)]);
        if (m.fixLength) setLength(b);
        break;
      }
    }
    if (b.length === 0) break;
  }
  return b;
}

describe('decoder robustness', () => {
  it('random datagrams (30,000): a message or a typed ProtocolError', () => {
    // Half fully random, half with a plausible header so the segment walker is reached.
    const header = fc.record({ type: fc.constantFrom(1, 2, 3, 4, 5, 6, 16, 17, 18, 19, 20, 21, 0, 99), body: fc.uint8Array({ maxLength: 160 }) }).map(
      ({ type, body }) => {
        const b = Buffer.alloc(20 + body.length);
        b[0] = 1;
        b[1] = type;
        b.writeUInt32BE(b.length, 4);
        Buffer.from(body).copy(b, 20);
        return b;
      },
    );
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 200 }), header), (bytes) => {
        const r = outcome(bytes);
        if (r.ok) checkCanonical(r.msg);
      }),
      { numRuns: 30_000, seed: 1 },
    );
  });

  it('mutated valid datagrams (70,000): bit flips, truncation, length corruption, extension, splices', () => {
    let decodedOk = 0;
    fc.assert(
      fc.property(fc.nat(), fc.array(mutation, { minLength: 1, maxLength: 3 }), (pick, ms) => {
        const b = mutate(plain[pick % plain.length]!, ms, plain);
        const r = outcome(b);
        if (r.ok) {
          decodedOk++;
          expect(payloadsInside(r.msg, b)).toBe(true);
          checkCanonical(r.msg);
        }
      }),
      { numRuns: 70_000, seed: 2 },
    );
    // the mutations must leave some datagrams decodable, or the walker past the first error is not exercised
    expect(decodedOk).toBeGreaterThan(1000);
  });

  it('mutated signed datagrams (10,000) against a verifier: refused with a security code, never accepted altered', () => {
    const verifier = new SecurityVerifier({ keyring, required: true, replayWindow: 1 << 16 });
    fc.assert(
      fc.property(fc.nat(), fc.array(mutation, { minLength: 1, maxLength: 2 }), (pick, ms) => {
        const original = signed[pick % signed.length]!;
        const b = mutate(original, ms, signed);
        verifier.forgetSender(b.length >= 12 ? b.readUInt32BE(8) : 0);
        const r = outcome(b, verifier);
        // An accepted datagram must be the original bytes, up to a change the MAC does not cover: none.
        if (r.ok) expect(b.equals(original)).toBe(true);
      }),
      { numRuns: 10_000, seed: 3 },
    );
    const c = verifier.counters;
    expect(c.forged + c.wrongKey + c.unauthenticated).toBeGreaterThan(2000);
  });

  it('never reads outside the datagram view: same outcome inside a larger buffer with random surroundings', () => {
    fc.assert(
      fc.property(fc.nat(), fc.array(mutation, { maxLength: 2 }), fc.uint8Array({ minLength: 1, maxLength: 64 }), fc.nat({ max: 63 }), (pick, ms, noise, pre) => {
        const b = mutate(plain[pick % plain.length]!, ms, plain);
        const host = Buffer.alloc(pre + b.length + noise.length);
        for (let i = 0; i < host.length; i++) host[i] = noise[i % noise.length]!;
        b.copy(host, pre);
        const view = host.subarray(pre, pre + b.length);
        const inside = outcome(view);
        const alone = outcome(Buffer.from(b));
        expect(inside.ok).toBe(alone.ok);
        if (inside.ok && alone.ok) {
          expect(payloadsInside(inside.msg, view)).toBe(true);
          expect(inside.msg).toStrictEqual(alone.msg);
        } else if (!inside.ok && !alone.ok) {
          expect(inside.code).toBe(alone.code);
        }
      }),
      { numRuns: 5_000, seed: 4 },
    );
  });

  it('refuses datagrams over 64 KiB before reading them', () => {
    const big = Buffer.alloc(65537);
    big[0] = 1;
    big[1] = 2;
    big.writeUInt32BE(big.length, 4);
    expect(outcome(big)).toEqual({ ok: false, code: 'TOO_LARGE' });
    // exactly 64 KiB is the largest accepted size: a wildcard update padded with one large optional segment
    const max = Buffer.alloc(65536);
    const head = encodeMessage({
      type: 'affinity-update-wildcard',
      sender: 1,
      sequence: 1,
      wildcards: [{ affinity: { protocol: 6, srcAddr: 0, srcMask: 0, dstAddr: 1, dstMask: 0xffffffff, srcPort: 0, dstPort: 80, flags: 0, ttlMs: 1 }, actions: [] }],
    });
    head.copy(max);
    max.writeUInt32BE(max.length, 4);
    max.writeUInt16BE(0x0777, head.length); // unknown optional segment: skipped
    max.writeUInt16BE(65536 - head.length - 4, head.length + 2);
    const r = outcome(max);
    expect(r.ok).toBe(true);
  });

  it('a 64 KiB datagram of 16,000 empty unknown segments is skipped through to the one segment that counts', () => {
    const b = Buffer.alloc(65536);
    b[0] = 1;
    b[1] = 17; // replication ack
    b.writeUInt32BE(b.length, 4);
    for (let o = 20; o + 4 <= b.length - 12; o += 4) b.writeUInt16BE(0x0400, o); // optional code 1024, length 0
    b.writeUInt16BE(0x8031, b.length - 12); // replication ack segment, 8 bytes
    b.writeUInt16BE(8, b.length - 10);
    b.writeUInt32BE(5, b.length - 4);
    const m = decodeMessage(b);
    expect(m).toMatchObject({ type: 'replication-ack', acked: [5] });
  });
});

describe('round trips of arbitrary valid messages', () => {
  it('decode(encode(m)) equals m and re-encodes to the same bytes', () => {
    fc.assert(
      fc.property(serviceMessage, (m) => {
        const bytes = encodeMessage(m);
        const back = decodeMessage(bytes);
        expect(back).toStrictEqual(m);
        expect(encodeMessage(back).equals(bytes)).toBe(true);
      }),
      { numRuns: 3_000, seed: 5 },
    );
  });

  it('signed round trips verify, in order, for every message type but IP packet only', () => {
    const verifier = new SecurityVerifier({ keyring, required: true });
    let sequence = 0;
    fc.assert(
      fc.property(serviceMessage, (m) => {
        const msg = { ...m, sender: 1, sequence: ++sequence } as ServiceMessage;
        const back = decodeMessage(encodeMessage(msg, { security: keyring }), { security: verifier });
        expect(back).toStrictEqual(msg);
      }),
      { numRuns: 1_000, seed: 6 },
    );
    expect(verifier.counters.replayed + verifier.counters.forged + verifier.counters.unauthenticated).toBe(0);
    expect(verifier.counters.accepted).toBeGreaterThan(800);
  });

  it('keyed-MD5 signed round trips verify too', () => {
    const md5 = new Keyring([{ id: 2, secret: 'md5-key', algorithm: 'keyed-md5' }]);
    const verifier = new SecurityVerifier({ keyring: md5, required: true });
    let sequence = 0;
    fc.assert(
      fc.property(serviceMessage, (m) => {
        const msg = { ...m, sender: 1, sequence: ++sequence } as ServiceMessage;
        expect(decodeMessage(encodeMessage(msg, { security: md5 }), { security: verifier })).toStrictEqual(msg);
      }),
      { numRuns: 300, seed: 7 },
    );
    expect(verifier.counters.forged + verifier.counters.wrongKey).toBe(0);
  });
});
