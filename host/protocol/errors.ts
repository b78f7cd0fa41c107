// One error class for everything the protocol refuses, with a machine-readable code.

export type ProtocolErrorCode =
  // datagram shape
  | 'TOO_SHORT'
  | 'TOO_LARGE'
  | 'BAD_VERSION'
  | 'UNKNOWN_MESSAGE_TYPE'
  | 'LENGTH_MISMATCH'
  | 'TRUNCATED_SEGMENT'
  | 'BAD_SEGMENT_LENGTH'
  | 'BAD_FIELD'
  | 'DUPLICATE_SEGMENT'
  | 'MISSING_SEGMENT'
  | 'ORPHAN_ACTION_LIST'
  | 'SECURITY_MISPLACED'
  | 'SECURITY_NOT_ALLOWED'
  // a required segment the receiver cannot process: the whole message is dropped (see `segments`)
  | 'UNPROCESSABLE_SEGMENT'
  // security verdicts (a receiver counts each separately)
  | 'UNAUTHENTICATED'
  | 'FORGED'
  | 'WRONG_KEY'
  | 'REPLAYED'
  // encoding
  | 'BUFFER_TOO_SMALL'
  // the decoder failed in a way it should not have (a bug): the receiver counts and drops the datagram
  | 'INTERNAL';

/** A required segment that was refused; the offset is from the start of the datagram. */
export interface DeniedSegment {
  /** Segment type code (15 bits, without the required flag). */
  segmentType: number;
  /** Byte offset of the segment header in the refused datagram. */
  offset: number;
  /** A `DenyReason` value. */
  reason: number;
}

export interface ProtocolErrorDetails {
  /** Byte offset in the datagram where the problem was found. */
  offset?: number;
  /** Field that is wrong (encoding: a path like `fixed[0].affinity.srcPort`). */
  field?: string;
  /** For UNPROCESSABLE_SEGMENT: every refused required segment. */
  segments?: DeniedSegment[];
  /** Header fields, when the header was readable: lets a receiver answer with an update-deny. */
  messageType?: number;
  sender?: number;
  sequence?: number;
}

export class ProtocolError extends Error {
  override readonly name = 'ProtocolError';
  readonly code: ProtocolErrorCode;
  readonly offset: number | undefined;
  readonly field: string | undefined;
  readonly segments: DeniedSegment[] | undefined;
  messageType: number | undefined;
  sender: number | undefined;
  sequence: number | undefined;

  /** The message without the field path, kept so an encoder can re-prefix the path. */
  readonly #detail: string;

  constructor(code: ProtocolErrorCode, message: string, details: ProtocolErrorDetails = {}) {
    super(details.field === undefined ? message : `${details.field}: ${message}`);
    this.#detail = message;
    this.code = code;
    this.offset = details.offset;
    this.field = details.field;
    this.segments = details.segments;
    this.messageType = details.messageType;
    this.sender = details.sender;
    this.sequence = details.sequence;
  }

  /** Same error with `prefix` prepended to the field path (encoder: which entry was wrong). */
  withFieldPrefix(prefix: string): ProtocolError {
    return new ProtocolError(this.code, this.#detail, {
      offset: this.offset,
      field: `${prefix}${this.field ?? ''}`,
      segments: this.segments,
    });
  }
}
