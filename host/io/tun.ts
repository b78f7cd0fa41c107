// A Linux TUN device as a batch packet source and sink for the agent host.
//
// Invariants:
// - Every queue fd is opened O_NONBLOCK: `readBatch`/`writeBatch` never block the event loop; they return
//   how many packets they moved and stop at EAGAIN.
// - Packets are raw IP datagrams (IFF_TUN | IFF_NO_PI): byte 0 is the IP version nibble, no 4-byte header.
// - `readBatch` copies straight from the kernel into the caller's buffer (e.g. the firmware's batch region
//   in wasm memory): one read(2) per packet, no intermediate copy, no allocation except a subarray view.
// - A packet longer than `maxPacket` would be truncated by read(2); such a packet is detected (the read
//   fills the whole `maxPacket + 1` window), dropped and counted in `stats.rxOversize`.
// - Multi-queue (IFF_MULTI_QUEUE): one fd per queue; the kernel spreads flows over queues by flow hash, and
//   each queue may be drained by its own thread (`TunQueue.attach(fd)` in a worker: fds are process-wide).
// - Readiness comes from libuv (`onReadable`, via koffi.node.poll): no worker, no busy polling.

import { openSync, closeSync, readFileSync } from 'node:fs';
import {
  libc,
  errnoName,
  pollReadable,
  type PollHandle,
  O_RDWR,
  O_NONBLOCK,
  O_CLOEXEC,
  TUNSETIFF,
  IFF_TUN,
  IFF_NO_PI,
  IFF_MULTI_QUEUE,
  IFREQ_SIZE,
  IFNAMSIZ,
  CLONE_NEWNET,
  EAGAIN,
  EINTR,
  EINVAL,
  EPERM,
} from './libc.ts';

export type TunErrorCode =
  | 'TUN_UNAVAILABLE' // no /dev/net/tun, not permitted, or not Linux
  | 'TUN_ATTACH' // TUNSETIFF refused (name taken by a non-TUN device, flag mismatch, …)
  | 'TUN_READ'
  | 'TUN_NETNS' // could not enter or leave the named network namespace
  | 'TUN_CLOSED'
  | 'BAD_ARGUMENT';

export class TunError extends Error {
  constructor(
    readonly code: TunErrorCode,
    message: string,
    readonly errno?: number,
  ) {
    super(errno === undefined ? message : `${message}: ${errnoName(errno)}`);
    this.name = 'TunError';
  }
}

export interface TunOpenOptions {
  /** Number of queues (fds). More than one implies IFF_MULTI_QUEUE. Default 1. */
  queues?: number;
  /**
   * Attach with IFF_MULTI_QUEUE even for one queue (needed to attach to a persistent multi-queue device,
   * e.g. one made by `ip tuntap add ... multi_queue`). Default: queues > 1, and when attaching with one queue
   * fails with EINVAL the other setting is tried once, so a persistent device of either kind can be attached.
   */
  multiQueue?: boolean;
  /** Open the device inside this named network namespace (/run/netns/<name>) instead of the current one. */
  netns?: string;
  /**
   * Largest packet accepted by readBatch; longer ones are dropped and counted. Default 2047, so one packet
   * plus the truncation check fits the firmware's 2048-byte packet slot (`readBatch(..., stride = 2048)`).
   */
  maxPacket?: number;
}

export interface TunStats {
  rxPackets: number;
  rxBytes: number;
  /** Packets longer than maxPacket, dropped. */
  rxOversize: number;
  txPackets: number;
  txBytes: number;
  /** Packets the kernel refused on write (malformed, EINVAL, …): skipped, the batch goes on. */
  txErrors: number;
}

const ALIGN = 8;
const DEFAULT_MAX_PACKET = 2047;

/** One queue of a TUN device: one non-blocking fd. */
export class TunQueue {
  readonly stats: TunStats = { rxPackets: 0, rxBytes: 0, rxOversize: 0, txPackets: 0, txBytes: 0, txErrors: 0 };
  private poll: PollHandle | null = null;
  private abortWait: (() => void) | null = null;
  private closed = false;

  private constructor(
    readonly fd: number,
    readonly index: number,
    readonly maxPacket: number,
    private readonly owned: boolean,
  ) {}

  /** @internal used by TunDevice.open */
  static fromOpened(fd: number, index: number, maxPacket: number): TunQueue {
    return new TunQueue(fd, index, maxPacket, true);
  }

  /**
   * Uses a queue fd opened elsewhere in this process (e.g. passed to a worker thread by number). The fd must
   * be O_NONBLOCK (TunDevice.open does this). `close()` on an attached queue does not close the fd.
   */
  static attach(fd: number, index = 0, maxPacket = DEFAULT_MAX_PACKET): TunQueue {
    if (!Number.isInteger(fd) || fd < 0) throw new TunError('BAD_ARGUMENT', `bad fd ${fd}`);
    return new TunQueue(fd, index, maxPacket, false);
  }

  /**
   * Reads up to `max` packets without blocking. Packet i is `into[offsets[i] .. offsets[i] + lengths[i])`.
   * Packed layout (default): packets follow each other from offset 0, each on an 8-byte boundary. Slot
   * layout (`stride`, ≥ maxPacket + 1): packet i sits at `i * stride`, for a batch region of fixed slots.
   * Stops at `max`, when the kernel has nothing more (EAGAIN), or when `into` has no room for one more
   * packet of `maxPacket` bytes. Returns the number of packets read.
   */
  readBatch(into: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, max: number, stride?: number): number {
    this.checkOpen();
    const limit = Math.min(max, offsets.length, lengths.length);
    const { read, errno } = libc();
    const window = this.maxPacket + 1;
    if (stride !== undefined && (!Number.isInteger(stride) || stride < window)) {
      throw new TunError('BAD_ARGUMENT', `stride ${stride} is smaller than maxPacket + 1 (${window})`);
    }
    if (into.length < window) {
      throw new TunError('BAD_ARGUMENT', `read buffer of ${into.length} B is smaller than maxPacket + 1 (${window})`);
    }
    let pos = 0;
    let n = 0;
    while (n < limit && into.length - pos >= window) {
      const got = read(this.fd, into.subarray(pos, pos + window), window);
      if (got < 0) {
        const e = errno();
        if (e === EAGAIN) break;
        if (e === EINTR) continue;
        throw new TunError('TUN_READ', `read on TUN queue ${this.index}`, e);
      }
      if (got === window) {
        this.stats.rxOversize++;
        continue;
      }
      if (got === 0) break;
      offsets[n] = pos;
      lengths[n] = got;
      this.stats.rxPackets++;
      this.stats.rxBytes += got;
      n++;
      pos = stride === undefined ? pos + ((got + ALIGN - 1) & ~(ALIGN - 1)) : n * stride;
    }
    return n;
  }

  /**
   * Writes `count` packets `from[offsets[i] .. offsets[i] + lengths[i])` to the kernel. A packet the kernel
   * refuses (malformed) is counted in `stats.txErrors` and skipped. Stops early only when the kernel says
   * EAGAIN; returns how many packets were consumed (written or refused), so the caller may retry the rest.
   */
  writeBatch(from: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number): number {
    this.checkOpen();
    const limit = Math.min(count, offsets.length, lengths.length);
    const { write, errno } = libc();
    let i = 0;
    while (i < limit) {
      const off = offsets[i]!;
      const len = lengths[i]!;
      if (off + len > from.length) throw new TunError('BAD_ARGUMENT', `packet ${i} lies outside the buffer`);
      const put = write(this.fd, from.subarray(off, off + len), len);
      if (put < 0) {
        const e = errno();
        if (e === EAGAIN) break;
        if (e === EINTR) continue;
        this.stats.txErrors++;
      } else {
        this.stats.txPackets++;
        this.stats.txBytes += put;
      }
      i++;
    }
    return i;
  }

  /** Writes one packet; returns false if the kernel refused it or would block. */
  writePacket(packet: Uint8Array): boolean {
    this.checkOpen();
    const { write } = libc();
    const put = write(this.fd, packet, packet.length);
    if (put < 0) {
      this.stats.txErrors++;
      return false;
    }
    this.stats.txPackets++;
    this.stats.txBytes += put;
    return true;
  }

  /**
   * The agent's PacketSink shape: writes one forwarded packet. A TUN device is layer 3, so the kernel routes
   * the packet by its destination address; `nextHop` is not used (a next hop other than the destination
   * needs a route in the kernel, e.g. policy routing).
   */
  send(packet: Uint8Array, _nextHop: number): void {
    this.writePacket(packet);
  }

  /**
   * Calls `cb()` on the event loop whenever the queue has packets (level-triggered: it is called again as
   * long as packets remain, so a callback that reads one bounded batch is fair to other work). If the device
   * fails (deleted, its namespace gone) `cb(error)` is called once with a TunError('TUN_READ') and the
   * listener stops. One listener per queue; returns a function that stops it. With `ref` false the listener
   * does not keep the process alive by itself.
   */
  onReadable(cb: (error?: TunError) => void, ref = true): () => void {
    this.checkOpen();
    if (this.poll) throw new TunError('BAD_ARGUMENT', `queue ${this.index} already has a readable listener`);
    const handle = pollReadable(this.fd, (status) => {
      if (status >= 0) return cb();
      this.stopPoll(handle);
      cb(new TunError('TUN_READ', `polling TUN queue ${this.index} failed`, -status));
    });
    if (!ref) handle.unref();
    this.poll = handle;
    return () => this.stopPoll(handle);
  }

  /**
   * Resolves true once the queue has a packet to read (at once if it has one now) or has failed (the next
   * readBatch then throws TunError('TUN_READ') with the reason), or false after
   * `timeoutMs` (no timeout when omitted) or when the queue is closed meanwhile. Like onReadable, one
   * waiter per queue at a time (libuv allows one poll handle per fd).
   */
  readable(timeoutMs?: number): Promise<boolean> {
    this.checkOpen();
    if (this.poll) throw new TunError('BAD_ARGUMENT', `queue ${this.index} already has a readable listener`);
    return new Promise((resolve) => {
      let timer: NodeJS.Timeout | undefined;
      let done = false;
      const finish = (ok: boolean): void => {
        if (done) return;
        done = true;
        if (timer) clearTimeout(timer);
        this.stopPoll(handle);
        this.abortWait = null;
        resolve(ok);
      };
      const handle = pollReadable(this.fd, () => finish(true));  // status < 0: readBatch reports it
      this.poll = handle;
      this.abortWait = () => finish(false);
      if (timeoutMs !== undefined) timer = setTimeout(() => finish(false), timeoutMs);
    });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.abortWait) this.abortWait();
    if (this.poll) this.stopPoll(this.poll);
    if (this.owned) libc().close(this.fd);
  }

  get isClosed(): boolean {
    return this.closed;
  }

  private stopPoll(handle: PollHandle): void {
    if (this.poll !== handle) return;
    this.poll = null;
    handle.stop();
    handle.close();
  }

  private checkOpen(): void {
    if (this.closed) throw new TunError('TUN_CLOSED', `TUN queue ${this.index} is closed`);
  }
}

/** A TUN device with one or more queues. Queue 0's batch methods are repeated here for the common case. */
export class TunDevice {
  private constructor(
    readonly name: string,
    readonly queues: readonly TunQueue[],
    readonly multiQueue: boolean,
  ) {}

  /**
   * Attaches to TUN device `name` (creating it, non-persistent, if it does not exist) with `queues` fds.
   * A pattern like "wlb%d" lets the kernel pick a free name; `device.name` is the name it picked.
   * Throws TunError('TUN_UNAVAILABLE') when /dev/net/tun cannot be opened (not root, no module), and
   * TunError('TUN_ATTACH') when the kernel refuses the name or the flags.
   */
  static open(name: string, opts: TunOpenOptions = {}): TunDevice {
    const queues = opts.queues ?? 1;
    if (!Number.isInteger(queues) || queues < 1 || queues > 256) {
      throw new TunError('BAD_ARGUMENT', `queues must be 1..256, got ${queues}`);
    }
    if (Buffer.byteLength(name) === 0 || Buffer.byteLength(name) >= IFNAMSIZ || /[\s/]/.test(name)) {
      throw new TunError('BAD_ARGUMENT', `bad interface name '${name}' (1..15 bytes, no '/' or spaces)`);
    }
    const maxPacket = opts.maxPacket ?? DEFAULT_MAX_PACKET;
    if (!Number.isInteger(maxPacket) || maxPacket < 68 || maxPacket > 65535) {
      throw new TunError('BAD_ARGUMENT', `maxPacket must be 68..65535, got ${maxPacket}`);
    }
    const open = (): TunDevice => {
      let multi = opts.multiQueue ?? queues > 1;
      if (queues > 1 && !multi) throw new TunError('BAD_ARGUMENT', 'several queues need multiQueue');
      const fds: number[] = [];
      let actual = name;
      try {
        for (let q = 0; q < queues; q++) {
          let got: { fd: number; name: string };
          try {
            got = attachFd(actual, multi);
          } catch (err) {
            // A persistent device fixes IFF_MULTI_QUEUE at creation; with one queue try the other kind once.
            const retry =
              err instanceof TunError && err.errno === EINVAL && queues === 1 && opts.multiQueue === undefined;
            if (!retry) throw err;
            multi = !multi;
            got = attachFd(actual, multi);
          }
          fds.push(got.fd);
          actual = got.name; // later queues attach to the device the first one got
        }
      } catch (err) {
        for (const fd of fds) libc().close(fd);
        throw err;
      }
      return new TunDevice(
        actual,
        fds.map((fd, i) => TunQueue.fromOpened(fd, i, maxPacket)),
        multi,
      );
    };
    return opts.netns === undefined ? open() : inNetns(opts.netns, open);
  }

  readBatch(into: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, max: number, stride?: number): number {
    return this.queues[0]!.readBatch(into, offsets, lengths, max, stride);
  }

  writeBatch(from: Uint8Array, offsets: Uint32Array, lengths: Uint32Array, count: number): number {
    return this.queues[0]!.writeBatch(from, offsets, lengths, count);
  }

  onReadable(cb: (error?: TunError) => void, ref = true): () => void {
    return this.queues[0]!.onReadable(cb, ref);
  }

  /** Sum of every queue's counters. */
  stats(): TunStats {
    const sum: TunStats = { rxPackets: 0, rxBytes: 0, rxOversize: 0, txPackets: 0, txBytes: 0, txErrors: 0 };
    for (const q of this.queues) {
      for (const k of Object.keys(sum) as Array<keyof TunStats>) sum[k] += q.stats[k];
    }
    return sum;
  }

  /** Closes every queue. A non-persistent device disappears with its last fd (and its addresses/routes). */
  close(): void {
    for (const q of this.queues) q.close();
  }
}

/** Attaches one fd; returns it with the name the kernel gave the device ("tun%d" patterns resolve). */
function attachFd(name: string, multiQueue: boolean): { fd: number; name: string } {
  const c = libc();
  const fd = c.open('/dev/net/tun', O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw new TunError('TUN_UNAVAILABLE', 'cannot open /dev/net/tun', c.errno());
  const ifr = new Uint8Array(IFREQ_SIZE);
  new TextEncoder().encodeInto(name, ifr.subarray(0, IFNAMSIZ - 1));
  const flags = IFF_TUN | IFF_NO_PI | (multiQueue ? IFF_MULTI_QUEUE : 0);
  new DataView(ifr.buffer).setUint16(IFNAMSIZ, flags, true);
  if (c.ioctl(fd, TUNSETIFF, ifr) < 0) {
    const e = c.errno();
    c.close(fd);
    const code = e === EPERM ? 'TUN_UNAVAILABLE' : 'TUN_ATTACH';
    throw new TunError(code, `TUNSETIFF ${name}${multiQueue ? ' (multi-queue)' : ''}`, e);
  }
  const end = ifr.indexOf(0);
  return { fd, name: new TextDecoder().decode(ifr.subarray(0, end < 0 || end > IFNAMSIZ ? IFNAMSIZ : end)) };
}

/**
 * Runs `fn` with the calling thread inside network namespace `netns` (as made by `ip netns add`), then
 * returns to the original one. Only this thread moves (setns(CLONE_NEWNET) is per-thread); `fn` must be
 * synchronous. Fds opened inside keep their namespace after the switch back.
 */
export function inNetns<T>(netns: string, fn: () => T): T {
  if (!/^[A-Za-z0-9_.-]+$/.test(netns)) throw new TunError('BAD_ARGUMENT', `bad netns name '${netns}'`);
  const c = libc();
  let target: number;
  let home: number;
  try {
    home = openSync('/proc/thread-self/ns/net', 'r');
  } catch (err) {
    throw new TunError('TUN_NETNS', `cannot open own netns: ${(err as Error).message}`);
  }
  try {
    target = openSync(`/run/netns/${netns}`, 'r');
  } catch (err) {
    closeSync(home);
    throw new TunError('TUN_NETNS', `no network namespace '${netns}': ${(err as Error).message}`);
  }
  try {
    if (c.setns(target, CLONE_NEWNET) < 0) throw new TunError('TUN_NETNS', `setns ${netns}`, c.errno());
    try {
      return fn();
    } finally {
      if (c.setns(home, CLONE_NEWNET) < 0) {
        // Staying in the wrong namespace would silently misroute everything after: fail hard.
        throw new TunError('TUN_NETNS', 'cannot return to the original netns', c.errno());
      }
    }
  } finally {
    closeSync(target);
    closeSync(home);
  }
}

/** Why TUN cannot be used here, or null when it can (root, /dev/net/tun present and openable). */
export function tunUnavailableReason(): string | null {
  if (process.platform !== 'linux') return `TUN needs Linux (platform is ${process.platform})`;
  try {
    const c = libc();
    const fd = c.open('/dev/net/tun', O_RDWR | O_CLOEXEC);
    if (fd < 0) return `cannot open /dev/net/tun: ${errnoName(c.errno())}`;
    c.close(fd);
  } catch (err) {
    return `cannot load libc through koffi: ${(err as Error).message}`;
  }
  return hasNetAdmin() ? null : 'no CAP_NET_ADMIN (run as root): TUNSETIFF and ip netns need it';
}

const CAP_NET_ADMIN = 12n;

function hasNetAdmin(): boolean {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
    return m !== null && ((BigInt('0x' + m[1]) >> CAP_NET_ADMIN) & 1n) === 1n;
  } catch {
    return false;
  }
}
