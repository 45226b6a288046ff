// Reachability probes of remote backends: the state machine (pure, fast-check) and the prober over
// real sockets on loopback.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import { BackendProbe, probeStep, tcpReachable } from './probe.js';

describe('backend probes', () => {
  it('one failure takes a backend out; it is back only after two good probes in a row', () => {
    fc.assert(fc.property(fc.array(fc.boolean(), { maxLength: 60 }), (results) => {
      let s = { up: true, streak: 0 };
      for (const [i, ok] of results.entries()) {
        s = probeStep(s, ok);
        const seen = results.slice(0, i + 1);
        const last = seen.lastIndexOf(false);
        // Up exactly when it never failed, or at least two good probes followed its last failure.
        assert.equal(s.up, last < 0 || seen.length - 1 - last >= 2);
      }
    }), { seed: 20261207, numRuns: 300 });
  });

  it('tells a listening port from a closed one, and reports changes', async () => {
    const srv = net.createServer((c) => c.destroy());
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    const port = (srv.address() as net.AddressInfo).port;
    assert.equal(await tcpReachable('127.0.0.1', port, 300), true);
    const downs: string[] = [];
    const probe = new BackendProbe({ intervalMs: 20, onChange: (t, up) => { if (!up) downs.push(`${t.host}:${t.port}`); } });
    try {
      probe.set([{ host: '127.0.0.1', port }]);
      assert.equal(probe.isUp('127.0.0.1', port), true);
      await new Promise<void>((r) => srv.close(() => r()));
      for (let i = 0; i < 100 && probe.isUp('127.0.0.1', port); i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(probe.isUp('127.0.0.1', port), false);
      assert.deepEqual(downs, [`127.0.0.1:${port}`]);
      assert.equal(await tcpReachable('127.0.0.1', port, 300), false);
    } finally {
      probe.stop();
    }
  });
});
