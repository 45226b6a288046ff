/**
 * Image names (`repo:tag`), following Docker's reference grammar:
 *
 *   busybox                      → busybox:latest        (default tag)
 *   docker.io/library/busybox:1  → busybox:1             (Docker Hub names are shown the familiar way)
 *   docker.io/me/app             → me/app:latest
 *   localhost:5000/a/b:v2        → localhost:5000/a/b:v2 (a first component with `.` or `:`, or
 *                                                         `localhost`, is a registry host)
 *
 * Digests (`name@sha256:…`) are not names; repository paths are lowercase; tags are
 * `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
 */
import { YunError } from '../errors/errors.js';

const DOMAIN_RE = /^(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])(?:\.(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9]))*(?::[0-9]+)?$/;
const COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export interface ImageName {
  /** `repo:tag`, familiar form. */
  name: string;
  /** Registry host (with port) if the name has one, else '' (Docker Hub). */
  domain: string;
  /** Repository without the tag, familiar form (`busybox`, `me/app`, `localhost:5000/a/b`). */
  repository: string;
  tag: string;
}

/** Parse a `repo[:tag]` name; undefined when it is not one (use `normalizeImageName` for an error). */
export function parseImageName(ref: string): ImageName | undefined {
  if (typeof ref !== 'string') return undefined;
  const s = ref.trim();
  if (!s || s.length > 255 || s.includes('@')) return undefined;
  const slash = s.lastIndexOf('/');
  const colon = s.lastIndexOf(':');
  let base = s;
  let tag = 'latest';
  if (colon > slash) {
    base = s.slice(0, colon);
    tag = s.slice(colon + 1);
  }
  if (!TAG_RE.test(tag)) return undefined;
  const parts = base.split('/');
  let domain = '';
  if (parts.length > 1 && (parts[0]!.includes('.') || parts[0]!.includes(':') || parts[0] === 'localhost' || parts[0] !== parts[0]!.toLowerCase())) {
    domain = parts.shift()!;
    if (!DOMAIN_RE.test(domain)) return undefined;
  }
  if (parts.length === 0 || !parts.every((p) => COMPONENT_RE.test(p))) return undefined;
  if (domain === 'docker.io' || domain === 'index.docker.io' || domain === 'registry-1.docker.io') {
    domain = '';
    if (parts.length === 2 && parts[0] === 'library') parts.shift();
  }
  const repository = [domain, ...parts].filter(Boolean).join('/');
  return { name: `${repository}:${tag}`, domain, repository, tag };
}

/** `repo[:tag]` → `repo:tag` (familiar form, default tag `latest`); a YUN_VALIDATION_FAILED error when invalid. */
export function normalizeImageName(ref: string, field = 'name'): string {
  const p = parseImageName(ref);
  if (!p) {
    throw new YunError('YUN_VALIDATION_FAILED', `"${ref}" is not a valid image name`, {
      hint: 'Use REPOSITORY[:TAG]: lowercase path components (letters, digits, . _ -) separated by /, an optional registry host first (host.name[:port]/…), and a tag of letters, digits, _ . - (default latest).',
      extra: { field },
    });
  }
  return p.name;
}

/** Is `s` a bare tag (what skopeo and umoci write as `org.opencontainers.image.ref.name`)? */
export function isBareTag(s: string): boolean {
  return TAG_RE.test(s) && !s.includes('/') && !s.includes(':');
}

/**
 * A repository name made from a file or directory name (`busybox-oci.tar` → `busybox-oci`), for OCI
 * layouts whose ref names are bare tags (the umoci/skopeo convention is `oci:DIR:TAG`). Undefined
 * when nothing usable remains.
 */
export function repositoryFromFileName(base: string): string | undefined {
  let s = base.toLowerCase().replace(/\.(tar\.gz|tgz|tar|oci|layout)$/, '');
  s = s.replace(/[^a-z0-9._-]+/g, '-').replace(/^[._-]+|[._-]+$/g, '').replace(/[._-]{2,}/g, '-');
  return s && COMPONENT_RE.test(s) ? s : undefined;
}
