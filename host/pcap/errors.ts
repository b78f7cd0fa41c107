// Typed errors of the capture codec. Every reader error names the byte offset in the file where the bad
// record (or block) starts, so a user can look at it with a hex dump.

export type PcapErrorCode =
  | 'BAD_MAGIC' // not a pcap or pcapng file
  | 'TRUNCATED' // the file ends inside a header or a record
  | 'CORRUPT' // a length or field that cannot be right
  | 'UNSUPPORTED' // a valid file that this codec does not handle (e.g. pcapng major version 2)
  | 'CLOSED' // writer used after close
  | 'BAD_ARGUMENT'; // a caller's mistake (e.g. record longer than the buffer it claims to come from)

export class PcapError extends Error {
  override readonly name = 'PcapError';
  constructor(
    readonly code: PcapErrorCode,
    message: string,
    /** Byte offset in the file of the record/block that failed, or -1 when it does not apply. */
    readonly offset: number = -1,
    readonly path?: string,
  ) {
    super(
      (path !== undefined ? `${path}: ` : '') + message + (offset >= 0 ? ` (at byte offset ${offset})` : ''),
    );
  }
}
