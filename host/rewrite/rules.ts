// The rewrite rule set: the `wasmlb rewrite` flags parsed into typed rules. Two families:
//   --dnat VIP[:PORT]=ADDR[:PORT], --snat ADDR[:PORT]=ADDR[:PORT]   (ours: exact match, one target)
//   --portmap/-r, --pnat/-N, --srcipmap/-S, --dstipmap/-D            (tcprewrite's, same syntax and meaning)
// Addresses are host-order u32. Errors name the flag and the offending text.

export type RuleErrorCode = 'BAD_RULE' | 'CONFLICT' | 'UNSUPPORTED';

export class RuleError extends Error {
  override readonly name = 'RuleError';
  constructor(
    readonly code: RuleErrorCode,
    readonly option: string,
    readonly value: string,
    reason: string,
  ) {
    super(`${option} ${JSON.stringify(value)}: ${reason}`);
  }
}

export interface Cidr {
  /** Network address, host order, with the host bits cleared. */
  readonly network: number;
  readonly prefix: number;
}

/** tcprewrite's CIDR map: an address inside `from` keeps its host bits below `to`'s prefix. */
export interface CidrMap {
  readonly from: Cidr;
  readonly to: Cidr;
}

/** tcprewrite's port map entry: ports first..last (inclusive) become `to`. */
export interface PortMapEntry {
  readonly first: number;
  readonly last: number;
  readonly to: number;
}

/** An exact NAT rule: packets whose address (and port, when given) match are rewritten to the target. */
export interface NatRule {
  readonly matchAddr: number;
  readonly matchPort: number | null;
  readonly toAddr: number;
  readonly toPort: number | null;
}

export interface RewriteRules {
  /** Destination NAT (client → VIP becomes client → backend). */
  readonly dnat: readonly NatRule[];
  /** Source NAT (backend → client becomes VIP → client). */
  readonly snat: readonly NatRule[];
  /** --pnat: source and destination through the same maps (and ARP sender/target addresses). */
  readonly pnat: readonly CidrMap[];
  readonly srcipmap: readonly CidrMap[];
  readonly dstipmap: readonly CidrMap[];
  /** --portmap: source and destination ports of TCP and UDP. The LAST matching entry wins (tcprewrite). */
  readonly portmap: readonly PortMapEntry[];
  /** --fixcsum: tcprewrite always recomputes IPv4 checksums; this adds IPv6 TCP/UDP ones. */
  readonly fixcsum: boolean;
}

export interface RuleOptions {
  dnat?: readonly string[];
  snat?: readonly string[];
  portmap?: readonly string[];
  pnat?: readonly string[];
  srcipmap?: readonly string[];
  dstipmap?: readonly string[];
  fixcsum?: boolean;
}

export function mask(prefix: number): number {
  return prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
}

export function inCidr(c: Cidr, addr: number): boolean {
  return ((addr & mask(c.prefix)) >>> 0) === c.network;
}

/** tcprewrite's remap_ip(): the network bits of `to`, the host bits of the address. */
export function remap(to: Cidr, addr: number): number {
  const m = mask(to.prefix);
  return ((to.network & m) | (addr & ~m)) >>> 0;
}

function parseAddr(option: string, value: string, text: string): number {
  const parts = text.split('.');
  if (text.includes(':') || text.startsWith('['))
    throw new RuleError('UNSUPPORTED', option, value, `IPv6 address ${text}: only IPv4 rules are supported`);
  if (parts.length !== 4 || parts.some((p) => !/^\d{1,3}$/.test(p) || Number(p) > 255))
    throw new RuleError('BAD_RULE', option, value, `${JSON.stringify(text)} is not an IPv4 address`);
  return parts.reduce((a, p) => a * 256 + Number(p), 0) >>> 0;
}

function parsePort(option: string, value: string, text: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) > 65535)
    throw new RuleError('BAD_RULE', option, value, `${JSON.stringify(text)} is not a port (0-65535)`);
  return Number(text);
}

function parseCidr(option: string, value: string, text: string): Cidr {
  if (text.startsWith('[') || text.split(':').length > 2)
    throw new RuleError('UNSUPPORTED', option, value, `IPv6 CIDR ${text}: only IPv4 maps are supported`);
  const m = /^([^/]+)(?:\/(\d{1,2}))?$/.exec(text);
  if (!m) throw new RuleError('BAD_RULE', option, value, `${JSON.stringify(text)} is not a CIDR (a.b.c.d/len)`);
  const addr = parseAddr(option, value, m[1]!);
  const prefix = m[2] === undefined ? 32 : Number(m[2]);
  if (prefix > 32) throw new RuleError('BAD_RULE', option, value, `prefix length ${prefix} is over 32`);
  return { network: (addr & mask(prefix)) >>> 0, prefix };
}

/** "A/n:B/m[,C/n:D/m…]" — tcprewrite's --pnat / --srcipmap / --dstipmap syntax. */
export function parseCidrMaps(option: string, value: string): CidrMap[] {
  if (value.trim() === '') throw new RuleError('BAD_RULE', option, value, 'empty map');
  return value.split(',').map((pair) => {
    const sides = pair.split(':');
    if (sides.length !== 2 || sides[0] === '' || sides[1] === '') {
      if (pair.includes('['))
        throw new RuleError('UNSUPPORTED', option, value, `IPv6 map ${pair}: only IPv4 maps are supported`);
      throw new RuleError('BAD_RULE', option, value, `${JSON.stringify(pair)} is not FROM_CIDR:TO_CIDR`);
    }
    return { from: parseCidr(option, value, sides[0]!), to: parseCidr(option, value, sides[1]!) };
  });
}

/** "80:8080[,1-100:49148…]" — tcprewrite's --portmap syntax. */
export function parsePortMap(option: string, value: string): PortMapEntry[] {
  if (value.trim() === '') throw new RuleError('BAD_RULE', option, value, 'empty port map');
  return value.split(',').map((entry) => {
    const m = /^(\d+)(?:-(\d+))?:(\d+)$/.exec(entry.trim());
    if (!m) throw new RuleError('BAD_RULE', option, value, `${JSON.stringify(entry)} is not FROM[-TO]:PORT`);
    const first = parsePort(option, value, m[1]!);
    const last = m[2] === undefined ? first : parsePort(option, value, m[2]);
    const to = parsePort(option, value, m[3]!);
    if (last < first) throw new RuleError('BAD_RULE', option, value, `range ${first}-${last} runs backwards`);
    return { first, last, to };
  });
}

function parseEndpoint(option: string, value: string, text: string): { addr: number; port: number | null } {
  const m = /^([^:]+)(?::(\d+))?$/.exec(text);
  if (!m) throw new RuleError('BAD_RULE', option, value, `${JSON.stringify(text)} is not ADDR[:PORT]`);
  return { addr: parseAddr(option, value, m[1]!), port: m[2] === undefined ? null : parsePort(option, value, m[2]) };
}

/** "MATCH[:PORT]=TO[:PORT]" for --dnat / --snat. */
export function parseNatRule(option: string, value: string): NatRule {
  const sides = value.split('=');
  if (sides.length !== 2 || sides[0] === '' || sides[1] === '')
    throw new RuleError('BAD_RULE', option, value, 'expected ADDR[:PORT]=ADDR[:PORT]');
  const match = parseEndpoint(option, value, sides[0]!.trim());
  const to = parseEndpoint(option, value, sides[1]!.trim());
  return { matchAddr: match.addr, matchPort: match.port, toAddr: to.addr, toPort: to.port };
}

export function parseRules(o: RuleOptions): RewriteRules {
  const pnatValues = o.pnat ?? [];
  if (pnatValues.length > 1)
    throw new RuleError('UNSUPPORTED', '--pnat', pnatValues[1]!, 'a second --pnat (tcprewrite: the map for the secondary interface of a tcpprep cache file) is not supported; join maps with commas instead');
  if (pnatValues.length > 0 && ((o.srcipmap ?? []).length > 0 || (o.dstipmap ?? []).length > 0))
    throw new RuleError('CONFLICT', '--pnat', pnatValues[0]!, 'cannot be combined with --srcipmap/--dstipmap (as in tcprewrite)');
  const rules: RewriteRules = {
    dnat: (o.dnat ?? []).map((v) => parseNatRule('--dnat', v)),
    snat: (o.snat ?? []).map((v) => parseNatRule('--snat', v)),
    pnat: pnatValues.flatMap((v) => parseCidrMaps('--pnat', v)),
    srcipmap: (o.srcipmap ?? []).flatMap((v) => parseCidrMaps('--srcipmap', v)),
    dstipmap: (o.dstipmap ?? []).flatMap((v) => parseCidrMaps('--dstipmap', v)),
    portmap: (o.portmap ?? []).flatMap((v) => parsePortMap('--portmap', v)),
    fixcsum: o.fixcsum ?? false,
  };
  checkDuplicates('--dnat', o.dnat ?? [], rules.dnat);
  checkDuplicates('--snat', o.snat ?? [], rules.snat);
  return rules;
}

function checkDuplicates(option: string, values: readonly string[], rules: readonly NatRule[]): void {
  const seen = new Map<string, number>();
  rules.forEach((r, i) => {
    const key = `${r.matchAddr}:${r.matchPort ?? '*'}`;
    const prev = seen.get(key);
    if (prev !== undefined)
      throw new RuleError('CONFLICT', option, values[i]!, `matches the same traffic as ${JSON.stringify(values[prev])}`);
    seen.set(key, i);
  });
}

/**
 * tcprewrite maps a port through the LAST entry (in command-line order, across repeated flags and comma
 * lists) whose range holds it; unmatched ports stay. A port is mapped once: 80:8080 then 8080:9090 gives
 * 80 → 8080, not 9090.
 */
export function mapPort(portmap: readonly PortMapEntry[], port: number): number {
  for (let i = portmap.length - 1; i >= 0; i--) {
    const e = portmap[i]!;
    if (port >= e.first && port <= e.last) return e.to;
  }
  return port;
}

export function hasRules(r: RewriteRules): boolean {
  return r.dnat.length + r.snat.length + r.pnat.length + r.srcipmap.length + r.dstipmap.length + r.portmap.length > 0;
}
