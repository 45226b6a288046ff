import type { FastifyInstance } from 'fastify';
import { YunError } from '../../errors/errors.js';
import { GLOBAL, type Change } from '../../store/store.js';
import { parseDuration } from '../../util/duration.js';
import type { ManagerContext } from '../context.js';
import { principal } from '../http.js';

export function systemRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'config' | 'startedAt' | 'store'>): void {
  app.get('/healthz', {
    config: { auth: false },
    schema: { tags: ['system'], summary: 'Liveness and readiness of this manager.', querystring: { type: 'object', additionalProperties: false, properties: {} } },
  }, async () => {
    const revision = await ctx.store.revision();
    return { status: 'ok', version: ctx.config.version, store: ctx.store.backend, revision, uptime_seconds: Math.round((Date.now() - ctx.startedAt) / 1000) };
  });

  app.get('/v1/version', {
    config: { auth: false },
    schema: { tags: ['system'], summary: 'Server version.', querystring: { type: 'object', additionalProperties: false, properties: {} } },
  }, async () => ({ version: ctx.config.version, api_version: 'v1', node_version: process.version, platform: `${process.platform}/${process.arch}` }));

  app.get('/v1/openapi.json', {
    config: { auth: false },
    schema: { tags: ['system'], summary: 'This API\'s OpenAPI 3 document.', querystring: { type: 'object', additionalProperties: false, properties: {} } },
  }, async () => {
    const doc = app.swagger() as { paths: Record<string, Record<string, unknown>> };
    for (const w of app.websocketRoutes) {
      doc.paths[w.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}')] ??= {
        get: { tags: w.tags, summary: w.summary, responses: { 101: { description: 'Switching Protocols: the WebSocket session starts.' }, 401: { description: 'No valid node certificate.' } } },
      };
    }
    return doc;
  });

  app.get('/metrics', {
    config: { auth: false },
    schema: { tags: ['system'], summary: 'Prometheus metrics.', hide: false, querystring: { type: 'object', additionalProperties: false, properties: {} } },
  }, async (_req, reply) => {
    reply.type(app.metricsRegistry.contentType);
    return app.metricsRegistry.metrics();
  });

  app.get('/v1/changes', {
    schema: {
      tags: ['system'],
      summary: 'The change feed: changes after a revision (long-poll with `wait`). List, then watch from the list\'s revision.',
      querystring: {
        type: 'object', additionalProperties: false,
        properties: {
          since: { type: 'integer', minimum: 0, description: 'Return changes after this revision.' },
          kind: { type: 'string', maxLength: 50, description: 'Only changes to objects of this kind.' },
          limit: { type: 'integer', minimum: 1, maximum: 1000, default: 500 },
          wait: { type: 'string', maxLength: 10, description: 'Wait up to this long (e.g. 30s, at most 60s) for a change when there is none yet.' },
        },
        required: ['since'],
      },
    },
  }, async (req) => {
    const p = principal(req);
    const q = req.query as { since: number; kind?: string; limit: number; wait?: string };
    const waitMs = q.wait === undefined ? 0 : parseDuration(q.wait);
    if (waitMs === undefined || waitMs > 60_000) throw new YunError('YUN_BAD_REQUEST', `wait must be a duration of at most 60s, not "${q.wait}"`);
    const visible = (c: Change) => (!q.kind || c.kind === q.kind) && (p.cloudAdmin || (c.project_id !== GLOBAL && c.project_id === p.project.id));
    // `revision` is the last revision examined (visible or not), so a client resumes after it
    // without skipping anything and without re-reading what it may not see.
    let raw = await ctx.store.changesSince(q.since, q.limit);
    if (raw.filter(visible).length === 0 && waitMs > 0) {
      const from = raw.length ? raw[raw.length - 1]!.revision : q.since;
      raw = await new Promise<Change[]>((resolve) => {
        let unsubscribe: (() => void) | undefined;
        let done = false;
        const finish = (c: Change[]) => {
          if (done) return;
          done = true;
          clearTimeout(timer);
          unsubscribe?.();
          resolve(c);
        };
        const timer = setTimeout(() => finish(raw), waitMs);
        req.raw.once('close', () => finish(raw));
        void ctx.store.watch(from, (cs) => {
          const all = [...raw, ...cs];
          if (cs.some(visible) || all.length >= q.limit) finish(all.slice(0, q.limit));
          else raw = all;
        }).then((u) => { if (done) u(); else unsubscribe = u; }, () => finish(raw)); // compacted meanwhile: answer with what there is
      });
    }
    const changes = raw.filter(visible);
    const revision = raw.length ? raw[raw.length - 1]!.revision : q.since;
    return { changes, revision };
  });
}
