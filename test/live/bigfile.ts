// The large deterministic download served by every backend: the same bytes everywhere, so a client can check
// a transfer byte for byte (sha256) whichever backend answered, and across a manager failover.

import { createHash } from 'node:crypto';

/** 50 MiB: the size the failover download uses. */
export const BIG_FILE_BYTES = 50 * 1024 * 1024;

/** xorshift32 stream from a fixed seed: cheap, deterministic, incompressible enough for a transfer test. */
export function bigFile(bytes: number = BIG_FILE_BYTES): Buffer {
  const words = new Uint32Array(Math.ceil(bytes / 4));
  let x = 0x9e3779b9;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    words[i] = x >>> 0;
  }
  return Buffer.from(words.buffer, 0, bytes);
}

export function bigFileSha256(bytes: number = BIG_FILE_BYTES): string {
  return createHash('sha256').update(bigFile(bytes)).digest('hex');
}
