// The live topology on real namespaces: plain routing to each backend, the service port's replies routed
// into the TUN, a stand-in NAT on the TUN carrying HTTP from the client to a backend through the VIP,
// and a teardown that leaves nothing behind.

import { spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TunDevice } from '../../host/io/tun.ts';
import { bigFileSha256 } from './bigfile.ts';
import { NsHttpClient, tcpCounterDelta, tcpCounters } from './client.ts';
import { deleteNetns, listNetns, liveUnavailableReason, processAlive } from './netns.ts';
import { startStaticNat } from './static-nat.ts';
import { httpGetFrom, httpGetManyFrom, topologyDown, topologyIsGone, topologyUp, type Topology } from './topology.ts';

const reason = liveUnavailableReason();
if (reason) console.warn(`\n!!! SKIPPING live topology tests: ${reason}\n`);

const PREFIX = 'wlbt-t-';
const BIG = 8 * 1024 * 1024;

describe.skipIf(reason !== null)('live topology (namespaces, veths, TUN, backend HTTP servers)', () => {
  let topo: Topology;
  let serverPids: number[] = [];

  beforeAll(async () => {
    topo = await topologyUp({ prefix: PREFIX, bigFileBytes: BIG });
    serverPids = topo.backends.flatMap((b) =>
      (spawnSync('ip', ['netns', 'pids', b.netns], { encoding: 'utf8' }).stdout ?? '')
        .split(/\s+/)
        .filter(Boolean)
        .map(Number),
    );
  });
  afterAll(() => {
    topologyDown(PREFIX);
  });

  it('lets the client reach every backend directly by plain routing', async () => {
    const urls = topo.backends.map((b) => `http://${b.address}:${topo.directPort}/`);
    const res = await httpGetManyFrom(topo.netns.client, urls);
    expect(res.map((r) => [r.status, r.backend, r.body])).toEqual(
      topo.backends.map((b) => [200, b.name, `backend ${b.name}\n`]),
    );
  });

  it("routes the service port's replies into the TUN (so without an agent they are lost)", async () => {
    const be = topo.backends[0]!;
    await expect(httpGetFrom(topo.netns.client, `http://${be.address}:${topo.servicePort}/`, 800)).rejects.toThrow(
      /timeout|ETIMEDOUT/,
    );
  });

  it('carries HTTP client → VIP → backend and back through a NAT loop on each queue of the TUN device', async () => {
    const be = topo.backends[1]!;
    // The persistent device is multi-queue: the agent attaches several queues, one NAT loop per queue.
    const dev = TunDevice.open(topo.router.tunName, { netns: topo.netns.router, queues: 2 });
    const nats = dev.queues.map((q) =>
      startStaticNat(q, { vip: topo.vip, port: topo.servicePort, backend: be.address }),
    );
    try {
      const base = `http://${topo.vip}:${topo.servicePort}`;
      const urls = [...Array.from({ length: 6 }, () => `${base}/`), `${base}/big`];
      const res = await httpGetManyFrom(topo.netns.client, urls);
      for (const small of res.slice(0, 6)) {
        expect(small).toMatchObject({ status: 200, backend: be.name, body: `backend ${be.name}\n` });
      }
      const big = res[6]!;
      expect(big.bytes).toBe(BIG);
      expect(big.sha256).toBe(bigFileSha256(BIG));
      const forwarded = nats.reduce((a, n) => a + n.forwarded(), 0);
      expect(forwarded).toBeGreaterThan(BIG / 1500);
      expect(dev.stats().txErrors).toBe(0);
    } finally {
      for (const n of nats) n.stop();
      dev.close();
    }
  });

  it('keeps a throttled download alive across a 300 ms stop of the NAT loop: complete, identical, no reset', async () => {
    const be = topo.backends[0]!;
    const dev = TunDevice.open(topo.router.tunName, { netns: topo.netns.router });
    const nat = (): ReturnType<typeof startStaticNat> =>
      startStaticNat(dev.queues[0]!, { vip: topo.vip, port: topo.servicePort, backend: be.address });
    let loop = nat();
    const client = await NsHttpClient.start(topo.netns.client);
    try {
      const before = tcpCounters(topo.netns.client);
      const dl = client.get(`http://${topo.vip}:${topo.servicePort}/big`, {
        bytesPerSecond: 16 * 1024 * 1024,
        progressEvery: 256 * 1024,
      });
      expect(await dl.waitForBytes(2 * 1024 * 1024)).toBeLessThan(BIG);
      loop.stop(); // the "agent" is gone for a moment
      await new Promise((r) => setTimeout(r, 300));
      loop = nat();
      const res = await dl.result;
      expect(res).toMatchObject({ ok: true, status: 200, backend: be.name, bytes: BIG, sha256: bigFileSha256(BIG) });
      expect(res.ms).toBeGreaterThan(450); // the throttle held it to ≤ 16 MiB/s (and the pause added more)
      const delta = tcpCounterDelta(before, tcpCounters(topo.netns.client));
      expect(delta.EstabResets ?? 0).toBe(0);
      expect(delta.ActiveOpens).toBe(1);
      // A fresh connection right after works too.
      expect(await client.get(`http://${topo.vip}:${topo.servicePort}/`).result).toMatchObject({
        ok: true,
        body: `backend ${be.name}\n`,
      });
    } finally {
      client.close();
      loop.stop();
      dev.close();
    }
  });

  it('tears down everything, servers included, and up removes leftovers of a crashed run', async () => {
    expect(serverPids.length).toBeGreaterThanOrEqual(topo.backends.length); // node (+ tsx's esbuild)
    topologyDown(PREFIX);
    expect(topologyIsGone(PREFIX)).toBe(true);
    for (const pid of serverPids) expect(processAlive(pid), `pid ${pid} still alive`).toBe(false);
    // Nothing leaked into our own namespace either.
    const links = spawnSync('ip', ['-o', 'link'], { encoding: 'utf8' }).stdout;
    expect(links).not.toMatch(/\b(wlb0|c0|b1|b2)[@:]/);

    // A "crashed" run: namespaces left behind; bringing the topology up again replaces them cleanly.
    spawnSync('ip', ['netns', 'add', `${PREFIX}router`]);
    spawnSync('ip', ['netns', 'add', `${PREFIX}be7`]); // from an earlier run with more backends
    spawnSync('ip', ['netns', 'add', `${PREFIX}other`]); // not the topology's: must survive
    const again = await topologyUp({ prefix: PREFIX, backends: 1, startServers: false });
    try {
      expect(listNetns()).not.toContain(`${PREFIX}be7`);
      expect(listNetns()).toContain(`${PREFIX}other`);
      expect(again.backends.map((b) => b.netns)).toEqual([`${PREFIX}be1`]);
      again.down();
      expect(topologyIsGone(PREFIX)).toBe(true);
    } finally {
      deleteNetns(`${PREFIX}other`);
    }
  });
});
