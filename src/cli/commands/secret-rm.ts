import { blobRm, SECRET_CLI } from '../blobs.js';

export default blobRm(SECRET_CLI);
