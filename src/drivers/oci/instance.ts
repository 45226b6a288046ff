/**
 * System containers (servers on the oci driver): the seed a container gets in place of a VM's
 * cloud-init disk, and the small init that handles it. The seed is a directory bind-mounted
 * read-only at /run/cidata: `instance-id`, `hostname`, `user-data`; SSH keys go straight into the
 * root disk (/root/.ssh/authorized_keys), as cloud-init would put them.
 */
import { chmod, mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { InstanceSpec } from '../driver.js';

/** In the task dir: the seed files. */
export const SEED_DIR = 'cidata';
/** In the container. */
export const SEED_MOUNT = '/run/cidata';

/**
 * The init of a system container (run by tini as `sh -c SYSTEM_INIT yun-init [COMMAND…]`): the
 * same marker lines as the tinyvm guest, the user data (a `#!` script) once per instance, then
 * the command if there is one, else it stays up until stopped (SIGTERM ends it cleanly).
 */
export const SYSTEM_INIT = `
up=$(cut -d' ' -f1 /proc/uptime 2>/dev/null)
echo "YUN-GUEST init reached uptime=\${up:-?}"
id=$(cat ${SEED_MOUNT}/instance-id 2>/dev/null)
echo "YUN-GUEST seed instance-id=\${id} hostname=$(cat /proc/sys/kernel/hostname) keys=$(grep -c . /root/.ssh/authorized_keys 2>/dev/null || echo 0)"
if [ -s ${SEED_MOUNT}/user-data ]; then
  if [ "$(head -c 2 ${SEED_MOUNT}/user-data)" = '#!' ]; then
    sem=/var/lib/cloud/sem/user-data.$id
    if [ -e "$sem" ]; then
      echo "YUN-GUEST user-data skipped (already run for instance $id)"
    else
      mkdir -p /var/lib/cloud/sem && : > "$sem"
      echo "YUN-GUEST user-data started"
      cp ${SEED_MOUNT}/user-data /var/lib/cloud/user-data && chmod 700 /var/lib/cloud/user-data
      (/var/lib/cloud/user-data &)
    fi
  else
    echo "YUN-GUEST user-data ignored: only #! scripts are supported"
  fi
fi
echo "YUN-GUEST ready"
if [ $# -gt 0 ]; then exec "$@"; fi
trap 'echo "YUN-GUEST shutting down"; exit 0' TERM INT
while :; do sleep 3600 & wait $!; done
`;

/** Whether an image's command is only a shell (then a system container has nothing of its own to run). */
export function isShell(cmd: string[] | null | undefined): boolean {
  if (!cmd || cmd.length === 0) return true;
  return cmd.length === 1 && /^(\/bin\/|\/usr\/bin\/)?(sh|bash|ash|dash)$/.test(cmd[0]!);
}

/** Write the seed directory, and the SSH keys into the root disk (the overlay's upper layer). */
export async function writeSeed(seedDir: string, upper: string, inst: InstanceSpec): Promise<void> {
  await rm(seedDir, { recursive: true, force: true });
  await mkdir(seedDir, { recursive: true, mode: 0o755 });
  await writeFile(join(seedDir, 'instance-id'), inst.seed.instance_id + '\n', { mode: 0o644 });
  await writeFile(join(seedDir, 'hostname'), inst.seed.hostname + '\n', { mode: 0o644 });
  if (inst.seed.user_data_b64) await writeFile(join(seedDir, 'user-data'), Buffer.from(inst.seed.user_data_b64, 'base64'), { mode: 0o644 });
  if (inst.seed.public_keys.length) {
    const ssh = join(upper, 'root', '.ssh');
    await mkdir(ssh, { recursive: true, mode: 0o700 });
    await chmod(ssh, 0o700);
    await writeFile(join(ssh, 'authorized_keys'), inst.seed.public_keys.join('\n') + '\n', { mode: 0o600 });
  }
}
