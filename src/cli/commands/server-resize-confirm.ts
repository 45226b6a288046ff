import { actionCommand } from '../servers.js';

export default actionCommand('resize-confirm', 'resize_confirm', 'Keep a resize (VERIFY_RESIZE → ACTIVE): the copy of the old disk is dropped.');
