import { defineCommand, collect } from '../command.js';
import { CliError, usage } from '../cli-error.js';

const LABEL_KEY = /^[A-Za-z0-9][A-Za-z0-9_.\-/]{0,99}$/;

export default defineCommand({
  path: ['node', 'update'],
  summary: 'Change a node\'s availability (active, pause, drain), labels, or allocation ratios for servers.',
  configure: (c) => c.argument('<node>', 'name or id')
    .option('--availability <state>', 'active | pause (no new tasks) | drain (move tasks off)')
    .option('--label-add <key=value>', 'add or change a label (repeatable)', collect)
    .option('--label-rm <key>', 'remove a label (repeatable)', collect)
    .option('--cpu-allocation-ratio <n>', 'servers: vCPUs per CPU of this node (default 16)')
    .option('--ram-allocation-ratio <n>', 'servers: RAM overcommit of this node (default 1.5)')
    .option('--json', 'print the node as JSON'),
  parse: (a, o) => {
    const availability = o.availability as string | undefined;
    if (availability !== undefined && !['active', 'pause', 'drain'].includes(availability)) {
      throw usage(`--availability must be active, pause or drain, not "${availability}"`);
    }
    const add: Record<string, string> = {};
    for (const l of (o.labelAdd as string[] | undefined) ?? []) {
      const i = l.indexOf('=');
      const key = i < 0 ? l : l.slice(0, i);
      if (!LABEL_KEY.test(key)) throw usage(`--label-add: "${key}" is not a valid label key (letters, digits, . _ - /; at most 100)`);
      add[key] = i < 0 ? '' : l.slice(i + 1);
    }
    const rm = (o.labelRm as string[] | undefined) ?? [];
    const ratios: { cpu?: number; ram?: number } = {};
    for (const [flag, key] of [['cpuAllocationRatio', 'cpu'], ['ramAllocationRatio', 'ram']] as const) {
      if (o[flag] === undefined) continue;
      const n = Number(o[flag]);
      if (!Number.isFinite(n) || n < 0.1) throw usage(`--${key}-allocation-ratio must be a number of at least 0.1, not "${String(o[flag])}"`);
      ratios[key] = n;
    }
    if (availability === undefined && Object.keys(add).length === 0 && rm.length === 0 && Object.keys(ratios).length === 0) {
      throw usage('Nothing to change: give --availability, --label-add, --label-rm or an allocation ratio');
    }
    return { ref: a[0]!, availability, add, rm, ratios, json: Boolean(o.json) };
  },
  async run(i, ctx) {
    const api = ctx.client();
    const path = `/v1/nodes/${encodeURIComponent(i.ref)}`;
    // Read, change, write with the version read; a concurrent change means read again (the
    // change asked for here is the same whatever else changed).
    for (let attempt = 0; ; attempt++) {
      const node = await api.get<{ version: number; labels: Record<string, string> }>(path);
      const body: Record<string, unknown> = { version: node.version };
      if (i.availability) body.availability = i.availability;
      if (Object.keys(i.ratios).length) body.allocation_ratios = i.ratios;
      if (Object.keys(i.add).length || i.rm.length) {
        const labels = { ...node.labels, ...i.add };
        for (const k of i.rm) delete labels[k];
        body.labels = labels;
      }
      try {
        const updated = (await api.request('PATCH', path, { body })).body;
        if (i.json) ctx.out.json(updated);
        else ctx.out.line(String(updated.id));
        return;
      } catch (e) {
        if (e instanceof CliError && e.code === 'YUN_VERSION_CONFLICT' && attempt < 3) continue;
        throw e;
      }
    }
  },
});
