// The live test topology: network namespaces for a client, a router (where the agent runs on its TUN
// device) and N backends running real HTTP servers.
//
//      client ns                 router ns                         backend ns (one per backend)
//   eth0 10.99.1.2 ──veth── c0 10.99.1.1                 b<i> 10.99.<1+i>.1 ──veth── eth0 10.99.<1+i>.2
//                               wlb0 (TUN, persistent, multi_queue) 10.99.0.1/24
//                               route 10.99.100.0/24 (VIPs) dev wlb0
//                               rule iif b<i> ipproto tcp sport <servicePort> → table 100: default dev wlb0
//
// - Client → VIP goes into the TUN (a plain route); the agent rewrites it and writes it back, the kernel
//   forwards it to the backend. Backend → client replies from the service port go into the TUN too (the
//   policy rule), so the agent sees both directions; with source NAT into 10.99.0.0/24 the replies reach
//   the TUN by the plain connected route anyway.
// - Each backend also listens on `directPort`, which is not policy-routed: the client reaches it by plain
//   kernel routing, without any agent (a check that the topology itself works).
// - Everything lives inside namespaces named `<prefix>client`, `<prefix>router`, `<prefix>be<i>`; addresses
//   are 10.99.0.0/16, used only inside them. Nothing is created in the caller's namespace.
// - `topologyDown(prefix)` removes the topology's namespaces `<prefix>client|router|be<N>` (also leftovers of
//   a crashed run), after killing the processes inside (the backend servers).

import { spawn } from 'node:child_process';
import { closeSync, openSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BIG_FILE_BYTES } from './bigfile.ts';
import { LiveSetupError, deleteNetns, ipBatch, listNetns, nsExec, run } from './netns.ts';

export const DEFAULT_PREFIX = 'wlbt-';

export interface TopologyOptions {
  /** Namespace name prefix; default "wlbt-". */
  prefix?: string;
  /** Number of backend namespaces (1..50); default 2. */
  backends?: number;
  /** TUN device name in the router namespace; default "wlb0". */
  tunName?: string;
  /** Create the TUN as multi-queue, so the agent can attach several queues; default true. */
  multiQueue?: boolean;
  /** The VIP's service port, served by every backend and policy-routed back into the TUN; default 80. */
  servicePort?: number;
  /** A second port every backend serves that is plainly routed (no agent needed); default 8080. */
  directPort?: number;
  /** Start the backend HTTP servers; default true. */
  startServers?: boolean;
  /** Size of `/big` on the backends; default 50 MiB. */
  bigFileBytes?: number;
}

export interface Backend {
  name: string;
  netns: string;
  address: string;
  /** Router-side interface name towards this backend. */
  routerIf: string;
}

export interface Topology {
  prefix: string;
  netns: { client: string; router: string };
  backends: Backend[];
  client: { address: string; gateway: string };
  router: {
    tunName: string;
    /** Address of the TUN device (the agent's own subnet, routed into the TUN). */
    tunAddress: string;
    tunPrefix: string;
    /** Prefix routed into the TUN for VIPs. */
    vipPrefix: string;
    /** Routing table holding `default dev <tun>` for backend replies. */
    replyTable: number;
  };
  /** The first address of vipPrefix, the natural VIP for tests. */
  vip: string;
  servicePort: number;
  directPort: number;
  bigFileBytes: number;
  /** Removes everything this topology created. */
  down(): void;
}

const REPLY_TABLE = 100;
const RULE_PREF = 100;

/** Brings the topology up (after removing leftovers with the same prefix). Throws LiveSetupError. */
export async function topologyUp(opts: TopologyOptions = {}): Promise<Topology> {
  const prefix = opts.prefix ?? DEFAULT_PREFIX;
  if (!/^[A-Za-z0-9_.-]{3,40}$/.test(prefix)) throw new LiveSetupError('BAD_ARGUMENT', `bad prefix '${prefix}'`);
  const nBackends = opts.backends ?? 2;
  if (!Number.isInteger(nBackends) || nBackends < 1 || nBackends > 50) {
    throw new LiveSetupError('BAD_ARGUMENT', `backends must be 1..50, got ${nBackends}`);
  }
  const tunName = opts.tunName ?? 'wlb0';
  if (!/^[A-Za-z0-9_.-]{1,15}$/.test(tunName)) throw new LiveSetupError('BAD_ARGUMENT', `bad tun name '${tunName}'`);
  const servicePort = opts.servicePort ?? 80;
  const directPort = opts.directPort ?? 8080;
  const bigFileBytes = opts.bigFileBytes ?? BIG_FILE_BYTES;

  const topo: Topology = {
    prefix,
    netns: { client: `${prefix}client`, router: `${prefix}router` },
    backends: Array.from({ length: nBackends }, (_, k) => ({
      name: `be${k + 1}`,
      netns: `${prefix}be${k + 1}`,
      address: `10.99.${k + 2}.2`,
      routerIf: `b${k + 1}`,
    })),
    client: { address: '10.99.1.2', gateway: '10.99.1.1' },
    router: {
      tunName,
      tunAddress: '10.99.0.1',
      tunPrefix: '10.99.0.0/24',
      vipPrefix: '10.99.100.0/24',
      replyTable: REPLY_TABLE,
    },
    vip: '10.99.100.1',
    servicePort,
    directPort,
    bigFileBytes,
    down: () => void topologyDown(prefix),
  };

  topologyDown(prefix);
  try {
    const { client, router } = topo.netns;
    ipBatch([client, router, ...topo.backends.map((b) => b.netns)].map((n) => `netns add ${n}`));

    const r: string[] = [
      'link set lo up',
      `link add c0 type veth peer name eth0 netns ${client}`,
      'addr add 10.99.1.1/24 dev c0',
      'link set c0 up',
    ];
    for (const [k, b] of topo.backends.entries()) {
      r.push(
        `link add ${b.routerIf} type veth peer name eth0 netns ${b.netns}`,
        `addr add 10.99.${k + 2}.1/24 dev ${b.routerIf}`,
        `link set ${b.routerIf} up`,
        `rule add pref ${RULE_PREF} iif ${b.routerIf} ipproto tcp sport ${servicePort} lookup ${REPLY_TABLE}`,
      );
    }
    r.push(
      `tuntap add dev ${tunName} mode tun${opts.multiQueue === false ? '' : ' multi_queue'}`,
      `addr add ${topo.router.tunAddress}/24 dev ${tunName}`,
      `link set ${tunName} up`,
      `route add ${topo.router.vipPrefix} dev ${tunName}`,
      `route add default dev ${tunName} table ${REPLY_TABLE}`,
    );
    // sysctls before addresses matter for the TUN (no IPv6 noise into the agent): set them first.
    run(
      nsExec(router, [
        'sysctl',
        '-qw',
        'net.ipv4.ip_forward=1',
        'net.ipv4.conf.all.rp_filter=0',
        'net.ipv4.conf.default.rp_filter=0',
        'net.ipv6.conf.all.disable_ipv6=1',
        'net.ipv6.conf.default.disable_ipv6=1',
      ]),
    );
    ipBatch(r, router);
    const leaf = (ns: string, addr: string, gw: string): void => {
      run(nsExec(ns, ['sysctl', '-qw', 'net.ipv6.conf.all.disable_ipv6=1', 'net.ipv6.conf.default.disable_ipv6=1']));
      ipBatch(['link set lo up', `addr add ${addr}/24 dev eth0`, 'link set eth0 up', `route add default via ${gw}`], ns);
    };
    leaf(client, topo.client.address, topo.client.gateway);
    topo.backends.forEach((b, k) => leaf(b.netns, b.address, `10.99.${k + 2}.1`));

    if (opts.startServers !== false) {
      await Promise.all(topo.backends.map((b) => startBackendServer(topo, b)));
    }
    return topo;
  } catch (err) {
    topologyDown(prefix);
    throw err;
  }
}

/**
 * The namespaces a topology with this prefix may own: `<prefix>client`, `<prefix>router`, `<prefix>be<N>`.
 * Exactly these, so that a topology "wlbt-" never removes "wlbt-t-router" of a test running alongside.
 */
export function topologyNamespaces(prefix: string): string[] {
  const own = new RegExp(`^${prefix.replace(/[.]/g, '\\.')}(client|router|be\\d+)$`);
  return listNetns().filter((n) => own.test(n));
}

/**
 * Removes the topology's namespaces (and so its veths, TUN and servers), also those left by a crashed
 * run, even with more backends. Returns their names.
 */
export function topologyDown(prefix: string = DEFAULT_PREFIX): string[] {
  const mine = topologyNamespaces(prefix);
  for (const n of mine) deleteNetns(n);
  // The servers' logs (kept while they run, for a failing start's message) go too.
  const logName = new RegExp(`^${prefix.replace(/[.]/g, '\\.')}be\\d+\\.log$`);
  for (const f of readdirSync(tmpdir())) if (logName.test(f)) rmSync(join(tmpdir(), f), { force: true });
  return mine;
}

/** True when none of this topology's namespaces is left. */
export function topologyIsGone(prefix: string = DEFAULT_PREFIX): boolean {
  return topologyNamespaces(prefix).length === 0;
}

const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SERVER = join(REPO_ROOT, 'test/live/backend-server.ts');

/** Starts the HTTP server in a backend namespace, detached (it outlives a CLI `up`); waits for "ready". */
function startBackendServer(topo: Topology, b: Backend): Promise<void> {
  const log = join(tmpdir(), `${topo.prefix}${b.name}.log`);
  const logFd = openSync(log, 'w');
  const argv = nsExec(b.netns, [
      process.execPath,
      '--import',
      'tsx',
      SERVER,
      '--name',
      b.name,
      '--port',
      String(topo.servicePort),
      '--port',
      String(topo.directPort),
      '--big-bytes',
      String(topo.bigFileBytes),
    ]);
  const child = spawn(argv[0]!, argv.slice(1), { cwd: REPO_ROOT, detached: true, stdio: ['ignore', 'pipe', logFd] });
  closeSync(logFd);
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new LiveSetupError('TIMEOUT', `backend ${b.name} not ready after 15 s (log: ${log})`));
    }, 15_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) {
        clearTimeout(timer);
        child.stdout!.destroy();
        child.unref();
        resolve();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new LiveSetupError('COMMAND_FAILED', `backend ${b.name} exited with ${code} (log: ${log})`));
    });
  });
}

export interface HttpResult {
  status: number;
  /** The X-Backend header: which backend answered. */
  backend: string | null;
  bytes: number;
  sha256: string;
  /** The body as text when it is short (≤ 256 KiB: a status or metrics page). */
  body: string | null;
  ms: number;
}

/**
 * GETs `url` from inside namespace `netns` (a fresh Node process there). Throws LiveSetupError if the
 * request fails (refused, reset, timeout).
 */
export async function httpGetFrom(netns: string, url: string, timeoutMs = 10_000): Promise<HttpResult> {
  const [res] = await httpGetManyFrom(netns, [url], timeoutMs);
  return res!;
}

/** GETs each URL in sequence from one process in `netns`, a fresh connection each (no keep-alive). */
export function httpGetManyFrom(netns: string, urls: readonly string[], timeoutMs = 10_000): Promise<HttpResult[]> {
  const script = `
    import http from 'node:http';
    import { createHash } from 'node:crypto';
    const urls = ${JSON.stringify(urls)};
    const out = [];
    for (const url of urls) {
      const t0 = performance.now();
      out.push(await new Promise((resolve, reject) => {
        const req = http.get(url, { agent: false, timeout: ${timeoutMs} }, (res) => {
          const h = createHash('sha256');
          let bytes = 0; const small = [];
          res.on('data', (c) => { h.update(c); bytes += c.length; if (bytes <= 262144) small.push(c); });
          res.on('end', () => resolve({ status: res.statusCode, backend: res.headers['x-backend'] ?? null,
            bytes, sha256: h.digest('hex'), body: bytes <= 262144 ? Buffer.concat(small).toString() : null,
            ms: performance.now() - t0 }));
          res.on('error', reject);
        });
        req.on('timeout', () => req.destroy(new Error('timeout')));
        req.on('error', reject);
      }));
    }
    process.stdout.write(JSON.stringify(out));
  `;
  return new Promise((resolve, reject) => {
    const argv = nsExec(netns, [process.execPath, '--input-type=module', '-e', script]);
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => {
      if (code === 0) resolve(JSON.parse(out) as HttpResult[]);
      else reject(new LiveSetupError('COMMAND_FAILED', `GET from ${netns} failed (${code}): ${err.trim()}`));
    });
  });
}
