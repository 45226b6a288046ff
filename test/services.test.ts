// End-to-end tests of swarm-mode services on a real cluster on this machine: a manager with its local
// agent (in-process, startTestCloud) and real `yun agent` processes on 127.0.0.2 and 127.0.0.3 (more
// join later), running real task processes through the process driver. Issue 3, "It must show":
//   1. 3 ready nodes; 2 replicas on 2 nodes; scale to 4; rm → no process left (by pid)
//   2. a missing command: the full error per attempt, the restart delay, max attempts
//   3. a reservation no node can hold stays pending with the reason, placed when a big node joins
//   4. rolling updates (stop-first ≥ 4 running, start-first ≥ 6) and the automatic rollback
//   5. drain and pause
//   8. a global service on a node that joins later
// (6 and 7 are in services-failover.test.ts and services-manager-restart.test.ts.)
// Everything created here is removed in `finally`/`after`: services, agents, task processes, dirs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCloud, type TestCloud } from './helpers/cloud.js';
import { nodeIdOf, type AgentProcess } from './helpers/agents.js';
import { Cluster, GiB, cmdline, describeTasks, parentOf, running, sleepCmd, waitFor, type Service, type Task } from './helpers/services.js';

const TERMINAL = new Set(['complete', 'shutdown', 'failed', 'rejected', 'orphaned', 'remove']);

/**
 * The fewest tasks observed running at any moment in [from, to], from each task's history: running
 * from status.started_at until the timestamp of its end state (or still running).
 */
function minRunning(tasks: Task[], from: number, to: number): { min: number; at: number; detail: string } {
  const spans = tasks.filter((t) => t.status.started_at).map((t) => ({
    t,
    start: Date.parse(t.status.started_at!),
    end: TERMINAL.has(t.status.state) ? Date.parse(t.status.timestamp) : Infinity,
  }));
  const points = [from, ...spans.flatMap((s) => [s.start, s.end])].filter((p) => p >= from && p <= to);
  let min = Infinity;
  let at = from;
  for (const p of points) {
    const n = spans.filter((s) => s.start <= p && s.end > p).length;
    if (n < min) { min = n; at = p; }
  }
  const around = spans.filter((s) => s.start <= at + 1000 && s.end >= at - 1000).map((s) => `${s.t.name} ${s.t.spec.command.join(' ')} running ${new Date(s.start).toISOString()} → ${Number.isFinite(s.end) ? new Date(s.end).toISOString() : 'now'}`);
  return { min, at, detail: `\n  (fewest running at ${new Date(at).toISOString()}; tasks around then:\n    ${around.join('\n    ')})` };
}

describe('services on a 3-node cluster (manager + agents on 127.0.0.2 and 127.0.0.3)', { timeout: 240_000 }, () => {
  let cloud: TestCloud;
  let c: Cluster;
  let agentA: AgentProcess;
  let agentB: AgentProcess;
  let nodeA: string;
  let nodeB: string;

  before(async () => {
    cloud = await startTestCloud();
    const token = await cloud.api.login('admin', cloud.adminPassword, 'admin');
    c = new Cluster(cloud.api, token, cloud.url);
    c.nodeIds.add(cloud.nodeId);
    [agentA, agentB] = await Promise.all([c.addAgent('127.0.0.2'), c.addAgent('127.0.0.3')]);
    nodeA = nodeIdOf(agentA);
    nodeB = nodeIdOf(agentB);
  });

  after(async () => {
    if (c) await c.cleanup();
    if (cloud) {
      await cloud.close({ stopTasks: true }).catch(() => undefined);
      await cloud.stop().catch(() => undefined);
    }
    await c?.finalCleanup();
  });

  it('1. three ready nodes; 2 replicas run on 2 nodes; scale to 4; rm leaves no process', async () => {
    const nodes = await c.nodes();
    assert.equal(nodes.length, 3, `nodes: ${JSON.stringify(nodes.map((n) => [n.name, n.address, n.status]))}`);
    assert.ok(nodes.every((n) => n.status === 'ready'), `not all ready: ${JSON.stringify(nodes.map((n) => [n.name, n.status]))}`);
    assert.deepEqual(nodes.map((n) => n.address).sort(), ['127.0.0.1', '127.0.0.2', '127.0.0.3']);

    const svc = await c.createService({ name: 'mytest', replicas: 2, task: { command: sleepCmd(300) } });
    try {
      const two = await c.waitRunning(svc.id, 2);
      assert.equal(new Set(two.map((t) => t.node_id)).size, 2, `2 replicas on one node: ${describeTasks(two)}`);
      for (const t of two) {
        assert.ok(running(t.status.pid!), `task ${t.name}: pid ${t.status.pid} is not alive`);
        assert.deepEqual(cmdline(t.status.pid!), ['sleep', '300'], `pid ${t.status.pid} is not the task's command`);
      }

      await c.updateService(svc.id, { replicas: 4 });
      const four = await c.waitRunning(svc.id, 4);
      assert.equal(new Set(four.map((t) => t.node_id)).size, 3, `4 replicas not spread over the 3 nodes: ${describeTasks(four)}`);
      for (const t of two) {
        const same = four.find((x) => x.id === t.id);
        assert.ok(same && same.status.pid === t.status.pid, `scaling up restarted or replaced ${t.name}: ${describeTasks(four)}`);
      }
      for (const t of four) assert.ok(running(t.status.pid!), `task ${t.name}: pid ${t.status.pid} is not alive`);
      assert.deepEqual((await c.service(svc.id)).tasks, { running: 4, desired: 4 });

      // Each command runs under the process driver's supervisor shim: both must go.
      const pids = four.map((t) => t.status.pid!);
      const shims = pids.map((p) => parentOf(p)!);
      for (const s of shims) assert.ok(cmdline(s).includes('yun-shim'), `pid ${s} is not a task supervisor: ${cmdline(s).join(' ')}`);
      await c.ok('DELETE', `/v1/services/${svc.id}`, undefined, 204);
      c.services.delete(svc.id);
      await waitFor('every process of mytest (commands and their shims) to exit', async () => [...pids, ...shims].every((p) => !running(p)), 20_000);
      await waitFor('the tasks of mytest to be removed', async () => (await c.tasks(svc.id)).length === 0, 20_000);
      assert.equal((await c.req('GET', `/v1/services/${svc.id}`)).status, 404);
    } finally {
      if (c.services.has(svc.id)) await c.removeService(svc.id);
    }
  });

  it('2. a command that does not exist: the full error per attempt, the restart delay, and max attempts', async () => {
    const svc = await c.createService({
      name: 'badcmd', replicas: 1,
      task: { command: ['/nonexistent/cmd', '--flag'], restart_policy: { condition: 'on-failure', delay_ms: 1000, max_attempts: 2 } },
    });
    try {
      const failedTwice = await waitFor('two failed attempts, the last one not restarted', async () => {
        const ts = await c.tasks(svc.id);
        const failed = ts.filter((t) => t.status.state === 'failed');
        return failed.length >= 2 && ts.some((t) => /not restarted/.test(t.shutdown_reason ?? '')) ? ts : undefined;
      }, 20_000);
      const ts = [...failedTwice].sort((a, b) => a.created_at.localeCompare(b.created_at));
      assert.equal(ts.length, 2, `expected exactly 2 attempts:\n  ${describeTasks(ts)}`);
      for (const t of ts) {
        assert.equal(t.slot, 1);
        assert.equal(t.status.state, 'failed', describeTasks([t]));
        assert.equal(t.status.error, 'exec: "/nonexistent/cmd": no such file or directory', `the task's error is not the full exec error: ${describeTasks([t])}`);
        assert.ok(!t.status.pid, `a task that never started has pid ${t.status.pid}`);
      }
      const [first, second] = ts as [Task, Task];
      const gap = Date.parse(second.created_at) - Date.parse(first.status.timestamp);
      assert.ok(gap >= 990, `the second attempt came ${gap} ms after the first failed, before the 1 s restart delay`);
      assert.ok(gap < 6000, `the second attempt came ${gap} ms after the first failed (restart delay 1 s)`);
      assert.equal(second.desired_state, 'shutdown');
      assert.match(second.shutdown_reason ?? '', /^not restarted: 2 of 2 attempts used \(restart max attempts 2\)/);

      // No third attempt: watch for a while longer than the restart delay.
      const until = Date.now() + 3000;
      while (Date.now() < until) {
        const now = await c.tasks(svc.id);
        assert.equal(now.length, 2, `a third attempt appeared after max_attempts 2:\n  ${describeTasks(now)}`);
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.deepEqual((await c.service(svc.id)).tasks, { running: 0, desired: 1 });
    } finally {
      await c.removeService(svc.id);
    }
  });

  it('5. drain moves every task off a node; pause keeps its tasks but places nothing new there', async () => {
    const svc = await c.createService({ name: 'drainme', replicas: 6, task: { command: sleepCmd(300) } });
    try {
      const six = await c.waitRunning(svc.id, 6);
      const onA = six.filter((t) => t.node_id === nodeA);
      assert.ok(onA.length > 0, `no task on node A to drain: ${describeTasks(six)}`);

      // Drain A: its tasks stop, and their slots run elsewhere.
      await c.setAvailability(nodeA, 'drain');
      const moved = await c.waitRunning(svc.id, 6, 30_000, (ts) => ts.every((t) => t.node_id !== nodeA));
      await waitFor('the processes of the drained node\'s tasks to exit', async () => onA.every((t) => !running(t.status.pid!)), 20_000);
      const drainedTasks = (await c.tasks(svc.id)).filter((t) => onA.some((o) => o.id === t.id));
      for (const t of drainedTasks) {
        assert.equal(t.desired_state, 'shutdown', describeTasks([t]));
        assert.match(t.shutdown_reason ?? '', /drained/, describeTasks([t]));
      }
      assert.ok(moved.every((t) => running(t.status.pid!)));
      await c.setAvailability(nodeA, 'active');

      // Pause B: what runs there stays; a scale-up places nothing new there.
      const onB = moved.filter((t) => t.node_id === nodeB);
      assert.ok(onB.length > 0, `no task on node B to keep: ${describeTasks(moved)}`);
      await c.setAvailability(nodeB, 'pause');
      await c.updateService(svc.id, { replicas: 9 });
      const nine = await c.waitRunning(svc.id, 9);
      const nowOnB = nine.filter((t) => t.node_id === nodeB);
      assert.deepEqual(nowOnB.map((t) => `${t.id}:${t.status.pid}`).sort(), onB.map((t) => `${t.id}:${t.status.pid}`).sort(), `node B's tasks changed while paused:\n  ${describeTasks(nine)}`);
      for (const t of onB) assert.ok(running(t.status.pid!), `paused node's task ${t.name} (pid ${t.status.pid}) is not alive`);
      const added = nine.filter((t) => !moved.some((m) => m.id === t.id));
      assert.equal(added.length, 3);
      assert.ok(added.every((t) => t.node_id !== nodeB), `a new task was placed on the paused node:\n  ${describeTasks(added)}`);
    } finally {
      await c.setAvailability(nodeA, 'active').catch(() => undefined);
      await c.setAvailability(nodeB, 'active').catch(() => undefined);
      await c.removeService(svc.id);
    }
  });

  it('4. rolling updates: stop-first keeps ≥ 4 of 6 running, start-first ≥ 6; a failing health check rolls back', async (t) => {
    const healthy = { type: 'cmd', command: ['true'], interval_ms: 500, timeout_ms: 400, retries: 1 };
    const svc = await c.createService({
      name: 'rolling', replicas: 6,
      task: { command: sleepCmd(300), health_check: healthy, restart_policy: { condition: 'any', delay_ms: 1000 } },
      update_config: { parallelism: 2, delay_ms: 1000, monitor_ms: 1000, order: 'stop-first', failure_action: 'pause' },
    });
    const isHealthy = (ts: Task[]) => ts.every((t) => t.status.health === 'healthy');
    const cmdIs = (n: number) => (ts: Task[]) => ts.every((t) => t.spec.command.join(' ') === `sleep ${n}`);
    try {
      await c.waitRunning(svc.id, 6, 30_000, isHealthy);

      /** Apply `patch`, sample the running count every ~100 ms until the update ends in one of `end`. */
      const rollOut = async (what: string, patch: Record<string, unknown>, end: string[]) => {
        const t0 = Date.now();
        await c.updateService(svc.id, patch);
        let min = Infinity;
        let max = 0;
        let samples = 0;
        let s: Service;
        for (;;) {
          const [ts, cur] = await Promise.all([c.tasks(svc.id, 'running'), c.service(svc.id)]);
          const n = ts.filter((t) => t.status.state === 'running').length;
          min = Math.min(min, n);
          max = Math.max(max, n);
          samples++;
          s = cur;
          if (s.update_status && end.includes(s.update_status.state)) break;
          if (Date.now() - t0 > 60_000) assert.fail(`${what}: not finished after 60 s (update_status ${JSON.stringify(s.update_status)}, min running ${min})\n  ${describeTasks(ts)}`);
          await new Promise((r) => setTimeout(r, 100));
        }
        const t1 = Date.now();
        // What runs once the service says the update is over (read after that answer).
        const atEnd = await c.tasks(svc.id, 'running');
        // Exactly, from the tasks' own history: the fewest tasks observed running at any moment.
        const exact = minRunning(await c.tasks(svc.id), t0, t1);
        return { min: Math.min(min, exact.min), sampledMin: min, exact, max, samples, service: s, ms: t1 - t0, atEnd };
      };
      /** When an update (or rollback) says it is over, all 6 replicas run the target spec, healthy. */
      const assertConverged = (what: string, ts: Task[], n: number) => {
        const ok = ts.length === 6 && ts.every((t) => t.status.state === 'running') && cmdIs(n)(ts) && isHealthy(ts);
        assert.ok(ok, `${what}: the service says it is over, but not all 6 replicas run \`sleep ${n}\`, healthy:\n  ${describeTasks(ts)}`);
      };

      const stopFirst = await rollOut('stop-first update', { task: { command: sleepCmd(301) } }, ['completed', 'paused']);
      assert.equal(stopFirst.service.update_status?.state, 'completed', JSON.stringify(stopFirst.service.update_status));
      assert.ok(stopFirst.samples >= 10, `only ${stopFirst.samples} samples during the stop-first update`);
      t.diagnostic(`stop-first: ${stopFirst.ms} ms, ${stopFirst.samples} samples, running min ${stopFirst.sampledMin} (sampled), ${stopFirst.exact.min} (from task history) max ${stopFirst.max}`);
      assert.ok(stopFirst.min >= 4, `stop-first (parallelism 2) went down to ${stopFirst.min} running tasks${stopFirst.exact.detail}`);
      assertConverged('stop-first update completed', stopFirst.atEnd, 301);
      await c.waitRunning(svc.id, 6, 30_000, (ts) => cmdIs(301)(ts) && isHealthy(ts));

      const startFirst = await rollOut('start-first update', { task: { command: sleepCmd(302) }, update_config: { order: 'start-first' } }, ['completed', 'paused']);
      assert.equal(startFirst.service.update_status?.state, 'completed', JSON.stringify(startFirst.service.update_status));
      assert.ok(startFirst.samples >= 10, `only ${startFirst.samples} samples during the start-first update`);
      t.diagnostic(`start-first: ${startFirst.ms} ms, ${startFirst.samples} samples, running min ${startFirst.sampledMin} (sampled), ${startFirst.exact.min} (from task history) max ${startFirst.max}`);
      assert.ok(startFirst.min >= 6, `start-first went down to ${startFirst.min} running tasks${startFirst.exact.detail}`);
      assertConverged('start-first update completed', startFirst.atEnd, 302);
      const before = await c.waitRunning(svc.id, 6, 30_000, (ts) => cmdIs(302)(ts) && isHealthy(ts));

      // New tasks that fail their health check: the update is rolled back to the 302 spec by itself.
      const failing = await rollOut('failing update', {
        task: { command: sleepCmd(303), health_check: { type: 'cmd', command: ['false'], interval_ms: 300, timeout_ms: 250, retries: 1 } },
        update_config: { order: 'stop-first', failure_action: 'rollback' },
      }, ['rollback_completed', 'rollback_paused', 'paused', 'completed']);
      t.diagnostic(`failing update → ${failing.service.update_status?.state} in ${failing.ms} ms (running min ${failing.min})`);
      const us = failing.service.update_status!;
      assert.equal(us.state, 'rollback_completed', JSON.stringify(us));
      assert.match(us.message, /health check failed/, JSON.stringify(us));
      assert.deepEqual(failing.service.spec.task.command, sleepCmd(302));
      const after = await c.waitRunning(svc.id, 6, 30_000, (ts) => cmdIs(302)(ts) && isHealthy(ts));
      for (const t of after) {
        assert.deepEqual(t.spec.health_check?.command, ['true'], describeTasks([t]));
        assert.ok(running(t.status.pid!), `task ${t.name}: pid ${t.status.pid} is not alive`);
        assert.deepEqual(cmdline(t.status.pid!), sleepCmd(302));
      }
      const all = await c.tasks(svc.id);
      const tried = all.filter((t) => t.spec.command.join(' ') === 'sleep 303');
      assert.ok(tried.length > 0, 'no task of the failing spec was ever started');
      assert.ok(tried.every((t) => t.desired_state !== 'running'), `tasks of the failing spec still wanted:\n  ${describeTasks(tried)}`);
      assert.ok(tried.some((t) => t.status.state === 'failed' && /health check failed/.test(t.status.error ?? '')), `no failed health check recorded:\n  ${describeTasks(tried)}`);
      // The tasks the rollback did not need to touch kept running throughout.
      const kept = before.filter((t) => after.some((a) => a.id === t.id));
      assert.ok(kept.length >= 4, `the rollback replaced more than the 2 updated slots:\nbefore: ${describeTasks(before)}\nafter: ${describeTasks(after)}`);
      // And it said rollback_completed only once that was so.
      assertConverged('rollback completed', failing.atEnd, 302);
    } finally {
      await c.removeService(svc.id);
    }
  });

  it('3. a reservation no node can hold stays pending with the reason, and is placed when a big node joins', async () => {
    const svc = await c.createService({
      name: 'bigmem', replicas: 1,
      task: { command: sleepCmd(300), resources: { reservations: { memory_bytes: 100 * GiB } } },
    });
    try {
      const pending = await waitFor('the task to be pending with a reason', async () => {
        const [t] = await c.tasks(svc.id, 'running');
        return t && t.status.message.startsWith('no suitable node') ? t : undefined;
      }, 15_000);
      assert.equal(pending.status.state, 'pending');
      assert.equal(pending.node_id, null);
      assert.ok(pending.status.message.startsWith('no suitable node (insufficient memory on 3 nodes'), `pending message: ${pending.status.message}`);
      assert.match(pending.status.message, /100(\.0)? ?Gi?B/, `the reason does not say how much was needed: ${pending.status.message}`);

      const big = await c.addAgent('127.0.0.4', { memory: '200g' });
      const bigId = nodeIdOf(big);
      const [placed] = await c.waitRunning(svc.id, 1, 15_000);
      assert.equal(placed!.id, pending.id, 'the pending task was replaced instead of placed');
      assert.equal(placed!.node_id, bigId, `placed on ${placed!.node_id}, not on the 200g node ${bigId}`);
      assert.ok(running(placed!.status.pid!));
      assert.deepEqual(cmdline(placed!.status.pid!), sleepCmd(300));
    } finally {
      await c.removeService(svc.id);
    }
  });

  it('8. a global service gets a task on a node that joins later', async () => {
    const svc = await c.createService({ name: 'everywhere', mode: 'global', task: { command: sleepCmd(300) } });
    try {
      const ready = (await c.nodes()).filter((n) => n.status === 'ready' && n.availability === 'active').map((n) => n.id).sort();
      const first = await c.waitRunning(svc.id, ready.length, 20_000);
      assert.deepEqual(first.map((t) => t.node_id).sort(), ready, `not one task per node: ${describeTasks(first)}`);

      const late = await c.addAgent('127.0.0.5');
      const lateId = nodeIdOf(late);
      const all = await c.waitRunning(svc.id, ready.length + 1, 20_000);
      assert.deepEqual(all.map((t) => t.node_id).sort(), [...ready, lateId].sort(), `not one task per node: ${describeTasks(all)}`);
      const onLate = all.find((t) => t.node_id === lateId)!;
      assert.ok(running(onLate.status.pid!));
      for (const t of first) assert.ok(all.some((a) => a.id === t.id && a.status.pid === t.status.pid), `task ${t.name} was replaced when a node joined`);
    } finally {
      await c.removeService(svc.id);
    }
  });
});
