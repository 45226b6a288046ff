import { blobCreate, SECRET_CLI } from '../blobs.js';

export default blobCreate(SECRET_CLI);
