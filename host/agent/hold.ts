// The agent's hold queue: packets whose flow's manager asked (hold flag) to keep them until its
// affinity update arrives. Bounded in packets and in time: when it is full, or a packet's deadline
// passes, the packet goes to the manager instead; nothing leaves it silently.

export interface HeldPacket {
  flow: string;
  bytes: Buffer;
  deadline: number;
  /** Opaque context the agent needs to send it on (e.g. which interest target). */
  target: number;
  /** Owner (firmware index of the manager) of the affinity that held it. */
  owner: number;
}

export class HoldQueue {
  private readonly byFlow = new Map<string, HeldPacket[]>();
  /** Insertion order = deadline order, since the deadline is now + a constant. */
  private fifo: HeldPacket[] = [];
  private head = 0;
  private held = 0;
  readonly stats = { held: 0, released: 0, expired: 0, overflow: 0 };

  constructor(
    readonly capacity: number,
    readonly deadlineMs: number,
  ) {
    if (!Number.isInteger(capacity) || capacity < 0) throw new RangeError(`hold queue capacity ${capacity}`);
  }

  get size(): number {
    return this.held;
  }

  /** Whether packets of `flow` are waiting (its interest match has been sent). */
  has(flow: string): boolean {
    return this.byFlow.has(flow);
  }

  /** Keeps a copy of `bytes`; false when the queue is full (the caller sends it to the manager). */
  hold(flow: string, bytes: Uint8Array, target: number, nowMs: number, owner = 0): boolean {
    if (this.held >= this.capacity) {
      this.stats.overflow++;
      return false;
    }
    const p: HeldPacket = { flow, bytes: Buffer.from(bytes), deadline: nowMs + this.deadlineMs, target, owner };
    let list = this.byFlow.get(flow);
    if (!list) this.byFlow.set(flow, (list = []));
    list.push(p);
    this.fifo.push(p);
    this.held++;
    this.stats.held++;
    return true;
  }

  /** The flow's held packets in arrival order (its affinity arrived: run them again). */
  release(flow: string): HeldPacket[] {
    const list = this.byFlow.get(flow);
    if (!list) return [];
    this.byFlow.delete(flow);
    this.held -= list.length;
    this.stats.released += list.length;
    for (const p of list) p.flow = ''; // marks it gone for the fifo
    this.compact();
    return list;
  }

  /** Every packet held for manager `owner`, in arrival order (it was replaced: run them again). */
  releaseOwner(owner: number): HeldPacket[] {
    const out: HeldPacket[] = [];
    for (const [flow, list] of this.byFlow) {
      if (list[0]!.owner !== owner) continue;
      out.push(...this.release(flow));
    }
    return out;
  }

  /** Packets whose deadline has passed, oldest first; the caller sends them to the manager. */
  expire(nowMs: number): HeldPacket[] {
    const out: HeldPacket[] = [];
    while (this.head < this.fifo.length) {
      const p = this.fifo[this.head]!;
      if (p.flow === '') {
        this.head++;
        continue;
      }
      if (p.deadline > nowMs) break;
      this.head++;
      const list = this.byFlow.get(p.flow)!;
      list.shift();
      if (list.length === 0) this.byFlow.delete(p.flow);
      this.held--;
      this.stats.expired++;
      out.push(p);
    }
    this.compact();
    return out;
  }

  private compact(): void {
    if (this.head > 1024 && this.head * 2 > this.fifo.length) {
      this.fifo = this.fifo.slice(this.head);
      this.head = 0;
    }
    if (this.held === 0) {
      this.fifo = [];
      this.head = 0;
    }
  }
}
