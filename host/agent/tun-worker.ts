// One queue of `wasmlb agent --queues N` on its own thread: attaches the queue's fd (opened by the main
// thread), runs a QueueAgent (own firmware, agent, control socket, multicast membership, timers) and
// reports to the main thread: ready, log events, VIP prefix changes, a snapshot for metrics twice a second.
import { parentPort, workerData } from 'node:worker_threads';
import { TunQueue } from '../io/tun.ts';
import { QueueAgent, type QueueWorkerCommand, type QueueWorkerJob, type QueueWorkerMessage } from './run.ts';

const job = workerData as QueueWorkerJob;
const port = parentPort!;
const post = (m: QueueWorkerMessage): void => port.postMessage(m);

try {
  const queue = TunQueue.attach(job.fd, job.index, job.maxPacket);
  const qa = await QueueAgent.start({
    config: job.config,
    queue,
    control: job.control,
    managers: job.managers,
    sender: job.sender,
    onEvent: (event, fields) => post({ type: 'event', event, fields }),
    onVipsChanged: (prefixes) => post({ type: 'vips', prefixes }),
    onFixedUpdate: (msg, from) => post({ type: 'fixed', msg, from }),
  });
  const report = setInterval(() => post({ type: 'snapshot', snapshot: qa.snapshot() }), 500);
  post({ type: 'snapshot', snapshot: qa.snapshot() });
  port.on('message', (m: QueueWorkerCommand) => {
    if (m.type === 'fixed') {
      // as on the sockets: one update this queue fails on is reported, the queue goes on
      try {
        qa.applyShared(m.msg, m.from);
      } catch (err) {
        post({ type: 'event', event: 'handler_error', fields: { type: m.msg.type, shared: true, error: err instanceof Error ? err.message : String(err) } });
      }
      return;
    }
    clearInterval(report);
    post({ type: 'snapshot', snapshot: qa.snapshot() });
    void qa.stop().then(() => {
      post({ type: 'stopped' });
      port.close();
    });
  });
  post({ type: 'ready', control: qa.control });
} catch (err) {
  post({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
}
