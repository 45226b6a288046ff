import { createServer } from 'node:net';

/** Host ports for published targets of tasks on this node (dynamic unless host-mode published). */
export class PortAllocator {
  private used = new Set<number>();

  constructor(private bindAddress = '0.0.0.0') {}

  reserve(port: number): void {
    this.used.add(port);
  }

  release(port: number): void {
    this.used.delete(port);
  }

  /** A free port chosen by the kernel, never one handed out before and still in use. */
  async dynamic(): Promise<number> {
    for (let i = 0; i < 50; i++) {
      const port = await new Promise<number>((resolve, reject) => {
        const s = createServer();
        s.once('error', reject);
        s.listen(0, this.bindAddress, () => {
          const p = (s.address() as { port: number }).port;
          s.close(() => resolve(p));
        });
      });
      if (!this.used.has(port)) {
        this.used.add(port);
        return port;
      }
    }
    throw new Error('no free port found after 50 tries');
  }
}
