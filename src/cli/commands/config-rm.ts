import { blobRm, CONFIG_CLI } from '../blobs.js';

export default blobRm(CONFIG_CLI);
