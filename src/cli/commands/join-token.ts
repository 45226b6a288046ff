import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';

export default defineCommand({
  path: ['join-token'],
  summary: 'Print the command (and token) that joins a worker or a manager to this cloud.',
  configure: (c) => c.argument('<role>', 'worker | manager').option('--rotate', 'replace the token first; the old one stops working').option('-q, --quiet', 'print only the token').option('--json', 'print JSON'),
  parse: (a, o) => {
    if (a[0] !== 'worker' && a[0] !== 'manager') throw usage(`The role must be worker or manager, not "${a[0]}"`);
    return { role: a[0], rotate: Boolean(o.rotate), quiet: Boolean(o.quiet), json: Boolean(o.json) };
  },
  async run(i, ctx) {
    const api = ctx.client();
    const t = i.rotate
      ? (await api.request<{ role: string; token: string; command: string }>('POST', `/v1/cluster/join-tokens/${i.role}/rotate`)).body
      : await api.get<{ role: string; token: string; command: string }>(`/v1/cluster/join-tokens/${i.role}`);
    if (i.json) return ctx.out.json(t);
    if (i.quiet) return ctx.out.line(t.token);
    if (i.rotate) ctx.out.line(`The ${i.role} join token was rotated; the old one no longer works.\n`);
    ctx.out.line(`To add a ${i.role} to this cloud, run this on the new machine:\n\n    ${t.command}\n`);
  },
});
