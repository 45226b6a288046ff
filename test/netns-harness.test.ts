// Self-test of test/helpers/netns.ts: a 3-host LAN of network namespaces (ping, TCP, blockTcp and
// its undo, cleanup). All traffic stays inside the namespaces this test creates.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { requireOrSkip } from './helpers/cloud.js';
import { waitFor } from './helpers/agents.js';
import { createLan, lanSupport, type TestHost, type TestLan } from './helpers/netns.js';

const PORT = 9000;
const ECHO_SERVER = `require('net').createServer((s) => s.pipe(s)).listen(${PORT}, '0.0.0.0', () => console.log('listening'))`;
// Connects, sends a line and expects it back; prints {ok, ms, error} and exits 0 only on success.
const CLIENT = `
const host = process.argv[1], port = Number(process.argv[2]), t0 = Date.now();
const done = (ok, error) => { console.log(JSON.stringify({ ok, ms: Date.now() - t0, error })); process.exit(ok ? 0 : 1); };
const s = require('net').connect({ host, port, timeout: 1000 });
s.on('timeout', () => { s.destroy(); done(false, 'timeout'); });
s.on('error', (e) => done(false, e.code || e.message));
s.on('connect', () => s.write('hello\\n'));
let got = '';
s.on('data', (c) => { got += c; if (got.includes('hello\\n')) { s.end(); done(true); } });
`;

async function connect(from: TestHost, to: TestHost): Promise<{ ok: boolean; ms: number; error?: string }> {
  const r = await from.exec([process.execPath, '-e', CLIENT, to.address, String(PORT)], { timeoutMs: 5000 });
  try {
    return JSON.parse(r.stdout.trim()) as { ok: boolean; ms: number; error?: string };
  } catch {
    throw new Error(`client in ${from.name} printed no result (exit ${r.code}): ${r.stdout}${r.stderr}`);
  }
}

describe('netns harness: a private LAN of network namespaces', { concurrency: false }, () => {
  it('3 hosts: ping, TCP, blockTcp + undo, cleanup leaves nothing behind', { timeout: 60_000 }, async (t) => {
    const support = await lanSupport({ nft: true });
    if (!requireOrSkip(t, support.ok, support.ok ? '' : support.reason)) return;

    let lan: TestLan | undefined;
    let serverPid = 0;
    try {
      lan = await createLan(3);
      const [h1, h2, h3] = lan.hosts as [TestHost, TestHost, TestHost];
      assert.match(lan.prefix, /^ytl[a-z0-9]{4}$/);
      assert.deepEqual(lan.hosts.map((h) => [h.name, h.ns, h.address]), [
        ['h1', `${lan.prefix}-h1`, '172.31.250.11'],
        ['h2', `${lan.prefix}-h2`, '172.31.250.12'],
        ['h3', `${lan.prefix}-h3`, '172.31.250.13'],
      ]);
      const names = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
      for (const ns of [lan.lanNs, h1.ns, h2.ns, h3.ns]) assert.ok(names.includes(ns), `${ns} exists:\n${names}`);

      // Isolated: no default route, forwarding on.
      const routes = await h1.exec(['ip', 'route', 'show']);
      assert.equal(routes.code, 0, routes.stderr);
      assert.doesNotMatch(routes.stdout, /default/, routes.stdout);
      assert.match(routes.stdout, /172\.31\.250\.0\/24 dev eth0/);
      assert.equal((await h2.exec(['cat', '/proc/sys/net/ipv4/ip_forward'])).stdout.trim(), '1');

      // ping h1 -> h2 (busybox when there is no ping binary).
      const hasPing = (await h1.exec(['sh', '-c', 'command -v ping'])).code === 0;
      const ping = await h1.exec([...(hasPing ? ['ping'] : ['busybox', 'ping']), '-c1', '-W1', h2.address], { timeoutMs: 5000 });
      assert.equal(ping.code, 0, `ping ${h2.address} from h1:\n${ping.stdout}${ping.stderr}`);

      // exec reports non-zero exits and input, never throws.
      const fail = await h1.exec(['sh', '-c', 'cat; echo oops >&2; exit 3'], { input: 'in\n' });
      assert.deepEqual(fail, { code: 3, stdout: 'in\n', stderr: 'oops\n' });

      // A TCP echo server in h2.
      const server = h2.spawn([process.execPath, '-e', ECHO_SERVER]);
      serverPid = server.pid;
      await waitFor('echo server listening in h2', async () => {
        if (server.child.exitCode !== null) throw new Error(`server exited: ${server.output()}`);
        return server.output().includes('listening');
      }, 10_000, 50);
      assert.deepEqual((await connect(h1, h2)).ok, true);

      // Blocked h1 <-> h2 on 9000: the connect fails within 2 s; h3 is not affected.
      const undo = await lan.blockTcp(h1, h2, PORT);
      const t0 = Date.now();
      const blocked = await connect(h1, h2);
      assert.equal(blocked.ok, false, JSON.stringify(blocked));
      assert.ok(Date.now() - t0 < 2000 + 1000 /* node start-up */ && blocked.ms < 2000, `failed within 2 s: ${JSON.stringify(blocked)}`);
      assert.equal((await connect(h3, h2)).ok, true, 'h3 -> h2 still works');
      const rules = await h2.exec(['/usr/sbin/nft', 'list', 'table', 'inet', 'yuntest']);
      assert.match(rules.stdout, new RegExp(`ip saddr ${h1.address.replace(/\./g, '\\.')} tcp dport ${PORT} drop`), rules.stdout);
      assert.match(rules.stdout, new RegExp(`ip daddr ${h1.address.replace(/\./g, '\\.')} tcp dport ${PORT} drop`), rules.stdout);

      await undo();
      assert.equal((await connect(h1, h2)).ok, true, 'works again after undo');
      for (const h of [h1, h2]) {
        const gone = await h.exec(['/usr/sbin/nft', 'list', 'table', 'inet', 'yuntest']);
        assert.notEqual(gone.code, 0, `table inet yuntest removed in ${h.name}`);
      }
    } finally {
      await lan?.cleanup();
    }

    // Nothing left: namespaces, /etc/netns dirs, the server; cleanup is idempotent.
    await lan.cleanup();
    const after = execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' });
    for (const ns of [lan.lanNs, ...lan.hosts.map((h) => h.ns)]) {
      assert.ok(!after.includes(ns), `${ns} deleted:\n${after}`);
      assert.ok(!existsSync(`/etc/netns/${ns}`), `/etc/netns/${ns} removed`);
    }
    assert.ok(serverPid > 0);
    assert.throws(() => process.kill(serverPid, 0), 'the spawned server is gone');
  });
});
