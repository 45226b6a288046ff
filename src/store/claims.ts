import { YunError } from '../errors/errors.js';

/** The error of a claim held by another owner (every backend raises the same). */
export function claimTaken(key: string, owner: string): YunError {
  return new YunError('YUN_CLAIM_TAKEN', `"${key}" is already taken (by ${owner})`, { extra: { key, owner } });
}

/** The error of a guard that moved on since it was read. */
export function guardConflict(key: string, current: number, expected: number): YunError {
  return new YunError('YUN_VERSION_CONFLICT', `Guard "${key}" is at version ${current}, but the request was based on version ${expected}: something it depends on changed meanwhile`, { extra: { guard: key, current_version: current } });
}
