import type { FastifyInstance } from 'fastify';
import type { ManagerContext } from '../context.js';
import { systemRoutes } from './system.js';
import { authRoutes } from './auth.js';
import { userRoutes } from './users.js';
import { projectRoutes } from './projects.js';
import { auditRoutes } from './audit.js';
import { nodeRoutes } from './nodes.js';
import { clusterRoutes } from './cluster.js';
import { agentRoutes } from './agent.js';
import { serviceRoutes } from './services.js';
import { taskRoutes } from './tasks.js';
import { imageRoutes } from './images.js';
import { doctorRoutes } from './doctor.js';
import { networkRoutes } from './networks.js';
import { flavorRoutes } from './flavors.js';
import { keypairRoutes } from './keypairs.js';
import { serverRoutes } from './servers.js';
import { volumeRoutes } from './volumes.js';

export async function registerRoutes(app: FastifyInstance, ctx: ManagerContext, _known: unknown): Promise<void> {
  systemRoutes(app, ctx);
  authRoutes(app, ctx);
  userRoutes(app, ctx);
  projectRoutes(app, ctx);
  auditRoutes(app, ctx);
  nodeRoutes(app, ctx);
  clusterRoutes(app, ctx);
  serviceRoutes(app, ctx);
  taskRoutes(app, ctx);
  imageRoutes(app, ctx);
  doctorRoutes(app, ctx);
  networkRoutes(app, ctx);
  flavorRoutes(app, ctx);
  keypairRoutes(app, ctx);
  serverRoutes(app, ctx);
  volumeRoutes(app, ctx);
  agentRoutes(app, ctx, { attach: (id, role, ch) => ctx.dispatcher.attach(id, role, ch) });
}
