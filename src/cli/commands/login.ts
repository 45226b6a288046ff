import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { saveProfile } from '../config.js';
import { promptHidden, readStdin } from '../prompt.js';

export default defineCommand({
  path: ['login'],
  summary: 'Log in and remember the server, user and project for later commands.',
  configure: (c) => c
    .option('--url <url>', 'server URL (default: YUN_URL)')
    .option('--cacert <file>', 'CA certificate of the cloud (default: YUN_CACERT)')
    .option('-u, --username <name>', 'user name (default: YUN_USERNAME)')
    .option('-p, --project <project>', 'project to scope the token to (default: YUN_PROJECT or the user\'s default)')
    .option('--password-stdin', 'read the password from standard input')
    .option('--json', 'print the token description as JSON'),
  parse: (_a, o) => ({
    url: o.url as string | undefined, cacert: o.cacert as string | undefined, username: o.username as string | undefined,
    project: o.project as string | undefined, passwordStdin: Boolean(o.passwordStdin), json: Boolean(o.json),
  }),
  async run(i, ctx) {
    Object.assign(ctx.flags, { url: i.url ?? ctx.flags.url, cacert: i.cacert ?? ctx.flags.cacert, username: i.username, project: i.project });
    const s = ctx.settings;
    if (i.passwordStdin) ctx.flags.password = await readStdin();
    else if (!s.password) {
      if (!process.stdin.isTTY) throw usage('No password: YUN_PASSWORD is not set and standard input is not a terminal', 'Use --password-stdin.');
      ctx.flags.password = await promptHidden(`Password for ${s.username ?? '?'}: `);
    }
    if (!ctx.settings.username) throw usage('No user name: pass --username or set YUN_USERNAME');
    const { body } = await ctx.client().login();
    saveProfile(ctx.settings);
    const t = body.token as { user: { name: string }; project: { name: string }; roles: string[]; expires_at: string };
    if (i.json) return ctx.out.json(body);
    ctx.out.line(`Logged in to ${ctx.settings.url} as ${t.user.name} on project ${t.project.name} (${t.roles.join(', ')}); the token expires at ${t.expires_at}.`);
  },
});
