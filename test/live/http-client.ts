// A long-lived HTTP client run inside the client namespace (`node --import tsx test/live/http-client.ts`),
// driven by JSON lines on stdin, answering with JSON lines on stdout. Long-lived so that probes during a
// failover cost no process start-up, and so a download can be throttled and watched while it runs.
//
// in:  {"op":"get","id":1,"url":"http://…","bytesPerSecond":2000000,"progressEvery":1048576,"timeoutMs":30000}
// out: {"id":1,"event":"progress","bytes":1048576}
//      {"id":1,"event":"done","status":200,"backend":"be1","bytes":…,"sha256":"…","body":null,"ms":…}
//      {"id":1,"event":"error","code":"ECONNRESET","message":"…","bytes":…,"ms":…}

import { createHash } from 'node:crypto';
import http from 'node:http';
import { createInterface } from 'node:readline';

interface GetCommand {
  op: 'get';
  id: number;
  url: string;
  bytesPerSecond?: number;
  progressEvery?: number;
  timeoutMs?: number;
  /** Connect from a client port never used before by this client (below the kernel's ephemeral range),
   *  so the request is certainly a new flow: an ephemeral port the kernel reuses could still have a
   *  fixed affinity (sticky time) on the agent and bypass the manager. */
  freshPort?: boolean;
}

let nextFreshPort = 20000;

function emit(obj: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

function get(cmd: GetCommand): void {
  const t0 = performance.now();
  let bytes = 0;
  let nextProgress = cmd.progressEvery ?? Infinity;
  let finished = false;
  const fail = (err: Error & { code?: string }): void => {
    if (finished) return;
    finished = true;
    emit({ id: cmd.id, event: 'error', code: err.code ?? 'ERROR', message: err.message, bytes, ms: performance.now() - t0 });
  };
  const localPort = cmd.freshPort ? nextFreshPort++ : undefined;
  if (nextFreshPort > 32000) nextFreshPort = 20000;
  const req = http.get(cmd.url, { agent: false, timeout: cmd.timeoutMs ?? 30_000, ...(localPort ? { localPort } : {}) }, (res) => {
    const hash = createHash('sha256');
    const small: Buffer[] = [];
    res.on('data', (chunk: Buffer) => {
      hash.update(chunk);
      bytes += chunk.length;
      if (bytes <= 4096) small.push(chunk);
      while (bytes >= nextProgress) {
        emit({ id: cmd.id, event: 'progress', bytes });
        nextProgress += cmd.progressEvery!;
      }
      if (cmd.bytesPerSecond) {
        // Throttle by not reading: TCP flow control slows the sender, the connection stays open longer.
        const dueMs = (bytes / cmd.bytesPerSecond) * 1000 - (performance.now() - t0);
        if (dueMs > 1) {
          res.pause();
          setTimeout(() => res.resume(), dueMs);
        }
      }
    });
    res.on('end', () => {
      if (finished) return;
      finished = true;
      emit({
        id: cmd.id,
        event: 'done',
        status: res.statusCode,
        backend: res.headers['x-backend'] ?? null,
        bytes,
        sha256: hash.digest('hex'),
        body: bytes <= 4096 ? Buffer.concat(small).toString() : null,
        ms: performance.now() - t0,
      });
    });
    res.on('error', fail);
    res.on('aborted', () => fail(Object.assign(new Error('response aborted'), { code: 'ECONNRESET' })));
  });
  req.on('timeout', () => req.destroy(Object.assign(new Error('timeout'), { code: 'ETIMEDOUT' })));
  req.on('error', fail);
}

const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => {
  const cmd = JSON.parse(line) as GetCommand;
  if (cmd.op === 'get') get(cmd);
});
rl.on('close', () => process.exit(0));
emit({ event: 'ready' });
