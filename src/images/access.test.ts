import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { YunError } from '../errors/errors.js';
import { accessOf, addMember, changeVisibility, relation, removeMember, setMemberStatus, withAccess, MEMBER_STATUSES, VISIBILITIES, type ImageAccess } from './access.js';
import { canSee } from './catalog.js';
import { checkActive, checkUploadable, statusOf } from './status.js';
import type { StoredObject } from '../store/store.js';

const OWNER = 'p0';
const projects = ['p0', 'p1', 'p2', 'p3'];
const op = fc.oneof(
  fc.record({ kind: fc.constant('visibility' as const), to: fc.constantFrom(...VISIBILITIES), admin: fc.boolean() }),
  fc.record({ kind: fc.constant('add' as const), project: fc.constantFrom(...projects) }),
  fc.record({ kind: fc.constant('status' as const), project: fc.constantFrom(...projects), status: fc.constantFrom(...MEMBER_STATUSES) }),
  fc.record({ kind: fc.constant('remove' as const), project: fc.constantFrom(...projects) }),
);

describe('image access (visibility and members)', () => {
  it('the audience is always the owner, * when public, the accepted members when shared; a refused change changes nothing', () => {
    fc.assert(fc.property(fc.array(op, { maxLength: 25 }), (ops) => {
      let data: Record<string, unknown> = { ...withAccess(OWNER, 'private', []) };
      for (const o of ops) {
        const before = JSON.stringify(data);
        let next: ImageAccess | undefined;
        try {
          if (o.kind === 'visibility') next = changeVisibility(OWNER, data, o.to, { cloudAdmin: o.admin, name: 'i' });
          else if (o.kind === 'add') next = addMember(OWNER, data, o.project, 't', 'i');
          else if (o.kind === 'status') next = setMemberStatus(OWNER, data, o.project, o.status, 't', 'i');
          else next = removeMember(OWNER, data, o.project, 'i');
        } catch (e) {
          assert.ok(e instanceof YunError, String(e));
          assert.equal(JSON.stringify(data), before);
          continue;
        }
        data = { ...data, ...next };
        const { visibility, members } = accessOf(data);
        const want = [OWNER, ...(visibility === 'public' ? ['*'] : []), ...(visibility === 'shared' ? members.filter((m) => m.status === 'accepted').map((m) => m.project_id) : [])];
        assert.deepEqual(data.audience, [...new Set(want)]);
        assert.equal(new Set(members.map((m) => m.project_id)).size, members.length, 'a project is a member once');
        assert.ok(!members.some((m) => m.project_id === OWNER), 'the owner is never a member');
        for (const p of projects) {
          const r = relation(OWNER, data, p);
          const img = { project_id: OWNER, data } as unknown as StoredObject;
          assert.equal(canSee(img, p), r !== undefined, `canSee and relation agree for ${p}`);
          // Whoever lists it (the audience) may also see it.
          if ((data.audience as string[]).includes(p) || (data.audience as string[]).includes('*')) assert.ok(r, `${p} lists it, so sees it`);
        }
      }
    }));
  });

  it('publishing takes a cloud administrator; members only on a shared image', () => {
    assert.throws(() => changeVisibility(OWNER, {}, 'public', { cloudAdmin: false, name: 'i' }), (e: YunError) => e.code === 'YUN_FORBIDDEN');
    assert.equal(changeVisibility(OWNER, {}, 'public', { cloudAdmin: true, name: 'i' }).visibility, 'public');
    assert.throws(() => addMember(OWNER, {}, 'p1', 't', 'i'), (e: YunError) => e.code === 'YUN_INVALID_STATE' && /is private/.test(e.message));
  });

  it('statuses: records from before are active; only active images are used, only queued ones take data', () => {
    assert.equal(statusOf({}), 'active');
    assert.doesNotThrow(() => checkActive('i', {}, 'use it'));
    assert.throws(() => checkActive('i', { status: 'killed', status_reason: 'the disk was bad' }, 'use it'), (e: YunError) => e.code === 'YUN_INVALID_STATE' && /Cannot use it: image i was killed: the disk was bad/.test(e.message));
    assert.doesNotThrow(() => checkUploadable('i', { status: 'queued' }));
    for (const s of ['saving', 'active', 'killed']) assert.throws(() => checkUploadable('i', { status: s }), (e: YunError) => e.code === 'YUN_INVALID_STATE');
  });
});
