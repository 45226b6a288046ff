import type WebSocket from 'ws';
import type { Channel } from './protocol.js';

/** A channel over a WebSocket (JSON text frames). */
export function wsChannel<Out, In>(ws: WebSocket): Channel<Out, In> {
  const ch: Channel<Out, In> = {
    get open() {
      return ws.readyState === ws.OPEN;
    },
    send(msg) {
      if (ws.readyState === ws.OPEN) ws.send(JSON.stringify(msg));
    },
    onMessage(fn) {
      ws.on('message', (data) => {
        let m: In;
        try {
          m = JSON.parse(data.toString()) as In;
        } catch {
          ws.close(1003, 'malformed message');
          return;
        }
        fn(m);
      });
    },
    onClose(fn) {
      ws.on('close', (code, reason) => fn(`${code}${reason.length ? ` ${reason.toString()}` : ''}`));
      ws.on('error', () => undefined);
    },
    close(why = 'closed') {
      ws.close(1000, why.slice(0, 120));
    },
  };
  return ch;
}
