// End-to-end tests of the manager API over HTTPS against a real in-process cloud (startTestCloud):
// the error shape and request ids, identity and tenancy, pagination, versions, body and route
// errors, the rate limit, the audit log, node updates, join tokens, OpenAPI, /healthz and /metrics.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import SwaggerParser from '@apidevtools/swagger-parser';
import { startTestCloud, type Res, type TestCloud } from './helpers/cloud.js';

type ReqOpts = { token?: string; body?: unknown; rawBody?: string; headers?: Record<string, string> };

interface ApiError {
  code: string;
  title: string;
  detail: string;
  request_id: string;
  [k: string]: unknown;
}

/** Every response carries x-request-id; an error body's request_id equals it. */
function checkRequestId(r: Res, what: string): void {
  const rid = r.headers.get('x-request-id');
  assert.ok(rid && rid.length > 0, `${what}: no x-request-id header (status ${r.status})`);
  if (r.status >= 400 && r.body && typeof r.body === 'object' && r.body.error) {
    assert.equal(r.body.error.request_id, rid, `${what}: body request_id differs from the x-request-id header`);
  }
}

/** A request through the cloud's client that also checks the request id rule on every response. */
async function call(cloud: TestCloud, method: string, path: string, opts: ReqOpts = {}): Promise<Res> {
  const r = await cloud.api.req(method, path, opts);
  checkRequestId(r, `${method} ${path}`);
  return r;
}

/** Assert an error response: status, the one error shape, and (optionally) the code. */
function expectError(r: Res, status: number, code?: string): ApiError {
  assert.equal(r.status, status, `expected ${status}${code ? ` ${code}` : ''}, got ${r.status}: ${r.text.slice(0, 500)}`);
  assert.ok(r.body && typeof r.body === 'object' && r.body.error && typeof r.body.error === 'object', `not the error shape: ${r.text.slice(0, 500)}`);
  const e = r.body.error as ApiError;
  for (const k of ['code', 'title', 'detail', 'request_id'] as const) {
    assert.equal(typeof e[k], 'string', `error.${k} is not a string: ${r.text.slice(0, 500)}`);
    assert.ok((e[k] as string).length > 0, `error.${k} is empty`);
  }
  assert.match(e.code, /^YUN_[A-Z0-9_]+$/);
  assert.equal(e.request_id, r.headers.get('x-request-id'));
  if (code) assert.equal(e.code, code, `expected code ${code}: ${r.text.slice(0, 500)}`);
  return e;
}

function expectStatus(r: Res, status: number): void {
  assert.equal(r.status, status, `expected ${status}, got ${r.status}: ${r.text.slice(0, 500)}`);
}

/** Poll `fn` until it returns a value other than undefined, or fail at the deadline. */
async function waitFor<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** Run `fn` over `items` with at most `n` at a time. */
async function pool<T>(items: T[], n: number, fn: (x: T, i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) {
      const i = next++;
      await fn(items[i]!, i);
    }
  }));
}

// -------------------------------------------------------------------------------------------------

describe('API: identity, tenancy and the API rules', () => {
  let cloud: TestCloud;
  let admin: string;
  let adminProjectId: string;
  let demoId: string;
  let aliceId: string;
  let alice: string;
  let bob: string; // reader on demo
  let carol: string; // admin of demo (not a cloud admin)
  const pw = { alice: 'alice-password-1', bob: 'bob-password-1', carol: 'carol-password-1' };

  before(async () => {
    cloud = await startTestCloud();
    admin = await cloud.api.login('admin', cloud.adminPassword, 'admin');
    const me = await call(cloud, 'GET', '/v1/auth/tokens', { token: admin });
    expectStatus(me, 200);
    adminProjectId = me.body.token.project.id;

    const demo = await call(cloud, 'POST', '/v1/projects', { token: admin, body: { name: 'demo', description: 'the demo project' } });
    expectStatus(demo, 201);
    demoId = demo.body.id;
    for (const [name, role] of [['alice', 'member'], ['bob', 'reader'], ['carol', 'admin']] as const) {
      const u = await call(cloud, 'POST', '/v1/users', { token: admin, body: { name, password: pw[name] } });
      expectStatus(u, 201);
      if (name === 'alice') aliceId = u.body.id;
      expectStatus(await call(cloud, 'PUT', `/v1/projects/${demoId}/members/${name}/roles/${role}`, { token: admin }), 204);
    }
    alice = await cloud.api.login('alice', pw.alice, 'demo');
    bob = await cloud.api.login('bob', pw.bob, 'demo');
    carol = await cloud.api.login('carol', pw.carol, 'demo');
  });

  after(async () => {
    await cloud?.stop();
  });

  describe('errors and request ids', () => {
    it('no token → 401 in the error shape, with x-request-id equal to the body request_id', async () => {
      const r = await call(cloud, 'GET', '/v1/projects');
      expectError(r, 401, 'YUN_UNAUTHENTICATED');
      assert.match(r.headers.get('content-type') ?? '', /application\/json/);
    });

    it('an unknown or malformed token → 401 YUN_TOKEN_INVALID', async () => {
      expectError(await call(cloud, 'GET', '/v1/projects', { token: 'nonsense' }), 401, 'YUN_TOKEN_INVALID');
      expectError(await call(cloud, 'GET', '/v1/projects', { token: `yun_${'A'.repeat(43)}` }), 401, 'YUN_TOKEN_INVALID');
      expectError(await call(cloud, 'GET', '/v1/projects', { headers: { authorization: 'Basic YWRtaW46YWRtaW4=' } }), 401);
    });

    it('every response has a distinct x-request-id (2xx, 201, 204, 404, 405, errors)', async () => {
      const ids = new Set<string>();
      const rs = [
        await call(cloud, 'GET', '/healthz'),
        await call(cloud, 'GET', '/v1/projects', { token: admin }),
        await call(cloud, 'POST', '/v1/projects', { token: admin, body: { name: 'rid-check' } }),
        await call(cloud, 'GET', '/nosuch/route'),
        await call(cloud, 'GET', '/v1/nosuch', { token: admin }),
        await call(cloud, 'DELETE', '/v1/projects', { token: admin }),
        await call(cloud, 'GET', '/v1/projects/no-such-project', { token: admin }),
        await call(cloud, 'POST', '/v1/projects', { token: admin, rawBody: '{', headers: { 'content-type': 'application/json' } }),
      ];
      const del = await call(cloud, 'DELETE', '/v1/projects/rid-check', { token: admin });
      expectStatus(del, 204);
      rs.push(del);
      for (const r of rs) {
        const id = r.headers.get('x-request-id')!;
        assert.ok(!ids.has(id), `request id ${id} used twice`);
        ids.add(id);
      }
      expectError(rs[3]!, 404, 'YUN_ROUTE_NOT_FOUND');
      expectError(rs[4]!, 404, 'YUN_ROUTE_NOT_FOUND');
      expectError(rs[6]!, 404, 'YUN_NOT_FOUND');
    });

    it('unknown path → 404 YUN_ROUTE_NOT_FOUND, with or without a token', async () => {
      expectError(await call(cloud, 'GET', '/v1/no/such/thing'), 404, 'YUN_ROUTE_NOT_FOUND');
      expectError(await call(cloud, 'POST', '/v1/no/such/thing', { token: admin, body: {} }), 404, 'YUN_ROUTE_NOT_FOUND');
    });

    it('wrong method on an existing path → 405 with an Allow header', async () => {
      const r = await call(cloud, 'DELETE', '/v1/projects', { token: admin });
      expectError(r, 405, 'YUN_METHOD_NOT_ALLOWED');
      const allow = (r.headers.get('allow') ?? '').split(/,\s*/);
      assert.ok(allow.includes('GET') && allow.includes('POST'), `Allow: ${r.headers.get('allow')}`);
      const r2 = await call(cloud, 'PUT', `/v1/nodes/${cloud.nodeId}`, { token: admin, body: {} });
      expectError(r2, 405, 'YUN_METHOD_NOT_ALLOWED');
      const allow2 = (r2.headers.get('allow') ?? '').split(/,\s*/);
      assert.ok(allow2.includes('PATCH') && allow2.includes('GET') && allow2.includes('DELETE'), `Allow: ${r2.headers.get('allow')}`);
    });

    it('an unknown body field → 400 YUN_VALIDATION_FAILED naming the field', async () => {
      const e = expectError(await call(cloud, 'POST', '/v1/projects', { token: admin, body: { name: 'typo', descriptoin: 'x' } }), 400, 'YUN_VALIDATION_FAILED');
      assert.match(e.detail, /descriptoin/);
      // Nothing was created.
      expectError(await call(cloud, 'GET', '/v1/projects/typo', { token: admin }), 404, 'YUN_NOT_FOUND');
    });

    it('malformed JSON → 400 YUN_INVALID_JSON', async () => {
      expectError(await call(cloud, 'POST', '/v1/projects', { token: admin, rawBody: '{"name": "x",', headers: { 'content-type': 'application/json' } }), 400, 'YUN_INVALID_JSON');
      expectError(await call(cloud, 'PATCH', `/v1/projects/${demoId}`, { token: admin, rawBody: "{'version': 1}", headers: { 'content-type': 'application/json' } }), 400, 'YUN_INVALID_JSON');
    });

    it('a body over 1 MiB → 413 YUN_PAYLOAD_TOO_LARGE', async () => {
      const big = JSON.stringify({ name: 'big', description: 'x'.repeat(1024 * 1024 + 10) });
      expectError(await call(cloud, 'POST', '/v1/projects', { token: admin, rawBody: big, headers: { 'content-type': 'application/json' } }), 413, 'YUN_PAYLOAD_TOO_LARGE');
      // The server keeps answering.
      expectStatus(await call(cloud, 'GET', '/healthz'), 200);
    });

    it('a text/plain body → 415 YUN_UNSUPPORTED_MEDIA_TYPE', async () => {
      expectError(await call(cloud, 'POST', '/v1/projects', { token: admin, rawBody: '{"name":"plain"}', headers: { 'content-type': 'text/plain' } }), 415, 'YUN_UNSUPPORTED_MEDIA_TYPE');
      expectError(await call(cloud, 'POST', '/v1/auth/tokens', { rawBody: 'admin:secret', headers: { 'content-type': 'text/plain' } }), 415, 'YUN_UNSUPPORTED_MEDIA_TYPE');
    });

    it('other content types → 415 YUN_UNSUPPORTED_MEDIA_TYPE, whose detail names the content type', async () => {
      const e = expectError(await call(cloud, 'POST', '/v1/projects', { token: admin, rawBody: '<name>x</name>', headers: { 'content-type': 'application/xml' } }), 415, 'YUN_UNSUPPORTED_MEDIA_TYPE');
      assert.match(e.detail, /application\/xml/, `the detail does not say which content type was refused: ${e.detail}`);
    });
  });

  describe('tenancy', () => {
    it('alice lists only demo', async () => {
      const r = await call(cloud, 'GET', '/v1/projects?with_count=true', { token: alice });
      expectStatus(r, 200);
      assert.deepEqual(r.body.items.map((p: { name: string }) => p.name), ['demo']);
      assert.equal(r.body.count, 1);
      assert.equal(r.body.next, null);
    });

    it('alice gets 404 (not 403) for the admin project, by name and by id', async () => {
      expectError(await call(cloud, 'GET', '/v1/projects/admin', { token: alice }), 404, 'YUN_NOT_FOUND');
      expectError(await call(cloud, 'GET', `/v1/projects/${adminProjectId}`, { token: alice }), 404, 'YUN_NOT_FOUND');
      expectError(await call(cloud, 'GET', `/v1/projects/${adminProjectId}/members`, { token: alice }), 404, 'YUN_NOT_FOUND');
      expectError(await call(cloud, 'GET', `/v1/projects/${adminProjectId}/quotas`, { token: alice }), 404, 'YUN_NOT_FOUND');
    });

    it('another project looks the same as a missing one when alice changes its members (404, so names cannot be probed)', async () => {
      const missing = expectError(await call(cloud, 'PUT', '/v1/projects/no-such-project/members/alice/roles/admin', { token: alice }), 404);
      const other = await call(cloud, 'PUT', '/v1/projects/admin/members/alice/roles/admin', { token: alice });
      assert.equal(other.status, 404, `PUT on the admin project's members by a non-member answers ${other.status} (a missing project answers 404 ${missing.code}): ${other.text}`);
      const otherRm = await call(cloud, 'DELETE', `/v1/projects/${adminProjectId}/members/admin/roles/admin`, { token: alice });
      assert.equal(otherRm.status, 404, `DELETE on the admin project's members by a non-member answers ${otherRm.status}: ${otherRm.text}`);
    });

    it('alice gets 403 for creating users, projects and for the audit log', async () => {
      expectError(await call(cloud, 'POST', '/v1/users', { token: alice, body: { name: 'mallory', password: 'mallory-password' } }), 403, 'YUN_FORBIDDEN');
      expectError(await call(cloud, 'POST', '/v1/projects', { token: alice, body: { name: 'alices' } }), 403, 'YUN_FORBIDDEN');
      expectError(await call(cloud, 'PATCH', `/v1/projects/${demoId}`, { token: alice, body: { version: 1, description: 'mine' } }), 403, 'YUN_FORBIDDEN');
      expectError(await call(cloud, 'GET', '/v1/audit', { token: alice }), 403, 'YUN_FORBIDDEN');
      expectError(await call(cloud, 'GET', '/v1/cluster/join-tokens/worker', { token: alice }), 403, 'YUN_FORBIDDEN');
      expectError(await call(cloud, 'PATCH', `/v1/nodes/${cloud.nodeId}`, { token: alice, body: { version: 1, availability: 'drain' } }), 403, 'YUN_FORBIDDEN');
      // Nothing was created.
      const users = await call(cloud, 'GET', '/v1/users?name=mallory', { token: admin });
      assert.equal(users.body.items.length, 0);
    });

    it('alice sees only herself among users', async () => {
      const r = await call(cloud, 'GET', '/v1/users', { token: alice });
      expectStatus(r, 200);
      assert.deepEqual(r.body.items.map((u: { name: string }) => u.name), ['alice']);
      expectError(await call(cloud, 'GET', '/v1/users/admin', { token: alice }), 404, 'YUN_NOT_FOUND');
      expectStatus(await call(cloud, 'GET', '/v1/users/alice', { token: alice }), 200);
    });

    it('all_projects=true: 403 for alice on every list that accepts it; never widens a list that does not', async (t) => {
      const doc = (await call(cloud, 'GET', '/v1/openapi.json')).body as { paths: Record<string, Record<string, { parameters?: { in: string; name: string }[] }>> };
      const lists = Object.entries(doc.paths)
        .filter(([p, ops]) => !p.includes('{') && (ops.get?.parameters ?? []).some((x) => x.in === 'query' && x.name === 'all_projects'))
        .map(([p]) => p);
      for (const path of lists) {
        expectError(await call(cloud, 'GET', `${path}?all_projects=true`, { token: alice }), 403, 'YUN_FORBIDDEN');
        expectError(await call(cloud, 'GET', `${path}?project_id=${adminProjectId}`, { token: alice }), 403, 'YUN_FORBIDDEN');
        expectStatus(await call(cloud, 'GET', `${path}?all_projects=true`, { token: admin }), 200);
      }
      // Lists that do not take all_projects refuse it rather than ignoring it.
      for (const path of ['/v1/projects', '/v1/users', '/v1/nodes'].filter((p) => !lists.includes(p))) {
        expectError(await call(cloud, 'GET', `${path}?all_projects=true`, { token: alice }), 400, 'YUN_UNKNOWN_QUERY_PARAMETER');
      }
      if (lists.length === 0) t.diagnostic('no list accepts all_projects yet (no project-scoped kinds); only the refusal was checked');
    });

    it('reader and member cannot manage members; a project admin can, on that project only', async () => {
      // bob (reader) can read the project.
      expectStatus(await call(cloud, 'GET', `/v1/projects/${demoId}`, { token: bob }), 200);
      const members = await call(cloud, 'GET', `/v1/projects/${demoId}/members`, { token: bob });
      expectStatus(members, 200);
      assert.deepEqual(members.body.items.map((m: { user_name: string }) => m.user_name).sort(), ['alice', 'bob', 'carol']);
      expectStatus(await call(cloud, 'GET', `/v1/projects/${demoId}/quotas`, { token: bob }), 200);
      // Neither the reader nor the member may grant or take away roles.
      expectError(await call(cloud, 'PUT', `/v1/projects/${demoId}/members/bob/roles/member`, { token: bob }), 403, 'YUN_FORBIDDEN');
      expectError(await call(cloud, 'PUT', `/v1/projects/${demoId}/members/bob/roles/member`, { token: alice }), 403, 'YUN_FORBIDDEN');
      expectError(await call(cloud, 'DELETE', `/v1/projects/${demoId}/members/alice/roles/member`, { token: bob }), 403, 'YUN_FORBIDDEN');
      expectError(await call(cloud, 'PATCH', `/v1/projects/${demoId}/quotas`, { token: bob, body: { version: 1, services: 1 } }), 403, 'YUN_FORBIDDEN');
      // carol (admin of demo) may, on demo.
      expectStatus(await call(cloud, 'PUT', `/v1/projects/${demoId}/members/bob/roles/member`, { token: carol }), 204);
      const bobToken = await cloud.api.login('bob', pw.bob, 'demo');
      const info = await call(cloud, 'GET', '/v1/auth/tokens', { token: bobToken });
      assert.ok(info.body.token.roles.includes('member'), JSON.stringify(info.body));
      expectStatus(await call(cloud, 'DELETE', `/v1/projects/${demoId}/members/bob/roles/member`, { token: carol }), 204);
      // But carol is not a cloud admin.
      expectError(await call(cloud, 'POST', '/v1/users', { token: carol, body: { name: 'eve', password: 'eve-password-1' } }), 403, 'YUN_FORBIDDEN');
      expectError(await call(cloud, 'GET', '/v1/projects/admin', { token: carol }), 404, 'YUN_NOT_FOUND');
    });

    it('Authorization: Bearer works like X-Auth-Token', async () => {
      const a = await call(cloud, 'GET', '/v1/projects', { headers: { authorization: `Bearer ${alice}` } });
      expectStatus(a, 200);
      assert.deepEqual(a.body.items.map((p: { name: string }) => p.name), ['demo']);
      const b = await call(cloud, 'GET', '/v1/auth/tokens', { headers: { authorization: `bearer ${admin}` } });
      expectStatus(b, 200);
      assert.equal(b.body.token.cloud_admin, true);
      expectError(await call(cloud, 'POST', '/v1/users', { headers: { authorization: `Bearer ${alice}` }, body: { name: 'x1', password: 'x1-password' } }), 403, 'YUN_FORBIDDEN');
      expectError(await call(cloud, 'GET', '/v1/projects', { headers: { authorization: 'Bearer yun_notatokenatallnotatokenatall' } }), 401, 'YUN_TOKEN_INVALID');
    });

    it('login: 201 with X-Subject-Token and a body with user, project, roles, expires_at and a catalog; bad password → 401', async () => {
      const r = await call(cloud, 'POST', '/v1/auth/tokens', { body: { username: 'alice', password: pw.alice, project: 'demo' } });
      expectStatus(r, 201);
      assert.match(r.headers.get('x-subject-token') ?? '', /^yun_/);
      const t = r.body.token;
      assert.equal(t.user.name, 'alice');
      assert.equal(t.project.name, 'demo');
      assert.deepEqual([...t.roles].sort(), ['member', 'reader']);
      assert.ok(Date.parse(t.expires_at) > Date.now());
      assert.ok(Array.isArray(t.catalog) && t.catalog.length > 0);
      expectError(await call(cloud, 'POST', '/v1/auth/tokens', { body: { username: 'alice', password: 'wrong-password', project: 'demo' } }), 401, 'YUN_BAD_CREDENTIALS');
      expectError(await call(cloud, 'POST', '/v1/auth/tokens', { body: { username: 'nobody', password: 'wrong-password', project: 'demo' } }), 401, 'YUN_BAD_CREDENTIALS');
      expectError(await call(cloud, 'POST', '/v1/auth/tokens', { body: { username: 'alice', password: pw.alice, project: 'admin' } }), 401);
    });

    it('a token expires', async () => {
      const r = await call(cloud, 'POST', '/v1/auth/tokens', { body: { username: 'alice', password: pw.alice, project: 'demo', ttl: '1s' } });
      expectStatus(r, 201);
      const tok = r.headers.get('x-subject-token')!;
      await waitFor('the 1s token to expire', async () => {
        const x = await call(cloud, 'GET', '/v1/projects', { token: tok });
        return x.status === 401 ? x : undefined;
      }, 10_000).then((x) => expectError(x, 401, 'YUN_TOKEN_EXPIRED'));
    });

    it('DELETE /v1/auth/tokens with X-Subject-Token revokes that token; without, the caller\'s own', async () => {
      const t1 = await cloud.api.login('alice', pw.alice, 'demo');
      const t2 = await cloud.api.login('alice', pw.alice, 'demo');
      expectStatus(await call(cloud, 'GET', '/v1/projects', { token: t1 }), 200);
      // alice revokes t1 with t2.
      expectStatus(await call(cloud, 'DELETE', '/v1/auth/tokens', { token: t2, headers: { 'x-subject-token': t1 } }), 204);
      expectError(await call(cloud, 'GET', '/v1/projects', { token: t1 }), 401, 'YUN_TOKEN_INVALID');
      expectStatus(await call(cloud, 'GET', '/v1/projects', { token: t2 }), 200);
      // bob may not revoke alice's token.
      const t3 = await cloud.api.login('alice', pw.alice, 'demo');
      expectError(await call(cloud, 'DELETE', '/v1/auth/tokens', { token: bob, headers: { 'x-subject-token': t3 } }), 404, 'YUN_NOT_FOUND');
      expectStatus(await call(cloud, 'GET', '/v1/projects', { token: t3 }), 200);
      // Log out: the caller's own token.
      expectStatus(await call(cloud, 'DELETE', '/v1/auth/tokens', { token: t2 }), 204);
      expectError(await call(cloud, 'GET', '/v1/projects', { token: t2 }), 401, 'YUN_TOKEN_INVALID');
      // An admin may revoke anyone's token.
      expectStatus(await call(cloud, 'DELETE', '/v1/auth/tokens', { token: admin, headers: { 'x-subject-token': t3 } }), 204);
      expectError(await call(cloud, 'GET', '/v1/projects', { token: t3 }), 401, 'YUN_TOKEN_INVALID');
    });

    it('DELETE /v1/auth/tokens/:token_id revokes that token', async () => {
      const t1 = await cloud.api.login('alice', pw.alice, 'demo');
      const info = await call(cloud, 'GET', '/v1/auth/tokens', { token: t1 });
      expectStatus(info, 200);
      const id = info.body.token.token_id as string;
      assert.match(id, /^[0-9a-f]{16}$/);
      // Not bob's to revoke.
      expectError(await call(cloud, 'DELETE', `/v1/auth/tokens/${id}`, { token: bob }), 404, 'YUN_NOT_FOUND');
      expectStatus(await call(cloud, 'GET', '/v1/projects', { token: t1 }), 200);
      expectStatus(await call(cloud, 'DELETE', `/v1/auth/tokens/${id}`, { token: alice }), 204);
      expectError(await call(cloud, 'GET', '/v1/projects', { token: t1 }), 401, 'YUN_TOKEN_INVALID');
      expectError(await call(cloud, 'DELETE', `/v1/auth/tokens/${id}`, { token: alice }), 404, 'YUN_NOT_FOUND');
      // An admin revokes by id too.
      const t2 = await cloud.api.login('alice', pw.alice, 'demo');
      const id2 = (await call(cloud, 'GET', '/v1/auth/tokens', { token: t2 })).body.token.token_id as string;
      expectStatus(await call(cloud, 'DELETE', `/v1/auth/tokens/${id2}`, { token: admin }), 204);
      expectError(await call(cloud, 'GET', '/v1/projects', { token: t2 }), 401, 'YUN_TOKEN_INVALID');
    });

    it('removing alice\'s role makes her token invalid on the next request', async () => {
      const tok = await cloud.api.login('alice', pw.alice, 'demo');
      expectStatus(await call(cloud, 'GET', '/v1/projects', { token: tok }), 200);
      expectStatus(await call(cloud, 'DELETE', `/v1/projects/${demoId}/members/${aliceId}/roles/member`, { token: admin }), 204);
      expectError(await call(cloud, 'GET', '/v1/projects', { token: tok }), 401, 'YUN_TOKEN_INVALID');
      expectError(await call(cloud, 'GET', '/v1/projects', { token: alice }), 401, 'YUN_TOKEN_INVALID');
      expectError(await call(cloud, 'POST', '/v1/auth/tokens', { body: { username: 'alice', password: pw.alice, project: 'demo' } }), 401, 'YUN_NO_ROLE_ON_PROJECT');
      // Granting it again lets her log in again (the old tokens stay dead only while she has no role).
      expectStatus(await call(cloud, 'PUT', `/v1/projects/${demoId}/members/alice/roles/member`, { token: admin }), 204);
      alice = await cloud.api.login('alice', pw.alice, 'demo');
      expectStatus(await call(cloud, 'GET', '/v1/projects', { token: alice }), 200);
    });
  });

  describe('versions and status codes of writes', () => {
    it('POST → 201 with a Location that resolves; DELETE → 204, then 404', async () => {
      const r = await call(cloud, 'POST', '/v1/projects', { token: admin, body: { name: 'located' } });
      expectStatus(r, 201);
      const loc = r.headers.get('location');
      assert.ok(loc, 'no Location header');
      assert.equal(r.body.version, 1);
      const g = await call(cloud, 'GET', new URL(loc, cloud.url).pathname, { token: admin });
      expectStatus(g, 200);
      assert.equal(g.body.id, r.body.id);
      assert.equal(g.body.name, 'located');
      expectError(await call(cloud, 'POST', '/v1/projects', { token: admin, body: { name: 'located' } }), 409, 'YUN_NAME_CONFLICT');
      const d = await call(cloud, 'DELETE', `/v1/projects/${r.body.id}`, { token: admin });
      expectStatus(d, 204);
      assert.equal(d.text, '');
      expectError(await call(cloud, 'GET', `/v1/projects/${r.body.id}`, { token: admin }), 404, 'YUN_NOT_FOUND');
      // A user too.
      const u = await call(cloud, 'POST', '/v1/users', { token: admin, body: { name: 'temp-user', password: 'temp-password' } });
      expectStatus(u, 201);
      assert.ok(u.headers.get('location'));
      expectStatus(await call(cloud, 'DELETE', `/v1/users/${u.body.id}`, { token: admin }), 204);
    });

    it('two PATCHes with the same body version: the second → 409 YUN_VERSION_CONFLICT', async () => {
      const p = await call(cloud, 'POST', '/v1/projects', { token: admin, body: { name: 'versioned' } });
      expectStatus(p, 201);
      const v = p.body.version as number;
      const a = await call(cloud, 'PATCH', `/v1/projects/${p.body.id}`, { token: admin, body: { version: v, description: 'first' } });
      expectStatus(a, 200);
      assert.equal(a.body.version, v + 1);
      assert.equal(a.body.description, 'first');
      const e = expectError(await call(cloud, 'PATCH', `/v1/projects/${p.body.id}`, { token: admin, body: { version: v, description: 'second' } }), 409, 'YUN_VERSION_CONFLICT');
      assert.ok(e.detail.length > 0);
      const g = await call(cloud, 'GET', `/v1/projects/${p.body.id}`, { token: admin });
      assert.equal(g.body.description, 'first', 'the stale write must not have been applied');
      assert.equal(g.body.version, v + 1);
    });

    it('the same with If-Match (quoted, as the ETag gives it)', async () => {
      const g = await call(cloud, 'GET', '/v1/projects/versioned', { token: admin });
      expectStatus(g, 200);
      const etag = g.headers.get('etag');
      assert.ok(etag, 'GET gives no ETag');
      assert.equal(etag, `"${g.body.version}"`);
      const a = await call(cloud, 'PATCH', '/v1/projects/versioned', { token: admin, headers: { 'if-match': etag }, body: { description: 'third' } });
      expectStatus(a, 200);
      expectError(await call(cloud, 'PATCH', '/v1/projects/versioned', { token: admin, headers: { 'if-match': etag }, body: { description: 'fourth' } }), 409, 'YUN_VERSION_CONFLICT');
      // If-Match and a disagreeing body version → 400.
      expectError(await call(cloud, 'PATCH', '/v1/projects/versioned', { token: admin, headers: { 'if-match': `"${a.body.version}"` }, body: { version: 1, description: 'x' } }), 400);
      // Not a version at all → 400.
      expectError(await call(cloud, 'PATCH', '/v1/projects/versioned', { token: admin, headers: { 'if-match': 'banana' }, body: { description: 'x' } }), 400);
      // A stale If-Match on DELETE → 409 and the project stays.
      expectError(await call(cloud, 'DELETE', '/v1/projects/versioned', { token: admin, headers: { 'if-match': etag } }), 409, 'YUN_VERSION_CONFLICT');
      expectStatus(await call(cloud, 'GET', '/v1/projects/versioned', { token: admin }), 200);
    });

    it('a PATCH with no version → 428 YUN_VERSION_REQUIRED', async () => {
      expectError(await call(cloud, 'PATCH', '/v1/projects/versioned', { token: admin, body: { description: 'no version' } }), 428, 'YUN_VERSION_REQUIRED');
      expectError(await call(cloud, 'PATCH', `/v1/nodes/${cloud.nodeId}`, { token: admin, body: { availability: 'pause' } }), 428, 'YUN_VERSION_REQUIRED');
      expectError(await call(cloud, 'PATCH', '/v1/projects/demo/quotas', { token: admin, body: { services: 5 } }), 428, 'YUN_VERSION_REQUIRED');
    });
  });

  describe('audit log', () => {
    it('mutating calls (a success, a failure, logins) are recorded with user, project, action, status and request id', async () => {
      const created = await call(cloud, 'POST', '/v1/projects', { token: admin, body: { name: 'audited' } });
      expectStatus(created, 201);
      const failed = await call(cloud, 'PATCH', '/v1/projects/audited', { token: admin, body: { description: 'no version' } });
      expectError(failed, 428);
      const forbidden = await call(cloud, 'POST', '/v1/users', { token: alice, body: { name: 'nope', password: 'nope-password' } });
      expectError(forbidden, 403);
      const login = await call(cloud, 'POST', '/v1/auth/tokens', { body: { username: 'alice', password: pw.alice, project: 'demo' } });
      expectStatus(login, 201);
      const badLogin = await call(cloud, 'POST', '/v1/auth/tokens', { body: { username: 'alice', password: 'not-her-password' } });
      expectError(badLogin, 401);
      const read = await call(cloud, 'GET', '/v1/projects', { token: admin });
      expectStatus(read, 200);

      const rid = (r: Res) => r.headers.get('x-request-id')!;
      const wanted = [created, failed, forbidden, login, badLogin].map(rid);
      const entries = await waitFor('the audit entries', async () => {
        const r = await call(cloud, 'GET', '/v1/audit?limit=1000', { token: admin });
        expectStatus(r, 200);
        const byRid = new Map<string, Record<string, unknown>>(r.body.items.map((e: Record<string, unknown>) => [e.request_id as string, e]));
        return wanted.every((w) => byRid.has(w)) ? byRid : undefined;
      });
      const adminUser = (await call(cloud, 'GET', '/v1/auth/tokens', { token: admin })).body.token.user;

      const c = entries.get(rid(created))!;
      assert.equal(c.user_id, adminUser.id);
      assert.equal(c.user_name, 'admin');
      assert.equal(c.project_id, adminProjectId);
      assert.equal(c.action, 'project.create');
      assert.equal(c.status, 201);
      assert.equal(c.result, 'success');
      assert.equal(c.target_id, created.body.id);
      assert.ok(typeof c.at === 'string' && !Number.isNaN(Date.parse(c.at as string)));

      const f = entries.get(rid(failed))!;
      assert.equal(f.action, 'project.update');
      assert.equal(f.status, 428);
      assert.equal(f.result, 'failure');
      assert.equal(f.error_code, 'YUN_VERSION_REQUIRED');
      assert.equal(f.user_name, 'admin');

      const x = entries.get(rid(forbidden))!;
      assert.equal(x.user_name, 'alice');
      assert.equal(x.project_id, demoId);
      assert.equal(x.action, 'user.create');
      assert.equal(x.status, 403);
      assert.equal(x.result, 'failure');

      const l = entries.get(rid(login))!;
      assert.equal(l.user_name, 'alice');
      assert.equal(l.project_id, demoId);
      assert.equal(l.action, 'token.issue');
      assert.equal(l.status, 201);

      const b = entries.get(rid(badLogin))!;
      assert.equal(b.user_name, 'alice');
      assert.equal(b.action, 'token.issue');
      assert.equal(b.status, 401);
      assert.equal(b.result, 'failure');

      // Reads are not audited.
      assert.ok(!entries.has(rid(read)), 'a GET was audited');
    });

    it('the audit log pages newest first, filters by result, and refuses a bad marker', async () => {
      const r = await call(cloud, 'GET', '/v1/audit?limit=2&with_count=true', { token: admin });
      expectStatus(r, 200);
      assert.equal(r.body.items.length, 2);
      assert.ok(r.body.items[0].id > r.body.items[1].id, 'not newest first');
      assert.ok(r.body.count >= 2);
      assert.ok(typeof r.body.next === 'string');
      const n = await call(cloud, 'GET', r.body.next, { token: admin });
      expectStatus(n, 200);
      assert.ok(n.body.items[0].id < r.body.items[1].id);
      const fails = await call(cloud, 'GET', '/v1/audit?result=failure&limit=1000', { token: admin });
      expectStatus(fails, 200);
      assert.ok(fails.body.items.length > 0);
      assert.ok(fails.body.items.every((e: { result: string }) => e.result === 'failure'));
      expectError(await call(cloud, 'GET', '/v1/audit?marker=abc', { token: admin }), 400);
      expectError(await call(cloud, 'GET', '/v1/audit?bogus=1', { token: admin }), 400, 'YUN_UNKNOWN_QUERY_PARAMETER');
    });
  });

  describe('nodes and the cluster', () => {
    it('PATCH /v1/nodes/:id drains and labels with a version; label filters work', async () => {
      const g = await call(cloud, 'GET', `/v1/nodes/${cloud.nodeId}`, { token: admin });
      expectStatus(g, 200);
      const n = g.body;
      for (const k of ['id', 'hostname', 'address', 'role', 'availability', 'status', 'labels', 'resources', 'drivers', 'version', 'last_heartbeat']) {
        assert.ok(k in n, `node has no ${k}`);
      }
      assert.equal(n.role, 'manager');
      assert.equal(n.status, 'ready');
      const v = n.version as number;
      const p = await call(cloud, 'PATCH', `/v1/nodes/${cloud.nodeId}`, { token: admin, body: { version: v, availability: 'drain', labels: { zone: 'a', tier: 'gold' } } });
      expectStatus(p, 200);
      assert.equal(p.body.availability, 'drain');
      assert.deepEqual(p.body.labels, { zone: 'a', tier: 'gold' });
      assert.equal(p.body.version, v + 1);
      expectError(await call(cloud, 'PATCH', `/v1/nodes/${cloud.nodeId}`, { token: admin, body: { version: v, availability: 'active' } }), 409, 'YUN_VERSION_CONFLICT');
      expectError(await call(cloud, 'PATCH', `/v1/nodes/${cloud.nodeId}`, { token: admin, body: { version: v + 1, availability: 'asleep' } }), 400, 'YUN_VALIDATION_FAILED');
      // A label key that could never be filtered on is refused (and nothing changes).
      expectError(await call(cloud, 'PATCH', `/v1/nodes/${cloud.nodeId}`, { token: admin, body: { version: v + 1, labels: { 'bad key!': 'x' } } }), 400);

      const ids = async (q: string) => {
        const r = await call(cloud, 'GET', `/v1/nodes?${q}`, { token: admin });
        expectStatus(r, 200);
        return r.body.items.map((x: { id: string }) => x.id);
      };
      assert.deepEqual(await ids('label=zone=a'), [cloud.nodeId]);
      assert.deepEqual(await ids('label=zone%3Da'), [cloud.nodeId]);
      assert.deepEqual(await ids('label=zone=b'), []);
      assert.deepEqual(await ids('label=zone'), [cloud.nodeId]);
      assert.deepEqual(await ids('label=nosuchlabel'), []);
      assert.deepEqual(await ids('label=zone=a&label=tier=gold'), [cloud.nodeId]);
      assert.deepEqual(await ids('label=zone=a&label=tier=silver'), []);
      assert.deepEqual(await ids('availability=drain'), [cloud.nodeId]);
      assert.deepEqual(await ids('availability=active'), []);
      expectError(await call(cloud, 'GET', '/v1/nodes?label=%21bad', { token: admin }), 400, 'YUN_BAD_FILTER');

      // Back to active with If-Match; the labels stay.
      const back = await call(cloud, 'PATCH', `/v1/nodes/${cloud.nodeId}`, { token: admin, headers: { 'if-match': `"${v + 1}"` }, body: { availability: 'active' } });
      expectStatus(back, 200);
      assert.equal(back.body.availability, 'active');
      assert.deepEqual(back.body.labels, { zone: 'a', tier: 'gold' });
      expectError(await call(cloud, 'GET', '/v1/nodes/no-such-node', { token: admin }), 404, 'YUN_NOT_FOUND');
      // The local manager cannot remove itself.
      expectError(await call(cloud, 'DELETE', `/v1/nodes/${cloud.nodeId}?force=true`, { token: admin }), 403, 'YUN_FORBIDDEN');
    });

    it('join tokens: worker and manager differ, carry the CA fingerprint; rotation replaces one', async () => {
      const pem = readFileSync(join(cloud.dataDir, 'pki', 'ca.crt'), 'utf8');
      const fp = new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();
      assert.match(fp, /^[0-9a-f]{64}$/);
      const cluster = await call(cloud, 'GET', '/v1/cluster', { token: admin });
      expectStatus(cluster, 200);
      assert.equal(cluster.body.ca_fingerprint, fp);

      const w = await call(cloud, 'GET', '/v1/cluster/join-tokens/worker', { token: admin });
      const m = await call(cloud, 'GET', '/v1/cluster/join-tokens/manager', { token: admin });
      expectStatus(w, 200);
      expectStatus(m, 200);
      assert.equal(w.body.role, 'worker');
      assert.equal(m.body.role, 'manager');
      assert.notEqual(w.body.token, m.body.token);
      for (const t of [w.body, m.body]) {
        assert.ok(t.token.includes(fp), `token ${t.token} does not carry the CA fingerprint ${fp}`);
        assert.ok(t.command.includes(t.token), `command ${t.command} does not contain the token`);
      }
      // Stable until rotated.
      assert.equal((await call(cloud, 'GET', '/v1/cluster/join-tokens/worker', { token: admin })).body.token, w.body.token);
      const rot = await call(cloud, 'POST', '/v1/cluster/join-tokens/worker/rotate', { token: admin });
      expectStatus(rot, 200);
      assert.notEqual(rot.body.token, w.body.token);
      assert.ok(rot.body.token.includes(fp));
      assert.equal((await call(cloud, 'GET', '/v1/cluster/join-tokens/worker', { token: admin })).body.token, rot.body.token);
      assert.equal((await call(cloud, 'GET', '/v1/cluster/join-tokens/manager', { token: admin })).body.token, m.body.token, 'rotating the worker token changed the manager token');
      expectError(await call(cloud, 'GET', '/v1/cluster/join-tokens/admin', { token: admin }), 400);
      expectError(await call(cloud, 'POST', '/v1/cluster/join-tokens/worker/rotate', { token: alice }), 403, 'YUN_FORBIDDEN');
    });
  });

  describe('OpenAPI, health and metrics', () => {
    let doc: { openapi: string; paths: Record<string, Record<string, unknown>> };

    before(async () => {
      const r = await call(cloud, 'GET', '/v1/openapi.json');
      expectStatus(r, 200);
      doc = r.body;
    });

    it('/v1/openapi.json needs no token and validates', async () => {
      assert.match(doc.openapi, /^3\./);
      await SwaggerParser.validate(structuredClone(doc) as never);
    });

    it('the document has a path and method for every registered route', () => {
      const routes = routesFromTree(cloud.app.printRoutes({ commonPrefix: false }));
      assert.ok(routes.length >= 20, `only ${routes.length} routes parsed from printRoutes`);
      const missing: string[] = [];
      for (const { method, url } of routes) {
        if (method === 'HEAD' || method === 'OPTIONS') continue;
        const p = url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
        if (!doc.paths[p]?.[method.toLowerCase()]) missing.push(`${method} ${p}`);
      }
      assert.deepEqual(missing, [], `routes missing from the OpenAPI document: ${missing.join(', ')}`);
      // And the ones this file exercises, by name.
      const exercised = [
        ['get', '/healthz'], ['get', '/metrics'], ['get', '/v1/openapi.json'], ['get', '/v1/version'],
        ['post', '/v1/auth/tokens'], ['get', '/v1/auth/tokens'], ['delete', '/v1/auth/tokens'], ['delete', '/v1/auth/tokens/{id}'],
        ['get', '/v1/users'], ['post', '/v1/users'], ['get', '/v1/users/{id}'], ['delete', '/v1/users/{id}'],
        ['get', '/v1/projects'], ['post', '/v1/projects'], ['get', '/v1/projects/{id}'], ['patch', '/v1/projects/{id}'], ['delete', '/v1/projects/{id}'],
        ['get', '/v1/projects/{id}/members'], ['put', '/v1/projects/{id}/members/{user}/roles/{role}'], ['delete', '/v1/projects/{id}/members/{user}/roles/{role}'],
        ['get', '/v1/projects/{id}/quotas'], ['patch', '/v1/projects/{id}/quotas'],
        ['get', '/v1/audit'], ['get', '/v1/nodes'], ['get', '/v1/nodes/{id}'], ['patch', '/v1/nodes/{id}'], ['delete', '/v1/nodes/{id}'],
        ['get', '/v1/cluster'], ['get', '/v1/cluster/join-tokens/{role}'], ['post', '/v1/cluster/join-tokens/{role}/rotate'],
      ];
      for (const [m, p] of exercised) assert.ok(doc.paths[p!]?.[m!], `OpenAPI has no ${m!.toUpperCase()} ${p}`);
    });

    it('/healthz answers without a token', async () => {
      const r = await call(cloud, 'GET', '/healthz');
      expectStatus(r, 200);
      assert.equal(r.body.status, 'ok');
    });

    it('/metrics answers Prometheus text without a token, with yun_http_requests_total', async () => {
      const r = await call(cloud, 'GET', '/metrics');
      expectStatus(r, 200);
      assert.match(r.headers.get('content-type') ?? '', /^text\/plain/);
      assert.match(r.text, /^# TYPE yun_http_requests_total counter$/m);
      assert.match(r.text, /^yun_http_requests_total\{[^}]*route="\/v1\/projects"[^}]*\} \d+/m);
      assert.match(r.text, /yun_http_request_duration_seconds_bucket/);
    });

    it('/v1/version answers without a token', async () => {
      const r = await call(cloud, 'GET', '/v1/version');
      expectStatus(r, 200);
      assert.equal(typeof r.body.version, 'string');
    });
  });
});

/** Routes from fastify's printRoutes({ commonPrefix: false }) tree: `├── /v1/x (GET, HEAD)` lines, nested by 4 columns. */
function routesFromTree(tree: string): { method: string; url: string }[] {
  const out: { method: string; url: string }[] = [];
  const stack: string[] = [];
  for (const line of tree.split('\n')) {
    const m = /^((?:│ {3}| {4})*)(?:├── |└── )(.*?)(?: \(([A-Z, ]+)\))?$/.exec(line);
    if (!m) continue;
    const depth = m[1]!.length / 4;
    stack.length = depth;
    stack[depth] = m[2]!;
    if (m[3]) for (const method of m[3].split(/,\s*/)) out.push({ method, url: stack.join('') });
  }
  return out;
}

// -------------------------------------------------------------------------------------------------

describe('API: pagination over 2,500 objects', () => {
  let cloud: TestCloud;
  let tokens: string[];
  const N = 2500;
  const names = Array.from({ length: N }, (_, i) => `pg-${String(i).padStart(4, '0')}`);

  before(async () => {
    cloud = await startTestCloud();
    // A few tokens, each with its own rate-limit bucket, so that the creation burst stays well
    // under the default 1000 requests per second per token.
    tokens = [];
    for (let i = 0; i < 3; i++) tokens.push(await cloud.api.login('admin', cloud.adminPassword, 'admin'));
    await pool(names, 50, async (name, i) => {
      for (let attempt = 0; ; attempt++) {
        const r = await cloud.api.req('POST', '/v1/projects', { token: tokens[i % tokens.length], body: { name } });
        if (r.status === 201) return;
        if (r.status === 429 && attempt < 20) {
          await new Promise((res) => setTimeout(res, 1000 * Number(r.headers.get('retry-after') ?? 1)));
          continue;
        }
        throw new Error(`creating ${name}: ${r.status} ${r.text}`);
      }
    });
  });

  after(async () => {
    await cloud?.stop();
  });

  async function walk(first: string): Promise<{ pages: Res[]; names: string[] }> {
    const pages: Res[] = [];
    let next: string | null = first;
    while (next) {
      assert.ok(pages.length < 10, 'more than 10 pages: the next links do not end');
      const r = await call(cloud, 'GET', next, { token: tokens[0] });
      expectStatus(r, 200);
      pages.push(r);
      next = r.body.next;
      if (next !== null) assert.equal(typeof next, 'string');
    }
    return { pages, names: pages.flatMap((p) => p.body.items.map((x: { name: string }) => x.name)) };
  }

  it('limit=1000&with_count=true: exactly 3 pages via next, count 2500 (+ the admin project), no duplicates', async () => {
    const { pages, names: got } = await walk('/v1/projects?limit=1000&with_count=true');
    assert.equal(pages.length, 3);
    assert.deepEqual(pages.map((p) => p.body.items.length), [1000, 1000, N + 1 - 2000]);
    for (const p of pages) assert.equal(p.body.count, N + 1, 'count is the number of matching objects (2500 created + admin)');
    assert.equal(new Set(got).size, got.length, 'duplicates across pages');
    const ours = got.filter((n) => n.startsWith('pg-'));
    assert.equal(ours.length, N);
    assert.deepEqual(new Set(ours), new Set(names));
    assert.ok(got.includes('admin'));
    // Default order is by name, ascending.
    assert.deepEqual(got, [...got].sort());
    // next links keep the query (limit, with_count).
    assert.match(pages[0]!.body.next, /limit=1000/);
    assert.match(pages[0]!.body.next, /with_count=true/);
  });

  it('sort=name:desc really sorts, across pages', async () => {
    const { pages, names: got } = await walk('/v1/projects?limit=1000&with_count=true&sort=name:desc');
    assert.equal(pages.length, 3);
    assert.equal(got.length, N + 1);
    assert.deepEqual(got, [...names, 'admin'].sort().reverse());
    assert.equal(got[0], 'pg-2499');
    assert.equal(got[got.length - 1], 'admin');
  });

  it('sort=created_at:desc and id:asc give every object once', async () => {
    for (const sort of ['created_at:desc', 'id:asc', 'name:asc']) {
      const { pages, names: got } = await walk(`/v1/projects?limit=1000&sort=${sort}`);
      assert.equal(pages.length, 3, sort);
      assert.equal(new Set(got).size, N + 1, sort);
    }
  });

  it('a name filter counts only what matches', async () => {
    const r = await call(cloud, 'GET', '/v1/projects?name=pg-1234&with_count=true', { token: tokens[0] });
    expectStatus(r, 200);
    assert.equal(r.body.count, 1);
    assert.deepEqual(r.body.items.map((x: { name: string }) => x.name), ['pg-1234']);
    assert.equal(r.body.next, null);
  });

  it('a bad marker → 400 YUN_BAD_MARKER', async () => {
    expectError(await call(cloud, 'GET', '/v1/projects?limit=10&marker=no-such-object', { token: tokens[0] }), 400, 'YUN_BAD_MARKER');
    // An object of another list is no marker for this one.
    expectError(await call(cloud, 'GET', `/v1/projects?limit=10&marker=${cloud.nodeId}`, { token: tokens[0] }), 400, 'YUN_BAD_MARKER');
    // A marker outside the filter.
    const one = await call(cloud, 'GET', '/v1/projects?name=pg-0001', { token: tokens[0] });
    expectError(await call(cloud, 'GET', `/v1/projects?name=pg-0002&marker=${one.body.items[0].id}`, { token: tokens[0] }), 400, 'YUN_BAD_MARKER');
  });

  it('an unknown query field → 400 YUN_UNKNOWN_QUERY_PARAMETER naming it', async () => {
    const e = expectError(await call(cloud, 'GET', '/v1/projects?colour=blue', { token: tokens[0] }), 400, 'YUN_UNKNOWN_QUERY_PARAMETER');
    assert.match(e.detail, /colour/);
  });

  it('a bad sort key → 400 YUN_BAD_SORT', async () => {
    expectError(await call(cloud, 'GET', '/v1/projects?sort=colour', { token: tokens[0] }), 400, 'YUN_BAD_SORT');
    expectError(await call(cloud, 'GET', '/v1/projects?sort=colour:desc', { token: tokens[0] }), 400, 'YUN_BAD_SORT');
    expectError(await call(cloud, 'GET', '/v1/projects?sort=name:sideways', { token: tokens[0] }), 400);
  });

  it('limit=0, limit=1001 and limit=abc → 400', async () => {
    for (const l of ['0', '1001', '-1', 'abc', '1.5']) {
      expectError(await call(cloud, 'GET', `/v1/projects?limit=${l}`, { token: tokens[0] }), 400);
    }
    expectStatus(await call(cloud, 'GET', '/v1/projects?limit=1000', { token: tokens[0] }), 200);
    expectStatus(await call(cloud, 'GET', '/v1/projects?limit=1', { token: tokens[0] }), 200);
  });
});

// -------------------------------------------------------------------------------------------------

describe('API: rate limit', () => {
  let cloud: TestCloud;

  before(async () => {
    cloud = await startTestCloud({ rateLimit: 5 });
  });

  after(async () => {
    await cloud?.stop();
  });

  it('more than 5 requests a second with one token → 429 YUN_RATE_LIMITED with Retry-After', async () => {
    const tok = await cloud.api.login('admin', cloud.adminPassword, 'admin');
    const rs = await Promise.all(Array.from({ length: 20 }, () => call(cloud, 'GET', '/v1/projects', { token: tok })));
    const limited = rs.filter((r) => r.status === 429);
    assert.ok(limited.length > 0, `no 429 among ${rs.map((r) => r.status).join(',')}`);
    for (const r of limited) {
      expectError(r, 429, 'YUN_RATE_LIMITED');
      const ra = r.headers.get('retry-after');
      assert.ok(ra !== null && /^\d+$/.test(ra) && Number(ra) >= 0, `Retry-After: ${ra}`);
    }
    assert.ok(rs.every((r) => r.status === 200 || r.status === 429), rs.map((r) => r.status).join(','));
    // /healthz is never limited.
    const h = await Promise.all(Array.from({ length: 10 }, () => call(cloud, 'GET', '/healthz')));
    assert.ok(h.every((r) => r.status === 200));
    // After the window, the token works again.
    await waitFor('the rate limit window to pass', async () => ((await call(cloud, 'GET', '/v1/projects', { token: tok })).status === 200 ? true : undefined), 5000);
  });

  it('clients without a valid token are limited too (per address)', async () => {
    const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => call(cloud, 'GET', '/v1/projects', i % 2 ? { token: `yun_${'x'.repeat(40)}` } : {})));
    const statuses = rs.map((r) => r.status);
    assert.ok(statuses.includes(429), `20 unauthenticated requests in a burst, limit 5/s: no 429 (${statuses.join(',')})`);
    for (const r of rs) expectError(r, r.status);
  });
});
