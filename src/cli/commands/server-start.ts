import { actionCommand } from '../servers.js';

export default actionCommand('start', 'start', 'Start stopped servers (SHUTOFF → ACTIVE); their root disk is as they left it.');
