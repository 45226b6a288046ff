import { randomBytes } from 'node:crypto';
import { collect, defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { parseEnv } from '../service-flags.js';
import { interactive } from './task-exec.js';

interface Task { id: string; status: { state: string; message: string; error: string | null; exit_code: number | null } }

const END = new Set(['complete', 'failed', 'rejected', 'shutdown', 'orphaned', 'remove']);

export default defineCommand({
  path: ['run'],
  summary: 'Run a one-off task from an image, optionally on attachable networks: yun run [--rm] [-it] [--network NET] IMAGE [CMD…]',
  configure: (c) => c.argument('<image>', 'image name').argument('[command...]', 'the command (after --); default: the image\'s')
    .option('--network <name>', 'join an attachable network (repeatable)', collect)
    .option('--name <name>', 'name of the one-off service (default run-XXXXXX)')
    .option('-e, --env <K=V>', 'environment variable (repeatable)', collect)
    .option('--constraint <expr>', 'placement constraint, e.g. node.role==manager (repeatable)', collect)
    .option('-i, --interactive', 'keep standard input open (with -t: an interactive terminal)')
    .option('-t, --tty', 'allocate a terminal')
    .option('--rm', 'remove the task (its one-off service) when it ends'),
  parse: (a, o) => {
    if (Boolean(o.tty) !== Boolean(o.interactive)) throw usage('Use -i and -t together (-it) for an interactive terminal, or neither');
    const name = (o.name as string | undefined) ?? `run-${randomBytes(3).toString('hex')}`;
    return {
      image: a[0] as string, command: (a[1] as unknown as string[] | undefined) ?? [], name, tty: Boolean(o.tty), rm: Boolean(o.rm),
      networks: (o.network as string[] | undefined) ?? [], env: parseEnv(o.env as string[] | undefined), constraints: (o.constraint as string[] | undefined) ?? [],
    };
  },
  async run(i, ctx) {
    const api = ctx.client();
    // With a terminal the task holds still (sleep) and the command runs in it through exec.
    const holder = ['sh', '-c', 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done'];
    const command = i.tty ? holder : i.command;
    if (i.tty && i.command.length === 0) throw usage('With -it, give the command to run, e.g. yun run -it busybox sh');
    const svc = (await api.request<{ id: string }>('POST', '/v1/services', {
      body: {
        name: i.name, replicas: 1, networks: i.networks, labels: { 'yunstack.oneoff': 'true' },
        task: { image: i.image, command, env: i.env, restart_policy: { condition: 'none' }, placement: { constraints: i.constraints }, stop_grace_period_ms: 1000 },
      },
    })).body;
    const cleanup = async () => { if (i.rm) await api.request('DELETE', `/v1/services/${svc.id}`).catch(() => undefined); };
    try {
      const task = await waitTask(api, svc.id, (t) => t.status.state === 'running' || END.has(t.status.state), 120_000);
      const ranAndEnded = !i.tty && END.has(task.status.state) && task.status.exit_code !== null;
      if (task.status.state !== 'running' && !ranAndEnded) {
        process.stderr.write(`Error: the task did not start: ${task.status.error ?? task.status.message}\n`);
        return 1;
      }
      if (i.tty) return await interactive(api, `/v1/tasks/${encodeURIComponent(task.id)}/tty`, { command: i.command });
      const done = await waitTask(api, svc.id, (t) => END.has(t.status.state), 24 * 3600_000);
      await api.stream(`/v1/tasks/${done.id}/logs`, {}, (line) => {
        try {
          const r = JSON.parse(line) as { stream?: string; line?: string };
          (r.stream === 'stderr' ? process.stderr : process.stdout).write(`${r.line}\n`);
        } catch { /* not a log line */ }
      });
      if (done.status.state !== 'complete' && done.status.exit_code === null) process.stderr.write(`Error: ${done.status.error ?? done.status.message}\n`);
      return done.status.exit_code ?? 1;
    } finally {
      await cleanup();
    }
  },
});

async function waitTask(api: import('../client.js').ApiClient, serviceId: string, ok: (t: Task) => boolean, timeoutMs: number): Promise<Task> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const tasks = (await api.get<{ items: Task[] }>('/v1/tasks', { service_id: serviceId })).items;
    const t = tasks[0];
    if (t && ok(t)) return t;
    if (Date.now() > deadline) throw new Error(`the one-off task did not get there within ${Math.round(timeoutMs / 1000)} s (${t ? `${t.status.state}: ${t.status.message}` : 'not created'})`);
    await new Promise((r) => setTimeout(r, 200));
  }
}
