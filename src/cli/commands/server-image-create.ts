import { defineCommand } from '../command.js';
import { waitForImage } from '../images.js';
import { parseTimeout } from '../servers.js';

export default defineCommand({
  path: ['server', 'image-create'],
  summary: 'Make an image of a server\'s root disk (the server quiesced for the copy); boot new servers from it. Waits until the image is active (or killed), showing its status.',
  configure: (c) => c.argument('<server>', 'name or id').requiredOption('--name <image>', 'the new image\'s name (REPO[:TAG])')
    .option('--no-wait', 'return at once, the image saving (follow it with `yun image inspect`)')
    .option('--timeout <duration>', 'how long to wait', '30m')
    .option('--json', 'print the image as JSON'),
  parse: (a, o) => ({ ref: a[0] as string, name: String(o.name), wait: o.wait !== false, timeoutMs: parseTimeout(o), json: Boolean(o.json) }),
  async run(i, ctx) {
    const api = ctx.client();
    process.stderr.write(`making image ${i.name} of server ${i.ref}…\n`);
    let img = (await api.request<Record<string, unknown>>('POST', `/v1/servers/${encodeURIComponent(i.ref)}/image`, { body: { name: i.name } })).body;
    let code = 0;
    if (i.wait) ({ code, image: img } = await waitForImage(api, String(img.id), i.timeoutMs));
    if (i.json) ctx.out.json(img);
    else ctx.out.line(`${String(img.id)}\t${String(img.name)}\t${String(img.status)}`);
    return code;
  },
});
