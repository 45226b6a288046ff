import { Agent as HttpAgent, request } from 'undici';
import type { ImageInfo } from '../drivers/driver.js';
import type { ImageStoreApi } from '../images/store.js';
import type { Manifest } from '../images/oci.js';
import { formatSize } from '../util/size.js';
import { VM_MT } from '../images/vm-image.js';

/** Fetches a blob from wherever this node gets images (its manager). */
export type BlobFetcher = (digest: string) => Promise<NodeJS.ReadableStream>;

/**
 * Images on this node: present in its store, or fetched from the manager (blob by blob, each
 * verified) before a task that needs them starts. Concurrent tasks of one image share one fetch.
 */
export class NodeImages {
  private inflight = new Map<string, Promise<ImageInfo>>();

  constructor(readonly store: ImageStoreApi, private fetchBlob?: BlobFetcher) {}

  ensure(ref: string, digest: string, progress: (message: string) => void): Promise<ImageInfo> {
    let p = this.inflight.get(digest);
    if (!p) {
      p = this.fetchAndPrepare(ref, digest, progress).finally(() => this.inflight.delete(digest));
      this.inflight.set(digest, p);
    }
    return p;
  }

  private async get(digest: string, expectedSize?: number): Promise<void> {
    if (this.store.hasBlob(digest)) return;
    if (!this.fetchBlob) throw new Error(`blob ${digest} is not on this node and there is nowhere to fetch it from`);
    await this.store.putBlob(await this.fetchBlob(digest), { digest, ...(expectedSize !== undefined ? { size: expectedSize } : {}) });
  }

  private async fetchAndPrepare(ref: string, digest: string, progress: (message: string) => void): Promise<ImageInfo> {
    await this.get(digest);
    const manifest = JSON.parse((await this.store.readBlob(digest)).toString('utf8')) as Manifest;
    const blobs = [manifest.config, ...manifest.layers];
    const total = blobs.reduce((a, b) => a + b.size, 0);
    let done = 0;
    for (const b of blobs) {
      if (!this.store.hasBlob(b.digest)) {
        progress(`pulling image ${ref}: ${formatSize(done)} of ${formatSize(total)}`);
        await this.get(b.digest, b.size);
      }
      done += b.size;
    }
    const rec = await this.store.image(digest);
    if (rec.kind === 'vm' && rec.vm) {
      const layer = (mt: string) => rec.manifest.layers.find((l) => l.mediaType === mt);
      const disk = layer(VM_MT.qcow2) ?? layer(VM_MT.raw);
      if (!disk) throw new Error(`VM image ${ref} (${digest}) has no disk layer`);
      const kernel = layer(VM_MT.kernel);
      const initrd = layer(VM_MT.initrd);
      return {
        ref, digest, kind: 'vm', rootfs: '', config: { entrypoint: [], cmd: [], env: [], workdir: '', user: '' },
        vm: {
          disk: this.store.blobPath(disk.digest), disk_format: rec.vm.disk_format,
          ...(kernel ? { kernel: this.store.blobPath(kernel.digest) } : {}), ...(initrd ? { initrd: this.store.blobPath(initrd.digest) } : {}),
          ...(rec.vm.cmdline ? { cmdline: rec.vm.cmdline } : {}), min_disk_bytes: Math.max(rec.vm.min_disk_bytes, rec.vm.virtual_size), min_ram_bytes: rec.vm.min_ram_bytes,
        },
        exportDockerArchive: () => Promise.reject(new Error(`${ref} is a VM image: it has no docker archive`)),
      };
    }
    progress(`unpacking image ${ref}`);
    const rootfs = await this.store.rootfs(digest);
    const c = rec.config.config ?? {};
    return {
      ref, digest, kind: 'container', rootfs,
      config: { entrypoint: c.Entrypoint ?? [], cmd: c.Cmd ?? [], env: c.Env ?? [], workdir: c.WorkingDir ?? '', user: c.User ?? '' },
      exportDockerArchive: () => this.store.exportDockerArchive(digest, ref.includes(':') ? ref : `${ref}:latest`),
    };
  }
}

/** Fetch blobs from the manager over mutual TLS (the node certificate). */
export function managerBlobFetcher(managerUrl: string, tls: { ca: string; cert: string; key: string }): BlobFetcher {
  const dispatcher = new HttpAgent({ connect: { ca: tls.ca, cert: tls.cert, key: tls.key } });
  return async (digest) => {
    const r = await request(`${managerUrl}/v1/images/blobs/${digest}`, { dispatcher });
    if (r.statusCode !== 200) {
      const text = await r.body.text();
      let detail = text;
      try { detail = (JSON.parse(text) as { error: { detail: string } }).error.detail; } catch { /* not JSON */ }
      throw new Error(`the manager could not send blob ${digest} (HTTP ${r.statusCode}): ${detail}`);
    }
    return r.body;
  };
}
