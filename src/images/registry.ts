/**
 * The pull side of the OCI distribution API (v2), for `yun image pull REF [--ca FILE] [--insecure]`
 * and for agents that fetch an image a task needs.
 *
 *   GET /v2/                               ping: which scheme works, and the auth challenge
 *   GET /v2/<repo>/manifests/<tag|digest>  an image manifest, or an index (then pick linux/amd64)
 *   GET /v2/<repo>/blobs/<digest>          config and layers (redirects followed, e.g. to S3)
 *
 * Everything is verified against its digest before it is stored: manifests in memory (capped at
 * 4 MiB), blobs while they stream into the store. Auth: anonymous first; a 401 carries a
 * `WWW-Authenticate` challenge — `Bearer` (token from the realm, with HTTP basic credentials when
 * given; cached per scope for the pull) or `Basic`. TLS: https with the system CAs plus `caPem`;
 * `insecure` skips verification and allows plain http. Proxies: HTTP(S)_PROXY / NO_PROXY, never for
 * loopback (src/util/proxy.ts).
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext, rootCertificates, type SecureContext } from 'node:tls';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { Agent, ProxyAgent, request, type Dispatcher } from 'undici';
import { YunError } from '../errors/errors.js';
import { isLocalAddress, proxyFor, readProxyEnv } from '../util/proxy.js';
import { VERSION } from '../version.js';
import { DIGEST_RE, MT, type Descriptor, type ImageConfig, type ImageRecord, type Index, type Manifest } from './oci.js';
import type { ImageStoreApi } from './store.js';

export interface PullProgressEvent {
  phase: 'manifest' | 'blob' | 'done';
  digest?: string;
  bytes?: number;
  total?: number;
  message?: string;
}

export interface PullOptions {
  /** Extra CA certificate(s), PEM, trusted in addition to the system CAs (`--ca FILE`). */
  caPem?: string;
  /** Skip certificate verification, and allow plain http (`--insecure`); for test registries. */
  insecure?: boolean;
  username?: string;
  password?: string;
  /** The platform to pick from an image index; linux/amd64 by default. */
  platform?: { os: string; architecture: string };
  progress?: (e: PullProgressEvent) => void;
  /** Cancels the pull (downloads are aborted; nothing half-written is stored). */
  signal?: AbortSignal;
}

export interface ImageReference {
  /** Registry host[:port] as written (`docker.io` when none is given). */
  registry: string;
  /** Repository path in the registry (`library/busybox` on docker.io). */
  repository: string;
  tag?: string;
  digest?: string;
  /** The name to record: `repo:tag` (familiar form on docker.io, e.g. `busybox:latest`), or `repo@digest` when pulled by digest alone. */
  name: string;
}

/** Manifests and indexes larger than this are refused (the distribution spec suggests 4 MiB). */
export const MANIFEST_MAX_BYTES = 4 * 1024 * 1024;
/** Image configs are read whole; larger ones are refused. */
export const CONFIG_MAX_BYTES = 16 * 1024 * 1024;
const TOKEN_MAX_BYTES = 1024 * 1024;
const ERROR_BODY_MAX_BYTES = 64 * 1024;
const MAX_REDIRECTS = 10;
const LAYER_CONCURRENCY = 3;

const USER_AGENT = `yunstack/${VERSION}`;
const DOCKER_HUB = 'docker.io';
const DOCKER_HUB_API = 'registry-1.docker.io';

const MANIFEST_TYPES: ReadonlySet<string> = new Set([MT.ociManifest, MT.dockerManifest]);
const INDEX_TYPES: ReadonlySet<string> = new Set([MT.ociIndex, MT.dockerManifestList]);
const ACCEPT = [MT.ociIndex, MT.dockerManifestList, MT.ociManifest, MT.dockerManifest].join(', ');

// ---------------------------------------------------------------------------------------------
// References

const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN_RE = new RegExp(`^(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[0-9a-fA-F:.]+\\])(?::[0-9]{1,5})?$`);
const PATH_COMPONENT_RE = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG_RE = /^[\w][\w.-]{0,127}$/;

function badReference(ref: string, why: string, hint?: string): YunError {
  return new YunError('YUN_IMAGE_REFERENCE_INVALID', `"${ref}" is not a valid image reference: ${why}`, hint === undefined ? {} : { hint });
}

/**
 * Parse an image reference the way Docker does: `[REGISTRY/]REPO[:TAG][@DIGEST]`. The first path
 * component is a registry when it has a `.` or a `:` or is `localhost`; otherwise the registry is
 * docker.io, where one-component names live under `library/`. No tag and no digest means `latest`.
 */
export function parseReference(ref: string): ImageReference {
  const input = ref.trim();
  if (input === '') throw badReference(ref, 'it is empty');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(input)) {
    throw badReference(ref, 'a reference has no URL scheme', 'Write it as HOST[:PORT]/REPO[:TAG]; for a registry that speaks plain HTTP add --insecure.');
  }
  if (/\s/.test(input)) throw badReference(ref, 'it contains white space');
  let rest = input;
  let digest: string | undefined;
  const at = rest.indexOf('@');
  if (at >= 0) {
    digest = rest.slice(at + 1);
    rest = rest.slice(0, at);
    if (!/^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:/i.test(digest)) throw badReference(ref, `"${digest}" after @ is not a digest (sha256:<64 hex digits>)`);
    if (!digest.startsWith('sha256:')) throw badReference(ref, `only sha256 digests are supported, not "${digest.split(':')[0]}"`);
    if (!DIGEST_RE.test(digest)) throw badReference(ref, `"${digest}" is not a sha256 digest (sha256: and 64 lowercase hex digits)`);
  }
  let tag: string | undefined;
  const colon = rest.lastIndexOf(':');
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1);
    rest = rest.slice(0, colon);
    if (!TAG_RE.test(tag)) throw badReference(ref, `"${tag}" is not a valid tag (letters, digits, _ . -, at most 128, not starting with . or -)`);
  }
  if (rest === '') throw badReference(ref, 'the repository name is missing');
  const parts = rest.split('/');
  let registry = DOCKER_HUB;
  if (parts.length > 1 && (parts[0]!.includes('.') || parts[0]!.includes(':') || parts[0] === 'localhost')) {
    registry = parts.shift()!;
    if (!DOMAIN_RE.test(registry)) throw badReference(ref, `"${registry}" is not a valid registry host[:port]`);
    const port = /:(\d+)$/.exec(registry)?.[1];
    if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) throw badReference(ref, `port ${port} is out of range`);
    if (registry === 'index.docker.io' || registry === 'registry-1.docker.io') registry = DOCKER_HUB;
  }
  for (const p of parts) {
    if (p === '') throw badReference(ref, 'the repository name has an empty path component (a doubled or trailing "/")');
    if (!PATH_COMPONENT_RE.test(p)) {
      throw badReference(ref, /[A-Z]/.test(p) ? `repository names must be lowercase ("${p}")` : `"${p}" is not a valid repository path component (lowercase letters, digits, and . _ __ - between them)`);
    }
  }
  if (registry === DOCKER_HUB && parts.length === 1) parts.unshift('library');
  const repository = parts.join('/');
  if (repository.length + registry.length + 1 > 255) throw badReference(ref, 'the name is longer than 255 characters');
  if (tag === undefined && digest === undefined) tag = 'latest';
  let familiar = repository;
  if (registry === DOCKER_HUB) familiar = repository.startsWith('library/') && parts.length === 2 ? repository.slice('library/'.length) : repository;
  else familiar = `${registry}/${repository}`;
  const name = tag !== undefined ? `${familiar}:${tag}` : `${familiar}@${digest}`;
  return { registry, repository, ...(tag !== undefined ? { tag } : {}), ...(digest !== undefined ? { digest } : {}), name };
}

// ---------------------------------------------------------------------------------------------
// Small helpers

type Headers = Record<string, string | string[] | undefined>;

interface Response {
  status: number;
  headers: Headers;
  body: Dispatcher.ResponseData['body'];
  url: string;
}

function header(res: { headers: Headers }, name: string): string | undefined {
  const v = res.headers[name.toLowerCase()];
  return Array.isArray(v) ? v.join(', ') : v;
}

function sha256(buf: Buffer): string {
  return `sha256:${createHash('sha256').update(buf).digest('hex')}`;
}

function short(digest: string): string {
  return digest.length > 19 ? `${digest.slice(0, 19)}…` : digest;
}

function discard(res: Response): void {
  res.body.on('error', () => {});
  res.body.destroy();
}

/** Read a body whole, refusing more than `max` bytes (before reading, when Content-Length says so). */
async function readCapped(res: Response, max: number, what: string): Promise<Buffer> {
  const declared = Number(header(res, 'content-length'));
  if (Number.isFinite(declared) && declared > max) {
    discard(res);
    throw tooLarge(what, `${declared} bytes`, max, res.url);
  }
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > max) {
      discard(res);
      throw tooLarge(what, `more than ${max} bytes`, max, res.url);
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, n);
}

function tooLarge(what: string, got: string, max: number, url: string): YunError {
  return new YunError('YUN_REGISTRY_ERROR', `The ${what} at ${url} is too large (${got}; the limit is ${max} bytes)`, {
    hint: 'This is not a normal image; check the reference, and that the server really is a container registry.',
  });
}

/** The registry's own error (distribution spec: `{"errors":[{"code","message","detail"}]}`), as one line. */
async function registryErrorText(res: Response): Promise<string> {
  let text = '';
  try {
    text = (await readCapped(res, ERROR_BODY_MAX_BYTES, 'error response')).toString('utf8');
  } catch {
    /* a huge or broken error body: report the status alone */
  }
  try {
    const parsed = JSON.parse(text) as { errors?: { code?: string; message?: string; detail?: unknown }[]; details?: string; error?: string };
    if (Array.isArray(parsed.errors) && parsed.errors.length > 0) {
      return parsed.errors
        .map((e) => {
          const detail = e.detail === undefined || e.detail === null || (typeof e.detail === 'object' && Object.keys(e.detail as object).length === 0) ? '' : ` ${JSON.stringify(e.detail)}`;
          return `${e.code ?? 'UNKNOWN'}: ${e.message ?? ''}${detail}`.trim();
        })
        .join('; ');
    }
    if (typeof parsed.details === 'string') return parsed.details;
    if (typeof parsed.error === 'string') return parsed.error;
  } catch {
    /* not JSON */
  }
  return text.trim().replace(/\s+/g, ' ').slice(0, 500);
}

function errorChain(e: unknown): { codes: string[]; messages: string[] } {
  const codes: string[] = [];
  const messages: string[] = [];
  const seen = new Set<unknown>();
  let cur: unknown = e;
  while (cur && typeof cur === 'object' && !seen.has(cur)) {
    seen.add(cur);
    const err = cur as { code?: unknown; message?: unknown; cause?: unknown; errors?: unknown };
    if (typeof err.code === 'string') codes.push(err.code);
    if (typeof err.message === 'string' && err.message) messages.push(err.message);
    if (Array.isArray(err.errors) && err.errors.length) cur = err.errors[0];
    else cur = err.cause;
  }
  return { codes, messages };
}

const CERT_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_GET_ISSUER_CERT', 'CERT_HAS_EXPIRED', 'CERT_NOT_YET_VALID', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED', 'CERT_REJECTED', 'INVALID_CA', 'PATH_LENGTH_EXCEEDED', 'INVALID_PURPOSE', 'CERT_REVOKED',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE', 'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY', 'ERROR_IN_CERT_NOT_BEFORE_FIELD', 'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'HOSTNAME_MISMATCH', 'ERR_SSL_TLSV1_ALERT_UNKNOWN_CA', 'ERR_SSL_SSLV3_ALERT_BAD_CERTIFICATE',
]);

/** TLS spoken to a server that answers in plain HTTP (or something else that is not TLS). */
function looksLikePlainHttp(e: unknown): boolean {
  const { codes, messages } = errorChain(e);
  return (
    codes.some((c) => c === 'ERR_SSL_WRONG_VERSION_NUMBER' || c === 'ERR_SSL_PACKET_LENGTH_TOO_LONG' || c === 'ERR_SSL_HTTP_REQUEST') ||
    messages.some((m) => /wrong version number|packet length too long|http request/i.test(m))
  );
}

function isAbort(e: unknown): boolean {
  const { codes } = errorChain(e);
  return (e as { name?: string })?.name === 'AbortError' || codes.includes('ABORT_ERR') || codes.includes('UND_ERR_ABORTED');
}

const SYSTEM_BUNDLES = ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt', '/etc/ssl/cert.pem'];
let systemCAs: string[] | undefined;

/** The CAs to trust: Node's bundled roots, the system bundle (with CAs added by update-ca-certificates), NODE_EXTRA_CA_CERTS, and `caPem`. */
function trustedCAs(caPem?: string): string[] {
  if (!systemCAs) {
    systemCAs = [...rootCertificates];
    const bundle = SYSTEM_BUNDLES.find((f) => {
      try {
        return readFileSync(f).length > 0;
      } catch {
        return false;
      }
    });
    for (const f of [bundle, process.env.NODE_EXTRA_CA_CERTS]) {
      if (!f) continue;
      try {
        systemCAs.push(readFileSync(f, 'utf8'));
      } catch {
        /* unreadable: Node's own roots still apply */
      }
    }
  }
  return caPem ? [...systemCAs, caPem] : systemCAs;
}

const contexts = new Map<string, SecureContext>();

/** One TLS context per set of trusted CAs (parsing a few hundred roots per connection is slow). */
function secureContextFor(caPem?: string): SecureContext {
  const key = caPem ?? '';
  let ctx = contexts.get(key);
  if (!ctx) {
    ctx = createSecureContext({ ca: trustedCAs(caPem) });
    if (contexts.size >= 16) contexts.delete(contexts.keys().next().value!);
    contexts.set(key, ctx);
  }
  return ctx;
}

function certHint(opts: PullOptions): string {
  return opts.caPem
    ? 'This is a certificate problem: the CA given with --ca did not sign the registry\'s certificate (or the certificate does not name this host). Pass the CA that issued it with `--ca FILE` (PEM), or `--insecure` to skip verification for a test registry you trust.'
    : 'This is a certificate problem: pass the CA certificate that issued the registry\'s certificate with `--ca FILE` (PEM), or `--insecure` to skip verification for a test registry you trust.';
}

// ---------------------------------------------------------------------------------------------
// The client: one per pull (one repository, one scheme, one token cache)

interface Challenge {
  scheme: string;
  params: Record<string, string>;
}

/** Parse `WWW-Authenticate: Bearer realm="…",service="…",scope="…"` (or `Basic realm="…"`). */
export function parseChallenge(value: string | undefined): Challenge | undefined {
  if (!value) return undefined;
  const m = /^\s*([A-Za-z][A-Za-z0-9._-]*)\s*(.*)$/s.exec(value);
  if (!m) return undefined;
  const params: Record<string, string> = {};
  const re = /([A-Za-z][A-Za-z0-9._-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?\s*/g;
  let p: RegExpExecArray | null;
  while ((p = re.exec(m[2]!)) !== null) {
    if (p[0] === '') break;
    params[p[1]!.toLowerCase()] = p[2] !== undefined ? p[2].replace(/\\(.)/g, '$1') : p[3]!;
  }
  return { scheme: m[1]!.toLowerCase(), params };
}

class RegistryClient {
  private scheme?: 'https' | 'http';
  private readonly dispatchers = new Map<string, Dispatcher>();
  /** Authorization header values by scope (this pull's scope is `repository:<repo>:pull`). */
  private readonly tokens = new Map<string, string>();
  private readonly scope: string;
  readonly host: string;
  /** How many token requests went to a realm (tests check the cache). */
  tokenRequests = 0;

  constructor(
    readonly ref: ImageReference,
    private readonly opts: PullOptions,
    private readonly signal: AbortSignal,
  ) {
    this.host = ref.registry === DOCKER_HUB ? DOCKER_HUB_API : ref.registry;
    this.scope = `repository:${ref.repository}:pull`;
  }

  get base(): string {
    return `${this.scheme ?? 'https'}://${this.host}`;
  }

  async close(): Promise<void> {
    await Promise.all([...this.dispatchers.values()].map((d) => d.destroy().catch(() => {})));
    this.dispatchers.clear();
  }

  private dispatcherFor(url: string): { dispatcher: Dispatcher; proxy?: string } {
    const proxy = proxyFor(url, readProxyEnv());
    const key = proxy ?? '';
    let d = this.dispatchers.get(key);
    if (!d) {
      const tls = { rejectUnauthorized: !this.opts.insecure, secureContext: secureContextFor(this.opts.caPem) };
      d = proxy
        ? new ProxyAgent({ uri: proxy, requestTls: tls, headersTimeout: 60_000, bodyTimeout: 120_000 })
        : new Agent({ connect: { ...tls, timeout: 30_000 }, headersTimeout: 60_000, bodyTimeout: 120_000 });
      this.dispatchers.set(key, d);
    }
    return proxy ? { dispatcher: d, proxy } : { dispatcher: d };
  }

  /** One HTTP exchange (redirects followed, Authorization dropped when the origin changes); network errors become YunErrors. */
  private async send(url: string, headers: Record<string, string>, what: string): Promise<Response> {
    let current = url;
    let hdrs = { ...headers };
    for (let hop = 0; ; hop++) {
      const { dispatcher, proxy } = this.dispatcherFor(current);
      let res;
      try {
        res = await request(current, { method: 'GET', headers: hdrs, dispatcher, signal: this.signal });
      } catch (e) {
        throw this.networkError(e, current, what, proxy);
      }
      const r: Response = { status: res.statusCode, headers: res.headers as Headers, body: res.body, url: current };
      const location = header(r, 'location');
      if ([301, 302, 303, 307, 308].includes(r.status) && location) {
        discard(r);
        if (hop >= MAX_REDIRECTS) throw new YunError('YUN_REGISTRY_ERROR', `Too many redirects fetching the ${what} (last: ${current})`, { hint: 'The registry or its storage is misconfigured; report it to the registry operator.' });
        const next = new URL(location, current);
        if (next.protocol !== 'https:' && next.protocol !== 'http:') throw new YunError('YUN_REGISTRY_ERROR', `The registry redirected the ${what} to an unsupported URL ${next.href}`);
        if (next.protocol === 'http:' && new URL(current).protocol === 'https:' && !this.opts.insecure && !isLocalAddress(next.hostname)) {
          throw new YunError('YUN_REGISTRY_ERROR', `The registry redirected the ${what} from https to plain http (${next.href})`, { hint: 'Refusing to downgrade; pass --insecure only if you trust this registry and the network.' });
        }
        if (next.origin !== new URL(current).origin) {
          hdrs = Object.fromEntries(Object.entries(hdrs).filter(([k]) => k.toLowerCase() !== 'authorization'));
        }
        current = next.href;
        continue;
      }
      return r;
    }
  }

  private networkError(e: unknown, url: string, what: string, proxy?: string): Error {
    if (isAbort(e) || this.signal.aborted) return e instanceof Error ? e : new Error(String(e));
    if (e instanceof YunError) return e;
    const { codes, messages } = errorChain(e);
    const raw = messages.find((m) => m && m !== 'fetch failed') ?? String(e);
    // OpenSSL's "…:error:0A00010B:SSL routines:ssl3_get_record:wrong version number:../ssl/…" → its reason.
    const reason = /SSL routines:[^:]*:([^:\n]+)/.exec(raw)?.[1]?.trim() ?? raw.trim();
    const code = codes.find((c) => c !== 'UND_ERR_CONNECT' && c !== 'UND_ERR') ?? codes[0];
    const why = `${reason}${code && !reason.includes(code) ? ` (${code})` : ''}`;
    const u = new URL(url);
    if (codes.some((c) => CERT_CODES.has(c)) || messages.some((m) => /certificate|self[- ]signed/i.test(m))) {
      return new YunError('YUN_REGISTRY_TLS_FAILED', `The TLS certificate of ${u.host} could not be verified while fetching the ${what}: ${why}`, {
        hint: certHint(this.opts),
        extra: { registry: this.ref.registry, reason: why },
      });
    }
    if (looksLikePlainHttp(e)) {
      return new YunError('YUN_REGISTRY_TLS_FAILED', `${u.host} did not answer in TLS at ${url} (${why}); it may speak plain HTTP`, {
        hint: 'If it is a test registry that speaks plain HTTP, pass --insecure; otherwise check the address and port.',
        extra: { registry: this.ref.registry, reason: why },
      });
    }
    const via = proxy ? ` through the proxy ${proxy.replace(/\/\/[^@/]*@/, '//***@')}` : '';
    return new YunError('YUN_REGISTRY_UNREACHABLE', `Cannot reach ${u.host}${via} to fetch the ${what} (${url}): ${why}`, {
      ...(proxy ? { hint: 'Check the registry address and port, and the proxy settings (HTTPS_PROXY / HTTP_PROXY / NO_PROXY).' } : {}),
      extra: { registry: this.ref.registry, reason: why },
    });
  }

  /** GET /v2/: decide the scheme (https; plain http only with `insecure`) and negotiate auth early. */
  async ping(): Promise<void> {
    const what = 'API version check (GET /v2/)';
    let res: Response;
    try {
      this.scheme = 'https';
      res = await this.send(`https://${this.host}/v2/`, { 'user-agent': USER_AGENT }, what);
    } catch (e) {
      if (isAbort(e) || this.signal.aborted) throw e;
      const protocolMismatch = e instanceof YunError && e.code === 'YUN_REGISTRY_TLS_FAILED' && looksLikePlainHttpReason(e);
      const hungUp = e instanceof YunError && e.code === 'YUN_REGISTRY_UNREACHABLE' && /socket hang up|other side closed|ECONNRESET|UND_ERR_SOCKET/i.test(String(e.extra.reason ?? ''));
      if (this.opts.insecure && (protocolMismatch || hungUp)) {
        this.scheme = 'http';
        res = await this.send(`http://${this.host}/v2/`, { 'user-agent': USER_AGENT }, what);
      } else if ((protocolMismatch || hungUp) && isLocalAddress(new URL(`https://${this.host}`).hostname) && (await this.speaksPlainHttp())) {
        throw new YunError('YUN_REGISTRY_TLS_FAILED', `The registry at ${this.host} speaks plain HTTP, not HTTPS (the TLS handshake failed: ${String((e as YunError).extra.reason ?? (e as Error).message)})`, {
          hint: 'Pass --insecure to pull from a test registry over plain HTTP (unencrypted), or serve the registry over TLS and pass its CA with --ca FILE.',
          extra: { registry: this.ref.registry },
        });
      } else {
        throw e;
      }
    }
    if (res.status === 200) {
      discard(res);
      return;
    }
    if (res.status === 401) {
      const challenge = parseChallenge(header(res, 'www-authenticate'));
      discard(res);
      // Basic without credentials: go on anonymously (the repository may still be public).
      if (challenge && (challenge.scheme === 'bearer' || (challenge.scheme === 'basic' && this.opts.username))) await this.authenticate(challenge);
      return;
    }
    const text = await registryErrorText(res);
    if (res.status === 404) {
      throw new YunError('YUN_REGISTRY_ERROR', `${this.base} does not speak the registry API v2: GET /v2/ answered 404${text ? ` (${text})` : ''}`, {
        hint: 'Check the registry address and port in the image reference.',
      });
    }
    throw new YunError('YUN_REGISTRY_ERROR', `${this.base} answered GET /v2/ with ${res.status}${text ? `: ${text}` : ''}`, {
      hint: 'Retry shortly; if it persists, the registry has a problem — the detail has its answer.',
    });
  }

  private async speaksPlainHttp(): Promise<boolean> {
    try {
      const { dispatcher } = this.dispatcherFor(`http://${this.host}/v2/`);
      const res = await request(`http://${this.host}/v2/`, { method: 'GET', dispatcher, signal: AbortSignal.any([this.signal, AbortSignal.timeout(5000)]) });
      res.body.on('error', () => {});
      res.body.destroy();
      return true;
    } catch {
      return false;
    }
  }

  /** Answer a challenge: a bearer token from the realm, or basic credentials. */
  private async authenticate(challenge: Challenge): Promise<void> {
    const user = this.opts.username;
    const pass = this.opts.password ?? '';
    if (challenge.scheme === 'basic') {
      if (!user) {
        throw new YunError('YUN_REGISTRY_AUTH_FAILED', `The registry ${this.ref.registry} requires a user name and password (HTTP Basic authentication) to pull ${this.ref.repository}`, { hint: 'Give the registry user name and password.' });
      }
      this.tokens.set(this.scope, `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`);
      return;
    }
    if (challenge.scheme !== 'bearer') {
      throw new YunError('YUN_REGISTRY_AUTH_FAILED', `The registry ${this.ref.registry} asks for "${challenge.scheme}" authentication, which is not supported (only Bearer and Basic)`);
    }
    const realm = challenge.params.realm;
    if (!realm) throw new YunError('YUN_REGISTRY_AUTH_FAILED', `The registry ${this.ref.registry} sent a Bearer challenge without a realm (token service URL)`, { hint: 'The registry is misconfigured; report it to its operator.' });
    let url: URL;
    try {
      url = new URL(realm);
    } catch {
      throw new YunError('YUN_REGISTRY_AUTH_FAILED', `The registry ${this.ref.registry} named a token service "${realm}" that is not a URL`, { hint: 'The registry is misconfigured; report it to its operator.' });
    }
    if (url.protocol !== 'https:' && !(url.protocol === 'http:' && (this.opts.insecure || isLocalAddress(url.hostname)))) {
      throw new YunError('YUN_REGISTRY_AUTH_FAILED', `The registry ${this.ref.registry} named a token service at ${url.href}, which is not https`, { hint: 'Refusing to send credentials unencrypted; pass --insecure only for a test registry you trust.' });
    }
    if (challenge.params.service) url.searchParams.set('service', challenge.params.service);
    const scopes = (challenge.params.scope ?? this.scope).split(' ').filter(Boolean);
    if (!scopes.includes(this.scope)) scopes.push(this.scope);
    for (const s of scopes) url.searchParams.append('scope', s);
    const headers: Record<string, string> = { accept: 'application/json', 'user-agent': USER_AGENT };
    if (user) headers.authorization = `Basic ${Buffer.from(`${user}:${pass}`).toString('base64')}`;
    this.tokenRequests++;
    const res = await this.send(url.href, headers, 'registry token');
    if (res.status === 401 || res.status === 403) {
      const text = await registryErrorText(res);
      throw new YunError(
        'YUN_REGISTRY_AUTH_FAILED',
        user
          ? `The token service ${url.origin}${url.pathname} refused the credentials of "${user}" for ${this.ref.repository} (${res.status}${text ? `: ${text}` : ''})`
          : `The token service ${url.origin}${url.pathname} refused an anonymous token for ${this.ref.repository} (${res.status}${text ? `: ${text}` : ''})`,
      );
    }
    if (res.status !== 200) {
      const text = await registryErrorText(res);
      throw new YunError('YUN_REGISTRY_ERROR', `The token service ${url.origin}${url.pathname} answered ${res.status}${text ? `: ${text}` : ''}`, { hint: 'Retry shortly; if it persists, report it to the registry operator.' });
    }
    let token: string | undefined;
    try {
      const body = JSON.parse((await readCapped(res, TOKEN_MAX_BYTES, 'token response')).toString('utf8')) as { token?: unknown; access_token?: unknown };
      token = typeof body.token === 'string' && body.token ? body.token : typeof body.access_token === 'string' && body.access_token ? body.access_token : undefined;
    } catch (e) {
      if (e instanceof YunError) throw e;
    }
    if (!token) throw new YunError('YUN_REGISTRY_AUTH_FAILED', `The token service ${url.origin}${url.pathname} answered without a token`, { hint: 'The registry is misconfigured; report it to its operator.' });
    this.tokens.set(this.scope, `Bearer ${token}`);
  }

  /** GET a registry path with auth: on 401, answer the challenge (a fresh token) and retry once. */
  async get(path: string, headers: Record<string, string>, what: string): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      const h: Record<string, string> = { 'user-agent': USER_AGENT, ...headers };
      const auth = this.tokens.get(this.scope);
      if (auth) h.authorization = auth;
      const res = await this.send(`${this.base}${path}`, h, what);
      if (res.status !== 401) {
        if (res.status === 403) {
          const text = await registryErrorText(res);
          throw new YunError('YUN_REGISTRY_AUTH_FAILED', `The registry ${this.ref.registry} denied access to ${this.ref.repository} while fetching the ${what} (403${text ? `: ${text}` : ''})`);
        }
        return res;
      }
      const challenge = parseChallenge(header(res, 'www-authenticate'));
      if (attempt === 0 && challenge && (challenge.scheme === 'bearer' || challenge.scheme === 'basic')) {
        discard(res);
        await this.authenticate(challenge);
        continue;
      }
      const text = await registryErrorText(res);
      const who = this.opts.username ? `as "${this.opts.username}"` : 'anonymously';
      throw new YunError('YUN_REGISTRY_AUTH_FAILED', `The registry ${this.ref.registry} refused to serve ${this.ref.repository} ${who} (401${text ? `: ${text}` : ''}) while fetching the ${what}`);
    }
  }
}

function looksLikePlainHttpReason(e: YunError): boolean {
  return /wrong version number|packet length too long|http request|ERR_SSL_WRONG_VERSION_NUMBER|ERR_SSL_PACKET_LENGTH_TOO_LONG/i.test(String(e.extra.reason ?? e.message));
}

// ---------------------------------------------------------------------------------------------
// Blob verification while streaming

class Verifier extends Transform {
  private readonly hash = createHash('sha256');
  bytes = 0;
  failure?: YunError;
  verified = false;

  constructor(
    private readonly desc: Descriptor,
    private readonly describe: () => string,
    private readonly onBytes: (n: number) => void,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.desc.size) {
      this.failure = mismatch(`${this.describe()} is larger than the ${this.desc.size} bytes its descriptor says (more than ${this.bytes} bytes arrived)`);
      cb(this.failure);
      return;
    }
    this.hash.update(chunk);
    this.onBytes(this.bytes);
    cb(null, chunk);
  }

  override _flush(cb: TransformCallback): void {
    if (this.bytes !== this.desc.size) {
      this.failure = mismatch(`${this.describe()} ended after ${this.bytes} bytes; its descriptor says ${this.desc.size}`);
      cb(this.failure);
      return;
    }
    const got = `sha256:${this.hash.digest('hex')}`;
    if (got !== this.desc.digest) {
      this.failure = mismatch(`${this.describe()} does not match its digest: the content hashes to ${got}`);
      cb(this.failure);
      return;
    }
    this.verified = true;
    cb();
  }
}

function mismatch(detail: string): YunError {
  return new YunError('YUN_REGISTRY_DIGEST_MISMATCH', `${detail}. Nothing of it was stored`);
}

// ---------------------------------------------------------------------------------------------
// Pull

type Store = Pick<ImageStoreApi, 'putBlob' | 'hasBlob' | 'readBlob'>;

function mediaTypeOf(parsed: { mediaType?: unknown; manifests?: unknown; config?: unknown; schemaVersion?: unknown }, contentType: string | undefined): string {
  if (typeof parsed.mediaType === 'string' && parsed.mediaType) return parsed.mediaType;
  const ct = contentType?.split(';')[0]?.trim().toLowerCase();
  if (ct && (MANIFEST_TYPES.has(ct) || INDEX_TYPES.has(ct))) return ct;
  if (Array.isArray(parsed.manifests)) return MT.ociIndex;
  if (parsed.config && typeof parsed.config === 'object') return MT.ociManifest;
  return ct ?? 'unknown';
}

function validDescriptor(d: unknown): d is Descriptor {
  const x = d as Descriptor;
  return !!x && typeof x === 'object' && typeof x.digest === 'string' && typeof x.size === 'number' && Number.isSafeInteger(x.size) && x.size >= 0;
}

function platformText(p?: { os?: string; architecture?: string; variant?: string }): string {
  if (!p) return '(no platform)';
  return [p.os ?? '?', p.architecture ?? '?', ...(p.variant ? [p.variant] : [])].join('/');
}

/**
 * Pull `ref` into `store`: resolve the manifest (choosing the platform from an index), fetch the
 * config and the layers that are not there yet (each verified while it streams in), then store the
 * manifest itself. Returns the image; its digest is the platform manifest's.
 */
export async function pullImage(store: Store, ref: string, opts: PullOptions = {}): Promise<ImageRecord> {
  const parsed = parseReference(ref);
  const want = opts.platform ?? { os: 'linux', architecture: 'amd64' };
  const progress = opts.progress ?? (() => {});
  const internal = new AbortController();
  const signal = opts.signal ? AbortSignal.any([opts.signal, internal.signal]) : internal.signal;
  const client = new RegistryClient(parsed, opts, signal);
  const shown = parsed.tag !== undefined ? `${parsed.registry}/${parsed.repository}:${parsed.tag}` : `${parsed.registry}/${parsed.repository}@${parsed.digest}`;
  try {
    progress({ phase: 'manifest', message: `resolving ${shown}` });
    await client.ping();

    // 1. The manifest (or an index, then the chosen platform's manifest).
    const reference = parsed.digest ?? parsed.tag!;
    let m = await fetchManifest(client, reference, parsed.digest ? { digest: parsed.digest } : undefined, shown);
    if (INDEX_TYPES.has(m.mediaType)) {
      const index = m.json as unknown as Index;
      if (!Array.isArray(index.manifests)) throw badManifest(shown, 'the index has no "manifests" list');
      const usable = index.manifests.filter((d) => validDescriptor(d) && d.platform && !(d.platform.os === 'unknown' && d.platform.architecture === 'unknown'));
      const candidates = usable.filter((d) => d.platform!.os === want.os && d.platform!.architecture === want.architecture && (d.mediaType === undefined || MANIFEST_TYPES.has(d.mediaType)));
      if (candidates.length === 0) {
        const there = [...new Set(usable.map((d) => platformText(d.platform)))];
        throw new YunError(
          'YUN_REGISTRY_NO_PLATFORM',
          `The image ${shown} has no ${want.os}/${want.architecture} variant; its index lists ${there.length ? there.join(', ') : 'no platforms'}`,
          { extra: { platforms: there }, hint: `Use an image built for ${want.os}/${want.architecture}${opts.platform ? ', or ask for one of the platforms listed' : ''}.` },
        );
      }
      // Prefer the plain entry (no variant) or, for arm64, v8: what a runtime on this platform runs.
      const chosen = candidates.find((d) => !d.platform!.variant) ?? candidates.find((d) => d.platform!.variant === 'v8') ?? candidates[0]!;
      if (!DIGEST_RE.test(chosen.digest)) throw badManifest(shown, `its index names the ${platformText(chosen.platform)} manifest by "${chosen.digest}", not a sha256 digest`);
      progress({ phase: 'manifest', digest: chosen.digest, message: `index ${short(m.digest)}: ${platformText(chosen.platform)} is ${chosen.digest}` });
      m = await fetchManifest(client, chosen.digest, { digest: chosen.digest, size: chosen.size }, `${shown} (${platformText(chosen.platform)})`);
      if (INDEX_TYPES.has(m.mediaType)) throw badManifest(shown, `the ${platformText(chosen.platform)} entry of the index is itself an index`);
    }
    if (!MANIFEST_TYPES.has(m.mediaType)) {
      if (/distribution\.manifest\.v1/.test(m.mediaType) || (m.json as { schemaVersion?: unknown }).schemaVersion === 1) {
        throw badManifest(shown, 'it is a Docker schema 1 manifest, which is not supported', 'Re-push the image with a current Docker or skopeo (schema 2 / OCI).');
      }
      throw badManifest(shown, `its media type "${m.mediaType}" is not an image manifest or index`);
    }
    const manifest = m.json as unknown as Manifest;
    if (manifest.schemaVersion !== 2 || !validDescriptor(manifest.config) || !Array.isArray(manifest.layers) || !manifest.layers.every(validDescriptor)) {
      throw badManifest(shown, 'it lacks a valid config descriptor or layers list');
    }
    const configType = manifest.config.mediaType;
    if (configType && configType !== MT.ociConfig && configType !== MT.dockerConfig) {
      throw badManifest(shown, `it is not a container image but an artifact of another kind (config media type "${configType}")`, 'Pull a container image; artifacts such as Helm charts or signatures cannot run as tasks.');
    }
    for (const d of [manifest.config, ...manifest.layers]) {
      if (!DIGEST_RE.test(d.digest)) throw badManifest(shown, `it names a blob by "${d.digest}", not a sha256 digest`);
    }
    progress({ phase: 'manifest', digest: m.digest, message: `manifest ${m.digest} (${manifest.layers.length} layer${manifest.layers.length === 1 ? '' : 's'})` });

    // 2. The config (read whole: it is parsed) and the layers (streamed, a few at a time).
    if (manifest.config.size > CONFIG_MAX_BYTES) throw tooLarge('image config', `${manifest.config.size} bytes`, CONFIG_MAX_BYTES, `${client.base}/v2/${parsed.repository}/blobs/${manifest.config.digest}`);
    await fetchBlob(client, store, manifest.config, `config ${manifest.config.digest} of ${shown}`, progress);
    const configBytes = await store.readBlob(manifest.config.digest);
    let config: ImageConfig;
    try {
      config = JSON.parse(configBytes.toString('utf8')) as ImageConfig;
    } catch (e) {
      throw badManifest(shown, `its config ${manifest.config.digest} is not JSON (${(e as Error).message})`);
    }
    if (!config || typeof config !== 'object') throw badManifest(shown, `its config ${manifest.config.digest} is not a JSON object`);
    if (config.architecture && config.os && (config.os !== want.os || config.architecture !== want.architecture)) {
      progress({ phase: 'manifest', digest: m.digest, message: `warning: the image is for ${config.os}/${config.architecture}, not ${want.os}/${want.architecture}` });
    }
    const layers = manifest.layers;
    let next = 0;
    const worker = async () => {
      while (next < layers.length && !signal.aborted) {
        const i = next++;
        await fetchBlob(client, store, layers[i]!, `layer ${i + 1}/${layers.length} (${layers[i]!.digest}) of ${shown}`, progress);
      }
    };
    const workers = Array.from({ length: Math.min(LAYER_CONCURRENCY, layers.length) }, () =>
      worker().catch((e: unknown) => {
        internal.abort();
        throw e;
      }),
    );
    const results = await Promise.allSettled(workers);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected' && !isAbort(r.reason));
    if (failed) throw failed.reason;
    const aborted = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (aborted) throw aborted.reason;
    if (opts.signal?.aborted) throw opts.signal.reason ?? new Error('aborted');

    // 3. The manifest last: its presence in the store means the whole image is there.
    if (!store.hasBlob(m.digest)) await store.putBlob(m.bytes, { digest: m.digest, size: m.bytes.length });
    const size = manifest.config.size + layers.reduce((a, l) => a + l.size, 0);
    progress({ phase: 'done', digest: m.digest, bytes: size, total: size, message: `pulled ${parsed.name} (${m.digest})` });
    return { names: [parsed.name], digest: m.digest, manifest, config, size };
  } finally {
    await client.close();
  }
}

function badManifest(shown: string, why: string, hint?: string): YunError {
  return new YunError('YUN_REGISTRY_ERROR', `The manifest of ${shown} is not usable: ${why}`, {
    hint: hint ?? 'The image in the registry is malformed or of an unsupported kind; re-push it with a current tool (docker, skopeo).',
  });
}

interface FetchedManifest {
  bytes: Buffer;
  digest: string;
  mediaType: string;
  json: Record<string, unknown>;
}

async function fetchManifest(client: RegistryClient, reference: string, expected: { digest: string; size?: number } | undefined, shown: string): Promise<FetchedManifest> {
  const path = `/v2/${client.ref.repository}/manifests/${reference}`;
  const res = await client.get(path, { accept: ACCEPT }, `manifest of ${shown}`);
  if (res.status === 404) {
    const text = await registryErrorText(res);
    const what = /NAME_UNKNOWN/.test(text) ? `no repository "${client.ref.repository}"` : `no manifest "${reference}" in ${client.ref.repository}`;
    throw new YunError('YUN_REGISTRY_NOT_FOUND', `The registry ${client.ref.registry} has ${what} (404${text ? `: ${text}` : ''}); looking for ${shown}`, {
      extra: { registry: client.ref.registry, repository: client.ref.repository, reference },
    });
  }
  if (res.status !== 200) {
    const text = await registryErrorText(res);
    throw new YunError('YUN_REGISTRY_ERROR', `The registry ${client.ref.registry} answered ${res.status} for the manifest of ${shown}${text ? `: ${text}` : ''}`, {
      hint: 'Retry shortly; if it persists, the registry has a problem — the detail has its answer.',
    });
  }
  const bytes = await readCapped(res, MANIFEST_MAX_BYTES, `manifest of ${shown}`);
  const digest = sha256(bytes);
  if (expected && digest !== expected.digest) {
    throw mismatch(`The manifest ${expected.digest} of ${shown} from ${client.ref.registry} does not match its digest: the content hashes to ${digest}`);
  }
  if (expected?.size !== undefined && bytes.length !== expected.size) {
    throw mismatch(`The manifest ${expected.digest} of ${shown} is ${bytes.length} bytes; the index says ${expected.size}`);
  }
  const said = header(res, 'docker-content-digest');
  if (!expected && said && said.startsWith('sha256:') && said !== digest) {
    throw mismatch(`The manifest of ${shown} from ${client.ref.registry} does not match the digest the registry announced (${said}): the content hashes to ${digest}`);
  }
  let json: Record<string, unknown>;
  try {
    json = JSON.parse(bytes.toString('utf8')) as Record<string, unknown>;
  } catch (e) {
    throw badManifest(shown, `it is not JSON (${(e as Error).message})`);
  }
  if (!json || typeof json !== 'object' || Array.isArray(json)) throw badManifest(shown, 'it is not a JSON object');
  return { bytes, digest, mediaType: mediaTypeOf(json, header(res, 'content-type')), json };
}

async function fetchBlob(client: RegistryClient, store: Store, desc: Descriptor, label: string, progress: (e: PullProgressEvent) => void): Promise<void> {
  if (store.hasBlob(desc.digest)) {
    progress({ phase: 'blob', digest: desc.digest, bytes: desc.size, total: desc.size, message: `${label}: already present` });
    return;
  }
  const res = await client.get(`/v2/${client.ref.repository}/blobs/${desc.digest}`, {}, label);
  if (res.status !== 200) {
    const text = await registryErrorText(res);
    if (res.status === 404) {
      throw new YunError('YUN_REGISTRY_ERROR', `The registry ${client.ref.registry} does not have the ${label}, which the manifest lists (404${text ? `: ${text}` : ''})`, {
        hint: 'The image in the registry is incomplete; re-push it.',
      });
    }
    throw new YunError('YUN_REGISTRY_ERROR', `The registry ${client.ref.registry} answered ${res.status} for the ${label}${text ? `: ${text}` : ''}`, {
      hint: 'Retry shortly; if it persists, the registry has a problem — the detail has its answer.',
    });
  }
  const declared = Number(header(res, 'content-length'));
  if (header(res, 'content-length') !== undefined && Number.isFinite(declared) && declared !== desc.size && !header(res, 'content-encoding')) {
    discard(res);
    throw mismatch(`The ${label} from ${client.ref.registry} is ${declared} bytes; its descriptor says ${desc.size}`);
  }
  progress({ phase: 'blob', digest: desc.digest, bytes: 0, total: desc.size, message: label });
  let last = Date.now();
  const verifier = new Verifier(desc, () => `The ${label} from ${client.ref.registry}`, (n) => {
    const now = Date.now();
    if (now - last >= 100 && n < desc.size) {
      last = now;
      progress({ phase: 'blob', digest: desc.digest, bytes: n, total: desc.size });
    }
  });
  let bodyError: unknown;
  const body = res.body as unknown as Readable;
  body.on('error', (e) => {
    bodyError = e;
    verifier.destroy(e);
  });
  body.pipe(verifier);
  try {
    await store.putBlob(verifier, { digest: desc.digest, size: desc.size });
  } catch (e) {
    body.destroy();
    verifier.destroy();
    if (verifier.failure) throw verifier.failure;
    if (bodyError !== undefined) {
      if (isAbort(bodyError)) throw bodyError;
      const { messages } = errorChain(bodyError);
      throw new YunError('YUN_REGISTRY_UNREACHABLE', `The download of the ${label} from ${client.ref.registry} broke off after ${verifier.bytes} of ${desc.size} bytes: ${messages[0] ?? String(bodyError)}`, {
        hint: 'Pull again; blobs already stored are not fetched twice.',
      });
    }
    throw e;
  }
  if (!verifier.verified) {
    // The store returned without reading the stream to its end: never trust such a blob.
    throw mismatch(`The ${label} was not fully read and verified by the store`);
  }
  progress({ phase: 'blob', digest: desc.digest, bytes: desc.size, total: desc.size, message: `${label}: done` });
}
