// The agent host against a manager played by this test over real UDP sockets: interest data echo,
// hold queue (one interest match per held flow, release on the affinity update, deadline → manager),
// IP packet only messages, and malformed control datagrams counted, never fatal.
import { afterEach, describe, expect, it } from 'vitest';
import { ipToU32, type MessageOf, type ServiceMessage } from '../../../host/protocol/index.ts';
import { ServiceChannel } from '../../../host/transport/channel.ts';
import { ControlSocket, type Endpoint } from '../../../host/transport/udp.ts';
import { ForwardingAgent, TAKEOVER_NOTICE } from '../../../host/agent/agent.ts';
import { ForwardingFirmware, VerdictCode } from '../../../host/agent/wasm.ts';
import { TestAgent } from '../../support/agent.ts';
import { dstOf, tcp, TCP_ACK, TCP_SYN } from '../../support/packets.ts';

const VIP = '10.0.0.100';
const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  for (const c of closers.splice(0)) await c();
});

async function fakeManager(sender = 4242): Promise<{ ch: ServiceChannel; got: ServiceMessage[]; ep: Endpoint }> {
  const socket = await ControlSocket.open({ bind: { address: '127.0.0.1', port: 0 } });
  const ch = new ServiceChannel({ socket, sender });
  const got: ServiceMessage[] = [];
  ch.onMessage((m) => got.push(m));
  closers.push(() => ch.close());
  return { ch, got, ep: socket.local };
}

async function startAgent(): Promise<TestAgent> {
  const a = await TestAgent.start();
  closers.push(() => a.close());
  return a;
}

const agentEp = (a: TestAgent): Endpoint => a.channel.socket.local;

function wildcard(mgr: Endpoint, opts: { hold?: boolean; data?: boolean; backupPrecedence?: number } = {}): Parameters<ServiceChannel['send']>[0] {
  return {
    type: 'affinity-update-wildcard',
    servicePrecedence: { value: 100, wildcardFirst: false },
    backupPrecedence: opts.backupPrecedence ?? 200,
    managerInterestData: Uint8Array.from([1, 2, 3]),
    wildcards: [
      {
        affinity: { protocol: 6, srcAddr: 0, srcMask: 0, dstAddr: ipToU32(VIP), dstMask: 0xffffffff, srcPort: 0, dstPort: 80, flags: 0, ttlMs: 30_000 },
        actions: [{ kind: 'interest-criteria', addr: ipToU32(mgr.address), port: mgr.port, mask: 1 << 15, data: opts.data ?? true, copy: false, hold: opts.hold ?? false }],
      },
    ],
  };
}

function fixedFor(client: string, cport: number, backend: string): Parameters<ServiceChannel['send']>[0] {
  return {
    type: 'affinity-update-fixed',
    fixed: [
      {
        affinity: { protocol: 6, srcAddr: ipToU32(client), srcPort: cport, dstAddr: ipToU32(VIP), dstPort: 80, flags: 0, ttlMs: 10_000 },
        actions: [{ kind: 'nat', dstAddr: ipToU32(backend), dstPort: 8080 }],
      },
    ],
  };
}

describe('ForwardingAgent', () => {
  it('echoes the manager’s interest data in its interest matches, with the packet', async () => {
    const agent = await startAgent();
    const mgr = await fakeManager();
    mgr.ch.send(wildcard(mgr.ep), agentEp(agent));
    await agent.until(() => agent.agent.stats.wildcardsInstalled === 1, 'the wildcard');
    agent.send(tcp('10.9.0.1', 40000, VIP, 80, TCP_SYN));
    await agent.until(() => mgr.got.length === 1, 'an interest match');
    const m = mgr.got[0]!;
    expect(m.type).toBe('interest-match-wildcard');
    if (m.type !== 'interest-match-wildcard') return;
    expect([...(m.managerInterestData ?? [])]).toEqual([1, 2, 3]);
    expect(m.identifier).toMatchObject({ srcAddr: ipToU32('10.9.0.1'), srcPort: 40000, dstAddr: ipToU32(VIP), dstPort: 80, protocol: 6 });
    expect(m.identifier.reason).toBe(1 << 15); // matched bits: the wildcard asked for all packets
    expect(m.packet && dstOf(m.packet)).toBe(`${VIP}:80`);
  });

  it('holds a new flow’s packets, asks once, and forwards them in order when the affinity arrives', async () => {
    const agent = await startAgent();
    const mgr = await fakeManager();
    mgr.ch.send(wildcard(mgr.ep, { hold: true, data: false }), agentEp(agent));
    await agent.until(() => agent.agent.stats.wildcardsInstalled === 1, 'the wildcard');
    agent.send(tcp('10.9.0.2', 40001, VIP, 80, TCP_SYN, { seq: 1 }), tcp('10.9.0.2', 40001, VIP, 80, TCP_ACK, { seq: 2 }));
    expect(agent.agent.hold.size).toBe(2);
    await agent.until(() => mgr.got.length === 1, 'one interest match');
    await new Promise((r) => setTimeout(r, 5));
    expect(mgr.got.length).toBe(1);
    mgr.ch.send(fixedFor('10.9.0.2', 40001, '10.0.1.7'), agentEp(agent));
    await agent.until(() => agent.out.length === 2, 'the held packets');
    expect(agent.out.map((o) => dstOf(o.packet))).toEqual(['10.0.1.7:8080', '10.0.1.7:8080']);
    expect(agent.out.map((o) => o.packet.readUInt32BE(24))).toEqual([1, 2]); // TCP seq: arrival order
    expect(agent.agent.hold.size).toBe(0);
  });

  it('sends a held packet to the manager when its deadline passes', async () => {
    const agent = await startAgent();
    const mgr = await fakeManager();
    mgr.ch.send(wildcard(mgr.ep, { hold: true, data: false }), agentEp(agent));
    await agent.until(() => agent.agent.stats.wildcardsInstalled === 1, 'the wildcard');
    agent.send(tcp('10.9.0.3', 40002, VIP, 80, TCP_SYN));
    // First the interest match without the packet, then (deadline 20 ms) the packet itself.
    await agent.until(() => mgr.got.some((m) => m.type === 'interest-match-wildcard' && m.packet !== undefined), 'the expired packet');
    expect(agent.agent.stats.holdExpired).toBe(1);
    expect(agent.agent.hold.size).toBe(0);
  });

  it('at a takeover notice runs again the packets the replaced manager never answered, and only those', async () => {
    const agent = await startAgent();
    const primary = await fakeManager(4242);
    const backup = await fakeManager(4343);
    // on the wire the higher backup precedence wins: the primary's
    primary.ch.send(wildcard(primary.ep, { backupPrecedence: 300 }), agentEp(agent));
    backup.ch.send(wildcard(backup.ep, { backupPrecedence: 200 }), agentEp(agent));
    await agent.until(() => agent.agent.stats.wildcardsInstalled === 2, 'both wildcards');
    for (let i = 1; i <= 3; i++) agent.send(tcp(`10.9.1.${i}`, 41000 + i, VIP, 80, TCP_SYN));
    await agent.until(() => primary.got.length === 3, 'three interest matches at the primary');
    expect(backup.got.length).toBe(0);
    // The primary answers the first flow, then dies; the backup's takeover notice names it.
    primary.ch.send(fixedFor('10.9.1.1', 41001, '10.0.1.7'), agentEp(agent));
    await agent.until(() => agent.agent.stats.fixedInstalled === 1, 'the first flow answered');
    backup.ch.send(
      { type: 'heartbeat', identity: { addr: 4242, hostName: TAKEOVER_NOTICE }, heartbeat: { role: 'primary', resyncState: 'none', epoch: 7, backupPrecedence: 200, intervalMs: 50 } },
      agentEp(agent),
    );
    await agent.until(() => backup.got.length === 2, 'the unanswered flows at the backup');
    expect(agent.agent.stats.resentAfterTakeover).toBe(2);
    const asked = backup.got.map((m) => (m.type === 'interest-match-wildcard' && m.packet ? m.identifier.srcPort : -1));
    expect(asked.sort()).toEqual([41002, 41003]);
    await new Promise((r) => setTimeout(r, 20));
    expect(backup.got.length).toBe(2);
  });

  it('at a takeover notice runs again the packets held for the replaced manager (not at their deadline, to the dead one)', async () => {
    const agent = await TestAgent.start({}, { holdQueue: { size: 64, deadlineMs: 10_000 } });
    closers.push(() => agent.close());
    const primary = await fakeManager(4242);
    const backup = await fakeManager(4343);
    primary.ch.send(wildcard(primary.ep, { hold: true, data: false, backupPrecedence: 300 }), agentEp(agent));
    backup.ch.send(wildcard(backup.ep, { backupPrecedence: 200 }), agentEp(agent));
    await agent.until(() => agent.agent.stats.wildcardsInstalled === 2, 'both wildcards');
    agent.send(tcp('10.9.2.1', 41100, VIP, 80, TCP_SYN, { seq: 1 }), tcp('10.9.2.1', 41100, VIP, 80, TCP_ACK, { seq: 2 }));
    expect(agent.agent.hold.size).toBe(2);
    await agent.until(() => primary.got.length === 1, 'the interest match at the primary');
    backup.ch.send(
      { type: 'heartbeat', identity: { addr: 4242, hostName: TAKEOVER_NOTICE }, heartbeat: { role: 'primary', resyncState: 'none', epoch: 7, backupPrecedence: 200, intervalMs: 50 } },
      agentEp(agent),
    );
    // both run again against the backup's wildcard: its interest matches carry them (in order)
    await agent.until(() => backup.got.length === 2, 'the held packets at the backup');
    expect(agent.agent.hold.size).toBe(0);
    expect(backup.got.map((m) => (m.type === 'interest-match-wildcard' && m.packet ? Buffer.from(m.packet).readUInt32BE(24) : -1))).toEqual([1, 2]);
    expect(primary.got.length).toBe(1);
  });

  it('keeps at most 4096 unanswered packets and 4 MiB of them for a resend, the oldest giving way', async () => {
    const agent = await startAgent();
    const mgr = await fakeManager();
    mgr.ch.send(wildcard(mgr.ep), agentEp(agent));
    await agent.until(() => agent.agent.stats.wildcardsInstalled === 1, 'the wildcard');
    const syns = (n: number, first: number, payload?: string): Uint8Array[] =>
      Array.from({ length: n }, (_, i) => tcp(`10.20.${(first + i) >> 8}.${(first + i) & 255}`, 42000, VIP, 80, TCP_SYN, { payload }));
    agent.send(...syns(5000, 0));
    expect(agent.agent.unanswered.packets).toBe(4096);
    // large first packets: the byte budget binds first (1440-byte packets: 2912 fit in 4 MiB)
    const big = syns(4000, 6000, 'x'.repeat(1400));
    agent.send(...big);
    const kept = agent.agent.unanswered;
    expect(kept.bytes).toBeLessThanOrEqual(4 << 20);
    expect(kept.packets).toBe(Math.floor((4 << 20) / big[0]!.length));
  });

  it('forwards IP packet only messages through the firmware', async () => {
    const agent = await startAgent();
    const mgr = await fakeManager();
    mgr.ch.send({ type: 'ip-packet-only', packet: tcp('10.9.0.4', 40003, '10.5.5.5', 22, TCP_SYN) }, agentEp(agent));
    await agent.until(() => agent.out.length === 1, 'the forwarded packet');
    expect(dstOf(agent.out[0]!.packet)).toBe('10.5.5.5:22');
  });

  it('counts a returned packet too large for a batch slot instead of failing on it, and keeps working', async () => {
    const agent = await startAgent();
    const mgr = await fakeManager();
    // ip-packet-only is never signed (docs/protocol.md): anyone who reaches the port can send one
    const big = tcp('10.9.0.5', 40004, '10.5.5.5', 22, TCP_ACK, { payload: 'x'.repeat(3000) });
    mgr.ch.send({ type: 'ip-packet-only', packet: big }, agentEp(agent));
    mgr.ch.send({ type: 'ip-packet-only', packet: tcp('10.9.0.4', 40003, '10.5.5.5', 22, TCP_SYN) }, agentEp(agent));
    await agent.until(() => agent.out.length === 1, 'the small packet forwarded after the big one');
    expect(agent.agent.stats.oversizePackets).toBe(1);
    expect(agent.channel.stats.handlerErrors).toBe(0);
  });

  it('takes owner and interest target indices only for installs (empty or delete-only updates do not use them up)', async () => {
    const fw = await ForwardingFirmware.load({ budgetBytes: 8 << 20, hugePages: false });
    const control = { onMessage: () => undefined, send: () => undefined } as unknown as ServiceChannel;
    const agent = new ForwardingAgent({ firmware: fw, control, now: () => 1000, sink: { send: () => undefined } });
    const from = { address: '127.0.0.1', port: 1 };
    const wc = (sender: number, port: number, ttlMs: number): ServiceMessage => {
      const m = wildcard({ address: '127.0.0.1', port });
      if (m.type === 'affinity-update-wildcard') m.wildcards[0]!.affinity.ttlMs = ttlMs;
      return { ...m, sender, sequence: 1 } as ServiceMessage;
    };
    agent.handleMessage({ type: 'affinity-update-wildcard', sender: 100, sequence: 1, wildcards: [] } as ServiceMessage, from);
    agent.handleMessage(wc(101, 5555, 0), from); // a delete from a manager never heard of, naming a new target
    agent.handleMessage(wc(102, 6666, 30_000), from);
    agent.handleMessage({ ...fixedFor('10.9.0.9', 40009, '10.1.1.1'), sender: 102, sequence: 2 } as ServiceMessage, from);
    // the first owner index and the first interest target went to the first install
    expect(fw.lookupFixed({ proto: 6, saddr: ipToU32('10.9.0.9'), sport: 40009, daddr: ipToU32(VIP), dport: 80 }, 1000)?.owner).toBe(1);
    expect(agent.stats.wildcardsInstalled).toBe(1);
    fw.writePacket(0, tcp('10.9.0.10', 40010, VIP, 80, TCP_SYN));
    agent.processBatch(1);
    expect(fw.verdictCode(0)).toBe(VerdictCode.TO_MANAGER);
    expect(fw.interestTarget(0)).toBe(1);
  });

  it('denies a large update in parts that each fit a message (one echo of 2728 entries would not)', async () => {
    const agent = await startAgent();
    const mgr = await fakeManager();
    const fixed = Array.from({ length: 2728 }, (_, i) => ({
      affinity: { protocol: 6, srcAddr: 0x0a000000 + i, dstAddr: ipToU32(VIP), srcPort: 1000 + (i & 0xfff), dstPort: 80, flags: 0, ttlMs: 10_000 },
      actions: [],
    }));
    mgr.ch.send({ type: 'affinity-update-fixed', fixed }, agentEp(agent)); // no wildcard: every entry refused
    const denied = (): number => mgr.got.reduce((n, m) => n + (m.type === 'affinity-update-deny' ? m.denied.length : 0), 0);
    await agent.until(() => denied() === 2728, 'every entry denied');
    expect(mgr.got.filter((m) => m.type === 'affinity-update-deny').length).toBe(6);
    expect(agent.channel.stats.handlerErrors).toBe(0);
  });

  it('an update shared by another queue that this one refuses is counted, not denied (the manager would drop the flow)', async () => {
    const fw = await ForwardingFirmware.load({ budgetBytes: 8 << 20, hugePages: false });
    const sent: ServiceMessage[] = [];
    const control = { onMessage: () => undefined, send: (m: ServiceMessage) => sent.push(m) } as unknown as ServiceChannel;
    const agent = new ForwardingAgent({ firmware: fw, control, now: () => 1000, sink: { send: () => undefined } });
    const update = { ...fixedFor('10.9.0.11', 40011, '10.1.1.1'), sender: 7, sequence: 3 } as MessageOf<'affinity-update-fixed'>;
    agent.applySharedFixed(update, { address: '127.0.0.1', port: 1 }); // no wildcard here: refused
    expect(sent).toEqual([]);
    expect(agent.stats.sharedRefused).toBe(1);
    agent.handleMessage(update, { address: '127.0.0.1', port: 1 }); // received first-hand: denied
    expect(sent.map((m) => m.type)).toEqual(['affinity-update-deny']);
  });

  it('counts malformed control datagrams by reason and keeps working', async () => {
    const agent = await startAgent();
    const mgr = await fakeManager();
    mgr.ch.socket.sendNow(Buffer.from('not a service message at all'), agentEp(agent));
    mgr.ch.socket.sendNow(Buffer.alloc(3), agentEp(agent));
    await agent.until(() => agent.channel.stats.refused === 2, 'two refusals');
    expect(Object.keys(agent.channel.stats.refusedByCode).length).toBeGreaterThan(0);
    mgr.ch.send(wildcard(mgr.ep), agentEp(agent));
    await agent.until(() => agent.agent.stats.wildcardsInstalled === 1, 'the wildcard after the garbage');
  });
});
