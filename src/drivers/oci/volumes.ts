/**
 * Volumes of system containers (oci servers). A volume is an ext4 file system in a raw file: the
 * node mounts it (a loop device) under the container's share directory `DIR/vols/<id>`, and the
 * container sees it at its mount path. The share directory is a shared mount, bind-mounted into
 * the container (`/run/yun-volumes`) as its slave, so a volume mounted on the node while the
 * container runs appears inside at once; a bind from there to its mount path is then made inside
 * the container's mount namespace (nsenter and a static busybox kept in the share directory).
 */
import { copyFile, mkdir, readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { DriverError, type VolumeDisk } from '../driver.js';
import { isMountPoint, runCommand, unmount } from './host.js';
import { findStaticBusybox } from './busybox-rootfs.js';

export const VOLS_DIR = 'vols';
/** Where the share directory is inside the container. */
export const VOLS_MOUNT = '/run/yun-volumes';
/** A static busybox (named so: it picks its applet from its own name, else from its first argument). */
const BUSYBOX = '.yun-bin/busybox';

async function run(bin: string, args: string[], what: string, timeoutMs = 60_000): Promise<string> {
  const r = await runCommand(bin, args, { timeoutMs }).catch((e: Error) => ({ code: 1, stdout: '', stderr: e.message }));
  if (r.code !== 0) throw new DriverError(`could not ${what}: ${bin} ${args.join(' ')}: ${String(r.stderr).trim() || `exit ${r.code}`}`, false);
  return String(r.stdout);
}

/** The share directory of a container, a shared mount point (made once). */
export async function ensureShare(dir: string): Promise<string> {
  const share = join(dir, VOLS_DIR);
  await mkdir(share, { recursive: true, mode: 0o755 });
  if (!(await isMountPoint(share))) {
    await run('mount', ['--bind', share, share], 'make the volume share directory');
    await run('mount', ['--make-shared', share], 'make the volume share directory shared');
  }
  const bb = findStaticBusybox();
  if (bb) {
    await mkdir(join(share, '.yun-bin'), { recursive: true, mode: 0o755 });
    await copyFile(bb, join(share, BUSYBOX)).catch(() => undefined);
  }
  return share;
}

/** Mount the volume's file system on the node (idempotent). */
export async function mountOnNode(dir: string, v: VolumeDisk): Promise<string> {
  if (v.content !== 'ext4') throw new DriverError(`volume ${v.id} holds a disk image, not a file system a container can mount: attach it to a VM (a qemu server), or use a blank volume`, false);
  const share = await ensureShare(dir);
  const at = join(share, v.id);
  await mkdir(at, { recursive: true });
  if (!(await isMountPoint(at))) await run('mount', ['-t', 'ext4', '-o', 'loop,rw', v.path, at], `mount volume ${v.id}`);
  return at;
}

export async function unmountFromNode(dir: string, id: string): Promise<void> {
  const at = join(dir, VOLS_DIR, id);
  if (await isMountPoint(at)) await unmount('umount', at);
  await rm(at, { recursive: true, force: true }).catch(() => undefined);
}

/** Everything under the share directory, and the share itself (the container is gone). */
export async function unmountShare(dir: string): Promise<void> {
  const share = join(dir, VOLS_DIR);
  const text = await readFile('/proc/self/mountinfo', 'utf8').catch(() => '');
  const under = text.split('\n').map((l) => l.split(' ')[4]).filter((p): p is string => !!p && p.startsWith(share + '/'));
  for (const p of under.sort((a, b) => b.length - a.length)) await unmount('umount', p);
  if (await isMountPoint(share)) await unmount('umount', share);
  await rm(share, { recursive: true, force: true }).catch(() => undefined);
}

/** A command inside the running container's mount namespace, with the share's busybox. */
async function inContainer(pid: number, script: string, args: string[], what: string): Promise<void> {
  await run('nsenter', ['-t', String(pid), '-m', '--', `${VOLS_MOUNT}/${BUSYBOX}`, 'sh', '-c', script, 'yun-volume', ...args], what, 30_000);
}

/**
 * A shell test: is "$1" a mount point? Read from the mount table of the container's PID 1 (same
 * mount namespace): its /proc belongs to its PID namespace, where nsenter's own process has no
 * /proc/self; and busybox builds may lack `mountpoint`.
 */
const IS_MOUNTED = `$bb awk -v t="$1" '$5 == t { f = 1 } END { exit !f }' /proc/1/mountinfo`;

/** Bind the (propagated) volume to its mount path inside the running container. */
export async function bindInside(pid: number, v: VolumeDisk): Promise<void> {
  const target = v.mount_path!;
  await inContainer(pid, `bb=${VOLS_MOUNT}/${BUSYBOX}; $bb mkdir -p "$1" && { ${IS_MOUNTED} || $bb mount --bind "${VOLS_MOUNT}/$2" "$1"; }`, [target, v.id], `mount volume ${v.id} at ${target} in the container`);
}

export async function unbindInside(pid: number, v: VolumeDisk): Promise<void> {
  const target = v.mount_path!;
  await inContainer(pid, `bb=${VOLS_MOUNT}/${BUSYBOX}; if ${IS_MOUNTED}; then $bb umount "$1"; fi`, [target], `unmount volume ${v.id} from ${target} in the container (is a process still using it?)`);
}

/** The loop device the node mounted a volume's file with. */
async function loopOf(path: string): Promise<string | undefined> {
  const out = await run('losetup', ['-j', path], 'find the volume\'s loop device');
  return /^(\/dev\/loop\d+):/m.exec(out)?.[1];
}

/** The file grew: the loop device learns its new size, and the mounted ext4 grows online. */
export async function growMounted(dir: string, v: VolumeDisk): Promise<void> {
  if (!(await isMountPoint(join(dir, VOLS_DIR, v.id)))) return;
  const loop = await loopOf(v.path);
  if (!loop) return;
  await run('losetup', ['-c', loop], 'tell the loop device the volume grew');
  await run('resize2fs', [loop], 'grow the volume\'s file system', 300_000);
}

/** Freeze the file system on the node (writes flushed, new ones held) for the copy. */
export async function withFrozenFs<T>(dir: string, id: string, fn: () => Promise<T>): Promise<T> {
  const at = join(dir, VOLS_DIR, id);
  if (!(await isMountPoint(at))) return fn();
  await run('fsfreeze', ['-f', at], 'freeze the volume\'s file system');
  try {
    return await fn();
  } finally {
    await run('fsfreeze', ['-u', at], 'thaw the volume\'s file system');
  }
}

/** Boot from a volume: its file system (the image's root file system in ext4) is the container's root. */
export async function mountRootVolume(v: VolumeDisk, rootfs: string): Promise<void> {
  if (v.content !== 'ext4') throw new DriverError(`volume ${v.id} holds a VM disk, which a container cannot boot from: boot it on qemu, or make the volume from a container image`, false);
  await mkdir(rootfs, { recursive: true });
  if (!(await isMountPoint(rootfs))) await run('mount', ['-t', 'ext4', '-o', 'loop,rw', v.path, rootfs], `mount the root volume ${v.id}`);
}
