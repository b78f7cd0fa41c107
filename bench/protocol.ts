// Service message codec throughput on one thread: an affinity update-fixed carrying one fixed affinity, a NAT
// action and a 64-byte IP packet (the message a manager sends for every new flow), encoded and decoded.
// Targets (issue 3): ≥ 1M msgs/s without security, ≥ 300K msgs/s with HMAC-SHA256.
import type { BenchOptions, BenchRow, BenchSection } from './lib.ts';
import { opsPerSec } from './lib.ts';
import {
  decodeMessage,
  encodeMessage,
  encodeMessageInto,
  ipToU32,
  Keyring,
  SecurityVerifier,
  type AffinityUpdateFixedMessage,
} from '../host/protocol/index.ts';

const BATCH = 1000;

function sampleMessage(): AffinityUpdateFixedMessage {
  const packet = Buffer.alloc(64);
  packet[0] = 0x45;
  packet.writeUInt16BE(64, 2);
  packet[9] = 6;
  return {
    type: 'affinity-update-fixed',
    sender: ipToU32('10.9.0.1'),
    sequence: 1,
    fixed: [
      {
        affinity: { protocol: 6, srcAddr: ipToU32('10.0.0.1'), dstAddr: ipToU32('192.0.2.10'), srcPort: 40000, dstPort: 80, flags: 0, ttlMs: 10_000 },
        actions: [{ kind: 'nat', dstAddr: ipToU32('10.1.0.5'), dstPort: 8080 }],
      },
    ],
    packet,
  };
}

async function run(opts: BenchOptions): Promise<BenchRow[]> {
  const ms = opts.quick ? 150 : 1500;
  const msg = sampleMessage();
  const hmac = new Keyring([{ id: 1, secret: 'bench-secret-0123456789abcdef' }]);
  const md5 = new Keyring([{ id: 2, secret: 'bench-secret-0123456789abcdef', algorithm: 'keyed-md5' }]);
  const hmacVerifier = new SecurityVerifier({ keyring: hmac, required: true });
  const md5Verifier = new SecurityVerifier({ keyring: md5, required: true });
  const target = Buffer.alloc(2048);
  const plainBytes = encodeMessage(msg);
  let seq = 1;
  let sink = 0;

  const cases: Array<[string, () => number]> = [
    [
      'encode+decode, no security',
      () => {
        for (let i = 0; i < BATCH; i++) {
          msg.sequence = seq++;
          sink += decodeMessage(encodeMessage(msg)).sequence;
        }
        return BATCH;
      },
    ],
    [
      'encode+decode, HMAC-SHA256',
      () => {
        for (let i = 0; i < BATCH; i++) {
          msg.sequence = seq++;
          sink += decodeMessage(encodeMessage(msg, { security: hmac }), { security: hmacVerifier }).sequence;
        }
        return BATCH;
      },
    ],
    [
      'encode+decode, keyed MD5',
      () => {
        for (let i = 0; i < BATCH; i++) {
          msg.sequence = seq++;
          sink += decodeMessage(encodeMessage(msg, { security: md5 }), { security: md5Verifier }).sequence;
        }
        return BATCH;
      },
    ],
    [
      'encodeInto (reused buffer), no security',
      () => {
        for (let i = 0; i < BATCH; i++) {
          msg.sequence = seq++;
          sink += encodeMessageInto(msg, target, 0);
        }
        return BATCH;
      },
    ],
    [
      'decode only, no security',
      () => {
        for (let i = 0; i < BATCH; i++) sink += decodeMessage(plainBytes).sequence;
        return BATCH;
      },
    ],
  ];

  const rows: BenchRow[] = [];
  for (const [name, fn] of cases) {
    opsPerSec(fn, opts.quick ? 60 : 300); // warm up: let the JIT settle on this case's paths before timing
    rows.push({ name, msgsPerSec: Math.round(opsPerSec(fn, ms)) });
  }
  if (sink === -1) rows.push({ name: 'unreachable', msgsPerSec: sink });
  if (hmacVerifier.counters.accepted === 0 || md5Verifier.counters.accepted === 0) {
    throw new Error('protocol bench: verifier accepted nothing; the signed cases measured failures');
  }
  return rows;
}

export const section: BenchSection = {
  name: 'protocol',
  title: 'Service message codec (affinity update-fixed: fixed affinity + NAT action + 64-byte IP packet), one thread',
  run,
};
