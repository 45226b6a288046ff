import type { ApiClient } from './client.js';
import type { Output } from './output.js';

interface TaskJson {
  id: string;
  name: string;
  slot: number | null;
  node_id: string | null;
  desired_state: string;
  spec_version: number;
  status: { state: string; message: string; error: string | null; health?: string | null };
}

/**
 * Follow a service until it has converged (every wanted task running, and healthy where checked;
 * an update finished) or has clearly failed; print progress as it goes (redrawn on a terminal,
 * one line per change when piped). Returns 0 when converged, 1 when failed.
 */
export async function followConvergence(api: ApiClient, out: Output, serviceId: string, opts: { timeoutMs?: number; stderr?: NodeJS.WritableStream } = {}): Promise<number> {
  const err = opts.stderr ?? process.stderr;
  const tty = Boolean((err as { isTTY?: boolean }).isTTY);
  const deadline = Date.now() + (opts.timeoutMs ?? 10 * 60_000);
  let lastLines: string[] = [];
  let failingSince: number | undefined;
  for (;;) {
    const svc = await api.get<{ name: string; replicas: number; mode: string; spec_version: number; update_status: { state: string; message: string } | null; tasks: { running: number; desired: number } }>(`/v1/services/${serviceId}`);
    const tasks = await api.listAll<TaskJson>('/v1/tasks', { service_id: serviceId, desired_state: 'running' });
    tasks.sort((a, b) => (a.slot ?? 0) - (b.slot ?? 0));
    const healthyRunning = tasks.filter((t) => t.status.state === 'running' && (t.status.health === undefined || t.status.health === null || t.status.health === 'healthy'));
    const desired = svc.tasks.desired;
    const us = svc.update_status?.state;
    const updating = us === 'updating' || us === 'rollback_started';
    const lines = [`overall progress: ${healthyRunning.length} out of ${desired} tasks${us ? ` (update: ${us.replace('_', ' ')})` : ''}`];
    for (const t of tasks) {
      const detail = t.status.error ?? (t.status.state === 'pending' || t.status.state === 'running' ? t.status.message : '');
      lines.push(`${t.name}: ${t.status.state}${t.status.health ? ` (${t.status.health})` : ''}${detail && detail !== t.status.state ? `  ${detail}` : ''}`);
    }
    if (tty) {
      if (lastLines.length) err.write(`\x1b[${lastLines.length}A\x1b[J`);
      err.write(lines.join('\n') + '\n');
    } else {
      for (const l of lines) if (!lastLines.includes(l)) err.write(l + '\n');
    }
    lastLines = lines;
    const converged = healthyRunning.length >= desired && tasks.length === desired && !updating;
    if (converged) {
      err.write(`verify: service ${svc.name} converged\n`);
      return 0;
    }
    if (us === 'paused' || us === 'rollback_paused') {
      err.write(`update paused: ${svc.update_status!.message}\n`);
      return 1;
    }
    if (us === 'rollback_completed') {
      err.write(`${svc.update_status!.message}\n`);
      return 1;
    }
    // Clearly failing: tasks keep failing, or cannot be placed, for 15 s in a row.
    const stuck = desired > 0 && healthyRunning.length === 0 && (tasks.some((t) => t.status.state === 'pending' && t.status.message.startsWith('no suitable node')) || tasks.length === 0);
    if (stuck) failingSince ??= Date.now();
    else failingSince = undefined;
    if (failingSince && Date.now() - failingSince > 15_000) {
      err.write(`the service is not converging: see \`yun service ps ${svc.name}\` for the reasons (it keeps trying; Ctrl-C stops watching, not the service)\n`);
      return 1;
    }
    if (Date.now() > deadline) {
      err.write('gave up watching after the timeout; the service keeps converging in the background\n');
      return 1;
    }
    void out;
    await new Promise((r) => setTimeout(r, 300));
  }
}
