import type { Change } from './store.js';

/**
 * The live side of a store's change feed, shared by every backend: listeners, delivery in commit
 * order, and `watch` (replay from a revision, then live, with nothing lost or repeated).
 */
export class Feed {
  private listeners = new Set<(changes: Change[]) => void>();
  /** Batches not yet delivered to the listeners, in commit order (see notify). */
  private undelivered: Change[][] = [];
  private notifying = false;

  /** How many listeners are attached (tests check that none is left behind). */
  get size(): number {
    return this.listeners.size;
  }

  /**
   * Deliver a batch's changes to every listener, batches in commit order. A write made from inside a
   * listener is queued and delivered once the current batch has reached every listener: delivering
   * it at once would let later listeners see it first and then skip the earlier batch as delivered.
   */
  notify(changes: Change[]): void {
    if (changes.length === 0) return;
    this.undelivered.push(changes);
    if (this.notifying) return;
    this.notifying = true;
    try {
      for (let cs = this.undelivered.shift(); cs; cs = this.undelivered.shift()) {
        for (const l of this.listeners) {
          try { l(cs); } catch { /* a listener's failure is its own */ }
        }
      }
    } finally {
      this.notifying = false;
    }
  }

  /**
   * Replay what was missed (through `since`, the backend's changesSince), then stream live changes.
   * The listener is attached before the replay read and revisions already delivered are skipped, so
   * nothing is lost or repeated. A failed replay (an expired revision, a callback that throws)
   * detaches it, or it would buffer every later change forever.
   */
  async watch(revision: number, fn: (changes: Change[]) => void, since: (rev: number, limit: number) => Promise<Change[]>): Promise<() => void> {
    let delivered = revision;
    const buffered: Change[][] = [];
    let replaying = true;
    const listener = (changes: Change[]): void => {
      if (replaying) { buffered.push(changes); return; }
      const fresh = changes.filter((c) => c.revision > delivered);
      if (fresh.length) { delivered = fresh[fresh.length - 1]!.revision; fn(fresh); }
    };
    this.listeners.add(listener);
    try {
      for (;;) {
        const past = await since(delivered, 5000);
        if (past.length === 0) break;
        delivered = past[past.length - 1]!.revision;
        fn(past);
      }
    } catch (e) {
      this.listeners.delete(listener);
      throw e;
    }
    replaying = false;
    for (const b of buffered) listener(b);
    return () => { this.listeners.delete(listener); };
  }

  clear(): void {
    this.listeners.clear();
  }
}
