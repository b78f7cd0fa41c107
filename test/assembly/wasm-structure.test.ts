// Reads the compiled firmware with wabt: the memory limits are the budget (minimum == maximum), nothing
// can grow memory, and the hot exports (process, tick, lookupFixed) never reach the allocator.
//
// Honest strength of the check: the release binary declares its imported memory with min == max ==
// 1024 pages (the default 64 MiB budget), and the loader rewrites only those two numbers for another
// budget (checked below on a patched binary). On top of that the module contains no memory.grow at all,
// so a host that passed a growable memory still could not see it grow. The allocator check walks the
// call graph from the hot exports: in the release build (no debug names) no reachable function may
// contain memory.grow (the stub allocator's tell-tale); in the debug build (names kept) no reachable
// function may be ~lib/rt/* or be called __alloc / __new.

import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import wabtInit from 'wabt';
import {
  Capability, DEFAULT_BUDGET_BYTES, ForwardingFirmware, Status, WASM_PAGE, memoryImportLimits, withMemoryPages,
} from '../../host/agent/wasm.ts';

const HOT_EXPORTS = ['process', 'tick', 'lookupFixed'];
const release = new Uint8Array(readFileSync(new URL('../../build/agent.wasm', import.meta.url)));
const debug = new Uint8Array(readFileSync(new URL('../../build/agent.debug.wasm', import.meta.url)));

async function toWat(bin: Uint8Array): Promise<string> {
  const wabt = await wabtInit();
  const mod = wabt.readWasm(bin, { readDebugNames: true });
  mod.generateNames();
  mod.applyNames();
  const text = mod.toText({ foldExprs: false, inlineExport: false });
  mod.destroy();
  return text;
}

interface Parsed {
  memory: { min: number; max: number | undefined } | null;
  funcs: Map<string, string>; // name -> body
  exports: Map<string, string>; // export name -> func name
}

function parse(wat: string): Parsed {
  const mem = /\(import "env" "memory" \(memory \S+ (\d+)(?: (\d+))?\)\)/.exec(wat);
  const funcs = new Map<string, string>();
  const re = /^ {2}\(func (\$\S+)/gm;
  const starts: [string, number][] = [];
  for (let m = re.exec(wat); m; m = re.exec(wat)) starts.push([m[1]!, m.index]);
  starts.forEach(([name, at], i) => funcs.set(name, wat.slice(at, i + 1 < starts.length ? starts[i + 1]![1] : wat.length)));
  const exports = new Map<string, string>();
  for (const m of wat.matchAll(/\(export "([^"]+)" \(func (\$[^)\s]+)\)\)/g)) exports.set(m[1]!, m[2]!);
  return { memory: mem ? { min: Number(mem[1]), max: mem[2] === undefined ? undefined : Number(mem[2]) } : null, funcs, exports };
}

function reachable(p: Parsed, roots: string[]): Set<string> {
  const seen = new Set<string>();
  const todo = roots.map((r) => {
    const f = p.exports.get(r);
    if (!f) throw new Error(`export ${r} missing`);
    return f;
  });
  while (todo.length) {
    const f = todo.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    const body = p.funcs.get(f) ?? '';
    for (const m of body.matchAll(/\bcall (\$\S+)/g)) todo.push(m[1]!);
    if (/\bcall_indirect\b|\breturn_call_indirect\b/.test(body)) throw new Error(`${f} makes an indirect call: cannot prove the allocator unreachable`);
  }
  return seen;
}

describe('build/agent.wasm structure', () => {
  it('imports its memory with minimum == maximum == the default budget, and never grows it', async () => {
    const p = parse(await toWat(release));
    expect(p.memory).toEqual({ min: DEFAULT_BUDGET_BYTES / WASM_PAGE, max: DEFAULT_BUDGET_BYTES / WASM_PAGE });
    expect(memoryImportLimits(release)).toEqual({ min: 1024, max: 1024 });
    for (const [name, body] of p.funcs) expect(/\bmemory\.grow\b/.test(body), name).toBe(false);
  });

  it('a patched budget changes only the memory limits', async () => {
    const patched = withMemoryPages(release, 128);
    const p = parse(await toWat(patched));
    expect(p.memory).toEqual({ min: 128, max: 128 });
    const orig = parse(await toWat(release));
    expect([...p.funcs.values()].join('')).toBe([...orig.funcs.values()].join(''));
    const fw = await ForwardingFirmware.load({ budgetBytes: 128 * WASM_PAGE });
    expect(fw.memory.buffer.byteLength).toBe(128 * WASM_PAGE);
    expect(() => fw.memory.grow(1)).toThrow();
    expect(fw.capacities.endBytes).toBeLessThanOrEqual(128 * WASM_PAGE);
  });

  it('hot exports never reach anything that can allocate (release: no memory.grow reachable)', async () => {
    const p = parse(await toWat(release));
    const r = reachable(p, HOT_EXPORTS);
    expect(r.size).toBeGreaterThan(HOT_EXPORTS.length - 1);
    for (const f of r) expect(/\bmemory\.grow\b/.test(p.funcs.get(f) ?? ''), f).toBe(false);
  });

  it('hot exports never call the allocator (debug build, with names)', async () => {
    const p = parse(await toWat(debug));
    expect(p.memory).toEqual({ min: 1024, max: 1024 });
    const r = reachable(p, HOT_EXPORTS);
    expect(r.size).toBeGreaterThan(3);
    expect([...r].some((f) => f.includes('processBatch'))).toBe(true); // the walk sees real names
    for (const f of r) {
      expect(f).not.toMatch(/~lib\/rt|__alloc|__new|__renew|__realloc/);
      expect(/\bmemory\.grow\b/.test(p.funcs.get(f) ?? ''), f).toBe(false);
    }
    // and the allocator is not in the module at all
    expect([...p.funcs.keys()].filter((f) => /__alloc|__new/.test(f))).toEqual([]);
  });
});

describe('a build that leaves an action out', () => {
  it('--use WASMLB_FEATURES without sequence adjust: capability gone, code gone, install refused', async () => {
    const { main } = await import('assemblyscript/asc');
    const dir = mkdtempSync(join(tmpdir(), 'wasmlb-min-'));
    try {
      const out = join(dir, 'agent.min.wasm');
      const features = 0x7f & ~Capability.SEQ_ADJUST;
      const res = await main(['assembly/index.ts', '--config', 'asconfig.json', '--target', 'release', '--optimizeLevel', '1', '--use', `WASMLB_FEATURES=${features}`, '-o', out, '-t', join(dir, 'agent.min.wat')]);
      expect(res.error).toBeFalsy();
      const min = new Uint8Array(readFileSync(out));
      const full = join(dir, 'agent.full.wasm');
      expect((await main(['assembly/index.ts', '--config', 'asconfig.json', '--target', 'release', '--optimizeLevel', '1', '-o', full])).error).toBeFalsy();
      expect(min.length).toBeLessThan(readFileSync(full).length);
      const fw = await ForwardingFirmware.load({ wasmPath: out, budgetBytes: 8 * 1024 * 1024 });
      expect(fw.hasCapability('SEQ_ADJUST')).toBe(false);
      expect(fw.hasCapability('NAT')).toBe(true);
      expect(fw.installWildcard({ proto: 0, saddr: 0, smask: 0, daddr: 0, dmask: 0, sport: 0, dport: 0, ttlSec: 10, owner: 1, servicePrecedence: 0, backupPrecedence: 0 }, 0)).toBe(Status.OK);
      expect(fw.installFixed({ proto: 6, saddr: 1, daddr: 2, sport: 3, dport: 4, ttlSec: 10, owner: 1, seqAdjust: { seqInit: 0, seqDelta: 1, ackInit: 0, ackDelta: 0 } }, 0)).toBe(Status.UNSUPPORTED_ACTION);
      expect(fw.installFixed({ proto: 6, saddr: 1, daddr: 2, sport: 3, dport: 4, ttlSec: 10, owner: 1, natDstAddr: 5 }, 0)).toBe(Status.OK);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
