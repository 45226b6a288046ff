// End-to-end tests of the service-discovery DNS server over real UDP and TCP sockets on loopback.
// Clients bind to distinct loopback addresses (127.0.0.21…) so that the scope resolver sees distinct
// sources. Upstream resolvers are fake servers on 127.0.0.1: nothing leaves the loopback interface.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import dnsPacket from 'dns-packet';
import fc from 'fast-check';
import { DnsServer, parseResolvConf, dashedAddress, type DnsEndpoint, type DnsScope } from './dns.js';

/** dns-packet's decoded packet, loosely typed (its types lack rcode and the data of some records). */
interface RR { name: string; type: string; ttl?: number; data?: any }
interface Decoded {
  id: number; rcode: string; flag_qr: boolean; flag_aa: boolean; flag_tc: boolean; flag_rd: boolean; flag_ra: boolean;
  questions: { name: string; type: string }[]; answers: RR[]; additionals: RR[]; authorities: RR[];
}
const decode = (b: Buffer): Decoded => dnsPacket.decode(b) as unknown as Decoded;
type Q = { name: string; type?: string; id?: number; edns?: number; klass?: string };

const SHOP_FRONT = '127.0.0.21', SHOP_BACK = '127.0.0.22', OTHER_FRONT = '127.0.0.23', SHOP_HOST = '127.0.0.24', UNKNOWN = '127.0.0.1';

const port = (name: string | undefined, target: number, host_port = 0, protocol: 'tcp' | 'udp' = 'tcp') => ({ ...(name ? { name } : {}), protocol, target, host_port });

function fixture(): DnsEndpoint[] {
  return [
    { service: 'web', project: 'shop', network: 'front', mode: 'vip', vip: '10.1.0.2', tasks: [
      { address: '10.1.0.5', healthy: true, ports: [port('http', 80)] },
      { address: '10.1.0.6', healthy: true, ports: [port('http', 80)] },
      { address: '10.1.0.7', healthy: false, ports: [port('http', 80)] },
    ] },
    { service: 'db', project: 'shop', network: 'front', mode: 'dnsrr', vip: null, tasks: [
      { address: '10.1.0.8', healthy: true, ports: [port(undefined, 5432)] },
      { address: '10.1.0.9', healthy: false, ports: [port(undefined, 5432)] },
    ] },
    { service: 'empty', project: 'shop', network: 'front', mode: 'dnsrr', vip: null, tasks: [
      { address: '10.1.0.10', healthy: false, ports: [port('http', 80)] },
    ] },
    { service: 'web', project: 'shop', network: 'back', mode: 'vip', vip: '10.2.0.2', tasks: [{ address: '10.2.0.5', healthy: true, ports: [port('http', 80)] }] },
    // host-network (process) tasks: host ports, two tasks on the same node address
    { service: 'api', project: 'shop', network: null, mode: 'dnsrr', vip: null, tasks: [
      { address: '127.0.0.2', healthy: true, ports: [port('http', 8080, 31001)] },
      { address: '127.0.0.3', healthy: true, ports: [port('http', 8080, 31002)] },
      { address: '127.0.0.2', healthy: true, ports: [port('http', 8080, 31003)] },
      { address: '127.0.0.4', healthy: false, ports: [port('http', 8080, 31004)] },
    ] },
    { service: 'apivip', project: 'shop', network: null, mode: 'vip', vip: '127.100.0.1', tasks: [{ address: '127.0.0.2', healthy: true, ports: [port('http', 8080, 31005)] }] },
    { service: 'web', project: 'other', network: 'front', mode: 'vip', vip: '10.9.0.2', tasks: [{ address: '10.9.0.5', healthy: true, ports: [port('http', 80)] }] },
    { service: 'api', project: 'other', network: null, mode: 'dnsrr', vip: null, tasks: [{ address: '127.0.0.3', healthy: true, ports: [port('http', 8080, 32001)] }] },
  ];
}

const SCOPES: Record<string, DnsScope> = {
  [SHOP_FRONT]: { project: 'shop', network: 'front' },
  [SHOP_BACK]: { project: 'shop', network: 'back' },
  [OTHER_FRONT]: { project: 'other', network: 'front' },
  [SHOP_HOST]: { project: 'shop', network: null },
};
const scopeOf = (a: string) => SCOPES[a] ?? null;

function encodeQuery(q: Q): Buffer {
  return dnsPacket.encode({
    type: 'query', id: q.id ?? Math.floor(Math.random() * 65536), flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ name: q.name, type: (q.type ?? 'A') as 'A', class: (q.klass ?? 'IN') as 'IN' }],
    ...(q.edns ? { additionals: [{ type: 'OPT', name: '.', udpPayloadSize: q.edns, extendedRcode: 0, ednsVersion: 0, flags: 0, flag_do: false, options: [] } as never] } : {}),
  });
}

/** Send raw bytes over UDP from `from`; the raw answer, or null after `timeoutMs`. */
function udpRaw(dnsPort: number, buf: Buffer, from = UNKNOWN, timeoutMs = 3000): Promise<Buffer | null> {
  return new Promise((resolve, reject) => {
    const s = dgram.createSocket('udp4');
    const timer = setTimeout(() => { s.close(); resolve(null); }, timeoutMs);
    s.on('error', (e) => { clearTimeout(timer); s.close(); reject(e); });
    s.on('message', (m) => { clearTimeout(timer); s.close(); resolve(m); });
    s.bind(0, from, () => s.send(buf, dnsPort, '127.0.0.1'));
  });
}

async function udp(dnsPort: number, q: Q, from = UNKNOWN): Promise<Decoded & { raw: Buffer; sent: Buffer }> {
  const sent = encodeQuery(q);
  const raw = await udpRaw(dnsPort, sent, from);
  assert.ok(raw, `no UDP answer for ${q.name}`);
  return Object.assign(decode(raw), { raw, sent });
}

/** Several queries over one TCP connection, written at once (pipelined); answers in arrival order. */
function tcpMany(dnsPort: number, bufs: Buffer[], from = UNKNOWN): Promise<Buffer[]> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port: dnsPort, localAddress: from });
    let acc = Buffer.alloc(0);
    const out: Buffer[] = [];
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`TCP: ${out.length}/${bufs.length} answers`)); }, 5000);
    sock.on('connect', () => sock.write(Buffer.concat(bufs.map((b) => { const l = Buffer.alloc(2); l.writeUInt16BE(b.length); return Buffer.concat([l, b]); }))));
    sock.on('data', (c) => {
      acc = Buffer.concat([acc, c]);
      while (acc.length >= 2 && acc.length >= 2 + acc.readUInt16BE(0)) {
        out.push(acc.subarray(2, 2 + acc.readUInt16BE(0)));
        acc = acc.subarray(2 + acc.readUInt16BE(0));
      }
      if (out.length === bufs.length) { clearTimeout(timer); sock.destroy(); resolve(out); }
    });
    sock.on('error', (e) => { clearTimeout(timer); reject(e); });
    sock.on('close', () => { clearTimeout(timer); if (out.length < bufs.length) reject(new Error(`TCP closed after ${out.length}/${bufs.length} answers`)); });
  });
}

async function tcp(dnsPort: number, q: Q, from = UNKNOWN): Promise<Decoded & { raw: Buffer }> {
  const [raw] = await tcpMany(dnsPort, [encodeQuery(q)], from);
  return Object.assign(decode(raw!), { raw: raw! });
}

const addrs = (r: Decoded, type = 'A') => (r.answers ?? []).filter((a) => a.type === type).map((a) => a.data as string).sort();

// ---- a fake upstream resolver on 127.0.0.1 (UDP and TCP on one port) ----
interface Upstream {
  port: number;
  seen: { name: string; transport: 'udp' | 'tcp'; id: number }[];
  close(): Promise<void>;
}
type Handler = (q: Decoded, transport: 'udp' | 'tcp') => dnsPacket.Packet | 'drop';
const qs = (q: Decoded) => q.questions as dnsPacket.Question[];

const defaultHandler: Handler = (q) => ({
  type: 'response', id: q.id, flags: dnsPacket.RECURSION_DESIRED | dnsPacket.RECURSION_AVAILABLE, questions: qs(q),
  answers: [{ type: 'A', name: q.questions![0]!.name, ttl: 300, data: '192.0.2.1' }],
});

async function startUpstream(handler: Handler = defaultHandler, attempt = 0): Promise<Upstream> {
  const seen: Upstream['seen'] = [];
  const u = dgram.createSocket('udp4');
  await new Promise<void>((r) => u.bind(0, '127.0.0.1', () => r()));
  const p = u.address().port;
  u.on('message', (m, rinfo) => {
    const q = decode(m);
    seen.push({ name: q.questions![0]!.name, transport: 'udp', id: q.id! });
    const a = handler(q, 'udp');
    if (a !== 'drop') u.send(dnsPacket.encode(a), rinfo.port, rinfo.address);
  });
  const conns = new Set<net.Socket>();
  const t = net.createServer((s) => {
    conns.add(s);
    s.on('close', () => conns.delete(s));
    s.on('error', () => undefined);
    let acc = Buffer.alloc(0);
    s.on('data', (c) => {
      acc = Buffer.concat([acc, c]);
      while (acc.length >= 2 && acc.length >= 2 + acc.readUInt16BE(0)) {
        const q = decode(acc.subarray(2, 2 + acc.readUInt16BE(0)));
        acc = acc.subarray(2 + acc.readUInt16BE(0));
        seen.push({ name: q.questions![0]!.name, transport: 'tcp', id: q.id! });
        const a = handler(q, 'tcp');
        if (a !== 'drop') s.write(dnsPacket.streamEncode(a));
      }
    });
  });
  try {
    await new Promise<void>((r, j) => { t.once('error', j); t.listen(p, '127.0.0.1', () => r()); });
  } catch (e) {
    u.close(); // the UDP port is free, its TCP twin is not: try another
    if (attempt < 20 && (e as NodeJS.ErrnoException).code === 'EADDRINUSE') return startUpstream(handler, attempt + 1);
    throw e;
  }
  return {
    port: p, seen,
    async close() {
      u.close();
      for (const c of conns) c.destroy();
      await new Promise<void>((r) => t.close(() => r()));
    },
  };
}

/** A loopback port where nothing listens (UDP and TCP). */
async function deadPort(): Promise<number> {
  for (;;) {
    const u = dgram.createSocket('udp4');
    await new Promise<void>((r) => u.bind(0, '127.0.0.1', () => r()));
    const p = u.address().port;
    const t = net.createServer();
    const free = await new Promise<boolean>((r) => { t.once('error', () => r(false)); t.listen(p, '127.0.0.1', () => r(true)); });
    u.close();
    if (free) { await new Promise<void>((r) => t.close(() => r())); return p; }
  }
}

async function startDns(opts: ConstructorParameters<typeof DnsServer>[0] = {}, endpoints = fixture()) {
  const warnings: unknown[][] = [];
  const srv = new DnsServer({ forwardTimeoutMs: 300, log: { warn: (...a) => warnings.push(a) }, ...opts });
  srv.setEndpoints(endpoints);
  srv.setScopeResolver(scopeOf);
  const ports = await srv.listen('127.0.0.1', 0);
  return { srv, ports, warnings };
}

// =====================================================================================
describe('dns: names of a known scope (project + network)', () => {
  let srv: DnsServer, p: number, up: Upstream;
  before(async () => {
    up = await startUpstream();
    ({ srv, ports: { udpPort: p } } = await startDns({ upstreams: [`127.0.0.1:${up.port}`] }));
  });
  after(async () => { await srv?.close(); await up?.close(); });

  test('vip mode: the service name resolves to its VIP, authoritatively, with the VIP TTL', async () => {
    const r = await udp(p, { name: 'web' }, SHOP_FRONT);
    assert.equal(r.rcode, 'NOERROR');
    assert.ok(r.flag_aa && r.flag_qr && r.flag_ra && r.flag_rd);
    assert.deepEqual(addrs(r), ['10.1.0.2']);
    assert.equal(r.answers![0]!.ttl, 10);
  });

  test('names are case-insensitive, the trailing dot optional, the question echoed as sent', async () => {
    for (const name of ['WEB', 'web.', 'Web.Shop.YUN', 'web.shop.yun.']) {
      const r = await udp(p, { name, id: 4242 }, SHOP_FRONT);
      assert.equal(r.id, 4242);
      assert.deepEqual(addrs(r), ['10.1.0.2'], name);
      assert.equal(r.questions![0]!.name, name.replace(/\.$/, ''));
      assert.ok(r.raw.subarray(12, r.sent.length).equals(r.sent.subarray(12)), 'question bytes echoed verbatim');
    }
  });

  test('dnsrr mode: the healthy tasks only, several A records, TTL 0', async () => {
    const r = await udp(p, { name: 'db' }, SHOP_FRONT);
    assert.deepEqual(addrs(r), ['10.1.0.8']);
    assert.equal(r.answers![0]!.ttl, 0);
    assert.deepEqual(addrs(await udp(p, { name: 'api' }, SHOP_HOST)), ['127.0.0.2', '127.0.0.3'], 'addresses deduplicated');
  });

  test('dnsrr with no healthy task: NOERROR, no answers (not NXDOMAIN, not forwarded)', async () => {
    const before = up.seen.length;
    const r = await udp(p, { name: 'empty' }, SHOP_FRONT);
    assert.equal(r.rcode, 'NOERROR');
    assert.ok(r.flag_aa);
    assert.equal(r.answers!.length, 0);
    assert.equal(up.seen.length, before);
  });

  test('tasks.<service> (and tasks.<service>.<project>.yun): healthy task addresses, in vip mode too', async () => {
    for (const name of ['tasks.web', 'TASKS.web.shop.yun']) assert.deepEqual(addrs(await udp(p, { name }, SHOP_FRONT)), ['10.1.0.5', '10.1.0.6'], name);
    assert.deepEqual(addrs(await udp(p, { name: 'tasks.db' }, SHOP_FRONT)), ['10.1.0.8']);
    const r = await udp(p, { name: 'tasks.empty' }, SHOP_FRONT);
    assert.equal(r.rcode, 'NOERROR');
    assert.equal(r.answers!.length, 0);
  });

  test('multi-address answers rotate between queries', async () => {
    const firsts = new Set<string>();
    for (let i = 0; i < 4; i++) firsts.add((await udp(p, { name: 'tasks.web' }, SHOP_FRONT)).answers![0]!.data as string);
    assert.deepEqual([...firsts].sort(), ['10.1.0.5', '10.1.0.6']);
  });

  test('SRV _<port-name>._tcp.<service>: one per healthy task, target port, target names with A in the additional section', async () => {
    for (const name of ['_http._tcp.web', '_http._tcp.web.shop.yun', '_80._tcp.web']) {
      const r = await udp(p, { name, type: 'SRV' }, SHOP_FRONT);
      assert.equal(r.rcode, 'NOERROR', name);
      assert.ok(r.flag_aa);
      const srv = r.answers!.map((a) => a.data as dnsPacket.SrvData).sort((a, b) => a.target.localeCompare(b.target));
      assert.deepEqual(srv.map((s) => [s.port, s.target]), [[80, '10-1-0-5.tasks.web.shop.yun'], [80, '10-1-0-6.tasks.web.shop.yun']], name);
      const add = (r.additionals ?? []).filter((a) => a.type === 'A').map((a) => [a.name, a.data]).sort();
      assert.deepEqual(add, [['10-1-0-5.tasks.web.shop.yun', '10.1.0.5'], ['10-1-0-6.tasks.web.shop.yun', '10.1.0.6']]);
    }
  });

  test('SRV targets resolve via A (from the same scope), unknown or unhealthy task names are NXDOMAIN', async () => {
    assert.deepEqual(addrs(await udp(p, { name: '10-1-0-5.tasks.web.shop.yun' }, SHOP_FRONT)), ['10.1.0.5']);
    assert.deepEqual(addrs(await udp(p, { name: '10-1-0-5.tasks.web' }, SHOP_FRONT)), ['10.1.0.5']);
    assert.equal((await udp(p, { name: '10-1-0-7.tasks.web.shop.yun' }, SHOP_FRONT)).rcode, 'NXDOMAIN', 'unhealthy');
    assert.equal((await udp(p, { name: '10-1-0-99.tasks.web.shop.yun' }, SHOP_FRONT)).rcode, 'NXDOMAIN');
    assert.equal(dashedAddress('10.1.0.5'), '10-1-0-5');
  });

  test('SRV of an unnamed port: _<target-port>._tcp', async () => {
    const r = await udp(p, { name: '_5432._tcp.db', type: 'SRV' }, SHOP_FRONT);
    assert.deepEqual(r.answers!.map((a) => [(a.data as dnsPacket.SrvData).port, (a.data as dnsPacket.SrvData).target]), [[5432, '10-1-0-8.tasks.db.shop.yun']]);
  });

  test('SRV: unknown port name or wrong protocol → NXDOMAIN; A on an SRV name → NOERROR empty', async () => {
    assert.equal((await udp(p, { name: '_nope._tcp.web', type: 'SRV' }, SHOP_FRONT)).rcode, 'NXDOMAIN');
    assert.equal((await udp(p, { name: '_http._udp.web', type: 'SRV' }, SHOP_FRONT)).rcode, 'NXDOMAIN');
    const r = await udp(p, { name: '_http._tcp.web', type: 'A' }, SHOP_FRONT);
    assert.equal(r.rcode, 'NOERROR');
    assert.equal(r.answers!.length, 0);
  });

  test('SRV of host-network tasks: the host port, one target name per node address', async () => {
    const r = await udp(p, { name: '_http._tcp.api', type: 'SRV' }, SHOP_HOST);
    const srv = r.answers!.map((a) => a.data as dnsPacket.SrvData).map((s) => [s.port, s.target]).sort();
    assert.deepEqual(srv, [[31001, '127-0-0-2.tasks.api.shop.yun'], [31002, '127-0-0-3.tasks.api.shop.yun'], [31003, '127-0-0-2.tasks.api.shop.yun']]);
    const add = (r.additionals ?? []).filter((a) => a.type === 'A').map((a) => [a.name, a.data]).sort();
    assert.deepEqual(add, [['127-0-0-2.tasks.api.shop.yun', '127.0.0.2'], ['127-0-0-3.tasks.api.shop.yun', '127.0.0.3']]);
    assert.deepEqual(addrs(await udp(p, { name: 'apivip' }, SHOP_HOST)), ['127.100.0.1']);
  });

  test('AAAA for our names: NOERROR, no answers, authoritative', async () => {
    for (const name of ['web', 'tasks.web', 'web.shop.yun', '10-1-0-5.tasks.web.shop.yun']) {
      const r = await udp(p, { name, type: 'AAAA' }, SHOP_FRONT);
      assert.equal(r.rcode, 'NOERROR', name);
      assert.ok(r.flag_aa);
      assert.equal(r.answers!.length, 0);
    }
  });

  test('ours but unknown → NXDOMAIN, never forwarded', async () => {
    const before = up.seen.length;
    for (const name of ['nosuch.shop.yun', 'tasks.nosuch', 'tasks.nosuch.shop.yun', 'x.web.shop.yun', 'a.b.c.web.shop.yun', 'foo.yun', 'web.other.yun', '_http._tcp.nosuch.shop.yun', 'we*b.shop.yun', 'we b.yun']) {
      const r = await udp(p, { name }, SHOP_FRONT);
      assert.equal(r.rcode, 'NXDOMAIN', name);
      assert.ok(r.flag_aa, name);
    }
    for (const name of ['yun', 'shop.yun', '_tcp.web.shop.yun']) {
      const r = await udp(p, { name }, SHOP_FRONT);
      assert.equal(r.rcode, 'NOERROR', `${name} exists (it has names below it)`);
      assert.equal(r.answers!.length, 0);
    }
    assert.equal(up.seen.length, before, 'nothing forwarded');
  });
});

describe('dns: scoping between projects and networks', () => {
  let srv: DnsServer, p: number, up: Upstream;
  before(async () => {
    up = await startUpstream();
    ({ srv, ports: { udpPort: p } } = await startDns({ upstreams: [`127.0.0.1:${up.port}`] }));
  });
  after(async () => { await srv?.close(); await up?.close(); });

  test('the same service name answers per network and per project', async () => {
    assert.deepEqual(addrs(await udp(p, { name: 'web' }, SHOP_FRONT)), ['10.1.0.2']);
    assert.deepEqual(addrs(await udp(p, { name: 'web' }, SHOP_BACK)), ['10.2.0.2']);
    assert.deepEqual(addrs(await udp(p, { name: 'web' }, OTHER_FRONT)), ['10.9.0.2']);
    assert.deepEqual(addrs(await udp(p, { name: 'tasks.web.shop.yun' }, SHOP_BACK)), ['10.2.0.5']);
  });

  test("another project's names do not resolve, not even fully qualified", async () => {
    assert.equal((await udp(p, { name: 'web.shop.yun' }, OTHER_FRONT)).rcode, 'NXDOMAIN');
    assert.equal((await udp(p, { name: 'web.other.yun' }, SHOP_FRONT)).rcode, 'NXDOMAIN');
    assert.equal((await udp(p, { name: 'tasks.db' }, OTHER_FRONT)).rcode, 'NXDOMAIN');
    assert.equal((await udp(p, { name: '_http._tcp.api.other.yun', type: 'SRV' }, SHOP_HOST)).rcode, 'NXDOMAIN');
  });

  test("another network's services are invisible; host-network queries see host-network services only", async () => {
    assert.equal((await udp(p, { name: 'db.shop.yun' }, SHOP_BACK)).rcode, 'NXDOMAIN');
    assert.equal((await udp(p, { name: 'api.shop.yun' }, SHOP_FRONT)).rcode, 'NXDOMAIN');
    assert.equal((await udp(p, { name: 'web.shop.yun' }, SHOP_HOST)).rcode, 'NXDOMAIN');
    assert.deepEqual(addrs(await udp(p, { name: 'api.shop.yun' }, SHOP_HOST)), ['127.0.0.2', '127.0.0.3']);
  });

  test('a single label that is no visible service is not ours: forwarded', async () => {
    const before = up.seen.length;
    const r = await udp(p, { name: 'db' }, SHOP_BACK);
    assert.deepEqual(addrs(r), ['192.0.2.1']);
    assert.equal(up.seen.length, before + 1);
    assert.equal(up.seen.at(-1)!.name, 'db');
  });

  test('unknown source: only fully qualified names, over host-network endpoints', async () => {
    assert.deepEqual(addrs(await udp(p, { name: 'api.shop.yun' }, UNKNOWN)), ['127.0.0.2', '127.0.0.3']);
    assert.deepEqual(addrs(await udp(p, { name: 'tasks.api.shop.yun' }, UNKNOWN)), ['127.0.0.2', '127.0.0.3']);
    assert.deepEqual(addrs(await udp(p, { name: 'apivip.shop.yun' }, UNKNOWN)), ['127.100.0.1']);
    assert.deepEqual(addrs(await udp(p, { name: 'api.other.yun' }, UNKNOWN)), ['127.0.0.3']);
    const srv = await udp(p, { name: '_http._tcp.api.other.yun', type: 'SRV' }, UNKNOWN);
    assert.deepEqual(srv.answers!.map((a) => (a.data as dnsPacket.SrvData).port), [32001]);
    assert.deepEqual(addrs(await udp(p, { name: '127-0-0-3.tasks.api.other.yun' }, UNKNOWN)), ['127.0.0.3']);
    assert.equal((await udp(p, { name: 'web.shop.yun' }, UNKNOWN)).rcode, 'NXDOMAIN', 'overlay services are not visible from the host');
    const before = up.seen.length;
    assert.deepEqual(addrs(await udp(p, { name: 'api' }, UNKNOWN)), ['192.0.2.1'], 'short names are not ours without a scope');
    assert.equal(up.seen.length, before + 1);
  });

  test('an unknown source asking tasks.X (no .yun) is forwarded: only scoped sources have short names', async () => {
    const before = up.seen.length;
    await udp(p, { name: 'tasks.api' }, UNKNOWN);
    assert.equal(up.seen.length, before + 1);
  });
});

describe('dns: updates via setEndpoints', () => {
  test('an unhealthy task disappears at once from A, tasks., SRV and its own name; a removed service is NXDOMAIN', async () => {
    const { srv, ports: { udpPort: p } } = await startDns({ upstreams: [] });
    try {
      assert.deepEqual(addrs(await udp(p, { name: 'tasks.web' }, SHOP_FRONT)), ['10.1.0.5', '10.1.0.6']);
      const eps = fixture();
      eps[0]!.tasks[0]!.healthy = false; // web 10.1.0.5
      eps[1]!.tasks[0]!.healthy = false; // db 10.1.0.8: no healthy task left
      srv.setEndpoints(eps);
      assert.deepEqual(addrs(await udp(p, { name: 'tasks.web' }, SHOP_FRONT)), ['10.1.0.6']);
      assert.deepEqual((await udp(p, { name: '_http._tcp.web', type: 'SRV' }, SHOP_FRONT)).answers!.map((a) => (a.data as dnsPacket.SrvData).target), ['10-1-0-6.tasks.web.shop.yun']);
      assert.equal((await udp(p, { name: '10-1-0-5.tasks.web' }, SHOP_FRONT)).rcode, 'NXDOMAIN');
      const db = await udp(p, { name: 'db' }, SHOP_FRONT);
      assert.equal(db.rcode, 'NOERROR');
      assert.equal(db.answers!.length, 0);
      assert.deepEqual(addrs(await udp(p, { name: 'web' }, SHOP_FRONT)), ['10.1.0.2'], 'the VIP stays');
      // back to healthy, then the service removed
      srv.setEndpoints(fixture());
      assert.deepEqual(addrs(await udp(p, { name: 'tasks.web' }, SHOP_FRONT)), ['10.1.0.5', '10.1.0.6']);
      srv.setEndpoints(fixture().filter((e) => !(e.service === 'web' && e.project === 'shop' && e.network === 'front')));
      assert.equal((await udp(p, { name: 'web.shop.yun' }, SHOP_FRONT)).rcode, 'NXDOMAIN');
      assert.equal((await udp(p, { name: 'tasks.web' }, SHOP_FRONT)).rcode, 'NXDOMAIN');
    } finally { await srv.close(); }
  });

  test('the ttl option applies to task records; vipTtl to VIPs', async () => {
    const { srv, ports: { udpPort: p } } = await startDns({ upstreams: [], ttl: 1, vipTtl: 600 });
    try {
      assert.equal((await udp(p, { name: 'tasks.web' }, SHOP_FRONT)).answers![0]!.ttl, 1);
      assert.equal((await udp(p, { name: 'web' }, SHOP_FRONT)).answers![0]!.ttl, 600);
    } finally { await srv.close(); }
  });

  test('setEndpoints of 1000 services is cheap', () => {
    const srv = new DnsServer({ upstreams: [] });
    const list: DnsEndpoint[] = [];
    for (let i = 0; i < 1000; i++) list.push({ service: `s${i}`, project: `p${i % 10}`, network: 'n', mode: 'dnsrr', vip: null, tasks: [{ address: `10.0.${i >> 8}.${i & 255}`, healthy: true, ports: [] }] });
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) srv.setEndpoints(list);
    assert.ok((performance.now() - t0) / 100 < 5, 'under 5 ms per call');
  });
});

describe('dns: forwarding', () => {
  test('other names go to the upstream, raw, the id preserved; never .yun names', async () => {
    const up = await startUpstream();
    const { srv, ports: { udpPort: p } } = await startDns({ upstreams: [`127.0.0.1:${up.port}`] });
    try {
      const r = await udp(p, { name: 'Example.COM', id: 777 }, UNKNOWN);
      assert.equal(r.id, 777);
      assert.equal(r.rcode, 'NOERROR');
      assert.ok(!r.flag_aa);
      assert.deepEqual(addrs(r), ['192.0.2.1']);
      assert.equal(r.answers![0]!.ttl, 300, "the upstream's answer, not ours");
      assert.deepEqual(up.seen.map((s) => [s.name, s.transport]), [['Example.COM', 'udp']]);
      // from a scoped source too
      assert.deepEqual(addrs(await udp(p, { name: 'example.org' }, SHOP_FRONT)), ['192.0.2.1']);
      await udp(p, { name: 'web.shop.yun' }, UNKNOWN);
      await udp(p, { name: 'anything.at.all.yun' }, SHOP_FRONT);
      assert.ok(!up.seen.some((s) => /yun$/i.test(s.name)));
    } finally { await srv.close(); await up.close(); }
  });

  test('TCP queries are forwarded over TCP', async () => {
    const up = await startUpstream();
    const { srv, ports: { tcpPort } } = await startDns({ upstreams: [`127.0.0.1:${up.port}`] });
    try {
      const r = await tcp(tcpPort, { name: 'example.net', id: 99 }, UNKNOWN);
      assert.equal(r.id, 99);
      assert.deepEqual(addrs(r), ['192.0.2.1']);
      assert.deepEqual(up.seen.map((s) => [s.name, s.transport]), [['example.net', 'tcp']]);
    } finally { await srv.close(); await up.close(); }
  });

  test('a truncated upstream answer: refetched over TCP when the client takes more, else passed on with TC', async () => {
    const up = await startUpstream((q, transport) => {
      const name = q.questions![0]!.name;
      const answers = Array.from({ length: transport === 'udp' ? 0 : 60 }, (_, i) => ({ type: 'A' as const, name, ttl: 60, data: `192.0.2.${i + 1}` }));
      return { type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE | (transport === 'udp' ? dnsPacket.TRUNCATED_RESPONSE : 0), questions: qs(q), answers };
    });
    const { srv, ports: { udpPort, tcpPort } } = await startDns({ upstreams: [`127.0.0.1:${up.port}`] });
    try {
      const r = await udp(udpPort, { name: 'big.example' }, UNKNOWN);
      assert.ok(r.flag_tc, 'no EDNS: the full answer (~1000 bytes) does not fit in 512');
      const t = await tcp(tcpPort, { name: 'big.example' }, UNKNOWN);
      assert.ok(!t.flag_tc);
      assert.equal(t.answers!.length, 60);
      // the client takes 4096 bytes: we fetch the truncated answer over TCP and pass it whole
      const e = await udp(udpPort, { name: 'big.example', edns: 4096 }, UNKNOWN);
      assert.ok(!e.flag_tc);
      assert.equal(e.answers!.length, 60);
      assert.deepEqual(up.seen.map((s) => s.transport), ['udp', 'tcp', 'udp', 'tcp']);
    } finally { await srv.close(); await up.close(); }
  });

  test('the next upstream is tried when one does not answer or fails', async () => {
    const dead = await deadPort();
    const failing = await startUpstream((q) => ({ type: 'response', id: q.id, flags: dnsPacket.RECURSION_AVAILABLE | 2, questions: qs(q) }));
    const good = await startUpstream();
    const { srv, ports: { udpPort, tcpPort }, warnings } = await startDns({ upstreams: [`127.0.0.1:${dead}`, `127.0.0.1:${failing.port}`, `127.0.0.1:${good.port}`] });
    try {
      const r = await udp(udpPort, { name: 'example.com' }, UNKNOWN);
      assert.deepEqual(addrs(r), ['192.0.2.1']);
      assert.equal(failing.seen.length, 1);
      const t = await tcp(tcpPort, { name: 'example.com' }, UNKNOWN);
      assert.deepEqual(addrs(t), ['192.0.2.1']);
      assert.ok(warnings.length >= 1, 'the silent upstream is logged');
    } finally { await srv.close(); await failing.close(); await good.close(); }
  });

  test('SERVFAIL (id and question preserved) when every upstream is down, over UDP and TCP', async () => {
    const dead = await deadPort();
    const { srv, ports: { udpPort, tcpPort } } = await startDns({ upstreams: [`127.0.0.1:${dead}`] });
    try {
      const t0 = Date.now();
      const r = await udp(udpPort, { name: 'example.com', id: 31337 }, UNKNOWN);
      assert.equal(r.rcode, 'SERVFAIL');
      assert.equal(r.id, 31337);
      assert.equal(r.questions![0]!.name, 'example.com');
      assert.ok(Date.now() - t0 < 2000);
      const t = await tcp(tcpPort, { name: 'example.com', id: 4 }, UNKNOWN);
      assert.equal(t.rcode, 'SERVFAIL');
      assert.equal(t.id, 4);
      assert.equal(srv.stats.forwardFailed, 2);
    } finally { await srv.close(); }
  });

  test('an upstream that hangs: SERVFAIL after the timeout', async () => {
    const up = await startUpstream(() => 'drop');
    const { srv, ports: { udpPort } } = await startDns({ upstreams: [`127.0.0.1:${up.port}`], forwardTimeoutMs: 200 });
    try {
      const t0 = Date.now();
      assert.equal((await udp(udpPort, { name: 'slow.example' }, UNKNOWN)).rcode, 'SERVFAIL');
      assert.ok(Date.now() - t0 >= 190);
    } finally { await srv.close(); await up.close(); }
  });

  test('an answer from the wrong port, with the wrong id or question, is ignored (no spoofing through the forwarder)', async () => {
    const u = dgram.createSocket('udp4'), spoofer = dgram.createSocket('udp4');
    await new Promise<void>((r) => u.bind(0, '127.0.0.1', () => r()));
    await new Promise<void>((r) => spoofer.bind(0, '127.0.0.1', () => r()));
    u.on('message', (m, rinfo) => {
      const q = decode(m);
      const answer = (id: number, data: string, name = q.questions[0]!.name) => dnsPacket.encode({ type: 'response', id, flags: dnsPacket.RECURSION_AVAILABLE, questions: [{ name, type: 'A' }], answers: [{ type: 'A', name, data }] });
      spoofer.send(answer(q.id, '6.6.6.6'), rinfo.port, rinfo.address); // right id, wrong source port
      u.send(answer((q.id + 1) & 0xffff, '6.6.6.7'), rinfo.port, rinfo.address); // wrong id
      u.send(answer(q.id, '6.6.6.8', 'other.example'), rinfo.port, rinfo.address); // wrong question
      setTimeout(() => u.send(answer(q.id, '192.0.2.7'), rinfo.port, rinfo.address), 30);
    });
    const { srv, ports: { udpPort } } = await startDns({ upstreams: [`127.0.0.1:${u.address().port}`] });
    try {
      assert.deepEqual(addrs(await udp(udpPort, { name: 'ok.example' }, UNKNOWN)), ['192.0.2.7']);
    } finally { await srv.close(); u.close(); spoofer.close(); }
  });

  test('never forwards to itself (an upstream that is our own address and port)', async () => {
    const srv = new DnsServer({ upstreams: [] });
    const probe = await deadPort();
    await srv.close();
    const self = new DnsServer({ upstreams: [`127.0.0.1:${probe}`], forwardTimeoutMs: 5000 });
    try {
      const { udpPort } = await self.listen('127.0.0.1', probe);
      assert.equal(udpPort, probe);
      const t0 = Date.now();
      assert.equal((await udp(udpPort, { name: 'loop.example' }, UNKNOWN)).rcode, 'SERVFAIL');
      assert.ok(Date.now() - t0 < 1000, 'no query to ourselves (it would wait for the timeout)');
    } finally { await self.close(); }
  });

  test('resolv.conf parsing (the default upstreams)', () => {
    assert.deepEqual(parseResolvConf('# c\nsearch a.b\nnameserver 10.0.0.1\nnameserver  ::1 # x\nnameserver bogus\noptions ndots:2\n;nameserver 1.1.1.1\nnameserver fe80::1%eth0\n'), ['10.0.0.1', '::1', 'fe80::1%eth0']);
  });
});

describe('dns: transports and robustness', () => {
  let srv: DnsServer, udpPort: number, tcpPort: number, up: Upstream;
  const big: DnsEndpoint = { service: 'big', project: 'shop', network: 'front', mode: 'dnsrr', vip: null,
    tasks: Array.from({ length: 100 }, (_, i) => ({ address: `10.5.${i >> 8}.${i & 255}`, healthy: true, ports: [port('http', 80)] })) };
  const mid: DnsEndpoint = { service: 'mid', project: 'shop', network: 'front', mode: 'dnsrr', vip: null,
    tasks: Array.from({ length: 9 }, (_, i) => ({ address: `10.6.0.${i + 1}`, healthy: true, ports: [port('http', 80)] })) };
  before(async () => {
    up = await startUpstream();
    ({ srv, ports: { udpPort, tcpPort } } = await startDns({ upstreams: [`127.0.0.1:${up.port}`] }, [...fixture(), big, mid]));
  });
  after(async () => { await srv?.close(); await up?.close(); });

  test('UDP and TCP listen on the same port', () => {
    assert.equal(udpPort, tcpPort);
  });

  test('UDP answers over 512 bytes are truncated (TC); EDNS raises the limit; TCP has it all', async () => {
    const r = await udp(udpPort, { name: 'big' }, SHOP_FRONT);
    assert.ok(r.flag_tc);
    assert.ok(r.raw.length <= 512);
    assert.ok(r.answers!.length > 0 && r.answers!.length < 100);
    const e = await udp(udpPort, { name: 'big', edns: 4096 }, SHOP_FRONT);
    assert.ok(!e.flag_tc);
    assert.equal(e.answers!.length, 100);
    assert.ok(e.additionals!.some((a) => a.type === 'OPT'), 'OPT echoed');
    const small = await udp(udpPort, { name: 'big', edns: 1232 }, SHOP_FRONT);
    assert.ok(small.flag_tc && small.raw.length <= 1232);
    const t = await tcp(tcpPort, { name: 'big' }, SHOP_FRONT);
    assert.ok(!t.flag_tc);
    assert.equal(t.answers!.length, 100);
  });

  test('SRV over UDP: the additional section is dropped (no TC) before answers are (TC)', async () => {
    // 9 SRV records fit in 512 bytes, with their 9 additional A records they do not
    const m = await udp(udpPort, { name: '_http._tcp.mid', type: 'SRV' }, SHOP_FRONT);
    assert.ok(!m.flag_tc);
    assert.equal(m.answers!.length, 9);
    assert.equal((m.additionals ?? []).length, 0);
    const me = await udp(udpPort, { name: '_http._tcp.mid', type: 'SRV', edns: 1232 }, SHOP_FRONT);
    assert.equal(me.additionals!.filter((a) => a.type === 'A').length, 9);
    // 100 SRV records (47 bytes each) do not fit even in 4096
    const r = await udp(udpPort, { name: '_http._tcp.big', type: 'SRV' }, SHOP_FRONT);
    assert.ok(r.flag_tc && r.raw.length <= 512);
    const e = await udp(udpPort, { name: '_http._tcp.big', type: 'SRV', edns: 4096 }, SHOP_FRONT);
    assert.ok(e.flag_tc && e.raw.length <= 4096 && e.answers!.length > 50);
    const t = await tcp(tcpPort, { name: '_http._tcp.big', type: 'SRV' }, SHOP_FRONT);
    assert.ok(!t.flag_tc);
    assert.equal(t.answers!.length, 100);
    assert.equal(t.additionals!.filter((a) => a.type === 'A').length, 100);
  });

  test('several queries on one TCP connection (pipelined)', async () => {
    const qs = [encodeQuery({ name: 'web', id: 1 }), encodeQuery({ name: 'tasks.db', id: 2 }), encodeQuery({ name: 'nosuch.shop.yun', id: 3 }), encodeQuery({ name: 'example.com', id: 4 })];
    const answers = (await tcpMany(tcpPort, qs, SHOP_FRONT)).map((b) => decode(b));
    const byId = new Map(answers.map((a) => [a.id, a]));
    assert.deepEqual(addrs(byId.get(1)!), ['10.1.0.2']);
    assert.deepEqual(addrs(byId.get(2)!), ['10.1.0.8']);
    assert.equal(byId.get(3)!.rcode, 'NXDOMAIN');
    assert.deepEqual(addrs(byId.get(4)!), ['192.0.2.1']);
  });

  test('TCP: a query split over several writes', async () => {
    const q = encodeQuery({ name: 'web', id: 55 });
    const len = Buffer.alloc(2); len.writeUInt16BE(q.length);
    const whole = Buffer.concat([len, q]);
    const ans = await new Promise<Buffer>((resolve, reject) => {
      const s = net.connect({ host: '127.0.0.1', port: tcpPort, localAddress: SHOP_FRONT }, async () => {
        for (let i = 0; i < whole.length; i += 5) { s.write(whole.subarray(i, i + 5)); await new Promise((r) => setTimeout(r, 5)); }
      });
      let acc = Buffer.alloc(0);
      s.on('data', (c) => { acc = Buffer.concat([acc, c]); if (acc.length >= 2 + acc.readUInt16BE(0)) { s.destroy(); resolve(acc.subarray(2)); } });
      s.on('error', reject);
    });
    assert.deepEqual(addrs(decode(ans)), ['10.1.0.2']);
  });

  test('malformed UDP: garbage and responses are dropped; a readable header gets FORMERR; the server carries on', async () => {
    assert.equal(await udpRaw(udpPort, Buffer.from([1, 2, 3]), SHOP_FRONT, 300), null, 'too short: dropped');
    const resp = dnsPacket.encode({ type: 'response', id: 5, flags: 0, questions: [{ name: 'web', type: 'A' }] });
    assert.equal(await udpRaw(udpPort, resp, SHOP_FRONT, 300), null, 'a response (QR): dropped');
    // header says 1 question, the label overruns the packet
    const bad = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0x61, 0x62]);
    const f = decode((await udpRaw(udpPort, bad, SHOP_FRONT))!);
    assert.equal(f.rcode, 'FORMERR');
    assert.equal(f.id, 0x1234);
    // two questions
    const two = dnsPacket.encode({ type: 'query', id: 6, questions: [{ name: 'web', type: 'A' }, { name: 'db', type: 'A' }] });
    assert.equal(decode((await udpRaw(udpPort, two, SHOP_FRONT))!).rcode, 'FORMERR');
    // a compression pointer in the question
    const ptr = Buffer.from([0, 7, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 0x0c, 0, 1, 0, 1]);
    assert.equal(decode((await udpRaw(udpPort, ptr, SHOP_FRONT))!).rcode, 'FORMERR');
    // not a QUERY (opcode NOTIFY)
    const notify = encodeQuery({ name: 'web', id: 8 }); notify[2] = (notify[2]! & 0x87) | (4 << 3);
    assert.equal(decode((await udpRaw(udpPort, notify, SHOP_FRONT))!).rcode, 'NOTIMP');
    assert.deepEqual(addrs(await udp(udpPort, { name: 'web' }, SHOP_FRONT)), ['10.1.0.2'], 'still answering');
  });

  test('malformed TCP: FORMERR, and the connection serves the next query', async () => {
    const bad = Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, 10, 0x61, 0x62]);
    const [a, b] = await tcpMany(tcpPort, [bad, encodeQuery({ name: 'web', id: 9 })], SHOP_FRONT);
    assert.equal(decode(a!).rcode, 'FORMERR');
    assert.deepEqual(addrs(decode(b!)), ['10.1.0.2']);
  });

  test('TCP: a frame too short for a header closes the connection; the server carries on', async () => {
    await assert.rejects(tcpMany(tcpPort, [Buffer.from([1, 2, 3])], SHOP_FRONT));
    assert.deepEqual(addrs(await tcp(tcpPort, { name: 'web' }, SHOP_FRONT)), ['10.1.0.2']);
  });

  test('non-IN class on our names → REFUSED, not forwarded', async () => {
    const before = up.seen.length;
    const r = await udp(udpPort, { name: 'web.shop.yun', klass: 'CH' }, SHOP_FRONT);
    assert.equal(r.rcode, 'REFUSED');
    assert.equal(up.seen.length, before);
  });

  test('fuzz: random and mutated packets never throw; every answer has a header with the query id', async () => {
    const valid = [encodeQuery({ name: 'web', id: 1 }), encodeQuery({ name: '_http._tcp.api', type: 'SRV', id: 2, edns: 1232 }), encodeQuery({ name: 'tasks.web.shop.yun', id: 3 })];
    const local = new DnsServer({ upstreams: [] }); // nothing forwarded anywhere
    local.setEndpoints(fixture());
    local.setScopeResolver(scopeOf);
    try {
      await fc.assert(fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)),
          fc.tuple(fc.constantFrom(...valid), fc.array(fc.tuple(fc.nat(), fc.nat(255)), { maxLength: 6 }), fc.nat()).map(([v, muts, cut]) => {
            const b = Buffer.from(v);
            for (const [i, x] of muts) b[i % b.length] = x;
            return b.subarray(0, Math.max(0, b.length - (cut % 4 === 0 ? cut % b.length : 0)));
          }),
        ),
        fc.constantFrom(SHOP_FRONT, SHOP_HOST, UNKNOWN),
        fc.constantFrom<'udp' | 'tcp'>('udp', 'tcp'),
        async (buf, src, transport) => {
          const ans = await local.answer(buf, src, transport);
          if (ans.length === 0) return; // dropped
          assert.ok(ans.length >= 12);
          assert.equal(ans.readUInt16BE(0), buf.readUInt16BE(0));
          assert.ok(ans[2]! & 0x80, 'QR set');
          if (transport === 'udp') assert.ok(ans.length <= 4096);
          decode(ans); // well-formed
        },
      ), { numRuns: 3000, seed: 42 });
    } finally { await local.close(); }
  });
});

describe('dns: answer() in process', () => {
  test('answers a raw buffer as if from a source; UDP semantics unless told', async () => {
    const s = new DnsServer({ upstreams: [] });
    s.setEndpoints(fixture());
    s.setScopeResolver(scopeOf);
    const r = decode(await s.answer(encodeQuery({ name: 'tasks.web', id: 12 }), SHOP_FRONT));
    assert.equal(r.id, 12);
    assert.deepEqual(addrs(r), ['10.1.0.5', '10.1.0.6']);
    assert.deepEqual(addrs(decode(await s.answer(encodeQuery({ name: 'web' }), `::ffff:${SHOP_BACK}`))), ['10.2.0.2'], 'IPv4-mapped sources');
    assert.equal((await s.answer(Buffer.from([1]), SHOP_FRONT)).length, 0, 'dropped');
    // no scope resolver: every source is unknown
    const t = new DnsServer({ upstreams: [] });
    t.setEndpoints(fixture());
    assert.deepEqual(addrs(decode(await t.answer(encodeQuery({ name: 'api.shop.yun' }), SHOP_FRONT))), ['127.0.0.2', '127.0.0.3']);
    assert.equal(decode(await t.answer(encodeQuery({ name: 'web.shop.yun' }), SHOP_FRONT)).rcode, 'NXDOMAIN');
    await s.close(); await t.close();
  });
});
