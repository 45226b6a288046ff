import { actionCommand } from '../servers.js';

export default actionCommand('suspend', 'suspend', 'Suspend servers: a VM\'s memory saved to disk (its qemu ends), a container frozen.');
