import { defineCommand } from '../command.js';
import { CliError } from '../cli-error.js';
import { followConvergence } from '../progress.js';

export default defineCommand({
  path: ['service', 'rollback'],
  summary: 'Return a service to its previous spec (as a rolling update with its rollback settings).',
  configure: (c) => c.argument('<service>', 'name or id').option('-d, --detach [bool]', 'return at once; --detach=false shows progress'),
  parse: (a, o) => ({ ref: a[0]!, detach: o.detach === undefined ? !process.stderr.isTTY : !(o.detach === 'false' || o.detach === false) }),
  async run(i, ctx) {
    const api = ctx.client();
    for (let attempt = 0; ; attempt++) {
      const svc = await api.get<{ id: string; name: string; version: number }>(`/v1/services/${encodeURIComponent(i.ref)}`);
      try {
        await api.request('PATCH', `/v1/services/${svc.id}`, { body: { version: svc.version, rollback: true } });
        ctx.out.line(`${svc.name}: rollback started`);
        return i.detach ? 0 : followConvergence(api, ctx.out, svc.id);
      } catch (e) {
        if (e instanceof CliError && e.code === 'YUN_VERSION_CONFLICT' && attempt < 3) continue;
        throw e;
      }
    }
  },
});
