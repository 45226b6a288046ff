/**
 * The node image store (contract in store.ts). On disk, under `root`:
 *
 *   blobs/sha256/<hex>   every blob, written to tmp/ while its sha256 is computed, then renamed
 *   rootfs/<hex>/        an image's root file system (manifest digest), built in tmp/ and renamed
 *   exports/<hex>-<n>.tar  docker save archives made for `docker load` (per manifest and name)
 *   tmp/                 work in progress (temp blobs, extracted archives, rootfs builds)
 *
 * Imports are all-or-nothing: blobs an import (or `atomically`) wrote are removed again if it fails,
 * unless they were in the store before or another running import uses them too.
 */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream, existsSync, mkdirSync, rmSync, unlinkSync } from 'node:fs';
import { chmod, lstat, mkdir, open, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { basename, join, resolve as resolvePath } from 'node:path';
import { type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as zlib from 'node:zlib';
import { create as tarCreate } from 'tar';
import { YunError } from '../errors/errors.js';
import { type BlobSink, DirSource, entryBody, invalidImage, isDirectory, TarSource } from './archive-source.js';
import { compressionOf, digestHex, digestMismatch, HashingStream, isDigest, sha256, sizeMismatch } from './digest.js';
import { checkConfig, importDockerSave, writeDockerArchive } from './docker-archive.js';
import { normalizeImageName, repositoryFromFileName } from './names.js';
import { importOciLayout } from './oci-layout.js';
import { MT, type ImageConfig, type ImageRecord, type Manifest } from './oci.js';
import type { ImageStoreApi, ImportProgress } from './store.js';
import { LayerScanner } from './scan.js';
import { readTar, TarFormatError } from './tar-stream.js';
import { layerName, RootfsBuilder, type LayerLabel } from './unpack.js';
import { probeDisk, VM_MT, type DiskFormat, type VmConfig } from './vm-image.js';

export interface ImageStoreOptions {
  /**
   * Unpack as root: set owners (lchown) and create device nodes. Default: whether this process runs
   * as root. `false` makes a device node in a layer an error (as for an unprivileged agent).
   */
  privileged?: boolean;
}

export interface ImportRootfsOptions {
  name: string;
  cmd?: string[];
  entrypoint?: string[];
  env?: string[];
  workdir?: string;
  user?: string;
}

/** PATH of images made by importRootfs when no env is given (Docker's default). */
export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Layers made by importRootfs: fast gzip (level 1 is ~2x faster than 6 and only a few % larger here). */
const GZIP_LEVEL = 1;

const rand = () => randomBytes(6).toString('hex');

/** Blobs one import wrote: removed by rollback unless another import uses them. */
class Transaction implements BlobSink {
  readonly created: string[] = [];
  private readonly pinned = new Set<string>();
  constructor(private readonly store: ImageStore) {}

  pin(hex: string): void {
    if (this.pinned.has(hex)) return;
    this.pinned.add(hex);
    this.store.pins.set(hex, (this.store.pins.get(hex) ?? 0) + 1);
  }

  putBlob(source: NodeJS.ReadableStream | Buffer, expected?: { digest?: string; size?: number; label?: string }): Promise<{ digest: string; size: number }> {
    return this.store.writeBlob(source, expected, this);
  }

  adoptFile(path: string, digest: string, size: number): Promise<void> {
    return this.store.place(path, digest, size, this).then(() => undefined);
  }

  blobPath(digest: string): string {
    return this.store.blobPath(digest);
  }

  private release(): void {
    for (const hex of this.pinned) {
      const n = (this.store.pins.get(hex) ?? 1) - 1;
      if (n <= 0) this.store.pins.delete(hex);
      else this.store.pins.set(hex, n);
    }
    this.pinned.clear();
  }

  commit(): void {
    this.release();
  }

  /** Synchronous checks and unlinks, so no other import can start using a blob in between. */
  rollback(): void {
    for (const hex of this.created) {
      if ((this.store.pins.get(hex) ?? 0) <= 1) {
        try {
          unlinkSync(join(this.store.blobsDir, hex));
        } catch {
          /* already gone */
        }
      }
    }
    this.release();
  }
}

/** The OCI-config view of a VM image (for lists and the API). */
function vmImageConfig(vm: VmConfig): ImageConfig {
  return { architecture: vm.architecture, os: vm.os, created: vm.created, rootfs: { type: 'layers', diff_ids: [] } };
}

export class ImageStore implements ImageStoreApi {
  readonly root: string;
  readonly blobsDir: string;
  readonly rootfsDir: string;
  readonly tmpDir: string;
  readonly exportsDir: string;
  readonly privileged: boolean;
  /** Blobs in use by running imports (hex → count). */
  readonly pins = new Map<string, number>();
  private readonly builds = new Map<string, Promise<string>>();
  private readonly exports = new Map<string, Promise<string>>();

  constructor(root: string, opts: ImageStoreOptions = {}) {
    this.root = resolvePath(root);
    this.blobsDir = join(this.root, 'blobs', 'sha256');
    this.rootfsDir = join(this.root, 'rootfs');
    this.tmpDir = join(this.root, 'tmp');
    this.exportsDir = join(this.root, 'exports');
    for (const d of [this.blobsDir, this.rootfsDir, this.tmpDir, this.exportsDir]) mkdirSync(d, { recursive: true, mode: 0o755 });
    this.privileged = opts.privileged ?? (typeof process.getuid === 'function' && process.getuid() === 0);
  }

  // ---- blobs ---------------------------------------------------------------------------------------

  blobPath(digest: string): string {
    return join(this.blobsDir, digestHex(digest));
  }

  hasBlob(digest: string): boolean {
    return isDigest(digest) && existsSync(this.blobPath(digest));
  }

  async readBlob(digest: string): Promise<Buffer> {
    const p = this.blobPath(digest);
    try {
      return await readFile(p);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw this.missing(digest, 'blob');
      throw e;
    }
  }

  private missing(digest: string, what: string): YunError {
    return new YunError('YUN_NOT_FOUND', `This node's image store has no ${what} ${digest}`, {
      hint: 'Import or pull the image again (`yun image import`, `yun image pull`).',
      extra: { kind: 'blob', digest },
    });
  }

  putBlob(source: NodeJS.ReadableStream | Buffer, expected?: { digest?: string; size?: number; label?: string }): Promise<{ digest: string; size: number }> {
    return this.writeBlob(source, expected);
  }

  /**
   * Run `fn` with a blob sink whose blobs are removed again if `fn` fails (unless they were in the
   * store already or another import uses them): for pulls that store several blobs.
   */
  async atomically<T>(fn: (sink: BlobSink) => Promise<T>): Promise<T> {
    const tx = new Transaction(this);
    try {
      const r = await fn(tx);
      tx.commit();
      return r;
    } catch (e) {
      tx.rollback();
      throw e;
    }
  }

  /** @internal Stream into tmp/ while hashing, verify, then `place`. */
  async writeBlob(source: NodeJS.ReadableStream | Buffer, expected: { digest?: string; size?: number; label?: string } = {}, tx?: Transaction): Promise<{ digest: string; size: number }> {
    if (expected.digest !== undefined) digestHex(expected.digest, 'expected digest');
    const what = expected.label ?? `blob ${expected.digest ?? ''}`.trim();
    const tmp = join(this.tmpDir, `blob-${rand()}`);
    let digest: string;
    let size: number;
    try {
      if (Buffer.isBuffer(source)) {
        digest = sha256(source);
        size = source.length;
        if (expected.size !== undefined && size !== expected.size) throw sizeMismatch(what, expected.size, size, { ...(expected.digest ? { digest: expected.digest } : {}) });
        if (expected.digest && digest !== expected.digest) throw digestMismatch(what, expected.digest, digest);
        await writeFile(tmp, source, { flag: 'wx', mode: 0o444 });
      } else {
        const limit = expected.size;
        const h = new HashingStream(limit !== undefined ? { limit: { size: limit, onExceed: (n) => sizeMismatch(what, limit, n, { ...(expected.digest ? { digest: expected.digest } : {}) }) } } : {});
        // Open first: a stream that opens lazily can create the file after a failed pipeline's
        // cleanup has run, leaving it behind in tmp/.
        // The stream closes the handle when it ends or is destroyed.
        const fh = await open(tmp, 'wx', 0o444);
        await pipeline(source as Readable, h, fh.createWriteStream());
        digest = h.digest();
        size = h.bytes;
        if (expected.size !== undefined && size !== expected.size) throw sizeMismatch(what, expected.size, size, { ...(expected.digest ? { digest: expected.digest } : {}) });
        if (expected.digest && digest !== expected.digest) throw digestMismatch(what, expected.digest, digest);
      }
      await this.place(tmp, digest, size, tx);
      return { digest, size };
    } finally {
      await rm(tmp, { force: true });
    }
  }

  /** @internal Move a verified file into the store (or drop it if the blob is there already). */
  async place(path: string, digest: string, _size: number, tx?: Transaction): Promise<boolean> {
    const hex = digestHex(digest);
    tx?.pin(hex);
    const dest = join(this.blobsDir, hex);
    if (existsSync(dest)) return false;
    await chmod(path, 0o444);
    await rename(path, dest);
    tx?.created.push(hex);
    return true;
  }

  // ---- imports -------------------------------------------------------------------------------------

  /**
   * Import a docker save archive or an OCI layout (directory, tar or tar.gz). `opts.repository` names
   * the repository for OCI ref names that are bare tags (default: from the file or directory name).
   */
  async importArchive(path: string, progress?: ImportProgress, opts: { repository?: string } = {}): Promise<ImageRecord[]> {
    const dir = isDirectory(path);
    const work = join(this.tmpDir, `import-${rand()}`);
    await mkdir(work, { mode: 0o700 });
    const tx = new Transaction(this);
    let src: DirSource | TarSource | undefined;
    try {
      src = dir ? new DirSource(path) : await TarSource.extract(path, work, progress);
      let records: ImageRecord[];
      if (src.has('manifest.json')) {
        records = await importDockerSave(src, tx, { privileged: this.privileged, progress });
      } else if (src.has('oci-layout') || src.has('index.json')) {
        const repository = opts.repository ?? repositoryFromFileName(basename(resolvePath(path)));
        records = await importOciLayout(src, tx, { repository, privileged: this.privileged, progress });
      } else {
        throw invalidImage(`${path} is neither a docker save archive (it has no manifest.json) nor an OCI image layout (it has no oci-layout and index.json)`);
      }
      tx.commit();
      return records;
    } catch (e) {
      tx.rollback();
      throw e;
    } finally {
      await src?.close();
      await rm(work, { recursive: true, force: true });
    }
  }

  async importRootfs(path: string, opts: ImportRootfsOptions): Promise<ImageRecord> {
    const name = normalizeImageName(opts.name);
    const dir = isDirectory(path);
    const work = join(this.tmpDir, `import-${rand()}`);
    await mkdir(work, { mode: 0o700 });
    const layerTmp = join(work, 'layer.tar.gz');
    const tx = new Transaction(this);
    try {
      const blob = new HashingStream();
      let diffId: string;
      if (dir) {
        const diff = new HashingStream();
        const top = (await readdir(path)).sort();
        const tarStream: AsyncIterable<Buffer> = top.length
          ? entryBody(tarCreate({ cwd: path, portable: false, strict: true, filter: (_p, st) => !('isSocket' in st) || st.isFile() || st.isDirectory() || st.isSymbolicLink() }, top) as never)
          : (async function* () { yield Buffer.alloc(1024); })();
        await pipeline(tarStream, diff, zlib.createGzip({ level: GZIP_LEVEL }), blob, createWriteStream(layerTmp, { mode: 0o600 }));
        diffId = diff.digest();
      } else {
        const comp = compressionOf(await firstBytes(path));
        if (comp === 'zstd') throw invalidImage(`${path} is zstd-compressed; use a tar or a tar.gz`);
        if (comp === 'gzip') await pipeline(createReadStream(path), blob, createWriteStream(layerTmp, { mode: 0o600 }));
        else await pipeline(createReadStream(path), zlib.createGzip({ level: GZIP_LEVEL }), blob, createWriteStream(layerTmp, { mode: 0o600 }));
        // Check it is a tar that unpacks safely before making an image of it, computing its diff_id on the way.
        const diff = new HashingStream();
        const scanner = new LayerScanner(this.privileged);
        scanner.beginLayer({ digest: blob.digest(), index: 1, count: 1 });
        try {
          await readTar(createReadStream(layerTmp), [zlib.createGunzip(), diff], (e) => scanner.entry(e));
        } catch (e) {
          if (e instanceof YunError) throw e;
          throw invalidImage(`${path} is not a ${comp === 'gzip' ? 'gzip-compressed ' : ''}tar archive of a root file system: ${(e as Error).message}`);
        }
        diffId = diff.digest();
      }
      const layer = { digest: blob.digest(), size: blob.bytes };
      await tx.adoptFile(layerTmp, layer.digest, layer.size);

      const now = new Date().toISOString();
      const config: ImageConfig = {
        created: now,
        architecture: 'amd64',
        os: 'linux',
        config: {
          Env: opts.env?.length ? opts.env : [DEFAULT_PATH],
          ...(opts.entrypoint?.length ? { Entrypoint: opts.entrypoint } : {}),
          ...(opts.cmd?.length ? { Cmd: opts.cmd } : {}),
          ...(opts.workdir ? { WorkingDir: opts.workdir } : {}),
          ...(opts.user ? { User: opts.user } : {}),
        },
        rootfs: { type: 'layers', diff_ids: [diffId] },
        history: [{ created: now, created_by: `yun image import-rootfs --name ${name}` }],
      };
      const cfg = await tx.putBlob(Buffer.from(JSON.stringify(config)));
      const manifest: Manifest = {
        schemaVersion: 2,
        mediaType: MT.ociManifest,
        config: { mediaType: MT.ociConfig, digest: cfg.digest, size: cfg.size },
        layers: [{ mediaType: MT.ociLayerGzip, digest: layer.digest, size: layer.size }],
      };
      const m = await tx.putBlob(Buffer.from(JSON.stringify(manifest)));
      tx.commit();
      return { names: [name], digest: m.digest, manifest, config, size: cfg.size + layer.size };
    } catch (e) {
      tx.rollback();
      throw e;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  }

  /**
   * Make a VM image of a disk (qcow2 or raw, checked against what it is said to be), and for
   * direct kernel boot a kernel and an initrd: each a blob, hashed on the way in; all or nothing.
   */
  async importVmImage(files: { disk: string; kernel?: string; initrd?: string }, opts: { name: string; diskFormat: DiskFormat; minDiskBytes?: number; minRamBytes?: number; cmdline?: string }): Promise<ImageRecord> {
    const name = normalizeImageName(opts.name);
    const { virtual_size } = await probeDisk(files.disk, opts.diskFormat);
    if ((files.kernel === undefined) !== (files.initrd === undefined)) throw invalidImage('A VM image for direct kernel boot needs both a kernel and an initrd');
    const tx = new Transaction(this);
    try {
      const layers: Manifest['layers'] = [];
      const add = async (path: string, mediaType: string, label: string) => {
        const b = await tx.putBlob(createReadStream(path), { label });
        layers.push({ mediaType, digest: b.digest, size: b.size });
      };
      await add(files.disk, opts.diskFormat === 'qcow2' ? VM_MT.qcow2 : VM_MT.raw, 'the disk');
      if (files.kernel) await add(files.kernel, VM_MT.kernel, 'the kernel');
      if (files.initrd) await add(files.initrd, VM_MT.initrd, 'the initrd');
      const vm: VmConfig = {
        architecture: 'amd64', os: 'linux', created: new Date().toISOString(), disk_format: opts.diskFormat, virtual_size,
        min_disk_bytes: opts.minDiskBytes ?? 0, min_ram_bytes: opts.minRamBytes ?? 0, cmdline: opts.cmdline ?? null,
      };
      const cfg = await tx.putBlob(Buffer.from(JSON.stringify(vm)));
      const manifest: Manifest = { schemaVersion: 2, mediaType: MT.ociManifest, config: { mediaType: VM_MT.config, digest: cfg.digest, size: cfg.size }, layers };
      const m = await tx.putBlob(Buffer.from(JSON.stringify(manifest)));
      tx.commit();
      return { names: [name], digest: m.digest, manifest, config: vmImageConfig(vm), size: cfg.size + layers.reduce((a, l) => a + l.size, 0), kind: 'vm', vm };
    } catch (e) {
      tx.rollback();
      throw e;
    }
  }

  // ---- images --------------------------------------------------------------------------------------

  async image(manifestDigest: string): Promise<ImageRecord> {
    digestHex(manifestDigest, 'image digest');
    if (!this.hasBlob(manifestDigest)) throw this.missing(manifestDigest, 'image');
    let manifest: Manifest;
    try {
      manifest = JSON.parse((await this.readBlob(manifestDigest)).toString('utf8')) as Manifest;
    } catch (e) {
      if (e instanceof YunError) throw e;
      throw invalidImage(`The blob ${manifestDigest} is not JSON, so not an image manifest`);
    }
    if (!manifest || manifest.schemaVersion !== 2 || !manifest.config || !Array.isArray(manifest.layers)) {
      throw invalidImage(`The blob ${manifestDigest} is not an image manifest (an index, or something else)`);
    }
    const absent = [manifest.config, ...manifest.layers].filter((d) => !this.hasBlob(d.digest)).map((d) => d.digest);
    if (absent.length) {
      throw new YunError('YUN_NOT_FOUND', `Image ${manifestDigest} is incomplete on this node: missing blob${absent.length > 1 ? 's' : ''} ${absent.join(', ')}`, {
        hint: 'Import or pull the image again.',
        extra: { kind: 'blob', digest: manifestDigest, missing: absent },
      });
    }
    let raw: unknown;
    try {
      raw = JSON.parse((await this.readBlob(manifest.config.digest)).toString('utf8'));
    } catch {
      throw invalidImage(`The config ${manifest.config.digest} of image ${manifestDigest} is not JSON`);
    }
    if (manifest.config.mediaType === VM_MT.config) {
      const vm = raw as VmConfig;
      return { names: [], digest: manifestDigest, manifest, config: vmImageConfig(vm), size: manifest.config.size + manifest.layers.reduce((a, l) => a + l.size, 0), kind: 'vm', vm };
    }
    const config = checkConfig(raw, `the config ${manifest.config.digest} of image ${manifestDigest}`);
    return { names: [], digest: manifestDigest, manifest, config, size: manifest.config.size + manifest.layers.reduce((a, l) => a + l.size, 0) };
  }

  async rootfs(manifestDigest: string, progress?: ImportProgress): Promise<string> {
    const hex = digestHex(manifestDigest, 'image digest');
    if ((await this.image(manifestDigest)).kind === 'vm') throw invalidImage(`Image ${manifestDigest} is a VM image: it has a disk, not a root file system`);
    const final = join(this.rootfsDir, hex);
    if (existsSync(final)) return final;
    let p = this.builds.get(hex);
    if (!p) {
      p = this.buildRootfs(manifestDigest, final, progress).finally(() => this.builds.delete(hex));
      this.builds.set(hex, p);
    }
    return p;
  }

  private async buildRootfs(digest: string, final: string, progress?: ImportProgress): Promise<string> {
    const rec = await this.image(digest);
    const diffIds = rec.config.rootfs.diff_ids;
    if (diffIds.length !== rec.manifest.layers.length) {
      throw invalidImage(`Image ${digest} has ${rec.manifest.layers.length} layers but its config lists ${diffIds.length} diff_ids`);
    }
    const tmp = join(this.tmpDir, `rootfs-${digest.slice(7, 19)}-${rand()}`);
    await mkdir(tmp, { mode: 0o755 });
    try {
      const b = new RootfsBuilder(tmp, { privileged: this.privileged });
      const count = rec.manifest.layers.length;
      for (const [i, l] of rec.manifest.layers.entries()) {
        const label: LayerLabel = { digest: l.digest, index: i + 1, count };
        progress?.({ phase: 'unpack', digest: l.digest, done: i, total: count, message: `unpacking ${layerName(label)}` });
        b.beginLayer(label);
        await this.applyLayer(b, label, diffIds[i]!);
      }
      await b.finish();
      progress?.({ phase: 'unpack', done: count, total: count, message: `unpacked ${count} layer${count === 1 ? '' : 's'}` });
      try {
        await rename(tmp, final);
      } catch (e) {
        // Another process made it meanwhile: use theirs.
        if (!existsSync(final)) throw e;
        await removeTree(tmp);
      }
      return final;
    } catch (e) {
      await removeTree(tmp);
      throw e;
    }
  }

  private async applyLayer(b: RootfsBuilder, label: LayerLabel, diffId: string): Promise<void> {
    const path = this.blobPath(label.digest);
    const comp = compressionOf(await firstBytes(path));
    const blobHash = new HashingStream();
    const diffHash = new HashingStream();
    const decompress: NodeJS.ReadWriteStream[] = [];
    if (comp === 'gzip') decompress.push(zlib.createGunzip());
    if (comp === 'zstd') {
      const z = (zlib as unknown as { createZstdDecompress?: () => NodeJS.ReadWriteStream }).createZstdDecompress;
      if (!z) throw invalidImage(`Cannot unpack ${layerName(label)}: it is zstd-compressed, and this Node.js has no zstd (Node.js 22.15 or later has)`);
      decompress.push(z());
    }
    try {
      await readTar(createReadStream(path, { highWaterMark: 1 << 20 }), [blobHash, ...decompress, diffHash], (e) => b.entry(e));
    } catch (e) {
      if (e instanceof YunError) throw e;
      if (e instanceof TarFormatError || (e as { code?: string }).code?.startsWith('Z_')) {
        throw invalidImage(`Cannot unpack ${layerName(label)}: ${(e as Error).message}`, { layer: label.digest });
      }
      throw e;
    }
    if (blobHash.digest() !== label.digest) {
      throw digestMismatch(`the stored blob of ${layerName(label)} is damaged`, label.digest, blobHash.digest(), { layer: label.digest });
    }
    if (diffHash.digest() !== diffId) {
      throw new YunError('YUN_DIGEST_MISMATCH', `${layerName(label)}: the image config lists diff_id ${diffId} but the layer's ${comp === 'none' ? '' : 'uncompressed '}content has digest ${diffHash.digest()}`, {
        extra: { layer: label.digest, expected: diffId, actual: diffHash.digest() },
      });
    }
  }

  // ---- export --------------------------------------------------------------------------------------

  async exportDockerArchive(manifestDigest: string, name: string): Promise<string> {
    const hex = digestHex(manifestDigest, 'image digest');
    const n = normalizeImageName(name);
    const out = join(this.exportsDir, `${hex}-${sha256(n).slice(7, 19)}.tar`);
    if (existsSync(out)) return out;
    let p = this.exports.get(out);
    if (!p) {
      p = (async () => {
        const rec = await this.image(manifestDigest);
        const tmp = join(this.tmpDir, `export-${rand()}.tar`);
        try {
          await writeDockerArchive(rec, n, (d) => this.blobPath(d), tmp, this.tmpDir);
          await rename(tmp, out);
        } finally {
          await rm(tmp, { force: true });
        }
        return out;
      })().finally(() => this.exports.delete(out));
      this.exports.set(out, p);
    }
    return p;
  }

  // ---- removal -------------------------------------------------------------------------------------

  async remove(manifestDigest: string, keep: string[]): Promise<void> {
    const hex = digestHex(manifestDigest, 'image digest');
    if (keep.includes(manifestDigest)) return;
    await this.builds.get(hex)?.catch(() => {});
    const final = join(this.rootfsDir, hex);
    if (existsSync(final)) {
      // Out of the way first, so a half-removed tree never looks like a root file system.
      const trash = join(this.tmpDir, `trash-${rand()}`);
      await rename(final, trash);
      await removeTree(trash);
    }
    for (const f of await readdir(this.exportsDir)) if (f.startsWith(`${hex}-`)) await rm(join(this.exportsDir, f), { force: true });

    const mine = await this.blobsOf(manifestDigest);
    const kept = new Set<string>();
    for (const k of keep) if (isDigest(k)) for (const b of await this.blobsOf(k)) kept.add(b);
    // Check and unlink without yielding, so a running import cannot start using a blob in between.
    for (const b of mine) {
      if (kept.has(b) || this.pins.has(b.slice(7))) continue;
      rmSync(this.blobPath(b), { force: true });
    }
  }

  /** The manifest and the blobs it references (an unreadable manifest: just itself). */
  private async blobsOf(manifestDigest: string): Promise<string[]> {
    if (!this.hasBlob(manifestDigest)) return [];
    try {
      const m = JSON.parse((await this.readBlob(manifestDigest)).toString('utf8')) as Partial<Manifest>;
      const refs = [m.config?.digest, ...(Array.isArray(m.layers) ? m.layers.map((l) => l?.digest) : [])].filter(isDigest);
      return [manifestDigest, ...refs];
    } catch {
      return [manifestDigest];
    }
  }

  /** Remove leftovers in tmp/ older than `olderThanMs` (e.g. from a crash); call at start-up. */
  async cleanTemp(olderThanMs = 60 * 60 * 1000): Promise<number> {
    let n = 0;
    const now = Date.now();
    for (const f of await readdir(this.tmpDir)) {
      const p = join(this.tmpDir, f);
      const st = await lstat(p).catch(() => undefined);
      if (!st || now - st.mtimeMs < olderThanMs) continue;
      await removeTree(p);
      n++;
    }
    return n;
  }
}

async function firstBytes(path: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of createReadStream(path, { start: 0, end: 3 })) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** rm -rf that also works without root on trees with read-only directories. */
export async function removeTree(path: string): Promise<void> {
  try {
    await rm(path, { recursive: true, force: true });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== 'EACCES' && code !== 'EPERM') throw e;
    await makeWritable(path);
    await rm(path, { recursive: true, force: true });
  }
}

async function makeWritable(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (!st?.isDirectory()) return;
  await chmod(path, 0o700).catch(() => {});
  for (const n of await readdir(path).catch(() => [] as string[])) await makeWritable(join(path, n));
}

