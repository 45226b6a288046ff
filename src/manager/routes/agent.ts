import type { TLSSocket } from 'node:tls';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type WebSocket from 'ws';
import { YunError } from '../../errors/errors.js';
import { GLOBAL } from '../../store/store.js';
import { newId } from '../../util/ids.js';
import type { AgentMessage, ManagerMessage } from '../../dispatcher/protocol.js';
import { wsChannel } from '../../dispatcher/ws-channel.js';
import type { ManagerContext } from '../context.js';
import type { NodeRole } from '../membership.js';

const noQuery = { type: 'object', additionalProperties: false, properties: {} } as const;

/** The node a client certificate identifies (CN = node id, OU = role), or a 401. */
export function nodeFromCertificate(req: FastifyRequest): { nodeId: string; role: NodeRole } {
  const sock = req.raw.socket as TLSSocket;
  if (typeof sock.getPeerCertificate !== 'function') {
    throw new YunError('YUN_UNAUTHENTICATED', 'Agent sessions need HTTPS with a node certificate (mutual TLS); this server speaks plain HTTP', { hint: 'Start the manager without --insecure-http to let agents join.' });
  }
  const cert = sock.getPeerCertificate();
  if (!cert || !cert.subject) throw new YunError('YUN_UNAUTHENTICATED', 'Agent sessions need a node certificate (mutual TLS), and none was presented', { hint: 'Join the node first: `yun agent --join URL --token TOKEN`.' });
  if (!sock.authorized) throw new YunError('YUN_UNAUTHENTICATED', `The node certificate was not issued by this cloud's CA (${String(sock.authorizationError)})`, { hint: 'Join the node again with a current join token.' });
  const nodeId = String(cert.subject.CN ?? '');
  const role = String(cert.subject.OU ?? '') as NodeRole;
  if (!/^[a-z0-9]{20}$/.test(nodeId) || (role !== 'worker' && role !== 'manager')) {
    throw new YunError('YUN_UNAUTHENTICATED', 'The client certificate is not a node certificate');
  }
  return { nodeId, role };
}

export interface AgentRouteDeps {
  attach(nodeId: string, role: NodeRole, ch: ReturnType<typeof wsChannel<ManagerMessage, AgentMessage>>): void;
}

export function agentRoutes(app: FastifyInstance, ctx: Pick<ManagerContext, 'caKeyPem' | 'config' | 'membership' | 'store'>, deps: AgentRouteDeps): void {
  app.get('/v1/cluster/ca', {
    config: { auth: false },
    schema: { tags: ['cluster'], summary: 'The cluster CA certificate (agents check its fingerprint against their join token).', querystring: noQuery },
  }, async () => ({ ca_pem: ctx.config.caCertPem, fingerprint: ctx.config.caFingerprint }));

  app.post('/v1/nodes/join', {
    config: { auth: false, action: 'node.join', rateLimit: { max: 10, timeWindow: 1000 } },
    schema: {
      tags: ['cluster'],
      summary: 'Join a node with a join token: the manager certifies the node\'s public key (mutual TLS from then on).',
      querystring: noQuery,
      body: {
        type: 'object', additionalProperties: false, required: ['token', 'public_key_pem', 'hostname', 'address'],
        properties: {
          token: { type: 'string', maxLength: 300 },
          public_key_pem: { type: 'string', maxLength: 5000 },
          hostname: { type: 'string', minLength: 1, maxLength: 253 },
          address: { type: 'string', minLength: 1, maxLength: 100, format: 'ipv4' },
          node_id: { type: 'string', pattern: '^[a-z0-9]{20}$', description: 'Rejoin as this node (it must exist).' },
        },
      },
    },
  }, async (req, reply) => {
    const b = req.body as { token: string; public_key_pem: string; hostname: string; address: string; node_id?: string };
    const role = await ctx.membership.checkJoinToken(b.token);
    let nodeId = b.node_id;
    if (nodeId) {
      const n = await ctx.store.get('node', nodeId);
      if (!n) throw new YunError('YUN_NOT_FOUND', `Node ${nodeId} is not part of this cluster (it may have been removed)`, { hint: 'Join as a new node: remove the agent\'s data directory, or drop node_id.' });
    } else {
      nodeId = newId();
    }
    let cert;
    try {
      const { issueCertificate } = await import('../../pki/ca.js');
      cert = await issueCertificate({ certPem: ctx.config.caCertPem, keyPem: ctx.caKeyPem() }, { commonName: nodeId, organizationalUnit: role, hosts: [b.address], usage: 'both', publicKeyPem: b.public_key_pem });
    } catch (e) {
      throw new YunError('YUN_VALIDATION_FAILED', `public_key_pem is not an ECDSA P-256 public key (SPKI PEM): ${(e as Error).message}`);
    }
    if (!(await ctx.store.get('node', nodeId))) {
      await ctx.store.create({
        kind: 'node', id: nodeId, project_id: GLOBAL, name: await ctx.membership.freeNodeName(b.hostname, b.address),
        data: {
          hostname: b.hostname, address: b.address, role, availability: 'active', status: 'unknown', status_message: 'joined; waiting for the agent session',
          labels: {}, resources: { cpus: 0, memory_bytes: 0 }, drivers: {}, agent_version: '', platform: { os: '', arch: '', kernel: '' }, last_heartbeat: null,
          vip_octet: await ctx.membership.freeVipOctet(),
        },
      });
    }
    req.auditTarget = nodeId;
    reply.code(201).header('location', `/v1/nodes/${nodeId}`);
    return { node_id: nodeId, role, certificate_pem: cert.certPem, ca_pem: ctx.config.caCertPem, manager_url: ctx.config.advertiseUrl };
  });

  app.get('/v1/agent/session', {
    websocket: true,
    config: { auth: false },
    schema: { tags: ['cluster'], summary: 'The agent session: a WebSocket (101 Switching Protocols) over mutual TLS with a node certificate; JSON messages (docs/agent-protocol.md).', querystring: noQuery },
    onRequest: async (req: FastifyRequest) => {
      const { nodeId, role } = nodeFromCertificate(req);
      const n = await ctx.store.get('node', nodeId);
      if (!n) throw new YunError('YUN_UNAUTHENTICATED', `Node ${nodeId} was removed from the cluster`, { hint: 'Join it again with `yun agent --join URL --token TOKEN` after removing its data directory.' });
      (req as FastifyRequest & { node?: { nodeId: string; role: NodeRole } }).node = { nodeId, role };
    },
  } as never, ((socket: WebSocket, req: FastifyRequest) => {
    const node = (req as FastifyRequest & { node: { nodeId: string; role: NodeRole } }).node;
    deps.attach(node.nodeId, node.role, wsChannel<ManagerMessage, AgentMessage>(socket));
  }) as never);
}
