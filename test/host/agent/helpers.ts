// Test helpers around the firmware wrapper.
import { ForwardingFirmware, type DescriptorInput, type Verdict, type WildcardAffinity } from '../../../host/agent/wasm.ts';

export const NOW = 1_700_000_000_000;
/** Small budget: fast init, still thousands of fixed slots. */
export const SMALL_BUDGET = 8 * 1024 * 1024;

export async function loadSmall(extra: Parameters<typeof ForwardingFirmware.load>[0] = {}): Promise<ForwardingFirmware> {
  return ForwardingFirmware.load({ budgetBytes: SMALL_BUDGET, wildcardCapacity: 16384, extCapacity: 4096, seed: 42, ...extra });
}

/** A wildcard matching every packet (all masks 0), owner 99, no actions: supports any fixed affinity. */
export function catchAll(over: Partial<WildcardAffinity> = {}): WildcardAffinity {
  return {
    proto: 0, saddr: 0, smask: 0, daddr: 0, dmask: 0, sport: 0, dport: 0, ttlSec: 3600, owner: 99,
    servicePrecedence: 0, backupPrecedence: 0, ...over,
  };
}

export interface RunResult {
  verdict: Verdict;
  out: Uint8Array;
}

/** Runs one packet through the firmware (descriptor 0) and returns the verdict and the bytes after. */
export function runOne(fw: ForwardingFirmware, bytes: Uint8Array, nowMs = NOW, input?: DescriptorInput): RunResult {
  fw.writePacket(0, bytes, input);
  fw.process(1, nowMs);
  return { verdict: fw.verdict(0), out: fw.packet(0).slice() };
}
