/**
 * Test helpers for the registry client: a blob store that really stores and verifies, OCI layouts
 * written by hand (pushed with skopeo), a real `docker-registry` process, and a small fake
 * registry (node:http) with a token service, for the auth and tamper cases.
 * Everything listens on 127.0.0.1 only.
 */
import { createHash } from 'node:crypto';
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, closeSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { gzipSync } from 'node:zlib';
import { Agent, request } from 'undici';
import { MT, type Descriptor } from '../oci.js';

export function sha256(buf: Buffer): string {
  return `sha256:${createHash('sha256').update(buf).digest('hex')}`;
}

/** A free TCP port on 127.0.0.1 (bound, read, released). */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export function which(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '/usr/local/bin:/usr/bin:/bin').split(':')) {
    const p = join(dir, cmd);
    if (existsSync(p)) return p;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------

/** The three store methods the pull uses, backed by a directory; verifies digest and size like the real store. */
export class FakeStore {
  /** Digests stored by putBlob, in order. */
  readonly puts: string[] = [];

  constructor(readonly root: string) {
    mkdirSync(join(root, 'blobs', 'sha256'), { recursive: true });
  }

  blobPath(digest: string): string {
    return join(this.root, 'blobs', 'sha256', digest.replace(/^sha256:/, ''));
  }

  hasBlob(digest: string): boolean {
    return existsSync(this.blobPath(digest));
  }

  async readBlob(digest: string): Promise<Buffer> {
    return readFileSync(this.blobPath(digest));
  }

  async putBlob(source: NodeJS.ReadableStream | Buffer, expected?: { digest?: string; size?: number }): Promise<{ digest: string; size: number }> {
    const tmp = join(this.root, `tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
    const hash = createHash('sha256');
    let size = 0;
    try {
      if (Buffer.isBuffer(source)) {
        hash.update(source);
        size = source.length;
        writeFileSync(tmp, source);
      } else {
        const counter = new Transform({
          transform(chunk: Buffer, _e, cb) {
            hash.update(chunk);
            size += chunk.length;
            cb(null, chunk);
          },
        });
        await pipeline(source as NodeJS.ReadableStream, counter, createWriteStream(tmp));
      }
      const digest = `sha256:${hash.digest('hex')}`;
      if (expected?.digest && expected.digest !== digest) throw new Error(`fake store: blob ${expected.digest} hashes to ${digest}`);
      if (expected?.size !== undefined && expected.size !== size) throw new Error(`fake store: blob ${digest} is ${size} bytes, expected ${expected.size}`);
      renameSync(tmp, this.blobPath(digest));
      this.puts.push(digest);
      return { digest, size };
    } catch (e) {
      rmSync(tmp, { force: true });
      throw e;
    }
  }
}

// ---------------------------------------------------------------------------------------------

export interface BuiltImage {
  manifest: Descriptor;
  manifestBytes: Buffer;
  config: Descriptor;
  layers: Descriptor[];
}

/** An OCI image layout written by hand (blobs, index.json, oci-layout). */
export class Layout {
  readonly blobs = new Map<string, Buffer>();
  private readonly refs: Descriptor[] = [];

  constructor(readonly dir: string) {
    mkdirSync(join(dir, 'blobs', 'sha256'), { recursive: true });
    writeFileSync(join(dir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
    this.flush();
  }

  add(bytes: Buffer, mediaType: string, extra: Partial<Descriptor> = {}): Descriptor {
    const digest = sha256(bytes);
    this.blobs.set(digest, bytes);
    writeFileSync(join(this.dir, 'blobs', 'sha256', digest.slice(7)), bytes);
    return { mediaType, digest, size: bytes.length, ...extra };
  }

  /** A gzip layer from the files of `rootDir` (tar made deterministic). */
  layerFrom(rootDir: string): { desc: Descriptor; diffId: string } {
    const tar = execFileSync('tar', ['-C', rootDir, '--sort=name', '--owner=0', '--group=0', '--numeric-owner', '--mtime=@0', '-cf', '-', '.'], { maxBuffer: 256 * 1024 * 1024 });
    return { desc: this.add(gzipSync(tar), MT.ociLayerGzip), diffId: sha256(tar) };
  }

  /** An image with one layer per root directory. */
  image(opts: { rootDir: string | string[]; os?: string; architecture: string; cmd?: string[] }): BuiltImage {
    const layers = (Array.isArray(opts.rootDir) ? opts.rootDir : [opts.rootDir]).map((d) => this.layerFrom(d));
    const os = opts.os ?? 'linux';
    const config = this.add(
      Buffer.from(JSON.stringify({ architecture: opts.architecture, os, config: { Cmd: opts.cmd ?? ['sh'], Env: ['PATH=/bin'] }, rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) } })),
      MT.ociConfig,
    );
    const manifestBytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociManifest, config, layers: layers.map((l) => l.desc) }));
    const manifest = this.add(manifestBytes, MT.ociManifest, { platform: { os, architecture: opts.architecture } });
    return { manifest, manifestBytes, config, layers: layers.map((l) => l.desc) };
  }

  index(manifests: Descriptor[]): { desc: Descriptor; bytes: Buffer } {
    const bytes = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociIndex, manifests }));
    return { desc: this.add(bytes, MT.ociIndex), bytes };
  }

  /** Name a manifest or index in index.json (`oci:DIR:NAME`). */
  ref(name: string, desc: Descriptor): void {
    const { platform: _p, ...plain } = desc;
    this.refs.push({ ...plain, annotations: { 'org.opencontainers.image.ref.name': name } });
    this.flush();
  }

  private flush(): void {
    writeFileSync(join(this.dir, 'index.json'), JSON.stringify({ schemaVersion: 2, manifests: this.refs }));
  }
}

export async function run(cmd: string, args: string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(' ')} failed: ${err.message}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** `skopeo copy` from the layout to a plain-HTTP registry on 127.0.0.1. */
export async function skopeoPush(layoutDir: string, name: string, dest: string, opts: { all?: boolean; dockerFormat?: boolean } = {}): Promise<void> {
  const args = ['copy', '--insecure-policy', '--dest-tls-verify=false', '--retry-times=0'];
  if (opts.all) args.push('--all', '--preserve-digests');
  if (opts.dockerFormat) args.push('--format', 'v2s2');
  args.push(`oci:${layoutDir}:${name}`, `docker://${dest}`);
  await run('skopeo', args);
}

// ---------------------------------------------------------------------------------------------

export interface RegistryProcess {
  port: number;
  pid: number;
  host: string;
  stop(): Promise<void>;
  log(): string;
}

/** Start Debian's `docker-registry serve` on 127.0.0.1 (HTTPS when `tls` is given); resolves once GET /v2/ answers. */
export async function startRegistry(dir: string, storage: string, tls?: { certFile: string; keyFile: string; caPem: string }): Promise<RegistryProcess> {
  mkdirSync(dir, { recursive: true });
  const port = await freePort();
  const config = [
    'version: 0.1',
    'log:',
    '  level: warn',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${storage}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    ...(tls ? ['  tls:', `    certificate: ${tls.certFile}`, `    key: ${tls.keyFile}`] : []),
    '',
  ].join('\n');
  const cfgFile = join(dir, 'config.yml');
  writeFileSync(cfgFile, config);
  const logFile = join(dir, 'registry.log');
  const fd = openSync(logFile, 'w');
  let child: ChildProcess;
  try {
    child = spawn('docker-registry', ['serve', cfgFile], { stdio: ['ignore', fd, fd], detached: false });
  } finally {
    closeSync(fd);
  }
  const pid = child.pid!;
  let exited = false;
  const exitedP = new Promise<void>((resolve) => child.once('exit', () => { exited = true; resolve(); }));
  child.once('error', () => {});
  const stop = async () => {
    if (exited) return;
    try { process.kill(pid, 'SIGTERM'); } catch { return; }
    const t = setTimeout(() => { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }, 3000);
    await exitedP;
    clearTimeout(t);
  };
  const log = () => { try { return readFileSync(logFile, 'utf8'); } catch { return ''; } };
  const agent = new Agent({ connect: tls ? { ca: tls.caPem } : {} });
  const url = `${tls ? 'https' : 'http'}://127.0.0.1:${port}/v2/`;
  const deadline = Date.now() + 15_000;
  try {
    for (;;) {
      if (exited) throw new Error(`docker-registry exited at start:\n${log()}`);
      try {
        const r = await request(url, { dispatcher: agent });
        await r.body.dump();
        if (r.statusCode === 200) break;
      } catch {
        /* not yet */
      }
      if (Date.now() > deadline) throw new Error(`docker-registry did not answer on ${url} within 15 s:\n${log()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  } catch (e) {
    await stop();
    throw e;
  } finally {
    await agent.close();
  }
  return { port, pid, host: `127.0.0.1:${port}`, stop, log };
}

// ---------------------------------------------------------------------------------------------

export interface FakeContent {
  blobs: Map<string, Buffer>;
  /** `tag or digest` → manifest/index bytes and media type (any repository). */
  manifests: Map<string, { bytes: Buffer; mediaType: string }>;
}

export interface FakeRegistry {
  host: string;
  port: number;
  tokenRequests: number;
  /** Authorization headers the second ("CDN") server saw on redirected blob downloads. */
  cdnAuthorization: (string | undefined)[];
  cdnHits: number;
  close(): Promise<void>;
}

/**
 * A small registry with auth. `auth: 'bearer'`: 401 with a Bearer challenge, tokens from /token for
 * the basic credentials given; `'basic'`: HTTP basic on every request. Repository prefixes pick a
 * behaviour: `tampered/` flips a byte in every layer, `redirect/` sends blobs to a second server
 * (307), `liar/` answers manifests by digest with other bytes.
 */
export async function startFakeRegistry(content: FakeContent, opts: { auth: 'bearer' | 'basic'; username: string; password: string; layers: Set<string> }): Promise<FakeRegistry> {
  const tokens = new Map<string, string>(); // token → scope
  const basic = `Basic ${Buffer.from(`${opts.username}:${opts.password}`).toString('base64')}`;
  const state = { tokenRequests: 0, cdnAuthorization: [] as (string | undefined)[], cdnHits: 0 };
  let port = 0;
  let cdnPort = 0;

  const cdn = createServer((req, res) => {
    state.cdnHits++;
    state.cdnAuthorization.push(req.headers.authorization);
    const digest = decodeURIComponent(req.url!.replace(/^\/blob\//, ''));
    const blob = content.blobs.get(digest);
    if (!blob) { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': blob.length }).end(blob);
  });

  const fail = (res: ServerResponse, status: number, code: string, message: string, hdrs: Record<string, string> = {}) => {
    const body = JSON.stringify({ errors: [{ code, message, detail: null }] });
    res.writeHead(status, { 'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0', ...hdrs }).end(body);
  };

  const challenge = (repo?: string) =>
    opts.auth === 'basic'
      ? 'Basic realm="fake-registry"'
      : `Bearer realm="http://127.0.0.1:${port}/token",service="fake-registry"${repo ? `,scope="repository:${repo}:pull"` : ''}`;

  const authorized = (req: IncomingMessage, repo: string): boolean => {
    const h = req.headers.authorization ?? '';
    if (opts.auth === 'basic') return h === basic;
    const m = /^Bearer (.+)$/.exec(h);
    const scope = m ? tokens.get(m[1]!) : undefined;
    return !!scope && scope.split(' ').includes(`repository:${repo}:pull`);
  };

  const server = createServer((req, res) => {
    const u = new URL(req.url!, `http://127.0.0.1:${port}`);
    if (u.pathname === '/token') {
      state.tokenRequests++;
      if (req.headers.authorization !== basic) {
        res.writeHead(401, { 'content-type': 'application/json' }).end(JSON.stringify({ details: 'incorrect username or password' }));
        return;
      }
      if (u.searchParams.get('service') !== 'fake-registry') { res.writeHead(400).end('bad service'); return; }
      const token = `tok-${state.tokenRequests}-${Math.random().toString(36).slice(2)}`;
      tokens.set(token, u.searchParams.getAll('scope').join(' '));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ token, expires_in: 300 }));
      return;
    }
    if (u.pathname === '/v2/' || u.pathname === '/v2') {
      if (!req.headers.authorization || (opts.auth === 'basic' && req.headers.authorization !== basic)) {
        fail(res, 401, 'UNAUTHORIZED', 'authentication required', { 'www-authenticate': challenge() });
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', 'docker-distribution-api-version': 'registry/2.0' }).end('{}');
      return;
    }
    const m = /^\/v2\/(.+)\/(manifests|blobs)\/([^/]+)$/.exec(u.pathname);
    if (!m) { fail(res, 404, 'UNSUPPORTED', 'not here'); return; }
    const [, repo, kind, ref] = m as unknown as [string, string, string, string];
    if (!authorized(req, repo)) {
      fail(res, 401, 'UNAUTHORIZED', 'authentication required', { 'www-authenticate': challenge(repo) });
      return;
    }
    if (kind === 'manifests') {
      if (ref === 'huge') {
        const bytes = Buffer.alloc(5 * 1024 * 1024, 0x20);
        res.writeHead(200, { 'content-type': MT.ociManifest, 'content-length': bytes.length }).end(bytes);
        return;
      }
      const mf = content.manifests.get(ref);
      if (!mf) { fail(res, 404, 'MANIFEST_UNKNOWN', 'manifest unknown'); return; }
      const bytes = repo.startsWith('liar/') && ref.startsWith('sha256:') ? Buffer.concat([mf.bytes, Buffer.from(' ')]) : mf.bytes;
      res.writeHead(200, { 'content-type': mf.mediaType, 'content-length': bytes.length, 'docker-content-digest': sha256(mf.bytes) }).end(bytes);
      return;
    }
    const blob = content.blobs.get(ref);
    if (!blob) { fail(res, 404, 'BLOB_UNKNOWN', 'blob unknown to registry'); return; }
    if (repo.startsWith('redirect/')) {
      res.writeHead(307, { location: `http://127.0.0.1:${cdnPort}/blob/${encodeURIComponent(ref)}` }).end();
      return;
    }
    let bytes = blob;
    if (repo.startsWith('tampered/') && opts.layers.has(ref)) {
      bytes = Buffer.from(blob);
      bytes[bytes.length >> 1] ^= 0xff;
    }
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': bytes.length, 'docker-content-digest': ref }).end(bytes);
  });

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  await new Promise<void>((resolve) => cdn.listen(0, '127.0.0.1', resolve));
  port = (server.address() as AddressInfo).port;
  cdnPort = (cdn.address() as AddressInfo).port;
  const close = async () => {
    server.closeAllConnections();
    cdn.closeAllConnections();
    await Promise.all([new Promise((r) => server.close(r)), new Promise((r) => cdn.close(r))]);
  };
  return {
    host: `127.0.0.1:${port}`,
    port,
    get tokenRequests() { return state.tokenRequests; },
    cdnAuthorization: state.cdnAuthorization,
    get cdnHits() { return state.cdnHits; },
    close,
  };
}

