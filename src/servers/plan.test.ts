import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { afterStep, EMPTY_LOCAL, planServer, powerOf, type LocalInstance, type Step, type Want } from './plan.js';
import type { DesiredPower } from './server.js';

const want = (over: Partial<Want> = {}): Want => ({ power: 'active', generation: 1, op: null, deleting: false, image_digest: 'sha256:a', volumes: [], ...over });
const booted: LocalInstance = { ...EMPTY_LOCAL, prepared: true, image_digest: 'sha256:a', running: true };

/** Run the agent's loop: plan, do the first step, plan again; at most `max` steps. */
function drive(w: Want, l: LocalInstance, max = 20, crashAt = -1): { local: LocalInstance; steps: Step[] } {
  const done: Step[] = [];
  let cur = l;
  for (let i = 0; i < max; i++) {
    const plan = planServer(w, cur);
    if (plan.length === 0) return { local: cur, steps: done };
    const s = plan[0]!;
    done.push(s);
    const next = afterStep(cur, s, w);
    // A crash right after a step: it took effect on the node, but the agent died before saving its
    // record. The restarted agent learns the instance's state from the driver (prepared, running,
    // frozen, suspended) and has the rest as it was before the step.
    cur = i === crashAt
      ? { ...cur, prepared: next.prepared, running: next.running, frozen: next.frozen, suspended: next.suspended, image_digest: next.image_digest }
      : next;
  }
  throw new Error(`no fixpoint after ${max} steps: ${JSON.stringify(done)}`);
}

const POWER: Record<DesiredPower, string> = { active: 'running', shutoff: 'shutdown', paused: 'paused', suspended: 'suspended' };

describe('server plan: examples', () => {
  it('a new server is prepared, then booted', () => {
    assert.deepEqual(planServer(want(), EMPTY_LOCAL), [{ do: 'prepare' }, { do: 'boot' }]);
  });

  it('a running server that is wanted running needs nothing', () => {
    assert.deepEqual(planServer(want(), booted), []);
  });

  it('stop, pause, suspend, and back', () => {
    assert.deepEqual(planServer(want({ power: 'shutoff' }), booted), [{ do: 'stop', hard: false }]);
    assert.deepEqual(planServer(want({ power: 'paused' }), booted), [{ do: 'freeze' }]);
    assert.deepEqual(planServer(want({ power: 'suspended' }), booted), [{ do: 'suspend' }]);
    assert.deepEqual(planServer(want(), { ...booted, frozen: true }), [{ do: 'thaw' }]);
    assert.deepEqual(planServer(want(), { ...booted, running: false, suspended: true }), [{ do: 'resume' }]);
    assert.deepEqual(planServer(want(), { ...booted, running: false }), [{ do: 'boot' }]);
  });

  it('a soft reboot stops gracefully and boots; a hard one kills', () => {
    assert.deepEqual(planServer(want({ generation: 2, op: { kind: 'reboot', generation: 2 } }), booted), [{ do: 'stop', hard: false }, { do: 'boot' }, { do: 'op_done', generation: 2 }]);
    assert.deepEqual(planServer(want({ generation: 2, op: { kind: 'reboot_hard', generation: 2 } }), { ...booted, frozen: true }), [{ do: 'stop', hard: true }, { do: 'boot' }, { do: 'op_done', generation: 2 }]);
    // Once done, not again.
    assert.deepEqual(planServer(want({ generation: 2, op: { kind: 'reboot', generation: 2 } }), { ...booted, op_done: 2 }), []);
  });

  it('an agent that died between the stop and the boot of a reboot boots, once', () => {
    const w = want({ generation: 2, op: { kind: 'reboot', generation: 2 } });
    assert.deepEqual(planServer(w, { ...booted, running: false }), [{ do: 'boot' }, { do: 'op_done', generation: 2 }]);
  });

  it('rebuild: a new root disk once, even from the same image', () => {
    const w = want({ generation: 3, op: { kind: 'rebuild', generation: 3 } });
    assert.deepEqual(planServer(w, booted), [{ do: 'stop', hard: false }, { do: 'destroy' }, { do: 'prepare' }, { do: 'boot' }, { do: 'op_done', generation: 3 }]);
    const after = drive(w, booted);
    assert.equal(after.steps.filter((s) => s.do === 'prepare').length, 1);
    assert.equal(after.local.prepared_for, 3);
    // After a crash right after the prepare, the next plan boots; it does not prepare again.
    const prepared = afterStep(afterStep(afterStep(booted, { do: 'stop', hard: false }, w), { do: 'destroy' }, w), { do: 'prepare' }, w);
    assert.deepEqual(planServer(w, prepared), [{ do: 'boot' }, { do: 'op_done', generation: 3 }]);
  });

  it('resize keeps a copy of the disk until confirm or revert; revert puts it back', () => {
    const resize = want({ generation: 2, op: { kind: 'resize', generation: 2 } });
    assert.deepEqual(planServer(resize, booted), [{ do: 'stop', hard: false }, { do: 'save_disk', tag: 'resize' }, { do: 'boot' }, { do: 'op_done', generation: 2 }]);
    const verifying = drive(resize, booted).local;
    assert.deepEqual(verifying.saved, ['resize']);
    assert.deepEqual(planServer(resize, verifying), [], 'VERIFY_RESIZE keeps the copy');
    const confirm = want({ generation: 3, op: { kind: 'resize_confirm', generation: 3 } });
    assert.deepEqual(planServer(confirm, verifying), [{ do: 'drop_disk', tag: 'resize' }, { do: 'op_done', generation: 3 }]);
    const revert = want({ generation: 3, op: { kind: 'resize_revert', generation: 3 } });
    assert.deepEqual(planServer(revert, verifying), [{ do: 'stop', hard: false }, { do: 'restore_disk', tag: 'resize' }, { do: 'boot' }, { do: 'op_done', generation: 3 }, { do: 'drop_disk', tag: 'resize' }]);
    assert.deepEqual(drive(revert, verifying).local.saved, []);
  });

  it('a stopped server resized stays stopped', () => {
    const w = want({ power: 'shutoff', generation: 2, op: { kind: 'resize', generation: 2 } });
    assert.deepEqual(planServer(w, { ...booted, running: false }), [{ do: 'save_disk', tag: 'resize' }, { do: 'op_done', generation: 2 }]);
  });

  it('delete stops and destroys, whatever it was doing', () => {
    assert.deepEqual(planServer(want({ deleting: true }), { ...booted, frozen: true }), [{ do: 'stop', hard: true }, { do: 'destroy' }]);
    assert.deepEqual(planServer(want({ deleting: true }), { ...booted, running: false, suspended: true }), [{ do: 'stop', hard: true }, { do: 'destroy' }]);
    assert.deepEqual(planServer(want({ deleting: true }), EMPTY_LOCAL), []);
  });
});

const powerArb = fc.constantFrom<DesiredPower>('active', 'shutoff', 'paused', 'suspended');
const opArb = fc.option(fc.record({ kind: fc.constantFrom('reboot', 'reboot_hard', 'rebuild', 'resize', 'resize_confirm', 'resize_revert') as fc.Arbitrary<NonNullable<Want['op']>['kind']>, generation: fc.integer({ min: 1, max: 9 }) }), { nil: null });
const wantArb: fc.Arbitrary<Want> = fc.record({ power: powerArb, op: opArb, deleting: fc.boolean(), image_digest: fc.constantFrom('sha256:a', 'sha256:b'), volumes: fc.subarray(['v1', 'v2', 'v3']) })
  .chain((w) => fc.integer({ min: w.op?.generation ?? 1, max: 10 }).map((generation) => ({ ...w, generation })));
const localArb: fc.Arbitrary<LocalInstance> = fc.record({
  prepared: fc.boolean(), image_digest: fc.constantFrom('sha256:a', 'sha256:b', null), prepared_for: fc.integer({ min: 0, max: 9 }),
  running: fc.boolean(), frozen: fc.boolean(), suspended: fc.boolean(), op_done: fc.integer({ min: 0, max: 9 }),
  saved: fc.subarray(['resize']), attached: fc.subarray(['v1', 'v2', 'v4']),
}).map((l) => ({ ...l, op_steps: { generation: 0, done: [] as Step['do'][] } })).map((l) => (l.prepared ? { ...l, frozen: l.frozen && l.running, suspended: l.suspended && !l.frozen } : { ...EMPTY_LOCAL, op_done: l.op_done, prepared_for: l.prepared_for }));

describe('server plan: volumes', () => {
  it('attaches what is wanted and detaches what is not, detaches first, on a prepared instance whatever its power', () => {
    assert.deepEqual(planServer(want({ volumes: ['a', 'b'] }), { ...booted, attached: ['b', 'c'] }), [{ do: 'detach', volume: 'c' }, { do: 'attach', volume: 'a' }]);
    assert.deepEqual(planServer(want({ power: 'shutoff', volumes: ['a'] }), { ...booted, running: false }), [{ do: 'attach', volume: 'a' }]);
    assert.deepEqual(planServer(want({ volumes: ['a'] }), EMPTY_LOCAL), [{ do: 'prepare' }, { do: 'boot' }], 'a new instance gets its volumes in its config');
    assert.deepEqual(afterStep(EMPTY_LOCAL, { do: 'prepare' }, want({ volumes: ['a'] })).attached, ['a']);
  });

  it('property: the plan settles with exactly the wanted volumes attached', () => {
    fc.assert(fc.property(wantArb, localArb, (w, l) => {
      const { local } = drive(w, l, 16);
      if (w.deleting) return;
      assert.deepEqual([...local.attached].sort(), [...w.volumes].sort(), JSON.stringify({ w, l, local }));
    }), { numRuns: 1000 });
  });
});

describe('server plan: properties', () => {
  it('from any local state, planning again after every step reaches what is wanted within a few steps', () => {
    fc.assert(fc.property(wantArb, localArb, (w, l) => {
      const { local } = drive(w, l, 12);
      assert.deepEqual(planServer(w, local), []);
      if (w.deleting) {
        assert.equal(local.prepared, false);
        return;
      }
      assert.equal(powerOf(local), POWER[w.power], JSON.stringify({ w, l, local }));
      if (w.op) assert.ok(local.op_done >= w.op.generation || l.op_done >= w.op.generation, 'the op is carried out');
      if (local.saved.includes('resize')) assert.equal(w.op?.kind, 'resize', 'a saved disk is kept only while a resize waits for confirm or revert');
      if (w.op?.kind === 'resize' && l.prepared && l.op_done < w.op.generation) assert.ok(local.saved.includes('resize'), 'a resize keeps the disk it started from');
    }), { numRuns: 2000 });
  });

  it('an agent that dies after any step, before saving it, still reaches what is wanted', () => {
    fc.assert(fc.property(wantArb, localArb, fc.nat(6), (w, l, crash) => {
      const straight = drive(w, l);
      const crashed = drive(w, l, 24, crash);
      assert.equal(powerOf(crashed.local), powerOf(straight.local), JSON.stringify({ w, l, crash, crashed, straight }));
      assert.equal(crashed.local.op_done, straight.local.op_done);
      assert.equal(crashed.local.prepared, straight.local.prepared);
    }), { numRuns: 2000 });
  });

  it('a rebuild prepares exactly one new disk; nothing else ever destroys one unless deleting', () => {
    fc.assert(fc.property(wantArb, localArb, (w, l) => {
      const { steps } = drive(w, l);
      const destroys = steps.filter((s) => s.do === 'destroy').length;
      if (w.deleting) return;
      const rebuilding = w.op?.kind === 'rebuild' && l.prepared && l.prepared_for < w.op.generation && l.op_done < w.op.generation;
      assert.equal(destroys, rebuilding ? 1 : 0, JSON.stringify({ w, l, steps }));
      assert.ok(steps.filter((s) => s.do === 'prepare').length <= 1);
    }), { numRuns: 2000 });
  });
});
