// Container benchmarks of issue 4, all in one run on this machine:
//  - task assigned → running, p50/p99 over 50 starts, for the oci driver (runc) and for the docker
//    driver (a private dockerd started here), measured from the manager's change feed: the time
//    between the change that assigned a task to its node and the one that reported it running;
//  - image import throughput (MB/s) through the API of a real `yun up`.
import { execFileSync } from 'node:child_process';
import { createReadStream, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { createHash, randomBytes } from 'node:crypto';
import * as tar from 'tar';
import { request } from 'undici';
import { startTestDockerd, type TestEngine } from '../src/drivers/docker/testing/support.js';
import { ROOT, pct, row, startCloudProcess, type CloudProcess } from './lib/cloud-process.js';

const STARTS = Number(process.env.YUN_BENCH_STARTS ?? 50);

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
const results: Record<string, unknown> = { at: new Date().toISOString(), starts: STARTS };
try {
  engine = await startTestDockerd(join(dir, 'docker'));
  process.env.DOCKER_HOST = `unix://${engine.socketPath}`;
  c = await startCloudProcess(join(dir, 'cloud'));
  execFileSync(process.execPath, [join(ROOT, 'scripts', 'build-busybox-image.mjs'), '--no-import'], { stdio: 'pipe' });
  const chunks: Buffer[] = [];
  for await (const ch of tar.c({ cwd: join(ROOT, 'build', 'busybox-rootfs'), gzip: true }, ['.']) as AsyncIterable<Buffer>) chunks.push(ch);
  const imp = await request(`${c.url}/v1/images/import-rootfs?name=busybox:latest&cmd=sh`, { method: 'POST', dispatcher: c.agent, headers: { 'x-auth-token': c.token, 'content-type': 'application/gzip' }, body: Buffer.concat(chunks) });
  if (imp.statusCode !== 201) throw new Error(`busybox import: ${await imp.body.text()}`);
  await imp.body.text();
  const nodes = (await c.api<{ items: { drivers: Record<string, { available: boolean; reason?: string }> }[] }>('GET', '/v1/nodes')).body.items;
  const drivers = nodes[0]!.drivers;
  if (!drivers.oci?.available || !drivers.docker?.available) throw new Error(`drivers not available: ${JSON.stringify(drivers)}`);

  const oci = await startLatencies(c, "oci", STARTS);
  const docker = await startLatencies(c, 'docker', STARTS);
  const imp2 = await importThroughput(c, dir);
  const ociP50 = pct(oci, 50);
  const dockerP50 = pct(docker, 50);
  results.oci = { p50_ms: ociP50, p99_ms: pct(oci, 99), samples: oci };
  results.docker = { p50_ms: dockerP50, p99_ms: pct(docker, 99), samples: docker };
  results.import = { mb: imp2.mb, docker_save_mb_per_s: imp2.mb / imp2.archive_s, rootfs_mb_per_s: imp2.mb / imp2.rootfs_s };
  console.log(`\nContainers (real yun up, busybox sleep, ${STARTS} starts each; a private dockerd ${engine.storageDriver})`);
  console.log(row('figure', 'value', 'target', undefined));
  console.log(row('oci: task assigned → running, p50', `${ociP50} ms`, '≤ 150 ms', ociP50 <= 150));
  console.log(row('oci: task assigned → running, p99', `${pct(oci, 99)} ms`, '', undefined));
  console.log(row('docker: task assigned → running, p50', `${dockerP50} ms`, '', undefined));
  console.log(row('docker: task assigned → running, p99', `${pct(docker, 99)} ms`, '', undefined));
  console.log(row('oci faster than docker (p50 ratio)', `${(dockerP50 / ociP50).toFixed(1)}×`, '≥ 2×', dockerP50 / ociP50 >= 2));
  console.log(row(`image import, docker save archive (${imp2.mb.toFixed(0)} MB, via API)`, `${(imp2.mb / imp2.archive_s).toFixed(0)} MB/s`, '', undefined));
  console.log(row(`image import-rootfs, same tar (gzip of random data)`, `${(imp2.mb / imp2.rootfs_s).toFixed(0)} MB/s`, '', undefined));
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
