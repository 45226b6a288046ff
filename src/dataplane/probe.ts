import net from 'node:net';
import { spawn } from 'node:child_process';

/**
 * Reachability of the backends on other nodes that the kernel fast path DNATs to. The kernel cannot
 * try the next backend when one does not answer, so the agent probes each one (a TCP connect) every
 * `intervalMs`: one failed probe takes it out of the maps at once, and its unanswered connections
 * are dropped from conntrack so that the client's next SYN (TCP sends it again after 1 s) is DNATed
 * again, to a backend that answers. Two good probes in a row bring it back.
 */
export interface ProbeTarget {
  host: string;
  port: number;
}

export interface ProbeState {
  up: boolean;
  /** Good probes in a row. */
  streak: number;
}

/** How a probe's result moves a backend's state (pure). A new backend starts up. */
export function probeStep(s: ProbeState, ok: boolean, upAfter = 2): ProbeState {
  if (!ok) return { up: false, streak: 0 };
  const streak = s.streak + 1;
  return { up: s.up || streak >= upAfter, streak };
}

export const PROBE_INTERVAL_MS = 250;
export const PROBE_TIMEOUT_MS = 300;

/** A TCP connect within `timeoutMs`, closed at once. */
export function tcpReachable(host: string, port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => { clearTimeout(timer); s.destroy(); resolve(ok); };
    const timer = setTimeout(() => done(false), timeoutMs);
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/**
 * Forget this node's unanswered connections to a backend (`conntrack -D`, state SYN_SENT), so the
 * client's next SYN is DNATed anew. Established ones are left alone: a probe that failed only from
 * load must not break connections that work.
 */
export function dropConnections(t: ProbeTarget): Promise<void> {
  return new Promise((resolve) => {
    let child;
    try {
      child = spawn('conntrack', ['-D', '-p', 'tcp', '--state', 'SYN_SENT', '--reply-src', t.host, '--reply-port-src', String(t.port)], { stdio: 'ignore' });
    } catch {
      resolve();
      return;
    }
    child.on('error', () => resolve());
    child.on('close', () => resolve());
  });
}

/** Is the conntrack tool here (Debian package `conntrack`)? null when it is, else why not. */
export function conntrackProblem(): Promise<string | null> {
  return new Promise((resolve) => {
    let child;
    try {
      child = spawn('conntrack', ['--version'], { stdio: 'ignore' });
    } catch (e) {
      resolve(`conntrack cannot run (${(e as Error).message}): install the Debian package conntrack`);
      return;
    }
    child.on('error', () => resolve('conntrack is not installed: install the Debian package conntrack'));
    child.on('close', (code) => resolve(code === 0 ? null : `conntrack --version failed (exit ${code})`));
  });
}

export interface BackendProbeOptions {
  intervalMs?: number;
  timeoutMs?: number;
  /** A backend went down or came back (the agent rebuilds its rules; after a down, drops its connections). */
  onChange: (t: ProbeTarget, up: boolean) => void;
  reachable?: (host: string, port: number, timeoutMs: number) => Promise<boolean>;
}

export class BackendProbe {
  private states = new Map<string, ProbeState & ProbeTarget & { busy: boolean }>();
  private timer?: NodeJS.Timeout;

  constructor(private opts: BackendProbeOptions) {}

  /** Probe exactly these (new ones start up; ones no longer listed are forgotten). */
  set(targets: ProbeTarget[]): void {
    const keep = new Set<string>();
    for (const t of targets) {
      const k = `${t.host}:${t.port}`;
      keep.add(k);
      if (!this.states.has(k)) this.states.set(k, { ...t, up: true, streak: 0, busy: false });
    }
    for (const k of [...this.states.keys()]) if (!keep.has(k)) this.states.delete(k);
    if (this.states.size > 0 && !this.timer) {
      this.timer = setInterval(() => this.tick(), this.opts.intervalMs ?? PROBE_INTERVAL_MS);
      this.timer.unref();
    } else if (this.states.size === 0) this.stop();
  }

  isUp(host: string, port: number): boolean {
    return this.states.get(`${host}:${port}`)?.up ?? true;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }

  private tick(): void {
    const reachable = this.opts.reachable ?? tcpReachable;
    for (const [k, s] of this.states) {
      if (s.busy) continue;
      s.busy = true;
      void reachable(s.host, s.port, this.opts.timeoutMs ?? PROBE_TIMEOUT_MS).then((ok) => {
        s.busy = false;
        if (this.states.get(k) !== s) return;
        const next = probeStep(s, ok);
        const changed = next.up !== s.up;
        s.up = next.up;
        s.streak = next.streak;
        if (changed) this.opts.onChange({ host: s.host, port: s.port }, s.up);
      });
    }
  }
}
