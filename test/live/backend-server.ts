// A backend HTTP server for the live topology, started inside a backend namespace:
//   ip netns exec wlbt-be1 node --import tsx test/live/backend-server.ts --name be1 --port 80 --port 8080
// Routes: `/` → "backend <name>\n"; `/big` → the deterministic big file; `/health` → "ok".
// Every response carries `X-Backend: <name>`. Prints "ready <ports>" on stdout once every port listens.

import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { parseArgs } from 'node:util';
import { BIG_FILE_BYTES, bigFile } from './bigfile.ts';

const { values } = parseArgs({
  options: {
    name: { type: 'string' },
    port: { type: 'string', multiple: true },
    'big-bytes': { type: 'string' },
  },
});
const name = values.name ?? 'backend';
const ports = (values.port ?? ['80']).map(Number);
const bigBytes = values['big-bytes'] === undefined ? BIG_FILE_BYTES : Number(values['big-bytes']);
let big: Buffer | null = null;

function handle(req: IncomingMessage, res: ServerResponse): void {
  res.setHeader('X-Backend', name);
  if (req.url === '/big') {
    big ??= bigFile(bigBytes);
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': big.length });
    res.end(big);
  } else if (req.url === '/health') {
    res.end('ok\n');
  } else {
    res.writeHead(200, { 'Content-Type': 'text/plain' });
    res.end(`backend ${name}\n`);
  }
}

await Promise.all(
  ports.map(
    (port) =>
      new Promise<void>((resolve, reject) => {
        const server = createServer(handle);
        server.keepAliveTimeout = 5000;
        server.once('error', reject);
        server.listen(port, '0.0.0.0', () => resolve());
      }),
  ),
);
process.stdout.write(`ready ${ports.join(',')}\n`);
