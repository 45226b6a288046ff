// The nftables fast path: the rendered table (pure), and real kernel DNAT on loopback (root + nft).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { NftFastPath, renderTable, runNft } from './nft.js';

describe('nftables fast path: rendering', () => {
  it('one rule per port, round robin over several backends, a plain DNAT for one', () => {
    const t = renderTable('yun_x', [
      { address: '127.100.0.1', port: 80, backends: [{ host: '127.0.0.2', port: 4001 }, { host: '127.0.0.3', port: 4002 }] },
      { address: null, port: 8091, backends: [{ host: '10.0.0.5', port: 80 }] },
      { address: '127.100.0.2', port: 81, backends: [] },
    ]);
    assert.match(t, /^table ip yun_x\ndelete table ip yun_x\n/);
    assert.match(t, /ip daddr 127\.100\.0\.1 tcp dport 80 dnat to numgen inc mod 2 map \{ 0 : 127\.0\.0\.2 \. 4001, 1 : 127\.0\.0\.3 \. 4002 \}/);
    assert.match(t, /fib daddr type local tcp dport 8091 dnat to 10\.0\.0\.5:80/);
    assert.doesNotMatch(t, /dport 81/, 'no backends: left to the proxy');
    assert.equal(t.match(/type nat hook (output|prerouting)/g)?.length, 2);
  });

  it('backends on other nodes: masqueraded, and left to the proxy for clients with a 127/8 source', () => {
    const t = renderTable('yun_x', [
      { address: null, port: 8091, backends: [{ host: '10.0.0.5', port: 80 }, { host: '10.0.1.5', port: 80, remote: true }] },
      { address: '127.100.0.1', port: 80, backends: [{ host: '127.0.0.2', port: 4001 }] },
    ]);
    assert.match(t, /set remote_backends \{\n\s+type ipv4_addr \. inet_service\n\s+elements = \{ 10\.0\.1\.5 \. 80 \}/);
    assert.match(t, /chain output \{[\s\S]*?ip saddr != 127\.0\.0\.0\/8 fib daddr type local tcp dport 8091 dnat/);
    assert.match(t, /chain output \{[\s\S]*?\n    ip daddr 127\.100\.0\.1 tcp dport 80 dnat to 127\.0\.0\.2:4001/, 'a local-only rule keeps every source');
    assert.match(t, /chain prerouting \{[\s\S]*?\n    fib daddr type local tcp dport 8091 dnat/);
    assert.match(t, /type nat hook postrouting priority 100; policy accept;\n    ct status dnat ip daddr \. tcp dport @remote_backends masquerade/);
    assert.doesNotMatch(renderTable('yun_x', [{ address: null, port: 1, backends: [{ host: '10.0.0.5', port: 80 }] }]), /postrouting|remote_backends/);
  });

  it('refuses anything that is not an address, a port or a table name', () => {
    assert.throws(() => renderTable('x; flush ruleset', []));
    assert.throws(() => renderTable('t', [{ address: '1.2.3.4; drop', port: 1, backends: [{ host: '1.1.1.1', port: 1 }] }]));
    assert.throws(() => renderTable('t', [{ address: null, port: 70000, backends: [{ host: '1.1.1.1', port: 1 }] }]));
    assert.throws(() => renderTable('t', [{ address: null, port: 80, backends: [{ host: 'evil', port: 1 }] }]));
  });
});

describe('nftables fast path: kernel DNAT on loopback', () => {
  const root = process.getuid?.() === 0;
  it('spreads connections to a VIP over two local servers, follows updates, removes its table', async (t) => {
    const nftOk = root && (await runNft(['--version'])).code === 0;
    if (!nftOk) {
      if (process.env.YUN_REQUIRE_ALL === '1') throw new Error('required but unavailable (YUN_REQUIRE_ALL=1): needs root and nft');
      t.skip('needs root and nft');
      return;
    }
    const servers = await Promise.all(['a', 'b'].map((name) => new Promise<net.Server>((resolve) => {
      const s = net.createServer((c) => c.end(name));
      s.listen(0, '127.0.0.1', () => resolve(s));
    })));
    const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
    const table = `yun_test${process.pid}`;
    const fast = new NftFastPath(table);
    const vip = '127.77.0.9';
    const get = () => new Promise<string>((resolve, reject) => {
      const c = net.connect({ host: vip, port: 80 });
      let out = '';
      c.on('data', (d) => { out += d; });
      c.on('end', () => resolve(out));
      c.on('error', reject);
      c.setTimeout(2000, () => { c.destroy(); reject(new Error('timeout')); });
    });
    try {
      assert.equal(await fast.probe(), null);
      await fast.apply([{ address: vip, port: 80, backends: ports.map((p) => ({ host: '127.0.0.1', port: p })) }]);
      const seen = [];
      for (let i = 0; i < 6; i++) seen.push(await get());
      assert.deepEqual([...new Set(seen)].sort(), ['a', 'b'], seen.join(','));
      await fast.apply([{ address: vip, port: 80, backends: [{ host: '127.0.0.1', port: ports[1]! }] }]);
      for (let i = 0; i < 4; i++) assert.equal(await get(), 'b');
      await fast.apply([]);
      await assert.rejects(get(), /ECONNREFUSED/);
    } finally {
      await fast.close();
      for (const s of servers) s.close();
    }
    const list = await runNft(['list', 'table', 'ip', table]);
    assert.notEqual(list.code, 0, 'the table is gone');
  });
});
