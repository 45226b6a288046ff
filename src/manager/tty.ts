import type { WebSocket } from 'ws';
import type { TtySession } from '../dispatcher/dispatcher.js';

/**
 * Pipe a WebSocket to a terminal session (exec -it, a server console): binary frames are input,
 * a text frame {"resize":{rows,cols}} resizes; the session's end closes the socket.
 */
export function pipeTty(socket: WebSocket, open: () => TtySession): void {
  let tty: TtySession;
  try {
    tty = open();
  } catch (e) {
    socket.send(JSON.stringify({ exit_code: -1, error: (e as Error).message }));
    socket.close(1011, 'failed');
    return;
  }
  socket.on('message', (data: Buffer, isBinary: boolean) => {
    if (isBinary) { tty.input(data); return; }
    try {
      const m = JSON.parse(data.toString()) as { resize?: { rows: number; cols: number } };
      if (m.resize) tty.resize(m.resize.rows, m.resize.cols);
    } catch { /* ignore malformed control frames */ }
  });
  socket.on('close', () => tty.close());
}
