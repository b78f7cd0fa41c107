// Authentication and replay protection as a receiver sees them: each drop reason counted apart.
import { createHmac } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  decodeMessage,
  encodeMessage,
  initialSequence,
  Keyring,
  ProtocolError,
  ReplayWindow,
  SecurityVerifier,
  type ProtocolErrorCode,
  type ServiceMessage,
} from '../../../host/protocol/index.ts';

const heartbeat = (sequence: number, sender = 5): ServiceMessage => ({
  type: 'heartbeat',
  sender,
  sequence,
  heartbeat: { role: 'primary', resyncState: 'none', epoch: 2, backupPrecedence: 10, intervalMs: 50 },
});

const keyring = new Keyring([{ id: 1, secret: 'current' }]);

function verdict(datagram: Buffer, verifier: SecurityVerifier): 'ok' | ProtocolErrorCode {
  try {
    decodeMessage(datagram, { security: verifier });
    return 'ok';
  } catch (e) {
    if (e instanceof ProtocolError) return e.code;
    throw e;
  }
}

describe('a receiver that requires security', () => {
  it('accepts signed messages and drops unauthenticated, forged, wrong-key and replayed ones, counting each', () => {
    const v = new SecurityVerifier({ keyring, required: true });
    expect(verdict(encodeMessage(heartbeat(1), { security: keyring }), v)).toBe('ok');
    expect(verdict(encodeMessage(heartbeat(2)), v)).toBe('UNAUTHENTICATED');

    const forged = encodeMessage(heartbeat(3), { security: keyring });
    forged[forged.length - 1]! ^= 1; // an attacker changes the interval and cannot fix the MAC
    expect(verdict(forged, v)).toBe('FORGED');

    const otherSecret = new Keyring([{ id: 1, secret: 'guessed' }]);
    expect(verdict(encodeMessage(heartbeat(4), { security: otherSecret }), v)).toBe('FORGED');

    const unknownId = new Keyring([{ id: 2, secret: 'current' }]);
    expect(verdict(encodeMessage(heartbeat(5), { security: unknownId }), v)).toBe('WRONG_KEY');

    const otherAlgorithm = new Keyring([{ id: 1, secret: 'current', algorithm: 'keyed-md5' }]);
    expect(verdict(encodeMessage(heartbeat(6), { security: otherAlgorithm }), v)).toBe('WRONG_KEY');

    const seven = encodeMessage(heartbeat(7), { security: keyring });
    expect(verdict(seven, v)).toBe('ok');
    expect(verdict(seven, v)).toBe('REPLAYED');

    expect(v.counters).toEqual({ accepted: 2, unsigned: 0, unauthenticated: 1, forged: 2, wrongKey: 2, replayed: 1 });
  });

  it('does not let a forged message advance the replay window', () => {
    const v = new SecurityVerifier({ keyring });
    const high = encodeMessage(heartbeat(1_000_000), { security: keyring });
    high[high.length - 1]! ^= 1;
    expect(verdict(high, v)).toBe('FORGED');
    expect(verdict(encodeMessage(heartbeat(10), { security: keyring }), v)).toBe('ok');
  });

  it('keeps one replay window per sender', () => {
    const v = new SecurityVerifier({ keyring });
    expect(verdict(encodeMessage(heartbeat(100, 1), { security: keyring }), v)).toBe('ok');
    expect(verdict(encodeMessage(heartbeat(1, 2), { security: keyring }), v)).toBe('ok');
    expect(verdict(encodeMessage(heartbeat(1, 1), { security: keyring }), v)).toBe('ok'); // within sender 1's window
    expect(verdict(encodeMessage(heartbeat(1, 1), { security: keyring }), v)).toBe('REPLAYED');
  });

  it('detects any change to the header as forgery, including sender and sequence', () => {
    const v = new SecurityVerifier({ keyring });
    const b = encodeMessage(heartbeat(50), { security: keyring });
    for (const at of [1, 8, 19]) {
      const c = Buffer.from(b);
      c[at]! ^= 0x01;
      const r = verdict(c, v);
      expect(['FORGED', 'UNKNOWN_MESSAGE_TYPE']).toContain(r);
    }
    expect(v.counters.accepted).toBe(0);
  });

  it('rolls keys: a keyring accepting two ids verifies both while sending with the new one', () => {
    const receiver = new Keyring([
      { id: 1, secret: 'current' },
      { id: 2, secret: 'next' },
    ]);
    const v = new SecurityVerifier({ keyring: receiver });
    const sender = new Keyring([
      { id: 1, secret: 'current' },
      { id: 2, secret: 'next' },
    ]);
    expect(verdict(encodeMessage(heartbeat(1), { security: sender }), v)).toBe('ok');
    sender.useForSending(2);
    const withNew = encodeMessage(heartbeat(2), { security: sender });
    expect(withNew.readUInt16BE(26)).toBe(2);
    expect(verdict(withNew, v)).toBe('ok');
    sender.remove(1);
    expect(() => receiver.remove(1)).toThrow(ProtocolError); // still the receiver's own send key
    receiver.useForSending(2);
    receiver.remove(1);
    expect(verdict(encodeMessage(heartbeat(3), { security: new Keyring([{ id: 1, secret: 'current' }]) }), v)).toBe('WRONG_KEY');
    expect(() => receiver.remove(2)).toThrow(ProtocolError); // the send key stays
  });

  it('hashes HMAC keys longer than a block as RFC 2104 says', () => {
    const long = 'k'.repeat(100);
    const b = encodeMessage(heartbeat(1), { security: new Keyring([{ id: 4, secret: long }]) });
    const zeroed = Buffer.from(b);
    zeroed.fill(0, 28, 60);
    expect(b.subarray(28, 60).equals(createHmac('sha256', long).update(zeroed).digest())).toBe(true);
  });

  it('signs and verifies the largest messages with the longest keyed-MD5 key (key + 64 KiB + key fits the scratch)', () => {
    const long = new Keyring([{ id: 7, secret: Buffer.alloc(255, 0x41), algorithm: 'keyed-md5' }]);
    const v = new SecurityVerifier({ keyring: long, required: true });
    const big = (sequence: number): ServiceMessage => ({
      type: 'affinity-update-fixed',
      sender: 1,
      sequence,
      fixed: [{ affinity: { protocol: 6, srcAddr: 1, dstAddr: 2, srcPort: 3, dstPort: 4, flags: 0, ttlMs: 1000 }, actions: [] }],
      packet: new Uint8Array(65_300),
    });
    expect(verdict(encodeMessage(big(10), { security: long }), v)).toBe('ok');
    // the same shape signed with another key: refused as forged, before anything else is read
    const forged = encodeMessage(big(11), { security: new Keyring([{ id: 7, secret: 'short-key-16byte', algorithm: 'keyed-md5' }]) });
    expect(verdict(forged, v)).toBe('FORGED');
  });

  it('lets IP packet only messages through unsigned: they carry no security segment', () => {
    const v = new SecurityVerifier({ keyring, required: true });
    const m: ServiceMessage = { type: 'ip-packet-only', sender: 5, sequence: 1, packet: Buffer.from([0x45, 0, 0, 0]) };
    expect(verdict(encodeMessage(m), v)).toBe('ok');
    expect(v.counters.unauthenticated).toBe(0);
  });
});

describe('a receiver that does not require security', () => {
  it('accepts messages with or without the segment, but still drops a present bad one', () => {
    const v = new SecurityVerifier({ keyring, required: false });
    expect(verdict(encodeMessage(heartbeat(1)), v)).toBe('ok');
    expect(verdict(encodeMessage(heartbeat(2), { security: keyring }), v)).toBe('ok');
    const forged = encodeMessage(heartbeat(3), { security: keyring });
    forged[forged.length - 2]! ^= 4;
    expect(verdict(forged, v)).toBe('FORGED');
    expect(v.counters).toMatchObject({ accepted: 1, unsigned: 1, forged: 1 });
  });

  it('without any verifier, decoding ignores the security segment', () => {
    const forged = encodeMessage(heartbeat(3), { security: keyring });
    forged[30]! ^= 4; // inside the MAC
    expect(decodeMessage(forged)).toMatchObject({ type: 'heartbeat', sequence: 3 });
  });
});

describe('ReplayWindow', () => {
  it('accepts each sequence once, out of order within the window, and nothing older', () => {
    const w = new ReplayWindow(64);
    expect(w.accept(100)).toBe(true);
    expect(w.accept(98)).toBe(true);
    expect(w.accept(98)).toBe(false);
    expect(w.accept(100)).toBe(false);
    expect(w.accept(37)).toBe(true); // 100 - 37 = 63 < 64
    expect(w.accept(36)).toBe(false); // too old
    expect(w.accept(101)).toBe(true);
    expect(w.accept(99)).toBe(true);
    expect(w.highest).toBe(101);
    // a jump wider than the window forgets everything behind
    expect(w.accept(1000)).toBe(true);
    expect(w.accept(999)).toBe(true);
    expect(w.accept(936)).toBe(false);
    expect(w.accept(937)).toBe(true);
  });

  it('clears slots reused by advancing past them', () => {
    const w = new ReplayWindow(32);
    for (let s = 0; s < 32; s++) expect(w.accept(s)).toBe(true);
    expect(w.accept(40)).toBe(true); // slots of 33..39 cleared: those sequences are new
    for (let s = 33; s < 40; s++) expect(w.accept(s)).toBe(true);
    expect(w.accept(32)).toBe(true); // its slot (that of 0) was cleared: new
    expect(w.accept(9)).toBe(false); // 40 - 9 = 31: inside the window, seen
    expect(w.accept(8)).toBe(false); // 40 - 8 = 32: too old
  });

  it('works near 2^53', () => {
    const w = new ReplayWindow();
    const top = Number.MAX_SAFE_INTEGER;
    expect(w.accept(top - 5)).toBe(true);
    expect(w.accept(top)).toBe(true);
    expect(w.accept(top - 5)).toBe(false);
    expect(w.accept(top - 4)).toBe(true);
  });

  it('rejects window sizes that are not powers of two', () => {
    expect(() => new ReplayWindow(100)).toThrow(ProtocolError);
    expect(() => new SecurityVerifier({ keyring, replayWindow: 16 })).toThrow(ProtocolError);
  });

  it('initialSequence moves forward across restarts', () => {
    expect(initialSequence(1_700_000_000_001)).toBeGreaterThan(initialSequence(1_700_000_000_000) + 1000);
    expect(Number.isSafeInteger(initialSequence(Date.UTC(2200, 0, 1)))).toBe(true);
  });
});
