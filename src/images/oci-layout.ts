/**
 * OCI image layouts (image-spec v1.1, "image-layout"): a directory or a tar of one, with `oci-layout`,
 * `index.json` and `blobs/<alg>/<hex>`. Every blob read (indexes, manifests, configs, layers) is
 * hashed and compared with the digest and size its descriptor gives.
 *
 * Each entry of `index.json` is one image. A nested index (multi-platform image) resolves to its
 * linux/amd64 manifest. Names come from the entry's annotations:
 * - `io.containerd.image.name` (a full reference, written by containerd and Docker ≥ 25), else
 * - `org.opencontainers.image.ref.name`: a full reference (`example.com/app:1`) is used as it is; a
 *   bare tag (`latest`, what skopeo `oci:DIR:TAG` and umoci write) is combined with a repository
 *   named after the layout directory or tar file (`/tmp/busybox:latest` → `busybox:latest`),
 *   following the `oci:DIR:TAG` convention; no usable repository → no name;
 * - neither → no names.
 */
import { YunError } from '../errors/errors.js';
import { type ArchiveSource, type BlobSink, invalidImage } from './archive-source.js';
import { LayerScanner, scanArchiveLayer } from './scan.js';
import { checkConfig, BlobProgress } from './docker-archive.js';
import { isDigest } from './digest.js';
import { isBareTag, parseImageName } from './names.js';
import { MT, type Descriptor, type ImageConfig, type ImageRecord, type Index, type Manifest } from './oci.js';
import type { ImportProgress } from './store.js';

const REF_NAME = 'org.opencontainers.image.ref.name';
const CONTAINERD_NAME = 'io.containerd.image.name';

const INDEX_TYPES = new Set<string>([MT.ociIndex, MT.dockerManifestList]);
const MANIFEST_TYPES = new Set<string>([MT.ociManifest, MT.dockerManifest]);
const LAYER_TYPES = new Set<string>([
  MT.ociLayer, MT.ociLayerGzip, MT.ociLayerZstd, MT.dockerLayer, MT.dockerLayerGzip,
  'application/vnd.oci.image.layer.nondistributable.v1.tar', 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
]);

export function namesFromAnnotations(annotations: Record<string, string> | undefined, repository: string | undefined): string[] {
  const full = annotations?.[CONTAINERD_NAME];
  if (full) {
    const n = parseImageName(full);
    if (n) return [n.name];
  }
  const ref = annotations?.[REF_NAME];
  if (!ref) return [];
  if (isBareTag(ref)) {
    if (!repository) return [];
    const n = parseImageName(`${repository}:${ref}`);
    return n ? [n.name] : [];
  }
  const n = parseImageName(ref);
  return n ? [n.name] : [];
}

function checkDescriptor(d: unknown, what: string): Descriptor {
  const x = d as Descriptor;
  if (!x || typeof x !== 'object' || typeof x.mediaType !== 'string' || !Number.isSafeInteger(x.size) || x.size < 0) {
    throw invalidImage(`${what} is not a valid descriptor (mediaType, digest, size)`);
  }
  if (!isDigest(x.digest)) {
    throw invalidImage(`${what} has digest "${String(x.digest)}": only sha256 digests are supported`);
  }
  return x;
}

const blobRel = (digest: string) => `blobs/sha256/${digest.slice(7)}`;

interface Found {
  desc: Descriptor;
  manifest: Manifest;
  bytes: Buffer;
}

export async function importOciLayout(src: ArchiveSource, sink: BlobSink, opts: { repository?: string; privileged: boolean; progress?: ImportProgress }): Promise<ImageRecord[]> {
  const { repository, progress } = opts;
  const layout = await src.json<{ imageLayoutVersion?: unknown }>('oci-layout', 'the OCI layout marker');
  if (!layout || typeof layout.imageLayoutVersion !== 'string') throw invalidImage(`oci-layout in ${src.label} has no imageLayoutVersion`);
  const index = await src.json<Index>('index.json', 'the OCI image index');
  if (!index || !Array.isArray(index.manifests)) throw invalidImage(`index.json in ${src.label} has no "manifests" list`);
  if (index.manifests.length === 0) throw invalidImage(`index.json in ${src.label} lists no images`);

  // Resolve every entry to one manifest first (reading only small JSON blobs), then store.
  const found: { f: Found; names: string[] }[] = [];
  for (const [i, d] of index.manifests.entries()) {
    const desc = checkDescriptor(d, `index.json in ${src.label}, entry ${i + 1}`);
    const names = namesFromAnnotations(desc.annotations, repository);
    const f = await resolve(src, desc, `image ${names[0] ?? desc.annotations?.[REF_NAME] ?? desc.digest}`, 0);
    found.push({ f, names });
  }
  const bp = new BlobProgress(found.reduce((n, x) => n + x.f.manifest.layers.length + 2, 0), progress);

  const byDigest = new Map<string, ImageRecord>();
  for (const { f, names } of found) {
    const prev = byDigest.get(f.desc.digest);
    if (prev) {
      for (const n of names) if (!prev.names.includes(n)) prev.names.push(n);
      continue;
    }
    const what = `image ${names[0] ?? f.desc.digest}`;
    const m = f.manifest;
    const cfgDesc = checkDescriptor(m.config, `the config descriptor of ${what}`);
    const { value } = await src.verifiedJson<unknown>(blobRel(cfgDesc.digest), cfgDesc, `the config of ${what}`);
    const config: ImageConfig = checkConfig(value, `the config of ${what} (${cfgDesc.digest})`);
    if (config.rootfs.diff_ids.length !== m.layers.length) {
      throw invalidImage(`${what}: its manifest lists ${m.layers.length} layers but its config has ${config.rootfs.diff_ids.length} diff_ids`);
    }
    const scanner = new LayerScanner(opts.privileged);
    for (const [j, l] of m.layers.entries()) {
      const lwhat = `${what}, layer ${j + 1}/${m.layers.length} (${l.digest})`;
      const rel = blobRel(l.digest);
      if (!src.has(rel)) throw invalidImage(`${lwhat}: ${src.label} has no ${rel}`);
      progress?.({ phase: 'verify', digest: l.digest, done: bp.done, total: bp.total, message: `verifying ${lwhat}` });
      const r = await scanArchiveLayer(src, rel, l, scanner, { digest: l.digest, index: j + 1, count: m.layers.length }, lwhat);
      if (r.diffId !== config.rootfs.diff_ids[j]) {
        throw new YunError('YUN_DIGEST_MISMATCH', `${lwhat} in ${src.label}: the image config lists diff_id ${config.rootfs.diff_ids[j]} but the layer's ${r.compression === 'none' ? '' : 'uncompressed '}content has digest ${r.diffId}`, {
          extra: { file: rel, layer: l.digest, expected: config.rootfs.diff_ids[j], actual: r.diffId },
        });
      }
      await src.ingest(rel, sink, { digest: l.digest, size: l.size }, lwhat);
      bp.step(l.digest, `stored ${lwhat}`);
    }
    await src.ingest(blobRel(cfgDesc.digest), sink, { digest: cfgDesc.digest, size: cfgDesc.size }, `the config of ${what}`);
    bp.step(cfgDesc.digest, `stored the config of ${what}`);
    await sink.putBlob(f.bytes, { digest: f.desc.digest, size: f.desc.size, label: `the manifest of ${what}` });
    bp.step(f.desc.digest, `stored the manifest of ${what}`);
    byDigest.set(f.desc.digest, {
      names: [...new Set(names)], digest: f.desc.digest, manifest: m, config,
      size: cfgDesc.size + m.layers.reduce((a, l) => a + l.size, 0),
    });
  }
  return [...byDigest.values()];
}

async function resolve(src: ArchiveSource, desc: Descriptor, what: string, depth: number): Promise<Found> {
  if (depth > 4) throw invalidImage(`${what}: image indexes nested too deeply`);
  const { value, bytes } = await src.verifiedJson<Manifest & Index>(blobRel(desc.digest), desc, `the ${INDEX_TYPES.has(desc.mediaType) ? 'index' : 'manifest'} of ${what}`);
  const isIndex = INDEX_TYPES.has(desc.mediaType) || INDEX_TYPES.has(value?.mediaType ?? '') || (Array.isArray(value?.manifests) && !value?.config);
  if (isIndex) {
    if (!Array.isArray(value.manifests)) throw invalidImage(`the index ${desc.digest} of ${what} has no "manifests" list`);
    const ds = value.manifests.map((m, i) => checkDescriptor(m, `entry ${i + 1} of the index ${desc.digest} of ${what}`));
    const pick = pickPlatform(ds);
    if (!pick) {
      const platforms = ds.map((d) => (d.platform ? `${d.platform.os}/${d.platform.architecture}${d.platform.variant ? `/${d.platform.variant}` : ''}` : 'unspecified')).join(', ');
      throw invalidImage(`${what} has no linux/amd64 image (its index lists: ${platforms || 'nothing'})`, { platforms });
    }
    return resolve(src, pick, what, depth + 1);
  }
  if (desc.mediaType && !MANIFEST_TYPES.has(desc.mediaType)) throw invalidImage(`${what}: unsupported media type ${desc.mediaType} for a manifest`);
  const m = value as Manifest;
  if (!m || m.schemaVersion !== 2 || !m.config || !Array.isArray(m.layers)) throw invalidImage(`the manifest ${desc.digest} of ${what} is not an image manifest (schemaVersion 2 with config and layers)`);
  m.layers.forEach((l, i) => {
    checkDescriptor(l, `layer ${i + 1} of ${what}`);
    if (!LAYER_TYPES.has(l.mediaType)) {
      throw invalidImage(`layer ${i + 1}/${m.layers.length} (${l.digest}) of ${what} has media type ${l.mediaType}, which this node cannot unpack (tar and tar+gzip layers are supported)`);
    }
  });
  return { desc, manifest: m, bytes };
}

/** linux/amd64 (any variant) first; else the single manifest that names no platform. */
function pickPlatform(ds: Descriptor[]): Descriptor | undefined {
  const manifests = ds.filter((d) => MANIFEST_TYPES.has(d.mediaType) || INDEX_TYPES.has(d.mediaType));
  const amd = manifests.filter((d) => d.platform?.os === 'linux' && d.platform.architecture === 'amd64');
  if (amd.length) return amd.find((d) => !d.platform?.variant || d.platform.variant === 'v1') ?? amd[0];
  const unspecified = manifests.filter((d) => !d.platform);
  return unspecified.length === 1 ? unspecified[0] : undefined;
}
