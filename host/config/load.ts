// Loading the configuration: YAML text → document with source positions → zod validation →
// WasmlbConfig. Every error names the file, the line and the key path:
//
//   examples/lb.yaml:12: vips[0].backends[1].port: expected number ≤ 65535
//
// Command-line overrides (--vip, --backends, --balancer, --role, --key-file) are merged onto the
// file's raw document and validated by the same schema; their errors name the flag.

import { readFileSync } from 'node:fs';
import path from 'node:path';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node as YamlNode } from 'yaml';
import type { z } from 'zod';
import { ipv4ToInt, makeBackend, PROTO_TCP, PROTO_UDP, type Backend, type VipSpec } from '../manager/decision.ts';
import type { StoreTimers } from '../manager/store.ts';
import type { SecurityKey } from '../protocol/security.ts';
import { configSchema, MD5_KEY_MAX, type BalancerName, type ManagerConfig, type Role, type SecurityConfig, type VipConfig, type WasmlbConfig } from './schema.ts';

export type ConfigErrorCode = 'CONFIG_READ' | 'CONFIG_SYNTAX' | 'CONFIG_INVALID' | 'CONFIG_OVERRIDE';

export interface ConfigIssue {
  readonly file: string;
  /** 1-based; undefined when the problem has no place in a file (a command-line flag). */
  readonly line: number | undefined;
  /** "vips[0].backends[1].port"; "" for the whole document. */
  readonly keyPath: string;
  readonly message: string;
}

function formatIssue(i: ConfigIssue): string {
  const where = i.line === undefined ? i.file : `${i.file}:${i.line}`;
  return i.keyPath ? `${where}: ${i.keyPath}: ${i.message}` : `${where}: ${i.message}`;
}

export class ConfigError extends Error {
  readonly code: ConfigErrorCode;
  /** All problems found, in file order; the message lists them one per line. */
  readonly issues: readonly ConfigIssue[];
  constructor(code: ConfigErrorCode, issues: readonly ConfigIssue[]) {
    super(issues.map(formatIssue).join('\n'));
    this.name = 'ConfigError';
    this.code = code;
    this.issues = issues;
  }
  get file(): string {
    return this.issues[0]?.file ?? '';
  }
  get line(): number | undefined {
    return this.issues[0]?.line;
  }
  get keyPath(): string {
    return this.issues[0]?.keyPath ?? '';
  }
}

/** ['vips', 0, 'backends', 1, 'port'] → "vips[0].backends[1].port". */
export function formatKeyPath(segments: readonly PropertyKey[]): string {
  let out = '';
  for (const s of segments) {
    if (typeof s === 'number') out += `[${s}]`;
    else out += out ? `.${String(s)}` : String(s);
  }
  return out;
}

/** Offset of the deepest node on the path: the key of a map entry, the item of a sequence. */
function offsetOf(root: YamlNode | null, segments: readonly PropertyKey[]): number {
  let node: unknown = root;
  let offset = root?.range?.[0] ?? 0;
  for (const seg of segments) {
    if (isMap(node)) {
      const pair = node.items.find((p) => isScalar(p.key) && String(p.key.value) === String(seg));
      if (!pair) break;
      if (isScalar(pair.key) && pair.key.range) offset = pair.key.range[0];
      node = pair.value;
    } else if (isSeq(node) && typeof seg === 'number') {
      const item: unknown = node.items[seg];
      if (!item || typeof item !== 'object' || !('range' in item)) break;
      const range = (item as YamlNode).range;
      if (range) offset = range[0];
      node = item;
    } else {
      break;
    }
  }
  return offset;
}

function valueAt(root: unknown, segments: readonly PropertyKey[]): unknown {
  let v: unknown = root;
  for (const seg of segments) {
    // A scalar where a list is allowed ("clientDomain: 10.0.0.0/8") is a list of one.
    if (seg === 0 && v !== null && v !== undefined && typeof v !== 'object') continue;
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PropertyKey, unknown>)[seg];
  }
  return v;
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return `"${value}"`;
  return String(value);
}

/** One readable sentence per zod issue, plus the path to point at. */
function explain(issue: z.core.$ZodIssue, raw: unknown): { segments: PropertyKey[]; message: string } {
  const segments = [...issue.path];
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0] ?? '';
    return { segments: [...segments, key], message: `unknown key${issue.keys.length > 1 ? 's' : ''} ${issue.keys.map((k) => `"${k}"`).join(', ')}` };
  }
  const value = valueAt(raw, segments);
  if (value === undefined && issue.code === 'invalid_type') return { segments, message: 'missing (required)' };
  // a key written unquoted is read as a number: never echo what is under a key
  const secret = segments[0] === 'security' && segments.at(-1) === 'key';
  if (!secret && (issue.code === 'invalid_type' || issue.code === 'invalid_value' || issue.code === 'invalid_format')) {
    return { segments, message: `${issue.message}, got ${describe(value)}` };
  }
  return { segments, message: issue.message };
}

function issuesOf(error: z.ZodError, raw: unknown, file: string, root: YamlNode | null, lines: LineCounter | null): ConfigIssue[] {
  const out = error.issues.map((issue) => {
    const { segments, message } = explain(issue, raw);
    const line = lines ? lines.linePos(offsetOf(root, segments)).line : undefined;
    return { file, line, keyPath: formatKeyPath(segments), message };
  });
  return out.sort((a, b) => (a.line ?? 0) - (b.line ?? 0));
}

/** The raw (unvalidated) document of a YAML text, with what is needed to place errors. */
interface RawDocument {
  readonly file: string;
  readonly raw: unknown;
  readonly root: YamlNode | null;
  readonly lines: LineCounter | null;
  /** Directory that relative paths in the file (keyFile) are resolved against. */
  readonly baseDir: string;
}

function parseRaw(text: string, file: string, baseDir: string): RawDocument {
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      'CONFIG_SYNTAX',
      doc.errors.map((e) => ({ file, line: lines.linePos(e.pos[0]).line, keyPath: '', message: e.message.split('\n')[0]! })),
    );
  }
  const raw: unknown = doc.toJS() ?? {};
  const root = (doc.contents ?? null) as YamlNode | null;
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError('CONFIG_INVALID', [{ file, line: 1, keyPath: '', message: `expected a mapping at the top, got ${describe(raw)}` }]);
  }
  return { file, raw, root, lines, baseDir };
}

function validate(doc: RawDocument, raw: unknown = doc.raw): WasmlbConfig {
  const result = configSchema.safeParse(raw);
  if (!result.success) throw new ConfigError('CONFIG_INVALID', issuesOf(result.error, raw, doc.file, doc.root, doc.lines));
  const config = result.data;
  const sec = config.security;
  if (sec) {
    const resolve = <T extends { keyFile?: string | undefined }>(k: T): T => (k.keyFile === undefined ? k : { ...k, keyFile: path.resolve(doc.baseDir, k.keyFile) });
    config.security = { ...resolve(sec), accept: sec.accept.map(resolve) };
  }
  return config;
}

/** Parses and validates YAML text; `file` names it in errors. Relative keyFile paths resolve against baseDir. */
export function parseConfig(text: string, file = '<config>', baseDir = process.cwd()): WasmlbConfig {
  return validate(parseRaw(text, file, baseDir));
}

/** Reads, parses and validates a config file. */
export function loadConfig(file: string): WasmlbConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new ConfigError('CONFIG_READ', [{ file, line: undefined, keyPath: '', message: `cannot read: ${reason}` }]);
  }
  return parseConfig(text, file, path.dirname(path.resolve(file)));
}

/** The bundled defaults: one primary manager, one VIP (10.0.0.100:80) with four backends. */
export function defaultConfig(): WasmlbConfig {
  return parseConfig('{}', '<defaults>');
}

// ---------------------------------------------------------------------------------------------
// Command-line overrides

export interface ConfigOverrides {
  /** --vip ADDR:PORT — the one VIP (replaces the file's VIPs; keeps the first VIP's other settings). */
  readonly vip?: string;
  /** --backends A[:P],B[:P],… — the VIP's backends (port defaults to the VIP's), weight 1. */
  readonly backends?: string;
  /** --balancer rr|wlc|maglev — every manager. */
  readonly balancer?: string;
  /** --role primary|backup — with one manager: its role; with several: selects the manager(s) to run. */
  readonly role?: string;
  /** --key-file PATH — the security key (enables security with defaults when the file had none). */
  readonly keyFile?: string;
}

function splitHostPort(text: string, flag: string): { address: string; port: number | undefined } {
  const m = /^([^:]+)(?::(\d+))?$/.exec(text.trim());
  if (!m) throw overrideError(flag, `expected ADDR[:PORT], got "${text}"`);
  return { address: m[1]!, port: m[2] === undefined ? undefined : Number(m[2]) };
}

function overrideError(flag: string, message: string): ConfigError {
  return new ConfigError('CONFIG_OVERRIDE', [{ file: 'command line', line: undefined, keyPath: flag, message }]);
}

/** The flag an override issue comes from, by the key path it lands on. */
function flagOf(segments: readonly PropertyKey[]): string {
  if (segments[0] === 'vips') return segments.includes('backends') ? '--backends' : '--vip';
  if (segments[0] === 'managers') return segments.includes('role') ? '--role' : '--balancer';
  if (segments[0] === 'security') return '--key-file';
  return String(segments[0] ?? '');
}

/**
 * Merges command-line overrides onto a validated config and validates the result with the same
 * schema. Errors name the flag (ConfigError code CONFIG_OVERRIDE).
 */
export function applyOverrides(config: WasmlbConfig, overrides: ConfigOverrides): WasmlbConfig {
  const raw = structuredClone(config) as unknown as Record<string, unknown> & {
    vips: Record<string, unknown>[];
    managers: Record<string, unknown>[];
    security?: Record<string, unknown>;
  };
  const base = raw.vips[0]!;
  if (overrides.vip !== undefined) {
    const { address, port } = splitHostPort(overrides.vip, '--vip');
    if (port === undefined) throw overrideError('--vip', 'expected ADDR:PORT (the port is required)');
    const oldPort = base['port'];
    base['address'] = address;
    base['port'] = port;
    // Backends that followed the old VIP port follow the new one.
    base['backends'] = (base['backends'] as Record<string, unknown>[]).map((b) => (b['port'] === oldPort ? { ...b, port } : b));
    raw.vips = [base];
  }
  if (overrides.backends !== undefined) {
    const list = overrides.backends.split(',').filter((s) => s.trim() !== '');
    if (list.length === 0) throw overrideError('--backends', 'expected A[:P],B[:P],…');
    base['backends'] = list.map((entry) => {
      const { address, port } = splitHostPort(entry, '--backends');
      return { address, port: port ?? base['port'], weight: 1 };
    });
    raw.vips = [base];
  }
  if (overrides.balancer !== undefined) {
    for (const m of raw.managers) m['balancer'] = overrides.balancer;
  }
  if (overrides.role !== undefined) {
    if (overrides.role !== 'primary' && overrides.role !== 'backup') throw overrideError('--role', `expected primary or backup, got "${overrides.role}"`);
    if (raw.managers.length === 1) {
      const m = raw.managers[0]!;
      if (m['role'] !== overrides.role) {
        m['role'] = overrides.role;
        m['backupPrecedence'] = overrides.role === 'primary' ? 200 : 100; // the role's default
      }
    } else if (!raw.managers.some((m) => m['role'] === overrides.role)) {
      throw overrideError('--role', `no manager with role ${overrides.role} in the config`);
    }
  }
  if (overrides.keyFile !== undefined) {
    const security = raw.security ?? {};
    delete security['key'];
    security['keyFile'] = path.resolve(overrides.keyFile);
    raw.security = security;
  }
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const issues = result.error.issues.map((issue) => {
      const { segments, message } = explain(issue, raw);
      return { file: 'command line', line: undefined, keyPath: `${flagOf(segments)}: ${formatKeyPath(segments)}`, message };
    });
    throw new ConfigError('CONFIG_OVERRIDE', issues);
  }
  return result.data;
}

// ---------------------------------------------------------------------------------------------
// Helpers for the processes that consume a config

/** The manager a process runs: by identity, else the first with the role, else the only one. */
export function selectManager(config: WasmlbConfig, by: { identity?: string; role?: Role } = {}): ManagerConfig {
  let found: ManagerConfig | undefined;
  if (by.identity !== undefined) found = config.managers.find((m) => m.identity === by.identity);
  else if (by.role !== undefined) found = config.managers.find((m) => m.role === by.role);
  else found = config.managers[0];
  if (!found) {
    const what = by.identity !== undefined ? `identity ${by.identity}` : `role ${by.role ?? ''}`;
    throw new ConfigError('CONFIG_INVALID', [{ file: 'config', line: undefined, keyPath: 'managers', message: `no manager with ${what}` }]);
  }
  return found;
}

/** The fixed affinity store's timers for a manager. */
export function storeTimersOf(manager: ManagerConfig): StoreTimers {
  return {
    agentFixedTtlMs: manager.timers.fixedTtl,
    expirySlackMs: manager.timers.expirySlack,
    backupSlackMs: manager.timers.backupSlack,
    stickyMs: manager.timers.sticky,
  };
}

/** A VIP's backends as the balancers take them. */
export function vipBackends(vip: VipConfig): Backend[] {
  return vip.backends.map((b) => makeBackend(b.address, b.port, b.weight));
}

/** The IANA protocol number of a VIP (what affinity keys carry). */
export function vipProtocol(vip: VipConfig): number {
  return vip.protocol === 'udp' ? PROTO_UDP : PROTO_TCP;
}

/** A VIP as the VipTable takes it. */
export function vipSpecOf(vip: VipConfig): VipSpec {
  return { proto: vipProtocol(vip), ip: ipv4ToInt(vip.address), port: vip.port, backends: vipBackends(vip) };
}

/** Key bytes: from `key` (hex) or the hex text in `keyFile`; `keyPath` names the key in errors. */
function readKey(k: { key?: string | undefined; keyFile?: string | undefined }, keyPath: string, md5 = false): Buffer {
  if (k.key !== undefined) return Buffer.from(k.key, 'hex');
  const file = k.keyFile ?? '';
  let text: string;
  try {
    text = readFileSync(file, 'utf8').trim();
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err);
    throw new ConfigError('CONFIG_READ', [{ file, line: undefined, keyPath, message: `cannot read key: ${reason}` }]);
  }
  if (!/^(?:[0-9a-fA-F]{2}){16,}$/.test(text)) {
    throw new ConfigError('CONFIG_INVALID', [{ file, line: 1, keyPath, message: 'expected at least 16 bytes as hex digits' }]);
  }
  if (md5 && text.length > 2 * MD5_KEY_MAX) {
    throw new ConfigError('CONFIG_INVALID', [{ file, line: 1, keyPath, message: `an md5 key is at most ${MD5_KEY_MAX} bytes` }]);
  }
  return Buffer.from(text, 'hex');
}

/** The shared key bytes of the send key: from `key` (hex) or the hex text in `keyFile`. */
export function readSecurityKey(security: SecurityConfig): Buffer {
  return readKey(security, 'security.keyFile', security.algorithm === 'md5');
}

export type { BalancerName };

/** The protocol's send key from the security section (algorithm md5 is the protocol's keyed-md5). */
export function securityKeyOf(security: SecurityConfig): SecurityKey {
  return {
    id: security.keyId,
    secret: readSecurityKey(security),
    algorithm: security.algorithm === 'md5' ? 'keyed-md5' : 'hmac-sha256',
  };
}

/** Every key the section accepts: the send key first, then `accept` (one algorithm for all). */
export function securityKeysOf(security: SecurityConfig): SecurityKey[] {
  const send = securityKeyOf(security);
  const accepted = security.accept.map((a, i): SecurityKey => ({ id: a.keyId, secret: readKey(a, `security.accept[${i}].keyFile`, security.algorithm === 'md5'), algorithm: send.algorithm }));
  return [send, ...accepted];
}
