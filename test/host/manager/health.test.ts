import http from 'node:http';
import net from 'node:net';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createBalancer, makeBackend, PROTO_TCP } from '../../../host/manager/decision.ts';
import {
  HealthError,
  HealthMonitor,
  healthOptionsOf,
  probeHttp,
  probeTcp,
  type HealthChange,
  type HealthCheckOptions,
} from '../../../host/manager/health.ts';
import { defaultConfig } from '../../../host/config/index.ts';
import { freePort } from '../../support/ports.ts';

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function listenTcp(server: net.Server, port = 0): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve((server.address() as AddressInfo).port));
  });
}

function close(server: net.Server): Promise<void> {
  return new Promise((resolve) => {
    if (server instanceof http.Server) server.closeAllConnections();
    server.close(() => resolve());
  });
}

/** A TCP listener that tracks its connections so close() never waits on them. */
async function tcpServer(port = 0, onConnection: (s: net.Socket) => void = () => {}): Promise<{ server: net.Server; port: number }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    onConnection(s);
  });
  const p = await listenTcp(server, port);
  const stop = async (): Promise<void> => {
    for (const s of sockets) s.destroy();
    if (server.listening) await close(server);
  };
  cleanups.push(stop);
  return { server, port: p };
}

/** An HTTP server whose /healthz answers `state.status` (everything else 404); 0 = never answer. */
async function httpServer(): Promise<{ port: number; state: { status: number; hits: number } }> {
  const state = { status: 200, hits: 0 };
  const server = http.createServer((req, res) => {
    state.hits++;
    if (req.url !== '/healthz') {
      res.writeHead(404).end();
      return;
    }
    if (state.status === 0) return; // hang
    res.writeHead(state.status, { 'content-type': 'text/plain' }).end('body');
  });
  const port = await listenTcp(server);
  cleanups.push(() => close(server));
  return { port, state };
}

function waitForChange(monitor: HealthMonitor, healthy: boolean, timeoutMs = 3000): Promise<HealthChange> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no change to healthy=${healthy}`)), timeoutMs);
    const off = monitor.onChange((c) => {
      if (c.healthy === healthy) {
        clearTimeout(timer);
        off();
        resolve(c);
      }
    });
  });
}

describe('probes', () => {
  it('TCP: connect succeeds against a listener, fails fast when refused', async () => {
    const { port } = await tcpServer();
    expect(await probeTcp('127.0.0.1', port, 500)).toEqual({ ok: true });
    const refused = await probeTcp('127.0.0.1', await freePort(), 500);
    expect(refused).toEqual({ ok: false, reason: 'ECONNREFUSED' });
  });

  it('TCP: an unroutable address fails within the timeout (however the host says no); abort ends a probe', async () => {
    const t0 = Date.now();
    const r = await probeTcp('192.0.2.1', 9, 150); // TEST-NET-1
    expect(r.ok).toBe(false);
    expect(Date.now() - t0).toBeLessThan(1000);
    const controller = new AbortController();
    const pending = probeTcp('192.0.2.1', 9, 5000, controller.signal);
    controller.abort();
    expect(await pending).toEqual({ ok: false, reason: 'aborted' });
    expect(await probeTcp('127.0.0.1', 1, 100, controller.signal)).toEqual({ ok: false, reason: 'aborted' });
  });

  it('HTTP: the expected status on the path is healthy; anything else is not', async () => {
    const { port, state } = await httpServer();
    expect(await probeHttp('127.0.0.1', port, '/healthz', 200, 500)).toEqual({ ok: true });
    expect(await probeHttp('127.0.0.1', port, '/', 200, 500)).toEqual({ ok: false, reason: 'status 404' });
    // a path Node will not put in a request line: a failed probe, not a rejected promise
    expect(await probeHttp('127.0.0.1', port, '/health check', 200, 500)).toMatchObject({ ok: false, reason: expect.stringMatching(/unescaped/i) });
    state.status = 503;
    expect(await probeHttp('127.0.0.1', port, '/healthz', 200, 500)).toEqual({ ok: false, reason: 'status 503' });
    expect(await probeHttp('127.0.0.1', port, '/healthz', 503, 500)).toEqual({ ok: true });
    state.status = 0;
    const t0 = Date.now();
    expect(await probeHttp('127.0.0.1', port, '/healthz', 200, 100)).toEqual({ ok: false, reason: 'timeout' });
    expect(Date.now() - t0).toBeLessThan(1000);
    expect((await probeHttp('127.0.0.1', await freePort(), '/healthz', 200, 500)).ok).toBe(false);
  });

  it('HTTP: a backend that is not speaking HTTP is a failure, not a crash', async () => {
    const { port } = await tcpServer(0, (s) => s.end('SSH-2.0-OpenSSH\r\n\r\n'));
    const r = await probeHttp('127.0.0.1', port, '/', 200, 500);
    expect(r.ok).toBe(false);
    if (!r.ok) expect(r.reason).not.toBe('timeout');
  });
});

describe('health monitor', () => {
  const fast: HealthCheckOptions = { kind: 'http', intervalMs: 20, timeoutMs: 200, rise: 2, fall: 3, path: '/healthz', expectStatus: 200 };

  it('turns unhealthy after `fall` failures in a row and healthy after `rise` successes', async () => {
    const { port, state } = await httpServer();
    const monitor = new HealthMonitor([{ id: 'b1', address: '127.0.0.1', port }], fast);
    const changes: HealthChange[] = [];
    monitor.onChange((c) => changes.push(c));
    expect(monitor.isHealthy('b1')).toBe(true);
    state.status = 500;
    await monitor.checkNow();
    await monitor.checkNow();
    expect(monitor.isHealthy('b1')).toBe(true);
    state.status = 200; // a success in between resets the count
    await monitor.checkNow();
    state.status = 500;
    await monitor.checkNow();
    await monitor.checkNow();
    expect(changes).toEqual([]);
    await monitor.checkNow();
    expect(changes).toEqual([{ id: 'b1', healthy: false, reason: 'status 500' }]);
    state.status = 200;
    await monitor.checkNow();
    expect(monitor.isHealthy('b1')).toBe(false);
    await monitor.checkNow();
    expect(changes.at(-1)).toEqual({ id: 'b1', healthy: true, reason: 'ok' });
    await monitor.checkNow();
    expect(changes).toHaveLength(2); // changes only, not every probe
    expect(monitor.statuses()[0]).toMatchObject({ id: 'b1', healthy: true, successes: 3, failures: 0 });
  });

  it('setTargets (a reload): staying backends keep their state, new ones start fresh, removed ones stop', async () => {
    const dead = await freePort();
    const t = (id: string) => ({ id, address: '127.0.0.1', port: dead });
    const monitor = new HealthMonitor([t('a'), t('b')], { ...fast, kind: 'tcp', fall: 1 });
    const changes: HealthChange[] = [];
    monitor.onChange((c) => changes.push(c));
    await monitor.checkNow();
    expect(monitor.statuses().map((x) => [x.id, x.healthy])).toEqual([['a', false], ['b', false]]);
    monitor.setTargets([t('b'), t('c')]);
    expect(monitor.statuses().map((x) => [x.id, x.healthy, x.lastReason === 'not checked'])).toEqual([['b', false, false], ['c', true, true]]);
    monitor.start(); // probes every target now: c falls, a is gone for good
    cleanups.push(() => monitor.stop());
    const deadline = Date.now() + 2000;
    while (monitor.isHealthy('c') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(monitor.isHealthy('c')).toBe(false);
    expect(monitor.isHealthy('a')).toBe(false); // unknown id
    expect(changes.filter((c) => c.id === 'a')).toHaveLength(1); // only the first fall, before its removal
  });

  it('runs on its interval: a TCP backend that goes away and comes back', async () => {
    const { server, port } = await tcpServer();
    const monitor = new HealthMonitor([{ id: `127.0.0.1:${port}`, address: '127.0.0.1', port }], { ...fast, kind: 'tcp', fall: 2 });
    cleanups.push(() => monitor.stop());
    monitor.start();
    await new Promise((r) => setTimeout(r, 60));
    expect(monitor.isHealthy(`127.0.0.1:${port}`)).toBe(true);
    const down = waitForChange(monitor, false);
    await close(server);
    expect((await down).reason).toBe('ECONNREFUSED');
    const up = waitForChange(monitor, true);
    await tcpServer(port);
    expect((await up).reason).toBe('ok');
  });

  it('backends starting unhealthy need `rise` passes; an unreachable one never throws', async () => {
    const { port } = await httpServer();
    const dead = await freePort();
    const monitor = new HealthMonitor(
      [
        { id: 'up', address: '127.0.0.1', port },
        { id: 'dead', address: '127.0.0.1', port: dead },
      ],
      { ...fast, initiallyHealthy: false },
    );
    cleanups.push(() => monitor.stop());
    const up = waitForChange(monitor, true);
    monitor.start();
    expect((await up).id).toBe('up');
    await new Promise((r) => setTimeout(r, 100));
    expect(monitor.isHealthy('dead')).toBe(false);
    expect(monitor.statuses().find((s) => s.id === 'dead')!.lastReason).toBe('ECONNREFUSED');
  });

  it('stop() aborts a hanging probe at once and no change follows', async () => {
    const { port, state } = await httpServer();
    state.status = 0;
    const monitor = new HealthMonitor([{ id: 'b', address: '127.0.0.1', port }], { ...fast, timeoutMs: 5000, intervalMs: 5000, fall: 1 });
    const changes: HealthChange[] = [];
    monitor.onChange((c) => changes.push(c));
    monitor.start();
    while (state.hits === 0) await new Promise((r) => setTimeout(r, 5));
    const t0 = Date.now();
    await monitor.stop();
    expect(Date.now() - t0).toBeLessThan(500);
    await new Promise((r) => setTimeout(r, 50));
    expect(changes).toEqual([]);
  });

  it('the port option probes a separate status port', async () => {
    const { port } = await httpServer();
    const monitor = new HealthMonitor([{ id: 'b', address: '127.0.0.1', port: await freePort() }], { ...fast, port, fall: 1 });
    await monitor.checkNow();
    expect(monitor.statuses()[0]!.lastReason).toBe('ok');
  });

  it('kind none probes nothing; bad options are a typed error', async () => {
    const monitor = new HealthMonitor([{ id: 'b', address: '127.0.0.1', port: 1 }], { ...fast, kind: 'none' });
    monitor.start();
    await monitor.checkNow();
    expect(monitor.isHealthy('b')).toBe(true);
    await monitor.stop();
    expect(() => new HealthMonitor([], { ...fast, rise: 0 })).toThrow(HealthError);
    const opts = healthOptionsOf(defaultConfig().vips[0]!.healthCheck);
    expect(opts).toMatchObject({ kind: 'none', intervalMs: 2000, timeoutMs: 1000, rise: 2, fall: 3 });
  });

  it('an unhealthy backend gets no new flows from the balancer', async () => {
    const a = await httpServer();
    const b = await httpServer();
    const backends = [makeBackend('127.0.0.1', a.port), makeBackend('127.0.0.1', b.port)];
    for (const kind of ['rr', 'wlc', 'maglev'] as const) {
      const lb = createBalancer(kind, backends);
      const monitor = new HealthMonitor(backends, { ...fast, fall: 1, rise: 1 });
      monitor.onChange((c) => lb.setHealth(c.id, c.healthy));
      b.state.status = 503;
      await monitor.checkNow();
      for (let i = 0; i < 200; i++) {
        const key = { proto: PROTO_TCP, srcIp: 0xc0a80001, srcPort: 1024 + i, dstIp: 0x0a000064, dstPort: 80 };
        expect(lb.pick(key)!.id).toBe(backends[0]!.id);
      }
      b.state.status = 200;
      await monitor.checkNow();
      const picked = new Set(Array.from({ length: 200 }, (_, i) => lb.pick({ proto: PROTO_TCP, srcIp: 0xc0a80001, srcPort: 1024 + i, dstIp: 0x0a000064, dstPort: 80 })!.id));
      expect(picked.size).toBe(2);
    }
  });
});
