// End-to-end tests of the real CLI (`node bin/yun.js …` as child processes): `yun up` in a temp data
// dir, admin.env, `yun node ls`, the data-dir lock, recovery after kill -9, exit codes, --help on every
// command and `yun join-token`. Every process started here is killed by pid in `after`, and every
// temp dir is removed.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// dist/test/cli.test.js → the checkout root.
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const YUN = join(ROOT, 'bin', 'yun.js');
const NODE_FIELDS = ['id', 'hostname', 'address', 'role', 'availability', 'status', 'labels', 'resources', 'drivers', 'version', 'last_heartbeat'];

/** The environment every child starts from: no YUN_* settings and no proxies from the caller. */
function baseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (k.startsWith('YUN_') || /^(https?|all|no)_proxy$/i.test(k)) continue;
    env[k] = v;
  }
  return env;
}

/** `source admin.env`: the exported variables of an env file. */
function parseEnvFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of readFileSync(path, 'utf8').split('\n')) {
    const m = /^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2]!.trim();
    if ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'"))) v = v.slice(1, -1);
    out[m[1]!] = v;
  }
  return out;
}

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
}

const children = new Set<ChildProcess>();
const tempDirs: string[] = [];

function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), prefix));
  tempDirs.push(d);
  return d;
}

function killChild(p: ChildProcess): void {
  if (p.pid !== undefined && p.exitCode === null && p.signalCode === null) {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* already gone */ }
  }
}

/** Run `yun ARGS` to completion (killed by pid after `timeoutMs`). */
function yun(args: string[], opts: { env?: Record<string, string>; input?: string; timeoutMs?: number } = {}): Promise<Result> {
  const t0 = Date.now();
  return new Promise((resolvePromise, reject) => {
    const p = spawn(process.execPath, [YUN, ...args], { cwd: ROOT, env: { ...baseEnv(), ...(opts.env ?? {}) }, stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(p);
    let stdout = '';
    let stderr = '';
    p.stdout!.setEncoding('utf8').on('data', (d: string) => { stdout += d; });
    p.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    const timer = setTimeout(() => {
      killChild(p);
      reject(new Error(`yun ${args.join(' ')} did not finish in ${opts.timeoutMs ?? 20_000} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, opts.timeoutMs ?? 20_000);
    p.on('error', (e) => { clearTimeout(timer); reject(e); });
    p.on('close', (code, signal) => {
      clearTimeout(timer);
      children.delete(p);
      resolvePromise({ code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
    p.stdin!.end(opts.input ?? '');
  });
}

function ok(r: Result, what: string): Result {
  assert.equal(r.code, 0, `${what} exited ${r.code}${r.signal ? ` (${r.signal})` : ''}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  return r;
}

interface Up {
  proc: ChildProcess;
  pid: number;
  url: string;
  ms: number;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Start `yun up` and wait (at most `deadlineMs` from spawn) for its `API:` line. */
function startUp(dataDir: string, deadlineMs: number, env: Record<string, string> = {}): Promise<Up> {
  const t0 = Date.now();
  const p = spawn(process.execPath, [YUN, 'up', '--data-dir', dataDir, '--listen', '127.0.0.1:0'], { cwd: ROOT, env: { ...baseEnv(), ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(p);
  let stdout = '';
  let stderr = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => p.on('close', (code, signal) => { children.delete(p); r({ code, signal }); }));
  return new Promise((resolvePromise, reject) => {
    let done = false;
    const finish = (e?: Error, up?: Up) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (e) { killChild(p); reject(e); } else resolvePromise(up!);
    };
    const timer = setTimeout(() => finish(new Error(`yun up printed no API line within ${deadlineMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`)), deadlineMs);
    p.stdout!.setEncoding('utf8').on('data', (d: string) => {
      stdout += d;
      const m = /^\s*API:\s+(\S+)\s*$/m.exec(stdout);
      if (m) finish(undefined, { proc: p, pid: p.pid!, url: m[1]!, ms: Date.now() - t0, stdout: () => stdout, stderr: () => stderr, exited });
    });
    p.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
    p.on('error', (e) => finish(e));
    void exited.then(({ code, signal }) => finish(new Error(`yun up exited (${code ?? signal}) before printing its API line\nstdout: ${stdout}\nstderr: ${stderr}`)));
  });
}

/** Poll `cond` until true, or fail at the deadline. */
async function waitFor(what: string, cond: () => boolean, timeoutMs: number, detail: () => string = () => ''): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}\n${detail()}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function freePortThatNobodyListensOn(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

async function pool<T>(items: T[], n: number, fn: (x: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(n, items.length) }, async () => {
    while (next < items.length) await fn(items[next++]!);
  }));
}

/** Top-level words of the `Commands:` section of a commander help text (without `help`). */
function commandsIn(help: string): string[] {
  const i = help.indexOf('\nCommands:\n');
  if (i < 0) return [];
  const out: string[] = [];
  for (const line of help.slice(i + '\nCommands:\n'.length).split('\n')) {
    if (line.trim() === '') break;
    const m = /^ {2}([A-Za-z][\w-]*)/.exec(line);
    if (m && m[1] !== 'help') out.push(m[1]!);
  }
  return out;
}

process.on('exit', () => { for (const p of children) killChild(p); });

describe('yun CLI end to end', () => {
  let dataDir: string;
  let first: Up;
  let second: Up | undefined;
  let adminEnv: Record<string, string>;
  /** Env for admin commands: admin.env plus a private token cache. */
  let env: Record<string, string>;
  let nodeId: string;
  const alicePassword = 'alice-password-1';

  before(() => {
    dataDir = tempDir('yun-cli-data-');
  });

  after(async () => {
    for (const p of [...children]) killChild(p);
    await Promise.all([first?.exited, second?.exited].filter(Boolean));
    const { removeAgentDir } = await import('./helpers/agents.js');
    for (const d of tempDirs) await removeAgentDir(d); // also the nftables table of a killed `yun up`
  });

  it('yun up prints the API URL within 3 s of spawn and writes DIR/admin.env (0600)', async () => {
    first = await startUp(dataDir, 3000);
    assert.match(first.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    // The banner goes on after the API line: it names the env file to source.
    const sourceLine = `source ${join(dataDir, 'admin.env')}`;
    await waitFor(`"${sourceLine}" on yun up's stdout`, () => first.stdout().includes(sourceLine), 5000, () => first.stdout());
    const envPath = join(dataDir, 'admin.env');
    assert.ok(existsSync(envPath));
    assert.equal(statSync(envPath).mode & 0o777, 0o600, 'admin.env is not mode 0600');
    adminEnv = parseEnvFile(envPath);
    for (const k of ['YUN_URL', 'YUN_CACERT', 'YUN_USERNAME', 'YUN_PASSWORD', 'YUN_PROJECT']) assert.ok(adminEnv[k], `admin.env has no ${k}`);
    assert.equal(adminEnv.YUN_URL, first.url);
    assert.ok(existsSync(adminEnv.YUN_CACERT!), `YUN_CACERT ${adminEnv.YUN_CACERT} does not exist`);
    env = { ...adminEnv, YUN_CONFIG_DIR: tempDir('yun-cli-config-') };
  });

  it('yun node ls shows this machine Ready and Manager (tab-separated, no header, when piped)', async () => {
    const r = ok(await yun(['node', 'ls'], { env }), 'yun node ls');
    const lines = r.stdout.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, `one node expected:\n${r.stdout}`);
    const cols = lines[0]!.split('\t');
    assert.ok(cols.length >= 5, `not tab-separated: ${JSON.stringify(lines[0])}`);
    assert.notEqual(cols[0]!.toUpperCase(), 'ID', 'piped output has a header');
    assert.ok(cols.includes('Ready'), `no Ready in ${JSON.stringify(cols)}`);
    assert.ok(cols.includes('Manager'), `no Manager in ${JSON.stringify(cols)}`);
    assert.ok(cols.includes(hostname()), `no hostname ${hostname()} in ${JSON.stringify(cols)}`);
  });

  it('yun node ls --json has the documented fields', async () => {
    const r = ok(await yun(['node', 'ls', '--json'], { env }), 'yun node ls --json');
    const nodes = JSON.parse(r.stdout) as Record<string, unknown>[];
    assert.ok(Array.isArray(nodes));
    assert.equal(nodes.length, 1);
    const n = nodes[0]!;
    for (const f of NODE_FIELDS) assert.ok(f in n, `node --json has no field ${f}: ${Object.keys(n).join(', ')}`);
    assert.equal(n.role, 'manager');
    assert.equal(n.status, 'ready');
    assert.equal(n.availability, 'active');
    assert.equal(n.hostname, hostname());
    assert.equal(typeof n.version, 'number');
    nodeId = n.id as string;
  });

  it('a second yun up on the same data dir fails at once: exit 6, the first one\'s pid, YUN_DATA_DIR_LOCKED', async () => {
    const r = await yun(['up', '--data-dir', dataDir, '--listen', '127.0.0.1:0'], { timeoutMs: 10_000 });
    assert.equal(r.code, 6, `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
    assert.ok(r.ms < 2000, `took ${r.ms} ms to fail`);
    assert.match(r.stderr, /YUN_DATA_DIR_LOCKED/);
    assert.match(r.stderr, new RegExp(`\\b${first.pid}\\b`), `stderr does not name pid ${first.pid}: ${r.stderr}`);
    assert.doesNotMatch(r.stdout, /API:/);
    // The first one is unharmed.
    ok(await yun(['node', 'ls'], { env }), 'yun node ls after the refused second start');
  });

  it('project and user created with the CLI; the user can log in to the project', async () => {
    const p = ok(await yun(['project', 'create', 'demo'], { env }), 'yun project create demo');
    assert.match(p.stdout.trim(), /^\S+$/);
    const u = ok(await yun(['user', 'create', 'alice', '--password-stdin', '--project', 'demo', '--role', 'member'], { env, input: `${alicePassword}\n` }), 'yun user create alice');
    assert.match(u.stdout.trim(), /^\S+$/);
    const aliceEnv = { YUN_URL: adminEnv.YUN_URL!, YUN_CACERT: adminEnv.YUN_CACERT!, YUN_USERNAME: 'alice', YUN_PASSWORD: alicePassword, YUN_PROJECT: 'demo', YUN_CONFIG_DIR: tempDir('yun-cli-alice-') };
    const ls = ok(await yun(['project', 'ls', '--json'], { env: aliceEnv }), 'yun project ls as alice');
    assert.deepEqual((JSON.parse(ls.stdout) as { name: string }[]).map((x) => x.name), ['demo']);
  });

  it('after kill -9, yun up on the same data dir comes up with the lock recovered and every object intact', async () => {
    process.kill(first.pid, 'SIGKILL');
    const gone = await first.exited;
    assert.equal(gone.signal, 'SIGKILL');
    second = await startUp(dataDir, 10_000);
    assert.match(second.url, /^https:\/\/127\.0\.0\.1:\d+$/);
    const after = parseEnvFile(join(dataDir, 'admin.env'));
    assert.equal(after.YUN_PASSWORD, adminEnv.YUN_PASSWORD, 'the admin password changed across the restart');
    assert.equal(after.YUN_URL, second.url, 'admin.env does not point at the new URL');
    // A fresh token cache, so that the admin.env password itself is checked.
    const env2 = { ...after, YUN_CONFIG_DIR: tempDir('yun-cli-config2-') };
    const projects = JSON.parse(ok(await yun(['project', 'ls', '--json'], { env: env2 }), 'yun project ls').stdout) as { name: string }[];
    assert.deepEqual(projects.map((x) => x.name).sort(), ['admin', 'demo']);
    const users = JSON.parse(ok(await yun(['user', 'ls', '--json'], { env: env2 }), 'yun user ls').stdout) as { name: string }[];
    assert.ok(users.some((x) => x.name === 'alice'), `alice is gone: ${users.map((x) => x.name).join(', ')}`);
    const nodes = JSON.parse(ok(await yun(['node', 'ls', '--json'], { env: env2 }), 'yun node ls').stdout) as { id: string; status: string }[];
    assert.deepEqual(nodes.map((n) => n.id), [nodeId], 'the node should keep its id across restarts');
    assert.equal(nodes[0]!.status, 'ready');
    // alice's password survived too.
    const aliceEnv = { YUN_URL: second.url, YUN_CACERT: after.YUN_CACERT!, YUN_USERNAME: 'alice', YUN_PASSWORD: alicePassword, YUN_PROJECT: 'demo', YUN_CONFIG_DIR: tempDir('yun-cli-alice2-') };
    ok(await yun(['project', 'ls', '--json'], { env: aliceEnv }), 'yun project ls as alice after the restart');
    env = env2;
  });

  it('exit codes: usage 2, not found 5, bad credentials 3, unreachable 7', async () => {
    const usage = await yun(['node', 'ls', '--no-such-flag'], { env });
    assert.equal(usage.code, 2, `exit ${usage.code}: ${usage.stderr}`);
    assert.match(usage.stderr, /YUN_USAGE/);
    const usage2 = await yun(['--no-such-flag'], { env });
    assert.equal(usage2.code, 2, `exit ${usage2.code}: ${usage2.stderr}`);
    assert.match(usage2.stderr, /YUN_USAGE/);
    const usage3 = await yun(['no-such-command'], { env });
    assert.equal(usage3.code, 2, `exit ${usage3.code}: ${usage3.stderr}`);

    const nf = await yun(['node', 'inspect', 'nosuch'], { env });
    assert.equal(nf.code, 5, `exit ${nf.code}: ${nf.stderr}`);
    assert.match(nf.stderr, /YUN_NOT_FOUND/);

    const bad = await yun(['node', 'ls'], { env: { ...env, YUN_PASSWORD: 'definitely-wrong', YUN_CONFIG_DIR: tempDir('yun-cli-bad-') } });
    assert.equal(bad.code, 3, `exit ${bad.code}: ${bad.stderr}`);
    assert.match(bad.stderr, /YUN_BAD_CREDENTIALS/);
    // The same config directory holds a token the right password obtained: a wrong password
    // must not ride on it, for a command or for `yun login`.
    ok(await yun(['node', 'ls'], { env }), 'node ls with the right password');
    const cachedBad = await yun(['node', 'ls'], { env: { ...env, YUN_PASSWORD: 'definitely-wrong' } });
    assert.equal(cachedBad.code, 3, `a wrong password reused the cached token: exit ${cachedBad.code}: ${cachedBad.stdout}${cachedBad.stderr}`);
    assert.match(cachedBad.stderr, /YUN_BAD_CREDENTIALS/);
    const loginBad = await yun(['login', '--password-stdin'], { env: { ...env, YUN_PASSWORD: '' }, input: 'definitely-wrong\n' });
    assert.equal(loginBad.code, 3, `yun login with a wrong password: exit ${loginBad.code}: ${loginBad.stdout}${loginBad.stderr}`);
    ok(await yun(['node', 'ls'], { env }), 'the right password still works after the failures');

    const port = await freePortThatNobodyListensOn();
    const down = await yun(['node', 'ls'], { env: { ...env, YUN_URL: `https://127.0.0.1:${port}`, YUN_CONFIG_DIR: tempDir('yun-cli-down-') } });
    assert.equal(down.code, 7, `exit ${down.code}: ${down.stderr}`);
    assert.match(down.stderr, /YUN_CONNECTION_FAILED/);
  });

  it('--help on every command and group exits 0', async () => {
    const top = ok(await yun(['--help']), 'yun --help');
    assert.match(top.stdout, /Usage: yun/);
    const names = commandsIn(top.stdout);
    for (const expected of ['up', 'version', 'status', 'login', 'project', 'user', 'role', 'quota', 'audit', 'node', 'join-token']) {
      assert.ok(names.includes(expected), `yun --help does not list ${expected}: ${names.join(', ')}`);
    }
    const paths: string[][] = [];
    await pool(names, 4, async (name) => {
      const r = ok(await yun([name, '--help']), `yun ${name} --help`);
      assert.match(r.stdout, new RegExp(`Usage: yun ${name}`));
      paths.push([name]);
      for (const sub of commandsIn(r.stdout)) paths.push([name, sub]);
    });
    const subs = paths.filter((p) => p.length === 2);
    assert.ok(subs.length >= 15, `only ${subs.length} subcommands found`);
    for (const expected of [['node', 'ls'], ['node', 'inspect'], ['node', 'update'], ['node', 'rm'], ['project', 'ls'], ['project', 'create'], ['user', 'create'], ['role', 'add'], ['quota', 'set'], ['audit', 'ls'], ['token', 'issue']]) {
      assert.ok(subs.some((p) => p.join(' ') === expected.join(' ')), `no yun ${expected.join(' ')}`);
    }
    await pool(subs, 4, async (p) => {
      const r = ok(await yun([...p, '--help']), `yun ${p.join(' ')} --help`);
      assert.match(r.stdout, new RegExp(`Usage: yun ${p.join(' ')}`));
      const h = ok(await yun([...p, '-h']), `yun ${p.join(' ')} -h`);
      assert.equal(h.stdout, r.stdout);
    });
  });

  it('yun join-token worker -q prints only the token; --json gives {role, token, command}', async () => {
    const fp = new X509Certificate(readFileSync(join(dataDir, 'pki', 'ca.crt'), 'utf8')).fingerprint256.replace(/:/g, '').toLowerCase();
    const q = ok(await yun(['join-token', 'worker', '-q'], { env }), 'yun join-token worker -q');
    const lines = q.stdout.split('\n').filter((l) => l !== '');
    assert.equal(lines.length, 1, `-q printed more than the token: ${JSON.stringify(q.stdout)}`);
    const token = lines[0]!;
    assert.match(token, /^\S+$/);
    assert.ok(token.includes(fp), `the token does not carry the CA fingerprint ${fp}: ${token}`);
    const j = ok(await yun(['join-token', 'worker', '--json'], { env }), 'yun join-token worker --json');
    const body = JSON.parse(j.stdout) as Record<string, string>;
    assert.deepEqual(Object.keys(body).sort(), ['command', 'role', 'token']);
    assert.equal(body.role, 'worker');
    assert.equal(body.token, token);
    assert.ok(body.command!.includes(token));
    const m = JSON.parse(ok(await yun(['join-token', 'manager', '--json'], { env }), 'yun join-token manager --json').stdout) as Record<string, string>;
    assert.equal(m.role, 'manager');
    assert.notEqual(m.token, token);
    const plain = ok(await yun(['join-token', 'worker'], { env }), 'yun join-token worker');
    assert.ok(plain.stdout.includes(body.command!), 'the plain output does not show the join command');
    const bad = await yun(['join-token', 'boss'], { env });
    assert.equal(bad.code, 2, `exit ${bad.code}: ${bad.stderr}`);
  });
});
