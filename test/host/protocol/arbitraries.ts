// fast-check generators of valid ServiceMessage objects, shaped exactly like the decoder's output
// (every optional key present, undefined when absent) so that decode(encode(m)) can be compared strictly.
import fc from 'fast-check';
import type {
  Action,
  AffinityIdentifier,
  FixedAffinity,
  FixedEntry,
  HeartbeatData,
  IdentityInfo,
  ReplicationEntry,
  ResyncMarker,
  ServiceMessage,
  WildcardAffinity,
  WildcardEntry,
} from '../../../host/protocol/index.ts';

/** fc.record with ordinary prototypes, like the decoder's objects (fast-check defaults to null prototypes). */
function rec<T extends object>(model: { [K in keyof T]: fc.Arbitrary<T[K]> }): fc.Arbitrary<T> {
  return fc.record(model, { noNullPrototype: true }) as unknown as fc.Arbitrary<T>;
}

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const seq = fc.oneof(fc.integer({ min: 0, max: 1000 }), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }));
const bytes = (min: number, max: number): fc.Arbitrary<Buffer> =>
  fc.uint8Array({ minLength: min, maxLength: max }).map((a) => Buffer.from(a));
const opt = <T>(a: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> => fc.option(a, { nil: undefined });

export const wildcardAffinity: fc.Arbitrary<WildcardAffinity> = rec({
  protocol: u8,
  srcAddr: u32,
  srcMask: u32,
  dstAddr: u32,
  dstMask: u32,
  srcPort: u16,
  dstPort: u16,
  flags: u16,
  ttlMs: u32,
});

export const fixedAffinity: fc.Arbitrary<FixedAffinity> = rec({
  protocol: u8,
  srcAddr: u32,
  dstAddr: u32,
  srcPort: u16,
  dstPort: u16,
  flags: u16,
  ttlMs: u32,
});

const identifier: fc.Arbitrary<AffinityIdentifier> = rec({
  protocol: u8,
  srcAddr: u32,
  dstAddr: u32,
  srcPort: u16,
  dstPort: u16,
  flags: u16,
  reason: u32,
});

const identity: fc.Arbitrary<IdentityInfo> = rec({
  addr: u32,
  hostName: fc
    .array(fc.integer({ min: 0x21, max: 0x7e }), { maxLength: 40 })
    .map((cs) => String.fromCharCode(...cs)),
});

export const action: fc.Arbitrary<Action> = fc.oneof(
  rec({ srcAddr: opt(u32), srcPort: opt(u16), dstAddr: opt(u32), dstPort: opt(u16) })
    .filter((n) => n.srcAddr !== undefined || n.srcPort !== undefined || n.dstAddr !== undefined || n.dstPort !== undefined)
    .map((n) => ({ kind: 'nat' as const, ...n })),
  rec({ kind: fc.constant('advertise' as const), addr: u32, mask: opt(u32) }),
  rec({ kind: fc.constant('sequence-adjust' as const), seqDelta: u32, initialSeq: u32, ackDelta: u32, initialAck: u32 }),
  rec({
    kind: fc.constant('interest-criteria' as const),
    addr: u32,
    port: u16,
    mask: u16,
    data: fc.boolean(),
    copy: fc.boolean(),
    hold: fc.boolean(),
  }),
  rec({ kind: fc.constant('dispatch' as const), nextHop: u32 }),
);
const actions = fc.array(action, { maxLength: 4 });

const wildcardEntry: fc.Arbitrary<WildcardEntry> = rec({ affinity: wildcardAffinity, actions });
const fixedEntry: fc.Arbitrary<FixedEntry> = rec({ affinity: fixedAffinity, actions });
const replicationEntry: fc.Arbitrary<ReplicationEntry> = rec({
  affinity: fixedAffinity,
  remainingMs: u32,
  backendAddr: u32,
  backendPort: u16,
  owner: u32,
  actions,
});
const marker: fc.Arbitrary<ResyncMarker> = rec({ resyncId: u32, epoch: u32, entryCount: u32 });
const heartbeat: fc.Arbitrary<HeartbeatData> = rec({
  role: fc.constantFrom('primary' as const, 'backup' as const),
  resyncState: fc.constantFrom('none' as const, 'requested' as const, 'in-progress' as const, 'complete' as const),
  epoch: u32,
  backupPrecedence: u32,
  intervalMs: u32,
});
const typeName = fc.constantFrom(
  'affinity-update-wildcard' as const,
  'affinity-update-fixed' as const,
  'affinity-update-deny' as const,
  'interest-match-wildcard' as const,
  'interest-match-fixed' as const,
  'ip-packet-only' as const,
  'replication' as const,
  'replication-ack' as const,
  'resync-request' as const,
  'resync-data' as const,
  'resync-done' as const,
  'heartbeat' as const,
);

const base = { sender: u32, sequence: seq };

export const serviceMessage: fc.Arbitrary<ServiceMessage> = fc.oneof(
  rec({
    type: fc.constant('affinity-update-wildcard' as const),
    ...base,
    identity: opt(identity),
    servicePrecedence: opt(rec({ value: u32, wildcardFirst: fc.boolean() })),
    backupPrecedence: opt(u32),
    managerInterestData: opt(bytes(0, 24)),
    wildcards: fc.array(wildcardEntry, { minLength: 1, maxLength: 4 }),
  }),
  rec({
    type: fc.constant('affinity-update-fixed' as const),
    ...base,
    identity: opt(identity),
    managerInterestData: opt(bytes(0, 24)),
    agentInterestData: opt(bytes(0, 24)),
    fixed: fc.array(fixedEntry, { minLength: 1, maxLength: 4 }),
    packet: opt(bytes(1, 120)),
  }),
  rec({
    type: fc.constant('affinity-update-deny' as const),
    ...base,
    identity: opt(identity),
    deniedType: typeName,
    deniedSequence: seq,
    denied: fc.array(rec({ segmentType: fc.integer({ min: 0, max: 0x7fff }), offset: u32, reason: u16 }), { maxLength: 4 }),
    wildcards: fc.array(wildcardAffinity, { maxLength: 2 }),
    fixed: fc.array(fixedAffinity, { maxLength: 2 }),
  }),
  rec({
    type: fc.constant('interest-match-wildcard' as const),
    ...base,
    identity: opt(identity),
    identifier,
    wildcard: opt(wildcardAffinity),
    agentInterestData: opt(bytes(0, 24)),
    managerInterestData: opt(bytes(0, 24)),
    packet: opt(bytes(1, 120)),
  }),
  rec({
    type: fc.constant('interest-match-fixed' as const),
    ...base,
    identity: opt(identity),
    identifier,
    agentInterestData: opt(bytes(0, 24)),
    managerInterestData: opt(bytes(0, 24)),
    packet: opt(bytes(1, 120)),
  }),
  rec({ type: fc.constant('ip-packet-only' as const), ...base, packet: bytes(1, 200) }),
  rec({ type: fc.constant('replication' as const), ...base, entries: fc.array(replicationEntry, { minLength: 1, maxLength: 4 }) }),
  rec({ type: fc.constant('replication-ack' as const), ...base, acked: fc.array(seq, { minLength: 1, maxLength: 6 }) }),
  rec({ type: fc.constant('resync-request' as const), ...base, resync: marker }),
  rec({ type: fc.constant('resync-data' as const), ...base, resync: marker, entries: fc.array(replicationEntry, { maxLength: 3 }) }),
  rec({ type: fc.constant('resync-done' as const), ...base, resync: marker }),
  rec({ type: fc.constant('heartbeat' as const), ...base, identity: opt(identity), heartbeat }),
);
