import { blobUpdate, CONFIG_CLI } from '../blobs.js';

export default blobUpdate(CONFIG_CLI);
