/**
 * Under TCG a guest's TSC is the host's, and calibrating it against the emulated PIT sometimes fails
 * on a busy host: on microvm (no HPET, no ACPI PM timer to fall back on) the kernel then marks the
 * TSC unstable and hangs before it prints anything — about 1 boot in 6 on this 2-core machine. Telling
 * the guest the TSC's frequency (`tsc_early_khz`) skips the calibration: 0 hangs in 30 boots.
 */
import { readFileSync } from 'node:fs';


/**
 * The host's TSC frequency in kHz, or undefined when it cannot be told: the nominal frequency in an
 * Intel model name ("@ 2.60GHz"), else `cpu MHz` when the TSC is constant (`constant_tsc`; on VMs
 * and with tsc_known_freq that is the TSC's rate).
 */
export function hostTscKhz(cpuinfo?: string): number | undefined {
  let text = cpuinfo;
  if (text === undefined) {
    try {
      text = readFileSync('/proc/cpuinfo', 'utf8');
    } catch {
      return undefined;
    }
  }
  const flags = /^flags\s*:(.*)$/m.exec(text)?.[1].split(/\s+/) ?? [];
  if (!flags.includes('constant_tsc')) return undefined;
  const nominal = /^model name\s*:.*@\s*([\d.]+)\s*GHz/m.exec(text)?.[1];
  if (nominal) return Math.round(Number(nominal) * 1e6);
  const mhz = /^cpu MHz\s*:\s*([\d.]+)/m.exec(text)?.[1];
  return mhz && Number(mhz) > 0 ? Math.round(Number(mhz) * 1000) : undefined;
}

/**
 * Kernel arguments to append to the image's cmdline when it boots under TCG (software emulation).
 * Under TCG the guest's TSC is the host's, and its calibration against the emulated PIT fails now
 * and then on a busy host; `-M microvm` has no HPET or ACPI PM timer to fall back on, so the kernel
 * marks the TSC unstable and hangs before printing anything (measured: 5 of 30 boots on 2 busy
 * cores; none of 30 with `tsc_early_khz`). Not needed with KVM (kvm-clock).
 */
export function tcgKernelArgs(cpuinfo?: string): string[] {
  const khz = hostTscKhz(cpuinfo);
  return khz ? [`tsc_early_khz=${khz}`] : [];
}
