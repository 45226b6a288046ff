import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { assignPublishedPorts, PUBLISHED_RANGE } from './published-ports.js';
import type { PortConfig } from './spec.js';

const ingress = (target: number, published?: number, protocol: 'tcp' | 'udp' = 'tcp'): PortConfig => ({ protocol, target, mode: 'ingress', ...(published ? { published } : {}) });

test('an ingress port without a published port gets the lowest free one of the range', () => {
  assert.deepEqual(assignPublishedPorts([ingress(80)], new Set()), [ingress(80, 30000)]);
  assert.deepEqual(assignPublishedPorts([ingress(80), ingress(443)], new Set(['tcp/30000'])), [ingress(80, 30001), ingress(443, 30002)]);
  // udp and tcp are separate spaces
  assert.deepEqual(assignPublishedPorts([ingress(53, undefined, 'udp')], new Set(['tcp/30000'])), [ingress(53, 30000, 'udp')]);
});

test('asked-for ports stay, host-mode ports are untouched, and an update keeps its port', () => {
  const host: PortConfig = { protocol: 'tcp', target: 80, mode: 'host', published: 8080 };
  assert.deepEqual(assignPublishedPorts([ingress(80, 30000), ingress(81), host], new Set()), [ingress(80, 30000), ingress(81, 30001), host]);
  assert.deepEqual(assignPublishedPorts([ingress(80)], new Set(), [ingress(80, 31234)]), [ingress(80, 31234)]);
  // the old port is gone to another service meanwhile: a new one
  assert.deepEqual(assignPublishedPorts([ingress(80)], new Set(['tcp/31234']), [ingress(80, 31234)]), [ingress(80, 30000)]);
});

test('a full range answers undefined', () => {
  const all = new Set<string>();
  for (let p: number = PUBLISHED_RANGE.first; p <= PUBLISHED_RANGE.last; p++) all.add(`tcp/${p}`);
  assert.equal(assignPublishedPorts([ingress(80)], all), undefined);
});

test('property: every ingress port ends published, none twice, none taken', () => {
  fc.assert(fc.property(
    fc.array(fc.record({ target: fc.integer({ min: 1, max: 100 }), asked: fc.option(fc.integer({ min: 1, max: 40000 }), { nil: undefined }) }), { maxLength: 8 }),
    fc.array(fc.integer({ min: 29990, max: 30020 }), { maxLength: 20 }),
    (ports, takenPorts) => {
      const taken = new Set(takenPorts.map((p) => `tcp/${p}`));
      const asked = new Set<number>();
      const spec = ports.filter((p) => p.asked === undefined || (!asked.has(p.asked) && !taken.has(`tcp/${p.asked}`) && asked.add(p.asked))).map((p) => ingress(p.target, p.asked));
      const out = assignPublishedPorts(spec, taken)!;
      assert.equal(out.length, spec.length);
      const seen = new Set<number>();
      for (const [i, p] of out.entries()) {
        assert.ok(p.published);
        assert.ok(!seen.has(p.published!)); seen.add(p.published!);
        if (spec[i]!.published) assert.equal(p.published, spec[i]!.published);
        else assert.ok(!taken.has(`tcp/${p.published}`) && p.published! >= PUBLISHED_RANGE.first && p.published! <= PUBLISHED_RANGE.last);
      }
    },
  ));
});
