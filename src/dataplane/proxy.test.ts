// L4Proxy: round robin, dead and blackholed backends (fail fast, never hang), backend set changes,
// drain, big transfers with backpressure, half-close. Everything on 127.0.0.0/8; every server,
// socket and child process is closed after each test, also when it fails.
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { createHash } from 'node:crypto';
import { L4Proxy, type Backend, type Dialer, directDial } from './proxy.js';
import { blackHole, closedPort, echoRoundTrip, hashOf, openTagged, probeTag, pseudoRandom, serve, sleep, tagServer, writeAll, type TestServer } from './testing/proxy.js';

const VIP = '127.0.0.10';
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

function be(id: string, host: string, port: number, node = 'n1'): Backend {
  return { id, host, port, node_id: node, local: true };
}
function beOf(s: TestServer, id: string): Backend {
  return be(id, s.host, s.port);
}

async function tags(n: number, hosts: string[]): Promise<TestServer[]> {
  const out: TestServer[] = [];
  for (let i = 0; i < n; i++) {
    const s = await tagServer(hosts[i % hosts.length]!, `b${i + 1}`);
    cleanups.push(() => s.close());
    out.push(s);
  }
  return out;
}

async function proxyOn(backends: Backend[], opts: ConstructorParameters<typeof L4Proxy>[0] = {}): Promise<{ proxy: L4Proxy; port: number }> {
  const proxy = new L4Proxy(opts);
  cleanups.push(() => proxy.close());
  const port = await proxy.listen('svc:80', VIP, 0);
  proxy.setBackends('svc:80', backends);
  return { proxy, port };
}

/** When the proxy ended the connection (its FIN or reset; the test sockets are half-open capable). */
function endOf(s: net.Socket): Promise<number> {
  return new Promise((resolve) => {
    const done = () => resolve(performance.now());
    s.once('end', done);
    s.once('close', done);
    s.on('error', () => undefined);
  });
}

function count(xs: (string | undefined)[]): Record<string, number> {
  const m: Record<string, number> = {};
  for (const x of xs) m[String(x)] = (m[String(x)] ?? 0) + 1;
  return m;
}

describe('L4Proxy', () => {
  it('spreads connections round robin over all backends', async () => {
    const [a, b, c] = await tags(3, ['127.0.0.2', '127.0.0.3', '127.0.0.4']);
    const { proxy, port } = await proxyOn([beOf(a!, 'b1'), beOf(b!, 'b2'), beOf(c!, 'b3')]);
    const seen: string[] = [];
    for (let i = 0; i < 9; i++) {
      const o = await probeTag(VIP, port);
      assert.equal(o.result, 'ok');
      seen.push(o.tag!);
    }
    assert.deepEqual(count(seen), { b1: 3, b2: 3, b3: 3 });
    assert.deepEqual(seen.slice(0, 3), ['b1', 'b2', 'b3']);
    const st = proxy.stats();
    assert.equal(st.listeners[0]!.accepted, 9);
    assert.deepEqual(st.backends.map((x) => x.total), [3, 3, 3]);
    // Concurrent connections spread too.
    const many = await Promise.all(Array.from({ length: 30 }, () => probeTag(VIP, port)));
    assert.deepEqual(count(many.map((o) => o.tag)), { b1: 10, b2: 10, b3: 10 });
  });

  it('skips a backend that is down (closed port) without failing a client connection', async () => {
    const [a, b] = await tags(2, ['127.0.0.2', '127.0.0.3']);
    const dead = await closedPort('127.0.0.4');
    const { proxy, port } = await proxyOn([beOf(a!, 'b1'), be('dead', '127.0.0.4', dead), beOf(b!, 'b2')]);
    const seen: string[] = [];
    for (let i = 0; i < 20; i++) {
      const o = await probeTag(VIP, port);
      assert.equal(o.result, 'ok', `connection ${i}: ${JSON.stringify(o)}`);
      seen.push(o.tag!);
    }
    assert.deepEqual(count(seen), { b1: 10, b2: 10 });
    const d = proxy.stats().backends.find((x) => x.id === 'dead')!;
    assert.equal(d.dial_failures, 1, 'tried once, then skipped while marked failing');
    assert.equal(d.failing, true);
    // Parallel clients: none fails either.
    const many = await Promise.all(Array.from({ length: 40 }, () => probeTag(VIP, port)));
    assert.ok(many.every((o) => o.result === 'ok'));
  });

  it('tries a failing backend again once its mark expired, and last when nothing else is left', async () => {
    let t = 0;
    const [a] = await tags(1, ['127.0.0.2']);
    const dead = await closedPort('127.0.0.3');
    const { proxy, port } = await proxyOn([be('dead', '127.0.0.3', dead), beOf(a!, 'b1')], { now: () => t });
    assert.equal((await probeTag(VIP, port)).tag, 'b1');
    assert.equal(proxy.stats().backends.find((x) => x.id === 'dead')!.dial_failures, 1);
    for (let i = 0; i < 4; i++) assert.equal((await probeTag(VIP, port)).tag, 'b1');
    assert.equal(proxy.stats().backends.find((x) => x.id === 'dead')!.dial_failures, 1);
    t += 1001;
    assert.equal((await probeTag(VIP, port)).tag, 'b1');
    assert.equal(proxy.stats().backends.find((x) => x.id === 'dead')!.dial_failures, 2, 'retried after the mark expired');
    assert.equal(proxy.stats().backends.find((x) => x.id === 'dead')!.failing, true);
    // Only a failing backend left: it is still tried (a task that restarted is reached at once).
    const back = await serve('127.0.0.3', (s) => s.end('back\n'), dead);
    cleanups.push(() => back.close());
    proxy.setBackends('svc:80', [be('dead', '127.0.0.3', dead)]);
    assert.equal((await probeTag(VIP, port)).tag, 'back');
  });

  it('resets the client at once when every backend is down (never hangs)', async () => {
    const d1 = await closedPort('127.0.0.2');
    const d2 = await closedPort('127.0.0.3');
    const { proxy, port } = await proxyOn([be('d1', '127.0.0.2', d1), be('d2', '127.0.0.3', d2)]);
    for (let i = 0; i < 3; i++) {
      const o = await probeTag(VIP, port, 5000);
      assert.ok(o.result === 'reset' || o.result === 'closed', JSON.stringify(o));
      assert.ok(o.ms < 1000, `closed after ${o.ms.toFixed(0)} ms`);
    }
    assert.equal(proxy.stats().listeners[0]!.rejected, 3);
    // No backends at all: the same.
    proxy.setBackends('svc:80', []);
    const o = await probeTag(VIP, port, 5000);
    assert.equal(o.result, 'reset');
    assert.ok(o.ms < 300, `${o.ms} ms`);
  });

  it('gives up on a blackholed backend after the connect timeout and uses the next one', async () => {
    const hole = await blackHole('127.0.0.5');
    cleanups.push(() => hole.close());
    const [a] = await tags(1, ['127.0.0.2']);
    const { proxy, port } = await proxyOn([be('hole', hole.host, hole.port), beOf(a!, 'b1')], { connectTimeoutMs: 200 });
    const first = await probeTag(VIP, port, 5000);
    assert.equal(first.result, 'ok');
    assert.equal(first.tag, 'b1');
    assert.ok(first.ms >= 180 && first.ms < 1000, `first connection took ${first.ms.toFixed(0)} ms`);
    // Marked failing: the next connections go straight to b1 (the hole is not dialled again).
    const second = await probeTag(VIP, port, 5000);
    assert.equal(second.tag, 'b1');
    assert.equal(proxy.stats().backends.find((x) => x.id === 'hole')!.dial_failures, 1);
    assert.ok(second.ms < 500, `second connection took ${second.ms.toFixed(0)} ms`);
    // Only the black hole: reset after the connect timeout, well under a second.
    proxy.setBackends('svc:80', [be('hole', hole.host, hole.port)]);
    const only = await probeTag(VIP, port, 5000);
    assert.equal(only.result, 'reset');
    assert.ok(only.ms < 1000, `${only.ms.toFixed(0)} ms`);
  });

  it('uses the default 500 ms connect timeout', async () => {
    const hole = await blackHole('127.0.0.6');
    cleanups.push(() => hole.close());
    const { port } = await proxyOn([be('hole', hole.host, hole.port)]);
    const o = await probeTag(VIP, port, 5000);
    assert.equal(o.result, 'reset');
    assert.ok(o.ms >= 450 && o.ms < 1000, `${o.ms.toFixed(0)} ms`);
  });

  it('does not wait on a custom dialer that never settles', async () => {
    const [a] = await tags(1, ['127.0.0.2']);
    const dial: Dialer = (b, ms) => (b.id === 'hang' ? new Promise(() => undefined) : directDial(b, ms));
    const { port } = await proxyOn([be('hang', '127.0.0.9', 9), beOf(a!, 'b1')], { dial, connectTimeoutMs: 150 });
    const o = await probeTag(VIP, port, 5000);
    assert.equal(o.tag, 'b1');
    assert.ok(o.ms >= 140 && o.ms < 600, `${o.ms.toFixed(0)} ms`);
    // A dialer that throws synchronously counts as a failed dial.
    const { port: p2 } = await (async () => {
      const proxy = new L4Proxy({ dial: (b, ms) => { if (b.id === 'boom') throw new Error('boom'); return directDial(b, ms); } });
      cleanups.push(() => proxy.close());
      const p = await proxy.listen('k2', VIP, 0);
      proxy.setBackends('k2', [be('boom', '127.0.0.9', 9), beOf(a!, 'b1')]);
      return { port: p };
    })();
    assert.equal((await probeTag(VIP, p2)).tag, 'b1');
  });

  it('applies setBackends to the next connection and leaves open ones alone', async () => {
    const [a, b] = await tags(2, ['127.0.0.2', '127.0.0.3']);
    const { proxy, port } = await proxyOn([beOf(a!, 'b1')]);
    const open = await openTagged(VIP, port);
    cleanups.push(() => open.socket.destroy());
    assert.equal(open.tag, 'b1');
    proxy.setBackends('svc:80', [beOf(b!, 'b2')]);
    for (let i = 0; i < 3; i++) assert.equal((await probeTag(VIP, port)).tag, 'b2');
    assert.equal(await echoRoundTrip(open.socket, 'still here'), 'still here');
    proxy.setBackends('svc:80', [beOf(a!, 'b1'), beOf(b!, 'b2')]);
    const seen = [];
    for (let i = 0; i < 4; i++) seen.push((await probeTag(VIP, port)).tag);
    assert.deepEqual(count(seen), { b1: 2, b2: 2 });
  });

  it('drains a backend: open connections finish, new ones go elsewhere, stragglers are closed after the grace period', async () => {
    const [a, b] = await tags(2, ['127.0.0.2', '127.0.0.3']);
    const { proxy, port } = await proxyOn([beOf(a!, 'b1'), beOf(b!, 'b2')]);
    const c1 = await openTagged(VIP, port);
    cleanups.push(() => c1.socket.destroy());
    assert.equal(c1.tag, 'b1');
    // Drained while still listed: it gets no new connections.
    proxy.drain('b1', 2000);
    for (let i = 0; i < 4; i++) assert.equal((await probeTag(VIP, port)).tag, 'b2');
    assert.equal(proxy.stats().backends.find((x) => x.id === 'b1')!.draining, true);
    proxy.setBackends('svc:80', [beOf(b!, 'b2')]);
    await sleep(100);
    assert.equal(await echoRoundTrip(c1.socket, 'finishing'), 'finishing');
    // The client finishes cleanly (half-close, the echo server answers with its FIN).
    const ended = new Promise<void>((r) => c1.socket.once('end', () => r()));
    c1.socket.resume();
    c1.socket.end();
    await ended;

    // A straggler is closed when the grace period ends.
    proxy.setBackends('svc:80', [beOf(a!, 'b1'), beOf(b!, 'b2')]);
    await sleep(10);
    const stats0 = proxy.stats().backends.find((x) => x.id === 'b1');
    assert.equal(stats0?.draining ?? false, true, 'still out of rotation: the mark lasts while the backend is listed');
  });

  it('closes a straggler when the grace period ends, and at once with mode close', async () => {
    const [a, b] = await tags(2, ['127.0.0.2', '127.0.0.3']);
    const { proxy, port } = await proxyOn([beOf(a!, 'b1'), beOf(b!, 'b2')]);
    const c1 = await openTagged(VIP, port);
    cleanups.push(() => c1.socket.destroy());
    assert.equal(c1.tag, 'b1');
    const closed1 = endOf(c1.socket);
    c1.socket.resume();
    const t0 = performance.now();
    proxy.setBackends('svc:80', [beOf(b!, 'b2')]);
    proxy.drain('b1', 200);
    const at = (await closed1) - t0;
    assert.ok(at >= 180 && at < 700, `closed ${at.toFixed(0)} ms after the drain began`);
    // Gone from the stats once unlisted and drained.
    assert.equal(proxy.stats().backends.find((x) => x.id === 'b1'), undefined);

    const c2 = await openTagged(VIP, port);
    cleanups.push(() => c2.socket.destroy());
    assert.equal(c2.tag, 'b2');
    const closed2 = endOf(c2.socket);
    c2.socket.resume();
    const t1 = performance.now();
    proxy.drain('b2', 5000, 'close');
    assert.ok((await closed2) - t1 < 100);
  });

  it('carries 50 MB both ways at once intact, with backpressure', async () => {
    const SIZE = 50 * 1024 * 1024;
    let serverHash = '';
    const srv = await serve('127.0.0.2', (s) => {
      const h = createHash('sha256');
      s.on('data', (d: Buffer) => h.update(d));
      s.on('end', () => {
        serverHash = h.digest('hex');
      });
      void writeAll(s, pseudoRandom(SIZE, 2)).catch(() => undefined);
    });
    cleanups.push(() => srv.close());
    const { proxy, port } = await proxyOn([beOf(srv, 'big')]);
    const c = net.connect({ host: VIP, port, allowHalfOpen: true });
    cleanups.push(() => c.destroy());
    await new Promise<void>((r) => c.once('connect', () => r()));
    // Do not read for a while: the backend keeps writing, the proxy must not buffer it all.
    c.pause();
    await sleep(400);
    const buffered = proxy.stats().buffered;
    assert.ok(buffered < 2 * 1024 * 1024, `proxy buffered ${buffered} bytes while the client did not read`);
    const h = createHash('sha256');
    let got = 0;
    const done = new Promise<void>((resolve, reject) => {
      c.on('data', (d: Buffer) => {
        got += d.length;
        h.update(d);
      });
      c.once('end', () => resolve());
      c.once('error', reject);
    });
    c.resume();
    await writeAll(c, pseudoRandom(SIZE, 1));
    await done;
    assert.equal(got, SIZE);
    assert.equal(h.digest('hex'), hashOf(SIZE, 2), 'backend → client intact');
    for (let i = 0; i < 50 && !serverHash; i++) await sleep(10);
    assert.equal(serverHash, hashOf(SIZE, 1), 'client → backend intact');
  });

  it('supports half-close in both directions', async () => {
    // Client closes its side first: the backend sees the end and can still answer.
    let received = '';
    const s1 = await serve('127.0.0.2', (s) => {
      s.on('data', (d: Buffer) => (received += d.toString()));
      s.on('end', () => s.end(`got ${received.length} bytes`));
    });
    cleanups.push(() => s1.close());
    const { proxy, port } = await proxyOn([beOf(s1, 'h1')]);
    const reply = await new Promise<string>((resolve, reject) => {
      const c = net.connect({ host: VIP, port, allowHalfOpen: true });
      cleanups.push(() => c.destroy());
      let out = '';
      c.on('data', (d: Buffer) => (out += d.toString()));
      c.on('end', () => resolve(out));
      c.on('error', reject);
      c.end('hello, half-closed');
    });
    assert.equal(reply, 'got 18 bytes');
    assert.equal(received, 'hello, half-closed');

    // Backend closes its side first: the client can still send afterwards.
    let late = '';
    const lateDone = new Promise<void>((resolve) => {
      void serve('127.0.0.3', (s) => {
        s.end('bye\n');
        s.on('data', (d: Buffer) => (late += d.toString()));
        s.on('end', () => resolve());
      }).then((s2) => {
        cleanups.push(() => s2.close());
        proxy.setBackends('svc:80', [beOf(s2, 'h2')]);
        const c = net.connect({ host: VIP, port, allowHalfOpen: true });
        cleanups.push(() => c.destroy());
        c.on('data', () => undefined);
        c.on('end', () => c.end('written after the backend said bye'));
      });
    });
    await lateDone;
    assert.equal(late, 'written after the backend said bye');
  });

  it('passes a client reset on to the backend connection', async () => {
    let backendClosed: Promise<void> | undefined;
    const srv = await serve('127.0.0.2', (s) => {
      backendClosed = new Promise((r) => s.once('close', () => r()));
      s.write('hi\n');
    });
    cleanups.push(() => srv.close());
    const { proxy, port } = await proxyOn([beOf(srv, 'r1')]);
    const c = await openTagged(VIP, port);
    assert.equal(c.tag, 'hi');
    c.socket.resetAndDestroy();
    await backendClosed;
    for (let i = 0; i < 50 && proxy.stats().active > 0; i++) await sleep(10);
    assert.equal(proxy.stats().active, 0);
  });

  it('stop() closes the listener and its connections; close() is idempotent', async () => {
    const [a] = await tags(1, ['127.0.0.2']);
    const { proxy, port } = await proxyOn([beOf(a!, 'b1')]);
    const c = await openTagged(VIP, port);
    const closed = endOf(c.socket);
    c.socket.resume();
    await proxy.stop('svc:80');
    await closed;
    const o = await probeTag(VIP, port);
    assert.equal(o.result, 'error');
    assert.equal(o.code, 'ECONNREFUSED');
    await proxy.close();
    await proxy.close();
    await assert.rejects(proxy.listen('x', VIP, port).then(() => proxy.listen('x', VIP, 0)), /already exists/);
  });
});
