import { defineCommand } from '../command.js';
import { listOptions, parseListOptions } from '../list-options.js';
import { age } from '../output.js';
import { usage } from '../cli-error.js';
import { MEMBER_STATUSES } from '../../images/access.js';
import { formatSize } from '../../util/size.js';

const FILTERS = ['name', 'repository', 'tag', 'digest', 'kind', 'status', 'visibility', 'owner', 'disk_format'];
const MEMBER = [...MEMBER_STATUSES, 'all'];

export default defineCommand({
  path: ['image', 'ls'],
  summary: 'List the images your project may see: its own, public ones, and those shared with it that it accepted.',
  configure: (c) => listOptions(c, FILTERS).option('--digests', 'show full digests')
    .option('--member-status <s>', 'instead: images shared with your project whose membership is pending, accepted, rejected or all'),
  parse: (_a, o) => {
    const l = parseListOptions(o, FILTERS);
    if (o.memberStatus !== undefined) {
      if (!(MEMBER as string[]).includes(String(o.memberStatus))) throw usage(`--member-status must be one of ${MEMBER.join(', ')}, not "${String(o.memberStatus)}"`);
      l.query.member_status = String(o.memberStatus);
    }
    return { ...l, digests: Boolean(o.digests) };
  },
  async run(i, ctx) {
    const items = await ctx.client().listAll<Record<string, any>>('/v1/images', i.query, i.limit);
    if (i.json) return ctx.out.json(items);
    if (i.quiet) return items.forEach((x) => ctx.out.line(String(x.id)));
    ctx.out.table(items, [
      { header: 'repository', get: (x) => x.repository },
      { header: 'tag', get: (x) => x.tag },
      { header: 'digest', get: (x) => (x.digest ? (i.digests ? x.digest : String(x.digest).slice(7, 19)) : '-') },
      { header: 'id', get: (x) => x.id },
      { header: 'kind', get: (x) => (x.kind === 'vm' ? `vm/${String(x.disk_format)}` : 'container') },
      { header: 'status', get: (x) => x.status },
      { header: 'visibility', get: (x) => x.visibility },
      { header: 'created', get: (x) => age(x.created_at) },
      { header: 'size', get: (x) => (x.size == null ? '-' : formatSize(x.size)) },
    ]);
  },
});
