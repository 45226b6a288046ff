/** Distinct exit codes, so scripts can tell failures apart (docs/cli.md lists them). */
export const EXIT = {
  OK: 0,
  ERROR: 1,
  USAGE: 2,
  UNAUTHENTICATED: 3,
  FORBIDDEN: 4,
  NOT_FOUND: 5,
  CONFLICT: 6,
  UNAVAILABLE: 7,
} as const;

export function exitCodeFor(status: number, code?: string): number {
  if (code === 'YUN_USAGE' || code === 'YUN_CONFIG_INVALID') return EXIT.USAGE;
  if (status === 401) return EXIT.UNAUTHENTICATED;
  if (status === 403) return EXIT.FORBIDDEN;
  if (status === 404) return EXIT.NOT_FOUND;
  if (status === 409 || status === 412 || status === 428) return EXIT.CONFLICT;
  if (status === 503 || status === 502 || status === 504) return EXIT.UNAVAILABLE;
  if (status >= 400 && status < 500) return EXIT.USAGE;
  return EXIT.ERROR;
}
