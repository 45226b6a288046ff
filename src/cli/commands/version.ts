import { defineCommand } from '../command.js';
import { VERSION } from '../../version.js';
import { CliError } from '../cli-error.js';

export default defineCommand({
  path: ['version'],
  summary: 'Show the client and server versions.',
  configure: (c) => c.option('--json', 'print JSON'),
  parse: (_a, o) => ({ json: Boolean(o.json) }),
  async run(i, ctx) {
    const client = { version: VERSION, node_version: process.version, platform: `${process.platform}/${process.arch}` };
    let server: Record<string, unknown> | null = null;
    let serverError: string | null = null;
    try {
      server = (await ctx.client().request('GET', '/v1/version', { anonymous: true })).body;
    } catch (e) {
      serverError = e instanceof CliError ? e.detail : String(e);
    }
    if (i.json) {
      ctx.out.json({ client, server, ...(serverError ? { server_error: serverError } : {}) });
    } else {
      ctx.out.line(`Client: yun ${client.version} (node ${client.node_version}, ${client.platform})`);
      ctx.out.line(server ? `Server: yunstack ${String(server.version)} (api ${String(server.api_version)}, node ${String(server.node_version)})` : `Server: unreachable: ${serverError}`);
    }
    return server ? 0 : 7;
  },
});
