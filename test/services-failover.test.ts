// End-to-end failure recovery of swarm-mode services (issue 3, "It must show" 6 and the agent half
// of 7): a manager with its local agent (in-process, default heartbeat settings) and real `yun agent`
// processes on 127.0.0.2 and 127.0.0.3 that are killed with SIGKILL and restarted on their data dirs.
//   6. kill -9 an agent: its tasks run elsewhere within 10 s; restart it: its stale tasks are shut
//      down, so no more processes run than the service's replicas.
//   7. kill -9 an agent and restart it at once: it reattaches, its tasks keep their pids.
// Everything created here is removed in `finally`/`after`: services, agents, task processes, dirs.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startTestCloud, type TestCloud } from './helpers/cloud.js';
import { nodeIdOf, type AgentProcess } from './helpers/agents.js';
import { Cluster, cmdline, describeTasks, running, sleepCmd, waitFor, type Task } from './helpers/services.js';

describe('services survive agents killed with SIGKILL', { timeout: 180_000 }, () => {
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

  it('6. kill -9 of an agent: its tasks run elsewhere within 10 s; once restarted, nothing beyond the spec runs', async (t) => {
    const svc = await c.createService({ name: 'failover', replicas: 6, task: { command: sleepCmd(300) } });
    try {
      const six = await c.waitRunning(svc.id, 6);
      const onA = six.filter((x) => x.node_id === nodeA);
      assert.ok(onA.length > 0, `no task on node A: ${describeTasks(six)}`);

      const t0 = Date.now();
      await agentA.kill9();
      let maxRunning = 0;
      const replaced = await waitFor('the tasks of the killed node to run elsewhere', async () => {
        const ts = await c.runningTasks(svc.id);
        maxRunning = Math.max(maxRunning, ts.length);
        return ts.length === 6 && ts.every((x) => x.node_id !== nodeA && x.status.pid) ? ts : undefined;
      }, 30_000, 100);
      const failoverMs = Date.now() - t0;
      t.diagnostic(`failover: ${onA.length} tasks of the killed node running elsewhere after ${failoverMs} ms`);
      assert.ok(failoverMs < 10_000, `the killed node's tasks ran elsewhere only after ${failoverMs} ms (must be < 10 s)`);
      assert.ok(maxRunning <= 6, `${maxRunning} tasks running at once for 6 replicas`);
      assert.equal((await c.node(nodeA)).status, 'down');
      for (const x of replaced) assert.ok(running(x.status.pid!), `replacement ${x.name}: pid ${x.status.pid} is not alive`);

      // Restart the agent on its data dir: the tasks it was running (their processes outlived the
      // agent) are stale now and must be shut down, not reported as more running replicas.
      const stale = onA.filter((x) => running(x.status.pid!));
      agentA = await c.restartAgent(agentA);
      await waitFor('node A ready again', async () => (await c.node(nodeA)).status === 'ready', 15_000);
      const t1 = Date.now();
      await waitFor('the stale tasks\' processes on the restarted node to exit', async () => {
        const ts = await c.runningTasks(svc.id);
        maxRunning = Math.max(maxRunning, ts.length);
        return stale.every((x) => !running(x.status.pid!));
      }, 20_000);
      t.diagnostic(`restart: ${stale.length} stale processes gone ${Date.now() - t1} ms after the agent reconnected`);
      assert.ok(maxRunning <= 6, `${maxRunning} tasks running at once for 6 replicas`);

      // Now, and for a while, exactly 6 task processes of the service are alive: the running tasks'.
      const until = Date.now() + 2000;
      for (;;) {
        const all = await c.tasks(svc.id);
        const live = all.filter((x) => x.status.pid && running(x.status.pid));
        const run = all.filter((x) => x.desired_state === 'running' && x.status.state === 'running');
        assert.equal(run.length, 6, `running tasks: ${describeTasks(run)}`);
        assert.deepEqual(live.map((x) => x.status.pid).sort(), run.map((x) => x.status.pid).sort(), `task processes alive beyond the running tasks:\n  ${describeTasks(live)}`);
        for (const x of stale) {
          const now = all.find((y) => y.id === x.id);
          assert.ok(!now || now.desired_state !== 'running', `stale task ${x.name} is wanted again: ${describeTasks([now!])}`);
        }
        if (Date.now() > until) break;
        await new Promise((r) => setTimeout(r, 200));
      }
    } finally {
      await c.removeService(svc.id);
    }
  });

  it('7. kill -9 of an agent, restarted at once on its data dir: its tasks keep their pids', async (t) => {
    const svc = await c.createService({ name: 'reattach', replicas: 6, task: { command: sleepCmd(300) } });
    try {
      const six = await c.waitRunning(svc.id, 6);
      const onB = six.filter((x) => x.node_id === nodeB);
      assert.ok(onB.length > 0, `no task on node B: ${describeTasks(six)}`);

      const t0 = Date.now();
      await agentB.kill9();
      for (const x of onB) assert.ok(running(x.status.pid!), `task ${x.name} (pid ${x.status.pid}) died with its agent`);
      agentB = await c.restartAgent(agentB);
      const restartMs = Date.now() - t0;
      t.diagnostic(`agent restarted and connected ${restartMs} ms after kill -9`);
      assert.ok(agentB.output().includes('reattached'), `the restarted agent did not log a reattach:\n${agentB.output()}`);

      // Watch past the node-down grace (4 s): the node stays ready, nothing is replaced or restarted.
      const watchUntil = Date.now() + 5000;
      let checks = 0;
      for (;;) {
        const all = await c.tasks(svc.id);
        assert.equal(all.length, 6, `tasks were created or replaced after the agent restart:\n  ${describeTasks(all)}`);
        for (const x of onB) {
          const now = all.find((y) => y.id === x.id) as Task | undefined;
          assert.ok(now, `task ${x.name} is gone`);
          assert.equal(now.node_id, nodeB);
          assert.equal(now.desired_state, 'running', describeTasks([now]));
          assert.equal(now.status.state, 'running', describeTasks([now]));
          assert.equal(now.status.pid, x.status.pid, `task ${x.name} changed pid ${x.status.pid} → ${now.status.pid}`);
          assert.ok(running(x.status.pid!), `task ${x.name}: pid ${x.status.pid} is not alive`);
          assert.deepEqual(cmdline(x.status.pid!), sleepCmd(300));
        }
        assert.equal((await c.node(nodeB)).status, 'ready');
        checks++;
        if (Date.now() > watchUntil) break;
        await new Promise((r) => setTimeout(r, 250));
      }
      assert.ok(checks >= 10);

      // The reattached tasks are still under control: scaling down to 0 stops them.
      await c.updateService(svc.id, { replicas: 0 });
      await waitFor('the reattached tasks to stop on scale-down', async () => onB.every((x) => !running(x.status.pid!)), 20_000);
    } finally {
      await c.removeService(svc.id);
    }
  });
});
