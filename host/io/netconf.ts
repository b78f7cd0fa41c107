// Address and route set-up for the agent's TUN device, as `ip` command lines.
//
// The agent changes nothing on the host silently: it builds these commands, prints them, and only with
// `--setup` runs them (`runCommands(cmds, { dryRun: false })`). Commands are idempotent (`replace`), so
// running them twice is harmless, and each has an inverse for teardown.

import { execFileSync } from 'node:child_process';

export type NetconfErrorCode = 'BAD_ARGUMENT' | 'COMMAND_FAILED';

export class NetconfError extends Error {
  constructor(
    readonly code: NetconfErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'NetconfError';
  }
}

/** One command as argv (argv[0] is the program, found on PATH). */
export type Command = readonly string[];

export interface TunSetupPlan {
  /** TUN interface name. */
  device: string;
  /** Named network namespace the device lives in; commands then use `ip -n <netns>`. */
  netns?: string;
  /** Addresses of the device itself, CIDR ("10.99.0.1/24"); the prefix is routed into the device. */
  addresses?: readonly string[];
  /** Extra prefixes routed into the device (e.g. each advertised VIP as "/32"). */
  routes?: readonly string[];
  mtu?: number;
  /** Turn off IPv6 on the device, so router solicitations and MLD do not reach the agent. */
  disableIpv6?: boolean;
  /**
   * Accept packets from the device whose source is one of this host's addresses: an ICMP error this
   * host sends about VIP traffic (e.g. "fragmentation needed" towards the VIP) goes through the agent,
   * which translates it for the real server, and comes back with that source (else a martian).
   */
  acceptLocal?: boolean;
}

const NAME_RE = /^[A-Za-z0-9_.-]{1,64}$/;
const IFNAME_RE = /^[A-Za-z0-9_.-]{1,15}$/;

/** Commands that bring the device up with its addresses and routes. */
export function tunSetupCommands(plan: TunSetupPlan): Command[] {
  const ip = ipPrefix(plan.netns);
  checkIfname(plan.device);
  const cmds: Command[] = [];
  if (plan.disableIpv6) {
    cmds.push([...netnsExec(plan.netns), 'sysctl', '-qw', `net.ipv6.conf.${plan.device}.disable_ipv6=1`]);
  }
  if (plan.acceptLocal) {
    cmds.push([...netnsExec(plan.netns), 'sysctl', '-qw', `net.ipv4.conf.${plan.device}.accept_local=1`]);
  }
  if (plan.mtu !== undefined) {
    if (!Number.isInteger(plan.mtu) || plan.mtu < 68 || plan.mtu > 65535) {
      throw new NetconfError('BAD_ARGUMENT', `bad mtu ${plan.mtu}`);
    }
    cmds.push([...ip, 'link', 'set', 'dev', plan.device, 'mtu', String(plan.mtu)]);
  }
  for (const a of plan.addresses ?? []) cmds.push([...ip, 'addr', 'replace', checkCidr(a), 'dev', plan.device]);
  cmds.push([...ip, 'link', 'set', 'dev', plan.device, 'up']);
  cmds.push(...routeCommands(plan.device, plan.routes ?? [], 'add', plan.netns));
  return cmds;
}

/**
 * Routes for `prefixes` into `device` ('add' uses `ip route replace`, so it is idempotent), or their
 * removal ('del'). The agent adds a VIP's route while its wildcard affinity lives and deletes it after.
 */
export function routeCommands(
  device: string,
  prefixes: readonly string[],
  op: 'add' | 'del',
  netns?: string,
): Command[] {
  checkIfname(device);
  const ip = ipPrefix(netns);
  return prefixes.map((p) => [...ip, 'route', op === 'add' ? 'replace' : 'del', checkCidr(p), 'dev', device]);
}

/** A command as one shell line, quoted where needed, for printing. */
export function formatCommand(cmd: Command): string {
  return cmd.map((a) => (/^[A-Za-z0-9_./:=@%+-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`)).join(' ');
}

export interface RunOptions {
  /** Return the lines without running anything. */
  dryRun: boolean;
  /** For 'del' style teardown: a failing command (already gone) is not an error. */
  ignoreErrors?: boolean;
}

/** Runs the commands in order (or not, with dryRun); returns them as shell lines either way. */
export function runCommands(cmds: readonly Command[], opts: RunOptions): string[] {
  const lines = cmds.map(formatCommand);
  if (opts.dryRun) return lines;
  cmds.forEach((cmd, i) => {
    try {
      execFileSync(cmd[0]!, cmd.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
    } catch (err) {
      if (opts.ignoreErrors) return;
      const stderr = (err as { stderr?: Buffer }).stderr?.toString().trim() ?? '';
      throw new NetconfError('COMMAND_FAILED', `${lines[i]} failed${stderr ? `: ${stderr}` : ''}`);
    }
  });
  return lines;
}

function ipPrefix(netns: string | undefined): string[] {
  if (netns === undefined) return ['ip'];
  if (!NAME_RE.test(netns)) throw new NetconfError('BAD_ARGUMENT', `bad netns name '${netns}'`);
  return ['ip', '-n', netns];
}

function netnsExec(netns: string | undefined): string[] {
  if (netns === undefined) return [];
  if (!NAME_RE.test(netns)) throw new NetconfError('BAD_ARGUMENT', `bad netns name '${netns}'`);
  return ['ip', 'netns', 'exec', netns];
}

function checkIfname(name: string): void {
  if (!IFNAME_RE.test(name)) throw new NetconfError('BAD_ARGUMENT', `bad interface name '${name}'`);
}

/** Accepts an IPv4 address with optional prefix length ("10.0.0.1", "10.0.0.0/24"). */
export function checkCidr(cidr: string): string {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:\/(\d{1,2}))?$/.exec(cidr);
  const ok =
    m !== null &&
    m.slice(1, 5).every((o) => Number(o) <= 255) &&
    (m[5] === undefined || Number(m[5]) <= 32);
  if (!ok) throw new NetconfError('BAD_ARGUMENT', `bad IPv4 address or prefix '${cidr}'`);
  return cidr;
}

/**
 * Keeps one route into the TUN per advertised VIP while its wildcard affinity lives: `update(vips)` adds the
 * routes of new VIPs and removes those of VIPs no longer advertised. With `apply: false` nothing runs and
 * the lines are only returned (the agent prints them); with `apply: true` they run (`--setup`).
 */
export class VipRoutes {
  private readonly live = new Set<string>();

  constructor(
    private readonly device: string,
    private readonly opts: { apply: boolean; netns?: string },
  ) {
    checkIfname(device);
  }

  /**
   * Makes the routed set equal to `vips` (addresses or prefixes); returns the command lines it produced.
   * A command that fails (the kernel refuses a route, someone removed one) is reported to `onError`, not
   * thrown: a route not added stays out of the set (tried again at the next update), one not deleted
   * leaves it all the same.
   */
  update(vips: Iterable<string>, onError: (line: string, message: string) => void = () => undefined): string[] {
    const want = new Set<string>();
    for (const v of vips) want.add(v.includes('/') ? checkCidr(v) : `${checkCidr(v)}/32`);
    const lines: string[] = [];
    const apply = (prefix: string, op: 'add' | 'del'): void => {
      const cmds = routeCommands(this.device, [prefix], op, this.opts.netns);
      try {
        lines.push(...runCommands(cmds, { dryRun: !this.opts.apply }));
        if (op === 'add') this.live.add(prefix);
      } catch (err) {
        if (!(err instanceof NetconfError)) throw err;
        onError(formatCommand(cmds[0]!), err.message);
      }
      if (op === 'del') this.live.delete(prefix);
    };
    for (const v of want) if (!this.live.has(v)) apply(v, 'add');
    for (const v of [...this.live]) if (!want.has(v)) apply(v, 'del');
    return lines;
  }

  /** Removes every route this object added (agent shutdown). Already-gone routes are not an error. */
  clear(): string[] {
    const cmds = routeCommands(this.device, [...this.live], 'del', this.opts.netns);
    this.live.clear();
    return runCommands(cmds, { dryRun: !this.opts.apply, ignoreErrors: true });
  }

  /** The VIP prefixes currently routed into the device. */
  routed(): string[] {
    return [...this.live].sort();
  }
}
