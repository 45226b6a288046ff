/**
 * The driver's side of the supervisor shim's start handshake (see ../process/shim.ts): write `go` on
 * the control socket (fd 3 of the shim), then read `started`, written by the shim's subshell once its
 * signal dispositions are the defaults, right before it execs the command.
 */
import type { Readable, Writable } from 'node:stream';

export function sendGo(sock: Writable | null | undefined, end = true): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!sock) return reject(new Error('no control channel to the task supervisor'));
    sock.once('error', reject);
    if (end) sock.end('go\n', () => resolve());
    else sock.write('go\n', (err) => (err ? reject(err) : resolve()));
  });
}

/** True once `started` was read; false on EOF, error or timeout. The socket is closed after. */
export function readStarted(sock: Readable | null | undefined, ms: number): Promise<boolean> {
  return new Promise((resolve) => {
    if (!sock) return resolve(false);
    let buf = '';
    let finished = false;
    const done = (ok: boolean) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      sock.removeAllListeners('data');
      sock.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), ms);
    sock.on('data', (b: Buffer) => {
      buf += b.toString();
      if (buf.includes('started\n')) done(true);
    });
    sock.once('end', () => done(buf.includes('started\n')));
    sock.once('close', () => done(buf.includes('started\n')));
    sock.once('error', () => done(false));
  });
}
