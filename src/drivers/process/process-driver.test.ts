// The process driver: the shared conformance suite, then what only this driver does (no shell by
// default, the exact environment, the shim and its exit file across an agent kill -9, pid-reuse-safe
// recover, cgroup files on this machine, v2 layout on a fake cgroup root, no-cgroups fallback).
// Every process started here is stopped by pid or handle, every cgroup and temp dir removed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DriverError, type TaskConfig, type TaskHandle } from '../driver.js';
import { readLog, requireOrSkip, runConformance, until, within } from '../testing/conformance.js';
import { DEFAULT_PATH } from './lookup.js';
import { formatBytes, ProcessDriver, type ProcessHandle } from './process-driver.js';
import { readProcStat } from './procfs.js';

runConformance(async () => new ProcessDriver(), { name: 'process', hostFilesystem: true });

const isRoot = () => process.getuid?.() === 0;

function alive(pid: number): boolean {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) [ZX] /.test(st);
  } catch {
    return false;
  }
}

describe('process driver', () => {
  const suffix = randomBytes(4).toString('hex');
  const cgroupTop = 'yunstack-test';
  const cgroupParent = `${cgroupTop}/process-${suffix}`;
  let root: string;
  let n = 0;
  const driver = new ProcessDriver();
  const cleanups: Array<() => Promise<void> | void> = [];

  before(() => {
    root = realpathSync(mkdtempSync(join(tmpdir(), 'yun-process-')));
  });

  after(async () => {
    for (const c of cleanups.reverse()) await Promise.resolve(c()).catch(() => undefined);
    rmSync(root, { recursive: true, force: true });
    for (const c of ['memory', 'cpu', 'pids']) {
      for (const d of [join('/sys/fs/cgroup', c, cgroupParent), join('/sys/fs/cgroup', c, cgroupTop)]) {
        try {
          rmdirSync(d);
        } catch {
          /* absent or in use */
        }
      }
    }
    for (const d of [join('/sys/fs/cgroup', cgroupParent), join('/sys/fs/cgroup', cgroupTop)]) {
      try {
        rmdirSync(d);
      } catch {
        /* absent or in use */
      }
    }
  });

  function config(over: Partial<TaskConfig> = {}): TaskConfig {
    const id = `proc-${suffix}-${++n}`;
    const dir = join(root, id);
    mkdirSync(dir, { recursive: true });
    return {
      id,
      name: `proc.${n}`,
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
      ...over,
    };
  }

  async function run(cfg: TaskConfig, d = driver): Promise<{ h: TaskHandle; r: Awaited<ReturnType<ProcessDriver['wait']>> }> {
    const h = await d.start(cfg);
    try {
      const r = await within(d.wait(h), 10_000, 'wait()');
      return { h, r };
    } finally {
      await d.stop(h, 0);
      await d.destroy(h);
    }
  }

  /** Start and register stop + destroy for `after` as well as returning the handle. */
  async function startTracked(cfg: TaskConfig, d = driver): Promise<ProcessHandle> {
    const h = (await d.start(cfg)) as ProcessHandle;
    cleanups.push(async () => {
      await d.stop(h, 0);
      await d.destroy(h);
    });
    return h;
  }

  it('shell: true runs command[0] with /bin/sh -c, the rest as $0, $1…', async () => {
    const cfg = config({ shell: true, command: ['echo "$0 $1 $HOME" | tr a-z A-Z', 'zero', 'one'], env: { HOME: '/home/x' } });
    const { r } = await run(cfg);
    assert.equal(r.exit_code, 0);
    assert.equal(readLog(cfg, 'stdout'), 'ZERO ONE /HOME/X\n');
  });

  it('shell: true with a command the shell cannot find: exit 127 with the shell\'s reason', async () => {
    const cfg = config({ shell: true, command: ['nosuchcmd-yun --flag'] });
    const { r } = await run(cfg);
    assert.equal(r.exit_code, 127);
    assert.equal(r.signal, null);
    assert.match(r.error ?? '', /^exit code 127 \(.*nosuchcmd-yun.*not found\)$/);
  });

  it('no shell by default: $HOME, globs and $(…) stay literal', async () => {
    const cfg = config({ command: ['echo', '$HOME', '*', '~', '$(id)', '`id`', 'a;b'], env: { HOME: '/home/x' } });
    const { r } = await run(cfg);
    assert.equal(r.exit_code, 0);
    assert.equal(readLog(cfg, 'stdout'), '$HOME * ~ $(id) `id` a;b\n');
  });

  it('the environment is exactly `env`, plus PATH when missing (no PWD, no shim variables)', async () => {
    const a = config({ command: ['env'], env: { A: '1', B: 'x y', EMPTY: '' } });
    await run(a);
    assert.deepEqual(readLog(a, 'stdout').trim().split('\n').sort(), ['A=1', 'B=x y', 'EMPTY=', `PATH=${DEFAULT_PATH}`]);
    const b = config({ command: ['env'], env: { PATH: '/usr/bin:/bin', PWD: '/custom' } });
    await run(b);
    assert.deepEqual(readLog(b, 'stdout').trim().split('\n').sort(), ['PATH=/usr/bin:/bin', 'PWD=/custom']);
    await assert.rejects(driver.start(config({ env: { __yun_shim_x: '1' } })), /reserved/);
    await assert.rejects(driver.start(config({ env: { 'A=B': '1' } })), DriverError);
  });

  it('workdir: defaults to the task dir; a missing one fails start, naming it', async () => {
    const cfg = config({ command: ['pwd'] });
    await run(cfg);
    assert.equal(readLog(cfg, 'stdout'), `${cfg.dir}\n`);
    const missing = join(root, 'no-such-workdir');
    await assert.rejects(driver.start(config({ workdir: missing })), (err: Error) => {
      assert.ok(err instanceof DriverError);
      assert.equal(err.message, `workdir "${missing}" does not exist on this node`);
      return true;
    });
  });

  it('commands that cannot run fail start with a full, exec-style error', async () => {
    await assert.rejects(driver.start(config({ command: ['nosuchcmd-yun'] })), (err: Error) => {
      assert.ok(err instanceof DriverError);
      assert.equal(err.message, `exec: "nosuchcmd-yun": executable file not found in $PATH (PATH=${DEFAULT_PATH})`);
      return true;
    });
    const wd = mkdtempSync(join(root, 'bin-'));
    const plain = join(wd, 'not-executable');
    writeFileSync(plain, '#!/bin/sh\necho hi\n');
    chmodSync(plain, 0o644);
    await assert.rejects(driver.start(config({ command: [plain] })), { message: `exec: "${plain}": permission denied` });
    await assert.rejects(driver.start(config({ command: [wd] })), { message: `exec: "${wd}": is a directory` });
    const badInterp = join(wd, 'bad-interp');
    writeFileSync(badInterp, '#!/nonexistent/interp -x\necho hi\n');
    chmodSync(badInterp, 0o755);
    await assert.rejects(driver.start(config({ command: [badInterp] })), { message: `exec: "${badInterp}": bad interpreter "/nonexistent/interp": no such file or directory` });
    await assert.rejects(driver.start(config({ command: ['./nope.sh'], workdir: wd })), { message: `exec: "./nope.sh": no such file or directory (resolved to ${join(wd, 'nope.sh')})` });
    // A relative path is resolved against the workdir, and a PATH entry holding only a non-executable match says so.
    const script = join(wd, 'ok.sh');
    writeFileSync(script, '#!/bin/sh\necho "ran $1"\n');
    chmodSync(script, 0o755);
    const cfg = config({ command: ['./ok.sh', 'arg'], workdir: wd });
    await run(cfg);
    assert.equal(readLog(cfg, 'stdout'), 'ran arg\n');
    await assert.rejects(driver.start(config({ command: ['not-executable'], env: { PATH: wd } })), {
      message: `exec: "not-executable": permission denied (${plain} is not executable; PATH=${wd})`,
    });
  });

  it('stop delivers the signal to the command itself (SIGINT is not ignored)', async () => {
    const cfg = config({ command: ['sh', '-c', 'trap "echo got-int; exit 0" INT; echo ready; while :; do sleep 1 & wait $!; done'] });
    const h = await startTracked(cfg);
    await until(() => readLog(cfg, 'stdout').includes('ready'), 5000, 'ready');
    const grep = readFileSync(`/proc/${h.pid}/status`, 'utf8');
    assert.match(grep, /^SigIgn:\s+0+$/m, 'the command starts with no signal ignored');
    await within(driver.stop(h, 5000, 'INT'), 3000, 'stop(SIGINT)');
    const r = await driver.wait(h);
    assert.equal(r.exit_code, 0, JSON.stringify(r));
    assert.match(readLog(cfg, 'stdout'), /got-int/);
    await assert.rejects(driver.stop(h, 0, 'SIGNOPE'), /unknown signal "SIGNOPE"/);
  });

  it('the shim survives signals meant for the group or for itself, and records the exit status', async () => {
    const cfg = config({ command: ['sleep', '60'] });
    const h = await startTracked(cfg);
    assert.notEqual(h.pid, h.shim_pid);
    // A signal to the shim alone does nothing to the task.
    process.kill(h.shim_pid, 'SIGTERM');
    process.kill(h.shim_pid, 'SIGHUP');
    await new Promise((r) => setTimeout(r, 200));
    assert.equal((await driver.inspect(h)).running, true, 'still running after the shim got SIGTERM');
    // A signal to the whole group (as a terminal or an operator would send it) reaches the command; the shim records it.
    process.kill(-h.pgid, 'SIGTERM');
    const r = await within(driver.wait(h), 5000, 'wait()');
    assert.equal(r.exit_code, 143);
    assert.equal(r.signal, 'SIGTERM');
    assert.equal(readFileSync(join(cfg.dir, 'exit'), 'utf8'), '143\n');
  });

  it('pid reuse: a handle whose start time does not match is not recovered, and its pid is left alone', async () => {
    const sleeper = spawn('sleep', ['30'], { detached: true, stdio: 'ignore' });
    const pid = sleeper.pid!;
    cleanups.push(() => {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        /* gone */
      }
    });
    const st = await readProcStat(pid);
    assert.ok(st);
    const fake: ProcessHandle = {
      driver: 'process',
      version: 1,
      task_id: 'recycled',
      started_at: new Date().toISOString(),
      dir: mkdtempSync(join(root, 'fake-')),
      shim_pid: pid,
      shim_start: String(Number(st.starttime) - 1),
      pgid: pid,
      pid,
      pid_start: String(Number(st.starttime) - 1),
      env: {},
      workdir: root,
      cgroups: null,
      memory_limit_bytes: 0,
    };
    assert.equal(await new ProcessDriver().recover(JSON.parse(JSON.stringify(fake))), undefined);
    const s = await driver.inspect(fake);
    assert.equal(s.running, false);
    assert.equal(s.exit?.exit_code, null);
    assert.match(s.exit?.error ?? '', /without recording an exit status/);
    await driver.stop(fake, 0);
    await driver.destroy(fake);
    assert.ok(alive(pid), 'the unrelated process that now has the pid is untouched');
    process.kill(pid, 'SIGKILL');
  });

  it('tasks survive an agent killed with SIGKILL; a restarted agent reattaches and gets the exit status', async () => {
    const moduleUrl = new URL('./process-driver.js', import.meta.url).href;
    const running = config({ command: ['sh', '-c', 'trap "exit 5" TERM; echo ready; while :; do sleep 1 & wait $!; done'] });
    const quick = config({ command: ['sh', '-c', 'echo ready; while [ ! -e go ]; do sleep 0.05; done; exit 6'] });
    const code = `
      const { ProcessDriver } = await import(${JSON.stringify(moduleUrl)});
      const d = new ProcessDriver();
      const handles = [];
      for (const c of JSON.parse(process.argv[1])) handles.push(await d.start(c));
      process.stdout.write(JSON.stringify(handles) + '\\n');
      setInterval(() => {}, 1000);
    `;
    const agent = spawn(process.execPath, ['--input-type=module', '-e', code, JSON.stringify([running, quick])], { stdio: ['ignore', 'pipe', 'inherit'] });
    cleanups.push(() => {
      try {
        process.kill(agent.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    });
    let out = '';
    agent.stdout!.on('data', (b: Buffer) => (out += b.toString()));
    const line = await until(() => (out.includes('\n') ? out.split('\n')[0] : undefined), 10_000, 'the agent to print its handles');
    const [h1, h2] = JSON.parse(line) as [ProcessHandle, ProcessHandle];
    for (const h of [h1, h2]) {
      cleanups.push(async () => {
        const d = new ProcessDriver();
        await d.stop(h, 0);
        await d.destroy(h);
      });
    }
    await until(() => readLog(running, 'stdout').includes('ready') && readLog(quick, 'stdout').includes('ready'), 5000, 'both tasks ready');
    const exited = new Promise((r) => agent.once('exit', r));
    process.kill(agent.pid!, 'SIGKILL');
    await exited;

    // The second task finishes while no agent is running.
    mkdirSync(join(quick.dir, 'go'));
    await until(() => existsSync(join(quick.dir, 'exit')) && readFileSync(join(quick.dir, 'exit'), 'utf8') === '6\n', 5000, 'the exit file of the quick task');

    const restarted = new ProcessDriver();
    const r1 = await restarted.recover(h1);
    assert.ok(r1, 'the running task is recovered');
    assert.equal((r1 as ProcessHandle).pid, h1.pid);
    const s1 = await restarted.inspect(r1);
    assert.deepEqual(s1, { running: true, pid: h1.pid });
    assert.ok(alive(h1.pid!), 'its pid is unchanged');
    const w1 = restarted.wait(r1);
    await restarted.stop(r1, 5000);
    const e1 = await within(w1, 3000, 'wait() on the recovered handle');
    assert.equal(e1.exit_code, 5);
    assert.equal(e1.error, 'exit code 5');

    assert.equal(await restarted.recover(h2), undefined, 'the exited task is not recovered');
    const s2 = await restarted.inspect(h2);
    assert.equal(s2.running, false);
    assert.equal(s2.exit?.exit_code, 6);
    assert.equal(s2.exit?.error, 'exit code 6');
    const e2 = await within(restarted.wait(h2), 1000, 'wait() on the exited task');
    assert.equal(e2.exit_code, 6);
    await restarted.destroy(h1);
    await restarted.destroy(h2);
  });

  it('destroy kills processes the command left behind', async () => {
    for (const d of [driver, new ProcessDriver({ cgroupRoot: mkdtempSync(join(root, 'nocg-')) })]) {
      const cfg = config({ command: ['sh', '-c', 'sleep 300 & echo $!'] });
      const h = await d.start(cfg);
      const r = await within(d.wait(h), 5000, 'wait()');
      assert.equal(r.exit_code, 0);
      const left = Number(readLog(cfg, 'stdout').trim());
      assert.ok(alive(left), 'the background sleep outlived the command');
      await d.destroy(h);
      await until(() => !alive(left), 3000, `pid ${left} to be killed`);
    }
  });

  it('exec: in the task environment, with a timeout, and not on a stopped task', async () => {
    const wd = mkdtempSync(join(root, 'execwd-'));
    const cfg = config({ command: ['sleep', '60'], env: { V: 'task' }, workdir: wd });
    const h = await startTracked(cfg);
    const r = await driver.exec(h, ['sh', '-c', 'echo "$V $(pwd)"'], { timeoutMs: 5000 });
    assert.deepEqual(r, { exit_code: 0, stdout: `task ${wd}\n`, stderr: '' });
    // A background process keeping stdout open does not make exec hang.
    const bg = await within(driver.exec(h, ['sh', '-c', 'sleep 30 & echo started'], { timeoutMs: 5000 }), 3000, 'exec with a background process');
    assert.deepEqual(bg, { exit_code: 0, stdout: 'started\n', stderr: '' });
    const t0 = Date.now();
    await assert.rejects(driver.exec(h, ['sh', '-c', 'sleep 30'], { timeoutMs: 300 }), /did not finish within 300 ms and was killed/);
    assert.ok(Date.now() - t0 < 3000);
    await assert.rejects(driver.exec(h, ['nosuchcmd-yun'], { timeoutMs: 1000 }), /executable file not found in \$PATH/);
    await driver.stop(h, 1000);
    await assert.rejects(driver.exec(h, ['true'], { timeoutMs: 1000 }), /is not running/);
  });

  it('cgroups on this machine: limit files written, task and exec inside, removed by destroy', async (t) => {
    if (!requireOrSkip(t, isRoot(), 'needs root to create cgroups')) return;
    const support = await driver.cgroupSupport();
    if (!requireOrSkip(t, support.version !== 'none', `no usable cgroups: ${support.reason}`)) return;
    const fp = await driver.fingerprint();
    assert.equal(fp.attributes?.cgroups, support.version);
    assert.equal(fp.attributes?.root, 'true');
    const cfg = config({ command: ['sleep', '60'], limits: { cpu: 0.5, memory_bytes: 64 * 1024 * 1024, pids: 20 } });
    const h = await startTracked(cfg);
    assert.ok(h.cgroups);
    const rel = `/${cgroupParent}/${cfg.id}`;
    const procCgroup = readFileSync(`/proc/${h.pid}/cgroup`, 'utf8');
    const execOut = (await driver.exec(h, ['cat', '/proc/self/cgroup'], { timeoutMs: 5000 })).stdout;
    const read = (f: string) => readFileSync(f, 'utf8').trim();
    if (support.version === 'v1') {
      const cg = (c: string) => join('/sys/fs/cgroup', c, cgroupParent, cfg.id);
      assert.deepEqual(h.cgroups.dirs, ['memory', 'cpu', 'pids'].map(cg));
      assert.equal(read(join(cg('memory'), 'memory.limit_in_bytes')), String(64 * 1024 * 1024));
      const memsw = join(cg('memory'), 'memory.memsw.limit_in_bytes');
      if (existsSync(memsw)) assert.equal(read(memsw), String(64 * 1024 * 1024));
      assert.equal(read(join(cg('cpu'), 'cpu.cfs_period_us')), '100000');
      assert.equal(read(join(cg('cpu'), 'cpu.cfs_quota_us')), '50000');
      assert.equal(read(join(cg('pids'), 'pids.max')), '21', 'the limit plus one for the shim');
      for (const c of ['memory', 'cpu', 'pids']) {
        assert.match(procCgroup, new RegExp(`^\\d+:${c}:${rel}$`, 'm'), `task in the ${c} cgroup`);
        assert.match(execOut, new RegExp(`^\\d+:${c}:${rel}$`, 'm'), `exec in the ${c} cgroup`);
        assert.ok(read(join(cg(c), 'cgroup.procs')).split('\n').includes(String(h.shim_pid)));
      }
    } else {
      const dir = join('/sys/fs/cgroup', cgroupParent, cfg.id);
      assert.deepEqual(h.cgroups.dirs, [dir]);
      assert.equal(read(join(dir, 'memory.max')), String(64 * 1024 * 1024));
      assert.equal(read(join(dir, 'cpu.max')), '50000 100000');
      assert.equal(read(join(dir, 'pids.max')), '21');
      assert.match(procCgroup, new RegExp(`^0::${rel}$`, 'm'));
      assert.match(execOut, new RegExp(`^0::${rel}$`, 'm'));
    }
    await driver.stop(h, 1000);
    await driver.destroy(h);
    for (const d of h.cgroups.dirs) assert.equal(existsSync(d), false, `${d} removed`);
  });

  it('cgroup v2 layout (on a fake cgroup root): subtree_control, memory.max, cpu.max, pids.max', async (t) => {
    if (!requireOrSkip(t, isRoot(), 'cgroups are only used as root')) return;
    const fake = mkdtempSync(join(root, 'cg2-'));
    writeFileSync(join(fake, 'cgroup.controllers'), 'cpuset cpu io memory hugetlb pids rdma misc\n');
    writeFileSync(join(fake, 'cgroup.subtree_control'), '');
    const d = new ProcessDriver({ cgroupRoot: fake });
    const fp = await d.fingerprint();
    assert.equal(fp.attributes?.cgroups, 'v2');
    assert.equal(fp.attributes?.cgroup_controllers, 'memory,cpu,pids');
    const cfg = config({ command: ['true'], limits: { cpu: 1.5, memory_bytes: 100 * 1024 * 1024, pids: 50 } });
    const h = (await d.start(cfg)) as ProcessHandle;
    // Plain files, not a kernel cgroup: wait, then check and remove by hand (no stop/destroy on fake pids).
    await within(d.wait(h), 5000, 'wait()');
    const dir = join(fake, cgroupParent, cfg.id);
    assert.deepEqual(h.cgroups, { version: 'v2', dirs: [dir], memory_dir: dir });
    for (const level of [fake, join(fake, cgroupTop), join(fake, cgroupParent)]) {
      assert.equal(readFileSync(join(level, 'cgroup.subtree_control'), 'utf8'), '+memory +cpu +pids', `subtree_control of ${level}`);
    }
    assert.equal(readFileSync(join(dir, 'memory.max'), 'utf8'), String(100 * 1024 * 1024));
    assert.equal(readFileSync(join(dir, 'cpu.max'), 'utf8'), '150000 100000');
    assert.equal(readFileSync(join(dir, 'pids.max'), 'utf8'), '51');
    assert.equal(readFileSync(join(dir, 'cgroup.procs'), 'utf8'), String(h.shim_pid));
  });

  it('without cgroups the task runs unlimited and the fingerprint says why', async () => {
    const d = new ProcessDriver({ cgroupRoot: mkdtempSync(join(root, 'none-')) });
    const fp = await d.fingerprint();
    assert.equal(fp.available, true);
    assert.equal(fp.attributes?.cgroups, 'none');
    assert.ok((fp.attributes?.cgroups_reason ?? '').length > 10, `reason: ${fp.attributes?.cgroups_reason}`);
    const cfg = config({ command: ['sh', '-c', 'echo ok'], limits: { cpu: 1, memory_bytes: 32 * 1024 * 1024, pids: 5 } });
    const { h, r } = await run(cfg, d);
    assert.equal(r.exit_code, 0);
    assert.equal((h as ProcessHandle).cgroups, null);
  });

  it('user: runs the command as another user', async (t) => {
    if (!requireOrSkip(t, isRoot(), 'needs root to switch users')) return;
    const cfg = config({ command: ['id', '-u'], user: 'nobody', workdir: '/' });
    const { r } = await run(cfg);
    assert.equal(r.exit_code, 0);
    assert.equal(readLog(cfg, 'stdout'), '65534\n');
    await assert.rejects(driver.start(config({ user: 'no-such-user-yun' })), /user "no-such-user-yun" does not exist/);
  });

  it('formatBytes says limits the way people write them', () => {
    assert.equal(formatBytes(32 * 1024 * 1024), '32MiB');
    assert.equal(formatBytes(1536 * 1024 * 1024), '1536MiB');
    assert.equal(formatBytes(2 * 1024 ** 3), '2GiB');
    assert.equal(formatBytes(1000), '1000 bytes');
  });
});
