// An in-process forwarding agent for multi-process tests: real firmware, a real UDP control socket,
// and a sink that records what the agent forwards. Managers run as separate `wasmlb` processes.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ForwardingAgent, type AgentOptions } from '../../host/agent/agent.ts';
import { ForwardingFirmware, type LoadOptions } from '../../host/agent/wasm.ts';
import { ServiceChannel } from '../../host/transport/channel.ts';
import { ControlSocket } from '../../host/transport/udp.ts';

export interface Forwarded {
  packet: Buffer;
  nextHop: number;
}

export class TestAgent {
  private timer: NodeJS.Timeout;

  private constructor(
    readonly fw: ForwardingFirmware,
    readonly agent: ForwardingAgent,
    readonly channel: ServiceChannel,
    readonly out: Forwarded[],
  ) {
    this.timer = setInterval(() => agent.tick(), 10);
  }

  static async start(load: LoadOptions = {}, agentOpts: Partial<AgentOptions> = {}): Promise<TestAgent> {
    const fw = await ForwardingFirmware.load({ budgetBytes: 8 * 1024 * 1024, ...load });
    const socket = await ControlSocket.open({ bind: { address: '127.0.0.1', port: 0 } });
    const channel = new ServiceChannel({ socket, sender: 0x7e570001 });
    const out: Forwarded[] = [];
    const agent = new ForwardingAgent({
      firmware: fw,
      control: channel,
      now: () => Math.floor(performance.now()),
      sink: { send: (p, nextHop) => out.push({ packet: Buffer.from(p), nextHop }) },
      ...agentOpts,
    });
    return new TestAgent(fw, agent, channel, out);
  }

  get endpoint(): string {
    return `${this.channel.socket.local.address}:${this.channel.socket.local.port}`;
  }

  /** Runs packets through the agent now. */
  send(...packets: Uint8Array[]): void {
    this.agent.runPackets(packets, 0);
  }

  /** Waits until `pred` holds (polling), or fails with `what`. */
  async until(pred: () => boolean, what: string, timeoutMs = 5000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** Sends packets and waits until `n` more packets came out of the agent; returns them. */
  async forward(n: number, ...packets: Uint8Array[]): Promise<Forwarded[]> {
    const start = this.out.length;
    this.send(...packets);
    await this.until(() => this.out.length >= start + n, `${n} forwarded packet(s)`);
    return this.out.slice(start, start + n);
  }

  async close(): Promise<void> {
    clearInterval(this.timer);
    await this.channel.close();
  }
}

/** Writes a config file into a fresh temp dir; returns its path and a cleanup. */
export function writeConfig(yaml: string): { file: string; cleanup: () => void } {
  const dir = mkdtempSync(path.join(tmpdir(), 'wasmlb-test-'));
  const file = path.join(dir, 'config.yaml');
  writeFileSync(file, yaml);
  return { file, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}
