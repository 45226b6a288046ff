/**
 * An image's life (Glance's statuses): `queued` (a record with no data yet), `saving` (its data is
 * being received or made), `active` (usable), `killed` (the upload or snapshot failed; the reason
 * says why; only deleting it is left). Records made before statuses existed are active.
 */
import { YunError } from '../errors/errors.js';

export const IMAGE_STATUSES = ['queued', 'saving', 'active', 'killed'] as const;
export type ImageStatus = (typeof IMAGE_STATUSES)[number];

export function statusOf(data: Record<string, unknown>): ImageStatus {
  const s = data.status;
  return (IMAGE_STATUSES as readonly unknown[]).includes(s) ? (s as ImageStatus) : 'active';
}

function why(name: string, data: Record<string, unknown>): { detail: string; hint: string } {
  switch (statusOf(data)) {
    case 'queued': return { detail: `image ${name} is queued: its data was never uploaded`, hint: 'Upload it: `yun image upload IMAGE FILE` (PUT /v1/images/ID/file).' };
    case 'saving': return { detail: `image ${name} is saving: its data is still being received or made`, hint: 'Wait until `yun image show IMAGE` says active.' };
    case 'killed': return { detail: `image ${name} was killed: ${String(data.status_reason ?? 'its upload failed')}`, hint: 'Delete it (`yun image rm IMAGE`) and import or snapshot again.' };
    default: return { detail: '', hint: '' };
  }
}

/** Servers, volumes, services, downloads and new names need an active image. */
export function checkActive(name: string, data: Record<string, unknown>, use: string): void {
  const s = statusOf(data);
  if (s === 'active') return;
  const w = why(name, data);
  throw new YunError('YUN_INVALID_STATE', `Cannot ${use}: ${w.detail}`, { extra: { status: s }, hint: w.hint });
}

/** Data goes only into a queued image (once: a failed upload kills it). */
export function checkUploadable(name: string, data: Record<string, unknown>): void {
  const s = statusOf(data);
  if (s === 'queued') return;
  const detail = s === 'active' ? `image ${name} already has its data (it is active); an image's data never changes` : why(name, data).detail;
  throw new YunError('YUN_INVALID_STATE', `Cannot upload data: ${detail}`, { extra: { status: s }, hint: s === 'active' ? 'Import a new image instead (`yun image import`).' : why(name, data).hint });
}

/** The reason recorded when saving fails: the error's own message, never cut. */
export function killReason(e: unknown): { status: 'killed'; status_reason: string; status_code: string } {
  const y = e instanceof YunError ? e : undefined;
  return { status: 'killed', status_reason: (e as Error)?.message ?? String(e), status_code: y?.code ?? 'YUN_INTERNAL' };
}
