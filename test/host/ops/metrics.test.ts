import { describe, expect, it } from 'vitest';
import {
  agentMetrics,
  buildInfo,
  controlMetrics,
  createRegistry,
  managerMetrics,
  securityRejections,
  splitFirmwareCounters,
} from '../../../host/ops/metrics.ts';
import type { AgentSnapshot, ManagerSnapshot } from '../../../host/ops/metrics.ts';

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

function agentSnap(scale: bigint): AgentSnapshot {
  return {
    ...splitFirmwareCounters({
      forward_packets: 100n * scale,
      forward_bytes: 64_000n * scale,
      to_manager_packets: 5n * scale,
      to_manager_bytes: 300n * scale,
      drop_malformed: 2n * scale,
      drop_ttl_expired: 1n,
      miss_fixed: 7n * scale,
      unrelated: 9n,
    }),
    fixedEntries: 10,
    fixedCapacity: 65536,
    wildcardEntries: 2,
    wildcardCapacity: 1024,
    heldPackets: 3,
    counters: { rx_packets: 105n * scale },
  };
}

describe('agentMetrics', () => {
  it('exports the firmware counters by verdict, reason and table, read once per scrape', async () => {
    const registry = createRegistry();
    let calls = 0;
    let scale = 1n;
    agentMetrics(registry, () => {
      calls++;
      return agentSnap(scale);
    });
    buildInfo(registry, { version: '0.1.0', role: 'agent' });

    const first = parseProm(await registry.metrics());
    expect(calls).toBe(1);
    const v = first.values;
    expect(v.get('wasmlb_agent_packets_total{verdict="forward"}')).toBe(100);
    expect(v.get('wasmlb_agent_bytes_total{verdict="forward"}')).toBe(64000);
    expect(v.get('wasmlb_agent_packets_total{verdict="to_manager"}')).toBe(5);
    expect(v.get('wasmlb_agent_drops_total{reason="malformed"}')).toBe(2);
    expect(v.get('wasmlb_agent_drops_total{reason="ttl_expired"}')).toBe(1);
    expect(v.get('wasmlb_agent_table_misses_total{table="fixed"}')).toBe(7);
    expect(v.get('wasmlb_agent_table_entries{table="fixed"}')).toBe(10);
    expect(v.get('wasmlb_agent_table_capacity{table="wildcard"}')).toBe(1024);
    expect(v.get('wasmlb_agent_held_packets')).toBe(3);
    expect(v.get('wasmlb_agent_firmware_counter_total{counter="rx_packets"}')).toBe(105);
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
    expect(second.values.get('wasmlb_agent_packets_total{verdict="forward"}')).toBe(300);
    expect(second.values.get('wasmlb_agent_table_misses_total{table="fixed"}')).toBe(21);
  });

  it('splits firmware counter names by convention', () => {
    const s = splitFirmwareCounters({ hold_packets: 4n, hold_bytes: 400n, drop_no_route: 1n, miss_wildcard: 2n, other: 5n });
    expect(s.verdicts).toEqual({ hold: { packets: 4n, bytes: 400n } });
    expect(s.drops).toEqual({ no_route: 1n });
    expect(s.misses).toEqual({ wildcard: 2n });
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
    const security = { accepted: 40, unsigned: 0, unauthenticated: 1, forged: 2, wrongKey: 3, replayed: 4 };
    controlMetrics(registry, () => ({
      sent: { 'interest-match-wildcard': 7n },
      received: { 'affinity-update-fixed': 6, heartbeat: 30 },
      rejected: { ...securityRejections(security), malformed: 5 },
    }));
    const v = parseProm(await registry.metrics()).values;
    expect(v.get('wasmlb_control_messages_sent_total{type="interest-match-wildcard"}')).toBe(7);
    expect(v.get('wasmlb_control_messages_received_total{type="heartbeat"}')).toBe(30);
    expect(v.get('wasmlb_control_messages_rejected_total{reason="forged"}')).toBe(2);
    expect(v.get('wasmlb_control_messages_rejected_total{reason="wrong_key"}')).toBe(3);
    expect(v.get('wasmlb_control_messages_rejected_total{reason="replayed"}')).toBe(4);
    expect(v.get('wasmlb_control_messages_rejected_total{reason="malformed"}')).toBe(5);
  });
});
