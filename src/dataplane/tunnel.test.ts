// The node-to-node tunnel: mutual TLS with the cluster CA (node certificates, CN = node id), the
// target check, fast failure for refused or unreachable targets, data intact both ways, and the
// proxy going through it. Everything on 127.0.0.0/8; everything made is closed after each test.
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import tls from 'node:tls';
import { createHash } from 'node:crypto';
import { createCA, issueCertificate, type KeyPairPem } from '../pki/ca.js';
import { DialError, L4Proxy, type Backend } from './proxy.js';
import { TunnelServer, tunnelDialer, type TunnelDialerOptions } from './tunnel.js';
import { blackHole, closedPort, echoRoundTrip, hashOf, probeTag, pseudoRandom, serve, sleep, tagServer, writeAll, type TestServer } from './testing/proxy.js';

const NODE_B = '127.0.0.3'; // the node with the backends and the tunnel server
const cleanups: (() => Promise<unknown> | unknown)[] = [];
afterEach(async () => {
  for (const f of cleanups.splice(0).reverse()) await f();
});

interface Pki {
  ca: KeyPairPem;
  a: KeyPairPem; // node-a: the dialling node (allowed)
  b: KeyPairPem; // node-b: the tunnel server
  c: KeyPairPem; // node-c: a node of the cluster that is not allowed
  otherCa: KeyPairPem;
  otherA: KeyPairPem; // "node-a" issued by another CA
  otherB: KeyPairPem; // "node-b" issued by another CA
}
let pki: Pki;

const nodeCert = (ca: KeyPairPem, id: string) => issueCertificate(ca, { commonName: id, organizationalUnit: 'worker', hosts: ['127.0.0.1', NODE_B], usage: 'both' });

before(async () => {
  const ca = await createCA('yunstack-test');
  const otherCa = await createCA('someone-else');
  pki = {
    ca,
    a: await nodeCert(ca, 'node-a'),
    b: await nodeCert(ca, 'node-b'),
    c: await nodeCert(ca, 'node-c'),
    otherCa,
    otherA: await nodeCert(otherCa, 'node-a'),
    otherB: await nodeCert(otherCa, 'node-b'),
  };
});
after(() => undefined);

interface Setup {
  server: TunnelServer;
  port: number;
  backends: TestServer[];
  targets: Set<string>;
}

/** node-b's tunnel with `n` tag backends on it (b1, b2, …), all of them allowed targets. */
async function nodeB(n = 2, opts: { serverCert?: KeyPairPem; ca?: string } = {}): Promise<Setup> {
  const backends: TestServer[] = [];
  for (let i = 0; i < n; i++) {
    const s = await tagServer(NODE_B, `b${i + 1}`);
    cleanups.push(() => s.close());
    backends.push(s);
  }
  const targets = new Set(backends.map((s) => `${s.host}:${s.port}`));
  const cert = opts.serverCert ?? pki.b;
  const server = new TunnelServer({
    cert: cert.certPem,
    key: cert.keyPem,
    ca: opts.ca ?? pki.ca.certPem,
    allow: (id) => id === 'node-a',
    resolveTarget: (t) => targets.has(`${t.host}:${t.port}`),
  });
  const port = await server.listen(NODE_B, 0);
  cleanups.push(() => server.close());
  return { server, port, backends, targets };
}

function dialerFor(setup: Setup, who: KeyPairPem = pki.a, extra: Partial<TunnelDialerOptions> = {}) {
  return tunnelDialer({
    cert: who.certPem,
    key: who.keyPem,
    ca: pki.ca.certPem,
    nodeAddress: (id) => (id === 'node-b' || id === 'node-x' ? { host: NODE_B, port: setup.port } : undefined),
    ...extra,
  });
}

const remote = (id: string, host: string, port: number, node = 'node-b'): Backend => ({ id, host, port, node_id: node, local: false });
const remoteOf = (s: TestServer, id: string) => remote(id, s.host, s.port);

function readLine(s: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString();
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      s.off('data', onData);
      s.pause();
      if (nl + 1 < buf.length) s.unshift(Buffer.from(buf.slice(nl + 1)));
      resolve(buf.slice(0, nl));
    };
    s.on('data', onData);
    s.once('error', reject);
    s.resume();
  });
}

async function dialFails(p: Promise<net.Socket>): Promise<{ err: DialError; ms: number }> {
  const t0 = performance.now();
  try {
    const s = await p;
    s.destroy();
  } catch (err) {
    return { err: err as DialError, ms: performance.now() - t0 };
  }
  throw new Error('the dial succeeded');
}

describe('tunnel', () => {
  it('accepts a node certificate of the cluster CA and carries bytes intact (server speaks first, echo, half-close)', async () => {
    const setup = await nodeB(1);
    const dial = dialerFor(setup);
    const s = await dial(remoteOf(setup.backends[0]!, 'b1'), 500);
    cleanups.push(() => s.destroy());
    s.on('error', () => undefined);
    assert.equal(await readLine(s), 'b1', 'bytes the backend sent first arrive after the OK');
    assert.equal(await echoRoundTrip(s, 'ping through the tunnel'), 'ping through the tunnel');
    // Half-close: our FIN reaches the echo backend, whose FIN comes back.
    const ended = new Promise<void>((r) => s.once('end', () => r()));
    s.resume();
    s.end();
    await ended;
    assert.equal(setup.server.stats().refused, 0);
  });

  it('passes on a half-close from the backend: the client can still send after the backend ended', async () => {
    let late = '';
    const gotLate = new Promise<void>((resolve) => {
      void serve(NODE_B, (s) => {
        s.end('bye\n');
        s.on('data', (d: Buffer) => (late += d.toString()));
        s.on('end', () => resolve());
      }).then((srv) => {
        cleanups.push(() => srv.close());
        return nodeB(0).then(async (setup) => {
          setup.targets.add(`${srv.host}:${srv.port}`);
          const s = await dialerFor(setup)(remote('h', srv.host, srv.port), 500);
          cleanups.push(() => s.destroy());
          s.on('data', () => undefined);
          s.on('end', () => s.end('sent after the backend said bye'));
          s.resume(); // a dialled socket comes back paused
        });
      });
    });
    await gotLate;
    assert.equal(late, 'sent after the backend said bye');
  });

  it('carries 20 MB both ways at once intact', async () => {
    const SIZE = 20 * 1024 * 1024;
    let serverHash = '';
    const big = await serve(NODE_B, (s) => {
      const h = createHash('sha256');
      s.on('data', (d: Buffer) => h.update(d));
      s.on('end', () => (serverHash = h.digest('hex')));
      void writeAll(s, pseudoRandom(SIZE, 7)).catch(() => undefined);
    });
    cleanups.push(() => big.close());
    const setup = await nodeB(0);
    setup.targets.add(`${big.host}:${big.port}`);
    const s = await dialerFor(setup)(remote('big', big.host, big.port), 500);
    cleanups.push(() => s.destroy());
    const h = createHash('sha256');
    let got = 0;
    const done = new Promise<void>((resolve, reject) => {
      s.on('data', (d: Buffer) => {
        got += d.length;
        h.update(d);
      });
      s.once('end', () => resolve());
      s.once('error', reject);
    });
    s.resume();
    await writeAll(s, pseudoRandom(SIZE, 8));
    await done;
    assert.equal(got, SIZE);
    assert.equal(h.digest('hex'), hashOf(SIZE, 7));
    for (let i = 0; i < 100 && !serverHash; i++) await sleep(10);
    assert.equal(serverHash, hashOf(SIZE, 8));
  });

  it('refuses a client without a certificate, and never connects the target', async () => {
    const setup = await nodeB(1);
    const b1 = setup.backends[0]!;
    const outcome = await new Promise<string>((resolve) => {
      const s = tls.connect({ host: NODE_B, port: setup.port, ca: pki.ca.certPem, checkServerIdentity: () => undefined });
      cleanups.push(() => s.destroy());
      let buf = '';
      s.on('data', (d: Buffer) => (buf += d.toString()));
      s.on('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code ?? err.message}`));
      s.on('close', () => resolve(`closed ${JSON.stringify(buf)}`));
      s.write(JSON.stringify({ v: 1, host: b1.host, port: b1.port }) + '\n');
    });
    assert.ok(!outcome.includes('OK'), outcome);
    await sleep(50);
    assert.equal(b1.accepted(), 0);
    assert.ok(setup.server.stats().tls_errors >= 1);
  });

  it('refuses a client certificate of another CA', async () => {
    const setup = await nodeB(1);
    const dial = tunnelDialer({ cert: pki.otherA.certPem, key: pki.otherA.keyPem, ca: pki.ca.certPem, nodeAddress: () => ({ host: NODE_B, port: setup.port }) });
    const { err, ms } = await dialFails(dial(remoteOf(setup.backends[0]!, 'b1'), 500));
    assert.ok(err instanceof DialError, String(err));
    assert.ok(ms < 500, `${ms} ms`);
    assert.match(err.message, /tunnel to node node-b/);
    assert.equal(setup.backends[0]!.accepted(), 0);
  });

  it('refuses a server certificate of another CA, and one for another node id', async () => {
    const wrongCa = await nodeB(1, { serverCert: pki.otherB, ca: pki.ca.certPem });
    const r1 = await dialFails(dialerFor(wrongCa)(remoteOf(wrongCa.backends[0]!, 'b1'), 500));
    assert.match(r1.err.message, /certificate|verify|self.signed/i);
    assert.equal(wrongCa.backends[0]!.accepted(), 0);

    const setup = await nodeB(1);
    // node-x's address points at node-b: the CN check catches it.
    const r2 = await dialFails(dialerFor(setup)(remote('b1', setup.backends[0]!.host, setup.backends[0]!.port, 'node-x'), 500));
    assert.match(r2.err.message, /certificate is for "node-b", not node node-x/);
    assert.equal(setup.backends[0]!.accepted(), 0);
  });

  it('refuses a node that allow() rejects', async () => {
    const setup = await nodeB(1);
    const { err } = await dialFails(dialerFor(setup, pki.c)(remoteOf(setup.backends[0]!, 'b1'), 500));
    assert.equal(err.code, 'FORBIDDEN');
    assert.match(err.message, /node node-c may not use this tunnel/);
    assert.equal(setup.backends[0]!.accepted(), 0);
  });

  it('refuses a target that is not a backend on that node', async () => {
    const setup = await nodeB(1);
    const other = await tagServer(NODE_B, 'not-a-backend');
    cleanups.push(() => other.close());
    const { err } = await dialFails(dialerFor(setup)(remote('x', other.host, other.port), 500));
    assert.equal(err.code, 'FORBIDDEN');
    assert.match(err.message, /is not a backend on this node/);
    assert.equal(other.accepted(), 0);
    // A malformed header is refused too.
    const line = await new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: NODE_B, port: setup.port, cert: pki.a.certPem, key: pki.a.keyPem, ca: pki.ca.certPem, checkServerIdentity: () => undefined });
      cleanups.push(() => s.destroy());
      s.once('error', reject);
      readLine(s).then(resolve, reject);
      s.write('{"v":1,"host":"not an address","port":80}\n');
    });
    assert.match(line, /^ERR BADREQ /);
  });

  it('fails fast when the target refuses, when it is unreachable (timeout), when the node is unknown or its tunnel is down', async () => {
    const setup = await nodeB(0);
    const dead = await closedPort(NODE_B);
    setup.targets.add(`${NODE_B}:${dead}`);
    const refused = await dialFails(dialerFor(setup)(remote('dead', NODE_B, dead), 500));
    assert.equal(refused.err.code, 'ECONNREFUSED');
    assert.ok(refused.ms < 300, `refused after ${refused.ms.toFixed(0)} ms (the timeout is 500)`);

    const hole = await blackHole(NODE_B);
    cleanups.push(() => hole.close());
    setup.targets.add(`${hole.host}:${hole.port}`);
    const timedOut = await dialFails(dialerFor(setup)(remote('hole', hole.host, hole.port), 300));
    assert.equal(timedOut.err.code, 'ETIMEDOUT');
    assert.ok(timedOut.ms >= 200 && timedOut.ms < 600, `timed out after ${timedOut.ms.toFixed(0)} ms`);
    assert.match(timedOut.err.message, /timed out/);

    const unknown = await dialFails(dialerFor(setup)(remote('u', NODE_B, 1, 'node-unknown'), 500));
    assert.equal(unknown.err.code, 'ENOTUNNEL');
    assert.ok(unknown.ms < 50);

    const downPort = await closedPort(NODE_B);
    const down = await dialFails(tunnelDialer({ cert: pki.a.certPem, key: pki.a.keyPem, ca: pki.ca.certPem, nodeAddress: () => ({ host: NODE_B, port: downPort }) })(remote('x', NODE_B, 1), 500));
    assert.equal(down.err.code, 'ECONNREFUSED');
    assert.ok(down.ms < 300);
  });

  it('lets the proxy reach remote backends through it: round robin, a refused one skipped, local ones direct', async () => {
    const setup = await nodeB(2);
    const dead = await closedPort(NODE_B);
    setup.targets.add(`${NODE_B}:${dead}`);
    const local = await tagServer('127.0.0.2', 'local');
    cleanups.push(() => local.close());
    const proxy = new L4Proxy({ dial: dialerFor(setup) });
    cleanups.push(() => proxy.close());
    const port = await proxy.listen('mesh:8091', '127.0.0.4', 0);
    proxy.setBackends('mesh:8091', [remoteOf(setup.backends[0]!, 'b1'), remote('dead', NODE_B, dead), remoteOf(setup.backends[1]!, 'b2'), { id: 'local', host: local.host, port: local.port, node_id: 'node-a', local: true }]);
    const seen: Record<string, number> = {};
    for (let i = 0; i < 12; i++) {
      const o = await probeTag('127.0.0.4', port);
      assert.equal(o.result, 'ok', JSON.stringify(o));
      seen[o.tag!] = (seen[o.tag!] ?? 0) + 1;
    }
    assert.deepEqual(seen, { b1: 4, b2: 4, local: 4 });
    assert.equal(setup.server.stats().refused, 1, 'the dead backend was tried once through the tunnel');
    assert.equal(local.accepted(), 4, 'local backends are dialled directly');
  });

  it('close() ends open tunnel connections', async () => {
    const setup = await nodeB(1);
    const s = await dialerFor(setup)(remoteOf(setup.backends[0]!, 'b1'), 500);
    cleanups.push(() => s.destroy());
    s.on('error', () => undefined);
    assert.equal(await readLine(s), 'b1');
    const ended = new Promise<void>((r) => {
      s.once('end', () => r());
      s.once('close', () => r());
    });
    s.resume();
    await setup.server.close();
    await ended;
  });
});
