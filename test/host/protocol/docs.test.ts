// docs/protocol.md is the byte-level contract: its code tables must agree with host/protocol/constants.ts.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { MESSAGE_TYPE_NAMES, SegmentBytes, SegmentType } from '../../../host/protocol/constants.ts';

const doc = readFileSync(new URL('../../../docs/protocol.md', import.meta.url), 'utf8');

/** Rows `| code | second column | …` of the table under `heading`. */
function table(heading: string): Array<[number, string, string]> {
  const start = doc.indexOf(`\n## ${heading}\n`);
  expect(start, heading).toBeGreaterThan(0);
  const rows: Array<[number, string, string]> = [];
  for (const line of doc.slice(start).split('\n').slice(2)) {
    if (line.startsWith('#')) break;
    const m = /^\|\s*(\d+)\s*\|\s*([^|]+?)\s*\|\s*([^|]+?)\s*\|/.exec(line);
    if (m) rows.push([Number(m[1]), m[2]!, m[3]!]);
  }
  return rows;
}

describe('docs/protocol.md', () => {
  it('lists every message type with its code and name', () => {
    const rows = table('Message types').map(([code, name]) => [code, name.replace(/`/g, '')]);
    expect(rows).toEqual(Object.entries(MESSAGE_TYPE_NAMES).map(([code, name]) => [Number(code), name]));
  });

  it('lists every segment type with its code, and the data length of the fixed-size ones', () => {
    const rows = table('Segment types');
    const byCode = new Map(rows.map(([code, name, len]) => [code, { name, len }]));
    expect([...byCode.keys()].sort((a, b) => a - b)).toEqual(Object.values(SegmentType).sort((a, b) => a - b));
    const fixedSizes: Array<[number, number]> = [
      [SegmentType.WildcardAffinity, SegmentBytes.WildcardAffinity],
      [SegmentType.FixedAffinity, SegmentBytes.FixedAffinity],
      [SegmentType.AffinityIdentifier, SegmentBytes.AffinityIdentifier],
      [SegmentType.ServicePrecedence, SegmentBytes.ServicePrecedence],
      [SegmentType.BackupPrecedence, SegmentBytes.BackupPrecedence],
      [SegmentType.ActionNat, SegmentBytes.ActionNat],
      [SegmentType.ActionSequenceAdjust, SegmentBytes.ActionSequenceAdjust],
      [SegmentType.ActionInterestCriteria, SegmentBytes.ActionInterestCriteria],
      [SegmentType.ActionDispatch, SegmentBytes.ActionDispatch],
      [SegmentType.ReplicationEntry, SegmentBytes.ReplicationEntry],
      [SegmentType.ResyncMarker, SegmentBytes.ResyncMarker],
      [SegmentType.HeartbeatData, SegmentBytes.HeartbeatData],
    ];
    for (const [code, bytes] of fixedSizes) expect(byCode.get(code)?.len, `segment ${code}`).toBe(String(bytes));
    // every segment has its own section `### <code> — ...` (8 and 9 share one)
    for (const code of Object.values(SegmentType)) {
      expect(new RegExp(`^### (\\d+, )?${code}(, \\d+)? — `, 'm').test(doc), `section for segment ${code}`).toBe(true);
    }
  });
});
