import { defineCommand } from '../command.js';
import { afterVolume, volumeWaitOptions, waitInput } from '../volumes.js';

export default defineCommand({
  path: ['volume', 'attach'],
  summary: 'Attach a volume to a server on its node: a VM gets a disk at once (hot-plugged), a container a mount.',
  configure: (c) => volumeWaitOptions(c.argument('<volume>', 'name or id').argument('<server>', 'name or id')
    .option('--mount-path <path>', 'containers: where to mount it (default /mnt/VOLUME)')
    .option('--delete-on-termination', 'delete the volume when the server is deleted')),
  parse: (a, o) => ({ ref: a[0] as string, body: { action: 'attach', server: a[1] as string, ...(o.mountPath ? { mount_path: String(o.mountPath) } : {}), ...(o.deleteOnTermination ? { delete_on_termination: true } : {}) }, ...waitInput(o) }),
  async run(i, ctx) {
    const v = (await ctx.client().request<{ id: string }>('POST', `/v1/volumes/${encodeURIComponent(i.ref)}/actions`, { body: i.body })).body;
    return afterVolume(ctx, v, '/v1/volumes', i);
  },
});
