import { describe, expect, it } from 'vitest';
import {
  agentMetrics,
  agentSnapshotFromFirmware,
  buildInfo,
  controlMetrics,
  createRegistry,
  managerMetrics,
  controlRejections,
} from '../../../host/ops/metrics.ts';
import { COUNTER_NAMES } from '../../../host/agent/counters.ts';
import type { ManagerSnapshot } from '../../../host/ops/metrics.ts';

/** Parses Prometheus text into "name{labels}" -> value, and name -> TYPE. */
function parseProm(text: string): { values: Map<string, number>; types: Map<string, string> } {
  const values = new Map<string, number>();
  const types = new Map<string, string>();
  for (const line of text.split('\n')) {
    if (line.startsWith('# TYPE ')) {
      const [, , name, type] = line.split(' ');
      types.set(name!, type!);
    } else if (line && !line.startsWith('#')) {
      const i = line.lastIndexOf(' ');
      values.set(line.slice(0, i), Number(line.slice(i + 1)));
    }
  }
  return { values, types };
}

/** Every firmware counter with a distinct value: index + 1, times `scale`. */
function firmwareCounters(scale: bigint): Record<string, bigint> {
  return Object.fromEntries(COUNTER_NAMES.map((n, i) => [n, BigInt(i + 1) * scale]));
}
const value = (name: string, scale = 1n): number => (COUNTER_NAMES.indexOf(name as never) + 1) * Number(scale);

describe('agentMetrics', () => {
  it('exports the firmware counter array by verdict, reason and table, read once per scrape', async () => {
    const registry = createRegistry();
    let calls = 0;
    let scale = 1n;
    agentMetrics(registry, () => {
      calls++;
      return agentSnapshotFromFirmware(firmwareCounters(scale), { fixed: 65536, wildcards: 1024 }, {
        heldPackets: 3,
        unansweredPackets: 5,
        resentAfterTakeover: 7,
        verdictBytes: { forward: 64_000n * scale },
        drops: { hold_overflow: 2 },
      });
    });
    buildInfo(registry, { version: '0.1.0', role: 'agent' });

    const first = parseProm(await registry.metrics());
    expect(calls).toBe(1);
    const v = first.values;
    expect(v.get('wasmlb_agent_received_packets_total')).toBe(value('PACKETS'));
    expect(v.get('wasmlb_agent_received_bytes_total')).toBe(value('BYTES'));
    expect(v.get('wasmlb_agent_packets_total{verdict="forward"}')).toBe(value('FORWARDED'));
    expect(v.get('wasmlb_agent_packets_total{verdict="to_manager"}')).toBe(value('TO_MANAGER'));
    expect(v.get('wasmlb_agent_packets_total{verdict="hold"}')).toBe(value('HOLD'));
    expect(v.get('wasmlb_agent_packets_total{verdict="copy"}')).toBe(value('COPY'));
    expect(v.get('wasmlb_agent_packets_total{verdict="drop"}')).toBe(value('DROPPED'));
    expect(v.get('wasmlb_agent_bytes_total{verdict="forward"}')).toBe(64000);
    expect(v.get('wasmlb_agent_drops_total{reason="truncated"}')).toBe(value('MALFORMED_TRUNCATED'));
    expect(v.get('wasmlb_agent_drops_total{reason="l4_header"}')).toBe(value('MALFORMED_L4_HEADER'));
    expect(v.get('wasmlb_agent_drops_total{reason="dispatch_zero"}')).toBe(value('DROP_DISPATCH_ZERO'));
    expect(v.get('wasmlb_agent_drops_total{reason="hold_overflow"}')).toBe(2);
    expect(v.get('wasmlb_agent_table_hits_total{table="fixed"}')).toBe(value('FIXED_HITS'));
    expect(v.get('wasmlb_agent_table_hits_total{table="wildcard"}')).toBe(value('WILDCARD_HITS'));
    expect(v.get('wasmlb_agent_table_misses_total')).toBe(value('MISSES'));
    expect(v.get('wasmlb_agent_table_full_total{table="fixed"}')).toBe(value('FIXED_TABLE_FULL'));
    expect(v.get('wasmlb_agent_table_entries{table="fixed"}')).toBe(value('FIXED_OCCUPANCY'));
    expect(v.get('wasmlb_agent_table_entries{table="wildcard"}')).toBe(value('WILDCARD_OCCUPANCY'));
    expect(v.get('wasmlb_agent_table_capacity{table="fixed"}')).toBe(65536);
    expect(v.get('wasmlb_agent_table_capacity{table="wildcard"}')).toBe(1024);
    expect(v.get('wasmlb_agent_held_packets')).toBe(3);
    expect(v.get('wasmlb_agent_unanswered_packets')).toBe(5);
    expect(v.get('wasmlb_agent_resent_after_takeover_total')).toBe(7);
    expect(v.get('wasmlb_agent_firmware_counter_total{counter="NAT_APPLIED"}')).toBe(value('NAT_APPLIED'));
    // Occupancies are gauges, not counters.
    expect(v.get('wasmlb_agent_firmware_gauge{gauge="FIXED_OCCUPANCY"}')).toBe(value('FIXED_OCCUPANCY'));
    expect(v.has('wasmlb_agent_firmware_counter_total{counter="FIXED_OCCUPANCY"}')).toBe(false);
    expect(v.get('wasmlb_build_info{version="0.1.0",role="agent"}')).toBe(1);
    expect(first.types.get('wasmlb_agent_packets_total')).toBe('counter');
    expect(first.types.get('wasmlb_agent_table_entries')).toBe('gauge');
    // No name without the prefix, every counter ends in _total.
    for (const [name, type] of first.types) {
      expect(name.startsWith('wasmlb_')).toBe(true);
      if (type === 'counter') expect(name.endsWith('_total')).toBe(true);
    }

    scale = 3n;
    const second = parseProm(await registry.metrics());
    expect(calls).toBe(2);
    expect(second.values.get('wasmlb_agent_packets_total{verdict="forward"}')).toBe(value('FORWARDED', 3n));
    expect(second.values.get('wasmlb_agent_table_misses_total')).toBe(value('MISSES', 3n));
  });

  it('skips names the firmware does not have', async () => {
    const registry = createRegistry();
    agentMetrics(registry, () => agentSnapshotFromFirmware({ PACKETS: 5n }, { fixed: 10, wildcards: 2 }));
    const v = parseProm(await registry.metrics()).values;
    expect(v.get('wasmlb_agent_received_packets_total')).toBe(5);
    expect(v.get('wasmlb_agent_table_misses_total')).toBe(0);
    expect([...v.keys()].some((k) => k.startsWith('wasmlb_agent_packets_total'))).toBe(false);
  });
});

describe('managerMetrics', () => {
  const snap: ManagerSnapshot = {
    role: 'backup',
    epoch: 4,
    backends: [
      { vip: '10.0.0.100:80', backend: '10.0.1.1:8080', healthy: true, flows: 12, packets: 1200n, bytes: 900_000n },
      { vip: '10.0.0.100:80', backend: '10.0.1.2:8080', healthy: false, flows: 0, packets: 0, bytes: 0 },
    ],
    replication: { sent: 50, acked: 48, resent: 2n, resyncState: 'in-progress' },
    takeovers: { total: 1, lastSeconds: 0.084 },
    adoptedFlows: 3,
  };

  it('exports backends, replication, role, epoch, resync and takeovers from the getter', async () => {
    const registry = createRegistry();
    let calls = 0;
    const m = managerMetrics(registry, () => {
      calls++;
      return snap;
    });
    m.observeReplicationLag(0.0015);
    m.observeReplicationLag(0.03);
    const { values: v, types } = parseProm(await registry.metrics());
    expect(calls).toBe(1);
    expect(v.get('wasmlb_backend_flows{vip="10.0.0.100:80",backend="10.0.1.1:8080"}')).toBe(12);
    expect(v.get('wasmlb_backend_up{vip="10.0.0.100:80",backend="10.0.1.1:8080"}')).toBe(1);
    expect(v.get('wasmlb_backend_up{vip="10.0.0.100:80",backend="10.0.1.2:8080"}')).toBe(0);
    expect(v.get('wasmlb_backend_packets_total{vip="10.0.0.100:80",backend="10.0.1.1:8080"}')).toBe(1200);
    expect(v.get('wasmlb_backend_bytes_total{vip="10.0.0.100:80",backend="10.0.1.1:8080"}')).toBe(900000);
    expect(v.get('wasmlb_replication_messages_sent_total')).toBe(50);
    expect(v.get('wasmlb_replication_messages_acked_total')).toBe(48);
    expect(v.get('wasmlb_replication_messages_resent_total')).toBe(2);
    expect(v.get('wasmlb_resync_state{state="in-progress"}')).toBe(1);
    expect(v.get('wasmlb_resync_state{state="complete"}')).toBe(0);
    expect(v.get('wasmlb_manager_role{role="backup"}')).toBe(1);
    expect(v.get('wasmlb_manager_role{role="primary"}')).toBe(0);
    expect(v.get('wasmlb_manager_epoch')).toBe(4);
    expect(v.get('wasmlb_takeovers_total')).toBe(1);
    expect(v.get('wasmlb_manager_adopted_flows_total')).toBe(3);
    expect(v.get('wasmlb_last_takeover_duration_seconds')).toBe(0.084);
    expect(v.get('wasmlb_replication_lag_seconds_count')).toBe(2);
    expect(v.get('wasmlb_replication_lag_seconds_bucket{le="0.002"}')).toBe(1);
    expect(v.get('wasmlb_replication_lag_seconds_bucket{le="0.05"}')).toBe(2);
    expect(types.get('wasmlb_replication_lag_seconds')).toBe('histogram');
  });

  it('drops a backend that disappeared and keeps registries apart', async () => {
    const r1 = createRegistry();
    const r2 = createRegistry();
    let backends = snap.backends;
    managerMetrics(r1, () => ({ ...snap, backends }));
    managerMetrics(r2, () => ({ ...snap, role: 'primary', backends: [] }));
    backends = snap.backends.slice(0, 1);
    const one = await r1.metrics();
    expect(one).toContain('backend="10.0.1.1:8080"');
    expect(one).not.toContain('backend="10.0.1.2:8080"');
    const two = parseProm(await r2.metrics()).values;
    expect(two.get('wasmlb_manager_role{role="primary"}')).toBe(1);
    expect([...two.keys()].some((k) => k.startsWith('wasmlb_backend_flows'))).toBe(false);
  });
});

describe('controlMetrics', () => {
  it('exports messages by type and drops by reason', async () => {
    const registry = createRegistry();
    // a channel's refusals by protocol error code: security verdicts and malformed messages alike
    const refused = { FORGED: 2, WRONG_KEY: 3, REPLAYED: 4, TOO_SHORT: 5 };
    controlMetrics(registry, () => ({
      sent: { 'interest-match-wildcard': 7n },
      received: { 'affinity-update-fixed': 6, heartbeat: 30 },
      rejected: controlRejections(refused, true),
    }));
    const v = parseProm(await registry.metrics()).values;
    expect(v.get('wasmlb_control_messages_sent_total{type="interest-match-wildcard"}')).toBe(7);
    expect(v.get('wasmlb_control_messages_received_total{type="heartbeat"}')).toBe(30);
    expect(v.get('wasmlb_control_messages_rejected_total{reason="forged"}')).toBe(2);
    expect(v.get('wasmlb_control_messages_rejected_total{reason="wrong_key"}')).toBe(3);
    expect(v.get('wasmlb_control_messages_rejected_total{reason="replayed"}')).toBe(4);
    expect(v.get('wasmlb_control_messages_rejected_total{reason="too_short"}')).toBe(5);
    expect(v.get('wasmlb_control_messages_rejected_total{reason="unauthenticated"}')).toBe(0);
  });
});
