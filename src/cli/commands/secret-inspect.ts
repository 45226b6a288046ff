import { blobInspect, SECRET_CLI } from '../blobs.js';

export default blobInspect(SECRET_CLI);
