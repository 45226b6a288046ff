import { readFileSync } from 'node:fs';
import { Agent, ProxyAgent, fetch, type Dispatcher } from 'undici';
import { proxyFor, readProxyEnv } from '../util/proxy.js';
import { CliError } from './cli-error.js';
import { cacheToken, cachedToken, forgetToken, type Settings } from './config.js';

export interface RequestOptions {
  query?: Record<string, string | number | boolean | string[] | undefined>;
  body?: unknown;
  headers?: Record<string, string>;
  /** Send no token (login, version). */
  anonymous?: boolean;
}

export interface ApiResponse<T> {
  status: number;
  headers: Headers;
  body: T;
}

const TLS_CODES = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED', 'ERR_TLS_CERT_ALTNAME_INVALID', 'CERT_SIGNATURE_FAILURE', 'UNABLE_TO_GET_ISSUER_CERT',
]);

/** The API client: TLS with the cloud's CA, proxies honoured (never for the cloud itself), tokens cached. */
export class ApiClient {
  private dispatcher: Dispatcher;
  private token?: string;

  constructor(readonly settings: Settings) {
    if (!settings.url) {
      throw CliError.local('YUN_CONFIG_INVALID', 'No server URL: YUN_URL is not set and no `yun login` profile exists', 'Run `source DATA_DIR/admin.env` (printed by `yun up`), or `yun login --url URL`.');
    }
    let url: URL;
    try {
      url = new URL(settings.url);
    } catch {
      throw CliError.local('YUN_CONFIG_INVALID', `YUN_URL "${settings.url}" is not a URL`, 'It looks like https://127.0.0.1:7443.');
    }
    let ca: string | undefined;
    if (settings.cacert) {
      try {
        ca = readFileSync(settings.cacert, 'utf8');
      } catch (e) {
        throw CliError.local('YUN_CONFIG_INVALID', `Cannot read the CA certificate ${settings.cacert} (YUN_CACERT): ${(e as Error).message}`, 'Point YUN_CACERT at DATA_DIR/pki/ca.crt.');
      }
    }
    const connect = ca ? { ca } : {};
    const proxy = proxyFor(url.href, readProxyEnv());
    this.dispatcher = proxy ? new ProxyAgent({ uri: proxy, requestTls: connect }) : new Agent({ connect, keepAliveTimeout: 10_000 });
    this.token = settings.token;
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  private async send<T>(method: string, path: string, opts: RequestOptions, token?: string): Promise<ApiResponse<T>> {
    const u = new URL(path, `${this.settings.url}/`);
    for (const [k, v] of Object.entries(opts.query ?? {})) {
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const x of v) u.searchParams.append(k, x);
      else u.searchParams.set(k, String(v));
    }
    const headers: Record<string, string> = { accept: 'application/json', ...(opts.headers ?? {}) };
    if (token) headers['x-auth-token'] = token;
    let body: string | undefined;
    if (opts.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(opts.body);
    }
    let res;
    try {
      res = await fetch(u, { method, headers, body, dispatcher: this.dispatcher });
    } catch (e) {
      throw connectionError(e, this.settings);
    }
    const text = await res.text();
    let parsed: unknown = undefined;
    if (text) {
      try {
        parsed = JSON.parse(text);
      } catch {
        parsed = text;
      }
    }
    if (res.status >= 400) {
      const err = (parsed as { error?: { code?: string; detail?: string; title?: string; request_id?: string } })?.error;
      throw new CliError(err?.code ?? `HTTP_${res.status}`, err?.detail ?? (typeof parsed === 'string' ? parsed : `${method} ${u.pathname} answered ${res.status}`), res.status, err?.request_id ?? res.headers.get('x-request-id') ?? undefined, err?.title);
    }
    return { status: res.status, headers: res.headers, body: parsed as T };
  }

  /** Log in with the settings' user name and password; caches the token. */
  async login(ttl?: string): Promise<{ token: string; body: Record<string, unknown> }> {
    const s = this.settings;
    if (!s.username || !s.password) {
      throw CliError.local('YUN_UNAUTHENTICATED', 'No credentials: YUN_USERNAME and YUN_PASSWORD are not both set, and there is no cached token', 'Run `source DATA_DIR/admin.env`, or `yun login`.');
    }
    const r = await this.send<{ token: { expires_at: string } }>('POST', '/v1/auth/tokens', { body: { username: s.username, password: s.password, ...(s.project ? { project: s.project } : {}), ...(ttl ? { ttl } : {}) } });
    const token = r.headers.get('x-subject-token')!;
    await cacheToken(s, token, r.body.token.expires_at);
    return { token, body: r.body as unknown as Record<string, unknown> };
  }

  private async ensureToken(): Promise<string> {
    if (this.token) return this.token;
    this.token = (await cachedToken(this.settings)) ?? (await this.login()).token;
    return this.token;
  }

  async request<T = Record<string, unknown>>(method: string, path: string, opts: RequestOptions = {}): Promise<ApiResponse<T>> {
    if (opts.anonymous) return this.send<T>(method, path, opts);
    const token = await this.ensureToken();
    try {
      return await this.send<T>(method, path, opts, token);
    } catch (e) {
      // A cached token that was revoked or expired: log in again once, if we can.
      if (e instanceof CliError && (e.code === 'YUN_TOKEN_INVALID' || e.code === 'YUN_TOKEN_EXPIRED') && !this.settings.token && this.settings.password) {
        forgetToken(this.settings);
        this.token = (await this.login()).token;
        return this.send<T>(method, path, opts, this.token);
      }
      throw e;
    }
  }

  /** Open a WebSocket to the API (authenticated, with the cloud's CA). */
  async websocket(path: string, query: RequestOptions['query']): Promise<import('ws').WebSocket> {
    const token = await this.ensureToken();
    const u = new URL(path, `${this.settings.url}/`);
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const x of v) u.searchParams.append(k, x);
      else u.searchParams.set(k, String(v));
    }
    u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
    const { default: WebSocket } = await import('ws');
    const ca = this.settings.cacert ? readFileSync(this.settings.cacert, 'utf8') : undefined;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(u, { headers: { 'x-auth-token': token }, ...(ca ? { ca } : {}) });
      ws.once('open', () => resolve(ws));
      ws.once('unexpected-response', (_req, res) => {
        let text = '';
        res.on('data', (c: Buffer) => { text += c.toString(); });
        res.on('end', () => {
          let err: { code?: string; detail?: string; request_id?: string; title?: string } | undefined;
          try { err = (JSON.parse(text) as { error: typeof err }).error; } catch { /* not JSON */ }
          reject(new CliError(err?.code ?? `HTTP_${res.statusCode}`, err?.detail ?? text, res.statusCode ?? 500, err?.request_id, err?.title));
        });
      });
      ws.once('error', (e) => reject(connectionError(e, this.settings)));
    });
  }

  /** POST a raw body (a file or a stream), reporting bytes sent; answers JSON. */
  async upload<T = Record<string, unknown>>(path: string, query: RequestOptions['query'], body: NodeJS.ReadableStream, opts: { contentType?: string; method?: 'POST' | 'PUT'; onProgress?: (sent: number) => void } = {}): Promise<ApiResponse<T>> {
    const token = await this.ensureToken();
    const u = new URL(path, `${this.settings.url}/`);
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v === undefined) continue;
      if (Array.isArray(v)) for (const x of v) u.searchParams.append(k, x);
      else u.searchParams.set(k, String(v));
    }
    let sent = 0;
    const counted = (async function* () {
      for await (const chunk of body as AsyncIterable<Buffer>) {
        sent += chunk.length;
        opts.onProgress?.(sent);
        yield chunk;
      }
    })();
    let res;
    try {
      res = await fetch(u, { method: opts.method ?? 'POST', headers: { 'x-auth-token': token, 'content-type': opts.contentType ?? 'application/x-tar', accept: 'application/json' }, body: counted, duplex: 'half', dispatcher: this.dispatcher } as Parameters<typeof fetch>[1]);
    } catch (e) {
      throw connectionError(e, this.settings);
    }
    const text = await res.text();
    let parsed: unknown;
    try { parsed = text ? JSON.parse(text) : undefined; } catch { parsed = text; }
    if (res.status >= 400) {
      const err = (parsed as { error?: { code?: string; detail?: string; title?: string; request_id?: string } })?.error;
      throw new CliError(err?.code ?? `HTTP_${res.status}`, err?.detail ?? String(text), res.status, err?.request_id ?? res.headers.get('x-request-id') ?? undefined, err?.title);
    }
    return { status: res.status, headers: res.headers, body: parsed as T };
  }

  /** POST JSON and read a streaming NDJSON answer line by line. */
  async postStream(path: string, body: unknown, onLine: (line: string) => void): Promise<void> {
    const token = await this.ensureToken();
    let res;
    try {
      res = await fetch(new URL(path, `${this.settings.url}/`), { method: 'POST', headers: { 'x-auth-token': token, 'content-type': 'application/json' }, body: JSON.stringify(body), dispatcher: this.dispatcher });
    } catch (e) {
      throw connectionError(e, this.settings);
    }
    if (res.status >= 400) throw await responseError(res);
    await readLines(res.body as AsyncIterable<Uint8Array>, onLine);
  }

  /** GET a binary body into `file` (written as FILE.part, renamed when complete); returns its headers. */
  async download(path: string, file: string, onProgress?: (bytes: number, total: number | undefined) => void): Promise<Headers> {
    const token = await this.ensureToken();
    let res;
    try {
      res = await fetch(new URL(path, `${this.settings.url}/`), { headers: { 'x-auth-token': token }, dispatcher: this.dispatcher });
    } catch (e) {
      throw connectionError(e, this.settings);
    }
    if (res.status >= 400) throw await responseError(res);
    const { createWriteStream, renameSync, rmSync } = await import('node:fs');
    const total = Number(res.headers.get('content-length') ?? '') || undefined;
    const out = createWriteStream(`${file}.part`);
    let n = 0;
    try {
      for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
        n += chunk.length;
        if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
        onProgress?.(n, total);
      }
      await new Promise<void>((resolve, reject) => out.end((e?: Error | null) => (e ? reject(e) : resolve())));
      if (total !== undefined && n !== total) throw new CliError('YUN_CONNECTION_FAILED', `the download ended after ${n} of ${total} bytes`, 0);
      renameSync(`${file}.part`, file);
    } catch (e) {
      out.destroy();
      rmSync(`${file}.part`, { force: true });
      throw e;
    }
    return res.headers;
  }

  /** GET a streaming NDJSON response, calling `onLine` for each line as it arrives. */
  async stream(path: string, query: RequestOptions['query'], onLine: (line: string) => void): Promise<void> {
    const token = await this.ensureToken();
    const u = new URL(path, `${this.settings.url}/`);
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) u.searchParams.set(k, String(v));
    let res;
    try {
      res = await fetch(u, { headers: { 'x-auth-token': token, accept: 'application/x-ndjson' }, dispatcher: this.dispatcher });
    } catch (e) {
      throw connectionError(e, this.settings);
    }
    if (res.status >= 400) throw await responseError(res);
    await readLines(res.body as AsyncIterable<Uint8Array>, onLine);
  }

  async get<T = Record<string, unknown>>(path: string, query?: RequestOptions['query']): Promise<T> {
    return (await this.request<T>('GET', path, { query })).body;
  }

  /** Every item of a list, following `next` links (pages of `pageSize`), up to `max`. */
  async listAll<T = Record<string, unknown>>(path: string, query: RequestOptions['query'] = {}, max = Infinity): Promise<T[]> {
    const items: T[] = [];
    let next: string | null = null;
    const pageSize = Math.min(1000, Number.isFinite(max) ? max : 1000);
    do {
      const body: { items: T[]; next: string | null } = next
        ? (await this.request<{ items: T[]; next: string | null }>('GET', next)).body
        : await this.get<{ items: T[]; next: string | null }>(path, { limit: pageSize, ...query });
      items.push(...body.items);
      next = body.next;
    } while (next && items.length < max);
    return items.slice(0, max);
  }
}

/** Call `onLine` for every non-empty line of a streamed body (NDJSON answers). */
async function readLines(body: AsyncIterable<Uint8Array>, onLine: (line: string) => void): Promise<void> {
  let buf = '';
  const decoder = new TextDecoder();
  for await (const chunk of body) {
    buf += decoder.decode(chunk, { stream: true });
    let i: number;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      if (line) onLine(line);
    }
  }
  if (buf) onLine(buf);
}

/** The API's error (its code, full detail, request id) from a failed streaming or binary request. */
async function responseError(res: { status: number; text(): Promise<string>; headers: { get(name: string): string | null } }): Promise<CliError> {
  const text = await res.text();
  let err: { code?: string; detail?: string; title?: string; request_id?: string } | undefined;
  try { err = (JSON.parse(text) as { error: typeof err }).error; } catch { /* not JSON */ }
  return new CliError(err?.code ?? `HTTP_${res.status}`, err?.detail ?? text, res.status, err?.request_id ?? res.headers.get('x-request-id') ?? undefined, err?.title);
}

function connectionError(e: unknown, s: Settings): CliError {
  const cause = (e as { cause?: { code?: string; message?: string } }).cause ?? (e as { code?: string; message?: string });
  const code = cause?.code ?? '';
  if (TLS_CODES.has(code) || /certificate/i.test(cause?.message ?? '')) {
    return CliError.local('YUN_TLS_FAILED', `Cannot verify the server certificate of ${s.url}: ${cause?.message ?? code} (${code})`,
      s.cacert ? `YUN_CACERT is ${s.cacert}: make sure it is this cloud's DATA_DIR/pki/ca.crt.` : 'Set YUN_CACERT to DATA_DIR/pki/ca.crt (or `source DATA_DIR/admin.env`).');
  }
  if (code === 'ECONNREFUSED') return CliError.local('YUN_CONNECTION_FAILED', `Nothing answers at ${s.url} (connection refused)`);
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return CliError.local('YUN_CONNECTION_FAILED', `The host of ${s.url} cannot be resolved (${code})`);
  if (code === 'EPROTO' || /wrong version number|packet length too long/i.test(cause?.message ?? '')) {
    return CliError.local('YUN_CONNECTION_FAILED', `TLS handshake with ${s.url} failed: ${cause?.message ?? code}`, 'The server may speak plain HTTP (started with --insecure-http): use an http:// URL.');
  }
  return CliError.local('YUN_CONNECTION_FAILED', `Cannot reach ${s.url}: ${cause?.message ?? String(e)}${code ? ` (${code})` : ''}`);
}
