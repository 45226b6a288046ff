// The pure parts of the oci driver (no root needed): argv rules, environment, /etc files, the OCI
// config it writes, in-rootfs path resolution that never leaves the rootfs, and image users.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DriverError } from '../driver.js';
import { netnsName } from './oci-driver.js';
import { lookupCommandInRoot, readFileInRoot, resolveInRoot } from './rootfs-path.js';
import { runcError } from './runc.js';
import { buildSpec, checkHostname, checkMount, containerEnv, DEFAULT_CAPABILITIES, hostsFile, INIT_PATH, processArgs, resolvConf, type SpecInput } from './spec.js';
import { resolveContainerUser } from './user.js';

describe('oci spec', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'yun-oci-spec-'));
  after(() => rmSync(tmp, { recursive: true, force: true }));

  it('argv: command replaces Cmd, Entrypoint is kept; shell form; nothing to run is an error', () => {
    const img = { entrypoint: ['/entry', '-x'], cmd: ['default'] };
    assert.deepEqual(processArgs(img, [], false), ['/entry', '-x', 'default']);
    assert.deepEqual(processArgs(img, ['a', 'b'], false), ['/entry', '-x', 'a', 'b']);
    assert.deepEqual(processArgs({ entrypoint: [], cmd: ['sh'] }, ['echo', 'hi'], false), ['echo', 'hi']);
    assert.deepEqual(processArgs({ entrypoint: [], cmd: ['sh'] }, [], false), ['sh']);
    assert.deepEqual(processArgs({ entrypoint: [], cmd: [] }, ['echo $0', 'zero'], true), ['/bin/sh', '-c', 'echo $0', 'zero']);
    assert.throws(() => processArgs({ entrypoint: [], cmd: [] }, [], false, 'image x'), /no command to run: the task gives none and image x has neither an Entrypoint nor a Cmd/);
  });

  it('env: image env overridden by the task; PATH, HOSTNAME, HOME defaults; bad names rejected', () => {
    assert.deepEqual(containerEnv(['PATH=/bin', 'A=image', 'B=x=y'], { A: 'task', C: '' }, 'web.1', '/root'), ['PATH=/bin', 'A=task', 'B=x=y', 'C=', 'HOSTNAME=web.1', 'HOME=/root']);
    assert.deepEqual(containerEnv([], {}, 'h', '/'), ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', 'HOSTNAME=h', 'HOME=/']);
    assert.throws(() => containerEnv([], { 'A=B': '1' }, 'h', '/'), DriverError);
    assert.throws(() => containerEnv([], { A: 'x\0y' }, 'h', '/'), /NUL/);
  });

  it('/etc/hosts and /etc/resolv.conf', () => {
    assert.match(hostsFile('web.1', false), /^127\.0\.0\.1\tlocalhost$/m);
    assert.match(hostsFile('web.1', false), /^127\.0\.1\.1\tweb\.1$/m);
    assert.equal(hostsFile('web.1', true, '127.0.0.1 localhost'), '127.0.0.1 localhost\n127.0.1.1\tweb.1\n');
    const node = 'search example.org\nnameserver 127.0.0.53\nnameserver 10.0.0.2\noptions edns0\n';
    assert.equal(resolvConf(node, true), node);
    const priv = resolvConf(node, false);
    assert.doesNotMatch(priv, /127\.0\.0\.53/);
    assert.match(priv, /^nameserver 10\.0\.0\.2$/m);
    assert.match(priv, /^search example\.org$/m);
  });

  it('hostnames: cut to 63 bytes, never with spaces', () => {
    assert.equal(checkHostname('web.1'), 'web.1');
    assert.equal(checkHostname('a'.repeat(70)), 'a'.repeat(63));
    assert.throws(() => checkHostname('a b'), /invalid hostname/);
    assert.throws(() => checkHostname(''), /invalid hostname/);
  });

  it('mount checks', () => {
    assert.deepEqual(checkMount({ type: 'bind', source: '/a', target: '/data/' }), { type: 'bind', source: '/a', target: '/data' });
    assert.throws(() => checkMount({ type: 'bind', source: 'rel', target: '/x' }), /must be an absolute path on the node/);
    assert.throws(() => checkMount({ type: 'bind', source: '/a', target: 'x' }), /absolute path in the container/);
    assert.throws(() => checkMount({ type: 'bind', source: '/a', target: '/x/../etc' }), /must not contain/);
    assert.throws(() => checkMount({ type: 'tmpfs', target: '/' }), /cannot be replaced/);
    assert.throws(() => checkMount({ type: 'volume', source: 'v', target: '/v' }), /not supported by the oci driver yet/);
  });

  function input(over: Partial<SpecInput> = {}): SpecInput {
    return {
      rootfs: '/t/bundle/rootfs',
      readonlyRootfs: false,
      args: ['httpd', '-f'],
      env: ['PATH=/bin'],
      cwd: '/',
      user: { uid: 0, gid: 0, additionalGids: [], home: '/root' },
      hostname: 'web.1',
      netnsPath: '/run/netns/yun-x',
      init: '/usr/bin/tini-static',
      mounts: [],
      files: { hosts: '/t/etc/hosts', resolvConf: '/t/etc/resolv.conf', hostname: '/t/etc/hostname' },
      cgroupsPath: '/yunstack/node/x',
      limits: { cpu: 0, memory_bytes: 0, pids: 0 },
      swapLimit: true,
      ...over,
    };
  }

  it('config.json: Docker-like defaults, namespaces, init, limits', () => {
    const s = buildSpec(input({ limits: { cpu: 1.5, memory_bytes: 32 << 20, pids: 10 } })) as any;
    assert.equal(s.ociVersion, '1.0.2');
    assert.deepEqual(s.process.args, [INIT_PATH, '--', 'httpd', '-f']);
    assert.equal(s.process.noNewPrivileges, true);
    assert.equal(s.process.terminal, false);
    assert.deepEqual(s.process.capabilities.bounding, [...DEFAULT_CAPABILITIES]);
    assert.deepEqual(s.process.capabilities.effective, [...DEFAULT_CAPABILITIES]);
    assert.deepEqual(s.process.capabilities.inheritable, []);
    assert.equal(DEFAULT_CAPABILITIES.length, 14);
    assert.deepEqual(s.process.rlimits, [{ type: 'RLIMIT_NOFILE', hard: 1048576, soft: 1024 }]);
    assert.equal(s.hostname, 'web.1');
    assert.deepEqual(s.root, { path: '/t/bundle/rootfs', readonly: false });
    assert.deepEqual(s.linux.namespaces, [{ type: 'pid' }, { type: 'ipc' }, { type: 'uts' }, { type: 'mount' }, { type: 'network', path: '/run/netns/yun-x' }]);
    assert.equal(s.linux.cgroupsPath, '/yunstack/node/x');
    assert.deepEqual(s.linux.resources.memory, { limit: 32 << 20, swap: 32 << 20 });
    assert.deepEqual(s.linux.resources.cpu, { quota: 150000, period: 100000 });
    assert.deepEqual(s.linux.resources.pids, { limit: 11 });
    assert.deepEqual(s.linux.resources.devices[0], { allow: false, access: 'rwm' });
    assert.ok(s.linux.maskedPaths.includes('/proc/kcore'));
    assert.ok(s.linux.readonlyPaths.includes('/proc/sys'));
    const dests = s.mounts.map((m: { destination: string }) => m.destination);
    assert.deepEqual(dests, ['/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/sys/fs/cgroup', INIT_PATH, '/etc/resolv.conf', '/etc/hostname', '/etc/hosts']);
    assert.ok(s.mounts.find((m: { destination: string }) => m.destination === '/sys').options.includes('ro'));
  });

  it('config.json: host network, no init, non-root user, read-only, task mounts (ordered, overriding defaults)', () => {
    const s = buildSpec(
      input({
        netnsPath: undefined,
        init: undefined,
        user: { uid: 1000, gid: 1000, additionalGids: [27], home: '/home/u' },
        readonlyRootfs: true,
        swapLimit: false,
        limits: { cpu: 0, memory_bytes: 64 << 20, pids: 5 },
        mounts: [
          { type: 'bind', source: '/srv/logs', target: '/data/logs', readonly: true },
          { type: 'bind', source: '/srv/data', target: '/data' },
          { type: 'tmpfs', target: '/dev/shm', tmpfs_size_bytes: 1 << 20 },
          { type: 'bind', source: '/srv/hosts', target: '/etc/hosts', readonly: true },
        ],
      }),
    ) as any;
    assert.deepEqual(s.process.args, ['httpd', '-f']);
    assert.ok(!s.linux.namespaces.some((n: { type: string }) => n.type === 'network'));
    assert.deepEqual(s.process.user, { uid: 1000, gid: 1000, additionalGids: [27] });
    assert.deepEqual(s.process.capabilities.effective, []);
    assert.deepEqual(s.process.capabilities.permitted, []);
    assert.equal(s.root.readonly, true);
    assert.deepEqual(s.linux.resources.memory, { limit: 64 << 20 });
    assert.deepEqual(s.linux.resources.pids, { limit: 5 });
    const dests = s.mounts.map((m: { destination: string }) => m.destination);
    assert.deepEqual(dests, ['/proc', '/dev', '/dev/pts', '/dev/mqueue', '/sys', '/sys/fs/cgroup', '/etc/resolv.conf', '/etc/hostname', '/data', '/data/logs', '/dev/shm', '/etc/hosts']);
    const logs = s.mounts.find((m: { destination: string }) => m.destination === '/data/logs');
    assert.deepEqual(logs, { destination: '/data/logs', type: 'bind', source: '/srv/logs', options: ['rbind', 'rprivate', 'ro'] });
    const shm = s.mounts.find((m: { destination: string }) => m.destination === '/dev/shm');
    assert.deepEqual(shm.options, ['nosuid', 'nodev', 'mode=1777', 'size=1048576']);
  });

  it('paths in the rootfs never leave it, whatever the symlinks say', async () => {
    const r = join(tmp, 'root');
    mkdirSync(join(r, 'bin'), { recursive: true });
    mkdirSync(join(r, 'usr', 'bin'), { recursive: true });
    mkdirSync(join(r, 'etc'), { recursive: true });
    writeFileSync(join(r, 'usr', 'bin', 'tool'), '\x7fELF');
    chmodSync(join(r, 'usr', 'bin', 'tool'), 0o755);
    writeFileSync(join(r, 'usr', 'bin', 'plain'), 'x');
    writeFileSync(join(r, 'usr', 'bin', 'script'), '#!/no/such/interp\n');
    chmodSync(join(r, 'usr', 'bin', 'script'), 0o755);
    symlinkSync('/usr/bin/tool', join(r, 'bin', 'abs'));
    symlinkSync('../../../../../../etc/passwd', join(r, 'etc', 'escape'));
    symlinkSync('/../../etc/shadow', join(r, 'etc', 'escape2'));
    writeFileSync(join(r, 'etc', 'passwd'), 'root:x:0:0::/root:/bin/sh\n');
    symlinkSync('loop2', join(r, 'loop1'));
    symlinkSync('loop1', join(r, 'loop2'));

    assert.deepEqual(await resolveInRoot(r, '/bin/abs'), { hostPath: join(r, 'usr/bin/tool'), containerPath: '/usr/bin/tool', exists: true });
    assert.equal((await resolveInRoot(r, '/etc/escape')).hostPath, join(r, 'etc/passwd'), 'a relative link climbing out stops at the root');
    assert.equal((await resolveInRoot(r, '/etc/escape2')).hostPath, join(r, 'etc/shadow'));
    assert.equal((await resolveInRoot(r, '/etc/escape2')).exists, false);
    assert.equal(await readFileInRoot(r, '/etc/escape'), 'root:x:0:0::/root:/bin/sh\n');
    await assert.rejects(resolveInRoot(r, '/loop1'), /too many levels of symbolic links/);
    assert.equal(await lookupCommandInRoot(r, 'abs', '/bin', '/'), '/bin/abs');
    assert.equal(await lookupCommandInRoot(r, 'tool', '/sbin:/usr/bin', '/'), '/usr/bin/tool');
    await assert.rejects(lookupCommandInRoot(r, 'nope', '/bin:/usr/bin', '/'), { message: 'exec: "nope": executable file not found in $PATH (PATH=/bin:/usr/bin) in the image' });
    await assert.rejects(lookupCommandInRoot(r, 'plain', '/usr/bin', '/'), /permission denied \(\/usr\/bin\/plain in the image is not executable/);
    await assert.rejects(lookupCommandInRoot(r, '/usr/bin', '/bin', '/'), /is a directory/);
    await assert.rejects(lookupCommandInRoot(r, 'script', '/usr/bin', '/'), /bad interpreter "\/no\/such\/interp"/);
    await assert.rejects(lookupCommandInRoot(r, './x', '/bin', '/work'), /no such file or directory in the image \(resolved to \/work\/x\)/);
    // Under a mount the driver cannot know: left to the container.
    assert.equal(await lookupCommandInRoot(r, 'app', '/opt/bin:/bin', '/', ['/opt']), undefined);
    assert.equal(await lookupCommandInRoot(r, '/opt/app', '/bin', '/', ['/opt']), undefined);
  });

  it('users from the image files', async () => {
    const r = join(tmp, 'users');
    mkdirSync(join(r, 'etc'), { recursive: true });
    writeFileSync(join(r, 'etc', 'passwd'), 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001:App:/home/app:/bin/sh\n');
    writeFileSync(join(r, 'etc', 'group'), 'root:x:0:\napp:x:1001:\nwheel:x:10:app,other\nstaff:x:50:\n');
    assert.deepEqual(await resolveContainerUser(r, ''), { uid: 0, gid: 0, additionalGids: [], home: '/root', name: 'root' });
    assert.deepEqual(await resolveContainerUser(r, 'app'), { uid: 1000, gid: 1001, additionalGids: [10], home: '/home/app', name: 'app' });
    assert.deepEqual(await resolveContainerUser(r, 'app:staff'), { uid: 1000, gid: 50, additionalGids: [10], home: '/home/app', name: 'app' });
    assert.deepEqual(await resolveContainerUser(r, '1000'), { uid: 1000, gid: 1001, additionalGids: [10], home: '/home/app', name: 'app' });
    assert.deepEqual(await resolveContainerUser(r, '4242'), { uid: 4242, gid: 0, additionalGids: [], home: '/' });
    assert.deepEqual(await resolveContainerUser(r, '4242:7'), { uid: 4242, gid: 7, additionalGids: [], home: '/' });
    await assert.rejects(resolveContainerUser(r, 'ghost'), /user "ghost" does not exist in the image/);
    await assert.rejects(resolveContainerUser(r, 'app:ghosts'), /group "ghosts" does not exist in the image/);
    assert.deepEqual(await resolveContainerUser(join(tmp, 'empty'), '5'), { uid: 5, gid: 0, additionalGids: [], home: '/' });
  });

  it('netns names and runc errors', () => {
    assert.equal(netnsName('abc123'), 'yun-abc123');
    const long = netnsName('x'.repeat(60));
    assert.match(long, /^yun-x{16}-[0-9a-f]{10}$/);
    assert.equal(runcError('{"level":"warning","msg":"w"}\n{"level":"error","msg":"container not running","time":"t"}\n'), 'container not running');
    assert.equal(runcError('plain failure\n'), 'plain failure');
  });
});
