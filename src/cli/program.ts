import { Command, CommanderError, Option } from 'commander';
import { YunError } from '../errors/errors.js';
import { VERSION } from '../version.js';
import { CliContext } from './command.js';
import { CliError } from './cli-error.js';
import { commands, groups } from './commands/index.js';
import { EXIT } from './exit-codes.js';

function printError(e: unknown): number {
  if (e instanceof CliError) {
    process.stderr.write(`${e.format()}\n`);
    return e.exitCode;
  }
  if (e instanceof YunError) {
    const c = new CliError(e.code, e.detail, e.status);
    process.stderr.write(`${c.format()}\n`);
    return c.exitCode;
  }
  process.stderr.write(`Error: ${(e as Error)?.stack ?? String(e)}\n  code: YUN_INTERNAL\n`);
  return EXIT.ERROR;
}

export function buildProgram(): Command {
  const program = new Command('yun')
    .description('Yunstack: a private cloud one person brings up with one command.')
    .version(VERSION, '-v, --version', 'print the client version')
    .addOption(new Option('--url <url>', 'server URL (default: $YUN_URL)'))
    .addOption(new Option('--cacert <file>', 'CA certificate (default: $YUN_CACERT)'))
    .showHelpAfterError(false)
    .configureHelp({ helpWidth: 100, sortSubcommands: false })
    .configureOutput({ outputError: () => undefined })
    .exitOverride();

  const parents = new Map<string, Command>();
  for (const spec of commands) {
    let parent = program;
    for (let i = 0; i < spec.path.length - 1; i++) {
      const key = spec.path.slice(0, i + 1).join(' ');
      let p = parents.get(key);
      if (!p) {
        p = parent.command(spec.path[i]!).description(groups[key] ?? '').configureOutput({ outputError: () => undefined }).configureHelp({ helpWidth: 100 }).exitOverride();
        parents.set(key, p);
      }
      parent = p;
    }
    const cmd = parent.command(spec.path[spec.path.length - 1]!).description(spec.summary).configureOutput({ outputError: () => undefined }).configureHelp({ helpWidth: 100 }).exitOverride();
    for (const a of spec.aliases ?? []) cmd.alias(a);
    spec.configure?.(cmd);
    cmd.action(async (...all: unknown[]) => {
      const self = all[all.length - 1] as Command;
      const opts = self.opts();
      const globals = self.optsWithGlobals() as { url?: string; cacert?: string };
      const input = spec.parse(self.processedArgs as string[], opts);
      const ctx = new CliContext({ url: globals.url, cacert: globals.cacert });
      try {
        const code = await spec.run(input, ctx);
        process.exitCode = typeof code === 'number' ? code : 0;
      } finally {
        await ctx.close();
      }
    });
  }
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version' || e.code === 'commander.help') return 0;
      if (e.code === 'commander.executeSubCommandAsync') return 0;
      const msg = e.message.replace(/^error: /, '');
      const c = CliError.local('YUN_USAGE', msg.charAt(0).toUpperCase() + msg.slice(1));
      process.stderr.write(`${c.format()}\n`);
      return EXIT.USAGE;
    }
    return printError(e);
  }
}

