/**
 * Builds tinyvm (cached in build/tinyvm) and boots it for real under qemu TCG (microvm, ACPI), with
 * the root disk as a temp qcow2 overlay and a NoCloud seed from writeSeedImage. No network traffic
 * leaves: the NIC is on a qemu hub port connected to nothing, and the guest's addresses are checked
 * from the console. Also: the build's cache and lock, and the seed module's validation.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireOrSkip } from '../../drivers/testing/conformance.js';
import { renderMetaData, renderNetworkConfig, renderVendorData, seedSupport, validateSeed, writeSeedImage, type SeedData } from '../../drivers/qemu/seed.js';
import { buildTinyVm, defaultTinyVmDir, findTool, hostTscKhz, tcgKernelArgs, tinyVmSupport, TINYVM_CMDLINE, TINYVM_DISK_BYTES, type TinyVmBuild } from './build.js';
import { YAML_AWK } from './guest.js';

const BOOT_MS = 60_000;
const MAC = '52:54:00:12:34:56';
const qemu = findTool('qemu-system-x86_64');
const busybox = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));

const temps: string[] = [];
const vms = new Set<Vm>();
after(async () => {
  for (const vm of vms) await vm.kill();
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});
const tmp = (prefix = 'yun-tinyvm-') => {
  const d = mkdtempSync(join(tmpdir(), prefix));
  temps.push(d);
  return d;
};

/**
 * A console line without terminal escapes (ash asks for the cursor position at each prompt) and
 * without the root shell's prompts that background output (user-data, shutdown) may follow.
 */
// eslint-disable-next-line no-control-regex
const clean = (line: string) => line.replace(/\r/g, '').replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '').replace(/^(?:\S* # )+/, '');

/** One qemu process: its console (serial on stdio) with the time each line arrived. */
class Vm {
  readonly proc: ChildProcess;
  readonly lines: Array<{ ms: number; text: string }> = [];
  readonly started = Date.now();
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number }>;
  exitedAt: number | undefined;
  private partial = '';

  constructor(readonly name: string, args: string[]) {
    this.proc = spawn(qemu!, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    vms.add(this);
    const take = (chunk: Buffer) => {
      const parts = (this.partial + chunk.toString('utf8')).split(/\r?\n/);
      this.partial = parts.pop() ?? '';
      for (const p of parts) this.lines.push({ ms: Date.now() - this.started, text: clean(p) });
    };
    this.proc.stdout!.on('data', take);
    this.proc.stderr!.on('data', take);
    this.proc.stdin!.on('error', () => undefined);
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        this.exitedAt = Date.now();
        if (this.partial) this.lines.push({ ms: Date.now() - this.started, text: clean(this.partial) });
        this.partial = '';
        vms.delete(this);
        resolve({ code, signal, ms: this.exitedAt - this.started });
      });
    });
  }

  get console(): string {
    return this.lines.map((l) => l.text).join('\n') + (this.partial ? '\n' + this.partial : '');
  }

  /** The first console line matching `re` (waits up to `ms`), with its arrival time. */
  async waitFor(re: RegExp, ms = BOOT_MS): Promise<{ ms: number; match: RegExpMatchArray }> {
    const deadline = Date.now() + ms;
    for (;;) {
      for (const l of this.lines) {
        const m = re.exec(l.text);
        if (m) return { ms: l.ms, match: m };
      }
      if (this.exitedAt !== undefined || Date.now() > deadline) {
        const why = this.exitedAt !== undefined ? 'qemu exited' : `timed out after ${ms} ms`;
        throw new Error(`${this.name}: ${why} waiting for ${re}; console so far:\n${this.console}`);
      }
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  /** Types on the serial console (the root shell). */
  type(text: string): void {
    this.proc.stdin!.write(text);
  }

  async kill(): Promise<void> {
    if (this.exitedAt !== undefined || this.proc.pid === undefined) return;
    try {
      process.kill(this.proc.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
    await this.exited;
  }
}

/** One QMP command over the unix socket (greeting, qmp_capabilities, then `execute`). */
function qmp(sock: string, execute: string, timeoutMs = 10_000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const c = createConnection(sock);
    let buf = '';
    let step = 0;
    const timer = setTimeout(() => {
      c.destroy();
      reject(new Error(`QMP ${execute} on ${sock}: no answer within ${timeoutMs} ms`));
    }, timeoutMs);
    const done = (err: Error | undefined, v?: unknown) => {
      clearTimeout(timer);
      c.end();
      if (err) reject(err);
      else resolve(v);
    };
    c.on('error', (e) => done(new Error(`QMP ${execute} on ${sock}: ${e.message}`)));
    c.on('data', (d) => {
      buf += d.toString('utf8');
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).trim();
        buf = buf.slice(nl + 1);
        if (!line) continue;
        const msg = JSON.parse(line) as { QMP?: unknown; return?: unknown; error?: { desc?: string }; event?: string };
        if (msg.event) continue;
        if (msg.error) return done(new Error(`QMP ${execute}: ${msg.error.desc ?? JSON.stringify(msg.error)}`));
        if (step === 0 && msg.QMP) {
          step = 1;
          c.write(JSON.stringify({ execute: 'qmp_capabilities' }) + '\n');
        } else if (step === 1 && 'return' in msg) {
          step = 2;
          c.write(JSON.stringify({ execute }) + '\n');
        } else if (step === 2 && 'return' in msg) return done(undefined, msg.return);
      }
    });
  });
}

function boot(build: TinyVmBuild, name: string, opts: { disk: string; seed?: string; dir: string }): Vm {
  const args = [
    '-M', 'microvm,acpi=on', '-accel', 'tcg', '-m', '256', '-smp', '1',
    '-nodefaults', '-no-user-config', '-nographic', '-no-reboot', '-serial', 'stdio',
    '-kernel', build.kernel, '-initrd', build.initrd, '-append', [build.cmdline, ...tcgKernelArgs()].join(' '),
    '-drive', `id=root,file=${opts.disk},format=qcow2,if=none`, '-device', 'virtio-blk-device,drive=root',
    // A NIC on a hub with no other port: the guest has an interface, and nothing leaves.
    '-netdev', 'hubport,id=n0,hubid=0', '-device', `virtio-net-device,netdev=n0,mac=${MAC}`,
    '-qmp', `unix:${join(opts.dir, `${name}.qmp`)},server=on,wait=off`,
  ];
  if (opts.seed) args.push('-drive', `id=seed,file=${opts.seed},format=raw,if=none,readonly=on`, '-device', 'virtio-blk-device,drive=seed');
  return new Vm(name, args);
}

/** system_powerdown, then the guest's shutdown line and qemu's exit within 10 s. */
async function powerdown(vm: Vm, dir: string): Promise<number> {
  const t = Date.now();
  await qmp(join(dir, `${vm.name}.qmp`), 'system_powerdown');
  await vm.waitFor(/^YUN-GUEST shutting down$/, 10_000);
  const left = 10_000 - (Date.now() - t);
  const r = await Promise.race([vm.exited, new Promise<'timeout'>((res) => setTimeout(() => res('timeout'), Math.max(left, 0)))]);
  assert.notEqual(r, 'timeout', `${vm.name}: qemu did not exit within 10 s of system_powerdown; console:\n${vm.console}`);
  return Date.now() - t;
}

/** Runs `cmd` in the serial root shell and returns what it printed after `MARK=` (typed again until it answers). */
async function shell(vm: Vm, mark: string, cmd: string): Promise<string> {
  const re = new RegExp(`^(?:.*\\s)?${mark}=(.*)$`);
  for (let i = 0; ; i++) {
    vm.type(`echo "${mark}=$(${cmd})"\n`);
    try {
      const { match } = await vm.waitFor(re, 3000);
      return match[1].trim();
    } catch (e) {
      if (i >= 5) throw e;
    }
  }
}

const overlay = (build: TinyVmBuild, dir: string, name: string) => {
  const p = join(dir, `${name}.qcow2`);
  execFileSync(findTool('qemu-img')!, ['create', '-q', '-f', 'qcow2', '-b', build.disk, '-F', 'qcow2', p]);
  return p;
};

describe('tinyvm image', () => {
  let build: TinyVmBuild | undefined;
  let unsupported: string | undefined;
  let buildError: Error | undefined;

  before(async () => {
    const why: string[] = [];
    if (!qemu) why.push('qemu-system-x86_64 is missing (Debian package qemu-system-x86)');
    const s = await tinyVmSupport();
    if (!s.ok) why.push(s.reason);
    const seed = await seedSupport();
    if (seed) why.push(seed);
    if (why.length) {
      unsupported = why.join('; ');
      return;
    }
    try {
      const t = Date.now();
      build = await buildTinyVm({ log: (m) => console.log(`# tinyvm: ${m}`) });
      console.log(`# tinyvm: buildTinyVm took ${Date.now() - t} ms`);
    } catch (e) {
      buildError = e as Error;
    }
  });

  const ready = (t: { skip: (m: string) => void }): TinyVmBuild | undefined => {
    if (!requireOrSkip(t, !unsupported, unsupported ?? '')) return undefined;
    if (buildError) throw buildError;
    return build;
  };

  it('is built once and then served from the cache', async (t) => {
    const b = ready(t);
    if (!b) return;
    assert.equal(b.dir, defaultTinyVmDir());
    for (const f of [b.kernel, b.initrd, b.disk, b.diskRaw]) assert.ok(statSync(f).size > 0, f);
    assert.equal(b.diskFormat, 'qcow2');
    assert.equal(b.cmdline, TINYVM_CMDLINE);
    assert.equal(b.minDiskBytes, TINYVM_DISK_BYTES);
    assert.equal(b.minRamBytes, 128 * 1024 * 1024);
    assert.match(b.kernelVersion, /^\d+\.\d+\.\d+-\d+-cloud-amd64$/);
    assert.equal(readFileSync(b.disk).subarray(0, 4).toString('latin1'), 'QFI\xfb');
    const before = readFileSync(join(b.dir, 'build.json'), 'utf8');
    const t0 = Date.now();
    const again = await buildTinyVm();
    const ms = Date.now() - t0;
    assert.deepEqual(again, b);
    assert.equal(readFileSync(join(b.dir, 'build.json'), 'utf8'), before, 'a cached build does not rebuild');
    assert.ok(ms < 1000, `cached build took ${ms} ms`);
    t.diagnostic(`cached buildTinyVm: ${ms} ms`);
  });

  it('builds concurrently into one directory without corruption, taking over stale locks and leftovers', async (t) => {
    const b = ready(t);
    if (!b) return;
    const out = tmp();
    // Share the kernel cache (no second download); a dead process's lock and half build.
    symlinkSync(join(b.dir, 'cache'), join(out, 'cache'));
    writeFileSync(join(out, '.lock'), JSON.stringify({ pid: 2 ** 22 + 12345, token: 'x', since: new Date().toISOString() }));
    mkdirSync(join(out, `.build-${2 ** 22 + 12345}-dead`));
    writeFileSync(join(out, `.build-${2 ** 22 + 12345}-dead`, 'disk.raw'), 'half');
    const logs: string[] = [];
    const [x, y] = await Promise.all([buildTinyVm({ outDir: out, log: (m) => logs.push(m) }), buildTinyVm({ outDir: out, log: (m) => logs.push(m) })]);
    assert.deepEqual(x, y);
    assert.equal(x.dir, out);
    assert.equal(logs.filter((l) => l.startsWith('built tinyvm')).length, 1, `one build, the other waited and used it:\n${logs.join('\n')}`);
    assert.ok(logs.some((l) => l.includes('removed the stale build lock')), logs.join('\n'));
    assert.ok(!existsSync(join(out, '.lock')), 'the lock is released');
    assert.ok(!existsSync(join(out, `.build-${2 ** 22 + 12345}-dead`)), 'leftovers of dead builds are removed');
    assert.equal(statSync(x.diskRaw).size, TINYVM_DISK_BYTES);
    execFileSync(findTool('qemu-img')!, ['check', '-q', x.disk]);
    // force rebuilds.
    const stamp = JSON.parse(readFileSync(join(out, 'build.json'), 'utf8')).builtAt;
    await new Promise((r) => setTimeout(r, 5));
    await buildTinyVm({ outDir: out, force: true });
    assert.notEqual(JSON.parse(readFileSync(join(out, 'build.json'), 'utf8')).builtAt, stamp);
  });

  it('boots with a seed: hostname, static address, keys, a user-data script once; the disk persists; the power button shuts it down', { timeout: 4 * BOOT_MS }, async (t) => {
    const b = ready(t);
    if (!b) return;
    const dir = tmp();
    const disk = overlay(b, dir, 'root');
    const seed = join(dir, 'seed.img');
    const data: SeedData = {
      instanceId: 'i-0123abcd',
      hostname: 'web-1',
      publicKeys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbbb first@host', 'ssh-rsa AAAAB3Nza "quoted #not-a-comment" second: key'],
      network: { mac: MAC, address: '10.0.2.15/24', gateway: '10.0.2.2', nameservers: ['10.0.2.3'], search: ['example.test'] },
      userData: '#!/bin/sh\necho "UD-OUT hello from user-data"\nip -o addr | sed "s/^/UD-ADDR /"\nip route | sed "s/^/UD-ROUTE /"\necho "boot1 $(hostname)" > /root/persist.txt\nsync\n',
    };
    await writeSeedImage(seed, data);

    const vm1 = boot(b, 'boot1', { disk, seed, dir });
    try {
      const init = await vm1.waitFor(/^YUN-GUEST init reached uptime=([\d.]+)$/);
      const initrd = await vm1.waitFor(/^YUN-INITRD uptime=([\d.]+)$/);
      t.diagnostic(`boot 1: initrd at guest uptime ${initrd.match[1]} s; init reached at host ${init.ms} ms, guest uptime ${init.match[1]} s`);
      const seedLine = await vm1.waitFor(/^YUN-GUEST seed .*$/);
      assert.equal(seedLine.match[0], 'YUN-GUEST seed instance-id=i-0123abcd hostname=web-1 address=10.0.2.15/24 keys=2');
      await vm1.waitFor(/^YUN-GUEST user-data started$/);
      await vm1.waitFor(/^UD-OUT hello from user-data$/);
      await vm1.waitFor(/^UD-ADDR \d+: eth0\s+inet 10\.0\.2\.15\/24 /);
      await vm1.waitFor(/^UD-ROUTE default via 10\.0\.2\.2 dev eth0/);
      await vm1.waitFor(/^YUN-GUEST user-data finished exit=0$/);
      const ready1 = await vm1.waitFor(/^YUN-GUEST ready$/);
      t.diagnostic(`boot 1: ready at host ${ready1.ms} ms`);
      assert.ok(!/YUN-GUEST seed none/.test(vm1.console));
      // The root shell on the serial console.
      assert.equal(await shell(vm1, 'KEYS', 'cat /root/.ssh/authorized_keys | tr "\\n" "|"'), `${data.publicKeys.join('|')}|`);
      assert.equal(await shell(vm1, 'MODES', 'stat -c %a /root/.ssh /root/.ssh/authorized_keys | tr "\\n" " "'), '700 600');
      assert.equal(await shell(vm1, 'RESOLV', 'tr "\\n" "|" < /etc/resolv.conf'), 'search example.test|nameserver 10.0.2.3|');
      assert.equal(await shell(vm1, 'HTTP', 'wget -qO- http://127.0.0.1/'), 'web-1');
      const ms = await powerdown(vm1, dir);
      t.diagnostic(`boot 1: qemu exited ${ms} ms after system_powerdown`);
    } finally {
      await vm1.kill();
    }
    // The file the script wrote is on the disk (read from the host, no mounts).
    const raw = join(dir, 'root.raw');
    execFileSync(findTool('qemu-img')!, ['convert', '-f', 'qcow2', '-O', 'raw', disk, raw]);
    const debugfs = findTool('debugfs');
    if (debugfs) assert.equal(execFileSync(debugfs, ['-R', 'cat /root/persist.txt', raw], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }), 'boot1 web-1\n');

    const vm2 = boot(b, 'boot2', { disk, seed, dir });
    try {
      const init = await vm2.waitFor(/^YUN-GUEST init reached uptime=([\d.]+)$/);
      t.diagnostic(`boot 2: init reached at host ${init.ms} ms, guest uptime ${init.match[1]} s`);
      await vm2.waitFor(/^YUN-GUEST seed instance-id=i-0123abcd hostname=web-1 address=10\.0\.2\.15\/24 keys=2$/);
      await vm2.waitFor(/^YUN-GUEST user-data skipped \(already run for instance i-0123abcd\)$/);
      await vm2.waitFor(/^YUN-GUEST ready$/);
      assert.ok(!/UD-OUT/.test(vm2.console), 'user-data ran again');
      assert.equal(await shell(vm2, 'PERSIST', 'cat /root/persist.txt'), 'boot1 web-1');
      assert.equal(await shell(vm2, 'HOST', 'hostname'), 'web-1');
      await powerdown(vm2, dir);
    } finally {
      await vm2.kill();
    }
  });

  it('boots without a seed as tinyvm, and ignores #cloud-config user-data', { timeout: 3 * BOOT_MS }, async (t) => {
    const b = ready(t);
    if (!b) return;
    const dir = tmp();
    const vm = boot(b, 'noseed', { disk: overlay(b, dir, 'noseed'), dir });
    try {
      const init = await vm.waitFor(/^YUN-GUEST init reached uptime=([\d.]+)$/);
      t.diagnostic(`no seed: init reached at host ${init.ms} ms, guest uptime ${init.match[1]} s`);
      await vm.waitFor(/^YUN-GUEST seed none$/);
      await vm.waitFor(/^YUN-GUEST ready$/);
      assert.equal(await shell(vm, 'HOST', 'hostname'), 'tinyvm');
      assert.equal(await shell(vm, 'HTTP', 'wget -qO- http://127.0.0.1/'), 'tinyvm');
      await powerdown(vm, dir);
    } finally {
      await vm.kill();
    }
    const seed = join(dir, 'seed.img');
    await writeSeedImage(seed, { instanceId: 'i-cc', hostname: 'cc', publicKeys: [], userData: '#cloud-config\npackages: [nginx]\n' });
    const vm2 = boot(b, 'cloudconfig', { disk: overlay(b, dir, 'cc'), seed, dir });
    try {
      // No network-config: DHCP, which nobody answers on the hub.
      await vm2.waitFor(/^YUN-GUEST seed warning: DHCP on eth0 failed/);
      await vm2.waitFor(/^YUN-GUEST seed instance-id=i-cc hostname=cc address=none keys=0$/);
      await vm2.waitFor(/^YUN-GUEST user-data ignored: only #! scripts are supported by tinyvm$/);
      await vm2.waitFor(/^YUN-GUEST ready$/);
      await powerdown(vm2, dir);
    } finally {
      await vm2.kill();
    }
  });

  it('says so and powers off when there is no root disk', { timeout: BOOT_MS }, async (t) => {
    const b = ready(t);
    if (!b) return;
    const dir = tmp();
    const empty = join(dir, 'empty.qcow2');
    execFileSync(findTool('qemu-img')!, ['create', '-q', '-f', 'qcow2', empty, '64M']);
    const vm = boot(b, 'noroot', { disk: empty, dir });
    try {
      await vm.waitFor(/^YUN-INITRD error: no root disk root=LABEL=yunroot after 5 s$/);
      const r = await Promise.race([vm.exited, new Promise<'timeout'>((res) => setTimeout(() => res('timeout'), 10_000))]);
      assert.notEqual(r, 'timeout', `qemu did not exit after the initrd's poweroff; console:\n${vm.console}`);
    } finally {
      await vm.kill();
    }
  });
});

describe('tinyvm TCG kernel arguments', () => {
  it('take the TSC rate from the model name, else cpu MHz, and only for a constant TSC', () => {
    const intel = 'model name\t: Intel(R) Xeon(R) CPU E5-2670 0 @ 2.60GHz\ncpu MHz\t\t: 1200.000\nflags\t\t: fpu tsc constant_tsc nonstop_tsc\n';
    assert.equal(hostTscKhz(intel), 2_600_000);
    assert.deepEqual(tcgKernelArgs(intel), ['tsc_early_khz=2600000']);
    assert.equal(hostTscKhz('model name\t: AMD EPYC\ncpu MHz\t\t: 2596.122\nflags\t\t: fpu tsc constant_tsc tsc_known_freq\n'), 2_596_122);
    assert.equal(hostTscKhz('model name\t: Old\ncpu MHz\t\t: 800.000\nflags\t\t: fpu tsc\n'), undefined);
    assert.deepEqual(tcgKernelArgs('flags\t\t: fpu tsc\n'), []);
  });
});

describe('cloud-init seed (drivers/qemu/seed.ts)', () => {
  const good: SeedData = { instanceId: 'i-1', hostname: 'web-1', publicKeys: ['ssh-ed25519 AAAA a@b'] };

  it('rejects hostnames that are not RFC 1123 labels, keys with newlines, and bad network values', () => {
    for (const hostname of ['', 'web_1', '-web', 'web-', 'a.b', 'a'.repeat(64), 'wéb', 'web 1']) {
      assert.throws(() => validateSeed({ ...good, hostname }), /is not an RFC 1123 label/, hostname);
    }
    assert.doesNotThrow(() => validateSeed({ ...good, hostname: 'a'.repeat(63) }));
    assert.doesNotThrow(() => validateSeed({ ...good, hostname: '0' }));
    assert.throws(() => renderMetaData({ ...good, publicKeys: ['ssh-ed25519 AAAA\nssh-rsa BBBB'] }), /public key 0 contains a newline/);
    assert.throws(() => renderMetaData({ ...good, publicKeys: ['ok', 'bad\r'] }), /public key 1 contains a newline/);
    assert.throws(() => renderMetaData({ ...good, publicKeys: [' '] }), /public key 0 is empty/);
    assert.throws(() => renderMetaData({ ...good, instanceId: '' }), /instanceId is empty/);
    assert.throws(() => renderMetaData({ ...good, instanceId: 'a/b' }), /instanceId/);
    assert.throws(() => renderMetaData({ ...good, instanceId: 'a\nb' }), /instanceId/);
    const net = { mac: MAC, address: '10.0.0.5/24' };
    assert.throws(() => renderNetworkConfig({ ...good, network: { ...net, mac: '52:54:00:12:34' } }), /network\.mac .* is not a MAC address/);
    assert.throws(() => renderNetworkConfig({ ...good, network: { ...net, address: '10.0.0.5' } }), /network\.address .* prefix length/);
    assert.throws(() => renderNetworkConfig({ ...good, network: { ...net, address: '10.0.0.5/33' } }), /network\.address/);
    assert.throws(() => renderNetworkConfig({ ...good, network: { ...net, address: 'web/24' } }), /network\.address/);
    assert.throws(() => renderNetworkConfig({ ...good, network: { ...net, gateway: 'fe80::1' } }), /network\.gateway .* IPv4/);
    assert.throws(() => renderNetworkConfig({ ...good, network: { ...net, nameservers: ['dns'] } }), /network\.nameservers/);
    assert.throws(() => renderNetworkConfig({ ...good, network: { ...net, search: ['bad domain'] } }), /network\.search/);
  });

  it('renders meta-data and netplan v2 network-config', () => {
    assert.equal(renderMetaData(good), 'instance-id: "i-1"\nlocal-hostname: "web-1"\npublic-keys:\n  - "ssh-ed25519 AAAA a@b"\n');
    assert.equal(renderMetaData({ ...good, publicKeys: [] }), 'instance-id: "i-1"\nlocal-hostname: "web-1"\npublic-keys: []\n');
    assert.equal(renderNetworkConfig(good), undefined);
    assert.equal(renderNetworkConfig({ ...good, network: 'dhcp' }), 'version: 2\nethernets:\n  eth0:\n    dhcp4: true\n');
    assert.equal(
      renderNetworkConfig({ ...good, network: { mac: '52:54:00:AB:CD:EF', address: '10.0.0.5/24', gateway: '10.0.0.1', nameservers: ['10.0.0.1', '9.9.9.9'], search: ['example.test'] } }),
      [
        'version: 2',
        'ethernets:',
        '  eth0:',
        '    match:',
        '      macaddress: "52:54:00:ab:cd:ef"',
        '    set-name: eth0',
        '    dhcp4: false',
        '    addresses:',
        '      - "10.0.0.5/24"',
        '    gateway4: "10.0.0.1"',
        '    nameservers:',
        '      addresses:',
        '        - "10.0.0.1"',
        '        - "9.9.9.9"',
        '      search:',
        '        - "example.test"',
        '',
      ].join('\n'),
    );
  });

  it("reads back through the guest's YAML parser exactly (quotes, colons, '#', backslashes)", (t) => {
    if (!requireOrSkip(t, !!busybox, 'busybox is not installed (Debian package busybox-static)')) return;
    const dir = tmp();
    writeFileSync(join(dir, 'yaml.awk'), YAML_AWK);
    const keys = ['ssh-ed25519 AAAA "quoted" it\'s #not-a-comment a@b: c', 'ssh-rsa back\\slash\\"x', 'sk-ssh-ed25519@openssh.com AAAA\ttab'];
    const d: SeedData = { instanceId: 'i-"odd":#1', hostname: 'h1', publicKeys: keys, network: { mac: MAC, address: 'fd00::5/64', gateway: '10.0.0.1', nameservers: ['10.0.0.1'] } };
    const flat = (text: string) => {
      writeFileSync(join(dir, 'in.yaml'), text);
      return execFileSync(busybox!, ['awk', '-f', join(dir, 'yaml.awk'), join(dir, 'in.yaml')], { encoding: 'utf8' }).split('\n').filter(Boolean);
    };
    // A tab in a key is a control character: rejected.
    assert.throws(() => renderMetaData(d), /public key 2 contains a control character/);
    d.publicKeys = keys.slice(0, 2);
    assert.deepEqual(flat(renderMetaData(d)), ['instance-id=i-"odd":#1', 'local-hostname=h1', ...d.publicKeys.map((k) => `public-keys[]=${k}`)]);
    assert.deepEqual(flat(renderNetworkConfig(d)!), [
      'version=2',
      `ethernets.eth0.match.macaddress=${MAC}`,
      'ethernets.eth0.set-name=eth0',
      'ethernets.eth0.dhcp4=false',
      'ethernets.eth0.addresses[]=fd00::5/64',
      'ethernets.eth0.gateway4=10.0.0.1',
      'ethernets.eth0.nameservers.addresses[]=10.0.0.1',
    ]);
    // Hand-written seeds: flow lists and maps, comments, single quotes, a top-level network: key, lists of maps.
    assert.deepEqual(
      flat("# c\nnetwork:\n  version: 2\n  ethernets:\n    id0:\n      addresses: [10.0.0.9/8, '10.1.0.9/16']  # two\n      routes:\n        - to: default\n          via: 10.0.0.1\n      nameservers: {search: [a.test], addresses: [1.1.1.1, \"8.8.8.8\"]}\nx: |\n  block\n  text\ny: 'it''s'\n"),
      [
        'network.version=2',
        'network.ethernets.id0.addresses[]=10.0.0.9/8',
        'network.ethernets.id0.addresses[]=10.1.0.9/16',
        'network.ethernets.id0.routes.0.to=default',
        'network.ethernets.id0.routes.0.via=10.0.0.1',
        'network.ethernets.id0.nameservers.search[]=a.test',
        'network.ethernets.id0.nameservers.addresses[]=1.1.1.1',
        'network.ethernets.id0.nameservers.addresses[]=8.8.8.8',
        "y=it's",
      ],
    );
  });

  it('writes a vfat image labelled cidata, atomically; tool errors carry their full text', async (t) => {
    const why = await seedSupport();
    if (!requireOrSkip(t, why === null, why ?? '')) return;
    const dir = tmp();
    const img = join(dir, 'seed.img');
    const userData = Buffer.from('#!/bin/sh\necho hi\n');
    await writeSeedImage(img, { ...good, userData, network: 'dhcp' });
    assert.ok(!existsSync(`${img}.tmp`));
    assert.equal(statSync(img).size, 1024 * 1024);
    const env = { ...process.env, MTOOLS_SKIP_CHECK: '1', MTOOLSRC: '/dev/null' };
    const mtype = (name: string) => execFileSync(findTool('mtype')!, ['-i', img, `::/${name}`], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    assert.equal(mtype('meta-data'), renderMetaData(good));
    assert.equal(mtype('user-data'), userData.toString());
    assert.equal(mtype('network-config'), renderNetworkConfig({ ...good, network: 'dhcp' }));
    assert.match(execFileSync(findTool('mlabel')!, ['-i', img, '-s', '::'], { env, encoding: 'utf8' }), /Volume label is cidata/i);
    // Big user-data makes a bigger image; without network no network-config.
    await writeSeedImage(img, { ...good, userData: Buffer.alloc(3 * 1024 * 1024, 'x') });
    assert.ok(statSync(img).size > 3 * 1024 * 1024);
    assert.throws(() => mtype('network-config'));
    // Files (secrets, configs): in yun-files/ with their list, and as cloud-init write_files; no staging left beside.
    const secretFile = join(dir, 'secret');
    writeFileSync(secretFile, 'p4ss w0rd\n');
    const files = [{ source: secretFile, target: '/run/secrets/db pass', uid: 0, gid: 1000, mode: 0o440 }];
    await writeSeedImage(img, { ...good, files });
    assert.equal(mtype('yun-files/list'), '0440 0 1000 0 /run/secrets/db pass\n');
    assert.equal(mtype('yun-files/0'), 'p4ss w0rd\n');
    assert.equal(mtype('vendor-data'), renderVendorData(files, [Buffer.from('p4ss w0rd\n')]));
    assert.match(mtype('vendor-data'), /^#cloud-config\nwrite_files:\n {2}- path: "\/run\/secrets\/db pass"\n {4}encoding: b64\n {4}content: "cDRzcyB3MHJkCg=="\n {4}owner: "0:1000"\n {4}permissions: "0440"\n$/);
    assert.deepEqual(readdirSync(dir).sort(), ['secret', 'seed.img']);
    await assert.rejects(writeSeedImage(img, { ...good, files: [{ ...files[0]!, target: 'relative' }] }), /not an absolute file path/);
    // Invalid data: nothing is written.
    await assert.rejects(writeSeedImage(join(dir, 'bad.img'), { ...good, hostname: 'bad_name' }), /RFC 1123/);
    assert.ok(!existsSync(join(dir, 'bad.img')) && !existsSync(join(dir, 'bad.img.tmp')));
    // A tool failure: the command and mkfs.vfat's own message.
    await assert.rejects(writeSeedImage(join(dir, 'no', 'such', 'dir.img'), good), (e: Error) => {
      assert.match(e.message, /mkfs\.(v?fat) -n cidata -C .*no\/such\/dir\.img\.tmp \d+ failed \(exit status \d+\):\n.+/s);
      return true;
    });
  });
});
