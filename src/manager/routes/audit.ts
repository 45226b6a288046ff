import type { FastifyInstance } from 'fastify';
import { YunError } from '../../errors/errors.js';
import type { ManagerContext } from '../context.js';
import { nextLink, requireCloudAdmin } from '../http.js';

export function auditRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'store'>): void {
  app.get('/v1/audit', {
    schema: {
      tags: ['identity'],
      summary: 'The audit log of every mutating call, newest first (cloud administrators).',
      querystring: {
        type: 'object', additionalProperties: false,
        properties: {
          limit: { type: 'integer', minimum: 1, maximum: 1000, default: 100 },
          marker: { type: 'string', pattern: '^[0-9]+$', maxLength: 20, description: 'Id of the last entry of the previous page.' },
          with_count: { type: 'boolean', default: false },
          project_id: { type: 'string', maxLength: 64 },
          user_id: { type: 'string', maxLength: 64 },
          result: { type: 'string', enum: ['success', 'failure'] },
          since: { type: 'string', format: 'date-time', description: 'Only entries at or after this time (RFC 3339).' },
        },
      },
    },
  }, async (req) => {
    requireCloudAdmin(req, 'read the audit log');
    const q = req.query as { limit: number; marker?: string; with_count: boolean; project_id?: string; user_id?: string; result?: string; since?: string };
    const marker = q.marker === undefined ? undefined : Number(q.marker);
    if (marker !== undefined && !Number.isSafeInteger(marker)) throw new YunError('YUN_BAD_MARKER', `The marker "${q.marker}" is not an audit entry id`);
    const since = q.since ? new Date(q.since).toISOString() : undefined;
    const r = await ctx.store.listAudit({ limit: q.limit, marker, projectId: q.project_id, userId: q.user_id, result: q.result, since, withCount: q.with_count } as Parameters<typeof ctx.store.listAudit>[0]);
    return { items: r.items, next: nextLink(req, r.nextMarker), ...(r.count !== undefined ? { count: r.count } : {}) };
  });
}
