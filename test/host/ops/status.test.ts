import { createServer } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { agentMetrics, agentSnapshotFromFirmware, createRegistry, managerMetrics } from '../../../host/ops/metrics.ts';
import type { ManagerSnapshot } from '../../../host/ops/metrics.ts';
import {
  agentStatus,
  fetchStatus,
  managerStatus,
  parseTarget,
  runStatusCommand,
  startStatusServer,
  StatusError,
} from '../../../host/ops/status.ts';
import type { StatusInput, StatusServer } from '../../../host/ops/status.ts';

const managerDoc: StatusInput = {
  kind: 'manager',
  name: 'manager-a',
  version: '0.1.0',
  role: 'primary',
  epoch: 7,
  vips: [
    {
      vip: '10.0.0.100:80',
      backends: [
        { backend: '10.0.1.1:8080', healthy: true, flows: 1234 },
        { backend: '10.0.1.2:8080', healthy: false, flows: 0 },
        { backend: '10.0.1.9:8080', healthy: false, draining: true, flows: 17 },
      ],
    },
    { vip: '10.0.0.101:443', backends: [] },
  ],
  tables: null,
  replication: { peer: '192.0.2.2:7400', lagSeconds: 0.0021, sent: 500, acked: 498, resent: 3, resync: 'complete' },
};

const agentDoc: StatusInput = {
  kind: 'agent',
  name: 'agent-1',
  version: '0.1.0',
  role: 'agent',
  epoch: null,
  vips: [],
  tables: { fixed: { entries: 1200, capacity: 65536 }, wildcard: { entries: 4, capacity: 1024 } },
  replication: null,
};

class Buf {
  text = '';
  write(s: string): void {
    this.text += s;
  }
}

const servers: Array<{ close(): Promise<void> }> = [];
afterEach(async () => {
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

async function serve(status: () => StatusInput, snap?: ManagerSnapshot): Promise<StatusServer> {
  const registry = createRegistry();
  if (snap) managerMetrics(registry, () => snap);
  const s = await startStatusServer({ port: 0, registry, status, uptimeSeconds: () => 3725 });
  servers.push(s);
  return s;
}

/** A server on 127.0.0.1 that answers every request with `body`. */
async function fake(code: number, body: string): Promise<string> {
  const srv = createServer((_req, res) => {
    res.writeHead(code, { 'Content-Type': 'text/plain' });
    res.end(body);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  servers.push({
    close: () =>
      new Promise<void>((r) => {
        srv.close(() => r());
        srv.closeAllConnections();
      }),
  });
  return `127.0.0.1:${(srv.address() as AddressInfo).port}`;
}

describe('status server + wasmlb status', () => {
  it('prints a human table of a manager', async () => {
    const s = await serve(() => managerDoc);
    const out = new Buf();
    const err = new Buf();
    const code = await runStatusCommand(`127.0.0.1:${s.port}`, { stdout: out, stderr: err });
    expect(code).toBe(0);
    expect(err.text).toBe('');
    const lines = out.text.split('\n');
    expect(lines[0]).toBe('manager manager-a  version 0.1.0  up 1h2m5s');
    expect(lines[1]).toBe('role primary  epoch 7');
    expect(lines[2]).toContain('peer 192.0.2.2:7400');
    expect(lines[2]).toContain('lag 2.1 ms');
    expect(lines[2]).toContain('resent 3');
    expect(lines[2]).toContain('resync complete');
    const head = lines.findIndex((l) => l.startsWith('VIP'));
    expect(lines[head]!.split(/\s+/)).toEqual(['VIP', 'BACKEND', 'HEALTH', 'FLOWS']);
    expect(lines[head + 1]!.split(/\s+/)).toEqual(['10.0.0.100:80', '10.0.1.1:8080', 'up', '1234']);
    expect(lines[head + 2]!.trim().split(/\s+/)).toEqual(['10.0.1.2:8080', 'DOWN', '0']);
    expect(lines[head + 3]!.trim().split(/\s+/)).toEqual(['10.0.1.9:8080', 'drain', '17']);
    expect(lines[head + 4]!.split(/\s+/)).toEqual(['10.0.0.101:443', '-', '-', '-']);
    expect(out.text).not.toContain('TABLE');
  });

  it('prints the table use of an agent', async () => {
    const s = await serve(() => agentDoc);
    const out = new Buf();
    expect(await runStatusCommand(s.url, { stdout: out, stderr: new Buf() })).toBe(0);
    expect(out.text).toContain('role agent\n');
    expect(out.text).toContain('no VIPs');
    const rows = out.text.split('\n').map((l) => l.trim().split(/\s+/));
    expect(rows).toContainEqual(['fixed', '1200', '65536', '1.8%']);
    expect(rows).toContainEqual(['wildcard', '4', '1024', '0.4%']);
  });

  it('--json prints the document with uptime added', async () => {
    const s = await serve(() => managerDoc);
    const out = new Buf();
    expect(await runStatusCommand(`127.0.0.1:${s.port}`, { json: true, stdout: out, stderr: new Buf() })).toBe(0);
    expect(JSON.parse(out.text)).toEqual({ ...managerDoc, uptimeSeconds: 3725 });
  });

  it('serves /metrics from the same port with values read from the callbacks', async () => {
    const snap: ManagerSnapshot = {
      role: 'primary',
      epoch: 7,
      backends: [{ vip: '10.0.0.100:80', backend: '10.0.1.1:8080', healthy: true, flows: 1234, packets: 10n, bytes: 640n }],
      replication: { sent: 500, acked: 498, resent: 3, resyncState: 'complete' },
      takeovers: { total: 0, lastSeconds: null },
      adoptedFlows: 0,
    };
    const s = await serve(() => managerDoc, snap);
    const res = await fetch(`${s.url}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    expect(text).toContain('# TYPE wasmlb_backend_flows gauge');
    expect(text).toContain('wasmlb_backend_flows{vip="10.0.0.100:80",backend="10.0.1.1:8080"} 1234');
    expect(text).toContain('wasmlb_backend_bytes_total{vip="10.0.0.100:80",backend="10.0.1.1:8080"} 640');
    expect(text).toContain('wasmlb_manager_epoch 7');
    expect(text).toContain('wasmlb_replication_messages_resent_total 3');
    expect((await fetch(`${s.url}/nope`)).status).toBe(404);
    expect((await fetch(`${s.url}/status`, { method: 'POST' })).status).toBe(405);
  });

  it('answers 500 when the getter throws, and the client says so', async () => {
    const s = await serve(() => {
      throw new Error('store not ready');
    });
    const err = new Buf();
    expect(await runStatusCommand(`127.0.0.1:${s.port}`, { stdout: new Buf(), stderr: err })).toBe(1);
    expect(err.text).toContain('HTTP 500');
    expect(err.text).toContain('store not ready');
  });

  it('fails clearly when the target is unreachable', async () => {
    // A port that was free a moment ago: nothing listens there any more.
    const s = await startStatusServer({ port: 0, registry: createRegistry(), status: () => agentDoc });
    const port = s.port;
    await s.close();
    const err = new Buf();
    const out = new Buf();
    expect(await runStatusCommand(`127.0.0.1:${port}`, { stdout: out, stderr: err })).toBe(1);
    expect(out.text).toBe('');
    expect(err.text).toMatch(/^wasmlb status: cannot reach http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/);
  });

  it('fails clearly when the target answers garbage', async () => {
    const notJson = await fake(200, '<html>hello</html>');
    const err = new Buf();
    expect(await runStatusCommand(notJson, { stdout: new Buf(), stderr: err })).toBe(1);
    expect(err.text).toContain('did not answer JSON');

    const wrongShape = await fake(200, JSON.stringify({ kind: 'manager', name: 'x' }));
    await expect(fetchStatus(wrongShape)).rejects.toMatchObject({ code: 'E_BAD_RESPONSE' });
    const err2 = new Buf();
    expect(await runStatusCommand(wrongShape, { stdout: new Buf(), stderr: err2 })).toBe(1);
    expect(err2.text).toContain('unexpected document (version');
  });

  it('refuses an answer that does not end (a wrong port streaming), and a bad request target gets 400', async () => {
    const srv = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'application/json' });
      const chunk = Buffer.alloc(1 << 20, 0x20);
      const more = (): void => {
        while (res.write(chunk));
        res.once('drain', more);
      };
      more();
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    servers.push({ close: () => new Promise<void>((r) => { srv.close(() => r()); srv.closeAllConnections(); }) });
    const port = (srv.address() as AddressInfo).port;
    await expect(fetchStatus(`127.0.0.1:${port}`, { timeoutMs: 10_000 })).rejects.toMatchObject({ code: 'E_BAD_RESPONSE', message: expect.stringMatching(/larger than 16 MiB/) });

    const s2 = await serve(() => agentDoc);
    const raw = await new Promise<string>((resolve) => {
      const sock = connect(s2.port, '127.0.0.1', () => sock.write('GET http://[ HTTP/1.1\r\nHost: x\r\n\r\n'));
      let got = '';
      sock.on('data', (d) => (got += d.toString()));
      sock.on('end', () => resolve(got));
      sock.on('error', () => resolve(got));
      setTimeout(() => { sock.destroy(); resolve(got); }, 1000);
    });
    expect(raw).toMatch(/^HTTP\/1\.1 400/);
  });

  it('times out on a target that never answers', async () => {
    const srv = createServer(() => {
      /* never answers */
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    servers.push({
      close: () =>
        new Promise<void>((r) => {
          srv.close(() => r());
          srv.closeAllConnections();
        }),
    });
    const port = (srv.address() as AddressInfo).port;
    await expect(fetchStatus(`127.0.0.1:${port}`, { timeoutMs: 150 })).rejects.toMatchObject({ code: 'E_TIMEOUT' });
  });

  it('rejects a bad target with exit code 2 and a taken port with E_LISTEN', async () => {
    const err = new Buf();
    expect(await runStatusCommand('just-a-host', { stdout: new Buf(), stderr: err })).toBe(2);
    expect(err.text).toContain('missing port');
    expect(parseTarget('9464')).toBe('http://127.0.0.1:9464');
    expect(parseTarget('[::1]:9464')).toBe('http://[::1]:9464');
    expect(parseTarget('http://h:1/')).toBe('http://h:1');
    expect(parseTarget('localhost:80')).toBe('http://localhost'); // the scheme's port, written out

    const s = await serve(() => agentDoc);
    await expect(
      startStatusServer({ port: s.port, registry: createRegistry(), status: () => agentDoc }),
    ).rejects.toSatisfy((e: unknown) => e instanceof StatusError && e.code === 'E_LISTEN');
  });
});

describe('status documents from the metrics snapshots', () => {
  it('a manager: backends grouped by VIP, replication figures and the last lag', async () => {
    const snap: ManagerSnapshot = {
      role: 'backup',
      epoch: 2,
      backends: [
        { vip: '10.0.0.100:80', backend: '10.0.1.1:8080', healthy: true, flows: 5, packets: 1n, bytes: 1n },
        { vip: '10.0.0.101:443', backend: '10.0.2.1:8443', healthy: true, flows: 7, packets: 1n, bytes: 1n },
        { vip: '10.0.0.100:80', backend: '10.0.1.2:8080', healthy: false, flows: 0, packets: 0, bytes: 0 },
      ],
      replication: { sent: 0, acked: 0, resent: 0, resyncState: 'in-progress' },
      takeovers: { total: 0, lastSeconds: null },
      adoptedFlows: 0,
    };
    const registry = createRegistry();
    const m = managerMetrics(registry, () => snap);
    expect(m.lastReplicationLag()).toBeNull();
    m.observeReplicationLag(0.004);
    const s = await startStatusServer({
      port: 0,
      registry,
      status: () => managerStatus(snap, { name: 'mgr-b', version: '0.1.0', peer: '10.9.0.1:7500', lagSeconds: m.lastReplicationLag() }),
    });
    servers.push(s);
    const out = new Buf();
    expect(await runStatusCommand(s.url, { stdout: out, stderr: new Buf() })).toBe(0);
    const rows = out.text.split('\n').map((l) => l.trim().split(/\s+/));
    expect(out.text).toContain('role backup  epoch 2');
    expect(out.text).toContain('lag 4.0 ms');
    expect(out.text).toContain('resync in-progress');
    expect(rows).toContainEqual(['10.0.0.100:80', '10.0.1.1:8080', 'up', '5']);
    expect(rows).toContainEqual(['10.0.1.2:8080', 'DOWN', '0']);
    expect(rows).toContainEqual(['10.0.0.101:443', '10.0.2.1:8443', 'up', '7']);
  });

  it('an agent: table use from the firmware counters', async () => {
    const counters = { FIXED_OCCUPANCY: 900n, WILDCARD_OCCUPANCY: 3n };
    const registry = createRegistry();
    const read = (): ReturnType<typeof agentSnapshotFromFirmware> => agentSnapshotFromFirmware(counters, { fixed: 1000, wildcards: 16 });
    agentMetrics(registry, read);
    const s = await startStatusServer({ port: 0, registry, status: () => agentStatus(read(), { name: 'router1', version: '0.1.0' }) });
    servers.push(s);
    const report = await fetchStatus(s.url);
    expect(report.tables).toEqual({ fixed: { entries: 900, capacity: 1000 }, wildcard: { entries: 3, capacity: 16 } });
    const out = new Buf();
    await runStatusCommand(s.url, { stdout: out, stderr: new Buf() });
    expect(out.text.split('\n').map((l) => l.trim().split(/\s+/))).toContainEqual(['fixed', '900', '1000', '90.0%']);
  });
});
