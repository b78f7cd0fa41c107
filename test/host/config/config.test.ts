import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  applyOverrides,
  ConfigError,
  defaultConfig,
  loadConfig,
  parseConfig,
  parseDuration,
  parseSize,
  readSecurityKey,
  securityKeyOf,
  securityKeysOf,
  selectManager,
  storeTimersOf,
  vipBackends,
  vipProtocol,
} from '../../../host/config/index.ts';

const EXAMPLES = path.resolve(import.meta.dirname, '../../../examples');

function errorOf(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error('expected a ConfigError');
}

const BASE = `vips:
  - address: 10.0.0.100
    port: 80
    backends:
      - address: 10.0.1.1
        port: 8080
      - address: 10.0.1.2
`;

describe('bundled defaults', () => {
  it('need no file: one primary manager, one VIP with backends, design timers', () => {
    const c = defaultConfig();
    expect(c.managers).toHaveLength(1);
    const m = selectManager(c);
    expect(m.role).toBe('primary');
    expect(m.balancer).toBe('maglev');
    expect(m.timers).toMatchObject({ wildcardRefresh: 1000, wildcardTtl: 3000, fixedTtl: 10_000, expirySlack: 4000, backupSlack: 500, sticky: 2000, heartbeatInterval: 50, heartbeatMisses: 3 });
    expect(storeTimersOf(m)).toEqual({ agentFixedTtlMs: 10_000, expirySlackMs: 4000, backupSlackMs: 500, stickyMs: 2000 });
    expect(c.vips[0]).toMatchObject({ address: '10.0.0.100', port: 80, protocol: 'tcp' });
    expect(c.vips[0]!.backends.length).toBeGreaterThan(1);
    expect(c.agent.firmware.budget).toBe(64 * 1024 * 1024);
    expect(c.security).toBeUndefined();
  });
  it('an empty file is the defaults', () => {
    expect(parseConfig('', 'empty.yaml')).toEqual(defaultConfig());
  });
});

describe('examples', () => {
  it('every example loads', () => {
    const single = loadConfig(path.join(EXAMPLES, 'single.yaml'));
    expect(single.vips[0]!.backends.map((b) => b.weight)).toEqual([1, 1, 2]);

    const failover = loadConfig(path.join(EXAMPLES, 'failover.yaml'));
    expect(failover.managers.map((m) => [m.identity, m.role])).toEqual([['mgr-a', 'primary'], ['mgr-b', 'backup']]);
    expect(selectManager(failover, { role: 'backup' }).backupPrecedence).toBeLessThan(selectManager(failover, { role: 'primary' }).backupPrecedence);
    expect(failover.managers[1]!.timers.backupSlack).toBe(500); // YAML alias resolved
    expect(failover.security?.require).toBe(true);
    expect(readSecurityKey(failover.security!)).toHaveLength(32);
    expect(securityKeyOf(failover.security!)).toMatchObject({ id: 1, algorithm: 'hmac-sha256' });
    expect(securityKeyOf({ ...failover.security!, algorithm: 'md5' }).algorithm).toBe('keyed-md5');
    expect(failover.vips[0]!.healthCheck).toMatchObject({ type: 'http', path: '/healthz', timeout: 500, rise: 2, fall: 3 });

    const dsr = loadConfig(path.join(EXAMPLES, 'dsr.yaml'));
    expect(dsr.managers[0]!.mode).toBe('dispatch');
    expect(dsr.managers[0]!.clientDomain).toEqual(['192.168.0.0/16', '172.16.0.0/12']);
    expect(dsr.vips[0]!.backends[0]).toEqual({ address: '10.0.2.1', port: 53, weight: 3 });
    expect(dsr.vips[0]!.protocol).toBe('udp');
    expect(vipProtocol(dsr.vips[0]!)).toBe(17);
    expect(vipBackends(dsr.vips[0]!).map((b) => [b.id, b.weight])).toEqual([['10.0.2.1:53', 3], ['10.0.2.2:53', 1]]);
  });
});

describe('errors name the file, the line and the key', () => {
  it('a number out of range', () => {
    const text = `${BASE}        port: 70000\n`;
    const e = errorOf(() => parseConfig(text, 'examples/lb.yaml'));
    expect(e.code).toBe('CONFIG_INVALID');
    expect(e.message).toBe('examples/lb.yaml:8: vips[0].backends[1].port: expected number ≤ 65535');
    expect([e.file, e.line, e.keyPath]).toEqual(['examples/lb.yaml', 8, 'vips[0].backends[1].port']);
  });
  it('a wrong type, an unknown key, a bad enum, a missing key', () => {
    const text = [
      'agent:',
      '  holdQueue:',
      '    size: lots',
      '  contorl: {}',
      'managers:',
      '  - identity: a',
      '    balancer: random',
      '  - role: backup',
      BASE,
    ].join('\n');
    const e = errorOf(() => parseConfig(text, 'lb.yaml'));
    expect(e.message.split('\n')).toEqual([
      'lb.yaml:3: agent.holdQueue.size: expected a number, got "lots"',
      'lb.yaml:4: agent.contorl: unknown key "contorl"',
      'lb.yaml:7: managers[0].balancer: expected rr, wlc or maglev, got "random"',
      'lb.yaml:8: managers[1].identity: missing (required)',
    ]);
    expect(e.issues).toHaveLength(4);
  });
  it('values the processes could not use: a replication batch over one message, an HTTP path with a space', () => {
    const text = [
      'managers:',
      '  - identity: a',
      '    replication: { batchSize: 4096 }',
      'vips:',
      '  - address: 10.0.0.1',
      '    port: 80',
      '    healthCheck: { type: http, path: /health check }',
      '    backends: [{ address: 10.0.1.1 }]',
    ].join('\n');
    expect(errorOf(() => parseConfig(text, 'lb.yaml')).message.split('\n')).toEqual([
      'lb.yaml:3: managers[0].replication.batchSize: expected number ≤ 1024',
      'lb.yaml:7: vips[0].healthCheck.path: expected a path starting with / (printable ASCII, no spaces: percent-encode the rest), got "/health check"',
    ]);
  });
  it('bad addresses, durations and cross-field rules', () => {
    const text = [
      'agent:',
      '  multicast: { group: 10.1.1.1 }',
      '  holdQueue: { deadline: soon }',
      'managers:',
      '  - identity: a',
      '    clientDomain: 10.0.0.0',
      '    timers: { wildcardRefresh: 3s, wildcardTtl: 2s }',
      '  - identity: a',
      '    control: { port: 7600 }',
      'vips:',
      '  - address: 10.0.0.300',
      '    port: 80',
      '    healthCheck: { type: http, interval: 1s, timeout: 2s }',
      '    backends: [{ address: 10.0.1.1 }]',
      '  - address: 10.0.0.1',
      '    port: 80',
      '    backends: [{ address: 10.0.1.1 }, { address: 10.0.1.1 }]',
    ].join('\n');
    const e = errorOf(() => parseConfig(text, 'lb.yaml'));
    const lines = e.message.split('\n');
    expect(lines).toContain('lb.yaml:2: agent.multicast.group: expected an IPv4 multicast group (224.0.0.0/4)');
    expect(lines).toContain('lb.yaml:3: agent.holdQueue.deadline: expected a duration (milliseconds, or "250ms", "10s", "1m"), got "soon"');
    expect(lines).toContain('lb.yaml:6: managers[0].clientDomain[0]: expected an IPv4 prefix (a.b.c.d/len), got "10.0.0.0"');
    expect(lines).toContain('lb.yaml:7: managers[0].timers.wildcardRefresh: must be shorter than wildcardTtl (2000 ms)');
    expect(lines).toContain('lb.yaml:11: vips[0].address: expected an IPv4 address (a.b.c.d), got "10.0.0.300"');
    expect(lines).toContain('lb.yaml:13: vips[0].healthCheck.timeout: must not exceed interval (1000 ms)');
    expect(lines).toContain('lb.yaml:17: vips[1].backends[1]: duplicate backend 10.0.1.1:80');
    expect(lines).toHaveLength(7);
  });
  it('metrics addresses: loopback by default, an IPv4 address when given', () => {
    const c = parseConfig('agent: { metricsAddress: 0.0.0.0 }\nmanagers: [{ identity: a }]', 'lb.yaml');
    expect(c.agent.metricsAddress).toBe('0.0.0.0');
    expect(c.managers[0]!.metricsAddress).toBe('127.0.0.1');
    const e = errorOf(() => parseConfig('managers: [{ identity: a, metricsAddress: localhost }]', 'lb.yaml'));
    expect(e.message).toBe('lb.yaml:1: managers[0].metricsAddress: expected an IPv4 address (a.b.c.d), got "localhost"');
  });

  it('duplicates across managers', () => {
    const text = [
      'managers:',
      '  - identity: a',
      '  - identity: a',
      '    control: { port: 7501 }',
      '  - identity: c',
      '    control: { port: 7500 }',
      BASE,
    ].join('\n');
    const lines = errorOf(() => parseConfig(text, 'lb.yaml')).message.split('\n');
    expect(lines).toEqual([
      'lb.yaml:3: managers[1].identity: duplicate identity a',
      'lb.yaml:6: managers[2].control: control address 127.0.0.1:7500 used by two managers',
    ]);
  });
  it('security: key or keyFile, hex, algorithm', () => {
    const e1 = errorOf(() => parseConfig(`${BASE}security:\n  algorithm: hmac-sha256\n`, 'lb.yaml'));
    expect(e1.message).toBe('lb.yaml:8: security: needs key or keyFile');
    const e2 = errorOf(() => parseConfig(`${BASE}security:\n  key: zz\n  algorithm: sha1\n`, 'lb.yaml'));
    expect(e2.message.split('\n')).toEqual([
      'lb.yaml:9: security.key: expected at least 16 bytes as hex digits',
      'lb.yaml:10: security.algorithm: expected hmac-sha256 or md5, got "sha1"',
    ]);
    // a key of digits only, unquoted, is a YAML number: the error does not print it
    const e3 = errorOf(() => parseConfig(`${BASE}security:\n  key: 12345678901234567890123456789012\n`, 'lb.yaml'));
    expect(e3.message).toBe('lb.yaml:9: security.key: expected a hex string');
    // keyed MD5 takes keys of at most 255 bytes
    const e4 = errorOf(() => parseConfig(`${BASE}security:\n  algorithm: md5\n  key: ${'ab'.repeat(256)}\n`, 'lb.yaml'));
    expect(e4.message).toBe('lb.yaml:10: security.key: an md5 key is at most 255 bytes');
    expect(parseConfig(`${BASE}security:\n  algorithm: md5\n  key: ${'ab'.repeat(255)}\n`, 'lb.yaml').security?.algorithm).toBe('md5');
  });
  it('security.accept: more keys accepted, files relative to the config, ids unique', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'wasmlb-keys-'));
    writeFileSync(path.join(dir, 'new.hex'), 'b2'.repeat(32) + '\n');
    const yaml = `${BASE}security:\n  keyId: 1\n  key: ${'a1'.repeat(16)}\n  accept:\n    - { keyId: 2, keyFile: new.hex }\n`;
    writeFileSync(path.join(dir, 'lb.yaml'), yaml);
    const c = loadConfig(path.join(dir, 'lb.yaml'));
    expect(c.security!.accept[0]!.keyFile).toBe(path.join(dir, 'new.hex'));
    const keys = securityKeysOf(c.security!);
    expect(keys.map((k) => [k.id, Buffer.from(k.secret).toString('hex').slice(0, 4), k.algorithm])).toEqual([
      [1, 'a1a1', 'hmac-sha256'],
      [2, 'b2b2', 'hmac-sha256'],
    ]);
    const e = errorOf(() => parseConfig(`${BASE}security:\n  keyId: 3\n  key: ${'a1'.repeat(16)}\n  accept:\n    - { keyId: 3, key: ${'b2'.repeat(16)} }\n    - { keyId: 4 }\n`, 'lb.yaml'));
    expect(e.message.split('\n')).toEqual([
      'lb.yaml:12: security.accept[0].keyId: key id 3 given twice',
      'lb.yaml:13: security.accept[1]: needs key or keyFile',
    ]);
  });
  it('YAML syntax errors name the line', () => {
    const e = errorOf(() => parseConfig('agent:\n  control: {port: 1\nvips: [', 'bad.yaml'));
    expect(e.code).toBe('CONFIG_SYNTAX');
    expect(e.file).toBe('bad.yaml');
    expect(e.line).toBeGreaterThanOrEqual(2);
    const dup = errorOf(() => parseConfig('agent: {}\nagent: {}\n', 'dup.yaml'));
    expect(dup.message).toMatch(/^dup\.yaml:2: .*unique/i);
    const top = errorOf(() => parseConfig('- 1\n- 2\n', 'list.yaml'));
    expect(top.message).toBe('list.yaml:1: expected a mapping at the top, got a list');
  });
  it('an unreadable file', () => {
    const e = errorOf(() => loadConfig('/nonexistent/lb.yaml'));
    expect(e.code).toBe('CONFIG_READ');
    expect(e.message).toMatch(/^\/nonexistent\/lb\.yaml: cannot read/);
  });
  it('never throws anything but ConfigError on arbitrary YAML', () => {
    fc.assert(
      fc.property(fc.jsonValue(), (value) => {
        const text = JSON.stringify({ vips: [{ address: '10.0.0.1', port: 80, backends: [{ address: '10.0.0.2' }] }], agent: { holdQueue: value } });
        try {
          parseConfig(text, 'f.yaml');
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError);
          expect((err as ConfigError).message).toMatch(/^f\.yaml:1: agent\.holdQueue/);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('units', () => {
  it('durations and sizes', () => {
    expect(parseDuration(250)).toBe(250);
    expect(parseDuration('250ms')).toBe(250);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('2m')).toBe(120_000);
    expect(parseDuration('fast')).toBeUndefined();
    expect(parseSize('64MiB')).toBe(64 * 1024 * 1024);
    expect(parseSize('512KiB')).toBe(512 * 1024);
    expect(parseSize(4096)).toBe(4096);
    expect(parseSize('12 parsecs')).toBeUndefined();
    const c = parseConfig(`${BASE}agent:\n  firmware: { budget: 2MiB }\n  holdQueue: { deadline: 5ms }\n`, 'u.yaml');
    expect(c.agent.firmware.budget).toBe(2 * 1024 * 1024);
    expect(c.agent.holdQueue.deadline).toBe(5);
    const e = errorOf(() => parseConfig(`${BASE}agent:\n  firmware: { budget: 1KiB }\n`, 'u.yaml'));
    expect(e.message).toBe('u.yaml:9: agent.firmware.budget: expected a size ≥ 1048576 bytes');
  });
});

describe('command-line overrides', () => {
  it('--vip and --backends replace the VIP and its backends', () => {
    const c = applyOverrides(defaultConfig(), { vip: '10.9.0.1:443', backends: '10.9.1.1,10.9.1.2:8443' });
    expect(c.vips).toHaveLength(1);
    expect(c.vips[0]).toMatchObject({ address: '10.9.0.1', port: 443, protocol: 'tcp' });
    expect(c.vips[0]!.backends).toEqual([
      { address: '10.9.1.1', port: 443, weight: 1 },
      { address: '10.9.1.2', port: 8443, weight: 1 },
    ]);
  });
  it('--vip alone keeps the backends; --balancer sets every manager; --role one manager', () => {
    const file = loadConfig(path.join(EXAMPLES, 'single.yaml'));
    const c = applyOverrides(file, { vip: '10.0.0.7:80', balancer: 'rr', role: 'backup' });
    expect(c.vips[0]!.address).toBe('10.0.0.7');
    expect(c.vips[0]!.backends).toEqual(file.vips[0]!.backends);
    expect(c.managers[0]!.balancer).toBe('rr');
    expect(c.managers[0]!.role).toBe('backup');
    expect(c.managers[0]!.backupPrecedence).toBe(100);
    // The original is untouched.
    expect(file.managers[0]!.role).toBe('primary');
  });
  it('--role with several managers selects, and must exist', () => {
    const failover = loadConfig(path.join(EXAMPLES, 'failover.yaml'));
    expect(applyOverrides(failover, { role: 'backup' }).managers.map((m) => m.role)).toEqual(['primary', 'backup']);
    const dsr = loadConfig(path.join(EXAMPLES, 'dsr.yaml'));
    const twoPrimaries = { ...dsr, managers: [dsr.managers[0]!, { ...dsr.managers[0]!, identity: 'x', control: { address: '127.0.0.1', port: 7999 } }] };
    expect(errorOf(() => applyOverrides(twoPrimaries, { role: 'backup' })).message).toBe('command line: --role: no manager with role backup in the config');
  });
  it('--key-file enables security with the file', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'wasmlb-key-'));
    const keyFile = path.join(dir, 'key.hex');
    writeFileSync(keyFile, `${'ab'.repeat(32)}\n`);
    const c = applyOverrides(defaultConfig(), { keyFile });
    expect(c.security).toMatchObject({ algorithm: 'hmac-sha256', keyFile, require: true });
    expect(readSecurityKey(c.security!)).toEqual(Buffer.alloc(32, 0xab));
    writeFileSync(keyFile, 'short');
    expect(errorOf(() => readSecurityKey(c.security!)).message).toBe(`${keyFile}:1: security.keyFile: expected at least 16 bytes as hex digits`);
    // A relative keyFile in a file resolves against the file's directory.
    const cfg = path.join(dir, 'lb.yaml');
    writeFileSync(cfg, `${BASE}security:\n  keyFile: key.hex\n`);
    expect(loadConfig(cfg).security!.keyFile).toBe(keyFile);
  });
  it('overrides are validated by the same schema and name the flag', () => {
    const cases: [Parameters<typeof applyOverrides>[1], string][] = [
      [{ vip: '10.0.0.1:99999' }, 'command line: --vip: vips[0].port: expected number ≤ 65535'],
      [{ vip: '10.0.0.1' }, 'command line: --vip: expected ADDR:PORT (the port is required)'],
      [{ backends: '10.0.1.1,nope' }, 'command line: --backends: vips[0].backends[1].address: expected an IPv4 address (a.b.c.d), got "nope"'],
      [{ backends: ',' }, 'command line: --backends: expected A[:P],B[:P],…'],
      [{ balancer: 'random' }, 'command line: --balancer: managers[0].balancer: expected rr, wlc or maglev, got "random"'],
      [{ role: 'leader' }, 'command line: --role: expected primary or backup, got "leader"'],
    ];
    for (const [overrides, message] of cases) {
      const e = errorOf(() => applyOverrides(defaultConfig(), overrides));
      expect(e.code).toBe('CONFIG_OVERRIDE');
      expect(e.message).toBe(message);
    }
  });
});
