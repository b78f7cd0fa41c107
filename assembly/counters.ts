// Counters at fixed indices in one flat u64 array (Katran style). The host names them in
// host/agent/counters.ts; test/host/agent/abi.test.ts checks names and indices agree.
// Keep one `NAME = index,` per line and COUNT last.

export const enum Counter {
  PACKETS = 0,
  BYTES = 1,
  FIXED_HITS = 2,
  WILDCARD_HITS = 3,
  MISSES = 4,
  FORWARDED = 5,
  TO_MANAGER = 6,
  HOLD = 7,
  COPY = 8,
  DROPPED = 9,
  DROP_ACTION = 10,
  DROP_DISPATCH_ZERO = 11,
  DROP_ADVERTISED = 12,
  MALFORMED_DESCRIPTOR = 13,
  MALFORMED_TRUNCATED = 14,
  MALFORMED_VERSION = 15,
  MALFORMED_IHL = 16,
  MALFORMED_TOTAL_LENGTH = 17,
  MALFORMED_L4_HEADER = 18,
  FRAGMENTS = 19,
  NAT_APPLIED = 20,
  SEQ_ADJUSTED = 21,
  DISPATCHED = 22,
  INTEREST_MATCHES = 23,
  INTEREST_SUPPRESSED = 24,
  FIXED_OCCUPANCY = 25,
  FIXED_INSTALLS = 26,
  FIXED_UPDATES = 27,
  FIXED_DELETES = 28,
  FIXED_EXPIRED = 29,
  FIXED_TABLE_FULL = 30,
  FIXED_NO_WILDCARD = 31,
  UNSUPPORTED_ACTION = 32,
  BAD_ARGUMENT = 33,
  EXT_OCCUPANCY = 34,
  WILDCARD_OCCUPANCY = 35,
  WILDCARD_INSTALLS = 36,
  WILDCARD_UPDATES = 37,
  WILDCARD_DELETES = 38,
  WILDCARD_EXPIRED = 39,
  WILDCARD_TABLE_FULL = 40,
  WILDCARD_PATTERNS = 41,
  ADVERTISED_PREFIXES = 42,
  INFO_TABLE_FULL = 43,
  FIXED_MAX_DISPLACEMENT = 44,
  ICMP_TRANSLATED = 45,
  COUNT = 46,
}

/** Flat u64 array in static memory: its address is a constant, so `bump(C)` compiles to one load/add/store
 *  with an immediate offset. */
export const COUNTERS: usize = memory.data(64 * 8, 64);

// @ts-ignore: decorator
@inline export function bump(index: i32): void {
  const a = COUNTERS + (<usize>index << 3);
  store<u64>(a, load<u64>(a) + 1);
}

// @ts-ignore: decorator
@inline export function bumpBy(index: i32, n: u64): void {
  const a = COUNTERS + (<usize>index << 3);
  store<u64>(a, load<u64>(a) + n);
}

// @ts-ignore: decorator
@inline export function setCounter(index: i32, v: u64): void {
  store<u64>(COUNTERS + (<usize>index << 3), v);
}
