// Failover test harness: a real forwarding agent in the test process (firmware + UDP control socket)
// and real `wasmlb manager` processes around it, all on 127.0.0.1.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { flowId, ForwardingAgent, packetKey, type AgentOptions } from '../../../host/agent/agent.ts';
import { ForwardingFirmware, VerdictCode } from '../../../host/agent/wasm.ts';
import { parseConfig, type WasmlbConfig } from '../../../host/config/index.ts';
import { securityOf } from '../../../host/manager/run.ts';
import { flowHash } from '../../../host/manager/replication.ts';
import { ipToU32, u32ToIp } from '../../../host/protocol/index.ts';
import { ServiceChannel } from '../../../host/transport/channel.ts';
import { ControlSocket, type Endpoint } from '../../../host/transport/udp.ts';
import { spawnWasmlb, type LogEvent, type WasmlbProcess } from '../../support/process.ts';
import { buildPacket, get16, get32, TCP } from '../agent/packets.ts';

export const VIP = '10.0.0.100';
export const VIP_PORT = 80;
export const BACKENDS = ['10.0.1.1', '10.0.1.2', '10.0.1.3', '10.0.1.4'];
export const KEY = '8f3a1c5e9b2d4f60718293a4b5c6d7e8f9a0b1c2d3e4f5061728394a5b6c7d8e';

export interface ManagerSpec {
  identity: string;
  role: 'primary' | 'backup';
  backupPrecedence?: number;
  clientDomain?: string[];
  preempt?: boolean;
}

/** A config for the failover tests: one VIP, four backends, authenticated control traffic. */
export function failoverConfig(managers: ManagerSpec[], opts: { refreshPeriod?: string } = {}): { text: string; config: WasmlbConfig } {
  const m = managers.map((s, i) => ({
    identity: s.identity,
    role: s.role,
    ...(s.backupPrecedence !== undefined ? { backupPrecedence: s.backupPrecedence } : {}),
    control: { address: '127.0.0.1', port: 17500 + i },
    clientDomain: s.clientDomain ?? ['0.0.0.0/0'],
    balancer: 'maglev',
    replication: { refreshPeriod: opts.refreshPeriod ?? '5s' },
    // 6 missed heartbeats (300 ms) instead of 3: the tests share two cores with other test files, and
    // a manager starved of CPU for 150 ms would be declared dead. Takeover timing is the benchmark's.
    timers: { heartbeatMisses: 6 },
    takeover: { pushAffinities: true, preempt: s.preempt ?? false },
  }));
  const raw = {
    agent: { multicast: { enabled: false } },
    managers: m,
    vips: [{ address: VIP, port: VIP_PORT, backends: BACKENDS.map((address) => ({ address, port: 8080 })) }],
    security: { algorithm: 'hmac-sha256', keyId: 1, key: KEY, require: true },
  };
  const text = JSON.stringify(raw);
  return { text, config: parseConfig(text) };
}

export class ConfigFile {
  readonly dir = mkdtempSync(path.join(tmpdir(), 'wasmlb-failover-'));
  readonly file: string;
  constructor(text: string) {
    this.file = path.join(this.dir, 'config.json');
    writeFileSync(this.file, text);
  }
  cleanup(): void {
    rmSync(this.dir, { recursive: true, force: true });
  }
}

export interface RunningManager {
  proc: WasmlbProcess;
  control: Endpoint;
  identity: string;
}

/** The usual pair's config (mgr-a primary, mgr-b backup) and an agent; both are cleaned up through `cleanups`. */
export async function primaryBackupSetup(cleanups: Array<() => Promise<void> | void>): Promise<{ cfg: ConfigFile; agent: TestAgent }> {
  const { text, config } = failoverConfig([
    { identity: 'mgr-a', role: 'primary' },
    { identity: 'mgr-b', role: 'backup' },
  ]);
  const cfg = new ConfigFile(text);
  const agent = await TestAgent.open(config);
  cleanups.push(() => agent.close(), () => cfg.cleanup());
  return { cfg, agent };
}

/** Spawns `wasmlb manager` and waits for its "ready" line. */
export async function startManager(
  configFile: string,
  identity: string,
  agent: Endpoint,
  peers: Endpoint[] = [],
  env: NodeJS.ProcessEnv = {},
): Promise<RunningManager> {
  const args = ['manager', '--config', configFile, '--identity', identity, '--control', '127.0.0.1:0', '--agent', `${agent.address}:${agent.port}`, '--stats-interval', '100'];
  for (const p of peers) args.push('--peer', `${p.address}:${p.port}`);
  const proc = spawnWasmlb(args, { env });
  const ready = await proc.waitForEvent('ready', 20_000);
  return { proc, control: ready['control'] as Endpoint, identity };
}

/** The latest "stats" event of a manager satisfying `pred` (waits for it). */
export function statsWhere(m: RunningManager, pred: (s: ManagerStatsEvent) => boolean, timeoutMs = 10_000): Promise<ManagerStatsEvent> {
  return m.proc.waitFor((e) => e.event === 'stats' && pred(e as ManagerStatsEvent), timeoutMs) as Promise<ManagerStatsEvent>;
}

export interface ManagerStatsEvent extends LogEvent {
  role: 'primary' | 'backup';
  epoch: number;
  resyncState: string;
  flows: number;
  digest: number;
  sent: { entriesSent: number; dropped: number; resends: number; refreshed: number };
  received: { stored: number; filtered: number };
  security: { accepted: number; forged: number; wrongKey: number; replayed: number; unauthenticated: number } | null;
}

export interface FlowRecord {
  clientIp: number;
  clientPort: number;
  /** Backend of every forwarded packet of the flow, in order. */
  backends: string[];
  sent: number;
  /** Packets a backend sent the client that left the agent as from the VIP (source NAT applied). */
  returned: number;
}

/** The agent of the tests: sends client packets to the VIP and records where each flow's packets went. */
export class TestAgent {
  readonly flows = new Map<string, FlowRecord>();
  readonly notices: Array<{ at: number; replaced: number; by: number }> = [];
  private readonly tickTimer: NodeJS.Timeout;
  private pending = new Map<string, Uint8Array[]>();
  private seq = 1000;

  private constructor(
    readonly agent: ForwardingAgent,
    readonly channel: ServiceChannel,
  ) {
    this.tickTimer = setInterval(() => agent.tick(), 10);
  }

  get endpoint(): Endpoint {
    return this.channel.socket.local;
  }

  /** `resendOnTakeover`: the agent's own resend at a takeover (off by default: the tests retry themselves). */
  static async open(config: WasmlbConfig, { resendOnTakeover = false } = {}): Promise<TestAgent> {
    const fw = await ForwardingFirmware.load({ budgetBytes: 16 * 1024 * 1024 });
    const socket = await ControlSocket.open({ bind: { address: '127.0.0.1', port: 0 } });
    const channel = new ServiceChannel({ socket, sender: 0x0a9e0002, ...securityOf(config) });
    const vipIp = ipToU32(VIP);
    let self: TestAgent | null = null;
    const opts: AgentOptions = {
      firmware: fw,
      control: channel,
      resendOnTakeover,
      now: () => performance.now(),
      sink: {
        send(p: Uint8Array): void {
          // Client → backend after DNAT: record the backend the flow's packet went to.
          const ihl = (p[0]! & 15) * 4;
          const src = get32(p, 12);
          const sport = get16(p, ihl);
          const f = self?.flows.get(`${src}:${sport}`);
          if (f && get32(p, 16) !== vipIp) f.backends.push(`${u32ToIp(get32(p, 16))}:${get16(p, ihl + 2)}`);
          // Backend → client after SNAT: from the VIP's address and port.
          const back = src === vipIp && sport === VIP_PORT ? self?.flows.get(`${get32(p, 16)}:${get16(p, ihl + 2)}`) : undefined;
          if (back) back.returned++;
        },
      },
      onFixedInstalled: (e) => {
        const a = e.affinity;
        self?.pending.delete(flowId({ proto: a.protocol, saddr: a.srcAddr, daddr: a.dstAddr, sport: a.srcPort, dport: a.dstPort }));
      },
      onEvent: (event, fields) => {
        if (event === 'takeover') self?.notices.push({ at: performance.now(), replaced: fields['replaced'] as number, by: fields['by'] as number });
      },
    };
    const agent = new (class extends ForwardingAgent {
      override processBatch(count: number): void {
        super.processBatch(count);
        for (let i = 0; i < count; i++) {
          if (fw.descriptorBytes[i * 32 + 12] !== VerdictCode.TO_MANAGER) continue;
          const key = packetKey(fw.packet(i));
          if (!key) continue;
          const id = flowId(key);
          const list = self?.pending.get(id) ?? [];
          list.push(Buffer.from(fw.packet(i)));
          self?.pending.set(id, list);
        }
      }
    })(opts);
    self = new TestAgent(agent, channel);
    return self;
  }

  /** Sends one TCP packet of a client flow to the VIP (SYN when `syn`). */
  send(clientIp: string, clientPort: number, syn = false): void {
    const saddr = ipToU32(clientIp);
    const k = `${saddr}:${clientPort}`;
    let f = this.flows.get(k);
    if (!f) {
      f = { clientIp: saddr, clientPort, backends: [], sent: 0, returned: 0 };
      this.flows.set(k, f);
    }
    f.sent++;
    const p = buildPacket({ proto: TCP, saddr, daddr: ipToU32(VIP), sport: clientPort, dport: VIP_PORT, flags: syn ? 0x02 : 0x10, seq: this.seq++ });
    this.agent.firmware.writePacket(0, p);
    this.agent.processBatch(1);
  }

  /** Sends one TCP segment (data, or `flags`) of a flow from its backend (`address:port`) back to the client. */
  sendFromBackend(backend: string, clientIp: number, clientPort: number, flags = 0x18): void {
    const [address, port] = backend.split(':') as [string, string];
    const p = buildPacket({ proto: TCP, saddr: ipToU32(address), daddr: clientIp, sport: Number(port), dport: clientPort, flags, seq: this.seq++, payload: new Uint8Array(flags & 0x04 ? 0 : 100) });
    this.agent.firmware.writePacket(0, p);
    this.agent.processBatch(1);
  }

  /** Packets sent to a manager that no answer has covered yet. */
  get unanswered(): number {
    let n = 0;
    for (const l of this.pending.values()) n += l.length;
    return n;
  }

  /** Runs the unanswered packets through the agent again (after a takeover changed the wildcards). */
  retryUnanswered(): number {
    const again = [...this.pending.values()].flat();
    this.pending.clear();
    if (again.length > 0) this.agent.runPackets(again, 0);
    return again.length;
  }

  /**
   * Waits until every packet sent to a manager was answered (or the timeout). Like the replay, it
   * asks again for what stayed unanswered 200 ms (a manager that died before it answered).
   */
  async settle(timeoutMs = 3000): Promise<void> {
    const end = performance.now() + timeoutMs;
    let retryAt = performance.now() + 200;
    while (this.unanswered > 0 && performance.now() < end) {
      await sleep(5);
      if (performance.now() >= retryAt) {
        this.retryUnanswered();
        retryAt = performance.now() + 200;
      }
    }
  }

  /** Waits for the n-th takeover notice. */
  async waitNotice(n = 1, timeoutMs = 3000): Promise<void> {
    const end = performance.now() + timeoutMs;
    while (this.notices.length < n) {
      if (performance.now() > end) throw new Error(`no takeover notice #${n} within ${timeoutMs} ms`);
      await sleep(5);
    }
  }

  /** Flow key → backend (the last one its packets went to). */
  backendMap(): Map<string, string> {
    const out = new Map<string, string>();
    for (const [k, f] of this.flows) if (f.backends.length > 0) out.set(k, f.backends[f.backends.length - 1]!);
    return out;
  }

  /** The digest a manager's store must have when it holds exactly these flows (see storeDigest). */
  digestOf(filter: (f: FlowRecord) => boolean = () => true): number {
    let d = 0;
    const vip = ipToU32(VIP);
    for (const f of this.flows.values()) {
      if (!filter(f) || f.backends.length === 0) continue;
      const [addr, port] = f.backends[0]!.split(':');
      d = (d + flowHash(TCP, f.clientIp, f.clientPort, vip, VIP_PORT, ipToU32(addr!), Number(port))) >>> 0;
    }
    return d;
  }

  async close(): Promise<void> {
    clearInterval(this.tickTimer);
    await this.channel.close();
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Opens `n` flows from clients in `prefix` (e.g. "10.1") and waits until each has its backend. */
export async function openFlows(agent: TestAgent, prefix: string, n: number, firstPort = 20000): Promise<string[]> {
  const keys: string[] = [];
  // Until a manager's wildcards are installed the agent forwards new flows untouched.
  const end = performance.now() + 3000;
  while (agent.agent.stats.wildcardsInstalled === 0 && performance.now() < end) await sleep(5);
  for (let i = 0; i < n; i++) {
    const ip = `${prefix}.${Math.floor(i / 250)}.${(i % 250) + 1}`;
    agent.send(ip, firstPort + (i % 1000), true);
    keys.push(`${ipToU32(ip)}:${firstPort + (i % 1000)}`);
    if (i % 50 === 49) await sleep(1);
  }
  await agent.settle();
  return keys;
}
