import { actionCommand } from '../servers.js';

export default actionCommand('pause', 'pause', 'Pause servers: every vCPU (every process) stopped in place, memory kept.');
