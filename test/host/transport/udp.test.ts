import { afterEach, describe, expect, it } from 'vitest';
import { ControlSocket, MAX_DATAGRAM, type Endpoint } from '../../../host/transport/udp.ts';

const open: ControlSocket[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()));
});

async function sock(opts: Parameters<typeof ControlSocket.open>[0]): Promise<ControlSocket> {
  const s = await ControlSocket.open(opts);
  open.push(s);
  return s;
}

function collect(s: ControlSocket, n: number): Promise<Array<{ d: Buffer; from: Endpoint }>> {
  const got: Array<{ d: Buffer; from: Endpoint }> = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`got ${got.length} of ${n} datagrams`)), 3000);
    s.onDatagram((d, from) => {
      got.push({ d, from });
      if (got.length === n) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

describe('ControlSocket', () => {
  it('coalesces messages queued in one turn into one datagram per destination', async () => {
    const rx = await sock({ bind: { address: '127.0.0.1', port: 0 } });
    const tx = await sock({ bind: { address: '127.0.0.1', port: 0 } });
    const got = collect(rx, 1);
    tx.send(Buffer.from('aaaa'), rx.local);
    tx.send(Buffer.from('bb'), rx.local);
    const [first] = await got;
    expect(first!.d.toString()).toBe('aaaabb');
    expect(first!.from.port).toBe(tx.local.port);
    expect(tx.stats.datagramsOut).toBe(1);
  });

  it('starts a new datagram before exceeding the size limit', async () => {
    const rx = await sock({ bind: { address: '127.0.0.1', port: 0 } });
    const tx = await sock({ bind: { address: '127.0.0.1', port: 0 } });
    const got = collect(rx, 2);
    const big = Buffer.alloc(MAX_DATAGRAM - 10, 1);
    tx.send(big, rx.local);
    tx.send(Buffer.alloc(20, 2), rx.local);
    const ds = await got;
    expect(ds.map((x) => x.d.length).sort((a, b) => a - b)).toEqual([20, MAX_DATAGRAM - 10]);
  });

  it('keeps datagrams per address when one endpoint object is changed in place between sends', async () => {
    const rx1 = await sock({ bind: { address: '127.0.0.1', port: 0 } });
    const rx2 = await sock({ bind: { address: '127.0.0.1', port: 0 } });
    const tx = await sock({ bind: { address: '127.0.0.1', port: 0 } });
    const g1 = collect(rx1, 1);
    const g2 = collect(rx2, 1);
    const to = { address: '127.0.0.1', port: rx1.local.port };
    tx.send(Buffer.from('one'), to);
    to.port = rx2.local.port;
    tx.send(Buffer.from('two'), to);
    expect((await g1)[0]!.d.toString()).toBe('one');
    expect((await g2)[0]!.d.toString()).toBe('two');
  });

  it('delivers multicast on loopback to every joined listener', async () => {
    const group = '239.255.77.1';
    const port = 40000 + Math.floor(Math.random() * 20000);
    const a = await sock({ bind: { address: '0.0.0.0', port }, multicast: { group, interface: '127.0.0.1' } });
    const b = await sock({ bind: { address: '0.0.0.0', port }, multicast: { group, interface: '127.0.0.1' } });
    const tx = await sock({ bind: { address: '127.0.0.1', port: 0 }, multicast: { group, interface: '127.0.0.1' } });
    const ga = collect(a, 1);
    const gb = collect(b, 1);
    tx.send(Buffer.from('wildcards'), { address: group, port });
    expect((await ga)[0]!.d.toString()).toBe('wildcards');
    expect((await gb)[0]!.d.toString()).toBe('wildcards');
  });

  it('reports a bind failure as a typed error', async () => {
    const a = await sock({ bind: { address: '127.0.0.1', port: 0 } });
    await expect(ControlSocket.open({ bind: { address: '127.0.0.1', port: a.local.port }, reuseAddr: false })).rejects.toMatchObject({
      code: 'BIND_FAILED',
    });
  });
});
