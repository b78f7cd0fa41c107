// The agent (in this process) and a service manager (a separate `wasmlb manager` process) over real
// UDP on loopback: flows balanced and rewritten in both directions, stickiness, FIN → sticky →
// expiry, health checks, wildcard refresh and expiry, update-deny.
import { writeFileSync } from 'node:fs';
import dgram from 'node:dgram';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Capability, VerdictCode } from '../../../host/agent/wasm.ts';
import { createBalancer, makeBackend } from '../../../host/manager/decision.ts';
import { killAll, spawnWasmlb, type WasmlbProcess } from '../../support/process.ts';
import { TestAgent, writeConfig } from '../../support/agent.ts';
import { freePort } from '../../support/ports.ts';
import { checksumsValid, dstOf, ip, srcOf, tcp, udp, TCP_ACK, TCP_FIN, TCP_SYN } from '../../support/packets.ts';

const VIP = '10.0.0.100';
const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  await killAll();
  for (const c of cleanups.splice(0)) await c();
});

interface Setup {
  agent: TestAgent;
  manager: WasmlbProcess;
}

async function setup(yaml: string, load: Parameters<typeof TestAgent.start>[0] = {}): Promise<Setup> {
  const agent = await TestAgent.start(load);
  cleanups.push(() => agent.close());
  const cfg = writeConfig(yaml);
  cleanups.push(cfg.cleanup);
  const manager = spawnWasmlb(['manager', '--config', cfg.file, '--control', '127.0.0.1:0', '--agent', agent.endpoint, '--log-level', 'debug']);
  await manager.waitForEvent('ready');
  await agent.until(() => agent.agent.stats.wildcardsInstalled > 0, 'wildcards from the manager');
  return { agent, manager };
}

function config(opts: { balancer?: string; backends?: string; timers?: string; vips?: string; health?: string } = {}): string {
  return `
agent:
  multicast: { enabled: false }
managers:
  - identity: mgr-test
    balancer: ${opts.balancer ?? 'rr'}
    timers: { ${opts.timers ?? 'wildcardRefresh: 200ms, wildcardTtl: 1s, fixedTtl: 2s, expirySlack: 1s, sticky: 1s'} }
vips:
${opts.vips ?? `  - address: ${VIP}
    port: 80
    backends: ${opts.backends ?? '[{ address: 10.0.1.1, port: 8080 }, { address: 10.0.1.2, port: 8080 }, { address: 10.0.1.3, port: 8080 }]'}
${opts.health ?? ''}`}
`;
}

describe('agent ↔ manager over UDP', () => {
  it('balances new flows round robin and rewrites both directions with valid checksums', async () => {
    const { agent } = await setup(config());
    const backends = new Map<string, number>();
    for (let c = 0; c < 30; c++) {
      const [fwd] = await agent.forward(1, tcp(`10.9.0.${c + 1}`, 40000 + c, VIP, 80, TCP_SYN));
      const p = fwd!.packet;
      expect(srcOf(p)).toBe(`10.9.0.${c + 1}:${40000 + c}`);
      expect(dstOf(p)).toMatch(/^10\.0\.1\.[123]:8080$/);
      expect(checksumsValid(p)).toEqual({ ip: true, l4: true });
      backends.set(dstOf(p), (backends.get(dstOf(p)) ?? 0) + 1);
      // The backend answers; the agent's SNAT makes it come from the VIP again.
      const [back] = await agent.forward(1, tcp(dstOf(p).split(':')[0]!, 8080, `10.9.0.${c + 1}`, 40000 + c, TCP_SYN | TCP_ACK));
      expect(srcOf(back!.packet)).toBe(`${VIP}:80`);
      expect(dstOf(back!.packet)).toBe(`10.9.0.${c + 1}:${40000 + c}`);
      expect(checksumsValid(back!.packet)).toEqual({ ip: true, l4: true });
    }
    expect([...backends.values()]).toEqual([10, 10, 10]);
  });

  it('gives a duplicate SYN the same backend, also after the agent forgot the flow', async () => {
    const { agent } = await setup(config());
    const syn = tcp('10.9.1.1', 41000, VIP, 80, TCP_SYN);
    const [first] = await agent.forward(1, syn);
    // The agent loses its fixed affinity (e.g. TTL ran out); the manager's store still has the flow.
    agent.fw.deleteFixed({ proto: 6, saddr: ip('10.9.1.1'), sport: 41000, daddr: ip(VIP), dport: 80 });
    // Another flow moves the round robin on: a new pick now would be the third backend, not the first.
    const [other] = await agent.forward(1, tcp('10.9.1.2', 41001, VIP, 80, TCP_SYN));
    expect(dstOf(other!.packet)).not.toBe(dstOf(first!.packet));
    const [again] = await agent.forward(1, syn);
    expect(dstOf(again!.packet)).toBe(dstOf(first!.packet));
    // and a new flow does get that third one
    const [third] = await agent.forward(1, tcp('10.9.1.3', 41002, VIP, 80, TCP_SYN));
    expect(new Set([dstOf(first!.packet), dstOf(other!.packet), dstOf(third!.packet)]).size).toBe(3);
  });

  it('keeps UDP from the same client address and port on one backend', async () => {
    const { agent } = await setup(
      config({ vips: `  - { address: ${VIP}, port: 53, protocol: udp, backends: [{ address: 10.0.2.1 }, { address: 10.0.2.2 }] }` }),
    );
    const seen = new Set<string>();
    for (let i = 0; i < 5; i++) {
      const [o] = await agent.forward(1, udp('10.9.2.1', 5353, VIP, 53, `q${i}`));
      seen.add(dstOf(o!.packet));
      expect(checksumsValid(o!.packet)).toEqual({ ip: true, l4: true });
    }
    expect(seen.size).toBe(1);
    const [other] = await agent.forward(1, udp('10.9.2.2', 5353, VIP, 53));
    expect(seen.has(dstOf(other!.packet))).toBe(false);
  });

  it('after FIN keeps the affinity for the sticky time, then forgets it', async () => {
    const { agent } = await setup(config());
    const key = { proto: 6, saddr: ip('10.9.3.1'), sport: 42000, daddr: ip(VIP), dport: 80 };
    const [syn] = await agent.forward(1, tcp('10.9.3.1', 42000, VIP, 80, TCP_SYN));
    const backend = dstOf(syn!.packet);
    expect(agent.fw.lookupFixed(key, performance.now())).not.toBeNull();
    await agent.forward(1, tcp('10.9.3.1', 42000, VIP, 80, TCP_FIN | TCP_ACK));
    // The FIN interest match reaches the manager, which answers with the sticky TTL (1 s).
    await agent.until(() => agent.fw.counter('FIXED_UPDATES') >= 2n, 'the sticky update for both directions');
    // The final ACK still reaches the same backend …
    const [last] = await agent.forward(1, tcp('10.9.3.1', 42000, VIP, 80, TCP_ACK));
    expect(dstOf(last!.packet)).toBe(backend);
    // … and after the sticky time the agent has forgotten the flow.
    await agent.until(() => agent.fw.lookupFixed(key, Math.floor(performance.now())) === null, 'sticky expiry', 4000);
  });

  it('a connection that goes on past the sticky time keeps its backend (a client that reconnected from the same port)', async () => {
    const { agent } = await setup(config());
    const key = { proto: 6, saddr: ip('10.9.3.7'), sport: 42007, daddr: ip(VIP), dport: 80 };
    const [syn] = await agent.forward(1, tcp('10.9.3.7', 42007, VIP, 80, TCP_SYN));
    const backend = dstOf(syn!.packet);
    await agent.forward(1, tcp('10.9.3.7', 42007, VIP, 80, TCP_FIN | TCP_ACK));
    await agent.until(() => agent.fw.counter('FIXED_UPDATES') >= 2n, 'the sticky update');
    await agent.until(() => agent.fw.lookupFixed(key, Math.floor(performance.now())) === null, 'sticky expiry at the agent', 4000);
    // past the sticky time (1 s), before the manager forgets the flow (sticky + 1 s slack): round robin
    // would pick the next backend for a new flow; this is the same connection's ACK
    await new Promise((r) => setTimeout(r, 300));
    const [ack] = await agent.forward(1, tcp('10.9.3.7', 42007, VIP, 80, TCP_ACK, { payload: 'more' }));
    expect(dstOf(ack!.packet)).toBe(backend);
  });

  it('gives no new flows to a backend whose health check fails', async () => {
    const up = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => up.listen(0, '127.0.0.1', r));
    cleanups.push(() => new Promise((r) => up.close(r)));
    const upPort = (up.address() as net.AddressInfo).port;
    // A port nobody listens on: bind then close to get one.
    const downPort = await freePort();
    const { agent, manager } = await setup(
      config({
        backends: `[{ address: 127.0.0.1, port: ${upPort} }, { address: 127.0.0.1, port: ${downPort} }]`,
        health: '    healthCheck: { type: tcp, interval: 50ms, timeout: 40ms, rise: 1, fall: 1 }',
      }),
    );
    await manager.waitFor((e) => e.event === 'health' && e['healthy'] === false, 5000);
    // and the operations event the docs name, at warn
    await manager.waitFor((e) => e.event === 'health_change' && e['healthy'] === false && e['level'] === 'warn' && e['backend'] === `127.0.0.1:${downPort}`, 5000);
    for (let c = 0; c < 6; c++) {
      const [o] = await agent.forward(1, tcp(`10.9.4.${c + 1}`, 43000, VIP, 80, TCP_SYN));
      expect(dstOf(o!.packet)).toBe(`127.0.0.1:${upPort}`);
    }
  });

  it('with unhealthyFlows: remove, a failed backend loses the flows of that VIP only (another VIP sharing it keeps its own)', async () => {
    const server = net.createServer((sock) => sock.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as net.AddressInfo).port;
    let closed = false;
    cleanups.push(() => (closed ? undefined : new Promise((r) => server.close(r))));
    const vips = [
      `  - { address: ${VIP}, port: 80, backends: [{ address: 127.0.0.1, port: ${port} }], unhealthyFlows: remove,`,
      `      healthCheck: { type: tcp, interval: 50ms, timeout: 40ms, rise: 1, fall: 1 } }`,
      `  - { address: 10.0.0.101, port: 80, backends: [{ address: 127.0.0.1, port: ${port} }] }`,
    ].join('\n');
    const { agent, manager } = await setup(config({ vips }));
    const keyA = { proto: 6, saddr: ip('10.9.13.1'), sport: 43100, daddr: ip(VIP), dport: 80 };
    const keyB = { proto: 6, saddr: ip('10.9.13.2'), sport: 43101, daddr: ip('10.0.0.101'), dport: 80 };
    await agent.forward(1, tcp('10.9.13.1', 43100, VIP, 80, TCP_SYN));
    await agent.forward(1, tcp('10.9.13.2', 43101, '10.0.0.101', 80, TCP_SYN));
    const now = (): number => Math.floor(performance.now());
    expect(agent.fw.lookupFixed(keyA, now())).not.toBeNull();
    expect(agent.fw.lookupFixed(keyB, now())).not.toBeNull();
    await new Promise((r) => server.close(r));
    closed = true;
    await manager.waitFor((e) => e.event === 'health' && e['healthy'] === false, 5000);
    await agent.until(() => agent.fw.lookupFixed(keyA, now()) === null, 'the flow of the VIP that removes', 3000);
    await new Promise((r) => setTimeout(r, 200));
    expect(agent.fw.lookupFixed(keyB, now())).not.toBeNull();
  });

  it('refreshes wildcards while the manager lives; they expire after it dies', async () => {
    const { agent, manager } = await setup(config());
    const installsBefore = agent.fw.counter('WILDCARD_INSTALLS') + agent.fw.counter('WILDCARD_UPDATES');
    await new Promise((r) => setTimeout(r, 1500)); // longer than the 1 s wildcard TTL
    expect(agent.fw.counter('WILDCARD_UPDATES')).toBeGreaterThan(0n);
    expect(agent.fw.counter('WILDCARD_INSTALLS') + agent.fw.counter('WILDCARD_UPDATES')).toBeGreaterThan(installsBefore);
    expect(agent.fw.counter('WILDCARD_OCCUPANCY')).toBeGreaterThan(0n);
    manager.kill('SIGKILL');
    await manager.exited;
    await agent.until(() => agent.fw.counter('WILDCARD_OCCUPANCY') === 0n, 'wildcard expiry', 4000);
    // With no wildcard, a new flow is not diverted to the (dead) manager: it is forwarded untouched.
    agent.fw.writePacket(0, tcp('10.9.5.1', 44000, VIP, 80, TCP_SYN));
    agent.fw.process(1, Math.floor(performance.now()));
    expect(agent.fw.verdictCode(0)).toBe(VerdictCode.FORWARD);
  });

  it('sends its wildcards to an agent that announces itself (unicast, no multicast, not configured)', async () => {
    const agent = await TestAgent.start();
    cleanups.push(() => agent.close());
    const cfg = writeConfig(config());
    cleanups.push(cfg.cleanup);
    const manager = spawnWasmlb(['manager', '--config', cfg.file, '--control', '127.0.0.1:0', '--log-level', 'debug']);
    const ready = await manager.waitForEvent('ready');
    const control = ready['control'] as { address: string; port: number };
    await new Promise((r) => setTimeout(r, 300));
    expect(agent.agent.stats.wildcardsInstalled).toBe(0); // nobody told the manager about this agent
    const identifier = { protocol: 0, srcAddr: 0, dstAddr: 0, srcPort: 0, dstPort: 0, flags: 0, reason: 0 };
    agent.channel.send({ type: 'interest-match-wildcard', identifier, packet: undefined }, control);
    await agent.until(() => agent.agent.stats.wildcardsInstalled > 0, 'wildcards after the announcement');
    const [o] = await agent.forward(1, tcp('10.9.7.1', 46000, VIP, 80, TCP_SYN));
    expect(dstOf(o!.packet)).toMatch(/^10\.0\.1\.[123]:8080$/);
  });

  it('denies an affinity needing an action the firmware lacks, and the manager drops the flow', async () => {
    const { agent, manager } = await setup(config(), { disabledCapabilities: Capability.NAT });
    expect(agent.fw.hasCapability('NAT')).toBe(false);
    agent.send(tcp('10.9.6.1', 45000, VIP, 80, TCP_SYN));
    await agent.until(() => agent.agent.stats.updatesDenied > 0, 'an update-deny');
    const e = await manager.waitForEvent('deny-received');
    expect(e['denied']).toBe(2);
    expect(agent.fw.counter('FIXED_OCCUPANCY')).toBe(0n);
  });
});

describe('manager metrics address', () => {
  it('serves /status and /metrics on managers[].metricsAddress, and only there', async () => {
    const port = await freePort('127.0.0.2'); // all of 127/8 is loopback on Linux
    const cfg = writeConfig(config().replace('  - identity: mgr-test\n', `  - identity: mgr-test\n    metricsPort: ${port}\n    metricsAddress: 127.0.0.2\n`));
    cleanups.push(cfg.cleanup);
    const manager = spawnWasmlb(['manager', '--config', cfg.file, '--control', '127.0.0.1:0', '--log-level', 'debug']);
    await manager.waitForEvent('ready');
    const status = await fetch(`http://127.0.0.2:${port}/status`);
    expect(status.status).toBe(200);
    expect(((await status.json()) as { role?: string }).role).toBe('primary');
    expect(await (await fetch(`http://127.0.0.2:${port}/metrics`)).text()).toMatch(/^wasmlb_manager_role/m);
    await expect(fetch(`http://127.0.0.1:${port}/status`)).rejects.toThrow();
  });
});

describe('malformed control traffic', () => {
  it('drops garbage datagrams, counts them by the decoder\'s reason in /metrics, and keeps answering', async () => {
    const port = await freePort('127.0.0.1');
    const agent = await TestAgent.start();
    cleanups.push(() => agent.close());
    const cfg = writeConfig(config().replace('  - identity: mgr-test\n', `  - identity: mgr-test\n    metricsPort: ${port}\n`));
    cleanups.push(cfg.cleanup);
    const manager = spawnWasmlb(['manager', '--config', cfg.file, '--control', '127.0.0.1:0', '--agent', agent.endpoint]);
    const control = (await manager.waitForEvent('ready'))['control'] as { address: string; port: number };
    const sock = dgram.createSocket('udp4');
    cleanups.push(() => sock.close());
    const send = (b: Buffer): Promise<void> => new Promise((r) => sock.send(b, control.port, control.address, () => r()));
    await send(Buffer.alloc(7)); //                                          shorter than a header
    await send(Buffer.from([9, 1, 0, 20, 0, 0, 0, 20, ...new Array(12).fill(0)])); // version 9
    const lying = Buffer.alloc(24);
    lying.writeUInt8(1, 0);
    lying.writeUInt8(4, 1);
    lying.writeUInt32BE(64, 4); // a total length beyond the datagram
    await send(lying);
    for (let i = 0; i < 200; i++) await send(Buffer.from(Array.from({ length: 20 + 4 * (i % 16) }, (_, j) => (j < 2 ? [1, 1 + (i % 6)][j]! : (i * 31 + j * 17) & 0xff))));
    const rejected = async (): Promise<Map<string, number>> => {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      return new Map([...text.matchAll(/^wasmlb_control_messages_rejected_total\{reason="([a-z_]+)"\} (\d+)$/gm)].map((m) => [m[1]!, Number(m[2])]));
    };
    const total = (m: Map<string, number>): number => [...m.values()].reduce((a, b) => a + b, 0);
    let r = await rejected();
    for (const end = Date.now() + 3000; total(r) < 203 && Date.now() < end; r = await rejected()) await new Promise((w) => setTimeout(w, 20));
    expect(r.get('too_short')).toBe(1);
    expect(r.get('bad_version')).toBe(1);
    expect(r.get('length_mismatch')).toBeGreaterThanOrEqual(1);
    expect(total(r)).toBe(203);
    // still the manager it was: a new flow is answered
    await agent.until(() => agent.agent.stats.wildcardsInstalled > 0, 'wildcards from the manager');
    const [o] = await agent.forward(1, tcp('10.9.10.1', 48000, VIP, 80, TCP_SYN));
    expect(dstOf(o!.packet)).toMatch(/^10\.0\.1\.[123]:8080$/);
    // and the messages it did take and send, counted by type
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(text).toMatch(/^wasmlb_control_messages_received_total\{type="interest-match-wildcard"\} [1-9]/m);
    expect(text).toMatch(/^wasmlb_control_messages_sent_total\{type="affinity-update-fixed"\} [1-9]/m);
    expect(text).toMatch(/^wasmlb_control_messages_sent_total\{type="affinity-update-wildcard"\} [1-9]/m);
  });
});

describe('manager configuration reload (SIGHUP)', () => {
  it('applies new backend lists (new flows to the new set, placed flows drain, return wildcards follow) and new VIPs; a bad file changes nothing', async () => {
    const agent = await TestAgent.start();
    cleanups.push(() => agent.close());
    const old = '[{ address: 10.0.1.1, port: 8080 }, { address: 10.0.1.2, port: 8080 }]';
    const port = await freePort();
    const withMetrics = (yaml: string): string => yaml.replace('  - identity: mgr-test\n', `  - identity: mgr-test\n    metricsPort: ${port}\n`);
    const cfg = writeConfig(withMetrics(config({ backends: old })));
    cleanups.push(cfg.cleanup);
    const manager = spawnWasmlb(['manager', '--config', cfg.file, '--control', '127.0.0.1:0', '--agent', agent.endpoint, '--log-level', 'debug']);
    await manager.waitForEvent('ready');
    await agent.until(() => agent.fw.counter('WILDCARD_OCCUPANCY') === 3n, 'the VIP wildcard and two return wildcards');
    const [placed] = await agent.forward(1, tcp('10.9.8.1', 47000, VIP, 80, TCP_SYN));
    const placedOn = dstOf(placed!.packet);
    expect(placedOn).toMatch(/^10\.0\.1\.[12]:8080$/);

    // new backends for the VIP, and a second VIP
    const vips = `  - address: ${VIP}
    port: 80
    backends: [{ address: 10.0.1.3, port: 8080 }, { address: 10.0.1.4, port: 8080 }]
  - address: 10.0.0.101
    port: 80
    backends: [{ address: 10.0.1.5, port: 8080 }]`;
    writeFileSync(cfg.file, withMetrics(config({ vips })));
    manager.kill('SIGHUP');
    expect(await manager.waitForEvent('reloaded')).toMatchObject({ changed: [`${VIP}:80`, '10.0.0.101:80'], restartNeeded: [] });
    // the removed backends' return wildcards withdrawn; the new ones', and the new VIP's, installed
    await agent.until(() => agent.fw.counter('WILDCARD_DELETES') === 2n && agent.fw.counter('WILDCARD_OCCUPANCY') === 5n, 'the wildcards of the new set');
    const [second] = await agent.forward(1, tcp('10.9.8.200', 47200, '10.0.0.101', 80, TCP_SYN));
    expect(dstOf(second!.packet)).toBe('10.0.1.5:8080');
    for (let c = 0; c < 10; c++) {
      const [o] = await agent.forward(1, tcp(`10.9.8.${c + 10}`, 47100 + c, VIP, 80, TCP_SYN));
      expect(dstOf(o!.packet)).toMatch(/^10\.0\.1\.[34]:8080$/);
    }
    // the flow placed before keeps its backend (it drains), and /status shows that backend draining
    const [again] = await agent.forward(1, tcp('10.9.8.1', 47000, VIP, 80, TCP_ACK));
    expect(dstOf(again!.packet)).toBe(placedOn);
    const status = (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as { vips: { vip: string; backends: { backend: string; draining?: boolean; flows: number }[] }[] };
    const rows = status.vips.find((v) => v.vip === `${VIP}:80`)!.backends;
    expect(rows.map((b) => b.backend).sort()).toEqual(['10.0.1.3:8080', '10.0.1.4:8080', placedOn].sort());
    expect(rows.find((b) => b.backend === placedOn)).toMatchObject({ draining: true, flows: 1 });

    // a file that does not parse: logged, nothing changes
    writeFileSync(cfg.file, 'vips: [');
    manager.kill('SIGHUP');
    expect(String((await manager.waitForEvent('reload-failed'))['error'])).toMatch(/config\.yaml/);
    const [o] = await agent.forward(1, tcp('10.9.8.99', 47999, VIP, 80, TCP_SYN));
    expect(dstOf(o!.packet)).toMatch(/^10\.0\.1\.[34]:8080$/);

  });

  it('drains a VIP gone from the file: its flows keep their backend, new ones are refused, its wildcards leave with its last flow', async () => {
    const agent = await TestAgent.start();
    cleanups.push(() => agent.close());
    // 10.0.1.2 serves both VIPs: its return wildcard must outlive the removed one
    const two = `  - { address: ${VIP}, port: 80, backends: [{ address: 10.0.1.1, port: 8080 }, { address: 10.0.1.2, port: 8080 }] }
  - { address: 10.0.0.101, port: 80, backends: [{ address: 10.0.1.2, port: 8080 }] }`;
    const port = await freePort();
    const withMetrics = (yaml: string): string => yaml.replace('  - identity: mgr-test\n', `  - identity: mgr-test\n    metricsPort: ${port}\n`);
    const cfg = writeConfig(withMetrics(config({ vips: two })));
    cleanups.push(cfg.cleanup);
    const manager = spawnWasmlb(['manager', '--config', cfg.file, '--control', '127.0.0.1:0', '--agent', agent.endpoint, '--log-level', 'debug']);
    await manager.waitForEvent('ready');
    await agent.until(() => agent.fw.counter('WILDCARD_OCCUPANCY') === 4n, 'two VIP wildcards and two return wildcards');
    type Status = { vips: { vip: string; backends: { backend: string; draining?: boolean; flows: number }[] }[] };
    const status = async (): Promise<Status> => (await (await fetch(`http://127.0.0.1:${port}/status`)).json()) as Status;
    const [placed] = await agent.forward(1, tcp('10.9.11.1', 49000, VIP, 80, TCP_SYN));
    const placedOn = dstOf(placed!.packet);

    // VIP .100 leaves the file; a timer and .101's health check change (read at start only: named, not applied)
    const kept = two.split('\n')[1]!.replace(/ }$/, ', healthCheck: { type: tcp } }');
    writeFileSync(cfg.file, withMetrics(config({ vips: kept, timers: 'wildcardRefresh: 200ms, wildcardTtl: 1s, fixedTtl: 2s, expirySlack: 1s, sticky: 5s' })));
    manager.kill('SIGHUP');
    expect(await manager.waitForEvent('reloaded')).toMatchObject({
      changed: [],
      removed: [`${VIP}:80`],
      restartNeeded: ['managers[mgr-test].timers', 'vips[10.0.0.101:80].healthCheck'],
    });
    // the placed flow keeps its backend, also when the agent has to ask again (its affinity gone)
    agent.fw.deleteFixed({ proto: 6, saddr: ip('10.9.11.1'), sport: 49000, daddr: ip(VIP), dport: 80 });
    const [again] = await agent.forward(1, tcp('10.9.11.1', 49000, VIP, 80, TCP_ACK));
    expect(dstOf(again!.packet)).toBe(placedOn);
    // a new flow to it is not answered
    const out = agent.out.length;
    const asked = agent.agent.stats.interestMatches;
    agent.send(tcp('10.9.11.2', 49001, VIP, 80, TCP_SYN));
    await agent.until(() => agent.agent.stats.interestMatches > asked, 'the interest match');
    await new Promise((r) => setTimeout(r, 300));
    expect(agent.out.length).toBe(out);
    // /status shows the VIP draining, with the flow it has left
    const draining = (await status()).vips.find((v) => v.vip === `${VIP}:80`)!.backends;
    expect(draining.every((b) => b.draining === true)).toBe(true);
    expect(draining.find((b) => b.backend === placedOn)!.flows).toBe(1);

    // its last flow ends (FIN, then the sticky time): the VIP goes, with its wildcard and 10.0.1.1's
    // return wildcard (two deletes), and .101 still works both ways through 10.0.1.2
    await agent.forward(1, tcp('10.9.11.1', 49000, VIP, 80, TCP_FIN | TCP_ACK));
    expect((await manager.waitForEvent('vip-removed', 10_000))['vip']).toBe(`${VIP}:80`);
    await agent.until(() => agent.fw.counter('WILDCARD_DELETES') === 2n && agent.fw.counter('WILDCARD_OCCUPANCY') === 2n, '.101 and 10.0.1.2 left');
    const [other] = await agent.forward(1, tcp('10.9.11.3', 49002, '10.0.0.101', 80, TCP_SYN));
    expect(dstOf(other!.packet)).toBe('10.0.1.2:8080');
    const [back] = await agent.forward(1, tcp('10.0.1.2', 8080, '10.9.11.3', 49002, TCP_SYN | TCP_ACK));
    expect(srcOf(back!.packet)).toBe('10.0.0.101:80');
    await new Promise((r) => setTimeout(r, 500)); // refreshes come and go: the shared return wildcard was never withdrawn
    expect(agent.fw.counter('WILDCARD_DELETES')).toBe(2n);
    expect((await status()).vips.map((v) => v.vip)).toEqual(['10.0.0.101:80']);
  });

  it('takes on a flow it does not know from its backend\'s packet, for the VIP that backend says (Maglev tells shared ones apart)', async () => {
    // .100 and .101 share 10.0.1.2; 10.0.1.1 serves .100 only
    const pools = { '10.0.0.100': ['10.0.1.1', '10.0.1.2'], '10.0.0.101': ['10.0.1.2', '10.0.1.3'] };
    const vips = Object.entries(pools)
      .map(([v, bs]) => `  - { address: ${v}, port: 80, backends: [${bs.map((b) => `{ address: ${b}, port: 8080 }`).join(', ')}] }`)
      .join('\n');
    const { agent } = await setup(config({ balancer: 'maglev', vips }));
    const pick = (vip: keyof typeof pools, client: string, port: number): string | undefined =>
      createBalancer('maglev', pools[vip].map((b) => makeBackend(b, 8080))).pick({ proto: 6, srcIp: ip(client), srcPort: port, dstIp: ip(vip), dstPort: 80 })?.id;

    // A backend of one VIP (a flow placed by a manager gone before its replication arrived): the
    // segment leaves from that VIP, and the client's next packet goes to that backend without asking.
    const [back] = await agent.forward(1, tcp('10.0.1.1', 8080, '10.9.9.1', 43000, TCP_ACK, { payload: 'data' }));
    expect(srcOf(back!.packet)).toBe('10.0.0.100:80');
    expect(dstOf(back!.packet)).toBe('10.9.9.1:43000');
    expect(checksumsValid(back!.packet)).toEqual({ ip: true, l4: true });
    const asked = agent.agent.stats.interestMatches;
    const [next] = await agent.forward(1, tcp('10.9.9.1', 43000, '10.0.0.100', 80, TCP_ACK));
    expect(dstOf(next!.packet)).toBe('10.0.1.1:8080');
    expect(agent.agent.stats.interestMatches).toBe(asked);

    // The shared backend: the VIP whose Maglev pick for the client is that backend.
    let port = 44000;
    while (!(pick('10.0.0.101', '10.9.9.2', port) === '10.0.1.2:8080' && pick('10.0.0.100', '10.9.9.2', port) !== '10.0.1.2:8080')) port++;
    const [shared] = await agent.forward(1, tcp('10.0.1.2', 8080, '10.9.9.2', port, TCP_ACK, { payload: 'data' }));
    expect(srcOf(shared!.packet)).toBe('10.0.0.101:80');

    // Both VIPs' picks are that backend: whose flow it is can't be told, so it is not taken on.
    let both = 45000;
    while (!(pick('10.0.0.101', '10.9.9.3', both) === '10.0.1.2:8080' && pick('10.0.0.100', '10.9.9.3', both) === '10.0.1.2:8080')) both++;
    const out = agent.out.length;
    const matches = agent.agent.stats.interestMatches;
    agent.send(tcp('10.0.1.2', 8080, '10.9.9.3', both, TCP_ACK, { payload: 'data' }));
    await agent.until(() => agent.agent.stats.interestMatches > matches, 'the interest match');
    await new Promise((r) => setTimeout(r, 300));
    expect(agent.out.length).toBe(out);
  });
});
