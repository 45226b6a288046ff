/**
 * Builds "tinyvm", a tiny bootable VM image that behaves like a cloud image (cloud-init NoCloud seed
 * handling), offline from Debian packages: the `cloud-amd64` kernel (installed, or fetched with
 * `apt-get download` into a cache — never installed on the host), an initrd of busybox-static plus
 * the virtio / ACPI / FAT modules, and a 64 MiB ext4 root disk (made with `mke2fs -d`, no mounts or
 * loop devices) converted to qcow2. See README.md for the guest contract.
 *
 * Builds are cached (build.json records the inputs), crash-safe (everything is made in a temp dir
 * inside outDir and renamed into place, build.json last) and serialized between processes by a lock
 * file created with O_EXCL (a lock whose process is gone is taken over).
 */
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { constants as fsc, existsSync, readFileSync } from 'node:fs';
import { chmod, copyFile, mkdir, open, readdir, readFile, rename, rm, stat, symlink, unlink, writeFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findTool } from '../../util/which.js';
import { promisify } from 'node:util';
import { gunzipSync, gzip as gzipCb } from 'node:zlib';
import { CpioWriter } from './cpio.js';
import * as guest from './guest.js';

const gzip = promisify(gzipCb);

/** Bump when the builder's output changes for the same inputs (invalidates every cached build). */
export const TINYVM_BUILDER_VERSION = 1;
export const TINYVM_CMDLINE = `console=ttyS0 root=LABEL=${guest.ROOT_LABEL} rw quiet panic=-1`;
export const TINYVM_DISK_BYTES = 64 * 1024 * 1024;
export const TINYVM_MIN_RAM_BYTES = 128 * 1024 * 1024;
/** The Debian meta package whose dependency names the concrete kernel package. */
export const KERNEL_META_PACKAGE = 'linux-image-cloud-amd64';
/**
 * The modules the initrd loads (their dependencies are added, first): virtio (mmio for microvm, pci
 * for pc/q35), disks, network, console, the ACPI power button, and the seed's file systems.
 */
export const TINYVM_MODULES = [
  'virtio_mmio',
  'virtio_pci',
  'virtio_blk',
  'virtio_scsi',
  'sd_mod',
  'virtio_net',
  'virtio_console',
  'evdev',
  'button',
  'vfat',
  'nls_cp437',
  'nls_ascii',
  'nls_iso8859-1',
  'nls_utf8',
  'isofs',
];

export interface TinyVmBuild {
  dir: string;
  kernel: string;
  initrd: string;
  /** The root disk, qcow2. */
  disk: string;
  diskRaw: string;
  diskFormat: 'qcow2';
  kernelVersion: string;
  cmdline: string;
  minDiskBytes: number;
  minRamBytes: number;
}

export interface TinyVmBuildOptions {
  /** Default: `<project root>/build/tinyvm`. */
  outDir?: string;
  log?: (m: string) => void;
  /** Rebuild even when the cached build matches. */
  force?: boolean;
}

interface BuildInputs {
  builder: number;
  kernelVersion: string;
  busyboxSha256: string;
  guestSha256: string;
}

interface BuildRecord {
  inputs: BuildInputs;
  kernelFrom: string;
  modules: string[];
  files: Record<'kernel' | 'initrd' | 'disk' | 'diskRaw', { name: string; bytes: number }>;
  cmdline: string;
  minDiskBytes: number;
  minRamBytes: number;
  builtAt: string;
  buildMs: number;
}

const FILES = { kernel: 'vmlinuz', initrd: 'initrd.img', disk: 'disk.qcow2', diskRaw: 'disk.raw' } as const;
const BUSYBOX_CANDIDATES = ['/bin/busybox', '/usr/bin/busybox'];

/** The project's root: the nearest directory above this file with a package.json (works from dist/ and src/). */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}: cannot find the project root`);
    dir = up;
  }
}

export function defaultTinyVmDir(): string {
  return join(projectRoot(), 'build', 'tinyvm');
}

// TCG boots: see src/drivers/qemu/tcg.ts (the driver adds the argument to every TCG boot).
export { hostTscKhz, tcgKernelArgs } from '../../drivers/qemu/tcg.js';

// ---------------------------------------------------------------------------------------------
// tools

export { findTool };

/** Runs a tool with an argument array; failures carry the command line, the exit status and the tool's full output. */
export async function runTool(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<{ stdout: string; stderr: string }> {
  return new Promise((resolvePromise, reject) => {
    execFile(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException & { code?: unknown }).code;
        const status = typeof code === 'number' ? `exit status ${code}` : code === 'ENOENT' ? 'not found' : String(code ?? err.message);
        const out = [stderr.trim(), stdout.trim()].filter(Boolean).join('\n');
        reject(new Error(`${cmd} ${args.join(' ')} failed (${status})${out ? `:\n${out}` : ''}`));
      } else resolvePromise({ stdout, stderr });
    });
  });
}

// ---------------------------------------------------------------------------------------------
// ELF helpers: static binaries and module info, without kmod

interface ElfSection {
  name: string;
  offset: number;
  size: number;
}

function elfSections(buf: Buffer): ElfSection[] | undefined {
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2 || buf[5] !== 1) return undefined; // ELF64 LE only
  const shoff = Number(buf.readBigUInt64LE(0x28));
  const shentsize = buf.readUInt16LE(0x3a);
  const shnum = buf.readUInt16LE(0x3c);
  const shstrndx = buf.readUInt16LE(0x3e);
  if (shoff === 0 || shoff + shnum * shentsize > buf.length || shstrndx >= shnum) return undefined;
  const raw = [];
  for (let i = 0; i < shnum; i++) {
    const o = shoff + i * shentsize;
    raw.push({ nameOff: buf.readUInt32LE(o), offset: Number(buf.readBigUInt64LE(o + 0x18)), size: Number(buf.readBigUInt64LE(o + 0x20)) });
  }
  const strtab = raw[shstrndx];
  return raw.map((s) => {
    const start = strtab.offset + s.nameOff;
    const end = buf.indexOf(0, start);
    return { name: buf.toString('latin1', start, end < 0 ? start : end), offset: s.offset, size: s.size };
  });
}

/** True when `buf` is an ELF executable without a program interpreter (statically linked). */
export function isStaticElf(buf: Buffer): boolean {
  if (buf.length < 64 || buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2 || buf[5] !== 1) return false;
  const phoff = Number(buf.readBigUInt64LE(0x20));
  const phentsize = buf.readUInt16LE(0x36);
  const phnum = buf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    if (o + 4 > buf.length) return false;
    if (buf.readUInt32LE(o) === 3 /* PT_INTERP */) return false;
  }
  return phnum > 0;
}

/** The key=value strings of a kernel module's .modinfo section. */
export function moduleInfo(ko: Buffer): Map<string, string[]> {
  const info = new Map<string, string[]>();
  const sec = elfSections(ko)?.find((s) => s.name === '.modinfo');
  if (!sec) throw new Error('not an ELF64 kernel module with a .modinfo section');
  for (const item of ko.toString('latin1', sec.offset, sec.offset + sec.size).split('\0')) {
    const eq = item.indexOf('=');
    if (eq <= 0) continue;
    const k = item.slice(0, eq);
    info.set(k, [...(info.get(k) ?? []), item.slice(eq + 1)]);
  }
  return info;
}

const modName = (file: string) => file.replace(/\.ko(\.(xz|zst|gz))?$/, '').replaceAll('-', '_');

async function walk(dir: string, out: string[] = []): Promise<string[]> {
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) await walk(p, out);
    else if (/\.ko(\.(xz|zst|gz))?$/.test(e.name)) out.push(p);
  }
  return out;
}

async function readModule(path: string): Promise<Buffer> {
  if (path.endsWith('.ko')) return readFile(path);
  if (path.endsWith('.gz')) return gunzipSync(await readFile(path));
  const tool = path.endsWith('.xz') ? 'xz' : 'zstd';
  const bin = findTool(tool);
  if (!bin) throw new Error(`${path} is compressed with ${tool} and ${tool} is not installed (Debian package ${tool === 'xz' ? 'xz-utils' : 'zstd'})`);
  return new Promise((res, rej) => {
    execFile(bin, ['-dc', path], { encoding: 'buffer', maxBuffer: 256 * 1024 * 1024 }, (err, stdout, stderr) => {
      if (err) rej(new Error(`${bin} -dc ${path} failed: ${stderr.toString().trim() || err.message}`));
      else res(stdout);
    });
  });
}

export interface ResolvedModule {
  /** Module name with underscores (as modinfo's depends= names it). */
  name: string;
  /** The file name in the initrd (`NAME.ko`). */
  file: string;
  data: Buffer;
}

/** `roots` and their dependencies from `<modulesDir>/kernel`, dependencies first. */
export async function resolveModules(modulesDir: string, roots: string[]): Promise<ResolvedModule[]> {
  const index = new Map<string, string>();
  for (const p of await walk(join(modulesDir, 'kernel'))) index.set(modName(p.slice(p.lastIndexOf('/') + 1)), p);
  const out: ResolvedModule[] = [];
  const done = new Set<string>();
  const visiting = new Set<string>();
  const visit = async (raw: string, chain: string[]): Promise<void> => {
    const name = raw.replaceAll('-', '_');
    if (done.has(name)) return;
    if (visiting.has(name)) throw new Error(`module dependency cycle: ${[...chain, name].join(' -> ')}`);
    const path = index.get(name);
    if (!path) throw new Error(`kernel module ${name} not found under ${modulesDir}/kernel${chain.length ? ` (needed by ${chain.join(' -> ')})` : ''}`);
    visiting.add(name);
    const data = await readModule(path);
    const deps = (moduleInfo(data).get('depends') ?? []).flatMap((d) => d.split(',')).filter(Boolean);
    for (const d of deps) await visit(d, [...chain, name]);
    visiting.delete(name);
    done.add(name);
    out.push({ name, file: `${name}.ko`, data });
  };
  for (const r of roots) await visit(r, []);
  return out;
}

// ---------------------------------------------------------------------------------------------
// inputs

interface KernelSource {
  version: string;
  vmlinuz: string;
  /** /lib/modules/<version> (or its copy in the cache). */
  modulesDir: string;
  from: string;
}

const versionCompare = (a: string, b: string) => a.localeCompare(b, 'en', { numeric: true });

async function installedKernel(): Promise<KernelSource | undefined> {
  let names: string[] = [];
  try {
    names = await readdir('/boot');
  } catch {
    return undefined;
  }
  const versions = names
    .map((n) => /^vmlinuz-(.+-cloud-amd64)$/.exec(n)?.[1])
    .filter((v): v is string => !!v && existsSync(join('/lib/modules', v, 'kernel')))
    .sort(versionCompare);
  const v = versions.at(-1);
  return v ? { version: v, vmlinuz: join('/boot', `vmlinuz-${v}`), modulesDir: join('/lib/modules', v), from: 'installed' } : undefined;
}

function cachedKernelAt(cacheDir: string, version: string): KernelSource | undefined {
  const root = join(cacheDir, `linux-${version}`);
  const k: KernelSource = { version, vmlinuz: join(root, 'boot', `vmlinuz-${version}`), modulesDir: join(root, 'lib', 'modules', version), from: `cache (${root})` };
  return existsSync(join(root, '.complete')) && existsSync(k.vmlinuz) && existsSync(join(k.modulesDir, 'kernel')) ? k : undefined;
}

async function cachedKernel(cacheDir: string): Promise<KernelSource | undefined> {
  let names: string[] = [];
  try {
    names = await readdir(cacheDir);
  } catch {
    return undefined;
  }
  const versions = names
    .map((n) => /^linux-(.+)$/.exec(n)?.[1])
    .filter((v): v is string => !!v && !!cachedKernelAt(cacheDir, v))
    .sort(versionCompare);
  const v = versions.at(-1);
  return v ? cachedKernelAt(cacheDir, v) : undefined;
}

/** The concrete kernel package the meta package depends on (`linux-image-6.1.0-57-cloud-amd64`). */
export async function concreteKernelPackage(): Promise<string> {
  const aptCache = findTool('apt-cache');
  if (!aptCache) throw new Error('apt-cache is not available (not a Debian system?): cannot find the cloud kernel package');
  const { stdout } = await runTool(aptCache, ['depends', KERNEL_META_PACKAGE]);
  const m = /Depends:\s*(linux-image-\S+-cloud-amd64)\b/.exec(stdout);
  if (!m) throw new Error(`apt-cache depends ${KERNEL_META_PACKAGE} names no linux-image-*-cloud-amd64 package:\n${stdout.trim()}`);
  return m[1];
}

async function downloadKernel(cacheDir: string, log: (m: string) => void): Promise<KernelSource> {
  const pkg = await concreteKernelPackage();
  const version = pkg.slice('linux-image-'.length);
  const cached = cachedKernelAt(cacheDir, version);
  if (cached) return cached;
  const aptGet = findTool('apt-get');
  const dpkgDeb = findTool('dpkg-deb');
  if (!aptGet || !dpkgDeb) throw new Error(`apt-get and dpkg-deb are needed to fetch ${pkg} (or install it: apt-get install ${pkg})`);
  await mkdir(cacheDir, { recursive: true });
  const work = join(cacheDir, `.dl-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(work);
  try {
    let deb = (await readdir(cacheDir)).find((n) => n.startsWith(`${pkg}_`) && n.endsWith('.deb'));
    if (!deb) {
      const t = Date.now();
      log(`downloading ${pkg} (apt-get download) into ${cacheDir}`);
      await runTool(aptGet, ['download', pkg], { cwd: work });
      const got = (await readdir(work)).find((n) => n.startsWith(`${pkg}_`) && n.endsWith('.deb'));
      if (!got) throw new Error(`apt-get download ${pkg} finished but left no ${pkg}_*.deb in ${work}`);
      await rename(join(work, got), join(cacheDir, got));
      deb = got;
      log(`downloaded ${deb} in ${Date.now() - t} ms`);
    }
    const x = join(work, 'x');
    await runTool(dpkgDeb, ['-x', join(cacheDir, deb), x]);
    if (!existsSync(join(x, 'boot', `vmlinuz-${version}`))) throw new Error(`${deb} has no boot/vmlinuz-${version}`);
    // Debian's merged /usr moves lib/ to usr/lib/ in newer packages.
    if (!existsSync(join(x, 'lib', 'modules', version)) && existsSync(join(x, 'usr', 'lib', 'modules', version))) {
      await mkdir(join(x, 'lib'), { recursive: true });
      await rename(join(x, 'usr', 'lib', 'modules'), join(x, 'lib', 'modules'));
    }
    await writeFile(join(x, '.complete'), `${deb}\n`);
    const dest = join(cacheDir, `linux-${version}`);
    await rm(dest, { recursive: true, force: true });
    await rename(x, dest);
    // The extracted tree is the cache; the package is not needed any more.
    await rm(join(cacheDir, deb), { force: true });
  } finally {
    await rm(work, { recursive: true, force: true });
  }
  const k = cachedKernelAt(cacheDir, version);
  if (!k) throw new Error(`extracting ${pkg} into ${cacheDir} did not give a kernel and its modules`);
  return { ...k, from: `apt-get download ${pkg}` };
}

function staticBusybox(): { path: string; data: Buffer } | { reason: string } {
  const found: string[] = [];
  for (const p of BUSYBOX_CANDIDATES) {
    if (!existsSync(p)) continue;
    const data = readFileSync(p);
    if (isStaticElf(data)) return { path: p, data };
    found.push(p);
  }
  return {
    reason: found.length
      ? `${found.join(' and ')} ${found.length > 1 ? 'are' : 'is'} dynamically linked: install the Debian package busybox-static (not busybox)`
      : 'no busybox: install the Debian package busybox-static',
  };
}

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

function guestSha256(): string {
  return sha256(JSON.stringify({ files: guest.GUEST_FILES, modules: TINYVM_MODULES, cmdline: TINYVM_CMDLINE, disk: TINYVM_DISK_BYTES }));
}

async function mke2fsVersion(bin: string): Promise<string | undefined> {
  // `mke2fs -V` prints "mke2fs 1.47.0 (5-Feb-2023)" on stderr and exits 0.
  try {
    const { stdout, stderr } = await runTool(bin, ['-V']);
    return /mke2fs (\d+\.\d+(\.\d+)?)/.exec(stderr + stdout)?.[1];
  } catch (e) {
    return /mke2fs (\d+\.\d+(\.\d+)?)/.exec(String(e))?.[1];
  }
}

/** Whether this machine can build tinyvm, or exactly what is missing (Debian package names). */
export async function tinyVmSupport(opts: { outDir?: string } = {}): Promise<{ ok: true } | { ok: false; reason: string }> {
  const missing: string[] = [];
  const bb = staticBusybox();
  if ('reason' in bb) missing.push(bb.reason);
  const mke2fs = findTool('mke2fs');
  if (!mke2fs) missing.push('mke2fs is missing: install the Debian package e2fsprogs');
  else {
    const v = await mke2fsVersion(mke2fs);
    if (!v || versionCompare(v, '1.43') < 0) missing.push(`${mke2fs} (version ${v ?? 'unknown'}) has no -d option (needs 1.43 or later): install a newer e2fsprogs`);
  }
  if (!findTool('qemu-img')) missing.push('qemu-img is missing: install the Debian package qemu-utils');
  const outDir = resolve(opts.outDir ?? defaultTinyVmDir());
  if (!(await installedKernel()) && !(await cachedKernel(join(outDir, 'cache')))) {
    const noDl = ['apt-get', 'apt-cache', 'dpkg-deb'].filter((t) => !findTool(t));
    if (noDl.length) {
      missing.push(`no cloud kernel: none installed (/boot/vmlinuz-*-cloud-amd64 with /lib/modules/VERSION), none cached in ${join(outDir, 'cache')}, and ${noDl.join(', ')} ${noDl.length > 1 ? 'are' : 'is'} missing for apt-get download`);
    } else {
      try {
        await concreteKernelPackage();
      } catch (e) {
        missing.push(`no cloud kernel installed or cached, and apt cannot name one to download: ${(e as Error).message} (run apt-get update, or install ${KERNEL_META_PACKAGE})`);
      }
    }
  }
  return missing.length ? { ok: false, reason: missing.join('; ') } : { ok: true };
}

// ---------------------------------------------------------------------------------------------
// the lock

const pidAlive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/** Removes the lock at `path` if it still holds `holder`; true when it did. */
async function breakStaleLock(path: string, holder: string): Promise<boolean> {
  const guard = `${path}.break`;
  let fh;
  try {
    fh = await open(guard, fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY, 0o644);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    // Another waiter is breaking it; a guard left by a crash (it is held for milliseconds) expires.
    const st = await stat(guard).catch(() => undefined);
    if (st && Date.now() - st.mtimeMs > 10_000) await unlink(guard).catch(() => undefined);
    await new Promise((r) => setTimeout(r, 50));
    return false;
  }
  try {
    await fh.close();
    if ((await readFile(path, 'utf8').catch(() => '')) !== holder) return false;
    await unlink(path);
    return true;
  } finally {
    await unlink(guard).catch(() => undefined);
  }
}

async function lock(outDir: string, log: (m: string) => void, timeoutMs = 20 * 60_000): Promise<() => Promise<void>> {
  const path = join(outDir, '.lock');
  const me = JSON.stringify({ pid: process.pid, token: randomBytes(8).toString('hex'), since: new Date().toISOString() });
  const deadline = Date.now() + timeoutMs;
  let said = false;
  for (;;) {
    try {
      const fh = await open(path, fsc.O_CREAT | fsc.O_EXCL | fsc.O_WRONLY, 0o644);
      await fh.writeFile(me);
      await fh.close();
      return async () => {
        try {
          if ((await readFile(path, 'utf8')) === me) await unlink(path);
        } catch {
          /* already gone */
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    let holder = '';
    try {
      holder = await readFile(path, 'utf8');
    } catch {
      continue; // released meanwhile
    }
    let pid = NaN;
    try {
      pid = (JSON.parse(holder) as { pid: number }).pid;
    } catch {
      /* a lock being written, or garbage: judged by its age below */
    }
    const age = Date.now() - ((await stat(path).catch(() => undefined))?.mtimeMs ?? Date.now());
    if ((Number.isInteger(pid) && !pidAlive(pid)) || (!Number.isInteger(pid) && age > 10_000)) {
      // The holder is gone: take the lock over. Only under `.lock.break`, and only when the lock is
      // still the one we judged dead: two waiters must not both remove it (the second would remove
      // the lock the first has just taken).
      if (await breakStaleLock(path, holder)) log(`removed the stale build lock of pid ${Number.isInteger(pid) ? pid : '?'} (${path})`);
      continue;
    }
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for the tinyvm build of pid ${pid} (lock ${path})`);
    if (!said) log(`waiting for the tinyvm build of pid ${pid} (lock ${path})`);
    said = true;
    await new Promise((r) => setTimeout(r, 200));
  }
}

// ---------------------------------------------------------------------------------------------
// the build

function resultFor(dir: string, rec: BuildRecord): TinyVmBuild {
  return {
    dir,
    kernel: join(dir, rec.files.kernel.name),
    initrd: join(dir, rec.files.initrd.name),
    disk: join(dir, rec.files.disk.name),
    diskRaw: join(dir, rec.files.diskRaw.name),
    diskFormat: 'qcow2',
    kernelVersion: rec.inputs.kernelVersion,
    cmdline: rec.cmdline,
    minDiskBytes: rec.minDiskBytes,
    minRamBytes: rec.minRamBytes,
  };
}

/** The cached build in `dir` when it was made from `inputs` (kernelVersion undefined: any) and its files are all there. */
async function cached(dir: string, inputs: Omit<BuildInputs, 'kernelVersion'> & { kernelVersion?: string }): Promise<TinyVmBuild | undefined> {
  let rec: BuildRecord;
  try {
    rec = JSON.parse(await readFile(join(dir, 'build.json'), 'utf8')) as BuildRecord;
  } catch {
    return undefined;
  }
  const i = rec.inputs;
  if (!i || i.builder !== inputs.builder || i.busyboxSha256 !== inputs.busyboxSha256 || i.guestSha256 !== inputs.guestSha256) return undefined;
  if (inputs.kernelVersion !== undefined && i.kernelVersion !== inputs.kernelVersion) return undefined;
  for (const f of Object.values(rec.files)) {
    const st = await stat(join(dir, f.name)).catch(() => undefined);
    if (!st || st.size !== f.bytes) return undefined;
  }
  return resultFor(dir, rec);
}

async function buildRootfs(root: string, busybox: Buffer, applets: string[]): Promise<void> {
  const dirs: Array<[string, number]> = [
    ['bin', 0o755], ['sbin', 0o755], ['usr/bin', 0o755], ['usr/sbin', 0o755], ['usr/lib/tinyvm', 0o755], ['usr/share/udhcpc', 0o755],
    ['etc/init.d', 0o755], ['etc/acpi/PWRF', 0o755], ['dev', 0o755], ['proc', 0o555], ['sys', 0o555], ['run', 0o755], ['tmp', 0o1777],
    ['root', 0o700], ['home', 0o755], ['mnt', 0o755], ['var/www', 0o755], ['var/log', 0o755], ['var/lib/cloud', 0o755], ['lib', 0o755],
  ];
  await chmod(root, 0o755);
  for (const [d, mode] of dirs) {
    await mkdir(join(root, d), { recursive: true });
    await chmod(join(root, d), mode);
  }
  await writeFile(join(root, 'bin', 'busybox'), busybox, { mode: 0o755 });
  for (const a of applets) {
    if (existsSync(join(root, a))) continue;
    await mkdir(dirname(join(root, a)), { recursive: true });
    await symlink('/bin/busybox', join(root, a));
  }
  const files: Array<[string, string, number]> = [
    ['etc/passwd', guest.PASSWD, 0o644],
    ['etc/group', guest.GROUP, 0o644],
    ['etc/hostname', `${guest.DEFAULT_HOSTNAME}\n`, 0o644],
    ['etc/hosts', `127.0.0.1\tlocalhost\n127.0.1.1\t${guest.DEFAULT_HOSTNAME}\n::1\tlocalhost ip6-localhost ip6-loopback\n`, 0o644],
    ['etc/resolv.conf', '', 0o644],
    ['etc/os-release', guest.OS_RELEASE, 0o644],
    ['etc/profile', guest.PROFILE, 0o644],
    ['etc/inittab', guest.INITTAB, 0o644],
    ['etc/init.d/rcS', guest.RC_S, 0o755],
    ['etc/init.d/rcK', guest.RC_K, 0o755],
    ['etc/acpi/PWRF/00000080', guest.ACPI_POWER_BUTTON, 0o755],
    ['usr/lib/tinyvm/yaml.awk', guest.YAML_AWK, 0o644],
    ['usr/share/udhcpc/default.script', guest.UDHCPC_SCRIPT, 0o755],
    ['var/www/index.html', `${guest.DEFAULT_HOSTNAME}\n`, 0o644],
  ];
  for (const [p, text, mode] of files) {
    await writeFile(join(root, p), text);
    await chmod(join(root, p), mode);
  }
}

function buildInitrd(busybox: Buffer, applets: string[], modules: ResolvedModule[]): CpioWriter {
  const w = new CpioWriter();
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'dev', 'proc', 'sys', 'run', 'tmp', 'newroot', guest.INITRD_MODULE_DIR]) w.add({ type: 'dir', name: d });
  w.add({ type: 'char', name: 'dev/console', major: 5, minor: 1, mode: 0o600 });
  w.add({ type: 'char', name: 'dev/null', major: 1, minor: 3, mode: 0o666 });
  w.add({ type: 'file', name: 'bin/busybox', data: busybox, mode: 0o755 });
  for (const a of applets) if (!w.has(a)) w.add({ type: 'symlink', name: a, target: '/bin/busybox' });
  w.add({ type: 'file', name: 'init', data: guest.INITRD_INIT, mode: 0o755 });
  for (const m of modules) w.add({ type: 'file', name: `${guest.INITRD_MODULE_DIR}/${m.file}`, data: m.data, mode: 0o644 });
  w.add({ type: 'file', name: guest.INITRD_MODULE_ORDER, data: modules.map((m) => m.file).join('\n') + '\n', mode: 0o644 });
  return w;
}

/** Builds tinyvm into `outDir` (default build/tinyvm), or returns the cached build at once. */
export async function buildTinyVm(opts: TinyVmBuildOptions = {}): Promise<TinyVmBuild> {
  const log = opts.log ?? (() => undefined);
  const outDir = resolve(opts.outDir ?? defaultTinyVmDir());
  const cacheDir = join(outDir, 'cache');
  const bb = staticBusybox();
  if ('reason' in bb) throw new Error(`cannot build tinyvm: ${bb.reason}`);
  const base = { builder: TINYVM_BUILDER_VERSION, busyboxSha256: sha256(bb.data), guestSha256: guestSha256() };
  const known = async () => (await installedKernel())?.version ?? (await cachedKernel(cacheDir))?.version;

  if (!opts.force) {
    const hit = await cached(outDir, { ...base, kernelVersion: await known() });
    if (hit) return hit;
  }
  await mkdir(outDir, { recursive: true });
  const unlock = await lock(outDir, log);
  try {
    if (!opts.force) {
      // Another process may have built it while we waited for the lock.
      const hit = await cached(outDir, { ...base, kernelVersion: await known() });
      if (hit) return hit;
    }
    return await build(outDir, cacheDir, bb, base, opts.force === true, log);
  } finally {
    await unlock();
  }
}

async function build(
  outDir: string,
  cacheDir: string,
  bb: { path: string; data: Buffer },
  base: Omit<BuildInputs, 'kernelVersion'>,
  force: boolean,
  log: (m: string) => void,
): Promise<TinyVmBuild> {
  const t0 = Date.now();
  const mke2fs = findTool('mke2fs');
  const qemuImg = findTool('qemu-img');
  if (!mke2fs) throw new Error('cannot build tinyvm: mke2fs is missing (install the Debian package e2fsprogs)');
  if (!qemuImg) throw new Error('cannot build tinyvm: qemu-img is missing (install the Debian package qemu-utils)');

  // Leftovers of crashed builds (their pid is in the name).
  for (const n of await readdir(outDir)) {
    const m = /^\.build-(\d+)-/.exec(n);
    if (m && !pidAlive(Number(m[1]))) await rm(join(outDir, n), { recursive: true, force: true });
  }

  let kernel = await installedKernel();
  if (!kernel && !force) kernel = await cachedKernel(cacheDir);
  if (!kernel) {
    try {
      kernel = await downloadKernel(cacheDir, log);
    } catch (e) {
      // Offline with a cached kernel: use it.
      kernel = await cachedKernel(cacheDir);
      if (!kernel) throw new Error(`cannot build tinyvm: no cloud kernel installed or cached, and fetching one failed: ${(e as Error).message}`);
      log(`could not look for a newer kernel (${(e as Error).message}); using the cached ${kernel.version}`);
    }
  }
  log(`kernel ${kernel.version} from ${kernel.from}; busybox ${bb.path}`);
  const inputs: BuildInputs = { ...base, kernelVersion: kernel.version };

  const tmp = join(outDir, `.build-${process.pid}-${randomBytes(4).toString('hex')}`);
  await mkdir(tmp);
  try {
    const applets = (await runTool(bb.path, ['--list-full'])).stdout.split('\n').map((s) => s.trim()).filter((a) => a && a !== 'bin/busybox');

    let t = Date.now();
    const modules = await resolveModules(kernel.modulesDir, TINYVM_MODULES);
    const cpio = buildInitrd(bb.data, applets, modules).finish();
    const initrd = await gzip(cpio, { level: 9 });
    await writeFile(join(tmp, FILES.initrd), initrd);
    await copyFile(kernel.vmlinuz, join(tmp, FILES.kernel));
    log(`initrd: ${modules.length} modules (${modules.map((m) => m.name).join(' ')}), ${cpio.length} bytes, ${initrd.length} gzip'd, in ${Date.now() - t} ms`);

    t = Date.now();
    const root = join(tmp, 'root');
    await mkdir(root);
    await buildRootfs(root, bb.data, applets);
    const raw = join(tmp, FILES.diskRaw);
    await runTool(mke2fs, ['-q', '-t', 'ext4', '-L', guest.ROOT_LABEL, '-E', 'root_owner=0:0', '-d', root, raw, `${TINYVM_DISK_BYTES / 1024}k`]);
    await rm(root, { recursive: true, force: true });
    await runTool(qemuImg, ['convert', '-f', 'raw', '-O', 'qcow2', raw, join(tmp, FILES.disk)]);
    log(`root disk: ext4 ${TINYVM_DISK_BYTES / 1024 / 1024} MiB labelled ${guest.ROOT_LABEL}, qcow2, in ${Date.now() - t} ms`);

    const size = async (name: string) => ({ name, bytes: (await stat(join(tmp, name))).size });
    const rec: BuildRecord = {
      inputs,
      kernelFrom: kernel.from,
      modules: modules.map((m) => m.name),
      files: { kernel: await size(FILES.kernel), initrd: await size(FILES.initrd), disk: await size(FILES.disk), diskRaw: await size(FILES.diskRaw) },
      cmdline: TINYVM_CMDLINE,
      minDiskBytes: (await stat(raw)).size,
      minRamBytes: TINYVM_MIN_RAM_BYTES,
      builtAt: new Date().toISOString(),
      buildMs: 0,
    };
    rec.buildMs = Date.now() - t0;
    await writeFile(join(tmp, 'build.json'), JSON.stringify(rec, null, 2) + '\n');

    // Publish: without build.json the directory is not a build; it comes back last.
    await unlink(join(outDir, 'build.json')).catch(() => undefined);
    for (const name of Object.values(FILES)) await rename(join(tmp, name), join(outDir, name));
    await rename(join(tmp, 'build.json'), join(outDir, 'build.json'));
    log(`built tinyvm in ${outDir} in ${rec.buildMs} ms`);
    return resultFor(outDir, rec);
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}
