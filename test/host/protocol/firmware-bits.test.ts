// The interest bits travel unchanged between the firmware (its verdicts), the agent host (interest matches)
// and the managers (interest criteria masks): the protocol's names must mean the firmware's bits.
import { describe, expect, it } from 'vitest';
import { InterestBit } from '../../../host/protocol/index.ts';
import { InterestBit as FirmwareBit } from '../../../host/agent/wasm.ts';

describe('interest bits', () => {
  it('are the firmware numbering, bit for bit', () => {
    const protocolBits = {
      FIN: InterestBit.Fin,
      SYN: InterestBit.Syn,
      RST: InterestBit.Rst,
      PSH: InterestBit.Psh,
      ACK: InterestBit.Ack,
      URG: InterestBit.Urg,
      DATA: InterestBit.Data,
      FIRST_DATA: InterestBit.FirstData,
      FRAGMENT: InterestBit.Fragment,
      ALL: InterestBit.All,
    };
    expect(protocolBits).toEqual({ ...FirmwareBit });
  });

  it('fit the 16-bit interest criteria mask', () => {
    for (const bit of Object.values(InterestBit)) expect(bit & 0xffff).toBe(bit);
  });
});
