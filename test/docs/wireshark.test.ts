// The Wireshark dissector (docs/wireshark/wasmlb.lua) against real protocol datagrams: one message of every
// type from host/protocol's encoder (signed and unsigned, every segment and action kind), the golden
// vectors of test/fixtures/protocol, and several messages coalesced in one datagram, wrapped as UDP/IPv4
// frames in a pcap and read by `tshark -X lua_script:… -V`. Every message must dissect with its type name
// and no error; a broken datagram must be flagged (so the check can fail).
//
// A second capture is taken live on loopback while host/transport's control sockets send every message type
// (coalesced and one per datagram), so the dissector also sees the bytes exactly as the system sends them.
//
// Needs tshark (Debian: `apt-get install tshark`) and, for the loopback capture, the right to capture (root,
// or membership of the wireshark group). Without tshark the test fails and says so, unless
// WASMLB_SKIP_WIRESHARK=1 is set.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { encodePcap, LINKTYPE_ETHERNET } from '../../host/pcap/index.ts';
import { parseIPv4, TCP_SYN, tcpPacket, udpPacket } from '../../host/pcap/packets.ts';
import { ControlSocket } from '../../host/transport/udp.ts';
import { MESSAGE_TYPE_NAMES, MessageType, SegmentType } from '../../host/protocol/constants.ts';
import { ALLOWED } from '../../host/protocol/placement.ts';
import {
  DenyReason,
  encodeMessage,
  FixedAffinityFlag,
  IdentifierFlag,
  InterestBit,
  Keyring,
  prefixToMask,
  WildcardAffinityFlag,
} from '../../host/protocol/index.ts';
import type { ServiceMessage } from '../../host/protocol/index.ts';

const CODE_BY_NAME = new Map<string, number>(Object.values(MessageType).map((c) => [MESSAGE_TYPE_NAMES[c], c]));
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const LUA = join(ROOT, 'docs/wireshark/wasmlb.lua');
const GOLDEN_DIR = join(ROOT, 'test/fixtures/protocol');

const tshark = spawnSync('tshark', ['--version'], { encoding: 'utf8' });
const haveTshark = tshark.status === 0;
const skip = process.env['WASMLB_SKIP_WIRESHARK'] === '1';

const ip = parseIPv4;
const SYN = tcpPacket({ link: 'raw' }, { src: ip('198.51.100.7'), dst: ip('10.0.0.100') }, { sport: 40000, dport: 80, flags: TCP_SYN });
const vip = ip('10.0.0.100');
const client = ip('198.51.100.7');
const backend = ip('10.0.1.1');
const manager = ip('192.0.2.1');
const flow = { protocol: 6, srcAddr: client, dstAddr: vip, srcPort: 40000, dstPort: 80 };
const wildcard = {
  protocol: 6,
  srcAddr: 0,
  srcMask: 0,
  dstAddr: vip,
  dstMask: prefixToMask(32),
  srcPort: 0,
  dstPort: 80,
  flags: WildcardAffinityFlag.NewFlowsOnly,
  ttlMs: 3000,
};
const entry = {
  affinity: { ...flow, flags: 0, ttlMs: 10000 },
  remainingMs: 13500,
  backendAddr: backend,
  backendPort: 8080,
  owner: 1,
  actions: [{ kind: 'dispatch' as const, nextHop: ip('10.0.1.254') }],
};

/** One message of every type, between them every segment and action kind. */
function everyType(): ServiceMessage[] {
  let seq = 100;
  const base = (sender: number): { sender: number; sequence: number } => ({ sender, sequence: seq++ });
  return [
    {
      type: 'affinity-update-wildcard',
      ...base(1),
      identity: { addr: manager, hostName: 'mgr-a' },
      servicePrecedence: { value: 100, wildcardFirst: true },
      backupPrecedence: 200,
      managerInterestData: Buffer.from('svc-web'),
      wildcards: [
        {
          affinity: wildcard,
          actions: [
            { kind: 'interest-criteria', addr: manager, port: 7500, mask: InterestBit.NewFlow, data: true, copy: false, hold: true },
            { kind: 'advertise', addr: vip, mask: prefixToMask(32) },
          ],
        },
      ],
    },
    {
      type: 'affinity-update-fixed',
      ...base(1),
      agentInterestData: Buffer.from('cookie42'),
      fixed: [
        {
          affinity: { ...flow, flags: FixedAffinityFlag.Information, ttlMs: 10000 },
          actions: [
            { kind: 'nat', dstAddr: backend, dstPort: 8080 },
            { kind: 'sequence-adjust', seqDelta: 1000, initialSeq: 1, ackDelta: 0, initialAck: 0 },
            { kind: 'interest-criteria', addr: manager, port: 7500, mask: InterestBit.Fin | InterestBit.Rst, data: false, copy: true, hold: false },
          ],
        },
      ],
      packet: SYN,
    },
    {
      type: 'affinity-update-deny',
      ...base(2),
      identity: { addr: ip('192.0.2.9'), hostName: 'router1' },
      deniedType: 'affinity-update-wildcard',
      deniedSequence: 100,
      denied: [{ segmentType: SegmentType.ActionAdvertise, offset: 96, reason: DenyReason.UnsupportedAction }],
      wildcards: [wildcard],
      fixed: [{ ...flow, flags: 0, ttlMs: 10000 }],
    },
    {
      type: 'interest-match-wildcard',
      ...base(2),
      identifier: { ...flow, flags: 0, reason: InterestBit.NewFlow },
      wildcard,
      agentInterestData: Buffer.from('a'),
      managerInterestData: Buffer.from('svc-web'),
      packet: SYN,
    },
    {
      type: 'interest-match-fixed',
      ...base(2),
      identifier: { ...flow, flags: IdentifierFlag.Dispatched | IdentifierFlag.Information, reason: InterestBit.Information },
    },
    { type: 'ip-packet-only', ...base(2), packet: SYN },
    { type: 'replication', ...base(1), entries: [entry, { ...entry, actions: [] }] },
    { type: 'replication-ack', ...base(3), acked: [101, 0x1_0000_0002] },
    { type: 'resync-request', ...base(3), resync: { resyncId: 7, epoch: 3, entryCount: 0 } },
    { type: 'resync-data', ...base(1), resync: { resyncId: 7, epoch: 3, entryCount: 1 }, entries: [entry] },
    { type: 'resync-done', ...base(1), resync: { resyncId: 7, epoch: 3, entryCount: 1 } },
    {
      type: 'heartbeat',
      ...base(1),
      identity: { addr: manager, hostName: 'mgr-a' },
      heartbeat: { role: 'primary', resyncState: 'complete', epoch: 3, backupPrecedence: 200, intervalMs: 50 },
    },
  ];
}

interface Frame {
  /** Message type names the frame carries, in order. */
  types: string[];
  payload: Buffer;
}

function frames(): Frame[] {
  const hmac = new Keyring([{ id: 1, secret: 'operations-test-key-0123456789ab', algorithm: 'hmac-sha256' }]);
  const md5 = new Keyring([{ id: 2, secret: 'old-peer-key', algorithm: 'keyed-md5' }]);
  const out: Frame[] = [];
  const msgs = everyType();
  for (const m of msgs) out.push({ types: [m.type], payload: encodeMessage(m) });
  for (const m of msgs) out.push({ types: [m.type], payload: encodeMessage(m, { security: hmac }) });
  out.push({ types: ['heartbeat'], payload: encodeMessage(msgs[msgs.length - 1]!, { security: md5 }) });
  // The transport coalesces messages queued in one event-loop turn into one datagram.
  const coalesced = [msgs[3]!, msgs[4]!, msgs[7]!];
  out.push({ types: coalesced.map((m) => m.type), payload: Buffer.concat(coalesced.map((m) => encodeMessage(m, { security: hmac }))) });
  // The protocol helper's golden vectors, bytes as committed.
  for (const file of readdirSync(GOLDEN_DIR).filter((f) => f.endsWith('.hex')).sort()) {
    const payload = Buffer.from(readFileSync(join(GOLDEN_DIR, file), 'utf8').replace(/\s+/g, ''), 'hex');
    out.push({ types: [MESSAGE_TYPE_NAMES[payload[1]! as keyof typeof MESSAGE_TYPE_NAMES]], payload });
  }
  return out;
}

function writeCapture(dir: string, name: string, payloads: Buffer[], dport = 7400): string {
  const file = join(dir, name);
  const packets = payloads.map((payload, i) => ({
    data: udpPacket({}, { src: manager, dst: ip('192.0.2.9') }, { sport: 7500, dport, payload }),
    tsSec: 1_700_000_000 + i,
    tsNsec: 0,
  }));
  writeFileSync(file, encodePcap({ linkType: LINKTYPE_ETHERNET }, packets));
  return file;
}

/** tshark -V output split per frame, and stderr. */
function dissect(file: string): { frames: string[]; stderr: string } {
  const res = spawnSync('tshark', ['-X', `lua_script:${LUA}`, '-r', file, '-V'], { encoding: 'utf8', maxBuffer: 64 << 20 });
  expect(res.status, res.stderr).toBe(0);
  const blocks = res.stdout.split(/^(?=Frame \d+: )/m).filter((b) => b.startsWith('Frame '));
  return { frames: blocks, stderr: res.stderr };
}

function wasmlbPart(block: string): string {
  const i = block.indexOf('wasmlb Service Protocol');
  return i < 0 ? '' : block.slice(i);
}

describe('docs/wireshark/wasmlb.lua', () => {
  it('tshark is installed (CI installs it; set WASMLB_SKIP_WIRESHARK=1 to skip locally)', () => {
    if (skip) return;
    expect(
      haveTshark,
      'tshark is missing: the Wireshark dissector cannot be checked. Install it (apt-get install tshark) ' +
        'or set WASMLB_SKIP_WIRESHARK=1.',
    ).toBe(true);
  });

  it('carries the code tables of the protocol (no tshark needed)', () => {
    const lua = readFileSync(LUA, 'utf8');
    const block = (name: string): string => {
      const m = new RegExp(`^local ${name} = \\{\\n?([\\s\\S]*?)\\n?\\}`, 'm').exec(lua);
      expect(m, name).not.toBeNull();
      return m![1]!;
    };
    const msgTypes = Object.fromEntries([...block('MSG_TYPES').matchAll(/\[(\d+)\] = "([a-z-]+)"/g)].map((m) => [Number(m[1]), m[2]]));
    expect(msgTypes).toEqual(Object.fromEntries(Object.entries(MESSAGE_TYPE_NAMES).map(([c, n]) => [Number(c), n])));
    const seg = Object.fromEntries([...block('SEG').matchAll(/([A-Z_]+) = (\d+)/g)].map((m) => [m[1], Number(m[2])]));
    const snake = (k: string): string => k.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase();
    expect(seg).toEqual(Object.fromEntries(Object.entries(SegmentType).map(([k, v]) => [snake(k), v])));
    // ALLOWED: every message type's top-level segments, as in host/protocol/placement.ts.
    const allowedLua = lua.slice(lua.indexOf('local ALLOWED = {}'), lua.indexOf('local MANDATORY'));
    const rows = [...allowedLua.matchAll(/\[(\d+)\] = \{ ([\d, ]+) \}/g)];
    expect(rows.map((r) => Number(r[1])).sort((a, b) => a - b)).toEqual(Object.values(MessageType).sort((a, b) => a - b));
    for (const r of rows) {
      const type = Number(r[1]);
      const fromLua = r[2]!.split(',').map((x) => Number(x.trim())).sort((a, b) => a - b);
      const fromTs = Object.values(SegmentType).filter((c) => ALLOWED[type * 64 + c] === 1).sort((a, b) => a - b);
      expect(fromLua, `allowed in ${MESSAGE_TYPE_NAMES[type as keyof typeof MESSAGE_TYPE_NAMES]}`).toEqual(fromTs);
    }
  });

  it.skipIf(!haveTshark)('dissects every message type and segment without errors', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wasmlb-ws-'));
    const list = frames();
    // Every message type is there, and every segment type appears in what we send.
    const typesSent = new Set(list.flatMap((f) => f.types));
    expect([...typesSent].sort()).toEqual(Object.values(MESSAGE_TYPE_NAMES).sort());

    const out = dissect(writeCapture(dir, 'all.pcap', list.map((f) => f.payload)));
    expect(out.stderr).not.toMatch(/Lua: Error|lua_script|\[string/);
    expect(out.frames).toHaveLength(list.length);
    out.frames.forEach((block, i) => {
      const part = wasmlbPart(block);
      const want = list[i]!.types;
      const where = `frame ${i + 1} (${want.join(', ')})`;
      expect(part, `${where}: not dissected as wasmlb`).not.toBe('');
      expect(block, where).not.toContain('[Malformed Packet');
      expect(block, where).not.toContain('Expert Info (Error');
      expect(block, where).not.toContain('Expert Info (Warning');
      expect(part, where).toContain(`wasmlb Service Protocol, ${want.length} message(s)`);
      const got = [...part.matchAll(/^ {8}Message Type: ([a-z-]+) \((\d+)\)$/gm)].map((m) => m[1]);
      expect(got, where).toEqual(want);
      for (const t of want) expect(part, where).toContain(`Message Type: ${t} (${CODE_BY_NAME.get(t)})`);
    });
    const all = out.frames.map(wasmlbPart).join('\n');
    for (const [name, code] of Object.entries(SegmentType)) {
      expect(all, `segment ${name} never dissected`).toMatch(new RegExp(`= Segment Type: [A-Za-z ]+ \\(${code}\\)$`, 'm'));
    }
    // Field values, not just names: a few spot checks.
    expect(all).toContain('Host Name: mgr-a');
    expect(all).toContain('Algorithm: HMAC-SHA256 (1)');
    expect(all).toContain('Algorithm: Keyed MD5 (2)');
    expect(all).toContain('Fixed Affinity: TCP 198.51.100.7:40000 -> 10.0.0.100:80, ttl 10000 ms');
    expect(all).toContain('NAT Action: dst 10.0.1.1, dport 8080');
    expect(all).toContain('Replication Entry: TCP 198.51.100.7:40000 -> 10.0.0.100:80, ttl 10000 ms => 10.0.1.1:8080');
    expect(all).toContain('Acknowledged Sequence: 4294967298');
    expect(all).toContain('Heartbeat Data: primary, epoch 3, resync complete');
    expect(all).toContain('Denied: Advertise Action, unsupported action, offset 96');
    // The carried IP packet is dissected as IP.
    expect(all).toContain('Internet Protocol Version 4, Src: 198.51.100.7, Dst: 10.0.0.100');
  });

  it.skipIf(!haveTshark)('flags broken datagrams as errors, odd segments as warnings, and finds wasmlb on other ports', () => {
    const dir = mkdtempSync(join(tmpdir(), 'wasmlb-ws-'));
    const good = encodeMessage(everyType()[1]!);
    const truncatedSegment = Buffer.from(good);
    truncatedSegment.writeUInt16BE(0xfff0, 22); // first segment claims 65520 data bytes
    const badLength = Buffer.from(good);
    badLength.writeUInt32BE(good.length + 8, 4); // header claims more than the datagram
    const wrongSize = Buffer.from(encodeMessage(everyType()[11]!));
    const hb = wrongSize.indexOf(Buffer.from([0x80, 0x33])); // heartbeat data segment header
    wrongSize.writeUInt16BE(12, hb + 2); // 12 data bytes instead of 16 (padding still aligned)
    const out = dissect(writeCapture(dir, 'bad.pcap', [truncatedSegment, badLength, wrongSize]));
    expect(out.frames).toHaveLength(3);
    for (const block of out.frames) {
      expect(wasmlbPart(block)).not.toBe('');
      expect(block).toContain('Expert Info (Error/Malformed)');
    }
    expect(out.frames[0]).toContain('runs past its container');
    expect(out.frames[1]).toContain('message length');
    expect(out.frames[2]).toContain('Heartbeat Data: 12 data bytes, expected 16');

    // Well-formed but unusual segments are warnings, not errors.
    const withSegments = (m: Buffer, extra: Buffer): Buffer => {
      const b = Buffer.concat([m, extra]);
      b.writeUInt32BE(b.length, 4);
      return b;
    };
    const heartbeat = encodeMessage(everyType()[11]!);
    const fixedSeg = Buffer.from('80040014' + '06000000' + 'c6336407' + '0a000064' + '9c400050' + '00002710', 'hex');
    const unknownSeg = Buffer.from('fabc0004deadbeef', 'hex');
    const odd = dissect(writeCapture(dir, 'odd.pcap', [withSegments(heartbeat, fixedSeg), withSegments(heartbeat, unknownSeg)]));
    expect(odd.frames[0]).toContain('Fixed Affinity: TCP 198.51.100.7:40000 -> 10.0.0.100:80');
    expect(odd.frames[0]).toContain('Expert Info (Warning/Protocol): Fixed Affinity not allowed in heartbeat (a receiver denies it)');
    expect(odd.frames[1]).toContain('Expert Info (Warning/Undecoded): unknown segment type 31420 (required: a receiver refuses the message)');
    for (const block of odd.frames) expect(block).not.toContain('Expert Info (Error');

    // Rule breaches the decoder refuses: missing mandatory segment, duplicate singleton, orphan action list.
    const bare = Buffer.from(heartbeat.subarray(0, 20));
    bare.writeUInt32BE(20, 4);
    const hbSeg = heartbeat.subarray(heartbeat.length - 20);
    const resyncData = encodeMessage({ type: 'resync-data', sender: 1, sequence: 5, resync: { resyncId: 7, epoch: 3, entryCount: 0 }, entries: [] });
    const actionList = Buffer.from('80100008' + '80240004' + '0a0001fe', 'hex');
    const rules = dissect(writeCapture(dir, 'rules.pcap', [bare, withSegments(heartbeat, hbSeg), withSegments(resyncData, actionList)]));
    expect(rules.frames[0]).toContain('Expert Info (Error/Malformed): heartbeat lacks its Heartbeat Data segment (refused: MISSING_SEGMENT)');
    expect(rules.frames[1]).toContain('Expert Info (Error/Malformed): Heartbeat Data appears twice (refused: DUPLICATE_SEGMENT)');
    expect(rules.frames[2]).toContain('Expert Info (Error/Malformed): action list does not follow an affinity segment (refused: ORPHAN_ACTION_LIST)');
    expect(rules.frames[2]).toContain('Dispatch Action: next hop 10.0.1.254');

    // Heuristic detection: a port outside the registered ranges.
    const other = dissect(writeCapture(dir, 'port.pcap', [good], 40123));
    expect(wasmlbPart(other.frames[0]!)).toContain('Message Type: affinity-update-fixed (2)');
  });

  it.skipIf(!haveTshark)('dissects traffic captured on loopback from the real control sockets', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'wasmlb-ws-'));
    const hmac = new Keyring([{ id: 1, secret: 'operations-test-key-0123456789ab', algorithm: 'hmac-sha256' }]);
    const rx = await ControlSocket.open({ bind: { address: '127.0.0.1', port: 0 } });
    const tx = await ControlSocket.open({ bind: { address: '127.0.0.1', port: 0 } });
    const file = join(dir, 'live.pcapng');
    // tshark captures to the file and prints each packet as it goes (-P -l): a probe datagram showing up
    // proves the capture is running before the protocol traffic starts.
    const cap = spawn('tshark', ['-i', 'lo', '-f', `udp port ${rx.local.port}`, '-w', file, '-P', '-l'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let capOut = '';
    let capErr = '';
    cap.stdout.on('data', (d: Buffer) => (capOut += d.toString()));
    cap.stderr.on('data', (d: Buffer) => (capErr += d.toString()));
    try {
      // tshark's first start on a loaded machine (Lua dissector loading) has taken over 15 s
      const deadline = Date.now() + 40_000;
      while (!capOut.includes('Len=5')) {
        if (cap.exitCode !== null || Date.now() > deadline) throw new Error(`capture on lo did not start: ${capErr}`);
        tx.sendNow(Buffer.from('probe'), rx.local);
        await new Promise((r) => setTimeout(r, 100));
      }
      const msgs = everyType();
      let received = 0;
      const encoded = msgs.map((m) => encodeMessage(m, { security: hmac }));
      const expected = 2 * encoded.reduce((n, b) => n + b.length, 0);
      const all = new Promise<void>((resolve) => {
        rx.onDatagram((d) => {
          if (d.length !== 5) received += d.length;
          if (received >= expected) resolve();
        });
      });
      // Queued in one turn: the transport coalesces them into one datagram. Then one datagram each.
      for (const b of encoded) tx.send(b, rx.local);
      await new Promise((r) => setTimeout(r, 20));
      for (const b of encoded) tx.sendNow(b, rx.local);
      await all;
      const frames = 1 + msgs.length;
      const until = Date.now() + 10_000;
      const seen = (): number => capOut.split('\n').filter((l) => /Len=\d+/.test(l) && !l.includes('Len=5')).length;
      while (seen() < frames && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
    } finally {
      cap.kill('SIGINT');
      await new Promise((r) => (cap.exitCode === null ? cap.once('exit', r) : r(null)));
      await tx.close();
      await rx.close();
    }
    const dissected = dissect(file);
    const out = { frames: dissected.frames.filter((b) => wasmlbPart(b) !== '') };
    expect(out.frames.length).toBe(1 + everyType().length);
    const names = out.frames.map((b) => [...wasmlbPart(b).matchAll(/^ {8}Message Type: ([a-z-]+) \(\d+\)$/gm)].map((m) => m[1]));
    const want = everyType().map((m) => m.type);
    expect(names[0]).toEqual(want);
    expect(names.slice(1).map((n) => n[0])).toEqual(want);
    for (const block of out.frames) {
      expect(block).not.toContain('[Malformed Packet');
      expect(block).not.toContain('Expert Info (Error');
      expect(block).not.toContain('Expert Info (Warning');
    }
  });

  it.skipIf(!haveTshark)('lists the dissector among tshark protocols', () => {
    const protocols = execFileSync('tshark', ['-G', 'protocols', '-X', `lua_script:${LUA}`], { encoding: 'utf8', maxBuffer: 64 << 20 });
    expect(protocols).toMatch(/^wasmlb Service Protocol\tWASMLB\twasmlb$/m);
  });
});
