// A private multi-host LAN built from Linux network namespaces, for multi-host networking tests.
//
// Layout (prefix = 'ytl' + 4 random [a-z0-9]):
//   <prefix>-lan   holds bridge br0 (up) and one veth end per host (<prefix>p<N>, enslaved, up);
//                  connected to nothing else.
//   <prefix>-hN    eth0 (the other veth end) with <subnet>.<10+N>/24, up; lo up;
//                  net.ipv4.ip_forward=1; /etc/netns/<ns>/resolv.conf says `nameserver 127.0.0.1`
//                  (for whoever uses `ip netns exec` by hand).
// No namespace has a default route, so nothing inside can reach beyond the LAN. Every command the
// harness runs against a test host runs inside that host's namespace (`nsenter --net`, which unlike
// `ip netns exec` leaves /sys and the cgroup mounts alone; `ip -n` for setup).
//
// Ownership: before creating any namespace, a run claims its prefix with an owner file
// /run/ytl-netns/<prefix>.json (pid + start time). Leftovers are reaped at createLan only when
// their owner is gone AND `ip netns pids` is empty, so a concurrent run's namespaces (the -lan one
// never has processes) are never taken away from it.
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ExecResult { code: number | null; stdout: string; stderr: string }

export interface ExecOptions { timeoutMs?: number; env?: NodeJS.ProcessEnv; input?: string }

export interface TestHost {
  name: string;
  ns: string;
  address: string;
  /** Run a command inside this host's namespace (ip netns exec NS ...); never throws on non-zero exit; timeoutMs default 30000 then SIGKILL. */
  exec(cmd: string[], opts?: ExecOptions): Promise<ExecResult>;
  /** Start a long-running process in this namespace (detached, own process group), stdout/stderr captured, killed at cleanup. */
  spawn(cmd: string[], opts?: { env?: NodeJS.ProcessEnv; cwd?: string }): SpawnedProcess;
}

export interface SpawnedProcess {
  pid: number;
  child: ChildProcess;
  /** stdout and stderr interleaved as received (the last 8 MiB). */
  output(): string;
  /** Resolves with the exit code (null when killed by a signal) once the process has exited. */
  exited: Promise<number | null>;
  /** Signal the process group (default SIGTERM), SIGKILL it after graceMs (default 3000), wait for exit. */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<void>;
}

export interface TestLan {
  prefix: string;
  /** The /24 prefix, e.g. '172.31.250'. */
  subnet: string;
  lanNs: string;
  hosts: TestHost[];
  /** nftables: drop TCP traffic to `port` between hosts a and b, both directions (rules inside a's and b's namespaces, table `inet yuntest`). Returns an undo function. */
  blockTcp(a: TestHost, b: TestHost, port: number): Promise<() => Promise<void>>;
  cleanup(): Promise<void>;
}

const NS_RE = /^(ytl[a-z0-9]{4})-/;
const OWNER_DIR = '/run/ytl-netns';
const ETC_NETNS = '/etc/netns';
const OUTPUT_CAP = 8 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// small process helpers

function findBin(name: string, extra: string[] = []): string | undefined {
  const dirs = [...(process.env.PATH ?? '').split(':').filter(Boolean), '/usr/sbin', '/sbin', '/usr/bin', '/bin', ...extra];
  for (const d of dirs) {
    const p = join(d, name);
    try { accessSync(p, constants.X_OK); return p; } catch { /* next */ }
  }
  return undefined;
}

let ipBin: string | undefined;
function ip(): string {
  ipBin ??= findBin('ip');
  if (!ipBin) throw new Error('the `ip` command (iproute2) is not installed');
  return ipBin;
}
function nft(): string {
  const p = existsSync('/usr/sbin/nft') ? '/usr/sbin/nft' : findBin('nft');
  if (!p) throw new Error('the `nft` command (nftables) is not installed');
  return p;
}

// Children get SIGKILL if this (test) process dies, when util-linux setpriv is there.
let setprivBin: string | null | undefined;
function deathSigWrap(cmd: string[]): string[] {
  if (setprivBin === undefined) setprivBin = findBin('setpriv') ?? null;
  return setprivBin ? [setprivBin, '--pdeathsig', 'SIGKILL', '--', ...cmd] : cmd;
}

/** Run a command, collect output; never throws. Own process group, SIGKILLed as a group on timeout. */
function run(file: string, args: string[], opts: ExecOptions & { cwd?: string } = {}): Promise<ExecResult> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  return new Promise((resolve) => {
    let stdout = '';
    let stderr = '';
    let child: ChildProcess;
    try {
      child = spawn(file, args, { detached: true, stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...(opts.env ?? {}) }, cwd: opts.cwd });
    } catch (e) {
      resolve({ code: null, stdout: '', stderr: `spawn ${file} failed: ${(e as Error).message}` });
      return;
    }
    let done = false;
    let exitCode: number | null = null;
    let lingerTimer: NodeJS.Timeout | undefined;
    const finish = () => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (lingerTimer) clearTimeout(lingerTimer);
      child.stdout?.destroy();
      child.stderr?.destroy();
      resolve({ code: exitCode, stdout, stderr });
    };
    const timer = setTimeout(() => {
      stderr += `\n[netns harness: timed out after ${timeoutMs} ms, SIGKILL]`;
      killGroup(child.pid, 'SIGKILL');
    }, timeoutMs);
    child.stdout!.on('data', (c: Buffer) => { stdout += c.toString(); });
    child.stderr!.on('data', (c: Buffer) => { stderr += c.toString(); });
    child.stdin!.on('error', () => { /* the command did not read its input */ });
    child.on('error', (e) => { stderr += `${stderr ? '\n' : ''}spawn ${file} failed: ${e.message}`; finish(); });
    child.on('exit', (code) => {
      exitCode = code;
      // A background grandchild may keep the pipes open: do not wait for it for long.
      lingerTimer = setTimeout(finish, 500);
    });
    child.on('close', finish);
    child.stdin!.end(opts.input ?? '');
  });
}

/** Like run, but throws (with the output) on failure. For harness setup steps. */
async function must(file: string, args: string[], opts: ExecOptions = {}): Promise<string> {
  const r = await run(file, args, opts);
  if (r.code !== 0) throw new Error(`\`${[file, ...args].join(' ')}\` failed (exit ${r.code}): ${(r.stderr || r.stdout).trim()}`);
  return r.stdout;
}

function killGroup(pid: number | undefined, sig: NodeJS.Signals): void {
  if (!pid) return;
  try { process.kill(-pid, sig); } catch { /* gone, or not a group leader */ }
  try { process.kill(pid, sig); } catch { /* gone */ }
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}

/** Start time (clock ticks since boot) of a process, to tell a live owner from a reused pid. */
function startTimeOf(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
  } catch {
    return undefined;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------
// namespaces, ownership and reaping

async function listNetns(): Promise<string[]> {
  const r = await run(ip(), ['netns', 'list'], { timeoutMs: 10_000 });
  if (r.code !== 0) return [];
  return r.stdout.split('\n').map((l) => l.trim().split(/\s+/)[0] ?? '').filter(Boolean);
}

async function netnsPids(ns: string): Promise<number[]> {
  const r = await run(ip(), ['netns', 'pids', ns], { timeoutMs: 10_000 });
  if (r.code !== 0) return [];
  return r.stdout.split(/\s+/).filter(Boolean).map(Number).filter((n) => Number.isInteger(n) && n > 0 && n !== process.pid);
}

function netnsPidsSync(ns: string): number[] {
  try {
    return execFileSync(ip(), ['netns', 'pids', ns], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 5000 })
      .split(/\s+/).filter(Boolean).map(Number).filter((n) => Number.isInteger(n) && n > 0 && n !== process.pid);
  } catch {
    return [];
  }
}

const ownerFile = (prefix: string) => join(OWNER_DIR, `${prefix}.json`);

/** Claim a prefix for this process; false when another run holds it already. */
function claimPrefix(prefix: string): boolean {
  mkdirSync(OWNER_DIR, { recursive: true });
  try {
    writeFileSync(ownerFile(prefix), JSON.stringify({ pid: process.pid, start: startTimeOf(process.pid) }), { flag: 'wx' });
    return true;
  } catch {
    return false;
  }
}

function releasePrefix(prefix: string): void {
  rmSync(ownerFile(prefix), { force: true });
}

/** Is the run that claimed this prefix still running? */
function ownerAlive(prefix: string): boolean {
  let owner: { pid?: number; start?: string };
  try { owner = JSON.parse(readFileSync(ownerFile(prefix), 'utf8')) as { pid?: number; start?: string }; } catch { return false; }
  if (typeof owner.pid !== 'number' || !alive(owner.pid)) return false;
  return owner.start === undefined || startTimeOf(owner.pid) === owner.start;
}

function freshPrefix(): string {
  const chars = 'abcdefghijklmnopqrstuvwxyz0123456789';
  return 'ytl' + [...randomBytes(4)].map((b) => chars[b % chars.length]).join('');
}

/**
 * Delete namespaces (and /etc/netns dirs, owner files) left by earlier runs that were killed: names
 * matching /^ytl[a-z0-9]{4}-/, no process inside, and no live owner. Never throws.
 */
export async function reapStaleNamespaces(): Promise<string[]> {
  const reaped: string[] = [];
  try {
    const names = await listNetns();
    const present = new Set<string>();
    for (const ns of names) {
      const m = NS_RE.exec(ns);
      if (!m) continue;
      if (ownerAlive(m[1]!) || (await netnsPids(ns)).length > 0) { present.add(m[1]!); continue; }
      const r = await run(ip(), ['netns', 'del', ns], { timeoutMs: 10_000 });
      if (r.code === 0) reaped.push(ns);
      else { present.add(m[1]!); console.error(`netns harness: could not delete stale namespace ${ns}: ${r.stderr.trim()}`); }
      rmSync(join(ETC_NETNS, ns), { recursive: true, force: true });
    }
    // /etc/netns dirs and owner files whose namespaces are all gone and whose owner is dead.
    const left = new Set(await listNetns());
    for (const d of existsSync(ETC_NETNS) ? readdirSync(ETC_NETNS) : []) {
      const m = NS_RE.exec(d);
      if (m && !left.has(d) && !ownerAlive(m[1]!)) rmSync(join(ETC_NETNS, d), { recursive: true, force: true });
    }
    for (const f of existsSync(OWNER_DIR) ? readdirSync(OWNER_DIR) : []) {
      const prefix = f.replace(/\.json$/, '');
      if (/^ytl[a-z0-9]{4}$/.test(prefix) && !present.has(prefix) && !ownerAlive(prefix)) releasePrefix(prefix);
    }
  } catch (e) {
    console.error(`netns harness: reaping stale namespaces failed: ${(e as Error).message}`);
  }
  return reaped;
}

// Last-resort cleanup when the test process exits without having called cleanup() (synchronous).
interface LiveLan { prefix: string; namespaces: string[]; procs: Set<SpawnedProcess> }
const liveLans = new Set<LiveLan>();
let exitHookInstalled = false;
function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const lan of liveLans) {
      for (const p of lan.procs) killGroup(p.pid, 'SIGKILL');
      for (const ns of lan.namespaces) {
        for (const pid of netnsPidsSync(ns)) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
        try { execFileSync(ip(), ['netns', 'del', ns], { stdio: 'ignore', timeout: 5000 }); } catch { /* gone */ }
        try { rmSync(join(ETC_NETNS, ns), { recursive: true, force: true }); } catch { /* ignore */ }
      }
      try { releasePrefix(lan.prefix); } catch { /* ignore */ }
    }
  });
}

// ---------------------------------------------------------------------------------------------
// support probe

const supportCache = new Map<string, Promise<{ ok: true } | { ok: false; reason: string }>>();

/**
 * Whether this machine can build the LAN (root, `ip` available, netns + veth + bridge creatable);
 * with { nft: true } also whether nftables works inside a namespace (needed by blockTcp).
 */
export function lanSupport(opts: { nft?: boolean } = {}): Promise<{ ok: true } | { ok: false; reason: string }> {
  const key = opts.nft ? 'nft' : 'plain';
  let p = supportCache.get(key);
  if (!p) { p = probe(!!opts.nft); supportCache.set(key, p); }
  return p;
}

async function probe(withNft: boolean): Promise<{ ok: true } | { ok: false; reason: string }> {
  if (process.platform !== 'linux') return { ok: false, reason: `network namespaces need Linux (this is ${process.platform})` };
  if (process.getuid?.() !== 0) return { ok: false, reason: 'building a netns LAN needs root' };
  if (!findBin('ip')) return { ok: false, reason: 'the `ip` command (iproute2) is not installed' };
  if (withNft && !existsSync('/usr/sbin/nft') && !findBin('nft')) return { ok: false, reason: 'the `nft` command (nftables) is not installed' };
  let prefix = freshPrefix();
  for (let i = 0; i < 10 && !claimPrefix(prefix); i++) prefix = freshPrefix();
  const ns = `${prefix}-probe`;
  try {
    const steps: [string, string[]][] = [
      ['create a network namespace', ['netns', 'add', ns]],
      ['create a bridge in a namespace', ['-n', ns, 'link', 'add', 'br0', 'type', 'bridge']],
      ['create a veth pair in a namespace', ['-n', ns, 'link', 'add', `${prefix}p0`, 'type', 'veth', 'peer', 'name', `${prefix}q0`]],
      ['enslave a veth to a bridge', ['-n', ns, 'link', 'set', `${prefix}p0`, 'master', 'br0', 'up']],
    ];
    for (const [what, args] of steps) {
      const r = await run(ip(), args, { timeoutMs: 10_000 });
      if (r.code !== 0) return { ok: false, reason: `cannot ${what}: ${(r.stderr || r.stdout).trim() || `exit ${r.code}`}` };
    }
    if (withNft) {
      const r = await run(ip(), ['netns', 'exec', ns, nft(), 'list', 'ruleset'], { timeoutMs: 10_000 });
      if (r.code !== 0) return { ok: false, reason: `nftables does not work in a namespace: ${(r.stderr || r.stdout).trim()}` };
    }
    return { ok: true };
  } finally {
    await run(ip(), ['netns', 'del', ns], { timeoutMs: 10_000 });
    releasePrefix(prefix);
  }
}

// ---------------------------------------------------------------------------------------------
// the LAN

function spawnIn(ns: string, cmd: string[], procs: Set<SpawnedProcess>, opts: { env?: NodeJS.ProcessEnv; cwd?: string } = {}): SpawnedProcess {
  if (cmd.length === 0) throw new Error('spawn: empty command');
  const [bin, ...args] = inNs(ns, cmd);
  const child = spawn(bin!, args, {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...(opts.env ?? {}) },
    cwd: opts.cwd,
  });
  let out = '';
  const append = (c: Buffer) => {
    out += c.toString();
    if (out.length > OUTPUT_CAP) out = out.slice(out.length - OUTPUT_CAP);
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  const exited = new Promise<number | null>((resolve) => {
    child.once('exit', (code) => resolve(code));
    child.once('error', (e) => { append(Buffer.from(`\n[netns harness: spawn failed: ${e.message}]\n`)); resolve(null); });
  });
  let gone = false;
  void exited.then(() => { gone = true; });
  const p: SpawnedProcess = {
    pid: child.pid ?? -1,
    child,
    output: () => out,
    exited,
    async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 3000) {
      if (!gone && child.pid) {
        killGroup(child.pid, signal);
        const t = await Promise.race([exited.then(() => 'exited' as const), sleep(graceMs).then(() => 'grace' as const)]);
        if (t === 'grace') killGroup(child.pid, 'SIGKILL');
        await exited;
        // Anything else left in its group (children that outlived the leader) goes too.
        try { process.kill(-child.pid, 'SIGKILL'); } catch { /* none */ }
      }
      procs.delete(p);
    },
  };
  if (child.pid) procs.add(p);
  return p;
}

function execIn(ns: string, cmd: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  if (cmd.length === 0) return Promise.resolve({ code: null, stdout: '', stderr: 'exec: empty command' });
  const [bin, ...args] = inNs(ns, cmd);
  return run(bin!, args, opts);
}

/**
 * A command line that runs `cmd` inside the network namespace `ns`. `nsenter --net` enters only the
 * network namespace: unlike `ip netns exec`, it does not remount /sys, which would hide the cgroup
 * file systems (cgroup v1 mounts live under /sys/fs/cgroup) that agents and runc need.
 */
function inNs(ns: string, cmd: string[]): string[] {
  const nsenter = findBin('nsenter');
  if (nsenter) return [nsenter, `--net=/run/netns/${ns}`, '--', ...deathSigWrap(cmd)];
  return [ip(), 'netns', 'exec', ns, ...deathSigWrap(cmd)];
}

export async function createLan(hostCount: number, opts: { subnet?: string } = {}): Promise<TestLan> {
  const subnet = opts.subnet ?? '172.31.250';
  if (!/^(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.test(subnet) || subnet.split('.').some((o) => Number(o) > 255)) {
    throw new Error(`createLan: subnet must be a /24 prefix like '172.31.250', got '${subnet}'`);
  }
  if (!Number.isInteger(hostCount) || hostCount < 1 || hostCount > 240) throw new Error(`createLan: hostCount must be 1..240, got ${hostCount}`);

  await reapStaleNamespaces();
  const existing = new Set((await listNetns()).map((n) => NS_RE.exec(n)?.[1]).filter(Boolean));
  let prefix = '';
  for (let i = 0; i < 20 && !prefix; i++) {
    const cand = freshPrefix();
    if (!existing.has(cand) && claimPrefix(cand)) prefix = cand;
  }
  if (!prefix) throw new Error('createLan: could not claim a free namespace prefix');

  const lanNs = `${prefix}-lan`;
  const procs = new Set<SpawnedProcess>();
  const live: LiveLan = { prefix, namespaces: [], procs };
  liveLans.add(live);
  installExitHook();
  const hosts: TestHost[] = [];

  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> => {
    cleaning ??= (async () => {
      const log = (what: string, e: unknown) => console.error(`netns harness (${prefix}): ${what}: ${e instanceof Error ? e.message : String(e)}`);
      try {
        await Promise.all([...procs].map((p) => p.stop('SIGTERM', 3000).catch((e) => log(`stopping pid ${p.pid}`, e))));
      } catch (e) { log('stopping processes', e); }
      try {
        // Whatever else runs inside our namespaces was started there by this test.
        const left = new Set<number>();
        for (const ns of live.namespaces) for (const pid of await netnsPids(ns)) left.add(pid);
        for (const pid of left) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
        const deadline = Date.now() + 3000;
        while ([...left].some(alive) && Date.now() < deadline) await sleep(50);
        const stuck = [...left].filter(alive);
        if (stuck.length) log('processes still alive after SIGKILL', new Error(stuck.join(' ')));
      } catch (e) { log('killing leftover processes', e); }
      for (const ns of [...live.namespaces].reverse()) {
        try {
          const r = await run(ip(), ['netns', 'del', ns], { timeoutMs: 10_000 });
          if (r.code !== 0 && (await listNetns()).includes(ns)) log(`ip netns del ${ns}`, new Error(r.stderr.trim()));
        } catch (e) { log(`ip netns del ${ns}`, e); }
        try { rmSync(join(ETC_NETNS, ns), { recursive: true, force: true }); } catch (e) { log(`removing ${ETC_NETNS}/${ns}`, e); }
      }
      try { releasePrefix(prefix); } catch (e) { log('releasing prefix', e); }
      liveLans.delete(live);
    })().catch((e) => { console.error(`netns harness (${prefix}): cleanup failed: ${(e as Error).message}`); });
    return cleaning;
  };

  try {
    live.namespaces.push(lanNs);
    await must(ip(), ['netns', 'add', lanNs]);
    await must(ip(), ['-n', lanNs, 'link', 'set', 'lo', 'up']);
    await must(ip(), ['-n', lanNs, 'link', 'add', 'br0', 'type', 'bridge']);
    await must(ip(), ['-n', lanNs, 'link', 'set', 'br0', 'up']);

    for (let n = 1; n <= hostCount; n++) {
      const name = `h${n}`;
      const ns = `${prefix}-${name}`;
      const address = `${subnet}.${10 + n}`;
      const peer = `${prefix}p${n}`; // <= 7 + 1 + 3 = 11 chars, lives in the lan namespace only
      // resolv.conf before the namespace exists, so every `ip netns exec` bind-mounts it.
      mkdirSync(join(ETC_NETNS, ns), { recursive: true });
      writeFileSync(join(ETC_NETNS, ns, 'resolv.conf'), 'nameserver 127.0.0.1\n');
      live.namespaces.push(ns);
      await must(ip(), ['netns', 'add', ns]);
      await must(ip(), ['-n', ns, 'link', 'set', 'lo', 'up']);
      // Created inside the lan namespace with the peer placed straight into the host namespace:
      // no interface ever appears in the root namespace.
      await must(ip(), ['-n', lanNs, 'link', 'add', peer, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns]);
      await must(ip(), ['-n', lanNs, 'link', 'set', peer, 'master', 'br0']);
      await must(ip(), ['-n', lanNs, 'link', 'set', peer, 'up']);
      await must(ip(), ['-n', ns, 'addr', 'add', `${address}/24`, 'dev', 'eth0']);
      await must(ip(), ['-n', ns, 'link', 'set', 'eth0', 'up']);
      const sysctl = findBin('sysctl');
      if (sysctl) await must(ip(), ['netns', 'exec', ns, sysctl, '-q', '-w', 'net.ipv4.ip_forward=1']);
      else await must(ip(), ['netns', 'exec', ns, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv4/ip_forward']);

      hosts.push({
        name,
        ns,
        address,
        exec: (cmd, o) => execIn(ns, cmd, o),
        spawn: (cmd, o) => spawnIn(ns, cmd, procs, o),
      });
    }

    // veth carriers come up at once, but make sure before handing the LAN out.
    const deadline = Date.now() + 5000;
    for (const h of hosts) {
      for (;;) {
        const r = await run(ip(), ['-n', h.ns, '-o', 'link', 'show', 'dev', 'eth0'], { timeoutMs: 5000 });
        if (r.code === 0 && /LOWER_UP/.test(r.stdout)) break;
        if (Date.now() > deadline) throw new Error(`eth0 in ${h.ns} has no carrier: ${r.stdout}${r.stderr}`);
        await sleep(20);
      }
    }
  } catch (e) {
    await cleanup();
    throw e;
  }

  const blockTcp = async (a: TestHost, b: TestHost, port: number): Promise<() => Promise<void>> => {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`blockTcp: bad port ${port}`);
    if (!hosts.includes(a) || !hosts.includes(b)) throw new Error('blockTcp: hosts must belong to this LAN');
    const added: { ns: string; chain: 'in' | 'out'; handle: string }[] = [];
    const undo = async () => {
      for (const ns of new Set([a.ns, b.ns])) {
        for (const r of added.filter((x) => x.ns === ns)) {
          await run(ip(), ['netns', 'exec', ns, nft(), 'delete', 'rule', 'inet', 'yuntest', r.chain, 'handle', r.handle], { timeoutMs: 10_000 });
        }
        // Drop the table when no other block is left in it (the usual case: exactly what was asked).
        const list = await run(ip(), ['netns', 'exec', ns, nft(), 'list', 'table', 'inet', 'yuntest'], { timeoutMs: 10_000 });
        if (list.code === 0 && !/\bdrop\b/.test(list.stdout.replace(/^\s*type .*$/gm, ''))) {
          const d = await run(ip(), ['netns', 'exec', ns, nft(), 'delete', 'table', 'inet', 'yuntest'], { timeoutMs: 10_000 });
          if (d.code !== 0) throw new Error(`blockTcp undo: deleting table inet yuntest in ${ns} failed: ${d.stderr.trim()}`);
        }
      }
    };
    try {
      for (const [self, other] of [[a, b], [b, a]] as const) {
        await must(ip(), ['netns', 'exec', self.ns, nft(), '-f', '-'], {
          input: [
            'add table inet yuntest',
            'add chain inet yuntest in { type filter hook input priority -10; }',
            'add chain inet yuntest out { type filter hook output priority -10; }',
            '',
          ].join('\n'),
        });
        const rules: ['in' | 'out', string[]][] = [
          ['in', ['ip', 'saddr', other.address, 'tcp', 'dport', String(port), 'drop']],
          ['out', ['ip', 'daddr', other.address, 'tcp', 'dport', String(port), 'drop']],
        ];
        for (const [chain, rule] of rules) {
          const out = await must(ip(), ['netns', 'exec', self.ns, nft(), '--echo', '--handle', 'add', 'rule', 'inet', 'yuntest', chain, ...rule]);
          const handle = /# handle (\d+)/.exec(out)?.[1];
          if (!handle) throw new Error(`blockTcp: nft did not echo a rule handle: ${out}`);
          added.push({ ns: self.ns, chain, handle });
        }
      }
    } catch (e) {
      await undo().catch(() => undefined);
      throw e;
    }
    let undone = false;
    return async () => {
      if (undone) return;
      undone = true;
      await undo();
    };
  };

  return { prefix, subnet, lanNs, hosts, blockTcp, cleanup };
}
