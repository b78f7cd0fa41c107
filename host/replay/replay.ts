// `wasmlb replay`: a capture through a forwarding agent (this process) and a primary service manager
// (a child process), talking over real UDP on loopback. With `backup`, a backup manager process
// mirrors the primary; `killPrimaryAt` SIGKILLs the primary mid-capture and the summary tells what
// the takeover cost (flows moved to another backend, packets lost, takeover time). Packets from the VIP in the capture are the
// return direction: the replay rewrites their source to the backend their flow was given (as that
// backend would send them), and the agent's SNAT must give back the capture's original bytes.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { flowId, ForwardingAgent, packetKey, type AgentOptions, type PacketSink } from '../agent/agent.ts';
import { ForwardingFirmware, COUNTER_NAMES, VerdictCode, type CounterName } from '../agent/wasm.ts';
import { CaptureReader, PcapWriter, LINKTYPE_RAW } from '../pcap/index.ts';
import { ipToU32, u32ToIp, type FixedEntry } from '../protocol/index.ts';
import type { ManagerConfig, WasmlbConfig } from '../config/index.ts';
import { ServiceChannel } from '../transport/channel.ts';
import { ControlSocket } from '../transport/udp.ts';
import { securityOf } from '../manager/run.ts';
import { readJsonLines } from '../ops/ndjson.ts';
import { csumReplace16, csumReplace32 } from '../pcap/checksum.ts';

const CLI = fileURLToPath(new URL('../cli.ts', import.meta.url));

export type Pacing = { kind: 'topspeed' } | { kind: 'multiplier'; factor: number } | { kind: 'pps'; rate: number };

export interface ReplayOptions {
  input: string;
  output?: string | undefined;
  config: WasmlbConfig;
  pacing: Pacing;
  loop: number;
  /** Give up on a packet sent to the manager after this long (it counts as lost). */
  answerTimeoutMs?: number;
  logLevel?: string;
  onProgress?: (bytesDone: number, bytesTotal: number) => void;
  /** Also run a backup manager (the config's backup, or one derived from the primary). */
  backup?: boolean | undefined;
  /**
   * SIGKILL the primary at this point of the capture: a fraction of its packets (0 < x < 1) or a
   * packet number (≥ 1). Needs `backup`.
   */
  killPrimaryAt?: number | undefined;
}

export interface ReplaySummary {
  packetsIn: number;
  packetsOut: number;
  packetsDropped: number;
  dropsByReason: Record<string, number>;
  nonIpv4: number;
  flows: number;
  backends: Record<string, number>;
  mpps: number;
  newFlowsPerSec: number;
  returnPackets: number;
  returnMismatches: number;
  returnUnmapped: number;
  packetsLost: number;
  elapsedSec: number;
  /** Flows whose backend changed after they were placed (a takeover must keep every one: 0). */
  flowsMoved: number;
  /** From the primary's SIGKILL to the agent applying the backup's takeover notice (null: no takeover). */
  takeoverMs: number | null;
  /** Flows the backup held from replication when it took over (or at the end without a kill); null without a backup. */
  replicated: number | null;
  /** Resyncs the backup completed; null without a backup. */
  resyncs: number | null;
  /** Packets run through the agent again because no manager had answered them (the dead primary's). */
  packetsRetried: number;
}

/** The agent of a replay: also remembers the packets it sent to a manager until they are answered. */
class ReplayAgent extends ForwardingAgent {
  /** Packets sent to a manager and not answered yet, by flow. */
  readonly pending = new Map<string, Uint8Array[]>();
  pendingCount = 0;

  constructor(opts: AgentOptions) {
    super(opts);
  }

  override processBatch(count: number): void {
    super.processBatch(count);
    const fw = this.firmware;
    const d8 = fw.descriptorBytes;
    for (let i = 0; i < count; i++) {
      if (d8[i * 32 + 12] !== VerdictCode.TO_MANAGER) continue;
      const bytes = fw.packet(i);
      const key = packetKey(bytes);
      if (!key) continue;
      const id = flowId(key);
      const list = this.pending.get(id);
      if (list) list.push(Buffer.from(bytes));
      else this.pending.set(id, [Buffer.from(bytes)]);
      this.pendingCount++;
    }
  }

  /** A fixed affinity for this key arrived: the manager answered the flow's packets. */
  answered(id: string): void {
    const list = this.pending.get(id);
    if (!list) return;
    this.pending.delete(id);
    this.pendingCount -= list.length;
  }

  /** Takes every unanswered packet, or those of the flows `only` names (to run again, or to count as lost). */
  takePending(only?: ReadonlySet<string>): Uint8Array[] {
    if (only === undefined) {
      const out = [...this.pending.values()].flat();
      this.pending.clear();
      this.pendingCount = 0;
      return out;
    }
    const out: Uint8Array[] = [];
    for (const id of only) {
      const list = this.pending.get(id);
      if (!list) continue;
      this.pending.delete(id);
      this.pendingCount -= list.length;
      out.push(...list);
    }
    return out;
  }
}

/** The backup manager of a replay: the config's, or the primary's settings under another name. */
export function backupManagerOf(config: WasmlbConfig, primary: ManagerConfig): ManagerConfig {
  const found = config.managers.find((m) => m.role === 'backup' && m.identity !== primary.identity);
  if (found) return found;
  const used = new Set(config.managers.map((m) => `${m.control.address}:${m.control.port}`));
  let port = primary.control.port;
  do port = port >= 65535 ? 1024 : port + 1;
  while (used.has(`${primary.control.address}:${port}`));
  const derived: ManagerConfig = {
    ...structuredClone(primary),
    identity: `${primary.identity}-backup`,
    role: 'backup',
    control: { address: primary.control.address, port },
    backupPrecedence: Math.min(primary.backupPrecedence, 100),
  };
  if (derived.backupPrecedence >= primary.backupPrecedence) derived.backupPrecedence = Math.max(0, primary.backupPrecedence - 1);
  config.managers.push(derived);
  return derived;
}

/** Packets in a capture (a quick pass), to turn a fraction into a packet number. */
async function countPackets(file: string): Promise<number> {
  const reader = await CaptureReader.open(file);
  let n = 0;
  try {
    for await (const batch of reader) n += batch.count;
  } finally {
    await reader.close();
  }
  return n;
}

export class ReplayError extends Error {
  constructor(
    readonly code: 'MANAGER_START' | 'NO_WILDCARDS' | 'INPUT',
    message: string,
  ) {
    super(message);
    this.name = 'ReplayError';
  }
}

const DROP_COUNTERS: CounterName[] = COUNTER_NAMES.filter((n) => n.startsWith('DROP_') || n.startsWith('MALFORMED_'));

/** Spawns `wasmlb manager` with the effective config; resolves once it logged "ready". */
export async function spawnManager(
  configFile: string,
  args: string[],
  onLine?: (line: Record<string, unknown>) => void,
): Promise<{ child: ChildProcess; ready: Record<string, unknown> }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CLI, 'manager', '--config', configFile, ...args], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  return new Promise((resolve, reject) => {
    let done = false;
    const timer = setTimeout(() => fail(`manager did not start within 15 s`), 15_000);
    const fail = (why: string): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(new ReplayError('MANAGER_START', `${why}\n${stderr.slice(-2000)}`));
    };
    let stderr = '';
    readJsonLines(
      child.stderr!,
      (e) => {
        onLine?.(e);
        if (!done && e['event'] === 'ready') {
          done = true;
          clearTimeout(timer);
          resolve({ child, ready: e });
        }
      },
      (chunk) => {
        stderr += chunk;
        if (stderr.length > 100_000) stderr = stderr.slice(-50_000);
      },
    );
    child.on('exit', (code, signal) => {
      if (done && code !== 0 && signal !== 'SIGKILL' && signal !== 'SIGTERM') {
        // After "ready" nobody waits on this promise: a crash must still be seen, with its reason.
        const last = stderr.trim().split('\n').slice(-3).join('\n');
        process.stderr.write(`wasmlb: manager exited unexpectedly (${code ?? signal}):\n${last}\n`);
      }
      fail(`manager exited (${code ?? signal}) before it was ready`);
    });
  });
}

/** Writes the effective config where a child process can read it (YAML is a superset of JSON). */
export function writeEffectiveConfig(config: WasmlbConfig): { file: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'wasmlb-'));
  const file = path.join(dir, 'config.json');
  writeFileSync(file, JSON.stringify(config));
  return { file, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export async function replay(opts: ReplayOptions): Promise<ReplaySummary> {
  const inputSize = (await stat(opts.input).catch((e: Error) => {
    throw new ReplayError('INPUT', `cannot read ${opts.input}: ${e.message}`);
  })).size;
  const config: WasmlbConfig = structuredClone(opts.config);
  // The replay's agent is reached by unicast: no multicast cross-talk between concurrent replays.
  config.agent.multicast.enabled = false;
  const vip = config.vips[0]!;
  const vipIp = ipToU32(vip.address);
  const vipProto = vip.protocol === 'udp' ? 17 : 6;

  const fw = await ForwardingFirmware.load({ budgetBytes: config.agent.firmware.budget });
  const socket = await ControlSocket.open({ bind: { address: '127.0.0.1', port: 0 } });
  const sec = securityOf(config);
  const channel = new ServiceChannel({ socket, sender: 0x0a9e0001, ...sec });

  const writer = opts.output ? await PcapWriter.open(opts.output, { linkType: LINKTYPE_RAW }) : null;
  let tsSec = 0;
  let tsNsec = 0;
  let packetsOut = 0;
  let returnMismatches = 0;
  // Originals of return packets in flight, by (client addr, client port, IP id, TCP seq).
  const pendingReturns = new Map<string, Buffer>();
  const sink: PacketSink = {
    send(p: Uint8Array): void {
      packetsOut++;
      writer?.writePacket(tsSec, tsNsec, p.length, p);
      if (pendingReturns.size > 0 && p.length >= 28 && p[9] === vipProto && readU32(p, 12) === vipIp) {
        const k = returnKey(p);
        const orig = pendingReturns.get(k);
        if (orig) {
          pendingReturns.delete(k);
          if (Buffer.compare(orig, p) !== 0) returnMismatches++;
        }
      }
    },
  };
  // Flow → backend, learned from the fixed affinities the manager installs (client addr:port key).
  const backendOf = new Map<number, { ip: number; port: number }>();
  const moved = new Set<number>();
  let takeoverAt: number | null = null;
  /** At a takeover notice, the flows whose packets then waited on the replaced manager: asked again at once. */
  let retryFlows: Set<string> | null = null;
  /** Lets the packets a flow kept for its answer go (set up with the replay loop below). */
  let release: (k: number) => void = () => undefined;
  const agent: ReplayAgent = new ReplayAgent({
    firmware: fw,
    // the replay keeps and retries what a manager did not answer itself (pending / takePending), and
    // counts what stays unanswered as lost
    resendOnTakeover: false,
    control: channel,
    sink,
    now: () => performance.now(),
    holdQueue: { size: config.agent.holdQueue.size, deadlineMs: config.agent.holdQueue.deadline },
    onFixedInstalled: (e: FixedEntry) => {
      const a = e.affinity;
      agent.answered(flowId({ proto: a.protocol, saddr: a.srcAddr, daddr: a.dstAddr, sport: a.srcPort, dport: a.dstPort }));
      if (a.dstAddr !== vipIp || a.dstPort !== vip.port || a.ttlMs === 0) return;
      const nat = e.actions.find((x) => x.kind === 'nat');
      const dispatch = e.actions.find((x) => x.kind === 'dispatch');
      const k = a.srcAddr * 65536 + a.srcPort;
      let b: { ip: number; port: number } | null = null;
      if (nat && nat.kind === 'nat' && nat.dstAddr !== undefined) b = { ip: nat.dstAddr, port: nat.dstPort ?? vip.port };
      else if (dispatch && dispatch.kind === 'dispatch') b = { ip: dispatch.nextHop, port: vip.port };
      if (!b) return;
      const before = backendOf.get(k);
      if (before && (before.ip !== b.ip || before.port !== b.port)) moved.add(k);
      backendOf.set(k, b);
      release(k); // the flow's later packets may go now
    },
    onEvent: (event) => {
      if (event !== 'takeover') return;
      takeoverAt ??= performance.now();
      // The wildcards changed owner: what the dead primary never answered can be asked again now — only
      // that (packets sent after the notice went to the new primary, whose answers are on their way).
      retryFlows = new Set([...(retryFlows ?? []), ...agent.pending.keys()]);
    },
  });

  const manager = config.managers.find((m) => m.role === 'primary') ?? config.managers[0]!;
  // The replay reads the managers' info lines (ready, takeover, resync): never quieter than info.
  const childLogLevel = opts.logLevel === 'debug' || opts.logLevel === 'trace' ? opts.logLevel : 'info';
  const backupCfg = opts.backup ? backupManagerOf(config, manager) : null;
  const cfg = writeEffectiveConfig(config);
  const agentArg = `${socket.local.address}:${socket.local.port}`;
  const { child, ready } = await spawnManager(cfg.file, [
    '--identity', manager.identity,
    '--control', '127.0.0.1:0',
    '--agent', agentArg,
    '--log-level', childLogLevel,
  ]).catch((e: unknown) => {
    cfg.cleanup();
    void channel.close();
    throw e;
  });
  let backup: ChildProcess | null = null;
  const backupEvents: Array<Record<string, unknown>> = [];
  const tickTimer = setInterval(() => agent.tick(), 10);
  try {
    if (backupCfg) {
      const control = ready['control'] as { address: string; port: number };
      let resynced: () => void = () => undefined;
      const resyncDone = new Promise<void>((r) => (resynced = r));
      const spawned = await spawnManager(
        cfg.file,
        ['--identity', backupCfg.identity, '--control', '127.0.0.1:0', '--agent', agentArg, '--peer', `${control.address}:${control.port}`, '--log-level', childLogLevel],
        (line) => {
          backupEvents.push(line);
          if (line['event'] === 'resync-complete') resynced();
        },
      );
      backup = spawned.child;
      // The backup may not take over before its resync: start the capture once it is complete.
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new ReplayError('MANAGER_START', 'the backup did not complete its resync within 10 s')), 10_000);
      });
      try {
        await Promise.race([resyncDone, timeout]);
      } finally {
        clearTimeout(timer);
      }
    }
    let killAt = -1;
    if (opts.killPrimaryAt !== undefined && backupCfg) {
      killAt = opts.killPrimaryAt >= 1 ? Math.floor(opts.killPrimaryAt) : Math.max(1, Math.round(opts.killPrimaryAt * (await countPackets(opts.input)) * opts.loop));
    }
    let killedAt: number | null = null;
    // Wildcards first: until they are installed every packet would be forwarded untouched.
    const t0 = performance.now();
    while (agent.stats.wildcardsInstalled === 0) {
      if (performance.now() - t0 > 5000) throw new ReplayError('NO_WILDCARDS', 'no wildcard affinity arrived from the manager within 5 s');
      await sleep(5);
    }

    const answerTimeout = opts.answerTimeoutMs ?? 200;
    let givenUp = 0;
    let retried = 0;
    const outstanding = (): number => agent.pendingCount;
    // With a backup, unanswered packets are run again (now, if the wildcards just changed owner, else
    // after the answer timeout) a few times before they count as lost.
    const maxRetries = backupCfg ? 5 : 0;
    // Per-flow deferral: a flow whose first packet went to a manager keeps its later packets (either
    // direction: the return ones need its backend) until the answer; other flows go on. The replay so runs
    // at the managers' throughput, not at one round trip a flow. At most WINDOW flows wait at a time.
    const WINDOW = 256;
    const awaiting = new Map<number, string>(); // client addr:port → flow id, first packet unanswered
    const fresh: number[] = []; //                 awaiting flows whose first packet is in the current batch
    const deferred = new Map<number, Uint8Array[]>(); // their later packets, in capture order (copies)
    let released: Uint8Array[] = []; //            let go by an answer, to run before newer packets
    release = (k: number): void => {
      if (!awaiting.delete(k)) return;
      const later = deferred.get(k);
      if (later) {
        deferred.delete(k);
        released.push(...later);
      }
    };
    /** Runs the unanswered packets (of the flows `only` names) through the agent again. */
    const runAgain = (only?: ReadonlySet<string>): void => {
      const again = agent.takePending(only);
      retried += again.length;
      if (again.length > 0) agent.runPackets(again, 0);
    };
    /** Runs again what waited on a replaced manager at its takeover notice; true when it did. */
    const retryAfterTakeover = (): boolean => {
      if (retryFlows === null) return false;
      runAgain(retryFlows);
      retryFlows = null;
      return true;
    };
    const waitAnswers = async (done: () => boolean = () => false): Promise<void> => {
      let deadline = performance.now() + answerTimeout;
      let retries = 0;
      while (outstanding() > 0 && !done()) {
        if (retryAfterTakeover()) {
          deadline = performance.now() + answerTimeout;
          continue;
        }
        const late = performance.now() > deadline;
        if (late && retries < maxRetries) {
          retries++;
          runAgain();
          deadline = performance.now() + answerTimeout;
          continue;
        }
        if (late) {
          givenUp += agent.takePending().length;
          // the flows that waited on those answers lose their later packets too
          for (const later of deferred.values()) givenUp += later.length;
          deferred.clear();
          awaiting.clear();
          return;
        }
        await tick();
      }
    };

    const batchMax = fw.capacities.batchMax;
    const slotBytes = fw.capacities.packetSlot;
    let n = 0; // packets in the current firmware batch
    let packetsIn = 0;
    let nonIpv4 = 0;
    let returnPackets = 0;
    let returnUnmapped = 0;
    let oversize = 0;
    const flush = async (): Promise<void> => {
      if (n > 0) {
        agent.processBatch(n);
        n = 0;
        // a first packet that met no manager (no wildcard: forwarded as it is) keeps nothing waiting
        for (const k of fresh) {
          const id = awaiting.get(k);
          if (id !== undefined && !agent.pending.has(id)) release(k);
        }
        fresh.length = 0;
      }
      retryAfterTakeover(); // with the batch slots free again
      if (awaiting.size >= WINDOW) await waitAnswers(() => awaiting.size < WINDOW / 2);
    };
    /** A packet of the capture's return direction: from the VIP (its backend sends it here). */
    const fromVip = (p: Uint8Array): boolean => p.length >= 24 && p[9] === vipProto && readU32(p, 12) === vipIp && readU16(p, (p[0]! & 15) * 4) === vip.port;
    /** Writes one packet into the batch, or keeps it for its flow's answer (see WINDOW). */
    const feed = async (p: Uint8Array): Promise<void> => {
      const ihl = (p[0]! & 15) * 4;
      if (fromVip(p)) {
        // Return direction: the backend of this flow sends it.
        const k = readU32(p, 16) * 65536 + readU16(p, ihl + 2);
        const b = backendOf.get(k);
        if (!b && awaiting.has(k)) return defer(k, p);
        if (b) {
          pendingReturns.set(returnKey(p), Buffer.from(p));
          p = rewriteSource(p, b.ip, b.port);
        } else returnUnmapped++;
      } else if (p.length >= 24 && p[9] === vipProto && readU32(p, 16) === vipIp && readU16(p, ihl + 2) === vip.port) {
        // Client → VIP: the first packet of a flow not placed yet goes; the next ones wait for it.
        const k = readU32(p, 12) * 65536 + readU16(p, ihl);
        if (!backendOf.has(k)) {
          if (awaiting.has(k)) return defer(k, p);
          const key = packetKey(p);
          if (key) {
            awaiting.set(k, flowId(key));
            fresh.push(k);
          }
        }
      }
      fw.writePacket(n++, p);
      if (n === batchMax) await flush();
    };
    const defer = (k: number, p: Uint8Array): void => {
      const list = deferred.get(k);
      if (list) list.push(Buffer.from(p));
      else deferred.set(k, [Buffer.from(p)]);
    };
    /** Runs the packets answers released, before any newer one. */
    const drain = async (): Promise<void> => {
      while (released.length > 0) {
        const now = released;
        released = [];
        for (const p of now) await feed(p);
      }
    };

    const started = performance.now();
    let firstTs = -1;
    let loopOffset = 0;
    let lastTs = 0;
    for (let round = 0; round < opts.loop; round++) {
      const reader = await CaptureReader.open(opts.input);
      try {
        for await (const batch of reader) {
          for (let i = 0; i < batch.count; i++) {
            packetsIn++;
            const ipOff = batch.ipOffset[i]!;
            tsSec = batch.tsSec[i]!;
            tsNsec = batch.tsNsec[i]!;
            if (packetsIn === killAt && killedAt === null) {
              await flush();
              child.kill('SIGKILL');
              killedAt = performance.now();
            }
            if (ipOff < 0) {
              nonIpv4++;
              continue;
            }
            const start = batch.offset[i]! + ipOff;
            const p = batch.data.subarray(start, batch.offset[i]! + batch.capLen[i]!);
            if (p.length > slotBytes) {
              oversize++;
              continue;
            }
            if (opts.pacing.kind !== 'topspeed') {
              const ts = tsSec + tsNsec / 1e9;
              if (firstTs < 0) firstTs = ts;
              lastTs = ts;
              const due = opts.pacing.kind === 'pps' ? (packetsIn - 1) / opts.pacing.rate : (ts - firstTs + loopOffset) / opts.pacing.factor;
              const wait = due * 1000 - (performance.now() - started);
              if (wait > 1) {
                await flush();
                await sleep(wait);
              }
            }
            if (fromVip(p)) returnPackets++;
            await drain();
            await feed(p);
          }
          // Before the reader's next await: a manager's answer handled then runs its packet through the
          // batch slots from 0, over a batch still being filled.
          await flush();
          opts.onProgress?.(Math.min(inputSize * (round + 1), batch.fileOffset + (batch.spanEnd - batch.spanStart) + inputSize * round), inputSize * opts.loop);
        }
      } finally {
        await reader.close();
      }
      loopOffset += lastTs - (firstTs < 0 ? 0 : firstTs);
    }
    for (;;) {
      await drain();
      await flush();
      if (released.length === 0 && (awaiting.size === 0 || outstanding() === 0)) break;
      await waitAnswers(() => released.length > 0);
    }
    await waitAnswers();
    // flows still waiting with nothing outstanding at a manager: their first packet was answered without
    // a fixed affinity for them (refused): their later packets are lost with them
    for (const later of deferred.values()) givenUp += later.length;
    const elapsedSec = (performance.now() - started) / 1000;
    if (backup) {
      // Let the last replication batches land before the backup reports what it holds.
      if (backup.exitCode === null) await sleep(200);
      backup.kill('SIGTERM');
      await new Promise((r) => (backup!.exitCode !== null ? r(null) : backup!.once('exit', r)));
    }
    const stopped = backupEvents.find((e) => e['event'] === 'stopped');
    const failover = (stopped?.['failover'] ?? null) as { flows?: number; roles?: { resyncsCompleted?: number } } | null;
    const takeoverEvent = backupEvents.find((e) => e['event'] === 'takeover');
    await writer?.close();

    const counters = fw.counters();
    const dropsByReason: Record<string, number> = {};
    let dropped = 0;
    for (const name of DROP_COUNTERS) {
      const v = Number(counters[name]);
      if (v > 0) dropsByReason[name.toLowerCase()] = v;
      dropped += v;
    }
    if (oversize) dropsByReason['oversize'] = oversize;
    if (givenUp) dropsByReason['unanswered'] = givenUp;
    const backends: Record<string, number> = {};
    for (const b of backendOf.values()) {
      const id = `${u32ToIp(b.ip)}:${b.port}`;
      backends[id] = (backends[id] ?? 0) + 1;
    }
    return {
      packetsIn,
      packetsOut,
      packetsDropped: dropped + oversize + givenUp,
      dropsByReason,
      nonIpv4,
      flows: backendOf.size,
      backends,
      mpps: packetsIn / elapsedSec / 1e6,
      newFlowsPerSec: backendOf.size / elapsedSec,
      returnPackets,
      returnMismatches: returnMismatches + pendingReturns.size,
      returnUnmapped,
      packetsLost: givenUp,
      elapsedSec,
      flowsMoved: moved.size,
      takeoverMs: killedAt !== null && takeoverAt !== null ? Math.round((takeoverAt - killedAt) * 10) / 10 : null,
      replicated: backupCfg ? (typeof takeoverEvent?.['flows'] === 'number' ? takeoverEvent['flows'] : (failover?.flows ?? null)) : null,
      resyncs: backupCfg ? (failover?.roles?.resyncsCompleted ?? null) : null,
      packetsRetried: retried,
    };
  } finally {
    clearInterval(tickTimer);
    for (const c of [child, backup]) {
      if (!c) continue;
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
      await new Promise((r) => (c.exitCode !== null || c.signalCode !== null ? r(null) : c.once('exit', r)));
    }
    await channel.close();
    cfg.cleanup();
  }
}

function readU16(p: Uint8Array, o: number): number {
  return (p[o]! << 8) | p[o + 1]!;
}
function readU32(p: Uint8Array, o: number): number {
  return ((p[o]! << 24) | (p[o + 1]! << 16) | (p[o + 2]! << 8) | p[o + 3]!) >>> 0;
}

/** Identifies a return packet across the rewrite: client address and port, IP id, first L4 word after ports. */
function returnKey(p: Uint8Array): string {
  const ihl = (p[0]! & 15) * 4;
  return `${readU32(p, 16)}:${readU16(p, ihl + 2)}:${readU16(p, 4)}:${p.length > ihl + 8 ? readU32(p, ihl + 4) : 0}`;
}

/** A copy of `p` with source address/port replaced, checksums updated incrementally (RFC 1624). */
export function rewriteSource(p: Uint8Array, ip: number, port: number): Uint8Array {
  const q = Buffer.from(p);
  const ihl = (q[0]! & 15) * 4;
  const oldIp = readU32(q, 12);
  const oldPort = readU16(q, ihl);
  const fragOff = ((q[6]! & 0x1f) << 8) | q[7]!;
  const ipSum = csumReplace32(readU16(q, 10), oldIp, ip);
  q.writeUInt16BE(ipSum, 10);
  q.writeUInt32BE(ip >>> 0, 12);
  if (fragOff !== 0) return q;
  const proto = q[9]!;
  const csumAt = proto === 6 ? ihl + 16 : proto === 17 ? ihl + 6 : -1;
  if (csumAt >= 0 && q.length >= csumAt + 2) {
    const old = readU16(q, csumAt);
    if (!(proto === 17 && old === 0)) {
      let s = csumReplace32(old, oldIp, ip);
      s = csumReplace16(s, oldPort, port);
      q.writeUInt16BE(proto === 17 && s === 0 ? 0xffff : s, csumAt);
    }
  }
  if (q.length >= ihl + 2) q.writeUInt16BE(port, ihl);
  return q;
}
