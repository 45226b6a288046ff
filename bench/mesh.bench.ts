// Data plane benchmark (issue 5, "It must show" item 7): HTTP keep-alive throughput and latency
//   - direct to the backends,
//   - through the VIP (L4Proxy, backends dialled directly),
//   - through the routing mesh (L4Proxy on "node A" → mTLS tunnel → "node B" → backend),
//   - through the nftables fast path (kernel DNAT, `numgen inc` round robin), which a node uses for
//     a VIP or a published port whose healthy backends all run on it (root + nft; else skipped),
//   - through HAProxy (Debian, `mode tcp`, the same two backends, round robin), one thread (as the
//     Node proxy's one event loop) and with its default threads.
//   - across nodes (root, iproute2, nft): three hosts made of network namespaces on a bridge of
//     their own; the load from host C to node A, whose mesh port reaches node B's backends by the
//     agent's own nftables rules (DNAT + masquerade), by the proxy + mTLS tunnel, and by HAProxy;
//     against C → B direct. YUN_BENCH_MESH_NETNS=0 leaves it out.
// Targets: VIP and mesh ≥ 0.8× direct throughput and ≥ HAProxy's; added p50 latency ≤ 50 µs.
//
// Every party is its own process, all on 127.0.0.0/8: two node:http backends (node B, 127.0.0.2),
// the tunnel server (node B), the proxy (node A: VIP 127.0.0.10, mesh on 127.0.0.3), HAProxy
// (127.0.0.5), and the load generator (a raw-socket HTTP/1.1 keep-alive client: one request in
// flight per connection, response framed by Content-Length, written here rather than wrk so that
// nothing needs installing; it uses well under a core, see the CPU column). Throughput:
// YUN_BENCH_MESH_CONNS (32) connections for YUN_BENCH_MESH_SECONDS (2) after a warm-up; latency:
// one connection, sequential requests, for 1 s (so p50 is the path's own latency, not queueing).
// YUN_BENCH_MESH_ROUNDS (3) rounds, interleaved; the best round of each path is reported (noise on
// a shared VM only ever slows a run down). CPU time of every process over each throughput run comes
// from /proc, and so does the CPU that went to anything else (a busy machine is flagged).
// HAProxy is the Debian package (CI installs it); without it, its rows are left out.
//
// On a 2-vCPU machine the load generator, the backends and the proxy share the same two cores:
// direct runs 3 busy processes, the VIP 4, the mesh 5 — a proxy's CPU is taken from the backends
// and the client, so ratios here are lower than on a machine where the proxy has its own core.
// HAProxy runs under exactly the same constraint, which keeps that comparison fair.
//
// Run as `node dist/bench/mesh.bench.js` (or `node scripts/run-bench.mjs mesh`); the same file is
// the child processes' entry point (`--role backend|proxy|tunnel|load`).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { L4Proxy, type Backend } from '../src/dataplane/proxy.js';
import { TunnelServer, tunnelDialer } from '../src/dataplane/tunnel.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const SELF = fileURLToPath(import.meta.url);

function envNum(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, not "${v}"`);
  return n;
}

const CFG = {
  conns: envNum('YUN_BENCH_MESH_CONNS', 32),
  seconds: envNum('YUN_BENCH_MESH_SECONDS', 2),
  warmupSeconds: 0.5,
  latencySeconds: 1,
  rounds: envNum('YUN_BENCH_MESH_ROUNDS', 3),
};
const TARGETS = { ratioToDirect: 0.8, addedP50Us: 50 };
const NODE_B = '127.0.0.2';
const NODE_A = '127.0.0.3';
const VIP = '127.0.0.10';
const HAPROXY_ADDR = '127.0.0.5';
/** The nftables fast path: a VIP and a published port whose backends are all on the node. */
const VIP_NFT = '127.0.0.11';
const BODY_LEN = 10; // "backend-1\n"

// ---- child roles ------------------------------------------------------------------------------------

function ready(info: object): void {
  process.stdout.write(JSON.stringify({ ready: true, ...info }) + '\n');
}

async function roleBackend(host: string, id: string): Promise<void> {
  const body = Buffer.from(`backend-${id}\n`);
  if (body.length !== BODY_LEN) throw new Error('backend ids must be one character');
  const server = http.createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': body.length });
    res.end(body);
  });
  server.keepAliveTimeout = 120_000;
  await new Promise<void>((r) => server.listen({ host, port: 0, backlog: 1024 }, () => r()));
  ready({ port: (server.address() as net.AddressInfo).port });
}

interface ProxyConfig {
  backends: { host: string; port: number }[];
  tunnel: { cert: string; key: string; ca: string; host: string; port: number };
  /** Where it listens (default: the loopback layout's VIP and node A). */
  vip?: string;
  mesh?: string;
}

async function roleProxy(cfgPath: string): Promise<void> {
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as ProxyConfig;
  const dial = tunnelDialer({ cert: cfg.tunnel.cert, key: cfg.tunnel.key, ca: cfg.tunnel.ca, nodeAddress: (id) => (id === 'node-b' ? { host: cfg.tunnel.host, port: cfg.tunnel.port } : undefined) });
  const proxy = new L4Proxy({ dial });
  const vipPort = await proxy.listen('vip', cfg.vip ?? VIP, 0);
  proxy.setBackends('vip', cfg.backends.map((b, i): Backend => ({ id: `t${i + 1}`, host: b.host, port: b.port, node_id: 'node-a', local: true })));
  const meshPort = await proxy.listen('mesh', cfg.mesh ?? NODE_A, 0);
  proxy.setBackends('mesh', cfg.backends.map((b, i): Backend => ({ id: `t${i + 1}`, host: b.host, port: b.port, node_id: 'node-b', local: false })));
  ready({ vipPort, meshPort });
}

async function roleTunnel(cfgPath: string): Promise<void> {
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as { cert: string; key: string; ca: string; targets: string[]; listen?: string };
  const targets = new Set(cfg.targets);
  const server = new TunnelServer({ cert: cfg.cert, key: cfg.key, ca: cfg.ca, allow: (id) => id === 'node-a', resolveTarget: (t) => targets.has(`${t.host}:${t.port}`) });
  ready({ port: await server.listen(cfg.listen ?? NODE_B, 0) });
}

interface LoadResult {
  requests: number;
  errors: number;
  seconds: number;
  rps: number;
  p50_us: number;
  p99_us: number;
  cpu_ms: number;
  per_backend: Record<string, number>;
}

/**
 * The load generator: `conns` keep-alive connections spread over `targets`, each with one request
 * in flight; responses must be 200 with the backend's body. Warm-up first, then the measured window.
 */
async function roleLoad(targetsArg: string, conns: number, seconds: number, warmup: number): Promise<void> {
  const targets = targetsArg.split(',').map((t) => {
    const i = t.lastIndexOf(':');
    return { host: t.slice(0, i), port: Number(t.slice(i + 1)) };
  });
  const req = Buffer.from('GET / HTTP/1.1\r\nHost: bench\r\n\r\n');
  const maxSamples = 2_000_000;
  const lat = new Float64Array(maxSamples);
  let n = 0;
  let errors = 0;
  let measuring = false;
  let stopping = false;
  const perBackend: Record<string, number> = {};
  const sockets: net.Socket[] = [];
  const CRLF2 = Buffer.from('\r\n\r\n');
  await Promise.all(
    Array.from({ length: conns }, (_, i) => {
      const t = targets[i % targets.length]!;
      return new Promise<void>((resolve, reject) => {
        const s = net.connect({ host: t.host, port: t.port, noDelay: true });
        sockets.push(s);
        let buf: Buffer | null = null;
        let sent = 0;
        const send = () => {
          sent = performance.now();
          s.write(req);
        };
        s.on('data', (chunk: Buffer) => {
          buf = buf === null ? chunk : Buffer.concat([buf, chunk]);
          const he = buf.indexOf(CRLF2);
          if (he < 0) return;
          const head = buf.toString('latin1', 0, he);
          const m = /content-length:\s*(\d+)/i.exec(head);
          const total = he + 4 + (m ? Number(m[1]) : 0);
          if (buf.length < total) return;
          const ok = head.startsWith('HTTP/1.1 200');
          if (measuring) {
            if (!ok) errors++;
            else {
              if (n < maxSamples) lat[n] = (performance.now() - sent) * 1000;
              n++;
              const who = String.fromCharCode(buf[total - 2]!);
              perBackend[who] = (perBackend[who] ?? 0) + 1;
            }
          }
          buf = buf.length > total ? buf.subarray(total) : null;
          if (!stopping) send();
        });
        s.once('connect', () => {
          resolve();
          send();
        });
        s.on('error', (err) => {
          if (!stopping) {
            errors++;
            reject(err);
          }
        });
      });
    }),
  );
  await new Promise((r) => setTimeout(r, warmup * 1000));
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  measuring = true;
  await new Promise((r) => setTimeout(r, seconds * 1000));
  measuring = false;
  const elapsed = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  stopping = true;
  for (const s of sockets) s.destroy();
  const sorted = lat.subarray(0, Math.min(n, maxSamples)).sort();
  const pct = (p: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]! : NaN);
  const out: LoadResult = { requests: n, errors, seconds: elapsed, rps: n / elapsed, p50_us: pct(50), p99_us: pct(99), cpu_ms: (cpu.user + cpu.system) / 1000, per_backend: perBackend };
  process.stdout.write(JSON.stringify(out) + '\n');
}

// ---- the orchestrating process -----------------------------------------------------------------------

const children: ChildProcess[] = [];

function startChild(cmd: string, args: string[], name: string): Promise<{ child: ChildProcess; info: Record<string, number> }> {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${name} did not become ready: ${err}`)), 10_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const nl = out.indexOf('\n');
      if (nl >= 0) {
        clearTimeout(timer);
        resolve({ child, info: JSON.parse(out.slice(0, nl)) as Record<string, number> });
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code}: ${err}`));
    });
  });
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 3000);
  return exited.finally(() => clearTimeout(t));
}

const CLK_TCK = (() => {
  const r = spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' });
  return Number(r.stdout?.trim()) || 100;
})();

/** CPU time (ms) of a process so far, from /proc/PID/stat (utime + stime). */
function cpuMs(pid: number | undefined): number {
  if (!pid) return 0;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
  } catch {
    return 0;
  }
}

/** Busy and total jiffies of the whole machine so far, from /proc/stat. */
function machineTicks(): { busy: number; total: number } {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - f[3]! - f[4]!, total };
}

interface Run extends LoadResult {
  /** CPU of each watched process (and the load generator) over the measured window, % of one core. */
  cpu_pct: Record<string, number>;
  /** CPU used on the machine by anything else (other processes, interrupt time), % of one core. */
  other_pct: number;
}

/** A command run inside a network namespace (`ip netns exec` execs it: the pid stays the same). */
const inNs = (ns: string | undefined, cmd: string, args: string[]): [string, string[]] => (ns ? ['ip', ['netns', 'exec', ns, cmd, ...args]] : [cmd, args]);

async function runLoad(targets: string, conns: number, seconds: number, warmup: number, watch: Record<string, ChildProcess>, ns?: string): Promise<Run> {
  const [cmd, args] = inNs(ns, process.execPath, [SELF, '--role', 'load', targets, String(conns), String(seconds), String(warmup)]);
  const loader = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
  children.push(loader);
  let out = '';
  loader.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => loader.once('exit', r));
  // Sample CPU over (about) the load generator's measured window.
  await new Promise((r) => setTimeout(r, warmup * 1000 + 150));
  const all = { ...watch, loadgen: loader };
  const before = Object.fromEntries(Object.entries(all).map(([k, c]) => [k, cpuMs(c.pid)]));
  const m0 = machineTicks();
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000 - 300));
  const wall = performance.now() - t0;
  const m1 = machineTicks();
  const cpu_pct: Record<string, number> = {};
  let ours = 0;
  for (const [k, c] of Object.entries(all)) {
    const ms = cpuMs(c.pid) - before[k]!;
    ours += ms;
    cpu_pct[k] = Math.round((ms / wall) * 100);
  }
  const busyMs = ((m1.busy - m0.busy) * 1000) / CLK_TCK;
  const other_pct = Math.max(0, Math.round(((busyMs - ours) / wall) * 100));
  const code = await exited;
  if (code !== 0) throw new Error(`load generator failed (exit ${code}) against ${targets}`);
  const res = JSON.parse(out.trim().split('\n').pop()!) as LoadResult;
  return { ...res, cpu_pct, other_pct };
}

interface Figures {
  rps: number;
  loaded_p50_us: number;
  loaded_p99_us: number;
  p50_us: number;
  p99_us: number;
  errors: number;
  per_backend: Record<string, number>;
  cpu_pct: Record<string, number>;
  /** CPU time of the proxying processes (proxy + tunnel, or HAProxy) per request, µs. */
  proxy_cpu_us_per_req: number;
  other_pct: number;
}

function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen({ host, port: 0 }, () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

function haproxyConfig(port: number, backends: { host: string; port: number }[], threads: number | undefined, bind = HAPROXY_ADDR): string {
  return [
    'global',
    '  maxconn 4000',
    ...(threads ? [`  nbthread ${threads}`] : []),
    'defaults',
    '  mode tcp',
    '  timeout connect 500ms',
    '  timeout client 120s',
    '  timeout server 120s',
    '  retries 2',
    '  option redispatch',
    'frontend vip',
    `  bind ${bind}:${port}`,
    '  default_backend tasks',
    'backend tasks',
    '  balance roundrobin',
    ...backends.map((b, i) => `  server t${i + 1} ${b.host}:${b.port}`),
    '',
  ].join('\n');
}

async function startHaproxy(dir: string, name: string, backends: { host: string; port: number }[], threads: number | undefined): Promise<{ child: ChildProcess; port: number }> {
  const port = await freePort(HAPROXY_ADDR);
  const cfg = join(dir, `${name}.cfg`);
  writeFileSync(cfg, haproxyConfig(port, backends, threads));
  const child = spawn('haproxy', ['-f', cfg, '-db'], { stdio: ['ignore', 'ignore', 'pipe'] });
  children.push(child);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const deadline = Date.now() + 5000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`haproxy exited: ${err}`);
    const ok = await new Promise<boolean>((r) => {
      const s = net.connect({ host: HAPROXY_ADDR, port }, () => {
        s.destroy();
        r(true);
      });
      s.on('error', () => r(false));
    });
    if (ok) return { child, port };
    if (Date.now() > deadline) throw new Error(`haproxy did not listen: ${err}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The installed HAProxy's version, or undefined when there is none (CI: `apt-get install -y haproxy`). */
function haproxyVersion(): string | undefined {
  const r = spawnSync('haproxy', ['-v'], { encoding: 'utf8' });
  if (r.error || r.status !== 0) return undefined;
  return /version (\S+)/.exec(r.stdout ?? '')?.[1] ?? 'unknown';
}

function row(name: string, value: string, target: string, ok: boolean | undefined): string {
  return `${name.padEnd(48)} ${value.padStart(16)}   ${target.padEnd(10)} ${ok === undefined ? '' : ok ? 'PASS' : 'MISS'}`;
}

let acrossWhy = '';

/**
 * The same paths across real (namespaced) hosts: node B runs the backends and the tunnel, node A
 * the mesh (nftables DNAT to B with masquerade, as the agent writes it; the proxy + tunnel; HAProxy),
 * and the load comes from a third host. Needs root, iproute2 and nft; undefined (with why) otherwise.
 */
async function acrossNodes(dir: string, ca: Awaited<ReturnType<typeof import('../src/pki/ca.js').createCA>>, haproxy: boolean, cleanups: (() => Promise<void>)[]): Promise<{ paths: Record<string, { targets: string; watch: Record<string, ChildProcess>; label: string; ns: string; base: string }> } | undefined> {
  if (process.env.YUN_BENCH_MESH_NETNS === '0') { acrossWhy = 'YUN_BENCH_MESH_NETNS=0'; return undefined; }
  const { createLan, lanSupport } = await import('../test/helpers/netns.js');
  const sup = await lanSupport({ nft: true });
  if (!sup.ok) { acrossWhy = sup.reason; return undefined; }
  const lan = await createLan(3, { subnet: '172.31.249' });
  cleanups.push(() => lan.cleanup());
  const [a, b, c] = lan.hosts as [typeof lan.hosts[0], typeof lan.hosts[0], typeof lan.hosts[0]];
  const { issueCertificate } = await import('../src/pki/ca.js');
  const cA = await issueCertificate(ca, { commonName: 'node-a', organizationalUnit: 'worker', hosts: [a.address], usage: 'both' });
  const cB = await issueCertificate(ca, { commonName: 'node-b', organizationalUnit: 'worker', hosts: [b.address], usage: 'both' });
  const child = (ns: string, args: string[], name: string) => startChild(...inNs(ns, process.execPath, [SELF, ...args]), name);
  const b1 = await child(b.ns, ['--role', 'backend', b.address, '1'], 'backend 1 (node B)');
  const b2 = await child(b.ns, ['--role', 'backend', b.address, '2'], 'backend 2 (node B)');
  const backends = [{ host: b.address, port: b1.info.port! }, { host: b.address, port: b2.info.port! }];
  const tCfg = join(dir, 'x-tunnel.json');
  writeFileSync(tCfg, JSON.stringify({ cert: cB.certPem, key: cB.keyPem, ca: ca.certPem, targets: backends.map((x) => `${x.host}:${x.port}`), listen: b.address }));
  const tunnel = await child(b.ns, ['--role', 'tunnel', tCfg], 'tunnel (node B)');
  const pCfg = join(dir, 'x-proxy.json');
  writeFileSync(pCfg, JSON.stringify({ backends, tunnel: { cert: cA.certPem, key: cA.keyPem, ca: ca.certPem, host: b.address, port: tunnel.info.port! }, vip: a.address, mesh: a.address } satisfies ProxyConfig));
  const proxy = await child(a.ns, ['--role', 'proxy', pCfg], 'proxy (node A)');
  // The agent's own rendering: DNAT with numgen to node B's backends, masqueraded.
  const { renderTable } = await import('../src/dataplane/nft.js');
  const NFT_PORT = 8091;
  const nft = spawnSync('ip', ['netns', 'exec', a.ns, 'nft', '-f', '-'], { input: renderTable('yun_benchx', [{ address: a.address, port: NFT_PORT, backends: backends.map((x) => ({ ...x, remote: true })) }]), encoding: 'utf8' });
  if (nft.status !== 0) throw new Error(`nft in node A: ${nft.stderr}`);
  const bk = { backend1: b1.child, backend2: b2.child };
  const paths: Record<string, { targets: string; watch: Record<string, ChildProcess>; label: string; ns: string; base: string }> = {
    x_direct: { label: 'direct (client → node B)', targets: backends.map((x) => `${x.host}:${x.port}`).join(','), watch: bk, ns: c.ns, base: 'x_direct' },
    x_mesh_nft: { label: 'mesh across nodes (nftables DNAT)', targets: `${a.address}:${NFT_PORT}`, watch: bk, ns: c.ns, base: 'x_direct' },
    x_mesh: { label: 'mesh across nodes (proxy + mTLS tunnel)', targets: `${a.address}:${proxy.info.meshPort}`, watch: { ...bk, proxy: proxy.child, tunnel: tunnel.child }, ns: c.ns, base: 'x_direct' },
  };
  if (haproxy) {
    const HA_PORT = 18081;
    const cfg = join(dir, 'x-haproxy.cfg');
    writeFileSync(cfg, haproxyConfig(HA_PORT, backends, 1, a.address));
    const ha = spawn(...inNs(a.ns, 'haproxy', ['-f', cfg, '-db']), { stdio: ['ignore', 'ignore', 'pipe'] });
    children.push(ha);
    const probe = `require('net').connect(${HA_PORT}, ${JSON.stringify(a.address)}).on('connect', () => process.exit(0)).on('error', () => process.exit(1))`;
    for (let i = 0; ; i++) {
      if (spawnSync('ip', ['netns', 'exec', c.ns, process.execPath, '-e', probe]).status === 0) break;
      if (i > 50 || ha.exitCode !== null) throw new Error('haproxy in node A did not listen');
      await new Promise((r) => setTimeout(r, 100));
    }
    paths.x_haproxy = { label: 'HAProxy across nodes, nbthread 1', targets: `${a.address}:${HA_PORT}`, watch: { ...bk, haproxy: ha }, ns: c.ns, base: 'x_direct' };
  }
  return { paths };
}

async function main(): Promise<void> {
  const { createCA, issueCertificate } = await import('../src/pki/ca.js');
  const dir = mkdtempSync(join(tmpdir(), 'yun-bench-mesh-'));
  const started = performance.now();
  const cleanups: (() => Promise<void>)[] = [];
  const stopAll = async () => {
    for (const c of children.reverse()) await stopChild(c);
    for (const c of cleanups.splice(0)) await c().catch(() => undefined);
  };
  const onSignal = () => {
    void stopAll().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const ca = await createCA('yunstack-bench');
    const certA = await issueCertificate(ca, { commonName: 'node-a', organizationalUnit: 'worker', hosts: [NODE_A], usage: 'both' });
    const certB = await issueCertificate(ca, { commonName: 'node-b', organizationalUnit: 'worker', hosts: [NODE_B], usage: 'both' });

    const b1 = await startChild(process.execPath, [SELF, '--role', 'backend', NODE_B, '1'], 'backend 1');
    const b2 = await startChild(process.execPath, [SELF, '--role', 'backend', NODE_B, '2'], 'backend 2');
    const backends = [{ host: NODE_B, port: b1.info.port! }, { host: NODE_B, port: b2.info.port! }];
    const tunnelCfg = join(dir, 'tunnel.json');
    writeFileSync(tunnelCfg, JSON.stringify({ cert: certB.certPem, key: certB.keyPem, ca: ca.certPem, targets: backends.map((b) => `${b.host}:${b.port}`) }));
    const tunnel = await startChild(process.execPath, [SELF, '--role', 'tunnel', tunnelCfg], 'tunnel');
    const proxyCfg = join(dir, 'proxy.json');
    writeFileSync(proxyCfg, JSON.stringify({ backends, tunnel: { cert: certA.certPem, key: certA.keyPem, ca: ca.certPem, host: NODE_B, port: tunnel.info.port } } satisfies ProxyConfig));
    const proxy = await startChild(process.execPath, [SELF, '--role', 'proxy', proxyCfg], 'proxy');
    const haVersion = haproxyVersion();
    const ha1 = haVersion ? await startHaproxy(dir, 'haproxy-1t', backends, 1) : undefined;
    const haN = haVersion ? await startHaproxy(dir, 'haproxy-default', backends, undefined) : undefined;

    const bk = { backend1: b1.child, backend2: b2.child };
    const { NftFastPath } = await import('../src/dataplane/nft.js');
    const fast = new NftFastPath(`yun_bench${process.pid}`);
    const fastOff = await fast.probe();
    const meshNftPort = await freePort(NODE_A);
    if (fastOff === null) {
      await fast.apply([{ address: VIP_NFT, port: 80, backends }, { address: NODE_A, port: meshNftPort, backends }]);
      cleanups.push(() => fast.close());
    }
    const paths: Record<string, { targets: string; watch: Record<string, ChildProcess>; label: string; ns?: string; base?: string }> = {
      direct: { label: 'direct (client → backends)', targets: backends.map((b) => `${b.host}:${b.port}`).join(','), watch: bk },
      vip: { label: 'VIP (L4Proxy, direct dial)', targets: `${VIP}:${proxy.info.vipPort}`, watch: { ...bk, proxy: proxy.child } },
      mesh: { label: 'routing mesh (L4Proxy + mTLS tunnel)', targets: `${NODE_A}:${proxy.info.meshPort}`, watch: { ...bk, proxy: proxy.child, tunnel: tunnel.child } },
    };
    if (fastOff === null) {
      paths.vip_nft = { label: 'VIP (nftables fast path)', targets: `${VIP_NFT}:80`, watch: bk };
      paths.mesh_nft = { label: 'mesh, local backends (nftables)', targets: `${NODE_A}:${meshNftPort}`, watch: bk };
    }
    if (ha1 && haN) {
      paths.haproxy = { label: 'HAProxy mode tcp, nbthread 1', targets: `${HAPROXY_ADDR}:${ha1.port}`, watch: { ...bk, haproxy: ha1.child } };
      paths.haproxy_default = { label: 'HAProxy mode tcp, default threads', targets: `${HAPROXY_ADDR}:${haN.port}`, watch: { ...bk, haproxy: haN.child } };
    }
    const across = await acrossNodes(dir, ca, haVersion !== undefined, cleanups);
    if (across) Object.assign(paths, across.paths);
    const proxyProcs: Record<string, string[]> = { direct: [], vip: ['proxy'], mesh: ['proxy', 'tunnel'], vip_nft: [], mesh_nft: [], haproxy: ['haproxy'], haproxy_default: ['haproxy'], x_direct: [], x_mesh_nft: [], x_mesh: ['proxy', 'tunnel'], x_haproxy: ['haproxy'] };
    const rounds: Record<string, Figures[]> = {};
    for (let r = 0; r < CFG.rounds; r++) {
      // Interleaved, so a slow moment of the machine does not hit one path only.
      for (const [name, p] of Object.entries(paths)) {
        const thr = await runLoad(p.targets, CFG.conns, CFG.seconds, CFG.warmupSeconds, p.watch, p.ns);
        const lat = await runLoad(p.targets, 1, CFG.latencySeconds, 0.2, {}, p.ns);
        const proxyPct = proxyProcs[name]!.reduce((sum, k) => sum + (thr.cpu_pct[k] ?? 0), 0);
        (rounds[name] ??= []).push({
          rps: thr.rps,
          loaded_p50_us: thr.p50_us,
          loaded_p99_us: thr.p99_us,
          p50_us: lat.p50_us,
          p99_us: lat.p99_us,
          errors: thr.errors + lat.errors,
          per_backend: thr.per_backend,
          cpu_pct: thr.cpu_pct,
          proxy_cpu_us_per_req: (proxyPct / 100 / thr.rps) * 1e6,
          other_pct: thr.other_pct,
        });
      }
    }
    // Best round per path: the highest throughput; the lowest single-connection p50 (with its p99).
    const best: Record<string, Figures> = {};
    for (const [name, rs] of Object.entries(rounds)) {
      const thr = rs.reduce((a, b) => (b.rps > a.rps ? b : a));
      const lat = rs.reduce((a, b) => (b.p50_us < a.p50_us ? b : a));
      best[name] = { ...thr, p50_us: lat.p50_us, p99_us: lat.p99_us, errors: rs.reduce((sum, x) => sum + x.errors, 0) };
    }
    const d = best.direct!;
    const ha = best.haproxy;
    const fmtRps = (x: number) => `${Math.round(x).toLocaleString('en-US')}/s`;
    const us = (x: number) => `${x.toFixed(0)} µs`;
    const lines: string[] = [];
    lines.push(`\nData plane: HTTP/1.1 keep-alive GET, ${CFG.conns} connections × ${CFG.seconds} s (throughput), 1 connection × ${CFG.latencySeconds} s (latency); best of ${CFG.rounds} interleaved rounds`);
    lines.push(`${cpus().length} vCPU (${cpus()[0]?.model ?? '?'}), node ${process.version}, HAProxy ${haVersion ?? 'NOT INSTALLED (apt-get install -y haproxy): its rows are missing'}; every party is its own process on these ${cpus().length} vCPUs`);
    lines.push('');
    lines.push(`${'path'.padEnd(38)} ${'requests'.padStart(10)} ${'×direct'.padStart(7)} ${'p50'.padStart(7)} ${'p99'.padStart(7)} ${'loaded p50/p99'.padStart(16)} ${'proxy CPU/req'.padStart(13)}  CPU % gen/backends/proxy/tunnel, other`);
    for (const [name, p] of Object.entries(paths)) {
      const f = best[name]!;
      const c = f.cpu_pct;
      if (name === 'x_direct') lines.push(`across nodes (network namespaces: client host → node A → node B over a bridge; ×direct is client → node B):`);
      lines.push(
        `${p.label.padEnd(38)} ${fmtRps(f.rps).padStart(10)} ${(f.rps / best[p.base ?? 'direct']!.rps).toFixed(2).padStart(7)} ${us(f.p50_us).padStart(7)} ${us(f.p99_us).padStart(7)} ${`${us(f.loaded_p50_us)}/${us(f.loaded_p99_us)}`.padStart(16)} ${(name === 'direct' ? '-' : `${f.proxy_cpu_us_per_req.toFixed(1)} µs`).padStart(13)}  ${c.loadgen ?? '-'}/${(c.backend1 ?? 0) + (c.backend2 ?? 0)}/${c.proxy ?? c.haproxy ?? '-'}/${c.tunnel ?? '-'}, ${f.other_pct}`,
      );
    }
    const maxOther = Math.max(...Object.values(best).map((f) => f.other_pct));
    if (maxOther > 30) lines.push(`\nWARNING: up to ${maxOther}% of a core went to other work (other processes, interrupts) during the runs: figures are unreliable.`);
    lines.push('');
    lines.push(row('figure', 'value', 'target', undefined));
    const checks: Record<string, boolean> = {};
    const LABELS: Record<string, string> = { vip: 'VIP (proxy)', mesh: 'mesh (proxy+tunnel)', vip_nft: 'VIP (nftables)', mesh_nft: 'mesh (nftables)', x_mesh_nft: 'mesh across nodes (nftables)', x_mesh: 'mesh across nodes (proxy+tunnel)' };
    for (const name of ['vip', 'mesh', 'vip_nft', 'mesh_nft', 'x_mesh_nft', 'x_mesh'].filter((n) => best[n])) {
      const label = LABELS[name]!;
      const f = best[name]!;
      const across = name.startsWith('x_');
      const d = across ? best.x_direct! : best.direct!;
      const ha = across ? best.x_haproxy : best.haproxy;
      const ratio = f.rps / d.rps;
      const added = f.p50_us - d.p50_us;
      checks[`${name}_ratio`] = ratio >= TARGETS.ratioToDirect;
      if (ha) checks[`${name}_vs_haproxy`] = f.rps >= ha.rps;
      checks[`${name}_added_p50`] = added <= TARGETS.addedP50Us;
      lines.push(row(`${label}: throughput / direct`, `${ratio.toFixed(2)}×`, `≥ ${TARGETS.ratioToDirect}×`, checks[`${name}_ratio`]));
      if (ha) lines.push(row(`${label}: throughput / HAProxy (1 thread)`, `${(f.rps / ha.rps).toFixed(2)}×`, '≥ 1×', checks[`${name}_vs_haproxy`]));
      if (best.haproxy_default && !across) lines.push(row(`${label}: throughput / HAProxy (default threads)`, `${(f.rps / best.haproxy_default.rps).toFixed(2)}×`, '', undefined));
      lines.push(row(`${label}: added p50 latency`, `${added.toFixed(0)} µs`, `≤ ${TARGETS.addedP50Us} µs`, checks[`${name}_added_p50`]));
    }
    if (ha) {
      lines.push(row('HAProxy (1 thread): throughput / direct', `${(ha.rps / d.rps).toFixed(2)}×`, '', undefined));
      lines.push(row('HAProxy (1 thread): added p50 latency', `${(ha.p50_us - d.p50_us).toFixed(0)} µs`, '', undefined));
    }
    if (best.x_haproxy && best.x_direct) lines.push(row('HAProxy across nodes (1 thread): / direct', `${(best.x_haproxy.rps / best.x_direct.rps).toFixed(2)}×`, '', undefined));
    if (!across) lines.push(`(across nodes: not run — ${acrossWhy})`);
    const totalErrors = Object.values(rounds).flat().reduce((sum, f) => sum + f.errors, 0);
    checks.no_failed_requests = totalErrors === 0;
    lines.push(row('failed requests (all runs)', String(totalErrors), '0', checks.no_failed_requests));
    for (const name of ['vip', 'mesh', 'vip_nft', 'mesh_nft', 'x_mesh_nft', 'x_mesh'].filter((n) => best[n])) {
      const pb = best[name]!.per_backend;
      checks[`${name}_both_backends`] = (pb['1'] ?? 0) > 0 && (pb['2'] ?? 0) > 0;
      lines.push(row(`requests per backend, ${LABELS[name]} (1 / 2)`, `${pb['1'] ?? 0} / ${pb['2'] ?? 0}`, 'both', checks[`${name}_both_backends`]));
    }
    lines.push(`\n(total ${((performance.now() - started) / 1000).toFixed(1)} s)`);
    console.log(lines.join('\n'));
    const results = {
      at: new Date().toISOString(),
      machine: { vcpus: cpus().length, cpu: cpus()[0]?.model, node: process.version, haproxy: haVersion ?? null },
      config: CFG,
      targets: TARGETS,
      paths: Object.fromEntries(Object.entries(paths).map(([k, p]) => [k, { label: p.label, ...best[k]!, rounds: rounds[k] }])),
      checks,
    };
    mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
    writeFileSync(join(ROOT, 'bench', 'results', 'mesh.json'), JSON.stringify(results, null, 2) + '\n');
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

const roleIdx = process.argv.indexOf('--role');
if (roleIdx >= 0) {
  const [role, ...args] = process.argv.slice(roleIdx + 1);
  // A child stops with its parent: SIGTERM from the bench, or when the bench is gone (re-parented).
  process.on('SIGTERM', () => process.exit(0));
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) process.exit(0);
  }, 500).unref();
  if (role === 'backend') await roleBackend(args[0]!, args[1]!);
  else if (role === 'proxy') await roleProxy(args[0]!);
  else if (role === 'tunnel') await roleTunnel(args[0]!);
  else if (role === 'load') await roleLoad(args[0]!, Number(args[1]), Number(args[2]), Number(args[3]));
  else throw new Error(`unknown role ${role}`);
} else {
  await main();
}
