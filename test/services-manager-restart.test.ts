// End-to-end: the manager killed with SIGKILL (issue 3, "It must show" 7, manager half). The manager
// runs as a real process (`yun up` in a temp data dir, on a fixed free loopback port so that the
// agent can find it again after the restart), with a real `yun agent` on 127.0.0.2. A service runs on
// both nodes; the manager is killed with SIGKILL: every task keeps running; the manager restarted on
// the same data dir finds the same tasks with the same pids and creates no duplicates. Twice: restarted
// at once, and restarted after an outage long enough for the agent's reconnect backoff to reach its cap
// (the restarted manager must not declare the agent's node down before the agent's next attempt).
// Everything created here is removed in `finally`/`after`: the service, the agent, the manager, task
// processes (by pid), temp dirs.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Api } from './helpers/cloud.js';
import { nodeIdOf } from './helpers/agents.js';
import { envFile, freePort, managers, startManager, stopManager } from './helpers/manager-process.js';
import { Cluster, cmdline, describeTasks, running, sleepCmd, waitFor, type Task } from './helpers/services.js';

/** A cluster client for a manager: credentials and CA from DIR/admin.env. */
async function connect(dataDir: string, url: string): Promise<Cluster> {
  const env = envFile(join(dataDir, 'admin.env'));
  assert.equal(env.YUN_URL, url);
  const api = new Api(url, readFileSync(env.YUN_CACERT!, 'utf8'));
  const token = await api.login(env.YUN_USERNAME!, env.YUN_PASSWORD!, env.YUN_PROJECT);
  return new Cluster(api, token, url);
}

describe('services survive the manager killed with SIGKILL', { timeout: 150_000 }, () => {
  const dataDirs: string[] = [];
  const clusters: Cluster[] = [];

  after(async () => {
    // Services through the live manager (if any), then the agents, then the managers; then by pid.
    for (const c of clusters) await c.cleanup().catch(() => undefined);
    for (const m of managers) await stopManager(m).catch(() => undefined);
    for (const c of clusters) {
      await c.api.close().catch(() => undefined);
      await c.finalCleanup();
    }
    const { removeAgentDir } = await import('./helpers/agents.js');
    for (const d of dataDirs) await removeAgentDir(d); // also the nftables table of the killed manager's agent
  });

  /**
   * Manager + agent, a 4-replica service on both nodes; kill -9 the manager; `beforeRestart` decides
   * when to start it again (same data dir and port); then the same tasks must run with the same pids,
   * with nothing replaced or added, for longer than the node-down grace.
   */
  async function scenario(t: { diagnostic: (s: string) => void }, address: string, beforeRestart: (agentOutput: () => string) => Promise<void>): Promise<void> {
    const dataDir = mkdtempSync(join(tmpdir(), 'yun-mgr-'));
    dataDirs.push(dataDir);
    const port = await freePort();
    let mgr = await startManager(dataDir, port);
    const cl = await connect(dataDir, mgr.url);
    clusters.push(cl);
    const managerNode = (await cl.nodes())[0]!.id;
    cl.nodeIds.add(managerNode);
    const agent = await cl.addAgent(address);
    const agentNode = nodeIdOf(agent);
    assert.equal((await cl.nodes()).filter((n) => n.status === 'ready').length, 2);

    const svc = await cl.createService({ name: 'survivor', replicas: 4, task: { command: sleepCmd(300) } });
    const four = await cl.waitRunning(svc.id, 4);
    assert.deepEqual([...new Set(four.map((x) => x.node_id))].sort(), [managerNode, agentNode].sort(), `not on both nodes: ${describeTasks(four)}`);
    const key = (ts: Task[]) => ts.map((x) => `${x.id}@${x.node_id}:${x.status.pid}`).sort();
    const before = key(four);

    // kill -9 the manager (and with it its in-process agent): every task process keeps running.
    process.kill(mgr.pid, 'SIGKILL');
    await mgr.exited;
    const killedAt = Date.now();
    for (const x of four) assert.ok(running(x.status.pid!), `task ${x.name} (pid ${x.status.pid}) died with the manager`);
    assert.equal(agent.child.exitCode, null, 'the agent exited when the manager died');
    await beforeRestart(agent.output);
    for (const x of four) assert.ok(running(x.status.pid!), `task ${x.name} (pid ${x.status.pid}) died while the manager was down`);

    // Restart on the same data dir and port.
    const t0 = Date.now();
    mgr = await startManager(dataDir, port);
    await cl.api.close();
    const fresh = await connect(dataDir, mgr.url);
    cl.api = fresh.api;
    cl.token = fresh.token;
    // Both agents (the manager's own, and the remote one, which reconnects by itself) register again.
    await waitFor('both nodes to send heartbeats to the restarted manager', async () => {
      const nodes = await cl.nodes();
      return nodes.length === 2 && nodes.every((n) => n.status === 'ready' && n.last_heartbeat && Date.parse(n.last_heartbeat) >= t0);
    }, 20_000);
    t.diagnostic(`manager down ${t0 - killedAt} ms; both nodes heartbeating ${Date.now() - t0} ms after the restart began`);

    // The same 4 tasks, same nodes, same pids; and nothing more, for a while past the node-down grace.
    const watchUntil = Date.now() + 6000;
    let checks = 0;
    const logLines = (text: string) => text.split('\n').filter((l) => /node down|cannot reach the manager|session (ready|closed)|Connected|manager ready/.test(l)).map((l) => l.slice(0, 300)).join('\n    ');
    const logs = () => `\n  manager log (after restart):\n    ${logLines(mgr.output())}\n  agent log:\n    ${logLines(agent.output())}`;
    for (;;) {
      const all = await cl.tasks(svc.id);
      const run = all.filter((x) => x.desired_state === 'running');
      if (all.length !== 4) assert.fail(`tasks were added or replaced after the manager restart:\n  ${describeTasks(all)}${logs()}`);
      assert.deepEqual(key(run.filter((x) => x.status.state === 'running')), before, `tasks changed after the manager restart:\n  ${describeTasks(all)}`);
      for (const x of four) {
        assert.ok(running(x.status.pid!), `task ${x.name}: pid ${x.status.pid} is not alive`);
        assert.deepEqual(cmdline(x.status.pid!), sleepCmd(300));
      }
      assert.deepEqual((await cl.service(svc.id)).tasks, { running: 4, desired: 4 });
      const nodes = await cl.nodes();
      assert.ok(nodes.every((n) => n.status === 'ready'), `a node went down after the manager restart: ${JSON.stringify(nodes.map((n) => [n.address, n.status]))}${logs()}`);
      checks++;
      if (Date.now() > watchUntil) break;
      await new Promise((r) => setTimeout(r, 250));
    }
    assert.ok(checks >= 10);

    // Still under control after the restart: scale to 2 stops exactly 2 of them.
    await cl.updateService(svc.id, { replicas: 2 });
    const two = await cl.waitRunning(svc.id, 2, 20_000);
    const stopped = four.filter((x) => !two.some((y) => y.id === x.id));
    await waitFor('the scaled-down tasks to stop', async () => stopped.every((x) => !running(x.status.pid!)), 20_000);
    for (const x of two) assert.ok(running(x.status.pid!));

    await cl.removeService(svc.id);
    await waitFor('the service\'s tasks to be removed', async () => (await cl.tasks(svc.id)).length === 0, 20_000);
  }

  it('7. kill -9 of the manager, restarted at once: same tasks, same pids, no duplicates', async (t) => {
    await scenario(t, '127.0.0.2', async () => undefined);
  });

  it('7. kill -9 of the manager, restarted after the agent\'s reconnect backoff reached its cap: same tasks, same pids', async (t) => {
    // The agent retries with a capped exponential backoff and logs each retry (JSON, "retry_ms").
    // Restart the manager right after a retry at the cap: the agent's next attempt is a full
    // backoff away, and the restarted manager must not declare the node down meanwhile.
    await scenario(t, '127.0.0.3', async (out) => {
      const from = out().length;
      await waitFor('the agent to retry at its backoff cap', async () => {
        const delays = out().slice(from).split('\n').filter((l) => l.includes('cannot reach the manager')).map((l) => Number(/"retry_ms":(\d+)/.exec(l)?.[1]));
        // The backoff doubles until its cap: the first delay that is less than twice the previous one.
        return delays.length >= 2 && delays[delays.length - 1]! < 2 * delays[delays.length - 2]!;
      }, 30_000, 20);
    });
  });
});
