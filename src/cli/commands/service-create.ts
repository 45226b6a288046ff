import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { declareSpecFlags, parseConstraintFlag, parseEnv, parseFileRef, parseLabels, parseMount, parsePlacementPref, parsePublish, specFromFlags } from '../service-flags.js';
import type { FileRef } from '../../secrets/refs.js';
import { followConvergence } from '../progress.js';

export default defineCommand({
  path: ['service', 'create'],
  summary: 'Create a service: COMMAND ARGS… after --, or --image.',
  configure: (c) => declareSpecFlags(c.argument('[command...]', 'the command and its arguments (after --)').option('--name <name>', 'service name (default: generated)'), 'create')
    .option('-d, --detach [bool]', 'return at once (default when not on a terminal); --detach=false shows progress until converged')
    .option('-q, --quiet', 'print only the service id')
    .option('--json', 'print the service as JSON'),
  parse: (a, o) => {
    const command = (a[0] as unknown as string[] | undefined) ?? [];
    if (o.args !== undefined) throw usage('--args is for `service update`; give the command after --');
    const spec = specFromFlags(o);
    const mode = o.mode as string;
    if (mode !== 'replicated' && mode !== 'global') throw usage(`--mode must be replicated or global, not "${mode}"`);
    if (mode === 'global' && o.replicas !== undefined) throw usage('--replicas cannot be used with --mode global (a global service runs one task per node)');
    spec.mode = mode;
    const task = (spec.task ??= {});
    if (command.length) task.command = command;
    if (o.env) task.env = parseEnv(o.env as string[]);
    if (o.constraint || o.placementPref) {
      task.placement = {
        ...(task.placement ?? {}),
        constraints: ((o.constraint as string[] | undefined) ?? []).map(parseConstraintFlag),
        preferences: ((o.placementPref as string[] | undefined) ?? []).map(parsePlacementPref),
      };
    }
    if (o.mount) task.mounts = (o.mount as string[]).map(parseMount);
    // Partial references: the server fills in the defaults (target, owner, mode).
    if (o.secret) task.secrets = (o.secret as string[]).map((x) => parseFileRef('secret', x)) as FileRef[];
    if (o.config) task.configs = (o.config as string[]).map((x) => parseFileRef('config', x)) as FileRef[];
    if (o.label) spec.labels = parseLabels(o.label as string[]);
    if (o.publish) spec.endpoint = { ...(spec.endpoint ?? {}), ports: (o.publish as string[]).map(parsePublish) };
    if (o.network) {
      const nets = o.network as string[];
      // `--network host` is the node's own network namespace, not a network object (like Docker's).
      if (nets.includes('host')) task.network_mode = 'host';
      const rest = nets.filter((n) => n !== 'host');
      if (rest.length) spec.networks = rest;
    }
    if (!task.image && !task.command) throw usage('Nothing to run: give a command after -- (e.g. `yun service create --name web -- python3 -m http.server`) or --image');
    const driver = task.driver ?? (task.image ? undefined : 'process');
    if (driver === 'process' && task.mounts?.length) throw usage('--mount is not supported by the process driver: its tasks see the host\'s file system as it is', 'Use --image with the oci or docker driver to mount things into a container.');
    const name = o.name as string | undefined;
    if (name !== undefined && !/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(name)) throw usage(`--name "${name}" is not a valid name: letters, digits, _ . - ; starting with a letter or digit; at most 63`);
    const detachFlag = o.detach;
    const detach = detachFlag === undefined ? !process.stderr.isTTY : !(detachFlag === 'false' || detachFlag === false);
    return { body: { name: name ?? generateName(), ...spec }, detach, quiet: Boolean(o.quiet), json: Boolean(o.json) };
  },
  async run(i, ctx) {
    const api = ctx.client();
    const svc = (await api.request('POST', '/v1/services', { body: i.body })).body;
    if (i.json) ctx.out.json(svc);
    else ctx.out.line(String(svc.id));
    if (!i.json && !i.quiet) {
      // Where it answers: swarm mode picks a port of 30000-32767 when none was asked for.
      const host = new URL(ctx.settings.url ?? 'https://127.0.0.1').hostname;
      const ports = (svc.spec as { endpoint: { ports: { published?: number; target: number; protocol: string; mode: string }[] } }).endpoint.ports;
      for (const p of ports.filter((q) => q.published)) {
        process.stderr.write(`Published ${p.protocol} port ${p.published} -> ${p.target} on ${p.mode === 'ingress' ? 'every node' : 'the nodes its tasks run on'}${p.protocol === 'tcp' && p.mode === 'ingress' ? ` (e.g. http://${host}:${p.published}/)` : ''}\n`);
      }
    }
    if (i.detach) return 0;
    return followConvergence(api, ctx.out, String(svc.id));
  },
});

const ADJ = ['brave', 'calm', 'eager', 'fancy', 'gentle', 'happy', 'jolly', 'kind', 'lively', 'merry', 'nice', 'proud', 'quick', 'silly', 'witty', 'zen'];
const NOUN = ['panda', 'otter', 'heron', 'lynx', 'tapir', 'koala', 'yak', 'ibis', 'gecko', 'orca', 'wren', 'bison', 'crane', 'dingo', 'eland', 'finch'];
function generateName(): string {
  const r = (n: number) => Math.floor(Math.random() * n);
  return `${ADJ[r(ADJ.length)]}-${NOUN[r(NOUN.length)]}-${r(1000)}`;
}
