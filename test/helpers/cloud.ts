import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Agent, fetch } from 'undici';
import { startCloud, type Cloud, type UpOptions } from '../../src/up/up.js';

/** A cloud started in this process on a free loopback port, in a temporary data directory. */
export interface TestCloud extends Cloud {
  adminPassword: string;
  api: Api;
  stop(): Promise<void>;
}

export async function startTestCloud(opts: Partial<UpOptions> = {}): Promise<TestCloud> {
  const dataDir = opts.dataDir ?? mkdtempSync(join(tmpdir(), 'yun-test-'));
  const cloud = await startCloud({ listen: '127.0.0.1:0', logLevel: 'warn', dnsPort: 0, tunnelPort: 0, ...opts, dataDir });
  const env = readFileSync(cloud.envPath, 'utf8');
  const adminPassword = /YUN_PASSWORD=(.*)/.exec(env)![1]!;
  const api = new Api(cloud.url, readFileSync(join(cloud.dataDir, 'pki', 'ca.crt'), 'utf8'));
  return Object.assign(cloud, {
    adminPassword,
    api,
    async stop() {
      await api.close();
      await cloud.close();
      if (!opts.dataDir) {
        const { removeAgentDir } = await import('./agents.js');
        await removeAgentDir(dataDir); // waits for task mounts to go first
      }
    },
  });
}

export interface Res<T = any> {
  status: number;
  headers: Headers;
  body: T;
  text: string;
}

/** A tiny HTTP client for tests: raw requests with the cloud's CA. */
export class Api {
  readonly agent: Agent;
  constructor(readonly url: string, ca: string) {
    this.agent = new Agent({ connect: { ca } });
  }

  async req<T = any>(method: string, path: string, opts: { token?: string; body?: unknown; rawBody?: string; headers?: Record<string, string> } = {}): Promise<Res<T>> {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.token) headers['x-auth-token'] = opts.token;
    let body: string | undefined = opts.rawBody;
    if (opts.body !== undefined) {
      body = JSON.stringify(opts.body);
      headers['content-type'] ??= 'application/json';
    }
    const r = await fetch(`${this.url}${path}`, { method, headers, body, dispatcher: this.agent });
    const text = await r.text();
    let parsed: any = undefined;
    try { parsed = text ? JSON.parse(text) : undefined; } catch { parsed = text; }
    return { status: r.status, headers: r.headers, body: parsed as T, text };
  }

  async login(username: string, password: string, project?: string): Promise<string> {
    const r = await this.req('POST', '/v1/auth/tokens', { body: { username, password, ...(project ? { project } : {}) } });
    if (r.status !== 201) throw new Error(`login failed: ${r.status} ${r.text}`);
    return r.headers.get('x-subject-token')!;
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}

/** Skip a test for a missing privilege or package, unless YUN_REQUIRE_ALL=1 makes that a failure. */
export function requireOrSkip(t: { skip: (msg: string) => void }, ok: boolean, why: string): boolean {
  if (ok) return true;
  if (process.env.YUN_REQUIRE_ALL === '1') throw new Error(`required but unavailable (YUN_REQUIRE_ALL=1): ${why}`);
  t.skip(why);
  return false;
}

/**
 * A store whose every call first yields to the event loop (setImmediate), as a store over a network
 * (etcd) does: concurrent requests then really interleave between their reads and their writes.
 */
export function slowStore(s: import('../../src/store/store.js').Store): import('../../src/store/store.js').Store {
  return new Proxy(s, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function' || prop === 'close') return v;
      return async (...args: unknown[]) => {
        await new Promise((r) => setImmediate(r));
        return (v as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}
