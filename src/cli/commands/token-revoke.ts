import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';

export default defineCommand({
  path: ['token', 'revoke'],
  summary: 'Revoke a token by its token id (or, with --token, the token itself).',
  configure: (c) => c.argument('[token-id]', 'the 16-character token id (`yun token issue` shows it)').option('--token <token>', 'the token itself'),
  parse: (a, o) => {
    if (!a[0] && !o.token) throw usage('Name the token to revoke: a token id, or --token TOKEN');
    if (a[0] && !/^[0-9a-f]{16}$/.test(a[0])) throw usage(`"${a[0]}" is not a token id (16 hex characters)`);
    return { id: a[0], token: o.token as string | undefined };
  },
  async run(i, ctx) {
    if (i.id) await ctx.client().request('DELETE', `/v1/auth/tokens/${i.id}`);
    else await ctx.client().request('DELETE', '/v1/auth/tokens', { headers: { 'x-subject-token': i.token! } });
    ctx.out.line('Token revoked.');
  },
});
