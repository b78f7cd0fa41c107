// Mirror of assembly/status.ts: every firmware entry point returns one of these codes.
// test/host/agent/abi.test.ts parses the AssemblyScript source and checks both agree.

export const Status = {
  OK: 0,
  TABLE_FULL: 1,
  NO_WILDCARD: 2,
  UNSUPPORTED_ACTION: 3,
  BAD_ARGUMENT: 4,
  NOT_FOUND: 5,
  NO_MEMORY: 6,
  NOT_INITIALIZED: 7,
  PATTERN_LIMIT: 8,
} as const;

export type StatusName = keyof typeof Status;
export type StatusCode = (typeof Status)[StatusName];

const NAMES: ReadonlyMap<number, StatusName> = new Map(
  (Object.keys(Status) as StatusName[]).map((n) => [Status[n], n]),
);

export function statusName(code: number): StatusName | `UNKNOWN_${number}` {
  return NAMES.get(code) ?? `UNKNOWN_${code}`;
}

/** Thrown by the host wrapper when the firmware refuses a call that must not fail (init, bad batch). */
export class FirmwareError extends Error {
  readonly code: StatusName | `UNKNOWN_${number}`;
  readonly status: number;
  constructor(status: number, message: string) {
    super(`${message}: ${statusName(status)}`);
    this.name = 'FirmwareError';
    this.status = status;
    this.code = statusName(status);
  }
}
