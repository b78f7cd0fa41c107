// The checksum verification kernel of the firmware path (source: verify-kernel.wat, compiled with wabt's
// wat2wasm; test/host/rewrite/verify-kernel.test.ts checks these bytes against the source). It imports the
// firmware's memory, so it checks packets where the firmware will process them, with no copy.

import type { WasmMemory } from '../agent/wasm.ts';

export const VERIFY_KERNEL_WASM = Buffer.from(
  'AGFzbQEAAAABDgJgAX4Bf2AEf39/fwF/Ag8BA2VudgZtZW1vcnkCAAEDAwIAAQcKAQZ2ZXJpZnkAAQqrAgI1ACAAQv////8PgyAAQiCIfCEAAkADQCAAQhCIUA0BIABC//8DgyAAQhCIfCEADAALCyAApwvyAQMFfwF+AX8CQANAIAEgAk8NASAAIAFBBXRqIQQgAyAEKAIAaiEFIAQvAQQhBiAFNQIAIAU1AgR8IAU1AgggBTUCDHx8IAU1AhB8IQkgCRAAQf//A0cNASAGQRRrIQogBS0ACUEIdCAKQQh0QYD+A3EgCkEIdnJqrSEJIAVBDGohByAFIAZqIQgCQANAIAdBBGogCEsNASAJIAc1AgB8IQkgB0EEaiEHDAALCyAHQQJqIAhNBEAgCSAHMwEAfCEJIAdBAmohBwsgByAISQRAIAkgBzEAAHwhCQsgCRAAQf//A0cNASABQQFqIQEMAAsLIAEL',
  'base64',
);

/**
 * verify(desc, k, n, region): the first descriptor index in [k, n) whose packet's IPv4 header checksum or
 * TCP/UDP checksum does not check out, or n. `desc` and `region` are byte addresses in the memory.
 */
export type VerifyFn = (desc: number, k: number, n: number, region: number) => number;

interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { exports: Record<string, unknown> };
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
let compiled: object | null = null;

/** Instantiates the kernel over `memory` (the module is compiled once per process). */
export function loadVerifyKernel(memory: WasmMemory): VerifyFn {
  compiled ??= new WA.Module(VERIFY_KERNEL_WASM);
  return new WA.Instance(compiled, { env: { memory } }).exports.verify as VerifyFn;
}
