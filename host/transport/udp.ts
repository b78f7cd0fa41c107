// The control-plane wire: UDP sockets between forwarding agents and service managers.
// Several service messages may travel in one datagram, back to back (each carries its own total
// length), so a burst of new flows costs a few syscalls instead of one per message. A queued
// message is flushed at the end of the current event-loop turn or when the datagram is full.
import dgram from 'node:dgram';

export interface Endpoint {
  address: string;
  port: number;
}

export interface MulticastOptions {
  group: string;
  /** Local interface address used to join the group and to send to it (e.g. 127.0.0.1). */
  interface: string;
  ttl?: number;
}

export interface ControlSocketOptions {
  bind: Endpoint;
  /** Join this group on `interface` (receivers) and send multicast through it (senders). */
  multicast?: MulticastOptions;
  /** Allow several processes to bind the same port (multicast listeners). */
  reuseAddr?: boolean;
  /** Hop limit of multicast this socket sends (a sender that joins no group: a manager). */
  multicastTtl?: number;
}

const endpointKey = (e: Endpoint): string => `${e.address}:${e.port}`;

export type DatagramHandler = (datagram: Buffer, from: Endpoint) => void;

export class TransportError extends Error {
  constructor(
    readonly code: 'BIND_FAILED' | 'MESSAGE_TOO_LARGE' | 'CLOSED',
    message: string,
  ) {
    super(message);
    this.name = 'TransportError';
  }
}

/** Largest datagram we build by coalescing; below 64 KiB so the protocol's limit always holds. */
export const MAX_DATAGRAM = 60 * 1024;

/**
 * The datagram being built for one destination: messages are written (encoded, or copied) straight
 * into `buf` at `bytes`, then `commit`ted. `buf` is a MAX_DATAGRAM scratch buffer, reused after
 * the flush copies the datagram out.
 */
export interface PendingDatagram {
  readonly to: Endpoint;
  buf: Buffer;
  bytes: number;
  /** Messages in it. */
  count: number;
}

export class ControlSocket {
  private handler: DatagramHandler | null = null;
  private readonly pending = new Map<string, PendingDatagram>();
  /** Scratch datagram buffers no pending datagram holds. */
  private readonly spare: Buffer[] = [];
  /** The endpoint object (and its datagram) of the last send: a burst to one peer skips the key. */
  private lastTo: Endpoint | null = null;
  private lastPending: PendingDatagram | null = null;
  private lastAddress = '';
  private lastPort = -1;
  private flushScheduled = false;
  private closed = false;
  /** Datagrams and bytes sent/received, for metrics. */
  readonly stats = { datagramsOut: 0, datagramsIn: 0, bytesOut: 0, bytesIn: 0, sendErrors: 0 };

  private constructor(
    private readonly socket: dgram.Socket,
    readonly local: Endpoint,
  ) {
    socket.on('message', (msg, rinfo) => {
      this.stats.datagramsIn++;
      this.stats.bytesIn += msg.length;
      this.handler?.(msg, { address: rinfo.address, port: rinfo.port });
    });
    // A send error (e.g. ICMP port unreachable surfaced as ECONNREFUSED) must not kill the process.
    socket.on('error', () => {
      this.stats.sendErrors++;
    });
  }

  static async open(opts: ControlSocketOptions): Promise<ControlSocket> {
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr: opts.reuseAddr ?? Boolean(opts.multicast) });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: Error): void => reject(new TransportError('BIND_FAILED', `cannot bind ${opts.bind.address}:${opts.bind.port}: ${err.message}`));
      socket.once('error', onError);
      socket.bind(opts.bind.port, opts.bind.address, () => {
        socket.off('error', onError);
        resolve();
      });
    });
    if (opts.multicast) {
      const m = opts.multicast;
      socket.setMulticastInterface(m.interface);
      socket.setMulticastLoopback(true);
      socket.setMulticastTTL(m.ttl ?? 1);
      if (opts.bind.address === '0.0.0.0' || opts.bind.address === m.group) socket.addMembership(m.group, m.interface);
    }
    if (opts.multicastTtl !== undefined) socket.setMulticastTTL(opts.multicastTtl);
    socket.setRecvBufferSize(8 * 1024 * 1024);
    socket.setSendBufferSize(8 * 1024 * 1024);
    const addr = socket.address();
    return new ControlSocket(socket, { address: addr.address, port: addr.port });
  }

  onDatagram(handler: DatagramHandler): void {
    this.handler = handler;
  }

  /** Sends one datagram now. */
  sendNow(datagram: Buffer, to: Endpoint): void {
    if (this.closed) return;
    if (datagram.length > 65507) throw new TransportError('MESSAGE_TOO_LARGE', `datagram of ${datagram.length} bytes`);
    this.stats.datagramsOut++;
    this.stats.bytesOut += datagram.length;
    this.socket.send(datagram, to.port, to.address, (err) => {
      if (err) this.stats.sendErrors++;
    });
  }

  /** Queues a complete service message for `to`; messages to one endpoint share datagrams. */
  send(message: Uint8Array, to: Endpoint): void {
    if (this.closed) return;
    if (message.length > MAX_DATAGRAM) {
      // Too big to share a datagram: flush what is queued for `to` (order kept), send it alone.
      const p = this.pending.get(endpointKey(to));
      if (p) this.flushOne(p);
      this.sendNow(Buffer.from(message.buffer, message.byteOffset, message.length), to);
      return;
    }
    const p = this.pendingFor(to, message.length);
    p.buf.set(message, p.bytes);
    this.commit(p, message.length);
  }

  /**
   * The datagram being built for `to`, with room for `room` more bytes when that fits in a
   * datagram at all (a fuller one is flushed first). Write a message at `buf[bytes..]`, then `commit`.
   */
  pendingFor(to: Endpoint, room = 0): PendingDatagram {
    // Same object and still the same address (an endpoint object changed in place gets its own datagram).
    let p: PendingDatagram | undefined | null =
      this.lastTo === to && to.port === this.lastPort && to.address === this.lastAddress ? this.lastPending : null;
    if (!p) {
      const k = endpointKey(to);
      p = this.pending.get(k);
      if (!p) {
        p = { to: { address: to.address, port: to.port }, buf: this.spare.pop() ?? Buffer.allocUnsafe(MAX_DATAGRAM), bytes: 0, count: 0 };
        this.pending.set(k, p);
      }
      this.lastTo = to;
      this.lastAddress = to.address;
      this.lastPort = to.port;
      this.lastPending = p;
    }
    if (p.bytes > 0 && p.bytes + room > MAX_DATAGRAM) this.flushOne(p);
    return p;
  }

  /** Counts `len` bytes written at `p.bytes` as one more message of the datagram. */
  commit(p: PendingDatagram, len: number): void {
    p.bytes += len;
    p.count++;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  flush(): void {
    this.flushScheduled = false;
    for (const p of this.pending.values()) {
      this.flushOne(p);
      this.spare.push(p.buf);
    }
    this.pending.clear();
    this.lastTo = null;
    this.lastPending = null;
  }

  /** Sends what `p` holds now (a right-sized copy: the scratch buffer is written again at once). */
  flushOne(p: PendingDatagram): void {
    if (p.bytes === 0) return;
    const datagram = Buffer.allocUnsafe(p.bytes);
    p.buf.copy(datagram, 0, 0, p.bytes);
    p.bytes = 0;
    p.count = 0;
    this.sendNow(datagram, p.to);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    await new Promise<void>((resolve) => this.socket.close(() => resolve()));
  }
}
