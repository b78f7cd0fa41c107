// Internet checksum (RFC 1071) and incremental update (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')).
//
// Every 16-bit word is taken as a little-endian load sees it: one's-complement sums are byte-order
// independent, so loading, updating and storing "raw" words gives the same bytes as doing it in network
// order, with no swaps on the fast path.

/** Partial sum of the change of one 32-bit field from `o` to `n` (raw words). Add several, then apply. */
// @ts-ignore: decorator
@inline export function delta32(o: u32, n: u32): u32 {
  const no = ~o;
  return (no & 0xffff) + (no >>> 16) + (n & 0xffff) + (n >>> 16);
}

/** Partial sum of the change of one 16-bit field. */
// @ts-ignore: decorator
@inline export function delta16(o: u32, n: u32): u32 {
  return (~o & 0xffff) + (n & 0xffff);
}

/** Applies an accumulated delta to a stored checksum (raw word); returns the new raw word. */
// @ts-ignore: decorator
@inline export function csumApply(csum: u32, acc: u32): u32 {
  let s = (~csum & 0xffff) + acc;
  s = (s & 0xffff) + (s >>> 16);
  s = (s & 0xffff) + (s >>> 16);
  return ~s & 0xffff;
}

/** Full RFC 1071 sum (not complemented, folded to 16 bits) of `len` bytes at `p`, plus `initial`. */
export function sum16(p: usize, len: u32, initial: u32): u32 {
  let s: u64 = initial;
  let i: u32 = 0;
  while (i + 2 <= len) {
    s += load<u16>(p + i);
    i += 2;
  }
  if (i < len) s += load<u8>(p + i);
  while (s >>> 16) s = (s & 0xffff) + (s >>> 16);
  return <u32>s;
}
