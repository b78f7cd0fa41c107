// Names of the firmware counters, in index order (assembly/counters.ts). One flat u64 array in wasm memory;
// test/host/agent/abi.test.ts checks names and indices against the AssemblyScript source.

export const COUNTER_NAMES = [
  'PACKETS',
  'BYTES',
  'FIXED_HITS',
  'WILDCARD_HITS',
  'MISSES',
  'FORWARDED',
  'TO_MANAGER',
  'HOLD',
  'COPY',
  'DROPPED',
  'DROP_ACTION',
  'DROP_DISPATCH_ZERO',
  'DROP_ADVERTISED',
  'MALFORMED_DESCRIPTOR',
  'MALFORMED_TRUNCATED',
  'MALFORMED_VERSION',
  'MALFORMED_IHL',
  'MALFORMED_TOTAL_LENGTH',
  'MALFORMED_L4_HEADER',
  'FRAGMENTS',
  'NAT_APPLIED',
  'SEQ_ADJUSTED',
  'DISPATCHED',
  'INTEREST_MATCHES',
  'INTEREST_SUPPRESSED',
  'FIXED_OCCUPANCY',
  'FIXED_INSTALLS',
  'FIXED_UPDATES',
  'FIXED_DELETES',
  'FIXED_EXPIRED',
  'FIXED_TABLE_FULL',
  'FIXED_NO_WILDCARD',
  'UNSUPPORTED_ACTION',
  'BAD_ARGUMENT',
  'EXT_OCCUPANCY',
  'WILDCARD_OCCUPANCY',
  'WILDCARD_INSTALLS',
  'WILDCARD_UPDATES',
  'WILDCARD_DELETES',
  'WILDCARD_EXPIRED',
  'WILDCARD_TABLE_FULL',
  'WILDCARD_PATTERNS',
  'ADVERTISED_PREFIXES',
  'INFO_TABLE_FULL',
  'FIXED_MAX_DISPLACEMENT',
  'ICMP_TRANSLATED',
] as const;

export type CounterName = (typeof COUNTER_NAMES)[number];

/** Index of each counter in the u64 array. */
export const COUNTER_INDEX: Readonly<Record<CounterName, number>> = Object.fromEntries(
  COUNTER_NAMES.map((n, i) => [n, i]),
) as Record<CounterName, number>;

/** Gauges (current values, not monotonic counts) among the counters. */
export const COUNTER_GAUGES: ReadonlySet<CounterName> = new Set<CounterName>([
  'FIXED_OCCUPANCY',
  'EXT_OCCUPANCY',
  'WILDCARD_OCCUPANCY',
  'WILDCARD_PATTERNS',
  'ADVERTISED_PREFIXES',
  'FIXED_MAX_DISPLACEMENT',
]);
