import { describe, expect, it } from 'vitest';
import { HoldQueue } from '../../../host/agent/hold.ts';

const pkt = (n: number): Uint8Array => Uint8Array.of(0x45, n);

describe('HoldQueue', () => {
  it('releases a flow’s packets in arrival order and keeps other flows', () => {
    const q = new HoldQueue(10, 100);
    q.hold('a', pkt(1), 0, 0);
    q.hold('b', pkt(2), 0, 0);
    q.hold('a', pkt(3), 0, 1);
    expect(q.release('a').map((p) => p.bytes[1])).toEqual([1, 3]);
    expect(q.size).toBe(1);
    expect(q.release('a')).toEqual([]);
    expect(q.release('b').map((p) => p.bytes[1])).toEqual([2]);
    expect(q.size).toBe(0);
  });

  it('refuses when full so the packet goes to the manager, and counts it', () => {
    const q = new HoldQueue(2, 100);
    expect(q.hold('a', pkt(1), 0, 0)).toBe(true);
    expect(q.hold('a', pkt(2), 0, 0)).toBe(true);
    expect(q.hold('a', pkt(3), 0, 0)).toBe(false);
    expect(q.stats.overflow).toBe(1);
  });

  it('hands out packets past their deadline, oldest first, skipping released ones', () => {
    const q = new HoldQueue(10, 50);
    q.hold('a', pkt(1), 7, 0);
    q.hold('b', pkt(2), 7, 10);
    q.hold('c', pkt(3), 7, 20);
    q.release('b');
    expect(q.expire(49)).toEqual([]);
    expect(q.expire(60).map((p) => p.bytes[1])).toEqual([1]);
    expect(q.expire(1000).map((p) => [p.bytes[1], p.target])).toEqual([[3, 7]]);
    expect(q.size).toBe(0);
    expect(q.stats).toMatchObject({ held: 3, released: 1, expired: 2 });
  });

  it('copies the bytes, since the batch region is reused', () => {
    const q = new HoldQueue(1, 10);
    const b = pkt(9);
    q.hold('a', b, 0, 0);
    b[1] = 0;
    expect(q.release('a')[0]!.bytes[1]).toBe(9);
  });
});
