// Container benchmarks of issues 4 and 16, all in one run on this machine:
//  - task assigned → running, p50/p99 over 50 starts, for the oci driver (runc) and for the docker
//    driver (a private dockerd started here), measured from the manager's change feed: the time
//    between the change that assigned a task to its node and the one that reported it running;
//  - swarm scale: 100 oci replicas (busybox `sleep 3600`) created → all running, and scaled
//    100 → 200; then the same with Docker's swarm mode on a private dockerd of its own (its own
//    socket and data root, never the machine's engine), in the same run, and the ratio;
//  - image import throughput (MB/s) through the API of a real `yun up`.
// YUN_BENCH_PARTS=starts,scale,swarm,import (default: all) runs only some of them.
import { execFile, execFileSync } from 'node:child_process';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createHash, randomBytes } from 'node:crypto';
import * as tar from 'tar';
import { request } from 'undici';
import Docker from 'dockerode';
import { buildBusyboxArchive, startTestDockerd, type TestEngine } from '../src/drivers/docker/testing/support.js';
import { ROOT, pct, row, startCloudProcess, type CloudProcess } from './lib/cloud-process.js';

const STARTS = Number(process.env.YUN_BENCH_STARTS ?? 50);
const REPLICAS = Number(process.env.YUN_BENCH_REPLICAS ?? 100);
const PARTS = new Set((process.env.YUN_BENCH_PARTS ?? 'starts,scale,swarm,import').split(',').map((p) => p.trim()).filter(Boolean));
const TARGETS = { create100Ms: 3000, swarmRatio: 10 };
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

interface ScaleResult { create_ms: number; scale_ms: number; remove_ms?: number }

/** Until `n` tasks of the service run (polled through the API, as `yun service ps` would). */
async function ociRunning(c: CloudProcess, id: string, n: number, timeoutMs = 120_000): Promise<void> {
  const t0 = Date.now();
  for (;;) {
    const r = await c.api<{ items: unknown[] }>('GET', `/v1/tasks?service_id=${id}&desired_state=running&state=running&limit=1000`);
    if (r.status !== 200) throw new Error(`task list: ${JSON.stringify(r.body)}`);
    if (r.body.items.length >= n) return;
    if (Date.now() - t0 > timeoutMs) throw new Error(`oci: ${r.body.items.length} of ${n} replicas running after ${timeoutMs / 1000} s`);
    await sleep(20);
  }
}

/** Issue 16: `--replicas 100` → 100 running, then scale to 200 → 200 running, oci driver, busybox `sleep 3600`. */
async function ociScale(c: CloudProcess, n: number): Promise<ScaleResult> {
  const t0 = performance.now();
  const r = await c.api<{ id: string }>('POST', '/v1/services', { name: 'scale-oci', replicas: n, task: { image: 'busybox', driver: 'oci', command: ['sleep', '3600'], stop_grace_period_ms: 1000 } });
  if (r.status !== 201) throw new Error(`create scale-oci: ${JSON.stringify(r.body)}`);
  const id = r.body.id;
  await ociRunning(c, id, n);
  const create = performance.now() - t0;
  const t1 = performance.now();
  for (let attempt = 0; ; attempt++) {
    const svc = (await c.api<{ version: number }>('GET', `/v1/services/${id}`)).body;
    const p = await c.api('PATCH', `/v1/services/${id}`, { version: svc.version, replicas: 2 * n });
    if (p.status === 200) break;
    if (p.status !== 409 || attempt > 10) throw new Error(`scale scale-oci: ${JSON.stringify(p.body)}`);
  }
  await ociRunning(c, id, 2 * n);
  const scale = performance.now() - t1;
  const t2 = performance.now();
  await c.api('DELETE', `/v1/services/${id}`);
  while ((await c.api<{ items: unknown[] }>('GET', `/v1/tasks?service_id=${id}&limit=1`)).body.items.length > 0) {
    if (performance.now() - t2 > 120_000) throw new Error('scale-oci: tasks not removed within 120 s');
    await sleep(50);
  }
  return { create_ms: Math.round(create), scale_ms: Math.round(scale), remove_ms: Math.round(performance.now() - t2) };
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/**
 * The same figures for Docker's swarm mode: a private dockerd (its own socket, data root and exec
 * root under `dir`), `docker swarm init` on loopback, the same busybox (loaded from a `docker save`
 * archive made from busybox-static, no registry), `docker service create --replicas N … sleep 3600`
 * → N running (`docker service ps`, through the API), then `docker service scale` to 2N. Undefined
 * (with why) when no engine can be started here.
 */
async function swarmScale(dir: string, n: number): Promise<ScaleResult | { skipped: string }> {
  let engine: TestEngine;
  try {
    // Swarm mode tries the registry for every task unless told to prefer the local image.
    engine = await startTestDockerd(join(dir, 'swarm'), undefined, { env: { DOCKER_SERVICE_PREFER_OFFLINE_IMAGE: '1' } });
  } catch (e) {
    return { skipped: `no Docker engine could be started (${(e as Error).message.split('\n')[0]})` };
  }
  const cli = process.env.YUN_BENCH_DOCKER_CLI ?? '/usr/bin/docker';
  const env = { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', HOME: dir, DOCKER_HOST: `unix://${engine.socketPath}`, DOCKER_CONFIG: join(dir, 'swarm-cli') };
  const docker = (args: string[]) => new Promise<string>((resolve, reject) => {
    execFile(cli, args, { env, timeout: 120_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => (err ? reject(new Error(`docker ${args.join(' ')}: ${stderr.trim() || err.message}`)) : resolve(stdout)));
  });
  const api = new Docker({ socketPath: engine.socketPath, timeout: 30_000 });
  const name = 'bench-swarm';
  const running = async (want: number, timeoutMs = 300_000): Promise<void> => {
    const t0 = Date.now();
    for (;;) {
      // What `docker service ps --filter desired-state=running` lists, counted by current state.
      const tasks = (await api.listTasks({ filters: { service: [name], 'desired-state': ['running'] } })) as { Status?: { State?: string } }[];
      const up = tasks.filter((t) => t.Status?.State === 'running').length;
      if (up >= want) return;
      if (Date.now() - t0 > timeoutMs) throw new Error(`swarm: ${up} of ${want} replicas running after ${timeoutMs / 1000} s`);
      await sleep(100);
    }
  };
  try {
    const img = await buildBusyboxArchive(join(dir, 'swarm-img'));
    await docker(['load', '-i', img.archive]);
    await docker(['swarm', 'init', '--advertise-addr', '127.0.0.1', '--listen-addr', `127.0.0.1:${await freePort()}`]);
    const t0 = performance.now();
    // --init: tini as PID 1, as the oci driver runs every container. No network: with the engine's
    // --bridge=none each container gets a network namespace of its own with only lo, as an oci task.
    await docker(['service', 'create', '--detach', '--no-resolve-image', '--name', name, '--replicas', String(n), '--init', '--stop-grace-period', '1s', 'busybox:latest', 'sleep', '3600']);
    await running(n);
    const create = performance.now() - t0;
    const t1 = performance.now();
    await docker(['service', 'scale', '--detach', `${name}=${2 * n}`]);
    await running(2 * n);
    const scale = performance.now() - t1;
    return { create_ms: Math.round(create), scale_ms: Math.round(scale) };
  } finally {
    await docker(['service', 'rm', name]).catch(() => undefined);
    const t0 = Date.now();
    while (Date.now() - t0 < 120_000 && ((await api.listContainers({ all: true }).catch(() => [])) as unknown[]).length > 0) await sleep(250);
    await docker(['swarm', 'leave', '--force']).catch(() => undefined);
    await engine.stop();
  }
}

async function startLatencies(c: CloudProcess, driver: 'oci' | 'docker', n: number): Promise<number[]> {
  const r = await c.api<{ id: string }>('POST', '/v1/services', { name: `lat-${driver}`, replicas: 1, task: { image: 'busybox', driver, command: ['sleep', '3600'], stop_grace_period_ms: 1000 }, update_config: { parallelism: 1, monitor_ms: 0 } });
  if (r.status !== 201) throw new Error(`create ${driver}: ${JSON.stringify(r.body)}`);
  const id = r.body.id;
  const samples: number[] = [];
  const assignedAt = new Map<string, number>();
  let since = Math.max(0, (await c.api<{ revision: number }>('GET', '/v1/services?limit=1')).body.revision - 50);
  const runningOnce = async (): Promise<void> => {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const res = await c.api<{ changes: { type: string; at: string; object: { id: string; data: { service_id: string; status: { state: string } } } }[]; revision: number }>('GET', `/v1/changes?since=${since}&kind=task&wait=5s`);
      if (res.status !== 200) throw new Error(`change feed: ${JSON.stringify(res.body)}`);
      const feed = res.body;
      since = feed.revision;
      for (const ch of feed.changes) {
        const d = ch.object.data;
        if (d.service_id !== id || ch.type === 'delete') continue;
        if (d.status.state === 'assigned') assignedAt.set(ch.object.id, Date.parse(ch.at));
        if (d.status.state === 'running' && assignedAt.has(ch.object.id)) {
          samples.push(Date.parse(ch.at) - assignedAt.get(ch.object.id)!);
          assignedAt.delete(ch.object.id);
          return;
        }
      }
      if (Date.now() > deadline) throw new Error(`${driver}: no task reached running within 60 s`);
    }
  };
  await runningOnce();
  samples.length = 0; // the first start pulls/loads the image: not a steady-state start
  for (let i = 0; i < n; i++) {
    // The orchestrator writes the service too (update status): retry on a version conflict.
    for (let attempt = 0; ; attempt++) {
      const svc = (await c.api<{ version: number; spec: { task: { force_update: number } } }>('GET', `/v1/services/${id}`)).body;
      const p = await c.api('PATCH', `/v1/services/${id}`, { version: svc.version, task: { force_update: svc.spec.task.force_update + 1 } });
      if (p.status === 200) break;
      if (p.status !== 409 || attempt > 10) throw new Error(`update ${driver}: ${JSON.stringify(p.body)}`);
    }
    await runningOnce();
    if (process.env.YUN_BENCH_DEBUG) console.error(`${driver} start ${i + 1}: ${samples[samples.length - 1]} ms`);
  }
  await c.api('DELETE', `/v1/services/${id}`);
  const t0 = Date.now();
  while ((await c.api<{ items: unknown[] }>('GET', `/v1/tasks?service_id=${id}&limit=1`)).body.items.length > 0 && Date.now() - t0 < 60_000) await new Promise((res) => setTimeout(res, 100));
  return samples.sort((a, b) => a - b);
}

async function upload(c: CloudProcess, path: string, file: string): Promise<number> {
  const size = statSync(file).size;
  const t0 = performance.now();
  const r = await request(`${c.url}${path}`, { method: 'POST', dispatcher: c.agent, headers: { 'x-auth-token': c.token, 'content-type': 'application/x-tar', 'content-length': String(size) }, body: createReadStream(file) });
  const text = await r.body.text();
  if (r.statusCode !== 201) throw new Error(`import failed: ${text}`);
  return (performance.now() - t0) / 1000;
}

/** Import throughput through the API: a `docker save` archive, and a plain rootfs tar (gzipped into a layer). */
async function importThroughput(c: CloudProcess, dir: string): Promise<{ mb: number; archive_s: number; rootfs_s: number }> {
  // 200 MB of incompressible data: the worst case for the gzip of import-rootfs.
  const rootfs = join(dir, 'big-rootfs');
  mkdirSync(join(rootfs, 'data'), { recursive: true });
  for (let i = 0; i < 20; i++) writeFileSync(join(rootfs, 'data', `blob${i}`), randomBytes(10 * 1024 * 1024));
  const layer = join(dir, 'save', 'layer.tar');
  mkdirSync(join(dir, 'save'), { recursive: true });
  await tar.c({ cwd: rootfs, file: layer }, ['.']);
  const diffId = `sha256:${createHash('sha256').update(readFileSync(layer)).digest('hex')}`;
  writeFileSync(join(dir, 'save', 'config.json'), JSON.stringify({ architecture: 'amd64', os: 'linux', config: { Cmd: ['sh'] }, rootfs: { type: 'layers', diff_ids: [diffId] } }));
  writeFileSync(join(dir, 'save', 'manifest.json'), JSON.stringify([{ Config: 'config.json', RepoTags: ['big:archive'], Layers: ['layer.tar'] }]));
  const archive = join(dir, 'big-save.tar');
  await tar.c({ cwd: join(dir, 'save'), file: archive }, ['manifest.json', 'config.json', 'layer.tar']);
  const archiveS = await upload(c, '/v1/images/import', archive);
  const rootfsS = await upload(c, '/v1/images/import-rootfs?name=big:rootfs', layer);
  return { mb: statSync(layer).size / 1e6, archive_s: archiveS, rootfs_s: rootfsS };
}

const dir = mkdtempSync(join(tmpdir(), 'yun-bench-ctr-'));
let engine: TestEngine | undefined;
let c: CloudProcess | undefined;
const results: Record<string, unknown> = { at: new Date().toISOString(), starts: STARTS, replicas: REPLICAS, parts: [...PARTS] };
try {
  if (PARTS.has('starts')) {
    engine = await startTestDockerd(join(dir, 'docker'));
    process.env.DOCKER_HOST = `unix://${engine.socketPath}`;
  }
  c = await startCloudProcess(join(dir, 'cloud'));
  await c.api('PATCH', '/v1/projects/admin/quotas', { version: (await c.api('GET', '/v1/projects/admin/quotas')).body.version, tasks: -1, services: -1 });
  execFileSync(process.execPath, [join(ROOT, 'scripts', 'build-busybox-image.mjs'), '--no-import'], { stdio: 'pipe' });
  const chunks: Buffer[] = [];
  for await (const ch of tar.c({ cwd: join(ROOT, 'build', 'busybox-rootfs'), gzip: true }, ['.']) as AsyncIterable<Buffer>) chunks.push(ch);
  const imp = await request(`${c.url}/v1/images/import-rootfs?name=busybox:latest&cmd=sh`, { method: 'POST', dispatcher: c.agent, headers: { 'x-auth-token': c.token, 'content-type': 'application/gzip' }, body: Buffer.concat(chunks) });
  if (imp.statusCode !== 201) throw new Error(`busybox import: ${await imp.body.text()}`);
  await imp.body.text();
  const nodes = (await c.api<{ items: { drivers: Record<string, { available: boolean; reason?: string }> }[] }>('GET', '/v1/nodes')).body.items;
  const drivers = nodes[0]!.drivers;
  if (!drivers.oci?.available || (PARTS.has('starts') && !drivers.docker?.available)) throw new Error(`drivers not available: ${JSON.stringify(drivers)}`);

  console.log(`\nContainers (real yun up, busybox sleep${engine ? `; a private dockerd ${engine.storageDriver}` : ''}; parts: ${[...PARTS].join(', ')})`);
  console.log(row('figure', 'value', 'target', undefined));
  const lines = { push: (...l: string[]) => { for (const x of l) console.log(x); } };
  if (PARTS.has('starts')) {
    const oci = await startLatencies(c, 'oci', STARTS);
    const docker = await startLatencies(c, 'docker', STARTS);
    const ociP50 = pct(oci, 50);
    const dockerP50 = pct(docker, 50);
    results.oci = { p50_ms: ociP50, p99_ms: pct(oci, 99), samples: oci };
    results.docker = { p50_ms: dockerP50, p99_ms: pct(docker, 99), samples: docker };
    lines.push(
      row(`oci: task assigned → running, p50 (${STARTS} starts)`, `${ociP50} ms`, '≤ 150 ms', ociP50 <= 150),
      row('oci: task assigned → running, p99', `${pct(oci, 99)} ms`, '', undefined),
      row('docker: task assigned → running, p50', `${dockerP50} ms`, '', undefined),
      row('docker: task assigned → running, p99', `${pct(docker, 99)} ms`, '', undefined),
      row('oci faster than docker (p50 ratio)', `${(dockerP50 / ociP50).toFixed(1)}×`, '≥ 2×', dockerP50 / ociP50 >= 2),
    );
  }
  let oci: ScaleResult | undefined;
  if (PARTS.has('scale')) {
    oci = await ociScale(c, REPLICAS);
    results.oci_scale = oci;
    lines.push(
      row(`oci: --replicas ${REPLICAS} (sleep) → all running`, `${(oci.create_ms / 1000).toFixed(2)} s`, '≤ 3 s', REPLICAS === 100 ? oci.create_ms <= TARGETS.create100Ms : undefined),
      row(`oci: scale ${REPLICAS} → ${2 * REPLICAS} → all running`, `${(oci.scale_ms / 1000).toFixed(2)} s`, '', undefined),
      row(`oci: rm (${2 * REPLICAS} containers stopped and removed)`, `${(oci.remove_ms! / 1000).toFixed(2)} s`, '', undefined),
    );
  }
  if (PARTS.has('swarm')) {
    const sw = await swarmScale(dir, REPLICAS);
    results.swarm_scale = sw;
    if ('skipped' in sw) lines.push(row('swarm mode: not run', sw.skipped, '', undefined));
    else {
      lines.push(
        row(`swarm mode: --replicas ${REPLICAS} → all running`, `${(sw.create_ms / 1000).toFixed(2)} s`, '', undefined),
        row(`swarm mode: scale ${REPLICAS} → ${2 * REPLICAS} → all running`, `${(sw.scale_ms / 1000).toFixed(2)} s`, '', undefined),
      );
      if (oci) {
        const r1 = sw.create_ms / oci.create_ms;
        const r2 = sw.scale_ms / oci.scale_ms;
        results.swarm_ratio = { create: Number(r1.toFixed(2)), scale: Number(r2.toFixed(2)) };
        lines.push(
          row(`  oci faster than swarm mode, create ${REPLICAS}`, `${r1.toFixed(1)}×`, '≥ 10×', r1 >= TARGETS.swarmRatio),
          row(`  oci faster than swarm mode, scale → ${2 * REPLICAS}`, `${r2.toFixed(1)}×`, '', undefined),
        );
      }
    }
  }
  if (PARTS.has('import')) {
    const imp2 = await importThroughput(c, dir);
    results.import = { mb: imp2.mb, docker_save_mb_per_s: imp2.mb / imp2.archive_s, rootfs_mb_per_s: imp2.mb / imp2.rootfs_s };
    lines.push(
      row(`image import, docker save archive (${imp2.mb.toFixed(0)} MB, via API)`, `${(imp2.mb / imp2.archive_s).toFixed(0)} MB/s`, '', undefined),
      row(`image import-rootfs, same tar (gzip of random data)`, `${(imp2.mb / imp2.rootfs_s).toFixed(0)} MB/s`, '', undefined),
    );
  }
} catch (e) {
  console.error(`benchmark failed: ${(e as Error).stack ?? String(e)}`);
  process.exitCode = 1;
} finally {
  // Tasks outlive a stopped cloud (reattach): remove them first.
  if (c) {
    for (const s of (await c.api<{ items: { id: string }[] }>('GET', '/v1/services').catch(() => ({ body: { items: [] } }))).body.items ?? []) await c.api('DELETE', `/v1/services/${s.id}`).catch(() => undefined);
    const t0 = Date.now();
    while (Date.now() - t0 < 30_000 && ((await c.api<{ items: unknown[] }>('GET', '/v1/tasks?limit=1').catch(() => ({ body: { items: [] } }))).body.items ?? []).length > 0) await new Promise((r) => setTimeout(r, 200));
  }
  await c?.stop().catch(() => undefined);
  await engine?.stop().catch(() => undefined);
  try { rmSync(dir, { recursive: true, force: true }); } catch (e) { console.error(`could not remove ${dir}: ${(e as Error).message}`); }
}
mkdirSync(join(ROOT, 'bench', 'results'), { recursive: true });
writeFileSync(join(ROOT, 'bench', 'results', 'containers.json'), JSON.stringify(results, null, 2));
