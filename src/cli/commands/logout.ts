import { defineCommand } from '../command.js';
import { forgetToken } from '../config.js';

export default defineCommand({
  path: ['logout'],
  summary: 'Revoke the cached token and forget it.',
  parse: () => ({}),
  async run(_i, ctx) {
    await ctx.client().request('DELETE', '/v1/auth/tokens');
    forgetToken(ctx.settings);
    ctx.out.line('Logged out: the token is revoked.');
  },
});
