import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { YunError } from '../errors/errors.js';
import { requireOrSkip } from '../drivers/testing/conformance.js';
import { createCA, issueCertificate } from '../pki/ca.js';
import { MT } from './oci.js';
import { ImageStore } from './image-store.js';
import { MANIFEST_MAX_BYTES, parseChallenge, parseReference, pullImage, type PullProgressEvent } from './registry.js';
import { FakeStore, Layout, skopeoPush, startFakeRegistry, startRegistry, which, type BuiltImage, type FakeRegistry, type RegistryProcess } from './testing/registry.js';

// ---------------------------------------------------------------------------------------------
// References and challenges (pure)

describe('parseReference', () => {
  it('parses registries with ports, nested repositories, tags and digests', () => {
    assert.deepEqual(parseReference('127.0.0.1:5000/busybox:1.35'), { registry: '127.0.0.1:5000', repository: 'busybox', tag: '1.35', name: '127.0.0.1:5000/busybox:1.35' });
    const d = `sha256:${'ab'.repeat(32)}`;
    assert.deepEqual(parseReference(`localhost:5000/a/b@${d}`), { registry: 'localhost:5000', repository: 'a/b', digest: d, name: `localhost:5000/a/b@${d}` });
    assert.deepEqual(parseReference(`localhost/a/b:v1@${d}`), { registry: 'localhost', repository: 'a/b', tag: 'v1', digest: d, name: 'localhost/a/b:v1' });
    assert.deepEqual(parseReference('registry.example.com/team/app'), { registry: 'registry.example.com', repository: 'team/app', tag: 'latest', name: 'registry.example.com/team/app:latest' });
  });

  it('defaults to docker.io, library/ and latest, and names images in the familiar form', () => {
    assert.deepEqual(parseReference('busybox'), { registry: 'docker.io', repository: 'library/busybox', tag: 'latest', name: 'busybox:latest' });
    assert.deepEqual(parseReference('busybox:1.36'), { registry: 'docker.io', repository: 'library/busybox', tag: '1.36', name: 'busybox:1.36' });
    assert.deepEqual(parseReference('someone/app:v2'), { registry: 'docker.io', repository: 'someone/app', tag: 'v2', name: 'someone/app:v2' });
    assert.deepEqual(parseReference('docker.io/library/busybox'), { registry: 'docker.io', repository: 'library/busybox', tag: 'latest', name: 'busybox:latest' });
    assert.deepEqual(parseReference('index.docker.io/someone/app'), { registry: 'docker.io', repository: 'someone/app', tag: 'latest', name: 'someone/app:latest' });
    assert.equal(parseReference('my-registry.local:443/x_y/z__w:1').repository, 'x_y/z__w');
  });

  it('rejects malformed references with a clear YUN_IMAGE_REFERENCE_INVALID', () => {
    const bad: [string, RegExp][] = [
      ['', /empty/],
      ['Busybox', /lowercase/],
      ['127.0.0.1:5000/BusyBox:1', /lowercase/],
      ['http://127.0.0.1:5000/busybox', /URL scheme.*--insecure|no URL scheme/s],
      ['busybox:', /not a valid tag/],
      ['busybox:-x', /not a valid tag/],
      ['busybox@sha256:abc', /not a sha256 digest/],
      [`busybox@md5:${'a'.repeat(32)}`, /only sha256/],
      ['busybox@latest', /not a digest/],
      ['a//b', /empty path component/],
      ['a/b/', /empty path component/],
      ['127.0.0.1:99999/x', /out of range/],
      ['bad_host:5000/x', /not a valid registry/],
      ['a b', /white space/],
      ['x/-y', /not a valid repository path component/],
    ];
    for (const [ref, re] of bad) {
      assert.throws(() => parseReference(ref), (e: unknown) => {
        assert.ok(e instanceof YunError, ref);
        assert.equal(e.code, 'YUN_IMAGE_REFERENCE_INVALID', ref);
        assert.match(e.message, re, ref);
        return true;
      });
    }
  });
});

describe('parseChallenge', () => {
  it('reads Bearer and Basic challenges', () => {
    assert.deepEqual(parseChallenge('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull"'), {
      scheme: 'bearer',
      params: { realm: 'https://auth.docker.io/token', service: 'registry.docker.io', scope: 'repository:library/busybox:pull' },
    });
    assert.deepEqual(parseChallenge('Basic realm="Registry Realm"'), { scheme: 'basic', params: { realm: 'Registry Realm' } });
    assert.deepEqual(parseChallenge('Bearer realm=http://x/t, service=s'), { scheme: 'bearer', params: { realm: 'http://x/t', service: 's' } });
    assert.equal(parseChallenge(undefined), undefined);
  });
});

// ---------------------------------------------------------------------------------------------
// Fixtures shared by the registry tests

const haveTools = !!which('docker-registry') && !!which('skopeo');
const whyNoTools = 'needs the Debian packages docker-registry and skopeo (apt-get install docker-registry skopeo)';

interface Fixtures {
  tmp: string;
  layout: Layout;
  amd: BuiltImage;
  arm: BuiltImage;
  index: { desc: { digest: string }; bytes: Buffer };
  caPem: string;
  wrongCaPem: string;
}

let fx: Fixtures | undefined;
let fxError: unknown;
const stores: string[] = [];

function newStore(): FakeStore {
  const dir = join(fx!.tmp, `store-${stores.length}`);
  stores.push(dir);
  return new FakeStore(dir);
}

async function expectError(p: Promise<unknown>, code: string, ...patterns: RegExp[]): Promise<YunError> {
  try {
    await p;
  } catch (e) {
    assert.ok(e instanceof YunError, `expected a YunError ${code}, got ${(e as Error)?.stack ?? String(e)}`);
    assert.equal(e.code, code, e.message);
    for (const re of patterns) assert.match(e.message, re);
    return e;
  }
  assert.fail(`expected ${code}, but it succeeded`);
}

before(async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'yun-registry-'));
  try {
    // busybox for linux/amd64 (the machine's /bin/busybox from busybox-static), and a tiny "arm64" image.
    const amdRoot = join(tmp, 'root-amd64');
    mkdirSync(join(amdRoot, 'bin'), { recursive: true });
    const busybox = existsSync('/bin/busybox') ? '/bin/busybox' : which('busybox');
    if (busybox) copyFileSync(busybox, join(amdRoot, 'bin', 'busybox'));
    else writeFileSync(join(amdRoot, 'bin', 'busybox'), 'not really busybox\n');
    symlinkSync('busybox', join(amdRoot, 'bin', 'sh'));
    const armRoot = join(tmp, 'root-arm64');
    mkdirSync(armRoot);
    writeFileSync(join(armRoot, 'arch.txt'), 'arm64\n');
    const layout = new Layout(join(tmp, 'layout'));
    const amd = layout.image({ rootDir: amdRoot, architecture: 'amd64' });
    const arm = layout.image({ rootDir: armRoot, architecture: 'arm64' });
    // arm64 first: a client that takes the first entry would get it wrong.
    const index = layout.index([
      { ...arm.manifest, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
      { ...amd.manifest, platform: { os: 'linux', architecture: 'amd64' } },
    ]);
    layout.ref('t1', amd.manifest);
    layout.ref('multi', index.desc as never);
    const ca = await createCA('Yunstack registry test CA');
    const wrong = await createCA('Some other CA');
    fx = { tmp, layout, amd, arm, index, caPem: ca.certPem, wrongCaPem: wrong.certPem };
    const server = await issueCertificate(ca, { commonName: '127.0.0.1', hosts: ['127.0.0.1', 'localhost'], usage: 'server', days: 2 });
    writeFileSync(join(tmp, 'registry.crt'), server.certPem);
    writeFileSync(join(tmp, 'registry.key'), server.keyPem, { mode: 0o600 });
  } catch (e) {
    fxError = e;
    throw e;
  }
});

after(() => {
  if (fx) rmSync(fx.tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------

describe('pull from a real docker-registry (HTTP and HTTPS on 127.0.0.1)', () => {
  let plain: RegistryProcess | undefined;
  let secure: RegistryProcess | undefined;

  before(async () => {
    if (!haveTools || !fx) return;
    const storage = join(fx.tmp, 'registry-storage');
    plain = await startRegistry(join(fx.tmp, 'reg-http'), storage);
    secure = await startRegistry(join(fx.tmp, 'reg-https'), storage, { certFile: join(fx.tmp, 'registry.crt'), keyFile: join(fx.tmp, 'registry.key'), caPem: fx.caPem });
    const dir = join(fx.tmp, 'layout');
    await skopeoPush(dir, 't1', `${plain.host}/busybox:t1`);
    await skopeoPush(dir, 'multi', `${plain.host}/busybox:multi`, { all: true });
    await skopeoPush(dir, 't1', `${plain.host}/busybox:docker`, { dockerFormat: true });
  });

  after(async () => {
    await plain?.stop();
    await secure?.stop();
  });

  it('pulls over plain HTTP with insecure, verifies and stores every blob, reports progress', async (t) => {
    if (!requireOrSkip(t, haveTools, whyNoTools)) return;
    const store = newStore();
    const events: PullProgressEvent[] = [];
    const rec = await pullImage(store, `${plain!.host}/busybox:t1`, { insecure: true, progress: (e) => events.push(e) });
    const { amd } = fx!;
    assert.equal(rec.digest, amd.manifest.digest);
    assert.deepEqual(rec.names, [`${plain!.host}/busybox:t1`]);
    assert.equal(rec.config.architecture, 'amd64');
    assert.equal(rec.manifest.layers.length, 1);
    assert.equal(rec.size, amd.config.size + amd.layers[0]!.size);
    for (const d of [amd.manifest.digest, amd.config.digest, amd.layers[0]!.digest]) assert.ok(store.hasBlob(d), d);
    assert.deepEqual((await store.readBlob(amd.manifest.digest)).toString(), amd.manifestBytes.toString());
    assert.deepEqual(store.puts.at(-1), amd.manifest.digest, 'the manifest is stored last');
    assert.ok(events.some((e) => e.phase === 'manifest'));
    assert.ok(events.some((e) => e.phase === 'blob' && e.digest === amd.layers[0]!.digest && e.bytes === amd.layers[0]!.size && e.total === amd.layers[0]!.size));
    assert.equal(events.at(-1)!.phase, 'done');

    // Again: nothing is downloaded twice.
    const before = store.puts.length;
    const events2: PullProgressEvent[] = [];
    const again = await pullImage(store, `${plain!.host}/busybox:t1`, { insecure: true, progress: (e) => events2.push(e) });
    assert.equal(again.digest, rec.digest);
    assert.equal(store.puts.length, before);
    assert.ok(events2.some((e) => e.phase === 'blob' && /already present/.test(e.message ?? '')));
  });

  it('says a loopback registry speaks plain HTTP (and to pass --insecure) when insecure is not set', async (t) => {
    if (!requireOrSkip(t, haveTools, whyNoTools)) return;
    await expectError(pullImage(newStore(), `${plain!.host}/busybox:t1`), 'YUN_REGISTRY_TLS_FAILED', /speaks plain HTTP/, /--insecure/);
  });

  it('pulls over HTTPS with the test CA (caPem)', async (t) => {
    if (!requireOrSkip(t, haveTools, whyNoTools)) return;
    const store = newStore();
    const rec = await pullImage(store, `${secure!.host}/busybox:t1`, { caPem: fx!.caPem });
    assert.equal(rec.digest, fx!.amd.manifest.digest);
    assert.ok(store.hasBlob(fx!.amd.layers[0]!.digest));
  });

  it('fails with a certificate error that says how to fix it: no CA, or the wrong CA', async (t) => {
    if (!requireOrSkip(t, haveTools, whyNoTools)) return;
    const store = newStore();
    const none = await expectError(pullImage(store, `${secure!.host}/busybox:t1`), 'YUN_REGISTRY_TLS_FAILED', /certificate/, /--ca FILE/, /--insecure/, /unable to verify the first certificate|self[- ]signed/i);
    assert.match(none.message, new RegExp(secure!.host.replace(/\./g, '\\.')));
    const wrong = await expectError(pullImage(store, `${secure!.host}/busybox:t1`, { caPem: fx!.wrongCaPem }), 'YUN_REGISTRY_TLS_FAILED', /certificate problem/, /--ca FILE/, /unable to verify the first certificate|self[- ]signed/i);
    assert.match(wrong.message, /CA given with --ca did not sign/);
    assert.equal(store.puts.length, 0);
  });

  it('pulls over HTTPS without verification when insecure', async (t) => {
    if (!requireOrSkip(t, haveTools, whyNoTools)) return;
    const rec = await pullImage(newStore(), `${secure!.host}/busybox:t1`, { insecure: true });
    assert.equal(rec.digest, fx!.amd.manifest.digest);
  });

  it('pulls by digest, and a digest the registry lacks is not found', async (t) => {
    if (!requireOrSkip(t, haveTools, whyNoTools)) return;
    const d = fx!.amd.manifest.digest;
    const rec = await pullImage(newStore(), `${secure!.host}/busybox@${d}`, { caPem: fx!.caPem });
    assert.equal(rec.digest, d);
    assert.deepEqual(rec.names, [`${secure!.host}/busybox@${d}`]);
    const tagged = await pullImage(newStore(), `${secure!.host}/busybox:t1@${d}`, { caPem: fx!.caPem });
    assert.deepEqual(tagged.names, [`${secure!.host}/busybox:t1`]);
    const missing = `sha256:${'0'.repeat(64)}`;
    await expectError(pullImage(newStore(), `${plain!.host}/busybox@${missing}`, { insecure: true }), 'YUN_REGISTRY_NOT_FOUND', /MANIFEST_UNKNOWN/, new RegExp(missing));
  });

  it('picks linux/amd64 from an image index (or the platform asked for)', async (t) => {
    if (!requireOrSkip(t, haveTools, whyNoTools)) return;
    const store = newStore();
    const events: PullProgressEvent[] = [];
    const rec = await pullImage(store, `${plain!.host}/busybox:multi`, { insecure: true, progress: (e) => events.push(e) });
    assert.equal(rec.digest, fx!.amd.manifest.digest);
    assert.equal(rec.config.architecture, 'amd64');
    assert.ok(!store.hasBlob(fx!.arm.layers[0]!.digest), 'the arm64 layer is not fetched');
    assert.ok(events.some((e) => /linux\/amd64/.test(e.message ?? '')));
    const arm = await pullImage(newStore(), `${plain!.host}/busybox:multi`, { insecure: true, platform: { os: 'linux', architecture: 'arm64' } });
    assert.equal(arm.digest, fx!.arm.manifest.digest);
    assert.equal(arm.config.architecture, 'arm64');
    await expectError(
      pullImage(newStore(), `${plain!.host}/busybox:multi`, { insecure: true, platform: { os: 'linux', architecture: 'riscv64' } }),
      'YUN_REGISTRY_NO_PLATFORM',
      /no linux\/riscv64/,
      /linux\/arm64\/v8, linux\/amd64/,
    );
  });

  it('pulls a Docker v2 schema 2 manifest', async (t) => {
    if (!requireOrSkip(t, haveTools, whyNoTools)) return;
    const rec = await pullImage(newStore(), `${plain!.host}/busybox:docker`, { insecure: true });
    assert.equal((rec.manifest as { mediaType?: string }).mediaType, MT.dockerManifest);
    assert.equal(rec.config.architecture, 'amd64');
    assert.equal(rec.manifest.layers[0]!.digest, fx!.amd.layers[0]!.digest);
  });

  it('reports a missing tag or repository with the registry\'s own error', async (t) => {
    if (!requireOrSkip(t, haveTools, whyNoTools)) return;
    const e = await expectError(pullImage(newStore(), `${plain!.host}/busybox:nope`, { insecure: true }), 'YUN_REGISTRY_NOT_FOUND', /no manifest "nope"/, /MANIFEST_UNKNOWN: manifest unknown/);
    assert.equal(e.status, 404);
    await expectError(pullImage(newStore(), `${plain!.host}/nothing/here:1`, { insecure: true }), 'YUN_REGISTRY_NOT_FOUND', /NAME_UNKNOWN|MANIFEST_UNKNOWN/);
  });

  it('never sends loopback registries through a proxy', async (t) => {
    if (!requireOrSkip(t, haveTools, whyNoTools)) return;
    const saved = { ...process.env };
    try {
      for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy']) process.env[k] = 'http://127.0.0.1:9';
      for (const k of ['NO_PROXY', 'no_proxy']) delete process.env[k];
      const rec = await pullImage(newStore(), `${secure!.host}/busybox:t1`, { caPem: fx!.caPem });
      assert.equal(rec.digest, fx!.amd.manifest.digest);
    } finally {
      for (const k of ['HTTP_PROXY', 'HTTPS_PROXY', 'http_proxy', 'https_proxy', 'NO_PROXY', 'no_proxy']) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
  });

  it('stores into the real ImageStore (src/images/image-store.ts), which can then read the image', async (t) => {
    if (!requireOrSkip(t, haveTools, whyNoTools)) return;
    const dir = join(fx!.tmp, 'real-store');
    const store = new ImageStore(dir);
    const rec = await pullImage(store, `${secure!.host}/busybox:multi`, { caPem: fx!.caPem });
    assert.equal(rec.digest, fx!.amd.manifest.digest);
    for (const d of [rec.digest, rec.manifest.config.digest, ...rec.manifest.layers.map((l) => l.digest)]) assert.ok(store.hasBlob(d), d);
    const img = await store.image(rec.digest);
    assert.equal(img.digest, rec.digest);
    assert.equal(img.config.architecture, 'amd64');
    const again = await pullImage(store, `${secure!.host}/busybox:t1`, { caPem: fx!.caPem });
    assert.equal(again.digest, rec.digest);
    const rootfs = await store.rootfs(rec.digest);
    assert.ok(existsSync(join(rootfs, 'bin', 'busybox')), 'the pulled layer unpacks');
  });

  it('says when nothing listens at the address', async (t) => {
    if (!requireOrSkip(t, haveTools, whyNoTools)) return;
    await expectError(pullImage(newStore(), '127.0.0.1:9/busybox:t1', { insecure: true }), 'YUN_REGISTRY_UNREACHABLE', /127\.0\.0\.1:9/, /ECONNREFUSED/);
  });
});

// ---------------------------------------------------------------------------------------------

describe('pull from a fake registry with auth (node:http on 127.0.0.1)', () => {
  let bearer: FakeRegistry | undefined;
  let basic: FakeRegistry | undefined;
  const creds = { username: 'puller', password: 's3cret' };
  let many: BuiltImage;

  before(async () => {
    if (!fx) throw fxError ?? new Error('fixtures missing');
    const { layout, amd, arm, index } = fx;
    const manifests = new Map<string, { bytes: Buffer; mediaType: string }>();
    manifests.set('t1', { bytes: amd.manifestBytes, mediaType: MT.ociManifest });
    manifests.set(amd.manifest.digest, { bytes: amd.manifestBytes, mediaType: MT.ociManifest });
    manifests.set(arm.manifest.digest, { bytes: arm.manifestBytes, mediaType: MT.ociManifest });
    manifests.set('multi', { bytes: index.bytes, mediaType: MT.ociIndex });
    const noAmd = Buffer.from(JSON.stringify({
      schemaVersion: 2,
      mediaType: MT.ociIndex,
      manifests: [
        { ...arm.manifest, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } },
        { ...arm.manifest, platform: { os: 'linux', architecture: 's390x' } },
        { ...arm.manifest, platform: { os: 'unknown', architecture: 'unknown' }, annotations: { 'vnd.docker.reference.type': 'attestation-manifest' } },
      ],
    }));
    manifests.set('noamd', { bytes: noAmd, mediaType: MT.ociIndex });
    // Five layers: more than the three downloads that run at a time.
    const dirs = [1, 2, 3, 4, 5].map((i) => {
      const d = join(fx!.tmp, `many-${i}`);
      mkdirSync(d);
      writeFileSync(join(d, `file-${i}`), Buffer.alloc(50_000 * i, i));
      return d;
    });
    many = layout.image({ rootDir: dirs, architecture: 'amd64' });
    manifests.set('many', { bytes: many.manifestBytes, mediaType: MT.ociManifest });
    const artifact = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MT.ociManifest, config: { ...amd.config, mediaType: 'application/vnd.cncf.helm.config.v1+json' }, layers: amd.layers }));
    manifests.set('chart', { bytes: artifact, mediaType: MT.ociManifest });
    const layers = new Set([...amd.layers, ...arm.layers, many.layers[3]!].map((l) => l.digest));
    bearer = await startFakeRegistry({ blobs: layout.blobs, manifests }, { auth: 'bearer', ...creds, layers });
    basic = await startFakeRegistry({ blobs: layout.blobs, manifests }, { auth: 'basic', ...creds, layers });
  });

  after(async () => {
    await bearer?.close();
    await basic?.close();
  });

  it('gets a Bearer token with basic credentials, once for the whole pull', async () => {
    const store = newStore();
    const before = bearer!.tokenRequests;
    const rec = await pullImage(store, `${bearer!.host}/team/busybox:t1`, { insecure: true, ...creds });
    assert.equal(rec.digest, fx!.amd.manifest.digest);
    assert.deepEqual(rec.names, [`${bearer!.host}/team/busybox:t1`]);
    assert.equal(bearer!.tokenRequests - before, 1, 'one token for the manifest and every blob');
    assert.ok(store.hasBlob(fx!.amd.layers[0]!.digest));
  });

  it('says the token service refused the credentials, and when none were given', async () => {
    await expectError(pullImage(newStore(), `${bearer!.host}/team/busybox:t1`, { insecure: true, username: 'puller', password: 'wrong' }), 'YUN_REGISTRY_AUTH_FAILED', /refused the credentials of "puller"/, /incorrect username or password/);
    await expectError(pullImage(newStore(), `${bearer!.host}/team/busybox:t1`, { insecure: true }), 'YUN_REGISTRY_AUTH_FAILED', /anonymous/);
  });

  it('answers a Basic challenge', async () => {
    const rec = await pullImage(newStore(), `${basic!.host}/team/busybox:multi`, { insecure: true, ...creds });
    assert.equal(rec.digest, fx!.amd.manifest.digest);
    await expectError(pullImage(newStore(), `${basic!.host}/team/busybox:t1`, { insecure: true }), 'YUN_REGISTRY_AUTH_FAILED', /requires a user name and password/);
    await expectError(pullImage(newStore(), `${basic!.host}/team/busybox:t1`, { insecure: true, username: 'puller', password: 'nope' }), 'YUN_REGISTRY_AUTH_FAILED', /refused/, /as "puller"/);
  });

  it('rejects a tampered layer, naming it, and stores nothing of the image', async () => {
    const store = newStore();
    const layer = fx!.amd.layers[0]!.digest;
    const e = await expectError(pullImage(store, `${bearer!.host}/tampered/busybox:t1`, { insecure: true, ...creds }), 'YUN_REGISTRY_DIGEST_MISMATCH', new RegExp(`layer 1/1 \\(${layer}\\)`), /does not match its digest/);
    assert.equal(e.status, 502);
    assert.ok(!store.hasBlob(layer));
    assert.ok(!store.hasBlob(fx!.amd.manifest.digest), 'no manifest for a half-pulled image');
  });

  it('leaves nothing of a tampered layer in the real ImageStore', async () => {
    const store = new ImageStore(join(fx!.tmp, 'real-store-tampered'));
    const layer = fx!.amd.layers[0]!.digest;
    await expectError(pullImage(store, `${bearer!.host}/tampered/busybox:t1`, { insecure: true, ...creds }), 'YUN_REGISTRY_DIGEST_MISMATCH', new RegExp(layer));
    assert.ok(!store.hasBlob(layer));
    assert.ok(!store.hasBlob(fx!.amd.manifest.digest));
  });

  it('fetches several layers at a time; one bad layer fails the pull, naming it, and no manifest is stored', async () => {
    const store = newStore();
    const rec = await pullImage(store, `${bearer!.host}/team/many:many`, { insecure: true, ...creds });
    assert.equal(rec.manifest.layers.length, 5);
    for (const l of many.layers) assert.ok(store.hasBlob(l.digest));
    assert.equal(store.puts.at(-1), many.manifest.digest);
    const other = newStore();
    const bad = many.layers[3]!.digest;
    await expectError(pullImage(other, `${bearer!.host}/tampered/many:many`, { insecure: true, ...creds }), 'YUN_REGISTRY_DIGEST_MISMATCH', new RegExp(`layer 4/5 \\(${bad}\\)`));
    assert.ok(!other.hasBlob(bad));
    assert.ok(!other.hasBlob(many.manifest.digest));
  });

  it('rejects a manifest whose bytes do not match the digest asked for', async () => {
    const d = fx!.amd.manifest.digest;
    await expectError(pullImage(newStore(), `${bearer!.host}/liar/busybox@${d}`, { insecure: true, ...creds }), 'YUN_REGISTRY_DIGEST_MISMATCH', new RegExp(`manifest ${d}`));
  });

  it('follows blob redirects without sending the registry credentials elsewhere', async () => {
    const hits = bearer!.cdnHits;
    const rec = await pullImage(newStore(), `${bearer!.host}/redirect/busybox:t1`, { insecure: true, ...creds });
    assert.equal(rec.digest, fx!.amd.manifest.digest);
    assert.equal(bearer!.cdnHits - hits, 2, 'config and layer came from the redirect target');
    assert.deepEqual(bearer!.cdnAuthorization.slice(hits), [undefined, undefined]);
  });

  it('refuses manifests over 4 MiB', async () => {
    await expectError(pullImage(newStore(), `${bearer!.host}/team/busybox:huge`, { insecure: true, ...creds }), 'YUN_REGISTRY_ERROR', /too large/, new RegExp(String(MANIFEST_MAX_BYTES)));
  });

  it('lists the platforms an index has when linux/amd64 is not among them', async () => {
    const e = await expectError(pullImage(newStore(), `${bearer!.host}/team/busybox:noamd`, { insecure: true, ...creds }), 'YUN_REGISTRY_NO_PLATFORM', /no linux\/amd64 variant/, /linux\/arm64\/v8, linux\/s390x$|linux\/arm64\/v8, linux\/s390x\./);
    assert.doesNotMatch(e.message, /unknown\/unknown/);
  });

  it('refuses artifacts that are not container images', async () => {
    await expectError(pullImage(newStore(), `${bearer!.host}/team/busybox:chart`, { insecure: true, ...creds }), 'YUN_REGISTRY_ERROR', /not a container image/, /helm/);
  });

  it('stops a pull on abort', async () => {
    const ac = new AbortController();
    ac.abort();
    await assert.rejects(pullImage(newStore(), `${bearer!.host}/team/busybox:t1`, { insecure: true, ...creds, signal: ac.signal }));
  });
});
