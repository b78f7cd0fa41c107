// Packet sets for the fast-path benchmarks: 64-byte IPv4/TCP packets (20 B IP + 20 B TCP + 24 B
// payload) from `flows` distinct clients to one VIP, with correct IP and TCP checksums.

export const VIP = 0x0a000064; // 10.0.0.100
export const VIP_PORT = 80;
export const PACKET_LEN = 64;

export interface PacketSet {
  /** `count` packets back to back, PACKET_LEN bytes each. */
  bytes: Uint8Array;
  count: number;
  /** Client address and port of flow i (the affinity key's source). */
  clientAddr(i: number): number;
  clientPort(i: number): number;
}

/** Client i: 10.64.0.0 + i/32768 spread, ports 1024.. — distinct 5-tuples for up to 2^22 flows. */
function clientAddrOf(i: number): number {
  return (0x0a400000 + (i >>> 5)) >>> 0;
}
function clientPortOf(i: number): number {
  return 1024 + (i & 31) * 2000 + ((i >>> 17) & 1023);
}

function sum16(b: Uint8Array, off: number, len: number, init: number): number {
  let s = init;
  for (let i = 0; i + 1 < len; i += 2) s += (b[off + i]! << 8) | b[off + i + 1]!;
  if (len & 1) s += b[off + len - 1]! << 8;
  return s;
}
function fold(s: number): number {
  while (s > 0xffff) s = (s & 0xffff) + (s >>> 16);
  return s;
}

/** Writes one 64-byte TCP packet of flow `flow` at `off`. */
export function writeTcpPacket(b: Uint8Array, off: number, saddr: number, sport: number, daddr: number, dport: number, seq: number): void {
  const dv = new DataView(b.buffer, b.byteOffset + off, PACKET_LEN);
  b.fill(0, off, off + PACKET_LEN);
  dv.setUint8(0, 0x45);
  dv.setUint16(2, PACKET_LEN);
  dv.setUint16(4, seq & 0xffff);
  dv.setUint16(6, 0x4000); // DF
  dv.setUint8(8, 64);
  dv.setUint8(9, 6);
  dv.setUint32(12, saddr);
  dv.setUint32(16, daddr);
  dv.setUint16(10, ~fold(sum16(b, off, 20, 0)) & 0xffff);
  dv.setUint16(20, sport);
  dv.setUint16(22, dport);
  dv.setUint32(24, seq >>> 0);
  dv.setUint32(28, 1);
  dv.setUint8(32, 5 << 4);
  dv.setUint8(33, 0x18); // PSH|ACK
  dv.setUint16(34, 65535);
  for (let i = 40; i < PACKET_LEN; i++) b[off + i] = (i * 7 + seq) & 0xff;
  const pseudo = (saddr >>> 16) + (saddr & 0xffff) + (daddr >>> 16) + (daddr & 0xffff) + 6 + (PACKET_LEN - 20);
  dv.setUint16(36, ~fold(sum16(b, off + 20, PACKET_LEN - 20, pseudo)) & 0xffff);
}

/** `count` packets cycling over `flows` flows in a shuffled but deterministic order. */
export function makePacketSet(flows: number, count: number): PacketSet {
  const bytes = new Uint8Array(count * PACKET_LEN);
  // Stride through flows with a multiplier coprime to `flows` so consecutive packets hit
  // different table slots, as interleaved traffic of many clients does.
  const stride = pickStride(flows);
  for (let p = 0; p < count; p++) {
    const f = (p * stride) % flows;
    writeTcpPacket(bytes, p * PACKET_LEN, clientAddrOf(f), clientPortOf(f), VIP, VIP_PORT, p);
  }
  return { bytes, count, clientAddr: clientAddrOf, clientPort: clientPortOf };
}

function gcd(a: number, b: number): number {
  while (b) [a, b] = [b, a % b];
  return a;
}
function pickStride(n: number): number {
  let s = 7919;
  while (gcd(s, n) !== 1) s += 2;
  return s % n || 1;
}

/** Backend i of `n` for DNAT: 10.1.0.1 .. */
export function backendAddr(i: number): number {
  return (0x0a010001 + i) >>> 0;
}
