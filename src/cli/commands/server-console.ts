import { defineCommand } from '../command.js';
import { interactive } from './task-exec.js';

export default defineCommand({
  path: ['server', 'console'],
  summary: 'Attach to a server\'s interactive console (a VM\'s serial console; a shell in a container). Ctrl-] leaves.',
  configure: (c) => c.argument('<server>', 'name or id'),
  parse: (a) => ({ ref: a[0] as string }),
  async run(i, ctx) {
    if (process.stdin.isTTY) process.stderr.write('Connected to the console; Ctrl-] leaves.\r\n');
    return interactive(ctx.client(), `/v1/servers/${encodeURIComponent(i.ref)}/console`, {}, { detachKey: 0x1d });
  },
});
