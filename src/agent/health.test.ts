import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { HealthMonitor, START_PROBE_MS } from './health.js';
import type { HealthCheck } from '../services/spec.js';

const check = (o: Partial<HealthCheck> = {}): HealthCheck => ({ type: 'tcp', interval_ms: 30_000, timeout_ms: 1000, retries: 3, start_period_ms: 0, ...o } as HealthCheck);

/** Runs the monitor on mocked timers and answers the probe with `answers` in turn (the last repeats). */
async function run(c: HealthCheck, answers: boolean[], forMs: number) {
  mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 });
  const changes: { at: number; h: string }[] = [];
  let probes = 0;
  const m = new HealthMonitor(c, async () => ({ ok: answers[Math.min(probes++, answers.length - 1)]!, detail: 'x' }), (h) => changes.push({ at: Date.now(), h }), 0);
  try {
    m.start();
    for (let t = 0; t < forMs; t += 100) { mock.timers.tick(100); await new Promise((r) => setImmediate(r)); }
  } finally {
    m.stop();
    mock.timers.reset();
  }
  return { changes, probes };
}

test('a new task is probed every second until it first passes, not one interval later', async () => {
  const r = await run(check(), [false, false, true], 5000);
  assert.deepEqual(r.changes, [{ at: 3 * START_PROBE_MS, h: 'healthy' }]);
});

test('once healthy, probes run every interval', async () => {
  const r = await run(check({ interval_ms: 2000 }), [true], 7000);
  assert.equal(r.changes.length, 1);
  assert.equal(r.probes, 1 + 3); // at 1 s, then 3, 5, 7 s
});

test('while starting, quick probes count a failure once per interval only', async () => {
  const r = await run(check({ interval_ms: 3000, retries: 2 }), [false], 10_000);
  // Failures are counted at 3 s and 6 s, never after only 2 s of one-second probes.
  assert.deepEqual(r.changes.map((c) => c.h), ['unhealthy']);
  assert.equal(r.changes[0]!.at, 6000);
});
