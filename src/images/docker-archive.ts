/**
 * `docker save` archives, both ways.
 *
 * Import: `manifest.json` lists, per image, its config file and layer files. Docker ≤ 24 writes
 * `<config hex>.json` and `<id>/layer.tar` (shared layers as symlinks to another `<id>/layer.tar`);
 * Docker ≥ 25 writes an OCI layout beside it with `blobs/sha256/<hex>` paths. Layers are plain tars
 * (gzip accepted). Each layer's uncompressed digest must equal the config's `rootfs.diff_ids` entry,
 * and a file named by its digest must have that digest. The image is stored as an OCI manifest
 * (layers `application/vnd.oci.image.layer.v1.tar`, or `+gzip` for gzip layers) whose JSON is
 * deterministic: the same archive always gives the same manifest digest.
 *
 * Export: the legacy layout every `docker load` reads: `manifest.json` (RepoTags [name]),
 * `<config hex>.json`, and `<diff_id hex>/layer.tar` with the layers uncompressed.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { createGunzip } from 'node:zlib';
import { YunError } from '../errors/errors.js';
import { type ArchiveSource, type BlobSink, invalidImage } from './archive-source.js';
import { compressionOf, digestMismatch, HashingStream, isDigest } from './digest.js';
import { LayerScanner, scanArchiveLayer } from './scan.js';
import { parseImageName } from './names.js';
import { MT, type Descriptor, type ImageConfig, type ImageRecord, type Manifest } from './oci.js';
import type { ImportProgress } from './store.js';
import { writeTar, type TarEntry } from './tar-stream.js';

interface DockerManifestEntry {
  Config: string;
  RepoTags?: string[] | null;
  Layers: string[];
}

/** A file whose name is its digest (`<hex>.json`, `blobs/sha256/<hex>`, `sha256:<hex>`): that digest. */
function digestInName(rel: string): string | undefined {
  const m = /(?:^|\/)(?:sha256[/:])?([0-9a-f]{64})(?:\.json)?$/.exec(rel);
  return m ? `sha256:${m[1]}` : undefined;
}

export function checkConfig(config: unknown, what: string): ImageConfig {
  const c = config as ImageConfig;
  if (!c || typeof c !== 'object' || Array.isArray(c)) throw invalidImage(`${what} is not a JSON object`);
  if (!c.rootfs || !Array.isArray(c.rootfs.diff_ids) || !c.rootfs.diff_ids.every(isDigest)) {
    throw invalidImage(`${what} has no valid rootfs.diff_ids (a list of sha256 digests)`);
  }
  if (c.config !== undefined && c.config !== null && typeof c.config !== 'object') throw invalidImage(`${what} has an invalid "config" section`);
  return c;
}

/** Counts blobs for progress events. */
export class BlobProgress {
  done = 0;
  constructor(readonly total: number, private readonly progress?: ImportProgress) {}
  step(digest: string, message: string): void {
    this.done++;
    this.progress?.({ phase: 'blob', digest, done: this.done, total: this.total, message });
  }
}

export async function importDockerSave(src: ArchiveSource, sink: BlobSink, opts: { privileged: boolean; progress?: ImportProgress }): Promise<ImageRecord[]> {
  const { progress } = opts;
  const list = await src.json<DockerManifestEntry[]>('manifest.json', 'the docker save manifest');
  if (!Array.isArray(list) || list.length === 0) throw invalidImage(`manifest.json in ${src.label} lists no images`);
  for (const [i, e] of list.entries()) {
    if (!e || typeof e.Config !== 'string' || !Array.isArray(e.Layers) || !e.Layers.every((l) => typeof l === 'string')) {
      throw invalidImage(`manifest.json in ${src.label}: image ${i + 1} needs "Config" (a file name) and "Layers" (a list of file names)`);
    }
  }
  const bp = new BlobProgress(list.reduce((n, e) => n + e.Layers.length + 2, 0), progress);
  const byDigest = new Map<string, ImageRecord>();

  for (const e of list) {
    const tags = (e.RepoTags ?? []).filter((t) => typeof t === 'string' && t !== '<none>:<none>');
    const title = tags[0] ?? e.Config;
    const what = `image ${title}`;
    if (!src.has(e.Config)) throw invalidImage(`${what}: its config ${e.Config} is not in ${src.label}`);
    const cfgFile = await src.digestOf(e.Config);
    const named = digestInName(e.Config);
    if (named && named !== cfgFile.digest) throw digestMismatch(`${what}: config ${e.Config} in ${src.label}`, named, cfgFile.digest, { file: e.Config });
    const { value: rawConfig } = await src.verifiedJson<unknown>(e.Config, cfgFile, `the config of ${what}`);
    const config = checkConfig(rawConfig, `the config of ${what} (${e.Config})`);
    const diffIds = config.rootfs.diff_ids;
    if (diffIds.length !== e.Layers.length) {
      throw invalidImage(`${what}: manifest.json lists ${e.Layers.length} layers but its config has ${diffIds.length} diff_ids`);
    }

    const layers: Descriptor[] = [];
    const scanner = new LayerScanner(opts.privileged);
    for (const [j, rel] of e.Layers.entries()) {
      const lwhat = `${what}, layer ${j + 1}/${e.Layers.length} (${rel})`;
      if (!src.has(rel)) throw invalidImage(`${lwhat} is not in ${src.label}`);
      const f = await src.digestOf(rel);
      const n = digestInName(rel);
      if (n && n !== f.digest) throw digestMismatch(`${lwhat} in ${src.label}`, n, f.digest, { file: rel, layer: n });
      const diffMismatch = (actual: string, compressed: boolean) => new YunError('YUN_DIGEST_MISMATCH', `${lwhat} in ${src.label}: the image config lists diff_id ${diffIds[j]} but the layer's ${compressed ? 'uncompressed ' : ''}content has digest ${actual}`, {
        extra: { file: rel, layer: f.digest, expected: diffIds[j], actual },
      });
      // An uncompressed layer's digest is its diff_id: a tampered one is caught before reading it.
      if ((await src.compression(rel)) === 'none' && f.digest !== diffIds[j]) throw diffMismatch(f.digest, false);
      progress?.({ phase: 'verify', digest: f.digest, done: bp.done, total: bp.total, message: `verifying ${lwhat}` });
      const r = await scanArchiveLayer(src, rel, f, scanner, { digest: f.digest, index: j + 1, count: e.Layers.length }, lwhat);
      if (r.diffId !== diffIds[j]) throw diffMismatch(r.diffId, r.compression !== 'none');
      await src.ingest(rel, sink, f, lwhat);
      bp.step(f.digest, `stored ${lwhat}`);
      layers.push({ mediaType: r.compression === 'gzip' ? MT.ociLayerGzip : r.compression === 'zstd' ? MT.ociLayerZstd : MT.ociLayer, digest: f.digest, size: f.size });
    }
    await src.ingest(e.Config, sink, cfgFile, `the config of ${what}`);
    bp.step(cfgFile.digest, `stored the config of ${what}`);

    const manifest: Manifest = {
      schemaVersion: 2,
      mediaType: MT.ociManifest,
      config: { mediaType: MT.ociConfig, digest: cfgFile.digest, size: cfgFile.size },
      layers,
    };
    const m = await sink.putBlob(Buffer.from(JSON.stringify(manifest)));
    bp.step(m.digest, `stored the manifest of ${what}`);
    const names = tags.map((t) => parseImageName(t)?.name).filter((n): n is string => !!n);
    const prev = byDigest.get(m.digest);
    if (prev) {
      for (const n of names) if (!prev.names.includes(n)) prev.names.push(n);
    } else {
      byDigest.set(m.digest, { names: [...new Set(names)], digest: m.digest, manifest, config, size: cfgFile.size + layers.reduce((a, l) => a + l.size, 0) });
    }
  }
  return [...byDigest.values()];
}

/**
 * Write `rec` as a docker save archive at `out` (layers uncompressed; gzip layers are decompressed
 * into `tmpDir` first, their diff_id verified on the way).
 */
export async function writeDockerArchive(rec: ImageRecord, name: string, blobPath: (d: string) => string, out: string, tmpDir: string): Promise<void> {
  const diffIds = rec.config.rootfs.diff_ids;
  if (diffIds.length !== rec.manifest.layers.length) throw invalidImage(`image ${rec.digest}: ${rec.manifest.layers.length} layers but ${diffIds.length} diff_ids in its config`);
  const entries: TarEntry[] = [];
  const layerPaths: string[] = [];
  const seen = new Set<string>();
  const temps: string[] = [];
  try {
    for (const [i, l] of rec.manifest.layers.entries()) {
      const diffId = diffIds[i]!;
      const hex = diffId.slice(7);
      const rel = `${hex}/layer.tar`;
      layerPaths.push(rel);
      if (seen.has(hex)) continue;
      seen.add(hex);
      const head = await firstBytes(blobPath(l.digest));
      const comp = compressionOf(head);
      let file = blobPath(l.digest);
      if (comp === 'zstd') throw invalidImage(`layer ${l.digest} of image ${rec.digest} is zstd-compressed, which this node cannot decompress`);
      if (comp === 'gzip') {
        file = join(tmpDir, `layer-${hex}.tar`);
        temps.push(file);
        const h = new HashingStream();
        await pipeline(createReadStream(blobPath(l.digest)), createGunzip(), h, createWriteStream(file, { mode: 0o600 }));
        if (h.digest() !== diffId) throw digestMismatch(`layer ${i + 1}/${rec.manifest.layers.length} (${l.digest}) of image ${rec.digest}, uncompressed`, diffId, h.digest(), { layer: l.digest });
      } else if (l.digest !== diffId) {
        throw digestMismatch(`layer ${i + 1}/${rec.manifest.layers.length} (${l.digest}) of image ${rec.digest}: an uncompressed layer's digest is its diff_id`, diffId, l.digest, { layer: l.digest });
      }
      entries.push({ path: `${hex}/`, type: 'dir' }, { path: `${hex}/VERSION`, data: '1.0' }, { path: rel, file });
    }
    const cfgName = `${rec.manifest.config.digest.slice(7)}.json`;
    entries.push({ path: cfgName, file: blobPath(rec.manifest.config.digest) });
    entries.push({ path: 'manifest.json', data: JSON.stringify([{ Config: cfgName, RepoTags: [name], Layers: layerPaths }]) });
    await writeTar(createWriteStream(out, { flags: 'wx', mode: 0o644 }), entries.map((e) => ({ mtime: new Date(0), ...e })));
  } finally {
    for (const t of temps) await rm(t, { force: true });
  }
}

async function firstBytes(path: string): Promise<Buffer> {
  const s = createReadStream(path, { start: 0, end: 3 });
  const chunks: Buffer[] = [];
  for await (const c of s) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}
