// The configuration schema: one YAML document for a whole deployment (agent, managers, VIPs,
// security), validated with zod. Keys in the YAML are exactly the keys of `WasmlbConfig`, so an
// error's key path is also where to look in the file.
//
// Units: every duration is milliseconds in the parsed config; in YAML a duration is a number of
// milliseconds or a string with a unit ("250ms", "10s", "1.5m"). Memory sizes are bytes, or a string
// with a unit ("64MiB", "512KiB", "1GiB"). Precedences: higher wins.

import { z } from 'zod';

// ---------------------------------------------------------------------------------------------
// Scalars

const ipv4 = z.ipv4({ error: 'expected an IPv4 address (a.b.c.d)' });

const cidr = z.cidrv4({ error: 'expected an IPv4 prefix (a.b.c.d/len)' });

function port(): z.ZodNumber {
  return z
    .number({ error: 'expected a port number' })
    .int({ error: 'expected an integer port' })
    .min(1, { error: 'expected number ≥ 1' })
    .max(65535, { error: 'expected number ≤ 65535' });
}

function int(min: number, max: number): z.ZodNumber {
  return z
    .number({ error: 'expected a number' })
    .int({ error: 'expected an integer' })
    .min(min, { error: `expected number ≥ ${min}` })
    .max(max, { error: `expected number ≤ ${max}` });
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A duration in ms from a number (ms) or "250ms" / "10s" / "1.5m" / "1h"; undefined if neither. */
export function parseDuration(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(value);
  if (!m) return undefined;
  return Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms']!;
}

const SIZE_UNITS: Record<string, number> = { '': 1, b: 1, k: 1024, kib: 1024, m: 1024 ** 2, mib: 1024 ** 2, g: 1024 ** 3, gib: 1024 ** 3 };

/** A size in bytes from a number or "64MiB" / "512KiB" / "1GiB"; undefined if neither. */
export function parseSize(value: unknown): number | undefined {
  if (typeof value === 'number') return Number.isInteger(value) ? value : undefined;
  if (typeof value !== 'string') return undefined;
  const m = /^\s*(\d+)\s*([a-zA-Z]*)\s*$/.exec(value);
  if (!m) return undefined;
  const unit = SIZE_UNITS[m[2]!.toLowerCase()];
  return unit === undefined ? undefined : Number(m[1]) * unit;
}

function duration(min: number, max = 86_400_000) {
  return z
    .unknown()
    .transform((value, ctx) => {
      const ms = parseDuration(value);
      if (ms === undefined) {
        ctx.issues.push({ code: 'custom', message: `expected a duration (milliseconds, or "250ms", "10s", "1m"), got ${JSON.stringify(value)}`, input: value });
        return z.NEVER;
      }
      return ms;
    })
    .pipe(
      z
        .number()
        .min(min, { error: `expected a duration ≥ ${min} ms` })
        .max(max, { error: `expected a duration ≤ ${max} ms` }),
    );
}

function size(min: number, max: number) {
  return z
    .unknown()
    .transform((value, ctx) => {
      const bytes = parseSize(value);
      if (bytes === undefined) {
        ctx.issues.push({ code: 'custom', message: `expected a size (bytes, or "64MiB", "512KiB"), got ${JSON.stringify(value)}`, input: value });
        return z.NEVER;
      }
      return bytes;
    })
    .pipe(
      z
        .number()
        .min(min, { error: `expected a size ≥ ${min} bytes` })
        .max(max, { error: `expected a size ≤ ${max} bytes` }),
    );
}

function endpoint(address: string, portNumber: number) {
  return z
    .strictObject({ address: ipv4.default(address), port: port().default(portNumber) })
    .prefault({});
}

const peer = z.strictObject({ address: ipv4, port: port() });

// ---------------------------------------------------------------------------------------------
// Agent

const multicastGroup = ipv4.refine((a) => {
  const first = Number(a.split('.')[0]);
  return first >= 224 && first <= 239;
}, { error: 'expected an IPv4 multicast group (224.0.0.0/4)' });

export const agentSchema = z
  .strictObject({
    /** Unicast control socket: interest matches go out, affinity updates come in. */
    control: endpoint('127.0.0.1', 7400),
    /** Wildcard affinities arrive here (one datagram reaches every agent). */
    multicast: z
      .strictObject({
        enabled: z.boolean({ error: 'expected true or false' }).default(true),
        group: multicastGroup.default('239.7.7.7'),
        port: port().default(7401),
        /** Local address of the interface that joins the group. */
        interface: ipv4.default('127.0.0.1'),
        ttl: int(0, 255).default(1),
      })
      .prefault({}),
    /** Managers reached by unicast too (fallback when multicast is not available). */
    managers: z.array(peer).default([]),
    firmware: z
      .strictObject({
        /** The firmware's whole memory, fixed at instantiation; table capacities derive from it. */
        budget: size(1 << 20, 4 * 1024 ** 3).default(64 * 1024 ** 2),
        /** Optional explicit capacities; omitted, the firmware derives them from the budget. */
        fixedCapacity: int(1, 1 << 26).optional(),
        wildcardCapacity: int(1, 1 << 20).optional(),
      })
      .prefault({}),
    holdQueue: z
      .strictObject({
        size: int(0, 1 << 20).default(1024),
        deadline: duration(0, 10_000).default(20),
      })
      .prefault({}),
    /** Prometheus /metrics port; 0 = off. */
    metricsPort: int(0, 65535).default(0),
    /** Address the /metrics and /status port binds to (0.0.0.0: every interface). */
    metricsAddress: ipv4.default('127.0.0.1'),
  })
  .prefault({});

// ---------------------------------------------------------------------------------------------
// Managers

export const ROLES = ['primary', 'backup'] as const;
export const MODES = ['nat', 'dispatch'] as const;
export const BALANCERS = ['rr', 'wlc', 'maglev'] as const;

const timersSchema = z
  .strictObject({
    wildcardRefresh: duration(1).default(1_000),
    wildcardTtl: duration(1).default(3_000),
    /** TTL of each fixed affinity sent to agents. */
    fixedTtl: duration(1).default(10_000),
    /** Manager expiry = fixedTtl + expirySlack. */
    expirySlack: duration(0).default(4_000),
    /** Backup expiry = primary's remaining expiry + backupSlack. */
    backupSlack: duration(0).default(500),
    /** Kept after FIN/RST so the final ACK/RST reaches the backend. */
    sticky: duration(0).default(2_000),
    heartbeatInterval: duration(1, 60_000).default(50),
    heartbeatMisses: int(1, 1000).default(3),
  })
  .prefault({})
  .superRefine((t, ctx) => {
    if (t.wildcardRefresh >= t.wildcardTtl) {
      ctx.addIssue({ code: 'custom', path: ['wildcardRefresh'], message: `must be shorter than wildcardTtl (${t.wildcardTtl} ms)` });
    }
  });

const replicationSchema = z
  .strictObject({
    /** A batch leaves within this delay, or sooner when batchSize affinities are waiting. */
    flushDelay: duration(0, 1_000).default(1),
    /** At most 1024: a replication message of more entries would not fit one service message (64 KiB). */
    batchSize: int(1, 1024).default(64),
    /** Unacknowledged batches are resent after this. */
    resendAfter: duration(1, 60_000).default(20),
    /** Every live affinity is re-sent once per period (spread over it). */
    refreshPeriod: duration(10).default(5_000),
  })
  .prefault({});

const takeoverSchema = z
  .strictObject({
    /** On takeover, push the stored fixed affinities to every agent. */
    pushAffinities: z.boolean({ error: 'expected true or false' }).default(true),
    /** A returning primary may take precedence again (only after its resync). */
    preempt: z.boolean({ error: 'expected true or false' }).default(false),
  })
  .prefault({});

export const managerSchema = z
  .strictObject({
    identity: z.string({ error: 'expected a name' }).min(1, { error: 'expected a non-empty name' }),
    role: z.enum(ROLES, { error: 'expected primary or backup' }).default('primary'),
    /** Wildcards with a higher service precedence win. */
    servicePrecedence: int(0, 65535).default(100),
    /** Among managers of equal service precedence, the higher backup precedence is primary. */
    backupPrecedence: int(0, 65535).optional(),
    control: endpoint('127.0.0.1', 7500),
    /** Client source prefixes this manager serves. */
    clientDomain: z.preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(cidr).min(1, { error: 'expected at least one prefix' })).default(['0.0.0.0/0']),
    mode: z.enum(MODES, { error: 'expected nat or dispatch' }).default('nat'),
    balancer: z.enum(BALANCERS, { error: 'expected rr, wlc or maglev' }).default('maglev'),
    timers: timersSchema,
    replication: replicationSchema,
    takeover: takeoverSchema,
    metricsPort: int(0, 65535).default(0),
    metricsAddress: ipv4.default('127.0.0.1'),
  })
  .transform((m) => ({ ...m, backupPrecedence: m.backupPrecedence ?? (m.role === 'primary' ? 200 : 100) }));

// ---------------------------------------------------------------------------------------------
// VIPs, backends, health checks

export const healthCheckSchema = z
  .strictObject({
    type: z.enum(['none', 'tcp', 'http'], { error: 'expected none, tcp or http' }).default('none'),
    interval: duration(10).default(2_000),
    timeout: duration(1).default(1_000),
    /** Consecutive successes to become healthy. */
    rise: int(1, 100).default(2),
    /** Consecutive failures to become unhealthy. */
    fall: int(1, 100).default(3),
    /** HTTP only. */
    // printable ASCII without spaces: an HTTP request line takes nothing else unescaped
    path: z.string({ error: 'expected a path' }).regex(/^\/[\x21-\x7e]*$/, { error: 'expected a path starting with / (printable ASCII, no spaces: percent-encode the rest)' }).default('/'),
    expectStatus: int(100, 599).default(200),
    /** Check this port instead of the backend's. */
    port: port().optional(),
  })
  .prefault({})
  .superRefine((h, ctx) => {
    if (h.timeout > h.interval) ctx.addIssue({ code: 'custom', path: ['timeout'], message: `must not exceed interval (${h.interval} ms)` });
  });

const backendSchema = z.strictObject({
  address: ipv4,
  /** Defaults to the VIP's port. */
  port: port().optional(),
  /** Relative share of new flows; 0 drains the backend. */
  weight: int(0, 1000).default(1),
});

export const vipSchema = z
  .strictObject({
    address: ipv4,
    port: port(),
    protocol: z.enum(['tcp', 'udp'], { error: 'expected tcp or udp' }).default('tcp'),
    backends: z.array(backendSchema).min(1, { error: 'expected at least one backend' }),
    healthCheck: healthCheckSchema,
    /** What an unhealthy backend's existing flows do: keep them (default) or remove them. */
    unhealthyFlows: z.enum(['keep', 'remove'], { error: 'expected keep or remove' }).default('keep'),
  })
  .transform((v) => ({ ...v, backends: v.backends.map((b) => ({ ...b, port: b.port ?? v.port })) }))
  .superRefine((v, ctx) => {
    const seen = new Set<string>();
    v.backends.forEach((b, i) => {
      const id = `${b.address}:${b.port}`;
      if (seen.has(id)) ctx.addIssue({ code: 'custom', path: ['backends', i], message: `duplicate backend ${id}` });
      seen.add(id);
    });
  });

// ---------------------------------------------------------------------------------------------
// Security

/** Longest keyed-MD5 key (the protocol's limit). */
export const MD5_KEY_MAX = 255;

/** The key bytes in hex (at least 16 bytes); a custom check, so the error never echoes the key. */
const hexKey = z
  .string({ error: 'expected a hex string' })
  .refine((k) => /^(?:[0-9a-fA-F]{2}){16,}$/.test(k), { error: 'expected at least 16 bytes as hex digits' });

function exactlyOneKey(s: { key?: string | undefined; keyFile?: string | undefined }, ctx: z.RefinementCtx): void {
  if (s.key === undefined && s.keyFile === undefined) ctx.addIssue({ code: 'custom', path: [], message: 'needs key or keyFile' });
  if (s.key !== undefined && s.keyFile !== undefined) ctx.addIssue({ code: 'custom', path: ['keyFile'], message: 'give key or keyFile, not both' });
}

/** A key accepted besides the one sent with: the other key of a roll. */
const acceptedKeySchema = z
  .strictObject({
    keyId: int(0, 65535),
    key: hexKey.optional(),
    keyFile: z.string({ error: 'expected a file path' }).min(1).optional(),
  })
  .superRefine(exactlyOneKey);

export const securitySchema = z
  .strictObject({
    algorithm: z.enum(['hmac-sha256', 'md5'], { error: 'expected hmac-sha256 or md5' }).default('hmac-sha256'),
    /** Id of the key messages are sent with, carried in every message's security segment (u16). */
    keyId: int(0, 65535).default(1),
    /** The shared key in hex (at least 16 bytes). Exactly one of key and keyFile. */
    key: hexKey.optional(),
    /** A file holding the key in hex; relative paths are relative to the config file. */
    keyFile: z.string({ error: 'expected a file path' }).min(1).optional(),
    /** More keys accepted on receipt, never sent with (rolling a key: see docs/operations.md). */
    accept: z.array(acceptedKeySchema).default([]),
    /** Reject unauthenticated messages (else accept them and count them). */
    require: z.boolean({ error: 'expected true or false' }).default(true),
  })
  .superRefine((s, ctx) => {
    exactlyOneKey(s, ctx);
    // keyed MD5 carries the key itself around the message: at most 255 bytes (docs/protocol.md)
    if (s.algorithm === 'md5') {
      if (s.key !== undefined && s.key.length > 2 * MD5_KEY_MAX) ctx.addIssue({ code: 'custom', path: ['key'], message: `an md5 key is at most ${MD5_KEY_MAX} bytes` });
      s.accept.forEach((a, i) => {
        if (a.key !== undefined && a.key.length > 2 * MD5_KEY_MAX) ctx.addIssue({ code: 'custom', path: ['accept', i, 'key'], message: `an md5 key is at most ${MD5_KEY_MAX} bytes` });
      });
    }
    const ids = new Set([s.keyId]);
    s.accept.forEach((a, i) => {
      if (ids.has(a.keyId)) ctx.addIssue({ code: 'custom', path: ['accept', i, 'keyId'], message: `key id ${a.keyId} given twice` });
      ids.add(a.keyId);
    });
  });

// ---------------------------------------------------------------------------------------------
// The whole file

export const DEFAULT_VIPS = [
  {
    address: '10.0.0.100',
    port: 80,
    protocol: 'tcp',
    backends: [{ address: '10.0.1.1', port: 8080 }, { address: '10.0.1.2', port: 8080 }, { address: '10.0.1.3', port: 8080 }, { address: '10.0.1.4', port: 8080 }],
  },
];

export const DEFAULT_MANAGERS = [{ identity: 'manager-1', role: 'primary' }];

export const configSchema = z
  .strictObject({
    agent: agentSchema,
    managers: z.array(managerSchema).min(1, { error: 'expected at least one manager' }).default(() => DEFAULT_MANAGERS.map((m) => managerSchema.parse(m))),
    vips: z.array(vipSchema).min(1, { error: 'expected at least one VIP' }).default(() => DEFAULT_VIPS.map((v) => vipSchema.parse(v))),
    security: securitySchema.optional(),
  })
  .superRefine((c, ctx) => {
    const identities = new Set<string>();
    const controls = new Set<string>();
    c.managers.forEach((m, i) => {
      if (identities.has(m.identity)) ctx.addIssue({ code: 'custom', path: ['managers', i, 'identity'], message: `duplicate identity ${m.identity}` });
      identities.add(m.identity);
      const ep = `${m.control.address}:${m.control.port}`;
      if (controls.has(ep)) ctx.addIssue({ code: 'custom', path: ['managers', i, 'control'], message: `control address ${ep} used by two managers` });
      controls.add(ep);
    });
    const vips = new Set<string>();
    c.vips.forEach((v, i) => {
      const id = `${v.protocol}/${v.address}:${v.port}`;
      if (vips.has(id)) ctx.addIssue({ code: 'custom', path: ['vips', i], message: `duplicate VIP ${id}` });
      vips.add(id);
    });
  });

export type WasmlbConfig = z.output<typeof configSchema>;
export type AgentConfig = WasmlbConfig['agent'];
export type ManagerConfig = WasmlbConfig['managers'][number];
export type ManagerTimers = ManagerConfig['timers'];
export type VipConfig = WasmlbConfig['vips'][number];
export type BackendConfig = VipConfig['backends'][number];
export type HealthCheckConfig = VipConfig['healthCheck'];
export type SecurityConfig = NonNullable<WasmlbConfig['security']>;
export type Role = (typeof ROLES)[number];
export type Mode = (typeof MODES)[number];
export type BalancerName = (typeof BALANCERS)[number];
