// API benchmark: starts the real `yun up` (node bin/yun.js up) as a child process in a temporary
// data directory on 127.0.0.1, and measures the figures of issue 2, "It must show" item 7:
//   - `yun up` to healthy ≤ 2 s (warm start: the second start of an existing data dir);
//   - single-object create p99 ≤ 20 ms at 200 req/s (open loop);
//   - paginated list of 10,000 objects (limit=1000) p99 ≤ 100 ms per page;
//   - idle RSS of `yun up` ≤ 150 MB.
// Prints a table with the target beside each figure, writes bench/results/api.json, and exits 0
// even when a target is missed (a benchmark reports); it exits non-zero only when it breaks.
//
// Knobs (environment): YUN_BENCH_CREATE_SECONDS (10), YUN_BENCH_CREATE_RATE (200),
// YUN_BENCH_LIST_OBJECTS (10000), YUN_BENCH_LIST_PASSES (10), YUN_BENCH_WARM_STARTS (5),
// YUN_BENCH_IDLE_SECONDS (5).
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { Agent, request } from 'undici';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const YUN_BIN = join(ROOT, 'bin', 'yun.js');
const RESULTS_DIR = join(ROOT, 'bench', 'results');

function envInt(name: string, dflt: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new Error(`${name} must be a positive number, not "${v}"`);
  return n;
}

const CFG = {
  warmStarts: envInt('YUN_BENCH_WARM_STARTS', 5),
  createRate: envInt('YUN_BENCH_CREATE_RATE', 200),
  createSeconds: envInt('YUN_BENCH_CREATE_SECONDS', 10),
  createWarmupSeconds: 1,
  listObjects: envInt('YUN_BENCH_LIST_OBJECTS', 10_000),
  listPageSize: 1000,
  listPasses: envInt('YUN_BENCH_LIST_PASSES', 10),
  seedConcurrency: 16,
  seedTokens: 4,
  idleSeconds: envInt('YUN_BENCH_IDLE_SECONDS', 5),
  startTimeoutMs: 30_000,
  stopTimeoutMs: 15_000,
};

const TARGETS = {
  warmStartHealthyMs: 2000,
  createP99Ms: 20,
  listPageP99Ms: 100,
  idleRssMb: 150,
};

// ---- statistics ---------------------------------------------------------------------------------

interface Dist { n: number; min: number; p50: number; p90: number; p99: number; max: number; mean: number }

/** Nearest-rank percentile of an ascending array. */
function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

function dist(xs: number[]): Dist {
  const s = [...xs].sort((a, b) => a - b);
  const sum = s.reduce((a, b) => a + b, 0);
  return { n: s.length, min: s[0] ?? NaN, p50: pct(s, 50), p90: pct(s, 90), p99: pct(s, 99), max: s[s.length - 1] ?? NaN, mean: s.length ? sum / s.length : NaN };
}

function median(xs: number[]): number {
  return pct([...xs].sort((a, b) => a - b), 50);
}

const r1 = (x: number): number => Math.round(x * 10) / 10;
const r2 = (x: number): number => Math.round(x * 100) / 100;
function roundDist(d: Dist): Dist {
  return { n: d.n, min: r2(d.min), p50: r2(d.p50), p90: r2(d.p90), p99: r2(d.p99), max: r2(d.max), mean: r2(d.mean) };
}

// ---- the yun up child ---------------------------------------------------------------------------

/** Every yun up this benchmark spawned and that has not exited yet (killed by pid in main's finally). */
const live = new Set<ChildProcess>();

interface Running {
  child: ChildProcess;
  pid: number;
  url: string;
  /** Spawn → "API: URL" on stdout. */
  urlMs: number;
  /** Spawn → first /healthz 200. */
  healthyMs: number;
  /** What the process itself says ("Yunstack is up in X s"), in ms. */
  selfReportedMs: number | undefined;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

interface AdminEnv { YUN_URL: string; YUN_CACERT: string; YUN_USERNAME: string; YUN_PASSWORD: string; YUN_PROJECT: string }

function readAdminEnv(dataDir: string): AdminEnv {
  const text = readFileSync(join(dataDir, 'admin.env'), 'utf8');
  const env: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^\s*(?:export\s+)?([A-Z_][A-Z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2]!.trim();
    if ((v.startsWith("'") && v.endsWith("'")) || (v.startsWith('"') && v.endsWith('"'))) v = v.slice(1, -1);
    env[m[1]!] = v;
  }
  for (const k of ['YUN_URL', 'YUN_CACERT', 'YUN_USERNAME', 'YUN_PASSWORD', 'YUN_PROJECT']) {
    if (!env[k]) throw new Error(`${join(dataDir, 'admin.env')} has no ${k}`);
  }
  return env as unknown as AdminEnv;
}

function tail(file: string, lines = 20): string {
  try {
    return readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no output)';
  }
}

/** Spawn `yun up`, wait for the printed URL, then poll /healthz until it answers 200. */
async function startYun(dataDir: string, logFile: string, extraArgs: string[] = []): Promise<Running> {
  const errFd = openSync(logFile, 'a');
  const t0 = performance.now();
  const child = spawn(process.execPath, [YUN_BIN, 'up', '--data-dir', dataDir, '--listen', '127.0.0.1:0', ...extraArgs], {
    stdio: ['ignore', 'pipe', errFd],
    env: { ...process.env, NO_COLOR: '1' },
  });
  closeSync(errFd);
  if (child.pid === undefined) throw new Error('could not spawn yun up');
  const pid = child.pid;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  live.add(child);
  void exited.then(() => live.delete(child));

  let stdout = '';
  let urlMs = NaN;
  let selfReportedMs: number | undefined;
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`yun up printed no URL within ${CFG.startTimeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${tail(logFile)}`)), CFG.startTimeoutMs);
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => {
      stdout += chunk;
      const m = /API:\s+(https?:\/\/\S+)/.exec(stdout);
      if (m && Number.isNaN(urlMs)) {
        urlMs = performance.now() - t0;
        const s = /is up in ([\d.]+)s/.exec(stdout);
        if (s) selfReportedMs = Number(s[1]) * 1000;
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`yun up exited (code ${code}, signal ${signal}) before printing its URL\nstdout:\n${stdout}\nstderr:\n${tail(logFile)}`));
    });
  });
  // Keep draining stdout so the child never blocks on a full pipe.
  child.stdout!.resume();

  const u = new URL(url);
  if (u.hostname !== '127.0.0.1') throw new Error(`yun up printed ${url}; this benchmark only talks to 127.0.0.1`);
  const env = readAdminEnv(dataDir);
  const agent = new Agent({ connect: { ca: readFileSync(env.YUN_CACERT, 'utf8') }, keepAliveTimeout: 10_000 });
  try {
    const deadline = t0 + CFG.startTimeoutMs;
    for (;;) {
      try {
        const r = await request(`${url}/healthz`, { dispatcher: agent });
        await r.body.text();
        if (r.statusCode === 200) break;
      } catch {
        // not yet
      }
      if (performance.now() > deadline) throw new Error(`${url}/healthz did not answer 200 within ${CFG.startTimeoutMs} ms\nstderr:\n${tail(logFile)}`);
      await sleep(2);
    }
  } finally {
    await agent.close();
  }
  const healthyMs = performance.now() - t0;
  return { child, pid, url, urlMs, healthyMs, selfReportedMs, exited };
}

/** SIGTERM and wait for a clean exit; returns how long it took and the exit code. */
async function stopYun(r: Running): Promise<{ stopMs: number; code: number | null; signal: NodeJS.Signals | null }> {
  const t0 = performance.now();
  r.child.kill('SIGTERM');
  const timeout = sleep(CFG.stopTimeoutMs).then(() => undefined);
  const res = await Promise.race([r.exited, timeout]);
  if (!res) {
    r.child.kill('SIGKILL');
    await r.exited;
    throw new Error(`yun up (pid ${r.pid}) did not exit within ${CFG.stopTimeoutMs} ms of SIGTERM`);
  }
  return { stopMs: performance.now() - t0, ...res };
}

function rssMb(pid: number): { rssMb: number; hwmMb: number } {
  const s = readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string): number => {
    const m = new RegExp(`^${k}:\\s+(\\d+)\\s+kB`, 'm').exec(s);
    if (!m) throw new Error(`/proc/${pid}/status has no ${k}`);
    return Number(m[1]);
  };
  return { rssMb: r1(kb('VmRSS') / 1024), hwmMb: r1(kb('VmHWM') / 1024) };
}


// ---- HTTP ---------------------------------------------------------------------------------------

class Client {
  readonly agent: Agent;
  constructor(readonly url: string, ca: string) {
    this.agent = new Agent({ connect: { ca }, keepAliveTimeout: 30_000, keepAliveMaxTimeout: 60_000 });
  }

  async call(method: 'GET' | 'POST', path: string, token?: string, body?: unknown): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
    const headers: Record<string, string> = {};
    if (token) headers['x-auth-token'] = token;
    if (body !== undefined) headers['content-type'] = 'application/json';
    const r = await request(`${this.url}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), dispatcher: this.agent });
    const text = await r.body.text();
    return { status: r.statusCode, headers: r.headers, text };
  }

  async login(env: AdminEnv): Promise<string> {
    const r = await this.call('POST', '/v1/auth/tokens', undefined, { username: env.YUN_USERNAME, password: env.YUN_PASSWORD, project: env.YUN_PROJECT });
    const tok = r.headers['x-subject-token'];
    if (r.status !== 201 || typeof tok !== 'string') throw new Error(`login failed: ${r.status} ${r.text}`);
    return tok;
  }

  close(): Promise<void> {
    return this.agent.close();
  }
}

// ---- phases -------------------------------------------------------------------------------------

interface CreateResult {
  rateTarget: number;
  durationS: number;
  sent: number;
  ok: number;
  errors: number;
  statuses: Record<string, number>;
  achievedSendRate: number;
  achievedCompletionRate: number;
  /** Send → full response, ms. */
  latencyMs: Dist;
  /** Scheduled send time → full response (corrects for any client-side send delay), ms. */
  latencyFromScheduleMs: Dist;
  /** How late the client sent requests against the schedule, ms. */
  sendLagMs: Dist;
}

/** Open loop: request i is sent at start + i/rate regardless of outstanding responses. */
async function openLoopCreates(client: Client, token: string, rate: number, seconds: number, prefix: string): Promise<CreateResult> {
  const n = Math.round(rate * seconds);
  const interval = 1000 / rate;
  const lat: number[] = [];
  const latSched: number[] = [];
  const lag: number[] = [];
  const statuses: Record<string, number> = {};
  const inflight: Promise<void>[] = [];
  let ok = 0;
  let errors = 0;
  let lastDone = 0;
  const start = performance.now() + 5;
  let firstSend = NaN;
  let lastSend = NaN;

  const fire = (i: number, scheduled: number): void => {
    const sent = performance.now();
    if (i === 0) firstSend = sent;
    lastSend = sent;
    lag.push(sent - scheduled);
    inflight.push(client.call('POST', '/v1/projects', token, { name: `${prefix}-${i}` }).then(
      (r) => {
        const done = performance.now();
        lastDone = done;
        statuses[r.status] = (statuses[r.status] ?? 0) + 1;
        if (r.status === 201) ok++;
        else errors++;
        lat.push(done - sent);
        latSched.push(done - scheduled);
      },
      (e: unknown) => {
        lastDone = performance.now();
        errors++;
        const k = `error:${(e as { code?: string }).code ?? (e as Error).name}`;
        statuses[k] = (statuses[k] ?? 0) + 1;
      },
    ));
  };

  let next = 0;
  while (next < n) {
    const now = performance.now();
    while (next < n && start + next * interval <= now) {
      fire(next, start + next * interval);
      next++;
    }
    if (next < n) {
      const wait = start + next * interval - performance.now();
      if (wait > 1) await sleep(Math.floor(wait));
      else await new Promise<void>((r) => setImmediate(r));
    }
  }
  await Promise.all(inflight);
  const sendSpan = (lastSend - firstSend) / 1000;
  return {
    rateTarget: rate,
    durationS: r2(sendSpan),
    sent: n,
    ok,
    errors,
    statuses,
    achievedSendRate: r1(sendSpan > 0 ? (n - 1) / sendSpan : NaN),
    achievedCompletionRate: r1(n / ((lastDone - firstSend) / 1000)),
    latencyMs: roundDist(dist(lat)),
    latencyFromScheduleMs: roundDist(dist(latSched)),
    sendLagMs: roundDist(dist(lag)),
  };
}

async function countProjects(client: Client, token: string): Promise<number> {
  const r = await client.call('GET', '/v1/projects?limit=1&with_count=true', token);
  if (r.status !== 200) throw new Error(`GET /v1/projects?with_count=true: ${r.status} ${r.text}`);
  const count = (JSON.parse(r.text) as { count?: number }).count;
  if (typeof count !== 'number') throw new Error(`with_count=true returned no count: ${r.text.slice(0, 300)}`);
  return count;
}

/** Create `n` projects as fast as the server allows: several workers, several tokens (the rate limit is per token). */
async function seed(client: Client, tokens: string[], n: number, prefix: string): Promise<{ created: number; seconds: number; rate: number; rateLimited: number; errors: number }> {
  let next = 0;
  let created = 0;
  let rateLimited = 0;
  let errors = 0;
  const t0 = performance.now();
  const worker = async (w: number): Promise<void> => {
    const token = tokens[w % tokens.length]!;
    for (;;) {
      const i = next++;
      if (i >= n) return;
      for (let attempt = 0; ; attempt++) {
        const r = await client.call('POST', '/v1/projects', token, { name: `${prefix}-${i}` });
        if (r.status === 201) { created++; break; }
        if (r.status === 429 && attempt < 100) { rateLimited++; await sleep(50); continue; }
        errors++;
        if (errors > 20) throw new Error(`seeding failed too often; last: ${r.status} ${r.text.slice(0, 300)}`);
        break;
      }
    }
  };
  await Promise.all(Array.from({ length: CFG.seedConcurrency }, (_, w) => worker(w)));
  const seconds = (performance.now() - t0) / 1000;
  return { created, seconds: r2(seconds), rate: r1(created / seconds), rateLimited, errors };
}

interface ListResult {
  passes: number;
  pageSize: number;
  objects: number;
  pagesPerPass: number;
  errors: number;
  itemsPerPass: number[];
  pageMs: Dist;
  /** Median latency by page position (0 = first page), ms: shows whether deep pages cost more. */
  medianByPageMs: number[];
  fullPassMs: Dist;
}

async function listPasses(client: Client, token: string, passes: number, pageSize: number, expected: number): Promise<ListResult> {
  const all: number[] = [];
  const byPage: number[][] = [];
  const fullPass: number[] = [];
  const itemsPerPass: number[] = [];
  let errors = 0;
  for (let p = 0; p < passes; p++) {
    let path: string | null = `/v1/projects?limit=${pageSize}`;
    let items = 0;
    let page = 0;
    const passStart = performance.now();
    while (path) {
      const t = performance.now();
      const r = await client.call('GET', path, token);
      const ms = performance.now() - t;
      if (r.status !== 200) throw new Error(`GET ${path}: ${r.status} ${r.text.slice(0, 300)}`);
      all.push(ms);
      (byPage[page] ??= []).push(ms);
      const body = JSON.parse(r.text) as { items: unknown[]; next: string | null };
      items += body.items.length;
      page++;
      if (page > 10_000) throw new Error('pagination does not end');
      path = body.next ? toPath(body.next, client.url) : null;
    }
    fullPass.push(performance.now() - passStart);
    itemsPerPass.push(items);
    if (items !== expected) errors++;
  }
  return {
    passes,
    pageSize,
    objects: expected,
    pagesPerPass: byPage.length,
    errors,
    itemsPerPass: [...new Set(itemsPerPass)],
    pageMs: roundDist(dist(all)),
    medianByPageMs: byPage.map((xs) => r2(median(xs))),
    fullPassMs: roundDist(dist(fullPass)),
  };
}

/** `next` is a relative URL (or absolute on this server); keep only path + query, and refuse other hosts. */
function toPath(next: string, base: string): string {
  const u = new URL(next, base);
  if (u.origin !== new URL(base).origin) throw new Error(`next link ${next} points away from ${base}`);
  return `${u.pathname}${u.search}`;
}

/** The server's own view of its memory, from its Prometheus /metrics (prom-client default metrics); undefined if absent. */
async function memoryBreakdown(url: string, caPath: string): Promise<{ heapUsedMb: number; heapTotalMb: number; externalMb: number; rssMb: number } | undefined> {
  const c = new Client(url, readFileSync(caPath, 'utf8'));
  try {
    const r = await c.call('GET', '/metrics');
    if (r.status !== 200) return undefined;
    const metric = (name: string): number => {
      const m = new RegExp(`^\\w*${name}(?:\\{[^}]*\\})?\\s+([0-9.eE+-]+)`, 'm').exec(r.text);
      return m ? r1(Number(m[1]) / 2 ** 20) : NaN;
    };
    return { heapUsedMb: metric('nodejs_heap_size_used_bytes'), heapTotalMb: metric('nodejs_heap_size_total_bytes'), externalMb: metric('nodejs_external_memory_bytes'), rssMb: metric('process_resident_memory_bytes') };
  } catch {
    return undefined;
  } finally {
    await c.close();
  }
}

// ---- main ---------------------------------------------------------------------------------------

function gitRev(): string | undefined {
  try {
    const rev = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const dirty = execFileSync('git', ['status', '--porcelain', '--', 'src'], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim() !== '';
    return dirty ? `${rev}+dirty-src` : rev;
  } catch {
    return undefined;
  }
}

/** Kill every yun up still running (by pid) and remove the temporary directory; safe to call twice. */
function cleanup(tmp: string): void {
  for (const c of live) {
    if (c.pid !== undefined && c.exitCode === null && c.signalCode === null) {
      try { process.kill(c.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  }
  rmSync(tmp, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'yun-bench-'));
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      process.stderr.write(`api benchmark: ${sig}, stopping\n`);
      cleanup(tmp);
      process.exit(130);
    });
  }
  const dataDir = join(tmp, 'data');
  const logFile = join(tmp, 'yun-up.stderr.log');
  const t0 = performance.now();
  let client: Client | undefined;
  let running: Running | undefined;
  const step = (s: string): void => { process.stdout.write(`  [${((performance.now() - t0) / 1000).toFixed(1).padStart(5)}s] ${s}\n`); };
  try {
    // a. cold start, then warm starts of the same data dir after a clean SIGTERM stop.
    step('cold start (fresh data dir)');
    const cold = await startYun(dataDir, logFile);
    const coldStop = await stopYun(cold);
    if (coldStop.code !== 0) throw new Error(`yun up exited with code ${coldStop.code} (signal ${coldStop.signal}) after SIGTERM\n${tail(logFile)}`);
    const warm: { urlMs: number; healthyMs: number; selfReportedMs: number | undefined; stopMs: number; exitCode: number | null }[] = [];
    for (let i = 0; i < CFG.warmStarts; i++) {
      step(`warm start ${i + 1}/${CFG.warmStarts}`);
      const w = await startYun(dataDir, logFile);
      if (i === CFG.warmStarts - 1) {
        running = w;
        warm.push({ urlMs: w.urlMs, healthyMs: w.healthyMs, selfReportedMs: w.selfReportedMs, stopMs: NaN, exitCode: null });
        break;
      }
      const s = await stopYun(w);
      if (s.code !== 0) throw new Error(`yun up exited with code ${s.code} (signal ${s.signal}) after SIGTERM\n${tail(logFile)}`);
      warm.push({ urlMs: w.urlMs, healthyMs: w.healthyMs, selfReportedMs: w.selfReportedMs, stopMs: s.stopMs, exitCode: s.code });
    }
    if (!running) throw new Error('no running yun up');
    const pid = running.pid;
    const stopTimes = [coldStop.stopMs, ...warm.map((w) => w.stopMs).filter((x) => !Number.isNaN(x))];

    const env = readAdminEnv(dataDir);
    if (env.YUN_URL !== running.url) throw new Error(`admin.env says ${env.YUN_URL}, yun up printed ${running.url}`);
    client = new Client(running.url, readFileSync(env.YUN_CACERT, 'utf8'));
    const token = await client.login(env);

    await sleep(2000);
    const rssAfterStart = rssMb(pid);
    const memoryAfterStart = await memoryBreakdown(running.url, env.YUN_CACERT);
    step(`idle RSS after warm start: ${rssAfterStart.rssMb} MB`);

    // b. single-object create latency, open loop.
    const runId = Date.now().toString(36);
    step(`create warm-up: ${CFG.createWarmupSeconds}s at ${CFG.createRate} req/s (not recorded)`);
    await openLoopCreates(client, token, CFG.createRate, CFG.createWarmupSeconds, `bw-${runId}`);
    step(`create: ${CFG.createSeconds}s at ${CFG.createRate} req/s, open loop`);
    const create = await openLoopCreates(client, token, CFG.createRate, CFG.createSeconds, `bc-${runId}`);
    const rssAfterCreate = rssMb(pid);

    // c. top the project count up to listObjects, then page through all of them.
    const before = await countProjects(client, token);
    const toSeed = Math.max(0, CFG.listObjects - before);
    step(`seed: ${toSeed} projects (${before} exist) with ${CFG.seedConcurrency} workers over ${CFG.seedTokens} tokens`);
    const tokens = [token];
    while (tokens.length < CFG.seedTokens) tokens.push(await client.login(env));
    const seeded = await seed(client, tokens, toSeed, `bs-${runId}`);
    const total = await countProjects(client, token);
    const rssAfterSeed = rssMb(pid);
    step(`list: ${CFG.listPasses} passes over ${total} projects, limit=${CFG.listPageSize}`);
    const list = await listPasses(client, token, CFG.listPasses, CFG.listPageSize, total);
    const rssAfterList = rssMb(pid);

    // d. idle RSS after the load (sampled each second while idle, to show the trend).
    await client.close();
    client = undefined;
    step(`idle ${CFG.idleSeconds}s`);
    const rssIdleSeries: number[] = [];
    for (let s = 0; s < CFG.idleSeconds; s++) {
      await sleep(1000);
      rssIdleSeries.push(rssMb(pid).rssMb);
    }
    const rssIdle = rssMb(pid);
    const memory = await memoryBreakdown(running.url, env.YUN_CACERT);
    const lastStop = await stopYun(running);
    running = undefined;
    stopTimes.push(lastStop.stopMs);
    if (lastStop.code !== 0) throw new Error(`yun up exited with code ${lastStop.code} (signal ${lastStop.signal}) after SIGTERM\n${tail(logFile)}`);

    // ---- report ---------------------------------------------------------------------------------
    const warmHealthy = median(warm.map((w) => w.healthyMs));
    const warmUrl = median(warm.map((w) => w.urlMs));
    const checks = [
      { name: 'yun up → healthy, warm (median of ' + warm.length + ')', value: r1(warmHealthy), unit: 'ms', target: TARGETS.warmStartHealthyMs, pass: warmHealthy <= TARGETS.warmStartHealthyMs },
      { name: `create p99 at ${CFG.createRate} req/s`, value: create.latencyMs.p99, unit: 'ms', target: TARGETS.createP99Ms, pass: create.latencyMs.p99 <= TARGETS.createP99Ms && create.errors === 0 },
      { name: `list page p99 (${total} objects, limit=${CFG.listPageSize})`, value: list.pageMs.p99, unit: 'ms', target: TARGETS.listPageP99Ms, pass: list.pageMs.p99 <= TARGETS.listPageP99Ms && list.errors === 0 },
      { name: 'idle RSS of yun up (after load + ' + CFG.idleSeconds + 's idle)', value: rssIdle.rssMb, unit: 'MB', target: TARGETS.idleRssMb, pass: rssIdle.rssMb <= TARGETS.idleRssMb },
    ];
    const results = {
      benchmark: 'api',
      at: new Date().toISOString(),
      git: gitRev(),
      machine: { node: process.version, cpus: cpus().length, cpuModel: cpus()[0]?.model, memoryMb: Math.round(totalmem() / 2 ** 20), platform: `${process.platform}/${process.arch}` },
      config: { ...CFG, yunUp: 'node bin/yun.js up --data-dir TMP --listen 127.0.0.1:0 (defaults otherwise: HTTPS, rate limit 1000 req/s per token, log level info)' },
      targets: TARGETS,
      checks,
      start: {
        cold: { urlMs: r1(cold.urlMs), healthyMs: r1(cold.healthyMs), selfReportedMs: cold.selfReportedMs },
        warm: warm.map((w) => ({ urlMs: r1(w.urlMs), healthyMs: r1(w.healthyMs), selfReportedMs: w.selfReportedMs })),
        warmMedian: { urlMs: r1(warmUrl), healthyMs: r1(warmHealthy), selfReportedMs: median(warm.map((w) => w.selfReportedMs ?? NaN)) },
        stopMs: roundDist(dist(stopTimes)),
      },
      create,
      seed: { before, ...seeded, total },
      list,
      rss: {
        afterWarmStartIdle2s: rssAfterStart, afterCreate: rssAfterCreate, afterSeed: rssAfterSeed, afterList: rssAfterList,
        afterLoadIdle: rssIdle, afterLoadIdleEverySecond: rssIdleSeries,
        processMetricsAfterStart: memoryAfterStart, processMetricsAfterIdle: memory,
      },
      totalSeconds: r1((performance.now() - t0) / 1000),
    };

    mkdirSync(RESULTS_DIR, { recursive: true });
    const out = join(RESULTS_DIR, 'api.json');
    writeFileSync(out, JSON.stringify(results, null, 2) + '\n');

    const f = (x: number): string => (Number.isFinite(x) ? String(x) : '-');
    const rows: string[][] = [
      ['figure', 'value', 'target', 'result'],
      ...checks.map((c) => [c.name, `${f(c.value)} ${c.unit}`, `≤ ${c.target} ${c.unit}`, c.pass ? 'PASS' : 'MISS']),
    ];
    const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
    const line = (r: string[]): string => r.map((c, i) => c.padEnd(widths[i]!)).join('  ');
    const d = (x: Dist): string => `p50 ${f(x.p50)}  p90 ${f(x.p90)}  p99 ${f(x.p99)}  max ${f(x.max)} ms  (n=${x.n})`;
    const o: string[] = [];
    o.push('');
    o.push(line(rows[0]!));
    o.push(widths.map((w) => '-'.repeat(w)).join('  '));
    for (const r of rows.slice(1)) o.push(line(r));
    o.push('');
    o.push('Details');
    o.push(`  start, cold:   URL printed ${f(r1(cold.urlMs))} ms, healthy ${f(r1(cold.healthyMs))} ms (self-reported ${f(cold.selfReportedMs ?? NaN)} ms)`);
    o.push(`  start, warm:   URL printed median ${f(r1(warmUrl))} ms, healthy median ${f(r1(warmHealthy))} ms; healthy each: ${warm.map((w) => f(r1(w.healthyMs))).join(', ')} ms`);
    o.push(`  stop (SIGTERM → exit 0): ${d(results.start.stopMs)}`);
    o.push(`  create:        ${d(create.latencyMs)}`);
    o.push(`                 from schedule: ${d(create.latencyFromScheduleMs)}`);
    o.push(`                 sent ${create.sent} in ${create.durationS}s = ${create.achievedSendRate} req/s (completed ${create.achievedCompletionRate} req/s), ok ${create.ok}, errors ${create.errors} ${JSON.stringify(create.statuses)}; client send lag p99 ${create.sendLagMs.p99} ms, max ${create.sendLagMs.max} ms`);
    o.push(`  seed:          ${seeded.created} projects in ${seeded.seconds}s = ${seeded.rate} req/s (429s retried: ${seeded.rateLimited}, errors: ${seeded.errors}); ${total} projects in all`);
    o.push(`  list page:     ${d(list.pageMs)}; ${list.pagesPerPass} pages per pass, items per pass ${list.itemsPerPass.join('/')}, errors ${list.errors}`);
    o.push(`                 median by page: ${list.medianByPageMs.join(', ')} ms; full pass p50 ${list.fullPassMs.p50} ms`);
    o.push(`  RSS:           ${rssAfterStart.rssMb} MB idle after warm start; ${rssIdle.rssMb} MB idle after load (peak ${rssIdle.hwmMb} MB); each idle second: ${rssIdleSeries.join(', ')} MB`);
    o.push(`                 right after each phase: create ${rssAfterCreate.rssMb}, seed ${rssAfterSeed.rssMb}, list ${rssAfterList.rssMb} MB`);
    if (memoryAfterStart) o.push(`                 after start, from /metrics: V8 heap used ${memoryAfterStart.heapUsedMb} of ${memoryAfterStart.heapTotalMb} MB, external ${memoryAfterStart.externalMb} MB`);
    if (memory) o.push(`                 after idle, from /metrics: V8 heap used ${memory.heapUsedMb} of ${memory.heapTotalMb} MB, external ${memory.externalMb} MB (rest of RSS: native, code, SQLite, TLS)`);
    o.push('');
    o.push(`Wrote ${out} (${results.totalSeconds}s in all). Targets are reported, not enforced: a MISS does not fail the run.`);
    process.stdout.write(o.join('\n') + '\n');
  } finally {
    if (client) await client.close().catch(() => undefined);
    cleanup(tmp);
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    process.stderr.write(`api benchmark failed: ${(e as Error)?.stack ?? String(e)}\n`);
    process.exit(1);
  },
);
