// One TUN queue driven by its own thread (its own event loop), for the multi-queue figure.
import { parentPort, workerData } from 'node:worker_threads';
import { TunQueue } from '../host/io/tun.ts';
import { echoLoop, inject } from './tun-loop.ts';

interface Job {
  fd: number;
  index: number;
  inflight: number;
  payload: number;
  durationMs: number;
  warmupMs: number;
}

const job = workerData as Job;
const queue = TunQueue.attach(job.fd, job.index);
const done = echoLoop(queue, job.durationMs, job.warmupMs);
inject(queue, job.inflight, job.payload, job.index * job.inflight);
parentPort!.postMessage(await done);
queue.close();
