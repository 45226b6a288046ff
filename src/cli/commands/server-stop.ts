import { actionCommand } from '../servers.js';

export default actionCommand('stop', 'stop', 'Stop servers (ACTIVE → SHUTOFF): a graceful shutdown (ACPI power button, SIGTERM), a hard power-off after 60 s.');
