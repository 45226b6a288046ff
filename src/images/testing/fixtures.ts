/**
 * Hand-made images for tests: layer tars (any entry, including unsafe ones), `docker save` archives
 * (the legacy layout of Docker ≤ 24, or the OCI-based one of Docker ≥ 25), OCI layouts, and a
 * busybox root file system from the host's static busybox. Used by the image store's tests and by
 * anything that needs a small image (registry tests, drivers).
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { sha256 } from '../digest.js';
import { MT, type ImageConfig, type Manifest } from '../oci.js';
import { tarBuffer, type TarEntry } from '../tar-stream.js';

export { tarBuffer, type TarEntry };

export interface FixtureLayer {
  /** The layer file as stored (tar, or tar.gz). */
  data: Buffer;
  digest: string;
  /** sha256 of the uncompressed tar. */
  diffId: string;
  gzip: boolean;
}

/** A layer from entries; `gzip` compresses it. */
export function makeLayer(entries: TarEntry[], gzip = false): FixtureLayer {
  const tar = tarBuffer(entries);
  const data = gzip ? gzipSync(tar) : tar;
  return { data, digest: sha256(data), diffId: sha256(tar), gzip };
}

export function makeConfig(layers: FixtureLayer[], extra: Partial<ImageConfig['config']> = {}): Buffer {
  const config: ImageConfig = {
    architecture: 'amd64',
    os: 'linux',
    created: '2024-01-01T00:00:00Z',
    config: { Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'], Cmd: ['sh'], ...extra },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
  };
  return Buffer.from(JSON.stringify(config));
}

export interface FixtureImage {
  tags: string[];
  layers: FixtureLayer[];
  /** Config bytes (default: makeConfig(layers)). */
  config?: Buffer;
}

/**
 * A `docker save` archive. `style: 'legacy'` (Docker ≤ 24): `<id>/layer.tar`, `<hex>.json`;
 * `style: 'oci'` (Docker ≥ 25): `blobs/sha256/<hex>` plus oci-layout and index.json.
 * `tamper` replaces the stored bytes of a layer (by index in the first image) after the config was made.
 */
export function dockerSaveArchive(images: FixtureImage[], opts: { style?: 'legacy' | 'oci'; tamper?: { layer: number; data: Buffer } } = {}): Buffer {
  const style = opts.style ?? 'legacy';
  const entries: TarEntry[] = [];
  const manifest: { Config: string; RepoTags: string[]; Layers: string[] }[] = [];
  const written = new Set<string>();
  const add = (path: string, data: Buffer) => {
    if (written.has(path)) return;
    written.add(path);
    const parts = path.split('/');
    for (let i = 1; i < parts.length; i++) {
      const d = `${parts.slice(0, i).join('/')}/`;
      if (!written.has(d)) {
        written.add(d);
        entries.push({ path: d, type: 'dir' });
      }
    }
    entries.push({ path, data });
  };
  const index: Manifest[] = [];
  for (const [i, img] of images.entries()) {
    const config = img.config ?? makeConfig(img.layers);
    const cfgDigest = sha256(config);
    const layerPaths: string[] = [];
    let parent = '';
    for (const [j, l] of img.layers.entries()) {
      const data = i === 0 && opts.tamper?.layer === j ? opts.tamper.data : l.data;
      if (style === 'legacy') {
        const id = sha256(`${parent}${l.diffId}`).slice(7);
        parent = id;
        add(`${id}/VERSION`, Buffer.from('1.0'));
        add(`${id}/json`, Buffer.from(JSON.stringify({ id, ...(j ? { parent: layerPaths[j - 1]!.split('/')[0] } : {}) })));
        add(`${id}/layer.tar`, data);
        layerPaths.push(`${id}/layer.tar`);
      } else {
        const p = `blobs/sha256/${l.digest.slice(7)}`;
        add(p, data);
        layerPaths.push(p);
      }
    }
    const cfgPath = style === 'legacy' ? `${cfgDigest.slice(7)}.json` : `blobs/sha256/${cfgDigest.slice(7)}`;
    add(cfgPath, config);
    manifest.push({ Config: cfgPath, RepoTags: img.tags, Layers: layerPaths });
    if (style === 'oci') {
      index.push({
        schemaVersion: 2, mediaType: MT.ociManifest,
        config: { mediaType: MT.ociConfig, digest: cfgDigest, size: config.length },
        layers: img.layers.map((l) => ({ mediaType: l.gzip ? MT.ociLayerGzip : MT.ociLayer, digest: l.digest, size: l.data.length })),
      });
    }
  }
  if (style === 'oci') {
    const descs = [];
    for (const [i, m] of index.entries()) {
      const b = Buffer.from(JSON.stringify(m));
      add(`blobs/sha256/${sha256(b).slice(7)}`, b);
      descs.push({ mediaType: MT.ociManifest, digest: sha256(b), size: b.length, annotations: { 'io.containerd.image.name': `docker.io/library/${images[i]!.tags[0] ?? 'x:latest'}`, 'org.opencontainers.image.ref.name': (images[i]!.tags[0] ?? 'x:latest').split(':').pop()! } });
    }
    entries.push({ path: 'oci-layout', data: '{"imageLayoutVersion":"1.0.0"}' });
    entries.push({ path: 'index.json', data: JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: descs }) });
  }
  entries.push({ path: 'manifest.json', data: JSON.stringify(manifest) });
  if (style === 'legacy') {
    const repos: Record<string, Record<string, string>> = {};
    for (const [i, img] of images.entries()) {
      for (const t of img.tags) {
        const c = t.lastIndexOf(':');
        (repos[t.slice(0, c)] ??= {})[t.slice(c + 1)] = manifest[i]!.Layers[manifest[i]!.Layers.length - 1]!.split('/')[0]!;
      }
    }
    entries.push({ path: 'repositories', data: JSON.stringify(repos) });
  }
  return tarBuffer(entries);
}

/** Write an OCI image layout directory with one image per entry (ref names as annotations). */
export function ociLayoutDir(dir: string, images: { refName?: string; layers: FixtureLayer[]; config?: Buffer }[]): { manifestDigests: string[] } {
  mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
  const put = (b: Buffer) => {
    const d = sha256(b);
    writeFileSync(join(dir, 'blobs', 'sha256', d.slice(7)), b);
    return d;
  };
  const descs = [];
  const manifestDigests: string[] = [];
  for (const img of images) {
    const config = img.config ?? makeConfig(img.layers);
    for (const l of img.layers) put(l.data);
    const m: Manifest = {
      schemaVersion: 2, mediaType: MT.ociManifest,
      config: { mediaType: MT.ociConfig, digest: put(config), size: config.length },
      layers: img.layers.map((l) => ({ mediaType: l.gzip ? MT.ociLayerGzip : MT.ociLayer, digest: l.digest, size: l.data.length })),
    };
    const mb = Buffer.from(JSON.stringify(m));
    const md = put(mb);
    manifestDigests.push(md);
    descs.push({ mediaType: MT.ociManifest, digest: md, size: mb.length, ...(img.refName ? { annotations: { 'org.opencontainers.image.ref.name': img.refName } } : {}) });
  }
  writeFileSync(join(dir, 'oci-layout'), '{"imageLayoutVersion":"1.0.0"}');
  writeFileSync(join(dir, 'index.json'), JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests: descs }));
  return { manifestDigests };
}

/** The host's static busybox, or undefined (a dynamically linked one would not run alone in an image). */
export function staticBusybox(): string | undefined {
  const p = ['/bin/busybox', '/usr/bin/busybox'].find((x) => existsSync(x));
  if (!p || readFileSync(p).includes('/ld-linux')) return undefined;
  return p;
}

/** A minimal busybox root file system in `dir`: bin/busybox, applet symlinks (absolute, as Debian's), etc. */
export function busyboxRootfs(dir: string, applets = ['sh', 'ls', 'cat', 'echo', 'true', 'sleep', 'ps', 'hostname', 'id']): void {
  const bb = staticBusybox();
  if (!bb) throw new Error('no static busybox on this machine (Debian package busybox-static)');
  for (const d of ['bin', 'etc', 'tmp', 'root', 'usr/bin']) mkdirSync(join(dir, d), { recursive: true });
  copyFileSync(bb, join(dir, 'bin', 'busybox'));
  execFileSync('chmod', ['0755', join(dir, 'bin', 'busybox')]);
  execFileSync('chmod', ['1777', join(dir, 'tmp')]);
  for (const a of applets) symlinkSync('/bin/busybox', join(dir, 'bin', a));
  symlinkSync('../../bin/busybox', join(dir, 'usr', 'bin', 'env'));
  writeFileSync(join(dir, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
}
