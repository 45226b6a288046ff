/**
 * A small benchmark helper (used by bench/ and by hand): how long `driver.start` takes until the
 * task runs, over `n` sequential starts; each task is stopped and destroyed after its sample (not
 * timed). Works for any driver.
 */
import type { Driver, TaskConfig } from '../driver.js';

export interface LatencySummary {
  samples: number[];
  p50: number;
  p90: number;
  p99: number;
  min: number;
  max: number;
  mean: number;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export function summarize(samples: number[]): LatencySummary {
  const s = [...samples].sort((a, b) => a - b);
  return {
    samples,
    p50: percentile(s, 50),
    p90: percentile(s, 90),
    p99: percentile(s, 99),
    min: s[0] ?? NaN,
    max: s[s.length - 1] ?? NaN,
    mean: s.reduce((a, b) => a + b, 0) / (s.length || 1),
  };
}

/** Start `n` tasks one after the other (`config(i)` makes each), timing `start` in ms. */
export async function measureStartLatency(driver: Driver, config: (i: number) => TaskConfig, n: number, opts: { warmup?: number } = {}): Promise<LatencySummary> {
  const samples: number[] = [];
  const warmup = opts.warmup ?? 1;
  for (let i = 0; i < n + warmup; i++) {
    const cfg = config(i);
    const t0 = performance.now();
    const h = await driver.start(cfg);
    const took = performance.now() - t0;
    try {
      if (i >= warmup) samples.push(took);
    } finally {
      await driver.stop(h, 0).catch(() => undefined);
      await driver.destroy(h);
    }
  }
  return summarize(samples);
}
