// Prometheus metrics for the agent and the managers.
//
// Invariants:
// - One `Registry` per process (never prom-client's global one), so tests and several roles in one
//   process do not collide.
// - Names carry the `wasmlb_` prefix and base units (seconds, bytes); counters end in `_total`.
// - Labels are low-cardinality: verdict, reason, table, role, state, vip, backend ("addr:port").
//   Never a flow key, never a client address.
// - Values that other objects already count (firmware counter array, manager tables) are *pulled* on
//   scrape through plain getter callbacks: each getter runs at most once per scrape, never per packet.
//   Only distributions (replication lag) are pushed, through the returned `observe…` functions.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { COUNTER_GAUGES } from '../agent/counters.ts';

/** Firmware counters are u64; plain numbers are accepted too. */
export type Count = number | bigint;

export interface CreateRegistryOptions {
  /** Also export Node process metrics (CPU, memory, event loop lag) with the `wasmlb_` prefix. */
  processMetrics?: boolean;
}

/** A fresh registry for one process. */
export function createRegistry(opts: CreateRegistryOptions = {}): Registry {
  const registry = new Registry();
  if (opts.processMetrics === true) collectDefaultMetrics({ register: registry, prefix: 'wasmlb_' });
  return registry;
}

/** `wasmlb_build_info{version,role} 1`; role is the process kind: "agent" or "manager". */
export function buildInfo(registry: Registry, info: { version: string; role: string }): void {
  const g = new Gauge({
    name: 'wasmlb_build_info',
    help: 'Build information; always 1.',
    labelNames: ['version', 'role'] as const,
    registers: [registry],
  });
  g.set({ version: info.version, role: info.role }, 1);
}

// ---------------------------------------------------------------------------------------------
// Agent

/** What the agent host reads from the firmware (and its own queues) once per scrape. */
export interface AgentSnapshot {
  /** Every packet handed to the firmware. */
  received: { packets: Count; bytes: Count };
  /** Packets by verdict: forward, to_manager, hold, copy, drop. */
  verdicts: Record<string, Count>;
  /** Bytes by verdict, when the host sums them while reading verdicts (optional). */
  verdictBytes?: Record<string, Count>;
  /** Dropped packets by reason (firmware drop reasons, lower case, plus host reasons such as hold_overflow). */
  drops: Record<string, Count>;
  /** Lookups that found an entry, by table: fixed, wildcard. */
  hits: Record<string, Count>;
  /** Packets that matched neither a fixed nor a wildcard affinity. */
  misses: Count;
  /** Installs refused because the table was full, by table. */
  tableFull: Record<string, Count>;
  fixedEntries: number;
  fixedCapacity: number;
  wildcardEntries: number;
  wildcardCapacity: number;
  /** Packets waiting in the host's hold queue for a manager's answer (optional). */
  heldPackets?: number;
  /** Packets kept for a resend at a takeover, and packets run again at one (optional). */
  unansweredPackets?: number;
  resentAfterTakeover?: Count;
  /** Every monotonic firmware counter by name, exported raw (`wasmlb_agent_firmware_counter_total{counter}`). */
  counters?: Record<string, Count>;
  /** Every firmware gauge by name (occupancies…), exported raw (`wasmlb_agent_firmware_gauge{gauge}`). */
  gauges?: Record<string, Count>;
}

/**
 * Registers the agent's metrics; `read` is called at most once per scrape.
 *
 * wasmlb_agent_received_packets_total, wasmlb_agent_received_bytes_total,
 * wasmlb_agent_packets_total{verdict}, wasmlb_agent_bytes_total{verdict},
 * wasmlb_agent_drops_total{reason}, wasmlb_agent_table_hits_total{table}, wasmlb_agent_table_misses_total,
 * wasmlb_agent_table_full_total{table}, wasmlb_agent_table_entries{table}, wasmlb_agent_table_capacity{table},
 * wasmlb_agent_held_packets, wasmlb_agent_unanswered_packets, wasmlb_agent_resent_after_takeover_total,
 * wasmlb_agent_firmware_counter_total{counter}, wasmlb_agent_firmware_gauge{gauge}.
 */
export function agentMetrics(registry: Registry, read: () => AgentSnapshot): void {
  const snap = oncePerScrape(read);
  const byLabel = (label: string, rec: Record<string, Count> | undefined): Sample[] =>
    Object.entries(rec ?? {}).map(([k, n]) => [{ [label]: k }, n]);
  counterFrom(registry, 'wasmlb_agent_received_packets_total', 'Packets handed to the firmware.', [], () => [
    [{}, snap().received.packets],
  ]);
  counterFrom(registry, 'wasmlb_agent_received_bytes_total', 'Bytes handed to the firmware.', [], () => [
    [{}, snap().received.bytes],
  ]);
  counterFrom(registry, 'wasmlb_agent_packets_total', 'Packets by firmware verdict.', ['verdict'], () =>
    byLabel('verdict', snap().verdicts),
  );
  counterFrom(registry, 'wasmlb_agent_bytes_total', 'Bytes by firmware verdict.', ['verdict'], () =>
    byLabel('verdict', snap().verdictBytes),
  );
  counterFrom(registry, 'wasmlb_agent_drops_total', 'Packets dropped, by reason.', ['reason'], () =>
    byLabel('reason', snap().drops),
  );
  counterFrom(registry, 'wasmlb_agent_table_hits_total', 'Packets that found an affinity, by table.', ['table'], () =>
    byLabel('table', snap().hits),
  );
  counterFrom(registry, 'wasmlb_agent_table_misses_total', 'Packets that matched no fixed and no wildcard affinity.', [], () => [
    [{}, snap().misses],
  ]);
  counterFrom(registry, 'wasmlb_agent_table_full_total', 'Affinity installs refused: table full.', ['table'], () =>
    byLabel('table', snap().tableFull),
  );
  gaugeFrom(registry, 'wasmlb_agent_table_entries', 'Entries in use, by affinity table.', ['table'], () => {
    const s = snap();
    return [
      [{ table: 'fixed' }, s.fixedEntries],
      [{ table: 'wildcard' }, s.wildcardEntries],
    ];
  });
  gaugeFrom(registry, 'wasmlb_agent_table_capacity', 'Capacity fixed at init, by affinity table.', ['table'], () => {
    const s = snap();
    return [
      [{ table: 'fixed' }, s.fixedCapacity],
      [{ table: 'wildcard' }, s.wildcardCapacity],
    ];
  });
  gaugeFrom(registry, 'wasmlb_agent_held_packets', 'Packets held while waiting for a manager (0 if not reported).', [], () => [
    [{}, snap().heldPackets ?? 0],
  ]);
  gaugeFrom(registry, 'wasmlb_agent_unanswered_packets', 'Packets handed to a manager and not answered yet, kept for a resend at a takeover.', [], () => [
    [{}, snap().unansweredPackets ?? 0],
  ]);
  counterFrom(registry, 'wasmlb_agent_resent_after_takeover_total', 'Packets a replaced manager never answered, run again at its takeover notice.', [], () => [
    [{}, snap().resentAfterTakeover ?? 0],
  ]);
  counterFrom(registry, 'wasmlb_agent_firmware_counter_total', 'Every firmware counter, raw, by its name.', ['counter'], () =>
    byLabel('counter', snap().counters),
  );
  gaugeFrom(registry, 'wasmlb_agent_firmware_gauge', 'Every firmware gauge, raw, by its name.', ['gauge'], () =>
    byLabel('gauge', snap().gauges),
  );
}

/** Firmware counter names (host/agent/counters.ts) behind each labelled agent metric. */
const FIRMWARE_VERDICTS: Record<string, string> = {
  forward: 'FORWARDED',
  to_manager: 'TO_MANAGER',
  hold: 'HOLD',
  copy: 'COPY',
  drop: 'DROPPED',
};
const FIRMWARE_DROPS: Record<string, string> = {
  descriptor: 'MALFORMED_DESCRIPTOR',
  truncated: 'MALFORMED_TRUNCATED',
  version: 'MALFORMED_VERSION',
  ihl: 'MALFORMED_IHL',
  total_length: 'MALFORMED_TOTAL_LENGTH',
  l4_header: 'MALFORMED_L4_HEADER',
  action: 'DROP_ACTION',
  dispatch_zero: 'DROP_DISPATCH_ZERO',
  advertised: 'DROP_ADVERTISED',
};
/** Firmware counters that are current values, not counts. */
const FIRMWARE_GAUGES: ReadonlySet<string> = COUNTER_GAUGES;

export interface AgentHostFigures {
  heldPackets?: number;
  unansweredPackets?: number;
  resentAfterTakeover?: Count;
  verdictBytes?: Record<string, Count>;
  /** Drops the host makes itself (e.g. `hold_overflow`, `hold_deadline`), added to the firmware's. */
  drops?: Record<string, Count>;
}

/**
 * The agent snapshot from the firmware's named counter array (`ForwardingFirmware.counters()`) and its
 * capacities (`ForwardingFirmware.capacities`: `fixed`, `wildcards`). Names the firmware does not have
 * are skipped; every name is also exported raw.
 */
export function agentSnapshotFromFirmware(
  counters: Readonly<Record<string, bigint>>,
  capacities: { fixed: number; wildcards: number },
  host: AgentHostFigures = {},
): AgentSnapshot {
  const pick = (map: Record<string, string>): Record<string, Count> => {
    const out: Record<string, Count> = {};
    for (const [label, name] of Object.entries(map)) {
      const v = counters[name];
      if (v !== undefined) out[label] = v;
    }
    return out;
  };
  const raw: Record<string, Count> = {};
  const gauges: Record<string, Count> = {};
  for (const [name, v] of Object.entries(counters)) (FIRMWARE_GAUGES.has(name) ? gauges : raw)[name] = v;
  const snap: AgentSnapshot = {
    received: { packets: counters['PACKETS'] ?? 0n, bytes: counters['BYTES'] ?? 0n },
    verdicts: pick(FIRMWARE_VERDICTS),
    drops: { ...pick(FIRMWARE_DROPS), ...host.drops },
    hits: pick({ fixed: 'FIXED_HITS', wildcard: 'WILDCARD_HITS' }),
    misses: counters['MISSES'] ?? 0n,
    tableFull: pick({ fixed: 'FIXED_TABLE_FULL', wildcard: 'WILDCARD_TABLE_FULL' }),
    fixedEntries: Number(counters['FIXED_OCCUPANCY'] ?? 0n),
    fixedCapacity: capacities.fixed,
    wildcardEntries: Number(counters['WILDCARD_OCCUPANCY'] ?? 0n),
    wildcardCapacity: capacities.wildcards,
    counters: raw,
    gauges,
  };
  if (host.heldPackets !== undefined) snap.heldPackets = host.heldPackets;
  if (host.unansweredPackets !== undefined) snap.unansweredPackets = host.unansweredPackets;
  if (host.resentAfterTakeover !== undefined) snap.resentAfterTakeover = host.resentAfterTakeover;
  if (host.verdictBytes !== undefined) snap.verdictBytes = host.verdictBytes;
  return snap;
}

// ---------------------------------------------------------------------------------------------
// Manager

export interface BackendSnapshot {
  vip: string; // "addr:port"
  backend: string; // "addr:port"
  healthy: boolean;
  /** Removed from the VIP by a reload, still carrying flows placed before it (no new ones). */
  draining?: boolean;
  /** Fixed affinities currently pointing at this backend. */
  flows: number;
  packets: Count;
  bytes: Count;
}

/** Bulk resync states (as in host/protocol); other strings are accepted and exported as they are. */
export const RESYNC_STATES = ['none', 'requested', 'in-progress', 'complete'] as const;
/** Manager roles; other strings are accepted and exported as they are. */
export const MANAGER_ROLES = ['primary', 'backup'] as const;

export interface ManagerSnapshot {
  role: string;
  epoch: number;
  backends: BackendSnapshot[];
  replication: { sent: Count; acked: Count; resent: Count; resyncState: string };
  takeovers: { total: Count; lastSeconds: number | null };
  /** Flows taken on from a backend's return packet (placed by a manager whose replication never came). */
  adoptedFlows: Count;
}

export interface ManagerMetrics {
  /** Time from a replication message's send to its acknowledgement (or its arrival, on the backup). */
  observeReplicationLag(seconds: number): void;
  /** The last lag observed (for /status), null before the first. */
  lastReplicationLag(): number | null;
}

/**
 * Registers a manager's metrics; `read` is called at most once per scrape.
 *
 * wasmlb_backend_flows{vip,backend}, wasmlb_backend_up{vip,backend},
 * wasmlb_backend_packets_total{vip,backend}, wasmlb_backend_bytes_total{vip,backend},
 * wasmlb_replication_messages_sent_total, …_acked_total, …_resent_total,
 * wasmlb_replication_lag_seconds (histogram), wasmlb_resync_state{state},
 * wasmlb_manager_role{role}, wasmlb_manager_epoch, wasmlb_takeovers_total,
 * wasmlb_last_takeover_duration_seconds, wasmlb_manager_adopted_flows_total.
 */
export function managerMetrics(registry: Registry, read: () => ManagerSnapshot): ManagerMetrics {
  const snap = oncePerScrape(read);
  const backendLabels = ['vip', 'backend'] as const;
  const perBackend = (pick: (b: BackendSnapshot) => Count): Sample[] =>
    snap().backends.map((b) => [{ vip: b.vip, backend: b.backend }, pick(b)]);

  gaugeFrom(registry, 'wasmlb_backend_flows', 'Flows (fixed affinities) assigned to a backend.', backendLabels, () =>
    perBackend((b) => b.flows),
  );
  gaugeFrom(registry, 'wasmlb_backend_up', '1 if the backend passes its health check, else 0.', backendLabels, () =>
    perBackend((b) => (b.healthy ? 1 : 0)),
  );
  counterFrom(registry, 'wasmlb_backend_packets_total', 'Packets forwarded to a backend.', backendLabels, () =>
    perBackend((b) => b.packets),
  );
  counterFrom(registry, 'wasmlb_backend_bytes_total', 'Bytes forwarded to a backend.', backendLabels, () =>
    perBackend((b) => b.bytes),
  );
  counterFrom(registry, 'wasmlb_replication_messages_sent_total', 'Replication messages sent to backups.', [], () => [
    [{}, snap().replication.sent],
  ]);
  counterFrom(registry, 'wasmlb_replication_messages_acked_total', 'Replication messages acknowledged.', [], () => [
    [{}, snap().replication.acked],
  ]);
  counterFrom(registry, 'wasmlb_replication_messages_resent_total', 'Replication messages resent after a loss.', [], () => [
    [{}, snap().replication.resent],
  ]);
  gaugeFrom(registry, 'wasmlb_resync_state', '1 for the current bulk resync state, 0 for the others.', ['state'], () =>
    oneHot(RESYNC_STATES, snap().replication.resyncState).map(([state, v]) => [{ state }, v]),
  );
  gaugeFrom(registry, 'wasmlb_manager_role', '1 for the current role, 0 for the others.', ['role'], () =>
    oneHot(MANAGER_ROLES, snap().role).map(([role, v]) => [{ role }, v]),
  );
  gaugeFrom(registry, 'wasmlb_manager_epoch', 'Epoch of the current role (grows at every takeover).', [], () => [
    [{}, snap().epoch],
  ]);
  counterFrom(registry, 'wasmlb_takeovers_total', 'Takeovers this manager performed.', [], () => [
    [{}, snap().takeovers.total],
  ]);
  counterFrom(registry, 'wasmlb_manager_adopted_flows_total', 'Flows taken on from a backend packet of a flow no manager here knew (its replication was lost with its manager).', [], () => [
    [{}, snap().adoptedFlows],
  ]);
  gaugeFrom(
    registry,
    'wasmlb_last_takeover_duration_seconds',
    'Duration of the last takeover, from the primary declared dead to all agents updated (0 if none).',
    [],
    () => [[{}, snap().takeovers.lastSeconds ?? 0]],
  );
  const lag = new Histogram({
    name: 'wasmlb_replication_lag_seconds',
    help: 'Delay between sending a replication message and its acknowledgement.',
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1],
    registers: [registry],
  });
  let last: number | null = null;
  return {
    observeReplicationLag(seconds: number): void {
      if (Number.isFinite(seconds) && seconds >= 0) {
        lag.observe(seconds);
        last = seconds;
      }
    },
    lastReplicationLag: () => last,
  };
}

// ---------------------------------------------------------------------------------------------
// Control protocol (agent and managers alike)

export interface ControlSnapshot {
  /** Service messages sent, by message type name ("affinity-update-fixed", "heartbeat"…). */
  sent: Record<string, Count>;
  /** Service messages received and accepted, by message type name. */
  received: Record<string, Count>;
  /** Service messages dropped, by reason ("forged", "replayed", "wrong_key", "unauthenticated", "malformed"…). */
  rejected: Record<string, Count>;
}

/**
 * Registers the control-protocol metrics; `read` is called at most once per scrape.
 *
 * wasmlb_control_messages_sent_total{type}, wasmlb_control_messages_received_total{type},
 * wasmlb_control_messages_rejected_total{reason}.
 */
export function controlMetrics(registry: Registry, read: () => ControlSnapshot): void {
  const snap = oncePerScrape(read);
  counterFrom(registry, 'wasmlb_control_messages_sent_total', 'Service messages sent, by type.', ['type'], () =>
    Object.entries(snap().sent).map(([type, n]) => [{ type }, n]),
  );
  counterFrom(registry, 'wasmlb_control_messages_received_total', 'Service messages accepted, by type.', ['type'], () =>
    Object.entries(snap().received).map(([type, n]) => [{ type }, n]),
  );
  counterFrom(registry, 'wasmlb_control_messages_rejected_total', 'Service messages dropped, by reason.', ['reason'], () =>
    Object.entries(snap().rejected).map(([reason, n]) => [{ reason }, n]),
  );
}

/**
 * `ControlSnapshot.rejected` from a channel's refusals by protocol error code (malformed messages and
 * security verdicts alike: the verifier's refusals are ProtocolErrors too), the code in lower case as
 * the reason. With `security`, its four reasons are there from the start (0 until one happens).
 */
export function controlRejections(refusedByCode: Readonly<Record<string, number>>, security = false, into: Record<string, number> = {}): Record<string, number> {
  if (security) for (const r of ['unauthenticated', 'forged', 'wrong_key', 'replayed']) into[r] ??= 0;
  for (const [code, n] of Object.entries(refusedByCode)) {
    const reason = code.toLowerCase();
    into[reason] = (into[reason] ?? 0) + n;
  }
  return into;
}

// ---------------------------------------------------------------------------------------------
// Helpers

type Labels = Record<string, string>;
type Sample = readonly [Labels, Count];

/**
 * Wraps a getter so that all the metrics of one scrape share one call. prom-client starts every
 * metric's collect() synchronously inside one `metrics()` call, so the value is kept until the
 * microtask queue runs, i.e. for exactly one scrape.
 */
function oncePerScrape<T>(read: () => T): () => T {
  let cached: { value: T } | null = null;
  return () => {
    if (cached === null) {
      cached = { value: read() };
      queueMicrotask(() => {
        cached = null;
      });
    }
    return cached.value;
  };
}

function toNumber(n: Count): number {
  return typeof n === 'bigint' ? Number(n) : n;
}

function oneHot(known: readonly string[], current: string): Array<[string, number]> {
  const all = known.includes(current) ? known : [...known, current];
  return all.map((s) => [s, s === current ? 1 : 0]);
}

function counterFrom(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly string[],
  samples: () => readonly Sample[],
): void {
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect(): void {
      const list = samples();
      this.reset();
      for (const [labels, n] of list) {
        const v = toNumber(n);
        if (v >= 0) this.inc(labels, v);
      }
    },
  });
}

function gaugeFrom(
  registry: Registry,
  name: string,
  help: string,
  labelNames: readonly string[],
  samples: () => readonly Sample[],
): void {
  new Gauge({
    name,
    help,
    labelNames,
    registers: [registry],
    collect(): void {
      const list = samples();
      this.reset();
      for (const [labels, n] of list) this.set(labels, toNumber(n));
    },
  });
}
