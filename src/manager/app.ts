import { randomUUID } from 'node:crypto';
import Fastify, { LogController, type FastifyError, type FastifyInstance, type FastifyRequest } from 'fastify';
import swagger from '@fastify/swagger';
import rateLimit from '@fastify/rate-limit';
import websocket from '@fastify/websocket';
import { Ajv, type ErrorObject } from 'ajv';
import addFormatsModule from 'ajv-formats';
import { Registry, collectDefaultMetrics, Counter, Histogram } from 'prom-client';
import { YunError } from '../errors/errors.js';
import { hashToken } from '../identity/identity.js';
import type { ManagerContext } from './context.js';
import { registerRoutes } from './routes/index.js';

// ajv-formats ships CommonJS; its default export is the function under NodeNext.
type AddFormats = (ajv: Ajv) => Ajv;
const addFormats: AddFormats = ((addFormatsModule as unknown as { default?: AddFormats }).default ?? addFormatsModule) as unknown as AddFormats;

declare module 'fastify' {
  interface FastifyRequest {
    errorCode?: string;
  }
}

const MUTATING = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

export interface TlsOptions {
  key: string;
  cert: string;
  ca: string;
}

function makeAjv(part: 'body' | 'other'): Ajv {
  const ajv = new Ajv({
    removeAdditional: false,
    useDefaults: true,
    coerceTypes: part === 'body' ? false : 'array',
    allErrors: false,
    strict: false,
    verbose: true,
  });
  addFormats(ajv);
  return ajv;
}

function describeValidation(errors: ErrorObject[], context: string): YunError {
  const e = errors[0]!;
  const where = `${context}${e.instancePath || ''}`.replace(/^querystring/, 'query');
  if (e.keyword === 'additionalProperties') {
    const field = (e.params as { additionalProperty: string }).additionalProperty;
    const allowed = Object.keys((e.parentSchema as { properties?: Record<string, unknown> })?.properties ?? {});
    const allowedText = allowed.length ? ` Accepted here: ${allowed.join(', ')}.` : '';
    if (context === 'querystring') {
      return new YunError('YUN_UNKNOWN_QUERY_PARAMETER', `Unknown query parameter "${field}".${allowedText}`, { extra: { field } });
    }
    return new YunError('YUN_VALIDATION_FAILED', `Unknown field "${field}" in ${where}: unknown fields are rejected so that a typo never goes unnoticed.${allowedText}`, { extra: { field: `${where}/${field}` }, hint: '' });
  }
  let msg = e.message ?? 'is invalid';
  if (e.keyword === 'enum') msg = `must be one of: ${(e.params as { allowedValues: unknown[] }).allowedValues.map(String).join(', ')}`;
  if (e.keyword === 'required') {
    const missing = (e.params as { missingProperty: string }).missingProperty;
    return new YunError('YUN_VALIDATION_FAILED', `${where} is missing the required field "${missing}"`, { extra: { field: `${where}/${missing}` } });
  }
  if (e.keyword === 'pattern' && (e.parentSchema as { description?: string })?.description) {
    msg = `is not valid (${(e.parentSchema as { description: string }).description})`;
  }
  const got = e.data === undefined ? '' : ` (got ${safeJson(e.data)})`;
  const code = context === 'querystring' ? 'YUN_BAD_REQUEST' : 'YUN_VALIDATION_FAILED';
  return new YunError(code, `${where} ${msg}${got}`, { extra: { field: where } });
}

/** A short JSON rendering of a value for an error message; never throws (deep or cyclic data). */
function safeJson(v: unknown): string {
  try {
    const t = JSON.stringify(v) ?? String(v);
    return t.length > 200 ? `${t.slice(0, 200)}… (${t.length} characters)` : t;
  } catch {
    return Array.isArray(v) ? 'a deeply nested array' : typeof v === 'object' ? 'a deeply nested object' : String(v);
  }
}

/** Map anything thrown in a request to a YunError. */
export function toYunError(err: unknown, bodyLimit: number, contentType?: string): YunError {
  if (err instanceof YunError) return err;
  const fe = err as FastifyError & { validation?: ErrorObject[]; validationContext?: string };
  if (fe && Array.isArray(fe.validation) && fe.validation.length) return describeValidation(fe.validation, fe.validationContext ?? 'body');
  switch (fe?.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return new YunError('YUN_PAYLOAD_TOO_LARGE', `The request body is larger than the limit of ${bodyLimit} bytes`);
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return new YunError('YUN_UNSUPPORTED_MEDIA_TYPE', `Content-Type "${contentType ?? 'unknown'}" is not accepted: request bodies are JSON`);
    case 'FST_ERR_BAD_URL':
      return new YunError('YUN_BAD_REQUEST', 'The URL is malformed (a bad percent-escape?)', { hint: 'Percent-encode ids and names in paths (encodeURIComponent).' });
    case 'FST_ERR_MAX_PARAM_LENGTH':
      return new YunError('YUN_URI_TOO_LONG', 'A path segment is longer than 500 characters');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return new YunError('YUN_INVALID_JSON', 'The body is empty although Content-Type is application/json');
    case 'FST_ERR_CTP_INVALID_JSON_BODY':
    case 'FST_ERR_CTP_INVALID_CONTENT_LENGTH':
      return new YunError('YUN_INVALID_JSON', `The body is not valid JSON: ${fe.message}`);
  }
  if (fe instanceof SyntaxError || (fe as { type?: string })?.type === 'entity.parse.failed') {
    return new YunError('YUN_INVALID_JSON', `The body is not valid JSON: ${fe.message}`);
  }
  const status = typeof fe?.statusCode === 'number' ? fe.statusCode : 500;
  if (status === 429) return new YunError('YUN_RATE_LIMITED', fe.message || 'Rate limit exceeded');
  if (status >= 400 && status < 500) return new YunError('YUN_BAD_REQUEST', fe.message || 'Bad request', { status });
  return new YunError('YUN_INTERNAL', `An unexpected error happened while handling the request${fe?.message ? `: ${fe.message}` : ''}`);
}

export async function buildApp(ctx: ManagerContext, tls?: TlsOptions): Promise<FastifyInstance> {
  const app = Fastify({
    ...(tls ? { https: { key: tls.key, cert: tls.cert, ca: [tls.ca], requestCert: true, rejectUnauthorized: false, minVersion: 'TLSv1.2' as const } } : {}),
    loggerInstance: ctx.log.child({ component: 'api' }),
    logController: new LogController({ disableRequestLogging: true }),
    bodyLimit: ctx.config.bodyLimit,
    genReqId: () => `req-${randomUUID()}`,
    requestIdHeader: false,
    return503OnClosing: true,
    routerOptions: { ignoreTrailingSlash: true, maxParamLength: 500 },
    // Errors fastify raises before routing (bad percent-escapes, over-long parameters) get the
    // same error shape and request id as every other error.
    frameworkErrors: (error: FastifyError, req: FastifyRequest, reply: import('fastify').FastifyReply) => {
      const y = toYunError(error, ctx.config.bodyLimit);
      reply.header('x-request-id', req.id).code(y.status).type('application/json').send(y.toBody(req.id));
    },
  } as Parameters<typeof Fastify>[0]) as unknown as FastifyInstance;

  // Bodies are JSON only: anything else is a 415, not a string that fails validation.
  app.removeContentTypeParser('text/plain');
  const ajvBody = makeAjv('body');
  const ajvOther = makeAjv('other');
  app.setValidatorCompiler(({ schema, httpPart }) => (httpPart === 'body' ? ajvBody : ajvOther).compile(schema as object));
  // Response schemas document the API; they must never strip fields from a response.
  app.setSerializerCompiler(() => (data) => JSON.stringify(data));

  // ---- metrics -------------------------------------------------------------------------------
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'yun_' });
  const requests = new Counter({ name: 'yun_http_requests_total', help: 'HTTP requests by method, route and status.', labelNames: ['method', 'route', 'status'], registers: [registry] });
  const latency = new Histogram({
    name: 'yun_http_request_duration_seconds', help: 'HTTP request latency by method and route.', labelNames: ['method', 'route'],
    buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5], registers: [registry],
  });
  app.decorate('metricsRegistry', registry);

  // ---- request id, routes known for 405 ------------------------------------------------------
  const known: { re: RegExp; methods: Set<string> }[] = [];
  // WebSocket routes are hidden from the generated document by @fastify/websocket; keep what we
  // need to document them ourselves (the OpenAPI route adds them back).
  const websocketRoutes: { url: string; summary: string; tags: string[] }[] = [];
  app.decorate('websocketRoutes', websocketRoutes);
  app.addHook('onRoute', (r) => {
    if ((r as { websocket?: boolean }).websocket) {
      const schema = (r.schema ?? {}) as { summary?: string; tags?: string[] };
      websocketRoutes.push({ url: r.url, summary: schema.summary ?? '', tags: schema.tags ?? [] });
    }
    const re = new RegExp(`^${r.url.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/:[A-Za-z0-9_]+/g, '[^/]+')}/?$`);
    const methods = Array.isArray(r.method) ? r.method : [r.method];
    let entry = known.find((k) => k.re.source === re.source);
    if (!entry) { entry = { re, methods: new Set() }; known.push(entry); }
    for (const m of methods) entry.methods.add(m);
  });

  app.addHook('onRequest', async (req, reply) => {
    reply.header('x-request-id', req.id);
    (req as FastifyRequest & { startedAt: bigint }).startedAt = process.hrtime.bigint();
  });

  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'Yunstack API', version: ctx.config.version, description: 'One version, the same rules everywhere. See docs/api.md.' },
      components: {
        securitySchemes: {
          token: { type: 'apiKey', in: 'header', name: 'X-Auth-Token' },
          bearer: { type: 'http', scheme: 'bearer' },
        },
      },
      security: [{ token: [] }, { bearer: [] }],
    },
  });

  await app.register(rateLimit, {
    global: true,
    max: ctx.config.rateLimit,
    timeWindow: 1000,
    hook: 'onRequest',
    keyGenerator: (req) => {
      const t = (req.headers['x-auth-token'] as string | undefined) ?? (req.headers.authorization ?? '').replace(/^Bearer\s+/i, '');
      return t ? `t:${hashToken(t).slice(0, 24)}` : `a:${req.ip}`;
    },
    allowList: (req) => req.url === '/healthz' || req.url === '/metrics',
    errorResponseBuilder: (_req, c) =>
      new YunError('YUN_RATE_LIMITED', `More than ${c.max} requests in ${c.after}`, { headers: { 'retry-after': String(Math.ceil(c.ttl / 1000)) } }),
  });

  await app.register(websocket, { options: { maxPayload: 16 * 1024 * 1024 } });

  // ---- authentication ------------------------------------------------------------------------
  // In preParsing: after the rate limit (a route-level onRequest hook), before the body is read.
  app.addHook('preParsing', async (req) => {
    const cfg = req.routeOptions.config;
    if (req.routeOptions.url === undefined || cfg?.auth === false) return;
    const header = req.headers['x-auth-token'];
    let token = typeof header === 'string' ? header.trim() : undefined;
    const authz = req.headers.authorization;
    if (!token && typeof authz === 'string') {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(authz);
      if (!m) throw new YunError('YUN_UNAUTHENTICATED', 'The Authorization header is not of the form "Bearer TOKEN"');
      token = m[1];
    }
    if (!token) throw new YunError('YUN_UNAUTHENTICATED', `${req.method} ${req.routeOptions.url} needs a token, and none was sent`);
    req.principal = await ctx.identity.validate(token);
  });

  // ---- errors --------------------------------------------------------------------------------
  app.setErrorHandler((err, req, reply) => {
    const y = toYunError(err, ctx.config.bodyLimit, typeof req.headers['content-type'] === 'string' ? req.headers['content-type'] : undefined);
    if (y.status >= 500) req.log.error({ err, request_id: req.id }, 'request failed');
    req.errorCode = y.code;
    for (const [k, v] of Object.entries(y.headers)) reply.header(k, v);
    reply.code(y.status).type('application/json').send(y.toBody(req.id));
  });

  app.setNotFoundHandler((req, reply) => {
    const path = req.url.split('?')[0]!;
    const route = known.find((k) => k.re.test(path));
    const y = route
      ? new YunError('YUN_METHOD_NOT_ALLOWED', `${req.method} is not accepted on ${path}; it accepts ${[...route.methods].filter((m) => m !== 'HEAD').join(', ')}`, { headers: { allow: [...route.methods].join(', ') } })
      : new YunError('YUN_ROUTE_NOT_FOUND', `There is no route ${req.method} ${path}`);
    req.errorCode = y.code;
    for (const [k, v] of Object.entries(y.headers)) reply.header(k, v);
    reply.code(y.status).send(y.toBody(req.id));
  });

  // ---- audit + metrics after every response --------------------------------------------------
  app.addHook('onResponse', async (req, reply) => {
    const route = req.routeOptions.url ?? 'unmatched';
    const started = (req as FastifyRequest & { startedAt?: bigint }).startedAt;
    requests.inc({ method: req.method, route, status: String(reply.statusCode) });
    if (started) latency.observe({ method: req.method, route }, Number(process.hrtime.bigint() - started) / 1e9);
    if (!MUTATING.has(req.method) || req.routeOptions.url === undefined) return;
    const p = req.principal;
    const body = req.body as Record<string, unknown> | undefined;
    const loginName = route === '/v1/auth/tokens' && req.method === 'POST' ? (body?.username as string | undefined) ?? null : null;
    try {
      await ctx.store.appendAudit({
        at: ctx.clock.iso(),
        request_id: req.id,
        user_id: p?.user.id ?? null,
        user_name: p?.user.name ?? (typeof loginName === 'string' ? loginName.slice(0, 200) : null),
        project_id: p?.project.id ?? null,
        method: req.method,
        path: req.url.split('?')[0]!.slice(0, 500),
        action: req.routeOptions.config?.action ?? `${req.method} ${route}`,
        target_id: req.auditTarget ?? ((req.params as Record<string, string> | undefined)?.id ?? null),
        status: reply.statusCode,
        result: reply.statusCode < 400 ? 'success' : 'failure',
        error_code: req.errorCode ?? null,
        remote_addr: req.ip ?? null,
      });
    } catch (e) {
      req.log.error({ err: e }, 'could not write the audit log');
    }
  });

  await registerRoutes(app, ctx, known);
  return app;
}

declare module 'fastify' {
  interface FastifyInstance {
    metricsRegistry: Registry;
    websocketRoutes: { url: string; summary: string; tags: string[] }[];
  }
}
