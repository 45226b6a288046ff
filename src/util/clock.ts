/** Injected time, so tests can run fast and replay failures (DESIGN.md, convention 7). */
export interface Clock {
  now(): number;
  iso(): string;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  iso: () => new Date().toISOString(),
};
