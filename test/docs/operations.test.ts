// docs/operations.md stays true to the code: its metric tables list exactly the metrics the processes
// register (with their types and labels), its timer table names real configuration keys with their
// defaults, and its log table lists exactly the events the helpers emit.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { defaultConfig } from '../../host/config/index.ts';
import { LOG_EVENTS } from '../../host/ops/log.ts';
import {
  agentMetrics,
  agentSnapshotFromFirmware,
  buildInfo,
  controlMetrics,
  createRegistry,
  managerMetrics,
} from '../../host/ops/metrics.ts';

const doc = readFileSync(fileURLToPath(new URL('../../docs/operations.md', import.meta.url)), 'utf8');

/** Rows of every markdown table whose first cell is a code span. */
function codeRows(text: string): string[][] {
  return text
    .split('\n')
    .filter((l) => /^\| `[^`]+` \|/.test(l))
    .map((l) => l.split(/(?<!\\)\|/).slice(1, -1).map((c) => c.trim()));
}

function section(title: string): string {
  const start = doc.indexOf(`## ${title}`);
  expect(start, `section ${title}`).toBeGreaterThanOrEqual(0);
  const end = doc.indexOf('\n## ', start + 3);
  return doc.slice(start, end < 0 ? undefined : end);
}

describe('docs/operations.md', () => {
  it('documents exactly the registered metrics, with their types and labels', async () => {
    const registry = createRegistry();
    buildInfo(registry, { version: '0', role: 'agent' });
    controlMetrics(registry, () => ({ sent: { heartbeat: 1 }, received: { heartbeat: 1 }, rejected: { forged: 1 } }));
    agentMetrics(registry, () =>
      agentSnapshotFromFirmware({ PACKETS: 1n, FORWARDED: 1n, MALFORMED_TRUNCATED: 1n, FIXED_HITS: 1n, FIXED_TABLE_FULL: 1n, NAT_APPLIED: 1n, FIXED_OCCUPANCY: 1n }, { fixed: 1, wildcards: 1 }, { verdictBytes: { forward: 1 } }),
    );
    const m = managerMetrics(registry, () => ({
      role: 'primary',
      epoch: 1,
      backends: [{ vip: 'v:1', backend: 'b:1', healthy: true, flows: 1, packets: 1, bytes: 1 }],
      replication: { sent: 1, acked: 1, resent: 1, resyncState: 'none' },
      takeovers: { total: 1, lastSeconds: 0.1 },
      adoptedFlows: 0,
    }));
    m.observeReplicationLag(0.001);

    const registered = new Map<string, { type: string; labels: string[] }>();
    for (const metric of await registry.getMetricsAsJSON()) {
      const labels = new Set<string>();
      for (const v of metric.values) for (const k of Object.keys(v.labels)) if (k !== 'le') labels.add(k);
      registered.set(metric.name, { type: String(metric.type), labels: [...labels].sort() });
    }
    const documented = new Map<string, { type: string; labels: string[] }>();
    for (const row of codeRows(section('Metrics'))) {
      const name = row[0]!.replace(/`/g, '');
      const labels = [...(row[2] ?? '').matchAll(/`([^`]+)`/g)].map((x) => x[1]!).sort();
      documented.set(name, { type: row[1]!, labels });
    }
    expect([...documented.keys()].sort()).toEqual([...registered.keys()].sort());
    for (const [name, r] of registered) expect(documented.get(name), name).toEqual(r);
  });

  it('names real timer keys with their defaults', () => {
    const config = defaultConfig();
    const timers = config.managers[0]!.timers as Record<string, number>;
    const replication = config.managers[0]!.replication as Record<string, number>;
    const keys = [...section('Timers and what they trade').matchAll(/^\| [^|]+ \| `([^`]+)`(?: \/ `([^`]+)`)? \| ([^|]+) \|/gm)];
    expect(keys.length).toBeGreaterThanOrEqual(10);
    for (const k of keys) {
      for (const key of [k[1], k[2]].filter((x): x is string => x !== undefined)) {
        if (key.startsWith('agent.')) {
          const [, group, field] = key.split('.');
          const agent = config.agent as unknown as Record<string, Record<string, number>>;
          expect(agent[group!]?.[field!], key).toBeDefined();
        } else if (key.startsWith('replication.')) {
          expect(replication[key.slice('replication.'.length)], key).toBeDefined();
        } else {
          expect(timers[key], key).toBeDefined();
        }
      }
    }
    // The defaults the table states.
    expect(doc).toMatch(new RegExp(`\\| \`wildcardRefresh\` \\| ${timers['wildcardRefresh']! / 1000} s \\|`));
    expect(doc).toMatch(new RegExp(`\\| \`heartbeatInterval\` \\| ${timers['heartbeatInterval']} ms \\|`));
    expect(doc).toMatch(new RegExp(`\\| \`heartbeatMisses\` \\| ${timers['heartbeatMisses']} \\|`));
    expect(doc).toMatch(new RegExp(`\\| \`fixedTtl\` \\| ${timers['fixedTtl']! / 1000} s \\|`));
    expect(doc).toContain(`| \`agent.holdQueue.deadline\` | ${config.agent.holdQueue.deadline} ms |`);
  });

  it('lists exactly the log events', () => {
    const events = codeRows(section('Logs'))
      .map((r) => r[0]!.replace(/`/g, ''))
      .filter((e) => e !== 'event'); // the header row
    expect(events.sort()).toEqual([...LOG_EVENTS].sort());
  });
});
