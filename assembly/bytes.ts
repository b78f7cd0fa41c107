// Byte swaps as inline expressions (the std polyfills compile to calls the engine may not inline).

/** Swaps the two bytes of a 16-bit value held in a u32. */
// @ts-ignore: decorator
@inline export function swap16(x: u32): u32 {
  return ((x & 0xff) << 8) | ((x >>> 8) & 0xff);
}

/** Reverses the four bytes of a u32. */
// @ts-ignore: decorator
@inline export function swap32(x: u32): u32 {
  return rotr<u32>(((x & 0xff00ff00) >>> 8) | ((x & 0x00ff00ff) << 8), 16);
}
