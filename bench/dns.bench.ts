// DNS benchmark of issue 5 (target ≥ 30,000 queries/s; CoreDNS on 2 vCPU: 33.7k).
//
// Real processes and real UDP on 127.0.0.1, nothing in-process: the DnsServer runs in a child
// process (`server`) — or in N `cluster` workers sharing one UDP socket (Node 20's dgram has no
// reusePort; cluster workers share the primary's socket handle instead) — with 1000 services (10
// projects × 100: 70 on an overlay network, half vip / half dnsrr, 30 host-network, 3 tasks each, one
// of them unhealthy). Load generators run in child processes of their own (`client`): each sends
// pipelined UDP queries (a fixed number in flight per socket) from sockets bound to 127.0.0.1
// (scope p0/net0: short names), 127.0.0.2 (scope p1/host network) and 127.0.0.3 (no scope: fully
// qualified names only). The query mix: service A (vip and dnsrr), tasks.S, SRV with additional A,
// FQDN forms, NXDOMAIN. Nothing is forwarded (no upstream is configured). Every answer is checked
// (id and rcode) and counted; latency is from send to answer, per query, in µs.
//
//   node dist/bench/dns.bench.js                  the whole run (also via scripts/run-bench.mjs dns)
//   DNS_BENCH_SECONDS=8 DNS_BENCH_INFLIGHT=32 ... to change the defaults
import { fork, type ChildProcess } from 'node:child_process';
import cluster from 'node:cluster';
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import dnsPacket from 'dns-packet';
import { DnsServer, type DnsEndpoint, type DnsScope } from '../src/dataplane/dns.js';

const SELF = fileURLToPath(import.meta.url);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const PROJECTS = 10, PER_PROJECT = 100, OVERLAY = 70;
const TARGET_QPS = 30_000;
const SECONDS = Number(process.env.DNS_BENCH_SECONDS ?? 8);
const WARMUP_S = 1;
const INFLIGHT = Number(process.env.DNS_BENCH_INFLIGHT ?? 32); // per socket (≤ 256)
const SOCKETS = Number(process.env.DNS_BENCH_SOCKETS ?? 3); // per client process, one per source address (≤ 3)
const HIST_US = 1_000_000;

// ---- the table ----
function endpoints(): DnsEndpoint[] {
  const list: DnsEndpoint[] = [];
  for (let p = 0; p < PROJECTS; p++) {
    for (let s = 0; s < PER_PROJECT; s++) {
      const overlay = s < OVERLAY;
      const tasks = [0, 1, 2].map((t) => ({
        address: overlay ? `10.${p}.${s}.${10 + t}` : `127.0.0.${2 + t}`,
        healthy: t !== 2,
        ports: [{ name: 'http', protocol: 'tcp' as const, target: 80, host_port: overlay ? 0 : 20000 + s * 10 + t }],
      }));
      list.push({
        service: `svc${s}`, project: `p${p}`, network: overlay ? 'net0' : null,
        mode: overlay && s % 2 === 0 ? 'vip' : 'dnsrr',
        vip: overlay && s % 2 === 0 ? `10.${p}.255.${s}` : null,
        tasks,
      });
    }
  }
  return list;
}

function scopeOf(src: string): DnsScope | null {
  if (src === '127.0.0.1') return { project: 'p0', network: 'net0' };
  if (src === '127.0.0.2') return { project: 'p1', network: null };
  return null;
}

/** The queries each source sends (cycled), and the rcode each expects. */
function queryMix(source: string): { name: string; type: 'A' | 'SRV'; rcode: number }[] {
  const out: { name: string; type: 'A' | 'SRV'; rcode: number }[] = [];
  for (let i = 0; i < 60; i++) {
    if (source === '127.0.0.1') {
      const s = (i * 7) % OVERLAY;
      out.push({ name: `svc${s}`, type: 'A', rcode: 0 }, { name: `tasks.svc${s}`, type: 'A', rcode: 0 }, { name: `_http._tcp.svc${s}`, type: 'SRV', rcode: 0 },
        { name: `svc${(s + 1) % OVERLAY}.p0.yun`, type: 'A', rcode: 0 }, { name: `nosuch${i}.p0.yun`, type: 'A', rcode: 3 });
    } else if (source === '127.0.0.2') {
      const s = OVERLAY + (i % (PER_PROJECT - OVERLAY));
      out.push({ name: `svc${s}`, type: 'A', rcode: 0 }, { name: `_http._tcp.svc${s}`, type: 'SRV', rcode: 0 }, { name: `tasks.svc${s}.p1.yun`, type: 'A', rcode: 0 });
    } else {
      const p = i % PROJECTS, s = OVERLAY + (i % (PER_PROJECT - OVERLAY));
      out.push({ name: `svc${s}.p${p}.yun`, type: 'A', rcode: 0 }, { name: `_http._tcp.svc${s}.p${p}.yun`, type: 'SRV', rcode: 0 }, { name: `svc1.p${p}.yun`, type: 'A', rcode: 3 });
    }
  }
  return out;
}

// ---- roles ----
async function serverRole(port: number, workers: number): Promise<void> {
  if (workers > 1 && cluster.isPrimary) {
    let ready = 0;
    for (let i = 0; i < workers; i++) {
      const w = cluster.fork({ DNS_BENCH_WORKER: '1' });
      w.on('message', (m: { ready?: boolean }) => {
        if (m.ready && ++ready === workers) process.send!({ ready: true, pids: [process.pid, ...Object.values(cluster.workers ?? {}).map((x) => x!.process.pid!)] });
      });
    }
    process.on('message', (m: { stop?: boolean }) => {
      if (m.stop) { for (const w of Object.values(cluster.workers ?? {})) w?.kill(); setTimeout(() => process.exit(0), 200); }
    });
    return;
  }
  const srv = new DnsServer({ upstreams: [] });
  const t0 = performance.now();
  srv.setEndpoints(endpoints());
  const setMs = performance.now() - t0;
  srv.setScopeResolver(scopeOf);
  await srv.listen('127.0.0.1', port);
  process.send!({ ready: true, setEndpointsMs: setMs, pids: [process.pid] });
  process.on('message', (m: { stop?: boolean }) => {
    if (m.stop) { process.send!({ stats: srv.stats }); void srv.close().then(() => process.exit(0)); }
  });
}

interface ClientResult { sent: number; ok: number; bad: number; lost: number; hist: number[] }

async function clientRole(port: number, seconds: number, SOCKETS: number, INFLIGHT: number): Promise<void> {
  const hist = new Uint32Array(HIST_US + 1);
  let sent = 0, ok = 0, bad = 0, lost = 0, measuring = false, running = true;
  const sources = ['127.0.0.1', '127.0.0.2', '127.0.0.3'].slice(0, SOCKETS);
  const socks: dgram.Socket[] = [];
  for (const src of sources) {
    const mix = queryMix(src);
    const templates = mix.map((m) => dnsPacket.encode({ type: 'query', id: 0, flags: dnsPacket.RECURSION_DESIRED, questions: [{ name: m.name, type: m.type }] }));
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((r) => sock.bind(0, src, () => r()));
    try { sock.setRecvBufferSize(4 << 20); sock.setSendBufferSize(4 << 20); } catch { /* capped */ }
    socks.push(sock);
    const slotBuf: Buffer[] = [], slotT = new Float64Array(INFLIGHT), slotSeq = new Uint8Array(INFLIGHT), slotQ = new Int32Array(INFLIGHT);
    let next = 0;
    const send = (i: number) => {
      const qi = next++ % templates.length;
      const t = templates[qi]!;
      let b = slotBuf[i];
      if (!b || b.length !== t.length) slotBuf[i] = b = Buffer.allocUnsafe(t.length);
      t.copy(b);
      slotSeq[i] = (slotSeq[i]! + 1) & 0xff;
      b.writeUInt16BE((slotSeq[i]! << 8) | i, 0);
      slotQ[i] = qi;
      slotT[i] = performance.now();
      sent += measuring ? 1 : 0;
      sock.send(b, port, '127.0.0.1');
    };
    sock.on('message', (msg) => {
      const id = msg.readUInt16BE(0), i = id & 0xff;
      if (i >= INFLIGHT || (id >> 8) !== slotSeq[i] || slotT[i] === 0) return; // stale (already counted lost)
      const us = Math.round((performance.now() - slotT[i]!) * 1000);
      const rcode = msg.readUInt16BE(2) & 0xf;
      if (measuring) {
        if (rcode === mix[slotQ[i]!]!.rcode && (msg.readUInt16BE(2) & 0x8000)) ok++; else bad++;
        hist[Math.min(us, HIST_US)]!++;
      }
      slotT[i] = 0;
      if (running) send(i);
    });
    setInterval(() => {
      const now = performance.now();
      for (let i = 0; i < INFLIGHT; i++) if (slotT[i]! > 0 && now - slotT[i]! > 1000) { if (measuring) lost++; slotT[i] = 0; if (running) send(i); }
    }, 250).unref();
    for (let i = 0; i < INFLIGHT; i++) send(i);
  }
  await new Promise((r) => setTimeout(r, WARMUP_S * 1000));
  measuring = true; sent = 0;
  await new Promise((r) => setTimeout(r, seconds * 1000));
  measuring = false; running = false;
  await new Promise((r) => setTimeout(r, 200));
  for (const s of socks) s.close();
  // a sparse histogram is enough to merge
  const sparse: number[] = [];
  for (let us = 0; us <= HIST_US; us++) if (hist[us]) sparse.push(us, hist[us]!);
  const res: ClientResult = { sent, ok, bad, lost, hist: sparse };
  process.send!(res, () => process.exit(0));
}

// ---- the orchestration ----
function freePort(): Promise<number> {
  // a port free for UDP and TCP alike (the server binds both)
  return new Promise((resolve, reject) => {
    const u = dgram.createSocket('udp4');
    u.bind(0, '127.0.0.1', () => {
      const port = u.address().port;
      const t = net.createServer().listen(port, '127.0.0.1', () => { t.close(); u.close(); resolve(port); });
      t.on('error', () => { u.close(); freePort().then(resolve, reject); });
    });
  });
}

function waitMessage<T>(c: ChildProcess, pred: (m: any) => boolean): Promise<T> {
  return new Promise((resolve, reject) => {
    const onMsg = (m: unknown) => { if (pred(m)) { c.off('message', onMsg); resolve(m as T); } };
    c.on('message', onMsg);
    c.once('exit', (code) => reject(new Error(`child exited (${code}) before answering`)));
  });
}

function cpuSeconds(pids: number[]): number {
  // utime + stime of the server processes, from /proc (Linux; clock ticks assumed 100/s)
  let s = 0;
  for (const pid of pids) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
      s += (Number(f[11]) + Number(f[12])) / 100;
    } catch { return NaN; }
  }
  return s;
}

interface RunResult { label: string; workers: number; clients: number; sockets: number; inflight_per_socket: number; qps: number; p50_us: number; p99_us: number; p999_us: number; ok: number; bad: number; lost: number; server_cpu_s: number; set_endpoints_ms?: number }

async function run(label: string, workers: number, clients: number, sockets: number, inflight: number, attempt = 0): Promise<RunResult> {
  try {
    return await runOnce(label, workers, clients, sockets, inflight);
  } catch (e) {
    if (attempt >= 2) throw e;
    console.error(`dns bench: ${label}: ${(e as Error).message}; retrying on another port`);
    return run(label, workers, clients, sockets, inflight, attempt + 1);
  }
}

async function runOnce(label: string, workers: number, clients: number, sockets: number, inflight: number): Promise<RunResult> {
  const port = await freePort();
  const children: ChildProcess[] = [];
  try {
    const server = fork(SELF, ['server', String(port), String(workers)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    children.push(server);
    const ready = await waitMessage<{ setEndpointsMs?: number; pids: number[] }>(server, (m) => m?.ready);
    const cpu0 = cpuSeconds(ready.pids);
    const cs = Array.from({ length: clients }, () => fork(SELF, ['client', String(port), String(SECONDS), String(sockets), String(inflight)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] }));
    children.push(...cs);
    const results = await Promise.all(cs.map((c) => waitMessage<ClientResult>(c, (m) => m && typeof m.sent === 'number')));
    const cpu1 = cpuSeconds(ready.pids);
    server.send({ stop: true });
    await new Promise((r) => server.once('exit', r));
    const hist = new Map<number, number>();
    let ok = 0, bad = 0, lost = 0;
    for (const r of results) {
      ok += r.ok; bad += r.bad; lost += r.lost;
      for (let i = 0; i < r.hist.length; i += 2) hist.set(r.hist[i]!, (hist.get(r.hist[i]!) ?? 0) + r.hist[i + 1]!);
    }
    const keys = [...hist.keys()].sort((a, b) => a - b);
    const total = keys.reduce((s, k) => s + hist.get(k)!, 0);
    const pctl = (p: number) => { let acc = 0; for (const k of keys) { acc += hist.get(k)!; if (acc >= total * p) return k; } return NaN; };
    return {
      label, workers, clients, sockets, inflight_per_socket: inflight, qps: Math.round((ok + bad) / SECONDS), p50_us: pctl(0.5), p99_us: pctl(0.99), p999_us: pctl(0.999), ok, bad, lost,
      server_cpu_s: Math.round((cpu1 - cpu0) * 100) / 100,
      ...(ready.setEndpointsMs !== undefined ? { set_endpoints_ms: Math.round(ready.setEndpointsMs * 100) / 100 } : {}),
    };
  } finally {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
  }
}

function row(name: string, value: string, target: string, ok: boolean | undefined): string {
  return `${name.padEnd(56)} ${value.padStart(16)}   ${target.padEnd(12)} ${ok === undefined ? '' : ok ? 'PASS' : 'MISS'}`;
}

function setEndpointsCost(): { ms_per_call: number } {
  const srv = new DnsServer({ upstreams: [] });
  const list = endpoints();
  for (let i = 0; i < 20; i++) srv.setEndpoints(list);
  const t0 = performance.now();
  for (let i = 0; i < 200; i++) srv.setEndpoints(list);
  return { ms_per_call: Math.round(((performance.now() - t0) / 200) * 1000) / 1000 };
}

async function main(): Promise<void> {
  const cpus = os.cpus();
  const set = setEndpointsCost();
  const configs: [string, number, number, number, number][] = [
    ['1 server process', 1, 1, SOCKETS, INFLIGHT],
    ['2 cluster workers sharing one UDP socket', 2, 1, SOCKETS, INFLIGHT],
  ];
  const runs: RunResult[] = [];
  for (const [label, workers, clients, sockets, inflight] of configs) runs.push(await run(label, workers, clients, sockets, inflight));
  const best = runs.reduce((a, b) => (b.qps > a.qps ? b : a));
  // unloaded latency: one query at a time
  const idle = await run('1 server process, 1 query in flight (latency)', 1, 1, 1, 1);
  runs.push(idle);
  console.log(`\nDNS (UDP on 127.0.0.1, 1000 services; load: 1 generator process, ${SOCKETS} sockets × ${INFLIGHT} in flight; ${SECONDS} s after ${WARMUP_S} s warm-up; ${cpus.length} CPUs shared by server and generator, Node ${process.version})`);
  console.log(row('figure', 'value', 'target', undefined));
  for (const r of runs) {
    console.log(row(`${r.label}`, `${r.qps.toLocaleString('en-US')} q/s`, r === idle ? '' : '≥ 30,000', r === idle ? undefined : r.qps >= TARGET_QPS));
    console.log(row('  latency p50 / p99 / p99.9', `${r.p50_us} / ${r.p99_us} / ${r.p999_us} µs`, '', undefined));
    console.log(row('  answers checked: right / wrong rcode / lost', `${r.ok} / ${r.bad} / ${r.lost}`, '', r.bad === 0 && r.lost === 0));
    console.log(row('  server CPU while measuring', `${r.server_cpu_s} s of ${SECONDS + WARMUP_S}`, '', undefined));
  }
  console.log(row('best', `${best.qps.toLocaleString('en-US')} q/s`, '≥ 30,000', best.qps >= TARGET_QPS));
  console.log(row('  ratio to CoreDNS on 2 vCPU (33.7k)', `${(best.qps / 33_700).toFixed(2)}×`, '', undefined));
  console.log(row('setEndpoints(1000 services), per call', `${set.ms_per_call} ms`, '', undefined));
  const results = {
    benchmark: 'dns',
    at: new Date().toISOString(),
    machine: { node: process.version, cpus: cpus.length, cpuModel: cpus[0]?.model ?? '', platform: `${process.platform}/${process.arch}` },
    config: { services: PROJECTS * PER_PROJECT, projects: PROJECTS, seconds: SECONDS, warmup_s: WARMUP_S, transport: 'udp 127.0.0.1', server: 'child process (or cluster workers sharing one UDP socket)', forwarded: 0 },
    targets: { queries_per_sec: TARGET_QPS },
    anchors: { coredns_2vcpu_qps: 33_700 },
    runs,
    best: { label: best.label, qps: best.qps, p50_us: best.p50_us, p99_us: best.p99_us, pass: best.qps >= TARGET_QPS },
    set_endpoints_1000_ms: set.ms_per_call,
  };
  mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
  writeFileSync(join(ROOT, 'bench', 'results', 'dns.json'), JSON.stringify(results, null, 2));
}

const role = process.argv[2];
if (process.env.DNS_BENCH_WORKER === '1') await serverRole(Number(process.argv[3]), 1);
else if (role === 'server') await serverRole(Number(process.argv[3]), Number(process.argv[4] ?? 1));
else if (role === 'client') await clientRole(Number(process.argv[3]), Number(process.argv[4]), Number(process.argv[5]), Number(process.argv[6]));
else await main();
