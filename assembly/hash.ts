// 32-bit hash of the 13-byte affinity key (and of masked wildcard keys). Two 64-bit words, a multiply
// per word and a splitmix64-style finaliser: every key bit reaches the top bits, which the
// multiply-shift slot reduction uses. The seed comes from the host at init (hash flooding).

import { hashSeed } from './layout';

// @ts-ignore: decorator
@inline export function hashKey(k0: u64, k1: u64): u32 {
  let x = (k0 ^ hashSeed) * 0x9e3779b97f4a7c15;
  x ^= k1 * 0xc2b2ae3d27d4eb4f;
  x ^= x >>> 29;
  x *= 0xbf58476d1ce4e5b9;
  x ^= x >>> 32;
  return <u32>x;
}

/** Maps a 32-bit hash onto [0, n) without division (Lemire's multiply-shift). */
// @ts-ignore: decorator
@inline export function reduce(h: u32, n: u32): u32 {
  return <u32>((<u64>h * <u64>n) >>> 32);
}
