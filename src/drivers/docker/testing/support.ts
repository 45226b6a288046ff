/**
 * For tests and benchmarks of the docker driver: a private Docker engine in a temp dir (never the
 * node's own), and a busybox image made offline from Debian's busybox-static as a `docker save`
 * archive, with the ImageInfo the agent would hand the driver.
 */
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as tar from 'tar';
import Docker from 'dockerode';
import type { ImageInfo } from '../../driver.js';

export const DOCKERD = '/usr/sbin/dockerd';

export interface TestEngine {
  socketPath: string;
  pid: number;
  storageDriver: string;
  root: string;
  /** Stop the daemon (SIGTERM, then SIGKILL), its containerd and shims, unmount and remove its dirs. */
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function alive(pid: number): boolean {
  try {
    const st = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) [ZX] /.test(st);
  } catch {
    return false;
  }
}

/** Processes whose command line mentions `needle` (the engine's containerd and shims name its dirs). */
function pidsMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e) || Number(e) === process.pid) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'utf8').includes(needle)) out.push(Number(e));
    } catch {
      /* gone */
    }
  }
  return out;
}

function mountsUnder(dir: string): string[] {
  const out: string[] = [];
  try {
    for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
      const mp = line.split(' ')[4];
      if (mp && (mp === dir || mp.startsWith(dir + '/'))) out.push(mp.replace(/\\040/g, ' '));
    }
  } catch {
    /* no procfs */
  }
  return out.sort((a, b) => b.length - a.length);
}

/**
 * Start a dockerd of our own: data, exec root, pid file and socket in `root` (a short path: the
 * socket path must stay under 108 bytes), no bridge, no iptables. overlay2, falling back to vfs
 * when overlayfs does not work where `root` is. `env` adds to the daemon's environment (e.g.
 * `DOCKER_SERVICE_PREFER_OFFLINE_IMAGE=1`, so swarm mode never tries a registry for a local image).
 */
export async function startTestDockerd(root: string, log: (line: string) => void = () => undefined, opts: { env?: Record<string, string> } = {}): Promise<TestEngine> {
  let lastLog = '';
  // YUN_TEST_DOCKER_STORAGE=vfs forces one storage driver (e.g. where overlayfs is known not to work).
  const forced = process.env.YUN_TEST_DOCKER_STORAGE;
  for (const storage of forced ? [forced] : ['overlay2', 'vfs']) {
    mkdirSync(root, { recursive: true });
    const socketPath = join(root, 'docker.sock');
    const logFile = join(root, `dockerd-${storage}.log`);
    const fd = openSync(logFile, 'a');
    const child = spawn(
      DOCKERD,
      [
        '--data-root', join(root, 'data'),
        '--exec-root', join(root, 'exec'),
        '--pidfile', join(root, 'docker.pid'),
        '-H', `unix://${socketPath}`,
        '--bridge=none', '--iptables=false', '--ip6tables=false',
        `--storage-driver=${storage}`,
        '--log-level=warn',
      ],
      { stdio: ['ignore', fd, fd], detached: false, ...(opts.env ? { env: { ...process.env, ...opts.env } } : {}) },
    );
    closeSync(fd);
    const pid = child.pid!;
    child.unref();
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    const docker = new Docker({ socketPath, timeout: 2000 });
    const deadline = Date.now() + 30_000;
    let up = false;
    let dead = false;
    void exited.then(() => (dead = true));
    while (!dead && Date.now() < deadline) {
      try {
        await docker.ping();
        up = true;
        break;
      } catch {
        await sleep(100);
      }
    }
    const engine: TestEngine = {
      socketPath,
      pid,
      storageDriver: storage,
      root,
      stop: async () => {
        if (alive(pid)) process.kill(pid, 'SIGTERM');
        const until = Date.now() + 15_000;
        while (alive(pid) && Date.now() < until) await sleep(50);
        if (alive(pid)) process.kill(pid, 'SIGKILL');
        // containerd and shims of this engine (started with paths in `root`), by pid.
        for (let i = 0; i < 50; i++) {
          const left = pidsMentioning(root).filter(alive);
          if (left.length === 0) break;
          for (const p of left) {
            try {
              process.kill(p, i < 20 ? 'SIGTERM' : 'SIGKILL');
            } catch {
              /* gone */
            }
          }
          await sleep(100);
        }
        for (const mp of mountsUnder(root)) {
          try {
            execFileSync('umount', ['-l', mp], { stdio: 'ignore' });
          } catch {
            /* already gone */
          }
        }
        rmSync(root, { recursive: true, force: true });
      },
    };
    if (up) {
      const info = (await docker.info()) as { Driver?: string };
      if (info.Driver === storage) return engine;
    }
    lastLog = existsSync(logFile) ? readFileSync(logFile, 'utf8').split('\n').slice(-15).join('\n') : '';
    log(`dockerd with ${storage} did not come up; log:\n${lastLog}`);
    await engine.stop();
  }
  throw new Error(`dockerd did not start (tried ${forced ?? 'overlay2 and vfs'}); last log lines:\n${lastLog}`);
}

export interface TestImage {
  archive: string;
  info: ImageInfo;
  configDigest: string;
  /** How often the driver asked for the archive. */
  exports: () => number;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/**
 * A busybox image as a `docker save` archive (one layer), made in `dir`. `marker` goes into
 * /etc/yun-image so a test can tell which image a container runs.
 */
export async function buildBusyboxArchive(dir: string, opts: { tag?: string; marker?: string } = {}): Promise<TestImage> {
  const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
  if (!busybox) throw new Error('busybox not found: install the Debian package busybox-static');
  const rootfs = join(dir, 'rootfs');
  rmSync(rootfs, { recursive: true, force: true });
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'root', 'tmp', 'proc', 'sys', 'dev', 'home']) mkdirSync(join(rootfs, d), { recursive: true });
  chmodSync(join(rootfs, 'tmp'), 0o1777);
  copyFileSync(busybox, join(rootfs, 'bin', 'busybox'));
  chmodSync(join(rootfs, 'bin', 'busybox'), 0o755);
  for (const applet of execFileSync(busybox, ['--list-full'], { encoding: 'utf8' }).split('\n').filter(Boolean)) {
    if (applet === 'bin/busybox') continue;
    const p = join(rootfs, applet);
    mkdirSync(dirname(p), { recursive: true });
    if (!existsSync(p)) symlinkSync('/bin/busybox', p);
  }
  writeFileSync(join(rootfs, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/home:/bin/false\n');
  writeFileSync(join(rootfs, 'etc', 'group'), 'root:x:0:\nnogroup:x:65534:\n');
  writeFileSync(join(rootfs, 'etc', 'yun-image'), `${opts.marker ?? 'yunstack-test-busybox'}\n`);

  const stage = join(dir, 'stage');
  rmSync(stage, { recursive: true, force: true });
  mkdirSync(stage, { recursive: true });
  const layerTmp = join(dir, 'layer.tar');
  await tar.c({ cwd: rootfs, file: layerTmp, portable: true }, ['.']);
  const layer = readFileSync(layerTmp);
  const layerHex = sha256(layer);
  mkdirSync(join(stage, layerHex));
  writeFileSync(join(stage, layerHex, 'layer.tar'), layer);
  rmSync(layerTmp);
  const env = ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'];
  const config = Buffer.from(
    JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      created: '2024-01-01T00:00:00Z',
      config: { Env: env, Cmd: ['sh'], WorkingDir: '/' },
      rootfs: { type: 'layers', diff_ids: [`sha256:${layerHex}`] },
      history: [{ created: '2024-01-01T00:00:00Z', created_by: 'yunstack test: busybox-static' }],
    }),
  );
  const configHex = sha256(config);
  writeFileSync(join(stage, `${configHex}.json`), config);
  const tag = opts.tag ?? 'busybox:latest';
  writeFileSync(join(stage, 'manifest.json'), JSON.stringify([{ Config: `${configHex}.json`, RepoTags: [tag], Layers: [`${layerHex}/layer.tar`] }]));
  // The registry-style manifest the image store would know the image by.
  const manifest = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
      config: { mediaType: 'application/vnd.docker.container.image.v1+json', size: config.length, digest: `sha256:${configHex}` },
      layers: [{ mediaType: 'application/vnd.docker.image.rootfs.diff.tar', size: layer.length, digest: `sha256:${layerHex}` }],
    }),
  );
  const archive = join(dir, 'busybox.tar');
  await tar.c({ cwd: stage, file: archive, portable: true }, ['manifest.json', `${configHex}.json`, layerHex]);
  rmSync(stage, { recursive: true, force: true });
  let exports = 0;
  return {
    archive,
    configDigest: `sha256:${configHex}`,
    exports: () => exports,
    info: {
      ref: tag,
      kind: 'container',
      digest: `sha256:${sha256(manifest)}`,
      rootfs,
      config: { entrypoint: [], cmd: ['sh'], env, workdir: '/', user: '' },
      exportDockerArchive: async () => {
        exports++;
        return archive;
      },
    },
  };
}
