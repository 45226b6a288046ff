import { defineCommand } from '../command.js';
import { proxyCaptures, readProxyEnv } from '../../util/proxy.js';

interface Check { name: string; status: 'pass' | 'warn' | 'fail'; detail: string; fix?: string }
interface NodeReport { node_id: string; node_name: string; address: string; status: string; checks: Check[] }

export default defineCommand({
  path: ['doctor'],
  summary: 'Check every node (or one) and say how to fix what is wrong: PASS / WARN / FAIL. Exits 1 on any FAIL.',
  configure: (c) => c.option('--node <node>', 'only this node (name or id)').option('--json', 'print JSON'),
  parse: (_a, o) => ({ node: o.node as string | undefined, json: Boolean(o.json) }),
  async run(i, ctx) {
    const api = ctx.client();
    const reports: NodeReport[] = i.node
      ? [await api.get<NodeReport>(`/v1/nodes/${encodeURIComponent(i.node)}/doctor`)]
      : (await api.get<{ items: NodeReport[] }>('/v1/doctor')).items;
    // This machine's own view: would the CLI's proxy settings capture the cloud's address?
    const host = new URL(api.settings.url!).hostname;
    const env = readProxyEnv();
    const client: Check = proxyCaptures(host, env)
      ? { name: 'client proxy', status: 'warn', detail: `HTTP(S)_PROXY is set and NO_PROXY does not cover ${host}: other tools would send API calls through the proxy (yun never does)`, fix: `export NO_PROXY=$NO_PROXY,${host}` }
      : { name: 'client proxy', status: 'pass', detail: 'the API address is not captured by proxy variables' };
    const failed = reports.some((r) => r.checks.some((c) => c.status === 'fail'));
    if (i.json) {
      ctx.out.json({ status: failed ? 'fail' : reports.some((r) => r.status === 'warn') || client.status === 'warn' ? 'warn' : 'pass', nodes: reports, client: [client] });
      return failed ? 1 : 0;
    }
    const rows = [
      ...reports.flatMap((r) => r.checks.map((c) => ({ node: r.node_name, ...c }))),
      { node: '(this client)', ...client },
    ];
    ctx.out.table(rows, [
      { header: 'node', get: (r) => r.node },
      { header: 'check', get: (r) => r.name },
      { header: 'status', get: (r) => r.status.toUpperCase() },
      { header: 'detail', get: (r) => `${r.detail}${r.fix && r.status !== 'pass' ? ` — fix: ${r.fix}` : ''}` },
    ]);
    return failed ? 1 : 0;
  },
});
