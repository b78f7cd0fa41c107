// IPv4 addresses travel and live in memory as unsigned 32-bit numbers (network order when on the wire);
// these helpers convert to and from dotted quads at the edges (config, logs, tests).
import { ProtocolError } from './errors.ts';

const DOTTED_QUAD = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/;

/** "10.0.0.1" → 0x0a000001. Throws ProtocolError BAD_FIELD on anything but a dotted quad. */
export function ipToU32(ip: string): number {
  const m = DOTTED_QUAD.exec(ip);
  if (m === null) throw new ProtocolError('BAD_FIELD', `not an IPv4 dotted quad: ${JSON.stringify(ip)}`, { field: 'address' });
  let v = 0;
  for (let i = 1; i <= 4; i++) {
    const octet = Number(m[i]);
    if (octet > 255) throw new ProtocolError('BAD_FIELD', `IPv4 octet out of range in ${ip}`, { field: 'address' });
    v = v * 256 + octet;
  }
  return v;
}

/** 0x0a000001 → "10.0.0.1". */
export function u32ToIp(v: number): string {
  if (v >>> 0 !== v) throw new ProtocolError('BAD_FIELD', `not a u32 address: ${v}`, { field: 'address' });
  return `${v >>> 24}.${(v >>> 16) & 0xff}.${(v >>> 8) & 0xff}.${v & 0xff}`;
}

/** Prefix length → netmask: 24 → 0xffffff00; 0 → 0. */
export function prefixToMask(prefix: number): number {
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > 32) {
    throw new ProtocolError('BAD_FIELD', `prefix length out of range: ${prefix}`, { field: 'prefix' });
  }
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}
