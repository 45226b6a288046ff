/**
 * The driver conformance suite (DESIGN.md, convention 5). A driver's test file calls
 * `runConformance(() => new MyDriver(), { name: 'my' })`; this registers node:test tests in two
 * parts:
 *
 * - the **lifecycle core**, which every driver passes: fingerprint, start → wait, inspect, a
 *   graceful stop, a kill after the grace period, stop idempotence, recover (reattach, and the
 *   recorded exit of one that ended meanwhile), a kill -9 of the task's process. It runs the
 *   driver's *workloads*: shell commands for command drivers; drivers that boot images instead (VMs)
 *   pass their own (`workloads`), e.g. guests whose user data behaves the same way;
 * - one part per **capability** the driver declares (`Driver.capabilities`): `command` (exit codes,
 *   signals, env, workdir, logs, argv, isolation), `exec`, cgroup limits, `pause`, `suspend`,
 *   `instances` (prepare apart from boot, root disk kept across stop/boot, saved and restored),
 *   `console`. A capability's methods must exist (checked in the core); parts a driver does not
 *   declare are not registered.
 *
 * The commands used are the ones any image with a POSIX userland (busybox included) has: `sh`,
 * `sleep`, `true`, `kill`, `printf`. Image drivers pass `image`; the process driver runs them from the
 * host and sets `hostFilesystem` so host temp dirs can serve as working directories.
 *
 * Tests that need root or cgroups skip with the reason, unless YUN_REQUIRE_ALL=1 (CI) makes that a
 * failure. Every test stops and destroys what it started, even when it fails, and uses temp dirs.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CAPABILITY_METHODS, capable, DriverError, type Driver, type DriverFingerprint, type ExitResult, type TaskConfig, type TaskHandle } from '../driver.js';

export interface ConformanceOptions {
  /** Shown in test names. */
  name: string;
  /** Image for image-based drivers (must provide sh, sleep, true, kill, printf). */
  image?: string;
  /** The driver only works as root: skip everything otherwise (a failure with YUN_REQUIRE_ALL=1). */
  requireRoot?: boolean;
  /** Tasks see the host file system (process driver): host temp dirs are used as working directories. */
  hostFilesystem?: boolean;
  /** Where cgroups are mounted (default /sys/fs/cgroup), for the cgroup clean-up checks. */
  cgroupRoot?: string;
  /**
   * The cgroup directories a task of this driver uses, for the destroy test. Default: the convention
   * `<root>/<controller>/<cgroup_parent>/<id>` (v1, for memory, cpu and pids) or `<root>/<cgroup_parent>/<id>` (v2).
   */
  cgroupDirs?: (handle: TaskHandle, config: TaskConfig, fingerprint: DriverFingerprint) => string[];
  /** Extra fields for every TaskConfig (e.g. a user or labels a driver needs). */
  baseConfig?: Partial<TaskConfig>;
  /** The core's workloads, for drivers that do not run commands (default: shell commands). */
  workloads?: Workloads;
  /** How long a workload may take to come up or go down (default 10 s; VMs under TCG need more). */
  timeoutMs?: number;
}

/** A task config (partial) and the output line that says it is up. */
export interface Workload {
  config: Partial<TaskConfig>;
  /** Printed once the workload is up (default `ready`). */
  ready?: string;
}

/** What the core runs. Each, on a command driver, is a shell command; a VM driver boots guests that do the same. */
export interface Workloads {
  /** Runs until stopped; a graceful stop ends it with success. */
  long: Workload;
  /** Ends by itself with success. */
  short: Workload;
  /** Ignores the graceful stop (SIGTERM, the power button): only the kill after the grace period ends it. */
  stubborn: Workload;
  /** Prints `tick N` lines, N counting up from 1, several a second. */
  ticker: Workload;
  /** Prints `fresh` on its first boot of a root disk and `kept` on later boots of the same disk. */
  persistent: Workload & { fresh: string; kept: string };
  /** Everything the workloads printed so far: stdout.log, or a VM's console log. */
  output(cfg: TaskConfig): string;
}

const loop = 'while :; do sleep 1 & wait $!; done';
/** The workloads of command drivers. */
export const SHELL_WORKLOADS: Workloads = {
  long: { config: { command: ['sh', '-c', `trap "exit 0" TERM; echo ready; ${loop}`] } },
  short: { config: { command: ['true'] } },
  stubborn: { config: { command: ['sh', '-c', 'trap "" TERM; echo ready; while :; do sleep 1; done'] } },
  ticker: { config: { command: ['sh', '-c', 'i=0; echo ready; while :; do i=$((i+1)); echo "tick $i"; sleep 0.05; done'] } },
  persistent: {
    config: { command: ['sh', '-c', `if [ -e /yun-conformance-marker ]; then echo kept; else echo fresh; : > /yun-conformance-marker; fi; trap "exit 0" TERM; echo ready; ${loop}`] },
    fresh: 'fresh', kept: 'kept',
  },
  output: (cfg) => readLog(cfg, 'stdout'),
};

/** The last `tick N` in `text`, or 0. */
export function lastTick(text: string): number {
  const all = [...text.matchAll(/tick (\d+)/g)];
  return all.length ? Number(all[all.length - 1]![1]) : 0;
}

/** How many times `word` occurs in `text`. */
export function occurrences(text: string, word: string): number {
  return text.split(word).length - 1;
}

const isRoot = () => typeof process.getuid === 'function' && process.getuid() === 0;

/** Skip for a missing privilege or kernel feature, unless YUN_REQUIRE_ALL=1 makes that a failure. */
export function requireOrSkip(t: { skip: (msg: string) => void }, ok: boolean, why: string): boolean {
  if (ok) return true;
  if (process.env.YUN_REQUIRE_ALL === '1') throw new Error(`required but unavailable (YUN_REQUIRE_ALL=1): ${why}`);
  t.skip(why);
  return false;
}

/** Poll `check` until it returns a truthy value or `ms` pass (then fail, saying what was awaited). */
export async function until<T>(check: () => Promise<T> | T, ms: number, what: string, everyMs = 20): Promise<NonNullable<T>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

/** `p`, or a failure naming `what` after `ms`. */
export async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

export function readLog(config: TaskConfig, stream: 'stdout' | 'stderr'): string {
  try {
    return readFileSync(join(config.dir, `${stream}.log`), 'utf8');
  } catch {
    return '';
  }
}

export function runConformance(makeDriver: () => Promise<Driver>, opts: ConformanceOptions): void {
  const cgroupRoot = opts.cgroupRoot ?? '/sys/fs/cgroup';
  const suffix = randomBytes(4).toString('hex');
  const cgroupTop = 'yunstack-conformance';
  const cgroupParent = `${cgroupTop}/${opts.name}-${suffix}`;
  const w = opts.workloads ?? SHELL_WORKLOADS;
  const T = opts.timeoutMs ?? 10_000;

  describe(`driver conformance: ${opts.name}`, async () => {
    // The driver's capabilities decide which parts are registered: make it now.
    const driver = await makeDriver();
    const caps = driver.capabilities;
    let fp: DriverFingerprint;
    let root: string;
    let n = 0;
    const started: Array<{ driver: Driver; handle: TaskHandle }> = [];

    const limitsEnforced = () => isRoot() && fp.available && (fp.attributes?.cgroups ?? 'none') !== 'none';
    const noLimitsWhy = () => (isRoot() ? `the ${opts.name} driver runs without cgroups here (${fp.attributes?.cgroups_reason ?? 'cgroups: none'})` : 'needs root to create cgroups');
    /** Needs root (when the driver does), else skips (a failure with YUN_REQUIRE_ALL=1). */
    const may = (t: { skip: (m: string) => void }) => !opts.requireRoot || requireOrSkip(t, isRoot(), `the ${opts.name} driver needs root`);

    before(async () => {
      fp = await driver.fingerprint();
      root = mkdtempSync(join(tmpdir(), `yun-conf-${opts.name}-`));
    });

    after(async () => {
      for (const s of started) {
        await s.driver.stop(s.handle, 0).catch(() => undefined);
        await s.driver.destroy(s.handle).catch(() => undefined);
      }
      if (root) rmSync(root, { recursive: true, force: true });
      // Parent cgroups made for this run (other suites may still use the top one: then it stays), in
      // every hierarchy: runtimes such as runc create the task's cgroup in all of them (freezer, devices…).
      const hierarchies = new Set(['memory', 'cpu', 'pids', 'cpuacct', 'cpu,cpuacct']);
      try {
        for (const e of readdirSync(cgroupRoot, { withFileTypes: true })) if (e.isDirectory()) hierarchies.add(e.name);
      } catch {
        /* no cgroup root */
      }
      for (const base of [cgroupRoot, ...[...hierarchies].map((c) => join(cgroupRoot, c))]) {
        for (const d of [join(base, cgroupParent), join(base, cgroupTop)]) {
          try {
            rmdirSync(d);
          } catch {
            /* absent or still in use */
          }
        }
      }
    });

    /** A fresh TaskConfig with its own temp task dir. */
    function config(over: Partial<TaskConfig> = {}): TaskConfig {
      const id = `conf-${suffix}-${++n}`;
      const dir = join(root, id);
      mkdirSync(dir, { recursive: true });
      return {
        id,
        name: `conformance.${n}`,
        dir,
        command: ['true'],
        shell: false,
        env: {},
        mounts: [],
        read_only: false,
        limits: { cpu: 0, memory_bytes: 0, pids: 0 },
        ports: [],
        cgroup_parent: cgroupParent,
        labels: {},
        ...(opts.image ? { image: opts.image } : {}),
        ...(opts.baseConfig ?? {}),
        ...over,
      };
    }
    const of = (wl: Workload, over: Partial<TaskConfig> = {}) => config({ ...wl.config, ...over });

    /** Start a task, run `fn`, and always stop + destroy it. */
    async function withTask<T>(cfg: TaskConfig, fn: (h: TaskHandle) => Promise<T>, d: Driver = driver): Promise<T> {
      const handle = await d.start(cfg);
      const entry = { driver: d, handle };
      started.push(entry);
      try {
        return await fn(handle);
      } finally {
        await d.stop(handle, 0).catch(() => undefined);
        await d.destroy(handle);
        started.splice(started.indexOf(entry), 1);
      }
    }

    const waitFor = (h: TaskHandle, ms = T, d: Driver = driver) => within(d.wait(h), ms, 'wait()');

    function assertExit(r: ExitResult, code: number, signal: string | null = null) {
      assert.equal(r.exit_code, code, `exit code (result ${JSON.stringify(r)})`);
      assert.equal(r.signal, signal, `signal (result ${JSON.stringify(r)})`);
      assert.equal(r.oom_killed, false);
      assert.ok(!Number.isNaN(Date.parse(r.finished_at)), `finished_at is a timestamp: ${r.finished_at}`);
    }

    /** Until `word` has been printed `count` times (the workload's output, stdout.log or a console). */
    function printed(cfg: TaskConfig, word = 'ready', count = 1) {
      return until(() => occurrences(w.output(cfg), word) >= count, T, `"${word}" ×${count} in the output of ${cfg.id}`);
    }
    const ready = (cfg: TaskConfig, wl: Workload, count = 1) => printed(cfg, wl.ready ?? 'ready', count);

    // ---- the lifecycle core: every driver ------------------------------------------------------

    it('fingerprint: available, with attributes; every declared capability has its methods', async (t) => {
      if (!may(t)) return;
      assert.equal(fp.available, true, `fingerprint: ${JSON.stringify(fp)}`);
      assert.equal(typeof fp.attributes, 'object');
      assert.equal(driver.name, opts.name);
      for (const [cap, methods] of Object.entries(CAPABILITY_METHODS)) {
        const declared = Boolean(caps[cap as keyof typeof CAPABILITY_METHODS]);
        for (const m of methods) {
          const has = typeof (driver as unknown as Record<string, unknown>)[m] === 'function';
          if (declared) assert.ok(has, `capability ${cap} is declared, but the driver has no ${m}()`);
        }
      }
      assert.ok(Array.isArray(caps.image_kinds) && Array.isArray(caps.network_kinds));
      assert.equal(Boolean(opts.image), caps.image_kinds.length > 0, 'image drivers declare the image kinds they run');
    });

    it('start then wait: a workload that ends by itself exits 0, without an error', async (t) => {
      if (!may(t)) return;
      const cfg = of(w.short);
      await withTask(cfg, async (h) => {
        assert.equal(h.driver, opts.name);
        assert.equal(h.task_id, cfg.id);
        assert.ok(!Number.isNaN(Date.parse(h.started_at)));
        JSON.parse(JSON.stringify(h)); // serialisable
        const r = await waitFor(h);
        assertExit(r, 0);
        assert.equal(r.error, null);
      });
    });

    it('inspect: running with a pid; after a graceful stop, not running, with its exit', async (t) => {
      if (!may(t)) return;
      const cfg = of(w.long);
      await withTask(cfg, async (h) => {
        await ready(cfg, w.long);
        const s = await driver.inspect(h);
        assert.equal(s.running, true);
        assert.ok(Number.isInteger(s.pid) && s.pid! > 0, `pid ${s.pid}`);
        assert.equal(s.exit, undefined);
        const t0 = Date.now();
        await within(driver.stop(h, T), T + 5000, 'stop()');
        assert.ok(Date.now() - t0 < T, `a graceful stop took ${Date.now() - t0} ms`);
        const after = await driver.inspect(h);
        assert.equal(after.running, false);
        assertExit(after.exit!, 0);
        assertExit(await waitFor(h), 0);
      });
    });

    it('stop: a task ignoring the graceful stop is SIGKILLed after the grace period', async (t) => {
      if (!may(t)) return;
      const cfg = of(w.stubborn);
      await withTask(cfg, async (h) => {
        await ready(cfg, w.stubborn);
        const grace = 1000;
        const t0 = Date.now();
        await within(driver.stop(h, grace), grace + 5000, 'stop()');
        const took = Date.now() - t0;
        assert.ok(took >= grace - 50, `stop waited for the grace period (${took} ms)`);
        assert.ok(took < grace + 2500, `stop resolved within grace + 2.5 s (${took} ms)`);
        const r = await waitFor(h, 2000);
        assertExit(r, 137, 'SIGKILL');
        assert.match(r.error ?? '', /SIGKILL/);
        assert.equal((await driver.inspect(h)).running, false);
      });
    });

    it('stop: idempotent, concurrent, and safe on an exited task', async (t) => {
      if (!may(t)) return;
      await withTask(of(w.short), async (h) => {
        assertExit(await waitFor(h), 0);
        await within(driver.stop(h, 1000), 3000, 'stop() on an exited task');
        await within(driver.stop(h, 1000), 3000, 'a second stop()');
        assertExit(await waitFor(h), 0);
      });
      const cfg = of(w.long);
      await withTask(cfg, async (h) => {
        await ready(cfg, w.long);
        await within(Promise.all([driver.stop(h, T), driver.stop(h, T)]), T + 5000, 'two concurrent stop()s');
        await within(driver.stop(h, T), 3000, 'stop() after stop()');
        assertExit(await waitFor(h, 2000), 0);
      });
    });

    it('recover: a fresh driver instance reattaches to a running task', async (t) => {
      if (!may(t)) return;
      const cfg = of(w.long);
      await withTask(cfg, async (h) => {
        await ready(cfg, w.long);
        const before = await driver.inspect(h);
        assert.equal(before.running, true);
        // The agent restarts: a new driver instance, the handle read back from disk.
        const fresh = await makeDriver();
        const persisted = JSON.parse(JSON.stringify(h)) as TaskHandle;
        const recovered = await fresh.recover(persisted);
        assert.ok(recovered, 'the running task is recovered');
        JSON.parse(JSON.stringify(recovered));
        const s = await fresh.inspect(recovered);
        assert.equal(s.running, true);
        assert.equal(s.pid, before.pid, 'the same pid after recover');
        const waiting = fresh.wait(recovered);
        await within(fresh.stop(recovered, T), T + 2000, 'stop() through the recovered handle');
        const r = await within(waiting, 3000, 'wait() on the recovered handle');
        assertExit(r, 0);
        assert.equal(r.error, null);
        await fresh.destroy(recovered);
      });
    });

    it('recover: a task that exited meanwhile is reported with its recorded exit', async (t) => {
      if (!may(t)) return;
      await withTask(of(w.short), async (h) => {
        assertExit(await waitFor(h), 0);
        const fresh = await makeDriver();
        const persisted = JSON.parse(JSON.stringify(h)) as TaskHandle;
        const recovered = await fresh.recover(persisted);
        const use = recovered ?? persisted;
        const s = await fresh.inspect(use);
        assert.equal(s.running, false);
        assert.equal(s.exit?.exit_code, 0);
        const t0 = Date.now();
        const r = await within(fresh.wait(use), 2000, 'wait() on a gone task');
        assert.ok(Date.now() - t0 < 1000, 'wait resolves at once');
        assertExit(r, 0);
      });
    });

    it('kill -9 of the task\'s process: it is reported as killed, never as running', async (t) => {
      if (!may(t)) return;
      const cfg = of(w.long);
      await withTask(cfg, async (h) => {
        await ready(cfg, w.long);
        const s = await driver.inspect(h);
        assert.ok(s.pid && s.pid > 1, `a pid to kill: ${s.pid}`);
        process.kill(s.pid!, 'SIGKILL');
        const r = await waitFor(h);
        assert.notEqual(r.exit_code, 0, JSON.stringify(r));
        assert.ok(r.signal === 'SIGKILL' || r.exit_code === 137, `killed: ${JSON.stringify(r)}`);
        assert.ok(r.error, 'an error says how it ended');
        assert.equal((await driver.inspect(h)).running, false);
      });
    });

    // ---- capability: command -------------------------------------------------------------------

    if (caps.command) describe('command', () => {
      it('a non-zero exit code is reported with a full error', async (t) => {
        if (!may(t)) return;
        const cfg = config({ command: ['sh', '-c', 'exit 3'] });
        await withTask(cfg, async (h) => {
          const r = await waitFor(h);
          assertExit(r, 3);
          assert.equal(r.error, 'exit code 3');
        });
      });

      it('a task killed by a signal reports the signal', async (t) => {
        if (!may(t)) return;
        const cfg = config({ command: ['sh', '-c', 'kill -KILL $$'] });
        await withTask(cfg, async (h) => {
          const r = await waitFor(h);
          assertExit(r, 137, 'SIGKILL');
          assert.match(r.error ?? '', /SIGKILL/);
        });
      });

      it('a missing command fails with a full, clear error', async (t) => {
        if (!may(t)) return;
        const name = `yun-no-such-command-${suffix}`;
        const cfg = config({ command: [name, 'arg'] });
        let message: string | null = null;
        try {
          const h = await driver.start(cfg);
          started.push({ driver, handle: h });
          const r = await waitFor(h);
          assert.notEqual(r.exit_code, 0);
          message = r.error;
        } catch (err) {
          assert.ok(err instanceof DriverError, `start throws a DriverError (got ${String(err)})`);
          message = err.message;
        }
        assert.ok(message, 'an error message');
        assert.ok(message.includes(name), `the error names the command: ${message}`);
        assert.match(message, /not found|no such file/i, `the error says why: ${message}`);
      });

      it('env and workdir are honoured', async (t) => {
        if (!may(t)) return;
        const workdir = opts.hostFilesystem ? realpathSync(mkdtempSync(join(root, 'wd-'))) : '/tmp';
        const cfg = config({
          command: ['sh', '-c', 'printf "%s|%s|%s|%s\\n" "$YUN_A" "${YUN_EMPTY-unset}" "${YUN_NOT_SET-unset}" "$(pwd)"'],
          env: { YUN_A: 'hello world $HOME', YUN_EMPTY: '' },
          workdir,
        });
        await withTask(cfg, async (h) => {
          assertExit(await waitFor(h), 0);
          assert.equal(readLog(cfg, 'stdout'), `hello world $HOME||unset|${workdir}\n`);
        });
      });

      it('stdout and stderr go to stdout.log and stderr.log; argv is passed without a shell', async (t) => {
        if (!may(t)) return;
        const cfg = config({ command: ['sh', '-c', 'echo to-out; echo to-err >&2; printf "[%s]" "$@"; echo', 'zero', 'a b', '$HOME', '*', ';', ''] });
        await withTask(cfg, async (h) => {
          assertExit(await waitFor(h), 0);
          assert.equal(readLog(cfg, 'stdout'), 'to-out\n[a b][$HOME][*][;][]\n');
          assert.equal(readLog(cfg, 'stderr'), 'to-err\n');
        });
      });

      it('stop: SIGTERM ends a plain command; the exit says so', async (t) => {
        if (!may(t)) return;
        await withTask(config({ command: ['sleep', '60'] }), async (h) => {
          await within(driver.stop(h, 5000), 7000, 'stop()');
          const after = await driver.inspect(h);
          assert.equal(after.running, false);
          assert.equal(after.exit?.signal, 'SIGTERM', JSON.stringify(after));
          assert.equal(after.exit?.error, 'killed by signal SIGTERM');
        });
      });

      it('stop: a task that traps SIGTERM exits on it, well within the grace period', async (t) => {
        if (!may(t)) return;
        const cfg = config({ command: ['sh', '-c', 'trap "echo got-term; exit 0" TERM; echo ready; while :; do sleep 1 & wait $!; done'] });
        await withTask(cfg, async (h) => {
          await printed(cfg);
          const t0 = Date.now();
          await within(driver.stop(h, 10_000), 5000, 'stop()');
          assert.ok(Date.now() - t0 < 5000, `stopped in ${Date.now() - t0} ms`);
          assertExit(await waitFor(h), 0);
          assert.match(readLog(cfg, 'stdout'), /got-term/);
        });
      });

      if (caps.image_kinds.includes('container') && caps.exec) {
        it('containers: the hostname is the task name and the task sees only its own processes', async (t) => {
          if (!may(t)) return;
          const cfg = config({ command: ['sleep', '60'] });
          await withTask(cfg, async (h) => {
            // Shell built-ins only: the image needs nothing beyond sh.
            const host = await driver.exec!(h, ['sh', '-c', 'read -r h < /proc/sys/kernel/hostname; echo "$h"'], { timeoutMs: 5000 });
            assert.deepEqual(host, { exit_code: 0, stdout: `${cfg.name}\n`, stderr: '' });
            const procs = await driver.exec!(h, ['sh', '-c', 'n=0; for p in /proc/[0-9]*; do n=$((n+1)); done; echo $n'], { timeoutMs: 5000 });
            const count = Number(procs.stdout.trim());
            // sleep, the exec'd sh, and at most an init: never the node's processes.
            assert.ok(count >= 2 && count <= 4, `the task sees ${count} processes: ${JSON.stringify(procs)}`);
          });
        });
      }

      it('memory limit: an OOM kill is reported as OOMKilled', async (t) => {
        if (!may(t)) return;
        if (!requireOrSkip(t, limitsEnforced(), noLimitsWhy())) return;
        const cfg = config({ command: ['sh', '-c', 'x=a; while :; do x=$x$x; done'], limits: { cpu: 0, memory_bytes: 32 * 1024 * 1024, pids: 0 } });
        await withTask(cfg, async (h) => {
          const r = await waitFor(h, 20_000);
          assert.equal(r.oom_killed, true, JSON.stringify(r));
          assert.ok(r.error?.startsWith('OOMKilled'), `error: ${r.error}`);
          assert.match(r.error ?? '', /32MiB/);
          assert.notEqual(r.exit_code, 0);
        });
      });

      it('pids limit: the task cannot start more processes than allowed', async (t) => {
        if (!may(t)) return;
        if (!requireOrSkip(t, limitsEnforced(), noLimitsWhy())) return;
        const cfg = config({
          command: ['sh', '-c', 'i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); done; echo spawned-all'],
          limits: { cpu: 0, memory_bytes: 0, pids: 8 },
        });
        await withTask(cfg, async (h) => {
          const r = await waitFor(h);
          assert.notEqual(r.exit_code, 0, `the shell failed to fork: ${JSON.stringify(r)} stderr=${readLog(cfg, 'stderr')}`);
          assert.ok(!readLog(cfg, 'stdout').includes('spawned-all'));
          assert.match(readLog(cfg, 'stderr'), /fork/i);
        });
      });

      it('destroy removes the task cgroups', async (t) => {
        if (!may(t)) return;
        if (!requireOrSkip(t, limitsEnforced(), noLimitsWhy())) return;
        const cfg = config({ command: ['sh', '-c', 'sleep 60 & echo ready; wait'], limits: { cpu: 0.5, memory_bytes: 64 * 1024 * 1024, pids: 20 } });
        const handle = await driver.start(cfg);
        const entry = { driver, handle };
        started.push(entry);
        const dirs = (opts.cgroupDirs ?? conventionalDirs)(handle, cfg, fp);
        try {
          await printed(cfg);
          const present = dirs.filter((d) => existsSync(d));
          assert.ok(present.length > 0, `the task has cgroups (looked for ${dirs.join(', ')})`);
          await driver.stop(handle, 1000);
          await driver.destroy(handle);
          for (const d of dirs) assert.equal(existsSync(d), false, `${d} is removed by destroy`);
          await driver.destroy(handle); // idempotent
        } finally {
          await driver.stop(handle, 0).catch(() => undefined);
          await driver.destroy(handle).catch(() => undefined);
          started.splice(started.indexOf(entry), 1);
        }
      });
    });

    // ---- capability: exec ----------------------------------------------------------------------

    if (caps.exec) {
      it('exec: runs a command in the task environment', async (t) => {
        if (!may(t)) return;
        const cfg = of(w.long, { env: { YUN_A: 'task-value' } });
        await withTask(cfg, async (h) => {
          await ready(cfg, w.long);
          const r = await driver.exec!(h, ['sh', '-c', 'echo "$YUN_A $YUN_B"; echo oops >&2; exit 3'], { timeoutMs: 5000, env: { YUN_B: 'extra' } });
          assert.deepEqual(r, { exit_code: 3, stdout: `${caps.command ? 'task-value' : ''} extra\n`, stderr: 'oops\n' });
          const ok = await driver.exec!(h, ['true'], { timeoutMs: 5000 });
          assert.equal(ok.exit_code, 0);
        });
      });
    }

    // ---- capability: pause ---------------------------------------------------------------------

    /** The ticker stands still for `ms`: its last tick does not change. */
    async function standsStill(cfg: TaskConfig, ms: number): Promise<number> {
      await new Promise((r) => setTimeout(r, 200)); // what was in flight lands
      const at = lastTick(w.output(cfg));
      await new Promise((r) => setTimeout(r, ms));
      assert.equal(lastTick(w.output(cfg)), at, `no tick while frozen (it was at ${at})`);
      return at;
    }
    const ticksOn = (cfg: TaskConfig, after: number) => until(() => lastTick(w.output(cfg)) > after + 2, T, `ticks after ${after}`);

    const pausable = capable(driver, 'pause');
    if (pausable) {
      it('pause: freeze stops every process in place; thaw lets it go on; stop works on a frozen task', async (t) => {
        if (!may(t)) return;
        const cfg = of(w.ticker);
        await withTask(cfg, async (h) => {
          await ticksOn(cfg, 0);
          await pausable.freeze(h);
          await pausable.freeze(h); // idempotent
          const at = await standsStill(cfg, 700);
          assert.equal((await driver.inspect(h)).running, true, 'a frozen task still runs');
          await pausable.thaw(h);
          await pausable.thaw(h);
          await ticksOn(cfg, at);
          assert.ok(lastTick(w.output(cfg)) > at, 'it went on from where it was');
          await pausable.freeze(h);
          await within(driver.stop(h, 1000), 8000, 'stop() on a frozen task');
          assert.equal((await driver.inspect(h)).running, false);
        });
      });
    }

    // ---- capability: suspend -------------------------------------------------------------------

    const suspendable = capable(driver, 'suspend');
    if (suspendable) {
      it(`suspend (${caps.suspend}): nothing runs while suspended; resume goes on from where it was`, async (t) => {
        if (!may(t)) return;
        const cfg = of(w.ticker);
        await withTask(cfg, async (h0) => {
          let h = h0;
          await ticksOn(cfg, 0);
          h = await within(suspendable.suspend(h), T, 'suspend()');
          const entry = started.find((s) => s.handle === h0);
          if (entry) entry.handle = h;
          assert.equal(await suspendable.suspended(h), true);
          const at = await standsStill(cfg, 700);
          if (caps.suspend === 'disk') assert.equal((await driver.inspect(h)).running, false, 'suspended to disk: no process');
          const fresh = await makeDriver();
          assert.equal(await (capable(fresh, 'suspend')!).suspended(JSON.parse(JSON.stringify(h)) as TaskHandle), true, 'a fresh driver sees it suspended');
          h = await within(suspendable.resume(h), T, 'resume()');
          if (entry) entry.handle = h;
          assert.equal(await suspendable.suspended(h), false);
          await ticksOn(cfg, at);
          // The same processes: the count goes on, it does not start again at 1.
          const ticks = [...w.output(cfg).matchAll(/tick (\d+)/g)].map((m) => Number(m[1]));
          const firstAfter = ticks.find((x, i) => i > 0 && x > at && ticks[i - 1] === at);
          assert.ok(!ticks.slice(ticks.indexOf(at) + 1).includes(1), 'ticks do not restart from 1 after resume');
          assert.ok(firstAfter === undefined || firstAfter === at + 1, `resumed at tick ${at + 1} (got ${firstAfter})`);
          await within(driver.stop(h, T), T + 3000, 'stop() after resume');
        });
      });
    }

    // ---- capability: instances -----------------------------------------------------------------

    const inst = capable(driver, 'instances');
    if (inst) {
      it('instances: prepare runs nothing; boot; the root disk is kept across stop and boot; a saved disk comes back', async (t) => {
        if (!may(t)) return;
        const wl = w.persistent;
        const cfg = of(wl);
        let h = await inst.prepare(cfg);
        const entry = { driver, handle: h };
        started.push(entry);
        try {
          assert.equal((await driver.inspect(h)).running, false, 'a prepared instance does not run');
          JSON.parse(JSON.stringify(h));
          await inst.saveDisk(h, 'pristine');
          h = entry.handle = await inst.boot(h, cfg);
          await ready(cfg, wl, 1);
          await printed(cfg, wl.fresh, 1);
          await within(driver.stop(h, T), T + 3000, 'stop()');
          assert.equal((await driver.inspect(h)).running, false);
          h = entry.handle = await inst.boot(h, cfg);
          await ready(cfg, wl, 2);
          await printed(cfg, wl.kept, 1);
          assert.equal(occurrences(w.output(cfg), wl.fresh), 1, 'the second boot found its root disk');
          await within(driver.stop(h, T), T + 3000, 'stop()');
          await inst.restoreDisk(h, 'pristine');
          h = entry.handle = await inst.boot(h, cfg);
          await ready(cfg, wl, 3);
          await printed(cfg, wl.fresh, 2);
          await inst.dropDisk(h, 'pristine');
          await within(driver.stop(h, T), T + 3000, 'stop()');
          await assert.rejects(inst.restoreDisk(h, 'pristine'), /pristine/, 'a dropped copy is gone');
        } finally {
          await driver.stop(entry.handle, 0).catch(() => undefined);
          await driver.destroy(entry.handle).catch(() => undefined);
          started.splice(started.indexOf(entry), 1);
        }
      });
    }

    // ---- capability: console -------------------------------------------------------------------

    const consoles = capable(driver, 'console');
    if (consoles) {
      it('console: the log holds what the task printed; the interactive console runs a command', async (t) => {
        if (!may(t)) return;
        const cfg = of(w.long);
        await withTask(cfg, async (h) => {
          await ready(cfg, w.long);
          const log = await consoles.consoleLog(h, {});
          assert.ok(log.includes(w.long.ready ?? 'ready'), `the console log has the workload's output: ${JSON.stringify(log.slice(-500))}`);
          assert.ok((await consoles.consoleLog(h, { tailBytes: 5 })).length <= 5, 'tailBytes caps the log');
          const tty = await consoles.console(h);
          let out = '';
          tty.output.on('data', (b: Buffer) => { out += b.toString('utf8'); });
          try {
            await new Promise((r) => setTimeout(r, 300));
            tty.stdin.write('\necho yun-console-$((40+2))\n');
            await until(() => out.includes('yun-console-42'), T, 'the console to answer');
          } finally {
            tty.kill();
          }
        });
      });
    }

    function conventionalDirs(_h: TaskHandle, cfg: TaskConfig, f: DriverFingerprint): string[] {
      const parts = cfg.cgroup_parent.split('/').filter(Boolean);
      if (f.attributes?.cgroups === 'v2') return [join(cgroupRoot, ...parts, cfg.id)];
      return ['memory', 'cpu', 'pids'].map((c) => join(cgroupRoot, c, ...parts, cfg.id));
    }
  });
}
