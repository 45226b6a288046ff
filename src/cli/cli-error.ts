import { catalogue, type ErrorCode } from '../errors/catalogue.js';
import { exitCodeFor } from './exit-codes.js';

/** An error for the CLI to print: the API's error (code, detail, request id), or one of its own. */
export class CliError extends Error {
  constructor(
    readonly code: string,
    readonly detail: string,
    readonly status: number,
    readonly requestId?: string,
    readonly title?: string,
  ) {
    super(detail);
  }

  get exitCode(): number {
    return exitCodeFor(this.status, this.code);
  }

  static local(code: ErrorCode, detail: string, hint?: string): CliError {
    const e = catalogue[code];
    const h = hint ?? e.hint;
    return new CliError(code, h ? `${detail.replace(/\.$/, '')}. ${h}` : detail, e.status, undefined, e.title);
  }

  format(): string {
    return `Error: ${this.detail}\n  code: ${this.code}${this.requestId ? `\n  request id: ${this.requestId}` : ''}`;
  }
}

export function usage(detail: string, hint?: string): CliError {
  return CliError.local('YUN_USAGE', detail, hint);
}
