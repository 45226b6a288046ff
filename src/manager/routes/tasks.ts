import type { FastifyInstance, FastifyRequest } from 'fastify';
import { YunError, notFound } from '../../errors/errors.js';
import type { StoredObject } from '../../store/store.js';
import { taskName, type TaskData } from '../../services/task.js';
import type { ManagerContext } from '../context.js';
import { pipeTty } from '../tty.js';
import {
  buildListQuery, commonMeta, findInProjects, idParams, listBody, listProjects, listQuerySchema, listResponseSchema,
  principal, requireRole, type ListQueryInput, type ListSpec,
} from '../http.js';

const spec: ListSpec = {
  filters: { service_id: 'service_id', service_name: 'service_name', node_id: 'node_id', desired_state: 'desired_state', state: 'status.state', slot: 'slot' },
  sortKeys: { created_at: 'created_at', updated_at: 'updated_at', id: 'id', slot: 'slot', state: 'status.state' },
  defaultSort: 'created_at',
};

export const taskSchema = {
  type: 'object',
  properties: {
    ...commonMeta,
    service_id: { type: 'string' },
    service_name: { type: 'string' },
    slot: { type: ['integer', 'null'] },
    node_id: { type: ['string', 'null'] },
    desired_state: { type: 'string' },
    status: {
      type: 'object',
      properties: {
        state: { type: 'string' }, message: { type: 'string' }, error: { type: ['string', 'null'] },
        exit_code: { type: ['integer', 'null'] }, timestamp: { type: 'string' },
      },
      additionalProperties: true,
    },
    spec_version: { type: 'integer' },
    networks: { type: 'array', description: 'Overlay networks the task is on, with its address on each.', items: { type: 'object', properties: { id: { type: 'string' }, address: { type: ['string', 'null'] } } } },
  },
} as const;

const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;

export function taskView(o: StoredObject): Record<string, unknown> {
  const d = o.data as TaskData;
  return {
    id: o.id,
    name: taskName(d),
    project_id: o.project_id,
    service_id: d.service_id,
    service_name: d.service_name,
    slot: d.slot,
    node_id: d.node_id,
    desired_state: d.desired_state,
    status: d.status,
    shutdown_reason: d.shutdown_reason ?? null,
    spec_version: d.spec_version,
    networks: d.networks ?? [],
    spec: d.spec,
    version: o.version,
    created_at: o.created_at,
    updated_at: o.updated_at,
  };
}

export function taskRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'dispatcher' | 'store'>): void {
  const find = async (req: FastifyRequest, ref: string) => {
    const p = principal(req);
    const t = p.cloudAdmin ? await ctx.store.get('task', ref) : await findInProjects(ctx.store, 'task', ref, [p.project.id]);
    if (!t) throw notFound('task', ref);
    return t;
  };

  app.get('/v1/tasks', {
    schema: { tags: ['services'], summary: 'List tasks (filter by service_id, node_id, desired_state, state).', querystring: listQuerySchema(spec, { projectScoped: true }), response: { 200: listResponseSchema(taskSchema) } },
  }, async (req) => {
    const q = req.query as ListQueryInput;
    const lq = buildListQuery(q, spec, listProjects(req, q));
    for (const f of lq.filters ?? []) if (f.field === 'slot' && typeof f.value === 'string') f.value = Number(f.value);
    return listBody(req, await ctx.store.list('task', lq), taskView);
  });

  app.get('/v1/tasks/:id', {
    schema: { tags: ['services'], summary: 'Show a task.', params: idParams, querystring: noQuery, response: { 200: taskSchema } },
  }, async (req) => taskView(await find(req, (req.params as { id: string }).id)));

  app.get('/v1/tasks/:id/logs', {
    schema: {
      tags: ['services'], summary: 'A task\'s logs as NDJSON lines.', params: idParams,
      querystring: { type: 'object', additionalProperties: false, properties: { tail: { type: 'integer', minimum: 0 }, since: { type: 'string', format: 'date-time' }, follow: { type: 'boolean', default: false } } },
    },
  }, async (req, reply) => {
    const t = await find(req, (req.params as { id: string }).id);
    await app.streamTaskLogs(req, reply, [t]);
    return reply;
  });

  app.get('/v1/tasks/:id/tty', {
    websocket: true,
    config: { action: 'task.exec' },
    schema: {
      tags: ['services'],
      summary: 'An interactive command with a terminal inside a running task (WebSocket): binary frames carry the terminal both ways; a text frame {"resize":{"rows","cols"}} resizes; the server ends with a text frame {"exit_code"}.',
      params: idParams,
      querystring: {
        type: 'object', additionalProperties: false, required: ['command'],
        properties: { command: { type: 'array', minItems: 1, items: { type: 'string', maxLength: 10000 } }, rows: { type: 'integer', minimum: 1, maximum: 1000, default: 24 }, cols: { type: 'integer', minimum: 1, maximum: 1000, default: 80 } },
      },
    },
    preValidation: async (req: FastifyRequest) => {
      requireRole(req, 'member', 'run commands in tasks');
      const t = await find(req, (req.params as { id: string }).id);
      const d = t.data as TaskData;
      if (d.status.state !== 'running' || !d.node_id) throw new YunError('YUN_IN_USE', `Task ${taskName(d)} is not running (it is ${d.status.state})`, { hint: 'Pick a running task: `yun service ps SERVICE --filter desired-state=running`.', status: 409 });
      req.auditTarget = t.id;
      (req as FastifyRequest & { ttyTask?: { id: string; node: string } }).ttyTask = { id: t.id, node: d.node_id };
    },
  } as never, ((socket: import('ws').WebSocket, req: FastifyRequest) => {
    const target = (req as FastifyRequest & { ttyTask: { id: string; node: string } }).ttyTask;
    const q = req.query as { command: string[]; rows: number; cols: number };
    pipeTty(socket, () => ctx.dispatcher.openTty(target.node, target.id, q.command, { rows: q.rows, cols: q.cols },
      (b) => socket.send(b),
      (code, error) => {
        socket.send(JSON.stringify({ exit_code: code, ...(error ? { error } : {}) }));
        socket.close(1000, 'exited');
      }));
  }) as never);

  app.post('/v1/tasks/:id/exec', {
    config: { action: 'task.exec' },
    schema: {
      tags: ['services'], summary: 'Run a command inside a running task and return its output.', params: idParams, querystring: noQuery,
      body: {
        type: 'object', additionalProperties: false, required: ['command'],
        properties: { command: { type: 'array', minItems: 1, items: { type: 'string', maxLength: 10000 } }, timeout_ms: { type: 'integer', minimum: 100, maximum: 3600_000, default: 30_000 } },
      },
    },
  }, async (req) => {
    requireRole(req, 'member', 'run commands in tasks');
    const t = await find(req, (req.params as { id: string }).id);
    req.auditTarget = t.id;
    const d = t.data as TaskData;
    if (d.status.state !== 'running' || !d.node_id) throw new YunError('YUN_IN_USE', `Task ${taskName(d)} is not running (it is ${d.status.state})`, { hint: 'Pick a running task: `yun service ps SERVICE --filter desired-state=running`.', status: 409 });
    const b = req.body as { command: string[]; timeout_ms: number };
    const r = await ctx.dispatcher.exec(d.node_id, t.id, b.command, b.timeout_ms);
    if (r.error) throw new YunError('YUN_UNAVAILABLE', `Running the command in task ${taskName(d)} failed: ${r.error}`, { hint: '' });
    return r;
  });
}
