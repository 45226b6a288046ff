import { defineCommand } from '../command.js';
import { CliError, usage } from '../cli-error.js';
import { followConvergence } from '../progress.js';

export default defineCommand({
  path: ['service', 'scale'],
  summary: 'Set the number of tasks of replicated services: SERVICE=N …',
  configure: (c) => c.argument('<service=replicas...>').option('-d, --detach [bool]', 'return at once; --detach=false shows progress'),
  parse: (a, o) => {
    const pairs = (a[0] as unknown as string[]).map((p) => {
      const m = /^(.+)=(\d+)$/.exec(p);
      if (!m) throw usage(`"${p}" is not SERVICE=REPLICAS (replicas a whole number ≥ 0)`);
      return { ref: m[1]!, replicas: Number(m[2]) };
    });
    const d = o.detach;
    return { pairs, detach: d === undefined ? !process.stderr.isTTY : !(d === 'false' || d === false) };
  },
  async run(i, ctx) {
    const api = ctx.client();
    let code = 0;
    for (const p of i.pairs) {
      for (let attempt = 0; ; attempt++) {
        const svc = await api.get<{ id: string; name: string; version: number; mode: string }>(`/v1/services/${encodeURIComponent(p.ref)}`);
        if (svc.mode === 'global') throw usage(`Service "${svc.name}" is global: it runs one task per node and cannot be scaled`);
        try {
          await api.request('PATCH', `/v1/services/${svc.id}`, { body: { version: svc.version, replicas: p.replicas } });
          ctx.out.line(`${svc.name} scaled to ${p.replicas}`);
          if (!i.detach) code = Math.max(code, await followConvergence(api, ctx.out, svc.id));
          break;
        } catch (e) {
          if (e instanceof CliError && e.code === 'YUN_VERSION_CONFLICT' && attempt < 3) continue;
          throw e;
        }
      }
    }
    return code;
  },
});
