import { defineCommand } from '../command.js';
import { listOptions, parseListOptions } from '../list-options.js';
import { SNAPSHOT_COLUMNS, type SnapshotJson } from '../volumes.js';

const FILTERS = ['name', 'id', 'status', 'volume_id'];

export default defineCommand({
  path: ['volume', 'snapshot-ls'],
  summary: 'List volume snapshots.',
  configure: (c) => listOptions(c, FILTERS),
  parse: (_a, o) => parseListOptions(o, FILTERS),
  async run(i, ctx) {
    const items = await ctx.client().listAll<SnapshotJson>('/v1/snapshots', i.query, i.limit);
    if (i.json) return ctx.out.json(items);
    if (i.quiet) return items.forEach((s) => ctx.out.line(s.id));
    ctx.out.table(items, SNAPSHOT_COLUMNS);
  },
});
