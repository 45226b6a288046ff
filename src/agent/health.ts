import { connect } from 'node:net';
import { request } from 'node:http';
import type { PortMapping } from '../drivers/driver.js';
import type { HealthCheck } from '../services/spec.js';

export type Health = 'starting' | 'healthy' | 'unhealthy';

export type ProbeResult = { ok: boolean; detail: string };

function hostPort(check: HealthCheck, ports: PortMapping[]): number | undefined {
  if (check.port) return ports.find((p) => p.target === check.port)?.host_port ?? check.port;
  return ports[0]?.host_port;
}

export async function probe(check: HealthCheck, ports: PortMapping[], host: string, exec: (cmd: string[], timeoutMs: number) => Promise<{ exit_code: number; stdout: string; stderr: string }>): Promise<ProbeResult> {
  if (check.type === 'cmd') {
    const r = await exec(check.command ?? [], check.timeout_ms);
    const out = `${r.stdout}${r.stderr}`.trim();
    return { ok: r.exit_code === 0, detail: `command ${JSON.stringify(check.command)} exited ${r.exit_code}${out ? `: ${out.slice(-2000)}` : ''}` };
  }
  const port = hostPort(check, ports);
  if (!port) return { ok: false, detail: `${check.type} health check has no port: give --health-port or publish a port` };
  if (check.type === 'tcp') {
    return new Promise((resolve) => {
      const s = connect({ host, port });
      const timer = setTimeout(() => { s.destroy(); resolve({ ok: false, detail: `tcp ${host}:${port}: no connection within ${check.timeout_ms} ms` }); }, check.timeout_ms);
      s.once('connect', () => { clearTimeout(timer); s.destroy(); resolve({ ok: true, detail: `tcp ${host}:${port} accepted a connection` }); });
      s.once('error', (e) => { clearTimeout(timer); resolve({ ok: false, detail: `tcp ${host}:${port}: ${e.message}` }); });
    });
  }
  return new Promise((resolve) => {
    const path = check.path ?? '/';
    const req = request({ host, port, path, method: 'GET', timeout: check.timeout_ms, headers: { 'user-agent': 'yunstack-health' } }, (res) => {
      res.resume();
      const code = res.statusCode ?? 0;
      resolve({ ok: code >= 200 && code < 400, detail: `GET http://${host}:${port}${path} answered ${code}` });
    });
    req.once('timeout', () => { req.destroy(); resolve({ ok: false, detail: `GET http://${host}:${port}${path}: no answer within ${check.timeout_ms} ms` }); });
    req.once('error', (e) => resolve({ ok: false, detail: `GET http://${host}:${port}${path}: ${e.message}` }));
    req.end();
  });
}

/** How often a task that has not yet passed its check is probed (Docker's `start-interval`). */
export const START_PROBE_MS = 1000;

/**
 * Runs a task's health check every interval: `starting` until the first success, `unhealthy`
 * after `retries` consecutive failures (failures during the start period do not count).
 * Until the first success it probes every START_PROBE_MS (at most the interval), so a new task
 * takes traffic about a second after it answers rather than one whole interval later; those
 * quicker probes count a failure only once per interval, so a slow starter is not judged sooner.
 */
export class HealthMonitor {
  private timer?: NodeJS.Timeout;
  private failures = 0;
  private state: Health = 'starting';
  private stopped = false;
  private nextCountedAt = 0;

  constructor(
    private check: HealthCheck,
    private run: () => Promise<ProbeResult>,
    private onChange: (h: Health, detail: string) => void,
    private startedAt: number,
  ) {}

  start(): void {
    const tick = async () => {
      if (this.stopped) return;
      let r: ProbeResult;
      try {
        r = await this.run();
      } catch (e) {
        r = { ok: false, detail: (e as Error).message };
      }
      if (this.stopped) return;
      if (r.ok) {
        this.failures = 0;
        if (this.state !== 'healthy') { this.state = 'healthy'; this.onChange('healthy', r.detail); }
      } else if ((Date.now() - this.startedAt >= this.check.start_period_ms || this.state === 'healthy') && this.counts()) {
        this.failures++;
        if (this.failures >= this.check.retries && this.state !== 'unhealthy') {
          this.state = 'unhealthy';
          this.onChange('unhealthy', `health check failed ${this.failures} time${this.failures === 1 ? '' : 's'} in a row: ${r.detail}`);
        }
      }
      if (!this.stopped && this.state !== 'unhealthy') this.timer = setTimeout(tick, this.delay());
    };
    this.nextCountedAt = this.startedAt + this.check.interval_ms;
    this.timer = setTimeout(tick, this.delay());
  }

  private delay(): number {
    return this.state === 'starting' ? Math.min(START_PROBE_MS, this.check.interval_ms) : this.check.interval_ms;
  }

  /** Whether a failure counts now: always once healthy; while starting, once per interval. */
  private counts(): boolean {
    if (this.state !== 'starting') return true;
    const now = Date.now();
    if (now < this.nextCountedAt) return false;
    this.nextCountedAt = now + this.check.interval_ms;
    return true;
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
  }
}
