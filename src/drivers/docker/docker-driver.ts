/**
 * The `docker` driver: every task is a container of a Docker engine on this node, reached with
 * dockerode over its unix socket (README.md in this folder has the design).
 *
 * - Images come from the node's image store: the container runs the engine's copy of the image
 *   tagged `yunstack.local/image:sha256-<manifest hex>`; when the engine lacks it, the store's
 *   `docker save` archive is streamed into `docker load` with its names rewritten to that tag (an
 *   operator's own `busybox:latest` is never moved), and the loaded image id must equal the
 *   archive's config digest. Names never select an image; digests do.
 * - Containers are named `yun-<task id>` and labelled (`yunstack.task.id`, the task's labels);
 *   Docker's init (tini) is pid 1, so signals reach the command and exits by signal read as such;
 *   no restart policy (the orchestrator restarts); json-file logs, copied into the task dir.
 * - The handle carries the container id and task dir: a fresh driver (after an agent restart)
 *   finds the container, resumes copying its logs where the files end, and waits on it.
 */
import { formatBytes, normalizeSignal, SIGNAL_NAMES } from '../common/exit.js';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { PassThrough, pipeline, type Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import Docker from 'dockerode';
import {
  DriverError,
  type Driver,
  type DriverFingerprint,
  type ExecResult,
  type ExitResult,
  type ImageInfo,
  type MountSpec,
  type TaskConfig,
  type TaskHandle,
  type TaskState,
  type DriverCapabilities,
} from '../driver.js';
import { RetagDockerArchive } from './docker-archive.js';
import { LOG_STATE_FILE, LogPump, touchLogs } from './log-pump.js';
import { StdDemuxer } from './stdcopy.js';

export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';
/** The repository of every image this driver loads; the tag is `sha256-<manifest digest hex>`. */
export const IMAGE_REPOSITORY = 'yunstack.local/image';
const EXIT_JSON = 'docker-exit.json';
const EXEC_OUTPUT_CAP = 1024 * 1024;
/** The oldest engine API with everything used here (Mounts, Init, NanoCpus, PidsLimit): Docker 1.13. */
const MIN_API_VERSION = '1.25';

export interface DockerDriverOptions {
  /** The engine's unix socket. Default: DOCKER_HOST when it is `unix://…`, else /var/run/docker.sock. */
  socketPath?: string;
  /** How long the fingerprint waits for the engine to answer (default 3000 ms). */
  pingTimeoutMs?: number;
}

export interface DockerHandle extends TaskHandle {
  driver: 'docker';
  container_id: string;
  container_name: string;
  /** The engine socket it runs on (a handle is only used with the same engine). */
  socket: string;
  /** The task dir: logs and the exit record. */
  dir: string;
  image_id: string;
  memory_limit_bytes: number;
}

/** The socket dockerode talks to by default here. */
export function defaultDockerSocket(env: NodeJS.ProcessEnv = process.env): string {
  const host = env.DOCKER_HOST;
  if (host && host.startsWith('unix://')) return host.slice('unix://'.length);
  return DEFAULT_DOCKER_SOCKET;
}

// Shared by every driver instance of this process (an agent restart within one process, or tests
// making a fresh driver, must not copy a container's logs twice).
const pumps = new Map<string, LogPump>();
const logsSynced = new Set<string>();
const logSyncs = new Map<string, Promise<void>>();
const imageLoads = new Map<string, Promise<string>>();
/** `${socket}|${manifest digest}` → image id this process loaded or verified. */
const verifiedImages = new Map<string, string>();


interface EngineError {
  statusCode?: number;
  code?: string;
  json?: { message?: string } | null;
  reason?: string;
  message?: string;
}

function statusOf(err: unknown): number | undefined {
  return (err as EngineError | undefined)?.statusCode;
}

/** The engine's own message when there is one (dockerode wraps it as "(HTTP code …) … - message"). */
function errText(err: unknown): string {
  const e = err as EngineError | undefined;
  const msg = e?.json?.message;
  if (typeof msg === 'string' && msg.trim()) return msg.trim();
  if (e?.message) return e.message.trim();
  return String(err);
}

/** The engine could not be reached (as opposed to answering with an error). */
function isConnectionError(err: unknown): boolean {
  const e = err as EngineError | undefined;
  if (!e || e.statusCode !== undefined) return false;
  return ['ENOENT', 'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'EACCES'].includes(e.code ?? '') || /socket hang up|ECONNRESET|ECONNREFUSED|ENOENT/.test(e.message ?? '');
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

const containerName = (taskId: string) => `yun-${taskId.replace(/[^a-zA-Z0-9_.-]/g, '-')}`;

/** The parts of an image config the engine reports, normalised for comparison with the store's. */
function configKey(c: { entrypoint?: string[] | null; cmd?: string[] | null; env?: string[] | null; workdir?: string | null; user?: string | null }): string {
  return JSON.stringify([c.entrypoint ?? [], c.cmd ?? [], c.env ?? [], c.workdir ?? '', c.user ?? '']);
}

export class DockerDriver implements Driver {
  readonly name = 'docker';
  readonly capabilities: DriverCapabilities = { command: true, exec: true, terminal: false, pause: false, suspend: null, instances: false, console: false, volumes: false, image_kinds: ['container'], network_kinds: ['host'] };
  readonly socketPath: string;
  private readonly docker: Docker;
  private readonly pingTimeoutMs: number;
  private engineInfo?: Promise<{ cgroupDriver: string }>;
  private results = new Map<string, ExitResult>();

  constructor(opts: DockerDriverOptions = {}) {
    this.socketPath = opts.socketPath ?? defaultDockerSocket();
    this.pingTimeoutMs = opts.pingTimeoutMs ?? 3000;
    this.docker = new Docker({ socketPath: this.socketPath });
  }

  async fingerprint(): Promise<DriverFingerprint> {
    const quick = new Docker({ socketPath: this.socketPath, timeout: this.pingTimeoutMs });
    const unavailable = (why: string): DriverFingerprint => ({
      available: false,
      reason: `no Docker engine answers on ${this.socketPath} (${why}): start dockerd, or use the oci driver`,
      attributes: { socket: this.socketPath },
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        quick.ping(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`no answer within ${this.pingTimeoutMs} ms`)), this.pingTimeoutMs);
        }),
      ]);
    } catch (err) {
      return unavailable(errText(err));
    } finally {
      clearTimeout(timer);
    }
    let version: Docker.DockerVersion;
    let info: Record<string, unknown>;
    try {
      [version, info] = await Promise.all([quick.version(), quick.info() as Promise<Record<string, unknown>>]);
    } catch (err) {
      return unavailable(`it answered a ping but not a version/info request: ${errText(err)}`);
    }
    const attributes: Record<string, string> = {
      socket: this.socketPath,
      server_version: String(version.Version ?? ''),
      api_version: String(version.ApiVersion ?? ''),
      storage_driver: String(info.Driver ?? ''),
      cgroup_driver: String(info.CgroupDriver ?? ''),
      runtime: String(info.DefaultRuntime ?? ''),
      kernel: String(version.KernelVersion ?? ''),
    };
    if (compareVersions(attributes.api_version!, MIN_API_VERSION) < 0) {
      return { available: false, reason: `the Docker engine on ${this.socketPath} speaks API ${attributes.api_version}, older than the ${MIN_API_VERSION} this driver needs: upgrade Docker, or use the oci driver`, attributes };
    }
    const cgroupVersion = String(info.CgroupVersion ?? '1');
    if (info.CgroupDriver === 'none' || info.MemoryLimit === false) {
      attributes.cgroups = 'none';
      attributes.cgroups_reason = `the Docker engine on ${this.socketPath} cannot limit memory (cgroup driver ${String(info.CgroupDriver)})`;
    } else {
      attributes.cgroups = cgroupVersion === '2' ? 'v2' : 'v1';
    }
    if (info.PidsLimit === false) attributes.pids_limit = 'unsupported';
    this.engineInfo ??= Promise.resolve({ cgroupDriver: attributes.cgroup_driver! });
    return { available: true, attributes };
  }

  async start(config: TaskConfig): Promise<TaskHandle> {
    if (!config.id) throw new DriverError('the task has no id');
    if (!Array.isArray(config.command)) throw new DriverError(`the command must be a list of arguments (got ${JSON.stringify(config.command)})`);
    if (config.shell && config.command.length === 0) throw new DriverError('a shell task needs a command (the script for /bin/sh -c)');
    const env: string[] = [];
    for (const [k, v] of Object.entries(config.env ?? {})) {
      if (k === '' || k.includes('=') || k.includes('\0') || String(v).includes('\0')) throw new DriverError(`invalid environment variable ${JSON.stringify(k)}: names cannot be empty or contain "=" or NUL, values cannot contain NUL`);
      env.push(`${k}=${v}`);
    }
    await mkdir(config.dir, { recursive: true });
    const imageId = await this.ensureImage(config);
    const { cgroupDriver } = await this.info();

    let entrypoint: string[] | undefined;
    let cmd: string[] | undefined;
    if (config.shell) {
      entrypoint = ['/bin/sh', '-c'];
      cmd = config.command;
    } else if (config.command.length > 0) {
      cmd = config.command; // the image's Entrypoint stays, as with `docker run IMAGE CMD…`
    }
    const mem = Math.max(0, Math.floor(config.limits?.memory_bytes ?? 0));
    const cpu = Math.max(0, config.limits?.cpu ?? 0);
    const pids = Math.max(0, Math.floor(config.limits?.pids ?? 0));
    const name = containerName(config.id);
    const labels: Record<string, string> = {
      ...(config.labels ?? {}),
      'yunstack.task.id': config.id,
      'yunstack.task.name': config.name,
      'yunstack.managed-by': 'yunstack',
    };
    const hostConfig: Docker.HostConfig = {
      Init: true,
      ReadonlyRootfs: !!config.read_only,
      Mounts: (config.mounts ?? []).map((m) => this.mount(m)),
      NetworkMode: config.network_mode === 'host' ? 'host' : 'none',
      RestartPolicy: { Name: 'no' },
      LogConfig: { Type: 'json-file', Config: { 'max-size': '20m', 'max-file': '3' } },
      ...(mem > 0 ? { Memory: mem, MemorySwap: mem } : {}),
      ...(cpu > 0 ? { NanoCpus: Math.round(cpu * 1e9) } : {}),
      ...(pids > 0 ? { PidsLimit: pids } : {}),
      // With the cgroupfs driver the agent's tasks sit under its cgroup parent like every driver's;
      // the systemd driver only takes `*.slice` parents, so there the engine's default is kept.
      ...(cgroupDriver === 'cgroupfs' && config.cgroup_parent ? { CgroupParent: config.cgroup_parent } : {}),
    };
    const create: Docker.ContainerCreateOptions = {
      name,
      Image: imageId,
      Hostname: (config.hostname ?? config.name).slice(0, 63),
      Env: env,
      ...(cmd ? { Cmd: cmd } : {}),
      ...(entrypoint ? { Entrypoint: entrypoint } : {}),
      ...(config.workdir ? { WorkingDir: config.workdir } : {}),
      ...(config.user ? { User: config.user } : {}),
      Labels: labels,
      Tty: false,
      OpenStdin: false,
      AttachStdin: false,
      AttachStdout: false,
      AttachStderr: false,
      HostConfig: hostConfig,
    };
    await touchLogs(config.dir);
    let container: Docker.Container;
    try {
      container = await this.docker.createContainer(create);
    } catch (err) {
      if (statusOf(err) !== 409) throw this.engineFailure(`creating the container for task ${config.id}`, err);
      // A container of this task from a start that never returned (the agent died in it): replace it.
      await this.removeLeftover(name, config.id);
      try {
        container = await this.docker.createContainer(create);
      } catch (err2) {
        throw this.engineFailure(`creating the container for task ${config.id}`, err2);
      }
    }
    const startedAt = new Date().toISOString();
    try {
      await container.start();
    } catch (err) {
      await container.remove({ force: true, v: true }).catch(() => undefined);
      throw this.engineFailure(`starting container ${name} for task ${config.id}`, err);
    }
    const handle: DockerHandle = {
      driver: 'docker',
      task_id: config.id,
      started_at: startedAt,
      container_id: container.id,
      container_name: name,
      socket: this.socketPath,
      dir: config.dir,
      image_id: imageId,
      memory_limit_bytes: mem,
    };
    this.ensurePump(handle);
    return handle;
  }

  async wait(handle: TaskHandle): Promise<ExitResult> {
    const h = this.asHandle(handle);
    const cached = this.results.get(h.container_id);
    if (cached) return cached;
    const deadline = Date.now() + 60_000;
    for (;;) {
      try {
        await this.docker.getContainer(h.container_id).wait({ condition: 'not-running' });
        break;
      } catch (err) {
        if (statusOf(err) === 404) break;
        if (isConnectionError(err) && Date.now() < deadline) {
          await sleep(1000);
          continue;
        }
        throw new DriverError(`waiting for container ${h.container_name} (task ${h.task_id}) failed: ${errText(err)}`, false);
      }
    }
    await this.syncLogs(h);
    return this.exitResult(h);
  }

  async stop(handle: TaskHandle, graceMs: number, signal = 'SIGTERM'): Promise<void> {
    const h = this.asHandle(handle);
    const sig = normalizeSignal(signal);
    if (!(await this.isRunning(h))) return;
    if (sig !== 'SIGKILL' && graceMs > 0) {
      await this.kill(h, sig);
      if (await this.waitExit(h, graceMs)) return;
    }
    await this.kill(h, 'SIGKILL');
    if (!(await this.waitExit(h, 15_000))) {
      throw new DriverError(`container ${h.container_name} (task ${h.task_id}) was sent SIGKILL but is still running after 15 s: the Docker engine may be stuck`, false);
    }
  }

  async inspect(handle: TaskHandle): Promise<TaskState> {
    const h = this.asHandle(handle);
    let info: Docker.ContainerInspectInfo;
    try {
      info = await this.docker.getContainer(h.container_id).inspect();
    } catch (err) {
      if (statusOf(err) === 404) return { running: false, exit: await this.exitResult(h) };
      throw this.engineFailure(`inspecting container ${h.container_name} (task ${h.task_id})`, err);
    }
    if (info.State.Running) return { running: true, ...(info.State.Pid > 0 ? { pid: info.State.Pid } : {}) };
    return { running: false, exit: await this.exitResult(h, info) };
  }

  async recover(handle: TaskHandle): Promise<TaskHandle | undefined> {
    const h = this.asHandle(handle);
    let info: Docker.ContainerInspectInfo;
    try {
      info = await this.docker.getContainer(h.container_id).inspect();
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw this.engineFailure(`looking for container ${h.container_name} (task ${h.task_id})`, err);
    }
    if (info.Config?.Labels?.['yunstack.task.id'] !== h.task_id) return undefined;
    if (!info.State.Running) return undefined;
    const out: DockerHandle = { ...h };
    this.ensurePump(out);
    return out;
  }

  async destroy(handle: TaskHandle): Promise<void> {
    const h = this.asHandle(handle);
    const c = this.docker.getContainer(h.container_id);
    let exists = true;
    try {
      const info = await c.inspect();
      if (info.State.Running) {
        await this.kill(h, 'SIGKILL');
        await this.waitExit(h, 15_000);
      }
    } catch (err) {
      if (statusOf(err) === 404) exists = false;
      else throw this.engineFailure(`destroying container ${h.container_name} (task ${h.task_id})`, err);
    }
    if (exists) {
      await this.syncLogs(h);
      await this.exitResult(h).catch(() => undefined); // recorded in the task dir while the engine still knows it
      try {
        await c.remove({ force: true, v: true });
      } catch (err) {
        if (statusOf(err) !== 404) throw this.engineFailure(`removing container ${h.container_name} (task ${h.task_id})`, err);
      }
    }
    const key = this.key(h);
    const p = pumps.get(key);
    if (p) await p.close();
    pumps.delete(key);
    logsSynced.delete(key);
    await rm(join(h.dir, LOG_STATE_FILE), { force: true }).catch(() => undefined);
    await rm(join(h.dir, `${LOG_STATE_FILE}.tmp`), { force: true }).catch(() => undefined);
  }

  /**
   * Stop copying the task's logs without touching the container (the agent is shutting down and
   * leaves its tasks running); `recover` resumes where the files end.
   */
  async detach(handle: TaskHandle): Promise<void> {
    const h = this.asHandle(handle);
    const key = this.key(h);
    const p = pumps.get(key);
    pumps.delete(key);
    if (p) await p.close();
  }

  async exec(handle: TaskHandle, command: string[], opts: { timeoutMs: number; env?: Record<string, string> }): Promise<ExecResult> {
    const h = this.asHandle(handle);
    if (!Array.isArray(command) || command.length === 0) throw new DriverError('exec: no command given', false);
    const env = Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`);
    const c = this.docker.getContainer(h.container_id);
    let exec: Docker.Exec;
    try {
      exec = await c.exec({ Cmd: command, Env: env, AttachStdin: false, AttachStdout: true, AttachStderr: true, Tty: false });
    } catch (err) {
      const s = statusOf(err);
      if (s === 409 || s === 404) throw new DriverError(`cannot exec in task ${h.task_id}: it is not running (${errText(err)})`, false);
      throw this.engineFailure(`exec in task ${h.task_id}`, err, false);
    }
    const out: Buffer[] = [];
    const errOut: Buffer[] = [];
    const sizes = { stdout: 0, stderr: 0 };
    const demux = new StdDemuxer((s, payload) => {
      if (sizes[s] >= EXEC_OUTPUT_CAP) return;
      (s === 'stdout' ? out : errOut).push(Buffer.from(payload.subarray(0, EXEC_OUTPUT_CAP - sizes[s])));
      sizes[s] += payload.length;
    });
    let stream: NodeJS.ReadWriteStream;
    try {
      stream = (await exec.start({ hijack: true, stdin: false, Detach: false, Tty: false })) as NodeJS.ReadWriteStream;
    } catch (err) {
      throw this.engineFailure(`exec ${JSON.stringify(command)} in task ${h.task_id}`, err, false);
    }
    const ended = new Promise<void>((resolve) => {
      stream.on('data', (b: Buffer) => demux.push(b));
      stream.on('end', resolve);
      stream.on('close', resolve);
      stream.on('error', () => resolve());
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      ended.then(() => false),
      new Promise<boolean>((r) => {
        timer = setTimeout(() => r(true), Math.max(1, opts.timeoutMs));
      }),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      // The exec API cannot kill; the engine is local (a unix socket), so kill the process by pid.
      const ei = await exec.inspect().catch(() => undefined);
      if (ei?.Running && ei.Pid > 0) {
        try {
          process.kill(ei.Pid, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      (stream as unknown as { destroy?: () => void }).destroy?.();
      throw new DriverError(`exec: ${JSON.stringify(command)} did not finish within ${opts.timeoutMs} ms and was killed`, false);
    }
    let ei = await exec.inspect();
    for (let i = 0; i < 50 && ei.Running; i++) {
      await sleep(20);
      ei = await exec.inspect();
    }
    let stdout = Buffer.concat(out).toString('utf8');
    let stderr = Buffer.concat(errOut).toString('utf8');
    const code = ei.ExitCode ?? 1;
    // The engine reports a command it could not start on the output stream: it belongs on stderr.
    if ((code === 126 || code === 127) && stderr === '' && /^OCI runtime exec failed/.test(stdout)) {
      stderr = stdout.replace(/\r\n/g, '\n');
      stdout = '';
    }
    return { exit_code: code, stdout, stderr };
  }

  // ---- images ----

  /** The engine's id of the image the task runs, loading it from the image store when missing. */
  private async ensureImage(config: TaskConfig): Promise<string> {
    const info = config.image_info;
    if (!info) {
      if (!config.image) throw new DriverError(`task ${config.id} has no image: the docker driver runs images (use the process driver for a plain command)`);
      try {
        return (await this.docker.getImage(config.image).inspect()).Id;
      } catch (err) {
        if (statusOf(err) === 404) {
          throw new DriverError(`image "${config.image}" is not in the Docker engine on ${this.socketPath}, and the agent gave no copy of it to load: import or pull it into yunstack (yun image import / yun image pull) so the agent can hand it over`);
        }
        throw this.engineFailure(`looking up image "${config.image}"`, err);
      }
    }
    if (!/^sha256:[0-9a-f]{64}$/.test(info.digest)) throw new DriverError(`image ${info.ref} has an invalid digest ${JSON.stringify(info.digest)} (expected sha256:<64 hex digits>)`);
    const key = `${this.socketPath}|${info.digest}`;
    let p = imageLoads.get(key);
    if (!p) {
      p = this.presentImage(info).finally(() => imageLoads.delete(key));
      imageLoads.set(key, p);
    }
    return p;
  }

  private async presentImage(info: ImageInfo): Promise<string> {
    const key = `${this.socketPath}|${info.digest}`;
    const tag = `${IMAGE_REPOSITORY}:sha256-${info.digest.slice('sha256:'.length)}`;
    const found = await this.inspectImage(tag);
    if (found) {
      // Our tag, so our image: unless someone re-pointed it. Check what we can see of it.
      if (verifiedImages.get(key) === found.Id) return found.Id;
      const c = found.Config ?? ({} as Docker.ImageInspectInfo['Config']);
      if (configKey({ entrypoint: c.Entrypoint as string[] | null, cmd: c.Cmd, env: c.Env, workdir: c.WorkingDir, user: c.User }) === configKey(info.config)) {
        verifiedImages.set(key, found.Id);
        return found.Id;
      }
    }
    let archive: string;
    try {
      archive = await info.exportDockerArchive();
    } catch (err) {
      throw new DriverError(`image ${info.ref} (${info.digest}) is not in the Docker engine and the image store could not export it for \`docker load\`: ${(err as Error).message}`);
    }
    const configDigest = await this.loadArchive(archive, tag, info);
    const loaded = await this.inspectImage(tag);
    if (!loaded) throw new DriverError(`image ${info.ref} (${info.digest}) was loaded into the Docker engine but ${tag} is not there afterwards`);
    if (loaded.Id !== configDigest) {
      throw new DriverError(`the Docker engine loaded image ${info.ref} (${info.digest}) as ${loaded.Id}, but its archive names config ${configDigest}: refusing to run an image that is not the one asked for`);
    }
    verifiedImages.set(key, loaded.Id);
    return loaded.Id;
  }

  private async inspectImage(ref: string): Promise<Docker.ImageInspectInfo | undefined> {
    try {
      return await this.docker.getImage(ref).inspect();
    } catch (err) {
      if (statusOf(err) === 404) return undefined;
      throw this.engineFailure(`looking up image ${ref}`, err);
    }
  }

  /** Stream the archive (gunzipped if needed, names rewritten to `tag`) into `docker load`; returns the config digest. */
  private async loadArchive(path: string, tag: string, info: ImageInfo): Promise<string> {
    const what = `loading image ${info.ref} (${info.digest}) from ${path} into the Docker engine`;
    let gzip = false;
    let fh: FileHandle | undefined;
    try {
      fh = await open(path, 'r');
      const head = Buffer.alloc(2);
      await fh.read(head, 0, 2, 0);
      gzip = head[0] === 0x1f && head[1] === 0x8b;
    } catch (err) {
      throw new DriverError(`${what} failed: cannot read the archive (${(err as Error).message})`);
    } finally {
      await fh?.close().catch(() => undefined);
    }
    const retag = new RetagDockerArchive(tag);
    const body = new PassThrough();
    let streamError: Error | undefined;
    const stages: Array<NodeJS.ReadableStream | NodeJS.WritableStream> = [createReadStream(path), ...(gzip ? [createGunzip()] : []), retag, body];
    const piped = new Promise<void>((resolve) => {
      (pipeline as unknown as (...args: unknown[]) => void)(...stages, (err: Error | null | undefined) => {
        if (err) {
          streamError = err;
          body.destroy(err);
        }
        resolve();
      });
    });
    let messages = '';
    try {
      const res = (await this.docker.loadImage(body as unknown as Readable, { quiet: true })) as NodeJS.ReadableStream;
      for await (const chunk of res as AsyncIterable<Buffer>) messages += chunk.toString('utf8');
    } catch (err) {
      await piped;
      if (streamError) throw new DriverError(`${what} failed: ${streamError.message}`);
      throw this.engineFailure(what, err);
    }
    await piped;
    if (streamError) throw new DriverError(`${what} failed: ${streamError.message}`);
    for (const line of messages.split('\n')) {
      if (!line.trim()) continue;
      try {
        const m = JSON.parse(line) as { error?: string; errorDetail?: { message?: string } };
        if (m.error || m.errorDetail) throw new DriverError(`${what} failed: ${m.errorDetail?.message ?? m.error}`);
      } catch (err) {
        if (err instanceof DriverError) throw err;
      }
    }
    if (!retag.facts.configDigest) throw new DriverError(`${what} failed: the archive names no image config`);
    return retag.facts.configDigest;
  }

  // ---- logs ----

  private key(h: DockerHandle): string {
    return `${h.socket}|${h.container_id}`;
  }

  /** Copy the container's logs into the task dir while it runs (one pump per container per process). */
  private ensurePump(h: DockerHandle): void {
    const key = this.key(h);
    const p = pumps.get(key);
    if (p && !p.error) return;
    logsSynced.delete(key);
    pumps.set(key, new LogPump(this.docker, h.container_id, h.dir, true));
  }

  /** After the container exited: make sure everything it wrote is in the files (once). */
  private syncLogs(h: DockerHandle): Promise<void> {
    const key = this.key(h);
    if (logsSynced.has(key)) return Promise.resolve();
    let s = logSyncs.get(key);
    if (!s) {
      s = (async () => {
        const p = pumps.get(key);
        if (p) {
          // The following stream ends by itself once the engine has sent the last lines.
          const finished = await Promise.race([p.done.then(() => true), sleep(3000).then(() => false)]);
          if (!finished) await p.close();
          pumps.delete(key);
          if (finished && !p.error) {
            logsSynced.add(key);
            return;
          }
        }
        const once = new LogPump(this.docker, h.container_id, h.dir, false);
        await once.done;
        if (!once.error) logsSynced.add(key);
      })().finally(() => logSyncs.delete(key));
      logSyncs.set(key, s);
    }
    return s;
  }

  // ---- internals ----

  private info(): Promise<{ cgroupDriver: string }> {
    this.engineInfo ??= (async () => {
      try {
        const info = (await this.docker.info()) as { CgroupDriver?: string };
        return { cgroupDriver: String(info.CgroupDriver ?? '') };
      } catch (err) {
        this.engineInfo = undefined;
        throw this.engineFailure('asking the Docker engine for its configuration', err);
      }
    })();
    return this.engineInfo;
  }

  private mount(m: MountSpec): Docker.MountSettings {
    if (!m.target || !m.target.startsWith('/')) throw new DriverError(`mount target ${JSON.stringify(m.target)} must be an absolute path inside the container`);
    if (m.type === 'bind') {
      if (!m.source || !m.source.startsWith('/')) throw new DriverError(`bind mount source ${JSON.stringify(m.source)} must be an absolute path on the node`);
      return { Type: 'bind', Source: m.source, Target: m.target, ReadOnly: !!m.readonly };
    }
    if (m.type === 'tmpfs') {
      return { Type: 'tmpfs', Target: m.target, ...(m.tmpfs_size_bytes ? { TmpfsOptions: { SizeBytes: m.tmpfs_size_bytes } } : {}) } as Docker.MountSettings;
    }
    if (m.type === 'volume') {
      return { Type: 'volume', Target: m.target, ReadOnly: !!m.readonly, ...(m.source ? { Source: m.source } : {}) } as Docker.MountSettings;
    }
    throw new DriverError(`unknown mount type ${JSON.stringify((m as { type: unknown }).type)} (expected bind, tmpfs or volume)`);
  }

  private async removeLeftover(name: string, taskId: string): Promise<void> {
    const c = this.docker.getContainer(name);
    try {
      const info = await c.inspect();
      if (info.Config?.Labels?.['yunstack.task.id'] !== taskId) {
        throw new DriverError(`a container named ${name} already exists and does not belong to task ${taskId} (label yunstack.task.id is ${JSON.stringify(info.Config?.Labels?.['yunstack.task.id'] ?? null)}): remove it with \`docker rm -f ${name}\``);
      }
      await c.remove({ force: true, v: true });
    } catch (err) {
      if (err instanceof DriverError) throw err;
      if (statusOf(err) !== 404) throw this.engineFailure(`removing the leftover container ${name}`, err);
    }
  }

  private async isRunning(h: DockerHandle): Promise<boolean> {
    try {
      return (await this.docker.getContainer(h.container_id).inspect()).State.Running;
    } catch (err) {
      if (statusOf(err) === 404) return false;
      throw this.engineFailure(`inspecting container ${h.container_name} (task ${h.task_id})`, err);
    }
  }

  private async kill(h: DockerHandle, signal: string): Promise<void> {
    try {
      await this.docker.getContainer(h.container_id).kill({ signal });
    } catch (err) {
      const s = statusOf(err);
      if (s === 404 || s === 409) return; // gone, or not running (any more)
      if (s === 500 && /is not running|no such process|process already finished/i.test(errText(err))) return;
      throw this.engineFailure(`sending ${signal} to container ${h.container_name} (task ${h.task_id})`, err);
    }
  }

  /** True when the container is no longer running within `ms`. */
  private async waitExit(h: DockerHandle, ms: number): Promise<boolean> {
    const ac = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.docker
          .getContainer(h.container_id)
          .wait({ condition: 'not-running', abortSignal: ac.signal })
          .then(
            () => true,
            async (err: unknown) => {
              if (ac.signal.aborted) return false;
              if (statusOf(err) === 404) return true;
              return !(await this.isRunning(h).catch(() => true));
            },
          ),
        new Promise<boolean>((r) => {
          timer = setTimeout(() => r(false), ms);
        }),
      ]);
    } finally {
      clearTimeout(timer);
      ac.abort();
    }
  }

  /** How the container ended, recorded in the task dir so it survives the container's removal. */
  private async exitResult(h: DockerHandle, known?: Docker.ContainerInspectInfo): Promise<ExitResult> {
    const cached = this.results.get(h.container_id);
    if (cached) return cached;
    const file = join(h.dir, EXIT_JSON);
    try {
      const saved = JSON.parse(await readFile(file, 'utf8')) as ExitResult & { container_id?: string };
      if (saved.container_id === h.container_id) {
        const { container_id: _ignored, ...r } = saved;
        void _ignored;
        this.results.set(h.container_id, r);
        return r;
      }
    } catch {
      /* not recorded yet */
    }
    let info = known;
    if (!info) {
      try {
        info = await this.docker.getContainer(h.container_id).inspect();
      } catch (err) {
        if (statusOf(err) !== 404) throw this.engineFailure(`inspecting container ${h.container_name} (task ${h.task_id})`, err);
        return {
          exit_code: null,
          signal: null,
          oom_killed: false,
          finished_at: new Date().toISOString(),
          error: `container ${h.container_name} (${h.container_id.slice(0, 12)}) of task ${h.task_id} no longer exists in the Docker engine on ${h.socket}, and how it ended was not recorded (was it removed outside yunstack?)`,
        };
      }
    }
    const st = info.State;
    if (st.Running) throw new DriverError(`container ${h.container_name} is still running`, false);
    const code = st.ExitCode;
    const sigName = code > 128 ? SIGNAL_NAMES.get(code - 128) ?? null : null;
    const oom = !!st.OOMKilled;
    const finished = Date.parse(st.FinishedAt);
    const finishedAt = !Number.isNaN(finished) && finished > 0 ? new Date(finished).toISOString() : new Date().toISOString();
    const memory = info.HostConfig?.Memory ?? h.memory_limit_bytes;
    let error: string | null = null;
    if (code !== 0) {
      if (oom) {
        const limit = memory > 0 ? ` of ${formatBytes(memory)}` : '';
        error =
          sigName === 'SIGKILL'
            ? `OOMKilled: the task used more than its memory limit${limit} and was killed by the kernel`
            : `OOMKilled: a process of the task used more than the task's memory limit${limit} and was killed by the kernel; the task then exited with code ${code}`;
      } else if (sigName) error = `killed by signal ${sigName}`;
      else error = `exit code ${code}${code === 126 || code === 127 ? await stderrHint(h.dir) : ''}`;
      if (st.Error && st.Error.trim()) error += ` (Docker: ${st.Error.trim()})`;
    }
    const result: ExitResult = { exit_code: code, signal: sigName, oom_killed: oom, finished_at: finishedAt, error };
    this.results.set(h.container_id, result);
    await writeFile(file, JSON.stringify({ ...result, container_id: h.container_id }) + '\n').catch(() => undefined);
    return result;
  }

  private engineFailure(what: string, err: unknown, fatal?: boolean): DriverError {
    if (err instanceof DriverError) return err;
    if (isConnectionError(err)) {
      return new DriverError(`${what} failed: no Docker engine answers on ${this.socketPath} (${errText(err)}): start dockerd, or use the oci driver`, false);
    }
    return new DriverError(`${what} failed: ${errText(err)}`, fatal ?? true);
  }

  private asHandle(handle: TaskHandle): DockerHandle {
    const h = handle as Partial<DockerHandle>;
    if (!h || h.driver !== 'docker') throw new DriverError(`not a docker driver handle (driver is ${JSON.stringify(h?.driver)})`);
    if (typeof h.container_id !== 'string' || !h.container_id) throw new DriverError(`docker handle of task ${String(h.task_id)} has no container id`);
    return { socket: this.socketPath, dir: '', container_name: containerName(String(h.task_id)), image_id: '', memory_limit_bytes: 0, ...h } as DockerHandle;
  }
}

/**
 * A command the container could not run makes Docker's init (or a shell) exit 127/126 after
 * writing why to stderr, e.g. `[FATAL tini (7)] exec foo failed: No such file or directory`.
 */
async function stderrHint(dir: string): Promise<string> {
  let fh: FileHandle | undefined;
  try {
    fh = await open(join(dir, 'stderr.log'), 'r');
    const size = (await fh.stat()).size;
    const len = Math.min(size, 4096);
    const buf = Buffer.alloc(len);
    await fh.read(buf, 0, len, size - len);
    const lines = buf.toString('utf8').split('\n');
    const whole = len === size ? lines : lines.slice(1);
    const last = whole.map((l) => l.trim()).filter(Boolean).pop();
    if (!last) return '';
    const tini = /^\[FATAL tini \(\d+\)\] exec (.*) failed: (.*)$/.exec(last);
    if (tini) return ` (the command ${JSON.stringify(tini[1])} could not be run in the container: ${tini[2]})`;
    return ` (${last})`;
  } catch {
    return '';
  } finally {
    await fh?.close().catch(() => undefined);
  }
}
