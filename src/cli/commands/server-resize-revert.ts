import { actionCommand } from '../servers.js';

export default actionCommand('resize-revert', 'resize_revert', 'Undo a resize (VERIFY_RESIZE → ACTIVE): back to the old flavor and the disk as it was before the resize.');
