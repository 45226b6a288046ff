/**
 * The content-addressed image store of a node. Contract (implemented in image-store.ts):
 *
 *   DIR/blobs/sha256/<hex>     every blob (manifests, configs, layers), verified on the way in
 *   DIR/rootfs/<hex>/          an image's root file system (all layers applied), made on demand,
 *                              read-only for tasks (an overlay lower shared by every task of it)
 *
 * Image *names* live in the manager's store (kind `image`); a node's store only holds content.
 */
import type { ImageRecord } from './oci.js';

export interface ImportProgress {
  (event: { phase: 'blob' | 'unpack' | 'verify'; digest?: string; done: number; total?: number; message?: string }): void;
}

export interface ImageStoreApi {
  readonly root: string;
  hasBlob(digest: string): boolean;
  blobPath(digest: string): string;
  /** Read a blob fully (manifests and configs). */
  readBlob(digest: string): Promise<Buffer>;
  /** Store a blob from a stream, verifying `expected` if given; atomic. Throws a YunError naming the digest on mismatch. */
  putBlob(source: NodeJS.ReadableStream | Buffer, expected?: { digest?: string; size?: number }): Promise<{ digest: string; size: number }>;
  /** Import a `docker save` archive, an OCI image layout (directory or tar); auto-detected. Nothing half-imported remains on failure. */
  importArchive(path: string, progress?: ImportProgress, opts?: { repository?: string }): Promise<ImageRecord[]>;
  /** Make an image of a plain root file system (directory or tar, gzip allowed), like `docker import`. */
  importRootfs(path: string, opts: { name: string; cmd?: string[]; entrypoint?: string[]; env?: string[]; workdir?: string; user?: string }): Promise<ImageRecord>;
  /** Make a VM image of a disk (and a kernel and initrd for direct kernel boot). */
  importVmImage(files: { disk: string; kernel?: string; initrd?: string }, opts: { name: string; diskFormat: 'qcow2' | 'raw'; minDiskBytes?: number; minRamBytes?: number; cmdline?: string }): Promise<ImageRecord>;
  /** Parse an image whose blobs are all present. */
  image(manifestDigest: string): Promise<ImageRecord>;
  /** The image's root file system, made on first use (safe unpacking, whiteouts applied). */
  rootfs(manifestDigest: string): Promise<string>;
  /** Write the image as a `docker save` archive (for `docker load`), returning its path. */
  exportDockerArchive(manifestDigest: string, name: string): Promise<string>;
  /** Remove an image's root file system and the blobs no other kept image uses. */
  remove(manifestDigest: string, keep: string[]): Promise<void>;
}
