import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { YunError } from '../errors/errors.js';
import { ACTIONS, allowedActions, applyAction, applyReport, checkAction, failServer, serverStatus, type ServerAction } from './states.js';
import type { ServerData, VmState } from './server.js';

const flavor = (name: string, vcpus = 1, ram_mb = 512, disk_gb = 1) => ({ id: name, name, vcpus, ram_mb, disk_gb, ephemeral_gb: 0, swap_mb: 0, properties: {} });
const ctx = { now: '2026-12-07T10:00:00.000Z', request_id: 'req-1', user_id: 'u1' };

function server(over: Partial<ServerData> = {}): ServerData {
  return {
    flavor: flavor('m1.tiny'), image: { id: 'i', name: 'tinyvm:latest', digest: 'sha256:a', kind: 'vm', min_disk_bytes: 0, min_ram_bytes: 0 },
    driver: 'qemu', networks: [], key_name: null, public_keys: [], user_data_b64: null, metadata: {}, node_id: 'n1',
    vm_state: 'active', task_state: null, power_state: 'running', fault: null,
    desired: { power: 'active', generation: 1, op: null, deleting: false }, observed_generation: 1,
    old_flavor: null, resize_power: null, last_exit: null, launched_at: ctx.now, events: [], quota_usage: { instances: 1, cores: 1, ram: 512 },
    ...over,
  };
}

/** The agent carried out everything asked, and reports `power`. */
const done = (d: ServerData, power: ServerData['power_state']) => applyReport(d, { generation: d.desired.generation, power_state: power }, ctx.now) as ServerData;

describe('server states: examples', () => {
  it('status from vm_state and task_state, as Nova shows it', () => {
    assert.equal(serverStatus('building', 'scheduling'), 'BUILD');
    assert.equal(serverStatus('active', null), 'ACTIVE');
    assert.equal(serverStatus('active', 'powering-off'), 'ACTIVE');
    assert.equal(serverStatus('active', 'rebooting'), 'REBOOT');
    assert.equal(serverStatus('stopped', 'rebooting_hard'), 'HARD_REBOOT');
    assert.equal(serverStatus('resized', null), 'VERIFY_RESIZE');
    assert.equal(serverStatus('resized', 'resize_reverting'), 'REVERT_RESIZE');
    assert.equal(serverStatus('error', null), 'ERROR');
  });

  it('resume on ACTIVE is a 409 naming the state and the allowed ones', () => {
    assert.throws(() => checkAction('resume', 'vm1', server()), (e: unknown) => {
      assert.ok(e instanceof YunError);
      assert.equal(e.status, 409);
      assert.equal(e.code, 'YUN_INVALID_STATE');
      assert.match(e.detail, /^Cannot resume server "vm1": it is ACTIVE \(status ACTIVE, vm_state active, task_state none\); resume is allowed when it is SUSPENDED/);
      assert.deepEqual(e.extra.allowed_statuses, ['SUSPENDED']);
      assert.equal(e.extra.status, 'ACTIVE');
      return true;
    });
  });

  it('an action in progress blocks others, but never a delete', () => {
    const busy = applyAction(server(), 'stop', ctx);
    assert.equal(busy.task_state, 'powering-off');
    assert.throws(() => checkAction('start', 'vm1', busy), /task_state powering-off/);
    checkAction('delete', 'vm1', busy);
    assert.deepEqual(allowedActions(busy), ['delete']);
  });

  it('stop → SHUTOFF → start → ACTIVE; each completes on the agent\'s report of its generation', () => {
    let d = applyAction(server(), 'stop', ctx);
    assert.equal(d.desired.power, 'shutoff');
    assert.equal(d.desired.generation, 2);
    d = applyReport(d, { generation: 1, power_state: 'running' }, ctx.now) as ServerData;
    assert.equal(d.task_state, 'powering-off', 'an older generation completes nothing');
    d = done(d, 'shutdown');
    assert.equal(serverStatus(d.vm_state, d.task_state), 'SHUTOFF');
    assert.equal(d.events.at(-1)!.result, 'success');
    d = done(applyAction(d, 'start', ctx), 'running');
    assert.equal(serverStatus(d.vm_state, d.task_state), 'ACTIVE');
  });

  it('resize: VERIFY_RESIZE, then confirm keeps the new flavor, revert the old one', () => {
    const small = flavor('m1.small', 1, 2048, 20);
    const resized = done(applyAction(server(), 'resize', ctx, { flavor: small }), 'running');
    assert.equal(serverStatus(resized.vm_state, resized.task_state), 'VERIFY_RESIZE');
    assert.equal(resized.flavor.name, 'm1.small');
    assert.equal(resized.old_flavor!.name, 'm1.tiny');
    const confirmed = done(applyAction(resized, 'resize_confirm', ctx), 'running');
    assert.equal(serverStatus(confirmed.vm_state, confirmed.task_state), 'ACTIVE');
    assert.equal(confirmed.flavor.name, 'm1.small');
    assert.equal(confirmed.old_flavor, null);
    const reverted = done(applyAction(resized, 'resize_revert', ctx), 'running');
    assert.equal(serverStatus(reverted.vm_state, reverted.task_state), 'ACTIVE');
    assert.equal(reverted.flavor.name, 'm1.tiny');
    // A stopped server resized comes back stopped.
    const stopped = server({ vm_state: 'stopped', power_state: 'shutdown', desired: { power: 'shutoff', generation: 1, op: null, deleting: false } });
    const r2 = done(applyAction(stopped, 'resize', ctx, { flavor: small }), 'shutdown');
    assert.equal(r2.vm_state, 'resized');
    assert.equal(done(applyAction(r2, 'resize_confirm', ctx), 'shutdown').vm_state, 'stopped');
  });

  it('an instance that dies on its own is SHUTOFF, not ACTIVE, with how it ended', () => {
    const d = applyReport(server(), { generation: 1, power_state: 'crashed', exit: { exit_code: 137, signal: 'SIGKILL', error: 'qemu was killed by SIGKILL' } }, ctx.now) as ServerData;
    assert.equal(serverStatus(d.vm_state, d.task_state), 'SHUTOFF');
    assert.equal(d.desired.power, 'shutoff');
    assert.equal(d.desired.generation, 2, 'the agent is told to leave it off');
    assert.match(d.last_exit!.error!, /SIGKILL/);
    assert.equal(d.events.at(-1)!.action, 'crashed');
  });

  it('a fault is ERROR with the whole cause; delete completes when the agent has destroyed it', () => {
    const f = applyReport(server({ vm_state: 'building', task_state: 'spawning' }), { generation: 0, power_state: 'nostate', fault: { code: 'YUN_BUILD_FAILED', message: 'booting failed', details: 'qemu: could not open disk' } }, ctx.now) as ServerData;
    assert.equal(serverStatus(f.vm_state, f.task_state), 'ERROR');
    assert.equal(f.fault!.details, 'qemu: could not open disk');
    const del = applyAction(f, 'delete', ctx);
    assert.equal(applyReport(del, { generation: 0, power_state: 'nostate', destroyed: true }, ctx.now), 'delete');
    const nohost = failServer(server({ vm_state: 'building', task_state: 'scheduling', node_id: null }), { code: 'YUN_NO_VALID_HOST', message: 'No valid host was found', details: 'insufficient memory on 2 nodes' }, ctx.now);
    assert.equal(nohost.vm_state, 'error');
    assert.match(nohost.fault!.details, /2 nodes/);
  });
});

const vmArb = fc.constantFrom<VmState>('building', 'active', 'stopped', 'paused', 'suspended', 'resized', 'error');
const actionArb = fc.constantFrom(...(Object.keys(ACTIONS) as ServerAction[]));
const REST_POWER: Record<string, ServerData['power_state']> = { active: 'running', stopped: 'shutdown', paused: 'paused', suspended: 'suspended', resized: 'running', error: 'shutdown', building: 'nostate' };

describe('server states: properties', () => {
  it('an action is accepted exactly when its state allows it, and the agent\'s report of it finishes it', () => {
    fc.assert(fc.property(vmArb, actionArb, fc.boolean(), (vm, action, busy) => {
      const d = server({ vm_state: vm, task_state: busy ? 'rebooting' : null, power_state: REST_POWER[vm]!, old_flavor: vm === 'resized' ? flavor('m1.tiny') : null, resize_power: vm === 'resized' ? 'active' : null });
      const ok = allowedActions(d).includes(action);
      assert.equal(ok, action === 'delete' || (!busy && ACTIONS[action].from.includes(vm)));
      if (!ok) {
        assert.throws(() => checkAction(action, 's', d), (e: unknown) => e instanceof YunError && e.status === 409);
        return;
      }
      checkAction(action, 's', d);
      const next = applyAction(d, action, ctx, { flavor: flavor('m1.small'), image: d.image });
      assert.ok(next.desired.generation > d.desired.generation);
      if (action === 'delete') return;
      const power = next.desired.power === 'shutoff' ? 'shutdown' : next.desired.power === 'active' ? 'running' : next.desired.power;
      const after = done(next, power);
      assert.equal(after.task_state, null);
      assert.equal(after.vm_state === 'resized', action === 'resize');
      if (action !== 'resize') assert.equal(after.vm_state, { active: 'active', shutoff: 'stopped', paused: 'paused', suspended: 'suspended' }[next.desired.power]);
    }), { numRuns: 1000 });
  });
});
