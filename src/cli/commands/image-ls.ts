import { defineCommand } from '../command.js';
import { listOptions, parseListOptions } from '../list-options.js';
import { age } from '../output.js';
import { formatSize } from '../../util/size.js';

const FILTERS = ['name', 'repository', 'tag', 'digest'];

export default defineCommand({
  path: ['image', 'ls'],
  summary: 'List images.',
  configure: (c) => listOptions(c, FILTERS).option('--digests', 'show full digests'),
  parse: (_a, o) => ({ ...parseListOptions(o, FILTERS), digests: Boolean(o.digests) }),
  async run(i, ctx) {
    const items = await ctx.client().listAll<Record<string, any>>('/v1/images', i.query, i.limit);
    if (i.json) return ctx.out.json(items);
    if (i.quiet) return items.forEach((x) => ctx.out.line(String(x.id)));
    ctx.out.table(items, [
      { header: 'repository', get: (x) => x.repository },
      { header: 'tag', get: (x) => x.tag },
      { header: 'digest', get: (x) => (i.digests ? x.digest : String(x.digest).slice(7, 19)) },
      { header: 'id', get: (x) => x.id },
      { header: 'created', get: (x) => age(x.created_at) },
      { header: 'size', get: (x) => formatSize(x.size) },
    ]);
  },
});
