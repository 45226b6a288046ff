import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { afterVolume, parseSize, volumeWaitOptions, waitInput } from '../volumes.js';

export default defineCommand({
  path: ['volume', 'create'],
  summary: 'Create a volume on a node\'s disk: blank (an ext4 file system), from a snapshot, or from an image (bootable).',
  configure: (c) => volumeWaitOptions(c.argument('<name>', 'volume name')
    .option('--size <GiB>', 'size in GiB (default: the snapshot\'s, or what the image needs)')
    .option('--type <type>', 'volume type (`file`)')
    .option('--snapshot <snapshot>', 'make it from this snapshot (name or id)')
    .option('--image <image>', 'make it from this image (name, id or digest)')
    .option('--node <node>', 'put it on this node (default: the one with the most disk free)')
    .option('--description <text>', 'a description')),
  parse: (a, o) => {
    const name = a[0] as string;
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(name)) throw usage(`"${name}" is not a valid volume name: letters, digits, _ . - ; starting with a letter or digit; at most 63`);
    const body: Record<string, unknown> = {
      name,
      ...(o.size !== undefined ? { size: parseSize(o.size) } : {}),
      ...(o.type ? { type: String(o.type) } : {}),
      ...(o.snapshot ? { snapshot: String(o.snapshot) } : {}),
      ...(o.image ? { image: String(o.image) } : {}),
      ...(o.node ? { node: String(o.node) } : {}),
      ...(o.description ? { description: String(o.description) } : {}),
    };
    return { body, ...waitInput(o) };
  },
  async run(i, ctx) {
    const v = (await ctx.client().request<{ id: string }>('POST', '/v1/volumes', { body: i.body })).body;
    return afterVolume(ctx, v, '/v1/volumes', i);
  },
});
