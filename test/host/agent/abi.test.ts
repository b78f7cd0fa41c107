// The TypeScript mirror of the firmware ABI agrees with the AssemblyScript sources: status codes, counter
// names and indices, action and capability bits, descriptor, control record and layout record offsets.

import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import {
  Action, Capability, CONTROL_LAYOUT, DESC, DescIn, DescOut, DropReason, LAYOUT_WORDS, Status, VerdictCode,
} from '../../../host/agent/wasm.ts';
import { COUNTER_NAMES, COUNTER_INDEX } from '../../../host/agent/counters.ts';
import { statusName, FirmwareError } from '../../../host/agent/status.ts';
import { loadSmall } from './helpers.ts';

const src = (f: string): string => readFileSync(new URL(`../../../assembly/${f}`, import.meta.url), 'utf8');

/** `NAME = value,` lines of `export const enum <name> { ... }`. */
function enumOf(text: string, name: string): Map<string, number> {
  const body = new RegExp(`export const enum ${name} \\{([\\s\\S]*?)\\n\\}`).exec(text)?.[1];
  if (!body) throw new Error(`enum ${name} not found`);
  return new Map([...body.matchAll(/^\s*([A-Z_0-9]+) = (\d+),/gm)].map((m) => [m[1]!, Number(m[2])]));
}

/** `export const PREFIX_NAME... = <expr>;` constants, evaluating `1 << n` and integers. */
function constsOf(text: string, prefix: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const m of text.matchAll(new RegExp(`export const ${prefix}([A-Z_0-9]+)(?:: \\w+)? = ([^;]+);`, 'g'))) {
    const expr = m[2]!.trim();
    const shift = /^1 << (\d+)$/.exec(expr);
    if (shift) out.set(m[1]!, 1 << Number(shift[1]));
    else if (/^\d+$/.test(expr)) out.set(m[1]!, Number(expr));
  }
  return out;
}

describe('ABI mirror', () => {
  it('status codes agree', () => {
    const as = enumOf(src('status.ts'), 'Status');
    expect(Object.fromEntries(as)).toEqual(Status);
    expect(statusName(2)).toBe('NO_WILDCARD');
    expect(new FirmwareError(6, 'init').code).toBe('NO_MEMORY');
  });

  it('counter names and indices agree', () => {
    const as = enumOf(src('counters.ts'), 'Counter');
    const count = as.get('COUNT');
    as.delete('COUNT');
    expect(count).toBe(COUNTER_NAMES.length);
    expect(Object.fromEntries(as)).toEqual(COUNTER_INDEX);
  });

  it('action, capability, verdict, reason and descriptor constants agree', () => {
    const f = src('features.ts');
    const act = constsOf(f, 'ACT_');
    for (const [k, v] of Object.entries(Action)) expect(act.get(k), k).toBe(v);
    const cap = constsOf(f, 'CAP_');
    for (const [k, v] of Object.entries(Capability)) expect(cap.get(k), k).toBe(v);
    const l = src('layout.ts');
    const d = constsOf(l, 'D_');
    for (const [k, v] of Object.entries(DESC)) if (k !== 'SIZE') expect(d.get(k), k).toBe(v);
    expect(constsOf(l, 'DESC_').get('SIZE')).toBe(DESC.SIZE);
    const vin = constsOf(l, 'DIN_');
    for (const [k, v] of Object.entries(DescIn)) expect(vin.get(k), k).toBe(v);
    const vout = constsOf(l, 'DOUT_');
    for (const [k, v] of Object.entries(DescOut)) expect(vout.get(k), k).toBe(v);
    const verd = constsOf(l, 'V_');
    for (const [k, v] of Object.entries(VerdictCode)) expect(verd.get(k), k).toBe(v);
    const reason = constsOf(l, 'R_');
    for (const [k, v] of Object.entries(DropReason)) expect(reason.get(k), k).toBe(v);
    const words = constsOf(l, 'L_');
    for (const [k, v] of Object.entries(LAYOUT_WORDS)) expect(words.get(k), k).toBe(v);
  });

  it('control record offsets agree', () => {
    const c = src('control.ts');
    const cin = constsOf(c, 'C_');
    const cout = constsOf(c, 'O_');
    for (const [k, v] of Object.entries(CONTROL_LAYOUT)) {
      if (k.startsWith('O_')) expect(cout.get(k.slice(2)), k).toBe(v);
      else expect(cin.get(k), k).toBe(v);
    }
  });

  it('the running firmware reports the same counter count and capabilities', async () => {
    const fw = await loadSmall();
    expect(Object.keys(fw.counters())).toEqual([...COUNTER_NAMES]);
    expect(fw.capabilities).toBe(0x7f);
    expect(fw.raw.process(257, 0)).toBe(Status.BAD_ARGUMENT);
  });
});
