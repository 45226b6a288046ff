import type { Command } from 'commander';
import { ApiClient } from './client.js';
import { resolveSettings, type Settings } from './config.js';
import { Output } from './output.js';

/** What a running command gets: output, connection settings and a lazily made API client. */
export class CliContext {
  private apiClient?: ApiClient;
  readonly out: Output;

  constructor(readonly flags: Settings, out?: Output) {
    this.out = out ?? new Output();
  }

  get settings(): Settings {
    return resolveSettings(this.flags);
  }

  client(): ApiClient {
    this.apiClient ??= new ApiClient(this.settings);
    return this.apiClient;
  }

  async close(): Promise<void> {
    await this.apiClient?.close();
  }
}

/**
 * One command, one file (DESIGN.md, convention 9): `configure` declares its arguments and flags,
 * `parse` turns what commander parsed into a typed input (rejecting bad input before anything is
 * sent), and `run` does the work.
 */
export interface CommandSpec<I = unknown> {
  /** e.g. ['node', 'ls'] */
  path: string[];
  summary: string;
  aliases?: string[];
  configure?(cmd: Command): void;
  parse(args: string[], opts: Record<string, unknown>): I;
  run(input: I, ctx: CliContext): Promise<number | void>;
}

export function defineCommand<I>(spec: CommandSpec<I>): CommandSpec<I> {
  return spec;
}

/** Repeatable option collector for commander. */
export function collect(value: string, previous: string[] = []): string[] {
  return [...previous, value];
}
