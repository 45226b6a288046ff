// Secrets and configs against a real `yun up`: a secret is sealed before it reaches the store,
// never returned, invisible to other projects; a container task reads it at its target from a
// tmpfs while no disk or log holds it; removal is refused while used; a new revision rolls the
// service out; and every secret still opens after the key is rotated.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile, execFileSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { Keyring } from '../src/secrets/keyring.js';
import { sealAad } from '../src/secrets/secret.js';
import { YUN, baseEnv, envFile, freePort, startManager, stopManager, type Manager } from './helpers/manager-process.js';
import { requireOrSkip } from './helpers/cloud.js';
import { waitFor } from './helpers/agents.js';
import { busyboxRootfs, staticBusybox } from '../src/images/testing/fixtures.js';
import { buildTinyVm, tinyVmSupport } from '../src/images/tinyvm/build.js';

const sha256 = (s: string) => createHash('sha256').update(s).digest('hex');
const hasRunc = () => { try { execFileSync('runc', ['--version'], { stdio: 'ignore' }); return true; } catch { return false; } };

interface Result { code: number; stdout: string; stderr: string }
function yun(args: string[], env: Record<string, string>, input?: string, timeout = 30_000): Promise<Result> {
  return new Promise((resolve) => {
    const p = execFile(process.execPath, [YUN, ...args], { env: { ...baseEnv(), ...env }, timeout }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : 1) : 0, stdout, stderr });
    });
    p.stdin!.end(input ?? '');
  });
}
const ok = (r: Result, what: string) => { assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stdout}${r.stderr}`); return r; };

/** Every file under dir, recursively. */
function files(dir: string): string[] {
  const out: string[] = [];
  for (const e of readdirSync(dir)) {
    const p = join(dir, e);
    const st = statSync(p, { throwIfNoEntry: false });
    if (!st) continue;
    if (st.isDirectory()) out.push(...files(p));
    else if (st.isFile()) out.push(p);
  }
  return out;
}

describe('secrets and configs', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'yun-secrets-'));
  const dataDir = join(tmp, 'data');
  let m: Manager;
  let admin: Record<string, string>;
  // Text that cannot occur by chance, as the user's file holds it.
  const secret = `s3cr3t-${randomBytes(24).toString('hex')}`;
  const secretFile = join(tmp, 'db-password');
  /** db-password's content now (a test gives it a new revision). */
  let dbPassword = secret;

  // Neither the text nor its base64 (what the API carried) may be found on disk or in a log.
  const needles = [Buffer.from(secret), Buffer.from(Buffer.from(secret).toString('base64'))];
  const diskHits = () => {
    const hits: string[] = [];
    for (const f of files(dataDir)) {
      const bytes = readFileSync(f);
      if (needles.some((n) => bytes.includes(n))) hits.push(f);
    }
    if (needles.some((n) => m.output().includes(n.toString()))) hits.push('the manager log');
    return hits;
  };
  const filesRoot = () => join('/dev/shm/yunstack', readFileSync(join(dataDir, 'node-id'), 'utf8').trim());

  before(async () => {
    writeFileSync(secretFile, secret);
    m = await startManager(dataDir, await freePort());
    admin = { ...envFile(join(dataDir, 'admin.env')), YUN_CONFIG_DIR: join(tmp, 'cfg-admin') };
  });
  after(async () => {
    // Tasks outlive their manager (it reattaches): remove what the tests left running first.
    if (m) {
      for (const svc of ['web', 'proc']) await yun(['service', 'rm', svc], admin);
      for (const srv of ['c1', 'vm1']) await yun(['server', 'rm', '--wait', srv], admin, undefined, 120_000);
      const nodeId = readFileSync(join(dataDir, 'node-id'), 'utf8').trim();
      const running = async () => (JSON.parse((await yun(['node', 'ps', nodeId, '--json', '-f', 'desired-state=running'], admin)).stdout || '{"tasks":[]}') as { tasks: unknown[] }).tasks.length;
      await waitFor('tasks to stop', async () => ((await running()) === 0 ? true : undefined), 30_000, 300).catch(() => undefined);
      await stopManager(m);
      rmSync(filesRoot(), { recursive: true, force: true });
    }
    rmSync(tmp, { recursive: true, force: true });
  });

  it('creates a secret that no answer, file, log or audit entry shows', async () => {
    const id = ok(await yun(['secret', 'create', 'db-password', secretFile], admin), 'secret create').stdout.trim();
    assert.match(id, /^[a-z0-9]{20}$/);
    const inspect = JSON.parse(ok(await yun(['secret', 'inspect', 'db-password'], admin), 'secret inspect').stdout) as Record<string, unknown>;
    assert.equal(inspect.name, 'db-password');
    assert.equal(inspect.size, secret.length);
    assert.ok(!('data' in inspect) && !('sealed' in inspect), `inspect shows too much: ${JSON.stringify(inspect)}`);
    const ls = ok(await yun(['secret', 'ls', '--json'], admin), 'secret ls').stdout;
    assert.ok(!ls.includes(secret) && !ls.includes('"ct"'));
    ok(await yun(['audit', 'ls', '--json'], admin), 'audit ls');
    const dup = await yun(['secret', 'create', 'db-password', secretFile], admin);
    assert.notEqual(dup.code, 0);
    assert.match(dup.stderr, /YUN_NAME_CONFLICT/);

    // Neither the text nor its base64 (what the API carried) is anywhere: the database, its WAL,
    // the image store, the agent's directory, the manager's log.
    assert.deepEqual(diskHits(), []);
    assert.equal(statSync(join(dataDir, 'secrets.key')).mode & 0o777, 0o600);
  });

  it('another project neither sees nor reads it; configs are shown', async () => {
    ok(await yun(['project', 'create', 'other'], admin), 'project create');
    ok(await yun(['user', 'create', 'bob', '--password-stdin', '--project', 'other', '--role', 'member'], admin, 'bob-password-123\n'), 'user create');
    const bob = { YUN_URL: admin.YUN_URL!, YUN_CACERT: admin.YUN_CACERT!, YUN_USERNAME: 'bob', YUN_PASSWORD: 'bob-password-123', YUN_PROJECT: 'other', YUN_CONFIG_DIR: join(tmp, 'cfg-bob') };
    assert.deepEqual(JSON.parse(ok(await yun(['secret', 'ls', '--json'], bob), 'bob secret ls').stdout), []);
    const id = JSON.parse(ok(await yun(['secret', 'inspect', 'db-password'], admin), 'inspect').stdout).id as string;
    for (const ref of ['db-password', id]) {
      const r = await yun(['secret', 'inspect', ref], bob);
      assert.equal(r.code, 5, `bob inspects ${ref}: exit ${r.code} ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /YUN_NOT_FOUND/);
      const rm = await yun(['secret', 'rm', ref], bob);
      assert.match(rm.stderr, /YUN_NOT_FOUND/);
    }
    // A config of the same name in bob's project is his own, and shown.
    const cfgFile = join(tmp, 'nginx.conf');
    writeFileSync(cfgFile, 'worker_processes 1;\n');
    ok(await yun(['config', 'create', 'db-password', cfgFile], bob), 'config create');
    const c = JSON.parse(ok(await yun(['config', 'inspect', 'db-password'], bob), 'config inspect').stdout) as { data: string };
    assert.equal(Buffer.from(c.data, 'base64').toString(), 'worker_processes 1;\n');
    assert.match(ok(await yun(['config', 'inspect', '--pretty', 'db-password'], bob), 'pretty').stdout, /worker_processes 1;/);
    const rot = await yun(['secret', 'rotate-key'], bob);
    assert.equal(rot.code, 4, `a member rotates the key: exit ${rot.code} ${rot.stderr}`);
    assert.match(rot.stderr, /YUN_FORBIDDEN/);
  });

  it('bad input gets a clear error and creates nothing', async () => {
    const empty = join(tmp, 'empty');
    writeFileSync(empty, '');
    const r1 = await yun(['secret', 'create', 'nothing', empty], admin);
    assert.match(r1.stderr, /cannot be empty[\s\S]*YUN_VALIDATION_FAILED/);
    const big = join(tmp, 'big');
    writeFileSync(big, randomBytes(600 * 1024));
    const r2 = await yun(['secret', 'create', 'big', big], admin);
    assert.notEqual(r2.code, 0);
    assert.match(r2.stderr, /YUN_(VALIDATION_FAILED|PAYLOAD_TOO_LARGE)/);
    const r3 = await yun(['secret', 'create', 'x', join(tmp, 'no-such-file')], admin);
    assert.equal(r3.code, 2);
    const names = (JSON.parse(ok(await yun(['secret', 'ls', '--json'], admin), 'ls').stdout) as { name: string }[]).map((s) => s.name);
    assert.deepEqual(names, ['db-password']);
  });

  it('a task reads its secret and config at their targets, from a tmpfs; nothing reaches a disk or a log', async (t) => {
    const why = 'needs root, runc and busybox-static';
    if (!requireOrSkip(t, process.getuid?.() === 0 && hasRunc() && staticBusybox() !== undefined, why)) return;
    const rootfs = join(tmp, 'rootfs');
    busyboxRootfs(rootfs, ['sh', 'cat', 'sleep', 'sha256sum', 'stat', 'grep', 'ls']);
    ok(await yun(['image', 'import-rootfs', rootfs, '--name', 'busybox:latest', '--cmd', 'sh'], admin), 'image import-rootfs');
    const cfg = join(tmp, 'app.conf');
    writeFileSync(cfg, 'listen 8080\n');
    ok(await yun(['config', 'create', 'app-conf', cfg], admin), 'config create');
    const bad = await yun(['service', 'create', '--name', 'nope', '--image', 'busybox', '--secret', 'no-such', '--', 'sleep', '60'], admin);
    assert.match(bad.stderr, /Secret "no-such" does not exist in this project[\s\S]*YUN_VALIDATION_FAILED/);
    ok(await yun(['service', 'create', '--name', 'web', '--image', 'busybox', '--secret', 'source=db-password,target=db,mode=0400,uid=0',
      '--config', 'source=app-conf,target=/etc/app.conf', '--detach=false', '--', 'sleep', '3600'], admin, undefined, 60_000), 'service create');
    const task = async () => {
      const ps = JSON.parse(ok(await yun(['service', 'ps', 'web', '--json'], admin), 'ps').stdout) as { id: string; desired_state: string; status: { state: string } }[];
      return ps.find((x) => x.desired_state === 'running' && x.status.state === 'running');
    };
    const exec = async (id: string, cmd: string) => ok(await yun(['task', 'exec', id, '--', 'sh', '-c', cmd], admin), `exec ${cmd}`).stdout;
    const t1 = (await task())!;
    assert.ok(t1, 'a running task');
    // The content is checked by its hash, so not even this test's output holds it.
    assert.equal((await exec(t1.id, 'sha256sum /run/secrets/db')).split(' ')[0], sha256(secret));
    assert.equal((await exec(t1.id, 'stat -c "%a %u" /run/secrets/db')).trim(), '400 0');
    assert.equal(await exec(t1.id, 'cat /etc/app.conf'), 'listen 8080\n');
    assert.match(await exec(t1.id, 'grep " /run/secrets/db " /proc/mounts'), /^\S+ \/run\/secrets\/db tmpfs ro[, ]/);

    // While it runs: not in the database, its WAL, the agent's directory, any log.
    assert.deepEqual(diskHits(), []);
    const files = readdirSync(join('/dev/shm/yunstack'));
    assert.ok(files.length > 0, 'the files live on the node\'s tmpfs');

    const rm = await yun(['secret', 'rm', 'db-password'], admin);
    assert.equal(rm.code, 6, `rm while used: exit ${rm.code} ${rm.stderr}`);
    assert.match(rm.stderr, /Secret "db-password" is used by service "web"[\s\S]*YUN_IN_USE/);
    const rmCfg = await yun(['config', 'rm', 'app-conf'], admin);
    assert.match(rmCfg.stderr, /Config "app-conf" is used by service "web"[\s\S]*YUN_IN_USE/);

    // A new revision rolls the service out: its new task reads the new content.
    const next = `n3xt-${randomBytes(16).toString('hex')}`;
    const nextFile = join(tmp, 'db-password-2');
    writeFileSync(nextFile, next);
    needles.push(Buffer.from(next), Buffer.from(Buffer.from(next).toString('base64')));
    assert.match(ok(await yun(['secret', 'update', 'db-password', nextFile], admin), 'secret update').stdout, /revision 2; rolling update of web/);
    dbPassword = next;
    const t2 = await waitFor('the rolled-out task', async () => { const x = await task(); return x && x.id !== t1.id ? x : undefined; }, 60_000, 300);
    assert.equal((await exec(t2.id, 'sha256sum /run/secrets/db')).split(' ')[0], sha256(next));
    assert.deepEqual(diskHits(), []);
    assert.ok(!existsSync(join(filesRoot(), t1.id)), 'the old task\'s files are gone');

    // Taken out of the service, it can go; the task's files go with the task.
    ok(await yun(['service', 'update', 'web', '--secret-rm', 'db-password', '--config-rm', 'app-conf', '--detach=false'], admin, undefined, 60_000), 'service update --secret-rm');
    ok(await yun(['service', 'rm', 'web'], admin), 'service rm');
    await waitFor('the task files to go', async () => (readdirSync(filesRoot()).length === 0 ? true : undefined), 30_000, 200);
    ok(await yun(['config', 'rm', 'app-conf'], admin), 'config rm');
  });

  it('a process task finds its secrets under $YUN_SECRETS_DIR', async () => {
    ok(await yun(['service', 'create', '--name', 'proc', '--secret', 'db-password', '--detach=false', '--',
      'sh', '-c', 'sha256sum "$YUN_SECRETS_DIR/db-password"; stat -c "%a" "$YUN_SECRETS_DIR/db-password"; sleep 3600'], admin, undefined, 60_000), 'service create');
    const logs = await waitFor('its output', async () => {
      const out = (await yun(['service', 'logs', 'proc'], admin)).stdout;
      return /\n?444\s*$/m.test(out) ? out : undefined;
    }, 30_000, 200);
    assert.ok(logs.includes(sha256(dbPassword)), logs);
    assert.deepEqual(diskHits(), []);
    ok(await yun(['service', 'rm', 'proc'], admin), 'service rm');
    await waitFor('the task files to go', async () => (readdirSync(filesRoot()).length === 0 ? true : undefined), 30_000, 200);
  });

  it('servers receive their secrets at every boot: a system container (oci) on a tmpfs, a VM (qemu) through a seed on a tmpfs', async (t) => {
    const has = (bin: string) => { try { execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'pipe' }); return true; } catch { return false; } };
    const missing = [process.getuid?.() !== 0 && 'root', !hasRunc() && 'runc', staticBusybox() === undefined && 'busybox-static', !has('qemu-system-x86_64') && 'qemu-system-x86',
      !has('qemu-img') && 'qemu-utils', !has('mkfs.vfat') && 'dosfstools', !has('mcopy') && 'mtools'].filter(Boolean);
    const tv = missing.length ? { ok: true as const } : await tinyVmSupport();
    if (!tv.ok) missing.push(tv.reason);
    if (!requireOrSkip(t, missing.length === 0, `needs ${missing.join(', ')}`)) return;
    const tiny = await buildTinyVm();
    ok(await yun(['image', 'import', '--disk-format', 'qcow2', '--kernel', tiny.kernel, '--initrd', tiny.initrd, '--cmdline', tiny.cmdline, '--min-ram', '128', '--name', 'tinyvm', tiny.disk], admin, undefined, 120_000), 'image import tinyvm');
    const rootfs = join(tmp, 'rootfs-srv');
    busyboxRootfs(rootfs, ['sh', 'cat', 'sleep', 'sha256sum', 'stat', 'grep', 'cut', 'head', 'cp', 'chmod', 'mkdir']);
    ok(await yun(['image', 'import-rootfs', rootfs, '--name', 'busybox-srv', '--cmd', 'sh'], admin), 'image import-rootfs');
    const ud = join(tmp, 'show-secret.sh');
    writeFileSync(ud, '#!/bin/sh\necho "YUN-SECRET $(sha256sum /run/secrets/db-password | cut -d" " -f1) $(stat -c "%a %u %g" /run/secrets/db-password)"\n');
    const consoleLog = async (name: string) => ok(await yun(['server', 'console-log', name], admin), 'console-log').stdout;
    const show = async (name: string) => JSON.parse(ok(await yun(['server', 'show', name, '--json'], admin), 'show').stdout) as { id: string; status: string; secrets?: { source: string; target: string; mode: number }[] };
    const bad = await yun(['server', 'create', '--flavor', 'm1.tiny', '--image', 'busybox-srv', '--network', 'none', '--secret', 'no-such', 'nope'], admin);
    assert.match(bad.stderr, /Secret "no-such" does not exist in this project[\s\S]*YUN_VALIDATION_FAILED/);
    const badTarget = await yun(['server', 'create', '--flavor', 'm1.tiny', '--image', 'busybox-srv', '--network', 'none', '--secret', 'source=db-password,target=/run/../etc/x', 'nope'], admin);
    assert.match(badTarget.stderr, /not a plain file path[\s\S]*YUN_VALIDATION_FAILED/);
    assert.equal(JSON.parse(ok(await yun(['server', 'ls', '--json'], admin), 'ls').stdout).length, 0, 'bad input created nothing');

    for (const [name, image] of [['c1', 'busybox-srv'], ['vm1', 'tinyvm']] as const) {
      ok(await yun(['server', 'create', '--flavor', 'm1.tiny', '--image', image, '--network', 'none', '--user-data', ud, '--secret', 'source=db-password,mode=0400,uid=0,gid=0', '--wait', name], admin, undefined, 180_000), `server create ${name}`);
    }
    for (const name of ['c1', 'vm1']) {
      const line = await waitFor(`${name} prints its secret's hash`, async () => /YUN-SECRET (\S+) (\d+ \d+ \d+)/.exec(await consoleLog(name)) ?? undefined, 90_000, 500);
      assert.equal(line[1], sha256(dbPassword), `${name} reads the secret at /run/secrets/db-password`);
      assert.equal(line[2], '400 0 0', `${name}: the mode and owner asked for`);
    }
    const c1 = await show('c1');
    const vm1 = await show('vm1');
    assert.deepEqual(c1.secrets?.map((r) => [r.source, r.target, r.mode]), [['db-password', '/run/secrets/db-password', 0o400]]);
    assert.match(ok(await yun(['server', 'show', 'vm1'], admin), 'show').stdout, /secrets:\s+db-password → \/run\/secrets\/db-password \(0400\)/);
    // The container has it from the node's tmpfs (a read-only bind mount); the VM's seed is on it too.
    const inC1 = (cmd: string) => execFileSync('runc', ['--root', '/run/yunstack-runc', 'exec', c1.id, 'sh', '-c', cmd], { encoding: 'utf8' });
    assert.match(inC1('grep " /run/secrets/db-password " /proc/mounts'), /^\S+ \/run\/secrets\/db-password tmpfs ro[, ]/);
    assert.ok(existsSync(join(filesRoot(), vm1.id, 'seed.img')), 'the seed that carries the secret is on the tmpfs');
    assert.deepEqual(diskHits(), []);

    // Removal is refused while servers use it, naming them.
    const rm = await yun(['secret', 'rm', 'db-password'], admin);
    assert.equal(rm.code, 6);
    assert.match(rm.stderr, /Secret "db-password" is used by servers "c1", "vm1"[\s\S]*yun server rm[\s\S]*YUN_IN_USE/);

    // Every boot gets them again: stopped and started, both still have it.
    for (const name of ['c1', 'vm1']) {
      ok(await yun(['server', 'stop', '--wait', name], admin, undefined, 120_000), `stop ${name}`);
      ok(await yun(['server', 'start', '--wait', name], admin, undefined, 120_000), `start ${name}`);
    }
    assert.equal(inC1('sha256sum /run/secrets/db-password').split(' ')[0], sha256(dbPassword));
    await waitFor('the VM placed its files twice', async () => ((await consoleLog('vm1')).match(/YUN-GUEST files placed=1/g)?.length === 2 ? true : undefined), 90_000, 500);
    assert.deepEqual(diskHits(), []);

    for (const name of ['c1', 'vm1']) ok(await yun(['server', 'rm', '--wait', name], admin, undefined, 120_000), `rm ${name}`);
    assert.ok(!existsSync(join(filesRoot(), c1.id)) && !existsSync(join(filesRoot(), vm1.id)), 'the servers\' files go with them');
  });

  it('rotate-key re-seals every secret with a new key and drops the old one', async () => {
    ok(await yun(['secret', 'create', 'second', '-'], admin, 'another-value'), 'secret create from stdin');
    const before = Keyring.open(join(dataDir, 'secrets.key')).activeKid;
    const r = JSON.parse(ok(await yun(['secret', 'rotate-key', '--json'], admin), 'rotate-key').stdout) as { key_id: string; resealed: number; retired: string[] };
    assert.notEqual(r.key_id, before);
    assert.equal(r.resealed, 2);
    assert.deepEqual(r.retired, [before]);
    // Opened with the key file alone, as the agents' delivery will: both still read back.
    const ring = Keyring.open(join(dataDir, 'secrets.key'));
    assert.deepEqual(ring.kids(), [r.key_id]);
    const db = new Database(join(dataDir, 'yun.db'), { readonly: true, fileMustExist: true });
    try {
      const rows = db.prepare("SELECT id, name, data FROM objects WHERE kind = 'secret' ORDER BY name").all() as { id: string; name: string; data: string }[];
      const plain = rows.map((row) => {
        const d = JSON.parse(row.data) as { sealed: import('../src/secrets/keyring.js').Sealed };
        assert.equal(d.sealed.kid, r.key_id);
        return ring.unseal(d.sealed, sealAad('secret', row.id)).toString();
      });
      assert.deepEqual(plain, [dbPassword, 'another-value']);
      // A seal copied onto another secret does not open: it is bound to its object.
      const d0 = JSON.parse(rows[0]!.data) as { sealed: import('../src/secrets/keyring.js').Sealed };
      assert.throws(() => ring.unseal(d0.sealed, sealAad('secret', rows[1]!.id)));
    } finally {
      db.close();
    }
    ok(await yun(['secret', 'rm', 'second'], admin), 'secret rm');
  });
});
