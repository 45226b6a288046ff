import { actionCommand } from '../servers.js';

export default actionCommand('reboot', 'reboot', 'Reboot servers: a graceful shutdown then a boot; --hard powers off at once (also from SHUTOFF, PAUSED, SUSPENDED or ERROR).', {
  configure: (c) => c.option('--hard', 'power off at once instead of shutting down'),
  body: (o) => ({ action: o.hard ? 'reboot_hard' : 'reboot' }),
});
