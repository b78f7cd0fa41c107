// encodeNumbered / encodeNumberedInto: the header's sender and sequence given apart from the message
// must give exactly the bytes of encoding the complete message, signed or not, and the same errors.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { encodeMessage, encodeNumbered, encodeNumberedInto, Keyring, ProtocolError, type ServiceMessage } from '../../../host/protocol/index.ts';
import { serviceMessage } from './arbitraries.ts';

const keyring = new Keyring([{ id: 7, secret: 'numbered-key' }]);

function unnumbered(m: ServiceMessage): ServiceMessage {
  const copy = { ...m } as Partial<ServiceMessage>;
  delete copy.sender;
  delete copy.sequence;
  return copy as ServiceMessage;
}

describe('encodeNumbered', () => {
  it('writes the bytes encodeMessage writes, with and without a keyring', () => {
    fc.assert(
      fc.property(serviceMessage, fc.boolean(), fc.nat(64), (m, signed, pad) => {
        const opts = signed ? { security: keyring } : undefined;
        const want = encodeMessage(m, opts);
        const bare = unnumbered(m);
        expect(Buffer.compare(encodeNumbered(bare, m.sender, m.sequence, opts), want)).toBe(0);
        const target = Buffer.alloc(pad + want.length + 8, 0xee);
        const len = encodeNumberedInto(bare, m.sender, m.sequence, target, pad, opts);
        expect(len).toBe(want.length);
        expect(Buffer.compare(target.subarray(pad, pad + len), want)).toBe(0);
        expect(target[pad + len]).toBe(0xee);
      }),
      { numRuns: 500 },
    );
  });

  it('refuses a bad sender or sequence as encodeMessage does, and reports a short target', () => {
    const m = { type: 'ip-packet-only', packet: new Uint8Array([0x45, 0, 0, 20]) } as const;
    expect(() => encodeNumbered(m, -1, 1)).toThrow(expect.objectContaining({ code: 'BAD_FIELD', field: 'sender' }));
    expect(() => encodeNumbered(m, 1, 2 ** 53)).toThrow(expect.objectContaining({ code: 'BAD_FIELD', field: 'sequence' }));
    let err: unknown;
    try {
      encodeNumberedInto(m, 1, 1, Buffer.alloc(30), 4);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(ProtocolError);
    expect((err as ProtocolError).code).toBe('BUFFER_TOO_SMALL');
  });
});
