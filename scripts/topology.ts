// The live test topology from the command line (root needed):
//   npx tsx scripts/topology.ts up   [--prefix wlbt-] [--backends 2] [--big-bytes N] [--no-servers] [--single-queue]
//   npx tsx scripts/topology.ts down [--prefix wlbt-]
//   npx tsx scripts/topology.ts status [--prefix wlbt-]
//   npx tsx scripts/topology.ts nat  [--prefix wlbt-] [--backend be1]   (stand-in agent until Ctrl-C)
// `up` prints what it made and the commands to try; `down` removes <prefix>client|router|be<N>.

import { parseArgs } from 'node:util';
import { TunDevice } from '../host/io/tun.ts';
import { liveUnavailableReason } from '../test/live/netns.ts';
import { startStaticNat } from '../test/live/static-nat.ts';
import { DEFAULT_PREFIX, topologyDown, topologyNamespaces, topologyUp } from '../test/live/topology.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    prefix: { type: 'string', default: DEFAULT_PREFIX },
    backends: { type: 'string', default: '2' },
    backend: { type: 'string', default: 'be1' },
    'big-bytes': { type: 'string' },
    'no-servers': { type: 'boolean', default: false },
    'single-queue': { type: 'boolean', default: false },
  },
});
const prefix = values.prefix!;
const cmd = positionals[0];

function fail(msg: string): never {
  process.stderr.write(`topology: ${msg}\n`);
  process.exit(1);
}

const reason = cmd === 'status' || cmd === undefined ? null : liveUnavailableReason();
if (reason) fail(`cannot build namespaces here: ${reason}`);

switch (cmd) {
  case 'up': {
    const t = await topologyUp({
      prefix,
      backends: Number(values.backends),
      startServers: !values['no-servers'],
      multiQueue: !values['single-queue'],
      ...(values['big-bytes'] ? { bigFileBytes: Number(values['big-bytes']) } : {}),
    });
    const lines = [
      `namespaces: ${[t.netns.client, t.netns.router, ...t.backends.map((b) => b.netns)].join(' ')}`,
      `client ${t.client.address} (gw ${t.client.gateway})`,
      ...t.backends.map((b) => `backend ${b.name} ${b.address} in ${b.netns} (ports ${t.servicePort}, ${t.directPort})`),
      `router: TUN ${t.router.tunName} ${t.router.tunAddress}/24, VIPs ${t.router.vipPrefix} → ${t.router.tunName}, ` +
        `replies from :${t.servicePort} → table ${t.router.replyTable} (default dev ${t.router.tunName})`,
      '',
      'try:',
      `  ip netns exec ${t.netns.client} curl -s http://${t.backends[0]!.address}:${t.directPort}/   # plain routing`,
      `  ip netns exec ${t.netns.router} <agent> --tun ${t.router.tunName} --vip ${t.vip}:${t.servicePort} ...`,
      `  npx tsx scripts/topology.ts nat --prefix ${prefix}   # stand-in agent: static NAT VIP → be1`,
      `  ip netns exec ${t.netns.client} curl -s http://${t.vip}:${t.servicePort}/`,
      `  npx tsx scripts/topology.ts down --prefix ${prefix}`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
    break;
  }
  case 'down': {
    const gone = topologyDown(prefix);
    process.stdout.write(gone.length ? `removed ${gone.join(' ')}\n` : `nothing with prefix '${prefix}'\n`);
    break;
  }
  case 'status': {
    const mine = topologyNamespaces(prefix);
    process.stdout.write(mine.length ? `${mine.join('\n')}\n` : `no namespaces with prefix '${prefix}'\n`);
    break;
  }
  case 'nat': {
    const idx = Number(/^be(\d+)$/.exec(values.backend!)?.[1] ?? NaN);
    if (!Number.isInteger(idx) || idx < 1) fail(`--backend must be be<N>, got ${values.backend}`);
    const dev = TunDevice.open('wlb0', { netns: `${prefix}router` });
    const nat = startStaticNat(dev.queues[0]!, { vip: '10.99.100.1', port: 80, backend: `10.99.${idx + 1}.2` });
    process.stdout.write(`static NAT 10.99.100.1:80 → 10.99.${idx + 1}.2 on wlb0; Ctrl-C to stop\n`);
    process.on('SIGINT', () => {
      nat.stop();
      dev.close();
      process.stdout.write(`\nforwarded ${nat.forwarded()} packets, ignored ${nat.ignored()}\n`);
      process.exit(0);
    });
    break;
  }
  default:
    fail('usage: topology.ts up|down|status|nat [--prefix wlbt-] [--backends N] [--backend beN]');
}
