import { readFileSync } from 'node:fs';
import { collect, defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { parseFileRef, parseLabels } from '../service-flags.js';
import { afterAction, parseTimeout, waitOptions, type ServerJson } from '../servers.js';

export default defineCommand({
  path: ['server', 'create'],
  summary: 'Create a server from an image with a flavor: a VM (VM images, qemu) or a system container (container images, oci).',
  configure: (c) => waitOptions(c.argument('<name>', 'server name')
    .requiredOption('--flavor <flavor>', 'flavor name or id (`yun flavor ls`)')
    .requiredOption('--image <image>', 'image name, id or digest (`yun image ls`)')
    .option('--network <network>', 'network to attach (repeatable; the first carries the default route; "none" for none)', collect)
    .option('--key-name <keypair>', 'key pair whose public key the server gets (`yun keypair ls`)')
    .option('--user-data <file>', 'user data for cloud-init (a #! script runs on first boot); - reads standard input')
    .option('--property <key=value>', 'a property of the server (repeatable)', collect)
    .option('--driver <driver>', 'oci or qemu (default: what the image is)')
    .option('--volume <volume[:mount-path]>', 'attach this volume (repeatable; the server is placed on its node; containers mount it at the path, default /mnt/VOLUME)', collect)
    .option('--boot-from-volume <GiB>', 'boot from a new volume of this size made from the image (it outlives the server with --keep-root-volume)')
    .option('--keep-root-volume', 'with --boot-from-volume: keep the root volume when the server is deleted')
    .option('--secret <spec>', 'give the server a secret at every boot: NAME or source=NAME,target=/run/secrets/F,uid=0,gid=0,mode=0400 (repeatable)', collect)
    .option('--config <spec>', 'give the server a config at every boot: NAME or source=NAME,target=/PATH,uid=0,gid=0,mode=0444 (repeatable)', collect)),
  parse: (a, o) => {
    const name = a[0] as string;
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/.test(name)) throw usage(`"${name}" is not a valid server name: letters, digits, _ . - ; starting with a letter or digit; at most 63`);
    const driver = o.driver as string | undefined;
    if (driver !== undefined && driver !== 'oci' && driver !== 'qemu') throw usage(`--driver must be oci or qemu, not "${driver}"`);
    let userData: string | undefined;
    if (o.userData !== undefined) {
      const file = String(o.userData);
      let bytes: Buffer;
      try {
        bytes = readFileSync(file === '-' ? 0 : file);
      } catch (e) {
        throw usage(`--user-data ${file} cannot be read: ${(e as Error).message}`);
      }
      if (bytes.length > 65535) throw usage(`--user-data ${file} is ${bytes.length} bytes; at most 65535 are allowed`);
      userData = bytes.toString('base64');
    }
    const volumes = ((o.volume as string[] | undefined) ?? []).map((v) => {
      const at = v.indexOf(':');
      return at < 0 ? { volume: v } : { volume: v.slice(0, at), mount_path: v.slice(at + 1) };
    });
    let bootVolume: Record<string, unknown> | undefined;
    if (o.bootFromVolume !== undefined) {
      const s = String(o.bootFromVolume);
      if (!/^\d+$/.test(s) || Number(s) < 1) throw usage(`--boot-from-volume must be a size in GiB (a whole number, at least 1), not "${s}"`);
      bootVolume = { size: Number(s), delete_on_termination: !o.keepRootVolume };
    } else if (o.keepRootVolume) throw usage('--keep-root-volume goes with --boot-from-volume');
    const body: Record<string, unknown> = {
      name, flavor: String(o.flavor), image: String(o.image),
      ...(o.network ? { networks: o.network } : {}),
      ...(o.keyName ? { key_name: String(o.keyName) } : {}),
      ...(userData !== undefined ? { user_data: userData } : {}),
      ...(o.property ? { metadata: parseLabels(o.property as string[]) } : {}),
      ...(driver ? { driver } : {}),
      ...(volumes.length ? { volumes } : {}),
      ...(bootVolume ? { boot_volume: bootVolume } : {}),
      ...(o.secret ? { secrets: (o.secret as string[]).map((x) => parseFileRef('secret', x)) } : {}),
      ...(o.config ? { configs: (o.config as string[]).map((x) => parseFileRef('config', x)) } : {}),
    };
    return { body, wait: Boolean(o.wait), json: Boolean(o.json), timeoutMs: parseTimeout(o) };
  },
  async run(i, ctx) {
    const s = (await ctx.client().request<ServerJson>('POST', '/v1/servers', { body: i.body })).body;
    return afterAction(ctx, s, i);
  },
});
