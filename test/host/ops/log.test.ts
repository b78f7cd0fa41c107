import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { controlEvents, createLogger, LogConfigError, parseLogLevel } from '../../../host/ops/log.ts';

function sink(): { lines: Array<Record<string, unknown>>; write(s: string): void } {
  const lines: Array<Record<string, unknown>> = [];
  return {
    lines,
    write(s: string) {
      for (const l of s.split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
    },
  };
}

describe('createLogger + controlEvents', () => {
  it('writes NDJSON with stable keys for every control-plane event', () => {
    const out = sink();
    const log = createLogger({ name: 'manager-a', level: 'info', destination: out, bindings: { manager: 'a' } });
    const ev = controlEvents(log);
    ev.roleChange({ manager: 'a', from: 'backup', to: 'primary', epoch: 3 });
    ev.healthChange({ vip: '10.0.0.100:80', backend: '10.0.1.2:8080', healthy: false, reason: 'timeout' });
    ev.takeover({ manager: 'a', from: 'b', epoch: 3, flows: 120, seconds: 0.084 });
    ev.resync({ manager: 'a', peer: 'b', state: 'complete', affinities: 120 });
    ev.deny({ agent: 'agent-1', manager: 'a', vip: '10.0.0.100:80', reason: 'no supporting wildcard' });
    ev.configError({ path: 'lb.yaml', message: 'vips.0.port: expected number' });

    expect(out.lines.map((l) => l['event'])).toEqual([
      'role_change',
      'health_change',
      'takeover',
      'resync',
      'deny',
      'config_error',
    ]);
    for (const l of out.lines) {
      expect(l['name']).toBe('manager-a');
      expect(typeof l['time']).toBe('string');
      expect(Number.isNaN(Date.parse(l['time'] as string))).toBe(false);
      expect(typeof l['msg']).toBe('string');
    }
    expect(out.lines.map((l) => l['level'])).toEqual(['info', 'warn', 'warn', 'info', 'warn', 'error']);
    expect(out.lines[1]).toMatchObject({ vip: '10.0.0.100:80', backend: '10.0.1.2:8080', healthy: false });
    expect(out.lines[2]).toMatchObject({ manager: 'a', from: 'b', epoch: 3, flows: 120, seconds: 0.084 });
    expect(out.lines[4]).toMatchObject({ agent: 'agent-1', vip: '10.0.0.100:80' });
  });

  it('honours the level', () => {
    const out = sink();
    const ev = controlEvents(createLogger({ name: 'agent', level: 'warn', destination: out }));
    ev.roleChange({ manager: 'a', from: 'backup', to: 'primary', epoch: 1 }); // info: filtered
    ev.healthChange({ vip: 'v:1', backend: 'b:1', healthy: true }); // info: filtered
    ev.deny({ agent: 'agent', reason: 'x' }); // warn: kept
    expect(out.lines.map((l) => l['event'])).toEqual(['deny']);
  });

  it('writes to a file path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wasmlb-log-'));
    const file = join(dir, 'sub', 'agent.log');
    const log = createLogger({ name: 'agent', destination: file });
    controlEvents(log).configError({ path: 'x.yaml', message: 'bad' });
    const line = JSON.parse(readFileSync(file, 'utf8').trim()) as Record<string, unknown>;
    expect(line).toMatchObject({ event: 'config_error', path: 'x.yaml', level: 'error' });
  });

  it('parses --log-level values and rejects others with a typed error', () => {
    expect(parseLogLevel('DEBUG')).toBe('debug');
    expect(parseLogLevel(' warn ')).toBe('warn');
    expect(() => parseLogLevel('verbose')).toThrow(LogConfigError);
    try {
      parseLogLevel('verbose');
    } catch (e) {
      expect((e as LogConfigError).code).toBe('E_LOG_LEVEL');
      expect((e as Error).message).toContain('info');
    }
  });
});
