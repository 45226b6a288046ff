import { defineCommand } from '../command.js';
import { afterAction, parseTimeout, waitOptions, type ServerJson } from '../servers.js';

export default defineCommand({
  path: ['server', 'rm'],
  summary: 'Delete servers: instance, root disk and addresses freed (--wait: until they are gone).',
  aliases: ['delete'],
  configure: (c) => waitOptions(c.argument('<server...>', 'names or ids')),
  parse: (a, o) => ({ refs: a[0] as unknown as string[], wait: Boolean(o.wait), json: Boolean(o.json), timeoutMs: parseTimeout(o) }),
  async run(i, ctx) {
    let code = 0;
    for (const ref of i.refs) {
      const r = await ctx.client().request<ServerJson>('DELETE', `/v1/servers/${encodeURIComponent(ref)}`);
      if (r.status === 204) {
        ctx.out.line(ref);
        continue;
      }
      code = Math.max(code, await afterAction(ctx, r.body, { ...i, json: false }, true));
    }
    return code;
  },
});
