// wasmlb command line: one entry, subcommands. Each subcommand's work lives in its own module; this
// file parses flags, loads the config and turns typed errors into one clear line and exit code 2.
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import { applyOverrides, ConfigError, defaultConfig, loadConfig, selectManager, type WasmlbConfig } from './config/index.ts';
import { LOG_LEVELS, type LogLevel } from './ops/log.ts';
import type { Endpoint } from './transport/udp.ts';
import { addRewriteCommand } from './rewrite/command.ts';

function endpoint(text: string): Endpoint {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3}):(\d{1,5})$/.exec(text);
  if (!m || Number(m[2]) > 65535 || m[1]!.split('.').some((o) => Number(o) > 255)) {
    throw new InvalidArgumentError(`expected ADDR:PORT (e.g. 127.0.0.1:7500), got "${text}"`);
  }
  return { address: m[1]!, port: Number(m[2]) };
}
const collect = <T>(parse: (s: string) => T) => (v: string, prev: T[] | undefined): T[] => [...(prev ?? []), parse(v)];
function positive(text: string): number {
  const v = Number(text);
  if (!Number.isFinite(v) || v <= 0) throw new InvalidArgumentError(`expected a positive number, got "${text}"`);
  return v;
}
function positiveInt(text: string): number {
  const v = positive(text);
  if (!Number.isInteger(v)) throw new InvalidArgumentError(`expected a whole number, got "${text}"`);
  // a timer longer than 2^31-1 ms fires at once (Node's limit): as good as a wrong number
  if (v > 0x7fffffff) throw new InvalidArgumentError(`expected at most 2147483647, got "${text}"`);
  return v;
}

interface CommonFlags {
  config?: string;
  vip?: string;
  backends?: string;
  balancer?: string;
  role?: string;
  keyFile?: string;
  logLevel: LogLevel;
}

function withCommonFlags(cmd: Command): Command {
  return cmd
    .option('-c, --config <file>', 'YAML config file (bundled defaults when absent)')
    .option('--vip <addr:port>', 'the VIP (overrides the config)')
    .option('--backends <list>', 'backends A[:P],B[:P],… (overrides the config)')
    .addOption(new Option('--balancer <kind>', 'balancer').choices(['rr', 'wlc', 'maglev']))
    .option('--key-file <file>', 'shared key (hex) for message authentication')
    .addOption(new Option('--log-level <level>', 'log level').choices([...LOG_LEVELS]).default('info'));
}

function configFrom(flags: CommonFlags): WasmlbConfig {
  const base = flags.config ? loadConfig(flags.config) : defaultConfig();
  return applyOverrides(base, { vip: flags.vip, backends: flags.backends, balancer: flags.balancer, role: flags.role, keyFile: flags.keyFile });
}

const program = new Command();
program
  .name('wasmlb')
  .description('L4 load balancer: a WebAssembly forwarding agent and fault-tolerant service managers')
  .showHelpAfterError()
  // a bad flag exits 2 like a bad config (commander's own exit would be 1); subcommands inherit this
  .exitOverride();

withCommonFlags(
  program
    .command('manager')
    .description('run a service manager (primary or backup)')
    .addOption(new Option('--role <role>', 'role').choices(['primary', 'backup']))
    .option('--identity <name>', 'which manager of the config to run')
    .option('--control <addr:port>', 'control socket address', endpoint)
    .option('--agent <addr:port>', 'agent to reach by unicast (repeatable)', collect(endpoint))
    .option('--peer <addr:port>', 'peer manager for heartbeats, replication and resync (repeatable; default: the config\'s other managers)', collect(endpoint))
    .option('--stats-interval <ms>', 'log a "stats" event (role, store size and digest, replication counters) this often', positiveInt),
).action(async (flags: CommonFlags & { identity?: string; control?: Endpoint; agent?: Endpoint[]; peer?: Endpoint[]; statsInterval?: number }) => {
  const config = configFrom(flags);
  const m = selectManager(config, { identity: flags.identity, role: flags.role as 'primary' | 'backup' | undefined });
  const manager = flags.control ? { ...m, control: flags.control } : m;
  const { runManager } = await import('./manager/run.ts');
  await runManager({
    config,
    manager,
    agents: flags.agent ?? [],
    // An overridden control endpoint means the config's endpoints are not where the peers are.
    peers: flags.peer ?? (flags.control ? [] : undefined),
    statsIntervalMs: flags.statsInterval,
    logLevel: flags.logLevel,
    reload: flags.config ? () => configFrom(flags) : undefined,
  });
});

function cidrList(text: string, prev: string[] | undefined): string[] {
  const out = [...(prev ?? [])];
  for (const c of text.split(',').filter((s) => s.trim() !== '')) {
    const m = /^(\d{1,3}(?:\.\d{1,3}){3})(?:\/(\d{1,2}))?$/.exec(c.trim());
    if (!m || m[1]!.split('.').some((o) => Number(o) > 255) || (m[2] !== undefined && Number(m[2]) > 32)) {
      throw new InvalidArgumentError(`expected an IPv4 address or prefix (a.b.c.d/len), got "${c}"`);
    }
    out.push(c.trim());
  }
  return out;
}
const endpointList = (text: string, prev: Endpoint[] | undefined): Endpoint[] => [
  ...(prev ?? []),
  ...text.split(',').filter((s) => s.trim() !== '').map((s) => endpoint(s.trim())),
];
function port(text: string): number {
  const v = Number(text);
  if (!Number.isInteger(v) || v < 0 || v > 65535) throw new InvalidArgumentError(`expected a port 0..65535, got "${text}"`);
  return v;
}

interface AgentFlags extends CommonFlags {
  tun: string;
  queues: number;
  setup?: boolean;
  address?: string[];
  route?: string[];
  control?: Endpoint;
  manager?: Endpoint[];
  statusPort?: number;
}

withCommonFlags(
  program
    .command('agent')
    .description('run the forwarding agent on a TUN device (packets in batches through the firmware)')
    .requiredOption('--tun <name>', 'TUN device to attach (created for the lifetime of the process if it does not exist)')
    .option('--queues <n>', 'queues (IFF_MULTI_QUEUE), one firmware instance and worker thread each', positiveInt, 1)
    .option('--setup', 'run the ip commands (device addresses and routes, a route per advertised VIP) instead of printing them')
    .option('--address <cidr>', 'address of the device for --setup, e.g. 10.99.0.1/24 (repeatable, or a comma list)', cidrList)
    .option('--route <cidr>', 'extra prefix routed into the device for --setup (repeatable, or a comma list)', cidrList)
    .option('--control <addr:port>', 'control socket address (queue i binds port + i)', endpoint)
    .option('--manager <addr:port>', 'manager reached by unicast (repeatable, or a comma list; default: agent.managers)', endpointList)
    .option('--status-port <port>', 'serve /metrics and /status on this port (default: agent.metricsPort; 0 = off)', port),
).action(async (flags: AgentFlags) => {
  const config = configFrom(flags);
  const { runAgentProcess } = await import('./agent/run.ts');
  await runAgentProcess({
    config,
    tun: flags.tun,
    queues: flags.queues,
    setup: flags.setup === true,
    addresses: flags.address ?? [],
    routes: flags.route ?? [],
    control: flags.control,
    managers: flags.manager,
    statusPort: flags.statusPort,
    logLevel: flags.logLevel,
  });
});

function replayCommand(name: string, description: string): Command {
  return withCommonFlags(
    program
      .command(name)
      .description(description)
      .option('-o, --out <file>', 'write the forwarded packets to this pcap (raw IPv4)')
      .option('--topspeed', 'as fast as possible (default)')
      .option('--multiplier <x>', 'replay at x times the capture speed', positive)
      .option('--pps <n>', 'replay at n packets per second', positive)
      .option('--loop <n>', 'replay the capture n times', positiveInt, 1)
      .option('--json', 'print the summary as one JSON object')
      .option('--backup', 'also run a backup manager that mirrors the primary')
      .option('--no-backup', 'no backup manager (start runs one by default)')
      .option('--kill-primary-at <point>', 'SIGKILL the primary at a fraction (0<x<1) or packet number (≥1) of the capture; implies --backup', positive),
  );
}

interface ReplayFlags extends CommonFlags {
  out?: string;
  topspeed?: boolean;
  multiplier?: number;
  pps?: number;
  loop: number;
  json?: boolean;
  backup?: boolean;
  killPrimaryAt?: number;
}

async function runReplay(input: string, flags: ReplayFlags): Promise<void> {
  if ([flags.topspeed, flags.multiplier, flags.pps].filter((v) => v !== undefined).length > 1) {
    throw new InvalidArgumentError('choose one of --topspeed, --multiplier, --pps');
  }
  const config = configFrom(flags);
  const { replay } = await import('./replay/replay.ts');
  const { printSummary, progressBar } = await import('./replay/summary.ts');
  const bar = flags.json ? null : progressBar('replay');
  const summary = await replay({
    input,
    output: flags.out,
    config,
    loop: flags.loop,
    pacing: flags.multiplier ? { kind: 'multiplier', factor: flags.multiplier } : flags.pps ? { kind: 'pps', rate: flags.pps } : { kind: 'topspeed' },
    logLevel: flags.logLevel,
    onProgress: bar?.update,
    backup: flags.backup === true || flags.killPrimaryAt !== undefined,
    killPrimaryAt: flags.killPrimaryAt,
  });
  bar?.stop();
  printSummary(summary, Boolean(flags.json));
}

replayCommand('replay', 'replay a capture through the agent and a primary manager over UDP')
  .argument('<in>', 'pcap or pcapng capture')
  .action(runReplay);

replayCommand('start', 'the main job: replay the bundled demo capture with a backup manager, kill the primary halfway, print the summary').action(
  async (flags: ReplayFlags) => {
    const { DEMO_CAPTURE } = await import('./replay/summary.ts');
    // The demo shows a failover: a backup runs and the primary dies halfway (--no-backup: neither).
    const failover = flags.backup !== false;
    await runReplay(DEMO_CAPTURE, { ...flags, backup: failover, killPrimaryAt: failover ? (flags.killPrimaryAt ?? 0.5) : undefined });
  },
);

addRewriteCommand(program);

program
  .command('bench')
  .description('run the benchmarks (same as npm run bench): tables, or one JSON object with --json')
  .option('--json', 'print one JSON object')
  .option('--quick', 'shorter runs')
  .option('--only <sections>', 'comma-separated sections: fastpath,protocol,system,failover,tun')
  .action(async (flags: { json?: boolean; quick?: boolean; only?: string }) => {
    const { runBenchmarks } = await import('../bench/run.ts');
    await runBenchmarks({ json: Boolean(flags.json), quick: Boolean(flags.quick), only: flags.only ? new Set(flags.only.split(',')) : null, report: !flags.only });
  });

program
  .command('status')
  .description('ask a running agent or manager (its metrics/status port) and print a table')
  .argument('<target>', 'host:port of its status port')
  .option('--json', 'print the /status JSON')
  .action(async (target: string, flags: { json?: boolean }) => {
    const { runStatusCommand } = await import('./ops/status.ts');
    process.exitCode = await runStatusCommand(target, { json: flags.json === true });
  });

try {
  await program.parseAsync(process.argv);
} catch (e) {
  // commander printed its message already; help and --version are not errors
  if (e instanceof CommanderError) process.exit(e.exitCode === 0 ? 0 : 2);
  if (e instanceof ConfigError || e instanceof InvalidArgumentError || (e instanceof Error && 'code' in e && typeof (e as { code: unknown }).code === 'string')) {
    process.stderr.write(`wasmlb: ${e.message}\n`);
    process.exit(2);
  }
  throw e;
}
