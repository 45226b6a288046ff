import type { Logger } from 'pino';
import type { AssignedVolume } from '../dispatcher/protocol.js';
import { afterVolumeStep, EMPTY_VOLUME, planVolume, type LocalVolume, type VolumeStep, type VolumeWant } from '../volumes/plan.js';
import type { VolumeReport } from '../volumes/volume.js';
import { GiB } from '../volumes/volume.js';
import type { NodeImages } from './images.js';
import type { RecordStore } from './persist.js';
import { StepQueue } from './step-queue.js';
import type { VolumeFiles, VolumeMakeSpec } from './volume-files.js';

export interface VolumeRecord {
  id: string;
  volume: AssignedVolume;
  local: LocalVolume;
  done_generation: number;
  failed_generation: number;
  report: VolumeReport;
}

/** What a running instance the volume is attached to does for it (the server's runner). */
export interface AttachedInstance {
  resized(bytes: number): Promise<void>;
  quiesced(fn: () => Promise<void>): Promise<void>;
}

export interface VolumeHost {
  files: VolumeFiles;
  store: RecordStore<VolumeRecord>;
  log: Logger;
  images?: NodeImages;
  /** The instance the volume is attached to on this node, if any runs. */
  attachedInstance(volumeId: string): AttachedInstance | undefined;
  report(id: string, report: VolumeReport): void;
  forget(id: string): void;
}

const STEP_WORDS: Record<VolumeStep['do'], string> = {
  create: 'making the volume', extend: 'extending the volume', snapshot: 'taking a snapshot', drop_snapshot: 'deleting a snapshot', destroy: 'deleting the volume',
};

function wantOf(v: AssignedVolume): VolumeWant & { generation: number } {
  const d = v.data.desired;
  return { size_gb: d.size_gb, snapshots: d.snapshots, deleting: d.deleting, generation: d.generation };
}

/**
 * One volume on this node: plans (volumes/plan.ts) from its desired state and what the node has,
 * runs a step at a time, saves after each and reports. Attached volumes are grown and snapshotted
 * through the instance they are attached to (which lets the guest see the new size, and quiesces
 * it for a consistent copy).
 */
export class VolumeRunner {
  private readonly steps = new StepQueue((e) => this.host.log.error({ err: e, volume_id: this.id }, 'volume step failed'));
  private createdWaiters: { resolve(): void; reject(e: Error): void }[] = [];

  constructor(private host: VolumeHost, public record: VolumeRecord) {}

  get id(): string {
    return this.record.id;
  }

  settled(): Promise<void> {
    return this.steps.settled();
  }

  get created(): boolean {
    return this.record.local.created;
  }

  /** Resolves once the volume's file is complete (a server booting from it waits for this). */
  whenCreated(timeoutMs: number): Promise<void> {
    if (this.record.local.created) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const w = { resolve: () => { clearTimeout(t); resolve(); }, reject: (e: Error) => { clearTimeout(t); reject(e); } };
      const t = setTimeout(() => {
        this.createdWaiters = this.createdWaiters.filter((x) => x !== w);
        reject(new Error(`volume ${this.record.volume.name} was not made within ${Math.round(timeoutMs / 1000)} s`));
      }, timeoutMs);
      this.createdWaiters.push(w);
    });
  }

  private save(): void {
    this.host.store.save(this.record);
  }

  private report(patch: Partial<VolumeReport> = {}): void {
    const r = this.record;
    r.report = { generation: r.done_generation, created: r.local.created, size_bytes: r.local.size_bytes, snapshots: r.local.snapshots, fault: null, message: null, ...patch };
    this.save();
    this.host.report(this.id, r.report);
  }

  update(v: AssignedVolume): void {
    this.record.volume = v;
    this.save();
    this.steps.enqueue(() => this.advance());
  }

  /** The manager no longer knows this volume: its files go. */
  remove(): void {
    this.record.volume = { ...this.record.volume, data: { ...this.record.volume.data, desired: { ...this.record.volume.data.desired, deleting: true } } };
    this.steps.enqueue(async () => {
      await this.advance();
      this.host.store.remove(this.id);
      this.host.forget(this.id);
    });
  }

  resume(): void {
    this.steps.enqueue(() => this.advance());
  }

  private async advance(): Promise<void> {
    const r = this.record;
    for (let i = 0; i < 50; i++) {
      const want = wantOf(r.volume);
      if (!want.deleting && r.failed_generation >= want.generation) return;
      const steps = planVolume(want, r.local);
      if (steps.length === 0) {
        if (want.deleting) {
          this.report({ generation: want.generation, destroyed: true });
          return;
        }
        if (r.done_generation !== want.generation || r.report.message) {
          r.done_generation = want.generation;
          this.report();
        }
        return;
      }
      const step = steps[0]!;
      this.report({ message: STEP_WORDS[step.do] });
      try {
        await this.run(step);
      } catch (e) {
        const why = (e as Error).message;
        this.host.log.warn({ volume_id: r.id, step: step.do, err: why }, 'volume step failed');
        r.failed_generation = want.generation;
        if (want.deleting) {
          r.local = { ...EMPTY_VOLUME };
          continue;
        }
        for (const w of this.createdWaiters.splice(0)) w.reject(new Error(`making volume ${r.volume.name} failed: ${why}`));
        this.report({ generation: want.generation, fault: { code: 'YUN_VOLUME_FAILED', message: `${STEP_WORDS[step.do]} failed`, details: why } });
        return;
      }
      r.local = afterVolumeStep(r.local, step, want);
      this.save();
      if (step.do === 'create') for (const w of this.createdWaiters.splice(0)) w.resolve();
    }
    this.host.log.error({ volume_id: r.id, local: r.local }, 'volume plan did not settle after 50 steps');
  }

  private async run(step: VolumeStep): Promise<void> {
    const r = this.record;
    const d = r.volume.data;
    const files = this.host.files;
    switch (step.do) {
      case 'create': {
        r.local = { ...r.local, touched: true };
        this.save();
        await files.make(await this.makeSpec(), (m) => this.report({ message: m }));
        return;
      }
      case 'extend': {
        const inst = this.host.attachedInstance(r.id);
        await files.extend(r.id, step.bytes, d.content === 'ext4' && !inst);
        if (inst) await inst.resized(step.bytes);
        return;
      }
      case 'snapshot': {
        const inst = this.host.attachedInstance(r.id);
        await files.snapshot(r.id, step.id, (copy) => (inst ? inst.quiesced(copy) : copy()));
        return;
      }
      case 'drop_snapshot':
        return files.dropSnapshot(r.id, step.id);
      case 'destroy':
        return files.destroy(r.id);
    }
  }

  private async makeSpec(): Promise<VolumeMakeSpec> {
    const v = this.record.volume;
    const d = v.data;
    const base = { id: v.id, size_bytes: d.size_gb * GiB, label: v.name.slice(0, 16) };
    const s = d.source;
    if (s.kind === 'blank') return { ...base, from: { kind: 'blank' } };
    if (s.kind === 'snapshot') return { ...base, from: { kind: 'snapshot', file: this.host.files.snapshotFile(s.volume_id, s.snapshot_id), content: d.content } };
    if (!this.host.images) throw new Error('this node has no image store');
    const image = await this.host.images.ensure(s.image.name, s.image.digest, (m) => this.report({ message: m }));
    return { ...base, from: { kind: 'image', image } };
  }
}

export function newVolumeRecord(v: AssignedVolume): VolumeRecord {
  return { id: v.id, volume: v, local: { ...EMPTY_VOLUME }, done_generation: 0, failed_generation: 0, report: { generation: 0, created: false, size_bytes: 0, snapshots: [] } };
}
