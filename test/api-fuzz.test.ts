// Property test (fast-check): random and malformed requests at every route of the OpenAPI document.
// Whatever arrives, the server never answers 5xx, keeps answering, and every 4xx is the one error
// shape with a `YUN_` code and the request id of the x-request-id header.
//
// The seed is fixed by default and printed; FC_SEED=<n> replays or explores another one, FC_RUNS=<n>
// changes the number of requests (default 600). FUZZ_ALL=1 sends every case and lists every distinct
// failure (by route, status and kind) instead of stopping at the first and shrinking it.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { fetch } from 'undici';
import { startTestCloud, type TestCloud } from './helpers/cloud.js';

const SEED = process.env.FC_SEED !== undefined && process.env.FC_SEED !== '' ? Number(process.env.FC_SEED) : 20261124;
const RUNS = process.env.FC_RUNS ? Number(process.env.FC_RUNS) : 600;
const ALL = process.env.FUZZ_ALL === '1';
const TIME_LIMIT_MS = 45_000;
const REQUEST_TIMEOUT_MS = 15_000;

type Method = 'GET' | 'HEAD' | 'POST' | 'PUT' | 'PATCH' | 'DELETE' | 'OPTIONS';
interface Operation { method: Method; path: string }

/** A path parameter: a real object's id or name, or junk (encoded or raw). */
type Param = { kind: 'real'; index: number } | { kind: 'text'; text: string } | { kind: 'raw'; text: string } | { kind: 'long'; n: number };

type Body =
  | { kind: 'none' }
  | { kind: 'json'; value: unknown }
  | { kind: 'object'; value: Record<string, unknown> }
  | { kind: 'text'; contentType: string; text: string }
  | { kind: 'invalid-json'; text: string }
  | { kind: 'huge'; bytes: number; json: boolean }
  | { kind: 'deep'; depth: number };

type Auth =
  | { kind: 'none' }
  | { kind: 'admin'; bearer: boolean }
  | { kind: 'member' }
  | { kind: 'bad-token'; value: string }
  | { kind: 'bad-authorization'; value: string }
  | { kind: 'both'; authorization: string };

interface Case {
  op: number;
  otherMethod: Method | null;
  params: Param[];
  query: [string, string, boolean][];
  body: Body;
  auth: Auth;
  ifMatch: string | null;
  subjectToken: string | null;
  accept: string | null;
}

const METHODS: Method[] = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
const QUERY_KEYS = ['limit', 'marker', 'sort', 'with_count', 'all_projects', 'project_id', 'label', 'name', 'enabled', 'hostname', 'role', 'availability', 'status', 'address', 'force', 'since', 'kind', 'wait', 'user_id', 'result'];
const BODY_KEYS = ['name', 'password', 'description', 'enabled', 'quotas', 'version', 'availability', 'labels', 'username', 'project', 'ttl', 'email', 'default_project', 'services', 'tasks', 'cpu', 'memory'];
/** `wait` on /v1/changes long-polls; keep it short so the run stays bounded. */
const SAFE_WAITS = ['0', '0s', '1ms', '50ms', '61s', '1h', 'abc', '-1s', '', '1e9s', 'NaN'];
const CONTENT_TYPES = [
  'text/plain', 'application/xml', 'application/x-www-form-urlencoded', 'multipart/form-data; boundary=x', 'application/octet-stream',
  'application/json; charset=latin1', 'application/json; charset=utf-16', 'APPLICATION/JSON', 'application/jsonx', '*/*', 'application/merge-patch+json',
  'application/json;;;', 'text/json', 'image/png',
];
const INVALID_JSON = ['{', '{"a":', '[1,2', 'nul', "{'a':1}", '{"a":1}}', '\u0000', '{"a":1,}', '"\\ud800"', '1e99999', '{"name":"x"', '[', '}', 'true false', '{"__proto__":{"x":1}}', '{"constructor":{"prototype":{"x":1}}}', '\uFEFF{}', '{"a":"\\u00"}'];
const RAW_PARAMS = ['%', '%ZZ', '%00', '..', '.', '%2F', '%2e%2e', '%C0%AF', '%E2%80%AE', '~', '%20', '%FF%FE', 'a%2Fb', '%25', ';x=1', 'x;', '%0A', '%0D%0Aset-cookie:%20x=1'];
const EDGE_VALUES: unknown[] = [1, 0, -1, 2 ** 53, 1e308, 1.5, 'x', '', 'a'.repeat(70), 'demo', 'admin', 'drain', 'pause', 'worker', 'manager', 'member', true, false, null, {}, [], { zone: 'a' }, { 'bad key': 'v' }, '12345678', 'not-an-email', '1h', '-1s'];

/** `arb` with weight `some` against null with weight `none`. */
function sometimes<T>(arb: fc.Arbitrary<T>, some: number, none: number): fc.Arbitrary<T | null> {
  return fc.oneof({ weight: none, arbitrary: fc.constant(null) }, { weight: some, arbitrary: arb });
}

/** Printable ASCII (fetch refuses control characters in header values). */
const ascii = (maxLength: number) => fc.string({ unit: 'grapheme-ascii', maxLength });

function arbitraries(opCount: number) {
  const param: fc.Arbitrary<Param> = fc.oneof(
    { weight: 4, arbitrary: fc.nat({ max: 100 }).map((index) => ({ kind: 'real' as const, index })) },
    { weight: 4, arbitrary: fc.string({ unit: 'grapheme', maxLength: 40 }).map((text) => ({ kind: 'text' as const, text })) },
    { weight: 2, arbitrary: fc.constantFrom(...RAW_PARAMS).map((text) => ({ kind: 'raw' as const, text })) },
    { weight: 1, arbitrary: fc.integer({ min: 150, max: 700 }).map((n) => ({ kind: 'long' as const, n })) },
  );
  const queryValue = fc.oneof(
    fc.string({ unit: 'grapheme', maxLength: 30 }),
    fc.integer().map(String),
    fc.double().map(String),
    fc.constantFrom('true', 'false', 'null', '', '-1', '0', '1', '1000', '1001', '1e999', 'NaN', '[]', '{}', 'name:desc', 'name:sideways', 'id', '%', '%ZZ', 'a=b=c', 'zone=a', '!bad', '2026-01-01T00:00:00Z', 'success'),
    fc.jsonValue({ maxDepth: 2 }).map((v) => JSON.stringify(v) ?? 'null'),
  );
  const query = fc.oneof(
    { weight: 1, arbitrary: fc.constant([] as [string, string, boolean][]) },
    {
      weight: 2,
      arbitrary: fc.array(
        fc.tuple(fc.oneof({ weight: 3, arbitrary: fc.constantFrom(...QUERY_KEYS) }, { weight: 1, arbitrary: fc.string({ unit: 'grapheme', minLength: 1, maxLength: 15 }) }), queryValue, fc.boolean()),
        { minLength: 1, maxLength: 5 },
      ),
    },
  );
  const objectBody = fc.dictionary(
    fc.oneof({ weight: 4, arbitrary: fc.constantFrom(...BODY_KEYS) }, { weight: 1, arbitrary: fc.string({ maxLength: 12 }) }),
    fc.oneof({ weight: 2, arbitrary: fc.constantFrom(...EDGE_VALUES) }, { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 2 }) }),
    { maxKeys: 5 },
  );
  const body: fc.Arbitrary<Body> = fc.oneof(
    { weight: 3, arbitrary: fc.constant({ kind: 'none' as const }) },
    { weight: 3, arbitrary: fc.jsonValue({ maxDepth: 4 }).map((value) => ({ kind: 'json' as const, value })) },
    { weight: 5, arbitrary: objectBody.map((value) => ({ kind: 'object' as const, value })) },
    { weight: 2, arbitrary: fc.tuple(fc.oneof(fc.constantFrom(...CONTENT_TYPES), ascii(40)), fc.string({ unit: 'grapheme', maxLength: 80 })).map(([contentType, text]) => ({ kind: 'text' as const, contentType, text })) },
    { weight: 2, arbitrary: fc.oneof(fc.constantFrom(...INVALID_JSON), fc.string({ unit: 'grapheme', maxLength: 40 })).map((text) => ({ kind: 'invalid-json' as const, text })) },
    { weight: 1, arbitrary: fc.tuple(fc.constantFrom(900_000, 1_048_577, 1_500_000), fc.boolean()).map(([bytes, json]) => ({ kind: 'huge' as const, bytes, json })) },
    { weight: 1, arbitrary: fc.constantFrom(100, 5_000, 100_000).map((depth) => ({ kind: 'deep' as const, depth })) },
  );
  const auth: fc.Arbitrary<Auth> = fc.oneof(
    { weight: 2, arbitrary: fc.constant({ kind: 'none' as const }) },
    { weight: 5, arbitrary: fc.boolean().map((bearer) => ({ kind: 'admin' as const, bearer })) },
    { weight: 1, arbitrary: fc.constant({ kind: 'member' as const }) },
    { weight: 1, arbitrary: fc.oneof(ascii(60), ascii(40).map((s) => `yun_${s}`)).map((value) => ({ kind: 'bad-token' as const, value })) },
    { weight: 1, arbitrary: fc.oneof(ascii(60), ascii(40).map((s) => `Bearer ${s}`), fc.constantFrom('Bearer', 'Bearer ', 'Basic YWRtaW46YWRtaW4=', 'bearer  yun_x y', 'Digest x')).map((value) => ({ kind: 'bad-authorization' as const, value })) },
    { weight: 1, arbitrary: ascii(30).map((authorization) => ({ kind: 'both' as const, authorization })) },
  );
  const ifMatch = sometimes(fc.oneof(ascii(20), fc.constantFrom('"1"', 'W/"2"', '*', '"-1"', '"1e3"', '"abc"', '1', '0', '99999999999999999999', '"1", "2"', 'W/')), 1, 2);
  return fc.record({
    op: fc.nat({ max: opCount - 1 }),
    otherMethod: sometimes(fc.constantFrom(...METHODS), 1, 6),
    params: fc.array(param, { minLength: 3, maxLength: 3 }),
    query,
    body,
    auth,
    ifMatch,
    subjectToken: sometimes(fc.oneof(ascii(50), ascii(30).map((s) => `yun_${s}`)), 1, 7),
    accept: sometimes(fc.oneof(ascii(20), fc.constantFrom('application/xml', 'text/html', '*/*', 'application/json')), 1, 5),
  }) as fc.Arbitrary<Case>;
}

describe('API fuzz: random and malformed requests at every route', () => {
  let cloud: TestCloud;
  let ops: Operation[];
  let realRefs: string[];
  const tokens = { admin: '', member: '' };
  const stats = new Map<string, number>();
  let sent = 0;
  /** Status and code (or message) of the last answer, to group failures in survey mode. */
  let lastKind = '';

  async function login(user: string, password: string, project: string): Promise<string> {
    for (let attempt = 0; ; attempt++) {
      const r = await cloud.api.req('POST', '/v1/auth/tokens', { body: { username: user, password, project } });
      if (r.status === 201) return r.headers.get('x-subject-token')!;
      if (r.status === 429 && attempt < 20) {
        await new Promise((res) => setTimeout(res, 250));
        continue;
      }
      throw new Error(`login ${user}: ${r.status} ${r.text}`);
    }
  }

  before(async () => {
    cloud = await startTestCloud();
    const boot = await cloud.api.login('admin', cloud.adminPassword, 'admin');
    // The fuzzer logs in as its own cloud admin, whose name it never generates, so that random
    // writes (a changed password, a disabled user) cannot lock it out.
    const mk = async (method: string, path: string, body?: unknown) => {
      const r = await cloud.api.req(method, path, { token: boot, body });
      assert.ok(r.status < 300, `${method} ${path}: ${r.status} ${r.text}`);
      return r.body;
    };
    // Likewise its member (fuzz-member on fuzz-proj); alice and demo are targets it may change or remove.
    await mk('POST', '/v1/users', { name: 'fuzz-root', password: 'fuzz-root-password' });
    await mk('PUT', '/v1/projects/admin/members/fuzz-root/roles/admin');
    await mk('POST', '/v1/projects', { name: 'fuzz-proj' });
    await mk('POST', '/v1/users', { name: 'fuzz-member', password: 'fuzz-member-password' });
    await mk('PUT', '/v1/projects/fuzz-proj/members/fuzz-member/roles/member');
    const demo = await mk('POST', '/v1/projects', { name: 'demo' });
    const alice = await mk('POST', '/v1/users', { name: 'alice', password: 'alice-password' });
    await mk('PUT', `/v1/projects/${demo.id}/members/alice/roles/member`);
    tokens.admin = await login('fuzz-root', 'fuzz-root-password', 'admin');
    tokens.member = await login('fuzz-member', 'fuzz-member-password', 'fuzz-proj');
    const adminProject = (await cloud.api.req('GET', '/v1/projects/admin', { token: boot })).body;
    const aliceToken = await login('alice', 'alice-password', 'demo');
    const tokenId = (await cloud.api.req('GET', '/v1/auth/tokens', { token: aliceToken })).body.token.token_id as string;
    realRefs = [cloud.nodeId, 'admin', adminProject.id, 'demo', demo.id, 'alice', alice.id, 'worker', 'manager', 'reader', 'member', tokenId, '0123456789abcdef'];

    const doc = (await cloud.api.req('GET', '/v1/openapi.json')).body as { paths: Record<string, Record<string, unknown>> };
    ops = [];
    for (const [path, methods] of Object.entries(doc.paths)) {
      for (const m of Object.keys(methods)) {
        const method = m.toUpperCase() as Method;
        if (METHODS.includes(method)) ops.push({ method, path });
      }
    }
    assert.ok(ops.length >= 20, `only ${ops.length} operations in the OpenAPI document`);
  });

  after(async () => {
    await cloud?.stop();
  });

  function paramText(p: Param): string {
    switch (p.kind) {
      case 'real': return encodeURIComponent(realRefs[p.index % realRefs.length]!);
      case 'text': return encodeURIComponent(p.text);
      case 'raw': return p.text;
      case 'long': return 'x'.repeat(p.n);
    }
  }

  function build(c: Case): { method: Method; url: string; headers: Record<string, string>; body?: string; describe: string } {
    const op = ops[c.op % ops.length]!;
    const method = c.otherMethod ?? op.method;
    let i = 0;
    const path = op.path.replace(/\{[^}]+\}/g, () => paramText(c.params[i++ % c.params.length]!));
    const pairs = c.query.map(([k, v, raw]) => {
      const value = k === 'wait' ? SAFE_WAITS[v.length % SAFE_WAITS.length]! : v;
      return raw && !/[#]/.test(k + value) ? `${k}=${value}` : `${encodeURIComponent(k)}=${encodeURIComponent(value)}`;
    });
    const qs = pairs.length ? `?${pairs.join('&')}` : '';
    const headers: Record<string, string> = {};
    switch (c.auth.kind) {
      case 'admin':
        if (c.auth.bearer) headers.authorization = `Bearer ${tokens.admin}`;
        else headers['x-auth-token'] = tokens.admin;
        break;
      case 'member': headers['x-auth-token'] = tokens.member; break;
      case 'bad-token': headers['x-auth-token'] = c.auth.value; break;
      case 'bad-authorization': headers.authorization = c.auth.value; break;
      case 'both': headers['x-auth-token'] = tokens.admin; headers.authorization = c.auth.authorization; break;
    }
    if (c.ifMatch !== null) headers['if-match'] = c.ifMatch;
    if (c.subjectToken !== null) headers['x-subject-token'] = c.subjectToken;
    if (c.accept !== null) headers.accept = c.accept;
    let body: string | undefined;
    let bodyDesc = 'no body';
    if (method !== 'GET' && method !== 'HEAD') {
      const b = c.body;
      switch (b.kind) {
        case 'none': break;
        case 'json': case 'object':
          body = JSON.stringify(b.value) ?? 'null';
          headers['content-type'] = 'application/json';
          break;
        case 'text':
          body = b.text;
          if (b.contentType.trim() !== '') headers['content-type'] = b.contentType;
          break;
        case 'invalid-json':
          body = b.text;
          headers['content-type'] = 'application/json';
          break;
        case 'huge':
          body = b.json ? JSON.stringify({ name: 'huge', description: 'x'.repeat(b.bytes) }) : 'x'.repeat(b.bytes);
          headers['content-type'] = b.json ? 'application/json' : 'text/plain';
          break;
        case 'deep':
          body = `${'['.repeat(b.depth)}${']'.repeat(b.depth)}`;
          headers['content-type'] = 'application/json';
          break;
      }
      bodyDesc = body === undefined ? 'no body' : `${headers['content-type'] ?? '(no content-type)'} body of ${body.length} chars: ${body.slice(0, 120)}`;
    }
    const url = `${cloud.url}${path}${qs}`;
    const shown = path.length > 160 ? `${path.slice(0, 120)}…(${path.length} chars)` : path;
    return { method, url, headers, body, describe: `${method} ${shown}${qs} [${op.method} ${op.path}] auth=${c.auth.kind} headers=${JSON.stringify({ ...headers, 'x-auth-token': headers['x-auth-token'] ? '…' : undefined, authorization: headers.authorization ? headers.authorization.slice(0, 30) : undefined })} ${bodyDesc}` };
  }

  async function send(c: Case): Promise<void> {
    const req = build(c);
    let res;
    try {
      res = await fetch(req.url, { method: req.method, headers: req.headers, body: req.body, dispatcher: cloud.api.agent, signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    } catch (e) {
      // The server must answer every request, even a refused one.
      const health = await cloud.api.req('GET', '/healthz').then((r) => r.status, (err) => `unreachable (${String(err)})`);
      assert.fail(`no answer to ${req.describe}: ${String((e as Error)?.cause ?? e)}; /healthz now: ${health}`);
    }
    sent++;
    const text = await res.text();
    lastKind = `${res.status} ${/"code":"([A-Z0-9_]+)"/.exec(text)?.[1] ?? /"message":"([^"]{0,60})/.exec(text)?.[1] ?? ''}`;
    const key = `${res.status}`;
    stats.set(key, (stats.get(key) ?? 0) + 1);
    assert.ok(res.status < 500, `${res.status} for ${req.describe}: ${text.slice(0, 600)}`);
    const rid = res.headers.get('x-request-id');
    assert.ok(rid, `no x-request-id on ${res.status} for ${req.describe}`);
    if (res.status >= 400 && req.method !== 'HEAD') {
      let parsed: any;
      try {
        parsed = JSON.parse(text);
      } catch {
        assert.fail(`${res.status} with a body that is not JSON for ${req.describe}: ${text.slice(0, 300)}`);
      }
      const e = parsed?.error;
      assert.ok(e && typeof e === 'object', `${res.status} without the error shape for ${req.describe}: ${text.slice(0, 300)}`);
      assert.ok(typeof e.code === 'string' && /^YUN_[A-Z0-9_]+$/.test(e.code), `bad error code ${JSON.stringify(e.code)} for ${req.describe}`);
      for (const k of ['title', 'detail', 'request_id']) assert.ok(typeof e[k] === 'string' && e[k].length > 0, `error.${k} missing for ${req.describe}: ${text.slice(0, 300)}`);
      assert.equal(e.request_id, rid, `body request_id differs from x-request-id for ${req.describe}`);
      // A token the fuzzer holds may have been revoked by a random DELETE /v1/auth/tokens: log in again.
      if (res.status === 401 && e.code === 'YUN_TOKEN_INVALID') {
        if (req.headers['x-auth-token'] === tokens.admin || req.headers.authorization === `Bearer ${tokens.admin}`) tokens.admin = await login('fuzz-root', 'fuzz-root-password', 'admin');
        if (req.headers['x-auth-token'] === tokens.member) tokens.member = await login('fuzz-member', 'fuzz-member-password', 'fuzz-proj');
      }
    }
  }

  it('never a 5xx, always the error shape, and the server keeps answering', async (t) => {
    const msg = `fast-check seed ${SEED}, ${RUNS} runs (replay with FC_SEED=${SEED}${ALL ? '' : '; FUZZ_ALL=1 lists every distinct failure instead of stopping at the first'})`;
    t.diagnostic(msg);
    console.log(`# api-fuzz: ${msg}`);
    if (ALL) {
      // Survey mode: send every generated case and group the failures by route, status and kind.
      const failures = new Map<string, { n: number; routes: Set<string>; example: string }>();
      for (const c of fc.sample(arbitraries(ops.length), { seed: SEED, numRuns: RUNS })) {
        try {
          await send(c);
        } catch (e) {
          const m = String((e as Error).message);
          const op = ops[c.op % ops.length]!;
          const key = `${/^(\d{3}|no answer|no x-request-id|bad error code|error\.\w+ missing|body request_id|\d{3} without the error shape|\d{3} with a body that is not JSON)/.exec(m)?.[0] ?? m.slice(0, 40)} · ${lastKind}`;
          const f = failures.get(key) ?? { n: 0, routes: new Set<string>(), example: m.slice(0, 300) };
          f.n++;
          f.routes.add(`${c.otherMethod ?? op.method} ${op.path}`);
          failures.set(key, f);
          lastKind = '';
        }
      }
      const lines = [...failures.entries()].sort().map(([k, f]) => `${k} (×${f.n}, on ${f.routes.size} route(s): ${[...f.routes].slice(0, 6).join(', ')}${f.routes.size > 6 ? ', …' : ''})\n    e.g. ${f.example}`);
      t.diagnostic(`sent ${sent} requests; statuses: ${[...stats.entries()].sort().map(([s, n]) => `${s}×${n}`).join(' ')}`);
      assert.equal(failures.size, 0, `${failures.size} kinds of failure:\n${lines.join('\n')}`);
    } else {
      await fc.assert(
        fc.asyncProperty(arbitraries(ops.length), async (c) => {
          await send(c);
        }),
        { seed: SEED, numRuns: RUNS, plugins: [fc.interruptAfterTimeLimit(TIME_LIMIT_MS)] } as fc.Parameters<[Case]>,
      );
      t.diagnostic(`sent ${sent} requests; statuses: ${[...stats.entries()].sort().map(([s, n]) => `${s}×${n}`).join(' ')}`);
      assert.ok(sent >= Math.min(RUNS, 300), `only ${sent} requests were sent before the time limit`);
    }

    // Still alive and still correct.
    const h = await cloud.api.req('GET', '/healthz');
    assert.equal(h.status, 200);
    const fresh = await login('fuzz-root', 'fuzz-root-password', 'admin');
    const l = await cloud.api.req('GET', '/v1/projects?limit=5', { token: fresh });
    assert.equal(l.status, 200, l.text);
    const missing = await cloud.api.req('GET', '/v1/projects');
    assert.equal(missing.status, 401);
    assert.equal(missing.body.error.code, 'YUN_UNAUTHENTICATED');
  });
});
