import { defineCommand } from '../command.js';
import { parseDuration } from '../../util/duration.js';
import { usage } from '../cli-error.js';

export default defineCommand({
  path: ['token', 'issue'],
  summary: 'Issue a new token (for scripts: export YUN_TOKEN=...).',
  configure: (c) => c.option('--ttl <duration>', 'lifetime, e.g. 1h (at most the server\'s token lifetime)').option('-q, --quiet', 'print only the token').option('--json', 'print JSON'),
  parse: (_a, o) => {
    const ttl = o.ttl as string | undefined;
    if (ttl !== undefined && !parseDuration(ttl)) throw usage(`--ttl must be a duration such as 30m or 12h, not "${ttl}"`);
    return { ttl, quiet: Boolean(o.quiet), json: Boolean(o.json) };
  },
  async run(i, ctx) {
    const { token, body } = await ctx.client().login(i.ttl);
    const t = body.token as { token_id: string; user: { name: string }; project: { name: string }; expires_at: string; roles: string[] };
    if (i.quiet) return ctx.out.line(token);
    if (i.json) return ctx.out.json({ token, ...t });
    ctx.out.fields([['Token', token], ['Token id', t.token_id], ['User', t.user.name], ['Project', t.project.name], ['Roles', t.roles.join(', ')], ['Expires', t.expires_at]]);
  },
});
