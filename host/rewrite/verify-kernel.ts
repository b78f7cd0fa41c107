// The admission kernel of the firmware path: which packets of a chunk may take the firmware's incremental
// NAT (header rules and checksum verification; source: verify-kernel.wat, compiled with wabt's wat2wasm;
// test/host/rewrite/verify-kernel.test.ts checks these bytes against the source). It imports the
// firmware's memory, so it looks at packets where the firmware will process them, with no copy.

import type { WasmMemory } from '../agent/wasm.ts';

export const VERIFY_KERNEL_WASM = Buffer.from(
  'AGFzbQEAAAABFANgAX4Bf2ABfwF/YAV/f39/fwF/Ag8BA2VudgZtZW1vcnkCAAEDBAMAAQIHCQEFYWRtaXQAAgrKAwM1ACAAQv////8PgyAAQiCIfCEAAkADQCAAQhCIUA0BIABC//8DgyAAQhCIfCEADAALCyAApwsQACAALQAAQQh0IAAtAAFyC4ADAwV/AX4DfwJAA0AgASACTw0BIAAgAUEFdGohBSADIAUoAgBqIQYgBS8BBCEHIAdBHEkNASAGLQAAQcUARw0BIAZBAmoQASAHRw0BIAZBBmoQAUH//wBxDQEgBi0ADEEEdkEORg0BIAYtABBBBHZBDkYNASAGLQAJIQwgDEEGRgRAIAdBKEkNAiAGLwEkIQ0FIAxBEUcNAiAGLwEaIQ0gDUUNAgsgDUH//wNGDQEgBi8BCkH//wNGDQEgBARAIAY1AgAgBjUCBHwgBjUCCCAGNQIMfHwgBjUCEHwhCiAKEABB//8DRw0CIAdBFGshCyAMQQh0IAtBCHRBgP4DcSALQQh2cmqtIQogBkEMaiEIIAYgB2ohCQJAA0AgCEEEaiAJSw0BIAogCDUCAHwhCiAIQQRqIQgMAAsLIAhBAmogCU0EQCAKIAgzAQB8IQogCEECaiEICyAIIAlJBEAgCiAIMQAAfCEKCyAKEABB//8DRw0CCyABQQFqIQEMAAsLIAEL',
  'base64',
);

/**
 * admit(desc, k, n, region, verify): the first descriptor index in [k, n) whose packet may not take the
 * incremental path (see verify-kernel.wat), or n. `desc` and `region` are byte addresses in the memory;
 * verify = 0 skips the checksum sums.
 */
export type AdmitFn = (desc: number, k: number, n: number, region: number, verify: number) => number;

interface WasmApi {
  Module: new (bytes: Uint8Array) => object;
  Instance: new (module: object, imports: Record<string, Record<string, unknown>>) => { exports: Record<string, unknown> };
}
const WA = (globalThis as unknown as { WebAssembly: WasmApi }).WebAssembly;
let compiled: object | null = null;

/** Instantiates the kernel over `memory` (the module is compiled once per process). */
export function loadAdmitKernel(memory: WasmMemory): AdmitFn {
  compiled ??= new WA.Module(VERIFY_KERNEL_WASM);
  return new WA.Instance(compiled, { env: { memory } }).exports.admit as AdmitFn;
}
