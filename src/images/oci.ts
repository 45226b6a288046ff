/** OCI image spec types (image-spec v1.1) and media types, with the Docker v2 equivalents. */

export const MT = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

export interface Descriptor {
  mediaType: string;
  digest: string;
  size: number;
  platform?: { os: string; architecture: string; variant?: string };
  annotations?: Record<string, string>;
}

export interface Manifest {
  schemaVersion: 2;
  mediaType?: string;
  config: Descriptor;
  layers: Descriptor[];
  annotations?: Record<string, string>;
}

export interface Index {
  schemaVersion: 2;
  mediaType?: string;
  manifests: Descriptor[];
}

export interface ImageConfig {
  architecture: string;
  os: string;
  created?: string;
  config?: {
    Env?: string[];
    Entrypoint?: string[] | null;
    Cmd?: string[] | null;
    WorkingDir?: string;
    User?: string;
    ExposedPorts?: Record<string, object>;
    Labels?: Record<string, string>;
    StopSignal?: string;
  };
  rootfs: { type: 'layers'; diff_ids: string[] };
  history?: unknown[];
}

/** What importing or pulling produces: one image (a manifest in the blob store) and its names. */
export interface ImageRecord {
  /** `repo:tag` names found for it (docker save RepoTags, OCI `org.opencontainers.image.ref.name`, or given). */
  names: string[];
  /** Digest of the manifest blob (always an OCI or Docker v2 manifest, never an index). */
  digest: string;
  manifest: Manifest;
  config: ImageConfig;
  /** Sum of the config and layer blob sizes. */
  size: number;
  /** `vm` for VM images (config and layers are the VM artifact's, see vm-image.ts). */
  kind?: 'container' | 'vm';
  vm?: import('./vm-image.js').VmConfig;
}

export const DIGEST_RE = /^sha256:[0-9a-f]{64}$/;
