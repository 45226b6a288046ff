import { defineCommand } from '../command.js';
import { usage } from '../cli-error.js';
import { isRole, ROLES } from '../../identity/roles.js';
import { promptHidden, readStdin } from '../prompt.js';

export default defineCommand({
  path: ['user', 'create'],
  summary: 'Create a user; with --project and --role, also grant the role.',
  configure: (c) => c.argument('<name>')
    .option('--password <password>', 'the password (prefer --password-stdin: command lines are visible to other users)')
    .option('--password-stdin', 'read the password from standard input')
    .option('--email <email>', 'e-mail address')
    .option('--project <project>', 'default project; with --role, grant that role on it')
    .option('--role <role>', `role to grant on --project (${ROLES.join(', ')})`)
    .option('--json', 'print JSON'),
  parse: (a, o) => {
    if (o.password !== undefined && o.passwordStdin) throw usage('Use either --password or --password-stdin, not both');
    const role = o.role as string | undefined;
    if (role !== undefined && !isRole(role)) throw usage(`Unknown role "${role}"; roles are ${ROLES.join(', ')}`);
    if (role !== undefined && !o.project) throw usage('--role needs --project: a role is always held on a project');
    return { name: a[0]!, password: o.password as string | undefined, passwordStdin: Boolean(o.passwordStdin), email: o.email as string | undefined, project: o.project as string | undefined, role, json: Boolean(o.json) };
  },
  async run(i, ctx) {
    let password = i.password;
    if (i.passwordStdin) password = await readStdin();
    if (password === undefined) {
      if (!process.stdin.isTTY) throw usage('No password given', 'Use --password-stdin (or --password).');
      password = await promptHidden(`Password for ${i.name}: `);
    }
    const api = ctx.client();
    const u = (await api.request('POST', '/v1/users', { body: { name: i.name, password, ...(i.email ? { email: i.email } : {}), ...(i.project ? { default_project: i.project } : {}) } })).body;
    if (i.role && i.project) {
      await api.request('PUT', `/v1/projects/${encodeURIComponent(i.project)}/members/${u.id}/roles/${i.role}`);
    }
    if (i.json) return ctx.out.json(u);
    ctx.out.line(String(u.id));
  },
});
