/** `yun image member add|ls|rm|accept|reject`: Glance's image sharing. */
import { defineCommand } from '../command.js';
import { age } from '../output.js';

interface MemberJson { image_id: string; member_id: string; member_name: string | null; status: string; created_at: string; updated_at: string }

const path = (image: string, member?: string) => `/v1/images/${encodeURIComponent(image)}/members${member ? `/${encodeURIComponent(member)}` : ''}`;

export const imageMemberAdd = defineCommand({
  path: ['image', 'member', 'add'],
  summary: 'Share a shared image you own with a project: pending until that project accepts (`image member accept`); it may use it by id at once.',
  configure: (c) => c.argument('<image>', 'name or id').argument('<project>', 'the project, by id or name').option('--json', 'print JSON'),
  parse: (a, o) => ({ image: a[0] as string, project: a[1] as string, json: Boolean(o.json) }),
  async run(i, ctx) {
    const m = (await ctx.client().request<MemberJson>('POST', path(i.image), { body: { member: i.project } })).body;
    if (i.json) return ctx.out.json(m);
    ctx.out.line(`${m.member_name ?? m.member_id}\t${m.status}`);
  },
});

export const imageMemberLs = defineCommand({
  path: ['image', 'member', 'ls'],
  summary: 'The projects an image is shared with, and whether each accepted.',
  configure: (c) => c.argument('<image>', 'name or id').option('--json', 'print JSON'),
  parse: (a, o) => ({ image: a[0] as string, json: Boolean(o.json) }),
  async run(i, ctx) {
    const { items } = (await ctx.client().request<{ items: MemberJson[] }>('GET', path(i.image))).body;
    if (i.json) return ctx.out.json(items);
    ctx.out.table(items, [
      { header: 'project', get: (m) => m.member_name ?? '' },
      { header: 'project id', get: (m) => m.member_id },
      { header: 'status', get: (m) => m.status },
      { header: 'since', get: (m) => age(m.updated_at) },
    ]);
  },
});

export const imageMemberRm = defineCommand({
  path: ['image', 'member', 'rm'],
  summary: 'Stop sharing an image with a project (servers already made from it keep running).',
  configure: (c) => c.argument('<image>', 'name or id').argument('<project>', 'the project, by id or name'),
  parse: (a) => ({ image: a[0] as string, project: a[1] as string }),
  async run(i, ctx) {
    await ctx.client().request('DELETE', path(i.image, i.project));
    ctx.out.line(`${i.project} no longer shares ${i.image}`);
  },
});

const answer = (status: 'accepted' | 'rejected', verb: string) => defineCommand({
  path: ['image', 'member', verb],
  summary: status === 'accepted'
    ? 'Accept an image shared with your project: it appears in `image ls` and resolves by name.'
    : 'Reject an image shared with your project: it leaves `image ls` (still usable by id).',
  configure: (c) => c.argument('<image>', 'the image\'s id (shared images are found by id until accepted)').option('--json', 'print JSON'),
  parse: (a, o) => ({ image: a[0] as string, json: Boolean(o.json) }),
  async run(i, ctx) {
    const api = ctx.client();
    const me = (await api.get<{ token: { project: { id: string; name: string } } }>('/v1/auth/tokens')).token.project;
    const m = (await api.request<MemberJson>('PUT', path(i.image, me.id), { body: { status } })).body;
    if (i.json) return ctx.out.json(m);
    ctx.out.line(`${i.image}\t${m.status} by ${me.name}`);
  },
});

export const imageMemberAccept = answer('accepted', 'accept');
export const imageMemberReject = answer('rejected', 'reject');
