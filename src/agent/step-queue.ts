/**
 * Steps of one task or server, run one at a time in the order they were queued; a step's failure
 * is logged and does not stop the ones after it.
 */
export class StepQueue {
  private chain: Promise<void> = Promise.resolve();

  constructor(private readonly onError: (e: unknown) => void) {}

  enqueue(step: () => Promise<void>): void {
    this.chain = this.chain.then(step).catch(this.onError);
  }

  /** Resolves once every queued step has run (also those queued while waiting). */
  async settled(): Promise<void> {
    let c: Promise<void>;
    do {
      c = this.chain;
      await c;
    } while (c !== this.chain);
  }
}
