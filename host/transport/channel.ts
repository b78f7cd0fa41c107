// A service-message endpoint over a ControlSocket: numbers and signs what it sends, splits coalesced
// datagrams, decodes and verifies what it receives, and counts every refusal by its code.
import {
  decodeMessage,
  encodeNumbered,
  encodeNumberedInto,
  HEADER_BYTES,
  ProtocolError,
  type Keyring,
  type DecodeOptions,
  type EncodeOptions,
  type SecurityVerifier,
  type ServiceMessage,
} from '../protocol/index.ts';
import { initialSequence } from '../protocol/index.ts';
import { MAX_DATAGRAM, type ControlSocket, type Endpoint } from './udp.ts';

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
/** A message as the caller builds it; the channel fills in sender and sequence. */
export type Outgoing = DistributiveOmit<ServiceMessage, 'sender' | 'sequence'>;

export type MessageHandler = (msg: ServiceMessage, from: Endpoint) => void;
export type RefusalHandler = (err: ProtocolError, from: Endpoint) => void;
export type HandlerErrorHandler = (err: unknown, msg: ServiceMessage, from: Endpoint) => void;

export interface ChannelOptions {
  socket: ControlSocket;
  /** Our identity on the wire (header sender field). */
  sender: number;
  /** Sign outgoing messages with this keyring's send key. */
  keyring?: Keyring | undefined;
  /** Verify incoming messages (and drop replays). */
  verifier?: SecurityVerifier | undefined;
}

/** Room a datagram must have left for the next message to go into it (else a new one starts). */
const TYPICAL_MESSAGE_ROOM = 2048;

export class ServiceChannel {
  readonly socket: ControlSocket;
  readonly sender: number;
  private sequence: number;
  private readonly keyring: Keyring | undefined;
  private readonly verifier: SecurityVerifier | undefined;
  private readonly encodeOptions: EncodeOptions | undefined;
  private readonly decodeOptions: DecodeOptions | undefined;
  private handler: MessageHandler = () => undefined;
  private refusalHandler: RefusalHandler = () => undefined;
  private handlerErrorHandler: HandlerErrorHandler = () => undefined;
  readonly stats = {
    sent: 0,
    received: 0,
    /** Messages by type (`wasmlb_control_messages_{sent,received}_total{type}`). */
    sentByType: {} as Record<string, number>,
    receivedByType: {} as Record<string, number>,
    refused: 0,
    refusedByCode: {} as Record<string, number>,
    handlerErrors: 0,
  };

  constructor(opts: ChannelOptions) {
    this.socket = opts.socket;
    this.sender = opts.sender >>> 0;
    this.keyring = opts.keyring;
    this.verifier = opts.verifier;
    this.encodeOptions = opts.keyring ? { security: opts.keyring } : undefined;
    this.decodeOptions = opts.verifier ? { security: opts.verifier } : undefined;
    // Receivers drop sequence numbers they have seen: start above anything a previous run used.
    this.sequence = initialSequence();
    opts.socket.onDatagram((d, from) => this.receive(d, from));
  }

  onMessage(handler: MessageHandler): void {
    this.handler = handler;
  }

  onRefusal(handler: RefusalHandler): void {
    this.refusalHandler = handler;
  }

  /** Errors a message handler threw: counted and reported here, so one message cannot stop the process. */
  onHandlerError(handler: HandlerErrorHandler): void {
    this.handlerErrorHandler = handler;
  }

  /**
   * Encodes `msg` (next sequence number, signed when configured) and queues it for `to`: written
   * straight into the datagram being built for `to`, no per-message buffer.
   */
  send(msg: Outgoing, to: Endpoint): void {
    const socket = this.socket;
    const sequence = ++this.sequence;
    this.stats.sent++;
    this.stats.sentByType[msg.type] = (this.stats.sentByType[msg.type] ?? 0) + 1;
    // Start the next datagram early rather than fail an encode at the boundary (an error costs a
    // stack trace): nearly every message is smaller than this.
    let p = socket.pendingFor(to, TYPICAL_MESSAGE_ROOM);
    let len: number;
    try {
      len = encodeNumberedInto(msg, this.sender, sequence, p.buf, p.bytes, this.encodeOptions);
    } catch (e) {
      if (!(e instanceof ProtocolError) || e.code !== 'BUFFER_TOO_SMALL') throw e;
      if (p.bytes === 0) {
        // Larger than any shared datagram: encoded alone (or refused, TOO_LARGE) as before.
        socket.send(encodeNumbered(msg, this.sender, sequence, this.encodeOptions), to);
        return;
      }
      p = socket.pendingFor(to, MAX_DATAGRAM);
      try {
        len = encodeNumberedInto(msg, this.sender, sequence, p.buf, p.bytes, this.encodeOptions);
      } catch (e2) {
        if (!(e2 instanceof ProtocolError) || e2.code !== 'BUFFER_TOO_SMALL') throw e2;
        socket.send(encodeNumbered(msg, this.sender, sequence, this.encodeOptions), to);
        return;
      }
    }
    socket.commit(p, len);
  }

  /** Encodes once for several destinations (multicast group plus unicast list). */
  sendMany(msg: Outgoing, to: readonly Endpoint[]): void {
    if (to.length === 0) return;
    const bytes = this.encode(msg);
    for (const ep of to) this.socket.send(bytes, ep);
  }

  encode(msg: Outgoing): Buffer {
    const sequence = ++this.sequence;
    this.stats.sent++;
    this.stats.sentByType[msg.type] = (this.stats.sentByType[msg.type] ?? 0) + 1;
    return encodeNumbered(msg, this.sender, sequence, this.encodeOptions);
  }

  /** Splits a datagram into its messages (each header carries the message's total length). */
  private receive(datagram: Buffer, from: Endpoint): void {
    let off = 0;
    while (off < datagram.length) {
      const left = datagram.length - off;
      const declared = left >= 8 ? datagram.readUInt32BE(off + 4) : 0;
      // A length that cannot be right makes the rest of the datagram unreadable: decode what is
      // left as one message so the refusal carries the decoder's own code.
      const len = declared >= HEADER_BYTES && declared <= left ? declared : left;
      // A plain view (a Buffer view costs more to make); a lone message is the datagram itself.
      const bytes = len === datagram.length ? datagram : new Uint8Array(datagram.buffer, datagram.byteOffset + off, len);
      off += len;
      let msg: ServiceMessage;
      try {
        msg = decodeMessage(bytes, this.decodeOptions);
      } catch (e) {
        // anything else a decoder throws is a decoder bug, but still a datagram we refuse, not a crash
        const err = e instanceof ProtocolError ? e : new ProtocolError('INTERNAL', e instanceof Error ? e.message : String(e));
        this.stats.refused++;
        this.stats.refusedByCode[err.code] = (this.stats.refusedByCode[err.code] ?? 0) + 1;
        this.refusalHandler(err, from);
        continue;
      }
      this.stats.received++;
      this.stats.receivedByType[msg.type] = (this.stats.receivedByType[msg.type] ?? 0) + 1;
      try {
        this.handler(msg, from);
      } catch (e) {
        this.stats.handlerErrors++;
        this.handlerErrorHandler(e, msg, from);
      }
    }
  }

  close(): Promise<void> {
    return this.socket.close();
  }
}
