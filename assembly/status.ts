// Status codes returned by every control entry point of the firmware.
// Mirrored in host/agent/status.ts; test/host/agent/abi.test.ts parses this file and checks both agree.
// Keep one `NAME = value,` per line.

export const enum Status {
  OK = 0,
  /** No free slot on the probe path (and no expired slot to reuse), or the load cap is reached. */
  TABLE_FULL = 1,
  /** A fixed affinity whose key matches no installed wildcard affinity in either direction. */
  NO_WILDCARD = 2,
  /** The affinity needs an action this build (or this init) does not support. */
  UNSUPPORTED_ACTION = 3,
  /** A field out of range (TTL too long, advertise on a fixed affinity, batch too large...). */
  BAD_ARGUMENT = 4,
  /** Delete / lookup of a key that is not installed (or already expired). */
  NOT_FOUND = 5,
  /** init: the memory budget cannot hold the requested capacities. */
  NO_MEMORY = 6,
  /** An entry point other than init was called before a successful init. */
  NOT_INITIALIZED = 7,
  /** A wildcard would need a 17th distinct (mask, port, protocol) pattern. */
  PATTERN_LIMIT = 8,
}
