import { actionCommand } from '../servers.js';

export default actionCommand('resume', 'resume', 'Resume suspended servers, with the same processes as before.');
