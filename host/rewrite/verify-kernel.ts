// The admission kernel of the firmware path: which packets of a chunk may take the firmware's incremental
// NAT (header rules and checksum verification; source: verify-kernel.wat, compiled with wabt's wat2wasm;
// test/host/rewrite/verify-kernel.test.ts checks these bytes against the source). It imports the
// firmware's memory, so it looks at packets where the firmware will process them, with no copy.

import type { WasmMemory } from '../agent/wasm.ts';

export const VERIFY_KERNEL_WASM = Buffer.from(
  'AGFzbQEAAAABFgNgBX9/f39/AX9gBH9/f38Bf2AAAX8CDwEDZW52Bm1lbW9yeQIAAQMEAwABAgYGAX8BQQALBx4DBWFkbWl0AAAGc2V0dGxlAAEJcmV3cml0dGVuAAIK/gQDggQDBX8BfgN/AkADQCABIAJPDQEgACABQQV0aiEFIAMgBSgCAGohBiAFLwEEIQcgB0EcSQ0BIAYtAABBxQBHDQEgBi8BAiAHQQh0QYD+A3EgB0EIdnJHDQEgBi8BBkG//gNxDQEgBi0ADEEEdkEORg0BIAYtABBBBHZBDkYNASAGLQAJIQwgDEEGRgRAIAdBKEkNAiAGLwEkIQ0FIAxBEUcNAiAGLwEaIQ0gDUUNAgsgDUH//wNGDQEgBi8BCkH//wNGDQEgBARAIAY1AgAgBjUCBHwgBjUCCCAGNQIMfHwgBjUCEHwhCiAKQv////8PgyAKQiCIfCEKIApC//8DgyAKQhCIfCEKIApC//8DgyAKQhCIfCEKIApC//8DgyAKQhCIfCEKIApC//8DUg0CIAdBFGshCyAMQQh0IAtBCHRBgP4DcSALQQh2cmqtIQogBkEMaiEIIAYgB2ohCQJAA0AgCEEEaiAJSw0BIAogCDUCAHwhCiAIQQRqIQgMAAsLIAhBAmogCU0EQCAKIAgzAQB8IQogCEECaiEICyAIIAlJBEAgCiAIMQAAfCEKCyAKQv////8PgyAKQiCIfCEKIApC//8DgyAKQhCIfCEKIApC//8DgyAKQhCIfCEKIApC//8DgyAKQhCIfCEKIApC//8DUg0CCyABQQFqIQEMAAsLIAELaQECfwJAA0AgASACTw0BIAAgAUEFdGohBCAELQAMQQFHDQEgBC8BDkEIcQRAIwBBAWokACADIAQoAgBqIQUgBS0ACUERRiAFLwEaQf//A0ZxBEAgBUEAOwEaCwsgAUEBaiEBDAALCyABCw4BAX8jACEAQQAkACAACw==',
  'base64',
);

export interface AdmissionKernel {
  /**
   * The first descriptor index in [k, n) whose packet may not take the incremental path (see
   * verify-kernel.wat), or n. `desc` and `region` are byte addresses in the memory; verify = 0 skips the
   * checksum sums.
   */
  admit(desc: number, k: number, n: number, region: number, verify: number): number;
  /**
   * After process(): the first descriptor index in [k, n) whose verdict is not FORWARD, or n; counts the
   * rewritten packets on the way and writes a UDP checksum of 0xffff as 0x0000 (as tcprewrite does).
   */
  settle(desc: number, k: number, n: number, region: number): number;
  /** Packets settle() found rewritten since the last call. */
  rewritten(): number;
}

interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { exports: Record<string, unknown> };
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
let compiled: object | null = null;

/** Instantiates the kernel over `memory` (the module is compiled once per process). */
export function loadAdmissionKernel(memory: WasmMemory): AdmissionKernel {
  compiled ??= new WA.Module(VERIFY_KERNEL_WASM);
  return new WA.Instance(compiled, { env: { memory } }).exports as unknown as AdmissionKernel;
}
