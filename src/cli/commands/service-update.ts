import { defineCommand } from '../command.js';
import { CliError, usage } from '../cli-error.js';
import { declareSpecFlags, parseConstraintFlag, parseEnv, parseFileRef, parseLabels, parseMount, parsePlacementPref, parsePublish, specFromFlags } from '../service-flags.js';
import { followConvergence } from '../progress.js';
import type { ServiceSpec } from '../../services/spec.js';

/** Turn update flags into a change against the current spec (read-modify-write with its version). */
function edit(o: Record<string, unknown>, cur: ServiceSpec): Record<string, unknown> {
  const spec = specFromFlags(o, cur) as Record<string, any>;
  const task = (spec.task ??= {});
  if (o.args !== undefined) task.command = String(o.args).trim().split(/\s+/).filter(Boolean);
  if (o.envAdd || o.envRm) {
    const env = { ...cur.task.env, ...parseEnv(o.envAdd as string[] | undefined, 'env-add') };
    for (const k of (o.envRm as string[] | undefined) ?? []) delete env[k];
    task.env = env;
  }
  if (o.constraintAdd || o.constraintRm || o.placementPrefAdd || o.placementPrefRm) {
    const rm = new Set(((o.constraintRm as string[] | undefined) ?? []).map(parseConstraintFlag));
    const constraints = [...cur.task.placement.constraints.filter((c) => !rm.has(c)), ...((o.constraintAdd as string[] | undefined) ?? []).map(parseConstraintFlag)];
    const prm = new Set(((o.placementPrefRm as string[] | undefined) ?? []).map((p) => parsePlacementPref(p).spread));
    const preferences = [...cur.task.placement.preferences.filter((p) => !prm.has(p.spread)), ...((o.placementPrefAdd as string[] | undefined) ?? []).map(parsePlacementPref)];
    task.placement = { ...cur.task.placement, ...(task.placement ?? {}), constraints: [...new Set(constraints)], preferences };
  }
  if (o.mountAdd || o.mountRm) {
    const rm = new Set((o.mountRm as string[] | undefined) ?? []);
    const add = ((o.mountAdd as string[] | undefined) ?? []).map(parseMount);
    task.mounts = [...cur.task.mounts.filter((m) => !rm.has(m.target) && !add.some((a) => a.target === m.target)), ...add];
  }
  for (const k of ['secret', 'config'] as const) {
    const addFlag = o[`${k}Add`] as string[] | undefined;
    const rmFlag = o[`${k}Rm`] as string[] | undefined;
    if (!addFlag && !rmFlag) continue;
    const rm = new Set(rmFlag ?? []);
    const add = (addFlag ?? []).map((x) => parseFileRef(`${k}-add`, x));
    const field = k === 'secret' ? 'secrets' : 'configs';
    // What stays is sent by name again (the server resolves each to its current revision).
    const keep = (cur.task[field] ?? []).filter((r) => !rm.has(r.source) && !add.some((a) => a.source === r.source)).map(({ id: _i, revision: _r, ...r }) => r);
    task[field] = [...keep, ...add];
  }
  if (o.labelAdd || o.labelRm) {
    const labels = { ...cur.labels, ...parseLabels(o.labelAdd as string[] | undefined, 'label-add') };
    for (const k of (o.labelRm as string[] | undefined) ?? []) delete labels[k];
    spec.labels = labels;
  }
  if (o.publishAdd || o.publishRm) {
    const rm = new Set(((o.publishRm as string[] | undefined) ?? []).map(Number));
    const add = ((o.publishAdd as string[] | undefined) ?? []).map(parsePublish);
    const ports = [...cur.endpoint.ports.filter((p) => !rm.has(p.target) && !(p.published && rm.has(p.published)) && !add.some((a) => a.target === p.target && a.protocol === p.protocol)), ...add];
    spec.endpoint = { ...cur.endpoint, ...(spec.endpoint ?? {}), ports };
  }
  if (o.networkAdd || o.networkRm) {
    const rm = new Set((o.networkRm as string[] | undefined) ?? []);
    spec.networks = [...cur.networks.filter((n) => !rm.has(n)), ...((o.networkAdd as string[] | undefined) ?? [])];
  }
  if (o.force) task.force_update = (cur.task.force_update ?? 0) + 1;
  if (Object.keys(task).length === 0) delete spec.task;
  return spec;
}

export default defineCommand({
  path: ['service', 'update'],
  summary: 'Change a service; a change to its tasks rolls out as a rolling update (--force restarts every task).',
  configure: (c) => declareSpecFlags(c.argument('<service>', 'name or id'), 'update')
    .option('-d, --detach [bool]', 'return at once; --detach=false shows progress until converged')
    .option('--json', 'print the service as JSON'),
  parse: (a, o) => {
    const d = o.detach;
    // Validate the flags now (against an empty spec), so bad input fails before any request.
    const probe = Object.keys(o).filter((k) => !['detach', 'json', 'healthcheck'].includes(k));
    if (probe.length === 0 && o.healthcheck !== false) throw usage('Nothing to change: give at least one flag (see `yun service update --help`)');
    if (o.rollback && probe.length > 1) throw usage('--rollback cannot be combined with other changes');
    return { ref: a[0]!, opts: o, detach: d === undefined ? !process.stderr.isTTY : !(d === 'false' || d === false), json: Boolean(o.json) };
  },
  async run(i, ctx) {
    const api = ctx.client();
    for (let attempt = 0; ; attempt++) {
      const svc = await api.get<{ id: string; name: string; version: number; spec: ServiceSpec }>(`/v1/services/${encodeURIComponent(i.ref)}`);
      const body = i.opts.rollback ? { rollback: true } : edit(i.opts, svc.spec);
      try {
        const updated = (await api.request('PATCH', `/v1/services/${svc.id}`, { body: { version: svc.version, ...body } })).body;
        if (i.json) ctx.out.json(updated);
        else ctx.out.line(svc.name);
        if (i.detach) return 0;
        return followConvergence(api, ctx.out, svc.id);
      } catch (e) {
        if (e instanceof CliError && e.code === 'YUN_VERSION_CONFLICT' && attempt < 3) continue;
        throw e;
      }
    }
  },
});
