/**
 * VM images in the content store, as OCI artifacts: an image manifest whose config has the media
 * type below (the disk format, its virtual size, minimum disk and RAM, a kernel command line) and
 * whose layers are the disk and, for direct kernel boot, a kernel and an initrd. So VM images are
 * stored, named, distributed to nodes blob by blob (each verified) and removed like container
 * images.
 */
import { open } from 'node:fs/promises';
import { YunError } from '../errors/errors.js';

const invalid = (detail: string, hint?: string) => new YunError('YUN_IMAGE_INVALID', detail, hint ? { hint } : {});

export const VM_MT = {
  config: 'application/vnd.yunstack.vm.config.v1+json',
  qcow2: 'application/vnd.yunstack.vm.disk.qcow2',
  raw: 'application/vnd.yunstack.vm.disk.raw',
  kernel: 'application/vnd.yunstack.vm.kernel',
  initrd: 'application/vnd.yunstack.vm.initrd',
} as const;

export type DiskFormat = 'qcow2' | 'raw';

/** The config blob of a VM image. */
export interface VmConfig {
  architecture: 'amd64';
  os: 'linux';
  created: string;
  disk_format: DiskFormat;
  /** The disk as the guest sees it (a qcow2's virtual size; a raw file's size). */
  virtual_size: number;
  min_disk_bytes: number;
  min_ram_bytes: number;
  /** Direct kernel boot: the kernel command line. */
  cmdline: string | null;
}

const QCOW2_MAGIC = 0x514649fb; // 'QFI\xfb'

/**
 * Check a disk file against the format it is said to have, and read its virtual size. A qcow2 must
 * not name a backing file (it would make the node read a file of the uploader's choosing), and a
 * disk said to be raw must not be a qcow2 (qemu would be told to treat a qcow2 header as data).
 */
export async function probeDisk(path: string, format: DiskFormat): Promise<{ virtual_size: number }> {
  const f = await open(path, 'r');
  try {
    const size = (await f.stat()).size;
    const head = Buffer.alloc(72);
    await f.read(head, 0, 72, 0);
    const isQcow2 = size >= 72 && head.readUInt32BE(0) === QCOW2_MAGIC;
    if (format === 'raw') {
      if (isQcow2) throw invalid('The disk is a qcow2 image, but --disk-format says raw', 'Import it with --disk-format qcow2.');
      if (size === 0) throw invalid('The disk is empty');
      return { virtual_size: size };
    }
    if (!isQcow2) throw invalid('The disk is not a qcow2 image (no QFI\\xfb magic at its start), but --disk-format says qcow2', 'Check the file, or import it with --disk-format raw.');
    const version = head.readUInt32BE(4);
    if (version !== 2 && version !== 3) throw invalid(`The qcow2 disk has version ${version}; only versions 2 and 3 exist`);
    const backingOffset = head.readBigUInt64BE(8);
    if (backingOffset !== 0n) {
      throw invalid('The qcow2 disk names a backing file: an image must be whole', 'Flatten it first: qemu-img convert -O qcow2 IN OUT.');
    }
    const virtual = head.readBigUInt64BE(24);
    if (virtual === 0n || virtual > BigInt(Number.MAX_SAFE_INTEGER)) throw invalid(`The qcow2 disk has an invalid virtual size (${virtual} bytes)`);
    return { virtual_size: Number(virtual) };
  } finally {
    await f.close();
  }
}
