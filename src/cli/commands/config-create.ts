import { blobCreate, CONFIG_CLI } from '../blobs.js';

export default blobCreate(CONFIG_CLI);
