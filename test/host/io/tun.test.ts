// The TUN device against the real kernel: a fresh network namespace per run, a device in it, datagrams sent
// by a process in that namespace read back as raw IPv4, crafted datagrams written and delivered to a socket.

import { spawn, spawnSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { TunDevice, TunError, TunQueue } from '../../../host/io/tun.ts';
import { pumpTun, type BatchAgent } from '../../../host/io/tun-pump.ts';
import type { ForwardingAgent, PacketSink } from '../../../host/agent/agent.ts';

// Type-level: the real agent plugs into pumpTun, and a TUN queue is a PacketSink (tsc fails on drift).
type Assignable<T, U extends T> = U;
export type AgentFitsPump = Assignable<BatchAgent, ForwardingAgent>;
export type QueueIsSink = Assignable<PacketSink, TunQueue>;
import { VipRoutes, formatCommand, routeCommands, runCommands, tunSetupCommands } from '../../../host/io/netconf.ts';
import { deleteNetns, deleteNetnsWithPrefix, liveUnavailableReason, run, tryRun } from '../../live/netns.ts';
import { buildUdp, bytesToIpv4, ipv4HeaderChecksumOk, l4ChecksumOk } from './packets.ts';

const reason = liveUnavailableReason();
if (reason) console.warn(`\n!!! SKIPPING TUN device tests: ${reason}\n`);

const PREFIX = 'wlbt-io';
const NS = `${PREFIX}${process.pid}`;
const LOCAL = '10.99.0.1';
const PEER = '10.99.0.2';

/** Runs a Node script inside the test namespace; resolves with its stdout once it exits. */
function nodeInNs(script: string, timeoutMs = 10_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('ip', ['netns', 'exec', NS, process.execPath, '--input-type=module', '-e', script], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** A sender in the namespace: `count` datagrams from LOCAL:sport+i to PEER:4000, then waits for replies. */
function udpSender(count: number, sport: number, payload: string, expectReplies: number): string {
  return `
    import dgram from 'node:dgram';
    const socks = [];
    const got = [];
    for (let i = 0; i < ${count}; i++) {
      const s = dgram.createSocket('udp4');
      await new Promise((r) => s.bind(${sport} + i, '${LOCAL}', r));
      s.on('message', (m, rinfo) => {
        got.push({ port: ${sport} + i, from: rinfo.address + ':' + rinfo.port, text: m.toString() });
        if (got.length >= ${expectReplies}) { console.log(JSON.stringify(got)); process.exit(0); }
      });
      socks.push(s);
    }
    for (const s of socks) s.send(${JSON.stringify(payload)}, 4000, '${PEER}');
    if (${expectReplies} === 0) setTimeout(() => process.exit(0), 50);
    else setTimeout(() => { console.log(JSON.stringify(got)); process.exit(3); }, 5000);
  `;
}

interface Packet {
  bytes: Uint8Array;
  queue: number;
}

/** Reads from the queues until `want` IPv4 packets matching `keep` arrived, or `timeoutMs` passed. */
async function collect(
  queues: readonly TunQueue[],
  want: number,
  keep: (p: Uint8Array) => boolean,
  timeoutMs = 5000,
): Promise<Packet[]> {
  const buf = new Uint8Array(64 * 1024);
  const offsets = new Uint32Array(32);
  const lengths = new Uint32Array(32);
  const got: Packet[] = [];
  const deadline = Date.now() + timeoutMs;
  while (got.length < want && Date.now() < deadline) {
    let any = false;
    for (const q of queues) {
      const n = q.readBatch(buf, offsets, lengths, 32);
      for (let i = 0; i < n; i++) {
        const p = buf.slice(offsets[i]!, offsets[i]! + lengths[i]!);
        if (keep(p)) got.push({ bytes: p, queue: q.index });
      }
      any ||= n > 0;
    }
    if (!any) await Promise.race(queues.map((q) => q.readable(Math.max(1, deadline - Date.now()))));
  }
  return got;
}

const isUdpToPeer = (p: Uint8Array): boolean => p[0]! >> 4 === 4 && p[9] === 17 && bytesToIpv4(p, 16) === PEER;

describe.skipIf(reason !== null)('TunDevice on a real kernel device', () => {
  beforeAll(() => {
    // Leftovers of a crashed earlier run of this file (other pids) go first.
    deleteNetnsWithPrefix(PREFIX);
    run(['ip', 'netns', 'add', NS]);
    run(['ip', '-n', NS, 'link', 'set', 'lo', 'up']);
  });
  afterAll(() => deleteNetns(NS));

  function openWithAddress(name: string, queues = 1, maxPacket?: number): TunDevice {
    const dev = TunDevice.open(name, { netns: NS, queues, ...(maxPacket ? { maxPacket } : {}) });
    runCommands(tunSetupCommands({ device: name, netns: NS, addresses: [`${LOCAL}/24`], disableIpv6: true }), {
      dryRun: false,
    });
    return dev;
  }

  it('reads a datagram sent in the namespace as a raw IPv4 packet and delivers a crafted reply', async () => {
    const dev = openWithAddress('wlbt0');
    try {
      const sender = nodeInNs(udpSender(1, 5000, 'hello-tun', 2));
      const [pkt] = await collect(dev.queues, 1, isUdpToPeer);
      expect(pkt, 'no UDP packet came out of the TUN device').toBeDefined();
      const p = pkt!.bytes;
      expect(p[0]! >> 4).toBe(4); // version
      expect(p[0]! & 0x0f).toBe(5); // IHL
      expect(p[9]).toBe(17); // UDP
      expect(bytesToIpv4(p, 12)).toBe(LOCAL);
      expect(bytesToIpv4(p, 16)).toBe(PEER);
      expect((p[2]! << 8) | p[3]!).toBe(p.length); // total length = what read(2) returned
      expect(ipv4HeaderChecksumOk(p)).toBe(true);
      expect(l4ChecksumOk(p)).toBe(true); // no PI header, no offload: checksums are final
      expect((p[20]! << 8) | p[21]!).toBe(5000);
      expect((p[22]! << 8) | p[23]!).toBe(4000);
      expect(Buffer.from(p.subarray(28)).toString()).toBe('hello-tun');

      const reply = buildUdp({ src: PEER, dst: LOCAL, sport: 4000, dport: 5000, payload: Buffer.from('reply') });
      const buf = new Uint8Array(256);
      buf.set(reply, 16);
      expect(dev.writeBatch(buf, Uint32Array.of(16), Uint32Array.of(reply.length), 1)).toBe(1);
      // The agent's PacketSink shape writes one packet the same way.
      const second = buildUdp({ src: PEER, dst: LOCAL, sport: 4000, dport: 5000, payload: Buffer.from('sink') });
      dev.queues[0]!.send(second, 0);
      const res = await sender;
      expect(res.code).toBe(0);
      expect(JSON.parse(res.out)).toEqual([
        { port: 5000, from: `${PEER}:4000`, text: 'reply' },
        { port: 5000, from: `${PEER}:4000`, text: 'sink' },
      ]);
      expect(dev.stats()).toMatchObject({ txPackets: 2, txBytes: reply.length + second.length, txErrors: 0 });
    } finally {
      dev.close();
    }
  });

  it('skips a packet the kernel refuses and goes on with the batch', async () => {
    const dev = openWithAddress('wlbt1');
    try {
      const sender = nodeInNs(udpSender(1, 5100, 'x', 1));
      // Wait until the sender's socket is bound (its datagram shows up), then write [garbage, reply].
      expect((await collect(dev.queues, 1, isUdpToPeer)).length).toBe(1);
      const bad = new Uint8Array(40); // version nibble 0: neither IPv4 nor IPv6
      const good = buildUdp({ src: PEER, dst: LOCAL, sport: 4000, dport: 5100, payload: Buffer.from('after') });
      const buf = new Uint8Array(512);
      buf.set(bad, 0);
      buf.set(good, 64);
      const n = dev.writeBatch(buf, Uint32Array.of(0, 64), Uint32Array.of(bad.length, good.length), 2);
      expect(n).toBe(2);
      expect(dev.stats().txErrors).toBe(1);
      expect(dev.stats().txPackets).toBe(1);
      const res = await sender;
      expect(JSON.parse(res.out)[0].text).toBe('after');
    } finally {
      dev.close();
    }
  });

  it('drops and counts packets longer than maxPacket instead of truncating them', async () => {
    const dev = openWithAddress('wlbt2', 1, 100);
    try {
      await nodeInNs(udpSender(1, 5200, 'y'.repeat(200), 0));
      const small = nodeInNs(udpSender(1, 5201, 'small', 0));
      await small;
      const got = await collect(dev.queues, 1, isUdpToPeer);
      expect(got.map((g) => g.bytes.length)).toEqual([28 + 5]);
      expect(dev.stats().rxOversize).toBe(1);
    } finally {
      dev.close();
    }
  });

  it('spreads flows over the queues of a multi-queue device and loses none', async () => {
    const dev = openWithAddress('wlbt3', 2);
    try {
      expect(dev.multiQueue).toBe(true);
      expect(dev.queues.map((q) => q.index)).toEqual([0, 1]);
      const flows = 32;
      await nodeInNs(udpSender(flows, 6000, 'mq', 0));
      const got = await collect(dev.queues, flows, isUdpToPeer);
      const ports = got.map((g) => (g.bytes[20]! << 8) | g.bytes[21]!).sort((a, b) => a - b);
      expect(ports).toEqual(Array.from({ length: flows }, (_, i) => 6000 + i));
      const perQueue = [0, 1].map((q) => got.filter((g) => g.queue === q).length);
      // The kernel picks a queue by flow hash: 32 flows all on one queue has probability 2^-31.
      expect(perQueue[0]).toBeGreaterThan(0);
      expect(perQueue[1]).toBeGreaterThan(0);
      // One flow always lands on the same queue.
      await nodeInNs(udpSender(1, 6000, 'again', 0));
      const again = await collect(dev.queues, 1, isUdpToPeer);
      expect(again[0]!.queue).toBe(got.find((g) => ((g.bytes[20]! << 8) | g.bytes[21]!) === 6000)!.queue);
    } finally {
      dev.close();
    }
  });

  it('places packets in fixed slots when given a stride', async () => {
    const dev = openWithAddress('wlbt8'); // default maxPacket fits the firmware's 2048-byte slots
    try {
      await nodeInNs(udpSender(3, 5300, 'slot', 0));
      const buf = new Uint8Array(4 * 2048);
      const offs = new Uint32Array(4);
      const lens = new Uint32Array(4);
      // The sender has exited: its three datagrams wait in the queue, one call reads them all.
      expect(dev.readBatch(buf, offs, lens, 4, 2048)).toBe(3);
      expect([...offs.subarray(0, 3)]).toEqual([0, 2048, 4096]);
      for (let i = 0; i < 3; i++) {
        const p = buf.subarray(offs[i]!, offs[i]! + lens[i]!);
        expect(isUdpToPeer(p)).toBe(true);
        expect(Buffer.from(p.subarray(28)).toString()).toBe('slot');
      }
      expect(() => dev.readBatch(buf, offs, lens, 1, 1000)).toThrowError(
        expect.objectContaining({ code: 'BAD_ARGUMENT' }),
      );
    } finally {
      dev.close();
    }
  });

  it('signals readability on the event loop, reads nothing when idle, and is gone after close', async () => {
    const dev = openWithAddress('wlbt4');
    const q = dev.queues[0]!;
    const buf = new Uint8Array(8192);
    const offs = new Uint32Array(4);
    const lens = new Uint32Array(4);
    expect(q.readBatch(buf, offs, lens, 4)).toBe(0); // EAGAIN, not a block
    let fired = 0;
    const seen: number[] = [];
    const woke = new Promise<void>((resolve) => {
      const stop = q.onReadable(() => {
        fired++;
        const n = q.readBatch(buf, offs, lens, 4);
        for (let i = 0; i < n; i++) if (isUdpToPeer(buf.subarray(offs[i]!, offs[i]! + lens[i]!))) seen.push(i);
        if (seen.length > 0) {
          stop();
          resolve();
        }
      });
    });
    expect(() => q.onReadable(() => undefined)).toThrow(TunError);
    expect(() => q.readable()).toThrow(TunError); // one poll handle per fd
    await nodeInNs(udpSender(1, 7000, 'wake', 0));
    await woke;
    expect(fired).toBeGreaterThan(0);
    dev.close();
    expect(() => q.readBatch(buf, offs, lens, 4)).toThrowError(expect.objectContaining({ code: 'TUN_CLOSED' }));
    // Not persistent: the device vanished with its last fd.
    expect(tryRun(['ip', '-n', NS, 'link', 'show', 'wlbt4'])).toBe(false);
  });

  it('times out a readable() wait on an idle queue, and ends it when the queue closes', async () => {
    const dev = openWithAddress('wlbt6');
    const q = dev.queues[0]!;
    const t0 = Date.now();
    expect(await q.readable(100)).toBe(false);
    expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
    const waiting = q.readable();
    dev.close();
    expect(await waiting).toBe(false);
  });

  it('routes each advertised VIP into the device while it lives, and only then', () => {
    const dev = openWithAddress('wlbt7');
    try {
      const routes = (): string =>
        run(['ip', '-n', NS, '-4', 'route', 'show', 'dev', 'wlbt7'])
          .split('\n')
          .filter((l) => l.startsWith('10.99.100.'))
          .map((l) => l.split(' ')[0])
          .sort()
          .join(',');
      const vips = new VipRoutes('wlbt7', { apply: true, netns: NS });
      expect(vips.update(['10.99.100.1', '10.99.100.2'])).toHaveLength(2);
      expect(routes()).toBe('10.99.100.1,10.99.100.2');
      expect(vips.update(['10.99.100.2', '10.99.100.3'])).toEqual([
        `ip -n ${NS} route replace 10.99.100.3/32 dev wlbt7`,
        `ip -n ${NS} route del 10.99.100.1/32 dev wlbt7`,
      ]);
      expect(routes()).toBe('10.99.100.2,10.99.100.3');
      expect(vips.update(['10.99.100.3', '10.99.100.2'])).toEqual([]); // nothing changed, nothing run
      // someone removed a route behind our back: its del fails, is reported, and the set moves on
      run(['ip', '-n', NS, 'route', 'del', '10.99.100.3/32', 'dev', 'wlbt7']);
      const errors: string[] = [];
      expect(vips.update(['10.99.100.2'], (line) => errors.push(line))).toEqual([]);
      expect(errors).toEqual([`ip -n ${NS} route del 10.99.100.3/32 dev wlbt7`]);
      expect(vips.routed()).toEqual(['10.99.100.2/32']);
      vips.clear();
      expect(routes()).toBe('');
    } finally {
      dev.close();
    }
  });

  it('reports a device deleted under it once, as a typed error, instead of spinning', async () => {
    const dev = openWithAddress('wlbt9');
    const q = dev.queues[0]!;
    try {
      const errors: TunError[] = [];
      let calls = 0;
      const failed = new Promise<void>((resolve) => {
        q.onReadable((err) => {
          calls++;
          if (err) {
            errors.push(err);
            resolve();
          }
        });
      });
      run(['ip', '-n', NS, 'link', 'del', 'wlbt9']);
      await failed;
      await new Promise((r) => setTimeout(r, 50));
      expect(errors.map((e) => e.code)).toEqual(['TUN_READ']);
      expect(calls).toBe(1);
      const buf = new Uint8Array(4096);
      expect(() => q.readBatch(buf, new Uint32Array(1), new Uint32Array(1), 1)).toThrowError(
        expect.objectContaining({ code: 'TUN_READ' }),
      );
    } finally {
      dev.close();
    }
  });

  it('pumps batches from the TUN into the firmware slots and the forwarded packets back out', async () => {
    const dev = openWithAddress('wlbt10');
    const q = dev.queues[0]!;
    // A stand-in agent with the firmware's batch shape: it "forwards" each packet back to its sender
    // (addresses and ports swapped: no checksum changes) through the queue as its PacketSink.
    const batchMax = 8;
    const packetSlot = 2048;
    const desc: Array<[number, number]> = [];
    const batches: number[] = [];
    const agent = {
      firmware: {
        packets: new Uint8Array(batchMax * packetSlot),
        capacities: { batchMax, packetSlot },
        setDescriptor: (i: number, off: number, len: number) => (desc[i] = [off, len]),
      },
      processBatch(count: number) {
        batches.push(count);
        for (let i = 0; i < count; i++) {
          const [off, len] = desc[i]!;
          expect(off).toBe(i * packetSlot);
          const p = agent.firmware.packets.subarray(off, off + len);
          if (!isUdpToPeer(p)) continue;
          const src = p.slice(12, 16);
          p.copyWithin(12, 16, 20);
          p.set(src, 16);
          const sport = p.slice(20, 22);
          p.copyWithin(20, 22, 24);
          p.set(sport, 22);
          q.send(p, 0);
        }
      },
    };
    const pump = pumpTun(q, agent);
    try {
      const flows = 20;
      const res = await nodeInNs(udpSender(flows, 5400, 'echo', flows));
      expect(res.code).toBe(0);
      const got = JSON.parse(res.out) as Array<{ port: number; from: string; text: string }>;
      expect(got.map((g) => g.port).sort((a, b) => a - b)).toEqual(Array.from({ length: flows }, (_, i) => 5400 + i));
      expect(got.every((g) => g.from === `${PEER}:4000` && g.text === 'echo')).toBe(true);
      expect(pump.stats.packets).toBeGreaterThanOrEqual(flows);
      expect(Math.max(...batches)).toBeLessThanOrEqual(batchMax);
      expect(batches.reduce((a, b) => a + b, 0)).toBe(pump.stats.packets);
    } finally {
      pump.stop();
      dev.close();
    }
  });

  it('refuses bad names and a missing namespace with typed errors', () => {
    expect(() => TunDevice.open('a-name-that-is-too-long')).toThrowError(
      expect.objectContaining({ code: 'BAD_ARGUMENT' }),
    );
    expect(() => TunDevice.open('wlbt9', { netns: `${PREFIX}-missing` })).toThrowError(
      expect.objectContaining({ code: 'TUN_NETNS' }),
    );
    // A buffer that cannot hold one maxPacket-sized packet would make a reader spin: refused.
    const dev = TunDevice.open('wlbt5', { netns: NS, maxPacket: 1500 });
    try {
      expect(() => dev.readBatch(new Uint8Array(1500), new Uint32Array(1), new Uint32Array(1), 1)).toThrowError(
        expect.objectContaining({ code: 'BAD_ARGUMENT' }),
      );
    } finally {
      dev.close();
    }
    // A pattern lets the kernel pick the name; the device reports it, every queue is on it.
    const picked = TunDevice.open('wlbp%d', { netns: NS, queues: 2 });
    try {
      expect(picked.name).toMatch(/^wlbp\d+$/);
      expect(run(['ip', '-n', NS, '-o', 'link', 'show', picked.name])).toContain(picked.name);
      expect(run(['ip', '-n', NS, '-o', 'link', 'show'])).not.toContain('wlbp%d');
    } finally {
      picked.close();
    }
    // A name taken by a non-TUN device cannot be attached.
    expect(() => TunDevice.open('lo', { netns: NS })).toThrowError(expect.objectContaining({ code: 'TUN_ATTACH' }));
  });
});

const REPO = new URL('../../../', import.meta.url).pathname;
const hasSetpriv = spawnSync('setpriv', ['--version'], { stdio: 'ignore' }).status === 0;
// The check runs the sources as user nobody: a checkout under a private directory (mktemp -d) is not
// readable by nobody, and then the check cannot run at all.
const nobodyReads =
  hasSetpriv &&
  spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c', 'test -r package.json && test -r node_modules/tsx/package.json'], {
    cwd: REPO,
    stdio: 'ignore',
  }).status === 0;
if (!hasSetpriv) console.warn('\n!!! SKIPPING the unprivileged TUN check: no setpriv (util-linux)\n');
else if (!nobodyReads) console.warn(`\n!!! SKIPPING the unprivileged TUN check: user nobody cannot read the checkout at ${REPO}\n`);

describe.skipIf(reason !== null || !hasSetpriv || !nobodyReads)('TunDevice without privileges', () => {
  it('says why TUN and the live tests are unavailable, and fails with TUN_UNAVAILABLE', () => {
    const script = `
      const tun = await import('./host/io/tun.ts');
      const live = await import('./test/live/netns.ts');
      let code = null;
      try { tun.TunDevice.open('wlbtx0'); } catch (e) { code = e.code; }
      console.log(JSON.stringify({ tun: tun.tunUnavailableReason(), live: live.liveUnavailableReason(), code }));
    `;
    const res = spawnSync(
      'setpriv',
      ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all', process.execPath, '--import', 'tsx',
        '--input-type=module', '-e', script],
      { encoding: 'utf8', cwd: REPO, timeout: 20_000 },
    );
    const out = JSON.parse(res.stdout.trim().split('\n').pop()!) as { tun: string; live: string; code: string };
    expect(out.code).toBe('TUN_UNAVAILABLE');
    expect(out.tun).toMatch(/\/dev\/net\/tun|CAP_NET_ADMIN/);
    expect(out.live).toBe(out.tun);
  });
});

describe('pumpTun (no device needed)', () => {
  it('a read that fails between two batches of a wake-up stops the pump and is reported, not thrown into the poll', () => {
    let readable: ((err?: TunError) => void) | null = null;
    let stops = 0;
    let reads = 0;
    const queue = {
      index: 0,
      onReadable: (cb: (err?: TunError) => void) => {
        readable = cb;
        return () => void stops++;
      },
      readBatch: (_buf: Uint8Array, offsets: Uint32Array, lengths: Uint32Array) => {
        if (++reads === 2) throw new TunError('TUN_READ', 'read on TUN queue 0', 77);
        offsets[0] = 0;
        lengths[0] = 40;
        return 1; // a full batch: the pump reads again
      },
    } as unknown as TunQueue;
    let batches = 0;
    const agent = { firmware: { packets: new Uint8Array(4096), capacities: { batchMax: 1, packetSlot: 2048 }, setDescriptor: () => undefined }, processBatch: () => void batches++ } as unknown as BatchAgent;
    const errors: string[] = [];
    const pump = pumpTun(queue, agent, { onError: (e) => errors.push(e.code) });
    expect(() => readable!()).not.toThrow();
    expect(batches).toBe(1);
    expect(errors).toEqual(['TUN_READ']);
    expect(stops).toBe(1);
    pump.stop(); // already stopped: nothing more
    expect(stops).toBe(1);
  });
});

describe('ip command plans (no device needed)', () => {
  it('prints the set-up commands without running them in dry-run mode', () => {
    const cmds = tunSetupCommands({
      device: 'wlb0',
      netns: 'wlbt-router',
      addresses: ['10.99.0.1/24'],
      routes: ['10.99.100.1/32'],
      mtu: 1500,
      disableIpv6: true,
      acceptLocal: true,
    });
    expect(runCommands(cmds, { dryRun: true })).toEqual([
      'ip netns exec wlbt-router sysctl -qw net.ipv6.conf.wlb0.disable_ipv6=1',
      'ip netns exec wlbt-router sysctl -qw net.ipv4.conf.wlb0.accept_local=1',
      'ip -n wlbt-router link set dev wlb0 mtu 1500',
      'ip -n wlbt-router addr replace 10.99.0.1/24 dev wlb0',
      'ip -n wlbt-router link set dev wlb0 up',
      'ip -n wlbt-router route replace 10.99.100.1/32 dev wlb0',
    ]);
    expect(routeCommands('wlb0', ['10.99.100.1/32'], 'del').map(formatCommand)).toEqual([
      'ip route del 10.99.100.1/32 dev wlb0',
    ]);
  });

  it('rejects what would be unsafe to pass to a shell or to ip', () => {
    expect(() => tunSetupCommands({ device: 'wlb0; rm -rf /' })).toThrowError(
      expect.objectContaining({ code: 'BAD_ARGUMENT' }),
    );
    expect(() => routeCommands('wlb0', ['10.0.0.300/32'], 'add')).toThrowError(
      expect.objectContaining({ code: 'BAD_ARGUMENT' }),
    );
    expect(formatCommand(['echo', "it's"])).toBe(`echo 'it'\\''s'`);
  });

  it('only prints VIP route changes without --setup', () => {
    const vips = new VipRoutes('wlb0', { apply: false });
    expect(vips.update(['10.99.100.1'])).toEqual(['ip route replace 10.99.100.1/32 dev wlb0']);
    expect(vips.routed()).toEqual(['10.99.100.1/32']);
    expect(vips.update([])).toEqual(['ip route del 10.99.100.1/32 dev wlb0']);
    expect(() => vips.update(['10.99.100.256'])).toThrowError(expect.objectContaining({ code: 'BAD_ARGUMENT' }));
  });
});
