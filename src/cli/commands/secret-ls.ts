import { blobLs, SECRET_CLI } from '../blobs.js';

export default blobLs(SECRET_CLI);
