// ServiceChannel over loopback: messages are encoded straight into the datagram being built for
// their destination; a burst larger than one datagram is split on message boundaries, nothing is
// lost or reordered, and each message keeps its own sequence number.
import { afterEach, describe, expect, it } from 'vitest';
import { Keyring, SecurityVerifier, type ServiceMessage } from '../../../host/protocol/index.ts';
import { ServiceChannel } from '../../../host/transport/channel.ts';
import { ControlSocket, MAX_DATAGRAM } from '../../../host/transport/udp.ts';

const open: ServiceChannel[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((c) => c.close()));
});

async function channel(opts: { keyring?: Keyring; verifier?: SecurityVerifier } = {}, sender = 0x1234): Promise<ServiceChannel> {
  const socket = await ControlSocket.open({ bind: { address: '127.0.0.1', port: 0 } });
  const c = new ServiceChannel({ socket, sender, ...opts });
  open.push(c);
  return c;
}

function receive(c: ServiceChannel, n: number): Promise<ServiceMessage[]> {
  const got: ServiceMessage[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`got ${got.length} of ${n} messages`)), 5000);
    c.onMessage((m) => {
      got.push(m);
      if (got.length === n) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

function packet(i: number, len = 64): Uint8Array {
  const p = new Uint8Array(len);
  p[0] = 0x45;
  p[4] = i >>> 8;
  p[5] = i & 0xff;
  return p;
}

describe('ServiceChannel', () => {
  it('counts and reports an error a message handler threw, and goes on with the next message', async () => {
    const a = await channel();
    const b = await channel();
    const seen: number[] = [];
    const errors: string[] = [];
    b.onMessage((m) => {
      if (m.type !== 'ip-packet-only') return;
      if (m.packet[5] === 1) throw new Error('handler failed');
      seen.push(m.packet[5]!);
    });
    b.onHandlerError((err, m) => errors.push(`${m.type}: ${(err as Error).message}`));
    for (const i of [1, 2]) a.send({ type: 'ip-packet-only', packet: packet(i) }, b.socket.local);
    const end = Date.now() + 5000;
    while (seen.length < 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 5));
    expect(seen).toEqual([2]);
    expect(errors).toEqual(['ip-packet-only: handler failed']);
    expect(b.stats.handlerErrors).toBe(1);
  });

  it('splits a burst across datagrams on message boundaries, in order, each message whole', async () => {
    const rx = await channel();
    const tx = await channel();
    // 1500 messages of 120 bytes: ~180 KB, more than three datagrams.
    const n = 1500;
    const got = receive(rx, n);
    for (let i = 0; i < n; i++) tx.send({ type: 'ip-packet-only', packet: packet(i, 96 + (i % 4) * 4) }, rx.socket.local);
    const msgs = await got;
    expect(tx.socket.stats.datagramsOut).toBeGreaterThanOrEqual(3);
    expect(tx.socket.stats.datagramsOut).toBeLessThan(10);
    expect(rx.stats.refused).toBe(0);
    const first = msgs[0]!.sequence;
    msgs.forEach((m, i) => {
      expect(m.type).toBe('ip-packet-only');
      expect(m.sender).toBe(0x1234);
      expect(m.sequence).toBe(first + i);
      if (m.type === 'ip-packet-only') {
        expect(m.packet.length).toBe(96 + (i % 4) * 4);
        expect((m.packet[4]! << 8) | m.packet[5]!).toBe(i);
      }
    });
  });

  it('sends a message too big to share a datagram alone, after what was queued before it', async () => {
    const rx = await channel();
    const tx = await channel();
    const got = receive(rx, 3);
    tx.send({ type: 'ip-packet-only', packet: packet(1) }, rx.socket.local);
    tx.send({ type: 'ip-packet-only', packet: packet(2, MAX_DATAGRAM + 100) }, rx.socket.local);
    tx.send({ type: 'ip-packet-only', packet: packet(3) }, rx.socket.local);
    const msgs = await got;
    expect(msgs.map((m) => (m.type === 'ip-packet-only' ? m.packet.length : 0))).toEqual([64, MAX_DATAGRAM + 100, 64]);
    expect(msgs[1]!.sequence).toBe(msgs[0]!.sequence + 1);
    expect(msgs[2]!.sequence).toBe(msgs[1]!.sequence + 1);
  });

  it('signs each message it writes into a shared datagram; the verifier accepts every one', async () => {
    const keyring = new Keyring([{ id: 3, secret: 'channel-test' }]);
    const rx = await channel({ verifier: new SecurityVerifier({ keyring, required: true }) });
    const tx = await channel({ keyring });
    const n = 700;
    const got = receive(rx, n);
    for (let i = 0; i < n; i++) {
      tx.send(
        {
          type: 'affinity-update-fixed',
          fixed: [{ affinity: { protocol: 6, srcAddr: i, dstAddr: 2, srcPort: 3, dstPort: 4, flags: 0, ttlMs: 1000 }, actions: [{ kind: 'dispatch', nextHop: i }] }],
          packet: packet(i),
        },
        rx.socket.local,
      );
    }
    const msgs = await got;
    expect(rx.stats.refused).toBe(0);
    msgs.forEach((m, i) => {
      expect(m.type === 'affinity-update-fixed' && m.fixed[0]!.affinity.srcAddr).toBe(i);
    });
  });
});
