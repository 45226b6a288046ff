import type { FastifyInstance } from 'fastify';
import type { ManagerContext } from '../context.js';
import { systemRoutes } from './system.js';
import { authRoutes } from './auth.js';
import { userRoutes } from './users.js';
import { projectRoutes } from './projects.js';
import { auditRoutes } from './audit.js';
import { nodeRoutes } from './nodes.js';
import { clusterRoutes } from './cluster.js';

export async function registerRoutes(app: FastifyInstance, ctx: ManagerContext, _known: unknown): Promise<void> {
  systemRoutes(app, ctx);
  authRoutes(app, ctx);
  userRoutes(app, ctx);
  projectRoutes(app, ctx);
  auditRoutes(app, ctx);
  nodeRoutes(app, ctx);
  clusterRoutes(app, ctx);
}
