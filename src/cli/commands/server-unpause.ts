import { actionCommand } from '../servers.js';

export default actionCommand('unpause', 'unpause', 'Unpause paused servers.');
