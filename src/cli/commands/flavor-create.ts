import { collect, defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { parseLabels } from '../service-flags.js';
import { parseSize } from '../../util/size.js';

const MiB = 1024 ** 2;
const GiB = 1024 ** 3;

/** `512` (the unit given) or a size with its own unit (`2g`, `512m`), as a whole number of `unit`. */
function amount(v: unknown, unit: number, flag: string, unitName: string): number {
  const text = String(v);
  const n = /^\d+$/.test(text) ? Number(text) : (parseSize(text) ?? NaN) / unit;
  if (!Number.isInteger(n) || n < 0) throw usage(`${flag} must be a whole number of ${unitName} or a size such as ${unitName === 'MiB' ? '512m or 2g' : '20g'}, not "${text}"`);
  return n;
}

export default defineCommand({
  path: ['flavor', 'create'],
  summary: 'Create a flavor (cloud administrators).',
  configure: (c) => c.argument('<name>', 'flavor name')
    .requiredOption('--vcpus <n>', 'virtual CPUs')
    .requiredOption('--ram <size>', 'RAM: MiB, or a size such as 2g')
    .option('--disk <size>', 'root disk: GiB, or a size (0: the image\'s size)', '0')
    .option('--ephemeral <size>', 'an extra empty disk: GiB, or a size', '0')
    .option('--swap <size>', 'swap: MiB, or a size', '0')
    .option('--id <id>', 'the flavor\'s id (default: a new one)')
    .option('--private', 'only the projects given with --project may use it')
    .option('--project <project>', 'a project that may use a private flavor (repeatable)', collect)
    .option('--property <key=value>', 'an extra spec, e.g. hw:accel=kvm (repeatable)', collect)
    .option('--description <text>', 'description')
    .option('--json', 'print JSON'),
  parse: (a, o) => {
    const vcpus = Number(o.vcpus);
    if (!Number.isInteger(vcpus) || vcpus < 1) throw usage(`--vcpus must be a whole number of at least 1, not "${String(o.vcpus)}"`);
    if (o.project && !o.private) throw usage('--project is for private flavors: add --private');
    return {
      body: {
        name: a[0] as string, vcpus,
        ram_mb: amount(o.ram, MiB, '--ram', 'MiB'), disk_gb: amount(o.disk, GiB, '--disk', 'GiB'),
        ephemeral_gb: amount(o.ephemeral, GiB, '--ephemeral', 'GiB'), swap_mb: amount(o.swap, MiB, '--swap', 'MiB'),
        is_public: !o.private, projects: (o.project as string[] | undefined) ?? [],
        ...(o.id ? { id: String(o.id) } : {}), ...(o.description ? { description: String(o.description) } : {}),
        ...(o.property ? { properties: parseLabels(o.property as string[]) } : {}),
      },
      json: Boolean(o.json),
    };
  },
  async run(i, ctx) {
    const f = (await ctx.client().request<Record<string, any>>('POST', '/v1/flavors', { body: i.body })).body;
    if (i.json) return ctx.out.json(f);
    ctx.out.line(String(f.id));
  },
});
