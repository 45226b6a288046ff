/**
 * A node's volume files: `<agent>/volumes/<id>/disk.raw` (sparse) and its snapshots
 * `<agent>/volumes/<id>/snapshots/<snapshot>.raw`. Every file is made under a `.tmp` name and
 * renamed once complete, so a step cut short by a crash leaves nothing that looks done.
 */
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { ImageInfo } from '../drivers/driver.js';
import { findOnPath, runCommand } from '../drivers/oci/host.js';

export const VOLUME_FILE = 'disk.raw';

export interface VolumeMakeSpec {
  id: string;
  size_bytes: number;
  /** ext4 label (at most 16 characters). */
  label: string;
  from:
    | { kind: 'blank' }
    | { kind: 'snapshot'; file: string; content: 'ext4' | 'disk' }
    | { kind: 'image'; image: ImageInfo };
}

async function run(tool: string, args: string[], what: string, pkg: string, timeoutMs = 600_000): Promise<string> {
  const bin = await findOnPath(tool);
  if (!bin) throw new Error(`${what} needs ${tool}, which is not installed on this node (Debian package ${pkg})`);
  const r = await runCommand(bin, args, { timeoutMs });
  if (r.code !== 0) throw new Error(`could not ${what}: ${tool} failed: ${String(r.stderr).trim() || `exit ${r.code}`}`);
  return String(r.stdout);
}

async function sizeOf(path: string): Promise<number> {
  return (await stat(path)).size;
}

async function truncateTo(path: string, bytes: number): Promise<void> {
  const f = await open(path, 'r+');
  try {
    if ((await f.stat()).size < bytes) await f.truncate(bytes);
  } finally {
    await f.close();
  }
}

/** A sparse copy (reflinks where the file system has them): a 1 GiB volume with 1 MiB written copies 1 MiB. */
export async function sparseCopy(from: string, to: string): Promise<void> {
  await run('cp', ['--sparse=always', '--reflink=auto', from, to], 'copy the volume', 'coreutils');
}

/** Grow an ext4 file system in a file that nothing mounts (after the file grew). */
async function growFs(path: string): Promise<void> {
  await run('e2fsck', ['-f', '-p', path], 'check the volume\'s file system before growing it', 'e2fsprogs').catch(() => undefined);
  await run('resize2fs', [path], 'grow the volume\'s file system', 'e2fsprogs');
}

export class VolumeFiles {
  constructor(readonly root: string) {}

  dir(id: string): string {
    return join(this.root, id);
  }

  file(id: string): string {
    return join(this.dir(id), VOLUME_FILE);
  }

  snapshotFile(volumeId: string, snapshotId: string): string {
    return join(this.dir(volumeId), 'snapshots', `${snapshotId}.raw`);
  }

  /** Make the volume's file; returns what is on it. */
  async make(spec: VolumeMakeSpec, progress: (m: string) => void): Promise<'ext4' | 'disk'> {
    await mkdir(this.dir(spec.id), { recursive: true, mode: 0o700 });
    const final = this.file(spec.id);
    const tmp = `${final}.tmp`;
    await rm(tmp, { force: true });
    let content: 'ext4' | 'disk';
    const f = spec.from;
    if (f.kind === 'blank') {
      const h = await open(tmp, 'w');
      await h.truncate(spec.size_bytes);
      await h.close();
      progress('making an ext4 file system');
      await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-L', spec.label, '-E', 'nodiscard', tmp], 'make the volume\'s file system', 'e2fsprogs');
      content = 'ext4';
    } else if (f.kind === 'snapshot') {
      progress('copying the snapshot');
      await sparseCopy(f.file, tmp);
      content = f.content;
      if ((await sizeOf(tmp)) < spec.size_bytes) {
        await truncateTo(tmp, spec.size_bytes);
        if (content === 'ext4') await growFs(tmp);
      }
    } else if (f.image.kind === 'vm') {
      const vm = f.image.vm!;
      progress(`writing image ${f.image.ref} to the volume`);
      const info = JSON.parse(await run('qemu-img', ['info', '--output=json', '-f', vm.disk_format, vm.disk], 'read the image\'s disk', 'qemu-utils')) as { 'virtual-size': number };
      if (info['virtual-size'] > spec.size_bytes) throw new Error(`image ${f.image.ref}'s disk is ${info['virtual-size']} bytes, more than the volume's ${spec.size_bytes}: make the volume larger`);
      await run('qemu-img', ['convert', '-q', '-f', vm.disk_format, '-O', 'raw', '-S', '4k', vm.disk, tmp], 'write the image to the volume', 'qemu-utils');
      await truncateTo(tmp, spec.size_bytes);
      content = 'disk';
    } else {
      progress(`writing image ${f.image.ref}'s file system to the volume`);
      const h = await open(tmp, 'w');
      await h.truncate(spec.size_bytes);
      await h.close();
      await run('mke2fs', ['-q', '-F', '-t', 'ext4', '-L', spec.label, '-E', 'nodiscard', '-d', f.image.rootfs, tmp], 'make the volume\'s file system from the image', 'e2fsprogs');
      content = 'ext4';
    }
    await rename(tmp, final);
    return content;
  }

  /** Grow the file to `bytes` (never shrinks); an unmounted ext4 grows with it (`grow_fs`). */
  async extend(id: string, bytes: number, growFsToo: boolean): Promise<void> {
    await truncateTo(this.file(id), bytes);
    if (growFsToo) await growFs(this.file(id));
  }

  async size(id: string): Promise<number> {
    return sizeOf(this.file(id)).catch(() => 0);
  }

  async snapshot(volumeId: string, snapshotId: string, copy: (fn: () => Promise<void>) => Promise<void>): Promise<void> {
    const to = this.snapshotFile(volumeId, snapshotId);
    await mkdir(join(this.dir(volumeId), 'snapshots'), { recursive: true, mode: 0o700 });
    await rm(`${to}.tmp`, { force: true });
    await copy(() => sparseCopy(this.file(volumeId), `${to}.tmp`));
    await rename(`${to}.tmp`, to);
  }

  async dropSnapshot(volumeId: string, snapshotId: string): Promise<void> {
    await rm(this.snapshotFile(volumeId, snapshotId), { force: true });
  }

  /** The volume's data goes (its record, beside it, stays until the manager forgets the volume). */
  async destroy(id: string): Promise<void> {
    await rm(join(this.dir(id), 'snapshots'), { recursive: true, force: true });
    await rm(`${this.file(id)}.tmp`, { force: true });
    await rm(this.file(id), { force: true });
  }
}
