// The qemu driver: the shared conformance suite with real VMs (the tinyvm image, built offline from
// Debian's cloud kernel and busybox-static, booted under TCG here or KVM where the probe passes),
// whose guests behave like the suite's shell workloads through their cloud-init user data; then what
// only VMs do: the KVM probe, the seed's hostname and static address, a tap on a bridge. Every VM is
// killed by pid and its dir removed, even when a test fails.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ImageInfo, TaskConfig } from '../driver.js';
import { occurrences, requireOrSkip, runConformance, until, within, type Workload, type Workloads } from '../testing/conformance.js';
import { buildTinyVm, tinyVmSupport, type TinyVmBuild } from '../../images/tinyvm/build.js';
import { CONSOLE_LOG, QemuDriver, guestHostname, type QemuHandle } from './qemu-driver.js';

const has = (bin: string) => { try { execFileSync('sh', ['-c', `command -v ${bin}`], { stdio: 'pipe' }); return true; } catch { return false; } };
const root = process.getuid?.() === 0;
const missing = !root ? 'the qemu driver needs root (tap devices)'
  : !has('qemu-system-x86_64') ? 'qemu-system-x86_64 is missing (Debian package qemu-system-x86)'
  : !has('qemu-img') ? 'qemu-img is missing (Debian package qemu-utils)'
  : !has('mkfs.vfat') || !has('mcopy') ? 'mkfs.vfat or mcopy is missing (Debian packages dosfstools, mtools)'
  : null;

let build: TinyVmBuild | undefined;
let buildProblem: string | null = null;
async function image(): Promise<ImageInfo> {
  if (!build) {
    const ok = await tinyVmSupport();
    if (!ok.ok) { buildProblem = ok.reason; throw new Error(ok.reason); }
    build = await buildTinyVm();
  }
  return {
    ref: 'tinyvm:test', digest: `sha256:${'1'.repeat(64)}`, kind: 'vm', rootfs: '',
    config: { entrypoint: [], cmd: [], env: [], workdir: '', user: '' },
    vm: { disk: build.disk, disk_format: 'qcow2', kernel: build.kernel, initrd: build.initrd, cmdline: build.cmdline, min_disk_bytes: build.minDiskBytes, min_ram_bytes: build.minRamBytes },
    exportDockerArchive: () => Promise.reject(new Error('a VM image')),
  };
}

/** A guest whose user data (run at first boot, in the background) is `script`. */
function guest(script: string, ready = 'YUN-GUEST ready'): Workload {
  return {
    ready,
    config: {
      instance: { vcpus: 1, memory_bytes: 128 * 1024 * 1024, disk_bytes: 0, seed: { instance_id: 'conformance', hostname: 'conformance', public_keys: [], user_data_b64: Buffer.from(`#!/bin/sh\n${script}\n`).toString('base64') } },
    },
  };
}

const consoleOf = (cfg: TaskConfig) => { try { return readFileSync(join(cfg.dir, CONSOLE_LOG), 'utf8'); } catch { return ''; } };

const VM_WORKLOADS: Workloads = {
  long: guest('echo workload-long'),
  // Powers itself off once booted: qemu exits 0.
  short: guest('sleep 0.2; poweroff'),
  // Ignores the power button.
  stubborn: guest('kill $(pidof acpid); echo ignoring-the-power-button', 'ignoring-the-power-button'),
  ticker: guest('i=0; while :; do i=$((i+1)); echo "tick $i"; sleep 0.1; done', 'tick 1'),
  // User data runs once per instance, remembered on the root disk: a second boot of the same disk says so.
  persistent: { ...guest('echo fresh-disk'), fresh: 'fresh-disk', kept: 'user-data skipped' },
  output: consoleOf,
};

if (missing) {
  describe('driver conformance: qemu', () => {
    it('needs root, qemu-system-x86, qemu-utils, dosfstools and mtools', (t) => { requireOrSkip(t, false, missing); });
  });
} else {
  const baseConfig: Partial<TaskConfig> = {};
  runConformance(async () => {
    baseConfig.image_info = await image();
    return new QemuDriver();
  }, { name: 'qemu', image: 'tinyvm:test', requireRoot: true, baseConfig, workloads: VM_WORKLOADS, timeoutMs: 60_000 });
}

describe('qemu driver', { skip: missing ?? false }, () => {
  let work: string;
  const started: { d: QemuDriver; h: QemuHandle }[] = [];
  before(() => { work = mkdtempSync(join(tmpdir(), 'yun-qemu-')); });
  after(async () => {
    for (const s of started) await s.d.destroy(s.h).catch(() => undefined);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('fingerprint: says whether KVM works here (probed by booting a guest) and which accelerator VMs get', async () => {
    await image().catch(() => undefined);
    if (buildProblem) assert.fail(buildProblem);
    const fp = await new QemuDriver().fingerprint();
    assert.equal(fp.available, true, JSON.stringify(fp));
    assert.match(fp.attributes!.accel!, /^(kvm|tcg)$/);
    if (fp.attributes!.accel === 'tcg') {
      assert.match(fp.attributes!.kvm!, /not|does not boot|missing|hangs|ended/);
      assert.match(fp.missing_features!.kvm!, /TCG/);
    } else {
      assert.match(fp.attributes!.kvm!, /^works/);
    }
    const forced = await new QemuDriver({ accel: 'tcg' }).fingerprint();
    assert.equal(forced.attributes!.accel, 'tcg');
  });

  it('the guest gets the seed: hostname (made a valid label), the user data once, the disk grown to the flavor, its ephemeral and swap disks', async () => {
    const d = new QemuDriver();
    const dir = join(work, 'seeded');
    const cfg: TaskConfig = {
      id: 'seeded-vm', name: 'web.1', dir, command: [], shell: false, env: {}, mounts: [], read_only: false,
      limits: { cpu: 1, memory_bytes: 0, pids: 0 }, ports: [], cgroup_parent: 'yunstack-test', labels: {}, image_info: await image(),
      instance: { vcpus: 1, memory_bytes: 192 * 1024 * 1024, disk_bytes: 256 * 1024 * 1024, ephemeral_bytes: 64 * 1024 * 1024, swap_bytes: 32 * 1024 * 1024, seed: { instance_id: 'seeded-vm', hostname: 'web.1', public_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEd6qNd8YHn7p9fJ2v4hQ1Dq2z8xW3Kx0k3l5o0b9c1a test@yun'], user_data_b64: Buffer.from('#!/bin/sh\necho "disk=$(cat /sys/block/vda/size) mem=$(grep MemTotal /proc/meminfo)"\necho "eph=$(findfs LABEL=ephemeral0) blocks=$(for d in /sys/block/vd*; do cat $d/size; done | tr \'\\n\' \' \')"\n').toString('base64') } },
    };
    const h = (await d.start(cfg)) as QemuHandle;
    started.push({ d, h });
    await until(() => consoleOf(cfg).includes('YUN-GUEST ready'), 60_000, 'the guest to be ready');
    const log = consoleOf(cfg);
    assert.match(log, /YUN-GUEST seed instance-id=seeded-vm hostname=web-1 .*keys=1/);
    assert.equal(guestHostname('web.1'), 'web-1');
    await until(() => /disk=\d+/.test(consoleOf(cfg)), 20_000, 'the user data');
    const sectors = Number(/disk=(\d+)/.exec(consoleOf(cfg))![1]);
    assert.equal(sectors * 512, 256 * 1024 * 1024, 'the root disk has the flavor\'s size');
    await until(() => /eph=\S* blocks=/.test(consoleOf(cfg)), 20_000, 'the extra disks');
    const extra = /eph=(\S*) blocks=([\d ]+)/.exec(consoleOf(cfg))!;
    assert.match(extra[1]!, /^\/dev\/vd[a-z]$/, `the ephemeral disk is formatted and labelled ephemeral0: ${extra[0]}`);
    const sizes = extra[2]!.trim().split(/\s+/).map(Number);
    assert.ok(sizes.includes(64 * 2048) && sizes.includes(32 * 2048), `an ephemeral disk of 64 MiB and swap of 32 MiB: ${extra[0]}`);
    await within(d.stop(h, 30_000), 35_000, 'stop');
    assert.equal(occurrences(consoleOf(cfg), 'YUN-GUEST shutting down'), 1, 'a graceful power-off');
    await d.destroy(h);
    assert.equal(existsSync(join(dir, 'disk.qcow2')), false, 'destroy frees the disk');
    assert.equal(existsSync(join(dir, CONSOLE_LOG)), true, 'the console log stays');
  });
});
