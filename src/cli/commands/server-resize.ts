import { actionCommand } from '../servers.js';

export default actionCommand('resize', 'resize', 'Resize servers to another flavor: they reboot with it and wait in VERIFY_RESIZE for resize-confirm or resize-revert.', {
  configure: (c) => c.requiredOption('--flavor <flavor>', 'the new flavor (name or id)'),
  body: (o) => ({ flavor: String(o.flavor) }),
});
