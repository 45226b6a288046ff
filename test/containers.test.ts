// Containers end to end (issue 4): services from a busybox image built offline, on the oci driver
// (runc) — in a single-node cloud and across a manager and two agents that receive the image from
// the manager. Real runc containers, real overlay mounts, real cgroups.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tar from 'tar';
import { requireOrSkip, startTestCloud, type TestCloud } from './helpers/cloud.js';
import { alive, removeAgentDir, startAgent, waitFor, type AgentProcess } from './helpers/agents.js';

const root = process.getuid?.() === 0;
const runc = (() => { try { execFileSync('runc', ['--version'], { stdio: 'pipe' }); return true; } catch { return false; } })();
const busybox = existsSync('/bin/busybox');

/** Build the busybox rootfs with the project's own script, as a tar.gz buffer. */
async function busyboxTar(): Promise<Buffer> {
  execFileSync(process.execPath, ['scripts/build-busybox-image.mjs', '--no-import'], { stdio: 'pipe' });
  const chunks: Buffer[] = [];
  for await (const c of tar.c({ cwd: 'build/busybox-rootfs', gzip: true, portable: false }, ['.']) as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

interface Task { id: string; name: string; node_id: string; desired_state: string; status: { state: string; error: string | null; pid?: number | null; message: string } }

describe('containers: the oci driver with images', { concurrency: false }, () => {
  let cloud: TestCloud;
  let token: string;
  const agents: AgentProcess[] = [];
  const dirs: string[] = [];
  let ok = true;

  const req = <T = any>(method: string, path: string, body?: unknown) => cloud.api.req<T>(method, path, { token, body });
  const tasksOf = async (svc: string, running = true) => (await req<{ items: Task[] }>('GET', `/v1/tasks?service_id=${svc}&desired_state=running${running ? '&state=running' : ''}`)).body.items;
  const create = async (body: Record<string, unknown>) => {
    const r = await req<{ id: string }>('POST', '/v1/services', body);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return r.body.id;
  };
  const remove = async (id: string) => {
    await req('DELETE', `/v1/services/${id}`);
    await waitFor('tasks removed', async () => (await req<{ items: unknown[] }>('GET', `/v1/tasks?service_id=${id}`)).body.items.length === 0, 30_000);
  };
  const exec = async (taskId: string, command: string[]) => (await req<{ exit_code: number; stdout: string; stderr: string }>('POST', `/v1/tasks/${taskId}/exec`, { command })).body;

  const why = `needs root, runc and busybox-static (root=${root}, runc=${runc}, busybox=${busybox})`;
  before(async () => {
    ok = root && runc && busybox;
    if (!ok) {
      if (process.env.YUN_REQUIRE_ALL === '1') throw new Error(`required but unavailable (YUN_REQUIRE_ALL=1): ${why}`);
      return;
    }
    cloud = await startTestCloud();
    token = await cloud.api.login('admin', cloud.adminPassword, 'admin');
    const r = await cloud.api.req('POST', '/v1/images/import-rootfs?name=busybox:latest&cmd=sh', { token, rawBody: (await busyboxTar()) as unknown as string, headers: { 'content-type': 'application/gzip' } });
    assert.equal(r.status, 201, r.text);
  });

  after(async () => {
    if (!cloud) return;
    for (const s of (await req<{ items: { id: string }[] }>('GET', '/v1/services')).body.items) await req('DELETE', `/v1/services/${s.id}`);
    await waitFor('all tasks gone', async () => (await req<{ items: unknown[] }>('GET', '/v1/tasks?all_projects=true')).body.items.length === 0, 30_000).catch(() => undefined);
    for (const a of agents) await a.stop().catch(() => undefined);
    await cloud.close({ stopTasks: true });
    await cloud.stop();
    for (const a of agents) await removeAgentDir(a.dataDir);
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  it('runs two busybox httpd containers; exec: ps shows only the task, hostname is the task name', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const id = await create({ name: 'web', replicas: 2, task: { image: 'busybox', command: ['httpd', '-f', '-p', '8080', '-h', '/www'], resources: { limits: { memory_bytes: 32 * 1024 * 1024 } } } });
    const tasks = await waitFor('2 running', async () => { const ts = await tasksOf(id); return ts.length === 2 ? ts : undefined; }, 30_000);
    const ps = await exec(tasks[0]!.id, ['ps']);
    assert.equal(ps.exit_code, 0, ps.stderr);
    const lines = ps.stdout.trim().split('\n').slice(1);
    assert.ok(lines.some((l) => /httpd -f -p 8080/.test(l)), ps.stdout);
    assert.ok(lines.every((l) => /httpd|ps/.test(l)), `only the task's processes:\n${ps.stdout}`);
    assert.ok(lines.length <= 3, ps.stdout);
    const hn = await exec(tasks[0]!.id, ['hostname']);
    assert.equal(hn.stdout.trim(), tasks[0]!.name);
    const inside = await exec(tasks[0]!.id, ['wget', '-qO-', 'http://127.0.0.1:8080/']);
    assert.match(inside.stdout, /hello from busybox/);
    await remove(id);
  });

  it('a task allocating beyond its memory limit ends OOMKilled, said in full', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const id = await create({
      name: 'hog', replicas: 1,
      task: { image: 'busybox', command: ['sh', '-c', 'x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done'], resources: { limits: { memory_bytes: 32 * 1024 * 1024 } }, restart_policy: { condition: 'none' } },
    });
    const task = await waitFor('the task failed', async () => {
      const ts = (await req<{ items: Task[] }>('GET', `/v1/tasks?service_id=${id}`)).body.items;
      return ts.find((x) => x.status.state === 'failed');
    }, 60_000);
    assert.match(task.status.error ?? '', /^OOMKilled: .*memory limit of 32MiB/);
    await remove(id);
  });

  it('a read-only bind mount cannot be written from inside; the host file is unchanged', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const dir = mkdtempSync(join(tmpdir(), 'yun-ro-'));
    dirs.push(dir);
    writeFileSync(join(dir, 'file'), 'original\n');
    const id = await create({ name: 'ro', replicas: 1, task: { image: 'busybox', command: ['sleep', '300'], mounts: [{ type: 'bind', source: dir, target: '/data', readonly: true }] } });
    const [task] = await waitFor('running', async () => { const ts = await tasksOf(id); return ts.length === 1 ? ts : undefined; }, 30_000);
    const read = await exec(task!.id, ['cat', '/data/file']);
    assert.equal(read.stdout, 'original\n');
    const write = await exec(task!.id, ['sh', '-c', 'echo hacked > /data/file']);
    assert.notEqual(write.exit_code, 0);
    assert.match(write.stderr, /Read-only file system/);
    assert.equal(readFileSync(join(dir, 'file'), 'utf8'), 'original\n');
    await remove(id);
  });

  it('an image that exists only on the manager runs on two agents; agents restarted keep their containers', async (t) => {
    if (!requireOrSkip(t, ok, why)) return;
    const jt = (await req<{ token: string }>('GET', '/v1/cluster/join-tokens/worker')).body.token;
    agents.push(await startAgent({ url: cloud.url, token: jt, address: '127.0.0.2' }));
    agents.push(await startAgent({ url: cloud.url, token: jt, address: '127.0.0.3' }));
    const id = await create({ name: 'spread', replicas: 2, task: { image: 'busybox', command: ['sleep', '600'], placement: { constraints: ['node.role==worker'], max_replicas_per_node: 1 } } });
    const tasks = await waitFor('2 running on the agents', async () => { const ts = await tasksOf(id); return ts.length === 2 ? ts : undefined; }, 60_000);
    assert.notEqual(tasks[0]!.node_id, tasks[1]!.node_id);
    // kill -9 the first agent and start it again at once with its data dir: same container, same pid.
    const a = agents[0]!;
    const nodeId = JSON.parse(readFileSync(join(a.dataDir, 'node.json'), 'utf8')).node_id as string;
    const mine = tasks.find((x) => x.node_id === nodeId)!;
    const pid = mine.status.pid!;
    assert.ok(pid && alive(pid));
    await a.kill9();
    agents[0] = await startAgent({ url: cloud.url, address: a.address, dataDir: a.dataDir });
    await waitFor('the task reported running again by the restarted agent', async () => {
      const ts = await tasksOf(id);
      return ts.length === 2 && ts.find((x) => x.id === mine.id)?.status.pid === pid;
    }, 30_000);
    assert.ok(alive(pid), 'the container process survived the agent restart');
    await remove(id);
  });
});
