import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { parseSize } from '../../util/size.js';

export default defineCommand({
  path: ['quota', 'set'],
  summary: 'Set a project\'s quotas (-1 for unlimited).',
  configure: (c) => c.argument('<project>', 'name or id')
    .option('--services <n>', 'number of services')
    .option('--tasks <n>', 'number of tasks (replicas)')
    .option('--cpu <n>', 'reserved CPUs (e.g. 4 or 0.5)')
    .option('--memory <size>', 'reserved memory (e.g. 8g, 512m)')
    .option('--instances <n>', 'number of servers')
    .option('--cores <n>', 'vCPUs of servers (their flavors)')
    .option('--ram <size>', 'RAM of servers (their flavors; e.g. 50g)')
    .option('--json', 'print JSON'),
  parse: (a, o) => {
    const body: Record<string, number> = {};
    for (const k of ['services', 'tasks', 'instances', 'cores'] as const) {
      if (o[k] === undefined) continue;
      const n = Number(o[k]);
      if (!Number.isInteger(n) || n < -1) throw usage(`--${k} must be a whole number (or -1 for unlimited), not "${String(o[k])}"`);
      body[k] = n;
    }
    if (o.cpu !== undefined) {
      const n = Number(o.cpu);
      if (!Number.isFinite(n) || n < -1) throw usage(`--cpu must be a number of CPUs (or -1 for unlimited), not "${String(o.cpu)}"`);
      body.cpu = n;
    }
    if (o.memory !== undefined) {
      const n = String(o.memory) === '-1' ? -1 : parseSize(String(o.memory));
      if (n === undefined) throw usage(`--memory must be a size such as 512m or 8g (or -1 for unlimited), not "${String(o.memory)}"`);
      body.memory = n;
    }
    if (o.ram !== undefined) {
      const n = String(o.ram) === '-1' ? -1 : parseSize(String(o.ram));
      if (n === undefined) throw usage(`--ram must be a size such as 512m or 50g (or -1 for unlimited), not "${String(o.ram)}"`);
      body.ram = n;
    }
    if (Object.keys(body).length === 0) throw usage('Nothing to set: give at least one of --services, --tasks, --cpu, --memory, --instances, --cores, --ram');
    return { project: a[0]!, body, json: Boolean(o.json) };
  },
  async run(i, ctx) {
    const api = ctx.client();
    const path = `/v1/projects/${encodeURIComponent(i.project)}/quotas`;
    const current = await api.get<{ version: number }>(path);
    const r = (await api.request('PATCH', path, { body: { ...i.body, version: current.version } })).body;
    if (i.json) return ctx.out.json(r);
    ctx.out.line(`Quotas of ${String(r.project_name)} updated.`);
  },
});
