import { blobUpdate, SECRET_CLI } from '../blobs.js';

export default blobUpdate(SECRET_CLI);
