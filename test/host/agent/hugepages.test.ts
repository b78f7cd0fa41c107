// Transparent huge pages for the firmware's memory: advised before the first touch where the kernel
// offers THP ("madvise" or "always"), skipped on request, and the firmware behaves the same either way.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { adviseHugePages } from '../../../host/agent/hugepages.ts';
import { ForwardingFirmware } from '../../../host/agent/wasm.ts';

const HUGE = 2 * 1024 * 1024;
function thpMode(): string {
  try {
    return /\[(\w+)\]/.exec(readFileSync('/sys/kernel/mm/transparent_hugepage/enabled', 'utf8'))?.[1] ?? 'none';
  } catch {
    return 'none';
  }
}
const thp = process.platform === 'linux' && (thpMode() === 'madvise' || thpMode() === 'always');

describe('huge pages for the firmware memory', () => {
  it.runIf(thp)('advises the 2-MiB-aligned part of a wasm memory', () => {
    const memory = new (globalThis as unknown as { WebAssembly: { Memory: new (d: { initial: number; maximum: number }) => { buffer: ArrayBuffer } } }).WebAssembly.Memory({ initial: 160, maximum: 160 }); // 10 MiB
    const advised = adviseHugePages(memory.buffer);
    expect(advised).toBeGreaterThan(0);
    expect(advised % HUGE).toBe(0);
    expect(advised).toBeLessThanOrEqual(memory.buffer.byteLength);
    expect(advised).toBeGreaterThanOrEqual(memory.buffer.byteLength - 2 * HUGE);
  });

  it('gives 0 for a buffer smaller than one huge page', () => {
    expect(adviseHugePages(new ArrayBuffer(4096))).toBe(0);
  });

  it.runIf(thp)('is on by default, off on request, and the firmware works the same', async () => {
    const on = await ForwardingFirmware.load({ budgetBytes: 8 * 1024 * 1024, seed: 1 });
    const off = await ForwardingFirmware.load({ budgetBytes: 8 * 1024 * 1024, seed: 1, hugePages: false });
    expect(on.hugePageBytes).toBeGreaterThan(0);
    expect(off.hugePageBytes).toBe(0);
    expect(on.capacities).toEqual(off.capacities);
  });
});
