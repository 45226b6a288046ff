import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { afterVolumeStep, EMPTY_VOLUME, planVolume, type LocalVolume, type VolumeWant } from './plan.js';

const GiB = 1024 ** 3;
const want = fc.record({ size_gb: fc.integer({ min: 1, max: 8 }), snapshots: fc.uniqueArray(fc.constantFrom('a', 'b', 'c', 'd'), { maxLength: 4 }), deleting: fc.boolean() });
const local = fc.record({ created: fc.boolean(), size_bytes: fc.constantFrom(0, GiB, 2 * GiB, 4 * GiB), snapshots: fc.uniqueArray(fc.constantFrom('a', 'b', 'c', 'e'), { maxLength: 4 }), touched: fc.boolean() })
  // Reachable states only: a made file was begun; a file not complete has no size yet.
  .map((l): LocalVolume => (l.created ? { ...l, touched: true } : { ...l, size_bytes: 0 }));

/** Run the plan to its end, replanning after every step (as the agent does), the steps counted. */
function settle(w: VolumeWant, l: LocalVolume): { l: LocalVolume; steps: number } {
  let steps = 0;
  for (;;) {
    const plan = planVolume(w, l);
    if (plan.length === 0) return { l, steps };
    l = afterVolumeStep(l, plan[0]!, w);
    if (++steps > 20) throw new Error('did not settle');
  }
}

describe('volume plan (the node\'s side, pure)', () => {
  it('a new volume: create, then its snapshots; nothing more once there', () => {
    const w = { size_gb: 2, snapshots: ['s1'], deleting: false };
    assert.deepEqual(planVolume(w, EMPTY_VOLUME).map((s) => s.do), ['create', 'snapshot']);
    const { l } = settle(w, EMPTY_VOLUME);
    assert.deepEqual(planVolume(w, l), []);
  });

  it('extend only grows; a delete drops snapshots first, then the file', () => {
    assert.deepEqual(planVolume({ size_gb: 3, snapshots: [], deleting: false }, { created: true, size_bytes: GiB, snapshots: [], touched: true }), [{ do: 'extend', bytes: 3 * GiB }]);
    assert.deepEqual(planVolume({ size_gb: 1, snapshots: [], deleting: false }, { created: true, size_bytes: 2 * GiB, snapshots: [], touched: true }), []);
    assert.deepEqual(planVolume({ size_gb: 1, snapshots: [], deleting: true }, { created: true, size_bytes: GiB, snapshots: ['x'], touched: true }).map((s) => s.do), ['drop_snapshot', 'destroy']);
  });

  it('property: from any local state the plan settles on what is wanted, in a bounded number of steps', () => {
    fc.assert(fc.property(want, local, (w, l0) => {
      const { l, steps } = settle(w, l0);
      assert.ok(steps <= 10);
      if (w.deleting) return assert.deepEqual({ ...l }, EMPTY_VOLUME);
      assert.equal(l.created, true);
      assert.ok(l.size_bytes >= w.size_gb * GiB);
      assert.deepEqual([...l.snapshots].sort(), [...w.snapshots].sort());
    }));
  });

  it('property: a restart between any two steps (the state persisted after each) ends where an uninterrupted run ends', () => {
    fc.assert(fc.property(want, local, fc.nat(10), (w, l0, cut) => {
      let l: LocalVolume = l0;
      for (let i = 0; i < cut; i++) {
        const p = planVolume(w, l);
        if (!p.length) break;
        l = afterVolumeStep(l, p[0]!, w);
      }
      assert.deepEqual(settle(w, l).l, settle(w, l0).l);
    }));
  });
});
